//! Scatter and gather by node, when the ranks span several nodes and some node holds several: one
//! message per node crosses the network instead of one per rank.
//!
//! Each node but the root's has a leader, its lowest rank (every rank knows the topology, so every rank
//! names the same leader). A scatter's root sends each rank of its own node its chunk directly, and each
//! other node's leader one *bundle*: the chunks of that node's ranks, each its own part of the message
//! (no concatenation). The leader keeps its own chunk and passes each other one on to its rank over the
//! same-node path, moving the received frame without copying it into a new buffer. A gather is the
//! reverse: a node's ranks send to their leader, which sends the root one bundle of their chunks (the
//! buffers the same-node transport received them into move into the message), and the root lands each
//! chunk in its rank's place.
//!
//! A bundle is the [`protocol`]'s: a header of the chunks' lengths (in the order of the node's ranks)
//! followed by one part per chunk. Its receiver knows from the topology how many chunks it must hold,
//! and the protocol checks the header, the count of parts and every length before any byte is used.
//!
//! Failures: a leader that fails tells the ranks waiting on it (in a scatter its node's ranks, in a
//! gather the root, and its node's ranks, which may be waiting for it to take their chunks in); a rank
//! waiting past its deadline names the rank it waits for (its leader, or the root), and the chain of
//! waits leads past a leader that is itself waiting to the rank that stalled.

#![forbid(unsafe_code)]

use rayon::prelude::*;

use super::buffers::{land_payload, largest};
use super::plan::Plan;
use super::protocol::{self, Message};
use crate::error::{Error, Result};
use crate::mesh::net::exchange::Exchange;
use crate::mesh::net::matching::Incoming;
use crate::mesh::topology::{Node, Topology};
use crate::mesh::types::{Rank, Source};
use crate::transport::Payload;

/// A peer a scatter's root sends to (or a gather's root receives from), and the ranks whose chunks that
/// message carries: a rank of the root's node alone with its own chunk (`bundled` false), or the leader
/// of another node with the chunks of every rank there (a bundle).
#[derive(Debug, Clone, Copy)]
struct Hop<'t> {
    peer: Rank,
    ranks: &'t [Rank],
    bundled: bool,
}

/// The chunks of a bundle that must hold `count`, in order, once the protocol checked it.
fn unbundle(incoming: Incoming, count: usize, op: &'static str) -> Result<Vec<Payload>> {
    match protocol::read(&incoming)? {
        Message::Bundle { count: held } if held == count => {}
        Message::Bundle { count: held } => {
            let reason = format!("a bundle of {held} chunks for the {count} ranks of the node");
            return Err(Error::BadPeerMessage { rank: incoming.job_source.0, op, reason });
        }
        _ => return Err(protocol::bad_message(&incoming, "not a bundle")),
    }
    Ok(incoming.payloads.into_iter().skip(1).collect())
}

/// The one payload of a chunk's message (none when it carries 0 bytes as no part).
fn only_part(incoming: Incoming) -> Option<Payload> {
    incoming.payloads.into_iter().next()
}

/// The node of `rank`.
fn node(topology: &Topology, rank: Rank) -> Node {
    topology.node_of(rank).expect("a rank of the mesh")
}

/// The ranks of `node`.
fn ranks_of(topology: &Topology, node: Node) -> &[Rank] {
    topology.ranks_on(node).expect("a node of the mesh")
}

/// The leader of `node` in collectives by node: its lowest rank.
fn leader(topology: &Topology, node: Node) -> Rank {
    topology.leader(node).expect("a node of the mesh")
}

/// The peers the root `root` exchanges a message with in a scatter or gather by node: each other node's
/// leader with that node's ranks (first, so that the other nodes start passing chunks on early), then
/// the other ranks of its own node, each alone.
fn hops(topology: &Topology, root: Rank) -> Vec<Hop<'_>> {
    let home = node(topology, root);
    let nodes = (0..topology.node_count()).map(Node).filter(|&node| node != home);
    let bundles = nodes.map(|node| Hop {
        peer: leader(topology, node),
        ranks: ranks_of(topology, node),
        bundled: true,
    });
    let alone = ranks_of(topology, home).iter().filter(|&&rank| rank != root);
    let alone = alone.map(|rank| Hop { peer: *rank, ranks: std::slice::from_ref(rank), bundled: false });
    bundles.chain(alone).collect()
}

/// The ranks of `node` but this one.
fn others_on<'x>(x: &'x Exchange<'_>, node: Node) -> impl Iterator<Item = Rank> + 'x {
    ranks_of(x.topology(), node).iter().copied().filter(move |&r| r != x.rank())
}

/// The root's sends of a scatter by node (`chunks` has one chunk per rank): from several threads when
/// a chunk is large, as the direct scatter does.
pub(super) fn scatter_from_root(x: &Exchange<'_>, plan: &Plan, chunks: &[&[u8]]) -> Result<()> {
    let send = |hop: &Hop<'_>| match hop.bundled {
        false => x.send(hop.peer, &[chunks[hop.peer.0]]),
        true => {
            let header = protocol::bundle_header(hop.ranks.iter().map(|r| chunks[r.0].len()));
            let parts: Vec<&[u8]> =
                std::iter::once(&header[..]).chain(hop.ranks.iter().map(|r| chunks[r.0])).collect();
            x.send(hop.peer, &parts)
        }
    };
    let hops = hops(x.topology(), x.rank());
    match plan.parallel_scatter(largest(chunks)) {
        true => hops.par_iter().try_for_each(send),
        false => hops.iter().try_for_each(send),
    }
}

/// This rank's chunk of a scatter by node from `root`: from the root on the root's node, from the
/// node's leader elsewhere; a leader takes its node's bundle from the root and passes the other chunks
/// on (telling its node's ranks if it fails).
pub(super) fn scatter_chunk(x: &Exchange<'_>, root: Rank) -> Result<Option<Payload>> {
    let topology = x.topology();
    let here = node(topology, x.rank());
    let from = if here == node(topology, root) { root } else { leader(topology, here) };
    if from != x.rank() {
        return x.receive(Source::Rank(from), Some(from)).map(only_part);
    }
    let passed = pass_scatter_on(x, root, here);
    x.or_report(others_on(x, here), passed)
}

/// A leader's part of a scatter: takes `node`'s bundle from `root`, sends each other rank of the node
/// its chunk and returns its own.
fn pass_scatter_on(x: &Exchange<'_>, root: Rank, node: Node) -> Result<Option<Payload>> {
    let ranks = ranks_of(x.topology(), node);
    let bundle = x.receive(Source::Rank(root), Some(root))?;
    let mut own = None;
    for (&rank, chunk) in ranks.iter().zip(unbundle(bundle, ranks.len(), x.op())?) {
        match rank == x.rank() {
            true => own = Some(chunk),
            false => x.forward(rank, vec![chunk])?,
        }
    }
    Ok(own)
}

/// A non-root's side of a gather by node: sends `data` to the root from the root's node, to the node's
/// leader elsewhere; a leader collects its node's chunks and sends the root one bundle.
pub(super) fn gather_from(x: &Exchange<'_>, root: Rank, data: &[u8]) -> Result<()> {
    let topology = x.topology();
    let here = node(topology, x.rank());
    let to = if here == node(topology, root) { root } else { leader(topology, here) };
    if to != x.rank() {
        let sent = x.send(to, &[data]);
        return x.or_report([to], sent);
    }
    let bundled = bundle_gather(x, root, here, data);
    x.or_report(std::iter::once(root).chain(others_on(x, here)), bundled)
}

/// A leader's part of a gather: takes the chunk of every other rank of `node` (in arrival order) and
/// sends them with its own `data` to `root` as one bundle, moving the received buffers.
fn bundle_gather(x: &Exchange<'_>, root: Rank, node: Node, data: &[u8]) -> Result<()> {
    let ranks = ranks_of(x.topology(), node);
    let mut chunks: Vec<Option<Payload>> = ranks.iter().map(|_| None).collect();
    chunks[rank_index(ranks, x.rank())] = Some(Payload::from_vec(data.to_vec()));
    for _ in 1..ranks.len() {
        // Past the deadline, the first rank still missing is the one to suspect.
        let missing = ranks.iter().zip(&chunks).find(|(_, c)| c.is_none()).map(|(&r, _)| r);
        let incoming = x.receive(Source::Any, missing)?;
        let source = incoming.source;
        let slot = ranks.iter().position(|&r| r == source).map(|i| &mut chunks[i]);
        let slot = slot.ok_or_else(|| unexpected(x, source, "a chunk from another node"))?;
        if slot.is_some() {
            return Err(unexpected(x, source, "a second contribution"));
        }
        *slot = Some(only_part(incoming).unwrap_or_else(|| Payload::from_vec(Vec::new())));
    }
    let chunks: Vec<Payload> = chunks.into_iter().flatten().collect();
    let header = Payload::from_vec(protocol::bundle_header(chunks.iter().map(|c| c.len())));
    x.forward(root, std::iter::once(header).chain(chunks).collect())
}

/// The root's side of a gather by node: lands the chunk of each rank of its node and each other node's
/// bundle, in arrival order, in `gathered` (which holds a place for every rank).
pub(super) fn gather_to_root(x: &Exchange<'_>, gathered: &mut [Vec<u8>]) -> Result<()> {
    let hops = hops(x.topology(), x.rank());
    let mut arrived = vec![false; hops.len()];
    for _ in 0..hops.len() {
        let missing = hops.iter().zip(&arrived).find(|(_, &a)| !a).map(|(hop, _)| hop.peer);
        let incoming = x.receive(Source::Any, missing)?;
        let source = incoming.source;
        let Some(at) = hops.iter().position(|hop| hop.peer == source) else {
            return Err(unexpected(x, source, "a chunk that should go to its node's leader"));
        };
        if std::mem::replace(&mut arrived[at], true) {
            return Err(unexpected(x, source, "a second contribution"));
        }
        let hop = hops[at];
        match hop.bundled {
            false => land_payload(&mut gathered[source.0], only_part(incoming)),
            true => {
                for (rank, chunk) in hop.ranks.iter().zip(unbundle(incoming, hop.ranks.len(), x.op())?) {
                    land_payload(&mut gathered[rank.0], Some(chunk));
                }
            }
        }
    }
    Ok(())
}

/// Where `rank` is among `ranks` (which hold it).
fn rank_index(ranks: &[Rank], rank: Rank) -> usize {
    ranks.iter().position(|&r| r == rank).expect("the rank is on its node")
}

fn unexpected(x: &Exchange<'_>, rank: Rank, reason: &str) -> Error {
    x.peer_error(rank, reason)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mesh::net::envelope::{Call, Channel, Collective, Operation};

    fn bundle(parts: Vec<Vec<u8>>) -> Incoming {
        let call = Call::new(Operation::Gather, Some(0));
        let channel = Channel::Collective(Collective {
            group: crate::mesh::net::envelope::GroupId::WORLD,
            sequence: 1,
            call,
        });
        let payloads = parts.into_iter().map(Payload::from_vec).collect();
        Incoming { source: Rank(3), job_source: Rank(3), channel, failed: false, payloads }
    }

    #[test]
    fn a_bundle_unbundles_with_empty_chunks_and_only_for_its_node_s_count() {
        let chunks = [vec![1, 2, 3], vec![], vec![4]];
        let header = protocol::bundle_header(chunks.iter().map(Vec::len));
        let parts: Vec<Vec<u8>> = std::iter::once(header).chain(chunks.iter().cloned()).collect();
        let out = unbundle(bundle(parts.clone()), 3, "gather").unwrap();
        assert_eq!(out.iter().map(|p| p.to_vec()).collect::<Vec<_>>(), chunks);
        let reason = |result: Result<Vec<Payload>>| match result {
            Err(Error::BadPeerMessage { rank: 3, op: "gather", reason }) => reason,
            other => panic!("expected a bad message from rank 3, got {other:?}"),
        };
        assert!(reason(unbundle(bundle(parts.clone()), 2, "gather")).contains("3 chunks for the 2 ranks"));
        assert!(reason(unbundle(bundle(vec![vec![1]]), 2, "gather")).contains("not a bundle"));
        let mut short = parts;
        short.pop();
        assert!(reason(unbundle(bundle(short), 3, "gather")).contains("whose header lists 3"));
    }
}
