//! Redundant mode through the real interfaces: maculad in namespace A with a `redundant = true`
//! peer (config), the far side B is the macula-net library with the same flag. Path 1 is silently
//! dropped (nft ingress) during 200 overlay pings at 10 ms: none lost, none duplicated;
//! `maculactl overlay` / `maculactl uplinks` show the mode and the copies per uplink.

use std::time::Duration;

use macula_core::NodeKey;
use macula_net::cmd::Host;
use macula_net::overlay::{Overlay, OverlayConfig, PeerConfig};
use macula_net::uplinks::UplinksConfig;
use macula_net::uplinks::monitor::{Monitor, open_responder};
use macula_net::uplinks::probe;
use macula_net::uplinks::redundant::Duplicator;
use macula_testkit::check::{json, output_text};
use macula_testkit::netns::Topology;
use macula_testkit::{Agent, AgentOptions, DbusDaemon, wait_for};
use tokio::sync::mpsc;

fn uplinks(if1: &str, if2: &str, local: [&str; 2], remote: [&str; 2]) -> String {
    format!(
        r#"
[uplinks]
enabled = true
[[uplinks.links]]
name = "path1"
interface = "{if1}"
priority = 10
source = "{}"
probe = "{}:51821"
[[uplinks.links]]
name = "path2"
interface = "{if2}"
priority = 20
source = "{}"
probe = "{}:51821"
"#,
        local[0], remote[0], local[1], remote[1]
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redundant_peer_from_config_loses_nothing() {
    let mut topo = Topology::new("rd");
    let na = topo.add_ns("a");
    let nb = topo.add_ns("b");
    let (a1, b1) = topo.link("a", "198.51.100.1/24", "b", "198.51.100.2/24");
    let (a2, b2) = topo.link("a", "203.0.113.1/24", "b", "203.0.113.2/24");
    let realm = NodeKey::from_seed([0xaa; 32]).node_id();
    let kb = NodeKey::from_seed([2; 32]);
    let tag = std::process::id() % 10_000;
    let (ifa, ifb) = (format!("mcl{tag}ra"), format!("mcl{tag}rb"));
    let a_ips = ["198.51.100.1", "203.0.113.1"];
    let b_ips = ["198.51.100.2", "203.0.113.2"];

    let config = format!(
        r#"
[overlay]
enabled = true
interface = "{ifa}"
realm = "{realm}"
[[overlay.peers]]
node_id = "{b}"
redundant = true
uplink_endpoints = {{ path1 = "198.51.100.2:51822", path2 = "203.0.113.2:51822" }}
{up}"#,
        b = kb.node_id(),
        up = uplinks(&a1, &a2, a_ips, b_ips)
    );
    let bus = DbusDaemon::start();
    let agent = Agent::spawn(
        &bus,
        AgentOptions {
            config: Some(config),
            netns: Some(na),
            ..Default::default()
        },
    );
    let status = json(agent.ctl(&["status", "--json"]));
    let node_a: macula_core::NodeId = status["node_id"].as_str().unwrap().parse().unwrap();

    // B: the library with A flagged redundant.
    let host_b = Host::netns(&nb);
    let mut peer_a = PeerConfig::new(node_a);
    peer_a.redundant = true;
    peer_a
        .uplink_endpoints
        .insert("path1".into(), "198.51.100.1:51822".parse().unwrap());
    peer_a
        .uplink_endpoints
        .insert("path2".into(), "203.0.113.1:51822".parse().unwrap());
    let cfg_b = OverlayConfig {
        enabled: true,
        interface: ifb,
        realm: Some(realm),
        peers: vec![peer_a],
        ..OverlayConfig::default()
    };
    #[derive(serde::Deserialize)]
    struct Doc {
        uplinks: UplinksConfig,
    }
    let up_b: Doc = macula_core::config::parse_str(
        &uplinks(&b1, &b2, b_ips, a_ips),
        std::path::Path::new("<b>"),
    )
    .unwrap();
    let up_b = up_b.uplinks;
    let mut dup_b = Duplicator::bind(&host_b, &cfg_b, &up_b).unwrap().unwrap();
    let ob = Overlay::start(
        host_b.clone(),
        &dup_b.overlay_config(&cfg_b),
        kb.signing_key(),
    )
    .await
    .unwrap();
    let responder = tokio::spawn(probe::serve(
        open_responder(&host_b, probe::DEFAULT_PORT).unwrap(),
    ));
    let (tx, _rx) = mpsc::unbounded_channel();
    let monitor_b = Monitor::spawn(&host_b, &up_b, tx).unwrap();
    dup_b.start(monitor_b.status.clone());

    let b_addr = ob.address().to_string();
    let warm = topo
        .command(
            "a",
            &["ping", "-6", "-c", "3", "-i", "0.2", "-W", "2", &b_addr],
        )
        .output()
        .unwrap();
    assert!(warm.status.success(), "overlay up: {}", output_text(&warm));
    let ov = json(agent.ctl(&["overlay", "--json"]));
    assert_eq!(ov["redundant_peers"], 1, "{ov}");
    let p = &ov["peer_list"][0];
    assert_eq!(p["redundant"], true, "{ov}");
    assert!(
        p["endpoint"].as_str().unwrap().starts_with("127.0.0.1:"),
        "the device sends to the duplicator: {ov}"
    );
    assert!(p["redundant_tx_packets"].as_u64().unwrap() >= 3, "{ov}");
    assert!(
        output_text(&agent.ctl(&["overlay"])).contains("redundant"),
        "table shows the mode"
    );
    wait_for(Duration::from_secs(3), || {
        let j = json(agent.ctl(&["uplinks", "--json"]));
        (j[0]["healthy"] == true && j[1]["healthy"] == true).then_some(())
    })
    .expect("uplinks healthy");
    let before = json(agent.ctl(&["uplinks", "--json"]));
    for l in 0..2 {
        assert!(
            before[l]["redundant_tx_packets"].as_u64().unwrap() >= 3,
            "copies on both uplinks: {before}"
        );
    }

    let pinger = {
        let mut cmd = topo.command(
            "a",
            &[
                "ping", "-6", "-n", "-q", "-i", "0.01", "-c", "200", "-W", "1", &b_addr,
            ],
        );
        std::thread::spawn(move || cmd.output().unwrap())
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    topo.drop_ingress("b", &b1);
    let ping = tokio::task::spawn_blocking(move || pinger.join().unwrap())
        .await
        .unwrap();
    let text = output_text(&ping);
    assert!(
        text.contains("200 packets transmitted, 200 received, 0% packet loss"),
        "redundant mode lost packets: {text}"
    );
    assert!(!text.contains("duplicates"), "{text}");
    let after = json(agent.ctl(&["uplinks", "--json"]));
    assert_eq!(after[0]["healthy"], false, "path 1 is silent: {after}");
    let sent = |j: &serde_json::Value, l: usize| j[l]["redundant_tx_packets"].as_u64().unwrap();
    assert!(sent(&after, 1) - sent(&before, 1) >= 200, "{after}");
    assert!(sent(&after, 0) > sent(&before, 0), "{after}");

    drop(monitor_b);
    drop(dup_b);
    responder.abort();
    ob.stop().await;
    drop(agent);
}
