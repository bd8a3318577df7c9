//! Where a collective's bytes come from and land: the caller's [`Buffer`]s, and the helpers every
//! collective shares to fill them and to name what went wrong.

#![forbid(unsafe_code)]

use bytemuck::Pod;

use crate::error::{Error, Result};
use crate::transport::Payload;

/// A buffer of a collective: a `Vec<T>` or a `[T]` of any plain-data element type `T` (`u8`, `f64`, a
/// `#[repr(C)]` struct deriving [`Pod`]), moved as its own bytes with no conversion copy. As a receive
/// buffer, a `Vec` grows or shrinks to fit what arrives, a slice must be large enough, and what arrives
/// must make whole elements.
pub trait Buffer {
    /// The bytes to send, where this rank sends from this buffer (the broadcast root).
    fn bytes(&self) -> &[u8];
    /// Room for `len` arriving bytes, or `None` when the buffer cannot hold them (too small, or not a
    /// whole number of elements).
    fn room(&mut self, len: usize) -> Option<&mut [u8]>;
    /// How many bytes the buffer holds now, for error messages.
    fn capacity(&self) -> usize;
    /// The size of one element, for error messages.
    fn element_size(&self) -> usize;
}

/// The elements `len` bytes make, when they make whole ones.
fn whole<T>(len: usize) -> Option<usize> {
    match std::mem::size_of::<T>() {
        0 => (len == 0).then_some(0),
        size => len.is_multiple_of(size).then_some(len / size),
    }
}

impl<T: Pod> Buffer for Vec<T> {
    fn bytes(&self) -> &[u8] {
        bytemuck::cast_slice(self)
    }
    fn room(&mut self, len: usize) -> Option<&mut [u8]> {
        self.resize(whole::<T>(len)?, T::zeroed());
        Some(bytemuck::cast_slice_mut(self))
    }
    fn capacity(&self) -> usize {
        std::mem::size_of_val(&self[..])
    }
    fn element_size(&self) -> usize {
        std::mem::size_of::<T>()
    }
}

impl<T: Pod> Buffer for [T] {
    fn bytes(&self) -> &[u8] {
        bytemuck::cast_slice(self)
    }
    fn room(&mut self, len: usize) -> Option<&mut [u8]> {
        let elements = whole::<T>(len)?;
        self.get_mut(..elements).map(bytemuck::cast_slice_mut)
    }
    fn capacity(&self) -> usize {
        std::mem::size_of_val(self)
    }
    fn element_size(&self) -> usize {
        std::mem::size_of::<T>()
    }
}

/// An array is a slice of fixed length.
impl<T: Pod, const N: usize> Buffer for [T; N] {
    fn bytes(&self) -> &[u8] {
        self[..].bytes()
    }
    fn room(&mut self, len: usize) -> Option<&mut [u8]> {
        self[..].room(len)
    }
    fn capacity(&self) -> usize {
        self[..].capacity()
    }
    fn element_size(&self) -> usize {
        std::mem::size_of::<T>()
    }
}

/// Where received bytes land: the caller's buffer (and progress callback), a chunk's vector, or a
/// shared broadcast's memory file.
pub(crate) trait Land {
    /// Room for the whole message of `total` bytes, or `None` when the buffer cannot hold it.
    fn room(&mut self, total: usize) -> Option<&mut [u8]>;
    /// Notes that `done` of the `total` bytes are in.
    fn progressed(&mut self, done: usize, total: usize);
    /// Copies `piece` to `offset` of the message (when the buffer holds it) and notes the progress.
    fn put(&mut self, total: usize, offset: usize, piece: &[u8]) {
        if let Some(room) = self.room(total) {
            room[offset..offset + piece.len()].copy_from_slice(piece);
        }
        self.progressed(offset + piece.len(), total);
    }
}

/// A received chunk lands in a vector, sized to it.
impl Land for Vec<u8> {
    fn room(&mut self, total: usize) -> Option<&mut [u8]> {
        self.resize(total, 0);
        Some(self)
    }

    fn progressed(&mut self, _done: usize, _total: usize) {}
}

/// The caller's buffer and progress callback, and whether the buffer held the message.
pub(super) struct Landing<'b, B: ?Sized, P> {
    buffer: &'b mut B,
    progress: P,
    fits: bool,
}

impl<'b, B: Buffer + ?Sized, P: FnMut(usize, usize)> Landing<'b, B, P> {
    pub(super) fn new(buffer: &'b mut B, progress: P) -> Self {
        Self { buffer, progress, fits: true }
    }

    /// `total`, when the buffer held the message; else the error saying it did not.
    pub(super) fn fitted(self, what: &'static str, total: usize) -> Result<usize> {
        match self.fits {
            true => Ok(total),
            false => Err(misfit(what, total, &*self.buffer)),
        }
    }
}

impl<B: Buffer + ?Sized, P: FnMut(usize, usize)> Land for Landing<'_, B, P> {
    fn room(&mut self, total: usize) -> Option<&mut [u8]> {
        // A Vec is resized on the first piece only; a slice either holds the whole message or nothing.
        let room = self.buffer.room(total);
        self.fits &= room.is_some();
        room
    }

    fn progressed(&mut self, done: usize, total: usize) {
        (self.progress)(done, total);
    }
}

/// The pieces `data` is cut into: at least one, so that 0 bytes still make a message.
pub(super) fn pieces(data: &[u8], chunk_size: usize) -> impl Iterator<Item = (usize, &[u8])> {
    let chunk_size = chunk_size.max(1);
    let count = data.len().div_ceil(chunk_size).max(1);
    (0..count).map(move |i| {
        let start = i * chunk_size;
        (start, &data[start..data.len().min(start + chunk_size)])
    })
}

/// Makes `vec` a copy of `data`, reusing its allocation: collectives called in a loop with the same
/// output vectors allocate (and page in) their memory once.
pub(super) fn refill(vec: &mut Vec<u8>, data: &[u8]) {
    vec.clear();
    vec.extend_from_slice(data);
}

/// Puts a received chunk into `slot`: the buffer the transport received it into moves in (the
/// same-node transport's, no copy), or the bytes are copied (a ZeroMQ frame); no payload is 0 bytes.
pub(super) fn land_payload(slot: &mut Vec<u8>, chunk: Option<Payload>) {
    match chunk.map(Payload::into_vec) {
        Some(Ok(buffer)) => *slot = buffer,
        Some(Err(frame)) => refill(slot, &frame),
        None => slot.clear(),
    }
}

/// Copies `data` into `buffer` (sized to it), or says that it does not fit.
pub(crate) fn fill<B: Buffer + ?Sized>(what: &'static str, buffer: &mut B, data: &[u8]) -> Result<usize> {
    match buffer.room(data.len()) {
        Some(room) => room.copy_from_slice(data),
        None => return Err(misfit(what, data.len(), buffer)),
    }
    Ok(data.len())
}

/// Why `needed` arriving bytes do not fit `buffer`: they make no whole elements, or too many.
pub(super) fn misfit<B: Buffer + ?Sized>(op: &'static str, needed: usize, buffer: &B) -> Error {
    let element_size = buffer.element_size();
    match element_size != 0 && needed.is_multiple_of(element_size) {
        true => Error::ReceiveBufferTooSmall { op, needed, capacity: buffer.capacity() },
        false => Error::NotWholeElements { op, bytes: needed, element_size },
    }
}

pub(super) fn wrong_chunk_count(op: &'static str, given: usize, ranks: usize) -> Error {
    Error::WrongChunkCount { op, given, ranks }
}

/// The largest of `chunks`, in bytes.
pub(super) fn largest(chunks: &[&[u8]]) -> usize {
    chunks.iter().map(|c| c.len()).max().unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mesh::config::CHUNK_SIZE;

    #[test]
    fn pieces_cover_the_data_and_empty_data_is_one_piece() {
        assert_eq!(pieces(&[], CHUNK_SIZE).count(), 1);
        let data = vec![0u8; 2 * CHUNK_SIZE + 3];
        let offsets: Vec<_> = pieces(&data, CHUNK_SIZE).map(|(o, p)| (o, p.len())).collect();
        assert_eq!(offsets, [(0, CHUNK_SIZE), (CHUNK_SIZE, CHUNK_SIZE), (2 * CHUNK_SIZE, 3)]);
    }
}
