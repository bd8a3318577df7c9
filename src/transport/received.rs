//! [`Received`]: one whole received message, checked by the `wire` rules and the server's limits before
//! anything of it reaches the application, and owning its frames until the application is done with them.

#![forbid(unsafe_code)]

use serde::de::DeserializeOwned;

use super::{Payload, Protocol, SharedMemoryAccess};
use crate::error::{Error, Result, WireError};
use crate::meta::{self, LbmMeta, Metadata};
use crate::shm::PeerRegion;
use crate::wire::{self, BulkDescriptor};

/// What a server accepts from a peer: checked on every message before it is handed out.
#[derive(Debug, Clone)]
pub(crate) struct Limits {
    /// Largest message: header plus every bulk, descriptor-only bulks included.
    pub(crate) max_message_size: u64,
    /// Most bulks (and bulk frames) one message may carry.
    pub(crate) max_bulks: usize,
    /// Which descriptor-only bulks may be resolved.
    pub(crate) shared_memory: SharedMemoryAccess,
    /// The protocol the messages came over (descriptor-only bulks over tcp need explicit consent).
    pub(crate) protocol: Protocol,
}

impl Limits {
    fn check(&self, what: &'static str, announced: u64, limit: u64, option: &'static str) -> Result<()> {
        if announced > limit {
            return Err(Error::LimitExceeded { what, announced, limit, option });
        }
        Ok(())
    }

    /// The region a descriptor-only bulk names, if the server's owner allows reading it: over a protocol
    /// and in a segment they allowed, and wholly inside one live allocation (never allocator state).
    fn resolve_shared(&self, descriptor: &BulkDescriptor) -> Result<Option<PeerRegion>> {
        let Some(location) = &descriptor.location else { return Ok(None) };
        let refuse =
            |reason: String| Error::SharedMemoryRefused { segment: location.segment.clone(), reason };
        if self.shared_memory.segment_prefixes.is_empty() {
            return Err(refuse("this server reads no shared memory (Options::shared_memory)".into()));
        }
        if self.protocol == Protocol::Tcp && !self.shared_memory.over_tcp {
            return Err(refuse(
                "descriptor-only bulks are not accepted over tcp (SharedMemoryAccess::over_tcp)".into(),
            ));
        }
        if !self.shared_memory.allows(&location.segment) {
            return Err(refuse("the server does not allow this segment (Options::shared_memory)".into()));
        }
        let region = location.open_allocation(descriptor.size).map_err(|e| refuse(e.to_string()))?;
        Ok(Some(region))
    }
}

/// One received message, whole: its bulk descriptors, its custom metadata (still encoded), the frames of
/// the bulks sent by value, and the regions of descriptor-only bulks, already checked against the server's
/// [`crate::SharedMemoryAccess`].
///
/// Every size it reports passed the server's limits ([`crate::Options::max_message_size`],
/// [`crate::Options::max_bulks`]), so buffers sized from them are safe to allocate. The message belongs to
/// whoever holds this value: it can be moved to another thread, read several times, and is dropped with it.
pub struct Received {
    header: Payload,
    descriptors: Vec<BulkDescriptor>,
    custom_len: usize,
    frames: Vec<Payload>,
    shared: Vec<Option<PeerRegion>>,
}

impl Received {
    /// Checks a whole received message against the wire rules and `limits`; a message that fails any
    /// check is dropped whole.
    pub(crate) fn accept(mut frames: Vec<Payload>, limits: &Limits) -> Result<Self> {
        if frames.is_empty() {
            return Err(WireError::Empty.into());
        }
        let max_bulks = limits.max_bulks as u64;
        limits.check("bulk frame count", frames.len() as u64 - 1, max_bulks, "Options::max_bulks")?;
        let bulk_frames = frames.split_off(1);
        let header = frames.pop().expect("one frame left");
        if let Some(announced) = wire::announced_bulk_count(&header) {
            // Before decoding: descriptors take more memory than their bytes on the wire.
            limits.check("bulk count", announced as u64, max_bulks, "Options::max_bulks")?;
        }
        let decoded = wire::decode_header(&header)?;
        wire::check_bulk_frames(&decoded.descriptors, bulk_frames.iter().map(|b| b.len()))?;
        let total = decoded
            .descriptors
            .iter()
            .try_fold(header.len() as u64, |sum, d| sum.checked_add(d.size as u64))
            .unwrap_or(u64::MAX);
        limits.check("message size", total, limits.max_message_size, "Options::max_message_size")?;
        let shared = decoded.descriptors.iter().map(|d| limits.resolve_shared(d)).collect::<Result<_>>()?;
        let custom_len = decoded.custom.len();
        let descriptors = decoded.descriptors;
        Ok(Self { header, descriptors, custom_len, frames: bulk_frames, shared })
    }

    fn custom(&self) -> &[u8] {
        &self.header[self.header.len() - self.custom_len..]
    }

    /// How many bulks the message carries.
    pub fn bulk_count(&self) -> usize {
        self.descriptors.len()
    }

    /// The size of each bulk, in order.
    pub fn bulk_sizes(&self) -> impl ExactSizeIterator<Item = usize> + '_ {
        self.descriptors.iter().map(|d| d.size)
    }

    /// The sum of the bulk sizes.
    pub fn total_size(&self) -> usize {
        self.descriptors.iter().map(|d| d.size).sum()
    }

    /// The length of the metadata frame, as [`crate::Server::recv_metadata`] reports it.
    pub fn metadata_len(&self) -> usize {
        self.header.len()
    }

    /// The message's metadata: one descriptor per bulk (size and flags, and the location of a
    /// descriptor-only bulk) and the sender's custom fields decoded as `M`.
    pub fn metadata<M: DeserializeOwned>(&self) -> Result<LbmMeta<'static, M>> {
        let custom = wire::decode_custom(self.custom())?;
        Ok(LbmMeta { bulks: self.descriptors.iter().map(meta::received_bulk).collect(), custom })
    }

    /// Fills `meta` as [`Received::metadata`] does, for callers holding a `dyn Metadata`.
    pub fn read_metadata(&self, meta: &mut dyn Metadata) -> Result<usize> {
        meta.set_received(&self.descriptors, self.custom())?;
        Ok(self.header.len())
    }

    /// Copies every bulk into the buffers exposed in `meta.bulks` (one per bulk, each at least the
    /// bulk's size); returns the bytes copied. Every buffer is checked before any byte is written, so on
    /// an error nothing was written, and the message is still here to try again with other buffers.
    pub fn recv_bulks(&self, meta: &mut dyn Metadata) -> Result<usize> {
        let announced = self.descriptors.len();
        let exposed = (0..announced).take_while(|&i| meta.receive_capacity(i).is_some()).count();
        if exposed != announced || meta.bulks().len() != announced {
            return Err(Error::BulksNotExposed { announced, exposed: meta.bulks().len().min(exposed) });
        }
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
        let mut frames = self.frames.iter();
        for (index, region) in self.shared.iter().enumerate() {
            match region {
                Some(region) => meta.write_received_from(index, region)?,
                None => meta.write_received(index, frames.next().expect("frames were counted on arrival"))?,
            }
        }
        Ok(self.total_size())
    }

    /// The bulks sent by value, as received, to read in place without a copy. Descriptor-only bulks have
    /// no frame: read them through their location in [`Received::metadata`].
    pub fn into_payloads(self) -> Vec<Payload> {
        self.frames
    }
}

impl std::fmt::Debug for Received {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Received")
            .field("bulks", &self.descriptors)
            .field("custom_len", &self.custom_len)
            .finish_non_exhaustive()
    }
}
