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
//! Messages and collective buffers are bytes or slices of any plain-data type (`f64`, a `#[repr(C)]`
//! struct deriving `bytemuck::Pod`), moved with no conversion copy; the collectives include barrier,
//! all-reduce, reduce, reduce-scatter and all-gather, folded in one fixed order (see
//! [`collectives`]). [`Mesh::split`] makes meshes of subsets of the ranks (the rows and columns of a
//! 2-D decomposition) that share this one's servers and links.
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
pub mod requests;
mod segments;
mod split;
mod topology;
mod turns;
mod typed;
mod types;

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::{Arc, Mutex, OnceLock};

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
use self::net::envelope::{GroupId, Mismatch};
use self::net::link::{Link, Route};
use self::net::matching::Matching;
use self::net::offer_words::OfferWords;
use self::net::send_order::SendOrder;
/// For the fuzz target `short_message`: the fast path's decoder of a small message on arbitrary bytes.
#[doc(hidden)]
pub use self::net::short::decode_for_fuzzing as decode_short_for_fuzzing;
pub use self::requests::{wait_all, wait_any, Progress, Request, Scope};
pub use self::topology::Node;
use self::topology::Topology;
use self::turns::Turns;
pub use self::typed::Pod;
pub use self::types::{Message, Rank, Source, Tag};
use crate::error::{Error, Result};
use crate::transport::{Endpoint, Transport};

/// A rank-indexed mesh of Lightbeam servers and links, formed once per job with [`Mesh::bootstrap`]
/// (MPI) or [`Mesh::bootstrap_with`] (any [`Bootstrap`]), or split from another with [`Mesh::split`].
///
/// A mesh split from another (as `MPI_Comm_split` splits a communicator) numbers its own ranks from 0
/// and has its own collectives and point-to-point messages, but shares the servers and links of the
/// mesh the job formed: no second bootstrap, no new sockets. Errors name ranks as the job's mesh
/// numbers them ([`Mesh::job_rank`]).
pub struct Mesh {
    /// What every mesh of the job shares: its servers, links and messages.
    job: Arc<Job>,
    /// This mesh's ranks among the job's.
    group: Group,
    /// Which of this mesh's ranks share which node.
    topology: Topology,
    /// The algorithm choices of every collective, made from the topology and the configuration.
    plan: Plan,
    /// The order its collectives run in: each one's ticket is its sequence number.
    turns: Turns,
    /// How many meshes were split from this one: every rank counts alike.
    splits: AtomicU64,
}

/// What every mesh of a job shares: this process's servers and its links to every rank, the messages
/// that arrived and what each rank is, all by the rank in the mesh the job formed.
pub(crate) struct Job {
    rank: Rank,
    /// Every rank's node, process and endpoints, by rank.
    peers: Vec<Peer>,
    /// How this rank reaches each rank, by rank.
    routes: Vec<Route>,
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
    /// The sends to each rank queued on a scope's lane, which later sends to that rank wait for.
    send_order: SendOrder,
    token: u64,
    config: MeshConfig,
    /// The lost rank's segments were looked for (see [`Job::lost_error`]).
    lost_files_removed: AtomicBool,
}

impl Job {
    /// The number of ranks of the job.
    pub(crate) fn size(&self) -> usize {
        self.peers.len()
    }

    /// Fails unless `rank` is a rank of the job.
    pub(crate) fn check_rank(&self, rank: Rank) -> Result<()> {
        match rank.0 < self.size() {
            true => Ok(()),
            false => Err(out_of_range(rank, self.size())),
        }
    }
}

fn out_of_range(rank: Rank, size: usize) -> Error {
    Error::InvalidArgument(format!("rank {rank} is out of range for a mesh of {size} ranks"))
}

/// A mesh's ranks among the job's: its id, and each of its ranks' rank in the job.
#[derive(Debug)]
struct Group {
    id: GroupId,
    /// The job's rank of each rank of this mesh.
    members: Vec<Rank>,
    /// This mesh's rank of each rank of the job (`u32::MAX` for those outside it).
    of_job: Vec<u32>,
    /// This process's rank in this mesh.
    rank: Rank,
}

impl Group {
    /// The mesh of `members` (the job's ranks, in this mesh's order), among `job_size` ranks, as the
    /// job's rank `me` sees it (a member).
    fn new(id: GroupId, members: Vec<Rank>, job_size: usize, me: Rank) -> Self {
        let mut of_job = vec![u32::MAX; job_size];
        for (rank, member) in members.iter().enumerate() {
            of_job[member.0] = rank as u32;
        }
        let rank = Rank(of_job[me.0] as usize);
        Self { id, members, of_job, rank }
    }

    /// The job's rank of this mesh's `rank` (which must be in range).
    fn job_rank(&self, rank: Rank) -> Rank {
        self.members[rank.0]
    }

    /// This mesh's rank of the job's `rank`, when it is a member.
    fn rank_of(&self, job_rank: Rank) -> Option<Rank> {
        let rank = *self.of_job.get(job_rank.0)?;
        (rank != u32::MAX).then_some(Rank(rank as usize))
    }
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
        let send_order = SendOrder::new(peers.len());
        let job = Job {
            rank,
            links: std::iter::repeat_with(OnceLock::new).take(peers.len()).collect(),
            linking: Mutex::default(),
            peers,
            routes,
            arrivals,
            matching: Mutex::default(),
            untold: Mutex::default(),
            any_untold: AtomicBool::new(false),
            offer_words: OfferWords::default(),
            send_order,
            token,
            config,
            lost_files_removed: AtomicBool::default(),
        };
        let members = (0..job.size()).map(Rank).collect();
        Ok(Self::of_group(Arc::new(job), GroupId::WORLD, members))
    }

    /// The mesh of `members` of `job` (the job's ranks, in this mesh's order), known as `id`.
    fn of_group(job: Arc<Job>, id: GroupId, members: Vec<Rank>) -> Self {
        let group = Group::new(id, members, job.size(), job.rank);
        let topology = Topology::new(group.members.iter().map(|m| &job.peers[m.0].node));
        let routes: Vec<Route> = group.members.iter().map(|m| job.routes[m.0].clone()).collect();
        let every_rank_copies = group.members.iter().all(|m| job.peers[m.0].single_copy);
        let every_rank_shares = group.members.iter().all(|m| job.peers[m.0].shared_memory.is_some());
        Self {
            plan: Plan::new(&job.config, &topology, &routes, every_rank_copies && every_rank_shares),
            topology,
            group,
            job,
            turns: Turns::default(),
            splits: AtomicU64::default(),
        }
    }

    /// This process's rank.
    pub fn rank(&self) -> Rank {
        self.group.rank
    }

    /// The number of ranks.
    pub fn size(&self) -> usize {
        self.group.members.len()
    }

    /// The rank `rank` of this mesh has in the mesh the job formed (the same on that mesh itself):
    /// errors name ranks by it.
    pub fn job_rank(&self, rank: Rank) -> Result<Rank> {
        self.check_rank(rank)?;
        Ok(self.group.job_rank(rank))
    }

    /// The ZeroMQ endpoint rank `rank` announced. It receives there from ranks on other nodes (and from
    /// every rank when ZeroMQ is forced); ranks on its node reach it through shared memory (see
    /// [`Mesh::transport_to`]), and a rank with no peer on another node does not listen there at all.
    pub fn endpoint(&self, rank: Rank) -> Result<&Endpoint> {
        Ok(&self.job.peers[self.job_rank(rank)?.0].zeromq)
    }

    /// The address this rank reaches `rank` at: its shared-memory server (`shm://...`) or its ZeroMQ
    /// endpoint, as [`Mesh::transport_to`] says.
    pub fn address_of(&self, rank: Rank) -> Result<String> {
        Ok(self.job.routes[self.job_rank(rank)?.0].to_string())
    }

    /// The transport this rank reaches `rank` by: [`Transport::SharedMemory`] on one node (unless
    /// [`MeshConfig::same_node`] forces ZeroMQ), [`Transport::ZeroMq`] across nodes.
    pub fn transport_to(&self, rank: Rank) -> Result<Transport> {
        Ok(self.job.routes[self.job_rank(rank)?.0].transport())
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
        self.job.token
    }

    /// How many received messages were dropped as not belonging to this mesh (garbage, another job).
    pub fn rejected_messages(&self) -> u64 {
        crate::sync::lock(&self.job.matching).rejected()
    }

    /// How many messages from `rank` have arrived at this rank so far: point to point, of collectives
    /// (one per message, however many parts it has) and notices. A measure of traffic, as in "one message
    /// per node reaches a gather's root": counted as the messages are taken in from the transport.
    pub fn messages_from(&self, rank: Rank) -> Result<u64> {
        let job_rank = self.job_rank(rank)?;
        Ok(crate::sync::lock(&self.job.matching).arrived_from(job_rank))
    }

    /// The configuration the mesh was formed with.
    pub fn config(&self) -> &MeshConfig {
        &self.job.config
    }

    /// Fails unless `rank` is a rank of the mesh.
    pub(crate) fn check_rank(&self, rank: Rank) -> Result<()> {
        match rank.0 < self.size() {
            true => Ok(()),
            false => Err(out_of_range(rank, self.size())),
        }
    }
}

impl fmt::Debug for Mesh {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Mesh")
            .field("rank", &self.rank())
            .field("size", &self.size())
            .field("address", &self.job.arrivals.address())
            .finish_non_exhaustive()
    }
}
