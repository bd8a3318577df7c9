//! What every mesh message carries in its metadata: the job token, the sender, and the stream it belongs
//! to; for a collective, the sequence number and the call the sender made, so that a receiver can tell a
//! message of its own call from one of another call before it uses any data.

#![forbid(unsafe_code)]

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::error::Error;
use crate::mesh::collectives::reduction::code_name;
use crate::mesh::typed::Datatype;
use crate::mesh::types::Tag;

/// Which collective a rank called.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum Operation {
    /// `broadcast_into` / `broadcast_with_progress`.
    Broadcast,
    /// `scatter_into` / `scatter_into_root`.
    Scatter,
    /// `gather_into` / `gather_into_root`.
    Gather,
    /// `all_to_all_into`.
    AllToAll,
    /// `broadcast_shared` / `broadcast_shared_root`.
    SharedBroadcast,
    /// `barrier`.
    Barrier,
    /// `all_reduce_into` / `all_reduce_in_place`.
    AllReduce,
    /// `reduce_into` / `reduce_into_root`.
    Reduce,
    /// `reduce_scatter_into`.
    ReduceScatter,
    /// `all_gather_into` / `all_gather_varcount_into`.
    AllGather,
}

/// What a rank asked for in one collective: the operation, its root, and for the typed collectives
/// what it said of its data. (The byte-level collectives' sizes need no check of their own: a
/// broadcast's total travels in each piece's header and is checked against the receive buffer, and
/// chunk counts are checked against the rank count by each rank before anything is sent.)
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Call {
    /// The operation.
    pub(crate) operation: Operation,
    /// The root rank, `None` for all-to-all.
    pub(crate) root: Option<u32>,
    /// The element type, count and reduction of a typed collective; `None` for the others.
    pub(crate) data: Option<Data>,
}

/// What a typed collective's call says of its data: every rank of the call must say the same.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Data {
    /// The element type.
    pub(crate) element: Datatype,
    /// Elements per rank, `None` where they may differ (an all-gather's `v` form).
    pub(crate) count: Option<u64>,
    /// The reduction's code (see `collectives::reduction`), 0 for none.
    pub(crate) reduction: u8,
}

#[cfg(test)]
impl Call {
    /// A call of `operation` with `root`, without data to describe.
    pub(crate) fn new(operation: Operation, root: Option<u32>) -> Self {
        Self { operation, root, data: None }
    }
}

impl Operation {
    /// The operation's name, as errors give it.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Broadcast => "broadcast",
            Self::Scatter => "scatter",
            Self::Gather => "gather",
            Self::AllToAll => "all_to_all",
            Self::SharedBroadcast => "broadcast_shared",
            Self::Barrier => "barrier",
            Self::AllReduce => "all_reduce",
            Self::Reduce => "reduce",
            Self::ReduceScatter => "reduce_scatter",
            Self::AllGather => "all_gather",
        }
    }
}

impl fmt::Display for Call {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = self.operation.name();
        let preposition = match self.operation {
            Operation::Gather | Operation::Reduce => "to",
            _ => "from",
        };
        match self.root {
            Some(root) => write!(f, "{name} {preposition} root {root}")?,
            None => f.write_str(name)?,
        }
        let Some(data) = self.data else { return Ok(()) };
        match data.count {
            Some(count) => write!(f, " of {count} × {}", data.element)?,
            None => write!(f, " of {} (counts may differ)", data.element)?,
        }
        match data.reduction {
            0 => Ok(()),
            code => write!(f, " by {}", code_name(code)),
        }
    }
}

/// Which mesh a message belongs to: the mesh the job formed (0) or a mesh split from it, whose ranks
/// share the job's servers and links. Every member of a mesh knows its id alike.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub(crate) struct GroupId(pub(crate) u64);

impl GroupId {
    /// The mesh the job formed.
    pub(crate) const WORLD: Self = Self(0);
}

/// One collective as a rank sees it: the mesh it runs on, its sequence number there (every rank counts
/// a mesh's collectives alike) and the call this rank made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Collective {
    /// The mesh the collective runs on.
    pub(crate) group: GroupId,
    /// The collective's sequence number.
    pub(crate) sequence: u64,
    /// What the sender asked for.
    pub(crate) call: Call,
}

/// Two ranks that made different calls for one sequence number: `rank` called `call`, and a message
/// from `peer` says it called `peer_call`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Mismatch {
    /// The mesh both calls ran on.
    pub(crate) group: GroupId,
    /// The sequence number both calls took.
    pub(crate) sequence: u64,
    /// The rank that found the mismatch.
    pub(crate) rank: u32,
    /// Its call.
    pub(crate) call: Call,
    /// The rank whose message showed another call.
    pub(crate) peer: u32,
    /// That rank's call.
    pub(crate) peer_call: Call,
}

impl From<Mismatch> for Error {
    fn from(m: Mismatch) -> Self {
        Self::CollectiveMismatch {
            sequence: m.sequence,
            rank: m.rank as usize,
            this_call: m.call.to_string(),
            peer: m.peer as usize,
            peer_call: m.peer_call.to_string(),
        }
    }
}

/// Which stream of messages a mesh message belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum Channel {
    /// Point-to-point messages of the application, by mesh and tag.
    User(GroupId, Tag),
    /// A message of a collective, with the call its sender made.
    Collective(Collective),
    /// A notice that the sender lost this rank (it waited for it past its deadline).
    PeerLost(u32),
    /// A notice that the sender's deadline passed while it waited for this rank in a collective: the
    /// sender is alive, so a rank waiting for the sender should blame this one instead.
    WaitingOn(u32),
    /// A notice that the sender found ranks out of step: every collective fails from now on.
    OutOfStep(Mismatch),
}

/// What every mesh message carries in its metadata.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Envelope {
    /// The job token drawn at bootstrap; messages without it are not ours.
    pub(crate) token: u64,
    /// The sending rank.
    pub(crate) source: u32,
    /// The channel, `None` only in a default value never sent.
    pub(crate) channel: Option<Channel>,
    /// The sender failed in this collective; the payload says why.
    pub(crate) failed: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn broadcast_from(root: u32) -> Call {
        Call::new(Operation::Broadcast, Some(root))
    }

    #[test]
    fn an_envelope_round_trips_and_its_call_is_in_the_bytes() {
        let collective = Collective { group: GroupId::WORLD, sequence: 300, call: broadcast_from(3) };
        let envelope = Envelope {
            token: 0xfeed,
            source: 2,
            channel: Some(Channel::Collective(collective)),
            failed: true,
        };
        let bytes = postcard::to_allocvec(&envelope).unwrap();
        // token (varint 0xfeed: 3 bytes), source, Some, variant 1, group 0, sequence (varint 300: 2
        // bytes), operation 0, Some, root 3, no data, failed.
        assert_eq!(bytes, [0xed, 0xfd, 0x03, 2, 1, 1, 0, 0xac, 0x02, 0, 1, 3, 0, 1]);
        assert_eq!(postcard::from_bytes::<Envelope>(&bytes).unwrap(), envelope);
        // Another root or operation changes the bytes, so no two calls read alike.
        let other = Envelope {
            channel: Some(Channel::Collective(Collective { call: broadcast_from(0), ..collective })),
            ..envelope
        };
        assert_ne!(postcard::to_allocvec(&other).unwrap(), bytes);
        // Cut short, or with an unknown operation, it is refused rather than misread.
        assert!(postcard::from_bytes::<Envelope>(&bytes[..bytes.len() - 1]).is_err());
        let mut unknown = bytes.clone();
        unknown[9] = 99;
        assert!(postcard::from_bytes::<Envelope>(&unknown).is_err());
    }

    #[test]
    fn a_mismatch_notice_round_trips_and_names_both_calls() {
        let mismatch = Mismatch {
            group: GroupId::WORLD,
            sequence: 7,
            rank: 1,
            call: Call::new(Operation::Scatter, Some(0)),
            peer: 0,
            peer_call: broadcast_from(0),
        };
        let envelope = Envelope { channel: Some(Channel::OutOfStep(mismatch)), ..Envelope::default() };
        let bytes = postcard::to_allocvec(&envelope).unwrap();
        assert_eq!(postcard::from_bytes::<Envelope>(&bytes).unwrap(), envelope);
        let text = Error::from(mismatch).to_string();
        assert!(
            text.contains("rank 1 called scatter from root 0 but rank 0 called broadcast from root 0"),
            "{text}"
        );
        let all_to_all = Call::new(Operation::AllToAll, None);
        assert_eq!(all_to_all.to_string(), "all_to_all");
        assert_eq!(Call::new(Operation::Gather, Some(2)).to_string(), "gather to root 2");
    }
}
