//! The same-node transport: [`SharedMemoryClient`] and [`SharedMemoryServer`], for processes of one node,
//! with the same two-phase API and contract as ZeroMQ (see the parent module) and no socket or I/O thread.
//!
//! # How bytes move
//!
//! A server creates a segment named after its endpoint, `shm://<name>` (`<name>-<random token>` when
//! bound with port 0, `<name>.<port>` otherwise), holding a queue of 32 channels. Each
//! client claims one channel (multi-producer through channels, one consumer: the server), a byte ring of
//! 512 KiB into which it writes records (`record.rs`):
//!
//! | what | path | copies |
//! | --- | --- | --- |
//! | header frame, bulks below the single-copy threshold | written into the ring, read out into the received frame (pipelined for frames larger than the ring: the server copies out one piece while the client writes the next) | 2 |
//! | bulks from the threshold up ([`ShmOptions::single_copy_from`], default [`DEFAULT_SINGLE_COPY_FROM`]) | offered by address; the server copies them straight from the client's memory with `process_vm_readv` into the received frame, and the client's `send` returns only after the server answered, so a borrowed slice is never read after `send` | 1 |
//! | the same when the kernel refuses single copy (ptrace rules, containers) | the server answers "refused" and the client streams the bytes through the ring, as above, for the rest of the channel's life | 2 |
//! | descriptor-only bulks ([`crate::BulkFlags::EXPOSE`]) | their descriptor travels in the header; the receiver reads the segment, as with ZeroMQ | 0 in transit |
//!
//! # Waiting
//!
//! Both sides spin for at most 20 us (yielding the core every few iterations, so that more
//! processes than cores do not spin against each other), then sleep on a futex word in the segment in
//! slices of at most 50 ms, checking the other process's liveness (pid and start time) between slices.
//! A server waits for a message to begin up to the receive timeout; a message that began must progress
//! at least every [`ShmOptions::stall_timeout`]. A client waits for room or for an answer up to its send
//! timeout. A peer that dies is reported as lost, never waited for until a timeout.
//!
//! # Trust
//!
//! Segments are created owner-only (mode 0600): only processes of the server's own user (and root) can
//! open the segment. Such a process can write anything into it, and it can name any process in a single-copy
//! offer; the server then reads that process's memory with `process_vm_readv`, which the kernel allows
//! only where the server could ptrace it: a process of the same user, which the writer could read itself.
//! Proving that an offer's process is the channel's (a challenge the client must echo from its own memory)
//! is left for the next step. The server copies
//! every record out before decoding it, keeps its own read position, checks every length against its
//! [`crate::Options`] limits before allocating, and hands the frames to `Received::accept` like every
//! transport. A channel holding garbage is given up (its message dropped with an error) and freed when
//! its client leaves. Not covered: a process that truncates the segment's file makes the processes
//! mapping it fault (a sealed memfd would close that), and a hostile process can take every channel.

#![forbid(unsafe_code)]

mod queue;
mod receiver;
mod record;
mod sender;
mod wait;

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use self::queue::{Queue, QUEUE_LEN, SEGMENT_SLACK};
use self::receiver::Receiver;
use self::sender::Sender;
use super::parts::{restore_parts, take_parts};
use super::two_phase::TwoPhase;
use super::{Client, Limits, Options, Payload, Protocol, Received, Server};
use crate::error::{Error, Result, ShmError};
use crate::event::Event;
use crate::meta::Metadata;
use crate::shm::Segment;
use crate::sync::{lock, Slot};
use crate::wire;

/// The scheme of this transport's endpoints.
pub const SCHEME: &str = "shm";

/// The default of [`ShmOptions::single_copy_from`]: bulks of 64 KiB and more go by single copy.
pub const DEFAULT_SINGLE_COPY_FROM: usize = 64 << 10;

/// Settings of the shared-memory transport beside the common [`Options`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ShmOptions {
    /// Client: bulks of at least this many bytes are offered for a single copy (`None`: never).
    /// Server: `None` refuses every offer, so clients fall back to copying through the ring.
    pub single_copy_from: Option<usize>,
    /// Server: how long a message that began may go without progress before it is dropped. Default 10 s.
    pub stall_timeout: Duration,
}

impl Default for ShmOptions {
    fn default() -> Self {
        Self { single_copy_from: Some(DEFAULT_SINGLE_COPY_FROM), stall_timeout: Duration::from_secs(10) }
    }
}

impl ShmOptions {
    /// With [`ShmOptions::single_copy_from`] set to `bytes`.
    pub fn with_single_copy_from(mut self, bytes: Option<usize>) -> Self {
        self.single_copy_from = bytes;
        self
    }

    /// With [`ShmOptions::stall_timeout`] set to `timeout`.
    pub fn with_stall_timeout(mut self, timeout: Duration) -> Self {
        self.stall_timeout = timeout;
        self
    }
}

/// The segment name in `addr` (`shm://name` or `name`) for `protocol`, with `.port` appended for a
/// non-zero port.
fn segment_name(addr: &str, protocol: &str, port: u16) -> Result<String> {
    if protocol != SCHEME {
        return Err(Error::UnknownProtocol(protocol.to_owned()));
    }
    let name = addr.strip_prefix("shm://").unwrap_or(addr);
    Ok(match port {
        0 => name.to_owned(),
        port => format!("{name}.{port}"),
    })
}

/// A random token for a unique segment name.
fn token() -> u64 {
    let mut hasher = RandomState::new().build_hasher();
    hasher.write_u32(std::process::id());
    hasher.write_u128(
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos(),
    );
    hasher.finish()
}

/// Receives Lightbeam messages from clients of this node through a queue in its own segment, removed
/// when the server is dropped.
pub struct SharedMemoryServer {
    queue: Queue,
    /// Lent to one receiving thread at a time, as the ZeroMQ server's socket.
    receiver: Slot<Receiver>,
    two_phase: TwoPhase,
    limits: Limits,
    address: String,
    _segment: Segment,
}

impl SharedMemoryServer {
    /// A server for `addr` (a segment name: letters, digits, `.`, `_`, `-`) over `protocol` `"shm"`; port
    /// 0 adds a random token to the name, another port `.port`. A name whose server lives fails with
    /// [`Error::AddressInUse`]; one left by a dead process is reclaimed.
    pub fn bind(addr: &str, protocol: &str, port: u16, options: &Options, shm: &ShmOptions) -> Result<Self> {
        let base = segment_name(addr, protocol, port)?;
        let name = match port {
            0 => format!("{base}-{:016x}", token()),
            _ => base,
        };
        let address = format!("{SCHEME}://{name}");
        let segment = Segment::create_reclaiming(&name, QUEUE_LEN + SEGMENT_SLACK).map_err(|e| match e {
            Error::Shm(ShmError::Exists(_)) => Error::AddressInUse { endpoint: address.clone(), port },
            other => other,
        })?;
        let queue = Queue::create(&segment)?;
        Ok(Self {
            queue,
            receiver: Slot::new(Receiver::new(shm.single_copy_from.is_some(), shm.stall_timeout)),
            two_phase: TwoPhase::default(),
            limits: options.limits(Protocol::Ipc),
            address,
            _segment: segment,
        })
    }

    fn recv_frames(&self, timeout: Duration) -> Result<Option<Vec<Payload>>> {
        let deadline = Instant::now() + timeout;
        let Some(mut receiver) = self.receiver.borrow_until(deadline) else { return Ok(None) };
        receiver.receive(&self.queue, &self.limits, deadline, &self.address)
    }
}

impl Drop for SharedMemoryServer {
    fn drop(&mut self) {
        self.queue.close();
    }
}

impl Server for SharedMemoryServer {
    fn recv_message(&self, timeout: Duration) -> Result<Received> {
        let frames = self.recv_frames(timeout)?.ok_or(Error::Timeout {
            op: "receive (nothing arrived)",
            after: timeout,
            peer: None,
        })?;
        Received::accept(frames, &self.limits)
    }

    fn recv_metadata_timeout(&self, meta: &mut dyn Metadata, timeout: Duration) -> Event {
        self.two_phase.recv_metadata(meta, timeout, |timeout| self.recv_message(timeout))
    }

    fn recv_bulks(&self, meta: &mut dyn Metadata) -> Event {
        self.two_phase.recv_bulks(meta)
    }

    fn take_bulks(&self) -> Result<Vec<Payload>> {
        self.two_phase.take_bulks()
    }

    fn discard_pending(&self) -> usize {
        self.two_phase.discard()
    }

    fn address(&self) -> &str {
        &self.address
    }
}

impl std::fmt::Debug for SharedMemoryServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedMemoryServer").field("address", &self.address).finish_non_exhaustive()
    }
}

/// Sends Lightbeam messages to one [`SharedMemoryServer`] of this node. It attaches to the server's
/// segment on the first send (waiting for the server up to the send timeout, as a ZeroMQ client waits
/// for its peer), and again after the server went away.
pub struct SharedMemoryClient {
    name: String,
    address: String,
    send_timeout: Option<Duration>,
    single_copy_from: Option<usize>,
    sender: Mutex<Option<Sender>>,
}

impl SharedMemoryClient {
    /// A client of the server at `addr` (`shm://name` as the server's `address()` says, or `name` with
    /// `port` as given to the server) over `protocol` `"shm"`.
    pub fn connect(
        addr: &str,
        protocol: &str,
        port: u16,
        options: &Options,
        shm: &ShmOptions,
    ) -> Result<Self> {
        let name = segment_name(addr, protocol, port)?;
        Ok(Self {
            address: format!("{SCHEME}://{name}"),
            name,
            send_timeout: options.send_timeout,
            single_copy_from: shm.single_copy_from,
            sender: Mutex::new(None),
        })
    }

    /// A channel of the server's queue: the one held, or a new one once the server is there.
    fn attach(&self, held: &mut Option<Sender>, deadline: Option<Instant>) -> Result<()> {
        if held.as_ref().is_some_and(Sender::usable) {
            return Ok(());
        }
        *held = None;
        loop {
            match Segment::open(&self.name).and_then(|segment| Queue::open(&segment)) {
                Ok(queue) => {
                    *held = Some(Sender::claim(queue, &self.address, self.single_copy_from)?);
                    return Ok(());
                }
                Err(Error::Shm(ShmError::UnknownSegment(_)))
                    if deadline.is_none_or(|d| Instant::now() < d) =>
                {
                    std::thread::sleep(Duration::from_millis(1));
                }
                Err(Error::Shm(ShmError::UnknownSegment(_))) => {
                    return Err(Error::Timeout {
                        op: "send (no server at this address)",
                        after: self.send_timeout.unwrap_or_default(),
                        peer: Some(self.address.clone()),
                    })
                }
                Err(other) => return Err(other),
            }
        }
    }

    fn send_message(&self, meta: &dyn Metadata) -> Result<usize> {
        let bulks = meta.bulks();
        let header = wire::encode_header(bulks, |out| meta.encode_custom(out))?;
        let parts = take_parts(bulks)?;
        let frames: Vec<&[u8]> =
            std::iter::once(header.as_slice()).chain(parts.iter().map(|p| p.bytes())).collect();
        let mut held = lock(&self.sender);
        let deadline = self.send_timeout.map(|t| Instant::now() + t);
        let sent = self
            .attach(&mut held, deadline)
            .and_then(|()| held.as_mut().expect("attached").send(&frames, self.send_timeout));
        drop(frames);
        match sent {
            Ok(()) => Ok(bulks.iter().map(|b| b.size()).sum()),
            Err(error) => {
                restore_parts(bulks, parts);
                Err(error)
            }
        }
    }
}

impl Client for SharedMemoryClient {
    fn send(&self, meta: &dyn Metadata) -> Event {
        self.send_message(meta).into()
    }

    fn address(&self) -> &str {
        &self.address
    }
}

impl std::fmt::Debug for SharedMemoryClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedMemoryClient").field("address", &self.address).finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests;
