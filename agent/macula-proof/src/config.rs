//! The `[proofs]` section of `agent.toml` (every constant of docs/proofs.md).

use serde::{Deserialize, Serialize};

use crate::capacity::{self, FormulaParams};
use crate::ledger::RewardParams;
use crate::quarantine::QuarantineParams;
use crate::resources::SpreadPolicy;
use crate::storage;

/// `[proofs]`: the monitor's spread policy, challenge sizes and deadlines, the formula's
/// constants, rewards and quarantine thresholds.
///
/// Defaults: disabled; interfaces: all but loopback; 2²⁰ capacity links in 64 segments, 4 spot
/// checks, 10 s deadline; `o` = 1000 ‰ (all processing offered); disk unit 1 GiB; 16 storage
/// picks of 1 group, 10 s deadline, 2 retries; rewards, quarantine and spread as in their types.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProofsConfig {
    pub enabled: bool,
    /// Interfaces whose traffic is reported (all but loopback when empty).
    pub interfaces: Vec<String>,
    pub capacity_steps: u32,
    pub capacity_segments: u16,
    pub capacity_spot: u16,
    pub capacity_deadline_ms: u32,
    /// `o` in thousandths.
    pub offer_permille: u32,
    pub disk_unit_bytes: u64,
    pub storage_shards: usize,
    pub storage_groups: usize,
    pub storage_deadline_ms: u32,
    /// Extra attempts after a storage challenge times out, before a failure is recorded.
    pub storage_retries: u32,
    pub rewards: RewardParams,
    pub quarantine: QuarantineParams,
    /// Epochs of ledger records kept whole: older ones are folded into a signed epoch summary
    /// once more than half of the members signed the same one (docs/proofs.md §5.4).
    pub ledger_retention_epochs: u64,
    pub spread: SpreadPolicy,
}

impl Default for ProofsConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            interfaces: Vec::new(),
            capacity_steps: 1 << 20,
            capacity_segments: 64,
            capacity_spot: 4,
            capacity_deadline_ms: 10_000,
            offer_permille: 1000,
            disk_unit_bytes: 1 << 30,
            storage_shards: 16,
            storage_groups: 1,
            storage_deadline_ms: 10_000,
            storage_retries: 2,
            rewards: RewardParams::default(),
            quarantine: QuarantineParams::default(),
            ledger_retention_epochs: 48,
            spread: SpreadPolicy::default(),
        }
    }
}

/// A `[proofs]` section that cannot be used; each message names the key and the fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProofsConfigError {
    #[error(
        "proofs.capacity_steps = {steps}, proofs.capacity_segments = {segments}: steps must be a multiple of segments, at most {} steps and {} segments",
        capacity::MAX_STEPS,
        capacity::MAX_SEGMENTS
    )]
    Capacity { steps: u32, segments: u16 },
    #[error("proofs.offer_permille = {0}: must be between 0 and 1000")]
    Offer(u32),
    #[error(
        "proofs.storage_shards × proofs.storage_groups must be between 1 and {}",
        storage::MAX_PICKS
    )]
    Picks,
    #[error(
        "proofs.rewards.epoch_s, proofs.quarantine.*, proofs.ledger_retention_epochs and deadlines must be at least 1"
    )]
    Zero,
}

impl ProofsConfig {
    pub fn check(&self) -> Result<(), ProofsConfigError> {
        if self.capacity_segments == 0
            || self.capacity_steps == 0
            || self.capacity_steps > capacity::MAX_STEPS
            || self.capacity_segments > capacity::MAX_SEGMENTS
            || self.capacity_steps % u32::from(self.capacity_segments) != 0
        {
            return Err(ProofsConfigError::Capacity {
                steps: self.capacity_steps,
                segments: self.capacity_segments,
            });
        }
        if self.offer_permille > 1000 {
            return Err(ProofsConfigError::Offer(self.offer_permille));
        }
        let picks = self.storage_shards.saturating_mul(self.storage_groups);
        if picks == 0 || picks > storage::MAX_PICKS {
            return Err(ProofsConfigError::Picks);
        }
        let q = &self.quarantine;
        if self.rewards.epoch_s == 0
            || q.max_failures == 0
            || q.window_epochs == 0
            || q.probation_passes == 0
            || self.ledger_retention_epochs == 0
            || self.capacity_deadline_ms == 0
            || self.storage_deadline_ms == 0
        {
            return Err(ProofsConfigError::Zero);
        }
        Ok(())
    }

    pub fn formula(&self) -> FormulaParams {
        FormulaParams {
            offer_permille: self.offer_permille,
            disk_unit_bytes: self.disk_unit_bytes,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_bad_values_name_their_key() {
        ProofsConfig::default().check().unwrap();
        let c = ProofsConfig {
            capacity_steps: 1000,
            capacity_segments: 64,
            ..Default::default()
        };
        assert!(
            c.check()
                .unwrap_err()
                .to_string()
                .contains("proofs.capacity_steps")
        );
        let c = ProofsConfig {
            storage_shards: 200,
            ..Default::default()
        };
        assert_eq!(c.check(), Err(ProofsConfigError::Picks));
        let c = ProofsConfig {
            offer_permille: 1001,
            ..Default::default()
        };
        assert_eq!(c.check(), Err(ProofsConfigError::Offer(1001)));
    }
}
