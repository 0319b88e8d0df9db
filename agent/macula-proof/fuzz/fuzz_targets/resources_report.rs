#![no_main]
//! See `macula_proof::fuzzing::resources_report`.

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| macula_proof::fuzzing::resources_report(data));
