//! The seed's two-phase receive (`recv_metadata`, then `recv_bulks`) on top of whole [`Received`]
//! messages: the message whose metadata a thread received stays pending **for that thread** until the
//! same thread reads its bulks, so threads sharing one server never take each other's messages. Pending
//! messages live in thread-local storage, so a thread that ends with one pending leaves nothing behind.

#![forbid(unsafe_code)]

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use super::{Payload, Received};
use crate::error::{Error, Result};
use crate::event::Event;
use crate::meta::Metadata;

thread_local! {
    /// This thread's pending message of each server (by [`TwoPhase::id`]); dropped with the thread.
    static PENDING: RefCell<HashMap<u64, Received>> = RefCell::new(HashMap::new());
}

/// One server's two-phase state: the key of its pending messages in each thread's storage.
#[derive(Debug)]
pub(crate) struct TwoPhase {
    id: u64,
}

impl Default for TwoPhase {
    fn default() -> Self {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        Self { id: NEXT.fetch_add(1, Ordering::Relaxed) }
    }
}

impl Drop for TwoPhase {
    fn drop(&mut self) {
        // Other threads' pending messages of this server go when those threads end.
        let _ = PENDING.try_with(|pending| pending.borrow_mut().remove(&self.id));
    }
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
        let unread = PENDING.with(|pending| pending.borrow().get(&self.id).map_or(0, Received::bulk_count));
        if unread > 0 {
            return Event::failed(Error::BulksPending(unread));
        }
        self.discard();
        let received = match receive(timeout) {
            Ok(received) => received,
            Err(Error::Timeout { after, .. }) => return Event::timed_out(after),
            Err(error) => return Event::failed(error),
        };
        match received.read_metadata(meta) {
            Ok(len) => {
                PENDING.with(|pending| pending.borrow_mut().insert(self.id, received));
                Event::done(len)
            }
            Err(error) => Event::failed(error),
        }
    }

    /// Takes this thread's pending message out.
    fn take(&self) -> Result<Received> {
        PENDING.with(|pending| pending.borrow_mut().remove(&self.id)).ok_or(Error::NoPendingMessage)
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
