//! What the in-process tests share: a job of ranks as threads of this process, each with its own mesh.

#![allow(dead_code)]

use std::time::Duration;

use lightbeam::mesh::{InProcess, Mesh, MeshConfig};

/// Every wait of a job ends within this.
pub(crate) const TIMEOUT: Duration = Duration::from_secs(30);

pub(crate) fn config() -> MeshConfig {
    MeshConfig::default().with_host("127.0.0.1").with_timeout(TIMEOUT).with_abort_on_panic(false)
}

/// Runs `job` on every rank of `boots`, each a thread with its own mesh; returns each rank's result.
pub(crate) fn run<T: Send>(
    boots: Vec<InProcess>,
    config: &MeshConfig,
    job: impl Fn(&Mesh) -> lightbeam::Result<T> + Sync,
) -> Vec<lightbeam::Result<T>> {
    std::thread::scope(|scope| {
        let ranks: Vec<_> = boots
            .into_iter()
            .map(|boot| {
                let (config, job) = (config.clone(), &job);
                scope.spawn(move || Mesh::bootstrap_with(&boot, config).and_then(|mesh| job(&mesh)))
            })
            .collect();
        ranks.into_iter().map(|rank| rank.join().expect("a rank panicked")).collect()
    })
}

/// Runs `job` and fails the test, naming the rank, unless every rank succeeded.
pub(crate) fn run_ok<T: Send>(
    boots: Vec<InProcess>,
    config: &MeshConfig,
    job: impl Fn(&Mesh) -> lightbeam::Result<T> + Sync,
) -> Vec<T> {
    let results = run(boots, config, job);
    results
        .into_iter()
        .enumerate()
        .map(|(rank, r)| r.unwrap_or_else(|e| panic!("rank {rank}: {e}")))
        .collect()
}

/// Bytes that differ by `seed` and position.
pub(crate) fn data(len: usize, seed: usize) -> Vec<u8> {
    (0..len).map(|i| (i.wrapping_mul(31) ^ seed.wrapping_mul(131)) as u8).collect()
}
