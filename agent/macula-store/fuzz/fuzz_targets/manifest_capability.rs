#![no_main]
//! See `macula_store::fuzzing::manifest_capability`.

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| macula_store::fuzzing::manifest_capability(data));
