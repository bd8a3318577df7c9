//! Where this rank's messages arrive: the servers its peers' messages arrive at, and one receive that waits
//! on all of them at once without spinning.
//!
//! A rank receives through shared memory from peers on its node and through ZeroMQ from the others.
//! With peers of both kinds, a thread (the bridge) takes in what ZeroMQ delivers and rings the
//! shared-memory server's doorbell, which is where a receive sleeps: so a message from the node never
//! passes through a thread of ours or of ZeroMQ's, and one from another node pays one hand-over between
//! threads beside the network. The bridge holds at most the ZeroMQ high-water mark of messages, so
//! ZeroMQ's queue limit still holds a fast remote sender back.

#![forbid(unsafe_code)]

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::error::{Error, Result};
use crate::sync::{lock, LazyDeadline};
use crate::transport::same_node::Arrival;
use crate::transport::{Received, Server, SharedMemoryServer, ZeroMqServer};

/// How long the bridge waits at a time (for ZeroMQ, for room) before it looks whether to stop.
const BRIDGE_SLICE: Duration = Duration::from_millis(50);

/// One message that arrived: whole (its metadata decoded and checked), or a short message's bytes as
/// its sender wrote them (`short.rs` reads them).
pub(crate) enum Arrived {
    Whole(Received),
    Short(Vec<u8>),
}

/// Where this rank's messages arrive.
pub(crate) enum Arrivals {
    /// Every peer reaches this rank through ZeroMQ (forced, or no peer shares its node).
    ZeroMq(ZeroMqServer),
    /// Every peer shares this rank's node.
    SharedMemory(Box<SharedMemoryServer>),
    /// Peers on this node and on others.
    Both(Bridged),
}

/// A shared-memory server, and the messages the bridge took in from the ZeroMQ server.
pub(crate) struct Bridged {
    shared: Arc<Shared>,
    bridge: Option<JoinHandle<()>>,
}

/// What the receiving threads and the bridge share.
struct Shared {
    server: SharedMemoryServer,
    taken: Mutex<VecDeque<Result<Received>>>,
    /// Signalled when a message is taken out of `taken` (room for the bridge).
    room: Condvar,
    capacity: usize,
    stop: AtomicBool,
}

impl Arrivals {
    /// The arrivals of a rank with `shared_memory` (peers on its node reach it there) and `zeromq` (peers
    /// elsewhere reach it there); at least one of them.
    pub(crate) fn new(
        shared_memory: Option<SharedMemoryServer>,
        zeromq: Option<ZeroMqServer>,
        capacity: usize,
    ) -> Result<Self> {
        match (shared_memory, zeromq) {
            (Some(shm), None) => Ok(Self::SharedMemory(Box::new(shm))),
            (None, Some(zmq)) => Ok(Self::ZeroMq(zmq)),
            (Some(shm), Some(zmq)) => Bridged::start(shm, zmq, capacity).map(Self::Both),
            (None, None) => Err(Error::Mesh("a rank needs a server to receive on".into())),
        }
    }

    /// The next message, waiting until `deadline` ([`Error::Timeout`] when nothing came).
    pub(crate) fn recv_message(&self, deadline: &LazyDeadline) -> Result<Arrived> {
        match self {
            Self::ZeroMq(server) => server.recv_message(deadline.left()).map(Arrived::Whole),
            Self::SharedMemory(server) => match server.recv_until(deadline, &|| false)? {
                Some(arrival) => arrived(server, arrival),
                None => Err(nothing_arrived(deadline.timeout())),
            },
            Self::Both(bridged) => bridged.recv_message(deadline),
        }
    }

    /// The shared-memory server, if peers on this node reach this rank through one.
    pub(crate) fn shared_memory(&self) -> Option<&SharedMemoryServer> {
        match self {
            Self::ZeroMq(_) => None,
            Self::SharedMemory(server) => Some(server),
            Self::Both(bridged) => Some(&bridged.shared.server),
        }
    }

    /// The address peers reach this rank at (the shared-memory one when there is one).
    pub(crate) fn address(&self) -> &str {
        match self {
            Self::ZeroMq(server) => Server::address(server),
            Self::SharedMemory(server) => Server::address(&**server),
            Self::Both(bridged) => Server::address(&bridged.shared.server),
        }
    }
}

impl Bridged {
    fn start(server: SharedMemoryServer, zeromq: ZeroMqServer, capacity: usize) -> Result<Self> {
        let shared = Arc::new(Shared {
            server,
            taken: Mutex::default(),
            room: Condvar::new(),
            // ZeroMQ reads a high-water mark of 0 as no limit.
            capacity: if capacity == 0 { usize::MAX } else { capacity },
            stop: AtomicBool::new(false),
        });
        let bridge = std::thread::Builder::new()
            .name("lightbeam-bridge".into())
            .spawn({
                let shared = Arc::clone(&shared);
                move || shared.bridge(&zeromq)
            })
            .map_err(|e| Error::Mesh(format!("cannot start the thread that receives from ZeroMQ: {e}")))?;
        Ok(Self { shared, bridge: Some(bridge) })
    }

    fn recv_message(&self, deadline: &LazyDeadline) -> Result<Arrived> {
        if let Some(message) = self.shared.take() {
            return message.map(Arrived::Whole);
        }
        let elsewhere = || !lock(&self.shared.taken).is_empty();
        match self.shared.server.recv_until(deadline, &elsewhere)? {
            Some(arrival) => arrived(&self.shared.server, arrival),
            None => {
                let nothing = || Err(nothing_arrived(deadline.timeout()));
                self.shared.take().unwrap_or_else(nothing).map(Arrived::Whole)
            }
        }
    }
}

/// What `server` received, its frames checked as a message.
fn arrived(server: &SharedMemoryServer, arrival: Arrival) -> Result<Arrived> {
    match arrival {
        Arrival::Frames(frames) => server.accept(frames).map(Arrived::Whole),
        Arrival::Short(bytes) => Ok(Arrived::Short(bytes)),
    }
}

fn nothing_arrived(after: Duration) -> Error {
    Error::Timeout { op: "receive (nothing arrived)", after, peer: None }
}

impl Shared {
    /// The bridge: takes in what arrives through ZeroMQ (while there is room) and rings the doorbell.
    fn bridge(&self, zeromq: &ZeroMqServer) {
        while !self.stop.load(Ordering::Acquire) {
            let taken = lock(&self.taken);
            if taken.len() >= self.capacity {
                let _ = self.room.wait_timeout(taken, BRIDGE_SLICE);
                continue;
            }
            drop(taken);
            let message = match zeromq.recv_message(BRIDGE_SLICE) {
                Err(Error::Timeout { .. }) => continue,
                message => message,
            };
            lock(&self.taken).push_back(message);
            self.server.ring();
        }
    }

    /// The oldest message the bridge took in, if any.
    fn take(&self) -> Option<Result<Received>> {
        let message = lock(&self.taken).pop_front();
        if message.is_some() {
            self.room.notify_one();
        }
        message
    }
}

impl Drop for Bridged {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Release);
        self.shared.room.notify_all();
        if let Some(bridge) = self.bridge.take() {
            let _ = bridge.join(); // it stops within one slice
        }
    }
}
