//! Uplink discovery and link events over rtnetlink: links (carrier), addresses and default routes
//! by dump requests, and a subscription to link, address and default-route changes for the uplink
//! monitor. Messages are `netlink-packet-route`'s; [`event`] maps one to the few fields the uplink
//! code uses (bounded, fuzzed with [`crate::netlink::messages`]).

use std::net::IpAddr;

use netlink_packet_core::{NLM_F_DUMP, NLM_F_REQUEST, NetlinkPayload};
use netlink_packet_route::address::{AddressAttribute, AddressMessage};
use netlink_packet_route::link::{LinkAttribute, LinkFlags, LinkMessage};
use netlink_packet_route::route::{RouteAddress, RouteAttribute, RouteMessage};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use netlink_sys::Socket;
use tokio::io::unix::AsyncFd;

use crate::cmd::Host;
use crate::netlink::{NetlinkError, receive, request, transact};

const NETLINK_ROUTE: isize = netlink_sys::protocols::NETLINK_ROUTE;
const RTMGRP_LINK: u32 = 1;
const RTMGRP_IPV4_IFADDR: u32 = 0x10;
const RTMGRP_IPV4_ROUTE: u32 = 0x40;
const RTMGRP_IPV6_ROUTE: u32 = 0x400;
const RTMGRP_IPV6_IFADDR: u32 = 0x100;
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

fn link_info(m: &LinkMessage, exists: bool) -> Result<LinkInfo, NetlinkError> {
    let flags = m.header.flags;
    let mut name = String::new();
    for a in &m.attributes {
        if let LinkAttribute::IfName(n) = a {
            if n.len() > 15 {
                return Err(NetlinkError::Malformed("interface name too long".into()));
            }
            name = n.clone();
        }
    }
    let up = flags.contains(LinkFlags::Up);
    Ok(LinkInfo {
        index: m.header.index as i32,
        name,
        up,
        carrier: up && flags.contains(LinkFlags::LowerUp),
        loopback: flags.contains(LinkFlags::Loopback),
        exists,
    })
}

fn addr_info(m: &AddressMessage, exists: bool) -> Option<AddrInfo> {
    let (mut local, mut address) = (None, None);
    for a in &m.attributes {
        match a {
            AddressAttribute::Local(ip) => local = Some(*ip),
            AddressAttribute::Address(ip) => address = Some(*ip),
            _ => {}
        }
    }
    local.or(address).map(|addr| AddrInfo {
        index: m.header.index as i32,
        addr,
        prefix_len: m.header.prefix_len,
        exists,
    })
}

/// Only default routes (`dst_len` 0) are returned.
fn default_route(m: &RouteMessage, exists: bool) -> Option<DefaultRoute> {
    if m.header.destination_prefix_length != 0 {
        return None;
    }
    let mut r = DefaultRoute {
        table: u32::from(m.header.table),
        oif: 0,
        gateway: None,
        metric: 0,
        ipv4: m.header.address_family == AddressFamily::Inet,
        exists,
    };
    for a in &m.attributes {
        match a {
            RouteAttribute::Oif(i) => r.oif = *i as i32,
            RouteAttribute::Gateway(RouteAddress::Inet(ip)) => r.gateway = Some((*ip).into()),
            RouteAttribute::Gateway(RouteAddress::Inet6(ip)) => r.gateway = Some((*ip).into()),
            RouteAttribute::Table(t) => r.table = *t,
            RouteAttribute::Priority(p) => r.metric = *p,
            _ => {}
        }
    }
    Some(r)
}

/// The change a kernel message reports: a new or deleted link, address or default route
/// (`None` for anything else).
pub fn event(msg: &RouteNetlinkMessage) -> Result<Option<Event>, NetlinkError> {
    Ok(match msg {
        RouteNetlinkMessage::NewLink(m) => Some(Event::Link(link_info(m, true)?)),
        RouteNetlinkMessage::DelLink(m) => Some(Event::Link(link_info(m, false)?)),
        RouteNetlinkMessage::NewAddress(m) => addr_info(m, true).map(Event::Addr),
        RouteNetlinkMessage::DelAddress(m) => addr_info(m, false).map(Event::Addr),
        RouteNetlinkMessage::NewRoute(m) => default_route(m, true).map(Event::Route),
        RouteNetlinkMessage::DelRoute(m) => default_route(m, false).map(Event::Route),
        _ => None,
    })
}

fn dump(
    host: &Host,
    req: RouteNetlinkMessage,
    what: &'static str,
) -> Result<Vec<Event>, NetlinkError> {
    let sock = crate::netlink::open(host, NETLINK_ROUTE, 0)?;
    let mut out = Vec::new();
    for m in transact(&sock, &request(req, NLM_F_REQUEST | NLM_F_DUMP), what)? {
        out.extend(event(&m)?);
    }
    Ok(out)
}

/// All links.
pub fn links(host: &Host) -> Result<Vec<LinkInfo>, NetlinkError> {
    let req = RouteNetlinkMessage::GetLink(LinkMessage::default());
    Ok(dump(host, req, "listing links")?
        .into_iter()
        .filter_map(|e| match e {
            Event::Link(l) => Some(l),
            _ => None,
        })
        .collect())
}

/// All interface addresses (IPv4 and IPv6).
pub fn addresses(host: &Host) -> Result<Vec<AddrInfo>, NetlinkError> {
    let req = RouteNetlinkMessage::GetAddress(AddressMessage::default());
    Ok(dump(host, req, "listing addresses")?
        .into_iter()
        .filter_map(|e| match e {
            Event::Addr(a) => Some(a),
            _ => None,
        })
        .collect())
}

/// All default routes, every table.
pub fn default_routes(host: &Host) -> Result<Vec<DefaultRoute>, NetlinkError> {
    let req = RouteNetlinkMessage::GetRoute(RouteMessage::default());
    Ok(dump(host, req, "listing routes")?
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
                receive::<RouteNetlinkMessage>(s.get_ref(), buf).map_err(|e| match e {
                    NetlinkError::Io(io) => io,
                    other => std::io::Error::other(other),
                })
            }) {
                Ok(r) => r?,
                Err(_would_block) => continue,
            };
            let mut out = Vec::new();
            for m in msgs {
                if let NetlinkPayload::InnerMessage(m) = m.payload {
                    out.extend(event(&m)?);
                }
            }
            return Ok(out);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use netlink_packet_route::link::LinkHeader;
    use netlink_packet_route::route::RouteHeader;

    #[test]
    fn maps_a_link_message() {
        let mut m = LinkMessage::default();
        m.header = LinkHeader {
            index: 7,
            flags: LinkFlags::Up | LinkFlags::LowerUp,
            ..LinkHeader::default()
        };
        m.attributes.push(LinkAttribute::IfName("eth1".into()));
        let Some(Event::Link(l)) = event(&RouteNetlinkMessage::NewLink(m.clone())).unwrap() else {
            panic!("not a link event");
        };
        assert_eq!(
            (l.index, l.name.as_str(), l.up, l.carrier),
            (7, "eth1", true, true)
        );
        let Some(Event::Link(gone)) = event(&RouteNetlinkMessage::DelLink(m.clone())).unwrap()
        else {
            panic!("not a link event");
        };
        assert!(!gone.exists);
        m.attributes = vec![LinkAttribute::IfName("a-much-too-long-name".into())];
        assert!(event(&RouteNetlinkMessage::NewLink(m)).is_err());
        assert_eq!(
            event(&RouteNetlinkMessage::GetLink(LinkMessage::default())).unwrap(),
            None
        );
    }

    #[test]
    fn maps_default_route_add_and_delete() {
        let mut m = RouteMessage::default();
        m.header = RouteHeader {
            address_family: AddressFamily::Inet,
            table: 254,
            ..RouteHeader::default()
        };
        m.attributes = vec![
            RouteAttribute::Gateway(RouteAddress::Inet("192.0.2.1".parse().unwrap())),
            RouteAttribute::Oif(3),
            RouteAttribute::Priority(20),
        ];
        let r = event(&RouteNetlinkMessage::NewRoute(m.clone())).unwrap();
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
        let Some(Event::Route(gone)) = event(&RouteNetlinkMessage::DelRoute(m.clone())).unwrap()
        else {
            panic!("not a route event");
        };
        assert!(!gone.exists);
        // Not a default route.
        m.header.destination_prefix_length = 24;
        assert_eq!(event(&RouteNetlinkMessage::NewRoute(m)).unwrap(), None);
    }

    /// The kernel's bytes for a link, decoded by `netlink-packet-route` and mapped by [`event`].
    #[test]
    fn decodes_kernel_bytes() {
        let mut m = LinkMessage::default();
        m.header.index = 7;
        m.header.flags = LinkFlags::Up;
        m.attributes.push(LinkAttribute::IfName("eth1".into()));
        let req = request(RouteNetlinkMessage::NewLink(m), 0);
        let mut bytes = vec![0u8; req.buffer_len()];
        req.serialize(&mut bytes);
        let msgs = crate::netlink::messages::<RouteNetlinkMessage>(&bytes).unwrap();
        let NetlinkPayload::InnerMessage(inner) = &msgs[0].payload else {
            panic!("not a data message");
        };
        let Some(Event::Link(l)) = event(inner).unwrap() else {
            panic!("not a link event");
        };
        assert_eq!(
            (l.index, l.name.as_str(), l.up, l.carrier),
            (7, "eth1", true, false)
        );
        assert!(crate::netlink::messages::<RouteNetlinkMessage>(&bytes[..20]).is_err());
    }
}
