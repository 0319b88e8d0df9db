#![no_main]
//! Manifest and capability decoders must never panic; accepted values re-encode identically.

use libfuzzer_sys::fuzz_target;
use macula_store::object::{Capability, Manifest};

fuzz_target!(|data: &[u8]| {
    if let Ok(m) = Manifest::decode(data) {
        assert_eq!(m.encode(), data);
    }
    if let Ok(text) = std::str::from_utf8(data)
        && let Ok(cap) = text.parse::<Capability>()
    {
        assert_eq!(cap.to_string(), text.trim());
    }
});
