//! Moving the mesh's messages: a link to each peer ([`link`]), the servers this rank's messages arrive
//! at ([`arrivals`]), matching what arrives to what a receive asks for ([`matching`]), what every
//! message carries ([`envelope`]), and one collective call's view of all that ([`exchange`]).
//!
//! The methods here are the mesh's messaging core: point to point and the exchange use them, the
//! collectives never do.

#![forbid(unsafe_code)]

pub(crate) mod arrivals;
pub(crate) mod envelope;
pub(crate) mod exchange;
pub(crate) mod link;
pub(crate) mod matching;
pub(crate) mod offer_words;
pub(crate) mod posted;
pub(crate) mod send_order;
pub(crate) mod short;

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use self::envelope::{Channel, Collective, Envelope, GroupId};
use self::exchange::LOOKAHEAD_BYTES;
use self::link::Link;
use self::matching::{peer_failed, Incoming, Matching, Receive, Want};
use self::posted::{Landed, Slot};
use super::types::{Rank, Source, Tag};
use super::Job;
use crate::bulk::Bulk;
use crate::error::{Error, Result};
use crate::meta::LbmMeta;
use crate::transport::same_node::Watch;
use crate::transport::Options;

/// A received message, or the failure its sender reported in it.
fn received(incoming: Incoming, op: &'static str) -> Result<Incoming> {
    match incoming.failed {
        false => Ok(incoming),
        true => Err(peer_failed(incoming, op)),
    }
}

/// How long a receive waits with the matching queue held before it lets the queue go for a moment (see
/// [`Job::take_and_tell`]): what another thread of the process waits at most for its turn, while each
/// turn costs a waiting receive one more look at its server.
const TURN: Duration = Duration::from_millis(2);

impl Job {
    /// The link to `to`, made on first use.
    pub(crate) fn link(&self, to: Rank) -> Result<&Link> {
        self.check_rank(to)?;
        if let Some(link) = self.links[to.0].get() {
            return Ok(link);
        }
        let _linking = crate::sync::lock(&self.linking);
        if let Some(link) = self.links[to.0].get() {
            return Ok(link); // another thread made it meanwhile
        }
        // A send waits no longer than a receive would.
        let send_timeout =
            self.config.options.send_timeout.map_or(self.config.timeout, |t| t.min(self.config.timeout));
        let options = Options { send_timeout: Some(send_timeout), ..self.config.options.clone() };
        let link = Link::connect(&self.routes[to.0], &options, self.config.shm_options())?;
        Ok(self.links[to.0].get_or_init(|| link))
    }

    pub(crate) fn envelope(&self, channel: Channel, failed: bool) -> Envelope {
        Envelope { token: self.token, source: self.rank.0 as u32, channel: Some(channel), failed }
    }

    /// Sends `parts` to `to` on `channel` as one short message (see [`short`]) when the message has a short
    /// form and `link` carries it now; false when it did not send it (the caller sends it the general way).
    pub(crate) fn send_short(&self, link: &Link, channel: Channel, parts: &[&[u8]]) -> Result<bool> {
        match short::Head::new(&self.envelope(channel, false), parts) {
            Some(head) => link.send_short(&head, parts),
            None => Ok(false),
        }
    }

    pub(crate) fn send_bulks(&self, to: Rank, channel: Channel, bulks: Vec<Bulk<'_>>) -> Result<()> {
        let link = self.link(to)?;
        let mut meta = LbmMeta::new(self.envelope(channel, false));
        meta.bulks = bulks;
        // While the peer has not taken the message, take in this rank's own: the peer may be sending
        // to this rank at the same time. What goes wrong there is for the next receive to report.
        let mut take_in = || Ok(self.take_in_while_sending(None).unwrap_or(true));
        let sent = link.send(&meta, None, self.watch(&mut take_in));
        self.tell_untold();
        sent.map(drop).map_err(|e| self.send_failed(e, to))
    }

    /// A watch on this rank's shared-memory server (if it has one) that runs `take_in` when it rings.
    pub(crate) fn watch<'w>(&'w self, take_in: &'w mut dyn FnMut() -> Result<bool>) -> Option<Watch<'w>> {
        self.arrivals.shared_memory().map(|server| server.watch(take_in))
    }

    /// Takes in, without waiting, what has arrived for this rank, while the messages of later calls
    /// waiting unasked for hold fewer than [`LOOKAHEAD_BYTES`]: what a send does while its peer
    /// has not taken its message (in collective `sequence`, failing on news that ends it). When another
    /// thread holds the matching queue, does nothing: that thread takes the messages in.
    ///
    /// It runs inside a link's send, so it must not send itself (the link is busy): a mismatch it finds
    /// is told to the other ranks by [`Job::tell_untold`] once the send returned. Returns whether it
    /// looked (false when another thread held the matching queue).
    pub(crate) fn take_in_while_sending(
        &self,
        collective: Option<(Collective, &'static str)>,
    ) -> Result<bool> {
        let mut matching = match self.matching.try_lock() {
            Ok(matching) => matching,
            Err(std::sync::TryLockError::Poisoned(poisoned)) => poisoned.into_inner(),
            Err(std::sync::TryLockError::WouldBlock) => return Ok(false),
        };
        match collective {
            Some((collective, op)) => self.look_for_news(&mut matching, collective, op, LOOKAHEAD_BYTES),
            // A point-to-point send takes in whatever came: the peer may send this rank many large
            // messages before it receives, as it may over ZeroMQ (which queues them).
            None => self.take(&mut matching, (Duration::ZERO, usize::MAX), Want::Notices, "send").map(drop),
        }
        .map(|()| true)
    }

    /// Receives from the matching queue what `want` asks for, within the timeout of `intake` (taking in
    /// messages from the server while those waiting unasked for hold fewer bytes than its second part: see
    /// [`Matching::receive`]). A mismatch this rank finds is kept for [`Job::tell_untold`], which the
    /// caller runs once it let the matching queue go (and, inside a send, once the send returned).
    pub(crate) fn take(
        &self,
        matching: &mut Matching,
        intake: (Duration, usize),
        want: Want,
        op: &'static str,
    ) -> Result<Option<Incoming>> {
        let identity = (self.token, self.size(), self.rank);
        matching.receive(&self.arrivals, identity, intake, want).map_err(|failure| match failure {
            Receive::Failed(error) => error,
            Receive::Lost(loss) => self.lost_error(loss, op),
            Receive::OutOfStep(mismatch, found_here) => {
                if found_here {
                    crate::sync::lock(&self.untold).push(mismatch);
                    self.any_untold.store(true, Ordering::Release);
                }
                mismatch.into()
            }
        })
    }

    /// Locks the matching queue and [`take`](Job::take)s from it; then, with the matching queue let go
    /// (telling may wait for a send), tells every other rank of a mismatch found. A long wait holds the
    /// queue a [`TURN`] at a time: another thread of this process (in a collective of another mesh) may
    /// wait for a message this one took in, and finds it in the queue when it gets its turn.
    pub(crate) fn take_and_tell(
        &self,
        (timeout, hold_at_most): (Duration, usize),
        want: Want,
        op: &'static str,
    ) -> Result<Option<Incoming>> {
        // The clock is read only once a first turn ended empty (a receive whose message is there reads
        // none); the deadline then counts from there, the first turn's length taken off.
        let mut deadline: Option<Instant> = None;
        let mut turn = timeout.min(TURN);
        loop {
            let mut matching = crate::sync::lock(&self.matching);
            let taken = self.take(&mut matching, (turn, hold_at_most), want, op);
            drop(matching);
            self.tell_untold();
            if !matches!(taken, Ok(None)) {
                return taken;
            }
            let now = Instant::now();
            let deadline = *deadline.get_or_insert_with(|| now + timeout.saturating_sub(turn));
            turn = deadline.saturating_duration_since(now).min(TURN);
            if turn.is_zero() {
                return Ok(None);
            }
        }
    }

    /// Receives the next message `want` asks for (from `from`) within `timeout`. When nothing came and
    /// `suspect` names the rank that should have sent, that rank is taken as lost and every other rank is
    /// told, so that their receives fail at once instead of each at its own deadline. (Point-to-point
    /// receives name no suspect: that judgement is the application's.)
    pub(crate) fn receive_within(
        &self,
        want: Want,
        from: Source,
        op: &'static str,
        timeout: Duration,
        suspect: Option<Rank>,
    ) -> Result<Incoming> {
        if let Source::Rank(rank) = from {
            self.check_rank(rank)?;
        }
        let received = self.take_and_tell((timeout, usize::MAX), want, op)?;
        if let (None, Some(rank)) = (&received, suspect) {
            return Err(self.give_up_on(rank, op));
        }
        let incoming = received.ok_or_else(|| Error::Timeout {
            op,
            after: timeout,
            peer: Some(match from {
                Source::Rank(rank) => self.describe(rank),
                Source::Any => "any rank".into(),
            }),
        })?;
        match incoming.failed {
            false => Ok(incoming),
            true => Err(peer_failed(incoming, op)),
        }
    }

    /// Posts a point-to-point receive of mesh `group`'s message with `tag` from `from` (a rank of the
    /// job's mesh): see [`posted`].
    /// A receive of a scope (`owner` not 0) fails by itself at `deadline`, when nobody waits on it.
    pub(crate) fn post(
        &self,
        wanted: (GroupId, Tag, Source),
        owner: u64,
        deadline: Option<Instant>,
    ) -> Result<Arc<Slot>> {
        if let Source::Rank(rank) = wanted.2 {
            self.check_rank(rank)?;
        }
        Ok(crate::sync::lock(&self.matching).post(wanted, owner, deadline))
    }

    /// Gives back a message a posted receive took but will not use (see [`Matching::give_back`]).
    pub(crate) fn give_back(&self, incoming: Incoming) {
        crate::sync::lock(&self.matching).give_back(incoming);
    }

    /// Takes in one message, waiting up to `turn` for it (what a scope's lane does for its receives
    /// while nobody waits on them, and a wait for any of several requests). Errors are for the
    /// receives to report: here they end the turn.
    pub(crate) fn take_in_once(&self, turn: Duration) {
        let mut matching = crate::sync::lock(&self.matching);
        matching.expire(Instant::now());
        let taken = self.take(&mut matching, (turn, usize::MAX), Want::Anything, "receive");
        drop(matching);
        self.tell_untold();
        if taken.is_err() {
            std::thread::sleep(turn); // the news stays: looking again at once would spin
        }
    }

    /// Takes in a message that has arrived, without waiting, when no other thread is taking in.
    pub(crate) fn take_in_now(&self) {
        if let Ok(mut matching) = self.matching.try_lock() {
            matching.expire(Instant::now());
            let _ = self.take(&mut matching, (Duration::ZERO, usize::MAX), Want::Anything, "receive");
            drop(matching);
            self.tell_untold();
        }
    }

    /// Withdraws a posted receive (see [`Matching::unpost`]).
    pub(crate) fn unpost(&self, slot: &Slot) {
        crate::sync::lock(&self.matching).unpost(slot.id);
    }

    /// Waits up to `timeout` (a scope's receive: until its deadline) for the message of the posted
    /// receive `slot` (from `from`): takes messages in
    /// from the server itself while no other thread does, else waits for the thread that does to put
    /// the message in the slot. Past the deadline the receive is withdrawn, and fails naming `from`; so
    /// is a receive that fails (a rank lost, the transport failed).
    pub(crate) fn wait_posted(
        &self,
        slot: &Slot,
        from: Source,
        op: &'static str,
        timeout: Duration,
    ) -> Result<Incoming> {
        // A scope's receive counts its deadline from its start.
        let wait = slot.deadline.map_or(timeout, |at| at.saturating_duration_since(Instant::now()));
        let deadline = crate::sync::LazyDeadline::new(wait);
        let mut turn = wait.min(TURN);
        loop {
            if let Some(landed) = slot.landed.take() {
                return self.landed(landed, from, op, timeout);
            }
            // A thread that panicked holding the queue left it whole (every change to it is one step).
            let matching = match self.matching.try_lock() {
                Ok(matching) => Some(matching),
                Err(std::sync::TryLockError::Poisoned(poisoned)) => Some(poisoned.into_inner()),
                Err(std::sync::TryLockError::WouldBlock) => None,
            };
            match matching {
                Some(mut matching) => {
                    let taken = self.take(&mut matching, (turn, usize::MAX), Want::Posted(slot.id), op);
                    drop(matching);
                    self.tell_untold();
                    match taken {
                        Ok(Some(incoming)) => return received(incoming, op),
                        Ok(None) => {}
                        Err(error) => {
                            self.unpost(slot); // a message that comes later goes to a later receive
                            return Err(error);
                        }
                    }
                }
                // The thread that holds the queue takes the message in for this one.
                None => slot.landed.wait_for(turn),
            }
            turn = deadline.left().min(TURN);
            if turn.is_zero() {
                self.unpost(slot);
                // The message may have landed just before the receive was withdrawn.
                let landed = slot.landed.take().unwrap_or(Landed::Expired);
                return self.landed(landed, from, op, timeout);
            }
        }
    }

    /// What a receive from `from` whose slot ended as `landed` returns.
    pub(crate) fn landed(
        &self,
        landed: Landed,
        from: Source,
        op: &'static str,
        timeout: Duration,
    ) -> Result<Incoming> {
        match landed {
            Landed::Message(incoming) => received(incoming, op),
            Landed::Lost(loss) => Err(self.lost_error(loss, op)),
            Landed::Expired => {
                let peer = match from {
                    Source::Rank(rank) => self.describe(rank),
                    Source::Any => "any rank".into(),
                };
                Err(Error::Timeout { op, after: timeout, peer: Some(peer) })
            }
        }
    }

    /// Fails if news has come that ends `collective`: a lost rank, ranks out of step (a message
    /// of another call for this or a recent sequence number), a rank's failure in it. Takes in without
    /// waiting what has arrived, while the messages waiting unasked for hold fewer than `hold_at_most`
    /// bytes.
    pub(crate) fn look_for_news(
        &self,
        matching: &mut Matching,
        collective: Collective,
        op: &'static str,
        hold_at_most: usize,
    ) -> Result<()> {
        let want = Want::Collective(collective.group, collective.sequence, None);
        match self.take(matching, (Duration::ZERO, hold_at_most), want, op)? {
            // Only a failure notice is taken when no source is asked for.
            Some(notice) => Err(peer_failed(notice, op)),
            None => Ok(()),
        }
    }

    /// Tells every other rank of the mismatches this rank found and has not told yet.
    pub(crate) fn tell_untold(&self) {
        if !self.any_untold.swap(false, Ordering::AcqRel) {
            return;
        }
        let untold = std::mem::take(&mut *crate::sync::lock(&self.untold));
        for mismatch in untold {
            self.tell_others(Channel::OutOfStep(mismatch), self.rank, Duration::from_millis(200));
        }
    }

    /// Sends a notice on `channel` to every rank but `about` (and this one). Best effort, waiting at most
    /// `wait` per rank (a connection may have to be made first): a rank that cannot be told still has its
    /// own deadline.
    pub(crate) fn tell_others(&self, channel: Channel, about: Rank, wait: Duration) {
        let notice = LbmMeta::new(self.envelope(channel, false));
        for rank in (0..self.size()).map(Rank).filter(|&r| r != about && r != self.rank) {
            if let Ok(link) = self.link(rank) {
                let _ = link.send(&notice, Some(wait), None);
            }
        }
    }
}
