#![no_main]
//! See `macula_s3::fuzzing::xml_bodies`.

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| macula_s3::fuzzing::xml_bodies(data));
