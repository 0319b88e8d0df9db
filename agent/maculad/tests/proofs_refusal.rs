//! "Claimed more disk than it accepts" on three real `maculad` (loopback, private buses, 2-second
//! epochs): node 2 keeps its shards on a tmpfs with almost no inodes, so writes there fail with
//! `ENOSPC` while its signed resource report (quota 256 MiB, measured on the state dir's file
//! system) claims plenty of room. The others' puts and repairs meet the refusals; the designated
//! verifier of node 2 records each epoch's as a capacity failure (`refused`), and node 2 is
//! quarantined realm-wide after two of them. The whole realm then stops and node 0 starts alone
//! (no member to pull from, no proof to judge: no new record): the quarantine is back at once,
//! recomputed from the saved ledger copy. Needs root (mount).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use macula_testkit::check::{ok, wait_until};
use macula_testkit::realm::{AgentRealm, RealmNode as Node};

const PROOFS: &str = "[proofs]\nenabled = true\ncapacity_steps = 65536\ncapacity_segments = 16\n\
    capacity_deadline_ms = 5000\nstorage_shards = 8\nstorage_deadline_ms = 5000\n\
    [proofs.rewards]\nepoch_s = 2\n\
    [proofs.quarantine]\nmax_failures = 2\nwindow_epochs = 30\nprobation_passes = 1000\n\
    [proofs.spread]\nmin_interval_ms = 500\n";

/// A tmpfs mounted on a temporary directory, unmounted on drop (also after a panic).
struct Tmpfs {
    path: PathBuf,
    _dir: tempfile::TempDir,
}

impl Tmpfs {
    fn mount(options: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("shards");
        std::fs::create_dir(&path).unwrap();
        let st = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                options,
                "macula-test",
                path.to_str().unwrap(),
            ])
            .status()
            .unwrap();
        assert!(st.success(), "mount tmpfs on {}", path.display());
        Self { path, _dir: dir }
    }

    fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").args(["-l"]).arg(&self.path).status();
    }
}

fn failures(n: &Node, about: &str) -> Vec<serde_json::Value> {
    let v: serde_json::Value = serde_json::from_str(&ok(&n
        .agent
        .ctl(&["proofs", "history", "--node", about, "--json"])))
    .unwrap();
    v.as_array()
        .unwrap()
        .iter()
        .filter(|e| e["passed"] == false)
        .cloned()
        .collect()
}

fn quarantined(n: &Node) -> serde_json::Value {
    let v: serde_json::Value =
        serde_json::from_str(&ok(&n.agent.ctl(&["proofs", "status", "--json"]))).unwrap();
    v["quarantined"].clone()
}

#[test]
fn a_node_refusing_shards_it_claims_room_for_is_quarantined() {
    // Root, the store's four directories and about two shards' worth of inodes.
    let disk = Tmpfs::mount("size=64m,nr_inodes=9");
    let dir = disk.path().to_str().unwrap().to_string();
    let liar = 2;
    let mut nodes = AgentRealm::new(3)
        .coded(2, 1)
        .storage_extra(|i| {
            if i == liar {
                format!("dir = \"{dir}\"\n{PROOFS}")
            } else {
                PROOFS.to_string()
            }
        })
        .start();
    let ids: Vec<String> = nodes.iter().map(Node::node_id).collect();
    let files = tempfile::tempdir().unwrap();
    // Objects from the two others, one every half second, until node 2 is quarantined
    // everywhere: every segment puts one shard on each node.
    let mut round = 0u32;
    let took = wait_until("every node quarantines node 2", 90, || {
        round += 1;
        let from = &nodes[(round % 2) as usize];
        let f =
            macula_testkit::check::file_of(files.path(), &format!("o{round}"), 200_000, round).0;
        let _ = from.agent.ctl(&["put", "-q", f.to_str().unwrap()]);
        nodes
            .iter()
            .all(|n| quarantined(n) == serde_json::json!([ids[liar].clone()]))
    });
    eprintln!("node 2 quarantined realm-wide after {took:?} ({round} puts)");
    let refused: Vec<_> = failures(&nodes[0], &ids[liar])
        .into_iter()
        .filter(|e| e["failure"] == "refused")
        .collect();
    assert!(refused.len() >= 2, "{refused:?}");
    for e in &refused {
        assert_eq!(e["kind"], "capacity", "{e}");
        assert_ne!(e["verifier"], ids[liar], "{e}");
    }
    let epochs: std::collections::BTreeSet<u64> = refused
        .iter()
        .map(|e| e["epoch"].as_u64().unwrap())
        .collect();
    assert_eq!(epochs.len(), refused.len(), "one refusal record per epoch");
    // The honest nodes, whose writes succeed, are charged nothing.
    for id in &ids[..liar] {
        assert!(
            failures(&nodes[1], id).is_empty(),
            "{:?}",
            failures(&nodes[1], id)
        );
    }
    let log = nodes[0].agent.log() + &nodes[1].agent.log();
    assert!(
        log.contains("a node refused a shard for lack of space it claims to have"),
        "no refusal logged"
    );

    // Restart: the verdicts come back with the saved copy, before any new record.
    for n in &mut nodes {
        let (exit, _) = n.agent.stop(Duration::from_secs(10));
        assert!(exit.success(), "{}: {exit}\n{}", n.name, n.agent.log());
    }
    let n0 = &mut nodes[0];
    n0.agent.start(&n0.bus).unwrap();
    let records = |n: &Node| -> usize {
        let v: serde_json::Value =
            serde_json::from_str(&ok(&n.agent.ctl(&["proofs", "history", "--json"]))).unwrap();
        v.as_array().unwrap().len()
    };
    let held = records(&nodes[0]);
    assert_eq!(
        quarantined(&nodes[0]),
        serde_json::json!([ids[liar].clone()]),
        "quarantine recomputed at load\n{}",
        nodes[0].agent.log()
    );
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(records(&nodes[0]), held, "alone, no record was added");
    assert_eq!(
        quarantined(&nodes[0]),
        serde_json::json!([ids[liar].clone()])
    );
    eprintln!("node 0 restarted alone: node 2 quarantined from the start ({held} records)");
}
