//! The typed collectives (barrier, all-reduce, reduce, reduce-scatter, all-gather) under plain
//! `cargo test`, every rank a thread of this process over the real transports: each rank checks its
//! result against the fold in the documented fixed order, bit for bit, for 1 to 5 ranks and 16, on
//! one node and across nodes, with ZeroMQ forced and without single copies, at sizes that take the
//! queues and the shares read in place; and bad input fails with the typed error that names it.

use lightbeam::mesh::{InProcess, Mesh, Op, Rank};
use lightbeam::{Error, Transport};

mod common;

use common::{config, run, run_ok};

/// Values whose sum depends on the order of the additions: large ones that cancel and small ones that
/// vanish beside them unless they meet first.
fn values(rank: usize, count: usize) -> Vec<f64> {
    (0..count)
        .map(|i| match (rank + i) % 4 {
            0 => 1e16 * (1.0 + i as f64 * 1e-3),
            1 => 1.0 + rank as f64 * 0.25,
            2 => -1e16 * (1.0 + i as f64 * 1e-3),
            _ => 3.0e-3 * (i as f64 + 1.0),
        })
        .collect()
}

/// The fixed order of the reductions: the ranks grouped by node (nodes in the order of their lowest
/// rank), a node's ranks in increasing order; a fold within each node, then across the nodes' results.
fn fixed_order_sum(nodes: &[usize], count: usize) -> Vec<f64> {
    let mut order: Vec<usize> = Vec::new();
    for &node in nodes {
        if !order.contains(&node) {
            order.push(node);
        }
    }
    let fold = |ranks: &mut dyn Iterator<Item = Vec<f64>>| {
        let mut acc = ranks.next().expect("a rank at least");
        for next in ranks {
            acc.iter_mut().zip(next).for_each(|(a, b)| *a += b);
        }
        acc
    };
    let node_results = order.iter().map(|&node| {
        let mut ranks = (0..nodes.len()).filter(|&r| nodes[r] == node).map(|r| values(r, count));
        fold(&mut ranks)
    });
    fold(&mut node_results.collect::<Vec<_>>().into_iter())
}

/// A user's element type and reduction: the smallest value and the rank that holds it.
#[derive(Clone, Copy, Debug, PartialEq, lightbeam::bytemuck::Pod, lightbeam::bytemuck::Zeroable)]
#[repr(C)]
struct MinLoc {
    value: f64,
    rank: u64,
}

fn min_loc(acc: &mut [MinLoc], next: &[MinLoc]) {
    for (a, b) in acc.iter_mut().zip(next) {
        if b.value < a.value {
            *a = *b;
        }
    }
}

/// Every typed collective at `count` elements per rank, each rank checking its result.
fn every_typed_collective(mesh: &Mesh, nodes: &[usize], count: usize) -> lightbeam::Result<()> {
    let (me, n) = (mesh.rank().0, mesh.size());
    let expected = fixed_order_sum(nodes, count);
    let bits = |v: &[f64]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();

    let mut sum = vec![0.0; count];
    mesh.all_reduce_into(&values(me, count), &mut sum, Op::Sum)?;
    assert_eq!(bits(&sum), bits(&expected), "rank {me} of {n}: all-reduce of {count} f64");

    let mut in_place = values(me, count);
    mesh.all_reduce_in_place(&mut in_place, Op::Sum)?;
    assert_eq!(bits(&in_place), bits(&expected), "rank {me}: all-reduce in place");

    let ints: Vec<i64> = (0..count).map(|i| (i as i64 * 7919) ^ (me as i64 * 104_729)).collect();
    for (op, f) in [(Op::Max, i64::max as fn(i64, i64) -> i64), (Op::BitXor, |a, b| a ^ b)] {
        let mut out = vec![0i64; count];
        mesh.all_reduce_into(&ints, &mut out, op)?;
        let want: Vec<i64> = (0..count)
            .map(|i| (0..n).map(|r| (i as i64 * 7919) ^ (r as i64 * 104_729)).reduce(f).unwrap_or(0))
            .collect();
        assert_eq!(out, want, "rank {me}: all-reduce by {op}");
    }

    let mine: Vec<MinLoc> =
        (0..count).map(|i| MinLoc { value: ((me * 7 + i * 3) % (n + 2)) as f64, rank: me as u64 }).collect();
    let mut least = vec![MinLoc { value: 0.0, rank: 0 }; count];
    mesh.all_reduce_into(&mine, &mut least, min_loc)?;
    for (i, got) in least.iter().enumerate() {
        let best = (0..n).min_by_key(|&r| (r * 7 + i * 3) % (n + 2)).unwrap();
        assert_eq!(got.rank as usize, best, "rank {me}: a user's reduction, element {i}");
    }

    let root = Rank(n - 1);
    if mesh.rank() == root {
        let mut out = vec![0.0; count];
        mesh.reduce_into_root(&values(me, count), &mut out, Op::Sum)?;
        assert_eq!(bits(&out), bits(&expected), "reduce of {count} f64 at the root");
    } else {
        mesh.reduce_into(root, &values(me, count), Op::Sum)?;
    }

    let blocks = values(me, count * n);
    let mut block = vec![0.0; count];
    mesh.reduce_scatter_into(&blocks, &mut block, Op::Sum)?;
    let whole = fixed_order_sum_of_blocks(nodes, count);
    assert_eq!(bits(&block), bits(&whole[me * count..][..count]), "rank {me}: reduce-scatter");

    let own: Vec<u32> = (0..count).map(|i| (me * 1_000_003 + i) as u32).collect();
    let mut gathered = vec![0u32; count * n];
    mesh.all_gather_into(&own, &mut gathered)?;
    let want: Vec<u32> = (0..n).flat_map(|r| (0..count).map(move |i| (r * 1_000_003 + i) as u32)).collect();
    assert_eq!(gathered, want, "rank {me}: all-gather of {count} u32");

    let varying: Vec<u16> = (0..count + me).map(|i| (i + me) as u16).collect();
    let (mut all, mut counts) = (Vec::new(), Vec::new());
    let total = mesh.all_gather_varcount_into(&varying, &mut all, &mut counts)?;
    let want: Vec<u16> = (0..n).flat_map(|r| (0..count + r).map(move |i| (i + r) as u16)).collect();
    assert_eq!((total, &all), (want.len(), &want), "rank {me}: all-gather of varying counts");
    assert_eq!(counts, (0..n).map(|r| count + r).collect::<Vec<_>>());

    mesh.barrier()
}

/// The reduce-scatter's whole vector: each rank sends `values(rank, count * n)`.
fn fixed_order_sum_of_blocks(nodes: &[usize], count: usize) -> Vec<f64> {
    fixed_order_sum(nodes, count * nodes.len())
}

/// Counts that take the queues (up to 1000 f64: 8000 bytes) and the shares (from 16 KiB per rank).
const COUNTS: [usize; 5] = [0, 1, 1000, 3001, 150_001];

fn one_node(n: usize) -> Vec<usize> {
    vec![0; n]
}

#[test]
fn typed_collectives_on_one_node_from_1_to_5_ranks() {
    for n in 1..=5 {
        let nodes = one_node(n);
        run_ok(InProcess::ranks(n), &config(), |mesh| {
            COUNTS.iter().try_for_each(|&count| every_typed_collective(mesh, &nodes, count))
        });
    }
}

#[test]
fn typed_collectives_on_one_node_with_16_ranks() {
    let nodes = one_node(16);
    run_ok(InProcess::ranks(16), &config(), |mesh| {
        [1, 3001].iter().try_for_each(|&count| every_typed_collective(mesh, &nodes, count))
    });
}

#[test]
fn typed_collectives_without_single_copies_and_over_zeromq() {
    let configs = [
        config().with_single_copy(false),
        config().with_same_node(Transport::ZeroMq).with_chunk_size(64 << 10),
    ];
    for config in configs {
        for n in [2, 3] {
            let nodes = one_node(n);
            run_ok(InProcess::ranks(n), &config, |mesh| {
                COUNTS.iter().try_for_each(|&count| every_typed_collective(mesh, &nodes, count))
            });
        }
    }
}

#[test]
fn typed_collectives_across_nodes_fold_within_each_node_then_across() {
    let layouts: [&[usize]; 4] = [&[0, 1], &[0, 0, 1, 1], &[0, 1, 1, 0, 2], &[0, 1, 0, 1]];
    for nodes in layouts {
        run_ok(InProcess::on_nodes(nodes), &config(), |mesh| {
            COUNTS[..4].iter().try_for_each(|&count| every_typed_collective(mesh, nodes, count))
        });
    }
}

#[test]
fn calls_that_differ_in_type_count_or_operation_fail_every_rank_naming_both() {
    let cases: [(&str, &str); 3] = [("f32", "f64"), ("of 3 ×", "of 4 ×"), ("by max", "by sum")];
    for (case, (theirs, ours)) in cases.into_iter().enumerate() {
        let results = run(InProcess::ranks(3), &config(), |mesh| {
            let odd = mesh.rank() == Rank(1);
            match (case, odd) {
                (0, true) => mesh.all_reduce_into(&[1.0f32; 4], &mut [0.0; 4], Op::Sum),
                (1, true) => mesh.all_reduce_into(&[1.0f64; 3], &mut [0.0; 3], Op::Sum),
                (2, true) => mesh.all_reduce_into(&[1.0f64; 4], &mut [0.0; 4], Op::Max),
                _ => mesh.all_reduce_into(&[1.0f64; 4], &mut [0.0; 4], Op::Sum),
            }?;
            mesh.barrier()
        });
        for (rank, result) in results.into_iter().enumerate() {
            match result {
                Err(Error::CollectiveMismatch { this_call, peer_call, .. }) => {
                    let calls = [this_call, peer_call].join(" / ");
                    assert!(calls.contains(theirs) && calls.contains(ours), "rank {rank}: {calls}");
                }
                other => panic!("case {case}, rank {rank}: expected a mismatch, got {other:?}"),
            }
        }
    }
}

#[test]
fn bad_input_is_a_typed_error_on_the_rank_that_made_it_and_reported_to_the_others() {
    let results = run(InProcess::ranks(3), &config(), |mesh| {
        mesh.all_reduce_into(&[1.0f64; 4], &mut [0.0; 4], Op::BitAnd).map(|()| 0)
    });
    for result in results {
        let expected = Error::OperationNotForType { op: "all_reduce", operation: "bitand", element: "f64" };
        assert_eq!(result, Err(expected));
    }
    let results = run(InProcess::ranks(3), &config(), |mesh| {
        let len = if mesh.rank() == Rank(2) { 4 } else { 3 };
        mesh.all_gather_into(&[7u8; 2], &mut vec![0; len * 2])
    });
    assert_eq!(
        results[2],
        Err(Error::LengthMismatch { op: "all_gather", what: "the receive buffer", expected: 6, found: 8 })
    );
    for result in &results[..2] {
        assert!(matches!(result, Err(Error::PeerFailed { rank: 2, .. })), "{result:?}");
    }
    let results = run(InProcess::ranks(2), &config(), |mesh| {
        let mut received: Vec<f64> = Vec::new();
        match mesh.rank() {
            Rank(0) => mesh.broadcast_into(Rank(0), &mut vec![1u8; 13]),
            _ => mesh.broadcast_into(Rank(0), &mut received),
        }
    });
    assert_eq!(results[0], Ok(13));
    assert_eq!(results[1], Err(Error::NotWholeElements { op: "broadcast", bytes: 13, element_size: 8 }));
    let results = run(InProcess::ranks(2), &config(), |mesh| {
        let mut short = [0.0f64; 1];
        match mesh.rank() {
            Rank(0) => mesh.broadcast_into(Rank(0), &mut [2.0f64; 3][..]),
            _ => mesh.broadcast_into(Rank(0), &mut short[..]),
        }
    });
    assert_eq!(results[1], Err(Error::ReceiveBufferTooSmall { op: "broadcast", needed: 24, capacity: 8 }));
}
