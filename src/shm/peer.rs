//! [`PeerRegion`]: an allocation in a segment another process owns, checked and read through the
//! segment's file, never mapped.
//!
//! A server that resolves a peer's descriptor-only bulk must survive whatever the peer does to its own
//! segment: forge block headers (the walk checks every size it reads), hold the allocator's lock (the walk
//! takes none), truncate the file after the message arrived (a read then comes up short: an error, where a
//! mapping would raise SIGBUS and kill the process), or put a symbolic link (or a second hard link) under
//! an allowed name pointing at a segment the server does not allow (the file is opened without following
//! links, and must be a regular file with one link). The file must belong to this process's user, and a
//! FIFO under the name is refused without blocking.

#![forbid(unsafe_code)]

use std::fs::File;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::sync::Arc;

use super::alloc::{self, Headers};
use super::{check_name, open_trusted, path_of, ShmError, ShmPtr};
use crate::error::Result;

/// An open segment file, read with `pread`.
#[derive(Debug)]
struct SegmentFile {
    file: File,
    size: usize,
    path: String,
}

impl SegmentFile {
    /// Opens segment `name` for reading as [`Segment::open`](super::Segment::open) does (never blocking,
    /// not through a symbolic link, only a regular file of this process's user), and only a file with a
    /// single link, holding a formatted segment of the size its header says.
    fn open(name: &str) -> Result<Self> {
        check_name(name)?;
        let path = path_of(name);
        let (file, metadata) = open_trusted(&path, name, false)?;
        let display = path.display().to_string();
        if metadata.nlink() != 1 {
            return Err(ShmError::Io {
                op: "open",
                path: display,
                message: "not a segment of its own: it has another link".into(),
            }
            .into());
        }
        let size = usize::try_from(metadata.len()).map_err(|_| ShmError::NotASegment)?;
        let segment = Self { file, size, path: display };
        let mut header = [0u8; alloc::SEGMENT_HEADER];
        segment.read_at(0, &mut header).map_err(|_| ShmError::NotASegment)?;
        if !alloc::header_is_formatted(&header, size) {
            return Err(ShmError::NotASegment.into());
        }
        Ok(segment)
    }

    /// Fills `out` from the file at `at`; a file shorter than that (truncated by its owner) is an error.
    fn read_at(&self, at: u64, out: &mut [u8]) -> Result<(), ShmError> {
        self.file.read_exact_at(out, at).map_err(|e| ShmError::Io {
            op: "read",
            path: self.path.clone(),
            message: format!("{} bytes at offset {at}: {e} (truncated by its owner?)", out.len()),
        })
    }
}

impl Headers for SegmentFile {
    fn size(&self) -> usize {
        self.size
    }

    fn block_header(&self, at: usize) -> Result<(u32, u32, u64), ShmError> {
        let mut bytes = [0u8; 16];
        self.read_at(at as u64, &mut bytes)?;
        Ok(alloc::parse_block_header(&bytes))
    }
}

/// `len` bytes of one live allocation in a segment another process owns, read through the segment's
/// file (see the module docs for what that protects from). Cheap to clone.
#[derive(Debug, Clone)]
pub struct PeerRegion {
    file: Arc<SegmentFile>,
    pointer: ShmPtr,
    len: usize,
}

impl PeerRegion {
    /// The region's pointer.
    pub fn shm_ptr(&self) -> &ShmPtr {
        &self.pointer
    }

    /// The region's length.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True for a zero-length region.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Copies bytes of the region from `at` into `out`. Fails if that runs past the region's end, or the
    /// owner truncated the segment meanwhile; bytes its owner writes meanwhile may arrive old or new.
    pub fn read(&self, at: usize, out: &mut [u8]) -> Result<()> {
        if at.checked_add(out.len()).is_none_or(|end| end > self.len) {
            return Err(ShmError::OutOfBounds {
                segment: self.pointer.segment.clone(),
                offset: self.pointer.offset.saturating_add(at as u64),
                len: out.len() as u64,
                start: self.pointer.offset,
                end: self.pointer.offset.saturating_add(self.len as u64),
            }
            .into());
        }
        Ok(self.file.read_at(self.pointer.offset + at as u64, out)?)
    }

    /// A copy of the whole region.
    pub fn to_vec(&self) -> Result<Vec<u8>> {
        let mut copy = vec![0; self.len];
        self.read(0, &mut copy)?;
        Ok(copy)
    }
}

impl ShmPtr {
    /// The `len` bytes at this pointer in a segment another process may own, checked to lie wholly inside
    /// one live allocation, to be read through the segment's file without mapping it: the way to take a
    /// pointer from a peer you do not trust (a server receiving a descriptor-only bulk does this).
    pub fn open_allocation(&self, len: usize) -> Result<PeerRegion> {
        let file = SegmentFile::open(&self.segment)?;
        let refused = || ShmError::NotInAllocation {
            segment: self.segment.clone(),
            offset: self.offset,
            len: len as u64,
        };
        let offset = usize::try_from(self.offset).map_err(|_| refused())?;
        if !alloc::in_allocation(&file, offset, len)? {
            return Err(refused().into());
        }
        Ok(PeerRegion { file: Arc::new(file), pointer: self.clone(), len })
    }
}
