//! The mesh under real `mpirun`: point-to-point correctness and every failure the mesh must survive.
//! Run as `mpirun -n N lbm-test-mesh <scenario>`; `lbm-tests/tests/mpi_mesh.rs` does that at several rank
//! counts.

#[path = "harness.rs"]
mod harness;

use std::time::{Duration, Instant};

use harness::{ensure, mesh};
use lbm_tests::verify::{checksum, pattern};
use lightbeam::mesh::{Mesh, MeshConfig, Node, Rank, Source, Tag};
use lightbeam::{Client, Error, LbmMeta, SharedMemoryClient, Transport};
use mpi::topology::SimpleCommunicator;
use mpi::traits::*;

const LONG: Duration = Duration::from_secs(60);

fn main() {
    harness::main_with(&[
        ("pairs", pairs),
        ("port-taken", port_taken),
        ("peer-exits", peer_exits),
        ("stray", stray),
        ("drop-after-send", drop_after_send),
        ("panic", panic),
        ("panic-unhooked", panic_unhooked),
        ("missing-rank", missing_rank),
        ("victim", victim),
        ("intruder", intruder),
    ]);
}

/// The mesh puts two ranks on one node exactly when MPI's processor names (their host names) are equal:
/// on one machine every rank is on node 0; in the multi-host harness, whose hosts are network namespaces
/// of one kernel, each host is a node of its own. Each node lists its ranks in order, its own included.
fn nodes_agree_with_mpi(world: &SimpleCommunicator, mesh: &Mesh) -> Result<(), String> {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new(); // fixed keys: equal on every rank
    mpi::environment::processor_name().map_err(|e| e.to_string())?.hash(&mut hasher);
    let mut names = vec![0u64; mesh.size()];
    world.all_gather_into(&hasher.finish(), &mut names[..]);
    let node = |rank: usize| mesh.node_of(Rank(rank)).map_err(|e| e.to_string());
    for (a, b) in (0..mesh.size()).flat_map(|a| (0..mesh.size()).map(move |b| (a, b))) {
        ensure((node(a)? == node(b)?) == (names[a] == names[b]), || {
            format!(
                "ranks {a} and {b}: mesh nodes {:?} and {:?}, MPI names equal: {}",
                node(a),
                node(b),
                names[a] == names[b]
            )
        })?;
    }
    ensure(node(0)?.0 == 0, || "rank 0 is not on node 0".into())?;
    let mut listed = Vec::new();
    for index in 0..mesh.node_count() {
        let ranks = mesh.ranks_on_node(Node(index)).map_err(|e| e.to_string())?;
        ensure(ranks.windows(2).all(|w| w[0] < w[1]), || format!("node {index} lists {ranks:?}"))?;
        for &rank in ranks {
            ensure(node(rank.0)? == Node(index), || format!("node {index} lists {rank} of another node"))?;
        }
        listed.extend_from_slice(ranks);
    }
    ensure(listed.len() == mesh.size(), || format!("the nodes list {} ranks", listed.len()))?;
    ensure(mesh.ranks_on_node(Node(mesh.node_count())).is_err(), || "a node past the last".into())
}

fn seed(from: usize, to: usize, tag: u32) -> u64 {
    (from as u64) << 32 | (to as u64) << 8 | u64::from(tag)
}

fn size_for(from: usize, to: usize, ranks: usize) -> usize {
    // Sizes from 0 B up to about 1 MiB, smaller when many ranks share two cores.
    let max = if ranks > 4 { 64 << 10 } else { 1 << 20 };
    (from * 7919 + to * 104_729) % max
}

/// Every ordered pair exchanges checksummed data on two tags (one sent from a borrowed slice, one owned),
/// received in the opposite order to the one sent (so the first arrival waits in the unexpected queue); then
/// an any-source receive at rank 0. First, the mesh's nodes are checked against MPI's.
fn pairs(world: &SimpleCommunicator) -> Result<(), String> {
    let mesh = mesh(world, LONG)?;
    let (me, n) = (mesh.rank().0, mesh.size());
    nodes_agree_with_mpi(world, &mesh)?;
    println!("rank {me}: receiving at {}", mesh.endpoint(mesh.rank()).map_err(|e| e.to_string())?);
    for to in 0..n {
        for tag in [1, 2] {
            let data = pattern(size_for(me, to, n) + tag as usize, seed(me, to, tag));
            // Tag 2 gives its buffer away (zero-copy send); tag 1 lends it.
            let sent = if tag == 2 {
                mesh.send_owned(Rank(to), Tag(tag), data)
            } else {
                mesh.send(Rank(to), Tag(tag), &data)
            };
            sent.map_err(|e| e.to_string())?;
        }
    }
    for from in 0..n {
        for tag in [2, 1] {
            let message = mesh.recv(Source::Rank(Rank(from)), Tag(tag)).map_err(|e| e.to_string())?;
            let expected = pattern(size_for(from, me, n) + tag as usize, seed(from, me, tag));
            ensure(message.source() == Rank(from) && message.tag() == Tag(tag), || "wrong envelope".into())?;
            ensure(checksum(message.data()) == checksum(&expected), || {
                format!("data from rank {from} on tag {tag} corrupted ({} bytes)", message.data().len())
            })?;
        }
    }
    mesh.send(Rank(0), Tag(3), &me.to_le_bytes()).map_err(|e| e.to_string())?;
    if me == 0 {
        let mut seen = vec![false; n];
        for _ in 0..n {
            let mut buffer = [0u8; 8];
            let (source, len) =
                mesh.recv_into(Source::Any, Tag(3), &mut buffer).map_err(|e| e.to_string())?;
            ensure(len == 8 && usize::from_le_bytes(buffer) == source.0, || {
                format!("bad any-source {source}")
            })?;
            ensure(!std::mem::replace(&mut seen[source.0], true), || format!("{source} twice"))?;
        }
    }
    transports_follow_nodes(&mesh)?;
    let token = mesh.token();
    drop(mesh);
    world.barrier();
    segments_removed(token)
}

/// Ranks of one node reach each other through shared memory (unless ZeroMQ is forced), others through
/// ZeroMQ.
fn transports_follow_nodes(mesh: &Mesh) -> Result<(), String> {
    let node = |rank| mesh.node_of(rank).map_err(|e| e.to_string());
    for rank in (0..mesh.size()).map(Rank) {
        let shared = node(rank)? == node(mesh.rank())? && mesh.config().same_node == Transport::SharedMemory;
        let expected = if shared { Transport::SharedMemory } else { Transport::ZeroMq };
        let transport = mesh.transport_to(rank).map_err(|e| e.to_string())?;
        ensure(transport == expected, || format!("rank {rank} reached by {transport:?}, not {expected:?}"))?;
    }
    Ok(())
}

/// Once every rank dropped its mesh, `/dev/shm` holds no segment of the job (named after its token).
fn segments_removed(token: u64) -> Result<(), String> {
    let prefix = format!("lightbeam-mesh-{token:016x}-");
    let left: Vec<String> = std::fs::read_dir("/dev/shm")
        .map_err(|e| e.to_string())?
        .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
        .filter(|name| name.starts_with(&prefix))
        .collect();
    ensure(left.is_empty(), || format!("segments left in /dev/shm: {left:?}"))
}

/// Rank 1's port `base_port + 1` is taken: every rank gets an error naming rank 1 and the port.
fn port_taken(world: &SimpleCommunicator) -> Result<(), String> {
    ensure(world.size() >= 2, || "needs 2 ranks".into())?;
    let listener = (world.rank() == 0).then(|| std::net::TcpListener::bind("127.0.0.1:0").unwrap());
    let mut port = [listener.as_ref().map_or(0, |l| l.local_addr().unwrap().port())];
    world.process_at_rank(0).broadcast_into(&mut port[..]);
    let taken = port[0];
    let config = MeshConfig::default()
        .with_base_port(taken - 1)
        .with_host("127.0.0.1")
        .with_timeout(Duration::from_secs(10));
    let started = Instant::now();
    let error = Mesh::bootstrap(world, config).map(drop).expect_err("bootstrap succeeded on a taken port");
    let text = error.to_string();
    ensure(text.contains("rank 1") && text.contains(&format!("port {taken}")), || {
        format!("vague error: {text}")
    })?;
    println!("rank {}: bootstrap failed in {:?} as expected: {text}", world.rank(), started.elapsed());
    Ok(())
}

/// Rank 1 leaves without sending: rank 0's receive ends with a timeout naming rank 1.
fn peer_exits(world: &SimpleCommunicator) -> Result<(), String> {
    let mesh = mesh(world, Duration::from_secs(2))?;
    if mesh.rank() == Rank(0) {
        let error =
            mesh.recv(Source::Rank(Rank(1)), Tag(9)).expect_err("received from a rank that never sent");
        ensure(matches!(error, Error::Timeout { .. }) && error.to_string().contains("rank 1"), || {
            format!("vague error: {error}")
        })?;
        println!("rank 0: as expected: {error}");
    }
    Ok(())
}

/// A sender outside the mesh (a raw ZeroMQ socket, or a shared-memory client on this node: whichever
/// way rank 0 reaches rank 1) sends garbage and a wrong-token message to rank 1; the mesh drops and counts
/// them, and rank 1 still gets rank 0's message.
fn stray(world: &SimpleCommunicator) -> Result<(), String> {
    let mesh = mesh(world, LONG)?;
    ensure(mesh.size() >= 2, || "needs 2 ranks".into())?;
    if mesh.rank() == Rank(0) {
        let foreign = (0xdead_u64, 0u32, Some((0u32, 5u32)));
        let address = mesh.address_of(Rank(1)).map_err(|e| e.to_string())?;
        match mesh.transport_to(Rank(1)).map_err(|e| e.to_string())? {
            Transport::SharedMemory => {
                let client =
                    SharedMemoryClient::connect(&address, "shm", 0, &Default::default(), &Default::default())
                        .map_err(|e| e.to_string())?;
                let garbage = LbmMeta::new("not a lightbeam message".to_owned());
                client.send(&garbage).into_poll().map_err(|e| e.to_string())?;
                client.send(&LbmMeta::new(foreign)).into_poll().map_err(|e| e.to_string())?;
            }
            _ => {
                let context = zmq::Context::new();
                let raw = context.socket(zmq::PUSH).unwrap();
                raw.set_linger(2000).unwrap();
                raw.connect(&address).unwrap();
                raw.send("not a lightbeam message", 0).unwrap();
                let foreign =
                    lightbeam::wire::encode_header(&[], |out| lightbeam::wire::encode_custom(&foreign, out))
                        .unwrap();
                raw.send(foreign, 0).unwrap();
                drop(raw);
                drop(context); // terminating the context flushes both messages to the socket
            }
        }
        world.barrier();
        mesh.send(Rank(1), Tag(5), b"real").map_err(|e| e.to_string())?;
    } else {
        world.barrier();
    }
    if mesh.rank() == Rank(1) {
        let message = mesh.recv(Source::Rank(Rank(0)), Tag(5)).map_err(|e| e.to_string())?;
        ensure(message.data() == b"real", || "wrong data".into())?;
        // ZeroMQ takes messages from its connections in turn, so the second stray message may still be
        // queued behind the real one: receiving (nothing) on another tag reads it, within a bounded wait.
        for _ in 0..20 {
            if mesh.rejected_messages() >= 2 {
                break;
            }
            let nothing = mesh.recv_timeout(Source::Any, Tag(6), Duration::from_millis(100));
            ensure(matches!(nothing, Err(Error::Timeout { .. })), || "a message on an unused tag".into())?;
        }
        ensure(mesh.rejected_messages() == 2, || {
            format!("{} rejected, expected 2", mesh.rejected_messages())
        })?;
    }
    world.barrier();
    Ok(())
}

/// Even ranks send twenty 1 MiB messages to the next rank and drop their mesh at once: nothing is lost.
fn drop_after_send(world: &SimpleCommunicator) -> Result<(), String> {
    const COUNT: u32 = 20;
    let mesh = mesh(world, LONG)?;
    let (me, n) = (mesh.rank().0, mesh.size());
    if me % 2 == 0 && me + 1 < n {
        for tag in 0..COUNT {
            mesh.send(Rank(me + 1), Tag(tag), &pattern(1 << 20, seed(me, me + 1, tag)))
                .map_err(|e| e.to_string())?;
        }
        drop(mesh);
    } else if me % 2 == 1 {
        for tag in 0..COUNT {
            let message = mesh.recv(Source::Rank(Rank(me - 1)), Tag(tag)).map_err(|e| e.to_string())?;
            ensure(message.data() == pattern(1 << 20, seed(me - 1, me, tag)), || {
                format!("message {tag} corrupted")
            })?;
        }
    }
    world.barrier();
    Ok(())
}

/// How long every rank of the panic scenario waits in its receive: far beyond the time the test allows the
/// job, so that only the panic hook can end it in time.
const PANIC_DEADLINE: Duration = Duration::from_secs(120);

/// How long every rank of the unhooked panic scenario waits after the panic, to show that it lives on.
const UNHOOKED_WAIT: Duration = Duration::from_secs(5);

/// A thread of rank 1 (not its main thread) panics while every rank's main thread waits in a mesh receive
/// with a 120 s deadline. Rank 1's process does not exit on such a panic, so neither mpirun nor srun ends
/// the job on its own: only the mesh's panic hook (`abort_on_panic`, on by default) ends it before then.
fn panic(world: &SimpleCommunicator) -> Result<(), String> {
    let mesh = mesh_for_panic(world, true, PANIC_DEADLINE)?;
    let error = wait_after_a_thread_panics(&mesh)?;
    Err(format!("the job outlived a panic until this rank's deadline: {error}"))
}

/// The panic scenario with `abort_on_panic: false`: every rank is still running (its receive times out)
/// 5 s after the panic, showing that the other scenario's job ends because of the hook.
fn panic_unhooked(world: &SimpleCommunicator) -> Result<(), String> {
    let mesh = mesh_for_panic(world, false, UNHOOKED_WAIT)?;
    let error = wait_after_a_thread_panics(&mesh)?;
    ensure(matches!(error, Error::Timeout { .. }), || format!("not a timeout: {error}"))?;
    println!("rank {}: still running {UNHOOKED_WAIT:?} after the panic", mesh.rank().0);
    Ok(())
}

fn mesh_for_panic(
    world: &SimpleCommunicator,
    abort_on_panic: bool,
    timeout: Duration,
) -> Result<Mesh, String> {
    let config = MeshConfig::default()
        .with_host("127.0.0.1")
        .with_timeout(timeout)
        .with_abort_on_panic(abort_on_panic);
    let mesh = Mesh::bootstrap(world, config).map_err(|e| e.to_string())?;
    world.barrier();
    Ok(mesh)
}

/// Rank 1 announces the panic on standard output (so a test can time what follows), panics on a spawned
/// thread and waits for that thread; then every rank waits for a message no rank sends, and returns the
/// error its receive ended with.
fn wait_after_a_thread_panics(mesh: &Mesh) -> Result<Error, String> {
    if mesh.rank() == Rank(1) {
        println!("rank 1: a thread panics now");
        let thread = std::thread::spawn(|| panic!("rank 1 fails on purpose"));
        ensure(thread.join().is_err(), || "the thread did not panic".into())?;
    }
    let next = Rank((mesh.rank().0 + 1) % mesh.size());
    mesh.recv(Source::Rank(next), Tag(1)).map(drop).err().ok_or_else(|| "a message no rank sent".into())
}

/// Rank 1 never joins the bootstrap: the others give up at their deadline and end the job, no hang.
fn missing_rank(world: &SimpleCommunicator) -> Result<(), String> {
    if world.rank() == 1 {
        std::thread::sleep(Duration::from_secs(60));
        return Err("rank 1 was not stopped".into());
    }
    mesh(world, Duration::from_secs(2)).map(drop)?;
    Err("bootstrap completed without rank 1".into())
}

/// The file through which the intruder job learns the victim job's endpoint (the third argument).
fn rendezvous() -> Result<std::path::PathBuf, String> {
    std::env::args().nth(2).map(Into::into).ok_or_else(|| "needs a rendezvous file".into())
}

/// Job A of the two-jobs test: rank 1 publishes its endpoint, waits until a message from job B (well
/// formed, but with job B's token) was rejected, then receives job A's own message.
fn victim(world: &SimpleCommunicator) -> Result<(), String> {
    let mesh = mesh(world, LONG)?;
    if mesh.rank() == Rank(1) {
        let file = rendezvous()?;
        let endpoint = mesh.address_of(Rank(1)).map_err(|e| e.to_string())?;
        std::fs::write(file.with_extension("tmp"), endpoint).map_err(|e| e.to_string())?;
        std::fs::rename(file.with_extension("tmp"), &file).map_err(|e| e.to_string())?;
        for _ in 0..300 {
            if mesh.rejected_messages() > 0 {
                break;
            }
            let _ = mesh.recv_timeout(Source::Any, Tag(99), Duration::from_millis(100));
        }
        ensure(mesh.rejected_messages() > 0, || "job B's message never came".into())?;
        println!("rank 1: rejected {} message(s) of another job", mesh.rejected_messages());
    }
    world.barrier();
    if mesh.rank() == Rank(0) {
        mesh.send(Rank(1), Tag(5), b"from job A").map_err(|e| e.to_string())?;
    } else if mesh.rank() == Rank(1) {
        let message = mesh.recv(Source::Any, Tag(5)).map_err(|e| e.to_string())?;
        ensure(message.data() == b"from job A", || "job B's data was delivered".into())?;
    }
    world.barrier();
    Ok(())
}

/// Job B of the two-jobs test: sends job A's rank 1 a message in the mesh's own format, on the tag job A
/// uses, carrying job B's real token, as a job sharing the node and its port range could.
fn intruder(world: &SimpleCommunicator) -> Result<(), String> {
    #[derive(serde::Serialize, serde::Deserialize)]
    enum Channel {
        User(u32),
    }
    #[derive(serde::Serialize, serde::Deserialize)]
    struct Envelope {
        token: u64,
        source: u32,
        channel: Option<Channel>,
        failed: bool,
    }
    let mesh = mesh(world, LONG)?;
    let file = rendezvous()?;
    let endpoint = (0..300)
        .find_map(|_| {
            std::fs::read_to_string(&file).ok().or_else(|| {
                std::thread::sleep(Duration::from_millis(100));
                None
            })
        })
        .ok_or("job A never published its endpoint")?;
    let envelope =
        Envelope { token: mesh.token(), source: 0, channel: Some(Channel::User(5)), failed: false };
    let payload = b"from job B";
    let bulk = lightbeam::Bulk::source(payload, Default::default());
    let header =
        lightbeam::wire::encode_header(&[bulk], |out| lightbeam::wire::encode_custom(&envelope, out))
            .map_err(|e| e.to_string())?;
    if endpoint.starts_with("shm://") {
        // Job A's rank 1 listens on shared memory: a process of the same user can write to it.
        let client =
            SharedMemoryClient::connect(&endpoint, "shm", 0, &Default::default(), &Default::default())
                .map_err(|e| e.to_string())?;
        let mut meta = LbmMeta::new(envelope);
        meta.bulks.push(lightbeam::Bulk::source(payload, Default::default()));
        client.send(&meta).into_poll().map_err(|e| e.to_string())?;
    } else {
        let context = zmq::Context::new();
        let push = context.socket(zmq::PUSH).map_err(|e| e.to_string())?;
        push.set_linger(2000).map_err(|e| e.to_string())?;
        push.connect(&endpoint).map_err(|e| e.to_string())?;
        push.send_multipart([&header[..], &payload[..]], 0).map_err(|e| e.to_string())?;
        drop(push);
    }
    println!("rank {}: sent job A a message with job B's token {:#x}", world.rank(), mesh.token());
    Ok(())
}
