//! A halo exchange overlapped with computation: heat spreading over a plate, solved by Jacobi
//! iteration, the plate's rows split among the ranks. Each iteration a rank needs its neighbours' edge
//! rows (the halo) only for its own two edge rows; the rows between them (the interior) need none. So,
//! as HPC codes write it, the overlapped solver starts the halo's receives and sends in a
//! [`Mesh::scope`] (`s.recv_into`, `s.send`), updates the interior while the rows move, waits
//! ([`wait_all`]), then updates its edge rows; the ranks then agree on the largest change
//! (`all_reduce_into` with `Op::Max`) to decide when to stop.
//!
//! Four runs of one solver, on the same plate: Lightbeam blocking (`mesh.send` / `mesh.recv_into`,
//! then the whole update) and overlapped, and the same two over MPI (rsmpi's send/receive, and its
//! immediate sends and receives in a request scope). Every cell is updated by the same expression
//! whichever run, and a maximum is exact in any order, so every run must take the same iterations and
//! end with the same bits in every cell; every run is checked against the blocking MPI run
//! (examples/common/stencil.rs, shared with `stencil`). Rank 0 prints each run's time per iteration
//! (the output of a run, not a check).
//!
//! The plate starts at reproducible temperatures between 0 and 100 in every cell (so that a wrong
//! halo shows in the bits at once); its top edge is held at 100, its bottom edge at 0, its sides at
//! their starting temperatures.
//!
//! Run: `mpirun -n 4 target/release/examples/stencil_overlap [--width 16384] [--rows 256]
//! [--iterations 100]`; a halo row is `width` cells of 8 bytes. Exits non-zero if the runs disagree.

#[path = "common/stencil.rs"]
mod stencil;

use std::ops::Range;
use std::time::Instant;

use lightbeam::mesh::{wait_all, Mesh, MeshConfig, Op, Rank};
use lightbeam::mpi::collective::SystemOperation;
use lightbeam::mpi::topology::SimpleCommunicator;
use lightbeam::mpi::traits::*;
use stencil::{
    check, layers, mesh_all, mesh_exchange, mpi_all, mpi_exchange, neighbours, Result, Solution, BACKWARD,
    FORWARD,
};

/// The top edge's temperature, and the bottom edge's.
const HOT: f64 = 100.0;
const COLD: f64 = 0.0;
/// Stop once no cell changes by more than this in an iteration, or after `Plate::iterations`.
const TOLERANCE: f64 = 1e-4;

/// The plate and how long to iterate.
#[derive(Clone, Copy)]
struct Plate {
    /// Cells of a row, the two side cells included: a halo row is this many `f64`s.
    width: usize,
    /// Rows of the whole plate, split among the ranks.
    rows: usize,
    /// The most iterations to run.
    iterations: usize,
}

impl Plate {
    /// The rows `rank` owns: nearly equal runs, in rank order.
    fn rows_of(&self, rank: usize, ranks: usize) -> Range<usize> {
        self.rows * rank / ranks..self.rows * (rank + 1) / ranks
    }

    /// The starting temperature of the cell at `row`, `column`: reproducible, between 0 and 100.
    fn start(&self, row: usize, column: usize) -> f64 {
        let index = (row * self.width + column) as u64 + 1;
        let bits = index.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 11; // 53 bits
        HOT * bits as f64 / (1u64 << 53) as f64
    }
}

fn parse_args() -> std::result::Result<Plate, String> {
    let mut plate = Plate { width: 16384, rows: 256, iterations: 100 };
    let usage = "usage: stencil_overlap [--width 16384] [--rows 256] [--iterations 100]";
    let mut given = std::env::args().skip(1);
    while let Some(flag) = given.next() {
        let value = given.next().and_then(|text| text.parse::<usize>().ok());
        match (flag.as_str(), value) {
            ("--width", Some(width)) if width >= 3 => plate.width = width,
            ("--rows", Some(rows)) if rows >= 1 => plate.rows = rows,
            ("--iterations", Some(iterations)) => plate.iterations = iterations,
            _ => return Err(format!("{usage} (the width at least 3, the rows at least 1)")),
        }
    }
    Ok(plate)
}

/// Jacobi-updates rows `rows` of `from` into `to` (both rows of `width` cells; `from` has the rows
/// just before and after them): each cell becomes the mean of its four neighbours, the first and last
/// cell of a row (the plate's sides) stay as they are. Returns the largest change.
fn relax(from: &[f64], to: &mut [f64], width: usize, rows: Range<usize>) -> f64 {
    let mut largest = 0.0f64;
    for row in rows {
        let above = &from[(row - 1) * width..row * width];
        let this = &from[row * width..(row + 1) * width];
        let below = &from[(row + 1) * width..(row + 2) * width];
        let out = &mut to[row * width + 1..(row + 1) * width - 1];
        let sides = this.windows(3);
        for (((cell, sides), up), down) in out.iter_mut().zip(sides).zip(&above[1..]).zip(&below[1..]) {
            *cell = 0.25 * ((up + down) + (sides[0] + sides[2]));
            largest = largest.max((*cell - sides[1]).abs());
        }
    }
    largest
}

/// One iteration's halo exchange: it fills `u`'s ghost rows with the neighbours' edge rows and calls
/// `interior` once with this rank's rows (without the ghosts), either while the rows move
/// (overlapped) or once they have arrived (blocking).
type Exchange<'a> = dyn FnMut(&mut [f64], usize, &mut dyn FnMut(&[f64])) -> Result<()> + 'a;

/// A blocking exchange as an [`Exchange`]: the whole exchange, then the interior.
fn blocking<'a>(mut exchange: impl FnMut(&mut [f64], usize) -> Result<()> + 'a) -> Box<Exchange<'a>> {
    Box::new(move |u, width, interior| {
        exchange(u, width)?;
        interior(&u[width..u.len() - width]);
        Ok(())
    })
}

/// The solver, whatever carries its messages: `exchange` moves the halo and has the interior
/// updated, `max_all` and `sum_all` combine one number from every rank.
fn solve(
    plate: Plate,
    rank: usize,
    ranks: usize,
    exchange: &mut Exchange<'_>,
    mut max_all: impl FnMut(f64) -> Result<f64>,
    sum_all: impl FnOnce(f64) -> Result<f64>,
) -> Result<Solution> {
    let (width, mine) = (plate.width, plate.rows_of(rank, ranks));
    let owned = mine.len();
    // This rank's rows with a ghost row before and after; at the plate's edges the ghosts are the fixed
    // edges, which `next` holds too.
    let mut u = vec![COLD; (owned + 2) * width];
    for (at, row) in u.chunks_mut(width).enumerate().skip(1).take(owned) {
        let global = mine.start + at - 1;
        row.iter_mut().enumerate().for_each(|(column, cell)| *cell = plate.start(global, column));
    }
    if rank == 0 {
        u[..width].fill(HOT);
    }
    let mut next = u.clone();
    let started = Instant::now();
    let (mut iterations, mut change) = (0, f64::INFINITY);
    while change > TOLERANCE && iterations < plate.iterations {
        let mut largest = 0.0f64;
        // The interior: rows 1 to owned - 2 of this rank's rows (`next` offset alike), which read
        // only this rank's rows.
        exchange(&mut u, width, &mut |rows| {
            largest = relax(rows, &mut next[width..], width, 1..owned - 1);
        })?;
        // The edge rows (rows 1 and `owned` of `u`, one row when this rank has only one), which read
        // the ghosts.
        for row in [1, owned].into_iter().take(owned.min(2)) {
            largest = largest.max(relax(&u, &mut next, width, row..row + 1));
        }
        std::mem::swap(&mut u, &mut next);
        change = max_all(largest)?;
        iterations += 1;
    }
    let seconds = started.elapsed().as_secs_f64();
    let cells = u[width..u.len() - width].to_vec();
    let part = cells.iter().sum();
    let heat = sum_all(part)?;
    Ok(Solution { cells, iterations, change, heat, part, seconds })
}

/// The overlapped halo exchange over the mesh: both receives posted and both sends started in a scope,
/// the interior updated meanwhile, then all four awaited. The ghost rows are the receives' until the
/// scope returns.
fn mesh_overlapped(mesh: &Mesh, u: &mut [f64], width: usize, interior: &mut dyn FnMut(&[f64])) -> Result<()> {
    let (me, ranks) = (mesh.rank().0, mesh.size());
    let (ghost_before, owned, ghost_after) = layers(u, width);
    let owned: &[f64] = owned;
    let (first, last) = (&owned[..width], &owned[owned.len() - width..]);
    mesh.scope(move |s| {
        let (mut receives, mut sends) = (Vec::new(), Vec::new());
        if me > 0 {
            receives.push(s.recv_into(Rank(me - 1), FORWARD, ghost_before));
        }
        if me + 1 < ranks {
            receives.push(s.recv_into(Rank(me + 1), BACKWARD, ghost_after));
        }
        if me > 0 {
            sends.push(s.send(Rank(me - 1), BACKWARD, first));
        }
        if me + 1 < ranks {
            sends.push(s.send(Rank(me + 1), FORWARD, last));
        }
        interior(owned);
        wait_all(receives)?;
        wait_all(sends)?;
        Ok(())
    })
}

/// The same with MPI: immediate receives and sends in a request scope, the interior, then the waits.
fn mpi_overlapped(world: &SimpleCommunicator, u: &mut [f64], width: usize, interior: &mut dyn FnMut(&[f64])) {
    let (before, after) = neighbours(world);
    let (ghost_before, owned, ghost_after) = layers(u, width);
    let owned: &[f64] = owned;
    let (first, last) = (&owned[..width], &owned[owned.len() - width..]);
    lightbeam::mpi::request::scope(|scope| {
        let mut requests = Vec::new();
        if let Some(before) = before {
            requests.push(before.immediate_receive_into(scope, ghost_before));
            requests.push(before.immediate_send(scope, first));
        }
        if let Some(after) = after {
            requests.push(after.immediate_receive_into(scope, ghost_after));
            requests.push(after.immediate_send(scope, last));
        }
        interior(owned);
        requests.into_iter().for_each(|request| {
            request.wait();
        });
    });
}

fn run(world: &SimpleCommunicator, plate: Plate) -> Result<()> {
    let mesh = Mesh::bootstrap(world, MeshConfig::default())?;
    let (me, ranks) = (mesh.rank().0, mesh.size());
    if ranks > plate.rows {
        return Err(format!("{ranks} ranks for {} rows: run at most {} ranks", plate.rows, plate.rows).into());
    }

    let run = |exchange: &mut Exchange<'_>, over_mesh: bool| {
        world.barrier(); // every run starts together, for its time
        match over_mesh {
            true => solve(plate, me, ranks, exchange, mesh_all(&mesh, Op::Max), mesh_all(&mesh, Op::Sum)),
            false => solve(
                plate,
                me,
                ranks,
                exchange,
                mpi_all(world, SystemOperation::max()),
                mpi_all(world, SystemOperation::sum()),
            ),
        }
    };
    let blocking_lightbeam = run(&mut *blocking(|u, width| mesh_exchange(&mesh, u, width)), true)?;
    let overlapped_lightbeam =
        run(&mut |u, width, interior| mesh_overlapped(&mesh, u, width, interior), true)?;
    let blocking_mpi = run(
        &mut *blocking(|u, width| {
            mpi_exchange(world, u, width);
            Ok(())
        }),
        false,
    )?;
    let overlapped_mpi = run(
        &mut |u, width, interior| {
            mpi_overlapped(world, u, width, interior);
            Ok(())
        },
        false,
    )?;

    if me == 0 {
        let halo = match plate.width * size_of::<f64>() {
            bytes if bytes < 1024 => format!("{bytes} B"),
            bytes => format!("{:.0} KiB", bytes as f64 / 1024.0),
        };
        println!(
            "plate of {} x {} cells on {ranks} ranks (halo rows of {halo}), {} iterations, last change {:.3e}, total heat {:.17e}",
            plate.width, plate.rows, blocking_mpi.iterations, blocking_mpi.change, blocking_mpi.heat
        );
        for (library, blocking, overlapped) in [
            ("lightbeam", &blocking_lightbeam, &overlapped_lightbeam),
            ("mpi", &blocking_mpi, &overlapped_mpi),
        ] {
            let (blocking, overlapped) = (blocking.ms_per_iteration(), overlapped.ms_per_iteration());
            println!(
                "{library:>9}: {blocking:.3} ms per iteration blocking, {overlapped:.3} ms overlapped (speed-up {:.2}x)",
                blocking / overlapped
            );
        }
    }
    check(
        world,
        &[("lightbeam blocking", &blocking_lightbeam), ("lightbeam overlapped", &overlapped_lightbeam)],
        &[("mpi blocking", &blocking_mpi), ("mpi overlapped", &overlapped_mpi)],
    )
}

fn main() {
    let universe = lightbeam::mpi::initialize().expect("MPI initializes once");
    let world = universe.world();
    let plate = match parse_args() {
        Ok(plate) => plate,
        Err(usage) => {
            eprintln!("{usage}");
            std::process::exit(2);
        }
    };
    lightbeam::mesh::or_abort(&world, run(&world, plate));
}
