//! The tokio shell around the firewall: serialises nft operations, drives the confirm timer.

use std::net::Ipv6Addr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Mutex, watch};
use tokio::time::Instant;

use super::config::{FirewallConfig, ValidationError, valid_group_name};
use super::confirm::{ConfirmAction, ConfirmGuard, NothingToConfirm};
use super::nft::{Nft, NftError};
use super::quarantine::{Holder, Holds};
use super::render::render_replace;
use super::saved::SavedApply;

/// Errors of firewall operations, each saying what to do next.
#[derive(Debug, thiserror::Error)]
pub enum FirewallError {
    #[error(transparent)]
    Invalid(#[from] ValidationError),
    #[error(transparent)]
    Nft(#[from] NftError),
    #[error(transparent)]
    NothingToConfirm(#[from] NothingToConfirm),
    #[error("peer group {0:?} is not configured; add [firewall.groups.{0}] and apply")]
    NoSuchGroup(String),
    #[error(
        "confirmed (generation {generation}), but it could not be kept for the next start \
         ({path}: {error}); until then a restart of maculad goes back to the section confirmed before"
    )]
    NotKept {
        generation: u64,
        path: PathBuf,
        error: String,
    },
}

/// The result of a successful `apply`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApplyOutcome {
    /// Identifies this apply; `confirm` reports the generation it confirmed.
    pub generation: u64,
    /// Time left to confirm before the automatic rollback.
    pub confirm_within: Duration,
}

/// A snapshot for `show`, the D-Bus properties and `/metrics`: kept in memory and changed by
/// loads, applies, confirms, rollbacks and quarantine changes, so reading it runs no `nft`
/// (the live table is [`Firewall::ruleset`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FirewallStatus {
    /// Generation of the apply waiting for `Confirm`, if any.
    pub pending: Option<u64>,
    /// Time left before that apply is rolled back.
    pub rollback_in: Option<Duration>,
    /// What the last automatic rollback did (`None`: none happened yet).
    pub last_rollback: Option<String>,
    /// Number of quarantined overlay addresses.
    pub quarantined: usize,
    /// Applies with a confirm timer, and automatic rollbacks, since start.
    pub applies: u64,
    pub rollbacks: u64,
}

#[derive(Debug, Clone)]
struct Saved {
    table: Option<String>,
    config: FirewallConfig,
}

/// Where a confirmed apply is kept, and the `agent.toml` section it replaces
/// ([`SavedApply::base`]).
struct Keep {
    path: PathBuf,
    base: String,
}

struct Inner {
    nft: Nft,
    guard: ConfirmGuard<Saved>,
    config: FirewallConfig,
    quarantine: Holds,
    last_rollback: Option<String>,
    keep: Option<Keep>,
    applies: u64,
    rollbacks: u64,
}

/// The agent's firewall. Cheap to clone; all clones share one state.
#[derive(Clone)]
pub struct Firewall {
    inner: Arc<Mutex<Inner>>,
    epoch: Instant,
    /// Bumped whenever the live ruleset changes (load, apply, rollback).
    changes: Arc<watch::Sender<u64>>,
}

impl Firewall {
    /// A firewall that drives `nft`; nothing is applied until [`Firewall::load`] or
    /// [`Firewall::apply`].
    pub fn new(nft: Nft) -> Self {
        Self {
            inner: Arc::new(Mutex::new(Inner {
                nft,
                guard: ConfirmGuard::default(),
                config: FirewallConfig::default(),
                quarantine: Holds::default(),
                last_rollback: None,
                keep: None,
                applies: 0,
                rollbacks: 0,
            })),
            epoch: Instant::now(),
            changes: Arc::new(watch::channel(0).0),
        }
    }

    fn now(&self) -> Duration {
        self.epoch.elapsed()
    }

    /// Applies `config` without a confirm timer (agent start: the config file is the confirmed state).
    pub async fn load(&self, config: FirewallConfig) -> Result<(), FirewallError> {
        let mut inner = self.inner.lock().await;
        let script = render_replace(&config, &inner.quarantine.addresses())?;
        inner.nft.check(&script).await?;
        inner.nft.apply(&script).await?;
        inner.config = config;
        inner.applies += 1;
        self.changes.send_modify(|n| *n += 1);
        Ok(())
    }

    /// Render → `nft -c` → one atomic replace, then arms the confirm timer
    /// (`config.confirm_timeout_secs`). Without [`Firewall::confirm`] in time, the table as it was
    /// before the first unconfirmed apply is restored. On any error nothing changed.
    pub async fn apply(&self, config: FirewallConfig) -> Result<ApplyOutcome, FirewallError> {
        let timeout = Duration::from_secs(config.confirm_timeout_secs);
        let mut inner = self.inner.lock().await;
        let script = render_replace(&config, &inner.quarantine.addresses())?;
        inner.nft.check(&script).await?;
        let saved = Saved {
            table: inner.nft.list_table().await?,
            config: inner.config.clone(),
        };
        inner.nft.apply(&script).await?;
        inner.config = config;
        self.changes.send_modify(|n| *n += 1);
        let now = self.now();
        let (generation, action) = inner.guard.applied(now, timeout, saved);
        if let ConfirmAction::ArmTimer(deadline) = action {
            let fw = self.clone();
            tokio::spawn(async move {
                tokio::time::sleep_until(fw.epoch + deadline).await;
                fw.timer_fired().await;
            });
        }
        Ok(ApplyOutcome {
            generation,
            confirm_within: timeout,
        })
    }

    async fn timer_fired(&self) {
        let mut inner = self.inner.lock().await;
        let now = self.now();
        let ConfirmAction::Rollback(saved) = inner.guard.tick(now) else {
            return;
        };
        let result = inner.nft.restore(saved.table.as_deref()).await;
        let quarantine: Vec<Ipv6Addr> = inner.quarantine.addresses().into_iter().collect();
        let result = match result {
            Ok(()) if saved.table.is_some() => {
                inner
                    .nft
                    .set_elements(true, "quarantine", &quarantine)
                    .await
            }
            other => other,
        };
        self.changes.send_modify(|n| *n += 1);
        inner.rollbacks += 1;
        inner.last_rollback = Some(match result {
            Ok(()) => {
                inner.config = saved.config;
                tracing::warn!(target: "firewall", "apply not confirmed in time: ruleset rolled back");
                "rolled back: the apply was not confirmed in time".to_string()
            }
            Err(e) => {
                tracing::error!(target: "firewall", error = %e, "rollback failed");
                format!("rollback FAILED: {e}")
            }
        });
    }

    /// Notifies every change of the live ruleset (load, apply, automatic rollback) — for the
    /// D-Bus `Ruleset` change signal.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changes.subscribe()
    }

    /// Confirms the pending apply; returns its generation.
    pub async fn confirm(&self) -> Result<u64, FirewallError> {
        let mut inner = self.inner.lock().await;
        let generation = inner.guard.confirm()?;
        if let Some(keep) = &inner.keep {
            let saved = SavedApply {
                base: keep.base.clone(),
                firewall: inner.config.clone(),
            };
            let written = saved.to_text().map_err(|e| e.to_string()).and_then(|text| {
                macula_core::fsutil::write_atomic(&keep.path, text.as_bytes(), 0o600)
                    .map_err(|e| e.to_string())
            });
            if let Err(error) = written {
                return Err(FirewallError::NotKept {
                    generation,
                    path: keep.path.clone(),
                    error,
                });
            }
        }
        Ok(generation)
    }

    /// From now on a confirmed apply is written to `path` ([`SavedApply`]), with `base`, the
    /// [`super::fingerprint`] of the `agent.toml` section it replaces.
    pub async fn keep_confirmed(&self, path: PathBuf, base: String) {
        self.inner.lock().await.keep = Some(Keep { path, base });
    }

    /// Adds (`join = true`) or removes overlay addresses of a peer group: set elements only.
    pub async fn group_members(
        &self,
        group: &str,
        join: bool,
        addrs: &[Ipv6Addr],
    ) -> Result<(), FirewallError> {
        let mut inner = self.inner.lock().await;
        if !valid_group_name(group) || !inner.config.groups.contains_key(group) {
            return Err(FirewallError::NoSuchGroup(group.to_string()));
        }
        inner
            .nft
            .set_elements(join, &format!("grp_{group}"), addrs)
            .await?;
        let members = &mut inner.config.groups.get_mut(group).expect("checked").members;
        if join {
            for a in addrs {
                if !members.contains(a) {
                    members.push(*a);
                }
            }
        } else {
            members.retain(|m| !addrs.contains(m));
        }
        Ok(())
    }

    /// `holder` quarantines (`on = true`) or releases overlay addresses: set elements only. The
    /// set holds an address while any holder does (an admin's address stays when the realm
    /// releases the same node, and the other way round). Packets from a quarantined address
    /// beyond its rate (`quarantine_kbytes_per_s`, burst `quarantine_burst_kbytes`) are
    /// dropped, even on established connections.
    pub async fn quarantine(
        &self,
        holder: Holder,
        on: bool,
        addrs: &[Ipv6Addr],
    ) -> Result<(), FirewallError> {
        let mut inner = self.inner.lock().await;
        let fresh = inner.quarantine.change(holder, on, addrs);
        inner.nft.set_elements(on, "quarantine", &fresh).await?;
        inner.quarantine.commit(holder, on, addrs);
        Ok(())
    }

    /// The config last applied (and not rolled back).
    pub async fn config(&self) -> FirewallConfig {
        self.inner.lock().await.config.clone()
    }

    /// The live `table inet macula` as nft lists it (empty when absent).
    pub async fn ruleset(&self) -> Result<String, FirewallError> {
        let inner = self.inner.lock().await;
        Ok(inner.nft.list_table().await?.unwrap_or_default())
    }

    /// The state as of now.
    pub async fn status(&self) -> FirewallStatus {
        let inner = self.inner.lock().await;
        let now = self.now();
        FirewallStatus {
            pending: inner.guard.pending_generation(),
            rollback_in: inner.guard.deadline().map(|d| d.saturating_sub(now)),
            last_rollback: inner.last_rollback.clone(),
            quarantined: inner.quarantine.len(),
            applies: inner.applies,
            rollbacks: inner.rollbacks,
        }
    }
}
