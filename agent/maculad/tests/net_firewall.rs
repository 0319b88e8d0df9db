//! `io.macula.Firewall1` and `maculactl firewall` against a real maculad in its own network
//! namespace, with real nft.

use std::time::Duration;

use macula_testkit::check::output_text;
use macula_testkit::netns::Topology;
use macula_testkit::{Agent, AgentOptions, DbusDaemon, maculactl_as, wait_for};

fn ruleset(topo: &Topology) -> String {
    String::from_utf8(topo.exec("a", &["nft", "list", "ruleset"]).stdout).unwrap()
}

const FOREIGN: &str = "table ip foreign {\n\tchain c {\n\t\ttype filter hook input priority 5; policy accept;\n\t}\n}\n";

#[test]
fn apply_confirm_rollback_over_dbus_and_cli() {
    let mut topo = Topology::new("fw");
    let ns = topo.add_ns("a");
    topo.nft("a", FOREIGN);
    let bus = DbusDaemon::start();
    let agent = Agent::spawn(
        &bus,
        AgentOptions {
            config: Some(
                "[firewall]\nenabled = true\n[firewall.zones.lan]\ninterfaces = [\"eth0\"]\n"
                    .into(),
            ),
            netns: Some(ns),
            ..Default::default()
        },
    );
    let boot = ruleset(&topo);
    assert!(boot.contains("table inet macula"), "{boot}");
    assert!(boot.contains("\"eth0\" : jump zone_lan_in"), "{boot}");
    assert!(boot.contains("table ip foreign"), "{boot}");

    // `show` prints the live table, confirmed.
    let show = agent.ctl(&["firewall", "show"]);
    assert!(show.status.success(), "{}", output_text(&show));
    assert!(
        output_text(&show).contains("Firewall: confirmed"),
        "{}",
        output_text(&show)
    );
    assert!(
        output_text(&show).contains("chain zone_lan_in"),
        "{}",
        output_text(&show)
    );

    // Anyone may look; only root / group `macula` may change (bus policy).
    let look = maculactl_as("nobody", bus.address(), &["firewall", "show", "--json"]);
    assert!(look.status.success(), "{}", output_text(&look));
    let denied = maculactl_as("nobody", bus.address(), &["firewall", "confirm"]);
    assert_eq!(denied.status.code(), Some(4), "{}", output_text(&denied));

    // Apply a new section from a file; it is pending and rolls back after 2 s.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("new.toml");
    std::fs::write(
        &file,
        "[node]\nname = \"x\"\n[firewall]\nconfirm_timeout_secs = 2\n[firewall.zones.wan]\ninterfaces = [\"wwan7\"]\n",
    )
    .unwrap();
    let f = file.to_str().unwrap();
    let apply = agent.ctl(&["firewall", "apply", f, "--json"]);
    assert!(apply.status.success(), "{}", output_text(&apply));
    let j: serde_json::Value = serde_json::from_slice(&apply.stdout).unwrap();
    assert_eq!(j["confirm_within_s"], 2);
    assert!(ruleset(&topo).contains("\"wwan7\""));
    let show = agent.ctl(&["firewall", "show", "--json"]);
    let j: serde_json::Value = serde_json::from_slice(&show.stdout).unwrap();
    assert_eq!(j["pending"], 1);
    assert!(j["ruleset"].as_str().unwrap().contains("wwan7"));
    // Counted since start (also `/metrics`: macula_firewall_{applies,rollbacks}_total).
    assert_eq!(
        (j["applies"].as_u64(), j["rollbacks"].as_u64()),
        (Some(1), Some(0))
    );
    let back = wait_for(Duration::from_secs(5), || {
        (ruleset(&topo) == boot).then_some(())
    });
    assert!(back.is_some(), "not rolled back: {}", ruleset(&topo));
    let j: serde_json::Value =
        serde_json::from_slice(&agent.ctl(&["firewall", "show", "--json"]).stdout).unwrap();
    assert_eq!(
        (j["applies"].as_u64(), j["rollbacks"].as_u64()),
        (Some(1), Some(1))
    );
    let show = agent.ctl(&["firewall", "show"]);
    assert!(
        output_text(&show).contains("Last rollback"),
        "{}",
        output_text(&show)
    );
    let confirm = agent.ctl(&["firewall", "confirm"]);
    assert_eq!(
        confirm.status.code(),
        Some(6),
        "nothing to confirm: {}",
        output_text(&confirm)
    );

    // Apply + confirm keeps it.
    let apply = agent.ctl(&["firewall", "apply", f]);
    assert!(apply.status.success(), "{}", output_text(&apply));
    let confirm = agent.ctl(&["firewall", "confirm"]);
    assert!(confirm.status.success(), "{}", output_text(&confirm));
    assert!(output_text(&confirm).contains("confirmed (generation 2)"));
    std::thread::sleep(Duration::from_millis(2500));
    let kept = ruleset(&topo);
    assert!(kept.contains("\"wwan7\""), "{kept}");
    assert!(kept.contains("table ip foreign"), "{kept}");

    // A bad section: clear error with file position, exit code 5, ruleset byte-identical.
    std::fs::write(
        &file,
        "[firewall]\nconfirm_timeout_secs = 2\n[firewall.zones.dmz]\n",
    )
    .unwrap();
    let bad = agent.ctl(&["firewall", "apply", f]);
    assert_eq!(bad.status.code(), Some(5), "{}", output_text(&bad));
    assert!(output_text(&bad).contains("dmz"), "{}", output_text(&bad));
    std::fs::write(
        &file,
        "[firewall.mgmt]\nsources = [\"192.0.2.0/24\", \"192.0.2.0/25\"]\n",
    )
    .unwrap();
    let bad = agent.ctl(&["firewall", "apply", f]);
    assert_eq!(bad.status.code(), Some(5), "{}", output_text(&bad));
    assert!(
        output_text(&bad).contains("nothing was changed"),
        "{}",
        output_text(&bad)
    );
    assert_eq!(ruleset(&topo), kept);
}

#[test]
fn disabled_firewall_is_unavailable_and_leaves_nft_alone() {
    let mut topo = Topology::new("fwd");
    let ns = topo.add_ns("a");
    let bus = DbusDaemon::start();
    let agent = Agent::spawn(
        &bus,
        AgentOptions {
            netns: Some(ns),
            ..Default::default()
        },
    );
    assert_eq!(ruleset(&topo), "");
    let show = agent.ctl(&["firewall", "show"]);
    assert_eq!(show.status.code(), Some(7), "{}", output_text(&show));
    assert!(
        output_text(&show).contains("enabled = true"),
        "{}",
        output_text(&show)
    );
}

/// `Firewall1.Ruleset` emits a change on apply and on the automatic rollback: a client's property
/// cache (fed only by PropertiesChanged signals after the first read) follows both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ruleset_change_signals_follow_apply_and_rollback() {
    let mut topo = Topology::new("fws");
    let ns = topo.add_ns("a");
    let bus = DbusDaemon::start();
    let _agent = Agent::spawn(
        &bus,
        AgentOptions {
            config: Some("[firewall]\nenabled = true\n".into()),
            netns: Some(ns),
            ..Default::default()
        },
    );
    let conn = zbus::connection::Builder::address(bus.address())
        .unwrap()
        .build()
        .await
        .unwrap();
    let proxy = macula_bus::firewall::Firewall1Proxy::new(&conn)
        .await
        .unwrap();
    let boot = proxy.ruleset().await.unwrap();
    assert!(boot.contains("table inet macula"));
    let cached = || proxy.cached_ruleset().ok().flatten().unwrap_or_default();
    async fn until(what: &str, mut f: impl FnMut() -> bool) {
        for _ in 0..100 {
            if f() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("{what}: no change signal within 5 s");
    }
    proxy
        .apply(
            "[firewall]\nconfirm_timeout_secs = 1\n[firewall.zones.lan]\ninterfaces = [\"eth3\"]\n",
        )
        .await
        .unwrap();
    until("apply", || cached().contains("\"eth3\"")).await;
    until("rollback", || cached() == boot).await;
}

/// A confirmed apply is kept in `<state>/firewall.toml` and survives restarts; an apply that was
/// never confirmed is gone after the agent is SIGKILLed before its timer fires (the restart
/// loads the last confirmed state); an unreadable saved file is reported by name and agent.toml
/// is loaded; an edited agent.toml wins over an older saved apply; a bad file is refused by
/// maculactl with its name and line.
#[test]
fn a_confirmed_apply_survives_restarts_and_an_unconfirmed_one_a_sigkill() {
    use std::os::unix::fs::PermissionsExt;
    let mut topo = Topology::new("fwk");
    let ns = topo.add_ns("a");
    let bus = DbusDaemon::start();
    let section = |ifname: &str| {
        format!("[firewall]\nenabled = true\n[firewall.zones.lan]\ninterfaces = [\"{ifname}\"]\n")
    };
    let mut agent = Agent::spawn(
        &bus,
        AgentOptions {
            config: Some(section("eth0")),
            netns: Some(ns),
            ..Default::default()
        },
    );
    let lan = |ifname: &str| format!("\"{ifname}\" : jump zone_lan_in");
    assert!(ruleset(&topo).contains(&lan("eth0")));
    let dir = tempfile::tempdir().unwrap();
    let apply = |agent: &Agent, ifname: &str| {
        let file = dir.path().join(format!("{ifname}.toml"));
        std::fs::write(&file, section(ifname)).unwrap();
        let out = agent.ctl(&["firewall", "apply", file.to_str().unwrap()]);
        assert!(out.status.success(), "{}", output_text(&out));
    };
    let restart = |agent: &mut Agent| {
        agent.stop(Duration::from_secs(10));
        agent.start(&bus).unwrap();
    };

    // Applied and confirmed: kept, 0600, and loaded again by the next start.
    apply(&agent, "eth1");
    let confirm = agent.ctl(&["firewall", "confirm"]);
    assert!(confirm.status.success(), "{}", output_text(&confirm));
    let saved = agent.state_dir().join("firewall.toml");
    let mode = std::fs::metadata(&saved).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    restart(&mut agent);
    let rs = ruleset(&topo);
    assert!(
        rs.contains(&lan("eth1")) && !rs.contains(&lan("eth0")),
        "{rs}"
    );
    assert!(
        agent.log().contains("from the last confirmed apply"),
        "{}",
        agent.log()
    );

    // Applied, not confirmed, and the agent killed before the timer (30 s) fires: the restart
    // goes back to the confirmed section.
    apply(&agent, "eth2");
    assert!(ruleset(&topo).contains(&lan("eth2")));
    agent.kill();
    assert!(
        ruleset(&topo).contains(&lan("eth2")),
        "the killed agent left it"
    );
    agent.start(&bus).unwrap();
    let rs = ruleset(&topo);
    assert!(
        rs.contains(&lan("eth1")) && !rs.contains(&lan("eth2")),
        "{rs}"
    );

    // A damaged saved file: reported with its name, agent.toml's section loaded.
    let text = std::fs::read_to_string(&saved).unwrap();
    std::fs::write(&saved, text.replace("base = ", "base = [")).unwrap();
    restart(&mut agent);
    assert!(ruleset(&topo).contains(&lan("eth0")));
    let log = agent.log();
    let said = log
        .lines()
        .find(|l| l.contains("ERROR") && l.contains(&saved.display().to_string()))
        .unwrap_or_else(|| panic!("no error naming {}:\n{log}", saved.display()));
    assert!(
        said.contains("loading agent.toml's [firewall] instead"),
        "{said}"
    );

    // Kept again; then the admin edits agent.toml: the file's newer section wins.
    apply(&agent, "eth1");
    assert!(agent.ctl(&["firewall", "confirm"]).status.success());
    agent.options_mut().config = Some(section("eth3"));
    restart(&mut agent);
    let rs = ruleset(&topo);
    assert!(
        rs.contains(&lan("eth3")) && !rs.contains(&lan("eth1")),
        "{rs}"
    );
    assert!(
        agent
            .log()
            .contains("changed since the saved apply was confirmed"),
        "{}",
        agent.log()
    );

    // A bad file names itself (and the line) and nothing reaches the agent.
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "[firewall]\nconfirm_timeout_secs = \"soon\"\n").unwrap();
    let out = agent.ctl(&["firewall", "apply", bad.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(5), "{}", output_text(&out));
    assert!(
        output_text(&out).contains(&format!("{}:2:", bad.display())),
        "{}",
        output_text(&out)
    );
    assert!(ruleset(&topo).contains(&lan("eth3")));
}
