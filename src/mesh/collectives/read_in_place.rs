//! The collectives' single copies on one node: a rank that holds data tells the ranks that need it
//! where it is (an offer: its process and the buffer's address), and each copies it straight from
//! there into its own buffer (`process_vm_readv`), all at once, one copy each. The holder returns
//! success only once every such rank answered (so its buffer is not read after a successful call). A
//! rank's copy stands only if the holder's offer was still open after it (the exchange's offer words):
//! a copy that outlived the holder's call (its deadline passed) is never returned as success. Where the
//! kernel refuses a rank the single copy (ptrace rules, a container), that rank asks for the bytes and
//! the holder sends them.
//!
//! The broadcast's root holds one buffer for every rank, a scatter's root a chunk per rank, a gather's
//! ranks one chunk each for the root, and in an all-to-all every rank holds a chunk for each other rank
//! and reads one from each.
//!
//! A rank reads only from the process the bootstrap recorded for the holder, and only when the holder
//! runs on its node; a same-user process that forges an offer could read that memory itself (see the
//! same-node transport's trust notes).

#![forbid(unsafe_code)]

use super::buffers::{land_payload, pieces, Land};
use super::plan::Plan;
use super::protocol::{self, Answer, Descriptor, Header, Message};
use crate::error::{Error, Result};
use crate::mesh::net::exchange::Exchange;
use crate::mesh::net::matching::Incoming;
use crate::mesh::net::offer_words::Offer;
use crate::mesh::types::{Rank, Source};
use crate::shm::read_process_exact;

/// What became of a chunk message of a scatter, gather or all-to-all ([`land_or_read`]).
pub(super) enum Landed {
    /// The chunk came whole and moved in.
    Moved,
    /// The chunk was read in place (or, when `asked`, its bytes are to be sent).
    Read {
        /// The kernel refused the copy: the holder was asked for the bytes.
        asked: bool,
    },
}

/// Where `data`, in this process, is, while `offer` is open.
pub(super) fn descriptor(data: &[u8], offer: &Offer) -> Vec<u8> {
    let at = Descriptor {
        pid: std::process::id(),
        address: data.as_ptr() as u64,
        offer: offer.id,
        word: offer.at.clone(),
    };
    at.encode()
}

/// The root's side of a broadcast read from the root: tells every rank of `readers` where `data` is,
/// then waits for each to answer, sending the bytes to those the kernel refused the copy.
pub(super) fn offer_to_readers(x: &Exchange<'_>, plan: &Plan, readers: &[Rank], data: &[u8]) -> Result<()> {
    let open = x.open_offer()?;
    let header = Header::Offer { total: data.len() };
    let askers = offer(x, plan, readers, (header, &descriptor(data, &open)), data)?;
    plan.note_refusals(&askers);
    Ok(())
}

/// Sends each of `readers` the message `(header, body)` that says where `data` is (which they read in
/// place or from this process), then waits for every answer, sending the bytes in pieces to each reader
/// that asks for them. Returns those that asked.
pub(super) fn offer(
    x: &Exchange<'_>,
    plan: &Plan,
    readers: &[Rank],
    (header, body): (Header, &[u8]),
    data: &[u8],
) -> Result<Vec<Rank>> {
    for &reader in readers {
        x.send(reader, &[&header.encode(), body])?;
    }
    let askers = answers(x, readers.iter().copied())?;
    for &asker in &askers {
        send_bytes_to(x, plan, asker, data)?;
    }
    Ok(askers)
}

/// Tells `reader` where the chunk `data` it is to copy is.
pub(super) fn tell(x: &Exchange<'_>, reader: Rank, data: &[u8], offer: &Offer) -> Result<()> {
    x.send(reader, &[&Header::Offer { total: data.len() }.encode(), &descriptor(data, offer)])
}

/// Takes each reader's answer, in turn; returns those that asked for the bytes.
pub(super) fn answers(x: &Exchange<'_>, readers: impl IntoIterator<Item = Rank>) -> Result<Vec<Rank>> {
    let mut askers = Vec::new();
    for reader in readers {
        let answer = x.receive(Source::Rank(reader), Some(reader))?;
        match protocol::read(&answer)? {
            Message::Answer { answer: Answer::Copied, .. } => {}
            Message::Answer { answer: Answer::SendBytes, .. } => askers.push(reader),
            _ => return Err(protocol::bad_message(&answer, "not an answer to this rank's offer")),
        }
    }
    Ok(askers)
}

/// After this rank read the chunks of `read` in place (each with whether it asked for the bytes):
/// takes those bytes.
pub(super) fn finish_reads(x: &Exchange<'_>, read: &[(Rank, bool)], received: &mut [Vec<u8>]) -> Result<()> {
    for &(holder, asked) in read {
        if asked {
            receive_whole(x, holder, &mut received[holder.0])?;
        }
    }
    Ok(())
}

/// A non-root's side of a gather whose chunk is read in place: tells the root where `data` is, and
/// returns once the root answered (sending the bytes when it asks).
pub(super) fn offer_to_gatherer(x: &Exchange<'_>, plan: &Plan, root: Rank, data: &[u8]) -> Result<()> {
    let offer = x.open_offer()?;
    tell(x, root, data, &offer)?;
    let askers = answers(x, [root])?;
    plan.note_refusals(&askers);
    if !askers.is_empty() {
        x.send(root, &[data])?;
    }
    Ok(())
}

/// Takes the chunk this rank asked `holder` for, sent whole, into `slot` (which its offer sized).
pub(super) fn receive_whole(x: &Exchange<'_>, holder: Rank, slot: &mut Vec<u8>) -> Result<()> {
    let incoming = x.receive(Source::Rank(holder), Some(holder))?;
    if !matches!(&incoming.payloads[..], [bytes] if bytes.len() == slot.len()) {
        return Err(protocol::bad_message(&incoming, "not the chunk this rank asked for"));
    }
    land_payload(slot, incoming.payloads.into_iter().next());
    Ok(())
}

/// The root's side of a scatter whose chunks are read in place: every other rank copies its chunk from
/// `chunks`.
pub(super) fn scatter_by_reading(x: &Exchange<'_>, plan: &Plan, chunks: &[&[u8]]) -> Result<()> {
    let readers: Vec<Rank> = x.others().collect();
    let offer = x.open_offer()?;
    for &reader in &readers {
        tell(x, reader, chunks[reader.0], &offer)?;
    }
    let askers = answers(x, readers.iter().copied())?;
    plan.note_refusals(&askers);
    for asker in askers {
        send_bytes_to(x, plan, asker, chunks[asker.0])?;
    }
    Ok(())
}

/// Sends `data` to `to` in pieces of the chunk size (none for no data: the receiver expects none).
pub(super) fn send_bytes_to(x: &Exchange<'_>, plan: &Plan, to: Rank, data: &[u8]) -> Result<()> {
    let total = data.len();
    for (offset, piece) in pieces(data, plan.chunk_size()).filter(|(_, piece)| !piece.is_empty()) {
        x.send(to, &[&Header::Bytes { total, offset }.encode(), piece])?;
    }
    Ok(())
}

/// A rank's side of a broadcast, once the root's offer came (`first`, read as `offer`: the `total`
/// bytes and where they are): copies the root's buffer into `land`, answers the root (and takes the
/// bytes from it when the kernel refused the copy), and returns `total`.
pub(super) fn read_from_root(
    x: &Exchange<'_>,
    plan: &Plan,
    root: Rank,
    first: &Incoming,
    offer @ (total, _): (usize, &Descriptor),
    land: &mut dyn Land,
) -> Result<usize> {
    if first.source != root {
        return Err(protocol::bad_message(first, "an offer from a rank that is not the root"));
    }
    if read_offered(x, plan, first, offer, land)? {
        receive_bytes_from(x, root, total, land, None)?;
    }
    Ok(total)
}

/// Lands a chunk message from its holder in `slot`: a chunk sent whole moves in; an offer is read in
/// place and answered.
pub(super) fn land_or_read(
    x: &Exchange<'_>,
    plan: &Plan,
    incoming: Incoming,
    slot: &mut Vec<u8>,
) -> Result<Landed> {
    match protocol::read(&incoming)? {
        Message::Chunk => {
            land_payload(slot, incoming.payloads.into_iter().next());
            Ok(Landed::Moved)
        }
        Message::Offer { total, descriptor } => {
            Ok(Landed::Read { asked: read_offered(x, plan, &incoming, (total, &descriptor), slot)? })
        }
        _ => Err(protocol::bad_message(&incoming, "neither a chunk nor an offer")),
    }
}

/// Copies the `total` bytes the offer `first` names (read as `descriptor`) into `land` (in pieces of
/// the chunk size, each one system call) and answers its sender; true when the kernel refused the copy
/// and the sender was asked for the bytes.
fn read_offered(
    x: &Exchange<'_>,
    plan: &Plan,
    first: &Incoming,
    (total, descriptor): (usize, &Descriptor),
    land: &mut dyn Land,
) -> Result<bool> {
    let holder = first.source;
    if x.process_here(holder) != Some(descriptor.pid) {
        return Err(protocol::bad_message(first, "an offer naming another process than its sender's"));
    }
    let copied = match land.room(total) {
        // Too small: the holder need send nothing; the caller reports the size.
        None => true,
        Some([]) => true,
        Some(room) => {
            let copied = plan.single_copy() && copy_in_pieces(descriptor, room, plan.chunk_size());
            // The copy stands only if the holder's buffer stayed in place through it: its offer is
            // still open after it.
            if copied && !x.offer_still_open(holder, &descriptor.word, descriptor.offer) {
                let reason = "it left the collective before this rank's copy of its data was done".into();
                return Err(x.news_or(Error::PeerFailed { rank: x.job_rank(holder).0, op: x.op(), reason }));
            }
            copied
        }
    };
    if copied {
        land.progressed(total, total);
    }
    let answer = if copied { Answer::Copied } else { Answer::SendBytes };
    x.send(holder, &[&Header::Answer { total, answer }.encode(), &[]])?;
    Ok(!copied)
}

/// Receives `total` bytes in pieces from `holder` (for a rank the kernel refused the single copy, or
/// along the shared broadcast's leaders), landing each and passing it on to `next` when there is one.
pub(super) fn receive_bytes_from(
    x: &Exchange<'_>,
    holder: Rank,
    total: usize,
    land: &mut dyn Land,
    next: Option<Rank>,
) -> Result<()> {
    let mut received = 0;
    while received < total {
        let incoming = x.receive(Source::Rank(holder), Some(holder))?;
        let bytes = match protocol::read(&incoming)? {
            Message::Bytes { total: t, offset, data }
                if t == total && offset == received && !data.is_empty() =>
            {
                data
            }
            Message::Bytes { .. } => return Err(protocol::bad_message(&incoming, "a piece out of order")),
            _ => return Err(protocol::bad_message(&incoming, "not a piece of the holder's bytes")),
        };
        land.put(total, received, bytes);
        received += bytes.len();
        if let Some(next) = next {
            x.forward(next, incoming.payloads)?;
        }
    }
    Ok(())
}

/// Copies the holder's buffer into `room` in pieces of `chunk` bytes (each one system call); false
/// when the kernel refused a copy.
pub(super) fn copy_in_pieces(descriptor: &Descriptor, room: &mut [u8], chunk: usize) -> bool {
    let Ok(pid) = i32::try_from(descriptor.pid) else { return false };
    let mut done = 0u64;
    room.chunks_mut(chunk.max(1)).all(|piece| {
        let read = descriptor.address.checked_add(done).is_some_and(|at| read_process_exact(pid, at, piece));
        done += piece.len() as u64;
        read
    })
}
