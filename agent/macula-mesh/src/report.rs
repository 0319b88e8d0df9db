//! A member's report of itself for `maculactl realm status`: what member metadata does not carry
//! (system uptime, the slot it booted, its last update's result). Every member serves it as
//! the RPC [`PROCEDURE`] to every member; the asking node calls the members alive, each with
//! [`DEADLINE`], and shows `-` for one that does not answer (an older agent answers
//! `no-such-procedure`). [`NodeView`] (the RPC [`VIEW_PROCEDURE`]) is whom a member sees, for
//! the hub dashboard's map of who sees whom.

use std::time::Duration;

use macula_core::wire;
use serde::{Deserialize, Serialize};

/// The RPC procedure every member serves with its [`NodeReport`] (empty request).
pub const PROCEDURE: &str = "node.report";

/// How long `realm status` waits for each member's report.
pub const DEADLINE: Duration = Duration::from_secs(2);

/// Longest text in a report (slot name, last update result); longer is cut.
pub const MAX_TEXT: usize = 256;

/// What a member says of itself.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeReport {
    /// System uptime (`/proc/uptime`), seconds.
    pub uptime_s: u64,
    /// The slot it booted (RAUC's boot name); `None` without RAUC.
    pub slot: Option<String>,
    /// RAUC's last error, `""` when the last operation succeeded; `None` without RAUC.
    pub last_update: Option<String>,
}

impl NodeReport {
    /// The reply bytes, texts cut to [`MAX_TEXT`] bytes (at a character boundary).
    pub fn encode(&self) -> Vec<u8> {
        let cut = |s: &Option<String>| s.as_deref().map(|s| cut(s).to_owned());
        wire::encode(&NodeReport {
            uptime_s: self.uptime_s,
            slot: cut(&self.slot),
            last_update: cut(&self.last_update),
        })
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, wire::WireError> {
        wire::decode_with_limit(bytes, 2 * MAX_TEXT + 32)
    }
}

/// The RPC procedure every member serves with its [`NodeView`] (empty request): whom it sees,
/// for the hub dashboard's map of who sees whom. Asked like [`PROCEDURE`], with [`DEADLINE`].
pub const VIEW_PROCEDURE: &str = "node.view";

/// Most members a view lists (the rest are left out).
pub const MAX_VIEW: usize = 4096;

/// A member's membership view: the node IDs it holds alive, suspect and down.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeView {
    pub alive: Vec<[u8; 32]>,
    pub suspect: Vec<[u8; 32]>,
    pub down: Vec<[u8; 32]>,
}

impl NodeView {
    /// The reply bytes, at most [`MAX_VIEW`] members in all (alive first, then suspect, down).
    pub fn encode(&self) -> Vec<u8> {
        let mut room = MAX_VIEW;
        let mut take = |v: &Vec<[u8; 32]>| {
            let n = v.len().min(room);
            room -= n;
            v[..n].to_vec()
        };
        wire::encode(&NodeView {
            alive: take(&self.alive),
            suspect: take(&self.suspect),
            down: take(&self.down),
        })
    }

    /// Decodes a reply; longer than [`MAX_VIEW`] members' worth of bytes is refused unread.
    pub fn decode(bytes: &[u8]) -> Result<Self, wire::WireError> {
        wire::decode_with_limit(bytes, MAX_VIEW * 32 + 16)
    }
}

fn cut(s: &str) -> &str {
    let mut end = s.len().min(MAX_TEXT);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_round_trip_and_long_texts_are_cut() {
        let r = NodeReport {
            uptime_s: 42,
            slot: Some("A".into()),
            last_update: Some(String::new()),
        };
        assert_eq!(NodeReport::decode(&r.encode()).unwrap(), r);
        let long = NodeReport {
            last_update: Some("é".repeat(300)),
            ..NodeReport::default()
        };
        let back = NodeReport::decode(&long.encode()).unwrap();
        assert_eq!(back.last_update.unwrap(), "é".repeat(MAX_TEXT / 2));
        assert!(NodeReport::decode(&[1; 1000]).is_err());
    }

    #[test]
    fn views_round_trip_and_are_bounded() {
        let v = NodeView {
            alive: vec![[1; 32], [2; 32]],
            suspect: vec![],
            down: vec![[3; 32]],
        };
        assert_eq!(NodeView::decode(&v.encode()).unwrap(), v);
        let big = NodeView {
            alive: vec![[4; 32]; MAX_VIEW],
            down: vec![[5; 32]; 10],
            ..NodeView::default()
        };
        let back = NodeView::decode(&big.encode()).unwrap();
        assert_eq!((back.alive.len(), back.down.len()), (MAX_VIEW, 0));
        assert!(NodeView::decode(&[0xff; 64]).is_err());
    }
}
