//! The queue in the server's segment: a control block, then as many channels as the server was made
//! with, each a byte ring written by one client (single producer) and read by the server (single
//! consumer).
//!
//! ```text
//! control (128 B): magic u64 | server pid u32 | closed u32 | server start u64 | (pad) | channels u32 |
//!                  (pad) | ring bytes u64 | server pid namespace u64 | listener token u64 |
//!                  doorbell u32 (at 64) | sleepers u32
//! channel (128 B + ring): owner pid u32 | state u32 | owner start u64 | claim u64 | tail u64 | ... |
//!                         head u64 (at 64) | signal u32 | sleepers u32 | transfer u32 | ... | ring
//! ```
//!
//! What the client writes (its tail) and what the server writes (its head, the signal it rings) lie on
//! different cache lines, and the doorbell every client rings on a line of its own, so a client
//! publishing and the server consuming do not take each other's cache lines for every word.
//!
//! A client reads the channel count and ring size once, when it opens the queue, checks them and keeps
//! its own copy: a process that rewrites them later changes nothing for it.
//!
//! Every word here can be written by any process on the node that can open the segment, so nothing read
//! from it is trusted: the consumer keeps its own `head`, checks every `tail` against it, and copies
//! records and bytes out before looking at them (see `receiver.rs`).

#![forbid(unsafe_code)]

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use super::wait::Signal;
use crate::error::{Error, Result};
use crate::shm::{FullPtr, Process, Segment, ShmPtr};

/// The most channels a queue holds (a client per channel: one per process of the node sending to it).
const MAX_CHANNELS: usize = 4096;
/// The smallest and largest ring a channel may have, in bytes (a power of two).
const RING_SIZES: std::ops::RangeInclusive<usize> = (4 << 10)..=(64 << 20);

const MAGIC: u64 = u64::from_le_bytes(*b"LBMSHMQ3");
const CONTROL: usize = 128;
const CHANNEL_HEADER: usize = 128;
/// Where the queue lies in its segment: the first allocation of a fresh segment (after the segment's
/// header and the block's).
pub(super) const QUEUE_AT: u64 = 192;
/// Room the segment's allocator needs besides the queue (its header and the block's).
pub(super) const SEGMENT_SLACK: usize = 4096;

// The control block.
const MAGIC_AT: usize = 0;
const SERVER_PID_AT: usize = 8;
const CLOSED_AT: usize = 12;
const SERVER_START_AT: usize = 16;
const DOORBELL_AT: usize = 64;
const DOORBELL_SLEEPERS_AT: usize = 68;
const CHANNELS_AT: usize = 32;
const RING_AT: usize = 40;
const SERVER_PID_NAMESPACE_AT: usize = 48;
const LISTENER_AT: usize = 56;

// A channel's header, from its start: the client's words, then (a cache line on) the server's.
const OWNER_PID_AT: usize = 0;
const STATE_AT: usize = 4;
const OWNER_START_AT: usize = 8;
const CLAIM_AT: usize = 16;
const TAIL_AT: usize = 24;
const HEAD_AT: usize = 64;
const SIGNAL_AT: usize = 72;
const SIGNAL_SLEEPERS_AT: usize = 76;
const TRANSFER_AT: usize = 80;

/// What a channel is doing (its `state` word); a channel whose owner pid is 0 is free.
pub(super) mod state {
    /// A client sends through it.
    pub(in super::super) const OPEN: u32 = 1;
    /// Its client left: the server reads what is complete, then frees it.
    pub(in super::super) const RELEASED: u32 = 2;
    /// The server found garbage in it or gave up on it: its client must take another channel.
    pub(in super::super) const BROKEN: u32 = 3;
}

/// How long a client waits for the server to answer a single-copy offer of a frame that fits the ring's
/// free room before it takes the offer back and sends the bytes through the ring: a server busy
/// elsewhere (or a thread that sends before it receives) costs this delay, not a deadlock. A larger
/// frame waits for the answer until the send's deadline.
pub(super) const OFFER_PATIENCE: std::time::Duration = std::time::Duration::from_millis(1);

/// The state of a single-copy offer (the `transfer` word): the offer's number (29 bits, wrapping) and
/// its state (3 bits), so that an answer meant for an earlier, withdrawn offer is never taken for the
/// current one.
pub(super) mod transfer {
    /// The word for offer `offer` in state `state`.
    pub(in super::super) fn pack(offer: u32, state: u32) -> u32 {
        offer << 3 | state
    }

    /// The offer number in a word.
    pub(in super::super) fn offer_of(word: u32) -> u32 {
        word >> 3
    }

    /// The state in a word.
    pub(in super::super) fn state_of(word: u32) -> u32 {
        word & 7
    }

    /// The client waits for the server to copy.
    pub(in super::super) const PENDING: u32 = 1;
    /// The server copied the bytes.
    pub(in super::super) const DONE: u32 = 2;
    /// The server cannot copy from the client's memory: the client sends the bytes through the ring.
    pub(in super::super) const REFUSED: u32 = 3;
    /// The client took the offer back (the server did not answer within [`super::OFFER_PATIENCE`]): the
    /// bytes follow through the ring, and the server drops whatever it copied.
    pub(in super::super) const WITHDRAWN: u32 = 4;
    /// The server took the offer and copies: the client waits for DONE or REFUSED up to its send
    /// deadline (the server's liveness is checked meanwhile); past it, the client swaps COPYING for
    /// WITHDRAWN and gives the channel up, and the server, finding WITHDRAWN where it settles, drops
    /// what it copied (the client's memory may have changed meanwhile).
    pub(in super::super) const COPYING: u32 = 5;
}

/// The queue of one server, as mapped by the server or a client.
#[derive(Clone)]
pub(super) struct Queue {
    region: FullPtr,
    /// The channel count and ring size, as this process formatted or first read them.
    channels: usize,
    ring: usize,
}

impl Queue {
    /// The bytes a queue of `channels` channels of `ring` bytes takes, or why that shape is refused.
    pub(super) fn len(channels: usize, ring: usize) -> std::result::Result<usize, String> {
        if !(1..=MAX_CHANNELS).contains(&channels) {
            return Err(format!("{channels} channels (1 to {MAX_CHANNELS})"));
        }
        if !RING_SIZES.contains(&ring) || !ring.is_power_of_two() {
            return Err(format!("a ring of {ring} bytes (a power of two from 4 KiB to 64 MiB)"));
        }
        Ok(CONTROL + channels * (CHANNEL_HEADER + ring))
    }

    /// Formats a queue of `channels` channels of `ring` bytes in a new segment (its first allocation),
    /// naming the server's listener for single-copy offers by its token (0: none, see `identity.rs`).
    pub(super) fn create(segment: &Segment, channels: usize, ring: usize, listener: u64) -> Result<Self> {
        let len = Self::len(channels, ring).map_err(Error::InvalidArgument)?;
        let queue = Self { region: segment.allocate(len)?, channels, ring };
        if queue.region.shm_ptr().offset != QUEUE_AT {
            return Err(Error::transport("format", segment.name(), "the queue is not the first allocation"));
        }
        let me = Process::current();
        queue.u32(SERVER_PID_AT).store(me.pid, Ordering::Relaxed);
        queue.u64(SERVER_START_AT).store(me.start, Ordering::Relaxed);
        queue.u32(CHANNELS_AT).store(channels as u32, Ordering::Relaxed);
        queue.u64(RING_AT).store(ring as u64, Ordering::Relaxed);
        queue.u64(SERVER_PID_NAMESPACE_AT).store(crate::shm::pid_namespace(), Ordering::Relaxed);
        queue.u64(LISTENER_AT).store(listener, Ordering::Relaxed);
        queue.u64(MAGIC_AT).store(MAGIC, Ordering::Release);
        Ok(queue)
    }

    /// The queue a server formatted in `segment` (mapped by a client): its shape is read once and
    /// checked, from the control block, before the rest is mapped.
    pub(super) fn open(segment: &Segment) -> Result<Self> {
        let pointer = ShmPtr { segment: segment.name().to_owned(), offset: QUEUE_AT };
        let control = Self { region: segment.resolve(&pointer, CONTROL)?, channels: 0, ring: 0 };
        if control.u64(MAGIC_AT).load(Ordering::Acquire) != MAGIC {
            return Err(Error::transport("open", segment.name(), "no Lightbeam queue in this segment"));
        }
        let channels = control.u32(CHANNELS_AT).load(Ordering::Relaxed) as usize;
        let ring = usize::try_from(control.u64(RING_AT).load(Ordering::Relaxed)).unwrap_or(usize::MAX);
        let len = Self::len(channels, ring)
            .map_err(|why| Error::transport("open", segment.name(), format!("the queue claims {why}")))?;
        Ok(Self { region: segment.resolve(&pointer, len)?, channels, ring })
    }

    /// The bytes of each channel's ring.
    pub(super) fn ring(&self) -> usize {
        self.ring
    }

    fn u32(&self, at: usize) -> &AtomicU32 {
        self.region.atomic_u32(at).expect("queue offsets are constants inside the queue")
    }

    fn u64(&self, at: usize) -> &AtomicU64 {
        self.region.atomic_u64(at).expect("queue offsets are constants inside the queue")
    }

    /// The server's process, as it wrote itself in.
    pub(super) fn server(&self) -> Process {
        Process {
            pid: self.u32(SERVER_PID_AT).load(Ordering::Relaxed),
            start: self.u64(SERVER_START_AT).load(Ordering::Relaxed),
        }
    }

    /// The inode of the server's pid namespace, as it wrote it in.
    pub(super) fn server_pid_namespace(&self) -> u64 {
        self.u64(SERVER_PID_NAMESPACE_AT).load(Ordering::Relaxed)
    }

    /// The token of the server's listener for single-copy offers, as it wrote it in (0: none).
    pub(super) fn listener(&self) -> u64 {
        self.u64(LISTENER_AT).load(Ordering::Relaxed)
    }

    /// True once the server was dropped.
    pub(super) fn closed(&self) -> bool {
        self.u32(CLOSED_AT).load(Ordering::Acquire) != 0
    }

    /// Marks the server gone and wakes every client waiting on it.
    pub(super) fn close(&self) {
        self.u32(CLOSED_AT).store(1, Ordering::Release);
        (0..self.channels).for_each(|i| self.channel(i).signal().notify());
    }

    /// Rung by clients when they published bytes; the server sleeps on it.
    pub(super) fn doorbell(&self) -> Signal<'_> {
        Signal { word: self.u32(DOORBELL_AT), sleepers: self.u32(DOORBELL_SLEEPERS_AT) }
    }

    /// Channel `index`, below [`Queue::channels`].
    pub(super) fn channel(&self, index: usize) -> Channel<'_> {
        assert!(index < self.channels, "channel {index} out of range");
        Channel { queue: self, base: CONTROL + index * (CHANNEL_HEADER + self.ring) }
    }

    /// Takes a free channel for `me` under the random word `claim` (see [`Channel::claim_word`]); `None`
    /// when every channel is taken.
    pub(super) fn claim(&self, me: Process, claim: u64) -> Option<usize> {
        (0..self.channels).find(|&i| self.channel(i).claim(me, claim))
    }
}

/// One channel of a [`Queue`].
pub(super) struct Channel<'q> {
    queue: &'q Queue,
    base: usize,
}

impl Channel<'_> {
    fn u32(&self, at: usize) -> &AtomicU32 {
        self.queue.u32(self.base + at)
    }

    fn u64(&self, at: usize) -> &AtomicU64 {
        self.queue.u64(self.base + at)
    }

    fn claim(&self, me: Process, claim: u64) -> bool {
        let owner = self.u32(OWNER_PID_AT);
        if owner.compare_exchange(0, me.pid, Ordering::AcqRel, Ordering::Relaxed).is_err() {
            return false;
        }
        self.u64(OWNER_START_AT).store(me.start, Ordering::Relaxed);
        self.u64(CLAIM_AT).store(claim, Ordering::Relaxed);
        self.u32(STATE_AT).store(state::OPEN, Ordering::Release);
        true
    }

    /// The process that claimed the channel; pid 0 when the channel is free.
    pub(super) fn owner(&self) -> Process {
        Process {
            pid: self.u32(OWNER_PID_AT).load(Ordering::Acquire),
            start: self.u64(OWNER_START_AT).load(Ordering::Relaxed),
        }
    }

    /// The random word of the claim that holds the channel: a client touches its channel only while this
    /// word is still its own, so that two clients of one process never take each other's channel.
    pub(super) fn claim_word(&self) -> u64 {
        self.u64(CLAIM_AT).load(Ordering::Acquire)
    }

    /// Lets the channel go (the server frees it once drained) if claim `claim` still holds it.
    pub(super) fn release(&self, claim: u64) {
        if self.claim_word() == claim {
            self.set_state(state::RELEASED);
        }
    }

    pub(super) fn state(&self) -> u32 {
        self.u32(STATE_AT).load(Ordering::Acquire)
    }

    pub(super) fn set_state(&self, value: u32) {
        self.u32(STATE_AT).store(value, Ordering::Release);
        self.signal().notify();
    }

    /// Marks the channel broken unless its client already let it go; wakes the client.
    pub(super) fn break_open(&self) {
        let word = self.u32(STATE_AT);
        let _ = word.compare_exchange(state::OPEN, state::BROKEN, Ordering::AcqRel, Ordering::Relaxed);
        self.signal().notify();
    }

    /// Bytes the client has published (written, counted since the channel was claimed).
    pub(super) fn tail(&self) -> u64 {
        self.u64(TAIL_AT).load(Ordering::Acquire)
    }

    pub(super) fn publish_tail(&self, tail: u64) {
        self.u64(TAIL_AT).store(tail, Ordering::Release);
        self.queue.doorbell().notify();
    }

    /// Bytes the server has consumed.
    pub(super) fn head(&self) -> u64 {
        self.u64(HEAD_AT).load(Ordering::Acquire)
    }

    pub(super) fn publish_head(&self, head: u64) {
        self.u64(HEAD_AT).store(head, Ordering::Release);
        self.signal().notify();
    }

    /// Rung by the server when it consumed bytes or answered an offer; the client sleeps on it.
    pub(super) fn signal(&self) -> Signal<'_> {
        Signal { word: self.u32(SIGNAL_AT), sleepers: self.u32(SIGNAL_SLEEPERS_AT) }
    }

    /// The single-copy offer's state word (see [`transfer`]).
    pub(super) fn transfer(&self) -> &AtomicU32 {
        self.u32(TRANSFER_AT)
    }

    /// The bytes of the channel's ring.
    pub(super) fn ring(&self) -> usize {
        self.queue.ring
    }

    /// Copies `data` into the ring at stream position `at` (wrapping around its end).
    pub(super) fn write(&self, at: u64, data: &[u8]) {
        let ring = self.queue.ring;
        let mut done = 0;
        while done < data.len() {
            let offset = ((at + done as u64) % ring as u64) as usize;
            let piece = (ring - offset).min(data.len() - done);
            let target = self.base + CHANNEL_HEADER + offset;
            self.queue.region.write(target, &data[done..done + piece]).expect("inside the ring");
            done += piece;
        }
    }

    /// Copies bytes from the ring at stream position `at` into `out`.
    pub(super) fn read(&self, at: u64, out: &mut [u8]) {
        let ring = self.queue.ring;
        let mut done = 0;
        while done < out.len() {
            let offset = ((at + done as u64) % ring as u64) as usize;
            let piece = (ring - offset).min(out.len() - done);
            let source = self.base + CHANNEL_HEADER + offset;
            self.queue.region.read(source, &mut out[done..done + piece]).expect("inside the ring");
            done += piece;
        }
    }

    /// Empties the channel and frees it for the next client (the server does this).
    pub(super) fn reset(&self) {
        self.u64(TAIL_AT).store(0, Ordering::Relaxed);
        self.u64(HEAD_AT).store(0, Ordering::Relaxed);
        self.transfer().store(0, Ordering::Relaxed);
        self.u64(CLAIM_AT).store(0, Ordering::Relaxed);
        self.u64(OWNER_START_AT).store(0, Ordering::Relaxed);
        self.u32(STATE_AT).store(0, Ordering::Relaxed);
        self.u32(OWNER_PID_AT).store(0, Ordering::Release);
    }
}
