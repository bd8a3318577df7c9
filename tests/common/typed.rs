//! What the typed-collective tests share: values whose sum depends on the order of the additions, the
//! documented fixed order, and every typed collective checked against it.

use lightbeam::mesh::{Mesh, Op, Rank};

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
pub(crate) fn every_typed_collective(mesh: &Mesh, nodes: &[usize], count: usize) -> lightbeam::Result<()> {
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
