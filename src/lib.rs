//! Lightbeam: two-phase bulk messaging for HPC ranks over ZeroMQ, bootstrapped by MPI.
//!
//! A client [`exposes`](Client::expose) memory as [`Bulk`]s and [`sends`](Client::send) a message: the
//! metadata (bulk sizes and flags plus your own serde fields) and then the payloads. A server receives a
//! whole, checked message ([`Server::recv_message`]), reads its metadata, exposes buffers of the announced
//! sizes, and copies the payloads into them ([`Received::recv_bulks`]); or, as the C++ guide does, calls
//! [`Server::recv_metadata`] then [`Server::recv_bulks`] on one thread.
//!
//! ```
//! use lightbeam::{LbmMeta, Transport, TransportFactory};
//! use std::time::Duration;
//!
//! # fn main() -> lightbeam::Result<()> {
//! let server = TransportFactory::server("hello", Transport::ZeroMq, "inproc", 0)?;
//! let client = TransportFactory::client("hello", Transport::ZeroMq, "inproc", 0)?;
//!
//! let message = b"Hello, Lightbeam!";
//! let mut meta = LbmMeta::new(());
//! meta.bulks.push(client.expose(message, Default::default()));
//! assert_eq!(client.send(&meta).into_result()?, message.len());
//!
//! let received = server.recv_message(Duration::from_secs(5))?;
//! let mut meta = received.metadata::<()>()?;
//! let mut buffer = vec![0; meta.bulks[0].size()];
//! meta.bulks[0] = server.expose(&mut buffer, Default::default());
//! received.recv_bulks(&mut meta)?;
//! assert_eq!(buffer, message);
//! # Ok(())
//! # }
//! ```
#![doc(test(attr(deny(warnings))))]
#![deny(missing_docs)]
#![deny(unsafe_code)]

pub mod bulk;
pub mod error;
pub mod event;
pub mod mesh;
pub mod meta;
pub mod shm;
mod sync;
pub mod transport;
/// The frame format, sans IO. Public only for the fuzz targets and the tests that forge frames as a
/// hostile peer would; not part of the supported API.
#[doc(hidden)]
pub mod wire;

pub use bulk::{Bulk, BulkFlags};
/// The `bytemuck` crate whose [`Pod`](bytemuck::Pod) marks the plain-data element types collectives and
/// messages move: `#[derive(lightbeam::bytemuck::Pod, lightbeam::bytemuck::Zeroable)]` on a
/// `#[repr(C)]` struct (or depend on `bytemuck` yourself).
pub use bytemuck;
pub use error::{Error, Result, WireError};
pub use event::Event;
pub use meta::{LbmMeta, Metadata};
/// The `mpi` crate (rsmpi) this build of Lightbeam uses: call `lightbeam::mpi::initialize()` so that
/// your program and Lightbeam always agree on its version.
#[cfg(feature = "mpi")]
pub use mpi;
pub use transport::{
    Client, Endpoint, Options, Payload, Protocol, Received, Server, SharedMemoryAccess, SharedMemoryClient,
    SharedMemoryServer, ShmOptions, SingleCopies, Transport, TransportFactory, ZeroMqClient, ZeroMqServer,
    DEFAULT_MAX_MESSAGE_SIZE,
};

/// The README's code blocks, compiled and run as doc tests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
