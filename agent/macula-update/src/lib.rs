//! A/B system updates for Macula OS (see `docs/image.md`).
//!
//! - [`rauc`]: a client for RAUC's `de.pengutronix.rauc.Installer` D-Bus API: install a bundle
//!   and follow its progress, read slot states, mark the booted slot good.
//! - [`health`]: the sans-IO decision when the running slot is marked good: after the agent's own
//!   health checks pass and the boot has settled; never when a check keeps failing, so the boot
//!   loader falls back to the previous slot on the next reset.
//! - [`rollout`]: realm-wide rollouts in waves, sans-IO: the signed rollout and report records,
//!   the wave order, when a wave opens, when the rollout halts, what each node does next, and the
//!   pacing of a bundle fetch.
//! - [`UpdateSection`]: the `[update]` section of `agent.toml`.
//! - [`fuzzing`]: the fuzz targets' bodies (docs/fuzzing.md).

pub mod fuzzing;
pub mod health;
pub mod rauc;
pub mod rollout;

use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use health::{
    Check, CheckState, Decision, MARK_RETRY, Observation, Policy, booted_slot, decide,
};
pub use rauc::{InstallProgress, Rauc, SlotInfo, UpdateError};

/// `[update]`: system updates through RAUC.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct UpdateSection {
    /// Mark the booted slot good once the health checks pass. Default: true. With false, only
    /// `maculactl update mark-good` does, and an unconfirmed update falls back at the next reset.
    pub auto_mark_good: bool,
    /// Seconds the checks must keep passing after the agent started before the slot is marked
    /// good. Default: 5.
    pub settle_s: u64,
    /// Seconds after which a failing check is final: the slot is left unconfirmed. Default: 300.
    pub deadline_s: u64,
    /// Longest an installation may take before it is reported as failed. Default: 1800.
    pub install_timeout_s: u64,
    /// Bytes per second a node spends at most fetching a rollout's bundle from the realm's
    /// storage (0: unbounded). Default: 2 MiB/s.
    pub fetch_bytes_per_s: u64,
    /// The command (program and arguments, no shell) that reboots the node into a newly
    /// installed slot, and back after a failed health check. Default: `["reboot"]`.
    pub reboot_command: Vec<String>,
}

impl Default for UpdateSection {
    fn default() -> Self {
        Self {
            auto_mark_good: true,
            settle_s: 5,
            deadline_s: 300,
            install_timeout_s: 1800,
            fetch_bytes_per_s: 2 * 1024 * 1024,
            reboot_command: vec!["reboot".into()],
        }
    }
}

impl UpdateSection {
    /// The health policy this section describes.
    pub fn policy(&self) -> Policy {
        Policy {
            settle: Duration::from_secs(self.settle_s),
            deadline: Duration::from_secs(self.deadline_s),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn config_defaults_and_unknown_keys() {
        let s: UpdateSection = macula_core::config::parse_str("", Path::new("agent.toml")).unwrap();
        assert_eq!(s, UpdateSection::default());
        let s: UpdateSection = macula_core::config::parse_str(
            "auto_mark_good = false\nsettle_s = 1\n",
            Path::new("agent.toml"),
        )
        .unwrap();
        assert!(!s.auto_mark_good);
        assert_eq!(s.policy().settle, Duration::from_secs(1));
        let err = macula_core::config::parse_str::<UpdateSection>(
            "settle = 1\n",
            Path::new("agent.toml"),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("agent.toml:1"), "{err}");
    }
}
