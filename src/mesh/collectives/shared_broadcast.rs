//! The shared broadcast: the root's bytes end as one sealed, read-only copy per node ([`SharedBytes`]),
//! which every rank of the node maps instead of holding its own.
//!
//! The root's view travels along the nodes' leaders (the root, then the lowest rank of each other
//! node) as a pipelined chain of pieces, one crossing of the network per node; each leader lands them in
//! a new memory file and seals it. Every leader then hands its node's other ranks the file's descriptor
//! (its pid, descriptor number, inode and length); each opens the file through `/proc`, which refuses a
//! file that is not sealed or not the one described, and answers. A rank the kernel refuses (ptrace
//! rules), or one whose mesh allows no single copies, asks for the bytes instead and seals its own copy.
//! A leader returns once each of its ranks answered, so its descriptor stays open while they open it.

#![forbid(unsafe_code)]

use super::buffers::Land;
use super::plan::Plan;
use super::protocol::{self, Answer, Header, Message};
use super::read_in_place;
use crate::error::Result;
use crate::mesh::net::exchange::Exchange;
use crate::mesh::types::{Rank, Source};
use crate::shm::{SharedBytes, SharedBytesMut};

impl Land for SharedBytesMut {
    fn room(&mut self, total: usize) -> Option<&mut [u8]> {
        (self.len() == total).then_some(&mut self[..])
    }

    fn progressed(&mut self, _done: usize, _total: usize) {}
}

/// The root's side: the next leader gets the bytes, this node's ranks the root's own file.
pub(super) fn from_root(x: &Exchange<'_>, plan: &Plan, data: &SharedBytes) -> Result<()> {
    let next = x.topology().leaders_from(x.rank()).get(1).copied();
    if let Some(next) = next {
        let sent = x.send(next, &[&Header::Announce { total: data.len() }.encode(), &[]]);
        let sent = sent.and_then(|()| read_in_place::send_bytes_to(x, plan, next, data));
        // Everyone waiting on the root hears of a failure: the next leader and this node's ranks.
        x.or_report([next].into_iter().chain(node_readers(x)), sent)?;
    }
    share_on_node(x, plan, data)
}

/// Every other rank's side: a leader receives the bytes along the leaders' chain and shares its file
/// with its node; the other ranks open their leader's file.
pub(super) fn to(x: &Exchange<'_>, plan: &Plan, root: Rank) -> Result<SharedBytes> {
    let topology = x.topology();
    let node = topology.node_of(x.rank()).expect("every rank is on a node");
    let leader = topology.leader_from(root, node).expect("every node has a leader");
    if leader != x.rank() {
        let opened = open_from_leader(x, plan, leader);
        return x.or_report([leader], opened);
    }
    let leaders = topology.leaders_from(root);
    let at = leaders.iter().position(|&r| r == x.rank()).expect("a leader is in the leaders");
    let (previous, next) = (leaders[at - 1], leaders.get(at + 1).copied());
    let received = receive_along(x, previous, next);
    // A failure is told to every rank waiting on this one, and to the previous leader, which may still
    // be sending.
    let dependents = [previous].into_iter().chain(next).chain(node_readers(x));
    let data = x.or_report(dependents, received)?;
    share_on_node(x, plan, &data)?;
    Ok(data)
}

/// The ranks of this rank's node other than itself.
fn node_readers(x: &Exchange<'_>) -> Vec<Rank> {
    let node = x.topology().node_of(x.rank()).expect("every rank is on a node");
    let ranks = x.topology().ranks_on(node).unwrap_or_default();
    ranks.iter().copied().filter(|&r| r != x.rank()).collect()
}

/// A leader's part of the chain: the size from `previous`, then each piece, landed in a new memory
/// file and passed on to `next`; the file sealed.
fn receive_along(x: &Exchange<'_>, previous: Rank, next: Option<Rank>) -> Result<SharedBytes> {
    let first = x.receive(Source::Rank(previous), Some(previous))?;
    let Message::Announce { total } = protocol::read(&first)? else {
        return Err(protocol::bad_message(&first, "not the size of a shared broadcast"));
    };
    if let Some(next) = next {
        x.forward(next, first.payloads)?;
    }
    let mut bytes = SharedBytesMut::new(total)?;
    read_in_place::receive_bytes_from(x, previous, total, &mut bytes, next)?;
    bytes.freeze()
}

/// A leader's last part: hands its node's other ranks the descriptor of `data`, sends the bytes to
/// those that ask, and returns once every one answered.
fn share_on_node(x: &Exchange<'_>, plan: &Plan, data: &SharedBytes) -> Result<()> {
    let readers = node_readers(x);
    let header = Header::SharedFile { total: data.len() };
    let shared = data
        .descriptor()
        .and_then(|descriptor| read_in_place::offer(x, plan, &readers, (header, &descriptor.encode()), data));
    x.or_report(readers, shared).map(drop)
}

/// A rank's side, other than a leader's: opens the file its `leader` describes, or asks for the bytes
/// when it cannot.
fn open_from_leader(x: &Exchange<'_>, plan: &Plan, leader: Rank) -> Result<SharedBytes> {
    let first = x.receive(Source::Rank(leader), Some(leader))?;
    let Message::SharedFile { total, descriptor } = protocol::read(&first)? else {
        return Err(protocol::bad_message(&first, "not the descriptor of a shared file"));
    };
    if x.process_here(leader) != Some(descriptor.pid) {
        return Err(protocol::bad_message(&first, "a descriptor naming another process than the leader's"));
    }
    if descriptor.len != total as u64 {
        return Err(protocol::bad_message(&first, "a descriptor of another size than the broadcast's"));
    }
    let opened = match plan.single_copy() {
        true => SharedBytes::open_from(&descriptor),
        false => Err(crate::Error::InvalidArgument("single copies are off in this mesh".into())),
    };
    let answer = |answer| x.send(leader, &[&Header::Answer { total, answer }.encode(), &[]]);
    match opened {
        Ok(view) => {
            answer(Answer::Copied)?;
            Ok(view)
        }
        Err(refused) => {
            log::info!("rank {}: asking rank {leader} for the bytes: {refused}", x.rank());
            answer(Answer::SendBytes)?;
            let mut bytes = SharedBytesMut::new(total)?;
            read_in_place::receive_bytes_from(x, leader, total, &mut bytes, None)?;
            bytes.freeze()
        }
    }
}
