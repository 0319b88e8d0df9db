//! `io.macula.Overlay1` / `maculactl overlay` and `io.macula.Uplinks1` / `maculactl uplinks`
//! against a real maculad in a namespace; the far side is the macula-net library in another
//! namespace.

use std::time::Duration;

use macula_core::NodeKey;
use macula_net::cmd::Host;
use macula_net::overlay::{Overlay, OverlayConfig, PeerConfig};
use macula_net::uplinks::monitor::open_responder;
use macula_net::uplinks::probe;
use macula_testkit::check::{json, output_text};
use macula_testkit::netns::Topology;
use macula_testkit::{Agent, AgentOptions, DbusDaemon, wait_for};

const REALM_SEED: [u8; 32] = [0xaa; 32];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overlay_and_uplinks_over_dbus() {
    let mut topo = Topology::new("ov");
    let na = topo.add_ns("a");
    let nb = topo.add_ns("b");
    let (a1, b1) = topo.link("a", "198.51.100.1/24", "b", "198.51.100.2/24");
    let (a2, _b2) = topo.link("a", "203.0.113.1/24", "b", "203.0.113.2/24");
    let realm = NodeKey::from_seed(REALM_SEED).node_id();
    let kb = NodeKey::from_seed([2; 32]);
    let tag = std::process::id() % 10_000;
    let (ifa, ifb) = (format!("mcl{tag}da"), format!("mcl{tag}db"));

    let config = format!(
        r#"
[overlay]
enabled = true
interface = "{ifa}"
realm = "{realm}"
[[overlay.peers]]
node_id = "{b}"
endpoint = "198.51.100.2:51820"
uplink_endpoints = {{ path1 = "198.51.100.2:51820", path2 = "203.0.113.2:51820" }}

[uplinks]
enabled = true
[[uplinks.links]]
name = "path1"
interface = "{a1}"
priority = 10
source = "198.51.100.1"
gateway = "198.51.100.2"
probe = "198.51.100.2:51821"
[[uplinks.links]]
name = "path2"
interface = "{a2}"
priority = 20
source = "203.0.113.1"
gateway = "203.0.113.2"
probe = "203.0.113.2:51821"

[metrics]
listen = "127.0.0.1:9470"
"#,
        b = kb.node_id()
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

    // B: the library, peer = A by node ID (no endpoint: learns A by roaming).
    let cfg_b = OverlayConfig {
        enabled: true,
        interface: ifb,
        realm: Some(realm),
        peers: vec![PeerConfig::new(node_a)],
        ..OverlayConfig::default()
    };
    let ob = Overlay::start(Host::netns(&nb), &cfg_b, kb.signing_key())
        .await
        .unwrap();
    let responder = open_responder(&Host::netns(&nb), probe::DEFAULT_PORT).unwrap();
    let responder = tokio::spawn(probe::serve(responder));

    let ov = json(agent.ctl(&["overlay", "--json"]));
    let addr_a = ov["address"].as_str().unwrap().to_string();
    assert_eq!(ov["interface"], ifa.as_str());
    assert_eq!(ov["implementation"], "wireguard-go");
    let kernel = topo
        .command(
            "a",
            &["ip", "link", "add", "mclwgprobe", "type", "wireguard"],
        )
        .status()
        .unwrap()
        .success();
    assert_eq!(ov["kernel_wireguard"], kernel);
    // A's address is computed from A's node ID alone — B's view agrees.
    assert_eq!(ov["peer_list"][0]["address"], ob.address().to_string());
    // A knows B's endpoint and starts; B then answers and reaches A by the roamed endpoint.
    let b_addr = ob.address().to_string();
    for (from, to) in [("a", b_addr.as_str()), ("b", addr_a.as_str())] {
        let ping = topo
            .command(from, &["ping", "-6", "-c", "3", "-i", "0.2", "-W", "2", to])
            .output()
            .unwrap();
        assert!(
            ping.status.success(),
            "ping {from} → {to}: {}",
            output_text(&ping)
        );
    }
    let ov = json(agent.ctl(&["overlay", "--json"]));
    assert!(
        ov["peer_list"][0]["last_handshake_s"].as_u64().unwrap() > 0,
        "{ov}"
    );
    let table = agent.ctl(&["overlay"]);
    assert!(
        output_text(&table).contains(&ob.address().to_string()),
        "{}",
        output_text(&table)
    );

    // Uplinks: both healthy, path1 active; blackhole path 1 → path2 active within 2 s.
    let healthy = wait_for(Duration::from_secs(3), || {
        let j = json(agent.ctl(&["uplinks", "--json"]));
        (j[0]["healthy"] == true && j[1]["healthy"] == true && j[1]["received"].as_u64() > Some(0))
            .then_some(j)
    })
    .expect("uplinks healthy");
    assert_eq!(healthy[0]["active"], true);
    // `/metrics` (on the namespace's own loopback) carries the same uplink and overlay figures.
    let scrape = topo
        .command("a", &["curl", "-sf", "http://127.0.0.1:9470/metrics"])
        .output()
        .unwrap();
    assert!(scrape.status.success(), "{}", output_text(&scrape));
    let metrics = String::from_utf8(scrape.stdout).unwrap();
    for line in [
        "macula_uplinks_active{uplink=\"path1\"} 1",
        "macula_uplinks_active{uplink=\"path2\"} 0",
        "macula_uplinks_healthy{uplink=\"path1\"} 1",
        "macula_uplinks_healthy{uplink=\"path2\"} 1",
    ] {
        assert!(
            metrics.lines().any(|l| l == line),
            "{line} not in\n{metrics}"
        );
    }
    let value = |prefix: &str| -> f64 {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(prefix))
            .unwrap_or_else(|| panic!("{prefix} not in\n{metrics}"))
            .trim()
            .parse()
            .unwrap()
    };
    assert!(value("macula_uplinks_rtt_seconds{uplink=\"path1\"}") > 0.0);
    let peer = format!("{{peer=\"{b_addr}\"}}");
    assert!(value(&format!("macula_overlay_peer_received_bytes_total{peer}")) > 0.0);
    assert!(
        value(&format!(
            "macula_overlay_peer_last_handshake_timestamp_seconds{peer}"
        )) > 0.0
    );
    let conn = zbus::connection::Builder::address(bus.address())
        .unwrap()
        .build()
        .await
        .unwrap();
    let uplinks = macula_bus::uplinks::Uplinks1Proxy::new(&conn)
        .await
        .unwrap();
    assert_eq!(uplinks.active().await.unwrap(), "path1");
    topo.nft(
        "b",
        &format!("table netdev mntbh {{\n chain in {{\n type filter hook ingress device \"{b1}\" priority 0; policy drop;\n counter\n }}\n}}\n"),
    );
    let t = std::time::Instant::now();
    let switched = wait_for(Duration::from_secs(3), || {
        let j = json(agent.ctl(&["uplinks", "--json"]));
        (j[1]["active"] == true).then_some(())
    });
    assert!(switched.is_some(), "no failover");
    assert!(
        t.elapsed() < Duration::from_secs(2),
        "failover took {:?}",
        t.elapsed()
    );
    // The proxy's cache follows `Active` only through change signals.
    let signalled = wait_for(Duration::from_secs(2), || {
        (uplinks.cached_active().ok()?.as_deref() == Some("path2")).then_some(())
    });
    assert!(signalled.is_some(), "no Active change signal");
    let table = agent.ctl(&["uplinks"]);
    assert!(
        output_text(&table).contains("* path2"),
        "{}",
        output_text(&table)
    );
    let route =
        String::from_utf8(topo.exec("a", &["ip", "route", "show", "default"]).stdout).unwrap();
    assert!(route.contains(&a2), "{route}");
    // The WireGuard endpoint moved with it: the overlay works over path 2.
    let ping = topo
        .command(
            "a",
            &[
                "ping",
                "-6",
                "-c",
                "3",
                "-i",
                "0.2",
                "-W",
                "2",
                &ob.address().to_string(),
            ],
        )
        .output()
        .unwrap();
    assert!(
        ping.status.success(),
        "overlay after failover: {}",
        output_text(&ping)
    );

    responder.abort();
    ob.stop().await;
    drop(agent);
}
