//! LAN discovery: three real `maculad` in network namespaces, no bootstrap lists. A and B share a
//! LAN link and list it in `[mesh] lan_beacon`: they find each other through the signed multicast
//! beacon. C sits on A's other link, which A does not list (its "WAN" side): A never hears C's
//! beacons, so C stays alone although it beacons too.
//! Needs root and iproute2.

use std::time::Duration;

use macula_testkit::check::{ok, wait_until};
use macula_testkit::config::AgentConfig;
use macula_testkit::netns::Topology;
use macula_testkit::realm::admit_with_ctl;
use macula_testkit::{Agent, AgentOptions, DbusDaemon};

fn names(agent: &Agent) -> Vec<String> {
    let v: serde_json::Value = serde_json::from_str(&ok(&agent.ctl(&["peers", "--json"]))).unwrap();
    let mut n: Vec<String> = v
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["state"] == "alive")
        .map(|p| p["name"].as_str().unwrap().to_string())
        .collect();
    n.sort();
    n
}

#[test]
fn lan_beacon_finds_lan_peers_and_stays_off_unlisted_interfaces() {
    let mut topo = Topology::new("mbc");
    let ns_a = topo.add_ns("a");
    let ns_b = topo.add_ns("b");
    let ns_c = topo.add_ns("c");
    let (lan_a, lan_b) = topo.link("a", "10.78.0.1/24", "b", "10.78.0.2/24");
    let (wan_a, wan_c) = topo.link("a", "10.79.0.1/24", "c", "10.79.0.2/24");
    let config = |listen: &str, iface: &str| {
        Some(
            AgentConfig::listen(listen)
                .mesh(&format!(
                    "lan_beacon = [\"{iface}\"]\nbeacon_interval_s = 1\n"
                ))
                .to_string(),
        )
    };
    let (bus_a, bus_b, bus_c) = (
        DbusDaemon::start(),
        DbusDaemon::start(),
        DbusDaemon::start(),
    );
    let a = Agent::spawn(
        &bus_a,
        AgentOptions {
            config: config("0.0.0.0:4433", &lan_a),
            netns: Some(ns_a),
            ..Default::default()
        },
    );
    let b = Agent::spawn(
        &bus_b,
        AgentOptions {
            config: config("10.78.0.2:4433", &lan_b),
            netns: Some(ns_b),
            ..Default::default()
        },
    );
    let c = Agent::spawn(
        &bus_c,
        AgentOptions {
            config: config("10.79.0.2:4433", &wan_c),
            netns: Some(ns_c),
            ..Default::default()
        },
    );
    ok(&a.ctl(&["realm", "create", "--name", "alpha"]));
    admit_with_ctl(&a, &b, "bravo");
    admit_with_ctl(&a, &c, "charlie");

    wait_until("A and B find each other by beacon", 30, || {
        names(&a) == ["bravo"] && names(&b) == ["alpha"]
    });
    assert!(a.log().contains("LAN beacon on"), "{}", a.log());
    // A listens on 0.0.0.0 with two interfaces: it announces each address with its interface.
    let peers: serde_json::Value = serde_json::from_str(&ok(&b.ctl(&["peers", "--json"]))).unwrap();
    let mut got: Vec<(String, String)> = peers[0]["addrs"]
        .as_array()
        .unwrap()
        .iter()
        .zip(peers[0]["uplinks"].as_array().unwrap())
        .map(|(a, u)| (a.as_str().unwrap().into(), u.as_str().unwrap().into()))
        .collect();
    got.sort();
    assert_eq!(
        got,
        [
            ("10.78.0.1:4433".to_string(), lan_a.clone()),
            ("10.79.0.1:4433".to_string(), wan_a.clone())
        ]
    );
    // C has beaconed on its link for as long; A's socket is bound to its LAN interface only.
    std::thread::sleep(Duration::from_secs(4));
    assert_eq!(names(&a), ["bravo"], "A heard a beacon on {wan_a}");
    assert!(names(&c).is_empty(), "C found someone: {:?}", names(&c));
}
