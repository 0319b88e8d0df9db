//! The bodies of the cargo-fuzz targets in `fuzz/` (docs/fuzzing.md): bytes as a browser (or
//! anyone reaching the dashboard port) sends them. The request head itself is parsed by
//! `macula_s3::http::parse_head` (the agent's one head reader), fuzzed by macula-s3's
//! `http_head`. The fuzz targets call these, and `tests/fuzz_corpus.rs` replays each target's
//! committed corpus through them in `make test`.

use crate::action::{Action, login_token};
use crate::auth::{self, Auth, COOKIE};

/// The API paths that take a body; the first input byte picks one (the last: no action).
const PATHS: [&str; 5] = [
    "/api/revoke",
    "/api/firewall/confirm",
    "/api/update",
    "/api/invite",
    "/api/other",
];

/// A `POST /api/…` body: the login form and the admin actions (JSON). Never panics; a path that
/// names no action yields none whatever the body; an accepted login body names its token.
pub fn action_body(data: &[u8]) {
    let Some((&first, body)) = data.split_first() else {
        return;
    };
    let path = PATHS[usize::from(first) % PATHS.len()];
    match Action::parse(path, body) {
        Ok(None) => assert_eq!(path, "/api/other"),
        Ok(Some(a)) => assert!(!a.name().is_empty()),
        Err(e) => assert!(e.starts_with("bad request body")),
    }
    if let Ok(token) = login_token(body) {
        assert!(std::str::from_utf8(body).is_ok() && body.len() >= token.len());
    }
}

/// A `Cookie` header (and a stored token hash): the session lookup never panics, and a header
/// that does not carry the one open session's ID is refused.
pub fn session_cookie(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = auth::parse_hash(text);
    let mut a = Auth::new(Some(auth::token_hash("mdt_fuzz")));
    let id = a.login("mdt_fuzz", 1000).expect("the issued token logs in");
    let found = auth::cookie(text, COOKIE);
    if a.session(Some(text), 1001).is_ok() {
        assert_eq!(found, Some(id.as_str()));
    }
    a.logout(Some(text));
}
