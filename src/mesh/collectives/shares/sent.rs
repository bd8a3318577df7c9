//! The shares sent through the queues on one node: every rank sends each other rank that rank's share of
//! its vector, folds its own share from those it takes in rank order, and sends the result where the
//! call needs it.

#![forbid(unsafe_code)]

use std::ops::Range;

use bytemuck::Pod;

use super::{places, share};
use crate::error::Result;
use crate::mesh::collectives::combine::{combine, vector_of};
use crate::mesh::collectives::protocol;
use crate::mesh::collectives::reduction::Reduction;
use crate::mesh::net::exchange::Exchange;
use crate::mesh::types::{Rank, Source};

/// Sends share k of `send` to every other rank k and folds this rank's share `mine` (share `shares(me)`)
/// from every rank's, taken in rank order: the reduce-scatter through the queues.
fn reduce_scatter_by_sends<T: Pod + Send + Sync>(
    x: &Exchange<'_>,
    send: &[T],
    shares: impl Fn(usize) -> Range<usize>,
    mine: &mut [T],
    reduction: &dyn Reduction<T>,
) -> Result<()> {
    let (me, n) = (x.rank().0, x.size());
    for step in 1..n {
        let k = (me + step) % n;
        x.send(Rank(k), &[bytemuck::cast_slice(&send[shares(k)])])?;
    }
    let fold_in = |mine: &mut [T], part: &[T], first: bool| match first {
        true => mine.copy_from_slice(part),
        false => combine(mine, part, reduction),
    };
    for k in 0..n {
        if k == me {
            fold_in(mine, &send[shares(me)], k == 0);
            continue;
        }
        let incoming = x.receive(Source::Rank(Rank(k)), Some(Rank(k)))?;
        fold_in(mine, &vector_of::<T>(x, &incoming, mine.len())?, k == 0);
    }
    Ok(())
}

/// Sends this rank's share (place `me` of `places`) to `to` and lands the share of each of `from` in
/// its place: the all-gather of shares through the queues.
fn gather_sent(x: &Exchange<'_>, places: &mut [&mut [u8]], to: &[Rank], from: &[Rank]) -> Result<()> {
    let me = x.rank().0;
    for &rank in to {
        x.send(rank, &[&*places[me]])?;
    }
    for &rank in from {
        let incoming = x.receive(Source::Rank(rank), Some(rank))?;
        match &incoming.payloads[..] {
            [] if places[rank.0].is_empty() => {}
            [only] if only.len() == places[rank.0].len() => places[rank.0].copy_from_slice(only),
            _ => return Err(protocol::bad_message(&incoming, "a share of another size")),
        }
    }
    Ok(())
}

/// All-reduce by shares sent through the queues: a reduce-scatter, then every rank sends its share to
/// every other.
pub(in crate::mesh::collectives) fn all_reduce_sent<T: Pod + Send + Sync>(
    x: &Exchange<'_>,
    send: &[T],
    recv: &mut [T],
    reduction: &dyn Reduction<T>,
) -> Result<()> {
    let (me, n, count) = (x.rank().0, x.size(), send.len());
    let shares = |k| share(count, n, k);
    let done = (|| {
        reduce_scatter_by_sends(x, send, shares, &mut recv[shares(me)], reduction)?;
        let others: Vec<Rank> = x.others().collect();
        gather_sent(x, &mut places(recv, n, shares), &others, &others)
    })();
    x.or_report(x.others(), done)
}

/// Reduce by shares sent through the queues: a reduce-scatter, then every rank sends its share to the
/// root.
pub(in crate::mesh::collectives) fn reduce_sent<T: Pod + Send + Sync>(
    x: &Exchange<'_>,
    root: Rank,
    send: &[T],
    recv: Option<&mut [T]>,
    reduction: &dyn Reduction<T>,
) -> Result<()> {
    let (me, n, count) = (x.rank().0, x.size(), send.len());
    let shares = |k| share(count, n, k);
    let done = (|| match recv {
        Some(recv) => {
            reduce_scatter_by_sends(x, send, shares, &mut recv[shares(me)], reduction)?;
            let others: Vec<Rank> = x.others().collect();
            gather_sent(x, &mut places(recv, n, shares), &[], &others)
        }
        None => {
            let mut mine = vec![T::zeroed(); shares(me).len()];
            reduce_scatter_by_sends(x, send, shares, &mut mine, reduction)?;
            x.send(root, &[bytemuck::cast_slice(&mine)])
        }
    })();
    x.or_report(x.others(), done)
}

/// Reduce-scatter by shares sent through the queues: the shares are the blocks.
pub(in crate::mesh::collectives) fn reduce_scatter_sent<T: Pod + Send + Sync>(
    x: &Exchange<'_>,
    send: &[T],
    recv: &mut [T],
    reduction: &dyn Reduction<T>,
) -> Result<()> {
    let block = recv.len();
    let done = reduce_scatter_by_sends(x, send, |k| k * block..(k + 1) * block, recv, reduction);
    x.or_report(x.others(), done)
}
