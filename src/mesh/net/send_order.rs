//! The order of this rank's sends to each rank: a send started in a scope and queued on its lane is
//! ahead of every later send to the same rank, blocking or started (MPI's rule that messages from one
//! sender to one receiver are matched in the order they were sent). A later send waits until those
//! queued before it to the same rank have gone.

#![forbid(unsafe_code)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

use crate::mesh::types::Rank;
use crate::sync::lock;

/// How many sends to each rank (by its rank in the job) are queued on a lane.
#[derive(Debug)]
pub(crate) struct SendOrder {
    queued: Vec<AtomicUsize>,
    gate: Mutex<()>,
    gone: Condvar,
}

/// A send to `to` queued on a lane: until it is dropped (the send done, failed or unwound), later
/// sends to `to` wait.
#[derive(Debug)]
pub(crate) struct Queued<'o> {
    order: &'o SendOrder,
    to: Rank,
}

impl SendOrder {
    pub(crate) fn new(ranks: usize) -> Self {
        Self {
            queued: (0..ranks).map(|_| AtomicUsize::new(0)).collect(),
            gate: Mutex::new(()),
            gone: Condvar::new(),
        }
    }

    /// Whether no send to `to` is queued on a lane.
    pub(crate) fn clear(&self, to: Rank) -> bool {
        self.queued[to.0].load(Ordering::Acquire) == 0
    }

    /// Counts a send to `to` queued on a lane, until the guard is dropped.
    pub(crate) fn queue(&self, to: Rank) -> Queued<'_> {
        self.queued[to.0].fetch_add(1, Ordering::AcqRel);
        Queued { order: self, to }
    }

    /// Waits up to `timeout` until no send to `to` is queued on a lane; false when some still is.
    pub(crate) fn wait_clear(&self, to: Rank, timeout: Duration) -> bool {
        if self.clear(to) {
            return true;
        }
        let deadline = Instant::now() + timeout;
        let mut gate = lock(&self.gate);
        while !self.clear(to) {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            gate = self.gone.wait_timeout(gate, left).unwrap_or_else(|p| p.into_inner()).0;
        }
        true
    }
}

impl Drop for Queued<'_> {
    fn drop(&mut self) {
        if self.order.queued[self.to.0].fetch_sub(1, Ordering::AcqRel) == 1 {
            let _gate = lock(&self.order.gate);
            self.order.gone.notify_all();
        }
    }
}
