//! `maculactl realm status` on real `maculad` processes: every member in one table, from what
//! the node knows (its own status, member metadata, resource reports) and what each member
//! reports of itself (RPC `node.report`: uptime, slot and last update result from its RAUC, here
//! a stand-in per node); a member that goes away is shown down, and a node outside any realm is
//! told so.

use macula_testkit::check::{free_udp_port, ok, output_text, wait_until};
use macula_testkit::rauc::FakeRauc;
use macula_testkit::realm::{AgentRealm, RealmNode as Node};
use macula_testkit::{Agent, AgentOptions, DbusDaemon};
use std::time::Duration;

/// Resource reports every 500 ms on a 1 % change (uptime column).
const PROOFS: &str = "\n[proofs]\nenabled = true\n[proofs.spread]\nthreshold_permille = 10\n\
                      min_interval_ms = 500\nmax_interval_ms = 5000\n";

fn status(n: &Node) -> Vec<serde_json::Value> {
    let v: serde_json::Value =
        serde_json::from_str(&ok(&n.agent.ctl(&["realm", "status", "--json"]))).unwrap();
    v.as_array().unwrap().clone()
}

#[test]
fn realm_status_lists_every_member() {
    // Each node's RAUC: n0 and n2 booted A, n1 booted B after an update that failed.
    let raucs = [
        FakeRauc::start("A", ""),
        FakeRauc::start("B", "installing bundle failed: signature invalid"),
        FakeRauc::start("A", ""),
    ];
    let mut nodes = AgentRealm::new(3)
        .coded(2, 1)
        .storage_extra(|_| PROOFS.to_string())
        .env(|i| vec![raucs[i].env()])
        .start();
    let ids: Vec<String> = nodes.iter().map(Node::node_id).collect();
    let version: serde_json::Value =
        serde_json::from_str(&ok(&nodes[0].agent.ctl(&["status", "--json"]))).unwrap();
    let version = version["version"].as_str().unwrap().to_owned();
    wait_until("every member's row is complete", 20, || {
        let rows = status(&nodes[0]);
        rows.len() == 3
            && rows
                .iter()
                .all(|r| !r["uptime_s"].is_null() && !r["storage_free"].is_null())
    });
    let rows = status(&nodes[0]);
    // This node first, then the peers by name.
    assert_eq!(rows[0]["node_id"], ids[0]);
    assert_eq!(rows[0]["state"], "self");
    assert_eq!(rows[0]["name"], nodes[0].name);
    for (i, r) in rows.iter().enumerate() {
        assert_eq!(r["node_id"], ids[i], "{r}");
        assert_eq!(r["name"], nodes[i].name, "{r}");
        if i > 0 {
            assert_eq!(r["state"], "alive", "{r}");
        }
        // Each member's own slot and last update result, as its RAUC says.
        let (slot, last) = [
            ("A", ""),
            ("B", "installing bundle failed: signature invalid"),
            ("A", ""),
        ][i];
        assert_eq!(r["slot"], slot, "{r}");
        assert_eq!(r["last_update"], last, "{r}");
        assert_eq!(r["version"], version.as_str(), "{r}");
        assert!(
            ["edge", "hub"].contains(&r["role"].as_str().unwrap()),
            "{r}"
        );
        // All run on this machine, started seconds ago: the machine's uptime is longer.
        assert!(r["uptime_s"].as_u64().unwrap() > 0, "{r}");
        let (free, total) = (
            r["storage_free"].as_u64().unwrap(),
            r["storage_total"].as_u64().unwrap(),
        );
        assert!(total > 0 && free <= total, "{r}");
    }
    let table = ok(&nodes[0].agent.ctl(&["realm", "status"]));
    assert!(table.starts_with("NAME"), "{table}");
    for n in &nodes {
        assert!(table.contains(&n.name), "{table}");
    }
    assert!(table.contains("installing bundle failed"), "{table}");
    let n1 = table.lines().find(|l| l.starts_with("n1 ")).unwrap();
    assert!(n1.contains(" B "), "{table}");
    for line in table.lines().skip(1) {
        // Every column filled: no `-` left for a member alive.
        assert!(!line.contains(" - "), "{table}");
    }

    // A member that stops is shown down (SWIM declares it), still listed.
    nodes[2].agent.stop(Duration::from_secs(5));
    wait_until("the stopped member is shown down", 30, || {
        status(&nodes[0])
            .iter()
            .any(|r| r["node_id"] == ids[2] && r["state"] == "down")
    });
    nodes.truncate(2);

    // A node in no realm is told so (exit 7).
    let bus = DbusDaemon::start();
    let loner = Agent::spawn(
        &bus,
        AgentOptions {
            config: Some(
                macula_testkit::config::AgentConfig::loopback(free_udp_port()).to_string(),
            ),
            ..Default::default()
        },
    );
    let out = loner.ctl(&["realm", "status"]);
    assert_eq!(out.status.code(), Some(7), "{}", output_text(&out));
    assert!(output_text(&out).contains("in no realm"));
}
