//! SNTP replies (UDP from a configured server, or from anyone who can spoof its address).
#![no_main]

use libfuzzer_sys::fuzz_target;
use macula_mesh::ntp::{read_reply, request};

fuzz_target!(|data: &[u8]| {
    let t1 = 1_800_000_000_000;
    if let Ok(r) = read_reply(data, t1, t1 + 50) {
        // Only a reply that names our request is read.
        assert_eq!(data[24..32], request(t1)[40..48]);
        assert!(r.stratum >= 1 && r.stratum <= 15);
    }
});
