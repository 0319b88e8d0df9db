//! The fuzz smoke (docs/fuzzing.md): each cargo-fuzz target's committed corpus and a few
//! thousand mutations of it, through the same function the target calls.

use macula_proof::fuzzing;
use macula_testkit::fuzz::replay;

const DIR: &str = env!("CARGO_MANIFEST_DIR");

#[test]
fn ledger_record() {
    replay(DIR, "ledger_record", fuzzing::ledger_record);
}

#[test]
fn ledger_snapshot() {
    replay(DIR, "ledger_snapshot", fuzzing::ledger_snapshot);
}

#[test]
fn ledger_summary() {
    replay(DIR, "ledger_summary", fuzzing::ledger_summary);
}

#[test]
fn proof_answer() {
    replay(DIR, "proof_answer", fuzzing::proof_answer);
}

#[test]
fn proof_request() {
    replay(DIR, "proof_request", fuzzing::proof_request);
}

#[test]
fn resources_report() {
    replay(DIR, "resources_report", fuzzing::resources_report);
}

/// Seeds made by the real encoders, with the keys and challenges the targets use: a ledger
/// record, a saved ledger, a summary vote and a certified summary; the honest capacity answer
/// and signed answers; capacity and storage requests; a signed resource report. The `/proc`
/// seeds of `resources_report` are copies of `tests/data`.
#[test]
fn seeds_are_current() {
    use macula_core::{NodeKey, wire};
    use macula_proof::config::ProofsConfig;
    use macula_proof::driver::{Request, capacity_request};
    use macula_proof::ledger::{Failure, Ledger, Outcome, ProofResult, RewardParams};
    use macula_proof::quarantine::QuarantineParams;
    use macula_proof::resources::{Resources, SignedResources};
    use macula_proof::{ProofKind, SignedAnswer, capacity, storage};
    use macula_testkit::fuzz::seed;

    let keys: Vec<NodeKey> = (1..=3u8).map(|i| NodeKey::from_seed([i; 32])).collect();
    let members: Vec<_> = keys.iter().map(NodeKey::node_id).collect();
    let mut ledgers: Vec<Ledger> = (0..3)
        .map(|_| Ledger::new(RewardParams::default()))
        .collect();
    let mut records = Vec::new();
    for (epoch, outcome) in [
        (1, Outcome::Failed(Failure::NoAnswer)),
        (2, Outcome::Failed(Failure::Late)),
    ] {
        let result = ProofResult {
            prover: members[1],
            kind: ProofKind::Capacity,
            epoch,
            challenge: [epoch as u8; 32],
            outcome,
            answer: None,
            reward_micro: 0,
        };
        records.push(ledgers[0].append(&keys[0], result).unwrap().encode());
    }
    for l in &mut ledgers[1..] {
        for r in &records {
            l.insert(r).unwrap();
        }
    }
    seed(DIR, "ledger_record", "no_answer", &records[0]);
    seed(DIR, "ledger_record", "two_records", &records.concat());
    seed(
        DIR,
        "ledger_snapshot",
        "two_records",
        &ledgers[0].snapshot(),
    );
    let votes: Vec<_> = ledgers
        .iter_mut()
        .zip(&keys)
        .filter_map(|(l, k)| l.propose(k, 1, QuarantineParams::default(), &members))
        .collect();
    assert_eq!(votes.len(), 3);
    seed(DIR, "ledger_summary", "vote", &votes[0].encode());
    for v in &votes[1..] {
        let _ = ledgers[0].vote(&v.encode(), &members);
    }
    let certified = ledgers[0]
        .certified_for(&Default::default())
        .expect("a quorum of votes certifies the summary");
    seed(DIR, "ledger_summary", "certified", &certified);
    seed(DIR, "ledger_snapshot", "compacted", &ledgers[0].snapshot());

    let ch = capacity::Challenge {
        verifier: members[0],
        prover: members[1],
        epoch: 1,
        nonce: [0; 32],
        steps: 64,
        segments: 8,
        deadline_ms: 1000,
    };
    let honest = wire::encode(&capacity::prove(&ch).unwrap());
    seed(DIR, "proof_answer", "capacity_honest", &honest);
    let signed = SignedAnswer::sign(&keys[1], ProofKind::Capacity, honest);
    seed(DIR, "proof_answer", "capacity_signed", &signed.encode());

    let cfg = ProofsConfig::default();
    let cap = capacity_request(members[0], members[1], 1, [6; 32], &cfg);
    seed(DIR, "proof_request", "capacity", &cap.encode());
    let sto = Request::Storage(storage::Challenge {
        verifier: members[0],
        prover: members[1],
        epoch: 1,
        nonce: [6; 32],
        picks: vec![storage::Pick {
            segment: [3; 32],
            index: 1,
            selector: 7,
        }],
        deadline_ms: 1000,
    });
    seed(DIR, "proof_request", "storage", &sto.encode());

    let report = SignedResources::sign(
        &keys[1],
        1,
        &Resources {
            uptime_s: 3600,
            processors: 4,
            ..Resources::default()
        },
    );
    seed(DIR, "resources_report", "signed", &report.encode());
}
