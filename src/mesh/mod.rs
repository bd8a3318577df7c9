//! The MPI mesh: every rank's server and a link to each peer made on first use, messaging by rank and
//! tag, and collectives on top. MPI is used only to start up (to learn where every rank is).
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

#![forbid(unsafe_code)]

mod bootstrap;
mod by_node;
pub mod collectives;
mod envelope;
mod in_call;
mod inbox;
mod link;
mod mailbox;
mod progress;
mod shared_broadcast;
mod single_copy;
mod topology;

use std::fmt;
use std::sync::{Arc, Mutex, Once};
use std::time::{Duration, Instant};

use mpi::traits::Communicator;

use self::bootstrap::Peer;
pub use self::bootstrap::HOST_ENV;
use self::envelope::{Channel, Envelope};
use self::inbox::Inbox;
use self::link::{Link, Route};
use self::mailbox::{Incoming, Loss, Mailbox, Receive, Want};
pub use self::topology::Node;
use self::topology::Topology;
use crate::bulk::Bulk;
use crate::error::{Error, Result};
use crate::meta::LbmMeta;
use crate::transport::same_node::Watch;
use crate::transport::{Endpoint, Options, Payload, Protocol, Transport};

/// The environment variable that sets the default of [`MeshConfig::same_node`]: `zeromq` forces ZeroMQ
/// between ranks of one node, `shm` (or nothing) lets them use shared memory.
pub const SAME_NODE_ENV: &str = "LIGHTBEAM_SAME_NODE";

/// The environment variable that sets the default of [`MeshConfig::single_copy`]: `0` (or `false`,
/// `no`) turns single copies between ranks of one node off.
pub const SINGLE_COPY_ENV: &str = "LIGHTBEAM_SINGLE_COPY";

/// How long a rank that failed in a collective waits for each peer to take its failure notice.
const FAILURE_NOTICE_WAIT: Duration = Duration::from_millis(200);

/// A process's rank in the mesh (its MPI rank). It displays as its number alone: `format!("rank {r}")`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Rank(pub usize);

impl fmt::Display for Rank {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// A message tag chosen by the application; messages match by source and tag.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct Tag(pub u32);

/// Where a receive takes its message from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// Only from this rank.
    Rank(Rank),
    /// From whichever rank sends first.
    Any,
}

impl Source {
    fn admits(self, rank: Rank) -> bool {
        self == Self::Any || self == Self::Rank(rank)
    }
}

impl From<Rank> for Source {
    fn from(rank: Rank) -> Self {
        Self::Rank(rank)
    }
}

/// How a mesh forms and how long it waits. Start from `MeshConfig::default()` and change what you need
/// with the `with_` methods, as in `MeshConfig::default().with_timeout(Duration::from_secs(10))`.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct MeshConfig {
    /// Rank r binds `base_port + r`; 0 (the default) lets every rank take any free port, so that several
    /// jobs can share a node.
    pub base_port: u16,
    /// `Tcp` (the default) between nodes, or `Ipc` when every rank is on one node.
    pub protocol: Protocol,
    /// The address to bind and announce; `None` resolves this machine's host name. The environment
    /// variable [`HOST_ENV`] (`LIGHTBEAM_HOST`) overrides both, for nodes with several interfaces. Either
    /// may be an IP address, a host name, or a subnet such as `10.1.0.0/16`: this node's address in it.
    pub host: Option<String>,
    /// How long any receive (and every step of a collective) waits before failing. Default 60 s.
    pub timeout: Duration,
    /// Socket options of every client and server. The default queues at most 16 messages per peer and
    /// direction (not ZeroMQ's 1000): with 1 MiB broadcast pieces a relaying rank holds at most about
    /// 32 MiB in flight, so a 256 MiB broadcast peaks under 256 + 50 MiB per rank (measured, with the
    /// process's own 16 MiB) instead of twice the buffer. 8 saves another 16 MiB but halves the rate of
    /// small messages; 32 costs 30 MiB more for no gain in speed.
    pub options: Options,
    /// Install a panic hook that aborts the whole MPI job, so that a panic on one rank does not leave the
    /// others waiting. Default true.
    pub abort_on_panic: bool,
    /// Broadcasts of this many bytes or more use the pipelined chain, smaller ones the binomial tree.
    /// Default [`collectives::PIPELINE_THRESHOLD`]. Only the root's value matters.
    pub pipeline_threshold: usize,
    /// The piece size of the pipelined chain. Default [`collectives::CHUNK_SIZE`].
    pub chunk_size: usize,
    /// How ranks on one node talk: [`Transport::SharedMemory`] (the default; no socket, no I/O thread,
    /// large bulks copied once) or [`Transport::ZeroMq`] (every rank over its tcp or ipc server, for
    /// comparison or as an escape hatch). Ranks on different nodes always use ZeroMQ. The environment
    /// variable [`SAME_NODE_ENV`] (`LIGHTBEAM_SAME_NODE=zeromq`) sets the default, so a job can be
    /// switched without rebuilding it. Ranks use shared memory only where both sides allow it.
    pub same_node: Transport,
    /// Let ranks of one node copy straight from each other's memory (`process_vm_readv`: large bulks,
    /// and a broadcast's readers from the root's buffer). `false` sends every byte through the same-node
    /// transport's rings instead, as happens by itself where the kernel refuses such copies (ptrace
    /// rules, some containers). Default true, or [`SINGLE_COPY_ENV`].
    pub single_copy: bool,
}

impl Default for MeshConfig {
    fn default() -> Self {
        Self {
            base_port: 0,
            protocol: Protocol::Tcp,
            host: None,
            timeout: Duration::from_secs(60),
            options: Options { high_water_mark: 16, ..Options::default() },
            abort_on_panic: true,
            pipeline_threshold: collectives::PIPELINE_THRESHOLD,
            chunk_size: collectives::CHUNK_SIZE,
            same_node: same_node_default(),
            single_copy: !std::env::var(SINGLE_COPY_ENV)
                .is_ok_and(|v| ["0", "false", "no"].contains(&v.trim().to_ascii_lowercase().as_str())),
        }
    }
}

impl MeshConfig {
    /// The same-node transport's settings of a mesh's clients and servers: no single copy when it is off.
    fn shm_options(&self) -> crate::transport::ShmOptions {
        let offers = self.single_copy.then_some(crate::transport::same_node::DEFAULT_SINGLE_COPY_FROM);
        crate::transport::ShmOptions::default().with_single_copy_from(offers)
    }
}

/// The default of [`MeshConfig::same_node`]: shared memory unless [`SAME_NODE_ENV`] says `zeromq`.
fn same_node_default() -> Transport {
    match std::env::var(SAME_NODE_ENV).ok().as_deref().map(str::trim) {
        Some(value) if value.eq_ignore_ascii_case("zeromq") || value.eq_ignore_ascii_case("zmq") => {
            Transport::ZeroMq
        }
        Some(value) if !value.is_empty() && !value.eq_ignore_ascii_case("shm") => {
            log::warn!("lightbeam: {SAME_NODE_ENV}={value:?} is neither 'zeromq' nor 'shm'; using shm");
            Transport::SharedMemory
        }
        _ => Transport::SharedMemory,
    }
}

impl MeshConfig {
    /// With [`MeshConfig::base_port`] set to `port`.
    pub fn with_base_port(mut self, port: u16) -> Self {
        self.base_port = port;
        self
    }

    /// With [`MeshConfig::protocol`] set to `protocol`.
    pub fn with_protocol(mut self, protocol: Protocol) -> Self {
        self.protocol = protocol;
        self
    }

    /// With [`MeshConfig::host`] set to `host`.
    pub fn with_host(mut self, host: impl Into<String>) -> Self {
        self.host = Some(host.into());
        self
    }

    /// With [`MeshConfig::timeout`] set to `timeout`.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// With [`MeshConfig::options`] set to `options`.
    pub fn with_options(mut self, options: Options) -> Self {
        self.options = options;
        self
    }

    /// With [`MeshConfig::abort_on_panic`] set to `abort`.
    pub fn with_abort_on_panic(mut self, abort: bool) -> Self {
        self.abort_on_panic = abort;
        self
    }

    /// With [`MeshConfig::pipeline_threshold`] set to `bytes`.
    pub fn with_pipeline_threshold(mut self, bytes: usize) -> Self {
        self.pipeline_threshold = bytes;
        self
    }

    /// With [`MeshConfig::chunk_size`] set to `bytes`.
    pub fn with_chunk_size(mut self, bytes: usize) -> Self {
        self.chunk_size = bytes;
        self
    }

    /// With [`MeshConfig::same_node`] set to `transport`.
    pub fn with_same_node(mut self, transport: Transport) -> Self {
        self.same_node = transport;
        self
    }

    /// With [`MeshConfig::single_copy`] set to `allowed`.
    pub fn with_single_copy(mut self, allowed: bool) -> Self {
        self.single_copy = allowed;
        self
    }
}

/// A received point-to-point message: where it came from, its tag, and its bytes in place.
#[derive(Debug)]
pub struct Message {
    source: Rank,
    tag: Tag,
    payload: Option<Payload>,
}

impl Message {
    /// The sending rank.
    pub fn source(&self) -> Rank {
        self.source
    }

    /// The message's tag.
    pub fn tag(&self) -> Tag {
        self.tag
    }

    /// The bytes received, read in place.
    pub fn data(&self) -> &[u8] {
        self.payload.as_deref().unwrap_or_default()
    }
}

/// A rank-indexed mesh of Lightbeam servers and links, formed once per job with [`Mesh::bootstrap`].
pub struct Mesh {
    rank: Rank,
    /// Every rank's node and endpoints, by rank.
    peers: Vec<Peer>,
    /// How this rank reaches each rank, by rank.
    routes: Vec<Route>,
    topology: Topology,
    inbox: Inbox,
    /// The link to each peer, made on first use.
    links: Mutex<Vec<Option<Arc<Link>>>>,
    mailbox: Mutex<Mailbox>,
    /// Mismatches found while a send waited, for the other ranks to be told once it returned.
    untold: Mutex<Vec<self::envelope::Mismatch>>,
    /// A rank was refused a copy from this rank's memory: broadcasts from here take the chain.
    readers_refused: std::sync::atomic::AtomicBool,
    /// The words that say which offer this rank's call is in, and those of the ranks it read from.
    call_words: in_call::CallWords,
    token: u64,
    config: MeshConfig,
    collective_sequence: std::sync::atomic::AtomicU64,
    /// The lost rank's segments were looked for (see [`Mesh::lost_error`]).
    lost_files_removed: std::sync::atomic::AtomicBool,
}

impl Mesh {
    /// Forms the mesh over `comm`'s ranks: each binds its server, and a record of each rank (its node and
    /// its endpoints) is all-gathered.
    ///
    /// Collective over `comm`: every rank must call it. When any rank fails to bind (its port taken, its
    /// host unresolvable), every rank returns an error naming the failed ranks and their reasons.
    pub fn bootstrap<C: Communicator>(comm: &C, config: MeshConfig) -> Result<Self> {
        if config.abort_on_panic {
            abort_job_on_panic();
        }
        let (bound, peers, token) = bootstrap::bind_and_gather(comm, &config)?;
        let rank = Rank(comm.rank() as usize);
        let routes = bootstrap::routes(&peers, rank.0);
        // Each server is kept only if some rank (this one included) reaches this rank through it.
        let uses = |transport| routes.iter().any(|route| route.transport() == transport);
        let shared_memory = bound.shared_memory.filter(|_| uses(Transport::SharedMemory));
        let zeromq = uses(Transport::ZeroMq).then_some(bound.zeromq);
        let inbox = Inbox::new(shared_memory, zeromq, config.options.high_water_mark as usize)?;
        Ok(Self {
            rank,
            links: Mutex::new(vec![None; peers.len()]),
            topology: Topology::new(peers.iter().map(|peer| &peer.node)),
            peers,
            routes,
            inbox,
            mailbox: Mutex::default(),
            untold: Mutex::default(),
            readers_refused: Default::default(),
            call_words: Default::default(),
            token,
            config,
            collective_sequence: Default::default(),
            lost_files_removed: Default::default(),
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
        crate::sync::lock(&self.mailbox).rejected()
    }

    /// How many messages from `rank` have arrived at this rank so far: point to point, of collectives
    /// (one per message, however many parts it has) and notices. A measure of traffic, as in "one message
    /// per node reaches a gather's root": counted as the messages are taken in from the transport.
    pub fn messages_from(&self, rank: Rank) -> Result<u64> {
        self.check_rank(rank)?;
        Ok(crate::sync::lock(&self.mailbox).arrived_from(rank))
    }

    /// The configuration the mesh was formed with.
    pub fn config(&self) -> &MeshConfig {
        &self.config
    }

    /// Sends `data` to `to` with `tag`. Returns once the message is queued; fails after the send timeout
    /// when the peer takes nothing.
    pub fn send(&self, to: Rank, tag: Tag, data: &[u8]) -> Result<()> {
        self.send_on(to, Channel::User(tag), &[data])
    }

    /// As [`Mesh::send`], giving `data` away: it moves into the outgoing message without a copy (a borrowed
    /// slice is copied once, because ZeroMQ sends after the call returns).
    pub fn send_owned(&self, to: Rank, tag: Tag, data: Vec<u8>) -> Result<()> {
        self.send_bulks(to, Channel::User(tag), vec![Bulk::owned(data, Default::default())])
    }

    /// Receives the next message with `tag` from `from`, waiting up to the mesh's timeout.
    pub fn recv(&self, from: Source, tag: Tag) -> Result<Message> {
        self.recv_timeout(from, tag, self.config.timeout)
    }

    /// Receives the next message with `tag` from `from`, waiting up to `timeout`.
    pub fn recv_timeout(&self, from: Source, tag: Tag, timeout: Duration) -> Result<Message> {
        let incoming = self.receive_within(Want::User(tag, from), from, "receive", timeout, None)?;
        Ok(Message { source: incoming.source, tag, payload: incoming.payloads.into_iter().next() })
    }

    /// Receives the next message with `tag` from `from` into `buffer`; returns its source and length.
    /// A message longer than `buffer` is an error (and is consumed, as MPI does).
    pub fn recv_into(&self, from: Source, tag: Tag, buffer: &mut [u8]) -> Result<(Rank, usize)> {
        let message = self.recv(from, tag)?;
        copy_into(message.data(), buffer, message.source)?;
        Ok((message.source, message.data().len()))
    }

    fn check_rank(&self, rank: Rank) -> Result<()> {
        if rank.0 < self.size() {
            Ok(())
        } else {
            Err(Error::InvalidArgument(format!(
                "rank {rank} is out of range for a mesh of {} ranks",
                self.size()
            )))
        }
    }

    /// The link to `to`, made on first use.
    fn link(&self, to: Rank) -> Result<Arc<Link>> {
        self.check_rank(to)?;
        let mut links = crate::sync::lock(&self.links);
        if let Some(link) = &links[to.0] {
            return Ok(Arc::clone(link));
        }
        // A send waits no longer than a receive would.
        let send_timeout =
            self.config.options.send_timeout.map_or(self.config.timeout, |t| t.min(self.config.timeout));
        let options = Options { send_timeout: Some(send_timeout), ..self.config.options.clone() };
        let link = Arc::new(Link::connect(&self.routes[to.0], &options, self.config.shm_options())?);
        links[to.0] = Some(Arc::clone(&link));
        Ok(link)
    }

    fn envelope(&self, channel: Channel, failed: bool) -> Envelope {
        Envelope { token: self.token, source: self.rank.0 as u32, channel: Some(channel), failed }
    }

    fn send_on(&self, to: Rank, channel: Channel, parts: &[&[u8]]) -> Result<()> {
        self.send_bulks(to, channel, parts.iter().map(|p| Bulk::source(p, Default::default())).collect())
    }

    fn send_bulks(&self, to: Rank, channel: Channel, bulks: Vec<Bulk<'_>>) -> Result<()> {
        let link = self.link(to)?;
        let mut meta = LbmMeta::new(self.envelope(channel, false));
        meta.bulks = bulks;
        // While the peer has not taken the message, take in this rank's own: the peer may be sending
        // to this rank at the same time. What goes wrong there is for the next receive to report.
        let mut take_in = || Ok(self.take_in_while_sending(None).unwrap_or(true));
        let sent = link.send(&meta, None, self.watch(&mut take_in));
        self.tell_untold();
        sent.map(drop).map_err(|e| self.send_failed(e, to))
    }

    /// A watch on this rank's shared-memory server (if it has one) that runs `take_in` when it rings.
    fn watch<'w>(&'w self, take_in: &'w mut dyn FnMut() -> Result<bool>) -> Option<Watch<'w>> {
        self.inbox.shared_memory().map(|server| server.watch(take_in))
    }

    /// Takes in, without waiting, what has arrived for this rank, while the messages of later calls
    /// waiting unasked for hold fewer than [`progress::LOOKAHEAD_BYTES`]: what a send does while its peer
    /// has not taken its message (in collective `sequence`, failing on news that ends it). When another
    /// thread holds the mailbox, does nothing: that thread takes the messages in.
    ///
    /// It runs inside a link's send, so it must not send itself (the link is busy): a mismatch it finds
    /// is told to the other ranks by [`Mesh::tell_untold`] once the send returned. Returns whether it
    /// looked (false when another thread held the mailbox).
    fn take_in_while_sending(&self, collective: Option<(u64, &'static str)>) -> Result<bool> {
        let mut mailbox = match self.mailbox.try_lock() {
            Ok(mailbox) => mailbox,
            Err(std::sync::TryLockError::Poisoned(poisoned)) => poisoned.into_inner(),
            Err(std::sync::TryLockError::WouldBlock) => return Ok(false),
        };
        match collective {
            Some((sequence, op)) => self.look_for_news(&mut mailbox, sequence, op, progress::LOOKAHEAD_BYTES),
            // A point-to-point send takes in whatever came: the peer may send this rank many large
            // messages before it receives, as it may over ZeroMQ (which queues them).
            None => self.take(&mut mailbox, (Duration::ZERO, usize::MAX), Want::Notices, "send").map(drop),
        }
        .map(|()| true)
    }

    /// Tells `ranks` that this rank failed in the collective on `channel`, so they fail at once instead of
    /// waiting for their deadline. Best effort: a rank that cannot be told still has its deadline.
    fn report_failure(&self, channel: Channel, ranks: impl Iterator<Item = Rank>, error: &Error) {
        let text = error.to_string();
        for rank in ranks.filter(|&r| r != self.rank) {
            if let Ok(link) = self.link(rank) {
                let mut meta = LbmMeta::new(self.envelope(channel, true));
                meta.bulks.push(Bulk::source(text.as_bytes(), Default::default()));
                // A rank that takes nothing within a moment (lost, or stuck) has its own deadline:
                // waiting the whole send timeout for it would make every other rank learn late.
                let _ = link.send(&meta, Some(FAILURE_NOTICE_WAIT), None);
            }
        }
    }

    /// Names the peer in a point-to-point send's timeout (a collective's sends wait in
    /// [`progress`], where the peer is then taken as lost).
    fn send_failed(&self, error: Error, peer: Rank) -> Error {
        match error {
            Error::Timeout { op, after, .. } => Error::Timeout { op, after, peer: Some(self.describe(peer)) },
            e => e,
        }
    }

    /// True when `rank` runs on this node and its process has ended, as the kernel tells (its pid is
    /// free, a zombie's, or another process's): it is lost for certain. False when that cannot be told
    /// (another node).
    fn gone_from_this_node(&self, rank: Rank) -> bool {
        let (peer, mine) = (&self.peers[rank.0], &self.peers[self.rank.0]);
        peer.node == mine.node && crate::shm::Process { pid: peer.pid, start: peer.start }.is_gone()
    }

    /// After waiting past the deadline for a message of a collective that any of `senders` could have
    /// sent: the news that came meanwhile (a loss another rank found), else the loss of the first of them
    /// whose process on this node is gone, told to every rank; else a timeout after `after` naming them
    /// all (none of them can be told from the others).
    fn give_up_on_one_of(&self, senders: &[Rank], op: &'static str, after: Duration) -> Error {
        let grace = (self.config.timeout / 5).min(Duration::from_millis(200));
        if let Err(news) = self.take_and_tell((grace, usize::MAX), Want::Notices, op) {
            return news;
        }
        if let Some(&gone) = senders.iter().find(|&&rank| self.gone_from_this_node(rank)) {
            return self.give_up_on(gone, op);
        }
        let peer = senders.iter().map(|&r| self.describe(r)).collect::<Vec<_>>().join(" or ");
        Error::Timeout { op, after, peer: Some(peer) }
    }

    /// After waiting past the deadline on `suspect` in a collective: the error naming the rank taken as
    /// lost (see [`Mesh::conclude_loss`]).
    fn give_up_on(&self, suspect: Rank, op: &'static str) -> Error {
        let lost = self.conclude_loss(suspect, op);
        lost.unwrap_or_else(|| self.lost_error(Loss { lost: suspect, reporter: self.rank }, op))
    }

    /// After waiting past the deadline on `suspect` in a collective. The suspect may itself be stuck
    /// behind a lost rank. So this rank first tells every rank that it is stuck waiting for `suspect`
    /// (ranks waiting for this one then look past it), then gives notices a moment (a fifth of the
    /// deadline, at most 200 ms): if a loss is reported meanwhile, that is the error returned. Otherwise
    /// the rank at the end of the chain of waits (the suspect, or the rank the suspect said it waits for,
    /// and so on) is taken as lost and every other rank is told, so that their receives fail at once.
    /// Returns `None` when the suspect itself is taken as lost.
    fn conclude_loss(&self, suspect: Rank, op: &'static str) -> Option<Error> {
        self.tell_others(Channel::WaitingOn(suspect.0 as u32), suspect, Duration::from_millis(50));
        let grace = (self.config.timeout / 5).min(Duration::from_millis(200));
        if let Err(error) = self.take_and_tell((grace, usize::MAX), Want::Notices, op) {
            return Some(error);
        }
        let mut mailbox = crate::sync::lock(&self.mailbox);
        let culprit = mailbox.end_of_wait_chain(suspect);
        mailbox.record_loss(Loss { lost: culprit, reporter: self.rank });
        drop(mailbox);
        self.tell_others(Channel::PeerLost(culprit.0 as u32), culprit, Duration::from_millis(200));
        (culprit != suspect).then(|| Error::PeerLost {
            op,
            rank: culprit.0,
            endpoint: self.routes[culprit.0].to_string(),
            reporter: self.rank.0,
            waited_for: suspect.0,
        })
    }

    /// Receives from the mailbox what `want` asks for, within the timeout of `intake` (taking in messages
    /// from the server while those waiting unasked for hold fewer bytes than its second part: see
    /// [`Mailbox::receive`]). A mismatch this rank finds is kept for [`Mesh::tell_untold`], which the
    /// caller runs once it let the mailbox go (and, inside a send, once the send returned).
    fn take(
        &self,
        mailbox: &mut Mailbox,
        intake: (Duration, usize),
        want: Want,
        op: &'static str,
    ) -> Result<Option<Incoming>> {
        let identity = (self.token, self.size(), self.rank);
        mailbox.receive(&self.inbox, identity, intake, want).map_err(|failure| match failure {
            Receive::Failed(error) => error,
            Receive::Lost(loss) => self.lost_error(loss, op),
            Receive::OutOfStep(mismatch, found_here) => {
                if found_here {
                    crate::sync::lock(&self.untold).push(mismatch);
                }
                mismatch.into()
            }
        })
    }

    /// Locks the mailbox and [`take`](Mesh::take)s from it; then, with the mailbox let go (telling may
    /// wait for a send), tells every other rank of a mismatch found.
    fn take_and_tell(
        &self,
        intake: (Duration, usize),
        want: Want,
        op: &'static str,
    ) -> Result<Option<Incoming>> {
        let mut mailbox = crate::sync::lock(&self.mailbox);
        let taken = self.take(&mut mailbox, intake, want, op);
        drop(mailbox);
        self.tell_untold();
        taken
    }

    /// Receives the next message `want` asks for (from `from`) within `timeout`. When nothing came and
    /// `suspect` names the rank that should have sent, that rank is taken as lost and every other rank is
    /// told, so that their receives fail at once instead of each at its own deadline. (Point-to-point
    /// receives name no suspect: that judgement is the application's.)
    fn receive_within(
        &self,
        want: Want,
        from: Source,
        op: &'static str,
        timeout: Duration,
        suspect: Option<Rank>,
    ) -> Result<Incoming> {
        if let Source::Rank(rank) = from {
            self.check_rank(rank)?;
        }
        let started = Instant::now();
        let received = self.take_and_tell((timeout, usize::MAX), want, op)?;
        if let (None, Some(rank)) = (&received, suspect) {
            return Err(self.give_up_on(rank, op));
        }
        let incoming = received.ok_or_else(|| Error::Timeout {
            op,
            after: started.elapsed(),
            peer: Some(match from {
                Source::Rank(rank) => self.describe(rank),
                Source::Any => "any rank".into(),
            }),
        })?;
        match incoming.failed {
            false => Ok(incoming),
            true => Err(peer_failed(incoming, op)),
        }
    }

    /// Fails if news has come that ends collective `sequence`: a lost rank, ranks out of step (a message
    /// of another call for this or a recent sequence number), a rank's failure in it. Takes in without
    /// waiting what has arrived, while the messages waiting unasked for hold fewer than `hold_at_most`
    /// bytes.
    fn look_for_news(
        &self,
        mailbox: &mut Mailbox,
        sequence: u64,
        op: &'static str,
        hold_at_most: usize,
    ) -> Result<()> {
        let want = Want::Collective(sequence, None);
        match self.take(mailbox, (Duration::ZERO, hold_at_most), want, op)? {
            // Only a failure notice is taken when no source is asked for.
            Some(notice) => Err(peer_failed(notice, op)),
            None => Ok(()),
        }
    }

    /// After a peer left collective `ongoing` early: the news that made it leave when it comes within
    /// [`progress::GONE_GRACE`] (a mismatch, a lost rank, a failure it reported), else `otherwise`.
    fn news_or(&self, ongoing: &progress::Ongoing, otherwise: Error) -> Error {
        let want = Want::Collective(ongoing.sequence(), None);
        match self.take_and_tell((progress::GONE_GRACE, usize::MAX), want, ongoing.op) {
            Err(news) => news,
            Ok(Some(notice)) => peer_failed(notice, ongoing.op),
            Ok(None) => otherwise,
        }
    }

    /// Tells every other rank of the mismatches this rank found and has not told yet.
    fn tell_untold(&self) {
        let untold = std::mem::take(&mut *crate::sync::lock(&self.untold));
        for mismatch in untold {
            self.tell_others(Channel::OutOfStep(mismatch), self.rank, Duration::from_millis(200));
        }
    }

    /// Sends a notice on `channel` to every rank but `about` (and this one). Best effort, waiting at most
    /// `wait` per rank (a connection may have to be made first): a rank that cannot be told still has its
    /// own deadline.
    fn tell_others(&self, channel: Channel, about: Rank, wait: Duration) {
        let notice = LbmMeta::new(self.envelope(channel, false));
        for rank in (0..self.size()).map(Rank).filter(|&r| r != about && r != self.rank) {
            if let Ok(link) = self.link(rank) {
                let _ = link.send(&notice, Some(wait), None);
            }
        }
    }

    /// The error for `loss`. The first time, the lost rank's shared-memory segments are removed when its
    /// process is gone (a killed rank leaves them behind); a mesh loses at most one rank (every call fails
    /// after it).
    fn lost_error(&self, loss: Loss, op: &'static str) -> Error {
        let first_time = !self.lost_files_removed.swap(true, std::sync::atomic::Ordering::Relaxed);
        if first_time && self.gone_from_this_node(loss.lost) {
            bootstrap::remove_segments_of_dead(self.token, loss.lost.0);
        }
        Error::PeerLost {
            op,
            rank: loss.lost.0,
            endpoint: self.routes[loss.lost.0].to_string(),
            reporter: loss.reporter.0,
            waited_for: loss.lost.0,
        }
    }

    fn describe(&self, rank: Rank) -> String {
        format!("rank {rank} ({})", self.routes[rank.0])
    }
}

/// The error a rank's failure notice in a collective makes: the rank and its reason.
fn peer_failed(notice: Incoming, op: &'static str) -> Error {
    let reason = notice.payloads.first().map(|p| String::from_utf8_lossy(p).into_owned());
    Error::PeerFailed { rank: notice.source.0, op, reason: reason.unwrap_or_default() }
}

/// What a receive on `channel` from `from` asks the mailbox for.
fn wanted(channel: Channel, from: Source) -> Want {
    match channel {
        Channel::User(tag) => Want::User(tag, from),
        Channel::Collective(c) => Want::Collective(c.sequence, Some(from)),
        _ => Want::Notices,
    }
}

impl fmt::Debug for Mesh {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Mesh")
            .field("rank", &self.rank)
            .field("size", &self.size())
            .field("address", &self.inbox.address())
            .finish_non_exhaustive()
    }
}

/// Copies a received payload into `buffer`, or says why it does not fit.
fn copy_into(data: &[u8], buffer: &mut [u8], source: Rank) -> Result<()> {
    let capacity = buffer.len();
    let target = buffer.get_mut(..data.len()).ok_or_else(|| {
        Error::InvalidArgument(format!(
            "a {}-byte message from rank {source} does not fit the {capacity}-byte buffer",
            data.len()
        ))
    })?;
    target.copy_from_slice(data);
    Ok(())
}

/// The value of `result`; or, on an error, prints it with this rank's number and aborts the whole MPI job
/// (exit code 1) so that no other rank waits for this one. Meant for the `main` of MPI programs.
pub fn or_abort<T, E: fmt::Display, C: Communicator>(comm: &C, result: std::result::Result<T, E>) -> T {
    result.unwrap_or_else(|error| {
        // One write, so that the lines of ranks sharing mpirun's pipe never interleave mid-line.
        let line = format!("rank {}: {error}\n", comm.rank());
        let _ = std::io::Write::write_all(&mut std::io::stderr(), line.as_bytes());
        comm.abort(1)
    })
}

/// Makes a panic on any thread abort the whole MPI job (after printing the panic), so no rank waits forever.
pub fn abort_job_on_panic() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            previous(info);
            if mpi::environment::is_initialized() && !mpi::environment::is_finalized() {
                mpi::topology::SimpleCommunicator::world().abort(101);
            }
        }));
    });
}
