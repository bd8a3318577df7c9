//! The libraries compared, the lines each benchmark draws, and the point-to-point calls of each library.

use lightbeam::mesh::{Mesh, Rank, Source, Tag};
use mpi::point_to_point::{Source as _, Status};
use mpi::topology::SimpleCommunicator;
use mpi::traits::*;
use serde::Serialize;

use crate::raw::{Outgoing, RawMesh};

/// The tag of every Lightbeam point-to-point message the benchmark sends.
const TAG: Tag = Tag(0x0b);

/// A library under test.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Library {
    Lightbeam,
    Zmq,
    Mpi,
}

/// One line of a table: a library, and whether its sends give their buffers away (zero-copy) or lend
/// them (the library copies what it must keep).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Series {
    pub(crate) library: Library,
    pub(crate) gives: bool,
}

impl Series {
    pub(crate) const LIGHTBEAM: Self = Self { library: Library::Lightbeam, gives: false };
    pub(crate) const LIGHTBEAM_OWNED: Self = Self { library: Library::Lightbeam, gives: true };
    pub(crate) const ZMQ_COPY: Self = Self { library: Library::Zmq, gives: false };
    pub(crate) const ZMQ_ZERO_COPY: Self = Self { library: Library::Zmq, gives: true };
    pub(crate) const MPI: Self = Self { library: Library::Mpi, gives: false };

    /// Point-to-point benchmarks measure every way to send.
    pub(crate) const POINT_TO_POINT: [Self; 5] =
        [Self::LIGHTBEAM, Self::LIGHTBEAM_OWNED, Self::ZMQ_COPY, Self::ZMQ_ZERO_COPY, Self::MPI];
    /// Collectives take the caller's buffers, as MPI's do: each library sends from them.
    pub(crate) const COLLECTIVE: [Self; 3] = [Self::LIGHTBEAM, Self::ZMQ_COPY, Self::MPI];

    pub(crate) fn name(self) -> &'static str {
        match (self.library, self.gives) {
            (Library::Lightbeam, false) => "lightbeam",
            (Library::Lightbeam, true) => "lightbeam-owned",
            (Library::Zmq, false) => "zmq-copy",
            (Library::Zmq, true) => "zmq-zerocopy",
            (Library::Mpi, _) => "mpi",
        }
    }
}

/// Everything the benchmarks talk over: MPI's world, Lightbeam's mesh and the raw ZeroMQ sockets.
#[derive(Clone, Copy)]
pub(crate) struct Peers<'a> {
    pub(crate) world: &'a SimpleCommunicator,
    pub(crate) mesh: &'a Mesh,
    pub(crate) raw: &'a RawMesh,
}

impl Peers<'_> {
    pub(crate) fn rank(&self) -> usize {
        self.mesh.rank().0
    }

    pub(crate) fn size(&self) -> usize {
        self.mesh.size()
    }

    /// Connects every pair with Lightbeam and raw ZeroMQ (both connect on first use) by sending each rank
    /// a few bytes and receiving theirs, so no timed iteration pays for a connection.
    pub(crate) fn connect_all(&self) -> Result<(), String> {
        let (me, n) = (self.rank(), self.size());
        for library in [Library::Lightbeam, Library::Zmq] {
            for peer in (0..n).filter(|&p| p != me) {
                self.send(library, peer, Outgoing::Lent(b"hello"))?;
            }
            for peer in (0..n).filter(|&p| p != me) {
                self.recv(library, peer, 5, &mut [])?;
            }
        }
        self.world.barrier();
        Ok(())
    }

    /// Sends one message to `to` with `library`.
    pub(crate) fn send(&self, library: Library, to: usize, data: Outgoing<'_>) -> Result<(), String> {
        match (library, data) {
            (Library::Lightbeam, Outgoing::Lent(bytes)) => self.mesh.send(Rank(to), TAG, bytes),
            (Library::Lightbeam, Outgoing::Given(bytes)) => self.mesh.send_owned(Rank(to), TAG, bytes),
            (Library::Zmq, data) => return self.raw.send(to, data),
            (Library::Mpi, data) => {
                self.world.process_at_rank(to as i32).send(data.bytes());
                Ok(())
            }
        }
        .map_err(|e| e.to_string())
    }

    /// Receives one message of `size` bytes from `from` with `library`: in place for Lightbeam and ZeroMQ,
    /// into `buffer` for MPI (its receive needs one).
    pub(crate) fn recv(
        &self,
        library: Library,
        from: usize,
        size: usize,
        buffer: &mut [u8],
    ) -> Result<(), String> {
        let got = match library {
            Library::Lightbeam => {
                self.mesh.recv(Source::Rank(Rank(from)), TAG).map_err(|e| e.to_string())?.data().len()
            }
            Library::Zmq => self.raw.recv(from)?.len(),
            Library::Mpi => {
                received(self.world.process_at_rank(from as i32).receive_into(&mut buffer[..size]))
            }
        };
        check_length(got, size, from)
    }
}

/// The byte count of an MPI receive.
pub(crate) fn received(status: Status) -> usize {
    status.count(u8::equivalent_datatype()) as usize
}

/// Fails unless a message of `expected` bytes arrived whole.
pub(crate) fn check_length(got: usize, expected: usize, from: usize) -> Result<(), String> {
    if got == expected {
        Ok(())
    } else {
        Err(format!("{got} bytes arrived from rank {from} where {expected} were sent"))
    }
}
