//! The fuzz smoke (docs/fuzzing.md): each cargo-fuzz target's committed corpus and a few
//! thousand mutations of it, through the same function the target calls.

use macula_testkit::fuzz::replay;
use macula_web::fuzzing;

const DIR: &str = env!("CARGO_MANIFEST_DIR");

#[test]
fn action_body() {
    replay(DIR, "action_body", fuzzing::action_body);
}

#[test]
fn session_cookie() {
    replay(DIR, "session_cookie", fuzzing::session_cookie);
}
