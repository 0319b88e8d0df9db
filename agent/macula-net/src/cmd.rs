//! Running the external tools the network plane drives (`nft`, `ip`, `wireguard-go`).
//!
//! The agent runs them in its own network namespace. Tests and the benchmark run them inside a
//! namespace they created by giving a [`Host`] the prefix `ip netns exec <name>`.

use std::process::Stdio;

use tokio::io::AsyncWriteExt;
use tokio::process::Command;

/// Where commands run: the current network namespace, or behind a wrapper such as
/// `ip netns exec <name>`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Host {
    prefix: Vec<String>,
    netns: Option<String>,
}

/// A command that could not run or exited non-zero.
#[derive(Debug, thiserror::Error)]
pub enum CmdError {
    #[error("cannot run `{program}`: {source}; install it (see docs/network.md, \"Packages\")")]
    Spawn {
        program: String,
        #[source]
        source: std::io::Error,
    },
    #[error("`{command}` failed ({status}): {stderr}")]
    Failed {
        command: String,
        status: String,
        stderr: String,
    },
}

impl Host {
    /// Commands run directly, in the caller's network namespace.
    pub fn local() -> Self {
        Self::default()
    }

    /// Commands run inside the named network namespace (`ip netns exec <name> …`).
    pub fn netns(name: &str) -> Self {
        Self {
            prefix: vec!["ip".into(), "netns".into(), "exec".into(), name.into()],
            netns: Some(name.into()),
        }
    }

    /// Runs `f` in this host's network namespace: sockets it creates belong to that namespace
    /// for their whole life (whichever thread or runtime uses them later).
    pub fn in_netns<T: Send>(
        &self,
        f: impl FnOnce() -> std::io::Result<T> + Send,
    ) -> std::io::Result<T> {
        let Some(name) = &self.netns else {
            return f();
        };
        let path = std::path::Path::new("/var/run/netns").join(name);
        std::thread::scope(|s| {
            s.spawn(|| {
                use std::os::fd::AsRawFd;
                let ns = std::fs::File::open(&path)?;
                // SAFETY: setns(2) on a valid fd; it only affects this (scoped, short-lived) thread.
                if unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                f()
            })
            .join()
            .expect("in_netns closure panicked")
        })
    }

    /// A `tokio` command for `program args…` behind this host's prefix.
    pub fn command(&self, program: &str, args: &[&str]) -> Command {
        let mut argv: Vec<&str> = self.prefix.iter().map(String::as_str).collect();
        argv.push(program);
        argv.extend_from_slice(args);
        let mut cmd = Command::new(argv[0]);
        cmd.args(&argv[1..]);
        cmd
    }

    /// Runs `program args…`, feeding `stdin`, and returns its stdout; a non-zero exit is an error
    /// carrying stderr.
    pub async fn run(
        &self,
        program: &str,
        args: &[&str],
        stdin: &[u8],
    ) -> Result<String, CmdError> {
        let mut cmd = self.command(program, args);
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let spawn_err = |source| CmdError::Spawn {
            program: program.to_string(),
            source,
        };
        let mut child = cmd.spawn().map_err(spawn_err)?;
        let mut pipe = child.stdin.take().expect("stdin is piped");
        // A tool that exits early closes the pipe; its exit status reports the real problem.
        let _ = pipe.write_all(stdin).await;
        drop(pipe);
        let out = child.wait_with_output().await.map_err(spawn_err)?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(CmdError::Failed {
                command: format!("{program} {}", args.join(" ")),
                status: out.status.to_string(),
                stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
            })
        }
    }
}
