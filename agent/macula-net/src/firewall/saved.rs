//! The last confirmed apply, kept across agent restarts and reboots in `<state dir>/firewall.toml`.
//!
//! At start the agent loads that section instead of `agent.toml`'s `[firewall]`, as long as
//! `agent.toml`'s section is the one the apply replaced (its fingerprint is saved with it): an
//! edited `agent.toml` is the admin's newer word and wins. An apply that was never confirmed is
//! never saved, so a restart — also after SIGKILL before the confirm timer fired — loads the last
//! confirmed state: the rollback survives the agent.

use std::path::Path;

use macula_core::config::ConfigError;
use serde::{Deserialize, Serialize};

use super::config::FirewallConfig;

/// The file's name in the agent's state directory.
pub const SAVED_FILE: &str = "firewall.toml";

/// What `firewall.toml` holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SavedApply {
    /// [`fingerprint`] of the `agent.toml` `[firewall]` section this apply replaced.
    pub base: String,
    /// The confirmed section.
    pub firewall: FirewallConfig,
}

/// Where the firewall loaded at start comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartFrom {
    /// `agent.toml`: nothing was applied and confirmed since.
    ConfigFile,
    /// The saved apply (`agent.toml`'s section is unchanged since it was confirmed).
    SavedApply,
    /// `agent.toml`: its section changed after the saved apply was confirmed.
    ConfigFileChanged,
}

/// A short stable digest of a `[firewall]` section (as parsed, so comments and layout do not
/// count).
pub fn fingerprint(cfg: &FirewallConfig) -> String {
    let hash = blake3::hash(&macula_core::wire::encode(cfg));
    hash.to_hex()[..32].to_string()
}

/// The section to load at start, from `agent.toml`'s and the saved apply.
pub fn at_start(file: &FirewallConfig, saved: Option<&SavedApply>) -> (FirewallConfig, StartFrom) {
    match saved {
        None => (file.clone(), StartFrom::ConfigFile),
        Some(s) if s.base == fingerprint(file) => (s.firewall.clone(), StartFrom::SavedApply),
        Some(_) => (file.clone(), StartFrom::ConfigFileChanged),
    }
}

impl SavedApply {
    /// The file's text: a comment saying what it is, then TOML.
    pub fn to_text(&self) -> Result<String, toml::ser::Error> {
        let body = toml::to_string(self)?;
        Ok(format!(
            "# The [firewall] section last applied with `maculactl firewall apply` and confirmed.\n\
             # maculad loads it at start instead of agent.toml's while that section is unchanged\n\
             # (base); delete this file to go back to agent.toml's.\n{body}"
        ))
    }

    /// Reads the file's text; errors name `path` with the line and column.
    pub fn parse(text: &str, path: &Path) -> Result<Self, ConfigError> {
        macula_core::config::parse_str(text, path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_zone(ifname: &str) -> FirewallConfig {
        let mut c = FirewallConfig {
            enabled: true,
            ..Default::default()
        };
        c.zones.lan.interfaces = vec![ifname.into()];
        c
    }

    #[test]
    fn the_saved_apply_wins_only_over_the_section_it_replaced() {
        let file = with_zone("eth0");
        let applied = with_zone("eth1");
        assert_eq!(at_start(&file, None), (file.clone(), StartFrom::ConfigFile));
        let saved = SavedApply {
            base: fingerprint(&file),
            firewall: applied.clone(),
        };
        assert_eq!(
            at_start(&file, Some(&saved)),
            (applied.clone(), StartFrom::SavedApply)
        );
        // The admin edited agent.toml since: the file wins.
        let edited = with_zone("eth2");
        assert_eq!(
            at_start(&edited, Some(&saved)),
            (edited.clone(), StartFrom::ConfigFileChanged)
        );
    }

    #[test]
    fn the_file_round_trips_and_bad_text_names_the_file() {
        let saved = SavedApply {
            base: fingerprint(&FirewallConfig::default()),
            firewall: with_zone("eth1"),
        };
        let path = Path::new("/data/macula/firewall.toml");
        assert_eq!(
            SavedApply::parse(&saved.to_text().unwrap(), path).unwrap(),
            saved
        );
        let bad = saved.to_text().unwrap().replace("base =", "base = 3 #");
        let e = SavedApply::parse(&bad, path).unwrap_err().to_string();
        assert!(e.contains("/data/macula/firewall.toml:"), "{e}");
    }
}
