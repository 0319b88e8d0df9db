//! MPTCP in-kernel path-manager endpoints over generic netlink (`mptcp_pm` family), like
//! `ip mptcp endpoint|limits`. [`PmMessage`] is a `netlink-packet-generic` family whose
//! attributes are `netlink-packet-core` NLAs: the ecosystem's `mptcp-pm` 0.2 models only the two
//! GET commands (no ADD/DEL_ADDR or SET_LIMITS) and brings a second `netlink-proto`. Blocking
//! calls; each is short. [`endpoints`] decodes kernel replies (bounded, fuzzed).

use std::net::IpAddr;

use netlink_packet_core::{
    DecodeError, DefaultNla, Emitable, NLA_F_NESTED, NLM_F_DUMP, NlasIterator,
    ParseableParametrized, parse_i32, parse_ip, parse_u8, parse_u32,
};
use netlink_packet_generic::{GenlFamily, GenlHeader, GenlMessage};
use netlink_sys::Socket;

use crate::cmd::Host;
use crate::netlink::{NLM_F_ACK, NLM_F_REQUEST, NetlinkError, request, transact};

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

/// An `mptcp_pm` request or reply (`include/uapi/linux/mptcp_pm.h`, version 1): the command and
/// its attribute area, checked to be well-formed NLAs when decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PmMessage {
    pub cmd: u8,
    pub attrs: Vec<u8>,
}

impl PmMessage {
    fn new(cmd: u8, attrs: &[DefaultNla]) -> Self {
        let mut buf = vec![0u8; attrs.buffer_len()];
        attrs.emit(&mut buf);
        Self { cmd, attrs: buf }
    }
}

impl GenlFamily for PmMessage {
    fn family_name() -> &'static str {
        "mptcp_pm"
    }
    fn command(&self) -> u8 {
        self.cmd
    }
    fn version(&self) -> u8 {
        1
    }
}

impl Emitable for PmMessage {
    fn buffer_len(&self) -> usize {
        self.attrs.len()
    }
    fn emit(&self, buf: &mut [u8]) {
        buf[..self.attrs.len()].copy_from_slice(&self.attrs)
    }
}

impl ParseableParametrized<[u8], GenlHeader> for PmMessage {
    fn parse_with_param(buf: &[u8], header: GenlHeader) -> Result<Self, DecodeError> {
        for a in NlasIterator::new(buf) {
            a?;
        }
        Ok(Self {
            cmd: header.cmd,
            attrs: buf.to_vec(),
        })
    }
}

/// The endpoints in a reply, one per `MPTCP_PM_ATTR_ADDR` nest.
pub fn endpoints(msg: &PmMessage) -> Result<Vec<Endpoint>, DecodeError> {
    let mut out = Vec::new();
    for a in NlasIterator::new(&msg.attrs) {
        let a = a?;
        if a.kind() != ATTR_ADDR {
            continue;
        }
        let mut ep = Endpoint {
            id: 0,
            addr: IpAddr::from([0u8; 4]),
            ifindex: 0,
            flags: 0,
        };
        for f in NlasIterator::new(a.value()) {
            let f = f?;
            let v = f.value();
            match (f.kind(), v.len()) {
                (ADDR_ID, _) => ep.id = parse_u8(v)?,
                (ADDR_ADDR4, 4) | (ADDR_ADDR6, 16) => ep.addr = parse_ip(v)?,
                (ADDR_ADDR4 | ADDR_ADDR6, n) => return Err(DecodeError::invalid_ip_address(n)),
                (ADDR_FLAGS, _) => ep.flags = parse_u32(v)?,
                (ADDR_IF_IDX, _) => ep.ifindex = parse_i32(v)?,
                _ => {}
            }
        }
        out.push(ep);
    }
    Ok(out)
}

fn endpoint_nest(ep: &Endpoint, with_addr: bool) -> DefaultNla {
    let attr = |kind: u16, v: &[u8]| DefaultNla::new(kind, v.to_vec());
    let mut n = Vec::new();
    if with_addr {
        let (family, octets) = match ep.addr {
            IpAddr::V4(a) => ((ADDR_ADDR4, libc::AF_INET as u16), a.octets().to_vec()),
            IpAddr::V6(a) => ((ADDR_ADDR6, libc::AF_INET6 as u16), a.octets().to_vec()),
        };
        n.push(attr(ADDR_FAMILY, &family.1.to_ne_bytes()));
        n.push(attr(family.0, &octets));
        n.push(attr(ADDR_FLAGS, &ep.flags.to_ne_bytes()));
        if ep.ifindex != 0 {
            n.push(attr(ADDR_IF_IDX, &ep.ifindex.to_ne_bytes()));
        }
    }
    n.push(attr(ADDR_ID, &[ep.id]));
    let mut value = vec![0u8; n.as_slice().buffer_len()];
    n.as_slice().emit(&mut value);
    DefaultNla::new(ATTR_ADDR | NLA_F_NESTED, value)
}

/// A generic-netlink socket bound to the `mptcp_pm` family.
pub struct Mptcp {
    sock: Socket,
    family: u16,
}

impl Mptcp {
    /// Opens the socket in `host`'s network namespace and resolves the family.
    pub fn open(host: &Host) -> Result<Self, MptcpError> {
        let (sock, family) = crate::netlink::genl_family(host, "mptcp_pm")?;
        let family = family.ok_or(MptcpError::NoFamily)?;
        Ok(Self { sock, family })
    }

    fn transact(
        &mut self,
        flags: u16,
        cmd: u8,
        attrs: &[DefaultNla],
        what: &'static str,
    ) -> Result<Vec<PmMessage>, MptcpError> {
        let msg = GenlMessage::new(
            GenlHeader { cmd, version: 1 },
            PmMessage::new(cmd, attrs),
            self.family,
        );
        let req = request(msg, NLM_F_REQUEST | flags);
        let replies: Vec<GenlMessage<PmMessage>> = transact(&self.sock, &req, what)?;
        Ok(replies.into_iter().map(|m| m.payload).collect())
    }

    /// `ip mptcp endpoint add`.
    pub fn add(&mut self, ep: &Endpoint) -> Result<(), MptcpError> {
        let attrs = [endpoint_nest(ep, true)];
        self.transact(NLM_F_ACK, CMD_ADD_ADDR, &attrs, "adding an MPTCP endpoint")
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
        let attrs = [endpoint_nest(&ep, false)];
        self.transact(
            NLM_F_ACK,
            CMD_DEL_ADDR,
            &attrs,
            "deleting an MPTCP endpoint",
        )
        .map(|_| ())
    }

    /// `ip mptcp endpoint show`.
    pub fn list(&mut self) -> Result<Vec<Endpoint>, MptcpError> {
        let replies = self.transact(NLM_F_DUMP, CMD_GET_ADDR, &[], "listing MPTCP endpoints")?;
        let mut out = Vec::new();
        for r in &replies {
            out.extend(endpoints(r).map_err(NetlinkError::from)?);
        }
        Ok(out)
    }

    /// `ip mptcp limits set subflows N add_addr_accepted M`.
    pub fn set_limits(&mut self, subflows: u32, add_addr_accepted: u32) -> Result<(), MptcpError> {
        let attrs = [
            DefaultNla::new(ATTR_RCV_ADD_ADDRS, add_addr_accepted.to_ne_bytes().to_vec()),
            DefaultNla::new(ATTR_SUBFLOWS, subflows.to_ne_bytes().to_vec()),
        ];
        self.transact(NLM_F_ACK, CMD_SET_LIMITS, &attrs, "setting MPTCP limits")
            .map(|_| ())
    }

    /// `(subflows, add_addr_accepted)`.
    pub fn limits(&mut self) -> Result<(u32, u32), MptcpError> {
        let (mut sub, mut acc) = (0, 0);
        for m in self.transact(0, CMD_GET_LIMITS, &[], "reading MPTCP limits")? {
            for a in NlasIterator::new(&m.attrs) {
                let a = a.map_err(NetlinkError::from)?;
                match a.kind() {
                    ATTR_SUBFLOWS => sub = parse_u32(a.value()).map_err(NetlinkError::from)?,
                    ATTR_RCV_ADD_ADDRS => acc = parse_u32(a.value()).map_err(NetlinkError::from)?,
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
    use crate::netlink::messages;
    use netlink_packet_core::NetlinkPayload;

    fn round_trip(msg: PmMessage) -> Result<PmMessage, NetlinkError> {
        let h = GenlHeader {
            cmd: msg.cmd,
            version: 1,
        };
        let req = request(GenlMessage::new(h, msg, 30), NLM_F_REQUEST);
        let mut bytes = vec![0u8; req.buffer_len()];
        req.serialize(&mut bytes);
        let mut msgs = messages::<GenlMessage<PmMessage>>(&bytes)?;
        assert_eq!(msgs[0].header.message_type, 30);
        match msgs.remove(0).payload {
            NetlinkPayload::InnerMessage(m) => Ok(m.payload),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn builds_and_parses_an_endpoint_nest() {
        let ep = Endpoint {
            id: 2,
            addr: "203.0.113.1".parse().unwrap(),
            ifindex: 7,
            flags: FLAG_SUBFLOW | FLAG_BACKUP,
        };
        let back = round_trip(PmMessage::new(CMD_ADD_ADDR, &[endpoint_nest(&ep, true)])).unwrap();
        assert_eq!(back.cmd, CMD_ADD_ADDR);
        assert_eq!(endpoints(&back).unwrap(), [ep]);
    }

    #[test]
    fn rejects_bad_endpoint_attributes() {
        // An ADDR4 attribute of 1 byte inside an ATTR_ADDR nest.
        let nest = [5, 0, 3, 0, 1, 0, 0, 0];
        let attrs = [&[12u8, 0, 1, 0x80][..], &nest].concat();
        let msg = PmMessage::parse_with_param(
            &attrs,
            GenlHeader {
                cmd: CMD_GET_ADDR,
                version: 1,
            },
        )
        .unwrap();
        assert!(endpoints(&msg).is_err());
        // A truncated attribute area.
        assert!(
            round_trip(PmMessage {
                cmd: CMD_GET_ADDR,
                attrs: vec![8, 0, 1, 0],
            })
            .is_err()
        );
    }
}
