//! The overlay device: a userspace WireGuard daemon (`wireguard-go`) configured over UAPI, or
//! kernel WireGuard configured over generic netlink (`[overlay] implementation`), with its
//! address, MTU and link state set by `ip`. Both take the same UAPI `set` lines.

use std::collections::BTreeMap;
use std::net::{Ipv6Addr, SocketAddr};
use std::process::Stdio;
use std::time::Duration;

use ed25519_dalek::SigningKey;
use macula_core::NodeId;
use tokio::process::Child;
use tokio::sync::Mutex;

use super::addr::overlay_address;
use super::config::{Implementation, OverlayConfig, OverlayConfigError, PeerConfig};
use super::kernel::{KernelWg, KernelWgError};
use super::keys::{OverlayKeys, WgKey, peer_public_key};
use super::uapi::{DeviceStatus, Uapi, UapiError};
use crate::cmd::{CmdError, Host};

/// A peer as the device is told about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerSpec {
    pub key: WgKey,
    /// Its overlay address (always one of its allowed IPs, as /128).
    pub address: Ipv6Addr,
    pub endpoint: Option<SocketAddr>,
    pub keepalive_secs: u16,
    /// Further /128s routed through it (hub routing).
    pub relayed: Vec<Ipv6Addr>,
}

impl PeerSpec {
    /// Resolves a configured peer in `realm`.
    pub fn from_config(realm: &NodeId, p: &PeerConfig) -> Self {
        let key = peer_public_key(&p.node_id);
        Self {
            key,
            address: overlay_address(realm, &key),
            endpoint: p.endpoint,
            keepalive_secs: p.keepalive_secs,
            relayed: p
                .relay_for
                .iter()
                .map(|n| overlay_address(realm, &peer_public_key(n)))
                .collect(),
        }
    }

    fn uapi_lines(&self) -> String {
        let mut s = format!("public_key={}\n", self.key.to_hex());
        if let Some(ep) = self.endpoint {
            s += &format!("endpoint={ep}\n");
        }
        s += &format!(
            "persistent_keepalive_interval={}\nreplace_allowed_ips=true\nallowed_ip={}/128\n",
            self.keepalive_secs, self.address
        );
        for r in &self.relayed {
            s += &format!("allowed_ip={r}/128\n");
        }
        s
    }
}

/// Overlay errors, each saying what to do next.
#[derive(Debug, thiserror::Error)]
pub enum OverlayError {
    #[error(transparent)]
    Config(#[from] OverlayConfigError),
    #[error(transparent)]
    Uapi(#[from] UapiError),
    #[error(transparent)]
    Kernel(#[from] KernelWgError),
    #[error(transparent)]
    Cmd(#[from] CmdError),
    #[error(
        "cannot start `{program}`: {source}; install the Debian package `wireguard-go` or set [overlay] wireguard_go"
    )]
    Spawn {
        program: String,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "`{program}` did not open {socket} within 5 s (exit status: {status}); check that /dev/net/tun exists and the interface name is free"
    )]
    NoSocket {
        program: String,
        socket: String,
        status: String,
    },
    #[error("peer {0} is not configured; add it to [[overlay.peers]]")]
    NoSuchPeer(WgKey),
}

/// How the device is configured.
enum Control {
    Userspace(Uapi),
    Kernel(KernelWg),
}

impl Control {
    async fn set(&self, lines: &str) -> Result<(), OverlayError> {
        match self {
            Control::Userspace(u) => Ok(u.set(lines).await?),
            Control::Kernel(k) => Ok(k.set(lines)?),
        }
    }

    async fn get(&self) -> Result<DeviceStatus, OverlayError> {
        match self {
            Control::Userspace(u) => Ok(u.get().await?),
            Control::Kernel(k) => Ok(k.get()?),
        }
    }
}

/// A running overlay interface. Dropping it stops the WireGuard daemon (the interface goes away).
pub struct Overlay {
    host: Host,
    interface: String,
    keys: OverlayKeys,
    address: Ipv6Addr,
    control: Control,
    uapi: Uapi,
    /// The daemon we started (`None`: adopted from a previous run).
    child: Option<Child>,
    peers: Mutex<BTreeMap<WgKey, PeerSpec>>,
}

impl Overlay {
    /// The userspace daemon for `cfg.interface`: a surviving one from a killed run is adopted
    /// (`None`: not ours to stop), else `wireguard-go` is started.
    async fn userspace(
        host: &Host,
        cfg: &OverlayConfig,
        uapi: &Uapi,
    ) -> Result<Option<Child>, OverlayError> {
        Ok(if uapi.get().await.is_ok() {
            // Our previous run was killed hard and its daemon survived: take it over (it is
            // fully reconfigured below). It stays running when we stop.
            tracing::warn!(target: "overlay", interface = %cfg.interface, "a WireGuard daemon already serves this interface; adopting it");
            None
        } else {
            // A daemon killed hard leaves its socket behind.
            let _ = std::fs::remove_file(uapi.socket_path());
            Some(spawn_daemon(host, cfg, uapi).await?)
        })
    }

    /// Starts the device for `cfg.interface` (the userspace daemon, or a kernel `wireguard`
    /// link), sets the derived key, listen port and the static peers, then address (/48), MTU and
    /// link up.
    pub async fn start(
        host: Host,
        cfg: &OverlayConfig,
        node: &SigningKey,
    ) -> Result<Self, OverlayError> {
        let realm = cfg.validate()?;
        let keys = OverlayKeys::from_signing_key(node);
        let address = overlay_address(&realm, &keys.public());
        let uapi = Uapi::new(&cfg.interface);
        let ifn = cfg.interface.as_str();
        let kernel = match cfg.implementation {
            Implementation::Userspace => false,
            Implementation::Kernel => {
                kernel_link(&host, ifn).await?;
                true
            }
            // Creating the link also loads the module when it is not loaded yet.
            Implementation::Auto => match kernel_link(&host, ifn).await {
                Ok(()) => true,
                Err(e) => {
                    tracing::info!(target: "overlay", reason = %e, "kernel WireGuard not usable; using wireguard-go");
                    false
                }
            },
        };
        let (control, child) = if kernel {
            (Control::Kernel(KernelWg::open(&host, ifn)?), None)
        } else {
            (
                Control::Userspace(uapi.clone()),
                Self::userspace(&host, cfg, &uapi).await?,
            )
        };
        let peers: BTreeMap<WgKey, PeerSpec> = cfg
            .peers
            .iter()
            .map(|p| PeerSpec::from_config(&realm, p))
            .filter(|p| p.key != keys.public())
            .map(|p| (p.key, p))
            .collect();
        let mut set = format!(
            "private_key={}\nlisten_port={}\nreplace_peers=true\n",
            keys.private_hex().as_str(),
            cfg.listen_port
        );
        for p in peers.values() {
            set += &p.uapi_lines();
        }
        control.set(&set).await?;
        let addr = format!("{address}/48");
        host.run("ip", &["-6", "addr", "replace", &addr, "dev", ifn], b"")
            .await?;
        let mtu = cfg.mtu.to_string();
        host.run("ip", &["link", "set", ifn, "mtu", &mtu, "up"], b"")
            .await?;
        tracing::info!(target: "overlay", interface = ifn, %address, public_key = %keys.public(), "overlay up");
        Ok(Self {
            host,
            interface: cfg.interface.clone(),
            keys,
            address,
            control,
            uapi,
            child,
            peers: Mutex::new(peers),
        })
    }

    pub fn address(&self) -> Ipv6Addr {
        self.address
    }

    pub fn public_key(&self) -> WgKey {
        self.keys.public()
    }

    pub fn interface(&self) -> &str {
        &self.interface
    }

    pub fn host(&self) -> &Host {
        &self.host
    }

    /// Replaces the peer set: new peers are added, changed ones updated in place, missing ones
    /// removed — existing sessions of unchanged peers are kept.
    pub async fn set_peers(&self, new: Vec<PeerSpec>) -> Result<(), OverlayError> {
        let mut peers = self.peers.lock().await;
        let new: BTreeMap<WgKey, PeerSpec> = new
            .into_iter()
            .filter(|p| p.key != self.keys.public())
            .map(|p| (p.key, p))
            .collect();
        let mut set = String::new();
        for k in peers.keys().filter(|k| !new.contains_key(k)) {
            set += &format!("public_key={}\nremove=true\n", k.to_hex());
        }
        for (k, p) in &new {
            if peers.get(k) != Some(p) {
                set += &p.uapi_lines();
            }
        }
        if !set.is_empty() {
            self.control.set(&set).await?;
        }
        *peers = new;
        Ok(())
    }

    /// Points a peer at another endpoint (uplink failover).
    pub async fn set_endpoint(
        &self,
        key: &WgKey,
        endpoint: SocketAddr,
    ) -> Result<(), OverlayError> {
        let mut peers = self.peers.lock().await;
        let p = peers.get_mut(key).ok_or(OverlayError::NoSuchPeer(*key))?;
        self.control
            .set(&format!(
                "public_key={}\nupdate_only=true\nendpoint={endpoint}\n",
                key.to_hex()
            ))
            .await?;
        p.endpoint = Some(endpoint);
        Ok(())
    }

    /// The configured peers.
    pub async fn peers(&self) -> Vec<PeerSpec> {
        self.peers.lock().await.values().cloned().collect()
    }

    /// Live device state (handshakes, counters, endpoints).
    pub async fn status(&self) -> Result<DeviceStatus, OverlayError> {
        self.control.get().await
    }

    /// `kernel` or `wireguard-go`.
    pub fn implementation(&self) -> &'static str {
        match self.control {
            Control::Kernel(_) => "kernel",
            Control::Userspace(_) => "wireguard-go",
        }
    }

    /// Process ID of the daemon we started (`None` when adopted, or kernel WireGuard).
    pub fn daemon_pid(&self) -> Option<u32> {
        self.child.as_ref().and_then(Child::id)
    }

    /// Stops the daemon we started (SIGTERM, so it removes its socket; SIGKILL after 2 s), or
    /// deletes the kernel interface.
    pub async fn stop(mut self) {
        if let Control::Kernel(_) = self.control {
            let _ = self
                .host
                .run("ip", &["link", "del", "dev", &self.interface], b"")
                .await;
            return;
        }
        let Some(child) = self.child.as_mut() else {
            return;
        };
        if let Some(pid) = child.id() {
            // SAFETY: plain kill(2) on our own child's pid.
            unsafe {
                libc::kill(pid as libc::pid_t, libc::SIGTERM);
            }
        }
        if tokio::time::timeout(Duration::from_secs(2), child.wait())
            .await
            .is_err()
        {
            let _ = child.kill().await;
        }
    }
}

impl Drop for Overlay {
    /// Without [`Overlay::stop`] (e.g. on panic) the daemon is killed hard; its socket is removed
    /// here so the next start finds no stale one.
    fn drop(&mut self) {
        if let Some(child) = self.child.as_mut()
            && child.try_wait().ok().flatten().is_none()
        {
            let _ = child.start_kill();
            let _ = std::fs::remove_file(self.uapi.socket_path());
        }
    }
}

/// Starts `wireguard-go -f <interface>` and waits (5 s at most) until its UAPI socket answers.
async fn spawn_daemon(
    host: &Host,
    cfg: &OverlayConfig,
    uapi: &Uapi,
) -> Result<Child, OverlayError> {
    let mut cmd = host.command(&cfg.wireguard_go, &["-f", &cfg.interface]);
    cmd.env("WG_PROCESS_FOREGROUND", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true);
    // The daemon goes down with the agent even when the agent is killed hard (SIGKILL skips
    // our Drop). The parent is the spawning thread: the agent's runtime thread.
    // SAFETY: prctl(2) only, between fork and exec (async-signal-safe).
    unsafe {
        cmd.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM as libc::c_ulong) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = cmd.spawn().map_err(|source| OverlayError::Spawn {
        program: cfg.wireguard_go.clone(),
        source,
    })?;
    for _ in 0..250 {
        if uapi.get().await.is_ok() {
            return Ok(child);
        }
        if let Ok(Some(_)) = child.try_wait() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let status = match child.try_wait() {
        Ok(Some(s)) => s.to_string(),
        _ => "still running".into(),
    };
    Err(OverlayError::NoSocket {
        program: cfg.wireguard_go.clone(),
        socket: uapi.socket_path().display().to_string(),
        status,
    })
}

/// Makes sure `ifn` is a kernel WireGuard link: an existing one is kept (a restart), an
/// interface of another kind (e.g. a surviving wireguard-go TUN) is refused, else it is created.
async fn kernel_link(host: &Host, ifn: &str) -> Result<(), KernelWgError> {
    match host
        .run("ip", &["-d", "link", "show", "dev", ifn], b"")
        .await
    {
        Ok(out) if out.lines().any(|l| l.trim_start().starts_with("wireguard")) => Ok(()),
        Ok(_) => Err(KernelWgError::CreateLink(format!(
            "{ifn} exists and is not a kernel WireGuard link"
        ))),
        Err(_) => host
            .run("ip", &["link", "add", "dev", ifn, "type", "wireguard"], b"")
            .await
            .map(|_| ())
            .map_err(|e| KernelWgError::CreateLink(e.to_string())),
    }
}

/// Whether the kernel offers WireGuard (the `wireguard` generic-netlink family is registered).
pub fn kernel_wireguard(host: &Host) -> bool {
    matches!(
        crate::netlink::genl_family(host, "wireguard"),
        Ok((_, Some(_)))
    )
}
