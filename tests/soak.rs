//! Soak: four clients send 1,000,000 messages of mixed sizes (0 B to 1 MiB) to one server; every message
//! must arrive exactly once with a correct checksum, and the server's resident memory must stay flat.
//! About 12 GiB in all: meant for release builds (`cargo test --release --test soak -- --nocapture`).

mod util;

use std::sync::Arc;
use std::time::{Duration, Instant};

use lightbeam::{Client, LbmMeta, Protocol, Server};
use util::*;

const CLIENTS: usize = 4;
const PER_CLIENT: usize = 250_000;

/// Message sizes: mostly small, some large, the extremes included (mean about 13 KiB).
fn size_of(client: usize, seq: usize) -> usize {
    let r = (client * PER_CLIENT + seq).wrapping_mul(0x9E37_79B9) >> 4;
    match r % 1000 {
        0..=4 => 1 << 20,
        5..=9 => 0,
        10..=49 => 1 << (10 + (r / 1000) % 11),
        _ => (r / 1000) % 512,
    }
}

/// This process's resident memory in KiB.
fn resident_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap_or("VmRSS: 0 kB");
    line.split_whitespace().nth(1).and_then(|n| n.parse().ok()).unwrap_or(0)
}

#[test]
fn a_million_messages_from_four_clients_arrive_exactly_once_and_memory_stays_flat() {
    let (server, _) = pair(Protocol::Tcp);
    let endpoint: lightbeam::Endpoint = server.address().parse().unwrap();
    // Payloads are slices of one random buffer, so that making them costs nothing.
    let source = Arc::new(pattern(2 << 20, 99));
    let started = Instant::now();
    let senders: Vec<_> = (0..CLIENTS)
        .map(|c| {
            let source = Arc::clone(&source);
            let client = lightbeam::ZeroMqClient::connect(&endpoint, &Default::default()).unwrap();
            std::thread::spawn(move || {
                for seq in 0..PER_CLIENT {
                    let size = size_of(c, seq);
                    let at = (seq * 4099) % (source.len() - size + 1);
                    let payload = &source[at..at + size];
                    let meta = LbmMeta::new((c as u8, seq as u32, checksum(payload)))
                        .with_bulk(client.expose(payload, Default::default()));
                    client.send(&meta).into_result().unwrap();
                }
            })
        })
        .collect();
    let mut seen = vec![vec![false; PER_CLIENT]; CLIENTS];
    let (mut bytes, mut baseline) = (0u64, 0);
    for received in 0..CLIENTS * PER_CLIENT {
        let mut meta = LbmMeta::<(u8, u32, u64)>::default();
        let event = server.recv_metadata_timeout(&mut meta, Duration::from_secs(30));
        assert!(event.is_done(), "nothing arrived for 30 s after {received} messages");
        event.into_result().unwrap();
        let (c, seq, sum) = meta.custom;
        let payloads = server.take_bulks().unwrap();
        assert_eq!(checksum(&payloads[0]), sum, "message {c}/{seq} corrupted");
        assert_eq!(payloads[0].len(), size_of(c as usize, seq as usize));
        assert!(!std::mem::replace(&mut seen[c as usize][seq as usize], true), "message {c}/{seq} twice");
        bytes += payloads[0].len() as u64;
        if received == 20_000 {
            baseline = resident_kib();
        }
    }
    senders.into_iter().for_each(|s| s.join().unwrap());
    assert!(seen.iter().flatten().all(|&s| s), "a message never arrived");
    let end = resident_kib();
    let elapsed = started.elapsed();
    println!(
        "soak: {} messages, {:.1} GiB in {:.1} s ({:.0} messages/s); resident memory {} MiB after 20,000 \
         messages, {} MiB at the end",
        CLIENTS * PER_CLIENT,
        bytes as f64 / f64::from(1 << 30),
        elapsed.as_secs_f64(),
        (CLIENTS * PER_CLIENT) as f64 / elapsed.as_secs_f64(),
        baseline >> 10,
        end >> 10
    );
    // The queues are bounded by the high-water marks (1000 messages of at most 1 MiB per direction).
    assert!(end < baseline + (512 << 10), "resident memory grew from {baseline} KiB to {end} KiB");
}
