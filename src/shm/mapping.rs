//! The raw accesses of a segment's mapping: every `unsafe` block of the crate lives here, each with the
//! check that makes it sound, so that the rest of `shm` (and of the crate) is safe code.

#![allow(unsafe_code)]

use std::fs::File;
use std::sync::atomic::AtomicU32;

use super::FullPtr;

/// A mapping of a segment's file, accessed only through raw pointers: several processes write the same
/// memory, so safe code holds no Rust reference to it (the lock word aside, which is only used atomically);
/// only the `unsafe` [`FullPtr::as_slice`] lends one out, under its caller's promise.
pub(super) struct Mapping {
    map: memmap2::MmapRaw,
}

impl Mapping {
    pub(super) fn new(file: &File) -> std::io::Result<Self> {
        Ok(Self { map: memmap2::MmapRaw::map_raw(file)? })
    }

    pub(super) fn len(&self) -> usize {
        self.map.len()
    }

    /// The address of `at`, after checking that `len` bytes from there lie in the mapping.
    fn address(&self, at: usize, len: usize) -> *mut u8 {
        assert!(at.checked_add(len).is_some_and(|end| end <= self.len()), "access outside the mapping");
        // SAFETY: `at + len <= len()`, so the result stays inside the mapped range (or one past its end
        // for len = 0), as `add` requires.
        unsafe { self.map.as_mut_ptr().add(at) }
    }

    pub(super) fn read_u64(&self, at: usize) -> u64 {
        // SAFETY: `address` checked the 8 bytes lie in the live mapping; read_unaligned needs no alignment.
        unsafe { self.address(at, 8).cast::<u64>().read_unaligned() }
    }

    pub(super) fn read_u32(&self, at: usize) -> u32 {
        // SAFETY: as in `read_u64`, for 4 bytes.
        unsafe { self.address(at, 4).cast::<u32>().read_unaligned() }
    }

    pub(super) fn write_u64(&self, at: usize, value: u64) {
        // SAFETY: as in `read_u64`. Other processes may read these bytes meanwhile, but only through raw
        // pointers: the allocator writes block headers under the segment lock, and the segment header
        // while formatting, before the magic marks the segment ready.
        unsafe { self.address(at, 8).cast::<u64>().write_unaligned(value) }
    }

    pub(super) fn write_u32(&self, at: usize, value: u32) {
        // SAFETY: as in `write_u64`, for 4 bytes.
        unsafe { self.address(at, 4).cast::<u32>().write_unaligned(value) }
    }

    /// The atomic lock word at `at`, which must be 4-byte aligned.
    pub(super) fn lock_word(&self, at: usize) -> &AtomicU32 {
        let address = self.address(at, 4);
        assert_eq!(address as usize % 4, 0, "lock word misaligned");
        // SAFETY: 4 aligned bytes inside the mapping, which lives as long as `self`; every process touches
        // them only atomically, so sharing them as an AtomicU32 is sound.
        unsafe { &*address.cast::<AtomicU32>() }
    }

    /// Copies `data` into the mapping at `at`. `data` may lie in this very mapping (memmove semantics).
    pub(super) fn copy_in(&self, at: usize, data: &[u8]) {
        let target = self.address(at, data.len());
        // SAFETY: `address` checked that the target range lies in the live mapping and `data` is a valid
        // slice. The two ranges may overlap, which `ptr::copy` allows. Safe code holds no reference into
        // the mapping (`FullPtr::as_slice` is `unsafe` and its caller promises no writer while it lives).
        unsafe { std::ptr::copy(data.as_ptr(), target, data.len()) }
    }

    /// Copies `out.len()` bytes from the mapping at `at` into `out`.
    pub(super) fn copy_out(&self, at: usize, out: &mut [u8]) {
        let source = self.address(at, out.len());
        // SAFETY: as in `copy_in`, in the other direction: `address` checked the source range, `out` is a
        // valid unique slice, and `ptr::copy` allows the ranges to overlap. Another process writing the
        // source meanwhile can tear the bytes copied, but no Rust reference to them exists.
        unsafe { std::ptr::copy(source, out.as_mut_ptr(), out.len()) }
    }

    /// Copies `len` bytes from `source` at `from` into this mapping at `at`. The mappings may be the same
    /// and the ranges may overlap (memmove semantics).
    pub(super) fn copy_from(&self, at: usize, source: &Self, from: usize, len: usize) {
        let (target, source) = (self.address(at, len), source.address(from, len));
        // SAFETY: `address` checked both ranges against their live mappings; `ptr::copy` allows them to
        // overlap, and no Rust reference to either range exists in safe code.
        unsafe { std::ptr::copy(source, target, len) }
    }

    /// The bytes at `at..at + len` as a slice that lives as long as `self`.
    ///
    /// # Safety
    ///
    /// No thread or process may write those bytes while the returned borrow lives.
    pub(super) unsafe fn slice(&self, at: usize, len: usize) -> &[u8] {
        let start = self.address(at, len);
        // SAFETY: the range lies in the mapping (checked by `address`), which outlives the returned
        // borrow; the caller promises that nothing writes it while the borrow lives.
        unsafe { std::slice::from_raw_parts(start, len) }
    }
}

// SAFETY: the mapping is plain memory with no thread affinity; all shared mutation goes through the
// atomic lock word or happens under the lock.
unsafe impl Send for Mapping {}
// SAFETY: as above; `&Mapping` only offers raw copies and atomic access.
unsafe impl Sync for Mapping {}

impl FullPtr {
    /// The region read in place, without a copy.
    ///
    /// # Safety
    ///
    /// While the returned borrow lives, no thread of this process and no other process may write the
    /// region: not through this `FullPtr`, a clone of it, another `FullPtr` over the same bytes, nor another
    /// process's mapping of the segment. (With Lightbeam's messages, a sender that hands a region over
    /// with [`BulkFlags::EXPOSE`] must leave it untouched until the receiver says it is done.) Use
    /// [`FullPtr::to_vec`] or [`FullPtr::read`] when that cannot be promised.
    ///
    /// [`BulkFlags::EXPOSE`]: crate::BulkFlags::EXPOSE
    pub unsafe fn as_slice(&self) -> &[u8] {
        // SAFETY: the range is the region's own, bounds-checked by `Mapping::address`; the caller
        // promises what `Mapping::slice` needs: no writer while the borrow lives.
        unsafe { self.segment.inner.mapping.slice(self.offset, self.len) }
    }
}

#[cfg(test)]
mod tests {
    use crate::shm::Segment;

    #[test]
    fn a_region_reads_in_place() {
        let segment = Segment::create(&format!("unit-in-place-{}", std::process::id()), 64 << 10).unwrap();
        let region = segment.allocate(100).unwrap();
        region.write(0, b"hello").unwrap();
        // SAFETY: no thread or process writes `region` while the slice lives.
        let in_place = unsafe { region.as_slice() };
        assert_eq!((&in_place[..5], in_place.len()), (&b"hello"[..], 100));
    }
}
