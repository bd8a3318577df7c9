//! Clients and servers: the [`Client`] and [`Server`] traits, the [`TransportFactory`], endpoints and options.

#![forbid(unsafe_code)]

mod endpoint;
mod inbox;
pub mod zmq;

use std::time::Duration;

pub use self::endpoint::{Endpoint, Protocol};
pub use self::zmq::{ZeroMqClient, ZeroMqServer};
use crate::bulk::{Bulk, BulkFlags};
use crate::error::Result;
use crate::event::Event;
use crate::meta::Metadata;
use crate::shm::{FullPtr, ShmPtr};

/// The transports Lightbeam can use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Transport {
    /// ZeroMQ PUSH/PULL sockets over tcp, ipc or inproc.
    ZeroMq,
}

/// Socket settings shared by clients and servers. `Options::default()` suits bulk traffic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    /// How long a send may wait for a peer to take the message (no peer connected, or the peer's queue
    /// full) before it fails with [`crate::Error::Timeout`]. `None` waits forever. Default 30 s.
    pub send_timeout: Option<Duration>,
    /// How long dropping a client may spend delivering messages still queued (default 5 s); what is still
    /// queued after that is dropped. Raise it when a client is dropped right after sending gigabytes.
    pub linger: Duration,
    /// Messages queued per peer before a send waits (ZeroMQ's high-water mark). Default 1000.
    pub high_water_mark: i32,
    /// The largest message a server accepts, in bytes (ZeroMQ's `MAXMSGSIZE`): a peer announcing a larger
    /// frame is disconnected before anything is allocated for it. `None` (the default) accepts any size.
    pub max_message_size: Option<u64>,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            send_timeout: Some(Duration::from_secs(30)),
            linger: Duration::from_secs(5),
            high_water_mark: 1000,
            max_message_size: None,
        }
    }
}

/// A received bulk payload, read in place without copying it into a buffer of yours.
pub struct Payload(::zmq::Message);

impl std::ops::Deref for Payload {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.0
    }
}

impl std::fmt::Debug for Payload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Payload({} bytes)", self.len())
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

/// The receiving side: the two-phase receive of metadata, then bulks.
///
/// One server may be used from several threads at once; each call is atomic. The message whose metadata
/// was received stays pending until `recv_bulks`, `take_bulks` or `discard_pending`.
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

    /// Receives the next message's metadata without blocking: the event is not done when nothing waits.
    ///
    /// On success `meta.bulks` holds one descriptor per bulk (size and flags), and `meta.custom` the sender's
    /// fields; `bytes_transferred` is the length of the metadata frame. A malformed message is dropped whole
    /// and reported as an error, so the next call reads the next message cleanly.
    fn recv_metadata(&self, meta: &mut dyn Metadata) -> Event {
        self.recv_metadata_timeout(meta, Duration::ZERO)
    }

    /// As [`Server::recv_metadata`], waiting up to `timeout` for a message; a timeout is a pending event.
    fn recv_metadata_timeout(&self, meta: &mut dyn Metadata, timeout: Duration) -> Event;

    /// Copies the pending message's bulks into the buffers exposed in `meta.bulks` (one per bulk, each at
    /// least the bulk's size). Descriptor-only bulks are copied from their shared segment, which must be
    /// mappable here (on this node); if it is not, the call fails naming the segment. The message is
    /// consumed either way, as MPI consumes a truncated message.
    fn recv_bulks(&self, meta: &mut dyn Metadata) -> Event;

    /// Takes the pending message's bulks sent by value, as received, without copying them anywhere.
    /// Descriptor-only bulks are read in place through `meta.bulks[i].location()` instead.
    fn take_bulks(&self) -> Result<Vec<Payload>>;

    /// Drops the pending message, if any, and returns how many bulks it had.
    fn discard_pending(&self) -> usize;

    /// The bound endpoint, with the real port when port 0 was asked for.
    fn address(&self) -> &str;
}

/// Makes clients and servers by transport, as the C++ `TransportFactory` does.
#[derive(Debug)]
pub struct TransportFactory;

impl TransportFactory {
    /// A client sending to `addr` over `protocol` (`"tcp"`, `"ipc"`, `"inproc"`) at `port`, with default options.
    pub fn client(addr: &str, transport: Transport, protocol: &str, port: u16) -> Result<Box<dyn Client>> {
        Self::client_with(&Endpoint::new(addr, protocol, port)?, transport, &Options::default())
    }

    /// A server bound at `addr` over `protocol` at `port` (0: any free port), with default options.
    pub fn server(addr: &str, transport: Transport, protocol: &str, port: u16) -> Result<Box<dyn Server>> {
        Self::server_with(&Endpoint::new(addr, protocol, port)?, transport, &Options::default())
    }

    /// A client for `endpoint` with the given options.
    pub fn client_with(
        endpoint: &Endpoint,
        transport: Transport,
        options: &Options,
    ) -> Result<Box<dyn Client>> {
        match transport {
            Transport::ZeroMq => Ok(Box::new(ZeroMqClient::connect(endpoint, options)?)),
        }
    }

    /// A server for `endpoint` with the given options.
    pub fn server_with(
        endpoint: &Endpoint,
        transport: Transport,
        options: &Options,
    ) -> Result<Box<dyn Server>> {
        match transport {
            Transport::ZeroMq => Ok(Box::new(ZeroMqServer::bind(endpoint, options)?)),
        }
    }
}
