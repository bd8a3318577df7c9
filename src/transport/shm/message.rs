//! One message read from one channel, resumably: the server reads whatever a channel has published,
//! keeps the message's state between looks ([`Partial`]), and goes on to other channels meanwhile, so
//! that a client that writes slowly (or stopped) holds only its own message, never the receiver.
//!
//! Nothing read here is trusted: records are copied out before they are decoded; the frame count and
//! every length are held to the server's limits before anything is allocated; a single-copy offer is
//! read with `process_vm_readv` only when the process the kernel names at the other end of the
//! channel's connection told the same offer (see `identity.rs`), and only from that process.

#![forbid(unsafe_code)]

use std::sync::atomic::Ordering;
use std::time::Instant;

use super::identity::{Gate, Offer, Trust};
use super::queue::{transfer, Channel};
use super::record::{padded, Record, RECORD_LEN};
use crate::error::{Error, Result};
use crate::shm::{read_process_into, Process};
use crate::transport::{Limits, Payload};

/// A channel's bytes as the server reads them: its own `head`, checked against the published tail.
pub(super) struct Cursor<'q> {
    pub(super) channel: Channel<'q>,
    pub(super) head: u64,
    pub(super) owner: Process,
    pub(super) endpoint: &'q str,
    pub(super) index: usize,
    /// What the server knows of the process that offers through the channel.
    pub(super) trust: &'q mut Trust,
    pub(super) gate: &'q mut Gate,
}

impl Cursor<'_> {
    /// An error naming the channel and what was wrong in it.
    pub(super) fn garbage(&self, what: String) -> Error {
        Error::transport(
            "receive on",
            self.endpoint,
            format!("channel {} (pid {}): garbage: {what}", self.index, self.owner.pid),
        )
    }

    /// Bytes published and not yet read, checked against the ring's size.
    pub(super) fn available(&self) -> Result<u64> {
        let tail = self.channel.tail();
        let available = tail.wrapping_sub(self.head);
        if available > self.channel.ring() as u64 {
            return Err(self.garbage(format!("tail {tail} with head {}", self.head)));
        }
        Ok(available)
    }

    /// Copies what is available (at most `out.len()` bytes) into `out` and hands the room back; never
    /// waits. Returns the count copied.
    fn fill(&mut self, out: &mut [u8]) -> Result<usize> {
        let piece = (self.available()? as usize).min(out.len());
        if piece > 0 {
            self.channel.read(self.head, &mut out[..piece]);
            self.head += piece as u64;
            self.channel.publish_head(self.head);
        }
        Ok(piece)
    }

    /// Answers single-copy offer `offer` (COPYING: taken, or REFUSED); false when the client had withdrawn
    /// it (or moved on to a later offer, which it does only after withdrawing), so that the bytes follow
    /// through the ring.
    fn answer(&self, offer: u32, answer: u32) -> Result<bool> {
        let word = self.channel.transfer();
        let (pending, answered) = (transfer::pack(offer, transfer::PENDING), transfer::pack(offer, answer));
        let result = word.compare_exchange(pending, answered, Ordering::AcqRel, Ordering::Acquire);
        self.channel.signal().notify();
        match result {
            Ok(_) => Ok(true),
            Err(other) if transfer::offer_of(other) != offer => Ok(false),
            Err(other) if transfer::state_of(other) == transfer::WITHDRAWN => Ok(false),
            Err(other) => Err(self.garbage(format!("transfer word {other} during offer {offer}"))),
        }
    }

    /// Ends taken offer `offer` with `outcome` (DONE, or REFUSED when the copy failed); fails when the
    /// client withdrew the offer meanwhile (its send timed out: what was copied may be stale).
    fn settle(&self, offer: u32, outcome: u32) -> Result<()> {
        let word = self.channel.transfer();
        let (copying, settled) = (transfer::pack(offer, transfer::COPYING), transfer::pack(offer, outcome));
        let result = word.compare_exchange(copying, settled, Ordering::AcqRel, Ordering::Acquire);
        self.channel.signal().notify();
        result.map(drop).map_err(|_| {
            let why = format!("the client (pid {}) withdrew offer {offer} mid-copy", self.owner.pid);
            Error::transport("receive on", self.endpoint, why)
        })
    }
}

/// What the reader of a message expects next.
enum Step {
    /// A record, `filled` of its bytes read; `refused` holds the buffer of a refused offer's frame,
    /// whose bytes follow through the ring.
    Record { bytes: [u8; RECORD_LEN], filled: usize, refused: Option<Vec<u8>> },
    /// A frame's bytes through the ring, `filled` of them read.
    Bytes { bytes: Vec<u8>, filled: usize },
    /// The padding after a frame's bytes.
    Padding { left: usize },
}

impl Step {
    fn record(refused: Option<Vec<u8>>) -> Self {
        Self::Record { bytes: [0; RECORD_LEN], filled: 0, refused }
    }
}

/// A message read in part from one channel.
pub(super) struct Partial {
    /// Frames announced by the `BEGIN` record (0 until it is read).
    count: u64,
    frames: Vec<Payload>,
    /// Bytes the message may still carry.
    budget: u64,
    step: Step,
    /// When bytes of the message last arrived.
    pub(super) progressed: Instant,
    /// When the client's liveness was last checked.
    pub(super) checked: Instant,
}

impl Partial {
    pub(super) fn new(limits: &Limits) -> Self {
        let now = Instant::now();
        Self {
            count: 0,
            frames: Vec::new(),
            budget: limits.max_message_size,
            step: Step::record(None),
            progressed: now,
            checked: now,
        }
    }

    /// Reads what `cursor` has: the message's frames once whole, `None` while bytes are missing.
    pub(super) fn advance(
        &mut self,
        cursor: &mut Cursor<'_>,
        limits: &Limits,
        single_copy: bool,
    ) -> Result<Option<Vec<Payload>>> {
        let start = cursor.head;
        let outcome = self.run(cursor, limits, single_copy);
        if cursor.head != start {
            self.progressed = Instant::now();
        }
        outcome
    }

    fn run(
        &mut self,
        cursor: &mut Cursor<'_>,
        limits: &Limits,
        single_copy: bool,
    ) -> Result<Option<Vec<Payload>>> {
        loop {
            match &mut self.step {
                Step::Record { bytes, filled, refused } => {
                    *filled += cursor.fill(&mut bytes[*filled..])?;
                    if *filled < RECORD_LEN {
                        return Ok(None);
                    }
                    let record =
                        Record::decode(bytes).map_err(|k| cursor.garbage(format!("record kind {k}")))?;
                    let refused = refused.take();
                    self.step = self.on_record(record, refused, cursor, limits, single_copy)?;
                }
                Step::Bytes { bytes, filled } => {
                    *filled += cursor.fill(&mut bytes[*filled..])?;
                    if *filled < bytes.len() {
                        return Ok(None);
                    }
                    let bytes = std::mem::take(bytes);
                    let len = bytes.len() as u64;
                    self.frames.push(Payload::from_vec(bytes));
                    self.step = Step::Padding { left: (padded(len) - len) as usize };
                }
                Step::Padding { left } => {
                    let mut padding = [0u8; 8];
                    *left -= cursor.fill(&mut padding[..*left])?;
                    if *left > 0 {
                        return Ok(None);
                    }
                    self.step = Step::record(None);
                }
            }
            let between_frames = matches!(self.step, Step::Record { filled: 0, refused: None, .. });
            if between_frames && self.count > 0 && self.frames.len() as u64 == self.count {
                return Ok(Some(std::mem::take(&mut self.frames)));
            }
        }
    }

    /// What follows `record`.
    fn on_record(
        &mut self,
        record: Record,
        refused: Option<Vec<u8>>,
        cursor: &mut Cursor<'_>,
        limits: &Limits,
        single_copy: bool,
    ) -> Result<Step> {
        match (record, refused) {
            (Record::Begin { frames }, None) if self.count == 0 && frames > 0 => {
                self.begin(u64::from(frames), limits)?;
                Ok(Step::record(None))
            }
            (record, _) if self.count == 0 => {
                Err(cursor.garbage(format!("{record:?} where a message begins")))
            }
            (Record::Inline { len }, Some(bytes)) if len == bytes.len() as u64 => {
                Ok(Step::Bytes { bytes, filled: 0 })
            }
            (record, Some(bytes)) => {
                Err(cursor.garbage(format!("{record:?} after a refused offer of {} bytes", bytes.len())))
            }
            (Record::Inline { len }, None) => {
                let bytes = allocate(take(&mut self.budget, len, limits.max_message_size)?)?;
                Ok(Step::Bytes { bytes, filled: 0 })
            }
            (Record::Remote { offer, len, address, pid }, None) => {
                let len = take(&mut self.budget, len, limits.max_message_size)?;
                let mut bytes = reserve(len)?;
                if pid != cursor.owner.pid {
                    let why = format!("an offer from pid {pid} in pid {}'s channel", cursor.owner.pid);
                    return Err(cursor.garbage(why));
                }
                // Read only what the process at the other end of the channel's connection told, from
                // that process: the record's pid is a word any process could have written.
                let told = Offer { offer, address, len: len as u64 };
                let (index, channel) = (cursor.index, &cursor.channel);
                let source = cursor.trust.vouch(cursor.gate, index, channel, told).filter(|_| single_copy);
                let answer = if source.is_some() { transfer::COPYING } else { transfer::REFUSED };
                let taken = cursor.answer(offer, answer)?;
                let copied = taken
                    && source.is_some_and(|source| {
                        i32::try_from(source.pid)
                            .is_ok_and(|pid| read_process_into(pid, address, len, &mut bytes))
                    });
                if taken && source.is_some() {
                    cursor.settle(offer, if copied { transfer::DONE } else { transfer::REFUSED })?;
                }
                if taken {
                    cursor.gate.count(copied);
                }
                if !copied {
                    // The bytes come through the ring instead, into a zeroed buffer of the frame's size.
                    bytes.clear();
                    bytes.resize(len, 0);
                    return Ok(Step::record(Some(bytes)));
                }
                self.frames.push(Payload::from_vec(bytes));
                Ok(Step::record(None))
            }
            (record, None) => Err(cursor.garbage(format!("{record:?} where a frame begins"))),
        }
    }

    /// Starts a message of `frames` frames, held to the server's limit on bulks.
    fn begin(&mut self, frames: u64, limits: &Limits) -> Result<()> {
        if frames - 1 > limits.max_bulks as u64 {
            return Err(Error::LimitExceeded {
                what: "bulk frame count",
                announced: frames - 1,
                limit: limits.max_bulks as u64,
                option: "Options::max_bulks",
            });
        }
        self.count = frames;
        self.frames = Vec::with_capacity(frames as usize);
        Ok(())
    }
}

/// Takes `len` bytes off what the message may still carry.
fn take(budget: &mut u64, len: u64, limit: u64) -> Result<usize> {
    if len > *budget {
        return Err(Error::LimitExceeded {
            what: "message size",
            announced: limit - *budget + len,
            limit,
            option: "Options::max_message_size",
        });
    }
    *budget -= len;
    usize::try_from(len).map_err(|_| Error::InvalidArgument(format!("a frame of {len} bytes")))
}

/// An empty buffer with room for `len` bytes, or an error when the memory cannot be had (never an abort).
fn reserve(len: usize) -> Result<Vec<u8>> {
    let mut bytes = Vec::<u8>::new();
    bytes
        .try_reserve_exact(len)
        .map_err(|e| Error::InvalidArgument(format!("cannot allocate {len} bytes: {e}")))?;
    Ok(bytes)
}

/// A zeroed buffer of `len` bytes, or an error when the memory cannot be had.
fn allocate(len: usize) -> Result<Vec<u8>> {
    let mut bytes = reserve(len)?;
    bytes.resize(len, 0);
    Ok(bytes)
}
