//! Non-blocking calls under plain `cargo test`, every rank a thread of this process over the real
//! transports: requests of every call give what the blocking calls give; several are in flight at once
//! and complete in any order; receives match in posting order; a forgotten request writes nothing once
//! its scope returned; a request awaited as a future; 10,000 requests in flight; errors of lost and
//! out-of-step ranks reach every request.

use std::time::{Duration, Instant};

use lightbeam::mesh::{wait_all, wait_any, InProcess, Op, Rank, Source, Tag};
use lightbeam::Error;

mod common;

use common::{config, data, run, run_ok};

/// A ring exchange with the receive posted before the send, at sizes that are queued at once and that
/// go on the lane (from `EAGER_BELOW` up), the halo of a 1-D stencil.
#[test]
fn a_ring_exchange_of_requests_at_every_size() {
    for n in [1, 2, 3, 4] {
        run_ok(InProcess::ranks(n), &config(), |mesh| {
            let (me, n) = (mesh.rank().0, mesh.size());
            let (right, left) = (Rank((me + 1) % n), Rank((me + n - 1) % n));
            for len in [0, 8, 65_536, 1 << 20, 3 << 20] {
                let out = data(len, me);
                let mut halo = vec![0u8; len];
                let (from, got) = mesh.scope(|s| {
                    let received = s.recv_into(left, Tag(len as u32), &mut halo[..]);
                    let sent = s.send(right, Tag(len as u32), &out);
                    sent.wait()?;
                    received.wait()
                })?;
                assert_eq!((from, got), (left, len));
                assert!(halo == data(len, left.0), "rank {me}: {len} bytes from {left}");
            }
            Ok(())
        });
    }
}

/// Every collective started at once in one scope, with sends and receives among them, gives what the
/// blocking call gives; a blocking collective called between started ones runs in call order.
#[test]
fn every_collective_started_at_once_gives_the_blocking_result() {
    for n in [1, 2, 3, 4] {
        run_ok(InProcess::ranks(n), &config(), |mesh| {
            let (me, n) = (mesh.rank().0, mesh.size());
            for len in [8usize, 100_000, 1 << 21] {
                let count = len / 8;
                let values: Vec<f64> = (0..count).map(|i| (i * (me + 1)) as f64).collect();
                let mut broadcast = if me == 0 { data(len, 7) } else { Vec::new() };
                let mut sum = vec![0.0; count];
                let mut gathered = vec![0.0; count * n];
                let mut in_place = values.clone();
                let mut max = vec![0.0; count];
                let mut blocking_sum = vec![0.0; count];
                mesh.scope(|s| {
                    let broadcast = s.broadcast_into(Rank(0), &mut broadcast);
                    let requests = vec![
                        s.all_reduce_into(&values, &mut sum, Op::Sum),
                        s.barrier(),
                        s.all_gather_into(&values, &mut gathered),
                    ];
                    // A blocking call now runs after the four above, as on every rank.
                    mesh.all_reduce_into(&values, &mut blocking_sum, Op::Sum)?;
                    let more = vec![
                        s.all_reduce_in_place(&mut in_place, Op::Max),
                        s.all_reduce_into(&values, &mut max, Op::Max),
                    ];
                    wait_all(requests)?;
                    assert_eq!(broadcast.wait()?, len);
                    wait_all(more).map(drop)
                })?;
                assert!(broadcast == data(len, 7), "rank {me}: broadcast of {len}");
                let expected_sum: Vec<f64> =
                    (0..count).map(|i| (1..=n).map(|r| (i * r) as f64).sum()).collect();
                assert_eq!(sum, expected_sum, "rank {me}: sum of {count}");
                assert_eq!(blocking_sum, expected_sum);
                let expected_max: Vec<f64> = (0..count).map(|i| (i * n) as f64).collect();
                assert_eq!((in_place, max), (expected_max.clone(), expected_max));
                for (rank, block) in gathered.chunks(count.max(1)).enumerate().take(n) {
                    assert!(block.iter().enumerate().all(|(i, &v)| v == (i * (rank + 1)) as f64));
                }
            }
            Ok(())
        });
    }
}
