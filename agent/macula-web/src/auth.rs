//! Login tokens and sessions. The agent keeps only the token's keyed hash (`token_hash`); a login
//! compares hashes in constant time and opens a session: a random ID in an `HttpOnly`,
//! `SameSite=Strict` cookie, with its own CSRF token that every admin action must echo in the
//! `X-CSRF-Token` header. Time comes in as Unix seconds; nothing here reads the clock.

use std::collections::HashMap;

/// `blake3::derive_key` context of the stored token hash.
const TOKEN_CONTEXT: &str = "macula/v1 dashboard login token";
/// `blake3::derive_key` context of session IDs as the session table keys them.
const SESSION_CONTEXT: &str = "macula/v1 dashboard session id";
/// What a token starts with (tells it apart from other secrets in a terminal or a paste).
pub const TOKEN_PREFIX: &str = "mdt_";
/// The session cookie's name.
pub const COOKIE: &str = "macula_session";
/// A session lasts this long after login.
pub const SESSION_SECS: u64 = 12 * 3600;
/// Most sessions kept at once; a login beyond it ends the oldest.
pub const MAX_SESSIONS: usize = 64;

/// The stored form of a token.
pub type TokenHash = [u8; 32];

fn random_hex() -> String {
    let mut b = [0u8; 32];
    getrandom::fill(&mut b).expect("the OS random number generator failed");
    hex(&b)
}

/// Lower-case hex.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Parses 64 hex digits (a stored token hash).
pub fn parse_hash(text: &str) -> Option<TokenHash> {
    let t = text.trim();
    if t.len() != 64 || !t.bytes().all(|c| c.is_ascii_hexdigit()) {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(&t[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(out)
}

/// A new login token (`mdt_` + 64 hex digits, 256 random bits) and the hash to store.
pub fn new_token() -> (String, TokenHash) {
    let token = format!("{TOKEN_PREFIX}{}", random_hex());
    let hash = token_hash(&token);
    (token, hash)
}

/// The keyed hash the agent stores instead of the token.
pub fn token_hash(token: &str) -> TokenHash {
    blake3::derive_key(TOKEN_CONTEXT, token.trim().as_bytes())
}

/// Equal in constant time (`blake3::Hash`'s comparison).
fn same(a: &[u8; 32], b: &[u8; 32]) -> bool {
    blake3::Hash::from_bytes(*a) == blake3::Hash::from_bytes(*b)
}

/// Why a request is not let in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refused {
    /// No token was issued yet.
    NoToken,
    /// The token is not the issued one.
    WrongToken,
    /// No session cookie, or its session ended.
    NoSession,
    /// An admin action without the session's CSRF token.
    Csrf,
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Refused::NoToken => {
                "no dashboard token was issued yet; run `maculactl dashboard token` on this node"
            }
            Refused::WrongToken => {
                "wrong token; `maculactl dashboard token` on this node issues a new one"
            }
            Refused::NoSession => "not logged in, or the session ended; log in again",
            Refused::Csrf => "missing or wrong X-CSRF-Token; reload the page and try again",
        })
    }
}

#[derive(Debug, Clone)]
struct Session {
    csrf: String,
    expires: u64,
}

/// A session as a request sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionView {
    pub csrf: String,
    pub expires: u64,
}

/// The token hash and the open sessions.
#[derive(Debug, Default)]
pub struct Auth {
    token: Option<TokenHash>,
    sessions: HashMap<TokenHash, Session>,
}

impl Auth {
    pub fn new(token: Option<TokenHash>) -> Self {
        Self {
            token,
            sessions: HashMap::new(),
        }
    }

    /// A new token replaces the old one and ends every session.
    pub fn set_token(&mut self, hash: TokenHash) {
        self.token = Some(hash);
        self.sessions.clear();
    }

    /// Checks `token`; on success opens a session and returns its ID (the cookie value).
    pub fn login(&mut self, token: &str, now: u64) -> Result<String, Refused> {
        let stored = self.token.ok_or(Refused::NoToken)?;
        if !same(&stored, &token_hash(token)) {
            return Err(Refused::WrongToken);
        }
        self.sessions.retain(|_, s| s.expires > now);
        if self.sessions.len() >= MAX_SESSIONS
            && let Some(oldest) = self
                .sessions
                .iter()
                .min_by_key(|(_, s)| s.expires)
                .map(|(k, _)| *k)
        {
            self.sessions.remove(&oldest);
        }
        let id = random_hex();
        self.sessions.insert(
            blake3::derive_key(SESSION_CONTEXT, id.as_bytes()),
            Session {
                csrf: random_hex(),
                expires: now + SESSION_SECS,
            },
        );
        Ok(id)
    }

    /// The session named by the request's `Cookie` header, if it is open at `now`.
    pub fn session(&self, cookie_header: Option<&str>, now: u64) -> Result<SessionView, Refused> {
        let id = cookie_header
            .and_then(|h| cookie(h, COOKIE))
            .ok_or(Refused::NoSession)?;
        match self
            .sessions
            .get(&blake3::derive_key(SESSION_CONTEXT, id.as_bytes()))
        {
            Some(s) if s.expires > now => Ok(SessionView {
                csrf: s.csrf.clone(),
                expires: s.expires,
            }),
            _ => Err(Refused::NoSession),
        }
    }

    /// The session for an admin action: open, and `csrf_header` is its CSRF token.
    pub fn admin(
        &self,
        cookie_header: Option<&str>,
        csrf_header: Option<&str>,
        now: u64,
    ) -> Result<SessionView, Refused> {
        let s = self.session(cookie_header, now)?;
        let given = csrf_header.ok_or(Refused::Csrf)?;
        let h = |t: &str| blake3::derive_key(SESSION_CONTEXT, t.as_bytes());
        if !same(&h(given), &h(&s.csrf)) {
            return Err(Refused::Csrf);
        }
        Ok(s)
    }

    /// Ends the session named by the `Cookie` header.
    pub fn logout(&mut self, cookie_header: Option<&str>) {
        if let Some(id) = cookie_header.and_then(|h| cookie(h, COOKIE)) {
            self.sessions
                .remove(&blake3::derive_key(SESSION_CONTEXT, id.as_bytes()));
        }
    }
}

/// The `Set-Cookie` value that opens session `id`.
pub fn set_cookie(id: &str) -> String {
    format!("{COOKIE}={id}; Path=/; HttpOnly; SameSite=Strict; Max-Age={SESSION_SECS}")
}

/// The `Set-Cookie` value that removes the session cookie.
pub fn clear_cookie() -> String {
    format!("{COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0")
}

/// The value of cookie `name` in a `Cookie` header.
pub fn cookie<'a>(header: &'a str, name: &str) -> Option<&'a str> {
    header.split(';').find_map(|kv| {
        let (k, v) = kv.trim().split_once('=')?;
        (k == name).then_some(v)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_issued_token_logs_in_and_a_new_one_ends_sessions() {
        let mut auth = Auth::new(None);
        assert_eq!(auth.login("mdt_x", 0), Err(Refused::NoToken));
        let (token, hash) = new_token();
        assert!(token.starts_with(TOKEN_PREFIX) && token.len() == 68);
        assert_eq!(parse_hash(&hex(&hash)), Some(hash));
        auth.set_token(hash);
        assert_eq!(auth.login("mdt_wrong", 0), Err(Refused::WrongToken));
        let id = auth.login(&format!("{token}\n"), 100).unwrap();
        let header = format!("theme=dark; {COOKIE}={id}");
        let s = auth.session(Some(&header), 101).unwrap();
        assert_eq!(s.expires, 100 + SESSION_SECS);
        assert_eq!(
            auth.session(Some(&header), 100 + SESSION_SECS),
            Err(Refused::NoSession)
        );
        assert_eq!(
            auth.session(Some("macula_session=abc"), 101),
            Err(Refused::NoSession)
        );
        assert_eq!(auth.session(None, 101), Err(Refused::NoSession));
        auth.set_token(new_token().1);
        assert_eq!(auth.session(Some(&header), 101), Err(Refused::NoSession));
    }

    #[test]
    fn admin_actions_need_the_sessions_csrf_token() {
        let (token, hash) = new_token();
        let mut auth = Auth::new(Some(hash));
        let id = auth.login(&token, 0).unwrap();
        let header = format!("{COOKIE}={id}");
        let csrf = auth.session(Some(&header), 1).unwrap().csrf;
        assert_eq!(auth.admin(Some(&header), None, 1), Err(Refused::Csrf));
        assert_eq!(auth.admin(Some(&header), Some("00"), 1), Err(Refused::Csrf));
        assert!(auth.admin(Some(&header), Some(&csrf), 1).is_ok());
        assert_eq!(auth.admin(None, Some(&csrf), 1), Err(Refused::NoSession));
        auth.logout(Some(&header));
        assert_eq!(
            auth.admin(Some(&header), Some(&csrf), 1),
            Err(Refused::NoSession)
        );
    }

    #[test]
    fn sessions_are_bounded() {
        let (token, hash) = new_token();
        let mut auth = Auth::new(Some(hash));
        let first = auth.login(&token, 0).unwrap();
        for t in 1..=MAX_SESSIONS as u64 {
            auth.login(&token, t).unwrap();
        }
        assert_eq!(auth.sessions.len(), MAX_SESSIONS);
        let header = format!("{COOKIE}={first}");
        assert_eq!(auth.session(Some(&header), 100), Err(Refused::NoSession));
    }

    #[test]
    fn cookie_header_parsing() {
        assert_eq!(cookie("a=1; b=2", "b"), Some("2"));
        assert_eq!(cookie("a=1;b=2", "a"), Some("1"));
        assert_eq!(cookie("ab=1", "a"), None);
        assert_eq!(cookie("", "a"), None);
        assert!(set_cookie("x").contains("HttpOnly; SameSite=Strict"));
    }
}
