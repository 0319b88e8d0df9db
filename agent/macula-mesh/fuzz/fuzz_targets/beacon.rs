#![no_main]
//! See `macula_mesh::fuzzing::beacon`.

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| macula_mesh::fuzzing::beacon(data));
