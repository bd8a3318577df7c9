//! What the in-process tests share: a job of ranks as threads of this process, each with its own mesh.

#![allow(dead_code)]

pub(crate) mod typed;

use std::time::Duration;

use lightbeam::mesh::{InProcess, Mesh, MeshConfig, Rank};

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

/// Every collective of the mesh at one size, each rank checking what it received.
pub(crate) fn every_collective(mesh: &Mesh, len: usize) -> lightbeam::Result<()> {
    let (me, n) = (mesh.rank().0, mesh.size());
    for root in [0, n - 1] {
        let mut buffer = if me == root { data(len, root) } else { Vec::new() };
        assert_eq!(mesh.broadcast_into(Rank(root), &mut buffer)?, len);
        assert!(buffer == data(len, root), "rank {me}: broadcast of {len} bytes from {root}");
    }
    let chunk_of = |rank: usize| data(len + rank, 1000 + rank);
    let mut mine = Vec::new();
    if me == 0 {
        let chunks: Vec<Vec<u8>> = (0..n).map(chunk_of).collect();
        let parts: Vec<&[u8]> = chunks.iter().map(Vec::as_slice).collect();
        mesh.scatter_into_root(&parts, &mut mine)?;
    } else if n > 1 {
        mesh.scatter_into(Rank(0), &mut mine)?;
    } else {
        mine = chunk_of(0);
    }
    assert!(mine == chunk_of(me), "rank {me}: scatter of {len} bytes");
    let root = n / 2;
    if me == root {
        let mut gathered = Vec::new();
        mesh.gather_into_root(&chunk_of(me), &mut gathered)?;
        assert!(gathered.iter().enumerate().all(|(r, c)| *c == chunk_of(r)), "gather of {len} bytes");
    } else {
        mesh.gather_into(Rank(root), &chunk_of(me))?;
    }
    let to = |from: usize, to: usize| data(len + to, from * 100 + to);
    let chunks: Vec<Vec<u8>> = (0..n).map(|r| to(me, r)).collect();
    let parts: Vec<&[u8]> = chunks.iter().map(Vec::as_slice).collect();
    let mut received = Vec::new();
    mesh.all_to_all_into(&parts, &mut received)?;
    assert!(
        received.iter().enumerate().all(|(r, c)| *c == to(r, me)),
        "rank {me}: all-to-all of {len} bytes"
    );
    Ok(())
}
