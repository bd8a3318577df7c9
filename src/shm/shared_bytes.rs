//! Read-only bytes in memory that every process of a node can map: one copy, however many processes
//! read it.
//!
//! [`SharedBytesMut`] is an anonymous memory file (`memfd`) mapped writable by the one process that
//! fills it; from its creation the file is sealed against resizing and against every write but through
//! that mapping. [`SharedBytesMut::freeze`] gives up the mapping and seals the file, for good and for
//! every process, against writes; the result, [`SharedBytes`], is a read-only view that other
//! processes of the node open from the holder's descriptor ([`SharedBytes::open_from`], which refuses
//! a file without the seals), so reading it in place is sound in safe Rust. The kernel frees the memory
//! when the last process holding a view drops it or ends, killed or not: a view is a mapping (and, in
//! the process that made it, the descriptor), nothing has a name on the file system, and nothing is
//! left to clean up.

#![forbid(unsafe_code)]

use std::fmt;
use std::fs::File;
use std::ops::{Deref, DerefMut};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::sync::Arc;

use super::mapping::{create_memory_file, map_sealed, read_only_seals};
use crate::error::{Result, ShmError};

/// What another process of the node needs to open a [`SharedBytes`]: the holder's pid, the descriptor
/// number there, and the file's inode, which the opener checks so that a descriptor number reused for
/// another file (or a pid reused by another process) is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SharedBytesDescriptor {
    /// The process holding the file open.
    pub pid: u32,
    /// The file's descriptor number in that process.
    pub fd: i32,
    /// The file's inode number.
    pub inode: u64,
    /// The file's length in bytes.
    pub len: u64,
}

impl SharedBytesDescriptor {
    /// The length of [`SharedBytesDescriptor::encode`]'s bytes.
    pub const ENCODED_LEN: usize = 24;

    /// The descriptor as 24 little-endian bytes.
    pub fn encode(&self) -> [u8; Self::ENCODED_LEN] {
        let mut bytes = [0; Self::ENCODED_LEN];
        bytes[..4].copy_from_slice(&self.pid.to_le_bytes());
        bytes[4..8].copy_from_slice(&self.fd.to_le_bytes());
        bytes[8..16].copy_from_slice(&self.inode.to_le_bytes());
        bytes[16..].copy_from_slice(&self.len.to_le_bytes());
        bytes
    }

    /// Reads [`SharedBytesDescriptor::encode`]'s bytes; `None` when they are not 24.
    pub fn decode(bytes: &[u8]) -> Option<Self> {
        if bytes.len() != Self::ENCODED_LEN {
            return None;
        }
        Some(Self {
            pid: u32::from_le_bytes(bytes[0..4].try_into().ok()?),
            fd: i32::from_le_bytes(bytes[4..8].try_into().ok()?),
            inode: u64::from_le_bytes(bytes[8..16].try_into().ok()?),
            len: u64::from_le_bytes(bytes[16..24].try_into().ok()?),
        })
    }
}

/// Bytes in a memory file of this node that this process alone can write, until
/// [`SharedBytesMut::freeze`] publishes them read-only. Dereferences to `[u8]`.
pub struct SharedBytesMut {
    file: File,
    map: Option<memmap2::MmapMut>,
}

impl SharedBytesMut {
    /// `len` zeroed bytes in a new memory file, their memory reserved now, so that no later write
    /// can find it missing. A memory file is not bounded by /dev/shm's size but by the node's memory:
    /// past the system's commit limit (strict overcommit, `vm.overcommit_memory` 2) the reservation
    /// fails with [`ShmError::NoMemory`]; a cgroup's memory limit is enforced by its OOM killer, at the
    /// reservation rather than at a later write.
    pub fn new(len: usize) -> Result<Self> {
        let (file, map) = create_memory_file(len).map_err(|e| match e.raw_os_error() {
            Some(libc::ENOSPC | libc::ENOMEM) => {
                ShmError::NoMemory { needed: len as u64, message: e.to_string() }
            }
            _ => io_error("create a memory file for", len, e),
        })?;
        Ok(Self { file, map })
    }

    /// Gives up write access and seals the file against writes and resizing, for every process; the
    /// bytes as they are now are the view's for good.
    pub fn freeze(self) -> Result<SharedBytes> {
        let Self { file, map } = self;
        let len = map.as_ref().map_or(0, |m| m.len());
        drop(map); // the kernel refuses the write seal while a writable mapping exists
        rustix::fs::fcntl_add_seals(&file, read_only_seals())
            .map_err(|e| io_error("seal", len, std::io::Error::from(e)))?;
        SharedBytes::from_sealed(file)
    }
}

impl Deref for SharedBytesMut {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        self.map.as_deref().unwrap_or_default()
    }
}

impl DerefMut for SharedBytesMut {
    fn deref_mut(&mut self) -> &mut [u8] {
        self.map.as_deref_mut().unwrap_or_default()
    }
}

impl fmt::Debug for SharedBytesMut {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SharedBytesMut").field("len", &self.len()).finish()
    }
}

struct Sealed {
    /// The file, kept open by the process that made it, for others to open; a process that opened it
    /// keeps only the mapping (one descriptor less per view held).
    file: Option<File>,
    map: Option<memmap2::Mmap>,
    inode: u64,
}

/// A read-only view of bytes sealed in a memory file of this node: one copy in memory, however many
/// processes hold a view. Cloning a view is cheap (it shares the mapping); it dereferences to `[u8]`
/// and is valid, unchanged, as long as it is held. The memory is freed when the last view on the node
/// is dropped or its process ends.
#[derive(Clone)]
pub struct SharedBytes {
    sealed: Arc<Sealed>,
}

impl SharedBytes {
    /// A sealed copy of `data` (one copy, into a new memory file).
    pub fn copy_from(data: &[u8]) -> Result<Self> {
        let mut bytes = SharedBytesMut::new(data.len())?;
        bytes.copy_from_slice(data);
        bytes.freeze()
    }

    fn from_sealed(file: File) -> Result<Self> {
        let len = file.metadata().map_or(0, |m| m.len());
        let map = map_sealed(&file).map_err(|e| io_error("map", len as usize, e))?;
        let inode = file.metadata().map_err(|e| io_error("inspect", len as usize, e))?.ino();
        Ok(Self { sealed: Arc::new(Sealed { file: Some(file), map, inode }) })
    }

    /// Names the node's copy this view reads: views of one copy (in any process of the node) have the
    /// same id, views of different copies different ones.
    pub fn id(&self) -> u64 {
        self.sealed.inode
    }

    /// What another process of this node needs to open this view with [`SharedBytes::open_from`].
    /// Only the process that made the copy (with [`SharedBytesMut::freeze`] or
    /// [`SharedBytes::copy_from`]) can describe it; a view opened from another process cannot.
    pub fn descriptor(&self) -> Result<SharedBytesDescriptor> {
        let Some(file) = &self.sealed.file else {
            let message = "a view opened from another process cannot be passed on".to_string();
            return Err(ShmError::Io {
                op: "describe",
                path: format!("shared bytes {}", self.id()),
                message,
            }
            .into());
        };
        Ok(SharedBytesDescriptor {
            pid: std::process::id(),
            fd: file.as_raw_fd(),
            inode: self.sealed.inode,
            len: self.len() as u64,
        })
    }

    /// Opens the view another process of this node described, read-only, through
    /// `/proc/<pid>/fd/<fd>` (which takes the right to read that process's `/proc` entries: any
    /// process of the same user, unless the system restricts ptrace). Refused when the file there is
    /// not the one described (a regular file of that inode and length) or lacks the read-only seals;
    /// never blocks (a descriptor naming a pipe is refused at once).
    pub fn open_from(descriptor: &SharedBytesDescriptor) -> Result<Self> {
        let path = format!("/proc/{}/fd/{}", descriptor.pid, descriptor.fd);
        let refused = |message: String| ShmError::Io { op: "open shared bytes", path: path.clone(), message };
        let file = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
            .open(&path)
            .map_err(|e| refused(e.to_string()))?;
        let metadata = file.metadata().map_err(|e| refused(e.to_string()))?;
        if !metadata.is_file() || metadata.ino() != descriptor.inode || metadata.len() != descriptor.len {
            return Err(refused(format!(
                "not the file described (inode {}, {} bytes there; {} and {} described)",
                metadata.ino(),
                metadata.len(),
                descriptor.inode,
                descriptor.len
            ))
            .into());
        }
        let map = map_sealed(&file).map_err(|e| refused(e.to_string()))?;
        Ok(Self { sealed: Arc::new(Sealed { file: None, map, inode: descriptor.inode }) })
    }
}

impl Deref for SharedBytes {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        self.sealed.map.as_deref().unwrap_or_default()
    }
}

impl AsRef<[u8]> for SharedBytes {
    fn as_ref(&self) -> &[u8] {
        self
    }
}

impl fmt::Debug for SharedBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SharedBytes").field("len", &self.len()).finish()
    }
}

fn io_error(op: &'static str, len: usize, error: std::io::Error) -> ShmError {
    ShmError::Io { op, path: format!("shared bytes of {len} bytes"), message: error.to_string() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frozen_bytes_are_sealed_shared_and_refuse_writes() {
        let mut bytes = SharedBytesMut::new(10_000).unwrap();
        assert!(bytes.iter().all(|&b| b == 0));
        bytes[..5].copy_from_slice(b"hello");
        let view = bytes.freeze().unwrap();
        assert_eq!((&view[..5], view.len()), (&b"hello"[..], 10_000));
        let descriptor = view.descriptor().unwrap();
        assert_eq!(SharedBytesDescriptor::decode(&descriptor.encode()), Some(descriptor));
        let opened = SharedBytes::open_from(&descriptor).unwrap();
        assert_eq!(&opened[..], &view[..]);
        // No process can write or resize the file any more, not even through a writable descriptor.
        let writable =
            std::fs::OpenOptions::new().write(true).open(format!("/proc/self/fd/{}", descriptor.fd));
        assert!(writable.is_err() || std::io::Write::write(&mut writable.unwrap(), b"x").is_err());
        let file = view.sealed.file.as_ref().unwrap();
        assert!(file.set_len(1).is_err() && file.set_len(20_000).is_err());
        assert_eq!(opened.id(), view.id());
        assert!(opened.descriptor().is_err(), "only the maker describes its copy");
    }

    #[test]
    fn the_memory_of_bytes_is_reserved_when_they_are_made() {
        let bytes = SharedBytesMut::new(1 << 20).unwrap();
        let blocks = bytes.file.metadata().unwrap().blocks();
        assert!(blocks * 512 >= 1 << 20, "a sparse file of {blocks} blocks");
        assert!(bytes.iter().all(|&b| b == 0));
    }

    #[test]
    fn bytes_being_filled_can_be_neither_resized_nor_written_by_anyone_else() {
        let mut bytes = SharedBytesMut::new(4096).unwrap();
        let path = format!("/proc/self/fd/{}", bytes.file.as_raw_fd());
        let other = std::fs::OpenOptions::new().read(true).write(true).open(&path).unwrap();
        assert!(other.set_len(0).is_err() && other.set_len(8192).is_err());
        assert!(std::io::Write::write(&mut &other, b"x").is_err());
        bytes[0] = 1; // its own mapping writes
        assert_eq!(bytes.freeze().unwrap()[0], 1);
    }

    #[test]
    fn a_descriptor_naming_a_pipe_is_refused_without_blocking() {
        // A pipe with no writer: a blocking open of its read end would wait for one for ever.
        let (reader, writer) = std::io::pipe().unwrap();
        drop(writer);
        let pipe =
            SharedBytesDescriptor { pid: std::process::id(), fd: reader.as_raw_fd(), inode: 0, len: 0 };
        let refused = SharedBytes::open_from(&pipe).unwrap_err().to_string();
        assert!(refused.contains("not the file described"), "{refused}");
    }

    #[test]
    fn opening_refuses_another_file_an_unsealed_one_and_a_bad_descriptor() {
        let view = SharedBytes::copy_from(b"data").unwrap();
        let descriptor = view.descriptor().unwrap();
        let wrong_inode = SharedBytesDescriptor { inode: descriptor.inode + 1, ..descriptor };
        assert!(SharedBytes::open_from(&wrong_inode).is_err());
        let wrong_len = SharedBytesDescriptor { len: 5, ..descriptor };
        assert!(SharedBytes::open_from(&wrong_len).is_err());
        assert!(SharedBytes::open_from(&SharedBytesDescriptor { fd: -1, ..descriptor }).is_err());
        assert!(SharedBytesDescriptor::decode(&[0; 23]).is_none());
        // A memory file not yet frozen is refused: it is still writable.
        let unsealed = SharedBytesMut::new(4).unwrap();
        let file = &unsealed.file;
        let metadata = file.metadata().unwrap();
        let open = SharedBytesDescriptor {
            pid: std::process::id(),
            fd: file.as_raw_fd(),
            inode: metadata.ino(),
            len: metadata.len(),
        };
        let refused = SharedBytes::open_from(&open).unwrap_err().to_string();
        assert!(refused.contains("not sealed"), "{refused}");
    }

    #[test]
    fn empty_bytes_are_a_view_too() {
        let view = SharedBytes::copy_from(&[]).unwrap();
        assert!(view.is_empty());
        let opened = SharedBytes::open_from(&view.descriptor().unwrap()).unwrap();
        assert!(opened.is_empty());
    }
}
