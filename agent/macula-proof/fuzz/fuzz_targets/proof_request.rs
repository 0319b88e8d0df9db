#![no_main]
//! Proof requests as a prover receives them (RPC `proofs.challenge`): decoding any bytes never
//! panics, never yields more than `MAX_PICKS` picks, and answering a decoded request from a
//! stranger is refused before any work is done.

use libfuzzer_sys::fuzz_target;
use macula_core::NodeKey;
use macula_proof::driver::{Request, RequestError, answer};
use macula_proof::storage::{Item, MAX_PICKS, ShardSource};

struct Nothing;
impl ShardSource for Nothing {
    fn item(&self, _: &macula_store::header::SegmentId, _: u16, _: u32) -> Option<Item> {
        None
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(req) = Request::decode(data) else {
        return;
    };
    if let Request::Storage(ch) = &req {
        assert!(ch.picks.len() <= MAX_PICKS);
    }
    assert_eq!(Request::decode(&req.encode()).as_ref(), Ok(&req));
    let key = NodeKey::from_seed([2; 32]);
    let stranger = NodeKey::from_seed([9; 32]).node_id();
    // Only the prover itself and a stranger are members: the stranger is never the designated
    // verifier unless the request names it, and a request for another prover is refused.
    let r = answer(&key, stranger, &req, &[key.node_id()], &Nothing);
    assert!(matches!(
        r,
        Err(RequestError::NotMine(_) | RequestError::NotVerifier { .. })
    ));
});
