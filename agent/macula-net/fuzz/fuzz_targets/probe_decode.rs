#![no_main]
//! See `macula_net::fuzzing::probe_decode`.

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| macula_net::fuzzing::probe_decode(data));
