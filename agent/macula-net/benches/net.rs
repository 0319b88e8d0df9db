//! Network-plane benchmarks (root; creates and removes its own namespaces). Every figure is
//! printed with a baseline measured in the same run:
//!
//! 1. firewall render + `nft -c` + atomic apply for 1000 overlay peers (goal ≤ 50 ms), against
//!    plain `nft -f` of the same pre-rendered ruleset;
//! 2. failover time after path 1 goes silent (goal ≤ 2 s), against the configured detection time;
//! 3. overlay TCP throughput (iperf3) configured by the agent, against the same wireguard-go
//!    configured by hand with `wg` and `ip`;
//! 4. redundant mode (duplicator, copies on both paths): overlay TCP throughput, ping latency and
//!    underlay bytes, against the same overlay without redundant mode.
//!
//! `cargo bench -p macula-net --bench net -- <name>` runs one part (`firewall`, `failover`,
//! `throughput`, `redundant`).
//!
//! Run: `cargo bench -p macula-net --bench net` (needs nftables, wireguard-go, wireguard-tools,
//! iperf3, iproute2, iputils-ping).

#[path = "../tests/common/mod.rs"]
mod common;

use std::collections::BTreeSet;
use std::net::Ipv6Addr;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::Netns;
use common::scenario::{
    RedundantSide, TwoPaths, failover, overlay_pair, parse_ping, redundant_peer, uplinks_config,
};
use macula_core::NodeKey;
use macula_net::cmd::Host;
use macula_net::firewall::{Firewall, FirewallConfig, GroupConfig, Nft, render, render_replace};

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn firewall_config(peers: u32) -> FirewallConfig {
    let mut cfg = FirewallConfig::default();
    cfg.zones.overlay.interfaces = vec!["mcl0".into()];
    cfg.zones.lan.interfaces = vec!["eth0".into()];
    cfg.zones.wan.interfaces = vec!["wwan0".into()];
    cfg.mgmt.sources = vec!["192.0.2.0/24".into()];
    for g in 0..4u32 {
        let members = (0..peers / 4)
            .map(|i| Ipv6Addr::new(0xfd12, 0x3456, 0x789a, 0, 0, 0, g as u16, i as u16))
            .collect();
        cfg.groups.insert(
            format!("g{g}"),
            GroupConfig {
                members,
                tcp_ports: vec![22, 443],
                udp_ports: vec![],
            },
        );
    }
    cfg
}

/// The firewall part runs on a thread that moved into a fresh network namespace (`unshare`), so
/// `nft` runs directly as in production — no `ip netns exec` in the measurement.
fn bench_firewall() {
    std::thread::spawn(|| {
        // SAFETY: unshare(2) for this thread only; children it spawns inherit the namespace.
        assert_eq!(
            unsafe { libc::unshare(libc::CLONE_NEWNET) },
            0,
            "unshare needs root"
        );
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let cfg = firewall_config(1000);
            let q = BTreeSet::new();
            let nft = Nft::new(Host::local());
            let fw = Firewall::new(Nft::new(Host::local()));
            fw.load(cfg.clone()).await.unwrap();
            let script = render_replace(&cfg, &q).unwrap();
            let (mut base, mut ours, mut full, mut rend) = (vec![], vec![], vec![], vec![]);
            for _ in 0..15 {
                let t = Instant::now();
                let _ = render(&cfg, &q).unwrap();
                rend.push(t.elapsed());
                let t = Instant::now();
                nft.apply(&script).await.unwrap();
                base.push(t.elapsed());
                let t = Instant::now();
                fw.load(cfg.clone()).await.unwrap();
                ours.push(t.elapsed());
                let t = Instant::now();
                fw.apply(cfg.clone()).await.unwrap();
                fw.confirm().await.unwrap();
                full.push(t.elapsed());
            }
            let (b, o, f) = (median(base), median(ours), median(full));
            println!("firewall, 1000 peers in 4 groups (median of 15):");
            println!(
                "  render only                          {:8.3} ms",
                ms(median(rend))
            );
            println!("  baseline: nft -f of the same ruleset {:8.2} ms", ms(b));
            println!(
                "  render + nft -c + apply              {:8.2} ms  ratio {:.2}  goal ≤ 50 ms: {}",
                ms(o),
                o.as_secs_f64() / b.as_secs_f64(),
                if ms(o) <= 50.0 { "met" } else { "MISSED" }
            );
            println!(
                "  D-Bus-style apply (+ backup listing, confirm) {:8.2} ms  ratio {:.2}",
                ms(f),
                f.as_secs_f64() / b.as_secs_f64()
            );
        });
    })
    .join()
    .unwrap();
}

async fn bench_failover() {
    let mut runs = Vec::new();
    for _ in 0..3 {
        let bed = TwoPaths::new();
        runs.push(failover(&bed).await);
    }
    let detect = 1.0; // [uplinks] dead_after_ms default
    println!("failover after path 1 goes silent (3 runs):");
    for r in &runs {
        println!(
            "  decision {:.3} s, overlay traffic on path 2 after {:.3} s  ratio to detection time {:.2}  goal ≤ 2 s: {}",
            r.decision,
            r.recovered,
            r.recovered / detect,
            if r.recovered <= 2.0 { "met" } else { "MISSED" }
        );
    }
}

fn iperf(client: &Netns, server: &Netns, addr: &str) -> f64 {
    let mut srv = Command::new("ip")
        .args([
            "netns",
            "exec",
            &server.name,
            "iperf3",
            "-s",
            "-1",
            "-p",
            "5299",
        ])
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let out = client.exec(&["iperf3", "-c", addr, "-p", "5299", "-t", "5", "-J"]);
    let _ = srv.wait();
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    v["end"]["sum_received"]["bits_per_second"]
        .as_f64()
        .unwrap()
        / 1e9
}

/// The same wireguard-go, configured by hand with `wg` + `ip` (the notes' test bed).
fn hand_configured_pair(bed: &TwoPaths) -> (Vec<std::process::Child>, String) {
    let tag = std::process::id() % 100_000;
    let (ia, ib) = (format!("mwh{tag}a"), format!("mwh{tag}b"));
    let key = |name: &str| -> (String, String) {
        let k = Command::new("wg").arg("genkey").output().unwrap().stdout;
        let k = String::from_utf8(k).unwrap().trim().to_string();
        let mut c = Command::new("wg")
            .arg("pubkey")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write;
        c.stdin.take().unwrap().write_all(k.as_bytes()).unwrap();
        let p = String::from_utf8(c.wait_with_output().unwrap().stdout).unwrap();
        let path = std::env::temp_dir().join(format!("{name}.key"));
        std::fs::write(&path, &k).unwrap();
        (path.display().to_string(), p.trim().to_string())
    };
    let (ka, pa) = key(&ia);
    let (kb, pb) = key(&ib);
    let mut kids = Vec::new();
    for (ns, ifn, k, peer, ep, me, port) in [
        (
            &bed.a,
            &ia,
            &ka,
            &pb,
            "198.51.100.2:51830",
            "fd00:99::1/64",
            "51831",
        ),
        (
            &bed.b,
            &ib,
            &kb,
            &pa,
            "198.51.100.1:51831",
            "fd00:99::2/64",
            "51830",
        ),
    ] {
        kids.push(
            Command::new("ip")
                .args(["netns", "exec", &ns.name, "wireguard-go", "-f", ifn])
                .env("WG_PROCESS_FOREGROUND", "1")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap(),
        );
        let sock = format!("/var/run/wireguard/{ifn}.sock");
        for _ in 0..250 {
            if std::path::Path::new(&sock).exists() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let allowed = if me.ends_with("::1/64") {
            "fd00:99::2/128"
        } else {
            "fd00:99::1/128"
        };
        ns.exec(&[
            "wg",
            "set",
            ifn,
            "listen-port",
            port,
            "private-key",
            k,
            "peer",
            peer,
            "endpoint",
            ep,
            "allowed-ips",
            allowed,
        ]);
        ns.exec(&["ip", "addr", "add", me, "dev", ifn]);
        ns.exec(&["ip", "link", "set", ifn, "mtu", "1420", "up"]);
        let _ = std::fs::remove_file(k);
    }
    std::thread::sleep(Duration::from_secs(2)); // DAD on the hand-made addresses
    (kids, "fd00:99::2".into())
}

async fn bench_throughput() {
    let bed = TwoPaths::new();
    let (oa, ob, _) = overlay_pair(&bed).await;
    let ours_addr = ob.address().to_string();
    let (mut kids, hand_addr) = hand_configured_pair(&bed);
    bed.a
        .exec(&["ping", "-6", "-c", "1", "-W", "2", &hand_addr]);
    bed.a
        .exec(&["ping", "-6", "-c", "1", "-W", "2", &ours_addr]);
    println!("overlay TCP throughput, iperf3 5 s, wireguard-go, MTU 1420 (alternating, 2 rounds):");
    for _ in 0..2 {
        let hand = iperf(&bed.a, &bed.b, &hand_addr);
        let ours = iperf(&bed.a, &bed.b, &ours_addr);
        println!(
            "  baseline (hand, wg set) {hand:.3} Gbit/s   agent-configured {ours:.3} Gbit/s   ratio {:.2}",
            ours / hand
        );
    }
    for k in &mut kids {
        // SIGTERM lets wireguard-go remove its UAPI socket.
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(k.id() as libc::pid_t, libc::SIGTERM) };
        let _ = k.wait();
    }
    oa.stop().await;
    ob.stop().await;
}

/// Ping avg (ms) of 200 overlay pings at 10 ms.
fn ping_avg(client: &Netns, addr: &str) -> f64 {
    let out = client.exec(&["ping", "-6", "-n", "-q", "-i", "0.01", "-c", "200", addr]);
    parse_ping(&out).3
}

fn underlay_tx_mb(bed: &TwoPaths) -> [f64; 2] {
    [&bed.a1, &bed.a2].map(|i| TwoPaths::counter(&bed.a, i, "tx_bytes") as f64 / 1e6)
}

async fn bench_redundant() {
    let (ka, kb) = (NodeKey::from_seed([1; 32]), NodeKey::from_seed([2; 32]));
    let red = TwoPaths::new();
    let b = RedundantSide::start(
        &red.b,
        &kb,
        redundant_peer(&ka, "198.51.100.1", "203.0.113.1"),
        &uplinks_config(&red.b1, &red.b2, false),
    )
    .await;
    let a = RedundantSide::start(
        &red.a,
        &ka,
        redundant_peer(&kb, "198.51.100.2", "203.0.113.2"),
        &uplinks_config(&red.a1, &red.a2, true),
    )
    .await;
    let red_addr = b.overlay.address().to_string();
    let plain = TwoPaths::new();
    let (oa, ob, _) = overlay_pair(&plain).await;
    let plain_addr = ob.address().to_string();
    red.a
        .exec(&["ping", "-6", "-c", "3", "-i", "0.2", "-W", "2", &red_addr]);
    plain
        .a
        .exec(&["ping", "-6", "-c", "3", "-i", "0.2", "-W", "2", &plain_addr]);
    println!(
        "redundant mode (copies on 2 paths, duplicator in the agent) vs the same overlay without it (alternating, 2 rounds):"
    );
    for _ in 0..2 {
        let (p0, r0) = (underlay_tx_mb(&plain), underlay_tx_mb(&red));
        let base = iperf(&plain.a, &plain.b, &plain_addr);
        let ours = iperf(&red.a, &red.b, &red_addr);
        let (p1, r1) = (underlay_tx_mb(&plain), underlay_tx_mb(&red));
        let base_rtt = ping_avg(&plain.a, &plain_addr);
        let ours_rtt = ping_avg(&red.a, &red_addr);
        println!(
            "  TCP: baseline {base:.3} Gbit/s (underlay MB p1/p2 {:.0}/{:.0})   redundant {ours:.3} Gbit/s ({:.0}/{:.0})   ratio {:.2}",
            p1[0] - p0[0],
            p1[1] - p0[1],
            r1[0] - r0[0],
            r1[1] - r0[1],
            ours / base
        );
        println!(
            "  ping avg (200 × 10 ms): baseline {base_rtt:.3} ms   redundant {ours_rtt:.3} ms   ratio {:.2}",
            ours_rtt / base_rtt
        );
    }
    a.overlay.stop().await;
    b.overlay.stop().await;
    oa.stop().await;
    ob.stop().await;
}

fn main() {
    // `cargo bench` passes `--bench`; a further argument picks one part.
    let only = std::env::args().skip(1).find(|a| !a.starts_with("--"));
    let run = |name: &str| only.as_deref().is_none_or(|o| o == name);
    if run("firewall") {
        bench_firewall();
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    if run("failover") {
        rt.block_on(bench_failover());
    }
    if run("throughput") {
        rt.block_on(bench_throughput());
    }
    if run("redundant") {
        rt.block_on(bench_redundant());
    }
}
