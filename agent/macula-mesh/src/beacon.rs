//! LAN discovery beacon: a signed, replay-protected UDP multicast announcement
//! "node N of realm R listens on port P", so nodes on one LAN find each other without a
//! bootstrap list.
//!
//! A beacon only says where to dial. It is signed by the sender's node key (domain
//! `macula/v1/beacon`) so nobody can announce someone else's node ID at their own address, but
//! realm membership is checked where it always is: at the TLS handshake of the dial (a beacon
//! naming our realm from a non-member leads to a refused connection, nothing else). Replays are
//! refused by the timestamp window and a per-node high-water mark of (timestamp, nonce).
//!
//! [`BeaconState`] is sans-IO (bytes + time in, verdicts out); [`bind`] and [`run`] are the
//! tokio shell: one socket per configured LAN interface, bound to that device, so a beacon never
//! leaves through (or is accepted from) an interface that was not listed (WAN interfaces are
//! simply not listed; see docs/protocol.md "LAN beacon").

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4};
use std::time::Duration;

use macula_core::domains::Domain;
use macula_core::{NodeId, NodeKey, wire};
use serde::{Deserialize, Serialize};

use crate::realm::RealmId;
use crate::sig::Sig;

/// Largest beacon datagram accepted; anything longer is dropped before decoding.
pub const MAX_BEACON: usize = 256;
/// How far a beacon's timestamp may lie from the receiver's clock.
pub const MAX_SKEW_MS: u64 = 30_000;
/// How many senders the replay table remembers (the oldest is forgotten first).
pub const MAX_SENDERS: usize = 1024;
/// Default multicast group and port (administratively scoped, RFC 2365).
pub const DEFAULT_GROUP: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(239, 255, 77, 77), 4434);

/// What a beacon states (the signed part).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BeaconBody {
    pub realm: RealmId,
    pub node: NodeId,
    /// UDP port of the sender's mesh endpoint; the address is the datagram's source address.
    pub port: u16,
    pub nonce: [u8; 16],
    /// Sender's clock, milliseconds since the Unix epoch.
    pub sent_at_ms: u64,
}

/// A beacon on the wire: `wire::encode(&Beacon)`; `sig` is over `wire::encode(&body)`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Beacon {
    pub body: BeaconBody,
    pub sig: Sig,
}

/// Why a received beacon was not used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BeaconError {
    #[error("beacon of {0} bytes is larger than {MAX_BEACON}")]
    TooLarge(usize),
    #[error("not a beacon: {0}")]
    Decode(String),
    #[error("beacon for another realm")]
    OtherRealm,
    #[error("our own beacon")]
    Own,
    #[error("beacon signature invalid")]
    BadSignature,
    #[error("beacon timestamp {0} ms is outside the ±{MAX_SKEW_MS} ms window")]
    Stale(u64),
    #[error("replayed beacon")]
    Replay,
    #[error("beacon announces port 0")]
    BadPort,
}

/// A node found on the LAN: dial `addr` expecting `node`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Found {
    pub node: NodeId,
    pub addr: SocketAddr,
}

/// Makes and checks beacons for one node.
pub struct BeaconState {
    key: NodeKey,
    realm: RealmId,
    port: u16,
    /// Per sender: the newest (timestamp, nonce) accepted; the oldest sender is evicted first.
    seen: HashMap<NodeId, (u64, [u8; 16])>,
    /// Most senders remembered ([`MAX_SENDERS`]).
    cap: usize,
}

impl BeaconState {
    pub fn new(key: NodeKey, realm: RealmId, port: u16) -> Self {
        Self {
            key,
            realm,
            port,
            seen: HashMap::new(),
            cap: MAX_SENDERS,
        }
    }

    /// The beacon to send now (`nonce` from the OS random number generator in the shell).
    pub fn make(&self, now_ms: u64, nonce: [u8; 16]) -> Vec<u8> {
        let body = BeaconBody {
            realm: self.realm,
            node: self.key.node_id(),
            port: self.port,
            nonce,
            sent_at_ms: now_ms,
        };
        let sig = Sig(self
            .key
            .sign(Domain::Beacon, &wire::encode(&body))
            .to_bytes());
        wire::encode(&Beacon { body, sig })
    }

    /// Checks a datagram received from `src` at `now_ms`.
    pub fn receive(
        &mut self,
        bytes: &[u8],
        src: IpAddr,
        now_ms: u64,
    ) -> Result<Found, BeaconError> {
        if bytes.len() > MAX_BEACON {
            return Err(BeaconError::TooLarge(bytes.len()));
        }
        let b: Beacon = wire::decode_with_limit(bytes, MAX_BEACON)
            .map_err(|e| BeaconError::Decode(e.to_string()))?;
        if b.body.realm != self.realm {
            return Err(BeaconError::OtherRealm);
        }
        if b.body.node == self.key.node_id() {
            return Err(BeaconError::Own);
        }
        if b.body.port == 0 {
            return Err(BeaconError::BadPort);
        }
        if b.body.sent_at_ms.abs_diff(now_ms) > MAX_SKEW_MS {
            return Err(BeaconError::Stale(b.body.sent_at_ms));
        }
        let sig = ed25519_dalek::Signature::from_bytes(&b.sig.0);
        b.body
            .node
            .verify(Domain::Beacon, &wire::encode(&b.body), &sig)
            .map_err(|_| BeaconError::BadSignature)?;
        let stamp = (b.body.sent_at_ms, b.body.nonce);
        if let Some(last) = self.seen.get(&b.body.node)
            && stamp <= *last
        {
            return Err(BeaconError::Replay);
        }
        if self.seen.len() >= self.cap && !self.seen.contains_key(&b.body.node) {
            let oldest = self
                .seen
                .iter()
                .min_by_key(|(_, (t, _))| *t)
                .map(|(n, _)| *n)
                .expect("the table is full, so not empty");
            self.seen.remove(&oldest);
        }
        self.seen.insert(b.body.node, stamp);
        Ok(Found {
            node: b.body.node,
            addr: SocketAddr::new(src, b.body.port),
        })
    }
}

/// A UDP socket for beacons on one interface: bound to the device, member of `group` there,
/// multicast TTL 1, no loopback of our own beacons.
pub fn bind(interface: &str, group: SocketAddrV4) -> std::io::Result<tokio::net::UdpSocket> {
    use socket2::{Domain as SockDomain, InterfaceIndexOrAddress, Protocol, Socket, Type};
    let name = std::ffi::CString::new(interface)
        .map_err(|_| std::io::Error::other("interface name contains a NUL byte"))?;
    // SAFETY: `name` is a valid NUL-terminated string for the duration of the call.
    let index = unsafe { libc::if_nametoindex(name.as_ptr()) };
    if index == 0 {
        return Err(std::io::Error::other(format!(
            "no interface `{interface}`: {}",
            std::io::Error::last_os_error()
        )));
    }
    let s = Socket::new(SockDomain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
    s.set_reuse_address(true)?;
    s.bind_device(Some(interface.as_bytes()))?;
    s.bind(&SocketAddr::from((Ipv4Addr::UNSPECIFIED, group.port())).into())?;
    s.join_multicast_v4_n(group.ip(), &InterfaceIndexOrAddress::Index(index))?;
    s.set_multicast_ttl_v4(1)?;
    s.set_multicast_loop_v4(false)?;
    s.set_nonblocking(true)?;
    tokio::net::UdpSocket::from_std(s.into())
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Sends a beacon every `interval` on each socket and reports every valid beacon received.
/// Runs until the task is dropped.
pub async fn run(
    mut state: BeaconState,
    sockets: Vec<(String, tokio::net::UdpSocket)>,
    group: SocketAddrV4,
    interval: Duration,
    found: impl Fn(Found) + Send + Sync + 'static,
) {
    let found = std::sync::Arc::new(found);
    let (tx, mut rx) = tokio::sync::mpsc::channel::<(Vec<u8>, SocketAddr)>(64);
    let sockets: Vec<_> = sockets
        .into_iter()
        .map(|(i, s)| (i, std::sync::Arc::new(s)))
        .collect();
    let mut readers = Vec::new();
    for (iface, s) in &sockets {
        let (tx, s, iface) = (tx.clone(), s.clone(), iface.clone());
        readers.push(tokio::spawn(async move {
            let mut buf = [0u8; MAX_BEACON + 1];
            loop {
                match s.recv_from(&mut buf).await {
                    Ok((n, src)) => {
                        if tx.send((buf[..n].to_vec(), src)).await.is_err() {
                            return;
                        }
                    }
                    Err(e) => {
                        tracing::warn!(interface = %iface, "beacon receive failed: {e}");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                }
            }
        }));
    }
    let _abort = AbortOnDrop(readers);
    let mut tick = tokio::time::interval(interval);
    loop {
        tokio::select! {
            _ = tick.tick() => {
                let mut nonce = [0u8; 16];
                getrandom::fill(&mut nonce).expect("the OS random number generator failed");
                let beacon = state.make(now_ms(), nonce);
                for (iface, s) in &sockets {
                    if let Err(e) = s.send_to(&beacon, SocketAddr::V4(group)).await {
                        tracing::debug!(interface = %iface, "beacon not sent: {e}");
                    }
                }
            }
            Some((bytes, src)) = rx.recv() => match state.receive(&bytes, src.ip(), now_ms()) {
                Ok(f) => found(f),
                Err(BeaconError::Own) => {}
                Err(e) => tracing::debug!(%src, "beacon ignored: {e}"),
            },
        }
    }
}

struct AbortOnDrop(Vec<tokio::task::JoinHandle<()>>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        for t in &self.0 {
            t.abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn realm() -> RealmId {
        RealmId(NodeKey::from_seed([9; 32]).node_id())
    }

    fn pair() -> (BeaconState, BeaconState) {
        (
            BeaconState::new(NodeKey::from_seed([1; 32]), realm(), 4433),
            BeaconState::new(NodeKey::from_seed([2; 32]), realm(), 5000),
        )
    }

    const T: u64 = 1_800_000_000_000;
    const SRC: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 7));

    #[test]
    fn a_fresh_beacon_is_found_once_and_replays_are_refused() {
        let (a, mut b) = pair();
        let beacon = a.make(T, [1; 16]);
        assert!(beacon.len() <= MAX_BEACON, "{}", beacon.len());
        let f = b.receive(&beacon, SRC, T + 5).unwrap();
        assert_eq!(f.node, NodeKey::from_seed([1; 32]).node_id());
        assert_eq!(f.addr, "192.0.2.7:4433".parse().unwrap());
        assert_eq!(b.receive(&beacon, SRC, T + 6), Err(BeaconError::Replay));
        // An older beacon captured earlier is a replay too; a newer one is accepted.
        assert_eq!(
            b.receive(&a.make(T - 1, [2; 16]), SRC, T),
            Err(BeaconError::Replay)
        );
        assert!(b.receive(&a.make(T + 1000, [3; 16]), SRC, T + 1000).is_ok());
    }

    #[test]
    fn stale_foreign_own_forged_and_oversized_beacons_are_refused() {
        let (a, mut b) = pair();
        assert_eq!(
            b.receive(&a.make(T, [0; 16]), SRC, T + MAX_SKEW_MS + 1),
            Err(BeaconError::Stale(T))
        );
        let other = BeaconState::new(
            NodeKey::from_seed([1; 32]),
            RealmId(NodeKey::from_seed([8; 32]).node_id()),
            1,
        );
        assert_eq!(
            b.receive(&other.make(T, [0; 16]), SRC, T),
            Err(BeaconError::OtherRealm)
        );
        assert_eq!(
            b.receive(&b.make(T, [0; 16]), SRC, T),
            Err(BeaconError::Own)
        );
        // Changing the announced port breaks the signature.
        let mut forged: Beacon = wire::decode(&a.make(T, [4; 16])).unwrap();
        forged.body.port = 22;
        assert_eq!(
            b.receive(&wire::encode(&forged), SRC, T),
            Err(BeaconError::BadSignature)
        );
        assert_eq!(
            b.receive(&[0u8; MAX_BEACON + 1], SRC, T),
            Err(BeaconError::TooLarge(MAX_BEACON + 1))
        );
        let good = a.make(T, [5; 16]);
        for cut in 0..good.len() {
            assert!(matches!(
                b.receive(&good[..cut], SRC, T),
                Err(BeaconError::Decode(_))
            ));
        }
    }

    #[test]
    fn the_replay_table_is_bounded() {
        let (_, mut b) = pair();
        b.cap = 8;
        for i in 0..18u64 {
            let mut seed = [0u8; 32];
            seed[..8].copy_from_slice(&(i + 100).to_le_bytes());
            let s = BeaconState::new(NodeKey::from_seed(seed), realm(), 1);
            b.receive(&s.make(T + i, [0; 16]), SRC, T).unwrap();
        }
        assert_eq!(b.seen.len(), 8);
        // The oldest senders were forgotten, the newest kept.
        assert!(b.seen.values().all(|(t, _)| *t >= T + 10));
    }
}
