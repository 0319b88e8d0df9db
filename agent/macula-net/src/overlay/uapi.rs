//! The WireGuard cross-platform userspace API (UAPI): `key=value` lines over the unix socket
//! `/var/run/wireguard/<interface>.sock` that `wireguard-go` (and boringtun) serve.
//!
//! [`parse_get`] decodes a `get=1` reply; it bounds everything it reads and has a fuzz target
//! (`fuzz/fuzz_targets/uapi_get.rs`).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;

use super::keys::WgKey;

/// Where userspace WireGuard implementations put their sockets (a filesystem path, not per netns).
pub const SOCKET_DIR: &str = "/var/run/wireguard";
/// Largest reply we read.
pub const MAX_REPLY: usize = 4 << 20;
/// Most peers a reply may describe.
pub const MAX_PEERS: usize = 65_536;
/// Most allowed IPs per peer.
pub const MAX_ALLOWED_IPS: usize = 4096;

/// UAPI errors.
#[derive(Debug, thiserror::Error)]
pub enum UapiError {
    #[error("cannot talk to WireGuard at {path}: {source}; is the userspace daemon running?")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("WireGuard refused the change (errno={0}); check the peer keys and endpoints")]
    Errno(i64),
    #[error("malformed UAPI reply: {0}")]
    Malformed(String),
}

/// One peer as the device reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerStatus {
    pub public_key: WgKey,
    pub endpoint: Option<SocketAddr>,
    /// Time of the last handshake since the Unix epoch (`None`: never).
    pub last_handshake: Option<Duration>,
    pub rx_bytes: u64,
    pub tx_bytes: u64,
    pub persistent_keepalive: u16,
    pub allowed_ips: Vec<String>,
}

/// The device as `get=1` reports it (the private key is not kept).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeviceStatus {
    pub listen_port: u16,
    pub peers: Vec<PeerStatus>,
}

pub(crate) fn parse_key(v: &str) -> Result<WgKey, UapiError> {
    if v.len() != 64 {
        return Err(UapiError::Malformed(format!("key of length {}", v.len())));
    }
    let mut k = [0u8; 32];
    for (i, b) in k.iter_mut().enumerate() {
        *b = u8::from_str_radix(&v[2 * i..2 * i + 2], 16)
            .map_err(|_| UapiError::Malformed("non-hex key".into()))?;
    }
    Ok(WgKey(k))
}

fn num<T: std::str::FromStr>(k: &str, v: &str) -> Result<T, UapiError> {
    v.parse()
        .map_err(|_| UapiError::Malformed(format!("bad number for {k}")))
}

/// Decodes a `get=1` reply (everything up to and including `errno=N` and the blank line).
pub fn parse_get(reply: &[u8]) -> Result<DeviceStatus, UapiError> {
    if reply.len() > MAX_REPLY {
        return Err(UapiError::Malformed("reply too large".into()));
    }
    let text = std::str::from_utf8(reply).map_err(|_| UapiError::Malformed("not UTF-8".into()))?;
    let mut dev = DeviceStatus::default();
    let mut hs_sec: Option<u64> = None;
    let mut errno = None;
    for line in text.lines() {
        if line.is_empty() {
            break;
        }
        let (k, v) = line
            .split_once('=')
            .ok_or_else(|| UapiError::Malformed("line without '='".into()))?;
        match k {
            "errno" => errno = Some(num::<i64>(k, v)?),
            "listen_port" => dev.listen_port = num(k, v)?,
            "public_key" => {
                if dev.peers.len() >= MAX_PEERS {
                    return Err(UapiError::Malformed("too many peers".into()));
                }
                hs_sec = None;
                dev.peers.push(PeerStatus {
                    public_key: parse_key(v)?,
                    endpoint: None,
                    last_handshake: None,
                    rx_bytes: 0,
                    tx_bytes: 0,
                    persistent_keepalive: 0,
                    allowed_ips: Vec::new(),
                });
            }
            _ => {
                let Some(p) = dev.peers.last_mut() else {
                    // Device-level keys we do not keep (private_key, fwmark, …).
                    continue;
                };
                match k {
                    "endpoint" => {
                        p.endpoint = Some(num(k, v)?);
                    }
                    "last_handshake_time_sec" => {
                        let s: u64 = num(k, v)?;
                        hs_sec = Some(s);
                        p.last_handshake = (s != 0).then(|| Duration::from_secs(s));
                    }
                    "last_handshake_time_nsec" => {
                        let n: u32 = num(k, v)?;
                        if let Some(s) = hs_sec.filter(|s| *s != 0) {
                            p.last_handshake = Some(Duration::new(s, n.min(999_999_999)));
                        }
                    }
                    "rx_bytes" => p.rx_bytes = num(k, v)?,
                    "tx_bytes" => p.tx_bytes = num(k, v)?,
                    "persistent_keepalive_interval" => p.persistent_keepalive = num(k, v)?,
                    "allowed_ip" => {
                        if p.allowed_ips.len() >= MAX_ALLOWED_IPS {
                            return Err(UapiError::Malformed("too many allowed IPs".into()));
                        }
                        p.allowed_ips.push(v.to_string());
                    }
                    _ => {}
                }
            }
        }
    }
    match errno {
        Some(0) => Ok(dev),
        Some(e) => Err(UapiError::Errno(e)),
        None => Err(UapiError::Malformed("reply without errno".into())),
    }
}

/// A client for one interface's UAPI socket.
#[derive(Debug, Clone)]
pub struct Uapi {
    path: PathBuf,
}

impl Uapi {
    pub fn new(interface: &str) -> Self {
        Self {
            path: Path::new(SOCKET_DIR).join(format!("{interface}.sock")),
        }
    }

    pub fn socket_path(&self) -> &Path {
        &self.path
    }

    async fn exchange(&self, request: &str) -> Result<Vec<u8>, UapiError> {
        let io = |source| UapiError::Io {
            path: self.path.clone(),
            source,
        };
        let mut s = UnixStream::connect(&self.path).await.map_err(io)?;
        s.write_all(request.as_bytes()).await.map_err(io)?;
        let mut reply = Vec::new();
        let mut buf = [0u8; 8192];
        loop {
            let n = s.read(&mut buf).await.map_err(io)?;
            if n == 0 {
                break;
            }
            reply.extend_from_slice(&buf[..n]);
            if reply.ends_with(b"\n\n") {
                break;
            }
            if reply.len() > MAX_REPLY {
                return Err(UapiError::Malformed("reply too large".into()));
            }
        }
        Ok(reply)
    }

    /// Sends a `set=1` request: `lines` are `key=value` lines without the trailing blank line.
    pub async fn set(&self, lines: &str) -> Result<(), UapiError> {
        let reply = self.exchange(&format!("set=1\n{lines}\n")).await?;
        parse_get(&reply).map(|_| ())
    }

    /// Reads the device state.
    pub async fn get(&self) -> Result<DeviceStatus, UapiError> {
        parse_get(&self.exchange("get=1\n\n").await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_reply() {
        let k = "ab".repeat(32);
        let reply = format!(
            "private_key={}\nlisten_port=51820\npublic_key={k}\nendpoint=[fd00::1]:51820\n\
             last_handshake_time_sec=1700000000\nlast_handshake_time_nsec=5\ntx_bytes=10\nrx_bytes=20\n\
             persistent_keepalive_interval=25\nallowed_ip=fd00::1/128\nprotocol_version=1\nerrno=0\n\n",
            "cd".repeat(32)
        );
        let d = parse_get(reply.as_bytes()).unwrap();
        assert_eq!(d.listen_port, 51820);
        let p = &d.peers[0];
        assert_eq!(p.public_key, WgKey([0xab; 32]));
        assert_eq!(p.endpoint, Some("[fd00::1]:51820".parse().unwrap()));
        assert_eq!(p.last_handshake, Some(Duration::new(1_700_000_000, 5)));
        assert_eq!(
            (p.tx_bytes, p.rx_bytes, p.persistent_keepalive),
            (10, 20, 25)
        );
        assert_eq!(p.allowed_ips, ["fd00::1/128"]);
    }

    #[test]
    fn rejects_bad_replies() {
        assert!(matches!(
            parse_get(b"errno=2\n\n"),
            Err(UapiError::Errno(2))
        ));
        assert!(parse_get(b"listen_port=1\n\n").is_err());
        assert!(parse_get(b"public_key=zz\nerrno=0\n\n").is_err());
        assert!(parse_get(b"listen_port=99999\nerrno=0\n\n").is_err());
        assert!(parse_get(&[0xff, b'\n']).is_err());
    }
}
