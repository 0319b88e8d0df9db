//! Multipath uplinks: sans-IO health tracking and failover ([`tracker`]), the probe wire format
//! ([`probe`]), the `[uplinks]` config, per-uplink policy routing ([`routing`]) and the tokio shell
//! that probes over real sockets ([`monitor`]); redundant mode for flagged overlay peers
//! ([`redundant`]).

mod config;
pub mod monitor;
pub mod probe;
pub mod react;
pub mod redundant;
pub mod routing;
pub mod tracker;

pub use config::{UplinkConfig, UplinksConfig, UplinksConfigError, UplinksPlan};
