//! Forming the mesh: every rank binds its servers and learns every other rank's record (its node, its
//! process and its endpoints) through a [`Bootstrap`], which gathers one byte string per rank. MPI's
//! all-gather is one bootstrap ([`Mpi`]); ranks as threads of one process ([`InProcess`]) are another.

#![forbid(unsafe_code)]

mod host;
mod in_process;
#[cfg(feature = "mpi")]
mod mpi;

use std::time::Instant;

pub use self::in_process::InProcess;
#[cfg(feature = "mpi")]
pub use self::mpi::Mpi;
use super::config::MeshConfig;
use super::net::link::Route;
use super::segments::{draw_token, segment_prefix, SEGMENT_PREFIX};
use super::topology::NodeId;
use crate::error::{Error, Result};
use crate::shm::{Process, Segment};
use crate::transport::{
    same_node::{DEFAULT_RING_SIZE, SCHEME},
    Endpoint, Server, SharedMemoryServer, Transport, ZeroMqServer,
};
use crate::wire;

/// How the ranks of a job find each other, once, when the mesh forms: each rank knows its rank and the
/// job's size, and they can all-gather one byte string each. Nothing else of the job's launcher is
/// used afterwards.
pub trait Bootstrap {
    /// This rank, from 0 to `size() - 1`.
    fn rank(&self) -> usize;

    /// The number of ranks.
    fn size(&self) -> usize;

    /// Every rank's `mine`, by rank. Collective: every rank calls it, as often as the others. Fails (or
    /// ends the job, as MPI must) when the ranks have not all joined by `deadline`.
    fn all_gather(&self, mine: &[u8], deadline: Instant) -> Result<Vec<Vec<u8>>>;

    /// The host name of this rank's node: ranks of one node share it (and a running kernel and a pid
    /// namespace). By default this machine's host name.
    fn host_name(&self) -> Result<String> {
        host::machine_host_name()
    }
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
    /// The rank allows single copies ([`MeshConfig::single_copy`]): collectives that every rank of a
    /// node must run alike read in place only when all of them do.
    single_copy: bool,
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
    pub(super) shared_memory: Option<String>,
    /// The rank allows single copies.
    pub(super) single_copy: bool,
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
        .map(SharedMemoryServer::with_short_messages)
}

/// The cores of this node that run processes: the online CPUs (not the ones this process may use, which
/// is one for a rank bound to a core, as Open MPI and Slurm bind them), or what this process may use
/// where the kernel does not say.
fn node_cores() -> usize {
    let online = std::fs::read_to_string("/sys/devices/system/cpu/online").ok().and_then(|list| {
        list.trim().split(',').try_fold(0usize, |count, range| {
            let (first, last) = range.split_once('-').unwrap_or((range, range));
            let (first, last) = (first.parse::<usize>().ok()?, last.parse::<usize>().ok()?);
            Some(count + last.checked_sub(first)? + 1)
        })
    });
    online.filter(|&n| n > 0).unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
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
    let Record { node, pid, start, single_copy, .. } = record;
    Ok(Peer { node, pid, start, zeromq, shared_memory: None, single_copy })
}

/// Binds this rank's servers and all-gathers every rank's record, in three rounds: the first agrees on
/// the job token (rank 0's), the second tells each rank's node and ZeroMQ endpoint, so that each rank
/// can size its shared-memory server for the ranks of its node (a channel for each), which the third
/// tells. Every rank takes part in each round even when its bind failed, so that all of them learn of
/// the failure instead of waiting.
pub(super) fn bind_and_gather(boot: &dyn Bootstrap, config: &MeshConfig) -> Result<(Bound, Vec<Peer>, u64)> {
    let (rank, size) = (boot.rank(), boot.size());
    if rank >= size {
        return Err(Error::InvalidArgument(format!("the bootstrap says rank {rank} of {size} ranks")));
    }
    let deadline = Instant::now() + config.timeout;
    let token = agree_on_token(boot, deadline)?;

    // A host name that cannot be read only matters when no address is given to bind.
    let name = boot.host_name();
    let bound = host::local_host(config, name.as_deref().map_err(Clone::clone)).and_then(|host| {
        let endpoint = host::local_endpoint(config, rank, &host, token)?;
        let node = NodeId::local(name.as_deref().unwrap_or_default());
        Ok((node, ZeroMqServer::bind(&endpoint, &config.options)?))
    });
    let announcement: Announcement = match &bound {
        Ok((node, server)) => {
            let endpoints = vec![Server::address(server).to_owned()];
            let me = Process::current();
            let single_copy = config.single_copy;
            Ok(Record { node: node.clone(), pid: me.pid, start: me.start, single_copy, endpoints })
        }
        Err(err) => Err(err.to_string()),
    };
    let mut peers = gather(boot, &announcement, deadline, read_announcement)?;
    // Two ranks cannot bind one endpoint: a bootstrap that says so mixed its ranks up.
    for (rank, peer) in peers.iter().enumerate() {
        if let Some(twin) = peers[..rank].iter().position(|other| other.zeromq == peer.zeromq) {
            let endpoint = &peer.zeromq;
            return Err(Error::Mesh(format!("ranks {twin} and {rank} announced one endpoint, {endpoint}")));
        }
    }

    let ranks_here = peers.iter().filter(|peer| peer.node == peers[rank].node).count();
    // How the waits of this process balance polling, yielding and sleeping.
    crate::transport::same_node::set_ranks_per_core(ranks_here, node_cores());
    let shared_memory = (config.same_node == Transport::SharedMemory)
        .then(|| bind_shared_memory(config, rank, token, ranks_here));
    let offer: SharedAnnouncement = match &shared_memory {
        None => Ok(None),
        Some(Ok(server)) => Ok(Some(Server::address(server).to_owned())),
        Some(Err(err)) => Err(err.to_string()),
    };
    let addresses = gather(boot, &offer, deadline, read_shared_announcement)?;
    for (peer, address) in peers.iter_mut().zip(addresses) {
        peer.shared_memory = address;
    }
    Ok((Bound { zeromq: bound?.1, shared_memory: shared_memory.transpose()? }, peers, token))
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

/// Every rank's `mine`, by rank, checked to hold one string per rank and this rank's own in its place.
fn gathered(boot: &dyn Bootstrap, mine: &[u8], deadline: Instant) -> Result<Vec<Vec<u8>>> {
    let strings = boot.all_gather(mine, deadline)?;
    let broken = |what: String| Err(Error::Mesh(format!("the bootstrap's all-gather {what}")));
    if strings.len() != boot.size() {
        return broken(format!("returned {} strings for {} ranks", strings.len(), boot.size()));
    }
    if strings[boot.rank()] != mine {
        return broken(format!("put another string in the place of rank {}", boot.rank()));
    }
    Ok(strings)
}

/// The job token: rank 0's random number, all-gathered with every rank's count of ranks, which must
/// agree.
fn agree_on_token(boot: &dyn Bootstrap, deadline: Instant) -> Result<u64> {
    let mine = [draw_token(), boot.size() as u64].map(u64::to_le_bytes).concat();
    let numbers = |bytes: &[u8]| -> Option<(u64, u64)> {
        let (token, size) = bytes.split_at_checked(8)?;
        Some((u64::from_le_bytes(token.try_into().ok()?), u64::from_le_bytes(size.try_into().ok()?)))
    };
    let gathered = gathered(boot, &mine, deadline)?;
    let mut token = None;
    for (rank, bytes) in gathered.iter().enumerate() {
        match numbers(bytes) {
            Some((drawn, size)) if size == boot.size() as u64 => token = token.or(Some(drawn)),
            Some((_, size)) => {
                let ranks = boot.size();
                return Err(Error::Mesh(format!(
                    "rank {rank} counts {size} ranks where this rank counts {ranks}"
                )));
            }
            None => return Err(Error::Mesh(format!("rank {rank} sent no job token to the bootstrap"))),
        }
    }
    token.ok_or_else(|| Error::Mesh("the bootstrap gathered no job token".into()))
}

/// All-gathers `mine` from every rank within `deadline` and reads each rank's with `read`; fails naming
/// every rank whose record says it failed or cannot be read.
fn gather<T: serde::Serialize, U>(
    boot: &dyn Bootstrap,
    mine: &T,
    deadline: Instant,
    read: impl Fn(usize, &[u8]) -> std::result::Result<U, String>,
) -> Result<Vec<U>> {
    let mut encoded = Vec::new();
    wire::encode_custom(mine, &mut encoded)?;
    let (read, failures): (Vec<_>, Vec<_>) = gathered(boot, &encoded, deadline)?
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

#[cfg(test)]
mod tests {
    use super::*;

    fn encoded(announcement: &Announcement) -> Vec<u8> {
        let mut out = Vec::new();
        wire::encode_custom(announcement, &mut out).unwrap();
        out
    }

    #[test]
    fn a_record_is_read_back_checked_and_any_fault_names_its_rank() {
        let record = |endpoints: &[&str]| Record {
            node: NodeId::named("here"),
            pid: 7,
            start: 9,
            single_copy: true,
            endpoints: endpoints.iter().map(|e| e.to_string()).collect(),
        };
        let good = encoded(&Ok(record(&["tcp://127.0.0.1:5555", "ipc:///tmp/lightbeam-x"])));
        let peer = read_announcement(2, &good).unwrap();
        assert_eq!(peer.node, NodeId::named("here"));
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
            with_shm(NodeId::named("here")),
            zeromq_only,
            with_shm(NodeId::named("elsewhere")),
            with_shm(NodeId::named("here")),
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
