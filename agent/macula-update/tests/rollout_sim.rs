//! Deterministic simulation of realm rollouts: N nodes, each with its own `RolloutBook`, fed only
//! the records that reach it over a simulated pub/sub (delays, nodes away and back with
//! catch-up), in virtual time. Checks the rules the daemons rely on: waves in order, a wave opens
//! only when the previous one is good, one failure halts the realm, an absent node catches up,
//! a silent node halts at the deadline, and the same seed replays the same run.

use std::collections::BinaryHeap;

use macula_core::{NodeId, NodeKey};
use macula_update::rollout::{
    Message, NextStep, Phase, Report, Rollout, RolloutBook, SignedReport, SignedRollout, Step,
    after_boot, parse_waves,
};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

const OLD: &str = "1.0";
const NEW: &str = "1.1";
const COMPAT: &str = "macula-sim";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Health {
    Good,
    /// The new slot fails its health check (the node falls back).
    Bad,
    /// The node goes quiet after starting (never reports again).
    Silent,
}

struct SimNode {
    key: NodeKey,
    book: RolloutBook,
    online: bool,
    slot: &'static str,
    version: &'static str,
    health: Health,
    seq: u64,
    /// Busy with an install or a reboot: the step already running.
    busy: bool,
    joined_late: bool,
}

#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Ev {
    /// A message reaches a node.
    Deliver(usize, Vec<u8>),
    /// A node looks at its book again.
    Tick(usize),
    /// A node's install finished (it reboots).
    Installed(usize),
    /// A node booted the new slot; the health check said this.
    Booted(usize),
    /// A node goes away / comes back.
    Away(usize),
    Back(usize),
}

struct Sim {
    rng: StdRng,
    now: u64,
    seq: u64,
    queue: BinaryHeap<std::cmp::Reverse<(u64, u64, Ev)>>,
    nodes: Vec<SimNode>,
    /// (time, node, step word) of every report made, in order: the trace.
    trace: Vec<(u64, usize, &'static str)>,
}

impl Sim {
    fn new(seed: u64, n: usize) -> Self {
        let mut rng = StdRng::seed_from_u64(seed);
        let nodes = (0..n)
            .map(|_| SimNode {
                key: NodeKey::from_seed(rng.random()),
                book: RolloutBook::new(),
                online: true,
                slot: "A",
                version: OLD,
                health: Health::Good,
                seq: 0,
                busy: false,
                joined_late: false,
            })
            .collect();
        Self {
            rng,
            now: 0,
            seq: 0,
            queue: BinaryHeap::new(),
            nodes,
            trace: Vec::new(),
        }
    }

    fn at(&mut self, t: u64, ev: Ev) {
        self.seq += 1;
        self.queue.push(std::cmp::Reverse((t, self.seq, ev)));
    }

    fn id(&self, i: usize) -> NodeId {
        self.nodes[i].key.node_id()
    }

    fn index(&self, id: &NodeId) -> usize {
        self.nodes
            .iter()
            .position(|n| n.key.node_id() == *id)
            .unwrap()
    }

    /// Publishes from node `from` to every online node (1–3 s each), itself at once.
    fn spread(&mut self, from: usize, msg: Vec<u8>) {
        self.deliver(from, &msg);
        for i in 0..self.nodes.len() {
            if i != from && self.nodes[i].online {
                let d = self.rng.random_range(1..=3);
                self.at(self.now + d, Ev::Deliver(i, msg.clone()));
            }
        }
    }

    fn deliver(&mut self, i: usize, bytes: &[u8]) {
        let node = &mut self.nodes[i];
        match Message::decode(bytes).unwrap() {
            Message::Rollout(r) => {
                node.book.offer_rollout(r, |_| Ok(())).unwrap();
            }
            Message::Report(r) => {
                node.book.offer_report(r).unwrap();
            }
        }
        self.at(self.now, Ev::Tick(i));
    }

    fn publish(&mut self, from: usize, waves: &str, deadline_s: u64) -> Rollout {
        let hash = [7u8; 32];
        let members: Vec<NodeId> = (0..self.nodes.len())
            .filter(|i| !self.nodes[*i].joined_late)
            .map(|i| self.id(i))
            .collect();
        let r = Rollout {
            publisher: self.id(from),
            published_at: self.now,
            version: NEW.into(),
            compatible: COMPAT.into(),
            bundle: "cap".into(),
            bundle_hash: hash,
            bundle_len: 1,
            waves: parse_waves(waves).unwrap(),
            wave_deadline_s: deadline_s,
            nodes: Rollout::order(&hash, members),
        };
        let s = SignedRollout::sign(&self.nodes[from].key, &r).unwrap();
        self.spread(from, Message::Rollout(s).encode());
        r
    }

    fn report(&mut self, i: usize, step: Step) {
        let (id, _) = self.nodes[i].book.current().unwrap();
        self.trace.push((self.now, i, step.word()));
        let node = &mut self.nodes[i];
        node.seq += 1;
        let rep = Report {
            rollout: id,
            node: node.key.node_id(),
            seq: node.seq,
            at: self.now,
            step,
        };
        let s = SignedReport::sign(&node.key, &rep);
        self.spread(i, Message::Report(s).encode());
    }

    fn tick(&mut self, i: usize) {
        if !self.nodes[i].online || self.nodes[i].busy {
            return;
        }
        let me = self.id(i);
        let running = self.nodes[i].version;
        match self.nodes[i]
            .book
            .next_step(&me, Some(COMPAT), Some(running), self.now)
        {
            NextStep::Nothing => {}
            NextStep::WakeAt(t) => self.at(t, Ev::Tick(i)),
            NextStep::ReportGood => {
                let slot = self.nodes[i].slot.to_owned();
                self.report(
                    i,
                    Step::Good {
                        version: NEW.into(),
                        slot,
                    },
                );
            }
            NextStep::Install { .. } => {
                self.nodes[i].busy = true;
                self.report(i, Step::Fetching);
                let d = self.rng.random_range(30..90);
                self.at(self.now + d, Ev::Installed(i));
            }
        }
    }

    fn run_until(&mut self, end: u64) {
        while let Some(std::cmp::Reverse((t, _, _))) = self.queue.peek() {
            if *t > end {
                break;
            }
            let std::cmp::Reverse((t, _, ev)) = self.queue.pop().unwrap();
            self.now = t;
            match ev {
                Ev::Deliver(i, m) => {
                    if self.nodes[i].online {
                        self.deliver(i, &m);
                    }
                }
                Ev::Tick(i) => self.tick(i),
                Ev::Installed(i) => {
                    if self.nodes[i].health == Health::Silent {
                        continue;
                    }
                    let target = if self.nodes[i].slot == "A" { "B" } else { "A" };
                    self.report(
                        i,
                        Step::Rebooting {
                            slot: target.into(),
                        },
                    );
                    self.nodes[i].slot = target;
                    self.nodes[i].version = NEW;
                    let d = self.rng.random_range(15..40);
                    self.at(self.now + d, Ev::Booted(i));
                }
                Ev::Booted(i) => {
                    let healthy = self.nodes[i].health == Health::Good;
                    let target = self.nodes[i].slot;
                    let booted = target;
                    let step = after_boot(NEW, target, booted, Some(healthy)).unwrap();
                    if !healthy {
                        // the unhealthy slot reports, then the reset falls back to the old one
                        self.nodes[i].slot = if target == "A" { "B" } else { "A" };
                        self.nodes[i].version = OLD;
                        let back = self.nodes[i].slot;
                        let again = after_boot(NEW, target, back, None).unwrap();
                        assert!(matches!(again, Step::Failed { .. }), "{again:?}");
                    }
                    self.nodes[i].busy = false;
                    self.report(i, step);
                }
                Ev::Away(i) => {
                    self.nodes[i].online = false;
                    let id = self.id(i);
                    for n in &mut self.nodes {
                        n.book.set_down(id, true);
                    }
                }
                Ev::Back(i) => {
                    self.nodes[i].online = true;
                    let id = self.id(i);
                    for n in &mut self.nodes {
                        n.book.set_down(id, false);
                    }
                    // catch-up: every record of one online peer
                    let peer = (0..self.nodes.len())
                        .find(|p| *p != i && self.nodes[*p].online)
                        .unwrap();
                    for m in self.nodes[peer].book.messages() {
                        self.deliver(i, &m.encode());
                    }
                }
            }
        }
        self.now = end;
    }

    fn phase(&self, i: usize) -> Phase {
        self.nodes[i].book.view(self.now).unwrap().phase
    }

    fn started(&self, i: usize) -> Option<u64> {
        self.trace
            .iter()
            .find(|(_, n, w)| *n == i && *w == "fetching")
            .map(|(t, _, _)| *t)
    }

    fn good_at(&self, i: usize) -> Option<u64> {
        self.trace
            .iter()
            .find(|(_, n, w)| *n == i && *w == "good")
            .map(|(t, _, _)| *t)
    }
}

/// Every node of wave k+1 starts only after every node of wave k that took part (all but the
/// `skipped` ones, away when their wave opened) is good.
fn assert_waves_in_order(sim: &Sim, r: &Rollout, skipped: &[usize]) {
    let waves = r.waves();
    for pair in waves.windows(2) {
        let prev_good = pair[0]
            .iter()
            .map(|n| sim.index(n))
            .filter(|i| !skipped.contains(i))
            .filter_map(|i| sim.good_at(i))
            .max()
            .unwrap_or(0);
        for n in &pair[1] {
            if let Some(s) = sim.started(sim.index(n)) {
                assert!(
                    s >= prev_good,
                    "node started at {s} before the previous wave was good at {prev_good}"
                );
            }
        }
    }
}

#[test]
fn waves_roll_out_in_order_to_every_node() {
    for seed in 0..20 {
        let mut sim = Sim::new(seed, 12);
        let r = sim.publish(0, "1,25%,100%", 1800);
        assert_eq!(
            r.waves().iter().map(Vec::len).collect::<Vec<_>>(),
            vec![1, 2, 9]
        );
        sim.run_until(3600);
        for i in 0..12 {
            assert_eq!(sim.phase(i), Phase::Done, "seed {seed} node {i}");
            assert_eq!(sim.nodes[i].version, NEW);
            assert!(sim.good_at(i).is_some());
        }
        assert_waves_in_order(&sim, &r, &[]);
        // the first node runs alone: nobody else started before it was good
        let first = sim.index(&r.waves()[0][0]);
        let first_good = sim.good_at(first).unwrap();
        for i in (0..12).filter(|i| *i != first) {
            assert!(sim.started(i).unwrap() >= first_good, "seed {seed}");
        }
    }
}

#[test]
fn a_failure_in_the_first_wave_halts_the_realm() {
    for seed in 0..20 {
        let mut sim = Sim::new(seed, 6);
        // which node comes first depends only on the bundle hash and the members
        let ids: Vec<NodeId> = (0..6).map(|i| sim.id(i)).collect();
        let first = sim.index(&Rollout::order(&[7u8; 32], ids)[0]);
        sim.nodes[first].health = Health::Bad;
        let r = sim.publish(0, "1,100%", 1800);
        sim.run_until(3600);
        for i in 0..6 {
            match sim.phase(i) {
                Phase::Halted { node, reason } => {
                    assert_eq!(node, sim.id(first));
                    assert!(reason.contains("health check failed"), "{reason}");
                }
                other => panic!("seed {seed} node {i}: {other:?}"),
            }
            if i != first {
                assert_eq!(sim.started(i), None, "seed {seed}: node {i} was touched");
                assert_eq!((sim.nodes[i].slot, sim.nodes[i].version), ("A", OLD));
            }
        }
        // the failed node is back on its old slot and does not try again
        assert_eq!(
            (sim.nodes[first].slot, sim.nodes[first].version),
            ("A", OLD)
        );
        assert_eq!(
            sim.trace
                .iter()
                .filter(|(_, n, w)| *n == first && *w == "fetching")
                .count(),
            1
        );
        assert_waves_in_order(&sim, &r, &[]);
    }
}

#[test]
fn a_node_away_is_skipped_and_catches_up_when_back() {
    for seed in 0..20 {
        let mut sim = Sim::new(seed, 8);
        let ids: Vec<NodeId> = (0..8).map(|i| sim.id(i)).collect();
        // the first node in wave order is away during publication (its book is empty)
        let away = sim.index(&Rollout::order(&[7u8; 32], ids)[0]);
        let publisher = usize::from(away == 0);
        sim.at(0, Ev::Away(away));
        sim.run_until(0);
        let r = sim.publish(publisher, "1,50%,100%", 1800);
        sim.run_until(1200);
        // the others went on without it
        for i in (0..8).filter(|i| *i != away) {
            assert_eq!(sim.nodes[i].version, NEW, "seed {seed} node {i}");
            assert_eq!(sim.phase(i), Phase::Done);
        }
        assert_eq!(sim.started(away), None);
        assert_eq!(sim.nodes[away].book.current(), None);
        // back: it learns the rollout from a peer and installs
        sim.at(1200, Ev::Back(away));
        sim.run_until(1500);
        assert_eq!(sim.nodes[away].version, NEW, "seed {seed}");
        assert!(sim.started(away).unwrap() >= 1200);
        for i in 0..8 {
            assert_eq!(sim.phase(i), Phase::Done);
        }
        assert_waves_in_order(&sim, &r, &[away]);
    }
}

#[test]
fn a_node_that_joins_after_publication_updates_once_done() {
    let mut sim = Sim::new(3, 5);
    sim.nodes[4].joined_late = true;
    sim.nodes[4].online = false;
    let r = sim.publish(0, "1,100%", 1800);
    assert_eq!(r.nodes.len(), 4);
    sim.run_until(1000);
    assert_eq!(sim.phase(0), Phase::Done);
    sim.at(1000, Ev::Back(4));
    sim.run_until(1300);
    assert_eq!(sim.nodes[4].version, NEW);
    let view = sim.nodes[0].book.view(sim.now).unwrap();
    let late = view.nodes.iter().find(|l| l.node == sim.id(4)).unwrap();
    assert_eq!(late.wave, None);
    assert!(matches!(late.step, Some(Step::Good { .. })));
}

#[test]
fn a_silent_node_halts_the_rollout_at_the_deadline() {
    let mut sim = Sim::new(5, 4);
    let ids: Vec<NodeId> = (0..4).map(|i| sim.id(i)).collect();
    let first = sim.index(&Rollout::order(&[7u8; 32], ids)[0]);
    sim.nodes[first].health = Health::Silent;
    sim.publish(0, "1,100%", 300);
    sim.run_until(299);
    assert!(matches!(sim.phase(0), Phase::Wave { wave: 0, .. }));
    sim.run_until(400);
    for i in 0..4 {
        match sim.phase(i) {
            Phase::Halted { node, reason } => {
                assert_eq!(node, sim.id(first));
                assert!(reason.contains("deadline"), "{reason}");
            }
            other => panic!("{other:?}"),
        }
        if i != first {
            assert_eq!(sim.started(i), None);
        }
    }
}

#[test]
fn a_node_already_on_the_version_reports_good_without_installing() {
    let mut sim = Sim::new(9, 3);
    for n in &mut sim.nodes {
        n.version = NEW;
    }
    sim.publish(0, "1,100%", 1800);
    sim.run_until(60);
    for i in 0..3 {
        assert_eq!(sim.phase(i), Phase::Done);
        assert_eq!(sim.started(i), None);
        assert_eq!(sim.nodes[i].slot, "A");
    }
}

#[test]
fn same_seed_same_trace() {
    let run = |seed| {
        let mut sim = Sim::new(seed, 10);
        sim.nodes[4].health = Health::Bad;
        sim.at(5, Ev::Away(2));
        sim.at(400, Ev::Back(2));
        sim.publish(0, "2,50%,100%", 1800);
        sim.run_until(3000);
        sim.trace
    };
    assert_eq!(run(42), run(42));
    assert_ne!(run(42), run(43));
}

#[test]
fn a_newer_rollout_supersedes_the_current_one() {
    let mut sim = Sim::new(1, 3);
    sim.publish(0, "1,100%", 1800);
    sim.run_until(10);
    let first = sim.nodes[1].book.current().unwrap().0;
    let Some(Message::Rollout(old)) = sim.nodes[1].book.messages().into_iter().next() else {
        panic!("no rollout held");
    };
    sim.publish(2, "100%", 1800);
    sim.run_until(15);
    let (second, r) = sim.nodes[1].book.current().unwrap();
    assert_ne!(first, second);
    assert_eq!(r.publisher, sim.id(2));
    // the old record arriving again changes nothing
    assert_eq!(
        sim.nodes[1].book.offer_rollout(old, |_| Ok(())),
        Ok(macula_update::rollout::Offered::Known)
    );
    assert_eq!(sim.nodes[1].book.current().unwrap().0, second);
}
