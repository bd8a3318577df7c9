//! Matching received mesh messages to what a receive asks for, keeping early arrivals for later.

#![forbid(unsafe_code)]

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::{Rank, Tag};
use crate::error::{Error, Result};
use crate::meta::LbmMeta;
use crate::transport::{Payload, Server, ZeroMqServer};

/// Which stream of messages a mesh message belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum Channel {
    /// Point-to-point messages of the application, by tag.
    User(Tag),
    /// The collective with this sequence number (every rank counts its collectives alike).
    Collective(u64),
    /// A notice that the sender lost this rank (it waited for it past its deadline).
    PeerLost(u32),
    /// A notice that the sender's deadline passed while it waited for this rank in a collective: the
    /// sender is alive, so a rank waiting for the sender should blame this one instead.
    WaitingOn(u32),
}

/// What every mesh message carries in its metadata.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Envelope {
    /// The job token drawn at bootstrap; messages without it are not ours.
    pub(crate) token: u64,
    /// The sending rank.
    pub(crate) source: u32,
    /// The channel, `None` only in a default value never sent.
    pub(crate) channel: Option<Channel>,
    /// The sender failed in this collective; the payload says why.
    pub(crate) failed: bool,
}

/// Why a receive ended without a message.
#[derive(Debug)]
pub(crate) enum Receive {
    /// A rank of the mesh is known lost.
    Lost(Loss),
    /// The transport failed.
    Failed(crate::error::Error),
}

/// One received mesh message.
#[derive(Debug)]
pub(crate) struct Incoming {
    pub(crate) source: Rank,
    pub(crate) channel: Channel,
    pub(crate) failed: bool,
    pub(crate) payloads: Vec<Payload>,
}

/// A rank this mesh lost, and who found out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Loss {
    pub(crate) lost: Rank,
    pub(crate) reporter: Rank,
}

/// The server's messages not yet asked for, a count of messages rejected as not from this mesh, the
/// first rank known lost (once one is, every receive fails at once: the mesh is broken, as an MPI job
/// whose rank died is), and which rank each rank last said it was stuck waiting for.
#[derive(Debug, Default)]
pub(crate) struct Mailbox {
    unexpected: VecDeque<Incoming>,
    rejected: u64,
    loss: Option<Loss>,
    waiting_on: HashMap<Rank, Rank>,
}

impl Mailbox {
    /// Returns the first message (queued or arriving within `timeout`) for which `wanted` holds.
    pub(crate) fn receive(
        &mut self,
        server: &ZeroMqServer,
        token: u64,
        size: usize,
        timeout: Duration,
        wanted: impl Fn(Rank, Channel) -> bool,
    ) -> Result<Option<Incoming>, Receive> {
        if let Some(i) = self.unexpected.iter().position(|m| wanted(m.source, m.channel)) {
            return Ok(self.unexpected.remove(i));
        }
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(loss) = self.loss {
                return Err(Receive::Lost(loss));
            }
            let left = deadline.saturating_duration_since(Instant::now());
            let Some(message) = self.next_message(server, token, size, left).map_err(Receive::Failed)? else {
                if left.is_zero() {
                    return Ok(None);
                }
                continue;
            };
            match message.channel {
                Channel::PeerLost(lost) => {
                    self.record_loss(Loss { lost: Rank(lost as usize), reporter: message.source });
                    continue;
                }
                Channel::WaitingOn(rank) if (rank as usize) < size => {
                    self.waiting_on.insert(message.source, Rank(rank as usize));
                    continue;
                }
                Channel::WaitingOn(_) => continue,
                _ => {}
            }
            if wanted(message.source, message.channel) {
                return Ok(Some(message));
            }
            self.unexpected.push_back(message);
        }
    }

    /// Receives one message from the server; messages that are not from this mesh are logged, counted and
    /// dropped (`Ok(None)`), as is nothing arriving in time.
    fn next_message(
        &mut self,
        server: &ZeroMqServer,
        token: u64,
        size: usize,
        timeout: Duration,
    ) -> Result<Option<Incoming>> {
        let mut meta = LbmMeta::<Envelope>::default();
        let accepted = server.recv_metadata_timeout(&mut meta, timeout).into_poll().and_then(|got| {
            let Some(_) = got else { return Ok(None) };
            let payloads = server.take_bulks()?;
            let envelope = meta.custom;
            match envelope.channel {
                Some(channel) if envelope.token == token && (envelope.source as usize) < size => {
                    Ok(Some(Incoming {
                        source: Rank(envelope.source as usize),
                        channel,
                        failed: envelope.failed,
                        payloads,
                    }))
                }
                _ => Err(Error::Mesh(format!(
                    "message claims rank {} with job token {:#x}, not this job's",
                    envelope.source, envelope.token
                ))),
            }
        });
        match accepted {
            Ok(message) => Ok(message),
            Err(err @ (Error::Wire(_) | Error::Mesh(_))) => {
                self.rejected += 1;
                eprintln!("lightbeam: {}: dropped a message from outside the mesh: {err}", server.address());
                Ok(None)
            }
            Err(err) => Err(err),
        }
    }

    /// Remembers the first loss reported or found.
    pub(crate) fn record_loss(&mut self, loss: Loss) {
        self.loss.get_or_insert(loss);
    }

    /// The rank at the end of the chain of waits that starts at `suspect` (`suspect` waited past its
    /// deadline for a rank, which waited for another...): the one that does not say it is waiting.
    pub(crate) fn end_of_wait_chain(&self, suspect: Rank) -> Rank {
        let mut culprit = suspect;
        let mut seen = vec![suspect];
        while let Some(&next) = self.waiting_on.get(&culprit) {
            if seen.contains(&next) {
                break;
            }
            seen.push(next);
            culprit = next;
        }
        culprit
    }

    /// How many messages were rejected as not belonging to this mesh.
    pub(crate) fn rejected(&self) -> u64 {
        self.rejected
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_chain_of_waits_ends_at_the_rank_that_waits_for_nobody() {
        let mut mailbox = Mailbox::default();
        assert_eq!(mailbox.end_of_wait_chain(Rank(0)), Rank(0));
        // Rank 3 waits for 0, which says it waits for 1, which says it waits for 2.
        mailbox.waiting_on.insert(Rank(0), Rank(1));
        mailbox.waiting_on.insert(Rank(1), Rank(2));
        assert_eq!(mailbox.end_of_wait_chain(Rank(0)), Rank(2));
        // A cycle ends where it would repeat.
        mailbox.waiting_on.insert(Rank(2), Rank(0));
        assert_eq!(mailbox.end_of_wait_chain(Rank(0)), Rank(2));
    }
}
