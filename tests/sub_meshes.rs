//! Meshes split from the job's mesh (`Mesh::split`), under plain `cargo test`: the rows and columns of a
//! 2-D decomposition on one node and across nodes, a split of a split, and a rank that joins none.
//! Every collective, typed or not, runs on them and checks its data; point-to-point messages stay on
//! their own mesh; and the split meshes use the job's servers (their endpoints are the job's).

use lightbeam::mesh::{InProcess, Mesh, Op, Rank, Source, Tag};

mod common;

use common::typed::every_typed_collective;
use common::{config, every_collective, run, run_ok};

/// The rows (`row` true) or columns of `mesh` laid out `columns` wide; a column's ranks in reverse.
fn rows_or_columns(mesh: &Mesh, columns: usize, row: bool) -> lightbeam::Result<Mesh> {
    let (r, c) = (mesh.rank().0 / columns, mesh.rank().0 % columns);
    let (colour, key) = match row {
        true => (r, c as i64),
        false => (c, -(r as i64)),
    };
    Ok(mesh.split(Some(colour as u32), key)?.expect("every rank has a row and a column"))
}

/// Every collective on the rows and the columns of `mesh`, whose rank r runs on node `nodes[r]`.
fn on_rows_and_columns(mesh: &Mesh, nodes: &[usize], columns: usize) -> lightbeam::Result<(usize, usize)> {
    let me = mesh.rank().0;
    let row = rows_or_columns(mesh, columns, true)?;
    let column = rows_or_columns(mesh, columns, false)?;
    assert_eq!(row.rank().0, me % columns);
    assert_eq!((row.size(), row.size() * column.size()), (columns, mesh.size()));
    for sub in [&row, &column] {
        let sub_nodes: Vec<usize> =
            (0..sub.size()).map(|r| nodes[sub.job_rank(Rank(r)).unwrap().0]).collect();
        for len in [8, 70 << 10] {
            every_collective(sub, len)?;
        }
        for count in [1, 10_001] {
            every_typed_collective(sub, &sub_nodes, count)?;
        }
        // The split mesh's ranks are reached at the job's own servers.
        for r in 0..sub.size() {
            assert_eq!(sub.endpoint(Rank(r))?, mesh.endpoint(sub.job_rank(Rank(r))?)?);
        }
    }
    Ok((row.size(), column.size()))
}

#[test]
fn rows_and_columns_on_one_node_run_every_collective() {
    let nodes = vec![0; 6];
    let sizes = run_ok(InProcess::ranks(6), &config(), |mesh| on_rows_and_columns(mesh, &nodes, 3));
    assert!(sizes.iter().all(|&s| s == (3, 2)), "{sizes:?}");
}

#[test]
fn rows_and_columns_across_nodes_run_every_collective() {
    let nodes = [0, 0, 1, 1, 2, 2];
    run_ok(InProcess::on_nodes(&nodes), &config(), |mesh| on_rows_and_columns(mesh, &nodes, 2));
}

#[test]
fn two_threads_of_each_rank_in_collectives_of_two_meshes_at_once_both_finish() {
    // Each rank's two threads wait at once, each in a barrier of its own mesh: the one waiting on the
    // server takes in the other's messages, which the other finds when it gets its turn.
    let config = config().with_timeout(std::time::Duration::from_secs(10));
    run_ok(InProcess::ranks(4), &config, |mesh| {
        let rows = rows_or_columns(mesh, 2, true)?;
        let columns = rows_or_columns(mesh, 2, false)?;
        std::thread::scope(|scope| {
            let other = scope.spawn(|| (0..100).try_for_each(|_| columns.barrier()));
            (0..100).try_for_each(|_| rows.barrier())?;
            other.join().expect("the column thread")
        })
    });
}

#[test]
fn errors_on_a_split_mesh_name_the_job_s_ranks() {
    let results = run(InProcess::ranks(4), &config(), |mesh| {
        let odd = mesh.split(Some((mesh.rank().0 % 2) as u32), 0)?.expect("every rank has a half");
        // On the odd half (job ranks 1 and 3), its rank 1 (job rank 3) gives a receive buffer too long.
        let len = if mesh.rank() == Rank(3) { 5 } else { 4 };
        odd.all_reduce_into(&[1u8; 4], &mut vec![0; len], Op::Sum)
    });
    assert_eq!(results[0], Ok(()));
    assert_eq!(results[2], Ok(()));
    assert!(matches!(results[3], Err(lightbeam::Error::LengthMismatch { .. })), "{:?}", results[3]);
    assert!(matches!(results[1], Err(lightbeam::Error::PeerFailed { rank: 3, .. })), "{:?}", results[1]);
}

#[test]
fn messages_stay_on_their_mesh_and_a_split_of_a_split_works() {
    let results = run_ok(InProcess::ranks(4), &config(), |mesh| {
        let me = mesh.rank().0;
        // Ranks 0 and 2 form one half, 1 and 3 the other; rank 3 joins no mesh in the second split.
        let half = mesh.split(Some((me % 2) as u32), 0)?.expect("every rank has a half");
        let none = mesh.split((me != 3).then_some(0), -(me as i64))?;
        assert_eq!(none.is_none(), me == 3);
        // The same tag on both meshes, the half's message sent first: each receive takes its own.
        let peer = Rank(1 - half.rank().0);
        half.send(peer, Tag(1), &[10u32 + me as u32])?;
        mesh.send(half.job_rank(peer)?, Tag(1), &[20u32 + me as u32])?;
        let on_mesh = mesh.recv(Source::Rank(half.job_rank(peer)?), Tag(1))?;
        let on_half = half.recv(Source::Rank(peer), Tag(1))?;
        let from = half.job_rank(peer)?.0 as u32;
        assert_eq!(on_mesh.elements::<u32>()?[..], [20 + from]);
        assert_eq!((on_half.source(), &on_half.elements::<u32>()?[..]), (peer, &[10 + from][..]));
        // A split of a split, and the mesh of the three ranks that joined, with rank 2 first.
        let alone = half.split(Some(half.rank().0 as u32), 0)?.expect("a mesh of one");
        let mut sum = [0i64];
        alone.all_reduce_into(&[me as i64], &mut sum, Op::Sum)?;
        assert_eq!(sum, [me as i64]);
        let mut total = [0i64];
        if let Some(three) = none {
            three.all_reduce_into(&[1i64 << me], &mut total, Op::BitOr)?;
            assert_eq!(three.job_rank(Rank(0))?, Rank(2));
        }
        mesh.barrier()?;
        Ok(total[0])
    });
    assert_eq!(results, [0b111, 0b111, 0b111, 0]);
}
