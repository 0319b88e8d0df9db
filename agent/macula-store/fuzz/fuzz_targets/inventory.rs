#![no_main]
//! See `macula_store::fuzzing::inventory`.

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| macula_store::fuzzing::inventory(data));
