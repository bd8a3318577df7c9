//! Timing every library the same way: each iteration starts together after a barrier, and counts as
//! long as its slowest rank took; the libraries take turns. Summaries are medians, as noisy shared
//! machines need.

use std::time::Instant;

use mpi::collective::SystemOperation;
use mpi::topology::SimpleCommunicator;
use mpi::traits::*;

/// How many iterations to time, after how many untimed ones.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Schedule {
    pub(crate) warmup: usize,
    pub(crate) iterations: usize,
}

/// One series' part of an interleaved measurement.
pub(crate) trait Trial {
    /// Runs before each iteration's barrier, off the clock (for instance to make the buffers a zero-copy
    /// send gives away).
    fn prepare(&mut self) {}
    /// The timed operation.
    fn run(&mut self) -> Result<(), String>;
}

impl<T: Trial + ?Sized> Trial for Box<T> {
    fn prepare(&mut self) {
        (**self).prepare();
    }

    fn run(&mut self) -> Result<(), String> {
        (**self).run()
    }
}

/// `trial` run `times` times back to back as one iteration (each run but the first prepared on the
/// clock: series that give their buffers away pay for making them).
pub(crate) fn back_to_back<'t>(trial: Box<dyn Trial + 't>, times: usize) -> Box<dyn Trial + 't> {
    match times {
        0 | 1 => trial,
        _ => Box::new(BackToBack { trial, times }),
    }
}

struct BackToBack<'t> {
    trial: Box<dyn Trial + 't>,
    times: usize,
}

impl Trial for BackToBack<'_> {
    fn prepare(&mut self) {
        self.trial.prepare();
    }

    fn run(&mut self) -> Result<(), String> {
        for i in 0..self.times {
            if i > 0 {
                self.trial.prepare();
            }
            self.trial.run()?;
        }
        Ok(())
    }
}

/// The time (seconds) of every timed iteration of every trial, each the slowest rank's; the same on
/// every rank. The trials take turns iteration by iteration, so that a slow moment of a shared machine
/// hits every library alike instead of whichever happened to be running.
pub(crate) fn time_interleaved(
    world: &SimpleCommunicator,
    schedule: Schedule,
    trials: &mut [impl Trial],
) -> Result<Vec<Vec<f64>>, String> {
    let mut mine = vec![Vec::with_capacity(schedule.iterations); trials.len()];
    for i in 0..schedule.warmup + schedule.iterations {
        for (trial, times) in trials.iter_mut().zip(&mut mine) {
            trial.prepare();
            world.barrier();
            let started = Instant::now();
            trial.run()?;
            let took = started.elapsed().as_secs_f64();
            if i >= schedule.warmup {
                times.push(took);
            }
        }
    }
    Ok(mine.iter().map(|times| slowest(world, times)).collect())
}

/// Each of this rank's `times` replaced by the slowest rank's (every rank has as many); the same on
/// every rank.
pub(crate) fn slowest(world: &SimpleCommunicator, times: &[f64]) -> Vec<f64> {
    let mut slowest = vec![0.0; times.len()];
    world.all_reduce_into(times, &mut slowest[..], SystemOperation::max());
    slowest
}

/// Median, minimum and maximum of a non-empty sample.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Summary {
    pub(crate) median: f64,
    pub(crate) min: f64,
    pub(crate) max: f64,
}

impl Summary {
    pub(crate) fn of(samples: &[f64]) -> Self {
        let mut sorted = samples.to_vec();
        sorted.sort_by(f64::total_cmp);
        let n = sorted.len();
        let median = if n % 2 == 1 { sorted[n / 2] } else { (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0 };
        Self { median, min: sorted[0], max: sorted[n - 1] }
    }

    /// Every figure multiplied by `factor` (a round trip halved into one way, seconds into microseconds).
    pub(crate) fn scaled(self, factor: f64) -> Self {
        Self { median: self.median * factor, min: self.min * factor, max: self.max * factor }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians_of_odd_and_even_samples() {
        assert_eq!(Summary::of(&[3.0, 1.0, 2.0]), Summary { median: 2.0, min: 1.0, max: 3.0 });
        assert_eq!(Summary::of(&[4.0, 1.0, 2.0, 3.0]).median, 2.5);
        assert_eq!(Summary::of(&[2.0]).scaled(0.5).max, 1.0);
    }
}
