//! MPTCP in-kernel path-manager endpoints over generic netlink (`mptcp_pm` family), like
//! `ip mptcp endpoint|limits` — a small in-house client on a raw netlink socket (blocking; each
//! call is short). [`parse_messages`]/[`parse_attrs`] decode kernel replies; both are bounded
//! and fuzzed (`fuzz/fuzz_targets/netlink_reply.rs`).

use std::net::IpAddr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use crate::cmd::Host;

const NETLINK_GENERIC: i32 = 16;
const GENL_ID_CTRL: u16 = 0x10;
const CTRL_CMD_GETFAMILY: u8 = 3;
const CTRL_ATTR_FAMILY_ID: u16 = 1;
const CTRL_ATTR_FAMILY_NAME: u16 = 2;
const NLM_F_REQUEST: u16 = 1;
const NLM_F_ACK: u16 = 4;
const NLM_F_DUMP: u16 = 0x300;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const NLA_F_NESTED: u16 = 0x8000;
const NLA_TYPE_MASK: u16 = 0x3fff;

const CMD_ADD_ADDR: u8 = 1;
const CMD_DEL_ADDR: u8 = 2;
const CMD_GET_ADDR: u8 = 3;
const CMD_SET_LIMITS: u8 = 5;
const CMD_GET_LIMITS: u8 = 6;
const ATTR_ADDR: u16 = 1;
const ATTR_RCV_ADD_ADDRS: u16 = 2;
const ATTR_SUBFLOWS: u16 = 3;
const ADDR_FAMILY: u16 = 1;
const ADDR_ID: u16 = 2;
const ADDR_ADDR4: u16 = 3;
const ADDR_ADDR6: u16 = 4;
const ADDR_FLAGS: u16 = 6;
const ADDR_IF_IDX: u16 = 7;

/// Endpoint flags (`ip mptcp endpoint … signal|subflow|backup|fullmesh`).
pub const FLAG_SIGNAL: u32 = 1;
pub const FLAG_SUBFLOW: u32 = 2;
pub const FLAG_BACKUP: u32 = 4;

/// Largest reply buffer we accept from the kernel.
const MAX_REPLY: usize = 1 << 20;

/// One in-kernel PM endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// 1–255.
    pub id: u8,
    pub addr: IpAddr,
    /// Interface index (0: any).
    pub ifindex: i32,
    pub flags: u32,
}

/// MPTCP netlink errors.
#[derive(Debug, thiserror::Error)]
pub enum MptcpError {
    #[error("netlink: {0}")]
    Io(#[from] std::io::Error),
    #[error(
        "the kernel has no MPTCP path manager (genetlink family mptcp_pm); enable CONFIG_MPTCP and net.mptcp.enabled=1"
    )]
    NoFamily,
    #[error("the kernel refused {what}: {source}")]
    Kernel {
        what: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("malformed netlink reply: {0}")]
    Malformed(&'static str),
}

/// A netlink attribute: type (flags masked off) and payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attr<'a> {
    pub kind: u16,
    pub data: &'a [u8],
}

/// A netlink message: type, flags and payload after the 16-byte header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Msg<'a> {
    pub kind: u16,
    pub flags: u16,
    pub payload: &'a [u8],
}

fn align4(n: usize) -> usize {
    (n + 3) & !3
}

/// Splits a receive buffer into netlink messages.
pub fn parse_messages(buf: &[u8]) -> Result<Vec<Msg<'_>>, MptcpError> {
    if buf.len() > MAX_REPLY {
        return Err(MptcpError::Malformed("reply too large"));
    }
    let mut out = Vec::new();
    let mut rest = buf;
    while rest.len() >= 16 {
        let len = u32::from_ne_bytes(rest[0..4].try_into().expect("4")) as usize;
        if len < 16 || len > rest.len() {
            return Err(MptcpError::Malformed("bad message length"));
        }
        out.push(Msg {
            kind: u16::from_ne_bytes(rest[4..6].try_into().expect("2")),
            flags: u16::from_ne_bytes(rest[6..8].try_into().expect("2")),
            payload: &rest[16..len],
        });
        rest = &rest[align4(len).min(rest.len())..];
    }
    if !rest.is_empty() {
        return Err(MptcpError::Malformed("trailing bytes"));
    }
    Ok(out)
}

/// Splits an attribute area into attributes.
pub fn parse_attrs(mut buf: &[u8]) -> Result<Vec<Attr<'_>>, MptcpError> {
    let mut out = Vec::new();
    while buf.len() >= 4 {
        let len = u16::from_ne_bytes(buf[0..2].try_into().expect("2")) as usize;
        if len < 4 || len > buf.len() {
            return Err(MptcpError::Malformed("bad attribute length"));
        }
        out.push(Attr {
            kind: u16::from_ne_bytes(buf[2..4].try_into().expect("2")) & NLA_TYPE_MASK,
            data: &buf[4..len],
        });
        buf = &buf[align4(len).min(buf.len())..];
    }
    Ok(out)
}

fn u32_of(a: &Attr<'_>) -> Result<u32, MptcpError> {
    Ok(u32::from_ne_bytes(a.data.try_into().map_err(|_| {
        MptcpError::Malformed("u32 attribute size")
    })?))
}

/// Decodes one `MPTCP_PM_ATTR_ADDR` nest.
pub fn parse_endpoint(nest: &[u8]) -> Result<Endpoint, MptcpError> {
    let mut ep = Endpoint {
        id: 0,
        addr: IpAddr::from([0u8; 4]),
        ifindex: 0,
        flags: 0,
    };
    for a in parse_attrs(nest)? {
        match a.kind {
            ADDR_ID => ep.id = *a.data.first().ok_or(MptcpError::Malformed("empty id"))?,
            ADDR_ADDR4 => {
                let b: [u8; 4] = a
                    .data
                    .try_into()
                    .map_err(|_| MptcpError::Malformed("addr4 size"))?;
                ep.addr = IpAddr::from(b);
            }
            ADDR_ADDR6 => {
                let b: [u8; 16] = a
                    .data
                    .try_into()
                    .map_err(|_| MptcpError::Malformed("addr6 size"))?;
                ep.addr = IpAddr::from(b);
            }
            ADDR_FLAGS => ep.flags = u32_of(&a)?,
            ADDR_IF_IDX => ep.ifindex = u32_of(&a)? as i32,
            _ => {}
        }
    }
    Ok(ep)
}

struct Builder(Vec<u8>);

impl Builder {
    fn new(kind: u16, flags: u16, cmd: u8, version: u8) -> Self {
        let mut b = vec![0u8; 16];
        b[4..6].copy_from_slice(&kind.to_ne_bytes());
        b[6..8].copy_from_slice(&flags.to_ne_bytes());
        b[8..12].copy_from_slice(&1u32.to_ne_bytes());
        b.extend_from_slice(&[cmd, version, 0, 0]);
        Self(b)
    }
    fn attr(&mut self, kind: u16, data: &[u8]) {
        let len = 4 + data.len();
        self.0.extend_from_slice(&(len as u16).to_ne_bytes());
        self.0.extend_from_slice(&kind.to_ne_bytes());
        self.0.extend_from_slice(data);
        self.0.resize(align4(self.0.len()), 0);
    }
    fn nest(&mut self, kind: u16, inner: &Builder) {
        // `inner` was built as a bare attribute area (no headers).
        self.attr(kind | NLA_F_NESTED, &inner.0);
    }
    fn finish(mut self) -> Vec<u8> {
        let len = self.0.len() as u32;
        self.0[0..4].copy_from_slice(&len.to_ne_bytes());
        self.0
    }
}

fn endpoint_nest(ep: &Endpoint, with_addr: bool) -> Builder {
    let mut n = Builder(Vec::new());
    if with_addr {
        match ep.addr {
            IpAddr::V4(a) => {
                n.attr(ADDR_FAMILY, &(libc::AF_INET as u16).to_ne_bytes());
                n.attr(ADDR_ADDR4, &a.octets());
            }
            IpAddr::V6(a) => {
                n.attr(ADDR_FAMILY, &(libc::AF_INET6 as u16).to_ne_bytes());
                n.attr(ADDR_ADDR6, &a.octets());
            }
        }
        n.attr(ADDR_FLAGS, &ep.flags.to_ne_bytes());
        if ep.ifindex != 0 {
            n.attr(ADDR_IF_IDX, &ep.ifindex.to_ne_bytes());
        }
    }
    n.attr(ADDR_ID, &[ep.id]);
    n
}

/// A generic-netlink socket bound to the `mptcp_pm` family.
pub struct Mptcp {
    fd: OwnedFd,
    family: u16,
}

impl Mptcp {
    /// Opens the socket in `host`'s network namespace and resolves the family.
    pub fn open(host: &Host) -> Result<Self, MptcpError> {
        let fd = host.in_netns(|| {
            // SAFETY: socket(2) with constant arguments; the fd is owned right away.
            let fd = unsafe {
                libc::socket(
                    libc::AF_NETLINK,
                    libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                    NETLINK_GENERIC,
                )
            };
            if fd < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(unsafe { OwnedFd::from_raw_fd(fd) })
        })?;
        let mut s = Self { fd, family: 0 };
        let mut b = Builder::new(GENL_ID_CTRL, NLM_F_REQUEST, CTRL_CMD_GETFAMILY, 1);
        b.attr(CTRL_ATTR_FAMILY_NAME, b"mptcp_pm\0");
        let replies = s
            .transact(&b.finish(), "family lookup")
            .map_err(|e| match e {
                MptcpError::Kernel { .. } => MptcpError::NoFamily,
                other => other,
            })?;
        for payload in replies {
            for a in parse_attrs(payload.get(4..).unwrap_or_default())? {
                if a.kind == CTRL_ATTR_FAMILY_ID && a.data.len() >= 2 {
                    s.family = u16::from_ne_bytes([a.data[0], a.data[1]]);
                }
            }
        }
        if s.family == 0 {
            return Err(MptcpError::NoFamily);
        }
        Ok(s)
    }

    /// Sends one request and collects the payloads of the data replies until the ack / DONE.
    fn transact(&mut self, req: &[u8], what: &'static str) -> Result<Vec<Vec<u8>>, MptcpError> {
        let fd = self.fd.as_raw_fd();
        // SAFETY: send/recv on our own socket with valid buffers.
        let n = unsafe { libc::send(fd, req.as_ptr().cast(), req.len(), 0) };
        if n < 0 {
            return Err(std::io::Error::last_os_error().into());
        }
        let dump = u16::from_ne_bytes([req[6], req[7]]) & NLM_F_DUMP == NLM_F_DUMP;
        let mut out = Vec::new();
        let mut buf = vec![0u8; 65536];
        loop {
            let n = unsafe { libc::recv(fd, buf.as_mut_ptr().cast(), buf.len(), 0) };
            if n < 0 {
                return Err(std::io::Error::last_os_error().into());
            }
            let mut finished = false;
            for m in parse_messages(&buf[..n as usize])? {
                match m.kind {
                    NLMSG_ERROR => {
                        let code = i32::from_ne_bytes(
                            m.payload
                                .get(0..4)
                                .ok_or(MptcpError::Malformed("short error"))?
                                .try_into()
                                .expect("4"),
                        );
                        if code != 0 {
                            return Err(MptcpError::Kernel {
                                what,
                                source: std::io::Error::from_raw_os_error(-code),
                            });
                        }
                        finished = true;
                    }
                    NLMSG_DONE => finished = true,
                    _ => {
                        out.push(m.payload.to_vec());
                        if !dump {
                            finished = true;
                        }
                    }
                }
            }
            if finished {
                return Ok(out);
            }
        }
    }

    fn request(&mut self, flags: u16, cmd: u8) -> Builder {
        Builder::new(self.family, NLM_F_REQUEST | flags, cmd, 1)
    }

    /// `ip mptcp endpoint add`.
    pub fn add(&mut self, ep: &Endpoint) -> Result<(), MptcpError> {
        let mut b = self.request(NLM_F_ACK, CMD_ADD_ADDR);
        b.nest(ATTR_ADDR, &endpoint_nest(ep, true));
        self.transact(&b.finish(), "adding an MPTCP endpoint")
            .map(|_| ())
    }

    /// `ip mptcp endpoint delete id N`.
    pub fn delete(&mut self, id: u8) -> Result<(), MptcpError> {
        let ep = Endpoint {
            id,
            addr: IpAddr::from([0u8; 4]),
            ifindex: 0,
            flags: 0,
        };
        let mut b = self.request(NLM_F_ACK, CMD_DEL_ADDR);
        b.nest(ATTR_ADDR, &endpoint_nest(&ep, false));
        self.transact(&b.finish(), "deleting an MPTCP endpoint")
            .map(|_| ())
    }

    /// `ip mptcp endpoint show`.
    pub fn list(&mut self) -> Result<Vec<Endpoint>, MptcpError> {
        let b = self.request(NLM_F_DUMP, CMD_GET_ADDR);
        let mut out = Vec::new();
        for payload in self.transact(&b.finish(), "listing MPTCP endpoints")? {
            for a in parse_attrs(payload.get(4..).unwrap_or_default())? {
                if a.kind == ATTR_ADDR {
                    out.push(parse_endpoint(a.data)?);
                }
            }
        }
        Ok(out)
    }

    /// `ip mptcp limits set subflows N add_addr_accepted M`.
    pub fn set_limits(&mut self, subflows: u32, add_addr_accepted: u32) -> Result<(), MptcpError> {
        let mut b = self.request(NLM_F_ACK, CMD_SET_LIMITS);
        b.attr(ATTR_RCV_ADD_ADDRS, &add_addr_accepted.to_ne_bytes());
        b.attr(ATTR_SUBFLOWS, &subflows.to_ne_bytes());
        self.transact(&b.finish(), "setting MPTCP limits")
            .map(|_| ())
    }

    /// `(subflows, add_addr_accepted)`.
    pub fn limits(&mut self) -> Result<(u32, u32), MptcpError> {
        let b = self.request(0, CMD_GET_LIMITS);
        let (mut sub, mut acc) = (0, 0);
        for payload in self.transact(&b.finish(), "reading MPTCP limits")? {
            for a in parse_attrs(payload.get(4..).unwrap_or_default())? {
                match a.kind {
                    ATTR_SUBFLOWS => sub = u32_of(&a)?,
                    ATTR_RCV_ADD_ADDRS => acc = u32_of(&a)?,
                    _ => {}
                }
            }
        }
        Ok((sub, acc))
    }

    /// Makes the endpoint list equal to `want` (by id): deletes extra or changed ones, adds
    /// missing ones. Endpoints of other managers with ids not in `owned` are left alone.
    pub fn sync(&mut self, owned: &[u8], want: &[Endpoint]) -> Result<(), MptcpError> {
        let have = self.list()?;
        for h in &have {
            if owned.contains(&h.id) && !want.contains(h) {
                self.delete(h.id)?;
            }
        }
        let have = self.list()?;
        for w in want {
            if !have.contains(w) {
                self.add(w)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_and_parses_an_endpoint_nest() {
        let ep = Endpoint {
            id: 2,
            addr: "203.0.113.1".parse().unwrap(),
            ifindex: 7,
            flags: FLAG_SUBFLOW | FLAG_BACKUP,
        };
        let mut b = Builder::new(30, NLM_F_REQUEST, CMD_ADD_ADDR, 1);
        b.nest(ATTR_ADDR, &endpoint_nest(&ep, true));
        let msg = b.finish();
        let msgs = parse_messages(&msg).unwrap();
        assert_eq!(msgs.len(), 1);
        assert_eq!(msgs[0].kind, 30);
        let attrs = parse_attrs(&msgs[0].payload[4..]).unwrap();
        assert_eq!(attrs[0].kind, ATTR_ADDR);
        assert_eq!(parse_endpoint(attrs[0].data).unwrap(), ep);
    }

    #[test]
    fn rejects_bad_lengths() {
        assert!(parse_messages(&[0xff; 16]).is_err());
        assert!(parse_messages(&[1, 2, 3]).is_err());
        assert!(parse_attrs(&[2, 0, 1, 0]).is_err());
        assert!(parse_endpoint(&[5, 0, 3, 0, 1, 0, 0, 0]).is_err());
    }
}
