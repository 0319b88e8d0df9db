//! Hub relay with real `maculad` processes in network namespaces: edge B sits behind a NAT router
//! (nft masquerade, no inbound), edge A cannot reach B directly; A reaches B through the hub:
//! membership shows B alive at A and `maculactl ping` (an RPC over a relayed, end-to-end
//! authenticated QUIC connection) succeeds.
//! Needs root, iproute2 and nftables.

use std::time::{Duration, Instant};

use macula_testkit::check::ok;
use macula_testkit::config::{AgentConfig, Role};
use macula_testkit::netns::Topology;
use macula_testkit::realm::admit_with_ctl;
use macula_testkit::{Agent, AgentOptions, DbusDaemon};

const DEBUG_LOG: &str = "[log]\nlevel = \"debug\"\n";

fn state_of(agent: &Agent, name: &str) -> Option<String> {
    let v: serde_json::Value = serde_json::from_str(&ok(&agent.ctl(&["peers", "--json"]))).ok()?;
    v.as_array()?
        .iter()
        .find(|p| p["name"] == name)
        .map(|p| p["state"].as_str().unwrap_or("").to_string())
}

#[test]
fn natted_edge_is_reached_through_the_hub() {
    let mut topo = Topology::new("mrl");
    let ns_hub = topo.add_ns("hub");
    let ns_a = topo.add_ns("a");
    topo.add_ns("nat");
    let ns_b = topo.add_ns("b");
    topo.link("hub", "10.78.1.1/24", "a", "10.78.1.2/24");
    let (_, nat_wan) = topo.link("hub", "10.78.2.1/24", "nat", "10.78.2.2/24");
    topo.link("nat", "192.168.78.1/24", "b", "192.168.78.2/24");
    topo.exec(
        "b",
        &["ip", "route", "add", "default", "via", "192.168.78.1"],
    );
    topo.exec("nat", &["sysctl", "-qw", "net.ipv4.ip_forward=1"]);
    topo.nft(
        "nat",
        &format!(
            "add table ip mrl_nat\n\
             add chain ip mrl_nat post {{ type nat hook postrouting priority 100; }}\n\
             add rule ip mrl_nat post oifname \"{nat_wan}\" masquerade\n\
             add chain ip mrl_nat filt {{ type filter hook forward priority 0; policy drop; }}\n\
             add rule ip mrl_nat filt ct state established,related accept\n\
             add rule ip mrl_nat filt iifname != \"{nat_wan}\" accept\n"
        ),
    );
    // A has no path to B at all (B's private address is unroutable from A).
    let direct = topo
        .command("a", &["ping", "-c", "1", "-W", "1", "192.168.78.2"])
        .output()
        .unwrap();
    assert!(!direct.status.success(), "A must not reach B directly");

    let (bus_h, bus_a, bus_b) = (
        DbusDaemon::start(),
        DbusDaemon::start(),
        DbusDaemon::start(),
    );
    let hub = Agent::spawn(
        &bus_h,
        AgentOptions {
            config: Some(
                AgentConfig::listen("0.0.0.0:4433")
                    .role(Role::Hub)
                    .section(DEBUG_LOG)
                    .to_string(),
            ),
            netns: Some(ns_hub),
            ..Default::default()
        },
    );
    let a = Agent::spawn(
        &bus_a,
        AgentOptions {
            config: Some(
                AgentConfig::listen("10.78.1.2:4433")
                    .bootstrap("10.78.1.1:4433")
                    .section(DEBUG_LOG)
                    .to_string(),
            ),
            netns: Some(ns_a),
            ..Default::default()
        },
    );
    let b = Agent::spawn(
        &bus_b,
        AgentOptions {
            config: Some(
                AgentConfig::listen("192.168.78.2:4433")
                    .bootstrap("10.78.2.1:4433")
                    .to_string(),
            ),
            netns: Some(ns_b),
            ..Default::default()
        },
    );
    ok(&hub.ctl(&["realm", "create", "--name", "hub"]));
    for (agent, name) in [(&a, "alpha"), (&b, "bravo")] {
        admit_with_ctl(&hub, agent, name);
    }
    let start = Instant::now();
    while !(state_of(&a, "bravo").as_deref() == Some("alive")
        && state_of(&b, "alpha").as_deref() == Some("alive"))
    {
        if start.elapsed() > Duration::from_secs(60) {
            panic!(
                "A never saw B alive: A peers {}\nB peers {}\nA log:\n{}\nhub log:\n{}\nB log:\n{}",
                ok(&a.ctl(&["peers", "--json"])),
                ok(&b.ctl(&["peers", "--json"])),
                a.log(),
                hub.log(),
                b.log()
            );
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    let formed = start.elapsed();
    eprintln!("realm formed after {formed:?}");
    // The real check: an RPC from A to B, which needs a QUIC connection A↔B. The only path is
    // the hub relay; the handshake authenticates B's key end to end.
    let start = Instant::now();
    loop {
        let out = a.ctl(&["ping", "bravo"]);
        if out.status.success() {
            eprintln!(
                "A pinged B through the hub after {:?}: {}",
                start.elapsed(),
                String::from_utf8_lossy(&out.stdout).trim()
            );
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "ping through the hub failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    // And back: B calls A over the same relayed path.
    ok(&b.ctl(&["ping", "alpha"]));
    // The connection between the edges was made through the hub (by whichever side dialled first).
    assert!(
        a.log().contains("reached through the hub relay")
            || b.log().contains("reached through the hub relay"),
        "no relayed connection in the logs:\nA:\n{}\nB:\n{}",
        a.log(),
        b.log()
    );
    // Still no direct path: the NAT router forwards nothing unsolicited into B's network.
    let direct = topo
        .command("a", &["ping", "-c", "1", "-W", "1", "192.168.78.2"])
        .output()
        .unwrap();
    assert!(!direct.status.success());
}
