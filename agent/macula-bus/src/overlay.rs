//! `io.macula.Overlay1`: the WireGuard overlay (read-only).

use std::collections::HashMap;

use zbus::zvariant::OwnedValue;

use crate::Error;
use crate::firewall::BoxFuture;

/// D-Bus interface name.
pub const INTERFACE: &str = "io.macula.Overlay1";

/// `Overlay1.Status()`.
#[derive(Debug, Clone, PartialEq, Eq, zbus::zvariant::SerializeDict, zbus::zvariant::Type)]
#[zvariant(signature = "a{sv}", crate = "zbus::zvariant")]
pub struct OverlayStatus {
    pub interface: String,
    pub address: String,
    /// WireGuard public key, base64.
    pub public_key: String,
    pub listen_port: u16,
    /// Peers configured on the device.
    pub peers: u32,
    /// `wireguard-go` or `kernel`.
    pub implementation: String,
    /// Whether the kernel module is available.
    pub kernel_wireguard: bool,
    /// Peers in redundant mode.
    pub redundant_peers: u32,
}

/// What the overlay interface needs from the daemon.
pub trait OverlayControl: Send + Sync + 'static {
    /// `interface`, `address`, `public_key` (base64), `listen_port`, `peers` (count),
    /// `implementation` (`wireguard-go` or `kernel`), `kernel_wireguard` (module available),
    /// `redundant_peers` (count of peers in redundant mode).
    fn status(&self) -> BoxFuture<'_, Result<OverlayStatus, Error>>;
    /// One map per peer: `public_key`, `address`, `endpoint`, `last_handshake_s` (unix, 0 =
    /// never), `rx_bytes`, `tx_bytes`, `keepalive_s`, `allowed_ips`, `redundant` (bool),
    /// `redundant_tx_packets` / `redundant_rx_packets` (datagrams the duplicator took from / handed
    /// to the device for this peer, duplicates included; 0 when not redundant).
    fn peers(&self) -> BoxFuture<'_, Result<Vec<HashMap<String, OwnedValue>>, Error>>;
}

/// The `io.macula.Overlay1` server object.
pub struct OverlayObject {
    control: Box<dyn OverlayControl>,
}

impl OverlayObject {
    pub fn new(control: Box<dyn OverlayControl>) -> Self {
        Self { control }
    }
}

#[zbus::interface(name = "io.macula.Overlay1")]
impl OverlayObject {
    /// The overlay interface: name, own address and key, port, MTU, peer count.
    async fn status(&self) -> Result<OverlayStatus, Error> {
        self.control.status().await
    }

    /// The peers with their live WireGuard state.
    async fn peers(&self) -> Result<Vec<HashMap<String, OwnedValue>>, Error> {
        self.control.peers().await
    }
}

/// Client proxy for `io.macula.Overlay1`.
#[zbus::proxy(
    interface = "io.macula.Overlay1",
    default_service = "io.macula.Agent",
    default_path = "/io/macula/Agent"
)]
pub trait Overlay1 {
    fn status(&self) -> zbus::Result<HashMap<String, OwnedValue>>;
    fn peers(&self) -> zbus::Result<Vec<HashMap<String, OwnedValue>>>;
}
