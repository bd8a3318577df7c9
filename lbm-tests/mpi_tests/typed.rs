//! The typed collectives under real `mpirun`, each checked against rsmpi's computation of the same
//! thing: barrier; all-reduce (into and in place) by every built-in operation and by a user's function;
//! reduce to roots 0 and n-1; reduce-scatter; all-gather and its varcount form; broadcast and scatter
//! into typed buffers; and the mesh split as MPI splits the communicator, with a split of the split. At
//! 8 B, about 24 KiB and about 1 MiB per rank: on one node the rounds, the queues and the shares read in
//! place; across nodes the rounds, the leaders and (at 1 MiB, with as many ranks on every node) the
//! shares by node.
//!
//! Integer results (sums, products, min, max, bitwise) must equal MPI's exactly, and so must f64 min and
//! max and everything moved without arithmetic. An f64 sum must equal, bit for bit, the fold in the
//! library's documented fixed order computed here (each node's ranks in increasing order, then the
//! nodes' results in node order), hold the same bits on every rank (all-gathered with MPI), and lie
//! within the rounding bound of MPI's own sum, whose order MPI leaves open.
//!
//! Run as `mpirun -n N lbm-test-typed typed`.

#[path = "harness.rs"]
mod harness;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use harness::{ensure, mesh};
use lightbeam::bytemuck::{self, Pod, Zeroable};
use lightbeam::mesh::{Mesh, Node, Op, Rank};
use lightbeam::Error;
use mpi::collective::SystemOperation;
use mpi::datatype::{Partition, PartitionMut};
use mpi::topology::SimpleCommunicator;
use mpi::traits::*;

fn main() {
    harness::main_with(&[("typed", typed)]);
}

type Outcome = Result<(), String>;

fn text(e: Error) -> String {
    e.to_string()
}

/// Bytes per rank: one 8-byte element (the queues), and about 24 KiB and 1 MiB (read in place on one
/// node); 8-byte elements come in odd counts, so that the ranks' shares of a vector differ in length.
const SIZES: [usize; 3] = [8, (24 << 10) + 8, (1 << 20) + 8];

fn typed(world: &SimpleCommunicator) -> Outcome {
    let mesh = mesh(world, Duration::from_secs(120))?;
    let n = mesh.size();
    barrier(world, &mesh).map_err(|e| format!("barrier: {e}"))?;
    for bytes in SIZES {
        let at = |what: &'static str| move |e: String| format!("{what} at {bytes} B per rank: {e}");
        integer_all_reduce(world, &mesh, bytes).map_err(at("integer all_reduce"))?;
        float_all_reduce(world, &mesh, bytes).map_err(at("f64 all_reduce"))?;
        user_function(world, &mesh, bytes).map_err(at("all_reduce by a user's function"))?;
        reduce_scatter(world, &mesh, bytes).map_err(at("reduce_scatter"))?;
        all_gather(world, &mesh, bytes).map_err(at("all_gather"))?;
        all_gather_varcount(world, &mesh, bytes).map_err(at("all_gather_varcount"))?;
        let roots = if n > 1 { vec![0, n - 1] } else { vec![0] };
        for root in roots {
            let at = |what: &'static str| move |e: String| format!("{what} at {bytes} B, root {root}: {e}");
            reduce(world, &mesh, bytes, root).map_err(at("reduce"))?;
            broadcast(world, &mesh, bytes, root).map_err(at("typed broadcast"))?;
            scatter(world, &mesh, bytes, root).map_err(at("typed scatter"))?;
        }
        if mesh.rank() == Rank(0) {
            let nodes = mesh.node_count();
            println!(
                "rank 0: every typed collective agrees with MPI at {bytes} B on {n} ranks, {nodes} nodes"
            );
        }
    }
    split(world, &mesh).map_err(|e| format!("split: {e}"))?;
    bad_input(&mesh).map_err(|e| format!("bad input: {e}"))?;
    world.barrier();
    Ok(())
}

/// The mesh split as MPI splits the communicator (colour: rank parity; key: the rank reversed), and
/// the split again into halves of that: each mesh's ranks in the order MPI gives, and its all-reduce,
/// all-gather and barrier MPI's results on the communicator of the same ranks.
fn split(world: &SimpleCommunicator, mesh: &Mesh) -> Outcome {
    use mpi::topology::Color;
    let me = mesh.rank().0;
    let (colour, key) = ((me % 2) as u32, -(me as i64));
    let ours = mesh.split(Some(colour), key).map_err(text)?.ok_or("no mesh for a colour")?;
    let theirs = world
        .split_by_color_with_key(Color::with_value(colour as i32), key as i32)
        .ok_or("no communicator for a colour")?;
    ensure(ours.rank().0 == theirs.rank() as usize && ours.size() == theirs.size() as usize, || {
        format!(
            "rank {} of {} where MPI says {} of {}",
            ours.rank(),
            ours.size(),
            theirs.rank(),
            theirs.size()
        )
    })?;
    for bytes in SIZES {
        let send = ints(me, bytes / 8, 11);
        let (mut got, mut want) = (vec![0i64; send.len()], vec![0i64; send.len()]);
        ours.all_reduce_into(&send, &mut got, Op::Sum).map_err(text)?;
        theirs.all_reduce_into(&send[..], &mut want[..], SystemOperation::sum());
        ensure(got == want, || format!("all_reduce at {bytes} B differs from MPI's on the split"))?;
        let mut gathered = vec![0u64; ours.size()];
        ours.all_gather_into(&[me as u64], &mut gathered).map_err(text)?;
        let mut expected = vec![0u64; ours.size()];
        theirs.all_gather_into(&(me as u64), &mut expected[..]);
        ensure(gathered == expected, || format!("all_gather of ranks {gathered:?}, MPI's {expected:?}"))?;
    }
    ours.barrier().map_err(text)?;
    // A split of the split: its halves (a rank alone in a split of 1).
    let half = ours.split(Some((ours.rank().0 * 2 / ours.size()) as u32), 0).map_err(text)?;
    let half = half.ok_or("no half")?;
    let mut total = [0u64];
    half.all_reduce_into(&[1u64], &mut total, Op::Sum).map_err(text)?;
    ensure(total[0] as usize == half.size(), || format!("{} ranks counted {total:?}", half.size()))?;
    world.barrier();
    Ok(())
}

/// A well-mixed 64-bit number for element `i` of rank `rank`'s data of kind `seed`.
fn mix(rank: usize, i: usize, seed: u64) -> u64 {
    let mut x = (rank as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15)
        ^ (i as u64).wrapping_mul(0xBF58_476D_1CE4_E5B9)
        ^ seed.wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^= x >> 31;
    x = x.wrapping_mul(0xD6E8_FEB8_6659_FD93);
    x ^ (x >> 32)
}

/// Signed integers up to 2^43 in size: sums of any number of ranks here cannot overflow.
fn ints(rank: usize, count: usize, seed: u64) -> Vec<i64> {
    (0..count).map(|i| mix(rank, i, seed) as i64 >> 20).collect()
}

/// Factors in -2..=3: products of 16 ranks stay far inside i64 (C's signed overflow, which MPI's
/// product would meet, is undefined).
fn factors(rank: usize, count: usize) -> Vec<i64> {
    (0..count).map(|i| (mix(rank, i, 7) % 6) as i64 - 2).collect()
}

fn unsigned<T: TryFrom<u64>>(rank: usize, count: usize, seed: u64, bits: u32) -> Vec<T> {
    let value = |i| T::try_from(mix(rank, i, seed) >> (64 - bits)).ok().expect("fits");
    (0..count).map(value).collect()
}

/// Values whose sum depends on the order of the additions: large ones that cancel and small ones that
/// vanish beside them unless they meet first.
fn reals(rank: usize, count: usize) -> Vec<f64> {
    (0..count)
        .map(|i| match (rank + i) % 4 {
            0 => 1e16 * (1.0 + i as f64 * 1e-3),
            1 => 1.0 + rank as f64 * 0.25 + (mix(rank, i, 9) >> 40) as f64 * 1e-9,
            2 => -1e16 * (1.0 + i as f64 * 1e-3),
            _ => 3.0e-3 * (i as f64 + 1.0),
        })
        .collect()
}

/// The sum of every rank's `vector(rank)` in the library's fixed order: each node's ranks in increasing
/// order, then the nodes' results in node order (nodes numbered by their lowest rank).
fn fixed_order_sum(mesh: &Mesh, vector: impl Fn(usize) -> Vec<f64>) -> Result<Vec<f64>, String> {
    let fold = |vectors: &mut dyn Iterator<Item = Vec<f64>>| {
        let mut acc = vectors.next()?;
        for next in vectors {
            acc.iter_mut().zip(next).for_each(|(a, b)| *a += b);
        }
        Some(acc)
    };
    let mut per_node = Vec::new();
    for node in 0..mesh.node_count() {
        let ranks = mesh.ranks_on_node(Node(node)).map_err(text)?;
        per_node.push(fold(&mut ranks.iter().map(|r| vector(r.0))).ok_or("a node without ranks")?);
    }
    fold(&mut per_node.into_iter()).ok_or_else(|| "no nodes".into())
}

fn bits(values: &[f64]) -> Vec<u64> {
    values.iter().map(|x| x.to_bits()).collect()
}

/// `got` is `expected` bit for bit.
fn same_bits(got: &[f64], expected: &[f64], what: &str) -> Outcome {
    let first = (0..got.len().max(expected.len()))
        .find(|&i| got.get(i).map(|x| x.to_bits()) != expected.get(i).map(|x| x.to_bits()));
    ensure(first.is_none(), || {
        let i = first.unwrap_or(0);
        format!("{what}: element {i} is {:?}, the fixed-order fold gives {:?}", got.get(i), expected.get(i))
    })
}

/// Every rank holds the same bits in `result`: all-gathered with MPI and compared.
fn same_on_every_rank(world: &SimpleCommunicator, result: &[f64], what: &str) -> Outcome {
    let mine = bits(result);
    let mut all = vec![0u64; mine.len() * world.size() as usize];
    world.all_gather_into(&mine[..], &mut all[..]);
    let differ: Vec<usize> =
        (0..world.size() as usize).filter(|&r| all[r * mine.len()..][..mine.len()] != mine[..]).collect();
    ensure(differ.is_empty(), || format!("{what}: ranks {differ:?} hold other bits than this rank"))
}

/// `ours` (every rank's `send` summed) lies within the rounding bound of MPI's sum of the same: any two
/// orders of n additions differ by at most 2 (n - 1) eps times the sum of the magnitudes.
fn near_mpi_sum(world: &SimpleCommunicator, mesh: &Mesh, send: &[f64], ours: &[f64]) -> Outcome {
    let mut theirs = vec![0.0; send.len()];
    world.all_reduce_into(send, &mut theirs[..], SystemOperation::sum());
    let n = mesh.size();
    let magnitudes: Vec<Vec<f64>> = (0..n).map(|r| reals(r, send.len())).collect();
    for (i, (a, b)) in ours.iter().zip(&theirs).enumerate() {
        let scale: f64 = magnitudes.iter().map(|v| v[i].abs()).sum();
        let bound = 2.0 * (n - 1) as f64 * f64::EPSILON * scale;
        ensure((a - b).abs() <= bound, || {
            format!("element {i}: {a:e} against MPI's {b:e}, beyond {bound:e}")
        })?;
    }
    Ok(())
}

/// Every rank leaves a barrier after the last one entered it (one kernel's clock: the hosts of the
/// multi-host harness share it), with a different rank late each round; then 100 back to back.
fn barrier(world: &SimpleCommunicator, mesh: &Mesh) -> Outcome {
    let (me, n) = (mesh.rank().0, mesh.size());
    let now = || SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_nanos() as u64;
    for late in [n - 1, 0, n / 2] {
        world.barrier();
        if me == late {
            std::thread::sleep(Duration::from_millis(100));
        }
        let mut entered = now();
        mesh.barrier().map_err(text)?;
        let left = now();
        world.process_at_rank(late as i32).broadcast_into(&mut entered);
        ensure(left >= entered, || {
            format!("rank {me} left {} us before rank {late} entered", (entered - left) / 1000)
        })?;
    }
    (0..100).try_for_each(|_| mesh.barrier()).map_err(text)
}

/// Sums, min, max and products of i64 (into and in place), sums of u8, and the bitwise operations on
/// u32: each exactly MPI_Allreduce's (u8 sums that wrap: exactly the wrapping fold's).
fn integer_all_reduce(world: &SimpleCommunicator, mesh: &Mesh, bytes: usize) -> Outcome {
    let me = mesh.rank().0;
    let count = bytes / 8;
    let by_op = [
        (Op::Sum, SystemOperation::sum(), ints(me, count, 1)),
        (Op::Min, SystemOperation::min(), ints(me, count, 2)),
        (Op::Max, SystemOperation::max(), ints(me, count, 3)),
        (Op::Product, SystemOperation::product(), factors(me, count)),
    ];
    for (op, mpi_op, send) in by_op {
        let mut ours = vec![0i64; count];
        mesh.all_reduce_into(&send, &mut ours, op).map_err(text)?;
        let mut theirs = vec![0i64; count];
        world.all_reduce_into(&send[..], &mut theirs[..], mpi_op);
        ensure(ours == theirs, || format!("{op} of i64 differs from MPI_Allreduce"))?;
        let mut in_place = send.clone();
        mesh.all_reduce_in_place(&mut in_place, op).map_err(text)?;
        ensure(in_place == theirs, || format!("{op} of i64 in place differs from MPI_Allreduce"))?;
    }
    // u8 sums below 256 equal MPI's; sums that wrap are checked against a local fold instead: OpenMPI's
    // vectorized sum of 8- and 16-bit integers saturates (open-mpi/ompi#8045, 255 where C's sum wraps).
    for (bits, what) in [(4, "MPI_Allreduce's"), (8, "the wrapping fold's")] {
        let send: Vec<u8> = unsigned(me, bytes, 4, bits);
        let mut ours = vec![0u8; bytes];
        mesh.all_reduce_into(&send, &mut ours, Op::Sum).map_err(text)?;
        let mut theirs = vec![0u8; bytes];
        match bits {
            4 => world.all_reduce_into(&send[..], &mut theirs[..], SystemOperation::sum()),
            _ => {
                for rank in 0..mesh.size() {
                    let next: Vec<u8> = unsigned(rank, bytes, 4, bits);
                    theirs.iter_mut().zip(next).for_each(|(a, b)| *a = a.wrapping_add(b));
                }
            }
        }
        ensure(ours == theirs, || format!("sum of u8 of {bits} bits differs from {what}"))?;
    }
    let count = bytes / 4;
    let by_op = [
        (Op::BitAnd, SystemOperation::bitwise_and()),
        (Op::BitOr, SystemOperation::bitwise_or()),
        (Op::BitXor, SystemOperation::bitwise_xor()),
    ];
    for (op, mpi_op) in by_op {
        let send: Vec<u32> = unsigned(me, count, 5, 32);
        let mut ours = vec![0u32; count];
        mesh.all_reduce_into(&send, &mut ours, op).map_err(text)?;
        let mut theirs = vec![0u32; count];
        world.all_reduce_into(&send[..], &mut theirs[..], mpi_op);
        ensure(ours == theirs, || format!("{op} of u32 differs from MPI_Allreduce"))?;
    }
    Ok(())
}

/// f64 sums, into and in place: the fixed-order fold's bits on every rank, near MPI's sum; f64 min and
/// max: MPI's bits.
fn float_all_reduce(world: &SimpleCommunicator, mesh: &Mesh, bytes: usize) -> Outcome {
    let (me, count) = (mesh.rank().0, bytes / 8);
    let send = reals(me, count);
    let expected = fixed_order_sum(mesh, |r| reals(r, count))?;
    let mut ours = vec![0.0; count];
    mesh.all_reduce_into(&send, &mut ours, Op::Sum).map_err(text)?;
    same_bits(&ours, &expected, "sum")?;
    same_on_every_rank(world, &ours, "sum")?;
    near_mpi_sum(world, mesh, &send, &ours)?;
    let mut in_place = send.clone();
    mesh.all_reduce_in_place(&mut in_place, Op::Sum).map_err(text)?;
    same_bits(&in_place, &expected, "sum in place")?;
    same_on_every_rank(world, &in_place, "sum in place")?;
    for (op, mpi_op) in [(Op::Min, SystemOperation::min()), (Op::Max, SystemOperation::max())] {
        let mut ours = vec![0.0; count];
        mesh.all_reduce_into(&send, &mut ours, op).map_err(text)?;
        let mut theirs = vec![0.0; count];
        world.all_reduce_into(&send[..], &mut theirs[..], mpi_op);
        ensure(bits(&ours) == bits(&theirs), || format!("{op} of f64 differs from MPI_Allreduce"))?;
    }
    Ok(())
}

/// A user's element type: a value and the rank that holds it.
#[derive(Clone, Copy, Debug, PartialEq, Pod, Zeroable)]
#[bytemuck(crate = "lightbeam::bytemuck")]
#[repr(C)]
struct MinLoc {
    value: f64,
    rank: u64,
}

/// All-reduce by a user's function (MPI_MINLOC's job): the value is MPI's min of the values, the rank
/// the one that holds it (each element's values differ between ranks, so the fold order cannot matter).
fn user_function(world: &SimpleCommunicator, mesh: &Mesh, bytes: usize) -> Outcome {
    let (me, n) = (mesh.rank().0, mesh.size());
    let count = bytes.div_ceil(std::mem::size_of::<MinLoc>());
    let value = |r: usize, i: usize| ((r + i) % n) as f64 * 0.5 - (i % 7) as f64;
    let send: Vec<MinLoc> = (0..count).map(|i| MinLoc { value: value(me, i), rank: me as u64 }).collect();
    let min_loc = |acc: &mut [MinLoc], next: &[MinLoc]| {
        for (a, b) in acc.iter_mut().zip(next) {
            if b.value < a.value {
                *a = *b;
            }
        }
    };
    let mut ours = vec![MinLoc::zeroed(); count];
    mesh.all_reduce_into(&send, &mut ours, min_loc).map_err(text)?;
    let values: Vec<f64> = send.iter().map(|m| m.value).collect();
    let mut least = vec![0.0f64; count];
    world.all_reduce_into(&values[..], &mut least[..], SystemOperation::min());
    for (i, got) in ours.iter().enumerate() {
        let holder = (n - i % n) % n;
        ensure(got.value.to_bits() == least[i].to_bits() && got.rank == holder as u64, || {
            format!("element {i}: {got:?}, MPI's min is {} held by rank {holder}", least[i])
        })?;
    }
    Ok(())
}

/// A reduce of i64 sums (MPI_Reduce's) and of f64 sums (the fixed-order fold's bits) to `root`.
fn reduce(world: &SimpleCommunicator, mesh: &Mesh, bytes: usize, root: usize) -> Outcome {
    let (me, count) = (mesh.rank().0, bytes / 8);
    let send = ints(me, count, 10 + root as u64);
    let reals_sent = reals(me, count);
    let process = world.process_at_rank(root as i32);
    if me != root {
        mesh.reduce_into(Rank(root), &send, Op::Sum).map_err(text)?;
        process.reduce_into(&send[..], SystemOperation::sum());
        return mesh.reduce_into(Rank(root), &reals_sent, Op::Sum).map_err(text);
    }
    let mut ours = vec![0i64; count];
    mesh.reduce_into_root(&send, &mut ours, Op::Sum).map_err(text)?;
    let mut theirs = vec![0i64; count];
    process.reduce_into_root(&send[..], &mut theirs[..], SystemOperation::sum());
    ensure(ours == theirs, || "sum of i64 differs from MPI_Reduce".into())?;
    let mut sum = vec![0.0; count];
    mesh.reduce_into_root(&reals_sent, &mut sum, Op::Sum).map_err(text)?;
    same_bits(&sum, &fixed_order_sum(mesh, |r| reals(r, count))?, "sum of f64")
}

/// A reduce-scatter with blocks of `bytes`: i64 sums are MPI_Reduce_scatter_block's, f64 sums this
/// rank's block of the fixed-order fold.
fn reduce_scatter(world: &SimpleCommunicator, mesh: &Mesh, bytes: usize) -> Outcome {
    let (me, n, block) = (mesh.rank().0, mesh.size(), bytes / 8);
    let send = ints(me, n * block, 30);
    let mut ours = vec![0i64; block];
    mesh.reduce_scatter_into(&send, &mut ours, Op::Sum).map_err(text)?;
    let mut theirs = vec![0i64; block];
    world.reduce_scatter_block_into(&send[..], &mut theirs[..], SystemOperation::sum());
    ensure(ours == theirs, || "sum of i64 differs from MPI_Reduce_scatter_block".into())?;
    let mut sum = vec![0.0; block];
    mesh.reduce_scatter_into(&reals(me, n * block), &mut sum, Op::Sum).map_err(text)?;
    let whole = fixed_order_sum(mesh, |r| reals(r, n * block))?;
    same_bits(&sum, &whole[me * block..][..block], "sum of f64")
}

/// An all-gather of u16 blocks of `bytes`: MPI_Allgather's.
fn all_gather(world: &SimpleCommunicator, mesh: &Mesh, bytes: usize) -> Outcome {
    let (me, n, count) = (mesh.rank().0, mesh.size(), bytes / 2);
    let send: Vec<u16> = unsigned(me, count, 40, 16);
    let mut ours = vec![0u16; n * count];
    mesh.all_gather_into(&send, &mut ours).map_err(text)?;
    let mut theirs = vec![0u16; n * count];
    world.all_gather_into(&send[..], &mut theirs[..]);
    ensure(ours == theirs, || "differs from MPI_Allgather".into())
}

/// An all-gather of u32 blocks of about `bytes`, a different count on each rank and none on rank 1:
/// MPI_Allgatherv's data, and the counts.
fn all_gather_varcount(world: &SimpleCommunicator, mesh: &Mesh, bytes: usize) -> Outcome {
    let (me, n) = (mesh.rank().0, mesh.size());
    let counts: Vec<usize> = (0..n).map(|r| if r == 1 { 0 } else { bytes / 4 + r }).collect();
    let mut send: Vec<u32> = Vec::with_capacity(1); // real memory for MPI even when empty
    send.extend(unsigned::<u32>(me, counts[me], 50, 32));
    let (mut ours, mut got_counts) = (Vec::new(), Vec::new());
    let total = mesh.all_gather_varcount_into(&send, &mut ours, &mut got_counts).map_err(text)?;
    let mut theirs = vec![0u32; counts.iter().sum()];
    let c: Vec<i32> = counts.iter().map(|&c| c as i32).collect();
    let d: Vec<i32> = c.iter().scan(0, |at, &c| Some(std::mem::replace(at, *at + c))).collect();
    world.all_gather_varcount_into(&send[..], &mut PartitionMut::new(&mut theirs[..], &c[..], &d[..]));
    ensure(got_counts == counts, || format!("counts {got_counts:?}, expected {counts:?}"))?;
    ensure(total == theirs.len() && ours == theirs, || "differs from MPI_Allgatherv".into())
}

/// A broadcast of f64 into a `Vec<f64>` (resized to fit) and into a `[f64]` slice: MPI_Bcast's bits.
fn broadcast(world: &SimpleCommunicator, mesh: &Mesh, bytes: usize, root: usize) -> Outcome {
    let (me, count) = (mesh.rank().0, bytes / 8);
    let data = reals(root + 100, count);
    let mut theirs = if me == root { data.clone() } else { vec![0.0; count] };
    world.process_at_rank(root as i32).broadcast_into(&mut theirs[..]);
    let mut ours: Vec<f64> = if me == root { data.clone() } else { Vec::new() };
    let got = mesh.broadcast_into(Rank(root), &mut ours).map_err(text)?;
    ensure(got == bytes && bits(&ours) == bits(&theirs), || {
        "into a Vec<f64>: differs from MPI_Bcast".into()
    })?;
    let mut slice = if me == root { data } else { vec![-1.0; count] };
    mesh.broadcast_into(Rank(root), &mut slice[..]).map_err(text)?;
    ensure(bits(&slice) == bits(&theirs), || "into a [f64]: differs from MPI_Bcast".into())
}

/// A scatter of u64 chunks of about `bytes` (rank r's holds r more elements) into a `Vec<u64>`:
/// MPI_Scatterv's.
fn scatter(world: &SimpleCommunicator, mesh: &Mesh, bytes: usize, root: usize) -> Outcome {
    let (me, n) = (mesh.rank().0, mesh.size());
    let counts: Vec<usize> = (0..n).map(|r| bytes / 8 + r).collect();
    let chunks: Vec<Vec<u64>> = (0..n).map(|r| unsigned(r, counts[r], 60 + root as u64, 64)).collect();
    let mut ours: Vec<u64> = Vec::new();
    if me == root {
        let bytes: Vec<&[u8]> = chunks.iter().map(|c| bytemuck::cast_slice(c)).collect();
        mesh.scatter_into_root(&bytes, &mut ours).map_err(text)?;
    } else {
        mesh.scatter_into(Rank(root), &mut ours).map_err(text)?;
    }
    let mut theirs = vec![0u64; counts[me]];
    let process = world.process_at_rank(root as i32);
    if me == root {
        let all = chunks.concat();
        let c: Vec<i32> = counts.iter().map(|&c| c as i32).collect();
        let d: Vec<i32> = c.iter().scan(0, |at, &c| Some(std::mem::replace(at, *at + c))).collect();
        process.scatter_varcount_into_root(&Partition::new(&all[..], &c[..], &d[..]), &mut theirs[..]);
    } else {
        process.scatter_varcount_into(&mut theirs[..]);
    }
    ensure(ours == theirs && ours == chunks[me], || "differs from MPI_Scatterv".into())
}

/// An operation the element type has not (every rank), then a receive buffer of the wrong length on
/// the last rank only: typed errors on the ranks that made them, the others told at once; then a good
/// call works.
fn bad_input(mesh: &Mesh) -> Outcome {
    let (me, n) = (mesh.rank().0, mesh.size());
    let started = std::time::Instant::now();
    let error = mesh.all_reduce_into(&[1.0f64; 4], &mut [0.0; 4], Op::BitAnd).expect_err("bitand of f64");
    let expected = Error::OperationNotForType { op: "all_reduce", operation: "bitand", element: "f64" };
    ensure(error == expected, || format!("bitand of f64: {error:?}"))?;
    let (last, len) = (n - 1, if me == n - 1 { 5 } else { 4 });
    let result = mesh.all_reduce_into(&[1i32; 4], &mut vec![0; len], Op::Sum);
    let told = format!("rank {last} failed in all_reduce: all_reduce: the receive buffer holds 5 elements");
    match (me == last, result) {
        (true, Err(Error::LengthMismatch { expected: 4, found: 5, .. })) => {}
        // The last rank's own notice, or another rank's that passed it on first: either names the last.
        (false, Err(error @ Error::PeerFailed { rank, .. }))
            if rank == last && error.to_string().contains(&told) => {}
        (_, other) => return Err(format!("a receive buffer of the wrong length on rank {last}: {other:?}")),
    }
    let mut sum = [0i32; 4];
    mesh.all_reduce_into(&[1i32; 4], &mut sum, Op::Sum).map_err(text)?;
    ensure(sum == [n as i32; 4], || format!("after bad input: {sum:?}"))?;
    ensure(started.elapsed() < Duration::from_secs(60), || "a rank waited for its deadline".into())
}
