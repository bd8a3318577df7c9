//! The collectives under plain `cargo test`: every rank a thread of this process, formed through the
//! in-process bootstrap and talking over the real transports (shared memory on a node, ZeroMQ over
//! tcp between the made-up nodes of `InProcess::on_nodes`). Each job checks every rank's data, for 1 to
//! 5 ranks and 16, on one node and across nodes, with single copies on and off.

use std::time::Duration;

use lightbeam::mesh::{BroadcastAlgorithm, InProcess, Mesh, Rank};
use lightbeam::shm::SharedBytesMut;
use lightbeam::{Error, Transport};

mod common;

use common::{config, data, every_collective, run, run_ok};

/// Sizes that take every path of the plan: fan-out and pairwise below the single-copy size, reads in
/// place above it, the gather's own threshold, and pieces of the chain.
const SIZES: [usize; 5] = [0, 8, 70 << 10, 300 << 10, (1 << 20) + 5];

#[test]
fn every_collective_on_one_node_from_1_to_5_ranks() {
    for n in 1..=5 {
        let algorithms = run_ok(InProcess::ranks(n), &config(), |mesh| {
            SIZES.iter().try_for_each(|&len| every_collective(mesh, len))?;
            Ok([8, 130 << 10].map(|len| mesh.broadcast_algorithm(len)))
        });
        // The plan's two paths on one node: a fan-out below 128 KiB, reads from the root above it (one
        // rank alone has nobody to send to).
        let expected = match n {
            1 => [BroadcastAlgorithm::BinomialTree; 2],
            _ => [BroadcastAlgorithm::FanOut, BroadcastAlgorithm::ReadFromRoot],
        };
        assert!(algorithms.iter().all(|a| *a == expected), "{n} ranks: {algorithms:?}");
    }
}

#[test]
fn every_collective_on_one_node_with_16_ranks() {
    run_ok(InProcess::ranks(16), &config(), |mesh| {
        [8, 70 << 10].iter().try_for_each(|&len| every_collective(mesh, len))
    });
}

#[test]
fn every_collective_without_single_copies_and_over_zeromq() {
    let configs = [
        config().with_single_copy(false),
        config().with_same_node(Transport::ZeroMq).with_chunk_size(64 << 10),
    ];
    for config in configs {
        for n in [2, 4] {
            run_ok(InProcess::ranks(n), &config, |mesh| {
                SIZES.iter().try_for_each(|&len| every_collective(mesh, len))
            });
        }
    }
}

#[test]
fn every_collective_across_nodes_goes_by_node_and_through_leaders() {
    let layouts: [&[usize]; 4] = [&[0, 1], &[0, 0, 1, 1], &[0, 1, 1, 0, 2], &[0, 0, 0, 1, 1, 2, 2, 2]];
    for nodes in layouts {
        let config = config().with_chunk_size(256 << 10);
        let results = run_ok(InProcess::on_nodes(nodes), &config, |mesh| {
            SIZES.iter().try_for_each(|&len| every_collective(mesh, len))?;
            Ok((mesh.node_count(), mesh.broadcast_algorithm(8), mesh.transport_to(Rank(1))?))
        });
        let node_count = nodes.iter().max().unwrap() + 1;
        for (rank, (count, algorithm, transport)) in results.into_iter().enumerate() {
            assert_eq!(count, node_count);
            assert_eq!(algorithm, BroadcastAlgorithm::BinomialTree, "no fan-out across nodes");
            let expected = if nodes[rank] == nodes[1] { Transport::SharedMemory } else { Transport::ZeroMq };
            assert_eq!(transport, expected, "rank {rank} reaches rank 1");
        }
    }
}

#[test]
fn a_shared_broadcast_maps_one_copy_per_node() {
    for nodes in [&[0, 0, 0][..], &[0, 1, 1, 0, 1]] {
        let len = (3 << 20) + 11;
        let views = run_ok(InProcess::on_nodes(nodes), &config(), |mesh| {
            let root = Rank(nodes.len() - 1);
            let view = if mesh.rank() == root {
                let mut bytes = SharedBytesMut::new(len)?;
                bytes.copy_from_slice(&data(len, 7));
                let bytes = bytes.freeze()?;
                mesh.broadcast_shared_root(&bytes)?;
                bytes
            } else {
                mesh.broadcast_shared(root)?
            };
            Ok(view[..] == data(len, 7)[..])
        });
        assert!(views.into_iter().all(|same| same), "every rank sees the root's bytes: {nodes:?}");
    }
}

#[test]
fn a_mismatched_call_fails_every_rank_with_both_calls_named() {
    let results = run(InProcess::ranks(3), &config(), |mesh| {
        let mut buffer = vec![1u8; 100];
        // No rank waits for another's message here (the root and rank 2 only send, rank 1 takes the
        // root's piece), so each may return before anyone sees rank 2's gather...
        match mesh.rank() {
            Rank(2) => mesh.gather_into(Rank(0), &buffer).map(drop),
            _ => mesh.broadcast_into(Rank(0), &mut buffer).map(drop),
        }?;
        // ...but the next call that waits finds it, and every rank is told.
        let chunks = [&buffer[..]; 3];
        mesh.all_to_all_into(&chunks, &mut Vec::new()).map(drop)
    });
    for (rank, result) in results.into_iter().enumerate() {
        match result {
            Err(Error::CollectiveMismatch { this_call, peer_call, .. }) => {
                let calls = [this_call, peer_call].join(" / ");
                assert!(
                    calls.contains("broadcast from root 0") && calls.contains("gather to root 0"),
                    "{calls}"
                );
            }
            other => panic!("rank {rank}: expected a mismatch, got {other:?}"),
        }
    }
}

#[test]
fn a_wrong_chunk_count_is_named_on_the_root_and_reported_to_the_others() {
    let results = run(InProcess::ranks(4), &config(), |mesh| {
        let mut mine: Vec<u8> = Vec::new();
        match mesh.rank() {
            Rank(0) => mesh.scatter_into_root(&[&b"only"[..], &b"two"[..]], &mut mine),
            _ => mesh.scatter_into(Rank(0), &mut mine),
        }
    });
    for (rank, result) in results.into_iter().enumerate() {
        let text = result.expect_err("nobody succeeds").to_string();
        assert!(text.contains("2 chunks given for 4 ranks"), "rank {rank}: {text}");
    }
}

#[test]
fn a_receive_buffer_too_small_fails_that_rank_alone() {
    let results = run(InProcess::ranks(3), &config(), |mesh| {
        let mut buffer = vec![5u8; 200 << 10];
        match mesh.rank() {
            Rank(0) => mesh.broadcast_into(Rank(0), &mut buffer[..]),
            Rank(1) => mesh.broadcast_into(Rank(0), &mut buffer[..100]),
            _ => mesh.broadcast_into(Rank(0), &mut buffer[..]),
        }
    });
    assert_eq!(results[0], Ok(200 << 10));
    assert_eq!(results[2], Ok(200 << 10));
    let text = results[1].as_ref().unwrap_err().to_string();
    assert!(text.contains("204800 bytes arrive but the receive buffer holds 100"), "{text}");
}

#[test]
fn a_rank_that_leaves_is_named_lost_by_the_others_within_the_deadline() {
    let config = config().with_timeout(Duration::from_secs(2));
    let started = std::time::Instant::now();
    let results = run(InProcess::ranks(4), &config, |mesh| {
        let chunk = vec![3u8; 1 << 20];
        match mesh.rank() {
            // Leaves before the gather: its mesh (servers and links) closes with it.
            Rank(3) => Ok(()),
            Rank(0) => mesh.gather_into_root(&chunk, &mut Vec::new()).map(drop),
            _ => mesh.gather_into(Rank(0), &chunk),
        }
    });
    assert!(started.elapsed() < Duration::from_secs(10), "took {:?}", started.elapsed());
    assert_eq!(results[3], Ok(()));
    for (rank, result) in results.into_iter().enumerate().take(3) {
        match result {
            Err(Error::PeerLost { rank: 3, .. }) => {}
            other => panic!("rank {rank}: expected rank 3 lost, got {other:?}"),
        }
    }
}

#[test]
fn a_bootstrap_that_breaks_its_contract_or_a_rank_that_never_joins_is_an_error_not_a_hang() {
    /// A bootstrap that claims `rank` of `size` and gathers `strings` copies of each string.
    struct Broken {
        rank: usize,
        size: usize,
        strings: usize,
    }
    impl lightbeam::mesh::Bootstrap for Broken {
        fn rank(&self) -> usize {
            self.rank
        }
        fn size(&self) -> usize {
            self.size
        }
        fn all_gather(&self, mine: &[u8], _: std::time::Instant) -> lightbeam::Result<Vec<Vec<u8>>> {
            Ok(vec![mine.to_vec(); self.strings])
        }
    }
    let config = config().with_timeout(Duration::from_millis(300));
    let refused = |boot: Broken| Mesh::bootstrap_with(&boot, config.clone()).unwrap_err().to_string();
    let text = refused(Broken { rank: 3, size: 3, strings: 3 });
    assert!(text.contains("rank 3 of 3 ranks"), "{text}");
    let text = refused(Broken { rank: 0, size: 3, strings: 2 });
    assert!(text.contains("returned 2 strings for 3 ranks"), "{text}");
    // Every rank's string the caller's own: the ranks would all be this one.
    let text = refused(Broken { rank: 0, size: 3, strings: 3 });
    assert!(text.contains("ranks 0 and 1 announced one endpoint"), "{text}");
    // One rank of two joins: its all-gather ends at the deadline, naming the rank that did not join.
    let mut ranks = InProcess::ranks(2);
    let started = std::time::Instant::now();
    let error = Mesh::bootstrap_with(&ranks.remove(0), config.clone()).unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(5));
    match error {
        Error::Timeout { peer: Some(peer), .. } => assert!(peer.contains("rank(s) 1"), "{peer}"),
        other => panic!("expected a timeout, got {other:?}"),
    }
    // The rank that comes late fails at once: the other gave up.
    let started = std::time::Instant::now();
    let late = Mesh::bootstrap_with(&ranks.remove(0), config.with_timeout(Duration::from_secs(20)));
    assert!(matches!(late, Err(Error::Timeout { .. })), "{late:?}");
    assert!(started.elapsed() < Duration::from_secs(5));
}
