//! The seed's two-phase receive (`recv_metadata`, then `recv_bulks`) on top of whole [`Received`]
//! messages: the message whose metadata a thread received stays pending **for that thread** until the
//! same thread reads its bulks, so threads sharing one server never take each other's messages.

#![forbid(unsafe_code)]

use std::collections::HashMap;
use std::sync::Mutex;
use std::thread::ThreadId;
use std::time::Duration;

use super::{Payload, Received};
use crate::error::{Error, Result};
use crate::event::Event;
use crate::meta::Metadata;
use crate::sync::lock;

/// The pending message of each thread that received metadata and has not read its bulks yet.
#[derive(Debug, Default)]
pub(crate) struct TwoPhase {
    pending: Mutex<HashMap<ThreadId, Received>>,
}

impl TwoPhase {
    /// Receives the next message with `receive` (waiting up to `timeout`), fills `meta` with its metadata
    /// and keeps it pending for this thread. Fails when this thread still has bulks unread; a pending
    /// message without bulks is let go (it has nothing left to read).
    pub(crate) fn recv_metadata(
        &self,
        meta: &mut dyn Metadata,
        timeout: Duration,
        receive: impl FnOnce(Duration) -> Result<Received>,
    ) -> Event {
        let me = std::thread::current().id();
        let unread = lock(&self.pending).get(&me).map_or(0, Received::bulk_count);
        if unread > 0 {
            return Event::failed(Error::BulksPending(unread));
        }
        lock(&self.pending).remove(&me);
        let received = match receive(timeout) {
            Ok(received) => received,
            Err(Error::Timeout { after, .. }) => return Event::timed_out(after),
            Err(error) => return Event::failed(error),
        };
        match received.read_metadata(meta) {
            Ok(len) => {
                lock(&self.pending).insert(me, received);
                Event::done(len)
            }
            Err(error) => Event::failed(error),
        }
    }

    /// Takes this thread's pending message out.
    fn take(&self) -> Result<Received> {
        lock(&self.pending).remove(&std::thread::current().id()).ok_or(Error::NoPendingMessage)
    }

    /// Copies this thread's pending message's bulks into `meta`; the message is consumed either way.
    pub(crate) fn recv_bulks(&self, meta: &mut dyn Metadata) -> Event {
        self.take().and_then(|received| received.recv_bulks(meta)).into()
    }

    /// This thread's pending message's bulks sent by value.
    pub(crate) fn take_bulks(&self) -> Result<Vec<Payload>> {
        self.take().map(Received::into_payloads)
    }

    /// Drops this thread's pending message; returns how many bulks it had.
    pub(crate) fn discard(&self) -> usize {
        self.take().map_or(0, |received| received.bulk_count())
    }
}
