//! The bodies of the cargo-fuzz targets in `fuzz/` (docs/fuzzing.md), one function per target:
//! each takes arbitrary bytes and checks what the decoder promises. The fuzz targets call them,
//! and `tests/fuzz_corpus.rs` replays each target's committed corpus (and mutations of it)
//! through them in `make test`.

/// Ledger records: any bytes are refused or accepted without panicking; a refused record leaves
/// the head unchanged.
pub fn ledger_record(data: &[u8]) {
    use crate::ledger::{Ledger, RewardParams};

    let mut l = Ledger::new(RewardParams::default());
    for part in data.chunks(data.len().div_ceil(3).max(1)) {
        let head = l.head();
        if l.insert(part).is_err() {
            assert_eq!(l.head(), head);
        }
    }
}

/// Saved ledger copies (`Ledger::restore`): any bytes are refused or restored without
/// panicking; a restored copy saves to bytes that restore to the same copy.
pub fn ledger_snapshot(data: &[u8]) {
    use crate::ledger::{Ledger, RewardParams};

    if let Ok(l) = Ledger::restore(RewardParams::default(), data) {
        let saved = l.snapshot();
        let again =
            Ledger::restore(RewardParams::default(), &saved).expect("a saved copy restores");
        assert_eq!(again.head(), l.head());
        assert_eq!(again.snapshot(), saved);
    }
}

/// Epoch summary votes and certified summaries from the network (`Ledger::vote`,
/// `Ledger::adopt`): any bytes are refused or taken without panicking, and a copy that adopted a
/// summary saves to bytes that restore to the same copy.
pub fn ledger_summary(data: &[u8]) {
    use crate::ledger::{Ledger, RewardParams};
    use macula_core::NodeKey;

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
}

/// Signed answers and the capacity/storage answer bodies inside them: decoding and verifying
/// any bytes against a fixed challenge never panics, and nothing but the honest answer passes.
pub fn proof_answer(data: &[u8]) {
    use crate::{MAX_ANSWER, SignedAnswer, capacity, storage};
    use macula_core::{NodeKey, wire};

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
            assert_eq!(
                a,
                capacity::prove(&ch).expect("a challenge whose answer verified can be proved")
            );
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
}

/// Proof requests as a prover receives them (RPC `proofs.challenge`): decoding any bytes never
/// panics, never yields more than `MAX_PICKS` picks, and answering a decoded request from a
/// stranger is refused before any work is done.
pub fn proof_request(data: &[u8]) {
    use crate::driver::{Request, RequestError, answer};
    use crate::storage::{Item, MAX_PICKS, ShardSource};
    use macula_core::NodeKey;

    struct Nothing;
    impl ShardSource for Nothing {
        fn item(&self, _: &macula_store::header::SegmentId, _: u16, _: u32) -> Option<Item> {
            None
        }
    }

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
}

/// A received resource report never panics the decoder, and the /proc parsers never panic on
/// any text.
pub fn resources_report(data: &[u8]) {
    use crate::resources::{self, SignedResources};

    let _ = SignedResources::decode_verified(data);
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = resources::parse_cpuinfo(text);
        let _ = resources::parse_stat(text);
        let _ = resources::parse_meminfo(text);
        let _ = resources::parse_loadavg(text);
        let _ = resources::parse_uptime(text);
        let _ = resources::parse_net_dev(text);
    }
}
