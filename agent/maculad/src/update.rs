//! Update glue: `io.macula.Update1` backed by RAUC (`macula-update`), and the health check that
//! marks the running slot good.

use macula_core::sync::Locked;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use macula_bus::Error;
use macula_bus::update::{BoxFuture, ProgressSink, RolloutStatus, UpdateControl, UpdateStatus};
use macula_update::{
    Check, CheckState, Decision, MARK_RETRY, Observation, Rauc, UpdateError, UpdateSection,
    booted_slot, decide,
};

/// The daemon's side of `io.macula.Update1`.
pub struct UpdateGlue {
    config: UpdateSection,
    /// RAUC on the system bus; `None` when there is no system bus (development machines).
    rauc: Arc<tokio::sync::OnceCell<Option<Rauc>>>,
    /// The health check's last verdict, for `Status`.
    health: Mutex<String>,
    /// Realm rollouts (`crate::rollout`).
    rollout: crate::rollout::RolloutGlue,
}

/// This node's report for `realm status` (RPC `node.report`, `macula_mesh::report`): system
/// uptime, and the booted slot and last update result as `Update1.Status` gives them (none
/// without RAUC).
pub fn reporter(glue: Arc<UpdateGlue>) -> crate::mesh::Reporter {
    Arc::new(move || {
        let glue = glue.clone();
        Box::pin(async move {
            let uptime_s = std::fs::read_to_string("/proc/uptime")
                .ok()
                .and_then(|t| macula_proof::resources::parse_uptime(&t).ok())
                .map_or(0, |ms| ms / 1000);
            let status = glue.status().await.ok();
            macula_mesh::report::NodeReport {
                uptime_s,
                slot: status.as_ref().map(|s| s.booted.clone()),
                last_update: status.map(|s| s.last_error),
            }
        })
    })
}

fn to_bus(e: UpdateError) -> Error {
    match e {
        UpdateError::Unavailable(_) => Error::Unavailable(e.to_string()),
        UpdateError::BadBundle { .. } => Error::InvalidArgument(e.to_string()),
        UpdateError::Busy(_) => Error::Busy(e.to_string()),
        _ => Error::Failed(e.to_string()),
    }
}

/// The RAUC client, connecting to the system bus on first use.
pub(crate) async fn connect_rauc(
    cell: &tokio::sync::OnceCell<Option<Rauc>>,
) -> Result<Rauc, Error> {
    let r = cell
        .get_or_init(|| async {
            match zbus::Connection::system().await {
                Ok(conn) => Rauc::new(&conn).await.ok(),
                Err(e) => {
                    tracing::info!(target: "macula::update", error = %e, "no system bus: updates unavailable");
                    None
                }
            }
        })
        .await;
    r.clone().ok_or_else(|| {
        Error::Unavailable(
            "updates need RAUC on the system bus, which this system does not have".into(),
        )
    })
}

impl UpdateGlue {
    pub fn new(config: UpdateSection, key: &macula_core::NodeKey, state_dir: &Path) -> Arc<Self> {
        let rauc = Arc::new(tokio::sync::OnceCell::new());
        Arc::new(Self {
            rollout: crate::rollout::RolloutGlue::new(key, state_dir, config.clone(), rauc.clone()),
            config,
            rauc,
            health: Mutex::new("not checked yet".into()),
        })
    }

    /// The realm rollouts' glue (started with `RolloutGlue::attach`).
    pub fn rollout(&self) -> &crate::rollout::RolloutGlue {
        &self.rollout
    }

    async fn rauc(&self) -> Result<Rauc, Error> {
        connect_rauc(&self.rauc).await
    }

    fn set_health(&self, text: String) {
        *self.health.locked() = text;
    }
}

impl UpdateControl for UpdateGlue {
    fn status(&self) -> BoxFuture<'_, Result<UpdateStatus, Error>> {
        Box::pin(async move {
            let rauc = self.rauc().await?;
            let slots = rauc
                .slots()
                .await
                .map_err(to_bus)?
                .into_iter()
                .map(|s| {
                    format!(
                        "{} {} {} {} {}",
                        s.name,
                        s.bootname.as_deref().unwrap_or("-"),
                        s.state,
                        s.boot_status.as_deref().unwrap_or("-"),
                        s.bundle_version.as_deref().unwrap_or("-"),
                    )
                })
                .collect();
            Ok(UpdateStatus {
                booted: rauc.booted().await.map_err(to_bus)?,
                primary: rauc.primary().await.map_err(to_bus)?,
                operation: rauc.operation().await.map_err(to_bus)?,
                last_error: rauc.last_error().await.map_err(to_bus)?,
                compatible: rauc.compatible().await.map_err(to_bus)?,
                health: self.health.locked().clone(),
                slots,
            })
        })
    }

    fn check_install(&self, path: &str) -> BoxFuture<'_, Result<(), Error>> {
        let path = path.to_owned();
        Box::pin(async move {
            match std::fs::metadata(&path) {
                Ok(m) if m.is_file() => {}
                Ok(_) => {
                    return Err(Error::InvalidArgument(format!(
                        "bundle {path} is not a regular file; give the .raucb file"
                    )));
                }
                Err(e) => {
                    return Err(Error::InvalidArgument(format!(
                        "bundle {path}: {e}; check the path (the agent reads it as root)"
                    )));
                }
            }
            let rauc = self.rauc().await?;
            let op = rauc.operation().await.map_err(to_bus)?;
            if op != "idle" {
                return Err(Error::Busy(format!(
                    "RAUC is busy ({op}); wait for the running operation to finish"
                )));
            }
            Ok(())
        })
    }

    fn install(
        &self,
        path: String,
        progress: Arc<dyn ProgressSink>,
    ) -> BoxFuture<'static, Result<(), Error>> {
        let cell = self.rauc.clone();
        let timeout = Duration::from_secs(self.config.install_timeout_s);
        Box::pin(async move {
            let rauc = connect_rauc(&cell).await?;
            // RAUC's progress arrives in a sync callback; forward it to the async sink in order.
            let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
            let forward = tokio::spawn(async move {
                while let Some(p) = rx.recv().await {
                    let macula_update::InstallProgress { percent, message } = p;
                    progress.progress(percent, message).await;
                }
            });
            let result = rauc
                .install(Path::new(&path), timeout, |p| {
                    let _ = tx.send(p);
                })
                .await;
            drop(tx);
            let _ = forward.await;
            result.map_err(to_bus)
        })
    }

    fn mark_good(&self) -> BoxFuture<'_, Result<String, Error>> {
        Box::pin(async move {
            let rauc = self.rauc().await?;
            let slot = rauc.mark_booted_good().await.map_err(to_bus)?;
            self.set_health(format!("marked good by request ({slot})"));
            self.rollout.set_health(true);
            Ok(slot)
        })
    }

    fn publish(
        &self,
        file: std::fs::File,
        waves: String,
        version: String,
        compatible: String,
        deadline_s: u64,
    ) -> BoxFuture<'_, Result<String, Error>> {
        Box::pin(
            self.rollout
                .publish(file, waves, version, compatible, deadline_s),
        )
    }

    fn rollout(&self) -> Result<RolloutStatus, Error> {
        Ok(self.rollout.status())
    }
}

/// Probes that the state directory takes a durable write.
fn state_dir_writable(dir: &Path) -> Result<(), String> {
    use std::io::Write;
    let probe = dir.join(".health-probe");
    let _ = std::fs::remove_file(&probe);
    let mut f = macula_core::fsutil::create_new(&probe, 0o600)
        .map_err(|e| format!("cannot write {}: {e}", probe.display()))?;
    f.write_all(b"ok")
        .and_then(|()| f.sync_all())
        .map_err(|e| format!("cannot sync {}: {e}", probe.display()))?;
    std::fs::remove_file(&probe).map_err(|e| format!("cannot remove {}: {e}", probe.display()))
}

/// Runs the health check until the booted slot is good, there is nothing to confirm, or the
/// deadline passed (the worker `update.health`, started once the agent owns its bus name).
pub async fn health_task(
    ctx: crate::worker::WorkerCtx,
    glue: Arc<UpdateGlue>,
    state_dir: PathBuf,
    started: Instant,
) -> crate::worker::WorkerResult {
    let policy = glue.config.policy();
    let booted = std::fs::read_to_string("/proc/cmdline")
        .ok()
        .and_then(|c| booted_slot(&c));
    if booted.is_none() {
        glue.set_health("not booted from a RAUC slot: nothing to confirm".into());
        return Ok(());
    }
    let bus_since = started.elapsed();
    let mut state_since: Option<Duration> = None;
    let mut rauc_since: Option<Duration> = None;
    loop {
        let now = started.elapsed();
        // RAUC answers for the booted slot (its boot status is not used: see `Decision::Nothing`)
        let rauc_check = match glue.rauc().await {
            Err(e) => CheckState::Failing(error_text(&e)),
            Ok(rauc) => match rauc.booted_is_good().await {
                Ok(_) => CheckState::PassingSince(*rauc_since.get_or_insert(now)),
                Err(e) => {
                    rauc_since = None;
                    CheckState::Failing(e.to_string())
                }
            },
        };
        let state = match state_dir_writable(&state_dir) {
            Ok(()) => CheckState::PassingSince(*state_since.get_or_insert(now)),
            Err(why) => {
                state_since = None;
                CheckState::Failing(why)
            }
        };
        let obs = Observation {
            now,
            booted: booted.clone(),
            checks: vec![
                Check {
                    name: "agent-bus".into(),
                    state: CheckState::PassingSince(bus_since),
                },
                Check {
                    name: "state-dir".into(),
                    state,
                },
                Check {
                    name: "rauc".into(),
                    state: rauc_check,
                },
            ],
        };
        match decide(&policy, &obs) {
            Decision::Nothing => {
                glue.set_health("not booted from a RAUC slot".into());
                return Ok(());
            }
            Decision::Wait { recheck_in } => {
                glue.set_health("checking".into());
                if ctx.wait(tokio::time::sleep(recheck_in)).await.is_none() {
                    return Ok(());
                }
            }
            Decision::MarkGood { slot } => {
                if !glue.config.auto_mark_good {
                    glue.set_health(format!(
                        "healthy; slot {slot} waits for `maculactl update mark-good` (auto_mark_good = false)"
                    ));
                    return Ok(());
                }
                let marked = match glue.rauc().await {
                    Ok(rauc) => rauc.mark_booted_good().await.map_err(|e| e.to_string()),
                    Err(e) => Err(error_text(&e)),
                };
                match marked {
                    Ok(name) => {
                        glue.set_health(format!(
                            "good (slot {slot}, {name}, marked after the health check)"
                        ));
                        glue.rollout.set_health(true);
                        tracing::info!(target: "macula::update", %slot, "health check passed: slot marked good");
                        return Ok(());
                    }
                    Err(e) => {
                        tracing::warn!(target: "macula::update", error = %e, "cannot mark the slot good; retrying");
                        ctx.error(format!("cannot mark the slot good: {e}"));
                        if ctx.wait(tokio::time::sleep(MARK_RETRY)).await.is_none() {
                            return Ok(());
                        }
                    }
                }
            }
            Decision::Unhealthy { failing } => {
                let why = failing.join("; ");
                tracing::error!(target: "macula::update", failing = %why,
                    "health check failed: the slot stays unconfirmed and the next reset boots the previous slot");
                glue.set_health(format!("unhealthy: {why}"));
                glue.rollout.set_health(false);
                return Ok(());
            }
        }
    }
}

fn error_text(e: &Error) -> String {
    use zbus::DBusError;
    e.description()
        .map_or_else(|| e.name().to_string(), str::to_owned)
}
