//! What every MPI test program shares: start MPI, run one named scenario, abort the job on failure.
#![allow(dead_code, unreachable_pub)]

use std::time::Duration;

use lightbeam::mesh::{Mesh, MeshConfig};
use mpi::topology::SimpleCommunicator;
use mpi::traits::*;

/// A scenario: runs on every rank, returns an error to fail the job.
pub type Scenario = fn(&SimpleCommunicator) -> Result<(), String>;

/// Runs the scenario named by the first argument; exits non-zero (aborting every rank) when it fails.
/// Installs no panic hook of its own: a mesh installs it (`MeshConfig::abort_on_panic`), and the panic
/// scenarios of `mesh.rs` test exactly that.
pub fn main_with(scenarios: &[(&str, Scenario)]) {
    let universe = mpi::initialize().expect("MPI initializes once");
    let world = universe.world();
    let name = std::env::args().nth(1).unwrap_or_default();
    let Some((_, scenario)) = scenarios.iter().find(|(n, _)| *n == name) else {
        let names: Vec<_> = scenarios.iter().map(|(n, _)| *n).collect();
        eprintln!("unknown scenario {name:?}; expected one of {names:?}");
        world.abort(2);
    };
    log::set_logger(&STDERR_LOGGER).map(|()| log::set_max_level(log::LevelFilter::Warn)).ok();
    match scenario(&world) {
        Ok(()) => println!("rank {}: {name} ok", world.rank()),
        Err(message) => {
            report(&format!("rank {}: {name} FAILED: {message}", world.rank()));
            world.abort(1);
        }
    }
}

/// Prints the library's warnings on standard error, one write per line (the library logs through the
/// `log` facade and leaves where lines go to the application).
struct StderrLogger;

static STDERR_LOGGER: StderrLogger = StderrLogger;

impl log::Log for StderrLogger {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        metadata.level() <= log::Level::Warn
    }
    fn log(&self, record: &log::Record<'_>) {
        if self.enabled(record.metadata()) {
            report(&format!("{}", record.args()));
        }
    }
    fn flush(&self) {}
}

/// A mesh on loopback with ephemeral ports and a deadline short enough for tests.
pub fn mesh(world: &SimpleCommunicator, timeout: Duration) -> Result<Mesh, String> {
    let config = MeshConfig::default().with_host("127.0.0.1").with_timeout(timeout);
    Mesh::bootstrap(world, config).map_err(|e| e.to_string())
}

/// Fails with `message` unless `condition` holds.
pub fn ensure(condition: bool, message: impl FnOnce() -> String) -> Result<(), String> {
    if condition {
        Ok(())
    } else {
        Err(message())
    }
}

/// Prints `line` on standard error in one write, so that the lines of ranks sharing mpirun's pipe never
/// interleave mid-line (`eprintln!` writes each formatted piece separately).
pub fn report(line: &str) {
    let _ = std::io::Write::write_all(&mut std::io::stderr(), format!("{line}\n").as_bytes());
}
