#![no_main]
//! See `macula_s3::fuzzing::aws_chunked`.

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| macula_s3::fuzzing::aws_chunked(data));
