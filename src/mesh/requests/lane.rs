//! A scope's lanes: a thread each, started when first needed, that runs operations in the order they
//! were queued (one lane for the scope's collectives, one for its sends, so that a send never waits
//! behind a collective nor a collective behind a send) and, while the scope's receives wait unasked
//! for, takes their messages in.

#![forbid(unsafe_code)]

use std::collections::VecDeque;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, TryLockError};
use std::time::Duration;

use crate::mesh::Job;
use crate::sync::lock;

/// How long a lane waits for a message to take in at a time, before it looks at its queue again.
pub(crate) const NAP: Duration = Duration::from_millis(1);

/// One operation for a lane: it runs the blocking call and hands over the result.
pub(crate) type Work<'s> = Box<dyn FnOnce() + Send + 's>;

/// Starts a lane's thread (in the scope of the lane's operations' borrows).
pub(crate) type Spawn<'s> = Box<dyn Fn(Arc<Lane<'s>>) -> std::io::Result<()> + Send + Sync + 's>;

/// The receives of a scope that nobody waits on yet, which its lanes take in while idle.
#[derive(Debug, Default)]
pub(crate) struct Unwaited(AtomicUsize);

impl Unwaited {
    pub(crate) fn add(&self) {
        self.0.fetch_add(1, Ordering::AcqRel);
    }

    pub(crate) fn remove(&self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }

    fn any(&self) -> bool {
        self.0.load(Ordering::Acquire) > 0
    }
}

/// A queue of operations and the thread that runs it.
pub(crate) struct Lane<'s> {
    spawn: Arc<Spawn<'s>>,
    state: Mutex<State<'s>>,
    ready: Condvar,
    pub(crate) unwaited: Arc<Unwaited>,
    /// Whether the lane's thread was started.
    started: AtomicBool,
    /// No thread: the operations run in the thread that waits for one of them.
    pub(crate) on_wait: bool,
    /// The one turn to run an operation: held by the lane's thread or a waiting thread that helps.
    running: Mutex<()>,
}

struct State<'s> {
    queue: VecDeque<Work<'s>>,
    closing: bool,
}

impl<'s> Lane<'s> {
    pub(crate) fn new(on_wait: bool, spawn: Arc<Spawn<'s>>, unwaited: Arc<Unwaited>) -> Self {
        Self {
            spawn,
            on_wait,
            unwaited,
            running: Mutex::new(()),
            state: Mutex::new(State { queue: VecDeque::new(), closing: false }),
            ready: Condvar::new(),
            started: AtomicBool::new(false),
        }
    }

    /// Starts the lane's thread, unless it runs or the lane runs on wait. When no thread can start, what
    /// is queued runs here, as the blocking calls would, and the next call tries again.
    pub(crate) fn start(lane: &Arc<Self>, job: &Job) {
        if lane.on_wait || lane.started.swap(true, Ordering::AcqRel) {
            return;
        }
        if let Err(error) = (lane.spawn)(Arc::clone(lane)) {
            log::warn!("lightbeam: {}: cannot start a scope's lane ({error}): its queue runs here", job.rank);
            lane.run_queued_here();
            lane.started.store(false, Ordering::Release);
        }
    }

    /// Queues the work `make` makes, behind every operation queued before it: `make` runs with the
    /// queue held, so what it takes (a collective's ticket) is taken in queue order.
    pub(crate) fn queue(&self, make: impl FnOnce() -> Work<'s>) {
        lock(&self.state).queue.push_back(make());
        self.ready.notify_one();
    }

    /// Wakes the lane, if it sleeps, to take in for a receive nobody waits on.
    pub(crate) fn nudge(&self) {
        if self.started.load(Ordering::Acquire) {
            let _state = lock(&self.state); // not between the lane's look at the count and its sleep
            self.ready.notify_one();
        }
    }

    /// Runs what is queued in this thread, in order (the lane runs on wait, or no thread could start for
    /// it).
    pub(crate) fn run_queued_here(&self) {
        while self.run_next(true) {}
    }

    /// Runs queued operations in this thread until `done`, while no other thread runs one: a thread
    /// that waits helps, so its operation need not wait for the lane's thread to be scheduled.
    pub(crate) fn help_until(&self, done: impl Fn() -> bool) {
        while !done() && self.run_next(false) {}
    }

    /// Runs the next queued operation here, holding the lane's one turn to run (operations run one at
    /// a time, in the order they were queued, whichever thread runs them); false when none is queued,
    /// or when `wait` is false and another thread holds the turn.
    fn run_next(&self, wait: bool) -> bool {
        let _turn = match self.running.try_lock() {
            Ok(turn) => turn,
            Err(TryLockError::Poisoned(poisoned)) => poisoned.into_inner(),
            Err(TryLockError::WouldBlock) if wait => lock(&self.running),
            Err(TryLockError::WouldBlock) => return false,
        };
        let Some(work) = lock(&self.state).queue.pop_front() else { return false };
        // A panic in one operation fails that request (its result is dropped unset), not the ones
        // queued behind it.
        let _ = catch_unwind(AssertUnwindSafe(work));
        true
    }

    /// Tells the lane to run what is queued and stop.
    pub(crate) fn close(&self) {
        lock(&self.state).closing = true;
        self.ready.notify_one();
    }

    /// The lane's thread: runs the queue, takes in for receives nobody waits on (and fails those past
    /// their deadline), sleeps otherwise (woken by new work, a receive to take in, or the scope's
    /// end), and stops once closed with nothing left to run.
    pub(crate) fn run(self: Arc<Self>, job: &Job) {
        loop {
            if self.run_next(true) {
                continue;
            }
            let state = lock(&self.state);
            if !state.queue.is_empty() {
                continue; // queued after the look
            }
            if state.closing {
                return;
            }
            if self.unwaited.any() {
                drop(state);
                job.take_in_once(NAP);
                continue;
            }
            drop(self.ready.wait(state));
        }
    }
}
