//! Real `maculad` processes and `maculactl` runs against a private bus.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

use crate::{DbusDaemon, bin, wait_for};

/// How to start an agent.
#[derive(Debug, Clone, Default)]
pub struct AgentOptions {
    /// Config file text; written to `<dir>/agent.toml` and passed with `--config`.
    pub config: Option<String>,
    /// Extra command-line arguments; a `--config FILE` among them is used instead of `config`
    /// (e.g. a file the test placed in the state directory).
    pub args: Vec<String>,
    /// Run inside this network namespace (`ip netns exec`).
    pub netns: Option<String>,
    /// Extra environment variables (e.g. `LD_PRELOAD` of libfaketime for a wrong clock).
    pub env: Vec<(String, String)>,
}

/// A running `maculad` with a state dir and log file that outlive restarts.
pub struct Agent {
    child: Option<Child>,
    dir: tempfile::TempDir,
    bus: String,
    options: AgentOptions,
}

impl Agent {
    /// Starts `maculad` on `bus` and waits (10 s at most) until it owns `io.macula.Agent`.
    pub fn spawn(bus: &DbusDaemon, options: AgentOptions) -> Self {
        let mut agent = Self::prepare(bus, options);
        agent.start(bus).unwrap_or_else(|e| panic!("{e}"));
        agent
    }

    /// An agent on `bus` that is not started yet: its state directory (not created) can be
    /// seeded first, e.g. as the image's first boot does; then [`Agent::start`].
    pub fn prepare(bus: &DbusDaemon, options: AgentOptions) -> Self {
        Agent {
            child: None,
            dir: crate::shared_tempdir(),
            bus: bus.address().to_owned(),
            options,
        }
    }

    /// How the agent is started.
    pub fn options(&self) -> &AgentOptions {
        &self.options
    }

    /// How the next [`Agent::start`] starts the agent (e.g. with a different environment).
    pub fn options_mut(&mut self) -> &mut AgentOptions {
        &mut self.options
    }

    /// The state directory (`--state-dir`).
    pub fn state_dir(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    /// Path of the agent's combined log (all runs appended).
    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("maculad.log")
    }

    /// Everything the agent logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// The command line that starts this agent.
    pub fn command(&self) -> Command {
        let mut cmd = match &self.options.netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns]).arg(bin("maculad"));
                c
            }
            None => Command::new(bin("maculad")),
        };
        cmd.arg("--bus")
            .arg(&self.bus)
            .arg("--state-dir")
            .arg(self.state_dir());
        let named = self.options.args.iter().any(|a| a == "--config");
        match &self.options.config {
            // The test names the file itself.
            _ if named => {}
            Some(text) => {
                let path = self.dir.path().join("agent.toml");
                std::fs::write(&path, with_metrics_off(text)).expect("write agent.toml");
                cmd.arg("--config").arg(path);
            }
            None => {
                cmd.arg("--config").arg(self.dir.path().join("absent.toml"));
                // An explicit missing file is an error; use one with only metrics off for "all
                // defaults".
                std::fs::write(self.dir.path().join("absent.toml"), with_metrics_off(""))
                    .expect("write config");
            }
        }
        cmd.args(&self.options.args);
        cmd.envs(self.options.env.iter().map(|(k, v)| (k, v)));
        cmd
    }

    /// (Re)starts the process and waits until it owns its name or exits.
    pub fn start(&mut self, bus: &DbusDaemon) -> Result<(), String> {
        assert!(self.child.is_none(), "agent already running");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .expect("open agent log");
        let child = self
            .command()
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup log"))
            .stderr(log)
            .spawn()
            .expect("spawn maculad");
        self.child = Some(child);
        let ready = wait_for(Duration::from_secs(10), || {
            if let Some(status) = self.try_wait() {
                return Some(Err(format!(
                    "maculad exited during start-up with {status}; log:\n{}",
                    self.log()
                )));
            }
            bus.name_has_owner("io.macula.Agent").then_some(Ok(()))
        });
        ready.unwrap_or_else(|| {
            Err(format!(
                "maculad not ready within 10 s; log:\n{}",
                self.log()
            ))
        })
    }

    /// The exit status, if the process has exited (reaps it).
    pub fn try_wait(&mut self) -> Option<ExitStatus> {
        let status = self.child.as_mut()?.try_wait().expect("wait for maculad")?;
        self.child = None;
        Some(status)
    }

    /// Sends SIGTERM and waits up to `timeout`; returns the exit status and the time it took.
    /// Panics (with the log) if the agent does not stop in time.
    pub fn stop(&mut self, timeout: Duration) -> (ExitStatus, Duration) {
        let mut child = self.child.take().expect("agent is not running");
        let t0 = Instant::now();
        // SAFETY: plain kill(2) on a child we own.
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        loop {
            if let Some(status) = child.try_wait().expect("wait for maculad") {
                return (status, t0.elapsed());
            }
            if t0.elapsed() > timeout {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "maculad did not stop within {timeout:?} of SIGTERM; log:\n{}",
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// SIGKILL, no clean-up by the agent.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Runs `maculactl` against this agent's bus.
    pub fn ctl(&self, args: &[&str]) -> Output {
        maculactl(&self.bus, args)
    }

    /// Runs `maculactl` against this agent's bus with `input` on its standard input.
    pub fn ctl_stdin(&self, args: &[&str], input: &[u8]) -> Output {
        use std::io::Write;
        let mut child = Command::new(bin("maculactl"))
            .arg("--bus")
            .arg(&self.bus)
            .args(args)
            .env_remove("MACULA_BUS")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("run maculactl");
        let mut stdin = child.stdin.take().expect("a stdin pipe");
        let input = input.to_vec();
        let writer = std::thread::spawn(move || stdin.write_all(&input));
        let out = child.wait_with_output().expect("wait for maculactl");
        writer
            .join()
            .expect("the stdin writer")
            .expect("write maculactl's stdin");
        out
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Runs `maculactl --bus <bus> <args>`.
pub fn maculactl(bus: &str, args: &[&str]) -> Output {
    Command::new(bin("maculactl"))
        .arg("--bus")
        .arg(bus)
        .args(args)
        .env_remove("MACULA_BUS")
        .output()
        .expect("run maculactl")
}

/// Runs `maculactl` as another user (e.g. `nobody`), without supplementary groups.
pub fn maculactl_as(user: &str, bus: &str, args: &[&str]) -> Output {
    run_as(user, &bin("maculactl"), &[&["--bus", bus], args].concat())
}

/// Runs a program as another user via `setpriv`.
pub fn run_as(user: &str, program: &Path, args: &[&str]) -> Output {
    let gid = Command::new("id")
        .args(["-g", user])
        .output()
        .expect("run id");
    assert!(gid.status.success(), "no such user: {user}");
    let gid = String::from_utf8_lossy(&gid.stdout).trim().to_owned();
    Command::new("setpriv")
        .arg(format!("--reuid={user}"))
        .arg(format!("--regid={gid}"))
        .arg("--clear-groups")
        .arg(program)
        .args(args)
        .env_remove("MACULA_BUS")
        .output()
        .expect("run setpriv (util-linux)")
}

/// Tests run many agents at once on one loopback, where the default `[metrics] listen` (one
/// fixed port) would collide: a config without a `[metrics]` section gets `listen = ""`. A test
/// of the metrics writes its own section with a port of its own.
fn with_metrics_off(text: &str) -> String {
    if text.lines().any(|l| l.trim() == "[metrics]") {
        text.to_owned()
    } else {
        format!("{text}\n[metrics]\nlisten = \"\"\n")
    }
}
