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

/// What one loss run (ping series across a silently failing path) measured.
#[derive(Debug)]
pub struct LossRun {
    pub transmitted: u32,
    pub received: u32,
    /// Duplicate replies ping saw (redundant copies that got through WireGuard).
    pub duplicates: u32,
    /// Overlay round-trip average, ms.
    pub rtt_avg_ms: f64,
    /// Packets B received on path 1 / path 2 during the run.
    pub path_rx: [u64; 2],
    /// Duplicator counters of A per uplink (redundant runs): copies sent.
    pub dup_tx: [u64; 2],
}

impl LossRun {
    pub fn lost(&self) -> u32 {
        self.transmitted - self.received
    }
}

/// `[uplinks]` of one side: path 1 (`if1`, `src1`) and path 2, probing the other side's responder.
pub fn uplinks_config(if1: &str, if2: &str, side_a: bool) -> UplinksConfig {
    let (s1, p1, s2, p2) = if side_a {
        ("198.51.100.1", "198.51.100.2", "203.0.113.1", "203.0.113.2")
    } else {
        ("198.51.100.2", "198.51.100.1", "203.0.113.2", "203.0.113.1")
    };
    let cfg: UplinksConfig = toml::from_str(&format!(
        r#"
        enabled = true
        [[links]]
        name = "path1"
        interface = "{if1}"
        priority = 10
        source = "{s1}"
        gateway = "{p1}"
        probe = "{p1}:51821"
        [[links]]
        name = "path2"
        interface = "{if2}"
        priority = 20
        source = "{s2}"
        gateway = "{p2}"
        probe = "{p2}:51821"
        "#
    ))
    .unwrap();
    cfg.validate().unwrap();
    cfg
}

/// A peer flagged `redundant` whose duplicator listens on `ip1`/`ip2` (path 1 / path 2).
pub fn redundant_peer(key: &NodeKey, ip1: &str, ip2: &str) -> PeerConfig {
    let mut p = PeerConfig::new(key.node_id());
    p.redundant = true;
    p.uplink_endpoints
        .insert("path1".into(), format!("{ip1}:51822").parse().unwrap());
    p.uplink_endpoints
        .insert("path2".into(), format!("{ip2}:51822").parse().unwrap());
    p
}

/// One side of a redundant pair: overlay, uplink monitor and duplicator, all in `ns`.
pub struct RedundantSide {
    pub overlay: Overlay,
    pub duplicator: macula_net::uplinks::redundant::Duplicator,
    pub monitor: Monitor,
    _responder: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl RedundantSide {
    pub async fn start(
        ns: &Netns,
        key: &NodeKey,
        peer: PeerConfig,
        uplinks: &UplinksConfig,
    ) -> Self {
        let host = Host::netns(&ns.name);
        let responder = open_responder(&host, probe::DEFAULT_PORT).unwrap();
        let responder = tokio::spawn(probe::serve(responder));
        let tag = if uplinks.links[0].source.to_string().ends_with(".1") {
            "a"
        } else {
            "b"
        };
        let cfg = OverlayConfig {
            enabled: true,
            interface: overlay_ifname(tag),
            realm: Some(test_realm()),
            peers: vec![peer],
            ..OverlayConfig::default()
        };
        cfg.validate().unwrap();
        let mut duplicator = macula_net::uplinks::redundant::Duplicator::bind(&host, &cfg, uplinks)
            .unwrap()
            .expect("a redundant peer");
        let overlay = Overlay::start(
            host.clone(),
            &duplicator.overlay_config(&cfg),
            key.signing_key(),
        )
        .await
        .unwrap();
        let (tx, _rx) = mpsc::unbounded_channel();
        let monitor = Monitor::spawn(&host, uplinks, tx).unwrap();
        duplicator.start(monitor.status.clone());
        Self {
            overlay,
            duplicator,
            monitor,
            _responder: responder,
        }
    }
}

/// `(transmitted, received, duplicates, rtt avg ms)` from ping's summary.
pub fn parse_ping(out: &str) -> (u32, u32, u32, f64) {
    let summary = out
        .lines()
        .find(|l| l.contains("packets transmitted"))
        .unwrap_or_else(|| panic!("no ping summary: {out}"));
    let num = |after: &str| -> u32 {
        summary
            .split(", ")
            .find(|p| p.contains(after))
            .and_then(|p| {
                p.trim_start_matches('+')
                    .split_whitespace()
                    .next()?
                    .parse()
                    .ok()
            })
            .unwrap_or(0)
    };
    let avg = out
        .lines()
        .find(|l| l.starts_with("rtt"))
        .and_then(|l| l.split(" = ").nth(1)?.split('/').nth(1)?.parse().ok())
        .unwrap_or(f64::NAN);
    (num("transmitted"), num("received"), num("duplicates"), avg)
}

/// `count` overlay pings A→`addr` every 10 ms; path 1 blackholed at B's ingress after 0.5 s.
async fn ping_through_blackhole(bed: &TwoPaths, addr: &str, count: u32) -> (String, [u64; 2]) {
    let rx = |bed: &TwoPaths| {
        [
            TwoPaths::counter(&bed.b, &bed.b1, "rx_packets"),
            TwoPaths::counter(&bed.b, &bed.b2, "rx_packets"),
        ]
    };
    let before = rx(bed);
    let pinger = {
        let name = bed.a.name.clone();
        let addr = addr.to_string();
        let count = count.to_string();
        tokio::task::spawn_blocking(move || {
            std::process::Command::new("ip")
                .args(["netns", "exec", &name, "ping", "-6", "-n", "-q"])
                .args(["-i", "0.01", "-c", &count, "-W", "1", &addr])
                .output()
                .unwrap()
        })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    blackhole(&bed.b, &bed.b1);
    let out = pinger.await.unwrap();
    let after = rx(bed);
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        [after[0] - before[0], after[1] - before[1]],
    )
}

/// Redundant mode on both sides (A flags B, B flags A), then 200 pings at 10 ms while path 1 goes
/// silent.
pub async fn redundant_loss(bed: &TwoPaths, count: u32) -> LossRun {
    let (ka, kb) = (NodeKey::from_seed([1; 32]), NodeKey::from_seed([2; 32]));
    let b = RedundantSide::start(
        &bed.b,
        &kb,
        redundant_peer(&ka, "198.51.100.1", "203.0.113.1"),
        &uplinks_config(&bed.b1, &bed.b2, false),
    )
    .await;
    let a = RedundantSide::start(
        &bed.a,
        &ka,
        redundant_peer(&kb, "198.51.100.2", "203.0.113.2"),
        &uplinks_config(&bed.a1, &bed.a2, true),
    )
    .await;
    let b_addr = b.overlay.address().to_string();
    assert!(
        bed.a
            .try_exec(&["ping", "-6", "-c", "3", "-i", "0.2", "-W", "2", &b_addr])
            .status
            .success(),
        "redundant overlay up before the failure"
    );
    let (out, path_rx) = ping_through_blackhole(bed, &b_addr, count).await;
    let (transmitted, received, duplicates, rtt_avg_ms) = parse_ping(&out);
    let c = a.duplicator.counters();
    let dup_tx = [0, 1].map(|i| c.uplink_tx[i].load(std::sync::atomic::Ordering::Relaxed));
    a.overlay.stop().await;
    b.overlay.stop().await;
    LossRun {
        transmitted,
        received,
        duplicates,
        rtt_avg_ms,
        path_rx,
        dup_tx,
    }
}

/// The same ping series without redundant mode: A fails over by moving B's endpoint (probes +
/// reactor), B roams to A's new source by itself.
pub async fn failover_loss(bed: &TwoPaths, count: u32) -> LossRun {
    let (oa, ob, cfg_a) = overlay_pair(bed).await;
    let responder = open_responder(&Host::netns(&bed.b.name), probe::DEFAULT_PORT).unwrap();
    let responder = tokio::spawn(probe::serve(responder));
    let cfg = uplinks_config(&bed.a1, &bed.a2, true);
    let host_a = Host::netns(&bed.a.name);
    routing::apply_tables(&host_a, &cfg).await.unwrap();
    let (tx, mut rx) = mpsc::unbounded_channel();
    let monitor = Monitor::spawn(&host_a, &cfg, tx).unwrap();
    let oa = Arc::new(oa);
    let mut reactor = Reactor::new(host_a.clone(), cfg.clone())
        .with_overlay(oa.clone(), endpoints_from_config(&cfg_a, &cfg));
    let glue = tokio::spawn(async move {
        while let Some(a) = rx.recv().await {
            reactor.handle(&a).await.unwrap();
        }
    });
    let b_addr = ob.address().to_string();
    assert!(
        bed.a
            .try_exec(&["ping", "-6", "-c", "3", "-i", "0.2", "-W", "2", &b_addr])
            .status
            .success(),
        "overlay up before the failure"
    );
    let (out, path_rx) = ping_through_blackhole(bed, &b_addr, count).await;
    let (transmitted, received, duplicates, rtt_avg_ms) = parse_ping(&out);
    assert_eq!(monitor.status.borrow().active, Some(1), "failed over");
    drop(monitor);
    responder.abort();
    glue.abort();
    let _ = glue.await;
    if let Ok(oa) = Arc::try_unwrap(oa) {
        oa.stop().await;
    }
    ob.stop().await;
    LossRun {
        transmitted,
        received,
        duplicates,
        rtt_avg_ms,
        path_rx,
        dup_tx: [0, 0],
    }
}
