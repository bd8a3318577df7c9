//! The collectives' single copies on one node: a rank that holds data tells the ranks that need it
//! where it is (its process and the buffer's address), and each copies it straight from there into its
//! own buffer (`process_vm_readv`), all at once, one copy each. The holder returns success only once
//! every such rank answered (so its buffer is not read after a successful call). A rank's copy stands
//! only if the holder's offer was still open after it ([`in_call`]): a copy that outlived the holder's
//! call (its deadline passed) is never returned as success. Where the kernel refuses a rank the single
//! copy (ptrace rules, a container), that rank asks for the bytes and the holder sends them.
//!
//! The broadcast's root holds one buffer for every rank, a scatter's root a chunk per rank, and in an
//! all-to-all every rank holds a chunk for each other rank and reads one from each (see
//! [`Mesh::exchange_by_reading`]).
//!
//! A descriptor names the holder's process and buffer; a rank reads only from the process the bootstrap
//! recorded for the holder, and a same-user process that forges a descriptor could read that memory
//! itself (see the same-node transport's trust notes).

#![forbid(unsafe_code)]

use super::collectives::{bad_message, land_payload, pieces, BroadcastAlgorithm, Land, Landed, Piece};
use super::in_call::{self, Offer};
use super::mailbox::Incoming;
use super::progress::Ongoing;
use super::{Mesh, Rank, Source};
use crate::error::{Error, Result};
use crate::shm::{read_process_exact, ShmPtr};

/// A rank's answer to the holder: it copied the data (or needs none: its buffer is too small)...
pub(super) const COPIED: u8 = 0;
/// ...or the kernel refused it the single copy, and the holder must send the bytes.
pub(super) const SEND_BYTES: u8 = 1;

/// Where a holder's data is (its process and the buffer's address), and the offer that keeps it there:
/// the offer's number and where its word is ([`in_call`]). 28 bytes and the word segment's name.
struct Descriptor {
    pid: u32,
    address: u64,
    offer: u64,
    word: ShmPtr,
}

impl Descriptor {
    /// Where `data`, in this process, is, while `offer` is open.
    fn of(data: &[u8], offer: &Offer) -> Self {
        Self {
            pid: std::process::id(),
            address: data.as_ptr() as u64,
            offer: offer.id,
            word: offer.at.clone(),
        }
    }

    fn encode(&self) -> Vec<u8> {
        let numbers = [self.address, self.offer, self.word.offset].map(u64::to_le_bytes);
        [&self.pid.to_le_bytes()[..], &numbers.concat(), self.word.segment.as_bytes()].concat()
    }

    fn decode(incoming: &Incoming, bytes: &[u8]) -> Result<Self> {
        let malformed = || bad_message(incoming, "malformed descriptor");
        if !(29..=28 + 255).contains(&bytes.len()) {
            return Err(malformed());
        }
        let number = |at: usize| u64::from_le_bytes(bytes[at..at + 8].try_into().expect("8 bytes"));
        let segment = std::str::from_utf8(&bytes[28..]).map_err(|_| malformed())?.to_owned();
        Ok(Self {
            pid: u32::from_le_bytes(bytes[..4].try_into().expect("4 bytes")),
            address: number(4),
            offer: number(12),
            word: ShmPtr { segment, offset: number(20) },
        })
    }
}

/// A received chunk of a scatter or an all-to-all lands in a vector, sized to it.
impl Land for Vec<u8> {
    fn room(&mut self, total: usize) -> Option<&mut [u8]> {
        self.resize(total, 0);
        Some(self)
    }

    fn progressed(&mut self, _done: usize, _total: usize) {}
}

impl Mesh {
    /// True when a broadcast from this rank can have every rank read from it: the whole mesh on this
    /// node, each rank reached through shared memory.
    pub(super) fn every_rank_reads_here(&self) -> bool {
        !self.readers_refused.load(std::sync::atomic::Ordering::Relaxed)
            && self.every_rank_shares_memory_here()
    }

    /// True when the whole mesh is on this node, each rank reached through shared memory.
    pub(super) fn every_rank_shares_memory_here(&self) -> bool {
        use crate::transport::Transport;
        self.size() > 1
            && self.topology.node_count() == 1
            && (0..self.size())
                .all(|r| self.transport_to(Rank(r)).is_ok_and(|t| t == Transport::SharedMemory))
    }

    /// True when this rank's chunks of a scatter or an all-to-all, of which the largest holds `largest`
    /// bytes, are read in place by the ranks they are for: on one node, from the size where the
    /// same-node transport's messages are single copies too (64 KiB). (4 ranks, of MPI's time, read
    /// in place against sent in the pairwise exchange: all-to-all 64 KiB 2.3 against 5.6, 128 KiB 1.5
    /// against 3.7, 1 MiB 1.25 against 1.80; scatter 1 MiB 0.94 against 1.38, smaller sizes alike.)
    pub(super) fn chunks_read_in_place(&self, largest: usize) -> bool {
        self.reads_in_place_from(crate::transport::same_node::DEFAULT_SINGLE_COPY_FROM, largest)
    }

    /// True when a gather's chunk of `len` bytes is read in place by the root: on one node, from 256
    /// KiB, where the root reading every chunk on several threads overtakes it taking them in one by one
    /// (4 ranks, of MPI's time: 128 KiB 2.4-2.5 against 1.9-2.0, 256 KiB 1.4-1.6 against 1.5-1.6, 1 MiB
    /// 1.02-1.17 against 1.17-1.24, 16 MiB 0.70-0.93 against 1.00-1.06).
    pub(super) fn gathered_in_place(&self, len: usize) -> bool {
        self.reads_in_place_from(256 << 10, len)
    }

    fn reads_in_place_from(&self, threshold: usize, len: usize) -> bool {
        self.config.single_copy && len >= threshold && self.every_rank_reads_here()
    }

    /// The root's side of a broadcast: tells every rank where `data` is, then waits for each to answer,
    /// sending the bytes to those the kernel refused the copy.
    pub(super) fn offer_to_readers(&self, ongoing: &Ongoing, order: &[Rank], data: &[u8]) -> Result<()> {
        let readers = &order[1..];
        let offer = self.call_words.open(self.token, self.rank)?;
        if self.offer(ongoing, readers, &Descriptor::of(data, &offer).encode(), data)? {
            self.note_refusals(readers);
        }
        Ok(())
    }

    /// After `askers` asked for bytes instead of copying (the kernel refuses them copies): this rank's
    /// later collectives send, instead of offering reads (a broadcast takes the chain, which sends the
    /// bytes once, not once per rank).
    fn note_refusals(&self, askers: &[Rank]) {
        if !askers.is_empty() {
            self.readers_refused.store(true, std::sync::atomic::Ordering::Relaxed);
        }
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
        for &reader in readers {
            self.tell(ongoing, reader, data.len(), descriptor)?;
        }
        let askers = self.answers(ongoing, readers.iter().copied())?;
        for &asker in &askers {
            self.send_bytes_to(ongoing, asker, data)?;
        }
        Ok(!askers.is_empty())
    }

    /// Tells `reader` where the `total` bytes it is to copy are.
    fn tell(&self, ongoing: &Ongoing, reader: Rank, total: usize, descriptor: &[u8]) -> Result<()> {
        let header = Piece { total, offset: 0, algorithm: BroadcastAlgorithm::ReadFromRoot };
        self.send_in(ongoing, reader, &[&header.encode(), descriptor])
    }

    /// Takes each reader's answer, in turn; returns those that asked for the bytes.
    fn answers(&self, ongoing: &Ongoing, readers: impl IntoIterator<Item = Rank>) -> Result<Vec<Rank>> {
        let mut askers = Vec::new();
        for reader in readers {
            let answer = self.receive_in(ongoing, Source::Rank(reader), Some(reader))?;
            match Piece::read(&answer)? {
                (piece, [COPIED]) if piece.algorithm == BroadcastAlgorithm::ReadFromRoot => {}
                (piece, [SEND_BYTES]) if piece.algorithm == BroadcastAlgorithm::ReadFromRoot => {
                    askers.push(reader)
                }
                _ => return Err(bad_message(&answer, "an answer that is not COPIED or SEND_BYTES")),
            }
        }
        Ok(askers)
    }

    /// After a pairwise exchange in which this rank read the chunks of `read` in place (each with
    /// whether it asked for the bytes): takes those bytes.
    pub(super) fn finish_reads(
        &self,
        ongoing: &Ongoing,
        read: &[(Rank, bool)],
        received: &mut [Vec<u8>],
    ) -> Result<()> {
        for &(holder, asked) in read {
            if asked {
                self.receive_whole(ongoing, holder, &mut received[holder.0])?;
            }
        }
        Ok(())
    }

    /// A non-root's side of a gather whose chunk is read in place: tells the root where `data` is, and
    /// returns once the root answered (sending the bytes when it asks).
    pub(super) fn offer_to_gatherer(&self, ongoing: &Ongoing, root: Rank, data: &[u8]) -> Result<()> {
        let offer = self.call_words.open(self.token, self.rank)?;
        self.tell(ongoing, root, data.len(), &Descriptor::of(data, &offer).encode())?;
        if !self.answers(ongoing, [root])?.is_empty() {
            self.note_refusals(&[root]);
            self.send_in(ongoing, root, &[data])?;
        }
        Ok(())
    }

    /// Takes the chunk this rank asked `holder` for, sent whole, into `slot` (which its descriptor sized).
    fn receive_whole(&self, ongoing: &Ongoing, holder: Rank, slot: &mut Vec<u8>) -> Result<()> {
        let incoming = self.receive_in(ongoing, Source::Rank(holder), Some(holder))?;
        if !matches!(&incoming.payloads[..], [bytes] if bytes.len() == slot.len()) {
            return Err(bad_message(&incoming, "not the chunk this rank asked for"));
        }
        land_payload(slot, incoming.payloads.into_iter().next());
        Ok(())
    }

    /// The root's side of a scatter whose chunks are read in place: every other rank copies its chunk
    /// from `chunks`.
    pub(super) fn scatter_by_reading(&self, ongoing: &Ongoing, chunks: &[&[u8]]) -> Result<()> {
        let readers: Vec<Rank> = (0..self.size()).map(Rank).filter(|&r| r != self.rank).collect();
        let offer = self.call_words.open(self.token, self.rank)?;
        for &reader in &readers {
            let chunk = chunks[reader.0];
            self.tell(ongoing, reader, chunk.len(), &Descriptor::of(chunk, &offer).encode())?;
        }
        let askers = self.answers(ongoing, readers.iter().copied())?;
        self.note_refusals(&askers);
        for asker in askers {
            self.send_bytes_to(ongoing, asker, chunks[asker.0])?;
        }
        Ok(())
    }

    /// An all-to-all on one node where every chunk is read in place: this rank tells each other rank
    /// where its chunk is, copies each other rank's chunk for it straight into `received`, and returns
    /// once every rank answered. (The ranks that the kernel refuses a copy get the bytes sent whole, in
    /// the pairwise order, which never deadlocks.)
    pub(super) fn exchange_by_reading(
        &self,
        ongoing: &Ongoing,
        chunks: &[&[u8]],
        received: &mut [Vec<u8>],
    ) -> Result<()> {
        let (me, n) = (self.rank.0, self.size());
        let to = |step: usize| Rank((me + step) % n);
        let from = |step: usize| Rank((me + n - step) % n);
        let offer = self.call_words.open(self.token, self.rank)?;
        for step in 1..n {
            let chunk = chunks[to(step).0];
            self.tell(ongoing, to(step), chunk.len(), &Descriptor::of(chunk, &offer).encode())?;
        }
        let mut asked = vec![false; n];
        for step in 1..n {
            let holder = from(step);
            let incoming = self.receive_in(ongoing, Source::Rank(holder), Some(holder))?;
            if let Landed::Read { asked: bytes } =
                self.land_or_read(ongoing, incoming, &mut received[holder.0])?
            {
                asked[holder.0] = bytes;
            }
        }
        let askers = self.answers(ongoing, (1..n).map(to))?;
        self.note_refusals(&askers);
        for step in 1..n {
            // Whole, one message each: a rank blocked in a send takes in every message of its own
            // collective, however large, so the pairwise order never deadlocks.
            if askers.contains(&to(step)) {
                self.send_in(ongoing, to(step), &[chunks[to(step).0]])?;
            }
            let holder = from(step);
            if asked[holder.0] {
                self.receive_whole(ongoing, holder, &mut received[holder.0])?;
            }
        }
        Ok(())
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

    /// A rank's side of a broadcast, once the root's descriptor (`first`, of a broadcast of `total`
    /// bytes) came: copies the root's buffer into `land`, answers the root (and takes the bytes from it
    /// when the kernel refused the copy), and returns `total`.
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
        if self.read_offered(ongoing, first, total, land)? {
            self.receive_bytes_from(ongoing, root, total, land, None)?;
        }
        Ok(total)
    }

    /// Lands a chunk message from its holder in `slot`: a chunk sent whole moves in; a descriptor is read
    /// in place and answered.
    pub(super) fn land_or_read(
        &self,
        ongoing: &Ongoing,
        incoming: Incoming,
        slot: &mut Vec<u8>,
    ) -> Result<Landed> {
        if incoming.payloads.len() != 2 {
            super::collectives::land_payload(slot, incoming.payloads.into_iter().next());
            return Ok(Landed::Moved);
        }
        let (piece, _) = Piece::read(&incoming)?;
        if piece.algorithm != BroadcastAlgorithm::ReadFromRoot {
            return Err(bad_message(&incoming, "neither a chunk nor a descriptor"));
        }
        let asked = self.read_offered(ongoing, &incoming, piece.total, slot)?;
        Ok(Landed::Read { asked })
    }

    /// Copies the `total` bytes the descriptor `first` names into `land` (in pieces of the chunk size,
    /// each one system call) and answers its sender; true when the kernel refused the copy and the
    /// sender was asked for the bytes.
    fn read_offered(
        &self,
        ongoing: &Ongoing,
        first: &Incoming,
        total: usize,
        land: &mut dyn Land,
    ) -> Result<bool> {
        let holder = first.source;
        let (_, bytes) = Piece::read(first)?;
        let descriptor = Descriptor::decode(first, bytes)?;
        // (A descriptor naming this very process would be a pid of another namespace: never read.)
        if descriptor.pid != self.peers[holder.0].pid || descriptor.pid == std::process::id() {
            return Err(bad_message(first, "a descriptor naming another process than its sender's"));
        }
        let header = Piece { total, offset: 0, algorithm: BroadcastAlgorithm::ReadFromRoot }.encode();
        let copied = match land.room(total) {
            // Too small: the holder need send nothing; the caller reports the size.
            None => true,
            Some([]) => true,
            Some(room) => {
                let copied =
                    self.config.single_copy && copy_in_pieces(&descriptor, room, self.config.chunk_size);
                // The copy stands only if the holder's buffer stayed in place through it: its offer is
                // still open after it.
                let prefix = in_call::prefix(self.token, holder);
                if copied && !self.call_words.still_open(&prefix, holder, &descriptor.word, descriptor.offer)
                {
                    let reason = "it left the collective before this rank's copy of its data was done".into();
                    return Err(
                        self.news_or(ongoing, Error::PeerFailed { rank: holder.0, op: ongoing.op, reason })
                    );
                }
                copied
            }
        };
        if copied {
            land.progressed(total, total);
        }
        self.send_in(ongoing, holder, &[&header, &[if copied { COPIED } else { SEND_BYTES }]])?;
        Ok(!copied)
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
