#![no_main]
//! Kernel replies and events: datagram splitting, the rtnetlink decoder of the uplink code (on
//! `netlink-packet-route` headers and address messages) and the in-house `mptcp_pm` family.

use libfuzzer_sys::fuzz_target;
use macula_net::links::RtEvent;
use macula_net::mptcp::{PmMessage, endpoints};
use macula_net::netlink::messages;
use netlink_packet_core::NetlinkPayload;
use netlink_packet_generic::GenlMessage;

fuzz_target!(|data: &[u8]| {
    let _ = messages::<RtEvent>(data);
    if let Ok(msgs) = messages::<GenlMessage<PmMessage>>(data) {
        for m in msgs {
            if let NetlinkPayload::InnerMessage(m) = m.payload {
                let _ = endpoints(&m.payload);
            }
        }
    }
});
