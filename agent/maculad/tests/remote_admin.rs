//! Remote administration (`maculactl --node`, docs/security.md) on three real `maculad`
//! processes (loopback QUIC, a private bus each): the hub `alpha` holds the realm key, `bravo`
//! was admitted with `realm admit --admin`, `charlie` without. Bravo reads and changes the others
//! through its own agent; charlie is refused by the target, which runs nothing.

use std::process::Output;

use macula_testkit::check::{free_udp_port, json, ok, output_text, wait_until};
use macula_testkit::config::{AgentConfig, Role};
use macula_testkit::realm::agent_node_id;
use macula_testkit::{Agent, AgentOptions, DbusDaemon};

fn spawn(bus: &DbusDaemon, config: AgentConfig) -> Agent {
    Agent::spawn(
        bus,
        AgentOptions {
            config: Some(config.to_string()),
            ..Default::default()
        },
    )
}

/// `node` joins the realm of `hub` (holder of the realm key) as `name`, an admin when `admin`.
fn admit(hub: &Agent, node: &Agent, name: &str, admin: bool) {
    let dir = tempfile::tempdir().unwrap();
    let cert = dir.path().join("node.cert");
    let cert = cert.to_str().unwrap();
    let id = agent_node_id(node);
    let mut args = vec!["realm", "admit", &id, "--name", name, "-o", cert];
    if admin {
        args.push("--admin");
    }
    ok(&hub.ctl(&args));
    ok(&node.ctl(&["realm", "join", cert]));
}

fn alive(agent: &Agent) -> usize {
    let v = json(agent.ctl(&["peers", "--json"]));
    v.as_array()
        .unwrap()
        .iter()
        .filter(|p| p["state"] == "alive")
        .count()
}

fn log_level(agent: &Agent) -> String {
    json(agent.ctl(&["status", "--json"]))["log_level"]
        .as_str()
        .unwrap()
        .to_owned()
}

fn refused(out: &Output, why: &str) {
    assert_eq!(out.status.code(), Some(4), "{}", output_text(out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(why), "{err}");
}

#[test]
fn only_an_admin_member_runs_commands_on_another() {
    let ports = [free_udp_port(), free_udp_port(), free_udp_port()];
    let buses = [
        DbusDaemon::start(),
        DbusDaemon::start(),
        DbusDaemon::start(),
    ];
    let a = spawn(&buses[0], AgentConfig::loopback(ports[0]).role(Role::Hub));
    let b = spawn(
        &buses[1],
        AgentConfig::loopback(ports[1]).bootstrap_port(ports[0]),
    );
    let c = spawn(
        &buses[2],
        AgentConfig::loopback(ports[2]).bootstrap_port(ports[0]),
    );
    ok(&a.ctl(&["realm", "create", "--name", "alpha"]));
    admit(&a, &b, "bravo", true);
    admit(&a, &c, "charlie", false);
    wait_until("the realm formed", 30, || {
        [&a, &b, &c].iter().all(|n| alive(n) == 2)
    });
    let a_id = agent_node_id(&a);

    // A read command, by name and by node ID: the target's own answer.
    let remote = json(b.ctl(&["--node", "alpha", "status", "--json"]));
    assert_eq!(remote["node_id"], a_id.as_str());
    assert_eq!(remote["name"], json(a.ctl(&["status", "--json"]))["name"]);
    let remote = json(b.ctl(&["--node", &a_id, "realm", "status", "--json"]));
    assert_eq!(remote.as_array().unwrap().len(), 3);
    assert_eq!(
        remote[0]["node_id"],
        a_id.as_str(),
        "alpha's view: itself first"
    );
    assert_eq!(remote[0]["state"], "self");

    // The same from charlie, a member without the admin role: refused by alpha, which logs it.
    refused(
        &c.ctl(&["--node", "alpha", "status"]),
        "no admin role in its certificate",
    );
    assert!(a.log().contains("remote command refused"));
    // Nothing runs: a change charlie asks for does not happen.
    let before = log_level(&a);
    refused(
        &c.ctl(&["--node", "alpha", "node", "log-level", "trace"]),
        "realm admit --admin",
    );
    assert_eq!(log_level(&a), before);

    // A change by the admin takes effect on the target (and only there).
    ok(&b.ctl(&["--node", "charlie", "node", "log-level", "debug"]));
    assert_eq!(log_level(&c), "debug");
    assert_ne!(log_level(&b), "debug");
    assert!(c.log().contains("running a remote command"));

    // Methods outside the remotely runnable list are refused with the reason, also for admins.
    refused(
        &b.ctl(&["--node", "alpha", "update", "install", "/tmp/x.raucb"]),
        "update publish",
    );
    // An unknown member is said so.
    let out = b.ctl(&["--node", "nobody", "status"]);
    assert_eq!(out.status.code(), Some(5), "{}", output_text(&out));
    // Commands without an agent take no --node.
    let out = b.ctl(&["--node", "alpha", "realm", "keygen", "/tmp/nowhere"]);
    assert_eq!(out.status.code(), Some(2), "{}", output_text(&out));
}

/// `maculactl` on a machine without an agent: `--realm DIR --via HUB --node NAME` issues itself a
/// ten-minute admin identity with the realm key, joins for the command and leaves.
#[test]
fn an_admin_machine_without_an_agent_administers_through_a_throwaway_identity() {
    let ports = [free_udp_port(), free_udp_port()];
    let buses = [DbusDaemon::start(), DbusDaemon::start()];
    let a = spawn(&buses[0], AgentConfig::loopback(ports[0]).role(Role::Hub));
    let c = spawn(
        &buses[1],
        AgentConfig::loopback(ports[1]).bootstrap_port(ports[0]),
    );
    ok(&a.ctl(&["realm", "create", "--name", "alpha"]));
    admit(&a, &c, "charlie", false);
    wait_until("the realm formed", 30, || alive(&a) == 1 && alive(&c) == 1);
    let (a_id, c_id) = (agent_node_id(&a), agent_node_id(&c));
    let realm = a.state_dir().join("realm");
    let via = format!("{a_id}@127.0.0.1:{}", ports[0]);
    // No bus: the admin machine runs no agent.
    let admin = |args: &[&str]| {
        let mut all = vec!["--realm", realm.to_str().unwrap(), "--via", &via];
        all.extend_from_slice(args);
        std::process::Command::new(macula_testkit::bin("maculactl"))
            .args(&all)
            .env("MACULA_BUS", "unix:path=/nonexistent/no-agent-here")
            .output()
            .unwrap()
    };

    let started = std::time::Instant::now();
    let remote = json(admin(&["--node", "charlie", "status", "--json"]));
    let took = started.elapsed();
    assert_eq!(remote["node_id"], c_id.as_str());
    ok(&admin(&["--node", &a_id, "node", "log-level", "debug"]));
    assert_eq!(log_level(&a), "debug");
    eprintln!("one command from an admin machine without an agent: {took:?}");
    // It left: no throwaway member stays alive.
    wait_until("the throwaway members left", 10, || alive(&a) == 1);

    // A node's state directory is no realm key.
    let out = std::process::Command::new(macula_testkit::bin("maculactl"))
        .arg("--realm")
        .arg(c.state_dir())
        .args(["--via", &via, "--node", "alpha", "status"])
        .env("MACULA_BUS", "unix:path=/nonexistent/no-agent-here")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(5), "{}", output_text(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("state directory"));
    // --realm needs --via and --node.
    let out = std::process::Command::new(macula_testkit::bin("maculactl"))
        .args([
            "--realm",
            realm.to_str().unwrap(),
            "--node",
            "alpha",
            "status",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", output_text(&out));
}

/// A firewall change by an admin member: `--node hub firewall apply FILE` (the file read where
/// maculactl runs), then `firewall confirm`, change the hub's real nftables ruleset. Both agents
/// run in one network namespace, whose firewall the hub owns.
#[test]
fn an_admin_applies_and_confirms_a_firewall_change_on_another_member() {
    let mut topo = macula_testkit::netns::Topology::new("rad");
    let ns = topo.add_ns("a");
    let ports = [free_udp_port(), free_udp_port()];
    let buses = [DbusDaemon::start(), DbusDaemon::start()];
    let zones = "[firewall.zones.lan]\ninterfaces = [\"eth0\"]\n";
    let hub = Agent::spawn(
        &buses[0],
        AgentOptions {
            config: Some(
                AgentConfig::loopback(ports[0])
                    .role(Role::Hub)
                    .section(&format!("[firewall]\nenabled = true\n{zones}"))
                    .to_string(),
            ),
            netns: Some(ns.clone()),
            ..Default::default()
        },
    );
    let admin_node = Agent::spawn(
        &buses[1],
        AgentOptions {
            config: Some(
                AgentConfig::loopback(ports[1])
                    .bootstrap_port(ports[0])
                    .to_string(),
            ),
            netns: Some(ns),
            ..Default::default()
        },
    );
    ok(&hub.ctl(&["realm", "create", "--name", "hub"]));
    admit(&hub, &admin_node, "ops", true);
    wait_until("the realm formed", 30, || {
        alive(&hub) == 1 && alive(&admin_node) == 1
    });
    let ruleset = || String::from_utf8(topo.exec("a", &["nft", "list", "ruleset"]).stdout).unwrap();
    assert!(!ruleset().contains("wwan7"));

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("fw.toml");
    std::fs::write(
        &file,
        format!("[firewall]\nconfirm_timeout_secs = 30\n{zones}[firewall.zones.wan]\ninterfaces = [\"wwan7\"]\n"),
    )
    .unwrap();
    let applied = json(admin_node.ctl(&[
        "--node",
        "hub",
        "firewall",
        "apply",
        file.to_str().unwrap(),
        "--json",
    ]));
    assert_eq!(applied["confirm_within_s"], 30, "{applied}");
    assert!(ruleset().contains("\"wwan7\""), "{}", ruleset());
    let show = json(admin_node.ctl(&["--node", "hub", "firewall", "show", "--json"]));
    assert_eq!(show["pending"], 1, "{show}");
    ok(&admin_node.ctl(&["--node", "hub", "firewall", "confirm"]));
    let show = json(hub.ctl(&["firewall", "show", "--json"]));
    assert_eq!(show["pending"], 0, "{show}");
    assert!(ruleset().contains("\"wwan7\""));
    // The admin's own namespace shares the ruleset here, but its agent owns no firewall.
    let out = admin_node.ctl(&["firewall", "show"]);
    assert_eq!(out.status.code(), Some(7), "{}", output_text(&out));
}
