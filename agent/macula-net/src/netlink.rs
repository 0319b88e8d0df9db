//! Minimal netlink plumbing shared by the MPTCP client (generic netlink) and link discovery/events
//! (rtnetlink): message building, bounded decoding (fuzzed: `fuzz/fuzz_targets/netlink_reply.rs`)
//! and a blocking request/reply socket opened in a chosen network namespace.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use crate::cmd::Host;

pub(crate) const NLM_F_REQUEST: u16 = 1;
pub(crate) const NLM_F_ACK: u16 = 4;
pub(crate) const NLM_F_DUMP: u16 = 0x300;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
pub(crate) const NLA_F_NESTED: u16 = 0x8000;
const NLA_TYPE_MASK: u16 = 0x3fff;
/// Largest buffer we decode.
pub const MAX_REPLY: usize = 1 << 20;

/// Netlink failures.
#[derive(Debug, thiserror::Error)]
pub enum NetlinkError {
    #[error("netlink: {0}")]
    Io(#[from] std::io::Error),
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

pub(crate) fn align4(n: usize) -> usize {
    (n + 3) & !3
}

/// Splits a receive buffer into netlink messages.
pub fn parse_messages(buf: &[u8]) -> Result<Vec<Msg<'_>>, NetlinkError> {
    if buf.len() > MAX_REPLY {
        return Err(NetlinkError::Malformed("reply too large"));
    }
    let mut out = Vec::new();
    let mut rest = buf;
    while rest.len() >= 16 {
        let len = u32::from_ne_bytes(rest[0..4].try_into().expect("4")) as usize;
        if len < 16 || len > rest.len() {
            return Err(NetlinkError::Malformed("bad message length"));
        }
        out.push(Msg {
            kind: u16::from_ne_bytes(rest[4..6].try_into().expect("2")),
            flags: u16::from_ne_bytes(rest[6..8].try_into().expect("2")),
            payload: &rest[16..len],
        });
        rest = &rest[align4(len).min(rest.len())..];
    }
    if !rest.is_empty() {
        return Err(NetlinkError::Malformed("trailing bytes"));
    }
    Ok(out)
}

/// Splits an attribute area into attributes.
pub fn parse_attrs(mut buf: &[u8]) -> Result<Vec<Attr<'_>>, NetlinkError> {
    let mut out = Vec::new();
    while buf.len() >= 4 {
        let len = u16::from_ne_bytes(buf[0..2].try_into().expect("2")) as usize;
        if len < 4 || len > buf.len() {
            return Err(NetlinkError::Malformed("bad attribute length"));
        }
        out.push(Attr {
            kind: u16::from_ne_bytes(buf[2..4].try_into().expect("2")) & NLA_TYPE_MASK,
            data: &buf[4..len],
        });
        buf = &buf[align4(len).min(buf.len())..];
    }
    Ok(out)
}

pub(crate) fn u32_of(a: &Attr<'_>) -> Result<u32, NetlinkError> {
    Ok(u32::from_ne_bytes(a.data.try_into().map_err(|_| {
        NetlinkError::Malformed("u32 attribute size")
    })?))
}

/// Builds one request: netlink header, a family header, attributes.
pub(crate) struct Builder(Vec<u8>);

impl Builder {
    pub(crate) fn new(kind: u16, flags: u16, family_header: &[u8]) -> Self {
        let mut b = vec![0u8; 16];
        b[4..6].copy_from_slice(&kind.to_ne_bytes());
        b[6..8].copy_from_slice(&flags.to_ne_bytes());
        b[8..12].copy_from_slice(&1u32.to_ne_bytes());
        b.extend_from_slice(family_header);
        b.resize(align4(b.len()), 0);
        Self(b)
    }

    /// A bare attribute area (for nests).
    pub(crate) fn attrs() -> Self {
        Self(Vec::new())
    }

    pub(crate) fn attr(&mut self, kind: u16, data: &[u8]) {
        let len = 4 + data.len();
        self.0.extend_from_slice(&(len as u16).to_ne_bytes());
        self.0.extend_from_slice(&kind.to_ne_bytes());
        self.0.extend_from_slice(data);
        self.0.resize(align4(self.0.len()), 0);
    }

    pub(crate) fn nest(&mut self, kind: u16, inner: &Builder) {
        self.attr(kind | NLA_F_NESTED, &inner.0);
    }

    /// Bytes so far.
    pub(crate) fn len(&self) -> usize {
        self.0.len()
    }

    /// The bytes of a bare attribute area.
    #[cfg(test)]
    pub(crate) fn finish_attrs(self) -> Vec<u8> {
        self.0
    }

    pub(crate) fn finish(mut self) -> Vec<u8> {
        let len = self.0.len() as u32;
        self.0[0..4].copy_from_slice(&len.to_ne_bytes());
        self.0
    }
}

/// Opens a netlink socket of `protocol` in `host`'s namespace, subscribed to `groups`.
pub(crate) fn open(host: &Host, protocol: i32, groups: u32) -> Result<OwnedFd, NetlinkError> {
    Ok(host.in_netns(|| {
        // SAFETY: socket(2)/bind(2) with valid arguments; the fd is owned right away.
        unsafe {
            let fd = libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                protocol,
            );
            if fd < 0 {
                return Err(std::io::Error::last_os_error());
            }
            let fd = OwnedFd::from_raw_fd(fd);
            let mut sa: libc::sockaddr_nl = std::mem::zeroed();
            sa.nl_family = libc::AF_NETLINK as u16;
            sa.nl_groups = groups;
            if libc::bind(
                fd.as_raw_fd(),
                (&sa as *const libc::sockaddr_nl).cast(),
                size_of::<libc::sockaddr_nl>() as u32,
            ) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
            Ok(fd)
        }
    })?)
}

const NETLINK_GENERIC: i32 = 16;
const GENL_ID_CTRL: u16 = 0x10;
const CTRL_CMD_GETFAMILY: u8 = 3;
const CTRL_ATTR_FAMILY_ID: u16 = 1;
const CTRL_ATTR_FAMILY_NAME: u16 = 2;

/// Opens a generic-netlink socket in `host`'s namespace and resolves family `name`
/// (`None`: the kernel has no such family, e.g. the module is not loaded).
pub(crate) fn genl_family(host: &Host, name: &str) -> Result<(OwnedFd, Option<u16>), NetlinkError> {
    let fd = open(host, NETLINK_GENERIC, 0)?;
    let mut b = Builder::new(GENL_ID_CTRL, NLM_F_REQUEST, &[CTRL_CMD_GETFAMILY, 1, 0, 0]);
    let mut cname = name.as_bytes().to_vec();
    cname.push(0);
    b.attr(CTRL_ATTR_FAMILY_NAME, &cname);
    let replies = match transact(&fd, &b.finish(), "family lookup") {
        Ok(r) => r,
        Err(NetlinkError::Kernel { .. }) => return Ok((fd, None)),
        Err(e) => return Err(e),
    };
    let mut family = None;
    for payload in replies {
        for a in parse_attrs(payload.get(4..).unwrap_or_default())? {
            if a.kind == CTRL_ATTR_FAMILY_ID && a.data.len() >= 2 {
                family = Some(u16::from_ne_bytes([a.data[0], a.data[1]]));
            }
        }
    }
    Ok((fd, family))
}

/// Sends one request on a blocking socket and collects the payloads of the data replies until the
/// ack, `NLMSG_DONE`, or (for a non-dump request without ack) the first reply.
pub(crate) fn transact(
    fd: &OwnedFd,
    req: &[u8],
    what: &'static str,
) -> Result<Vec<Vec<u8>>, NetlinkError> {
    let fd = fd.as_raw_fd();
    // SAFETY: send/recv on our own socket with valid buffers.
    if unsafe { libc::send(fd, req.as_ptr().cast(), req.len(), 0) } < 0 {
        return Err(std::io::Error::last_os_error().into());
    }
    let flags = u16::from_ne_bytes([req[6], req[7]]);
    let dump = flags & NLM_F_DUMP == NLM_F_DUMP;
    let ack = flags & NLM_F_ACK != 0;
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
                    let code = m
                        .payload
                        .get(0..4)
                        .ok_or(NetlinkError::Malformed("short error"))?;
                    let code = i32::from_ne_bytes(code.try_into().expect("4"));
                    if code != 0 {
                        return Err(NetlinkError::Kernel {
                            what,
                            source: std::io::Error::from_raw_os_error(-code),
                        });
                    }
                    finished = true;
                }
                NLMSG_DONE => finished = true,
                _ => {
                    out.push(m.payload.to_vec());
                    if !dump && !ack {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builder_output_parses_back() {
        let mut nest = Builder::attrs();
        nest.attr(2, &[7]);
        let mut b = Builder::new(30, NLM_F_REQUEST, &[1, 1, 0, 0]);
        b.nest(1, &nest);
        let msg = b.finish();
        let msgs = parse_messages(&msg).unwrap();
        assert_eq!(msgs.len(), 1);
        assert_eq!(msgs[0].kind, 30);
        let attrs = parse_attrs(&msgs[0].payload[4..]).unwrap();
        assert_eq!(attrs[0].kind, 1);
        assert_eq!(parse_attrs(attrs[0].data).unwrap()[0].data, &[7]);
    }

    #[test]
    fn rejects_bad_lengths() {
        assert!(parse_messages(&[0xff; 16]).is_err());
        assert!(parse_messages(&[1, 2, 3]).is_err());
        assert!(parse_attrs(&[2, 0, 1, 0]).is_err());
    }
}
