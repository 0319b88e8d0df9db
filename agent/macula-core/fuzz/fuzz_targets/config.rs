#![no_main]
//! The config loader never panics on any text and always locates its errors inside the input.

use libfuzzer_sys::fuzz_target;
use macula_core::config::{ConfigError, LogSection, NodeSection, parse_str};
use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[allow(dead_code)]
#[derive(Default)]
struct Doc {
    node: NodeSection,
    log: LogSection,
}

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Err(ConfigError::Invalid { line, .. }) =
            parse_str::<Doc>(text, std::path::Path::new("fuzz.toml"))
        {
            assert!(line >= 1 && line <= text.lines().count().max(1) + 1);
        }
    }
});
