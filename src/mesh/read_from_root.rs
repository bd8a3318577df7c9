//! The broadcast of a mesh on one node: every rank copies the root's buffer straight from the root's
//! memory (`process_vm_readv`), all at once, one copy each, into its own buffer; the root returns
//! success only once every rank said it has the data (so its buffer is not read after a successful
//! call), and then tells each rank that what it copied stands (the rank returns only then). Where the
//! kernel refuses
//! a rank the single copy (ptrace rules, a container), that rank asks for the bytes and the root sends
//! them to it in pieces, and the mesh's later broadcasts take the chain.
//!
//! A descriptor names the root's process and buffer; a rank reads only from the process the bootstrap
//! recorded for the root, and a same-user process that forges a descriptor could read that memory
//! itself (see the same-node transport's trust notes).

#![forbid(unsafe_code)]

use super::collectives::{bad_message, pieces, BroadcastAlgorithm, Land, Piece};
use super::mailbox::Incoming;
use super::progress::Ongoing;
use super::{Mesh, Rank, Source};
use crate::error::Result;
use crate::shm::read_process_exact;

/// A rank's answer to the root: it copied the data (or needs none: its buffer is too small)...
pub(super) const COPIED: u8 = 0;
/// ...or the kernel refused it the single copy, and the root must send the bytes.
pub(super) const SEND_BYTES: u8 = 1;
/// The root's last word to each rank: every rank answered while the buffer stayed in place, so what
/// each copied is the broadcast's data (a rank whose copy outlived the root's deadline gets the root's
/// failure instead, never success with bytes of a buffer the root had let go).
const RELEASED: u8 = 2;

/// Where the root's data is: its process and the buffer's address, 12 bytes.
struct Descriptor {
    pid: u32,
    address: u64,
}

impl Descriptor {
    fn encode(&self) -> [u8; 12] {
        let mut bytes = [0; 12];
        bytes[..4].copy_from_slice(&self.pid.to_le_bytes());
        bytes[4..].copy_from_slice(&self.address.to_le_bytes());
        bytes
    }

    fn decode(incoming: &Incoming, bytes: &[u8]) -> Result<Self> {
        let bytes: &[u8; 12] = bytes.try_into().map_err(|_| bad_message(incoming, "malformed descriptor"))?;
        let pid = u32::from_le_bytes(bytes[..4].try_into().expect("4 bytes"));
        let address = u64::from_le_bytes(bytes[4..].try_into().expect("8 bytes"));
        Ok(Self { pid, address })
    }
}

impl Mesh {
    /// True when a broadcast from this rank can have every rank read from it: the whole mesh on this
    /// node, each rank reached through shared memory.
    pub(super) fn every_rank_reads_here(&self) -> bool {
        use crate::transport::Transport;
        self.size() > 1
            && !self.readers_refused.load(std::sync::atomic::Ordering::Relaxed)
            && self.topology.node_count() == 1
            && (0..self.size())
                .all(|r| self.transport_to(Rank(r)).is_ok_and(|t| t == Transport::SharedMemory))
    }

    /// The root's side: tells every rank where `data` is, then waits for each to answer, sending the
    /// bytes to those the kernel refused the copy, and releases them.
    pub(super) fn offer_to_readers(&self, ongoing: &Ongoing, order: &[Rank], data: &[u8]) -> Result<()> {
        let descriptor = Descriptor { pid: std::process::id(), address: data.as_ptr() as u64 }.encode();
        let readers = &order[1..];
        if self.offer(ongoing, readers, &descriptor, data)? {
            // The kernel refuses copies here: later broadcasts take the chain, which sends the bytes
            // once, not once per rank.
            self.readers_refused.store(true, std::sync::atomic::Ordering::Relaxed);
        }
        let header = Piece { total: data.len(), offset: 0, algorithm: BroadcastAlgorithm::ReadFromRoot };
        for &reader in readers {
            self.send_in(ongoing, reader, &[&header.encode(), &[RELEASED]])?;
        }
        Ok(())
    }

    /// Sends each of `readers` the `descriptor` of `data` (which they read in place or from this
    /// process), then waits for every answer, sending the bytes in pieces to each reader that asks for
    /// them. True when any asked.
    pub(super) fn offer(
        &self,
        ongoing: &Ongoing,
        readers: &[Rank],
        descriptor: &[u8],
        data: &[u8],
    ) -> Result<bool> {
        let total = data.len();
        let header = Piece { total, offset: 0, algorithm: BroadcastAlgorithm::ReadFromRoot }.encode();
        for &reader in readers {
            self.send_in(ongoing, reader, &[&header, descriptor])?;
        }
        let mut asked = false;
        let mut waiting: Vec<Rank> = readers.to_vec();
        while let Some(&suspect) = waiting.first() {
            let answer = self.receive_in(ongoing, Source::Any, Some(suspect))?;
            let (_, status) = Piece::read(&answer)?;
            let Some(at) = waiting.iter().position(|&r| r == answer.source) else {
                return Err(bad_message(&answer, "an answer from a rank not waited for"));
            };
            waiting.remove(at); // the lowest rank still waited for stays first
            match status {
                [COPIED] => {}
                [SEND_BYTES] => {
                    asked = true;
                    self.send_bytes_to(ongoing, answer.source, data)?;
                }
                _ => return Err(bad_message(&answer, "an answer that is not COPIED or SEND_BYTES")),
            }
        }
        Ok(asked)
    }

    /// Sends `data` to `to` in pieces of the chunk size (none for no data: the receiver expects none).
    pub(super) fn send_bytes_to(&self, ongoing: &Ongoing, to: Rank, data: &[u8]) -> Result<()> {
        let total = data.len();
        for (offset, piece) in pieces(data, self.config.chunk_size).filter(|(_, piece)| !piece.is_empty()) {
            let header = Piece { total, offset, algorithm: BroadcastAlgorithm::PipelinedChain };
            self.send_in(ongoing, to, &[&header.encode(), piece])?;
        }
        Ok(())
    }

    /// A rank's side, once the root's descriptor (`first`, of a broadcast of `total` bytes) came: copies
    /// the root's buffer into `land` in pieces of the chunk size, answers the root, and returns `total`.
    pub(super) fn read_from_root(
        &self,
        ongoing: &Ongoing,
        root: Rank,
        first: &Incoming,
        total: usize,
        land: &mut dyn Land,
    ) -> Result<usize> {
        if first.source != root {
            return Err(bad_message(first, "a descriptor from a rank that is not the root"));
        }
        let (_, bytes) = Piece::read(first)?;
        let descriptor = Descriptor::decode(first, bytes)?;
        // (A descriptor naming this very process would be a pid of another namespace: never read.)
        if descriptor.pid != self.peers[root.0].pid || descriptor.pid == std::process::id() {
            return Err(bad_message(first, "a descriptor naming another process than the root's"));
        }
        let header = Piece { total, offset: 0, algorithm: BroadcastAlgorithm::ReadFromRoot }.encode();
        let copied = match land.room(total) {
            // Too small: the root need send nothing; the caller reports the size.
            None => true,
            Some(room) => {
                let chunk = self.config.chunk_size;
                room.is_empty() || (self.config.single_copy && copy_in_pieces(&descriptor, room, chunk))
            }
        };
        if copied {
            land.progressed(total, total);
        }
        let status = if copied { COPIED } else { SEND_BYTES };
        self.send_in(ongoing, root, &[&header, &[status]])?;
        if !copied {
            self.receive_bytes_from(ongoing, root, total, land, None)?;
        }
        let last = self.receive_in(ongoing, Source::Rank(root), Some(root))?;
        match Piece::read(&last)? {
            (piece, [RELEASED]) if piece.algorithm == BroadcastAlgorithm::ReadFromRoot => Ok(total),
            _ => Err(bad_message(&last, "not the root's release")),
        }
    }

    /// Receives `total` bytes in pieces from `root` (for a rank the kernel refused the single copy, or
    /// along a chain), landing each and passing it on to `next` when there is one.
    pub(super) fn receive_bytes_from(
        &self,
        ongoing: &Ongoing,
        root: Rank,
        total: usize,
        land: &mut dyn Land,
        next: Option<Rank>,
    ) -> Result<()> {
        let mut received = 0;
        while received < total {
            let incoming = self.receive_in(ongoing, Source::Rank(root), Some(root))?;
            let (piece, bytes) = Piece::read(&incoming)?;
            if piece.algorithm != BroadcastAlgorithm::PipelinedChain {
                return Err(bad_message(&incoming, "not a piece of the root's bytes"));
            }
            if piece.total != total || piece.offset != received {
                return Err(bad_message(&incoming, "a piece out of order"));
            }
            if bytes.is_empty() {
                return Err(bad_message(&incoming, "an empty piece"));
            }
            land.put(total, piece.offset, bytes);
            received += bytes.len();
            if let Some(next) = next {
                self.forward_in(ongoing, next, incoming.payloads)?;
            }
        }
        Ok(())
    }
}

/// Copies the root's buffer into `room` in pieces of `chunk` bytes (each one system call); false when
/// the kernel refused a copy.
fn copy_in_pieces(descriptor: &Descriptor, room: &mut [u8], chunk: usize) -> bool {
    let Ok(pid) = i32::try_from(descriptor.pid) else { return false };
    let mut done = 0u64;
    room.chunks_mut(chunk.max(1)).all(|piece| {
        let read = descriptor.address.checked_add(done).is_some_and(|at| read_process_exact(pid, at, piece));
        done += piece.len() as u64;
        read
    })
}
