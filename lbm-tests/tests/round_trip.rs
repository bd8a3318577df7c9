//! Round trips over every protocol, custom metadata, edge sizes, and many threads on one server.

mod util;

use std::sync::Arc;
use std::time::Duration;

use lightbeam::{Client, LbmMeta, Protocol, Server, Transport, TransportFactory};
use serde::{Deserialize, Serialize};
use util::*;

#[derive(Debug, Default, PartialEq, Serialize, Deserialize)]
struct Request {
    request_id: u32,
    operation: String,
    client_name: String,
}

#[test]
fn round_trip_over_every_protocol() {
    for protocol in [Protocol::Tcp, Protocol::Ipc, Protocol::Inproc] {
        let (server, client) = pair(protocol);
        let payload = pattern(100_003, 7);
        assert_eq!(send_all(&client, 5u64, &[&payload, b"tail"]), 100_007);
        let (custom, buffers) = recv_all::<u64>(&server).unwrap();
        assert_eq!(custom, 5, "{protocol}");
        assert_eq!(buffers, [payload, b"tail".to_vec()], "{protocol}");
    }
}

#[test]
fn factory_binds_port_zero_and_reports_the_real_port() {
    let server = TransportFactory::server("127.0.0.1", Transport::ZeroMq, "tcp", 0).unwrap();
    let port: u16 = server.address().rsplit(':').next().unwrap().parse().unwrap();
    assert_ne!(port, 0);
    let client = TransportFactory::client("127.0.0.1", Transport::ZeroMq, "tcp", port).unwrap();
    assert_eq!(client.address(), server.address());
    send_all(client.as_ref(), (), &[b"hi"]);
    assert_eq!(recv_all::<()>(server.as_ref()).unwrap().1, [b"hi".to_vec()]);
}

#[test]
fn custom_metadata_arrives_with_its_bulks() {
    let (server, client) = pair(Protocol::Tcp);
    let request =
        |id: u32| Request { request_id: id, operation: "write".into(), client_name: "client_01".into() };
    send_all(&client, request(42), &[b"First chunk", b"Second chunk"]);
    send_all(&client, request(43), &[b"a", b"bb", b"ccc", b"dddd"]);
    let (custom, buffers) = recv_all::<Request>(&server).unwrap();
    assert_eq!((custom, buffers.len()), (request(42), 2));
    let (custom, buffers) = recv_all::<Request>(&server).unwrap();
    assert_eq!(custom, request(43));
    assert_eq!(buffers.concat(), b"abbcccdddd");
}

#[test]
fn recv_metadata_does_not_block_when_nothing_waits() {
    let (server, _client) = pair(Protocol::Tcp);
    let event = server.recv_metadata(&mut LbmMeta::<()>::default());
    assert!(!event.is_done());
    assert_eq!(event.error_code(), 0);
}

#[test]
fn edge_sizes_no_bulks_empty_bulks_and_a_thousand_bulks() {
    let (server, client) = pair(Protocol::Tcp);
    send_all(&client, 1u8, &[]);
    assert_eq!(recv_all::<u8>(&server).unwrap(), (1, vec![]));
    send_all(&client, 2u8, &[b"", b"x", b""]);
    assert_eq!(recv_all::<u8>(&server).unwrap(), (2, vec![vec![], b"x".to_vec(), vec![]]));
    let many: Vec<Vec<u8>> = (0..1000).map(|i| pattern(i % 17, i as u64)).collect();
    send_all(&client, 3u8, &many.iter().map(Vec::as_slice).collect::<Vec<_>>());
    assert_eq!(recv_all::<u8>(&server).unwrap(), (3, many));
}

#[test]
fn a_single_256_mib_bulk() {
    let (server, client) = pair(Protocol::Tcp);
    let payload = pattern(256 << 20, 11);
    let sum = checksum(&payload);
    assert_eq!(send_all(&client, (), &[&payload]), 256 << 20);
    drop(payload);
    let (_, buffers) = recv_all::<()>(&server).unwrap();
    assert_eq!(buffers[0].len(), 256 << 20);
    assert_eq!(checksum(&buffers[0]), sum);
}

#[test]
fn a_larger_buffer_receives_the_bulk_and_reports_its_size() {
    let (server, client) = pair(Protocol::Inproc);
    send_all(&client, (), &[b"four"]);
    let mut meta = recv_meta::<()>(&server).unwrap();
    let mut buffer = [0u8; 10];
    meta.bulks[0] = server.expose(&mut buffer, Default::default());
    assert_eq!(server.recv_bulks(&mut meta).bytes_transferred(), 4);
    assert_eq!(&buffer[..4], b"four");
}

#[test]
fn many_client_threads_share_one_server_and_one_client() {
    const THREADS: usize = 4;
    const PER_THREAD: usize = 50;
    let (server, client) = pair(Protocol::Tcp);
    let client = Arc::new(client);
    let senders: Vec<_> = (0..THREADS)
        .map(|t| {
            let client = Arc::clone(&client);
            std::thread::spawn(move || {
                for i in 0..PER_THREAD {
                    let payload = pattern(1 + (t * 7919 + i * 104_729) % 300_000, (t * 1000 + i) as u64);
                    send_all(client.as_ref(), (t, i, checksum(&payload)), &[&payload, &payload[..1]]);
                }
            })
        })
        .collect();
    let mut seen = vec![vec![false; PER_THREAD]; THREADS];
    for _ in 0..THREADS * PER_THREAD {
        let ((t, i, sum), buffers) = recv_all::<(usize, usize, u64)>(&server).unwrap();
        assert_eq!(checksum(&buffers[0]), sum, "message {t}/{i} corrupted");
        assert_eq!(buffers[1], buffers[0][..1]);
        assert!(!std::mem::replace(&mut seen[t][i], true), "message {t}/{i} twice");
    }
    senders.into_iter().for_each(|s| s.join().unwrap());
    assert!(seen.iter().flatten().all(|&s| s));
}

#[test]
fn bulks_can_be_read_in_place_without_a_copy() {
    let (server, client) = pair(Protocol::Ipc);
    send_all(&client, (), &[b"in", b"place"]);
    recv_meta::<()>(&server).unwrap();
    let payloads = server.take_bulks().unwrap();
    assert_eq!(payloads.iter().map(|p| &p[..]).collect::<Vec<_>>(), [&b"in"[..], b"place"]);
}

#[test]
fn owned_bulks_are_sent_without_a_copy_once_and_kept_when_a_send_fails() {
    let (server, client) = pair(Protocol::Tcp);
    let owned = lbm_tests::verify::pattern(1 << 20, 3);
    let meta = LbmMeta::new(7u32)
        .with_bulk(client.expose(b"borrowed", Default::default()))
        .with_bulk(client.expose_owned(owned.clone(), Default::default()));
    assert!(meta.bulks[1].is_owned() && meta.bulks[1].source_bytes().is_none());
    assert_eq!(client.send(&meta).into_result().unwrap(), 8 + (1 << 20));
    let (custom, buffers) = recv_all::<u32>(&server).unwrap();
    assert_eq!((custom, &buffers[0][..], &buffers[1]), (7, &b"borrowed"[..], &owned));

    let again = client.send(&meta).into_result().unwrap_err();
    assert!(again.to_string().contains("bulk 1 was given away by an earlier send"), "{again}");

    // No server yet: the send times out before anything is taken, so the same message can go later.
    let endpoint = fresh_endpoint(Protocol::Ipc);
    let options = lightbeam::Options::default().with_send_timeout(Some(Duration::from_millis(100)));
    let early = lightbeam::ZeroMqClient::connect(&endpoint, &options).unwrap();
    let meta = LbmMeta::new(()).with_bulk(early.expose_owned(vec![5; 64], Default::default()));
    assert!(!sent_or_timed_out_keeping_the_bulk(&early, &meta), "sent with no server");
    let server = lightbeam::ZeroMqServer::bind(&endpoint, &Default::default()).unwrap();
    // The client reconnects on its own schedule (ZeroMQ retries every 100 ms or more), which may come after
    // a 100 ms send timeout: each send until then times out and keeps the bulk, then the same message goes.
    let attempts = (1..=WAIT.as_millis() / 100)
        .find(|_| sent_or_timed_out_keeping_the_bulk(&early, &meta))
        .unwrap_or_else(|| panic!("no reconnect within {WAIT:?}"));
    println!("sent on attempt {attempts} after the server bound");
    assert_eq!(recv_all::<()>(&server).unwrap().1, [vec![5u8; 64]]);
}

/// Sends `meta`: true when it went; false when it timed out, after checking that it left its owned bulk.
#[track_caller]
fn sent_or_timed_out_keeping_the_bulk(client: &lightbeam::ZeroMqClient, meta: &LbmMeta<'_, ()>) -> bool {
    match client.send(meta).into_result() {
        Ok(_) => true,
        Err(error) => {
            assert!(matches!(error, lightbeam::Error::Timeout { .. }), "{error}");
            assert!(meta.bulks[0].is_owned(), "a send that timed out took the bulk");
            false
        }
    }
}
