#![no_main]
//! See `macula_core::fuzzing::key_file`.

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| macula_core::fuzzing::key_file(data));
