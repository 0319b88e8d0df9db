//! The fuzz smoke (docs/fuzzing.md): each cargo-fuzz target's committed corpus and a few
//! thousand mutations of it, through the same function the target calls.

use macula_net::fuzzing;
use macula_testkit::fuzz::replay;

const DIR: &str = env!("CARGO_MANIFEST_DIR");

#[test]
fn netlink_reply() {
    replay(DIR, "netlink_reply", fuzzing::netlink_reply);
}

#[test]
fn probe_decode() {
    replay(DIR, "probe_decode", fuzzing::probe_decode);
}

#[test]
fn uapi_get() {
    replay(DIR, "uapi_get", fuzzing::uapi_get);
}

#[test]
fn wg_netlink() {
    replay(DIR, "wg_netlink", fuzzing::wg_netlink);
}

/// Seeds made by the real encoders: kernel messages as the kernel sends them (a link, an
/// address, a default route; a WireGuard device), and probe replies. The UAPI seeds are text.
#[test]
fn seeds_are_current() {
    use macula_net::overlay::kernel::{WgMessage, set_messages};
    use macula_net::uplinks::probe;
    use macula_testkit::fuzz::seed;
    use netlink_packet_core::{NetlinkHeader, NetlinkMessage, NetlinkPayload, NetlinkSerializable};
    use netlink_packet_generic::GenlMessage;
    use netlink_packet_route::AddressFamily;
    use netlink_packet_route::RouteNetlinkMessage;
    use netlink_packet_route::address::{AddressAttribute, AddressMessage};
    use netlink_packet_route::link::{LinkAttribute, LinkFlags, LinkMessage};
    use netlink_packet_route::route::{RouteAddress, RouteAttribute, RouteMessage};

    fn bytes<T: NetlinkSerializable + std::fmt::Debug>(payloads: Vec<T>) -> Vec<u8> {
        let mut out = Vec::new();
        for p in payloads {
            let mut m =
                NetlinkMessage::new(NetlinkHeader::default(), NetlinkPayload::InnerMessage(p));
            m.finalize();
            let at = out.len();
            out.resize(at + m.buffer_len(), 0);
            m.serialize(&mut out[at..]);
        }
        out
    }

    let mut link = LinkMessage::default();
    link.header.index = 7;
    link.header.flags = LinkFlags::Up | LinkFlags::LowerUp;
    link.attributes.push(LinkAttribute::IfName("eth1".into()));
    let mut addr = AddressMessage::default();
    addr.header.family = AddressFamily::Inet;
    addr.header.prefix_len = 24;
    addr.header.index = 7;
    addr.attributes
        .push(AddressAttribute::Address("192.0.2.10".parse().unwrap()));
    let mut route = RouteMessage::default();
    route.header.address_family = AddressFamily::Inet;
    route.header.table = 254;
    route.attributes = vec![
        RouteAttribute::Gateway(RouteAddress::Inet("192.0.2.1".parse().unwrap())),
        RouteAttribute::Oif(7),
        RouteAttribute::Priority(20),
    ];
    let events = bytes(vec![
        RouteNetlinkMessage::NewLink(link),
        RouteNetlinkMessage::NewAddress(addr),
        RouteNetlinkMessage::NewRoute(route),
    ]);
    seed(DIR, "netlink_reply", "link_addr_route", &events);

    let text = std::fs::read_to_string(format!("{DIR}/fuzz/corpus/wg_netlink/set_start")).unwrap();
    let device = set_messages("mcl0", &text)
        .unwrap()
        .into_iter()
        .map(|m| GenlMessage::from_payload(WgMessage(m)))
        .collect();
    seed(DIR, "wg_netlink", "device", &bytes(device));

    seed(DIR, "probe_decode", "link_3", &probe::encode(3, 1_000_000));
}
