#![no_main]
//! Kernel replies and events: datagram splitting and the rust-netlink decoders for rtnetlink and
//! the in-house `mptcp_pm` family, then the mapping to the uplink code's events and endpoints.

use libfuzzer_sys::fuzz_target;
use macula_net::links::event;
use macula_net::mptcp::{PmMessage, endpoints};
use macula_net::netlink::messages;
use netlink_packet_core::NetlinkPayload;
use netlink_packet_generic::GenlMessage;
use netlink_packet_route::RouteNetlinkMessage;

fuzz_target!(|data: &[u8]| {
    if let Ok(msgs) = messages::<RouteNetlinkMessage>(data) {
        for m in msgs {
            if let NetlinkPayload::InnerMessage(m) = m.payload {
                let _ = event(&m);
            }
        }
    }
    if let Ok(msgs) = messages::<GenlMessage<PmMessage>>(data) {
        for m in msgs {
            if let NetlinkPayload::InnerMessage(m) = m.payload {
                let _ = endpoints(&m.payload);
            }
        }
    }
});
