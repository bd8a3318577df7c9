//! The frame format, sans IO: encoding and every check a received message must pass.
//!
//! One message is a header frame followed by one frame per bulk. The header frame is
//!
//! ```text
//! offset  size  field
//! 0       4     magic "LBM\x01"
//! 4       1     format version (1)
//! 5       3     reserved, zero
//! 8       4     bulk count n (little endian)
//! 12      4     length c of the custom metadata (little endian)
//! 16      ...   per bulk: size u64, flags u32 (little endian); for a descriptor-only bulk (flag
//!               EXPOSE) also its shared-memory location: offset u64, name length u8, segment name
//! ...     c     the custom metadata, encoded with postcard
//! ```
//!
//! One bulk frame follows per bulk sent by value; descriptor-only bulks have none.
//!
//! This module knows nothing of sockets: it is unit-tested and fuzzed on byte slices alone.

#![forbid(unsafe_code)]

mod codec;

pub use self::codec::{decode_custom, encode_custom};

use crate::bulk::{Bulk, BulkFlags};
use crate::error::{Error, Result, WireError};
use crate::shm::ShmPtr;

/// The four bytes every header frame starts with.
pub const MAGIC: [u8; 4] = *b"LBM\x01";
/// The format version this build writes and accepts.
pub const VERSION: u8 = 1;
/// Length of the fixed part of the header frame.
pub const HEADER_LEN: usize = 16;
/// Encoded length of one bulk descriptor without a location.
pub const DESCRIPTOR_LEN: usize = 12;

/// What the wire says of one bulk: its size, flags and, for a descriptor-only bulk, where it lies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BulkDescriptor {
    /// Payload size in bytes.
    pub size: usize,
    /// The sender's flags.
    pub flags: BulkFlags,
    /// The shared-memory location of a descriptor-only bulk ([`BulkFlags::EXPOSE`]); `None` when the bytes
    /// follow in a bulk frame.
    pub location: Option<ShmPtr>,
}

impl BulkDescriptor {
    /// True when the bulk's bytes travel in a frame of the message.
    pub fn by_value(&self) -> bool {
        self.location.is_none()
    }
}

/// A decoded header frame: the bulk descriptors and the still-encoded custom metadata.
#[derive(Debug, PartialEq, Eq)]
pub struct Header<'f> {
    /// One descriptor per bulk frame that follows.
    pub descriptors: Vec<BulkDescriptor>,
    /// The custom metadata bytes, decoded by the receiver's own type.
    pub custom: &'f [u8],
}

/// Encodes a header frame for `bulks`, with custom metadata written by `encode_custom`.
pub fn encode_header(
    bulks: &[Bulk<'_>],
    encode_custom: impl FnOnce(&mut Vec<u8>) -> Result<()>,
) -> Result<Vec<u8>> {
    let count = u32::try_from(bulks.len()).map_err(|_| {
        Error::InvalidArgument(format!("{} bulks exceed the format's u32 count", bulks.len()))
    })?;
    let mut out = Vec::with_capacity(HEADER_LEN + DESCRIPTOR_LEN * bulks.len() + 32);
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&[VERSION, 0, 0, 0]);
    out.extend_from_slice(&count.to_le_bytes());
    out.extend_from_slice(&[0; 4]); // custom length, patched below
    for (index, bulk) in bulks.iter().enumerate() {
        out.extend_from_slice(&(bulk.size() as u64).to_le_bytes());
        out.extend_from_slice(&bulk.flags().0.to_le_bytes());
        if bulk.flags().contains(BulkFlags::EXPOSE) {
            let location = bulk.location().ok_or_else(|| {
                Error::InvalidArgument(format!(
                    "bulk {index} has the EXPOSE flag but is not in shared memory"
                ))
            })?;
            let name = u8::try_from(location.segment.len())
                .map_err(|_| Error::InvalidArgument(format!("bulk {index}: segment name too long")))?;
            out.extend_from_slice(&location.offset.to_le_bytes());
            out.push(name);
            out.extend_from_slice(location.segment.as_bytes());
        }
    }
    let custom_start = out.len();
    encode_custom(&mut out)?;
    let custom_len = u32::try_from(out.len() - custom_start)
        .map_err(|_| Error::Encode("custom metadata exceeds 4 GiB".into()))?;
    out[12..16].copy_from_slice(&custom_len.to_le_bytes());
    Ok(out)
}

fn le_u32(bytes: &[u8]) -> u32 {
    u32::from_le_bytes(bytes.try_into().expect("4 bytes"))
}

/// The bulk count a header frame announces, read before anything is decoded or allocated (so a
/// receiver can hold it to its limit first); `None` when the frame is too short to say or is no
/// Lightbeam header (then `decode_header` says what is wrong).
pub fn announced_bulk_count(frame: &[u8]) -> Option<usize> {
    if frame.get(..4)? != MAGIC {
        return None;
    }
    Some(le_u32(frame.get(8..12)?) as usize)
}

/// Decodes and checks a header frame. Allocates at most one descriptor per 12 bytes of `frame`.
pub fn decode_header(frame: &[u8]) -> Result<Header<'_>, WireError> {
    if frame.len() < HEADER_LEN {
        if frame.len() >= 4 && frame[..4] != MAGIC {
            return Err(WireError::BadMagic { found: frame[..4].try_into().expect("4 bytes") });
        }
        return Err(WireError::Truncated { len: frame.len(), needed: HEADER_LEN });
    }
    let magic: [u8; 4] = frame[..4].try_into().expect("4 bytes");
    if magic != MAGIC {
        return Err(WireError::BadMagic { found: magic });
    }
    if frame[4] != VERSION {
        return Err(WireError::BadVersion { found: frame[4], supported: VERSION });
    }
    let count = le_u32(&frame[8..12]) as usize;
    let custom_len = le_u32(&frame[12..16]) as usize;
    let mut rest = &frame[HEADER_LEN..];
    // Every descriptor takes at least 12 bytes: the frame bounds what `count` can make us allocate.
    let fixed =
        DESCRIPTOR_LEN.checked_mul(count).and_then(|d| d.checked_add(custom_len)).unwrap_or(usize::MAX);
    if rest.len() < fixed {
        return Err(WireError::Truncated { len: frame.len(), needed: HEADER_LEN.saturating_add(fixed) });
    }
    let truncated = |needed: usize| WireError::Truncated { len: frame.len(), needed };
    let mut take = |n: usize| -> Result<&[u8], WireError> {
        if rest.len() < n {
            return Err(truncated(frame.len() - rest.len() + n));
        }
        let (head, tail) = rest.split_at(n);
        rest = tail;
        Ok(head)
    };
    let mut descriptors = Vec::with_capacity(count);
    for _ in 0..count {
        let fixed = take(DESCRIPTOR_LEN)?;
        let size = u64::from_le_bytes(fixed[..8].try_into().expect("8 bytes")) as usize;
        let flags = BulkFlags(le_u32(&fixed[8..]));
        let location = if flags.contains(BulkFlags::EXPOSE) {
            let offset = u64::from_le_bytes(take(8)?.try_into().expect("8 bytes"));
            let name_len = take(1)?[0] as usize;
            let name = std::str::from_utf8(take(name_len)?).map_err(|_| WireError::BadLocation)?;
            Some(ShmPtr { segment: name.to_owned(), offset })
        } else {
            None
        };
        descriptors.push(BulkDescriptor { size, flags, location });
    }
    match rest.len().cmp(&custom_len) {
        std::cmp::Ordering::Less => Err(truncated(frame.len() - rest.len() + custom_len)),
        std::cmp::Ordering::Greater => Err(WireError::TrailingBytes { extra: rest.len() - custom_len }),
        std::cmp::Ordering::Equal => Ok(Header { descriptors, custom: rest }),
    }
}

/// Checks that the bulk frames match the descriptors of the bulks sent by value: one frame each, in order,
/// each exactly its announced size.
pub fn check_bulk_frames(
    descriptors: &[BulkDescriptor],
    frame_lens: impl ExactSizeIterator<Item = usize>,
) -> Result<(), WireError> {
    let by_value = descriptors.iter().enumerate().filter(|(_, d)| d.by_value());
    let announced = by_value.clone().count();
    if frame_lens.len() != announced {
        return Err(WireError::BulkCountMismatch { announced, received: frame_lens.len() });
    }
    for ((index, descriptor), len) in by_value.zip(frame_lens) {
        if descriptor.size != len {
            return Err(WireError::BulkSizeMismatch {
                index,
                announced: descriptor.size as u64,
                received: len,
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(bulks: &[Bulk<'_>], custom: &(u32, String)) -> Vec<u8> {
        encode_header(bulks, |out| encode_custom(custom, out)).unwrap()
    }

    #[test]
    fn round_trip() {
        let (a, b) = ([1u8; 3], [2u8; 0]);
        let bulks = [Bulk::source(&a, BulkFlags::XFER), Bulk::source(&b, BulkFlags(1 << 20))];
        let custom = (42, "write".to_string());
        let bytes = frame(&bulks, &custom);
        let header = decode_header(&bytes).unwrap();
        assert_eq!(
            header.descriptors,
            [
                BulkDescriptor { size: 3, flags: BulkFlags::XFER, location: None },
                BulkDescriptor { size: 0, flags: BulkFlags(1 << 20), location: None }
            ]
        );
        assert_eq!(decode_custom::<(u32, String)>(header.custom).unwrap(), custom);
        check_bulk_frames(&header.descriptors, [3, 0].into_iter()).unwrap();
    }

    #[test]
    fn every_malformation_is_a_typed_error() {
        let good = frame(&[], &(1, "x".into()));
        assert_eq!(decode_header(&[]), Err(WireError::Truncated { len: 0, needed: HEADER_LEN }));
        assert!(matches!(decode_header(&good[..10]), Err(WireError::Truncated { len: 10, .. })));
        assert!(matches!(decode_header(&good[..good.len() - 1]), Err(WireError::Truncated { .. })));
        let mut long = good.clone();
        long.push(0);
        assert_eq!(decode_header(&long), Err(WireError::TrailingBytes { extra: 1 }));
        let mut magic = good.clone();
        magic[0] = b'X';
        assert!(matches!(decode_header(&magic), Err(WireError::BadMagic { .. })));
        assert!(matches!(decode_header(b"GARBAGE"), Err(WireError::BadMagic { .. })));
        let mut version = good.clone();
        version[4] = 9;
        assert_eq!(decode_header(&version), Err(WireError::BadVersion { found: 9, supported: VERSION }));
        let mut huge = good;
        huge[8..12].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(decode_header(&huge), Err(WireError::Truncated { .. })));
    }

    #[test]
    fn bulk_frames_must_match_descriptors() {
        let d = [BulkDescriptor { size: 4, flags: BulkFlags::NONE, location: None }];
        assert_eq!(
            check_bulk_frames(&d, [].into_iter()),
            Err(WireError::BulkCountMismatch { announced: 1, received: 0 })
        );
        assert_eq!(
            check_bulk_frames(&d, [4, 4].into_iter()),
            Err(WireError::BulkCountMismatch { announced: 1, received: 2 })
        );
        assert_eq!(
            check_bulk_frames(&d, [5].into_iter()),
            Err(WireError::BulkSizeMismatch { index: 0, announced: 4, received: 5 })
        );
    }

    #[test]
    fn custom_metadata_of_another_type_is_rejected() {
        let mut out = Vec::new();
        encode_custom(&(7u8, "name".to_string()), &mut out).unwrap();
        assert!(matches!(decode_custom::<u64>(&out), Err(WireError::Metadata(_))));
        assert!(matches!(decode_custom::<(u8, String, u64)>(&out), Err(WireError::Metadata(_))));
    }
}
