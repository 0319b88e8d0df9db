#![no_main]
//! See `macula_core::fuzzing::config`.

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| macula_core::fuzzing::config(data));
