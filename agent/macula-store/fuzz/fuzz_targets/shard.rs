#![no_main]
//! See `macula_store::fuzzing::shard`.

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| macula_store::fuzzing::shard(data));
