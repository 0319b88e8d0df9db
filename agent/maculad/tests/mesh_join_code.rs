//! Join codes on real `maculad` processes (docs/realms.md, "Join codes"): `maculactl realm
//! invite` on the hub holding the realm key prints a code; a node without a certificate joins
//! with `realm join --code` (or a `join.code` file in its state directory, as the boot
//! partition's provisioning places it) and becomes a member with the invite's name and role;
//! the same code used again, an expired code and a code of another realm are refused with
//! their reasons, a node holding no realm key issues no codes, and a member whose certificate
//! lapsed while it was off rejoins with a fresh code.

use std::path::Path;
use std::time::Duration;

use macula_core::NodeKey;
use macula_core::config::Role;
use macula_mesh::join::{JOIN_VERSION, JoinCode, Secret};
use macula_mesh::realm::{CertBody, MembershipCert, RealmKey};
use macula_mesh::transport::unix_now;
use macula_testkit::check::{free_udp_port, ok, output_text, wait_until};
use macula_testkit::config::AgentConfig;
use macula_testkit::{Agent, AgentOptions, DbusDaemon};

fn alive(agent: &Agent) -> Vec<String> {
    let v: serde_json::Value = serde_json::from_str(&ok(&agent.ctl(&["peers", "--json"]))).unwrap();
    let mut names: Vec<String> = v
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["state"] == "alive")
        .map(|p| p["name"].as_str().unwrap().to_owned())
        .collect();
    names.sort();
    names
}

fn invite(hub: &Agent, name: &str, expires: &str) -> String {
    let out = ok(&hub.ctl(&[
        "realm",
        "invite",
        "--name",
        name,
        "--role",
        "edge",
        "--expires",
        expires,
    ]));
    let code = out.lines().next().unwrap().trim().to_owned();
    assert!(code.starts_with("macula-join-"), "{out}");
    code
}

/// `realm join --code` on `agent` fails with exit code `exit` (docs/cli.md); returns what it
/// said.
fn refused(agent: &Agent, code: &str, exit: i32) -> String {
    let out = agent.ctl(&["realm", "join", "--code", code]);
    assert_eq!(out.status.code(), Some(exit), "{}", output_text(&out));
    output_text(&out)
}

fn stored_cert(state: &Path) -> MembershipCert {
    MembershipCert::from_text(&std::fs::read_to_string(state.join("realm.cert")).unwrap()).unwrap()
}

#[test]
fn a_join_code_admits_one_node_once() {
    let (pa, pb, pc) = (free_udp_port(), free_udp_port(), free_udp_port());
    let (bus_a, bus_b, bus_c) = (
        DbusDaemon::start(),
        DbusDaemon::start(),
        DbusDaemon::start(),
    );
    let mut hub = Agent::prepare(
        &bus_a,
        AgentOptions {
            config: Some(AgentConfig::loopback(pa).role(Role::Hub).to_string()),
            ..Default::default()
        },
    );
    // The hub holds the realm key where `maculactl realm create` keeps it.
    let (realm_key, _) = NodeKey::load_or_create(&hub.state_dir().join("realm")).unwrap();
    let realm = RealmKey::from_node_key(realm_key);
    let (hub_key, _) = NodeKey::load_or_create(&hub.state_dir()).unwrap();
    let hub_cert = realm.issue(CertBody::founder(
        realm.id(),
        hub_key.node_id(),
        Role::Hub,
        "hub",
        unix_now(),
    ));
    std::fs::write(hub.state_dir().join("realm.cert"), hub_cert.to_text()).unwrap();
    hub.start(&bus_a).unwrap();

    let edge_config = |port| Some(AgentConfig::loopback(port).bootstrap_port(pa).to_string());
    let first = Agent::spawn(
        &bus_b,
        AgentOptions {
            config: edge_config(pb),
            ..Default::default()
        },
    );
    let code = invite(&hub, "edge-1", "1h");
    let said = ok(&first.ctl(&["realm", "join", "--code", &code]));
    assert!(said.contains(&realm.id().to_string()), "{said}");
    wait_until("the hub and the new member see each other", 20, || {
        alive(&hub) == ["edge-1"] && alive(&first) == ["hub"]
    });
    let cert = stored_cert(&first.state_dir());
    assert_eq!(
        (cert.body.realm, cert.body.role, cert.body.name.as_str()),
        (realm.id(), Role::Edge, "edge-1")
    );
    assert!(hub.log().contains("admitted a node with a join code"));
    // A member is told it is one already.
    let again = refused(&first, &invite(&hub, "x", "1h"), 7);
    assert!(again.contains("member already"), "{again}");

    // The same code on another node: used.
    let mut second = Agent::spawn(
        &bus_c,
        AgentOptions {
            config: edge_config(pc),
            ..Default::default()
        },
    );
    let said = refused(&second, &code, 4);
    assert!(said.contains("used already"), "{said}");
    // An expired code.
    let short = invite(&hub, "edge-2", "1s");
    std::thread::sleep(Duration::from_millis(2100));
    let said = refused(&second, &short, 4);
    assert!(said.contains("expired"), "{said}");
    // A code naming this hub but another realm.
    let foreign = JoinCode {
        version: JOIN_VERSION,
        realm: RealmKey::generate().id(),
        issuer: hub_key.node_id(),
        secret: Secret([7; 16]),
    };
    let said = refused(&second, &foreign.to_text(), 4);
    assert!(said.contains("is for realm"), "{said}");
    // A mistyped code; and a member holding no realm key issues none.
    let said = refused(&second, "macula-join-nonsense", 5);
    assert!(said.contains("damaged"), "{said}");
    let no_key = first.ctl(&["realm", "invite", "--name", "e"]);
    assert!(!no_key.status.success());
    assert!(
        output_text(&no_key).contains("holds no realm key"),
        "{}",
        output_text(&no_key)
    );
    assert_eq!(alive(&hub), ["edge-1"], "nobody else was admitted");

    // The boot partition's way: `join.code` in the state directory, redeemed at start.
    second.stop(Duration::from_secs(5));
    std::fs::write(
        second.state_dir().join("join.code"),
        invite(&hub, "edge-3", "10m"),
    )
    .unwrap();
    second.start(&bus_c).unwrap();
    wait_until("the node with join.code is a member", 30, || {
        alive(&hub) == ["edge-1", "edge-3"]
    });
    assert!(!second.state_dir().join("join.code").exists());
    assert_eq!(stored_cert(&second.state_dir()).body.name, "edge-3");
    // A member whose certificate lapsed while it was off rejoins with a fresh code.
    let first_key = NodeKey::load(&first.state_dir().join("node.key")).unwrap();
    let mut first = first;
    first.stop(Duration::from_secs(5));
    let now = unix_now();
    let lapsed = realm.issue(CertBody {
        realm: realm.id(),
        node: first_key.node_id(),
        role: Role::Edge,
        name: "edge-1".into(),
        not_before: now - 7200,
        expires: now - 3600,
    });
    std::fs::write(first.state_dir().join("realm.cert"), lapsed.to_text()).unwrap();
    first.start(&bus_b).unwrap();
    wait_until("the hub expels the lapsed member", 20, || {
        alive(&hub) == ["edge-3"]
    });
    ok(&first.ctl(&["realm", "join", "--code", &invite(&hub, "edge-1b", "1h")]));
    wait_until("the lapsed member is back", 20, || {
        alive(&hub) == ["edge-1b", "edge-3"]
    });
    assert!(stored_cert(&first.state_dir()).body.expires > now);

    // Invites are kept 0600 next to the realm key.
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(hub.state_dir().join("realm/invites"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
}

/// Without any bootstrap entry: the new node finds the issuer by its LAN beacon (two network
/// namespaces on one link, both listing it in `[mesh] lan_beacon`). Needs root and iproute2.
#[test]
fn a_join_code_finds_its_issuer_by_lan_beacon() {
    let mut topo = macula_testkit::netns::Topology::new("mjc");
    let ns_a = topo.add_ns("a");
    let ns_b = topo.add_ns("b");
    let (lan_a, lan_b) = topo.link("a", "10.77.0.1/24", "b", "10.77.0.2/24");
    let config = |listen: &str, iface: &str| {
        Some(
            AgentConfig::listen(listen)
                .mesh(&format!(
                    "lan_beacon = [\"{iface}\"]\nbeacon_interval_s = 1\n"
                ))
                .to_string(),
        )
    };
    let (bus_a, bus_b) = (DbusDaemon::start(), DbusDaemon::start());
    let hub = Agent::spawn(
        &bus_a,
        AgentOptions {
            config: config("10.77.0.1:4433", &lan_a),
            netns: Some(ns_a),
            ..Default::default()
        },
    );
    let new = Agent::spawn(
        &bus_b,
        AgentOptions {
            config: config("10.77.0.2:4433", &lan_b),
            netns: Some(ns_b),
            ..Default::default()
        },
    );
    ok(&hub.ctl(&["realm", "create", "--name", "alpha"]));
    let code = invite(&hub, "bravo", "10m");
    let said = ok(&new.ctl(&["realm", "join", "--code", &code]));
    assert!(said.contains("joined realm"), "{said}");
    wait_until("the node that joined by beacon is a member", 30, || {
        alive(&hub) == ["bravo"] && alive(&new) == ["alpha"]
    });
    assert!(hub.log().contains("admitted a node with a join code"));
}
