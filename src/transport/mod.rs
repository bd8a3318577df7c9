//! Clients and servers: the [`Client`] and [`Server`] traits, the [`TransportFactory`], endpoints and
//! options.
//!
//! # The contract every transport provides
//!
//! Written down so that a second transport (shared memory on one node) is held to the same promises as
//! ZeroMQ, and so that the layers above need nothing else:
//!
//! - **A client** sends one message atomically (all of its bulks or none), within its send timeout; a send
//!   that fails hands owned bulks back untouched; dropping it waits at most its `linger`.
//! - **A server** turns whatever arrived into a [`Received`] through `Received::accept` alone, so every
//!   message of every transport passes the same `wire` checks, the same [`Options`] limits and the same
//!   [`SharedMemoryAccess`] rule before anything of it reaches the application. A message that fails is
//!   dropped whole and reported; the next receive reads the next message.
//! - **Waits are bounded**: a receive waits no longer than its timeout, also while another thread of the
//!   same server is receiving; nothing waits forever unless the caller asked for it.
//! - **Threads**: a server hands each message to exactly one caller; the two-phase form keeps one pending
//!   message per thread (`two_phase.rs`, shared by every transport, holds that state).
//! - **Errors**: a timeout is [`crate::Error::Timeout`], a taken address [`crate::Error::AddressInUse`],
//!   the transport's own failures [`crate::Error::Transport`] naming the endpoint.

#![forbid(unsafe_code)]

mod endpoint;
mod parts;
mod payload;
mod received;
pub mod same_node;
mod two_phase;
pub mod zmq;

use std::time::Duration;

pub use self::endpoint::{Endpoint, Protocol};
pub use self::payload::Payload;
pub(crate) use self::received::Limits;
pub use self::received::Received;
pub use self::same_node::{SharedMemoryClient, SharedMemoryServer, ShmOptions, SingleCopies};
pub use self::zmq::{ZeroMqClient, ZeroMqServer};
use crate::bulk::{Bulk, BulkFlags};
use crate::error::Result;
use crate::event::Event;
use crate::meta::Metadata;
use crate::shm::{FullPtr, ShmPtr};

/// The transports Lightbeam can use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Transport {
    /// ZeroMQ PUSH/PULL sockets over tcp, ipc or inproc.
    ZeroMq,
    /// A queue in shared memory, for processes of one node (protocol `"shm"`): see [`same_node`].
    SharedMemory,
}

/// Socket settings shared by clients and servers, and the limits a server holds every peer to.
/// `Options::default()` suits bulk traffic; change what you need with the `with_` methods, as in
/// `Options::default().with_send_timeout(None)`.
///
/// What one peer can make a server hold (docs/RELIABILITY.md has the measured figures): at most
/// `high_water_mark` whole messages queued per connection, each at most `max_message_size` bytes and
/// `max_bulks` bulk frames, plus the one message being read off the connection.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Options {
    /// How long a send may wait for a peer to take the message (no peer connected, or the peer's queue
    /// full) before it fails with [`crate::Error::Timeout`]. `None` waits forever. Default 30 s.
    pub send_timeout: Option<Duration>,
    /// How long dropping a client may spend delivering messages still queued (default 5 s); what is still
    /// queued after that is dropped. Raise it when a client is dropped right after sending gigabytes.
    pub linger: Duration,
    /// Messages queued per peer before a send waits (ZeroMQ's high-water mark), on both sides. Default 1000.
    pub high_water_mark: i32,
    /// The largest message a server accepts, in bytes: its header plus every bulk, descriptor-only bulks
    /// included. A frame larger than this disconnects its sender before anything is allocated for it
    /// (ZeroMQ's `MAXMSGSIZE`); a message whose sizes add up to more is dropped whole with
    /// [`crate::Error::LimitExceeded`], so no size above it ever reaches the application. `None` accepts
    /// any size (only for trusted peers). Default [`DEFAULT_MAX_MESSAGE_SIZE`] (4 GiB).
    pub max_message_size: Option<u64>,
    /// The most bulks one message may carry (and so bulk frames). A message with more is dropped whole
    /// with [`crate::Error::LimitExceeded`]. Default 1024.
    pub max_bulks: usize,
    /// Which descriptor-only bulks ([`BulkFlags::EXPOSE`]) a server resolves. Default: none (a message
    /// with one is dropped with [`crate::Error::SharedMemoryRefused`]).
    pub shared_memory: SharedMemoryAccess,
}

/// The default of [`Options::max_message_size`]: 4 GiB.
pub const DEFAULT_MAX_MESSAGE_SIZE: u64 = 4 << 30;

impl Default for Options {
    fn default() -> Self {
        Self {
            send_timeout: Some(Duration::from_secs(30)),
            linger: Duration::from_secs(5),
            high_water_mark: 1000,
            max_message_size: Some(DEFAULT_MAX_MESSAGE_SIZE),
            max_bulks: 1024,
            shared_memory: SharedMemoryAccess::none(),
        }
    }
}

impl Options {
    /// With [`Options::send_timeout`] set to `timeout`.
    pub fn with_send_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.send_timeout = timeout;
        self
    }

    /// With [`Options::linger`] set to `linger`.
    pub fn with_linger(mut self, linger: Duration) -> Self {
        self.linger = linger;
        self
    }

    /// With [`Options::high_water_mark`] set to `messages`.
    pub fn with_high_water_mark(mut self, messages: i32) -> Self {
        self.high_water_mark = messages;
        self
    }

    /// With [`Options::max_message_size`] set to `bytes`.
    pub fn with_max_message_size(mut self, bytes: Option<u64>) -> Self {
        self.max_message_size = bytes;
        self
    }

    /// With [`Options::max_bulks`] set to `bulks`.
    pub fn with_max_bulks(mut self, bulks: usize) -> Self {
        self.max_bulks = bulks;
        self
    }

    /// With [`Options::shared_memory`] set to `access`.
    pub fn with_shared_memory(mut self, access: SharedMemoryAccess) -> Self {
        self.shared_memory = access;
        self
    }

    pub(crate) fn limits(&self, protocol: Protocol) -> Limits {
        Limits {
            max_message_size: self.max_message_size.unwrap_or(u64::MAX),
            max_bulks: self.max_bulks,
            shared_memory: self.shared_memory.clone(),
            protocol,
        }
    }
}

/// Which descriptor-only bulks a server may resolve: the shared memory a peer may make it read.
///
/// A descriptor-only bulk is a segment name and an offset; resolving it reads memory of this node that the
/// *peer* chose. So a server resolves one only when its owner allowed that segment (by name prefix, for
/// example the prefix its own job gives its segments), only over ipc and inproc unless tcp is allowed too
/// (a tcp peer may be anywhere), and only wholly inside one live allocation of the segment (never the
/// allocator's own state). Everything else is refused with [`crate::Error::SharedMemoryRefused`] before the
/// message reaches the application.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct SharedMemoryAccess {
    /// Segment name prefixes the server may read; empty refuses every descriptor-only bulk.
    pub segment_prefixes: Vec<String>,
    /// Also accept descriptor-only bulks from tcp peers. Default false.
    pub over_tcp: bool,
}

impl SharedMemoryAccess {
    /// Refuse every descriptor-only bulk (the default).
    pub fn none() -> Self {
        Self::default()
    }

    /// Allow segments whose names start with `prefix` (over ipc and inproc).
    pub fn segments(prefix: impl Into<String>) -> Self {
        Self { segment_prefixes: vec![prefix.into()], over_tcp: false }
    }

    /// Also allow segments whose names start with `prefix`.
    pub fn and_segments(mut self, prefix: impl Into<String>) -> Self {
        self.segment_prefixes.push(prefix.into());
        self
    }

    /// Also accept descriptor-only bulks from tcp peers (whose process may be on another node, or hostile).
    pub fn over_tcp(mut self) -> Self {
        self.over_tcp = true;
        self
    }

    /// True when `segment` starts with an allowed prefix.
    pub fn allows(&self, segment: &str) -> bool {
        self.segment_prefixes.iter().any(|prefix| segment.starts_with(prefix.as_str()))
    }
}

/// The sending side: exposes memory as bulks and sends messages to one server.
///
/// One client may be used from several threads at once; each `send` goes out whole.
pub trait Client: Send + Sync + std::fmt::Debug {
    /// Exposes `data` for sending. Nothing moves until [`Client::send`].
    fn expose<'a>(&self, data: &'a [u8], flags: BulkFlags) -> Bulk<'a> {
        Bulk::source(data, flags)
    }

    /// Gives `data` to the message without a copy: the first send moves it into ZeroMQ, which frees it once
    /// sent. Use it for buffers you do not need again; [`Client::expose`] copies once instead.
    fn expose_owned(&self, data: Vec<u8>, flags: BulkFlags) -> Bulk<'static> {
        Bulk::owned(data, flags)
    }

    /// Exposes a shared-memory region for sending: by value, or as its pointer alone with
    /// [`BulkFlags::EXPOSE`] (for receivers on this node).
    fn expose_shm(&self, region: FullPtr, flags: BulkFlags) -> Bulk<'static> {
        Bulk::shared_source(region, flags)
    }

    /// Exposes `size` bytes at a shared-memory pointer for sending, mapping its segment if needed.
    fn expose_shm_ptr(&self, pointer: &ShmPtr, size: usize, flags: BulkFlags) -> Result<Bulk<'static>> {
        Ok(Bulk::shared_source(pointer.resolve(size)?, flags))
    }

    /// Sends the metadata and every bulk as one message. Blocks at most for the send timeout.
    ///
    /// The returned event is done; its `bytes_transferred` is the sum of the bulk sizes.
    fn send(&self, meta: &dyn Metadata) -> Event;

    /// The endpoint this client sends to.
    fn address(&self) -> &str;
}

/// The receiving side: whole messages ([`Server::recv_message`]), or the C++ guide's two-phase receive of
/// metadata, then bulks.
///
/// One server may be used from several threads at once. [`Server::recv_message`] hands each message, whole,
/// to one caller. In the two-phase form, the message whose metadata a thread received stays pending for
/// **that thread** until it calls `recv_bulks`, `take_bulks` or `discard_pending`, so threads sharing a
/// server never read each other's bulks.
pub trait Server: Send + Sync + std::fmt::Debug {
    /// Exposes `buffer` to receive a bulk into.
    fn expose<'a>(&self, buffer: &'a mut [u8], flags: BulkFlags) -> Bulk<'a> {
        Bulk::destination(buffer, flags)
    }

    /// Exposes a shared-memory region to receive a bulk into.
    fn expose_shm(&self, region: FullPtr, flags: BulkFlags) -> Bulk<'static> {
        Bulk::shared_destination(region, flags)
    }

    /// Exposes `size` bytes at a shared-memory pointer to receive into, mapping its segment if needed.
    fn expose_shm_ptr(&self, pointer: &ShmPtr, size: usize, flags: BulkFlags) -> Result<Bulk<'static>> {
        Ok(Bulk::shared_destination(pointer.resolve(size)?, flags))
    }

    /// Receives the next message whole, waiting up to `timeout` (zero: only what is already here); fails
    /// with [`crate::Error::Timeout`] when nothing came. The message has passed every check (wire format,
    /// [`Options`] limits, [`SharedMemoryAccess`]); a message that fails one is dropped whole and reported,
    /// and the next call reads the next message.
    fn recv_message(&self, timeout: Duration) -> Result<Received>;

    /// Receives the next message's metadata without blocking: the event is not done when nothing waits.
    ///
    /// On success `meta.bulks` holds one descriptor per bulk (size and flags), and `meta.custom` the sender's
    /// fields; `bytes_transferred` is the length of the metadata frame. The message stays pending for this
    /// thread. A malformed message is dropped whole and reported as an error, so the next call reads the
    /// next message cleanly.
    fn recv_metadata(&self, meta: &mut dyn Metadata) -> Event {
        self.recv_metadata_timeout(meta, Duration::ZERO)
    }

    /// As [`Server::recv_metadata`], waiting up to `timeout` for a message. When nothing came the event is
    /// not done, and [`Event::into_result`] turns it into [`crate::Error::Timeout`].
    fn recv_metadata_timeout(&self, meta: &mut dyn Metadata, timeout: Duration) -> Event;

    /// Copies this thread's pending message's bulks into the buffers exposed in `meta.bulks` (one per bulk,
    /// each at least the bulk's size). The message is consumed either way, as MPI consumes a truncated
    /// message.
    fn recv_bulks(&self, meta: &mut dyn Metadata) -> Event;

    /// Takes this thread's pending message's bulks sent by value, as received, without copying them.
    /// Descriptor-only bulks are read in place through `meta.bulks[i].location()` instead.
    fn take_bulks(&self) -> Result<Vec<Payload>>;

    /// Drops this thread's pending message, if any, and returns how many bulks it had.
    fn discard_pending(&self) -> usize;

    /// The bound endpoint, with the real port when port 0 was asked for.
    fn address(&self) -> &str;
}

/// What each transport's server provides; [`Server`] is built on it once, for every transport, so that
/// all of them turn frames into messages (`Received::accept`) and keep the two-phase state alike.
pub(crate) trait FrameSource: Send + Sync + std::fmt::Debug {
    /// Every frame of the next message, waiting up to `timeout`; `None` when nothing came.
    fn recv_frames(&self, timeout: Duration) -> Result<Option<Vec<Payload>>>;
    /// What the server accepts from its peers.
    fn limits(&self) -> &Limits;
    /// The server's two-phase state.
    fn two_phase(&self) -> &two_phase::TwoPhase;
    /// The bound endpoint.
    fn address(&self) -> &str;
}

impl<T: FrameSource> Server for T {
    fn recv_message(&self, timeout: Duration) -> Result<Received> {
        let frames = self.recv_frames(timeout)?.ok_or(crate::Error::Timeout {
            op: "receive (nothing arrived)",
            after: timeout,
            peer: None,
        })?;
        Received::accept(frames, self.limits())
    }

    fn recv_metadata_timeout(&self, meta: &mut dyn Metadata, timeout: Duration) -> Event {
        self.two_phase().recv_metadata(meta, timeout, |timeout| self.recv_message(timeout))
    }

    fn recv_bulks(&self, meta: &mut dyn Metadata) -> Event {
        self.two_phase().recv_bulks(meta)
    }

    fn take_bulks(&self) -> Result<Vec<Payload>> {
        self.two_phase().take_bulks()
    }

    fn discard_pending(&self) -> usize {
        self.two_phase().discard()
    }

    fn address(&self) -> &str {
        FrameSource::address(self)
    }
}

/// Makes clients and servers by transport, as the C++ `TransportFactory` does.
#[derive(Debug)]
pub struct TransportFactory;

impl TransportFactory {
    /// A client sending to `addr` over `protocol` (`"tcp"`, `"ipc"`, `"inproc"`; `"shm"` for
    /// [`Transport::SharedMemory`]) at `port`, with default options.
    pub fn client(addr: &str, transport: Transport, protocol: &str, port: u16) -> Result<Box<dyn Client>> {
        if transport == Transport::SharedMemory {
            let options = (Options::default(), ShmOptions::default());
            return Ok(Box::new(SharedMemoryClient::connect(addr, protocol, port, &options.0, &options.1)?));
        }
        Self::client_with(&Endpoint::new(addr, protocol, port)?, transport, &Options::default())
    }

    /// A server bound at `addr` over `protocol` at `port` (0: any free port; for `"shm"`, a unique name),
    /// with default options.
    pub fn server(addr: &str, transport: Transport, protocol: &str, port: u16) -> Result<Box<dyn Server>> {
        if transport == Transport::SharedMemory {
            let options = (Options::default(), ShmOptions::default());
            return Ok(Box::new(SharedMemoryServer::bind(addr, protocol, port, &options.0, &options.1)?));
        }
        Self::server_with(&Endpoint::new(addr, protocol, port)?, transport, &Options::default())
    }

    /// A client for `endpoint` with the given options. [`Transport::SharedMemory`] takes no [`Endpoint`]
    /// (its protocols are ZeroMQ's): use [`SharedMemoryClient::connect`].
    pub fn client_with(
        endpoint: &Endpoint,
        transport: Transport,
        options: &Options,
    ) -> Result<Box<dyn Client>> {
        match transport {
            Transport::ZeroMq => Ok(Box::new(ZeroMqClient::connect(endpoint, options)?)),
            Transport::SharedMemory => Err(shm_needs_its_scheme()),
        }
    }

    /// A server for `endpoint` with the given options. [`Transport::SharedMemory`] takes no [`Endpoint`]:
    /// use [`SharedMemoryServer::bind`].
    pub fn server_with(
        endpoint: &Endpoint,
        transport: Transport,
        options: &Options,
    ) -> Result<Box<dyn Server>> {
        match transport {
            Transport::ZeroMq => Ok(Box::new(ZeroMqServer::bind(endpoint, options)?)),
            Transport::SharedMemory => Err(shm_needs_its_scheme()),
        }
    }
}

/// The error for a shared-memory transport asked for with an [`Endpoint`], whose protocols are ZeroMQ's.
fn shm_needs_its_scheme() -> crate::Error {
    crate::Error::InvalidArgument(
        "the shared-memory transport takes \"shm\" addresses: use TransportFactory::server or client with \
         protocol \"shm\", or SharedMemoryServer::bind and SharedMemoryClient::connect with options"
            .into(),
    )
}
