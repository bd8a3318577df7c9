//! The records a client writes into its channel's ring, 32 bytes each, little endian:
//!
//! ```text
//! kind u32 | frames (BEGIN), offer number (REMOTE) or len (SHORT) u32 | len u64 | address u64 | pid u32 |
//! reserved u32
//! ```
//!
//! A `SHORT` record (`len` in the second word) is a whole small message by itself: `len` bytes follow
//! (padded to 8), written and published at once, which the server hands over as they are (the mesh's
//! fast path, see `mesh/net/short.rs`); at most [`SHORT_MAX`] bytes.
//!
//! Any other message is a `BEGIN` record (with its frame count: the header frame and one per bulk sent by
//! value), then per frame either an `INLINE` record followed by `len` bytes (padded to 8), or a `REMOTE`
//! record: an offer to copy `len` bytes at `address` in process `pid` (single copy), answered through the
//! channel's `transfer` word. The server reads an offer only when the client told it over its connection too
//! (`identity.rs`): the record alone is words anyone could write. A refused offer is followed by an `INLINE`
//! record for the same frame.

#![forbid(unsafe_code)]

/// The size of a record in the ring.
pub(super) const RECORD_LEN: usize = 32;

/// The most bytes a `SHORT` record carries: a small message and its envelope in a few cache lines.
pub(crate) const SHORT_MAX: usize = 2048;

/// What a record says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Record {
    /// A message of `frames` frames begins.
    Begin { frames: u32 },
    /// `len` bytes follow in the ring.
    Inline { len: u64 },
    /// Offer number `offer`: `len` bytes wait at `address` in process `pid`.
    Remote { offer: u32, len: u64, address: u64, pid: u32 },
    /// A whole message of `len` bytes follows.
    Short { len: u32 },
}

const BEGIN: u32 = 1;
const INLINE: u32 = 2;
const REMOTE: u32 = 3;
const SHORT: u32 = 4;

impl Record {
    /// The record's bytes.
    pub(super) fn encode(self) -> [u8; RECORD_LEN] {
        let (kind, frames, len, address, pid) = match self {
            Self::Begin { frames } => (BEGIN, frames, 0, 0, 0),
            Self::Inline { len } => (INLINE, 0, len, 0, 0),
            Self::Remote { offer, len, address, pid } => (REMOTE, offer, len, address, pid),
            Self::Short { len } => (SHORT, len, 0, 0, 0),
        };
        let mut out = [0; RECORD_LEN];
        out[0..4].copy_from_slice(&kind.to_le_bytes());
        out[4..8].copy_from_slice(&frames.to_le_bytes());
        out[8..16].copy_from_slice(&len.to_le_bytes());
        out[16..24].copy_from_slice(&address.to_le_bytes());
        out[24..28].copy_from_slice(&pid.to_le_bytes());
        out
    }

    /// The record in `bytes` (already copied out of the ring); `Err` names an unknown kind.
    pub(super) fn decode(bytes: &[u8; RECORD_LEN]) -> Result<Self, u32> {
        let u32_at = |at: usize| u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4 bytes"));
        let u64_at = |at: usize| u64::from_le_bytes(bytes[at..at + 8].try_into().expect("8 bytes"));
        match u32_at(0) {
            BEGIN => Ok(Self::Begin { frames: u32_at(4) }),
            INLINE => Ok(Self::Inline { len: u64_at(8) }),
            REMOTE => {
                Ok(Self::Remote { offer: u32_at(4), len: u64_at(8), address: u64_at(16), pid: u32_at(24) })
            }
            SHORT => Ok(Self::Short { len: u32_at(4) }),
            other => Err(other),
        }
    }
}

/// The bytes of padding after a frame of `len` bytes, so that records stay aligned in the ring (0 to 7,
/// for every `len`: a peer's length never makes it overflow).
pub(super) fn padding(len: u64) -> u64 {
    len.wrapping_neg() % 8
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_unknown_kinds_are_refused() {
        for record in [
            Record::Begin { frames: 3 },
            Record::Inline { len: u64::MAX },
            Record::Remote { offer: 9, len: 5, address: 0xdead_beef, pid: 42 },
            Record::Short { len: 17 },
        ] {
            assert_eq!(Record::decode(&record.encode()), Ok(record));
        }
        assert_eq!(Record::decode(&[0xff; RECORD_LEN]), Err(u32::MAX));
    }

    #[test]
    fn padding_holds_for_every_length_a_peer_can_announce() {
        assert_eq!((padding(0), padding(1), padding(7), padding(8), padding(9)), (0, 7, 1, 0, 7));
        for len in (u64::MAX - 16..=u64::MAX).chain([u64::MAX / 2, 1 << 63]) {
            assert!(padding(len) < 8 && len.wrapping_add(padding(len)) % 8 == 0, "{len}");
        }
        assert_eq!((padding(u64::MAX - 7), padding(u64::MAX - 6), padding(u64::MAX)), (0, 7, 1));
        let record = Record::Begin { frames: u32::MAX };
        assert_eq!(Record::decode(&record.encode()), Ok(record));
    }
}
