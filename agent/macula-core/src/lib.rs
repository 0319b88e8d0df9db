//! Macula agent core: node identity, config loading, the wire encoding and signature domains
//! shared by every other crate. See `docs/ARCHITECTURE.md`.

pub mod base32;
pub mod config;
pub mod cpu;
pub mod domains;
pub mod fsutil;
pub mod fuzzing;
pub mod identity;
pub mod metrics;
pub mod sync;
pub mod wire;

pub use identity::{NodeId, NodeKey};

/// The agent's version, as reported on D-Bus and by `maculactl`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
