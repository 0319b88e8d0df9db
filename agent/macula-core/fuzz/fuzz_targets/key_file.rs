#![no_main]
//! The key file parser never panics; a key it accepts matches the ID recorded in the file.

use libfuzzer_sys::fuzz_target;
use macula_core::NodeKey;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(key) = NodeKey::parse_key_file(text) {
            let id = key.node_id().to_string();
            assert!(text.contains(&id));
        }
    }
});
