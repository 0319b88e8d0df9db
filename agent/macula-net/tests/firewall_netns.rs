//! The firewall against real nft in real network namespaces (needs root or `unshare -rn`).

mod common;

use std::collections::BTreeSet;
use std::net::Ipv6Addr;
use std::path::Path;
use std::time::Duration;

use common::{Netns, veth};
use macula_net::cmd::Host;
use macula_net::firewall::{
    Firewall, FirewallConfig, FirewallError, Holder, Nft, NftError, render_replace,
};

fn cfg(text: &str) -> FirewallConfig {
    toml::from_str(text).unwrap()
}

fn fw(ns: &Netns) -> Firewall {
    Firewall::new(Nft::new(Host::netns(&ns.name)))
}

const FOREIGN: &str = "table ip foreign {\n\tchain c {\n\t\ttype filter hook input priority 5; policy accept;\n\t\ttcp dport 7 counter packets 0 bytes 0 accept\n\t}\n}\n";

#[tokio::test]
async fn golden_rulesets_pass_nft_check_and_apply() {
    let ns = Netns::new();
    let nft = Nft::new(Host::netns(&ns.name));
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden");
    for name in ["empty", "gateway"] {
        let c = cfg(&std::fs::read_to_string(dir.join(format!("{name}.toml"))).unwrap());
        let script = render_replace(&c, &BTreeSet::new()).unwrap();
        let before = ns.ruleset();
        nft.check(&script).await.unwrap();
        assert_eq!(ns.ruleset(), before, "-c applied nothing");
        nft.apply(&script).await.unwrap();
        assert!(nft.list_table().await.unwrap().is_some());
    }
}

#[tokio::test]
async fn foreign_table_survives_apply_and_rollback() {
    let ns = Netns::new();
    let nft = Nft::new(Host::netns(&ns.name));
    nft.apply(FOREIGN).await.unwrap();
    let before = ns.exec(&["nft", "list", "table", "ip", "foreign"]);
    let f = fw(&ns);
    f.load(cfg("[zones.lan]\ninterfaces = [\"lo2\"]\n"))
        .await
        .unwrap();
    f.apply(cfg(
        "confirm_timeout_secs = 1\n[zones.wan]\ninterfaces = [\"eth7\"]\n",
    ))
    .await
    .unwrap();
    assert_eq!(ns.exec(&["nft", "list", "table", "ip", "foreign"]), before);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(ns.exec(&["nft", "list", "table", "ip", "foreign"]), before);
    assert!(f.status().await.last_rollback.is_some());
}

#[tokio::test]
async fn rejected_config_leaves_the_ruleset_byte_identical() {
    let ns = Netns::new();
    let nft = Nft::new(Host::netns(&ns.name));
    nft.apply(FOREIGN).await.unwrap();
    let f = fw(&ns);
    f.load(cfg("[mgmt]\nsources = [\"192.0.2.0/24\"]\n"))
        .await
        .unwrap();
    let before = ns.ruleset();

    // Passes our validation, but nft refuses overlapping intervals: caught by `nft -c`.
    let bad = cfg("[mgmt]\nsources = [\"192.0.2.0/24\", \"192.0.2.0/25\"]\n");
    let err = f.apply(bad).await.unwrap_err();
    assert!(
        matches!(err, FirewallError::Nft(NftError::Rejected(_))),
        "{err}"
    );
    assert_eq!(ns.ruleset(), before);

    // Caught by validation.
    let err = f
        .apply(cfg(
            "[zones.lan]\ninterfaces = [\"x\\\"; flush ruleset; \"]\n",
        ))
        .await
        .unwrap_err();
    assert!(matches!(err, FirewallError::Invalid(_)), "{err}");
    assert_eq!(ns.ruleset(), before);

    // A script that fails in the kernel after `delete table` (past `nft -c`): the whole
    // transaction is rolled back by nft itself.
    let script = "table inet macula {}\ndelete table inet macula\ntable inet macula {\n\tchain input {\n\t\tjump no_such_chain\n\t}\n}\n";
    assert!(nft.apply(script).await.is_err());
    assert_eq!(ns.ruleset(), before);
    assert_eq!(f.status().await.pending, None);
}

#[tokio::test]
async fn unconfirmed_apply_rolls_back_and_confirmed_apply_stays() {
    let ns = Netns::new();
    let f = fw(&ns);
    f.load(cfg("[zones.lan]\ninterfaces = [\"eth0\"]\n"))
        .await
        .unwrap();
    let confirmed = ns.ruleset();

    let out = f
        .apply(cfg(
            "confirm_timeout_secs = 1\n[zones.lan]\ninterfaces = [\"eth5\"]\n",
        ))
        .await
        .unwrap();
    assert_eq!(out.generation, 1);
    let applied = ns.ruleset();
    assert_ne!(applied, confirmed);
    assert_eq!(f.status().await.pending, Some(1));
    let mut changes = f.subscribe();
    changes.mark_unchanged();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(changes.has_changed().unwrap(), "the rollback is announced");
    assert_eq!(
        ns.ruleset(),
        confirmed,
        "rolled back to the confirmed ruleset"
    );
    let st = f.status().await;
    assert_eq!(st.pending, None);
    assert!(st.last_rollback.unwrap().starts_with("rolled back"));
    assert_eq!(f.config().await.zones.lan.interfaces, ["eth0"]);
    assert!(matches!(
        f.confirm().await,
        Err(FirewallError::NothingToConfirm(_))
    ));

    f.apply(cfg(
        "confirm_timeout_secs = 1\n[zones.lan]\ninterfaces = [\"eth6\"]\n",
    ))
    .await
    .unwrap();
    assert_eq!(f.confirm().await.unwrap(), 2);
    let kept = ns.ruleset();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(ns.ruleset(), kept);
    assert!(kept.contains("\"eth6\""));
}

#[tokio::test]
async fn rollback_to_no_table_removes_ours_only() {
    let ns = Netns::new();
    let nft = Nft::new(Host::netns(&ns.name));
    nft.apply(FOREIGN).await.unwrap();
    let before = ns.ruleset();
    let f = fw(&ns);
    f.apply(cfg("confirm_timeout_secs = 1\n")).await.unwrap();
    assert!(ns.ruleset().contains("table inet macula"));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(ns.ruleset(), before);
}

/// The elements of the live `quarantine` set.
fn quarantine_set(ns: &Netns) -> BTreeSet<Ipv6Addr> {
    let text = ns.exec(&["nft", "list", "set", "inet", "macula", "quarantine"]);
    text.split_once("elements = {")
        .map(|(_, e)| e.split('}').next().unwrap_or(""))
        .unwrap_or("")
        .split(',')
        .map(str::trim)
        .filter(|a| !a.is_empty())
        .map(|a| a.parse().unwrap())
        .collect()
}

/// An admin's quarantine and the realm's share the one set: a release by one holder keeps what
/// the other still holds, across a full replace and a rollback too.
#[tokio::test]
async fn admin_and_realm_quarantines_share_the_set_without_undoing_each_other() {
    let ns = Netns::new();
    let f = fw(&ns);
    let base = "[zones.overlay]\ninterfaces = [\"mcl0\"]\n";
    f.load(cfg(base)).await.unwrap();
    let (x, y): (Ipv6Addr, Ipv6Addr) = ("fd00::1".parse().unwrap(), "fd00::2".parse().unwrap());
    f.quarantine(Holder::Admin, true, &[x]).await.unwrap();
    f.quarantine(Holder::Realm, true, &[x, y]).await.unwrap();
    assert_eq!(quarantine_set(&ns), BTreeSet::from([x, y]));
    // The realm releases both nodes: the admin's address stays.
    f.quarantine(Holder::Realm, false, &[x, y]).await.unwrap();
    assert_eq!(quarantine_set(&ns), BTreeSet::from([x]));
    assert_eq!(f.status().await.quarantined, 1);
    // The realm takes y again; the admin cannot release the realm's hold on it.
    f.quarantine(Holder::Realm, true, &[y]).await.unwrap();
    f.quarantine(Holder::Admin, false, &[y]).await.unwrap();
    assert_eq!(quarantine_set(&ns), BTreeSet::from([x, y]));
    // Both holds survive a full replace and an unconfirmed apply's rollback.
    f.load(cfg(base)).await.unwrap();
    assert_eq!(quarantine_set(&ns), BTreeSet::from([x, y]));
    f.apply(cfg(&format!("confirm_timeout_secs = 1\n{base}")))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(f.status().await.last_rollback.is_some());
    assert_eq!(quarantine_set(&ns), BTreeSet::from([x, y]));
    f.quarantine(Holder::Admin, false, &[x]).await.unwrap();
    f.quarantine(Holder::Realm, false, &[y]).await.unwrap();
    assert!(quarantine_set(&ns).is_empty());
}

/// Traffic: default drop, zone ping rule, peer-group set elements, quarantine of an established flow.
#[tokio::test]
async fn zones_groups_and_quarantine_filter_real_traffic() {
    let a = Netns::new();
    let b = Netns::new();
    let (ia, ib) = (format!("{}x", a.name), format!("{}y", b.name));
    veth(
        &a,
        &ia,
        "fd12:3456:789a::1/64",
        &b,
        &ib,
        "fd12:3456:789a::2/64",
    );
    let peer: Ipv6Addr = "fd12:3456:789a::2".parse().unwrap();
    let ping = || {
        b.try_exec(&["ping", "-6", "-c", "1", "-W", "1", "fd12:3456:789a::1"])
            .status
            .success()
    };
    // Wait for DAD before anything is filtered.
    let mut up = false;
    for _ in 0..50 {
        if ping() {
            up = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(up, "veth never came up");

    let f = fw(&a);
    let base = format!(
        "[zones.overlay]\ninterfaces = [\"{ia}\"]\nping = false\n[groups.ops]\ntcp_ports = [7777]\n"
    );
    f.load(cfg(&base)).await.unwrap();
    assert!(!ping(), "ping must be dropped: zone does not allow it");

    // Group join = set element: TCP 7777 from the peer opens up.
    a.exec(&[
        "sh",
        "-c",
        "nohup timeout 20 nc -6 -l -k -p 7777 >/dev/null 2>&1 &",
    ]);
    let connect = || {
        b.try_exec(&[
            "timeout",
            "2",
            "nc",
            "-6",
            "-z",
            "-w",
            "1",
            "fd12:3456:789a::1",
            "7777",
        ])
        .status
        .success()
    };
    assert!(!connect(), "not a group member yet");
    let table_before = a.exec(&["nft", "list", "chain", "inet", "macula", "input"]);
    f.group_members("ops", true, &[peer]).await.unwrap();
    assert!(
        a.exec(&["nft", "list", "set", "inet", "macula", "grp_ops"])
            .contains("fd12:3456:789a::2")
    );
    assert_eq!(
        a.exec(&["nft", "list", "chain", "inet", "macula", "input"]),
        table_before,
        "join changed set elements only"
    );
    assert!(connect(), "group member reaches its port");
    f.group_members("ops", false, &[peer]).await.unwrap();
    assert!(!connect(), "left the group");

    // Quarantine limits a peer's rate, even on an established flow: a ping still passes (it can
    // answer proofs), a flood beyond the rate (8 kB/s, 16 kB burst here) is mostly dropped.
    let limited = format!(
        "quarantine_kbytes_per_s = 8\nquarantine_burst_kbytes = 16\n{}",
        base.replace("ping = false", "ping = true")
    );
    f.load(cfg(&limited)).await.unwrap();
    assert!(ping());
    // 100 echo requests of 1.4 kB in about a second: 140 kB against 16 kB + 8 kB/s.
    let flood = || {
        let out = b.try_exec(&[
            "ping",
            "-6",
            "-q",
            "-c",
            "100",
            "-i",
            "0.01",
            "-s",
            "1400",
            "-W",
            "1",
            "fd12:3456:789a::1",
        ]);
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        let received: u32 = text
            .split(", ")
            .find_map(|p| p.strip_suffix(" received"))
            .and_then(|n| n.trim().parse().ok())
            .unwrap_or_else(|| panic!("no ping summary: {text}"));
        received
    };
    assert_eq!(flood(), 100, "not quarantined: nothing is limited");
    f.quarantine(Holder::Admin, true, &[peer]).await.unwrap();
    assert!(
        a.exec(&["nft", "list", "set", "inet", "macula", "quarantine"])
            .contains("fd12:3456:789a::2")
    );
    std::thread::sleep(Duration::from_secs(2));
    assert!(ping(), "a quarantined peer may still send at its rate");
    let got = flood();
    assert!(
        got <= 40,
        "quarantined flood: {got} of 100 echo requests answered"
    );
    assert!(
        a.exec(&["nft", "list", "set", "inet", "macula", "quarantine_rate"])
            .contains("fd12:3456:789a::2 limit rate over 8 kbytes/second"),
        "one limiter for the quarantined peer"
    );
    // A full replace keeps the quarantine.
    f.load(cfg(&limited)).await.unwrap();
    std::thread::sleep(Duration::from_secs(2));
    let got = flood();
    assert!(got <= 40, "after a replace: {got} of 100 answered");
    f.quarantine(Holder::Admin, false, &[peer]).await.unwrap();
    assert_eq!(flood(), 100, "released: nothing is limited");
}
