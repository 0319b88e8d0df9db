//! `io.macula.Update1`: A/B system updates — install a bundle, follow it, confirm the slot.
//!
//! `Install(path)` returns as soon as the installation has started; `Progress(percent, message)`
//! signals follow and one `Completed(result, error)` (0 = success) ends it. `Status()` summarises
//! the slots and the health check; `MarkGood()` confirms the running slot without waiting for the
//! health check.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use zbus::object_server::SignalEmitter;
use zbus::zvariant::OwnedValue;

use crate::Error;

/// D-Bus interface name.
pub const INTERFACE: &str = "io.macula.Update1";

/// A boxed future (the backend trait must stay object-safe).
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Where a running installation reports its steps.
pub trait ProgressSink: Send + Sync + 'static {
    fn progress(&self, percent: i32, message: String) -> BoxFuture<'_, ()>;
}

/// `Update1.Status()`: RAUC's view of the A/B slots and the agent's health check.
#[derive(Debug, Clone, PartialEq, Eq, zbus::zvariant::SerializeDict, zbus::zvariant::Type)]
#[zvariant(signature = "a{sv}", crate = "zbus::zvariant")]
pub struct UpdateStatus {
    /// The slot's boot name that runs now.
    pub booted: String,
    /// The slot the boot loader tries next.
    pub primary: String,
    /// RAUC's operation (`idle`, `installing`).
    pub operation: String,
    /// RAUC's last error (empty: none).
    pub last_error: String,
    /// The system's compatible string (bundles must match it).
    pub compatible: String,
    /// The agent's health check state.
    pub health: String,
    /// One `name bootname state boot-status version` line per slot (`-` when unknown).
    pub slots: Vec<String>,
}

/// `Update1.Rollout()`: the realm's current rollout as this node sees it.
#[derive(
    Debug, Clone, PartialEq, Eq, Default, zbus::zvariant::SerializeDict, zbus::zvariant::Type,
)]
#[zvariant(signature = "a{sv}", crate = "zbus::zvariant")]
pub struct RolloutStatus {
    /// Rollout id (hex, 16 digits); empty when no rollout was published.
    pub id: String,
    /// The bundle's version and compatible string.
    pub version: String,
    pub compatible: String,
    /// Node ID of the publisher; unix seconds of the publication.
    pub publisher: String,
    pub published_at: u64,
    /// The bundle's size in bytes.
    pub bundle_bytes: u64,
    /// Wave sizes, e.g. `1,25%,100%`.
    pub waves: String,
    /// `wave` (one open), `done` or `halted`; empty without a rollout.
    pub phase: String,
    /// The open wave (1-based; 0 when none is open) and its deadline (unix s).
    pub wave: u32,
    pub deadline: u64,
    /// With `halted`: the node that halted it and why.
    pub halted_by: String,
    pub reason: String,
    /// One `node wave step at detail` line per node in wave order (`wave` is `-` for a node
    /// that joined after the publication, `step` and `at` are `-` before it reported; `detail`
    /// is `slot version` for `good`, the reason for `failed`).
    pub nodes: Vec<String>,
}

/// What the update interface needs from the daemon.
pub trait UpdateControl: Send + Sync + 'static {
    /// Slots, boot order, running operation and health check state.
    fn status(&self) -> BoxFuture<'_, Result<UpdateStatus, Error>>;
    /// Refuses an installation that cannot start: `path` is not a readable file
    /// (`InvalidArgument`), the update service is missing (`Unavailable`) or busy (`Busy`).
    fn check_install(&self, path: &str) -> BoxFuture<'_, Result<(), Error>>;
    /// Installs the bundle at `path` (absolute), reporting steps to `progress`; resolves when the
    /// installation has finished.
    fn install(
        &self,
        path: String,
        progress: Arc<dyn ProgressSink>,
    ) -> BoxFuture<'static, Result<(), Error>>;
    /// Marks the booted slot good now; returns the slot name.
    fn mark_good(&self) -> BoxFuture<'_, Result<String, Error>>;
    /// Publishes a realm rollout of the bundle read from `file`: stores it in the realm's
    /// storage, signs the rollout and spreads it. `waves` as `1,25%,100%` (empty: `1,100%`);
    /// `version` and `compatible` empty: read from the bundle by RAUC; `deadline_s` 0: the
    /// default. Returns the rollout id.
    fn publish(
        &self,
        file: std::fs::File,
        waves: String,
        version: String,
        compatible: String,
        deadline_s: u64,
    ) -> BoxFuture<'_, Result<String, Error>>;
    /// The realm's current rollout.
    fn rollout(&self) -> Result<RolloutStatus, Error>;
}

/// The `io.macula.Update1` server object.
pub struct UpdateObject {
    control: Arc<dyn UpdateControl>,
    installing: Arc<AtomicBool>,
}

impl UpdateObject {
    pub fn new(control: Arc<dyn UpdateControl>) -> Self {
        Self {
            control,
            installing: Arc::new(AtomicBool::new(false)),
        }
    }
}

struct SignalSink(SignalEmitter<'static>);

impl ProgressSink for SignalSink {
    fn progress(&self, percent: i32, message: String) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            if let Err(e) = UpdateObject::progress(&self.0, percent, &message).await {
                tracing::warn!(target: "macula::update", error = %e, "cannot emit Progress");
            }
        })
    }
}

#[zbus::interface(name = "io.macula.Update1")]
impl UpdateObject {
    /// Slots, boot order, running operation and health check state.
    async fn status(&self) -> Result<UpdateStatus, Error> {
        self.control.status().await
    }

    /// Starts installing the RAUC bundle at `path` (absolute path readable by the agent).
    /// Returns once started; watch `Progress` and `Completed`.
    async fn install(
        &self,
        path: String,
        #[zbus(connection)] connection: &zbus::Connection,
        #[zbus(signal_emitter)] emitter: SignalEmitter<'_>,
    ) -> Result<(), Error> {
        if !path.starts_with('/') {
            return Err(Error::InvalidArgument(format!(
                "`{path}` is not an absolute path; give the bundle's full path"
            )));
        }
        if self.installing.swap(true, Ordering::SeqCst) {
            return Err(Error::Busy(
                "an installation is already running; wait for its Completed signal".into(),
            ));
        }
        if let Err(e) = self.control.check_install(&path).await {
            self.installing.store(false, Ordering::SeqCst);
            return Err(e);
        }
        let emitter = emitter.into_owned();
        let sink = Arc::new(SignalSink(emitter.clone()));
        let run = self.control.install(path.clone(), sink);
        let installing = self.installing.clone();
        tracing::info!(target: "macula::update", bundle = %path, "install requested over D-Bus");
        connection
            .executor()
            .spawn(
                async move {
                    let (code, error) = match run.await {
                        Ok(()) => (0, String::new()),
                        Err(e) => (1, error_text(&e)),
                    };
                    installing.store(false, Ordering::SeqCst);
                    if let Err(e) = UpdateObject::completed(&emitter, code, &error).await {
                        tracing::warn!(target: "macula::update", error = %e, "cannot emit Completed");
                    }
                },
                "macula-update-install",
            )
            .detach();
        Ok(())
    }

    /// Marks the running slot good without waiting for the health check; returns the slot.
    async fn mark_good(&self) -> Result<String, Error> {
        self.control.mark_good().await
    }

    /// Publishes a realm-wide rollout of the bundle open at `fd` in waves; returns its id.
    async fn publish(
        &self,
        fd: zbus::zvariant::OwnedFd,
        waves: String,
        version: String,
        compatible: String,
        deadline_s: u64,
    ) -> Result<String, Error> {
        let file = std::fs::File::from(std::os::fd::OwnedFd::from(fd));
        self.control
            .publish(file, waves, version, compatible, deadline_s)
            .await
    }

    /// The realm's current rollout: waves, phase, every node's step.
    async fn rollout(&self) -> Result<RolloutStatus, Error> {
        self.control.rollout()
    }

    /// One step of the running installation.
    #[zbus(signal)]
    async fn progress(emitter: &SignalEmitter<'_>, percent: i32, message: &str)
    -> zbus::Result<()>;

    /// The installation finished: `result` 0 = installed (reboot to use it), else `error` says why.
    #[zbus(signal)]
    async fn completed(emitter: &SignalEmitter<'_>, result: i32, error: &str) -> zbus::Result<()>;
}

fn error_text(e: &Error) -> String {
    use zbus::DBusError;
    e.description()
        .map_or_else(|| e.name().to_string(), str::to_owned)
}

/// Client proxy for `io.macula.Update1`.
#[zbus::proxy(
    interface = "io.macula.Update1",
    default_service = "io.macula.Agent",
    default_path = "/io/macula/Agent"
)]
pub trait Update1 {
    fn status(&self) -> zbus::Result<HashMap<String, OwnedValue>>;
    fn install(&self, path: &str) -> zbus::Result<()>;
    fn mark_good(&self) -> zbus::Result<String>;
    fn publish(
        &self,
        fd: zbus::zvariant::Fd<'_>,
        waves: &str,
        version: &str,
        compatible: &str,
        deadline_s: u64,
    ) -> zbus::Result<String>;
    fn rollout(&self) -> zbus::Result<HashMap<String, OwnedValue>>;
    #[zbus(signal)]
    fn progress(&self, percent: i32, message: String) -> zbus::Result<()>;
    #[zbus(signal)]
    fn completed(&self, result: i32, error: String) -> zbus::Result<()>;
}
