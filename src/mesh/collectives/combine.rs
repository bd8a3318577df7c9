//! The reducing collectives through the queues: every rank's vector goes to its node's leader, which
//! folds its node's vectors in rank order; each other node's leader sends its node's result to the
//! root, which folds the nodes' results in node order (the fixed order of
//! [`reduction`](super::reduction)). An all-reduce then broadcasts the result from the root, a
//! reduce-scatter scatters its blocks. Also the fold itself, and the rounds' fold on every rank.
//!
//! Each vector is one message, and the root and each leader take the messages in as they come. Small
//! vectors take the rounds instead (`bruck.rs`), large ones the shares (`shares.rs`).

#![forbid(unsafe_code)]

use std::borrow::Cow;

use bytemuck::Pod;
use rayon::prelude::*;

use super::buffers::Landing;
use super::plan::Plan;
use super::reduction::Reduction;
use super::{broadcast, bruck};
use crate::error::{Error, Result};
use crate::mesh::net::exchange::Exchange;
use crate::mesh::net::matching::Incoming;
use crate::mesh::topology::{Node, Topology};
use crate::mesh::typed::elements;
use crate::mesh::types::{Rank, Source};
use crate::transport::same_node::spare_cores;

/// A fold combines pieces of this many bytes on several threads at once, from twice as many on, when
/// the node has cores to spare: below it waking the threads costs more than the combine, and on a node
/// with a rank on every core the threads only take turns with the ranks.
const PARALLEL_COMBINE_PIECE: usize = 128 << 10;

/// `acc = acc ⊕ next`, on several threads for large vectors on a node with cores to spare (each
/// element's result is the same).
pub(super) fn combine<T: Pod + Send + Sync>(acc: &mut [T], next: &[T], reduction: &dyn Reduction<T>) {
    let piece = (PARALLEL_COMBINE_PIECE / std::mem::size_of::<T>().max(1)).max(1);
    match acc.len() >= 2 * piece && spare_cores() {
        true => {
            acc.par_chunks_mut(piece).zip(next.par_chunks(piece)).for_each(|(a, b)| reduction.combine(a, b))
        }
        false => reduction.combine(acc, next),
    }
}

/// Folds `parts` into `acc` in their order: `acc = p0`, then `acc = acc ⊕ p` for each next `p`.
pub(super) fn fold<T: Pod + Send + Sync, P: AsRef<[T]>>(
    acc: &mut [T],
    parts: impl IntoIterator<Item = P>,
    reduction: &dyn Reduction<T>,
) {
    let mut parts = parts.into_iter();
    if let Some(first) = parts.next() {
        acc.copy_from_slice(first.as_ref());
    }
    for part in parts {
        combine(acc, part.as_ref(), reduction);
    }
}

/// Every rank's `send` gathered to every rank in log2 n rounds and folded in the fixed order into
/// `result`, where one is given (every rank folds alike, so all hold the same bits).
pub(super) fn gather_and_fold<T: Pod + Send + Sync>(
    x: &Exchange<'_>,
    send: &[T],
    result: Option<&mut [T]>,
    reduction: &dyn Reduction<T>,
) -> Result<()> {
    let bytes: &[u8] = bytemuck::cast_slice(send);
    let blocks = bruck::all_gather(x, bytes, Some(bytes.len()))?;
    let Some(result) = result else { return Ok(()) };
    let vectors = blocks.iter().map(|block| elements::<T>(x.op(), block)).collect::<Result<Vec<_>>>()?;
    fold_in_fixed_order(x.topology(), &vectors, result, reduction);
    Ok(())
}

/// Every rank's vector (`vectors`, by rank) folded into `result` in the fixed order: each node's ranks,
/// then the nodes' results.
pub(super) fn fold_in_fixed_order<T: Pod + Send + Sync, V: AsRef<[T]>>(
    topology: &Topology,
    vectors: &[V],
    result: &mut [T],
    reduction: &dyn Reduction<T>,
) {
    let node_ranks = (0..topology.node_count()).map(|node| topology.ranks_on(Node(node)).expect("a node"));
    if topology.node_count() == 1 {
        return fold(result, vectors.iter().map(AsRef::as_ref), reduction);
    }
    let node_results: Vec<Vec<T>> = node_ranks
        .map(|ranks| {
            let mut acc = vectors[ranks[0].0].as_ref().to_vec();
            fold(&mut acc, ranks.iter().map(|rank| vectors[rank.0].as_ref()), reduction);
            acc
        })
        .collect();
    fold(result, node_results, reduction);
}

/// Every rank's `send` folded in the fixed order into `result` at `root` (which alone passes a
/// result). A failure is told to every other rank.
pub(super) fn to_root<T: Pod + Send + Sync>(
    x: &Exchange<'_>,
    root: Rank,
    send: &[T],
    result: Option<&mut [T]>,
    reduction: &dyn Reduction<T>,
) -> Result<()> {
    let topology = x.topology();
    let here = topology.node_of(x.rank()).expect("every rank has a node");
    let leader = topology.leader_from(root, here).expect("every node has a leader");
    let folded = match leader == x.rank() {
        true => lead(x, root, here, send, result, reduction),
        false => x.send(leader, &[bytemuck::cast_slice(send)]),
    };
    x.or_report(x.others(), folded)
}

/// A leader's part: takes its node's vectors (and, at the root, the other nodes' results), folds them,
/// and sends its node's result to the root or, at the root, folds the nodes' results into `result`.
fn lead<T: Pod + Send + Sync>(
    x: &Exchange<'_>,
    root: Rank,
    here: Node,
    send: &[T],
    result: Option<&mut [T]>,
    reduction: &dyn Reduction<T>,
) -> Result<()> {
    let topology = x.topology();
    let mates = topology.ranks_on(here).expect("a node of the mesh");
    let leaders = match x.rank() == root {
        true => topology.leaders_from(root),
        false => Vec::new(),
    };
    let expected: Vec<Rank> =
        mates.iter().chain(leaders.iter().skip(1)).copied().filter(|&r| r != x.rank()).collect();
    let arrived = take_from_each(x, &expected)?;
    let contribution = |rank: Rank| -> Result<Cow<'_, [T]>> {
        match expected.iter().position(|&r| r == rank) {
            None => Ok(Cow::Borrowed(send)),
            Some(at) => vector_of(x, &arrived[at], send.len()),
        }
    };
    let node_parts = mates.iter().map(|&rank| contribution(rank)).collect::<Result<Vec<_>>>()?;
    let Some(result) = result else {
        let mut node_result = send.to_vec();
        fold(&mut node_result, node_parts, reduction);
        return x.send(root, &[bytemuck::cast_slice(&node_result)]);
    };
    if topology.node_count() == 1 {
        fold(result, node_parts, reduction);
        return Ok(());
    }
    let mut own = send.to_vec();
    fold(&mut own, node_parts, reduction);
    let partials = (0..topology.node_count()).map(|node| match Node(node) == here {
        true => Ok(Cow::Borrowed(&own[..])),
        false => contribution(topology.leader(Node(node)).expect("a node of the mesh")),
    });
    let partials = partials.collect::<Result<Vec<_>>>()?;
    fold(result, partials, reduction);
    Ok(())
}

/// One message of the call from each of `expected`, in the order of `expected`, taken as they come.
pub(super) fn take_from_each(x: &Exchange<'_>, expected: &[Rank]) -> Result<Vec<Incoming>> {
    let mut arrived: Vec<Option<Incoming>> = expected.iter().map(|_| None).collect();
    for _ in 0..expected.len() {
        // Past the deadline, the first rank still missing is the one to suspect.
        let missing = expected.iter().zip(&arrived).find(|(_, a)| a.is_none()).map(|(&r, _)| r);
        let incoming = x.receive(Source::Any, missing)?;
        let source = incoming.source;
        let Some(at) = expected.iter().position(|&r| r == source) else {
            return Err(unexpected(x, source, "a message from a rank that sends none here"));
        };
        if arrived[at].replace(incoming).is_some() {
            return Err(unexpected(x, source, "a second contribution"));
        }
    }
    Ok(arrived.into_iter().flatten().collect())
}

/// The vector of `count` elements a chunk message carries (in place when aligned), or the error
/// naming its sender.
pub(super) fn vector_of<'i, T: Pod>(
    x: &Exchange<'_>,
    incoming: &'i Incoming,
    count: usize,
) -> Result<Cow<'i, [T]>> {
    let bytes = match &incoming.payloads[..] {
        [] => &[][..],
        [only] => &only[..],
        _ => return Err(unexpected(x, incoming.source, "a vector in several parts")),
    };
    let vector = elements::<T>(x.op(), bytes).map_err(|e| unexpected(x, incoming.source, &e.to_string()))?;
    match vector.len() == count {
        true => Ok(vector),
        false => Err(unexpected(x, incoming.source, &format!("{} elements for {count}", vector.len()))),
    }
}

/// The root's `result` broadcast to every rank's `result`. A failure is told to the ranks below.
pub(super) fn spread<T: Pod>(x: &Exchange<'_>, plan: &Plan, root: Rank, result: &mut [T]) -> Result<()> {
    if x.rank() == root {
        return broadcast::from_root(x, plan, bytemuck::cast_slice(result), |_, _| {}).map(drop);
    }
    let expected = std::mem::size_of_val(result);
    let mut landing = Landing::new(result, |_, _| {});
    let total = broadcast::relay(x, plan, root, &mut landing)?;
    match landing.fitted(x.op(), total)? == expected {
        true => Ok(()),
        false => Err(unexpected(x, root, &format!("a result of {total} bytes for {expected}"))),
    }
}

fn unexpected(x: &Exchange<'_>, rank: Rank, reason: &str) -> Error {
    x.peer_error(rank, reason)
}
