//! The fuzz smoke (docs/fuzzing.md): each cargo-fuzz target's committed corpus and a few
//! thousand mutations of it, through the same function the target calls.

use macula_core::fuzzing;
use macula_testkit::fuzz::replay;

const DIR: &str = env!("CARGO_MANIFEST_DIR");

#[test]
fn config() {
    replay(DIR, "config", fuzzing::config);
}

#[test]
fn key_file() {
    replay(DIR, "key_file", fuzzing::key_file);
}

#[test]
fn node_id() {
    replay(DIR, "node_id", fuzzing::node_id);
}

/// Seeds made by the real encoders: a key file, and the node ID and base32 text
/// of the same key.
#[test]
fn seeds_are_current() {
    use macula_core::{NodeKey, base32};
    use macula_testkit::fuzz::seed;
    let key = NodeKey::from_seed([7; 32]);
    seed(DIR, "key_file", "seed_7", key.to_key_file().as_bytes());
    seed(
        DIR,
        "node_id",
        "seed_7",
        key.node_id().to_string().as_bytes(),
    );
    seed(
        DIR,
        "node_id",
        "base32_5",
        base32::encode(&[1, 2, 3, 4, 5]).as_bytes(),
    );
}
