#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(dev) = macula_net::overlay::uapi::parse_get(data) {
        assert!(dev.peers.len() <= macula_net::overlay::uapi::MAX_PEERS);
    }
});
