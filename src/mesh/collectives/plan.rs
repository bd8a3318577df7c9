//! Which algorithm each collective takes: every threshold and every choice in one place, made from the
//! topology and the [`MeshConfig`] alone, so that the ranks that must agree on a choice make it alike.
//!
//! - **Broadcast** (the root chooses; its choice travels with the data, so the others need not agree):
//!   on one node, every rank reached through shared memory, a message below the single-copy size fans
//!   out from the root (each send only writes into a ring, and one hop beats the tree's log2 n), and a
//!   larger one is read by every rank straight from the root's buffer. Otherwise a binomial tree below
//!   the pipeline threshold and a pipelined chain from there on.
//! - **Scatter and gather** go by node when the ranks span several nodes and some node holds several
//!   (one message per node crosses the network). On one node, chunks from the single-copy size on (a
//!   gather's from [`GATHER_IN_PLACE_FROM`], or the single-copy size if larger) are read in place;
//!   otherwise each chunk is sent whole, a scatter's root copying large chunks into their messages on
//!   several threads.
//! - **All-to-all**: on one node, chunks from the single-copy size on are read in place; otherwise a
//!   pairwise exchange.
//!
//! Reads in place need single copies allowed ([`MeshConfig::single_copy`]) and stop, for the rest of
//! the mesh's life, once a reader of this rank's was refused a copy by the kernel: the bytes are then
//! sent, once per rank instead of once per node.
//! docs/BENCHMARKS.md has the measurements behind each threshold.

#![forbid(unsafe_code)]

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::mesh::config::MeshConfig;
use crate::mesh::net::link::Route;
use crate::mesh::topology::{Node, Topology};
use crate::transport::Transport;

/// How a broadcast moves its data; the module docs say when each runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum BroadcastAlgorithm {
    /// log2(n) rounds, each rank forwarding the whole message to its subtrees.
    BinomialTree,
    /// A pipelined chain in pieces of [`MeshConfig::chunk_size`](crate::mesh::MeshConfig::chunk_size): the
    /// root, the rest of its node, and each other node's leader, which also starts a chain through its
    /// own node.
    PipelinedChain,
    /// Every rank of the node copies the root's buffer straight from the root's memory, all at once,
    /// one copy each; the root returns once each has.
    ReadFromRoot,
    /// The root sends the whole message to every rank itself: small messages on one node, where each
    /// send only writes into a queue and one hop beats the tree's log2(n).
    FanOut,
}

impl fmt::Display for BroadcastAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::BinomialTree => "binomial tree",
            Self::PipelinedChain => "pipelined chain",
            Self::ReadFromRoot => "every rank reads from the root",
            Self::FanOut => "the root sends to every rank",
        })
    }
}

/// A gather's chunk is read in place by the root from this size on: below it the root taking the
/// chunks in one by one is as fast as reading them on several threads.
pub(crate) const GATHER_IN_PLACE_FROM: usize = 256 << 10;

/// A scatter whose largest chunk is at least this large copies its chunks into messages on several
/// threads: below it waking the threads costs more than the copies.
pub(crate) const PARALLEL_SCATTER_FROM: usize = 64 << 10;

/// How a scatter or a gather moves its chunks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Spread {
    /// Through each other node's leader, one message per node.
    ByNode,
    /// Each chunk read in place by the rank it is for (a gather: by the root).
    ReadInPlace,
    /// Each chunk sent whole to the rank it is for.
    Direct,
}

/// How an all-to-all moves its chunks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Swap {
    /// Every rank reads its chunks in place from every other rank's buffers, all at once.
    ReadInPlace,
    /// In step s rank r sends to r + s and receives from r - s.
    Pairwise,
}

/// How a reducing collective or an all-gather moves its vectors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Reach {
    /// Every rank gathers every rank's vector in log2 n rounds (`bruck.rs`) and folds them itself.
    Rounds,
    /// Every rank's vector through the queues to its node's leader and the root, the result back.
    Queues,
    /// On one node, each rank folds its share from the shares every rank sends it through the queues,
    /// and sends the result on (`shares.rs`).
    SentShares,
    /// Across nodes of as many ranks each: each rank folds its share of its node's vectors by reading
    /// them, exchanges that with the ranks of its place on the other nodes, folds the nodes' results,
    /// and the node's ranks read each other's shares (`shares.rs`).
    NodeShares,
    /// On one node, each rank folds its share straight from every rank's memory (`shares.rs`).
    Shares,
}

/// A reducing collective's or an all-gather's vector of at most this many bytes per rank goes to every
/// rank in log2 n rounds (each rank then folds them all itself): a round costs one message time,
/// however many ranks, and the vectors stay small enough for the same-node fast path.
pub(crate) const ROUNDS_UP_TO: usize = 256;

/// On one node a reducing collective's vector of at least this many bytes per rank is folded by shares
/// sent through the queues: below it one message to the root and one back cost less (at 4 KiB and
/// 16 KiB 0.6-0.9 of MPI's time against 1.1-1.6, at 64 KiB 0.9-1.1 against 1.4).
pub(crate) const REDUCE_BY_SENT_SHARES_FROM: usize = 32 << 10;

/// On one node a reducing collective's vector of at least this many bytes per rank is folded by
/// shares read in place: below it the offers and answers cost more than the copies through the queues
/// save (all-reduce of 4 MiB: 0.65 of MPI's time read, 1.1-1.2 sent; of 512 KiB alike).
pub(crate) const REDUCE_BY_SHARES_FROM: usize = 512 << 10;

/// Across nodes a reducing collective's vector of at least this many bytes per rank goes by node and
/// by share: below it the leaders' messages cost less than the rounds of offers.
pub(crate) const REDUCE_BY_NODE_SHARES_FROM: usize = 256 << 10;

/// On one node an all-gather's block of at least this many bytes is read in place (from 256 KiB 0.7-1.1
/// of MPI's time against 1.2-1.6 sent; below 64 KiB sending costs less).
pub(crate) const ALL_GATHER_BY_READS_FROM: usize = 128 << 10;

/// A broadcast on one node is read from the root from this size (or [`MeshConfig::single_copy_from`]
/// when larger, or the pipeline threshold when smaller); below it the root fans out through the rings,
/// whose copies cost less than the readers' offers and answers there (docs/BENCHMARKS.md, "Small
/// messages").
pub(crate) const BROADCAST_READS_FROM: usize = 128 << 10;

/// The algorithm choices of one mesh.
#[derive(Debug)]
pub(crate) struct Plan {
    pipeline_threshold: usize,
    chunk_size: usize,
    single_copy_from: usize,
    single_copy: bool,
    /// The whole mesh on one node, every rank reached through shared memory.
    one_node_shared: bool,
    /// Scatters and gathers go by node.
    by_node: bool,
    /// The whole mesh on one node, whatever the transport.
    one_node: bool,
    /// Several nodes, each with as many ranks as the others, which read each other's memory (or one rank
    /// each): the reducing collectives go by node and by share.
    node_shares: bool,
    /// The whole mesh on one node, every rank reached through shared memory, and every rank allows
    /// single copies: the reducing collectives and the all-gather may read in place (every rank decides
    /// alike from what the bootstrap told, whatever the kernel later refuses: a refused read asks for
    /// the bytes within the call).
    shares: bool,
    /// A rank was refused a copy from this rank's memory: reads in place stop.
    readers_refused: AtomicBool,
}

impl Plan {
    /// The plan of a mesh formed with `config` over `topology`, reaching each rank by `routes`;
    /// `every_rank_copies` when every rank allows single copies and has a shared-memory server (so that
    /// the ranks of every node reach each other through shared memory).
    pub(crate) fn new(
        config: &MeshConfig,
        topology: &Topology,
        routes: &[Route],
        every_rank_copies: bool,
    ) -> Self {
        let size = routes.len();
        let nodes = topology.node_count();
        let most = (0..nodes).filter_map(|n| topology.ranks_on(Node(n))).map(<[_]>::len).max();
        let one_node_shared =
            size > 1 && nodes == 1 && routes.iter().all(|route| route.transport() == Transport::SharedMemory);
        Self {
            pipeline_threshold: config.pipeline_threshold,
            chunk_size: config.chunk_size.max(1),
            single_copy_from: config.single_copy_from,
            single_copy: config.single_copy,
            one_node_shared,
            one_node: nodes == 1,
            shares: one_node_shared && every_rank_copies,
            node_shares: nodes > 1
                && (0..nodes).filter_map(|n| topology.ranks_on(Node(n))).map(<[_]>::len).min() == most
                && (most == Some(1) || every_rank_copies),
            // A node's chunks must fit the bulks of one message (every rank sets `max_bulks` alike).
            by_node: nodes > 1 && nodes < size && most.is_some_and(|most| most < config.options.max_bulks),
            readers_refused: AtomicBool::new(false),
        }
    }

    /// The piece size of chains and of bytes sent in pieces.
    pub(crate) fn chunk_size(&self) -> usize {
        self.chunk_size
    }

    /// Whether this rank may copy from other ranks' memory at all.
    pub(crate) fn single_copy(&self) -> bool {
        self.single_copy
    }

    /// Whether the root of a broadcast may send the whole message to every rank itself.
    pub(crate) fn fans_out(&self) -> bool {
        self.one_node_shared
    }

    /// The algorithm of a broadcast of `len` bytes from this rank.
    pub(crate) fn broadcast(&self, len: usize) -> BroadcastAlgorithm {
        let read_from = self.single_copy_from.max(BROADCAST_READS_FROM).min(self.pipeline_threshold);
        if len < read_from && self.one_node_shared {
            BroadcastAlgorithm::FanOut
        } else if len >= read_from && self.reads_in_place() {
            BroadcastAlgorithm::ReadFromRoot
        } else if len < self.pipeline_threshold {
            BroadcastAlgorithm::BinomialTree
        } else {
            BroadcastAlgorithm::PipelinedChain
        }
    }

    /// How a scatter whose largest chunk holds `largest` bytes moves from this rank as its root. (Its
    /// other ranks take whatever comes, but must know whether it goes by node: [`Plan::by_node`].)
    pub(crate) fn scatter(&self, largest: usize) -> Spread {
        if self.by_node {
            Spread::ByNode
        } else if largest >= self.single_copy_from && self.reads_in_place() {
            Spread::ReadInPlace
        } else {
            Spread::Direct
        }
    }

    /// How this rank's chunk of `len` bytes reaches a gather's root.
    pub(crate) fn gather(&self, len: usize) -> Spread {
        if self.by_node {
            Spread::ByNode
        } else if len >= GATHER_IN_PLACE_FROM.max(self.single_copy_from) && self.reads_in_place() {
            Spread::ReadInPlace
        } else {
            Spread::Direct
        }
    }

    /// Whether scatters and gathers go by node: every rank decides the same from the topology alone.
    pub(crate) fn by_node(&self) -> bool {
        self.by_node
    }

    /// Whether a scatter's root copies chunks into their messages on several threads.
    pub(crate) fn parallel_scatter(&self, largest: usize) -> bool {
        largest >= PARALLEL_SCATTER_FROM
    }

    /// How an all-to-all whose largest chunk from this rank holds `largest` bytes moves.
    pub(crate) fn all_to_all(&self, largest: usize) -> Swap {
        match largest >= self.single_copy_from && self.reads_in_place() {
            true => Swap::ReadInPlace,
            false => Swap::Pairwise,
        }
    }

    /// How a reducing collective of `len` bytes per rank moves: every rank decides alike.
    pub(crate) fn reduce(&self, len: usize) -> Reach {
        if len <= ROUNDS_UP_TO {
            Reach::Rounds
        } else if len >= REDUCE_BY_SHARES_FROM && self.shares {
            Reach::Shares
        } else if len >= REDUCE_BY_SENT_SHARES_FROM && self.one_node {
            Reach::SentShares
        } else if len >= REDUCE_BY_NODE_SHARES_FROM && self.node_shares {
            Reach::NodeShares
        } else {
            Reach::Queues
        }
    }

    /// How an all-gather of blocks of `len` bytes moves: every rank decides alike.
    pub(crate) fn all_gather(&self, len: usize) -> Reach {
        if len <= ROUNDS_UP_TO {
            Reach::Rounds
        } else if len >= ALL_GATHER_BY_READS_FROM && self.shares {
            Reach::Shares
        } else {
            Reach::Queues
        }
    }

    /// Notes that `askers` asked for bytes instead of copying (the kernel refuses them copies): this
    /// rank's later collectives send instead of offering reads.
    pub(crate) fn note_refusals(&self, askers: &[crate::mesh::Rank]) {
        if !askers.is_empty() {
            self.readers_refused.store(true, Ordering::Relaxed);
        }
    }

    fn reads_in_place(&self) -> bool {
        self.single_copy && self.one_node_shared && !self.readers_refused.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mesh::topology::NodeId;
    use crate::transport::Endpoint;

    /// A plan for ranks on `nodes` (rank r on node `nodes[r]`), every rank of this rank's node
    /// reached through shared memory unless `zeromq`.
    fn plan(nodes: &[usize], config: MeshConfig, zeromq: bool) -> Plan {
        let ids: Vec<NodeId> = nodes.iter().map(|n| NodeId::named(&format!("node-{n}"))).collect();
        let topology = Topology::new(&ids);
        let endpoint = Endpoint::parse("tcp://127.0.0.1:1").unwrap();
        let routes: Vec<Route> = nodes
            .iter()
            .map(|&n| match n == nodes[0] && !zeromq {
                true => Route::SharedMemory("shm://x".into()),
                false => Route::ZeroMq(endpoint.clone()),
            })
            .collect();
        let copies = config.single_copy;
        Plan::new(&config, &topology, &routes, copies)
    }

    #[test]
    fn a_broadcast_on_one_node_fans_out_small_and_is_read_large() {
        let config = MeshConfig::default().with_single_copy(true);
        let one_node = plan(&[0, 0, 0, 0], config.clone(), false);
        assert_eq!(one_node.broadcast(8), BroadcastAlgorithm::FanOut);
        assert_eq!(one_node.broadcast(BROADCAST_READS_FROM - 1), BroadcastAlgorithm::FanOut);
        assert_eq!(one_node.broadcast(BROADCAST_READS_FROM), BroadcastAlgorithm::ReadFromRoot);
        assert_eq!(one_node.broadcast(64 << 20), BroadcastAlgorithm::ReadFromRoot);
        // Once a reader is refused a copy, large broadcasts take the chain, as without single copies.
        one_node.note_refusals(&[crate::mesh::Rank(2)]);
        assert_eq!(one_node.broadcast(64 << 20), BroadcastAlgorithm::PipelinedChain);
        let no_copies = plan(&[0, 0, 0, 0], config.clone().with_single_copy(false), false);
        assert_eq!(no_copies.broadcast(config.pipeline_threshold - 1), BroadcastAlgorithm::BinomialTree);
        assert_eq!(no_copies.broadcast(8), BroadcastAlgorithm::FanOut);
        // Over ZeroMQ, or across nodes: the tree, then the chain.
        for plan in [plan(&[0, 0, 0], config.clone(), true), plan(&[0, 1, 1], config.clone(), false)] {
            assert_eq!(plan.broadcast(8), BroadcastAlgorithm::BinomialTree);
            assert_eq!(plan.broadcast(config.pipeline_threshold), BroadcastAlgorithm::PipelinedChain);
        }
        // One rank alone never fans out.
        assert_eq!(plan(&[0], config, false).broadcast(8), BroadcastAlgorithm::BinomialTree);
    }

    #[test]
    fn reductions_take_rounds_small_queues_then_shares_on_one_node_and_leaders_across() {
        let config = MeshConfig::default().with_single_copy(true);
        let one_node = plan(&[0, 0, 0, 0], config.clone(), false);
        assert_eq!(one_node.reduce(ROUNDS_UP_TO), Reach::Rounds);
        assert_eq!(one_node.reduce(ROUNDS_UP_TO + 1), Reach::Queues);
        assert_eq!(one_node.reduce(REDUCE_BY_SENT_SHARES_FROM), Reach::SentShares);
        assert_eq!(one_node.reduce(REDUCE_BY_SHARES_FROM), Reach::Shares);
        assert_eq!(one_node.all_gather(ALL_GATHER_BY_READS_FROM - 1), Reach::Queues);
        assert_eq!(one_node.all_gather(ALL_GATHER_BY_READS_FROM), Reach::Shares);
        // A refused read does not move the choice (every rank must make it alike): the read asks.
        one_node.note_refusals(&[crate::mesh::Rank(1)]);
        assert_eq!(one_node.reduce(REDUCE_BY_SHARES_FROM), Reach::Shares);
        // Without single copies on every rank, or over ZeroMQ, the shares are sent.
        let mut no_copies = plan(&[0, 0, 0, 0], config.clone(), false);
        no_copies.shares = false;
        assert_eq!(no_copies.reduce(64 << 20), Reach::SentShares);
        assert_eq!(plan(&[0, 0, 0], config.clone(), true).reduce(64 << 20), Reach::SentShares);
        // Across nodes of as many ranks each: by node and by share from 256 KiB; of unequal nodes, the
        // leaders.
        let nodes = plan(&[0, 0, 1, 1], config.clone(), false);
        assert_eq!((nodes.reduce(8), nodes.reduce(64 << 10)), (Reach::Rounds, Reach::Queues));
        assert_eq!(nodes.reduce(REDUCE_BY_NODE_SHARES_FROM), Reach::NodeShares);
        assert_eq!(nodes.all_gather(64 << 20), Reach::Queues);
        assert_eq!(plan(&[0, 0, 1], config, false).reduce(64 << 20), Reach::Queues);
    }

    #[test]
    fn chunks_go_by_node_across_nodes_and_are_read_in_place_on_one() {
        let config = MeshConfig::default().with_single_copy(true);
        let from = config.single_copy_from;
        let by_node = plan(&[0, 0, 1, 1], config.clone(), false);
        assert!(by_node.by_node());
        assert_eq!((by_node.scatter(from), by_node.gather(8)), (Spread::ByNode, Spread::ByNode));
        assert_eq!(by_node.all_to_all(from), Swap::Pairwise);
        // One rank per node gains nothing from leaders.
        let spread = plan(&[0, 1, 2], config.clone(), false);
        assert!(!spread.by_node());
        assert_eq!(spread.scatter(from), Spread::Direct);
        let one_node = plan(&[0, 0, 0], config.clone(), false);
        assert_eq!(one_node.scatter(from - 1), Spread::Direct);
        assert_eq!(one_node.scatter(from), Spread::ReadInPlace);
        assert_eq!(one_node.gather(from), Spread::Direct);
        assert_eq!(one_node.gather(GATHER_IN_PLACE_FROM), Spread::ReadInPlace);
        assert_eq!(one_node.all_to_all(from), Swap::ReadInPlace);
        assert!(one_node.parallel_scatter(PARALLEL_SCATTER_FROM) && !one_node.parallel_scatter(8));
        // A configured single-copy size moves every threshold that follows it.
        let later = plan(&[0, 0, 0], config.with_single_copy_from(1 << 20), false);
        assert_eq!(later.scatter(512 << 10), Spread::Direct);
        assert_eq!(later.gather(512 << 10), Spread::Direct);
        assert_eq!(later.all_to_all(1 << 20), Swap::ReadInPlace);
    }
}
