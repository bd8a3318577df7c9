//! The allocator kept inside a segment: a first-fit list of blocks, guarded by a lock word in the segment
//! header, so that every process mapping the segment allocates from the same state.
//!
//! Layout: a 128-byte segment header (magic, size, lock word, creator's pid and start time), then blocks
//! until the end. Each block is a 64-byte block header (magic, state, payload size) followed by its
//! payload; payloads are 64-byte aligned and sized in multiples of 64, so blocks tile the segment and a
//! walk from the first block visits every block.

#![forbid(unsafe_code)]

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use super::process::Process;
use super::{Mapping, ShmError};

/// Bytes before the first block: magic, size, lock word, creator.
pub(super) const SEGMENT_HEADER: usize = 128;
/// The alignment of every payload and the granule of every size.
pub(super) const ALIGN: usize = 64;
const BLOCK_HEADER: usize = 64;
const SEGMENT_MAGIC: u64 = u64::from_le_bytes(*b"LBMSHM\x00\x01");
const BLOCK_MAGIC: u32 = 0x4C42_4D42;
const FREE: u32 = 1;
const USED: u32 = 2;
const MAGIC_AT: usize = 0;
const SIZE_AT: usize = 8;
const LOCK_AT: usize = 16;
const CREATOR_PID_AT: usize = 24;
const CREATOR_START_AT: usize = 32;
/// A lock held this long by one process is checked: if its holder died, the lock is taken over.
const STALE_LOCK_CHECK: Duration = Duration::from_millis(200);
/// The longest an allocator operation waits for the segment's lock held by a live process (shorter in
/// unit tests, which hold it on purpose).
const LOCK_WAIT_LIMIT: Duration =
    if cfg!(test) { Duration::from_millis(500) } else { Duration::from_secs(10) };

fn round_up(n: usize) -> usize {
    n.div_ceil(ALIGN) * ALIGN
}

/// The usable end of a segment of `size` bytes: whole 64-byte granules only.
fn end_of(size: usize) -> usize {
    size / ALIGN * ALIGN
}

/// Writes a fresh header, naming `creator`, and one free block spanning the segment.
pub(super) fn format(map: &Mapping, creator: Process) -> Result<(), ShmError> {
    let end = end_of(map.len());
    if end < SEGMENT_HEADER + BLOCK_HEADER + ALIGN {
        return Err(ShmError::TooSmall { size: map.len(), minimum: SEGMENT_HEADER + BLOCK_HEADER + ALIGN });
    }
    map.write_u64(SIZE_AT, map.len() as u64);
    map.lock_word(LOCK_AT).store(0, Ordering::SeqCst);
    write_creator(map, creator);
    write_block(map, SEGMENT_HEADER, FREE, end - SEGMENT_HEADER - BLOCK_HEADER);
    // The magic goes last: a process that opens the segment meanwhile sees it as not ready.
    map.write_u64(MAGIC_AT, SEGMENT_MAGIC);
    Ok(())
}

/// Checks that a mapped file holds a formatted segment of the size it says.
pub(super) fn check(map: &Mapping) -> Result<(), ShmError> {
    if map.len() < SEGMENT_HEADER || map.read_u64(MAGIC_AT) != SEGMENT_MAGIC {
        return Err(ShmError::NotASegment);
    }
    if map.read_u64(SIZE_AT) != map.len() as u64 {
        return Err(ShmError::NotASegment);
    }
    Ok(())
}

/// True when a segment's first bytes, as read from its file, hold a formatted segment of `size` bytes.
pub(super) fn header_is_formatted(header: &[u8; SEGMENT_HEADER], size: usize) -> bool {
    let u64_at = |at: usize| u64::from_ne_bytes(header[at..at + 8].try_into().expect("8 bytes"));
    u64_at(MAGIC_AT) == SEGMENT_MAGIC && u64_at(SIZE_AT) == size as u64
}

/// Records `creator` in the segment header.
pub(super) fn write_creator(map: &Mapping, creator: Process) {
    map.write_u64(CREATOR_PID_AT, u64::from(creator.pid));
    map.write_u64(CREATOR_START_AT, creator.start);
}

/// The creator recorded in a segment's first bytes, as read from its file; `None` when they hold no
/// formatted segment (not a Lightbeam segment, or its creator has not finished formatting it).
pub(super) fn creator_in(header: &[u8]) -> Option<Process> {
    let u64_at = |at: usize| Some(u64::from_ne_bytes(header.get(at..at + 8)?.try_into().ok()?));
    if u64_at(MAGIC_AT)? != SEGMENT_MAGIC {
        return None;
    }
    Some(Process { pid: u32::try_from(u64_at(CREATOR_PID_AT)?).ok()?, start: u64_at(CREATOR_START_AT)? })
}

fn write_block(map: &Mapping, at: usize, state: u32, size: usize) {
    map.write_u32(at, BLOCK_MAGIC);
    map.write_u32(at + 4, state);
    map.write_u64(at + 8, size as u64);
}

/// One block as read from the segment.
struct Block {
    at: usize,
    state: u32,
    size: usize,
}

/// Where a segment's headers are read from: this process's mapping, or (for a segment a peer owns) its
/// file, read without mapping it.
pub(super) trait Headers {
    /// The segment's size in bytes.
    fn size(&self) -> usize;
    /// The magic, state and payload size of the block header at `at` (inside the segment).
    fn block_header(&self, at: usize) -> Result<(u32, u32, u64), ShmError>;
}

impl Headers for Mapping {
    fn size(&self) -> usize {
        self.len()
    }

    fn block_header(&self, at: usize) -> Result<(u32, u32, u64), ShmError> {
        Ok((self.read_u32(at), self.read_u32(at + 4), self.read_u64(at + 8)))
    }
}

/// Parses a block header's 16 bytes as `write_block` lays them out.
pub(super) fn parse_block_header(bytes: &[u8; 16]) -> (u32, u32, u64) {
    let u32_at = |at: usize| u32::from_ne_bytes(bytes[at..at + 4].try_into().expect("4 bytes"));
    (u32_at(0), u32_at(4), u64::from_ne_bytes(bytes[8..].try_into().expect("8 bytes")))
}

/// Visits the blocks in order; fails if a block header is damaged. Every step moves forward by at least
/// one header and stays inside the segment (sizes read from the segment are checked, never trusted), so
/// the walk ends whatever the headers say.
fn blocks<H: Headers>(headers: &H) -> impl Iterator<Item = Result<Block, ShmError>> + '_ {
    let end = end_of(headers.size());
    let mut at = SEGMENT_HEADER;
    std::iter::from_fn(move || {
        if at + BLOCK_HEADER > end {
            return None;
        }
        let corrupted = ShmError::Corrupted { offset: at as u64 };
        let block = headers.block_header(at).and_then(|(magic, state, size)| {
            let size = usize::try_from(size).map_err(|_| corrupted.clone())?;
            let next = (at + BLOCK_HEADER).checked_add(size).filter(|&next| next <= end);
            match next {
                Some(next)
                    if magic == BLOCK_MAGIC && (state == FREE || state == USED) && size % ALIGN == 0 =>
                {
                    Ok((Block { at, state, size }, next))
                }
                _ => Err(corrupted),
            }
        });
        Some(match block {
            Ok((block, next)) => {
                at = next;
                Ok(block)
            }
            Err(error) => {
                at = end;
                Err(error)
            }
        })
    })
}

/// The segment's lock, held until dropped. Taken over from a holder that died while holding it.
struct Lock<'m> {
    word: &'m AtomicU32,
}

impl<'m> Lock<'m> {
    /// Takes the lock: at once while it is free, after [`STALE_LOCK_CHECK`] from a holder that died, and
    /// never past [`LOCK_WAIT_LIMIT`] (then an error, not a hang).
    fn acquire(map: &'m Mapping) -> Result<Self, ShmError> {
        let word = map.lock_word(LOCK_AT);
        let me = std::process::id();
        let started = Instant::now();
        let mut checked = started;
        loop {
            let holder = match word.compare_exchange(0, me, Ordering::Acquire, Ordering::Relaxed) {
                Ok(_) => return Ok(Self { word }),
                Err(holder) => holder,
            };
            let waited = started.elapsed();
            if waited > LOCK_WAIT_LIMIT {
                return Err(ShmError::LockHeld { holder, waited });
            }
            if checked.elapsed() > STALE_LOCK_CHECK {
                if !process_alive(holder)
                    && word.compare_exchange(holder, me, Ordering::Acquire, Ordering::Relaxed).is_ok()
                {
                    return Ok(Self { word });
                }
                checked = Instant::now();
            }
            // Critical sections are short: yield at first, then sleep so a long wait costs no core.
            if waited < STALE_LOCK_CHECK {
                std::thread::yield_now();
            } else {
                std::thread::sleep(Duration::from_millis(1));
            }
        }
    }
}

impl Drop for Lock<'_> {
    fn drop(&mut self) {
        self.word.store(0, Ordering::Release);
    }
}

fn process_alive(pid: u32) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists()
}

/// Allocates `len` bytes; returns the payload's offset in the segment.
pub(super) fn allocate(map: &Mapping, len: usize) -> Result<usize, ShmError> {
    let capacity = end_of(map.len()) - SEGMENT_HEADER - BLOCK_HEADER;
    if len > capacity {
        return Err(ShmError::TooLarge { requested: len, capacity });
    }
    let need = round_up(len.max(1));
    let _lock = Lock::acquire(map)?;
    for block in blocks(map) {
        let block = block?;
        if block.state != FREE || block.size < need {
            continue;
        }
        let rest = block.size - need;
        if rest >= BLOCK_HEADER + ALIGN {
            write_block(map, block.at + BLOCK_HEADER + need, FREE, rest - BLOCK_HEADER);
            write_block(map, block.at, USED, need);
        } else {
            write_block(map, block.at, USED, block.size);
        }
        return Ok(block.at + BLOCK_HEADER);
    }
    Err(ShmError::Exhausted { requested: len })
}

/// Frees the allocation whose payload starts at `offset`, merging it with free neighbours.
pub(super) fn free(map: &Mapping, offset: usize) -> Result<(), ShmError> {
    let foreign = ShmError::NotAnAllocation { offset: offset as u64 };
    let at = offset.checked_sub(BLOCK_HEADER).ok_or(foreign.clone())?;
    let _lock = Lock::acquire(map)?;
    let mut previous_free: Option<Block> = None;
    let mut found: Option<Block> = None;
    for block in blocks(map) {
        let block = block?;
        if let Some(freed) = &found {
            // The block after the freed one: merge it in when free.
            let size = if block.state == FREE { freed.size + BLOCK_HEADER + block.size } else { freed.size };
            write_block(map, freed.at, FREE, size);
            return Ok(());
        }
        if block.at == at {
            if block.state == FREE {
                return Err(ShmError::DoubleFree { offset: offset as u64 });
            }
            let merged = match previous_free.take() {
                Some(prev) => Block { at: prev.at, state: FREE, size: prev.size + BLOCK_HEADER + block.size },
                None => Block { at: block.at, state: FREE, size: block.size },
            };
            write_block(map, merged.at, FREE, merged.size);
            found = Some(merged);
            continue;
        }
        if block.at > at {
            break;
        }
        previous_free = (block.state == FREE).then_some(block);
    }
    match found {
        Some(_) => Ok(()),
        None => Err(foreign),
    }
}

/// True when `offset..offset + len` lies wholly inside the payload of one allocation (a used block):
/// never in the segment header, a block header, a free block, or across two blocks.
pub(super) fn in_allocation<H: Headers>(headers: &H, offset: usize, len: usize) -> Result<bool, ShmError> {
    // No lock: a walk reads each header atomically and the allocator never erases a header, it only
    // changes sizes to skip merged ones, so a walk beside an allocation or a free lands on headers
    // that were valid a moment ago; and a lock held by a peer must not stall a receive.
    let Some(end) = offset.checked_add(len) else { return Ok(false) };
    for block in blocks(headers) {
        let block = block?;
        let payload = block.at + BLOCK_HEADER;
        if offset < payload {
            // Blocks are in order: the range starts in this block's header or before it.
            return Ok(false);
        }
        if offset < payload + block.size {
            return Ok(block.state == USED && end <= payload + block.size);
        }
    }
    Ok(false)
}

/// Allocated and free bytes (payloads only), for tests and diagnostics.
pub(super) fn usage(map: &Mapping) -> Result<(usize, usize), ShmError> {
    let _lock = Lock::acquire(map)?;
    blocks(map).try_fold((0, 0), |(used, free), block| {
        let block = block?;
        Ok(if block.state == USED { (used + block.size, free) } else { (used, free + block.size) })
    })
}

#[cfg(test)]
pub(super) fn hold_lock_as(map: &Mapping, pid: u32) {
    map.lock_word(LOCK_AT).store(pid, Ordering::SeqCst);
}
