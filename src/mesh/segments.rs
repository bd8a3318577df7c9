//! The names of a job's shared-memory segments, and removing those a dead rank left.

#![forbid(unsafe_code)]

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};

use crate::shm::Segment;

/// The prefix of the mesh's shared-memory segments (after `lightbeam-`).
pub(crate) const SEGMENT_PREFIX: &str = "mesh-";

/// A random number, as a job token (rank 0's is shared with every rank) or in a segment's name.
pub(crate) fn draw_token() -> u64 {
    let mut hasher = RandomState::new().build_hasher();
    hasher.write_u32(std::process::id());
    hasher.finish()
}

/// The start of the name of every shared-memory segment that rank `rank` of job `token` makes: its
/// server's (`mesh-<job>-<rank>-<token>`) and its offer word's (`mesh-<job>-<rank>-word-<token>`).
pub(crate) fn segment_prefix(token: u64, rank: usize) -> String {
    format!("{SEGMENT_PREFIX}{token:016x}-{rank}-")
}

/// Removes the shared-memory segments of rank `rank` of job `token` whose creator is gone (a killed
/// rank's, which nothing else removes until the next bootstrap on the node); returns how many. Those of
/// a live process are left alone.
pub(crate) fn remove_segments_of_dead(token: u64, rank: usize) -> usize {
    let prefix = segment_prefix(token, rank);
    match Segment::reclaim_stale_where(|name| name.starts_with(&prefix)) {
        Ok(removed) => removed,
        Err(error) => {
            log::warn!("lightbeam: could not remove the segments of lost rank {rank}: {error}");
            0
        }
    }
}
