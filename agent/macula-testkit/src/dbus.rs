//! A private `dbus-daemon` configured like the system bus (deny by default) plus the appliance's
//! policy file for `io.macula.Agent`, so tests exercise the real policy.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::{repo_root, shared_tempdir, wait_for};

pub struct DbusDaemon {
    child: Child,
    address: String,
    _dir: tempfile::TempDir,
}

impl DbusDaemon {
    /// Starts a bus with the repository's `overlay/etc/dbus-1/system.d/io.macula.Agent.conf`.
    pub fn start() -> Self {
        Self::start_with_policy(
            &repo_root().join("overlay/etc/dbus-1/system.d/io.macula.Agent.conf"),
        )
    }

    /// Starts a bus with the given policy file included.
    pub fn start_with_policy(policy: &Path) -> Self {
        let dir = shared_tempdir();
        let socket = dir.path().join("bus");
        let config = dir.path().join("bus.conf");
        std::fs::write(&config, bus_config(&socket, policy)).expect("write bus config");
        let child = Command::new("dbus-daemon")
            .arg(format!("--config-file={}", config.display()))
            .arg("--nofork")
            .arg("--nopidfile")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("dbus.log")).expect("create dbus.log"))
            .spawn()
            .expect("start dbus-daemon (apt-get install dbus)");
        let address = format!("unix:path={}", socket.display());
        // Ready once it accepts: the socket file appears at bind(), a little before listen(), and
        // a client connecting in between is refused (seen under load in CI).
        wait_for(Duration::from_secs(10), || {
            std::os::unix::net::UnixStream::connect(&socket)
                .ok()
                .map(drop)
        })
        .expect("dbus-daemon did not accept connections on its socket within 10 s");
        DbusDaemon {
            child,
            address,
            _dir: dir,
        }
    }

    /// The bus address, for `--bus` / `busctl --address`.
    pub fn address(&self) -> &str {
        &self.address
    }

    /// Runs `busctl --address=<bus> <args>`.
    pub fn busctl(&self, args: &[&str]) -> std::process::Output {
        Command::new("busctl")
            .arg(format!("--address={}", self.address))
            .args(args)
            .output()
            .expect("run busctl (apt-get install systemd)")
    }

    /// Whether `name` has an owner on this bus.
    pub fn name_has_owner(&self, name: &str) -> bool {
        let out = self.busctl(&[
            "call",
            "org.freedesktop.DBus",
            "/org/freedesktop/DBus",
            "org.freedesktop.DBus",
            "NameHasOwner",
            "s",
            name,
        ]);
        String::from_utf8_lossy(&out.stdout).trim() == "b true"
    }
}

impl Drop for DbusDaemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn bus_config(socket: &Path, policy: &Path) -> String {
    let template = repo_root().join("tests/dbus/private-bus.conf.in");
    std::fs::read_to_string(&template)
        .unwrap_or_else(|e| panic!("read {}: {e}", template.display()))
        .replace("@SOCKET@", &socket.display().to_string())
        .replace("@POLICY@", &policy.display().to_string())
}
