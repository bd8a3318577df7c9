//! The two-phase receive state shared by every server: validate a message, hold its bulks, deliver them.

#![forbid(unsafe_code)]

use super::Payload;
use crate::error::{Error, Result, WireError};
use crate::meta::Metadata;
use crate::shm::FullPtr;
use crate::wire::{self, BulkDescriptor};

/// A received message whose bulks are not read yet.
#[derive(Debug)]
pub(super) struct Pending {
    descriptors: Vec<BulkDescriptor>,
    frames: Vec<Payload>,
}

/// The bulks of the message whose metadata was received last, until they are read.
#[derive(Debug, Default)]
pub(super) struct Inbox {
    pending: Option<Pending>,
}

impl Inbox {
    /// Fails when a message with unread bulks is pending; a pending message with no bulks is let go.
    pub(super) fn ensure_idle(&mut self) -> Result<()> {
        match self.pending.as_ref().map(|p| p.descriptors.len()) {
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
            return Err(WireError::Empty.into());
        }
        let bulk_frames = frames.split_off(1);
        let header_frame = &frames[0];
        let header = wire::decode_header(header_frame)?;
        wire::check_bulk_frames(&header.descriptors, bulk_frames.iter().map(|b| b.len()))?;
        meta.set_received(&header.descriptors, header.custom)?;
        self.pending = Some(Pending { descriptors: header.descriptors, frames: bulk_frames });
        Ok(header_frame.len())
    }

    /// Takes the pending message out, to be read without holding the server's lock.
    pub(super) fn take(&mut self) -> Result<Pending> {
        self.pending.take().ok_or(Error::NoPendingMessage)
    }

    /// Drops the pending message; returns how many bulks it had.
    pub(super) fn discard(&mut self) -> usize {
        self.pending.take().map_or(0, |p| p.descriptors.len())
    }
}

/// Where one received bulk's bytes are: in a frame, or in a shared segment of this node.
enum Source<'p> {
    Frame(&'p Payload),
    Shared(FullPtr),
}

impl Source<'_> {
    /// Copies the bytes into bulk `index` of `meta` (a shared region straight from the segment).
    fn write_into(&self, meta: &mut dyn Metadata, index: usize) -> Result<()> {
        match self {
            Self::Frame(frame) => meta.write_received(index, frame),
            Self::Shared(region) => meta.write_received_from(index, region),
        }
    }
}

impl Pending {
    /// The bulks sent by value, as received.
    pub(super) fn into_frames(self) -> Vec<Payload> {
        self.frames
    }

    /// Copies every bulk into the buffers exposed in `meta`. Checks every buffer, and resolves every
    /// shared-memory location (bounds-checked), before writing any byte.
    pub(super) fn deliver(&self, meta: &mut dyn Metadata) -> Result<usize> {
        let announced = self.descriptors.len();
        let exposed = (0..announced).take_while(|&i| meta.receive_capacity(i).is_some()).count();
        if exposed != announced || meta.bulks().len() != announced {
            return Err(Error::BulksNotExposed { announced, exposed: meta.bulks().len().min(exposed) });
        }
        let mut frames = self.frames.iter();
        let sources = self
            .descriptors
            .iter()
            .map(|d| match &d.location {
                Some(location) => location.resolve(d.size).map(Source::Shared),
                None => Ok(Source::Frame(frames.next().expect("frames were counted on arrival"))),
            })
            .collect::<Result<Vec<_>>>()?;
        for (index, descriptor) in self.descriptors.iter().enumerate() {
            let capacity = meta.receive_capacity(index).unwrap_or(0);
            if capacity < descriptor.size {
                return Err(Error::BufferTooSmall {
                    index,
                    needed: descriptor.size as u64,
                    exposed: capacity,
                });
            }
        }
        for (index, source) in sources.iter().enumerate() {
            source.write_into(meta, index)?;
        }
        Ok(self.descriptors.iter().map(|d| d.size).sum())
    }
}
