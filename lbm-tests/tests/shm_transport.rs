//! The shared-memory transport end to end: round trips with 0 to 1,000 bulks and 0 B to 64 MiB (single
//! copy and the forced fallback through the ring), custom metadata, many threads on one server, a second
//! process on each side, a peer killed mid-transfer (reported as lost, not timed out), timeouts, garbage
//! written into the queue by a process of the node, and nothing left in /dev/shm.

mod util;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use lightbeam::shm::{Segment, ShmPtr};
use lightbeam::{
    Client, Error, LbmMeta, Options, Server, SharedMemoryClient, SharedMemoryServer, ShmOptions, Transport,
    TransportFactory,
};
use util::{checksum, pattern, recv_all, send_all, wait_ended};

const PEER: &str = env!("CARGO_BIN_EXE_lbm-test-shm-transport-peer");

/// The custom metadata every test message carries: a label and the checksum of each bulk.
type Custom = (String, Vec<u64>);

fn server_with(shm: &ShmOptions) -> SharedMemoryServer {
    SharedMemoryServer::bind("shmtest", "shm", 0, &Options::default(), shm).unwrap()
}

fn client_of(server: &dyn Server, options: &Options, shm: &ShmOptions) -> SharedMemoryClient {
    SharedMemoryClient::connect(server.address(), "shm", 0, options, shm).unwrap()
}

/// The segment file of a server at `address`.
fn segment_file(address: &str) -> std::path::PathBuf {
    std::path::Path::new("/dev/shm").join(format!("lightbeam-{}", address.trim_start_matches("shm://")))
}

/// Sends `payloads` with their checksums and checks that they arrive whole, through `recv_bulks`. The
/// server receives in another thread meanwhile: a message larger than the ring needs a receiver.
fn round_trip(server: &(dyn Server + Sync), client: &dyn Client, payloads: &[&[u8]]) {
    let sums: Vec<u64> = payloads.iter().map(|p| checksum(p)).collect();
    let ((label, announced), received) = std::thread::scope(|scope| {
        let receiving = scope.spawn(|| recv_all::<Custom>(server).unwrap());
        let sent = send_all(client, ("label".to_string(), sums.clone()), payloads);
        assert_eq!(sent, payloads.iter().map(|p| p.len()).sum::<usize>());
        receiving.join().unwrap()
    });
    assert_eq!((label.as_str(), &announced), ("label", &sums));
    let got: Vec<u64> = received.iter().map(|b| checksum(b)).collect();
    assert_eq!(got, sums, "bulks of sizes {:?}", payloads.iter().map(|p| p.len()).collect::<Vec<_>>());
}

fn sizes_and_counts(shm: &ShmOptions) {
    let server = server_with(shm);
    let client = client_of(&server, &Options::default(), shm);
    let sizes = [0, 1, 7, 8, 100, 4095, 65_535, 65_536, 524_288, 1 << 20, 16 << 20, 64 << 20];
    for (i, size) in sizes.into_iter().enumerate() {
        let data = pattern(size, i as u64);
        round_trip(&server, &client, &[&data]);
    }
    for count in [0, 1, 2, 10, 1000] {
        let bulks: Vec<Vec<u8>> = (0..count).map(|j| pattern(j % 300, j as u64)).collect();
        let refs: Vec<&[u8]> = bulks.iter().map(Vec::as_slice).collect();
        round_trip(&server, &client, &refs);
    }
    let mixed: Vec<Vec<u8>> = [0, 70_000, 3, 2 << 20, 0].iter().map(|&n| pattern(n, n as u64)).collect();
    round_trip(&server, &client, &mixed.iter().map(Vec::as_slice).collect::<Vec<_>>());
    let file = segment_file(server.address());
    assert!(file.exists());
    drop((client, server));
    assert!(!file.exists(), "{} left behind", file.display());
}

#[test]
fn round_trips_from_0_to_1000_bulks_and_0_bytes_to_64_mib() {
    sizes_and_counts(&ShmOptions::default());
}

#[test]
fn the_fallback_through_the_ring_carries_everything_when_single_copy_is_refused() {
    // The server refuses every offer; the client offers every bulk, so each size takes the refusal path.
    let refusing = ShmOptions::default().with_single_copy_from(None);
    let server = server_with(&refusing);
    let offering = ShmOptions::default().with_single_copy_from(Some(0));
    let client = client_of(&server, &Options::default(), &offering);
    for size in [0, 1, 100, 1 << 20, 16 << 20] {
        let data = pattern(size, 3);
        round_trip(&server, &client, &[&data, &data]);
    }
    // And the pipelined path alone, as a client that never offers uses it.
    sizes_and_counts(&refusing);
}

#[test]
fn the_factory_makes_both_ends_and_owned_bulks_are_handed_back_on_failure() {
    let server = TransportFactory::server("shmtest", Transport::SharedMemory, "shm", 0).unwrap();
    assert!(server.address().starts_with("shm://shmtest-"), "{}", server.address());
    let client = TransportFactory::client(server.address(), Transport::SharedMemory, "shm", 0).unwrap();
    let data = pattern(200_000, 9);
    let meta = LbmMeta::new(("owned".to_string(), vec![checksum(&data)]))
        .with_bulk(client.expose_owned(data.clone(), Default::default()));
    client.send(&meta).into_result().unwrap();
    let ((label, _), bulks) = recv_all::<Custom>(&*server).unwrap();
    assert_eq!((label.as_str(), checksum(&bulks[0])), ("owned", checksum(&data)));
    let bad = TransportFactory::server("shmtest", Transport::SharedMemory, "tcp", 0).unwrap_err();
    assert!(matches!(bad, Error::UnknownProtocol(_)), "{bad}");
    let endpoint = lightbeam::Endpoint::new("127.0.0.1", "tcp", 0).unwrap();
    let refused = TransportFactory::server_with(&endpoint, Transport::SharedMemory, &Options::default());
    assert!(matches!(refused, Err(Error::InvalidArgument(_))));
}

#[test]
fn a_fixed_name_in_use_is_refused() {
    let name = format!("shmtest-fixed-{}", std::process::id());
    let first =
        SharedMemoryServer::bind(&name, "shm", 7, &Options::default(), &ShmOptions::default()).unwrap();
    let second = SharedMemoryServer::bind(&name, "shm", 7, &Options::default(), &ShmOptions::default());
    assert!(matches!(second, Err(Error::AddressInUse { .. })), "{second:?}");
    drop(first);
    assert!(!segment_file(&format!("shm://{name}.7")).exists());
}

#[test]
fn many_threads_share_one_server_and_each_message_arrives_once() {
    const SENDERS: usize = 4;
    const PER_SENDER: usize = 200;
    const RECEIVERS: usize = 4;
    let server = server_with(&ShmOptions::default());
    let seen = std::sync::Mutex::new(vec![0usize; SENDERS * PER_SENDER]);
    let done = AtomicUsize::new(0);
    let started = Instant::now();
    std::thread::scope(|scope| {
        for s in 0..SENDERS {
            let client = client_of(&server, &Options::default(), &ShmOptions::default());
            scope.spawn(move || {
                for k in 0..PER_SENDER {
                    let id = s * PER_SENDER + k;
                    let data = pattern((id * 977) % 150_000, id as u64);
                    send_all(&client, (id.to_string(), vec![checksum(&data)]), &[&data]);
                }
            });
        }
        for _ in 0..RECEIVERS {
            scope.spawn(|| {
                while done.load(Ordering::SeqCst) < SENDERS * PER_SENDER
                    && started.elapsed() < Duration::from_secs(60)
                {
                    let Ok(message) = server.recv_message(Duration::from_millis(50)) else { continue };
                    let (id, sums) = message.metadata::<Custom>().unwrap().custom;
                    let got: Vec<u64> = message.into_payloads().iter().map(|p| checksum(p)).collect();
                    assert_eq!(got, sums, "message {id}");
                    seen.lock().unwrap()[id.parse::<usize>().unwrap()] += 1;
                    done.fetch_add(1, Ordering::SeqCst);
                }
            });
        }
    });
    assert!(seen.into_inner().unwrap().iter().all(|&n| n == 1), "a message lost or delivered twice");
}

#[test]
fn waits_end_at_their_timeouts() {
    let server = server_with(&ShmOptions::default());
    let started = Instant::now();
    let nothing = server.recv_message(Duration::from_millis(200)).unwrap_err();
    assert!(matches!(nothing, Error::Timeout { .. }), "{nothing}");
    assert!(started.elapsed() < Duration::from_secs(5));
    // A client of a server that does not read: a message larger than the ring cannot go whole.
    let quick = Options::default().with_send_timeout(Some(Duration::from_millis(300)));
    let client = client_of(&server, &quick, &ShmOptions::default().with_single_copy_from(None));
    let big = pattern(4 << 20, 1);
    let started = Instant::now();
    let full =
        client.send(&LbmMeta::new(()).with_bulk(client.expose(&big, Default::default()))).into_result();
    assert!(matches!(full, Err(Error::Timeout { .. })), "{full:?}");
    assert!(started.elapsed() < Duration::from_secs(5));
    // The server drops the partial message, and the client's next message gets through.
    let partial = server.recv_message(Duration::from_secs(5)).unwrap_err();
    assert!(matches!(partial, Error::Transport { .. }), "{partial}");
    let small = pattern(10, 2);
    round_trip(&server, &client, &[&small]);
    // A single-copy offer the server never answers: the client takes it back at its timeout.
    let offering = client_of(&server, &quick, &ShmOptions::default().with_single_copy_from(Some(0)));
    let started = Instant::now();
    let unanswered =
        offering.send(&LbmMeta::new(()).with_bulk(offering.expose(&big, Default::default()))).into_result();
    assert!(matches!(unanswered, Err(Error::Timeout { .. })), "{unanswered:?}");
    assert!(started.elapsed() < Duration::from_secs(5));
    // No server at all.
    let nobody =
        SharedMemoryClient::connect("shm://shmtest-nobody", "shm", 0, &quick, &ShmOptions::default())
            .unwrap();
    let lonely = nobody.send(&LbmMeta::new(())).into_result();
    assert!(matches!(lonely, Err(Error::Timeout { .. })), "{lonely:?}");
}

#[test]
fn garbage_written_over_the_queue_is_an_error_never_a_crash_or_a_hang() {
    let server = server_with(&ShmOptions::default());
    let name = server.address().trim_start_matches("shm://").to_owned();
    let segment = Segment::open(&name).unwrap();
    // The queue's layout (src/transport/same_node/queue.rs): a control block, then 32 channels of a 128-byte
    // header and a 512 KiB ring, from offset 192 of the segment.
    let (control, channel, channels) = (128, 128 + (512 << 10), 32);
    let queue_len = control + channels * channel;
    let queue = segment.resolve(&ShmPtr { segment: name.clone(), offset: 192 }, queue_len).unwrap();
    let started = Instant::now();
    for round in 0..20u64 {
        // A live client first, so that channels are claimed and some hold a message.
        let client = client_of(
            &server,
            &Options::default().with_send_timeout(Some(Duration::from_millis(200))),
            &ShmOptions::default(),
        );
        let data = pattern(1000, round);
        let _ = client.send(&LbmMeta::new(()).with_bulk(client.expose(&data, Default::default())));
        // Garbage over the control block and every channel header, and a stretch of the first ring.
        for at in (0..channels).map(|c| control + c * channel) {
            queue.write(at, &pattern(128, round * 31 + at as u64)).unwrap();
            queue.write(at + 128, &pattern(256, round)).unwrap();
        }
        queue.write(0, &pattern(control, round)).unwrap();
        for _ in 0..3 {
            let _ = server.recv_message(Duration::from_millis(20));
        }
    }
    assert!(started.elapsed() < Duration::from_secs(60), "garbage slowed the server to a crawl");
    drop(server);
    assert!(!segment_file(&format!("shm://{name}")).exists());
}

/// Starts the peer with `args` and reads its first line (an address, or `sending`).
fn start_peer(args: &[&str]) -> (Child, BufReader<std::process::ChildStdout>, String) {
    let mut child =
        Command::new(PEER).args(args).stdout(Stdio::piped()).stderr(Stdio::inherit()).spawn().unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    (child, out, line.trim().to_owned())
}

#[test]
fn two_processes_exchange_every_size_by_single_copy_and_through_the_ring() {
    for shm in [ShmOptions::default(), ShmOptions::default().with_single_copy_from(None)] {
        let sizes = [0usize, 8, 65_536, 1 << 20, 16 << 20];
        let (mut child, mut out, address) =
            start_peer(&["receive", "shmtest-peer", &sizes.len().to_string()]);
        let client = SharedMemoryClient::connect(&address, "shm", 0, &Options::default(), &shm).unwrap();
        for (i, size) in sizes.into_iter().enumerate() {
            let data = pattern(size, i as u64);
            send_all(&client, vec![checksum(&data)], &[&data]);
        }
        assert!(wait_ended(&mut child, Duration::from_secs(60)).success());
        let (mut copied, mut last) = (String::new(), String::new());
        out.read_line(&mut copied).unwrap();
        out.read_line(&mut last).unwrap();
        assert_eq!(last.trim(), "ok");
        // The bulks larger than the ring wait for their answer: the server copied them from this process.
        let copied: u64 = copied.trim().trim_start_matches("copied ").parse().unwrap();
        match shm.single_copy_from {
            Some(_) => assert!(copied >= 2, "{copied} single copies"),
            None => assert_eq!(copied, 0),
        }
        assert!(!segment_file(&address).exists(), "the peer's segment was left behind");
    }
}

#[test]
fn a_client_killed_mid_message_is_reported_lost_within_a_second() {
    let server = server_with(&ShmOptions::default());
    // 8 MiB through a ring of 512 KiB: the peer blocks mid-message until the server reads.
    let (mut child, _out, line) = start_peer(&["stream", server.address(), &(8 << 20).to_string()]);
    assert_eq!(line, "sending");
    std::thread::sleep(Duration::from_millis(300));
    child.kill().unwrap();
    child.wait().unwrap();
    let started = Instant::now();
    let lost = server.recv_message(Duration::from_secs(20)).unwrap_err();
    assert!(matches!(&lost, Error::PeerGone { reason, .. } if reason.contains("lost")), "{lost}");
    assert!(started.elapsed() < Duration::from_secs(2), "took {:?}", started.elapsed());
    // The channel is freed and the server goes on.
    let client = client_of(&server, &Options::default(), &ShmOptions::default());
    round_trip(&server, &client, &[&pattern(100, 1)]);
}

#[test]
fn a_server_killed_while_a_client_waits_is_reported_lost_within_a_second() {
    for shm in [ShmOptions::default(), ShmOptions::default().with_single_copy_from(None)] {
        let (mut child, _out, address) = start_peer(&["serve", "shmtest-doomed"]);
        let client = SharedMemoryClient::connect(&address, "shm", 0, &Options::default(), &shm).unwrap();
        let big = pattern(8 << 20, 5);
        let killer = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(300));
            child.kill().unwrap();
            child.wait().unwrap();
            Instant::now()
        });
        let outcome =
            client.send(&LbmMeta::new(()).with_bulk(client.expose(&big, Default::default()))).into_result();
        let killed = killer.join().unwrap();
        assert!(
            matches!(&outcome, Err(Error::PeerGone { reason, .. }) if reason.contains("lost")),
            "{outcome:?}"
        );
        assert!(killed.elapsed() < Duration::from_secs(2));
        // The killed server left its segment; a later server of that name would reclaim it.
        let _ = Segment::reclaim_stale(address.trim_start_matches("shm://"));
        assert!(!segment_file(&address).exists());
    }
}

#[test]
fn offers_nobody_answers_are_withdrawn_so_one_thread_can_send_then_receive() {
    // The server reads nothing while the client sends: each offer is withdrawn after its patience and
    // the bytes go through the ring; the server then meets the stale offers first, and must not take a
    // later offer's answer for an earlier one.
    let server = server_with(&ShmOptions::default());
    let client = client_of(&server, &Options::default(), &ShmOptions::default());
    let messages: Vec<Vec<u8>> = (0..4).map(|i| pattern(100_000 + i, i as u64)).collect();
    for data in &messages {
        send_all(&client, ("queued".to_string(), vec![checksum(data)]), &[data]);
    }
    for data in &messages {
        let ((_, sums), bulks) = recv_all::<Custom>(&server).unwrap();
        assert_eq!((sums[0], checksum(&bulks[0])), (checksum(data), checksum(data)));
    }
}

/// A server sized for many clients (as the mesh sizes one per rank of the node) serves every one of
/// them at once, with small rings, through the ring and by single copy; a shape out of range is refused
/// when binding.
#[test]
fn a_server_serves_as_many_clients_as_it_has_channels() {
    let shape = ShmOptions::default().with_channels(48).with_ring_size(16 << 10);
    let server = server_with(&shape);
    let clients: Vec<_> = (0..48u64)
        .map(|i| {
            let offer = if i % 2 == 0 { None } else { Some(64 << 10) };
            client_of(&server, &Options::default(), &shape.clone().with_single_copy_from(offer))
        })
        .collect();
    let mut seen = std::thread::scope(|scope| {
        for (i, client) in clients.iter().enumerate() {
            scope.spawn(move || {
                let data = pattern(100 << 10, i as u64);
                let meta = LbmMeta::new(i as u64).with_bulk(client.expose(&data, Default::default()));
                client.send(&meta).into_result().unwrap();
            });
        }
        (0..48)
            .map(|_| {
                let message = server.recv_message(Duration::from_secs(20)).unwrap();
                let i = message.metadata::<u64>().unwrap().custom;
                assert_eq!(checksum(&message.into_payloads()[0]), checksum(&pattern(100 << 10, i)));
                i
            })
            .collect::<Vec<_>>()
    });
    seen.sort_unstable();
    assert_eq!(seen, (0..48).collect::<Vec<_>>());
    for bad in [ShmOptions::default().with_channels(0), ShmOptions::default().with_ring_size(100_000)] {
        let refused = SharedMemoryServer::bind("shmtest-shape", "shm", 0, &Options::default(), &bad);
        assert!(matches!(refused, Err(Error::InvalidArgument(_))), "{refused:?}");
    }
}

/// The bandwidth of one 64 MiB bulk streamed through the ring (single copies off) from a thread to the
/// receiving thread, median of 9 sends, printed: run it with `cargo test --release --test shm_transport
/// -- --ignored --nocapture bandwidth`.
#[test]
#[ignore]
fn bandwidth_of_a_64_mib_bulk_through_the_ring() {
    const SIZE: usize = 64 << 20;
    let ring = ShmOptions::default().with_single_copy_from(None);
    let server = server_with(&ring);
    let client = client_of(&server, &Options::default(), &ring);
    let data = pattern(SIZE, 5);
    let mut rates: Vec<f64> = (0..9)
        .map(|_| {
            std::thread::scope(|scope| {
                let started = Instant::now();
                let receiving = scope.spawn(|| server.recv_message(Duration::from_secs(30)).unwrap());
                let bulk = client.expose(&data, Default::default());
                client.send(&LbmMeta::new(()).with_bulk(bulk)).into_result().unwrap();
                let message = receiving.join().unwrap();
                let took = started.elapsed();
                assert_eq!(message.into_payloads()[0].len(), SIZE);
                SIZE as f64 / (1 << 20) as f64 / took.as_secs_f64()
            })
        })
        .collect();
    rates.sort_by(f64::total_cmp);
    println!(
        "64 MiB through the ring: median {:.0} MiB/s (9 sends, {:.0} to {:.0})",
        rates[4], rates[0], rates[8]
    );
}

/// Clients that come and go without ever offering a single copy (each connects to the server's listener
/// for offers when it claims a channel) do not fill the listener's backlog (room for 16 here): a client
/// after 40 of them still gets its bulk copied once.
#[test]
fn clients_that_come_and_go_leave_room_for_single_copies() {
    let server = server_with(&ShmOptions::default().with_channels(2));
    let options = Options::default().with_send_timeout(Some(Duration::from_secs(10)));
    let done = std::sync::atomic::AtomicBool::new(false);
    let received = AtomicUsize::new(0);
    std::thread::scope(|scope| {
        scope.spawn(|| {
            while !done.load(Ordering::Relaxed) {
                if server.recv_message(Duration::from_millis(100)).is_ok() {
                    received.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
        for _ in 0..40 {
            let client = client_of(&server, &options, &ShmOptions::default());
            client.send(&LbmMeta::new(())).into_result().unwrap();
        }
        let client = client_of(&server, &options, &ShmOptions::default());
        let data = pattern(1 << 20, 5);
        client
            .send(&LbmMeta::new(()).with_bulk(client.expose(&data, Default::default())))
            .into_result()
            .unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while received.load(Ordering::Relaxed) < 41 && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        done.store(true, Ordering::Relaxed);
    });
    assert_eq!(received.load(Ordering::Relaxed), 41, "every message arrives within 30 s");
    assert_eq!(server.single_copies().copied, 1, "{:?}", server.single_copies());
}
