//! Bad input of every kind: each returns an error that says what is wrong, writes nothing past a buffer,
//! and the same server then receives the next good message.

mod util;

use std::time::{Duration, Instant};

use lightbeam::wire;
use lightbeam::{
    Bulk, BulkFlags, Endpoint, Error, LbmMeta, Options, Protocol, Server, Transport, TransportFactory,
    WireError, ZeroMqClient, ZeroMqServer,
};
use util::*;

/// Sends `frames` as one multipart message from a raw socket.
fn send_raw(socket: &zmq::Socket, frames: &[&[u8]]) {
    socket.send_multipart(frames.iter().copied(), 0).unwrap();
}

/// A well-formed header frame announcing bulks of `sizes`, with `custom` as custom metadata.
fn header(sizes: &[usize], custom: impl serde::Serialize) -> Vec<u8> {
    let data = vec![0u8; sizes.iter().copied().max().unwrap_or(0)];
    let bulks: Vec<Bulk<'_>> = sizes.iter().map(|&n| Bulk::source(&data[..n], BulkFlags::NONE)).collect();
    wire::encode_header(&bulks, |out| wire::encode_custom(&custom, out)).unwrap()
}

/// Asserts the next message fails with `expected`, then that a good message after it arrives intact.
#[track_caller]
fn rejects_then_recovers(server: &ZeroMqServer, expected: impl Fn(&Error) -> bool) {
    let error = recv_all::<u32>(server).expect_err("bad message was accepted");
    assert!(expected(&error), "unexpected error: {error}");
    assert!(!error.to_string().is_empty());
    let client = ZeroMqClient::connect(&server.address().parse().unwrap(), &Options::default()).unwrap();
    send_all(&client, 7u32, &[b"good"]);
    assert_eq!(recv_all::<u32>(server).unwrap(), (7, vec![b"good".to_vec()]));
}

/// A check of which wire error a case must produce.
type WireCheck = fn(&WireError) -> bool;

fn wire_error(check: impl Fn(&WireError) -> bool) -> impl Fn(&Error) -> bool {
    move |e| matches!(e, Error::Wire(w) if check(w))
}

#[test]
fn garbage_empty_truncated_bad_magic_and_bad_version() {
    let (server, _) = pair(Protocol::Tcp);
    let raw = raw_push(&server);
    let good = header(&[4], 1u32);
    let mut bad_version = good.clone();
    bad_version[4] = 99;
    let cases: [(&[u8], WireCheck); 5] = [
        (b"\xde\xad\xbe\xef garbage that is long enough", |w| matches!(w, WireError::BadMagic { .. })),
        (b"", |w| matches!(w, WireError::Truncated { len: 0, .. })),
        (&good[..9], |w| matches!(w, WireError::Truncated { len: 9, .. })),
        (&good[..good.len() - 1], |w| matches!(w, WireError::Truncated { .. })),
        (&bad_version, |w| matches!(w, WireError::BadVersion { found: 99, .. })),
    ];
    for (frame, check) in cases {
        send_raw(&raw, &[frame, b"data"]);
        rejects_then_recovers(&server, wire_error(check));
    }
}

#[test]
fn metadata_of_another_type_is_rejected() {
    let (server, _) = pair(Protocol::Tcp);
    send_raw(&raw_push(&server), &[&header(&[], "a string, not a u32 alone")]);
    rejects_then_recovers(&server, wire_error(|w| matches!(w, WireError::Metadata(_))));
}

#[test]
fn fewer_or_more_bulk_frames_than_announced() {
    let (server, _) = pair(Protocol::Tcp);
    let raw = raw_push(&server);
    send_raw(&raw, &[&header(&[3, 3], 1u32), b"abc"]);
    rejects_then_recovers(
        &server,
        wire_error(|w| *w == WireError::BulkCountMismatch { announced: 2, received: 1 }),
    );
    send_raw(&raw, &[&header(&[3], 1u32), b"abc", b"def"]);
    rejects_then_recovers(
        &server,
        wire_error(|w| *w == WireError::BulkCountMismatch { announced: 1, received: 2 }),
    );
}

#[test]
fn a_bulk_frame_whose_length_differs_from_its_descriptor() {
    let (server, _) = pair(Protocol::Tcp);
    send_raw(&raw_push(&server), &[&header(&[3], 1u32), b"abcdef"]);
    rejects_then_recovers(
        &server,
        wire_error(|w| *w == WireError::BulkSizeMismatch { index: 0, announced: 3, received: 6 }),
    );
}

#[test]
fn a_bulk_larger_than_the_exposed_buffer_writes_nothing() {
    let (server, client) = pair(Protocol::Tcp);
    send_all(&client, 1u32, &[b"ok", b"too long for it"]);
    let mut meta = recv_meta::<u32>(&server).unwrap();
    let (mut first, mut small) = ([0u8; 2], [0xAAu8; 8]);
    meta.bulks = vec![server.expose(&mut first, BulkFlags::NONE), server.expose(&mut small, BulkFlags::NONE)];
    let error = server.recv_bulks(&mut meta).into_result().unwrap_err();
    assert_eq!(error, Error::BufferTooSmall { index: 1, needed: 15, exposed: 8 });
    assert!(error.to_string().contains("15 bytes do not fit the exposed buffer of 8"));
    assert_eq!((first, small), ([0; 2], [0xAA; 8]), "a buffer was written before the check");
    rejects_then_recovers_after_good(&server);
}

fn rejects_then_recovers_after_good(server: &ZeroMqServer) {
    let client = ZeroMqClient::connect(&server.address().parse().unwrap(), &Options::default()).unwrap();
    send_all(&client, 9u32, &[b"next"]);
    assert_eq!(recv_all::<u32>(server).unwrap(), (9, vec![b"next".to_vec()]));
}

#[test]
fn two_phase_calls_out_of_order() {
    let (server, client) = pair(Protocol::Inproc);
    let mut meta = LbmMeta::<u32>::default();
    assert_eq!(server.recv_bulks(&mut meta).error(), Some(&Error::NoPendingMessage));

    send_all(&client, 1u32, &[b"one", b"two"]);
    send_all(&client, 2u32, &[b"three"]);
    let mut meta = recv_meta::<u32>(&server).unwrap();
    let error = server.recv_metadata(&mut LbmMeta::<u32>::default()).into_result().unwrap_err();
    assert_eq!(error, Error::BulksPending(2));
    // The pending message survives the misuse: expose too few buffers, which consumes it with an error.
    let mut only = [0u8; 3];
    meta.bulks = vec![server.expose(&mut only, BulkFlags::NONE)];
    let error = server.recv_bulks(&mut meta).into_result().unwrap_err();
    assert_eq!(error, Error::BulksNotExposed { announced: 2, exposed: 1 });
    assert_eq!(recv_all::<u32>(&server).unwrap(), (2, vec![b"three".to_vec()]));

    send_all(&client, 3u32, &[b"dropped"]);
    recv_meta::<u32>(&server).unwrap();
    assert_eq!(server.discard_pending(), 1);
    rejects_then_recovers_after_good(&server);
}

#[test]
fn sending_a_bulk_not_exposed_for_sending_is_an_error() {
    let (_server, client) = pair(Protocol::Inproc);
    let meta = LbmMeta::<()>::default().with_bulk(Bulk::descriptor(5, BulkFlags::NONE));
    let error = lightbeam::Client::send(&client, &meta).into_result().unwrap_err();
    assert!(matches!(error, Error::InvalidArgument(ref m) if m.contains("bulk 0")), "{error}");
}

#[test]
fn unparsable_addresses_unknown_protocols_and_ports_in_use() {
    let bad = TransportFactory::server("not an address", Transport::ZeroMq, "tcp", 1).unwrap_err();
    assert!(matches!(bad, Error::InvalidAddress { .. }), "{bad}");
    let bad = TransportFactory::client("127.0.0.1", Transport::ZeroMq, "udp", 1).unwrap_err();
    assert_eq!(bad.to_string(), "unknown protocol \"udp\": expected tcp, ipc or inproc");
    let bad = TransportFactory::client("127.0.0.1", Transport::ZeroMq, "tcp", 0).unwrap_err();
    assert!(matches!(bad, Error::InvalidAddress { .. }), "{bad}");

    let (first, _) = pair(Protocol::Tcp);
    let port: u16 = first.address().rsplit(':').next().unwrap().parse().unwrap();
    let taken = ZeroMqServer::new("127.0.0.1", "tcp", port).unwrap_err();
    assert_eq!(taken, Error::AddressInUse { endpoint: format!("tcp://127.0.0.1:{port}"), port });
    assert!(taken.to_string().contains(&format!("port {port}")), "{taken}");

    let name = fresh_endpoint(Protocol::Inproc);
    let _held = ZeroMqServer::bind(&name, &Options::default()).unwrap();
    assert!(matches!(ZeroMqServer::bind(&name, &Options::default()), Err(Error::AddressInUse { .. })));
}

#[test]
fn a_send_with_no_peer_times_out_with_a_clear_error() {
    let options = Options::default().with_send_timeout(Some(Duration::from_millis(200)));
    // A plain TCP listener holds the port: connections open, but no ZeroMQ peer ever answers, so no
    // message can be taken (and no other test can take the port meanwhile).
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = silent.local_addr().unwrap().port();
    let client =
        ZeroMqClient::connect(&format!("tcp://127.0.0.1:{port}").parse().unwrap(), &options).unwrap();
    let started = Instant::now();
    let error = lightbeam::Client::send(&client, &LbmMeta::new(1u8)).into_result().unwrap_err();
    assert!(matches!(error, Error::Timeout { .. }), "{error}");
    assert!(error.to_string().contains(&format!("127.0.0.1:{port}")), "{error}");
    assert!(started.elapsed() < WAIT, "the send did not give up");
    let started = Instant::now();
    drop(client);
    assert!(started.elapsed() < WAIT, "dropping the client hung");
}

#[test]
fn a_message_over_the_configured_cap_is_never_delivered_and_the_server_goes_on() {
    let options = Options::default().with_max_message_size(Some(64 << 10));
    let server = ZeroMqServer::bind(&fresh_endpoint(Protocol::Tcp), &options).unwrap();
    let endpoint = lightbeam::Server::address(&server).parse().unwrap();
    let big = ZeroMqClient::connect(&endpoint, &Options::default()).unwrap();
    send_all(&big, 1u32, &[&pattern(1 << 20, 1)]);
    let event = lightbeam::Server::recv_metadata_timeout(
        &server,
        &mut LbmMeta::<u32>::default(),
        Duration::from_millis(500),
    );
    assert!(!event.is_done(), "a message over the cap was delivered");
    let small = ZeroMqClient::connect(&endpoint, &Options::default()).unwrap();
    send_all(&small, 2u32, &[b"small"]);
    assert_eq!(recv_all::<u32>(&server).unwrap(), (2, vec![b"small".to_vec()]));
}

#[test]
fn a_receive_that_times_out_says_so() {
    let (server, _client) = pair(Protocol::Tcp);
    let waited = Duration::from_millis(100);
    let error =
        server.recv_metadata_timeout(&mut LbmMeta::<()>::default(), waited).into_result().unwrap_err();
    assert!(matches!(error, Error::Timeout { after, .. } if after >= waited), "{error}");
    let error = server.recv_message(waited).unwrap_err();
    assert!(matches!(error, Error::Timeout { .. }), "{error}");
}

#[test]
fn host_names_bind_and_impossible_addresses_are_refused() {
    let server = TransportFactory::server("localhost", Transport::ZeroMq, "tcp", 0).unwrap();
    assert!(server.address().starts_with("tcp://127."), "{}", server.address());
    let client = ZeroMqClient::connect(&server.address().parse().unwrap(), &Options::default()).unwrap();
    send_all(&client, 3u32, &[b"via localhost"]);
    assert_eq!(recv_all::<u32>(server.as_ref()).unwrap(), (3, vec![b"via localhost".to_vec()]));
    for bad in ["tcp://999.1.1.1:5", "tcp://1.2.3:5", "tcp://bad_host:5"] {
        assert!(matches!(Endpoint::parse(bad), Err(Error::InvalidAddress { .. })), "{bad} parsed");
    }
}

#[test]
fn a_second_ipc_server_on_a_live_path_is_refused_and_the_first_keeps_its_peers() {
    let endpoint = fresh_endpoint(Protocol::Ipc);
    let first = ZeroMqServer::bind(&endpoint, &Options::default()).unwrap();
    let second = ZeroMqServer::bind(&endpoint, &Options::default()).unwrap_err();
    assert!(matches!(second, Error::AddressInUse { .. }), "{second}");
    let client = ZeroMqClient::connect(&endpoint, &Options::default()).unwrap();
    send_all(&client, 4u32, &[b"still mine"]);
    assert_eq!(recv_all::<u32>(&first).unwrap(), (4, vec![b"still mine".to_vec()]));
    // Once the first server is gone (ZeroMQ closes its listener in the background), the path binds again.
    drop((client, first));
    let deadline = Instant::now() + WAIT;
    while let Err(error) = ZeroMqServer::bind(&endpoint, &Options::default()) {
        assert!(Instant::now() < deadline, "the path stayed taken: {error}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn messages_over_the_limits_never_reach_the_application() {
    let options = Options::default().with_max_message_size(Some(64 << 10)).with_max_bulks(8);
    let server = ZeroMqServer::bind(&fresh_endpoint(Protocol::Tcp), &options).unwrap();
    let raw = raw_push(&server);
    // Frames each under the cap but adding up to more than it.
    let piece = vec![0u8; 40 << 10];
    send_raw(&raw, &[&header(&[piece.len(), piece.len()], 1u32), &piece, &piece]);
    let over =
        |what: &'static str| move |e: &Error| matches!(e, Error::LimitExceeded { what: w, .. } if *w == what);
    rejects_then_recovers(&server, over("message size"));
    // More bulks than allowed, as descriptors and as frames.
    let nine = header(&[0; 9], 1u32);
    let frames: Vec<&[u8]> = std::iter::once(&nine[..]).chain(std::iter::repeat_n(&b""[..], 9)).collect();
    send_raw(&raw, &frames);
    rejects_then_recovers(&server, over("bulk frame count"));
}
