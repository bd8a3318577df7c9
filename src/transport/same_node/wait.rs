//! Waiting for the other side without stealing the cores: poll, then yield the core, then sleep on a
//! futex word in the segment (in slices, so that the peer's liveness is checked while waiting), up to
//! a deadline.
//!
//! # Poll, yield, sleep
//!
//! A futex wake-up costs about 5 us between processes, and the waker a system call; a look at a word
//! that has already moved costs nanoseconds. So a waiter first **polls** (looks, with a pause between
//! looks); then **yields**: looks, and gives its core to any other runnable process between looks
//! (`sched_yield`: on a core nobody else wants it returns at once, on a crowded one the rank that has
//! work runs), as MPI's shared-memory path does when oversubscribed; and only then **sleeps**. Nothing
//! the notifier does changes between the phases: it wakes sleepers only when the word says there are
//! some.
//!
//! How long each phase lasts depends on how crowded the node is, as the mesh tells at bootstrap
//! ([`set_ranks_per_core`]: its ranks on this node against the node's online cores) and as the
//! waits find (a poll that finds itself preempted means others want the cores): on a node with a core
//! per rank a waiter polls 20 us; on a crowded one it polls about 1 us and yields instead, since a
//! polling waiter holds a core the rank it waits for may need. The yield phase lasts a few times the
//! typical wait of this process (an average of what its waits took, from [`YIELD_LEAST`] to
//! [`YIELD_MOST`]): a process whose peers answer in microseconds never sleeps, one whose peers compute
//! for seconds soon does.
//!
//! A [`Signal`] is a pair of words in shared memory: a counter the notifier bumps after making
//! something ready, and the count of sleepers, so that a notifier pays for the `futex` wake system
//! call only when someone sleeps. Either word may hold garbage written by a hostile peer: that can only
//! cause spurious wake-ups or a wake call too many, never a missed deadline.
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

/// How long a waiter polls on a node with a core for each rank: a round trip of the other side.
pub(super) const POLL: Duration = Duration::from_micros(20);
/// How long a waiter polls on a crowded node: a few looks.
const POLL_CROWDED: Duration = Duration::from_micros(1);
/// The shortest yield phase, however short the waits were.
pub(super) const YIELD_LEAST: Duration = Duration::from_micros(50);
/// The longest yield phase, however long the waits were: past it a waiter sleeps.
pub(super) const YIELD_MOST: Duration = Duration::from_millis(2);
/// The yield phase lasts this many times the typical wait.
const YIELD_TIMES_TYPICAL: u32 = 4;
/// A gap this long between two looks at the clock while polling ([`CLOCK_EVERY`] looks apart) means
/// the core went to another process: more processes want the cores than there are, and polling only
/// delays the one that would answer. (Slow looks are not preemptions: a scheduler's slice is
/// milliseconds long, far above this.)
const PREEMPTED: Duration = Duration::from_micros(40);
/// Preemptions in polls of this process within one [`WINDOW`] that tell it is crowded (one alone may
/// be an interrupt or a passing process); its polls are then short until the window after ends.
const PREEMPTIONS_TO_TELL: u32 = 8;
/// The window in which preemptions are counted.
const WINDOW: Duration = Duration::from_millis(10);
/// Looks between two looks at the clock while polling (the clock costs as much as a look).
const CLOCK_EVERY: u32 = 8;
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
        if let Some(value) = ready()? {
            return Ok(Some(value)); // no wait: before the clock is read
        }
        let started = Instant::now();
        // A deadline already past (a look that must not wait) ends the wait before any poll.
        if deadline.is_some_and(|deadline| started >= deadline) {
            return Ok(None);
        }
        if let Some(value) = poll_then_yield(&mut ready, deadline, started)? {
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
                // Only a wait that found what it waited for says how long waits take (a deadline, an
                // error or a wake for housekeeping says nothing of the peers).
                if matches!(outcome, Ok(Some(_))) {
                    note_wait(started.elapsed());
                }
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

/// Polls, then yields, until `ready` gives a value, the deadline passes or both phases are spent
/// (`Ok(None)`: time to sleep). See the module's documentation for how long each phase lasts.
/// A wait that ends here counts as long as the last look at the clock says (the clock is not read
/// again once the value came: it costs as much as a few looks).
fn poll_then_yield<T>(
    ready: &mut impl FnMut() -> Result<Option<T>>,
    deadline: Option<Instant>,
    start: Instant,
) -> Result<Option<T>> {
    let poll = if crowded(start) { POLL_CROWDED } else { POLL };
    let (mut looks, mut last) = (0u32, start);
    loop {
        if let Some(value) = ready()? {
            note_wait(last - start);
            return Ok(Some(value));
        }
        looks += 1;
        if looks.is_multiple_of(CLOCK_EVERY) {
            let now = Instant::now();
            if now - last >= PREEMPTED {
                note_preempted(now);
                break; // the core is wanted elsewhere: yield it from now on
            }
            if now - start >= poll || deadline.is_some_and(|deadline| now >= deadline) {
                break;
            }
            last = now;
        }
        std::hint::spin_loop();
    }
    let until = Instant::now() + yield_phase();
    let until = deadline.map_or(until, |deadline| deadline.min(until));
    loop {
        if let Some(value) = ready()? {
            note_wait(last - start);
            return Ok(Some(value));
        }
        last = Instant::now();
        if last >= until {
            return Ok(None);
        }
        std::thread::yield_now();
    }
}

/// How many ranks of the mesh share each core of this node, in eighths (8: one rank per core).
static RANKS_PER_CORE_EIGHTHS: AtomicU32 = AtomicU32::new(0);

/// Tells the waits of this process that `ranks` processes of its mesh share this node, which has
/// `cores` online cores: with more ranks than cores, waits poll briefly and yield the core instead. A
/// process with several meshes keeps the most crowded figure.
pub(crate) fn set_ranks_per_core(ranks: usize, cores: usize) {
    let eighths = (ranks.saturating_mul(8) / cores.max(1)).min(u32::MAX as usize) as u32;
    RANKS_PER_CORE_EIGHTHS.fetch_max(eighths, Relaxed);
}

/// True when the node has at least two cores for each rank of this process's mesh there (or when that is
/// not known): only then do a rank's own extra threads find cores idle.
pub(crate) fn spare_cores() -> bool {
    let eighths = RANKS_PER_CORE_EIGHTHS.load(Relaxed);
    eighths == 0 || eighths <= 4
}

/// True when more ranks than cores share the node, or when the polls of this process were preempted
/// often in the current window or the one before.
fn crowded(now: Instant) -> bool {
    RANKS_PER_CORE_EIGHTHS.load(Relaxed) > 8 || preempted_lately(now)
}

/// The typical wait of this process, in nanoseconds: a moving average of what its waits took (each
/// counted up to [`YIELD_MOST`], so one long wait moves it a little).
static TYPICAL_WAIT: AtomicU64 = AtomicU64::new(0);

fn note_wait(took: Duration) {
    let took = took.min(YIELD_MOST).as_nanos() as u64;
    let typical = TYPICAL_WAIT.load(Relaxed);
    TYPICAL_WAIT.store(typical - typical / 8 + took / 8, Relaxed); // racy between threads: an estimate
}

/// How long the yield phase lasts: a few times the typical wait, within its bounds.
fn yield_phase() -> Duration {
    let typical = Duration::from_nanos(TYPICAL_WAIT.load(Relaxed));
    (typical * YIELD_TIMES_TYPICAL).clamp(YIELD_LEAST, YIELD_MOST)
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

/// True when the polls of this process were preempted often in the current window or the one before.
fn preempted_lately(now: Instant) -> bool {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wait_whose_deadline_has_passed_looks_once_and_returns() {
        let (word, sleepers) = (AtomicU32::new(0), AtomicU32::new(0));
        let signal = Signal { word: &word, sleepers: &sleepers };
        let mut looks = 0;
        let ready = || {
            looks += 1;
            Ok(None::<()>)
        };
        let passed = Instant::now();
        assert_eq!(signal.wait(Some(passed), ready, || Ok(()), None).unwrap(), None);
        // One look: no poll phase, no yield, no sleep (it polled up to 20 us before).
        assert_eq!(looks, 1);
    }
}
