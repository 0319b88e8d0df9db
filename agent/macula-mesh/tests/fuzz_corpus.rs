//! The fuzz smoke (docs/fuzzing.md): each cargo-fuzz target's committed corpus and a few
//! thousand mutations of it, through the same function the target calls.

use macula_mesh::fuzzing;
use macula_testkit::fuzz::replay;

const DIR: &str = env!("CARGO_MANIFEST_DIR");

#[test]
fn beacon() {
    replay(DIR, "beacon", fuzzing::beacon);
}

#[test]
fn cert_text() {
    replay(DIR, "cert_text", fuzzing::cert_text);
}

#[test]
fn control_frames() {
    replay(DIR, "control_frames", fuzzing::control_frames);
}

#[test]
fn membership_packet() {
    replay(DIR, "membership_packet", fuzzing::membership_packet);
}

#[test]
fn ntp_reply() {
    replay(DIR, "ntp_reply", fuzzing::ntp_reply);
}

#[test]
fn relay_frame() {
    replay(DIR, "relay_frame", fuzzing::relay_frame);
}

#[test]
fn stream_messages() {
    replay(DIR, "stream_messages", fuzzing::stream_messages);
}

/// Seeds made by the real encoders, from the keys and times the targets use, so the fuzzer
/// starts from inputs that pass the signature and freshness checks.
#[test]
fn seeds_are_current() {
    use std::net::{IpAddr, Ipv4Addr, SocketAddr};
    use std::sync::Arc;

    use macula_core::{NodeKey, wire};
    use macula_mesh::beacon::BeaconState;
    use macula_mesh::dht::Request;
    use macula_mesh::membership::{MemberId, Membership, MembershipConfig, Output};
    use macula_mesh::ntp::{request, to_ntp};
    use macula_mesh::proto::{Control, Datagram, Hello};
    use macula_mesh::pubsub::PubSubMsg;
    use macula_mesh::realm::{Admission, CertBody, RealmKey, Role};
    use macula_mesh::relay::{RelayFrame, TAG_DELIVER, TAG_FORWARD};
    use macula_mesh::rpc::RpcRequest;
    use macula_mesh::{frame, frame::encode};
    use macula_testkit::fuzz::seed;

    let body = |realm: &RealmKey, node: &NodeKey, expires| CertBody {
        realm: realm.id(),
        node: node.node_id(),
        role: Role::Edge,
        name: "seed".into(),
        not_before: 0,
        expires,
    };

    // beacon: another member of the target's realm (seed 9) announcing itself.
    let realm = RealmKey::from_seed([9; 32]);
    let other = NodeKey::from_seed([3; 32]);
    let cert = realm.issue(body(&realm, &other, 1_900_000_000));
    let admission = Admission::new(other.node_id(), cert.clone(), 1_800_000_000).unwrap();
    let state = BeaconState::new(NodeKey::from_seed([3; 32]), Arc::new(admission), 4433);
    let ip = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1));
    seed(
        DIR,
        "beacon",
        "member",
        &state.make(ip, 1_800_000_000_000, [4; 16]),
    );

    // cert_text and control_frames: a certificate, and a Hello carrying it and a revocation.
    seed(DIR, "cert_text", "edge", cert.to_text().as_bytes());
    let hello = Control::Hello(Hello {
        realm: realm.id(),
        cert,
        listen: vec![SocketAddr::new(ip, 4433)],
        revocations: vec![realm.revoke(NodeKey::from_seed([4; 32]).node_id(), 1_000)],
    });
    seed(
        DIR,
        "control_frames",
        "hello",
        &encode(&hello, 64 * 1024).unwrap(),
    );

    // membership_packet: what the admitted peer (seed 2) sends when it joins the target's node.
    let (me, peer) = (NodeKey::from_seed([1; 32]), NodeKey::from_seed([2; 32]));
    let realm = RealmKey::from_seed([3; 32]);
    let now = 1_750_000_000;
    let mut m = Membership::new(
        MemberId {
            node: peer.node_id(),
            generation: 0,
        },
        realm.id(),
        None,
        MembershipConfig::lan(8),
        0,
        now,
    );
    m.admit(&realm.issue(body(&realm, &me, u64::MAX)), now)
        .unwrap();
    m.join(me.node_id());
    let packet = m
        .drain()
        .find_map(|o| match o {
            Output::Send { data, .. } => Some(data),
            _ => None,
        })
        .expect("a join sends a packet");
    seed(DIR, "membership_packet", "join", &packet);
    let datagram = wire::encode(&Datagram::Swim(packet));
    seed(DIR, "membership_packet", "join_datagram", &datagram);

    // ntp_reply: a stratum-2 server's answer to the target's request.
    let t1 = 1_800_000_000_000u64;
    let mut reply = [0u8; 48];
    reply[0] = 0x24; // version 4, server
    reply[1] = 2;
    reply[24..32].copy_from_slice(&request(t1)[40..48]);
    reply[32..40].copy_from_slice(&to_ntp(t1 + 20).to_be_bytes());
    reply[40..48].copy_from_slice(&to_ntp(t1 + 21).to_be_bytes());
    seed(DIR, "ntp_reply", "stratum_2", &reply);

    // relay_frame: a forward and a delivery.
    for (name, tag) in [("forward", TAG_FORWARD), ("deliver", TAG_DELIVER)] {
        let f = RelayFrame {
            tag,
            node: peer.node_id(),
            packet: &[0xc0, 1, 2, 3],
        };
        seed(DIR, "relay_frame", name, &f.encode());
    }

    // stream_messages: an RPC request, a subscription and a DHT lookup.
    let req = RpcRequest {
        procedure: "store.get".into(),
        deadline_ms: 5000,
        body: vec![1, 2, 3],
    };
    seed(
        DIR,
        "stream_messages",
        "rpc_request",
        &encode(&req, 1 << 22).unwrap(),
    );
    let sub = PubSubMsg::Subscribe {
        topic: "macula/rollout".into(),
    };
    seed(
        DIR,
        "stream_messages",
        "subscribe",
        &frame::encode(&sub, 1 << 17).unwrap(),
    );
    let find = Request::FindNode { target: [5; 32] };
    seed(
        DIR,
        "stream_messages",
        "dht_find_node",
        &wire::encode(&find),
    );
}
