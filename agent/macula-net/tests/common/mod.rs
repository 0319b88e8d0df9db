//! Test support: network namespaces with a unique prefix, removed on drop (also after a panic).
//!
//! `macula-testkit::netns` is the shared builder once the foundation lands; these tests only need
//! namespaces, veth pairs and commands inside them.
#![allow(dead_code)] // each test binary uses a different subset

pub mod scenario;

use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};

static NEXT: AtomicU32 = AtomicU32::new(0);

/// Runs a command, panicking with its output when it fails.
pub fn sh(args: &[&str]) -> String {
    let out = Command::new(args[0]).args(&args[1..]).output().unwrap();
    assert!(
        out.status.success(),
        "{args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A network namespace `mnt<pid>-<n>`; deleted (with its interfaces) on drop.
pub struct Netns {
    pub name: String,
}

impl Netns {
    pub fn new() -> Self {
        let name = format!(
            "mnt{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        sh(&["ip", "netns", "add", &name]);
        let ns = Self { name };
        ns.exec(&["ip", "link", "set", "lo", "up"]);
        ns
    }

    /// Runs a command inside; panics on failure.
    pub fn exec(&self, args: &[&str]) -> String {
        let mut v = vec!["ip", "netns", "exec", &self.name];
        v.extend_from_slice(args);
        sh(&v)
    }

    /// Runs a command inside and returns its raw output.
    pub fn try_exec(&self, args: &[&str]) -> Output {
        Command::new("ip")
            .args(["netns", "exec", &self.name])
            .args(args)
            .output()
            .unwrap()
    }

    /// `nft list ruleset` inside.
    pub fn ruleset(&self) -> String {
        self.exec(&["nft", "list", "ruleset"])
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

/// Connects `a` and `b` with a veth pair `<a_if>`/`<b_if>` and gives each end an address (CIDR).
pub fn veth(a: &Netns, a_if: &str, a_addr: &str, b: &Netns, b_if: &str, b_addr: &str) {
    sh(&[
        "ip", "link", "add", a_if, "netns", &a.name, "type", "veth", "peer", "name", b_if, "netns",
        &b.name,
    ]);
    for (ns, ifn, addr) in [(a, a_if, a_addr), (b, b_if, b_addr)] {
        ns.exec(&["ip", "addr", "add", addr, "dev", ifn]);
        ns.exec(&["ip", "link", "set", ifn, "up"]);
    }
}

/// Silently drops everything arriving on `ifname` in `ns` (an ingress `policy drop` chain in a
/// netdev table of our own), like a path that went dark without carrier loss.
pub fn blackhole(ns: &Netns, ifname: &str) {
    let rule = format!(
        "table netdev mntbh {{\n chain in {{\n type filter hook ingress device \"{ifname}\" priority 0; policy drop;\n counter\n }}\n}}\n"
    );
    let mut c = Command::new("ip")
        .args(["netns", "exec", &ns.name, "nft", "-f", "-"])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    c.stdin.take().unwrap().write_all(rule.as_bytes()).unwrap();
    assert!(c.wait().unwrap().success(), "blackhole rule rejected");
}
