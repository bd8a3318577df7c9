//! The server's side of the queue: finds a channel with bytes, reads one message from it whole, and
//! hands its frames to `Received::accept`.
//!
//! Nothing read from the segment is trusted. The server keeps each channel's `head` itself and checks
//! the `tail` a client publishes against it (never more than a ring ahead); records are copied out before
//! they are decoded; the frame count and every length are held to the server's limits before anything is
//! allocated; a single-copy offer is read with `process_vm_readv` from the channel owner's process only.
//! A channel that breaks these rules is given up (marked broken, freed once its client leaves), and the
//! message in it is dropped with an error: never a crash or a hang.

#![forbid(unsafe_code)]

use std::io::IoSliceMut;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use nix::sys::uio::{process_vm_readv, RemoteIoVec};
use nix::unistd::Pid;

use super::queue::{state, transfer, Channel, Queue, CHANNELS, RING};
use super::record::{padded, Record, RECORD_LEN};
use crate::error::{Error, Result};
use crate::shm::Process;
use crate::transport::{Limits, Payload};

/// The server's own view of its queue.
pub(super) struct Receiver {
    /// Bytes consumed from each channel: the server's copy, never read back from the segment.
    heads: [u64; CHANNELS],
    /// Channels given up: skipped until their client leaves.
    broken: [bool; CHANNELS],
    /// The channel to look at first next time (round robin, so no client starves the others).
    next: usize,
    /// Accept single-copy offers (else every offer is refused and the bytes come through the ring).
    single_copy: bool,
    /// How long a message already begun may go without progress before it is dropped.
    stall: Duration,
    /// When channels were last swept.
    swept: Instant,
}

/// The least time between two sweeps for channels to free.
const SWEEP_PERIOD: Duration = Duration::from_millis(50);

impl Receiver {
    pub(super) fn new(single_copy: bool, stall: Duration) -> Self {
        Self {
            heads: [0; CHANNELS],
            broken: [false; CHANNELS],
            next: 0,
            single_copy,
            stall,
            swept: Instant::now(),
        }
    }

    /// Reads the next message whole, waiting for one to begin until `deadline` (`None`: nothing came).
    pub(super) fn receive(
        &mut self,
        queue: &Queue,
        limits: &Limits,
        deadline: Instant,
        endpoint: &str,
    ) -> Result<Option<Vec<Payload>>> {
        self.sweep(queue);
        let found = queue.doorbell().wait(Some(deadline), || Ok(self.ready(queue)), || Ok(()))?;
        let Some(index) = found else {
            self.sweep(queue);
            return Ok(None);
        };
        self.next = (index + 1) % CHANNELS;
        let mut reader = Reader {
            channel: queue.channel(index),
            queue,
            head: self.heads[index],
            owner: queue.channel(index).owner(),
            stall: self.stall,
            endpoint,
            index,
        };
        let message = self.read_message(&mut reader, limits);
        self.heads[index] = reader.head;
        if message.is_err() {
            self.broken[index] = true;
            reader.channel.break_open();
        }
        message.map(Some)
    }

    /// A channel with unread bytes, if any.
    fn ready(&self, queue: &Queue) -> Option<usize> {
        (0..CHANNELS).map(|k| (self.next + k) % CHANNELS).find(|&i| {
            let channel = queue.channel(i);
            !self.broken[i]
                && channel.owner().pid != 0
                && matches!(channel.state(), state::OPEN | state::RELEASED)
                && channel.tail() != self.heads[i]
        })
    }

    /// Frees channels whose client left (or died) once nothing complete is left to read in them (at most
    /// every [`SWEEP_PERIOD`]: it reads `/proc` for each client).
    fn sweep(&mut self, queue: &Queue) {
        if self.swept.elapsed() < SWEEP_PERIOD {
            return;
        }
        self.swept = Instant::now();
        for i in 0..CHANNELS {
            let channel = queue.channel(i);
            let owner = channel.owner();
            if owner.pid == 0 {
                continue;
            }
            // A broken channel stays taken until its client lets it go (or dies): it may still write.
            let drained = self.broken[i] || channel.tail() == self.heads[i];
            if drained && (channel.state() == state::RELEASED || owner.is_gone()) {
                channel.reset();
                self.heads[i] = 0;
                self.broken[i] = false;
            }
        }
    }

    fn read_message(&self, reader: &mut Reader<'_>, limits: &Limits) -> Result<Vec<Payload>> {
        let frames = match reader.record()? {
            Record::Begin { frames } if frames > 0 => frames as u64,
            other => return Err(reader.garbage(format!("{other:?} where a message begins"))),
        };
        if frames - 1 > limits.max_bulks as u64 {
            return Err(Error::LimitExceeded {
                what: "bulk frame count",
                announced: frames - 1,
                limit: limits.max_bulks as u64,
                option: "Options::max_bulks",
            });
        }
        let mut budget = limits.max_message_size;
        let mut out = Vec::with_capacity(frames as usize);
        for _ in 0..frames {
            let bytes = self.read_frame(reader, &mut budget, limits.max_message_size)?;
            out.push(Payload::from_vec(bytes));
        }
        Ok(out)
    }

    fn read_frame(&self, reader: &mut Reader<'_>, budget: &mut u64, limit: u64) -> Result<Vec<u8>> {
        match reader.record()? {
            Record::Inline { len } => {
                let mut bytes = allocate(take(budget, len, limit)?)?;
                reader.read_inline(&mut bytes)?;
                Ok(bytes)
            }
            Record::Remote { offer, len, address, pid } => {
                let mut bytes = allocate(take(budget, len, limit)?)?;
                if pid != reader.owner.pid {
                    return Err(reader
                        .garbage(format!("an offer from pid {pid} in pid {}'s channel", reader.owner.pid)));
                }
                let taken = reader
                    .answer(offer, if self.single_copy { transfer::COPYING } else { transfer::REFUSED })?;
                if taken && self.single_copy {
                    let copied = copy_from_process(pid, address, &mut bytes);
                    reader.settle(offer, if copied { transfer::DONE } else { transfer::REFUSED });
                    if copied {
                        return Ok(bytes);
                    }
                }
                match reader.record()? {
                    Record::Inline { len: sent } if sent == len => reader.read_inline(&mut bytes)?,
                    other => {
                        return Err(reader.garbage(format!("{other:?} after a refused offer of {len} bytes")))
                    }
                }
                Ok(bytes)
            }
            other => Err(reader.garbage(format!("{other:?} where a frame begins"))),
        }
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

/// A zeroed buffer of `len` bytes, or an error when the memory cannot be had (never an abort).
fn allocate(len: usize) -> Result<Vec<u8>> {
    let mut probe = Vec::<u8>::new();
    probe
        .try_reserve_exact(len)
        .map_err(|e| Error::InvalidArgument(format!("cannot allocate {len} bytes: {e}")))?;
    drop(probe);
    // Zeroed pages come from the kernel for large buffers: no pass over the memory before the copy.
    Ok(vec![0; len])
}

/// Copies `out.len()` bytes at `address` in process `pid` into `out` (single copy); false when the
/// kernel refuses (ptrace rules, a container, a bad address) or the process is gone.
fn copy_from_process(pid: u32, address: u64, out: &mut [u8]) -> bool {
    let Ok(pid) = i32::try_from(pid) else { return false };
    let mut done = 0;
    while done < out.len() {
        let Some(base) = usize::try_from(address).ok().and_then(|a| a.checked_add(done)) else {
            return false;
        };
        let remote = [RemoteIoVec { base, len: out.len() - done }];
        match process_vm_readv(Pid::from_raw(pid), &mut [IoSliceMut::new(&mut out[done..])], &remote) {
            Ok(0) | Err(_) => return false,
            Ok(n) => done += n,
        }
    }
    true
}

/// Reads one message's bytes from one channel, waiting for the client as it writes.
struct Reader<'q> {
    queue: &'q Queue,
    channel: Channel<'q>,
    head: u64,
    owner: Process,
    stall: Duration,
    endpoint: &'q str,
    index: usize,
}

impl Reader<'_> {
    fn garbage(&self, what: String) -> Error {
        Error::transport(
            "receive on",
            self.endpoint,
            format!("channel {} (pid {}): garbage: {what}", self.index, self.owner.pid),
        )
    }

    /// Bytes published and not yet read, checked against the ring's size.
    fn available(&self) -> Result<u64> {
        let tail = self.channel.tail();
        let available = tail.wrapping_sub(self.head);
        if available > RING as u64 {
            return Err(self.garbage(format!("tail {tail} with head {}", self.head)));
        }
        Ok(available)
    }

    /// Waits until some bytes are available; fails when the client died, left mid-message, or made no
    /// progress for the stall limit.
    fn wait_available(&self) -> Result<u64> {
        let lost = |why: String| Error::transport("receive on", self.endpoint, why);
        let waited = self.queue.doorbell().wait(
            Some(Instant::now() + self.stall),
            || {
                let state = self.channel.state();
                match self.available()? {
                    0 if state != state::OPEN => {
                        Err(lost(format!("the client (pid {}) left mid-message", self.owner.pid)))
                    }
                    0 => Ok(None),
                    n => Ok(Some(n)),
                }
            },
            || match self.owner.is_gone() || self.channel.owner() != self.owner {
                true => {
                    Err(lost(format!("the client process {} is lost (it ended mid-message)", self.owner.pid)))
                }
                false => Ok(()),
            },
        )?;
        waited.ok_or_else(|| Error::Timeout {
            op: "receive (the client stalled mid-message)",
            after: self.stall,
            peer: Some(format!("pid {}", self.owner.pid)),
        })
    }

    /// Fills `out` from the ring, piece by piece as the client writes, handing each piece's room back.
    fn read_exact(&mut self, out: &mut [u8]) -> Result<()> {
        let mut done = 0;
        while done < out.len() {
            let available = match self.available()? {
                0 => self.wait_available()?,
                n => n,
            };
            let piece = (available as usize).min(out.len() - done);
            self.channel.read(self.head, &mut out[done..done + piece]);
            self.head += piece as u64;
            done += piece;
            self.channel.publish_head(self.head);
        }
        Ok(())
    }

    fn record(&mut self) -> Result<Record> {
        let mut bytes = [0u8; RECORD_LEN];
        self.read_exact(&mut bytes)?;
        Record::decode(&bytes).map_err(|kind| self.garbage(format!("record kind {kind}")))
    }

    /// Reads an inline frame's bytes and the padding after them.
    fn read_inline(&mut self, bytes: &mut [u8]) -> Result<()> {
        self.read_exact(bytes)?;
        let len = bytes.len() as u64;
        let mut padding = [0u8; 8];
        self.read_exact(&mut padding[..(padded(len) - len) as usize])
    }

    /// Ends taken offer `offer`: DONE, or REFUSED when the copy failed (the bytes follow through the ring).
    fn settle(&self, offer: u32, outcome: u32) {
        self.channel.transfer().store(transfer::pack(offer, outcome), Ordering::Release);
        self.channel.signal().notify();
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
}
