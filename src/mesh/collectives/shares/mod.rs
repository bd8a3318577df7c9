//! The reducing collectives and the all-gather by shares: each rank owns a share of the vector (share r:
//! the r-th of n nearly equal runs of elements, or block r of a reduce-scatter), folds it from every
//! rank's vector in the fixed order, and the shares then go where the call needs them. About
//! 2 (n - 1) / n copies of the vector per rank for an all-reduce, as OpenMPI's `coll/xhc` does, and each
//! element folded once, by its share's owner.
//!
//! - `read`: on one node, every share copied straight from its owner's memory (`process_vm_readv`), in
//!   rounds of offers, reads and answers;
//! - `sent`: on one node, every share sent through the queues;
//! - `across_nodes`: across nodes of as many ranks each, by node and by share.

#![forbid(unsafe_code)]

mod across_nodes;
mod read;
mod sent;

use std::ops::Range;

use bytemuck::Pod;

use crate::mesh::net::exchange::Exchange;
use crate::mesh::types::Rank;

pub(super) use self::across_nodes::all_reduce_by_nodes;
pub(super) use self::read::{all_gather, all_reduce, reduce, reduce_scatter};
pub(super) use self::sent::{all_reduce_sent, reduce_scatter_sent, reduce_sent};

/// The elements of share `k` of `count` elements among `n` ranks: the first `count % n` shares hold one
/// more than the rest.
pub(super) fn share(count: usize, n: usize, k: usize) -> Range<usize> {
    let (base, extra) = (count / n, count % n);
    let start = k * base + k.min(extra);
    start..start + base + usize::from(k < extra)
}

/// The bytes of the elements `range` of `T`s.
fn bytes_of<T>(range: Range<usize>) -> Range<usize> {
    let size = std::mem::size_of::<T>();
    range.start * size..range.end * size
}

/// Every rank and the range `range(rank)` of it.
fn every(x: &Exchange<'_>, range: impl Fn(usize) -> Range<usize>) -> Vec<(Rank, Range<usize>)> {
    (0..x.size()).map(|k| (Rank(k), range(k))).collect()
}

/// `recv`, cut at the shares `shares(k)`, its share k as bytes at place k.
fn places<T: Pod>(recv: &mut [T], n: usize, shares: impl Fn(usize) -> Range<usize>) -> Vec<&mut [u8]> {
    let mut rest = recv;
    (0..n)
        .map(|k| {
            let (place, after) = std::mem::take(&mut rest).split_at_mut(shares(k).len());
            rest = after;
            bytemuck::cast_slice_mut(place)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_cover_the_vector_in_order_and_differ_by_one_at_most() {
        for count in [0, 1, 5, 8, 1001] {
            for n in 1..=6 {
                let all: Vec<Range<usize>> = (0..n).map(|k| share(count, n, k)).collect();
                assert_eq!(all[0].start, 0);
                assert_eq!(all[n - 1].end, count);
                assert!(all.windows(2).all(|w| w[0].end == w[1].start));
                let lens: Vec<usize> = all.iter().map(|r| r.len()).collect();
                assert!(lens.iter().max().unwrap() - lens.iter().min().unwrap() <= 1, "{lens:?}");
            }
        }
    }
}
