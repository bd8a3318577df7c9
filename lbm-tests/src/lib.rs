//! Lightbeam's test support, not published: what the integration tests (`tests/`), the MPI test
//! programs (`mpi_tests/`), the benchmark (`lbm-bench`) and the test peers share.

pub mod mpirun;
pub mod verify;
