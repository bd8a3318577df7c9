//! A distributed shuffle with all-to-all: every rank draws keys, sends each key to the rank that owns it
//! (key % ranks), and checks that it received exactly the keys it owns, as many as were sent to it.
//!
//! Run: `mpirun -n 4 target/release/examples/all_to_all`. Exits non-zero on a wrong result.

#[path = "common/data.rs"]
mod data;

use data::pattern;
use lightbeam::mesh::{Mesh, MeshConfig};

const KEYS_PER_RANK: usize = 250_000;

fn keys_of(rank: usize) -> Vec<u32> {
    pattern(KEYS_PER_RANK * 4, rank as u64 + 1)
        .chunks_exact(4)
        .map(|b| u32::from_le_bytes(b.try_into().expect("4 bytes")))
        .collect()
}

fn run(world: &lightbeam::mpi::topology::SimpleCommunicator) -> Result<(), Box<dyn std::error::Error>> {
    let mesh = Mesh::bootstrap(world, MeshConfig::default())?;
    let (me, n) = (mesh.rank().0, mesh.size());
    let owner = |key: u32| key as usize % n;

    let mut outgoing = vec![Vec::new(); n];
    for key in keys_of(me) {
        outgoing[owner(key)].extend_from_slice(&key.to_le_bytes());
    }
    let chunks: Vec<&[u8]> = outgoing.iter().map(Vec::as_slice).collect();
    let mut incoming = Vec::new();
    mesh.all_to_all_into(&chunks, &mut incoming)?;

    let received: Vec<u32> = incoming
        .concat()
        .chunks_exact(4)
        .map(|b| u32::from_le_bytes(b.try_into().expect("4 bytes")))
        .collect();
    // Recompute what every rank should have sent here.
    let expected: usize = (0..n).map(|r| keys_of(r).into_iter().filter(|&k| owner(k) == me).count()).sum();
    let all_mine = received.iter().all(|&k| owner(k) == me);
    println!("rank {me}: received {} keys (expected {expected}), all owned here: {all_mine}", received.len());
    if !all_mine || received.len() != expected {
        return Err(format!("rank {me} received the wrong keys").into());
    }
    Ok(())
}

fn main() {
    let universe = lightbeam::mpi::initialize().expect("MPI initializes once");
    let world = universe.world();
    lightbeam::mesh::or_abort(&world, run(&world));
}
