//! Scatter work, compute, gather results: rank 0 scatters slices of a vector of numbers (uneven sizes, as
//! MPI's scatterv), every rank sums the squares of its slice, and rank 0 gathers the partial sums and
//! checks them against the sum it computes alone.
//!
//! Run: `mpirun -n 4 target/release/examples/scatter_gather`. Exits non-zero on a wrong result.

use lightbeam::mesh::{Mesh, MeshConfig, Rank};

const ROOT: Rank = Rank(0);
const NUMBERS: u64 = 1_000_003;

fn to_bytes(numbers: &[u64]) -> Vec<u8> {
    numbers.iter().flat_map(|x| x.to_le_bytes()).collect()
}

fn from_bytes(bytes: &[u8]) -> Vec<u64> {
    bytes.chunks_exact(8).map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes"))).collect()
}

fn sum_of_squares(numbers: &[u64]) -> u64 {
    numbers.iter().fold(0u64, |sum, &x| sum.wrapping_add(x.wrapping_mul(x)))
}

fn run(world: &lightbeam::mpi::topology::SimpleCommunicator) -> Result<(), Box<dyn std::error::Error>> {
    let mesh = Mesh::bootstrap(world, MeshConfig::default())?;
    let n = mesh.size();
    let mut mine = Vec::new();
    if mesh.rank() == ROOT {
        let numbers: Vec<u64> = (1..=NUMBERS).collect();
        // Uneven slices: rank r gets a share proportional to r + 1.
        let weights: usize = (1..=n).sum();
        let mut slices = Vec::with_capacity(n);
        let mut start = 0;
        for r in 0..n {
            let end = if r + 1 == n { numbers.len() } else { start + numbers.len() * (r + 1) / weights };
            slices.push(to_bytes(&numbers[start..end]));
            start = end;
        }
        let chunks: Vec<&[u8]> = slices.iter().map(Vec::as_slice).collect();
        mesh.scatter_into_root(&chunks, &mut mine)?;
    } else {
        mesh.scatter_into(ROOT, &mut mine)?;
    }
    let numbers = from_bytes(&mine);
    let partial = sum_of_squares(&numbers);
    println!("rank {}: {} numbers, partial sum of squares {partial}", mesh.rank().0, numbers.len());

    if mesh.rank() != ROOT {
        mesh.gather_into(ROOT, &partial.to_le_bytes())?;
        return Ok(());
    }
    let mut partials = Vec::new();
    mesh.gather_into_root(&partial.to_le_bytes(), &mut partials)?;
    let total = partials.iter().map(|p| from_bytes(p)[0]).fold(0u64, u64::wrapping_add);
    let expected = sum_of_squares(&(1..=NUMBERS).collect::<Vec<_>>());
    println!("rank 0: gathered sum {total}, expected {expected}");
    if total != expected {
        return Err("the gathered sum is wrong".into());
    }
    Ok(())
}

fn main() {
    let universe = lightbeam::mpi::initialize().expect("MPI initializes once");
    let world = universe.world();
    lightbeam::mesh::or_abort(&world, run(&world));
}
