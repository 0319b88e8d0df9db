//! `io.macula.Uplinks1`: uplink health and the active uplink (read-only).

use std::collections::HashMap;

use zbus::zvariant::OwnedValue;

use crate::Error;
use crate::firewall::BoxFuture;

/// D-Bus interface name.
pub const INTERFACE: &str = "io.macula.Uplinks1";

/// What the uplinks interface needs from the daemon.
pub trait UplinksControl: Send + Sync + 'static {
    /// Name of the active uplink (empty: none, or monitoring disabled).
    fn active(&self) -> String;
    /// One map per uplink: `name`, `interface`, `priority`, `active`, `healthy`, `carrier`,
    /// `rtt_us` (0 = none yet), `sent`, `received`, `redundant_tx_packets` /
    /// `redundant_rx_packets` (redundant-mode copies sent / received on this uplink).
    fn links(&self) -> BoxFuture<'_, Result<Vec<HashMap<String, OwnedValue>>, Error>>;
}

/// The `io.macula.Uplinks1` server object.
pub struct UplinksObject {
    control: Box<dyn UplinksControl>,
}

impl UplinksObject {
    pub fn new(control: Box<dyn UplinksControl>) -> Self {
        Self { control }
    }
}

#[zbus::interface(name = "io.macula.Uplinks1")]
impl UplinksObject {
    /// Name of the active uplink (empty: none); emits a change on failover.
    #[zbus(property)]
    fn active(&self) -> String {
        self.control.active()
    }

    /// The uplinks in configuration order with their health.
    async fn links(&self) -> Result<Vec<HashMap<String, OwnedValue>>, Error> {
        self.control.links().await
    }
}

/// Client proxy for `io.macula.Uplinks1`.
#[zbus::proxy(
    interface = "io.macula.Uplinks1",
    default_service = "io.macula.Agent",
    default_path = "/io/macula/Agent"
)]
pub trait Uplinks1 {
    fn links(&self) -> zbus::Result<Vec<HashMap<String, OwnedValue>>>;
    #[zbus(property)]
    fn active(&self) -> zbus::Result<String>;
}
