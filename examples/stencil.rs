//! A halo-exchange stencil: heat flowing along a rod, solved by Jacobi iteration. The rod's cells are
//! split among the ranks; each iteration every rank swaps its edge cells with its neighbours
//! (`mesh.send` / `mesh.recv_into`, as `f64`s), replaces each cell by the mean of its two neighbours,
//! and the ranks agree on the largest change anywhere (`mesh.all_reduce_into` with `Op::Max`) to
//! decide when to stop. At the end the rod's total heat is summed (`Op::Sum`).
//!
//! The same solver then runs with MPI carrying the messages (rsmpi's send/receive and all_reduce), and
//! the two runs are compared. Halos are copies and a maximum is exact in any order, so both runs must
//! take the same iterations and end with the same bits in every cell. The total heat is a sum: Lightbeam
//! adds the ranks' parts in a fixed order (the same bits on every rank, run after run), MPI in an order
//! of its own, so the two may differ by rounding only, at most 2 (n - 1) eps times the total (every
//! part is positive).
//!
//! Run: `mpirun -n 4 target/release/examples/stencil`. Exits non-zero if the two runs disagree.

use std::ops::Range;
use std::time::Instant;

use lightbeam::mesh::{Mesh, MeshConfig, Op, Rank, Source, Tag};
use lightbeam::mpi::collective::SystemOperation;
use lightbeam::mpi::point_to_point::{send_receive_into, Source as _}; // MPI's Source: its receive methods
use lightbeam::mpi::topology::{Process, SimpleCommunicator};
use lightbeam::mpi::traits::*;

/// Cells of the whole rod.
const CELLS: usize = 64;
/// The rod's ends are held at these temperatures; its cells start cold.
const HOT: f64 = 100.0;
const COLD: f64 = 0.0;
/// Stop once no cell changes by more than this in an iteration, or after `MAX_ITERATIONS`.
const TOLERANCE: f64 = 1e-4;
const MAX_ITERATIONS: usize = 20_000;

/// Halo tags, by the direction the cell travels.
const LEFTWARD: Tag = Tag(1);
const RIGHTWARD: Tag = Tag(2);

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

/// The cells `rank` owns: nearly equal runs, in rank order.
fn cells_of(rank: usize, ranks: usize) -> Range<usize> {
    CELLS * rank / ranks..CELLS * (rank + 1) / ranks
}

/// What one run ends with on this rank.
struct Solution {
    /// This rank's cells (without the ghost cells).
    cells: Vec<f64>,
    iterations: usize,
    /// The largest change of the last iteration, over the whole rod.
    change: f64,
    /// The whole rod's heat (the sum of its cells), and this rank's part of it.
    heat: f64,
    part: f64,
    seconds: f64,
}

/// The solver, whatever carries its messages: `exchange` fills the two ghost cells (`u[0]` and the last)
/// with the neighbours' edge cells, `max_all` and `sum_all` combine one number from every rank.
fn solve(
    rank: usize,
    ranks: usize,
    mut exchange: impl FnMut(&mut [f64]) -> Result<()>,
    mut max_all: impl FnMut(f64) -> Result<f64>,
    sum_all: impl FnOnce(f64) -> Result<f64>,
) -> Result<Solution> {
    let started = Instant::now();
    // This rank's cells with a ghost cell at each end; at the rod's ends the ghosts are the fixed ends.
    let mut u = vec![COLD; cells_of(rank, ranks).len() + 2];
    if rank == 0 {
        u[0] = HOT;
    }
    let mut next = u.clone();
    let (mut iterations, mut change) = (0, f64::INFINITY);
    while change > TOLERANCE && iterations < MAX_ITERATIONS {
        exchange(&mut u)?;
        let mut largest = 0.0f64;
        for i in 1..u.len() - 1 {
            next[i] = 0.5 * (u[i - 1] + u[i + 1]);
            largest = largest.max((next[i] - u[i]).abs());
        }
        (next[0], next[u.len() - 1]) = (u[0], u[u.len() - 1]);
        std::mem::swap(&mut u, &mut next);
        change = max_all(largest)?;
        iterations += 1;
    }
    let cells = u[1..u.len() - 1].to_vec();
    let part = cells.iter().sum();
    let heat = sum_all(part)?;
    Ok(Solution { cells, iterations, change, heat, part, seconds: started.elapsed().as_secs_f64() })
}

/// The halo exchange over the mesh, as `f64`s. Both sends go first: 8-byte messages are sent without
/// waiting for the receiver, so no two neighbours wait on each other. Each ghost cell is a one-element
/// slice the neighbour's cell is received into.
fn mesh_exchange(mesh: &Mesh, u: &mut [f64]) -> Result<()> {
    let (me, ranks, last) = (mesh.rank().0, mesh.size(), u.len() - 1);
    if me > 0 {
        mesh.send(Rank(me - 1), LEFTWARD, &u[1..2])?;
    }
    if me + 1 < ranks {
        mesh.send(Rank(me + 1), RIGHTWARD, &u[last - 1..last])?;
    }
    if me > 0 {
        mesh.recv_into(Source::Rank(Rank(me - 1)), RIGHTWARD, &mut u[..1])?;
    }
    if me + 1 < ranks {
        mesh.recv_into(Source::Rank(Rank(me + 1)), LEFTWARD, &mut u[last..])?;
    }
    Ok(())
}

/// The same halo exchange with MPI: a shift to the right, then one to the left.
fn mpi_exchange(world: &SimpleCommunicator, u: &mut [f64]) {
    let (me, ranks, last) = (world.rank(), world.size(), u.len() - 1);
    let left = (me > 0).then(|| world.process_at_rank(me - 1));
    let right = (me + 1 < ranks).then(|| world.process_at_rank(me + 1));
    let (first_cell, last_cell) = (u[1], u[last - 1]);
    shift(&last_cell, right, &mut u[0], left);
    shift(&first_cell, left, &mut u[last], right);
}

/// Sends `cell` to `to` and receives `ghost` from `from`, where there are such neighbours.
fn shift(cell: &f64, to: Option<Process<'_>>, ghost: &mut f64, from: Option<Process<'_>>) {
    match (to, from) {
        (Some(to), Some(from)) => {
            send_receive_into(cell, &to, ghost, &from);
        }
        (Some(to), None) => to.send(cell),
        (None, Some(from)) => {
            from.receive_into(ghost);
        }
        (None, None) => {}
    }
}

fn run(world: &SimpleCommunicator) -> Result<()> {
    let mesh = Mesh::bootstrap(world, MeshConfig::default())?;
    let (me, ranks) = (mesh.rank().0, mesh.size());
    if ranks > CELLS {
        return Err(format!("{ranks} ranks for {CELLS} cells: run at most {CELLS} ranks").into());
    }

    // Over Lightbeam: each rank's number in, the same result out on every rank.
    let ours = solve(
        me,
        ranks,
        |u| mesh_exchange(&mesh, u),
        |largest| {
            let mut change = [0.0];
            mesh.all_reduce_into(&[largest], &mut change, Op::Max)?;
            Ok(change[0])
        },
        |part| {
            let mut heat = [0.0];
            mesh.all_reduce_into(&[part], &mut heat, Op::Sum)?;
            Ok(heat[0])
        },
    )?;

    // The same computation over MPI.
    let theirs = solve(
        me,
        ranks,
        |u| {
            mpi_exchange(world, u);
            Ok(())
        },
        |largest| {
            let mut change = 0.0;
            world.all_reduce_into(&largest, &mut change, SystemOperation::max());
            Ok(change)
        },
        |part| {
            let mut heat = 0.0;
            world.all_reduce_into(&part, &mut heat, SystemOperation::sum());
            Ok(heat)
        },
    )?;

    if me == 0 {
        for (name, s) in [("lightbeam", &ours), ("mpi", &theirs)] {
            println!(
                "{name:>9}: {CELLS} cells on {ranks} ranks, {} iterations in {:.3} s, last change {:.3e}, total heat {:.17e}",
                s.iterations, s.seconds, s.change, s.heat
            );
        }
    }

    // Same iterations, same last change and the same bits in every cell; the total heat the same bits on
    // every rank (gathered with MPI) and within rounding of MPI's sum (the parts are positive, so their
    // magnitudes add up to the total itself).
    let bits = |cells: &[f64]| cells.iter().map(|c| c.to_bits()).collect::<Vec<_>>();
    let mut heats = vec![0u64; ranks];
    world.all_gather_into(&ours.heat.to_bits(), &mut heats[..]);
    let bound = 2.0 * (ranks - 1) as f64 * f64::EPSILON * theirs.heat;
    let difference = (ours.heat - theirs.heat).abs();
    let problem = if ours.iterations != theirs.iterations || ours.change.to_bits() != theirs.change.to_bits()
    {
        Some("the runs stopped differently".to_string())
    } else if bits(&ours.cells) != bits(&theirs.cells) || ours.part.to_bits() != theirs.part.to_bits() {
        Some("the cells differ between the runs".to_string())
    } else if heats.iter().any(|&heat| heat != heats[0]) {
        Some("the ranks hold different totals".to_string())
    } else if difference > bound {
        Some(format!("total heat {:e} against MPI's {:e}", ours.heat, theirs.heat))
    } else {
        None
    };
    // Every rank's verdict, so that rank 0 reports agreement only when every rank agrees.
    let mut everyone_agrees = 0u8;
    world.all_reduce_into(&u8::from(problem.is_none()), &mut everyone_agrees, SystemOperation::min());
    if let Some(problem) = problem {
        return Err(problem.into());
    }
    if everyone_agrees == 0 {
        return Err("another rank's runs disagree".into());
    }
    if me == 0 {
        println!(
            "agreed: same iterations, the same bits in every cell; total heat (the same bits on every rank) differs by {difference:.1e} (bound {bound:.1e})"
        );
    }
    Ok(())
}

fn main() {
    let universe = lightbeam::mpi::initialize().expect("MPI initializes once");
    let world = universe.world();
    lightbeam::mesh::or_abort(&world, run(&world));
}
