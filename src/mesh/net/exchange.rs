//! One collective call in progress on one rank ([`Exchange`]): its channel, and the deadline of all its
//! waits, counted from the rank's last progress in it. Its sends queue at once when they can; when they
//! cannot, they look for news that ends the collective while they wait, as a receive does: a ZeroMQ
//! send waits for room in short slices and looks between them, a shared-memory send (which may wait for
//! the peer to take its message in) looks whenever this rank's own server rings.

#![forbid(unsafe_code)]

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use super::envelope::{Call, Channel, Collective, Data, Operation};
use super::link::Link;
use super::matching::{wanted, Incoming};
use super::offer_words::{self, Offer};
use crate::bulk::Bulk;
use crate::error::{Error, Result};
use crate::mesh::topology::Topology;
use crate::mesh::turns::Turn;
use crate::mesh::types::{Rank, Source};
use crate::mesh::{Job, Mesh};
use crate::meta::LbmMeta;
use crate::shm::ShmPtr;
use crate::sync::lock;
use crate::transport::same_node::Watch;
use crate::transport::Payload;

/// How long a rank that finds a peer gone from a collective (its server closed, or its offer of data
/// closed before a copy from it was done) looks for news before it blames the peer: the notices of the
/// failure that made the peer leave (a mismatch, a lost rank) are sent before it leaves, but may arrive
/// after it left.
pub(crate) const GONE_GRACE: Duration = Duration::from_millis(200);

/// How long a collective's send waits for room at a time before it looks for news again.
const SEND_SLICE: Duration = Duration::from_millis(10);

/// How many bytes of later calls' messages the matching queue may hold while a send waits and looks for news:
/// past that it takes no more from the server. The messages of the send's own collective never count:
/// they are taken in whatever their size, so that a peer sending to this rank while this rank sends to
/// it always goes on. Enough to see a notice past a few pieces of data (the server also takes turns
/// between senders), little enough that looking does not undo the queue limit that holds a rank running
/// ahead back: a rank holds at most this much of later calls more.
pub(crate) const LOOKAHEAD_BYTES: usize = 8 << 20;

/// A collective in progress on this rank.
#[derive(Debug)]
pub(crate) struct Ongoing {
    /// The channel every message of the collective travels on.
    pub(crate) channel: Channel,
    /// The operation's name, for errors.
    pub(crate) op: &'static str,
    timeout: Duration,
    started: Instant,
    /// When the rank last made progress, in nanoseconds after `started`. Atomic: a scatter's root sends
    /// from several threads.
    progress: AtomicU64,
}

impl Ongoing {
    pub(crate) fn new(channel: Channel, op: &'static str, timeout: Duration) -> Self {
        Self { channel, op, timeout, started: Instant::now(), progress: AtomicU64::new(0) }
    }

    /// Notes progress: a message of the collective received or queued.
    fn progressed(&self) {
        let now = u64::try_from(self.started.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.progress.fetch_max(now, Ordering::Relaxed);
    }

    /// How long a wait may still last: until the deadline, `timeout` after the last progress.
    fn left(&self) -> Duration {
        let last = Duration::from_nanos(self.progress.load(Ordering::Relaxed));
        (last + self.timeout).saturating_sub(self.started.elapsed())
    }

    /// The collective: its mesh, its sequence number and this rank's call.
    pub(crate) fn collective(&self) -> Collective {
        match self.channel {
            Channel::Collective(c) => c,
            _ => unreachable!("an ongoing collective travels on a collective channel"),
        }
    }
}

/// One collective call on this rank as its algorithm sees it: the seam between the collectives and the
/// transports. It sends, forwards and receives the call's messages within the call's deadline (looking
/// for news that ends the call while it waits), reports a failure to the ranks that wait on this one,
/// and tells which process each rank of this node is and whether its offer of data is still open. The
/// collectives reach the mesh through it and nothing else.
pub(crate) struct Exchange<'m> {
    /// The mesh the collective runs on: its ranks are this exchange's.
    mesh: &'m Mesh,
    /// The job's servers and links, which know ranks by their rank in the job.
    job: &'m Job,
    ongoing: Ongoing,
    /// Held until the call ends: the mesh's next collective waits for it.
    _turn: Turn<'m>,
}

impl Mesh {
    /// Starts a collective: takes its sequence number (every collective takes one first, whatever
    /// happens next, so that all ranks keep counting alike even when a call fails), remembers this
    /// rank's call for it, and fails at once if a rank is known lost (even a rank, like a broadcast
    /// root, that would otherwise only send and never learn of it), or if a message that arrived
    /// already shows another rank's different call for this or a recent sequence number, or a rank's
    /// failure notice for this one.
    pub(crate) fn begin_collective(
        &self,
        op: &'static str,
        operation: Operation,
        root: Option<Rank>,
    ) -> Result<Exchange<'_>> {
        self.begin_call(op, operation, root, None)
    }

    /// As [`Mesh::begin_collective`], for a typed collective whose call also names its `data`.
    pub(crate) fn begin_call(
        &self,
        op: &'static str,
        operation: Operation,
        root: Option<Rank>,
        data: Option<Data>,
    ) -> Result<Exchange<'_>> {
        let turn = self.turns.begin();
        let sequence = turn.ticket;
        // A root out of range (this rank's own error, which it reports) travels as none, so that the
        // other ranks take its notice (as a mismatch, naming this call) instead of dropping it as garbage.
        let root = root.filter(|r| r.0 < self.size()).map(|r| r.0 as u32);
        let call = Call { operation, root, data };
        let collective = Collective { group: self.group.id, sequence, call };
        let job = &*self.job;
        let mut matching = lock(&job.matching);
        matching.begin(collective.group, sequence, call);
        let news = job.look_for_news(&mut matching, collective, op, usize::MAX);
        drop(matching);
        job.tell_untold();
        news?;
        let channel = Channel::Collective(collective);
        Ok(Exchange { mesh: self, job, ongoing: Ongoing::new(channel, op, job.config.timeout), _turn: turn })
    }
}

impl<'m> Exchange<'m> {
    /// This rank.
    pub(crate) fn rank(&self) -> Rank {
        self.mesh.rank()
    }

    /// The number of ranks.
    pub(crate) fn size(&self) -> usize {
        self.mesh.size()
    }

    /// Every rank but this one.
    pub(crate) fn others(&self) -> impl Iterator<Item = Rank> + '_ {
        (0..self.size()).map(Rank).filter(move |&r| r != self.rank())
    }

    /// Which ranks share which node.
    pub(crate) fn topology(&self) -> &'m Topology {
        &self.mesh.topology
    }

    /// The operation's name, for errors.
    pub(crate) fn op(&self) -> &'static str {
        self.ongoing.op
    }

    /// Fails unless `rank` is a rank of the mesh.
    pub(crate) fn check_rank(&self, rank: Rank) -> Result<()> {
        self.mesh.check_rank(rank)
    }

    /// Passes `result` through; on an error, first tells `dependents` (the ranks waiting on this one in
    /// the call) so that they fail at once with the reason instead of at their deadline. (A mismatch or
    /// a loss needs no report here: every rank was told when it was found.)
    pub(crate) fn or_report<T>(
        &self,
        dependents: impl IntoIterator<Item = Rank>,
        result: Result<T>,
    ) -> Result<T> {
        match &result {
            Err(Error::CollectiveMismatch { .. } | Error::PeerLost { .. }) | Ok(_) => {}
            Err(error) => {
                let dependents = dependents.into_iter().map(|rank| self.job_rank(rank));
                self.job.report_failure(self.ongoing.channel, dependents, error)
            }
        }
        result
    }

    /// Receives the call's first message from whichever of `senders` sends it: past the deadline, the
    /// one of them that is lost, or a timeout naming them all when none can be told from the others.
    pub(crate) fn receive_from_one_of(&self, senders: &[Rank]) -> Result<Incoming> {
        let suspect = (senders.len() == 1).then(|| senders[0]);
        self.receive(Source::Any, suspect).map_err(|error| match error {
            Error::Timeout { op, after, .. } => {
                let senders: Vec<Rank> = senders.iter().map(|&rank| self.job_rank(rank)).collect();
                self.job.give_up_on_one_of(&senders, op, after)
            }
            other => other,
        })
    }

    /// After a peer left the call early: the news that made it leave when it comes within
    /// [`GONE_GRACE`] (a mismatch, a lost rank, a failure it reported), else `otherwise`.
    pub(crate) fn news_or(&self, otherwise: Error) -> Error {
        self.job.news_or(&self.ongoing, otherwise)
    }

    /// The process of `rank`, when it runs on this node: the only ranks whose memory this rank reads. (A
    /// rank of this node shares its pid namespace, so the pid names the same process here; it is this
    /// very process when the ranks are threads of one.)
    pub(crate) fn process_here(&self, rank: Rank) -> Option<u32> {
        let topology = &self.mesh.topology;
        let same_node =
            topology.node_of(rank).is_some() && topology.node_of(rank) == topology.node_of(self.rank());
        same_node.then(|| self.job.peers[self.job_rank(rank).0].pid)
    }

    /// Opens an offer of this rank's: readers may copy from the buffers it names until it is dropped.
    pub(crate) fn open_offer(&self) -> Result<Offer> {
        self.job.offer_words.open(self.job.token, self.job.rank)
    }

    /// True when `holder`'s offer `id`, whose word is at `at`, is still open.
    pub(crate) fn offer_still_open(&self, holder: Rank, at: &ShmPtr, id: u64) -> bool {
        let holder = self.job_rank(holder);
        let prefix = offer_words::prefix(self.job.token, holder);
        self.job.offer_words.still_open(&prefix, holder, at, id)
    }

    /// The job's rank of this mesh's `rank`: errors name ranks by it.
    pub(crate) fn job_rank(&self, rank: Rank) -> Rank {
        self.mesh.group.job_rank(rank)
    }

    /// The error for a message of this mesh's `rank` that breaks the collective's protocol.
    pub(crate) fn peer_error(&self, rank: Rank, reason: &str) -> Error {
        Error::BadPeerMessage { rank: self.job_rank(rank).0, op: self.op(), reason: reason.into() }
    }

    /// The link to this mesh's `rank`.
    fn link(&self, rank: Rank) -> Result<&'m Link> {
        self.mesh.check_rank(rank)?;
        self.job.link(self.job_rank(rank))
    }
}

impl Exchange<'_> {
    /// Sends `parts` to `to` as one message of the collective.
    pub(crate) fn send(&self, to: Rank, parts: &[&[u8]]) -> Result<()> {
        let (link, channel) = (self.link(to)?, self.ongoing.channel);
        let mut meta = None;
        self.send_with_room(to, link, |wait, watch| {
            if self.job.send_short(link, channel, parts)? {
                return Ok(());
            }
            let meta = meta.get_or_insert_with(|| {
                let mut meta = LbmMeta::new(self.job.envelope(channel, false));
                meta.bulks = parts.iter().map(|p| Bulk::source(p, Default::default())).collect();
                meta
            });
            link.send(meta, Some(wait), watch).map(drop)
        })
    }

    /// Sends received payloads on to `to` in the collective, without copying them (but for small ones,
    /// which the fast path copies into the peer's ring).
    pub(crate) fn forward(&self, to: Rank, mut payloads: Vec<Payload>) -> Result<()> {
        let (link, channel) = (self.link(to)?, self.ongoing.channel);
        let mut meta = LbmMeta::new(self.job.envelope(channel, false));
        meta.bulks = payloads.iter().map(|p| Bulk::descriptor(p.len(), Default::default())).collect();
        let count = payloads.len();
        self.send_with_room(to, link, |wait, watch| {
            let parts: Vec<&[u8]> = payloads.iter().map(|p| &p[..]).collect();
            if self.job.send_short(link, channel, &parts)? {
                return Ok(());
            }
            let (error, back) = match link.forward(&meta, std::mem::take(&mut payloads), wait, watch) {
                Ok(_) => return Ok(()),
                Err(failed) => failed,
            };
            payloads = back;
            match payloads.len() == count {
                true => Err(error),
                false => Err(Error::Mesh(format!("forwarding to rank {to} stopped part-way: {error}"))),
            }
        })
    }

    /// Receives the collective's next message from `from`; past the deadline `suspect` (when named) is
    /// taken as lost. The message's source is this mesh's rank of its sender.
    pub(crate) fn receive(&self, from: Source, suspect: Option<Rank>) -> Result<Incoming> {
        let from = match from {
            Source::Rank(rank) => {
                self.mesh.check_rank(rank)?;
                Source::Rank(self.job_rank(rank))
            }
            Source::Any => Source::Any,
        };
        let want = wanted(self.ongoing.channel, from);
        let suspect = suspect.map(|rank| self.job_rank(rank));
        let mut incoming =
            self.job.receive_within(want, from, self.ongoing.op, self.ongoing.left(), suspect)?;
        incoming.source = self.mesh.group.rank_of(incoming.source).ok_or_else(|| Error::BadPeerMessage {
            rank: incoming.source.0,
            op: self.ongoing.op,
            reason: "a message of this mesh's collective from a rank outside it".into(),
        })?;
        self.ongoing.progressed();
        Ok(incoming)
    }

    /// Runs `send` over `link` (which sends a message if it can within the wait it is given, looking for
    /// news with the watch it is given while it waits) until the deadline. Over ZeroMQ the first try
    /// waits for nothing (a message that queues at once pays for no poll and no look), the next ones a
    /// slice each, looking for news between slices. Past the deadline, `to` is taken as lost, as after a
    /// receive that waited for it.
    fn send_with_room(
        &self,
        to: Rank,
        link: &Link,
        mut send: impl FnMut(Duration, Option<Watch<'_>>) -> Result<()>,
    ) -> Result<()> {
        let (mesh, ongoing, to) = (self.job, &self.ongoing, self.job_rank(to));
        let mut look = || mesh.take_in_while_sending(Some((ongoing.collective(), ongoing.op)));
        let mut wait = if link.queues() { Duration::ZERO } else { ongoing.left() };
        let sent = loop {
            match send(wait, mesh.watch(&mut look)) {
                Ok(()) => {
                    ongoing.progressed();
                    break Ok(());
                }
                Err(Error::Timeout { .. }) => {}
                // The peer's shared-memory server closed or its process ended: it is gone. The news it or
                // another rank sent (why it failed, which rank it lost) may still be on its way: this
                // rank looks for it for a short grace before it takes the peer as lost.
                Err(Error::PeerGone { .. }) if !link.queues() => {
                    let deadline = Instant::now() + GONE_GRACE;
                    let news = loop {
                        if let Err(news) = look() {
                            break Err(news);
                        }
                        if Instant::now() >= deadline {
                            break Ok(());
                        }
                        std::thread::sleep(Duration::from_millis(2));
                    };
                    break news.and_then(|()| Err(mesh.give_up_on(to, ongoing.op)));
                }
                Err(error) => break Err(error),
            }
            if let Err(error) = look() {
                break Err(error);
            }
            let left = ongoing.left();
            if left.is_zero() {
                mesh.tell_untold();
                return Err(mesh.give_up_on(to, ongoing.op));
            }
            wait = if link.queues() { left.min(SEND_SLICE) } else { left };
        };
        mesh.tell_untold();
        sent
    }
}

#[cfg(test)]
mod tests {
    use super::super::envelope::{Call, Collective, Operation};
    use super::*;

    #[test]
    fn the_deadline_counts_from_the_last_progress() {
        let call = Call::new(Operation::Gather, Some(0));
        let channel = Channel::Collective(Collective {
            group: super::super::envelope::GroupId::WORLD,
            sequence: 3,
            call,
        });
        let ongoing = Ongoing::new(channel, "gather", Duration::from_secs(60));
        assert_eq!(ongoing.collective().sequence, 3);
        std::thread::sleep(Duration::from_millis(300));
        let before = ongoing.left();
        assert!(before <= Duration::from_millis(59_700), "{before:?}");
        ongoing.progressed();
        assert!(ongoing.left() > before, "progress moves the deadline");
        // With nothing done, the deadline passes and stays passed.
        let stalled = Ongoing::new(channel, "gather", Duration::from_millis(50));
        std::thread::sleep(Duration::from_millis(60));
        assert_eq!(stalled.left(), Duration::ZERO);
    }
}
