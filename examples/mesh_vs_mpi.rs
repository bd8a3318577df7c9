//! The mesh beside MPI in one run: bootstrap time, point-to-point one-way time of 8 B and 1 MiB (rank 0 and
//! 1 ping-pong), and broadcast, scatter and all-to-all against rsmpi's own collectives.
//!
//! Run: `mpirun -n 4 target/release/examples/mesh_vs_mpi` (add `--mca btl tcp,self` to make MPI use TCP,
//! the transport Lightbeam uses). Times are medians over repetitions of the slowest rank's time.
//! With `--sweep-broadcast` it instead times the binomial tree against the pipelined chain from 16 KiB to
//! 16 MiB, which is how the default switch-over size was chosen.

use std::time::Instant;

use lightbeam::mesh::{Mesh, MeshConfig, Rank, Source, Tag};
use mpi::collective::SystemOperation;
use mpi::point_to_point::Source as _;
use mpi::topology::SimpleCommunicator;
use mpi::traits::*;

const REPEATS: usize = 9;

fn median(mut samples: Vec<f64>) -> f64 {
    samples.sort_by(f64::total_cmp);
    samples[samples.len() / 2]
}

/// Median over repetitions of the slowest rank's time (seconds) for `op`, started together after a barrier.
fn time(world: &SimpleCommunicator, repeats: usize, mut op: impl FnMut()) -> f64 {
    op(); // warm-up: connections, buffers
    let samples = (0..repeats)
        .map(|_| {
            world.barrier();
            let started = Instant::now();
            op();
            let mine = started.elapsed().as_secs_f64();
            let mut slowest = 0.0;
            world.all_reduce_into(&mine, &mut slowest, SystemOperation::max());
            slowest
        })
        .collect();
    median(samples)
}

fn report(world: &SimpleCommunicator, what: &str, lightbeam: f64, mpi: f64) {
    if world.rank() == 0 {
        println!("{what:<34} {:>10.1} us {:>10.1} us {:>8.2}", lightbeam * 1e6, mpi * 1e6, lightbeam / mpi);
    }
}

fn main() {
    let universe = mpi::initialize().expect("MPI initializes once");
    let world = universe.world();
    let n = world.size() as usize;
    let me = world.rank() as usize;
    if std::env::args().any(|a| a == "--sweep-broadcast") {
        sweep_broadcast(&world);
        return;
    }
    let bootstrap = time(&world, 5, || drop(Mesh::bootstrap(&world, MeshConfig::default()).unwrap()));
    let mesh = Mesh::bootstrap(&world, MeshConfig::default()).unwrap();
    if me == 0 {
        println!("{n} ranks; bootstrap {:.1} ms (median of 5)", bootstrap * 1e3);
        println!("{:<34} {:>13} {:>13} {:>8}", "operation", "lightbeam", "mpi", "lb/mpi");
    }

    if n >= 2 {
        for size in [8usize, 1 << 20] {
            let data = vec![7u8; size];
            let mut buffer = vec![0u8; size];
            let lb = time(&world, REPEATS * 20, || match me {
                0 => {
                    mesh.send(Rank(1), Tag(1), &data).unwrap();
                    mesh.recv_into(Source::Rank(Rank(1)), Tag(1), &mut buffer).unwrap();
                }
                1 => {
                    mesh.recv_into(Source::Rank(Rank(0)), Tag(1), &mut buffer).unwrap();
                    mesh.send(Rank(0), Tag(1), &data).unwrap();
                }
                _ => {}
            });
            let mpi = time(&world, REPEATS * 20, || match me {
                0 => {
                    world.process_at_rank(1).send(&data[..]);
                    world.process_at_rank(1).receive_into(&mut buffer[..]);
                }
                1 => {
                    world.process_at_rank(0).receive_into(&mut buffer[..]);
                    world.process_at_rank(0).send(&data[..]);
                }
                _ => {}
            });
            report(&world, &format!("one-way {size} B (ping-pong / 2)"), lb / 2.0, mpi / 2.0);
        }
    }

    for size in [1usize << 20, 64 << 20] {
        let mut ours = vec![1u8; size];
        let mut theirs = vec![1u8; size];
        let lb = time(&world, REPEATS, || {
            mesh.broadcast_into(Rank(0), &mut ours).unwrap();
        });
        let mpi = time(&world, REPEATS, || world.process_at_rank(0).broadcast_into(&mut theirs[..]));
        report(&world, &format!("broadcast {} MiB", size >> 20), lb, mpi);
    }

    let chunk = 1 << 20;
    let all = vec![3u8; chunk * n];
    let chunks: Vec<&[u8]> = all.chunks(chunk).collect();
    let (mut ours, mut theirs) = (Vec::new(), vec![0u8; chunk]);
    let lb = time(&world, REPEATS, || {
        if me == 0 {
            mesh.scatter_into_root(&chunks, &mut ours).unwrap();
        } else {
            mesh.scatter_into(Rank(0), &mut ours).unwrap();
        }
    });
    let mpi = time(&world, REPEATS, || {
        let root = world.process_at_rank(0);
        if me == 0 {
            root.scatter_into_root(&all[..], &mut theirs[..]);
        } else {
            root.scatter_into(&mut theirs[..]);
        }
    });
    report(&world, "scatter 1 MiB per rank", lb, mpi);

    let (mut ours, mut theirs) = (Vec::new(), vec![0u8; chunk * n]);
    let lb = time(&world, REPEATS, || {
        mesh.all_to_all_into(&chunks, &mut ours).unwrap();
    });
    let mpi = time(&world, REPEATS, || world.all_to_all_into(&all[..], &mut theirs[..]));
    report(&world, "all-to-all 1 MiB per pair", lb, mpi);
}

/// Times each broadcast algorithm alone at sizes around the switch-over.
fn sweep_broadcast(world: &SimpleCommunicator) {
    let with_threshold = |pipeline_threshold| {
        Mesh::bootstrap(world, MeshConfig { pipeline_threshold, ..MeshConfig::default() }).unwrap()
    };
    let (tree, chain) = (with_threshold(usize::MAX), with_threshold(0));
    if world.rank() == 0 {
        println!("{} ranks: broadcast time by algorithm", world.size());
        println!("{:>10} {:>16} {:>18} {:>8}", "size", "binomial tree", "pipelined chain", "chain/tree");
    }
    for size in (14..=24).map(|bits| 1usize << bits) {
        let mut buffer = vec![1u8; size];
        let t = time(world, REPEATS, || {
            tree.broadcast_into(Rank(0), &mut buffer).unwrap();
        });
        let c = time(world, REPEATS, || {
            chain.broadcast_into(Rank(0), &mut buffer).unwrap();
        });
        if world.rank() == 0 {
            println!("{:>8}Ki {:>13.1} us {:>15.1} us {:>10.2}", size >> 10, t * 1e6, c * 1e6, c / t);
        }
    }
}
