//! Kernel WireGuard over generic netlink (family `wireguard`, version 1; the kernel's
//! `include/uapi/linux/wireguard.h`), using the crate's own netlink codec.
//!
//! The overlay speaks one configuration language to both implementations: the UAPI `set`
//! lines it already sends to `wireguard-go` ([`set_requests`] translates them into
//! `WG_CMD_SET_DEVICE` messages, split so that no nested attribute outgrows its 16-bit length),
//! and [`parse_device`] turns `WG_CMD_GET_DEVICE` dump replies into the same
//! [`DeviceStatus`] the UAPI `get` gives. Both are pure and unit-tested; [`parse_device`] has a
//! fuzz target (`fuzz/fuzz_targets/wg_netlink.rs`).

use macula_core::sync::Locked;
use std::net::{IpAddr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::OwnedFd;
use std::time::Duration;

use super::keys::WgKey;
use super::uapi::{DeviceStatus, MAX_ALLOWED_IPS, MAX_PEERS, PeerStatus, UapiError, parse_key};
use crate::cmd::Host;
use crate::netlink::{
    Builder, NLM_F_ACK, NLM_F_DUMP, NLM_F_REQUEST, NetlinkError, parse_attrs, transact,
};

const CMD_GET_DEVICE: u8 = 0;
const CMD_SET_DEVICE: u8 = 1;
const VERSION: u8 = 1;

const DEV_IFNAME: u16 = 2;
const DEV_PRIVATE_KEY: u16 = 3;
const DEV_FLAGS: u16 = 5;
const DEV_LISTEN_PORT: u16 = 6;
const DEV_FWMARK: u16 = 7;
const DEV_PEERS: u16 = 8;
const DEV_F_REPLACE_PEERS: u32 = 1;

const PEER_PUBLIC_KEY: u16 = 1;
const PEER_PRESHARED_KEY: u16 = 2;
const PEER_FLAGS: u16 = 3;
const PEER_ENDPOINT: u16 = 4;
const PEER_KEEPALIVE: u16 = 5;
const PEER_LAST_HANDSHAKE: u16 = 6;
const PEER_RX_BYTES: u16 = 7;
const PEER_TX_BYTES: u16 = 8;
const PEER_ALLOWEDIPS: u16 = 9;
const PEER_PROTOCOL_VERSION: u16 = 10;
const PEER_F_REMOVE_ME: u32 = 1;
const PEER_F_REPLACE_ALLOWEDIPS: u32 = 2;
const PEER_F_UPDATE_ONLY: u32 = 4;

const AIP_FAMILY: u16 = 1;
const AIP_IPADDR: u16 = 2;
const AIP_CIDR_MASK: u16 = 3;

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

/// `sockaddr_in` / `sockaddr_in6` as the kernel expects them in `WGPEER_A_ENDPOINT`.
pub fn encode_sockaddr(a: &SocketAddr) -> Vec<u8> {
    match a {
        SocketAddr::V4(v4) => {
            let mut b = vec![0u8; 16];
            b[0..2].copy_from_slice(&(libc::AF_INET as u16).to_ne_bytes());
            b[2..4].copy_from_slice(&v4.port().to_be_bytes());
            b[4..8].copy_from_slice(&v4.ip().octets());
            b
        }
        SocketAddr::V6(v6) => {
            let mut b = vec![0u8; 28];
            b[0..2].copy_from_slice(&(libc::AF_INET6 as u16).to_ne_bytes());
            b[2..4].copy_from_slice(&v6.port().to_be_bytes());
            b[4..8].copy_from_slice(&v6.flowinfo().to_be_bytes());
            b[8..24].copy_from_slice(&v6.ip().octets());
            b[24..28].copy_from_slice(&v6.scope_id().to_ne_bytes());
            b
        }
    }
}

/// The reverse of [`encode_sockaddr`]; anything else is `None`.
pub fn decode_sockaddr(b: &[u8]) -> Option<SocketAddr> {
    let family = u16::from_ne_bytes(b.get(0..2)?.try_into().ok()?);
    let port = u16::from_be_bytes(b.get(2..4)?.try_into().ok()?);
    if family == libc::AF_INET as u16 && b.len() >= 8 {
        let ip: [u8; 4] = b[4..8].try_into().ok()?;
        Some(SocketAddr::V4(SocketAddrV4::new(ip.into(), port)))
    } else if family == libc::AF_INET6 as u16 && b.len() >= 28 {
        let flow = u32::from_be_bytes(b[4..8].try_into().ok()?);
        let ip: [u8; 16] = b[8..24].try_into().ok()?;
        let scope = u32::from_ne_bytes(b[24..28].try_into().ok()?);
        Some(SocketAddr::V6(SocketAddrV6::new(
            ip.into(),
            port,
            flow,
            scope,
        )))
    } else {
        None
    }
}

fn allowed_ip(v: &str) -> Result<Builder, KernelWgError> {
    let (ip, mask) = v
        .split_once('/')
        .ok_or_else(|| bad(format!("allowed_ip {v:?} has no /prefix")))?;
    let ip: IpAddr = ip
        .parse()
        .map_err(|_| bad(format!("allowed_ip {v:?}: bad address")))?;
    let mask: u8 = mask
        .parse()
        .map_err(|_| bad(format!("allowed_ip {v:?}: bad prefix")))?;
    let (family, octets, max) = match ip {
        IpAddr::V4(a) => (libc::AF_INET as u16, a.octets().to_vec(), 32),
        IpAddr::V6(a) => (libc::AF_INET6 as u16, a.octets().to_vec(), 128),
    };
    if mask > max {
        return Err(bad(format!("allowed_ip {v:?}: prefix longer than {max}")));
    }
    let mut n = Builder::attrs();
    n.attr(AIP_FAMILY, &family.to_ne_bytes());
    n.attr(AIP_IPADDR, &octets);
    n.attr(AIP_CIDR_MASK, &[mask]);
    Ok(n)
}

/// One peer of a `set`, collected before it is encoded (flags come from several lines).
#[derive(Default)]
struct PeerSet {
    key: Option<WgKey>,
    flags: u32,
    attrs: Vec<(u16, Vec<u8>)>,
    allowed: Vec<Builder>,
}

impl PeerSet {
    fn encode(self) -> Builder {
        let mut p = Builder::attrs();
        if let Some(k) = self.key {
            p.attr(PEER_PUBLIC_KEY, &k.0);
        }
        p.attr(PEER_FLAGS, &self.flags.to_ne_bytes());
        for (k, v) in &self.attrs {
            p.attr(*k, v);
        }
        if !self.allowed.is_empty() {
            let mut list = Builder::attrs();
            for (i, a) in self.allowed.iter().enumerate() {
                list.nest(i as u16, a);
            }
            p.nest(PEER_ALLOWEDIPS, &list);
        }
        p
    }
}

/// Translates UAPI `set` lines (as sent to `wireguard-go`) into `WG_CMD_SET_DEVICE` requests for
/// interface `ifname` of generic-netlink family `family`. Peers are split across messages when
/// they do not fit one; only the first message carries the device keys and `replace_peers`.
pub fn set_requests(family: u16, ifname: &str, lines: &str) -> Result<Vec<Vec<u8>>, KernelWgError> {
    let mut dev: Vec<(u16, Vec<u8>)> = Vec::new();
    let mut dev_flags = 0u32;
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
                key: Some(parse_key(v)?),
                ..PeerSet::default()
            }),
            ("private_key", None) => dev.push((DEV_PRIVATE_KEY, parse_key(v)?.0.to_vec())),
            ("listen_port", None) => {
                let port = u16::try_from(num(k)?).map_err(|_| bad("listen_port > 65535"))?;
                dev.push((DEV_LISTEN_PORT, port.to_ne_bytes().to_vec()));
            }
            ("fwmark", None) => {
                let m = u32::try_from(num(k)?).map_err(|_| bad("fwmark > u32"))?;
                dev.push((DEV_FWMARK, m.to_ne_bytes().to_vec()));
            }
            ("replace_peers", None) if v == "true" => dev_flags |= DEV_F_REPLACE_PEERS,
            ("remove", Some(p)) if v == "true" => p.flags |= PEER_F_REMOVE_ME,
            ("update_only", Some(p)) if v == "true" => p.flags |= PEER_F_UPDATE_ONLY,
            ("replace_allowed_ips", Some(p)) if v == "true" => p.flags |= PEER_F_REPLACE_ALLOWEDIPS,
            ("preshared_key", Some(p)) => {
                p.attrs.push((PEER_PRESHARED_KEY, parse_key(v)?.0.to_vec()))
            }
            ("endpoint", Some(p)) => {
                let a: SocketAddr = v
                    .parse()
                    .map_err(|_| bad(format!("endpoint {v:?} is not ip:port")))?;
                p.attrs.push((PEER_ENDPOINT, encode_sockaddr(&a)));
            }
            ("persistent_keepalive_interval", Some(p)) => {
                let s = u16::try_from(num(k)?).map_err(|_| bad("keepalive > 65535"))?;
                p.attrs.push((PEER_KEEPALIVE, s.to_ne_bytes().to_vec()));
            }
            ("protocol_version", Some(p)) => {
                let n = u32::try_from(num(k)?).map_err(|_| bad("protocol_version > u32"))?;
                p.attrs
                    .push((PEER_PROTOCOL_VERSION, n.to_ne_bytes().to_vec()));
            }
            ("allowed_ip", Some(p)) => p.allowed.push(allowed_ip(v)?),
            _ => return Err(bad(format!("unsupported line {line:?}"))),
        }
    }
    let header = |first: bool| {
        let mut b = Builder::new(
            family,
            NLM_F_REQUEST | NLM_F_ACK,
            &[CMD_SET_DEVICE, VERSION, 0, 0],
        );
        let mut name = ifname.as_bytes().to_vec();
        name.push(0);
        b.attr(DEV_IFNAME, &name);
        if first {
            b.attr(DEV_FLAGS, &dev_flags.to_ne_bytes());
            for (k, v) in &dev {
                b.attr(*k, v);
            }
        }
        b
    };
    let mut out = Vec::new();
    let mut msg = header(true);
    let mut list = Builder::attrs();
    let mut index = 0u16;
    for p in peers {
        let enc = p.encode();
        if enc.len() + 8 > MAX_PEERS_NEST {
            return Err(bad(
                "one peer does not fit a netlink attribute (too many allowed IPs)",
            ));
        }
        if list.len() + enc.len() + 4 > MAX_PEERS_NEST {
            msg.nest(DEV_PEERS, &list);
            out.push(msg.finish());
            msg = header(false);
            list = Builder::attrs();
            index = 0;
        }
        list.nest(index, &enc);
        index += 1;
    }
    if index > 0 {
        msg.nest(DEV_PEERS, &list);
    }
    out.push(msg.finish());
    Ok(out)
}

fn u64_of(d: &[u8]) -> Result<u64, KernelWgError> {
    Ok(u64::from_ne_bytes(
        d.try_into().map_err(|_| bad("u64 attribute size"))?,
    ))
}

/// Decodes the payloads (genl header included) of a `WG_CMD_GET_DEVICE` dump. A peer whose
/// allowed IPs continue in the next message appears again there and is merged.
pub fn parse_device(payloads: &[Vec<u8>]) -> Result<DeviceStatus, KernelWgError> {
    let mut st = DeviceStatus::default();
    let malformed = |m: &'static str| KernelWgError::Netlink(NetlinkError::Malformed(m));
    for payload in payloads {
        let attrs = parse_attrs(
            payload
                .get(4..)
                .ok_or_else(|| malformed("short genl header"))?,
        )?;
        for a in attrs {
            match a.kind {
                DEV_LISTEN_PORT => {
                    st.listen_port = u16::from_ne_bytes(
                        a.data
                            .try_into()
                            .map_err(|_| malformed("listen port size"))?,
                    )
                }
                DEV_PEERS => {
                    for p in parse_attrs(a.data)? {
                        let peer = parse_peer(p.data)?;
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

fn parse_peer(data: &[u8]) -> Result<PeerStatus, KernelWgError> {
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
    let malformed = |m: &'static str| KernelWgError::Netlink(NetlinkError::Malformed(m));
    for a in parse_attrs(data)? {
        match a.kind {
            PEER_PUBLIC_KEY => {
                key = Some(WgKey(
                    a.data
                        .try_into()
                        .map_err(|_| malformed("bad WireGuard attribute"))?,
                ))
            }
            PEER_ENDPOINT => p.endpoint = decode_sockaddr(a.data),
            PEER_KEEPALIVE => {
                p.persistent_keepalive = u16::from_ne_bytes(
                    a.data
                        .try_into()
                        .map_err(|_| malformed("bad WireGuard attribute"))?,
                )
            }
            PEER_LAST_HANDSHAKE => {
                let sec = i64::from_ne_bytes(
                    a.data
                        .get(0..8)
                        .ok_or_else(|| malformed("bad WireGuard attribute"))?
                        .try_into()
                        .expect("8"),
                );
                let nsec = i64::from_ne_bytes(
                    a.data
                        .get(8..16)
                        .ok_or_else(|| malformed("bad WireGuard attribute"))?
                        .try_into()
                        .expect("8"),
                );
                if sec > 0 || nsec > 0 {
                    p.last_handshake = Some(Duration::new(
                        sec.max(0) as u64,
                        nsec.clamp(0, 999_999_999) as u32,
                    ));
                }
            }
            PEER_RX_BYTES => p.rx_bytes = u64_of(a.data)?,
            PEER_TX_BYTES => p.tx_bytes = u64_of(a.data)?,
            PEER_ALLOWEDIPS => {
                for ip in parse_attrs(a.data)? {
                    let (mut addr, mut mask) = (None, None);
                    for f in parse_attrs(ip.data)? {
                        match (f.kind, f.data.len()) {
                            (AIP_IPADDR, 4) => {
                                addr = Some(IpAddr::from(<[u8; 4]>::try_from(f.data).expect("4")))
                            }
                            (AIP_IPADDR, 16) => {
                                addr = Some(IpAddr::from(<[u8; 16]>::try_from(f.data).expect("16")))
                            }
                            (AIP_CIDR_MASK, 1) => mask = Some(f.data[0]),
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

/// A kernel WireGuard interface configured over generic netlink.
pub struct KernelWg {
    fd: std::sync::Mutex<OwnedFd>,
    family: u16,
    ifname: String,
}

impl KernelWg {
    /// Resolves the `wireguard` family in `host`'s namespace.
    pub fn open(host: &Host, ifname: &str) -> Result<Self, KernelWgError> {
        let (fd, family) = crate::netlink::genl_family(host, "wireguard")?;
        Ok(Self {
            fd: std::sync::Mutex::new(fd),
            family: family.ok_or(KernelWgError::NoFamily)?,
            ifname: ifname.into(),
        })
    }

    /// Applies UAPI `set` lines (see [`set_requests`]).
    pub fn set(&self, lines: &str) -> Result<(), KernelWgError> {
        let fd = self.fd.locked();
        for req in set_requests(self.family, &self.ifname, lines)? {
            transact(&fd, &req, "configuring WireGuard")?;
        }
        Ok(())
    }

    /// The device state, as UAPI `get` would report it.
    pub fn get(&self) -> Result<DeviceStatus, KernelWgError> {
        let mut b = Builder::new(
            self.family,
            NLM_F_REQUEST | NLM_F_DUMP,
            &[CMD_GET_DEVICE, VERSION, 0, 0],
        );
        let mut name = self.ifname.as_bytes().to_vec();
        name.push(0);
        b.attr(DEV_IFNAME, &name);
        let fd = self.fd.locked();
        parse_device(&transact(&fd, &b.finish(), "reading WireGuard")?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::netlink::parse_messages;

    const KEY_A: &str = "0101010101010101010101010101010101010101010101010101010101010101";
    const KEY_B: &str = "0202020202020202020202020202020202020202020202020202020202020202";

    fn attrs_of(msg: &[u8]) -> Vec<(u16, Vec<u8>)> {
        let m = parse_messages(msg).unwrap();
        assert_eq!(m.len(), 1);
        assert_eq!(&m[0].payload[..2], &[CMD_SET_DEVICE, VERSION]);
        parse_attrs(&m[0].payload[4..])
            .unwrap()
            .into_iter()
            .map(|a| (a.kind, a.data.to_vec()))
            .collect()
    }

    #[test]
    fn sockaddrs_have_the_kernel_layout() {
        let v4: SocketAddr = "198.51.100.2:51820".parse().unwrap();
        let b = encode_sockaddr(&v4);
        assert_eq!(b.len(), 16);
        assert_eq!(&b[2..8], &[0xca, 0x6c, 198, 51, 100, 2]); // port BE, address
        assert_eq!(decode_sockaddr(&b), Some(v4));
        let v6: SocketAddr = "[2001:db8::1]:443".parse().unwrap();
        let b = encode_sockaddr(&v6);
        assert_eq!(b.len(), 28);
        assert_eq!(&b[2..4], &[0x01, 0xbb]);
        assert_eq!(&b[8..10], &[0x20, 0x01]);
        assert_eq!(decode_sockaddr(&b), Some(v6));
        assert_eq!(decode_sockaddr(&[0; 3]), None);
        assert_eq!(decode_sockaddr(&[0xff; 28]), None);
    }

    #[test]
    fn start_config_becomes_one_set_device() {
        let lines = format!(
            "private_key={KEY_A}\nlisten_port=51820\nreplace_peers=true\n\
             public_key={KEY_B}\nendpoint=198.51.100.2:51820\npersistent_keepalive_interval=25\n\
             replace_allowed_ips=true\nallowed_ip=fd00::1/128\nallowed_ip=10.0.0.0/8\n"
        );
        let reqs = set_requests(0x22, "mcl0", &lines).unwrap();
        assert_eq!(reqs.len(), 1);
        let a = attrs_of(&reqs[0]);
        assert_eq!(a[0], (DEV_IFNAME, b"mcl0\0".to_vec()));
        assert_eq!(
            a[1],
            (DEV_FLAGS, DEV_F_REPLACE_PEERS.to_ne_bytes().to_vec())
        );
        assert_eq!(a[2], (DEV_PRIVATE_KEY, vec![1; 32]));
        assert_eq!(a[3], (DEV_LISTEN_PORT, 51820u16.to_ne_bytes().to_vec()));
        assert_eq!(a[4].0, DEV_PEERS, "flags masked by the decoder");
        let peers = parse_attrs(&a[4].1).unwrap();
        assert_eq!(peers.len(), 1);
        assert_eq!(peers[0].kind, 0, "array index");
        let p: Vec<_> = parse_attrs(peers[0].data).unwrap();
        assert_eq!((p[0].kind, p[0].data), (PEER_PUBLIC_KEY, &[2u8; 32][..]));
        assert_eq!(
            (p[1].kind, p[1].data),
            (PEER_FLAGS, &PEER_F_REPLACE_ALLOWEDIPS.to_ne_bytes()[..])
        );
        assert_eq!(p[2].kind, PEER_ENDPOINT);
        assert_eq!(
            p[3],
            crate::netlink::Attr {
                kind: PEER_KEEPALIVE,
                data: &25u16.to_ne_bytes()
            }
        );
        assert_eq!(p[4].kind, PEER_ALLOWEDIPS);
        let ips = parse_attrs(p[4].data).unwrap();
        let first = parse_attrs(ips[0].data).unwrap();
        assert_eq!(first[0].data, &(libc::AF_INET6 as u16).to_ne_bytes());
        assert_eq!(first[1].data.len(), 16);
        assert_eq!(first[2].data, &[128]);
        let second = parse_attrs(ips[1].data).unwrap();
        assert_eq!(second[1].data, &[10, 0, 0, 0]);
        assert_eq!(second[2].data, &[8]);
    }

    #[test]
    fn peer_updates_and_removals_carry_their_flags() {
        let lines = format!(
            "public_key={KEY_A}\nupdate_only=true\nendpoint=203.0.113.2:51820\npublic_key={KEY_B}\nremove=true\n"
        );
        let a = attrs_of(&set_requests(7, "mcl0", &lines).unwrap()[0]);
        assert_eq!(
            a[1],
            (DEV_FLAGS, 0u32.to_ne_bytes().to_vec()),
            "peers are not replaced"
        );
        let peers = parse_attrs(&a[2].1).unwrap();
        let flags = |i: usize| parse_attrs(peers[i].data).unwrap()[1].data.to_vec();
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
        let reqs = set_requests(7, "mcl0", &lines).unwrap();
        assert!(reqs.len() >= 3, "{}", reqs.len());
        let mut total = 0;
        for (i, r) in reqs.iter().enumerate() {
            let a = attrs_of(r);
            let has_key = a.iter().any(|(k, _)| *k == DEV_PRIVATE_KEY);
            assert_eq!(
                has_key,
                i == 0,
                "device keys and replace_peers only in the first"
            );
            let peers = a.iter().find(|(k, _)| *k == DEV_PEERS).unwrap();
            assert!(peers.1.len() <= MAX_PEERS_NEST);
            total += parse_attrs(&peers.1).unwrap().len();
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
            assert!(set_requests(7, "mcl0", l).is_err(), "{l:?}");
        }
    }

    /// A GET_DEVICE reply built from the kernel's layout decodes to the UAPI status.
    #[test]
    fn get_device_reply_decodes() {
        let peer = |key: u8, ip: [u8; 16], more: bool| {
            let mut aip = Builder::attrs();
            aip.attr(AIP_FAMILY, &(libc::AF_INET6 as u16).to_ne_bytes());
            aip.attr(AIP_IPADDR, &ip);
            aip.attr(AIP_CIDR_MASK, &[128]);
            let mut list = Builder::attrs();
            list.nest(0, &aip);
            let mut p = Builder::attrs();
            p.attr(PEER_PUBLIC_KEY, &[key; 32]);
            if !more {
                p.attr(
                    PEER_ENDPOINT,
                    &encode_sockaddr(&"198.51.100.2:51820".parse().unwrap()),
                );
                let mut ts = 1_700_000_000i64.to_ne_bytes().to_vec();
                ts.extend_from_slice(&5i64.to_ne_bytes());
                p.attr(PEER_LAST_HANDSHAKE, &ts);
                p.attr(PEER_RX_BYTES, &1234u64.to_ne_bytes());
                p.attr(PEER_TX_BYTES, &99u64.to_ne_bytes());
                p.attr(PEER_KEEPALIVE, &25u16.to_ne_bytes());
            }
            p.nest(PEER_ALLOWEDIPS, &list);
            p
        };
        let msg = |peers: Vec<Builder>| {
            let mut b = Builder::new(7, 0, &[CMD_GET_DEVICE, VERSION, 0, 0]);
            b.attr(DEV_LISTEN_PORT, &51820u16.to_ne_bytes());
            let mut list = Builder::attrs();
            for (i, p) in peers.iter().enumerate() {
                list.nest(i as u16, p);
            }
            b.nest(DEV_PEERS, &list);
            parse_messages(&b.finish()).unwrap()[0].payload.to_vec()
        };
        let mut ip1 = [0u8; 16];
        ip1[0] = 0xfd;
        ip1[15] = 1;
        let mut ip2 = ip1;
        ip2[15] = 2;
        // Peer 2's allowed IPs continue in the second message.
        let st = parse_device(&[
            msg(vec![peer(1, ip1, false), peer(2, ip1, false)]),
            msg(vec![peer(2, ip2, true)]),
        ])
        .unwrap();
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
        let mut b = Builder::new(7, 0, &[CMD_GET_DEVICE, VERSION, 0, 0]);
        let mut list = Builder::attrs();
        let mut p = Builder::attrs();
        p.attr(PEER_RX_BYTES, &1u64.to_ne_bytes());
        list.nest(0, &p);
        b.nest(DEV_PEERS, &list);
        let bad = parse_messages(&b.finish()).unwrap()[0].payload.to_vec();
        assert!(parse_device(&[bad]).is_err());
    }
}
