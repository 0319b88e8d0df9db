//! The tokio shell around the [`Tracker`]: one UDP socket per uplink (bound to the uplink's source
//! address and device), rtnetlink link/address events (carrier or address loss fails an uplink at
//! once) and route events (a flushed per-uplink table is reinstalled), a clock, and
//! a channel of [`Action`]s for whoever acts on failover (routes, WireGuard endpoints, MPTCP
//! endpoints).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::UdpSocket;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::config::UplinksConfig;
use super::probe;
use super::tracker::{Action, LinkView, Tracker};
use crate::cmd::Host;
use crate::links::{Event, LinkEvents};

/// A snapshot of every uplink, published after each event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    pub active: Option<usize>,
    pub links: Vec<LinkView>,
}

/// A running monitor; dropping it stops the probing.
pub struct Monitor {
    pub status: watch::Receiver<Snapshot>,
    task: JoinHandle<()>,
}

impl Drop for Monitor {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Opens one probe socket per uplink inside `host`'s namespace.
fn open_sockets(host: &Host, cfg: &UplinksConfig) -> std::io::Result<Vec<std::net::UdpSocket>> {
    host.in_netns(|| {
        cfg.links
            .iter()
            .map(|l| {
                let s = std::net::UdpSocket::bind(SocketAddr::new(l.source, 0))?;
                s.set_nonblocking(true)?;
                Ok(s)
            })
            .collect()
    })
}

/// Opens the probe responder socket (`[::]:responder_port`, dual stack) inside `host`'s namespace.
pub fn open_responder(host: &Host, port: u16) -> std::io::Result<UdpSocket> {
    let s = host.in_netns(|| {
        let s = std::net::UdpSocket::bind(SocketAddr::from(([0u16; 8], port)))?;
        s.set_nonblocking(true)?;
        Ok(s)
    })?;
    UdpSocket::from_std(s)
}

impl Monitor {
    /// Starts probing. Actions (failover, healthy set) go to `actions`; the initial active uplink
    /// is reported as `Activate { from: None, to }` first.
    pub fn spawn(
        host: &Host,
        cfg: &UplinksConfig,
        actions: mpsc::UnboundedSender<Action>,
    ) -> std::io::Result<Self> {
        let socks = open_sockets(host, cfg)?;
        let mut socks_tokio = Vec::new();
        for (s, l) in socks.into_iter().zip(&cfg.links) {
            let s = UdpSocket::from_std(s)?;
            s.bind_device(Some(l.interface.as_bytes()))?;
            socks_tokio.push(Arc::new(s));
        }
        let targets: Vec<SocketAddr> = cfg.links.iter().map(|l| l.probe).collect();
        let interfaces: Vec<String> = cfg.links.iter().map(|l| l.interface.clone()).collect();
        let sources: Vec<std::net::IpAddr> = cfg.links.iter().map(|l| l.source).collect();
        let mut link_events = LinkEvents::subscribe(host).map_err(std::io::Error::other)?;
        let prios: Vec<u32> = cfg.links.iter().map(|l| l.priority).collect();
        let table_base = cfg.table_base;
        let epoch = Instant::now();
        let mut tracker = Tracker::new(cfg.timing(), &prios, Duration::ZERO);
        let n = prios.len();
        let snapshot = move |t: &Tracker| Snapshot {
            active: t.active(),
            links: (0..n).map(|i| t.view(i).clone()).collect(),
        };
        let (status_tx, status) = watch::channel(snapshot(&tracker));
        let _ = actions.send(Action::Activate {
            from: None,
            to: tracker.active(),
        });
        let (reply_tx, mut replies) = mpsc::unbounded_channel::<(usize, u64, Instant)>();
        let mut readers = Vec::new();
        for (i, s) in socks_tokio.iter().enumerate() {
            let s = s.clone();
            let tx = reply_tx.clone();
            readers.push(tokio::spawn(async move {
                let mut buf = [0u8; 64];
                while let Ok(n) = s.recv(&mut buf).await {
                    if let Some((link, seq)) = probe::decode(&buf[..n])
                        && link as usize == i
                    {
                        let _ = tx.send((i, seq, Instant::now()));
                    }
                }
            }));
        }
        let task = tokio::spawn(async move {
            let _readers = AbortOnDrop(readers);
            loop {
                let wake = epoch + tracker.next_wakeup();
                let mut out = Vec::new();
                tokio::select! {
                    _ = tokio::time::sleep_until(wake) => {
                        out = tracker.poll(epoch.elapsed());
                    }
                    Some((link, seq, at)) = replies.recv() => {
                        out.extend(tracker.on_reply(link, seq, at - epoch));
                    }
                    Ok(changes) = link_events.next() => {
                        for c in changes {
                            if let Event::Route(r) = &c {
                                let i = r.table.wrapping_sub(table_base) as usize;
                                if r.table >= table_base && i < interfaces.len() {
                                    out.extend(tracker.on_table_route(i, r.exists));
                                }
                                continue;
                            }
                            for i in 0..interfaces.len() {
                                // An uplink is usable with carrier and its source address.
                                let usable = match &c {
                                    Event::Link(l) if l.name == interfaces[i] => l.carrier && l.exists,
                                    Event::Addr(a) if a.addr == sources[i] => a.exists,
                                    _ => continue,
                                };
                                if usable != tracker.view(i).carrier {
                                    out.extend(tracker.on_carrier(i, usable));
                                }
                            }
                        }
                    }
                }
                for a in out {
                    match a {
                        Action::Probe { link, seq } => {
                            // A send error (no route, link down) is a lost probe.
                            let _ = socks_tokio[link]
                                .send_to(&probe::encode(link as u32, seq), targets[link])
                                .await;
                        }
                        other => {
                            let _ = actions.send(other);
                        }
                    }
                }
                let _ = status_tx.send(snapshot(&tracker));
            }
        });
        Ok(Self { status, task })
    }
}

struct AbortOnDrop(Vec<JoinHandle<()>>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        for h in &self.0 {
            h.abort();
        }
    }
}
