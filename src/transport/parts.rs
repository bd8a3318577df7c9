//! The frames of an outgoing message's bulks sent by value, taken from its [`Bulk`]s once for every
//! transport: borrowed, owned (moved in without a copy, handed back when the send fails) or copied out of
//! a shared-memory region.

#![forbid(unsafe_code)]

use crate::bulk::{Bulk, BulkFlags};
use crate::error::{Error, Result};

/// One bulk frame of an outgoing message: copied from a borrowed region, or moved in without a copy
/// (an owned bulk's bytes, or a copy of a shared-memory region).
pub(super) enum Part<'a> {
    Borrowed(&'a [u8]),
    Owned { index: usize, bytes: Vec<u8> },
    Copied(Vec<u8>),
}

impl Part<'_> {
    /// The frame's bytes.
    pub(super) fn bytes(&self) -> &[u8] {
        match self {
            Self::Borrowed(bytes) => bytes,
            Self::Owned { bytes, .. } | Self::Copied(bytes) => bytes,
        }
    }
}

impl From<Part<'_>> for zmq::Message {
    fn from(part: Part<'_>) -> Self {
        match part {
            Part::Borrowed(bytes) => bytes.into(),
            Part::Owned { bytes, .. } | Part::Copied(bytes) => bytes.into(),
        }
    }
}

/// The frames of the bulks sent by value (descriptor-only bulks travel in the header alone). Owned bulks
/// give their bytes up here; if any bulk cannot be sent, those taken are put back.
pub(super) fn take_parts<'a>(bulks: &'a [Bulk<'_>]) -> Result<Vec<Part<'a>>> {
    let mut parts = Vec::with_capacity(bulks.len());
    for (index, bulk) in bulks.iter().enumerate().filter(|(_, b)| !b.flags().contains(BulkFlags::EXPOSE)) {
        let part = match (bulk.take_owned(), bulk.source_bytes(), bulk.source_region()) {
            (Some(bytes), _, _) => Ok(Part::Owned { index, bytes }),
            (None, Some(bytes), _) => Ok(Part::Borrowed(bytes)),
            // Copied once out of the segment, as a borrowed slice would be copied into its frame.
            (None, None, Some(region)) => Ok(Part::Copied(region.to_vec())),
            (None, None, None) if bulk.is_owned() => {
                Err(Error::InvalidArgument(format!("bulk {index} was given away by an earlier send")))
            }
            (None, None, None) => {
                Err(Error::InvalidArgument(format!("bulk {index} was not exposed for sending")))
            }
        };
        match part {
            Ok(part) => parts.push(part),
            Err(error) => {
                restore_parts(bulks, parts);
                return Err(error);
            }
        }
    }
    Ok(parts)
}

/// Gives owned bulks back the bytes of a message that was not sent.
pub(super) fn restore_parts(bulks: &[Bulk<'_>], parts: Vec<Part<'_>>) {
    for part in parts {
        if let Part::Owned { index, bytes } = part {
            bulks[index].restore_owned(bytes);
        }
    }
}
