//! Point-to-point benchmarks, as OSU's `osu_latency` (ping-pong between ranks 0 and 1), `osu_multi_lat`
//! (every rank ping-pongs with a partner, all pairs at once) and `osu_bw` (a window of messages from
//! rank 0 to rank 1, then one acknowledgement). Lightbeam's non-blocking series (`lightbeam-nb`) starts
//! a window's sends (or receives) in a scope and waits for them all, as MPI's does; in a ping-pong it
//! starts each send and receive and waits for it at once, in one scope open throughout the timing.

use lbm_tests::verify::pattern;
use lightbeam::mesh::{wait_all, Mesh, Rank, Scope};
use mpi::traits::*;

use crate::raw::Outgoing;
use crate::series::{check_length, Library, Peers, Series, TAG};
use crate::timing::{self, Schedule, Trial};

/// At most this many messages per bandwidth window (OSU's default window); always this many in
/// `window-bw`.
pub(crate) const WINDOW: usize = 64;
/// A window holds at most this many bytes, so that large messages do not queue gigabytes.
const WINDOW_BYTES: usize = 64 << 20;
/// A bandwidth window's acknowledgement.
const ACK: [u8; 4] = *b"ack!";

/// Messages per bandwidth window for messages of `size` bytes.
pub(crate) fn window(size: usize) -> usize {
    (WINDOW_BYTES / size.max(1)).clamp(1, WINDOW)
}

/// What a rank needs to exchange `size`-byte messages with one series.
struct Exchange<'p> {
    peers: &'p Peers<'p>,
    series: Series,
    size: usize,
    data: Vec<u8>,
    /// Where MPI receives (Lightbeam and ZeroMQ read in place).
    buffer: Vec<u8>,
    /// Buffers to give away in the next iteration, made off the clock (zero-copy series only).
    owned: Vec<Vec<u8>>,
}

impl<'p> Exchange<'p> {
    fn new(peers: &'p Peers<'p>, series: Series, size: usize, receive_room: usize) -> Self {
        let receives_into = series.library == Library::Mpi || series.nonblocking;
        let buffer = if receives_into { vec![0; receive_room.max(ACK.len())] } else { Vec::new() };
        Self { peers, series, size, data: pattern(size, 1), buffer, owned: Vec::new() }
    }

    /// Makes `sends` owned copies of the data for a series that gives its buffers away.
    fn prepare(&mut self, sends: usize) {
        if self.series.gives {
            self.owned = (0..sends).map(|_| self.data.clone()).collect();
        }
    }

    fn send(&mut self, to: usize) -> Result<(), String> {
        let data = self.owned.pop().map_or(Outgoing::Lent(&self.data), Outgoing::Given);
        self.peers.send(self.series.library, to, data)
    }

    fn recv(&mut self, from: usize, size: usize) -> Result<(), String> {
        self.peers.recv(self.series.library, from, size, &mut self.buffer)
    }
}

/// One side of a ping-pong: sends a message to its partner, receives one from it.
trait Ball {
    fn send_to(&mut self, to: usize) -> Result<(), String>;
    fn recv_from(&mut self, from: usize) -> Result<(), String>;
}

impl Ball for Exchange<'_> {
    fn send_to(&mut self, to: usize) -> Result<(), String> {
        self.send(to)
    }

    fn recv_from(&mut self, from: usize) -> Result<(), String> {
        self.recv(from, self.size)
    }
}

/// This rank's side of a ping-pong: the rank it plays with, and whether it sends first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Partner {
    rank: usize,
    serves: bool,
}

impl Partner {
    /// Ranks 0 and 1 play, rank 0 serving; the others sit out (osu_latency).
    fn first_two(me: usize) -> Option<Self> {
        match me {
            0 => Some(Self { rank: 1, serves: true }),
            1 => Some(Self { rank: 0, serves: false }),
            _ => None,
        }
    }

    /// Rank i plays with rank i + n/2, the lower one serving (osu_multi_lat). `n` is even.
    fn halves(me: usize, n: usize) -> Self {
        let half = n / 2;
        Self { rank: (me + half) % n, serves: me < half }
    }

    /// One round trip: the server sends, then receives the answer; its partner receives, then answers.
    fn play(self, ball: &mut impl Ball) -> Result<(), String> {
        if self.serves {
            ball.send_to(self.rank)?;
            ball.recv_from(self.rank)
        } else {
            ball.recv_from(self.rank)?;
            ball.send_to(self.rank)
        }
    }
}

/// Ping-pong: the serving rank sends, its partner answers with as many bytes. Time one way = half an
/// iteration.
pub(crate) struct PingPong<'p> {
    exchange: Exchange<'p>,
    partner: Option<Partner>,
}

impl<'p> PingPong<'p> {
    /// Between ranks 0 and 1 (osu_latency).
    pub(crate) fn new(peers: &'p Peers<'p>, series: Series, size: usize) -> Self {
        Self::with(peers, series, size, Partner::first_two(peers.rank()))
    }

    /// Every rank at once, rank i with rank i + n/2 (osu_multi_lat). Needs an even number of ranks.
    pub(crate) fn pairs(peers: &'p Peers<'p>, series: Series, size: usize) -> Self {
        Self::with(peers, series, size, Some(Partner::halves(peers.rank(), peers.size())))
    }

    /// The ping-pong of a rank whose side is `partner` (`None`: it sits out).
    fn with(peers: &'p Peers<'p>, series: Series, size: usize, partner: Option<Partner>) -> Self {
        Self { exchange: Exchange::new(peers, series, size, size), partner }
    }
}

impl Trial for PingPong<'_> {
    fn prepare(&mut self) {
        self.exchange.prepare(usize::from(self.partner.is_some()));
    }

    fn run(&mut self) -> Result<(), String> {
        self.partner.map_or(Ok(()), |partner| partner.play(&mut self.exchange))
    }
}

/// Times the ping-pong of `series` between ranks 0 and 1 at `size` bytes, each operation run `times`
/// times back to back, with one Lightbeam scope open on the default mesh throughout: `lightbeam-nb`
/// starts its sends and receives in it and waits for each at once (it receives in place, as the
/// blocking series does: a buffer lent to a scope stays lent until the scope ends). `blocking` makes
/// the other series' trials.
pub(crate) fn time_in_scope<'p>(
    peers: &'p Peers<'p>,
    series: &[Series],
    size: usize,
    schedule: Schedule,
    times: usize,
    blocking: impl Fn(Series) -> Result<Box<dyn Trial + 'p>, String>,
) -> Result<Vec<Vec<f64>>, String> {
    let data = pattern(size, 1);
    let partner = Partner::first_two(peers.rank());
    peers.mesh.scope(|scope| {
        let mut trials = series
            .iter()
            .map(|&s| match s.nonblocking {
                true => Ok(Box::new(Started { scope, data: &data, partner }) as Box<dyn Trial + '_>),
                false => blocking(s),
            })
            .map(|trial| trial.map(|trial| timing::back_to_back(trial, times)))
            .collect::<Result<Vec<_>, _>>()?;
        timing::time_interleaved(peers.world, schedule, &mut trials)
    })
}

/// Lightbeam's ping-pong with its non-blocking calls, each started and waited for at once in a scope
/// opened before the timing.
struct Started<'a, 's, 'env> {
    scope: &'a Scope<'s, 'env>,
    data: &'s [u8],
    partner: Option<Partner>,
}

impl Ball for Started<'_, '_, '_> {
    fn send_to(&mut self, to: usize) -> Result<(), String> {
        self.scope.send(Rank(to), TAG, self.data).wait().map_err(|e| e.to_string())
    }

    fn recv_from(&mut self, from: usize) -> Result<(), String> {
        let message = self.scope.recv(Rank(from), TAG).wait().map_err(|e| e.to_string())?;
        check_length(message.data().len(), self.data.len(), from)
    }
}

impl Trial for Started<'_, '_, '_> {
    fn run(&mut self) -> Result<(), String> {
        self.partner.map_or(Ok(()), |partner| partner.play(self))
    }
}

/// Streaming: rank 0 sends a window of messages, rank 1 acknowledges the whole window. Time per message
/// = an iteration over the window.
pub(crate) struct Stream<'p> {
    exchange: Exchange<'p>,
    /// Messages per window.
    window: usize,
}

impl<'p> Stream<'p> {
    /// Windows of `window` messages of `size` bytes.
    pub(crate) fn new(peers: &'p Peers<'p>, series: Series, size: usize, window: usize) -> Self {
        Self { exchange: Exchange::new(peers, series, size, window * size), window }
    }

    /// Rank 0's window: the sends of the series.
    fn send_window(&mut self) -> Result<(), String> {
        let (series, peers) = (self.exchange.series, self.exchange.peers);
        match (series.library, series.nonblocking) {
            (Library::Mpi, _) => {
                mpi_send_window(peers, &self.exchange.data, self.window);
                Ok(())
            }
            (Library::Lightbeam(meshed), true) => {
                lightbeam_send_window(peers.lightbeam(meshed), &self.exchange.data, self.window)
            }
            _ => (0..self.window).try_for_each(|_| self.exchange.send(1)),
        }
    }

    /// Rank 1's window: the receives of the series.
    fn recv_window(&mut self) -> Result<(), String> {
        let (series, peers, size) = (self.exchange.series, self.exchange.peers, self.exchange.size);
        let buffer = &mut self.exchange.buffer; // MPI's and lightbeam-nb's: room for the whole window
        match (series.library, series.nonblocking) {
            (Library::Mpi, _) => {
                mpi_recv_window(peers, &mut buffer[..self.window * size], size);
                Ok(())
            }
            (Library::Lightbeam(meshed), true) => {
                lightbeam_recv_window(peers.lightbeam(meshed), &mut buffer[..self.window * size], size)
            }
            _ => (0..self.window).try_for_each(|_| self.exchange.recv(0, size)),
        }
    }
}

impl Trial for Stream<'_> {
    fn prepare(&mut self) {
        let sends = if self.exchange.peers.rank() == 0 { self.window } else { 0 };
        self.exchange.prepare(sends);
    }

    fn run(&mut self) -> Result<(), String> {
        let (library, peers) = (self.exchange.series.library, self.exchange.peers);
        match peers.rank() {
            0 => {
                self.send_window()?;
                self.exchange.recv(1, ACK.len())
            }
            1 => {
                self.recv_window()?;
                peers.send(library, 0, Outgoing::Lent(&ACK))
            }
            _ => Ok(()),
        }
    }
}

/// Lightbeam's window with its non-blocking calls: every send started in one scope, then all awaited.
fn lightbeam_send_window(mesh: &Mesh, data: &[u8], count: usize) -> Result<(), String> {
    let sent = mesh.scope(|s| wait_all((0..count).map(|_| s.send(Rank(1), TAG, data))));
    sent.map(drop).map_err(|e| e.to_string())
}

/// Lightbeam's receiving side of a window: every receive started in one scope, each into its own part
/// of `buffer`, then all awaited.
fn lightbeam_recv_window(mesh: &Mesh, buffer: &mut [u8], size: usize) -> Result<(), String> {
    let parts = buffer.chunks_mut(size.max(1));
    let got = mesh.scope(|s| wait_all(parts.map(|part| s.recv_into(Rank(0), TAG, part))));
    got.map_err(|e| e.to_string())?.into_iter().try_for_each(|(_, len)| check_length(len, size, 0))
}

/// MPI's window as osu_bw sends it: every send posted at once, then all awaited.
fn mpi_send_window(peers: &Peers<'_>, data: &[u8], count: usize) {
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
    let from = peers.world.process_at_rank(0);
    let count = buffer.len() / size.max(1);
    mpi::request::multiple_scope(count, |scope, requests| {
        for part in buffer.chunks_mut(size.max(1)) {
            requests.add(from.immediate_receive_into(scope, part));
        }
        requests.wait_all(&mut Vec::new());
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn halves_pair_every_rank_once_with_one_server_per_pair() {
        for n in [2, 4, 6] {
            for me in 0..n {
                let side = Partner::halves(me, n);
                let other = Partner::halves(side.rank, n);
                assert_eq!((other.rank, other.serves), (me, !side.serves), "rank {me} of {n}");
            }
        }
        assert_eq!(Partner::halves(1, 4), Partner { rank: 3, serves: true });
        assert_eq!(Partner::first_two(2), None);
    }
}
