//! Lock helpers shared by every layer, so that no lower layer reaches up into a transport for them.

#![forbid(unsafe_code)]

use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

/// Locks `mutex`, taking it even when another thread panicked while holding it: the data it guards
/// (sockets, queues, registries) stays usable after such a panic.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A value lent to one caller at a time, where waiting for it has a deadline (a `Mutex` has none): a
/// server's socket, which one thread may hold in a long blocking receive while another asks for it with
/// a short timeout.
#[derive(Debug)]
pub(crate) struct Slot<T> {
    state: Mutex<Lending<T>>,
    returned: Condvar,
}

/// The value when no caller holds it, and how many callers wait for it (so that giving it back pays
/// for a wake-up system call only when someone waits).
#[derive(Debug)]
struct Lending<T> {
    value: Option<T>,
    waiting: usize,
}

impl<T> Slot<T> {
    pub(crate) fn new(value: T) -> Self {
        Self { state: Mutex::new(Lending { value: Some(value), waiting: 0 }), returned: Condvar::new() }
    }

    /// The value, with no caller holding it (none can: `self` is borrowed mutably).
    pub(crate) fn get_mut(&mut self) -> Option<&mut T> {
        self.state.get_mut().unwrap_or_else(PoisonError::into_inner).value.as_mut()
    }

    /// The value, when no other caller holds it now (without reading the clock).
    pub(crate) fn try_borrow(&self) -> Option<Lent<'_, T>> {
        let taken = lock(&self.state).value.take()?;
        Some(Lent { slot: self, value: Some(taken) })
    }

    /// Runs `f` on the value when no other caller holds it now, without lending it out (for work that
    /// never waits: a caller asking meanwhile waits for `f` to end); `None` when it is held.
    pub(crate) fn with_now<R>(&self, f: impl FnOnce(&mut T) -> R) -> Option<R> {
        let mut state = match self.state.try_lock() {
            Ok(state) => state,
            Err(std::sync::TryLockError::Poisoned(poisoned)) => poisoned.into_inner(),
            Err(std::sync::TryLockError::WouldBlock) => return None,
        };
        state.value.as_mut().map(f)
    }

    /// The value, once no other caller holds it; `None` when another held it until `deadline`.
    pub(crate) fn borrow_until(&self, deadline: Instant) -> Option<Lent<'_, T>> {
        let mut state = lock(&self.state);
        loop {
            if let Some(taken) = state.value.take() {
                return Some(Lent { slot: self, value: Some(taken) });
            }
            let left = deadline.checked_duration_since(Instant::now()).filter(|d| !d.is_zero())?;
            state.waiting += 1;
            state = self.returned.wait_timeout(state, left).unwrap_or_else(PoisonError::into_inner).0;
            state.waiting -= 1;
        }
    }
}

/// The value of a [`Slot`] while one caller holds it; given back when dropped (also on a panic).
pub(crate) struct Lent<'a, T> {
    slot: &'a Slot<T>,
    value: Option<T>,
}

impl<T> std::ops::Deref for Lent<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        self.value.as_ref().expect("held until dropped")
    }
}

impl<T> std::ops::DerefMut for Lent<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        self.value.as_mut().expect("held until dropped")
    }
}

impl<T> Drop for Lent<'_, T> {
    fn drop(&mut self) {
        let mut state = lock(&self.slot.state);
        state.value = self.value.take();
        if state.waiting > 0 {
            self.slot.returned.notify_one();
        }
    }
}

/// A value that one thread sets once and another waits for: by blocking ([`Completion::wait_for`]), by
/// looking ([`Completion::take`]), or as a future ([`Completion::wake_when_set`]).
#[derive(Debug)]
pub(crate) struct Completion<T> {
    set: std::sync::atomic::AtomicBool,
    value: Mutex<Option<T>>,
    changed: std::sync::Condvar,
    waker: Mutex<Option<std::task::Waker>>,
}

impl<T> Default for Completion<T> {
    fn default() -> Self {
        Self {
            set: std::sync::atomic::AtomicBool::new(false),
            value: Mutex::new(None),
            changed: std::sync::Condvar::new(),
            waker: Mutex::new(None),
        }
    }
}

impl<T> Completion<T> {
    /// Sets the value and wakes whoever waits for it.
    pub(crate) fn set(&self, value: T) {
        let mut held = lock(&self.value);
        *held = Some(value);
        // Under the lock: a waiter that found it unset is asleep before this lock is free again.
        self.set.store(true, std::sync::atomic::Ordering::Release);
        drop(held);
        self.changed.notify_all();
        if let Some(waker) = lock(&self.waker).take() {
            waker.wake();
        }
    }

    /// Whether the value was set (taken or not).
    pub(crate) fn is_set(&self) -> bool {
        self.set.load(std::sync::atomic::Ordering::Acquire)
    }

    /// The value, once set (only once).
    pub(crate) fn take(&self) -> Option<T> {
        match self.is_set() {
            true => lock(&self.value).take(),
            false => None,
        }
    }

    /// Waits up to `timeout` for the value to be set.
    pub(crate) fn wait_for(&self, timeout: Duration) {
        let value = lock(&self.value);
        if !self.is_set() {
            let _ = self.changed.wait_timeout(value, timeout);
        }
    }

    /// Waits for the value, however long it takes (the setter has a deadline of its own).
    pub(crate) fn wait(&self) -> Option<T> {
        let mut value = lock(&self.value);
        while !self.is_set() {
            value = self.changed.wait(value).unwrap_or_else(|poisoned| poisoned.into_inner());
        }
        value.take()
    }

    /// Wakes `waker` once the value is set (at once when it is).
    pub(crate) fn wake_when_set(&self, waker: &std::task::Waker) {
        *lock(&self.waker) = Some(waker.clone());
        if self.is_set() {
            if let Some(waker) = lock(&self.waker).take() {
                waker.wake();
            }
        }
    }
}

/// A deadline `timeout` after the moment it is first asked for: a receive that finds its message at
/// once never reads the clock (a look at it costs as much as taking a small message in).
#[derive(Debug)]
pub(crate) struct LazyDeadline {
    timeout: Duration,
    at: std::cell::Cell<Option<Instant>>,
}

impl LazyDeadline {
    pub(crate) fn new(timeout: Duration) -> Self {
        Self { timeout, at: std::cell::Cell::new(None) }
    }

    /// The deadline (a timeout past what an `Instant` holds is a far future).
    pub(crate) fn at(&self) -> Instant {
        if let Some(at) = self.at.get() {
            return at;
        }
        let now = Instant::now();
        let at = now.checked_add(self.timeout).unwrap_or_else(|| now + Duration::from_secs(1 << 30));
        self.at.set(Some(at));
        at
    }

    /// The time left until the deadline.
    pub(crate) fn left(&self) -> Duration {
        self.at().saturating_duration_since(Instant::now())
    }

    /// The timeout it was made with.
    pub(crate) fn timeout(&self) -> Duration {
        self.timeout
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lazy_deadline_is_fixed_when_first_asked_for() {
        let deadline = LazyDeadline::new(Duration::from_millis(30));
        std::thread::sleep(Duration::from_millis(10)); // not yet counting
        let at = deadline.at();
        std::thread::sleep(Duration::from_millis(40));
        assert_eq!(deadline.at(), at, "fixed once asked for");
        assert!(deadline.left().is_zero());
        let zero = LazyDeadline::new(Duration::ZERO);
        let at = zero.at();
        assert!(Instant::now() >= at && zero.at() == at && zero.left().is_zero());
        assert!(LazyDeadline::new(Duration::MAX).left() > Duration::from_secs(1 << 29), "a far future");
    }

    #[test]
    fn a_second_borrower_waits_only_until_its_deadline() {
        let slot = Slot::new(5);
        let held = slot.borrow_until(Instant::now()).expect("free at first");
        let started = Instant::now();
        assert!(slot.borrow_until(started + Duration::from_millis(20)).is_none());
        assert!(started.elapsed() >= Duration::from_millis(20));
        std::thread::scope(|scope| {
            let waiter =
                scope.spawn(|| *slot.borrow_until(Instant::now() + Duration::from_secs(10)).unwrap());
            std::thread::sleep(Duration::from_millis(20));
            drop(held);
            assert_eq!(waiter.join().unwrap(), 5);
        });
    }
}
