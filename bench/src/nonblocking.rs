//! The overlap benchmarks, as OSU's `osu_ibcast` and `osu_iallreduce`: how much of a non-blocking
//! broadcast (from rank 0) or all-reduce (f64 summed) hides behind a computation run between its start
//! and its wait. At each size every series is measured in three steps, the libraries taking turns
//! iteration by iteration as elsewhere:
//!
//! 1. t_pure: the call started and waited for at once;
//! 2. each rank sizes a busy loop of arithmetic (not a sleep) to last that series' t_pure, and the loop
//!    is timed alone (t_cpu_alone);
//! 3. t_total: the call started, the loop run (timed: t_cpu), the call waited for.
//!
//! Overlap is OSU's: max(0, 100 - 100 * (t_total - t_cpu) / t_pure), from the medians. Where the
//! call's progress takes the loop's core (more threads than cores), t_cpu grows past t_cpu_alone and
//! OSU's figure counts that as overlap: t_total beside t_cpu_alone + t_pure tells whether anything was
//! gained. Lightbeam's
//! calls start in a scope opened for each iteration (their lane thread runs them while the loop
//! computes); MPI's are its immediate calls in a request scope. The blocking Lightbeam series (with
//! `--without-progress`) starts the same calls in a scope with `Progress::OnWait`, whose wait runs
//! them: the figure of a library without any progress mechanism.

use std::hint::black_box;
use std::time::Instant;

use lightbeam::mesh::{Op, Progress, Rank, Request};
use mpi::collective::SystemOperation;
use mpi::traits::*;

use crate::collectives::{Collective, ROOT};
use crate::reductions::{sent, Typed, ELEMENT};
use crate::report::Overlap;
use crate::series::{Library, Peers, Series};
use crate::timing::{self, Schedule, Summary, Trial};

/// The non-blocking calls whose overlap is measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Overlapped {
    Bcast,
    AllReduce,
}

/// Measures `call` with each of `series` at `size` bytes (per rank): for each, t_pure (in
/// microseconds) and its overlap.
pub(crate) fn measure<'p>(
    call: Overlapped,
    peers: &'p Peers<'p>,
    series: &[Series],
    size: usize,
    schedule: Schedule,
) -> Result<Vec<(Summary, Overlap)>, String> {
    let mut trials =
        series.iter().map(|&s| OverlapTrial::new(call, peers, s, size)).collect::<Result<Vec<_>, _>>()?;
    let pure = timing::time_interleaved(peers.world, schedule, &mut trials)?;
    let pure: Vec<Summary> = pure.iter().map(|times| Summary::of(times)).collect();
    let mut spins: Vec<Spin> = pure
        .iter()
        .map(|pure| {
            peers.world.barrier(); // every rank sizes its loop at once, sharing the cores as it will
            Spin::lasting(pure.median)
        })
        .collect();
    let alone = timing::time_interleaved(peers.world, schedule, &mut spins)?;
    for (trial, &spin) in trials.iter_mut().zip(&spins) {
        trial.spin = Some(spin);
    }
    let total = timing::time_interleaved(peers.world, schedule, &mut trials)?;
    let us = |times: &[f64]| Summary::of(times).median * 1e6;
    Ok(trials
        .iter()
        .zip(pure)
        .zip(alone.iter().zip(&total))
        .map(|((trial, pure), (alone, total))| {
            // The loop's time in each timed iteration (the warm-up ones ran first), the slowest rank's.
            let cpu = timing::slowest(peers.world, &trial.cpu[schedule.warmup..]);
            let pure = pure.scaled(1e6);
            (pure, Overlap::new(pure.median, us(&cpu), us(total), us(alone)))
        })
        .collect())
}

/// One rank's part of an overlapped call with one series: its buffers, and the loop it computes
/// between the start and the wait.
struct OverlapTrial<'p> {
    call: Overlapped,
    peers: &'p Peers<'p>,
    series: Series,
    /// The broadcast's buffer (the data, at the root).
    bytes: Vec<u8>,
    /// The all-reduce's elements: this rank's, and the sum.
    send: Vec<f64>,
    recv: Vec<f64>,
    /// The computation, once sized (none while t_pure is measured).
    spin: Option<Spin>,
    /// How long each run's computation took, in seconds.
    cpu: Vec<f64>,
}

impl<'p> OverlapTrial<'p> {
    /// This rank's part with `series`, `size` bytes per rank, checked once (untimed) to leave every rank
    /// with the right result.
    fn new(call: Overlapped, peers: &'p Peers<'p>, series: Series, size: usize) -> Result<Self, String> {
        let (me, n) = (peers.rank(), peers.size());
        let (bytes, count) = match call {
            Overlapped::Bcast if me == ROOT => (Collective::Bcast.expected(me, n, size), 0),
            Overlapped::Bcast => (vec![0; size], 0),
            Overlapped::AllReduce => (Vec::new(), size / ELEMENT),
        };
        let (send, recv) = (sent(me, count), vec![0.0; count]);
        let mut trial = Self { call, peers, series, bytes, send, recv, spin: None, cpu: Vec::new() };
        trial.run()?;
        let right = match call {
            Overlapped::Bcast => trial.bytes == Collective::Bcast.expected(me, n, size),
            Overlapped::AllReduce => trial.recv == Typed::AllReduce.expected(me, n, count),
        };
        match right {
            true => Ok(trial),
            false => Err(format!("{call:?} with {}: rank {me} holds the wrong result", series.name())),
        }
    }
}

impl Trial for OverlapTrial<'_> {
    fn run(&mut self) -> Result<(), String> {
        let (call, peers, spin, cpu) = (self.call, self.peers, self.spin, &mut self.cpu);
        let mut compute = || {
            if let Some(spin) = spin {
                cpu.push(spin.timed());
            }
        };
        let (bytes, send, recv) = (&mut self.bytes[..], &self.send[..], &mut self.recv[..]);
        let done = match (self.series.library, self.series.nonblocking) {
            // Without progress the same calls start in a scope whose wait runs them.
            (Library::Lightbeam(meshed), nonblocking) => {
                let progress = if nonblocking { Progress::Lane } else { Progress::OnWait };
                peers.lightbeam(meshed).scope_with(progress, |s| match call {
                    Overlapped::Bcast => behind(s.broadcast_into(Rank(ROOT), bytes), compute),
                    Overlapped::AllReduce => behind(s.all_reduce_into(send, recv, Op::Sum), compute),
                })
            }
            (Library::Mpi, _) => {
                let world = peers.world;
                mpi::request::scope(|scope| match call {
                    Overlapped::Bcast => {
                        let request =
                            world.process_at_rank(ROOT as i32).immediate_broadcast_into(scope, bytes);
                        compute();
                        request.wait();
                    }
                    Overlapped::AllReduce => {
                        let request =
                            world.immediate_all_reduce_into(scope, send, recv, SystemOperation::sum());
                        compute();
                        request.wait();
                    }
                });
                Ok(())
            }
            (Library::Zmq, _) => return Err(format!("{call:?} has no raw ZeroMQ series")),
        };
        done.map_err(|e| e.to_string())
    }
}

/// Runs `compute` while `request` is in flight, then waits for it.
fn behind<T>(request: Request<'_, T>, compute: impl FnOnce()) -> lightbeam::Result<()> {
    compute();
    request.wait().map(drop)
}

/// The loop alone, timed as the calls are (the slowest rank's, each iteration).
impl Trial for Spin {
    fn run(&mut self) -> Result<(), String> {
        self.timed();
        Ok(())
    }
}

/// OSU's dummy computation: a busy loop of floating-point arithmetic, each step depending on the last
/// (so it neither vectorizes nor folds away), run for a number of steps sized to last a given time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Spin {
    steps: u64,
}

impl Spin {
    /// Samples taken at each sizing step, and sizing steps.
    const SAMPLES: usize = 5;
    const ROUNDS: usize = 3;

    /// Runs the loop; returns how long it took, in seconds.
    pub(crate) fn timed(self) -> f64 {
        let started = Instant::now();
        let mut x = black_box(1.0f64);
        for _ in 0..black_box(self.steps) {
            x = x * 1.000_000_1 + 1e-9;
        }
        black_box(x);
        started.elapsed().as_secs_f64()
    }

    /// The median time of a few runs, in seconds.
    fn median(self) -> f64 {
        let times: Vec<f64> = (0..Self::SAMPLES).map(|_| self.timed()).collect();
        Summary::of(&times).median
    }

    /// A loop lasting about `seconds` on this rank now: sized from a millisecond's sample, then resized
    /// a few times from the median of its own runs.
    pub(crate) fn lasting(seconds: f64) -> Self {
        let mut spin = Self { steps: 1 << 10 };
        while spin.median() < 1e-3 && spin.steps < 1 << 40 {
            spin.steps *= 4;
        }
        for _ in 0..Self::ROUNDS {
            let scaled = spin.steps as f64 * seconds / spin.median().max(1e-9);
            spin.steps = scaled.round().max(1.0) as u64;
        }
        spin
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_loop_lasts_about_as_long_as_asked() {
        let spin = Spin::lasting(2e-3);
        let took = spin.median();
        // Generous bounds: the test machine may be shared.
        assert!((0.5e-3..20e-3).contains(&took), "{took} s");
        assert!(Spin::lasting(1e-7).steps >= 1);
    }
}
