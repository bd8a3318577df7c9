//! Shared memory: named segments that several processes map, an allocator kept inside each segment, and
//! [`ShmPtr`] / [`FullPtr`], the Rust forms of `hipc::Pointer` and `hipc::FullPtr`.
//!
//! A [`ShmPtr`] (segment name and offset) means the same bytes in every process that maps the segment, so it
//! can be sent instead of the bytes: a bulk exposed from shared memory with [`BulkFlags::EXPOSE`] crosses
//! the socket as its pointer alone, and a receiver on the same node copies it into its own buffer (or
//! reads it in place with the `unsafe` [`FullPtr::as_slice`], whose contract says when that is sound).
//!
//! Every access through a pointer is bounds-checked against the segment, never memory outside the
//! mapping. A pointer from another process should be resolved with [`ShmPtr::resolve_allocation`]: it
//! names at most the payload of one live allocation, never the allocator's state or a free block.
//!
//! Segment files live in /dev/shm, where every local user can create files. No open of a segment file
//! blocks or follows a symbolic link, and a file under a segment's name that is not a regular file
//! ([`ShmError::NotAFile`]: a FIFO, a link) or not owned by this process's effective user
//! ([`ShmError::ForeignOwner`]) is refused before anything reads it; cleaning up stale segments skips
//! such files and leaves them in place. A segment's memory is reserved when it is created: when
//! /dev/shm (a tmpfs of limited size: 64 MiB in a default Docker container) has no room for it, the
//! creation fails with [`ShmError::NoSpace`] and leaves no file, where a sparse file would kill with
//! SIGBUS whichever process first touched a page past the room left.
//!
//! [`SharedBytes`] is the other way to share bytes on a node: a sealed, read-only memory file that every
//! process maps, freed by the kernel when the last holder drops it or ends.
//!
//! This is the only module with `unsafe` code, and inside it only `mapping.rs` (the raw accesses of a
//! mapping, the memory files' mappings, and [`FullPtr::as_slice`]); the other files forbid it.
//!
//! [`BulkFlags::EXPOSE`]: crate::BulkFlags::EXPOSE

// Not `forbid`: `mapping`, a child of this module, allows the unsafe code that the others forbid.
#![deny(unsafe_code)]

mod alloc;
mod mapping;
mod peer;
mod process;
mod region;
mod shared_bytes;

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::Read;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock, Weak};

use serde::{Deserialize, Serialize};

pub use crate::error::ShmError;
use crate::error::{Error, Result};
pub(crate) use mapping::read_process_exact;
use mapping::Mapping;
pub(crate) use mapping::{peer_identity, read_process_into, PeerIdentity};
pub use peer::PeerRegion;
pub(crate) use process::{lives, pid_namespace, Process};
pub use region::FullPtr;
pub use shared_bytes::{SharedBytes, SharedBytesDescriptor, SharedBytesMut};

struct Inner {
    name: String,
    path: PathBuf,
    mapping: Mapping,
    unlink_on_drop: bool,
}

impl Drop for Inner {
    fn drop(&mut self) {
        if self.unlink_on_drop {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// A named shared-memory segment mapped into this process. Cheap to clone; unmapped when the last clone is
/// dropped, and removed from the system then if this process created it (see [`Segment::create`]).
#[derive(Clone)]
pub struct Segment {
    inner: Arc<Inner>,
}

fn registry() -> &'static Mutex<HashMap<String, Weak<Inner>>> {
    static REGISTRY: OnceLock<Mutex<HashMap<String, Weak<Inner>>>> = OnceLock::new();
    REGISTRY.get_or_init(Default::default)
}

fn check_name(name: &str) -> Result<(), ShmError> {
    let valid_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
    if name.is_empty() || name.len() > 200 || !name.chars().all(valid_char) || name.starts_with('.') {
        return Err(ShmError::InvalidName(name.to_owned()));
    }
    Ok(())
}

/// Where segment `name` lives: /dev/shm on Linux, else the temporary folder.
fn path_of(name: &str) -> PathBuf {
    let dir = PathBuf::from("/dev/shm");
    let dir = if dir.is_dir() { dir } else { std::env::temp_dir() };
    dir.join(format!("lightbeam-{name}"))
}

/// The flags of every open of a segment file, on top of the access mode: the open never blocks (a FIFO
/// under a segment's name opens at once, to be refused), never follows a symbolic link in the last
/// component, and the descriptor is not inherited across `exec`.
const OPEN_FLAGS: i32 = libc::O_NONBLOCK | libc::O_NOFOLLOW | libc::O_CLOEXEC;

/// Opens the file of segment `name` at `path`, read-only unless `write`, and checks it before anything
/// reads it: a regular file owned by this process's effective user. Anything else is refused
/// ([`ShmError::NotAFile`], [`ShmError::ForeignOwner`]); a missing file is
/// [`ShmError::UnknownSegment`].
fn open_trusted(path: &Path, name: &str, write: bool) -> Result<(File, std::fs::Metadata), ShmError> {
    let not_a_file = |kind| ShmError::NotAFile { path: path.display().to_string(), kind };
    let file = OpenOptions::new().read(true).write(write).custom_flags(OPEN_FLAGS).open(path);
    let file = file.map_err(|e| match e.raw_os_error() {
        Some(libc::ENOENT) => ShmError::UnknownSegment(name.to_owned()),
        Some(libc::ELOOP) => not_a_file("symbolic link"),
        Some(libc::EISDIR) => not_a_file("directory"),
        // An open of a socket, or of a device without a driver.
        Some(libc::ENXIO) => not_a_file("socket or device"),
        _ => io_error("open", path, e),
    })?;
    let metadata = file.metadata().map_err(|e| io_error("inspect", path, e))?;
    check_trusted(path, &metadata)?;
    Ok((file, metadata))
}

/// Refuses a file that is not a regular file owned by this process's effective user.
fn check_trusted(path: &Path, metadata: &std::fs::Metadata) -> Result<(), ShmError> {
    use std::os::unix::fs::FileTypeExt;
    let kind = metadata.file_type();
    if !kind.is_file() {
        let kind = match () {
            _ if kind.is_fifo() => "FIFO",
            _ if kind.is_symlink() => "symbolic link",
            _ if kind.is_dir() => "directory",
            _ if kind.is_socket() => "socket",
            _ if kind.is_char_device() || kind.is_block_device() => "device",
            _ => "special file",
        };
        return Err(ShmError::NotAFile { path: path.display().to_string(), kind });
    }
    let ours = rustix::process::geteuid().as_raw();
    if metadata.uid() != ours {
        return Err(ShmError::ForeignOwner { path: path.display().to_string(), owner: metadata.uid(), ours });
    }
    Ok(())
}

/// Gives a new file `len` bytes, every one reserved in its file system now (`fallocate`), so that a
/// file system without room for them fails here rather than raise SIGBUS in whichever process first
/// touches a page past the room left, as a sparse file would. On a file system that cannot reserve
/// (not a tmpfs), the file is only sized. The bytes are reserved in pieces of [`RESERVE_PIECE`]: a
/// signal that interrupts a piece undoes only that piece, which is tried again, so periodic signals (a
/// profiler's timer) cannot keep a large reservation from ever ending.
pub(super) fn reserve(file: &File, len: u64) -> std::io::Result<()> {
    use rustix::fs::{fallocate, FallocateFlags};
    let mut done = 0;
    while done < len {
        let piece = (len - done).min(RESERVE_PIECE);
        match fallocate(file, FallocateFlags::empty(), done, piece) {
            Ok(()) => done += piece,
            Err(rustix::io::Errno::INTR) => {}
            Err(rustix::io::Errno::OPNOTSUPP) if done == 0 => return file.set_len(len),
            Err(error) => return Err(error.into()),
        }
    }
    Ok(())
}

/// The bytes [`reserve`] asks its file system for at a time.
const RESERVE_PIECE: u64 = 8 << 20;

/// The error for a segment `name` of `needed` bytes that its file system has no room for.
fn no_space(file: &File, path: &Path, name: &str, needed: u64) -> ShmError {
    let available = rustix::fs::fstatvfs(file).map_or(0, |fs| fs.f_bavail.saturating_mul(fs.f_frsize));
    let dir = path.parent().unwrap_or(path).display().to_string();
    ShmError::NoSpace { dir, segment: name.to_owned(), needed, available }
}

/// A segment file whose recorded creator is gone.
struct Leftover {
    creator_pid: u32,
    /// The file's device and inode, to tell it from a file created later under the same name.
    file: (u64, u64),
}

impl Leftover {
    /// The segment file at `path` if its creator is gone; `None` when there is no such file, it holds no
    /// formatted segment, or its creator lives (or cannot be told). A file that [`open_trusted`] refuses
    /// is an error, and its header is not read.
    fn at(path: &Path) -> Result<Option<Self>, ShmError> {
        let (mut file, metadata) = match open_trusted(path, "", false) {
            Ok(opened) => opened,
            Err(ShmError::UnknownSegment(_)) => return Ok(None),
            Err(refused) => return Err(refused),
        };
        let mut header = [0u8; alloc::SEGMENT_HEADER];
        if file.read_exact(&mut header).is_err() {
            return Ok(None);
        }
        let Some(creator) = alloc::creator_in(&header).filter(process::Process::is_gone) else {
            return Ok(None);
        };
        Ok(Some(Self { creator_pid: creator.pid, file: (metadata.dev(), metadata.ino()) }))
    }
}

/// The error for a `create` that found segment `name` in place: stale if its creator is gone, refused if
/// the file there is not one to trust.
fn taken(name: &str, path: &Path) -> ShmError {
    match Leftover::at(path) {
        Ok(Some(leftover)) => ShmError::Stale {
            name: name.to_owned(),
            creator_pid: leftover.creator_pid,
            path: path.display().to_string(),
        },
        Ok(None) => ShmError::Exists(name.to_owned()),
        Err(refused) => refused,
    }
}

fn io_error(op: &'static str, path: &std::path::Path, err: std::io::Error) -> ShmError {
    ShmError::Io { op, path: path.display().to_string(), message: err.to_string() }
}

impl Segment {
    /// Creates segment `name` of `size` bytes and maps it. The segment is removed from the system when the
    /// last handle in this process is dropped; processes that mapped it keep their mapping until then.
    ///
    /// Its memory is reserved now: when /dev/shm has no room for `size` bytes the creation fails with
    /// [`ShmError::NoSpace`], and on every failure no file is left behind. A name held by a file that
    /// is not a segment of this process's user is refused ([`ShmError::NotAFile`],
    /// [`ShmError::ForeignOwner`]), and that file is left alone.
    pub fn create(name: &str, size: usize) -> Result<Self> {
        check_name(name)?;
        let path = path_of(name);
        // Owner-only (0600): other users can neither read what a segment carries nor write its queues.
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(OPEN_FLAGS)
            .open(&path);
        let file = file.map_err(|e| {
            if e.kind() == std::io::ErrorKind::AlreadyExists {
                taken(name, &path)
            } else {
                io_error("create", &path, e)
            }
        })?;
        // From here on the file is this call's: every failure removes it.
        let segment = reserve(&file, size as u64)
            .map_err(|e| match e.raw_os_error() {
                Some(libc::ENOSPC) => no_space(&file, &path, name, size as u64),
                _ => io_error("reserve", &path, e),
            })
            .map_err(Error::from)
            .and_then(|()| Self::map(name, path.clone(), &file, true));
        if segment.is_err() {
            let _ = std::fs::remove_file(&path);
        }
        segment
    }

    fn map(name: &str, path: PathBuf, file: &File, create: bool) -> Result<Self> {
        let mapping = Mapping::new(file).map_err(|e| io_error("map", &path, e))?;
        if create {
            alloc::format(&mapping, process::Process::current())?;
        } else {
            alloc::check(&mapping)?;
        }
        let inner = Arc::new(Inner { name: name.to_owned(), path, mapping, unlink_on_drop: create });
        crate::sync::lock(registry()).insert(name.to_owned(), Arc::downgrade(&inner));
        Ok(Self { inner })
    }

    /// Like [`Segment::create`], but a stale segment of that name (its creator is gone: see
    /// [`ShmError::Stale`]) is removed first. A segment whose creator lives is never touched.
    pub fn create_reclaiming(name: &str, size: usize) -> Result<Self> {
        match Self::create(name, size) {
            Err(Error::Shm(ShmError::Stale { .. })) => {
                Self::reclaim_stale(name)?;
                Self::create(name, size)
            }
            other => other,
        }
    }

    /// Removes segment `name` if the process that created it is gone (it was killed, or ended without
    /// dropping its last handle); returns whether it removed it. A segment whose creator lives, or whose
    /// creator cannot be told, is left alone, and so is a file under that name that is not a regular file
    /// of this process's user (its header is not even read). Processes that still map a removed segment
    /// keep their mapping, as after [`Segment::unlink`].
    pub fn reclaim_stale(name: &str) -> Result<bool> {
        check_name(name)?;
        let path = path_of(name);
        let leftover = match Leftover::at(&path) {
            Ok(Some(leftover)) => leftover,
            Ok(None) => return Ok(false),
            Err(refused) => {
                log::debug!("lightbeam: not reclaiming {name:?}: {refused}");
                return Ok(false);
            }
        };
        // Remove the file inspected, not one created meanwhile under the same name.
        if std::fs::symlink_metadata(&path).ok().map(|m| (m.dev(), m.ino())) != Some(leftover.file) {
            return Ok(false);
        }
        match std::fs::remove_file(&path) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(io_error("remove", &path, e).into()),
        }
    }

    /// Removes every stale segment (as [`Segment::reclaim_stale`]) whose name `matches` says is one to
    /// look at; returns how many it removed. Segments of living creators are left alone, and so are files
    /// that are not segments of this process's user; a file that cannot be removed is skipped, so the
    /// others are still looked at.
    pub fn reclaim_stale_where(matches: impl Fn(&str) -> bool) -> Result<usize> {
        let dir = path_of("x").parent().map(Path::to_path_buf).unwrap_or_default();
        let Ok(entries) = std::fs::read_dir(&dir) else { return Ok(0) };
        let names = entries.filter_map(|entry| {
            let file = entry.ok()?.file_name().into_string().ok()?;
            Some(file.strip_prefix("lightbeam-")?.to_owned())
        });
        let mut removed = 0;
        for name in names.filter(|name| check_name(name).is_ok() && matches(name)) {
            match Self::reclaim_stale(&name) {
                Ok(gone) => removed += usize::from(gone),
                Err(error) => log::debug!("lightbeam: not reclaiming {name:?}: {error}"),
            }
        }
        Ok(removed)
    }

    /// Maps the existing segment `name`, created by this or another process of this node and of this
    /// process's effective user. Refused when the file under that name is not a regular file (a
    /// symbolic link, a FIFO: [`ShmError::NotAFile`]) or belongs to another user
    /// ([`ShmError::ForeignOwner`]); the open never blocks.
    pub fn open(name: &str) -> Result<Self> {
        check_name(name)?;
        let path = path_of(name);
        let (file, _) = open_trusted(&path, name, true)?;
        Self::map(name, path, &file, false)
    }

    /// This process's mapping of `name`, mapping it first if needed.
    pub fn lookup(name: &str) -> Result<Self> {
        let known = crate::sync::lock(registry()).get(name).and_then(Weak::upgrade);
        match known {
            Some(inner) => Ok(Self { inner }),
            None => Self::open(name),
        }
    }

    /// Removes segment `name` from the system. Processes that map it keep their mapping; new `open`s fail.
    pub fn unlink(name: &str) -> Result<()> {
        check_name(name)?;
        let path = path_of(name);
        std::fs::remove_file(&path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => ShmError::UnknownSegment(name.to_owned()).into(),
            _ => Error::from(io_error("unlink", &path, e)),
        })
    }

    /// The segment's name.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// The segment's size in bytes.
    pub fn size(&self) -> usize {
        self.inner.mapping.len()
    }

    /// Allocates `len` bytes, 64-byte aligned; the region belongs to the caller until [`Segment::free`].
    pub fn allocate(&self, len: usize) -> Result<FullPtr> {
        let offset = alloc::allocate(&self.inner.mapping, len)?;
        Ok(FullPtr::new(self.clone(), offset, len))
    }

    /// Returns an allocation to the segment. A pointer of another segment, an offset that is no
    /// allocation, and a second free of the same offset are errors.
    pub fn free(&self, pointer: &ShmPtr) -> Result<()> {
        self.check_own(pointer)?;
        let offset = usize::try_from(pointer.offset)
            .map_err(|_| ShmError::NotAnAllocation { offset: pointer.offset })?;
        Ok(alloc::free(&self.inner.mapping, offset)?)
    }

    /// Bytes allocated and bytes free (payloads only).
    pub fn usage(&self) -> Result<(usize, usize)> {
        Ok(alloc::usage(&self.inner.mapping)?)
    }

    /// The `len` bytes at `pointer`, checked to lie inside this segment's payload area: the blocks, their
    /// headers included. For a pointer from another process, use [`Segment::resolve_allocation`].
    pub fn resolve(&self, pointer: &ShmPtr, len: usize) -> Result<FullPtr> {
        self.check_own(pointer)?;
        let end = self.size() as u64;
        let start = alloc::SEGMENT_HEADER as u64;
        let inside =
            pointer.offset >= start && pointer.offset.checked_add(len as u64).is_some_and(|e| e <= end);
        if !inside {
            return Err(ShmError::OutOfBounds {
                segment: self.name().to_owned(),
                offset: pointer.offset,
                len: len as u64,
                start,
                end,
            }
            .into());
        }
        Ok(FullPtr::new(self.clone(), pointer.offset as usize, len))
    }

    /// The `len` bytes at `pointer`, checked to lie wholly inside the payload of one live allocation at
    /// the time of the call: never the segment's header, a block header, a free block, or two allocations.
    /// This is the check for a pointer that came from another process: it can name only memory that some
    /// process allocated, never the allocator's own state.
    pub fn resolve_allocation(&self, pointer: &ShmPtr, len: usize) -> Result<FullPtr> {
        self.check_own(pointer)?;
        let refused = || ShmError::NotInAllocation {
            segment: self.name().to_owned(),
            offset: pointer.offset,
            len: len as u64,
        };
        let offset = usize::try_from(pointer.offset).map_err(|_| refused())?;
        if !alloc::in_allocation(&self.inner.mapping, offset, len)? {
            return Err(refused().into());
        }
        Ok(FullPtr::new(self.clone(), offset, len))
    }

    fn check_own(&self, pointer: &ShmPtr) -> Result<(), ShmError> {
        if pointer.segment != self.name() {
            return Err(ShmError::ForeignPointer {
                pointer: pointer.segment.clone(),
                segment: self.name().to_owned(),
            });
        }
        Ok(())
    }
}

impl std::fmt::Debug for Segment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Segment").field("name", &self.name()).field("size", &self.size()).finish()
    }
}

/// A location in a named segment: meaningful in every process that maps it (the Rust `hipc::Pointer`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ShmPtr {
    /// The segment's name.
    pub segment: String,
    /// Byte offset from the segment's start.
    pub offset: u64,
}

impl ShmPtr {
    /// The `len` bytes at this pointer in this process's mapping (mapping the segment if needed), checked
    /// to lie inside the segment.
    pub fn resolve(&self, len: usize) -> Result<FullPtr> {
        Segment::lookup(&self.segment)?.resolve(self, len)
    }

    /// The `len` bytes at this pointer in this process's mapping (mapping the segment if needed), checked
    /// to lie inside one live allocation: see [`Segment::resolve_allocation`].
    pub fn resolve_allocation(&self, len: usize) -> Result<FullPtr> {
        Segment::lookup(&self.segment)?.resolve_allocation(self, len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn unique(name: &str) -> String {
        format!("unit-{name}-{}", std::process::id())
    }

    #[test]
    fn allocate_write_read_free_and_reuse() {
        let segment = Segment::create(&unique("basic"), 1 << 20).unwrap();
        let a = segment.allocate(100).unwrap();
        let b = segment.allocate(5000).unwrap();
        assert_eq!(a.shm_ptr().offset % alloc::ALIGN as u64, 0);
        a.write(0, b"hello").unwrap();
        let mut out = [0u8; 5];
        a.read(0, &mut out).unwrap();
        assert_eq!(&out, b"hello");
        assert_eq!(&a.to_vec()[..5], b"hello");
        segment.free(&a.shm_ptr()).unwrap();
        segment.free(&b.shm_ptr()).unwrap();
        let (used, _) = segment.usage().unwrap();
        assert_eq!(used, 0, "frees merge back into one block");
        assert_eq!(segment.allocate(200_000).unwrap().shm_ptr().offset, a.shm_ptr().offset);
    }

    /// `len` bytes at `offset` of `region`, opened as a peer's region would be (through the file).
    fn peer_view(region: &FullPtr, offset: usize, len: usize) -> PeerRegion {
        let pointer = ShmPtr { offset: region.shm_ptr().offset + offset as u64, ..region.shm_ptr() };
        pointer.open_allocation(len).unwrap()
    }

    #[test]
    fn overlapping_copies_from_a_peer_region_have_memmove_semantics() {
        let segment = Segment::create(&unique("overlap"), 64 << 10).unwrap();
        let region = segment.allocate(200).unwrap();
        let original: Vec<u8> = (0..200u8).collect();
        for (from, to) in [(0, 10), (10, 0), (30, 30)] {
            region.write(0, &original).unwrap();
            region.write_from_peer(to, &peer_view(&region, from, 50)).unwrap();
            let mut expected = original.clone();
            expected.copy_within(from..from + 50, to);
            assert_eq!(region.to_vec(), expected, "50 bytes from {from} to {to}");
        }
        let past_the_end = region.write_from_peer(160, &peer_view(&region, 0, 50));
        assert!(matches!(past_the_end, Err(Error::Shm(ShmError::OutOfBounds { .. }))));
    }

    #[test]
    fn copies_at_every_alignment_and_length_are_exact() {
        let segment = Segment::create(&unique("align"), 64 << 10).unwrap();
        let region = segment.allocate(256).unwrap();
        let data: Vec<u8> = (0..100u8).map(|b| b.wrapping_mul(7)).collect();
        for at in 0..17 {
            for len in [0, 1, 7, 8, 9, 15, 16, 17, 63, 100] {
                region.write(0, &[0; 256]).unwrap();
                region.write(at, &data[..len]).unwrap();
                let mut expected = vec![0; 256];
                expected[at..at + len].copy_from_slice(&data[..len]);
                assert_eq!(region.to_vec(), expected, "at {at} len {len}");
                let mut out = vec![0; len];
                region.read(at, &mut out).unwrap();
                assert_eq!(out, &data[..len], "at {at} len {len}");
            }
        }
        let huge = region.write(usize::MAX, b"x").unwrap_err();
        assert!(matches!(huge, Error::Shm(ShmError::OutOfBounds { offset: u64::MAX, .. })), "{huge}");
    }

    #[test]
    fn misuse_is_an_error_never_a_crash() {
        let segment = Segment::create(&unique("misuse"), 64 << 10).unwrap();
        let a = segment.allocate(10).unwrap();
        segment.free(&a.shm_ptr()).unwrap();
        assert!(matches!(segment.free(&a.shm_ptr()), Err(Error::Shm(ShmError::DoubleFree { .. }))));
        let inside = ShmPtr { offset: a.shm_ptr().offset + 64, ..a.shm_ptr() };
        assert!(matches!(segment.free(&inside), Err(Error::Shm(ShmError::NotAnAllocation { .. }))));
        let foreign = ShmPtr { segment: "other".into(), offset: a.shm_ptr().offset };
        assert!(matches!(segment.free(&foreign), Err(Error::Shm(ShmError::ForeignPointer { .. }))));
        assert!(matches!(segment.allocate(1 << 20), Err(Error::Shm(ShmError::TooLarge { .. }))));
        let mut held = Vec::new();
        let exhausted = loop {
            match segment.allocate(4096) {
                Ok(p) => held.push(p),
                Err(e) => break e,
            }
        };
        assert!(matches!(exhausted, Error::Shm(ShmError::Exhausted { .. })), "{exhausted}");
        assert!(matches!(held[0].write(4095, b"ab"), Err(Error::Shm(ShmError::OutOfBounds { .. }))));
    }

    #[test]
    fn hostile_pointers_are_bounds_checked() {
        let segment = Segment::create(&unique("bounds"), 64 << 10).unwrap();
        let name = segment.name().to_owned();
        for (offset, len) in [(0, 8), (16, 4), (60_000, 10_000), (u64::MAX - 2, 8), (128, usize::MAX)] {
            let pointer = ShmPtr { segment: name.clone(), offset };
            assert!(
                matches!(pointer.resolve(len), Err(Error::Shm(ShmError::OutOfBounds { .. }))),
                "{offset}+{len}"
            );
        }
        let unknown = ShmPtr { segment: "no-such-segment".into(), offset: 128 };
        assert!(matches!(unknown.resolve(1), Err(Error::Shm(ShmError::UnknownSegment(_)))));
        let traversal = ShmPtr { segment: "../etc/passwd".into(), offset: 128 };
        assert!(matches!(traversal.resolve(1), Err(Error::Shm(ShmError::InvalidName(_)))));
    }

    #[test]
    fn only_ranges_inside_one_live_allocation_resolve() {
        let segment = Segment::create(&unique("in-allocation"), 64 << 10).unwrap();
        let a = segment.allocate(100).unwrap(); // 128 bytes of payload, rounded to the 64-byte granule
        let b = segment.allocate(1000).unwrap();
        let freed = segment.allocate(500).unwrap();
        let _after = segment.allocate(10).unwrap();
        segment.free(&freed.shm_ptr()).unwrap();
        let (a_at, b_at) = (a.shm_ptr().offset, b.shm_ptr().offset);
        let at = |offset: u64| ShmPtr { segment: segment.name().into(), offset };
        let refused = [
            (at(0), 8, "the segment header"),
            (at(16), 4, "the lock word"),
            (at(a_at - 64), 64, "a's block header"),
            (at(a_at - 1), 2, "the last header byte and the first payload byte"),
            (at(b_at - 64), 16, "b's block header"),
            (at(a_at + 100), 200, "a's tail, b's header and payload"),
            (at(a_at), 129, "a and one byte of b's header"),
            (freed.shm_ptr(), 500, "a freed block"),
            (at(freed.shm_ptr().offset + 64), 8, "inside a freed block"),
            (at(segment.size() as u64 - 8), 8, "the free block at the end"),
            (at(u64::MAX - 4), 8, "an offset that overflows"),
        ];
        for (pointer, len, what) in refused {
            let error = pointer.resolve_allocation(len).expect_err(what);
            assert!(matches!(error, Error::Shm(ShmError::NotInAllocation { .. })), "{what}: {error}");
        }
        let accepted = [
            (a.shm_ptr(), 100, "a exactly"),
            (a.shm_ptr(), 128, "a with its rounding"),
            (at(a_at + 10), 50, "a sub-range of a"),
            (b.shm_ptr(), 1000, "b exactly"),
            (at(b_at + 999), 1, "b's last byte"),
        ];
        for (pointer, len, what) in accepted {
            let region = segment.resolve_allocation(&pointer, len).expect(what);
            assert_eq!((region.shm_ptr(), region.len()), (pointer, len), "{what}");
        }
        let foreign = ShmPtr { segment: "other".into(), offset: a_at };
        let error = segment.resolve_allocation(&foreign, 1).unwrap_err();
        assert!(matches!(error, Error::Shm(ShmError::ForeignPointer { .. })), "{error}");
        let message = at(0).resolve_allocation(8).unwrap_err().to_string();
        assert!(message.contains("do not lie inside one allocation"), "{message}");
    }

    #[test]
    fn a_lock_held_by_a_live_process_fails_after_the_limit_instead_of_hanging() {
        let segment = Segment::create(&unique("held"), 64 << 10).unwrap();
        alloc::hold_lock_as(&segment.inner.mapping, std::process::id());
        let error = segment.allocate(10).unwrap_err();
        assert!(matches!(error, Error::Shm(ShmError::LockHeld { .. })), "{error}");
    }

    #[test]
    fn a_lock_left_by_a_dead_process_is_taken_over() {
        let segment = Segment::create(&unique("stale"), 64 << 10).unwrap();
        // No process has this pid (Linux pids stay below 2^22).
        alloc::hold_lock_as(&segment.inner.mapping, u32::MAX - 1);
        assert!(segment.allocate(10).is_ok());
    }

    #[test]
    fn a_segment_whose_creator_pid_was_reused_is_stale() {
        let name = unique("reused-pid");
        let segment = Segment::create(&name, 64 << 10).unwrap();
        assert!(!Segment::reclaim_stale(&name).unwrap(), "its creator (this process) lives");
        let me = process::Process::current();
        // The pid is alive (it is ours), but the start time recorded is another process's.
        alloc::write_creator(&segment.inner.mapping, process::Process { start: me.start + 1, ..me });
        let error = Segment::create(&name, 64 << 10).unwrap_err();
        assert!(matches!(&error, Error::Shm(ShmError::Stale { creator_pid, .. }) if *creator_pid == me.pid));
        assert!(Segment::reclaim_stale(&name).unwrap());
        assert!(!path_of(&name).exists());
        assert!(!Segment::reclaim_stale(&name).unwrap(), "nothing left to reclaim");
    }

    #[test]
    fn a_segment_s_memory_is_reserved_when_it_is_created() {
        let name = unique("reserved");
        let _segment = Segment::create(&name, 1 << 20).unwrap();
        let blocks = std::fs::metadata(path_of(&name)).unwrap().blocks();
        assert!(blocks * 512 >= 1 << 20, "a sparse file of {blocks} blocks");
    }

    #[test]
    fn a_creation_that_fails_leaves_no_file() {
        for size in [0, 100] {
            let name = unique(&format!("too-small-{size}"));
            let error = Segment::create(&name, size).unwrap_err();
            assert!(matches!(error, Error::Shm(ShmError::TooSmall { .. } | ShmError::Io { .. })), "{error}");
            assert!(!path_of(&name).exists(), "a file left by a failed creation of {size} bytes");
        }
    }

    #[test]
    fn creating_twice_fails_and_the_creator_removes_the_segment() {
        let name = unique("twice");
        let segment = Segment::create(&name, 64 << 10).unwrap();
        assert!(matches!(Segment::create(&name, 64 << 10), Err(Error::Shm(ShmError::Exists(_)))));
        let mode = std::fs::metadata(path_of(&name)).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "other users could read or write the segment");
        drop(segment);
        assert!(!path_of(&name).exists(), "segment file left behind");
        assert!(matches!(Segment::open(&name), Err(Error::Shm(ShmError::UnknownSegment(_)))));
    }
}
