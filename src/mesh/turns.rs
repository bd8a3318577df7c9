//! The order a mesh's collectives run in. Every collective takes a ticket when it is called (the
//! blocking calls when they begin, the non-blocking ones when they start, in the caller's thread) and
//! runs once every collective of the mesh with an earlier ticket has ended. So a collective started
//! without blocking and a blocking one called after it run in that order, as on every other rank,
//! whichever threads run them; the ticket is the collective's sequence number.

#![forbid(unsafe_code)]

use std::cell::Cell;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex};

use crate::sync::lock;

/// A mesh's tickets, and how many of its collectives have ended.
#[derive(Debug, Default)]
pub(crate) struct Turns {
    next: AtomicU64,
    ended: AtomicU64,
    /// How many threads wait for their turn (only they need a notification).
    waiting: AtomicUsize,
    gate: Mutex<()>,
    turned: Condvar,
}

/// A collective's turn: when it is dropped, the next ticket's collective may run.
#[derive(Debug)]
pub(crate) struct Turn<'t> {
    turns: &'t Turns,
    pub(crate) ticket: u64,
}

thread_local! {
    /// A ticket taken earlier for the next collective this thread begins on the mesh at the address
    /// given (see [`Turns::with_ticket`]).
    static RESERVED: Cell<Option<(usize, u64)>> = const { Cell::new(None) };
}

impl Turns {
    /// Takes the next ticket.
    pub(crate) fn ticket(&self) -> u64 {
        self.next.fetch_add(1, Ordering::Relaxed)
    }

    /// Runs `call` (which begins a collective of this mesh) with `ticket`, taken earlier, as the ticket
    /// of the collective it begins. A call that ends before beginning one lets its turn pass.
    pub(crate) fn with_ticket<R>(&self, ticket: u64, call: impl FnOnce() -> R) -> R {
        RESERVED.with(|reserved| reserved.set(Some((self.address(), ticket))));
        // Also when `call` panics: a turn nobody takes would stop every later collective of the mesh.
        let _pass_unused = PassUnused(self);
        call()
    }

    /// Waits for the turn of the collective this thread begins now: its ticket reserved with
    /// [`Turns::with_ticket`], else a new one.
    pub(crate) fn begin(&self) -> Turn<'_> {
        let reserved = RESERVED.with(|reserved| match reserved.get() {
            Some((address, ticket)) if address == self.address() => {
                reserved.set(None);
                Some(ticket)
            }
            _ => None,
        });
        self.wait(reserved.unwrap_or_else(|| self.ticket()))
    }

    fn wait(&self, ticket: u64) -> Turn<'_> {
        if self.ended.load(Ordering::SeqCst) != ticket {
            let mut gate = lock(&self.gate);
            self.waiting.fetch_add(1, Ordering::SeqCst);
            while self.ended.load(Ordering::SeqCst) != ticket {
                gate = self.turned.wait(gate).unwrap_or_else(|poisoned| poisoned.into_inner());
            }
            self.waiting.fetch_sub(1, Ordering::SeqCst);
        }
        Turn { turns: self, ticket }
    }

    fn address(&self) -> usize {
        std::ptr::from_ref(self) as usize
    }
}

/// Passes on the turn of a ticket reserved with [`Turns::with_ticket`] that no collective began with.
struct PassUnused<'t>(&'t Turns);

impl Drop for PassUnused<'_> {
    fn drop(&mut self) {
        if let Some((_, unused)) = RESERVED.with(Cell::take) {
            drop(self.0.wait(unused));
        }
    }
}

impl Drop for Turn<'_> {
    fn drop(&mut self) {
        self.turns.ended.fetch_add(1, Ordering::SeqCst);
        if self.turns.waiting.load(Ordering::SeqCst) > 0 {
            let _gate = lock(&self.turns.gate);
            self.turns.turned.notify_all();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn collectives_run_in_ticket_order_whichever_thread_runs_them() {
        let turns = Turns::default();
        let order = Mutex::new(Vec::new());
        let early = turns.ticket(); // started first, run last by another thread
        std::thread::scope(|scope| {
            scope.spawn(|| {
                std::thread::sleep(std::time::Duration::from_millis(30));
                turns.with_ticket(early, || {
                    let turn = turns.begin();
                    lock(&order).push(turn.ticket);
                })
            });
            let turn = turns.begin(); // waits for the early one
            lock(&order).push(turn.ticket);
        });
        assert_eq!(*lock(&order), vec![0, 1]);
        // A call that begins nothing passes its turn on.
        let skipped = turns.ticket();
        turns.with_ticket(skipped, || ());
        assert_eq!(turns.begin().ticket, 3);
        // Nor does a call that panics before it begins one.
        let panicked = turns.ticket();
        let unwound = std::panic::catch_unwind(|| turns.with_ticket(panicked, || panic!("before begin")));
        assert!(unwound.is_err());
        assert_eq!(turns.begin().ticket, 5);
    }
}
