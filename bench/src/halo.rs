//! The halo exchange every stencil code makes: the ranks stand on a ring, and in each iteration every
//! rank sends `size` bytes to its left and to its right neighbour and receives as many from each. With 2
//! ranks both neighbours are the same rank: it gets two messages each way, told apart by their tags.

use lbm_tests::verify::pattern;
use lightbeam::mesh::{Mesh, Rank, Source, Tag};
use mpi::point_to_point::Source as _;
use mpi::traits::*;

use crate::series::{check_length, received, Library, Peers, Series};
use crate::timing::Trial;

/// Which way a message goes round the ring; its tag (Lightbeam's and MPI's alike) says so.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Way {
    ToLeft = 0x1c,
    ToRight = 0x1d,
}

impl Way {
    /// Lightbeam's tag of a message going this way.
    fn tag(self) -> Tag {
        Tag(self as u32)
    }

    /// MPI's tag of the same.
    fn mpi_tag(self) -> mpi::Tag {
        self as mpi::Tag
    }
}

/// One rank's part of the halo exchange with one library.
pub(crate) struct Halo<'p> {
    peers: &'p Peers<'p>,
    library: Library,
    /// The neighbours on the ring: the ranks before and after this one, wrapping around.
    left: usize,
    right: usize,
    /// What this rank sends each way.
    data: Vec<u8>,
    /// Where MPI receives from each neighbour (Lightbeam reads in place).
    from_left: Vec<u8>,
    from_right: Vec<u8>,
}

impl<'p> Halo<'p> {
    /// This rank's part with `series`, `size` bytes each way.
    pub(crate) fn new(peers: &'p Peers<'p>, series: Series, size: usize) -> Self {
        let (me, n) = (peers.rank(), peers.size());
        let room = if series.library == Library::Mpi { size } else { 0 };
        Self {
            peers,
            library: series.library,
            left: (me + n - 1) % n,
            right: (me + 1) % n,
            data: pattern(size, me as u64),
            from_left: vec![0; room],
            from_right: vec![0; room],
        }
    }

    /// Lightbeam as a stencil code writes it: both sends, then both receives. The sends do not wait for
    /// the neighbours' receives: they queue, or take in this rank's own messages while they wait.
    fn lightbeam(&self, mesh: &Mesh) -> Result<(), String> {
        let failed = |e: lightbeam::Error| e.to_string();
        mesh.send(Rank(self.left), Way::ToLeft.tag(), &self.data).map_err(failed)?;
        mesh.send(Rank(self.right), Way::ToRight.tag(), &self.data).map_err(failed)?;
        // The right neighbour's message went left to get here, the left neighbour's went right.
        for (from, way) in [(self.right, Way::ToLeft), (self.left, Way::ToRight)] {
            let message = mesh.recv(Source::Rank(Rank(from)), way.tag()).map_err(failed)?;
            check_length(message.data().len(), self.data.len(), from)?;
        }
        Ok(())
    }

    /// MPI as a stencil code writes it: both receives and both sends posted at once, then all four
    /// awaited.
    fn mpi(&mut self) -> Result<(), String> {
        let world = self.peers.world;
        let (left, right) =
            (world.process_at_rank(self.left as i32), world.process_at_rank(self.right as i32));
        let data = &self.data[..];
        let arrived = mpi::request::scope(|scope| {
            let from_left =
                left.immediate_receive_into_with_tag(scope, &mut self.from_left[..], Way::ToRight.mpi_tag());
            let from_right =
                right.immediate_receive_into_with_tag(scope, &mut self.from_right[..], Way::ToLeft.mpi_tag());
            let to_left = left.immediate_send_with_tag(scope, data, Way::ToLeft.mpi_tag());
            let to_right = right.immediate_send_with_tag(scope, data, Way::ToRight.mpi_tag());
            let arrived = [(self.left, from_left.wait()), (self.right, from_right.wait())];
            to_left.wait();
            to_right.wait();
            arrived
        });
        arrived.into_iter().try_for_each(|(from, status)| check_length(received(status), data.len(), from))
    }
}

impl Trial for Halo<'_> {
    fn run(&mut self) -> Result<(), String> {
        match self.library {
            Library::Lightbeam(meshed) => self.lightbeam(self.peers.lightbeam(meshed)),
            Library::Mpi => self.mpi(),
            Library::Zmq => unreachable!("the halo exchange has no raw ZeroMQ series"),
        }
    }
}
