//! The typed collectives: barrier, all-reduce, reduce, reduce-scatter and all-gather, on slices of any
//! plain-data element type. Each call names its element type, its count and its reduction in every
//! message, so ranks that call differently fail with [`Error::CollectiveMismatch`] naming both calls;
//! each folds in the fixed order of [`reduction`](super::reduction).

#![forbid(unsafe_code)]

use bytemuck::Pod;

use super::plan::Reach;
use super::reduction::Reduction;
use super::{all_gather, bruck, combine, scatter_gather, shares};
use crate::error::{Error, Result};
use crate::mesh::net::envelope::{Data, Operation};
use crate::mesh::net::exchange::Exchange;
use crate::mesh::net::matching::Incoming;
use crate::mesh::typed::Datatype;
use crate::mesh::types::Rank;
use crate::mesh::Mesh;

/// The rank the reducing collectives without a root of their own fold at.
const FOLDING_RANK: Rank = Rank(0);

/// What a call of `count` elements of `T` (`None`: counts may differ) reducing with `code` says of its
/// data.
fn data<T>(count: Option<usize>, code: u8) -> Option<Data> {
    Some(Data { element: Datatype::of::<T>(), count: count.map(|c| c as u64), reduction: code })
}

/// Fails unless `found` elements are the `expected` the call needs in `what`.
fn check_len(op: &'static str, what: &'static str, expected: usize, found: usize) -> Result<()> {
    match expected == found {
        true => Ok(()),
        false => Err(Error::LengthMismatch { op, what, expected, found }),
    }
}

impl Mesh {
    /// Begins a typed collective whose own arguments were `checked`: when they are wrong, that error is
    /// this rank's (whatever news came already) and the other ranks are told it.
    fn begin_checked(
        &self,
        op: &'static str,
        operation: Operation,
        root: Option<Rank>,
        data: Option<Data>,
        checked: Result<()>,
    ) -> Result<Exchange<'_>> {
        let begun = self.begin_call(op, operation, root, data);
        match (checked, begun) {
            (Ok(()), begun) => begun,
            (Err(error), Ok(x)) => x.or_report(x.others(), Err(error)),
            (Err(error), Err(_)) => Err(error),
        }
    }

    /// Fails when `root` is not a rank of the mesh or is this rank (which must call `root_call`).
    pub(super) fn check_not_root(&self, root: Rank, call: &str, root_call: &str) -> Result<()> {
        self.check_rank(root)?;
        match root == self.rank() {
            true => {
                Err(Error::InvalidArgument(format!("{call} on the root itself: the root calls {root_call}")))
            }
            false => Ok(()),
        }
    }

    /// Returns once every rank has called `barrier`.
    pub fn barrier(&self) -> Result<()> {
        let x = self.begin_call("barrier", Operation::Barrier, None, None)?;
        bruck::all_gather(&x, &[], Some(0)).map(drop)
    }

    /// All-reduce: `recv` becomes every rank's `send` combined with `op` (an [`Op`](super::Op) such as
    /// `Op::Sum`, or a function `|acc: &mut [T], next: &[T]|`), the same bits on every rank. `send` and
    /// `recv` hold the same number of elements, alike on every rank.
    pub fn all_reduce_into<T: Pod + Send + Sync>(
        &self,
        send: &[T],
        recv: &mut [T],
        op: impl Reduction<T>,
    ) -> Result<()> {
        let op_name = "all_reduce";
        let checked = check_len(op_name, "the receive buffer", send.len(), recv.len()).and(op.check(op_name));
        let call = data::<T>(Some(send.len()), op.code());
        let x = self.begin_checked(op_name, Operation::AllReduce, None, call, checked)?;
        match self.plan.reduce(std::mem::size_of_val(send)) {
            Reach::Rounds => combine::gather_and_fold(&x, send, Some(recv), &op),
            Reach::Shares => shares::all_reduce(&x, &self.plan, send, recv, &op),
            Reach::SentShares => shares::all_reduce_sent(&x, send, recv, &op),
            Reach::NodeShares => shares::all_reduce_by_nodes(&x, &self.plan, send, recv, &op),
            Reach::Queues => {
                let at_root = (self.rank() == FOLDING_RANK).then_some(&mut *recv);
                combine::to_root(&x, FOLDING_RANK, send, at_root, &op)?;
                combine::spread(&x, &self.plan, FOLDING_RANK, recv)
            }
        }
    }

    /// As [`Mesh::all_reduce_into`], with `data` both sent and replaced by the result (it is copied
    /// once first: other ranks may read it while this rank writes the result).
    pub fn all_reduce_in_place<T: Pod + Send + Sync>(
        &self,
        data: &mut [T],
        op: impl Reduction<T>,
    ) -> Result<()> {
        let send = data.to_vec();
        self.all_reduce_into(&send, data, op)
    }

    /// The root's side of a reduce: `recv` becomes every rank's `send` combined with `op` (see
    /// [`Mesh::all_reduce_into`]).
    pub fn reduce_into_root<T: Pod + Send + Sync>(
        &self,
        send: &[T],
        recv: &mut [T],
        op: impl Reduction<T>,
    ) -> Result<()> {
        let root = self.rank();
        let checked =
            check_len("reduce", "the receive buffer", send.len(), recv.len()).and(op.check("reduce"));
        let call = data::<T>(Some(send.len()), op.code());
        let x = self.begin_checked("reduce", Operation::Reduce, Some(root), call, checked)?;
        match self.plan.reduce(std::mem::size_of_val(send)) {
            Reach::Rounds => combine::gather_and_fold(&x, send, Some(recv), &op),
            Reach::Shares => shares::reduce(&x, &self.plan, root, send, Some(recv), &op),
            Reach::SentShares => shares::reduce_sent(&x, root, send, Some(recv), &op),
            Reach::Queues | Reach::NodeShares => combine::to_root(&x, root, send, Some(recv), &op),
        }
    }

    /// A non-root's side of a reduce: `send` joins the result at `root`.
    pub fn reduce_into<T: Pod + Send + Sync>(
        &self,
        root: Rank,
        send: &[T],
        op: impl Reduction<T>,
    ) -> Result<()> {
        let checked = self.check_not_root(root, "reduce_into", "reduce_into_root").and(op.check("reduce"));
        let call = data::<T>(Some(send.len()), op.code());
        let x = self.begin_checked("reduce", Operation::Reduce, Some(root), call, checked)?;
        match self.plan.reduce(std::mem::size_of_val(send)) {
            Reach::Rounds => combine::gather_and_fold(&x, send, None, &op),
            Reach::Shares => shares::reduce(&x, &self.plan, root, send, None, &op),
            Reach::SentShares => shares::reduce_sent(&x, root, send, None, &op),
            Reach::Queues | Reach::NodeShares => combine::to_root(&x, root, send, None, &op),
        }
    }

    /// Reduce-scatter: every rank's `send` (one block of `recv.len()` elements per rank, in rank order)
    /// is combined with `op`, and this rank's `recv` becomes its own block of the result.
    pub fn reduce_scatter_into<T: Pod + Send + Sync>(
        &self,
        send: &[T],
        recv: &mut [T],
        op: impl Reduction<T>,
    ) -> Result<()> {
        let (op_name, n) = ("reduce_scatter", self.size());
        let checked =
            check_len(op_name, "the send buffer", n * recv.len(), send.len()).and(op.check(op_name));
        let call = data::<T>(Some(send.len()), op.code());
        let x = self.begin_checked(op_name, Operation::ReduceScatter, None, call, checked)?;
        match self.plan.reduce(std::mem::size_of_val(send)) {
            Reach::Rounds => {
                let mut whole = send.to_vec();
                combine::gather_and_fold(&x, send, Some(&mut whole), &op)?;
                recv.copy_from_slice(&whole[self.rank().0 * recv.len()..][..recv.len()]);
                Ok(())
            }
            Reach::Shares => shares::reduce_scatter(&x, &self.plan, send, recv, &op),
            Reach::SentShares => shares::reduce_scatter_sent(&x, send, recv, &op),
            Reach::Queues | Reach::NodeShares => {
                let block = recv.len();
                if self.rank() != FOLDING_RANK {
                    combine::to_root(&x, FOLDING_RANK, send, None, &op)?;
                    let bytes = scatter_gather::scatter_to(&x, &self.plan, FOLDING_RANK, recv)?;
                    return check_len(
                        x.op(),
                        "the block received",
                        block,
                        bytes / std::mem::size_of::<T>().max(1),
                    );
                }
                let mut whole = send.to_vec();
                combine::to_root(&x, FOLDING_RANK, send, Some(&mut whole), &op)?;
                let blocks: Vec<&[u8]> = whole.chunks(block.max(1)).map(bytemuck::cast_slice).collect();
                let blocks = if block == 0 { vec![&[][..]; n] } else { blocks };
                scatter_gather::scatter_from_root(&x, &self.plan, &blocks)?;
                recv.copy_from_slice(&whole[self.rank().0 * block..][..block]);
                Ok(())
            }
        }
    }

    /// All-gather: `recv` becomes every rank's `send` in rank order, one block of `send.len()`
    /// elements per rank (alike on every rank).
    pub fn all_gather_into<T: Pod + Send + Sync>(&self, send: &[T], recv: &mut [T]) -> Result<()> {
        let block = send.len();
        let checked = check_len("all_gather", "the receive buffer", self.size() * block, recv.len());
        let call = data::<T>(Some(block), 0);
        let x = self.begin_checked("all_gather", Operation::AllGather, None, call, checked)?;
        match self.plan.all_gather(std::mem::size_of_val(send)) {
            Reach::Rounds => {
                let blocks =
                    bruck::all_gather(&x, bytemuck::cast_slice(send), Some(std::mem::size_of_val(send)))?;
                let places = recv.chunks_mut(block.max(1));
                for (slot, block) in places.zip(&blocks) {
                    bytemuck::cast_slice_mut::<T, u8>(slot).copy_from_slice(block);
                }
                Ok(())
            }
            Reach::Shares => shares::all_gather(&x, &self.plan, send, recv),
            Reach::Queues | Reach::SentShares | Reach::NodeShares => {
                let arrived = all_gather::direct(&x, bytemuck::cast_slice(send))?;
                let blocks = recv.chunks_mut(block.max(1));
                for (rank, (incoming, slot)) in arrived.iter().zip(blocks).enumerate() {
                    match incoming {
                        None => slot.copy_from_slice(send),
                        Some(incoming) => {
                            slot.copy_from_slice(&combine::vector_of::<T>(&x, incoming, block)?)
                        }
                    }
                    debug_assert!(incoming.is_some() || rank == self.rank().0);
                }
                Ok(())
            }
        }
    }

    /// All-gather of blocks whose sizes may differ: `recv` becomes every rank's `send` one after
    /// another in rank order, and `counts[r]` the number of elements rank r sent. Returns the total.
    pub fn all_gather_varcount_into<T: Pod + Send + Sync>(
        &self,
        send: &[T],
        recv: &mut Vec<T>,
        counts: &mut Vec<usize>,
    ) -> Result<usize> {
        let x = self.begin_call("all_gather", Operation::AllGather, None, data::<T>(None, 0))?;
        let arrived = all_gather::direct(&x, bytemuck::cast_slice(send))?;
        let element = std::mem::size_of::<T>().max(1);
        let len = |incoming: &Option<Incoming>| match incoming {
            None => send.len(),
            Some(incoming) => incoming.payloads.iter().map(|p| p.len()).sum::<usize>() / element,
        };
        counts.clear();
        counts.extend(arrived.iter().map(len));
        recv.clear();
        for (incoming, &count) in arrived.iter().zip(counts.iter()) {
            match incoming {
                None => recv.extend_from_slice(send),
                Some(incoming) => recv.extend_from_slice(&combine::vector_of::<T>(&x, incoming, count)?),
            }
        }
        Ok(recv.len())
    }
}
