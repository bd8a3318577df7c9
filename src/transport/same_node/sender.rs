//! The client's side of a channel: writes a message's records and bytes into the ring (pipelined: the
//! server reads while the client still writes), or offers large bulks for a single copy and waits for the
//! server's answer, so that a borrowed slice is never read after `send` returned.

#![forbid(unsafe_code)]

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::identity::{Link, Offer};
use super::queue::{state, transfer, Channel, Queue, OFFER_PATIENCE};
use super::record::{padding, Record, RECORD_LEN, SHORT_MAX};
use super::wait::{deadline_after, Watch};
use crate::error::{Error, Result};
use crate::shm::Process;

/// Bytes written between two publications of the tail while streaming a large frame, so the server can
/// copy out one piece while the next is written.
const PUBLISH_EVERY: u64 = 64 << 10;

/// One client's channel in a server's queue, claimed on creation and released on drop.
pub(super) struct Sender {
    queue: Queue,
    index: usize,
    me: Process,
    /// The random word this sender claimed its channel under.
    claim: u64,
    endpoint: String,
    /// Bytes written into the ring (some perhaps not yet published).
    tail: u64,
    /// Bytes published to the server.
    published: u64,
    /// The server's head as this client last read it.
    head_seen: u64,
    /// Bulks of at least this size are offered for a single copy; `None` once the server refused, or
    /// without a link.
    single_copy_from: Option<usize>,
    /// The connection over which offers are told to the server (see `identity.rs`).
    link: Option<Link>,
    /// The number of the last single-copy offer (29 bits, wrapping).
    offers: u32,
    /// The channel was let go (a send failed after publishing part of its message): it is never touched
    /// again, since the server may have freed it for another client meanwhile.
    abandoned: bool,
}

impl Sender {
    /// Claims a free channel of `queue`; `None` when every channel is taken.
    pub(super) fn claim(queue: Queue, endpoint: &str, single_copy_from: Option<usize>) -> Option<Self> {
        let me = Process::current();
        let claim = super::token() | 1; // never 0, the word of a free channel
        let index = queue.claim(me, claim)?;
        let endpoint = endpoint.to_owned();
        let link =
            single_copy_from.and_then(|_| Link::connect(queue.listener(), queue.server().pid, index, claim));
        let single_copy_from = single_copy_from.filter(|_| link.is_some());
        Some(Self {
            queue,
            index,
            me,
            claim,
            endpoint,
            tail: 0,
            published: 0,
            head_seen: 0,
            single_copy_from,
            link,
            offers: 0,
            abandoned: false,
        })
    }

    fn channel(&self) -> Channel<'_> {
        self.queue.channel(self.index)
    }

    /// False once the channel cannot carry another message: the client must claim a new one.
    pub(super) fn usable(&self) -> bool {
        !self.abandoned && !self.queue.closed() && self.channel().state() == state::OPEN && self.owns()
    }

    /// True while the channel is still this sender's claim.
    fn owns(&self) -> bool {
        let channel = self.channel();
        channel.owner().pid == self.me.pid && channel.claim_word() == self.claim
    }

    /// Lets the channel go for good.
    fn abandon(&mut self) {
        if !self.abandoned {
            self.abandoned = true;
            self.channel().release(self.claim);
        }
    }

    /// Sends `frames` (the header frame first) as one message within `timeout`, running `watch`'s
    /// callback whenever its signal moves while the send waits. On an error after part of the message
    /// was published, the channel is given up (the server drops the partial message).
    pub(super) fn send(
        &mut self,
        frames: &[&[u8]],
        timeout: Option<Duration>,
        watch: Option<Watch<'_>>,
    ) -> Result<()> {
        let start = self.published;
        let deadline = deadline_after(timeout);
        let result = Sending { sender: self, deadline, timeout, watch }.write_message(frames);
        if result.is_err() {
            if self.published == start {
                self.tail = start; // nothing reached the server: the channel stays usable
            } else {
                self.abandon();
            }
        }
        result
    }

    /// Writes `parts` as one short message (a `SHORT` record and the parts' bytes, at most
    /// [`SHORT_MAX`] in all) and publishes it at once, when the ring has room for it now; false (and
    /// nothing written) when it has not, or the message is too long: the caller sends it the general
    /// way, which waits for room.
    pub(super) fn send_short(&mut self, parts: &[&[u8]]) -> Result<bool> {
        let len: usize = parts.iter().map(|part| part.len()).sum();
        if len > SHORT_MAX {
            return Ok(false);
        }
        let record = Record::Short { len: len as u32 }.encode();
        let pad = padding(len as u64) as usize;
        let whole = (RECORD_LEN + len + pad) as u64;
        if whole > self.room_seen() && whole > self.room()? {
            return Ok(false);
        }
        let channel = self.channel();
        let mut at = self.tail;
        for bytes in std::iter::once(&record[..]).chain(parts.iter().copied()).chain([&[0u8; 8][..pad]]) {
            channel.write(at, bytes);
            at += bytes.len() as u64;
        }
        self.tail = at;
        self.publish();
        Ok(true)
    }

    fn garbage(&self, what: String) -> Error {
        Error::transport("send to", &self.endpoint, format!("garbage in the channel: {what}"))
    }

    /// Swaps offer `id`'s state `from` for WITHDRAWN; false when the server answered first.
    fn withdraw(&self, id: u32, from: u32) -> bool {
        let (from, withdrawn) = (transfer::pack(id, from), transfer::pack(id, transfer::WITHDRAWN));
        let channel = self.channel();
        channel.transfer().compare_exchange(from, withdrawn, Ordering::AcqRel, Ordering::Acquire).is_ok()
    }

    /// Free bytes in the ring, from the server's head (checked: it cannot be ahead of what was published,
    /// nor so far behind that the unread and the unpublished bytes together would not fit the ring: a
    /// head moved back is garbage, never a larger room).
    fn room(&mut self) -> Result<u64> {
        let head = self.channel().head();
        let room = self.room_after(head).ok_or_else(|| self.garbage(format!("head {head}")))?;
        self.head_seen = head;
        Ok(room)
    }

    /// The room from the head read last: at most the room there is (the head only moves on), without
    /// taking the cache line the server writes the head on.
    fn room_seen(&self) -> u64 {
        self.room_after(self.head_seen).unwrap_or(0)
    }

    fn room_after(&self, head: u64) -> Option<u64> {
        let unpublished = self.tail - self.published; // this process's own counts: tail >= published
        let unread = self.published.checked_sub(head)?;
        (self.queue.ring() as u64).checked_sub(unread)?.checked_sub(unpublished)
    }

    /// Makes no more single-copy offers on this channel, and closes the link.
    fn forgo_single_copies(&mut self) {
        self.single_copy_from = None;
        self.link = None;
    }

    fn publish(&mut self) {
        if self.tail != self.published {
            self.published = self.tail;
            self.channel().publish_tail(self.tail);
        }
    }
}

/// One message on its way: the sender, the send's deadline, and what to watch while it waits.
struct Sending<'s, 'w> {
    sender: &'s mut Sender,
    deadline: Option<Instant>,
    timeout: Option<Duration>,
    watch: Option<Watch<'w>>,
}

impl Sending<'_, '_> {
    fn write_message(&mut self, frames: &[&[u8]]) -> Result<()> {
        let count = u32::try_from(frames.len())
            .map_err(|_| Error::InvalidArgument(format!("{} frames in one message", frames.len())))?;
        self.write_record(Record::Begin { frames: count })?;
        for (i, frame) in frames.iter().enumerate() {
            let offer = i > 0 && self.sender.single_copy_from.is_some_and(|from| frame.len() >= from);
            if !(offer && self.offer(frame)?) {
                self.write_inline(frame)?;
            }
        }
        self.sender.publish();
        Ok(())
    }

    fn write_record(&mut self, record: Record) -> Result<()> {
        self.write_bytes(&record.encode())
    }

    fn write_inline(&mut self, frame: &[u8]) -> Result<()> {
        let len = frame.len() as u64;
        self.write_record(Record::Inline { len })?;
        self.write_bytes(frame)?;
        self.write_bytes(&[0u8; 8][..padding(len) as usize])
    }

    /// Offers `frame` for a single copy and waits for the answer: true when the server copied it, false
    /// when it refused (then no more offers are made on this channel) or did not answer in time (then the
    /// offer is withdrawn); either way the bytes then go through the ring. A copy still unfinished at the
    /// deadline is withdrawn too, and the send fails (see [`transfer::COPYING`]).
    fn offer(&mut self, frame: &[u8]) -> Result<bool> {
        let sender = &mut *self.sender;
        sender.offers = sender.offers.wrapping_add(1) & (u32::MAX >> 3);
        let id = sender.offers;
        let (len, address, pid) = (frame.len() as u64, frame.as_ptr() as u64, sender.me.pid);
        // The server reads only offers told over the link, one per record, in order: an offer told
        // whose record is never published leaves the link out of step, so it goes.
        if !sender.link.as_ref().is_some_and(|link| link.tell(Offer { offer: id, address, len })) {
            sender.forgo_single_copies();
            return Ok(false);
        }
        sender.channel().transfer().store(transfer::pack(id, transfer::PENDING), Ordering::Release);
        if let Err(error) = self.write_record(Record::Remote { offer: id, len, address, pid }) {
            self.sender.forgo_single_copies();
            return Err(error);
        }
        self.sender.publish();
        // Taking the offer back helps only when the bytes then fit the ring's free room (a server that
        // is not receiving could not take more through the ring either), and costs a second copy: a
        // larger frame waits for its answer until the deadline (a server busy copying another client's
        // bulk, as a gather's root, answers when it is done).
        let patience = match frame.len() as u64 <= self.sender.room()? {
            true => {
                let patience = Instant::now() + OFFER_PATIENCE;
                Some(self.deadline.map_or(patience, |d| d.min(patience)))
            }
            false => self.deadline,
        };
        let waiting = [transfer::PENDING];
        let answered = self.answer(id, patience, &waiting);
        let answer = match answered.map_err(|error| self.abandon_offer(id, error))? {
            Some(transfer::COPYING) => self.settled(id)?,
            Some(answer) => answer,
            // Take the offer back unless the server took it meanwhile: once WITHDRAWN, the server reads
            // the bytes from the ring instead.
            None if self.sender.withdraw(id, transfer::PENDING) => return Ok(false),
            None => self.settled(id)?,
        };
        match answer {
            transfer::DONE => Ok(true),
            transfer::REFUSED => {
                self.sender.forgo_single_copies();
                Ok(false)
            }
            other => Err(self.sender.garbage(format!("answer {other} to a single-copy offer"))),
        }
    }

    /// The final answer (DONE or REFUSED) to offer `id`, which the server took, waited for until the
    /// deadline; past it the offer is withdrawn and the send times out (unless the answer came first).
    fn settled(&mut self, id: u32) -> Result<u32> {
        let waiting = [transfer::PENDING, transfer::COPYING];
        let answered = self.answer(id, self.deadline, &waiting);
        if let Some(answer) = answered.map_err(|error| self.abandon_offer(id, error))? {
            return Ok(answer);
        }
        if self.sender.withdraw(id, transfer::COPYING) {
            return Err(self.timeout("send (the server did not finish copying a bulk)"));
        }
        let answer = transfer::state_of(self.sender.channel().transfer().load(Ordering::Acquire));
        match answer {
            transfer::DONE | transfer::REFUSED => Ok(answer),
            other => Err(self.sender.garbage(format!("answer {other} to a single-copy offer"))),
        }
    }

    /// After `error` ended a wait for offer `id`'s answer (the watch's news, garbage, a lost server):
    /// takes the offer back, pending or mid-copy, so that the server never reads the frame after `send`
    /// returned (one that answered already has read it), and gives `error` back.
    fn abandon_offer(&self, id: u32, error: Error) -> Error {
        let _ = self.sender.withdraw(id, transfer::PENDING) || self.sender.withdraw(id, transfer::COPYING);
        error
    }

    /// Waits for the server's answer to offer `id` until `deadline`: its state, once not in `waiting`.
    fn answer(&mut self, id: u32, deadline: Option<Instant>, waiting: &[u32]) -> Result<Option<u32>> {
        self.wait(deadline, |sender, channel| {
            let word = channel.transfer().load(Ordering::Acquire);
            if transfer::offer_of(word) != id {
                return Err(sender.garbage(format!("transfer word {word} during offer {id}")));
            }
            let answer = transfer::state_of(word);
            Ok((!waiting.contains(&answer)).then_some(answer))
        })
    }

    /// Copies `data` into the ring, waiting for room while the server catches up.
    fn write_bytes(&mut self, mut data: &[u8]) -> Result<()> {
        while !data.is_empty() {
            let mut room = self.sender.room()?;
            if room == 0 {
                self.sender.publish();
                let found = self.wait(self.deadline, |sender, channel| {
                    let full = sender.published.wrapping_sub(sender.queue.ring() as u64);
                    Ok((channel.head() != full).then_some(()))
                })?;
                if found.is_none() {
                    return Err(self.timeout("send (the server's queue stayed full)"));
                }
                room = self.sender.room()?;
            }
            let piece = (room as usize).min(data.len());
            let sender = &mut *self.sender;
            sender.channel().write(sender.tail, &data[..piece]);
            sender.tail += piece as u64;
            data = &data[piece..];
            if sender.tail - sender.published >= PUBLISH_EVERY {
                sender.publish();
            }
        }
        Ok(())
    }

    /// Waits on the channel's signal (and the watched one) until `ready` gives a value or `deadline`
    /// passes (`None`), failing when the server is gone, closed, or gave up on the channel.
    fn wait<T>(
        &mut self,
        deadline: Option<Instant>,
        mut ready: impl FnMut(&Sender, &Channel<'_>) -> Result<Option<T>>,
    ) -> Result<Option<T>> {
        let sender = &*self.sender;
        let channel = sender.channel();
        let lost = |why: String| Error::transport("send to", &sender.endpoint, why);
        channel.signal().wait(
            deadline,
            || {
                // What was awaited first: a server that answered and then closed (its last receive
                // done) has served this send.
                if let Some(value) = ready(sender, &channel)? {
                    return Ok(Some(value));
                }
                if sender.queue.closed() {
                    return Err(Error::gone("send to", &sender.endpoint, "the server closed"));
                }
                if channel.state() != state::OPEN || !sender.owns() {
                    return Err(lost("the server gave up on this client's channel".into()));
                }
                Ok(None)
            },
            || {
                let server = sender.queue.server();
                match server.is_gone() {
                    true => Err(Error::gone(
                        "send to",
                        &sender.endpoint,
                        format!("the server process {} is lost (it ended)", server.pid),
                    )),
                    false => Ok(()),
                }
            },
            self.watch.as_mut(),
        )
    }

    fn timeout(&self, op: &'static str) -> Error {
        Error::Timeout {
            op,
            after: self.timeout.unwrap_or_default(),
            peer: Some(self.sender.endpoint.clone()),
        }
    }
}

impl Drop for Sender {
    fn drop(&mut self) {
        // What was published stays for the server to read; it frees the channel then. An abandoned
        // channel was released already and may be another client's by now: it is not touched.
        self.abandon();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shm::Segment;
    use crate::transport::same_node::{SharedMemoryServer, ShmOptions};
    use crate::{Options, Server};

    /// The server's head, read back from the segment, moved back by a peer while bytes wait unpublished:
    /// garbage, never an overflow (a panic in debug builds, a room past the ring in release).
    #[test]
    fn a_head_moved_back_is_garbage_not_room() {
        let shm = ShmOptions::default().with_ring_size(4096).with_channels(1);
        let server = SharedMemoryServer::bind("unit-room", "shm", 0, &Options::default(), &shm).unwrap();
        let segment = Segment::open(server.address().trim_start_matches("shm://")).unwrap();
        let mut sender = Sender::claim(Queue::open(&segment).unwrap(), server.address(), None).unwrap();
        (sender.published, sender.tail) = (4096, 4106);
        sender.channel().publish_head(4096);
        assert_eq!(sender.room().unwrap(), 4086);
        sender.channel().publish_head(0); // a ring unread, and 10 bytes written after it
        assert!(sender.room().is_err());
        sender.channel().publish_head(4097); // ahead of what was published
        assert!(sender.room().is_err());
    }
}
