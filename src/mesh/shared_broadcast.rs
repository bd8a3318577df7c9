//! The shared broadcast: the root's bytes end as one sealed, read-only copy per node ([`SharedBytes`]),
//! which every rank of the node maps instead of holding its own.
//!
//! The root's view travels along the nodes' leaders (the root, then the lowest rank of each other
//! node) as a pipelined chain of pieces, one crossing of the network per node; each leader lands them in
//! a new memory file and seals it. Every leader then hands its node's other ranks the file's descriptor
//! (its pid, descriptor number, inode and length); each opens the file through `/proc`, which refuses a
//! file that is not sealed or not the one described, and answers. A rank the kernel refuses (ptrace
//! rules), or one whose mesh allows no single copies, asks for the bytes instead and seals its own copy.
//! A leader returns once each of its ranks answered, so its descriptor stays open while they open it.

#![forbid(unsafe_code)]

use super::collectives::{bad_message, BroadcastAlgorithm, Land, Piece};
use super::envelope::Operation;
use super::progress::Ongoing;
use super::single_copy::{COPIED, SEND_BYTES};
use super::{Mesh, Rank, Source};
use crate::error::Result;
use crate::shm::{SharedBytes, SharedBytesDescriptor, SharedBytesMut};

/// The first message along the leaders' chain: the broadcast's size, before its pieces.
const ANNOUNCE: u8 = 2;

impl Land for SharedBytesMut {
    fn room(&mut self, total: usize) -> Option<&mut [u8]> {
        (self.len() == total).then_some(&mut self[..])
    }

    fn progressed(&mut self, _done: usize, _total: usize) {}
}

impl Mesh {
    /// The root's side of [`Mesh::broadcast_shared`]: every other rank gets a read-only view of `data`,
    /// one copy per node (on this node, `data` itself). Returns once the root's node's ranks opened it.
    pub fn broadcast_shared_root(&self, data: &SharedBytes) -> Result<()> {
        let ongoing =
            self.begin_collective("broadcast_shared", Operation::SharedBroadcast, Some(self.rank))?;
        let next = self.topology.leaders_from(self.rank).get(1).copied();
        if let Some(next) = next {
            let sent = self.announce(&ongoing, next, data.len());
            let sent = sent.and_then(|()| self.send_bytes_to(&ongoing, next, data));
            // Everyone waiting on the root hears of a failure: the next leader and this node's ranks.
            self.or_report(&ongoing, [next].into_iter().chain(self.node_readers()), sent)?;
        }
        self.share_on_node(&ongoing, data)
    }

    /// Receives the root's [`Mesh::broadcast_shared_root`]: a read-only view of one copy of the data per
    /// node, shared by every rank of the node (each holds a mapping, not a copy). The view stays valid
    /// and unchanged while it is held, also after the mesh is gone; the node's copy is freed when its
    /// last holder drops it or ends.
    ///
    /// Use it for data every rank reads and none changes (a lookup table, model weights, a mesh):
    /// the node holds it once instead of once per rank, and the ranks of a node other than its leader
    /// open it in tens of microseconds, whatever its size (reading each page the first time then costs
    /// a page-table fault: about 10 ms per 256 MiB here). A rank that may not open another process's
    /// files, or whose mesh allows no single copies ([`crate::mesh::MeshConfig::single_copy`]), gets
    /// the bytes sent and holds a copy of its own. Use [`Mesh::broadcast_into`] when each rank needs
    /// its own copy to change, or for small data, where the memory file costs more than the copy.
    pub fn broadcast_shared(&self, root: Rank) -> Result<SharedBytes> {
        let ongoing = self.begin_collective("broadcast_shared", Operation::SharedBroadcast, Some(root))?;
        self.check_not_root(root, "broadcast_shared", "broadcast_shared_root")?;
        let node = self.topology.node_of(self.rank).expect("every rank is on a node");
        let leader = self.topology.leader_from(root, node).expect("every node has a leader");
        if leader != self.rank {
            let opened = self.open_from_leader(&ongoing, leader);
            return self.or_report(&ongoing, [leader], opened);
        }
        let leaders = self.topology.leaders_from(root);
        let at = leaders.iter().position(|&r| r == self.rank).expect("a leader is in the leaders");
        let (previous, next) = (leaders[at - 1], leaders.get(at + 1).copied());
        let readers = self.node_readers();
        let received = self.receive_along(&ongoing, previous, next);
        // A failure is told to every rank waiting on this one, and to the previous leader, which may
        // still be sending.
        let dependents = [previous].into_iter().chain(next).chain(readers);
        let data = self.or_report(&ongoing, dependents, received)?;
        self.share_on_node(&ongoing, &data)?;
        Ok(data)
    }

    /// The ranks of this rank's node other than itself.
    fn node_readers(&self) -> Vec<Rank> {
        let node = self.topology.node_of(self.rank).expect("every rank is on a node");
        let ranks = self.topology.ranks_on(node).unwrap_or_default();
        ranks.iter().copied().filter(|&r| r != self.rank).collect()
    }

    /// Tells `next` along the leaders' chain the size of the data that follows.
    fn announce(&self, ongoing: &Ongoing, next: Rank, total: usize) -> Result<()> {
        let header = Piece { total, offset: 0, algorithm: BroadcastAlgorithm::ReadFromRoot };
        self.send_in(ongoing, next, &[&header.encode(), &[ANNOUNCE]])
    }

    /// A leader's part of the chain: the size from `previous`, then each piece, landed in a new memory
    /// file and passed on to `next`; the file sealed.
    fn receive_along(&self, ongoing: &Ongoing, previous: Rank, next: Option<Rank>) -> Result<SharedBytes> {
        let first = self.receive_in(ongoing, Source::Rank(previous), Some(previous))?;
        let total = match Piece::read(&first)? {
            (piece, [ANNOUNCE]) if piece.algorithm == BroadcastAlgorithm::ReadFromRoot => piece.total,
            _ => return Err(bad_message(&first, "not the size of a shared broadcast")),
        };
        if let Some(next) = next {
            self.forward_in(ongoing, next, first.payloads)?;
        }
        let mut bytes = SharedBytesMut::new(total)?;
        self.receive_bytes_from(ongoing, previous, total, &mut bytes, next)?;
        bytes.freeze()
    }

    /// A leader's last part: hands its node's other ranks the descriptor of `data`, sends the bytes to
    /// those that ask, and returns once every one answered.
    fn share_on_node(&self, ongoing: &Ongoing, data: &SharedBytes) -> Result<()> {
        let readers = self.node_readers();
        let shared = data.descriptor();
        let shared = shared.and_then(|descriptor| self.offer(ongoing, &readers, &descriptor.encode(), data));
        self.or_report(ongoing, readers, shared).map(drop)
    }

    /// A rank's side, other than a leader's: opens the file its `leader` describes, or asks for the bytes
    /// when it cannot.
    fn open_from_leader(&self, ongoing: &Ongoing, leader: Rank) -> Result<SharedBytes> {
        let first = self.receive_in(ongoing, Source::Rank(leader), Some(leader))?;
        let (piece, bytes) = Piece::read(&first)?;
        let descriptor = SharedBytesDescriptor::decode(bytes)
            .filter(|_| piece.algorithm == BroadcastAlgorithm::ReadFromRoot)
            .ok_or_else(|| bad_message(&first, "malformed descriptor"))?;
        // (A descriptor naming this very process would be a pid of another namespace: never opened.)
        if descriptor.pid != self.peers[leader.0].pid || descriptor.pid == std::process::id() {
            return Err(bad_message(&first, "a descriptor naming another process than the leader's"));
        }
        if descriptor.len != piece.total as u64 {
            return Err(bad_message(&first, "a descriptor of another size than the broadcast's"));
        }
        let header = piece.encode();
        let opened = match self.config.single_copy {
            true => SharedBytes::open_from(&descriptor),
            false => Err(crate::Error::InvalidArgument("single copies are off in this mesh".into())),
        };
        match opened {
            Ok(view) => {
                self.send_in(ongoing, leader, &[&header, &[COPIED]])?;
                Ok(view)
            }
            Err(refused) => {
                log::info!("rank {}: asking rank {leader} for the bytes: {refused}", self.rank);
                self.send_in(ongoing, leader, &[&header, &[SEND_BYTES]])?;
                let mut bytes = SharedBytesMut::new(piece.total)?;
                self.receive_bytes_from(ongoing, leader, piece.total, &mut bytes, None)?;
                bytes.freeze()
            }
        }
    }
}
