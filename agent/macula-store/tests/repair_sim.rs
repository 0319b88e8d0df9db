//! Deterministic simulation of the repair planner: virtual time, seeded randomness, membership
//! changes in, repair actions out, an in-memory "world" that executes them with finite bandwidth.

use std::collections::{BTreeMap, BTreeSet};

use macula_core::{NodeId, NodeKey};
use macula_store::header::SegmentId;
use macula_store::placement::{NodeInfo, place};
use macula_store::repair::{Event, RepairAction, RepairConfig, RepairPlanner};

const MIN: u64 = 60_000;
const SHARD: u64 = 1 << 20;

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

#[derive(Debug, Clone)]
enum Sim {
    Down(NodeId),
    Up(NodeId),
    Finish(RepairAction),
}

struct Outcome {
    trace: Vec<(u64, RepairAction)>,
    truth: BTreeMap<(SegmentId, u16), NodeId>,
    infos: BTreeMap<NodeId, NodeInfo>,
    up: BTreeSet<NodeId>,
    max_inflight: usize,
    unrecoverable_at_end: usize,
}

/// Runs `segments` 4+2 segments on `nodes` nodes in three sites; `script` lists
/// (time, node number, down/up) membership changes.
fn simulate(
    seed: u64,
    nodes: usize,
    segments: u32,
    script: &[(u64, usize, bool)],
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
    let mut planner = RepairPlanner::new(cfg, 0);
    let mut truth = BTreeMap::new();
    for info in &infos {
        planner.handle(0, Event::NodeUp(info.clone()));
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
            truth.insert((seg, i as u16), node);
            planner.handle(
                0,
                Event::ShardHeld {
                    segment: seg,
                    index: i as u16,
                    node,
                    k: 4,
                    m: 2,
                    shard_bytes: SHARD,
                },
            );
        }
    }
    let mut queue: BTreeMap<u64, Vec<Sim>> = BTreeMap::new();
    for &(t, n, down) in script {
        queue.entry(t).or_default().push(if down {
            Sim::Down(infos[n].id)
        } else {
            Sim::Up(infos[n].id)
        });
    }
    let mut up: BTreeSet<NodeId> = infos.iter().map(|i| i.id).collect();
    let mut trace = Vec::new();
    let mut inflight = 0usize;
    let mut max_inflight = 0;
    let mut now = 0;
    while now <= until {
        for ev in queue.remove(&now).unwrap_or_default() {
            match ev {
                Sim::Down(id) => {
                    up.remove(&id);
                    planner.handle(now, Event::NodeDown(id));
                }
                Sim::Up(id) => {
                    up.insert(id);
                    let info = infos.iter().find(|i| i.id == id).unwrap().clone();
                    planner.handle(now, Event::NodeUp(info));
                }
                Sim::Finish(action) => {
                    inflight -= 1;
                    // The world executes the repair only if every source and target is still up.
                    let ok = action
                        .sources
                        .iter()
                        .chain(&action.targets)
                        .all(|(_, n)| up.contains(n));
                    if ok {
                        for &(i, n) in &action.targets {
                            truth.insert((action.segment, i), n);
                        }
                        planner.handle(
                            now,
                            Event::RepairDone {
                                segment: action.segment,
                                stored: action.targets.clone(),
                            },
                        );
                    } else {
                        planner.handle(
                            now,
                            Event::RepairFailed {
                                segment: action.segment,
                            },
                        );
                    }
                }
            }
        }
        while let Some(action) = planner.poll(now) {
            // Every action must be executable as planned.
            assert_eq!(action.sources.len(), 4);
            for (i, n) in &action.sources {
                assert_eq!(
                    truth.get(&(action.segment, *i)),
                    Some(n),
                    "source holds the shard"
                );
                assert!(up.contains(n), "source is up");
            }
            let holders: BTreeSet<NodeId> = (0..6)
                .filter_map(|i| truth.get(&(action.segment, i)))
                .copied()
                .collect();
            let mut targets = BTreeSet::new();
            for (_, n) in &action.targets {
                assert!(up.contains(n), "target is up");
                assert!(
                    !holders.contains(n),
                    "target holds no shard of the segment yet"
                );
                assert!(targets.insert(*n), "one shard per target");
            }
            inflight += 1;
            max_inflight = max_inflight.max(inflight);
            // 50 MiB/s per repair stream.
            let done = now + (action.bytes * 1000).div_ceil(50 << 20).max(1);
            queue
                .entry(done)
                .or_default()
                .push(Sim::Finish(action.clone()));
            trace.push((now, action));
        }
        // Advance virtual time to the next thing that can happen.
        let next_event = queue.keys().next().copied();
        let next_wake = planner.next_wakeup(now);
        now = match (next_event, next_wake) {
            (Some(a), Some(b)) => a.min(b),
            (Some(a), None) | (None, Some(a)) => a,
            (None, None) => break,
        };
    }
    let unrecoverable_at_end = planner.status(now).unrecoverable.len();
    Outcome {
        trace,
        truth,
        infos: infos.into_iter().map(|i| (i.id, i)).collect(),
        up,
        max_inflight,
        unrecoverable_at_end,
    }
}

fn cfg() -> RepairConfig {
    RepairConfig {
        grace_ms: 10 * MIN,
        max_inflight: 2,
        bytes_per_sec: 8 << 20,
        burst_bytes: 16 << 20,
        retry_ms: 30_000,
    }
}

#[test]
fn node_losses_are_repaired_throttled_and_spread() {
    // Node 0 reboots (back within grace); nodes 1 and 5 die; node 7 dies during the repair.
    let script = [
        (MIN, 0, true),
        (3 * MIN, 0, false),
        (5 * MIN, 1, true),
        (7 * MIN, 5, true),
        (20 * MIN, 7, true),
    ];
    let out = simulate(42, 18, 300, &script, cfg(), 4 * 60 * MIN);

    // The reboot caused no repair: nothing happens before node 1's grace expires.
    assert!(
        out.trace.iter().all(|(t, _)| *t >= 15 * MIN),
        "first repair at {}",
        out.trace[0].0
    );
    // Full redundancy restored: every shard on a live node, 6 distinct nodes, ≤ 2 per site.
    for s in out.truth.keys().map(|(s, _)| *s).collect::<BTreeSet<_>>() {
        let holders: Vec<NodeId> = (0..6).map(|i| out.truth[&(s, i)]).collect();
        assert!(
            holders.iter().all(|h| out.up.contains(h)),
            "segment {s:?} has a shard on a dead node"
        );
        assert_eq!(holders.iter().collect::<BTreeSet<_>>().len(), 6);
        let mut sites = BTreeMap::new();
        for h in &holders {
            *sites.entry(out.infos[h].site.clone()).or_insert(0) += 1;
        }
        assert!(sites.values().all(|&c| c <= 2), "site spread {sites:?}");
    }
    assert_eq!(out.unrecoverable_at_end, 0);
    // Throttling: concurrency and the token bucket (bytes by time t ≤ burst + rate·(t − first)).
    assert!(out.max_inflight <= 2);
    let c = cfg();
    let first = out.trace[0].0;
    let mut bytes = 0;
    for (t, a) in &out.trace {
        bytes += a.bytes;
        assert!(
            bytes <= c.burst_bytes + c.bytes_per_sec * (t - first) / 1000 + SHARD,
            "over budget at {t}"
        );
    }
    // Deterministic: the same seed gives the same plan.
    let again = simulate(42, 18, 300, &script, cfg(), 4 * 60 * MIN);
    assert_eq!(again.trace, out.trace);
    eprintln!(
        "repairs: {}, last at {} min",
        out.trace.len(),
        out.trace.last().unwrap().0 / MIN
    );
}

#[test]
fn more_than_m_losses_are_reported_unrecoverable() {
    // 6 nodes, every segment on all six: three permanent losses leave 3 < k = 4.
    let script = [(MIN, 0, true), (MIN, 1, true), (MIN, 2, true)];
    let out = simulate(7, 6, 5, &script, cfg(), 60 * MIN);
    assert!(out.trace.is_empty(), "no repair is possible");
    assert_eq!(out.unrecoverable_at_end, 5);
}

#[test]
fn partial_inventory_waits_for_the_grace_time() {
    let infos: Vec<NodeInfo> = (0..8u8)
        .map(|i| NodeInfo {
            id: NodeKey::from_seed([i + 1; 32]).node_id(),
            capacity_bytes: 1 << 30,
            free_bytes: 1 << 30,
            site: "a".into(),
            power: "p".into(),
        })
        .collect();
    let mut planner = RepairPlanner::new(cfg(), 0);
    for info in &infos {
        planner.handle(0, Event::NodeUp(info.clone()));
    }
    let seg = SegmentId([9; 32]);
    // Only four of six holders have reported so far.
    for i in 0..4u16 {
        planner.handle(
            1000,
            Event::ShardHeld {
                segment: seg,
                index: i,
                node: infos[usize::from(i)].id,
                k: 4,
                m: 2,
                shard_bytes: SHARD,
            },
        );
    }
    assert_eq!(
        planner.poll(1000 + 10 * MIN - 1),
        None,
        "reports may still be arriving"
    );
    assert_eq!(planner.next_wakeup(1000), Some(1000 + 10 * MIN));
    let action = planner
        .poll(1000 + 10 * MIN)
        .expect("unreported indices count as lost after grace");
    assert_eq!(
        action.targets.iter().map(|t| t.0).collect::<Vec<_>>(),
        vec![4, 5]
    );
    assert!(
        action
            .targets
            .iter()
            .all(|(_, n)| !infos[..4].iter().any(|i| i.id == *n))
    );
}
