//! The mesh's value types: ranks, tags, where a receive takes from, and a received message.

#![forbid(unsafe_code)]

use std::fmt;

use crate::transport::Payload;

/// A process's rank in the mesh (its MPI rank). It displays as its number alone: `format!("rank {r}")`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Rank(pub usize);

impl fmt::Display for Rank {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// A message tag chosen by the application; messages match by source and tag.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct Tag(pub u32);

/// Where a receive takes its message from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// Only from this rank.
    Rank(Rank),
    /// From whichever rank sends first.
    Any,
}

impl Source {
    pub(crate) fn admits(self, rank: Rank) -> bool {
        self == Self::Any || self == Self::Rank(rank)
    }
}

impl From<Rank> for Source {
    fn from(rank: Rank) -> Self {
        Self::Rank(rank)
    }
}

/// A received point-to-point message: where it came from, its tag, and its bytes in place.
#[derive(Debug)]
pub struct Message {
    pub(crate) source: Rank,
    pub(crate) tag: Tag,
    pub(crate) payload: Option<Payload>,
}

impl Message {
    /// The sending rank.
    pub fn source(&self) -> Rank {
        self.source
    }

    /// The message's tag.
    pub fn tag(&self) -> Tag {
        self.tag
    }

    /// The bytes received, read in place.
    pub fn data(&self) -> &[u8] {
        self.payload.as_deref().unwrap_or_default()
    }

    /// The message as elements of `T` (sent as a slice of `T`): in place when its bytes lie aligned for
    /// `T`, else copied out. An error when the bytes make no whole number of elements.
    pub fn elements<T: bytemuck::Pod>(&self) -> crate::Result<std::borrow::Cow<'_, [T]>> {
        crate::mesh::typed::elements("receive", self.data())
    }
}
