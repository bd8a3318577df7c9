//! A process of the node writing garbage into a server's queue, record by record: every case is an
//! error for that message (never a crash, a hang or a huge allocation), and the server goes on.

use std::time::{Duration, Instant};

use super::identity::{Link, Offer};
use super::queue::{state, transfer, Channel, Queue};
use super::record::{padding, Record};
use super::DEFAULT_RING_SIZE as RING;
use super::{SharedMemoryClient, SharedMemoryServer, ShmOptions};
use crate::error::Error;
use crate::shm::{Process, Segment};
use crate::{Client, LbmMeta, Options, Server};

fn server() -> SharedMemoryServer {
    let options = Options::default().with_max_message_size(Some(1 << 20)).with_max_bulks(8);
    let shm = ShmOptions::default().with_stall_timeout(Duration::from_millis(300));
    SharedMemoryServer::bind("unit-hostile", "shm", 0, &options, &shm).unwrap()
}

/// Claims a channel of `server` as a client would, lets `write` put bytes in its ring (returning the
/// tail to publish), and returns what the server's next receive says.
fn hostile(server: &SharedMemoryServer, write: impl FnOnce(&Channel<'_>) -> u64) -> crate::Result<usize> {
    let segment = Segment::open(server.address().trim_start_matches("shm://")).unwrap();
    let queue = Queue::open(&segment).unwrap();
    let channel = queue.channel(queue.claim(Process::current(), 1).unwrap());
    let tail = write(&channel);
    channel.publish_tail(tail);
    let started = Instant::now();
    let outcome = server.recv_message(Duration::from_secs(5)).map(|m| m.bulk_count());
    assert!(started.elapsed() < Duration::from_secs(3), "took {:?}", started.elapsed());
    channel.set_state(state::RELEASED);
    outcome
}

/// Writes `records` (each with the bytes that follow it) from position 0; returns the end.
fn records(channel: &Channel<'_>, records: &[(Record, &[u8])]) -> u64 {
    let mut at = 0;
    for (record, bytes) in records {
        channel.write(at, &record.encode());
        channel.write(at + 32, bytes);
        at += 32 + bytes.len().next_multiple_of(8) as u64;
    }
    at
}

fn header() -> Vec<u8> {
    crate::wire::encode_header(&[], |_| Ok(())).unwrap()
}

fn header_with_one_bulk(size: usize) -> Vec<u8> {
    let data = vec![0u8; size];
    crate::wire::encode_header(&[crate::Bulk::source(&data, Default::default())], |_| Ok(())).unwrap()
}

#[test]
fn garbage_records_lengths_and_positions_are_errors_and_the_server_goes_on() {
    let server = server();
    let me = Process::current().pid;
    let h = header();
    let refused = |outcome: crate::Result<usize>, what: &str| {
        let error = outcome.expect_err(what);
        // A message that stops half way ends at the stall limit; nothing may pass for no message at all.
        let nothing = matches!(error, Error::Timeout { op: "receive (nothing arrived)", .. });
        assert!(!nothing, "{what}: not seen: {error}");
    };
    refused(
        hostile(&server, |c| records(c, &[(Record::Begin { frames: 1 }, &[])]) + 8),
        "tail inside a record",
    );
    refused(
        hostile(&server, |c| {
            c.write(0, &[0xee; 32]);
            32
        }),
        "unknown record kind",
    );
    refused(hostile(&server, |c| records(c, &[(Record::Begin { frames: 0 }, &[])])), "no frames");
    let many = hostile(&server, |c| records(c, &[(Record::Begin { frames: u32::MAX }, &[])]));
    assert!(matches!(many, Err(Error::LimitExceeded { .. })), "{many:?}");
    let huge = [(Record::Begin { frames: 1 }, &[][..]), (Record::Inline { len: u64::MAX }, &[])];
    assert!(matches!(hostile(&server, |c| records(c, &huge)), Err(Error::LimitExceeded { .. })));
    refused(hostile(&server, |_| RING as u64 + 1), "a tail more than a ring ahead");
    refused(hostile(&server, |_| u64::MAX), "a tail behind the head");
    let foreign = [
        (Record::Begin { frames: 1 }, &[][..]),
        (Record::Remote { offer: 0, len: 4, address: 8, pid: me + 1 }, &[]),
    ];
    refused(hostile(&server, |c| records(c, &foreign)), "an offer naming another process");
    let tampered = |c: &Channel<'_>| {
        c.transfer().store(transfer::pack(0, 7), std::sync::atomic::Ordering::Release);
        records(
            c,
            &[
                (Record::Begin { frames: 1 }, &[]),
                (Record::Remote { offer: 0, len: 4, address: 8, pid: me }, &[]),
            ],
        )
    };
    refused(hostile(&server, tampered), "a garbage transfer word");
    let not_a_header = [(Record::Begin { frames: 1 }, &[][..]), (Record::Inline { len: 5 }, b"hello")];
    assert!(matches!(hostile(&server, |c| records(c, &not_a_header)), Err(Error::Wire(_))));
    let unfinished = [(Record::Begin { frames: 2 }, &[][..]), (Record::Inline { len: h.len() as u64 }, &h)];
    refused(hostile(&server, |c| records(c, &unfinished)), "a message that stops half way");
    // An offer of unmapped memory is refused, and the bytes that follow in the ring are taken instead.
    let h1 = header_with_one_bulk(4);
    let fallback = |c: &Channel<'_>| {
        c.transfer().store(transfer::pack(0, transfer::PENDING), std::sync::atomic::Ordering::Release);
        records(
            c,
            &[
                (Record::Begin { frames: 2 }, &[]),
                (Record::Inline { len: h1.len() as u64 }, &h1),
                (Record::Remote { offer: 0, len: 4, address: 8, pid: me }, &[]),
                (Record::Inline { len: 4 }, b"abcd"),
            ],
        )
    };
    assert_eq!(hostile(&server, fallback).unwrap(), 1);
    // Every broken channel was freed once let go, and a real client still gets through.
    let client =
        SharedMemoryClient::connect(server.address(), "shm", 0, &Options::default(), &ShmOptions::default())
            .unwrap();
    let data = b"still here";
    client.send(&LbmMeta::new(()).with_bulk(client.expose(data, Default::default()))).into_result().unwrap();
    let payloads = server.recv_message(Duration::from_secs(5)).unwrap().into_payloads();
    assert_eq!(&payloads[0][..], data);
}

/// Sizes and counts a peer announces near the ends of their types are errors that report them as
/// announced (saturated), never an overflow (a panic in debug builds, a wrapped size in release).
#[test]
fn forged_sizes_and_counts_are_errors_reporting_what_was_announced() {
    let server = server();
    let h = header();
    let after_a_header = |len: u64| {
        hostile(&server, |c| {
            records(c, &[(Record::Begin { frames: 2 }, &[]), (Record::Inline { len: h.len() as u64 }, &h)])
                + {
                    let at = 64 + h.len().next_multiple_of(8) as u64;
                    c.write(at, &Record::Inline { len }.encode());
                    32
                }
        })
    };
    for len in [u64::MAX, u64::MAX - 7, u64::MAX - 6, 1 << 63] {
        match after_a_header(len) {
            Err(Error::LimitExceeded { what: "message size", announced, limit, .. }) => {
                assert_eq!((announced, limit), ((h.len() as u64).saturating_add(len), 1 << 20), "{len}")
            }
            other => panic!("a frame of {len} bytes: {other:?}"),
        }
    }
    let none = hostile(&server, |c| records(c, &[(Record::Begin { frames: 0 }, &[])]));
    assert!(
        matches!(&none, Err(Error::Transport { message, .. }) if message.contains("0 frames")),
        "{none:?}"
    );
    let most = hostile(&server, |c| records(c, &[(Record::Begin { frames: u32::MAX }, &[])]));
    assert!(
        matches!(most, Err(Error::LimitExceeded { announced, .. }) if announced == u64::from(u32::MAX) - 1),
        "{most:?}"
    );
}

/// Writes from stream position `at` a message of one bulk of `len` bytes offered as offer `offer` at
/// `address` (in this process), then `fallback` through the ring when given; marks the offer pending
/// and publishes. Returns the end.
fn offer_message(
    channel: &Channel<'_>,
    at: u64,
    (offer, address, len): (u32, u64, u64),
    fallback: &[u8],
) -> u64 {
    let h1 = header_with_one_bulk(len as usize);
    let me = Process::current().pid;
    let mut parts = vec![
        (Record::Begin { frames: 2 }, &[][..]),
        (Record::Inline { len: h1.len() as u64 }, &h1[..]),
        (Record::Remote { offer, len, address, pid: me }, &[][..]),
    ];
    if !fallback.is_empty() {
        parts.push((Record::Inline { len: fallback.len() as u64 }, fallback));
    }
    let mut end = at;
    for (record, bytes) in parts {
        channel.write(end, &record.encode());
        channel.write(end + 32, bytes);
        end += 32 + bytes.len() as u64 + padding(bytes.len() as u64);
    }
    channel.transfer().store(transfer::pack(offer, transfer::PENDING), std::sync::atomic::Ordering::Release);
    channel.publish_tail(end);
    end
}

/// An offer is read only when the channel's own process told it over its connection (the kernel names
/// that process): a told offer is copied; a record nobody told is refused (the bytes come through the
/// ring) and the connection stays trusted; once the connection is gone, every offer is refused; and a
/// connection that told another offer than the record's is trusted no more.
#[test]
fn offers_are_read_only_as_the_owners_connection_tells_them() {
    let server = server();
    let bulk = |server: &SharedMemoryServer| {
        let payloads = server.recv_message(Duration::from_secs(5)).unwrap().into_payloads();
        payloads[0].to_vec()
    };
    let counts = |server: &SharedMemoryServer| {
        let copies = server.single_copies();
        (copies.copied, copies.refused)
    };
    let segment = Segment::open(server.address().trim_start_matches("shm://")).unwrap();
    let queue = Queue::open(&segment).unwrap();
    let data = vec![5u8; 4096];
    let fallback = vec![b'f'; 4096];
    let offer = |id: u32| Offer { offer: id, address: data.as_ptr() as u64, len: 4096 };
    let described = |id: u32| (id, data.as_ptr() as u64, 4096);

    let index = queue.claim(Process::current(), 7).unwrap();
    let channel = queue.channel(index);
    let link = Link::connect(queue.listener(), queue.server().pid, index, 7).expect("a link");
    assert!(link.tell(offer(1)));
    let at = offer_message(&channel, 0, described(1), &[]);
    assert_eq!((bulk(&server), counts(&server)), (data.clone(), (1, 0)), "a told offer is copied");
    let at = offer_message(&channel, at, described(2), &fallback);
    assert_eq!((bulk(&server), counts(&server)), (fallback.clone(), (1, 1)), "an untold record is refused");
    assert!(link.tell(offer(3)));
    let at = offer_message(&channel, at, described(3), &[]);
    assert_eq!((bulk(&server), counts(&server)), (data.clone(), (2, 1)), "the link is still trusted");
    drop(link);
    offer_message(&channel, at, described(4), &fallback);
    assert_eq!((bulk(&server), counts(&server)), (fallback.clone(), (2, 2)), "a closed link is not trusted");
    channel.set_state(state::RELEASED);

    let index = queue.claim(Process::current(), 9).unwrap();
    let channel = queue.channel(index);
    let link = Link::connect(queue.listener(), queue.server().pid, index, 9).expect("a link");
    assert!(link.tell(Offer { address: 8, ..offer(1) }));
    let at = offer_message(&channel, 0, described(1), &fallback);
    assert_eq!((bulk(&server), counts(&server)), (fallback.clone(), (2, 3)), "another offer told");
    assert!(!link.tell(offer(2)), "the server closed a link out of step");
    offer_message(&channel, at, described(2), &fallback);
    assert_eq!((bulk(&server), counts(&server)), (fallback, (2, 4)), "a link out of step is not trusted");
    channel.set_state(state::RELEASED);
}

/// A vouched offer whose bytes cannot be allocated (2^62 bytes, under a limit of 2^63 that allows it) is
/// refused (the bytes would come through the ring, where the frame grows as they arrive): the
/// channel is not failed with an allocation error.
#[test]
fn an_offer_too_large_to_allocate_is_refused_not_an_error() {
    let options = Options::default().with_max_message_size(Some(1 << 63)).with_max_bulks(8);
    let shm = ShmOptions::default().with_stall_timeout(Duration::from_millis(300));
    let server = SharedMemoryServer::bind("unit-huge-offer", "shm", 0, &options, &shm).unwrap();
    let segment = Segment::open(server.address().trim_start_matches("shm://")).unwrap();
    let queue = Queue::open(&segment).unwrap();
    let index = queue.claim(Process::current(), 5).unwrap();
    let channel = queue.channel(index);
    let link = Link::connect(queue.listener(), queue.server().pid, index, 5).expect("a link");
    let len = 1u64 << 62;
    assert!(link.tell(Offer { offer: 1, address: 4096, len }));
    // The header tells of a 4-byte bulk (its bytes are not looked at before the message is whole), and
    // nothing follows the offer: the ring's bytes never come.
    let h1 = header_with_one_bulk(4);
    let me = Process::current().pid;
    channel.transfer().store(transfer::pack(1, transfer::PENDING), std::sync::atomic::Ordering::Release);
    let end = records(
        &channel,
        &[
            (Record::Begin { frames: 2 }, &[]),
            (Record::Inline { len: h1.len() as u64 }, &h1),
            (Record::Remote { offer: 1, len, address: 4096, pid: me }, &[]),
        ],
    );
    channel.publish_tail(end);
    let outcome = server.recv_message(Duration::from_millis(600));
    assert!(
        !matches!(outcome, Err(Error::InvalidArgument(_))),
        "{:?}",
        outcome.as_ref().map(|m| m.bulk_count())
    );
    let word = channel.transfer().load(std::sync::atomic::Ordering::Acquire);
    assert_eq!(
        word,
        transfer::pack(1, transfer::REFUSED),
        "the offer was not refused: {:?}",
        outcome.map(|m| m.bulk_count())
    );
    assert_eq!(server.single_copies().refused, 1);
    channel.set_state(state::RELEASED);
}

/// Short messages: handed over as written on a mesh's server; garbage (too long, published in part,
/// or on a server that takes none) is an error for that channel, and the server goes on.
#[test]
fn short_messages_are_handed_over_and_their_garbage_is_refused() {
    use super::record::SHORT_MAX;
    use super::Arrival;
    fn short(len: u32, bytes: &[u8]) -> impl Fn(&Channel<'_>) -> u64 + '_ {
        move |c: &Channel<'_>| records(c, &[(Record::Short { len }, bytes)])
    }
    let plain = server();
    let refused = hostile(&plain, short(5, b"hello"));
    assert!(
        matches!(&refused, Err(Error::Transport { .. })),
        "a plain server takes no short message: {refused:?}"
    );
    let server = server().with_short_messages();
    let receive = |write: &dyn Fn(&Channel<'_>) -> u64| {
        let segment = Segment::open(server.address().trim_start_matches("shm://")).unwrap();
        let queue = Queue::open(&segment).unwrap();
        let channel = queue.channel(queue.claim(Process::current(), 1).unwrap());
        channel.publish_tail(write(&channel));
        let started = Instant::now();
        let arrival = server.recv_unless(Duration::from_secs(5), &|| false);
        assert!(started.elapsed() < Duration::from_secs(3), "took {:?}", started.elapsed());
        channel.set_state(state::RELEASED);
        arrival
    };
    match receive(&short(5, b"hello")) {
        Ok(Some(Arrival::Short(bytes))) => assert_eq!(bytes, b"hello"),
        other => panic!("a short message: {:?}", other.map(|a| a.map(|_| ()))),
    }
    let too_long = vec![0; SHORT_MAX + 8];
    for (what, write) in [
        ("too long", Box::new(short(SHORT_MAX as u32 + 1, &too_long)) as Box<dyn Fn(&Channel<'_>) -> u64>),
        ("published in part", Box::new(move |c: &Channel<'_>| short(64, &[7; 64])(c) - 8)),
    ] {
        let error = receive(&*write).map(|_| ()).expect_err(what);
        assert!(error.to_string().contains("garbage"), "{what}: {error}");
    }
    let sender =
        SharedMemoryClient::connect(server.address(), "shm", 0, &Options::default(), &ShmOptions::default())
            .unwrap();
    sender.send(&LbmMeta::new(())).into_result().unwrap(); // attaches, the general way
    assert!(sender.send_short(&[b"one ", b"message"]).unwrap());
    assert!(!sender.send_short(&[&too_long]).unwrap(), "too long for the fast path: sent the general way");
    assert!(matches!(server.recv_unless(Duration::from_secs(5), &|| false), Ok(Some(Arrival::Frames(_)))));
    match server.recv_unless(Duration::from_secs(5), &|| false) {
        Ok(Some(Arrival::Short(bytes))) => assert_eq!(bytes, b"one message"),
        other => panic!("the client's short message: {:?}", other.map(|a| a.map(|_| ()))),
    }
}

/// A short message is held to the server's limit on message size, as any other.
#[test]
fn a_short_message_past_max_message_size_is_refused() {
    use super::Arrival;
    let options = Options::default().with_max_message_size(Some(1024));
    let server =
        SharedMemoryServer::bind("unit-short-limit", "shm", 0, &options, &ShmOptions::default()).unwrap();
    let server = server.with_short_messages();
    let client =
        SharedMemoryClient::connect(server.address(), "shm", 0, &Options::default(), &ShmOptions::default())
            .unwrap();
    client.send(&LbmMeta::new(())).into_result().unwrap(); // attaches
    assert!(matches!(server.recv_unless(Duration::from_secs(5), &|| false), Ok(Some(Arrival::Frames(_)))));
    assert!(client.send_short(&[&[7u8; 2000]]).unwrap());
    let refused = server.recv_unless(Duration::from_secs(5), &|| false).map(|a| a.is_some());
    assert!(matches!(refused, Err(Error::LimitExceeded { announced: 2000, limit: 1024, .. })), "{refused:?}");
}
