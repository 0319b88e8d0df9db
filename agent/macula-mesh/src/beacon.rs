//! LAN discovery beacon: a signed, replay-protected UDP multicast announcement "member N of
//! realm R listens at address A", so nodes on one LAN find each other without a bootstrap list.
//!
//! Anyone on the LAN can send a datagram, so a beacon must not be a way to make members dial
//! where an attacker wants (a victim: every member dials it; or the attacker's host: it collects
//! the members' certificates). A beacon therefore carries the sender's realm certificate and is
//! signed by the sender's node key (domain `macula/v2/beacon`) over everything it says, the
//! advertised address included; the receiver admits the certificate as at a handshake
//! (chain, expiry, revocation), requires the advertised address to be the datagram's source
//! address, refuses replays (timestamp window, per-node high-water mark of (timestamp, nonce)),
//! and limits the dials beacons cause per source address and in total. A member that beacons
//! someone else's address from a spoofed source gets at most [`PER_SOURCE_BURST`] dials and then
//! one per [`PER_SOURCE_EVERY_MS`] out of each receiver, and it is named by its certificate.
//!
//! [`BeaconState`] is sans-IO (bytes + time in, verdicts out); [`bind`] and [`run`] are the
//! tokio shell: one socket per configured LAN interface, bound to that device, so a beacon never
//! leaves through (or is accepted from) an interface that was not listed (WAN interfaces are
//! simply not listed; see docs/protocol.md "LAN beacon").

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::Arc;
use std::time::Duration;

use macula_core::domains::Domain;
use macula_core::{NodeId, NodeKey, wire};
use serde::{Deserialize, Serialize};

use crate::realm::{Admission, CertError, MembershipCert, RealmId};
use crate::sig::Sig;

/// Version of the beacon format (the first field of [`BeaconBody`]); version 1 carried no
/// certificate and no address.
pub const BEACON_VERSION: u8 = 2;
/// Largest beacon datagram accepted; anything longer is dropped before decoding. A beacon
/// with the longest certificate (hub-issued, 64-byte name) is about 500 bytes.
pub const MAX_BEACON: usize = 1024;
/// How far a beacon's timestamp may lie from the receiver's clock.
pub const MAX_SKEW_MS: u64 = 30_000;
/// How many senders (node IDs, and source addresses for the dial limit) are remembered (the
/// oldest is forgotten first).
pub const MAX_SENDERS: usize = 1024;
/// Dials one source address can cause at once...
pub const PER_SOURCE_BURST: u32 = 2;
/// ...and then one per this many milliseconds.
pub const PER_SOURCE_EVERY_MS: u64 = 10_000;
/// Dials all beacons together can cause at once...
pub const GLOBAL_BURST: u32 = 16;
/// ...and then one per this many milliseconds.
pub const GLOBAL_EVERY_MS: u64 = 500;
/// Default multicast group and port (administratively scoped, RFC 2365).
pub const DEFAULT_GROUP: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(239, 255, 77, 77), 4434);

/// What a beacon states (the signed part).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BeaconBody {
    /// [`BEACON_VERSION`].
    pub version: u8,
    pub realm: RealmId,
    pub node: NodeId,
    /// The sender's mesh endpoint: the address of the interface the beacon leaves through
    /// (it must be the datagram's source address) and the mesh UDP port.
    pub addr: SocketAddr,
    pub nonce: [u8; 16],
    /// Sender's clock, milliseconds since the Unix epoch.
    pub sent_at_ms: u64,
    /// The sender's membership certificate.
    pub cert: MembershipCert,
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
    #[error("beacon version {0}, this node speaks {BEACON_VERSION}; upgrade the older node")]
    Version(u8),
    #[error("beacon for another realm")]
    OtherRealm,
    #[error("our own beacon")]
    Own,
    #[error("beacon announces port 0")]
    BadPort,
    #[error("beacon announces {announced} but came from {from}")]
    AddressMismatch { announced: IpAddr, from: IpAddr },
    #[error("beacon timestamp {0} ms is outside the ±{MAX_SKEW_MS} ms window")]
    Stale(u64),
    #[error("beacon signature invalid")]
    BadSignature,
    #[error("beacon certificate refused: {0}")]
    Cert(CertError),
    #[error("replayed beacon")]
    Replay,
    #[error("already connected to the beacon's sender")]
    Connected,
    #[error("too many dials caused by beacons from {0}")]
    SourceLimit(IpAddr),
    #[error("too many dials caused by beacons")]
    GlobalLimit,
}

/// A member found on the LAN: dial `addr` expecting `node`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Found {
    pub node: NodeId,
    pub addr: SocketAddr,
}

/// A token bucket: `burst` tokens, one more every `every_ms`.
#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: u32,
    /// When the next token was last counted from.
    since_ms: u64,
}

impl Bucket {
    fn full(burst: u32, now_ms: u64) -> Self {
        Self {
            tokens: burst,
            since_ms: now_ms,
        }
    }

    /// Takes a token if there is one; a full bucket earns nothing until it is used.
    fn take(&mut self, burst: u32, every_ms: u64, now_ms: u64) -> bool {
        let earned = now_ms.saturating_sub(self.since_ms) / every_ms;
        if earned > 0 {
            let earned = u32::try_from(earned).unwrap_or(u32::MAX);
            self.tokens = burst.min(self.tokens.saturating_add(earned));
            self.since_ms += u64::from(earned) * every_ms;
        }
        if self.tokens >= burst {
            self.since_ms = now_ms;
        }
        if self.tokens == 0 {
            return false;
        }
        self.tokens -= 1;
        true
    }
}

/// Makes and checks beacons for one node.
pub struct BeaconState {
    key: NodeKey,
    admission: Arc<Admission>,
    port: u16,
    /// Per sender: the newest (timestamp, nonce) accepted; the oldest sender is evicted first.
    seen: HashMap<NodeId, (u64, [u8; 16])>,
    /// Dial budget per source address; the one idle longest is evicted first.
    sources: HashMap<IpAddr, Bucket>,
    global: Bucket,
    /// Most senders and sources remembered ([`MAX_SENDERS`]).
    cap: usize,
}

impl BeaconState {
    /// Beacons of the node with `key`, member of `admission`'s realm, whose mesh endpoint listens
    /// on UDP `port`.
    pub fn new(key: NodeKey, admission: Arc<Admission>, port: u16) -> Self {
        Self {
            key,
            admission,
            port,
            seen: HashMap::new(),
            sources: HashMap::new(),
            global: Bucket::full(GLOBAL_BURST, 0),
            cap: MAX_SENDERS,
        }
    }

    /// The beacon to send now from the interface with address `ip` (`nonce` from the OS random
    /// number generator in the shell).
    pub fn make(&self, ip: IpAddr, now_ms: u64, nonce: [u8; 16]) -> Vec<u8> {
        let body = BeaconBody {
            version: BEACON_VERSION,
            realm: self.admission.realm(),
            node: self.key.node_id(),
            addr: SocketAddr::new(ip, self.port),
            nonce,
            sent_at_ms: now_ms,
            cert: self.admission.own_cert(),
        };
        let sig = Sig(self
            .key
            .sign(Domain::Beacon, &wire::encode(&body))
            .to_bytes());
        wire::encode(&Beacon { body, sig })
    }

    /// Checks a datagram received from `src` at `now_ms`; `connected` says whether this node
    /// already has a connection to a node (then no dial is needed and none is counted).
    pub fn receive(
        &mut self,
        bytes: &[u8],
        src: IpAddr,
        now_ms: u64,
        connected: impl Fn(&NodeId) -> bool,
    ) -> Result<Found, BeaconError> {
        if bytes.len() > MAX_BEACON {
            return Err(BeaconError::TooLarge(bytes.len()));
        }
        let b: Beacon = wire::decode_with_limit(bytes, MAX_BEACON)
            .map_err(|e| BeaconError::Decode(e.to_string()))?;
        let body = &b.body;
        if body.version != BEACON_VERSION {
            return Err(BeaconError::Version(body.version));
        }
        if body.realm != self.admission.realm() {
            return Err(BeaconError::OtherRealm);
        }
        if body.node == self.key.node_id() {
            return Err(BeaconError::Own);
        }
        if body.addr.port() == 0 {
            return Err(BeaconError::BadPort);
        }
        if body.addr.ip() != src {
            return Err(BeaconError::AddressMismatch {
                announced: body.addr.ip(),
                from: src,
            });
        }
        if body.sent_at_ms.abs_diff(now_ms) > MAX_SKEW_MS {
            return Err(BeaconError::Stale(body.sent_at_ms));
        }
        let sig = ed25519_dalek::Signature::from_bytes(&b.sig.0);
        body.node
            .verify(Domain::Beacon, &wire::encode(body), &sig)
            .map_err(|_| BeaconError::BadSignature)?;
        self.admission
            .check(body.node, &body.realm, &body.cert, now_ms / 1000)
            .map_err(BeaconError::Cert)?;
        let stamp = (body.sent_at_ms, body.nonce);
        if let Some(last) = self.seen.get(&body.node)
            && stamp <= *last
        {
            return Err(BeaconError::Replay);
        }
        if self.seen.len() >= self.cap && !self.seen.contains_key(&body.node) {
            let oldest = self
                .seen
                .iter()
                .min_by_key(|(_, (t, _))| *t)
                .map(|(n, _)| *n)
                .expect("the table is full, so not empty");
            self.seen.remove(&oldest);
        }
        self.seen.insert(body.node, stamp);
        if connected(&body.node) {
            return Err(BeaconError::Connected);
        }
        self.allow_dial(src, now_ms)?;
        Ok(Found {
            node: body.node,
            addr: body.addr,
        })
    }

    /// Spends one dial from `src`'s budget and the global one.
    fn allow_dial(&mut self, src: IpAddr, now_ms: u64) -> Result<(), BeaconError> {
        if self.sources.len() >= self.cap && !self.sources.contains_key(&src) {
            let stalest = self
                .sources
                .iter()
                .min_by_key(|(_, b)| b.since_ms)
                .map(|(a, _)| *a);
            if let Some(stalest) = stalest {
                self.sources.remove(&stalest);
            }
        }
        let source = self
            .sources
            .entry(src)
            .or_insert_with(|| Bucket::full(PER_SOURCE_BURST, now_ms));
        let mut probe = *source;
        if !probe.take(PER_SOURCE_BURST, PER_SOURCE_EVERY_MS, now_ms) {
            *source = probe;
            return Err(BeaconError::SourceLimit(src));
        }
        if !self.global.take(GLOBAL_BURST, GLOBAL_EVERY_MS, now_ms) {
            return Err(BeaconError::GlobalLimit);
        }
        *source = probe;
        Ok(())
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

/// The IPv4 address a datagram to `group` leaves `interface` with (the interface's address,
/// as the kernel chooses it); `None` while the interface has none.
pub fn interface_addr(interface: &str, group: SocketAddrV4) -> Option<IpAddr> {
    use socket2::{Domain as SockDomain, Protocol, Socket, Type};
    let s = Socket::new(SockDomain::IPV4, Type::DGRAM, Some(Protocol::UDP)).ok()?;
    s.bind_device(Some(interface.as_bytes())).ok()?;
    s.connect(&SocketAddr::V4(group).into()).ok()?;
    let ip = s.local_addr().ok()?.as_socket()?.ip();
    (!ip.is_unspecified()).then_some(ip)
}

/// Sends a beacon every `interval` on each socket (announcing that interface's address) and
/// reports every valid beacon of a member this node is not `connected` to, within the dial
/// limits. Runs until the task is dropped.
pub async fn run(
    mut state: BeaconState,
    sockets: Vec<(String, tokio::net::UdpSocket)>,
    group: SocketAddrV4,
    interval: Duration,
    connected: impl Fn(&NodeId) -> bool + Send + Sync + 'static,
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
                for (iface, s) in &sockets {
                    let Some(ip) = interface_addr(iface, group) else {
                        tracing::debug!(interface = %iface, "no beacon: the interface has no IPv4 address");
                        continue;
                    };
                    let mut nonce = [0u8; 16];
                    getrandom::fill(&mut nonce).expect("the OS random number generator failed");
                    let beacon = state.make(ip, now_ms(), nonce);
                    if let Err(e) = s.send_to(&beacon, SocketAddr::V4(group)).await {
                        tracing::debug!(interface = %iface, "beacon not sent: {e}");
                    }
                }
            }
            Some((bytes, src)) = rx.recv() => {
                match state.receive(&bytes, src.ip(), now_ms(), &connected) {
                    Ok(f) => found(f),
                    Err(BeaconError::Own | BeaconError::Connected) => {}
                    Err(e) => tracing::debug!(%src, "beacon ignored: {e}"),
                }
            }
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
    use crate::realm::{CertBody, RealmKey, Role};

    const T: u64 = 1_800_000_000_000;
    const SRC: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 7));
    const VICTIM: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 99));

    fn realm() -> RealmKey {
        RealmKey::from_seed([9; 32])
    }

    fn key(seed: u64) -> NodeKey {
        let mut s = [0u8; 32];
        s[..8].copy_from_slice(&seed.to_le_bytes());
        NodeKey::from_seed(s)
    }

    fn cert_by(realm: &RealmKey, node: NodeId) -> MembershipCert {
        realm.issue(CertBody {
            realm: realm.id(),
            node,
            role: Role::Edge,
            name: "n".into(),
            not_before: T / 1000 - 10,
            expires: T / 1000 + 3600,
        })
    }

    /// A member of `realm` with key seed `seed`, beaconing port `port`.
    fn member_of(realm: &RealmKey, seed: u64, port: u16) -> BeaconState {
        let k = key(seed);
        let adm = Admission::new(k.node_id(), cert_by(realm, k.node_id()), T / 1000).unwrap();
        BeaconState::new(k, Arc::new(adm), port)
    }

    fn member(seed: u64, port: u16) -> BeaconState {
        member_of(&realm(), seed, port)
    }

    fn no_conn(_: &NodeId) -> bool {
        false
    }

    /// A beacon by `key` stating what the caller wants, signed correctly: what a misbehaving
    /// sender can make.
    fn forge(key: &NodeKey, addr: SocketAddr, cert: MembershipCert, t: u64, n: u8) -> Vec<u8> {
        let body = BeaconBody {
            version: BEACON_VERSION,
            realm: realm().id(),
            node: key.node_id(),
            addr,
            nonce: [n; 16],
            sent_at_ms: t,
            cert,
        };
        let sig = Sig(key.sign(Domain::Beacon, &wire::encode(&body)).to_bytes());
        wire::encode(&Beacon { body, sig })
    }

    #[test]
    fn a_fresh_beacon_is_found_once_and_replays_are_refused() {
        let (a, mut b) = (member(1, 4433), member(2, 5000));
        let beacon = a.make(SRC, T, [1; 16]);
        assert!(beacon.len() <= MAX_BEACON, "{}", beacon.len());
        let f = b.receive(&beacon, SRC, T + 5, no_conn).unwrap();
        assert_eq!(f.node, key(1).node_id());
        assert_eq!(f.addr, "192.0.2.7:4433".parse().unwrap());
        assert_eq!(
            b.receive(&beacon, SRC, T + 6, no_conn),
            Err(BeaconError::Replay)
        );
        // An older beacon captured earlier is a replay too; a newer one is accepted.
        assert_eq!(
            b.receive(&a.make(SRC, T - 1, [2; 16]), SRC, T, no_conn),
            Err(BeaconError::Replay)
        );
        assert!(
            b.receive(&a.make(SRC, T + 1000, [3; 16]), SRC, T + 1000, no_conn)
                .is_ok()
        );
    }

    #[test]
    fn the_longest_beacon_fits() {
        let r = realm();
        let hub = key(50);
        let k = key(51);
        let d = r.delegate(hub.node_id(), T / 1000 + 7200);
        let mut body = cert_by(&r, k.node_id()).body;
        body.name = "x".repeat(crate::realm::MAX_NAME);
        let c = crate::realm::issue_as_hub(&hub, d, body);
        let addr = SocketAddr::new("2001:db8::1".parse().unwrap(), 65535);
        let b = forge(&k, addr, c, u64::MAX, 0xff);
        assert!(b.len() <= MAX_BEACON, "{}", b.len());
    }

    #[test]
    fn stale_foreign_own_forged_and_oversized_beacons_are_refused() {
        let (a, mut b) = (member(1, 4433), member(2, 5000));
        assert_eq!(
            b.receive(&a.make(SRC, T, [0; 16]), SRC, T + MAX_SKEW_MS + 1, no_conn),
            Err(BeaconError::Stale(T))
        );
        let other = member_of(&RealmKey::from_seed([8; 32]), 1, 1);
        assert_eq!(
            b.receive(&other.make(SRC, T, [0; 16]), SRC, T, no_conn),
            Err(BeaconError::OtherRealm)
        );
        assert_eq!(
            b.receive(&b.make(SRC, T, [0; 16]), SRC, T, no_conn),
            Err(BeaconError::Own)
        );
        // Changing the announced address or port breaks the signature.
        let mut forged: Beacon = wire::decode(&a.make(SRC, T, [4; 16])).unwrap();
        forged.body.addr.set_port(22);
        assert_eq!(
            b.receive(&wire::encode(&forged), SRC, T, no_conn),
            Err(BeaconError::BadSignature)
        );
        forged.body.addr = SocketAddr::new(VICTIM, 4433);
        assert_eq!(
            b.receive(&wire::encode(&forged), VICTIM, T, no_conn),
            Err(BeaconError::BadSignature)
        );
        let mut old: Beacon = wire::decode(&a.make(SRC, T, [6; 16])).unwrap();
        old.body.version = 1;
        assert_eq!(
            b.receive(&wire::encode(&old), SRC, T, no_conn),
            Err(BeaconError::Version(1))
        );
        assert_eq!(
            b.receive(&[0u8; MAX_BEACON + 1], SRC, T, no_conn),
            Err(BeaconError::TooLarge(MAX_BEACON + 1))
        );
        let good = a.make(SRC, T, [5; 16]);
        for cut in 0..good.len() {
            assert!(matches!(
                b.receive(&good[..cut], SRC, T, no_conn),
                Err(BeaconError::Decode(_))
            ));
        }
    }

    /// Issue 18: a beacon used to need only a node key, so anyone on the LAN could make every
    /// member dial an address of its choice. A non-member's beacon, one with a stolen, foreign
    /// or revoked certificate, and a beacon that names an address it was not sent from cause
    /// no dial.
    #[test]
    fn only_members_beacons_from_their_own_address_cause_dials() {
        let mut b = member(2, 5000);
        let stranger = key(66);
        let at = |ip| SocketAddr::new(ip, 4433);
        // A throwaway key presenting a member's (stolen) certificate.
        let stolen = cert_by(&realm(), key(1).node_id());
        assert!(matches!(
            b.receive(&forge(&stranger, at(SRC), stolen, T, 1), SRC, T, no_conn),
            Err(BeaconError::Cert(CertError::NodeMismatch { .. }))
        ));
        // A certificate for its own key from another realm's key.
        let foreign = RealmKey::from_seed([8; 32]);
        let mut c = cert_by(&foreign, stranger.node_id());
        c.body.realm = realm().id();
        assert!(matches!(
            b.receive(&forge(&stranger, at(SRC), c, T, 2), SRC, T, no_conn),
            Err(BeaconError::Cert(CertError::BadSignature(_)))
        ));
        // An expired certificate.
        let mut body = cert_by(&realm(), stranger.node_id()).body;
        body.expires = T / 1000 - 1;
        let expired = realm().issue(body);
        assert!(matches!(
            b.receive(&forge(&stranger, at(SRC), expired, T, 3), SRC, T, no_conn),
            Err(BeaconError::Cert(CertError::Expired { .. }))
        ));
        // A member naming a victim's address, sent from its own source or a spoofed one.
        let m = key(3);
        let good = cert_by(&realm(), m.node_id());
        assert_eq!(
            b.receive(&forge(&m, at(VICTIM), good.clone(), T, 4), SRC, T, no_conn),
            Err(BeaconError::AddressMismatch {
                announced: VICTIM,
                from: SRC
            })
        );
        // A revoked member.
        b.admission
            .revoke(realm().revoke(m.node_id(), T / 1000))
            .unwrap();
        assert_eq!(
            b.receive(&forge(&m, at(SRC), good, T, 5), SRC, T, no_conn),
            Err(BeaconError::Cert(CertError::Revoked(m.node_id())))
        );
    }

    /// A member spoofing a victim's source address with fresh beacons gets a few dials out of
    /// each receiver, then one per [`PER_SOURCE_EVERY_MS`]; many sources together are held to
    /// the global budget; beacons of connected members spend nothing.
    #[test]
    fn dials_caused_by_beacons_are_rate_limited() {
        let mut b = member(2, 5000);
        let m = key(3);
        let cert = cert_by(&realm(), m.node_id());
        let to_victim = SocketAddr::new(VICTIM, 80);
        let mut dials = 0;
        for i in 0..=200u64 {
            let t = T + i * 50; // 20 beacons a second for 10 s
            let bytes = forge(&m, to_victim, cert.clone(), t, 0);
            match b.receive(&bytes, VICTIM, t, no_conn) {
                Ok(_) => dials += 1,
                Err(BeaconError::SourceLimit(ip)) => assert_eq!(ip, VICTIM),
                Err(e) => panic!("{e}"),
            }
        }
        assert_eq!(dials, PER_SOURCE_BURST + 1, "201 beacons in 10 s");

        // Members on many addresses: the global budget holds.
        let mut b = member(2, 5000);
        let mut dials = 0;
        for i in 0..200u64 {
            let k = key(1000 + i);
            let ip = IpAddr::V4(Ipv4Addr::new(10, 0, (i / 250) as u8, (i % 250) as u8 + 1));
            let bytes = forge(
                &k,
                SocketAddr::new(ip, 4433),
                cert_by(&realm(), k.node_id()),
                T,
                0,
            );
            if b.receive(&bytes, ip, T, no_conn).is_ok() {
                dials += 1;
            }
        }
        assert_eq!(dials, GLOBAL_BURST);
        // The budget comes back with time.
        let k = key(5000);
        let ip = IpAddr::V4(Ipv4Addr::new(10, 9, 9, 9));
        let later = T + GLOBAL_EVERY_MS;
        let bytes = forge(
            &k,
            SocketAddr::new(ip, 1),
            cert_by(&realm(), k.node_id()),
            later,
            0,
        );
        assert!(b.receive(&bytes, ip, later, no_conn).is_ok());

        // Connected members cause no dial and spend no budget.
        let mut b = member(2, 5000);
        let a = member(1, 4433);
        for i in 0..50u64 {
            assert_eq!(
                b.receive(&a.make(SRC, T + i, [0; 16]), SRC, T + i, |_| true),
                Err(BeaconError::Connected)
            );
        }
        assert!(
            b.receive(&a.make(SRC, T + 60, [0; 16]), SRC, T + 60, no_conn)
                .is_ok()
        );
    }

    #[test]
    fn the_replay_and_source_tables_are_bounded() {
        let mut b = member(2, 5000);
        b.cap = 8;
        for i in 0..18u64 {
            let s = member(i + 100, 1);
            let ip = IpAddr::V4(Ipv4Addr::new(10, 0, 0, i as u8 + 1));
            // Spaced out so that the global budget never runs dry.
            let t = T + i * GLOBAL_EVERY_MS;
            b.receive(&s.make(ip, t, [0; 16]), ip, t, no_conn).unwrap();
        }
        assert_eq!(b.seen.len(), 8);
        assert_eq!(b.sources.len(), 8);
        // The oldest senders were forgotten, the newest kept.
        assert!(b.seen.values().all(|(t, _)| *t >= T + 10 * GLOBAL_EVERY_MS));
    }
}
