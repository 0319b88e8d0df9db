//! Deterministic simulation of the repair planners: one planner per simulated node, virtual
//! time, seeded randomness, membership changes and inventories in, repair actions out, and an
//! in-memory "world" that executes them with finite bandwidth.

use std::collections::{BTreeMap, BTreeSet};

use macula_core::{NodeId, NodeKey};
use macula_store::header::SegmentId;
use macula_store::placement::{NodeInfo, place};
use macula_store::repair::{Event, HeldShard, RepairAction, RepairConfig, RepairPlanner};

const MIN: u64 = 60_000;
const SHARD: u64 = 1 << 20;
/// Delay between a store changing and every node having its new inventory.
const INVENTORY_DELAY: u64 = 1_500;
/// Every node re-publishes its inventory this often (maculad's anti-entropy refresh is 60 s; a
/// longer period keeps the simulation fast and only delays when a new planner knows everything).
const REFRESH: u64 = 5 * MIN;

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Change {
    /// The node stops (its planner too) and membership reports it down.
    Down,
    /// The node comes back.
    Up,
    /// One shard on the node rots: its next inventory no longer lists it.
    Corrupt,
    /// The node stays up but every repair it runs fails (its disk is read-only, say).
    Broken,
}

#[derive(Debug, Clone)]
enum Sim {
    Change(usize, Change),
    /// A node's inventory reaches every planner.
    Inventory(NodeId),
    /// A node's periodic re-publication (skipped while it is down).
    Refresh(NodeId),
    Finish(NodeId, RepairAction),
}

struct World {
    infos: Vec<NodeInfo>,
    planners: BTreeMap<NodeId, RepairPlanner>,
    /// Where each shard is: (segment, index) → holders.
    truth: BTreeMap<(SegmentId, u16), BTreeSet<NodeId>>,
    up: BTreeSet<NodeId>,
    broken: BTreeSet<NodeId>,
    queue: BTreeMap<u64, Vec<Sim>>,
}

impl World {
    fn inventory(&self, node: NodeId) -> Vec<HeldShard> {
        self.truth
            .iter()
            .filter(|(_, h)| h.contains(&node))
            .map(|((segment, index), _)| HeldShard {
                segment: *segment,
                index: *index,
                k: 4,
                m: 2,
                shard_bytes: SHARD,
            })
            .collect()
    }

    fn broadcast(&mut self, now: u64, ev: &Event) {
        for p in self.planners.values_mut() {
            p.handle(now, ev.clone());
        }
    }

    fn at(&mut self, t: u64, sim: Sim) {
        self.queue.entry(t).or_default().push(sim);
    }
}

struct Outcome {
    /// (time, acting node, action) of every planned repair.
    trace: Vec<(u64, NodeId, RepairAction)>,
    truth: BTreeMap<(SegmentId, u16), BTreeSet<NodeId>>,
    infos: BTreeMap<NodeId, NodeInfo>,
    up: BTreeSet<NodeId>,
    /// Most repairs one node had in flight at once.
    max_inflight: usize,
    /// Segments some live planner reports unrecoverable at the end.
    unrecoverable_at_end: usize,
    /// Failed repair attempts.
    failed: usize,
}

/// Runs `segments` 4+2 segments on `nodes` nodes in three sites; `script` lists
/// (time, node number, change).
fn simulate(
    seed: u64,
    nodes: usize,
    segments: u32,
    script: &[(u64, usize, Change)],
    cfg: RepairConfig,
    until: u64,
) -> Outcome {
    let mut rng = Rng(seed);
    let infos: Vec<NodeInfo> = (0..nodes)
        .map(|i| NodeInfo {
            id: NodeKey::from_seed([i as u8 + 1; 32]).node_id(),
            capacity_bytes: (50 + rng.below(100)) << 30,
            free_bytes: 50 << 30,
            site: ["a", "b", "c"][i % 3].into(),
            power: format!("p{}", i % 4),
        })
        .collect();
    let mut w = World {
        planners: infos
            .iter()
            .map(|i| (i.id, RepairPlanner::new(i.id, cfg.clone(), 0)))
            .collect(),
        infos: infos.clone(),
        truth: BTreeMap::new(),
        up: infos.iter().map(|i| i.id).collect(),
        broken: BTreeSet::new(),
        queue: BTreeMap::new(),
    };
    for info in &infos {
        w.broadcast(0, &Event::NodeUp(info.clone()));
    }
    for s in 0..segments {
        let seg = SegmentId(
            blake3::hash(&[seed.to_le_bytes(), u64::from(s).to_le_bytes()].concat()).into(),
        );
        for (i, node) in place(&seg, 6, SHARD, &infos, &[])
            .unwrap()
            .into_iter()
            .enumerate()
        {
            w.truth.entry((seg, i as u16)).or_default().insert(node);
        }
    }
    for info in &infos {
        let ev = Event::Inventory {
            node: info.id,
            shards: w.inventory(info.id),
        };
        w.broadcast(0, &ev);
    }
    for (i, info) in infos.iter().enumerate() {
        w.at(REFRESH / 2 + 100 * i as u64, Sim::Refresh(info.id));
    }
    for &(t, n, change) in script {
        w.at(t, Sim::Change(n, change));
    }
    let mut trace = Vec::new();
    let mut inflight: BTreeMap<NodeId, usize> = BTreeMap::new();
    let mut max_inflight = 0;
    let mut failed = 0;
    let mut now = 0;
    while now <= until {
        for ev in w.queue.remove(&now).unwrap_or_default() {
            match ev {
                Sim::Change(n, change) => {
                    let id = w.infos[n].id;
                    match change {
                        Change::Down => {
                            w.up.remove(&id);
                            w.broadcast(now, &Event::NodeDown(id));
                        }
                        Change::Up => {
                            w.up.insert(id);
                            let info = w.infos[n].clone();
                            w.broadcast(now, &Event::NodeUp(info));
                            w.at(now + INVENTORY_DELAY, Sim::Inventory(id));
                        }
                        Change::Corrupt => {
                            let key = *w
                                .truth
                                .iter()
                                .find(|(_, h)| h.contains(&id))
                                .expect("node holds a shard")
                                .0;
                            w.truth.get_mut(&key).unwrap().remove(&id);
                            w.at(now + INVENTORY_DELAY, Sim::Inventory(id));
                        }
                        Change::Broken => {
                            w.broken.insert(id);
                        }
                    }
                }
                Sim::Inventory(id) => {
                    let ev = Event::Inventory {
                        node: id,
                        shards: w.inventory(id),
                    };
                    w.broadcast(now, &ev);
                }
                Sim::Refresh(id) => {
                    if w.up.contains(&id) {
                        let ev = Event::Inventory {
                            node: id,
                            shards: w.inventory(id),
                        };
                        w.broadcast(now, &ev);
                    }
                    w.at(now + REFRESH, Sim::Refresh(id));
                }
                Sim::Finish(by, action) => {
                    *inflight.get_mut(&by).unwrap() -= 1;
                    // The world executes the repair only if every source and target is still up
                    // and the acting node can write.
                    let ok = !w.broken.contains(&by)
                        && action
                            .sources
                            .iter()
                            .chain(&action.targets)
                            .all(|(_, n)| w.up.contains(n));
                    let ev = if ok {
                        for &(i, n) in &action.targets {
                            w.truth.entry((action.segment, i)).or_default().insert(n);
                            w.at(now + INVENTORY_DELAY, Sim::Inventory(n));
                        }
                        Event::RepairDone {
                            segment: action.segment,
                            stored: action.targets.clone(),
                        }
                    } else {
                        failed += 1;
                        Event::RepairFailed {
                            segment: action.segment,
                        }
                    };
                    w.planners.get_mut(&by).unwrap().handle(now, ev);
                }
            }
        }
        let live: Vec<NodeId> = w.up.iter().copied().collect();
        for me in live {
            while let Some(action) = w.planners.get_mut(&me).unwrap().poll(now) {
                // Every action must be executable as planned.
                assert_eq!(action.sources.len(), 4);
                for (i, n) in &action.sources {
                    assert!(
                        w.truth[&(action.segment, *i)].contains(n),
                        "source holds the shard"
                    );
                    assert!(w.up.contains(n), "source is up");
                }
                assert!(
                    action.sources.iter().any(|(_, n)| *n == me),
                    "the leader holds a shard and reads its own"
                );
                let holders: BTreeSet<NodeId> = (0..6)
                    .filter_map(|i| w.truth.get(&(action.segment, i)))
                    .flatten()
                    .copied()
                    .collect();
                let mut targets = BTreeSet::new();
                // A broken node's repairs fail anyway; its retries may overlap with the node
                // that took over until the new shard's inventory arrives (harmless: the same
                // index on the same target).
                let broken = w.broken.contains(&me);
                for (i, n) in action.targets.iter().filter(|_| !broken) {
                    assert!(w.up.contains(n), "target is up");
                    assert!(
                        !holders.contains(n),
                        "target holds no shard of the segment yet"
                    );
                    assert!(targets.insert(*n), "one shard per target");
                    assert!(
                        !w.truth[&(action.segment, *i)]
                            .iter()
                            .any(|h| w.up.contains(h)),
                        "only lost shards are rebuilt (no second leader at work)"
                    );
                }
                let n = inflight.entry(me).or_default();
                *n += 1;
                max_inflight = max_inflight.max(*n);
                // 50 MiB/s per repair stream.
                let done = now + (action.bytes * 1000).div_ceil(50 << 20).max(1);
                w.at(done, Sim::Finish(me, action.clone()));
                trace.push((now, me, action));
            }
        }
        // Advance virtual time to the next thing that can happen (refreshes alone do not keep
        // the simulation going past `until`).
        let next_event = w.queue.keys().next().copied();
        let next_wake =
            w.up.iter()
                .filter_map(|id| w.planners[id].next_wakeup(now))
                .min();
        now = match (next_event, next_wake) {
            (Some(a), Some(b)) => a.min(b),
            (Some(a), None) | (None, Some(a)) => a,
            (None, None) => break,
        };
    }
    let unrecoverable_at_end =
        w.up.iter()
            .flat_map(|id| w.planners[id].status(now).unrecoverable)
            .collect::<BTreeSet<_>>()
            .len();
    Outcome {
        trace,
        truth: w.truth,
        infos: infos.into_iter().map(|i| (i.id, i)).collect(),
        up: w.up,
        max_inflight,
        unrecoverable_at_end,
        failed,
    }
}

fn cfg() -> RepairConfig {
    RepairConfig {
        grace_ms: 10 * MIN,
        max_inflight: 2,
        bytes_per_sec: 8 << 20,
        burst_bytes: 16 << 20,
        retry_ms: 30_000,
        takeover_ms: 30 * MIN,
    }
}

/// Every shard of every segment on exactly one live node, six distinct nodes, ≤ 2 per site.
fn assert_fully_redundant(out: &Outcome) {
    for s in out.truth.keys().map(|(s, _)| *s).collect::<BTreeSet<_>>() {
        let mut holders = Vec::new();
        for i in 0..6 {
            let live: Vec<&NodeId> = out.truth[&(s, i)]
                .iter()
                .filter(|h| out.up.contains(h))
                .collect();
            assert_eq!(
                live.len(),
                1,
                "segment {s:?} index {i}: live copies {live:?}"
            );
            holders.push(*live[0]);
        }
        assert_eq!(holders.iter().collect::<BTreeSet<_>>().len(), 6);
        let mut sites = BTreeMap::new();
        for h in &holders {
            *sites.entry(out.infos[h].site.clone()).or_insert(0) += 1;
        }
        assert!(sites.values().all(|&c| c <= 2), "site spread {sites:?}");
    }
}

#[test]
fn node_losses_are_repaired_once_throttled_and_spread() {
    use Change::*;
    // Node 0 reboots (back within grace); nodes 1 and 5 die; node 7 dies during the repair.
    let script = [
        (MIN, 0, Down),
        (3 * MIN, 0, Up),
        (5 * MIN, 1, Down),
        (7 * MIN, 5, Down),
        (20 * MIN, 7, Down),
    ];
    let out = simulate(42, 18, 300, &script, cfg(), 4 * 60 * MIN);

    // The reboot caused no repair: nothing happens before node 1's grace expires.
    assert!(
        out.trace.iter().all(|(t, _, _)| *t >= 15 * MIN),
        "first repair at {}",
        out.trace[0].0
    );
    assert_fully_redundant(&out);
    assert_eq!(out.unrecoverable_at_end, 0);
    // One leader per segment: no index was rebuilt twice (the "only lost shards" assertion in
    // the simulation checks each action), and repairs were spread over the holders.
    let leaders: BTreeSet<NodeId> = out.trace.iter().map(|(_, by, _)| *by).collect();
    assert!(leaders.len() >= 10, "{} nodes led repairs", leaders.len());
    // Throttling per node: concurrency and the token bucket (bytes by time t ≤ burst + rate·(t −
    // first)).
    assert!(out.max_inflight <= 2);
    let c = cfg();
    for leader in &leaders {
        let mine: Vec<&(u64, NodeId, RepairAction)> =
            out.trace.iter().filter(|(_, by, _)| by == leader).collect();
        let first = mine[0].0;
        let mut bytes = 0;
        for (t, _, a) in mine {
            bytes += a.bytes;
            assert!(
                bytes <= c.burst_bytes + c.bytes_per_sec * (t - first) / 1000 + SHARD,
                "over budget at {t}"
            );
        }
    }
    // Deterministic: the same seed gives the same plan.
    let again = simulate(42, 18, 300, &script, cfg(), 4 * 60 * MIN);
    assert_eq!(again.trace, out.trace);
    eprintln!(
        "repairs: {} by {} leaders, {} failed attempts, last at {} min",
        out.trace.len(),
        leaders.len(),
        out.failed,
        out.trace.last().unwrap().0 / MIN,
    );
}

#[test]
fn a_rotten_shard_is_rebuilt_by_one_leader_after_the_inventory_arrives() {
    // After the first inventory refresh (every planner knows every holder).
    let at = 4 * MIN;
    let out = simulate(9, 12, 40, &[(at, 4, Change::Corrupt)], cfg(), 30 * MIN);
    assert_eq!(out.trace.len(), 1, "one repair: {:?}", out.trace);
    let (t, _, action) = &out.trace[0];
    assert_eq!(
        *t,
        at + INVENTORY_DELAY,
        "repaired as soon as the loss is known"
    );
    assert_eq!(action.targets.len(), 1);
    assert_fully_redundant(&out);
}

#[test]
fn a_leader_that_cannot_repair_is_replaced_after_the_takeover_time() {
    use Change::*;
    // Node 2 dies. Find the node that leads the most of the repairs...
    let healthy = simulate(5, 12, 60, &[(MIN, 2, Down)], cfg(), 3 * 60 * MIN);
    let mut led: BTreeMap<NodeId, usize> = BTreeMap::new();
    for (_, by, _) in &healthy.trace {
        *led.entry(*by).or_default() += 1;
    }
    let (&broken, &count) = led.iter().max_by_key(|(_, c)| **c).unwrap();
    let n = healthy.infos.keys().position(|id| *id == broken).unwrap();
    let n = (0..12)
        .find(|i| NodeKey::from_seed([*i as u8 + 1; 32]).node_id() == broken)
        .unwrap_or(n);
    // ...and make every repair it tries fail (it stays up: a read-only disk, say). The segments
    // it leads are taken over by the next holder in line after `takeover_ms`.
    let script = [(MIN, n, Broken), (MIN, 2, Down)];
    let out = simulate(5, 12, 60, &script, cfg(), 3 * 60 * MIN);
    assert!(out.failed >= count, "{} failed attempts", out.failed);
    // Degraded from 10 min on at the earliest (node 2's shards count lost after the grace time;
    // planners that never saw its inventory count them lost `grace_ms` after tracking began).
    let start = cfg().grace_ms;
    let taken_over: Vec<u64> = out
        .trace
        .iter()
        .filter(|(_, by, _)| *by != broken)
        .map(|(t, _, _)| *t)
        .filter(|t| *t >= start + cfg().takeover_ms)
        .collect();
    assert!(
        taken_over.len() >= count,
        "{count} segments led by the broken node, {} taken over",
        taken_over.len()
    );
    assert_fully_redundant(&out);
}

#[test]
fn more_than_m_losses_are_reported_unrecoverable() {
    use Change::Down;
    // 6 nodes, every segment on all six: three permanent losses leave 3 < k = 4.
    let script = [(MIN, 0, Down), (MIN, 1, Down), (MIN, 2, Down)];
    let out = simulate(7, 6, 5, &script, cfg(), 60 * MIN);
    assert!(out.trace.is_empty(), "no repair is possible");
    assert_eq!(out.unrecoverable_at_end, 5);
}

/// `count` equal nodes in one site, keys from seeds `first..`.
fn one_site_nodes(count: u8, first: u8) -> Vec<NodeInfo> {
    (0..count)
        .map(|i| NodeInfo {
            id: NodeKey::from_seed([first + i; 32]).node_id(),
            capacity_bytes: 1 << 30,
            free_bytes: 1 << 30,
            site: "a".into(),
            power: "p".into(),
        })
        .collect()
}

fn shard_of(segment: SegmentId, index: u16, k: u16, m: u16) -> HeldShard {
    HeldShard {
        segment,
        index,
        k,
        m,
        shard_bytes: SHARD,
    }
}

/// Node `me`'s planner once every node is up and has reported: nodes `0..k + m` hold shard `i`
/// of a `k + m` segment `seg` each, the others none.
fn planner_knowing(infos: &[NodeInfo], me: usize, seg: SegmentId, k: u16, m: u16) -> RepairPlanner {
    let mut p = RepairPlanner::new(infos[me].id, cfg(), 0);
    for info in infos {
        p.handle(0, Event::NodeUp(info.clone()));
    }
    for (i, info) in infos.iter().enumerate() {
        let shards = if i < usize::from(k + m) {
            vec![shard_of(seg, i as u16, k, m)]
        } else {
            vec![]
        };
        p.handle(
            1000,
            Event::Inventory {
                node: info.id,
                shards,
            },
        );
    }
    p
}

#[test]
fn unreported_indices_wait_for_every_report_and_the_grace_time() {
    let infos = one_site_nodes(8, 1);
    let seg = SegmentId([9; 32]);
    let held = |i: u16| shard_of(seg, i, 4, 2);
    // Only four of six holders have reported so far; every one of them watches the segment.
    let mut planners: Vec<RepairPlanner> = infos[..4]
        .iter()
        .map(|me| {
            let mut p = RepairPlanner::new(me.id, cfg(), 0);
            for info in &infos {
                p.handle(0, Event::NodeUp(info.clone()));
            }
            // Twice: the first round may reach this node before it watches the segment.
            for i in (0..4u16).chain(0..4) {
                p.handle(
                    1000,
                    Event::Inventory {
                        node: infos[usize::from(i)].id,
                        shards: vec![held(i)],
                    },
                );
            }
            p
        })
        .collect();
    // Nodes 4..8 have not reported at all: nothing is known missing, not even after the grace
    // time, until the takeover time as a last resort.
    let mut silent = planners.clone();
    for p in &mut planners {
        assert_eq!(
            p.poll(1000 + 10 * MIN - 1),
            None,
            "reports may still be arriving"
        );
    }
    assert!(silent.iter_mut().all(|p| p.poll(1000 + 20 * MIN).is_none()));
    let late: Vec<RepairAction> = silent
        .iter_mut()
        .filter_map(|p| p.poll(1000 + cfg().takeover_ms))
        .collect();
    assert_eq!(late.len(), 1, "{late:?}");
    // The others report (they hold nothing of the segment): indices 4 and 5 are lost once the
    // grace time has passed.
    for p in &mut planners {
        for info in &infos[4..] {
            p.handle(
                2000,
                Event::Inventory {
                    node: info.id,
                    shards: Vec::new(),
                },
            );
        }
        assert_eq!(p.poll(1000 + 10 * MIN - 1), None);
        assert_eq!(p.next_wakeup(2000), Some(1000 + 10 * MIN));
    }
    let actions: Vec<RepairAction> = planners
        .iter_mut()
        .filter_map(|p| p.poll(1000 + 10 * MIN))
        .collect();
    assert_eq!(actions.len(), 1, "exactly one holder leads: {actions:?}");
    assert_eq!(
        actions[0].targets.iter().map(|t| t.0).collect::<Vec<_>>(),
        vec![4, 5]
    );
    assert!(
        actions[0]
            .targets
            .iter()
            .all(|(_, n)| !infos[..4].iter().any(|i| i.id == *n))
    );
}

#[test]
fn holders_that_reported_just_before_this_node_held_the_segment_are_known() {
    // A put stores a 2 + 1 segment on nodes 0, 1 and 2 at once: nodes 1 and 2 publish their
    // inventories before node 0 has taken in its own. Node 3 is spare.
    let infos = one_site_nodes(4, 40);
    let seg = SegmentId([7; 32]);
    let held = |i: u16| shard_of(seg, i, 2, 1);
    let planner = |me: usize, own_at: u64| {
        let mut p = RepairPlanner::new(infos[me].id, cfg(), 0);
        for info in &infos {
            p.handle(0, Event::NodeUp(info.clone()));
        }
        for i in (0..3u16).filter(|i| usize::from(*i) != me) {
            p.handle(
                1000,
                Event::Inventory {
                    node: infos[usize::from(i)].id,
                    shards: vec![held(i)],
                },
            );
        }
        p.handle(
            1000,
            Event::Inventory {
                node: infos[3].id,
                shards: vec![],
            },
        );
        p.handle(
            own_at,
            Event::Inventory {
                node: infos[me].id,
                shards: vec![held(me as u16)],
            },
        );
        p
    };
    // Node 2 dies; nobody reports again. Its shard is lost after the grace time and exactly one
    // of the two remaining holders rebuilds that index alone, on the spare node.
    let lost_at = 5000;
    let mut planners = [planner(0, 1500), planner(1, 1500)];
    for p in &mut planners {
        p.handle(lost_at, Event::NodeDown(infos[2].id));
        assert_eq!(p.poll(lost_at + cfg().grace_ms - 1), None);
    }
    let actions: Vec<RepairAction> = planners
        .iter_mut()
        .filter_map(|p| p.poll(lost_at + cfg().grace_ms))
        .collect();
    assert_eq!(actions.len(), 1, "one leader, at once: {actions:?}");
    assert_eq!(actions[0].targets, vec![(2, infos[3].id)]);
    // Lists older than the memory of recent inventories are not relied on: without new reports
    // the holders stay unknown until the takeover time.
    let mut late = planner(0, 1000 + macula_store::repair::RECENT_INVENTORY_MS + 1);
    late.handle(lost_at, Event::NodeDown(infos[2].id));
    assert_eq!(late.poll(lost_at + cfg().grace_ms), None);
}

#[test]
fn a_suspected_leader_keeps_its_turn() {
    // Segment 2 + 2 on nodes 0..4, every inventory known; node 4 is spare. Node 3 dies.
    let infos = one_site_nodes(5, 60);
    let seg = SegmentId([8; 32]);
    let planner = |me: usize| {
        let mut p = planner_knowing(&infos, me, seg, 2, 2);
        p.handle(5000, Event::NodeDown(infos[3].id));
        p
    };
    let due = 5000 + cfg().grace_ms;
    let leader = (0..3)
        .find(|&i| planner(i).poll(due).is_some())
        .expect("a leader");
    let others: Vec<usize> = (0..3).filter(|&i| i != leader).collect();
    // The others suspect the leader (busy, a lost probe): neither repairs in its place...
    let mut followers: Vec<RepairPlanner> = others
        .iter()
        .map(|&i| {
            let mut p = planner(i);
            p.handle(due - 1, Event::NodeSuspect(infos[leader].id));
            p
        })
        .collect();
    for p in &mut followers {
        assert_eq!(p.poll(due), None, "repeated the suspected leader's repair");
    }
    // ...before their takeover time,
    let takeover = followers
        .iter()
        .filter_map(|p| p.clone().poll(due + 2 * cfg().takeover_ms))
        .map(|a| a.rank)
        .min();
    assert_eq!(
        takeover,
        Some(1),
        "the next holder takes over, ranked behind the suspected leader"
    );
    // or before the leader is down: then the next holder leads at once.
    let now: Vec<RepairAction> = followers
        .iter_mut()
        .filter_map(|p| {
            p.handle(due + 1, Event::NodeDown(infos[leader].id));
            p.poll(due + 1)
        })
        .collect();
    assert_eq!(now.len(), 1, "{now:?}");
    assert_eq!(
        now[0].rank, 0,
        "the next holder leads once the leader is down"
    );
}

#[test]
fn a_deleted_segment_is_not_repaired_when_other_holders_report_first() {
    // A 2 + 1 segment on nodes 0, 1 and 2, every inventory known; node 3 is spare. Its owner
    // deletes it: node 1 applies the delete and publishes its inventory first.
    let infos = one_site_nodes(4, 40);
    let seg = SegmentId([9; 32]);
    let planner = |me: usize| planner_knowing(&infos, me, seg, 2, 1);
    let node1_deleted = |p: &mut RepairPlanner| {
        p.handle(
            2000,
            Event::Inventory {
                node: infos[1].id,
                shards: vec![],
            },
        );
    };
    // Without knowing of the delete, the two holders left see a lost shard and one of them
    // rebuilds it (this is what the delete event prevents).
    let unaware: Vec<RepairAction> = [0, 2]
        .into_iter()
        .filter_map(|me| {
            let mut p = planner(me);
            node1_deleted(&mut p);
            p.poll(2000)
        })
        .collect();
    assert_eq!(unaware.len(), 1, "{unaware:?}");
    // Nodes 0 and 2 applied the delete too (their stores said so): no repair, not even after a
    // listing of their own store taken just before the delete arrives, nor later.
    for me in [0, 2] {
        let mut p = planner(me);
        p.handle(1900, Event::Deleted { segment: seg });
        node1_deleted(&mut p);
        p.handle(
            2100,
            Event::Inventory {
                node: infos[me].id,
                shards: vec![shard_of(seg, me as u16, 2, 1)],
            },
        );
        for t in [
            2000,
            2100,
            2000 + cfg().grace_ms,
            2000 + 3 * cfg().takeover_ms,
        ] {
            assert_eq!(
                p.poll(t),
                None,
                "node {me} repaired a deleted segment at {t}"
            );
        }
        assert_eq!(p.status(2100).segments, 0, "node {me} still tracks it");
    }
}
