//! Test support shared by every Macula crate (dev-dependency only).
//!
//! - [`DbusDaemon`]: a private `dbus-daemon` that applies the appliance's real bus policy.
//! - [`Agent`]: a real `maculad` process with its own state dir; logs kept for failure messages.
//! - [`maculactl`]: runs the real CLI against a private bus, optionally as another user.
//! - [`config::AgentConfig`]: the `agent.toml` of a test agent, built one way.
//! - [`realm::Realm`]: one realm builder — certificates, in-process mesh nodes, realms of real
//!   `maculad` processes ([`realm::AgentRealm`]).
//! - [`netns::Topology`]: network namespaces and veth links, removed on drop.
//! - [`fuzz::replay`]: the fuzz smoke — a cargo-fuzz target's corpus and mutations of it;
//!   [`fuzz::seed`]: binary seeds checked against (or written from) the real encoders.
//!
//! Binaries are taken from the cargo target dir (`cargo build --bins` first) or `MACULA_BIN_DIR`.

pub mod agent;
pub mod check;
pub mod config;
pub mod dbus;
pub mod fuzz;
pub mod netns;
pub mod rauc;
pub mod realm;

pub use agent::{Agent, AgentOptions, maculactl, maculactl_as};
pub use dbus::DbusDaemon;

use std::path::{Path, PathBuf};

/// The repository root (for the overlay's policy and config files).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("the test kit lives in <repo>/agent/macula-testkit")
}

/// Path of a workspace binary (`maculad`, `maculactl`). Panics with what to do when it is missing.
pub fn bin(name: &str) -> PathBuf {
    let dir = match std::env::var_os("MACULA_BIN_DIR") {
        Some(d) => PathBuf::from(d),
        None => {
            // <target>/<profile>/deps/<test binary>
            let exe = std::env::current_exe().expect("current test executable");
            let mut dir = exe.parent().expect("deps dir").to_path_buf();
            if dir.ends_with("deps") {
                dir.pop();
            }
            dir
        }
    };
    let path = dir.join(name);
    assert!(
        path.is_file(),
        "{} not found; build the binaries first (`cargo build --bins`) or set MACULA_BIN_DIR",
        path.display()
    );
    path
}

/// A temporary directory that world can traverse (for sockets other users must reach).
pub fn shared_tempdir() -> tempfile::TempDir {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::Builder::new()
        .prefix("macula-test-")
        .tempdir()
        .expect("create temp dir");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))
        .expect("chmod temp dir");
    dir
}

/// Waits until `f` returns `Some`, polling every 20 ms, for at most `timeout`.
pub fn wait_for<T>(timeout: std::time::Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if std::time::Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}
