//! Simulation of ledger compaction (docs/proofs.md §5.4, §7): every node of a realm keeps its own
//! copy of the ledger, writes the records of the provers it is the designated verifier of, and
//! each epoch signs the summary of the records older than the retention window; records go to
//! every online node, votes too. One node is offline for longer than the window and catches up
//! from one member with a pull (certified summary first, then the records after it). Checked
//! every epoch against an uncompacted reference copy holding every record: same head, balances
//! and quarantine verdicts, and the copy's record count stays bounded.

use std::collections::{BTreeMap, HashMap};

use macula_core::{NodeId, NodeKey};
use macula_proof::ledger::{Failure, Ledger, Outcome, ProofResult, RewardParams, Voted};
use macula_proof::quarantine::{NodeVerdict, QuarantineParams, Status, Tracker};
use macula_proof::{ProofKind, SignedAnswer, verifier_for};

struct Figures {
    /// Records in the largest compacted copy, over every epoch.
    max_len: usize,
    /// Size of the copy on disk at the end: compacted (largest node) and the reference.
    compacted_bytes: usize,
    reference_bytes: usize,
}

/// Each prover's designated verifier per epoch (`verifier_for`, computed once).
type Designated = HashMap<(NodeId, u64), NodeId>;

fn verdicts(l: &Ledger, q: QuarantineParams, designated: &Designated) -> Vec<NodeVerdict> {
    Tracker::from_ledger(q, l, |p, e| designated.get(&(*p, e)).copied())
        .0
        .export()
}

/// `n` nodes for `epochs` epochs; node `away.0` is offline from epoch `away.1` to `away.2`
/// (excluded); node `flaky` fails its proofs in epochs 2..5.
fn run(n: usize, epochs: u64, retention: u64, away: (usize, u64, u64), flaky: usize) -> Figures {
    let params = RewardParams::default();
    let q = QuarantineParams {
        max_failures: 3,
        window_epochs: 6,
        probation_passes: 3,
    };
    let keys: Vec<NodeKey> = (0..n)
        .map(|i| {
            let mut seed = [7u8; 32];
            seed[..8].copy_from_slice(&(i as u64).to_le_bytes());
            NodeKey::from_seed(seed)
        })
        .collect();
    let index: BTreeMap<NodeId, usize> = keys
        .iter()
        .enumerate()
        .map(|(i, k)| (k.node_id(), i))
        .collect();
    let mut members: Vec<NodeId> = index.keys().copied().collect();
    members.sort();
    let mut nodes: Vec<Ledger> = (0..n).map(|_| Ledger::new(params)).collect();
    let mut reference = Ledger::new(params);
    let online = |i: usize, e: u64| !(i == away.0 && (away.1..away.2).contains(&e));
    let mut figures = Figures {
        max_len: 0,
        compacted_bytes: 0,
        reference_bytes: 0,
    };
    let mut counter = 0u64;
    let mut designated = Designated::new();
    for e in 0..epochs {
        if e == away.2 {
            // Back: one pull from a member brings the certified summary, then the records.
            let from = (away.0 + 1) % n;
            let asked = nodes[away.0].summary();
            let cert = nodes[from].certified_for(&asked);
            let missing = nodes[from].missing_for(&asked);
            if let Some(cert) = cert {
                assert_eq!(nodes[away.0].adopt(&cert, &members), Ok(true));
            }
            for r in &missing {
                nodes[away.0].insert(r).unwrap();
            }
            assert_eq!(nodes[away.0].head(), nodes[from].head());
        }
        // Proofs: each prover's designated verifier writes the result.
        let mut records = Vec::new();
        for (pi, p) in keys.iter().enumerate() {
            let vid = verifier_for(&p.node_id(), e, &members).unwrap();
            designated.insert((p.node_id(), e), vid);
            let vi = index[&vid];
            if !online(vi, e) {
                continue;
            }
            counter += 1;
            let mut challenge = [0u8; 32];
            challenge[..8].copy_from_slice(&counter.to_le_bytes());
            let failed = !online(pi, e) || (pi == flaky && (2..5).contains(&e));
            let (outcome, answer) = if failed {
                (Outcome::Failed(Failure::NoAnswer), None)
            } else {
                let a = SignedAnswer::sign(p, ProofKind::Capacity, challenge.to_vec());
                (
                    Outcome::Capacity {
                        t_ms: 400,
                        capacity_milli: 100_000 + pi as u64,
                    },
                    Some((a.digest(), a.sig)),
                )
            };
            let result = ProofResult {
                prover: p.node_id(),
                kind: ProofKind::Capacity,
                epoch: e,
                challenge,
                outcome,
                answer,
                reward_micro: 0,
            };
            records.push(nodes[vi].append(&keys[vi], result).unwrap().encode());
        }
        for r in &records {
            reference.insert(r).unwrap();
            for (i, l) in nodes.iter_mut().enumerate() {
                if online(i, e) {
                    l.insert(r).unwrap();
                }
            }
        }
        // Summaries of the records older than the window: every online node votes.
        if let Some(upto) = e.checked_sub(retention) {
            let mut votes = Vec::new();
            for (i, l) in nodes.iter_mut().enumerate() {
                if online(i, e) {
                    votes.extend(l.propose(&keys[i], upto, q, &members));
                }
            }
            for v in &votes {
                for (i, l) in nodes.iter_mut().enumerate() {
                    if online(i, e) && v.signer != keys[i].node_id() {
                        let got = l.vote(&v.encode(), &members).unwrap();
                        assert!(
                            matches!(got, Voted::Agrees { .. } | Voted::Stale),
                            "node {i} at epoch {e}: {got:?}"
                        );
                    }
                }
            }
            for (i, l) in nodes.iter().enumerate() {
                if online(i, e) {
                    assert!(l.disagreements().is_empty());
                    assert_eq!(
                        l.base().map(|b| b.summary.upto_epoch),
                        Some(upto),
                        "node {i} did not compact at epoch {e}"
                    );
                }
            }
        }
        // Every online copy is in the reference's state, and bounded.
        let want = (
            reference.head(),
            reference.balances(),
            verdicts(&reference, q, &designated),
        );
        for (i, l) in nodes.iter().enumerate() {
            if online(i, e) {
                assert_eq!(l.head(), want.0, "node {i} at epoch {e}");
                assert_eq!(l.balances(), want.1, "node {i} at epoch {e}");
                assert_eq!(verdicts(l, q, &designated), want.2, "node {i} at epoch {e}");
                figures.max_len = figures.max_len.max(l.len());
            }
        }
        if e == 4 {
            // The flaky node was quarantined by its three failures.
            let t = Tracker::from_ledger(q, &reference, |p, e| designated.get(&(*p, e)).copied()).0;
            assert!(matches!(
                t.status(&keys[flaky].node_id()),
                Status::Quarantined { .. }
            ));
        }
    }
    for l in &nodes {
        let snap = l.snapshot();
        figures.compacted_bytes = figures.compacted_bytes.max(snap.len());
        // The copy on disk restores to the same state.
        let back = Ledger::restore(params, &snap).unwrap();
        assert_eq!(back.head(), reference.head());
        assert_eq!(back.balances(), reference.balances());
    }
    figures.reference_bytes = reference.snapshot().len();
    assert!(figures.max_len <= (retention as usize + 2) * n);
    eprintln!(
        "{n} nodes, {epochs} epochs, retention {retention}: reference {} records, {} B; \
         compacted at most {} records, {} B on disk",
        reference.len(),
        figures.reference_bytes,
        figures.max_len,
        figures.compacted_bytes
    );
    figures
}

/// 100 nodes over 16 epochs, one of them offline for 8 epochs (longer than the 4-epoch window).
#[test]
fn a_hundred_nodes_compact_to_the_same_state_and_a_returning_node_catches_up() {
    let f = run(100, 16, 4, (42, 3, 11), 7);
    assert!(f.compacted_bytes < f.reference_bytes / 2);
}

/// 10 nodes over 120 epochs: the copy stops growing once the window is full.
#[test]
fn ten_nodes_over_many_epochs_stay_bounded() {
    let short = run(10, 30, 6, (3, 8, 20), 5);
    let long = run(10, 120, 6, (3, 8, 20), 5);
    assert!(long.reference_bytes > 3 * short.reference_bytes);
    // Longer history: same copy size within the summary's growth (balances and verdicts of
    // the same nodes; only epoch numbers grow).
    assert!(long.compacted_bytes <= short.compacted_bytes + 64);
}
