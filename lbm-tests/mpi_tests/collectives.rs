//! Collectives under real `mpirun`: each compared with rsmpi's own on the same data and with checksums,
//! back-to-back mixes, and bad input. Run as `mpirun -n N lbm-test-collectives <scenario>`.

#[path = "harness.rs"]
mod harness;

use std::time::Duration;

use harness::{ensure, mesh};
use lbm_tests::verify::{checksum, pattern};
use lightbeam::mesh::{Mesh, Op, Rank, Tag};
use lightbeam::shm::SharedBytes;
use lightbeam::Error;
use mpi::collective::SystemOperation;
use mpi::datatype::{Partition, PartitionMut};
use mpi::topology::SimpleCommunicator;
use mpi::traits::*;

fn main() {
    harness::main_with(&[
        ("each", each),
        ("mixed", mixed),
        ("bad-input", bad_input),
        ("endless", endless),
        ("large", large),
        ("mismatch", mismatch),
        ("mixed-paths", mixed_paths),
        ("by-node", by_node),
    ]);
}

type Outcome = Result<(), String>;

fn text(e: Error) -> String {
    e.to_string()
}

/// Splits `size` bytes over `n` ranks as evenly as possible (so sizes differ by one: the `v` variants).
fn counts(size: usize, n: usize) -> Vec<usize> {
    (0..n).map(|r| size / n + usize::from(r < size % n)).collect()
}

/// An empty Rust slice points at address 1, which OpenMPI takes for `MPI_IN_PLACE`: give MPI real memory.
fn mpi_safe(mut buffer: Vec<u8>) -> Vec<u8> {
    buffer.reserve(1);
    buffer
}

fn displacements(counts: &[usize]) -> Vec<usize> {
    counts.iter().scan(0, |offset, &c| Some(std::mem::replace(offset, *offset + c))).collect()
}

fn mpi_counts(counts: &[usize]) -> (Vec<i32>, Vec<i32>) {
    let c: Vec<i32> = counts.iter().map(|&c| c as i32).collect();
    let d: Vec<i32> = displacements(counts).iter().map(|&d| d as i32).collect();
    (c, d)
}

/// Each collective at `sizes`, for root 0 and root n-1, against rsmpi and against the expected bytes.
fn each(world: &SimpleCommunicator) -> Outcome {
    let mesh = mesh(world, Duration::from_secs(120))?;
    let n = mesh.size();
    for size in [0, 1, 1_000_003, 64 << 20] {
        for root in [0, n - 1] {
            broadcast(world, &mesh, size, root)
                .map_err(|e| format!("broadcast {size} B root {root}: {e}"))?;
            shared_broadcast(world, &mesh, size, root)
                .map_err(|e| format!("shared broadcast {size} B root {root}: {e}"))?;
            scatter(world, &mesh, size, root).map_err(|e| format!("scatter {size} B root {root}: {e}"))?;
            gather(world, &mesh, size, root).map_err(|e| format!("gather {size} B root {root}: {e}"))?;
        }
        all_to_all(world, &mesh, size).map_err(|e| format!("all_to_all {size} B: {e}"))?;
        if mesh.rank() == Rank(0) {
            println!("rank 0: every collective agrees with MPI at {size} B on {n} ranks");
        }
    }
    Ok(())
}

fn broadcast(world: &SimpleCommunicator, mesh: &Mesh, size: usize, root: usize) -> Outcome {
    let expected = pattern(size, 1 + root as u64);
    let mut ours = if mesh.rank() == Rank(root) { expected.clone() } else { Vec::new() };
    let got = mesh.broadcast_into(Rank(root), &mut ours).map_err(text)?;
    let mut theirs = mpi_safe(if mesh.rank() == Rank(root) { expected.clone() } else { vec![0; size] });
    world.process_at_rank(root as i32).broadcast_into(&mut theirs[..]);
    ensure(got == size && ours == theirs, || "differs from MPI_Bcast".into())?;
    ensure(checksum(&ours) == checksum(&expected), || "checksum mismatch".into())
}

/// A collective that says whether this rank got the right data.
type Check = dyn Fn(&Mesh) -> Result<bool, Error>;

/// Collectives in which ranks take different paths (run it with `LIGHTBEAM_SINGLE_COPY=0` on some
/// ranks too): all-to-all of 16 MiB chunks (refused copies are sent whole, through rings far smaller),
/// an alltoallv whose rank 0 offers its 128 KiB chunks in place while the others send 1 KiB whole, a
/// gatherv with chunks on either side of 256 KiB, and a scatter of 1 MiB chunks. Each in a mesh of its
/// own: a refusal makes a rank stop offering reads for the rest of its mesh.
fn mixed_paths(world: &SimpleCommunicator) -> Outcome {
    let fresh = || mesh(world, Duration::from_secs(60));
    let checks: [(&str, &Check); 5] = [
        ("all-to-all 16 MiB", &|mesh| all_to_all_sized(mesh, 16 << 20)),
        ("all-to-all with later chunks first", &all_to_all_later_chunks_first),
        ("alltoallv 128 KiB and 1 KiB", &|mesh| {
            all_to_all_with(mesh, |from, to| if from == 0 { 128 << 10 } else { 1 << 10 } + to)
        }),
        ("gatherv around 256 KiB", &|mesh| gather_with(mesh, 0, |r| (200 << 10) + r * (40 << 10))),
        ("scatter 1 MiB", &|mesh| {
            let chunks: Vec<Vec<u8>> = (0..mesh.size()).map(|r| pattern((1 << 20) + r, r as u64)).collect();
            Ok(scatter_of(mesh, 0, &chunks)? == chunks[mesh.rank().0])
        }),
    ];
    for (name, check) in checks {
        let mesh = fresh()?;
        ensure(check(&mesh).map_err(|e| format!("{name}: {e}"))?, || format!("{name}: wrong data"))?;
    }
    Ok(())
}

/// The shared broadcast against MPI_Bcast; with single copies on every rank, the ranks of a node hold
/// one copy (one memory file), so there are as many files as nodes.
fn shared_broadcast(world: &SimpleCommunicator, mesh: &Mesh, size: usize, root: usize) -> Outcome {
    let expected = pattern(size, 3 + root as u64);
    let view = if mesh.rank() == Rank(root) {
        let view = SharedBytes::copy_from(&expected).map_err(text)?;
        mesh.broadcast_shared_root(&view).map_err(text)?;
        view
    } else {
        mesh.broadcast_shared(Rank(root)).map_err(text)?
    };
    let mut theirs = mpi_safe(if mesh.rank() == Rank(root) { expected.clone() } else { vec![0; size] });
    world.process_at_rank(root as i32).broadcast_into(&mut theirs[..]);
    ensure(view[..] == theirs[..size], || "differs from MPI_Bcast".into())?;
    let inode = view.id();
    let mut inodes = vec![0u64; mesh.size()];
    world.all_gather_into(&inode, &mut inodes[..]);
    let mut refusing = 0u8;
    world.all_reduce_into(&u8::from(!mesh.config().single_copy), &mut refusing, SystemOperation::sum());
    inodes.sort_unstable();
    inodes.dedup();
    let copies = inodes.len();
    ensure(refusing > 0 || copies == mesh.node_count(), || {
        format!("{copies} copies on {} nodes", mesh.node_count())
    })
}

fn scatter(world: &SimpleCommunicator, mesh: &Mesh, size: usize, root: usize) -> Outcome {
    let (me, n) = (mesh.rank().0, mesh.size());
    let all = mpi_safe(pattern(size, 2 + root as u64));
    let counts = counts(size, n);
    let displs = displacements(&counts);
    let mut ours: Vec<u8> = Vec::new();
    if me == root {
        let chunks: Vec<&[u8]> = (0..n).map(|r| &all[displs[r]..displs[r] + counts[r]]).collect();
        mesh.scatter_into_root(&chunks, &mut ours).map_err(text)?;
    } else {
        mesh.scatter_into(Rank(root), &mut ours).map_err(text)?;
    }
    let mut theirs = mpi_safe(vec![0u8; counts[me]]);
    let process = world.process_at_rank(root as i32);
    if me == root {
        let (c, d) = mpi_counts(&counts);
        process.scatter_varcount_into_root(&Partition::new(&all[..], &c[..], &d[..]), &mut theirs[..]);
    } else {
        process.scatter_varcount_into(&mut theirs[..]);
    }
    ensure(ours == theirs, || "differs from MPI_Scatterv".into())?;
    ensure(ours == all[displs[me]..displs[me] + counts[me]], || "wrong chunk".into())
}

fn gather(world: &SimpleCommunicator, mesh: &Mesh, size: usize, root: usize) -> Outcome {
    let (me, n) = (mesh.rank().0, mesh.size());
    let counts = counts(size, n);
    let mine = mpi_safe(pattern(counts[me], 100 + me as u64));
    let process = world.process_at_rank(root as i32);
    if me != root {
        mesh.gather_into(Rank(root), &mine).map_err(text)?;
        process.gather_varcount_into(&mine[..]);
        return Ok(());
    }
    let mut ours = Vec::new();
    let total = mesh.gather_into_root(&mine, &mut ours).map_err(text)?;
    let mut theirs = mpi_safe(vec![0u8; size]);
    let (c, d) = mpi_counts(&counts);
    process.gather_varcount_into_root(&mine[..], &mut PartitionMut::new(&mut theirs[..], &c[..], &d[..]));
    ensure(total == size && ours.concat() == theirs, || "differs from MPI_Gatherv".into())?;
    for (r, chunk) in ours.iter().enumerate() {
        ensure(*chunk == pattern(counts[r], 100 + r as u64), || format!("wrong chunk from rank {r}"))?;
    }
    Ok(())
}

fn all_to_all(world: &SimpleCommunicator, mesh: &Mesh, size: usize) -> Outcome {
    let (me, n) = (mesh.rank().0, mesh.size());
    // Rank r sends rank s a chunk of its own length; together about `size` bytes per rank.
    let len = |r: usize, s: usize| size / (n * n) + (r + 2 * s) % 3 * usize::from(size > 0);
    let seed = |r: usize, s: usize| (1000 + r * 64 + s) as u64;
    let sent: Vec<Vec<u8>> = (0..n).map(|s| pattern(len(me, s), seed(me, s))).collect();
    let mut ours = Vec::new();
    mesh.all_to_all_into(&sent.iter().map(Vec::as_slice).collect::<Vec<_>>(), &mut ours).map_err(text)?;
    let send_counts: Vec<usize> = (0..n).map(|s| len(me, s)).collect();
    let recv_counts: Vec<usize> = (0..n).map(|r| len(r, me)).collect();
    let (sc, sd) = mpi_counts(&send_counts);
    let (rc, rd) = mpi_counts(&recv_counts);
    let flat = mpi_safe(sent.concat());
    let mut theirs = mpi_safe(vec![0u8; recv_counts.iter().sum()]);
    world.all_to_all_varcount_into(
        &Partition::new(&flat[..], &sc[..], &sd[..]),
        &mut PartitionMut::new(&mut theirs[..], &rc[..], &rd[..]),
    );
    ensure(ours.concat() == theirs, || "differs from MPI_Alltoallv".into())?;
    for (r, chunk) in ours.iter().enumerate() {
        ensure(*chunk == pattern(len(r, me), seed(r, me)), || format!("wrong chunk from rank {r}"))?;
    }
    Ok(())
}

/// Whether scatters and gathers go by node on this mesh: ranks on several nodes, some node with several.
fn goes_by_node(mesh: &Mesh) -> bool {
    (2..mesh.size()).contains(&mesh.node_count())
}

/// How many messages arrived at this rank from each of `ranks` together.
fn arrivals(mesh: &Mesh, ranks: impl Iterator<Item = Rank>) -> Result<u64, String> {
    ranks.map(|r| mesh.messages_from(r).map_err(text)).sum()
}

/// The ranks on other nodes than `rank`'s.
fn elsewhere(mesh: &Mesh, rank: usize) -> Vec<Rank> {
    let node = mesh.node_of(Rank(rank)).expect("a rank");
    (0..mesh.size()).map(Rank).filter(|&r| mesh.node_of(r).expect("a rank") != node).collect()
}

/// Scatter and gather from every root with chunks of different sizes (rank r's is `r * 1001 % 7 * 1000`
/// bytes: some 0), checked byte for byte, counting the messages each rank takes in: when the ranks span
/// several nodes with several ranks on some, a gather's root takes one message from each other node (its
/// leader's bundle) and, in a scatter, a rank of another node takes a message from the root only if it
/// leads its node; otherwise every rank exchanges one message with the root. Then a scatter into
/// receive buffers too small on the odd ranks (a leader among them, on 2 hosts): those fail saying so,
/// the others get their chunks.
fn by_node(world: &SimpleCommunicator) -> Outcome {
    let mesh = mesh(world, Duration::from_secs(60))?;
    let (me, n) = (mesh.rank().0, mesh.size());
    let by_node = goes_by_node(&mesh);
    let len = |r: usize| r * 1001 % 7 * 1000;
    let chunk = |r: usize, root: usize| pattern(len(r), (root * 100 + r) as u64);
    for root in 0..n {
        let others = elsewhere(&mesh, root);
        let nodes_elsewhere = mesh.node_count() as u64 - 1;
        // Gather: the root counts what arrives from the other nodes.
        world.barrier();
        let before = arrivals(&mesh, others.iter().copied())?;
        if me == root {
            let mut gathered = Vec::new();
            mesh.gather_into_root(&chunk(me, root), &mut gathered).map_err(text)?;
            let right = gathered.iter().enumerate().all(|(r, c)| *c == chunk(r, root));
            ensure(right && gathered.len() == n, || format!("gather to {root}: wrong data"))?;
            let came = arrivals(&mesh, others.iter().copied())? - before;
            let expected = if by_node { nodes_elsewhere } else { others.len() as u64 };
            ensure(came == expected, || {
                format!("gather to {root}: {came} messages from other nodes, expected {expected}")
            })?;
        } else {
            mesh.gather_into(Rank(root), &chunk(me, root)).map_err(text)?;
        }
        // Scatter: each rank counts what arrives from the root.
        world.barrier();
        let before = mesh.messages_from(Rank(root)).map_err(text)?;
        let all: Vec<Vec<u8>> = (0..n).map(|r| chunk(r, root)).collect();
        let mine = scatter_of(&mesh, root, &all).map_err(text)?;
        if me != root {
            let came = mesh.messages_from(Rank(root)).map_err(text)? - before;
            let my_node = mesh.node_of(Rank(me)).map_err(text)?;
            let leads = mesh.ranks_on_node(my_node).map_err(text)?[0] == Rank(me);
            let expected = u64::from(!by_node || !others.contains(&Rank(me)) || leads);
            ensure(came == expected, || {
                format!("scatter from {root}: {came} messages from the root, expected {expected}")
            })?;
        }
        ensure(mine == all[me], || format!("scatter from {root}: wrong chunk"))?;
    }
    // Receive buffers too small on the odd ranks.
    world.barrier();
    let all: Vec<Vec<u8>> = (0..n).map(|r| pattern(100 + r, r as u64)).collect();
    let mut small = [0u8; 10];
    let mut mine: Vec<u8> = Vec::new();
    let result = match me {
        0 => mesh.scatter_into_root(&all.iter().map(Vec::as_slice).collect::<Vec<_>>(), &mut mine),
        _ if me % 2 == 1 => mesh.scatter_into(Rank(0), &mut small[..]),
        _ => mesh.scatter_into(Rank(0), &mut mine),
    };
    if me % 2 == 1 {
        let error = result.expect_err("a chunk fit a 10-byte buffer");
        let expected = format!("{} bytes arrive but the receive buffer holds 10", 100 + me);
        ensure(error.to_string().contains(&expected), || format!("vague error: {error}"))?;
    } else {
        result.map_err(text)?;
        ensure(mine == all[me], || "scatter beside small buffers: wrong chunk".into())?;
    }
    if me == 0 {
        let how = if by_node { "by node" } else { "directly" };
        println!(
            "rank 0: scatter and gather {how} from every root on {n} ranks, {} nodes",
            mesh.node_count()
        );
    }
    world.barrier();
    Ok(())
}

/// 100 back-to-back collectives of mixed kinds, sizes and roots, with rank 1 lagging now and then.
fn mixed(world: &SimpleCommunicator) -> Outcome {
    let mesh = mesh(world, Duration::from_secs(60))?;
    let (me, n) = (mesh.rank().0, mesh.size());
    for i in 0..100usize {
        if me == 1 && i % 10 == 0 {
            std::thread::sleep(Duration::from_millis(20));
        }
        let size = (i * 7919) % 300_000 + i % 2 * (1 << 20);
        let root = i % n;
        let check = match i % 4 {
            0 => {
                let expected = pattern(size, i as u64);
                let mut data = if me == root { expected.clone() } else { Vec::new() };
                mesh.broadcast_into(Rank(root), &mut data).map_err(text)?;
                data == expected
            }
            1 => {
                let all: Vec<Vec<u8>> = (0..n).map(|r| pattern(size / n + r, (i * 100 + r) as u64)).collect();
                scatter_of(&mesh, root, &all).map_err(text)? == all[me]
            }
            2 => {
                let chunk = |r: usize| pattern(size / n + r, (i * 100 + r) as u64);
                if me == root {
                    let mut gathered = Vec::new();
                    mesh.gather_into_root(&chunk(me), &mut gathered).map_err(text)?;
                    gathered.iter().enumerate().all(|(r, c)| *c == chunk(r))
                } else {
                    mesh.gather_into(Rank(root), &chunk(me)).map_err(text)?;
                    true
                }
            }
            _ => {
                let chunk = |from: usize, to: usize| {
                    pattern(size / (n * n) + to, (i * 10_000 + from * 100 + to) as u64)
                };
                let sent: Vec<Vec<u8>> = (0..n).map(|to| chunk(me, to)).collect();
                let mut received = Vec::new();
                mesh.all_to_all_into(&sent.iter().map(Vec::as_slice).collect::<Vec<_>>(), &mut received)
                    .map_err(text)?;
                received.iter().enumerate().all(|(from, c)| *c == chunk(from, me))
            }
        };
        ensure(check, || format!("collective {i} (kind {}) delivered wrong data", i % 4))?;
    }
    world.barrier();
    Ok(())
}

/// A wrong chunk count, a root out of range, a receive buffer too small: errors naming the problem on the
/// calling rank, no rank waits for its deadline, and the next collective works.
fn bad_input(world: &SimpleCommunicator) -> Outcome {
    // A long deadline: if any rank waited for it, the test's own time limit would catch the hang.
    let mesh = mesh(world, Duration::from_secs(100))?;
    let (me, n) = (mesh.rank().0, mesh.size());
    let started = std::time::Instant::now();

    // The root gives one chunk too few: it names the counts; the others learn it from the root at once.
    let chunks = vec![&b"x"[..]; n - 1];
    let error = if me == 0 {
        mesh.scatter_into_root(&chunks, &mut Vec::<u8>::new()).expect_err("wrong chunk count accepted")
    } else {
        mesh.scatter_into(Rank(0), &mut Vec::<u8>::new()).expect_err("scatter succeeded without a root")
    };
    let expected = format!("{} chunks given for {n} ranks", n - 1);
    ensure(error.to_string().contains(&expected), || format!("vague error: {error}"))?;
    if me == 0 {
        println!("rank 0: scatter with a wrong chunk count: {error}");
    }

    // Every rank names a root that does not exist.
    let error = mesh.broadcast_into(Rank(n), &mut Vec::<u8>::new()).expect_err("root out of range accepted");
    ensure(error.to_string().contains(&format!("rank {n} is out of range")), || {
        format!("vague error: {error}")
    })?;

    // The last rank's fixed buffer is too small; the others still get the data.
    let data = pattern(1000, 5);
    let mut small = [0u8; 10];
    let result = if me == n - 1 && n > 1 {
        mesh.broadcast_into(Rank(0), &mut small[..])
    } else {
        let mut buffer = if me == 0 { data.clone() } else { Vec::new() };
        mesh.broadcast_into(Rank(0), &mut buffer).and_then(|got| {
            if buffer == data {
                Ok(got)
            } else {
                Err(Error::Mesh("wrong data".into()))
            }
        })
    };
    if me == n - 1 && n > 1 {
        let error = result.expect_err("1000 bytes fit a 10-byte buffer");
        ensure(error.to_string().contains("1000 bytes arrive but the receive buffer holds 10"), || {
            format!("vague error: {error}")
        })?;
        println!("rank {me}: broadcast into a small buffer: {error}");
    } else {
        result.map_err(text)?;
    }

    // One rank gives all_to_all a wrong chunk count: every rank fails, and says why.
    let chunk_count = if me == 0 { n + 1 } else { n };
    let chunks = vec![&b"y"[..]; chunk_count];
    let error = mesh.all_to_all_into(&chunks, &mut Vec::new());
    if n > 1 || me == 0 {
        let error = error.expect_err("all_to_all with a wrong chunk count succeeded");
        ensure(error.to_string().contains("chunks given for"), || format!("vague error: {error}"))?;
    }

    // After all that, a good collective still works: the sequence numbers stayed in step.
    let mut data = if me == 0 { pattern(4096, 9) } else { Vec::new() };
    mesh.broadcast_into(Rank(0), &mut data).map_err(text)?;
    ensure(data == pattern(4096, 9), || "broadcast after bad input delivered wrong data".into())?;
    ensure(started.elapsed() < Duration::from_secs(100), || "a rank waited for its deadline".into())?;
    world.barrier();
    Ok(())
}

/// Runs one kind of collective (`broadcast`, `all-to-all`, `scatter` or `gather`; the second argument)
/// over and over for up to 60 s with the deadline given in milliseconds (third argument), for fault
/// tests: a test cuts a link or kills a rank meanwhile. The first Lightbeam error ends the run, stamped with
/// the wall-clock time so the test can time it.
fn endless(world: &SimpleCommunicator) -> Outcome {
    let kind = std::env::args().nth(2).unwrap_or_default();
    let deadline_ms = std::env::args().nth(3).and_then(|d| d.parse().ok()).unwrap_or(3000);
    let mesh = mesh(world, Duration::from_millis(deadline_ms))?;
    let n = mesh.size();
    let started = std::time::Instant::now();
    let chunks: Vec<Vec<u8>> = (0..n).map(|r| pattern(256 << 10, r as u64)).collect();
    let chunks: Vec<&[u8]> = chunks.iter().map(Vec::as_slice).collect();
    let mut data = pattern(if kind == "large-broadcast" { 16 << 20 } else { 2 << 20 }, 1);
    let shared = SharedBytes::copy_from(&data).map_err(text)?;
    let mut received = Vec::new();
    for round in 0.. {
        let result = match kind.as_str() {
            "broadcast" | "large-broadcast" => mesh.broadcast_into(Rank(0), &mut data).map(drop),
            "small-broadcast" => mesh.broadcast_into(Rank(0), &mut data[..1000]).map(drop),
            "all-to-all" => mesh.all_to_all_into(&chunks, &mut received).map(drop),
            "scatter" if mesh.rank() == Rank(0) => mesh.scatter_into_root(&chunks, &mut data).map(drop),
            "scatter" => mesh.scatter_into(Rank(0), &mut data).map(drop),
            "gather" if mesh.rank() == Rank(0) => mesh.gather_into_root(chunks[0], &mut received).map(drop),
            "gather" => mesh.gather_into(Rank(0), chunks[mesh.rank().0]),
            "shared-broadcast" if mesh.rank() == Rank(0) => mesh.broadcast_shared_root(&shared),
            "shared-broadcast" => mesh.broadcast_shared(Rank(0)).map(drop),
            "requests" => requests_in_flight(&mesh, &chunks, &mut data[..1 << 20]),
            other => return Err(format!("unknown kind {other:?}")),
        };
        if let Err(error) = result {
            let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
            let report =
                format!("lightbeam error at {} ms (code {}): {error}", now.as_millis(), error.code());
            harness::report(&format!("rank {}: {report}", mesh.rank().0));
            // The loss notices still queued go out as the mesh drops. Then leave without MPI_Abort: the
            // kill test runs mpirun with --enable-recovery (so that mpirun does not end the job at the
            // first death and every rank's own error shows), and the job ends as every rank ends.
            drop(mesh);
            std::process::exit(1);
        }
        if round == 0 {
            let endpoint = mesh.address_of(mesh.rank()).map_err(text)?;
            println!("rank {}: running {kind} at {endpoint} pid {}", mesh.rank().0, std::process::id());
        }
        // Far above the second or so the kill takes: mpirun forwards the "running" lines the test
        // waits for, and on a loaded machine that took over a minute.
        if started.elapsed() > Duration::from_secs(150) {
            return Err("no fault came within 150 s".into());
        }
    }
    Ok(())
}

/// A ring exchange of 256 KiB, a broadcast of `data` and an all-reduce, all in flight at once as
/// requests; the first error of the four.
fn requests_in_flight(mesh: &Mesh, chunks: &[&[u8]], data: &mut [u8]) -> lightbeam::Result<()> {
    let (me, n) = (mesh.rank().0, mesh.size());
    let values = vec![1.0f64; 1 << 15];
    let (mut sum, mut halo) = (vec![0.0f64; 1 << 15], vec![0u8; chunks[me].len()]);
    mesh.scope(|s| {
        let halo_in = s.recv_into(Rank((me + n - 1) % n), Tag(9), &mut halo[..]);
        let halo_out = s.send(Rank((me + 1) % n), Tag(9), chunks[me]);
        let broadcast = s.broadcast_into(Rank(0), data);
        let reduced = s.all_reduce_into(&values, &mut sum, Op::Sum);
        [halo_out.wait(), broadcast.wait().map(drop), reduced.wait(), halo_in.wait().map(drop)]
            .into_iter()
            .collect()
    })
}

/// A broadcast of 2.5 GiB (past MPI's 2^31-1 element count): every rank checks its checksum.
fn large(world: &SimpleCommunicator) -> Outcome {
    const SIZE: usize = 5 << 29;
    let mesh = mesh(world, Duration::from_secs(120))?;
    let mut data = if mesh.rank() == Rank(0) { pattern(SIZE, 25) } else { Vec::new() };
    let expected = pattern(1 << 20, 25); // the first MiB, to spot-check cheaply before the full checksum
    world.barrier();
    let started = std::time::Instant::now();
    mesh.broadcast_into(Rank(0), &mut data).map_err(text)?;
    world.barrier();
    let elapsed = started.elapsed();
    ensure(data.len() == SIZE && data[..1 << 20] == expected[..], || "wrong data".into())?;
    let sum = checksum(&data);
    let mut sums = vec![0u64; mesh.size()];
    world.all_gather_into(&sum, &mut sums[..]);
    ensure(sums.iter().all(|&s| s == sums[0]), || format!("checksums differ: {sums:x?}"))?;
    if mesh.rank() == Rank(0) {
        println!(
            "rank 0: 2.5 GiB broadcast to {} ranks in {:.2} s, checksums agree",
            mesh.size(),
            elapsed.as_secs_f64()
        );
    }
    Ok(())
}

/// How one rank's part of a mismatched pair of collectives ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ending {
    /// Both calls returned the data this rank's own calls asked for.
    RightData = 0,
    /// `Error::CollectiveMismatch`.
    Mismatch = 1,
    /// `Error::PeerLost`, `Error::Timeout` or `Error::PeerFailed`: a deadline passed.
    Deadline = 2,
    /// Another error.
    Other = 3,
    /// A call returned success with data another call asked for.
    WrongData = 4,
}

/// Classifies an error by its variant, printing it.
fn ending_of(me: usize, call: &str, error: &Error) -> Ending {
    println!("rank {me}: {call}: {error}");
    match error {
        Error::CollectiveMismatch { .. } => Ending::Mismatch,
        Error::PeerLost { .. } | Error::Timeout { .. } | Error::PeerFailed { .. } => Ending::Deadline,
        _ => Ending::Other,
    }
}

/// A broadcast from root 0 of `size` bytes into `data` (the root's data is its own): right or wrong data.
fn broadcast_checked(mesh: &Mesh, root: usize, size: usize) -> Result<bool, Error> {
    let expected = pattern(size, 40 + root as u64);
    let mut data = if mesh.rank() == Rank(root) { expected.clone() } else { Vec::new() };
    mesh.broadcast_into(Rank(root), &mut data).map(|_| data == expected)
}

/// A shared broadcast from `root` of `size` bytes: right or wrong data.
fn shared_broadcast_checked(mesh: &Mesh, root: usize, size: usize) -> Result<bool, Error> {
    let expected = pattern(size, 40 + root as u64);
    if mesh.rank() == Rank(root) {
        return mesh.broadcast_shared_root(&SharedBytes::copy_from(&expected)?).map(|()| true);
    }
    mesh.broadcast_shared(Rank(root)).map(|view| view[..] == expected[..])
}

/// A scatter from `root` (chunk r is rank r's): right or wrong data.
fn scatter_checked(mesh: &Mesh, root: usize) -> Result<bool, Error> {
    let chunks: Vec<Vec<u8>> = (0..mesh.size()).map(|r| pattern(100 + r, 60 + r as u64)).collect();
    Ok(scatter_of(mesh, root, &chunks)? == chunks[mesh.rank().0])
}

/// This rank's part of a scatter of `chunks` (the root's; others' are unused) from `root`: its chunk.
fn scatter_of(mesh: &Mesh, root: usize, chunks: &[Vec<u8>]) -> Result<Vec<u8>, Error> {
    let mut mine = Vec::new();
    if mesh.rank() == Rank(root) {
        mesh.scatter_into_root(&chunks.iter().map(Vec::as_slice).collect::<Vec<_>>(), &mut mine)?;
    } else {
        mesh.scatter_into(Rank(root), &mut mine)?;
    }
    Ok(mine)
}

/// A gather to `root` (rank r sends a pattern of its own): right or wrong data.
fn gather_checked(mesh: &Mesh, root: usize) -> Result<bool, Error> {
    gather_sized(mesh, root, 50)
}

/// A gather to `root` of chunks of `base` bytes and more (from 64 KiB, on one node, read in place).
fn gather_sized(mesh: &Mesh, root: usize, base: usize) -> Result<bool, Error> {
    gather_with(mesh, root, |r| base + r)
}

/// A gather to `root` in which rank r sends `size(r)` bytes: right or wrong data.
fn gather_with(mesh: &Mesh, root: usize, size: impl Fn(usize) -> usize) -> Result<bool, Error> {
    let chunk = |r: usize| pattern(size(r), 80 + r as u64);
    let me = mesh.rank().0;
    if me != root {
        return mesh.gather_into(Rank(root), &chunk(me)).map(|()| true);
    }
    let mut gathered = Vec::new();
    mesh.gather_into_root(&chunk(me), &mut gathered)?;
    Ok(gathered.iter().enumerate().all(|(r, c)| *c == chunk(r)))
}

/// An all-to-all every rank agrees on: right or wrong data.
fn all_to_all_checked(mesh: &Mesh) -> Result<bool, Error> {
    all_to_all_sized(mesh, 30)
}

/// An all-to-all of chunks of `base` bytes and more: right or wrong data. (From 64 KiB, on one node,
/// the chunks are read in place.)
fn all_to_all_sized(mesh: &Mesh, base: usize) -> Result<bool, Error> {
    all_to_all_with(mesh, |_, to| base + to)
}

/// An alltoallv in which the chunks of the pairwise exchange's last step (16 MiB) reach two ranks while
/// they still send each other 32 MiB in its middle step (the other chunks are 1 KiB): a rank blocked in a
/// send must take in both, whatever it already holds of the call.
fn all_to_all_later_chunks_first(mesh: &Mesh) -> Result<bool, Error> {
    let n = mesh.size();
    all_to_all_with(mesh, |from, to| match (to + n - from) % n {
        step if 2 * step == n && (from == 0 || to == 0) => 32 << 20,
        step if step == n - 1 => 16 << 20,
        _ => 1 << 10,
    })
}

/// An all-to-all in which rank `from` sends `size(from, to)` bytes to rank `to`: right or wrong data.
fn all_to_all_with(mesh: &Mesh, size: impl Fn(usize, usize) -> usize) -> Result<bool, Error> {
    let (me, n) = (mesh.rank().0, mesh.size());
    let chunk = |from: usize, to: usize| pattern(size(from, to), (from * 100 + to) as u64);
    let sent: Vec<Vec<u8>> = (0..n).map(|to| chunk(me, to)).collect();
    let mut received = Vec::new();
    mesh.all_to_all_into(&sent.iter().map(Vec::as_slice).collect::<Vec<_>>(), &mut received)?;
    Ok(received.iter().enumerate().all(|(from, c)| *c == chunk(from, me)))
}

/// Ranks that do not make the same collective calls (the second argument says how), then an all-to-all
/// they agree on. No rank may return success with data of another call; every error is reported with the
/// time it came. Rank 0 gathers every rank's ending and prints one line per rank:
/// `rank R ended <ending> after <ms> ms`, and the job fails if any rank got wrong data. With a fourth
/// argument `exit`, each rank drops its mesh (its server and connections) as soon as it has ended, as
/// a program that exits on the error would; otherwise the meshes live until every rank has ended.
fn mismatch(world: &SimpleCommunicator) -> Outcome {
    let kind = std::env::args().nth(2).unwrap_or_default();
    let deadline = std::env::args().nth(3).and_then(|d| d.parse().ok()).map_or(30_000, |d: u64| d);
    let exit = std::env::args().nth(4).as_deref() == Some("exit");
    let mesh = mesh(world, Duration::from_millis(deadline))?;
    let (me, n) = (mesh.rank().0, mesh.size());
    let last = me == n - 1;
    world.barrier();
    let started = std::time::Instant::now();
    let first = match kind.as_str() {
        // The last rank thinks it is the root; the others take rank 0's word.
        "broadcast-roots" => broadcast_checked(&mesh, if last { me } else { 0 }, 1000),
        // Rank 0 broadcasts while the others take part in a scatter from rank 0.
        "broadcast-scatter" if me == 0 => broadcast_checked(&mesh, 0, 1000),
        "broadcast-scatter" => scatter_checked(&mesh, 0),
        // The last rank gathers to rank 1, the others to rank 0.
        "gather-roots" => gather_checked(&mesh, if last { 1 } else { 0 }),
        // The same with chunks of 1 MiB, read in place: descriptors meet a root that is not theirs.
        "gather-read-roots" => gather_sized(&mesh, if last { 1 } else { 0 }, 1 << 20),
        // The last rank skips the gather: its next call (a broadcast) takes the gather's number.
        "skip" if last => Ok(true),
        "skip" => gather_checked(&mesh, 0),
        // Rank 1 gathers to rank 0 while the others take part in a scatter from rank 0: all only send.
        "scatter-gather" if me == 1 => gather_checked(&mesh, 0),
        "scatter-gather" => scatter_checked(&mesh, 0),
        // Two roots of a 4 MiB broadcast (read from the root on one node, a pipelined chain across
        // nodes, where ranks relay pieces to a rank that is not taking them).
        "pipelined-roots" => broadcast_checked(&mesh, if last { me } else { 0 }, 4 << 20),
        // Rank 0 shares 1 MiB while the others take part in a broadcast of it, and the reverse.
        "shared-broadcast" if me == 0 => shared_broadcast_checked(&mesh, 0, 1 << 20),
        "shared-broadcast" => broadcast_checked(&mesh, 0, 1 << 20),
        "broadcast-shared" if me == 0 => broadcast_checked(&mesh, 0, 1 << 20),
        "broadcast-shared" => shared_broadcast_checked(&mesh, 0, 1 << 20),
        // Rank 0 gathers to itself while the others exchange all-to-all.
        "alltoall-gather" if me == 0 => gather_checked(&mesh, 0),
        "alltoall-gather" => all_to_all_checked(&mesh),
        // The same with chunks of 1 MiB, which are read in place: descriptors meet a gather.
        "alltoall-read-gather" if me == 0 => gather_checked(&mesh, 0),
        "alltoall-read-gather" => all_to_all_sized(&mesh, 1 << 20),
        other => return Err(format!("unknown kind {other:?}")),
    };
    let second = |mesh: &Mesh| match kind.as_str() {
        "skip" => broadcast_checked(mesh, 0, 1000),
        _ => all_to_all_checked(mesh),
    };
    let ending = match first.and_then(|right| if right { second(&mesh) } else { Ok(false) }) {
        Ok(true) => Ending::RightData,
        Ok(false) => Ending::WrongData,
        Err(error) => ending_of(me, &kind, &error),
    };
    let elapsed = started.elapsed().as_millis() as u64;
    if exit {
        drop(mesh);
    }
    let mut endings = vec![0u64; n];
    world.all_gather_into(&(ending as u64 * 1_000_000_000 + elapsed), &mut endings[..]);
    if me == 0 {
        for (rank, e) in endings.iter().enumerate() {
            println!("rank {rank} ended {} after {} ms", e / 1_000_000_000, e % 1_000_000_000);
        }
    }
    let wrong = endings.iter().any(|e| e / 1_000_000_000 == Ending::WrongData as u64);
    ensure(!wrong, || "a rank returned success with data of another call".into())
}
