//! Boards without a real-time clock: real `maculad` processes whose clocks are wrong (libfaketime
//! preloaded into the dynamically linked agent) join a realm of nodes with the right time,
//! although their clocks are before their certificates' `not_before`: one restarted three hours
//! behind the time it ran at before (its peers must take its new metadata at once), one at 1970.
//! Both report the offset learnt from the realm in `maculactl status`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use macula_mesh::realm::Role;
use macula_mesh::transport::unix_now;
use macula_testkit::check::{free_udp_port, wait_until};
use macula_testkit::config::AgentConfig;
use macula_testkit::realm::Realm;
use macula_testkit::{Agent, AgentOptions, DbusDaemon};

const HOUR_MS: i64 = 3_600_000;

fn libfaketime() -> PathBuf {
    let p = Path::new("/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1");
    assert!(
        p.exists(),
        "{} missing: install Debian's faketime package (tests/deps/mesh.list)",
        p.display()
    );
    p.to_owned()
}

struct Node {
    _bus: DbusDaemon,
    agent: Agent,
    id: String,
}

fn json(out: &std::process::Output) -> serde_json::Value {
    assert!(out.status.success(), "{out:?}");
    serde_json::from_slice(&out.stdout).unwrap()
}

/// A node admitted to `realm` with a certificate issued now (real time), started with `faketime`
/// (a libfaketime `FAKETIME` spec) or the right clock.
fn node(
    realm: &Realm,
    name: &str,
    role: Role,
    boot: Option<u16>,
    faketime: Option<&str>,
) -> (Node, u16) {
    node_with(realm, name, role, boot, faketime, "")
}

/// [`node`] with more `[mesh]` settings.
fn node_with(
    realm: &Realm,
    name: &str,
    role: Role,
    boot: Option<u16>,
    faketime: Option<&str>,
    mesh: &str,
) -> (Node, u16) {
    let bus = DbusDaemon::start();
    let port = free_udp_port();
    let config = AgentConfig::loopback(port)
        .name(name)
        .role(role)
        .bootstrap_opt(boot)
        .mesh(mesh)
        .to_string();
    let env = faketime.map(faketime_env).unwrap_or_default();
    let mut agent = Agent::spawn(
        &bus,
        AgentOptions {
            config: Some(config),
            env,
            ..Default::default()
        },
    );
    let id = json(&agent.ctl(&["status", "--json"]))["node_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let cert = realm.cert(id.parse().unwrap(), role, name);
    std::fs::write(agent.state_dir().join("realm.cert"), cert.to_text()).unwrap();
    agent.stop(Duration::from_secs(5));
    agent.start(&bus).unwrap();
    (
        Node {
            _bus: bus,
            agent,
            id,
        },
        port,
    )
}

/// The environment that preloads libfaketime with a `FAKETIME` spec (`-3h`, `@1970-01-01 …`).
fn faketime_env(spec: &str) -> Vec<(String, String)> {
    vec![
        ("LD_PRELOAD".into(), libfaketime().display().to_string()),
        ("FAKETIME".into(), spec.into()),
        // Only the wall clock is wrong on such a board; timers run on the monotonic one.
        ("FAKETIME_DONT_FAKE_MONOTONIC".into(), "1".into()),
        ("FAKETIME_NO_CACHE".into(), "1".into()),
    ]
}

/// `of`'s entry in `at`'s peer list, once it is alive with metadata.
fn peer(at: &Node, of: &Node) -> Option<serde_json::Value> {
    let peers = json(&at.agent.ctl(&["peers", "--json"]));
    peers
        .as_array()?
        .iter()
        .find(|p| p["node_id"] == of.id.as_str() && p["state"] == "alive" && p["name"] != "")
        .cloned()
}

fn offset_ms(n: &Node) -> Option<i64> {
    json(&n.agent.ctl(&["status", "--json"]))["clock_offset_ms"].as_i64()
}

#[test]
fn nodes_with_clocks_hours_behind_and_at_1970_join_and_learn_the_time_from_the_realm() {
    let realm = Realm::from_seed(42);
    let (hub, hub_port) = node(&realm, "hub", Role::Hub, None, None);
    let (edge, _) = node(&realm, "edge", Role::Edge, Some(hub_port), None);
    // `behind` runs with the right time first.
    let (mut behind, _) = node(&realm, "behind", Role::Edge, Some(hub_port), None);
    let (epoch, _) = node(
        &realm,
        "epoch",
        Role::Edge,
        Some(hub_port),
        Some("@1970-01-01 00:00:00"),
    );
    wait_until("behind joins", 30, || peer(&hub, &behind).is_some());
    let before = peer(&hub, &behind).unwrap();
    let v1 = before["meta_version"].as_u64().unwrap();
    // Then it restarts with its clock three hours behind (a board that was off and booted at
    // an old saved time).
    behind.agent.stop(Duration::from_secs(5));
    behind.agent.options_mut().env = faketime_env("-3h");
    behind.agent.start(&behind._bus).unwrap();
    // Both wrong clocks are before their certificates' not_before: they said so and started.
    for n in [&behind, &epoch] {
        assert!(
            n.agent.log().contains("it looks wrong; joining anyway"),
            "{}",
            n.agent.log()
        );
    }
    // Everyone sees everyone alive with metadata.
    let all = [&hub, &edge, &behind, &epoch];
    wait_until("everyone sees everyone alive with metadata", 30, || {
        all.iter().all(|a| {
            all.iter()
                .filter(|b| b.id != a.id)
                .all(|b| peer(a, b).is_some())
        })
    });

    // Each wrong clock learns its offset from the realm (median of the hub's clock).
    let now_ms = i64::try_from(unix_now()).unwrap() * 1000;
    for (n, expect) in [(&behind, 3 * HOUR_MS), (&epoch, now_ms)] {
        wait_until("a clock report", 20, || offset_ms(n).is_some());
        let got = offset_ms(n).unwrap();
        assert!(
            (got - expect).abs() < 60_000,
            "offset {got} ms, expected about {expect}"
        );
        let status = json(&n.agent.ctl(&["status", "--json"]));
        assert_eq!(status["clock_wrong"], true);
        assert_eq!(
            status["clock_hubs"], true,
            "the hub is the preferred source"
        );
        assert_eq!(
            status["clock_stepped_ms"], 0,
            "stepping is off unless configured"
        );
        let text = String::from_utf8_lossy(&n.agent.ctl(&["status"]).stdout).into_owned();
        assert!(text.contains("Clock      behind by "), "{text}");
        assert!(text.contains(", learnt from realm (1 hub clock)"), "{text}");
        eprintln!("{}", text.lines().find(|l| l.contains("Clock")).unwrap());
    }
    // Nodes with the right time agree with the realm.
    wait_until("the edge's clock report", 20, || offset_ms(&edge).is_some());
    assert!(offset_ms(&edge).unwrap().abs() < 10_000);
    let edge_text = String::from_utf8_lossy(&edge.agent.ctl(&["status"]).stdout).into_owned();
    assert!(
        edge_text.contains("Clock      agrees with the realm"),
        "{edge_text}"
    );

    // Its peers took the metadata of its restart under a clock three hours before the version
    // they held.
    wait_until("peers take the restarted node's new metadata", 20, || {
        [&hub, &edge, &epoch].iter().all(|a| {
            peer(a, &behind).is_some_and(|p| {
                p["meta_version"].as_u64().unwrap() > v1
                    && p["generation"].as_u64() > before["generation"].as_u64()
            })
        })
    });
}

/// A real NTP server on loopback: Debian's chronyd serving its local clock (stratum 8), not
/// touching the system clock (`-x`).
struct Chronyd {
    child: std::process::Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Chronyd {
    fn start() -> Self {
        let chronyd = Path::new("/usr/sbin/chronyd");
        assert!(
            chronyd.exists(),
            "chronyd missing: install Debian's chrony package (tests/deps/mesh.list)"
        );
        let dir = tempfile::tempdir().unwrap();
        let port = free_udp_port();
        let conf = dir.path().join("chrony.conf");
        std::fs::write(
            &conf,
            format!(
                "port {port}\nbindaddress 127.0.0.1\nallow 127.0.0.1\nlocal stratum 8\ncmdport 0\n\
                 pidfile {}\n",
                dir.path().join("chronyd.pid").display()
            ),
        )
        .unwrap();
        let child = std::process::Command::new(chronyd)
            .args(["-d", "-x", "-u", "root", "-f"])
            .arg(&conf)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        Self {
            child,
            port,
            _dir: dir,
        }
    }
}

impl Drop for Chronyd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn a_node_takes_the_time_from_ntp_when_a_server_answers_and_from_the_realm_when_none_does() {
    let ntp = Chronyd::start();
    let realm = Realm::from_seed(43);
    // The hub's clock is three hours behind and it reaches the NTP server; the edge's clock is
    // three hours behind too, and its NTP server does not answer (nothing listens there).
    let (hub, hub_port) = node_with(
        &realm,
        "hub",
        Role::Hub,
        None,
        Some("-3h"),
        &format!("ntp = [\"127.0.0.1:{}\"]\n", ntp.port),
    );
    let silent = free_udp_port();
    let (edge, _) = node_with(
        &realm,
        "edge",
        Role::Edge,
        Some(hub_port),
        Some("-3h"),
        &format!("ntp = [\"127.0.0.1:{silent}\"]\n"),
    );
    wait_until("the hub's clock report", 30, || offset_ms(&hub).is_some());
    let status = json(&hub.agent.ctl(&["status", "--json"]));
    let got = status["clock_offset_ms"].as_i64().unwrap();
    assert!(
        (got - 3 * HOUR_MS).abs() < 10_000,
        "offset {got} ms, expected about 3 h"
    );
    assert_eq!(status["clock_ntp"], true, "{status}");
    assert_eq!(status["clock_wrong"], true);
    let text = String::from_utf8_lossy(&hub.agent.ctl(&["status"]).stdout).into_owned();
    assert!(text.contains(", learnt from NTP (1 NTP server)"), "{text}");
    // The edge learns the time from the realm; its hub's clock is as wrong as its own, so the
    // realm agrees with it: NTP was not heard, and that is logged once.
    wait_until("the edge's clock report", 30, || offset_ms(&edge).is_some());
    let status = json(&edge.agent.ctl(&["status", "--json"]));
    assert_eq!(status["clock_ntp"], false, "{status}");
    assert_eq!(status["clock_hubs"], true, "{status}");
    assert!(status["clock_offset_ms"].as_i64().unwrap().abs() < 10_000);
    let log = edge.agent.log();
    assert_eq!(
        log.matches(&format!("NTP server 127.0.0.1:{silent}"))
            .count(),
        1,
        "{log}"
    );
}
