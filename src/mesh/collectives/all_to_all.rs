//! All-to-all: a pairwise exchange (in step s rank r sends to r + s and receives from r - s, so at every
//! step each rank sends to a different peer and no peer is flooded), or on one node every rank reads
//! its chunks in place from every other rank's buffers, all at once.

#![forbid(unsafe_code)]

use super::buffers::{land_payload, largest, refill, wrong_chunk_count};
use super::plan::{Plan, Swap};
use super::protocol::{self, Message};
use super::read_in_place::{self, Landed};
use crate::error::Result;
use crate::mesh::net::exchange::Exchange;
use crate::mesh::types::{Rank, Source};

/// This rank sends `chunks[r]` to rank r and `received[r]` becomes what rank r sent it. A failure is
/// told to every other rank.
pub(super) fn exchange(
    x: &Exchange<'_>,
    plan: &Plan,
    chunks: &[&[u8]],
    received: &mut Vec<Vec<u8>>,
) -> Result<()> {
    let n = x.size();
    let exchanged = if chunks.len() != n {
        Err(wrong_chunk_count("all_to_all", chunks.len(), n))
    } else {
        received.resize_with(n, Vec::new);
        refill(&mut received[x.rank().0], chunks[x.rank().0]);
        match plan.all_to_all(largest(chunks)) {
            Swap::ReadInPlace => by_reading(x, plan, chunks, received),
            Swap::Pairwise => pairwise(x, plan, chunks, received),
        }
    };
    x.or_report(x.others(), exchanged)
}

/// The pairwise exchange. A rank whose chunks are read in place sends offers instead: this rank reads
/// them after it has sent every chunk (its answer must reach such a rank after its chunk, which that
/// rank takes first), then takes the bytes of those whose copy was refused.
fn pairwise(x: &Exchange<'_>, plan: &Plan, chunks: &[&[u8]], received: &mut [Vec<u8>]) -> Result<()> {
    let (me, n) = (x.rank().0, x.size());
    let mut offered = Vec::new();
    for step in 1..n {
        let (to, from) = ((me + step) % n, (me + n - step) % n);
        x.send(Rank(to), &[chunks[to]])?;
        let incoming = x.receive(Source::Rank(Rank(from)), Some(Rank(from)))?;
        match protocol::read(&incoming)? {
            Message::Chunk => land_payload(&mut received[from], incoming.payloads.into_iter().next()),
            // An offer, read below; anything else is refused there.
            _ => offered.push(incoming),
        }
    }
    let mut read = Vec::new();
    for incoming in offered {
        let holder = incoming.source;
        if let Landed::Read { asked } =
            read_in_place::land_or_read(x, plan, incoming, &mut received[holder.0])?
        {
            read.push((holder, asked));
        }
    }
    read_in_place::finish_reads(x, &read, received)
}

/// Every chunk read in place: this rank tells each other rank where its chunk for it is, copies each
/// other rank's chunk for it straight into `received`, and returns once every rank answered. (The ranks
/// that the kernel refuses a copy get the bytes sent whole, in the pairwise order, which never
/// deadlocks: a rank blocked in a send takes in every message of its own collective, however large.)
fn by_reading(x: &Exchange<'_>, plan: &Plan, chunks: &[&[u8]], received: &mut [Vec<u8>]) -> Result<()> {
    let (me, n) = (x.rank().0, x.size());
    let to = |step: usize| Rank((me + step) % n);
    let from = |step: usize| Rank((me + n - step) % n);
    let offer = x.open_offer()?;
    for step in 1..n {
        read_in_place::tell(x, to(step), chunks[to(step).0], &offer)?;
    }
    let mut asked = vec![false; n];
    for step in 1..n {
        let holder = from(step);
        let incoming = x.receive(Source::Rank(holder), Some(holder))?;
        if let Landed::Read { asked: bytes } =
            read_in_place::land_or_read(x, plan, incoming, &mut received[holder.0])?
        {
            asked[holder.0] = bytes;
        }
    }
    let askers = read_in_place::answers(x, (1..n).map(to))?;
    plan.note_refusals(&askers);
    for step in 1..n {
        if askers.contains(&to(step)) {
            x.send(to(step), &[chunks[to(step).0]])?;
        }
        let holder = from(step);
        if asked[holder.0] {
            read_in_place::receive_whole(x, holder, &mut received[holder.0])?;
        }
    }
    Ok(())
}
