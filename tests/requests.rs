//! Non-blocking calls under plain `cargo test`, every rank a thread of this process over the real
//! transports: requests of every call give what the blocking calls give; several are in flight at once
//! and complete in any order; receives match in posting order; a forgotten request writes nothing once
//! its scope returned; a request awaited as a future; 10,000 requests in flight; errors of lost and
//! out-of-step ranks reach every request.

use std::time::{Duration, Instant};

use lightbeam::mesh::{wait_all, wait_any, InProcess, Op, Progress, Rank, Source, Tag};
use lightbeam::Error;

mod common;

use common::{config, data, run, run_ok};

/// A ring exchange with the receive posted before the send, at sizes that are queued at once and that
/// go on the lane (from `EAGER_BELOW` up), the halo of a 1-D stencil.
#[test]
fn a_ring_exchange_of_requests_at_every_size() {
    for (n, progress) in [1, 2, 3, 4].into_iter().flat_map(|n| [(n, Progress::Lane), (n, Progress::OnWait)]) {
        run_ok(InProcess::ranks(n), &config().with_progress(progress), |mesh| {
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
    for (n, progress) in [1, 2, 3, 4].into_iter().flat_map(|n| [(n, Progress::Lane), (n, Progress::OnWait)]) {
        run_ok(InProcess::ranks(n), &config().with_progress(progress), |mesh| {
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

/// Receives posted one after another take one rank's messages of one tag in the order they were sent,
/// a blocking receive included; a receive of another tag posted first does not hold them up.
#[test]
fn receives_match_in_posting_order() {
    run_ok(InProcess::ranks(2), &config(), |mesh| {
        const COUNT: usize = 50;
        match mesh.rank() {
            Rank(0) => {
                for i in 0..=COUNT as u64 {
                    mesh.send(Rank(1), Tag(3), &[i])?;
                }
                mesh.send(Rank(1), Tag(4), &[99u64])
            }
            _ => {
                let mut received = vec![[0u64]; COUNT];
                let (last, other) = mesh.scope(|s| {
                    let other = s.recv(Rank(0), Tag(4)); // posted first, its message comes last
                    let requests: Vec<_> =
                        received.iter_mut().map(|slot| s.recv_into(Source::Any, Tag(3), slot)).collect();
                    // Posted after the 50 above: the 51st message.
                    let last = mesh.recv(Source::Rank(Rank(0)), Tag(3))?;
                    wait_all(requests)?;
                    Ok::<_, Error>((last, other.wait()?))
                })?;
                assert!(received.iter().enumerate().all(|(i, [v])| *v == i as u64), "{received:?}");
                assert_eq!(&*last.elements::<u64>()?, &[COUNT as u64]);
                assert_eq!(&*other.elements::<u64>()?, &[99]);
                Ok(())
            }
        }
    });
}

/// `wait_any` returns the request that completes first, whatever the order they were started in.
#[test]
fn wait_any_returns_the_first_to_complete() {
    run_ok(InProcess::ranks(4), &config(), |mesh| {
        let me = mesh.rank().0;
        if me != 0 {
            // Rank 3 sends first, rank 1 last.
            std::thread::sleep(Duration::from_millis(150 * (3 - me as u64)));
            return mesh.send(Rank(0), Tag(1), &[me as u32]);
        }
        let order = mesh.scope(|s| {
            let mut requests: Vec<_> = (1..4).map(|r| s.recv(Rank(r), Tag(1))).collect();
            let mut order = Vec::new();
            while let Some((_, message)) = wait_any(&mut requests) {
                order.push(message?.source().0);
            }
            Ok::<_, Error>(order)
        })?;
        assert_eq!(order, vec![3, 2, 1]);
        Ok(())
    });
}

/// A forgotten request never writes into its buffer once the scope returned: a forgotten receive's
/// buffer is never written (its message is taken by nobody, and the scope withdraws it), a forgotten
/// broadcast completes before the scope returns; afterwards the buffers are reused and stay as set.
#[test]
fn a_forgotten_request_writes_nothing_after_its_scope() {
    for progress in [Progress::Lane, Progress::OnWait] {
        forgotten_requests(progress);
    }
}

fn forgotten_requests(progress: Progress) {
    run_ok(InProcess::ranks(2), &config().with_progress(progress), |mesh| {
        let me = mesh.rank().0;
        let mut inbox = vec![0u8; 1 << 20];
        let mut broadcast = vec![if me == 0 { 9u8 } else { 0 }; 3 << 20];
        mesh.scope(|s| {
            if me == 1 {
                std::mem::forget(s.recv_into(Rank(0), Tag(5), &mut inbox[..]));
            }
            std::mem::forget(s.broadcast_into(Rank(0), &mut broadcast[..]));
        });
        assert!(broadcast.iter().all(|&b| b == 9), "the broadcast ended inside the scope");
        // The buffers are free again: reuse them while the forgotten receive's message arrives.
        inbox.fill(7);
        broadcast.fill(7);
        match me {
            0 => {
                mesh.send(Rank(1), Tag(5), &vec![1u8; 1 << 20])?;
                mesh.send(Rank(1), Tag(5), &[2u8; 16])?;
            }
            _ => {
                // The scope withdrew the forgotten receive: these take the two messages in order.
                assert_eq!(mesh.recv(Source::Rank(Rank(0)), Tag(5))?.data().len(), 1 << 20);
                assert_eq!(mesh.recv(Source::Rank(Rank(0)), Tag(5))?.data(), &[2u8; 16]);
            }
        }
        mesh.barrier()?;
        assert!(inbox.iter().chain(&broadcast).all(|&b| b == 7), "rank {me}: written after its scope");
        Ok(())
    });
}

/// Requests awaited as futures in an executor that knows nothing of Lightbeam, two at once.
#[test]
fn a_request_is_a_future_any_executor_can_await() {
    run_ok(InProcess::ranks(3), &config(), |mesh| {
        let me = mesh.rank().0;
        let values = [me as u64 + 1; 1000];
        let mut sum = [0u64; 1000];
        let message = mesh.scope(|s| {
            let from = Rank((me + 2) % 3);
            // The message comes after a while: the executor must be woken for it.
            let received = s.recv(from, Tag(8));
            let reduced = s.all_reduce_into(values, &mut sum, Op::Sum);
            std::thread::scope(|threads| {
                threads.spawn(|| {
                    std::thread::sleep(Duration::from_millis(50));
                    mesh.send(Rank((me + 1) % 3), Tag(8), &[me as u8])
                });
                futures_executor::block_on(async {
                    let message = received.await?;
                    reduced.await?;
                    Ok::<_, Error>(message)
                })
            })
        })?;
        assert_eq!(message.data(), &[((me + 2) % 3) as u8]);
        assert!(sum.iter().all(|&v| v == 6));
        Ok(())
    });
}

/// 10,000 receives in flight on one rank, and 10,000 barriers started at once: no thread per request
/// (the process's thread count is read from /proc), every result in order.
#[test]
fn ten_thousand_requests_in_flight() {
    const COUNT: usize = 10_000;
    let threads_before = threads();
    let peak = run_ok(InProcess::ranks(2), &config(), |mesh| {
        let mut peak = 0;
        match mesh.rank() {
            Rank(0) => {
                mesh.barrier()?;
                for i in 0..COUNT as u64 {
                    mesh.send(Rank(1), Tag(2), &[i])?;
                }
            }
            _ => {
                let mut inbox = vec![[0u64]; COUNT];
                mesh.scope(|s| {
                    let requests: Vec<_> =
                        inbox.iter_mut().map(|slot| s.recv_into(Rank(0), Tag(2), slot)).collect();
                    peak = threads();
                    mesh.barrier()?;
                    wait_all(requests).map(drop)
                })?;
                assert!(inbox.iter().enumerate().all(|(i, [v])| *v == i as u64));
            }
        }
        mesh.scope(|s| {
            let barriers: Vec<_> = (0..COUNT).map(|_| s.barrier()).collect();
            peak = peak.max(threads());
            wait_all(barriers).map(drop)
        })?;
        Ok(peak)
    });
    let peak = peak.into_iter().max().unwrap_or(0);
    // Two ranks' threads: each has its servers' threads and a lane per scope, not a thread per request.
    assert!(peak < threads_before + 32, "{peak} threads with {COUNT} requests in flight");
}

/// The threads of this process.
fn threads() -> usize {
    std::fs::read_dir("/proc/self/task").map(|tasks| tasks.count()).unwrap_or(0)
}

/// A rank that leaves while requests wait on it fails each of them, naming it, within the deadline;
/// non-blocking collectives that differ are caught as blocking ones are.
#[test]
fn lost_and_out_of_step_ranks_fail_every_request() {
    let config = config().with_timeout(Duration::from_secs(2));
    let started = Instant::now();
    let results = run(InProcess::ranks(3), &config, |mesh| {
        if mesh.rank() == Rank(2) {
            return Ok(Vec::new()); // leaves: its mesh closes with it
        }
        let mut buffer = vec![0u8; 1 << 20];
        let peer = Rank(1 - mesh.rank().0);
        Ok(mesh.scope(|s| {
            let from_two = s.recv(Rank(2), Tag(1));
            let gathered = s.all_reduce_in_place(&mut buffer[..], Op::BitOr);
            let from_peer = s.recv(peer, Tag(1));
            vec![from_two.wait().map(drop), gathered.wait(), from_peer.wait().map(drop)]
        }))
    });
    assert!(started.elapsed() < Duration::from_secs(12), "took {:?}", started.elapsed());
    for (rank, results) in results.into_iter().enumerate().take(2) {
        let results = results.expect("the scope returns its results");
        for result in results {
            let text = result.expect_err("every request fails").to_string();
            assert!(text.contains("rank 2"), "rank {rank}: {text}");
        }
    }
    let results = run(InProcess::ranks(3), &common::config(), |mesh| {
        let mut buffer = vec![1u8; 100];
        mesh.scope(|s| match mesh.rank() {
            Rank(2) => s.gather_into(Rank(0), &buffer).wait().and_then(|()| s.barrier().wait()),
            _ => s.broadcast_into(Rank(0), &mut buffer).wait().and_then(|_| s.barrier().wait()),
        })
    });
    for (rank, result) in results.into_iter().enumerate() {
        match result {
            Err(Error::CollectiveMismatch { this_call, peer_call, .. }) => {
                let calls = [this_call, peer_call].join(" / ");
                assert!(calls.contains("broadcast") && calls.contains("gather"), "rank {rank}: {calls}");
            }
            other => panic!("rank {rank}: expected a mismatch, got {other:?}"),
        }
    }
}

/// A reduction whose argument check panics: the collective fails before it begins.
struct PanicsInCheck;

impl lightbeam::mesh::Reduction<f64> for PanicsInCheck {
    fn combine(&self, _: &mut [f64], _: &[f64]) {}
    fn code(&self) -> u8 {
        0
    }
    fn check(&self, _: &'static str) -> lightbeam::Result<()> {
        panic!("a check that panics")
    }
}

/// What a review found hung or broke, each now an error or a result: a started collective that
/// panics before it begins (its turn passes on), collectives started from four threads sharing one
/// scope, a send started behind a collective (it does not wait for it), a blocking send after a
/// started one to the same rank and tag (received second), in both progress modes.
#[test]
fn panics_threads_and_mixed_calls_keep_the_order_and_never_hang() {
    let quiet = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {})); // the panics below are expected
    run_ok(InProcess::ranks(1), &config(), |mesh| {
        let (send, mut recv) = ([1.0f64], [0.0f64]);
        let failed = mesh.scope(|s| s.all_reduce_into(send, &mut recv, PanicsInCheck).wait());
        assert!(matches!(failed, Err(Error::Mesh(ref why)) if why.contains("panicked")), "{failed:?}");
        mesh.barrier() // its turn passed on
    });
    std::panic::set_hook(quiet);
    run_ok(InProcess::ranks(2), &config(), |mesh| {
        for _ in 0..20 {
            mesh.scope(|s| {
                std::thread::scope(|threads| {
                    let starters: Vec<_> = (0..4)
                        .map(|_| threads.spawn(|| (0..50).map(|_| s.barrier()).collect::<Vec<_>>()))
                        .collect();
                    wait_all(starters.into_iter().flat_map(|t| t.join().expect("a starter")))
                })
            })?;
        }
        Ok(())
    });
    for progress in [Progress::Lane, Progress::OnWait] {
        let lengths =
            run_ok(InProcess::ranks(2), &config().with_progress(progress), |mesh| match mesh.rank() {
                Rank(0) => {
                    let big = vec![1u8; 1 << 20];
                    mesh.scope(|s| {
                        let barrier = s.barrier();
                        s.send(Rank(1), Tag(1), [7u8]).wait()?; // not behind the barrier
                        let started = s.send(Rank(1), Tag(5), &big);
                        mesh.send(Rank(1), Tag(5), &[2u8])?; // after the started send
                        started.wait()?;
                        barrier.wait()
                    })?;
                    Ok(Vec::new())
                }
                _ => {
                    mesh.recv(Source::Rank(Rank(0)), Tag(1))?;
                    mesh.barrier()?;
                    let first = mesh.recv(Source::Rank(Rank(0)), Tag(5))?.data().len();
                    Ok(vec![first, mesh.recv(Source::Rank(Rank(0)), Tag(5))?.data().len()])
                }
            });
        assert_eq!(lengths[1], vec![1 << 20, 1], "{progress:?}");
    }
}

/// Receives from a rank that sends nothing fail at their deadline however they are waited for (a
/// wait, `wait_any`, `.await`, `wait_all`), and sends queued to a rank that takes nothing fail within
/// one deadline, not one each; a future in a scope that runs on wait is woken by its message.
#[test]
fn every_way_to_wait_ends_at_the_deadline() {
    let timeout = Duration::from_secs(1);
    let results = run(InProcess::ranks(2), &config().with_timeout(timeout), |mesh| {
        if mesh.rank() == Rank(1) {
            // Silent, and takes nothing in, until rank 0 is done.
            std::thread::sleep(timeout * 6);
            return Ok(Vec::new());
        }
        let big = vec![0u8; 1 << 20];
        let started = Instant::now();
        let mut ends = Vec::new();
        mesh.scope(|s| {
            let mut any = vec![s.recv(Rank(1), Tag(1))];
            let (_, first) = wait_any(&mut any).expect("one request");
            ends.push((first.map(drop), started.elapsed()));
            ends.push((futures_executor::block_on(s.recv(Rank(1), Tag(1))).map(drop), started.elapsed()));
            ends.push((wait_all((0..4).map(|_| s.recv(Rank(1), Tag(1)))).map(drop), started.elapsed()));
            let sends: Vec<_> = (0..4).map(|_| s.send(Rank(1), Tag(1), &big)).collect();
            for send in sends {
                ends.push((send.wait(), started.elapsed()));
            }
        });
        Ok(ends)
    });
    let ends = results[0].as_ref().expect("rank 0 reports its waits");
    for (step, (result, at)) in ends.iter().enumerate() {
        assert!(matches!(result, Err(Error::Timeout { .. })), "wait {step}: {result:?}");
        // Three waits of receives, then the sends: each at about one deadline after the previous.
        let bound = timeout * (step.min(3) as u32 + 2);
        assert!(*at < bound, "wait {step} ended {at:?} after the start, past {bound:?}");
    }
    assert!(results[1].is_ok(), "{:?}", results[1]);
    let late =
        run_ok(InProcess::ranks(2), &config().with_progress(Progress::OnWait), |mesh| match mesh.rank() {
            Rank(0) => {
                mesh.scope(|s| futures_executor::block_on(s.recv(Rank(1), Tag(1)))).map(|m| m.data().to_vec())
            }
            _ => {
                std::thread::sleep(Duration::from_millis(100));
                mesh.send(Rank(0), Tag(1), &[9u8]).map(|()| Vec::new())
            }
        });
    assert_eq!(late[0], vec![9]);
}

/// A receive dropped unwaited gives back the message it took: the next receive gets it, whether the
/// message had been taken in before the receive was posted or not.
#[test]
fn a_dropped_receive_gives_its_message_back() {
    for taken_in_first in [false, true] {
        let next = run_ok(InProcess::ranks(2), &config(), |mesh| match mesh.rank() {
            Rank(0) => {
                for (tag, byte) in [(5, 1u8), (5, 2), (6, 0)] {
                    mesh.send(Rank(1), Tag(tag), &[byte])?;
                }
                Ok(0)
            }
            _ => {
                if taken_in_first {
                    mesh.recv(Source::Rank(Rank(0)), Tag(6))?; // takes the two of tag 5 in first
                }
                mesh.scope(|s| drop(s.recv(Rank(0), Tag(5))));
                Ok(mesh.recv(Source::Rank(Rank(0)), Tag(5))?.data()[0])
            }
        });
        assert_eq!(next[1], 1, "taken in first: {taken_in_first}");
    }
}
