//! `maculactl put`, `maculactl get`, `maculactl storage status|stat|delete|purge`: objects in the
//! realm's erasure-coded storage (`io.macula.Storage1`).

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};
use futures_lite::StreamExt;
use macula_bus::storage::Storage1Proxy;

use crate::exit::CliError;

#[derive(Debug, Args)]
pub struct PutArgs {
    /// File to store (opened by maculactl and passed to the agent as a descriptor); `-`: standard
    /// input, first copied to an unnamed temporary file in $TMPDIR (the size must be known before
    /// the put).
    file: PathBuf,
    /// No progress line on stderr.
    #[arg(long, short)]
    quiet: bool,
}

#[derive(Debug, Args)]
pub struct GetArgs {
    /// Capability printed by `maculactl put`.
    cap: String,
    /// File to write (created by maculactl, filled by the agent through a descriptor, renamed
    /// into place when complete).
    #[arg(short, long, value_name = "FILE")]
    output: PathBuf,
    /// No progress line on stderr.
    #[arg(long, short)]
    quiet: bool,
}

#[derive(Debug, Subcommand)]
pub enum StorageCommand {
    /// Local store, coding parameters and the repair queue.
    Status {
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Size and coding parameters of an object.
    Stat {
        cap: String,
        #[arg(long)]
        json: bool,
    },
    /// Delete an object stored by this node.
    Delete { cap: String },
    /// Admin: remove every shard of one owner (node ID) from this node's store and refuse its
    /// shards here from now on, e.g. after revoking that member.
    Purge {
        owner: String,
        /// Purge on every storage node of the realm: run it on the node holding the realm key;
        /// the signed order reaches members that are down now when they come back.
        #[arg(long)]
        realm: bool,
    },
}

/// The agent resolves no relative paths: make them absolute here.
fn absolute(p: &Path) -> Result<String, CliError> {
    let abs = if p.is_absolute() {
        p.to_path_buf()
    } else {
        std::env::current_dir()
            .map_err(|e| CliError::Other(format!("cannot read the current directory: {e}")))?
            .join(p)
    };
    abs.to_str()
        .map(str::to_owned)
        .ok_or_else(|| CliError::Other(format!("{}: path is not UTF-8", p.display())))
}

fn mib(b: u64) -> f64 {
    b as f64 / (1 << 20) as f64
}

/// Runs `call` while printing the agent's `Progress` signals for `path` on stderr.
async fn with_progress<T>(
    proxy: &Storage1Proxy<'_>,
    op: &str,
    path: &str,
    quiet: bool,
    call: impl std::future::Future<Output = zbus::Result<T>>,
) -> Result<T, CliError> {
    let mut stream = proxy.receive_progress().await?;
    let tty = std::io::stderr().is_terminal();
    let mut call = std::pin::pin!(call);
    let mut shown = false;
    let result = loop {
        tokio::select! {
            r = &mut call => break r,
            Some(sig) = stream.next() => {
                let Ok(a) = sig.args() else { continue };
                if quiet || a.op != op || a.path != path {
                    continue;
                }
                let pct = (a.done * 100).checked_div(a.total).unwrap_or(100);
                let line = format!("{op} {path}: {pct:>3}% {:.1}/{:.1} MiB", mib(a.done), mib(a.total));
                let mut e = std::io::stderr();
                if tty {
                    let _ = write!(e, "\r{line}");
                } else {
                    let _ = writeln!(e, "{line}");
                }
                shown = true;
            }
        }
    };
    if shown && tty {
        eprintln!();
    }
    Ok(result?)
}

/// `put` and `get` pass file descriptors (`PutFd`/`GetFd`): the files are opened here, with the
/// caller's permissions, and the agent never needs access to the paths.
pub async fn put(conn: &zbus::Connection, args: &PutArgs) -> Result<(), CliError> {
    let proxy = Storage1Proxy::new(conn).await?;
    let (path, file) = if args.file.as_os_str() == "-" {
        ("<stdin>".to_string(), stdin_spooled()?)
    } else {
        let path = absolute(&args.file)?;
        let file = std::fs::File::open(&path)
            .map_err(|e| CliError::Other(format!("cannot open {path}: {e}")))?;
        (path, file)
    };
    let cap = with_progress(
        &proxy,
        "put",
        &path,
        args.quiet,
        proxy.put_fd((&file).into(), &path),
    )
    .await?;
    println!("{cap}");
    Ok(())
}

/// Standard input copied to an unnamed file in $TMPDIR (gone when closed), rewound.
fn stdin_spooled() -> Result<std::fs::File, CliError> {
    use std::io::Seek;
    let dir = std::env::temp_dir();
    let failed = |e: std::io::Error| {
        CliError::Other(format!(
            "cannot copy standard input to a temporary file in {} (set TMPDIR to a directory \
             with room for it): {e}",
            dir.display()
        ))
    };
    let mut file = tempfile::tempfile_in(&dir).map_err(failed)?;
    std::io::copy(&mut std::io::stdin().lock(), &mut file).map_err(failed)?;
    file.rewind().map_err(failed)?;
    Ok(file)
}

pub async fn get(conn: &zbus::Connection, args: &GetArgs) -> Result<(), CliError> {
    let proxy = Storage1Proxy::new(conn).await?;
    let path = absolute(&args.output)?;
    let out = PathBuf::from(&path);
    // Written under a temporary name and renamed when complete: a failed get leaves nothing.
    let tmp = out.with_file_name(format!(
        ".{}.macula-get",
        out.file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    ));
    let file = std::fs::File::create(&tmp)
        .map_err(|e| CliError::Other(format!("cannot create {}: {e}", tmp.display())))?;
    let result = with_progress(
        &proxy,
        "get",
        &path,
        args.quiet,
        proxy.get_fd(&args.cap, (&file).into(), &path),
    )
    .await;
    drop(file);
    let n = match result.and_then(|n| {
        std::fs::rename(&tmp, &out)
            .map(|()| n)
            .map_err(|e| CliError::Other(format!("cannot write {path}: {e}")))
    }) {
        Ok(n) => n,
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            return Err(e);
        }
    };
    if !args.quiet {
        eprintln!("wrote {n} bytes to {path}");
    }
    Ok(())
}

fn json_map(
    m: &std::collections::HashMap<String, zbus::zvariant::OwnedValue>,
) -> serde_json::Map<String, serde_json::Value> {
    m.iter()
        .map(|(k, v)| (k.clone(), super::to_json(v)))
        .collect()
}

fn print_json(v: &serde_json::Value) -> Result<(), CliError> {
    let text = serde_json::to_string_pretty(v)
        .map_err(|e| CliError::Other(format!("cannot format JSON: {e}")))?;
    println!("{text}");
    Ok(())
}

pub async fn run(conn: &zbus::Connection, cmd: StorageCommand) -> Result<(), CliError> {
    let proxy = Storage1Proxy::new(conn).await?;
    match cmd {
        StorageCommand::Status { json } => {
            let stats = json_map(&proxy.stats().await?);
            let repair = json_map(&proxy.repair_queue().await?);
            if json {
                return print_json(&serde_json::json!({"stats": stats, "repair": repair}));
            }
            let g = |m: &serde_json::Map<String, serde_json::Value>, k: &str| {
                m.get(k)
                    .map(|v| v.to_string())
                    .unwrap_or_else(|| "-".into())
            };
            if stats.get("enabled") != Some(&serde_json::Value::Bool(true)) {
                println!(
                    "storage is off: set `[storage] enabled = true` and quota_bytes (docs/storage.md)"
                );
                return Ok(());
            }
            println!("dir:        {}", g(&stats, "dir").trim_matches('"'));
            println!(
                "running:    {} ({} nodes with storage)",
                g(&stats, "running"),
                g(&stats, "nodes")
            );
            let chosen = if stats.get("coding_auto") == Some(&serde_json::Value::Bool(true)) {
                " (k, m unset: chosen at each put for the storage nodes)"
            } else {
                ""
            };
            println!(
                "coding:     {}+{} {} segments of {} bytes{chosen}",
                g(&stats, "k"),
                g(&stats, "m"),
                g(&stats, "codec").trim_matches('"'),
                g(&stats, "segment_bytes")
            );
            println!(
                "local:      {} shards of {} owners, {} of {} bytes used (per owner at most {}; 0 = no limit)",
                g(&stats, "shards"),
                g(&stats, "owners"),
                g(&stats, "used_bytes"),
                g(&stats, "quota_bytes"),
                g(&stats, "owner_quota_bytes")
            );
            println!(
                "repair:     {} segments watched, {} degraded ({} led here), {} running, {} unrecoverable",
                g(&repair, "segments"),
                g(&repair, "degraded"),
                g(&repair, "leading"),
                g(&repair, "inflight"),
                repair
                    .get("unrecoverable")
                    .and_then(|v| v.as_array())
                    .map_or(0, Vec::len)
            );
            println!(
                "            {} shards rebuilt, {} failed attempts since start",
                g(&repair, "repaired"),
                g(&repair, "failed")
            );
            Ok(())
        }
        StorageCommand::Stat { cap, json } => {
            let m = json_map(&proxy.stat(&cap).await?);
            if json {
                return print_json(&serde_json::Value::Object(m));
            }
            for (k, v) in &m {
                println!("{k:<14} {v}");
            }
            Ok(())
        }
        StorageCommand::Delete { cap } => {
            let n = proxy.delete(&cap).await?;
            println!("deleted ({n} shards removed)");
            Ok(())
        }
        StorageCommand::Purge { owner, realm: true } => {
            let (members, n, bytes) = proxy.purge_realm(&owner).await?;
            println!(
                "purged {n} shards ({bytes} bytes) of {owner} here and on {members} members; \
                 members down now purge when they come back, and refuse its shards"
            );
            Ok(())
        }
        StorageCommand::Purge {
            owner,
            realm: false,
        } => {
            let (n, bytes) = proxy.purge_owner(&owner).await?;
            println!("purged {n} shards ({bytes} bytes) of {owner}; its shards are refused here");
            Ok(())
        }
    }
}
