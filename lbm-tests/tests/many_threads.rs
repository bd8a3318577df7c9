//! Many threads sharing one server: every message, with 0 to 3 bulks, is delivered exactly once, to one
//! thread, with its own bulks; over tcp, ipc and inproc; through each receive shape (the seed's
//! `recv_metadata` + `recv_bulks`, `recv_metadata` + `take_bulks`, and whole messages with
//! `recv_message`); and no thread spins while it waits.

mod util;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use lightbeam::{Error, LbmMeta, Protocol, Server};
use util::*;

const SENDERS: usize = 4;
const PER_SENDER: usize = 150;
const RECEIVERS: usize = 8;
/// How long one receive call waits before it returns empty-handed.
const POLL: Duration = Duration::from_millis(50);

/// What a message says of itself: its number and the checksum of each of its bulks.
type Custom = (u32, Vec<u64>);

#[derive(Debug, Clone, Copy)]
enum Shape {
    RecvBulks,
    TakeBulks,
    WholeMessage,
}

/// The bulks of message `id`: 0 to 3 of them, of sizes from 0 to about 3 KB.
fn bulks_of(id: usize) -> Vec<Vec<u8>> {
    (0..id % 4).map(|j| pattern((id * 7 + j * 1013) % 3000, (id * 4 + j) as u64)).collect()
}

/// What the receiving threads saw.
#[derive(Debug, Default)]
struct Tally {
    seen: Vec<usize>,
    corrupted: usize,
    bulks_pending_errors: usize,
    /// Per thread: receive calls that returned with nothing, and how long the thread ran.
    idle_returns: Vec<(usize, Duration)>,
}

/// One received message checked against its own metadata: its number, or `None` when its bulks are not
/// the ones its metadata describes.
fn check(custom: &Custom, bulks: &[&[u8]]) -> Option<usize> {
    let id = custom.0 as usize;
    let sums: Vec<u64> = bulks.iter().map(|b| checksum(b)).collect();
    (sums == custom.1 && bulks.len() == id % 4).then_some(id)
}

/// Receives one message in `shape`: `Ok(None)` when nothing came within [`POLL`], else the message's
/// number, or `usize::MAX` when it arrived corrupted.
fn receive_one(server: &dyn Server, shape: Shape) -> lightbeam::Result<Option<usize>> {
    let corrupted = |checked: Option<usize>| Some(checked.unwrap_or(usize::MAX));
    if let Shape::WholeMessage = shape {
        let message = match server.recv_message(POLL) {
            Err(Error::Timeout { .. }) => return Ok(None),
            other => other?,
        };
        let meta = message.metadata::<Custom>()?;
        return into_buffers(server, meta, |meta| message.recv_bulks(meta)).map(corrupted);
    }
    let mut meta = LbmMeta::<Custom>::default();
    let event = server.recv_metadata_timeout(&mut meta, POLL);
    if !event.is_done() {
        return Ok(None);
    }
    event.into_result()?;
    match shape {
        Shape::TakeBulks => {
            let payloads = server.take_bulks()?;
            let views: Vec<&[u8]> = payloads.iter().map(|p| &p[..]).collect();
            Ok(corrupted(check(&meta.custom, &views)))
        }
        _ => into_buffers(server, meta, |meta| server.recv_bulks(meta).into_result()).map(corrupted),
    }
}

/// The README's receive pattern: a buffer of each announced size, exposed, filled by `recv`; then checked.
fn into_buffers(
    server: &dyn Server,
    mut meta: LbmMeta<'_, Custom>,
    recv: impl FnOnce(&mut LbmMeta<'_, Custom>) -> lightbeam::Result<usize>,
) -> lightbeam::Result<Option<usize>> {
    let mut buffers: Vec<Vec<u8>> = meta.bulks.iter().map(|b| vec![0; b.size()]).collect();
    let custom = std::mem::take(&mut meta.custom);
    let mut exposed = LbmMeta::new(custom);
    exposed.bulks = buffers.iter_mut().map(|b| server.expose(b, Default::default())).collect();
    recv(&mut exposed)?;
    let custom = exposed.custom;
    let views: Vec<&[u8]> = buffers.iter().map(Vec::as_slice).collect();
    Ok(check(&custom, &views))
}

fn run(protocol: Protocol, shape: Shape) -> Tally {
    let (server, client) = pair(protocol);
    let total = SENDERS * PER_SENDER;
    let delivered = AtomicUsize::new(0);
    let tally = Mutex::new(Tally { seen: vec![0; total], ..Tally::default() });
    let deadline = Instant::now() + WAIT * 3;
    std::thread::scope(|scope| {
        for sender in 0..SENDERS {
            let client = &client;
            scope.spawn(move || {
                for id in (sender * PER_SENDER)..((sender + 1) * PER_SENDER) {
                    let bulks = bulks_of(id);
                    let custom: Custom = (id as u32, bulks.iter().map(|b| checksum(b)).collect());
                    let views: Vec<&[u8]> = bulks.iter().map(Vec::as_slice).collect();
                    send_all(client, custom, &views);
                }
            });
        }
        for _ in 0..RECEIVERS {
            let (server, delivered, tally) = (&server, &delivered, &tally);
            scope.spawn(move || {
                let (started, mut idle) = (Instant::now(), 0);
                while delivered.load(Ordering::SeqCst) < total && Instant::now() < deadline {
                    match receive_one(server, shape) {
                        Ok(None) => idle += 1,
                        Ok(Some(id)) => {
                            delivered.fetch_add(1, Ordering::SeqCst);
                            let mut tally = tally.lock().unwrap();
                            match tally.seen.get_mut(id) {
                                Some(count) => *count += 1,
                                None => tally.corrupted += 1,
                            }
                        }
                        Err(Error::BulksPending(_)) => tally.lock().unwrap().bulks_pending_errors += 1,
                        Err(error) => panic!("{protocol} {shape:?}: {error}"),
                    }
                }
                tally.lock().unwrap().idle_returns.push((idle, started.elapsed()));
            });
        }
    });
    tally.into_inner().unwrap()
}

#[test]
fn every_message_is_delivered_once_to_one_thread_with_its_own_bulks() {
    for protocol in [Protocol::Tcp, Protocol::Ipc, Protocol::Inproc] {
        for shape in [Shape::RecvBulks, Shape::TakeBulks, Shape::WholeMessage] {
            let tally = run(protocol, shape);
            let lost = tally.seen.iter().filter(|&&n| n == 0).count();
            let duplicated = tally.seen.iter().filter(|&&n| n > 1).count();
            let idle: usize = tally.idle_returns.iter().map(|(n, _)| n).sum();
            println!(
                "{protocol} {shape:?}: {} messages to {RECEIVERS} threads: {lost} lost, {duplicated} duplicated, \
                 {} corrupted, {} BulksPending, {idle} idle returns in all",
                tally.seen.len(),
                tally.corrupted,
                tally.bulks_pending_errors
            );
            assert_eq!((lost, duplicated, tally.corrupted), (0, 0, 0), "{protocol} {shape:?}");
            assert_eq!(tally.bulks_pending_errors, 0, "{protocol} {shape:?}: a thread was told to retry");
            // No spinning: a receive that returns empty-handed has waited its whole POLL first.
            for (idle, ran) in &tally.idle_returns {
                let most = ran.as_millis() as usize / POLL.as_millis() as usize + 1;
                assert!(*idle <= most, "{protocol} {shape:?}: {idle} idle returns in {ran:?}: a thread spun");
            }
        }
    }
}

#[test]
fn the_seed_pair_reads_a_message_without_bulks_then_the_next_one() {
    // The README's generic loop: recv_metadata, then recv_bulks with one buffer per announced bulk (none).
    let (server, client) = pair(Protocol::Inproc);
    send_all(&client, 1u32, &[]);
    send_all(&client, 2u32, &[b"second"]);
    for (expected, bulks) in [(1u32, vec![]), (2, vec![b"second".to_vec()])] {
        assert_eq!(recv_all::<u32>(&server).unwrap(), (expected, bulks));
    }
    let mut meta = LbmMeta::<u32>::default();
    assert_eq!(server.recv_bulks(&mut meta).error(), Some(&Error::NoPendingMessage));
}

#[test]
fn a_short_receive_is_not_held_up_by_a_long_one_on_another_thread() {
    let (server, client) = pair(Protocol::Tcp);
    std::thread::scope(|scope| {
        let long = scope.spawn(|| server.recv_message(WAIT));
        std::thread::sleep(Duration::from_millis(100)); // the long receive now holds the socket
        let started = Instant::now();
        let short = server.recv_message(POLL);
        assert!(matches!(short, Err(Error::Timeout { .. })), "{short:?}");
        assert!(started.elapsed() < WAIT / 5, "the short receive waited {:?}", started.elapsed());
        send_all(&client, 5u32, &[b"for the long one"]);
        let message = long.join().unwrap().unwrap();
        assert_eq!(message.metadata::<u32>().unwrap().custom, 5);
    });
}
