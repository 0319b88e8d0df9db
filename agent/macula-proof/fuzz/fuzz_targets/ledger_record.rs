#![no_main]
//! Ledger records: any bytes are refused or accepted without panicking; a refused record leaves
//! the head unchanged.

use libfuzzer_sys::fuzz_target;
use macula_proof::ledger::{Ledger, RewardParams};

fuzz_target!(|data: &[u8]| {
    let mut l = Ledger::new(RewardParams::default());
    for part in data.chunks(data.len().div_ceil(3).max(1)) {
        let head = l.head();
        if l.insert(part).is_err() {
            assert_eq!(l.head(), head);
        }
    }
});
