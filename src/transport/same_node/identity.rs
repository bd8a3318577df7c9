//! The kernel's word on who offers bytes for a single copy. Every word of the segment can be written by
//! any process of the server's user, so a pid in a channel or in a `REMOTE` record proves nothing; the
//! offers that the server reads reach it a second way, which only the offering process holds:
//!
//! - The server listens on a Unix seqpacket socket with an abstract name of a random token, which it
//!   records in its queue's control block ([`Gate`]). It never blocks on it: it takes in connections
//!   and reads them, without waiting, when a `REMOTE` record asks for one and, while it receives, at
//!   least every [`TAKE_IN_PERIOD`] (so that connections of clients that left do not fill its backlog).
//! - A client that claimed a channel and offers single copies connects, checks that the process at the
//!   other end (`SO_PEERCRED`) is the queue's server (so it tells no squatter of the name where its
//!   bulks lie), and sends its hello: the channel's index and its claim word ([`Link::connect`]).
//! - On taking a connection in, the server asks the kernel who made it ([`peer_identity`]): its pid and
//!   user (`SO_PEERCRED`) and a pidfd of that process (`SO_PEERPIDFD`, Linux 6.5), which names the
//!   process that connected even after it ended and its pid went to another. A pid of 0 (a process
//!   outside the server's pid namespace) or another user is refused. It reads the start time `/proc`
//!   gives for the pid, then keeps the connection only if the pidfd's process still lives: then the
//!   pid was that process's while `/proc` was read, and the start time is its own.
//! - The server binds a connection to a channel only when the connecting process still lives, its pid
//!   is the channel's owner pid, the start time read for it is the owner's start word, the hello's
//!   claim word is the channel's, and the channel has no bound connection yet ([`Trust`]).
//! - Before it publishes each `REMOTE` record, the client sends that offer's number, address and
//!   length over its connection ([`Link::tell`]). For a `REMOTE` record, the server takes the next one
//!   from the channel's connection: an offer is read only when one was there, equal to the record, and
//!   only from the process the kernel named. Anything else is refused, and the bytes come through the
//!   ring. A connection that closed (its client ended) or that told another offer than the record's is
//!   not trusted again for the channel's life.
//! - Each single copy is read by the bound process's pid only when its pidfd says it lives both before
//!   and after the read; else the copy is thrown away and the offer refused (the bytes come through the
//!   ring), and nothing is read from the channel again. While that process lives, its pid is its own.
//!
//! So a process can make the server read only memory of the process that made a bound connection,
//! which is its own, even when the connection outlived it (a child it forked, or a process it passed
//! the descriptor to, holds it) and its pid went to another process.
//!
//! What is left:
//! - On kernels before 6.5 (no `SO_PEERPIDFD`), the server has only the pid and the start time `/proc`
//!   gave for it when it took the connection in; it reads only while `/proc` still gives that start
//!   time for the pid, before and after each copy. A process that connects, sends its hello, hands the
//!   connection to another process (a child, or over `SCM_RIGHTS`) and ends, and whose pid is reused by
//!   another process of the same user before the server takes the connection in (a server that is not
//!   receiving takes nothing in, for a whole compute phase), makes the server record the new process's
//!   start time: the holder of the connection can then make the server read that process's memory.
//! - Any user can read the listener's abstract name in `/proc/net/unix` and connect, faster than the
//!   server takes connections in: it can fill the listener's backlog, and the server's room for
//!   connections that wait, so that new clients' connections are refused or pushed out. Their single
//!   copies are then refused and their bytes come through the ring: slower, never a wrong read.

#![forbid(unsafe_code)]

use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustix::io::Errno;
use rustix::net::{
    accept_with, bind, connect, listen, recv, send, socket_with, AddressFamily, RecvFlags, SendFlags,
    SocketAddrUnix, SocketFlags, SocketType,
};
use rustix::process::geteuid;

use super::queue::Channel;
use crate::shm::{lives, peer_identity, read_process_into, PeerIdentity, Process};

/// The bytes of a hello: channel index u64 | claim word u64, little endian.
const HELLO_LEN: usize = 16;
/// The bytes of an offer: offer number u64 | address u64 | len u64, little endian.
const OFFER_LEN: usize = 24;
/// The least room for connections that wait to be accepted or bound (else one per channel).
const MIN_WAITING: usize = 16;
/// The most time between two looks at the listener while the server receives, so that connections of
/// clients that never offer (and have left since) do not fill its backlog.
const TAKE_IN_PERIOD: Duration = Duration::from_millis(50);

/// What a client tells the server of one single-copy offer, over its connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Offer {
    pub(super) offer: u32,
    pub(super) address: u64,
    pub(super) len: u64,
}

impl Offer {
    fn encode(self) -> [u8; OFFER_LEN] {
        let mut out = [0; OFFER_LEN];
        out[0..8].copy_from_slice(&u64::from(self.offer).to_le_bytes());
        out[8..16].copy_from_slice(&self.address.to_le_bytes());
        out[16..24].copy_from_slice(&self.len.to_le_bytes());
        out
    }

    fn decode(bytes: &[u8; OFFER_LEN]) -> Option<Self> {
        let u64_at = |at: usize| u64::from_le_bytes(bytes[at..at + 8].try_into().expect("8 bytes"));
        Some(Self { offer: u32::try_from(u64_at(0)).ok()?, address: u64_at(8), len: u64_at(16) })
    }
}

/// The abstract socket name of listener `token`.
fn name(token: u64) -> rustix::io::Result<SocketAddrUnix> {
    SocketAddrUnix::new_abstract_name(format!("lightbeam-shm-{token:016x}").as_bytes())
}

/// A new seqpacket socket (one `send` is one `recv`: an offer is never read in part), never blocking.
fn socket() -> rustix::io::Result<OwnedFd> {
    let flags = SocketFlags::CLOEXEC | SocketFlags::NONBLOCK;
    socket_with(AddressFamily::UNIX, SocketType::SEQPACKET, flags, None)
}

/// The process that made a connection, as the kernel named it.
#[derive(Debug)]
struct Peer {
    /// Its pid, with the start time `/proc` gave for that pid while the process lived (0 when `/proc`
    /// could not tell).
    process: Process,
    /// The process itself (`SO_PEERPIDFD`); `None` on kernels without it.
    pidfd: Option<OwnedFd>,
}

impl Peer {
    /// The process that made the connection `identity` tells of, when it may offer to this server: its
    /// pid is one of this pid namespace (not 0), its user is `uid`, and, where the kernel gives a
    /// pidfd, it still lived after its start time was read (so the start time is its own, not that of
    /// a later process given its pid).
    fn admit(identity: PeerIdentity, uid: u32) -> Option<Self> {
        if identity.pid == 0 || identity.uid != uid {
            return None;
        }
        let peer = Self { process: Process::of(identity.pid), pidfd: identity.pidfd };
        peer.lives().then_some(peer)
    }

    /// True while the process has not ended: by its pidfd, or, without one, while `/proc` gives the
    /// start time recorded for its pid.
    fn lives(&self) -> bool {
        match &self.pidfd {
            Some(pidfd) => lives(pidfd.as_fd()),
            None => !self.process.is_gone(),
        }
    }
}

/// A client's connection to the server, bound to its channel.
pub(super) struct Link(OwnedFd);

impl Link {
    /// Connects to the listener of token `token` as the holder of channel `index` under claim `claim`;
    /// `None` when the server listens for none (token 0), the connection fails, or the process at the
    /// other end is not `server`.
    pub(super) fn connect(token: u64, server: u32, index: usize, claim: u64) -> Option<Self> {
        if token == 0 {
            return None;
        }
        let fd = socket().ok()?;
        connect(&fd, &name(token).ok()?).ok()?;
        if peer_identity(fd.as_fd()).ok()?.pid != server || server == 0 {
            return None;
        }
        let mut hello = [0; HELLO_LEN];
        hello[0..8].copy_from_slice(&(index as u64).to_le_bytes());
        hello[8..16].copy_from_slice(&claim.to_le_bytes());
        let link = Self(fd);
        link.send(&hello).then_some(link)
    }

    /// Tells the server of `offer`, before its record is published; false when that failed (the link is
    /// then of no more use).
    pub(super) fn tell(&self, offer: Offer) -> bool {
        self.send(&offer.encode())
    }

    fn send(&self, bytes: &[u8]) -> bool {
        let flags = SendFlags::DONTWAIT | SendFlags::NOSIGNAL;
        loop {
            match send(&self.0, bytes, flags) {
                Ok(sent) => return sent == bytes.len(),
                Err(Errno::INTR) => continue,
                Err(_) => return false,
            }
        }
    }
}

/// How many offers the server copied and refused (see
/// [`SharedMemoryServer::single_copies`](super::SharedMemoryServer::single_copies)).
#[derive(Debug, Default)]
pub(super) struct Tally {
    pub(super) copied: AtomicU64,
    pub(super) refused: AtomicU64,
}

/// A connection taken in by the server, not yet bound to a channel.
struct Waiting {
    fd: OwnedFd,
    /// The connecting process, as the kernel named it.
    peer: Peer,
    /// Its hello (channel index, claim word), once read.
    hello: Option<(u64, u64)>,
}

/// The server's listener, and the connections it took in that wait to be bound.
pub(super) struct Gate {
    listener: Option<OwnedFd>,
    token: u64,
    /// Connections taken in, at most `room`; past it, the oldest goes.
    waiting: Vec<Waiting>,
    room: usize,
    /// When the listener was last looked at.
    taken_in: Instant,
    tally: Arc<Tally>,
}

impl Gate {
    /// No listener: every offer is refused.
    pub(super) fn closed() -> Self {
        let (waiting, taken_in, tally) = (Vec::new(), Instant::now(), Arc::default());
        Self { listener: None, token: 0, waiting, room: 0, taken_in, tally }
    }

    /// A listener under a fresh random token, for the clients of `channels` channels.
    pub(super) fn listen(channels: usize) -> rustix::io::Result<Self> {
        let listener = socket()?;
        let token = super::token() | 1; // never 0, the word of no listener
        bind(&listener, &name(token)?)?;
        let room = channels.max(MIN_WAITING);
        listen(&listener, i32::try_from(room).unwrap_or(i32::MAX))?;
        Ok(Self { listener: Some(listener), token, room, ..Self::closed() })
    }

    /// The listener's token, recorded in the queue (0: none).
    pub(super) fn token(&self) -> u64 {
        self.token
    }

    /// True when the server listens, so that offers may be read.
    pub(super) fn open(&self) -> bool {
        self.listener.is_some()
    }

    /// The counts of offers copied and refused, shared with the server.
    pub(super) fn tally(&self) -> &Arc<Tally> {
        &self.tally
    }

    /// Counts an offer answered: copied, or refused.
    pub(super) fn count(&self, copied: bool) {
        let counter = if copied { &self.tally.copied } else { &self.tally.refused };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Takes in what waits at the listener when it was not looked at for [`TAKE_IN_PERIOD`] (see
    /// [`Gate::take_in`]).
    pub(super) fn take_in_now_and_then(&mut self, now: Instant) {
        if now.saturating_duration_since(self.taken_in) >= TAKE_IN_PERIOD {
            self.take_in();
        }
    }

    /// Accepts the connections that wait at the listener, reads their hellos, and lets go of the
    /// connections that closed; never blocks.
    fn take_in(&mut self) {
        self.taken_in = Instant::now();
        let Some(listener) = self.listener.as_ref() else { return };
        for _ in 0..self.room {
            let Ok(fd) = accept_with(listener, SocketFlags::CLOEXEC | SocketFlags::NONBLOCK) else { break };
            // Another user's process cannot open the segment, so it holds no channel: it goes at once,
            // as does a process that ended (its pid may be another's now) or that has no pid here.
            let Ok(identity) = peer_identity(fd.as_fd()) else { continue };
            let Some(peer) = Peer::admit(identity, geteuid().as_raw()) else { continue };
            if self.waiting.len() == self.room {
                self.waiting.remove(0);
            }
            self.waiting.push(Waiting { fd, peer, hello: None });
        }
        self.waiting.retain_mut(|waiting| {
            let mut hello = [0; HELLO_LEN];
            let flags = match waiting.hello {
                None => RecvFlags::DONTWAIT,
                Some(_) => RecvFlags::DONTWAIT | RecvFlags::PEEK, // closed, or an offer waits
            };
            match (recv(&waiting.fd, &mut hello[..], flags), waiting.hello) {
                (Err(Errno::AGAIN | Errno::INTR), _) => true,
                (Ok((HELLO_LEN, _)), None) => {
                    let u64_at =
                        |at: usize| u64::from_le_bytes(hello[at..at + 8].try_into().expect("8 bytes"));
                    waiting.hello = Some((u64_at(0), u64_at(8)));
                    true
                }
                (Ok((told, _)), Some(_)) => told > 0,
                _ => false, // closed, or not a hello
            }
        });
    }

    /// A connection for channel `index` as it is now: from the connecting process that owns it (by the
    /// kernel's pid and `/proc`'s start time) and still lives, whose hello holds the channel's claim
    /// word. Takes in what waits first, without blocking.
    fn bind(&mut self, index: usize, channel: &Channel<'_>) -> Option<Bound> {
        self.take_in();
        let (owner, claim) = (channel.owner(), channel.claim_word());
        let at = self.waiting.iter().position(|waiting| {
            waiting.hello == Some((index as u64, claim))
                && waiting.peer.process == owner
                && owner.pid != 0
                && waiting.peer.lives()
        })?;
        let waiting = self.waiting.swap_remove(at);
        Some(Bound { fd: waiting.fd, peer: waiting.peer, claim })
    }
}

/// A connection bound to a channel.
pub(super) struct Bound {
    fd: OwnedFd,
    peer: Peer,
    claim: u64,
}

/// What the server knows of the process that offers through a channel.
#[derive(Default)]
pub(super) enum Trust {
    /// No connection bound yet.
    #[default]
    Unknown,
    /// A connection from the channel's owner is bound.
    Bound(Bound),
    /// The bound connection closed or told another offer than the channel's record: nothing is read
    /// from this channel again until it is freed.
    Lost,
}

impl Trust {
    /// True when `offer` (the one in a `REMOTE` record of `channel`, channel `index`) may be read from
    /// the bound connection's process ([`Trust::read`]): the next offer that connection told is
    /// `offer`. False: refuse the offer.
    pub(super) fn vouch(
        &mut self,
        gate: &mut Gate,
        index: usize,
        channel: &Channel<'_>,
        offer: Offer,
    ) -> bool {
        if let Self::Unknown = self {
            match gate.bind(index, channel) {
                Some(bound) => *self = Self::Bound(bound),
                None => return false,
            }
        }
        let Self::Bound(bound) = self else { return false };
        if channel.owner() != bound.peer.process || channel.claim_word() != bound.claim {
            *self = Self::Lost; // the channel's words changed under a bound connection
            return false;
        }
        let mut told = [0; OFFER_LEN + 1];
        let received = loop {
            match recv(&bound.fd, &mut told[..], RecvFlags::DONTWAIT) {
                Err(Errno::INTR) => continue,
                other => break other,
            }
        };
        match received {
            Err(Errno::AGAIN) => return false, // no offer told: a record the client did not write
            Ok((OFFER_LEN, _))
                if Offer::decode(told[..OFFER_LEN].try_into().expect("24 bytes")) == Some(offer) => {}
            _ => {
                *self = Self::Lost; // closed, or another offer than the record's
                return false;
            }
        }
        // A connection that closed after the offer (its holders ended) is trusted no more. An open one
        // proves nothing of the process that made it (a child or another process may hold it): the
        // read checks that process lives ([`Trust::read`]).
        let open = match recv(&bound.fd, &mut told[..], RecvFlags::DONTWAIT | RecvFlags::PEEK) {
            Err(Errno::AGAIN) => true,
            Ok((waiting, _)) => waiting > 0,
            Err(_) => false,
        };
        if !open {
            *self = Self::Lost;
        }
        open
    }

    /// Appends `len` bytes at `address` in the bound connection's process to `out`, by its pid, when that
    /// process lives before and after the copy (so the pid named it throughout); false otherwise, and
    /// `out` then holds no more than a part to throw away. Once the process has ended, nothing is read
    /// from the channel again.
    pub(super) fn read(&mut self, address: u64, len: usize, out: &mut Vec<u8>) -> bool {
        let Self::Bound(bound) = self else { return false };
        let Ok(pid) = i32::try_from(bound.peer.process.pid) else { return false };
        let lived = bound.peer.lives();
        let copied = lived && read_process_into(pid, address, len, out);
        if lived && bound.peer.lives() {
            return copied;
        }
        *self = Self::Lost;
        false
    }
}

#[cfg(test)]
mod tests {
    use std::io::{IoSlice, IoSliceMut, Read, Write};
    use std::mem::MaybeUninit;
    use std::os::fd::{AsFd, OwnedFd};
    use std::os::unix::net::{UnixListener, UnixStream};
    use std::time::Duration;

    use rustix::event::{poll, PollFd, PollFlags, Timespec};
    use rustix::net::{
        recvmsg, sendmsg, RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, SendAncillaryBuffer,
        SendAncillaryMessage, SendFlags,
    };
    use rustix::process::{geteuid, pidfd_open, Pid, PidfdFlags};

    use super::{Gate, Link, Offer, Peer, Trust};
    use crate::shm::{PeerIdentity, Process, Segment};
    use crate::transport::same_node::queue::{state, Queue};
    use crate::transport::same_node::{SharedMemoryServer, ShmOptions};
    use crate::{Options, Server};

    /// The environment variable that makes [`connection_maker`] act, and the name it is run by.
    const MAKER: &str = "LIGHTBEAM_TEST_CONNECTION_MAKER";
    const MAKER_TEST: &str = "transport::same_node::identity::tests::connection_maker";

    /// A pidfd of process `pid` (a child not yet reaped, or this process).
    fn pidfd(pid: u32) -> OwnedFd {
        pidfd_open(Pid::from_raw(pid as i32).expect("a pid"), PidfdFlags::empty()).expect("pidfd_open")
    }

    /// Waits (at most 10 s) until the process of `pidfd` has ended.
    fn until_ended(pidfd: &OwnedFd) {
        let mut fds = [PollFd::new(pidfd, PollFlags::IN)];
        let ready = poll(&mut fds, Some(&Timespec { tv_sec: 10, tv_nsec: 0 })).expect("poll");
        assert_eq!(ready, 1, "the child did not end");
    }

    /// A child process that has ended and is not reaped yet (a zombie: its pid cannot be reused), with
    /// its pid and a pidfd of it; reap it with `wait` once done.
    fn ended_child() -> (std::process::Child, OwnedFd) {
        let child = std::process::Command::new("true").spawn().expect("spawn true");
        let pidfd = pidfd(child.id());
        until_ended(&pidfd);
        (child, pidfd)
    }

    /// A connection's maker is admitted only with a pid of this namespace (not 0: the kernel's word for
    /// a process outside it), this user, and a pidfd whose process lives.
    #[test]
    fn pid_0_another_user_and_an_ended_maker_are_refused() {
        let (me, uid) = (std::process::id(), geteuid().as_raw());
        let identity = |pid, uid, pidfd| PeerIdentity { pid, uid, pidfd };
        let admitted =
            Peer::admit(identity(me, uid, Some(pidfd(me))), uid).expect("this process is admitted");
        assert_eq!(admitted.process, Process::current());
        assert!(Peer::admit(identity(0, uid, Some(pidfd(me))), uid).is_none(), "pid 0");
        assert!(
            Peer::admit(identity(me, uid.wrapping_add(1), Some(pidfd(me))), uid).is_none(),
            "another user"
        );
        // The pid's `/proc` start time is this process's, but the pidfd says the maker ended: the pid
        // would be another process's.
        let (mut child, ended) = ended_child();
        assert!(Peer::admit(identity(me, uid, Some(ended)), uid).is_none(), "an ended maker");
        child.wait().unwrap();
        // Without a pidfd (kernels before 6.5), `/proc` decides.
        assert!(Peer::admit(identity(me, uid, None), uid).is_some());
        assert!(Peer::admit(identity(child.id(), uid, None), uid).is_none(), "a reaped pid");
    }

    /// Run as a child process by [`a_connection_whose_maker_ended_is_neither_bound_nor_read`] (a no-op
    /// otherwise): twice, reads a channel index and claim word from the test, connects to its gate
    /// with that hello, and passes the connection to the test over `SCM_RIGHTS`; then ends.
    #[test]
    fn connection_maker() {
        let Ok(path) = std::env::var(MAKER) else { return };
        let var = |name: &str| std::env::var(name).unwrap().parse::<u64>().unwrap();
        let (token, server) = (var("LIGHTBEAM_TEST_TOKEN"), var("LIGHTBEAM_TEST_SERVER") as u32);
        let mut stream = UnixStream::connect(path).unwrap();
        for _ in 0..2 {
            let mut words = [0u8; 16];
            stream.read_exact(&mut words).unwrap();
            let index = u64::from_le_bytes(words[..8].try_into().unwrap()) as usize;
            let claim = u64::from_le_bytes(words[8..].try_into().unwrap());
            let link = Link::connect(token, server, index, claim).expect("a link");
            let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
            let mut control = SendAncillaryBuffer::new(&mut space);
            let fds = [link.0.as_fd()];
            assert!(control.push(SendAncillaryMessage::ScmRights(&fds)));
            sendmsg(&stream, &[IoSlice::new(b"x")], &mut control, SendFlags::empty()).unwrap();
        }
        std::process::exit(0);
    }

    fn receive_fd(stream: &UnixStream) -> OwnedFd {
        let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
        let mut control = RecvAncillaryBuffer::new(&mut space);
        let mut byte = [0u8; 1];
        recvmsg(stream, &mut [IoSliceMut::new(&mut byte)], &mut control, RecvFlags::CMSG_CLOEXEC).unwrap();
        let mut fds = control.drain().filter_map(|message| match message {
            RecvAncillaryMessage::ScmRights(mut fds) => fds.next(),
            _ => None,
        });
        fds.next().expect("a descriptor passed")
    }

    /// A connection outlives the process that made it when another process holds it (here this test,
    /// given it over `SCM_RIGHTS`; a forked child would do as well). The server binds such a connection
    /// only while its maker lives, and reads by the maker's pid only while the maker lives: once it
    /// ended, its pid could be another process's (here it is a zombie, so `/proc` still gives the
    /// pid's start time as the owner's, and a check by pid and start time alone binds it).
    #[test]
    fn a_connection_whose_maker_ended_is_neither_bound_nor_read() {
        let options = Options::default().with_max_message_size(Some(1 << 20));
        let shm = ShmOptions::default().with_stall_timeout(Duration::from_millis(300));
        let server = SharedMemoryServer::bind("unit-maker", "shm", 0, &options, &shm).unwrap();
        let segment = Segment::open(server.address().trim_start_matches("shm://")).unwrap();
        let queue = Queue::open(&segment).unwrap(); // for its channels' words; this test's gate binds
        let mut gate = Gate::listen(4).unwrap();
        let path = std::env::temp_dir().join(format!("lightbeam-unit-maker-{}.sock", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let listener = UnixListener::bind(&path).unwrap();
        let mut child = std::process::Command::new(std::env::current_exe().unwrap())
            .args(["--exact", MAKER_TEST, "--nocapture", "--test-threads=1"])
            .env(MAKER, &path)
            .env("LIGHTBEAM_TEST_TOKEN", gate.token().to_string())
            .env("LIGHTBEAM_TEST_SERVER", std::process::id().to_string())
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let maker = Process::of(child.id());
        let child_pidfd = pidfd(child.id());
        let (mut stream, _) = listener.accept().unwrap();
        let _ = std::fs::remove_file(&path);
        let hello = |stream: &mut UnixStream, index: usize, claim: u64| {
            stream.write_all(&(index as u64).to_le_bytes()).unwrap();
            stream.write_all(&claim.to_le_bytes()).unwrap();
        };

        // While the maker lives, its connection is bound to the channel it owns.
        let first = queue.claim(maker, 11).unwrap();
        hello(&mut stream, first, 11);
        let first_fd = receive_fd(&stream);
        let bound = gate.bind(first, &queue.channel(first)).expect("a live maker's connection is bound");

        // It makes a second connection, passes it on and ends; it is not reaped, so its pid is still its
        // own and `/proc` still gives its start time.
        let second = queue.claim(maker, 12).unwrap();
        hello(&mut stream, second, 12);
        let _second_fd = receive_fd(&stream);
        until_ended(&child_pidfd);
        assert_eq!(Process::of(child.id()), maker, "the zombie's /proc start time is the owner's");
        assert!(gate.bind(second, &queue.channel(second)).is_none(), "an ended maker's connection is bound");

        // The bound connection, held by this test, tells an offer: it is vouched for (the record is
        // what the connection told), but not read, and the channel is trusted no more.
        let data = [3u8; 64];
        let offer = Offer { offer: 1, address: data.as_ptr() as u64, len: 64 };
        let first_link = Link(first_fd); // held open: a closed connection is not trusted anyway
        assert!(first_link.tell(offer));
        let mut trust = Trust::Bound(bound);
        assert!(trust.vouch(&mut gate, first, &queue.channel(first), offer));
        let mut out = Vec::new();
        assert!(!trust.read(offer.address, 64, &mut out), "read by the pid of a maker that ended");
        assert!(matches!(trust, Trust::Lost));

        child.wait().unwrap();
        queue.channel(first).set_state(state::RELEASED);
        queue.channel(second).set_state(state::RELEASED);
    }
}
