//! The two-phase receive state shared by every server: validate a message, hold its bulks, deliver them.

use super::Payload;
use crate::error::{Error, Result};
use crate::meta::Metadata;
use crate::wire;

/// The bulks of the message whose metadata was received last, until they are read.
#[derive(Debug, Default)]
pub(super) struct Inbox {
    pending: Option<Vec<Payload>>,
}

impl Inbox {
    /// Fails when a message with unread bulks is pending; a pending message with no bulks is let go.
    pub(super) fn ensure_idle(&mut self) -> Result<()> {
        match self.pending.as_ref().map(Vec::len) {
            Some(n) if n > 0 => Err(Error::BulksPending(n)),
            _ => {
                self.pending = None;
                Ok(())
            }
        }
    }

    /// Checks a whole received message, decodes its metadata into `meta` and holds its bulks.
    /// Returns the length of the metadata frame. A message that fails any check is dropped.
    pub(super) fn accept(&mut self, mut frames: Vec<Payload>, meta: &mut dyn Metadata) -> Result<usize> {
        if frames.is_empty() {
            return Err(crate::error::WireError::Empty.into());
        }
        let bulks = frames.split_off(1);
        let header_frame = &frames[0];
        let header = wire::decode_header(header_frame)?;
        wire::check_bulk_frames(&header.descriptors, bulks.iter().map(|b| b.len()))?;
        meta.set_received(&header.descriptors, header.custom)?;
        self.pending = Some(bulks);
        Ok(header_frame.len())
    }

    /// Takes the pending bulks out, to be read without holding the server's lock.
    pub(super) fn take(&mut self) -> Result<Vec<Payload>> {
        self.pending.take().ok_or(Error::NoPendingMessage)
    }

    /// Drops the pending message; returns how many bulks it had.
    pub(super) fn discard(&mut self) -> usize {
        self.pending.take().map_or(0, |b| b.len())
    }
}

/// Copies received bulks into the buffers exposed in `meta`; checks every buffer before writing any.
pub(super) fn deliver(bulks: &[Payload], meta: &mut dyn Metadata) -> Result<usize> {
    let exposed = (0..bulks.len()).take_while(|&i| meta.destination(i).is_some()).count();
    if exposed != bulks.len() || meta.bulks().len() != bulks.len() {
        return Err(Error::BulksNotExposed {
            announced: bulks.len(),
            exposed: meta.bulks().len().min(exposed),
        });
    }
    for (index, bulk) in bulks.iter().enumerate() {
        let buffer_len = meta.destination(index).map_or(0, |b| b.len());
        if buffer_len < bulk.len() {
            return Err(Error::BufferTooSmall { index, needed: bulk.len() as u64, exposed: buffer_len });
        }
    }
    let mut total = 0;
    for (index, bulk) in bulks.iter().enumerate() {
        if let Some(buffer) = meta.destination(index) {
            buffer[..bulk.len()].copy_from_slice(bulk);
            total += bulk.len();
        }
    }
    Ok(total)
}
