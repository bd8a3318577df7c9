//! Small blocks to every rank in ceil(log2 n) rounds (Bruck's all-gather): in the round of distance d
//! every rank sends the blocks it holds (its own and those of the d - 1 ranks after it, at most n - d
//! of them) to the rank d before it, and takes as many from the rank d after it. Every rank sends and
//! takes one message per round, all ranks at once, so n ranks are done after log2 n message times
//! instead of the two hops and n - 1 messages at one rank of a gather and a broadcast. The barrier is
//! this with empty blocks; a small all-reduce is this and then the same fold, in the fixed order, on
//! every rank; a small all-gather is this.

#![forbid(unsafe_code)]

use crate::error::Result;
use crate::mesh::net::exchange::Exchange;
use crate::mesh::types::{Rank, Source};
use crate::transport::Payload;

/// A block every rank holds once the all-gather is done: this rank's own, or another's as it came.
pub(super) enum Block<'a> {
    Own(&'a [u8]),
    Came(Payload),
}

impl std::ops::Deref for Block<'_> {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            Self::Own(bytes) => bytes,
            Self::Came(payload) => payload,
        }
    }
}

/// Every rank's block, by rank, once every rank gave `own`; each block that came holds `len` bytes
/// when `len` is given. A failure is told to every other rank.
pub(super) fn all_gather<'a>(x: &Exchange<'_>, own: &'a [u8], len: Option<usize>) -> Result<Vec<Block<'a>>> {
    let gathered = gather(x, own, len);
    x.or_report(x.others(), gathered)
}

fn gather<'a>(x: &Exchange<'_>, own: &'a [u8], len: Option<usize>) -> Result<Vec<Block<'a>>> {
    let (me, n) = (x.rank().0, x.size());
    // Blocks by distance after this rank: `held[i]` is rank (me + i) % n's.
    let mut held: Vec<Block<'a>> = Vec::with_capacity(n);
    held.push(Block::Own(own));
    let mut distance = 1;
    while distance < n {
        let count = distance.min(n - distance);
        let parts: Vec<&[u8]> = held[..count].iter().map(|block| &**block).collect();
        x.send(Rank((me + n - distance) % n), &parts)?;
        let from = Rank((me + distance) % n);
        let incoming = x.receive(Source::Rank(from), Some(from))?;
        let fits = incoming.payloads.len() == count
            && len.is_none_or(|len| incoming.payloads.iter().all(|part| part.len() == len));
        if !fits {
            let reason =
                format!("{} blocks where {count} of the call's size belong", incoming.payloads.len());
            return Err(x.peer_error(from, &reason));
        }
        held.extend(incoming.payloads.into_iter().map(Block::Came));
        distance *= 2;
    }
    // By rank: rank r is at distance (r - me) mod n.
    held.rotate_right(me);
    Ok(held)
}
