//! The firewall: the `[firewall]` config section, the ruleset renderer, and applying it.
//!
//! The agent owns exactly `table inet macula` and never touches other tables. A policy change
//! replaces that table in one nft transaction; peer-group joins and leaves and quarantine changes
//! only add or delete set elements. `quarantine` decides which overlay addresses the realm's
//! quarantine verdicts put in the `quarantine` set; `saved` keeps the last confirmed apply across
//! restarts.

mod config;
mod confirm;
mod nft;
mod quarantine;
mod render;
mod saved;
mod service;

pub use config::{FirewallConfig, GroupConfig, MgmtConfig, ValidationError, ZoneConfig, Zones};
pub use confirm::{ConfirmAction, ConfirmGuard, NothingToConfirm};
pub use nft::{Nft, NftError};
pub use quarantine::{Holder, Holds, NodeQuarantine, QUARANTINE_RETRY, SetChange, node_address};
pub use render::{TABLE, render, render_replace};
pub use saved::{SAVED_FILE, SavedApply, StartFrom, at_start, fingerprint};
pub use service::{ApplyOutcome, Firewall, FirewallError, FirewallStatus};
