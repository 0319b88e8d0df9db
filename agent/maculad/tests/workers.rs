//! Named workers and the ordered shutdown, on real `maculad` processes in a 2-node realm with
//! storage: `maculactl node workers` lists the real workers with their states, and SIGTERM stops
//! every subsystem in order (D-Bus work, workers, storage, mesh, bus name) and exits 0 in time.

use std::time::Duration;

use macula_testkit::check::{ok, wait_until};
use macula_testkit::realm::{AgentRealm, RealmNode};

/// Every worker a storage node with a realm runs.
const EXPECTED: &[&str] = &[
    "mesh.peer-signals",
    "mesh.renewal",
    "mesh.revocations",
    "s3.index",
    "storage.audit",
    "storage.capacity",
    "storage.inventory-out",
    "storage.membership",
    "storage.repair-status",
    "storage.serve",
    "update.health",
    "update.rollout",
];

fn workers(n: &RealmNode) -> Vec<serde_json::Value> {
    let v: serde_json::Value =
        serde_json::from_str(&ok(&n.agent.ctl(&["node", "workers", "--json"]))).unwrap();
    v.as_array().unwrap().clone()
}

#[test]
fn workers_are_listed_and_sigterm_stops_everything_in_order() {
    let mut nodes = AgentRealm::new(2).start();
    let n0 = &nodes[0];
    // The storage workers start once storage runs; update.health ends at once here (not booted
    // from a RAUC slot).
    wait_until("every expected worker listed", 20, || {
        let mut names: Vec<String> = workers(n0)
            .iter()
            .map(|w| w["name"].as_str().unwrap().to_owned())
            .collect();
        names.sort();
        names == EXPECTED
    });
    for w in workers(n0) {
        let (name, state) = (w["name"].as_str().unwrap(), w["state"].as_str().unwrap());
        if name == "update.health" {
            assert_eq!(state, "stopped", "{w}");
        } else {
            assert!(state == "idle" || state == "running", "{w}");
        }
        assert_eq!(w["errors"], 0, "{w}");
        assert_eq!(w["last_error"], "", "{w}");
    }
    let table = ok(&n0.agent.ctl(&["node", "workers"]));
    assert!(table.starts_with("WORKER"), "{table}");
    let line = table
        .lines()
        .find(|l| l.starts_with("storage.inventory-out "))
        .unwrap_or_else(|| panic!("{table}"));
    assert!(
        line.contains(" idle ") || line.contains(" running "),
        "{table}"
    );
    // Read-only: anyone may list the workers (the bus policy's default context).
    let as_nobody = macula_testkit::maculactl_as("nobody", n0.bus.address(), &["node", "workers"]);
    assert!(
        as_nobody.status.success(),
        "{}",
        String::from_utf8_lossy(&as_nobody.stderr)
    );

    // SIGTERM: every step, in order, each worker stopped by itself, exit 0 within 2 s.
    let n1 = &mut nodes[1];
    let (status, took) = n1.agent.stop(Duration::from_secs(5));
    let log = n1.agent.log();
    println!("SIGTERM to exit: {took:?}");
    assert!(status.success(), "exit status {status}; log:\n{log}");
    assert!(took < Duration::from_secs(2), "stopping took {took:?}");
    let mut at = 0;
    for step in [
        "dbus-closed",
        "workers-stopped",
        "storage-flushed",
        "mesh-left",
        "bus-released",
    ] {
        let needle = format!("shutdown step step=\"{step}\"");
        let found = log[at..]
            .find(&needle)
            .unwrap_or_else(|| panic!("no `{needle}` after the previous step; log:\n{log}"));
        at += found;
    }
    assert!(
        log.contains(&format!(
            "workers stopped stopped={} aborted=0",
            EXPECTED.len()
        )),
        "{log}"
    );
    assert!(!log.contains("worker failed"), "{log}");
    assert!(!n1.bus.name_has_owner("io.macula.Agent"));
    // The realm heard it leave (mesh closed after saying so, not by a timeout).
    let n0 = &nodes[0];
    wait_until("n0 sees n1 gone", 5, || n0.alive_peers() == 0);
}
