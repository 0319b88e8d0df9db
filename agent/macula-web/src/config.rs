//! `[dashboard]` in `agent.toml`.

use std::net::SocketAddr;

use macula_core::config::Role;
use macula_core::metrics::is_local;
use serde::Deserialize;

/// Where hubs serve the dashboard unless `listen` says otherwise.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:9480";

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DashboardConfig {
    /// `address:port` to serve on. Absent: `127.0.0.1:9480` on hubs, off on edges; `""`: off.
    /// Loopback, private, CGNAT/overlay, ULA and link-local addresses only, unless
    /// `public = true`.
    pub listen: Option<String>,
    /// Allow `listen` on a public or unspecified (`0.0.0.0`, `::`) address.
    pub public: bool,
    /// Show the read-only pages without login to clients on the loopback address (admin
    /// actions still need a login).
    pub open_on_loopback: bool,
}

impl DashboardConfig {
    /// The address to serve on for a node of `role` (`None`: off), or what to change.
    pub fn addr(&self, role: Role) -> Result<Option<SocketAddr>, String> {
        let listen = match (&self.listen, role) {
            (Some(l), _) => l.as_str(),
            (None, Role::Hub) => DEFAULT_LISTEN,
            (None, Role::Edge) => return Ok(None),
        };
        if listen.is_empty() {
            return Ok(None);
        }
        let addr: SocketAddr = listen.parse().map_err(|_| {
            format!(
                "[dashboard] listen `{listen}` is not an address:port (e.g. `{DEFAULT_LISTEN}`, \
                 `100.64.0.1:9480`); `\"\"` turns the dashboard off"
            )
        })?;
        if !self.public && !is_local(addr.ip()) {
            return Err(format!(
                "[dashboard] listen {addr} is not a loopback, private or overlay address; set \
                 `public = true` to serve the dashboard there"
            ));
        }
        Ok(Some(addr))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(listen: Option<&str>, public: bool) -> DashboardConfig {
        DashboardConfig {
            listen: listen.map(str::to_owned),
            public,
            open_on_loopback: false,
        }
    }

    #[test]
    fn on_by_default_for_hubs_only_and_on_loopback() {
        let d = DashboardConfig::default();
        assert_eq!(d.addr(Role::Hub), Ok(Some(DEFAULT_LISTEN.parse().unwrap())));
        assert_eq!(d.addr(Role::Edge), Ok(None));
        assert_eq!(with(Some(""), false).addr(Role::Hub), Ok(None));
        let edge = with(Some("100.64.0.7:9480"), false).addr(Role::Edge);
        assert_eq!(edge, Ok(Some("100.64.0.7:9480".parse().unwrap())));
    }

    #[test]
    fn public_and_malformed_addresses_are_refused_with_the_fix() {
        let e = with(Some("0.0.0.0:9480"), false)
            .addr(Role::Hub)
            .unwrap_err();
        assert!(e.contains("public = true"), "{e}");
        assert!(with(Some("0.0.0.0:9480"), true).addr(Role::Hub).is_ok());
        let e = with(Some("localhost"), false).addr(Role::Hub).unwrap_err();
        assert!(e.contains("not an address:port"), "{e}");
    }
}
