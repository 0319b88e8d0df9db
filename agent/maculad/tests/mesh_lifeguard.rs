//! Lifeguard on real processes: six `maculad`s in one network namespace whose loopback drops
//! 5 % of UDP packets at random (nft `numgen random mod 100 < 5`): no live member is declared
//! down for 30 s, and a killed member is declared down by all five others within 5 s.
//! Needs root, iproute2 and nftables.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use macula_testkit::check::{free_udp_port, wait_until};
use macula_testkit::config::AgentConfig;
use macula_testkit::netns::Topology;
use macula_testkit::realm::Realm;
use macula_testkit::{Agent, AgentOptions, DbusDaemon};

struct Node {
    _bus: DbusDaemon,
    agent: Agent,
    port: u16,
    _cert: PathBuf,
    _dir: tempfile::TempDir,
}

/// Starts a node in namespace `ns` (mesh off: no certificate yet), admits it to `realm` under
/// `name`, restarts it.
fn node(realm: &Realm, ns: &str, name: &str, bootstrap: Option<u16>) -> Node {
    let bus = DbusDaemon::start();
    let dir = tempfile::tempdir().unwrap();
    let cert = dir.path().join("realm.cert");
    let port = free_udp_port();
    let config = AgentConfig::loopback(port)
        .name(name)
        .bootstrap_opt(bootstrap)
        .cert(&cert)
        .to_string();
    let mut agent = Agent::spawn(
        &bus,
        AgentOptions {
            config: Some(config),
            netns: Some(ns.to_string()),
            ..Default::default()
        },
    );
    realm.admit_agent(&agent, name, &cert);
    agent.stop(Duration::from_secs(5));
    agent.start(&bus).unwrap();
    Node {
        _bus: bus,
        agent,
        port,
        _cert: cert,
        _dir: dir,
    }
}

/// (peer name, state) as `maculactl peers` lists them; empty while the daemon does not answer.
fn states(n: &Node) -> Vec<(String, String)> {
    let out = n.agent.ctl(&["peers", "--json"]);
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(&out.stdout) else {
        return Vec::new();
    };
    let mut v: Vec<(String, String)> = v
        .as_array()
        .map(|a| {
            a.iter()
                .map(|p| {
                    (
                        p["name"].as_str().unwrap_or("").to_string(),
                        p["state"].as_str().unwrap_or("").to_string(),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

#[test]
fn six_processes_under_5pct_loss_declare_a_killed_member_down_within_5s_without_false_downs() {
    let mut topo = Topology::new("lg");
    let ns = topo.add_ns("r");
    let realm = Realm::generate();
    let names = ["alpha", "bravo", "charlie", "delta", "echo", "foxtrot"];
    let first = node(&realm, &ns, names[0], None);
    let mut nodes = vec![first];
    for name in &names[1..] {
        let boot = nodes[0].port;
        nodes.push(node(&realm, &ns, name, Some(boot)));
    }
    let others = |i: usize| -> Vec<(String, String)> {
        names
            .iter()
            .enumerate()
            .filter(|&(j, _)| j != i)
            .map(|(_, n)| (n.to_string(), "alive".to_string()))
            .collect()
    };
    wait_until("the six-node realm forms", 60, || {
        (0..nodes.len()).all(|i| states(&nodes[i]) == others(i))
    });

    topo.nft(
        "r",
        "table inet loss {\n chain in {\n  type filter hook input priority 0;\n  \
         meta l4proto udp numgen random mod 100 < 5 drop\n }\n}\n",
    );
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(30) {
        for (i, n) in nodes.iter().enumerate() {
            let downs: Vec<_> = states(n).into_iter().filter(|(_, s)| s == "down").collect();
            assert!(
                downs.is_empty(),
                "{} declared live members down under 5 % loss: {downs:?}",
                names[i]
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }

    let victim = 3;
    nodes[victim].agent.kill();
    let killed = Instant::now();
    let mut seen: Vec<Option<Duration>> = vec![None; nodes.len()];
    seen[victim] = Some(Duration::ZERO);
    while seen.iter().any(Option::is_none) && killed.elapsed() < Duration::from_secs(30) {
        for i in 0..nodes.len() {
            if seen[i].is_none()
                && states(&nodes[i]).contains(&(names[victim].to_string(), "down".to_string()))
            {
                seen[i] = Some(killed.elapsed());
            }
        }
    }
    let all = seen
        .iter()
        .map(|s| s.unwrap_or(Duration::MAX))
        .max()
        .unwrap();
    eprintln!("killed {}: declared down after {seen:?}", names[victim]);
    for (i, n) in nodes.iter().enumerate() {
        if i != victim {
            let downs: Vec<_> = states(n)
                .into_iter()
                .filter(|(p, s)| s == "down" && p != names[victim])
                .collect();
            assert!(downs.is_empty(), "{}: false downs {downs:?}", names[i]);
        }
    }
    assert!(
        all <= Duration::from_secs(5),
        "down everywhere only {all:?} after the kill (polled)"
    );
}
