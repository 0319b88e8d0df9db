//! The `[uplinks]` section of `agent.toml`.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::tracker::Timing;
use crate::overlay::OverlayConfig;

/// `[uplinks]`: health probing and failover between uplinks.
///
/// Defaults: disabled; probe every 200 ms; an uplink is down after 1000 ms without a reply and up
/// again after 3 consecutive replies (failover within ~1.2 s of a path going silent); probe
/// responder on UDP 51821; per-uplink routing tables from 100, policy rules from priority 1000;
/// no links listed: discovered from the default routes (needs `probe`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct UplinksConfig {
    pub enabled: bool,
    pub interval_ms: u64,
    pub dead_after_ms: u64,
    pub up_after: u32,
    /// UDP port the probe responder listens on (0: no responder).
    pub responder_port: u16,
    /// First per-uplink routing table; uplink `i` uses `table_base + i`.
    pub table_base: u32,
    /// First policy-rule priority; uplink `i` uses `rule_priority_base + i`.
    pub rule_priority_base: u32,
    /// Probe responder for discovered uplinks (used when `links` is empty): every interface
    /// with a default route in the main table becomes an uplink probing this address.
    pub probe: Option<SocketAddr>,
    /// `[[uplinks.links]]`, in order; empty: discover them (see `probe`).
    pub links: Vec<UplinkConfig>,
}

impl Default for UplinksConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            interval_ms: 200,
            dead_after_ms: 1000,
            up_after: 3,
            responder_port: super::probe::DEFAULT_PORT,
            table_base: 100,
            rule_priority_base: 1000,
            probe: None,
            links: Vec::new(),
        }
    }
}

/// `[[uplinks.links]]`: one uplink.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UplinkConfig {
    /// Short name (`lte`, `eth`), 1–15 characters.
    pub name: String,
    pub interface: String,
    /// Lower wins (mwan3 "metric").
    #[serde(default)]
    pub priority: u32,
    /// The uplink's local address: probes and policy routing use it.
    pub source: IpAddr,
    /// Next hop of this uplink's default route (absent: on-link).
    #[serde(default)]
    pub gateway: Option<IpAddr>,
    /// Where probes go: a probe responder reached through this uplink.
    pub probe: SocketAddr,
}

/// An `[uplinks]` section that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UplinksConfigError {
    #[error("uplinks: {0}")]
    Invalid(String),
    #[error(
        "[[overlay.peers]] with redundant = true need uplink monitoring; set [uplinks] enabled = true with [[uplinks.links]]"
    )]
    RedundantWithoutUplinks,
    #[error(
        "no uplink to monitor: no interface has a default route of the probe's address family; list [[uplinks.links]] in agent.toml"
    )]
    NoneDiscovered,
}

/// What to do with an `[uplinks]` section (see [`UplinksConfig::plan`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UplinksPlan {
    /// Monitoring is off.
    Off,
    /// Monitor the listed links.
    Listed,
    /// No link is listed: discover them from the default routes (`links::discover`), then
    /// [`UplinksConfig::discovered`].
    Discover,
}

impl UplinksConfig {
    pub fn timing(&self) -> Timing {
        Timing {
            interval: Duration::from_millis(self.interval_ms),
            dead_after: Duration::from_millis(self.dead_after_ms),
            up_after: self.up_after,
        }
    }

    /// Checks this section together with the `[overlay]` it serves (before anything is
    /// discovered or started): redundant overlay peers need uplink monitoring, and an enabled
    /// section must be valid ([`UplinksConfig::validate`]).
    pub fn plan(&self, overlay: &OverlayConfig) -> Result<UplinksPlan, UplinksConfigError> {
        let redundant = overlay.enabled && overlay.peers.iter().any(|p| p.redundant);
        if redundant && !self.enabled {
            return Err(UplinksConfigError::RedundantWithoutUplinks);
        }
        if !self.enabled {
            return Ok(UplinksPlan::Off);
        }
        self.validate()?;
        Ok(if self.links.is_empty() {
            UplinksPlan::Discover
        } else {
            UplinksPlan::Listed
        })
    }

    /// The section to run when discovery found `found` ([`UplinksConfig::with_discovered`]):
    /// an error when no uplink of the probe's address family was found.
    pub fn discovered(
        &self,
        found: &[crate::links::Discovered],
    ) -> Result<Self, UplinksConfigError> {
        let cfg = self.with_discovered(found);
        if cfg.links.is_empty() {
            return Err(UplinksConfigError::NoneDiscovered);
        }
        cfg.validate()?;
        Ok(cfg)
    }

    /// This section with `links` filled from discovery (`links::discover`, lowest metric first):
    /// name and interface = the interface, priority = the route metric, probing `probe`. Uplinks
    /// of the other address family than `probe` are left out. Listed links are kept as they are.
    pub fn with_discovered(&self, found: &[crate::links::Discovered]) -> Self {
        let mut cfg = self.clone();
        let Some(probe) = self.probe else {
            return cfg;
        };
        if !cfg.links.is_empty() {
            return cfg;
        }
        cfg.links = found
            .iter()
            .filter(|d| d.source.is_ipv4() == probe.is_ipv4())
            .map(|d| UplinkConfig {
                name: d.interface.clone(),
                interface: d.interface.clone(),
                priority: d.metric,
                source: d.source,
                gateway: d.gateway,
                probe,
            })
            .collect();
        cfg
    }

    pub fn validate(&self) -> Result<(), UplinksConfigError> {
        let bad = |m: String| Err(UplinksConfigError::Invalid(m));
        if !(10..=60_000).contains(&self.interval_ms) {
            return bad("interval_ms must be 10–60000".into());
        }
        if self.dead_after_ms <= self.interval_ms {
            return bad("dead_after_ms must be larger than interval_ms (e.g. 5 × interval)".into());
        }
        if self.up_after == 0 {
            return bad("up_after must be at least 1".into());
        }
        if self.links.is_empty() && self.probe.is_none() {
            return bad(
                "no [[uplinks.links]] and no probe: list the uplinks, or set [uplinks] probe = \"ip:port\" (a probe responder reachable through every uplink) to discover them from the default routes".into(),
            );
        }
        let mut names = std::collections::BTreeSet::new();
        for l in &self.links {
            let ok = |s: &str| {
                (1..=15).contains(&s.len())
                    && s.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
            };
            if !ok(&l.name) || !ok(&l.interface) {
                return bad(format!(
                    "link {:?}: name and interface must be 1–15 characters from A–Z a–z 0–9 . _ -",
                    l.name
                ));
            }
            if self.links.len() > 254 {
                return bad("at most 254 links".into());
            }
            if !names.insert(&l.name) {
                return bad(format!("link {:?} is listed twice", l.name));
            }
            if l.gateway.is_some_and(|g| g.is_ipv4() != l.source.is_ipv4())
                || l.probe.is_ipv4() != l.source.is_ipv4()
            {
                return bad(format!(
                    "link {:?}: source, gateway and probe must be the same address family",
                    l.name
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::links::Discovered;

    fn found(interface: &str, source: &str, metric: u32) -> Discovered {
        Discovered {
            interface: interface.into(),
            index: 1,
            source: source.parse().unwrap(),
            gateway: None,
            carrier: true,
            metric,
        }
    }

    #[test]
    fn discovery_fills_links_only_when_none_are_listed() {
        let mut cfg = UplinksConfig::default();
        assert!(cfg.validate().is_err(), "neither links nor probe");
        cfg.probe = Some("192.0.2.9:51821".parse().unwrap());
        cfg.validate().unwrap();
        let d = [
            found("eth0", "198.51.100.1", 0),
            found("wwan0", "203.0.113.1", 700),
            found("eth1", "2001:db8::1", 5),
        ];
        let got = cfg.with_discovered(&d);
        assert_eq!(got.links.len(), 2, "IPv6 uplink left out for an IPv4 probe");
        assert_eq!(
            (
                got.links[1].name.as_str(),
                got.links[1].priority,
                got.links[1].probe
            ),
            ("wwan0", 700, cfg.probe.unwrap())
        );
        got.validate().unwrap();
        let listed = got.with_discovered(&[found("eth9", "198.51.100.9", 1)]);
        assert_eq!(listed.links, got.links, "listed links are kept");
    }

    #[test]
    fn discovery_that_finds_nothing_of_the_probes_family_is_an_error() {
        let cfg = UplinksConfig {
            enabled: true,
            probe: Some("192.0.2.9:51821".parse().unwrap()),
            ..Default::default()
        };
        assert_eq!(
            cfg.discovered(&[found("eth1", "2001:db8::1", 5)]),
            Err(UplinksConfigError::NoneDiscovered)
        );
        assert!(
            UplinksConfigError::NoneDiscovered
                .to_string()
                .contains("list [[uplinks.links]] in agent.toml")
        );
        let got = cfg.discovered(&[found("eth0", "198.51.100.1", 0)]).unwrap();
        assert_eq!(got.links[0].interface, "eth0");
    }

    #[test]
    fn plan_checks_the_section_with_the_overlay_it_serves() {
        let peer = |redundant| crate::overlay::PeerConfig {
            redundant,
            ..crate::overlay::PeerConfig::new(macula_core::NodeKey::from_seed([7; 32]).node_id())
        };
        let overlay = |enabled, redundant| OverlayConfig {
            enabled,
            peers: vec![peer(redundant)],
            ..Default::default()
        };
        let off = UplinksConfig::default();
        assert_eq!(off.plan(&overlay(true, false)), Ok(UplinksPlan::Off));
        assert_eq!(off.plan(&overlay(false, true)), Ok(UplinksPlan::Off));
        let err = off.plan(&overlay(true, true)).unwrap_err();
        assert_eq!(err, UplinksConfigError::RedundantWithoutUplinks);
        assert!(
            err.to_string().contains("set [uplinks] enabled = true"),
            "{err}"
        );

        let on = UplinksConfig {
            enabled: true,
            ..Default::default()
        };
        assert!(
            matches!(
                on.plan(&overlay(true, true)),
                Err(UplinksConfigError::Invalid(_))
            ),
            "neither links nor probe"
        );
        let discover = UplinksConfig {
            probe: Some("192.0.2.9:51821".parse().unwrap()),
            ..on.clone()
        };
        assert_eq!(
            discover.plan(&overlay(true, true)),
            Ok(UplinksPlan::Discover)
        );
        let listed = discover.with_discovered(&[found("eth0", "198.51.100.1", 0)]);
        assert_eq!(listed.plan(&overlay(true, true)), Ok(UplinksPlan::Listed));
    }
}
