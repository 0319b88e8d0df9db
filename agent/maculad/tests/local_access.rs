//! What a local user who is not root (nor in group `macula`) can do to a real `maculad` on a
//! private `dbus-daemon` that loads the appliance's policy file: every state-changing method —
//! found by introspecting the running agent, so a new method cannot slip past — is refused; the
//! signals that carry another caller's data never reach it; the agent opens no path a caller
//! names; and files the agent writes in its state directory are never written through a link
//! planted there.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::os::unix::fs::symlink;
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use macula_mesh::realm::Role;
use macula_testkit::check::{free_udp_port, ok, output_text, wait_until};
use macula_testkit::config::AgentConfig;
use macula_testkit::realm::{AgentRealm, Realm};
use macula_testkit::{Agent, AgentOptions, DbusDaemon, repo_root};

/// The read-only methods, as reviewed: anyone may call these. The policy file's allow list must
/// say exactly this, so widening it means changing this list too.
const READ_ONLY: &[&str] = &[
    "io.macula.Firewall1.Status",
    "io.macula.Mesh1.Certificate",
    "io.macula.Mesh1.Reports",
    "io.macula.Node1.PeerResources",
    "io.macula.Node1.Status",
    "io.macula.Node1.Workers",
    "io.macula.Overlay1.Peers",
    "io.macula.Proofs1.History",
    "io.macula.Proofs1.Ledger",
    "io.macula.Proofs1.Status",
    "io.macula.Overlay1.Status",
    "io.macula.S3.Status",
    "io.macula.Storage1.Stat",
    "io.macula.Update1.Rollout",
    "io.macula.Update1.Status",
    "io.macula.Uplinks1.Links",
];

const POLICY: &str = "overlay/etc/dbus-1/system.d/io.macula.Agent.conf";

/// `iface.Member` pairs the policy's default context allows to everyone (`send_interface` +
/// `send_member` on `io.macula.*`).
fn policy_read_only() -> BTreeSet<String> {
    let text = std::fs::read_to_string(repo_root().join(POLICY)).unwrap();
    let default = &text[text
        .find("<policy context=\"default\">")
        .expect("default context")..];
    let attr = |line: &str, name: &str| {
        let at = line.find(&format!("{name}=\""))? + name.len() + 2;
        Some(line[at..at + line[at..].find('"')?].to_string())
    };
    default
        .lines()
        .filter(|l| {
            l.trim_start()
                .starts_with("<allow send_destination=\"io.macula.Agent\"")
        })
        .filter_map(|l| {
            Some(format!(
                "{}.{}",
                attr(l, "send_interface")?,
                attr(l, "send_member")?
            ))
        })
        .filter(|m| m.starts_with("io.macula."))
        .collect()
}

/// `dbus-send` as `user` (root when `None`), no arguments: prints the error name on failure.
fn call(bus: &DbusDaemon, user: Option<&str>, path: &str, member: &str) -> Output {
    let dest = format!("--bus={}", bus.address());
    let args = [
        dest.as_str(),
        "--print-reply",
        "--reply-timeout=10000",
        "--dest=io.macula.Agent",
        path,
        member,
    ];
    match user {
        Some(u) => macula_testkit::agent::run_as(u, std::path::Path::new("dbus-send"), &args),
        None => Command::new("dbus-send").args(args).output().unwrap(),
    }
}

const DENIED: &str = "org.freedesktop.DBus.Error.AccessDenied";

/// `(interface, member)` pairs.
type Members = Vec<(String, String)>;

/// Object paths the agent exports, and per path its interfaces' methods and writable properties.
fn introspect_all(bus: &DbusDaemon) -> Vec<(String, Members, Members)> {
    let tree = ok(&bus.busctl(&["tree", "--list", "io.macula.Agent"]));
    let mut out = Vec::new();
    for path in tree.lines().map(str::trim).filter(|l| l.starts_with('/')) {
        let xml = ok(&bus.busctl(&["introspect", "--xml-interface", "io.macula.Agent", path]));
        let (mut methods, mut writable) = (Vec::new(), Vec::new());
        let mut iface = String::new();
        // Child objects may be introspected inline; they are visited as paths of their own.
        let mut depth = 0;
        for tag in xml.split('<').map(str::trim) {
            let name = || {
                let at = tag.find("name=\"")? + 6;
                Some(tag[at..at + tag[at..].find('"')?].to_string())
            };
            if (tag.starts_with("node>") || tag.starts_with("node ")) && !tag.ends_with("/>") {
                depth += 1;
            } else if tag.starts_with("/node>") {
                depth -= 1;
            } else if depth != 1 {
                continue;
            } else if tag.starts_with("interface ") {
                iface = name().unwrap();
            } else if tag.starts_with("method ") {
                methods.push((iface.clone(), name().unwrap()));
            } else if tag.starts_with("property ") && tag.contains("access=\"readwrite\"")
                || tag.starts_with("property ") && tag.contains("access=\"write\"")
            {
                writable.push((iface.clone(), name().unwrap()));
            }
        }
        out.push((path.to_string(), methods, writable));
    }
    out
}

#[test]
fn every_state_changing_method_refuses_an_unprivileged_caller() {
    assert_eq!(
        policy_read_only(),
        READ_ONLY.iter().map(|s| s.to_string()).collect(),
        "the policy's read-only allow list differs from the reviewed one in this test"
    );
    let bus = DbusDaemon::start();
    // Every subsystem section present, so every interface is served.
    let _agent = Agent::spawn(&bus, AgentOptions::default());
    let objects = introspect_all(&bus);
    let mut ours = Vec::new();
    let mut seen = BTreeSet::new();
    for (path, methods, writable) in &objects {
        for (iface, method) in methods {
            seen.insert(format!("{iface}.{method}"));
            if iface.starts_with("io.macula.") {
                ours.push((path.clone(), format!("{iface}.{method}")));
            }
        }
        // No property is writable through org.freedesktop.DBus.Properties.Set, and Set itself
        // is refused to the unprivileged caller.
        assert!(
            writable.is_empty(),
            "writable properties on {path}: {writable:?}"
        );
        let out = call(
            &bus,
            Some("nobody"),
            path,
            "org.freedesktop.DBus.Properties.Set",
        );
        assert!(output_text(&out).contains(DENIED), "{}", output_text(&out));
    }
    for m in READ_ONLY {
        assert!(
            seen.contains(*m),
            "{m} is allowed by the policy but not served"
        );
    }
    let interfaces: BTreeSet<&str> = ours
        .iter()
        .map(|(_, m)| m.rsplit_once('.').unwrap().0)
        .collect();
    for i in [
        "Node1",
        "Mesh1",
        "Storage1",
        "Firewall1",
        "Overlay1",
        "Uplinks1",
        "Update1",
        "Proofs1",
    ] {
        assert!(
            interfaces.contains(format!("io.macula.{i}").as_str()),
            "{i} not served: {interfaces:?}"
        );
    }
    let mut refused = 0;
    for (path, member) in &ours {
        let as_nobody = call(&bus, Some("nobody"), path, member);
        let text = output_text(&as_nobody);
        if READ_ONLY.contains(&member.as_str()) {
            assert!(
                !text.contains(DENIED),
                "{member} is read-only but refused: {text}"
            );
            continue;
        }
        assert!(
            !as_nobody.status.success(),
            "nobody called {member}: {text}"
        );
        assert!(text.contains(DENIED), "nobody calling {member}: {text}");
        // Root reaches the same method (it answers, if only about the missing arguments): the
        // refusal above is the policy's, not a missing method.
        let as_root = output_text(&call(&bus, None, path, member));
        assert!(
            !as_root.contains(DENIED) && !as_root.contains("UnknownMethod"),
            "root calling {member}: {as_root}"
        );
        refused += 1;
    }
    eprintln!(
        "{refused} state-changing methods refused to nobody, {} read-only",
        READ_ONLY.len()
    );
    assert!(
        refused >= 15,
        "only {refused} state-changing methods found: {ours:?}"
    );
}

#[test]
fn storage_has_no_methods_that_open_a_callers_path() {
    let bus = DbusDaemon::start();
    let _agent = Agent::spawn(
        &bus,
        AgentOptions {
            config: Some(
                AgentConfig::default()
                    .storage("enabled = true\nquota_bytes = 1048576\n")
                    .to_string(),
            ),
            ..Default::default()
        },
    );
    let intro = ok(&bus.busctl(&[
        "introspect",
        "io.macula.Agent",
        "/io/macula/Agent",
        "io.macula.Storage1",
    ]));
    let methods: Vec<&str> = intro
        .lines()
        .filter(|l| l.contains(" method "))
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert_eq!(
        methods,
        [
            ".Delete",
            ".GetFd",
            ".PurgeOwner",
            ".PurgeRealm",
            ".PutFd",
            ".Stat"
        ],
        "{intro}"
    );
    for (member, sig, args) in [
        ("Put", "s", vec!["/etc/shadow"]),
        ("Get", "ss", vec!["macula-cap1-x", "/etc/passwd"]),
    ] {
        let mut a = vec![
            "call",
            "io.macula.Agent",
            "/io/macula/Agent",
            "io.macula.Storage1",
            member,
            sig,
        ];
        a.extend(args);
        let out = bus.busctl(&a);
        assert!(!out.status.success());
        assert!(
            output_text(&out).contains("Unknown method"),
            "{member}: {}",
            output_text(&out)
        );
    }
}

/// Collects a child's stdout lines as they arrive.
fn collect(child: &mut Child) -> Arc<Mutex<String>> {
    let text = Arc::new(Mutex::new(String::new()));
    let out = child.stdout.take().unwrap();
    let t = text.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            let mut t = t.lock().unwrap();
            t.push_str(&line);
            t.push('\n');
        }
    });
    text
}

#[test]
fn a_callers_signals_reach_that_caller_alone() {
    let nodes = AgentRealm::new(2).coded(1, 1).start();
    let (n0, n1) = (&nodes[0], &nodes[1]);
    // An unprivileged user listens to every signal the agent sends (dbus-monitor falls back to
    // an eavesdropping match rule when it may not become a monitor).
    let mut monitor = Command::new("setpriv")
        .args([
            "--reuid=nobody",
            "--regid=nogroup",
            "--clear-groups",
            "dbus-monitor",
        ])
        .args(["--address", n0.bus.address()])
        .arg("sender='io.macula.Agent'")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let seen = collect(&mut monitor);
    let changes = || {
        seen.lock()
            .unwrap()
            .matches("member=PropertiesChanged")
            .count()
    };
    // Broadcast status signals do reach it: it is listening.
    wait_until("the unprivileged monitor hears a status signal", 20, || {
        ok(&n0.agent.ctl(&["node", "log-level", "debug"]));
        ok(&n0.agent.ctl(&["node", "log-level", "info"]));
        changes() >= 2
    });

    // Root subscribes on n0; n1 publishes. The subscriber gets the payload.
    let mut sub = Command::new(macula_testkit::bin("maculactl"))
        .args([
            "--bus",
            n0.bus.address(),
            "sub",
            "secret/topic",
            "--count",
            "1",
            "--json",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let got = collect(&mut sub);
    wait_until("the subscriber receives the publication", 30, || {
        ok(&n1.agent.ctl(&["pub", "secret/topic", "payload-7f3a"]));
        std::thread::sleep(Duration::from_millis(500));
        got.lock().unwrap().contains("payload-7f3a")
    });
    assert!(sub.wait().unwrap().success());

    // Root stores a file: its own maculactl shows the progress.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("private-name-91c2.bin");
    std::fs::write(&file, vec![7u8; 3 << 20]).unwrap();
    let put = n0.agent.ctl(&["put", file.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&put.stderr);
    assert!(put.status.success() && err.contains("100%"), "{err}");

    // A last status signal, delivered after everything above (the bus keeps the order).
    let before = changes();
    ok(&n0.agent.ctl(&["node", "log-level", "debug"]));
    wait_until("the monitor hears the closing status signal", 20, || {
        changes() > before
    });
    let _ = monitor.kill();
    let _ = monitor.wait();
    let heard = seen.lock().unwrap().clone();
    for leak in [
        "member=Publication",
        "member=Progress",
        "payload-7f3a",
        "private-name-91c2",
    ] {
        assert!(
            !heard.contains(leak),
            "an unprivileged user heard {leak}:\n{heard}"
        );
    }
}

#[test]
fn state_files_are_not_written_through_planted_links() {
    let bus = DbusDaemon::start();
    let port = free_udp_port();
    let agent = Agent::spawn(
        &bus,
        AgentOptions {
            config: Some(AgentConfig::loopback(port).to_string()),
            ..Default::default()
        },
    );
    let state = agent.state_dir();
    let victim_dir = tempfile::tempdir().unwrap();
    let victim = victim_dir.path().join("victim");
    std::fs::write(&victim, "precious").unwrap();
    // Links at the names the agent writes the certificate through (old and current scheme).
    for name in ["realm.cert.tmp", ".realm.cert.tmp"] {
        symlink(&victim, state.join(name)).unwrap();
    }
    let status: serde_json::Value =
        serde_json::from_str(&ok(&agent.ctl(&["status", "--json"]))).unwrap();
    let cert = Realm::generate().cert(
        status["node_id"].as_str().unwrap().parse().unwrap(),
        Role::Hub,
        "solo",
    );
    let file = victim_dir.path().join("solo.cert");
    std::fs::write(&file, cert.to_text()).unwrap();
    ok(&agent.ctl(&["realm", "join", file.to_str().unwrap()]));
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious");
    let installed = std::fs::symlink_metadata(state.join("realm.cert")).unwrap();
    assert!(installed.is_file());
    assert_eq!(
        std::fs::read_to_string(state.join("realm.cert")).unwrap(),
        cert.to_text()
    );
}
