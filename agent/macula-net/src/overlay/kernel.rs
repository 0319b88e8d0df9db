//! Kernel WireGuard over generic netlink (family `wireguard`, version 1; the kernel's
//! `include/uapi/linux/wireguard.h`), with `netlink-packet-wireguard`'s message types.
//!
//! The overlay speaks one configuration language to both implementations: the UAPI `set`
//! lines it already sends to `wireguard-go` ([`set_messages`] translates them into
//! `WG_CMD_SET_DEVICE` messages, split so that no nested attribute outgrows its 16-bit length),
//! and [`parse_device`] turns `WG_CMD_GET_DEVICE` dump replies into the same
//! [`DeviceStatus`] the UAPI `get` gives. Both are pure and unit-tested, and fuzzed together with
//! the crate's decoder (`fuzz/fuzz_targets/wg_netlink.rs`).

use macula_core::sync::Locked;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use netlink_packet_core::{DecodeError, Emitable, NLM_F_DUMP, NlasIterator, ParseableParametrized};
use netlink_packet_generic::{GenlFamily, GenlHeader, GenlMessage};
use netlink_packet_wireguard::{
    WireguardAddressFamily, WireguardAllowedIp, WireguardAllowedIpAttr, WireguardAttribute,
    WireguardCmd, WireguardDeviceFlags, WireguardMessage, WireguardPeer, WireguardPeerAttribute,
    WireguardPeerFlags,
};
use netlink_sys::Socket;

use super::keys::WgKey;
use super::uapi::{DeviceStatus, MAX_ALLOWED_IPS, MAX_PEERS, PeerStatus, UapiError, parse_key};
use crate::cmd::Host;
use crate::netlink::{NLM_F_ACK, NLM_F_REQUEST, NetlinkError, request, transact};

/// Largest `WGDEVICE_A_PEERS` nest per message (the attribute length is 16 bits).
const MAX_PEERS_NEST: usize = 60_000;

/// Kernel WireGuard failures.
#[derive(Debug, thiserror::Error)]
pub enum KernelWgError {
    #[error(transparent)]
    Netlink(#[from] NetlinkError),
    #[error(
        "the kernel has no WireGuard (generic-netlink family `wireguard` missing); load the module (`modprobe wireguard`) or set [overlay] implementation = \"userspace\""
    )]
    NoFamily,
    #[error(
        "cannot create the kernel WireGuard interface: {0}; load the module (`modprobe wireguard`) or set [overlay] implementation = \"userspace\""
    )]
    CreateLink(String),
    #[error("cannot translate the WireGuard change: {0}")]
    Translate(String),
    #[error(transparent)]
    Decode(#[from] UapiError),
}

fn bad(m: impl Into<String>) -> KernelWgError {
    KernelWgError::Translate(m.into())
}

fn malformed(m: &str) -> KernelWgError {
    KernelWgError::Netlink(NetlinkError::Malformed(m.into()))
}

fn allowed_ip(v: &str) -> Result<WireguardAllowedIp, KernelWgError> {
    let (ip, mask) = v
        .split_once('/')
        .ok_or_else(|| bad(format!("allowed_ip {v:?} has no /prefix")))?;
    let ip: IpAddr = ip
        .parse()
        .map_err(|_| bad(format!("allowed_ip {v:?}: bad address")))?;
    let mask: u8 = mask
        .parse()
        .map_err(|_| bad(format!("allowed_ip {v:?}: bad prefix")))?;
    let (family, max) = match ip {
        IpAddr::V4(_) => (WireguardAddressFamily::Ipv4, 32),
        IpAddr::V6(_) => (WireguardAddressFamily::Ipv6, 128),
    };
    if mask > max {
        return Err(bad(format!("allowed_ip {v:?}: prefix longer than {max}")));
    }
    Ok(WireguardAllowedIp(vec![
        WireguardAllowedIpAttr::Family(family),
        WireguardAllowedIpAttr::IpAddr(ip),
        WireguardAllowedIpAttr::Cidr(mask),
    ]))
}

/// One peer of a `set`, collected before it is encoded (flags come from several lines).
struct PeerSet {
    key: WgKey,
    flags: WireguardPeerFlags,
    attrs: Vec<WireguardPeerAttribute>,
    allowed: Vec<WireguardAllowedIp>,
}

impl PeerSet {
    fn encode(self) -> WireguardPeer {
        let mut p = vec![
            WireguardPeerAttribute::PublicKey(self.key.0),
            WireguardPeerAttribute::Flags(self.flags),
        ];
        p.extend(self.attrs);
        if !self.allowed.is_empty() {
            p.push(WireguardPeerAttribute::AllowedIps(self.allowed));
        }
        WireguardPeer(p)
    }
}

/// Translates UAPI `set` lines (as sent to `wireguard-go`) into `WG_CMD_SET_DEVICE` messages for
/// interface `ifname`. Peers are split across messages when they do not fit one; only the first
/// message carries the device keys and `replace_peers`.
pub fn set_messages(ifname: &str, lines: &str) -> Result<Vec<WireguardMessage>, KernelWgError> {
    let mut dev: Vec<WireguardAttribute> = Vec::new();
    let mut dev_flags = WireguardDeviceFlags::empty();
    let mut peers: Vec<PeerSet> = Vec::new();
    for line in lines.lines().filter(|l| !l.is_empty()) {
        let (k, v) = line
            .split_once('=')
            .ok_or_else(|| bad(format!("line {line:?} is not key=value")))?;
        let num = |what: &str| -> Result<u64, KernelWgError> {
            v.parse()
                .map_err(|_| bad(format!("{what}={v:?} is not a number")))
        };
        match (k, peers.last_mut()) {
            ("public_key", _) => peers.push(PeerSet {
                key: parse_key(v)?,
                flags: WireguardPeerFlags::empty(),
                attrs: Vec::new(),
                allowed: Vec::new(),
            }),
            ("private_key", None) => dev.push(WireguardAttribute::PrivateKey(parse_key(v)?.0)),
            ("listen_port", None) => {
                let port = u16::try_from(num(k)?).map_err(|_| bad("listen_port > 65535"))?;
                dev.push(WireguardAttribute::ListenPort(port));
            }
            ("fwmark", None) => {
                let m = u32::try_from(num(k)?).map_err(|_| bad("fwmark > u32"))?;
                dev.push(WireguardAttribute::Fwmark(m));
            }
            ("replace_peers", None) if v == "true" => {
                dev_flags |= WireguardDeviceFlags::ReplacePeers
            }
            ("remove", Some(p)) if v == "true" => p.flags |= WireguardPeerFlags::RemoveMe,
            ("update_only", Some(p)) if v == "true" => p.flags |= WireguardPeerFlags::UpdateOnly,
            ("replace_allowed_ips", Some(p)) if v == "true" => {
                p.flags |= WireguardPeerFlags::ReplaceAllowedIps
            }
            ("preshared_key", Some(p)) => p
                .attrs
                .push(WireguardPeerAttribute::PresharedKey(parse_key(v)?.0)),
            ("endpoint", Some(p)) => {
                let a: SocketAddr = v
                    .parse()
                    .map_err(|_| bad(format!("endpoint {v:?} is not ip:port")))?;
                p.attrs.push(WireguardPeerAttribute::Endpoint(a));
            }
            ("persistent_keepalive_interval", Some(p)) => {
                let s = u16::try_from(num(k)?).map_err(|_| bad("keepalive > 65535"))?;
                p.attrs.push(WireguardPeerAttribute::PersistentKeepalive(s));
            }
            ("protocol_version", Some(p)) => {
                let n = u32::try_from(num(k)?).map_err(|_| bad("protocol_version > u32"))?;
                p.attrs.push(WireguardPeerAttribute::ProtocolVersion(n));
            }
            ("allowed_ip", Some(p)) => p.allowed.push(allowed_ip(v)?),
            _ => return Err(bad(format!("unsupported line {line:?}"))),
        }
    }
    let message = |first: bool, list: Vec<WireguardPeer>| {
        let mut attributes = vec![WireguardAttribute::IfName(ifname.into())];
        if first {
            attributes.push(WireguardAttribute::Flags(dev_flags));
            attributes.extend(dev.iter().cloned());
        }
        if !list.is_empty() {
            attributes.push(WireguardAttribute::Peers(list));
        }
        WireguardMessage {
            cmd: WireguardCmd::SetDevice,
            attributes,
        }
    };
    let mut out = Vec::new();
    let mut list: Vec<WireguardPeer> = Vec::new();
    let mut size = 0;
    for p in peers {
        let enc = p.encode();
        let len = enc.buffer_len();
        if len + 8 > MAX_PEERS_NEST {
            return Err(bad(
                "one peer does not fit a netlink attribute (too many allowed IPs)",
            ));
        }
        if size + len + 4 > MAX_PEERS_NEST {
            out.push(message(out.is_empty(), std::mem::take(&mut list)));
            size = 0;
        }
        size += len;
        list.push(enc);
    }
    out.push(message(out.is_empty(), list));
    Ok(out)
}

/// Decodes the messages of a `WG_CMD_GET_DEVICE` dump. A peer whose allowed IPs continue in the
/// next message appears again there and is merged.
pub fn parse_device(msgs: &[WireguardMessage]) -> Result<DeviceStatus, KernelWgError> {
    let mut st = DeviceStatus::default();
    for m in msgs {
        for a in &m.attributes {
            match a {
                WireguardAttribute::ListenPort(p) => st.listen_port = *p,
                WireguardAttribute::Peers(peers) => {
                    for p in peers {
                        let peer = parse_peer(p)?;
                        match st.peers.last_mut() {
                            Some(last) if last.public_key == peer.public_key => {
                                last.allowed_ips.extend(peer.allowed_ips)
                            }
                            _ => st.peers.push(peer),
                        }
                        if st.peers.len() > MAX_PEERS
                            || st
                                .peers
                                .last()
                                .is_some_and(|p| p.allowed_ips.len() > MAX_ALLOWED_IPS)
                        {
                            return Err(malformed("too many peers or allowed IPs"));
                        }
                    }
                }
                _ => {}
            }
        }
    }
    Ok(st)
}

fn parse_peer(peer: &WireguardPeer) -> Result<PeerStatus, KernelWgError> {
    let mut key = None;
    let mut p = PeerStatus {
        public_key: WgKey([0; 32]),
        endpoint: None,
        last_handshake: None,
        rx_bytes: 0,
        tx_bytes: 0,
        persistent_keepalive: 0,
        allowed_ips: Vec::new(),
    };
    for a in peer.iter() {
        match a {
            WireguardPeerAttribute::PublicKey(k) => key = Some(WgKey(*k)),
            WireguardPeerAttribute::Endpoint(e) => p.endpoint = Some(*e),
            WireguardPeerAttribute::PersistentKeepalive(s) => p.persistent_keepalive = *s,
            WireguardPeerAttribute::LastHandshake(t) if t.seconds > 0 || t.nano_seconds > 0 => {
                p.last_handshake = Some(Duration::new(
                    t.seconds.max(0) as u64,
                    t.nano_seconds.clamp(0, 999_999_999) as u32,
                ));
            }
            WireguardPeerAttribute::RxBytes(n) => p.rx_bytes = *n,
            WireguardPeerAttribute::TxBytes(n) => p.tx_bytes = *n,
            WireguardPeerAttribute::AllowedIps(ips) => {
                for ip in ips {
                    let (mut addr, mut mask) = (None, None);
                    for f in ip.iter() {
                        match f {
                            WireguardAllowedIpAttr::IpAddr(a) => addr = Some(*a),
                            WireguardAllowedIpAttr::Cidr(m) => mask = Some(*m),
                            _ => {}
                        }
                    }
                    if let (Some(a), Some(m)) = (addr, mask) {
                        p.allowed_ips.push(format!("{a}/{m}"));
                    }
                    if p.allowed_ips.len() > MAX_ALLOWED_IPS {
                        return Err(malformed("too many peers or allowed IPs"));
                    }
                }
            }
            _ => {}
        }
    }
    p.public_key = key.ok_or_else(|| malformed("peer without public key"))?;
    Ok(p)
}

/// `netlink-packet-wireguard`'s message with one guard the crate lacks: 0.5.0 indexes the first
/// byte of `WGALLOWEDIP_A_CIDR_MASK` without a length check (`allowedip.rs:188`) and panics on an
/// empty one, so such a reply is refused before it is decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WgMessage(pub WireguardMessage);

impl GenlFamily for WgMessage {
    fn family_name() -> &'static str {
        WireguardMessage::family_name()
    }
    fn command(&self) -> u8 {
        self.0.command()
    }
    fn version(&self) -> u8 {
        self.0.version()
    }
}

impl Emitable for WgMessage {
    fn buffer_len(&self) -> usize {
        self.0.buffer_len()
    }
    fn emit(&self, buf: &mut [u8]) {
        self.0.emit(buf)
    }
}

impl ParseableParametrized<[u8], GenlHeader> for WgMessage {
    fn parse_with_param(buf: &[u8], header: GenlHeader) -> Result<Self, DecodeError> {
        const DEV_PEERS: u16 = 8;
        const PEER_ALLOWEDIPS: u16 = 9;
        const AIP_CIDR_MASK: u16 = 3;
        // Device → peers → peer → allowed IPs → allowed IP → CIDR mask.
        for dev in NlasIterator::new(buf) {
            let dev = dev?;
            if dev.kind() != DEV_PEERS {
                continue;
            }
            for peer in NlasIterator::new(dev.value()) {
                for attr in NlasIterator::new(peer?.value()) {
                    let attr = attr?;
                    if attr.kind() != PEER_ALLOWEDIPS {
                        continue;
                    }
                    for ip in NlasIterator::new(attr.value()) {
                        for f in NlasIterator::new(ip?.value()) {
                            let f = f?;
                            if f.kind() == AIP_CIDR_MASK && f.value().is_empty() {
                                return Err("empty WGALLOWEDIP_A_CIDR_MASK".into());
                            }
                        }
                    }
                }
            }
        }
        Ok(Self(WireguardMessage::parse_with_param(buf, header)?))
    }
}

/// A kernel WireGuard interface configured over generic netlink.
pub struct KernelWg {
    sock: std::sync::Mutex<Socket>,
    family: u16,
    ifname: String,
}

impl KernelWg {
    /// Resolves the `wireguard` family in `host`'s namespace.
    pub fn open(host: &Host, ifname: &str) -> Result<Self, KernelWgError> {
        let (sock, family) = crate::netlink::genl_family(host, "wireguard")?;
        Ok(Self {
            sock: std::sync::Mutex::new(sock),
            family: family.ok_or(KernelWgError::NoFamily)?,
            ifname: ifname.into(),
        })
    }

    fn genl(&self, msg: WireguardMessage) -> GenlMessage<WgMessage> {
        let header = GenlHeader {
            cmd: msg.command(),
            version: msg.version(),
        };
        GenlMessage::new(header, WgMessage(msg), self.family)
    }

    /// Applies UAPI `set` lines (see [`set_messages`]).
    pub fn set(&self, lines: &str) -> Result<(), KernelWgError> {
        let sock = self.sock.locked();
        for msg in set_messages(&self.ifname, lines)? {
            let req = request(self.genl(msg), NLM_F_REQUEST | NLM_F_ACK);
            let _: Vec<GenlMessage<WgMessage>> = transact(&sock, &req, "configuring WireGuard")?;
        }
        Ok(())
    }

    /// The device state, as UAPI `get` would report it.
    pub fn get(&self) -> Result<DeviceStatus, KernelWgError> {
        let msg = WireguardMessage {
            cmd: WireguardCmd::GetDevice,
            attributes: vec![WireguardAttribute::IfName(self.ifname.clone())],
        };
        let req = request(self.genl(msg), NLM_F_REQUEST | NLM_F_DUMP);
        let sock = self.sock.locked();
        let replies: Vec<GenlMessage<WgMessage>> = transact(&sock, &req, "reading WireGuard")?;
        parse_device(&replies.into_iter().map(|m| m.payload.0).collect::<Vec<_>>())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::netlink::messages;
    use netlink_packet_core::{NetlinkPayload, NlasIterator};
    use netlink_packet_wireguard::WireguardTimeSpec;

    const KEY_A: &str = "0101010101010101010101010101010101010101010101010101010101010101";
    const KEY_B: &str = "0202020202020202020202020202020202020202020202020202020202020202";
    // `include/uapi/linux/wireguard.h`: the bytes below are checked against the kernel's numbers.
    const CMD_SET_DEVICE: u8 = 1;
    const VERSION: u8 = 1;
    const DEV_IFNAME: u16 = 2;
    const DEV_PRIVATE_KEY: u16 = 3;
    const DEV_FLAGS: u16 = 5;
    const DEV_LISTEN_PORT: u16 = 6;
    const DEV_PEERS: u16 = 8;
    const DEV_F_REPLACE_PEERS: u32 = 1;
    const PEER_PUBLIC_KEY: u16 = 1;
    const PEER_FLAGS: u16 = 3;
    const PEER_ENDPOINT: u16 = 4;
    const PEER_KEEPALIVE: u16 = 5;
    const PEER_ALLOWEDIPS: u16 = 9;
    const PEER_F_REMOVE_ME: u32 = 1;
    const PEER_F_REPLACE_ALLOWEDIPS: u32 = 2;
    const PEER_F_UPDATE_ONLY: u32 = 4;

    /// Attributes as (type with flags masked, value bytes).
    fn parse_attrs(b: &[u8]) -> Vec<(u16, Vec<u8>)> {
        NlasIterator::new(b)
            .map(|a| {
                let a = a.unwrap();
                (a.kind(), a.value().to_vec())
            })
            .collect()
    }

    fn bytes(msg: WireguardMessage) -> Vec<u8> {
        let h = GenlHeader {
            cmd: msg.command(),
            version: msg.version(),
        };
        let req = request(GenlMessage::new(h, msg, 0x22), NLM_F_REQUEST);
        let mut b = vec![0u8; req.buffer_len()];
        req.serialize(&mut b);
        b
    }

    fn attrs_of(msg: WireguardMessage) -> Vec<(u16, Vec<u8>)> {
        let b = bytes(msg);
        assert_eq!(u16::from_ne_bytes([b[4], b[5]]), 0x22, "family id");
        assert_eq!(&b[16..18], &[CMD_SET_DEVICE, VERSION]);
        parse_attrs(&b[20..])
    }

    fn decode(b: &[u8]) -> Vec<WireguardMessage> {
        messages::<GenlMessage<WgMessage>>(b)
            .unwrap()
            .into_iter()
            .map(|m| match m.payload {
                NetlinkPayload::InnerMessage(g) => g.payload.0,
                other => panic!("{other:?}"),
            })
            .collect()
    }

    #[test]
    fn sockaddrs_have_the_kernel_layout() {
        let endpoint = |a: SocketAddr| {
            let mut b = vec![0u8; WireguardPeerAttribute::Endpoint(a).buffer_len()];
            WireguardPeerAttribute::Endpoint(a).emit(&mut b);
            b[4..].to_vec()
        };
        let v4: SocketAddr = "198.51.100.2:51820".parse().unwrap();
        let b = endpoint(v4);
        assert_eq!(b.len(), 16);
        assert_eq!(&b[2..8], &[0xca, 0x6c, 198, 51, 100, 2]); // port BE, address
        let v6: SocketAddr = "[2001:db8::1]:443".parse().unwrap();
        let b = endpoint(v6);
        assert_eq!(b.len(), 28);
        assert_eq!(&b[2..4], &[0x01, 0xbb]);
        assert_eq!(&b[8..10], &[0x20, 0x01]);
        let st = parse_device(&decode(&bytes(WireguardMessage {
            cmd: WireguardCmd::GetDevice,
            attributes: vec![WireguardAttribute::Peers(vec![WireguardPeer(vec![
                WireguardPeerAttribute::PublicKey([1; 32]),
                WireguardPeerAttribute::Endpoint(v6),
            ])])],
        })))
        .unwrap();
        assert_eq!(st.peers[0].endpoint, Some(v6));
    }

    #[test]
    fn start_config_becomes_one_set_device() {
        let lines = format!(
            "private_key={KEY_A}\nlisten_port=51820\nreplace_peers=true\n\
             public_key={KEY_B}\nendpoint=198.51.100.2:51820\npersistent_keepalive_interval=25\n\
             replace_allowed_ips=true\nallowed_ip=fd00::1/128\nallowed_ip=10.0.0.0/8\n"
        );
        let mut reqs = set_messages("mcl0", &lines).unwrap();
        assert_eq!(reqs.len(), 1);
        let a = attrs_of(reqs.remove(0));
        assert_eq!(a[0], (DEV_IFNAME, b"mcl0\0".to_vec()));
        assert_eq!(
            a[1],
            (DEV_FLAGS, DEV_F_REPLACE_PEERS.to_ne_bytes().to_vec())
        );
        assert_eq!(a[2], (DEV_PRIVATE_KEY, vec![1; 32]));
        assert_eq!(a[3], (DEV_LISTEN_PORT, 51820u16.to_ne_bytes().to_vec()));
        assert_eq!(a[4].0, DEV_PEERS, "flags masked by the decoder");
        let peers = parse_attrs(&a[4].1);
        assert_eq!(peers.len(), 1);
        assert_eq!(peers[0].0, 0, "array index");
        let p = parse_attrs(&peers[0].1);
        assert_eq!(p[0], (PEER_PUBLIC_KEY, vec![2u8; 32]));
        assert_eq!(
            p[1],
            (PEER_FLAGS, PEER_F_REPLACE_ALLOWEDIPS.to_ne_bytes().to_vec())
        );
        assert_eq!(p[2].0, PEER_ENDPOINT);
        assert_eq!(p[3], (PEER_KEEPALIVE, 25u16.to_ne_bytes().to_vec()));
        assert_eq!(p[4].0, PEER_ALLOWEDIPS);
        let ips = parse_attrs(&p[4].1);
        let first = parse_attrs(&ips[0].1);
        assert_eq!(first[0].1, (libc::AF_INET6 as u16).to_ne_bytes());
        assert_eq!(first[1].1.len(), 16);
        assert_eq!(first[2].1, [128]);
        let second = parse_attrs(&ips[1].1);
        assert_eq!(second[1].1, [10, 0, 0, 0]);
        assert_eq!(second[2].1, [8]);
    }

    #[test]
    fn peer_updates_and_removals_carry_their_flags() {
        let lines = format!(
            "public_key={KEY_A}\nupdate_only=true\nendpoint=203.0.113.2:51820\npublic_key={KEY_B}\nremove=true\n"
        );
        let a = attrs_of(set_messages("mcl0", &lines).unwrap().remove(0));
        assert_eq!(
            a[1],
            (DEV_FLAGS, 0u32.to_ne_bytes().to_vec()),
            "peers are not replaced"
        );
        let peers = parse_attrs(&a[2].1);
        let flags = |i: usize| parse_attrs(&peers[i].1)[1].1.clone();
        assert_eq!(flags(0), PEER_F_UPDATE_ONLY.to_ne_bytes());
        assert_eq!(flags(1), PEER_F_REMOVE_ME.to_ne_bytes());
    }

    #[test]
    fn many_peers_are_split_across_messages() {
        let mut lines = format!("private_key={KEY_A}\nreplace_peers=true\n");
        for i in 0..2000u32 {
            lines += &format!(
                "public_key={:064x}\nallowed_ip=fd00::{:x}/128\n",
                i + 1,
                i + 1
            );
        }
        let reqs = set_messages("mcl0", &lines).unwrap();
        assert!(reqs.len() >= 3, "{}", reqs.len());
        let mut total = 0;
        for (i, r) in reqs.into_iter().enumerate() {
            let a = attrs_of(r);
            let has_key = a.iter().any(|(k, _)| *k == DEV_PRIVATE_KEY);
            assert_eq!(
                has_key,
                i == 0,
                "device keys and replace_peers only in the first"
            );
            let peers = a.iter().find(|(k, _)| *k == DEV_PEERS).unwrap();
            assert!(peers.1.len() <= MAX_PEERS_NEST);
            total += parse_attrs(&peers.1).len();
        }
        assert_eq!(total, 2000);
    }

    #[test]
    fn bad_lines_are_refused() {
        for l in [
            "endpoint=1.2.3.4:5\n",
            &format!("public_key={KEY_A}\nallowed_ip=fd00::1\n"),
            &format!("public_key={KEY_A}\nallowed_ip=10.0.0.0/33\n"),
            &format!("public_key={KEY_A}\nendpoint=nowhere\n"),
            "listen_port=70000\n",
            "private_key=xyz\n",
            "get=1\n",
        ] {
            assert!(set_messages("mcl0", l).is_err(), "{l:?}");
        }
    }

    /// A GET_DEVICE reply in the kernel's layout decodes to the UAPI status.
    #[test]
    fn get_device_reply_decodes() {
        let peer = |key: u8, ip: [u8; 16], more: bool| {
            let aip = WireguardAllowedIp(vec![
                WireguardAllowedIpAttr::Family(WireguardAddressFamily::Ipv6),
                WireguardAllowedIpAttr::IpAddr(ip.into()),
                WireguardAllowedIpAttr::Cidr(128),
            ]);
            let mut p = vec![WireguardPeerAttribute::PublicKey([key; 32])];
            if !more {
                p.push(WireguardPeerAttribute::Endpoint(
                    "198.51.100.2:51820".parse().unwrap(),
                ));
                p.push(WireguardPeerAttribute::LastHandshake(WireguardTimeSpec {
                    seconds: 1_700_000_000,
                    nano_seconds: 5,
                }));
                p.push(WireguardPeerAttribute::RxBytes(1234));
                p.push(WireguardPeerAttribute::TxBytes(99));
                p.push(WireguardPeerAttribute::PersistentKeepalive(25));
            }
            p.push(WireguardPeerAttribute::AllowedIps(vec![aip]));
            WireguardPeer(p)
        };
        let msg = |peers: Vec<WireguardPeer>| {
            bytes(WireguardMessage {
                cmd: WireguardCmd::GetDevice,
                attributes: vec![
                    WireguardAttribute::ListenPort(51820),
                    WireguardAttribute::Peers(peers),
                ],
            })
        };
        let mut ip1 = [0u8; 16];
        ip1[0] = 0xfd;
        ip1[15] = 1;
        let mut ip2 = ip1;
        ip2[15] = 2;
        // Peer 2's allowed IPs continue in the second message.
        let dump = [
            msg(vec![peer(1, ip1, false), peer(2, ip1, false)]),
            msg(vec![peer(2, ip2, true)]),
        ]
        .concat();
        let st = parse_device(&decode(&dump)).unwrap();
        assert_eq!(st.listen_port, 51820);
        assert_eq!(st.peers.len(), 2);
        let p = &st.peers[0];
        assert_eq!(p.public_key, WgKey([1; 32]));
        assert_eq!(p.endpoint, Some("198.51.100.2:51820".parse().unwrap()));
        assert_eq!(p.last_handshake, Some(Duration::new(1_700_000_000, 5)));
        assert_eq!(
            (p.rx_bytes, p.tx_bytes, p.persistent_keepalive),
            (1234, 99, 25)
        );
        assert_eq!(p.allowed_ips, ["fd00::1/128"]);
        assert_eq!(st.peers[1].allowed_ips, ["fd00::1/128", "fd00::2/128"]);
        // A peer without a key is refused.
        let bad = msg(vec![WireguardPeer(vec![WireguardPeerAttribute::RxBytes(
            1,
        )])]);
        assert!(parse_device(&decode(&bad)).is_err());
    }

    /// `netlink-packet-wireguard` 0.5.0 alone panics on this reply; [`WgMessage`] refuses it.
    #[test]
    fn empty_cidr_mask_is_refused_not_a_panic() {
        let aip = WireguardAllowedIp(vec![WireguardAllowedIpAttr::Other(
            netlink_packet_core::DefaultNla::new(3, vec![]),
        )]);
        let b = bytes(WireguardMessage {
            cmd: WireguardCmd::GetDevice,
            attributes: vec![WireguardAttribute::Peers(vec![WireguardPeer(vec![
                WireguardPeerAttribute::PublicKey([1; 32]),
                WireguardPeerAttribute::AllowedIps(vec![aip]),
            ])])],
        });
        let err = messages::<GenlMessage<WgMessage>>(&b).unwrap_err();
        assert!(err.to_string().contains("CIDR"), "{err}");
    }
}
