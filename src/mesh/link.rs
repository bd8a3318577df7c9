//! [`Link`]: this rank's way of sending to one peer, whichever transport carries it.
//!
//! # What the mesh needs from a link
//!
//! The mesh sends through links and nothing else, so a transport that provides this much can carry it:
//!
//! - **Send one message** (the mesh's envelope as metadata, and its bulks, borrowed or owned) atomically:
//!   all of its bulks arrive, in order, or none. `wait` bounds how long the send may wait for the peer to
//!   have room (a connected peer, a queue not full); `None` waits the send timeout the link was made with.
//!   A send that could not queue the message fails with [`Error::Timeout`], leaves owned bulks untouched
//!   (so that the caller may try again) and has sent nothing.
//! - **Forward received payloads** without copying their bytes, with the same wait and the same
//!   all-or-nothing rule: a forward that fails hands the payloads back.
//! - **Order**: messages sent on one link from one thread arrive in the order sent.
//! - **Threads**: one link is shared by every thread of the rank (it is `Send + Sync`); concurrent sends
//!   each go out whole, never interleaved.
//! - **No waiting past the bounds**: connecting never waits for the peer (a link connects in the
//!   background, and its first send waits for it within the send's own bound); dropping a link waits at
//!   most its linger.
//!
//! Receiving is not a link's business: every peer's messages arrive at this rank's one [`Server`]
//! (`crate::transport::Server`), and the mailbox takes them from there with [`Server::recv_message`].
//!
//! [`Server`]: crate::transport::Server
//! [`Server::recv_message`]: crate::transport::Server::recv_message

#![forbid(unsafe_code)]

use std::time::Duration;

use crate::error::{Error, Result};
use crate::meta::Metadata;
use crate::transport::{Endpoint, Options, Payload, ZeroMqClient};

/// A link to one peer: which transport carries it is the link's private business.
#[derive(Debug)]
pub(crate) enum Link {
    /// A ZeroMQ PUSH socket connected to the peer's server.
    ZeroMq(ZeroMqClient),
}

impl Link {
    /// A link to the peer whose server listens at `endpoint`, sending with `options`.
    pub(crate) fn connect(endpoint: &Endpoint, options: &Options) -> Result<Self> {
        Ok(Self::ZeroMq(ZeroMqClient::connect(endpoint, options)?))
    }

    /// Sends `meta` and its bulks as one message, waiting at most `wait` for room (`None`: the send
    /// timeout). Returns the bytes of the bulks sent.
    pub(crate) fn send(&self, meta: &dyn Metadata, wait: Option<Duration>) -> Result<usize> {
        match self {
            Self::ZeroMq(client) => client.send_within(meta, wait),
        }
    }

    /// Sends `payloads` on as the bulks of one message described by `meta`, without copying them,
    /// waiting at most `wait` for room. When the message cannot be sent, the payloads come back with
    /// the error (all of them, unless the transport failed part-way).
    pub(crate) fn forward(
        &self,
        meta: &dyn Metadata,
        payloads: Vec<Payload>,
        wait: Duration,
    ) -> std::result::Result<usize, (Error, Vec<Payload>)> {
        match self {
            Self::ZeroMq(client) => client.forward(meta, payloads, Some(wait)),
        }
    }
}

/// The contract's thread rule, checked when the crate compiles.
const _: fn() = || {
    fn shared_by_threads<T: Send + Sync>() {}
    shared_by_threads::<Link>();
};
