//! Glue for the network plane: builds the firewall, overlay and uplinks from `agent.toml` and
//! implements `io.macula.{Firewall1,Overlay1,Uplinks1}` with them (`macula-net` does the work).

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use anyhow::{Context, Result};
use macula_bus::Error;
use macula_bus::firewall::{Applied, BoxFuture, FirewallControl, FirewallObject, FirewallStatus};
use macula_bus::overlay::{OverlayControl, OverlayObject, OverlayPeer, OverlayStatus};
use macula_bus::uplinks::{UplinkStatus, UplinksControl, UplinksObject};
use macula_core::NodeKey;
use macula_net::cmd::Host;
use macula_net::firewall::{
    self, Firewall, FirewallConfig, FirewallError, Holder, Nft, SavedApply, StartFrom,
};
use macula_net::links;
use macula_net::overlay::Overlay;
use macula_net::uplinks::monitor::{Monitor, Snapshot, open_responder};
use macula_net::uplinks::react::{Reactor, endpoints_from_config};
use macula_net::uplinks::redundant::{Counters, Duplicator};
use macula_net::uplinks::{UplinksConfig, UplinksPlan, probe, routing};
use tokio::sync::{mpsc, watch};

use crate::config::AgentConfig;
use crate::worker::Workers;

/// The running network plane.
pub struct Net {
    firewall: Option<Firewall>,
    overlay: Option<Arc<Overlay>>,
    uplinks: Option<(UplinksConfig, watch::Receiver<Snapshot>)>,
    /// Redundant mode: the flagged peers (node IDs, base32) and the duplicator's counters.
    redundant: Option<(Vec<String>, Arc<Counters>)>,
    _monitor: Option<Monitor>,
    _duplicator: Option<Duplicator>,
}

/// The firewall at start: the last confirmed apply kept in `<state>/firewall.toml` while
/// `agent.toml`'s `[firewall]` is the section it replaced, else that section
/// (`macula_net::firewall::at_start`). A saved apply that cannot be read or applied is reported
/// and the file's section is loaded instead.
async fn start_firewall(config: &AgentConfig, state_dir: &Path, host: &Host) -> Result<Firewall> {
    let fw = Firewall::new(Nft::new(host.clone()));
    let path = state_dir.join(firewall::SAVED_FILE);
    let saved = match std::fs::read_to_string(&path) {
        Ok(text) => SavedApply::parse(&text, &path)
            .map_err(|e| {
                tracing::error!(target: "macula::firewall",
                    "{e}; loading agent.toml's [firewall] instead (the file is replaced at the next confirm)");
            })
            .ok(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => {
            tracing::error!(target: "macula::firewall", path = %path.display(),
                "cannot read the saved firewall apply: {e}; loading agent.toml's [firewall] instead");
            None
        }
    };
    let (cfg, from) = firewall::at_start(&config.firewall, saved.as_ref());
    let from_file = || async {
        fw.load(config.firewall.clone())
            .await
            .context("cannot apply the [firewall] section")
    };
    match from {
        StartFrom::SavedApply => {
            if let Err(e) = fw.load(cfg).await {
                tracing::error!(target: "macula::firewall", path = %path.display(),
                    "the saved firewall apply cannot be applied: {e}; loading agent.toml's [firewall] instead");
                from_file().await?;
            } else {
                tracing::info!(target: "macula::firewall", path = %path.display(),
                    "firewall applied (table inet macula) from the last confirmed apply");
            }
        }
        StartFrom::ConfigFileChanged => {
            from_file().await?;
            tracing::warn!(target: "macula::firewall", path = %path.display(),
                "agent.toml's [firewall] changed since the saved apply was confirmed: agent.toml's applied, the saved apply is replaced at the next confirm");
        }
        StartFrom::ConfigFile => {
            from_file().await?;
            tracing::info!(target: "macula::firewall", "firewall applied (table inet macula)");
        }
    }
    fw.keep_confirmed(path, firewall::fingerprint(&config.firewall))
        .await;
    Ok(fw)
}

/// Starts what `agent.toml` enables: the firewall (`[firewall] enabled`, applied without a
/// confirm timer: the confirmed state is the last confirmed apply kept in the state directory,
/// or else the file's section), the overlay, and uplink monitoring.
pub async fn start(
    config: &AgentConfig,
    state_dir: &Path,
    key: &NodeKey,
    workers: &Workers,
) -> Result<Net> {
    let host = Host::local();
    let firewall = if config.firewall.enabled {
        Some(start_firewall(config, state_dir, &host).await?)
    } else {
        None
    };
    // Uplinks as listed, or discovered from the default routes when none are listed.
    let uplinks_cfg = match config.uplinks.plan(&config.overlay)? {
        UplinksPlan::Off => None,
        UplinksPlan::Listed => Some(config.uplinks.clone()),
        UplinksPlan::Discover => {
            let found = links::discover(&host).context("cannot discover uplinks over rtnetlink")?;
            let cfg = config.uplinks.discovered(&found)?;
            let names: Vec<&str> = cfg.links.iter().map(|l| l.name.as_str()).collect();
            tracing::info!(target: "macula::uplinks", uplinks = ?names, "uplinks discovered from the default routes");
            Some(cfg)
        }
    };
    // Redundant peers: the duplicator's sockets exist before the device, whose endpoint for
    // those peers is the duplicator's loopback socket.
    let mut duplicator = if let (true, Some(up)) = (config.overlay.enabled, &uplinks_cfg) {
        Duplicator::bind(&host, &config.overlay, up).with_context(|| {
            format!(
                "cannot open the redundant-mode sockets (UDP {} on every uplink source address)",
                config.overlay.redundant_port
            )
        })?
    } else {
        None
    };
    let overlay = if config.overlay.enabled {
        let cfg = match &duplicator {
            Some(d) => d.overlay_config(&config.overlay),
            None => config.overlay.clone(),
        };
        let ov = Overlay::start(host.clone(), &cfg, key.signing_key())
            .await
            .context("cannot start the [overlay]")?;
        Some(Arc::new(ov))
    } else {
        None
    };
    let (uplinks, monitor) = if let Some(cfg) = uplinks_cfg {
        if let Err(e) = routing::apply_tables(&host, &cfg).await {
            // A link without carrier takes its table when it comes up (the reactor reinstalls it).
            tracing::warn!(target: "macula::uplinks", error = %e, "per-uplink routing table not installed yet");
        }
        if cfg.responder_port != 0 {
            let sock = open_responder(&host, cfg.responder_port).with_context(|| {
                format!(
                    "cannot open the probe responder on UDP {}",
                    cfg.responder_port
                )
            })?;
            workers.spawn("uplinks.responder", |ctx| async move {
                match ctx.wait(probe::serve(sock)).await {
                    Some(Err(e)) => {
                        tracing::error!(target: "macula::uplinks", error = %e, "probe responder stopped");
                        Err(format!("probe responder stopped: {e}"))
                    }
                    Some(Ok(())) | None => Ok(()),
                }
            });
        }
        let (tx, mut rx) = mpsc::unbounded_channel();
        let monitor = Monitor::spawn(&host, &cfg, tx).context("cannot start uplink probing")?;
        let status = monitor.status.clone();
        if let Some(d) = &mut duplicator {
            d.start(status.clone());
            tracing::info!(target: "macula::uplinks", peers = d.plan().peers.len(), "redundant mode on");
        }
        let mut reactor = Reactor::new(host.clone(), cfg.clone());
        if let Some(ov) = &overlay {
            reactor =
                reactor.with_overlay(ov.clone(), endpoints_from_config(&config.overlay, &cfg));
        }
        workers.spawn("uplinks.reactor", |ctx| async move {
            while let Some(Some(action)) = ctx.wait(rx.recv()).await {
                if let Err(e) = reactor.handle(&action).await {
                    tracing::error!(target: "macula::uplinks", error = %e, ?action, "failover action failed");
                    ctx.error(format!("{action:?}: {e}"));
                }
            }
            Ok(())
        });
        (Some((cfg, status)), Some(monitor))
    } else {
        (None, None)
    };
    let redundant = duplicator.as_ref().map(|d| {
        (
            d.plan().peers.iter().map(|n| n.to_string()).collect(),
            d.counters(),
        )
    });
    Ok(Net {
        firewall,
        overlay,
        uplinks,
        redundant,
        _monitor: monitor,
        _duplicator: duplicator,
    })
}

impl Net {
    /// The firewall, when `[firewall] enabled` (the proofs feed its quarantine set).
    pub fn firewall(&self) -> Option<Firewall> {
        self.firewall.clone()
    }

    pub fn firewall_object(&self) -> FirewallObject {
        FirewallObject::new(self.firewall_control())
    }

    /// What `Firewall1` reads (also `/metrics`).
    pub fn firewall_control(&self) -> Box<dyn FirewallControl> {
        Box::new(FirewallGlue(self.firewall.clone()))
    }

    pub fn overlay_object(&self) -> OverlayObject {
        OverlayObject::new(self.overlay_control())
    }

    /// What `Overlay1` reads (also `/metrics`).
    pub fn overlay_control(&self) -> Box<dyn OverlayControl> {
        Box::new(OverlayGlue(self.overlay.clone(), self.redundant.clone()))
    }

    pub fn uplinks_object(&self) -> UplinksObject {
        UplinksObject::new(self.uplinks_control())
    }

    /// What `Uplinks1` reads (also `/metrics`).
    pub fn uplinks_control(&self) -> Box<dyn UplinksControl> {
        Box::new(UplinksGlue(
            self.uplinks.clone(),
            self.redundant.as_ref().map(|r| r.1.clone()),
        ))
    }

    /// Emits the change signals of `Firewall1.Ruleset` (apply, automatic rollback) and
    /// `Uplinks1.Active` (failover) on `conn`, for as long as the connection lives.
    pub fn emit_changes(&self, conn: &zbus::Connection, workers: &Workers) {
        let path = macula_bus::OBJECT_PATH;
        if let Some(fw) = &self.firewall {
            let mut changes = fw.subscribe();
            let conn = conn.clone();
            workers.spawn("firewall.signals", |ctx| async move {
                while let Some(Ok(())) = ctx.wait(changes.changed()).await {
                    let Ok(iface) = conn
                        .object_server()
                        .interface::<_, FirewallObject>(path)
                        .await
                    else {
                        break;
                    };
                    let emitter = iface.signal_emitter();
                    if let Err(e) = iface.get().await.ruleset_changed(emitter).await {
                        tracing::warn!(target: "macula::firewall", error = %e, "cannot signal the ruleset change");
                        ctx.error(format!("cannot signal the ruleset change: {e}"));
                    }
                }
                Ok(())
            });
        }
        if let Some((_, status)) = &self.uplinks {
            let mut status = status.clone();
            let conn = conn.clone();
            workers.spawn("uplinks.signals", |ctx| async move {
                let mut active = status.borrow().active;
                while let Some(Ok(())) = ctx.wait(status.changed()).await {
                    let now = status.borrow().active;
                    if now == active {
                        continue;
                    }
                    active = now;
                    let Ok(iface) = conn
                        .object_server()
                        .interface::<_, UplinksObject>(path)
                        .await
                    else {
                        break;
                    };
                    let emitter = iface.signal_emitter();
                    if let Err(e) = iface.get().await.active_changed(emitter).await {
                        tracing::warn!(target: "macula::uplinks", error = %e, "cannot signal the uplink change");
                        ctx.error(format!("cannot signal the uplink change: {e}"));
                    }
                }
                Ok(())
            });
        }
    }
}

fn firewall_error(e: FirewallError) -> Error {
    match e {
        FirewallError::Invalid(e) => Error::InvalidArgument(e.to_string()),
        FirewallError::Nft(macula_net::firewall::NftError::Rejected(m)) => {
            Error::InvalidArgument(format!(
                "nft rejected the ruleset (nothing was changed): {m}; fix the [firewall] section and apply again"
            ))
        }
        FirewallError::NothingToConfirm(e) => Error::NotFound(e.to_string()),
        FirewallError::NoSuchGroup(g) => {
            Error::NotFound(format!("peer group {g:?} is not configured"))
        }
        other => Error::Failed(other.to_string()),
    }
}

struct FirewallGlue(Option<Firewall>);

impl FirewallGlue {
    fn get(&self) -> Result<&Firewall, Error> {
        self.0.as_ref().ok_or_else(|| {
            Error::Unavailable(
                "the firewall is disabled; set [firewall] enabled = true in agent.toml and restart maculad".into(),
            )
        })
    }
}

impl FirewallControl for FirewallGlue {
    fn apply(&self, config_toml: String) -> BoxFuture<'_, Result<Applied, Error>> {
        Box::pin(async move {
            let fw = self.get()?;
            let cfg = FirewallConfig::from_document(&config_toml, Path::new("Firewall1.Apply"))
                .map_err(Error::InvalidArgument)?;
            let out = fw.apply(cfg).await.map_err(firewall_error)?;
            Ok(Applied {
                generation: out.generation,
                confirm_within_s: out.confirm_within.as_secs(),
            })
        })
    }

    fn confirm(&self) -> BoxFuture<'_, Result<u64, Error>> {
        Box::pin(async move { self.get()?.confirm().await.map_err(firewall_error) })
    }

    fn ruleset(&self) -> BoxFuture<'_, Result<String, Error>> {
        Box::pin(async move { self.get()?.ruleset().await.map_err(firewall_error) })
    }

    fn status(&self) -> BoxFuture<'_, Result<FirewallStatus, Error>> {
        Box::pin(async move {
            let st = self.get()?.status().await;
            Ok(FirewallStatus {
                pending: st.pending.unwrap_or(0),
                rollback_in_s: st.rollback_in.map(|d| d.as_secs()).unwrap_or(0),
                last_rollback: st.last_rollback.unwrap_or_default(),
                quarantined: u32::try_from(st.quarantined).unwrap_or(u32::MAX),
                applies: st.applies,
                rollbacks: st.rollbacks,
            })
        })
    }

    fn quarantine(&self, addresses: Vec<String>, on: bool) -> BoxFuture<'_, Result<(), Error>> {
        Box::pin(async move {
            let fw = self.get()?;
            let addrs = addresses
                .iter()
                .map(|a| {
                    a.parse().map_err(|_| {
                        Error::InvalidArgument(format!("{a:?} is not an IPv6 overlay address"))
                    })
                })
                .collect::<Result<Vec<_>, _>>()?;
            fw.quarantine(Holder::Admin, on, &addrs)
                .await
                .map_err(firewall_error)
        })
    }
}

struct OverlayGlue(Option<Arc<Overlay>>, Option<(Vec<String>, Arc<Counters>)>);

/// A counter of the duplicator (0 when there is none).
fn count(
    c: Option<&Arc<Counters>>,
    pick: impl Fn(&Counters) -> &[std::sync::atomic::AtomicU64],
    i: usize,
) -> u64 {
    c.and_then(|c| pick(c).get(i).map(|a| a.load(Ordering::Relaxed)))
        .unwrap_or(0)
}

impl OverlayGlue {
    fn get(&self) -> Result<&Overlay, Error> {
        self.0.as_deref().ok_or_else(|| {
            Error::Unavailable(
                "the overlay is disabled; set [overlay] enabled = true (and realm) in agent.toml and restart maculad".into(),
            )
        })
    }
}

impl OverlayControl for OverlayGlue {
    fn status(&self) -> BoxFuture<'_, Result<OverlayStatus, Error>> {
        Box::pin(async move {
            let ov = self.get()?;
            let dev = ov
                .status()
                .await
                .map_err(|e| Error::Failed(e.to_string()))?;
            Ok(OverlayStatus {
                interface: ov.interface().to_string(),
                address: ov.address().to_string(),
                public_key: ov.public_key().to_base64(),
                listen_port: dev.listen_port,
                peers: u32::try_from(dev.peers.len()).unwrap_or(u32::MAX),
                implementation: ov.implementation().to_owned(),
                kernel_wireguard: macula_net::overlay::kernel_wireguard(ov.host()),
                redundant_peers: self.1.as_ref().map(|r| r.0.len() as u32).unwrap_or(0),
            })
        })
    }

    fn peers(&self) -> BoxFuture<'_, Result<Vec<OverlayPeer>, Error>> {
        Box::pin(async move {
            let ov = self.get()?;
            let dev = ov
                .status()
                .await
                .map_err(|e| Error::Failed(e.to_string()))?;
            let specs = ov.peers().await;
            let flagged: Vec<(macula_net::overlay::WgKey, usize)> = self
                .1
                .iter()
                .flat_map(|(ids, _)| ids.iter().enumerate())
                .filter_map(|(i, id)| {
                    let id: macula_core::NodeId = id.parse().ok()?;
                    Some((macula_net::overlay::peer_public_key(&id), i))
                })
                .collect();
            let counters = self.1.as_ref().map(|r| &r.1);
            Ok(dev
                .peers
                .iter()
                .map(|p| {
                    let dup = flagged
                        .iter()
                        .find(|(k, _)| *k == p.public_key)
                        .map(|(_, i)| *i);
                    let (tx, rx) = dup.map_or((0, 0), |i| {
                        (
                            count(counters, |c| &c.peer_tx, i),
                            count(counters, |c| &c.peer_rx, i),
                        )
                    });
                    OverlayPeer {
                        public_key: p.public_key.to_base64(),
                        address: specs
                            .iter()
                            .find(|s| s.key == p.public_key)
                            .map(|s| s.address.to_string())
                            .unwrap_or_default(),
                        endpoint: p.endpoint.map(|e| e.to_string()).unwrap_or_default(),
                        last_handshake_s: p.last_handshake.map_or(0, |d| d.as_secs()),
                        rx_bytes: p.rx_bytes,
                        tx_bytes: p.tx_bytes,
                        keepalive_s: p.persistent_keepalive,
                        allowed_ips: p.allowed_ips.clone(),
                        redundant: dup.is_some(),
                        redundant_tx_packets: tx,
                        redundant_rx_packets: rx,
                    }
                })
                .collect())
        })
    }
}

struct UplinksGlue(
    Option<(UplinksConfig, watch::Receiver<Snapshot>)>,
    Option<Arc<Counters>>,
);

impl UplinksControl for UplinksGlue {
    fn active(&self) -> String {
        self.0
            .as_ref()
            .and_then(|(cfg, status)| status.borrow().active.map(|i| cfg.links[i].name.clone()))
            .unwrap_or_default()
    }

    fn links(&self) -> BoxFuture<'_, Result<Vec<UplinkStatus>, Error>> {
        Box::pin(async move {
            let (cfg, status) = self.0.as_ref().ok_or_else(|| {
                Error::Unavailable(
                    "uplink monitoring is disabled; set [uplinks] enabled = true with [[uplinks.links]] and restart maculad".into(),
                )
            })?;
            let snap = status.borrow().clone();
            let c = self.1.as_ref();
            Ok(cfg
                .links
                .iter()
                .zip(&snap.links)
                .enumerate()
                .map(|(i, (l, v))| UplinkStatus {
                    name: l.name.clone(),
                    interface: l.interface.clone(),
                    priority: l.priority,
                    active: snap.active == Some(i),
                    healthy: v.healthy,
                    carrier: v.carrier,
                    rtt_us: v.rtt.map(|d| d.as_micros() as u64).unwrap_or(0),
                    sent: v.sent,
                    received: v.received,
                    redundant_tx_packets: count(c, |c| &c.uplink_tx, i),
                    redundant_rx_packets: count(c, |c| &c.uplink_rx, i),
                })
                .collect())
        })
    }
}
