#![no_main]
//! See `macula_proof::fuzzing::proof_answer`.

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| macula_proof::fuzzing::proof_answer(data));
