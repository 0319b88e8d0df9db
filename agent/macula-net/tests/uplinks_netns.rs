//! Uplink failover with real sockets, real wireguard-go and a real nft blackhole on path 1.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::{Netns, veth};
use macula_core::NodeKey;
use macula_net::cmd::Host;
use macula_net::overlay::{Overlay, OverlayConfig, PeerConfig};
use macula_net::uplinks::monitor::{Monitor, open_responder};
use macula_net::uplinks::react::Reactor;
use macula_net::uplinks::tracker::Action;
use macula_net::uplinks::{UplinksConfig, probe, routing};
use tokio::sync::mpsc;

fn now_unix() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

/// Reply timestamps from `ping -D` output.
fn reply_times(out: &str) -> Vec<f64> {
    out.lines()
        .filter(|l| l.contains("bytes from"))
        .filter_map(|l| l.strip_prefix('[')?.split(']').next()?.parse().ok())
        .collect()
}

fn rx_packets(ns: &Netns, ifname: &str) -> u64 {
    ns.exec(&[
        "cat",
        &format!("/sys/class/net/{ifname}/statistics/rx_packets"),
    ])
    .trim()
    .parse()
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_path_fails_over_to_path_2_within_2_s() {
    let a = Netns::new();
    let b = Netns::new();
    let (a1, b1) = (format!("{}a", a.name), format!("{}b", b.name));
    let (a2, b2) = (format!("{}c", a.name), format!("{}d", b.name));
    veth(&a, &a1, "198.51.100.1/24", &b, &b1, "198.51.100.2/24");
    veth(&a, &a2, "203.0.113.1/24", &b, &b2, "203.0.113.2/24");

    let (ka, kb) = (NodeKey::from_seed([1; 32]), NodeKey::from_seed([2; 32]));
    let tag = std::process::id() % 100_000;
    let ov = |ifn: String, peer: &NodeKey, ep: Option<&str>| OverlayConfig {
        enabled: true,
        interface: ifn,
        realm: "macula-test".into(),
        peers: vec![PeerConfig {
            node_id: peer.node_id(),
            endpoint: ep.map(|e| e.parse().unwrap()),
            keepalive_secs: 0,
            relay_for: vec![],
        }],
        ..OverlayConfig::default()
    };
    let ob = Overlay::start(
        Host::netns(&b.name),
        &ov(format!("mcl{tag}fb"), &ka, None),
        kb.signing_key(),
    )
    .await
    .unwrap();
    let oa = Overlay::start(
        Host::netns(&a.name),
        &ov(format!("mcl{tag}fa"), &kb, Some("198.51.100.2:51820")),
        ka.signing_key(),
    )
    .await
    .unwrap();

    // B answers probes; A probes both paths.
    let responder = open_responder(&Host::netns(&b.name), probe::DEFAULT_PORT).unwrap();
    let responder = tokio::spawn(probe::serve(responder));
    let cfg: UplinksConfig = toml::from_str(&format!(
        r#"
        enabled = true
        [[links]]
        name = "path1"
        interface = "{a1}"
        priority = 10
        source = "198.51.100.1"
        gateway = "198.51.100.2"
        probe = "198.51.100.2:51821"
        [[links]]
        name = "path2"
        interface = "{a2}"
        priority = 20
        source = "203.0.113.1"
        gateway = "203.0.113.2"
        probe = "203.0.113.2:51821"
        "#
    ))
    .unwrap();
    cfg.validate().unwrap();
    let host_a = Host::netns(&a.name);
    routing::apply_tables(&host_a, &cfg).await.unwrap();
    let endpoints: [SocketAddr; 2] = [
        "198.51.100.2:51820".parse().unwrap(),
        "203.0.113.2:51820".parse().unwrap(),
    ];

    // What maculad runs: route + WireGuard endpoint follow the active uplink.
    let (tx, mut rx) = mpsc::unbounded_channel();
    let monitor = Monitor::spawn(&host_a, &cfg, tx).unwrap();
    let peer_b = ob.public_key();
    let (switched_tx, mut switched) = mpsc::unbounded_channel();
    let oa = Arc::new(oa);
    let mut reactor = Reactor::new(host_a.clone(), cfg.clone()).with_overlay(
        oa.clone(),
        endpoints.iter().map(|ep| vec![(peer_b, *ep)]).collect(),
    );
    let glue = tokio::spawn(async move {
        while let Some(a) = rx.recv().await {
            reactor.handle(&a).await.unwrap();
            if let Action::Activate { to: Some(i), .. } = a {
                let _ = switched_tx.send((i, now_unix()));
            }
        }
    });
    assert_eq!(
        switched.recv().await.unwrap().0,
        0,
        "path 1 active at start"
    );

    // Steady state: both paths answer probes, overlay works.
    let b_addr = ob.address().to_string();
    assert!(
        a.try_exec(&["ping", "-6", "-c", "3", "-i", "0.2", "-W", "2", &b_addr])
            .status
            .success()
    );
    tokio::time::sleep(Duration::from_millis(600)).await;
    let snap = monitor.status.borrow().clone();
    assert_eq!(snap.active, Some(0));
    assert!(
        snap.links.iter().all(|l| l.healthy && l.received > 0),
        "{snap:?}"
    );

    // Continuous overlay ping for 5 s; path 1 is silently dropped at t ≈ 1 s.
    let pinger = {
        let name = a.name.clone();
        let addr = b_addr.clone();
        tokio::task::spawn_blocking(move || {
            std::process::Command::new("ip")
                .args([
                    "netns", "exec", &name, "ping", "-6", "-D", "-n", "-i", "0.05", "-c", "100",
                    "-W", "1",
                ])
                .arg(&addr)
                .output()
                .unwrap()
        })
    };
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let rx2_before = rx_packets(&b, &b2);
    common::blackhole(&b, &b1);
    let t_drop = now_unix();

    let (link, t_switch) = tokio::time::timeout(Duration::from_secs(5), switched.recv())
        .await
        .expect("no failover within 5 s")
        .unwrap();
    assert_eq!(link, 1);
    let ping_out = pinger.await.unwrap();
    let times = reply_times(&String::from_utf8_lossy(&ping_out.stdout));
    let first_after = times
        .iter()
        .copied()
        .find(|&t| t > t_switch)
        .expect("overlay traffic after the failover");
    let decision = t_switch - t_drop;
    let recovered = first_after - t_drop;
    eprintln!("failover decision {decision:.3} s, traffic on path 2 after {recovered:.3} s");
    assert!(recovered < 2.0, "traffic on path 2 after {recovered:.3} s");
    assert!(
        rx_packets(&b, &b2) > rx2_before + 20,
        "path 2 carried the traffic"
    );
    assert!(a.exec(&["ip", "route", "show", "default"]).contains(&a2));
    let snap = monitor.status.borrow().clone();
    assert_eq!(snap.active, Some(1));
    assert!(!snap.links[0].healthy);

    drop(monitor);
    responder.abort();
    glue.abort();
    let _ = glue.await;
    if let Ok(oa) = Arc::try_unwrap(oa) {
        oa.stop().await;
    }
    ob.stop().await;
}
