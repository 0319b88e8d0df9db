//! The real daemon on a private bus, driven through maculactl and busctl.

use std::os::unix::fs::PermissionsExt;
use std::process::Command;
use std::time::Duration;

use macula_testkit::{Agent, AgentOptions, DbusDaemon, maculactl, maculactl_as};

fn stdout(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}
fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn status_json(agent: &Agent) -> serde_json::Value {
    let out = agent.ctl(&["status", "--json"]);
    assert!(
        out.status.success(),
        "status --json failed: {}",
        stderr(&out)
    );
    serde_json::from_slice(&out.stdout).expect("status --json prints JSON")
}

#[test]
fn serves_node1_and_status() {
    let bus = DbusDaemon::start();
    let agent = Agent::spawn(
        &bus,
        AgentOptions {
            config: Some("[node]\nname = \"hub-1\"\nrole = \"hub\"\n".into()),
            ..Default::default()
        },
    );

    let intro = bus.busctl(&["introspect", "io.macula.Agent", "/io/macula/Agent"]);
    assert!(intro.status.success(), "{}", stderr(&intro));
    let intro = stdout(&intro);
    assert!(intro.contains("io.macula.Node1"), "{intro}");
    assert!(intro.contains(".NodeId"), "{intro}");

    let json = status_json(&agent);
    let node_id = json["node_id"].as_str().expect("node_id");
    assert_eq!(node_id.len(), 52);
    assert_eq!(json["name"], "hub-1");
    assert_eq!(json["role"], "hub");
    assert_eq!(json["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(json["node_id_short"].as_str().unwrap(), &node_id[..8]);

    let table = agent.ctl(&["status"]);
    assert!(table.status.success());
    let table = stdout(&table);
    assert!(table.contains("Macula node hub-1"), "{table}");
    assert!(table.contains(node_id), "{table}");

    // The property as any D-Bus client sees it.
    let prop = bus.busctl(&[
        "get-property",
        "io.macula.Agent",
        "/io/macula/Agent",
        "io.macula.Node1",
        "NodeId",
    ]);
    assert_eq!(stdout(&prop).trim(), format!("s \"{node_id}\""));
}

#[test]
fn identity_survives_restart_and_sigterm_is_clean() {
    let bus = DbusDaemon::start();
    let mut agent = Agent::spawn(&bus, AgentOptions::default());
    let first = status_json(&agent)["node_id"].clone();
    let key = agent.state_dir().join("node.key");
    let mode = std::fs::metadata(&key).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);

    let (status, took) = agent.stop(Duration::from_secs(2));
    assert!(
        status.success(),
        "exit status {status}; log:\n{}",
        agent.log()
    );
    assert!(took < Duration::from_secs(2), "stopping took {took:?}");
    assert!(!bus.name_has_owner("io.macula.Agent"));

    agent.start(&bus).unwrap();
    assert_eq!(status_json(&agent)["node_id"], first);
    assert!(agent.log().contains("created a new node identity"));
    assert_eq!(
        agent.log().matches("created a new node identity").count(),
        1
    );
}

#[test]
fn corrupt_or_exposed_key_refuses_to_start() {
    let bus = DbusDaemon::start();
    let mut agent = Agent::spawn(&bus, AgentOptions::default());
    agent.stop(Duration::from_secs(2));
    let key = agent.state_dir().join("node.key");
    let original = std::fs::read(&key).unwrap();

    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let err = agent.start(&bus).unwrap_err();
    assert!(
        err.contains("readable or writable by group/others"),
        "{err}"
    );
    assert!(err.contains("chmod 600"), "{err}");

    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    let mut damaged = original.clone();
    let last = damaged.len() - 2;
    damaged[last] = if damaged[last] == b'a' { b'b' } else { b'a' };
    std::fs::write(&key, &damaged).unwrap();
    let err = agent.start(&bus).unwrap_err();
    assert!(err.contains("is corrupt"), "{err}");
    // Never silently replaced.
    assert_eq!(std::fs::read(&key).unwrap(), damaged);

    std::fs::write(&key, &original).unwrap();
    agent.start(&bus).unwrap();
}

/// `maculad --check-config` of `body` written to `path`.
fn check_config(path: &std::path::Path, body: &str) -> std::process::Output {
    std::fs::write(path, body).unwrap();
    Command::new(macula_testkit::bin("maculad"))
        .arg("--check-config")
        .arg(path)
        .output()
        .unwrap()
}

#[test]
fn check_config_resolves_bootstrap_names() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("agent.toml");
    let check = |body: &str| check_config(&path, body);
    // `localhost` resolves through /etc/hosts; an IP contact is kept as is
    let out = check("[mesh]\nbootstrap = [\"localhost:4433\", \"192.0.2.1:4433\"]\n");
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("[mesh] bootstrap localhost:4433 -> 127.0.0.1:4433")
            || text.contains("[mesh] bootstrap localhost:4433 -> [::1]:4433"),
        "{text}"
    );
    assert!(
        text.contains("[mesh] bootstrap 192.0.2.1:4433 -> 192.0.2.1:4433"),
        "{text}"
    );
    // a malformed entry makes the file invalid
    let out = check("[mesh]\nbootstrap = [\"localhost\"]\n");
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("write `host:port`"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn check_config_checks_mesh_limits() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("agent.toml");
    let check = |body: &str| check_config(&path, body);
    let out = check("[mesh.limits]\ncalls_per_sec = 10\nconnections = 2\n");
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let out = check("[mesh.limits]\ncalls_in_flight = 0\n");
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("[mesh.limits] calls_in_flight must be at least 1"),
        "{}",
        stderr(&out)
    );
    let out = check("[mesh.limits]\nrate = 5\n");
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("unknown field `rate`"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn bad_config_names_file_line_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("agent.toml");
    std::fs::write(&path, "[node]\nname = \"n1\"\nrole = \"core\"\n").unwrap();
    let maculad = macula_testkit::bin("maculad");
    let out = Command::new(&maculad)
        .arg("--check-config")
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains(&format!("{}:3:8: key `node.role`", path.display())),
        "{err}"
    );
    assert!(err.contains("unknown variant `core`"), "{err}");

    std::fs::write(&path, "").unwrap();
    let out = Command::new(&maculad)
        .arg("--check-config")
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let sample = macula_testkit::repo_root().join("overlay/etc/macula/agent.toml");
    let out = Command::new(&maculad)
        .arg("--check-config")
        .arg(&sample)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));

    // The daemon itself refuses to start on a bad file.
    let bus = DbusDaemon::start();
    let out = Command::new(&maculad)
        .args(["--bus", bus.address(), "--state-dir"])
        .arg(dir.path().join("state"))
        .arg("--config")
        .arg(dir.path().join("missing.toml"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(stderr(&out).contains("missing.toml"), "{}", stderr(&out));
}

/// `[storage] quota_percent` offers a share of the file system holding the store, measured at
/// start (a grown SD card or a USB disk is used whole); a bad share stops the daemon with the key.
#[test]
fn storage_quota_percent_measures_the_file_system() {
    let bus = DbusDaemon::start();
    let agent = Agent::spawn(
        &bus,
        AgentOptions {
            config: Some("[storage]\nenabled = true\nquota_percent = 50\n".into()),
            ..Default::default()
        },
    );
    let out = agent.ctl(&["storage", "status", "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let total = macula_core::fsutil::fs_space(&agent.state_dir())
        .unwrap()
        .total;
    assert_eq!(status["stats"]["quota_bytes"], total / 2, "{status}");

    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("agent.toml");
    std::fs::write(&config, "[storage]\nenabled = true\nquota_percent = 150\n").unwrap();
    let other_bus = DbusDaemon::start();
    let out = Command::new(macula_testkit::bin("maculad"))
        .args(["--bus", other_bus.address(), "--state-dir"])
        .arg(dir.path().join("state"))
        .arg("--config")
        .arg(&config)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("storage.quota_percent = 150"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn policy_lets_anyone_read_but_only_root_change() {
    let bus = DbusDaemon::start();
    let agent = Agent::spawn(&bus, AgentOptions::default());

    let out = maculactl_as("nobody", bus.address(), &["status", "--json"]);
    assert!(
        out.status.success(),
        "nobody may read status: {}",
        stderr(&out)
    );
    let out = maculactl_as("nobody", bus.address(), &["node", "log-level"]);
    assert!(
        out.status.success(),
        "nobody may read properties: {}",
        stderr(&out)
    );
    assert_eq!(stdout(&out).trim(), "info");

    let out = maculactl_as("nobody", bus.address(), &["node", "log-level", "debug"]);
    assert_eq!(out.status.code(), Some(4), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("permission denied"),
        "{}",
        stderr(&out)
    );

    let out = agent.ctl(&["node", "log-level", "debug"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(status_json(&agent)["log_level"], "debug");

    // Invalid arguments get a named error (busctl bypasses the CLI's own check).
    let out = bus.busctl(&[
        "call",
        "io.macula.Agent",
        "/io/macula/Agent",
        "io.macula.Node1",
        "SetLogLevel",
        "s",
        "loud",
    ]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("not a log level"), "{}", stderr(&out));
}

#[test]
fn no_daemon_is_reported_plainly() {
    let bus = DbusDaemon::start();
    let out = maculactl(bus.address(), &["status"]);
    assert_eq!(out.status.code(), Some(3));
    assert!(stderr(&out).contains("not running"), "{}", stderr(&out));

    let out = maculactl("unix:path=/nonexistent/bus", &["status"]);
    assert_eq!(out.status.code(), Some(3));
    assert!(stderr(&out).contains("cannot connect"), "{}", stderr(&out));
}

#[test]
fn second_agent_on_same_bus_is_refused() {
    let bus = DbusDaemon::start();
    let _first = Agent::spawn(&bus, AgentOptions::default());
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(macula_testkit::bin("maculad"))
        .args(["--bus", bus.address(), "--state-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(stderr(&out).contains("already running"), "{}", stderr(&out));
}

#[test]
fn json_logs_are_json() {
    let bus = DbusDaemon::start();
    let agent = Agent::spawn(
        &bus,
        AgentOptions {
            args: vec!["--log-format".into(), "json".into()],
            ..Default::default()
        },
    );
    let log = agent.log();
    let ready = log
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).expect("every line is JSON"))
        .find(|v| v["fields"]["message"] == "maculad ready")
        .expect("a ready line");
    assert_eq!(ready["level"], "INFO");
    assert_eq!(ready["fields"]["node_id"].as_str().unwrap().len(), 52);
}

#[test]
fn completions_and_man_page() {
    let ctl = macula_testkit::bin("maculactl");
    let out = Command::new(&ctl)
        .args(["completions", "bash"])
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(stdout(&out).contains("maculactl"));
    let out = Command::new(&ctl).arg("man").output().unwrap();
    assert!(out.status.success());
    assert!(stdout(&out).contains(".TH maculactl"));
}

#[test]
fn readiness_is_notified_on_the_ready_fd_once_the_name_is_owned() {
    use std::io::BufRead;

    let bus = DbusDaemon::start();
    let dir = tempfile::tempdir().unwrap();
    // As the image's maculad-run does: fd 3 is a pipe to the waiting reader (here: this test,
    // through the shell's stdout); maculad's own output goes elsewhere.
    let mut child = Command::new("sh")
        .args([
            "-c",
            r#"exec "$0" --bus "$1" --state-dir "$2" --ready-fd 3 3>&1 >/dev/null 2>"$2.log""#,
        ])
        .arg(macula_testkit::bin("maculad"))
        .arg(bus.address())
        .arg(dir.path())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Lines read from fd 3, by a thread (a missing notification fails, it does not hang).
    let (tx, rx) = std::sync::mpsc::channel();
    let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
    std::thread::spawn(move || {
        loop {
            let mut line = String::new();
            let n = out.read_line(&mut line).unwrap_or(0);
            let _ = tx.send(line);
            if n == 0 {
                break;
            }
        }
    });
    let wait = Duration::from_secs(30);
    assert_eq!(
        rx.recv_timeout(wait).unwrap(),
        "\n",
        "one newline when ready"
    );
    assert!(
        bus.name_has_owner("io.macula.Agent"),
        "notified before the name was owned"
    );
    // Then the descriptor is closed: the reader sees the end (the agent keeps running).
    assert_eq!(rx.recv_timeout(wait).unwrap(), "", "fd 3 left open");
    assert!(child.try_wait().unwrap().is_none(), "the agent exited");
    child.kill().unwrap();
    child.wait().unwrap();

    // A descriptor that is not open is refused before anything starts.
    let out = Command::new(macula_testkit::bin("maculad"))
        .args(["--bus", bus.address(), "--state-dir"])
        .arg(dir.path())
        .args(["--ready-fd", "57"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("--ready-fd 57: no such open file descriptor"),
        "{}",
        stderr(&out)
    );
}
