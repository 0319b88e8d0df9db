//! The bodies of the cargo-fuzz targets in `fuzz/` (docs/fuzzing.md), one function per target:
//! each takes arbitrary bytes and checks what the decoder promises. The fuzz targets call them,
//! and `tests/fuzz_corpus.rs` replays each target's committed corpus (and mutations of it)
//! through them in `make test`.

/// LAN discovery beacons (UDP multicast, anyone on the LAN can send them).
pub fn beacon(data: &[u8]) {
    use std::net::{IpAddr, Ipv4Addr};

    use crate::beacon::{BeaconError, BeaconState};
    use crate::realm::{Admission, CertBody, RealmKey, Role};
    use macula_core::NodeKey;

    let realm = RealmKey::from_seed([9; 32]);
    let key = NodeKey::from_seed([2; 32]);
    let cert = realm.issue(CertBody {
        realm: realm.id(),
        node: key.node_id(),
        role: Role::Edge,
        name: "fuzz".into(),
        not_before: 0,
        expires: 1_900_000_000,
    });
    let admission =
        Admission::new(key.node_id(), cert, 1_800_000_000).expect("a valid certificate");
    let mut state = BeaconState::new(key, std::sync::Arc::new(admission), 4433);
    let src = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1));
    let first = state.receive(data, src, 1_800_000_000_000, |_| false);
    if first.is_ok() {
        // An accepted beacon is never accepted twice.
        assert_eq!(
            state.receive(data, src, 1_800_000_000_000, |_| false),
            Err(BeaconError::Replay)
        );
    }
}

/// Membership certificate files (`/boot/macula/realm.cert`, `maculactl realm join`).
pub fn cert_text(data: &[u8]) {
    use crate::realm::MembershipCert;

    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(cert) = MembershipCert::from_text(text) {
            let _ = cert.verify(&cert.body.realm, 1_000_000);
            assert_eq!(
                MembershipCert::from_text(&cert.to_text()).as_ref(),
                Ok(&cert)
            );
        }
    }
}

/// Stream framing + control frames (Hello with certificate, revocations): split frames off an
/// arbitrary byte stream and decode each, as the connection reader does.
pub fn control_frames(data: &[u8]) {
    use crate::frame;
    use crate::proto::Control;

    let mut rest = data;
    while let Ok(Some((frame, used))) = frame::decode::<Control>(rest, 64 * 1024) {
        let Control::Hello(h) = frame;
        let _ = h.cert.verify(&h.realm, 1_000_000);
        for r in &h.revocations {
            let _ = r.verify(&h.realm);
        }
        rest = &rest[used..];
    }
}

/// QUIC datagrams into the membership state machine: datagram envelope, SWIM (foca) packets,
/// rumors (signed metadata, revocations), metadata pull packets.
pub fn membership_packet(data: &[u8]) {
    use crate::membership::{MemberId, Membership, MembershipConfig};
    use crate::proto::Datagram;
    use crate::realm::{CertBody, RealmKey, Role};
    use macula_core::{NodeKey, wire};

    let me = NodeKey::from_seed([1; 32]).node_id();
    let peer = NodeKey::from_seed([2; 32]).node_id();
    let realm_key = RealmKey::from_seed([3; 32]);
    let realm = realm_key.id();
    let now = 1_750_000_000;
    let mut m = Membership::new(
        MemberId {
            node: me,
            generation: 0,
        },
        realm,
        None,
        MembershipConfig::lan(8),
        0,
        now,
    );
    // The sender is an admitted member (its Hello was checked).
    let cert = realm_key.issue(CertBody {
        realm,
        node: peer,
        role: Role::Edge,
        name: "peer".into(),
        not_before: 0,
        expires: u64::MAX,
    });
    m.admit(&cert, now).expect("a realm-issued certificate");
    if let Ok(Datagram::Swim(packet)) = wire::decode_with_limit::<Datagram>(data, 1400) {
        let _ = m.handle_packet(peer, &packet, now);
    }
    // The raw bytes as a membership packet too (skips the envelope).
    let _ = m.handle_packet(peer, data, now);
    let _ = m.drain().count();
}

/// SNTP replies (UDP from a configured server, or from anyone who can spoof its address).
pub fn ntp_reply(data: &[u8]) {
    use crate::ntp::{read_reply, request};

    let t1 = 1_800_000_000_000;
    if let Ok(r) = read_reply(data, t1, t1 + 50) {
        // Only a reply that names our request is read.
        assert_eq!(data[24..32], request(t1)[40..48]);
        assert!(r.stratum >= 1 && r.stratum <= 15);
    }
}

/// Hub relay frames (protocol.md §12): any UDP datagram reaching a mesh port may be one.
pub fn relay_frame(data: &[u8]) {
    use crate::relay::{HEADER_LEN, MAX_RELAY_DATAGRAM, RelayFrame, is_relay};

    if let Ok(f) = RelayFrame::parse(data) {
        assert!(is_relay(data));
        assert!(data.len() > HEADER_LEN && data.len() <= MAX_RELAY_DATAGRAM);
        // Parsing is exact: the frame re-encodes to the same bytes.
        assert_eq!(f.encode(), data);
    }
}

/// Frames on RPC and pub/sub streams, and DHT request bodies, fed to the state machines that
/// consume them: RPC request/reply, a stream reply split into frames as a stream caller reads it
/// (first frame at the plain limit, the rest at the stream limit, each through `stream_item`),
/// pub/sub messages (into a PubSub), DHT requests (into a Dht).
pub fn stream_messages(data: &[u8]) {
    use crate::dht::{Dht, DhtConfig, Request, Response};
    use crate::frame;
    use crate::pubsub::{PubSub, PubSubMsg};
    use crate::rpc::{
        MAX_CHUNK, MAX_RPC_FRAME, MAX_STREAM_FRAME, RpcReply, RpcRequest, StreamItem, plain_reply,
        stream_item,
    };
    use macula_core::{NodeKey, wire};

    let me = NodeKey::from_seed([1; 32]).node_id();
    let peer = NodeKey::from_seed([2; 32]).node_id();
    let _ = frame::decode::<RpcRequest>(data, 1 << 22)
        .map(|r| r.map(|(req, _)| crate::rpc::admit(&req)));
    if let Ok(Some((reply, _))) = frame::decode::<RpcReply>(data, MAX_RPC_FRAME) {
        let _ = plain_reply(reply);
    }
    let mut rest = data;
    let mut limit = MAX_RPC_FRAME;
    while let Ok(Some((reply, used))) = frame::decode::<RpcReply>(rest, limit) {
        match stream_item(reply) {
            Ok(StreamItem::Chunk(c)) => assert!(c.len() <= MAX_CHUNK),
            Ok(StreamItem::End) | Err(_) => break,
        }
        rest = &rest[used..];
        limit = MAX_STREAM_FRAME;
    }
    let mut ps = PubSub::new(NodeKey::from_seed([1; 32]), 0);
    ps.peer_up(peer);
    let mut rest = data;
    while let Ok(Some((msg, used))) = frame::decode::<PubSubMsg>(rest, 1 << 17) {
        ps.handle(peer, msg);
        rest = &rest[used..];
    }
    let _ = ps.drain().count();
    let mut dht = Dht::new(me, DhtConfig::default());
    if let Ok(req) = wire::decode::<Request>(data) {
        let _ = dht.handle_request(peer, req, 1_800_000_000);
    }
    let _ = wire::decode::<Response>(data);
}
