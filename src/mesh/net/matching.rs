//! Matching received mesh messages to what a receive asks for, keeping early arrivals for later, and
//! comparing the call of every collective message with this rank's own call for its sequence number.

#![forbid(unsafe_code)]

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::arrivals::{Arrivals, Arrived};
use super::envelope::{Call, Channel, Envelope, GroupId, Mismatch};
use super::posted::{Landed, Posted, Slot};
use super::short;
use crate::error::{Error, Result};
use crate::mesh::types::{Rank, Source, Tag};
use crate::sync::LazyDeadline;
use crate::transport::Payload;

/// Why a receive ended without a message.
#[derive(Debug)]
pub(crate) enum Receive {
    /// A rank of the mesh is known lost.
    Lost(Loss),
    /// Ranks are known out of step; `true` when this rank found it just now (and should tell the others).
    OutOfStep(Mismatch, bool),
    /// The transport failed.
    Failed(crate::error::Error),
}

/// One received mesh message.
#[derive(Debug)]
pub(crate) struct Incoming {
    /// The sender: the job's rank as received, the mesh's once a collective's exchange took it.
    pub(crate) source: Rank,
    /// The sender's rank in the job's mesh, which errors name.
    pub(crate) job_source: Rank,
    pub(crate) channel: Channel,
    pub(crate) failed: bool,
    pub(crate) payloads: Vec<Payload>,
}

/// A rank this mesh lost, and who found out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Loss {
    pub(crate) lost: Rank,
    pub(crate) reporter: Rank,
}

/// What a receive asks for.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Want {
    /// The message of the posted receive with this id (see [`Matching::post`]).
    Posted(u64),
    /// A message of this rank's collective `sequence` on the mesh (its call recorded with
    /// [`Matching::begin`]) from the source (a rank of the job's mesh); `None` takes no data (only
    /// checks what has arrived). A message of the sequence that reports its sender's failure is taken
    /// from any rank, with `None` too.
    Collective(GroupId, u64, Option<Source>),
    /// Nothing: only take in notices.
    Notices,
    /// Nothing: take in one message (or wait the whole timeout for one), wherever it goes.
    Anything,
}

/// How many of this rank's recent collective calls are remembered to check late messages against.
const CALLS_REMEMBERED: usize = 64;

/// The server's messages not yet asked for, a count of messages rejected as not from this mesh, the
/// first rank known lost (once one is, every receive fails at once: the mesh is broken, as an MPI job
/// whose rank died is), the first collective mismatch known (from then on every collective fails at
/// once: the ranks are out of step), this rank's recent collective calls, and which rank each rank last
/// said it was stuck waiting for.
#[derive(Debug, Default)]
pub(crate) struct Matching {
    unexpected: VecDeque<Incoming>,
    rejected: u64,
    /// How many messages of this mesh each rank sent that arrived here, by rank.
    arrived_from: Vec<u64>,
    loss: Option<Loss>,
    out_of_step: Option<Mismatch>,
    calls: VecDeque<(GroupId, u64, Call)>,
    waiting_on: HashMap<Rank, Rank>,
    /// Point-to-point receives waiting for their message, in the order they were posted.
    posted: VecDeque<Posted>,
    /// The id of the next receive posted.
    next_posted: u64,
}

/// Where a message that arrived went.
enum Delivered {
    /// To the posted receive the receive asks for.
    Wanted(Incoming),
    /// Into another posted receive's slot.
    Elsewhere,
    /// Nowhere yet: no posted receive takes it.
    Unasked(Incoming),
}

/// What to do with a message, for one receive.
#[derive(Debug, PartialEq, Eq)]
enum Verdict {
    Take,
    Keep,
    Drop,
    Mismatch(Mismatch),
}

impl Matching {
    /// Remembers this rank's call for collective `sequence` of mesh `group`, to check messages of that
    /// sequence against.
    pub(crate) fn begin(&mut self, group: GroupId, sequence: u64, call: Call) {
        if self.calls.len() == CALLS_REMEMBERED {
            self.calls.pop_front();
        }
        self.calls.push_back((group, sequence, call));
    }

    /// Returns the first message (queued or arriving within `timeout`) that `want` asks for. Messages
    /// are taken in from the server only while those waiting unasked for hold fewer than `hold_at_most`
    /// bytes, not counting the messages of the collective `want` asks for (see [`Matching::held_bytes`]):
    /// a look for notices in the middle of a collective must not drain the server's queue of later calls
    /// into memory (that queue's limit is what holds a fast sender back), and must take in its own.
    pub(crate) fn receive(
        &mut self,
        server: &Arrivals,
        (token, size, rank): (u64, usize, Rank),
        (timeout, hold_at_most): (Duration, usize),
        want: Want,
    ) -> Result<Option<Incoming>, Receive> {
        let deadline = LazyDeadline::new(timeout);
        // The queued messages are looked at in place, in order, from the first: a rank that many
        // messages of later calls reached early pays for those it looks at, not for moving them all.
        // None of them is for a posted receive (each looked at the queue when it was posted), nor a
        // notice: those looks start at the server.
        let mut at = match want {
            Want::Collective(..) => 0,
            Want::Posted(_) | Want::Notices | Want::Anything => self.unexpected.len(),
        };
        loop {
            let failure = match (self.loss, self.out_of_step, want) {
                (Some(loss), _, _) => Some(Receive::Lost(loss)),
                (None, Some(mismatch), Want::Collective(..)) => Some(Receive::OutOfStep(mismatch, false)),
                _ => None,
            };
            if let Some(failure) = failure {
                return Err(failure);
            }
            // A message from the server once every queued one was looked at (`None`: the queued one at
            // `at`).
            let arrived = match at < self.unexpected.len() {
                true => None,
                // Counting the held bytes costs a pass over the queue: only a look-ahead bounds them.
                false if hold_at_most != usize::MAX && self.held_bytes(want) >= hold_at_most => {
                    return Ok(None)
                }
                false => match self.next_message(server, token, size, &deadline).map_err(Receive::Failed)? {
                    Some(message) => Some(message),
                    None if deadline.left().is_zero() => return Ok(None),
                    None => continue,
                },
            };
            let arrived = match arrived.map(|message| self.deliver(message, want)) {
                Some(Delivered::Wanted(message)) => return Ok(Some(message)),
                Some(Delivered::Elsewhere) if matches!(want, Want::Anything) => return Ok(None),
                Some(Delivered::Elsewhere) => continue,
                Some(Delivered::Unasked(message)) => Some(message),
                None => None,
            };
            let from_server = arrived.is_some();
            let verdict = match &arrived {
                Some(message) if self.take_notice(message) => Verdict::Drop,
                Some(message) => self.verdict(message, want, rank),
                None => self.verdict(&self.unexpected[at], want, rank),
            };
            match (verdict, arrived) {
                (Verdict::Take, Some(message)) => return Ok(Some(message)),
                (Verdict::Take, None) => return Ok(self.unexpected.remove(at)),
                (Verdict::Keep, arrived) => {
                    self.unexpected.extend(arrived);
                    at += 1;
                }
                (Verdict::Drop, arrived) => {
                    if arrived.is_none() {
                        self.unexpected.remove(at);
                    }
                }
                (Verdict::Mismatch(mismatch), arrived) => {
                    if arrived.is_none() {
                        self.unexpected.remove(at);
                    }
                    self.out_of_step.get_or_insert(mismatch);
                    return Err(Receive::OutOfStep(mismatch, true));
                }
            }
            if from_server && matches!(want, Want::Anything) {
                return Ok(None);
            }
        }
    }

    /// Posts a receive of a message of mesh `group` with `tag` from `from` (a rank of the job's mesh):
    /// the first such message in the queue fills its slot at once, else the first to arrive does.
    pub(crate) fn post(
        &mut self,
        (group, tag, from): (GroupId, Tag, Source),
        owner: u64,
        deadline: Option<Instant>,
    ) -> Arc<Slot> {
        let id = self.next_posted;
        self.next_posted += 1;
        let slot = Arc::new(Slot { id, owner, deadline, landed: Default::default() });
        let posted = Posted { group, tag, from, slot };
        if let Some(loss) = self.loss {
            posted.slot.landed.set(Landed::Lost(loss));
            return posted.slot;
        }
        match self.unexpected.iter().position(|message| posted.admits(message)) {
            Some(at) => {
                let message = self.unexpected.remove(at).expect("the position is in the queue");
                posted.slot.landed.set(Landed::Message(message));
            }
            None => self.posted.push_back(Posted { slot: Arc::clone(&posted.slot), ..posted }),
        }
        posted.slot
    }

    /// Gives back the message of a receive that will not take it (dropped unwaited): to the first
    /// posted receive it matches, else to the front of the queue, where it was.
    pub(crate) fn give_back(&mut self, message: Incoming) {
        match self.posted.iter().position(|posted| posted.admits(&message)) {
            Some(at) => {
                let posted = self.posted.remove(at).expect("the position is in the queue");
                posted.slot.landed.set(Landed::Message(message));
            }
            None => self.unexpected.push_front(message),
        }
    }

    /// Fails every posted receive whose deadline passed by `now`.
    pub(crate) fn expire(&mut self, now: Instant) {
        if self.posted.iter().any(|posted| posted.slot.deadline.is_some_and(|at| at <= now)) {
            self.posted.retain(|posted| match posted.slot.deadline {
                Some(at) if at <= now => {
                    posted.slot.landed.set(Landed::Expired);
                    false
                }
                _ => true,
            });
        }
    }

    /// Withdraws the posted receive `id` (given up, or its request forgotten): no message goes to it
    /// from now on. A message it already holds stays in its slot.
    pub(crate) fn unpost(&mut self, id: u64) {
        self.posted.retain(|posted| posted.slot.id != id);
    }

    /// Withdraws every receive the scope `owner` posted (see [`Matching::unpost`]).
    pub(crate) fn unpost_owned_by(&mut self, owner: u64) {
        self.posted.retain(|posted| posted.slot.owner != owner);
    }

    /// Gives an application message that arrived to the first posted receive it matches: returned
    /// when that receive is the one `want` asks for, else put in its slot.
    fn deliver(&mut self, message: Incoming, want: Want) -> Delivered {
        if !matches!(message.channel, Channel::User(..)) {
            return Delivered::Unasked(message);
        }
        let Some(at) = self.posted.iter().position(|posted| posted.admits(&message)) else {
            return Delivered::Unasked(message);
        };
        let posted = self.posted.remove(at).expect("the position is in the queue");
        match want {
            Want::Posted(id) if id == posted.slot.id => Delivered::Wanted(message),
            _ => {
                posted.slot.landed.set(Landed::Message(message));
                Delivered::Elsewhere
            }
        }
    }

    /// Takes in `message` when it is a notice (a loss, a wait, ranks out of step): true when it was one.
    /// Notices are never queued.
    fn take_notice(&mut self, message: &Incoming) -> bool {
        match message.channel {
            Channel::PeerLost(lost) => {
                self.record_loss(Loss { lost: Rank(lost as usize), reporter: message.source })
            }
            Channel::WaitingOn(on) => _ = self.waiting_on.insert(message.source, Rank(on as usize)),
            Channel::OutOfStep(mismatch) => _ = self.out_of_step.get_or_insert(mismatch),
            Channel::User(..) | Channel::Collective(_) => return false,
        }
        true
    }

    /// Says what `want` makes of a message that is not a notice.
    fn verdict(&self, message: &Incoming, want: Want, rank: Rank) -> Verdict {
        match (message.channel, want) {
            (Channel::Collective(theirs), Want::Collective(group, current, from))
                if theirs.group == group && theirs.sequence <= current =>
            {
                let ours = self.calls.iter().find(|(g, s, _)| *g == group && *s == theirs.sequence);
                let Some(&(_, _, ours)) = ours else {
                    return Verdict::Drop; // older than every call remembered
                };
                if theirs.call != ours {
                    return Verdict::Mismatch(Mismatch {
                        group,
                        sequence: theirs.sequence,
                        rank: rank.0 as u32,
                        call: ours,
                        peer: message.source.0 as u32,
                        peer_call: theirs.call,
                    });
                }
                match from {
                    // Left over from an earlier call of this rank that failed: nobody will ask for it.
                    _ if theirs.sequence < current => Verdict::Drop,
                    // A rank failed in this collective: whoever looks (a receive, or a look for notices
                    // while a send waits) takes its notice.
                    _ if message.failed => Verdict::Take,
                    Some(from) if from.admits(message.source) => Verdict::Take,
                    _ => Verdict::Keep,
                }
            }
            _ => Verdict::Keep,
        }
    }

    /// Receives one message from the server; messages that are not from this mesh are logged, counted and
    /// dropped (`Ok(None)`), as is nothing arriving in time.
    fn next_message(
        &mut self,
        server: &Arrivals,
        token: u64,
        size: usize,
        deadline: &LazyDeadline,
    ) -> Result<Option<Incoming>> {
        let received = match server.recv_message(deadline) {
            Err(Error::Timeout { .. }) => return Ok(None),
            received => received,
        };
        let accepted = received.and_then(|arrived| {
            let (envelope, payloads) = match arrived {
                Arrived::Whole(message) => (message.metadata::<Envelope>()?.custom, message.into_payloads()),
                Arrived::Short(bytes) => short::decode(bytes)
                    .map_err(|why| Error::Mesh(format!("a short message that does not read: {why}")))?,
            };
            match envelope.channel {
                Some(channel)
                    if envelope.token == token
                        && (envelope.source as usize) < size
                        && names_ranks(channel, size) =>
                {
                    self.count_arrival(envelope.source as usize, size);
                    Ok(Some(Incoming {
                        source: Rank(envelope.source as usize),
                        job_source: Rank(envelope.source as usize),
                        channel,
                        failed: envelope.failed,
                        payloads,
                    }))
                }
                _ => Err(Error::Mesh(format!(
                    "message claims rank {} with job token {:#x}, not this job's",
                    envelope.source, envelope.token
                ))),
            }
        });
        match accepted {
            Ok(message) => Ok(message),
            Err(err) if err.is_refused_message() || matches!(err, Error::Mesh(_)) => {
                self.rejected += 1;
                log::warn!(
                    "lightbeam: {}: dropped a message from outside the mesh or one that does not read: {err}",
                    server.address()
                );
                Ok(None)
            }
            // A message the same-node transport could not finish (its sender died or left mid-message,
            // or wrote garbage) is dropped; the ranks waiting for that sender find it lost by their
            // deadline, as with any silent rank. ZeroMQ's own failures are the receive's error.
            Err(err @ Error::PeerGone { .. }) => {
                log::warn!("lightbeam: {}: dropped an unfinished message: {err}", server.address());
                Ok(None)
            }
            Err(err @ Error::Transport { .. }) if is_shared_memory(&err) => {
                log::warn!("lightbeam: {}: dropped an unfinished message: {err}", server.address());
                Ok(None)
            }
            Err(err) => Err(err),
        }
    }

    /// The bytes of the messages waiting unasked for that count against a look-ahead made for `want`:
    /// every message, but those of the collective `want` asks for and of earlier ones. A collective's own
    /// messages are bounded by the call itself, and taking them in is what lets a peer that sends to this
    /// rank while this rank sends to it go on, whatever else of the call this rank already holds.
    fn held_bytes(&self, want: Want) -> usize {
        let counted = |message: &&Incoming| match (message.channel, want) {
            (Channel::Collective(theirs), Want::Collective(group, current, _)) => {
                theirs.group != group || theirs.sequence > current
            }
            _ => true,
        };
        self.unexpected.iter().filter(counted).flat_map(|m| &m.payloads).map(|p| p.len()).sum()
    }

    /// Remembers the first loss reported or found; every posted receive fails with it.
    pub(crate) fn record_loss(&mut self, loss: Loss) {
        let loss = *self.loss.get_or_insert(loss);
        for posted in self.posted.drain(..) {
            posted.slot.landed.set(Landed::Lost(loss));
        }
    }

    /// The rank at the end of the chain of waits that starts at `suspect` (`suspect` waited past its
    /// deadline for a rank, which waited for another...): the one that does not say it is waiting.
    pub(crate) fn end_of_wait_chain(&self, suspect: Rank) -> Rank {
        let mut culprit = suspect;
        let mut seen = vec![suspect];
        while let Some(&next) = self.waiting_on.get(&culprit) {
            if seen.contains(&next) {
                break;
            }
            seen.push(next);
            culprit = next;
        }
        culprit
    }

    fn count_arrival(&mut self, source: usize, size: usize) {
        self.arrived_from.resize(size, 0);
        self.arrived_from[source] += 1;
    }

    /// How many messages of this mesh from `source` arrived here.
    pub(crate) fn arrived_from(&self, source: Rank) -> u64 {
        self.arrived_from.get(source.0).copied().unwrap_or(0)
    }

    /// How many messages were rejected as not belonging to this mesh.
    pub(crate) fn rejected(&self) -> u64 {
        self.rejected
    }
}

/// Whether `error` comes from this rank's shared-memory server (a message it had to drop).
fn is_shared_memory(error: &Error) -> bool {
    let prefix = format!("{}://", crate::transport::same_node::SCHEME);
    matches!(error, Error::Transport { endpoint, .. } if endpoint.starts_with(&prefix))
}

/// Whether every rank `channel` names is a rank of a mesh of `size`.
fn names_ranks(channel: Channel, size: usize) -> bool {
    let in_range = |rank: u32| (rank as usize) < size;
    match channel {
        Channel::User(..) => true,
        Channel::Collective(c) => c.call.root.is_none_or(in_range),
        Channel::PeerLost(rank) | Channel::WaitingOn(rank) => in_range(rank),
        Channel::OutOfStep(m) => in_range(m.rank) && in_range(m.peer),
    }
}

/// What a receive on `channel` from `from` asks the matching queue for.
pub(crate) fn wanted(channel: Channel, from: Source) -> Want {
    match channel {
        Channel::Collective(c) => Want::Collective(c.group, c.sequence, Some(from)),
        _ => Want::Notices,
    }
}

/// The error a rank's failure notice in a collective makes: the rank and its reason.
pub(crate) fn peer_failed(notice: Incoming, op: &'static str) -> Error {
    let reason = notice.payloads.first().map(|p| String::from_utf8_lossy(p).into_owned());
    // The rank that failed, when the sender passes another's failure on.
    let origin =
        notice.payloads.get(1).and_then(|p| <[u8; 4]>::try_from(&p[..]).ok()).map(u32::from_le_bytes);
    let rank = origin.map_or(notice.source.0, |origin| origin as usize);
    Error::PeerFailed { rank, op, reason: reason.unwrap_or_default() }
}

#[cfg(test)]
mod tests {
    use super::super::envelope::{Collective, Operation};
    use super::*;

    fn message(source: usize, sequence: u64, root: u32, failed: bool) -> Incoming {
        let call = Call::new(Operation::Broadcast, Some(root));
        let channel = Channel::Collective(Collective { group: GroupId::WORLD, sequence, call });
        Incoming { source: Rank(source), job_source: Rank(source), channel, failed, payloads: Vec::new() }
    }

    /// What a receive in collective `sequence` of the job's mesh asks for.
    fn collective(sequence: u64, from: Option<Source>) -> Want {
        Want::Collective(GroupId::WORLD, sequence, from)
    }

    #[test]
    fn a_collective_message_is_judged_by_its_call_before_its_source() {
        let mut matching = Matching::default();
        let me = Rank(1);
        matching.begin(GroupId::WORLD, 5, Call::new(Operation::Broadcast, Some(0)));
        let want = |from| collective(5, Some(from));
        // The call asked for, from the rank asked for: taken; from another rank: kept for a later step,
        // unless it reports a failure.
        assert_eq!(
            matching.verdict(&message(0, 5, 0, false), want(Source::Rank(Rank(0))), me),
            Verdict::Take
        );
        assert_eq!(
            matching.verdict(&message(2, 5, 0, false), want(Source::Rank(Rank(0))), me),
            Verdict::Keep
        );
        assert_eq!(matching.verdict(&message(2, 5, 0, true), want(Source::Rank(Rank(0))), me), Verdict::Take);
        // Another root, from any rank, even one not asked for, and even when only checking: a mismatch.
        let expected = Verdict::Mismatch(Mismatch {
            group: GroupId::WORLD,
            sequence: 5,
            rank: 1,
            call: Call::new(Operation::Broadcast, Some(0)),
            peer: 2,
            peer_call: Call::new(Operation::Broadcast, Some(2)),
        });
        assert_eq!(matching.verdict(&message(2, 5, 2, false), want(Source::Rank(Rank(0))), me), expected);
        assert_eq!(matching.verdict(&message(2, 5, 2, false), collective(5, None), me), expected);
        // Only checking: data waits, a failure notice of this collective is taken.
        assert_eq!(matching.verdict(&message(0, 5, 0, false), collective(5, None), me), Verdict::Keep);
        assert_eq!(matching.verdict(&message(2, 5, 0, true), collective(5, None), me), Verdict::Take);
        // A later collective's message waits; a leftover of this one, once past, is dropped, as is one
        // older than every call remembered; application receives leave collective messages alone.
        assert_eq!(matching.verdict(&message(0, 6, 3, false), want(Source::Any), me), Verdict::Keep);
        assert_eq!(matching.verdict(&message(0, 5, 0, false), collective(6, None), me), Verdict::Drop);
        assert_eq!(matching.verdict(&message(0, 4, 0, false), want(Source::Any), me), Verdict::Drop);
        assert_eq!(matching.verdict(&message(0, 5, 2, false), Want::Posted(0), me), Verdict::Keep);
        // Another mesh's collective of the same sequence number is not this one's: it waits, whatever
        // its call.
        let mut other = message(2, 5, 2, false);
        other.channel = Channel::Collective(Collective {
            group: GroupId(9),
            sequence: 5,
            call: Call::new(Operation::Gather, Some(1)),
        });
        assert_eq!(matching.verdict(&other, want(Source::Any), me), Verdict::Keep);
    }

    #[test]
    fn the_chain_of_waits_ends_at_the_rank_that_waits_for_nobody() {
        let mut matching = Matching::default();
        assert_eq!(matching.end_of_wait_chain(Rank(0)), Rank(0));
        // Rank 3 waits for 0, which says it waits for 1, which says it waits for 2.
        matching.waiting_on.insert(Rank(0), Rank(1));
        matching.waiting_on.insert(Rank(1), Rank(2));
        assert_eq!(matching.end_of_wait_chain(Rank(0)), Rank(2));
        // A cycle ends where it would repeat.
        matching.waiting_on.insert(Rank(2), Rank(0));
        assert_eq!(matching.end_of_wait_chain(Rank(0)), Rank(2));
    }
}
