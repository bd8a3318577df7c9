//! [`Bulk`]: one exposed memory region of a message, with its size and flags.

/// Flags carried with each bulk. Bits 0 to 15 are Lightbeam's, bits 16 to 31 are free for applications.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct BulkFlags(pub u32);

impl BulkFlags {
    /// No flags.
    pub const NONE: Self = Self(0);
    /// The payload crosses the socket (the default behaviour; kept for parity with the C++ `BULK_XFER`).
    pub const XFER: Self = Self(1);
    /// Only the descriptor crosses the socket (the C++ `BULK_EXPOSE`); reserved for shared-memory bulks.
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
    /// Only a descriptor: what `recv_metadata` fills in before buffers are exposed.
    #[default]
    Descriptor,
    /// Bytes to send.
    Source(&'a [u8]),
    /// A buffer to receive into.
    Destination(&'a mut [u8]),
}

/// A memory region taking part in a message: its size, its flags and (when exposed) the memory itself.
///
/// Only the size and the flags cross the wire. A `Bulk<'a>` borrows what it exposes, so the borrow checker
/// keeps the memory alive until the send or receive that uses it has returned.
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

    /// A bulk that receives into `buffer`.
    pub fn destination(buffer: &'a mut [u8], flags: BulkFlags) -> Self {
        Self { size: buffer.len(), flags, region: Region::Destination(buffer) }
    }

    /// A bulk that only describes a region (as received in metadata, before a buffer is exposed).
    pub fn descriptor(size: usize, flags: BulkFlags) -> Self {
        Self { size, flags, region: Region::Descriptor }
    }

    /// Size in bytes: the announced payload size, or the exposed region's length.
    pub fn size(&self) -> usize {
        self.size
    }

    /// The flags given when exposed or announced by the sender.
    pub fn flags(&self) -> BulkFlags {
        self.flags
    }

    /// The bytes to send, for a bulk exposed from a slice on the sending side.
    pub fn source_bytes(&self) -> Option<&[u8]> {
        match &self.region {
            Region::Source(data) => Some(data),
            _ => None,
        }
    }

    /// The receive buffer, for a bulk exposed from a mutable slice on the receiving side.
    pub fn destination_mut(&mut self) -> Option<&mut [u8]> {
        match &mut self.region {
            Region::Destination(buffer) => Some(buffer),
            _ => None,
        }
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
        assert_eq!(bulk.size(), 5);
        bulk.destination_mut().unwrap()[0] = 9;
        assert_eq!(buffer[0], 9);

        let mut descriptor = Bulk::descriptor(7, BulkFlags(1 << 16));
        assert!(descriptor.source_bytes().is_none() && descriptor.destination_mut().is_none());
        assert!(descriptor.flags().contains(BulkFlags(1 << 16)));
    }
}
