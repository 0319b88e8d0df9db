//! Realm rollouts on real `maculad` processes, up to where a reboot would be needed: a hub
//! publishes a bundle (stored in the realm's storage, the signed rollout spread on the mesh);
//! the first wave's node fetches it from its peers at the bounded rate, checks its hash and hands
//! it to RAUC — which does not exist on a test host (the QEMU test `test_rollout.py` installs
//! for real), so the installation fails there, the node reports the failure signed, and the
//! rollout halts on every node with the others untouched. A member that was away catches the
//! records up when it comes back; an edge may not publish.

use std::time::{Duration, Instant};

use macula_testkit::check::{ok, output_text, wait_until, wait_until_ok};
use macula_testkit::realm::{AgentRealm, RealmNode as Node};
use macula_update::rollout::Rollout;

/// 256 KiB/s: the 1 MiB bundle takes at least 3 s to fetch (one second of burst).
const RATE: u64 = 256 * 1024;
const BUNDLE: usize = 1024 * 1024;

fn rollout(n: &Node) -> serde_json::Value {
    serde_json::from_str(&ok(&n
        .agent
        .ctl(&["update", "status", "--realm", "--json"])))
    .unwrap()
}

/// `(node, wave, step, at, detail)` of each line of `nodes`.
fn lines(v: &serde_json::Value) -> Vec<Vec<String>> {
    v["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            l.as_str()
                .unwrap()
                .splitn(5, ' ')
                .map(str::to_owned)
                .collect()
        })
        .collect()
}

#[test]
fn publish_spreads_the_rollout_and_a_failure_halts_it() {
    let mut nodes = AgentRealm::new(4)
        .coded(2, 1)
        .storage_extra(|_| format!("\n[update]\nfetch_bytes_per_s = {RATE}\n"))
        .start();
    let ids: Vec<String> = nodes.iter().map(Node::node_id).collect();

    // nothing published yet
    let out = ok(&nodes[1].agent.ctl(&["update", "status", "--realm"]));
    assert!(out.contains("no rollout"), "{out}");

    let dir = tempfile::tempdir().unwrap();
    let bundle = dir.path().join("update.raucb");
    // a bundle whose wave order does not start with node 3 (away at publication: skipped, the
    // next node would start at once instead and the first wave would not be one node)
    let node_ids: Vec<macula_core::NodeId> = ids.iter().map(|i| i.parse().unwrap()).collect();
    let bytes = (0u8..)
        .map(|salt| {
            let mut b: Vec<u8> = (0..BUNDLE).map(|i| (i * 7 + i / 251) as u8).collect();
            b[0] = salt;
            b
        })
        .find(|b| {
            let (hash, _) = macula_update::rollout::hash_bundle(&b[..]).unwrap();
            Rollout::order(&hash, node_ids.clone())[0] != node_ids[3]
        })
        .unwrap();
    std::fs::write(&bundle, &bytes).unwrap();
    let bundle = bundle.to_str().unwrap();

    // an edge may not publish (exit 4), bad waves are refused (exit 5)
    let out = nodes[1].agent.ctl(&[
        "update",
        "publish",
        bundle,
        "--version",
        "9.9",
        "--compatible",
        "test",
    ]);
    assert_eq!(out.status.code(), Some(4), "{}", output_text(&out));
    assert!(
        output_text(&out).contains("only a hub"),
        "{}",
        output_text(&out)
    );
    let out = nodes[0].agent.ctl(&[
        "update",
        "publish",
        bundle,
        "--waves",
        "0,50%",
        "--version",
        "9.9",
    ]);
    assert_eq!(out.status.code(), Some(5), "{}", output_text(&out));

    // a member away at publication
    nodes[3].agent.stop(Duration::from_secs(5));
    wait_until("the others see node 3 down", 30, || {
        nodes[..3].iter().all(|n| {
            n.peers()
                .iter()
                .any(|p| p["node_id"] == ids[3].as_str() && p["state"] == "down")
        })
    });

    let published = Instant::now();
    let out = ok(&nodes[0].agent.ctl(&[
        "update",
        "publish",
        bundle,
        "--waves",
        "1,100%",
        "--version",
        "9.9",
        "--compatible",
        "test",
        "--deadline",
        "600",
    ]));
    assert!(out.contains("published rollout"), "{out}");

    // every running node halts on the same rollout, stopped by one node of the first wave
    let mut halted_by = String::new();
    wait_until_ok("every running node sees the rollout halted", 60, || {
        let views: Vec<serde_json::Value> = nodes[..3].iter().map(rollout).collect();
        for v in &views {
            if v["phase"] != "halted" {
                return Err(format!("{v}"));
            }
        }
        if views.iter().any(|v| v["id"] != views[0]["id"]) {
            return Err("different rollouts".into());
        }
        halted_by = views[0]["halted_by"].as_str().unwrap().to_owned();
        Ok(())
    });
    let took = published.elapsed();
    let v = rollout(&nodes[0]);
    assert_eq!(v["version"], "9.9");
    assert_eq!(v["publisher"], ids[0].as_str());
    assert_eq!(v["bundle_bytes"], BUNDLE as u64);
    assert_eq!(v["waves"], "1,100%");
    let reason = v["reason"].as_str().unwrap();
    assert!(reason.contains("RAUC"), "{reason}");
    let rows = lines(&v);
    assert_eq!(rows.len(), 4, "{v}");
    // the first wave: the first node in wave order
    let first = &rows[0];
    assert_eq!(first[1], "1", "{v}");
    assert_eq!(first[0], halted_by, "{v}");
    assert_eq!(first[2], "failed", "{v}");
    for l in &rows {
        if l[0] != halted_by {
            assert_eq!(l[2], "-", "untouched: {v}");
        }
    }
    let failing = nodes.iter().position(|n| n.node_id() == halted_by).unwrap();
    // it fetched the whole bundle from its peers at the bounded rate and checked it before RAUC
    let log = nodes[failing].agent.log();
    assert!(log.contains("rollout bundle fetched and checked"), "{log}");
    assert!(
        took >= Duration::from_secs((BUNDLE as u64 / RATE) - 1),
        "fetched in {took:?}, faster than {RATE} B/s allows"
    );
    eprintln!("publish → halted on 3 nodes in {took:?}");
    // the table
    let table = ok(&nodes[2].agent.ctl(&["update", "status", "--realm"]));
    eprintln!("{table}");
    assert!(table.contains("HALTED by"), "{table}");
    assert!(table.contains(&halted_by), "{table}");

    // the member that was away learns the rollout when it is back, and does not start
    let Node { agent, bus, .. } = &mut nodes[3];
    agent.start(bus).unwrap();
    wait_until("the returning member caught up", 60, || {
        let v = rollout(&nodes[3]);
        v["phase"] == "halted" && v["halted_by"] == halted_by.as_str()
    });
    let v = rollout(&nodes[3]);
    let mine = lines(&v).into_iter().find(|l| l[0] == ids[3]).unwrap();
    assert_eq!(mine[2], "-", "{v}");

    // an agent restarted keeps the records (saved in its state directory)
    nodes[2].agent.stop(Duration::from_secs(5));
    let Node { agent, bus, .. } = &mut nodes[2];
    agent.start(bus).unwrap();
    let v = rollout(&nodes[2]);
    assert_eq!(v["phase"], "halted", "{v}");
}
