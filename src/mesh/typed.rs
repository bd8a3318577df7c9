//! Typed data: any plain-data element type ([`Pod`], from the `bytemuck` crate: integers, floats, and
//! `#[repr(C)]` structs that derive it) moves as its own bytes, with no conversion copy; and the
//! identity of an element type that a collective call carries, so that ranks that name different types
//! are told apart.

#![forbid(unsafe_code)]

use std::borrow::Cow;
use std::fmt;

pub use bytemuck::Pod;

use crate::error::{Error, Result};

/// The element type a call names, as its messages carry it: the type's size and a hash of its name
/// (two types of one size tell apart by name; ranks of one program name a type alike).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(crate) struct Datatype {
    /// The size of one element, in bytes.
    pub(crate) size: u32,
    /// The FNV-1a hash of the type's name.
    pub(crate) name: u32,
}

/// The element types a peer's call is named by in an error: the others show as their size.
const KNOWN: [&str; 14] =
    ["u8", "i8", "u16", "i16", "u32", "i32", "u64", "i64", "u128", "i128", "usize", "isize", "f32", "f64"];

impl Datatype {
    /// The identity of `T`.
    pub(crate) fn of<T>() -> Self {
        let size = u32::try_from(std::mem::size_of::<T>()).unwrap_or(u32::MAX);
        Self { size, name: fnv1a(std::any::type_name::<T>()) }
    }
}

impl fmt::Display for Datatype {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match KNOWN.iter().find(|known| fnv1a(known) == self.name) {
            Some(name) => f.write_str(name),
            None => write!(f, "a {}-byte type", self.size),
        }
    }
}

/// The 32-bit FNV-1a hash of `text`.
fn fnv1a(text: &str) -> u32 {
    text.bytes().fold(0x811c_9dc5, |hash, byte| (hash ^ u32::from(byte)).wrapping_mul(0x0100_0193))
}

/// The elements `bytes` hold, in place when they lie aligned for `T`, else copied (a received buffer
/// is aligned as its allocator made it); an error when they make no whole number of elements.
pub(crate) fn elements<'b, T: Pod>(op: &'static str, bytes: &'b [u8]) -> Result<Cow<'b, [T]>> {
    let element_size = std::mem::size_of::<T>();
    if element_size == 0 || !bytes.len().is_multiple_of(element_size) {
        return Err(Error::NotWholeElements { op, bytes: bytes.len(), element_size });
    }
    Ok(match bytemuck::try_cast_slice(bytes) {
        Ok(elements) => Cow::Borrowed(elements),
        Err(_) => Cow::Owned(bytemuck::pod_collect_to_vec(bytes)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn types_are_told_apart_by_name_and_size_and_named_when_known() {
        assert_eq!(Datatype::of::<f64>(), Datatype::of::<f64>());
        assert_ne!(Datatype::of::<f64>(), Datatype::of::<u64>());
        assert_ne!(Datatype::of::<f64>(), Datatype::of::<f32>());
        assert_eq!(Datatype::of::<f64>().to_string(), "f64");
        assert_eq!(Datatype::of::<[f32; 3]>().to_string(), "a 12-byte type");
        assert_eq!(Datatype::of::<u8>().to_string(), "u8");
    }

    #[test]
    fn bytes_become_elements_only_when_whole() {
        let values = [1.5f64, -2.0];
        let bytes: &[u8] = bytemuck::cast_slice(&values);
        assert_eq!(&*elements::<f64>("test", bytes).unwrap(), &values);
        // Misaligned bytes are copied out, not refused.
        let mut shifted = [0u8; 17];
        shifted[1..].copy_from_slice(bytes);
        assert_eq!(&*elements::<f64>("test", &shifted[1..]).unwrap(), &values);
        let error = elements::<f64>("all_reduce", &bytes[..13]).unwrap_err();
        assert_eq!(error, Error::NotWholeElements { op: "all_reduce", bytes: 13, element_size: 8 });
    }
}
