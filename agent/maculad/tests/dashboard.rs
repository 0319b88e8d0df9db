//! The hub dashboard in a real browser: four `maculad` form a realm with storage (2 + 1) and
//! proofs; node 0, the hub, serves the dashboard. Debian's headless Chromium, driven over the
//! DevTools protocol (`dashboard_cdp.py`, websocket-client in a venv under the target dir),
//! is refused with a wrong token, logs in with the one `maculactl dashboard token` issued, sees
//! every member alive, finds no external URL, screenshots every page at 390 and 1280 px (in
//! `$CARGO_TARGET_TMPDIR/dashboard-screens`), then sees a killed member turn down and the
//! storage page's degraded count rise and fall back to 0 with the repair — without a reload;
//! admin actions from the page: a one-time join code, the killed member revoked.

use std::path::{Path, PathBuf};
use std::process::Command;

use macula_testkit::check::{ok, output_text, wait_until};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};

use macula_core::NodeKey;
use macula_testkit::realm::{AgentRealm, Realm, RealmNode};

/// The realm's key seed (no other test uses it: realms of concurrent tests stay apart).
const REALM_SEED: u8 = 0x5d;

/// Resource reports every 500 ms on a 1 % change (the uptime and CPU columns).
const PROOFS: &str = "\n[proofs]\nenabled = true\n[proofs.spread]\nthreshold_permille = 10\n\
                      min_interval_ms = 500\nmax_interval_ms = 5000\n";

/// A venv with websocket-client under the target dir (made once; pip needs PyPI the first time).
fn cdp_python() -> PathBuf {
    let venv = Path::new(env!("CARGO_TARGET_TMPDIR")).join("cdp-venv");
    let python = venv.join("bin/python");
    let has = |p: &Path| {
        Command::new(p)
            .args(["-c", "import websocket"])
            .output()
            .is_ok_and(|o| o.status.success())
    };
    if !has(&python) {
        let out = Command::new("python3")
            .args(["-m", "venv", venv.to_str().unwrap()])
            .output()
            .expect("python3 (tests/deps/dashboard.list)");
        assert!(out.status.success(), "venv: {}", output_text(&out));
        let out = Command::new(venv.join("bin/pip"))
            .args(["install", "-q", "websocket-client"])
            .output()
            .expect("pip");
        assert!(
            out.status.success(),
            "pip install websocket-client: {}",
            output_text(&out)
        );
    }
    python
}

fn free_tcp_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

fn shard_files(n: &RealmNode) -> usize {
    let dir = n.agent.state_dir().join("shards").join("shards");
    std::fs::read_dir(dir).map_or(0, |d| {
        d.flatten()
            .map(|s| std::fs::read_dir(s.path()).map_or(0, |f| f.count()))
            .sum()
    })
}

#[test]
fn dashboard_in_headless_chromium() {
    let python = cdp_python();
    let port = free_tcp_port();
    let nodes = AgentRealm::new(4)
        .realm(Realm::from_seed(REALM_SEED))
        .coded(2, 1)
        .storage_extra(|i| {
            let mut extra = PROOFS.to_string();
            if i == 0 {
                extra += &format!("[dashboard]\nlisten = \"127.0.0.1:{port}\"\n");
            }
            extra
        })
        .start();
    let hub = &nodes[0];
    // The hub holds the realm key (as after `realm create`): invites and revocations work.
    let key_dir = hub.agent.state_dir().join("realm");
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
    let dir = tempfile::tempdir().unwrap();
    for i in 0..8 {
        let file = dir.path().join(format!("obj{i}"));
        std::fs::write(&file, vec![i as u8; 50_000 + i * 1000]).unwrap();
        ok(&hub.agent.ctl(&["put", file.to_str().unwrap()]));
    }
    // The edge holding the most shards goes away: the hub shares segments with it.
    let victim = (1..4).max_by_key(|&i| shard_files(&nodes[i])).unwrap();
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
    wait_until("the dashboard listens", 20, || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    // Bad requests get clear errors; bounds hold; nothing is shown without a login.
    let raw = |req: &str| {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.write_all(req.as_bytes()).unwrap();
        let mut out = String::new();
        let _ = s.read_to_string(&mut out);
        out
    };
    let get = |path: &str| {
        raw(&format!(
            "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        ))
    };
    let post = |path: &str, extra: &str, body: &str| {
        raw(&format!(
            "POST {path} HTTP/1.1\r\nHost: h:1\r\nConnection: close\r\n{extra}Content-Length: {}\r\n\r\n{body}",
            body.len()
        ))
    };
    let r = get("/api/state");
    assert!(
        r.starts_with("HTTP/1.1 401") && r.contains("not logged in"),
        "{r}"
    );
    let r = get("/api/events");
    assert!(r.starts_with("HTTP/1.1 401"), "{r}");
    let r = raw("GET /\r\n\r\n");
    assert!(
        r.starts_with("HTTP/1.1 400") && r.contains("malformed request line"),
        "{r}"
    );
    let r = raw(&format!(
        "GET / HTTP/1.1\r\nX: {}\r\n\r\n",
        "a".repeat(20_000)
    ));
    assert!(
        r.starts_with("HTTP/1.1 400") && r.contains("larger than 16 KiB"),
        "{r}"
    );
    let r = post("/api/login", "", &"x".repeat(5000));
    assert!(r.starts_with("HTTP/1.1 413"), "{r}");
    let r = post("/api/login", "", "token=x");
    assert!(
        r.starts_with("HTTP/1.1 400") && r.contains("bad request body"),
        "{r}"
    );
    let r = post(
        "/api/login",
        "Origin: http://evil.example\r\n",
        &format!(r#"{{"token":"{token}"}}"#),
    );
    assert!(
        r.starts_with("HTTP/1.1 403") && r.contains("cross-origin"),
        "{r}"
    );
    let r = post(
        "/api/login",
        "Origin: http://h:1\r\n",
        &format!(r#"{{"token":"{token}"}}"#),
    );
    assert!(
        r.starts_with("HTTP/1.1 200") && r.contains("HttpOnly; SameSite=Strict"),
        "{r}"
    );
    let r = post("/api/revoke", "", r#"{"node_id":"x"}"#);
    assert!(r.starts_with("HTTP/1.1 401"), "{r}");
    let r = raw("PUT /api/state HTTP/1.1\r\nConnection: close\r\n\r\n");
    assert!(r.starts_with("HTTP/1.1 405"), "{r}");
    let r = get("/nothing");
    assert!(r.starts_with("HTTP/1.1 404"), "{r}");
    let r = get("/");
    assert!(
        r.contains("Content-Security-Policy: default-src 'self'"),
        "{r}"
    );

    let out_dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("dashboard-screens");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/dashboard_cdp.py");
    let out = Command::new(&python)
        .arg(&script)
        .env("URL", format!("http://127.0.0.1:{port}"))
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
    eprintln!(
        "dashboard figures: {}screenshots in {}",
        String::from_utf8_lossy(&out.stdout),
        out_dir.display()
    );
}
