//! Receives posted ahead of their messages, as MPI posts them: each point-to-point receive is posted
//! first, and whichever thread of the process takes a message in from the server (a waiting receive, a
//! collective, a send that waits, the lane of a [`Scope`](crate::mesh::Scope)) puts it in the slot of
//! the first posted receive it matches, in posting order. A receive waits for its slot; a message no
//! receive was posted for waits in the matching queue until one is.

#![forbid(unsafe_code)]

use std::sync::Arc;
use std::time::Instant;

use super::envelope::{Channel, GroupId};
use super::matching::{Incoming, Loss};
use crate::mesh::types::{Source, Tag};
use crate::sync::Completion;

/// A receive posted in the matching queue: what it admits, and where its message goes.
#[derive(Debug)]
pub(crate) struct Posted {
    pub(crate) group: GroupId,
    pub(crate) tag: Tag,
    /// The sender admitted, a rank of the job's mesh (or any).
    pub(crate) from: Source,
    pub(crate) slot: Arc<Slot>,
}

impl Posted {
    /// Whether this receive takes `message`.
    pub(crate) fn admits(&self, message: &Incoming) -> bool {
        matches!(message.channel, Channel::User(group, tag) if group == self.group && tag == self.tag)
            && self.from.admits(message.source)
    }
}

/// Where a posted receive's message lands: set once, by whichever thread took the message in (or
/// found the receive failed).
#[derive(Debug)]
pub(crate) struct Slot {
    /// Tells this receive from every other posted in the process.
    pub(crate) id: u64,
    /// The scope whose request posted it (0: a blocking receive), to withdraw when the scope ends.
    pub(crate) owner: u64,
    /// When a receive that nobody may be waiting on fails (`None`: its waiter keeps the deadline).
    pub(crate) deadline: Option<Instant>,
    pub(crate) landed: Completion<Landed>,
}

/// How a posted receive ended.
#[derive(Debug)]
pub(crate) enum Landed {
    /// Its message came.
    Message(Incoming),
    /// A rank of the mesh was lost: every receive fails.
    Lost(Loss),
    /// Its deadline passed first.
    Expired,
}
