#![no_main]
//! Saved ledger copies (`Ledger::restore`): any bytes are refused or restored without
//! panicking; a restored copy saves to bytes that restore to the same copy.

use libfuzzer_sys::fuzz_target;
use macula_proof::ledger::{Ledger, RewardParams};

fuzz_target!(|data: &[u8]| {
    if let Ok(l) = Ledger::restore(RewardParams::default(), data) {
        let saved = l.snapshot();
        let again = Ledger::restore(RewardParams::default(), &saved).expect("a saved copy restores");
        assert_eq!(again.head(), l.head());
        assert_eq!(again.snapshot(), saved);
    }
});
