#![no_main]
//! Whole-shard parsing (header, length, outboard, root) must never panic.

use libfuzzer_sys::fuzz_target;
use macula_store::segment::{Shard, Trust};

fuzz_target!(|data: &[u8]| {
    if let Ok(shard) = Shard::from_bytes(data, Trust::Signature) {
        assert_eq!(shard.to_bytes(), data);
    }
});
