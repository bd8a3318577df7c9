//! The raw accesses of a segment's mapping: every `unsafe` block of the crate lives here, each with the
//! check that makes it sound, so that the rest of `shm` (and of the crate) is safe code.

#![allow(unsafe_code)]

use std::fs::File;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicU8, Ordering};

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

    /// The 8-byte word at `at`, which must be 8-byte aligned, as an atomic.
    pub(super) fn word(&self, at: usize) -> &AtomicU64 {
        let address = self.address(at, 8);
        assert_eq!(address as usize % 8, 0, "word misaligned");
        // SAFETY: 8 aligned bytes inside the mapping, which lives as long as `self`. Every access to the
        // mapping from this crate is atomic (see `copy_in`), so viewing these bytes as an AtomicU64 races
        // with no non-atomic access in this process.
        unsafe { AtomicU64::from_ptr(address.cast()) }
    }

    pub(super) fn read_u64(&self, at: usize) -> u64 {
        self.word(at).load(Ordering::Acquire)
    }

    pub(super) fn read_u32(&self, at: usize) -> u32 {
        self.lock_word(at).load(Ordering::Acquire)
    }

    pub(super) fn write_u64(&self, at: usize, value: u64) {
        self.word(at).store(value, Ordering::Release)
    }

    pub(super) fn write_u32(&self, at: usize, value: u32) {
        self.lock_word(at).store(value, Ordering::Release)
    }

    /// The atomic 4-byte word at `at`, which must be 4-byte aligned (the lock word, header fields).
    pub(super) fn lock_word(&self, at: usize) -> &AtomicU32 {
        let address = self.address(at, 4);
        assert_eq!(address as usize % 4, 0, "lock word misaligned");
        // SAFETY: as in `word`, for 4 aligned bytes.
        unsafe { AtomicU32::from_ptr(address.cast()) }
    }

    /// Copies `data` into the mapping at `at`.
    ///
    /// Every access to the mapping is a relaxed atomic one (aligned 8-byte words, single bytes at the
    /// ends), so two threads copying into and out of the same bytes at once (two clones of a `FullPtr`)
    /// do not race in Rust's sense: a reader sees each word old or new. Another process writing
    /// meanwhile can likewise only mix old and new words. Copies of [`BULK_COPY_FROM`] bytes or more
    /// go through [`bulk_copy`] on x86-64 instead (the hardware's string copy, as fast as `memcpy`),
    /// which gives the same promise per byte rather than per word. `data` cannot lie in a range being
    /// written: the only way to borrow mapping memory is the `unsafe` `FullPtr::as_slice`, whose caller
    /// promises no writer.
    pub(super) fn copy_in(&self, at: usize, data: &[u8]) {
        let target = self.address(at, data.len());
        if bulk_copy(data.as_ptr(), target, data.len()) {
            return;
        }
        let (head, words, tail) = split_aligned(target, data);
        for (i, &b) in head.iter().enumerate() {
            // SAFETY: `address` checked that `data.len()` bytes from `target` lie in the live mapping,
            // and `i` is below `head.len() <= data.len()`; a byte is always aligned.
            unsafe { AtomicU8::from_ptr(target.add(i)).store(b, Ordering::Relaxed) };
        }
        let target = target.wrapping_add(head.len());
        for (k, chunk) in words.chunks_exact(8).enumerate() {
            let value = u64::from_ne_bytes(chunk.try_into().expect("8 bytes"));
            // SAFETY: as above; `split_aligned` made `target` 8-byte aligned, and word `k` lies within
            // the checked range.
            unsafe { AtomicU64::from_ptr(target.add(8 * k).cast()).store(value, Ordering::Relaxed) };
        }
        let target = target.wrapping_add(words.len());
        for (i, &b) in tail.iter().enumerate() {
            // SAFETY: as for the head: the tail's bytes end where the checked range ends.
            unsafe { AtomicU8::from_ptr(target.add(i)).store(b, Ordering::Relaxed) };
        }
    }

    /// Copies `out.len()` bytes from the mapping at `at` into `out`, with atomic accesses as `copy_in`.
    pub(super) fn copy_out(&self, at: usize, out: &mut [u8]) {
        let source = self.address(at, out.len()).cast_const();
        if bulk_copy(source, out.as_mut_ptr(), out.len()) {
            return;
        }
        let (head, words, tail) = split_aligned_mut(source, out);
        for (i, b) in head.iter_mut().enumerate() {
            // SAFETY: as in `copy_in`, reading: the range was checked by `address`.
            *b = unsafe { AtomicU8::from_ptr(source.add(i).cast_mut()).load(Ordering::Relaxed) };
        }
        let source = source.wrapping_add(head.len());
        for (k, chunk) in words.chunks_exact_mut(8).enumerate() {
            // SAFETY: as in `copy_in`: aligned, inside the checked range.
            let value =
                unsafe { AtomicU64::from_ptr(source.add(8 * k).cast_mut().cast()).load(Ordering::Relaxed) };
            chunk.copy_from_slice(&value.to_ne_bytes());
        }
        let source = source.wrapping_add(words.len());
        for (i, b) in tail.iter_mut().enumerate() {
            // SAFETY: as for the head.
            *b = unsafe { AtomicU8::from_ptr(source.add(i).cast_mut()).load(Ordering::Relaxed) };
        }
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

/// Copies of at least this many bytes go through [`bulk_copy`]: below it, starting the string copy costs
/// more than the word loop.
const BULK_COPY_FROM: usize = 256;

/// Copies `len` bytes from `source` to `target` with the x86-64 string copy (`rep movsb`) when `len` is
/// at least [`BULK_COPY_FROM`]; false (nothing copied) otherwise, or on other machines, for the caller's
/// word loop. The caller checked that both ranges are valid for `len` bytes and do not overlap (one is
/// in the mapping, the other a Rust buffer the caller borrows).
///
/// The mapping is written by other threads and processes while this copies: the copy is in assembly,
/// which Rust does not look into, and each byte it moves is a single-copy-atomic byte access of the
/// machine, so it has the meaning of a loop of relaxed atomic byte loads and stores (P1478's
/// `atomic_load_per_byte_memcpy`): a byte another process writes meanwhile comes out old or new, never
/// undefined behaviour, as with the word loop.
#[allow(unused_variables)]
fn bulk_copy(source: *const u8, target: *mut u8, len: usize) -> bool {
    #[cfg(target_arch = "x86_64")]
    if len >= BULK_COPY_FROM {
        // SAFETY: the caller checked that `source` is readable and `target` writable for `len` bytes
        // and that the ranges do not overlap; `rep movsb` moves exactly `rcx` bytes forward (the
        // direction flag is clear on entry, as the ABI and Rust's `asm!` promise), touches no stack and
        // no other memory, and leaves the flags as they were.
        unsafe {
            std::arch::asm!(
                "rep movsb",
                inout("rcx") len => _,
                inout("rsi") source => _,
                inout("rdi") target => _,
                options(nostack, preserves_flags),
            );
        }
        return true;
    }
    false
}

/// Splits `data`, to be copied to or from `address`, into the bytes before the first 8-byte aligned
/// address, whole 8-byte words, and the bytes after them.
fn split_aligned(address: *const u8, data: &[u8]) -> (&[u8], &[u8], &[u8]) {
    let head = address.align_offset(8).min(data.len());
    let (head, rest) = data.split_at(head);
    let (words, tail) = rest.split_at(rest.len() / 8 * 8);
    (head, words, tail)
}

/// As [`split_aligned`], for a buffer to fill.
fn split_aligned_mut(address: *const u8, data: &mut [u8]) -> (&mut [u8], &mut [u8], &mut [u8]) {
    let head = address.align_offset(8).min(data.len());
    let (head, rest) = data.split_at_mut(head);
    let words = rest.len() / 8 * 8;
    let (words, tail) = rest.split_at_mut(words);
    (head, words, tail)
}

// SAFETY: the mapping is plain memory with no thread affinity, and this crate accesses it only
// atomically (see `copy_in`), so it can be used from any thread and shared between threads.
unsafe impl Send for Mapping {}
// SAFETY: as above; `&Mapping` only offers atomic access (and the `unsafe` slice).
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

/// Appends `len` bytes at `address` in process `pid` to `out`, copied straight from that process's memory
/// with `process_vm_readv` (a single copy, and no pass over `out` before it, as zeroing it first would
/// be). False when the kernel refuses (ptrace rules, a container, an address not mapped there) or the
/// process is gone; `out` then holds the part copied. Reserves room in `out` when it lacks it.
pub(crate) fn read_process_into(pid: i32, address: u64, len: usize, out: &mut Vec<u8>) -> bool {
    out.reserve(len);
    let mut done = 0;
    while done < len {
        let Some(base) = remote_address(address, done) else { return false };
        let spare = out.spare_capacity_mut();
        // SAFETY: the spare capacity holds at least `len - done` bytes (reserved above for all `len`,
        // less the `done` appended) and is borrowed mutably here, so nothing else references it.
        let Some(copied) = (unsafe { read_once(pid, base, spare.as_mut_ptr().cast(), len - done) }) else {
            return false;
        };
        // SAFETY: the kernel initialised the first `copied` bytes of the spare capacity (`read_once`
        // returns at most the `len - done` it was given).
        unsafe { out.set_len(out.len() + copied) };
        done += copied;
    }
    true
}

/// Fills `out` with the bytes at `address` in process `pid`, copied straight from that process's memory
/// (a single copy). False when the kernel refuses or the process is gone; `out` then holds a part.
pub(crate) fn read_process_exact(pid: i32, address: u64, out: &mut [u8]) -> bool {
    let mut done = 0;
    while done < out.len() {
        let Some(base) = remote_address(address, done) else { return false };
        let rest = &mut out[done..];
        // SAFETY: `rest` is borrowed mutably here: writable for its whole length, referenced by nothing
        // else while the call runs.
        let Some(copied) = (unsafe { read_once(pid, base, rest.as_mut_ptr(), rest.len()) }) else {
            return false;
        };
        done += copied;
    }
    true
}

/// `address + done` in the other process, when it does not overflow.
fn remote_address(address: u64, done: usize) -> Option<usize> {
    usize::try_from(address).ok()?.checked_add(done)
}

/// One `process_vm_readv` of at most `len` bytes at `address` in process `pid` into `local`: the count
/// copied (1 to `len`), or `None` when the kernel refused or copied nothing.
///
/// # Safety
/// `local` must be valid for writes of `len` bytes, and nothing may read or write them during the call.
unsafe fn read_once(pid: i32, address: usize, local: *mut u8, len: usize) -> Option<usize> {
    let local = libc::iovec { iov_base: local.cast(), iov_len: len };
    let remote = libc::iovec { iov_base: address as *mut libc::c_void, iov_len: len };
    // SAFETY: the caller makes `local` writable for `len` bytes and keeps everyone else off them; the
    // kernel writes at most that many there and only reads through `remote`, in the other process,
    // whose addresses it checks itself (a bad one is an error, never a write here).
    let copied = unsafe { libc::process_vm_readv(pid, &local, 1, &remote, 1, 0) };
    usize::try_from(copied).ok().filter(|&copied| copied > 0 && copied <= len)
}

/// The process at the other end of a connected Unix socket, as the kernel recorded it when the
/// connection was made (see [`peer_identity`]).
#[derive(Debug)]
pub(crate) struct PeerIdentity {
    /// Its pid in this process's pid namespace (`SO_PEERCRED`): 0 when it has none there (a process of
    /// an enclosing or unrelated pid namespace).
    pub(crate) pid: u32,
    /// Its effective user id when it connected.
    pub(crate) uid: u32,
    /// A pidfd of that very process (`SO_PEERPIDFD`), which keeps naming it after it ended and its pid
    /// went to another process; `None` on kernels before 6.5, which do not have the option.
    pub(crate) pidfd: Option<std::os::fd::OwnedFd>,
}

/// `SO_PEERPIDFD` (Linux 6.5), which the `libc` crate does not export at its root.
#[cfg(any(target_arch = "sparc", target_arch = "sparc64"))]
const SO_PEERPIDFD: libc::c_int = 0x56;
#[cfg(not(any(target_arch = "sparc", target_arch = "sparc64")))]
const SO_PEERPIDFD: libc::c_int = 77;

/// Who is at the other end of the connected Unix socket `fd`: `SO_PEERCRED`, read raw (a pid of 0, which
/// the kernel gives for a peer outside this pid namespace, is handed back as is, for the caller to
/// refuse), and `SO_PEERPIDFD`. An error when either read fails, except `ENOPROTOOPT` for
/// `SO_PEERPIDFD` (a kernel without it: `pidfd` is `None`); a kernel that has the option but cannot
/// give the peer's pidfd (the peer ended, on some kernels) is an error, never a `None`.
pub(crate) fn peer_identity(fd: std::os::fd::BorrowedFd<'_>) -> std::io::Result<PeerIdentity> {
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    let size_of = |size: usize| libc::socklen_t::try_from(size).expect("a small size");
    let mut credentials = libc::ucred { pid: 0, uid: 0, gid: 0 };
    let mut len = size_of(std::mem::size_of::<libc::ucred>());
    // SAFETY: `credentials` is a live, writable `ucred` and `len` says its exact size, so the kernel
    // writes at most that many bytes into it (and the written length into `len`); `fd` is borrowed,
    // so open for the whole call.
    let read = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            (&raw mut credentials).cast(),
            &mut len,
        )
    };
    if read != 0 {
        return Err(std::io::Error::last_os_error());
    }
    if len != size_of(std::mem::size_of::<libc::ucred>()) {
        return Err(std::io::ErrorKind::InvalidData.into());
    }
    let pid = u32::try_from(credentials.pid).map_err(|_| std::io::ErrorKind::InvalidData)?;
    let mut pidfd: libc::c_int = -1;
    let mut len = size_of(std::mem::size_of::<libc::c_int>());
    // SAFETY: as above, for a writable `c_int` of the size `len` says. On success the kernel has
    // installed a new descriptor in this process's table and written its number into `pidfd`.
    let read = unsafe {
        libc::getsockopt(fd.as_raw_fd(), libc::SOL_SOCKET, SO_PEERPIDFD, (&raw mut pidfd).cast(), &mut len)
    };
    let pidfd = match read {
        0 if pidfd >= 0 => {
            // SAFETY: the kernel just opened `pidfd` for this call (close-on-exec): nothing else in
            // this process owns it, so this is its one owner, which closes it once.
            Some(unsafe { OwnedFd::from_raw_fd(pidfd) })
        }
        0 => return Err(std::io::ErrorKind::InvalidData.into()),
        _ => match std::io::Error::last_os_error() {
            error if error.raw_os_error() == Some(libc::ENOPROTOOPT) => None,
            error => return Err(error),
        },
    };
    Ok(PeerIdentity { pid, uid: credentials.uid, pidfd })
}

/// A new anonymous memory file (`memfd`) of `len` bytes, reserved (see [`super::reserve`]), and its
/// writable mapping (`None` for 0 bytes, which cannot be mapped). Right after mapping it, the file is
/// sealed against resizing and against every write but through that mapping (`F_SEAL_FUTURE_WRITE`),
/// for every process.
pub(super) fn create_memory_file(len: usize) -> std::io::Result<(std::fs::File, Option<memmap2::MmapMut>)> {
    use rustix::fs::{memfd_create, MemfdFlags, SealFlags};
    let flags = MemfdFlags::CLOEXEC | MemfdFlags::ALLOW_SEALING;
    // `NOEXEC_SEAL` (Linux 6.3) keeps the file from being run; older kernels refuse the flag.
    let fd = memfd_create("lightbeam-shared-bytes", flags | MemfdFlags::NOEXEC_SEAL)
        .or_else(|_| memfd_create("lightbeam-shared-bytes", flags))?;
    let file = std::fs::File::from(fd);
    super::reserve(&file, u64::try_from(len).map_err(|_| std::io::ErrorKind::InvalidInput)?)?;
    let map = match len {
        0 => None,
        // SAFETY: `MmapMut` hands out `&mut [u8]` over the file, sound while no one else writes or
        // resizes it. The file was created just now and is named only by this process's descriptor;
        // the seals added next stop every write but through this mapping and every resize, for good.
        // (Between `memfd_create` and the seals, a few system calls, a process of the same user allowed
        // to read this one's /proc entries could map the file if it guessed the descriptor: the trust
        // notes in docs/RELIABILITY.md say so.)
        _ => Some(unsafe { memmap2::MmapOptions::new().len(len).map_mut(&file)? }),
    };
    let seals = SealFlags::SHRINK | SealFlags::GROW | SealFlags::FUTURE_WRITE;
    rustix::fs::fcntl_add_seals(&file, seals)?;
    Ok((file, map))
}

/// The seals a memory file must carry to be read in place: nobody can write it, change its size, or
/// take the seals off.
pub(super) fn read_only_seals() -> rustix::fs::SealFlags {
    use rustix::fs::SealFlags;
    SealFlags::WRITE | SealFlags::SHRINK | SealFlags::GROW | SealFlags::SEAL
}

/// Maps `file` read-only, whole, after checking that it carries [`read_only_seals`] (an error
/// otherwise). `None` for an empty file. The mapping is private (no process's writes could reach it
/// anyway) so that kernels before 6.7, which refuse a shared mapping of a write-sealed file opened for
/// writing, map it too; it reads the file's own pages, no copy.
pub(super) fn map_sealed(file: &std::fs::File) -> std::io::Result<Option<memmap2::Mmap>> {
    let seals = rustix::fs::fcntl_get_seals(file)?;
    if !seals.contains(read_only_seals()) {
        return Err(std::io::Error::new(
            std::io::ErrorKind::PermissionDenied,
            "the memory file is not sealed against writing and resizing",
        ));
    }
    let len = usize::try_from(file.metadata()?.len()).map_err(|_| std::io::ErrorKind::InvalidData)?;
    if len == 0 {
        return Ok(None);
    }
    // SAFETY: `Mmap` lends `&[u8]` over the file, sound while nothing writes or resizes it. The seals
    // checked above forbid, for every process and for good (`SEAL` keeps them on): `write`, any
    // writable shared mapping (`WRITE`: the kernel refuses the seal while one exists, and every
    // mapping after it), hole punching, and shrinking or growing (`SHRINK`, `GROW`), so the mapped
    // length stays backed and its bytes never change. The mapping itself is read-only.
    let map = unsafe { memmap2::MmapOptions::new().len(len).map_copy_read_only(file)? };
    Ok(Some(map))
}

#[cfg(test)]
mod tests {
    use crate::shm::Segment;

    #[test]
    fn another_process_s_memory_is_read_into_spare_capacity_or_refused() {
        let source: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        let pid = std::process::id() as i32;
        let mut out = b"kept".to_vec();
        assert!(super::read_process_into(pid, source.as_ptr() as u64, source.len(), &mut out));
        assert_eq!((&out[..4], &out[4..]), (&b"kept"[..], &source[..]));
        // An address not mapped in the process, and one that overflows: refused, nothing appended.
        let mut refused = Vec::new();
        assert!(!super::read_process_into(pid, 8, 100, &mut refused));
        assert!(!super::read_process_into(pid, u64::MAX - 10, 100, &mut refused));
        assert!(refused.is_empty());
        // A process that does not exist.
        assert!(!super::read_process_into(i32::MAX, source.as_ptr() as u64, 10, &mut refused));
        // Into a slice: exact, or refused.
        let mut exact = vec![0u8; source.len()];
        assert!(super::read_process_exact(pid, source.as_ptr() as u64, &mut exact));
        assert_eq!(exact, source);
        assert!(!super::read_process_exact(pid, 8, &mut exact[..100]));
        assert!(super::read_process_exact(pid, 8, &mut []), "nothing to read is done at once");
    }

    #[test]
    fn the_peer_of_a_unix_socket_is_named_with_its_pid_user_and_pidfd() {
        use std::os::fd::AsFd;
        let (one, _other) = std::os::unix::net::UnixStream::pair().unwrap();
        let identity = super::peer_identity(one.as_fd()).unwrap();
        assert_eq!((identity.pid, identity.uid), (std::process::id(), rustix::process::geteuid().as_raw()));
        // Linux 6.5 and later give the pidfd; this one (6.18) must.
        let pidfd = identity.pidfd.expect("SO_PEERPIDFD");
        assert!(crate::shm::lives(pidfd.as_fd()));
        // Not a socket: an error, never a made-up peer.
        let file = std::fs::File::open("/proc/self/stat").unwrap();
        assert!(super::peer_identity(file.as_fd()).is_err());
    }

    #[test]
    fn copies_of_every_length_and_alignment_land_exactly() {
        let segment = Segment::create(&format!("unit-copies-{}", std::process::id()), 64 << 10).unwrap();
        let region = segment.allocate(8192).unwrap();
        let source: Vec<u8> = (0..5000u32).map(|i| (i % 251) as u8).collect();
        // Lengths on both sides of the bulk copy's threshold, at every alignment, with a guard byte on
        // each side that must stay as it was.
        for len in [0, 1, 7, 8, 9, 255, 256, 257, 4095, 4096, 4097] {
            for at in 1..9 {
                region.write(at - 1, &[0xaa]).unwrap();
                region.write(at + len, &[0xbb]).unwrap();
                region.write(at, &source[..len]).unwrap();
                let mut out = vec![0u8; len + 2];
                region.read(at - 1, &mut out).unwrap();
                assert_eq!((out[0], out[len + 1]), (0xaa, 0xbb), "guards, {len} bytes at {at}");
                assert_eq!(&out[1..=len], &source[..len], "{len} bytes at {at}");
            }
        }
    }

    #[test]
    fn a_region_reads_in_place() {
        let segment = Segment::create(&format!("unit-in-place-{}", std::process::id()), 64 << 10).unwrap();
        let region = segment.allocate(100).unwrap();
        region.write(0, b"hello").unwrap();
        // SAFETY: no thread or process writes `region` while the slice lives.
        let in_place = unsafe { region.as_slice() };
        assert_eq!((&in_place[..5], in_place.len()), (&b"hello"[..], 100));
    }

    #[test]
    fn atomic_words_are_shared_by_every_handle_and_bounds_checked() {
        use std::sync::atomic::Ordering;
        let segment = Segment::create(&format!("unit-atomics-{}", std::process::id()), 64 << 10).unwrap();
        let region = segment.allocate(64).unwrap();
        let again = crate::shm::ShmPtr::resolve(&region.shm_ptr(), 64).unwrap();
        region.atomic_u32(4).unwrap().store(7, Ordering::Release);
        region.atomic_u64(8).unwrap().fetch_add(9, Ordering::AcqRel);
        assert_eq!(again.atomic_u32(4).unwrap().load(Ordering::Acquire), 7);
        assert_eq!(again.atomic_u64(8).unwrap().load(Ordering::Acquire), 9);
        assert!(region.atomic_u32(61).is_err(), "past the region's end");
        assert!(region.atomic_u64(usize::MAX).is_err(), "overflowing offset");
    }
}
