//! The libraries compared, the lines each benchmark draws, and the point-to-point calls of each library.

use lightbeam::mesh::{Mesh, Rank, Source, Tag};
use lightbeam::Transport;
use mpi::point_to_point::{Source as _, Status};
use mpi::topology::SimpleCommunicator;
use mpi::traits::*;

use crate::raw::{Outgoing, RawMesh};

/// The tag of every Lightbeam point-to-point message the benchmark sends.
pub(crate) const TAG: Tag = Tag(0x0b);

/// A library under test.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Library {
    /// Lightbeam, through one of the two meshes the benchmark forms.
    Lightbeam(Meshed),
    Zmq,
    Mpi,
}

/// Which of the benchmark's two Lightbeam meshes a series goes through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Meshed {
    /// The default mesh: ranks of one node talk through shared memory (unless `LIGHTBEAM_SAME_NODE`
    /// says otherwise).
    Default,
    /// A mesh with ZeroMQ forced between every pair of ranks, as before the same-node transport.
    ZeroMq,
}

impl Meshed {
    const BOTH: [Self; 2] = [Self::Default, Self::ZeroMq];
}

/// One line of a table: a library, whether its sends give their buffers away (zero-copy) or lend
/// them (the library copies what it must keep), and whether Lightbeam's calls are its non-blocking ones
/// (started in a scope, then waited for).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Series {
    pub(crate) library: Library,
    pub(crate) gives: bool,
    pub(crate) nonblocking: bool,
}

impl Series {
    const fn blocking(library: Library, gives: bool) -> Self {
        Self { library, gives, nonblocking: false }
    }

    pub(crate) const LIGHTBEAM: Self = Self::blocking(Library::Lightbeam(Meshed::Default), false);
    pub(crate) const LIGHTBEAM_ZMQ: Self = Self::blocking(Library::Lightbeam(Meshed::ZeroMq), false);
    pub(crate) const LIGHTBEAM_OWNED: Self = Self::blocking(Library::Lightbeam(Meshed::Default), true);
    /// Lightbeam's non-blocking calls on the default mesh (`Mesh::scope`, a start and a wait).
    pub(crate) const LIGHTBEAM_NB: Self = Self { nonblocking: true, ..Self::LIGHTBEAM };
    pub(crate) const ZMQ_COPY: Self = Self::blocking(Library::Zmq, false);
    pub(crate) const ZMQ_ZERO_COPY: Self = Self::blocking(Library::Zmq, true);
    /// MPI: its blocking calls, or its immediate ones where the benchmark says so.
    pub(crate) const MPI: Self = Self::blocking(Library::Mpi, false);

    /// Point-to-point benchmarks measure every way to send.
    pub(crate) const POINT_TO_POINT: [Self; 6] = [
        Self::LIGHTBEAM,
        Self::LIGHTBEAM_ZMQ,
        Self::LIGHTBEAM_OWNED,
        Self::ZMQ_COPY,
        Self::ZMQ_ZERO_COPY,
        Self::MPI,
    ];
    /// Collectives take the caller's buffers, as MPI's do: each library sends from them.
    pub(crate) const COLLECTIVE: [Self; 4] =
        [Self::LIGHTBEAM, Self::LIGHTBEAM_ZMQ, Self::ZMQ_COPY, Self::MPI];
    /// Every rank ping-pongs with a partner at once: both meshes, raw ZeroMQ and MPI, each sending from
    /// the caller's buffer.
    pub(crate) const PAIRS: [Self; 4] = [Self::LIGHTBEAM, Self::LIGHTBEAM_ZMQ, Self::ZMQ_COPY, Self::MPI];
    /// The halo exchange: both meshes, and MPI's non-blocking calls.
    pub(crate) const HALO: [Self; 3] = [Self::LIGHTBEAM, Self::LIGHTBEAM_ZMQ, Self::MPI];
    /// The typed collectives and the barrier: both meshes and MPI's own calls (no raw ZeroMQ version).
    pub(crate) const TYPED: [Self; 3] = [Self::LIGHTBEAM, Self::LIGHTBEAM_ZMQ, Self::MPI];
    /// The shared broadcast has no counterpart but MPI's broadcast.
    pub(crate) const SHARED: [Self; 2] = [Self::LIGHTBEAM, Self::MPI];
    /// The non-blocking benchmarks: Lightbeam's blocking and non-blocking calls, and MPI's.
    pub(crate) const NONBLOCKING: [Self; 3] = [Self::LIGHTBEAM, Self::LIGHTBEAM_NB, Self::MPI];
    /// Every series some benchmark measures (what `--series` may name).
    pub(crate) const KNOWN: [Self; 7] = [
        Self::LIGHTBEAM,
        Self::LIGHTBEAM_ZMQ,
        Self::LIGHTBEAM_OWNED,
        Self::LIGHTBEAM_NB,
        Self::ZMQ_COPY,
        Self::ZMQ_ZERO_COPY,
        Self::MPI,
    ];

    pub(crate) fn is_lightbeam(self) -> bool {
        matches!(self.library, Library::Lightbeam(_))
    }

    pub(crate) fn name(self) -> &'static str {
        match (self.library, self.gives, self.nonblocking) {
            (Library::Lightbeam(Meshed::Default), false, false) => "lightbeam",
            (Library::Lightbeam(Meshed::ZeroMq), false, false) => "lightbeam-zmq",
            (Library::Lightbeam(Meshed::Default), true, false) => "lightbeam-owned",
            (Library::Lightbeam(Meshed::ZeroMq), true, false) => "lightbeam-zmq-owned",
            (Library::Lightbeam(Meshed::Default), _, true) => "lightbeam-nb",
            (Library::Lightbeam(Meshed::ZeroMq), _, true) => "lightbeam-zmq-nb",
            (Library::Zmq, false, _) => "zmq-copy",
            (Library::Zmq, true, _) => "zmq-zerocopy",
            (Library::Mpi, _, _) => "mpi",
        }
    }
}

/// Everything the benchmarks talk over: MPI's world, Lightbeam's two meshes and the raw ZeroMQ sockets.
#[derive(Clone, Copy)]
pub(crate) struct Peers<'a> {
    pub(crate) world: &'a SimpleCommunicator,
    /// The default mesh, which also carries the benchmark's own coordination.
    pub(crate) mesh: &'a Mesh,
    /// The mesh with ZeroMQ forced between every pair.
    pub(crate) zmq_mesh: &'a Mesh,
    pub(crate) raw: &'a RawMesh,
}

impl<'a> Peers<'a> {
    /// The mesh `meshed` names.
    pub(crate) fn lightbeam(&self, meshed: Meshed) -> &'a Mesh {
        match meshed {
            Meshed::Default => self.mesh,
            Meshed::ZeroMq => self.zmq_mesh,
        }
    }

    /// For a Lightbeam series, the transport its mesh uses between ranks 0 and 1 (`shm` or `zeromq`):
    /// as rank 0 sees its link to rank 1 and rank 1 its link to rank 0 (other ranks name their link to
    /// rank 0; only rank 0 reports). `None` for other libraries and on a single rank.
    pub(crate) fn link(&self, series: Series) -> Option<&'static str> {
        let Library::Lightbeam(meshed) = series.library else { return None };
        let other = Rank(usize::from(self.rank() == 0));
        Some(match self.lightbeam(meshed).transport_to(other).ok()? {
            Transport::SharedMemory => "shm",
            Transport::ZeroMq => "zeromq",
            _ => "other",
        })
    }
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
        let libraries = Meshed::BOTH.map(Library::Lightbeam).into_iter().chain([Library::Zmq]);
        for library in libraries {
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
            (Library::Lightbeam(m), Outgoing::Lent(bytes)) => self.lightbeam(m).send(Rank(to), TAG, bytes),
            (Library::Lightbeam(m), Outgoing::Given(bytes)) => {
                self.lightbeam(m).send_owned(Rank(to), TAG, bytes)
            }
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
            Library::Lightbeam(meshed) => {
                let message = self.lightbeam(meshed).recv(Source::Rank(Rank(from)), TAG);
                message.map_err(|e| e.to_string())?.data().len()
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
