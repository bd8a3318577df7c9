//! Soak: four clients send 1,000,000 messages of mixed sizes (0 B to 1 MiB) to one server; every message
//! must arrive exactly once with a correct checksum, and the process's resident memory must stay bounded
//! at its peak (not only at the end) and flat over the run.
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

/// A memory figure of this process in KiB from `/proc/self/status`: `VmRSS` (resident now) or `VmHWM`
/// (the peak of resident memory so far).
fn memory_kib(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let line =
        status.lines().find(|l| l.starts_with(field)).unwrap_or_else(|| panic!("no {field} in {status}"));
    line.split_whitespace().nth(1).and_then(|n| n.parse().ok()).unwrap()
}

/// How much the process may grow over its resident memory at the start, at its peak. The queues hold at
/// most 1000 messages per client and direction, about 100 MiB of these sizes (measured: a peak 100 MiB
/// above the start); with unbounded queues (high-water mark 0) the peak was 6.6 GiB.
const PEAK_GROWTH_KIB: u64 = 512 << 10;

/// How much more may be resident at the end than after 20,000 messages (queues filled by then): 64 bytes
/// leaked per message would pass it. Measured: 4 to 19 MiB less at the end.
const END_GROWTH_KIB: u64 = 64 << 10;

#[test]
fn a_million_messages_from_four_clients_arrive_exactly_once_and_memory_stays_flat() {
    let (server, _) = pair(Protocol::Tcp);
    let endpoint: lightbeam::Endpoint = server.address().parse().unwrap();
    // Payloads are slices of one random buffer, so that making them costs nothing.
    let source = Arc::new(pattern(2 << 20, 99));
    let at_start = memory_kib("VmRSS:");
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
            baseline = memory_kib("VmRSS:");
        }
    }
    senders.into_iter().for_each(|s| s.join().unwrap());
    assert!(seen.iter().flatten().all(|&s| s), "a message never arrived");
    let (end, peak) = (memory_kib("VmRSS:"), memory_kib("VmHWM:"));
    let elapsed = started.elapsed();
    println!(
        "soak: {} messages, {:.1} GiB in {:.1} s ({:.0} messages/s); resident memory {} MiB at the start, {} \
         MiB after 20,000 messages, {} MiB at the end, {} MiB at its peak",
        CLIENTS * PER_CLIENT,
        bytes as f64 / f64::from(1 << 30),
        elapsed.as_secs_f64(),
        (CLIENTS * PER_CLIENT) as f64 / elapsed.as_secs_f64(),
        at_start >> 10,
        baseline >> 10,
        end >> 10,
        peak >> 10
    );
    assert!(peak < at_start + PEAK_GROWTH_KIB, "resident memory peaked at {peak} KiB from {at_start} KiB");
    assert!(end < baseline + END_GROWTH_KIB, "resident memory grew from {baseline} KiB to {end} KiB");
}
