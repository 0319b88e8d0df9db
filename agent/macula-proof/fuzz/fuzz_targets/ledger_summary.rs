#![no_main]
//! Epoch summary votes and certified summaries from the network (`Ledger::vote`,
//! `Ledger::adopt`): any bytes are refused or taken without panicking, and a copy that adopted a
//! summary saves to bytes that restore to the same copy.

use libfuzzer_sys::fuzz_target;
use macula_core::NodeKey;
use macula_proof::ledger::{Ledger, RewardParams};

fuzz_target!(|data: &[u8]| {
    let members: Vec<_> = (1..=3u8)
        .map(|i| NodeKey::from_seed([i; 32]).node_id())
        .collect();
    let mut l = Ledger::new(RewardParams::default());
    let _ = l.vote(data, &members);
    if let Ok(true) = l.adopt(data, &members) {
        let saved = l.snapshot();
        let again =
            Ledger::restore(RewardParams::default(), &saved).expect("a saved copy restores");
        assert_eq!(again.head(), l.head());
        assert_eq!(again.snapshot(), saved);
    }
});
