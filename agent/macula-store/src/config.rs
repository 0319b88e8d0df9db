//! The `[storage]` section of `agent.toml`.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::codec::{CodecId, DEFAULT_CODEC};
use crate::crypto::AeadId;
use crate::header::MAX_SHARDS;
use crate::network::PutConfig;
use crate::repair::RepairConfig;
use crate::segment::MAX_SEGMENT_LEN;

/// `[storage]`: where shards live, how much space they may use, how new objects are coded, the
/// node's failure-domain labels and the repair throttle.
///
/// Defaults: disabled; shards in `<state dir>/shards`; quota 0 (store nothing until set); 4 + 2
/// coding with 1 MiB segments and the measured default codec; site and power `"default"`; repair
/// after 600 s down, 2 repairs at once, 32 MiB/s; audit every 3600 s.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StorageConfig {
    pub enabled: bool,
    /// Directory on the data partition holding the shard store (default: `<state dir>/shards`).
    pub dir: Option<PathBuf>,
    /// Bytes this node offers for shards (also its placement weight).
    pub quota_bytes: u64,
    /// Percent (1–100) of the file system holding `dir` offered for shards, measured when the
    /// store opens: a 32 GB card or a 1 TB USB disk is used without computing bytes by hand.
    /// Only with `quota_bytes = 0` (setting both is refused); 0: not used.
    pub quota_percent: u8,
    /// Bytes one owner (the key that signs a shard's header) may hold on this node; 0: no
    /// per-owner limit. Bounds what a single member can make this node keep.
    pub owner_quota_bytes: u64,
    /// Data shards per segment for new objects; unset (with `m` unset): chosen at each put from
    /// the number of storage nodes (`network::auto_geometry`).
    pub k: Option<u16>,
    /// Parity shards per segment for new objects; set with `k` or not at all.
    pub m: Option<u16>,
    /// Plaintext bytes per segment (1 KiB ..= 16 MiB).
    pub segment_bytes: u32,
    /// `"rs-gf8-matrix"` (default) or `"rs-gf16-leopard"`.
    pub codec: String,
    /// Failure-domain labels used by placement and announced in member metadata: 1–64 of
    /// `a-z 0-9 - _ .`, starting with a letter or digit (`macula_mesh::membership::Label`);
    /// checked when the file is read.
    #[serde(deserialize_with = "label")]
    pub site: String,
    #[serde(deserialize_with = "label")]
    pub power: String,
    /// Seconds a node may be down before its shards are rebuilt elsewhere.
    pub repair_grace_secs: u64,
    pub repair_max_inflight: usize,
    pub repair_bytes_per_sec: u64,
    /// Seconds between audits of the local store (every shard read and verified; corrupt copies
    /// removed and rebuilt).
    pub audit_interval_secs: u64,
}

impl Default for StorageConfig {
    fn default() -> Self {
        let repair = RepairConfig::default();
        Self {
            enabled: false,
            dir: None,
            quota_bytes: 0,
            quota_percent: 0,
            owner_quota_bytes: 0,
            k: None,
            m: None,
            segment_bytes: 1 << 20,
            codec: DEFAULT_CODEC.name().into(),
            site: "default".into(),
            power: "default".into(),
            repair_grace_secs: repair.grace_ms / 1000,
            repair_max_inflight: repair.max_inflight,
            repair_bytes_per_sec: repair.bytes_per_sec,
            audit_interval_secs: 3600,
        }
    }
}

/// A failure-domain label, checked by the rules of member metadata.
fn label<'de, D: serde::Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    let s = String::deserialize(d)?;
    macula_mesh::membership::Label::new(s)
        .map(String::from)
        .map_err(serde::de::Error::custom)
}

/// A `[storage]` section that cannot be used; each message names the key and the fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StorageConfigError {
    #[error("storage.k = {k}, storage.m = {m}: need k >= 1, m >= 1 and k + m <= {MAX_SHARDS}")]
    Geometry { k: u16, m: u16 },
    #[error(
        "storage.k and storage.m: set both, or neither (then they are chosen from the number of storage nodes, docs/storage.md)"
    )]
    HalfGeometry,
    #[error("storage.segment_bytes = {0}: must be between 1024 and {MAX_SEGMENT_LEN}")]
    SegmentBytes(u32),
    #[error("storage.codec = {0:?}: use \"rs-gf8-matrix\" or \"rs-gf16-leopard\"")]
    Codec(String),
    #[error(
        "storage.repair_max_inflight, storage.repair_bytes_per_sec and storage.audit_interval_secs must be at least 1"
    )]
    Repair,
    #[error(
        "storage.quota_percent = {0}: must be between 0 and 100, and 0 when storage.quota_bytes is set"
    )]
    QuotaPercent(u8),
}

impl StorageConfig {
    /// The shard directory: `dir`, else `<state_dir>/shards`.
    pub fn shard_dir(&self, state_dir: &Path) -> PathBuf {
        self.dir.clone().unwrap_or_else(|| state_dir.join("shards"))
    }

    /// The store quota in bytes: `quota_bytes`, or `quota_percent` of `fs_total`, the size of the
    /// file system holding the shard directory.
    pub fn quota(&self, fs_total: u64) -> Result<u64, StorageConfigError> {
        match (self.quota_bytes, self.quota_percent) {
            (bytes, 0) => Ok(bytes),
            (0, p @ 1..=100) => Ok((u128::from(fs_total) * u128::from(p) / 100) as u64),
            (_, p) => Err(StorageConfigError::QuotaPercent(p)),
        }
    }

    /// About one shard's size (a segment over `k`): the step of free space worth a new capacity
    /// announcement (`macula_mesh::announce`), since placement skips a node without room for one.
    /// (With k chosen per put, the largest shard: k = 1.)
    pub fn shard_bytes(&self) -> u64 {
        u64::from(self.segment_bytes).div_ceil(u64::from(self.k.unwrap_or(1).max(1)))
    }

    pub fn codec_id(&self) -> Result<CodecId, StorageConfigError> {
        [CodecId::RsGf16Leopard, CodecId::RsGf8Matrix]
            .into_iter()
            .find(|c| c.name() == self.codec)
            .ok_or_else(|| StorageConfigError::Codec(self.codec.clone()))
    }

    /// Checks the section and derives the put parameters (AEAD chosen by this CPU).
    pub fn put_config(&self) -> Result<PutConfig, StorageConfigError> {
        // Chosen per put: checked here with the geometry of the largest shards (k = 1).
        let (k, m, auto) = match (self.k, self.m) {
            (Some(k), Some(m)) => (k, m, false),
            (None, None) => (1, 1, true),
            _ => return Err(StorageConfigError::HalfGeometry),
        };
        if k == 0 || m == 0 || usize::from(k) + usize::from(m) > MAX_SHARDS {
            return Err(StorageConfigError::Geometry { k, m });
        }
        if !(1024..=MAX_SEGMENT_LEN).contains(&self.segment_bytes) {
            return Err(StorageConfigError::SegmentBytes(self.segment_bytes));
        }
        Ok(PutConfig {
            k,
            m,
            auto,
            segment_len: self.segment_bytes,
            codec: self.codec_id()?,
            aead: AeadId::preferred(),
        })
    }

    pub fn repair_config(&self) -> Result<RepairConfig, StorageConfigError> {
        if self.repair_max_inflight == 0
            || self.repair_bytes_per_sec == 0
            || self.audit_interval_secs == 0
        {
            return Err(StorageConfigError::Repair);
        }
        // A failed repair (a target that just died, a source not yet known down) is retried
        // after the grace time, kept between 1 s and 30 s.
        let retry_ms = self
            .repair_grace_secs
            .saturating_mul(1000)
            .clamp(1000, 30_000);
        Ok(RepairConfig {
            grace_ms: self.repair_grace_secs.saturating_mul(1000),
            max_inflight: self.repair_max_inflight,
            bytes_per_sec: self.repair_bytes_per_sec,
            burst_bytes: self.repair_bytes_per_sec.saturating_mul(2),
            retry_ms,
            // The next holder in line takes over a repair its leader has not finished within
            // three grace times (30 min by default).
            takeover_ms: self
                .repair_grace_secs
                .saturating_mul(3000)
                .max(2 * retry_ms),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_shard_is_a_segment_over_k() {
        let mut c = StorageConfig {
            segment_bytes: 1 << 20,
            k: Some(3),
            ..Default::default()
        };
        assert_eq!(c.shard_bytes(), 349_526);
        c.k = Some(0);
        assert_eq!(c.shard_bytes(), 1 << 20);
        c.k = None;
        assert_eq!(
            c.shard_bytes(),
            1 << 20,
            "chosen per put: the largest, k = 1"
        );
    }

    #[test]
    fn unset_k_and_m_are_chosen_per_put_from_the_storage_nodes() {
        let auto = StorageConfig::default().put_config().unwrap();
        assert!(auto.auto);
        let at = |n: usize| auto.for_nodes(n).map(|c| (c.k, c.m, c.auto));
        assert!(at(1).is_err());
        assert_eq!(at(2), Ok((1, 1, false)));
        assert_eq!(at(3), Ok((2, 1, false)));
        assert_eq!(at(4), Ok((2, 1, false)));
        assert_eq!(at(5), Ok((2, 2, false)));
        assert_eq!(at(6), Ok((3, 2, false)));
        for n in 7..=40 {
            assert_eq!(at(n), Ok((4, 2, false)));
        }
        // Every shard on its own node; from 4 nodes on, one node to spare for a rebuild.
        for n in 2..=40 {
            let (k, m, _) = at(n).unwrap();
            let shards = usize::from(k + m);
            assert!(shards <= n && (n < 4 || shards < n), "{n} nodes: {k}+{m}");
        }
        let fixed = StorageConfig {
            k: Some(4),
            m: Some(2),
            ..Default::default()
        }
        .put_config()
        .unwrap();
        assert_eq!(fixed.for_nodes(3).map(|c| (c.k, c.m)), Ok((4, 2)));
        let half = StorageConfig {
            k: Some(4),
            ..Default::default()
        };
        assert_eq!(
            half.put_config().unwrap_err(),
            StorageConfigError::HalfGeometry
        );
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Doc {
        #[serde(default)]
        storage: StorageConfig,
    }

    #[test]
    fn defaults_parse_and_derive() {
        let doc: Doc = macula_core::config::parse_str("", Path::new("agent.toml")).unwrap();
        assert_eq!(doc.storage, StorageConfig::default());
        let put = doc.storage.put_config().unwrap();
        assert_eq!(
            (put.auto, put.segment_len, put.codec),
            (true, 1 << 20, DEFAULT_CODEC)
        );
        assert_eq!(doc.storage.repair_config().unwrap().grace_ms, 600_000);
    }

    #[test]
    fn quota_is_bytes_or_a_share_of_the_file_system() {
        let tb = 1_000_000_000_000u64;
        let bytes = StorageConfig {
            quota_bytes: 5 << 30,
            ..StorageConfig::default()
        };
        assert_eq!(bytes.quota(tb), Ok(5 << 30));
        let share = StorageConfig {
            quota_percent: 90,
            ..StorageConfig::default()
        };
        assert_eq!(share.quota(tb), Ok(900_000_000_000));
        assert_eq!(
            share.quota(u64::MAX),
            Ok((u128::from(u64::MAX) * 9 / 10) as u64)
        );
        let both = StorageConfig {
            quota_bytes: 1,
            ..share.clone()
        };
        assert_eq!(both.quota(tb), Err(StorageConfigError::QuotaPercent(90)));
        let over = StorageConfig {
            quota_percent: 101,
            ..StorageConfig::default()
        };
        let err = over.quota(tb).unwrap_err();
        assert!(
            err.to_string().contains("storage.quota_percent = 101"),
            "{err}"
        );
    }

    #[test]
    fn bad_values_are_named() {
        let text = "[storage]\nenabled = true\nk = 10\nm = 4\ncodec = \"rs-gf8-matrix\"\nsite = \"attic\"\n";
        let doc: Doc = macula_core::config::parse_str(text, Path::new("agent.toml")).unwrap();
        assert_eq!(
            doc.storage.put_config().unwrap().codec,
            CodecId::RsGf8Matrix
        );
        assert_eq!(doc.storage.site, "attic");

        let err =
            macula_core::config::parse_str::<Doc>("[storage]\nkk = 3\n", Path::new("agent.toml"))
                .unwrap_err();
        assert!(err.to_string().contains("agent.toml:2"), "{err}");
        let bad = StorageConfig {
            k: Some(200),
            m: Some(100),
            ..StorageConfig::default()
        };
        assert!(
            bad.put_config()
                .unwrap_err()
                .to_string()
                .contains("storage.k = 200")
        );
        let bad = StorageConfig {
            codec: "zfec".into(),
            ..StorageConfig::default()
        };
        assert_eq!(
            bad.put_config().unwrap_err(),
            StorageConfigError::Codec("zfec".into())
        );
        for (key, value) in [("site", "Attic"), ("power", ""), ("site", "up stairs")] {
            let text = format!("[storage]\nenabled = true\n{key} = \"{value}\"\n");
            let err = macula_core::config::parse_str::<Doc>(&text, Path::new("agent.toml"))
                .unwrap_err()
                .to_string();
            assert!(err.starts_with("agent.toml:3:"), "{err}");
            assert!(err.contains(&format!("storage.{key}")), "{err}");
            assert!(err.contains("a-z, 0-9"), "{err}");
        }
        let bad = StorageConfig {
            segment_bytes: 16,
            ..StorageConfig::default()
        };
        assert!(bad.put_config().is_err());
    }
}
