//! A realm-wide purge on four real `maculad` (loopback, private buses) driven through
//! `maculactl`: the hub that created the realm revokes a member and runs `storage purge NODE
//! --realm`; every storage node removes that owner's shards — also one that was down at the time,
//! once it comes back — and refuses them, while another owner's object still reads. A member
//! without the realm key cannot order a purge (and a member-signed order is refused by every
//! store: `macula_store::purge` unit test).

use std::time::Duration;

use macula_store::store::LocalStore;
use macula_testkit::check::{file_of, free_udp_port, ok, wait_until};
use macula_testkit::config::{AgentConfig, Role};
use macula_testkit::realm::{RealmNode as Node, admit_with_ctl};

fn storage_nodes(n: &Node) -> u64 {
    n.storage_status()["stats"]["nodes"].as_u64().unwrap_or(0)
}

fn restart(n: &mut Node) {
    n.agent.start(&n.bus).unwrap();
}

/// Bytes `owner` holds in `n`'s store (read from disk: `n` must be stopped).
fn held_by(n: &Node, owner: &str) -> u64 {
    let store = LocalStore::open(&n.agent.state_dir().join("shards"), 1 << 30).unwrap();
    store
        .usage_by_owner()
        .get(&owner.parse().unwrap())
        .copied()
        .unwrap_or(0)
}

#[test]
fn a_realm_wide_purge_reaches_every_storage_node_and_only_the_realm_key_orders_it() {
    // No repairs during the test: shards stay where they were put.
    let storage = "enabled = true\nquota_bytes = 268435456\nk = 1\nm = 1\n\
                   repair_grace_secs = 600\naudit_interval_secs = 600\n";
    let hub_port = free_udp_port();
    let spawn = Node::spawn;
    let alpha = spawn(
        "alpha",
        AgentConfig::loopback(hub_port)
            .name("alpha")
            .role(Role::Hub)
            .storage(storage)
            .to_string(),
    );
    ok(&alpha.agent.ctl(&["realm", "create", "--name", "alpha"]));
    let mut nodes = vec![alpha];
    for name in ["bravo", "charlie", "delta"] {
        let port = free_udp_port();
        let n = spawn(
            name,
            AgentConfig::loopback(port)
                .name(name)
                .bootstrap_port(hub_port)
                .storage(storage)
                .to_string(),
        );
        admit_with_ctl(&nodes[0].agent, &n.agent, name);
        nodes.push(n);
    }
    wait_until("the realm of four forms with storage", 60, || {
        nodes
            .iter()
            .all(|n| n.alive_peers() == 3 && storage_nodes(n) == 4)
    });
    let dir = tempfile::tempdir().unwrap();
    // delta's object: 8 segments + manifest, two copies each, over four nodes.
    let (x, _) = file_of(dir.path(), "x.bin", 8 << 20, 41);
    let x_cap = ok(&nodes[3].agent.ctl(&["put", "-q", x.to_str().unwrap()]));
    let (y, y_data) = file_of(dir.path(), "y.bin", 1 << 20, 42);
    let y_cap = ok(&nodes[1].agent.ctl(&["put", "-q", y.to_str().unwrap()]));
    let delta = nodes[3].node_id();

    // charlie is down while the purge is ordered; it holds some of delta's shards.
    nodes[2].agent.stop(Duration::from_secs(5));
    let charlie_before = held_by(&nodes[2], &delta);
    assert!(charlie_before > 0, "charlie holds none of delta's shards");

    ok(&nodes[0].agent.ctl(&["realm", "revoke", &delta]));
    // A member without the realm key cannot order a purge.
    let refused = nodes[1].agent.ctl(&["storage", "purge", &delta, "--realm"]);
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("no realm key"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
    let out = ok(&nodes[0].agent.ctl(&["storage", "purge", &delta, "--realm"]));
    assert!(out.contains("purged") && out.contains("members"), "{out}");

    // alpha and bravo hold nothing of delta's any more: a local purge finds nothing left.
    for n in &nodes[..2] {
        let local = ok(&n.agent.ctl(&["storage", "purge", &delta]));
        assert!(local.starts_with("purged 0 shards"), "{local}");
    }
    // charlie comes back: whoever it meets first passes the order on.
    restart(&mut nodes[2]);
    wait_until("charlie applies the realm's purge order", 60, || {
        nodes[2]
            .agent
            .log()
            .contains("applied a realm-wide purge order")
    });
    let local = ok(&nodes[2].agent.ctl(&["storage", "purge", &delta]));
    assert!(local.starts_with("purged 0 shards"), "{local}");
    nodes[2].agent.stop(Duration::from_secs(5));
    assert_eq!(
        held_by(&nodes[2], &delta),
        0,
        "{charlie_before} bytes before"
    );
    restart(&mut nodes[2]);
    wait_until("charlie is back in the realm", 60, || {
        nodes[2].alive_peers() == 2 && storage_nodes(&nodes[2]) >= 3
    });

    // delta's object is gone; bravo's object still reads, from charlie too.
    let gone = nodes[1].agent.ctl(&[
        "get",
        x_cap.trim(),
        "-o",
        dir.path().join("x-back").to_str().unwrap(),
    ]);
    assert!(!gone.status.success(), "the purged object still reads");
    let back = dir.path().join("y-back");
    ok(&nodes[2]
        .agent
        .ctl(&["get", y_cap.trim(), "-o", back.to_str().unwrap()]));
    assert!(std::fs::read(&back).unwrap() == y_data);
}
