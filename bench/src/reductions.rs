//! The typed collectives and the barrier: Lightbeam's all-reduce, reduce (to rank 0), all-gather and
//! barrier on `f64` elements summed with `Op::Sum`, beside MPI's own calls (osu_allreduce, osu_reduce,
//! osu_allgather, osu_barrier). `size` is the bytes each rank sends, `size / 8` elements; the barrier
//! sends none. Every element is a whole number well below 2^53, so a sum is exact in any order and each
//! result is checked bit for bit.

use lightbeam::mesh::{Mesh, Op, Rank};
use mpi::collective::SystemOperation;
use mpi::traits::*;

use crate::series::{Library, Peers, Series};
use crate::timing::Trial;

/// The rank a reduce folds at.
const ROOT: usize = 0;

/// The bytes of one element.
pub(crate) const ELEMENT: usize = std::mem::size_of::<f64>();

/// The typed collectives measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Typed {
    AllReduce,
    Reduce,
    AllGather,
    Barrier,
}

/// One rank's part of a typed collective with one library, and its buffers.
pub(crate) struct TypedTrial<'p> {
    call: Typed,
    peers: &'p Peers<'p>,
    library: Library,
    send: Vec<f64>,
    recv: Vec<f64>,
}

impl Trial for TypedTrial<'_> {
    fn run(&mut self) -> Result<(), String> {
        match self.library {
            Library::Lightbeam(meshed) => {
                let mesh = self.peers.lightbeam(meshed);
                self.lightbeam(mesh).map_err(|e| e.to_string())
            }
            Library::Mpi => {
                self.mpi();
                Ok(())
            }
            Library::Zmq => Err(format!("{:?} has no raw ZeroMQ series", self.call)),
        }
    }
}

/// What `rank` sends: `count` whole numbers, different on every rank.
pub(crate) fn sent(rank: usize, count: usize) -> Vec<f64> {
    (0..count).map(|i| (rank * count + i) as f64).collect()
}

impl Typed {
    /// How many blocks of the elements each rank sends this rank receives.
    fn blocks_received(self, me: usize, n: usize) -> usize {
        match self {
            Self::AllReduce => 1,
            Self::Reduce if me == ROOT => 1,
            Self::AllGather => n,
            Self::Reduce | Self::Barrier => 0,
        }
    }

    /// What this rank must hold after the call (empty where it receives nothing).
    pub(crate) fn expected(self, me: usize, n: usize, count: usize) -> Vec<f64> {
        let each = (0..n).map(|rank| sent(rank, count));
        match self.blocks_received(me, n) {
            0 => Vec::new(),
            1 => each
                .reduce(|sum, next| sum.iter().zip(&next).map(|(a, b)| a + b).collect())
                .unwrap_or_default(),
            _ => each.flatten().collect(),
        }
    }

    /// This rank's part of the call with `series`, `size` bytes sent per rank, checked once (untimed) to
    /// leave every rank with the right result.
    pub(crate) fn trial<'p>(
        self,
        peers: &'p Peers<'p>,
        series: Series,
        size: usize,
    ) -> Result<TypedTrial<'p>, String> {
        let (me, n) = (peers.rank(), peers.size());
        let count = size / ELEMENT;
        let mut trial = TypedTrial {
            call: self,
            peers,
            library: series.library,
            send: sent(me, count),
            recv: vec![0.0; self.blocks_received(me, n) * count],
        };
        trial.run()?;
        if trial.recv != self.expected(me, n, count) {
            return Err(format!("{self:?} with {}: rank {me} holds the wrong result", series.name()));
        }
        Ok(trial)
    }
}

impl TypedTrial<'_> {
    fn lightbeam(&mut self, mesh: &Mesh) -> lightbeam::Result<()> {
        let root = Rank(ROOT);
        match self.call {
            Typed::AllReduce => mesh.all_reduce_into(&self.send, &mut self.recv, Op::Sum),
            Typed::Reduce if mesh.rank() == root => {
                mesh.reduce_into_root(&self.send, &mut self.recv, Op::Sum)
            }
            Typed::Reduce => mesh.reduce_into(root, &self.send, Op::Sum),
            Typed::AllGather => mesh.all_gather_into(&self.send, &mut self.recv),
            Typed::Barrier => mesh.barrier(),
        }
    }

    fn mpi(&mut self) {
        let world = self.peers.world;
        let root = world.process_at_rank(ROOT as i32);
        let sum = SystemOperation::sum();
        match self.call {
            Typed::AllReduce => world.all_reduce_into(&self.send[..], &mut self.recv[..], sum),
            Typed::Reduce if self.peers.rank() == ROOT => {
                root.reduce_into_root(&self.send[..], &mut self.recv[..], sum)
            }
            Typed::Reduce => root.reduce_into(&self.send[..], sum),
            Typed::AllGather => world.all_gather_into(&self.send[..], &mut self.recv[..]),
            Typed::Barrier => world.barrier(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expected_results_are_exact_sums_and_blocks_in_rank_order() {
        assert_eq!(sent(1, 3), [3.0, 4.0, 5.0]);
        // Ranks send [0, 1] and [2, 3].
        assert_eq!(Typed::AllReduce.expected(1, 2, 2), [2.0, 4.0]);
        assert_eq!(Typed::Reduce.expected(ROOT, 2, 2), [2.0, 4.0]);
        assert!(Typed::Reduce.expected(1, 2, 2).is_empty() && Typed::Barrier.expected(0, 2, 0).is_empty());
        assert_eq!(Typed::AllGather.expected(0, 2, 2), [0.0, 1.0, 2.0, 3.0]);
    }
}
