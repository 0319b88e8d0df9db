//! `maculad`: the Macula OS agent. Wiring only — see `docs/ARCHITECTURE.md`.

mod config;
mod mesh;
mod net;
mod node;
mod storage;
mod update;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use clap::{Parser, ValueEnum};
use macula_bus::{BUS_ENV, BUS_NAME, BusSpec, OBJECT_PATH};
use macula_core::config::{DEFAULT_CONFIG_PATH, DEFAULT_STATE_DIR, LogFormat};
use macula_core::{NodeKey, VERSION};
use macula_mesh::membership::{FailureDomains, Label};
use macula_mesh::node::{Bootstrap, BootstrapError};
use tracing_subscriber::prelude::*;
use tracing_subscriber::{Layer, reload};
use zbus::fdo::{RequestNameFlags, RequestNameReply};

use crate::config::AgentConfig;

/// The Macula OS agent: node identity, mesh, storage and network plane, controlled over D-Bus.
#[derive(Debug, Parser)]
#[command(name = "maculad", version, about, long_about = None)]
struct Args {
    /// Config file. The default path may be absent (all defaults); an explicit one must exist.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Directory for the node identity and other state.
    #[arg(long, value_name = "DIR", default_value = DEFAULT_STATE_DIR)]
    state_dir: PathBuf,
    /// Bus to serve on: `system`, `session`, or a D-Bus address.
    #[arg(long, env = BUS_ENV, default_value = "system", value_parser = clap::value_parser!(BusSpec))]
    bus: BusSpec,
    /// Log format (overrides `[log] format`).
    #[arg(long, value_enum, value_name = "FORMAT")]
    log_format: Option<FormatArg>,
    /// Validate a config file, print the result, and exit 0 (valid) or 1 (invalid).
    #[arg(long, value_name = "FILE")]
    check_config: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum FormatArg {
    Text,
    Json,
}

/// `--check-config` of a loaded file: each `[mesh] bootstrap` entry with the addresses it
/// resolves to now. A malformed entry makes the file invalid; a name that does not resolve is
/// reported (the agent skips it at start) but leaves the file valid.
fn check_bootstrap(path: &std::path::Path, config: &AgentConfig) -> ExitCode {
    for entry in &config.mesh.bootstrap {
        match Bootstrap::resolve(entry) {
            Ok(contacts) => {
                let addrs: Vec<String> = contacts.iter().map(|c| c.addr.to_string()).collect();
                println!("[mesh] bootstrap {entry} -> {}", addrs.join(" "));
            }
            Err(BootstrapError::Resolve(e)) => println!("[mesh] bootstrap: warning: {e}"),
            Err(e) => {
                eprintln!("{}: [mesh] bootstrap: {e}", path.display());
                return ExitCode::FAILURE;
            }
        }
    }
    println!("{}: OK", path.display());
    ExitCode::SUCCESS
}

fn main() -> ExitCode {
    let args = Args::parse();
    if let Some(path) = &args.check_config {
        return match AgentConfig::load(path, true) {
            Ok(config) => check_bootstrap(path, &config),
            Err(e) => {
                eprintln!("{e}");
                ExitCode::FAILURE
            }
        };
    }
    let (config_path, explicit) = match &args.config {
        Some(p) => (p.clone(), true),
        None => (PathBuf::from(DEFAULT_CONFIG_PATH), false),
    };
    let config = match AgentConfig::load(&config_path, explicit) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("maculad: invalid config: {e}");
            return ExitCode::FAILURE;
        }
    };
    let format = match args.log_format {
        Some(FormatArg::Json) => LogFormat::Json,
        Some(FormatArg::Text) => LogFormat::Text,
        None => config.log.format,
    };
    let (filter, level_handle) = reload::Layer::new(node::level_filter(config.log.level));
    let fmt_layer = match format {
        LogFormat::Text => tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .boxed(),
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            .with_writer(std::io::stderr)
            .boxed(),
    };
    tracing_subscriber::registry()
        .with(filter)
        .with(fmt_layer)
        .init();

    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("maculad: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let glue = Arc::new(node::NodeGlue::new(level_handle, config.log.level));
    match runtime.block_on(run(args, config, glue)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("maculad: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args, config: AgentConfig, glue: Arc<node::NodeGlue>) -> Result<()> {
    let started = std::time::Instant::now();
    let (key, created) = NodeKey::load_or_create(&args.state_dir)?;
    let node_id = key.node_id();
    if created {
        tracing::info!(%node_id, state_dir = %args.state_dir.display(), "created a new node identity");
    }
    let started_at = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let info = macula_bus::node::NodeInfo {
        node_id,
        name: config.node.effective_name().to_string(),
        role: config.node.role,
        version: VERSION.to_owned(),
        started_at,
    };
    let node_object = macula_bus::node::NodeObject::new(info.clone(), glue.clone());
    let update_glue = update::UpdateGlue::new(config.update.clone());
    let net = net::start(&config, &key).await?;
    let storage = storage::open(&config.storage, &args.state_dir, &key)?;
    let domains = FailureDomains {
        site: Label::new(config.storage.site.as_str())
            .context("[storage] site cannot be announced")?,
        power: Label::new(config.storage.power.as_str())
            .context("[storage] power cannot be announced")?,
    };
    let mesh = mesh::start(
        &config.mesh,
        &args.state_dir,
        &key,
        config.node.role,
        storage.capacity(),
        domains,
    )?;
    glue.set_mesh(mesh.clone());

    let connection = args
        .bus
        .builder()
        .with_context(|| format!("invalid bus address `{}`", args.bus))?
        .serve_at(OBJECT_PATH, node_object)?
        .serve_at(
            OBJECT_PATH,
            macula_bus::update::UpdateObject::new(update_glue.clone()),
        )?
        .serve_at(OBJECT_PATH, net.firewall_object())?
        .serve_at(OBJECT_PATH, net.overlay_object())?
        .serve_at(OBJECT_PATH, net.uplinks_object())?
        .serve_at(OBJECT_PATH, mesh.object())?
        .serve_at(OBJECT_PATH, storage.object())?
        .build()
        .await
        .with_context(|| {
            format!(
                "cannot connect to the {} bus; is dbus-daemon running?",
                args.bus
            )
        })?;
    // Never queue for or steal the name: a second agent on the same bus must fail.
    let taken = || {
        anyhow::anyhow!(
            "another process already owns {BUS_NAME} on the {} bus; is maculad already running?",
            args.bus
        )
    };
    match connection
        .request_name_with_flags(BUS_NAME, RequestNameFlags::DoNotQueue.into())
        .await
    {
        Ok(RequestNameReply::PrimaryOwner) => {}
        Ok(_) | Err(zbus::Error::NameTaken) => return Err(taken()),
        Err(e) => {
            return Err(anyhow::anyhow!(
                "cannot own {BUS_NAME} on the {} bus: {e}; does the bus policy \
                 (/etc/dbus-1/system.d/io.macula.Agent.conf) let this user own it?",
                args.bus
            ));
        }
    }
    tracing::info!(
        %node_id,
        name = %info.name,
        role = %info.role,
        version = VERSION,
        bus = %args.bus,
        "maculad ready"
    );
    net.emit_changes(&connection);
    mesh.emit_changes(&connection);
    storage.attach(mesh.clone(), &connection);
    if config.storage.enabled {
        // Free space changes with every shard stored here, by this node's puts and by others':
        // look every second, `announce_capacity` decides what is worth telling the realm.
        let shard_bytes =
            u64::from(config.storage.segment_bytes).div_ceil(u64::from(config.storage.k.max(1)));
        let (mesh, storage) = (mesh.clone(), storage.clone());
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
            loop {
                tick.tick().await;
                mesh.announce_capacity(storage.capacity(), shard_bytes);
            }
        });
    }
    tokio::spawn(update::health_task(
        update_glue,
        args.state_dir.clone(),
        started,
    ));

    wait_for_shutdown().await?;
    tracing::info!("shutting down");
    mesh.leave().await;
    // Give the name up first so clients see us gone at once, then close the connection.
    let _ = connection.release_name(BUS_NAME).await;
    drop(connection);
    Ok(())
}

async fn wait_for_shutdown() -> Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).context("cannot watch SIGTERM")?;
    let mut int = signal(SignalKind::interrupt()).context("cannot watch SIGINT")?;
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    Ok(())
}
