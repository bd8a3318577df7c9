//! The shared-memory transport against a same-user process that writes into a server's queue (played
//! by a thread of the test writing through its own mapping of the server's segment, as the 0600 mode
//! allows), against a stopped or slow peer, and against dead servers and their leftovers: every send
//! and every receive ends by its own deadline with a clear error, honest clients are not held up, and a
//! client never frees another's channel.

mod util;

use std::io::{BufRead, BufReader};
use std::os::fd::OwnedFd;
use std::os::unix::process::ExitStatusExt;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use lightbeam::shm::{FullPtr, Segment, ShmPtr};
use lightbeam::{
    Client, Error, LbmMeta, Options, Server, SharedMemoryClient, SharedMemoryServer, ShmOptions,
};
use util::{pattern, wait_ended};

const PEER: &str = env!("CARGO_BIN_EXE_lbm-test-shm-transport-peer");

// The queue's layout (src/transport/same_node/queue.rs and record.rs).
const QUEUE_AT: u64 = 192;
const CONTROL: usize = 128;
const CHANNEL: usize = 128 + (512 << 10);
const QUEUE_LEN: usize = CONTROL + 32 * CHANNEL;
const OWNER_PID: usize = 0;
const STATE: usize = 4;
const OWNER_START: usize = 8;
const CLAIM: usize = 16;
const TAIL: usize = 24;
const HEAD: usize = 64;
const TRANSFER: usize = 80;
const LISTENER: usize = 56;
const OPEN: u32 = 1;
const BEGIN: u32 = 1;
const INLINE: u32 = 2;
const REMOTE: u32 = 3;
const PENDING: u32 = 1;
const COPYING: u32 = 5;

/// A same-user process's view of a server's queue.
struct Hostile {
    queue: FullPtr,
    _segment: Segment,
}

impl Hostile {
    fn open(address: &str) -> Self {
        let name = address.trim_start_matches("shm://");
        let segment = Segment::open(name).unwrap();
        let queue =
            segment.resolve(&ShmPtr { segment: name.to_owned(), offset: QUEUE_AT }, QUEUE_LEN).unwrap();
        Self { queue, _segment: segment }
    }

    fn base(channel: usize) -> usize {
        CONTROL + channel * CHANNEL
    }

    fn put_u32(&self, at: usize, value: u32) {
        self.queue.write(at, &value.to_le_bytes()).unwrap();
    }

    fn get_u32(&self, at: usize) -> u32 {
        let mut bytes = [0; 4];
        self.queue.read(at, &mut bytes).unwrap();
        u32::from_le_bytes(bytes)
    }

    fn get_u64(&self, at: usize) -> u64 {
        let mut bytes = [0; 8];
        self.queue.read(at, &mut bytes).unwrap();
        u64::from_le_bytes(bytes)
    }

    fn put_u64(&self, at: usize, value: u64) {
        self.queue.write(at, &value.to_le_bytes()).unwrap();
    }

    /// Claims `channel` for process `pid` (start time unknown), as a client would.
    fn claim(&self, channel: usize, pid: u32) {
        let base = Self::base(channel);
        self.put_u32(base + OWNER_PID, pid);
        self.put_u64(base + OWNER_START, 0);
        self.put_u32(base + STATE, OPEN);
    }

    fn write_ring(&self, channel: usize, at: usize, bytes: &[u8]) {
        self.queue.write(Self::base(channel) + 128 + at, bytes).unwrap();
    }

    /// Writes, from stream position `at` of `channel`'s ring, a message of one bulk of `len` bytes
    /// offered for a single copy as offer `offer` at `address` in process `pid`, followed by `fallback`
    /// (`len` bytes) through the ring for when the offer is refused; marks the offer pending and
    /// publishes it.
    fn forge_offer(&self, channel: usize, at: u64, (offer, pid, address): (u32, u32, u64), fallback: &[u8]) {
        let len = fallback.len() as u64;
        let data = vec![0u8; fallback.len()];
        let header =
            lightbeam::wire::encode_header(&[lightbeam::Bulk::source(&data, Default::default())], |_| Ok(()))
                .unwrap();
        let mut ring = Vec::new();
        ring.extend(record(BEGIN, 2, 0));
        ring.extend(record(INLINE, 0, header.len() as u64));
        ring.extend(&header);
        ring.resize(ring.len().div_ceil(8) * 8, 0);
        let mut remote = record(REMOTE, offer, len);
        remote[16..24].copy_from_slice(&address.to_le_bytes());
        remote[24..28].copy_from_slice(&pid.to_le_bytes());
        ring.extend(remote);
        ring.extend(record(INLINE, 0, len));
        ring.extend(fallback);
        ring.resize(ring.len().div_ceil(8) * 8, 0);
        let ring_len = (CHANNEL - 128) as u64;
        for (k, byte) in ring.iter().enumerate() {
            let position = (at + k as u64) % ring_len;
            self.write_ring(channel, position as usize, &[*byte]);
        }
        self.put_u32(Self::base(channel) + TRANSFER, offer << 3 | PENDING);
        self.publish(channel, at + ring.len() as u64);
    }

    fn publish(&self, channel: usize, tail: u64) {
        self.put_u64(Self::base(channel) + TAIL, tail);
    }

    /// The bytes of `channel` the server has read.
    fn head(&self, channel: usize) -> u64 {
        self.get_u64(Self::base(channel) + HEAD)
    }
}

fn record(kind: u32, frames: u32, len: u64) -> [u8; 32] {
    let mut out = [0; 32];
    out[0..4].copy_from_slice(&kind.to_le_bytes());
    out[4..8].copy_from_slice(&frames.to_le_bytes());
    out[8..16].copy_from_slice(&len.to_le_bytes());
    out
}

fn bind(name: &str, shm: &ShmOptions) -> SharedMemoryServer {
    SharedMemoryServer::bind(name, "shm", 0, &Options::default(), shm).unwrap()
}

fn client(server: &dyn Server, send_timeout: Duration, shm: &ShmOptions) -> SharedMemoryClient {
    let options = Options::default().with_send_timeout(Some(send_timeout));
    SharedMemoryClient::connect(server.address(), "shm", 0, &options, shm).unwrap()
}

fn segment_file(address: &str) -> std::path::PathBuf {
    std::path::Path::new("/dev/shm").join(format!("lightbeam-{}", address.trim_start_matches("shm://")))
}

fn start_peer(args: &[&str]) -> (Child, String) {
    let mut child =
        Command::new(PEER).args(args).stdout(Stdio::piped()).stderr(Stdio::null()).spawn().unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    (child, line.trim().to_owned())
}

/// A message that began and then trickles (or stops) holds neither the receive, which ends by its own
/// deadline, nor an honest client's message; it is dropped once it made no progress for the stall limit.
#[test]
fn a_trickled_message_holds_neither_the_receive_nor_honest_clients_and_is_dropped_when_it_stalls() {
    let shm = ShmOptions::default().with_stall_timeout(Duration::from_secs(2));
    let server = bind("hostile-trickle", &shm);
    let hostile = Hostile::open(server.address());
    hostile.claim(0, std::process::id());
    hostile.write_ring(0, 0, &record(BEGIN, 1, 0));
    hostile.write_ring(0, 32, &record(INLINE, 0, 4096));
    hostile.publish(0, 64);
    let honest = client(&server, Duration::from_secs(5), &ShmOptions::default());
    honest.send(&LbmMeta::new("honest".to_string())).into_result().unwrap();
    let trickling = AtomicBool::new(true);
    std::thread::scope(|scope| {
        scope.spawn(|| {
            for k in 1..=4 {
                std::thread::sleep(Duration::from_millis(700)); // within the 2 s stall limit
                hostile.publish(0, 64 + 8 * k);
            }
            trickling.store(false, Ordering::Relaxed);
        });
        let (first, took) = timed(|| server.recv_message(Duration::from_millis(500)));
        assert_eq!(first.unwrap().metadata::<String>().unwrap().custom, "honest");
        assert!(took < Duration::from_secs(2), "the honest message took {took:?}");
        let (nothing, took) = timed(|| server.recv_message(Duration::from_millis(500)));
        assert!(
            matches!(nothing, Err(Error::Timeout { op: "receive (nothing arrived)", .. })),
            "{nothing:?}"
        );
        assert!(took < Duration::from_secs(2), "a 500 ms receive took {took:?} during the trickle");
        assert!(trickling.load(Ordering::Relaxed), "the trickle ended before the receives were checked");
    });
    // The trickle stopped: the message is dropped at the stall limit, well within this receive's 20 s.
    let (stalled, took) = timed(|| server.recv_message(Duration::from_secs(20)));
    assert!(matches!(stalled, Err(Error::Timeout { op: "receive (the client stalled mid-message)", .. })));
    assert!(took < Duration::from_secs(10), "{took:?}");
    honest.send(&LbmMeta::new("after".to_string())).into_result().unwrap();
    let after = server.recv_message(Duration::from_secs(5)).unwrap();
    assert_eq!(after.metadata::<String>().unwrap().custom, "after");
}

/// A server that answers COPYING and never settles (a same-user process writing the word, or a server
/// stopped mid-copy) holds a send only until its deadline: it then fails with a timeout, and the server
/// drops that message instead of taking bytes the client may have changed since.
#[test]
fn a_copying_answer_that_never_settles_ends_the_send_at_its_deadline() {
    let server = bind("hostile-copying", &ShmOptions::default());
    let hostile = Hostile::open(server.address());
    let offering =
        client(&server, Duration::from_millis(300), &ShmOptions::default().with_single_copy_from(Some(0)));
    let stop = AtomicBool::new(false);
    let data = [7u8; 100];
    let transfer = Hostile::base(0) + TRANSFER;
    let (sent, took) = std::thread::scope(|scope| {
        scope.spawn(|| {
            while !stop.load(Ordering::Relaxed) {
                let word = hostile.get_u32(transfer);
                if word & 7 == PENDING {
                    hostile.put_u32(transfer, word & !7 | COPYING);
                }
            }
        });
        let outcome = (0..500)
            .map(|_| {
                timed(|| {
                    offering
                        .send(&LbmMeta::new(()).with_bulk(offering.expose(&data, Default::default())))
                        .into_result()
                })
            })
            .find(|(sent, _)| sent.is_err());
        stop.store(true, Ordering::Relaxed);
        outcome.expect("every send went through: the hijack never caught an offer")
    });
    assert!(matches!(&sent, Err(Error::Timeout { op, .. }) if op.contains("copying")), "{sent:?}");
    assert!(took < Duration::from_secs(3), "a send with a 300 ms timeout took {took:?}");
    // Every message before it arrives whole; the hijacked one is an error, never a message.
    let mut errors = 0;
    loop {
        match server.recv_message(Duration::from_millis(300)) {
            Ok(message) => assert_eq!(&message.into_payloads()[0][..], &data[..]),
            Err(Error::Timeout { op: "receive (nothing arrived)", .. }) => break,
            Err(_) => errors += 1,
        }
    }
    assert_eq!(errors, 1);
}

/// A 33rd client waits for a channel up to its send timeout: it times out when none frees, and gets
/// through when a client leaves meanwhile.
#[test]
fn a_client_waits_for_a_free_channel_up_to_its_send_timeout() {
    let server = bind("hostile-channels", &ShmOptions::default());
    let mut honest: Vec<SharedMemoryClient> =
        (0..32).map(|_| client(&server, Duration::from_secs(5), &ShmOptions::default())).collect();
    for c in &honest {
        c.send(&LbmMeta::new(())).into_result().unwrap();
    }
    let impatient = client(&server, Duration::from_millis(300), &ShmOptions::default());
    let (refused, took) = timed(|| impatient.send(&LbmMeta::new(())).into_result());
    assert!(matches!(&refused, Err(Error::Timeout { op, .. }) if op.contains("channel")), "{refused:?}");
    assert!(took >= Duration::from_millis(300) && took < Duration::from_secs(3), "{took:?}");
    let late = client(&server, Duration::from_secs(10), &ShmOptions::default());
    let received = std::thread::scope(|scope| {
        let sending = scope.spawn(|| late.send(&LbmMeta::new("late".to_string())).into_result());
        std::thread::sleep(Duration::from_millis(200));
        honest.pop(); // frees its channel once the server has read it and swept
        let mut received = Vec::new();
        while received.len() < 33 {
            received.push(server.recv_message(Duration::from_secs(5)).unwrap());
        }
        sending.join().unwrap().unwrap();
        received
    });
    assert!(received.iter().any(|m| m.metadata::<String>().is_ok_and(|m| m.custom == "late")));
}

/// A client whose send failed mid-message lets its channel go for good: once the server frees it for
/// another client of the same process, the first client's next send claims a new channel and leaves the
/// other client's alone.
#[test]
fn a_stale_sender_never_releases_the_channel_another_client_claimed_since() {
    let ring = ShmOptions::default().with_single_copy_from(None);
    let server = bind("hostile-stale", &ring);
    let a = client(&server, Duration::from_millis(300), &ring);
    let big = pattern(1 << 20, 2);
    let full = a.send(&LbmMeta::new(()).with_bulk(a.expose(&big, Default::default()))).into_result();
    assert!(matches!(full, Err(Error::Timeout { .. })), "{full:?}");
    assert!(server.recv_message(Duration::from_secs(5)).is_err(), "the partial message is dropped");
    std::thread::sleep(Duration::from_millis(60));
    let _ = server.recv_message(Duration::from_millis(100)); // the sweep frees channel 0
    let b = client(&server, Duration::from_secs(10), &ring);
    let (sent, bulk) = std::thread::scope(|scope| {
        let sending = scope
            .spawn(|| b.send(&LbmMeta::new(()).with_bulk(b.expose(&big, Default::default()))).into_result());
        std::thread::sleep(Duration::from_millis(500)); // b waits for room in channel 0
        a.send(&LbmMeta::new(())).into_result().unwrap(); // drops a's stale sender of channel 0
        let mut bulk = None;
        for _ in 0..2 {
            let message = server.recv_message(Duration::from_secs(5)).unwrap();
            bulk = bulk.or(message.into_payloads().into_iter().next().filter(|p| p.len() == big.len()));
        }
        (sending.join().unwrap(), bulk)
    });
    sent.unwrap();
    assert_eq!(&bulk.expect("b's bulk arrived")[..], &big[..]);
}

/// A send to a server that was killed (its segment left behind) is reported lost at once, not taken as
/// sent; a later bind of the same name with port 0 removes the leftover, whatever its random token.
#[test]
fn a_killed_servers_segment_is_refused_then_reclaimed_by_the_next_bind() {
    let (mut child, address) = start_peer(&["serve", "hostile-dead"]);
    child.kill().unwrap();
    child.wait().unwrap();
    let file = segment_file(&address);
    assert!(file.exists());
    let options = Options::default().with_send_timeout(Some(Duration::from_secs(5)));
    let late = SharedMemoryClient::connect(&address, "shm", 0, &options, &ShmOptions::default()).unwrap();
    let data = pattern(1000, 1);
    let (sent, took) = timed(|| {
        late.send(&LbmMeta::new(()).with_bulk(late.expose(&data, Default::default()))).into_result()
    });
    assert!(matches!(&sent, Err(Error::PeerGone { reason, .. }) if reason.contains("lost")), "{sent:?}");
    assert!(took < Duration::from_secs(1), "{took:?}");
    drop(late);
    drop(bind("hostile-dead", &ShmOptions::default()));
    assert!(!file.exists(), "the next bind left the dead server's segment");
}

/// Not covered, and documented as such: a same-user process that truncates the segment's file crashes
/// the server (and every client mapping it) with SIGBUS at its next look at the queue.
#[test]
fn a_truncated_segment_crashes_a_receiving_server_as_documented() {
    let (mut child, address) = start_peer(&["receive", "hostile-truncate", "1"]);
    let file = segment_file(&address);
    std::thread::sleep(Duration::from_millis(200));
    std::fs::OpenOptions::new().write(true).open(&file).unwrap().set_len(0).unwrap();
    let status = wait_ended(&mut child, Duration::from_secs(10));
    let _ = std::fs::remove_file(&file);
    assert_eq!(status.signal(), Some(libc::SIGBUS), "{status:?}");
}

/// A frame size that, added to what the message carried before, passes 2^64 is refused with the size
/// announced (saturated), never an overflow (a panic in debug builds, which ends a mesh's rank; a
/// wrapped, small size in release); frame counts of 0 and `u32::MAX` are refused too, and honest
/// clients still get through.
#[test]
fn forged_frame_sizes_and_counts_are_refused_as_announced() {
    let server = bind("hostile-sizes", &ShmOptions::default());
    let hostile = Hostile::open(server.address());
    let limit = Options::default().max_message_size.unwrap();
    let me = std::process::id();
    let header = 40; // any bytes: the forged record follows before the header is decoded
    for (channel, len) in [u64::MAX, u64::MAX - 7, u64::MAX - 6].into_iter().enumerate() {
        hostile.claim(channel, me);
        hostile.write_ring(channel, 0, &record(BEGIN, 2, 0));
        hostile.write_ring(channel, 32, &record(INLINE, 0, header));
        hostile.write_ring(channel, 64 + header as usize, &record(INLINE, 0, len));
        hostile.publish(channel, 96 + header);
        match server.recv_message(Duration::from_secs(5)) {
            Err(Error::LimitExceeded { what: "message size", announced, limit: l, .. }) => {
                assert_eq!((announced, l), (u64::MAX, limit), "a frame of {len} bytes")
            }
            other => panic!("a frame of {len} bytes: {other:?}"),
        }
    }
    hostile.claim(3, me);
    hostile.write_ring(3, 0, &record(BEGIN, 0, 0));
    hostile.publish(3, 32);
    let none = server.recv_message(Duration::from_secs(5));
    assert!(matches!(none, Err(Error::Transport { .. })), "a message of 0 frames: {none:?}");
    hostile.claim(4, me);
    hostile.write_ring(4, 0, &record(BEGIN, u32::MAX, 0));
    hostile.publish(4, 32);
    let most = server.recv_message(Duration::from_secs(5));
    assert!(
        matches!(most, Err(Error::LimitExceeded { announced, .. }) if announced == u64::from(u32::MAX) - 1),
        "a message of u32::MAX frames: {most:?}"
    );
    let honest = client(&server, Duration::from_secs(5), &ShmOptions::default());
    honest.send(&LbmMeta::new("honest".to_string())).into_result().unwrap();
    let after = server.recv_message(Duration::from_secs(5)).unwrap();
    assert_eq!(after.metadata::<String>().unwrap().custom, "honest");
}

/// Records announcing frames of 1 GiB on four channels, and nothing after them, cost the server memory
/// for the bytes that arrived, not for the sizes announced (the server is a peer process, so that its
/// resident memory is its own).
#[test]
fn announced_frames_take_memory_only_as_their_bytes_arrive() {
    const ANNOUNCED: u64 = 1 << 30;
    let (mut child, address) = start_peer(&["drain", "hostile-memory", &(2 * ANNOUNCED).to_string()]);
    let hostile = Hostile::open(&address);
    let before = resident_kib(child.id());
    for channel in 0..4 {
        hostile.claim(channel, std::process::id());
        hostile.write_ring(channel, 0, &record(BEGIN, 1, 0));
        hostile.write_ring(channel, 32, &record(INLINE, 0, ANNOUNCED));
        hostile.publish(channel, 64);
    }
    let started = Instant::now();
    while (0..4).any(|channel| hostile.head(channel) != 64) {
        assert!(started.elapsed() < Duration::from_secs(20), "the server did not read the records");
        std::thread::sleep(Duration::from_millis(10));
    }
    std::thread::sleep(Duration::from_millis(500)); // a few more receives that find nothing whole
    let after = resident_kib(child.id());
    child.kill().unwrap();
    child.wait().unwrap();
    let _ = std::fs::remove_file(segment_file(&address)); // a killed server leaves its segment
    let grown = after.saturating_sub(before);
    println!("4 frames of {ANNOUNCED} bytes announced: resident {before} KiB -> {after} KiB (+{grown} KiB)");
    assert!(grown < 16 << 10, "the server's resident memory grew by {grown} KiB");
}

/// A client killed mid-message gives its channel back within a sweep or two while other clients keep
/// the server busy: a new client gets the channel and delivers its message (three channels: two
/// streaming clients, and one killed in a peer process, each round).
#[test]
fn a_killed_clients_channel_is_handed_out_while_others_keep_the_server_busy() {
    let took: Vec<Option<Duration>> = (0..8).map(reclaim_round).collect();
    let shown: Vec<String> = took
        .iter()
        .map(|t| t.map_or("none within 5 s".into(), |t| format!("{:.3} s", t.as_secs_f64())))
        .collect();
    println!("from the kill to a new client's message: {}", shown.join(", "));
    assert!(took.iter().all(|t| t.is_some_and(|t| t < Duration::from_secs(2))), "{shown:?}");
}

/// One round of the test above: how long from the kill to the new client's message (`None`: not
/// within 5 s).
fn reclaim_round(round: u64) -> Option<Duration> {
    let server = bind("hostile-reclaim", &ShmOptions::default().with_channels(3));
    let ring = ShmOptions::default().with_single_copy_from(None);
    let (streaming, receiving) = (AtomicBool::new(true), AtomicBool::new(true));
    let (arrived, late_arrived) = mpsc::channel();
    let busy: Vec<SharedMemoryClient> =
        (0..2).map(|_| client(&server, Duration::from_secs(10), &ring)).collect();
    for c in &busy {
        c.send(&LbmMeta::new("attach".to_string())).into_result().unwrap(); // channels 0 and 1
    }
    std::thread::scope(|scope| {
        let (server, receiving) = (&server, &receiving);
        scope.spawn(move || {
            while receiving.load(Ordering::Relaxed) {
                let message = server.recv_message(Duration::from_millis(100));
                if message.is_ok_and(|m| m.metadata::<String>().is_ok_and(|m| m.custom == "late")) {
                    arrived.send(Instant::now()).unwrap();
                }
            }
        });
        let streamers: Vec<_> = busy
            .iter()
            .map(|c| {
                let streaming = &streaming;
                scope.spawn(move || {
                    // Small messages, two senders for one receiver: a whole message always waits.
                    while streaming.load(Ordering::Relaxed) {
                        c.send(&LbmMeta::new("busy".to_string())).into_result().unwrap();
                    }
                })
            })
            .collect();
        let (mut killed, said) = start_peer(&["flood", server.address(), &(16 << 20).to_string()]);
        assert_eq!(said, "attached");
        std::thread::sleep(Duration::from_millis(100 + 37 * round)); // mid-message
        killed.kill().unwrap();
        killed.wait().unwrap();
        let at_kill = Instant::now();
        let late = client(server, Duration::from_secs(5), &ring);
        let sent = late.send(&LbmMeta::new("late".to_string())).into_result();
        let took = sent.ok().and_then(|_| late_arrived.recv_timeout(Duration::from_secs(5)).ok());
        streaming.store(false, Ordering::Relaxed);
        streamers.into_iter().for_each(|s| s.join().unwrap());
        receiving.store(false, Ordering::Relaxed);
        took.map(|at| at - at_kill)
    })
}

/// The resident memory of process `pid`, in KiB.
fn resident_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).expect("a VmRSS line");
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// The bytes of a victim's secret (see the peer's `hold`).
const SECRET: usize = 40 << 10;

/// Sends `data` as one bulk through `client` while `server` receives it (so that a single-copy offer is
/// answered, not withdrawn: a bulk larger than the ring waits for its answer); returns the bulk received.
fn send_received(client: &SharedMemoryClient, server: &SharedMemoryServer, data: &[u8]) -> Vec<u8> {
    std::thread::scope(|scope| {
        let sending =
            scope.spawn(|| client.send(&LbmMeta::new(()).with_bulk(client.expose(data, Default::default()))));
        let payloads = server.recv_message(Duration::from_secs(5)).unwrap().into_payloads();
        sending.join().unwrap().into_result().unwrap();
        payloads[0].to_vec()
    })
}

fn is_secret(bytes: &[u8]) -> bool {
    bytes.len() >= 8 && bytes.windows(8).any(|w| w == b"SECRET!!")
}

/// Starts a victim process holding [`SECRET`] bytes; returns it, its pid and the secret's address.
fn start_victim() -> (Child, u32, u64) {
    let (child, line) = start_peer(&["hold", &SECRET.to_string()]);
    let mut words = line.split_whitespace().map(|w| w.parse::<u64>().unwrap());
    let (pid, address) = (words.next().unwrap() as u32, words.next().unwrap());
    (child, pid, address)
}

/// Receives until nothing arrives for a moment; returns the bulks of every message that arrived and
/// the count of receives that failed.
fn drain(server: &SharedMemoryServer) -> (Vec<Vec<u8>>, usize) {
    let (mut bulks, mut errors) = (Vec::new(), 0);
    loop {
        match server.recv_message(Duration::from_millis(500)) {
            Ok(message) => bulks.extend(message.into_payloads().iter().map(|p| p.to_vec())),
            Err(Error::Timeout { op: "receive (nothing arrived)", .. }) => return (bulks, errors),
            Err(_) => errors += 1,
        }
    }
}

/// Connects to the server's listener for offers as a client would, sending the hello for `channel`
/// under claim `claim` and then `offer` (number, address, len), as the listener's protocol has them
/// (src/transport/same_node/identity.rs). `None` when the server listens for none.
fn tell_as_a_client(hostile: &Hostile, channel: u64, claim: u64, offer: [u64; 3]) -> Option<OwnedFd> {
    use rustix::net::{
        connect, send, socket_with, AddressFamily, SendFlags, SocketAddrUnix, SocketFlags, SocketType,
    };
    let token = hostile.get_u64(LISTENER);
    let name = SocketAddrUnix::new_abstract_name(format!("lightbeam-shm-{token:016x}").as_bytes()).unwrap();
    let fd = socket_with(AddressFamily::UNIX, SocketType::SEQPACKET, SocketFlags::CLOEXEC, None).unwrap();
    connect(&fd, &name).ok()?;
    let bytes = |words: &[u64]| words.iter().flat_map(|w| w.to_le_bytes()).collect::<Vec<u8>>();
    send(&fd, &bytes(&[channel, claim]), SendFlags::empty()).unwrap();
    send(&fd, &bytes(&offer), SendFlags::empty()).unwrap();
    Some(fd)
}

/// A process that claims a channel writing another process's pid as its owner, connects to the
/// server's listener for that channel, and offers the other process's memory for a single copy gets
/// none of it: the server reads only from the process the kernel says is at the other end of the
/// channel's connection, and refuses the offer. An honest client of the server still gets its single
/// copies.
#[test]
fn an_offer_naming_another_process_never_delivers_its_memory() {
    let server = bind("hostile-victim", &ShmOptions::default());
    let (mut victim, pid, address) = start_victim();
    let hostile = Hostile::open(server.address());
    hostile.claim(0, pid);
    hostile.put_u64(Hostile::base(0) + CLAIM, 0x5eed);
    let told = tell_as_a_client(&hostile, 0, 0x5eed, [1, address, SECRET as u64]);
    assert!(told.is_some(), "the server listens for offers");
    let decoy = vec![b'd'; SECRET];
    hostile.forge_offer(0, 0, (1, pid, address), &decoy);
    let (bulks, errors) = drain(&server);
    let _ = victim.kill();
    let _ = victim.wait();
    let leaked: usize = bulks.iter().filter(|b| is_secret(b)).map(Vec::len).sum();
    let copies = server.single_copies();
    println!(
        "{} messages, {errors} errors, {leaked} bytes of the victim's secret delivered; {copies:?}",
        bulks.len()
    );
    assert_eq!(leaked, 0, "the server delivered {leaked} bytes of another process's memory");
    assert_eq!((copies.copied, copies.refused), (0, 1), "the forged offer is refused");
    assert_eq!(bulks, vec![decoy], "the refused offer's bytes came through the ring");
    // An honest client still gets single copies.
    let honest = client(&server, Duration::from_secs(5), &ShmOptions::default());
    let data = pattern(1 << 20, 4);
    assert_eq!(send_received(&honest, &server, &data), data);
    assert_eq!(server.single_copies().copied, 1, "{:?}", server.single_copies());
}

/// A record forged into an honest client's ring that names the honest client's own pid and an address
/// it never offered is not read: only the offers the client sent over its own connection are.
#[test]
fn a_forged_offer_in_an_honest_clients_ring_is_not_read() {
    let server = bind("hostile-forged", &ShmOptions::default());
    let secret: Vec<u8> = b"SECRET!!".iter().copied().cycle().take(SECRET).collect();
    let honest = client(&server, Duration::from_secs(5), &ShmOptions::default());
    let data = pattern(1 << 20, 3);
    assert_eq!(send_received(&honest, &server, &data), data);
    let hostile = Hostile::open(server.address());
    let tail = hostile.get_u64(Hostile::base(0) + TAIL);
    assert_eq!(hostile.get_u64(Hostile::base(0) + HEAD), tail, "the honest message was read");
    let decoy = vec![b'd'; SECRET];
    hostile.forge_offer(0, tail, (7, std::process::id(), secret.as_ptr() as u64), &decoy);
    let (bulks, errors) = drain(&server);
    let leaked: usize = bulks.iter().filter(|b| is_secret(b)).map(Vec::len).sum();
    let copies = server.single_copies();
    println!("{} messages, {errors} errors, {leaked} bytes of the secret delivered; {copies:?}", bulks.len());
    assert_eq!(leaked, 0, "the server read {leaked} bytes the client never offered");
    assert_eq!((copies.copied, copies.refused), (1, 1), "the honest offer copied, the forged one refused");
    drop(std::hint::black_box(secret));
}

/// `work`'s outcome and how long it took.
fn timed<T>(work: impl FnOnce() -> T) -> (T, Duration) {
    let started = Instant::now();
    let outcome = work();
    (outcome, started.elapsed())
}
