//! The broadcast: the root sends its buffer down a binomial tree, along a pipelined chain, or to every
//! rank itself, or every rank reads it from the root (see [`read_in_place`](super::read_in_place)).
//!
//! Tree and chain run along the ranks grouped by node (the root, the rest of its node, then each other
//! node's ranks). Across nodes the chain has two levels: the nodes' leaders (the root, then each node's
//! lowest rank), each also starting a chain through its own node, so the data crosses the network once
//! per node. A rank forwards the frame it received without copying it into a new buffer.

#![forbid(unsafe_code)]

use super::buffers::{pieces, Land};
use super::plan::BroadcastAlgorithm;
use super::plan::Plan;
use super::protocol::{self, Header, Message, Path};
use super::read_in_place;
use crate::error::Result;
use crate::mesh::net::exchange::Exchange;
use crate::mesh::net::matching::Incoming;
use crate::mesh::types::{Rank, Source};

/// The ranks, relative to the root, that relative rank `relative` sends to in a binomial tree of `n`.
fn tree_children(relative: usize, n: usize) -> impl Iterator<Item = usize> {
    let limit = if relative == 0 { n.next_power_of_two() } else { relative & relative.wrapping_neg() };
    std::iter::successors(Some(limit >> 1), |m| Some(m >> 1))
        .take_while(|&m| m > 0)
        .map(move |m| relative + m)
        .filter(move |&child| child < n)
}

/// The root's side: sends `data` as the plan says; returns its length.
pub(super) fn from_root(
    x: &Exchange<'_>,
    plan: &Plan,
    data: &[u8],
    mut progress: impl FnMut(usize, usize),
) -> Result<usize> {
    let (total, root) = (data.len(), x.rank());
    let order = x.topology().order_from(root);
    let piece = |path, offset| Header::Piece { path, total, offset }.encode();
    match plan.broadcast(total) {
        BroadcastAlgorithm::BinomialTree => {
            for child in tree_children(0, x.size()) {
                x.send(order[child], &[&piece(Path::Tree, 0), data])?;
            }
            progress(total, total);
        }
        BroadcastAlgorithm::FanOut => {
            let sent = order[1..].iter().try_for_each(|&to| x.send(to, &[&piece(Path::FanOut, 0), data]));
            x.or_report(order[1..].iter().copied(), sent)?;
            progress(total, total);
        }
        BroadcastAlgorithm::PipelinedChain => {
            let (_, next) = x.topology().chain_from(root, root);
            for (offset, bytes) in pieces(data, plan.chunk_size()) {
                for &to in &next {
                    x.send(to, &[&piece(Path::Chain, offset), bytes])?;
                }
                progress(offset + bytes.len(), total);
            }
        }
        BroadcastAlgorithm::ReadFromRoot => {
            let offered = read_in_place::offer_to_readers(x, plan, &order[1..], data);
            x.or_report(order[1..].iter().copied(), offered)?;
            progress(total, total);
        }
    }
    Ok(total)
}

/// A non-root's side: receives every piece, lands it and passes it on to the ranks below this one (or,
/// when every rank reads from the root, copies from there). Returns the message's total size. A
/// failure is reported to the ranks below.
pub(super) fn relay(x: &Exchange<'_>, plan: &Plan, root: Rank, land: &mut dyn Land) -> Result<usize> {
    let n = x.size();
    // Positions along the node-grouped order from the root: the tree's and the chain's.
    let order = x.topology().order_from(root);
    let relative = order.iter().position(|&r| r == x.rank()).expect("every rank is in the order");
    let absolute = |r: usize| order[r];
    let (previous, next) = x.topology().chain_from(root, x.rank());
    let previous = previous.expect("a rank other than the root takes its pieces from another");
    // The first piece comes from the tree parent, the chain predecessor or, in a fan-out, the root:
    // often one rank, which is then the one to suspect when nothing comes.
    let mut senders = vec![absolute(relative - (relative & relative.wrapping_neg()))];
    senders.extend([Some(previous), plan.fans_out().then_some(root)].into_iter().flatten());
    senders.sort_unstable();
    senders.dedup();
    let first = x.receive_from_one_of(&senders).and_then(|incoming| {
        // A piece names the path the others take; an offer, where to read the root's buffer.
        let how = match protocol::read(&incoming)? {
            Message::Piece { path, total, .. } => Ok((total, Ok(path))),
            Message::Offer { total, descriptor } => Ok((total, Err(descriptor))),
            _ => Err(protocol::bad_message(&incoming, "neither a piece nor an offer")),
        }?;
        Ok((incoming, how))
    });
    let (incoming, (total, path)) = match first {
        Ok(first) => first,
        // The path is unknown before the first piece: warn the ranks below in either.
        Err(e) => return x.or_report(tree_children(relative, n).map(absolute).chain(next), Err(e)),
    };
    let path = match path {
        Ok(path) => path,
        // Only the root waits on this rank: it is told of a failure at once.
        Err(descriptor) => {
            let read = read_in_place::read_from_root(x, plan, root, &incoming, (total, &descriptor), land);
            return x.or_report([root], read);
        }
    };
    let below: Vec<Rank> = match path {
        Path::Tree => tree_children(relative, n).map(absolute).collect(),
        Path::Chain => next,
        Path::FanOut => Vec::new(),
    };
    let relayed = pass_on(x, (path, total), incoming, previous, &below, land);
    x.or_report(below, relayed)
}

/// Lands every piece of a broadcast of `total` bytes on `path`, starting with `first`, and sends each
/// to the ranks `below`: each but the last gets a copy (a chain's leader: the next node's leader
/// first), the last the received frame itself.
fn pass_on(
    x: &Exchange<'_>,
    (path, total): (Path, usize),
    first: Incoming,
    previous: Rank,
    below: &[Rank],
    land: &mut dyn Land,
) -> Result<usize> {
    let (mut incoming, mut received) = (first, 0);
    loop {
        let piece = match protocol::read(&incoming)? {
            Message::Piece { path: p, total: t, offset, data }
                if p == path && t == total && offset == received =>
            {
                data
            }
            _ => return Err(protocol::bad_message(&incoming, "a piece out of order")),
        };
        land.put(total, received, piece);
        received += piece.len();
        if let Some((&last, others)) = below.split_last() {
            for &to in others {
                x.send(to, &[&incoming.payloads[0], &incoming.payloads[1]])?;
            }
            x.forward(last, incoming.payloads)?;
        }
        if received >= total {
            return Ok(total);
        }
        incoming = x.receive(Source::Rank(previous), Some(previous))?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binomial_tree_reaches_every_rank_once() {
        for n in 1..=33 {
            let mut reached = vec![0; n];
            reached[0] = 1;
            let mut frontier = vec![0];
            while let Some(r) = frontier.pop() {
                for child in tree_children(r, n) {
                    reached[child] += 1;
                    frontier.push(child);
                }
            }
            assert!(reached.iter().all(|&c| c == 1), "n = {n}: {reached:?}");
        }
        assert_eq!(tree_children(0, 5).collect::<Vec<_>>(), [4, 2, 1]);
        assert_eq!(tree_children(2, 5).collect::<Vec<_>>(), [3]);
    }
}
