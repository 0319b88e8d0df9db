//! Network-namespace topologies for tests: namespaces, veth links, addresses, and nft rules for
//! loss and partitions. Everything carries a per-topology prefix and is removed on drop (also when
//! the test panics). Needs root (or `unshare -rn`) and iproute2 + nftables.

use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A set of namespaces and links with a unique name prefix.
pub struct Topology {
    prefix: String,
    namespaces: Vec<String>,
}

/// Runs a command and panics with its output when it fails.
pub fn run(cmd: &mut Command) -> Output {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

impl Topology {
    /// A new, empty topology. `tag` (≤ 4 chars) helps tell tests apart in `ip netns list`.
    pub fn new(tag: &str) -> Self {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        // Short: interface names are limited to 15 bytes.
        let prefix = format!("m{}{}{}", tag, std::process::id() % 10000, n);
        Topology {
            prefix,
            namespaces: Vec::new(),
        }
    }

    /// The full name of namespace `name` in this topology.
    pub fn ns(&self, name: &str) -> String {
        format!("{}-{}", self.prefix, name)
    }

    /// Creates namespace `name` with `lo` up; returns its full name.
    pub fn add_ns(&mut self, name: &str) -> String {
        let full = self.ns(name);
        run(Command::new("ip").args(["netns", "add", &full]));
        self.namespaces.push(full.clone());
        self.exec(name, &["ip", "link", "set", "lo", "up"]);
        full
    }

    /// Links namespaces `a` and `b` with a veth pair named `<a>-<b>`-ish, assigns the given
    /// CIDR addresses (e.g. `10.1.0.1/24`) and brings both ends up. Returns the interface names.
    pub fn link(&self, a: &str, addr_a: &str, b: &str, addr_b: &str) -> (String, String) {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let if_a = format!("v{}a{}", n, short(a));
        let if_b = format!("v{}b{}", n, short(b));
        run(Command::new("ip").args([
            "link",
            "add",
            &if_a,
            "netns",
            &self.ns(a),
            "type",
            "veth",
            "peer",
            "name",
            &if_b,
            "netns",
            &self.ns(b),
        ]));
        for (ns, ifname, addr) in [(a, &if_a, addr_a), (b, &if_b, addr_b)] {
            self.exec(ns, &["ip", "addr", "add", addr, "dev", ifname]);
            self.exec(ns, &["ip", "link", "set", ifname, "up"]);
        }
        (if_a, if_b)
    }

    /// Runs a command inside namespace `name` and panics if it fails.
    pub fn exec(&self, name: &str, args: &[&str]) -> Output {
        run(&mut self.command(name, args))
    }

    /// A command that runs inside namespace `name` (not started).
    pub fn command(&self, name: &str, args: &[&str]) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.ns(name)]).args(args);
        c
    }

    /// Silently drops everything arriving on `ifname` in namespace `name` (a path going dark),
    /// using an ingress table named `testkit_drop_<ifname>`.
    pub fn drop_ingress(&self, name: &str, ifname: &str) {
        let rules = format!(
            "table netdev testkit_drop_{i} {{ chain in {{ type filter hook ingress device \"{i}\" priority 0; policy drop; }}\n}}\n",
            i = ifname
        );
        self.nft(name, &rules);
    }

    /// Undoes [`Topology::drop_ingress`].
    pub fn restore_ingress(&self, name: &str, ifname: &str) {
        self.exec(
            name,
            &[
                "nft",
                "delete",
                "table",
                "netdev",
                &format!("testkit_drop_{ifname}"),
            ],
        );
    }

    /// Loads an nft script inside namespace `name`.
    pub fn nft(&self, name: &str, script: &str) {
        use std::io::Write;
        let mut child = self
            .command(name, &["nft", "-f", "-"])
            .stdin(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("run nft (apt-get install nftables)");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(script.as_bytes())
            .expect("write nft script");
        let out = child.wait_with_output().expect("wait for nft");
        assert!(
            out.status.success(),
            "nft failed: {}\n{script}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

fn short(name: &str) -> String {
    name.chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .take(4)
        .collect()
}

impl Drop for Topology {
    fn drop(&mut self) {
        // Deleting a namespace deletes the veth ends inside it (and so their peers).
        for ns in self.namespaces.drain(..).rev() {
            let _ = Command::new("ip").args(["netns", "delete", &ns]).output();
        }
    }
}
