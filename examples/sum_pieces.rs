//! Typed collectives on a `Vec<f64>`: rank 0 broadcasts a large vector of numbers (as `f64`s, no byte
//! conversion), every rank sums its own piece of it, the pieces' sums are combined with
//! `mesh.all_reduce_into(.., Op::Sum)` and every rank's sum is collected with `mesh.all_gather_into`.
//!
//! Checked against MPI doing the same (rsmpi's broadcast, all_reduce and all_gather): the broadcast and
//! the all-gather move numbers without arithmetic, so they must match MPI's bit for bit. The total is
//! a sum of the pieces' sums: Lightbeam adds them in a fixed order (each node's ranks in rank order,
//! then the nodes' results in node order), so it must equal, bit for bit, that fold of the gathered
//! sums, on every rank; MPI adds in an order of its own, so its total may differ by rounding only, at
//! most 2 (n - 1) eps times the sum of the pieces' magnitudes.
//!
//! Run: `mpirun -n 4 target/release/examples/sum_pieces`. Exits non-zero on a wrong result.

use std::ops::Range;

use lightbeam::mesh::{Mesh, MeshConfig, Node, Op, Rank};
use lightbeam::mpi::collective::SystemOperation;
use lightbeam::mpi::topology::SimpleCommunicator;
use lightbeam::mpi::traits::*;

const ROOT: Rank = Rank(0);
/// 4 Mi numbers: 32 MiB.
const LEN: usize = 1 << 22;

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

/// The numbers: terms of the alternating harmonic series, so that rounding depends on the order.
fn numbers() -> Vec<f64> {
    (0..LEN).map(|i| if i % 2 == 0 { 1.0 } else { -1.0 } / (i + 1) as f64).collect()
}

/// The piece `rank` sums: nearly equal runs, in rank order.
fn piece(rank: usize, ranks: usize) -> Range<usize> {
    LEN * rank / ranks..LEN * (rank + 1) / ranks
}

/// The ranks' sums added the way Lightbeam adds them: each node's ranks in rank order, then the nodes'
/// results in node order (nodes are numbered by their lowest rank).
fn fixed_order_total(mesh: &Mesh, sums: &[f64]) -> Result<f64> {
    let mut total = None;
    for node in 0..mesh.node_count() {
        let mut node_sum = None;
        for rank in mesh.ranks_on_node(Node(node))? {
            node_sum = Some(node_sum.map_or(sums[rank.0], |s: f64| s + sums[rank.0]));
        }
        let node_sum = node_sum.ok_or("a node without ranks")?;
        total = Some(total.map_or(node_sum, |t: f64| t + node_sum));
    }
    Ok(total.ok_or("no nodes")?)
}

fn run(world: &SimpleCommunicator) -> Result<()> {
    let mesh = Mesh::bootstrap(world, MeshConfig::default())?;
    let (me, ranks) = (mesh.rank().0, mesh.size());

    // Rank 0 has the numbers; every other rank's empty Vec<f64> is resized to fit what arrives.
    let mut data: Vec<f64> = if mesh.rank() == ROOT { numbers() } else { Vec::new() };
    mesh.broadcast_into(ROOT, &mut data)?;

    // Each rank sums its piece; the total and every rank's sum, on every rank.
    let mine: f64 = data[piece(me, ranks)].iter().sum();
    let mut total = [0.0];
    mesh.all_reduce_into(&[mine], &mut total, Op::Sum)?;
    let mut sums = vec![0.0; ranks];
    mesh.all_gather_into(&[mine], &mut sums)?;

    // The same with MPI.
    let mut theirs = if mesh.rank() == ROOT { numbers() } else { vec![0.0; LEN] };
    world.process_at_rank(ROOT.0 as i32).broadcast_into(&mut theirs[..]);
    let their_mine: f64 = theirs[piece(me, ranks)].iter().sum();
    let mut their_total = 0.0;
    world.all_reduce_into(&their_mine, &mut their_total, SystemOperation::sum());
    let mut their_sums = vec![0.0; ranks];
    world.all_gather_into(&their_mine, &mut their_sums[..]);

    // Compare. Bits, where no arithmetic is involved or the order is fixed.
    let bits = |v: &[f64]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
    let bound = 2.0 * (ranks - 1) as f64 * f64::EPSILON * sums.iter().map(|s| s.abs()).sum::<f64>();
    let problem = if bits(&data) != bits(&theirs) {
        Some("the broadcast data differ from MPI_Bcast's".to_string())
    } else if bits(&sums) != bits(&their_sums) {
        Some(format!("gathered sums {sums:?}, MPI_Allgather's {their_sums:?}"))
    } else if total[0].to_bits() != fixed_order_total(&mesh, &sums)?.to_bits() {
        Some(format!("total {:e} is not the fixed-order fold of the gathered sums", total[0]))
    } else if (total[0] - their_total).abs() > bound {
        Some(format!("total {:e} against MPI_Allreduce's {their_total:e}, beyond {bound:e}", total[0]))
    } else {
        None
    };

    // Every rank's total in bits: the same on every rank (gathered with MPI).
    let mut totals = vec![0u64; ranks];
    world.all_gather_into(&total[0].to_bits(), &mut totals[..]);
    let mut everyone_agrees = 0u8;
    world.all_reduce_into(&u8::from(problem.is_none()), &mut everyone_agrees, SystemOperation::min());
    if let Some(problem) = problem {
        return Err(problem.into());
    }
    if everyone_agrees == 0 || totals.iter().any(|&t| t != totals[0]) {
        return Err("another rank's result disagrees".into());
    }
    if me == 0 {
        println!(
            "{LEN} numbers ({} MiB) broadcast to {ranks} ranks; each rank's sum: {sums:?}",
            (LEN * 8) >> 20
        );
        println!("lightbeam total {:.17e} (the same bits on every rank)", total[0]);
        println!(
            "      MPI total {their_total:.17e} (difference {:.1e}, bound {bound:.1e}); ln 2 = {:.17e}",
            (total[0] - their_total).abs(),
            std::f64::consts::LN_2
        );
    }
    Ok(())
}

fn main() {
    let universe = lightbeam::mpi::initialize().expect("MPI initializes once");
    let world = universe.world();
    lightbeam::mesh::or_abort(&world, run(&world));
}
