#![no_main]
//! Kernel WireGuard `WG_CMD_GET_DEVICE` replies (netlink messages → `netlink-packet-wireguard`
//! → device status) and the UAPI `set` → netlink translation: bounded, never panic.

use libfuzzer_sys::fuzz_target;
use macula_net::netlink::messages;
use macula_net::overlay::kernel::{WgMessage, parse_device, set_messages};
use netlink_packet_core::{Emitable, NetlinkPayload};
use netlink_packet_generic::GenlMessage;
use netlink_packet_wireguard::WireguardMessage;

fuzz_target!(|data: &[u8]| {
    if let Ok(msgs) = messages::<GenlMessage<WgMessage>>(data) {
        let payloads: Vec<WireguardMessage> = msgs
            .into_iter()
            .filter_map(|m| match m.payload {
                NetlinkPayload::InnerMessage(g) => Some(g.payload.0),
                _ => None,
            })
            .collect();
        let _ = parse_device(&payloads);
    }
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(msgs) = set_messages("mcl0", text) {
            for m in msgs {
                let mut buf = vec![0u8; m.buffer_len()];
                m.emit(&mut buf);
            }
        }
    }
});
