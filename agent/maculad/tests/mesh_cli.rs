//! The realm provisioning flow through `maculactl realm create|admit|join` on two real
//! `maculad` processes (loopback, private buses), the certificate and revocations surviving a
//! restart, member metadata (overlay key) and the `Peers`/`Enabled` change signals.

use std::time::Duration;

use macula_testkit::check::{free_udp_port, ok, wait_until};
use macula_testkit::config::{AgentConfig, Role};
use macula_testkit::{Agent, AgentOptions, DbusDaemon};

fn alive_names(agent: &Agent) -> Vec<String> {
    let v: serde_json::Value = serde_json::from_str(&ok(&agent.ctl(&["peers", "--json"]))).unwrap();
    let mut names: Vec<String> = v
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["state"] == "alive")
        .map(|p| {
            format!(
                "{}/{}",
                p["name"].as_str().unwrap(),
                p["role"].as_str().unwrap()
            )
        })
        .collect();
    names.sort();
    names
}

#[test]
fn create_admit_join_and_restart() {
    let (pa, pb) = (free_udp_port(), free_udp_port());
    let bus_a = DbusDaemon::start();
    let bus_b = DbusDaemon::start();
    let mut a = Agent::spawn(
        &bus_a,
        AgentOptions {
            config: Some(AgentConfig::loopback(pa).role(Role::Hub).to_string()),
            ..Default::default()
        },
    );
    let mut b = Agent::spawn(
        &bus_b,
        AgentOptions {
            config: Some(AgentConfig::loopback(pb).bootstrap_port(pa).to_string()),
            ..Default::default()
        },
    );
    // Every PropertiesChanged A emits, recorded by a real dbus-monitor on A's bus.
    let monitor_log = tempfile::NamedTempFile::new().unwrap();
    let mut monitor = std::process::Command::new("dbus-monitor")
        .args([
            "--address",
            bus_a.address(),
            "type='signal',interface='org.freedesktop.DBus.Properties',member='PropertiesChanged'",
        ])
        .stdout(monitor_log.reopen().unwrap())
        .spawn()
        .expect("dbus-monitor (package dbus) is needed");
    std::thread::sleep(Duration::from_millis(500));
    let created = ok(&a.ctl(&["realm", "create", "--name", "alpha"]));
    assert!(created.contains("created realm"), "{created}");
    let status: serde_json::Value =
        serde_json::from_str(&ok(&a.ctl(&["status", "--json"]))).unwrap();
    let a_id = status["node_id"].as_str().unwrap().to_string();
    // Only one realm per node.
    assert!(!a.ctl(&["realm", "create"]).status.success());

    let status: serde_json::Value =
        serde_json::from_str(&ok(&b.ctl(&["status", "--json"]))).unwrap();
    let b_id = status["node_id"].as_str().unwrap().to_string();
    // B holds no realm key: it cannot admit anyone, and says where to do it instead.
    let refused = b.ctl(&["realm", "admit", &b_id, "--name", "x"]);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("no realm key"));

    let dir = tempfile::tempdir().unwrap();
    let cert = dir.path().join("bravo.cert");
    let cert_s = cert.to_str().unwrap();
    ok(&a.ctl(&["realm", "admit", &b_id, "--name", "bravo", "-o", cert_s]));
    // A certificate is bound to its node: A cannot install B's.
    let wrong = a.ctl(&["realm", "join", cert_s]);
    assert!(!wrong.status.success());
    assert!(String::from_utf8_lossy(&wrong.stderr).contains("refused"));

    let joined = ok(&b.ctl(&["realm", "join", cert_s]));
    assert!(joined.contains("joined realm"), "{joined}");
    wait_until("the two nodes see each other", 30, || {
        alive_names(&a) == ["bravo/edge"] && alive_names(&b) == ["alpha/hub"]
    });
    // RPC through the CLI: `maculactl ping` calls mesh.ping on B (by name or node ID).
    let pong = ok(&a.ctl(&["ping", "bravo"]));
    assert!(pong.contains("answered by bravo"), "{pong}");
    assert!(ok(&b.ctl(&["ping", &a_id])).contains("answered by alpha"));
    let unknown = a.ctl(&["ping", "nobody"]);
    assert!(!unknown.status.success());
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("node ID"));
    // Metadata: B announces its overlay key, the one derived from its node ID (docs/identity.md).
    let peers: serde_json::Value = serde_json::from_str(&ok(&a.ctl(&["peers", "--json"]))).unwrap();
    let expected_wg = macula_net::overlay::peer_public_key(&b_id.parse().unwrap()).to_string();
    assert_eq!(peers[0]["overlay_key"], expected_wg.as_str(), "{peers}");
    assert_eq!(peers[0]["uplinks"][0], "default", "{peers}");
    // The Peers property announced the change with its new value; Enabled when the realm started.
    wait_until("PropertiesChanged for Mesh1.Peers", 10, || {
        let log = std::fs::read_to_string(monitor_log.path()).unwrap();
        log.contains("io.macula.Mesh1") && log.contains("\"Peers\"") && log.contains("bravo")
    });
    let log = std::fs::read_to_string(monitor_log.path()).unwrap();
    assert!(log.contains("\"Enabled\""), "{log}");
    monitor.kill().unwrap();
    monitor.wait().unwrap();

    // The certificate was stored: after a restart B is back in the realm without help.
    b.stop(Duration::from_secs(5));
    b.start(&bus_b).unwrap();
    wait_until("B rejoins after a restart", 40, || {
        alive_names(&b) == ["alpha/hub"] && alive_names(&a) == ["bravo/edge"]
    });

    // Revocation: only the realm key holder can revoke; B is cut off and stays out.
    assert!(!b.ctl(&["realm", "revoke", &b_id]).status.success());
    ok(&a.ctl(&["realm", "revoke", &b_id]));
    wait_until("B is down at A after the revocation", 20, || {
        alive_names(&a).is_empty()
    });
    std::thread::sleep(Duration::from_secs(3));
    assert!(alive_names(&a).is_empty(), "the revoked node came back");
    assert!(a.log().contains("revoked"), "log:\n{}", a.log());
    assert!(
        !a.ctl(&["ping", &b_id]).status.success(),
        "RPC to a revoked node"
    );

    // The revocation is stored, and A refuses B after its own restart although B keeps dialing.
    let stored = a.state_dir().join("revoked").join(format!("{b_id}.rev"));
    wait_until("the revocation is stored", 10, || stored.exists());
    a.stop(Duration::from_secs(5));
    a.start(&bus_a).unwrap();
    wait_until("A runs the mesh again", 20, || {
        a.log().contains("stored revocations loaded")
    });
    std::thread::sleep(Duration::from_secs(8));
    assert!(
        alive_names(&a).is_empty(),
        "B came back after A restarted; log:\n{}",
        a.log()
    );
}
