#![no_main]
//! See `macula_web::fuzzing::session_cookie`.

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| macula_web::fuzzing::session_cookie(data));
