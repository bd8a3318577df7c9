//! Forming the mesh: choose this rank's host, bind its server, and all-gather every rank's endpoint over MPI.

#![forbid(unsafe_code)]

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::net::ToSocketAddrs;
use std::time::{Duration, Instant};

use mpi::datatype::PartitionMut;
use mpi::request::{Request, Scope};
use mpi::traits::*;

use super::MeshConfig;
use crate::error::{Error, Result};
use crate::transport::{Endpoint, Protocol, Server, ZeroMqServer};

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

/// What each rank tells the others: its endpoint, or why it has none.
type Announcement = std::result::Result<String, String>;

/// Binds this rank's server and all-gathers every rank's endpoint. Every rank takes part in the gather even
/// when its bind failed, so that all of them learn of the failure instead of waiting.
pub(super) fn bind_and_gather<C: Communicator>(
    comm: &C,
    config: &MeshConfig,
) -> Result<(ZeroMqServer, Vec<Endpoint>, u64)> {
    let rank = comm.rank() as usize;
    let deadline = Instant::now() + config.timeout;
    let mut token = [draw_token()];
    mpi::request::scope(|scope| {
        let request = comm.process_at_rank(0).immediate_broadcast_into(scope, &mut token[..]);
        complete_or_abort(comm, request, deadline, "sharing the job token");
    });
    let token = token[0];

    let bound = local_host(config)
        .and_then(|host| local_endpoint(config, rank, &host, token))
        .and_then(|endpoint| ZeroMqServer::bind(&endpoint, &config.options));
    let announcement: Announcement = match &bound {
        Ok(server) => Ok(server.address().to_owned()),
        Err(err) => Err(err.to_string()),
    };
    let encoded = postcard::to_stdvec(&announcement).expect("strings encode");
    let announcements = all_gather_strings(comm, &encoded, deadline)?;

    let mut endpoints = Vec::with_capacity(announcements.len());
    let mut failures = Vec::new();
    for (peer, bytes) in announcements.iter().enumerate() {
        match postcard::from_bytes::<Announcement>(bytes) {
            Ok(Ok(uri)) => endpoints.push(Endpoint::parse(&uri)?),
            Ok(Err(reason)) => failures.push(format!("rank {peer}: {reason}")),
            Err(e) => failures.push(format!("rank {peer}: unreadable announcement: {e}")),
        }
    }
    if !failures.is_empty() {
        return Err(Error::Mesh(format!(
            "bootstrap failed on {} rank(s): {}",
            failures.len(),
            failures.join("; ")
        )));
    }
    Ok((bound?, endpoints, token))
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
    let my_len = i32::try_from(mine.len()).map_err(|_| Error::Mesh("announcement too long".into()))?;
    let mut lengths = vec![0i32; size];
    mpi::request::scope(|scope| {
        let request = comm.immediate_all_gather_into(scope, &my_len, &mut lengths[..]);
        complete_or_abort(comm, request, deadline, "gathering endpoint lengths");
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
        complete_or_abort(comm, request, deadline, "gathering endpoints");
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
}
