//! The `[mesh]` section of `agent.toml`.

use std::net::{SocketAddr, SocketAddrV4};
use std::path::PathBuf;

use serde::Deserialize;

/// `[mesh]`: where the mesh listens and whom it contacts first.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MeshSection {
    /// UDP address of the mesh endpoint. Default `0.0.0.0:4433`.
    pub listen: SocketAddr,
    /// Addresses announced to peers. Default: the bound address.
    pub advertise: Vec<SocketAddr>,
    /// Bootstrap contacts: `host:port` or `<node-id>@host:port`. Default: none.
    pub bootstrap: Vec<String>,
    /// Membership certificate file. Default `<state dir>/realm.cert`. Without a valid
    /// certificate the mesh stays off (see docs/realms.md).
    pub cert: Option<PathBuf>,
    /// Interfaces on which the LAN discovery beacon is sent and heard (docs/protocol.md "LAN
    /// beacon"). List LAN-side interfaces only, never an uplink/WAN one. Default: none (off).
    pub lan_beacon: Vec<String>,
    /// Multicast group and port of the beacon. Default `239.255.77.77:4434`.
    pub beacon_group: SocketAddrV4,
    /// Seconds between beacons. Default 5.
    pub beacon_interval_s: u64,
    /// Set the system clock (needs root) to the realm's time when it is more than 10 s off.
    /// Default false; the images turn it on (boards without a real-time clock).
    pub set_clock: bool,
    /// NTP servers (`host` or `host:port`, port 123 by default) whose time is preferred to the
    /// realm's when one answers (SNTP, checked every minute). Default: none; the images name
    /// `pool.ntp.org`.
    pub ntp: Vec<String>,
    /// `[mesh.limits]`: what one member may make this node do per second and at once
    /// ([`crate::limits::PeerLimits`]; docs/configuration.md).
    pub limits: crate::limits::PeerLimits,
}

/// The realm size the agent's membership timing is tuned for (`MembershipConfig::lan`).
pub const AGENT_REALM_SIZE: u32 = 64;

impl MeshSection {
    /// The membership protocol settings of an agent: LAN timing for a realm of
    /// [`AGENT_REALM_SIZE`] members (suspicion timeout 4 × log10(64) ≈ 7.2 s unconfirmed).
    pub fn membership(&self) -> crate::membership::MembershipConfig {
        crate::membership::MembershipConfig::lan(AGENT_REALM_SIZE)
    }
}

impl Default for MeshSection {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([0, 0, 0, 0], 4433)),
            advertise: Vec::new(),
            bootstrap: Vec::new(),
            cert: None,
            lan_beacon: Vec::new(),
            beacon_group: crate::beacon::DEFAULT_GROUP,
            beacon_interval_s: 5,
            set_clock: false,
            ntp: Vec::new(),
            limits: crate::limits::PeerLimits::default(),
        }
    }
}
