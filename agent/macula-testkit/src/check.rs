//! Small assertions shared by the multi-process tests: command output, JSON, polling.

use std::borrow::Borrow;
use std::process::Output;
use std::time::{Duration, Instant};

/// One HTTP/1.1 request to `127.0.0.1:port` (connection closed after it): status, `Content-Type`
/// and body.
pub fn try_http_get(port: u16, method: &str, path: &str) -> std::io::Result<(u16, String, String)> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port))?;
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    let bad = || std::io::Error::other(format!("not an HTTP response: {out:?}"));
    let (head, body) = out.split_once("\r\n\r\n").ok_or_else(bad)?;
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(bad)?;
    let ctype = head
        .lines()
        .find_map(|l| l.strip_prefix("Content-Type: "))
        .unwrap_or_default()
        .to_string();
    Ok((status, ctype, body.to_string()))
}

/// [`try_http_get`] that must succeed.
pub fn http_get(port: u16, method: &str, path: &str) -> (u16, String, String) {
    try_http_get(port, method, path)
        .unwrap_or_else(|e| panic!("{method} http://127.0.0.1:{port}{path}: {e}"))
}

/// Stdout and stderr of a command, for failure messages.
pub fn output_text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Asserts that a command (usually `maculactl`) succeeded; returns its stdout.
pub fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "command failed ({:?}): {}",
        out.status,
        output_text(out)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Asserts that a command succeeded and parses its stdout as JSON (`--json` output).
pub fn json(out: impl Borrow<Output>) -> serde_json::Value {
    let text = ok(out.borrow());
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

/// Polls `f` every 250 ms until it holds; panics naming `what` after `secs` seconds.
/// Returns how long it took.
pub fn wait_until(what: &str, secs: u64, mut f: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    while !f() {
        assert!(
            start.elapsed() < Duration::from_secs(secs),
            "timed out after {secs} s: {what}"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    start.elapsed()
}

/// Like [`wait_until`] for a condition that says why it does not hold yet: the last reason is
/// in the panic message.
pub fn wait_until_ok(what: &str, secs: u64, mut f: impl FnMut() -> Result<(), String>) -> Duration {
    let start = Instant::now();
    loop {
        match f() {
            Ok(()) => return start.elapsed(),
            Err(why) => assert!(
                start.elapsed() < Duration::from_secs(secs),
                "timed out after {secs} s: {what}: {why}"
            ),
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// Writes `len` pseudo-random bytes (xorshift from `seed`: incompressible, reproducible) to
/// `dir/name`; returns the path and the bytes.
pub fn file_of(
    dir: &std::path::Path,
    name: &str,
    len: usize,
    seed: u32,
) -> (std::path::PathBuf, Vec<u8>) {
    let mut x = seed.wrapping_mul(2_654_435_761).max(1);
    let data: Vec<u8> = (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect();
    let p = dir.join(name);
    std::fs::write(&p, &data).expect("write a test file");
    (p, data)
}

/// A UDP port on 127.0.0.1 that was free a moment ago.
pub fn free_udp_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .expect("bind an ephemeral UDP port")
        .port()
}

/// A TCP port on 127.0.0.1 that was free a moment ago.
pub fn free_tcp_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .expect("bind an ephemeral TCP port")
        .port()
}

/// The python of a venv at `dir` in which `import <modules>` works: made on first use with
/// `pip install <packages>` (which needs PyPI that once), reused afterwards.
pub fn python_venv(dir: &std::path::Path, modules: &str, packages: &[&str]) -> std::path::PathBuf {
    let python = dir.join("bin/python");
    let has = || {
        std::process::Command::new(&python)
            .args(["-c", &format!("import {modules}")])
            .output()
            .is_ok_and(|o| o.status.success())
    };
    // Tests in parallel processes share the venv: one makes it while the others wait.
    std::fs::create_dir_all(dir.parent().expect("a venv directory has a parent"))
        .expect("venv parent");
    let lock = std::fs::File::create(dir.with_extension("lock")).expect("venv lock file");
    // SAFETY: flock on a descriptor this function owns; released when `lock` is dropped.
    let locked = unsafe { libc::flock(std::os::fd::AsRawFd::as_raw_fd(&lock), libc::LOCK_EX) };
    assert_eq!(
        locked,
        0,
        "lock the venv: {}",
        std::io::Error::last_os_error()
    );
    if !has() {
        let out = std::process::Command::new("python3")
            .args(["-m", "venv"])
            .arg(dir)
            .output()
            .expect("python3 with venv (Debian python3-venv)");
        assert!(out.status.success(), "venv: {}", output_text(&out));
        let out = std::process::Command::new(dir.join("bin/pip"))
            .args(["install", "-q"])
            .args(packages)
            .output()
            .expect("pip");
        assert!(
            out.status.success(),
            "pip install {packages:?}: {}",
            output_text(&out)
        );
    }
    python
}
