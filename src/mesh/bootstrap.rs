//! Forming the mesh: choose this rank's host, bind its server, and all-gather a record per rank (its node
//! and its endpoints) over MPI.

#![forbid(unsafe_code)]

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::net::ToSocketAddrs;
use std::time::{Duration, Instant};

use mpi::datatype::PartitionMut;
use mpi::request::{Request, Scope};
use mpi::traits::*;

use super::link::Route;
use super::topology::NodeId;
use super::MeshConfig;
use crate::error::{Error, Result};
use crate::shm::{Process, Segment};
use crate::transport::{
    same_node::{DEFAULT_RING_SIZE, SCHEME},
    Endpoint, Protocol, Server, SharedMemoryServer, Transport, ZeroMqServer,
};
use crate::wire;

/// The environment variable that overrides the host a rank binds and announces.
pub const HOST_ENV: &str = "LIGHTBEAM_HOST";

/// The address this rank binds and announces: `LIGHTBEAM_HOST`, else the config's host, else this machine's
/// host name resolved to an IP address. A host given as a subnet (`10.1.0.0/16`) means this node's address
/// in that subnet, so one setting serves every node of a job.
pub(super) fn local_host(config: &MeshConfig) -> Result<String> {
    if let Some(host) = std::env::var(HOST_ENV).ok().filter(|h| !h.is_empty()).or_else(|| config.host.clone())
    {
        return resolve(&host);
    }
    let name =
        hostname::get().map_err(|e| Error::Mesh(format!("cannot read this machine's host name: {e}")))?;
    resolve(&name.to_string_lossy())
}

fn resolve(host: &str) -> Result<String> {
    if host.parse::<std::net::IpAddr>().is_ok() {
        return Ok(host.to_owned());
    }
    if let Some((network, bits)) = host.split_once('/') {
        return address_in_subnet(host, network, bits);
    }
    let address =
        (host, 0).to_socket_addrs().ok().and_then(|mut addrs| addrs.find(|a| a.is_ipv4())).ok_or_else(
            || Error::Mesh(format!("host name {host:?} does not resolve to an IPv4 address: set {HOST_ENV}")),
        )?;
    Ok(address.ip().to_string())
}

/// This node's IPv4 address in the subnet `network/bits`: the source address the kernel picks for a
/// destination in the subnet (a UDP `connect` only consults the routing table; it sends nothing).
fn address_in_subnet(spec: &str, network: &str, bits: &str) -> Result<String> {
    let invalid = |reason: String| Error::InvalidAddress { addr: spec.to_owned(), reason };
    let network: std::net::Ipv4Addr =
        network.parse().map_err(|_| invalid("not an IPv4 subnet such as 10.1.0.0/16".into()))?;
    let bits: u32 = bits
        .parse()
        .ok()
        .filter(|b| (1..=32).contains(b))
        .ok_or_else(|| invalid("bad prefix length".into()))?;
    let mask = u32::MAX << (32 - bits);
    let probe = std::net::Ipv4Addr::from((u32::from(network) & mask) | (!mask & 1));
    let local = std::net::UdpSocket::bind("0.0.0.0:0")
        .and_then(|socket| socket.connect((probe, 9)).and_then(|()| socket.local_addr()))
        .map_err(|e| invalid(format!("no route to it from this node: {e}")))?;
    match local.ip() {
        std::net::IpAddr::V4(ip) if u32::from(ip) & mask == u32::from(network) & mask => Ok(ip.to_string()),
        other => Err(invalid(format!("this node has no address in it (it would use {other})"))),
    }
}

/// The endpoint this rank binds.
pub(super) fn local_endpoint(config: &MeshConfig, rank: usize, host: &str, token: u64) -> Result<Endpoint> {
    match config.protocol {
        Protocol::Tcp => {
            let port = match config.base_port {
                0 => 0,
                base => u16::try_from(usize::from(base) + rank).map_err(|_| {
                    Error::InvalidArgument(format!("base port {base} + rank {rank} is past port 65535"))
                })?,
            };
            Endpoint::with_protocol(host, Protocol::Tcp, port)
        }
        Protocol::Ipc => {
            let path = std::env::temp_dir().join(format!("lightbeam-{token:016x}-{rank}"));
            Endpoint::with_protocol(&path.to_string_lossy(), Protocol::Ipc, 0)
        }
        Protocol::Inproc => {
            Err(Error::InvalidArgument("a mesh spans processes: use tcp or ipc, not inproc".into()))
        }
    }
}

/// A random job token: rank 0's is shared with every rank.
pub(super) fn draw_token() -> u64 {
    let mut hasher = RandomState::new().build_hasher();
    hasher.write_u32(std::process::id());
    hasher.finish()
}

/// What each rank tells the others about itself: its node and the endpoints it receives on (its
/// server's first), or why it has none.
type Announcement = std::result::Result<Record, String>;

/// A rank's record as it travels in the all-gather.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct Record {
    node: NodeId,
    pid: u32,
    /// The process's start time (see [`Process`]), so that a later process reusing the pid is not
    /// taken for it.
    start: u64,
    endpoints: Vec<String>,
}

/// A rank as every rank knows it after the bootstrap.
#[derive(Debug)]
pub(super) struct Peer {
    /// The node the rank runs on.
    pub(super) node: NodeId,
    /// The rank's process on its node (ranks of one node read each other's memory by it).
    pub(super) pid: u32,
    /// The process's start time on its node, to tell it from a later process with its pid.
    pub(super) start: u64,
    /// The rank's ZeroMQ server.
    pub(super) zeromq: Endpoint,
    /// The rank's shared-memory server (`shm://name`), when it has one.
    shared_memory: Option<String>,
}

/// The servers this rank bound: ZeroMQ's always, shared memory's unless ZeroMQ is forced.
pub(super) struct Bound {
    pub(super) zeromq: ZeroMqServer,
    pub(super) shared_memory: Option<SharedMemoryServer>,
}

/// How rank `me` reaches each rank (itself included): through shared memory when both are on one node
/// and both have a shared-memory server, else through ZeroMQ. The rule is symmetric, so two ranks
/// always agree on the transport between them.
pub(super) fn routes(peers: &[Peer], me: usize) -> Vec<Route> {
    let mine = &peers[me];
    peers
        .iter()
        .map(|peer| match (&mine.shared_memory, &peer.shared_memory) {
            (Some(_), Some(address)) if peer.node == mine.node => Route::SharedMemory(address.clone()),
            _ => Route::ZeroMq(peer.zeromq.clone()),
        })
        .collect()
}

/// The prefix of the mesh's shared-memory segments (after `lightbeam-`).
const SEGMENT_PREFIX: &str = "mesh-";

/// The start of the name of every shared-memory segment that rank `rank` of job `token` makes: its
/// server's (`mesh-<job>-<rank>-<token>`) and its offer word's (`mesh-<job>-<rank>-word-<token>`).
pub(super) fn segment_prefix(token: u64, rank: usize) -> String {
    format!("{SEGMENT_PREFIX}{token:016x}-{rank}-")
}

/// Removes the shared-memory segments of rank `rank` of job `token` whose creator is gone (a killed
/// rank's, which nothing else removes until the next bootstrap on the node); returns how many. Those of
/// a live process are left alone.
pub(super) fn remove_segments_of_dead(token: u64, rank: usize) -> usize {
    let prefix = segment_prefix(token, rank);
    match Segment::reclaim_stale_where(|name| name.starts_with(&prefix)) {
        Ok(removed) => removed,
        Err(error) => {
            log::warn!("lightbeam: could not remove the segments of lost rank {rank}: {error}");
            0
        }
    }
}

/// Binds this rank's shared-memory server, named after the job token and rank, with a channel for each
/// of the `ranks_here` ranks of its node (itself included), after removing the segments that ranks of
/// dead jobs left behind on this node. Its rings shrink from 512 KiB as the node's ranks grow past 64,
/// so that a segment stays near 32 MiB (never below 64 KiB a ring). The segment's memory (512 KiB a rank
/// of the node, up to about 32 MiB) is reserved in /dev/shm at bind: a node without room there fails the
/// bootstrap with the size needed.
fn bind_shared_memory(
    config: &MeshConfig,
    rank: usize,
    token: u64,
    ranks_here: usize,
) -> Result<SharedMemoryServer> {
    match Segment::reclaim_stale_where(|name| name.starts_with(SEGMENT_PREFIX)) {
        Ok(0) => {}
        Ok(reclaimed) => log::info!("lightbeam: removed {reclaimed} segment(s) left by ranks of dead jobs"),
        // Leftovers only cost memory: a failure to remove them does not stop this job.
        Err(error) => log::warn!("lightbeam: could not remove the segments of dead jobs: {error}"),
    }
    let name = segment_prefix(token, rank);
    let name = name.trim_end_matches('-');
    let ring = ((32 << 20) / ranks_here.max(1)).clamp(64 << 10, DEFAULT_RING_SIZE);
    // The ring: a power of two, at most the size asked.
    let shape = config.shm_options().with_channels(ranks_here.max(1)).with_ring_size(1 << ring.ilog2());
    SharedMemoryServer::bind(name, SCHEME, 0, &config.options, &shape)
}

/// Reads the record rank `rank` announced, or says (naming the rank) why it has none or cannot be read.
fn read_announcement(rank: usize, bytes: &[u8]) -> std::result::Result<Peer, String> {
    let record = match wire::decode_custom::<Announcement>(bytes) {
        Ok(Ok(record)) => record,
        Ok(Err(reason)) => return Err(format!("rank {rank}: {reason}")),
        Err(e) => return Err(format!("rank {rank}: unreadable record: {e}")),
    };
    let zeromq = match record.endpoints.first().map(|uri| Endpoint::parse(uri)) {
        Some(Ok(endpoint)) => endpoint,
        Some(Err(e)) => return Err(format!("rank {rank}: unreadable endpoint: {e}")),
        None => return Err(format!("rank {rank}: announced no ZeroMQ endpoint")),
    };
    // The shared-memory server comes in the second round.
    Ok(Peer { node: record.node, pid: record.pid, start: record.start, zeromq, shared_memory: None })
}

/// Binds this rank's servers and all-gathers every rank's record, in two rounds: the first tells each
/// rank's node and ZeroMQ endpoint, so that each rank can size its shared-memory server for the ranks of
/// its node (a channel for each), which the second round tells. Every rank takes part in each round even
/// when its bind failed, so that all of them learn of the failure instead of waiting.
pub(super) fn bind_and_gather<C: Communicator>(
    comm: &C,
    config: &MeshConfig,
) -> Result<(Bound, Vec<Peer>, u64)> {
    let rank = comm.rank() as usize;
    let deadline = Instant::now() + config.timeout;
    let mut token = [draw_token()];
    mpi::request::scope(|scope| {
        let request = comm.process_at_rank(0).immediate_broadcast_into(scope, &mut token[..]);
        complete_or_abort(comm, request, deadline, "sharing the job token");
    });
    let token = token[0];

    let zeromq = local_host(config)
        .and_then(|host| local_endpoint(config, rank, &host, token))
        .and_then(|endpoint| ZeroMqServer::bind(&endpoint, &config.options));
    let announcement: Announcement = match &zeromq {
        Ok(server) => {
            let endpoints = vec![Server::address(server).to_owned()];
            let me = Process::current();
            Ok(Record { node: NodeId::local(), pid: me.pid, start: me.start, endpoints })
        }
        Err(err) => Err(err.to_string()),
    };
    let mut peers = gather(comm, &announcement, deadline, read_announcement)?;

    let ranks_here = peers.iter().filter(|peer| peer.node == peers[rank].node).count();
    let shared_memory = (config.same_node == Transport::SharedMemory)
        .then(|| bind_shared_memory(config, rank, token, ranks_here));
    let offer: SharedAnnouncement = match &shared_memory {
        None => Ok(None),
        Some(Ok(server)) => Ok(Some(Server::address(server).to_owned())),
        Some(Err(err)) => Err(err.to_string()),
    };
    let addresses = gather(comm, &offer, deadline, read_shared_announcement)?;
    for (peer, address) in peers.iter_mut().zip(addresses) {
        peer.shared_memory = address;
    }
    Ok((Bound { zeromq: zeromq?, shared_memory: shared_memory.transpose()? }, peers, token))
}

/// What each rank tells the others in the second round: its shared-memory server's address, none (it
/// talks ZeroMQ only), or why it could not bind one.
type SharedAnnouncement = std::result::Result<Option<String>, String>;

/// Reads the shared-memory address rank `rank` announced, or says why it has none that can be used.
fn read_shared_announcement(rank: usize, bytes: &[u8]) -> std::result::Result<Option<String>, String> {
    match wire::decode_custom::<SharedAnnouncement>(bytes) {
        Ok(Ok(Some(address))) if address.starts_with(&format!("{SCHEME}://")) => Ok(Some(address)),
        Ok(Ok(Some(address))) => Err(format!("rank {rank}: {address:?} is not a shared-memory address")),
        Ok(Ok(None)) => Ok(None),
        Ok(Err(reason)) => Err(format!("rank {rank}: {reason}")),
        Err(e) => Err(format!("rank {rank}: unreadable record: {e}")),
    }
}

/// All-gathers `mine` from every rank within `deadline` and reads each rank's with `read`; fails naming
/// every rank whose record says it failed or cannot be read.
fn gather<C: Communicator, T: serde::Serialize, U>(
    comm: &C,
    mine: &T,
    deadline: Instant,
    read: impl Fn(usize, &[u8]) -> std::result::Result<U, String>,
) -> Result<Vec<U>> {
    let mut encoded = Vec::new();
    wire::encode_custom(mine, &mut encoded)?;
    let (read, failures): (Vec<_>, Vec<_>) = all_gather_strings(comm, &encoded, deadline)?
        .iter()
        .enumerate()
        .map(|(rank, bytes)| read(rank, bytes))
        .partition(std::result::Result::is_ok);
    if !failures.is_empty() {
        let failures: Vec<String> = failures.into_iter().filter_map(std::result::Result::err).collect();
        return Err(Error::Mesh(format!(
            "bootstrap failed on {} rank(s): {}",
            failures.len(),
            failures.join("; ")
        )));
    }
    Ok(read.into_iter().filter_map(std::result::Result::ok).collect())
}

/// Waits for an MPI request until `deadline`. Past it the job is aborted: a rank that never joins the
/// bootstrap cannot be recovered from inside MPI, and ending the job beats every rank waiting forever.
fn complete_or_abort<'a, C: Communicator, R: ?Sized, S: Scope<'a>>(
    comm: &C,
    mut request: Request<'a, R, S>,
    deadline: Instant,
    what: &str,
) {
    loop {
        request = match request.test() {
            Ok(_) => return,
            Err(pending) => pending,
        };
        if Instant::now() >= deadline {
            eprintln!(
                "lightbeam: rank {}: mesh bootstrap timed out {what}: a rank did not join Mesh::bootstrap \
                 within MeshConfig::timeout; aborting the job",
                comm.rank()
            );
            comm.abort(1);
        }
        std::thread::sleep(Duration::from_micros(100));
    }
}

/// All-gathers one byte string per rank, within `deadline`.
fn all_gather_strings<C: Communicator>(comm: &C, mine: &[u8], deadline: Instant) -> Result<Vec<Vec<u8>>> {
    let size = comm.size() as usize;
    let my_len = i32::try_from(mine.len()).map_err(|_| Error::Mesh("record too long".into()))?;
    let mut lengths = vec![0i32; size];
    mpi::request::scope(|scope| {
        let request = comm.immediate_all_gather_into(scope, &my_len, &mut lengths[..]);
        complete_or_abort(comm, request, deadline, "gathering record lengths");
    });
    let displacements: Vec<i32> = lengths
        .iter()
        .scan(0i32, |offset, &len| {
            let start = *offset;
            *offset += len;
            Some(start)
        })
        .collect();
    let total = lengths.iter().map(|&l| l as usize).sum();
    let mut gathered = vec![0u8; total];
    let mut partition = PartitionMut::new(&mut gathered[..], &lengths[..], &displacements[..]);
    mpi::request::scope(|scope| {
        let request = comm.immediate_all_gather_varcount_into(scope, mine, &mut partition);
        complete_or_abort(comm, request, deadline, "gathering records");
    });
    Ok(displacements
        .iter()
        .zip(&lengths)
        .map(|(&d, &l)| gathered[d as usize..(d + l) as usize].to_vec())
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_resolve_from_addresses_and_subnets() {
        assert_eq!(resolve("127.0.0.5").unwrap(), "127.0.0.5");
        assert_eq!(resolve("127.0.0.0/8").unwrap(), "127.0.0.1");
        for bad in ["127.0.0.0/40", "nonsense/8", "::1/128"] {
            assert!(matches!(resolve(bad), Err(Error::InvalidAddress { .. })), "{bad}");
        }
    }

    fn encoded(announcement: &Announcement) -> Vec<u8> {
        let mut out = Vec::new();
        wire::encode_custom(announcement, &mut out).unwrap();
        out
    }

    #[test]
    fn a_record_is_read_back_checked_and_any_fault_names_its_rank() {
        let record = |endpoints: &[&str]| Record {
            node: NodeId::local(),
            pid: 7,
            start: 9,
            endpoints: endpoints.iter().map(|e| e.to_string()).collect(),
        };
        let good = encoded(&Ok(record(&["tcp://127.0.0.1:5555", "ipc:///tmp/lightbeam-x"])));
        let peer = read_announcement(2, &good).unwrap();
        assert_eq!(peer.node, NodeId::local());
        assert_eq!(peer.zeromq.to_string(), "tcp://127.0.0.1:5555");
        // The second round's records: an address, none, or a failure naming the rank.
        let shared = |announced: &SharedAnnouncement| {
            let mut out = Vec::new();
            wire::encode_custom(announced, &mut out).unwrap();
            read_shared_announcement(5, &out)
        };
        assert_eq!(shared(&Ok(Some("shm://mesh-1-2-3".into()))), Ok(Some("shm://mesh-1-2-3".into())));
        assert_eq!(shared(&Ok(None)), Ok(None));
        assert_eq!(shared(&Err("no memory".into())), Err("rank 5: no memory".into()));
        assert!(shared(&Ok(Some("tcp://1.2.3.4:5".into()))).unwrap_err().starts_with("rank 5: "));
        // Ranks reach each other through shared memory only when both have it and share the node.
        let with_shm = |node| Peer {
            node,
            shared_memory: Some("shm://mesh-1-2-3".into()),
            ..read_announcement(3, &good).unwrap()
        };
        let zeromq_only = read_announcement(0, &good).unwrap();
        let peers = [
            with_shm(NodeId::local()),
            zeromq_only,
            with_shm(NodeId::named("elsewhere")),
            with_shm(NodeId::local()),
        ];
        let transports = |me| routes(&peers, me).iter().map(Route::transport).collect::<Vec<_>>();
        let (shm, zmq) = (Transport::SharedMemory, Transport::ZeroMq);
        assert_eq!(transports(0), [shm, zmq, zmq, shm]);
        assert_eq!(transports(1), [zmq, zmq, zmq, zmq]);
        assert_eq!(transports(2), [zmq, zmq, shm, zmq]);

        let failed = encoded(&Err("port 5555 in use".into()));
        assert_eq!(read_announcement(1, &failed).unwrap_err(), "rank 1: port 5555 in use");
        let mut trailing = good.clone();
        trailing.push(0);
        let faults = [
            (&b"\xff\xff garbage"[..], "unreadable record"),
            (&good[..good.len() - 3], "unreadable record"),
            (&trailing[..], "unreadable record"),
            (&encoded(&Ok(record(&[])))[..], "announced no ZeroMQ endpoint"),
            (&encoded(&Ok(record(&["smoke://signals"])))[..], "unreadable endpoint"),
        ];
        for (bytes, reason) in faults {
            let error = read_announcement(3, bytes).unwrap_err();
            assert!(error.starts_with("rank 3: ") && error.contains(reason), "{error}");
        }
    }
}
