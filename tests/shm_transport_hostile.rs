//! The shared-memory transport against a same-user process that writes into a server's queue (played
//! by a thread of the test writing through its own mapping of the server's segment, as the 0600 mode
//! allows), against a stopped or slow peer, and against dead servers and their leftovers: every send
//! and every receive ends by its own deadline with a clear error, honest clients are not held up, and a
//! client never frees another's channel.

mod util;

use std::io::{BufRead, BufReader};
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

// The queue's layout (src/transport/shm/queue.rs and record.rs).
const QUEUE_AT: u64 = 192;
const CONTROL: usize = 128;
const CHANNEL: usize = 128 + (512 << 10);
const QUEUE_LEN: usize = CONTROL + 32 * CHANNEL;
const OWNER_PID: usize = 0;
const STATE: usize = 4;
const OWNER_START: usize = 8;
const TAIL: usize = 16;
const HEAD: usize = 24;
const TRANSFER: usize = 40;
const OPEN: u32 = 1;
const BEGIN: u32 = 1;
const INLINE: u32 = 2;
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
    assert!(took.iter().all(|t| t.is_some_and(|t| t < Duration::from_secs(1))), "{shown:?}");
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

/// `work`'s outcome and how long it took.
fn timed<T>(work: impl FnOnce() -> T) -> (T, Duration) {
    let started = Instant::now();
    let outcome = work();
    (outcome, started.elapsed())
}
