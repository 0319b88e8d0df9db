#![no_main]
//! Node ID and base32 parsing never panic, and what they accept prints back to the same text
//! (one spelling per value).

use libfuzzer_sys::fuzz_target;
use macula_core::{NodeId, base32};

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(id) = s.parse::<NodeId>() {
        assert_eq!(id.to_string(), s);
    }
    if let Ok(bytes) = base32::decode(s) {
        assert_eq!(base32::encode(&bytes), s);
    }
});
