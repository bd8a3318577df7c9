//! The collectives' own messages, sans IO: every message a collective sends, and how it is encoded in
//! the parts of one mesh message and read back, checked, before any of its bytes is used.
//!
//! A message of at most one part is a chunk sent whole (a scatter's, a gather's or an all-to-all's).
//! Every other message starts with a header part, which names its kind, and then carries its body:
//!
//! | kind | header | body |
//! |---|---|---|
//! | piece of a broadcast, by its path (tree, chain, fan-out) | kind, total, offset | the piece |
//! | bytes sent on request, or along the shared broadcast's leaders | kind, total, offset | the piece |
//! | offer: where the sender's bytes are, to be read in place | kind, total, 0 | a [`Descriptor`] |
//! | shared file: the sealed memory file of a shared broadcast | kind, total, 0 | its descriptor |
//! | answer to an offer: copied, or send the bytes | kind, total, 0 | empty |
//! | announcement of a shared broadcast's size | kind, total, 0 | empty |
//! | bundle of a node's chunks | kind, count, 0, then each chunk's length | one part per chunk |
//!
//! Numbers are little-endian `u64`s; the kind is one byte. A message that does not match its kind's
//! shape (a piece past its message's end, a bundle whose lengths do not add up, a descriptor that
//! cannot be read) is refused with the reason, which the caller reports as
//! [`Error::BadPeerMessage`].

#![forbid(unsafe_code)]

use crate::error::Error;
use crate::mesh::net::envelope::Channel;
use crate::mesh::net::matching::Incoming;
use crate::shm::{SharedBytesDescriptor, ShmPtr};

/// The bytes of every header but a bundle's (whose lengths follow): kind, total, offset.
const HEADER_LEN: usize = 17;

/// The path a broadcast's pieces take, chosen by the root and carried by every piece, so that the
/// other ranks need not agree on the choice.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Path {
    /// Down a binomial tree.
    Tree,
    /// Along a pipelined chain.
    Chain,
    /// From the root to every rank.
    FanOut,
}

/// A reader's answer to an offer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Answer {
    /// It has the data (or needs none: its buffer is too small, which it reports itself).
    Copied,
    /// The kernel refused it the copy: the holder sends the bytes.
    SendBytes,
}

/// The header of a message other than a chunk or a bundle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Header {
    /// A piece of a broadcast of `total` bytes, at `offset`.
    Piece { path: Path, total: usize, offset: usize },
    /// A piece of `total` bytes sent on request or along the shared broadcast's leaders, at `offset`.
    Bytes { total: usize, offset: usize },
    /// Where the sender's `total` bytes are.
    Offer { total: usize },
    /// The sealed memory file of a shared broadcast of `total` bytes.
    SharedFile { total: usize },
    /// The answer to an offer of `total` bytes.
    Answer { total: usize, answer: Answer },
    /// A shared broadcast of `total` bytes follows.
    Announce { total: usize },
}

const PIECE_TREE: u8 = 0;
const PIECE_CHAIN: u8 = 1;
const PIECE_FAN_OUT: u8 = 2;
const BYTES: u8 = 3;
const OFFER: u8 = 4;
const SHARED_FILE: u8 = 5;
const COPIED: u8 = 6;
const SEND_BYTES: u8 = 7;
const ANNOUNCE: u8 = 8;
const BUNDLE: u8 = 9;

impl Header {
    /// The header part.
    pub(crate) fn encode(self) -> [u8; HEADER_LEN] {
        let (kind, total, offset) = match self {
            Self::Piece { path: Path::Tree, total, offset } => (PIECE_TREE, total, offset),
            Self::Piece { path: Path::Chain, total, offset } => (PIECE_CHAIN, total, offset),
            Self::Piece { path: Path::FanOut, total, offset } => (PIECE_FAN_OUT, total, offset),
            Self::Bytes { total, offset } => (BYTES, total, offset),
            Self::Offer { total } => (OFFER, total, 0),
            Self::SharedFile { total } => (SHARED_FILE, total, 0),
            Self::Answer { total, answer: Answer::Copied } => (COPIED, total, 0),
            Self::Answer { total, answer: Answer::SendBytes } => (SEND_BYTES, total, 0),
            Self::Announce { total } => (ANNOUNCE, total, 0),
        };
        header(kind, total as u64, offset as u64)
    }
}

fn header(kind: u8, total: u64, offset: u64) -> [u8; HEADER_LEN] {
    let mut bytes = [0; HEADER_LEN];
    bytes[0] = kind;
    bytes[1..9].copy_from_slice(&total.to_le_bytes());
    bytes[9..].copy_from_slice(&offset.to_le_bytes());
    bytes
}

/// The header part of a bundle of chunks of these lengths.
pub(crate) fn bundle_header(lengths: impl ExactSizeIterator<Item = usize>) -> Vec<u8> {
    // A bundle of no chunk would be one part: a chunk. Every node holds a rank, so none is ever empty.
    debug_assert!(lengths.len() > 0, "a bundle holds a chunk at least");
    let mut bytes = header(BUNDLE, lengths.len() as u64, 0).to_vec();
    bytes.extend(lengths.flat_map(|len| (len as u64).to_le_bytes()));
    bytes
}

/// Where a holder's bytes are (its process and the buffer's address), and the offer that keeps them
/// there: the offer's number and where its word is. 28 bytes and the word segment's name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Descriptor {
    pub(crate) pid: u32,
    pub(crate) address: u64,
    pub(crate) offer: u64,
    pub(crate) word: ShmPtr,
}

impl Descriptor {
    /// The body part.
    pub(crate) fn encode(&self) -> Vec<u8> {
        let numbers = [self.address, self.offer, self.word.offset].map(u64::to_le_bytes);
        [&self.pid.to_le_bytes()[..], &numbers.concat(), self.word.segment.as_bytes()].concat()
    }

    fn decode(bytes: &[u8]) -> Option<Self> {
        if !(29..=28 + 255).contains(&bytes.len()) {
            return None;
        }
        let segment = std::str::from_utf8(&bytes[28..]).ok()?.to_owned();
        Some(Self {
            pid: u32::from_le_bytes(bytes[..4].try_into().ok()?),
            address: number(&bytes[4..])?,
            offer: number(&bytes[12..])?,
            word: ShmPtr { segment, offset: number(&bytes[20..])? },
        })
    }
}

/// A collective's message as read from its parts.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Message<'a> {
    /// A chunk sent whole: the message's one part (none for 0 bytes) is the chunk.
    Chunk,
    /// A piece of a broadcast.
    Piece { path: Path, total: usize, offset: usize, data: &'a [u8] },
    /// A piece of bytes sent on request or along the shared broadcast's leaders.
    Bytes { total: usize, offset: usize, data: &'a [u8] },
    /// Where the sender's `total` bytes are, to be read in place.
    Offer { total: usize, descriptor: Descriptor },
    /// A shared broadcast's sealed memory file.
    SharedFile { total: usize, descriptor: SharedBytesDescriptor },
    /// The answer to an offer.
    Answer { total: usize, answer: Answer },
    /// A shared broadcast of `total` bytes follows.
    Announce { total: usize },
    /// A node's chunks, one part each after the header, their lengths checked against it.
    Bundle { count: usize },
}

/// Reads the message in `parts`, checking its shape; the error says what is wrong with it.
pub(crate) fn decode<P: std::ops::Deref<Target = [u8]>>(parts: &[P]) -> Result<Message<'_>, String> {
    let (head, body) = match parts {
        [] | [_] => return Ok(Message::Chunk),
        [head, body @ ..] => (&**head, body),
    };
    let kind = *head.first().ok_or("an empty header")?;
    if kind == BUNDLE {
        return decode_bundle(head, body);
    }
    let [only] = body else { return Err(format!("a message of kind {kind} with {} body parts", body.len())) };
    let only: &[u8] = only;
    if head.len() != HEADER_LEN {
        return Err(format!("a header of {} bytes", head.len()));
    }
    // No buffer can hold more than isize::MAX bytes: a larger size is refused before anything is sized.
    let size = |at: usize| number(&head[at..]).and_then(|n| isize::try_from(n).ok()).map(|n| n as usize);
    let total = size(1).ok_or("a size past what a buffer can hold")?;
    let offset = size(9).ok_or("an offset past what a buffer can hold")?;
    let piece = |path: Option<Path>| {
        if offset.checked_add(only.len()).is_none_or(|end| end > total) {
            return Err("a piece that runs past the message's end".to_owned());
        }
        // Down a tree or from the root, the whole message travels in one piece.
        if matches!(path, Some(Path::Tree | Path::FanOut)) && only.len() != total {
            return Err(format!("a piece of {} bytes of a {total}-byte message sent whole", only.len()));
        }
        Ok(match path {
            Some(path) => Message::Piece { path, total, offset, data: only },
            None => Message::Bytes { total, offset, data: only },
        })
    };
    let empty = |message: Message<'static>| match only.is_empty() {
        true => Ok(message),
        false => Err(format!("a message of kind {kind} with a body of {} bytes", only.len())),
    };
    if offset != 0 && ![PIECE_TREE, PIECE_CHAIN, PIECE_FAN_OUT, BYTES].contains(&kind) {
        return Err(format!("a message of kind {kind} at offset {offset}"));
    }
    match kind {
        PIECE_TREE => piece(Some(Path::Tree)),
        PIECE_CHAIN => piece(Some(Path::Chain)),
        PIECE_FAN_OUT => piece(Some(Path::FanOut)),
        BYTES => piece(None),
        OFFER => Descriptor::decode(only)
            .map(|descriptor| Message::Offer { total, descriptor })
            .ok_or_else(|| "a malformed descriptor".into()),
        SHARED_FILE => SharedBytesDescriptor::decode(only)
            .map(|descriptor| Message::SharedFile { total, descriptor })
            .ok_or_else(|| "a malformed descriptor of a shared file".into()),
        COPIED => empty(Message::Answer { total, answer: Answer::Copied }),
        SEND_BYTES => empty(Message::Answer { total, answer: Answer::SendBytes }),
        ANNOUNCE => empty(Message::Announce { total }),
        other => Err(format!("an unknown kind of message ({other})")),
    }
}

fn decode_bundle<P: std::ops::Deref<Target = [u8]>>(
    head: &[u8],
    chunks: &[P],
) -> Result<Message<'static>, String> {
    let count = head.get(1..).and_then(number).ok_or("a bundle header cut short")?;
    let lengths = &head[HEADER_LEN.min(head.len())..];
    if head.len() < HEADER_LEN || lengths.len() as u64 != count.saturating_mul(8) {
        return Err(format!("a bundle header of {} bytes for {count} chunks", head.len()));
    }
    if chunks.len() as u64 != count {
        return Err(format!("a bundle of {} chunks whose header lists {count}", chunks.len()));
    }
    for (i, (said, chunk)) in lengths.chunks_exact(8).filter_map(number).zip(chunks).enumerate() {
        if said != chunk.len() as u64 {
            return Err(format!("chunk {i} of a bundle says {said} bytes but holds {}", chunk.len()));
        }
    }
    Ok(Message::Bundle { count: chunks.len() })
}

/// The little-endian `u64` at the start of `bytes`.
fn number(bytes: &[u8]) -> Option<u64> {
    Some(u64::from_le_bytes(bytes.get(..8)?.try_into().ok()?))
}

/// Reads `incoming` as a collective's message, or the error naming its sender and what is wrong.
pub(crate) fn read(incoming: &Incoming) -> crate::Result<Message<'_>> {
    decode(&incoming.payloads).map_err(|reason| bad_message(incoming, &reason))
}

/// The error for a message of a collective that is not what the receiver expects there.
pub(crate) fn bad_message(incoming: &Incoming, reason: &str) -> Error {
    let op = match incoming.channel {
        Channel::Collective(collective) => collective.call.operation.name(),
        _ => "collective",
    };
    Error::BadPeerMessage { rank: incoming.job_source.0, op, reason: reason.into() }
}

/// Reads `parts` as a collective's message and checks that what it accepts holds what its kind says (a
/// piece lies within its message, a header re-encodes to the bytes read, a bundle has a part per
/// chunk); panics when it does not. The fuzz target's entry (`fuzz/`); not part of the API.
#[doc(hidden)]
pub fn decode_for_fuzzing(parts: &[&[u8]]) -> Result<(), String> {
    let header = |header: Header| assert_eq!(&header.encode()[..], parts[0], "a header re-encodes as read");
    match decode(parts)? {
        Message::Chunk => assert!(parts.len() <= 1),
        Message::Piece { path, total, offset, data } => {
            assert!(offset + data.len() <= total && total <= isize::MAX as usize);
            header(Header::Piece { path, total, offset });
        }
        Message::Bytes { total, offset, data } => {
            assert!(offset + data.len() <= total);
            header(Header::Bytes { total, offset });
        }
        Message::Offer { total, descriptor } => {
            header(Header::Offer { total });
            assert_eq!(descriptor.encode(), parts[1], "a descriptor re-encodes as read");
        }
        Message::SharedFile { total, .. } => header(Header::SharedFile { total }),
        Message::Answer { total, answer } => header(Header::Answer { total, answer }),
        Message::Announce { total } => header(Header::Announce { total }),
        Message::Bundle { count } => assert_eq!(count + 1, parts.len()),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(head: &[u8], body: &[&[u8]]) -> Vec<Vec<u8>> {
        std::iter::once(head.to_vec()).chain(body.iter().map(|b| b.to_vec())).collect()
    }

    #[test]
    fn every_header_round_trips() {
        let headers = [
            Header::Piece { path: Path::Tree, total: 4, offset: 0 },
            Header::Piece { path: Path::Chain, total: 10, offset: 0 },
            Header::Piece { path: Path::FanOut, total: 4, offset: 0 },
            Header::Bytes { total: 6, offset: 2 },
        ];
        for header in headers {
            let encoded = parts(&header.encode(), &[b"abcd"]);
            let (total, offset) = match decode(&encoded).unwrap() {
                Message::Piece { path, total, offset, data } => {
                    assert_eq!(Header::Piece { path, total, offset }, header);
                    assert_eq!(data, b"abcd");
                    (total, offset)
                }
                Message::Bytes { total, offset, data } => {
                    assert_eq!(Header::Bytes { total, offset }, header);
                    assert_eq!(data, b"abcd");
                    (total, offset)
                }
                other => panic!("{other:?}"),
            };
            assert!(offset + 4 <= total);
        }
        for answer in [Answer::Copied, Answer::SendBytes] {
            let encoded = parts(&Header::Answer { total: 7, answer }.encode(), &[b""]);
            assert_eq!(decode(&encoded), Ok(Message::Answer { total: 7, answer }));
        }
        let encoded = parts(&Header::Announce { total: 1 << 40 }.encode(), &[b""]);
        assert_eq!(decode(&encoded), Ok(Message::Announce { total: 1 << 40 }));
        let descriptor = Descriptor {
            pid: 42,
            address: 0x7fff_0000,
            offer: 3,
            word: ShmPtr { segment: "mesh-00ab-1-word-ff".into(), offset: 64 },
        };
        let encoded = parts(&Header::Offer { total: 9 }.encode(), &[&descriptor.encode()]);
        assert_eq!(decode(&encoded), Ok(Message::Offer { total: 9, descriptor }));
        // One part or none: a chunk, whatever its bytes.
        assert_eq!(decode(&[Header::Announce { total: 1 }.encode().to_vec()]), Ok(Message::Chunk));
        assert_eq!(decode::<Vec<u8>>(&[]), Ok(Message::Chunk));
    }

    #[test]
    fn a_bundle_round_trips_with_empty_chunks_and_one_that_does_not_add_up_is_refused() {
        let chunks: [&[u8]; 3] = [b"abc", b"", b"d"];
        let head = bundle_header(chunks.iter().map(|c| c.len()));
        assert_eq!(decode(&parts(&head, &chunks)), Ok(Message::Bundle { count: 3 }));
        let refused = |head: &[u8], body: &[&[u8]]| decode(&parts(head, body)).unwrap_err();
        assert!(refused(&head, &chunks[..2]).contains("a bundle of 2 chunks whose header lists 3"));
        assert!(refused(&head[..20], &chunks).contains("header of 20 bytes"));
        assert!(refused(&head[..5], &chunks).contains("cut short"));
        let huge = bundle_header([1, usize::MAX].into_iter());
        let text = refused(&huge, &[b"a", b"b"]);
        assert!(text.contains(&format!("chunk 1 of a bundle says {} bytes but holds 1", u64::MAX)), "{text}");
    }

    #[test]
    fn a_malformed_message_is_refused_with_its_reason() {
        let piece = |total, offset| Header::Piece { path: Path::Chain, total, offset }.encode();
        let refused = |head: &[u8], body: &[&[u8]]| decode(&parts(head, body)).unwrap_err();
        assert!(refused(&piece(4, 2), &[b"abc"]).contains("runs past the message's end"));
        let tree = Header::Piece { path: Path::Tree, total: 4, offset: 0 }.encode();
        assert!(refused(&tree, &[b"ab"]).contains("a piece of 2 bytes of a 4-byte message sent whole"));
        assert!(refused(&header(PIECE_CHAIN, u64::MAX, 0), &[b""]).contains("past what a buffer can hold"));
        assert!(refused(&header(OFFER, 1, 8), &[b""]).contains("at offset 8"));
        assert!(refused(&piece(4, usize::MAX), &[b"a"]).contains("an offset past what a buffer can hold"));
        assert!(refused(&piece(4, isize::MAX as usize), &[b"a"]).contains("runs past"));
        assert!(refused(&piece(4, 0), &[b"a", b"b"]).contains("2 body parts"));
        assert!(refused(&piece(4, 0)[..16], &[b"a"]).contains("a header of 16 bytes"));
        assert!(refused(&[], &[b"a"]).contains("an empty header"));
        assert!(refused(&header(200, 0, 0), &[b""]).contains("unknown kind"));
        let answer = Header::Answer { total: 1, answer: Answer::Copied }.encode();
        assert!(refused(&answer, &[b"x"]).contains("a body of 1 bytes"));
        let offer = Header::Offer { total: 1 }.encode();
        assert!(refused(&offer, &[&[0; 28]]).contains("malformed descriptor"));
        assert!(refused(&offer, &[&[0xff; 40]]).contains("malformed descriptor"));
        let shared = Header::SharedFile { total: 1 }.encode();
        assert!(refused(&shared, &[b"nonsense"]).contains("shared file"));
    }
}
