//! Acting on tracker decisions: the main default route and the overlay peers' WireGuard endpoints
//! follow the active uplink; MPTCP subflow endpoints follow the healthy set.

use std::net::SocketAddr;
use std::sync::Arc;

use super::config::UplinksConfig;
use super::routing;
use super::tracker::Action;
use crate::cmd::{CmdError, Host};
use crate::mptcp::{Endpoint, FLAG_SUBFLOW, Mptcp, MptcpError};
use crate::overlay::{Overlay, OverlayConfig, OverlayError, WgKey, peer_public_key};

/// Failures while acting on a decision (the decision itself stands; the next one retries).
#[derive(Debug, thiserror::Error)]
pub enum ReactError {
    #[error("switching the default route: {0}")]
    Route(#[from] CmdError),
    #[error("moving a WireGuard endpoint: {0}")]
    Overlay(#[from] OverlayError),
    #[error("updating MPTCP endpoints: {0}")]
    Mptcp(#[from] MptcpError),
}

/// `[i]`: the (peer, endpoint) pairs to use while uplink `i` is active.
pub type EndpointsByUplink = Vec<Vec<(WgKey, SocketAddr)>>;

/// The per-uplink endpoint table from `[[overlay.peers]] uplink_endpoints`, indexed like
/// `uplinks.links`. Redundant peers are left out: their endpoint is the duplicator's loopback
/// socket, which never moves (`uplinks::redundant`).
pub fn endpoints_from_config(
    overlay: &OverlayConfig,
    uplinks: &UplinksConfig,
) -> EndpointsByUplink {
    uplinks
        .links
        .iter()
        .map(|l| {
            overlay
                .peers
                .iter()
                .filter(|p| !p.redundant)
                .filter_map(|p| {
                    let ep = p.uplink_endpoints.get(&l.name).copied().or(p.endpoint)?;
                    Some((peer_public_key(&p.node_id), ep))
                })
                .collect()
        })
        .collect()
}

/// What follows the uplinks.
pub struct Reactor {
    host: Host,
    cfg: UplinksConfig,
    overlay: Option<(Arc<Overlay>, EndpointsByUplink)>,
    mptcp: Option<(Mptcp, Vec<i32>)>,
}

impl Reactor {
    /// Routes only; add the overlay and MPTCP with the builder methods.
    pub fn new(host: Host, cfg: UplinksConfig) -> Self {
        Self {
            host,
            cfg,
            overlay: None,
            mptcp: None,
        }
    }

    /// `endpoints[i]`: the (peer, endpoint) pairs to use while uplink `i` is active.
    pub fn with_overlay(mut self, overlay: Arc<Overlay>, endpoints: EndpointsByUplink) -> Self {
        self.overlay = Some((overlay, endpoints));
        self
    }

    /// Manage one MPTCP `subflow` endpoint per healthy uplink (id = 1 + index; `ifindex[i]`).
    pub fn with_mptcp(mut self, pm: Mptcp, ifindex: Vec<i32>) -> Self {
        self.mptcp = Some((pm, ifindex));
        self
    }

    pub async fn handle(&mut self, action: &Action) -> Result<(), ReactError> {
        match action {
            Action::Activate { to: Some(i), .. } => {
                routing::activate(&self.host, &self.cfg, *i).await?;
                if let Some((ov, eps)) = &self.overlay {
                    for (peer, ep) in eps.get(*i).into_iter().flatten() {
                        ov.set_endpoint(peer, *ep).await?;
                    }
                }
            }
            Action::Healthy(healthy) => {
                if let Some((pm, ifindex)) = &mut self.mptcp {
                    let owned: Vec<u8> = (0..self.cfg.links.len()).map(|i| 1 + i as u8).collect();
                    let want: Vec<Endpoint> = healthy
                        .iter()
                        .map(|&i| Endpoint {
                            id: 1 + i as u8,
                            addr: self.cfg.links[i].source,
                            ifindex: ifindex[i],
                            flags: FLAG_SUBFLOW,
                        })
                        .collect();
                    pm.sync(&owned, &want)?;
                }
            }
            Action::Carrier { link, up: true } | Action::Reinstall { link } => {
                routing::apply_link(&self.host, &self.cfg, *link).await?;
            }
            Action::Activate { to: None, .. } | Action::Carrier { .. } | Action::Probe { .. } => {}
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::overlay::PeerConfig;
    use macula_core::NodeKey;

    #[test]
    fn endpoints_follow_uplink_names() {
        let (p1, p2) = (
            NodeKey::from_seed([1; 32]).node_id(),
            NodeKey::from_seed([2; 32]).node_id(),
        );
        let mut a = PeerConfig::new(p1);
        a.endpoint = Some("198.51.100.2:51820".parse().unwrap());
        a.uplink_endpoints
            .insert("lte".into(), "203.0.113.2:51820".parse().unwrap());
        let b = PeerConfig::new(p2); // no endpoint at all: never moved
        let overlay = OverlayConfig {
            peers: vec![a, b],
            ..OverlayConfig::default()
        };
        let uplinks: UplinksConfig = toml::from_str(
            "[[links]]\nname = \"eth\"\ninterface = \"eth1\"\nsource = \"198.51.100.1\"\nprobe = \"198.51.100.2:1\"\n\
             [[links]]\nname = \"lte\"\ninterface = \"wwan0\"\nsource = \"203.0.113.1\"\nprobe = \"203.0.113.2:1\"\n",
        )
        .unwrap();
        let t = endpoints_from_config(&overlay, &uplinks);
        let k = peer_public_key(&p1);
        assert_eq!(
            t,
            vec![
                vec![(k, "198.51.100.2:51820".parse().unwrap())],
                vec![(k, "203.0.113.2:51820".parse().unwrap())]
            ]
        );
    }
}
