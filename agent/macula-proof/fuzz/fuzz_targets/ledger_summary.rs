#![no_main]
//! See `macula_proof::fuzzing::ledger_summary`.

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| macula_proof::fuzzing::ledger_summary(data));
