#![no_main]
//! See `macula_core::fuzzing::node_id`.

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| macula_core::fuzzing::node_id(data));
