#![no_main]
//! See `macula_web::fuzzing::action_body`.

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| macula_web::fuzzing::action_body(data));
