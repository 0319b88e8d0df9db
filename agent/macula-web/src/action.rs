//! Request bodies: the login form and the admin actions, JSON objects of a few fields. Unknown
//! fields and malformed values are refused with a message that names them; the validation of
//! each value (node IDs, bundle paths, invite limits) stays with the backend the action calls,
//! the same one D-Bus calls.

use serde::Deserialize;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Login {
    token: String,
}

/// The token of a `POST /api/login` body `{"token": "mdt_…"}`.
pub fn login_token(body: &[u8]) -> Result<String, String> {
    let l: Login = parse(body)?;
    Ok(l.token)
}

/// An admin action (`POST /api/<path>`), as `maculactl` would ask it over D-Bus.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// `realm revoke NODE_ID`.
    Revoke { node_id: String },
    /// `firewall confirm`.
    ConfirmFirewall,
    /// `update install PATH` (a bundle file on this node).
    Update { path: String },
    /// `realm invite`: a one-time join code.
    Invite {
        name: String,
        role: String,
        valid_days: u32,
        expires_s: u64,
    },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Revoke {
    node_id: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Empty {}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Update {
    path: String,
}

fn edge() -> String {
    "edge".into()
}
fn year() -> u32 {
    365
}
fn hour() -> u64 {
    3600
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Invite {
    name: String,
    #[serde(default = "edge")]
    role: String,
    #[serde(default = "year")]
    valid_days: u32,
    #[serde(default = "hour")]
    expires_s: u64,
}

fn parse<'a, T: Deserialize<'a>>(body: &'a [u8]) -> Result<T, String> {
    serde_json::from_slice(body).map_err(|e| format!("bad request body: {e}"))
}

impl Action {
    /// The action at `path` with `body`; `Ok(None)` when `path` names no action.
    pub fn parse(path: &str, body: &[u8]) -> Result<Option<Action>, String> {
        Ok(Some(match path {
            "/api/revoke" => {
                let r: Revoke = parse(body)?;
                Action::Revoke { node_id: r.node_id }
            }
            "/api/firewall/confirm" => {
                let _: Empty = parse(body)?;
                Action::ConfirmFirewall
            }
            "/api/update" => {
                let u: Update = parse(body)?;
                Action::Update { path: u.path }
            }
            "/api/invite" => {
                let i: Invite = parse(body)?;
                Action::Invite {
                    name: i.name,
                    role: i.role,
                    valid_days: i.valid_days,
                    expires_s: i.expires_s,
                }
            }
            _ => return Ok(None),
        }))
    }

    /// How the agent's log names it.
    pub fn name(&self) -> &'static str {
        match self {
            Action::Revoke { .. } => "revoke",
            Action::ConfirmFirewall => "firewall-confirm",
            Action::Update { .. } => "update",
            Action::Invite { .. } => "invite",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_parse_with_defaults_and_clear_errors() {
        assert_eq!(login_token(br#"{"token":"mdt_1"}"#), Ok("mdt_1".into()));
        let e = login_token(b"token=x").unwrap_err();
        assert!(e.starts_with("bad request body"), "{e}");
        assert_eq!(
            Action::parse("/api/invite", br#"{"name":"n9"}"#),
            Ok(Some(Action::Invite {
                name: "n9".into(),
                role: "edge".into(),
                valid_days: 365,
                expires_s: 3600
            }))
        );
        assert_eq!(
            Action::parse("/api/firewall/confirm", b"{}"),
            Ok(Some(Action::ConfirmFirewall))
        );
        let e = Action::parse("/api/revoke", br#"{"node":"x"}"#).unwrap_err();
        assert!(e.contains("unknown field `node`"), "{e}");
        let e = Action::parse("/api/update", br#"{"path":1}"#).unwrap_err();
        assert!(e.contains("invalid type"), "{e}");
        assert_eq!(Action::parse("/api/nothing", b"{}"), Ok(None));
    }
}
