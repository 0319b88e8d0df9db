//! The overlay with real `wireguard-go` in real network namespaces.

mod common;

use std::net::SocketAddr;
use std::process::Command;

use common::scenario::test_realm;
use common::{Netns, veth};
use macula_core::NodeKey;
use macula_net::cmd::Host;
use macula_net::overlay::{
    Overlay, OverlayConfig, OverlayKeys, PeerConfig, PeerSpec, overlay_address,
};

/// Unique interface names per test process (the UAPI socket dir is not per netns).
fn ifname(tag: &str) -> String {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!("mcl{}{tag}{n}", std::process::id() % 100_000)
}

fn peer(key: &NodeKey, endpoint: Option<&str>) -> PeerConfig {
    PeerConfig {
        endpoint: endpoint.map(|e| e.parse::<SocketAddr>().unwrap()),
        ..PeerConfig::new(key.node_id())
    }
}

fn cfg(interface: String, peers: Vec<PeerConfig>) -> OverlayConfig {
    OverlayConfig {
        enabled: true,
        interface,
        realm: Some(test_realm()),
        peers,
        ..OverlayConfig::default()
    }
}

fn ping(ns: &Netns, to: std::net::Ipv6Addr) -> bool {
    ns.try_exec(&[
        "ping",
        "-6",
        "-c",
        "2",
        "-i",
        "0.2",
        "-W",
        "2",
        &to.to_string(),
    ])
    .status
    .success()
}

#[test]
fn derived_private_key_matches_wg_pubkey() {
    let key = NodeKey::from_seed([9u8; 32]);
    let keys = OverlayKeys::from_signing_key(key.signing_key());
    let mut child = Command::new("wg")
        .arg("pubkey")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(keys.private_base64().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(
        String::from_utf8(out.stdout).unwrap().trim(),
        keys.public().to_base64()
    );
}

/// Backend detection agrees with the kernel: `ip link add … type wireguard` works iff the
/// `wireguard` generic-netlink family is registered (absent on the build host).
#[test]
fn kernel_wireguard_detection_matches_ip_link() {
    let ns = Netns::new();
    let ip_link = ns
        .try_exec(&["ip", "link", "add", "mclwgprobe", "type", "wireguard"])
        .status
        .success();
    assert_eq!(
        macula_net::overlay::kernel_wireguard(&Host::netns(&ns.name)),
        ip_link
    );
}

#[tokio::test]
async fn ping_across_the_overlay_and_peer_updates() {
    let a = Netns::new();
    let b = Netns::new();
    let (va, vb) = (format!("{}p", a.name), format!("{}q", b.name));
    veth(&a, &va, "198.51.100.1/24", &b, &vb, "198.51.100.2/24");
    let (ka, kb) = (NodeKey::from_seed([1; 32]), NodeKey::from_seed([2; 32]));
    let ca = cfg(ifname("a"), vec![peer(&kb, Some("198.51.100.2:51820"))]);
    let cb = cfg(ifname("b"), vec![peer(&ka, Some("198.51.100.1:51820"))]);
    let oa = Overlay::start(Host::netns(&a.name), &ca, ka.signing_key())
        .await
        .unwrap();
    let ob = Overlay::start(Host::netns(&b.name), &cb, kb.signing_key())
        .await
        .unwrap();

    assert_eq!(
        ob.address(),
        overlay_address(&test_realm(), &ob.public_key())
    );
    assert!(ping(&a, ob.address()), "A reaches B over the overlay");
    assert!(ping(&b, oa.address()), "B reaches A over the overlay");

    // The real `wg` tool sees what we configured: key, /128 allowed IP, MTU.
    let show = Command::new("wg")
        .args(["show", &ca.interface, "dump"])
        .output()
        .unwrap();
    let show = String::from_utf8(show.stdout).unwrap();
    assert!(show.contains(&ob.public_key().to_base64()), "{show}");
    assert!(show.contains(&format!("{}/128", ob.address())), "{show}");
    assert!(
        a.exec(&["ip", "link", "show", &ca.interface])
            .contains("mtu 1420")
    );

    let st = oa.status().await.unwrap();
    assert_eq!(st.peers.len(), 1);
    assert!(st.peers[0].last_handshake.is_some());
    assert!(st.peers[0].rx_bytes > 0);

    // Updating an existing peer (the boringtun trap) keeps the tunnel working.
    oa.set_endpoint(&ob.public_key(), "198.51.100.2:51820".parse().unwrap())
        .await
        .unwrap();
    let spec = PeerSpec {
        keepalive_secs: 25,
        ..oa.peers().await[0].clone()
    };
    oa.set_peers(vec![spec]).await.unwrap();
    assert_eq!(oa.status().await.unwrap().peers[0].persistent_keepalive, 25);
    assert!(ping(&a, ob.address()));

    // The agent is killed hard and restarts: the surviving daemon is adopted and reconfigured.
    let orphan = oa.daemon_pid().unwrap();
    std::mem::forget(oa);
    let oa = Overlay::start(Host::netns(&a.name), &ca, ka.signing_key())
        .await
        .unwrap();
    assert_eq!(oa.daemon_pid(), None, "adopted, not spawned");
    assert!(ping(&a, ob.address()), "overlay works after adoption");
    let kill_orphan = || {
        // SAFETY: kill(2) on the daemon this test started.
        unsafe { libc::kill(orphan as libc::pid_t, libc::SIGTERM) };
    };

    // Removing the peer stops traffic.
    oa.set_peers(vec![]).await.unwrap();
    assert!(oa.status().await.unwrap().peers.is_empty());
    assert!(!ping(&a, ob.address()));
    oa.stop().await;
    kill_orphan();
    ob.stop().await;
}

/// Hub routing: A and C have no underlay path to each other; both reach the hub H, which relays.
#[tokio::test]
async fn hub_relays_between_peers_without_a_direct_path() {
    let a = Netns::new();
    let h = Netns::new();
    let c = Netns::new();
    veth(
        &a,
        &format!("{}p", a.name),
        "198.51.100.1/24",
        &h,
        &format!("{}p", h.name),
        "198.51.100.2/24",
    );
    veth(
        &c,
        &format!("{}q", c.name),
        "203.0.113.1/24",
        &h,
        &format!("{}q", h.name),
        "203.0.113.2/24",
    );
    h.exec(&["sysctl", "-q", "net.ipv6.conf.all.forwarding=1"]);
    let (ka, kh, kc) = (
        NodeKey::from_seed([1; 32]),
        NodeKey::from_seed([3; 32]),
        NodeKey::from_seed([4; 32]),
    );
    let via_hub = |endpoint: &str, relayed: &NodeKey| PeerConfig {
        relay_for: vec![relayed.node_id()],
        keepalive_secs: 25,
        ..peer(&kh, Some(endpoint))
    };
    let ca = cfg(ifname("a"), vec![via_hub("198.51.100.2:51820", &kc)]);
    let cc = cfg(ifname("c"), vec![via_hub("203.0.113.2:51820", &ka)]);
    // The hub knows no endpoints: A and C (behind NAT) connect to it.
    let ch = cfg(ifname("h"), vec![peer(&ka, None), peer(&kc, None)]);
    let oh = Overlay::start(Host::netns(&h.name), &ch, kh.signing_key())
        .await
        .unwrap();
    let oa = Overlay::start(Host::netns(&a.name), &ca, ka.signing_key())
        .await
        .unwrap();
    let oc = Overlay::start(Host::netns(&c.name), &cc, kc.signing_key())
        .await
        .unwrap();
    // Keepalives reach the hub first, so it learns both endpoints.
    assert!(ping(&a, oh.address()));
    assert!(ping(&c, oh.address()));
    assert!(ping(&a, oc.address()), "A reaches C through the hub");
    oa.stop().await;
    oc.stop().await;
    oh.stop().await;
}

/// `implementation = "kernel"` on a kernel without WireGuard: a clear error naming the fix, and
/// no interface left behind. (`auto` falls back to wireguard-go there — every other test here.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kernel_implementation_without_the_module_is_a_clear_error() {
    let ns = Netns::new();
    let host = Host::netns(&ns.name);
    if macula_net::overlay::kernel_wireguard(&host) {
        eprintln!("kernel WireGuard present: covered by tests/qemu, not here");
        return;
    }
    let peer = NodeKey::from_seed([2; 32]);
    let mut c = cfg(ifname("k"), vec![PeerConfig::new(peer.node_id())]);
    c.implementation = macula_net::overlay::Implementation::Kernel;
    let err =
        match Overlay::start(host.clone(), &c, NodeKey::from_seed([1; 32]).signing_key()).await {
            Ok(_) => panic!("kernel WireGuard started without the module"),
            Err(e) => e.to_string(),
        };
    assert!(err.contains("implementation = \"userspace\""), "{err}");
    assert!(
        !ns.try_exec(&["ip", "link", "show", "dev", &c.interface])
            .status
            .success()
    );
    // auto: falls back to wireguard-go.
    c.implementation = macula_net::overlay::Implementation::Auto;
    let ov = Overlay::start(host, &c, NodeKey::from_seed([1; 32]).signing_key())
        .await
        .unwrap();
    assert_eq!(ov.implementation(), "wireguard-go");
    ov.stop().await;
}
