//! Collective benchmarks (root 0): Lightbeam's collectives, the same algorithms written directly on raw
//! ZeroMQ sockets, and MPI's own. `size` is the bytes per rank (per pair for all-to-all), as in OSU.

use lbm_tests::verify::pattern;
use lightbeam::mesh::{Mesh, Rank};
use lightbeam::shm::SharedBytes;
use mpi::traits::*;

use crate::raw::Outgoing;
use crate::series::{Library, Peers, Series};
use crate::timing::Trial;

/// One rank's part of a collective with one library, and its buffers.
pub(crate) struct CollectiveTrial<'p> {
    collective: Collective,
    peers: &'p Peers<'p>,
    library: Library,
    size: usize,
    buffers: Buffers,
}

impl Trial for CollectiveTrial<'_> {
    fn run(&mut self) -> Result<(), String> {
        self.collective.run(self.peers, self.library, self.size, &mut self.buffers)
    }
}

/// The collectives measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Collective {
    Bcast,
    Scatter,
    Gather,
    Alltoall,
    /// Lightbeam's shared broadcast (MPI's series is its broadcast).
    BcastShared,
}

/// The root of every rooted collective.
pub(crate) const ROOT: usize = 0;

/// A rank's buffers for one collective: what it sends, where it receives (contiguous, as MPI's), and
/// the per-rank parts Lightbeam's gather and all-to-all return; for the shared broadcast, the root's
/// shared data (made once, off the clock) and each rank's view of the last one.
struct Buffers {
    send: Vec<u8>,
    recv: Vec<u8>,
    parts: Vec<Vec<u8>>,
    shared: Option<SharedBytes>,
}

impl Collective {
    fn buffers(self, me: usize, n: usize, size: usize) -> Buffers {
        let (send, recv) = match self {
            Self::Bcast | Self::BcastShared if me == ROOT => (Vec::new(), pattern(size, 0)),
            Self::Bcast | Self::BcastShared => (Vec::new(), vec![0; size]),
            Self::Scatter if me == ROOT => (pattern(n * size, 0), vec![0; size]),
            Self::Scatter => (Vec::new(), vec![0; size]),
            Self::Gather if me == ROOT => (pattern(size, me as u64), vec![0; n * size]),
            Self::Gather => (pattern(size, me as u64), Vec::new()),
            Self::Alltoall => (pattern(n * size, me as u64), vec![0; n * size]),
        };
        let shared = (self == Self::BcastShared && me == ROOT)
            .then(|| SharedBytes::copy_from(&recv).expect("shared memory for the benchmark"));
        Buffers { send, recv, parts: Vec::new(), shared }
    }

    /// What this rank must hold after the collective (empty where it receives nothing).
    pub(crate) fn expected(self, me: usize, n: usize, size: usize) -> Vec<u8> {
        let mine = |whole: Vec<u8>| whole[me * size..(me + 1) * size].to_vec();
        match self {
            Self::Bcast | Self::BcastShared => pattern(size, 0),
            Self::Scatter => mine(pattern(n * size, 0)),
            Self::Gather if me == ROOT => {
                (0..n).map(|p| pattern(size, p as u64)).collect::<Vec<_>>().concat()
            }
            Self::Gather => Vec::new(),
            Self::Alltoall => (0..n).map(|p| mine(pattern(n * size, p as u64))).collect::<Vec<_>>().concat(),
        }
    }

    /// This rank's part of the collective with `series`, checked once (untimed) to leave every rank
    /// with the right data.
    pub(crate) fn trial<'p>(
        self,
        peers: &'p Peers<'p>,
        series: Series,
        size: usize,
    ) -> Result<CollectiveTrial<'p>, String> {
        let (me, n) = (peers.rank(), peers.size());
        let mut trial = CollectiveTrial {
            collective: self,
            peers,
            library: series.library,
            size,
            buffers: self.buffers(me, n, size),
        };
        trial.run()?;
        let held = match (&trial.buffers.shared, trial.buffers.parts.is_empty()) {
            (Some(view), _) if series.is_lightbeam() => view.to_vec(),
            (_, true) => trial.buffers.recv.clone(),
            (_, false) => trial.buffers.parts.concat(),
        };
        if held != self.expected(me, n, size) {
            return Err(format!("{self:?} with {}: rank {me} holds the wrong data", series.name()));
        }
        Ok(trial)
    }

    fn run(self, peers: &Peers<'_>, library: Library, size: usize, b: &mut Buffers) -> Result<(), String> {
        match library {
            Library::Lightbeam(meshed) => {
                self.lightbeam(peers.lightbeam(meshed), size, b).map_err(|e| e.to_string())
            }
            Library::Zmq => self.zmq(peers, size, b),
            Library::Mpi => {
                self.mpi(peers, b);
                Ok(())
            }
        }
    }

    fn lightbeam(self, mesh: &Mesh, size: usize, b: &mut Buffers) -> lightbeam::Result<()> {
        let root = Rank(ROOT);
        let is_root = mesh.rank() == root;
        let chunks: Vec<&[u8]> = b.send.chunks(size.max(1)).collect();
        match self {
            Self::Bcast => mesh.broadcast_into(root, &mut b.recv[..]).map(drop),
            Self::BcastShared if is_root => mesh.broadcast_shared_root(b.shared.as_ref().expect("made")),
            Self::BcastShared => {
                b.shared = None; // the last view goes first, as a program done with it would drop it
                b.shared = Some(mesh.broadcast_shared(root)?);
                Ok(())
            }
            Self::Scatter if is_root => mesh.scatter_into_root(&chunks, &mut b.recv[..]).map(drop),
            Self::Scatter => mesh.scatter_into(root, &mut b.recv[..]).map(drop),
            Self::Gather if is_root => mesh.gather_into_root(&b.send, &mut b.parts).map(drop),
            Self::Gather => mesh.gather_into(root, &b.send),
            Self::Alltoall => mesh.all_to_all_into(&chunks, &mut b.parts).map(drop),
        }
    }

    fn mpi(self, peers: &Peers<'_>, b: &mut Buffers) {
        let root = peers.world.process_at_rank(ROOT as i32);
        let is_root = peers.rank() == ROOT;
        match self {
            Self::Bcast | Self::BcastShared => root.broadcast_into(&mut b.recv[..]),
            Self::Scatter if is_root => root.scatter_into_root(&b.send[..], &mut b.recv[..]),
            Self::Scatter => root.scatter_into(&mut b.recv[..]),
            Self::Gather if is_root => root.gather_into_root(&b.send[..], &mut b.recv[..]),
            Self::Gather => root.gather_into(&b.send[..]),
            Self::Alltoall => peers.world.all_to_all_into(&b.send[..], &mut b.recv[..]),
        }
    }

    /// The algorithms Lightbeam uses, on raw sockets: no envelope, no metadata, sizes known in advance.
    fn zmq(self, peers: &Peers<'_>, size: usize, b: &mut Buffers) -> Result<(), String> {
        let (me, n, raw) = (peers.rank(), peers.size(), peers.raw);
        let recv_into = |from: usize, into: &mut [u8]| -> Result<(), String> {
            let message = raw.recv(from)?;
            crate::series::check_length(message.len(), into.len(), from)?;
            into.copy_from_slice(&message);
            Ok(())
        };
        match self {
            Self::Bcast | Self::BcastShared => zmq_broadcast(peers, &mut b.recv),
            Self::Scatter if me == ROOT => {
                for (to, chunk) in b.send.chunks(size.max(1)).enumerate().filter(|&(to, _)| to != ROOT) {
                    raw.send(to, Outgoing::Lent(chunk))?;
                }
                b.recv.copy_from_slice(&b.send[ROOT * size..(ROOT + 1) * size]);
                Ok(())
            }
            Self::Scatter => recv_into(ROOT, &mut b.recv),
            Self::Gather if me == ROOT => {
                b.recv[ROOT * size..(ROOT + 1) * size].copy_from_slice(&b.send);
                (0..n)
                    .filter(|&p| p != ROOT)
                    .try_for_each(|p| recv_into(p, &mut b.recv[p * size..(p + 1) * size]))
            }
            Self::Gather => raw.send(ROOT, Outgoing::Lent(&b.send)),
            Self::Alltoall => {
                b.recv[me * size..(me + 1) * size].copy_from_slice(&b.send[me * size..(me + 1) * size]);
                for step in 1..n {
                    let (to, from) = ((me + step) % n, (me + n - step) % n);
                    raw.send(to, Outgoing::Lent(&b.send[to * size..(to + 1) * size]))?;
                    recv_into(from, &mut b.recv[from * size..(from + 1) * size])?;
                }
                Ok(())
            }
        }
    }
}

/// Lightbeam's broadcast algorithms (binomial tree below the mesh's pipeline threshold, else a chain of
/// pieces each forwarded as received) on raw sockets.
fn zmq_broadcast(peers: &Peers<'_>, buffer: &mut [u8]) -> Result<(), String> {
    let (me, n, raw) = (peers.rank(), peers.size(), peers.raw);
    let relative = (me + n - ROOT) % n;
    let absolute = |r: usize| (r + ROOT) % n;
    let config = peers.mesh.config();
    if buffer.len() < config.pipeline_threshold {
        let lowest_bit = relative & relative.wrapping_neg();
        if relative != 0 {
            let message = raw.recv(absolute(relative - lowest_bit))?;
            crate::series::check_length(message.len(), buffer.len(), relative - lowest_bit)?;
            buffer.copy_from_slice(&message);
        }
        let mut step = if relative == 0 { n.next_power_of_two() } else { lowest_bit } >> 1;
        while step > 0 {
            if relative + step < n {
                raw.send(absolute(relative + step), Outgoing::Lent(buffer))?;
            }
            step >>= 1;
        }
        return Ok(());
    }
    let next = (relative + 1 < n).then(|| absolute(relative + 1));
    for piece in buffer.chunks_mut(config.chunk_size.max(1)) {
        if relative == 0 {
            if let Some(next) = next {
                raw.send(next, Outgoing::Lent(piece))?;
            }
            continue;
        }
        let message = raw.recv(absolute(relative - 1))?;
        crate::series::check_length(message.len(), piece.len(), absolute(relative - 1))?;
        piece.copy_from_slice(&message);
        if let Some(next) = next {
            raw.forward(next, message)?;
        }
    }
    Ok(())
}
