//! LAN discovery beacons (UDP multicast, anyone on the LAN can send them).
#![no_main]

use std::net::{IpAddr, Ipv4Addr};

use libfuzzer_sys::fuzz_target;
use macula_core::NodeKey;
use macula_mesh::beacon::{BeaconError, BeaconState};
use macula_mesh::realm::RealmId;

fuzz_target!(|data: &[u8]| {
    let realm = RealmId(NodeKey::from_seed([9; 32]).node_id());
    let mut state = BeaconState::new(NodeKey::from_seed([2; 32]), realm, 4433);
    let src = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1));
    let first = state.receive(data, src, 1_800_000_000_000);
    if first.is_ok() {
        // An accepted beacon is never accepted twice.
        assert_eq!(state.receive(data, src, 1_800_000_000_000), Err(BeaconError::Replay));
    }
});
