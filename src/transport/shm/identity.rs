//! The kernel's word on who offers bytes for a single copy. Every word of the segment can be written by
//! any process of the server's user, so a pid in a channel or in a `REMOTE` record proves nothing; the
//! offers that the server reads reach it a second way, which only the offering process holds:
//!
//! - The server listens on a Unix seqpacket socket with an abstract name of a random token, which it
//!   records in its queue's control block ([`Gate`]). It never blocks on it: it takes in connections
//!   and reads them, without waiting, only when a `REMOTE` record asks for them.
//! - A client that claimed a channel and offers single copies connects, checks that the process at the
//!   other end (`SO_PEERCRED`) is the queue's server (so it tells no squatter of the name where its
//!   bulks lie), and sends its hello: the channel's index and its claim word ([`Link::connect`]).
//! - The server binds a connection to a channel only when the kernel's pid of the connecting process is
//!   the channel's owner pid, the start time `/proc` gives for that pid is the owner's start word, the
//!   hello's claim word is the channel's, and the channel has no bound connection yet ([`Trust`]).
//! - Before it publishes each `REMOTE` record, the client sends that offer's number, address and
//!   length over its connection ([`Link::tell`]). For a `REMOTE` record, the server takes the next one
//!   from the channel's connection: an offer is read only when one was there, equal to the record, and
//!   only from the process the kernel named. Anything else is refused, and the bytes come through the
//!   ring. A connection that closed (its client ended) or that told another offer than the record's is
//!   not trusted again for the channel's life.
//!
//! So a process can make the server read only memory of the process at the other end of a bound
//! connection, which is its own.

#![forbid(unsafe_code)]

use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustix::io::Errno;
use rustix::net::sockopt::socket_peercred;
use rustix::net::{
    accept_with, bind, connect, listen, recv, send, socket_with, AddressFamily, RecvFlags, SendFlags,
    SocketAddrUnix, SocketFlags, SocketType,
};
use rustix::process::geteuid;

use super::queue::Channel;
use crate::shm::Process;

/// The bytes of a hello: channel index u64 | claim word u64, little endian.
const HELLO_LEN: usize = 16;
/// The bytes of an offer: offer number u64 | address u64 | len u64, little endian.
const OFFER_LEN: usize = 24;
/// The least room for connections that wait to be accepted or bound (else one per channel).
const MIN_WAITING: usize = 16;
/// The most time between two looks at the listener while the server receives, so that connections of
/// clients that never offer (and have left since) do not fill its backlog.
const TAKE_IN_PERIOD: Duration = Duration::from_millis(50);

/// What a client tells the server of one single-copy offer, over its connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Offer {
    pub(super) offer: u32,
    pub(super) address: u64,
    pub(super) len: u64,
}

impl Offer {
    fn encode(self) -> [u8; OFFER_LEN] {
        let mut out = [0; OFFER_LEN];
        out[0..8].copy_from_slice(&u64::from(self.offer).to_le_bytes());
        out[8..16].copy_from_slice(&self.address.to_le_bytes());
        out[16..24].copy_from_slice(&self.len.to_le_bytes());
        out
    }

    fn decode(bytes: &[u8; OFFER_LEN]) -> Option<Self> {
        let u64_at = |at: usize| u64::from_le_bytes(bytes[at..at + 8].try_into().expect("8 bytes"));
        Some(Self { offer: u32::try_from(u64_at(0)).ok()?, address: u64_at(8), len: u64_at(16) })
    }
}

/// The abstract socket name of listener `token`.
fn name(token: u64) -> rustix::io::Result<SocketAddrUnix> {
    SocketAddrUnix::new_abstract_name(format!("lightbeam-shm-{token:016x}").as_bytes())
}

/// A new seqpacket socket (one `send` is one `recv`: an offer is never read in part), never blocking.
fn socket() -> rustix::io::Result<OwnedFd> {
    let flags = SocketFlags::CLOEXEC | SocketFlags::NONBLOCK;
    socket_with(AddressFamily::UNIX, SocketType::SEQPACKET, flags, None)
}

/// The process at the other end of `fd`, as the kernel tells it (with its start time from `/proc`, 0
/// when `/proc` cannot tell).
fn peer(fd: &OwnedFd) -> Option<Process> {
    let pid = u32::try_from(socket_peercred(fd).ok()?.pid.as_raw_nonzero().get()).ok()?;
    Some(Process::of(pid))
}

/// A client's connection to the server, bound to its channel.
pub(super) struct Link(OwnedFd);

impl Link {
    /// Connects to the listener of token `token` as the holder of channel `index` under claim `claim`;
    /// `None` when the server listens for none (token 0), the connection fails, or the process at the
    /// other end is not `server`.
    pub(super) fn connect(token: u64, server: u32, index: usize, claim: u64) -> Option<Self> {
        if token == 0 {
            return None;
        }
        let fd = socket().ok()?;
        connect(&fd, &name(token).ok()?).ok()?;
        if peer(&fd)?.pid != server {
            return None;
        }
        let mut hello = [0; HELLO_LEN];
        hello[0..8].copy_from_slice(&(index as u64).to_le_bytes());
        hello[8..16].copy_from_slice(&claim.to_le_bytes());
        let link = Self(fd);
        link.send(&hello).then_some(link)
    }

    /// Tells the server of `offer`, before its record is published; false when that failed (the link is
    /// then of no more use).
    pub(super) fn tell(&self, offer: Offer) -> bool {
        self.send(&offer.encode())
    }

    fn send(&self, bytes: &[u8]) -> bool {
        let flags = SendFlags::DONTWAIT | SendFlags::NOSIGNAL;
        loop {
            match send(&self.0, bytes, flags) {
                Ok(sent) => return sent == bytes.len(),
                Err(Errno::INTR) => continue,
                Err(_) => return false,
            }
        }
    }
}

/// How many offers the server copied and refused (see
/// [`SharedMemoryServer::single_copies`](super::SharedMemoryServer::single_copies)).
#[derive(Debug, Default)]
pub(super) struct Tally {
    pub(super) copied: AtomicU64,
    pub(super) refused: AtomicU64,
}

/// A connection taken in by the server, not yet bound to a channel.
struct Waiting {
    fd: OwnedFd,
    /// The connecting process, as the kernel named it.
    process: Process,
    /// Its hello (channel index, claim word), once read.
    hello: Option<(u64, u64)>,
}

/// The server's listener, and the connections it took in that wait to be bound.
pub(super) struct Gate {
    listener: Option<OwnedFd>,
    token: u64,
    /// Connections taken in, at most `room`; past it, the oldest goes.
    waiting: Vec<Waiting>,
    room: usize,
    /// When the listener was last looked at.
    taken_in: Instant,
    tally: Arc<Tally>,
}

impl Gate {
    /// No listener: every offer is refused.
    pub(super) fn closed() -> Self {
        let (waiting, taken_in, tally) = (Vec::new(), Instant::now(), Arc::default());
        Self { listener: None, token: 0, waiting, room: 0, taken_in, tally }
    }

    /// A listener under a fresh random token, for the clients of `channels` channels.
    pub(super) fn listen(channels: usize) -> rustix::io::Result<Self> {
        let listener = socket()?;
        let token = super::token() | 1; // never 0, the word of no listener
        bind(&listener, &name(token)?)?;
        let room = channels.max(MIN_WAITING);
        listen(&listener, i32::try_from(room).unwrap_or(i32::MAX))?;
        Ok(Self { listener: Some(listener), token, room, ..Self::closed() })
    }

    /// The listener's token, recorded in the queue (0: none).
    pub(super) fn token(&self) -> u64 {
        self.token
    }

    /// True when the server listens, so that offers may be read.
    pub(super) fn open(&self) -> bool {
        self.listener.is_some()
    }

    /// The counts of offers copied and refused, shared with the server.
    pub(super) fn tally(&self) -> &Arc<Tally> {
        &self.tally
    }

    /// Counts an offer answered: copied, or refused.
    pub(super) fn count(&self, copied: bool) {
        let counter = if copied { &self.tally.copied } else { &self.tally.refused };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Takes in what waits at the listener when it was not looked at for [`TAKE_IN_PERIOD`] (see
    /// [`Gate::take_in`]).
    pub(super) fn take_in_now_and_then(&mut self) {
        if self.taken_in.elapsed() >= TAKE_IN_PERIOD {
            self.take_in();
        }
    }

    /// Accepts the connections that wait at the listener, reads their hellos, and lets go of the
    /// connections that closed; never blocks.
    fn take_in(&mut self) {
        self.taken_in = Instant::now();
        let Some(listener) = self.listener.as_ref() else { return };
        for _ in 0..self.room {
            let Ok(fd) = accept_with(listener, SocketFlags::CLOEXEC | SocketFlags::NONBLOCK) else { break };
            // Another user's process cannot open the segment, so it holds no channel: it goes at once.
            let Ok(credentials) = socket_peercred(&fd) else { continue };
            let Ok(pid) = u32::try_from(credentials.pid.as_raw_nonzero().get()) else { continue };
            if credentials.uid != geteuid() {
                continue;
            }
            let process = Process::of(pid);
            if self.waiting.len() == self.room {
                self.waiting.remove(0);
            }
            self.waiting.push(Waiting { fd, process, hello: None });
        }
        self.waiting.retain_mut(|waiting| {
            let mut hello = [0; HELLO_LEN];
            let flags = match waiting.hello {
                None => RecvFlags::DONTWAIT,
                Some(_) => RecvFlags::DONTWAIT | RecvFlags::PEEK, // closed, or an offer waits
            };
            match (recv(&waiting.fd, &mut hello[..], flags), waiting.hello) {
                (Err(Errno::AGAIN | Errno::INTR), _) => true,
                (Ok((HELLO_LEN, _)), None) => {
                    let u64_at =
                        |at: usize| u64::from_le_bytes(hello[at..at + 8].try_into().expect("8 bytes"));
                    waiting.hello = Some((u64_at(0), u64_at(8)));
                    true
                }
                (Ok((told, _)), Some(_)) => told > 0,
                _ => false, // closed, or not a hello
            }
        });
    }

    /// A connection for channel `index` as it is now: from the connecting process that owns it (by the
    /// kernel's pid and `/proc`'s start time), whose hello holds the channel's claim word. Takes in what
    /// waits first, without blocking.
    fn bind(&mut self, index: usize, channel: &Channel<'_>) -> Option<Bound> {
        self.take_in();
        let (owner, claim) = (channel.owner(), channel.claim_word());
        let at = self.waiting.iter().position(|waiting| {
            waiting.hello == Some((index as u64, claim)) && waiting.process == owner && owner.pid != 0
        })?;
        let waiting = self.waiting.swap_remove(at);
        Some(Bound { fd: waiting.fd, process: waiting.process, claim })
    }
}

/// A connection bound to a channel.
pub(super) struct Bound {
    fd: OwnedFd,
    process: Process,
    claim: u64,
}

/// What the server knows of the process that offers through a channel.
#[derive(Default)]
pub(super) enum Trust {
    /// No connection bound yet.
    #[default]
    Unknown,
    /// A connection from the channel's owner is bound.
    Bound(Bound),
    /// The bound connection closed or told another offer than the channel's record: nothing is read
    /// from this channel again until it is freed.
    Lost,
}

impl Trust {
    /// The process to read `offer` (the one in a `REMOTE` record of `channel`, channel `index`) from: the
    /// bound connection's process, when the next offer it told is `offer`. `None`: refuse the offer.
    pub(super) fn vouch(
        &mut self,
        gate: &mut Gate,
        index: usize,
        channel: &Channel<'_>,
        offer: Offer,
    ) -> Option<Process> {
        if let Self::Unknown = self {
            *self = Self::Bound(gate.bind(index, channel)?);
        }
        let Self::Bound(bound) = self else { return None };
        if channel.owner() != bound.process || channel.claim_word() != bound.claim {
            *self = Self::Lost; // the channel's words changed under a bound connection
            return None;
        }
        let mut told = [0; OFFER_LEN + 1];
        let received = loop {
            match recv(&bound.fd, &mut told[..], RecvFlags::DONTWAIT) {
                Err(Errno::INTR) => continue,
                other => break other,
            }
        };
        match received {
            Err(Errno::AGAIN) => return None, // no offer told: a record the client did not write
            Ok((OFFER_LEN, _))
                if Offer::decode(told[..OFFER_LEN].try_into().expect("24 bytes")) == Some(offer) => {}
            _ => {
                *self = Self::Lost; // closed, or another offer than the record's
                return None;
            }
        }
        // A client that ended closed its connection before its pid could be freed for reuse: the
        // connection is looked at once more, after the offer, so that a pid freed meanwhile is never
        // read. A later offer waiting there (this one was withdrawn) hides the close: `/proc` tells.
        let alive = match recv(&bound.fd, &mut told[..], RecvFlags::DONTWAIT | RecvFlags::PEEK) {
            Err(Errno::AGAIN) => true,
            Ok((waiting, _)) if waiting > 0 => !bound.process.is_gone(),
            _ => false,
        };
        match alive {
            true => Some(bound.process),
            false => {
                *self = Self::Lost;
                None
            }
        }
    }
}
