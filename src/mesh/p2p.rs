//! Point to point: messages by rank and tag, matched by source and tag as MPI's are, of any plain-data
//! element type.

#![forbid(unsafe_code)]

use std::time::Duration;

use bytemuck::Pod;

use super::collectives::buffers::{fill, Buffer};
use super::net::envelope::Channel;
use super::net::matching::Incoming;
use super::types::{Message, Rank, Source, Tag};
use super::Mesh;
use crate::bulk::Bulk;
use crate::error::{Error, Result};
use crate::transport::same_node::SHORT_MAX;

impl Mesh {
    /// Sends `data` (bytes, or a slice of any plain-data type, as its bytes) to `to` with `tag`. Returns
    /// once the message is queued; fails after the send timeout when the peer takes nothing. A send to
    /// `to` started in a [`Scope`](super::Scope) and not yet gone goes first.
    pub fn send<T: Pod>(&self, to: Rank, tag: Tag, data: &[T]) -> Result<()> {
        self.after_started_sends(to)?;
        self.send_now(to, tag, data)
    }

    /// Sends `data` to `to` at once (see [`Mesh::send`]), without waiting for sends started earlier.
    pub(crate) fn send_now<T: Pod>(&self, to: Rank, tag: Tag, data: &[T]) -> Result<()> {
        let bytes = bytemuck::cast_slice(data);
        if self.send_short(to, tag, bytes)? {
            return Ok(());
        }
        let channel = self.channel(tag);
        self.job.send_bulks(self.group.job_rank(to), channel, vec![Bulk::source(bytes, Default::default())])
    }

    /// Sends `data` to `to` as one short message, when it has a short form and the link carries it now
    /// (without waiting); false when it did not send it.
    pub(crate) fn send_short(&self, to: Rank, tag: Tag, data: &[u8]) -> Result<bool> {
        let (link, channel) = (self.link_to(to)?, self.channel(tag));
        let job = &*self.job;
        job.send_short(link, channel, &[data]).map_err(|e| job.send_failed(e, self.group.job_rank(to)))
    }

    /// Waits until the sends to `to` started in scopes before now have gone (within the mesh's
    /// timeout: they fail by their own deadline).
    fn after_started_sends(&self, to: Rank) -> Result<()> {
        let job_to = self.job_rank(to)?;
        match self.job.send_order.wait_clear(job_to, self.job.config.timeout) {
            true => Ok(()),
            false => Err(Error::Timeout {
                op: "send (behind sends started before it)",
                after: self.job.config.timeout,
                peer: Some(self.job.describe(job_to)),
            }),
        }
    }

    /// As [`Mesh::send`], giving `data` away: it moves into the outgoing message without a copy (a borrowed
    /// slice is copied once, because ZeroMQ sends after the call returns).
    pub fn send_owned(&self, to: Rank, tag: Tag, data: Vec<u8>) -> Result<()> {
        self.after_started_sends(to)?;
        // A small message on a shared-memory link takes the fast path, copied into the peer's ring.
        if data.len() <= SHORT_MAX && self.send_short(to, tag, &data)? {
            return Ok(());
        }
        let channel = self.channel(tag);
        self.job.send_bulks(self.group.job_rank(to), channel, vec![Bulk::owned(data, Default::default())])
    }

    /// Receives the next message with `tag` from `from`, waiting up to the mesh's timeout.
    pub fn recv(&self, from: Source, tag: Tag) -> Result<Message> {
        self.recv_timeout(from, tag, self.job.config.timeout)
    }

    /// Receives the next message with `tag` from `from`, waiting up to `timeout`.
    pub fn recv_timeout(&self, from: Source, tag: Tag, timeout: Duration) -> Result<Message> {
        let from = match from {
            Source::Rank(rank) => Source::Rank(self.job_rank(rank)?),
            Source::Any => Source::Any,
        };
        let slot = self.job.post((self.group.id, tag, from), 0, None)?;
        let incoming = self.job.wait_posted(&slot, from, "receive", timeout)?;
        self.message(incoming, tag)
    }

    /// The message `incoming` of this mesh with `tag`, its source this mesh's rank.
    pub(crate) fn message(&self, incoming: Incoming, tag: Tag) -> Result<Message> {
        let source = self.group.rank_of(incoming.source).ok_or_else(|| Error::BadPeerMessage {
            rank: incoming.source.0,
            op: "receive",
            reason: "a message of this mesh from a rank outside it".into(),
        })?;
        Ok(Message { source, tag, payload: incoming.payloads.into_iter().next() })
    }

    /// Receives the next message with `tag` from `from` into `buffer`; returns its source and length in
    /// bytes. A `Vec<T>` grows or shrinks to the message (for a receiver that does not know its length
    /// up front); a slice must hold it, else the message is an error (and is consumed, as MPI does).
    /// The message must make whole elements of `T`.
    pub fn recv_into<B: Buffer + ?Sized>(
        &self,
        from: Source,
        tag: Tag,
        buffer: &mut B,
    ) -> Result<(Rank, usize)> {
        let message = self.recv(from, tag)?;
        let len = fill("receive", buffer, message.data())?;
        Ok((message.source, len))
    }

    /// The channel of this mesh's messages with `tag`.
    fn channel(&self, tag: Tag) -> Channel {
        Channel::User(self.group.id, tag)
    }

    /// The link to this mesh's rank `to`.
    fn link_to(&self, to: Rank) -> Result<&super::net::link::Link> {
        self.job.link(self.job_rank(to)?)
    }
}
