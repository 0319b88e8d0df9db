//! `io.macula.Uplinks1`: uplink health and the active uplink (read-only).

use std::collections::HashMap;

use zbus::zvariant::OwnedValue;

use crate::Error;
use crate::firewall::BoxFuture;

/// D-Bus interface name.
pub const INTERFACE: &str = "io.macula.Uplinks1";

/// One entry of `Uplinks1.Links()`.
#[derive(Debug, Clone, PartialEq, Eq, zbus::zvariant::SerializeDict, zbus::zvariant::Type)]
#[zvariant(signature = "a{sv}", crate = "zbus::zvariant")]
pub struct UplinkStatus {
    pub name: String,
    pub interface: String,
    pub priority: u32,
    pub active: bool,
    pub healthy: bool,
    pub carrier: bool,
    /// Last probe round trip, µs; 0 = none yet.
    pub rtt_us: u64,
    pub sent: u64,
    pub received: u64,
    /// Redundant-mode copies sent / received on this uplink.
    pub redundant_tx_packets: u64,
    pub redundant_rx_packets: u64,
}

/// What the uplinks interface needs from the daemon.
pub trait UplinksControl: Send + Sync + 'static {
    /// Name of the active uplink (empty: none, or monitoring disabled).
    fn active(&self) -> String;
    /// The uplinks in configuration order.
    fn links(&self) -> BoxFuture<'_, Result<Vec<UplinkStatus>, Error>>;
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
    async fn links(&self) -> Result<Vec<UplinkStatus>, Error> {
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
