//! The `[overlay]` section of `agent.toml`.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use macula_core::NodeId;
use serde::{Deserialize, Serialize};

/// Which WireGuard implementation runs the overlay.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Implementation {
    /// `wireguard-go`, configured over its UAPI socket.
    Userspace,
    /// The kernel module, configured over generic netlink.
    Kernel,
    /// Kernel when available, else userspace.
    Auto,
}

/// Default UDP port of the redundant-mode duplicator.
pub const DEFAULT_REDUNDANT_PORT: u16 = 51822;

/// `[overlay]`: the WireGuard overlay interface and, until mesh membership drives it, a static
/// peer list.
///
/// Defaults: disabled, interface `mcl0`, UDP port 51820, MTU 1420 (1500 − 80, as wg-quick), no
/// peers, kernel WireGuard when available else `wireguard-go` from `PATH`, duplicator port 51822.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OverlayConfig {
    pub enabled: bool,
    /// Interface name (1–15 characters).
    pub interface: String,
    pub listen_port: u16,
    /// Set explicitly on the interface (1280–9000).
    pub mtu: u32,
    /// The realm ID (the realm key's public half, base32 like a node ID); the overlay /48 is
    /// derived from it (docs/identity.md). Required when enabled.
    pub realm: Option<NodeId>,
    /// Program of the userspace WireGuard implementation.
    pub wireguard_go: String,
    /// `auto` (default: kernel when the `wireguard` generic-netlink family exists, else
    /// userspace), `kernel` (the module must be available) or `userspace` (wireguard-go).
    pub implementation: Implementation,
    /// UDP port of the redundant-mode duplicator on every uplink address (peers with
    /// `redundant = true`; see `uplinks::redundant`).
    pub redundant_port: u16,
    /// Static peers (`[[overlay.peers]]`).
    pub peers: Vec<PeerConfig>,
}

impl Default for OverlayConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            interface: "mcl0".into(),
            listen_port: 51820,
            mtu: 1420,
            realm: None,
            wireguard_go: "wireguard-go".into(),
            implementation: Implementation::Auto,
            redundant_port: DEFAULT_REDUNDANT_PORT,
            peers: Vec::new(),
        }
    }
}

/// `[[overlay.peers]]`: one peer by node ID. Its WireGuard key and overlay address are computed
/// from the node ID.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PeerConfig {
    pub node_id: NodeId,
    /// `ip:port` (IPv6 as `[addr]:port`); absent for peers that only connect to us (behind NAT).
    #[serde(default)]
    pub endpoint: Option<SocketAddr>,
    /// Persistent keepalive in seconds (0 = off; 25 for peers behind NAT).
    #[serde(default)]
    pub keepalive_secs: u16,
    /// Hub routing: nodes reached through this peer (their /128s join its allowed IPs).
    #[serde(default)]
    pub relay_for: Vec<NodeId>,
    /// Multipath: the endpoint to use while uplink `<name>` (`[[uplinks.links]] name`) is the
    /// active one, e.g. `{ lte = "203.0.113.2:51820" }`. Uplinks not listed keep `endpoint`.
    #[serde(default)]
    pub uplink_endpoints: BTreeMap<String, SocketAddr>,
    /// Redundant mode: every encrypted packet to this peer leaves on every healthy uplink and
    /// the first copy to arrive wins. `uplink_endpoints` then name the peer's *duplicator*
    /// addresses (its `redundant_port`) per uplink; the peer must flag us the same way.
    #[serde(default)]
    pub redundant: bool,
}

impl PeerConfig {
    /// A peer with no endpoint, keepalive, relaying or per-uplink endpoints.
    pub fn new(node_id: NodeId) -> Self {
        Self {
            node_id,
            endpoint: None,
            keepalive_secs: 0,
            relay_for: Vec::new(),
            uplink_endpoints: BTreeMap::new(),
            redundant: false,
        }
    }
}

/// An `[overlay]` section that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OverlayConfigError {
    #[error("overlay: interface name {0:?} is invalid; use 1–15 characters from A–Z a–z 0–9 . _ -")]
    BadInterface(String),
    #[error("overlay: mtu {0} is out of range; use 1280–9000 (1420 suits a 1500-byte underlay)")]
    BadMtu(u32),
    #[error(
        "overlay: realm is not set; set [overlay] realm to the realm ID (as in the membership certificate)"
    )]
    NoRealm,
    #[error("overlay: listen_port 0; use a UDP port such as 51820")]
    NoPort,
    #[error("overlay: peer {0} is listed twice; list each peer once")]
    DuplicatePeer(String),
    #[error(
        "overlay: peer {0} has redundant = true but no uplink_endpoints; list its duplicator address per uplink, e.g. {{ lte = \"203.0.113.2:51822\" }}"
    )]
    RedundantWithoutEndpoints(String),
    #[error("overlay: redundant_port must differ from listen_port and not be 0 (default 51822)")]
    BadRedundantPort,
}

impl OverlayConfig {
    /// Checks the section; returns the realm ID it needs.
    pub fn validate(&self) -> Result<NodeId, OverlayConfigError> {
        let i = &self.interface;
        if !(1..=15).contains(&i.len())
            || !i
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
        {
            return Err(OverlayConfigError::BadInterface(i.clone()));
        }
        if !(1280..=9000).contains(&self.mtu) {
            return Err(OverlayConfigError::BadMtu(self.mtu));
        }
        let realm = self.realm.ok_or(OverlayConfigError::NoRealm)?;
        if self.listen_port == 0 {
            return Err(OverlayConfigError::NoPort);
        }
        if self.peers.iter().any(|p| p.redundant)
            && (self.redundant_port == 0 || self.redundant_port == self.listen_port)
        {
            return Err(OverlayConfigError::BadRedundantPort);
        }
        let mut seen = std::collections::BTreeSet::new();
        for p in &self.peers {
            if !seen.insert(p.node_id) {
                return Err(OverlayConfigError::DuplicatePeer(p.node_id.to_string()));
            }
            if p.redundant && p.uplink_endpoints.is_empty() {
                return Err(OverlayConfigError::RedundantWithoutEndpoints(
                    p.node_id.to_string(),
                ));
            }
        }
        Ok(realm)
    }
}
