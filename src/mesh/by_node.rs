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
//! A bundle is a header of the chunks' lengths (8 bytes each, little endian, in the order of the node's
//! ranks) followed by one part per chunk. Its receiver knows from the topology how many chunks it must
//! hold and checks the header's size, the count of parts and every length before it uses any byte: a
//! bundle that does not add up is [`Error::BadPeerMessage`].
//!
//! Failures: a leader that fails tells the ranks waiting on it (in a scatter its node's ranks, in a
//! gather the root, and its node's ranks, which may be waiting for it to take their chunks in); a rank
//! waiting past its deadline names the rank it waits for (its leader, or the root), and the chain of
//! waits leads past a leader that is itself waiting to the rank that stalled.

#![forbid(unsafe_code)]

use rayon::prelude::*;

use super::collectives::{land_payload, PARALLEL_SCATTER_CHUNK};
use super::mailbox::Incoming;
use super::progress::Ongoing;
use super::topology::Node;
use super::{Mesh, Rank, Source};
use crate::error::{Error, Result};
use crate::transport::Payload;

/// The bytes of a bundle's header per chunk: its length.
const LENGTH_BYTES: usize = 8;

/// A peer a scatter's root sends to (or a gather's root receives from), and the ranks whose chunks that
/// message carries: a rank of the root's node alone with its own chunk (`bundled` false), or the leader
/// of another node with the chunks of every rank there (a bundle).
#[derive(Debug, Clone, Copy)]
struct Hop<'t> {
    peer: Rank,
    ranks: &'t [Rank],
    bundled: bool,
}

/// The header of a bundle of chunks of these lengths.
fn bundle_header(lengths: impl Iterator<Item = usize>) -> Vec<u8> {
    lengths.flat_map(|len| (len as u64).to_le_bytes()).collect()
}

/// The chunks of a bundle that must hold `count`, in order, after checking that its header and parts
/// add up.
fn unbundle(incoming: Incoming, count: usize, op: &'static str) -> Result<Vec<Payload>> {
    let rank = incoming.source.0;
    let bad = |reason: String| Error::BadPeerMessage { rank, op, reason };
    let mut parts = incoming.payloads.into_iter();
    let header = parts.next().ok_or_else(|| bad("an empty bundle".into()))?;
    if header.len() != count * LENGTH_BYTES {
        let said = header.len();
        return Err(bad(format!("a bundle header of {said} bytes for {count} chunks (8 bytes each)")));
    }
    let chunks: Vec<Payload> = parts.collect();
    if chunks.len() != count {
        return Err(bad(format!("a bundle of {} chunks for the {count} ranks of the node", chunks.len())));
    }
    let lengths = header.chunks_exact(LENGTH_BYTES).map(|b| u64::from_le_bytes(b.try_into().expect("8")));
    for (i, (said, chunk)) in lengths.zip(&chunks).enumerate() {
        if said != chunk.len() as u64 {
            return Err(bad(format!("chunk {i} of a bundle says {said} bytes but holds {}", chunk.len())));
        }
    }
    Ok(chunks)
}

/// The one payload of a chunk's message (none when it carries 0 bytes as no part).
fn only_part(incoming: Incoming) -> Option<Payload> {
    incoming.payloads.into_iter().next()
}

impl Mesh {
    /// Whether scatters and gathers go by node: the ranks span several nodes, some node holds several,
    /// and a node's chunks fit the bulks of one message ([`Options::max_bulks`](crate::Options), which
    /// every rank must then set alike). Every rank decides the same from the topology alone.
    pub(super) fn by_node(&self) -> bool {
        let nodes = self.topology.node_count();
        let most = (0..nodes).filter_map(|n| self.topology.ranks_on(Node(n))).map(<[Rank]>::len).max();
        nodes > 1 && nodes < self.size() && most.is_some_and(|most| most < self.config.options.max_bulks)
    }

    fn node(&self, rank: Rank) -> Node {
        self.topology.node_of(rank).expect("a rank of the mesh")
    }

    fn ranks_of(&self, node: Node) -> &[Rank] {
        self.topology.ranks_on(node).expect("a node of the mesh")
    }

    /// The leader of `node` in collectives by node: its lowest rank.
    fn leader(&self, node: Node) -> Rank {
        self.topology.leader(node).expect("a node of the mesh")
    }

    /// The peers the root `root` exchanges a message with in a scatter or gather by node: each other
    /// node's leader with that node's ranks (first, so that the other nodes start passing chunks on
    /// early), then the other ranks of its own node, each alone.
    fn hops(&self, root: Rank) -> Vec<Hop<'_>> {
        let home = self.node(root);
        let nodes = (0..self.topology.node_count()).map(Node).filter(|&node| node != home);
        let bundles =
            nodes.map(|node| Hop { peer: self.leader(node), ranks: self.ranks_of(node), bundled: true });
        let alone = self.ranks_of(home).iter().filter(|&&rank| rank != root);
        let alone = alone.map(|rank| Hop { peer: *rank, ranks: std::slice::from_ref(rank), bundled: false });
        bundles.chain(alone).collect()
    }

    /// The root's sends of a scatter by node (`chunks` has one chunk per rank): from several threads when
    /// a chunk is large, as the direct scatter does.
    pub(super) fn scatter_root_by_node(&self, ongoing: &Ongoing, chunks: &[&[u8]]) -> Result<()> {
        let send = |hop: &Hop<'_>| match hop.bundled {
            false => self.send_in(ongoing, hop.peer, &[chunks[hop.peer.0]]),
            true => {
                let header = bundle_header(hop.ranks.iter().map(|r| chunks[r.0].len()));
                let parts: Vec<&[u8]> =
                    std::iter::once(&header[..]).chain(hop.ranks.iter().map(|r| chunks[r.0])).collect();
                self.send_in(ongoing, hop.peer, &parts)
            }
        };
        let hops = self.hops(self.rank);
        if chunks.iter().any(|c| c.len() >= PARALLEL_SCATTER_CHUNK) {
            hops.par_iter().try_for_each(send)
        } else {
            hops.iter().try_for_each(send)
        }
    }

    /// This rank's chunk of a scatter by node from `root`: from the root on the root's node, from the
    /// node's leader elsewhere; a leader takes its node's bundle from the root and passes the other
    /// chunks on (telling its node's ranks if it fails).
    pub(super) fn scatter_chunk_by_node(&self, ongoing: &Ongoing, root: Rank) -> Result<Option<Payload>> {
        let node = self.node(self.rank);
        let from = if node == self.node(root) { root } else { self.leader(node) };
        if from != self.rank {
            return self.receive_in(ongoing, Source::Rank(from), Some(from)).map(only_part);
        }
        let passed = self.pass_scatter_on(ongoing, root, node);
        self.or_report(ongoing, self.others_on(node), passed)
    }

    /// A leader's part of a scatter: takes `node`'s bundle from `root`, sends each other rank of the node
    /// its chunk and returns its own.
    fn pass_scatter_on(&self, ongoing: &Ongoing, root: Rank, node: Node) -> Result<Option<Payload>> {
        let ranks = self.ranks_of(node);
        let bundle = self.receive_in(ongoing, Source::Rank(root), Some(root))?;
        let mut own = None;
        for (&rank, chunk) in ranks.iter().zip(unbundle(bundle, ranks.len(), ongoing.op)?) {
            match rank == self.rank {
                true => own = Some(chunk),
                false => self.forward_in(ongoing, rank, vec![chunk])?,
            }
        }
        Ok(own)
    }

    /// A non-root's side of a gather by node: sends `data` to the root from the root's node, to the
    /// node's leader elsewhere; a leader collects its node's chunks and sends the root one bundle.
    pub(super) fn gather_by_node(&self, ongoing: &Ongoing, root: Rank, data: &[u8]) -> Result<()> {
        let node = self.node(self.rank);
        let to = if node == self.node(root) { root } else { self.leader(node) };
        if to != self.rank {
            let sent = self.send_in(ongoing, to, &[data]);
            return self.or_report(ongoing, [to], sent);
        }
        let bundled = self.bundle_gather(ongoing, root, node, data);
        self.or_report(ongoing, std::iter::once(root).chain(self.others_on(node)), bundled)
    }

    /// A leader's part of a gather: takes the chunk of every other rank of `node` (in arrival order) and
    /// sends them with its own `data` to `root` as one bundle, moving the received buffers.
    fn bundle_gather(&self, ongoing: &Ongoing, root: Rank, node: Node, data: &[u8]) -> Result<()> {
        let ranks = self.ranks_of(node);
        let mut chunks: Vec<Option<Payload>> = ranks.iter().map(|_| None).collect();
        chunks[rank_index(ranks, self.rank)] = Some(Payload::from_vec(data.to_vec()));
        for _ in 1..ranks.len() {
            // Past the deadline, the first rank still missing is the one to suspect.
            let missing = ranks.iter().zip(&chunks).find(|(_, c)| c.is_none()).map(|(&r, _)| r);
            let incoming = self.receive_in(ongoing, Source::Any, missing)?;
            let source = incoming.source;
            let slot = ranks.iter().position(|&r| r == source).map(|i| &mut chunks[i]);
            let slot = slot.ok_or_else(|| unexpected(source, ongoing.op, "a chunk from another node"))?;
            if slot.is_some() {
                return Err(unexpected(source, ongoing.op, "a second contribution"));
            }
            *slot = Some(only_part(incoming).unwrap_or_else(|| Payload::from_vec(Vec::new())));
        }
        let chunks: Vec<Payload> = chunks.into_iter().flatten().collect();
        let header = Payload::from_vec(bundle_header(chunks.iter().map(|c| c.len())));
        self.forward_in(ongoing, root, std::iter::once(header).chain(chunks).collect())
    }

    /// The root's side of a gather by node: lands the chunk of each rank of its node and each other
    /// node's bundle, in arrival order, in `gathered` (which holds a place for every rank).
    pub(super) fn gather_root_by_node(&self, ongoing: &Ongoing, gathered: &mut [Vec<u8>]) -> Result<()> {
        let hops = self.hops(self.rank);
        let mut arrived = vec![false; hops.len()];
        for _ in 0..hops.len() {
            let missing = hops.iter().zip(&arrived).find(|(_, &a)| !a).map(|(hop, _)| hop.peer);
            let incoming = self.receive_in(ongoing, Source::Any, missing)?;
            let source = incoming.source;
            let Some(at) = hops.iter().position(|hop| hop.peer == source) else {
                return Err(unexpected(source, ongoing.op, "a chunk that should go to its node's leader"));
            };
            if std::mem::replace(&mut arrived[at], true) {
                return Err(unexpected(source, ongoing.op, "a second contribution"));
            }
            let hop = hops[at];
            match hop.bundled {
                false => land_payload(&mut gathered[source.0], only_part(incoming)),
                true => {
                    for (rank, chunk) in
                        hop.ranks.iter().zip(unbundle(incoming, hop.ranks.len(), ongoing.op)?)
                    {
                        land_payload(&mut gathered[rank.0], Some(chunk));
                    }
                }
            }
        }
        Ok(())
    }

    /// The ranks of `node` but this one.
    fn others_on(&self, node: Node) -> impl Iterator<Item = Rank> + '_ {
        self.ranks_of(node).iter().copied().filter(move |&r| r != self.rank)
    }
}

/// Where `rank` is among `ranks` (which hold it).
fn rank_index(ranks: &[Rank], rank: Rank) -> usize {
    ranks.iter().position(|&r| r == rank).expect("the rank is on its node")
}

fn unexpected(rank: Rank, op: &'static str, reason: &str) -> Error {
    Error::BadPeerMessage { rank: rank.0, op, reason: reason.into() }
}

#[cfg(test)]
mod tests {
    use super::super::envelope::{Call, Channel, Collective, Operation};
    use super::*;

    fn bundle(parts: Vec<Vec<u8>>) -> Incoming {
        let call = Call { operation: Operation::Gather, root: Some(0) };
        let channel = Channel::Collective(Collective { sequence: 1, call });
        let payloads = parts.into_iter().map(Payload::from_vec).collect();
        Incoming { source: Rank(3), channel, failed: false, payloads }
    }

    fn reason(result: Result<Vec<Payload>>) -> String {
        match result {
            Err(Error::BadPeerMessage { rank: 3, op: "gather", reason }) => reason,
            other => panic!("expected a bad message from rank 3, got {other:?}"),
        }
    }

    #[test]
    fn a_bundle_round_trips_with_empty_chunks() {
        let chunks = [vec![1, 2, 3], vec![], vec![4]];
        let header = bundle_header(chunks.iter().map(Vec::len));
        assert_eq!(header.len(), 24);
        let parts = std::iter::once(header).chain(chunks.iter().cloned()).collect();
        let out = unbundle(bundle(parts), 3, "gather").unwrap();
        assert_eq!(out.iter().map(|p| p.to_vec()).collect::<Vec<_>>(), chunks);
    }

    #[test]
    fn a_bundle_that_does_not_add_up_is_a_clear_error() {
        let header = |lengths: &[usize]| bundle_header(lengths.iter().copied());
        // No parts at all.
        assert!(reason(unbundle(bundle(vec![]), 2, "gather")).contains("an empty bundle"));
        // A header for another count of chunks, or not a whole number of lengths.
        let parts = vec![header(&[1]), vec![0], vec![0]];
        assert!(reason(unbundle(bundle(parts), 2, "gather")).contains("header of 8 bytes for 2 chunks"));
        let parts = vec![vec![0; 12], vec![0], vec![0]];
        assert!(reason(unbundle(bundle(parts), 2, "gather")).contains("header of 12 bytes"));
        // The right header but a chunk missing or one too many.
        let parts = vec![header(&[1, 1]), vec![0]];
        assert!(reason(unbundle(bundle(parts), 2, "gather")).contains("a bundle of 1 chunks for the 2 ranks"));
        let parts = vec![header(&[1, 1]), vec![0], vec![0], vec![0]];
        assert!(reason(unbundle(bundle(parts), 2, "gather")).contains("a bundle of 3 chunks"));
        // A length that does not match its chunk, even a huge one: nothing is allocated from it.
        let parts = vec![header(&[1, usize::MAX]), vec![0], vec![0]];
        let text = reason(unbundle(bundle(parts), 2, "gather"));
        assert!(text.contains(&format!("chunk 1 of a bundle says {} bytes but holds 1", u64::MAX)), "{text}");
    }
}
