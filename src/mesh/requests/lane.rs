//! A scope's lane: the one thread that runs its sends and collectives in the order they were started
//! and, while its receives wait unasked for, takes their messages in.

#![forbid(unsafe_code)]

use std::collections::VecDeque;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, TryLockError};
use std::time::Duration;

use crate::mesh::Job;
use crate::sync::lock;

/// How long the lane sleeps (or waits for a message to take in) at a time when it has nothing to run.
pub(crate) const NAP: Duration = Duration::from_millis(1);

/// One operation for the lane: it runs the blocking call and hands over the result.
pub(crate) type Work<'s> = Box<dyn FnOnce() + Send + 's>;

/// Starts the lane's thread (in the scope of the lane's operations' borrows).
pub(crate) type Spawn<'s> = Box<dyn Fn(Arc<Lane<'s>>) -> std::io::Result<()> + Send + Sync + 's>;

/// What a scope and its lane share.
pub(crate) struct Lane<'s> {
    spawn: Spawn<'s>,
    state: Mutex<State<'s>>,
    ready: Condvar,
    /// Receives started in the scope that nobody waits on yet.
    pub(crate) unwaited: AtomicUsize,
    /// Whether the lane's thread was started.
    started: AtomicBool,
    /// No thread: the operations run in the thread that waits for one of them.
    pub(crate) on_wait: bool,
    /// The one turn to run an operation: held by the lane's thread or a waiting thread that helps.
    running: Mutex<()>,
}

struct State<'s> {
    queue: VecDeque<Work<'s>>,
    /// How many operations are queued or running.
    pending: usize,
    closing: bool,
}

impl<'s> Lane<'s> {
    pub(crate) fn new(on_wait: bool, spawn: Spawn<'s>) -> Self {
        Self {
            spawn,
            on_wait,
            running: Mutex::new(()),
            state: Mutex::new(State { queue: VecDeque::new(), pending: 0, closing: false }),
            ready: Condvar::new(),
            unwaited: AtomicUsize::new(0),
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

    /// Queues `work` behind every operation queued before it.
    pub(crate) fn queue(&self, work: Work<'s>) {
        let mut state = lock(&self.state);
        state.queue.push_back(work);
        state.pending += 1;
        self.ready.notify_one();
    }

    /// Whether operations are queued or running (a send started now must queue behind them to keep
    /// its order).
    pub(crate) fn busy(&self) -> bool {
        lock(&self.state).pending > 0
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
        lock(&self.state).pending -= 1;
        true
    }

    /// Tells the lane to run what is queued and stop.
    pub(crate) fn close(&self) {
        lock(&self.state).closing = true;
        self.ready.notify_one();
    }

    /// The lane's thread: runs the queue, takes in for receives nobody waits on, and stops once closed
    /// with nothing left to run.
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
            if self.unwaited.load(Ordering::Acquire) > 0 {
                drop(state);
                job.take_in_once(NAP);
                continue;
            }
            // Woken by new work or the scope's end; a receive posted meanwhile is seen within a nap.
            let _ = self.ready.wait_timeout(state, NAP);
        }
    }
}
