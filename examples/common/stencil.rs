//! What the stencil examples share: the halo exchange of a slab of rows split among the ranks (over the
//! mesh, and over MPI), the reductions, a run's outcome, and the check that Lightbeam's runs end with
//! the same bits as MPI's.
//!
//! A rank holds its rows with a ghost row before the first and after the last (`u` below): the ghost
//! rows hold the neighbouring ranks' edge rows, or, at the ends of the whole, fixed boundary values.
//! A row is `width` cells (1 for a rod).
#![allow(dead_code)] // each example uses what it needs

use lightbeam::mesh::{Mesh, Op, Rank, Source, Tag};
use lightbeam::mpi::collective::SystemOperation;
use lightbeam::mpi::datatype::{Buffer, BufferMut};
use lightbeam::mpi::point_to_point::{send_receive_into, Source as _}; // MPI's Source: its receive methods
use lightbeam::mpi::topology::{Process, SimpleCommunicator};
use lightbeam::mpi::traits::*;

pub(crate) type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

/// Halo tags, by the way the row travels: to the rank before (`rank - 1`) or the rank after.
pub(crate) const BACKWARD: Tag = Tag(1);
pub(crate) const FORWARD: Tag = Tag(2);

/// What one run ends with on this rank.
pub(crate) struct Solution {
    /// This rank's cells (without the ghost rows).
    pub(crate) cells: Vec<f64>,
    pub(crate) iterations: usize,
    /// The largest change of the last iteration, over the whole.
    pub(crate) change: f64,
    /// The whole's heat (the sum of its cells), and this rank's part of it.
    pub(crate) heat: f64,
    pub(crate) part: f64,
    /// From the start of the run to the end of its last iteration (the total heat not included).
    pub(crate) seconds: f64,
}

impl Solution {
    /// The mean time of one iteration, in milliseconds.
    pub(crate) fn ms_per_iteration(&self) -> f64 {
        1e3 * self.seconds / self.iterations.max(1) as f64
    }
}

/// `u`'s ghost row before, this rank's rows, and its ghost row after.
pub(crate) fn layers(u: &mut [f64], width: usize) -> (&mut [f64], &mut [f64], &mut [f64]) {
    let (before, rest) = u.split_at_mut(width);
    let (owned, after) = rest.split_at_mut(rest.len() - width);
    (before, owned, after)
}

/// The halo exchange over the mesh: both edge rows are sent, then both ghost rows received. The sends
/// do not wait for the neighbours' receives (they queue, or take in this rank's own messages while a
/// large one waits), so no two neighbours wait on each other.
pub(crate) fn mesh_exchange(mesh: &Mesh, u: &mut [f64], width: usize) -> Result<()> {
    let (me, ranks) = (mesh.rank().0, mesh.size());
    let (before, owned, after) = layers(u, width);
    if me > 0 {
        mesh.send(Rank(me - 1), BACKWARD, &owned[..width])?;
    }
    if me + 1 < ranks {
        mesh.send(Rank(me + 1), FORWARD, &owned[owned.len() - width..])?;
    }
    if me > 0 {
        mesh.recv_into(Source::Rank(Rank(me - 1)), FORWARD, before)?;
    }
    if me + 1 < ranks {
        mesh.recv_into(Source::Rank(Rank(me + 1)), BACKWARD, after)?;
    }
    Ok(())
}

/// The same halo exchange with MPI: a shift forward (each rank's last row to the next rank's ghost row
/// before), then one backward.
pub(crate) fn mpi_exchange(world: &SimpleCommunicator, u: &mut [f64], width: usize) {
    let (before, after) = neighbours(world);
    let (ghost_before, owned, ghost_after) = layers(u, width);
    shift(&owned[owned.len() - width..], after, ghost_before, before);
    shift(&owned[..width], before, ghost_after, after);
}

/// The ranks before and after this one, where there are such.
pub(crate) fn neighbours(world: &SimpleCommunicator) -> (Option<Process<'_>>, Option<Process<'_>>) {
    let (me, ranks) = (world.rank(), world.size());
    let before = (me > 0).then(|| world.process_at_rank(me - 1));
    let after = (me + 1 < ranks).then(|| world.process_at_rank(me + 1));
    (before, after)
}

/// Sends `edge` to `to` and receives `ghost` from `from`, where there are such neighbours.
fn shift<S, R>(edge: &S, to: Option<Process<'_>>, ghost: &mut R, from: Option<Process<'_>>)
where
    S: Buffer + ?Sized,
    R: BufferMut + ?Sized,
{
    match (to, from) {
        (Some(to), Some(from)) => {
            send_receive_into(edge, &to, ghost, &from);
        }
        (Some(to), None) => to.send(edge),
        (None, Some(from)) => {
            from.receive_into(ghost);
        }
        (None, None) => {}
    }
}

/// A reduction over the mesh: each rank's number in, the same result out on every rank.
pub(crate) fn mesh_all(mesh: &Mesh, op: Op) -> impl FnMut(f64) -> Result<f64> + '_ {
    move |mine| {
        let mut all = [0.0];
        mesh.all_reduce_into(&[mine], &mut all, op)?;
        Ok(all[0])
    }
}

/// The same reduction over MPI.
pub(crate) fn mpi_all(
    world: &SimpleCommunicator,
    op: SystemOperation,
) -> impl FnMut(f64) -> Result<f64> + '_ {
    move |mine| {
        let mut all = 0.0;
        world.all_reduce_into(&mine, &mut all, op);
        Ok(all)
    }
}

/// Checks every run against MPI's first run, `mpi[0]`, on every rank, and reports on rank 0: the same
/// iterations, the same last change and the same bits in every cell, and the total heat within
/// rounding of the reference's; for Lightbeam's runs also the same bits on every rank (gathered with
/// MPI). Halos are copies and a maximum is exact in any order, so only the sum may differ: Lightbeam
/// adds the ranks' parts in a fixed order, MPI in an order of its own, at most 2 (n - 1) eps times the
/// total apart (every part is positive, so their magnitudes add up to the total itself). Fails on
/// every rank when any rank's runs disagree.
pub(crate) fn check(
    world: &SimpleCommunicator,
    lightbeam: &[(&str, &Solution)],
    mpi: &[(&str, &Solution)],
) -> Result<()> {
    let (me, ranks) = (world.rank(), world.size() as usize);
    let reference = mpi[0].1;
    let bits = |cells: &[f64]| cells.iter().map(|c| c.to_bits()).collect::<Vec<_>>();
    let bound = 2.0 * (ranks - 1) as f64 * f64::EPSILON * reference.heat;
    let (mut problem, mut largest_difference) = (None, 0.0f64);
    let runs = lightbeam.iter().map(|&run| (run, true)).chain(mpi[1..].iter().map(|&run| (run, false)));
    for ((name, run), ours) in runs {
        let mut heats = vec![0u64; ranks];
        if ours {
            world.all_gather_into(&run.heat.to_bits(), &mut heats[..]);
        }
        let difference = (run.heat - reference.heat).abs();
        largest_difference = largest_difference.max(difference);
        let found = if run.iterations != reference.iterations
            || run.change.to_bits() != reference.change.to_bits()
        {
            Some(format!("{name}: the runs stopped differently"))
        } else if bits(&run.cells) != bits(&reference.cells) || run.part.to_bits() != reference.part.to_bits()
        {
            Some(format!("{name}: the cells differ between the runs"))
        } else if heats.iter().any(|&heat| heat != heats[0]) {
            Some(format!("{name}: the ranks hold different totals"))
        } else if difference > bound {
            Some(format!("{name}: total heat {:e} against {}'s {:e}", run.heat, mpi[0].0, reference.heat))
        } else {
            None
        };
        problem = problem.or(found);
    }
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
            "agreed: same iterations, the same bits in every cell; total heat (the same bits on every rank) differs by {largest_difference:.1e} (bound {bound:.1e})"
        );
    }
    Ok(())
}
