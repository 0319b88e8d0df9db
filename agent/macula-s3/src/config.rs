//! The `[s3]` section of `agent.toml`.

use std::net::SocketAddr;

use macula_core::config::Role;
use serde::Deserialize;

/// `[s3]`: the S3 gateway of this node.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct S3Config {
    /// Serve S3 on this node. Unset: on for hubs that store shards (`[node] role = "hub"`,
    /// `[storage] enabled`), off elsewhere ([`S3Config::serves`]).
    pub enabled: Option<bool>,
    /// Where to listen (default `127.0.0.1:3900`). Loopback, private, CGNAT/overlay, ULA and
    /// link-local addresses only, unless `public = true`.
    pub listen: SocketAddr,
    /// The region clients sign for (default `macula`).
    pub region: String,
    /// Virtual-host-style domain: `Host: <bucket>.<domain>` names the bucket. Without it, only
    /// path-style requests.
    pub domain: Option<String>,
    /// Allow `listen` on a public or unspecified (`0.0.0.0`, `::`) address.
    pub public: bool,
    /// A multipart upload neither completed nor aborted this many seconds after it was created
    /// is aborted by its gateway and its parts deleted (S3's lifecycle rule
    /// AbortIncompleteMultipartUpload; default 7 days); 0: kept until a client ends it.
    pub abort_incomplete_uploads_secs: u64,
}

/// Default of [`S3Config::abort_incomplete_uploads_secs`]: 7 days.
pub const ABORT_INCOMPLETE_UPLOADS_SECS: u64 = 7 * 24 * 3600;

impl Default for S3Config {
    fn default() -> Self {
        Self {
            enabled: None,
            listen: SocketAddr::from(([127, 0, 0, 1], 3900)),
            region: "macula".into(),
            domain: None,
            public: false,
            abort_incomplete_uploads_secs: ABORT_INCOMPLETE_UPLOADS_SECS,
        }
    }
}

impl S3Config {
    /// Whether this node serves S3: `enabled`, else a hub (`role`) with storage on (`storage`).
    pub fn serves(&self, role: Role, storage: bool) -> bool {
        self.enabled.unwrap_or(role == Role::Hub && storage)
    }

    /// Checks the section; the error says what to change.
    pub fn check(&self) -> Result<(), String> {
        if self.region.is_empty()
            || !self
                .region
                .bytes()
                .all(|c| c.is_ascii_alphanumeric() || c == b'-')
        {
            return Err(format!(
                "[s3] region `{}` must be letters, digits and '-'",
                self.region
            ));
        }
        if !self.public && !is_local(self.listen.ip()) {
            return Err(format!(
                "[s3] listen {} is not a loopback, private or overlay address; set `public = true` \
                 to serve S3 there",
                self.listen
            ));
        }
        Ok(())
    }
}

pub use macula_core::metrics::is_local;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn on_by_default_for_hubs_that_store_shards() {
        let mut c = S3Config::default();
        assert!(c.serves(Role::Hub, true));
        assert!(!c.serves(Role::Hub, false));
        assert!(!c.serves(Role::Edge, true));
        c.enabled = Some(false);
        assert!(!c.serves(Role::Hub, true));
        c.enabled = Some(true);
        assert!(c.serves(Role::Edge, true));
    }

    #[test]
    fn listen_addresses() {
        let mut c = S3Config::default();
        c.check().unwrap();
        for ok in [
            "10.1.2.3:1",
            "192.168.1.2:1",
            "100.64.0.1:1",
            "[fd00::1]:1",
            "[::1]:1",
        ] {
            c.listen = ok.parse().unwrap();
            c.check().unwrap();
        }
        for bad in ["0.0.0.0:1", "8.8.8.8:1", "[::]:1", "[2001:db8::1]:1"] {
            c.listen = bad.parse().unwrap();
            assert!(c.check().unwrap_err().contains("public = true"), "{bad}");
        }
        c.public = true;
        c.check().unwrap();
        c.region = "us east".into();
        assert!(c.check().is_err());
    }
}
