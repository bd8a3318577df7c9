//! The one error type of Lightbeam, with a stable numeric code per variant.

#![forbid(unsafe_code)]

use std::time::Duration;

/// What went wrong in a decoded frame: the sans-IO checks of [`crate::wire`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WireError {
    /// The message had no frames at all.
    #[error("empty message: no header frame")]
    Empty,
    /// The header frame is shorter than the fixed header or than what it announces.
    #[error("truncated header frame: {len} bytes, need at least {needed}")]
    Truncated {
        /// Bytes present.
        len: usize,
        /// Bytes the header requires.
        needed: usize,
    },
    /// The header frame has bytes past what its header announces.
    #[error("header frame has {extra} trailing bytes past its announced contents")]
    TrailingBytes {
        /// Bytes past the announced end.
        extra: usize,
    },
    /// The frame does not start with Lightbeam's magic bytes.
    #[error("bad magic {found:02x?}: not a Lightbeam message")]
    BadMagic {
        /// The first bytes found.
        found: [u8; 4],
    },
    /// The frame was written by an incompatible format version.
    #[error("unsupported wire format version {found} (this build speaks {supported})")]
    BadVersion {
        /// Version in the frame.
        found: u8,
        /// Version this build speaks.
        supported: u8,
    },
    /// The number of bulk frames differs from the number of bulk descriptors.
    #[error("metadata announces {announced} bulks but the message carries {received} bulk frames")]
    BulkCountMismatch {
        /// Bulks the metadata announces.
        announced: usize,
        /// Bulk frames present.
        received: usize,
    },
    /// A bulk frame's length differs from its descriptor's size.
    #[error("bulk {index}: descriptor announces {announced} bytes but the frame holds {received}")]
    BulkSizeMismatch {
        /// Index of the bulk.
        index: usize,
        /// Size in the descriptor.
        announced: u64,
        /// Length of the frame.
        received: usize,
    },
    /// A descriptor-only bulk's shared-memory location is not valid text.
    #[error("descriptor-only bulk with an unreadable segment name")]
    BadLocation,
    /// The user's metadata fields did not decode into the receiver's type.
    #[error("metadata does not decode into the receiver's type: {0}")]
    Metadata(String),
}

/// What went wrong with shared memory.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ShmError {
    /// A segment name with characters other than letters, digits, `.`, `_` and `-`, or too long.
    #[error("invalid segment name {0:?}: use 1 to 200 letters, digits, '.', '_' or '-'")]
    InvalidName(String),
    /// No segment of that name exists on this node (or it was unlinked).
    #[error("no shared-memory segment {0:?} on this node")]
    UnknownSegment(String),
    /// A segment of that name exists already.
    #[error("shared-memory segment {0:?} exists already")]
    Exists(String),
    /// A segment of that name exists, but the process that created it is gone (killed before it could
    /// remove it): [`crate::shm::Segment::reclaim_stale`] removes it,
    /// [`crate::shm::Segment::create_reclaiming`] replaces it.
    #[error(
        "shared-memory segment {name:?} is stale: it was left by process {creator_pid}, which is gone; \
         reclaim it with Segment::reclaim_stale or Segment::create_reclaiming, or remove {path}"
    )]
    Stale {
        /// The segment's name.
        name: String,
        /// The pid of the process that created it.
        creator_pid: u32,
        /// The segment's file.
        path: String,
    },
    /// The file is not a Lightbeam segment (or not yet formatted).
    #[error("not a Lightbeam shared-memory segment")]
    NotASegment,
    /// The segment is too small to hold its header and one block.
    #[error("a segment of {size} bytes is too small: at least {minimum}")]
    TooSmall {
        /// Size asked for.
        size: usize,
        /// Smallest usable size.
        minimum: usize,
    },
    /// An allocation larger than the segment could ever hold.
    #[error("allocation of {requested} bytes is larger than the segment's capacity of {capacity}")]
    TooLarge {
        /// Bytes asked for.
        requested: usize,
        /// The most one allocation can hold.
        capacity: usize,
    },
    /// No free block is large enough right now.
    #[error("segment exhausted: no free block of {requested} bytes")]
    Exhausted {
        /// Bytes asked for.
        requested: usize,
    },
    /// The offset was already freed.
    #[error("double free of offset {offset}")]
    DoubleFree {
        /// The offset freed twice.
        offset: u64,
    },
    /// The offset is not the start of an allocation in this segment.
    #[error("offset {offset} is not an allocation of this segment")]
    NotAnAllocation {
        /// The offset given.
        offset: u64,
    },
    /// A pointer from another segment was given to this one.
    #[error("pointer into segment {pointer:?} given to segment {segment:?}")]
    ForeignPointer {
        /// The pointer's segment.
        pointer: String,
        /// The segment it was given to.
        segment: String,
    },
    /// A pointer plus length that runs outside the segment's payload area.
    #[error(
        "{len} bytes at offset {offset} run outside segment {segment:?} (payloads lie in {start}..{end})"
    )]
    OutOfBounds {
        /// The segment.
        segment: String,
        /// Offset of the access.
        offset: u64,
        /// Length of the access.
        len: u64,
        /// First payload byte.
        start: u64,
        /// End of the segment.
        end: u64,
    },
    /// A range that does not lie wholly inside one live allocation of the segment.
    #[error(
        "{len} bytes at offset {offset} of segment {segment:?} do not lie inside one allocation (segment \
         and block headers, free blocks and ranges across allocations are refused)"
    )]
    NotInAllocation {
        /// The segment.
        segment: String,
        /// Offset of the range.
        offset: u64,
        /// Length of the range.
        len: u64,
    },
    /// The segment's allocator lock stayed held by a live process for 10 s (allocator operations take
    /// microseconds): a holder stuck, or a dead holder whose pid a live process now has.
    #[error("the segment's allocator lock stayed held by process {holder} for {waited:?}")]
    LockHeld {
        /// The pid in the lock word.
        holder: u32,
        /// How long this process waited.
        waited: std::time::Duration,
    },
    /// A block header inside the segment is damaged.
    #[error("segment damaged: bad block header at offset {offset}")]
    Corrupted {
        /// Where the damage was found.
        offset: u64,
    },
    /// A file under a segment's name is not a regular file (a FIFO, a symbolic link, a directory, ...):
    /// not a segment, whoever put it there. It is refused without being read, and never removed.
    #[error(
        "{path} is a {kind}, not a regular file: it is no shared-memory segment (any local user can put \
         files in that directory); it is left alone"
    )]
    NotAFile {
        /// The file.
        path: String,
        /// What it is.
        kind: &'static str,
    },
    /// A segment file belongs to another user than this process's effective user: it is not trusted,
    /// neither mapped nor read, and never removed (not even when stale).
    #[error(
        "{path} belongs to uid {owner}, not to this process's uid {ours}: a segment file of another user \
         is not trusted, and is left alone"
    )]
    ForeignOwner {
        /// The file.
        path: String,
        /// The file's owner.
        owner: u32,
        /// This process's effective user.
        ours: u32,
    },
    /// The file system of shared memory (/dev/shm, a tmpfs of limited size) has no room for a new
    /// segment's memory, which is reserved when the segment is created. Nothing was left behind.
    #[error(
        "no room in {dir} for shared-memory segment {segment:?}: it needs {needed} bytes ({}) and {available} \
         bytes ({}) are free; free space there or make {dir} larger (Docker: --shm-size; a tmpfs: mount -o \
         remount,size=...)",
        size_text(.needed),
        size_text(.available)
    )]
    NoSpace {
        /// The directory of segments (/dev/shm).
        dir: String,
        /// The segment's name.
        segment: String,
        /// Bytes the segment needs.
        needed: u64,
        /// Bytes free there when the creation failed.
        available: u64,
    },
    /// The memory of [`crate::shm::SharedBytesMut`] could not be reserved: a memory file is bounded not
    /// by /dev/shm's size but by the node's memory, and is refused past the system's commit limit.
    #[error(
        "no memory for {needed} bytes ({}) of shared bytes: {message} (a memory file is bounded by the \
         node's memory and commit limit, not by /dev/shm)",
        size_text(.needed)
    )]
    NoMemory {
        /// Bytes asked for.
        needed: u64,
        /// The system's description.
        message: String,
    },
    /// The operating system refused a file or mapping operation.
    #[error("{op} {path}: {message}")]
    Io {
        /// What was attempted.
        op: &'static str,
        /// The segment's file.
        path: String,
        /// The system's description.
        message: String,
    },
}

/// Every failure Lightbeam reports. Each variant has a stable [`Error::code`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An address or endpoint string could not be parsed.
    #[error("invalid address {addr:?}: {reason}")]
    InvalidAddress {
        /// The address given.
        addr: String,
        /// Why it is invalid.
        reason: String,
    },
    /// A protocol other than `tcp`, `ipc` or `inproc` was asked for.
    #[error("unknown protocol {0:?}: expected tcp, ipc or inproc")]
    UnknownProtocol(String),
    /// The port (or ipc path, or inproc name) is already bound by someone else.
    #[error("cannot bind {endpoint}: address already in use (port {port})")]
    AddressInUse {
        /// The endpoint that could not be bound.
        endpoint: String,
        /// The port number, 0 for ipc and inproc endpoints.
        port: u16,
    },
    /// A socket operation failed in the transport.
    #[error("{op} {endpoint}: {message}")]
    Transport {
        /// What was attempted (bind, connect, send, receive, ...).
        op: &'static str,
        /// The endpoint involved.
        endpoint: String,
        /// The transport's own description.
        message: String,
    },
    /// An operation did not complete within its deadline.
    #[error("{op} timed out after {after:?}{}", peer_suffix(.peer))]
    Timeout {
        /// What timed out.
        op: &'static str,
        /// The deadline that passed.
        after: Duration,
        /// The peer waited for, when known.
        peer: Option<String>,
    },
    /// A received message broke the wire format.
    #[error("malformed message: {0}")]
    Wire(#[from] WireError),
    /// The metadata could not be encoded.
    #[error("cannot encode metadata: {0}")]
    Encode(String),
    /// `recv_bulks` was called with no metadata received before it.
    #[error("recv_bulks called with no pending message: call recv_metadata first")]
    NoPendingMessage,
    /// `recv_metadata` was called while the previous message's bulks are unread.
    #[error("the previous message's {0} bulks are unread: call recv_bulks (or discard_pending) first")]
    BulksPending(usize),
    /// The receiver did not expose one buffer per announced bulk.
    #[error("{announced} bulks announced but {exposed} receive buffers exposed")]
    BulksNotExposed {
        /// Bulks in the pending message.
        announced: usize,
        /// Receive buffers found in the metadata.
        exposed: usize,
    },
    /// An exposed receive buffer is smaller than its bulk.
    #[error("bulk {index}: {needed} bytes do not fit the exposed buffer of {exposed} bytes")]
    BufferTooSmall {
        /// Index of the bulk.
        index: usize,
        /// Bytes arriving.
        needed: u64,
        /// Bytes the buffer holds.
        exposed: usize,
    },
    /// A caller's argument is invalid (a rank out of range, a wrong chunk count, ...).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// The mesh could not be formed (bootstrap), or a message did not belong to it.
    #[error("mesh: {0}")]
    Mesh(String),
    /// A shared-memory segment, allocation or pointer was refused.
    #[error("shared memory: {0}")]
    Shm(#[from] ShmError),
    /// A received message was refused because it announced more than the server's limits allow
    /// ([`crate::Options`]); it was dropped whole, before any of its sizes reached the application.
    #[error("message refused: {what} of {announced} exceeds the limit of {limit} ({option})")]
    LimitExceeded {
        /// What was too large (`"message size"`, `"bulk count"`, `"bulk frame count"`).
        what: &'static str,
        /// What the message announced or carried.
        announced: u64,
        /// The server's limit.
        limit: u64,
        /// The option that sets the limit.
        option: &'static str,
    },
    /// A received message named shared memory the server may not read (see
    /// [`crate::SharedMemoryAccess`]); it was dropped whole.
    #[error("message refused: descriptor-only bulk in segment {segment:?}: {reason}")]
    SharedMemoryRefused {
        /// The segment the bulk named.
        segment: String,
        /// Why it was refused.
        reason: String,
    },
    /// A rank of the mesh sent nothing within the deadline while another waited for it in a collective
    /// (it died, hangs, or is out of step); the mesh cannot continue.
    #[error("{op}: rank {rank} ({endpoint}) is lost: {}; the mesh cannot continue", lost_because(*.rank, *.reporter, *.waited_for))]
    PeerLost {
        /// What the failed call was doing.
        op: &'static str,
        /// The rank taken as lost.
        rank: usize,
        /// The endpoint it received on.
        endpoint: String,
        /// The rank that waited for it past the deadline and told the others.
        reporter: usize,
        /// The rank the reporter waited for: `rank` itself, or a rank that said it waits for `rank`.
        waited_for: usize,
    },
    /// Two ranks made different collective calls (another operation or root) for one sequence number:
    /// the ranks are out of step, and every later collective fails too.
    #[error("collective #{sequence}: rank {rank} called {this_call} but rank {peer} called {peer_call}; the ranks are out of step")]
    CollectiveMismatch {
        /// The sequence number both calls took (every rank counts its collectives from 0).
        sequence: u64,
        /// The rank that found the mismatch.
        rank: usize,
        /// The call that rank made.
        this_call: String,
        /// The rank whose message showed another call.
        peer: usize,
        /// The call the peer made.
        peer_call: String,
    },
    /// A peer failed in a collective this rank takes part in, and said why.
    #[error("rank {rank} failed in {op}: {reason}")]
    PeerFailed {
        /// The rank that failed.
        rank: usize,
        /// The collective.
        op: &'static str,
        /// The peer's own error.
        reason: String,
    },
    /// A peer's message broke the mesh's protocol (a malformed or misplaced piece).
    #[error("rank {rank} sent a bad message in {op}: {reason}")]
    BadPeerMessage {
        /// The sending rank.
        rank: usize,
        /// The collective.
        op: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// A collective's receive buffer cannot hold what arrives: a slice smaller than the data (a `Vec`
    /// grows instead). Nothing was written past the buffer.
    #[error("{op}: {needed} bytes arrive but the receive buffer holds {capacity}")]
    ReceiveBufferTooSmall {
        /// The call.
        op: &'static str,
        /// Bytes that arrive.
        needed: usize,
        /// Bytes the buffer holds.
        capacity: usize,
    },
    /// A buffer's length does not fit the call: an all-reduce's receive buffer of another length than
    /// its send buffer, an all-gather's that is not one block per rank, a reduce-scatter's send buffer
    /// that is not one block per rank.
    #[error("{op}: {what} holds {found} elements where the call needs {expected}")]
    LengthMismatch {
        /// The call.
        op: &'static str,
        /// Which buffer.
        what: &'static str,
        /// Elements the call needs there.
        expected: usize,
        /// Elements it holds.
        found: usize,
    },
    /// Bytes that arrive do not make whole elements of the receive buffer's type (13 bytes into
    /// `f64`s).
    #[error("{op}: {bytes} bytes arrive, which is no whole number of {element_size}-byte elements")]
    NotWholeElements {
        /// The call.
        op: &'static str,
        /// Bytes that arrive.
        bytes: usize,
        /// The size of one element of the receive buffer.
        element_size: usize,
    },
    /// A reduction that does not apply to the element type (a bitwise operation on floating point).
    #[error("{op}: the operation {operation} does not apply to elements of type {element}")]
    OperationNotForType {
        /// The call.
        op: &'static str,
        /// The reduction's name.
        operation: &'static str,
        /// The element type's name.
        element: &'static str,
    },
    /// A scatter's or an all-to-all's chunks are not one per rank.
    #[error("{op}: {given} chunks given for {ranks} ranks (one per rank)")]
    WrongChunkCount {
        /// The call.
        op: &'static str,
        /// Chunks given.
        given: usize,
        /// Ranks in the mesh.
        ranks: usize,
    },
    /// The process at the other end of a same-node connection ended, or closed its server: found at
    /// once (its process is checked while waiting), not at a timeout. A message it was sending is
    /// dropped; one this side was sending did not reach it.
    #[error("{op} {endpoint}: {reason}")]
    PeerGone {
        /// What was attempted (send to, receive on).
        op: &'static str,
        /// The endpoint involved.
        endpoint: String,
        /// Which process ended, or that the server closed.
        reason: String,
    },
}

fn lost_because(rank: usize, reporter: usize, waited_for: usize) -> String {
    match waited_for == rank {
        true => format!("rank {reporter} waited for it past its deadline"),
        false => {
            format!("rank {reporter} waited past its deadline for rank {waited_for}, which waits for it")
        }
    }
}

/// `bytes` in the largest binary unit that keeps it at least 1 (`16.0 MiB`).
fn size_text(bytes: &u64) -> String {
    match *bytes {
        b if b >= 1 << 30 => format!("{:.1} GiB", b as f64 / (1u64 << 30) as f64),
        b if b >= 1 << 20 => format!("{:.1} MiB", b as f64 / (1u64 << 20) as f64),
        b if b >= 1 << 10 => format!("{:.1} KiB", b as f64 / 1024.0),
        b => format!("{b} B"),
    }
}

fn peer_suffix(peer: &Option<String>) -> String {
    peer.as_ref().map(|p| format!(" waiting for {p}")).unwrap_or_default()
}

impl Error {
    /// A stable numeric code for this kind of failure; 0 is never used (it means success in
    /// [`crate::Event`]).
    pub fn code(&self) -> i32 {
        match self {
            Self::InvalidAddress { .. } => 1,
            Self::UnknownProtocol(_) => 2,
            Self::AddressInUse { .. } => 3,
            Self::Transport { .. } => 4,
            Self::Timeout { .. } => 5,
            Self::Wire(_) => 6,
            Self::Encode(_) => 7,
            Self::NoPendingMessage => 8,
            Self::BulksPending(_) => 9,
            Self::BulksNotExposed { .. } => 10,
            Self::BufferTooSmall { .. } => 11,
            Self::InvalidArgument(_) => 12,
            Self::Mesh(_) => 13,
            Self::Shm(_) => 14,
            Self::LimitExceeded { .. } => 15,
            Self::SharedMemoryRefused { .. } => 16,
            Self::PeerLost { .. } => 20,
            Self::CollectiveMismatch { .. } => 21,
            Self::PeerFailed { .. } => 22,
            Self::BadPeerMessage { .. } => 23,
            Self::PeerGone { .. } => 24,
            Self::ReceiveBufferTooSmall { .. } => 25,
            Self::LengthMismatch { .. } => 26,
            Self::NotWholeElements { .. } => 27,
            Self::OperationNotForType { .. } => 28,
            Self::WrongChunkCount { .. } => 29,
        }
    }

    /// True when the error is about one received message that was refused and dropped (malformed, over a
    /// limit, naming shared memory the server may not read): the server goes on with the next message.
    pub fn is_refused_message(&self) -> bool {
        matches!(self, Self::Wire(_) | Self::LimitExceeded { .. } | Self::SharedMemoryRefused { .. })
    }

    pub(crate) fn gone(op: &'static str, endpoint: &str, reason: impl std::fmt::Display) -> Self {
        Self::PeerGone { op, endpoint: endpoint.to_owned(), reason: reason.to_string() }
    }

    pub(crate) fn transport(op: &'static str, endpoint: &str, err: impl std::fmt::Display) -> Self {
        Self::Transport { op, endpoint: endpoint.to_owned(), message: err.to_string() }
    }
}

/// Lightbeam's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
