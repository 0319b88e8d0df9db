//! The hub dashboard in a real browser: four `maculad` form a realm with storage (2 + 1) and
//! proofs in a network namespace whose firewall the hub owns; the hub serves the dashboard.
//! Raw HTTP first (malformed and oversized requests, no login, cross-origin, wrong methods). Debian's headless Chromium, driven over the
//! DevTools protocol (`dashboard_cdp.py`, websocket-client in a venv under the target dir),
//! is refused with a wrong token, logs in with the one `maculactl dashboard token` issued, sees
//! every member alive, finds no external URL, screenshots every page at 390 and 1280 px (in
//! `$CARGO_TARGET_TMPDIR/dashboard-screens`), then sees a killed member turn down and the
//! storage page's degraded count rise and fall back to 0 with the repair — without a reload;
//! admin actions from the page: a pending firewall apply confirmed, a one-time join code, the
//! killed member revoked; a new node joins with the code. Chromium and the script run inside
//! the namespace. A second test fetches the assets with curl, with and without
//! `--compressed`: gzip when asked for, the same bytes either way.

use std::path::{Path, PathBuf};
use std::process::Command;

use macula_testkit::check::{free_tcp_port, free_udp_port, ok, output_text, wait_until};
use macula_testkit::config::AgentConfig;
use macula_testkit::{Agent, AgentOptions, DbusDaemon};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};

use macula_core::NodeKey;
use macula_testkit::netns::Topology;
use macula_testkit::rauc::FakeRauc;
use macula_testkit::realm::{AgentRealm, Realm, RealmNode};

/// The realm's key seed (no other test uses it: realms of concurrent tests stay apart).
const REALM_SEED: u8 = 0x5d;

/// Resource reports every 500 ms on a 1 % change (the uptime and CPU columns).
const PROOFS: &str = "\n[proofs]\nenabled = true\n[proofs.spread]\nthreshold_permille = 10\n\
                      min_interval_ms = 500\nmax_interval_ms = 5000\n";

/// n1's RAUC's last error (the overview shows it in n1's row).
const FAILED_UPDATE: &str = "installing bundle failed: signature invalid";

/// The hub's firewall zones (it owns the namespace's firewall, where all four nodes run).
const ZONES: &str = "[firewall.zones.overlay]\ninterfaces = [\"mcl0\"]\n";

/// A venv with websocket-client under the target dir (made once; pip needs PyPI the first time).
fn cdp_python() -> PathBuf {
    macula_testkit::check::python_venv(
        &Path::new(env!("CARGO_TARGET_TMPDIR")).join("cdp-venv"),
        "websocket",
        &["websocket-client"],
    )
}

#[test]
fn dashboard_in_headless_chromium() {
    let python = cdp_python();
    let (port, open_port) = (free_tcp_port(), free_tcp_port());
    let mut topo = Topology::new("dsh");
    let ns = topo.add_ns("r");
    // Each node's RAUC: n1 booted B after an update that failed, the others A.
    let raucs: Vec<FakeRauc> = (0..4)
        .map(|i| match i {
            1 => FakeRauc::start("B", FAILED_UPDATE),
            _ => FakeRauc::start("A", ""),
        })
        .collect();
    let nodes = AgentRealm::new(4)
        .env(|i| vec![raucs[i].env()])
        .realm(Realm::from_seed(REALM_SEED))
        .netns(ns)
        .coded(2, 1)
        .storage_extra(|i| {
            // Repairs throttled to one every 2 s per leader (the bucket holds 2 s of
            // `repair_bytes_per_sec`, less than a shard): the page pushes the state every
            // second, and unthrottled, the degraded segments were sometimes repaired between
            // two pushes, never shown.
            let mut extra = format!("repair_bytes_per_sec = 4096{PROOFS}");
            if i == 0 {
                extra += &format!(
                    "[dashboard]\nlisten = \"127.0.0.1:{port}\"\n[firewall]\nenabled = true\n{ZONES}"
                );
            }
            // An edge's dashboard, read-only without login for loopback clients.
            if i == 1 {
                extra += &format!(
                    "[dashboard]\nlisten = \"127.0.0.1:{open_port}\"\nopen_on_loopback = true\n"
                );
            }
            extra
        })
        .start();
    // The hub holds the realm key, copied in while it runs (no restart): invites, the join
    // codes' redemption and revocations work at once.
    let key_dir = nodes[0].agent.state_dir().join("realm");
    std::fs::create_dir_all(&key_dir).unwrap();
    std::fs::set_permissions(&key_dir, std::fs::Permissions::from_mode(0o700)).unwrap();
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(key_dir.join("node.key"))
        .unwrap()
        .write_all(
            NodeKey::from_seed([REALM_SEED; 32])
                .to_key_file()
                .as_bytes(),
        )
        .unwrap();
    let hub = &nodes[0];
    let dir = tempfile::tempdir().unwrap();
    for i in 0..8 {
        let file = dir.path().join(format!("obj{i}"));
        std::fs::write(&file, vec![i as u8; 50_000 + i * 1000]).unwrap();
        ok(&hub.agent.ctl(&["put", file.to_str().unwrap()]));
    }
    // The edge holding the most shards goes away: the hub shares segments with it.
    let victim = (1..4)
        .max_by_key(|&i| RealmNode::shard_count(&nodes[i]))
        .unwrap();
    let token = ok(&hub.agent.ctl(&["dashboard", "token"]))
        .trim()
        .to_owned();
    assert!(token.starts_with("mdt_"), "{token}");
    assert!(!hub.agent.log().contains(&token), "the token was logged");
    let stored = std::fs::read_to_string(hub.agent.state_dir().join("dashboard/token")).unwrap();
    assert!(
        !stored.contains(&token[4..]),
        "the token is stored in clear"
    );
    // An apply that rolls back (the network page shows the last rollback), then one pending
    // for the page to confirm.
    let dir2 = tempfile::tempdir().unwrap();
    let apply = |secs: u32| {
        let file = dir2.path().join(format!("fw{secs}.toml"));
        std::fs::write(
            &file,
            format!("[firewall]\nconfirm_timeout_secs = {secs}\n{ZONES}"),
        )
        .unwrap();
        ok(&hub
            .agent
            .ctl(&["firewall", "apply", file.to_str().unwrap()]));
    };
    apply(1);
    wait_until("the apply rolled back", 10, || {
        let fw = ok(&hub.agent.ctl(&["firewall", "show", "--json"]));
        serde_json::from_str::<serde_json::Value>(&fw).unwrap()["rollbacks"] == 1
    });
    apply(300);
    let out_dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("dashboard-screens");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/dashboard_cdp.py");
    let out = topo
        .command("r", &[python.to_str().unwrap(), script.to_str().unwrap()])
        .env("URL", format!("http://127.0.0.1:{port}"))
        .env("OPEN_URL", format!("http://127.0.0.1:{open_port}"))
        .env("FAILED_UPDATE", FAILED_UPDATE)
        .env("TOKEN", &token)
        .env("VICTIM", nodes[victim].node_id())
        .env("VICTIM_PID", nodes[victim].agent.pid().unwrap().to_string())
        .env("OUT", &out_dir)
        .output()
        .expect("run python");
    assert!(
        out.status.success(),
        "the browser script failed:\n{}\n--- hub log ---\n{}",
        output_text(&out),
        hub.agent.log()
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    eprintln!(
        "dashboard figures: {stdout}screenshots in {}",
        out_dir.display()
    );
    // The join code the page made admits a new node.
    let figures: serde_json::Value = serde_json::from_str(stdout.trim()).expect("figures JSON");
    let code = figures["join_code"].as_str().expect("a join code");
    let witness = (1..4).find(|&i| i != victim).unwrap();
    let hub_port: u16 = nodes[witness]
        .peers()
        .iter()
        .find(|p| p["name"] == "n0")
        .and_then(|p| p["addrs"][0].as_str()?.rsplit(':').next()?.parse().ok())
        .expect("the hub's mesh port");
    let config = AgentConfig::loopback(free_udp_port())
        .name("n9")
        .bootstrap_port(hub_port);
    let new = RealmNode::spawn_in("n9", config.to_string(), Some(topo.ns("r")));
    let joined = new.agent.ctl(&["realm", "join", "--code", code]);
    assert!(
        joined.status.success(),
        "{}\n--- hub log ---\n{}\n--- n9 log ---\n{}",
        output_text(&joined),
        hub.agent.log(),
        new.agent.log()
    );
    wait_until("the hub sees n9 alive", 30, || {
        hub.peers()
            .iter()
            .any(|p| p["name"] == "n9" && p["state"] == "alive")
    });
}

#[test]
fn check_config_refuses_a_public_or_malformed_dashboard_address() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("agent.toml");
    let check = |body: &str| {
        std::fs::write(&path, body).unwrap();
        let out = Command::new(macula_testkit::bin("maculad"))
            .arg("--check-config")
            .arg(&path)
            .output()
            .unwrap();
        (out.status.code(), output_text(&out))
    };
    let hub = "[node]\nrole = \"hub\"\n";
    let (code, text) = check(&format!("{hub}[dashboard]\nlisten = \"0.0.0.0:9480\"\n"));
    assert_eq!(code, Some(1), "{text}");
    assert!(
        text.contains("[dashboard] listen 0.0.0.0:9480") && text.contains("public = true"),
        "{text}"
    );
    let (code, text) = check(&format!("{hub}[dashboard]\nlisten = \"hub.lan\"\n"));
    assert_eq!(code, Some(1), "{text}");
    assert!(text.contains("not an address:port"), "{text}");
    let (code, text) = check(&format!("{hub}[dashboard]\nlisen = \"127.0.0.1:1\"\n"));
    assert_eq!(code, Some(1), "{text}");
    assert!(text.contains(":4:") && text.contains("lisen"), "{text}");
    let (code, text) = check(&format!(
        "{hub}[dashboard]\nlisten = \"100.64.0.1:9480\"\nopen_on_loopback = true\n"
    ));
    assert_eq!(code, Some(0), "{text}");
}

/// The assets (compressed at build time) reach a client that accepts gzip compressed, and one
/// that does not as they are; both get the same files.
#[test]
fn assets_are_served_gzip_compressed_to_clients_that_take_it() {
    let port = free_tcp_port();
    let bus = DbusDaemon::start();
    let agent = Agent::spawn(
        &bus,
        AgentOptions {
            config: Some(format!("[dashboard]\nlisten = \"127.0.0.1:{port}\"\n")),
            ..Default::default()
        },
    );
    wait_until("the dashboard listens", 10, || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    let dir = tempfile::tempdir().unwrap();
    let assets = Path::new(env!("CARGO_MANIFEST_DIR")).join("../macula-web/src/assets");
    let (mut raw, mut wire) = (0, 0);
    for (path, file) in [
        ("/", "index.html"),
        ("/app.css", "app.css"),
        ("/app.js", "app.js"),
    ] {
        let source = std::fs::read(assets.join(file)).unwrap();
        let url = format!("http://127.0.0.1:{port}{path}");
        let fetch = |compressed: bool| {
            let (head, body) = (dir.path().join("head"), dir.path().join("body"));
            let mut cmd = Command::new("curl");
            cmd.args(["-sS", "--fail", "-w", "%{size_download}", "-D"])
                .arg(&head)
                .arg("-o")
                .arg(&body);
            if compressed {
                cmd.arg("--compressed");
            }
            let out = cmd.arg(&url).output().expect("curl (apt-get install curl)");
            assert!(
                out.status.success(),
                "{}\n{}",
                output_text(&out),
                agent.log()
            );
            let size: usize = String::from_utf8(out.stdout).unwrap().parse().unwrap();
            let head = std::fs::read_to_string(head).unwrap().to_ascii_lowercase();
            (head, std::fs::read(body).unwrap(), size)
        };
        let (head, body, size) = fetch(true);
        assert!(head.contains("content-encoding: gzip"), "{path}: {head}");
        assert!(head.contains("vary: accept-encoding"), "{path}: {head}");
        assert!(
            body == source,
            "{path}: curl's decoded body differs from {file}"
        );
        assert!(size < source.len(), "{path}: {size} bytes on the wire");
        wire += size;
        let (head, body, size) = fetch(false);
        assert!(!head.contains("content-encoding"), "{path}: {head}");
        assert!(body == source, "{path}: the plain body differs from {file}");
        assert_eq!(size, source.len());
        raw += size;
    }
    assert!(wire * 2 < raw, "{wire} of {raw} bytes on the wire");
    eprintln!("dashboard assets: {raw} bytes plain, {wire} bytes gzip-compressed on the wire");
}
