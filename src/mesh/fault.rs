//! What a rank does when a collective cannot go on: it tells the ranks waiting on it why it failed,
//! finds which rank is lost when a wait passes its deadline (following the chain of ranks that say
//! they wait for another), tells every rank, and removes the shared memory a dead rank left.

#![forbid(unsafe_code)]

use std::sync::atomic::Ordering;
use std::time::Duration;

use super::net::envelope::Channel;
use super::net::exchange::{Ongoing, GONE_GRACE};
use super::net::matching::{peer_failed, Loss, Want};
use super::types::Rank;
use super::{segments, Job};
use crate::bulk::Bulk;
use crate::error::Error;
use crate::meta::LbmMeta;

impl Job {
    /// Tells `ranks` that this rank failed in the collective on `channel`, so they fail at once instead of
    /// waiting for their deadline. Best effort: a rank that cannot be told still has its deadline. A
    /// failure this rank only passes on (another rank's, which it was told) names that rank: the notice
    /// carries the rank that failed after the reason.
    pub(crate) fn report_failure(&self, channel: Channel, ranks: impl Iterator<Item = Rank>, error: &Error) {
        let (origin, text) = match error {
            Error::PeerFailed { rank, reason, .. } => (*rank, reason.clone()),
            other => (self.rank.0, other.to_string()),
        };
        let origin = (origin as u32).to_le_bytes();
        for rank in ranks.filter(|&r| r != self.rank) {
            if let Ok(link) = self.link(rank) {
                let mut meta = LbmMeta::new(self.envelope(channel, true));
                meta.bulks.push(Bulk::source(text.as_bytes(), Default::default()));
                meta.bulks.push(Bulk::source(&origin, Default::default()));
                // A rank that takes nothing within a moment (lost, or stuck) has its own deadline:
                // waiting the whole send timeout for it would make every other rank learn late.
                let _ = link.send(&meta, Some(FAILURE_NOTICE_WAIT), None);
            }
        }
    }

    /// Names the peer in a point-to-point send's timeout (a collective's sends wait in
    /// [`Exchange`](super::net::exchange::Exchange), where the peer is then taken as lost).
    pub(crate) fn send_failed(&self, error: Error, peer: Rank) -> Error {
        match error {
            Error::Timeout { op, after, .. } => Error::Timeout { op, after, peer: Some(self.describe(peer)) },
            e => e,
        }
    }

    /// True when `rank` runs on this node and its process has ended, as the kernel tells (its pid is
    /// free, a zombie's, or another process's): it is lost for certain. False when that cannot be told
    /// (another node).
    pub(crate) fn gone_from_this_node(&self, rank: Rank) -> bool {
        let (peer, mine) = (&self.peers[rank.0], &self.peers[self.rank.0]);
        peer.node == mine.node && crate::shm::Process { pid: peer.pid, start: peer.start }.is_gone()
    }

    /// After waiting past the deadline for a message of a collective that any of `senders` could have
    /// sent: the news that came meanwhile (a loss another rank found), else the loss of the first of them
    /// whose process on this node is gone, told to every rank; else a timeout after `after` naming them
    /// all (none of them can be told from the others).
    pub(crate) fn give_up_on_one_of(&self, senders: &[Rank], op: &'static str, after: Duration) -> Error {
        let grace = (self.config.timeout / 5).min(Duration::from_millis(200));
        if let Err(news) = self.take_and_tell((grace, usize::MAX), Want::Notices, op) {
            return news;
        }
        if let Some(&gone) = senders.iter().find(|&&rank| self.gone_from_this_node(rank)) {
            return self.give_up_on(gone, op);
        }
        let peer = senders.iter().map(|&r| self.describe(r)).collect::<Vec<_>>().join(" or ");
        Error::Timeout { op, after, peer: Some(peer) }
    }

    /// After waiting past the deadline on `suspect` in a collective: the error naming the rank taken as
    /// lost (see [`Job::conclude_loss`]).
    pub(crate) fn give_up_on(&self, suspect: Rank, op: &'static str) -> Error {
        let lost = self.conclude_loss(suspect, op);
        lost.unwrap_or_else(|| self.lost_error(Loss { lost: suspect, reporter: self.rank }, op))
    }

    /// After waiting past the deadline on `suspect` in a collective. The suspect may itself be stuck
    /// behind a lost rank. So this rank first tells every rank that it is stuck waiting for `suspect`
    /// (ranks waiting for this one then look past it), then gives notices a moment (a fifth of the
    /// deadline, at most 200 ms): if a loss is reported meanwhile, that is the error returned. Otherwise
    /// the rank at the end of the chain of waits (the suspect, or the rank the suspect said it waits for,
    /// and so on) is taken as lost and every other rank is told, so that their receives fail at once.
    /// Returns `None` when the suspect itself is taken as lost.
    pub(crate) fn conclude_loss(&self, suspect: Rank, op: &'static str) -> Option<Error> {
        self.tell_others(Channel::WaitingOn(suspect.0 as u32), suspect, Duration::from_millis(50));
        let grace = (self.config.timeout / 5).min(Duration::from_millis(200));
        if let Err(error) = self.take_and_tell((grace, usize::MAX), Want::Notices, op) {
            return Some(error);
        }
        let mut matching = crate::sync::lock(&self.matching);
        let culprit = matching.end_of_wait_chain(suspect);
        matching.record_loss(Loss { lost: culprit, reporter: self.rank });
        drop(matching);
        self.tell_others(Channel::PeerLost(culprit.0 as u32), culprit, Duration::from_millis(200));
        (culprit != suspect).then(|| Error::PeerLost {
            op,
            rank: culprit.0,
            endpoint: self.routes[culprit.0].to_string(),
            reporter: self.rank.0,
            waited_for: suspect.0,
        })
    }

    /// The error for `loss`. The first time, the lost rank's shared-memory segments are removed when its
    /// process is gone (a killed rank leaves them behind); a mesh loses at most one rank (every call fails
    /// after it).
    pub(crate) fn lost_error(&self, loss: Loss, op: &'static str) -> Error {
        let first_time = !self.lost_files_removed.swap(true, Ordering::Relaxed);
        if first_time && self.gone_from_this_node(loss.lost) {
            segments::remove_segments_of_dead(self.token, loss.lost.0);
        }
        Error::PeerLost {
            op,
            rank: loss.lost.0,
            endpoint: self.routes[loss.lost.0].to_string(),
            reporter: loss.reporter.0,
            waited_for: loss.lost.0,
        }
    }

    /// After a peer left collective `ongoing` early: the news that made it leave when it comes within
    /// [`GONE_GRACE`] (a mismatch, a lost rank, a failure it reported), else `otherwise`.
    pub(crate) fn news_or(&self, ongoing: &Ongoing, otherwise: Error) -> Error {
        let collective = ongoing.collective();
        let want = Want::Collective(collective.group, collective.sequence, None);
        match self.take_and_tell((GONE_GRACE, usize::MAX), want, ongoing.op) {
            Err(news) => news,
            Ok(Some(notice)) => peer_failed(notice, ongoing.op),
            Ok(None) => otherwise,
        }
    }

    pub(crate) fn describe(&self, rank: Rank) -> String {
        format!("rank {rank} ({})", self.routes[rank.0])
    }
}

/// How long a rank that failed in a collective waits for each peer to take its failure notice.
const FAILURE_NOTICE_WAIT: Duration = Duration::from_millis(200);
