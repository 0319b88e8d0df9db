//! The bodies of the cargo-fuzz targets in `fuzz/` (docs/fuzzing.md): rollout records as they
//! arrive on the realm's rollout topic and in catch-up answers, and the wave list an operator
//! types. The fuzz targets call these, and `tests/fuzz_corpus.rs` replays each target's committed
//! corpus through them in `make test`.

use macula_core::wire;

use crate::rollout::{
    MAX_RECORD, MAX_WAVES, Message, Report, Rollout, SignedReport, SignedRollout, WaveSize,
    parse_waves,
};

/// A rollout message (`Message`), a signed rollout or report on its own, and the signed bodies
/// decoded before their signature is checked (the fuzzer cannot forge signatures, so the body
/// decoders and the rollout's checks are fed directly too). What verifies re-encodes to a
/// record that verifies to the same value.
pub fn rollout_record(data: &[u8]) {
    let _ = Message::decode(data);
    if let Ok((sr, r)) = SignedRollout::decode_verified(data) {
        let (_, again) = SignedRollout::decode_verified(&sr.encode()).expect("re-encoded rollout");
        assert_eq!(again, r);
    }
    if let Ok((sr, r)) = SignedReport::decode_verified(data) {
        let (_, again) = SignedReport::decode_verified(&sr.encode()).expect("re-encoded report");
        assert_eq!(again, r);
    }
    if let Ok(r) = wire::decode_with_limit::<Rollout>(data, MAX_RECORD) {
        if r.check().is_ok() {
            assert!(!r.nodes.is_empty() && r.waves.len() <= MAX_WAVES + 1);
            let _ = r.waves();
        }
    }
    let _ = wire::decode_with_limit::<Report>(data, MAX_RECORD);
    let _ = wire::decode_with_limit::<Vec<Message>>(data, MAX_RECORD);
}

/// A wave list (`maculactl update rollout --waves 1,25%,100%`): what parses ends at 100 %, has
/// at most one wave more than the limit (the `100%` added to a full list that stops short), and
/// prints back to a list that parses the same (without that added wave, which would exceed the
/// limit as typed).
pub fn rollout_waves(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(waves) = parse_waves(text) {
        assert_eq!(waves.last(), Some(&WaveSize::Percent(100)));
        assert!(waves.len() <= MAX_WAVES + 1);
        let typed = &waves[..waves.len().min(MAX_WAVES)];
        let printed: Vec<String> = typed.iter().map(ToString::to_string).collect();
        assert_eq!(parse_waves(&printed.join(",")).as_ref(), Ok(&waves));
    }
}
