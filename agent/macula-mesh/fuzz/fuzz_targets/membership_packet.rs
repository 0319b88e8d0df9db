//! QUIC datagrams into the membership state machine: datagram envelope, SWIM (foca) packets,
//! rumors (signed metadata, revocations), metadata pull packets.
#![no_main]

use libfuzzer_sys::fuzz_target;
use macula_core::{NodeKey, wire};
use macula_mesh::membership::{MemberId, Membership, MembershipConfig};
use macula_mesh::proto::Datagram;
use macula_mesh::realm::RealmKey;

fuzz_target!(|data: &[u8]| {
    let me = NodeKey::from_seed([1; 32]).node_id();
    let peer = NodeKey::from_seed([2; 32]).node_id();
    let realm = RealmKey::from_seed([3; 32]).id();
    let mut m = Membership::new(
        MemberId { node: me, generation: 0 },
        realm,
        None,
        MembershipConfig::lan(8),
        0,
    );
    if let Ok(Datagram::Swim(packet)) = wire::decode_with_limit::<Datagram>(data, 1400) {
        let _ = m.handle_packet(peer, &packet);
    }
    // The raw bytes as a membership packet too (skips the envelope).
    let _ = m.handle_packet(peer, data);
    let _ = m.drain().count();
});
