//! Deterministic simulation of a realm running proofs (docs/proofs.md §7): seeded RNG, virtual
//! epochs, every node in one process with its own ledger copy. Real shards (encoded by
//! macula-store), real challenges, answers, signatures and ledger records; only the network is a
//! loop that delivers records (and drops them across a partition).

use std::collections::{BTreeMap, HashMap, HashSet};

use macula_core::{NodeId, NodeKey};
use macula_proof::capacity::{self, Claim, FormulaParams};
use macula_proof::ledger::{Failure, Ledger, LedgerError, Outcome, ProofResult, RewardParams};
use macula_proof::quarantine::{QuarantineParams, Status, Tracker};
use macula_proof::storage::{self, Item, ShardSource};
use macula_proof::{ProofKind, SignedAnswer, verifier_for};
use macula_store::codec::CodecId;
use macula_store::crypto::{AeadId, ObjectKey};
use macula_store::header::{SegmentId, SegmentKind};
use macula_store::segment::{SegmentParams, Shard, encode_segment};
use macula_store::tree;
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

#[derive(Default)]
struct Holder(HashMap<(SegmentId, u16), Shard>);

impl ShardSource for Holder {
    fn item(&self, segment: &SegmentId, index: u16, selector: u32) -> Option<Item> {
        let s = self.0.get(&(*segment, index))?;
        let sl = s.header.desc().shard_len;
        let g = storage::group_of(selector, sl);
        let start = g * tree::GROUP_LEN;
        let end = (start + tree::GROUP_LEN).min(sl as usize);
        Some(Item {
            header: s.header.encode(),
            data: s.data[start..end].to_vec(),
            proof: tree::proof(&s.outboard, sl as usize, g),
        })
    }
}

#[derive(Clone, Copy, PartialEq, Debug)]
enum Behaviour {
    Honest,
    /// Silently deleted this share of its shards (still lists them in its inventory).
    Drops(f64),
    /// Skips the capacity work: answers with made-up checkpoints.
    FakesWork,
    /// Sends its first (valid, signed) storage answer again for every later challenge.
    Replays,
    /// Its store is full (it refuses every shard) while its signed report claims 60 GiB free.
    ClaimsDisk,
    /// Its store is full and its report says so: refusals are no contradiction.
    Full,
}

struct Node {
    key: NodeKey,
    behaviour: Behaviour,
    holder: Holder,
    /// What the node publishes as its inventory (dropping nodes keep listing what they lost).
    inventory: Vec<(SegmentId, u16)>,
    ledger: Ledger,
    first_answer: Option<SignedAnswer>,
    /// Shards it deleted (kept by the test to hand back when they are "rebuilt").
    lost: Vec<((SegmentId, u16), Shard)>,
}

struct Realm {
    rng: StdRng,
    nodes: Vec<Node>,
    members: Vec<NodeId>,
    /// Nodes that cannot exchange records with the rest (a partition), by index.
    cut_off: HashSet<usize>,
    /// Nodes that keep a ledger copy (all when empty; large realms check a few).
    observers: Vec<usize>,
    qparams: QuarantineParams,
}

const STEPS: u32 = 2048;
const SEGMENTS: u16 = 32;
const PICKS: usize = 16;

impl Realm {
    fn new(seed: u64, n: usize, segments: usize, behaviours: &[(usize, Behaviour)]) -> Self {
        let mut rng = StdRng::seed_from_u64(seed);
        let rewards = RewardParams::default();
        let mut nodes: Vec<Node> = (0..n)
            .map(|i| {
                let mut s = [0u8; 32];
                s[..8].copy_from_slice(&(i as u64 + seed * 1000).to_le_bytes());
                Node {
                    key: NodeKey::from_seed(s),
                    behaviour: behaviours
                        .iter()
                        .find(|(j, _)| *j == i)
                        .map_or(Behaviour::Honest, |(_, b)| *b),
                    holder: Holder::default(),
                    inventory: Vec::new(),
                    ledger: Ledger::new(rewards),
                    first_answer: None,
                    lost: Vec::new(),
                }
            })
            .collect();
        let owner = NodeKey::from_seed([0xee; 32]);
        let params = SegmentParams {
            kind: SegmentKind::Data,
            codec: CodecId::RsGf16Leopard,
            aead: AeadId::ChaCha20Poly1305,
            k: 2,
            m: 1,
            segment_index: 0,
            segment_count: 1,
        };
        let key = ObjectKey::generate();
        for s in 0..segments {
            let plain: Vec<u8> = (0..40_000u32)
                .map(|b| (b as usize * 13 + s) as u8)
                .collect();
            let seg = encode_segment(&plain, &params, &key, &owner).unwrap();
            // Three distinct holders.
            let mut holders = Vec::new();
            while holders.len() < 3 {
                let h = rng.random_range(0..n);
                if !holders.contains(&h) {
                    holders.push(h);
                }
            }
            for (idx, h) in holders.into_iter().enumerate() {
                let shard = seg.shard(idx);
                let id = (shard.header.segment_id(), shard.header.index);
                nodes[h].inventory.push(id);
                nodes[h].holder.0.insert(id, shard);
            }
        }
        for node in &mut nodes {
            if let Behaviour::Drops(share) = node.behaviour {
                let mut ids: Vec<_> = node.holder.0.keys().copied().collect();
                ids.sort();
                let drop = ((ids.len() as f64) * share).ceil() as usize;
                for _ in 0..drop {
                    let i = rng.random_range(0..ids.len());
                    let id = ids.swap_remove(i);
                    let shard = node.holder.0.remove(&id).unwrap();
                    node.lost.push((id, shard));
                }
            }
        }
        let members = nodes.iter().map(|n| n.key.node_id()).collect();
        Self {
            rng,
            nodes,
            members,
            cut_off: HashSet::new(),
            observers: Vec::new(),
            qparams: QuarantineParams {
                max_failures: 2,
                window_epochs: 6,
                probation_passes: 3,
            },
        }
    }

    /// Delivers a record written by node `v` to everyone it can reach.
    fn spread(&mut self, v: usize, rec: &[u8]) {
        for to in 0..self.nodes.len() {
            if to != v && self.same_side(v, to) && self.observes(to) {
                // Push; a gap (missed earlier record) is left to anti-entropy.
                match self.nodes[to].ledger.insert(rec) {
                    Ok(_) | Err(LedgerError::Gap { .. }) => {}
                    Err(e) => panic!("honest record refused: {e}"),
                }
            }
        }
    }

    /// The claim in a node's signed resource report.
    fn claim_of(&self, i: usize) -> Claim {
        let taken = match self.nodes[i].behaviour {
            Behaviour::Full => 64 << 30,
            _ => 4 << 30,
        };
        Claim {
            processors: 4,
            cores_per_processor: 4,
            disk_reported: 64 << 30,
            disk_taken: taken,
        }
    }

    /// Puts: each node sends `writes` shards of 1 MiB to random others. A full store refuses;
    /// the writer records the refusal when `driver::judge_refusal` says so (it is the holder's
    /// designated verifier this epoch and the holder's claim had room), once per holder and epoch.
    fn writes(&mut self, epoch: u64, writes: usize) -> usize {
        let cfg = macula_proof::config::ProofsConfig::default();
        let mut recorded = 0;
        for w in 0..self.nodes.len() {
            for _ in 0..writes {
                let h = self.rng.random_range(0..self.nodes.len());
                if h == w
                    || !self.same_side(w, h)
                    || !matches!(
                        self.nodes[h].behaviour,
                        Behaviour::ClaimsDisk | Behaviour::Full
                    )
                {
                    continue;
                }
                let refusal = macula_proof::driver::Refusal {
                    prover: self.members[h],
                    need: 1 << 20,
                };
                let Some(result) = macula_proof::driver::judge_refusal(
                    &self.members[w],
                    &self.members,
                    epoch,
                    &refusal,
                    &self.claim_of(h),
                    &cfg,
                ) else {
                    continue;
                };
                if self.nodes[w].ledger.has_challenge(&result.challenge) {
                    continue;
                }
                let n = &mut self.nodes[w];
                let rec = n.ledger.append(&n.key, result).unwrap().encode();
                self.spread(w, &rec);
                recorded += 1;
            }
        }
        recorded
    }

    fn index_of(&self, id: &NodeId) -> usize {
        self.members.iter().position(|m| m == id).unwrap()
    }

    fn observes(&self, i: usize) -> bool {
        self.observers.is_empty() || self.observers.contains(&i)
    }

    fn same_side(&self, a: usize, b: usize) -> bool {
        self.cut_off.contains(&a) == self.cut_off.contains(&b)
    }

    /// One epoch: every node proves capacity and storage to its designated verifier, who records
    /// the result and spreads the record to everyone it can reach.
    fn epoch(&mut self, epoch: u64) {
        for p in 0..self.nodes.len() {
            let prover = self.members[p];
            let Some(vid) = verifier_for(&prover, epoch, &self.members) else {
                continue;
            };
            let v = self.index_of(&vid);
            if !self.same_side(p, v) {
                // The verifier cannot reach the prover during a partition: no proof this epoch.
                continue;
            }
            let results = vec![
                self.capacity_round(p, v, epoch),
                self.storage_round(p, v, epoch),
            ];
            for result in results {
                let n = &mut self.nodes[v];
                let rec = n.ledger.append(&n.key, result).unwrap().encode();
                self.spread(v, &rec);
            }
        }
    }

    fn capacity_round(&mut self, p: usize, v: usize, epoch: u64) -> ProofResult {
        let ch = capacity::Challenge {
            verifier: self.members[v],
            prover: self.members[p],
            epoch,
            nonce: self.rng.random(),
            steps: STEPS,
            segments: SEGMENTS,
            deadline_ms: 1000,
        };
        let mut answer = capacity::prove(&ch).unwrap();
        if self.nodes[p].behaviour == Behaviour::FakesWork {
            for (i, c) in answer.checkpoints.iter_mut().enumerate() {
                if i % 2 == 1 {
                    *c = [i as u8; 32];
                }
            }
        }
        let body = macula_core::wire::encode(&answer);
        let signed = SignedAnswer::sign(&self.nodes[p].key, ProofKind::Capacity, body);
        // Virtual measured time: 50–150 ms.
        let t_ms = self.rng.random_range(50..150);
        let claim = self.claim_of(p);
        let outcome = match capacity::verify(&ch, &answer, 4) {
            Ok(()) => Outcome::Capacity {
                t_ms,
                capacity_milli: capacity::capacity_milli(
                    &claim,
                    ch.steps,
                    t_ms,
                    ch.deadline_ms,
                    &FormulaParams {
                        offer_permille: 500,
                        disk_unit_bytes: 1 << 30,
                    },
                ),
            },
            Err(_) => Outcome::Failed(Failure::BadWork),
        };
        ProofResult {
            prover: ch.prover,
            kind: ProofKind::Capacity,
            epoch,
            challenge: ch.digest(),
            outcome,
            answer: Some((signed.digest(), signed.sig)),
            reward_micro: 0,
        }
    }

    fn storage_round(&mut self, p: usize, v: usize, epoch: u64) -> ProofResult {
        let nonce: [u8; 32] = self.rng.random();
        let ch = storage::Challenge {
            verifier: self.members[v],
            prover: self.members[p],
            epoch,
            nonce,
            picks: storage::draw(&nonce, &self.nodes[p].inventory, PICKS, 1),
            deadline_ms: 1000,
        };
        let node = &mut self.nodes[p];
        let signed = match (&node.behaviour, &node.first_answer) {
            (Behaviour::Replays, Some(first)) => first.clone(),
            _ => {
                let a = storage::prove(&ch, &node.holder);
                let s = SignedAnswer::sign(
                    &node.key,
                    ProofKind::Storage,
                    macula_core::wire::encode(&a),
                );
                node.first_answer.get_or_insert(s.clone());
                s
            }
        };
        // The verifier decodes what it received, exactly as over the wire.
        let got = SignedAnswer::decode_verified(&signed.encode(), &ch.prover).unwrap();
        let answer: storage::Answer = macula_core::wire::decode(&got.body).unwrap();
        let outcome = match storage::verify(&ch, &answer) {
            Err(_) => Outcome::Failed(Failure::Forged),
            Ok(items) if items.iter().all(Result::is_ok) => Outcome::Storage {
                groups: items.len() as u32,
            },
            Ok(_) => Outcome::Failed(Failure::BadGroup),
        };
        ProofResult {
            prover: ch.prover,
            kind: ProofKind::Storage,
            epoch,
            challenge: ch.digest(),
            outcome,
            answer: Some((got.digest(), got.sig)),
            reward_micro: 0,
        }
    }

    /// Anti-entropy: every pair on the same side exchanges what the other lacks.
    fn anti_entropy(&mut self) {
        for a in 0..self.nodes.len() {
            for b in 0..self.nodes.len() {
                if a == b || !self.same_side(a, b) || !self.observes(b) {
                    continue;
                }
                loop {
                    let missing = self.nodes[a]
                        .ledger
                        .missing_for(&self.nodes[b].ledger.summary());
                    if missing.is_empty() {
                        break;
                    }
                    for r in missing {
                        self.nodes[b].ledger.insert(&r).unwrap();
                    }
                }
            }
        }
    }

    fn verdicts(&self, at: usize) -> Tracker {
        let members = self.members.clone();
        Tracker::from_ledger(self.qparams, &self.nodes[at].ledger, move |p, e| {
            verifier_for(p, e, &members)
        })
        .0
    }

    fn heads(&self) -> Vec<[u8; 32]> {
        self.nodes.iter().map(|n| n.ledger.head()).collect()
    }
}

#[test]
fn a_node_that_drops_shards_is_quarantined_realm_wide_and_returns_after_probation() {
    let mut realm = Realm::new(1, 8, 60, &[(3, Behaviour::Drops(0.10))]);
    let cheat = realm.members[3];
    let mut caught_at = None;
    for epoch in 0..24 {
        realm.epoch(epoch);
        realm.anti_entropy();
        let t = realm.verdicts(0);
        if caught_at.is_none() && matches!(t.status(&cheat), Status::Quarantined { .. }) {
            caught_at = Some(epoch);
            // Its shards are rebuilt and it behaves from now on.
            realm.nodes[3].behaviour = Behaviour::Honest;
            let node = &mut realm.nodes[3];
            node.holder.0.extend(node.lost.drain(..));
        }
    }
    let caught_at = caught_at.expect("the dropping node was quarantined");
    assert!(caught_at <= 10, "caught after {caught_at} epochs");
    // Every node reached the same ledger and the same verdicts; honest nodes never quarantined.
    let heads = realm.heads();
    assert!(heads.iter().all(|h| *h == heads[0]));
    for at in 0..8 {
        let t = realm.verdicts(at);
        assert_eq!(t.status(&cheat), Status::Active, "released after probation");
        assert!(t.excluded().is_empty());
    }
    let bal = realm.nodes[0].ledger.balances();
    let honest = bal[&realm.members[0]];
    let cheater = bal[&cheat];
    assert!(cheater.failed >= 2);
    assert!(honest.failed == 0 && honest.rw1_micro > 0 && honest.rw2_micro > 0);
    assert!(cheater.rw2_micro < honest.rw2_micro);
}

#[test]
fn fake_work_and_replayed_answers_are_caught() {
    let mut realm = Realm::new(
        2,
        6,
        60,
        &[(1, Behaviour::FakesWork), (4, Behaviour::Replays)],
    );
    for epoch in 0..12 {
        realm.epoch(epoch);
        realm.anti_entropy();
    }
    let t = realm.verdicts(2);
    assert!(matches!(
        t.status(&realm.members[1]),
        Status::Quarantined { .. }
    ));
    assert!(matches!(
        t.status(&realm.members[4]),
        Status::Quarantined { .. }
    ));
    assert_eq!(t.excluded().len(), 2);
    let results = realm.nodes[0].ledger.results();
    assert!(results.iter().any(
        |(_, r)| r.prover == realm.members[4] && r.outcome == Outcome::Failed(Failure::Forged)
    ));
    assert!(results.iter().any(
        |(_, r)| r.prover == realm.members[1] && r.outcome == Outcome::Failed(Failure::BadWork)
    ));
}

#[test]
fn ledgers_converge_after_a_partition_heals() {
    let mut realm = Realm::new(3, 10, 80, &[]);
    for epoch in 0..3 {
        realm.epoch(epoch);
        realm.anti_entropy();
    }
    realm.cut_off = [0, 1, 2, 3].into_iter().collect();
    for epoch in 3..8 {
        realm.epoch(epoch);
        realm.anti_entropy();
    }
    let heads = realm.heads();
    assert_ne!(heads[0], heads[9], "the two sides diverged");
    assert_eq!(heads[0], heads[3]);
    assert_eq!(heads[4], heads[9]);
    realm.cut_off.clear();
    realm.anti_entropy();
    let heads = realm.heads();
    assert!(
        heads.iter().all(|h| *h == heads[0]),
        "converged after healing"
    );
    // Nobody was quarantined for the missed epochs.
    assert!(realm.verdicts(5).excluded().is_empty());
}

#[test]
fn a_hundred_nodes_one_cheater() {
    let mut realm = Realm::new(4, 100, 300, &[(42, Behaviour::Drops(0.5))]);
    realm.observers = vec![0, 41, 99];
    for epoch in 0..4 {
        realm.epoch(epoch);
    }
    realm.anti_entropy();
    let heads = realm.heads();
    assert!(heads[0] == heads[41] && heads[0] == heads[99]);
    for at in [0, 41, 99] {
        let t = realm.verdicts(at);
        assert_eq!(t.excluded(), vec![realm.members[42]]);
    }
}

/// docs/proofs.md §6 "Claimed more disk than it accepts": a node whose store refuses every write
/// while its report claims 60 GiB free is quarantined by the refusals its designated verifiers
/// meet; a node that is full and says so refuses as much and is never charged. Only refusals met
/// by the holder's designated verifier count, so the epochs to catch it depend on how often that
/// one node writes to it: at 20 nodes each putting 3 shards per epoch on random others, and at
/// 100 nodes each putting 40 (K = 2 within 6 epochs).
#[test]
fn a_node_claiming_disk_it_refuses_is_quarantined() {
    for (n, writes, observers) in [(20usize, 3, vec![]), (100, 40, vec![0, 50, 99])] {
        let mut realm = Realm::new(6, n, 0, &[(7, Behaviour::ClaimsDisk), (8, Behaviour::Full)]);
        realm.observers = observers.clone();
        let (liar, full) = (realm.members[7], realm.members[8]);
        let mut caught_at = None;
        let mut refusals = 0;
        for epoch in 0..30 {
            realm.epoch(epoch);
            refusals += realm.writes(epoch, writes);
            realm.anti_entropy();
            let at = observers.first().copied().unwrap_or(0);
            if matches!(realm.verdicts(at).status(&liar), Status::Quarantined { .. }) {
                caught_at = Some(epoch);
                break;
            }
        }
        let caught_at = caught_at.expect("the node refusing what it claims was quarantined");
        eprintln!(
            "{n} nodes, {writes} puts each per epoch: quarantined after {} epochs ({refusals} refusal records)",
            caught_at + 1
        );
        let watch: Vec<usize> = if observers.is_empty() {
            (0..n).collect()
        } else {
            observers
        };
        for at in watch {
            let t = realm.verdicts(at);
            assert_eq!(t.excluded(), vec![liar], "seen from node {at}");
            assert_eq!(t.status(&full), Status::Active);
        }
        let results = realm.nodes[0].ledger.results();
        let refused: Vec<_> = results
            .iter()
            .filter(|(_, r)| r.outcome == Outcome::Failed(Failure::Refused))
            .collect();
        assert_eq!(refused.len(), refusals);
        assert!(
            refused
                .iter()
                .all(|(_, r)| r.prover == liar && r.kind == ProofKind::Capacity)
        );
    }
}

/// docs/proofs.md §4.3: epochs until a node that silently dropped a share of its shards fails a
/// storage proof, by simulation against `1 − (1 − l)^(picks·epochs)`.
#[test]
fn detection_epochs_table() {
    let mut rng = StdRng::seed_from_u64(5);
    let shards = 1000usize;
    let inventory: Vec<(SegmentId, u16)> = (0..shards)
        .map(|i| {
            let mut id = [0u8; 32];
            id[..8].copy_from_slice(&(i as u64).to_le_bytes());
            (SegmentId(id), 0)
        })
        .collect();
    let mut table = BTreeMap::new();
    for (lost, picks) in [(0.10, 16usize), (0.01, 16), (0.10, 44), (0.01, 44)] {
        let trials = 400;
        let mut epochs_needed = Vec::new();
        for _ in 0..trials {
            let dropped: HashSet<usize> = {
                let mut set = HashSet::new();
                while set.len() < (shards as f64 * lost) as usize {
                    set.insert(rng.random_range(0..shards));
                }
                set
            };
            let mut e = 1;
            loop {
                let nonce: [u8; 32] = rng.random();
                let picks = storage::draw(&nonce, &inventory, picks, 1);
                if picks.iter().any(|p| {
                    dropped.contains(
                        &(u64::from_le_bytes(p.segment[..8].try_into().unwrap()) as usize),
                    )
                }) {
                    break;
                }
                e += 1;
            }
            epochs_needed.push(e);
        }
        epochs_needed.sort();
        let p99 = epochs_needed[trials * 99 / 100 - 1];
        let analytic = storage::epochs_to_detect(lost, picks, 0.99);
        println!("lost {lost:.2} picks {picks}: simulated p99 {p99} epochs, formula {analytic}");
        // Drawing without replacement detects at least as fast as the formula.
        assert!(
            p99 <= analytic + 1,
            "lost {lost} picks {picks}: {p99} vs {analytic}"
        );
        table.insert((picks, (lost * 100.0) as u32), p99);
    }
    assert!(table[&(16, 10)] <= 4);
    assert!(table[&(16, 1)] >= 15);
}
