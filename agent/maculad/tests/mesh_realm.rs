//! Real `maculad` processes on loopback, each on its own private bus, forming a realm:
//! `maculactl peers`, refusal of another realm's node, pub/sub through `maculactl pub`/`sub`,
//! crash detection. Certificates are issued with the realm library (the `maculactl realm`
//! commands do not exist yet).

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use macula_testkit::check::{free_udp_port, wait_until};
use macula_testkit::config::AgentConfig;
use macula_testkit::realm::Realm;
use macula_testkit::{Agent, AgentOptions, DbusDaemon, bin};

struct Node {
    bus: DbusDaemon,
    agent: Agent,
    port: u16,
    cert: PathBuf,
    _dir: tempfile::TempDir,
}

/// Starts a node (mesh off: no certificate yet), admits it to `realm` under `name`, restarts it.
fn node(realm: &Realm, name: &str, bootstrap: Option<u16>) -> Node {
    let bus = DbusDaemon::start();
    let dir = tempfile::tempdir().unwrap();
    let cert = dir.path().join("realm.cert");
    let port = free_udp_port();
    let config = AgentConfig::loopback(port)
        .name(name)
        .bootstrap_opt(bootstrap)
        .cert(&cert)
        .to_string();
    let mut agent = Agent::spawn(
        &bus,
        AgentOptions {
            config: Some(config),
            ..Default::default()
        },
    );
    let off = agent.ctl(&["peers"]);
    assert!(
        String::from_utf8_lossy(&off.stdout).contains("mesh is off"),
        "{off:?}"
    );
    // Admit the node ID the agent created on first start.
    realm.admit_agent(&agent, name, &cert);
    agent.stop(Duration::from_secs(5));
    agent.start(&bus).unwrap();
    Node {
        bus,
        agent,
        port,
        cert,
        _dir: dir,
    }
}

fn peers(n: &Node) -> Vec<serde_json::Value> {
    let out = n.agent.ctl(&["peers", "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice::<serde_json::Value>(&out.stdout)
        .unwrap()
        .as_array()
        .unwrap()
        .clone()
}

fn states(n: &Node) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = peers(n)
        .iter()
        .map(|p| {
            (
                p["name"].as_str().unwrap().to_string(),
                p["state"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    v.sort();
    v
}

#[test]
fn realm_forms_refuses_strangers_delivers_pubsub_and_detects_a_crash() {
    let realm = Realm::generate();
    let a = node(&realm, "alpha", None);
    let b = node(&realm, "bravo", Some(a.port));
    let c = node(&realm, "charlie", Some(a.port));
    let alive = |names: &[&str]| {
        names
            .iter()
            .map(|n| (n.to_string(), "alive".to_string()))
            .collect::<Vec<_>>()
    };
    wait_until("the realm forms", 30, || {
        states(&a) == alive(&["bravo", "charlie"])
            && states(&b) == alive(&["alpha", "charlie"])
            && states(&c) == alive(&["alpha", "bravo"])
    });
    let table = a.agent.ctl(&["peers"]);
    let text = String::from_utf8_lossy(&table.stdout);
    assert!(
        text.contains("bravo") && text.contains("alive") && text.contains("edge"),
        "{text}"
    );

    // A node of another realm cannot join.
    let other = Realm::generate();
    let stranger = node(&other, "stranger", Some(a.port));
    std::thread::sleep(Duration::from_secs(5));
    assert!(
        peers(&stranger).is_empty(),
        "the stranger was admitted: {:?}",
        peers(&stranger)
    );
    assert!(!states(&a).iter().any(|(n, _)| n == "stranger"));
    assert!(
        stranger.agent.log().contains("refused"),
        "log:\n{}",
        stranger.agent.log()
    );

    // Pub/sub through the CLI: two subscribers, each gets both messages once.
    let subs: Vec<_> = [&a, &b]
        .iter()
        .map(|n| {
            Command::new(bin("maculactl"))
                .args([
                    "--bus",
                    n.bus.address(),
                    "sub",
                    "realm/test",
                    "--count",
                    "2",
                    "--json",
                ])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    std::thread::sleep(Duration::from_secs(4));
    for msg in ["hello", "world"] {
        let out = c.agent.ctl(&["pub", "realm/test", msg]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    for s in subs {
        let out = s.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        let msgs: Vec<&str> = lines
            .iter()
            .map(|l| l["message"].as_str().unwrap())
            .collect();
        assert_eq!(msgs.len(), 2);
        assert!(
            msgs.contains(&"hello") && msgs.contains(&"world"),
            "{msgs:?}"
        );
    }

    // Clean stop (SIGTERM): bravo leaves, the others know at once (no suspicion timeout).
    let mut b = b;
    b.agent.stop(Duration::from_secs(5));
    let t = Instant::now();
    wait_until("bravo's leave is known", 5, || {
        states(&a).contains(&("bravo".to_string(), "down".to_string()))
    });
    eprintln!("leave known after {:?}", t.elapsed());

    // Crash: SIGKILL charlie; the others declare it down.
    let mut c = c;
    if let Some(pid) = c.agent.pid() {
        Command::new("kill")
            .args(["-9", &pid.to_string()])
            .status()
            .unwrap();
    }
    let _ = c.agent.try_wait();
    wait_until("the crash is detected", 40, || {
        states(&a).contains(&("charlie".to_string(), "down".to_string()))
    });
    let _ = (&c.cert, &stranger.cert);
}
