//! A measurement (ignored by default): the processor time of one small message on the mesh's fast path,
//! without waiting and without the cache-line transfers between cores: two ranks of one process (the
//! same-node transport), rank 0 sends a batch of 1000 messages, then rank 1 takes them in (each already
//! there), taking turns 300 times. Prints the median nanoseconds per send and per receive. A measurement,
//! not a check: `cargo test --release --test small_message_costs -- --ignored --nocapture`.

use std::sync::Barrier;
use std::time::{Duration, Instant};

use lightbeam::mesh::{InProcess, Mesh, MeshConfig, Rank, Source, Tag};

const BATCH: usize = 1000;
const ROUNDS: usize = 300;

fn median(mut samples: Vec<f64>) -> f64 {
    samples.sort_by(f64::total_cmp);
    samples[samples.len() / 2]
}

#[test]
#[ignore = "a measurement: run with --ignored --nocapture"]
fn nanoseconds_per_small_send_and_receive() {
    let config = MeshConfig::default()
        .with_host("127.0.0.1")
        .with_timeout(Duration::from_secs(30))
        .with_abort_on_panic(false);
    for size in [8usize, 1024] {
        let (barrier, data) = (Barrier::new(2), vec![1u8; size]);
        std::thread::scope(|scope| {
            for boot in InProcess::ranks(2) {
                let (config, barrier, data) = (config.clone(), &barrier, &data);
                scope.spawn(move || {
                    let mesh = Mesh::bootstrap_with(&boot, config).unwrap();
                    let mut buffer = vec![0u8; size];
                    let mut took = Vec::with_capacity(ROUNDS);
                    for _ in 0..ROUNDS {
                        for turn in 0..2 {
                            barrier.wait();
                            if turn != mesh.rank().0 {
                                continue;
                            }
                            let started = Instant::now();
                            for _ in 0..BATCH {
                                match turn {
                                    0 => mesh.send(Rank(1), Tag(1), data).unwrap(),
                                    _ => drop(
                                        mesh.recv_into(Source::Rank(Rank(0)), Tag(1), &mut buffer).unwrap(),
                                    ),
                                }
                            }
                            took.push(started.elapsed().as_nanos() as f64 / BATCH as f64);
                        }
                    }
                    let what = if mesh.rank().0 == 0 { "send" } else { "receive" };
                    println!("{size} B: {what} {:.0} ns (median of {ROUNDS} batches)", median(took));
                });
            }
        });
    }
}
