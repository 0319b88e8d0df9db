#![no_main]
//! See `macula_mesh::fuzzing::control_frames`.

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| macula_mesh::fuzzing::control_frames(data));
