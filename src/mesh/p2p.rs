//! Point to point: messages by rank and tag, matched by source and tag as MPI's are.

#![forbid(unsafe_code)]

use std::time::Duration;

use super::net::envelope::Channel;
use super::net::matching::Want;
use super::types::{Message, Rank, Source, Tag};
use super::Mesh;
use crate::bulk::Bulk;
use crate::error::{Error, Result};
use crate::transport::same_node::SHORT_MAX;

impl Mesh {
    /// Sends `data` to `to` with `tag`. Returns once the message is queued; fails after the send timeout
    /// when the peer takes nothing.
    pub fn send(&self, to: Rank, tag: Tag, data: &[u8]) -> Result<()> {
        self.send_on(to, Channel::User(tag), &[data])
    }

    /// As [`Mesh::send`], giving `data` away: it moves into the outgoing message without a copy (a borrowed
    /// slice is copied once, because ZeroMQ sends after the call returns).
    pub fn send_owned(&self, to: Rank, tag: Tag, data: Vec<u8>) -> Result<()> {
        // A small message on a shared-memory link takes the fast path, copied into the peer's ring.
        let short =
            |link| self.send_short(link, Channel::User(tag), &[&data]).map_err(|e| self.send_failed(e, to));
        if data.len() <= SHORT_MAX && short(self.link(to)?)? {
            return Ok(());
        }
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

    fn send_on(&self, to: Rank, channel: Channel, parts: &[&[u8]]) -> Result<()> {
        let link = self.link(to)?;
        if self.send_short(link, channel, parts).map_err(|e| self.send_failed(e, to))? {
            return Ok(());
        }
        self.send_bulks(to, channel, parts.iter().map(|p| Bulk::source(p, Default::default())).collect())
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
