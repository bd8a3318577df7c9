//! Collectives on the mesh, named after rsmpi's: broadcast, scatter, gather and all-to-all.
//!
//! Every rank calls the same collectives in the same order. Each call takes the next sequence number, and
//! every message it sends carries it, so consecutive collectives never mix data, and a rank that is one
//! collective behind still gets the right data (early arrivals wait in the mesh's queue).
//!
//! Receivers learn sizes from the metadata phase: receive buffers are any [`Buffer`]: a `Vec<u8>` is
//! resized to what arrives, a `[u8]` slice must be large enough (the return value says how much arrived).
//! Chunk sizes may differ per rank (MPI's `v` variants: scatterv, gatherv, alltoallv) with no extra call.
//!
//! Which algorithm runs when:
//! - **broadcast**: a binomial tree below [`PIPELINE_THRESHOLD`] bytes (log2 n steps, latency-bound sizes);
//!   from there on a pipelined chain in [`CHUNK_SIZE`] pieces (both tunable in
//!   [`MeshConfig`](super::MeshConfig); the root's choice travels with the data, so ranks need not agree) (rank r forwards piece k to r+1 while piece
//!   k+1 arrives, so the time approaches one transfer of the data however many ranks there are). Forwarding
//!   moves the received frame on without copying it. Both run along the ranks grouped by node (the
//!   root, the rest of its node, then each other node's ranks); across nodes the chain has two levels:
//!   the nodes' leaders (the root, then each node's lowest rank), each also starting a chain through its
//!   own node, so the data crosses the network once per node and the last rank is (nodes - 1) + (ranks
//!   of a node - 1) pieces behind. When every rank is on the root's node and reached through shared
//!   memory, smaller broadcasts than 64 KiB fan out from the root ([`BroadcastAlgorithm::FanOut`]), and
//!   larger ones read from the root ([`BroadcastAlgorithm::ReadFromRoot`]): the root tells each rank
//!   where its buffer is, every rank copies it straight into its own buffer at once (one copy per
//!   rank, `process_vm_readv`), and the root returns when each said it has the data (16 MiB at 4 ranks:
//!   0.67 of MPI_Bcast's time against 1.1 by the chain over shared memory).
//! - **scatter**: the root sends each rank its chunk directly, from several threads (rayon) when a chunk
//!   is 64 KiB or more (measured: 16 MiB per rank at 4 ranks took 1.6 times as long from one thread;
//!   below 64 KiB waking the threads costs more than it saves). On one node, from 64 KiB, each rank
//!   reads its chunk straight from the root's buffer instead, as the broadcast's do (`single_copy.rs`).
//!   When the ranks span several nodes and some node holds several, by node: one message per other
//!   node, to its leader, which passes the chunks on (see `by_node.rs`).
//! - **gather**: every rank sends its chunk to the root, which takes them in arrival order; on one node,
//!   from 256 KiB, each rank tells the root where its chunk is and the root reads them all, on several
//!   threads at once; by node across nodes, as scatter in reverse.
//! - **all-to-all**: pairwise exchange: in step s rank r sends to r+s and receives from r-s, so at every step
//!   each rank sends to a different peer and no peer is flooded. On one node, from 64 KiB, every rank
//!   tells every other where its chunk for it is, and each reads its chunks in place, all at once.
//!
//! When a rank finds a bad argument (a chunk count that does not match the rank count), it returns an
//! error naming the problem and tells the ranks waiting on it, which fail at once with that reason
//! ([`Error::PeerFailed`]) instead of at their deadline.
//!
//! # Mismatched calls
//! Every message of a collective carries its sequence number and its sender's call: the operation and
//! the root (sizes need no check of their own: a broadcast's total travels with each piece and is
//! checked against the receive buffer; chunk counts are checked against the rank count before anything
//! is sent). A rank compares the call of every message of its current or a recent sequence number with its
//! own call before it uses any data (a broadcast's non-root takes its first piece from any rank, so a
//! rank that thinks it is the root is caught there too). On a difference it fails at once with
//! [`Error::CollectiveMismatch`], naming both calls, and tells every rank; from then on every collective
//! of every rank fails at once with that error (the ranks are out of step; point to point still works).
//! No rank returns success with data of another call.
//!
//! What is and is not caught:
//! - A message of another call that reaches a rank is caught, at once if the rank waits in that
//!   collective, else at its next collective (in either case every rank is told).
//! - A rank that only sends in a call (a broadcast or scatter root, a gather non-root) may return success
//!   before anyone finds the mismatch; its result is its own data, and its next collective fails.
//! - A skipped collective is caught when the skipping rank's next call differs from the skipped one and
//!   their messages meet. It is not caught when the next call is alike (two broadcasts from one root: the
//!   skipping rank takes the first one's data, as in MPI, where calls match by their order), nor when no
//!   message of another call reaches any rank: then ranks wait, and the deadline below applies, naming the
//!   rank waited for as lost although it may be alive but out of step.
//!
//! # Deadline
//! Every wait of a collective, for a message to arrive or for room to queue one, ends at its deadline:
//! [`MeshConfig::timeout`](super::MeshConfig::timeout) after the rank's last progress in the collective
//! (its start, or the last message it received or queued in it). So a collective that keeps moving never
//! fails however long it runs (a 2.5 GiB broadcast makes progress with every piece), and one that stalls
//! fails one deadline after it stalled. A send that can be queued at once just is; one that cannot waits
//! for room in slices of 10 ms and looks between them, without waiting, for news that ends the
//! collective, as a receive does while it waits: a mismatch, a lost rank, a rank's failure notice (it
//! takes in arriving messages only while those it holds unread stay under 8 MiB, so that looking does
//! not undo the queue limit that holds a fast sender back; a notice behind more data than that is seen
//! at the deadline instead). A rank past the deadline tells every rank which rank it waits for (at most
//! 50 ms per rank), listens a fifth of the deadline (at most 200 ms) for news of a loss, then takes the
//! rank at the end of the chain of waits as lost ([`Error::PeerLost`]) and tells every rank (at most
//! 200 ms per rank), whose collectives fail at once. So every waiting rank, in a receive or in a send,
//! fails within the deadline plus a grace of at most 0.2 s + 0.25 s per other rank (measured with a
//! skipped gather, 4 s deadline, 3 and 4 ranks: 4.0 to 4.2 s), and with the mismatch or the failure
//! notice itself when one was sent, even when the ranks that sent it exit at once (measured: every rank
//! within 0.45 s, 5 s deadline; before, ranks blocked in a send took 10.5 to 20.7 s and called a rank
//! that had exited cleanly lost).

#![forbid(unsafe_code)]

use std::fmt;
use std::sync::atomic::Ordering;

use rayon::prelude::*;

use super::envelope::{Call, Channel, Collective, Operation};
use super::mailbox::Incoming;
use super::progress::Ongoing;
use super::{Mesh, Rank, Source};
use crate::error::{Error, Result};
use crate::transport::Payload;

/// The default size from which broadcasts use the pipelined chain; smaller ones use the binomial tree.
pub const PIPELINE_THRESHOLD: usize = 256 << 10;
/// The default piece size of the pipelined chain.
pub const CHUNK_SIZE: usize = 1 << 20;

/// Scatters with a chunk at least this large copy their chunks into messages from several threads.
pub(super) const PARALLEL_SCATTER_CHUNK: usize = 64 << 10;

/// The bytes of each broadcast message that say where its piece belongs: total length, offset, algorithm.
const PIECE_HEADER: usize = 17;

/// A receive buffer of a collective: a `Vec<u8>` grows or shrinks to fit, a slice must be large enough.
pub trait Buffer {
    /// The bytes to send, where this rank sends from this buffer (the broadcast root).
    fn bytes(&self) -> &[u8];
    /// Room for `len` arriving bytes, or `None` when the buffer cannot hold them.
    fn room(&mut self, len: usize) -> Option<&mut [u8]>;
    /// How many bytes the buffer holds now, for error messages.
    fn capacity(&self) -> usize;
}

impl Buffer for Vec<u8> {
    fn bytes(&self) -> &[u8] {
        self
    }
    fn room(&mut self, len: usize) -> Option<&mut [u8]> {
        self.resize(len, 0);
        Some(self)
    }
    fn capacity(&self) -> usize {
        self.len()
    }
}

impl Buffer for [u8] {
    fn bytes(&self) -> &[u8] {
        self
    }
    fn room(&mut self, len: usize) -> Option<&mut [u8]> {
        self.get_mut(..len)
    }
    fn capacity(&self) -> usize {
        self.len()
    }
}

/// How a broadcast moves its data; see the module docs for when each runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum BroadcastAlgorithm {
    /// log2(n) rounds, each rank forwarding the whole message to its subtrees.
    BinomialTree,
    /// A chain from the root through every rank, in pieces of [`CHUNK_SIZE`].
    PipelinedChain,
    /// Every rank of the node copies the root's buffer straight from the root's memory, all at once,
    /// one copy each; the root returns once each has.
    ReadFromRoot,
    /// The root sends the whole message to every rank itself: small messages on one node, where each
    /// send only writes into a queue and one hop beats the tree's log2(n).
    FanOut,
}

impl BroadcastAlgorithm {
    fn code(self) -> u8 {
        match self {
            Self::BinomialTree => 0,
            Self::PipelinedChain => 1,
            Self::ReadFromRoot => 2,
            Self::FanOut => 3,
        }
    }

    fn from_code(code: u8) -> Option<Self> {
        match code {
            0 => Some(Self::BinomialTree),
            1 => Some(Self::PipelinedChain),
            2 => Some(Self::ReadFromRoot),
            3 => Some(Self::FanOut),
            _ => None,
        }
    }
}

impl fmt::Display for BroadcastAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::BinomialTree => "binomial tree",
            Self::PipelinedChain => "pipelined chain",
            Self::ReadFromRoot => "every rank reads from the root",
            Self::FanOut => "the root sends to every rank",
        })
    }
}

/// Where a non-root's broadcast lands: the caller's buffer and progress callback.
pub(super) trait Land {
    /// Room for the whole message of `total` bytes, or `None` when the buffer cannot hold it (noted).
    fn room(&mut self, total: usize) -> Option<&mut [u8]>;
    /// Notes that `done` of the `total` bytes are in.
    fn progressed(&mut self, done: usize, total: usize);
    /// Copies `piece` to `offset` of the message (when the buffer holds it) and notes the progress.
    fn put(&mut self, total: usize, offset: usize, piece: &[u8]) {
        if let Some(room) = self.room(total) {
            room[offset..offset + piece.len()].copy_from_slice(piece);
        }
        self.progressed(offset + piece.len(), total);
    }
}

/// What became of a chunk message of a scatter, gather or all-to-all ([`Mesh::land_or_read`]).
pub(super) enum Landed {
    /// The chunk came whole and moved in.
    Moved,
    /// The chunk was read in place (or, when `asked`, its bytes are to be sent).
    Read {
        /// The kernel refused the copy: the holder was asked for the bytes.
        asked: bool,
    },
}

/// The caller's buffer and progress callback, and whether the buffer held the message.
struct Landing<'b, B: ?Sized, P> {
    buffer: &'b mut B,
    progress: P,
    fits: bool,
}

impl<B: Buffer + ?Sized, P: FnMut(usize, usize)> Land for Landing<'_, B, P> {
    fn room(&mut self, total: usize) -> Option<&mut [u8]> {
        // A Vec is resized on the first piece only; a slice either holds the whole message or nothing.
        let room = self.buffer.room(total);
        self.fits &= room.is_some();
        room
    }

    fn progressed(&mut self, done: usize, total: usize) {
        (self.progress)(done, total);
    }
}

/// The ranks, relative to the root, that relative rank `relative` sends to in a binomial tree of `n`.
fn tree_children(relative: usize, n: usize) -> impl Iterator<Item = usize> {
    let limit = if relative == 0 { n.next_power_of_two() } else { relative & relative.wrapping_neg() };
    std::iter::successors(Some(limit >> 1), |m| Some(m >> 1))
        .take_while(|&m| m > 0)
        .map(move |m| relative + m)
        .filter(move |&child| child < n)
}

/// Where a broadcast piece belongs, and how the broadcast travels.
pub(super) struct Piece {
    pub(super) total: usize,
    pub(super) offset: usize,
    pub(super) algorithm: BroadcastAlgorithm,
}

impl Piece {
    pub(super) fn encode(&self) -> [u8; PIECE_HEADER] {
        let mut header = [0; PIECE_HEADER];
        header[..8].copy_from_slice(&(self.total as u64).to_le_bytes());
        header[8..16].copy_from_slice(&(self.offset as u64).to_le_bytes());
        header[16] = self.algorithm.code();
        header
    }

    /// Reads a broadcast message: where its piece belongs and the piece, checking its shape.
    pub(super) fn read(incoming: &Incoming) -> Result<(Self, &[u8])> {
        let malformed = || bad_message(incoming, "malformed piece");
        let [header, piece] = &incoming.payloads[..] else { return Err(malformed()) };
        if header.len() != PIECE_HEADER {
            return Err(malformed());
        }
        let total = u64::from_le_bytes(header[..8].try_into().expect("8 bytes")) as usize;
        let offset = u64::from_le_bytes(header[8..16].try_into().expect("8 bytes")) as usize;
        let algorithm = BroadcastAlgorithm::from_code(header[16]).ok_or_else(malformed)?;
        // (The descriptor and the answers of a read from the root are not pieces of the data.)
        let data = algorithm != BroadcastAlgorithm::ReadFromRoot;
        if data && offset.checked_add(piece.len()).is_none_or(|end| end > total) {
            return Err(bad_message(incoming, "the piece runs past the message's end"));
        }
        Ok((Self { total, offset, algorithm }, piece))
    }
}

/// The pieces a broadcast of `data` is cut into: at least one, so that 0 bytes still make a message.
pub(super) fn pieces(data: &[u8], chunk_size: usize) -> impl Iterator<Item = (usize, &[u8])> {
    let chunk_size = chunk_size.max(1);
    let count = data.len().div_ceil(chunk_size).max(1);
    (0..count).map(move |i| {
        let start = i * chunk_size;
        (start, &data[start..data.len().min(start + chunk_size)])
    })
}

/// Makes `vec` a copy of `data`, reusing its allocation: collectives called in a loop with the same
/// output vectors allocate (and page in) their memory once.
fn refill(vec: &mut Vec<u8>, data: &[u8]) {
    vec.clear();
    vec.extend_from_slice(data);
}

/// Puts a received chunk into `slot`: the buffer the transport received it into moves in (the
/// same-node transport's, no copy), or the bytes are copied (a ZeroMQ frame); no payload is 0 bytes.
pub(super) fn land_payload(slot: &mut Vec<u8>, chunk: Option<Payload>) {
    match chunk.map(Payload::into_vec) {
        Some(Ok(buffer)) => *slot = buffer,
        Some(Err(frame)) => refill(slot, &frame),
        None => slot.clear(),
    }
}

pub(super) fn bad_message(incoming: &Incoming, reason: &str) -> Error {
    let op = match incoming.channel {
        Channel::Collective(collective) => collective.call.operation.name(),
        _ => "collective",
    };
    Error::BadPeerMessage { rank: incoming.source.0, op, reason: reason.into() }
}

fn too_small(what: &str, needed: usize, capacity: usize) -> Error {
    Error::InvalidArgument(format!("{what}: {needed} bytes arrive but the receive buffer holds {capacity}"))
}

fn wrong_chunk_count(what: &str, given: usize, ranks: usize) -> Error {
    Error::InvalidArgument(format!("{what}: {given} chunks given for {ranks} ranks (one per rank)"))
}

impl Mesh {
    /// Starts a collective: takes its sequence number (every collective takes one first, whatever happens
    /// next, so that all ranks keep counting alike even when a call fails), remembers this rank's call for
    /// it, and fails at once if a rank is known lost (even a rank, like a broadcast root, that would
    /// otherwise only send and never learn of it), or if a message that arrived already shows another
    /// rank's different call for this or a recent sequence number, or a rank's failure notice for this one.
    pub(super) fn begin_collective(
        &self,
        op: &'static str,
        operation: Operation,
        root: Option<Rank>,
    ) -> Result<Ongoing> {
        let sequence = self.collective_sequence.fetch_add(1, Ordering::Relaxed);
        let root = root.map(|r| u32::try_from(r.0).unwrap_or(u32::MAX));
        let call = Call { operation, root };
        let mut mailbox = crate::sync::lock(&self.mailbox);
        mailbox.begin(sequence, call);
        let news = self.look_for_news(&mut mailbox, sequence, op, usize::MAX);
        drop(mailbox);
        self.tell_untold();
        news?;
        let channel = Channel::Collective(Collective { sequence, call });
        Ok(Ongoing::new(channel, op, self.config.timeout))
    }

    /// The algorithm a broadcast of `len` bytes from this rank uses.
    pub fn broadcast_algorithm(&self, len: usize) -> BroadcastAlgorithm {
        // Below the same-node transport's single-copy size a send only writes into the peer's queue:
        // on one node the root reaches every rank in one hop (4 ranks, 8 B: 3.0-3.5 us against the
        // tree's 5.9-9.9; at 16 ranks 114 against 146). From there each send waits for its peer's copy,
        // and every rank reading the root's buffer at once wins (4 ranks, three runs taking turns:
        // 64 KiB 37-39 us against the tree's 36-58, 128 KiB 48-61 against 46-95).
        let single_copy_from =
            crate::transport::same_node::DEFAULT_SINGLE_COPY_FROM.min(self.config.pipeline_threshold);
        if len < single_copy_from && self.every_rank_shares_memory_here() {
            BroadcastAlgorithm::FanOut
        } else if len >= single_copy_from && self.config.single_copy && self.every_rank_reads_here() {
            BroadcastAlgorithm::ReadFromRoot
        } else if len < self.config.pipeline_threshold {
            BroadcastAlgorithm::BinomialTree
        } else {
            BroadcastAlgorithm::PipelinedChain
        }
    }

    /// Broadcasts the root's `buffer` to every rank; returns the number of bytes broadcast.
    ///
    /// On other ranks a `Vec<u8>` takes the root's length; a slice must hold it.
    pub fn broadcast_into<B: Buffer + ?Sized>(&self, root: Rank, buffer: &mut B) -> Result<usize> {
        self.broadcast_with_progress(root, buffer, |_, _| {})
    }

    /// As [`Mesh::broadcast_into`], calling `progress(bytes_done, total)` as pieces arrive (on the root: as
    /// they are sent).
    pub fn broadcast_with_progress<B: Buffer + ?Sized>(
        &self,
        root: Rank,
        buffer: &mut B,
        mut progress: impl FnMut(usize, usize),
    ) -> Result<usize> {
        let ongoing = self.begin_collective("broadcast", Operation::Broadcast, Some(root))?;
        self.check_rank(root)?;
        let n = self.size();
        let order = self.topology.order_from(root);
        let absolute = |r: usize| order[r];
        if self.rank == root {
            let data = buffer.bytes();
            let total = data.len();
            let algorithm = self.broadcast_algorithm(total);
            let header = |offset| Piece { total, offset, algorithm }.encode();
            match algorithm {
                BroadcastAlgorithm::BinomialTree => {
                    for child in tree_children(0, n) {
                        self.send_in(&ongoing, absolute(child), &[&header(0), data])?;
                    }
                    progress(total, total);
                }
                BroadcastAlgorithm::FanOut => {
                    let sent =
                        order[1..].iter().try_for_each(|&to| self.send_in(&ongoing, to, &[&header(0), data]));
                    self.or_report(&ongoing, order[1..].iter().copied(), sent)?;
                    progress(total, total);
                }
                BroadcastAlgorithm::PipelinedChain => {
                    let (_, next) = self.topology.chain_from(root, root);
                    for (offset, piece) in pieces(data, self.config.chunk_size) {
                        for &to in &next {
                            self.send_in(&ongoing, to, &[&header(offset), piece])?;
                        }
                        progress(offset + piece.len(), total);
                    }
                }
                BroadcastAlgorithm::ReadFromRoot => {
                    let offered = self.offer_to_readers(&ongoing, &order, data);
                    self.or_report(&ongoing, order[1..].iter().copied(), offered)?;
                    progress(total, total);
                }
            }
            return Ok(total);
        }

        let capacity = buffer.capacity();
        let mut landing = Landing { buffer, progress, fits: true };
        let total = self.relay_broadcast(&ongoing, root, &mut landing)?;
        if landing.fits {
            Ok(total)
        } else {
            Err(too_small("broadcast", total, capacity))
        }
    }

    /// A non-root's part of a broadcast: receives every piece, lands it and passes it on to the ranks
    /// below this one (or, when every rank reads from the root, copies from there). Returns the
    /// message's total size. A failure is reported to the ranks below.
    fn relay_broadcast(&self, ongoing: &Ongoing, root: Rank, land: &mut dyn Land) -> Result<usize> {
        let n = self.size();
        // Positions along the node-grouped order from the root: the tree's and the chain's.
        let order = self.topology.order_from(root);
        let relative = order.iter().position(|&r| r == self.rank).expect("every rank is in the order");
        let absolute = |r: usize| order[r];
        // The chain has two levels across nodes: the previous rank, and the ranks to pass pieces to.
        let (previous, next) = self.topology.chain_from(root, self.rank);
        let previous = previous.expect("a rank other than the root takes its pieces from another");
        // The first piece comes from the tree parent, the chain predecessor or, in a fan-out, the root:
        // often one rank, which is then the one to suspect when nothing comes.
        let mut senders = vec![absolute(relative - (relative & relative.wrapping_neg()))];
        let fan_out = self.every_rank_shares_memory_here().then_some(root);
        senders.extend([Some(previous), fan_out].into_iter().flatten());
        senders.sort_unstable();
        senders.dedup();
        let suspect = (senders.len() == 1).then(|| senders[0]);
        let first = self.receive_in(ongoing, Source::Any, suspect).map_err(|error| match error {
            Error::Timeout { op, after, .. } => self.give_up_on_one_of(&senders, op, after),
            other => other,
        });
        let first = first.and_then(|incoming| {
            let (piece, _) = Piece::read(&incoming)?;
            Ok((incoming, piece.total, piece.algorithm))
        });
        let (mut incoming, total, algorithm) = match first {
            Ok(first) => first,
            // The algorithm is unknown before the first piece: warn the ranks below in either.
            Err(e) => {
                let below = tree_children(relative, n).map(absolute).chain(next);
                return self.or_report(ongoing, below, Err(e));
            }
        };
        let below: Vec<Rank> = match algorithm {
            BroadcastAlgorithm::BinomialTree => tree_children(relative, n).map(absolute).collect(),
            BroadcastAlgorithm::PipelinedChain => next,
            BroadcastAlgorithm::FanOut => Vec::new(),
            // Only the root waits on this rank: it is told of a failure at once.
            BroadcastAlgorithm::ReadFromRoot => {
                let read = self.read_from_root(ongoing, root, &incoming, total, land);
                return self.or_report(ongoing, [root], read);
            }
        };
        let relay = || -> Result<usize> {
            let mut received = 0;
            loop {
                let (at, piece) = Piece::read(&incoming)?;
                if at.total != total || at.offset != received || at.algorithm != algorithm {
                    return Err(bad_message(&incoming, "a piece out of order"));
                }
                land.put(total, at.offset, piece);
                received += piece.len();
                // Each rank below but the last gets a copy (a chain's leader: the next node's leader
                // first); the last gets the received frame itself.
                if let Some((&last, others)) = below.split_last() {
                    for &to in others {
                        self.send_in(ongoing, to, &[&incoming.payloads[0], &incoming.payloads[1]])?;
                    }
                    self.forward_in(ongoing, last, incoming.payloads)?;
                }
                if received >= total {
                    return Ok(total);
                }
                incoming = self.receive_in(ongoing, Source::Rank(previous), Some(previous))?;
            }
        };
        let relayed = relay();
        self.or_report(ongoing, below, relayed)
    }

    /// Passes `result` through; on an error, first tells `dependents` (the ranks waiting on this one in the
    /// `ongoing` collective) so that they fail at once with the reason instead of at their deadline.
    /// (A mismatch or a loss needs no report here: every rank was told when it was found.)
    pub(super) fn or_report<T>(
        &self,
        ongoing: &Ongoing,
        dependents: impl IntoIterator<Item = Rank>,
        result: Result<T>,
    ) -> Result<T> {
        match &result {
            Err(Error::CollectiveMismatch { .. } | Error::PeerLost { .. }) | Ok(_) => {}
            Err(error) => self.report_failure(ongoing.channel, dependents.into_iter(), error),
        }
        result
    }

    /// The root's side of a scatter: rank r receives `chunks[r]` (sizes may differ); the root's own chunk
    /// lands in `buffer`. Returns the size of the root's chunk.
    pub fn scatter_into_root<B: Buffer + ?Sized>(&self, chunks: &[&[u8]], buffer: &mut B) -> Result<usize> {
        let ongoing = self.begin_collective("scatter", Operation::Scatter, Some(self.rank))?;
        let sent = if chunks.len() != self.size() {
            Err(wrong_chunk_count("scatter", chunks.len(), self.size()))
        } else if self.by_node() {
            self.scatter_root_by_node(&ongoing, chunks)
        } else if self.chunks_read_in_place(chunks.iter().map(|c| c.len()).max().unwrap_or(0)) {
            self.scatter_by_reading(&ongoing, chunks)
        } else {
            let send = |(rank, chunk): (usize, &&[u8])| match rank == self.rank.0 {
                true => Ok(()),
                false => self.send_in(&ongoing, Rank(rank), &[chunk]),
            };
            // Copying large chunks into their messages on several threads pays; for small ones waking the
            // threads costs more than the copies (tens of microseconds).
            if chunks.iter().any(|c| c.len() >= PARALLEL_SCATTER_CHUNK) {
                chunks.par_iter().enumerate().try_for_each(send)
            } else {
                chunks.iter().enumerate().try_for_each(send)
            }
        };
        self.or_report(&ongoing, self.others(), sent)?;
        let own = chunks[self.rank.0];
        let capacity = buffer.capacity();
        let room = buffer.room(own.len()).ok_or_else(|| too_small("scatter", own.len(), capacity))?;
        room.copy_from_slice(own);
        Ok(own.len())
    }

    /// A non-root's side of a scatter: receives this rank's chunk from `root` into `buffer`; returns its size.
    pub fn scatter_into<B: Buffer + ?Sized>(&self, root: Rank, buffer: &mut B) -> Result<usize> {
        let ongoing = self.begin_collective("scatter", Operation::Scatter, Some(root))?;
        self.check_not_root(root, "scatter_into", "scatter_into_root")?;
        let chunk = match self.by_node() {
            true => self.scatter_chunk_by_node(&ongoing, root)?,
            false => {
                let incoming = self.receive_in(&ongoing, Source::Rank(root), Some(root))?;
                if incoming.payloads.len() == 2 {
                    // A descriptor: the chunk is read in place, straight into the buffer.
                    return self.scatter_chunk_by_reading(&ongoing, root, &incoming, buffer);
                }
                incoming.payloads.into_iter().next()
            }
        };
        let data = chunk.as_deref().unwrap_or_default();
        let capacity = buffer.capacity();
        let room = buffer.room(data.len()).ok_or_else(|| too_small("scatter", data.len(), capacity))?;
        room.copy_from_slice(data);
        Ok(data.len())
    }

    /// A scatter's chunk read in place from the root's buffer into `buffer`, as the root's descriptor
    /// (`first`) says.
    fn scatter_chunk_by_reading<B: Buffer + ?Sized>(
        &self,
        ongoing: &Ongoing,
        root: Rank,
        first: &Incoming,
        buffer: &mut B,
    ) -> Result<usize> {
        let (piece, _) = Piece::read(first)?;
        let capacity = buffer.capacity();
        let mut landing = Landing { buffer, progress: |_, _| {}, fits: true };
        let read = self.read_from_root(ongoing, root, first, piece.total, &mut landing);
        let total = self.or_report(ongoing, [root], read)?;
        match landing.fits {
            true => Ok(total),
            false => Err(too_small("scatter", total, capacity)),
        }
    }

    /// A non-root's side of a gather: sends `data` to `root`.
    pub fn gather_into(&self, root: Rank, data: &[u8]) -> Result<()> {
        let ongoing = self.begin_collective("gather", Operation::Gather, Some(root))?;
        self.check_not_root(root, "gather_into", "gather_into_root")?;
        if self.by_node() {
            return self.gather_by_node(&ongoing, root, data);
        }
        let sent = match self.gathered_in_place(data.len()) {
            true => self.offer_to_gatherer(&ongoing, root, data),
            false => self.send_in(&ongoing, root, &[data]),
        };
        self.or_report(&ongoing, [root], sent)
    }

    /// The root's side of a gather: `gathered[r]` becomes rank r's data (sizes may differ), the root's own
    /// from `data`. Returns the total bytes gathered.
    pub fn gather_into_root(&self, data: &[u8], gathered: &mut Vec<Vec<u8>>) -> Result<usize> {
        let ongoing = self.begin_collective("gather", Operation::Gather, Some(self.rank))?;
        let n = self.size();
        gathered.resize_with(n, Vec::new);
        refill(&mut gathered[self.rank.0], data);
        if self.by_node() {
            self.gather_root_by_node(&ongoing, gathered)?;
            return Ok(gathered.iter().map(Vec::len).sum());
        }
        // The ranks that offered their chunk wait for this rank's answer: a failure here is told to them
        // all.
        let gathered_in = self.gather_in(&ongoing, gathered);
        self.or_report(&ongoing, self.others(), gathered_in)?;
        Ok(gathered.iter().map(Vec::len).sum())
    }

    /// The root's side of a gather on one node, or of one rank per node: takes every rank's message, then
    /// lands the chunks sent whole and reads those offered in place, on several threads at once.
    fn gather_in(&self, ongoing: &Ongoing, gathered: &mut [Vec<u8>]) -> Result<()> {
        let n = self.size();
        let mut arrived: Vec<Option<Incoming>> = (0..n).map(|_| None).collect();
        for _ in 1..n {
            // Past the deadline, the first rank still missing is the one to suspect.
            let missing = (0..n).find(|&r| r != self.rank.0 && arrived[r].is_none()).map(Rank);
            let incoming = self.receive_in(ongoing, Source::Any, missing)?;
            let source = incoming.source;
            if source == self.rank || arrived[source.0].replace(incoming).is_some() {
                let reason = "a second contribution".into();
                return Err(Error::BadPeerMessage { rank: source.0, op: "gather", reason });
            }
        }
        // Chunks sent whole move in; chunks offered in place are read, on several threads at once.
        let landed: Vec<Result<(Rank, Landed)>> = arrived
            .into_par_iter()
            .zip(gathered.par_iter_mut())
            .filter_map(|(incoming, slot)| incoming.map(|incoming| (incoming, slot)))
            .map(|(incoming, slot)| {
                let holder = incoming.source;
                self.land_or_read(ongoing, incoming, slot).map(|landed| (holder, landed))
            })
            .collect();
        let read = landed
            .into_iter()
            .filter_map(|landed| match landed {
                Ok((holder, Landed::Read { asked })) => Some(Ok((holder, asked))),
                Ok((_, Landed::Moved)) => None,
                Err(error) => Some(Err(error)),
            })
            .collect::<Result<Vec<_>>>()?;
        self.finish_reads(ongoing, &read, gathered)
    }

    /// All-to-all: this rank sends `chunks[r]` to rank r and `received[r]` becomes what rank r sent it
    /// (sizes may differ: alltoallv). Returns the total bytes received.
    pub fn all_to_all_into(&self, chunks: &[&[u8]], received: &mut Vec<Vec<u8>>) -> Result<usize> {
        let ongoing = self.begin_collective("all_to_all", Operation::AllToAll, None)?;
        let n = self.size();
        let exchanged = if chunks.len() != n {
            Err(wrong_chunk_count("all_to_all", chunks.len(), n))
        } else {
            received.resize_with(n, Vec::new);
            refill(&mut received[self.rank.0], chunks[self.rank.0]);
            match self.chunks_read_in_place(chunks.iter().map(|c| c.len()).max().unwrap_or(0)) {
                true => self.exchange_by_reading(&ongoing, chunks, received),
                false => self.pairwise_exchange(&ongoing, chunks, received),
            }
        };
        self.or_report(&ongoing, self.others(), exchanged)?;
        Ok(received.iter().map(Vec::len).sum())
    }

    fn pairwise_exchange(&self, ongoing: &Ongoing, chunks: &[&[u8]], received: &mut [Vec<u8>]) -> Result<()> {
        let (me, n) = (self.rank.0, self.size());
        // A rank whose chunks are read in place sends descriptors instead. This rank reads them after
        // it has sent every chunk: its answer must reach such a rank after its chunk, which that rank
        // takes first. Then it takes the bytes of those whose copy was refused.
        let mut offered = Vec::new();
        for step in 1..n {
            let (to, from) = ((me + step) % n, (me + n - step) % n);
            self.send_in(ongoing, Rank(to), &[chunks[to]])?;
            let incoming = self.receive_in(ongoing, Source::Rank(Rank(from)), Some(Rank(from)))?;
            match incoming.payloads.len() {
                1 => land_payload(&mut received[from], incoming.payloads.into_iter().next()),
                _ => offered.push(incoming),
            }
        }
        let mut read = Vec::new();
        for incoming in offered {
            let holder = incoming.source;
            if let Landed::Read { asked } = self.land_or_read(ongoing, incoming, &mut received[holder.0])? {
                read.push((holder, asked));
            }
        }
        self.finish_reads(ongoing, &read, received)
    }

    /// Every rank but this one.
    fn others(&self) -> impl Iterator<Item = Rank> + '_ {
        (0..self.size()).map(Rank).filter(move |&r| r != self.rank)
    }

    pub(super) fn check_not_root(&self, root: Rank, call: &str, root_call: &str) -> Result<()> {
        self.check_rank(root)?;
        if root == self.rank {
            return Err(Error::InvalidArgument(format!(
                "{call} on the root itself: the root calls {root_call}"
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binomial_tree_reaches_every_rank_once() {
        for n in 1..=33 {
            let mut reached = vec![0; n];
            reached[0] = 1;
            let mut frontier = vec![0];
            while let Some(r) = frontier.pop() {
                for child in tree_children(r, n) {
                    reached[child] += 1;
                    frontier.push(child);
                }
            }
            assert!(reached.iter().all(|&c| c == 1), "n = {n}: {reached:?}");
        }
        assert_eq!(tree_children(0, 5).collect::<Vec<_>>(), [4, 2, 1]);
        assert_eq!(tree_children(2, 5).collect::<Vec<_>>(), [3]);
    }

    #[test]
    fn pieces_cover_the_data_and_empty_data_is_one_piece() {
        assert_eq!(pieces(&[], CHUNK_SIZE).count(), 1);
        let data = vec![0u8; 2 * CHUNK_SIZE + 3];
        let offsets: Vec<_> = pieces(&data, CHUNK_SIZE).map(|(o, p)| (o, p.len())).collect();
        assert_eq!(offsets, [(0, CHUNK_SIZE), (CHUNK_SIZE, CHUNK_SIZE), (2 * CHUNK_SIZE, 3)]);
    }
}
