//! The fuzz smoke (docs/fuzzing.md): each cargo-fuzz target's committed corpus and a few
//! thousand mutations of it, through the same function the target calls.

use macula_core::NodeKey;
use macula_testkit::fuzz::{replay, seed};
use macula_update::fuzzing;
use macula_update::rollout::{
    Message, Report, Rollout, SignedReport, SignedRollout, Step, parse_waves,
};

const DIR: &str = env!("CARGO_MANIFEST_DIR");

#[test]
fn rollout_record() {
    replay(DIR, "rollout_record", fuzzing::rollout_record);
}

#[test]
fn rollout_waves() {
    replay(DIR, "rollout_waves", fuzzing::rollout_waves);
}

/// The committed `rollout_record` seeds are a signed rollout, a signed report and a catch-up
/// answer holding both, as a node with seed 1 publishes them (Ed25519 is deterministic), so
/// the fuzzer starts from records that verify.
#[test]
fn rollout_record_seeds_are_signed_records() {
    let key = NodeKey::from_seed([1; 32]);
    let nodes: Vec<_> = (1..=3u8)
        .map(|i| NodeKey::from_seed([i; 32]).node_id())
        .collect();
    let rollout = SignedRollout::sign(
        &key,
        &Rollout {
            publisher: key.node_id(),
            published_at: 1_800_000_000,
            version: "2026.12.1".into(),
            compatible: "macula-x86_64".into(),
            bundle: "cap".into(),
            bundle_hash: [5; 32],
            bundle_len: 1 << 20,
            waves: parse_waves("1,50%").unwrap(),
            wave_deadline_s: 1800,
            nodes: Rollout::order(&[5; 32], nodes),
        },
    )
    .unwrap();
    let report = SignedReport::sign(
        &key,
        &Report {
            rollout: rollout.id(),
            node: key.node_id(),
            seq: 7,
            at: 1_800_000_100,
            step: Step::Good {
                version: "2026.12.1".into(),
                slot: "rootfs.1".into(),
            },
        },
    );
    let sync = macula_core::wire::encode(&vec![
        Message::Rollout(rollout.clone()),
        Message::Report(report.clone()),
    ]);
    for (name, bytes) in [
        ("signed_rollout", rollout.encode()),
        ("signed_report", report.encode()),
        ("catch_up_answer", sync),
    ] {
        seed(DIR, "rollout_record", name, &bytes);
    }
}
