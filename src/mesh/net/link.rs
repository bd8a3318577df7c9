//! [`Link`]: this rank's way of sending to one peer, whichever transport carries it, and [`Route`]: which
//! transport that is (shared memory between ranks of one node, ZeroMQ otherwise).
//!
//! # What the mesh needs from a link
//!
//! The mesh sends through links and nothing else, so a transport that provides this much can carry it:
//!
//! - **Send one message** (the mesh's envelope as metadata, and its bulks, borrowed or owned) atomically:
//!   all of its bulks arrive, in order, or none. `wait` bounds how long the send may wait (for a
//!   connected peer, for room, for the peer to take the message in); `None` waits the send timeout the
//!   link was made with. A send that timed out leaves owned bulks untouched (so that the caller may try
//!   again) and the peer drops whatever part of the message reached it.
//! - **Say whether it queues** ([`Link::queues`]): a ZeroMQ send returns once the message is queued
//!   (up to the high-water mark) without the peer; a shared-memory send may wait until the peer takes
//!   the message in (a bulk copied straight from the sender's memory, a message larger than the ring).
//!   Such a send runs a *watch* while it waits: the mesh takes in its own rank's messages whenever its
//!   own server rings, so two ranks sending to each other never wait for each other. A watch must not
//!   send (the link is busy).
//! - **Forward received payloads** without copying them into a new buffer, with the same wait and the same
//!   all-or-nothing rule: a forward that fails hands the payloads back.
//! - **Order**: messages sent on one link from one thread arrive in the order sent.
//! - **Threads**: one link is shared by every thread of the rank (it is `Send + Sync`); concurrent sends
//!   each go out whole, never interleaved.
//! - **No waiting past the bounds**: connecting never waits for the peer (a link connects in the
//!   background, and its first send waits for it within the send's own bound); dropping a link waits at
//!   most its linger. A peer that ended is reported as an error ([`Error::Transport`]) as soon as it is
//!   found, not at the deadline.
//!
//! Receiving is not a link's business: every peer's messages arrive at this rank's servers
//! ([`arrivals`](super::arrivals): a shared-memory server, a ZeroMQ server, or both), and the matching
//! queue ([`matching`](super::matching)) takes them from there.

#![forbid(unsafe_code)]

use std::fmt;
use std::time::Duration;

use super::short::{Head, MAX_PARTS};
use crate::error::{Error, Result};
use crate::meta::Metadata;
use crate::transport::same_node::{Watch, SCHEME};
use crate::transport::{Endpoint, Options, Payload, SharedMemoryClient, ShmOptions, Transport, ZeroMqClient};

/// How this rank reaches a peer: the transport, and the peer's address in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Route {
    /// The peer's ZeroMQ server.
    ZeroMq(Endpoint),
    /// The peer's shared-memory server on this node (`shm://name`).
    SharedMemory(String),
}

impl Route {
    pub(crate) fn transport(&self) -> Transport {
        match self {
            Self::ZeroMq(_) => Transport::ZeroMq,
            Self::SharedMemory(_) => Transport::SharedMemory,
        }
    }
}

impl fmt::Display for Route {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::ZeroMq(endpoint) => write!(f, "{endpoint}"),
            Self::SharedMemory(address) => f.write_str(address),
        }
    }
}

/// A link to one peer: which transport carries it is the link's private business.
#[derive(Debug)]
pub(crate) enum Link {
    /// A ZeroMQ PUSH socket connected to the peer's server.
    ZeroMq(ZeroMqClient),
    /// A channel of the peer's shared-memory server.
    SharedMemory(SharedMemoryClient),
}

impl Link {
    /// A link to the peer at the end of `route`, sending with `options`.
    /// (`shm` applies to a shared-memory link.)
    pub(crate) fn connect(route: &Route, options: &Options, shm: ShmOptions) -> Result<Self> {
        Ok(match route {
            Route::ZeroMq(endpoint) => Self::ZeroMq(ZeroMqClient::connect(endpoint, options)?),
            Route::SharedMemory(address) => {
                // The peer's server was made before the bootstrap's all-gather: none there is a peer gone.
                let client = SharedMemoryClient::connect(address, SCHEME, 0, options, &shm)?;
                Self::SharedMemory(client.with_server_known())
            }
        })
    }

    /// True when a send queues the message without the peer (ZeroMQ, up to its high-water mark); false
    /// when it waits for the peer to take the message in (shared memory: a bulk copied straight from the
    /// sender's memory, or a message larger than the room in the ring). A sender that may wait for its
    /// peer must keep taking in its own messages meanwhile (the `watch` of [`Link::send`]), or two ranks
    /// sending to each other would wait for each other.
    pub(crate) fn queues(&self) -> bool {
        matches!(self, Self::ZeroMq(_))
    }

    /// Sends `meta` and its bulks as one message, waiting at most `wait` for room (`None`: the send
    /// timeout); `watch` runs while a shared-memory send waits. Returns the bytes of the bulks sent.
    pub(crate) fn send(
        &self,
        meta: &dyn Metadata,
        wait: Option<Duration>,
        watch: Option<Watch<'_>>,
    ) -> Result<usize> {
        match self {
            Self::ZeroMq(client) => client.send_within(meta, wait),
            Self::SharedMemory(client) => client.send_watching(meta, wait, watch),
        }
    }

    /// Sends the short message of `head` and `parts` (see [`short`](super::short)) when this link carries
    /// short messages (shared memory) and can send it now without waiting (a free channel with room);
    /// false when it did not send it: the caller sends the message the general way.
    pub(crate) fn send_short(&self, head: &Head, parts: &[&[u8]]) -> Result<bool> {
        let Self::SharedMemory(client) = self else { return Ok(false) };
        let mut pieces: [&[u8]; MAX_PARTS + 1] = [&[]; MAX_PARTS + 1];
        let Some(after_head) = pieces.get_mut(1..=parts.len()) else { return Ok(false) };
        after_head.copy_from_slice(parts);
        pieces[0] = head.bytes();
        client.send_short(&pieces[..=parts.len()])
    }

    /// Sends `payloads` on as the bulks of one message described by `meta`, without copying them into
    /// a new buffer, waiting at most `wait` for room. When the message cannot be sent, the payloads come
    /// back with the error (all of them, unless the transport failed part-way).
    pub(crate) fn forward(
        &self,
        meta: &dyn Metadata,
        payloads: Vec<Payload>,
        wait: Duration,
        watch: Option<Watch<'_>>,
    ) -> std::result::Result<usize, (Error, Vec<Payload>)> {
        match self {
            Self::ZeroMq(client) => client.forward(meta, payloads, Some(wait)),
            Self::SharedMemory(client) => client.forward_watching(meta, payloads, Some(wait), watch),
        }
    }
}

/// The contract's thread rule, checked when the crate compiles.
const _: fn() = || {
    fn shared_by_threads<T: Send + Sync>() {}
    shared_by_threads::<Link>();
};
