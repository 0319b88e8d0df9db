//! A node that silently drops a tenth of its shards (their data; it keeps claiming them), in a realm of six real `maculad` (loopback,
//! private buses, 2-second epochs, k = 3, m = 2): its designated verifiers' storage challenges
//! catch it, every node quarantines it, the segments it held are whole again on the five others
//! (no planner sees a degraded segment, every object reads back), and once it holds only what it
//! lists (the store drops a shard whose read fails verification) it passes its proofs and every
//! node releases it after probation.

use std::path::{Path, PathBuf};

use macula_store::header::ShardHeader;
use macula_testkit::check::{file_of, ok, wait_until, wait_until_ok};
use macula_testkit::realm::{AgentRealm, RealmNode as Node};

const PROOFS: &str = "audit_interval_secs = 3600\n\
    [proofs]\nenabled = true\ncapacity_steps = 65536\ncapacity_segments = 16\n\
    capacity_deadline_ms = 5000\nstorage_shards = 8\nstorage_deadline_ms = 5000\n\
    storage_retries = 0\n\
    [proofs.rewards]\nepoch_s = 2\n\
    [proofs.quarantine]\nmax_failures = 1\nwindow_epochs = 10\nprobation_passes = 12\n";

fn quarantined(n: &Node) -> serde_json::Value {
    let v: serde_json::Value =
        serde_json::from_str(&ok(&n.agent.ctl(&["proofs", "status", "--json"]))).unwrap();
    v["quarantined"].clone()
}

fn shard_files(n: &Node) -> Vec<PathBuf> {
    fn walk(d: &Path, out: &mut Vec<PathBuf>) {
        for e in std::fs::read_dir(d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(&p, out);
            } else {
                out.push(p);
            }
        }
    }
    let mut out = Vec::new();
    walk(&n.agent.state_dir().join("shards").join("shards"), &mut out);
    out.sort();
    out
}

#[test]
fn a_node_dropping_a_tenth_of_its_shards_is_caught_rebuilt_around_and_released() {
    let nodes = AgentRealm::new(6)
        .coded(3, 2)
        .storage_extra(|_| PROOFS.to_string())
        .start();
    let ids: Vec<String> = nodes.iter().map(Node::node_id).collect();
    let cheat = 5;
    let files = tempfile::tempdir().unwrap();
    // Small objects: each segment (and manifest) puts a shard on five of the six nodes.
    let objects: Vec<(PathBuf, String)> = (0..16)
        .map(|i| {
            let (f, _) = file_of(files.path(), &format!("o{i}"), 256 << 10, i);
            let cap = ok(&nodes[i as usize % 6]
                .agent
                .ctl(&["put", "-q", f.to_str().unwrap()]));
            (f, cap.trim().to_string())
        })
        .collect();
    wait_until("node 5 holds 15 shards or more", 20, || {
        shard_files(&nodes[cheat]).len() >= 15
    });
    wait_until(
        "nobody is quarantined and every node passed a proof",
        40,
        || {
            nodes
                .iter()
                .all(|n| quarantined(n) == serde_json::json!([]))
                && nodes.iter().all(|n| {
                    let s: serde_json::Value =
                        serde_json::from_str(&ok(&n.agent.ctl(&["proofs", "status", "--json"])))
                            .unwrap();
                    s["records"].as_u64().unwrap_or(0) >= 6
                })
        },
    );

    // Node 5 drops the data of every tenth shard it holds by punching it out of the file (the
    // disk space is freed, the file keeps its size and header, so its listing still claims the
    // shard): a node freeing disk while still claiming the shards. (A shard file deleted or cut
    // short is noticed by the store itself, and repair puts it back.)
    let held = shard_files(&nodes[cheat]);
    let dropped: Vec<&PathBuf> = held.iter().step_by(10).collect();
    for f in &dropped {
        let bytes = std::fs::read(f).unwrap();
        let (_, hlen) = ShardHeader::parse_verified(&bytes).unwrap();
        let out = std::process::Command::new("fallocate")
            .args(["--punch-hole", "--offset", &hlen.to_string(), "--length"])
            .arg((bytes.len() - hlen).to_string())
            .arg(f)
            .output()
            .unwrap();
        assert!(out.status.success(), "fallocate: {out:?}");
        assert_eq!(std::fs::metadata(f).unwrap().len(), bytes.len() as u64);
    }
    eprintln!(
        "node 5 dropped {} of its {} shards",
        dropped.len(),
        held.len()
    );
    let took = wait_until_ok("every node quarantines node 5", 60, || {
        let q: Vec<serde_json::Value> = nodes.iter().map(quarantined).collect();
        if q.iter()
            .all(|q| *q == serde_json::json!([ids[cheat].clone()]))
        {
            return Ok(());
        }
        let h: serde_json::Value = serde_json::from_str(&ok(&nodes[0].agent.ctl(&[
            "proofs",
            "history",
            "--node",
            &ids[cheat],
            "--json",
        ])))
        .unwrap();
        let storage: Vec<String> = h
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["kind"] == "storage")
            .map(|e| format!("{}:{}:{}", e["epoch"], e["passed"], e["failure"]))
            .collect();
        Err(format!(
            "quarantined {q:?}; node 5's storage proofs {storage:?}; left {}",
            shard_files(&nodes[cheat]).len()
        ))
    });
    eprintln!("node 5 quarantined realm-wide {took:?} after the drop");
    let history: serde_json::Value = serde_json::from_str(&ok(&nodes[0].agent.ctl(&[
        "proofs",
        "history",
        "--node",
        &ids[cheat],
        "--json",
    ])))
    .unwrap();
    let failed: Vec<&serde_json::Value> = history
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == "storage" && e["passed"] == false)
        .collect();
    assert!(
        !failed.is_empty(),
        "no failed storage proof recorded: {history}"
    );
    assert!(
        failed.iter().all(|e| e["verifier"] != ids[cheat]),
        "{failed:?}"
    );

    // The five others hold every segment node 5 held whole again (its shard of each rebuilt on
    // one of them: 5 shards a segment over 6 nodes leaves room), and no planner sees a
    // degraded segment.
    let name = |f: &PathBuf| {
        let n = f.file_name().unwrap().to_str().unwrap().to_string();
        let (seg, index) = n.rsplit_once('.').unwrap();
        (seg.to_string(), index.to_string())
    };
    let segments: std::collections::BTreeSet<String> = held.iter().map(|f| name(f).0).collect();
    let took = wait_until_ok("every segment whole on the five others", 60, || {
        let mut on_others: std::collections::BTreeMap<String, std::collections::BTreeSet<String>> =
            Default::default();
        for n in &nodes[..cheat] {
            for (seg, index) in shard_files(n).iter().map(name) {
                on_others.entry(seg).or_default().insert(index);
            }
        }
        let short = segments
            .iter()
            .filter(|s| on_others.get(*s).map_or(0, |i| i.len()) < 5)
            .count();
        let repair: Vec<serde_json::Value> = nodes[..cheat]
            .iter()
            .map(|n| n.storage_status()["repair"].clone())
            .collect();
        if short == 0 && repair.iter().all(|r| r["degraded"] == 0) {
            return Ok(());
        }
        Err(format!(
            "{short} of node 5's {} segments lack shards on the others, repair status {repair:?}",
            segments.len()
        ))
    });
    eprintln!("segments whole on the others {took:?} after the quarantine");
    for (i, (f, cap)) in objects.iter().enumerate() {
        let out = files.path().join(format!("o{i}.out"));
        ok(&nodes[(i + 1) % cheat]
            .agent
            .ctl(&["get", cap, "-o", out.to_str().unwrap(), "-q"]));
        assert_eq!(std::fs::read(&out).unwrap(), std::fs::read(f).unwrap());
    }

    // Its store's audit no longer lists what it lost: it passes again and is released.
    let took = wait_until("every node releases node 5 after probation", 90, || {
        nodes
            .iter()
            .all(|n| quarantined(n) == serde_json::json!([]))
    });
    eprintln!("node 5 released realm-wide {took:?} later");
}
