//! QUIC datagrams into the membership state machine: datagram envelope, SWIM (foca) packets,
//! rumors (signed metadata, revocations), metadata pull packets.
#![no_main]

use libfuzzer_sys::fuzz_target;
use macula_core::{NodeKey, wire};
use macula_mesh::membership::{MemberId, Membership, MembershipConfig};
use macula_mesh::proto::Datagram;
use macula_mesh::realm::{CertBody, RealmKey, Role};

fuzz_target!(|data: &[u8]| {
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
});
