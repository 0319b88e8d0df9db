//! A hub revoking a member it certified, on four real `maculad` processes (loopback, private
//! buses), driven only through `maculactl`: the revoked member is cut off at every member within
//! the membership refresh period — no membership (nobody lists it alive, it lists nobody alive),
//! no application data (RPC both ways and its publications fail) — and stays out, while the
//! others carry on (membership, RPC and pub/sub among them).

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use macula_testkit::bin;
use macula_testkit::check::{free_udp_port, ok, wait_until};
use macula_testkit::config::{AgentConfig, Role};
use macula_testkit::realm::{RealmNode as Node, admit_with_ctl};

/// How soon every member must have cut the revoked one off: the membership refresh period of
/// `MembershipConfig::lan` (10 s; the revocation itself spreads as a rumour at once).
const CUT_OFF: Duration = Duration::from_secs(10);
/// How soon the revoked member must see nobody alive: its probes fail from the cut-off on, then
/// the suspicion timeout (4 × log10(64) ≈ 7 s) runs, within a refresh period.
const ALONE: Duration = Duration::from_secs(20);

fn alive(n: &Node) -> Vec<String> {
    let v: serde_json::Value =
        serde_json::from_str(&ok(&n.agent.ctl(&["peers", "--json"]))).unwrap();
    let mut names: Vec<String> = v
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["state"] == "alive")
        .map(|p| p["name"].as_str().unwrap().to_string())
        .collect();
    names.sort();
    names
}

/// A `maculactl sub <topic> --json` running on `n` until killed.
fn subscriber(n: &Node, topic: &str) -> std::process::Child {
    Command::new(bin("maculactl"))
        .args(["--bus", n.bus.address(), "sub", topic, "--json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// The messages a subscriber printed, once stopped.
fn heard(mut sub: std::process::Child) -> Vec<String> {
    sub.kill().unwrap();
    let out = sub.wait_with_output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            v["message"].as_str().unwrap().to_string()
        })
        .collect()
}

#[test]
fn a_revoked_member_is_cut_off_everywhere_and_the_others_carry_on() {
    let hub_port = free_udp_port();
    let hub = Node::spawn(
        "alpha",
        AgentConfig::loopback(hub_port).role(Role::Hub).to_string(),
    );
    ok(&hub.agent.ctl(&["realm", "create", "--name", "alpha"]));
    let mut nodes = vec![hub];
    for name in ["bravo", "charlie", "delta"] {
        let port = free_udp_port();
        let n = Node::spawn(
            name,
            AgentConfig::loopback(port)
                .bootstrap_port(hub_port)
                .to_string(),
        );
        admit_with_ctl(&nodes[0].agent, &n.agent, name);
        nodes.push(n);
    }
    let names = |except: &str| -> Vec<String> {
        let mut v: Vec<String> = ["alpha", "bravo", "charlie", "delta"]
            .iter()
            .filter(|n| **n != except)
            .map(|n| n.to_string())
            .collect();
        v.sort();
        v
    };
    wait_until("the realm of four forms", 60, || {
        nodes.iter().all(|n| alive(n) == names(&n.name))
    });
    let (hub, bravo, charlie, delta) = (&nodes[0], &nodes[1], &nodes[2], &nodes[3]);
    // Before: the member to be revoked exchanges application data like the others.
    assert!(ok(&delta.agent.ctl(&["ping", "bravo"])).contains("answered by bravo"));
    assert!(ok(&bravo.agent.ctl(&["ping", "delta"])).contains("answered by delta"));
    let delta_id = delta.node_id();

    ok(&hub.agent.ctl(&["realm", "revoke", &delta_id]));
    let revoked_at = Instant::now();
    let without_delta = |n: &Node| {
        let mut v = names(&n.name);
        v.retain(|x| x != "delta");
        v
    };
    wait_until("every member has cut the revoked one off", 30, || {
        nodes[..3].iter().all(|n| alive(n) == without_delta(n))
    });
    let took = revoked_at.elapsed();
    wait_until("the revoked member sees nobody alive", 40, || {
        alive(delta).is_empty()
    });
    let alone = revoked_at.elapsed();
    eprintln!("the revoked member was cut off everywhere after {took:?}, alone after {alone:?}");
    assert!(
        took <= CUT_OFF,
        "cut off after {took:?}, more than {CUT_OFF:?}"
    );
    assert!(
        alone <= ALONE,
        "the revoked member saw members alive for {alone:?}, more than {ALONE:?}"
    );

    // No application data either way, while the others still talk.
    let topic = "realm/after-revocation";
    let subs = [subscriber(charlie, topic), subscriber(delta, topic)];
    std::thread::sleep(Duration::from_secs(3));
    for (from, to) in [(delta, "bravo"), (bravo, "delta"), (hub, "delta")] {
        let out = from.agent.ctl(&["ping", to]);
        assert!(
            !out.status.success(),
            "{} reached {to} after the revocation: {}",
            from.name,
            String::from_utf8_lossy(&out.stdout)
        );
    }
    let _ = delta.agent.ctl(&["pub", topic, "from-the-revoked"]);
    ok(&bravo.agent.ctl(&["pub", topic, "from-bravo"]));
    assert!(ok(&charlie.agent.ctl(&["ping", "bravo"])).contains("answered by bravo"));
    assert!(ok(&bravo.agent.ctl(&["ping", "alpha"])).contains("answered by alpha"));
    std::thread::sleep(Duration::from_secs(3));
    let [at_charlie, at_delta] = subs.map(heard);
    assert_eq!(at_charlie, ["from-bravo"], "what charlie heard");
    assert!(
        !at_delta.contains(&"from-bravo".to_string()),
        "the revoked member still gets publications: {at_delta:?}"
    );

    // It stays out (it keeps dialling its bootstrap contact), and the others stay together.
    std::thread::sleep(Duration::from_secs(8));
    for n in &nodes[..3] {
        assert_eq!(alive(n), without_delta(n), "at {}", n.name);
    }
    assert!(alive(delta).is_empty(), "{:?}", alive(delta));
    assert!(
        delta.agent.log().contains("revoked") || delta.agent.log().contains("refused"),
        "the revoked member's log says nothing of it:\n{}",
        delta.agent.log()
    );
}
