//! Collectives on the mesh, named after rsmpi's: broadcast, scatter, gather and all-to-all, the shared
//! broadcast, and the typed ones: barrier, all-reduce, reduce, reduce-scatter and all-gather.
//!
//! Every rank calls the same collectives in the same order. Each call takes the next sequence number,
//! and every message it sends carries it, so consecutive collectives never mix data, and a rank that is
//! one collective behind still gets the right data (early arrivals wait in the mesh's queue).
//!
//! Receivers learn sizes from the metadata phase: receive buffers are any [`Buffer`]: a `Vec<u8>` is
//! resized to what arrives, a `[u8]` slice must be large enough (the return value says how much
//! arrived). Chunk sizes may differ per rank (MPI's `v` variants: scatterv, gatherv, alltoallv) with no
//! extra call. The plan (`plan.rs`) says which algorithm each call takes.
//!
//! Each collective is a function of its call's `Exchange` (which sends, forwards and receives the
//! call's messages and reports its faults), the mesh's `Plan`, and the caller's buffers: `broadcast`,
//! `scatter_gather`, `all_to_all`, `by_node` (across nodes), `read_in_place` (single copies on one node)
//! and `shared_broadcast`. Their messages are those of `protocol.rs`.
//!
//! When a rank finds a bad argument (a chunk count that does not match the rank count), it returns an
//! error naming the problem and tells the ranks waiting on it, which fail at once with that reason
//! ([`Error::PeerFailed`](crate::Error::PeerFailed)) instead of at their deadline.
//!
//! # Typed data
//! Every buffer is a `Vec<T>` or a `[T]` of a plain-data element type `T` ([`Buffer`]; `u8` for bytes,
//! `f64`, a `#[repr(C)]` struct deriving `bytemuck::Pod`), moved as its own bytes with no conversion
//! copy. The typed collectives take slices of `T` and reduce with an [`Op`] on the integers and floats
//! ([`Reducible`]) or with a function of the user's, `|acc: &mut [T], next: &[T]|`, on any `T`.
//!
//! # The fixed order of reductions
//! Every reducing collective combines in one fixed order, whatever its algorithm and size: the ranks
//! grouped by node (nodes in the order of their lowest rank), each node's ranks combined first in
//! increasing rank order, `((x0 ⊕ x1) ⊕ x2) ...`, then the nodes' results in node order the same way.
//! On one node that is plain rank order. Whichever ranks fold an element (one rank that then copies the
//! result to the others, or, for small vectors, every rank itself), they fold the same values in that
//! order, so every rank holds the same bits, and a run with the same ranks and placement gives the same
//! bits again. (MPI promises neither: its algorithm, and so the order, changes with size and
//! placement.) This holds for a function of the user's that gives the same result for the same inputs
//! on every rank; it must be associative for the result to be the mathematical one across nodes, and
//! need not be commutative. A kernel that refuses a rank the single copy changes nothing: the rank asks
//! for the bytes and folds them in the same order.
//!
//! # Mismatched calls
//! Every message of a collective carries its sequence number and its sender's call: the operation, the
//! root, and for a typed collective its element type, count and reduction (the byte-level ones' sizes
//! need no check of their own: a broadcast's total travels with each piece and is
//! checked against the receive buffer; chunk counts are checked against the rank count before anything
//! is sent). A rank compares the call of every message of its current or a recent sequence number with
//! its own call before it uses any data (a broadcast's non-root takes its first piece from any rank, so
//! a rank that thinks it is the root is caught there too). On a difference it fails at once with
//! [`Error::CollectiveMismatch`](crate::Error::CollectiveMismatch), naming both calls, and tells every
//! rank; from then on every collective of every rank, on every mesh of the job, fails at once with
//! that error (the ranks are out of step; point to point still works). No rank returns success with data of another call.
//!
//! What is and is not caught:
//! - A message of another call that reaches a rank is caught, at once if the rank waits in that
//!   collective, else at its next collective (in either case every rank is told).
//! - A rank that only sends in a call (a broadcast or scatter root, a gather non-root) may return
//!   success before anyone finds the mismatch; its result is its own data, and its next collective
//!   fails.
//! - Two functions of the user's look alike to the check: a rank that reduces with another function
//!   than the others is not caught.
//! - A skipped collective is caught when the skipping rank's next call differs from the skipped one and
//!   their messages meet. It is not caught when the next call is alike (two broadcasts from one root:
//!   the skipping rank takes the first one's data, as in MPI, where calls match by their order), nor
//!   when no message of another call reaches any rank: then ranks wait, and the deadline below applies,
//!   naming the rank waited for as lost although it may be alive but out of step.
//!
//! # Deadline
//! Every wait of a collective, for a message to arrive or for room to queue one, ends at its deadline:
//! [`MeshConfig::timeout`](super::MeshConfig::timeout) after the rank's last progress in the collective
//! (its start, or the last message it received or queued in it). So a collective that keeps moving
//! never fails however long it runs, and one that stalls fails one deadline after it stalled. A send
//! that can be queued at once just is; one that cannot waits for room and looks meanwhile, without
//! waiting, for news that ends the collective, as a receive does: a mismatch, a lost rank, a rank's
//! failure notice. (It takes in the messages of later calls only while those it holds unread stay
//! under a bound, so that looking does not undo the queue limit that holds a fast sender back.) A rank
//! past the deadline tells every rank which rank it waits for, listens a fifth of the deadline (at most
//! 200 ms) for news of a loss, then takes the rank at the end of the chain of waits as lost
//! ([`Error::PeerLost`](crate::Error::PeerLost)) and tells every rank, whose collectives fail at once.
//! So every waiting rank, in a receive or in a send, fails within the deadline plus a grace of at most
//! 0.2 s + 0.25 s per other rank, and with the mismatch or the failure notice itself when one was sent,
//! even when the ranks that sent it exit at once.

#![forbid(unsafe_code)]

mod all_gather;
mod all_to_all;
mod broadcast;
mod bruck;
pub(crate) mod buffers;
mod by_node;
mod combine;
pub(crate) mod plan;
pub(crate) mod protocol;
mod read_in_place;
pub(crate) mod reduction;
mod scatter_gather;
mod shared_broadcast;
mod shares;
mod typed_calls;

pub use self::buffers::Buffer;
use self::buffers::{fill, refill, Landing};
pub use self::plan::BroadcastAlgorithm;
pub use self::reduction::{Op, Reducible, Reduction};
pub use super::config::{CHUNK_SIZE, PIPELINE_THRESHOLD};
use super::net::envelope::Operation;
use super::types::Rank;
use super::Mesh;
use crate::error::Result;
use crate::shm::SharedBytes;
#[doc(hidden)]
pub use protocol::decode_for_fuzzing;

impl Mesh {
    /// The algorithm a broadcast of `len` bytes from this rank takes.
    pub fn broadcast_algorithm(&self, len: usize) -> BroadcastAlgorithm {
        self.plan.broadcast(len)
    }

    /// Broadcasts the root's `buffer` to every rank; returns the number of bytes broadcast.
    ///
    /// On other ranks a `Vec<u8>` takes the root's length; a slice must hold it.
    pub fn broadcast_into<B: Buffer + ?Sized>(&self, root: Rank, buffer: &mut B) -> Result<usize> {
        self.broadcast_with_progress(root, buffer, |_, _| {})
    }

    /// As [`Mesh::broadcast_into`], calling `progress(bytes_done, total)` as pieces arrive (on the
    /// root: as they are sent).
    pub fn broadcast_with_progress<B: Buffer + ?Sized>(
        &self,
        root: Rank,
        buffer: &mut B,
        progress: impl FnMut(usize, usize),
    ) -> Result<usize> {
        let x = self.begin_collective("broadcast", Operation::Broadcast, Some(root))?;
        x.check_rank(root)?;
        match root == self.rank() {
            true => broadcast::from_root(&x, &self.plan, buffer.bytes(), progress),
            false => {
                let mut landing = Landing::new(buffer, progress);
                let total = broadcast::relay(&x, &self.plan, root, &mut landing)?;
                landing.fitted("broadcast", total)
            }
        }
    }

    /// The root's side of a scatter: rank r receives `chunks[r]` (sizes may differ); the root's own
    /// chunk lands in `buffer`. Returns the size of the root's chunk.
    pub fn scatter_into_root<B: Buffer + ?Sized>(&self, chunks: &[&[u8]], buffer: &mut B) -> Result<usize> {
        let x = self.begin_collective("scatter", Operation::Scatter, Some(self.rank()))?;
        scatter_gather::scatter_from_root(&x, &self.plan, chunks)?;
        fill("scatter", buffer, chunks[self.rank().0])
    }

    /// A non-root's side of a scatter: receives this rank's chunk from `root` into `buffer`; returns
    /// its size.
    pub fn scatter_into<B: Buffer + ?Sized>(&self, root: Rank, buffer: &mut B) -> Result<usize> {
        let x = self.begin_collective("scatter", Operation::Scatter, Some(root))?;
        self.check_not_root(root, "scatter_into", "scatter_into_root")?;
        scatter_gather::scatter_to(&x, &self.plan, root, buffer)
    }

    /// A non-root's side of a gather: sends `data` to `root`.
    pub fn gather_into(&self, root: Rank, data: &[u8]) -> Result<()> {
        let x = self.begin_collective("gather", Operation::Gather, Some(root))?;
        self.check_not_root(root, "gather_into", "gather_into_root")?;
        scatter_gather::gather_from(&x, &self.plan, root, data)
    }

    /// The root's side of a gather: `gathered[r]` becomes rank r's data (sizes may differ), the root's
    /// own from `data`. Returns the total bytes gathered.
    pub fn gather_into_root(&self, data: &[u8], gathered: &mut Vec<Vec<u8>>) -> Result<usize> {
        let x = self.begin_collective("gather", Operation::Gather, Some(self.rank()))?;
        gathered.resize_with(self.size(), Vec::new);
        refill(&mut gathered[self.rank().0], data);
        scatter_gather::gather_to_root(&x, &self.plan, gathered)?;
        Ok(gathered.iter().map(Vec::len).sum())
    }

    /// All-to-all: this rank sends `chunks[r]` to rank r and `received[r]` becomes what rank r sent it
    /// (sizes may differ: alltoallv). Returns the total bytes received.
    pub fn all_to_all_into(&self, chunks: &[&[u8]], received: &mut Vec<Vec<u8>>) -> Result<usize> {
        let x = self.begin_collective("all_to_all", Operation::AllToAll, None)?;
        all_to_all::exchange(&x, &self.plan, chunks, received)?;
        Ok(received.iter().map(Vec::len).sum())
    }

    /// The root's side of [`Mesh::broadcast_shared`]: every other rank gets a read-only view of `data`,
    /// one copy per node (on this node, `data` itself). Returns once the root's node's ranks opened it.
    pub fn broadcast_shared_root(&self, data: &SharedBytes) -> Result<()> {
        let operation = Operation::SharedBroadcast;
        let x = self.begin_collective("broadcast_shared", operation, Some(self.rank()))?;
        shared_broadcast::from_root(&x, &self.plan, data)
    }

    /// Receives the root's [`Mesh::broadcast_shared_root`]: a read-only view of one copy of the data
    /// per node, shared by every rank of the node (each holds a mapping, not a copy). The view stays
    /// valid and unchanged while it is held, also after the mesh is gone; the node's copy is freed
    /// when its last holder drops it or ends.
    ///
    /// Use it for data every rank reads and none changes (a lookup table, model weights, a mesh): the
    /// node holds it once instead of once per rank, and the ranks of a node other than its leader open
    /// it without a copy, whatever its size (reading each page the first time then costs a page-table
    /// fault). A rank that may not open another process's files, or whose mesh allows no single copies
    /// ([`MeshConfig::single_copy`](super::MeshConfig::single_copy)), gets the bytes sent and holds a
    /// copy of its own. Use [`Mesh::broadcast_into`] when each rank needs its own copy to change, or
    /// for small data, where the memory file costs more than the copy.
    pub fn broadcast_shared(&self, root: Rank) -> Result<SharedBytes> {
        let operation = Operation::SharedBroadcast;
        let x = self.begin_collective("broadcast_shared", operation, Some(root))?;
        self.check_not_root(root, "broadcast_shared", "broadcast_shared_root")?;
        shared_broadcast::to(&x, &self.plan, root)
    }
}
