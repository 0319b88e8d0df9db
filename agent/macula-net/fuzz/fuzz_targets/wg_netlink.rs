#![no_main]
//! Kernel WireGuard `WG_CMD_GET_DEVICE` replies (netlink messages → device status) and the UAPI
//! `set` → netlink translation: bounded, never panic.

use libfuzzer_sys::fuzz_target;
use macula_net::netlink::parse_messages;
use macula_net::overlay::kernel::{decode_sockaddr, parse_device, set_requests};

fuzz_target!(|data: &[u8]| {
    if let Ok(msgs) = parse_messages(data) {
        let payloads: Vec<Vec<u8>> = msgs.iter().map(|m| m.payload.to_vec()).collect();
        let _ = parse_device(&payloads);
    }
    let _ = decode_sockaddr(data);
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = set_requests(0x20, "mcl0", text);
    }
});
