//! MPTCP in-kernel path-manager endpoints over generic netlink (`mptcp_pm` family), like
//! `ip mptcp endpoint|limits`. The message type is ours ([`PmMessage`], a `netlink-packet-generic`
//! family on `netlink-packet-core` attributes): the ecosystem's `mptcp-pm` 0.2 only models the
//! two GET commands and brings a second `netlink-proto`. Blocking calls; each is short.
//! [`endpoints`] decodes kernel replies (bounded, fuzzed).

use std::fmt::Debug;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use netlink_packet_core::{
    DecodeError, DefaultNla, Emitable, ErrorContext, NLA_F_NESTED, NLM_F_DUMP, Nla, NlaBuffer,
    NlasIterator, Parseable, ParseableParametrized, emit_i32, emit_u16, emit_u32, parse_i32,
    parse_u8, parse_u16, parse_u32,
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

/// One attribute of an `MPTCP_PM_ATTR_ADDR` nest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AddrAttr {
    Family(u16),
    Id(u8),
    Addr4(Ipv4Addr),
    Addr6(Ipv6Addr),
    Flags(u32),
    IfIndex(i32),
    Other(DefaultNla),
}

impl Nla for AddrAttr {
    fn value_len(&self) -> usize {
        match self {
            Self::Family(_) => 2,
            Self::Id(_) => 1,
            Self::Addr4(_) | Self::Flags(_) | Self::IfIndex(_) => 4,
            Self::Addr6(_) => 16,
            Self::Other(a) => a.value_len(),
        }
    }

    fn kind(&self) -> u16 {
        match self {
            Self::Family(_) => ADDR_FAMILY,
            Self::Id(_) => ADDR_ID,
            Self::Addr4(_) => ADDR_ADDR4,
            Self::Addr6(_) => ADDR_ADDR6,
            Self::Flags(_) => ADDR_FLAGS,
            Self::IfIndex(_) => ADDR_IF_IDX,
            Self::Other(a) => a.kind(),
        }
    }

    fn emit_value(&self, buf: &mut [u8]) {
        match self {
            Self::Family(v) => emit_u16(buf, *v).expect("2 bytes"),
            Self::Id(v) => buf[0] = *v,
            Self::Addr4(a) => buf.copy_from_slice(&a.octets()),
            Self::Addr6(a) => buf.copy_from_slice(&a.octets()),
            Self::Flags(v) => emit_u32(buf, *v).expect("4 bytes"),
            Self::IfIndex(v) => emit_i32(buf, *v).expect("4 bytes"),
            Self::Other(a) => a.emit_value(buf),
        }
    }
}

impl<T: AsRef<[u8]> + ?Sized> Parseable<NlaBuffer<&T>> for AddrAttr {
    fn parse(buf: &NlaBuffer<&T>) -> Result<Self, DecodeError> {
        let v = buf.value();
        let ip = |n: usize| -> Result<&[u8], DecodeError> {
            if v.len() == n {
                Ok(v)
            } else {
                Err(DecodeError::invalid_ip_address(v.len()))
            }
        };
        Ok(match buf.kind() {
            ADDR_FAMILY => Self::Family(parse_u16(v).context("MPTCP address family")?),
            ADDR_ID => Self::Id(parse_u8(v).context("MPTCP endpoint id")?),
            ADDR_ADDR4 => Self::Addr4(<[u8; 4]>::try_from(ip(4)?).expect("4").into()),
            ADDR_ADDR6 => Self::Addr6(<[u8; 16]>::try_from(ip(16)?).expect("16").into()),
            ADDR_FLAGS => Self::Flags(parse_u32(v).context("MPTCP endpoint flags")?),
            ADDR_IF_IDX => Self::IfIndex(parse_i32(v).context("MPTCP endpoint ifindex")?),
            _ => Self::Other(DefaultNla::parse(buf)?),
        })
    }
}

/// A top-level `mptcp_pm` attribute.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PmAttr {
    Addr(Vec<AddrAttr>),
    RcvAddAddrs(u32),
    Subflows(u32),
    Other(DefaultNla),
}

impl Nla for PmAttr {
    fn value_len(&self) -> usize {
        match self {
            Self::Addr(v) => v.as_slice().buffer_len(),
            Self::RcvAddAddrs(_) | Self::Subflows(_) => 4,
            Self::Other(a) => a.value_len(),
        }
    }

    fn kind(&self) -> u16 {
        match self {
            Self::Addr(_) => ATTR_ADDR | NLA_F_NESTED,
            Self::RcvAddAddrs(_) => ATTR_RCV_ADD_ADDRS,
            Self::Subflows(_) => ATTR_SUBFLOWS,
            Self::Other(a) => a.kind(),
        }
    }

    fn emit_value(&self, buf: &mut [u8]) {
        match self {
            Self::Addr(v) => v.as_slice().emit(buf),
            Self::RcvAddAddrs(v) | Self::Subflows(v) => emit_u32(buf, *v).expect("4 bytes"),
            Self::Other(a) => a.emit_value(buf),
        }
    }
}

impl<T: AsRef<[u8]> + ?Sized> Parseable<NlaBuffer<&T>> for PmAttr {
    fn parse(buf: &NlaBuffer<&T>) -> Result<Self, DecodeError> {
        let v = buf.value();
        Ok(match buf.kind() {
            ATTR_ADDR => Self::Addr(
                NlasIterator::new(v)
                    .map(|a| AddrAttr::parse(&a?))
                    .collect::<Result<_, _>>()?,
            ),
            ATTR_RCV_ADD_ADDRS => Self::RcvAddAddrs(parse_u32(v).context("MPTCP limit")?),
            ATTR_SUBFLOWS => Self::Subflows(parse_u32(v).context("MPTCP limit")?),
            _ => Self::Other(DefaultNla::parse(buf)?),
        })
    }
}

/// An `mptcp_pm` request or reply (`include/uapi/linux/mptcp_pm.h`, version 1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PmMessage {
    pub cmd: u8,
    pub attrs: Vec<PmAttr>,
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
        self.attrs.as_slice().buffer_len()
    }
    fn emit(&self, buf: &mut [u8]) {
        self.attrs.as_slice().emit(buf)
    }
}

impl ParseableParametrized<[u8], GenlHeader> for PmMessage {
    fn parse_with_param(buf: &[u8], header: GenlHeader) -> Result<Self, DecodeError> {
        Ok(Self {
            cmd: header.cmd,
            attrs: NlasIterator::new(buf)
                .map(|a| PmAttr::parse(&a?))
                .collect::<Result<_, _>>()?,
        })
    }
}

/// The endpoints in a reply (one per `MPTCP_PM_ATTR_ADDR` nest; an address of the wrong size
/// was already refused by the decoder).
pub fn endpoints(msg: &PmMessage) -> Vec<Endpoint> {
    let mut out = Vec::new();
    for a in &msg.attrs {
        let PmAttr::Addr(nest) = a else { continue };
        let mut ep = Endpoint {
            id: 0,
            addr: IpAddr::from([0u8; 4]),
            ifindex: 0,
            flags: 0,
        };
        for f in nest {
            match f {
                AddrAttr::Id(id) => ep.id = *id,
                AddrAttr::Addr4(a) => ep.addr = (*a).into(),
                AddrAttr::Addr6(a) => ep.addr = (*a).into(),
                AddrAttr::Flags(v) => ep.flags = *v,
                AddrAttr::IfIndex(i) => ep.ifindex = *i,
                _ => {}
            }
        }
        out.push(ep);
    }
    out
}

fn endpoint_nest(ep: &Endpoint, with_addr: bool) -> PmAttr {
    let mut n = Vec::new();
    if with_addr {
        match ep.addr {
            IpAddr::V4(a) => {
                n.push(AddrAttr::Family(libc::AF_INET as u16));
                n.push(AddrAttr::Addr4(a));
            }
            IpAddr::V6(a) => {
                n.push(AddrAttr::Family(libc::AF_INET6 as u16));
                n.push(AddrAttr::Addr6(a));
            }
        }
        n.push(AddrAttr::Flags(ep.flags));
        if ep.ifindex != 0 {
            n.push(AddrAttr::IfIndex(ep.ifindex));
        }
    }
    n.push(AddrAttr::Id(ep.id));
    PmAttr::Addr(n)
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
        attrs: Vec<PmAttr>,
        what: &'static str,
    ) -> Result<Vec<PmMessage>, MptcpError> {
        let msg = GenlMessage::new(
            GenlHeader { cmd, version: 1 },
            PmMessage { cmd, attrs },
            self.family,
        );
        let req = request(msg, NLM_F_REQUEST | flags);
        let replies: Vec<GenlMessage<PmMessage>> = transact(&self.sock, &req, what)?;
        Ok(replies.into_iter().map(|m| m.payload).collect())
    }

    /// `ip mptcp endpoint add`.
    pub fn add(&mut self, ep: &Endpoint) -> Result<(), MptcpError> {
        let attrs = vec![endpoint_nest(ep, true)];
        self.transact(NLM_F_ACK, CMD_ADD_ADDR, attrs, "adding an MPTCP endpoint")
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
        let attrs = vec![endpoint_nest(&ep, false)];
        self.transact(NLM_F_ACK, CMD_DEL_ADDR, attrs, "deleting an MPTCP endpoint")
            .map(|_| ())
    }

    /// `ip mptcp endpoint show`.
    pub fn list(&mut self) -> Result<Vec<Endpoint>, MptcpError> {
        let replies = self.transact(NLM_F_DUMP, CMD_GET_ADDR, vec![], "listing MPTCP endpoints")?;
        Ok(replies.iter().flat_map(endpoints).collect())
    }

    /// `ip mptcp limits set subflows N add_addr_accepted M`.
    pub fn set_limits(&mut self, subflows: u32, add_addr_accepted: u32) -> Result<(), MptcpError> {
        let attrs = vec![
            PmAttr::RcvAddAddrs(add_addr_accepted),
            PmAttr::Subflows(subflows),
        ];
        self.transact(NLM_F_ACK, CMD_SET_LIMITS, attrs, "setting MPTCP limits")
            .map(|_| ())
    }

    /// `(subflows, add_addr_accepted)`.
    pub fn limits(&mut self) -> Result<(u32, u32), MptcpError> {
        let (mut sub, mut acc) = (0, 0);
        for m in self.transact(0, CMD_GET_LIMITS, vec![], "reading MPTCP limits")? {
            for a in m.attrs {
                match a {
                    PmAttr::Subflows(v) => sub = v,
                    PmAttr::RcvAddAddrs(v) => acc = v,
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

    fn round_trip(msg: PmMessage) -> PmMessage {
        let req = request(
            GenlMessage::new(
                GenlHeader {
                    cmd: msg.cmd,
                    version: 1,
                },
                msg,
                30,
            ),
            NLM_F_REQUEST,
        );
        let mut bytes = vec![0u8; req.buffer_len()];
        req.serialize(&mut bytes);
        let mut msgs = messages::<GenlMessage<PmMessage>>(&bytes).unwrap();
        assert_eq!(msgs[0].header.message_type, 30);
        match msgs.remove(0).payload {
            NetlinkPayload::InnerMessage(m) => m.payload,
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
        let back = round_trip(PmMessage {
            cmd: CMD_ADD_ADDR,
            attrs: vec![endpoint_nest(&ep, true)],
        });
        assert_eq!(back.cmd, CMD_ADD_ADDR);
        assert_eq!(endpoints(&back), [ep]);
        let limits = round_trip(PmMessage {
            cmd: CMD_SET_LIMITS,
            attrs: vec![PmAttr::RcvAddAddrs(2), PmAttr::Subflows(3)],
        });
        assert_eq!(limits.attrs, [PmAttr::RcvAddAddrs(2), PmAttr::Subflows(3)]);
    }

    #[test]
    fn rejects_bad_endpoint_attributes() {
        // An ADDR4 attribute of 1 byte inside an ATTR_ADDR nest.
        let nest = [5, 0, 3, 0, 1, 0, 0, 0];
        let attr = [&[12u8, 0, 1, 0x80][..], &nest].concat();
        let header = GenlHeader {
            cmd: CMD_GET_ADDR,
            version: 1,
        };
        assert!(PmMessage::parse_with_param(&attr, header).is_err());
    }
}
