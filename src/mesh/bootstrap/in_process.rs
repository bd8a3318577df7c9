//! Ranks as threads of one process: a mesh without MPI, for tests and for programs that run every rank
//! in one process. The ranks still talk over the real transports (shared memory between ranks of one
//! node, ZeroMQ over tcp between nodes); only the bootstrap's all-gather goes through this process's
//! memory. Ranks may be placed on named nodes, so that one process also runs the collectives that span
//! nodes.

#![forbid(unsafe_code)]

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Instant;

use super::Bootstrap;
use crate::error::{Error, Result};
use crate::sync::lock;

/// One rank of a job whose ranks are threads of this process. Make every rank's with
/// [`InProcess::ranks`] or [`InProcess::on_nodes`] and hand each to its own thread, which forms its mesh
/// with [`Mesh::bootstrap_with`](super::super::Mesh::bootstrap_with):
///
/// ```
/// use lightbeam::mesh::{InProcess, Mesh, MeshConfig, Rank};
///
/// # fn main() -> lightbeam::Result<()> {
/// let config = MeshConfig::default().with_host("127.0.0.1");
/// let sums = std::thread::scope(|scope| {
///     let ranks = InProcess::ranks(3).into_iter().map(|boot| {
///         let config = config.clone();
///         scope.spawn(move || -> lightbeam::Result<usize> {
///             let mesh = Mesh::bootstrap_with(&boot, config)?;
///             let mut data = if mesh.rank() == Rank(0) { vec![7u8; 1000] } else { Vec::new() };
///             mesh.broadcast_into(Rank(0), &mut data)?;
///             Ok(data.iter().map(|&b| b as usize).sum())
///         })
///     });
///     ranks.collect::<Vec<_>>().into_iter().map(|rank| rank.join().unwrap()).collect::<Vec<_>>()
/// });
/// assert!(sums.into_iter().all(|sum| sum == Ok(7000)));
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct InProcess {
    rank: usize,
    host: String,
    board: Arc<Board>,
    /// How many all-gathers this rank made: the n-th call of every rank meets in round n.
    calls: AtomicU64,
}

/// Where the ranks of one job leave their strings for each all-gather, by round.
#[derive(Debug)]
struct Board {
    size: usize,
    rounds: Mutex<HashMap<u64, Round>>,
    changed: Condvar,
}

/// One all-gather: the strings left so far, how many ranks have yet to leave theirs, how many took the
/// result (the round is removed once every rank has), and whether a rank gave up on it at its
/// deadline (the ranks that come later then fail at once too).
#[derive(Debug)]
struct Round {
    strings: Vec<Option<Vec<u8>>>,
    missing: usize,
    taken: usize,
    abandoned: bool,
}

impl InProcess {
    /// The `size` ranks of a job on one node (this machine's host name).
    pub fn ranks(size: usize) -> Vec<Self> {
        let host = super::host::machine_host_name().unwrap_or_else(|_| "localhost".into());
        Self::make(vec![host; size])
    }

    /// The ranks of a job placed on nodes: rank r on node `nodes[r]`. Each node is told apart by a host
    /// name of its own (`node-<n>`) although all share this machine, so ranks of different nodes talk
    /// over ZeroMQ and the collectives take their paths across nodes. Give such a job a host address
    /// to bind ([`MeshConfig::with_host`](super::super::MeshConfig::with_host), as `127.0.0.1`): the
    /// made-up names do not resolve.
    pub fn on_nodes(nodes: &[usize]) -> Vec<Self> {
        Self::make(nodes.iter().map(|node| format!("node-{node}")).collect())
    }

    fn make(hosts: Vec<String>) -> Vec<Self> {
        let board = Arc::new(Board { size: hosts.len(), rounds: Mutex::default(), changed: Condvar::new() });
        let rank = |(rank, host)| Self { rank, host, board: Arc::clone(&board), calls: AtomicU64::new(0) };
        hosts.into_iter().enumerate().map(rank).collect()
    }
}

impl Bootstrap for InProcess {
    fn rank(&self) -> usize {
        self.rank
    }

    fn size(&self) -> usize {
        self.board.size
    }

    fn all_gather(&self, mine: &[u8], deadline: Instant) -> Result<Vec<Vec<u8>>> {
        let (started, size) = (Instant::now(), self.board.size);
        let round = self.calls.fetch_add(1, Ordering::Relaxed);
        let mut rounds = lock(&self.board.rounds);
        let new = || Round { strings: vec![None; size], missing: size, taken: 0, abandoned: false };
        let joined = rounds.entry(round).or_insert_with(new);
        joined.strings[self.rank] = Some(mine.to_vec());
        joined.missing -= 1;
        if joined.missing == 0 {
            self.board.changed.notify_all();
        }
        loop {
            let current = rounds.get_mut(&round).expect("a round stays until every rank took it");
            if current.missing == 0 && !current.abandoned {
                let strings = current.strings.iter().map(|s| s.clone().unwrap_or_default()).collect();
                current.taken += 1;
                if current.taken == size {
                    rounds.remove(&round);
                }
                return Ok(strings);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() || current.abandoned {
                let missing = current.strings.iter().enumerate().filter(|(_, s)| s.is_none());
                let missing: Vec<String> = missing.map(|(rank, _)| rank.to_string()).collect();
                let peer = match missing.is_empty() {
                    true => "a rank that gave up at its deadline".to_owned(),
                    false => format!("rank(s) {} that did not join", missing.join(", ")),
                };
                current.abandoned = true;
                self.board.changed.notify_all();
                return Err(Error::Timeout {
                    op: "bootstrap (in-process all-gather)",
                    after: started.elapsed(),
                    peer: Some(peer),
                });
            }
            rounds = self.board.changed.wait_timeout(rounds, left).unwrap_or_else(|e| e.into_inner()).0;
        }
    }

    fn host_name(&self) -> Result<String> {
        Ok(self.host.clone())
    }
}
