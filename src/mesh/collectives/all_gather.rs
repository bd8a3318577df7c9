//! The all-gather through the queues: in step s rank r sends its block to r + s and takes the block of
//! r - s (as the pairwise all-to-all does, so that no rank is flooded), one hop for every block. Large
//! blocks on one node are read in place instead (`shares.rs`).

#![forbid(unsafe_code)]

use super::combine::take_from_each;
use crate::error::Result;
use crate::mesh::net::exchange::Exchange;
use crate::mesh::net::matching::Incoming;
use crate::mesh::types::Rank;

/// Sends `block` to every other rank and returns every other rank's message, by rank (`None` at this
/// rank's place). A failure is told to every other rank.
pub(super) fn direct(x: &Exchange<'_>, block: &[u8]) -> Result<Vec<Option<Incoming>>> {
    let (me, n) = (x.rank().0, x.size());
    let exchanged = (1..n).try_for_each(|step| x.send(Rank((me + step) % n), &[block])).and_then(|()| {
        let from: Vec<Rank> = (1..n).map(|step| Rank((me + n - step) % n)).collect();
        take_from_each(x, &from).map(|arrived| {
            let mut by_rank: Vec<Option<Incoming>> = (0..n).map(|_| None).collect();
            for incoming in arrived {
                let at = incoming.source.0;
                by_rank[at] = Some(incoming);
            }
            by_rank
        })
    });
    x.or_report(x.others(), exchanged)
}
