//! The mesh: every rank's servers and a link to each peer made on first use, messaging by rank and
//! tag, and collectives on top. A [`Bootstrap`] is used only to start up (to learn where every rank
//! is): MPI's ([`Mesh::bootstrap`]) or ranks as threads of one process ([`InProcess`]).
//!
//! ```no_run
//! use lightbeam::mesh::{Mesh, MeshConfig, Rank, Source, Tag};
//!
//! # fn main() -> lightbeam::Result<()> {
//! let universe = mpi::initialize().expect("MPI initializes once");
//! let world = universe.world();
//! let mesh = Mesh::bootstrap(&world, MeshConfig::default())?;
//! if mesh.rank() == Rank(0) {
//!     for peer in 1..mesh.size() {
//!         mesh.send(Rank(peer), Tag(7), format!("hello rank {peer}").as_bytes())?;
//!     }
//! } else {
//!     let message = mesh.recv(Source::Rank(Rank(0)), Tag(7))?;
//!     println!("rank {} got {:?}", mesh.rank(), String::from_utf8_lossy(message.data()));
//! }
//! # Ok(())
//! # }
//! ```
//! See `examples/distributed.rs` for the whole program.
//!
//! Inside: `bootstrap/` forms the mesh; `net/` moves messages (links to peers, the servers messages
//! arrive at, matching them to receives, and `Exchange`, the one seam
//! between the collectives and the transports); `collectives/` holds each collective as a function of
//! its exchange, the `Plan` that chooses algorithms, and the collectives'
//! own message format; `fault.rs` tells lost and out-of-step ranks apart and tells the others.

#![forbid(unsafe_code)]

mod bootstrap;
pub mod collectives;
mod config;
mod fault;
#[cfg(feature = "mpi")]
mod job;
mod net;
mod p2p;
mod segments;
mod topology;
mod typed;
mod types;

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::{Mutex, OnceLock};

#[cfg(feature = "mpi")]
pub use self::bootstrap::Mpi;
use self::bootstrap::Peer;
pub use self::bootstrap::{Bootstrap, InProcess};
use self::collectives::plan::Plan;
pub use self::collectives::{BroadcastAlgorithm, Buffer, Op, Reducible, Reduction};
pub use self::config::{MeshConfig, EAGER_BELOW, HOST_ENV, SAME_NODE_ENV, SINGLE_COPY_ENV};
#[cfg(feature = "mpi")]
pub use self::job::{abort_job_on_panic, or_abort};
use self::net::arrivals::Arrivals;
use self::net::envelope::Mismatch;
use self::net::link::{Link, Route};
use self::net::matching::Matching;
use self::net::offer_words::OfferWords;
/// For the fuzz target `short_message`: the fast path's decoder of a small message on arbitrary bytes.
#[doc(hidden)]
pub use self::net::short::decode_for_fuzzing as decode_short_for_fuzzing;
pub use self::topology::Node;
use self::topology::Topology;
pub use self::typed::Pod;
pub use self::types::{Message, Rank, Source, Tag};
use crate::error::{Error, Result};
use crate::transport::{Endpoint, Transport};

/// A rank-indexed mesh of Lightbeam servers and links, formed once per job with [`Mesh::bootstrap`]
/// (MPI) or [`Mesh::bootstrap_with`] (any [`Bootstrap`]).
pub struct Mesh {
    rank: Rank,
    /// Every rank's node, process and endpoints, by rank.
    peers: Vec<Peer>,
    /// How this rank reaches each rank, by rank.
    routes: Vec<Route>,
    topology: Topology,
    /// The algorithm choices of every collective, made from the topology and the configuration.
    plan: Plan,
    arrivals: Arrivals,
    /// The link to each peer, made on first use (read without a lock: every send looks here).
    links: Vec<OnceLock<Link>>,
    /// Held while a link is made, so that two threads do not make one link twice.
    linking: Mutex<()>,
    matching: Mutex<Matching>,
    /// Mismatches found while a send waited, for the other ranks to be told once it returned.
    untold: Mutex<Vec<Mismatch>>,
    /// Set when a mismatch joins `untold`: every send and receive asks, and this answers without a lock.
    any_untold: AtomicBool,
    /// The words that say which offer this rank's call is in, and those of the ranks it read from.
    offer_words: OfferWords,
    token: u64,
    config: MeshConfig,
    collective_sequence: AtomicU64,
    /// The lost rank's segments were looked for (see [`Mesh::lost_error`]).
    lost_files_removed: AtomicBool,
}

impl Mesh {
    /// Forms the mesh over the ranks of the MPI communicator `comm`: each binds its servers, and a
    /// record of each rank (its node, its process and its endpoints) is all-gathered with MPI. With
    /// [`MeshConfig::abort_on_panic`], a panic on any rank from now on aborts the whole job.
    ///
    /// Collective over `comm`: every rank must call it. When any rank fails to bind (its port taken, its
    /// host unresolvable), every rank returns an error naming the failed ranks and their reasons.
    #[cfg(feature = "mpi")]
    pub fn bootstrap<C: mpi::traits::Communicator>(comm: &C, config: MeshConfig) -> Result<Self> {
        if config.abort_on_panic {
            abort_job_on_panic();
        }
        Self::bootstrap_with(&Mpi(comm), config)
    }

    /// Forms the mesh over the ranks `boot` knows, as [`Mesh::bootstrap`] does over MPI's.
    pub fn bootstrap_with(boot: &dyn Bootstrap, config: MeshConfig) -> Result<Self> {
        let (bound, peers, token) = bootstrap::bind_and_gather(boot, &config)?;
        let rank = Rank(boot.rank());
        let routes = bootstrap::routes(&peers, rank.0);
        // Each server is kept only if some rank (this one included) reaches this rank through it.
        let uses = |transport| routes.iter().any(|route| route.transport() == transport);
        let shared_memory = bound.shared_memory.filter(|_| uses(Transport::SharedMemory));
        let zeromq = uses(Transport::ZeroMq).then_some(bound.zeromq);
        let arrivals = Arrivals::new(shared_memory, zeromq, config.options.high_water_mark as usize)?;
        let topology = Topology::new(peers.iter().map(|peer| &peer.node));
        Ok(Self {
            rank,
            links: std::iter::repeat_with(OnceLock::new).take(peers.len()).collect(),
            linking: Mutex::default(),
            plan: Plan::new(&config, &topology, &routes),
            topology,
            peers,
            routes,
            arrivals,
            matching: Mutex::default(),
            untold: Mutex::default(),
            any_untold: AtomicBool::new(false),
            offer_words: OfferWords::default(),
            token,
            config,
            collective_sequence: AtomicU64::default(),
            lost_files_removed: AtomicBool::default(),
        })
    }

    /// This process's rank.
    pub fn rank(&self) -> Rank {
        self.rank
    }

    /// The number of ranks.
    pub fn size(&self) -> usize {
        self.peers.len()
    }

    /// The ZeroMQ endpoint rank `rank` announced. It receives there from ranks on other nodes (and from
    /// every rank when ZeroMQ is forced); ranks on its node reach it through shared memory (see
    /// [`Mesh::transport_to`]), and a rank with no peer on another node does not listen there at all.
    pub fn endpoint(&self, rank: Rank) -> Result<&Endpoint> {
        self.check_rank(rank)?;
        Ok(&self.peers[rank.0].zeromq)
    }

    /// The address this rank reaches `rank` at: its shared-memory server (`shm://...`) or its ZeroMQ
    /// endpoint, as [`Mesh::transport_to`] says.
    pub fn address_of(&self, rank: Rank) -> Result<String> {
        self.check_rank(rank)?;
        Ok(self.routes[rank.0].to_string())
    }

    /// The transport this rank reaches `rank` by: [`Transport::SharedMemory`] on one node (unless
    /// [`MeshConfig::same_node`] forces ZeroMQ), [`Transport::ZeroMq`] across nodes.
    pub fn transport_to(&self, rank: Rank) -> Result<Transport> {
        self.check_rank(rank)?;
        Ok(self.routes[rank.0].transport())
    }

    /// The node rank `rank` runs on. Ranks are on one node when they share a host name, a running kernel
    /// (its boot id) and a pid namespace; nodes are numbered in the order of their lowest rank, so rank 0
    /// is on node 0.
    pub fn node_of(&self, rank: Rank) -> Result<Node> {
        self.check_rank(rank)?;
        Ok(self.topology.node_of(rank).expect("every rank has a node"))
    }

    /// The ranks on `node`, in increasing order (the first is the node's lowest rank).
    pub fn ranks_on_node(&self, node: Node) -> Result<&[Rank]> {
        self.topology.ranks_on(node).ok_or_else(|| {
            Error::InvalidArgument(format!(
                "node {node} is out of range for a mesh on {} nodes",
                self.topology.node_count()
            ))
        })
    }

    /// How many nodes the ranks run on.
    pub fn node_count(&self) -> usize {
        self.topology.node_count()
    }

    /// The job token every message of this mesh carries.
    pub fn token(&self) -> u64 {
        self.token
    }

    /// How many received messages were dropped as not belonging to this mesh (garbage, another job).
    pub fn rejected_messages(&self) -> u64 {
        crate::sync::lock(&self.matching).rejected()
    }

    /// How many messages from `rank` have arrived at this rank so far: point to point, of collectives
    /// (one per message, however many parts it has) and notices. A measure of traffic, as in "one message
    /// per node reaches a gather's root": counted as the messages are taken in from the transport.
    pub fn messages_from(&self, rank: Rank) -> Result<u64> {
        self.check_rank(rank)?;
        Ok(crate::sync::lock(&self.matching).arrived_from(rank))
    }

    /// The configuration the mesh was formed with.
    pub fn config(&self) -> &MeshConfig {
        &self.config
    }

    /// Fails unless `rank` is a rank of the mesh.
    pub(crate) fn check_rank(&self, rank: Rank) -> Result<()> {
        if rank.0 < self.size() {
            Ok(())
        } else {
            Err(Error::InvalidArgument(format!(
                "rank {rank} is out of range for a mesh of {} ranks",
                self.size()
            )))
        }
    }
}

impl fmt::Debug for Mesh {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Mesh")
            .field("rank", &self.rank)
            .field("size", &self.size())
            .field("address", &self.arrivals.address())
            .finish_non_exhaustive()
    }
}
