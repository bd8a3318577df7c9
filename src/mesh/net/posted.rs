//! Receives posted ahead of their messages, as MPI posts them: each point-to-point receive is posted
//! first, and whichever thread of the process takes a message in from the server (a waiting receive, a
//! collective, a send that waits, the progress lane of a [`Scope`](crate::mesh::Scope)) puts it in the
//! slot of the first posted receive it matches, in posting order. A receive waits for its slot; a
//! message no receive was posted for waits in the matching queue until one is.

#![forbid(unsafe_code)]

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::task::Waker;
use std::time::Duration;

use super::envelope::{Channel, GroupId};
use super::matching::Incoming;
use crate::mesh::types::{Source, Tag};
use crate::sync::lock;

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
    /// Whether this receive takes a message of `channel` from the job's rank of `message`.
    pub(crate) fn admits(&self, message: &Incoming) -> bool {
        matches!(message.channel, Channel::User(group, tag) if group == self.group && tag == self.tag)
            && self.from.admits(message.source)
    }
}

/// Where a posted receive's message lands: filled once, by whichever thread took the message in.
#[derive(Debug)]
pub(crate) struct Slot {
    /// Tells this receive from every other posted in the process.
    pub(crate) id: u64,
    filled: AtomicBool,
    message: Mutex<Option<Incoming>>,
    arrived: Condvar,
    /// The task to wake when the message lands (a request awaited as a future).
    waker: Mutex<Option<Waker>>,
}

impl Slot {
    pub(crate) fn new(id: u64) -> Self {
        Self {
            id,
            filled: AtomicBool::new(false),
            message: Mutex::new(None),
            arrived: Condvar::new(),
            waker: Mutex::new(None),
        }
    }

    /// Puts the receive's message in, and wakes whoever waits for it.
    pub(crate) fn fill(&self, message: Incoming) {
        *lock(&self.message) = Some(message);
        self.filled.store(true, Ordering::Release);
        self.arrived.notify_all();
        if let Some(waker) = lock(&self.waker).take() {
            waker.wake();
        }
    }

    /// Whether the message has landed (and was not taken yet).
    pub(crate) fn is_filled(&self) -> bool {
        self.filled.load(Ordering::Acquire)
    }

    /// The message, once it landed (only once).
    pub(crate) fn take(&self) -> Option<Incoming> {
        if !self.is_filled() {
            return None;
        }
        lock(&self.message).take()
    }

    /// Waits up to `timeout` for the message to land (another thread takes it in).
    pub(crate) fn wait_filled(&self, timeout: Duration) {
        let message = lock(&self.message);
        if message.is_none() {
            let _ = self.arrived.wait_timeout(message, timeout);
        }
    }

    /// Wakes `waker` when the message lands (at once when it has).
    pub(crate) fn wake_when_filled(&self, waker: &Waker) {
        *lock(&self.waker) = Some(waker.clone());
        if self.is_filled() {
            if let Some(waker) = lock(&self.waker).take() {
                waker.wake();
            }
        }
    }
}
