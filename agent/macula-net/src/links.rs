//! Uplink discovery and link events over rtnetlink: links (carrier), addresses and default routes
//! by dump requests, and a subscription to link, address and default-route changes for the uplink
//! monitor.
//! [`parse_link`], [`parse_addr`] and [`parse_route`] decode kernel messages (bounded, fuzzed).

use std::net::IpAddr;
use std::os::fd::{AsRawFd, OwnedFd};

use tokio::io::unix::AsyncFd;

use crate::cmd::Host;
use crate::netlink::{
    Builder, NLM_F_DUMP, NLM_F_REQUEST, NetlinkError, parse_attrs, parse_messages, transact, u32_of,
};

const NETLINK_ROUTE: i32 = 0;
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
const IFA_ADDRESS: u16 = 1;
const IFA_LOCAL: u16 = 2;
const RTA_OIF: u16 = 4;
const RTA_GATEWAY: u16 = 5;
const RTA_PRIORITY: u16 = 6;
const RTA_TABLE: u16 = 15;
const IFF_UP: u32 = 0x1;
const IFF_LOOPBACK: u32 = 0x8;
const IFF_LOWER_UP: u32 = 0x10000;
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

fn ip_of(data: &[u8]) -> Option<IpAddr> {
    match data.len() {
        4 => Some(IpAddr::from(<[u8; 4]>::try_from(data).ok()?)),
        16 => Some(IpAddr::from(<[u8; 16]>::try_from(data).ok()?)),
        _ => None,
    }
}

/// Decodes `RTM_NEWLINK`/`RTM_DELLINK` (`ifinfomsg` + attributes); other kinds give `None`.
pub fn parse_link(kind: u16, payload: &[u8]) -> Result<Option<LinkInfo>, NetlinkError> {
    if kind != RTM_NEWLINK && kind != RTM_DELLINK {
        return Ok(None);
    }
    let hdr = payload
        .get(..16)
        .ok_or(NetlinkError::Malformed("short ifinfomsg"))?;
    let index = i32::from_ne_bytes(hdr[4..8].try_into().expect("4"));
    let flags = u32::from_ne_bytes(hdr[8..12].try_into().expect("4"));
    let mut name = String::new();
    for a in parse_attrs(&payload[16..])? {
        if a.kind == IFLA_IFNAME {
            let raw = a.data.split(|&b| b == 0).next().unwrap_or_default();
            if raw.len() > 15 {
                return Err(NetlinkError::Malformed("interface name too long"));
            }
            name = String::from_utf8_lossy(raw).into_owned();
        }
    }
    Ok(Some(LinkInfo {
        index,
        name,
        up: flags & IFF_UP != 0,
        carrier: flags & IFF_UP != 0 && flags & IFF_LOWER_UP != 0,
        loopback: flags & IFF_LOOPBACK != 0,
        exists: kind == RTM_NEWLINK,
    }))
}

/// Decodes `RTM_NEWADDR`/`RTM_DELADDR` (`ifaddrmsg` + attributes).
pub fn parse_addr(kind: u16, payload: &[u8]) -> Result<Option<AddrInfo>, NetlinkError> {
    if kind != RTM_NEWADDR && kind != RTM_DELADDR {
        return Ok(None);
    }
    let hdr = payload
        .get(..8)
        .ok_or(NetlinkError::Malformed("short ifaddrmsg"))?;
    let prefix_len = hdr[1];
    let index = u32::from_ne_bytes(hdr[4..8].try_into().expect("4")) as i32;
    let (mut local, mut address) = (None, None);
    for a in parse_attrs(&payload[8..])? {
        match a.kind {
            IFA_LOCAL => local = ip_of(a.data),
            IFA_ADDRESS => address = ip_of(a.data),
            _ => {}
        }
    }
    Ok(local.or(address).map(|addr| AddrInfo {
        index,
        addr,
        prefix_len,
        exists: kind == RTM_NEWADDR,
    }))
}

/// Decodes `RTM_NEWROUTE`/`RTM_DELROUTE` (`rtmsg` + attributes); only default routes
/// (`dst_len` 0) are returned.
pub fn parse_route(kind: u16, payload: &[u8]) -> Result<Option<DefaultRoute>, NetlinkError> {
    if kind != RTM_NEWROUTE && kind != RTM_DELROUTE {
        return Ok(None);
    }
    let hdr = payload
        .get(..12)
        .ok_or(NetlinkError::Malformed("short rtmsg"))?;
    if hdr[1] != 0 {
        return Ok(None);
    }
    let mut r = DefaultRoute {
        table: u32::from(hdr[4]),
        oif: 0,
        gateway: None,
        metric: 0,
        ipv4: hdr[0] == libc::AF_INET as u8,
        exists: kind == RTM_NEWROUTE,
    };
    for a in parse_attrs(&payload[12..])? {
        match a.kind {
            RTA_OIF => r.oif = u32_of(&a)? as i32,
            RTA_GATEWAY => r.gateway = ip_of(a.data),
            RTA_TABLE => r.table = u32_of(&a)?,
            RTA_PRIORITY => r.metric = u32_of(&a)?,
            _ => {}
        }
    }
    Ok(Some(r))
}

fn dump(
    host: &Host,
    kind: u16,
    header: &[u8],
    what: &'static str,
) -> Result<Vec<Vec<u8>>, NetlinkError> {
    let fd = crate::netlink::open(host, NETLINK_ROUTE, 0)?;
    let b = Builder::new(kind, NLM_F_REQUEST | NLM_F_DUMP, header);
    transact(&fd, &b.finish(), what)
}

/// All links.
pub fn links(host: &Host) -> Result<Vec<LinkInfo>, NetlinkError> {
    let mut out = Vec::new();
    for p in dump(host, RTM_GETLINK, &[0u8; 16], "listing links")? {
        out.extend(parse_link(RTM_NEWLINK, &p)?);
    }
    Ok(out)
}

/// All interface addresses (IPv4 and IPv6).
pub fn addresses(host: &Host) -> Result<Vec<AddrInfo>, NetlinkError> {
    let mut out = Vec::new();
    for p in dump(host, RTM_GETADDR, &[0u8; 8], "listing addresses")? {
        out.extend(parse_addr(RTM_NEWADDR, &p)?);
    }
    Ok(out)
}

/// All default routes, every table.
pub fn default_routes(host: &Host) -> Result<Vec<DefaultRoute>, NetlinkError> {
    let mut out = Vec::new();
    for p in dump(host, RTM_GETROUTE, &[0u8; 12], "listing routes")? {
        out.extend(parse_route(RTM_NEWROUTE, &p)?);
    }
    Ok(out)
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
    fd: AsyncFd<OwnedFd>,
    buf: Vec<u8>,
}

impl LinkEvents {
    pub fn subscribe(host: &Host) -> Result<Self, NetlinkError> {
        let fd = crate::netlink::open(
            host,
            NETLINK_ROUTE,
            RTMGRP_LINK
                | RTMGRP_IPV4_IFADDR
                | RTMGRP_IPV6_IFADDR
                | RTMGRP_IPV4_ROUTE
                | RTMGRP_IPV6_ROUTE,
        )?;
        // SAFETY: fcntl on our own fd.
        unsafe {
            let fl = libc::fcntl(fd.as_raw_fd(), libc::F_GETFL);
            if fl < 0 || libc::fcntl(fd.as_raw_fd(), libc::F_SETFL, fl | libc::O_NONBLOCK) < 0 {
                return Err(std::io::Error::last_os_error().into());
            }
        }
        // SAFETY: `OwnedFd::as_raw_fd` returns the fd it owns, for as long as it lives.
        let fd = unsafe { AsyncFd::register(fd) }.map_err(|e| e.into_parts().1)?;
        Ok(Self {
            fd,
            buf: vec![0u8; 65536],
        })
    }

    /// The next batch of changes.
    pub async fn next(&mut self) -> Result<Vec<Event>, NetlinkError> {
        loop {
            let mut guard = self.fd.readable().await?;
            let buf = &mut self.buf;
            let res = guard.try_io(|fd| {
                // SAFETY: recv into our buffer on our own socket.
                let n =
                    unsafe { libc::recv(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
                if n < 0 {
                    Err(std::io::Error::last_os_error())
                } else {
                    Ok(n as usize)
                }
            });
            let n = match res {
                Ok(r) => r?,
                Err(_would_block) => continue,
            };
            let mut out = Vec::new();
            for m in parse_messages(&self.buf[..n])? {
                out.extend(parse_link(m.kind, m.payload)?.map(Event::Link));
                out.extend(parse_addr(m.kind, m.payload)?.map(Event::Addr));
                out.extend(parse_route(m.kind, m.payload)?.map(Event::Route));
            }
            return Ok(out);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_link_message() {
        let mut p = vec![0u8; 16];
        p[4..8].copy_from_slice(&7i32.to_ne_bytes());
        p[8..12].copy_from_slice(&(IFF_UP | IFF_LOWER_UP).to_ne_bytes());
        let mut b = Builder::attrs();
        b.attr(IFLA_IFNAME, b"eth1\0");
        p.extend_from_slice(&b.finish_attrs());
        let l = parse_link(RTM_NEWLINK, &p).unwrap().unwrap();
        assert_eq!(
            (l.index, l.name.as_str(), l.up, l.carrier),
            (7, "eth1", true, true)
        );
        assert!(!parse_link(RTM_DELLINK, &p).unwrap().unwrap().exists);
        assert!(parse_link(RTM_NEWLINK, &p[..10]).is_err());
        assert_eq!(parse_link(99, &p).unwrap(), None);
    }

    #[test]
    fn parses_default_route_add_and_delete() {
        // rtmsg: family AF_INET, dst_len 0, …, table 254 at byte 4.
        let mut p = vec![0u8; 12];
        p[0] = libc::AF_INET as u8;
        p[4] = 254;
        let mut b = Builder::attrs();
        b.attr(RTA_GATEWAY, &[192, 0, 2, 1]);
        b.attr(RTA_OIF, &3u32.to_ne_bytes());
        b.attr(RTA_PRIORITY, &20u32.to_ne_bytes());
        p.extend_from_slice(&b.finish_attrs());
        let r = parse_route(RTM_NEWROUTE, &p).unwrap().unwrap();
        assert_eq!(
            r,
            DefaultRoute {
                table: 254,
                oif: 3,
                gateway: Some("192.0.2.1".parse().unwrap()),
                metric: 20,
                ipv4: true,
                exists: true,
            }
        );
        assert!(!parse_route(RTM_DELROUTE, &p).unwrap().unwrap().exists);
        // Not a default route.
        p[1] = 24;
        assert_eq!(parse_route(RTM_NEWROUTE, &p).unwrap(), None);
        assert!(parse_route(RTM_NEWROUTE, &p[..8]).is_err());
    }
}
