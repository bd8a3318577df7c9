//! The ZeroMQ transport: [`ZeroMqClient`] (PUSH, connects) and [`ZeroMqServer`] (PULL, binds).
//!
//! Socket settings learned from the C++ original's successors: a bounded `LINGER` so that dropping never
//! hangs, `IMMEDIATE` with `SNDTIMEO` so that a send to nobody fails instead of queueing forever, high-water
//! marks for bulk traffic (PUSH waits at the mark, it never drops), and every receive taken as a whole
//! `zmq::Message`, never into a fixed buffer that would silently truncate.

#![forbid(unsafe_code)]

use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::{Duration, Instant};

use super::parts::{restore_parts, take_parts};
use super::two_phase::TwoPhase;
use super::{endpoint, Client, Endpoint, FrameSource, Limits, Options, Payload, Protocol};
use crate::bulk::Bulk;
use crate::error::{Error, Result};
use crate::event::Event;
use crate::meta::Metadata;
use crate::sync::{lock, Slot};
use crate::wire;

/// One ZeroMQ context per process while any client or server is alive (inproc needs them to share it).
/// When the last one is dropped the context is terminated, which flushes queued messages within `LINGER`.
fn shared_context() -> Arc<zmq::Context> {
    static CONTEXT: OnceLock<Mutex<Weak<zmq::Context>>> = OnceLock::new();
    let mut slot = lock(CONTEXT.get_or_init(Default::default));
    slot.upgrade().unwrap_or_else(|| {
        let context = Arc::new(zmq::Context::new());
        *slot = Arc::downgrade(&context);
        context
    })
}

fn millis(d: Duration) -> i32 {
    i32::try_from(d.as_millis()).unwrap_or(i32::MAX)
}

/// Runs a ZeroMQ call again while a signal interrupts it.
fn retry_eintr<T>(mut call: impl FnMut() -> zmq::Result<T>) -> zmq::Result<T> {
    loop {
        match call() {
            Err(zmq::Error::EINTR) => continue,
            other => return other,
        }
    }
}

fn new_socket(
    context: &zmq::Context,
    kind: zmq::SocketType,
    endpoint: &Endpoint,
    options: &Options,
) -> Result<zmq::Socket> {
    let uri = endpoint.to_string();
    let configure = || -> zmq::Result<zmq::Socket> {
        let socket = context.socket(kind)?;
        socket.set_linger(millis(options.linger))?;
        socket.set_sndhwm(options.high_water_mark)?;
        socket.set_rcvhwm(options.high_water_mark)?;
        socket.set_ipv6(endpoint.is_ipv6())?;
        if let Some(limit) = options.max_message_size {
            socket.set_maxmsgsize(i64::try_from(limit).unwrap_or(i64::MAX))?;
        }
        Ok(socket)
    };
    configure().map_err(|e| Error::transport("create socket for", &uri, e))
}

/// Sends Lightbeam messages to one [`ZeroMqServer`] over a PUSH socket.
pub struct ZeroMqClient {
    socket: Mutex<zmq::Socket>,
    address: String,
    send_timeout: Option<Duration>,
    _context: Arc<zmq::Context>,
}

impl ZeroMqClient {
    /// A client for `addr`, `protocol` and `port` with default options, as the guide's `ZeroMqClient(...)`.
    pub fn new(addr: &str, protocol: &str, port: u16) -> Result<Self> {
        Self::connect(&Endpoint::new(addr, protocol, port)?, &Options::default())
    }

    /// Connects to `endpoint`. The connection completes in the background; `send` waits for it up to the
    /// send timeout.
    pub fn connect(endpoint: &Endpoint, options: &Options) -> Result<Self> {
        let context = shared_context();
        let address = endpoint.to_string();
        if endpoint.protocol() == Protocol::Tcp && endpoint.port() == 0 {
            return Err(Error::InvalidAddress {
                addr: address,
                reason: "a client needs a port other than 0".into(),
            });
        }
        let socket = new_socket(&context, zmq::PUSH, endpoint, options)?;
        let setup = || -> zmq::Result<()> {
            socket.set_immediate(true)?;
            socket.set_sndtimeo(options.send_timeout.map_or(-1, millis))?;
            socket.connect(&address)
        };
        setup().map_err(|e| Error::transport("connect to", &address, e))?;
        Ok(Self {
            socket: Mutex::new(socket),
            address,
            send_timeout: options.send_timeout,
            _context: context,
        })
    }

    /// Sends `meta` and its bulks as one message; `wait` bounds how long it may wait for a peer with room
    /// (`None`: the client's own send timeout), whatever that timeout (for notices that must not hold
    /// their sender up). Returns the bytes of the bulks sent.
    pub(crate) fn send_within(&self, meta: &dyn Metadata, wait: Option<Duration>) -> Result<usize> {
        let bulks = meta.bulks();
        let header = wire::encode_header(bulks, |out| meta.encode_custom(out))?;
        let parts = take_parts(bulks)?;
        self.send_parts(&header, parts, wait).map_err(|(error, parts)| {
            restore_parts(bulks, parts);
            error
        })?;
        Ok(bulks.iter().map(Bulk::size).sum())
    }

    /// Sends a header frame and its bulk frames as one message. Only the header can wait (for a peer, or
    /// at the high-water mark), up to `wait` or else the send timeout: once it is queued, ZeroMQ takes the
    /// rest of the message at once. When the header cannot be sent, the parts are handed back untouched.
    fn send_parts<T: Into<zmq::Message>>(
        &self,
        header: &[u8],
        parts: Vec<T>,
        wait: Option<Duration>,
    ) -> std::result::Result<(), (Error, Vec<T>)> {
        let count = parts.len();
        let more = |i: usize| if i < count { zmq::SNDMORE } else { 0 };
        let socket = lock(&self.socket);
        let mut header_flags = more(0);
        if let Some(wait) = wait {
            // A zero wait tries the send alone: a message that can be queued at once pays for no poll.
            if !wait.is_zero() {
                match socket.poll(zmq::POLLOUT, i64::from(millis(wait))) {
                    Ok(_) | Err(zmq::Error::EINTR) => {}
                    Err(e) => return Err((self.send_error(e), parts)),
                }
            }
            header_flags |= zmq::DONTWAIT;
        }
        if let Err(e) = retry_eintr(|| socket.send(header, header_flags)) {
            return Err((self.send_error(e), parts));
        }
        for (i, part) in parts.into_iter().enumerate() {
            socket.send(part, more(i + 1)).map_err(|e| (self.send_error(e), Vec::new()))?;
        }
        Ok(())
    }

    /// Sends received payloads on without copying them: the frames move into the outgoing message. `wait`
    /// bounds how long it may wait for a peer with room (`None`: the send timeout). When the message
    /// cannot be queued, the payloads come back with the error, untouched (empty if a frame after the
    /// first failed, which ZeroMQ's all-or-nothing messages make next to impossible).
    pub(crate) fn forward(
        &self,
        meta: &dyn Metadata,
        payloads: Vec<Payload>,
        wait: Option<Duration>,
    ) -> std::result::Result<usize, (Error, Vec<Payload>)> {
        let header = match wire::encode_header(meta.bulks(), |out| meta.encode_custom(out)) {
            Ok(header) => header,
            Err(error) => return Err((error, payloads)),
        };
        let bytes = payloads.iter().map(|p| p.len()).sum();
        let frames = payloads.into_iter().map(Payload::into_zmq).collect();
        self.send_parts(&header, frames, wait)
            .map_err(|(error, frames)| (error, frames.into_iter().map(Payload::from_zmq).collect()))?;
        Ok(bytes)
    }

    fn send_error(&self, err: zmq::Error) -> Error {
        match (err, self.send_timeout) {
            (zmq::Error::EAGAIN, Some(after)) => Error::Timeout {
                op: "send (no peer took the message)",
                after,
                peer: Some(self.address.clone()),
            },
            (err, _) => Error::transport("send to", &self.address, err),
        }
    }
}

impl Client for ZeroMqClient {
    fn send(&self, meta: &dyn Metadata) -> Event {
        self.send_within(meta, None).into()
    }

    fn address(&self) -> &str {
        &self.address
    }
}

impl std::fmt::Debug for ZeroMqClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ZeroMqClient").field("address", &self.address).finish_non_exhaustive()
    }
}

/// Receives Lightbeam messages on a bound PULL socket.
pub struct ZeroMqServer {
    /// Lent to one receiving thread at a time; a thread waits for it no longer than its own timeout.
    socket: Slot<ServerSocket>,
    two_phase: TwoPhase,
    limits: Limits,
    address: String,
    _context: Arc<zmq::Context>,
}

struct ServerSocket {
    socket: zmq::Socket,
    /// The socket's receive timeout in milliseconds as last set (-1: none), to set it only on a change.
    receive_timeout: i32,
}

impl ServerSocket {
    fn set_receive_timeout(&mut self, millis: i32) -> zmq::Result<()> {
        if self.receive_timeout != millis {
            self.socket.set_rcvtimeo(millis)?;
            self.receive_timeout = millis;
        }
        Ok(())
    }
}

impl ZeroMqServer {
    /// A server for `addr`, `protocol` and `port` with default options, as the guide's `ZeroMqServer(...)`.
    pub fn new(addr: &str, protocol: &str, port: u16) -> Result<Self> {
        Self::bind(&Endpoint::new(addr, protocol, port)?, &Options::default())
    }

    /// Binds `endpoint`. For tcp port 0 a free port is chosen; [`Server::address`](super::Server::address)
    /// reports it. A tcp host name is resolved to its first IPv4 address (else its first address). An ipc
    /// path where another server listens fails with [`Error::AddressInUse`] (ZeroMQ would silently take it
    /// over).
    pub fn bind(endpoint: &Endpoint, options: &Options) -> Result<Self> {
        let endpoint = endpoint.resolved()?;
        let context = shared_context();
        let uri = endpoint.to_string();
        let in_use = || Error::AddressInUse { endpoint: uri.clone(), port: endpoint.port() };
        if endpoint.protocol() == Protocol::Ipc && endpoint::ipc_listener_alive(endpoint.address()) {
            return Err(in_use());
        }
        let socket = new_socket(&context, zmq::PULL, &endpoint, options)?;
        socket.bind(&uri).map_err(|e| match e {
            zmq::Error::EADDRINUSE => in_use(),
            e => Error::transport("bind", &uri, e),
        })?;
        let address = match socket.get_last_endpoint() {
            Ok(Ok(bound)) => bound,
            _ => uri.clone(),
        };
        Ok(Self {
            socket: Slot::new(ServerSocket { socket, receive_timeout: -1 }),
            two_phase: TwoPhase::default(),
            limits: options.limits(endpoint.protocol()),
            address,
            _context: context,
        })
    }

    /// Receives every frame of the next message, waiting up to `timeout`; `None` when nothing came.
    /// The wait is ZeroMQ's own blocking receive with a receive timeout (one call, where polling first
    /// and receiving after costs a round of ZeroMQ's command processing more per message).
    fn recv_frames(&self, timeout: Duration) -> Result<Option<Vec<Payload>>> {
        let deadline = Instant::now() + timeout;
        // Another thread receiving meanwhile holds the socket; it gets what arrives until then.
        let Some(mut state) = self.socket.borrow_until(deadline) else { return Ok(None) };
        let first = loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let received = if left.is_zero() {
                state.socket.recv_msg(zmq::DONTWAIT)
            } else {
                state
                    .set_receive_timeout(millis(left).max(1))
                    .map_err(|e| Error::transport("configure", &self.address, e))?;
                state.socket.recv_msg(0)
            };
            match received {
                Ok(message) => break message,
                Err(zmq::Error::EAGAIN) if left.is_zero() || Instant::now() >= deadline => return Ok(None),
                Err(zmq::Error::EAGAIN | zmq::Error::EINTR) => {}
                Err(e) => return Err(Error::transport("receive on", &self.address, e)),
            }
        };
        let socket = &state.socket;
        let mut frames = vec![Payload::from_zmq(first)];
        // The rest of a multipart message is already here: ZeroMQ delivers messages whole.
        while socket.get_rcvmore().map_err(|e| Error::transport("receive on", &self.address, e))? {
            let part = retry_eintr(|| socket.recv_msg(0))
                .map_err(|e| Error::transport("receive on", &self.address, e))?;
            frames.push(Payload::from_zmq(part));
        }
        Ok(Some(frames))
    }
}

impl FrameSource for ZeroMqServer {
    fn recv_frames(&self, timeout: Duration) -> Result<Option<Vec<Payload>>> {
        Self::recv_frames(self, timeout)
    }

    fn limits(&self) -> &Limits {
        &self.limits
    }

    fn two_phase(&self) -> &TwoPhase {
        &self.two_phase
    }

    fn address(&self) -> &str {
        &self.address
    }
}

impl std::fmt::Debug for ZeroMqServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ZeroMqServer").field("address", &self.address).finish_non_exhaustive()
    }
}
