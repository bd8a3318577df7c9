//! Timing one operation the same way for every library: each iteration starts together after a barrier,
//! and counts as long as its slowest rank took. Summaries are medians, as noisy shared machines need.

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

/// The time of every timed iteration (seconds), each the slowest rank's; the same on every rank.
///
/// `prepare` runs before each iteration's barrier, off the clock (for instance to make the buffers a
/// zero-copy send gives away); `op` is what is timed.
pub(crate) fn time_iterations<P>(
    world: &SimpleCommunicator,
    schedule: Schedule,
    mut prepare: impl FnMut() -> P,
    mut op: impl FnMut(P) -> Result<(), String>,
) -> Result<Vec<f64>, String> {
    let mut mine = Vec::with_capacity(schedule.iterations);
    for i in 0..schedule.warmup + schedule.iterations {
        let prepared = prepare();
        world.barrier();
        let started = Instant::now();
        op(prepared)?;
        let took = started.elapsed().as_secs_f64();
        if i >= schedule.warmup {
            mine.push(took);
        }
    }
    let mut slowest = vec![0.0; mine.len()];
    world.all_reduce_into(&mine[..], &mut slowest[..], SystemOperation::max());
    Ok(slowest)
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
