//! A request: an operation started in a [`Scope`](super::Scope) and not yet waited for.

#![forbid(unsafe_code)]

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::time::Duration;

use super::lane::{Lane, NAP};
use crate::error::{Error, Result};
use crate::mesh::net::matching::Incoming;
use crate::mesh::net::posted::{Landed, Slot};
use crate::mesh::types::Source;
use crate::mesh::Job;
use crate::sync::Completion;

/// An operation in flight: a send, a receive or a collective started in a [`Scope`](super::Scope).
/// [`Request::wait`] returns what the blocking call returns; [`Request::test`] tells whether that
/// would return at once; `.await` waits without blocking a thread.
///
/// A request borrows the buffers it was given for its whole scope, so they cannot be touched until
/// the scope returns, and the scope waits for every send and collective started in it (also for one
/// forgotten with `std::mem::forget` or dropped unwaited, whose result is then lost). A receive
/// dropped unwaited is withdrawn: a message it already took goes to the next receive that matches it.
#[must_use = "a request completes by the end of its scope, but its result and errors come only from a wait"]
pub struct Request<'s, T> {
    state: State<'s, T>,
}

enum State<'s, T> {
    /// Done when it started (a send queued at once).
    Done(Result<T>),
    /// Run by a lane, which sets the result.
    Lane(Arc<Completion<Result<T>>>, Arc<Lane<'s>>),
    /// A receive: its message lands in its slot; `finish` makes the result from it.
    Receive(Receiving<'s, T>),
    /// Its result was taken.
    Spent,
}

/// A posted receive and what to make of its message.
pub(crate) struct Receiving<'s, T> {
    pub(crate) job: &'s Job,
    pub(crate) slot: Arc<Slot>,
    pub(crate) from: Source,
    /// The mesh's timeout, which its error reports (its deadline is in its slot).
    pub(crate) timeout: Duration,
    pub(crate) finish: Option<Box<dyn FnOnce(Incoming) -> Result<T> + Send + 's>>,
    /// Its scope's lanes (the send lane first), which take in while the receive is not waited on.
    pub(crate) lanes: [Arc<Lane<'s>>; 2],
    /// Counted among the scope's receives nobody waits on.
    pub(crate) counted: bool,
}

impl<'s, T> Request<'s, T> {
    pub(crate) fn done(result: Result<T>) -> Self {
        Self { state: State::Done(result) }
    }

    pub(crate) fn on_lane(completion: Arc<Completion<Result<T>>>, lane: Arc<Lane<'s>>) -> Self {
        Self { state: State::Lane(completion, lane) }
    }

    pub(crate) fn receive(receiving: Receiving<'s, T>) -> Self {
        receiving.lanes[0].unwaited.add();
        receiving.lanes.iter().for_each(|lane| lane.nudge());
        Self { state: State::Receive(receiving) }
    }

    /// Waits for the operation and returns its result, as the blocking call would. A receive fails
    /// once the mesh's timeout has passed since it started; a send or collective within its own
    /// deadline, counted from when it began to run (after those started before it on its lane).
    pub fn wait(mut self) -> Result<T> {
        match std::mem::replace(&mut self.state, State::Spent) {
            State::Done(result) => result,
            State::Lane(completion, lane) => {
                match lane.on_wait {
                    true => lane.help_until(|| false), // runs everything queued: nothing else will
                    false => lane.help_until(|| completion.is_set()),
                }
                completion.wait().unwrap_or_else(|| Err(lost_result()))
            }
            State::Receive(mut receiving) => {
                receiving.stop_counting();
                let (job, from, timeout) = (receiving.job, receiving.from, receiving.timeout);
                let incoming = job.wait_posted(&receiving.slot, from, "receive", timeout);
                let finish = receiving.finish.take().expect("a receive is finished once");
                incoming.and_then(finish)
            }
            State::Spent => Err(lost_result()),
        }
    }

    /// Whether the operation is complete ([`Request::wait`] returns at once). A receive takes in what
    /// arrived first, when no other thread of the process is doing so. (In a scope whose operations
    /// run on wait, [`Progress::OnWait`](crate::mesh::Progress::OnWait), a send or collective is
    /// complete only once a wait ran it.)
    pub fn test(&mut self) -> bool {
        match &self.state {
            State::Done(_) | State::Spent => true,
            State::Lane(completion, _) => completion.is_set(),
            State::Receive(receiving) => {
                if !receiving.slot.landed.is_set() {
                    receiving.job.take_in_now();
                }
                receiving.slot.landed.is_set()
            }
        }
    }

    /// Registers `waker` to be woken when the operation completes; true when it already has, or when
    /// only a wait can complete it (in a scope whose operations run on wait).
    fn complete_or_wake(&mut self, waker: &Waker) -> bool {
        match &self.state {
            State::Done(_) | State::Spent => true,
            State::Lane(_, lane) if lane.on_wait => true,
            State::Lane(completion, _) => {
                completion.wake_when_set(waker);
                completion.is_set()
            }
            State::Receive(receiving) if receiving.lanes[0].on_wait => true,
            State::Receive(receiving) => {
                receiving.slot.landed.wake_when_set(waker);
                receiving.slot.landed.is_set()
            }
        }
    }
}

impl<T> Receiving<'_, T> {
    /// Takes the receive off the count of those nobody waits on.
    fn stop_counting(&mut self) {
        if std::mem::take(&mut self.counted) {
            self.lanes[0].unwaited.remove();
        }
    }
}

impl<T> Drop for Receiving<'_, T> {
    fn drop(&mut self) {
        self.stop_counting();
        if self.finish.is_none() {
            return; // waited for: its message was taken (or it failed and was withdrawn)
        }
        // Dropped unwaited: withdrawn, and a message it took goes to the next receive that matches.
        self.job.unpost(&self.slot);
        if let Some(Landed::Message(message)) = self.slot.landed.take() {
            self.job.give_back(message);
        }
    }
}

fn lost_result() -> Error {
    Error::Mesh("the operation ended without a result (it panicked, or its result was taken)".into())
}

/// A request is a future of its result, woken by whichever thread completes it (a lane of its scope,
/// or the thread that takes its message in), and tied to no runtime. While a receive is awaited, a lane
/// of its scope takes its message in and fails it at its deadline. In a scope whose operations run on
/// wait ([`Progress::OnWait`](crate::mesh::Progress::OnWait)), polling waits.
impl<T> Future for Request<'_, T> {
    type Output = Result<T>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<T>> {
        if let State::Receive(receiving) = &mut self.state {
            receiving.job.take_in_now();
            Lane::start(&receiving.lanes[0], receiving.job);
        }
        match self.complete_or_wake(cx.waker()) {
            true => Poll::Ready(std::mem::replace(&mut *self, Self { state: State::Spent }).wait()),
            false => Poll::Pending,
        }
    }
}

// Every state is Unpin (results are boxed or behind `Arc`s).
impl<T> Unpin for Request<'_, T> {}

/// Waits for every request; returns their results in order, or the first error once all have ended.
/// Every request is started before the first wait (an iterator that starts them is run to its end).
pub fn wait_all<'s, T>(requests: impl IntoIterator<Item = Request<'s, T>>) -> Result<Vec<T>> {
    let requests: Vec<Request<'s, T>> = requests.into_iter().collect();
    let results: Vec<Result<T>> = requests.into_iter().map(Request::wait).collect();
    results.into_iter().collect()
}

/// Waits until one of `requests` completes, removes it and returns its index and result; `None` when
/// there are none. The thread sleeps until a request completes (it takes in messages itself while
/// receives are among them and no other thread does; a receive fails at its deadline).
pub fn wait_any<T>(requests: &mut Vec<Request<'_, T>>) -> Option<(usize, Result<T>)> {
    if requests.is_empty() {
        return None;
    }
    let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
    loop {
        let mut receiving = None;
        for (at, request) in requests.iter_mut().enumerate() {
            if request.test() || request.complete_or_wake(&waker) {
                return Some((at, requests.remove(at).wait()));
            }
            if let State::Receive(r) = &request.state {
                receiving = Some(r.job);
            }
        }
        match receiving {
            Some(job) => job.take_in_once(NAP),
            None => std::thread::park_timeout(NAP),
        }
    }
}

/// Wakes a thread parked in [`wait_any`].
struct Unpark(std::thread::Thread);

impl Wake for Unpark {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mesh::net::posted::Posted;
    use crate::mesh::types::Rank;

    /// The memory a receive request in flight holds: the request, its slot (shared with the matching
    /// queue), the queue's entry and the boxed closure that fills the buffer (a buffer reference and
    /// the mesh's, at most).
    #[test]
    fn a_receive_in_flight_holds_a_few_hundred_bytes() {
        let request = size_of::<Request<'_, (Rank, usize)>>();
        let slot = size_of::<Slot>() + 2 * size_of::<usize>(); // and the Arc's counts
        let queued = size_of::<Posted>();
        let closure = 4 * size_of::<usize>();
        let total = request + slot + queued + closure;
        println!("a receive in flight: {total} bytes (request {request}, slot {slot}, queue entry {queued}, closure {closure})");
        assert!(total < 1024, "{total} bytes per receive");
    }
}
