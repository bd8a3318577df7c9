//! The same-node transport: [`SharedMemoryClient`] and [`SharedMemoryServer`], for processes of one node,
//! with the same two-phase API and contract as ZeroMQ (see the parent module) and no socket or I/O thread.
//!
//! # How bytes move
//!
//! A server creates a segment named after its endpoint, `shm://<name>` (`<name>-<random token>` when
//! bound with port 0, `<name>.<port>` otherwise), holding a queue of channels ([`ShmOptions::channels`],
//! 32 by default; the mesh makes one per rank of the node). Each client claims one channel
//! (multi-producer through channels, one consumer: the server), a byte ring ([`ShmOptions::ring_size`],
//! 512 KiB by default) into which it writes records (`record.rs`):
//!
//! - **A mesh's small messages** (at most 2 KiB with their envelope; 2 copies): one `SHORT`
//!   record, written and published at once when the ring has room, and handed to the mesh as written
//!   (no header frame to decode, no frame list); a server takes them only when made for a mesh
//!   (`with_short_messages`), else they are garbage.
//! - **The header frame, and bulks below the single-copy threshold** (2 copies): written into the ring,
//!   read out into the received frame (pipelined for frames larger than the ring: the server copies out
//!   one piece while the client writes the next).
//! - **Bulks from the threshold up** ([`ShmOptions::single_copy_from`], default
//!   [`DEFAULT_SINGLE_COPY_FROM`]; 1 copy): offered by address; the server copies them straight from the
//!   client's memory with `process_vm_readv` into the received frame, and the client's `send` returns
//!   only after the server answered, so a borrowed slice is never read after `send`.
//! - **The same bulks when the kernel refuses single copy** (ptrace rules, containers; 2 copies), or when
//!   no connection of the offering process told the offer (see Trust): the server answers "refused" and
//!   the client streams the bytes through the ring, as above, for the rest of the channel's life.
//! - **Descriptor-only bulks** ([`crate::BulkFlags::EXPOSE`]; 0 copies in transit): their descriptor
//!   travels in the header; the receiver reads the segment, as with ZeroMQ.
//!
//! # Waiting
//!
//! Both sides poll, then yield the core, then sleep on a futex word in the segment in slices of at most
//! 50 ms, checking the other process's liveness (pid and start time) between slices (`wait.rs`). How
//! long they poll and yield depends on how crowded the node is: a process with a core to itself polls
//! about 20 us; where more ranks than cores share the node (as the mesh tells at bootstrap, or as the
//! polls find themselves preempted) it polls about 1 us and then gives its core to whichever process has
//! work, as MPI's shared-memory path does when oversubscribed; the yield phase lasts a few times the
//! process's typical wait (docs/BENCHMARKS.md has the latencies this gives on two cores).
//! A receive ends by its own deadline. The server reads every channel in turn and keeps each channel's
//! unfinished message apart, so a client that writes slowly or stopped holds only its own message; one
//! that makes no progress for [`ShmOptions::stall_timeout`] is dropped with an error. A client waits for
//! the server, for a free channel, for room or for an answer (a single-copy offer the server took
//! included) up to its send timeout; past it, a taken offer is withdrawn and the server drops what it
//! copied. A peer that dies is reported as lost, never waited for until a timeout: a client checks the
//! server's process when it attaches, so a killed server's leftover segment is refused at once (a server
//! killed after that is found when the client next waits for it). A server bound with port 0 removes
//! the segments that dead servers left under the same name.
//!
//! # Trust
//!
//! Segments are created owner-only (mode 0600): only processes of the server's own user (and root) can open
//! the segment. Such a process can write anything into it, including a channel's owner pid and single-copy
//! offers naming any process, in its own channel or in an honest client's ring; so no word of the segment
//! decides whose memory the server reads. An offer is read only when the process that the kernel names
//! (`SO_PEERCRED`) at the other end of the channel's connection to the server's listener told it (number,
//! address and length) before its record, and it is read from that process only; that process must be the
//! channel's owner by pid and start time and hold the claim word (`identity.rs`). Any other offer is refused,
//! and its bytes come through the ring: no process can make the server read memory that it could not read
//! itself. The server never blocks on the listener; a server that cannot listen refuses every offer.
//!
//! The server copies every record out before decoding it, keeps its own read position, checks every length
//! against its [`crate::Options`] limits before allocating (in arithmetic no announced size can overflow),
//! takes memory for a frame as its bytes arrive rather than as its record announced it (so a record of 32
//! bytes cannot make the server hold a frame of [`crate::Options::max_message_size`]), and hands the frames
//! to `Received::accept` like every transport. A channel holding garbage is given up (its message dropped
//! with an error); a channel whose client left or died is freed within a sweep of the server's next
//! receive, however busy other channels keep it (a message a dead client left unfinished is dropped with
//! [`Error::PeerGone`]); a client touches its channel only while the channel holds the random word of its
//! own claim, so two clients of one process never free each other's channel.
//!
//! Not covered: a process that truncates the segment's file **crashes** the server and every client mapping
//! it (SIGBUS at their next access; a sealed memfd passed over a socket would close that), and a hostile
//! process can take every channel (clients then time out waiting for one). A process of the user can also
//! turn single copies off for a channel (a forged offer can make the server close the channel's connection)
//! or for clients yet to come (by filling the listener's backlog; processes of other users are let go as soon
//! as they are accepted, but its abstract name is listed in `/proc/net/unix`, so they can fill it between two
//! looks), and clients then send through the ring: none of this reads any memory. A child forked (without
//! `exec`) from a client inherits the client's connection, and what it tells there is read from the client.

#![forbid(unsafe_code)]

mod identity;
mod message;
mod queue;
mod receiver;
mod record;
mod sender;
mod wait;

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use self::identity::{Gate, Tally};
use self::queue::{Queue, SEGMENT_SLACK};
use self::receiver::Receiver;
pub(crate) use self::record::SHORT_MAX;
use self::sender::Sender;
use self::wait::{deadline_after, far_future};
pub(crate) use self::wait::{set_ranks_per_core, spare_cores, Watch};
use super::parts::{restore_parts, take_parts};
use super::two_phase::TwoPhase;
use super::{Client, FrameSource, Limits, Options, Payload, Protocol};
use crate::error::{Error, Result, ShmError};
use crate::event::Event;
use crate::meta::Metadata;
use crate::shm::Segment;
use crate::sync::{LazyDeadline, Slot};
use crate::wire;

/// The scheme of this transport's endpoints.
pub const SCHEME: &str = "shm";

/// The default of [`ShmOptions::single_copy_from`]: bulks of 64 KiB and more go by single copy.
pub const DEFAULT_SINGLE_COPY_FROM: usize = 64 << 10;

/// The default of [`ShmOptions::channels`].
pub const DEFAULT_CHANNELS: usize = 32;

/// The default of [`ShmOptions::ring_size`]: 512 KiB.
pub const DEFAULT_RING_SIZE: usize = 512 << 10;

/// Settings of the shared-memory transport beside the common [`Options`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ShmOptions {
    /// Client: bulks of at least this many bytes are offered for a single copy (`None`: never).
    /// Server: `None` refuses every offer, so clients fall back to copying through the ring.
    pub single_copy_from: Option<usize>,
    /// Server: how long a message that began may go without progress before it is dropped. Default 10 s.
    pub stall_timeout: Duration,
    /// Server: how many clients may send to it at once (each holds a channel while it lives; the mesh
    /// makes one per rank of the node). 1 to 4096, default [`DEFAULT_CHANNELS`].
    pub channels: usize,
    /// Server: the bytes of each channel's ring (a power of two from 4 KiB to 64 MiB), default
    /// [`DEFAULT_RING_SIZE`]. The segment holds `channels` rings, and its memory is reserved in
    /// /dev/shm when the server binds (a bind that does not fit fails with
    /// [`ShmError::NoSpace`]).
    pub ring_size: usize,
}

impl Default for ShmOptions {
    fn default() -> Self {
        Self {
            single_copy_from: Some(DEFAULT_SINGLE_COPY_FROM),
            stall_timeout: Duration::from_secs(10),
            channels: DEFAULT_CHANNELS,
            ring_size: DEFAULT_RING_SIZE,
        }
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

    /// With [`ShmOptions::channels`] set to `channels`.
    pub fn with_channels(mut self, channels: usize) -> Self {
        self.channels = channels;
        self
    }

    /// With [`ShmOptions::ring_size`] set to `bytes`.
    pub fn with_ring_size(mut self, bytes: usize) -> Self {
        self.ring_size = bytes;
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

/// Removes the segments of dead servers bound to `base` with port 0 (`base-<16 hex digits>`), which no
/// later bind would otherwise find: their names are random.
fn reclaim_leftovers(base: &str) -> Result<usize> {
    Segment::reclaim_stale_where(|name| {
        name.strip_prefix(base)
            .and_then(|rest| rest.strip_prefix('-'))
            .is_some_and(|token| token.len() == 16 && token.bytes().all(|b| b.is_ascii_hexdigit()))
    })
}

/// What became of the single-copy offers a [`SharedMemoryServer`] answered
/// ([`SharedMemoryServer::single_copies`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct SingleCopies {
    /// Offers whose bytes the server copied straight from the offering process.
    pub copied: u64,
    /// Offers the server refused, whose bytes then came through the ring: single copies off, the kernel
    /// refused the read, or the offer was not told by the process the kernel names at the other end of
    /// the channel's connection.
    pub refused: u64,
}

/// What a [`SharedMemoryServer`] received: a message's frames, or (on a mesh's server) a short
/// message's bytes as its client wrote them.
pub(crate) enum Arrival {
    /// The header frame and the bulks of a message.
    Frames(Vec<Payload>),
    /// A short message ([`SharedMemoryClient::send_short`]), for the mesh to read.
    Short(Vec<u8>),
}

/// Receives Lightbeam messages from clients of this node through a queue in its own segment, removed
/// when the server is dropped.
pub struct SharedMemoryServer {
    queue: Queue,
    tally: Arc<Tally>,
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
    /// [`Error::AddressInUse`]; one left by a dead process is reclaimed, and so, with port 0, are the
    /// segments dead servers left under the same name with any token.
    pub fn bind(addr: &str, protocol: &str, port: u16, options: &Options, shm: &ShmOptions) -> Result<Self> {
        let base = segment_name(addr, protocol, port)?;
        let name = match port {
            0 => {
                reclaim_leftovers(&base)?;
                format!("{base}-{:016x}", token())
            }
            _ => base,
        };
        let address = format!("{SCHEME}://{name}");
        let len = Queue::len(shm.channels, shm.ring_size)
            .map_err(|why| Error::InvalidArgument(format!("a shared-memory server of {why}")))?;
        let segment = Segment::create_reclaiming(&name, len + SEGMENT_SLACK).map_err(|e| match e {
            Error::Shm(ShmError::Exists(_)) => Error::AddressInUse { endpoint: address.clone(), port },
            other => other,
        })?;
        let gate = match shm.single_copy_from {
            Some(_) => Gate::listen(shm.channels).unwrap_or_else(|error| {
                log::warn!("lightbeam: {address}: single copies off (no listener for offers: {error})");
                Gate::closed()
            }),
            None => Gate::closed(),
        };
        let queue = Queue::create(&segment, shm.channels, shm.ring_size, gate.token())?;
        let tally = Arc::clone(gate.tally());
        let receiver = Receiver::new(shm.channels, gate, shm.stall_timeout);
        Ok(Self {
            queue,
            tally,
            receiver: Slot::new(receiver),
            two_phase: TwoPhase::default(),
            limits: options.limits(Protocol::Ipc),
            address,
            _segment: segment,
        })
    }

    fn recv_frames(&self, timeout: Duration) -> Result<Option<Vec<Payload>>> {
        match self.recv_unless(timeout, &|| false)? {
            None => Ok(None),
            Some(Arrival::Frames(frames)) => Ok(Some(frames)),
            Some(Arrival::Short(_)) => {
                let why = "a mesh's short message arrived at a server read as a plain server";
                Err(Error::transport("receive on", &self.address, why))
            }
        }
    }

    /// This server, handing short messages over as they are ([`Arrival::Short`]): a mesh's server,
    /// whose peers send small messages that way ([`SharedMemoryClient::send_short`]).
    pub(crate) fn with_short_messages(mut self) -> Self {
        if let Some(receiver) = self.receiver.get_mut() {
            receiver.shorts = true;
        }
        self
    }

    /// How many single-copy offers this server copied and refused so far.
    pub fn single_copies(&self) -> SingleCopies {
        SingleCopies {
            copied: self.tally.copied.load(Ordering::Relaxed),
            refused: self.tally.refused.load(Ordering::Relaxed),
        }
    }

    /// As a receive of the next message within `timeout`, but ending early (`Ok(None)`) once `elsewhere`
    /// is true after the doorbell rang: how one receive waits on this server and on messages that
    /// arrive another way (see [`SharedMemoryServer::ring`]).
    pub(crate) fn recv_unless(
        &self,
        timeout: Duration,
        elsewhere: &dyn Fn() -> bool,
    ) -> Result<Option<Arrival>> {
        self.recv_until(&LazyDeadline::new(timeout), elsewhere)
    }

    /// As [`SharedMemoryServer::recv_unless`], until `deadline` (read only if the receive must wait).
    pub(crate) fn recv_until(
        &self,
        deadline: &LazyDeadline,
        elsewhere: &dyn Fn() -> bool,
    ) -> Result<Option<Arrival>> {
        // A message there already is taken under the slot's lock, without lending the receiver out.
        let now =
            self.receiver.with_now(|receiver| receiver.take_now(&self.queue, &self.limits, &self.address));
        if let Some(Some(outcome)) = now {
            return outcome.map(Some);
        }
        let receiver = self.receiver.try_borrow().or_else(|| self.receiver.borrow_until(deadline.at()));
        let Some(mut receiver) = receiver else { return Ok(None) };
        receiver.receive(&self.queue, &self.limits, deadline, &self.address, elsewhere)
    }

    /// Rings this server's doorbell, as a client does after writing: wakes a receive waiting here, and
    /// every send watching this server ([`SharedMemoryServer::watch`]).
    pub(crate) fn ring(&self) {
        self.queue.doorbell().notify();
    }

    /// A watch on this server's doorbell for a send of this process: `moved` runs whenever the doorbell
    /// rang while the send waits (see [`SharedMemoryClient::send_watching`]), and returns whether it did
    /// its work (false: call again soon).
    pub(crate) fn watch<'w>(&'w self, moved: &'w mut dyn FnMut() -> Result<bool>) -> Watch<'w> {
        Watch::new(self.queue.doorbell(), moved)
    }

    /// The checked message made of `frames` received here.
    pub(crate) fn accept(&self, frames: Vec<Payload>) -> Result<super::Received> {
        super::Received::accept(frames, &self.limits)
    }
}

impl Drop for SharedMemoryServer {
    fn drop(&mut self) {
        self.queue.close();
    }
}

impl FrameSource for SharedMemoryServer {
    fn recv_frames(&self, timeout: Duration) -> Result<Option<Vec<Payload>>> {
        Self::recv_frames(self, timeout)
    }

    fn limits(&self) -> &Limits {
        &self.limits
    }

    fn two_phase(&self) -> &TwoPhase {
        &self.two_phase
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
    /// The server was there before this client was made (a mesh peer's): finding none means it is gone,
    /// not that it is yet to come.
    server_known: bool,
    /// The channel, lent to one sending thread at a time (others wait for it within their own timeout).
    sender: Slot<Option<Sender>>,
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
            server_known: false,
            sender: Slot::new(None),
        })
    }

    /// This client's server was there before the client was made (as a mesh peer's server is, from
    /// bootstrap on): a send that finds no server there (closed, or its segment removed) fails at once
    /// with [`Error::PeerGone`] instead of waiting for one to come.
    pub(crate) fn with_server_known(mut self) -> Self {
        self.server_known = true;
        self
    }

    /// A channel of the server's queue: the one held, or a new one once the server is there and a channel
    /// is free (both waited for until `deadline`). A server whose process ended is reported lost at once.
    fn attach(
        &self,
        held: &mut Option<Sender>,
        deadline: Option<Instant>,
        timeout: Option<Duration>,
    ) -> Result<()> {
        if held.as_ref().is_some_and(Sender::usable) {
            return Ok(());
        }
        *held = None;
        let mut pause = Duration::from_micros(100);
        loop {
            let waited_for = match self.try_attach()? {
                Attach::Done(sender) => {
                    *held = Some(sender);
                    return Ok(());
                }
                Attach::NoServer if self.server_known => {
                    let why = "the server closed (its segment is closed or removed)";
                    return Err(Error::gone("send to", &self.address, why));
                }
                Attach::NoServer => "send (no server at this address)",
                Attach::NoChannel => "send (every channel of the server stayed taken)",
            };
            if deadline.is_some_and(|d| Instant::now() >= d) {
                let (after, peer) = (timeout.unwrap_or_default(), Some(self.address.clone()));
                return Err(Error::Timeout { op: waited_for, after, peer });
            }
            std::thread::sleep(pause);
            pause = (pause * 2).min(ATTACH_PAUSE);
        }
    }

    /// One attempt at claiming a channel of a live server.
    fn try_attach(&self) -> Result<Attach> {
        let queue = match Segment::open(&self.name).and_then(|segment| Queue::open(&segment)) {
            Ok(queue) => queue,
            Err(Error::Shm(ShmError::UnknownSegment(_))) => return Ok(Attach::NoServer),
            Err(other) => return Err(other),
        };
        if queue.closed() {
            return Ok(Attach::NoServer); // its segment goes next, perhaps for a new server of the name
        }
        if queue.server_pid_namespace() != crate::shm::pid_namespace() {
            let why = "the server runs in another pid namespace (another container): pids, liveness and \
                       single copies cannot be told apart across it";
            return Err(Error::transport("send to", &self.address, why));
        }
        let server = queue.server();
        if server.is_gone() {
            let why =
                format!("the server process {} is lost (it ended without removing its segment)", server.pid);
            return Err(Error::gone("send to", &self.address, why));
        }
        Ok(Sender::claim(queue, &self.address, self.single_copy_from).map_or(Attach::NoChannel, Attach::Done))
    }

    /// Sends `meta` and its bulks as one message, waiting at most `wait` (`None`: the send timeout);
    /// while the send waits (for the server, for room, for a bulk to be copied), `watch`'s callback runs
    /// whenever its doorbell rings. Returns the bytes of the bulks sent.
    pub(crate) fn send_watching(
        &self,
        meta: &dyn Metadata,
        wait: Option<Duration>,
        watch: Option<Watch<'_>>,
    ) -> Result<usize> {
        let bulks = meta.bulks();
        let header = wire::encode_header(bulks, |out| meta.encode_custom(out))?;
        let parts = take_parts(bulks)?;
        let bytes: Vec<&[u8]> = parts.iter().map(|p| p.bytes()).collect();
        let sent = self.send_frames(&header, &bytes, wait.or(self.send_timeout), watch);
        drop(bytes);
        match sent {
            Ok(()) => Ok(bulks.iter().map(|b| b.size()).sum()),
            Err(error) => {
                restore_parts(bulks, parts);
                Err(error)
            }
        }
    }

    /// Sends `payloads` as the bulks of one message described by `meta` (whose bulks give their sizes),
    /// as [`SharedMemoryClient::send_watching`] does; a send that failed hands them back.
    pub(crate) fn forward_watching(
        &self,
        meta: &dyn Metadata,
        payloads: Vec<Payload>,
        wait: Option<Duration>,
        watch: Option<Watch<'_>>,
    ) -> std::result::Result<usize, (Error, Vec<Payload>)> {
        let sent = wire::encode_header(meta.bulks(), |out| meta.encode_custom(out)).and_then(|header| {
            let bytes: Vec<&[u8]> = payloads.iter().map(|p| &p[..]).collect();
            self.send_frames(&header, &bytes, wait.or(self.send_timeout), watch)
        });
        match sent {
            Ok(()) => Ok(payloads.iter().map(|p| p.len()).sum()),
            Err(error) => Err((error, payloads)),
        }
    }

    /// Sends `parts` as one short message (the mesh's fast path for small messages: one record in the
    /// ring, published with one store, read by the server without decoding a header), when this
    /// client is attached and its channel free now, the parts fit [`SHORT_MAX`] and the ring has room
    /// for them; false otherwise (nothing sent), and the caller sends the message the general way (which
    /// attaches, or waits). Never waits.
    pub(crate) fn send_short(&self, parts: &[&[u8]]) -> Result<bool> {
        let sent = self.sender.with_now(|held| match held {
            Some(sender) if sender.usable() => sender.send_short(parts),
            _ => Ok(false), // the first send attaches, the general way
        });
        sent.unwrap_or(Ok(false))
    }

    /// Sends the header frame and `bulks` as one message within `timeout`.
    fn send_frames(
        &self,
        header: &[u8],
        bulks: &[&[u8]],
        timeout: Option<Duration>,
        watch: Option<Watch<'_>>,
    ) -> Result<()> {
        let frames: Vec<&[u8]> = std::iter::once(header).chain(bulks.iter().copied()).collect();
        let deadline = deadline_after(timeout);
        let Some(mut held) = self.sender.borrow_until(deadline.unwrap_or_else(far_future)) else {
            let after = timeout.unwrap_or_default();
            let op = "send (another thread's send on this client held it the whole time)";
            return Err(Error::Timeout { op, after, peer: Some(self.address.clone()) });
        };
        self.attach(&mut held, deadline, timeout)?;
        held.as_mut().expect("attached").send(&frames, timeout, watch)
    }
}

/// The longest pause between two attempts at attaching.
const ATTACH_PAUSE: Duration = Duration::from_millis(5);

/// What one attempt at attaching found.
enum Attach {
    Done(Sender),
    /// No segment by the server's name (yet).
    NoServer,
    /// Every channel is taken (one frees when its client leaves and the server next receives).
    NoChannel,
}

impl Client for SharedMemoryClient {
    fn send(&self, meta: &dyn Metadata) -> Event {
        self.send_watching(meta, None, None).into()
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
