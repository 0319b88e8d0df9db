//! Shared scenarios for tests and the benchmark: two namespaces joined by two veth paths, an
//! overlay across them, and the silent-path failover run.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use macula_core::NodeKey;
use macula_net::cmd::Host;
use macula_net::overlay::{Overlay, OverlayConfig, PeerConfig};
use macula_net::uplinks::monitor::{Monitor, Snapshot, open_responder};
use macula_net::uplinks::react::{Reactor, endpoints_from_config};
use macula_net::uplinks::tracker::Action;
use macula_net::uplinks::{UplinksConfig, probe, routing};
use tokio::sync::mpsc;

use super::{Netns, blackhole, veth};

pub fn now_unix() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

/// A and B joined by path 1 (198.51.100.0/24: `a1`–`b1`) and path 2 (203.0.113.0/24: `a2`–`b2`).
pub struct TwoPaths {
    pub a: Netns,
    pub b: Netns,
    pub a1: String,
    pub b1: String,
    pub a2: String,
    pub b2: String,
}

impl TwoPaths {
    pub fn new() -> Self {
        let a = Netns::new();
        let b = Netns::new();
        let (a1, b1) = (format!("{}a", a.name), format!("{}b", b.name));
        let (a2, b2) = (format!("{}c", a.name), format!("{}d", b.name));
        veth(&a, &a1, "198.51.100.1/24", &b, &b1, "198.51.100.2/24");
        veth(&a, &a2, "203.0.113.1/24", &b, &b2, "203.0.113.2/24");
        Self {
            a,
            b,
            a1,
            b1,
            a2,
            b2,
        }
    }

    pub fn counter(ns: &Netns, ifname: &str, what: &str) -> u64 {
        ns.exec(&["cat", &format!("/sys/class/net/{ifname}/statistics/{what}")])
            .trim()
            .parse()
            .unwrap()
    }
}

/// A unique overlay interface name (the UAPI socket dir is shared by all namespaces).
pub fn overlay_ifname(tag: &str) -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    format!("mcl{}{tag}{n}", std::process::id() % 100_000)
}

/// The realm of all test overlays (realm key seed 0xaa…).
pub fn test_realm() -> macula_core::NodeId {
    NodeKey::from_seed([0xaa; 32]).node_id()
}

pub fn overlay_config(interface: String, peer: &NodeKey, endpoint: Option<&str>) -> OverlayConfig {
    OverlayConfig {
        enabled: true,
        interface,
        realm: Some(test_realm()),
        peers: vec![PeerConfig {
            endpoint: endpoint.map(|e| e.parse().unwrap()),
            ..PeerConfig::new(peer.node_id())
        }],
        ..OverlayConfig::default()
    }
}

/// A's overlay config: peer B at path 1, and B's per-uplink endpoints for failover.
pub fn overlay_config_a(peer: &NodeKey) -> OverlayConfig {
    let mut cfg = overlay_config(overlay_ifname("a"), peer, Some("198.51.100.2:51820"));
    let p = &mut cfg.peers[0];
    p.uplink_endpoints
        .insert("path1".into(), "198.51.100.2:51820".parse().unwrap());
    p.uplink_endpoints
        .insert("path2".into(), "203.0.113.2:51820".parse().unwrap());
    cfg
}

/// Overlay A↔B over path 1 (B learns A's endpoint by roaming).
pub async fn overlay_pair(bed: &TwoPaths) -> (Overlay, Overlay, OverlayConfig) {
    let (ka, kb) = (NodeKey::from_seed([1; 32]), NodeKey::from_seed([2; 32]));
    let ob = Overlay::start(
        Host::netns(&bed.b.name),
        &overlay_config(overlay_ifname("b"), &ka, None),
        kb.signing_key(),
    )
    .await
    .unwrap();
    let cfg_a = overlay_config_a(&kb);
    let oa = Overlay::start(Host::netns(&bed.a.name), &cfg_a, ka.signing_key())
        .await
        .unwrap();
    (oa, ob, cfg_a)
}

/// What one failover run measured.
#[derive(Debug)]
pub struct FailoverRun {
    /// Seconds from the blackhole to the tracker's decision.
    pub decision: f64,
    /// Seconds from the blackhole to the first overlay ping reply after the switch.
    pub recovered: f64,
    /// Packets B received on path 2 during the run.
    pub path2_rx: u64,
    /// `ip route show default` in A afterwards.
    pub default_route: String,
    pub snapshot: Snapshot,
}

/// Overlay + probes + reactor on A; continuous overlay ping A→B; path 1 blackholed at B's
/// ingress after 1 s. Panics if no failover happens within 5 s.
pub async fn failover(bed: &TwoPaths) -> FailoverRun {
    let (oa, ob, cfg_a) = overlay_pair(bed).await;
    let responder = open_responder(&Host::netns(&bed.b.name), probe::DEFAULT_PORT).unwrap();
    let responder = tokio::spawn(probe::serve(responder));
    let cfg: UplinksConfig = toml::from_str(&format!(
        r#"
        enabled = true
        [[links]]
        name = "path1"
        interface = "{}"
        priority = 10
        source = "198.51.100.1"
        gateway = "198.51.100.2"
        probe = "198.51.100.2:51821"
        [[links]]
        name = "path2"
        interface = "{}"
        priority = 20
        source = "203.0.113.1"
        gateway = "203.0.113.2"
        probe = "203.0.113.2:51821"
        "#,
        bed.a1, bed.a2
    ))
    .unwrap();
    cfg.validate().unwrap();
    let host_a = Host::netns(&bed.a.name);
    routing::apply_tables(&host_a, &cfg).await.unwrap();
    let (tx, mut rx) = mpsc::unbounded_channel();
    let monitor = Monitor::spawn(&host_a, &cfg, tx).unwrap();
    let oa = Arc::new(oa);
    let mut reactor = Reactor::new(host_a.clone(), cfg.clone())
        .with_overlay(oa.clone(), endpoints_from_config(&cfg_a, &cfg));
    let (switched_tx, mut switched) = mpsc::unbounded_channel();
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
    let b_addr = ob.address().to_string();
    assert!(
        bed.a
            .try_exec(&["ping", "-6", "-c", "3", "-i", "0.2", "-W", "2", &b_addr])
            .status
            .success(),
        "overlay up before the failure"
    );
    tokio::time::sleep(Duration::from_millis(600)).await;

    let pinger = {
        let name = bed.a.name.clone();
        let addr = b_addr.clone();
        tokio::task::spawn_blocking(move || {
            std::process::Command::new("ip")
                .args(["netns", "exec", &name, "ping", "-6", "-D", "-n"])
                .args(["-i", "0.05", "-c", "100", "-W", "1", &addr])
                .output()
                .unwrap()
        })
    };
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let rx_before = TwoPaths::counter(&bed.b, &bed.b2, "rx_packets");
    blackhole(&bed.b, &bed.b1);
    let t_drop = now_unix();
    let (link, t_switch) = tokio::time::timeout(Duration::from_secs(5), switched.recv())
        .await
        .expect("no failover within 5 s")
        .unwrap();
    assert_eq!(link, 1);
    let out = pinger.await.unwrap();
    let first_after = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.contains("bytes from"))
        .filter_map(|l| l.strip_prefix('[')?.split(']').next()?.parse::<f64>().ok())
        .find(|&t| t > t_switch)
        .expect("overlay traffic after the failover");
    let run = FailoverRun {
        decision: t_switch - t_drop,
        recovered: first_after - t_drop,
        path2_rx: TwoPaths::counter(&bed.b, &bed.b2, "rx_packets") - rx_before,
        default_route: bed.a.exec(&["ip", "route", "show", "default"]),
        snapshot: monitor.status.borrow().clone(),
    };
    drop(monitor);
    responder.abort();
    glue.abort();
    let _ = glue.await;
    if let Ok(oa) = Arc::try_unwrap(oa) {
        oa.stop().await;
    }
    ob.stop().await;
    run
}
