//! Waiting for the other side without stealing the cores: a short spin, then a futex wait on a word
//! in the segment, in slices so that the peer's liveness is checked while waiting, up to a deadline.
//!
//! A [`Signal`] is a pair of words in shared memory: a counter the notifier bumps after making
//! something ready, and the count of sleepers, so that a notifier pays for the `futex` wake system call
//! only when someone sleeps. Either word may hold garbage written by a hostile peer: that can only cause
//! spurious wake-ups or a wake call too many, never a missed deadline.

#![forbid(unsafe_code)]

use std::sync::atomic::{AtomicU32, Ordering::SeqCst};
use std::time::{Duration, Instant};

use rustix::thread::futex;

use crate::error::Result;

/// How long a waiter spins before it sleeps. A futex wake-up costs about 5 us one way on this machine
/// (2 cores), a spin that finds the event a few hundred nanoseconds; 20 us covers a round trip of the
/// other side without spinning long when more processes than cores compete (the spin yields the core
/// every few iterations, as MPI does when oversubscribed).
pub(super) const SPIN: Duration = Duration::from_micros(20);
/// Iterations between two yields of the core while spinning.
const YIELD_EVERY: u32 = 64;
/// The longest sleep between two checks of the peer's liveness.
pub(super) const LIVENESS_PERIOD: Duration = Duration::from_millis(50);

/// A futex word with its sleeper count, both in shared memory.
#[derive(Clone, Copy)]
pub(super) struct Signal<'q> {
    pub(super) word: &'q AtomicU32,
    pub(super) sleepers: &'q AtomicU32,
}

impl Signal<'_> {
    /// Wakes whoever waits on this signal; call it after making the awaited state visible.
    pub(super) fn notify(&self) {
        self.word.fetch_add(1, SeqCst);
        if self.sleepers.load(SeqCst) != 0 {
            // Shared between processes: not FUTEX_PRIVATE. Waking nobody is not an error.
            let _ = futex::wake(self.word, futex::Flags::empty(), u32::MAX);
        }
    }

    /// Waits until `ready` gives a value, `deadline` passes (`Ok(None)`), or `check` fails (its error).
    /// `check` (the peer's liveness) runs every [`LIVENESS_PERIOD`] of sleep.
    pub(super) fn wait<T>(
        &self,
        deadline: Option<Instant>,
        mut ready: impl FnMut() -> Result<Option<T>>,
        mut check: impl FnMut() -> Result<()>,
    ) -> Result<Option<T>> {
        let start = Instant::now();
        let mut spins = 0u32;
        while start.elapsed() < SPIN {
            if let Some(value) = ready()? {
                return Ok(Some(value));
            }
            spins += 1;
            if spins.is_multiple_of(YIELD_EVERY) {
                std::thread::yield_now();
            } else {
                std::hint::spin_loop();
            }
        }
        let mut checked = Instant::now();
        loop {
            let seen = self.word.load(SeqCst);
            self.sleepers.fetch_add(1, SeqCst);
            let outcome = self.sleep_unless_ready(seen, deadline, &mut ready);
            self.sleepers.fetch_sub(1, SeqCst);
            if let Some(outcome) = outcome {
                return outcome;
            }
            if checked.elapsed() >= LIVENESS_PERIOD {
                check()?;
                checked = Instant::now();
            }
        }
    }

    /// One slice of sleep, unless `ready` has a value or the deadline passed (then their outcome).
    fn sleep_unless_ready<T>(
        &self,
        seen: u32,
        deadline: Option<Instant>,
        ready: &mut impl FnMut() -> Result<Option<T>>,
    ) -> Option<Result<Option<T>>> {
        match ready() {
            Ok(None) => {}
            other => return Some(other),
        }
        let now = Instant::now();
        let left = match deadline {
            Some(deadline) if now >= deadline => return Some(Ok(None)),
            Some(deadline) => deadline - now,
            None => LIVENESS_PERIOD,
        };
        let slice = left.min(LIVENESS_PERIOD);
        let timeout = futex::Timespec { tv_sec: 0, tv_nsec: i64::from(slice.subsec_nanos()) };
        // EAGAIN (the word moved on), EINTR and ETIMEDOUT all mean: look again.
        let _ = futex::wait(self.word, futex::Flags::empty(), seen, Some(&timeout));
        None
    }
}

/// The deadline `timeout` from now (`None`: no deadline).
pub(super) fn deadline_after(timeout: Option<Duration>) -> Option<Instant> {
    timeout.map(|t| {
        Instant::now().checked_add(t).unwrap_or_else(|| Instant::now() + Duration::from_secs(1 << 30))
    })
}
