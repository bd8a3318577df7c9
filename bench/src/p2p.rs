//! Point-to-point benchmarks between ranks 0 and 1 (other ranks wait at the barriers), as OSU's
//! `osu_latency` (ping-pong) and `osu_bw` (a window of messages, then one acknowledgement).

use lightbeam::verify::pattern;

use crate::raw::Outgoing;
use crate::series::{Library, Peers, Series};
use crate::timing::{time_iterations, Schedule, Summary};

/// At most this many messages per bandwidth window (OSU's default window).
const WINDOW: usize = 64;
/// A window holds at most this many bytes, so that large messages do not queue gigabytes.
const WINDOW_BYTES: usize = 64 << 20;
/// A bandwidth window's acknowledgement.
const ACK: [u8; 4] = *b"ack!";

/// Messages per bandwidth window for messages of `size` bytes.
pub(crate) fn window(size: usize) -> usize {
    (WINDOW_BYTES / size.max(1)).clamp(1, WINDOW)
}

/// What each send of an iteration hands over: owned copies made before the clock starts for a series
/// that gives its buffers away, else the same buffer lent each time.
fn outgoing<'a>(mut owned: Vec<Vec<u8>>, data: &'a [u8]) -> impl FnMut() -> Outgoing<'a> + 'a {
    move || owned.pop().map_or(Outgoing::Lent(data), Outgoing::Given)
}

fn prepare(series: Series, sends: usize, data: &[u8]) -> Vec<Vec<u8>> {
    if series.gives {
        (0..sends).map(|_| data.to_vec()).collect()
    } else {
        Vec::new()
    }
}

/// One-way latency in microseconds: half the median round trip of a `size`-byte ping-pong.
pub(crate) fn latency(
    peers: &Peers<'_>,
    series: Series,
    size: usize,
    schedule: Schedule,
) -> Result<Summary, String> {
    let me = peers.rank();
    let data = pattern(size, 1);
    let mut buffer = if series.library == Library::Mpi { vec![0u8; size] } else { Vec::new() };
    let sends = usize::from(me <= 1);
    let times = time_iterations(
        peers.world,
        schedule,
        || prepare(series, sends, &data),
        |owned| {
            let mut next = outgoing(owned, &data);
            match me {
                0 => {
                    peers.send(series.library, 1, next())?;
                    peers.recv(series.library, 1, size, &mut buffer)
                }
                1 => {
                    peers.recv(series.library, 0, size, &mut buffer)?;
                    peers.send(series.library, 0, next())
                }
                _ => Ok(()),
            }
        },
    )?;
    Ok(Summary::of(&times).scaled(0.5e6))
}

/// Streaming: the time per message (microseconds) of windows of `size`-byte messages from rank 0 to
/// rank 1, each window ending when rank 1 acknowledges it.
pub(crate) fn bandwidth(
    peers: &Peers<'_>,
    series: Series,
    size: usize,
    schedule: Schedule,
) -> Result<Summary, String> {
    let me = peers.rank();
    let count = window(size);
    let data = pattern(size, 2);
    let mut buffer =
        if series.library == Library::Mpi { vec![0u8; count * size] } else { vec![0u8; ACK.len()] };
    let times = time_iterations(
        peers.world,
        schedule,
        || prepare(series, if me == 0 { count } else { 0 }, &data),
        |owned| match (me, series.library) {
            (0, Library::Mpi) => {
                mpi_send_window(peers, &data, count);
                peers.recv(Library::Mpi, 1, ACK.len(), &mut buffer)
            }
            (1, Library::Mpi) => {
                mpi_recv_window(peers, &mut buffer, size);
                peers.send(Library::Mpi, 0, Outgoing::Lent(&ACK))
            }
            (0, library) => {
                let mut next = outgoing(owned, &data);
                (0..count).try_for_each(|_| peers.send(library, 1, next()))?;
                peers.recv(library, 1, ACK.len(), &mut buffer)
            }
            (1, library) => {
                (0..count).try_for_each(|_| peers.recv(library, 0, size, &mut buffer))?;
                peers.send(library, 0, Outgoing::Lent(&ACK))
            }
            _ => Ok(()),
        },
    )?;
    Ok(Summary::of(&times).scaled(1e6 / count as f64))
}

/// MPI's window as osu_bw sends it: every send posted at once, then all awaited.
fn mpi_send_window(peers: &Peers<'_>, data: &[u8], count: usize) {
    use mpi::traits::*;
    let to = peers.world.process_at_rank(1);
    mpi::request::multiple_scope(count, |scope, requests| {
        for _ in 0..count {
            requests.add(to.immediate_send(scope, data));
        }
        requests.wait_all(&mut Vec::new());
    });
}

/// MPI's receiving side of a window: every receive posted at once, each into its own part of `buffer`.
fn mpi_recv_window(peers: &Peers<'_>, buffer: &mut [u8], size: usize) {
    use mpi::traits::*;
    let from = peers.world.process_at_rank(0);
    let count = buffer.len() / size.max(1);
    mpi::request::multiple_scope(count, |scope, requests| {
        for part in buffer.chunks_mut(size.max(1)).take(count) {
            requests.add(from.immediate_receive_into(scope, &mut part[..size]));
        }
        requests.wait_all(&mut Vec::new());
    });
}
