//! MPTCP in-kernel path-manager endpoints over generic netlink (`mptcp_pm` family), like
//! `ip mptcp endpoint|limits` — a small in-house client on a raw netlink socket (blocking; each
//! call is short). [`parse_endpoint`] decodes kernel replies (bounded, fuzzed).

use std::net::IpAddr;
use std::os::fd::OwnedFd;

use crate::cmd::Host;
use crate::netlink::{
    Builder, NLM_F_ACK, NLM_F_DUMP, NLM_F_REQUEST, NetlinkError, parse_attrs, transact, u32_of,
};

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
    #[error(transparent)]
    Netlink(#[from] NetlinkError),
    #[error(
        "the kernel has no MPTCP path manager (genetlink family mptcp_pm); enable CONFIG_MPTCP and net.mptcp.enabled=1"
    )]
    NoFamily,
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
            ADDR_ID => ep.id = *a.data.first().ok_or(NetlinkError::Malformed("empty id"))?,
            ADDR_ADDR4 => {
                let b: [u8; 4] = a
                    .data
                    .try_into()
                    .map_err(|_| NetlinkError::Malformed("addr4 size"))?;
                ep.addr = IpAddr::from(b);
            }
            ADDR_ADDR6 => {
                let b: [u8; 16] = a
                    .data
                    .try_into()
                    .map_err(|_| NetlinkError::Malformed("addr6 size"))?;
                ep.addr = IpAddr::from(b);
            }
            ADDR_FLAGS => ep.flags = u32_of(&a)?,
            ADDR_IF_IDX => ep.ifindex = u32_of(&a)? as i32,
            _ => {}
        }
    }
    Ok(ep)
}

fn endpoint_nest(ep: &Endpoint, with_addr: bool) -> Builder {
    let mut n = Builder::attrs();
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
        let (fd, family) = crate::netlink::genl_family(host, "mptcp_pm")?;
        let family = family.ok_or(MptcpError::NoFamily)?;
        Ok(Self { fd, family })
    }

    fn transact(&mut self, req: &[u8], what: &'static str) -> Result<Vec<Vec<u8>>, MptcpError> {
        Ok(transact(&self.fd, req, what)?)
    }

    fn request(&mut self, flags: u16, cmd: u8) -> Builder {
        Builder::new(self.family, NLM_F_REQUEST | flags, &[cmd, 1, 0, 0])
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
    use crate::netlink::parse_messages;

    #[test]
    fn builds_and_parses_an_endpoint_nest() {
        let ep = Endpoint {
            id: 2,
            addr: "203.0.113.1".parse().unwrap(),
            ifindex: 7,
            flags: FLAG_SUBFLOW | FLAG_BACKUP,
        };
        let mut b = Builder::new(30, NLM_F_REQUEST, &[CMD_ADD_ADDR, 1, 0, 0]);
        b.nest(ATTR_ADDR, &endpoint_nest(&ep, true));
        let msg = b.finish();
        let msgs = parse_messages(&msg).unwrap();
        let attrs = parse_attrs(&msgs[0].payload[4..]).unwrap();
        assert_eq!(attrs[0].kind, ATTR_ADDR);
        assert_eq!(parse_endpoint(attrs[0].data).unwrap(), ep);
    }

    #[test]
    fn rejects_bad_endpoint_attributes() {
        assert!(parse_endpoint(&[5, 0, 3, 0, 1, 0, 0, 0]).is_err());
    }
}
