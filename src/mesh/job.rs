//! Helpers for the `main` of MPI programs: end the whole job on an error or a panic, so that no rank
//! waits for one that failed.

#![forbid(unsafe_code)]

use std::fmt;
use std::sync::Once;

use mpi::traits::Communicator;

/// The value of `result`; or, on an error, prints it with this rank's number and aborts the whole MPI job
/// (exit code 1) so that no other rank waits for this one. Meant for the `main` of MPI programs.
pub fn or_abort<T, E: fmt::Display, C: Communicator>(comm: &C, result: std::result::Result<T, E>) -> T {
    result.unwrap_or_else(|error| {
        // One write, so that the lines of ranks sharing mpirun's pipe never interleave mid-line.
        let line = format!("rank {}: {error}\n", comm.rank());
        let _ = std::io::Write::write_all(&mut std::io::stderr(), line.as_bytes());
        comm.abort(1)
    })
}

/// Makes a panic on any thread abort the whole MPI job (after printing the panic), so no rank waits forever.
pub fn abort_job_on_panic() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            previous(info);
            if mpi::environment::is_initialized() && !mpi::environment::is_finalized() {
                mpi::topology::SimpleCommunicator::world().abort(101);
            }
        }));
    });
}
