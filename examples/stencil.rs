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
//! The halo exchange, the reductions and the comparison are in examples/common/stencil.rs, shared with
//! `stencil_overlap` (a plate, whose halos are rows, exchanged while the interior is updated).
//!
//! Run: `mpirun -n 4 target/release/examples/stencil`. Exits non-zero if the two runs disagree.

#[path = "common/stencil.rs"]
mod stencil;

use std::ops::Range;
use std::time::Instant;

use lightbeam::mesh::{Mesh, MeshConfig, Op};
use lightbeam::mpi::collective::SystemOperation;
use lightbeam::mpi::topology::SimpleCommunicator;
use stencil::{check, mesh_all, mesh_exchange, mpi_all, mpi_exchange, Result, Solution};

/// Cells of the whole rod.
const CELLS: usize = 64;
/// The rod's ends are held at these temperatures; its cells start cold.
const HOT: f64 = 100.0;
const COLD: f64 = 0.0;
/// Stop once no cell changes by more than this in an iteration, or after `MAX_ITERATIONS`.
const TOLERANCE: f64 = 1e-4;
const MAX_ITERATIONS: usize = 20_000;

/// The cells `rank` owns: nearly equal runs, in rank order.
fn cells_of(rank: usize, ranks: usize) -> Range<usize> {
    CELLS * rank / ranks..CELLS * (rank + 1) / ranks
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
    let seconds = started.elapsed().as_secs_f64();
    let cells = u[1..u.len() - 1].to_vec();
    let part = cells.iter().sum();
    let heat = sum_all(part)?;
    Ok(Solution { cells, iterations, change, heat, part, seconds })
}

fn run(world: &SimpleCommunicator) -> Result<()> {
    let mesh = Mesh::bootstrap(world, MeshConfig::default())?;
    let (me, ranks) = (mesh.rank().0, mesh.size());
    if ranks > CELLS {
        return Err(format!("{ranks} ranks for {CELLS} cells: run at most {CELLS} ranks").into());
    }

    // Over Lightbeam, then the same computation over MPI. A cell is a row of width 1.
    let ours =
        solve(me, ranks, |u| mesh_exchange(&mesh, u, 1), mesh_all(&mesh, Op::Max), mesh_all(&mesh, Op::Sum))?;
    let theirs = solve(
        me,
        ranks,
        |u| {
            mpi_exchange(world, u, 1);
            Ok(())
        },
        mpi_all(world, SystemOperation::max()),
        mpi_all(world, SystemOperation::sum()),
    )?;

    if me == 0 {
        for (name, s) in [("lightbeam", &ours), ("mpi", &theirs)] {
            println!(
                "{name:>9}: {CELLS} cells on {ranks} ranks, {} iterations in {:.3} s, last change {:.3e}, total heat {:.17e}",
                s.iterations, s.seconds, s.change, s.heat
            );
        }
    }
    check(world, &[("lightbeam", &ours)], &[("mpi", &theirs)])
}

fn main() {
    let universe = lightbeam::mpi::initialize().expect("MPI initializes once");
    let world = universe.world();
    lightbeam::mesh::or_abort(&world, run(&world));
}
