//! `maculad`: the Macula OS agent. Wiring only — see `docs/ARCHITECTURE.md`.

mod config;
mod dashboard;
mod mesh;
mod metrics;
mod net;
mod node;
mod proofs;
mod rollout;
mod s3;
mod storage;
mod update;
mod worker;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

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
    /// Once ready (io.macula.Agent owned on the bus), write a newline to this inherited file
    /// descriptor and close it: the readiness notification of s6 and other supervisors; the
    /// image's console line waits on it instead of polling the bus.
    #[arg(long, value_name = "FD", value_parser = clap::value_parser!(i32).range(3..))]
    ready_fd: Option<i32>,
}

/// Takes the `--ready-fd` descriptor at start, so nothing else of this process can reuse it.
fn ready_notifier(fd: i32) -> Result<std::fs::File, String> {
    use std::os::fd::FromRawFd;
    // Open descriptors of this process are listed in /proc/self/fd.
    if !std::path::Path::new(&format!("/proc/self/fd/{fd}")).exists() {
        return Err(format!(
            "--ready-fd {fd}: no such open file descriptor (the supervisor must pass one, e.g. `3>FIFO`)"
        ));
    }
    // SAFETY: the descriptor is open (checked above), inherited from the parent for this purpose
    // alone, and taken before anything else in this process opens files, so the File is its
    // only owner.
    Ok(unsafe { std::fs::File::from_raw_fd(fd) })
}

/// How long each start-up step took, logged with "maculad ready": where a boot's time goes (on
/// the boards and under TCG, docs/image.md).
struct StartSteps {
    last: std::time::Instant,
    done: Vec<(&'static str, Duration)>,
}

impl StartSteps {
    fn new() -> Self {
        Self {
            last: std::time::Instant::now(),
            done: Vec::new(),
        }
    }

    /// Ends step `name` (begun when the previous one ended).
    fn step(&mut self, name: &'static str) {
        let now = std::time::Instant::now();
        self.done.push((name, now - self.last));
        self.last = now;
    }
}

impl std::fmt::Display for StartSteps {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let total: Duration = self.done.iter().map(|(_, d)| *d).sum();
        write!(f, "{} ms:", total.as_millis())?;
        for (name, d) in &self.done {
            write!(f, " {name} {}", d.as_millis())?;
        }
        Ok(())
    }
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
    if let Err(e) = config.proofs.check() {
        eprintln!("{}: [proofs]: {e}", path.display());
        return ExitCode::FAILURE;
    }
    if let Err(e) = config.mesh.limits.validate() {
        eprintln!("{}: {e}", path.display());
        return ExitCode::FAILURE;
    }
    if let Err(e) = config.metrics.addr() {
        eprintln!("{}: {e}", path.display());
        return ExitCode::FAILURE;
    }
    if let Err(e) = config.dashboard.addr(config.node.role) {
        eprintln!("{}: {e}", path.display());
        return ExitCode::FAILURE;
    }
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
    let mut steps = StartSteps::new();
    let args = Args::parse();
    let ready = match args.ready_fd.map(ready_notifier).transpose() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("maculad: {e}");
            return ExitCode::FAILURE;
        }
    };
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
    let workers = worker::Workers::default();
    let glue = Arc::new(node::NodeGlue::new(
        level_handle,
        config.log.level,
        workers.clone(),
    ));
    steps.step("config");
    match runtime.block_on(run(args, config, glue, workers, ready, steps)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("maculad: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(
    args: Args,
    config: AgentConfig,
    glue: Arc<node::NodeGlue>,
    workers: worker::Workers,
    ready: Option<std::fs::File>,
    mut steps: StartSteps,
) -> Result<()> {
    let started = std::time::Instant::now();
    let metrics_listen = config.metrics.addr().map_err(anyhow::Error::msg)?;
    let dashboard_listen = config
        .dashboard
        .addr(config.node.role)
        .map_err(anyhow::Error::msg)?;
    let (key, created) = NodeKey::load_or_create(&args.state_dir)?;
    steps.step("identity");
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
    let dashboard_glue = dashboard::DashboardGlue::open(&args.state_dir)?;
    let update_glue = update::UpdateGlue::new(config.update.clone(), &key, &args.state_dir);
    let net = net::start(&config, &args.state_dir, &key, &workers).await?;
    steps.step("network");
    let storage = storage::open(&config.storage, &args.state_dir, &key)?;
    steps.step("storage");
    let serves_s3 = config.s3.serves(config.node.role, config.storage.enabled);
    let s3 = s3::open(
        &config.s3,
        serves_s3,
        &args.state_dir,
        &key,
        storage.clone(),
    )
    .context("invalid [s3] section")?;
    config.proofs.check().context("invalid [proofs] section")?;
    config.mesh.limits.validate().map_err(anyhow::Error::msg)?;
    let monitor = config
        .proofs
        .enabled
        .then(|| proofs::MonitorGlue::new(node_id, &config.proofs));
    if let Some(m) = &monitor {
        glue.set_monitor(m.clone());
    }
    let proofs = monitor.as_ref().map(|m| {
        proofs::ProofsGlue::new(
            &key,
            &config.proofs,
            m.clone(),
            storage.clone(),
            &args.state_dir,
        )
    });
    let proofs_object = match &proofs {
        Some(p) => p.object(),
        None => macula_bus::proofs::ProofsObject::new(Box::new(proofs::ProofsOff)),
    };
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
        workers.clone(),
    )?;
    glue.set_mesh(mesh.clone());
    mesh.set_reporter(update::reporter(update_glue.clone()));
    steps.step("proofs+mesh");

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
        .serve_at(
            OBJECT_PATH,
            macula_bus::s3::S3Object::new(Arc::new(s3.clone())),
        )?
        .serve_at(OBJECT_PATH, proofs_object)?
        .serve_at(
            OBJECT_PATH,
            macula_bus::dashboard::DashboardObject::new(Box::new(dashboard_glue.clone())),
        )?
        .build()
        .await
        .with_context(|| {
            format!(
                "cannot connect to the {} bus; is dbus-daemon running?",
                args.bus
            )
        })?;
    steps.step("bus");
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
        Ok(RequestNameReply::PrimaryOwner) => steps.step("name"),
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
        start = %steps,
        "maculad ready"
    );
    if let Some(mut f) = ready {
        use std::io::Write;
        // Closed on drop; a supervisor that stopped listening is no reason to stop.
        if let Err(e) = f.write_all(b"\n") {
            tracing::warn!(error = %e, "cannot notify readiness on --ready-fd");
        }
    }
    net.emit_changes(&connection, &workers);
    mesh.emit_changes(&connection);
    storage.attach(mesh.clone(), &connection, &workers);
    s3.attach(mesh.clone(), &workers);
    update_glue
        .rollout()
        .attach(mesh.clone(), storage.clone(), &workers);
    if metrics_listen.is_some() || dashboard_listen.is_some() {
        let sources = Arc::new(metrics::Sources {
            started_at,
            mesh: mesh.clone(),
            storage: storage.clone(),
            firewall: net.firewall_control(),
            overlay: net.overlay_control(),
            uplinks: net.uplinks_control(),
            update: update_glue.clone(),
            s3: s3.clone(),
            proofs: match &proofs {
                Some(p) => Box::new(p.clone()),
                None => Box::new(proofs::ProofsOff),
            },
        });
        if let Some(listen) = metrics_listen {
            let sources = sources.clone();
            workers.spawn("metrics.http", move |ctx| {
                metrics::serve(ctx, listen, sources)
            });
        }
        if let Some(listen) = dashboard_listen {
            let page = Arc::new(dashboard::Page {
                sources,
                info: info.clone(),
                node: glue.clone(),
                started,
                site: config.storage.site.clone(),
                power: config.storage.power.clone(),
                glue: dashboard_glue.clone(),
                open_on_loopback: config.dashboard.open_on_loopback,
                reports: Default::default(),
                views: Default::default(),
            });
            workers.spawn("dashboard.http", move |ctx| {
                dashboard::serve(ctx, listen, page)
            });
        }
    }
    if let Some(m) = &monitor {
        m.start(
            &key,
            args.state_dir.clone(),
            storage.clone(),
            mesh.clone(),
            &connection,
            &workers,
        );
    }
    if let Some(p) = &proofs {
        p.start(mesh.clone(), net.firewall(), &connection, &workers);
    }
    if let Some(mut changes) = storage.watch_changes() {
        // Free space changes with every shard stored or removed here, by this node's puts and by
        // others': `announce_capacity` decides what is worth telling the realm, and when.
        let shard_bytes = config.storage.shard_bytes();
        let (mesh, storage) = (mesh.clone(), storage.clone());
        workers.spawn("storage.capacity", move |ctx| async move {
            let mut held: Option<tokio::time::Instant> = None;
            loop {
                let timer = async {
                    match held {
                        Some(at) => tokio::time::sleep_until(at).await,
                        None => std::future::pending().await,
                    }
                };
                let next = ctx.wait(async {
                    tokio::select! {
                        r = changes.changed() => Some(r.is_ok()),
                        () = timer => None,
                    }
                });
                match next.await {
                    None | Some(Some(false)) => return Ok(()),
                    Some(Some(true)) => {
                        if let Some(after) = mesh.announce_capacity(storage.capacity(), shard_bytes)
                        {
                            held = Some(tokio::time::Instant::now() + after);
                        }
                    }
                    Some(None) => {
                        held = None;
                        mesh.announce_held_capacity();
                    }
                }
            }
        });
    }
    let state_dir = args.state_dir.clone();
    workers.spawn("update.health", move |ctx| {
        update::health_task(ctx, update_glue, state_dir, started)
    });

    wait_for_shutdown().await?;
    shutdown(&connection, &workers, &storage, &mesh, proofs.as_ref()).await;
    Ok(())
}

/// Longest wait for puts and gets in flight at shutdown.
const DRAIN_TRANSFERS: Duration = Duration::from_secs(5);
/// Longest wait for the workers to return once told to stop.
const STOP_WORKERS: Duration = Duration::from_secs(1);
/// Longest wait for the realm to hear that this node leaves.
const LEAVE_MESH: Duration = Duration::from_secs(2);

/// Stops every subsystem in an order that loses nothing, each step bounded in time and logged
/// (`shutdown step` with `step=`): no new D-Bus work (interfaces removed; transfers in flight
/// finish), workers stopped, ledger copy saved (with proofs on), storage synced, mesh left
/// (connections closed), bus name released.
async fn shutdown(
    connection: &zbus::Connection,
    workers: &worker::Workers,
    storage: &storage::StorageGlue,
    mesh: &mesh::MeshGlue,
    proofs: Option<&proofs::ProofsGlue>,
) {
    use macula_bus::{
        firewall, mesh as m, node as n, overlay, proofs as p, s3, storage as s, update as u,
        uplinks,
    };
    let t0 = std::time::Instant::now();
    let step = |step: &str, t: std::time::Instant| {
        tracing::info!(target: "macula::node", step, took_ms = t.elapsed().as_millis() as u64,
            "shutdown step");
    };
    tracing::info!(target: "macula::node", "shutting down");

    let t = std::time::Instant::now();
    let server = connection.object_server();
    let removed = [
        server.remove::<n::NodeObject, _>(OBJECT_PATH).await,
        server.remove::<u::UpdateObject, _>(OBJECT_PATH).await,
        server
            .remove::<firewall::FirewallObject, _>(OBJECT_PATH)
            .await,
        server
            .remove::<overlay::OverlayObject, _>(OBJECT_PATH)
            .await,
        server
            .remove::<uplinks::UplinksObject, _>(OBJECT_PATH)
            .await,
        server.remove::<m::MeshObject, _>(OBJECT_PATH).await,
        server.remove::<s::StorageObject, _>(OBJECT_PATH).await,
        server.remove::<s3::S3Object, _>(OBJECT_PATH).await,
        server.remove::<p::ProofsObject, _>(OBJECT_PATH).await,
        server
            .remove::<macula_bus::dashboard::DashboardObject, _>(OBJECT_PATH)
            .await,
    ];
    for r in removed {
        if let Err(e) = r {
            tracing::warn!(target: "macula::node", error = %e, "cannot remove a D-Bus interface");
        }
    }
    if let Err(unfinished) = storage.drain(DRAIN_TRANSFERS).await {
        tracing::warn!(target: "macula::node", unfinished,
            "transfers still running after {DRAIN_TRANSFERS:?}; they are cut off");
    }
    step("dbus-closed", t);

    let t = std::time::Instant::now();
    let (stopped, aborted) = workers.stop_all(STOP_WORKERS).await;
    if !aborted.is_empty() {
        tracing::warn!(target: "macula::node", ?aborted,
            "workers did not stop within {STOP_WORKERS:?}; aborted");
    }
    tracing::info!(target: "macula::node", stopped, aborted = aborted.len(), "workers stopped");
    step("workers-stopped", t);

    if let Some(proofs) = proofs {
        let t = std::time::Instant::now();
        proofs.save_at_shutdown().await;
        step("ledger-saved", t);
    }

    let t = std::time::Instant::now();
    if let Err(e) = storage.flush() {
        tracing::error!(target: "macula::node", error = %e, "cannot sync the shard store");
    }
    step("storage-flushed", t);

    let t = std::time::Instant::now();
    if tokio::time::timeout(LEAVE_MESH, mesh.leave())
        .await
        .is_err()
    {
        tracing::warn!(target: "macula::node", "leaving the realm took over {LEAVE_MESH:?}; cut off");
    }
    step("mesh-left", t);

    // Give the name up last, so clients see the agent until it is gone, then close.
    let t = std::time::Instant::now();
    if let Err(e) = connection.release_name(BUS_NAME).await {
        tracing::warn!(target: "macula::node", error = %e, "cannot release the bus name");
    }
    step("bus-released", t);
    tracing::info!(target: "macula::node", took_ms = t0.elapsed().as_millis() as u64, "stopped");
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
