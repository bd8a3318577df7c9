//! A sender much faster than its receiver: sends block at the high-water mark and then fail with a timeout
//! (or wait, if so configured); nothing is dropped silently, and what is queued stays bounded.

mod util;

use std::time::Duration;

use lightbeam::{Client, Error, LbmMeta, Options, Protocol, Server};
use util::*;

const MESSAGE: usize = 256 << 10;

/// The high-water mark of the client's send queue and of the server's receive queue, in messages.
const HIGH_WATER_MARK: i32 = 4;

#[test]
fn a_sender_with_no_reader_is_pushed_back_then_times_out_and_loses_nothing() {
    let options = Options::default()
        .with_high_water_mark(HIGH_WATER_MARK)
        .with_send_timeout(Some(Duration::from_millis(300)));
    let (server, client) = pair_with(Protocol::Tcp, &options);
    // A client waits for a connected peer before it queues anything (ZMQ_IMMEDIATE): one round trip first,
    // so that the sends below are pushed back by full queues, not by a connection still being made.
    send_all(&client, u32::MAX, &[]);
    assert_eq!(recv_all::<u32>(&server).unwrap().0, u32::MAX);
    let payload = pattern(MESSAGE, 1);
    let mut sent = 0u32;
    let error = loop {
        assert!(sent < 10_000, "10,000 messages queued without push-back");
        let meta = LbmMeta::new(sent).with_bulk(client.expose(&payload, Default::default()));
        match client.send(&meta).into_result() {
            Ok(_) => sent += 1,
            Err(error) => break error,
        }
    };
    assert!(matches!(error, Error::Timeout { .. }), "{error}");
    println!(
        "push-back after {sent} messages of {} KiB ({} MiB queued)",
        MESSAGE >> 10,
        (sent as usize * MESSAGE) >> 20
    );
    // Queued: the two high-water marks plus the kernel's socket buffers; far below the 10,000 tried.
    assert!(sent < 1000, "{sent} messages queued: not bounded by the high-water marks");
    let both_queues = 2 * HIGH_WATER_MARK as u32;
    assert!(sent >= both_queues, "only {sent} messages queued: the two queues take {both_queues}");
    for expected in 0..sent {
        let (seq, buffers) = recv_all::<u32>(&server).unwrap();
        assert_eq!(seq, expected, "a message was lost or reordered");
        assert_eq!(checksum(&buffers[0]), checksum(&payload));
    }
    let event = server.recv_metadata_timeout(&mut LbmMeta::<u32>::default(), Duration::from_millis(200));
    assert!(!event.is_done(), "the message that timed out was delivered after all");
}

#[test]
fn a_sender_without_timeout_waits_for_a_slow_reader() {
    const COUNT: u32 = 200;
    let options = Options::default().with_high_water_mark(4).with_send_timeout(None);
    let (server, client) = pair_with(Protocol::Tcp, &options);
    let reader = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(500));
        (0..COUNT).map(|_| recv_all::<u32>(&server).unwrap().0).collect::<Vec<_>>()
    });
    let payload = pattern(MESSAGE, 2);
    for seq in 0..COUNT {
        let meta = LbmMeta::new(seq).with_bulk(client.expose(&payload, Default::default()));
        client.send(&meta).into_result().unwrap();
    }
    assert_eq!(reader.join().unwrap(), (0..COUNT).collect::<Vec<_>>());
}
