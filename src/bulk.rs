//! [`Bulk`]: one exposed memory region of a message, with its size and flags.

#![forbid(unsafe_code)]

use std::sync::Mutex;

use crate::error::{Error, Result};
use crate::shm::{FullPtr, PeerRegion, ShmPtr};

/// Flags carried with each bulk. Bits 0 to 15 are Lightbeam's, bits 16 to 31 are free for applications.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct BulkFlags(pub u32);

impl BulkFlags {
    /// No flags.
    pub const NONE: Self = Self(0);
    /// The payload crosses the socket (the default behaviour; kept for parity with the C++ `BULK_XFER`).
    pub const XFER: Self = Self(1);
    /// Only the bulk's shared-memory pointer crosses the socket (the C++ `BULK_EXPOSE`); the receiver reads
    /// the bytes from the segment. Needs a bulk exposed from shared memory.
    pub const EXPOSE: Self = Self(1 << 1);

    /// True when every bit of `other` is set in `self`.
    pub fn contains(self, other: Self) -> bool {
        self.0 & other.0 == other.0
    }
}

impl std::ops::BitOr for BulkFlags {
    type Output = Self;
    fn bitor(self, rhs: Self) -> Self {
        Self(self.0 | rhs.0)
    }
}

/// The memory a [`Bulk`] points at.
#[derive(Debug, Default)]
enum Region<'a> {
    /// Only a descriptor, as `recv_metadata` fills in.
    #[default]
    Descriptor,
    /// A descriptor-only bulk as received: where the bytes lie in shared memory.
    Located(ShmPtr),
    /// Bytes to send.
    Source(&'a [u8]),
    /// A buffer to receive into.
    Destination(&'a mut [u8]),
    /// Bytes to send, in shared memory.
    SharedSource(FullPtr),
    /// Bytes to hand to the transport on the first send, without a copy (taken then, so `None` after).
    Owned(Mutex<Option<Vec<u8>>>),
    /// Shared memory to receive into.
    SharedDestination(FullPtr),
}

/// A memory region taking part in a message: its size, its flags and (when exposed) the memory itself.
///
/// Only the size and the flags cross the wire (and, for [`BulkFlags::EXPOSE`], the shared-memory pointer).
/// A `Bulk<'a>` borrows what it exposes, so the borrow checker keeps the memory alive until the send or
/// receive that uses it has returned.
#[derive(Debug, Default)]
pub struct Bulk<'a> {
    size: usize,
    flags: BulkFlags,
    region: Region<'a>,
}

impl<'a> Bulk<'a> {
    /// A bulk that sends `data`.
    pub fn source(data: &'a [u8], flags: BulkFlags) -> Self {
        Self { size: data.len(), flags, region: Region::Source(data) }
    }

    /// A bulk that gives `data` away to the transport: the first send moves it into the outgoing message
    /// without a copy (where [`Bulk::source`] copies it once, because ZeroMQ sends after `send` returns and
    /// a borrowed slice may be gone by then). A second send of the same bulk fails.
    pub fn owned(data: Vec<u8>, flags: BulkFlags) -> Bulk<'static> {
        Bulk { size: data.len(), flags, region: Region::Owned(Mutex::new(Some(data))) }
    }

    /// A bulk that receives into `buffer`.
    pub fn destination(buffer: &'a mut [u8], flags: BulkFlags) -> Self {
        Self { size: buffer.len(), flags, region: Region::Destination(buffer) }
    }

    /// A bulk that sends the shared-memory region `region`: by value, or as its pointer alone with
    /// [`BulkFlags::EXPOSE`].
    pub fn shared_source(region: FullPtr, flags: BulkFlags) -> Self {
        Self { size: region.len(), flags, region: Region::SharedSource(region) }
    }

    /// A bulk that receives into the shared-memory region `region`.
    pub fn shared_destination(region: FullPtr, flags: BulkFlags) -> Self {
        Self { size: region.len(), flags, region: Region::SharedDestination(region) }
    }

    /// A bulk that only describes a region (as received in metadata, before a buffer is exposed).
    pub fn descriptor(size: usize, flags: BulkFlags) -> Self {
        Self { size, flags, region: Region::Descriptor }
    }

    /// A received descriptor-only bulk: `size` bytes at `location` in a shared segment.
    pub fn located(size: usize, flags: BulkFlags, location: ShmPtr) -> Self {
        Self { size, flags, region: Region::Located(location) }
    }

    /// Size in bytes: the announced payload size, or the exposed region's length.
    pub fn size(&self) -> usize {
        self.size
    }

    /// The flags given when exposed or announced by the sender.
    pub fn flags(&self) -> BulkFlags {
        self.flags
    }

    /// True for a bulk made by [`Bulk::owned`], whose bytes go to the transport on send.
    pub fn is_owned(&self) -> bool {
        matches!(self.region, Region::Owned(_))
    }

    /// Takes the bytes of an owned bulk out, to be sent; `None` for any other bulk, or once taken.
    pub(crate) fn take_owned(&self) -> Option<Vec<u8>> {
        match &self.region {
            Region::Owned(data) => data.lock().unwrap_or_else(std::sync::PoisonError::into_inner).take(),
            _ => None,
        }
    }

    /// Puts back the bytes of an owned bulk whose send failed before they went out.
    pub(crate) fn restore_owned(&self, bytes: Vec<u8>) {
        if let Region::Owned(data) = &self.region {
            *data.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(bytes);
        }
    }

    /// The bytes to send, for a bulk exposed on the sending side from a slice (a bulk exposed from shared
    /// memory is read by copying: see [`FullPtr::to_vec`]; an owned bulk's bytes are not lent out: see
    /// [`Bulk::is_owned`]).
    pub fn source_bytes(&self) -> Option<&[u8]> {
        match &self.region {
            Region::Source(data) => Some(data),
            _ => None,
        }
    }

    /// The shared-memory region to send, for a bulk exposed on the sending side from shared memory.
    pub(crate) fn source_region(&self) -> Option<&FullPtr> {
        match &self.region {
            Region::SharedSource(region) => Some(region),
            _ => None,
        }
    }

    /// Where the bytes lie in shared memory: for a bulk exposed from shared memory, and for a received
    /// descriptor-only bulk (resolve it with [`ShmPtr::resolve`] to read it in place).
    pub fn location(&self) -> Option<ShmPtr> {
        match &self.region {
            Region::Located(location) => Some(location.clone()),
            Region::SharedSource(region) | Region::SharedDestination(region) => Some(region.shm_ptr()),
            _ => None,
        }
    }

    /// How many bytes the bulk can receive, for a bulk exposed on the receiving side.
    pub fn capacity(&self) -> Option<usize> {
        match &self.region {
            Region::Destination(buffer) => Some(buffer.len()),
            Region::SharedDestination(region) => Some(region.len()),
            _ => None,
        }
    }

    /// Writes received bytes into the exposed buffer or region.
    pub fn write_received(&mut self, data: &[u8]) -> Result<()> {
        let too_small = self.too_small(data.len());
        match &mut self.region {
            Region::Destination(buffer) => {
                buffer.get_mut(..data.len()).ok_or(too_small)?.copy_from_slice(data);
                Ok(())
            }
            Region::SharedDestination(region) => region.write(0, data),
            _ => Err(Self::not_exposed()),
        }
    }

    /// Copies a received region of a peer's segment straight into the exposed buffer or region.
    pub fn write_received_from(&mut self, source: &PeerRegion) -> Result<()> {
        let too_small = self.too_small(source.len());
        match &mut self.region {
            Region::Destination(buffer) => source.read(0, buffer.get_mut(..source.len()).ok_or(too_small)?),
            Region::SharedDestination(region) => region.write_from_peer(0, source),
            _ => Err(Self::not_exposed()),
        }
    }

    /// The error for `needed` bytes that do not fit the exposed buffer.
    fn too_small(&self, needed: usize) -> Error {
        Error::BufferTooSmall { index: 0, needed: needed as u64, exposed: self.capacity().unwrap_or(0) }
    }

    fn not_exposed() -> Error {
        Error::InvalidArgument("bulk was not exposed for receiving".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposing_records_size_and_region() {
        let data = [1u8, 2, 3];
        let bulk = Bulk::source(&data, BulkFlags::XFER);
        assert_eq!((bulk.size(), bulk.flags()), (3, BulkFlags::XFER));
        assert_eq!(bulk.source_bytes(), Some(&data[..]));

        let mut buffer = [0u8; 5];
        let mut bulk = Bulk::destination(&mut buffer, BulkFlags::NONE);
        assert_eq!((bulk.size(), bulk.capacity()), (5, Some(5)));
        bulk.write_received(&[9, 8]).unwrap();
        assert!(matches!(bulk.write_received(&[0; 6]), Err(Error::BufferTooSmall { .. })));
        assert_eq!(buffer[..2], [9, 8]);

        let mut descriptor = Bulk::descriptor(7, BulkFlags(1 << 16));
        assert!(descriptor.source_bytes().is_none() && descriptor.capacity().is_none());
        assert!(descriptor.write_received(b"x").is_err());
        assert!(descriptor.flags().contains(BulkFlags(1 << 16)));
    }
}
