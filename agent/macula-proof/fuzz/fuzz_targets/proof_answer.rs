#![no_main]
//! Signed answers and the capacity/storage answer bodies inside them: decoding and verifying
//! any bytes against a fixed challenge never panics, and nothing but the honest answer passes.

use libfuzzer_sys::fuzz_target;
use macula_core::{NodeKey, wire};
use macula_proof::{MAX_ANSWER, SignedAnswer, capacity, storage};

fuzz_target!(|data: &[u8]| {
    let prover = NodeKey::from_seed([2; 32]).node_id();
    let _ = SignedAnswer::decode_verified(data, &prover);
    let ch = capacity::Challenge {
        verifier: NodeKey::from_seed([1; 32]).node_id(),
        prover,
        epoch: 1,
        nonce: [0; 32],
        steps: 64,
        segments: 8,
        deadline_ms: 1000,
    };
    if let Ok(a) = wire::decode_with_limit::<capacity::Answer>(data, MAX_ANSWER) {
        if capacity::verify(&ch, &a, 8).is_ok() {
            assert_eq!(a, capacity::prove(&ch).unwrap());
        }
    }
    if let Ok(a) = wire::decode_with_limit::<storage::Answer>(data, MAX_ANSWER) {
        let sch = storage::Challenge {
            verifier: ch.verifier,
            prover,
            epoch: 1,
            nonce: [0; 32],
            picks: vec![storage::Pick {
                segment: [3; 32],
                index: 0,
                selector: 0,
            }],
            deadline_ms: 1000,
        };
        if let Ok(items) = storage::verify(&sch, &a) {
            // No header can hash to the made-up segment ID.
            assert!(items.iter().all(|r| r.is_err()));
        }
    }
});
