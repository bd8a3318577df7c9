//! Which address a rank binds and announces, and the endpoint of its ZeroMQ server.

#![forbid(unsafe_code)]

use std::net::ToSocketAddrs;

use super::super::config::{MeshConfig, HOST_ENV};
use crate::error::{Error, Result};
use crate::transport::{Endpoint, Protocol};

/// The address this rank binds and announces: `LIGHTBEAM_HOST`, else the config's host, else the node's
/// `host_name` resolved to an IP address. A host given as a subnet (`10.1.0.0/16`) means this node's
/// address in that subnet, so one setting serves every node of a job.
pub(super) fn local_host(config: &MeshConfig, host_name: Result<&str>) -> Result<String> {
    let given = std::env::var(HOST_ENV).ok().filter(|h| !h.is_empty()).or_else(|| config.host.clone());
    match given {
        Some(host) => resolve(&host),
        None => resolve(host_name?),
    }
}

/// This machine's host name.
pub(super) fn machine_host_name() -> Result<String> {
    let name =
        hostname::get().map_err(|e| Error::Mesh(format!("cannot read this machine's host name: {e}")))?;
    Ok(name.to_string_lossy().into_owned())
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
