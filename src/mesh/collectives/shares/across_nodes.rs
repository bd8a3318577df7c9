//! The all-reduce across nodes of as many ranks each, by node and by share.

#![forbid(unsafe_code)]

use bytemuck::Pod;

use super::read::{round, Fold, Place};
use super::{bytes_of, places, share};
use crate::error::Result;
use crate::mesh::collectives::combine::{combine, vector_of};
use crate::mesh::collectives::plan::Plan;
use crate::mesh::collectives::reduction::Reduction;
use crate::mesh::net::exchange::Exchange;
use crate::mesh::types::{Rank, Source};

/// All-reduce across nodes of `m` ranks each, by node and by share: the ranks of each node fold their
/// node's vectors by shares read in place (share i to the node's i-th rank), the i-th ranks of all
/// nodes send each other their node's share i and fold the nodes' in node order, and the ranks of each
/// node read the finished shares from each other. Each share crosses the network once per other node,
/// from every rank of a node at once, and the fixed order holds: each node's ranks in rank order,
/// then the nodes.
pub(in crate::mesh::collectives) fn all_reduce_by_nodes<T: Pod + Send + Sync>(
    x: &Exchange<'_>,
    plan: &Plan,
    send: &[T],
    recv: &mut [T],
    reduction: &dyn Reduction<T>,
) -> Result<()> {
    let topology = x.topology();
    let here = topology.node_of(x.rank()).expect("every rank has a node");
    let mates = topology.ranks_on(here).expect("a node of the mesh");
    let (i, m, count) =
        (mates.iter().position(|&r| r == x.rank()).expect("on its node"), mates.len(), send.len());
    let shares = |k| share(count, m, k);
    let done = (|| {
        // The node's result, share i, into this rank's place of `recv`.
        let readers: Vec<_> = mates
            .iter()
            .enumerate()
            .filter(|(k, _)| *k != i)
            .map(|(k, &r)| (r, bytes_of::<T>(shares(k))))
            .collect();
        let holders: Vec<_> = mates.iter().map(|&r| (r, bytes_of::<T>(shares(i)))).collect();
        let node_result = &mut recv[shares(i)];
        round(
            x,
            plan,
            (bytemuck::cast_slice(send), &readers),
            &holders,
            &mut Fold::new(node_result, &send[shares(i)], reduction),
        )?;
        // The same share of every node, folded in node order.
        let column: Vec<Rank> = (0..topology.node_count())
            .map(|node| topology.ranks_on(crate::mesh::topology::Node(node)).expect("a node")[i])
            .collect();
        let ours = recv[shares(i)].to_vec();
        for &rank in column.iter().filter(|&&r| r != x.rank()) {
            x.send(rank, &[bytemuck::cast_slice(&ours)])?;
        }
        let acc = &mut recv[shares(i)];
        for (node, &rank) in column.iter().enumerate() {
            let fold_in = |acc: &mut [T], part: &[T]| match node {
                0 => acc.copy_from_slice(part),
                _ => combine(acc, part, reduction),
            };
            if rank == x.rank() {
                fold_in(acc, &ours);
                continue;
            }
            let incoming = x.receive(Source::Rank(rank), Some(rank))?;
            fold_in(acc, &vector_of::<T>(x, &incoming, ours.len())?);
        }
        // Every share of the result from the node's ranks.
        let mut by_rank: Vec<&mut [u8]> = (0..x.size()).map(|_| <&mut [u8]>::default()).collect();
        for (k, place) in places(recv, m, shares).into_iter().enumerate() {
            by_rank[mates[k].0] = place;
        }
        let mine: &mut [u8] = std::mem::take(&mut by_rank[x.rank().0]);
        let mine: &[u8] = mine;
        let readers: Vec<_> = mates.iter().filter(|&&r| r != x.rank()).map(|&r| (r, 0..mine.len())).collect();
        let holders: Vec<_> =
            mates.iter().enumerate().map(|(k, &r)| (r, bytes_of::<T>(0..shares(k).len()))).collect();
        round(x, plan, (mine, &readers), &holders, &mut Place { places: by_rank })
    })();
    x.or_report(x.others(), done)
}
