//! Redundant mode: every encrypted WireGuard datagram to a flagged peer leaves on every healthy
//! uplink; the first copy to arrive wins.
//!
//! The duplicator sits between the local WireGuard device and the uplinks (engarde-style), so it
//! works with any WireGuard implementation and needs no nft `dup` rule:
//!
//! ```text
//!  wireguard-go ──UDP──▶ 127.0.0.1:<local port of peer P> ──▶ uplink socket 1 ──▶ P's duplicator via uplink 1
//!  (endpoint of P =                                       └──▶ uplink socket 2 ──▶ P's duplicator via uplink 2
//!   that local port)  ◀──────────── whichever copy arrives ◀── uplink sockets (bound per uplink)
//! ```
//!
//! - The WireGuard endpoint of a redundant peer is a loopback socket of the agent (one per peer,
//!   connected to the device's listen port), so the device's sticky source address/interface
//!   caching (wireguard-go) only ever sees loopback.
//! - One socket per uplink, bound to the uplink's source address and `[overlay] redundant_port`
//!   with `SO_BINDTODEVICE`, sends the copies and receives the peer's copies.
//! - Received datagrams are handed to the device from the peer's loopback socket. WireGuard's
//!   replay window (per-session nonce counter) drops the later copy after decryption; handshake
//!   messages are protected the same way (TAI64N timestamps, consumed handshake state). No
//!   dedup code here.
//!
//! Which uplinks carry a peer's copies is decided by [`Plan`] (sans-IO) from the uplink tracker's
//! view: the healthy uplinks for which the peer has a duplicator address; when none is healthy,
//! those with carrier; when none has carrier, all of them (sending into a dead path costs little,
//! silence costs the session).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use macula_core::NodeId;
use tokio::net::UdpSocket;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::config::UplinksConfig;
use super::monitor::Snapshot;
use super::tracker::LinkView;
use crate::cmd::Host;
use crate::overlay::OverlayConfig;

/// The sans-IO decisions: per redundant peer, its duplicator address on each uplink.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// Redundant peers in configuration order.
    pub peers: Vec<NodeId>,
    /// `via[p][i]`: peer `p`'s duplicator address through uplink `i` (`None`: not reachable
    /// through that uplink).
    pub via: Vec<Vec<Option<SocketAddr>>>,
}

impl Plan {
    /// The redundant peers of `overlay` against the uplinks of `uplinks` (matched by name).
    pub fn from_config(overlay: &OverlayConfig, uplinks: &UplinksConfig) -> Self {
        let (mut peers, mut via) = (Vec::new(), Vec::new());
        for p in overlay.peers.iter().filter(|p| p.redundant) {
            peers.push(p.node_id);
            via.push(
                uplinks
                    .links
                    .iter()
                    .map(|l| p.uplink_endpoints.get(&l.name).copied())
                    .collect(),
            );
        }
        Self { peers, via }
    }

    /// Where peer `p`'s datagrams go now: `(uplink, duplicator address)` for every healthy uplink
    /// the peer is reachable through; with none healthy, those with carrier; with none, all.
    pub fn routes(&self, p: usize, links: &[LinkView]) -> Vec<(usize, SocketAddr)> {
        let Some(via) = self.via.get(p) else {
            return Vec::new();
        };
        let reachable = || {
            via.iter()
                .enumerate()
                .filter_map(|(i, a)| a.map(|a| (i, a)))
        };
        let pick = |ok: &dyn Fn(&LinkView) -> bool| -> Vec<(usize, SocketAddr)> {
            reachable()
                .filter(|(i, _)| links.get(*i).is_some_and(ok))
                .collect()
        };
        let healthy = pick(&|l| l.healthy);
        if !healthy.is_empty() {
            return healthy;
        }
        let carrier = pick(&|l| l.carrier);
        if !carrier.is_empty() {
            return carrier;
        }
        reachable().collect()
    }

    /// The peer a datagram from `from` belongs to: an exact duplicator address first, else the
    /// first peer with that IP address (a NAT may have changed the port).
    pub fn peer_of(&self, from: SocketAddr) -> Option<usize> {
        let ip = unmapped(from.ip());
        let exact = self.via.iter().position(|v| {
            v.iter()
                .flatten()
                .any(|a| unmapped(a.ip()) == ip && a.port() == from.port())
        });
        exact.or_else(|| {
            self.via
                .iter()
                .position(|v| v.iter().flatten().any(|a| unmapped(a.ip()) == ip))
        })
    }
}

fn unmapped(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// Packet counters (datagrams, not bytes).
#[derive(Debug, Default)]
pub struct Counters {
    /// Per uplink: copies sent.
    pub uplink_tx: Vec<AtomicU64>,
    /// Per uplink: datagrams received from a known peer.
    pub uplink_rx: Vec<AtomicU64>,
    /// Per peer: datagrams taken from the WireGuard device.
    pub peer_tx: Vec<AtomicU64>,
    /// Per peer: datagrams handed to the WireGuard device (duplicates included).
    pub peer_rx: Vec<AtomicU64>,
    /// Datagrams from unknown sources (dropped).
    pub unknown: AtomicU64,
}

fn counters(n: usize) -> Vec<AtomicU64> {
    (0..n).map(|_| AtomicU64::new(0)).collect()
}

fn bump(c: &[AtomicU64], i: usize) {
    if let Some(c) = c.get(i) {
        c.fetch_add(1, Ordering::Relaxed);
    }
}

/// The duplicator: sockets bound at construction, tasks started by [`Duplicator::start`],
/// stopped on drop.
pub struct Duplicator {
    plan: Plan,
    uplinks: Vec<Arc<UdpSocket>>,
    locals: Vec<Arc<UdpSocket>>,
    local_addrs: Vec<SocketAddr>,
    counters: Arc<Counters>,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for Duplicator {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

impl Duplicator {
    /// Binds one socket per uplink (`source:redundant_port`, bound to the uplink's device) and
    /// one loopback socket per redundant peer (connected to the device's listen port) inside
    /// `host`'s namespace. `None` when no peer is redundant.
    pub fn bind(
        host: &Host,
        overlay: &OverlayConfig,
        uplinks: &UplinksConfig,
    ) -> std::io::Result<Option<Self>> {
        let plan = Plan::from_config(overlay, uplinks);
        if plan.peers.is_empty() {
            return Ok(None);
        }
        let wg = SocketAddr::from((Ipv4Addr::LOCALHOST, overlay.listen_port));
        let port = overlay.redundant_port;
        let (up, loc) = host.in_netns(|| {
            let up = uplinks
                .links
                .iter()
                .map(|l| {
                    let s = std::net::UdpSocket::bind(SocketAddr::new(l.source, port))?;
                    s.set_nonblocking(true)?;
                    Ok(s)
                })
                .collect::<std::io::Result<Vec<_>>>()?;
            let loc = plan
                .peers
                .iter()
                .map(|_| {
                    let s = std::net::UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))?;
                    s.connect(wg)?;
                    s.set_nonblocking(true)?;
                    Ok(s)
                })
                .collect::<std::io::Result<Vec<_>>>()?;
            Ok((up, loc))
        })?;
        let mut uplink_socks = Vec::new();
        for (s, l) in up.into_iter().zip(&uplinks.links) {
            let s = UdpSocket::from_std(s)?;
            s.bind_device(Some(l.interface.as_bytes()))?;
            uplink_socks.push(Arc::new(s));
        }
        let mut locals = Vec::new();
        let mut local_addrs = Vec::new();
        for s in loc {
            local_addrs.push(s.local_addr()?);
            locals.push(Arc::new(UdpSocket::from_std(s)?));
        }
        let counters = Arc::new(Counters {
            uplink_tx: counters(uplinks.links.len()),
            uplink_rx: counters(uplinks.links.len()),
            peer_tx: counters(plan.peers.len()),
            peer_rx: counters(plan.peers.len()),
            unknown: AtomicU64::new(0),
        });
        Ok(Some(Self {
            plan,
            uplinks: uplink_socks,
            locals,
            local_addrs,
            counters,
            tasks: Vec::new(),
        }))
    }

    /// `overlay` with each redundant peer's WireGuard endpoint set to its loopback socket (start
    /// the device with this).
    pub fn overlay_config(&self, overlay: &OverlayConfig) -> OverlayConfig {
        let mut cfg = overlay.clone();
        for p in &mut cfg.peers {
            if let Some(i) = self.plan.peers.iter().position(|n| *n == p.node_id) {
                p.endpoint = Some(self.local_addrs[i]);
            }
        }
        cfg
    }

    pub fn plan(&self) -> &Plan {
        &self.plan
    }

    pub fn counters(&self) -> Arc<Counters> {
        self.counters.clone()
    }

    /// Starts forwarding; the uplinks used follow `status` (the uplink monitor's snapshots).
    pub fn start(&mut self, status: watch::Receiver<Snapshot>) {
        for (p, local) in self.locals.iter().enumerate() {
            let (local, uplinks, plan, counters, mut status) = (
                local.clone(),
                self.uplinks.clone(),
                self.plan.clone(),
                self.counters.clone(),
                status.clone(),
            );
            self.tasks.push(tokio::spawn(async move {
                let mut routes = plan.routes(p, &status.borrow_and_update().links);
                let mut watching = true;
                let mut buf = vec![0u8; 65536];
                loop {
                    tokio::select! {
                        r = local.recv(&mut buf) => {
                            let Ok(n) = r else { continue };
                            bump(&counters.peer_tx, p);
                            for &(i, to) in &routes {
                                // A full send buffer or a dead route loses this copy only.
                                if uplinks[i].try_send_to(&buf[..n], to).is_ok() {
                                    bump(&counters.uplink_tx, i);
                                }
                            }
                        }
                        changed = status.changed(), if watching => {
                            if changed.is_err() {
                                // The monitor stopped: keep the last routes.
                                watching = false;
                                continue;
                            }
                            routes = plan.routes(p, &status.borrow_and_update().links);
                        }
                    }
                }
            }));
        }
        for (i, sock) in self.uplinks.iter().enumerate() {
            let (sock, locals, plan, counters) = (
                sock.clone(),
                self.locals.clone(),
                self.plan.clone(),
                self.counters.clone(),
            );
            self.tasks.push(tokio::spawn(async move {
                let mut buf = vec![0u8; 65536];
                loop {
                    let Ok((n, from)) = sock.recv_from(&mut buf).await else {
                        continue;
                    };
                    match plan.peer_of(from) {
                        Some(p) => {
                            bump(&counters.uplink_rx, i);
                            if locals[p].try_send(&buf[..n]).is_ok() {
                                bump(&counters.peer_rx, p);
                            }
                        }
                        None => {
                            counters.unknown.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
            }));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::overlay::PeerConfig;
    use macula_core::NodeKey;

    fn view(healthy: bool, carrier: bool) -> LinkView {
        LinkView {
            healthy,
            carrier,
            last_reply: None,
            rtt: None,
            sent: 0,
            received: 0,
        }
    }

    fn plan() -> (Plan, NodeId) {
        let (p1, p2, p3) = (
            NodeKey::from_seed([1; 32]).node_id(),
            NodeKey::from_seed([2; 32]).node_id(),
            NodeKey::from_seed([3; 32]).node_id(),
        );
        let mut a = PeerConfig::new(p1);
        a.redundant = true;
        a.uplink_endpoints
            .insert("eth".into(), "198.51.100.2:51822".parse().unwrap());
        a.uplink_endpoints
            .insert("lte".into(), "203.0.113.2:51822".parse().unwrap());
        let mut b = PeerConfig::new(p2); // not redundant: not in the plan
        b.uplink_endpoints
            .insert("eth".into(), "198.51.100.3:51820".parse().unwrap());
        let mut c = PeerConfig::new(p3);
        c.redundant = true;
        c.uplink_endpoints
            .insert("lte".into(), "[2001:db8::3]:51822".parse().unwrap());
        let overlay = OverlayConfig {
            peers: vec![a, b, c],
            ..OverlayConfig::default()
        };
        let uplinks: UplinksConfig = toml::from_str(
            "[[links]]\nname = \"eth\"\ninterface = \"eth1\"\nsource = \"198.51.100.1\"\nprobe = \"198.51.100.2:1\"\n\
             [[links]]\nname = \"lte\"\ninterface = \"wwan0\"\nsource = \"203.0.113.1\"\nprobe = \"203.0.113.2:1\"\n",
        )
        .unwrap();
        (Plan::from_config(&overlay, &uplinks), p3)
    }

    #[test]
    fn only_flagged_peers_by_uplink_name() {
        let (plan, p3) = plan();
        assert_eq!(plan.peers.len(), 2);
        assert_eq!(plan.peers[1], p3);
        assert_eq!(
            plan.via[0],
            vec![
                Some("198.51.100.2:51822".parse().unwrap()),
                Some("203.0.113.2:51822".parse().unwrap())
            ]
        );
        assert_eq!(
            plan.via[1],
            vec![None, Some("[2001:db8::3]:51822".parse().unwrap())]
        );
    }

    #[test]
    fn routes_use_every_healthy_uplink_then_fall_back() {
        let (plan, _) = plan();
        let both = [view(true, true), view(true, true)];
        assert_eq!(
            plan.routes(0, &both)
                .iter()
                .map(|r| r.0)
                .collect::<Vec<_>>(),
            [0, 1]
        );
        // Peer 1 is reachable through uplink 1 only.
        assert_eq!(plan.routes(1, &both).len(), 1);
        let one = [view(false, true), view(true, true)];
        assert_eq!(
            plan.routes(0, &one),
            vec![(1, "203.0.113.2:51822".parse().unwrap())]
        );
        // None healthy: those with carrier.
        let no_health = [view(false, true), view(false, false)];
        assert_eq!(
            plan.routes(0, &no_health)
                .iter()
                .map(|r| r.0)
                .collect::<Vec<_>>(),
            [0]
        );
        // Nothing at all: every reachable uplink.
        let dark = [view(false, false), view(false, false)];
        assert_eq!(plan.routes(0, &dark).len(), 2);
        // Peer 1's only uplink is unhealthy while uplink 0 is healthy: uplink 1 anyway (carrier).
        let other = [view(true, true), view(false, true)];
        assert_eq!(
            plan.routes(1, &other)
                .iter()
                .map(|r| r.0)
                .collect::<Vec<_>>(),
            [1]
        );
        assert!(plan.routes(7, &both).is_empty());
    }

    #[test]
    fn received_datagrams_map_to_their_peer() {
        let (plan, _) = plan();
        assert_eq!(plan.peer_of("203.0.113.2:51822".parse().unwrap()), Some(0));
        assert_eq!(
            plan.peer_of("[::ffff:198.51.100.2]:51822".parse().unwrap()),
            Some(0)
        );
        assert_eq!(
            plan.peer_of("[2001:db8::3]:40000".parse().unwrap()),
            Some(1)
        );
        assert_eq!(plan.peer_of("198.51.100.3:51820".parse().unwrap()), None);
    }
}
