//! Scatter and gather: the root sends each rank its chunk, or takes each rank's chunk, directly (from
//! several threads when chunks are large), read in place on one node, or by node across nodes.

#![forbid(unsafe_code)]

use rayon::prelude::*;

use super::buffers::{fill, largest, wrong_chunk_count, Buffer, Landing};
use super::by_node;
use super::plan::{Plan, Spread};
use super::protocol::{self, Message};
use super::read_in_place::{self, Landed};
use crate::error::Result;
use crate::mesh::net::exchange::Exchange;
use crate::mesh::net::matching::Incoming;
use crate::mesh::types::{Rank, Source};

/// The root's side of a scatter: rank r gets `chunks[r]`. A failure is told to every other rank.
pub(super) fn scatter_from_root(x: &Exchange<'_>, plan: &Plan, chunks: &[&[u8]]) -> Result<()> {
    let sent = if chunks.len() != x.size() {
        Err(wrong_chunk_count("scatter", chunks.len(), x.size()))
    } else {
        let largest = largest(chunks);
        match plan.scatter(largest) {
            Spread::ByNode => by_node::scatter_from_root(x, plan, chunks),
            Spread::ReadInPlace => read_in_place::scatter_by_reading(x, plan, chunks),
            Spread::Direct => {
                let send = |(rank, chunk): (usize, &&[u8])| match rank == x.rank().0 {
                    true => Ok(()),
                    false => x.send(Rank(rank), &[chunk]),
                };
                match plan.parallel_scatter(largest) {
                    true => chunks.par_iter().enumerate().try_for_each(send),
                    false => chunks.iter().enumerate().try_for_each(send),
                }
            }
        }
    };
    x.or_report(x.others(), sent)
}

/// A non-root's side of a scatter: this rank's chunk from `root` lands in `buffer`; returns its size.
pub(super) fn scatter_to<B: Buffer + ?Sized>(
    x: &Exchange<'_>,
    plan: &Plan,
    root: Rank,
    buffer: &mut B,
) -> Result<usize> {
    let chunk = match plan.by_node() {
        true => by_node::scatter_chunk(x, root)?,
        false => {
            let incoming = x.receive(Source::Rank(root), Some(root))?;
            match protocol::read(&incoming)? {
                Message::Chunk => incoming.payloads.into_iter().next(),
                // An offer: the chunk is read in place, straight into the buffer.
                Message::Offer { total, descriptor } => {
                    let mut landing = Landing::new(buffer, |_, _| {});
                    let offer = (total, &descriptor);
                    let read = read_in_place::read_from_root(x, plan, root, &incoming, offer, &mut landing);
                    let total = x.or_report([root], read)?;
                    return landing.fitted("scatter", total);
                }
                _ => return Err(protocol::bad_message(&incoming, "neither a chunk nor an offer")),
            }
        }
    };
    fill("scatter", buffer, chunk.as_deref().unwrap_or_default())
}

/// A non-root's side of a gather: sends `data` to `root`.
pub(super) fn gather_from(x: &Exchange<'_>, plan: &Plan, root: Rank, data: &[u8]) -> Result<()> {
    let sent = match plan.gather(data.len()) {
        Spread::ByNode => return by_node::gather_from(x, root, data),
        Spread::ReadInPlace => read_in_place::offer_to_gatherer(x, plan, root, data),
        Spread::Direct => x.send(root, &[data]),
    };
    x.or_report([root], sent)
}

/// The root's side of a gather: `gathered[r]` becomes rank r's chunk (the root's own is in place).
/// The ranks that offered their chunk wait for this rank's answer: a failure is told to them all.
pub(super) fn gather_to_root(x: &Exchange<'_>, plan: &Plan, gathered: &mut [Vec<u8>]) -> Result<()> {
    if plan.by_node() {
        return by_node::gather_to_root(x, gathered);
    }
    let gathered_in = gather_every_chunk(x, plan, gathered);
    x.or_report(x.others(), gathered_in)
}

/// Takes every rank's message, then lands the chunks sent whole and reads those offered in place, on
/// several threads at once.
fn gather_every_chunk(x: &Exchange<'_>, plan: &Plan, gathered: &mut [Vec<u8>]) -> Result<()> {
    let n = x.size();
    let mut arrived: Vec<Option<Incoming>> = (0..n).map(|_| None).collect();
    for _ in 1..n {
        // Past the deadline, the first rank still missing is the one to suspect.
        let missing = (0..n).find(|&r| r != x.rank().0 && arrived[r].is_none()).map(Rank);
        let incoming = x.receive(Source::Any, missing)?;
        let source = incoming.source;
        if source == x.rank() || arrived[source.0].replace(incoming).is_some() {
            return Err(x.peer_error(source, "a second contribution"));
        }
    }
    let landed: Vec<Result<(Rank, Landed)>> = arrived
        .into_par_iter()
        .zip(gathered.par_iter_mut())
        .filter_map(|(incoming, slot)| incoming.map(|incoming| (incoming, slot)))
        .map(|(incoming, slot)| {
            let holder = incoming.source;
            read_in_place::land_or_read(x, plan, incoming, slot).map(|landed| (holder, landed))
        })
        .collect();
    let read = landed
        .into_iter()
        .filter_map(|landed| match landed {
            Ok((holder, Landed::Read { asked })) => Some(Ok((holder, asked))),
            Ok((_, Landed::Moved)) => None,
            Err(error) => Some(Err(error)),
        })
        .collect::<Result<Vec<_>>>()?;
    read_in_place::finish_reads(x, &read, gathered)
}
