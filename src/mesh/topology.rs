//! Which ranks share a node: a node is one running kernel, known by its host name, boot id and pid
//! namespace, and its leader is its lowest rank.

#![forbid(unsafe_code)]

use std::fmt;

use super::Rank;

/// Where the kernel publishes the random id it drew at boot.
const BOOT_ID_PATH: &str = "/proc/sys/kernel/random/boot_id";

/// The identity of the node a rank runs on: its host name, its kernel's boot id and its pid namespace.
/// All are compared: network namespaces (as the multi-host test harness makes) share one kernel but each
/// have their own host name; two machines may share a host name but never a boot id; and containers that
/// share both (host network) may still not share pids, which the same-node transport needs.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(crate) struct NodeId {
    host: String,
    boot_id: String,
    pid_namespace: u64,
}

impl NodeId {
    /// This process's node, on the host named `host`. A boot id that cannot be read is left empty: ranks
    /// are then told apart by what remains (the worst case takes two nodes for one, which only costs
    /// speed).
    pub(crate) fn local(host: &str) -> Self {
        let host = host.to_owned();
        let boot_id =
            std::fs::read_to_string(BOOT_ID_PATH).map(|id| id.trim().to_owned()).unwrap_or_default();
        Self { host, boot_id, pid_namespace: crate::shm::pid_namespace() }
    }

    /// A node of this kernel with another host name (as a network namespace of the test harness).
    #[cfg(test)]
    pub(crate) fn named(host: &str) -> Self {
        Self::local(host)
    }
}

/// A node of the mesh, numbered in the order of its lowest rank (so rank 0 is on node 0). It displays as
/// its number alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Node(pub usize);

impl fmt::Display for Node {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// The nodes of a mesh and the ranks on each.
#[derive(Debug, Clone)]
pub(crate) struct Topology {
    /// The node of each rank.
    node_of: Vec<Node>,
    /// The ranks of each node, in increasing order.
    ranks: Vec<Vec<Rank>>,
}

impl Topology {
    /// The topology of ranks whose nodes are `nodes`, in rank order.
    pub(crate) fn new<'a>(nodes: impl IntoIterator<Item = &'a NodeId>) -> Self {
        let mut ids: Vec<&NodeId> = Vec::new();
        let mut topology = Self { node_of: Vec::new(), ranks: Vec::new() };
        for (rank, id) in nodes.into_iter().enumerate() {
            let node = ids.iter().position(|known| *known == id).unwrap_or_else(|| {
                ids.push(id);
                topology.ranks.push(Vec::new());
                ids.len() - 1
            });
            topology.node_of.push(Node(node));
            topology.ranks[node].push(Rank(rank));
        }
        topology
    }

    /// How many nodes the ranks are on.
    pub(crate) fn node_count(&self) -> usize {
        self.ranks.len()
    }

    /// The node `rank` is on; `None` past the last rank.
    pub(crate) fn node_of(&self, rank: Rank) -> Option<Node> {
        self.node_of.get(rank.0).copied()
    }

    /// The ranks on `node`, in increasing order; `None` past the last node.
    pub(crate) fn ranks_on(&self, node: Node) -> Option<&[Rank]> {
        self.ranks.get(node.0).map(Vec::as_slice)
    }

    /// The leader of `node`: its lowest rank.
    pub(crate) fn leader(&self, node: Node) -> Option<Rank> {
        self.ranks_on(node).and_then(|ranks| ranks.first().copied())
    }

    /// Who leads `node` in a collective from `root`: the root on its own node, the node's leader on
    /// every other.
    pub(crate) fn leader_from(&self, root: Rank, node: Node) -> Option<Rank> {
        match self.node_of(root) == Some(node) {
            true => Some(root),
            false => self.leader(node),
        }
    }

    /// Where `rank` stands in the two-level chain of a collective from `root`: the rank it takes the
    /// pieces from (`None` at the root) and the ranks it passes them on to. The leaders (see
    /// [`Topology::leaders_from`]) form a chain across the nodes, and each leader also starts a chain
    /// through its own node's ranks in the order of [`Topology::order_from`]: a piece crosses the network
    /// once per node, and reaches the last rank after (nodes - 1) + (ranks of a node - 1) hops, not
    /// (ranks - 1). A leader passes on to the next node's leader first. On one node it is the plain
    /// chain along that order.
    pub(crate) fn chain_from(&self, root: Rank, rank: Rank) -> (Option<Rank>, Vec<Rank>) {
        let order = self.order_from(root);
        let groups: Vec<&[Rank]> = order.chunk_by(|a, b| self.node_of[a.0] == self.node_of[b.0]).collect();
        let Some((g, p)) = groups
            .iter()
            .enumerate()
            .find_map(|(g, group)| group.iter().position(|&r| r == rank).map(|p| (g, p)))
        else {
            return (None, Vec::new());
        };
        let group = groups[g];
        let local_next = group.get(p + 1).copied();
        if p > 0 {
            return (Some(group[p - 1]), local_next.into_iter().collect());
        }
        let previous = g.checked_sub(1).map(|before| groups[before][0]);
        let next_leader = groups.get(g + 1).map(|next| next[0]);
        (previous, next_leader.into_iter().chain(local_next).collect())
    }

    /// The leaders of a collective from `root`, one per node: the root, then each other node's leader in
    /// the order of [`Topology::order_from`].
    pub(crate) fn leaders_from(&self, root: Rank) -> Vec<Rank> {
        let mut seen = vec![false; self.ranks.len()];
        let order = self.order_from(root).into_iter();
        order.filter(|&rank| !std::mem::replace(&mut seen[self.node_of[rank.0].0], true)).collect()
    }

    /// Every rank, `root` first, grouped by node: the root's node (its ranks after the root, then those
    /// before it), then each other node in turn from the root's, its ranks in increasing order. A chain
    /// along this order crosses from node to node once per node, whatever order the ranks were placed
    /// in (`mpirun --map-by node` puts consecutive ranks on different nodes).
    pub(crate) fn order_from(&self, root: Rank) -> Vec<Rank> {
        let Some(home) = self.node_of(root) else { return Vec::new() };
        let nodes = self.ranks.len();
        let mut order = Vec::with_capacity(self.node_of.len());
        for node in (0..nodes).map(|k| (home.0 + k) % nodes) {
            let ranks = &self.ranks[node];
            let from = if node == home.0 { ranks.partition_point(|&r| r < root) } else { 0 };
            order.extend(ranks[from..].iter().chain(&ranks[..from]));
        }
        order
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(host: &str, boot_id: &str) -> NodeId {
        NodeId { host: host.into(), boot_id: boot_id.into(), pid_namespace: 1 }
    }

    #[test]
    fn ranks_group_by_host_name_and_boot_id_and_the_lowest_rank_leads() {
        // Ranks 0 and 3 on one machine; 1 and 4 in a namespace of the same kernel with its own host
        // name; 2 on another machine with the first one's host name.
        let nodes = [id("a", "k1"), id("b", "k1"), id("a", "k2"), id("a", "k1"), id("b", "k1")];
        let topology = Topology::new(&nodes);
        assert_eq!(topology.node_count(), 3);
        let of: Vec<_> = (0..5).map(|r| topology.node_of(Rank(r)).unwrap().0).collect();
        assert_eq!(of, [0, 1, 2, 0, 1]);
        assert_eq!(topology.ranks_on(Node(0)).unwrap(), [Rank(0), Rank(3)]);
        assert_eq!(topology.ranks_on(Node(1)).unwrap(), [Rank(1), Rank(4)]);
        assert_eq!(topology.ranks_on(Node(2)).unwrap(), [Rank(2)]);
        let leaders: Vec<_> = (0..3).map(|n| topology.leader(Node(n)).unwrap().0).collect();
        assert_eq!(leaders, [0, 1, 2]);
        assert_eq!(topology.node_of(Rank(5)), None);
        assert_eq!(topology.ranks_on(Node(3)), None);
        assert_eq!(topology.leader(Node(3)), None);
    }

    #[test]
    fn the_order_from_a_root_visits_each_node_once_root_first() {
        // Placed as `mpirun --map-by node` places 6 ranks on 2 nodes: 0, 2, 4 on one, 1, 3, 5 on the other.
        let nodes = [id("a", "k"), id("b", "k"), id("a", "k"), id("b", "k"), id("a", "k"), id("b", "k")];
        let topology = Topology::new(&nodes);
        let order = |root| topology.order_from(Rank(root)).iter().map(|r| r.0).collect::<Vec<_>>();
        assert_eq!(order(0), [0, 2, 4, 1, 3, 5]);
        assert_eq!(order(2), [2, 4, 0, 1, 3, 5]);
        assert_eq!(order(3), [3, 5, 1, 0, 2, 4]);
        // One node: the ranks from the root on, then those before it.
        let one = Topology::new(&[id("a", "k"), id("a", "k"), id("a", "k"), id("a", "k")]);
        assert_eq!(one.order_from(Rank(2)), [Rank(2), Rank(3), Rank(0), Rank(1)]);
        assert!(one.order_from(Rank(4)).is_empty());
    }

    #[test]
    fn the_two_level_chain_crosses_nodes_through_their_leaders() {
        // 0, 2, 4 on node a; 1, 3, 5 on node b; 6 on node c.
        let nodes = [
            id("a", "k"),
            id("b", "k"),
            id("a", "k"),
            id("b", "k"),
            id("a", "k"),
            id("b", "k"),
            id("c", "k"),
        ];
        let topology = Topology::new(&nodes);
        let link = |root: usize, rank: usize| {
            let (previous, next) = topology.chain_from(Rank(root), Rank(rank));
            (previous.map(|r| r.0), next.iter().map(|r| r.0).collect::<Vec<_>>())
        };
        assert_eq!(link(0, 0), (None, vec![1, 2]));
        assert_eq!(link(0, 2), (Some(0), vec![4]));
        assert_eq!(link(0, 4), (Some(2), vec![]));
        assert_eq!(link(0, 1), (Some(0), vec![6, 3]));
        assert_eq!(link(0, 3), (Some(1), vec![5]));
        assert_eq!(link(0, 6), (Some(1), vec![]));
        // From root 3: node b first (3, 5, 1), then c, then a.
        assert_eq!(link(3, 3), (None, vec![6, 5]));
        assert_eq!(link(3, 1), (Some(5), vec![]));
        assert_eq!(link(3, 0), (Some(6), vec![2]));
        // Every rank but the root takes its pieces from exactly one rank, which passes them to it.
        for root in 0..7 {
            for rank in (0..7).filter(|&r| r != root) {
                let (previous, _) = link(root, rank);
                let from = previous.expect("a non-root has a previous rank");
                assert!(link(root, from).1.contains(&rank), "root {root}: {from} does not pass to {rank}");
            }
        }
        // One node: the plain chain.
        let one = Topology::new(&[id("a", "k"), id("a", "k"), id("a", "k")]);
        assert_eq!(one.chain_from(Rank(1), Rank(1)), (None, vec![Rank(2)]));
        assert_eq!(one.chain_from(Rank(1), Rank(0)), (Some(Rank(2)), vec![]));
        assert_eq!(topology.chain_from(Rank(0), Rank(9)), (None, vec![]));
    }

    #[test]
    fn each_node_has_one_leader_the_root_on_its_own() {
        let nodes = [id("a", "k"), id("b", "k"), id("a", "k"), id("b", "k"), id("c", "k")];
        let topology = Topology::new(&nodes);
        let leaders = |root| topology.leaders_from(Rank(root)).iter().map(|r| r.0).collect::<Vec<_>>();
        assert_eq!(leaders(0), [0, 1, 4]);
        assert_eq!(leaders(3), [3, 4, 0]);
        assert_eq!(leaders(2), [2, 1, 4]);
        assert_eq!(topology.leader_from(Rank(3), Node(1)), Some(Rank(3)));
        assert_eq!(topology.leader_from(Rank(3), Node(0)), Some(Rank(0)));
        assert_eq!(topology.leader_from(Rank(3), Node(5)), None);
        assert!(topology.leaders_from(Rank(9)).is_empty());
    }

    #[test]
    fn one_node_holds_every_rank_and_no_ranks_make_no_nodes() {
        let topology = Topology::new(&[id("a", "k"), id("a", "k"), id("a", "k")]);
        assert_eq!(topology.node_count(), 1);
        assert_eq!(topology.ranks_on(Node(0)).unwrap(), [Rank(0), Rank(1), Rank(2)]);
        assert_eq!(Topology::new(&[]).node_count(), 0);
    }

    #[test]
    fn this_process_knows_its_node() {
        let here = NodeId::named("here");
        assert!(!here.host.is_empty(), "a host name");
        assert_eq!(here.boot_id.len(), 36, "a boot id such as 8b2c...: {:?}", here.boot_id);
        assert_eq!(here, NodeId::named("here"), "the same each time");
    }
}
