#![no_main]
//! See `macula_net::fuzzing::uapi_get`.

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| macula_net::fuzzing::uapi_get(data));
