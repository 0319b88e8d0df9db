#![no_main]
//! See `macula_s3::fuzzing::http_head`.

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| macula_s3::fuzzing::http_head(data));
