//! Raw ZeroMQ between the ranks, with no Lightbeam in between: the baseline Lightbeam is measured against.
//!
//! Each rank binds one PULL socket per peer and connects one PUSH socket to each peer, so a receive from
//! a given rank is a plain `recv` on that rank's socket: the simplest way a ZeroMQ programmer matches
//! senders, with no envelope, no metadata frame and no matching queue. Sockets are set up as Lightbeam's
//! mesh sets its own (high-water mark, send and receive timeouts), so the settings are not what differs.

use std::time::Duration;

use lightbeam::mesh::{Mesh, Rank};
use lightbeam::{Endpoint, Protocol};
use mpi::topology::SimpleCommunicator;
use mpi::traits::*;

/// One PULL socket per peer to receive on, one PUSH socket per peer to send with.
pub(crate) struct RawMesh {
    pulls: Vec<Option<zmq::Socket>>,
    pushes: Vec<Option<zmq::Socket>>,
    _context: zmq::Context,
}

/// What one send hands to ZeroMQ.
pub(crate) enum Outgoing<'a> {
    /// Bytes the caller keeps: ZeroMQ gets a copy.
    Lent(&'a [u8]),
    /// A buffer given away: ZeroMQ takes it without a copy.
    Given(Vec<u8>),
}

impl Outgoing<'_> {
    /// The bytes to send, however they are handed over.
    pub(crate) fn bytes(&self) -> &[u8] {
        match self {
            Self::Lent(bytes) => bytes,
            Self::Given(bytes) => bytes,
        }
    }
}

impl RawMesh {
    /// Binds and connects every pair, next to `mesh` (same hosts, same protocol, same socket options).
    pub(crate) fn connect(world: &SimpleCommunicator, mesh: &Mesh) -> Result<Self, String> {
        let (me, n) = (mesh.rank().0, mesh.size());
        let options = &mesh.config().options;
        let context = zmq::Context::new();
        let socket = |kind| -> Result<zmq::Socket, String> {
            let s = context.socket(kind).map_err(|e| e.to_string())?;
            let millis = |d: Duration| i32::try_from(d.as_millis()).unwrap_or(i32::MAX);
            let timeout = millis(mesh.config().timeout);
            s.set_sndhwm(options.high_water_mark).map_err(|e| e.to_string())?;
            s.set_rcvhwm(options.high_water_mark).map_err(|e| e.to_string())?;
            s.set_sndtimeo(timeout).and(s.set_rcvtimeo(timeout)).map_err(|e| e.to_string())?;
            s.set_linger(millis(options.linger)).map_err(|e| e.to_string())?;
            s.set_ipv6(true).map_err(|e| e.to_string())?;
            Ok(s)
        };
        // Rank r's socket for messages from rank p: an ipc path derived from r's mesh endpoint, or a tcp
        // port r chose and published.
        let home = |rank: usize| mesh.endpoint(Rank(rank)).map_err(|e| e.to_string());
        let pulls = (0..n)
            .map(|peer| {
                if peer == me {
                    return Ok(None);
                }
                let pull = socket(zmq::PULL)?;
                let at = raw_endpoint(home(me)?, peer, 0)?;
                pull.bind(&at).map_err(|e| format!("raw ZeroMQ: bind {at}: {e}"))?;
                Ok(Some(pull))
            })
            .collect::<Result<Vec<_>, String>>()?;
        let ports = pulls
            .iter()
            .map(|pull| match pull {
                None => Ok(0),
                Some(pull) => {
                    let bound = pull.get_last_endpoint().map_err(|e| e.to_string())?.unwrap_or_default();
                    Ok(Endpoint::parse(&bound).map_err(|e| e.to_string())?.port())
                }
            })
            .collect::<Result<Vec<u16>, String>>()?;
        let mut all_ports = vec![0u16; n * n];
        world.all_gather_into(&ports[..], &mut all_ports[..]);
        let pushes = (0..n)
            .map(|peer| {
                if peer == me {
                    return Ok(None);
                }
                let push = socket(zmq::PUSH)?;
                let at = raw_endpoint(home(peer)?, me, all_ports[peer * n + me])?;
                push.connect(&at).map_err(|e| format!("raw ZeroMQ: connect {at}: {e}"))?;
                Ok(Some(push))
            })
            .collect::<Result<Vec<_>, String>>()?;
        Ok(Self { pulls, pushes, _context: context })
    }

    /// Sends one single-frame message to `to`.
    pub(crate) fn send(&self, to: usize, data: Outgoing<'_>) -> Result<(), String> {
        let push = self.pushes[to].as_ref().ok_or("raw ZeroMQ: no socket to this rank itself")?;
        let sent = match data {
            Outgoing::Lent(bytes) => push.send(bytes, 0),
            Outgoing::Given(bytes) => push.send(bytes, 0),
        };
        sent.map_err(|e| format!("raw ZeroMQ: send to rank {to}: {e}"))
    }

    /// Passes a received message on to `to` as it is, without a copy.
    pub(crate) fn forward(&self, to: usize, message: zmq::Message) -> Result<(), String> {
        let push = self.pushes[to].as_ref().ok_or("raw ZeroMQ: no socket to this rank itself")?;
        push.send(message, 0).map_err(|e| format!("raw ZeroMQ: send to rank {to}: {e}"))
    }

    /// Receives the next message from `from`, in place (ZeroMQ's own buffer).
    pub(crate) fn recv(&self, from: usize) -> Result<zmq::Message, String> {
        let pull = self.pulls[from].as_ref().ok_or("raw ZeroMQ: no socket from this rank itself")?;
        pull.recv_msg(0).map_err(|e| format!("raw ZeroMQ: receive from rank {from}: {e}"))
    }
}

/// The raw socket of a rank whose mesh endpoint is `home`, for messages from `peer`.
fn raw_endpoint(home: &Endpoint, peer: usize, port: u16) -> Result<String, String> {
    let endpoint = match home.protocol() {
        Protocol::Ipc => Endpoint::with_protocol(&format!("{}.raw{peer}", home.address()), Protocol::Ipc, 0),
        protocol => Endpoint::with_protocol(home.address(), protocol, port),
    };
    endpoint.map(|e| e.to_string()).map_err(|e| e.to_string())
}
