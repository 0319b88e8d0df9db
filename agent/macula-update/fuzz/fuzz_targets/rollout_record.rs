#![no_main]
//! See `macula_update::fuzzing::rollout_record`.

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| macula_update::fuzzing::rollout_record(data));
