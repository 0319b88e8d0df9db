//! Which local addresses a node announces to members when `[mesh] advertise` is empty and it
//! listens on the unspecified address (sans-IO: the shell lists interfaces and addresses).

use std::net::{IpAddr, SocketAddr};

use crate::membership::MAX_META_ADDRS;

/// An interface as the shell read it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interface {
    pub index: i32,
    pub name: String,
    pub up: bool,
    pub loopback: bool,
}

/// An address of the interface `index`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InterfaceAddr {
    pub index: i32,
    pub addr: IpAddr,
}

/// The addresses announced when listening on `listen` with `advertise` configured, each with its
/// interface (uplink) name: `advertise` as written (no names: uplink `default`); else, when
/// `listen` is the unspecified address, every address of the listen family on every up,
/// non-loopback interface, IPv6 link-local skipped, at most [`MAX_META_ADDRS`] (members refuse
/// more), in the order listed; else nothing (the bound address is announced).
///
/// `interfaces` is asked only when needed: it lists the host's interfaces and addresses.
pub fn select<E>(
    listen: SocketAddr,
    advertise: &[SocketAddr],
    interfaces: impl FnOnce() -> Result<(Vec<Interface>, Vec<InterfaceAddr>), E>,
) -> Result<(Vec<SocketAddr>, Vec<String>), E> {
    if !advertise.is_empty() || !listen.ip().is_unspecified() {
        return Ok((advertise.to_vec(), vec![]));
    }
    let (links, addrs) = interfaces()?;
    let mut out = (vec![], vec![]);
    for a in &addrs {
        let Some(link) = links.iter().find(|l| l.index == a.index) else {
            continue;
        };
        let link_local = matches!(a.addr, IpAddr::V6(v6) if v6.segments()[0] & 0xffc0 == 0xfe80);
        if !link.up
            || link.loopback
            || link_local
            || a.addr.is_ipv4() != listen.is_ipv4()
            || out.0.len() == MAX_META_ADDRS
        {
            continue;
        }
        out.0.push(SocketAddr::new(a.addr, listen.port()));
        out.1.push(link.name.clone());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn iface(index: i32, name: &str, up: bool, loopback: bool) -> Interface {
        Interface {
            index,
            name: name.into(),
            up,
            loopback,
        }
    }

    fn addr(index: i32, a: &str) -> InterfaceAddr {
        InterfaceAddr {
            index,
            addr: a.parse().unwrap(),
        }
    }

    type Listed = Result<(Vec<Interface>, Vec<InterfaceAddr>), String>;

    fn host() -> Listed {
        Ok((
            vec![
                iface(1, "lo", true, true),
                iface(2, "eth0", true, false),
                iface(3, "wlan0", true, false),
                iface(4, "eth1", false, false),
            ],
            vec![
                addr(1, "127.0.0.1"),
                addr(2, "192.168.1.5"),
                addr(2, "fe80::1"),
                addr(2, "2001:db8::5"),
                addr(3, "10.0.0.7"),
                addr(4, "172.16.0.1"),
                addr(9, "172.16.9.9"),
            ],
        ))
    }

    #[test]
    fn configured_or_bound_addresses_win_without_listing_interfaces() {
        let adv: SocketAddr = "203.0.113.1:7946".parse().unwrap();
        let never = || -> Listed { panic!("interfaces listed") };
        let got = select("0.0.0.0:7946".parse().unwrap(), &[adv], never).unwrap();
        assert_eq!(got, (vec![adv], vec![]));
        let got = select("192.168.1.5:7946".parse().unwrap(), &[], never).unwrap();
        assert_eq!(got, (vec![], vec![]));
    }

    #[test]
    fn unspecified_listen_announces_up_non_loopback_addresses_of_its_family() {
        let got = select("0.0.0.0:7946".parse().unwrap(), &[], host).unwrap();
        assert_eq!(
            got,
            (
                vec![
                    "192.168.1.5:7946".parse().unwrap(),
                    "10.0.0.7:7946".parse().unwrap()
                ],
                vec!["eth0".to_string(), "wlan0".to_string()]
            )
        );
        // IPv6: the link-local address is skipped.
        let got = select("[::]:7946".parse().unwrap(), &[], host).unwrap();
        assert_eq!(
            got,
            (
                vec!["[2001:db8::5]:7946".parse().unwrap()],
                vec!["eth0".to_string()]
            )
        );
    }

    #[test]
    fn at_most_what_members_accept_and_listing_errors_pass_through() {
        let many = || -> Listed {
            Ok((
                vec![iface(2, "eth0", true, false)],
                (1..=MAX_META_ADDRS as u8 + 3)
                    .map(|i| addr(2, &format!("10.0.0.{i}")))
                    .collect(),
            ))
        };
        let (addrs, names) = select("0.0.0.0:1".parse().unwrap(), &[], many).unwrap();
        assert_eq!(addrs.len(), MAX_META_ADDRS);
        assert_eq!(names.len(), MAX_META_ADDRS);
        let failing = || -> Listed { Err("no netlink".into()) };
        assert_eq!(
            select("0.0.0.0:1".parse().unwrap(), &[], failing),
            Err("no netlink".to_string())
        );
    }
}
