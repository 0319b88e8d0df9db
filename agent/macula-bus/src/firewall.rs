//! `io.macula.Firewall1`: the nftables firewall (`table inet macula`).
//!
//! `Apply` replaces the ruleset and arms the confirm timer; without `Confirm` in time the agent
//! rolls back to the last confirmed ruleset by itself.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;

use zbus::object_server::SignalEmitter;
use zbus::zvariant::{OwnedValue, Value};

use crate::Error;

/// `Firewall1.Status()`.
#[derive(Debug, Clone, PartialEq, Eq, zbus::zvariant::SerializeDict, zbus::zvariant::Type)]
#[zvariant(signature = "a{sv}", crate = "zbus::zvariant")]
pub struct FirewallStatus {
    /// Generation waiting for `Confirm`; 0 = none.
    pub pending: u64,
    /// Seconds before that apply is rolled back (0 = none pending).
    pub rollback_in_s: u64,
    /// What the last automatic rollback did; empty = none yet.
    pub last_rollback: String,
    /// Overlay addresses in the quarantine set.
    pub quarantined: u32,
    /// `Apply` calls that changed the ruleset, and automatic rollbacks, since the agent started.
    pub applies: u64,
    pub rollbacks: u64,
}

/// D-Bus interface name.
pub const INTERFACE: &str = "io.macula.Firewall1";

/// A boxed future, so backend traits stay object-safe.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Outcome of `Apply`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    pub generation: u64,
    pub confirm_within_s: u64,
}

/// What the firewall interface needs from the daemon. Errors are already mapped to [`Error`].
pub trait FirewallControl: Send + Sync + 'static {
    /// Applies a `[firewall]` section given as TOML text (the section's keys, no header).
    fn apply(&self, config_toml: String) -> BoxFuture<'_, Result<Applied, Error>>;
    /// Confirms the pending apply; returns its generation.
    fn confirm(&self) -> BoxFuture<'_, Result<u64, Error>>;
    /// The live `table inet macula` (empty when absent).
    fn ruleset(&self) -> BoxFuture<'_, Result<String, Error>>;
    /// Status: `pending` (generation, 0 = none), `rollback_in_s`, `last_rollback`, `quarantined`.
    fn status(&self) -> BoxFuture<'_, Result<FirewallStatus, Error>>;
    /// Quarantines (`on`) or releases overlay addresses.
    fn quarantine(&self, addresses: Vec<String>, on: bool) -> BoxFuture<'_, Result<(), Error>>;
}

/// The `io.macula.Firewall1` server object.
pub struct FirewallObject {
    control: Box<dyn FirewallControl>,
}

impl FirewallObject {
    pub fn new(control: Box<dyn FirewallControl>) -> Self {
        Self { control }
    }
}

/// Converts plain values to the `a{sv}` map type.
pub fn owned(v: Value<'_>) -> OwnedValue {
    v.try_to_owned()
        .expect("plain values have no file descriptors")
}

#[zbus::interface(name = "io.macula.Firewall1")]
impl FirewallObject {
    /// The live ruleset of `table inet macula` as nft lists it.
    #[zbus(property)]
    async fn ruleset(&self) -> Result<String, zbus::fdo::Error> {
        self.control
            .ruleset()
            .await
            .map_err(|e| zbus::fdo::Error::Failed(e.to_string()))
    }

    /// Applies a `[firewall]` section (TOML text): render → `nft -c` → atomic replace. Returns
    /// (generation, seconds left to `Confirm` before automatic rollback). On error nothing changed.
    async fn apply(
        &self,
        config_toml: String,
        #[zbus(signal_emitter)] emitter: SignalEmitter<'_>,
    ) -> Result<(u64, u64), Error> {
        let a = self.control.apply(config_toml).await?;
        tracing::info!(target: "macula::firewall", generation = a.generation, "ruleset applied over D-Bus; waiting for Confirm");
        self.ruleset_changed(&emitter).await?;
        Ok((a.generation, a.confirm_within_s))
    }

    /// Keeps the pending ruleset; returns its generation.
    async fn confirm(&self) -> Result<u64, Error> {
        self.control.confirm().await
    }

    /// Pending apply, rollback deadline, last rollback, quarantine size.
    async fn status(&self) -> Result<FirewallStatus, Error> {
        self.control.status().await
    }

    /// Quarantines (`on = true`) or releases overlay addresses (set elements only).
    async fn quarantine(&self, addresses: Vec<String>, on: bool) -> Result<(), Error> {
        self.control.quarantine(addresses, on).await
    }
}

/// Client proxy for `io.macula.Firewall1`.
#[zbus::proxy(
    interface = "io.macula.Firewall1",
    default_service = "io.macula.Agent",
    default_path = "/io/macula/Agent"
)]
pub trait Firewall1 {
    fn apply(&self, config_toml: &str) -> zbus::Result<(u64, u64)>;
    fn confirm(&self) -> zbus::Result<u64>;
    fn status(&self) -> zbus::Result<HashMap<String, OwnedValue>>;
    fn quarantine(&self, addresses: &[&str], on: bool) -> zbus::Result<()>;
    #[zbus(property)]
    fn ruleset(&self) -> zbus::Result<String>;
}
