#![no_main]
//! See `macula_update::fuzzing::rollout_waves`.

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| macula_update::fuzzing::rollout_waves(data));
