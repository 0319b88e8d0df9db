//! The bodies of the cargo-fuzz targets in `fuzz/` (docs/fuzzing.md), one function per target:
//! each takes arbitrary bytes and checks what the decoder promises. The fuzz targets call them,
//! and `tests/fuzz_corpus.rs` replays each target's committed corpus (and mutations of it)
//! through them in `make test`.

/// Kernel replies and events: datagram splitting, the rtnetlink decoder of the uplink code (on
/// `netlink-packet-route` headers and address messages) and the in-house `mptcp_pm` family.
pub fn netlink_reply(data: &[u8]) {
    use crate::links::RtEvent;
    use crate::mptcp::{PmMessage, endpoints};
    use crate::netlink::messages;
    use netlink_packet_core::NetlinkPayload;
    use netlink_packet_generic::GenlMessage;

    let _ = messages::<RtEvent>(data);
    if let Ok(msgs) = messages::<GenlMessage<PmMessage>>(data) {
        for m in msgs {
            if let NetlinkPayload::InnerMessage(m) = m.payload {
                let _ = endpoints(&m.payload);
            }
        }
    }
}

/// Uplink probe replies (UDP from the far end of an uplink, or anyone who can reach the port):
/// never panics, and what decodes re-encodes to the same bytes.
pub fn probe_decode(data: &[u8]) {
    use crate::uplinks::probe;

    if let Some((link, seq)) = probe::decode(data) {
        assert_eq!(probe::encode(link, seq).as_slice(), data);
    }
}

/// Replies to the WireGuard UAPI `get=1` (from the userspace device's socket): never panics and
/// never yields more than `MAX_PEERS` peers.
pub fn uapi_get(data: &[u8]) {
    if let Ok(dev) = crate::overlay::uapi::parse_get(data) {
        assert!(dev.peers.len() <= crate::overlay::uapi::MAX_PEERS);
    }
}

/// Kernel WireGuard `WG_CMD_GET_DEVICE` replies (netlink messages → `netlink-packet-wireguard`
/// → device status) and the UAPI `set` → netlink translation: bounded, never panic.
pub fn wg_netlink(data: &[u8]) {
    use crate::netlink::messages;
    use crate::overlay::kernel::{WgMessage, parse_device, set_messages};
    use netlink_packet_core::{Emitable, NetlinkPayload};
    use netlink_packet_generic::GenlMessage;
    use netlink_packet_wireguard::WireguardMessage;

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
}
