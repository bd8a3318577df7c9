//! How a mesh forms and how long it waits: [`MeshConfig`], and the environment variables that set its
//! defaults.

#![forbid(unsafe_code)]

use std::time::Duration;

use super::requests::Progress;
use crate::transport::same_node::DEFAULT_SINGLE_COPY_FROM;
use crate::transport::{Options, Protocol, ShmOptions, Transport};

/// The default size from which broadcasts use the pipelined chain; smaller ones use the binomial tree.
pub const PIPELINE_THRESHOLD: usize = 256 << 10;

/// The default piece size of the pipelined chain.
pub const CHUNK_SIZE: usize = 1 << 20;

/// The environment variable that overrides the host a rank binds and announces.
pub const HOST_ENV: &str = "LIGHTBEAM_HOST";

/// The environment variable that sets the default of [`MeshConfig::same_node`]: `zeromq` forces ZeroMQ
/// between ranks of one node, `shm` (or nothing) lets them use shared memory.
pub const SAME_NODE_ENV: &str = "LIGHTBEAM_SAME_NODE";

/// The environment variable that sets the default of [`MeshConfig::single_copy`]: `0` (or `false`,
/// `no`) turns single copies between ranks of one node off.
pub const SINGLE_COPY_ENV: &str = "LIGHTBEAM_SINGLE_COPY";

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
    /// direction (not ZeroMQ's 1000), so that a rank relaying a broadcast holds a few pieces in flight,
    /// not the whole buffer twice (docs/BENCHMARKS.md has the memory measured for 8, 16 and 32).
    pub options: Options,
    /// [`Mesh::bootstrap`](super::Mesh::bootstrap) installs a panic hook that aborts the whole MPI job,
    /// so that a panic on one rank does not leave the others waiting. Default true.
    pub abort_on_panic: bool,
    /// Where the ranks span nodes (or cannot read each other's memory), broadcasts of this many bytes or
    /// more take the pipelined chain and smaller ones the binomial tree. On one node a broadcast below
    /// [`MeshConfig::single_copy_from`] (or this value, if smaller) fans out from the root, and a larger
    /// one is read from the root's buffer. Default
    /// [`PIPELINE_THRESHOLD`]. Only the root's value matters.
    pub pipeline_threshold: usize,
    /// The piece size of the pipelined chain. Default [`CHUNK_SIZE`].
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
    /// The collectives on one node read their chunks in place (one copy, straight from the sender's
    /// buffer) from this size on (a broadcast from 128 KiB at the least), and the bulks the mesh sends
    /// between ranks of one node travel as single copies from this size or [`EAGER_BELOW`], whichever
    /// is larger. Default [`DEFAULT_SINGLE_COPY_FROM`].
    pub single_copy_from: usize,
    /// Who runs the sends and collectives of a [`Scope`](super::Scope) (see [`Mesh::scope`](super::Mesh::scope)):
    /// its lane thread (default), or the thread that waits.
    pub progress: Progress,
}

/// Bulks the mesh sends between ranks of one node (point to point, and the collectives' sent pieces)
/// below this size are copied into the peer's ring at once (eager: the send returns without waiting for
/// the peer, and the next message is on its way while the peer copies this one out), not offered for a
/// single copy, which makes the send wait for the peer. Two copies cost less than that wait up to
/// here, for streams and halo exchanges alike (docs/BENCHMARKS.md, "Small messages").
pub const EAGER_BELOW: usize = 512 << 10;

impl Default for MeshConfig {
    fn default() -> Self {
        Self {
            base_port: 0,
            protocol: Protocol::Tcp,
            host: None,
            timeout: Duration::from_secs(60),
            options: Options { high_water_mark: 16, ..Options::default() },
            abort_on_panic: true,
            pipeline_threshold: PIPELINE_THRESHOLD,
            chunk_size: CHUNK_SIZE,
            same_node: same_node_default(),
            single_copy: !std::env::var(SINGLE_COPY_ENV)
                .is_ok_and(|v| ["0", "false", "no"].contains(&v.trim().to_ascii_lowercase().as_str())),
            single_copy_from: DEFAULT_SINGLE_COPY_FROM,
            progress: Progress::Lane,
        }
    }
}

impl MeshConfig {
    /// The same-node transport's settings of a mesh's clients and servers: no single copy when it is off.
    pub(crate) fn shm_options(&self) -> ShmOptions {
        let from = self.single_copy_from.max(EAGER_BELOW);
        ShmOptions::default().with_single_copy_from(self.single_copy.then_some(from))
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

    /// With [`MeshConfig::progress`] set to `progress`.
    pub fn with_progress(mut self, progress: Progress) -> Self {
        self.progress = progress;
        self
    }

    /// With [`MeshConfig::single_copy_from`] set to `bytes`.
    pub fn with_single_copy_from(mut self, bytes: usize) -> Self {
        self.single_copy_from = bytes;
        self
    }
}
