//! Certificate renewal on real `maculad` processes: an edge whose certificate is valid for 45 s
//! asks the hub holding the realm key for a new one at 2/3 of it (RPC `realm.renew`), installs
//! it, stores it, shows it in `maculactl status`, and stays a member past the first
//! certificate's expiry (without renewal the hub expels it then).

use std::path::Path;
use std::time::Duration;

use macula_core::NodeKey;
use macula_core::config::Role;
use macula_mesh::realm::{CertBody, MembershipCert, RealmKey};
use macula_mesh::transport::unix_now;
use macula_testkit::check::{free_udp_port, ok, wait_until};
use macula_testkit::config::AgentConfig;
use macula_testkit::{Agent, AgentOptions, DbusDaemon};

const WINDOW_S: u64 = 45;

/// Seeds `state` with a node key and a certificate for it signed by `realm`.
fn seed(state: &Path, realm: &RealmKey, role: Role, name: &str, window: u64) -> MembershipCert {
    let (key, _) = NodeKey::load_or_create(state).unwrap();
    let now = unix_now();
    let cert = realm.issue(CertBody {
        realm: realm.id(),
        node: key.node_id(),
        role,
        name: name.into(),
        not_before: now,
        expires: now + window,
    });
    std::fs::write(state.join("realm.cert"), cert.to_text()).unwrap();
    cert
}

fn status(agent: &Agent) -> serde_json::Value {
    serde_json::from_str(&ok(&agent.ctl(&["status", "--json"]))).unwrap()
}

fn alive(agent: &Agent) -> Vec<String> {
    let v: serde_json::Value = serde_json::from_str(&ok(&agent.ctl(&["peers", "--json"]))).unwrap();
    v.as_array()
        .unwrap()
        .iter()
        .filter(|p| p["state"] == "alive")
        .map(|p| p["name"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn a_member_renews_its_certificate_before_it_expires() {
    let (pa, pb) = (free_udp_port(), free_udp_port());
    let (bus_a, bus_b) = (DbusDaemon::start(), DbusDaemon::start());
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
    seed(&hub.state_dir(), &realm, Role::Hub, "hub", 365 * 86_400);
    hub.start(&bus_a).unwrap();
    let mut edge = Agent::prepare(
        &bus_b,
        AgentOptions {
            config: Some(AgentConfig::loopback(pb).bootstrap_port(pa).to_string()),
            ..Default::default()
        },
    );
    let first = seed(&edge.state_dir(), &realm, Role::Edge, "edge", WINDOW_S);
    edge.start(&bus_b).unwrap();
    wait_until("hub and edge see each other", 20, || {
        alive(&hub) == ["edge"] && alive(&edge) == ["hub"]
    });

    let c = &status(&edge)["certificate"];
    assert_eq!(c["realm"], realm.id().to_string());
    assert_eq!(c["expires"], first.body.expires);
    assert_eq!(c["renew_at"], first.body.not_before + 30);
    let text = ok(&edge.ctl(&["status"]));
    assert!(text.contains("renewed automatically from in"), "{text}");

    // Renewed at 2/3 of the window (30 s), well before the expiry.
    wait_until("the edge's certificate is renewed", WINDOW_S, || {
        status(&edge)["certificate"]["expires"].as_u64() > Some(first.body.expires)
    });
    let renewed_at = unix_now();
    assert!(renewed_at < first.body.expires, "renewed before the expiry");
    let c = &status(&edge)["certificate"];
    assert!(
        c["renewed_at"].as_u64().unwrap() >= first.body.not_before + 30,
        "{c}"
    );
    assert_eq!(c["renew_error"], "");
    let stored = MembershipCert::from_text(
        &std::fs::read_to_string(edge.state_dir().join("realm.cert")).unwrap(),
    )
    .unwrap();
    assert!(
        stored.body.expires > first.body.expires,
        "the renewed certificate is stored"
    );
    assert_eq!(stored.body.expires - stored.body.not_before, WINDOW_S);
    assert!(
        hub.log().contains("renewed a member's certificate"),
        "{}",
        hub.log()
    );

    // Past the first certificate's expiry the edge is still a member on both sides.
    let past = Duration::from_secs(first.body.expires.saturating_sub(unix_now()) + 3);
    std::thread::sleep(past);
    assert_eq!(alive(&hub), ["edge"], "the hub still admits the edge");
    assert_eq!(alive(&edge), ["hub"]);
    // A restart uses the stored (renewed) certificate.
    edge.stop(Duration::from_secs(5));
    edge.start(&bus_b).unwrap();
    wait_until("the restarted edge rejoins", 20, || {
        alive(&hub) == ["edge"] && alive(&edge) == ["hub"]
    });
}
