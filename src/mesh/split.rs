//! Meshes split from a mesh by colour and key, as `MPI_Comm_split` splits a communicator: the rows and
//! the columns of a 2-D decomposition, the ranks of one node, any subset. A mesh split from another
//! shares the servers and links of the mesh the job formed, so splitting costs one all-gather of 16
//! bytes per rank: no bootstrap, no sockets, no shared memory of its own.

#![forbid(unsafe_code)]

use std::sync::atomic::Ordering;
use std::sync::Arc;

use bytemuck::{Pod, Zeroable};

use super::net::envelope::GroupId;
use super::types::Rank;
use super::Mesh;
use crate::error::Result;

/// What a rank asks for in a split: its colour (or none) and its key.
#[derive(Clone, Copy, Pod, Zeroable)]
#[repr(C)]
struct Ask {
    colour: u64,
    key: i64,
}

/// The colour of a rank that joins no mesh.
const NO_COLOUR: u64 = u64::MAX;

impl Mesh {
    /// Splits this mesh: the ranks that give the same `colour` form a new mesh, ranked from 0 by `key`
    /// (ties by their rank here); a rank that gives `None` joins none and gets `None`. Collective:
    /// every rank of this mesh calls it, in the same order as its other collectives.
    ///
    /// The new mesh has its own ranks, collectives and point-to-point messages (a message sent on one
    /// mesh is received on that mesh only), its own node topology and algorithm choices, and everything
    /// a mesh can do (including splitting again). It shares the servers and links of the mesh the job
    /// formed, and lives on after this mesh is dropped. Errors name ranks as the job's mesh numbers them
    /// ([`Mesh::job_rank`]). Two threads may each run a collective of a different mesh at once: a
    /// process's receives take turns (a message for the thread not waiting can wait up to 2 ms).
    ///
    /// ```no_run
    /// # use lightbeam::mesh::{Mesh, Op};
    /// # #[allow(dead_code)]
    /// # fn rows_and_columns(mesh: &Mesh) -> lightbeam::Result<()> {
    /// // A 2-D decomposition of the ranks, `columns` wide: sums along each row.
    /// let columns = 2;
    /// let (row, column) = (mesh.rank().0 / columns, mesh.rank().0 % columns);
    /// let row_mesh = mesh.split(Some(row as u32), column as i64)?.expect("every rank has a row");
    /// let mut row_sum = [0.0];
    /// row_mesh.all_reduce_into(&[1.5], &mut row_sum, Op::Sum)?;
    /// # Ok(())
    /// # }
    /// ```
    pub fn split(&self, colour: Option<u32>, key: i64) -> Result<Option<Self>> {
        let number = self.splits.fetch_add(1, Ordering::Relaxed);
        let ask = Ask { colour: colour.map_or(NO_COLOUR, u64::from), key };
        let mut asks = vec![Ask::zeroed(); self.size()];
        self.all_gather_into(&[ask], &mut asks)?;
        let Some(colour) = colour else { return Ok(None) };
        let mut members: Vec<(i64, usize)> = asks
            .iter()
            .enumerate()
            .filter(|(_, ask)| ask.colour == u64::from(colour))
            .map(|(rank, ask)| (ask.key, rank))
            .collect();
        members.sort_unstable();
        let members = members.into_iter().map(|(_, rank)| self.group.job_rank(Rank(rank))).collect();
        let id = split_id(self.group.id, number, colour);
        Ok(Some(Self::of_group(Arc::clone(&self.job), id, members)))
    }
}

/// The id of the mesh of `colour` in split `number` of mesh `parent`: the same on every member, and
/// another for every other split of the job but by a chance of 2^-64. Never the job's mesh's (0).
fn split_id(parent: GroupId, number: u64, colour: u32) -> GroupId {
    let words = [parent.0.to_le_bytes(), number.to_le_bytes(), u64::from(colour).to_le_bytes()];
    let hash = words.iter().flatten().fold(0xcbf2_9ce4_8422_2325u64, |hash, &byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3)
    });
    GroupId(hash.max(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_ids_differ_by_parent_split_and_colour_and_are_never_the_job_s() {
        let ids = [
            split_id(GroupId::WORLD, 0, 0),
            split_id(GroupId::WORLD, 0, 1),
            split_id(GroupId::WORLD, 1, 0),
            split_id(GroupId(7), 0, 0),
        ];
        for (i, a) in ids.iter().enumerate() {
            assert_ne!(*a, GroupId::WORLD);
            assert!(ids[i + 1..].iter().all(|b| b != a), "{ids:?}");
        }
        assert_eq!(split_id(GroupId::WORLD, 3, 5), split_id(GroupId::WORLD, 3, 5));
    }
}
