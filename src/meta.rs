//! [`LbmMeta`]: the bulk descriptors of a message plus the user's own serde fields.

#![forbid(unsafe_code)]

use serde::{de::DeserializeOwned, Serialize};

use crate::bulk::Bulk;
use crate::error::{Error, Result};
use crate::shm::PeerRegion;
use crate::wire::{self, BulkDescriptor};

/// The metadata of one message: its bulks and the application's own fields `M`.
///
/// This is the C++ `LbmMeta` with composition in place of inheritance: instead of deriving from `LbmMeta`
/// and writing a cereal function, derive `Serialize` and `Deserialize` on your own struct and put it in
/// `custom`. `M = ()` is plain `LbmMeta` with no extra fields.
#[derive(Debug, Default)]
pub struct LbmMeta<'a, M = ()> {
    /// The message's bulks, in order. On receive, `recv_metadata` fills in descriptors; replace each with a
    /// buffer from `Server::expose` before `recv_bulks`.
    pub bulks: Vec<Bulk<'a>>,
    /// The application's own fields, sent in the metadata frame.
    pub custom: M,
}

impl<'a, M> LbmMeta<'a, M> {
    /// Metadata with the given custom fields and no bulks yet.
    pub fn new(custom: M) -> Self {
        Self { bulks: Vec::new(), custom }
    }

    /// Adds a bulk and returns `self`, for building a message in one expression.
    pub fn with_bulk(mut self, bulk: Bulk<'a>) -> Self {
        self.bulks.push(bulk);
        self
    }

    /// The sum of the bulk sizes.
    pub fn total_size(&self) -> usize {
        self.bulks.iter().map(Bulk::size).sum()
    }
}

/// What a transport needs from a message's metadata, as an object-safe trait so that `dyn Client` and
/// `dyn Server` can take any `LbmMeta<M>`. You do not implement it: [`LbmMeta`] does.
pub trait Metadata {
    /// The bulks, in order.
    fn bulks(&self) -> &[Bulk<'_>];
    /// Appends the encoded custom fields to `out`.
    fn encode_custom(&self, out: &mut Vec<u8>) -> Result<()>;
    /// Replaces the bulks with the received descriptors and decodes the custom fields from `custom`.
    fn set_received(&mut self, descriptors: &[BulkDescriptor], custom: &[u8]) -> Result<()>;
    /// How many bytes bulk `index` can receive, if it was exposed for receiving.
    fn receive_capacity(&self, index: usize) -> Option<usize>;
    /// Writes received bytes into bulk `index`.
    fn write_received(&mut self, index: usize, data: &[u8]) -> Result<()>;
    /// Copies a received shared-memory region into bulk `index`.
    fn write_received_from(&mut self, index: usize, source: &PeerRegion) -> Result<()>;
}

impl<M: Serialize + DeserializeOwned> Metadata for LbmMeta<'_, M> {
    fn bulks(&self) -> &[Bulk<'_>] {
        &self.bulks
    }

    fn encode_custom(&self, out: &mut Vec<u8>) -> Result<()> {
        wire::encode_custom(&self.custom, out)
    }

    fn set_received(&mut self, descriptors: &[BulkDescriptor], custom: &[u8]) -> Result<()> {
        self.custom = wire::decode_custom(custom).map_err(Error::Wire)?;
        self.bulks.clear();
        self.bulks.extend(descriptors.iter().map(received_bulk));
        Ok(())
    }

    fn receive_capacity(&self, index: usize) -> Option<usize> {
        self.bulks.get(index)?.capacity()
    }

    fn write_received(&mut self, index: usize, data: &[u8]) -> Result<()> {
        let bulk = self.bulks.get_mut(index).ok_or(Error::NoPendingMessage)?;
        bulk.write_received(data)
    }

    fn write_received_from(&mut self, index: usize, source: &PeerRegion) -> Result<()> {
        let bulk = self.bulks.get_mut(index).ok_or(Error::NoPendingMessage)?;
        bulk.write_received_from(source)
    }
}

/// The bulk a receiver sees for a received descriptor: its size and flags, and where a descriptor-only
/// bulk lies.
pub(crate) fn received_bulk<'a>(descriptor: &BulkDescriptor) -> Bulk<'a> {
    match &descriptor.location {
        Some(location) => Bulk::located(descriptor.size, descriptor.flags, location.clone()),
        None => Bulk::descriptor(descriptor.size, descriptor.flags),
    }
}
