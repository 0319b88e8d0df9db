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

/// One peer of `Overlay1.Peers()`, with its live WireGuard state.
#[derive(Debug, Clone, PartialEq, Eq, zbus::zvariant::SerializeDict, zbus::zvariant::Type)]
#[zvariant(signature = "a{sv}", crate = "zbus::zvariant")]
pub struct OverlayPeer {
    /// WireGuard public key, base64.
    pub public_key: String,
    /// Overlay address (empty when the peer is not in the configuration).
    pub address: String,
    /// Endpoint (`ip:port`, empty when none is known); in redundant mode the agent's loopback
    /// duplicator socket.
    pub endpoint: String,
    /// Last handshake, unix seconds (0 = never).
    pub last_handshake_s: u64,
    pub rx_bytes: u64,
    pub tx_bytes: u64,
    pub keepalive_s: u16,
    pub allowed_ips: Vec<String>,
    /// Whether the peer is in redundant mode.
    pub redundant: bool,
    /// Datagrams the duplicator took from WireGuard for this peer (0 when not redundant).
    pub redundant_tx_packets: u64,
    /// Datagrams the duplicator handed to WireGuard for this peer, duplicates included.
    pub redundant_rx_packets: u64,
}

/// What the overlay interface needs from the daemon.
pub trait OverlayControl: Send + Sync + 'static {
    /// `interface`, `address`, `public_key` (base64), `listen_port`, `peers` (count),
    /// `implementation` (`wireguard-go` or `kernel`), `kernel_wireguard` (module available),
    /// `redundant_peers` (count of peers in redundant mode).
    fn status(&self) -> BoxFuture<'_, Result<OverlayStatus, Error>>;
    /// The device's peers.
    fn peers(&self) -> BoxFuture<'_, Result<Vec<OverlayPeer>, Error>>;
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
    async fn peers(&self) -> Result<Vec<OverlayPeer>, Error> {
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
