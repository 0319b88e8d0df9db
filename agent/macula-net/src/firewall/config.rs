//! The `[firewall]` section of `agent.toml`.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv6Addr};

use serde::{Deserialize, Serialize};

/// `[firewall]`: zones by interface, the management access rule, peer groups.
///
/// Defaults: disabled (the agent leaves nft alone); no interfaces in any zone (so only loopback, management and established traffic
/// pass), management SSH (tcp/22) from `mgmt.sources`, WireGuard port udp/51820 and mesh port
/// udp/4433 (opened only in zones that set `wireguard`/`mesh`), confirm timeout 30 s, quarantined
/// overlay peers limited to 128 kB/s each with a 1024 kB burst.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FirewallConfig {
    /// Whether the agent manages `table inet macula` at all (read at start; `Apply` ignores it).
    pub enabled: bool,
    /// UDP port of the WireGuard overlay, opened in zones with `wireguard = true`.
    pub wireguard_port: u16,
    /// UDP port of the QUIC mesh, opened in zones with `mesh = true`.
    pub mesh_port: u16,
    /// Seconds an applied ruleset waits for `Confirm` before it is rolled back.
    pub confirm_timeout_secs: u64,
    /// The management access rule. It is rendered before zone dispatch; zone config cannot remove it.
    pub mgmt: MgmtConfig,
    /// Zones by interface.
    pub zones: Zones,
    /// Overlay peer groups: each becomes an nft set of /128 overlay addresses.
    pub groups: BTreeMap<String, GroupConfig>,
    /// Rate each quarantined overlay address may still send at, in kilobytes per second (packets
    /// beyond it are dropped): enough to answer proofs during probation, not to carry traffic.
    pub quarantine_kbytes_per_s: u32,
    /// Burst allowed above that rate, in kilobytes (a storage answer is ≈ 300 kB).
    pub quarantine_burst_kbytes: u32,
}

impl Default for FirewallConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            wireguard_port: 51820,
            mesh_port: 4433,
            confirm_timeout_secs: 30,
            mgmt: MgmtConfig::default(),
            zones: Zones::default(),
            groups: BTreeMap::new(),
            quarantine_kbytes_per_s: 128,
            quarantine_burst_kbytes: 1024,
        }
    }
}

/// `[firewall.mgmt]`: interfaces that accept everything, and source networks that reach the
/// management ports from any interface.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MgmtConfig {
    /// Dedicated management interfaces: all traffic arriving on them is accepted.
    pub interfaces: Vec<String>,
    /// Source networks (`192.0.2.0/24`, `fd00::/8`, single addresses) allowed to the management ports.
    pub sources: Vec<String>,
    /// Management TCP ports (default: 22).
    pub tcp_ports: Vec<u16>,
}

impl Default for MgmtConfig {
    fn default() -> Self {
        Self {
            interfaces: Vec::new(),
            sources: Vec::new(),
            tcp_ports: vec![22],
        }
    }
}

/// `[firewall.zones]`: the four zones. Each interface belongs to at most one zone.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Zones {
    /// Local ethernet.
    pub lan: ZoneConfig,
    /// Upstream links (LTE, upstream Wi-Fi).
    pub wan: ZoneConfig,
    /// The WireGuard overlay interface(s).
    pub overlay: ZoneConfig,
}

impl Zones {
    /// The zones with their nft chain-name stem, in rendering order.
    pub fn iter(&self) -> [(&'static str, &ZoneConfig); 3] {
        [
            ("lan", &self.lan),
            ("wan", &self.wan),
            ("overlay", &self.overlay),
        ]
    }
}

/// One zone: which interfaces, which ports are open on input, where forwarding may go.
///
/// Defaults are closed: no ports (WireGuard and mesh off), only ping accepted, no forwarding —
/// nothing listens on a zone unless the config says so.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ZoneConfig {
    pub interfaces: Vec<String>,
    pub tcp_ports: Vec<u16>,
    pub udp_ports: Vec<u16>,
    /// Open the WireGuard port (`firewall.wireguard_port`, UDP).
    pub wireguard: bool,
    /// Open the mesh port (`firewall.mesh_port`, UDP).
    pub mesh: bool,
    /// Accept ICMP/ICMPv6 echo requests.
    pub ping: bool,
    /// Zones (`lan`, `wan`, `overlay`) that traffic arriving in this zone may be forwarded to.
    pub forward_to: Vec<String>,
}

impl Default for ZoneConfig {
    fn default() -> Self {
        Self {
            interfaces: Vec::new(),
            tcp_ports: Vec::new(),
            udp_ports: Vec::new(),
            wireguard: false,
            mesh: false,
            ping: true,
            forward_to: Vec::new(),
        }
    }
}

/// `[firewall.groups.<name>]`: overlay peers by identity and what they may reach on this node.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GroupConfig {
    /// Overlay addresses (/128) of the members.
    pub members: Vec<Ipv6Addr>,
    pub tcp_ports: Vec<u16>,
    pub udp_ports: Vec<u16>,
}

/// A firewall config that cannot be rendered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ValidationError {
    #[error(
        "firewall: interface name {0:?} is invalid; use 1–15 characters from A–Z a–z 0–9 . _ -"
    )]
    BadInterface(String),
    #[error(
        "firewall: interface {name:?} is in both {first} and {second}; list each interface in one zone only"
    )]
    InterfaceInTwoZones {
        name: String,
        first: &'static str,
        second: &'static str,
    },
    #[error(
        "firewall: mgmt source {0:?} is not an address or network; write e.g. 192.0.2.0/24 or fd00::/8"
    )]
    BadSource(String),
    #[error(
        "firewall: group name {0:?} is invalid; use 1–24 characters from a–z 0–9 _ starting with a letter"
    )]
    BadGroupName(String),
    #[error("firewall: port 0 in {0}; use ports 1–65535")]
    PortZero(String),
    #[error("firewall: zone {zone}: forward_to {target:?} is not a zone; use lan, wan or overlay")]
    BadForward { zone: &'static str, target: String },
    #[error("firewall: confirm_timeout_secs must be 1–3600")]
    BadTimeout,
    #[error(
        "firewall: quarantine_kbytes_per_s and quarantine_burst_kbytes must be 1–1048576 (kilobytes)"
    )]
    BadQuarantineRate,
}

/// A parsed source network of the management rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Net {
    pub addr: IpAddr,
    pub len: u8,
}

impl std::fmt::Display for Net {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let full = if self.addr.is_ipv4() { 32 } else { 128 };
        if self.len == full {
            write!(f, "{}", self.addr)
        } else {
            write!(f, "{}/{}", self.addr, self.len)
        }
    }
}

fn parse_net(s: &str) -> Option<Net> {
    let (addr, len) = match s.split_once('/') {
        Some((a, l)) => (a.parse::<IpAddr>().ok()?, Some(l.parse::<u8>().ok()?)),
        None => (s.parse::<IpAddr>().ok()?, None),
    };
    let full = if addr.is_ipv4() { 32 } else { 128 };
    let len = len.unwrap_or(full);
    if len > full {
        return None;
    }
    // nft rejects host bits beyond the prefix; normalise to the network address.
    let addr = match addr {
        IpAddr::V4(a) => {
            let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
            IpAddr::V4((u32::from(a) & mask).into())
        }
        IpAddr::V6(a) => {
            let mask = if len == 0 {
                0
            } else {
                u128::MAX << (128 - len)
            };
            IpAddr::V6((u128::from(a) & mask).into())
        }
    };
    Some(Net { addr, len })
}

fn valid_ifname(s: &str) -> bool {
    (1..=15).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// Peer-group names become nft set names `grp_<name>`.
pub(crate) fn valid_group_name(s: &str) -> bool {
    (1..=24).contains(&s.len())
        && s.as_bytes()[0].is_ascii_lowercase()
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

/// The config after validation: what the renderer consumes.
#[derive(Debug, Clone)]
pub(crate) struct Validated<'a> {
    pub cfg: &'a FirewallConfig,
    pub mgmt4: BTreeSet<Net>,
    pub mgmt6: BTreeSet<Net>,
}

/// A document `Apply` takes: any `agent.toml`-like text; only `[firewall]` is used.
#[derive(Deserialize)]
struct ApplyDoc {
    #[serde(default)]
    firewall: FirewallConfig,
}

impl FirewallConfig {
    /// The `[firewall]` section of an `agent.toml`-like document, checked; errors name `origin`
    /// (the file applied, or what carried the text), with the line and column where they have one.
    pub fn from_document(text: &str, origin: &std::path::Path) -> Result<Self, String> {
        let doc: ApplyDoc =
            macula_core::config::parse_str(text, origin).map_err(|e| e.to_string())?;
        doc.firewall
            .validate()
            .map_err(|e| format!("{}: [firewall]: {e}", origin.display()))?;
        Ok(doc.firewall)
    }

    /// Checks everything the renderer relies on; the first problem is reported.
    pub fn validate(&self) -> Result<(), ValidationError> {
        self.validated().map(|_| ())
    }

    pub(crate) fn validated(&self) -> Result<Validated<'_>, ValidationError> {
        if !(1..=3600).contains(&self.confirm_timeout_secs) {
            return Err(ValidationError::BadTimeout);
        }
        let kb = 1..=1 << 20;
        if !kb.contains(&self.quarantine_kbytes_per_s)
            || !kb.contains(&self.quarantine_burst_kbytes)
        {
            return Err(ValidationError::BadQuarantineRate);
        }
        let mut owner: BTreeMap<&str, &'static str> = BTreeMap::new();
        let zones = self.zones.iter();
        let all = std::iter::once(("mgmt", &self.mgmt.interfaces))
            .chain(zones.iter().map(|(n, z)| (*n, &z.interfaces)));
        for (zone, ifs) in all {
            for name in ifs {
                if !valid_ifname(name) {
                    return Err(ValidationError::BadInterface(name.clone()));
                }
                if let Some(first) = owner.insert(name, zone)
                    && first != zone
                {
                    return Err(ValidationError::InterfaceInTwoZones {
                        name: name.clone(),
                        first,
                        second: zone,
                    });
                }
            }
        }
        if self.mgmt.tcp_ports.contains(&0) {
            return Err(ValidationError::PortZero("mgmt.tcp_ports".into()));
        }
        if self.wireguard_port == 0 || self.mesh_port == 0 {
            return Err(ValidationError::PortZero("wireguard_port/mesh_port".into()));
        }
        for (name, z) in zones {
            if z.tcp_ports.contains(&0) || z.udp_ports.contains(&0) {
                return Err(ValidationError::PortZero(format!("zones.{name}")));
            }
            for t in &z.forward_to {
                if !matches!(t.as_str(), "lan" | "wan" | "overlay") {
                    return Err(ValidationError::BadForward {
                        zone: name,
                        target: t.clone(),
                    });
                }
            }
        }
        for (name, g) in &self.groups {
            if !valid_group_name(name) {
                return Err(ValidationError::BadGroupName(name.clone()));
            }
            if g.tcp_ports.contains(&0) || g.udp_ports.contains(&0) {
                return Err(ValidationError::PortZero(format!("groups.{name}")));
            }
        }
        let mut mgmt4 = BTreeSet::new();
        let mut mgmt6 = BTreeSet::new();
        for s in &self.mgmt.sources {
            let net = parse_net(s).ok_or_else(|| ValidationError::BadSource(s.clone()))?;
            if net.addr.is_ipv4() {
                mgmt4.insert(net);
            } else {
                mgmt6.insert(net);
            }
        }
        Ok(Validated {
            cfg: self,
            mgmt4,
            mgmt6,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nets_are_normalised() {
        assert_eq!(
            parse_net("192.0.2.77/24").unwrap().to_string(),
            "192.0.2.0/24"
        );
        assert_eq!(parse_net("fd00::1").unwrap().to_string(), "fd00::1");
        assert_eq!(parse_net("fd00::1/8").unwrap().to_string(), "fd00::/8");
        assert!(parse_net("192.0.2.0/33").is_none());
        assert!(parse_net("example.org").is_none());
    }

    #[test]
    fn validation_reports_the_problem() {
        let mut c = FirewallConfig::default();
        c.zones.lan.interfaces = vec!["eth0".into()];
        c.mgmt.interfaces = vec!["eth0".into()];
        assert_eq!(
            c.validate(),
            Err(ValidationError::InterfaceInTwoZones {
                name: "eth0".into(),
                first: "mgmt",
                second: "lan"
            })
        );
        let mut c = FirewallConfig::default();
        c.zones.wan.interfaces = vec!["eth0\"; flush ruleset".into()];
        assert!(matches!(
            c.validate(),
            Err(ValidationError::BadInterface(_))
        ));
        let mut c = FirewallConfig::default();
        c.groups.insert("Ops".into(), GroupConfig::default());
        assert!(matches!(
            c.validate(),
            Err(ValidationError::BadGroupName(_))
        ));
        for (rate, burst) in [(0, 1024), (128, 0), (1 << 21, 1024)] {
            let c = FirewallConfig {
                quarantine_kbytes_per_s: rate,
                quarantine_burst_kbytes: burst,
                ..Default::default()
            };
            assert_eq!(c.validate(), Err(ValidationError::BadQuarantineRate));
        }
        let mut c = FirewallConfig::default();
        c.zones.lan.forward_to = vec!["dmz".into()];
        assert!(matches!(
            c.validate(),
            Err(ValidationError::BadForward { .. })
        ));
        let mut c = FirewallConfig::default();
        c.mgmt.sources = vec!["10.0.0.0/40".into()];
        assert!(matches!(c.validate(), Err(ValidationError::BadSource(_))));
        assert!(FirewallConfig::default().validate().is_ok());
    }
}
