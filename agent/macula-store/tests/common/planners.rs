//! One repair planner per node over an in-process network, driven with a fixed clock until no
//! node has a repair left (shared by the object tests and the storage bench). Inventories are
//! read from the stores and handed to every planner, as maculad's pub/sub does.

use std::collections::{BTreeMap, BTreeSet};

use macula_core::NodeId;
use macula_store::network::{Client, InProcessNetwork};
use macula_store::placement::NodeInfo;
use macula_store::repair::{Event, RepairConfig, RepairPlanner};
use macula_store::service::local_inventory;

pub struct Planners {
    planners: BTreeMap<NodeId, RepairPlanner>,
    down: BTreeSet<NodeId>,
}

impl Planners {
    /// A planner per node, told of every node and of every live node's inventory.
    pub fn new(client: &Client<InProcessNetwork>, nodes: &[NodeInfo], cfg: RepairConfig) -> Self {
        let mut p = Self {
            planners: nodes
                .iter()
                .map(|n| (n.id, RepairPlanner::new(n.id, cfg.clone(), 0)))
                .collect(),
            down: BTreeSet::new(),
        };
        for n in nodes {
            p.tell_all(0, &Event::NodeUp(n.clone()));
        }
        // Twice: a planner ignores inventories that arrive before its own.
        for _ in 0..2 {
            for n in nodes {
                p.share_inventory(client, n.id, 0);
            }
        }
        p
    }

    fn tell_all(&mut self, now: u64, ev: &Event) {
        for p in self.planners.values_mut() {
            p.handle(now, ev.clone());
        }
    }

    fn share_inventory(&mut self, client: &Client<InProcessNetwork>, node: NodeId, now: u64) {
        let store = client.network().store(&node).expect("known node");
        let ev = Event::Inventory {
            node,
            shards: local_inventory(&store).expect("list the store"),
        };
        self.tell_all(now, &ev);
    }

    /// Membership reports `node` down (its planner stops too).
    pub fn node_down(&mut self, node: NodeId, now: u64) {
        self.down.insert(node);
        self.tell_all(now, &Event::NodeDown(node));
    }

    /// Runs every live node's repairs at `now` until none has one left; returns how many ran.
    /// After each round the repairs' targets share their new inventory with everyone (as
    /// maculad does about a second after a store changes).
    pub async fn run(&mut self, client: &Client<InProcessNetwork>, now: u64) -> usize {
        let mut done = 0;
        loop {
            let live: Vec<NodeId> = self
                .planners
                .keys()
                .filter(|id| !self.down.contains(id))
                .copied()
                .collect();
            let mut targets = BTreeSet::new();
            for me in live {
                while let Some(action) = self.planners.get_mut(&me).expect("planner").poll(now) {
                    let stored = client.execute_repair(&action).await.expect("repair");
                    let ev = Event::RepairDone {
                        segment: action.segment,
                        stored: stored.clone(),
                    };
                    self.planners.get_mut(&me).expect("planner").handle(now, ev);
                    targets.extend(stored.into_iter().map(|(_, node)| node));
                    done += 1;
                }
            }
            if targets.is_empty() {
                return done;
            }
            for target in targets {
                self.share_inventory(client, target, now);
            }
        }
    }

    /// Segments some live planner sees degraded.
    pub fn degraded(&self, now: u64) -> usize {
        self.planners
            .iter()
            .filter(|(id, _)| !self.down.contains(id))
            .map(|(_, p)| p.status(now).degraded)
            .sum()
    }
}
