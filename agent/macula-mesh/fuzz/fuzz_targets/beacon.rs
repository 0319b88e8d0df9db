//! LAN discovery beacons (UDP multicast, anyone on the LAN can send them).
#![no_main]

use std::net::{IpAddr, Ipv4Addr};

use libfuzzer_sys::fuzz_target;
use macula_core::NodeKey;
use macula_mesh::beacon::{BeaconError, BeaconState};
use macula_mesh::realm::{Admission, CertBody, RealmKey, Role};

fuzz_target!(|data: &[u8]| {
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
    let admission = Admission::new(key.node_id(), cert, 1_800_000_000).expect("a valid certificate");
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
});
