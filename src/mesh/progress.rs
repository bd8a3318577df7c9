//! One collective in progress on one rank: its channel, and the deadline of all its waits, counted
//! from the rank's last progress in it. Its sends queue at once when they can; when they cannot, they
//! look for news that ends the collective while they wait, as a receive does: a ZeroMQ send waits for
//! room in short slices and looks between them, a shared-memory send (which may wait for the peer to
//! take its message in) looks whenever this rank's own server rings.

#![forbid(unsafe_code)]

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use super::envelope::Channel;
use super::link::Link;
use super::mailbox::Incoming;
use super::{wanted, Mesh, Rank, Source};
use crate::bulk::Bulk;
use crate::error::{Error, Result};
use crate::meta::LbmMeta;
use crate::transport::same_node::Watch;
use crate::transport::Payload;

/// How long a rank that finds a peer gone from a collective (its server closed, or its offer of data
/// closed before a copy from it was done) looks for news before it blames the peer: the notices of the
/// failure that made the peer leave (a mismatch, a lost rank) are sent before it leaves, but may arrive
/// after it left.
pub(super) const GONE_GRACE: Duration = Duration::from_millis(200);

/// How long a collective's send waits for room at a time before it looks for news again.
const SEND_SLICE: Duration = Duration::from_millis(10);

/// How many bytes of later calls' messages the mailbox may hold while a send waits and looks for news:
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

    pub(super) fn sequence(&self) -> u64 {
        match self.channel {
            Channel::Collective(c) => c.sequence,
            _ => unreachable!("an ongoing collective travels on a collective channel"),
        }
    }
}

impl Mesh {
    /// Sends `parts` to `to` as one message of the collective.
    pub(super) fn send_in(&self, ongoing: &Ongoing, to: Rank, parts: &[&[u8]]) -> Result<()> {
        let link = self.link(to)?;
        let mut meta = LbmMeta::new(self.envelope(ongoing.channel, false));
        meta.bulks = parts.iter().map(|p| Bulk::source(p, Default::default())).collect();
        self.send_with_room(ongoing, to, &link, |wait, watch| link.send(&meta, Some(wait), watch).map(drop))
    }

    /// Sends received payloads on to `to` in the collective, without copying them.
    pub(super) fn forward_in(&self, ongoing: &Ongoing, to: Rank, mut payloads: Vec<Payload>) -> Result<()> {
        let link = self.link(to)?;
        let mut meta = LbmMeta::new(self.envelope(ongoing.channel, false));
        meta.bulks = payloads.iter().map(|p| Bulk::descriptor(p.len(), Default::default())).collect();
        let count = payloads.len();
        self.send_with_room(ongoing, to, &link, |wait, watch| {
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
    /// taken as lost.
    pub(super) fn receive_in(
        &self,
        ongoing: &Ongoing,
        from: Source,
        suspect: Option<Rank>,
    ) -> Result<Incoming> {
        let want = wanted(ongoing.channel, from);
        let incoming = self.receive_within(want, from, ongoing.op, ongoing.left(), suspect)?;
        ongoing.progressed();
        Ok(incoming)
    }

    /// Runs `send` over `link` (which sends a message if it can within the wait it is given, looking for
    /// news with the watch it is given while it waits) until the deadline. Over ZeroMQ the first try
    /// waits for nothing (a message that queues at once pays for no poll and no look), the next ones a
    /// slice each, looking for news between slices. Past the deadline, `to` is taken as lost, as after a
    /// receive that waited for it.
    fn send_with_room(
        &self,
        ongoing: &Ongoing,
        to: Rank,
        link: &Link,
        mut send: impl FnMut(Duration, Option<Watch<'_>>) -> Result<()>,
    ) -> Result<()> {
        let mut look = || self.take_in_while_sending(Some((ongoing.sequence(), ongoing.op)));
        let mut wait = if link.queues() { Duration::ZERO } else { ongoing.left() };
        let sent = loop {
            match send(wait, self.watch(&mut look)) {
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
                    break news.and_then(|()| Err(self.give_up_on(to, ongoing.op)));
                }
                Err(error) => break Err(error),
            }
            if let Err(error) = look() {
                break Err(error);
            }
            let left = ongoing.left();
            if left.is_zero() {
                self.tell_untold();
                return Err(self.give_up_on(to, ongoing.op));
            }
            wait = if link.queues() { left.min(SEND_SLICE) } else { left };
        };
        self.tell_untold();
        sent
    }
}

#[cfg(test)]
mod tests {
    use super::super::envelope::{Call, Collective, Operation};
    use super::*;

    #[test]
    fn the_deadline_counts_from_the_last_progress() {
        let call = Call { operation: Operation::Gather, root: Some(0) };
        let channel = Channel::Collective(Collective { sequence: 3, call });
        let ongoing = Ongoing::new(channel, "gather", Duration::from_secs(60));
        assert_eq!(ongoing.sequence(), 3);
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
