//! Two real `maculad` processes in their own network namespaces, joined by a veth link:
//! an nft partition (longer than the QUIC idle timeout) drives each to declare the other down;
//! healing re-converges.
//! Needs root, iproute2 and nftables.

use std::time::Duration;

use macula_testkit::check::{ok, wait_until};
use macula_testkit::config::AgentConfig;
use macula_testkit::netns::Topology;
use macula_testkit::realm::admit_with_ctl;
use macula_testkit::{Agent, AgentOptions, DbusDaemon};

fn state_of(agent: &Agent, name: &str) -> Option<String> {
    let v: serde_json::Value = serde_json::from_str(&ok(&agent.ctl(&["peers", "--json"]))).ok()?;
    v.as_array()?
        .iter()
        .find(|p| p["name"] == name)
        .map(|p| p["state"].as_str().unwrap_or("").to_string())
}

#[test]
fn partition_drives_peers_down_and_healing_reconverges() {
    let mut topo = Topology::new("msh");
    let ns_a = topo.add_ns("a");
    let ns_b = topo.add_ns("b");
    let (if_a, if_b) = topo.link("a", "10.77.0.1/24", "b", "10.77.0.2/24");
    let bus_a = DbusDaemon::start();
    let bus_b = DbusDaemon::start();
    let a = Agent::spawn(
        &bus_a,
        AgentOptions {
            config: Some(AgentConfig::listen("10.77.0.1:4433").to_string()),
            netns: Some(ns_a),
            ..Default::default()
        },
    );
    let b = Agent::spawn(
        &bus_b,
        AgentOptions {
            config: Some(
                AgentConfig::listen("10.77.0.2:4433")
                    .bootstrap("10.77.0.1:4433")
                    .to_string(),
            ),
            netns: Some(ns_b),
            ..Default::default()
        },
    );
    ok(&a.ctl(&["realm", "create", "--name", "alpha"]));
    admit_with_ctl(&a, &b, "bravo");
    wait_until("the realm forms across the link", 30, || {
        state_of(&a, "bravo").as_deref() == Some("alive")
            && state_of(&b, "alpha").as_deref() == Some("alive")
    });

    // Partition: both directions go dark.
    topo.drop_ingress("a", &if_a);
    topo.drop_ingress("b", &if_b);
    let down = wait_until("each side declares the other down", 60, || {
        state_of(&a, "bravo").as_deref() == Some("down")
            && state_of(&b, "alpha").as_deref() == Some("down")
    });
    eprintln!("partition detected on both sides after {down:?}");
    // Stay partitioned past the QUIC idle timeout (15 s): the connections die too.
    std::thread::sleep(Duration::from_secs(20).saturating_sub(down));

    // Heal: membership merges again (partition healing announces to down members).
    topo.restore_ingress("a", &if_a);
    topo.restore_ingress("b", &if_b);
    let healed = wait_until("the partition heals", 90, || {
        state_of(&a, "bravo").as_deref() == Some("alive")
            && state_of(&b, "alpha").as_deref() == Some("alive")
    });
    eprintln!("re-converged {healed:?} after healing");
}
