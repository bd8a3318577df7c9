//! The server's side of the queue: looks at every channel in turn, reads what each has published into
//! that channel's message in progress ([`Partial`]), and hands the first message made whole to
//! `Received::accept`. A receive ends by its own deadline; a channel whose message stops progressing
//! holds neither the receive nor the other channels, and its message is dropped after
//! [`ShmOptions::stall_timeout`](super::ShmOptions::stall_timeout).
//!
//! Nothing read from the segment is trusted (see `message.rs`). A channel that breaks the rules is
//! given up (marked broken, freed once its client leaves), and the message in it is dropped with an
//! error: never a crash or a hang.
//!
//! Channels whose client left or died are freed within a [`SWEEP_PERIOD`] or so of the server's next
//! receive, however busy the other channels keep it: every receive sweeps (at most once per period,
//! since a sweep reads `/proc` for each client) before it looks for a message, a receive that waits
//! wakes for the next sweep while a channel its client let go waits to be freed, and a client that
//! died mid-message has that message dropped with [`Error::PeerGone`] first. A client that died between
//! messages, on a server with nothing to read, is found by the sweep of the next receive that wakes.

#![forbid(unsafe_code)]

use std::time::{Duration, Instant};

use super::identity::{Gate, Trust};
use super::message::{Cursor, Partial};
use super::queue::{state, Queue};
use super::wait::LIVENESS_PERIOD;
use super::Arrival;
use crate::error::{Error, Result};
use crate::sync::LazyDeadline;
use crate::transport::{Limits, Payload};

/// The server's view of one channel.
#[derive(Default)]
struct View {
    /// Bytes consumed: the server's copy, never read back from the segment.
    head: u64,
    /// Given up: skipped until its client leaves.
    broken: bool,
    /// The message read in part, if any.
    partial: Option<Partial>,
    /// What the server knows of the process that offers through the channel.
    trust: Trust,
}

/// The server's own view of its queue.
pub(super) struct Receiver {
    views: Vec<View>,
    /// The channel to look at first next time (round robin, so no client starves the others).
    next: usize,
    /// Accept single-copy offers (else every offer is refused and the bytes come through the ring).
    single_copy: bool,
    /// Hand short messages over as they are (a mesh's server); else a `SHORT` record is garbage.
    pub(super) shorts: bool,
    /// The listener that tells which process offers through which channel.
    gate: Gate,
    /// How long a message already begun may go without progress before it is dropped.
    stall: Duration,
    /// When channels were last swept.
    swept: Instant,
    /// Rounds of receiving so far (wrapping): every [`HOUSEKEEPING_EVERY`]th sweeps before it scans.
    rounds: u32,
}

/// One round of receiving in this many sweeps (when due) and takes in connections before it scans.
const HOUSEKEEPING_EVERY: u32 = 16;

/// The least time between two sweeps for channels to free.
const SWEEP_PERIOD: Duration = Duration::from_millis(50);

impl Receiver {
    /// The view of a queue of `channels` channels, reading single-copy offers told through `gate` (none
    /// when it is closed).
    pub(super) fn new(channels: usize, gate: Gate, stall: Duration) -> Self {
        Self {
            views: std::iter::repeat_with(View::default).take(channels).collect(),
            next: 0,
            single_copy: gate.open(),
            shorts: false,
            gate,
            stall,
            swept: Instant::now(),
            rounds: 0,
        }
    }

    /// A message there now, if any, without waiting, sweeping or reading the clock (`None` also on the
    /// rounds due for housekeeping, which [`Receiver::receive`] does).
    pub(super) fn take_now(
        &mut self,
        queue: &Queue,
        limits: &Limits,
        endpoint: &str,
    ) -> Option<Result<Arrival>> {
        // A round due for housekeeping is left to `receive`, whose first round it then is.
        if self.rounds.wrapping_add(1).is_multiple_of(HOUSEKEEPING_EVERY) {
            return None;
        }
        self.rounds = self.rounds.wrapping_add(1);
        self.scan(queue, limits, endpoint)
    }

    /// The next whole message, waiting until `deadline` (`None`: nothing came whole by then; the clock is
    /// read only when no message is there at once).
    pub(super) fn receive(
        &mut self,
        queue: &Queue,
        limits: &Limits,
        deadline: &LazyDeadline,
        endpoint: &str,
        elsewhere: &dyn Fn() -> bool,
    ) -> Result<Option<Arrival>> {
        // The clock costs as much as a scan: a message found is taken before it is read. Every few
        // rounds, and after a wait that ended by the clock, the receive sweeps and takes in connections
        // first, so that channels are freed however busy the others keep the server.
        let mut housekeeping = false;
        loop {
            self.rounds = self.rounds.wrapping_add(1);
            if housekeeping || self.rounds.is_multiple_of(HOUSEKEEPING_EVERY) {
                let now = Instant::now();
                self.sweep(queue, now);
                self.gate.take_in_now_and_then(now);
            }
            if let Some(outcome) = self.scan(queue, limits, endpoint) {
                return outcome.map(Some);
            }
            // The deadline first: a receive that must not wait fixes it before the clock it is compared
            // with, so that it finds it passed and looks once, not for a poll.
            let deadline = deadline.at();
            let now = Instant::now();
            if now >= deadline {
                return Ok(None);
            }
            // With messages in progress, look again at least every liveness period (stalls, deaths); with
            // a channel let go, when the next sweep is due.
            let busy = self.views.iter().any(|v| v.partial.is_some());
            let mut wake = if busy { deadline.min(now + LIVENESS_PERIOD) } else { deadline };
            if self.let_go(queue) {
                wake = wake.min(self.swept + SWEEP_PERIOD);
            }
            let ready = || Ok((self.ready(queue) || elsewhere()).then_some(()));
            let rang = queue.doorbell().wait(Some(wake), ready, || Ok(()), None)?.is_some();
            if rang && elsewhere() {
                return Ok(None);
            }
            housekeeping = !rang;
        }
    }

    /// True when some channel has something to look at: unread bytes, or a message in progress whose
    /// client let the channel go.
    fn ready(&self, queue: &Queue) -> bool {
        self.views.iter().enumerate().any(|(i, view)| {
            let channel = queue.channel(i);
            // The tail first: the one word a spinning receive needs to look at.
            (channel.tail() != view.head || (view.partial.is_some() && channel.state() != state::OPEN))
                && !view.broken
                && channel.owner().pid != 0
        })
    }

    /// True when a client let its channel go (without a message in progress): the next sweep frees it.
    fn let_go(&self, queue: &Queue) -> bool {
        self.views.iter().enumerate().any(|(i, view)| {
            let channel = queue.channel(i);
            view.partial.is_none() && channel.owner().pid != 0 && channel.state() == state::RELEASED
        })
    }

    /// Looks at every channel once from `next`: the first message made whole, or the first error (its
    /// channel then given up).
    fn scan(&mut self, queue: &Queue, limits: &Limits, endpoint: &str) -> Option<Result<Arrival>> {
        let first = self.next;
        let channels = self.views.len();
        for index in (0..channels).map(|k| (first + k) % channels) {
            let outcome = self.look(queue, index, limits, endpoint).transpose();
            if outcome.is_some() {
                self.next = (index + 1) % channels;
                return outcome;
            }
        }
        None
    }

    /// Reads what channel `index` has: a short message whole, or into its message in progress.
    fn look(
        &mut self,
        queue: &Queue,
        index: usize,
        limits: &Limits,
        endpoint: &str,
    ) -> Result<Option<Arrival>> {
        let channel = queue.channel(index);
        let view = &mut self.views[index];
        let owner = channel.owner();
        if view.broken || owner.pid == 0 || (channel.tail() == view.head && view.partial.is_none()) {
            return Ok(None);
        }
        let (trust, gate) = (&mut view.trust, &mut self.gate);
        let mut cursor = Cursor { channel, head: view.head, owner, endpoint, index, trust, gate };
        let short = match view.partial {
            None if self.shorts => cursor.take_short(limits).transpose(),
            _ => None,
        };
        let outcome = match short {
            Some(taken) => taken.map(|bytes| Some(Arrival::Short(bytes))),
            None => advance(&mut view.partial, &mut cursor, limits, (self.single_copy, self.stall))
                .map(|frames| frames.map(Arrival::Frames)),
        };
        view.head = cursor.head;
        if outcome.is_err() {
            view.partial = None;
            view.broken = true;
            cursor.channel.break_open();
        }
        outcome
    }

    /// Frees channels whose client left (or died) once nothing is left to read in them (at most every
    /// [`SWEEP_PERIOD`]: it reads `/proc` for each client).
    fn sweep(&mut self, queue: &Queue, now: Instant) {
        if now.saturating_duration_since(self.swept) < SWEEP_PERIOD {
            return;
        }
        self.swept = now;
        for (i, view) in self.views.iter_mut().enumerate() {
            let channel = queue.channel(i);
            let owner = channel.owner();
            if owner.pid == 0 || view.partial.is_some() {
                continue; // free, or a message in progress (its end or its stall is reported first)
            }
            // A broken channel stays taken until its client lets it go (or dies): it may still write.
            // Whether the client left is read before its tail: a client publishes its last bytes before
            // it lets the channel go, so a tail read after a release (or a death) is the final one.
            let left = channel.state() == state::RELEASED || owner.is_gone();
            let drained = view.broken || channel.tail() == view.head;
            if left && drained {
                channel.reset();
                *view = View::default();
            }
        }
    }
}

/// Reads what `cursor` has into the channel's message in progress (begun if there is none): its frames
/// once whole; the message is let go once whole or failed.
fn advance(
    partial: &mut Option<Partial>,
    cursor: &mut Cursor<'_>,
    limits: &Limits,
    (single_copy, stall): (bool, Duration),
) -> Result<Option<Vec<Payload>>> {
    let message = partial.get_or_insert_with(|| Partial::new(limits));
    let outcome = message.advance(cursor, limits, single_copy).and_then(|whole| match whole {
        Some(frames) => Ok(Some(frames)),
        None => check_progress(message, cursor, stall).map(|()| None),
    });
    if !matches!(outcome, Ok(None)) {
        *partial = None;
    }
    outcome
}

/// Fails a message in progress whose client left or died before ending it, or that made no progress for
/// `stall`.
fn check_progress(partial: &mut Partial, cursor: &Cursor<'_>, stall: Duration) -> Result<()> {
    let lost = |why: String| Error::gone("receive on", cursor.endpoint, why);
    let pid = cursor.owner.pid;
    if cursor.available()? > 0 {
        return Ok(());
    }
    if cursor.channel.state() != state::OPEN {
        let why = format!("the client (pid {pid}) left mid-message");
        return Err(Error::transport("receive on", cursor.endpoint, why));
    }
    if partial.checked.elapsed() >= LIVENESS_PERIOD {
        partial.checked = Instant::now();
        if cursor.owner.is_gone() || cursor.channel.owner() != cursor.owner {
            return Err(lost(format!("the client process {pid} is lost (it ended mid-message)")));
        }
    }
    if partial.progressed.elapsed() >= stall {
        return Err(Error::Timeout {
            op: "receive (the client stalled mid-message)",
            after: stall,
            peer: Some(format!("pid {pid}")),
        });
    }
    Ok(())
}
