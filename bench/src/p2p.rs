//! Point-to-point benchmarks, as OSU's `osu_latency` (ping-pong between ranks 0 and 1), `osu_multi_lat`
//! (every rank ping-pongs with a partner, all pairs at once) and `osu_bw` (a window of messages from
//! rank 0 to rank 1, then one acknowledgement).

use lbm_tests::verify::pattern;
use mpi::traits::*;

use crate::raw::Outgoing;
use crate::series::{Library, Peers, Series};
use crate::timing::Trial;

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
        let buffer =
            if series.library == Library::Mpi { vec![0; receive_room.max(ACK.len())] } else { Vec::new() };
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
        let size = self.exchange.size;
        match self.partner {
            Some(Partner { rank, serves: true }) => {
                self.exchange.send(rank)?;
                self.exchange.recv(rank, size)
            }
            Some(Partner { rank, serves: false }) => {
                self.exchange.recv(rank, size)?;
                self.exchange.send(rank)
            }
            None => Ok(()),
        }
    }
}

/// Streaming: rank 0 sends a window of messages, rank 1 acknowledges the whole window. Time per message
/// = an iteration over the window.
pub(crate) struct Stream<'p>(Exchange<'p>);

impl<'p> Stream<'p> {
    pub(crate) fn new(peers: &'p Peers<'p>, series: Series, size: usize) -> Self {
        Self(Exchange::new(peers, series, size, window(size) * size))
    }
}

impl Trial for Stream<'_> {
    fn prepare(&mut self) {
        let sends = if self.0.peers.rank() == 0 { window(self.0.size) } else { 0 };
        self.0.prepare(sends);
    }

    fn run(&mut self) -> Result<(), String> {
        let (count, size) = (window(self.0.size), self.0.size);
        let (library, peers) = (self.0.series.library, self.0.peers);
        match (peers.rank(), library) {
            (0, Library::Mpi) => {
                mpi_send_window(peers, &self.0.data, count);
                self.0.recv(1, ACK.len())
            }
            (1, Library::Mpi) => {
                mpi_recv_window(peers, &mut self.0.buffer[..count * size], size);
                peers.send(library, 0, Outgoing::Lent(&ACK))
            }
            (0, _) => {
                (0..count).try_for_each(|_| self.0.send(1))?;
                self.0.recv(1, ACK.len())
            }
            (1, _) => {
                (0..count).try_for_each(|_| self.0.recv(0, size))?;
                peers.send(library, 0, Outgoing::Lent(&ACK))
            }
            _ => Ok(()),
        }
    }
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
