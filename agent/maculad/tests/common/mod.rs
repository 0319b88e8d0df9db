//! A realm of real `maculad` processes with storage on, for the tests that need one: each node on
//! loopback with its own private bus, admitted with `maculactl realm join`.

#![allow(dead_code)] // each test file uses its own subset

use macula_mesh::realm::{CertBody, RealmKey, Role};
use macula_mesh::transport::unix_now;
use macula_testkit::check::{free_udp_port, ok, wait_until};
use macula_testkit::{Agent, AgentOptions, DbusDaemon};

pub struct Node {
    pub name: String,
    pub agent: Agent,
    pub bus: DbusDaemon,
    pub alive: bool,
}

/// Starts `count` nodes with storage on, admits them all to one realm with `realm join`.
pub fn realm(count: usize) -> Vec<Node> {
    realm_with(count, |_| String::new())
}

/// As [`realm`], with `extra(i)` appended to node `i`'s `[storage]` section.
pub fn realm_with(count: usize, extra: impl Fn(usize) -> String) -> Vec<Node> {
    realm_coded(count, (3, 2), extra)
}

/// As [`realm_with`], storing objects as `k + m` shards. `extra` may set `audit_interval_secs`
/// (default 2).
pub fn realm_coded(count: usize, (k, m): (u8, u8), extra: impl Fn(usize) -> String) -> Vec<Node> {
    let realm = RealmKey::generate();
    let mut first_port = None;
    let mut nodes = Vec::new();
    let certs = tempfile::tempdir().unwrap();
    for i in 0..count {
        let bus = DbusDaemon::start();
        let port = free_udp_port();
        let boot = first_port
            .map(|p| format!("bootstrap = [\"127.0.0.1:{p}\"]\n"))
            .unwrap_or_default();
        first_port.get_or_insert(port);
        let name = format!("n{i}");
        let extra = extra(i);
        // A test may set its own audit interval (e.g. to keep corrupted shards on disk).
        let audit = if extra.contains("audit_interval_secs") {
            ""
        } else {
            "audit_interval_secs = 2\n"
        };
        let config = format!(
            "[node]\nname = \"{name}\"\n[mesh]\nlisten = \"127.0.0.1:{port}\"\n{boot}\
             [storage]\nenabled = true\nquota_bytes = 268435456\nk = {k}\nm = {m}\n\
             repair_grace_secs = 3\n{audit}{extra}"
        );
        let agent = Agent::spawn(
            &bus,
            AgentOptions {
                config: Some(config),
                ..Default::default()
            },
        );
        let status: serde_json::Value =
            serde_json::from_str(&ok(&agent.ctl(&["status", "--json"]))).unwrap();
        let id = status["node_id"].as_str().unwrap().parse().unwrap();
        let cert = realm.issue(CertBody {
            realm: realm.id(),
            node: id,
            role: if i == 0 { Role::Hub } else { Role::Edge },
            name: name.clone(),
            not_before: unix_now() - 60,
            expires: unix_now() + 3600,
        });
        let path = certs.path().join(format!("{name}.cert"));
        std::fs::write(&path, cert.to_text()).unwrap();
        ok(&agent.ctl(&["realm", "join", path.to_str().unwrap()]));
        nodes.push(Node {
            name,
            agent,
            bus,
            alive: true,
        });
    }
    wait_until("every node sees every other alive", 60, || {
        nodes.iter().all(|n| alive_peers(n) == count - 1)
    });
    wait_until("storage runs everywhere", 30, || {
        nodes
            .iter()
            .all(|n| status(n)["stats"]["running"] == true && status(n)["stats"]["nodes"] == count)
    });
    nodes
}

pub fn peers(n: &Node) -> Vec<serde_json::Value> {
    let v: serde_json::Value =
        serde_json::from_str(&ok(&n.agent.ctl(&["peers", "--json"]))).unwrap();
    v.as_array().unwrap().clone()
}

pub fn alive_peers(n: &Node) -> usize {
    peers(n).iter().filter(|p| p["state"] == "alive").count()
}

pub fn status(n: &Node) -> serde_json::Value {
    serde_json::from_str(&ok(&n.agent.ctl(&["storage", "status", "--json"]))).unwrap()
}
