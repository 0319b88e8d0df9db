//! Uplink discovery and link events over rtnetlink: links (carrier), addresses and default routes
//! by dump requests, and a subscription to link, address and default-route changes for the uplink
//! monitor.
//!
//! Messages are read with `netlink-packet-route`'s header types and address messages; of a link
//! only the header and `IFLA_IFNAME`, of a route the header and four attributes are read
//! ([`decode`], bounded, fuzzed). Decoding the crate's whole `RouteNetlinkMessage` instead links
//! its decoders for every link kind, tc, stats and neighbour tables: ~580 KB of code here, ~0.93 MB
//! of stripped `maculad` (docs/network.md, "Netlink").

use netlink_packet_core::{
    DecodeError, Emitable, ErrorContext, NLM_F_DUMP, NLM_F_REQUEST, NetlinkDeserializable,
    NetlinkHeader, NetlinkPayload, NetlinkSerializable, NlasIterator, Parseable, parse_ip,
    parse_string, parse_u32,
};
use netlink_packet_route::AddressFamily;
use netlink_packet_route::address::{AddressAttribute, AddressHeader, AddressMessage};
use netlink_packet_route::link::{LinkFlags, LinkHeader};
use netlink_packet_route::route::RouteHeader;
use netlink_sys::Socket;
use std::net::IpAddr;
use tokio::io::unix::AsyncFd;

use crate::cmd::Host;
use crate::netlink::{NetlinkError, receive, request, transact};

const NETLINK_ROUTE: isize = netlink_sys::protocols::NETLINK_ROUTE;
const RTMGRP_LINK: u32 = 1;
const RTMGRP_IPV4_IFADDR: u32 = 0x10;
const RTMGRP_IPV4_ROUTE: u32 = 0x40;
const RTMGRP_IPV6_ROUTE: u32 = 0x400;
const RTMGRP_IPV6_IFADDR: u32 = 0x100;
const RTM_NEWLINK: u16 = 16;
const RTM_DELLINK: u16 = 17;
const RTM_GETLINK: u16 = 18;
const RTM_NEWADDR: u16 = 20;
const RTM_DELADDR: u16 = 21;
const RTM_GETADDR: u16 = 22;
const RTM_NEWROUTE: u16 = 24;
const RTM_DELROUTE: u16 = 25;
const RTM_GETROUTE: u16 = 26;
const IFLA_IFNAME: u16 = 3;
const RTA_OIF: u16 = 4;
const RTA_GATEWAY: u16 = 5;
const RTA_PRIORITY: u16 = 6;
const RTA_TABLE: u16 = 15;
const RT_TABLE_MAIN: u32 = 254;

/// One link (interface).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkInfo {
    pub index: i32,
    pub name: String,
    /// Administratively up (`IFF_UP`).
    pub up: bool,
    /// Up with carrier (`IFF_UP` and `IFF_LOWER_UP`): usable.
    pub carrier: bool,
    pub loopback: bool,
    /// `false` for a `RTM_DELLINK` event.
    pub exists: bool,
}

/// One interface address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddrInfo {
    pub index: i32,
    pub addr: IpAddr,
    pub prefix_len: u8,
    /// `false` for a `RTM_DELADDR` event.
    pub exists: bool,
}

/// A change reported by [`LinkEvents`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    Link(LinkInfo),
    Addr(AddrInfo),
    /// A default route appeared or went away (any table).
    Route(DefaultRoute),
}

/// One default route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DefaultRoute {
    pub table: u32,
    pub oif: i32,
    pub gateway: Option<IpAddr>,
    /// Route metric (`RTA_PRIORITY`; 0 when absent).
    pub metric: u32,
    pub ipv4: bool,
    /// `false` for a `RTM_DELROUTE` event.
    pub exists: bool,
}

/// An uplink candidate: a link with carrier, an address and a default route through it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Discovered {
    pub interface: String,
    pub index: i32,
    pub source: IpAddr,
    pub gateway: Option<IpAddr>,
    pub carrier: bool,
    /// Metric of its default route (lower is preferred).
    pub metric: u32,
}

fn link_info(payload: &[u8], exists: bool) -> Result<LinkInfo, DecodeError> {
    let header = LinkHeader::parse(payload).context("link header")?;
    let mut name = String::new();
    for a in NlasIterator::new(&payload[header.buffer_len()..]) {
        let a = a?;
        if a.kind() == IFLA_IFNAME {
            name = parse_string(a.value())?;
            if name.len() > 15 {
                return Err("interface name too long".into());
            }
        }
    }
    let up = header.flags.contains(LinkFlags::Up);
    Ok(LinkInfo {
        index: header.index as i32,
        name,
        up,
        carrier: up && header.flags.contains(LinkFlags::LowerUp),
        loopback: header.flags.contains(LinkFlags::Loopback),
        exists,
    })
}

fn addr_info(payload: &[u8], exists: bool) -> Result<Option<AddrInfo>, DecodeError> {
    let m = AddressMessage::parse(payload)?;
    let (mut local, mut address) = (None, None);
    for a in &m.attributes {
        match a {
            AddressAttribute::Local(ip) => local = Some(*ip),
            AddressAttribute::Address(ip) => address = Some(*ip),
            _ => {}
        }
    }
    Ok(local.or(address).map(|addr| AddrInfo {
        index: m.header.index as i32,
        addr,
        prefix_len: m.header.prefix_len,
        exists,
    }))
}

/// Only default routes (`dst_len` 0) are returned.
fn default_route(payload: &[u8], exists: bool) -> Result<Option<DefaultRoute>, DecodeError> {
    let header = RouteHeader::parse(payload).context("route header")?;
    if header.destination_prefix_length != 0 {
        return Ok(None);
    }
    let mut r = DefaultRoute {
        table: u32::from(header.table),
        oif: 0,
        gateway: None,
        metric: 0,
        ipv4: header.address_family == AddressFamily::Inet,
        exists,
    };
    for a in NlasIterator::new(&payload[header.buffer_len()..]) {
        let a = a?;
        match a.kind() {
            RTA_OIF => r.oif = parse_u32(a.value())? as i32,
            RTA_GATEWAY => r.gateway = Some(parse_ip(a.value())?),
            RTA_TABLE => r.table = parse_u32(a.value())?,
            RTA_PRIORITY => r.metric = parse_u32(a.value())?,
            _ => {}
        }
    }
    Ok(Some(r))
}

/// The change an rtnetlink message of type `kind` reports: a new or deleted link, address or
/// default route (`None` for anything else).
pub fn decode(kind: u16, payload: &[u8]) -> Result<Option<Event>, DecodeError> {
    Ok(match kind {
        RTM_NEWLINK | RTM_DELLINK => Some(Event::Link(link_info(payload, kind == RTM_NEWLINK)?)),
        RTM_NEWADDR | RTM_DELADDR => addr_info(payload, kind == RTM_NEWADDR)?.map(Event::Addr),
        RTM_NEWROUTE | RTM_DELROUTE => {
            default_route(payload, kind == RTM_NEWROUTE)?.map(Event::Route)
        }
        _ => None,
    })
}

/// An rtnetlink message as the uplink code reads it (see [`decode`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RtEvent(pub Option<Event>);

impl NetlinkDeserializable for RtEvent {
    type Error = DecodeError;
    fn deserialize(header: &NetlinkHeader, payload: &[u8]) -> Result<Self, DecodeError> {
        decode(header.message_type, payload).map(Self)
    }
}

/// A dump request: `RTM_GETLINK`, `RTM_GETADDR` or `RTM_GETROUTE` with an all-zero header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Dump(u16);

impl Dump {
    fn header_len(self) -> usize {
        match self.0 {
            RTM_GETLINK => LinkHeader::default().buffer_len(),
            RTM_GETADDR => AddressHeader::default().buffer_len(),
            _ => RouteHeader::default().buffer_len(),
        }
    }
}

impl NetlinkSerializable for Dump {
    fn message_type(&self) -> u16 {
        self.0
    }
    fn buffer_len(&self) -> usize {
        self.header_len()
    }
    fn serialize(&self, buffer: &mut [u8]) {
        buffer[..self.header_len()].fill(0);
    }
}

fn dump(host: &Host, kind: u16, what: &'static str) -> Result<Vec<Event>, NetlinkError> {
    let sock = crate::netlink::open(host, NETLINK_ROUTE, 0)?;
    let req = request(Dump(kind), NLM_F_REQUEST | NLM_F_DUMP);
    let replies: Vec<RtEvent> = transact(&sock, &req, what)?;
    Ok(replies.into_iter().filter_map(|e| e.0).collect())
}

/// All links.
pub fn links(host: &Host) -> Result<Vec<LinkInfo>, NetlinkError> {
    Ok(dump(host, RTM_GETLINK, "listing links")?
        .into_iter()
        .filter_map(|e| match e {
            Event::Link(l) => Some(l),
            _ => None,
        })
        .collect())
}

/// All interface addresses (IPv4 and IPv6).
pub fn addresses(host: &Host) -> Result<Vec<AddrInfo>, NetlinkError> {
    Ok(dump(host, RTM_GETADDR, "listing addresses")?
        .into_iter()
        .filter_map(|e| match e {
            Event::Addr(a) => Some(a),
            _ => None,
        })
        .collect())
}

/// All default routes, every table.
pub fn default_routes(host: &Host) -> Result<Vec<DefaultRoute>, NetlinkError> {
    Ok(dump(host, RTM_GETROUTE, "listing routes")?
        .into_iter()
        .filter_map(|e| match e {
            Event::Route(r) => Some(r),
            _ => None,
        })
        .collect())
}

/// Uplink candidates: every link with a default route in the main table, with its first address
/// of the route's family (link-local IPv6 skipped), lowest metric first.
pub fn discover(host: &Host) -> Result<Vec<Discovered>, NetlinkError> {
    let links = links(host)?;
    let addrs = addresses(host)?;
    let mut out = Vec::new();
    for r in default_routes(host)?
        .into_iter()
        .filter(|r| r.table == RT_TABLE_MAIN)
    {
        let Some(link) = links.iter().find(|l| l.index == r.oif) else {
            continue;
        };
        let source = addrs.iter().find(|a| {
            a.index == r.oif
                && a.addr.is_ipv4() == r.ipv4
                && !matches!(a.addr, IpAddr::V6(v6) if v6.segments()[0] & 0xffc0 == 0xfe80)
        });
        if let Some(source) = source {
            out.push(Discovered {
                interface: link.name.clone(),
                index: link.index,
                source: source.addr,
                gateway: r.gateway,
                carrier: link.carrier,
                metric: r.metric,
            });
        }
    }
    out.sort_by_key(|d| d.metric);
    Ok(out)
}

/// A subscription to link, address and route changes (`RTMGRP_LINK`, `RTMGRP_IPV4_IFADDR`,
/// `RTMGRP_IPV6_IFADDR`, `RTMGRP_IPV4_ROUTE`, `RTMGRP_IPV6_ROUTE`) in one namespace.
pub struct LinkEvents {
    sock: AsyncFd<Socket>,
    buf: Vec<u8>,
}

impl LinkEvents {
    pub fn subscribe(host: &Host) -> Result<Self, NetlinkError> {
        let sock = crate::netlink::open(
            host,
            NETLINK_ROUTE,
            RTMGRP_LINK
                | RTMGRP_IPV4_IFADDR
                | RTMGRP_IPV6_IFADDR
                | RTMGRP_IPV4_ROUTE
                | RTMGRP_IPV6_ROUTE,
        )?;
        sock.set_non_blocking(true)?;
        // SAFETY: `Socket::as_raw_fd` returns the fd it owns (closed on drop), for as long as it
        // lives.
        let sock = unsafe { AsyncFd::register(sock) }.map_err(|e| e.into_parts().1)?;
        Ok(Self {
            sock,
            buf: Vec::new(),
        })
    }

    /// The next batch of changes.
    pub async fn next(&mut self) -> Result<Vec<Event>, NetlinkError> {
        loop {
            let mut guard = self.sock.readable().await?;
            let buf = &mut self.buf;
            let msgs = match guard.try_io(|s| {
                receive::<RtEvent>(s.get_ref(), buf).map_err(|e| match e {
                    NetlinkError::Io(io) => io,
                    other => std::io::Error::other(other),
                })
            }) {
                Ok(r) => r?,
                Err(_would_block) => continue,
            };
            return Ok(msgs
                .into_iter()
                .filter_map(|m| match m.payload {
                    NetlinkPayload::InnerMessage(RtEvent(e)) => e,
                    _ => None,
                })
                .collect());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use netlink_packet_route::RouteNetlinkMessage;
    use netlink_packet_route::link::{LinkAttribute, LinkMessage};
    use netlink_packet_route::route::{RouteAddress, RouteAttribute, RouteMessage};

    /// The kernel's bytes for `msg`, built with the crate's full message type.
    fn decoded(msg: RouteNetlinkMessage) -> Result<Option<Event>, DecodeError> {
        let kind = msg.message_type();
        let mut b = vec![0u8; NetlinkSerializable::buffer_len(&msg)];
        msg.serialize(&mut b);
        decode(kind, &b)
    }

    #[test]
    fn parses_a_link_message() {
        let mut m = LinkMessage::default();
        m.header.index = 7;
        m.header.flags = LinkFlags::Up | LinkFlags::LowerUp;
        m.attributes.push(LinkAttribute::IfName("eth1".into()));
        let Some(Event::Link(l)) = decoded(RouteNetlinkMessage::NewLink(m.clone())).unwrap() else {
            panic!("not a link event");
        };
        assert_eq!(
            (l.index, l.name.as_str(), l.up, l.carrier),
            (7, "eth1", true, true)
        );
        let Some(Event::Link(gone)) = decoded(RouteNetlinkMessage::DelLink(m.clone())).unwrap()
        else {
            panic!("not a link event");
        };
        assert!(!gone.exists);
        let mut b = vec![0u8; m.buffer_len()];
        m.emit(&mut b);
        assert!(decode(RTM_NEWLINK, &b[..10]).is_err());
        assert_eq!(decode(99, &b).unwrap(), None);
        m.attributes = vec![LinkAttribute::IfName("a-much-too-long-name".into())];
        assert!(decoded(RouteNetlinkMessage::NewLink(m)).is_err());
    }

    #[test]
    fn parses_default_route_add_and_delete() {
        let mut m = RouteMessage::default();
        m.header.address_family = AddressFamily::Inet;
        m.header.table = 254;
        m.attributes = vec![
            RouteAttribute::Gateway(RouteAddress::Inet("192.0.2.1".parse().unwrap())),
            RouteAttribute::Oif(3),
            RouteAttribute::Priority(20),
        ];
        let r = decoded(RouteNetlinkMessage::NewRoute(m.clone())).unwrap();
        assert_eq!(
            r,
            Some(Event::Route(DefaultRoute {
                table: 254,
                oif: 3,
                gateway: Some("192.0.2.1".parse().unwrap()),
                metric: 20,
                ipv4: true,
                exists: true,
            }))
        );
        let Some(Event::Route(gone)) = decoded(RouteNetlinkMessage::DelRoute(m.clone())).unwrap()
        else {
            panic!("not a route event");
        };
        assert!(!gone.exists);
        // Not a default route.
        m.header.destination_prefix_length = 24;
        assert_eq!(
            decoded(RouteNetlinkMessage::NewRoute(m.clone())).unwrap(),
            None
        );
        let mut b = vec![0u8; m.buffer_len()];
        m.emit(&mut b);
        assert!(decode(RTM_NEWROUTE, &b[..8]).is_err());
    }

    #[test]
    fn parses_an_address_and_frames_dump_requests() {
        let mut m = AddressMessage::default();
        m.header.index = 4;
        m.header.prefix_len = 24;
        m.attributes = vec![AddressAttribute::Local("198.51.100.1".parse().unwrap())];
        assert_eq!(
            decoded(RouteNetlinkMessage::NewAddress(m)).unwrap(),
            Some(Event::Addr(AddrInfo {
                index: 4,
                addr: "198.51.100.1".parse().unwrap(),
                prefix_len: 24,
                exists: true,
            }))
        );
        // Our dump requests are the crate's GET messages with default headers, byte for byte.
        for (kind, full) in [
            (
                RTM_GETLINK,
                RouteNetlinkMessage::GetLink(LinkMessage::default()),
            ),
            (
                RTM_GETADDR,
                RouteNetlinkMessage::GetAddress(AddressMessage::default()),
            ),
            (
                RTM_GETROUTE,
                RouteNetlinkMessage::GetRoute(RouteMessage::default()),
            ),
        ] {
            let ours = request(Dump(kind), NLM_F_REQUEST | NLM_F_DUMP);
            let theirs = request(full, NLM_F_REQUEST | NLM_F_DUMP);
            let (mut a, mut b) = (vec![0u8; ours.buffer_len()], vec![0u8; theirs.buffer_len()]);
            ours.serialize(&mut a);
            theirs.serialize(&mut b);
            assert_eq!(a, b, "type {kind}");
        }
    }
}
