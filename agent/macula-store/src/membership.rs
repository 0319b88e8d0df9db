//! What storage makes of mesh membership (sans-IO): which members placement uses, what the repair
//! planner hears of them, and to whom the realm's purge orders are passed on. The shell
//! (`maculad`) feeds it peer changes and the proofs' exclusion list and carries out its outputs.

use std::collections::{BTreeSet, HashSet};

use macula_core::NodeId;
use macula_mesh::core::{PeerChanged, PeerInfo, PeerState};

use crate::placement::NodeInfo;
use crate::repair::Event;

/// A peer as placement sees it: alive with metadata that offers storage.
pub fn peer_info(p: &PeerInfo) -> Option<NodeInfo> {
    let meta = p.meta.as_ref()?;
    if p.state != PeerState::Alive || meta.capacity.storage_total == 0 {
        return None;
    }
    Some(NodeInfo {
        id: p.id,
        capacity_bytes: meta.capacity.storage_total,
        free_bytes: meta.capacity.storage_free,
        site: meta.domains.site.to_string(),
        power: meta.domains.power.to_string(),
    })
}

/// What the shell does after an input.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Actions {
    /// For this node's repair planner, in order.
    pub events: Vec<Event>,
    /// Members that just came up: send them the purge orders this node keeps
    /// (`crate::purge::send`; they may have been down when they were issued).
    pub pass_on_purges: Vec<NodeId>,
}

/// Storage's view of the realm's members.
#[derive(Debug)]
pub struct MembershipFeed {
    me: NodeId,
    /// Members placement avoids and the planner hears as down (quarantined by the proofs).
    excluded: BTreeSet<NodeId>,
    /// Members alive now, each passed the purge orders once per coming up.
    up: HashSet<NodeId>,
}

impl MembershipFeed {
    pub fn new(me: NodeId) -> Self {
        Self {
            me,
            excluded: BTreeSet::new(),
            up: HashSet::new(),
        }
    }

    /// The members known when storage starts (subscribe to changes before reading them).
    pub fn start(&mut self, peers: &[PeerInfo]) -> Actions {
        let mut out = Actions::default();
        for p in peers {
            if let Some(info) = peer_info(p) {
                out.events.push(Event::NodeUp(info));
            }
            if p.state == PeerState::Alive && self.up.insert(p.id) {
                out.pass_on_purges.push(p.id);
            }
        }
        out
    }

    /// A member changed state, metadata, or left for good.
    pub fn peer_changed(&mut self, c: &PeerChanged) -> Actions {
        let mut out = Actions::default();
        let id = c.peer.id;
        if c.left {
            self.up.remove(&id);
            out.events.push(Event::NodeLeft(id));
            return out;
        }
        match c.peer.state {
            PeerState::Alive => {
                if let Some(info) = peer_info(&c.peer)
                    && !self.excluded.contains(&id)
                {
                    out.events.push(Event::NodeUp(info));
                }
                if self.up.insert(id) {
                    out.pass_on_purges.push(id);
                }
            }
            PeerState::Down => {
                self.up.remove(&id);
                out.events.push(Event::NodeDown(id));
            }
            PeerState::Suspect => {
                self.up.remove(&id);
                out.events.push(Event::NodeSuspect(id));
            }
        }
        out
    }

    /// The members quarantined now (`peers`: the current members). Newly excluded ones are heard
    /// as down — except this node: its own planner keeps using its own shards whatever the realm
    /// thinks of it; released ones as up again when they are alive with storage.
    pub fn set_excluded(&mut self, nodes: BTreeSet<NodeId>, peers: &[PeerInfo]) -> Actions {
        let before = std::mem::replace(&mut self.excluded, nodes);
        let mut out = Actions::default();
        for id in self
            .excluded
            .difference(&before)
            .filter(|id| **id != self.me)
        {
            out.events.push(Event::NodeDown(*id));
        }
        for id in before.difference(&self.excluded) {
            if let Some(info) = peers.iter().find(|p| p.id == *id).and_then(peer_info) {
                out.events.push(Event::NodeUp(info));
            }
        }
        out
    }

    /// The storage members placement uses: `own` (this node, when it offers storage) first, then
    /// the alive peers offering storage that are not excluded.
    pub fn members(&self, own: Option<NodeInfo>, peers: &[PeerInfo]) -> Vec<NodeInfo> {
        let mut v: Vec<NodeInfo> = own.into_iter().collect();
        v.extend(
            peers
                .iter()
                .filter(|p| p.state == PeerState::Alive && !self.excluded.contains(&p.id))
                .filter_map(peer_info),
        );
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use macula_core::NodeKey;
    use macula_mesh::membership::{Capacity, FailureDomains, MemberMeta};
    use macula_mesh::realm::Role;

    fn id(seed: u8) -> NodeId {
        NodeKey::from_seed([seed; 32]).node_id()
    }

    fn peer(seed: u8, state: PeerState, storage: u64) -> PeerInfo {
        let meta = MemberMeta {
            node: id(seed),
            version: 1,
            role: Role::Edge,
            name: format!("n{seed}"),
            addrs: vec![],
            overlay_key: None,
            capacity: Capacity {
                storage_total: storage,
                storage_free: storage / 2,
            },
            domains: FailureDomains::default(),
            software: String::new(),
            relays: vec![],
        };
        PeerInfo {
            id: id(seed),
            generation: 1,
            state,
            meta: Some(meta),
        }
    }

    fn changed(p: PeerInfo, left: bool) -> PeerChanged {
        PeerChanged { peer: p, left }
    }

    fn ups(a: &Actions) -> Vec<NodeId> {
        a.events
            .iter()
            .filter_map(|e| match e {
                Event::NodeUp(i) => Some(i.id),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn placement_sees_alive_members_offering_storage() {
        assert!(peer_info(&peer(1, PeerState::Alive, 100)).is_some());
        assert!(peer_info(&peer(1, PeerState::Suspect, 100)).is_none());
        assert!(peer_info(&peer(1, PeerState::Alive, 0)).is_none());
        let mut no_meta = peer(1, PeerState::Alive, 100);
        no_meta.meta = None;
        assert!(peer_info(&no_meta).is_none());
    }

    #[test]
    fn membership_states_reach_the_planner_and_purges_go_once_per_coming_up() {
        let mut f = MembershipFeed::new(id(0));
        let start = f.start(&[peer(1, PeerState::Alive, 100), peer(2, PeerState::Alive, 0)]);
        assert_eq!(ups(&start), vec![id(1)]);
        // Both alive: both get the purge orders, storage or not.
        assert_eq!(start.pass_on_purges, vec![id(1), id(2)]);
        // Metadata news of a member already up: heard by the planner, no second purge pass.
        let again = f.peer_changed(&changed(peer(1, PeerState::Alive, 200), false));
        assert_eq!(ups(&again), vec![id(1)]);
        assert!(again.pass_on_purges.is_empty());
        let a = f.peer_changed(&changed(peer(1, PeerState::Suspect, 200), false));
        assert_eq!(a.events, vec![Event::NodeSuspect(id(1))]);
        // Back from suspicion: up again, purges passed on again.
        let a = f.peer_changed(&changed(peer(1, PeerState::Alive, 200), false));
        assert_eq!(a.pass_on_purges, vec![id(1)]);
        let a = f.peer_changed(&changed(peer(1, PeerState::Down, 200), false));
        assert_eq!(a.events, vec![Event::NodeDown(id(1))]);
        let a = f.peer_changed(&changed(peer(2, PeerState::Down, 0), true));
        assert_eq!(a.events, vec![Event::NodeLeft(id(2))]);
        assert!(a.pass_on_purges.is_empty());
    }

    #[test]
    fn excluded_members_are_down_to_the_planner_and_out_of_placement() {
        let me = id(0);
        let mut f = MembershipFeed::new(me);
        let peers = [
            peer(1, PeerState::Alive, 100),
            peer(2, PeerState::Alive, 100),
        ];
        f.start(&peers);
        let own = NodeInfo {
            id: me,
            capacity_bytes: 10,
            free_bytes: 10,
            site: String::new(),
            power: String::new(),
        };
        let a = f.set_excluded([id(1), me].into(), &peers);
        // This node never hears itself down.
        assert_eq!(a.events, vec![Event::NodeDown(id(1))]);
        let members: Vec<NodeId> = f
            .members(Some(own.clone()), &peers)
            .iter()
            .map(|n| n.id)
            .collect();
        assert_eq!(members, vec![me, id(2)]);
        // An excluded member's news do not bring it back.
        let a = f.peer_changed(&changed(peer(1, PeerState::Alive, 300), false));
        assert!(ups(&a).is_empty());
        // Released: up again at once.
        let a = f.set_excluded(BTreeSet::new(), &peers);
        assert_eq!(ups(&a), vec![id(1)]);
        assert_eq!(f.members(None, &peers).len(), 2);
    }
}
