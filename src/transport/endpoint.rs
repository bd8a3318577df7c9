//! [`Protocol`] and [`Endpoint`]: where a server binds and a client connects.

#![forbid(unsafe_code)]

use std::fmt;
use std::str::FromStr;

use crate::error::{Error, Result};

/// The longest ipc path a Unix socket address holds (sun_path less its terminating NUL).
const MAX_IPC_PATH: usize = 107;

/// How bytes travel: between hosts (`tcp`), between processes on one host (`ipc`), between threads
/// (`inproc`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Protocol {
    /// TCP; the address is an IP address (or, for clients, a resolvable host name).
    Tcp,
    /// Unix domain sockets; the address is a filesystem path.
    Ipc,
    /// Threads of one process sharing Lightbeam's ZeroMQ context; the address is a name.
    Inproc,
}

impl FromStr for Protocol {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "tcp" => Ok(Self::Tcp),
            "ipc" => Ok(Self::Ipc),
            "inproc" => Ok(Self::Inproc),
            other => Err(Error::UnknownProtocol(other.to_owned())),
        }
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Tcp => "tcp",
            Self::Ipc => "ipc",
            Self::Inproc => "inproc",
        })
    }
}

/// A parsed, checked endpoint such as `tcp://127.0.0.1:5555`, `ipc:///tmp/lbm.sock` or `inproc://queue`.
///
/// For tcp, port 0 asks the server for any free port; the server's `address()` reports the real one.
/// For ipc and inproc, a non-zero port is appended to the path or name as `.port`, so one base path serves
/// several ranks the way `base_port + rank` does for tcp.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Endpoint {
    protocol: Protocol,
    address: String,
    port: u16,
}

impl Endpoint {
    /// The endpoint for `addr`, `protocol` (`"tcp"`, `"ipc"` or `"inproc"`) and `port`, as the C++ factory
    /// takes them.
    pub fn new(addr: &str, protocol: &str, port: u16) -> Result<Self> {
        Self::with_protocol(addr, protocol.parse()?, port)
    }

    /// As [`Endpoint::new`], with the protocol already parsed.
    pub fn with_protocol(addr: &str, protocol: Protocol, port: u16) -> Result<Self> {
        let invalid =
            |reason: &str| Error::InvalidAddress { addr: addr.to_owned(), reason: reason.to_owned() };
        if addr.is_empty() {
            return Err(invalid("empty address"));
        }
        if addr.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(invalid("contains white space or control characters"));
        }
        let address = match protocol {
            Protocol::Tcp => {
                let host = addr.trim_start_matches('[').trim_end_matches(']');
                if host.contains(':') && host.parse::<std::net::Ipv6Addr>().is_err() {
                    return Err(invalid("not an IP address or host name (give the port separately)"));
                }
                if !host.contains(':') {
                    check_host(host).map_err(invalid)?;
                }
                host.to_owned()
            }
            Protocol::Ipc | Protocol::Inproc if port != 0 => format!("{addr}.{port}"),
            Protocol::Ipc | Protocol::Inproc => addr.to_owned(),
        };
        if protocol == Protocol::Ipc && address.len() > MAX_IPC_PATH {
            return Err(invalid(&format!("ipc path longer than {MAX_IPC_PATH} bytes")));
        }
        let port = if protocol == Protocol::Tcp { port } else { 0 };
        Ok(Self { protocol, address, port })
    }

    /// Parses a URI such as `tcp://10.0.0.1:5555`, `tcp://[::1]:5555`, `ipc:///tmp/x` or `inproc://name`.
    pub fn parse(uri: &str) -> Result<Self> {
        let invalid =
            |reason: &str| Error::InvalidAddress { addr: uri.to_owned(), reason: reason.to_owned() };
        let (scheme, rest) = uri.split_once("://").ok_or_else(|| invalid("expected protocol://address"))?;
        let protocol: Protocol = scheme.parse()?;
        if protocol != Protocol::Tcp {
            return Self::with_protocol(rest, protocol, 0);
        }
        let (host, port) = rest.rsplit_once(':').ok_or_else(|| invalid("tcp needs host:port"))?;
        let port = match port {
            "*" => 0,
            p => p.parse().map_err(|_| invalid(&format!("port {p:?} is not a number from 0 to 65535")))?,
        };
        Self::with_protocol(host, protocol, port)
    }

    /// The protocol.
    pub fn protocol(&self) -> Protocol {
        self.protocol
    }

    /// The host, path or name, without protocol or port.
    pub fn address(&self) -> &str {
        &self.address
    }

    /// The tcp port (0: any free port); always 0 for ipc and inproc.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// This endpoint with a tcp host name replaced by its address (the first IPv4 one, else the first),
    /// as a server must bind an address. Other endpoints are returned as they are.
    pub fn resolved(&self) -> Result<Self> {
        if self.protocol != Protocol::Tcp || self.address.parse::<std::net::IpAddr>().is_ok() {
            return Ok(self.clone());
        }
        let unresolvable = |reason: String| Error::InvalidAddress { addr: self.address.clone(), reason };
        let addresses: Vec<_> = std::net::ToSocketAddrs::to_socket_addrs(&(self.address.as_str(), 0))
            .map_err(|e| unresolvable(format!("host name does not resolve: {e}")))?
            .collect();
        let address = addresses
            .iter()
            .find(|a| a.is_ipv4())
            .or(addresses.first())
            .ok_or_else(|| unresolvable("host name resolves to no address".into()))?;
        Ok(Self { address: address.ip().to_string(), ..self.clone() })
    }

    /// True for an IPv6 tcp address, which needs the socket's IPv6 option.
    pub fn is_ipv6(&self) -> bool {
        self.protocol == Protocol::Tcp && self.address.contains(':')
    }
}

/// Checks a tcp host that is not an IPv6 literal: a dotted IPv4 address must be a valid one (so
/// `999.1.1.1` is refused rather than looked up as a name), anything else a valid host name.
fn check_host(host: &str) -> std::result::Result<(), &'static str> {
    let numeric = host.chars().all(|c| c.is_ascii_digit() || c == '.');
    if numeric {
        return match host.parse::<std::net::Ipv4Addr>() {
            Ok(_) => Ok(()),
            Err(_) => Err("not a valid IPv4 address (four numbers from 0 to 255)"),
        };
    }
    let label_ok = |label: &str| {
        (1..=63).contains(&label.len())
            && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
            && !label.starts_with('-')
            && !label.ends_with('-')
    };
    if host.len() > 253 || !host.trim_end_matches('.').split('.').all(label_ok) {
        return Err("not an IP address or host name (give the port separately)");
    }
    Ok(())
}

/// True when a process listens on the Unix socket at `path` (a stale socket file refuses connections).
pub(super) fn ipc_listener_alive(path: &str) -> bool {
    std::os::unix::net::UnixStream::connect(path).is_ok()
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.protocol, self.is_ipv6(), self.port) {
            (Protocol::Tcp, true, 0) => write!(f, "tcp://[{}]:*", self.address),
            (Protocol::Tcp, true, p) => write!(f, "tcp://[{}]:{p}", self.address),
            (Protocol::Tcp, false, 0) => write!(f, "tcp://{}:*", self.address),
            (Protocol::Tcp, false, p) => write!(f, "tcp://{}:{p}", self.address),
            (protocol, _, _) => write!(f, "{protocol}://{}", self.address),
        }
    }
}

impl FromStr for Endpoint {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Self::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_and_parses_every_protocol() {
        let tcp = Endpoint::new("127.0.0.1", "tcp", 5555).unwrap();
        assert_eq!(tcp.to_string(), "tcp://127.0.0.1:5555");
        assert_eq!(Endpoint::parse("tcp://127.0.0.1:5555").unwrap(), tcp);
        assert_eq!(Endpoint::new("::1", "tcp", 0).unwrap().to_string(), "tcp://[::1]:*");
        assert_eq!(Endpoint::parse("tcp://[::1]:7").unwrap().port(), 7);
        assert_eq!(Endpoint::new("/tmp/lbm", "ipc", 3).unwrap().to_string(), "ipc:///tmp/lbm.3");
        assert_eq!(Endpoint::parse("inproc://queue").unwrap().address(), "queue");
    }

    #[test]
    fn host_names_resolve_for_binding() {
        let local = Endpoint::new("localhost", "tcp", 0).unwrap().resolved().unwrap();
        assert!(local.address().parse::<std::net::IpAddr>().unwrap().is_loopback(), "{local}");
        let literal = Endpoint::new("127.0.0.1", "tcp", 5).unwrap();
        assert_eq!(literal.resolved().unwrap(), literal);
    }

    #[test]
    fn rejects_bad_addresses_with_a_reason() {
        assert_eq!(Endpoint::new("h", "udp", 1), Err(Error::UnknownProtocol("udp".into())));
        for bad in ["", "a b", "1.2.3.4:80", "x/y", "999.1.1.1", "1.2.3", "-host", "a..b", "under_score"] {
            assert!(matches!(Endpoint::new(bad, "tcp", 1), Err(Error::InvalidAddress { .. })), "{bad:?}");
        }
        for bad in ["127.0.0.1:5555", "tcp://h:port", "tcp://h:70000", "tcp://nohost", "tcp://999.1.1.1:5"] {
            assert!(matches!(Endpoint::parse(bad), Err(Error::InvalidAddress { .. })), "{bad:?}");
        }
        assert!(matches!(Endpoint::new(&"p".repeat(200), "ipc", 0), Err(Error::InvalidAddress { .. })));
    }
}
