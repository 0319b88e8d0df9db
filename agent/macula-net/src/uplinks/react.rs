//! Acting on tracker decisions: the main default route and the overlay peers' WireGuard endpoints
//! follow the active uplink; MPTCP subflow endpoints follow the healthy set.

use std::net::SocketAddr;
use std::sync::Arc;

use super::config::UplinksConfig;
use super::routing;
use super::tracker::Action;
use crate::cmd::{CmdError, Host};
use crate::mptcp::{Endpoint, FLAG_SUBFLOW, Mptcp, MptcpError};
use crate::overlay::{Overlay, OverlayError, WgKey};

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
            Action::Activate { to: None, .. } | Action::Probe { .. } => {}
        }
        Ok(())
    }
}
