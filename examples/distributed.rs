//! The guide's distributed example on the mesh: rank 0 sends a distinct message to every other rank, and
//! each checks what it got.
//!
//! Run: `mpirun -n 4 target/release/examples/distributed` (as root add `--allow-run-as-root`; more ranks
//! than cores need `--oversubscribe`).

use lightbeam::mesh::{Mesh, MeshConfig, Rank, Source, Tag};
use lightbeam::mpi::traits::*;

const GREETING: Tag = Tag(1);

fn run(world: &lightbeam::mpi::topology::SimpleCommunicator) -> Result<(), Box<dyn std::error::Error>> {
    let mesh = Mesh::bootstrap(world, MeshConfig::default())?;
    let expected = |rank: usize| format!("Message to rank {rank}");
    if mesh.rank() == Rank(0) {
        println!("rank 0: mesh of {} ranks, receiving at {}", mesh.size(), mesh.endpoint(Rank(0))?);
        for peer in 1..mesh.size() {
            mesh.send(Rank(peer), GREETING, expected(peer).as_bytes())?;
        }
    } else {
        let message = mesh.recv(Source::Rank(Rank(0)), GREETING)?;
        let text = String::from_utf8_lossy(message.data());
        println!("rank {} at {} received: {text}", mesh.rank().0, mesh.endpoint(mesh.rank())?);
        if text != expected(mesh.rank().0) {
            return Err(format!("rank {} got the wrong message", mesh.rank().0).into());
        }
    }
    world.barrier();
    Ok(())
}

fn main() {
    let universe = lightbeam::mpi::initialize().expect("MPI initializes once");
    let world = universe.world();
    lightbeam::mesh::or_abort(&world, run(&world));
}
