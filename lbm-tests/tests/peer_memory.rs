//! What one peer can make a server hold: measured in this process (which holds the server alone) while a
//! hostile peer in another process floods it and keeps its connection open.

mod util;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use lightbeam::{Error, Options, Protocol, Server, ZeroMqServer};
use util::*;

const HIGH_WATER_MARK: usize = 4;
const MAX_MESSAGE: usize = 1 << 20;
/// What libzmq keeps per received frame besides its bytes (a `zmq_msg_t`).
const PER_FRAME: usize = 64;

fn resident_bytes() -> usize {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse::<usize>().unwrap() * 1024
}

/// Floods `server` from another process with `messages` messages of `frames` frames of `size` bytes;
/// returns how much this process's resident memory grew once the flood has settled, and how many
/// messages the peer managed to send.
fn growth_under_flood(server: &ZeroMqServer, messages: usize, frames: usize, size: usize) -> (usize, usize) {
    let before = resident_bytes();
    let mut peer = Command::new(env!("CARGO_BIN_EXE_lbm-test-flood"))
        .args([server.address(), &messages.to_string(), &frames.to_string(), &size.to_string(), "3000"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(peer.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let sent: usize = line.trim().trim_start_matches("sent ").parse().unwrap();
    // Let the I/O thread take in whatever the queue admits, then read the peak of a few samples.
    let mut peak = before;
    let settle = Instant::now() + Duration::from_millis(1000);
    while Instant::now() < settle {
        peak = peak.max(resident_bytes());
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = peer.kill();
    let _ = peer.wait();
    (peak.saturating_sub(before), sent)
}

/// Receives until nothing arrives for a moment; returns (accepted, refused) messages.
fn drain(server: &ZeroMqServer) -> (usize, usize) {
    let (mut accepted, mut refused) = (0, 0);
    loop {
        match server.recv_message(Duration::from_millis(500)) {
            Ok(_) => accepted += 1,
            Err(Error::Timeout { .. }) => return (accepted, refused),
            Err(error) if error.is_refused_message() => refused += 1,
            Err(error) => panic!("{error}"),
        }
    }
}

/// Floods `server` with `messages` messages of `frames` frames of `size` bytes from another process,
/// checks that it grew by at most `bound` bytes (plus 8 MiB of slack for the process's own allocations),
/// then that each message that arrived was refused on receipt (raw frames are no Lightbeam messages).
#[track_caller]
fn holds_at_most(server: &ZeroMqServer, messages: usize, frames: usize, size: usize, bound: usize) {
    let (grown, sent) = growth_under_flood(server, messages, frames, size);
    println!(
        "{sent} messages of {frames} frames of {size} bytes: the server grew by {} KiB (bound {} KiB)",
        grown >> 10,
        bound >> 10
    );
    assert!(grown <= bound + (8 << 20), "the server held {grown} bytes for one peer");
    let (accepted, refused) = drain(server);
    assert!(accepted == 0 && (1..=sent).contains(&refused), "{accepted} accepted, {refused} refused");
}

#[test]
fn a_flooding_peer_can_make_the_server_hold_only_what_its_limits_allow() {
    let options = Options::default()
        .with_high_water_mark(HIGH_WATER_MARK as i32)
        .with_max_message_size(Some(MAX_MESSAGE as u64))
        .with_max_bulks(16);
    let server = ZeroMqServer::bind(&fresh_endpoint(Protocol::Tcp), &options).unwrap();
    // Bytes: messages of one frame of (nearly) the largest size allowed.
    holds_at_most(&server, 64, 1, MAX_MESSAGE - 64, (HIGH_WATER_MARK + 2) * MAX_MESSAGE);
    // Frames: ZeroMQ caps neither frames per message nor their count in its queue, only whole messages,
    // so a message of many empty frames costs PER_FRAME bytes each until it is received and refused.
    let frames = 50_000;
    holds_at_most(&server, 16, frames, 0, (HIGH_WATER_MARK + 2) * frames * PER_FRAME);
}
