//! [`FullPtr`]: a bounds-checked region of a mapped segment, read and written by copying. Reading in
//! place, the one `unsafe` method ([`FullPtr::as_slice`]), lives in `mapping.rs` with the other unsafe code.

#![forbid(unsafe_code)]

use std::sync::atomic::{AtomicU32, AtomicU64};

use super::{PeerRegion, Segment, ShmError, ShmPtr};
use crate::error::Result;

/// The most a copy between two segments holds in its buffer at once.
const COPY_CHUNK: usize = 1 << 20;

/// A region of a mapped segment: its location in this process and its [`ShmPtr`] (the Rust
/// `hipc::FullPtr`, with the length it covers). Every access is bounds-checked, and atomic word by word,
/// so threads copying into and out of the same bytes never race.
///
/// A mapping reads the segment's memory directly: if another process truncates the segment's file, the
/// next access raises SIGBUS. Map your own segments (and those of processes you trust); to read a region
/// a peer names, use [`ShmPtr::open_allocation`], which reads through the file and turns such tricks into
/// errors.
#[derive(Clone)]
pub struct FullPtr {
    pub(super) segment: Segment,
    pub(super) offset: usize,
    pub(super) len: usize,
}

impl FullPtr {
    /// The region of `len` bytes at `offset` in `segment`; the caller has checked that it lies inside.
    pub(super) fn new(segment: Segment, offset: usize, len: usize) -> Self {
        Self { segment, offset, len }
    }

    /// The region's pointer, to send to other processes.
    pub fn shm_ptr(&self) -> ShmPtr {
        ShmPtr { segment: self.segment.name().to_owned(), offset: self.offset as u64 }
    }

    /// The region's length.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True for a zero-length region.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The segment the region lies in.
    pub fn segment(&self) -> &Segment {
        &self.segment
    }

    /// A copy of the whole region. Safe whatever other processes do: a concurrent writer can only make
    /// the copy a mix of old and new bytes.
    pub fn to_vec(&self) -> Vec<u8> {
        let mut copy = vec![0; self.len];
        self.segment.inner.mapping.copy_out(self.offset, &mut copy);
        copy
    }

    /// Copies `data` into the region at `at`; fails if it would run past the region's end.
    pub fn write(&self, at: usize, data: &[u8]) -> Result<()> {
        self.check_range(at, data.len())?;
        self.segment.inner.mapping.copy_in(self.offset + at, data);
        Ok(())
    }

    /// Copies the whole of `source`, a region of a peer's segment, into this region at `at`, through a
    /// bounded buffer; fails if it would run past this region's end or `source` cannot be read.
    pub fn write_from_peer(&self, at: usize, source: &PeerRegion) -> Result<()> {
        self.check_range(at, source.len())?;
        let mut buffer = vec![0; source.len().min(COPY_CHUNK)];
        for start in (0..source.len()).step_by(COPY_CHUNK) {
            let piece = &mut buffer[..COPY_CHUNK.min(source.len() - start)];
            source.read(start, piece)?;
            self.segment.inner.mapping.copy_in(self.offset + at + start, piece);
        }
        Ok(())
    }

    /// Copies bytes from the region at `at` into `out`; fails if it would run past the region's end.
    pub fn read(&self, at: usize, out: &mut [u8]) -> Result<()> {
        self.check_range(at, out.len())?;
        self.segment.inner.mapping.copy_out(self.offset + at, out);
        Ok(())
    }

    /// The 4-byte word at `at` in the region, as an atomic shared with every process mapping the segment
    /// (a futex word, a counter). `at` must be 4-byte aligned in the segment.
    pub(crate) fn atomic_u32(&self, at: usize) -> Result<&AtomicU32> {
        self.check_range(at, 4)?;
        Ok(self.segment.inner.mapping.lock_word(self.offset + at))
    }

    /// The 8-byte word at `at` in the region, as an atomic; `at` must be 8-byte aligned in the segment.
    pub(crate) fn atomic_u64(&self, at: usize) -> Result<&AtomicU64> {
        self.check_range(at, 8)?;
        Ok(self.segment.inner.mapping.word(self.offset + at))
    }

    fn check_range(&self, at: usize, len: usize) -> Result<()> {
        if at.checked_add(len).is_some_and(|end| end <= self.len) {
            return Ok(());
        }
        Err(ShmError::OutOfBounds {
            segment: self.segment.name().to_owned(),
            offset: (self.offset as u64).saturating_add(at as u64),
            len: len as u64,
            start: self.offset as u64,
            end: (self.offset + self.len) as u64,
        }
        .into())
    }
}

impl std::fmt::Debug for FullPtr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FullPtr").field("ptr", &self.shm_ptr()).field("len", &self.len).finish()
    }
}
