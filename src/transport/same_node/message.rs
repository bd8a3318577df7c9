//! One message read from one channel, resumably: the server reads whatever a channel has published,
//! keeps the message's state between looks ([`Partial`]), and goes on to other channels meanwhile, so
//! that a client that writes slowly (or stopped) holds only its own message, never the receiver.
//!
//! Nothing read here is trusted: records are copied out before they are decoded; the frame count and
//! every length are held to the server's limits, in arithmetic that cannot overflow (an error reports
//! the size a peer announced, saturated at `u64::MAX`), before anything is allocated; a single-copy
//! offer is read with `process_vm_readv` only when the process the kernel names at the other end of the
//! channel's connection told the same offer (see `identity.rs`), and only from that process.
//!
//! The memory a frame that comes through the ring takes grows with the bytes that arrived ([`Frame`]),
//! not with the size its record announced: a record costs its writer 32 bytes, and a frame the server
//! held whole at once would make every channel worth [`Limits::max_message_size`] of the server's
//! memory for those 32 bytes.

#![forbid(unsafe_code)]

use std::sync::atomic::Ordering;
use std::time::Instant;

use super::identity::{Gate, Offer, Trust};
use super::queue::{transfer, Channel};
use super::record::{padding, Record, RECORD_LEN, SHORT_MAX};
use crate::error::{Error, Result};
use crate::shm::Process;
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
            // `available` keeps `tail - head` within a ring, so the head passes 2^64 only after that many
            // bytes were read: garbage for any channel.
            let head =
                self.head.checked_add(piece as u64).ok_or_else(|| self.garbage("head past 2^64".into()))?;
            self.channel.read(self.head, &mut out[..piece]);
            self.head = head;
            self.channel.publish_head(self.head);
        }
        Ok(piece)
    }

    /// The short message at the head of the channel, when a `SHORT` record is there (`None` for any
    /// other record, or none yet): its bytes, copied out, and the room handed back. A short message is
    /// published whole, so one published in part, or longer than [`SHORT_MAX`], is garbage.
    pub(super) fn take_short(&mut self, limits: &Limits) -> Result<Option<Vec<u8>>> {
        let available = self.available()?;
        if available < RECORD_LEN as u64 {
            return Ok(None);
        }
        let mut record = [0; RECORD_LEN];
        self.channel.read(self.head, &mut record);
        let Ok(Record::Short { len }) = Record::decode(&record) else { return Ok(None) };
        if len as usize > SHORT_MAX || record[8..].iter().any(|&b| b != 0) {
            let what =
                format!("a short message of {len} bytes (at most {SHORT_MAX}, the rest of its record 0)");
            return Err(self.garbage(what));
        }
        take(&mut limits.max_message_size.clone(), u64::from(len), limits.max_message_size)?;
        let whole = RECORD_LEN as u64 + u64::from(len) + padding(u64::from(len));
        if available < whole {
            return Err(self.garbage(format!("a short message of {len} bytes published in part")));
        }
        let head = self.head.checked_add(whole).ok_or_else(|| self.garbage("head past 2^64".into()))?;
        let mut bytes = vec![0; len as usize];
        self.channel.read(self.head.wrapping_add(RECORD_LEN as u64), &mut bytes);
        self.head = head;
        self.channel.publish_head(head);
        Ok(Some(bytes))
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
    /// A record, `filled` of its bytes read; `refused` holds the frame of a refused offer, whose bytes
    /// follow through the ring.
    Record { bytes: [u8; RECORD_LEN], filled: usize, refused: Option<Frame> },
    /// A frame's bytes through the ring.
    Bytes(Frame),
    /// The padding after a frame's bytes.
    Padding { left: usize },
}

impl Step {
    fn record(refused: Option<Frame>) -> Self {
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
                Step::Bytes(frame) => {
                    if !frame.fill(cursor)? {
                        return Ok(None);
                    }
                    let bytes = std::mem::take(&mut frame.bytes);
                    let left = padding(bytes.len() as u64) as usize;
                    self.frames.push(Payload::from_vec(bytes));
                    self.step = Step::Padding { left };
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
        refused: Option<Frame>,
        cursor: &mut Cursor<'_>,
        limits: &Limits,
        single_copy: bool,
    ) -> Result<Step> {
        match (record, refused) {
            (Record::Begin { frames }, None) if self.count == 0 => {
                self.begin(u64::from(frames), limits, cursor)?;
                Ok(Step::record(None))
            }
            (record, _) if self.count == 0 => {
                Err(cursor.garbage(format!("{record:?} where a message begins")))
            }
            (Record::Inline { len }, Some(frame)) if len == frame.len as u64 => Ok(Step::Bytes(frame)),
            (record, Some(frame)) => {
                Err(cursor.garbage(format!("{record:?} after a refused offer of {} bytes", frame.len)))
            }
            (Record::Inline { len }, None) => {
                Ok(Step::Bytes(Frame::new(take(&mut self.budget, len, limits.max_message_size)?)?))
            }
            (Record::Remote { offer, len, address, pid }, None) => {
                let len = take(&mut self.budget, len, limits.max_message_size)?;
                if pid != cursor.owner.pid {
                    let why = format!("an offer from pid {pid} in pid {}'s channel", cursor.owner.pid);
                    return Err(cursor.garbage(why));
                }
                // Read only what the process at the other end of the channel's connection told, from
                // that process: the record's pid is a word any process could have written.
                let told = Offer { offer, address, len: len as u64 };
                let (index, channel) = (cursor.index, &cursor.channel);
                let vouched = cursor.trust.vouch(cursor.gate, index, channel, told) && single_copy;
                // Memory is taken only for an offer that will be read. When it cannot be had, the offer
                // is refused: its bytes come through the ring, where the frame grows as they arrive.
                let mut bytes = if vouched { reserve(len) } else { None };
                let answer = if bytes.is_some() { transfer::COPYING } else { transfer::REFUSED };
                let taken = cursor.answer(offer, answer)?;
                let copied =
                    taken && bytes.as_mut().is_some_and(|bytes| cursor.trust.read(address, len, bytes));
                if taken && bytes.is_some() {
                    cursor.settle(offer, if copied { transfer::DONE } else { transfer::REFUSED })?;
                }
                if taken {
                    cursor.gate.count(copied);
                }
                match bytes.filter(|_| copied) {
                    Some(bytes) => {
                        self.frames.push(Payload::from_vec(bytes));
                        Ok(Step::record(None))
                    }
                    None => Ok(Step::record(Some(Frame::new(len)?))), // the bytes come through the ring
                }
            }
            (record, None) => Err(cursor.garbage(format!("{record:?} where a frame begins"))),
        }
    }

    /// Starts a message of `frames` frames (the header frame and its bulks), held to the server's limit
    /// on bulks; the list of frames grows as they arrive.
    fn begin(&mut self, frames: u64, limits: &Limits, cursor: &Cursor<'_>) -> Result<()> {
        let Some(bulks) = frames.checked_sub(1) else {
            return Err(cursor.garbage("a message of 0 frames".into()));
        };
        if bulks > limits.max_bulks as u64 {
            return Err(Error::LimitExceeded {
                what: "bulk frame count",
                announced: bulks,
                limit: limits.max_bulks as u64,
                option: "Options::max_bulks",
            });
        }
        self.count = frames;
        self.frames = Vec::with_capacity(frames.min(FRAMES_AHEAD) as usize);
        Ok(())
    }
}

/// The frames a message's list makes room for when it begins; it grows as more arrive.
const FRAMES_AHEAD: u64 = 64;

/// Takes `len` bytes off what the message may still carry (`budget`, of `limit`); the error reports
/// the message's size with this frame, saturated at `u64::MAX`.
fn take(budget: &mut u64, len: u64, limit: u64) -> Result<usize> {
    let Some(left) = budget.checked_sub(len) else {
        return Err(Error::LimitExceeded {
            what: "message size",
            announced: limit.saturating_sub(*budget).saturating_add(len),
            limit,
            option: "Options::max_message_size",
        });
    };
    let len = usize::try_from(len).map_err(|_| Error::InvalidArgument(format!("a frame of {len} bytes")))?;
    *budget = left;
    Ok(len)
}

/// A frame coming through the ring: `len` bytes announced, `bytes` those that arrived. The buffer
/// grows with them, doubling (capped at `len`), so that it holds at most twice what arrived whatever
/// was announced, and each byte is copied once from the ring into it.
struct Frame {
    bytes: Vec<u8>,
    len: usize,
}

impl Frame {
    /// A frame of `len` bytes, none arrived (and no memory taken); an error for a length no buffer
    /// can have.
    fn new(len: usize) -> Result<Self> {
        if isize::try_from(len).is_err() {
            return Err(Error::InvalidArgument(format!("cannot allocate a frame of {len} bytes")));
        }
        Ok(Self { bytes: Vec::new(), len })
    }

    /// Copies what `cursor` has of the frame; true once the frame is whole.
    fn fill(&mut self, cursor: &mut Cursor<'_>) -> Result<bool> {
        let filled = self.bytes.len();
        let piece = (cursor.available()? as usize).min(self.len - filled); // within a ring
        if piece > 0 {
            self.grow(piece)?;
            self.bytes.resize(filled + piece, 0);
            let copied = cursor.fill(&mut self.bytes[filled..])?;
            self.bytes.truncate(filled + copied); // fewer when a peer moved its tail back meanwhile
        }
        Ok(self.bytes.len() == self.len)
    }

    /// Makes room for `piece` more bytes: at least double the room held (capped at the frame's
    /// length), or an error when the memory cannot be had (never an abort).
    fn grow(&mut self, piece: usize) -> Result<()> {
        let (filled, room) = (self.bytes.len(), self.bytes.capacity());
        let needed = filled + piece; // at most `len`
        if needed <= room {
            return Ok(());
        }
        let target = needed.max(room.saturating_mul(2)).min(self.len);
        self.bytes.try_reserve_exact(target - filled).map_err(|e| {
            Error::InvalidArgument(format!("cannot allocate {target} bytes for a frame of {}: {e}", self.len))
        })
    }
}

/// An empty buffer with room for `len` bytes, or `None` when the memory cannot be had (never an abort).
fn reserve(len: usize) -> Option<Vec<u8>> {
    let mut bytes = Vec::<u8>::new();
    bytes.try_reserve_exact(len).ok()?;
    Some(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_size_past_the_budget_is_an_error_reporting_it_saturated() {
        let limit = 1 << 20;
        let mut budget = limit;
        assert_eq!(take(&mut budget, 38, limit).unwrap(), 38);
        for (len, announced) in [(u64::MAX, u64::MAX), (u64::MAX - 7, u64::MAX), (limit, limit + 38)] {
            match take(&mut budget, len, limit) {
                Err(Error::LimitExceeded { announced: got, limit: l, .. }) => {
                    assert_eq!((got, l), (announced, limit), "{len}")
                }
                other => panic!("{len}: {other:?}"),
            }
            assert_eq!(budget, limit - 38, "a refused frame takes nothing");
        }
        let mut unlimited = u64::MAX;
        assert_eq!(take(&mut unlimited, u64::MAX - 7, u64::MAX).unwrap() as u64, u64::MAX - 7);
        assert!(Frame::new(usize::MAX - 7).is_err());
        assert!(Frame::new(isize::MAX as usize).is_ok_and(|frame| frame.bytes.capacity() == 0));
    }

    #[test]
    fn a_frame_grows_with_what_arrived_doubling_up_to_its_length() {
        let mut frame = Frame::new(1 << 30).unwrap();
        frame.grow(4096).unwrap();
        assert!(frame.bytes.capacity() < 8192, "{}", frame.bytes.capacity());
        frame.bytes.resize(4096, 0);
        frame.grow(1).unwrap();
        assert!((8192..16384).contains(&frame.bytes.capacity()), "{}", frame.bytes.capacity());
        let mut small = Frame::new(5000).unwrap();
        small.grow(4096).unwrap();
        small.bytes.resize(4096, 0);
        small.grow(904).unwrap();
        assert!(small.bytes.capacity() < 8192, "capped at the frame: {}", small.bytes.capacity());
    }
}
