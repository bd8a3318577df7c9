//! Waiting for the other side without stealing the cores: a short spin, then a futex wait on a word
//! in the segment, in slices so that the peer's liveness is checked while waiting, up to a deadline.
//!
//! A [`Signal`] is a pair of words in shared memory: a counter the notifier bumps after making
//! something ready, and the count of sleepers, so that a notifier pays for the `futex` wake system call
//! only when someone sleeps. Either word may hold garbage written by a hostile peer: that can only cause
//! spurious wake-ups or a wake call too many, never a missed deadline.
//!
//! A waiter may also [`Watch`] a second signal (the mesh watches its own server's doorbell while a send
//! waits for the peer): one `futex_waitv` sleeps on both words, and when the watched one moves the
//! watcher's callback runs before the wait goes on. Kernels before 5.16 lack `futex_waitv`; there the
//! sleep is cut into slices of [`WATCH_SLICE`] and the watched word is looked at between them.

#![forbid(unsafe_code)]

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering::Relaxed, Ordering::SeqCst};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use rustix::io::Errno;
use rustix::thread::futex;

use crate::error::Result;

/// How long a waiter spins before it sleeps. A futex wake-up costs several times what a spin that finds
/// the event costs (docs/BENCHMARKS.md has the figures), so a waiter spins first; 20 us covers a round
/// trip of the other side without spinning long when more processes than cores compete (the spin yields
/// the core every few iterations, as MPI does when oversubscribed).
pub(super) const SPIN: Duration = Duration::from_micros(20);
/// The spin while this process was found oversubscribed lately: about one look at the word.
const SPIN_OVERSUBSCRIBED: Duration = Duration::from_micros(1);
/// A gap this long between two looks while spinning means the core went to another process: more
/// processes want the cores than there are, and spinning only delays the one that would answer.
const PREEMPTED: Duration = Duration::from_micros(5);
/// Preemptions in spins of this process within one [`WINDOW`] that tell it is oversubscribed (one alone
/// may be an interrupt or a passing process); the spins of this process are then short until the window
/// after ends.
const PREEMPTIONS_TO_TELL: u32 = 8;
/// The window in which preemptions are counted.
const WINDOW: Duration = Duration::from_millis(10);
/// Iterations between two looks at the clock while spinning.
const CLOCK_EVERY: u32 = 8;
/// Iterations between two yields of the core while spinning.
const YIELD_EVERY: u32 = 64;
/// The longest sleep between two checks of the peer's liveness.
pub(super) const LIVENESS_PERIOD: Duration = Duration::from_millis(50);

/// Without `futex_waitv`: the longest sleep on the own word before the watched word is looked at.
const WATCH_SLICE: Duration = Duration::from_micros(200);

/// A second signal to watch while waiting for one's own, and what to do when it moves: the callback
/// returns whether it did its work (false: it could not now, and is called again, at least every
/// [`WATCH_SLICE`]).
pub(crate) struct Watch<'w> {
    signal: Signal<'w>,
    /// The watched word's value when the callback last did its work (or the watch began).
    seen: u32,
    /// The callback could not do its work after the word last moved.
    owed: bool,
    moved: &'w mut dyn FnMut() -> Result<bool>,
}

impl<'w> Watch<'w> {
    pub(super) fn new(signal: Signal<'w>, moved: &'w mut dyn FnMut() -> Result<bool>) -> Self {
        Self { seen: signal.word.load(SeqCst), owed: false, signal, moved }
    }

    /// Runs the callback if the watched word moved since it last did its work.
    fn poll(&mut self) -> Result<()> {
        let now = self.signal.word.load(SeqCst);
        if now != self.seen || self.owed {
            self.owed = !(self.moved)()?;
            if !self.owed {
                self.seen = now;
            }
        }
        Ok(())
    }
}

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
    /// `check` (the peer's liveness) runs every [`LIVENESS_PERIOD`] of sleep. With a `watch`, its
    /// callback runs whenever the watched word moved, and its errors end the wait.
    pub(super) fn wait<T>(
        &self,
        deadline: Option<Instant>,
        mut ready: impl FnMut() -> Result<Option<T>>,
        mut check: impl FnMut() -> Result<()>,
        mut watch: Option<&mut Watch<'_>>,
    ) -> Result<Option<T>> {
        let watched_signal = watch.as_deref().map(|w| w.signal);
        let owed = std::cell::Cell::new(false);
        // What is awaited first: an answer already there is not lost to an error of the watch.
        let mut ready = || {
            if let Some(value) = ready()? {
                return Ok(Some(value));
            }
            if let Some(watch) = watch.as_deref_mut() {
                watch.poll()?;
                owed.set(watch.owed);
            }
            Ok(None)
        };
        if let Some(value) = spin(&mut ready)? {
            return Ok(Some(value));
        }
        let mut checked = Instant::now();
        loop {
            let seen = self.word.load(SeqCst);
            let watched = watched_signal.map(|signal| (signal, signal.word.load(SeqCst)));
            self.sleepers.fetch_add(1, SeqCst);
            watched.iter().for_each(|(signal, _)| _ = signal.sleepers.fetch_add(1, SeqCst));
            // A watch whose callback could not do its work is called again soon, whatever rings.
            let longest = if owed.get() { WATCH_SLICE } else { LIVENESS_PERIOD };
            let watched_words = watched.map(|(s, v)| (s.word, v));
            let outcome = self.sleep_unless_ready(seen, watched_words, deadline, longest, &mut ready);
            watched.iter().for_each(|(signal, _)| _ = signal.sleepers.fetch_sub(1, SeqCst));
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

    /// One slice of sleep (woken by this word moving from `seen`, or the watched word from its value),
    /// unless `ready` has a value or the deadline passed (then their outcome).
    fn sleep_unless_ready<T>(
        &self,
        seen: u32,
        watched: Option<(&AtomicU32, u32)>,
        deadline: Option<Instant>,
        longest: Duration,
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
        let slice = left.min(longest);
        match watched {
            None => sleep_on(self.word, seen, slice),
            Some(other) => sleep_on_either([(self.word, seen), other], slice),
        }
        None
    }
}

/// Sleeps up to `slice` (below a second) while `word` holds `seen`.
fn sleep_on(word: &AtomicU32, seen: u32, slice: Duration) {
    let timeout = futex::Timespec { tv_sec: 0, tv_nsec: i64::from(slice.subsec_nanos()) };
    // Shared between processes: not FUTEX_PRIVATE. EAGAIN (the word moved on), EINTR and ETIMEDOUT all
    // mean: look again.
    let _ = futex::wait(word, futex::Flags::empty(), seen, Some(&timeout));
}

/// Sleeps up to `slice` while both words hold their values (one `futex_waitv`); without it (kernels
/// before 5.16), sleeps on the first word for at most [`WATCH_SLICE`].
fn sleep_on_either(words: [(&AtomicU32, u32); 2], slice: Duration) {
    static MISSING: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    if !MISSING.load(Relaxed) {
        let waiters = words.map(|(word, value)| {
            let mut waiter = futex::Wait::new();
            waiter.val = u64::from(value);
            waiter.uaddr = futex::WaitPtr::new(word.as_ptr().cast());
            waiter.flags = futex::WaitFlags::SIZE_U32;
            waiter
        });
        // futex_waitv takes an absolute time on the monotonic clock.
        let now = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
        let nanos = now.tv_nsec + i64::from(slice.subsec_nanos());
        let until =
            futex::Timespec { tv_sec: now.tv_sec + nanos / 1_000_000_000, tv_nsec: nanos % 1_000_000_000 };
        match futex::waitv(&waiters, futex::WaitvFlags::empty(), Some(&until), futex::ClockId::Monotonic) {
            // A wake, a word that moved, the time, a signal: look again.
            Ok(_) | Err(Errno::AGAIN | Errno::TIMEDOUT | Errno::INTR) => return,
            // ENOSYS before Linux 5.16; EPERM or EINVAL where a sandbox refuses the call: never ask
            // again (a call failing at once would make every sleep a spin).
            Err(_) => MISSING.store(true, Relaxed),
        }
    }
    let (word, seen) = words[0];
    sleep_on(word, seen, slice.min(WATCH_SLICE));
}

/// Spins until `ready` gives a value or the spin budget is spent (`Ok(None)`). The budget is [`SPIN`],
/// or [`SPIN_OVERSUBSCRIBED`] while this process is oversubscribed: when spins of it were preempted
/// [`PREEMPTIONS_TO_TELL`] times within a [`WINDOW`] (a cheap test that counts only processes competing
/// for this process's cores, as the scheduler finds them). A spin that finds itself preempted ends at
/// once: the core is wanted elsewhere, perhaps by the process that would answer.
fn spin<T>(ready: &mut impl FnMut() -> Result<Option<T>>) -> Result<Option<T>> {
    if let Some(value) = ready()? {
        return Ok(Some(value)); // before the clock is read: it costs as much as a look
    }
    let start = Instant::now();
    let budget = if oversubscribed(start) { SPIN_OVERSUBSCRIBED } else { SPIN };
    let (mut spins, mut last) = (0u32, start);
    loop {
        if let Some(value) = ready()? {
            return Ok(Some(value));
        }
        spins += 1;
        // The clock costs as much as a look at the words: it is read every few looks.
        if spins.is_multiple_of(CLOCK_EVERY) {
            let now = Instant::now();
            if now - last >= PREEMPTED {
                note_preempted(now);
                return Ok(None);
            }
            if now - start >= budget {
                return Ok(None);
            }
            last = now;
        }
        if spins.is_multiple_of(YIELD_EVERY) {
            std::thread::yield_now();
        } else {
            std::hint::spin_loop();
        }
    }
}

/// Nanoseconds from this process's first look at the clock here to `now` (for the atomics below).
fn nanos(now: Instant) -> u64 {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    let epoch = *EPOCH.get_or_init(Instant::now);
    now.saturating_duration_since(epoch).as_nanos() as u64
}

/// When the current window of preemptions began ([`nanos`]), and how many it has counted.
static WINDOW_START: AtomicU64 = AtomicU64::new(0);
static PREEMPTIONS: AtomicU32 = AtomicU32::new(0);

fn note_preempted(now: Instant) {
    let now = nanos(now);
    if now.saturating_sub(WINDOW_START.load(Relaxed)) > WINDOW.as_nanos() as u64 {
        WINDOW_START.store(now, Relaxed);
        PREEMPTIONS.store(1, Relaxed);
    } else {
        PREEMPTIONS.fetch_add(1, Relaxed);
    }
}

/// True when the spins of this process were preempted often in the current window or the one before.
fn oversubscribed(now: Instant) -> bool {
    let since = nanos(now).saturating_sub(WINDOW_START.load(Relaxed));
    PREEMPTIONS.load(Relaxed) >= PREEMPTIONS_TO_TELL && since < 2 * WINDOW.as_nanos() as u64
}

/// The deadline `timeout` from now (`None`: no deadline); a timeout past what an `Instant` holds is
/// [`far_future`].
pub(super) fn deadline_after(timeout: Option<Duration>) -> Option<Instant> {
    timeout.map(|t| Instant::now().checked_add(t).unwrap_or_else(far_future))
}

/// An instant no wait reaches: the deadline of a wait without one.
pub(super) fn far_future() -> Instant {
    Instant::now() + Duration::from_secs(1 << 30)
}
