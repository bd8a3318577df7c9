//! A hostile peer for the memory tests: floods a server with raw ZeroMQ messages, then holds its
//! connection open so that what the server queued stays queued while the test measures it.
//!
//! `lbm-test-flood ENDPOINT MESSAGES FRAMES FRAME_SIZE HOLD_MS`: sends up to MESSAGES messages of FRAMES
//! frames of FRAME_SIZE bytes each (a send that waits 2 s ends the flood), prints `sent N`, then keeps the
//! connection for HOLD_MS milliseconds and exits.

use std::time::Duration;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let number =
        |i: usize| -> usize { args.get(i).and_then(|a| a.parse().ok()).expect("usage: see the file's docs") };
    let (messages, frames, frame_size, hold) = (number(2), number(3), number(4), number(5));
    let socket = zmq::Context::new().socket(zmq::PUSH).expect("socket");
    socket.set_sndtimeo(2000).expect("sndtimeo");
    socket.set_linger(0).expect("linger");
    socket.connect(&args[1]).expect("connect");
    let frame = vec![0x5Au8; frame_size];
    let mut sent = 0;
    'flood: for _ in 0..messages {
        for i in 0..frames {
            let flags = if i + 1 < frames { zmq::SNDMORE } else { 0 };
            if socket.send(&frame[..], flags).is_err() {
                break 'flood;
            }
        }
        sent += 1;
    }
    println!("sent {sent}");
    std::thread::sleep(Duration::from_millis(hold as u64));
}
