//! The bodies of the cargo-fuzz targets in `fuzz/` (docs/fuzzing.md), one function per target:
//! each takes arbitrary bytes and checks what the decoder promises. The fuzz targets call them,
//! and `tests/fuzz_corpus.rs` replays each target's committed corpus (and mutations of it)
//! through them in `make test`.

/// The config loader never panics on any text and always locates its errors inside the input.
pub fn config(data: &[u8]) {
    use crate::config::{ConfigError, LogSection, NodeSection, parse_str};
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[serde(default, deny_unknown_fields)]
    #[allow(dead_code)]
    #[derive(Default)]
    struct Doc {
        node: NodeSection,
        log: LogSection,
    }

    if let Ok(text) = std::str::from_utf8(data) {
        if let Err(ConfigError::Invalid { line, .. }) =
            parse_str::<Doc>(text, std::path::Path::new("fuzz.toml"))
        {
            assert!(line >= 1 && line <= text.lines().count().max(1) + 1);
        }
    }
}

/// The key file parser never panics; a key it accepts matches the ID recorded in the file.
pub fn key_file(data: &[u8]) {
    use crate::NodeKey;

    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(key) = NodeKey::parse_key_file(text) {
            let id = key.node_id().to_string();
            assert!(text.contains(&id));
        }
    }
}

/// Node ID and base32 parsing never panic, and what they accept prints back to the same text
/// (one spelling per value).
pub fn node_id(data: &[u8]) {
    use crate::{NodeId, base32};

    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(id) = s.parse::<NodeId>() {
        assert_eq!(id.to_string(), s);
    }
    if let Ok(bytes) = base32::decode(s) {
        assert_eq!(base32::encode(&bytes), s);
    }
}
