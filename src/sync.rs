//! Lock helpers shared by every layer, so that no lower layer reaches up into a transport for them.

#![forbid(unsafe_code)]

use std::sync::{Mutex, MutexGuard, PoisonError};

/// Locks `mutex`, taking it even when another thread panicked while holding it: the data it guards
/// (sockets, queues, registries) stays usable after such a panic.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}
