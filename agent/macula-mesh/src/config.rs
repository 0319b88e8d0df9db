//! The `[mesh]` section of `agent.toml`.

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::Deserialize;

/// `[mesh]`: where the mesh listens and whom it contacts first.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MeshSection {
    /// UDP address of the mesh endpoint. Default `0.0.0.0:4433`.
    pub listen: SocketAddr,
    /// Addresses announced to peers. Default: the bound address.
    pub advertise: Vec<SocketAddr>,
    /// Bootstrap contacts: `host:port` or `<node-id>@host:port`. Default: none.
    pub bootstrap: Vec<String>,
    /// Membership certificate file. Default `<state dir>/realm.cert`. Without a valid
    /// certificate the mesh stays off (see docs/realms.md).
    pub cert: Option<PathBuf>,
}

impl Default for MeshSection {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([0, 0, 0, 0], 4433)),
            advertise: Vec::new(),
            bootstrap: Vec::new(),
            cert: None,
        }
    }
}
