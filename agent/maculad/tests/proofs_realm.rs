//! Proofs of capacity and storage, the realm ledger and quarantine on four real `maculad`
//! (loopback, private buses), 2-second epochs: every node is challenged by its designated
//! verifier each epoch, the results reach every node's ledger copy (same head hash); a node whose
//! shard files are corrupted on disk fails its storage proof and is quarantined realm-wide,
//! storage placement stops using it while the others carry on, and it returns after probation.
//! The agents share one network namespace whose firewall node 1 owns: its `quarantine` set holds
//! the quarantined node's overlay address while the quarantine lasts (also when the table was
//! missing at the verdict and an admin applied it again later: the worker tries again).

use std::path::{Path, PathBuf};

use macula_store::header::ShardHeader;
use macula_testkit::check::{ok, wait_until, wait_until_ok};
use macula_testkit::netns::Topology;
use macula_testkit::realm::{AgentRealm, Realm, RealmNode as Node, wait_ledgers_agree};

const PROOFS: &str = "audit_interval_secs = 3600\n\
    [proofs]\nenabled = true\ncapacity_steps = 65536\ncapacity_segments = 16\n\
    capacity_deadline_ms = 5000\nstorage_shards = 8\nstorage_deadline_ms = 5000\n\
    storage_retries = 0\n\
    [proofs.rewards]\nepoch_s = 2\n\
    [proofs.quarantine]\nmax_failures = 1\nwindow_epochs = 10\nprobation_passes = 16\n\
    [proofs.spread]\nmin_interval_ms = 500\n";

fn proofs_status(n: &Node) -> serde_json::Value {
    serde_json::from_str(&ok(&n.agent.ctl(&["proofs", "status", "--json"]))).unwrap()
}

fn history(n: &Node, about: &str) -> Vec<serde_json::Value> {
    let v: serde_json::Value = serde_json::from_str(&ok(&n
        .agent
        .ctl(&["proofs", "history", "--node", about, "--json"])))
    .unwrap();
    v.as_array().unwrap().clone()
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
    out
}

fn file_of(dir: &Path, name: &str, len: usize, seed: u32) -> PathBuf {
    macula_testkit::check::file_of(dir, name, len, seed).0
}

/// Node 1 owns the namespace's firewall (the overlay interface need not exist for the set).
const FIREWALL: &str =
    "[firewall]\nenabled = true\n[firewall.zones.overlay]\ninterfaces = [\"mcl0\"]\n";

/// The elements of `table inet macula`'s `quarantine` set in the realm's namespace.
fn quarantine_set(topo: &Topology) -> String {
    let out = topo.exec("r", &["nft", "list", "set", "inet", "macula", "quarantine"]);
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8(out.stdout).unwrap();
    text.split_once("elements = {")
        .map(|(_, e)| e.split('}').next().unwrap().trim().to_string())
        .unwrap_or_default()
}

#[test]
fn a_node_with_corrupted_shards_is_quarantined_and_avoided() {
    let mut topo = Topology::new("prf");
    let ns = topo.add_ns("r");
    let realm = Realm::from_seed(0x51);
    let realm_id = realm.key().id().0;
    let nodes = AgentRealm::new(4)
        .coded(2, 1)
        .realm(realm)
        .netns(ns)
        .storage_extra(|i| {
            if i == 1 {
                format!("{PROOFS}{FIREWALL}")
            } else {
                PROOFS.to_string()
            }
        })
        .start();
    let ids: Vec<String> = nodes.iter().map(Node::node_id).collect();
    assert_eq!(quarantine_set(&topo), "");
    let files = tempfile::tempdir().unwrap();
    let a = file_of(files.path(), "a", 6 << 20, 1);
    let cap_a = ok(&nodes[0].agent.ctl(&["put", "-q", a.to_str().unwrap()]));
    let stat: serde_json::Value = serde_json::from_str(&ok(&nodes[0].agent.ctl(&[
        "storage",
        "stat",
        cap_a.trim(),
        "--json",
    ])))
    .unwrap();
    let segments = stat["segments"].as_u64().unwrap() as usize;
    let cheat = 3;
    wait_until("node 3 holds shards", 20, || {
        !shard_files(&nodes[cheat]).is_empty()
    });

    // Every node passes capacity and storage proofs, judged by others, seen by everyone.
    let took = wait_until(
        "every node has passed both proofs, on every ledger",
        40,
        || {
            nodes.iter().all(|n| {
                ids.iter().all(|id| {
                    let h = history(n, id);
                    ["capacity", "storage"].iter().all(|k| {
                        h.iter()
                            .any(|e| e["kind"] == *k && e["passed"] == true && e["verifier"] != *id)
                    })
                })
            })
        },
    );
    eprintln!("all proofs passed and replicated after {took:?}");
    let cap = history(&nodes[1], &ids[2])
        .into_iter()
        .find(|e| e["kind"] == "capacity" && e["passed"] == true)
        .unwrap();
    assert!(cap["capacity_milli"].as_u64().unwrap() > 0, "{cap}");
    assert!(cap["reward_micro"].as_u64().unwrap() > 0, "{cap}");
    for n in &nodes {
        assert_eq!(proofs_status(n)["quarantined"], serde_json::json!([]));
    }

    // Node 1's table vanishes behind its back (as if another tool flushed the ruleset): its
    // worker cannot put the verdict in the set until the table is back, and tries again.
    assert!(
        topo.exec("r", &["nft", "delete", "table", "inet", "macula"])
            .status
            .success()
    );

    // Corrupt every shard on node 3 behind its back (header kept, data zeroed).
    let corrupted: Vec<(PathBuf, Vec<u8>)> = shard_files(&nodes[cheat])
        .into_iter()
        .map(|f| {
            let mut bytes = std::fs::read(&f).unwrap();
            let (_, hlen) = ShardHeader::parse_verified(&bytes).unwrap();
            for b in &mut bytes[hlen..] {
                *b = !*b;
            }
            std::fs::write(&f, &bytes).unwrap();
            (f, bytes)
        })
        .collect();
    eprintln!("corrupted {} shard files on n3", corrupted.len());
    let took = wait_until("every node quarantines node 3", 60, || {
        nodes
            .iter()
            .all(|n| proofs_status(n)["quarantined"] == serde_json::json!([ids[cheat].clone()]))
    });
    eprintln!("node 3 quarantined realm-wide {took:?} after the corruption");
    // Node 1's worker failed to update the missing set; once an admin applies the firewall
    // again, its next attempt puts node 3's address in the set: node 1's firewall limits it.
    wait_until("node 1's proofs.firewall reports the failure", 10, || {
        let w: serde_json::Value =
            serde_json::from_str(&ok(&nodes[1].agent.ctl(&["node", "workers", "--json"]))).unwrap();
        w.as_array().unwrap().iter().any(|w| {
            w["name"] == "proofs.firewall"
                && w["last_error"]
                    .as_str()
                    .is_some_and(|e| e.contains("quarantine set"))
        })
    });
    let fw_file = files.path().join("firewall.toml");
    std::fs::write(&fw_file, FIREWALL).unwrap();
    ok(&nodes[1]
        .agent
        .ctl(&["firewall", "apply", fw_file.to_str().unwrap()]));
    ok(&nodes[1].agent.ctl(&["firewall", "confirm"]));
    let cheat_addr =
        macula_net::firewall::node_address(&realm_id, &ids[cheat].parse().unwrap()).to_string();
    let took = wait_until("node 1's firewall quarantine set holds node 3", 10, || {
        quarantine_set(&topo) == cheat_addr
    });
    eprintln!("node 3's overlay address {cheat_addr} in node 1's quarantine set {took:?} later");
    let failures: Vec<_> = history(&nodes[0], &ids[cheat])
        .into_iter()
        .filter(|e| e["failure"] == "bad-group")
        .collect();
    assert!(!failures.is_empty());
    let standing = |n: &Node, id: &str| -> String {
        let ledger: serde_json::Value =
            serde_json::from_str(&ok(&n.agent.ctl(&["ledger", "--node", id, "--json"]))).unwrap();
        ledger[0]["standing"].as_str().unwrap().to_string()
    };
    assert_ne!(standing(&nodes[1], &ids[cheat]), "active");
    for id in &ids[..cheat] {
        assert_eq!(standing(&nodes[1], id), "active");
    }

    // Its shards are rebuilt on the three others (it is no repair source and counts as down):
    // none of the corrupt copies is left on it (the proofs' reads removed them), the others hold
    // at least every shard of the first object (its manifest's too), and no node's planner sees
    // a degraded segment. (A repair that ran between the removal and the verdict may have put a
    // sound copy back on it: that one counts for nothing once the node counts as down.)
    let took = wait_until_ok(
        "the others hold every shard of the first object",
        30,
        || {
            let left = corrupted
                .iter()
                .filter(|(f, bad)| std::fs::read(f).is_ok_and(|b| b == *bad))
                .count();
            let held: usize = nodes[..cheat].iter().map(|n| shard_files(n).len()).sum();
            let repair: Vec<serde_json::Value> = nodes[..cheat]
                .iter()
                .map(|n| n.storage_status()["repair"].clone())
                .collect();
            if left == 0 && held >= 3 * segments && repair.iter().all(|r| r["degraded"] == 0) {
                return Ok(());
            }
            let logs: Vec<String> = nodes.iter().flat_map(Node::repair_log).collect();
            Err(format!(
                "node 3 still holds {left} corrupt shard files, the others {held} (want {}), repair status \
             {repair:?}\n{}",
                3 * segments,
                logs.join("\n")
            ))
        },
    );
    eprintln!("{segments} segments fully held by the others {took:?} after the quarantine");

    // The others carry on: a new object is placed on the three others only, and reads back.
    let before = shard_files(&nodes[cheat]).len();
    let b = file_of(files.path(), "b", 3 << 20, 2);
    let cap_b = ok(&nodes[1].agent.ctl(&["put", "-q", b.to_str().unwrap()]));
    assert_eq!(
        shard_files(&nodes[cheat]).len(),
        before,
        "placement used the quarantined node"
    );
    let out = files.path().join("b.out");
    ok(&nodes[2]
        .agent
        .ctl(&["get", cap_b.trim(), "-o", out.to_str().unwrap(), "-q"]));
    assert_eq!(std::fs::read(&out).unwrap(), std::fs::read(&b).unwrap());

    // The store dropped the corrupt files when the proof read them (repair restores them from
    // other holders): the node behaves again and returns after 16 consecutive passes.
    let took = wait_until(
        "node 3 is released after probation on every node",
        90,
        || {
            nodes
                .iter()
                .all(|n| proofs_status(n)["quarantined"] == serde_json::json!([]))
        },
    );
    eprintln!("node 3 released {took:?} later");
    wait_until(
        "node 1's firewall quarantine set is empty again",
        10,
        || quarantine_set(&topo).is_empty(),
    );
    assert_eq!(standing(&nodes[0], &ids[cheat]), "active");

    // Every node holds the same ledger up to a past epoch once pushes and pulls settled (the
    // head moves every epoch, so the records of epochs up to two ago are compared).
    let upto = proofs_status(&nodes[0])["epoch"].as_u64().unwrap() - 2;
    wait_ledgers_agree(&nodes, upto, 30);
}
