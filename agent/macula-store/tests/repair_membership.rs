//! The repair planner hears every membership state: a suspected node is neither a repair source
//! nor a target (its shards still count), and a node that left for good loses its shards at once.

use macula_core::{NodeId, NodeKey};
use macula_store::header::SegmentId;
use macula_store::placement::NodeInfo;
use macula_store::repair::{Event, HeldShard, RepairConfig, RepairPlanner};

const GRACE: u64 = 1_000;

fn ids(n: u8) -> Vec<NodeId> {
    (1..=n)
        .map(|i| NodeKey::from_seed([i; 32]).node_id())
        .collect()
}

fn info(id: NodeId) -> NodeInfo {
    NodeInfo {
        id,
        capacity_bytes: 1 << 30,
        free_bytes: 1 << 30,
        site: "default".into(),
        power: "default".into(),
    }
}

fn shard(index: u16) -> HeldShard {
    HeldShard {
        segment: SegmentId([7; 32]),
        index,
        k: 2,
        m: 1,
        shard_bytes: 1024,
    }
}

/// Nodes 0..3 hold shards 0..3 of a 2+1 segment; nodes 3 and 4 are spare. The planner is node 0's.
fn planner(nodes: &[NodeId]) -> RepairPlanner {
    let cfg = RepairConfig {
        grace_ms: GRACE,
        takeover_ms: 3_600_000,
        ..RepairConfig::default()
    };
    let mut p = RepairPlanner::new(nodes[0], cfg, 0);
    for &n in nodes {
        p.handle(0, Event::NodeUp(info(n)));
    }
    for (i, &n) in nodes.iter().enumerate() {
        let shards = if i < 3 { vec![shard(i as u16)] } else { vec![] };
        p.handle(0, Event::Inventory { node: n, shards });
    }
    p
}

#[test]
fn a_suspected_holder_is_no_repair_source_until_it_is_up_again() {
    let nodes = ids(5);
    let mut p = planner(&nodes);
    p.handle(10, Event::NodeDown(nodes[2]));
    p.handle(10, Event::NodeSuspect(nodes[1]));
    // Shard 2 is lost after the grace time, but only one of the k = 2 sources is reachable.
    assert_eq!(p.poll(10 + 2 * GRACE), None);
    p.handle(10 + 2 * GRACE, Event::NodeUp(info(nodes[1])));
    let a = p
        .poll(10 + 2 * GRACE + 1)
        .expect("repair once the suspect is up");
    assert_eq!(a.sources, vec![(0, nodes[0]), (1, nodes[1])]);
    assert_eq!(a.targets.len(), 1);
    assert_eq!(a.targets[0].0, 2);
}

#[test]
fn a_suspected_node_is_no_repair_target_and_its_shards_still_count() {
    let nodes = ids(5);
    let mut p = planner(&nodes);
    // A suspicion alone loses nothing, however long it lasts.
    p.handle(10, Event::NodeSuspect(nodes[2]));
    assert_eq!(p.poll(10 + 5 * GRACE), None);
    assert_eq!(p.status(10 + 5 * GRACE).degraded, 0);
    // Node 2 is down; either spare could take shard 2, but the other one is suspected.
    for spare in [nodes[3], nodes[4]] {
        let mut p2 = planner(&nodes);
        p2.handle(10, Event::NodeDown(nodes[2]));
        let other = if spare == nodes[3] {
            nodes[4]
        } else {
            nodes[3]
        };
        p2.handle(10, Event::NodeSuspect(other));
        let a = p2.poll(10 + 2 * GRACE).expect("repair");
        assert_eq!(
            a.targets,
            vec![(2, spare)],
            "the suspected spare is skipped"
        );
    }
}

#[test]
fn a_holder_that_left_loses_its_shards_at_once() {
    let nodes = ids(5);
    let mut p = planner(&nodes);
    p.handle(10, Event::NodeDown(nodes[2]));
    assert_eq!(p.poll(20), None, "down: within the grace time");
    p.handle(20, Event::NodeLeft(nodes[2]));
    let a = p
        .poll(30)
        .expect("left: repaired without waiting for the grace time");
    assert_eq!(a.targets.len(), 1);
    assert_eq!(a.targets[0].0, 2);
}
