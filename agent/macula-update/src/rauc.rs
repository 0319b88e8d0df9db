//! Client for RAUC's D-Bus service (`de.pengutronix.rauc.Installer` at `/`, RAUC ≥ 1.8).

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use futures_lite::StreamExt;
use zbus::zvariant::{OwnedValue, Value};

/// RAUC's well-known bus name.
pub const SERVICE: &str = "de.pengutronix.rauc";
/// RAUC's installer interface.
pub const INTERFACE: &str = "de.pengutronix.rauc.Installer";

/// Failures of update operations. Each message says what to do next.
#[derive(Debug, thiserror::Error)]
pub enum UpdateError {
    #[error(
        "RAUC is not reachable on the system bus ({0}); is `rauc service` running? \
         (check `logread | grep rauc`)"
    )]
    Unavailable(String),
    #[error("bundle {path}: {reason}")]
    BadBundle { path: String, reason: String },
    #[error("RAUC is busy ({0}); wait for the running operation to finish")]
    Busy(String),
    #[error("installation failed: {0}")]
    InstallFailed(String),
    #[error("installation did not finish within {0} s; check `rauc status` and `logread`")]
    Timeout(u64),
    #[error("RAUC refused to mark slot {slot} good: {reason}")]
    MarkFailed { slot: String, reason: String },
    #[error("D-Bus error talking to RAUC: {0}")]
    Bus(#[from] zbus::Error),
}

/// `de.pengutronix.rauc.Installer` (see rauc's `src/de.pengutronix.rauc.Installer.xml`).
#[zbus::proxy(
    interface = "de.pengutronix.rauc.Installer",
    default_service = "de.pengutronix.rauc",
    default_path = "/",
    gen_blocking = false
)]
pub trait Installer {
    /// Starts installing a bundle; returns at once. Completion: the `Completed` signal.
    fn install_bundle(&self, source: &str, args: HashMap<&str, Value<'_>>) -> zbus::Result<()>;
    /// Marks a slot (`booted`, `other` or a slot name) `good`, `bad` or `active`.
    fn mark(&self, state: &str, slot_identifier: &str) -> zbus::Result<(String, String)>;
    /// Every slot with its status dictionary.
    fn get_slot_status(&self) -> zbus::Result<Vec<(String, HashMap<String, OwnedValue>)>>;
    /// The slot the boot loader will boot next.
    fn get_primary(&self) -> zbus::Result<String>;
    /// The compatible string and version of a bundle (its signature checked by the keyring).
    fn info(&self, bundle: &str) -> zbus::Result<(String, String)>;
    /// Emitted when an installation finished; 0 = success.
    #[zbus(signal)]
    fn completed(&self, result: i32) -> zbus::Result<()>;
    /// `idle` or `installing`.
    #[zbus(property)]
    fn operation(&self) -> zbus::Result<String>;
    /// The error of the last failed operation.
    #[zbus(property)]
    fn last_error(&self) -> zbus::Result<String>;
    /// (percentage, message, nesting depth) of the running installation.
    #[zbus(property)]
    fn progress(&self) -> zbus::Result<(i32, String, i32)>;
    /// The system's compatible string.
    #[zbus(property)]
    fn compatible(&self) -> zbus::Result<String>;
    /// Boot name of the booted slot (`A`, `B`).
    #[zbus(property)]
    fn boot_slot(&self) -> zbus::Result<String>;
}

/// One progress step of an installation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstallProgress {
    pub percent: i32,
    pub message: String,
}

/// One slot as RAUC reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlotInfo {
    /// RAUC slot name, e.g. `rootfs.1`.
    pub name: String,
    /// Boot name (`A`/`B`) for bootable slots.
    pub bootname: Option<String>,
    /// `booted`, `active`, `inactive`.
    pub state: String,
    /// `good` or `bad` (boot loader's view), when RAUC knows it.
    pub boot_status: Option<String>,
    /// Version of the bundle last installed into it, when known.
    pub bundle_version: Option<String>,
}

fn str_field(m: &HashMap<String, OwnedValue>, key: &str) -> Option<String> {
    m.get(key)
        .and_then(|v| <&str>::try_from(v).ok().map(str::to_owned))
}

impl SlotInfo {
    fn from_rauc(name: String, m: &HashMap<String, OwnedValue>) -> Self {
        SlotInfo {
            bootname: str_field(m, "bootname"),
            state: str_field(m, "state").unwrap_or_else(|| "unknown".into()),
            boot_status: str_field(m, "boot-status"),
            bundle_version: str_field(m, "bundle.version"),
            name,
        }
    }
}

/// A connection to RAUC.
#[derive(Clone)]
pub struct Rauc {
    proxy: InstallerProxy<'static>,
    properties: zbus::fdo::PropertiesProxy<'static>,
}

fn unavailable(e: zbus::Error) -> UpdateError {
    match &e {
        zbus::Error::MethodError(name, _, _)
            if name.as_str() == "org.freedesktop.DBus.Error.ServiceUnknown"
                || name.as_str() == "org.freedesktop.DBus.Error.NameHasNoOwner" =>
        {
            UpdateError::Unavailable(e.to_string())
        }
        zbus::Error::FDO(_) => UpdateError::Unavailable(e.to_string()),
        _ => UpdateError::Bus(e),
    }
}

impl Rauc {
    /// A client on `connection` (normally the system bus). Does not contact RAUC yet.
    pub async fn new(connection: &zbus::Connection) -> Result<Self, UpdateError> {
        // no property cache: creating the proxy must not need RAUC to be running yet, and every
        // read must be current; progress is followed through PropertiesChanged (see install)
        let proxy = InstallerProxy::builder(connection)
            .cache_properties(zbus::proxy::CacheProperties::No)
            .build()
            .await?;
        let properties = zbus::fdo::PropertiesProxy::builder(connection)
            .destination(SERVICE)?
            .path("/")?
            .cache_properties(zbus::proxy::CacheProperties::No)
            .build()
            .await?;
        Ok(Self { proxy, properties })
    }

    /// Boot name of the booted slot.
    pub async fn booted(&self) -> Result<String, UpdateError> {
        self.proxy.boot_slot().await.map_err(unavailable)
    }

    /// `idle` or the running operation.
    pub async fn operation(&self) -> Result<String, UpdateError> {
        self.proxy.operation().await.map_err(unavailable)
    }

    /// The error of the last failed operation (empty when none).
    pub async fn last_error(&self) -> Result<String, UpdateError> {
        self.proxy.last_error().await.map_err(unavailable)
    }

    /// Progress of the running installation.
    pub async fn progress(&self) -> Result<InstallProgress, UpdateError> {
        let (percent, message, _) = self.proxy.progress().await.map_err(unavailable)?;
        Ok(InstallProgress { percent, message })
    }

    /// The system's compatible string.
    pub async fn compatible(&self) -> Result<String, UpdateError> {
        self.proxy.compatible().await.map_err(unavailable)
    }

    /// The slot the boot loader starts next (RAUC slot name).
    pub async fn primary(&self) -> Result<String, UpdateError> {
        self.proxy.get_primary().await.map_err(unavailable)
    }

    /// The compatible string and version of the bundle at `bundle` (absolute path), read by
    /// RAUC after checking its signature against the keyring.
    pub async fn info(&self, bundle: &Path) -> Result<(String, String), UpdateError> {
        let path = bundle.display().to_string();
        self.proxy
            .info(&path)
            .await
            .map_err(|e| match unavailable(e) {
                UpdateError::Bus(zbus::Error::MethodError(_, Some(reason), _)) => {
                    UpdateError::BadBundle { path, reason }
                }
                other => other,
            })
    }

    /// Boot name of the slot the boot loader starts next.
    pub async fn primary_bootname(&self) -> Result<String, UpdateError> {
        let primary = self.primary().await?;
        self.slots()
            .await?
            .into_iter()
            .find(|s| s.name == primary)
            .and_then(|s| s.bootname)
            .ok_or_else(|| {
                UpdateError::InstallFailed(format!("the next slot {primary} has no boot name"))
            })
    }

    /// The bundle version RAUC recorded for the booted slot (`None` for a slot written by the
    /// image build rather than by RAUC).
    pub async fn booted_version(&self) -> Result<Option<String>, UpdateError> {
        let booted = self.booted().await?;
        Ok(self
            .slots()
            .await?
            .into_iter()
            .find(|s| s.bootname.as_deref() == Some(&booted))
            .and_then(|s| s.bundle_version))
    }

    /// Every slot.
    pub async fn slots(&self) -> Result<Vec<SlotInfo>, UpdateError> {
        let raw = self.proxy.get_slot_status().await.map_err(unavailable)?;
        Ok(raw
            .into_iter()
            .map(|(name, m)| SlotInfo::from_rauc(name, &m))
            .collect())
    }

    /// Whether the booted slot is marked good (RAUC's `boot-status` of the booted slot).
    pub async fn booted_is_good(&self) -> Result<bool, UpdateError> {
        let booted = self.booted().await?;
        Ok(self.slots().await?.iter().any(|s| {
            s.bootname.as_deref() == Some(&booted) && s.boot_status.as_deref() == Some("good")
        }))
    }

    /// Marks the booted slot good; returns the slot name RAUC marked.
    pub async fn mark_booted_good(&self) -> Result<String, UpdateError> {
        let (slot, message) =
            self.proxy
                .mark("good", "booted")
                .await
                .map_err(|e| match unavailable(e) {
                    UpdateError::Bus(zbus::Error::MethodError(_, reason, _)) => {
                        UpdateError::MarkFailed {
                            slot: "booted".into(),
                            reason: reason.unwrap_or_default(),
                        }
                    }
                    other => other,
                })?;
        tracing::info!(target: "macula::update", %slot, %message, "marked the booted slot good");
        Ok(slot)
    }

    /// Installs `bundle` (an absolute path RAUC can read) and waits until RAUC reports the result,
    /// calling `on_progress` for every progress step.
    pub async fn install(
        &self,
        bundle: &Path,
        timeout: Duration,
        mut on_progress: impl FnMut(InstallProgress),
    ) -> Result<(), UpdateError> {
        let path = bundle.display().to_string();
        if !bundle.is_absolute() {
            return Err(UpdateError::BadBundle {
                path,
                reason: "not an absolute path; RAUC resolves paths itself, give the full path"
                    .into(),
            });
        }
        match std::fs::metadata(bundle) {
            Ok(m) if m.is_file() => {}
            Ok(_) => {
                return Err(UpdateError::BadBundle {
                    path,
                    reason: "not a regular file".into(),
                });
            }
            Err(e) => {
                return Err(UpdateError::BadBundle {
                    path,
                    reason: format!("{e}; check the path"),
                });
            }
        }
        let op = self.operation().await?;
        if op != "idle" {
            return Err(UpdateError::Busy(op));
        }
        // subscribe before starting, so neither the result nor a step is missed
        let mut completed = self.proxy.receive_completed().await?;
        let mut changes = self.properties.receive_properties_changed().await?;
        self.proxy
            .install_bundle(&path, HashMap::new())
            .await
            .map_err(|e| match unavailable(e) {
                UpdateError::Bus(zbus::Error::MethodError(_, Some(reason), _)) => {
                    UpdateError::InstallFailed(reason)
                }
                other => other,
            })?;
        tracing::info!(target: "macula::update", bundle = %path, "installation started");
        let wait = async {
            loop {
                tokio::select! {
                    done = completed.next() => {
                        let Some(signal) = done else {
                            return Err(UpdateError::Unavailable("RAUC left the bus during the installation".into()));
                        };
                        let result = signal.args()?.result;
                        return Ok(result);
                    }
                    Some(change) = changes.next() => {
                        if let Some(p) = progress_of(&change) {
                            on_progress(p);
                        }
                    }
                }
            }
        };
        let result = tokio::time::timeout(timeout, wait)
            .await
            .map_err(|_| UpdateError::Timeout(timeout.as_secs()))??;
        if result == 0 {
            tracing::info!(target: "macula::update", bundle = %path, "installation succeeded");
            Ok(())
        } else {
            let why = self.last_error().await.unwrap_or_default();
            let why = if why.is_empty() {
                format!("RAUC reported result {result}")
            } else {
                why
            };
            tracing::warn!(target: "macula::update", bundle = %path, error = %why, "installation failed");
            Err(UpdateError::InstallFailed(why))
        }
    }
}

/// The `Progress` value in a PropertiesChanged signal of the installer interface.
fn progress_of(change: &zbus::fdo::PropertiesChanged) -> Option<InstallProgress> {
    let args = change.args().ok()?;
    if args.interface_name.as_str() != INTERFACE {
        return None;
    }
    let value = args.changed_properties.get("Progress")?;
    let (percent, message, _depth): (i32, String, i32) = value.try_clone().ok()?.try_into().ok()?;
    Some(InstallProgress { percent, message })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slot_info_from_rauc_status() {
        let mut m = HashMap::new();
        let put = |m: &mut HashMap<String, OwnedValue>, k: &str, v: &str| {
            m.insert(k.to_owned(), Value::from(v).try_to_owned().unwrap());
        };
        put(&mut m, "bootname", "B");
        put(&mut m, "state", "booted");
        put(&mut m, "boot-status", "good");
        put(&mut m, "bundle.version", "0.0.2");
        m.insert("size".into(), Value::from(7u64).try_to_owned().unwrap());
        let s = SlotInfo::from_rauc("rootfs.1".into(), &m);
        assert_eq!(
            s,
            SlotInfo {
                name: "rootfs.1".into(),
                bootname: Some("B".into()),
                state: "booted".into(),
                boot_status: Some("good".into()),
                bundle_version: Some("0.0.2".into()),
            }
        );
        let empty = SlotInfo::from_rauc("esp.0".into(), &HashMap::new());
        assert_eq!(empty.state, "unknown");
        assert_eq!(empty.bootname, None);
    }
}
