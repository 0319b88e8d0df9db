//! The hub dashboard's pure parts (`docs/dashboard.md`): the `[dashboard]` section, the login
//! token and sessions (`auth`), admin action bodies (`action`), and the page's assets, built into
//! the binary (`assets`). No I/O: `maculad/src/dashboard.rs` serves them over the agent's HTTP
//! head reader and fills the page from the same backends as D-Bus. [`fuzzing`]: the fuzz targets'
//! bodies (docs/fuzzing.md).

pub mod action;
pub mod assets;
pub mod auth;
pub mod config;
pub mod fuzzing;

use std::time::Duration;

/// How often a live page (`GET /api/events`) gets the node's state.
pub const PUSH_INTERVAL: Duration = Duration::from_secs(1);
/// How long the members' own reports (`Mesh1.Reports`: an RPC to every alive member) are
/// reused before the page asks them again.
pub const REPORTS_EVERY: Duration = Duration::from_secs(10);
/// Largest request body accepted (login and admin actions are a few hundred bytes).
pub const MAX_BODY: u64 = 4096;

/// The D-Bus types serialise through zvariant's `SerializeDict`, which outside D-Bus writes each
/// value as a variant, `{"signature": "s", "value": …}`; the page wants the values, under the
/// same keys as `docs/dbus.md`.
pub fn plain(v: serde_json::Value) -> serde_json::Value {
    use serde_json::Value;
    match v {
        Value::Object(mut map) => {
            let variant = map.len() == 2
                && map.get("signature").is_some_and(Value::is_string)
                && map.contains_key("value");
            if variant {
                plain(map.remove("value").unwrap_or(Value::Null))
            } else {
                Value::Object(map.into_iter().map(|(k, v)| (k, plain(v))).collect())
            }
        }
        Value::Array(items) => Value::Array(items.into_iter().map(plain).collect()),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    #[test]
    fn variants_become_their_values() {
        let v = json!({
            "a": { "signature": "s", "value": "x" },
            "b": [{ "n": { "signature": "as", "value": ["1", "2"] } }],
            "c": { "signature": "s", "value": "y", "other": 1 },
        });
        assert_eq!(
            super::plain(v),
            json!({
                "a": "x",
                "b": [{ "n": ["1", "2"] }],
                "c": { "signature": "s", "value": "y", "other": 1 },
            })
        );
    }
}
