//! The top-level `agent.toml`: one field per section, each section owned by its crate.

use std::path::Path;

use macula_core::config::{self, ConfigError, LogSection, NodeSection};
use serde::Deserialize;

/// Everything in `agent.toml`. An empty file is valid: every key has a default.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AgentConfig {
    pub node: NodeSection,
    pub log: LogSection,
    pub update: macula_update::UpdateSection,
    pub firewall: macula_net::firewall::FirewallConfig,
    pub overlay: macula_net::overlay::OverlayConfig,
    pub uplinks: macula_net::uplinks::UplinksConfig,
    pub mesh: macula_mesh::config::MeshSection,
    pub storage: macula_store::config::StorageConfig,
    pub proofs: macula_proof::config::ProofsConfig,
    pub s3: macula_s3::config::S3Config,
    pub metrics: macula_core::metrics::MetricsConfig,
    pub dashboard: macula_web::config::DashboardConfig,
}

impl AgentConfig {
    /// Loads `path`. When `path` is the default location and does not exist, every key takes its
    /// default; a path given explicitly must exist.
    pub fn load(path: &Path, explicit: bool) -> Result<Self, ConfigError> {
        if !explicit && !path.exists() {
            return Ok(Self::default());
        }
        config::load_file(path)
    }
}
