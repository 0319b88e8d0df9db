#![no_main]
//! A received resource report never panics the decoder, and the /proc parsers never panic on
//! any text.

use libfuzzer_sys::fuzz_target;
use macula_proof::resources::{self, SignedResources};

fuzz_target!(|data: &[u8]| {
    let _ = SignedResources::decode_verified(data);
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = resources::parse_cpuinfo(text);
        let _ = resources::parse_stat(text);
        let _ = resources::parse_meminfo(text);
        let _ = resources::parse_loadavg(text);
        let _ = resources::parse_uptime(text);
        let _ = resources::parse_net_dev(text);
    }
});
