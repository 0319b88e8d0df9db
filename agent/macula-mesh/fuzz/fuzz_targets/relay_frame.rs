#![no_main]
//! See `macula_mesh::fuzzing::relay_frame`.

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| macula_mesh::fuzzing::relay_frame(data));
