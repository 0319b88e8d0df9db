#![no_main]
//! The inventory part decoder and the assembler must never panic on any input; a list that
//! completes re-encodes to parts the assembler accepts again.

use libfuzzer_sys::fuzz_target;
use macula_core::NodeKey;
use macula_store::inventory::{self, Assembler};

fuzz_target!(|data: &[u8]| {
    let from = NodeKey::from_seed([7; 32]).node_id();
    let mut a = Assembler::default();
    // Split the input into up to four parts fed in turn (several rounds and part numbers).
    for part in data.chunks(data.len().div_ceil(4).max(1)) {
        if let Ok(Some(list)) = a.feed(from, part) {
            let mut again = Assembler::default();
            let parts = inventory::encode(1, &list);
            let n = parts.len();
            for (i, p) in parts.iter().enumerate() {
                let got = again.feed(from, p).expect("own encoding accepted");
                assert_eq!(got.is_some(), i + 1 == n);
            }
        }
    }
});
