//! The shares read in place on one node. In the first round every rank tells the others where its
//! vector is and folds its own share by copying that share straight from every rank's vector
//! (`process_vm_readv`), in rank order, all ranks at once: a reduce-scatter. In the second round (an
//! all-reduce's, a reduce's, an all-gather's only) every rank that needs the others' shares copies them
//! straight from their owners.
//!
//! Each round is offers, reads and answers as in [`read_in_place`](super::super::read_in_place): a
//! holder returns only once every reader answered, a copy stands only if the holder's offer stayed open
//! through it, and a rank the kernel refuses a copy asks for the bytes, from the first refused holder on
//! (its own turn included, so that it still folds in rank order), after it answered every holder (so
//! that no rank waits on another in a circle).

#![forbid(unsafe_code)]

use std::ops::Range;

use bytemuck::Pod;

use super::{bytes_of, every, places, share};
use crate::error::{Error, Result};
use crate::mesh::collectives::buffers::Land;
use crate::mesh::collectives::combine::combine;
use crate::mesh::collectives::plan::Plan;
use crate::mesh::collectives::protocol::{self, Answer, Descriptor, Header, Message};
use crate::mesh::collectives::read_in_place::{
    answers, copy_in_pieces, descriptor, receive_bytes_from, send_bytes_to,
};
use crate::mesh::collectives::reduction::Reduction;
use crate::mesh::net::exchange::Exchange;
use crate::mesh::types::{Rank, Source};

/// A fold copies a later rank's share in pieces of this many bytes, each combined while it is in the
/// cache: the share is read from memory once, not written to a scratch buffer and read back.
const FOLD_PIECE: usize = 64 << 10;

/// Copies `len` bytes at `offset` of a holder's piece into a room; false when the kernel refused.
pub(super) type Copy<'c> = dyn FnMut(usize, &mut [u8]) -> bool + 'c;

/// Where the bytes a reader copies land, holder by holder in rank order.
pub(super) trait Reader {
    /// Copies `holder`'s piece in with `copy` and lands it: `Ok(false)`, with nothing landed, when the
    /// kernel refused the first copy; an error when it refused one after the first.
    fn copy_in(&mut self, holder: Rank, copy: &mut Copy<'_>) -> Result<bool>;
    /// Room for the whole piece of `holder`, for the bytes it sends when the kernel refused the copy.
    fn room(&mut self, holder: Rank) -> &mut [u8];
    /// The piece of `holder` is in its room.
    fn landed(&mut self, holder: Rank);
    /// This rank's own turn in the order.
    fn own(&mut self);
}

/// A fold of one share: the first piece lands in the result itself, each later one is copied in
/// pieces into a scratch piece and combined into it.
pub(super) struct Fold<'a, T> {
    acc: &'a mut [T],
    /// One piece ([`FOLD_PIECE`]), or a whole share for bytes sent.
    scratch: Vec<T>,
    own: &'a [T],
    started: bool,
    reduction: &'a dyn Reduction<T>,
}

impl<T: Pod + Send + Sync> Reader for Fold<'_, T> {
    fn copy_in(&mut self, _holder: Rank, copy: &mut Copy<'_>) -> Result<bool> {
        if !self.started {
            self.started = copy(0, bytemuck::cast_slice_mut(self.acc));
            return Ok(self.started);
        }
        let piece = (FOLD_PIECE / std::mem::size_of::<T>().max(1)).max(1);
        self.scratch.resize(piece.min(self.acc.len()), T::zeroed());
        for (i, acc) in self.acc.chunks_mut(piece).enumerate() {
            let scratch = &mut self.scratch[..acc.len()];
            if !copy(i * piece * std::mem::size_of::<T>(), bytemuck::cast_slice_mut(scratch)) {
                return match i {
                    0 => Ok(false),
                    _ => Err(Error::Mesh("the kernel refused a copy part-way through a share".into())),
                };
            }
            combine(acc, scratch, self.reduction);
        }
        Ok(true)
    }

    fn room(&mut self, _holder: Rank) -> &mut [u8] {
        match self.started {
            false => bytemuck::cast_slice_mut(self.acc),
            true => {
                self.scratch.resize(self.acc.len(), T::zeroed());
                bytemuck::cast_slice_mut(&mut self.scratch)
            }
        }
    }

    fn landed(&mut self, _holder: Rank) {
        if std::mem::replace(&mut self.started, true) {
            combine(self.acc, &self.scratch[..self.acc.len()], self.reduction);
        }
    }

    fn own(&mut self) {
        match std::mem::replace(&mut self.started, true) {
            false => self.acc.copy_from_slice(self.own),
            true => combine(self.acc, self.own, self.reduction),
        }
    }
}

impl<'a, T: Pod + Send + Sync> Fold<'a, T> {
    pub(super) fn new(acc: &'a mut [T], own: &'a [T], reduction: &'a dyn Reduction<T>) -> Self {
        Self { acc, scratch: Vec::new(), own, started: false, reduction }
    }
}

/// Every other rank's share lands in its place of the result.
pub(super) struct Place<'a> {
    pub(super) places: Vec<&'a mut [u8]>,
}

impl Reader for Place<'_> {
    fn copy_in(&mut self, holder: Rank, copy: &mut Copy<'_>) -> Result<bool> {
        Ok(copy(0, &mut *self.places[holder.0]))
    }

    fn room(&mut self, holder: Rank) -> &mut [u8] {
        &mut *self.places[holder.0]
    }
    fn landed(&mut self, _holder: Rank) {}
    fn own(&mut self) {}
}

/// A room of a known size, for the bytes a holder sends when the kernel refused the copy.
struct Room<'a>(&'a mut [u8]);

impl Land for Room<'_> {
    fn room(&mut self, total: usize) -> Option<&mut [u8]> {
        (total == self.0.len()).then_some(&mut *self.0)
    }
    fn progressed(&mut self, _done: usize, _total: usize) {}
}

/// One round of reads: this rank offers `held` to `readers` (each reading its range of it), and reads
/// from every rank of `holders` (in rank order, this rank among them for its own turn) its range of
/// what that rank holds, into `reader`.
pub(super) fn round(
    x: &Exchange<'_>,
    plan: &Plan,
    (held, readers): (&[u8], &[(Rank, Range<usize>)]),
    holders: &[(Rank, Range<usize>)],
    reader: &mut dyn Reader,
) -> Result<()> {
    let open = if readers.is_empty() { None } else { Some(x.open_offer()?) };
    if let Some(open) = &open {
        let at = descriptor(held, open);
        for (to, _) in readers {
            x.send(*to, &[&Header::Offer { total: held.len() }.encode(), &at])?;
        }
    }
    // Each holder's offer, taken from it by name: its answer to this rank's offer may come first.
    let mut offers = Vec::new();
    for (holder, range) in holders.iter().filter(|(h, _)| *h != x.rank()) {
        let incoming = x.receive(Source::Rank(*holder), Some(*holder))?;
        let (total, at) = match protocol::read(&incoming)? {
            Message::Offer { total, descriptor } => (total, descriptor),
            _ => return Err(protocol::bad_message(&incoming, "not an offer")),
        };
        if x.process_here(*holder) != Some(at.pid) || range.end > total {
            return Err(protocol::bad_message(&incoming, "an offer of another process or size"));
        }
        offers.push((*holder, at));
    }
    let mut asked = Vec::new();
    let mut offers_left = offers.iter();
    for (holder, range) in holders {
        // From the first refused holder on, every turn (this rank's own too) waits for the bytes, so
        // that the fold keeps rank order.
        if *holder == x.rank() {
            match asked.is_empty() {
                true => reader.own(),
                false => asked.push((*holder, 0)),
            }
            continue;
        }
        let (_, at) = offers_left.next().expect("an offer per other holder");
        let mut copy = |offset: usize, room: &mut [u8]| {
            let address = at.address.wrapping_add((range.start + offset) as u64);
            plan.single_copy()
                && !refused_for_testing()
                && copy_in_pieces(&Descriptor { address, ..at.clone() }, room, plan.chunk_size())
        };
        if !(asked.is_empty() && reader.copy_in(*holder, &mut copy)?) {
            asked.push((*holder, range.len()));
        }
    }
    for (holder, at) in &offers {
        let copied = !asked.iter().any(|(h, _)| h == holder);
        if copied && !x.offer_still_open(*holder, &at.word, at.offer) {
            let reason = "it left the collective before this rank's copy of its data was done".into();
            return Err(x.news_or(Error::PeerFailed { rank: x.job_rank(*holder).0, op: x.op(), reason }));
        }
        let answer = if copied { Answer::Copied } else { Answer::SendBytes };
        x.send(*holder, &[&Header::Answer { total: 0, answer }.encode(), &[]])?;
    }
    let askers = answers(x, readers.iter().map(|(r, _)| *r))?;
    plan.note_refusals(&askers);
    for asker in askers {
        let range = readers.iter().find(|(r, _)| *r == asker).map(|(_, range)| range.clone());
        send_bytes_to(x, plan, asker, &held[range.expect("an asker is a reader")])?;
    }
    drop(open);
    for (holder, len) in asked {
        if holder == x.rank() {
            reader.own();
            continue;
        }
        receive_bytes_from(x, holder, len, &mut Room(reader.room(holder)), None)?;
        reader.landed(holder);
    }
    Ok(())
}

#[cfg(test)]
thread_local! {
    /// Set on a rank's thread by the tests: the kernel "refuses" that rank every copy.
    static REFUSE: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// True when a test made the kernel refuse this thread's copies.
fn refused_for_testing() -> bool {
    #[cfg(test)]
    return REFUSE.with(std::cell::Cell::get);
    #[cfg(not(test))]
    false
}

/// The first round: this rank's share `mine` of the result is folded from every rank's `send`, whose
/// share k is `shares(k)` (elements).
fn reduce_scatter_round<T: Pod + Send + Sync>(
    x: &Exchange<'_>,
    plan: &Plan,
    send: &[T],
    shares: impl Fn(usize) -> Range<usize>,
    mine: &mut [T],
    reduction: &dyn Reduction<T>,
) -> Result<()> {
    let me = x.rank().0;
    let readers: Vec<_> =
        every(x, |k| bytes_of::<T>(shares(k))).into_iter().filter(|(r, _)| r.0 != me).collect();
    let holders = every(x, |_| bytes_of::<T>(shares(me)));
    let own = &send[shares(me)];
    let mut fold = Fold::new(mine, own, reduction);
    round(x, plan, (bytemuck::cast_slice(send), &readers), &holders, &mut fold)
}

/// All-reduce by shares: a reduce-scatter round, then every rank copies every other share.
pub(in crate::mesh::collectives) fn all_reduce<T: Pod + Send + Sync>(
    x: &Exchange<'_>,
    plan: &Plan,
    send: &[T],
    recv: &mut [T],
    reduction: &dyn Reduction<T>,
) -> Result<()> {
    let (me, n, count) = (x.rank().0, x.size(), send.len());
    let shares = |k| share(count, n, k);
    let done = (|| {
        reduce_scatter_round(x, plan, send, shares, &mut recv[shares(me)], reduction)?;
        let mut places = places(recv, n, shares);
        let mine: &mut [u8] = std::mem::take(&mut places[me]);
        let mine: &[u8] = mine;
        let readers: Vec<_> = every(x, |_| 0..mine.len()).into_iter().filter(|(r, _)| r.0 != me).collect();
        let holders = every(x, |k| bytes_of::<T>(0..shares(k).len()));
        round(x, plan, (mine, &readers), &holders, &mut Place { places })
    })();
    x.or_report(x.others(), done)
}

/// Reduce by shares: a reduce-scatter round, then the root copies every other share.
pub(in crate::mesh::collectives) fn reduce<T: Pod + Send + Sync>(
    x: &Exchange<'_>,
    plan: &Plan,
    root: Rank,
    send: &[T],
    recv: Option<&mut [T]>,
    reduction: &dyn Reduction<T>,
) -> Result<()> {
    let (me, n, count) = (x.rank().0, x.size(), send.len());
    let shares = |k| share(count, n, k);
    let done = (|| match recv {
        Some(recv) => {
            reduce_scatter_round(x, plan, send, shares, &mut recv[shares(me)], reduction)?;
            let places = places(recv, n, shares);
            let holders = every(x, |k| bytes_of::<T>(0..shares(k).len()));
            round(x, plan, (&[], &[]), &holders, &mut Place { places })
        }
        None => {
            let mut mine = vec![T::zeroed(); shares(me).len()];
            reduce_scatter_round(x, plan, send, shares, &mut mine, reduction)?;
            let readers = [(root, 0..std::mem::size_of_val(&mine[..]))];
            let holders = [(x.rank(), 0..0)];
            round(
                x,
                plan,
                (bytemuck::cast_slice(&mine), &readers),
                &holders,
                &mut Place { places: Vec::new() },
            )
        }
    })();
    x.or_report(x.others(), done)
}

/// Reduce-scatter by shares: the shares are the blocks.
pub(in crate::mesh::collectives) fn reduce_scatter<T: Pod + Send + Sync>(
    x: &Exchange<'_>,
    plan: &Plan,
    send: &[T],
    recv: &mut [T],
    reduction: &dyn Reduction<T>,
) -> Result<()> {
    let block = recv.len();
    let done = reduce_scatter_round(x, plan, send, |k| k * block..(k + 1) * block, recv, reduction);
    x.or_report(x.others(), done)
}

/// All-gather by reads: every rank copies every other rank's `send` into its place of `recv`.
pub(in crate::mesh::collectives) fn all_gather<T: Pod + Send + Sync>(
    x: &Exchange<'_>,
    plan: &Plan,
    send: &[T],
    recv: &mut [T],
) -> Result<()> {
    let (me, n, block) = (x.rank().0, x.size(), send.len());
    let mut places = places(recv, n, |k| k * block..(k + 1) * block);
    places[me].copy_from_slice(bytemuck::cast_slice(send));
    let held: &[u8] = bytemuck::cast_slice(send);
    let readers: Vec<_> = every(x, |_| 0..held.len()).into_iter().filter(|(r, _)| r.0 != me).collect();
    let holders = every(x, |_| 0..held.len());
    let done = round(x, plan, (held, &readers), &holders, &mut Place { places });
    x.or_report(x.others(), done)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mesh::{InProcess, Mesh, MeshConfig, Op};

    /// "The first nonzero wins": associative, not commutative, so any other order shows.
    fn first_nonzero(acc: &mut [u64], next: &[u64]) {
        acc.iter_mut().zip(next).filter(|(a, _)| **a == 0).for_each(|(a, &b)| *a = b);
    }

    /// Rank r's vector: r + 1 at every element i with i % n >= r, 0 elsewhere.
    fn vector(rank: usize, n: usize, count: usize) -> Vec<u64> {
        (0..count).map(|i| if i % n >= rank { rank as u64 + 1 } else { 0 }).collect()
    }

    type Results = (Vec<u64>, Vec<u64>, Vec<u64>);

    /// A rank's all-reduce and reduce to rank 0 by the first nonzero, and all-reduce by sum, with the
    /// kernel refusing every copy to ranks 1 and up.
    fn refused_rank(boot: InProcess, config: MeshConfig, n: usize, count: usize) -> crate::Result<Results> {
        let mesh = Mesh::bootstrap_with(&boot, config)?;
        let me = mesh.rank().0;
        REFUSE.with(|refuse| refuse.set(me > 0));
        let mine = vector(me, n, count);
        let mut all = vec![0; count];
        mesh.all_reduce_into(&mine, &mut all, first_nonzero)?;
        let mut at_root = vec![0; count];
        match me {
            0 => mesh.reduce_into_root(&mine, &mut at_root, first_nonzero)?,
            _ => mesh.reduce_into(crate::mesh::Rank(0), &mine, first_nonzero)?,
        }
        let mut sum = vec![0; count];
        mesh.all_reduce_into(&mine, &mut sum, Op::Sum)?;
        Ok((all, at_root, sum))
    }

    #[test]
    fn a_refused_copy_asks_for_the_bytes_and_the_fold_keeps_rank_order() {
        let (n, count) = (3, 100_003); // 800 KB a rank: shares read in place
        let config = MeshConfig::default().with_host("127.0.0.1").with_abort_on_panic(false);
        let results: Vec<_> = std::thread::scope(|scope| {
            let ranks = InProcess::ranks(n).into_iter().map(|boot| {
                let config = config.clone();
                scope.spawn(move || refused_rank(boot, config, n, count))
            });
            ranks.collect::<Vec<_>>().into_iter().map(|rank| rank.join().unwrap()).collect()
        });
        // In rank order the first nonzero is rank 0's, everywhere.
        let first = vector(0, n, count);
        let sum: Vec<u64> =
            (0..count).map(|i| (0..n).filter(|&r| i % n >= r).map(|r| r as u64 + 1).sum()).collect();
        for (rank, result) in results.into_iter().enumerate() {
            let (all, at_root, total) = result.unwrap_or_else(|e| panic!("rank {rank}: {e}"));
            assert!(all == first, "rank {rank}: the fold left rank order");
            assert!(rank != 0 || at_root == first, "the root's reduce left rank order");
            assert!(total == sum, "rank {rank}: the sum");
        }
    }
}
