//! The typed collectives (barrier, all-reduce, reduce, reduce-scatter, all-gather) under plain
//! `cargo test`, every rank a thread of this process over the real transports: each rank checks its
//! result against the fold in the documented fixed order, bit for bit, for 1 to 5 ranks and 16, on
//! one node and across nodes, with ZeroMQ forced and without single copies, at sizes that take the
//! queues and the shares read in place; and bad input fails with the typed error that names it.

use lightbeam::mesh::{InProcess, Op, Rank};
use lightbeam::{Error, Transport};

mod common;

use common::typed::every_typed_collective;
use common::{config, run, run_ok};

/// Counts that take every path: rounds (up to 256 bytes), the queues (800 B, 24 KiB), shares sent (80 KiB)
/// and shares read (1.2 MB).
const COUNTS: [usize; 6] = [0, 1, 100, 3001, 10_001, 150_001];

fn one_node(n: usize) -> Vec<usize> {
    vec![0; n]
}

#[test]
fn typed_collectives_on_one_node_from_1_to_5_ranks() {
    for n in 1..=5 {
        let nodes = one_node(n);
        run_ok(InProcess::ranks(n), &config(), |mesh| {
            COUNTS.iter().try_for_each(|&count| every_typed_collective(mesh, &nodes, count))
        });
    }
}

#[test]
fn typed_collectives_on_one_node_with_16_ranks() {
    let nodes = one_node(16);
    run_ok(InProcess::ranks(16), &config(), |mesh| {
        [1, 3001, 10_001].iter().try_for_each(|&count| every_typed_collective(mesh, &nodes, count))
    });
}

#[test]
fn typed_collectives_without_single_copies_and_over_zeromq() {
    let configs = [
        config().with_single_copy(false),
        config().with_same_node(Transport::ZeroMq).with_chunk_size(64 << 10),
    ];
    for config in configs {
        for n in [2, 3] {
            let nodes = one_node(n);
            run_ok(InProcess::ranks(n), &config, |mesh| {
                COUNTS.iter().try_for_each(|&count| every_typed_collective(mesh, &nodes, count))
            });
        }
    }
}

#[test]
fn typed_collectives_across_nodes_fold_within_each_node_then_across() {
    let layouts: [&[usize]; 4] = [&[0, 1], &[0, 0, 1, 1], &[0, 1, 1, 0, 2], &[0, 1, 0, 1]];
    for nodes in layouts {
        run_ok(InProcess::on_nodes(nodes), &config(), |mesh| {
            [0, 1, 100, 3001, 40_001].iter().try_for_each(|&count| every_typed_collective(mesh, nodes, count))
        });
    }
}

#[test]
fn calls_that_differ_in_type_count_or_operation_fail_every_rank_naming_both() {
    let cases: [(&str, &str); 3] = [("f32", "f64"), ("of 3 ×", "of 4 ×"), ("by max", "by sum")];
    for (case, (theirs, ours)) in cases.into_iter().enumerate() {
        let results = run(InProcess::ranks(3), &config(), |mesh| {
            let odd = mesh.rank() == Rank(1);
            match (case, odd) {
                (0, true) => mesh.all_reduce_into(&[1.0f32; 4], &mut [0.0; 4], Op::Sum),
                (1, true) => mesh.all_reduce_into(&[1.0f64; 3], &mut [0.0; 3], Op::Sum),
                (2, true) => mesh.all_reduce_into(&[1.0f64; 4], &mut [0.0; 4], Op::Max),
                _ => mesh.all_reduce_into(&[1.0f64; 4], &mut [0.0; 4], Op::Sum),
            }?;
            mesh.barrier()
        });
        for (rank, result) in results.into_iter().enumerate() {
            match result {
                Err(Error::CollectiveMismatch { this_call, peer_call, .. }) => {
                    let calls = [this_call, peer_call].join(" / ");
                    assert!(calls.contains(theirs) && calls.contains(ours), "rank {rank}: {calls}");
                }
                other => panic!("case {case}, rank {rank}: expected a mismatch, got {other:?}"),
            }
        }
    }
}

#[test]
fn bad_input_is_a_typed_error_on_the_rank_that_made_it_and_reported_to_the_others() {
    let results = run(InProcess::ranks(3), &config(), |mesh| {
        mesh.all_reduce_into(&[1.0f64; 4], &mut [0.0; 4], Op::BitAnd).map(|()| 0)
    });
    for result in results {
        let expected = Error::OperationNotForType { op: "all_reduce", operation: "bitand", element: "f64" };
        assert_eq!(result, Err(expected));
    }
    let results = run(InProcess::ranks(3), &config(), |mesh| {
        let len = if mesh.rank() == Rank(2) { 4 } else { 3 };
        mesh.all_gather_into(&[7u8; 2], &mut vec![0; len * 2])
    });
    assert_eq!(
        results[2],
        Err(Error::LengthMismatch { op: "all_gather", what: "the receive buffer", expected: 6, found: 8 })
    );
    for result in &results[..2] {
        assert!(matches!(result, Err(Error::PeerFailed { rank: 2, .. })), "{result:?}");
    }
    // A root out of range: that rank's own error; the others learn of its call at once (a mismatch
    // naming it), not at their deadline (which would name it lost).
    let results = run(InProcess::ranks(3), &config(), |mesh| match mesh.rank() {
        Rank(0) => mesh.reduce_into_root(&[1u32], &mut [0], Op::Sum),
        Rank(1) => mesh.reduce_into(Rank(7), &[1u32], Op::Sum),
        _ => mesh.reduce_into(Rank(0), &[1u32], Op::Sum),
    });
    assert!(
        matches!(&results[1], Err(Error::InvalidArgument(text)) if text.contains("rank 7")),
        "{results:?}"
    );
    // Found by whichever rank sees the other's call first, and told to all: it names the bad call.
    for result in [&results[0], &results[2]] {
        let named = |call: &str| call == "reduce of 1 × u32 by sum";
        assert!(
            matches!(result, Err(Error::CollectiveMismatch { this_call, peer_call, .. })
                if named(this_call) || named(peer_call)),
            "{result:?}"
        );
    }
    let results = run(InProcess::ranks(2), &config(), |mesh| {
        let mut received: Vec<f64> = Vec::new();
        match mesh.rank() {
            Rank(0) => mesh.broadcast_into(Rank(0), &mut vec![1u8; 13]),
            _ => mesh.broadcast_into(Rank(0), &mut received),
        }
    });
    assert_eq!(results[0], Ok(13));
    assert_eq!(results[1], Err(Error::NotWholeElements { op: "broadcast", bytes: 13, element_size: 8 }));
    let results = run(InProcess::ranks(2), &config(), |mesh| {
        let mut short = [0.0f64; 1];
        match mesh.rank() {
            Rank(0) => mesh.broadcast_into(Rank(0), &mut [2.0f64; 3][..]),
            _ => mesh.broadcast_into(Rank(0), &mut short[..]),
        }
    });
    assert_eq!(results[1], Err(Error::ReceiveBufferTooSmall { op: "broadcast", needed: 24, capacity: 8 }));
}
