//! The MPI bootstrap: any communicator's ranks, gathered with MPI's own all-gather. MPI is used for this
//! and nothing else.

#![forbid(unsafe_code)]

use std::time::{Duration, Instant};

use mpi::datatype::PartitionMut;
use mpi::request::{Request, Scope};
use mpi::traits::*;

use super::Bootstrap;
use crate::error::{Error, Result};

/// The ranks of an MPI communicator, for [`Mesh::bootstrap_with`](super::super::Mesh::bootstrap_with)
/// (which [`Mesh::bootstrap`](super::super::Mesh::bootstrap) calls).
#[derive(Debug)]
pub struct Mpi<'c, C: Communicator>(pub &'c C);

impl<C: Communicator> Bootstrap for Mpi<'_, C> {
    fn rank(&self) -> usize {
        self.0.rank() as usize
    }

    fn size(&self) -> usize {
        self.0.size() as usize
    }

    /// Past `deadline` the job is aborted: a rank that never joins the bootstrap cannot be recovered
    /// from inside MPI, and ending the job beats every rank waiting forever.
    fn all_gather(&self, mine: &[u8], deadline: Instant) -> Result<Vec<Vec<u8>>> {
        all_gather_strings(self.0, mine, deadline)
    }
}

/// Waits for an MPI request until `deadline`. Past it the job is aborted: a rank that never joins the
/// bootstrap cannot be recovered from inside MPI, and ending the job beats every rank waiting forever.
fn complete_or_abort<'a, C: Communicator, R: ?Sized, S: Scope<'a>>(
    comm: &C,
    mut request: Request<'a, R, S>,
    deadline: Instant,
    what: &str,
) {
    loop {
        request = match request.test() {
            Ok(_) => return,
            Err(pending) => pending,
        };
        if Instant::now() >= deadline {
            eprintln!(
                "lightbeam: rank {}: mesh bootstrap timed out {what}: a rank did not join Mesh::bootstrap \
                 within MeshConfig::timeout; aborting the job",
                comm.rank()
            );
            comm.abort(1);
        }
        std::thread::sleep(Duration::from_micros(100));
    }
}

/// All-gathers one byte string per rank, within `deadline`.
fn all_gather_strings<C: Communicator>(comm: &C, mine: &[u8], deadline: Instant) -> Result<Vec<Vec<u8>>> {
    let size = comm.size() as usize;
    let my_len = i32::try_from(mine.len()).map_err(|_| Error::Mesh("record too long".into()))?;
    let mut lengths = vec![0i32; size];
    mpi::request::scope(|scope| {
        let request = comm.immediate_all_gather_into(scope, &my_len, &mut lengths[..]);
        complete_or_abort(comm, request, deadline, "gathering record lengths");
    });
    let displacements: Vec<i32> = lengths
        .iter()
        .scan(0i32, |offset, &len| {
            let start = *offset;
            *offset += len;
            Some(start)
        })
        .collect();
    let total = lengths.iter().map(|&l| l as usize).sum();
    let mut gathered = vec![0u8; total];
    let mut partition = PartitionMut::new(&mut gathered[..], &lengths[..], &displacements[..]);
    mpi::request::scope(|scope| {
        let request = comm.immediate_all_gather_varcount_into(scope, mine, &mut partition);
        complete_or_abort(comm, request, deadline, "gathering records");
    });
    Ok(displacements
        .iter()
        .zip(&lengths)
        .map(|(&d, &l)| gathered[d as usize..(d + l) as usize].to_vec())
        .collect())
}
