//! Bootstrap contacts from the config: `host:port` or `<node-id>@host:port`, names resolved.

use std::fmt;
use std::net::SocketAddr;
use std::str::FromStr;

use macula_core::NodeId;
use macula_core::identity::NodeIdError;

/// A bootstrap contact: `host:port`, or `<node-id>@host:port` to also pin the node's key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bootstrap {
    pub node: Option<NodeId>,
    pub addr: SocketAddr,
}

/// Why a string is not a bootstrap contact with an IP address.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BootstrapParseError {
    /// The part before `@` is not a node ID.
    #[error("`{entry}`: {source}")]
    NodeId { entry: String, source: NodeIdError },
    /// The address is not `ip:port`.
    #[error("`{entry}`: {source}; write `host:port` or `<node-id>@host:port` with an IP address")]
    Addr {
        entry: String,
        source: std::net::AddrParseError,
    },
}

impl FromStr for Bootstrap {
    type Err = BootstrapParseError;
    fn from_str(s: &str) -> Result<Self, BootstrapParseError> {
        let (node, addr) = match s.split_once('@') {
            Some((n, a)) => (
                Some(
                    n.parse::<NodeId>()
                        .map_err(|source| BootstrapParseError::NodeId {
                            entry: s.into(),
                            source,
                        })?,
                ),
                a,
            ),
            None => (None, s),
        };
        let addr = addr.parse().map_err(|source| BootstrapParseError::Addr {
            entry: s.into(),
            source,
        })?;
        Ok(Self { node, addr })
    }
}

/// Why a bootstrap entry from the config gave no contact.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BootstrapError {
    /// Not `host:port` / `<node-id>@host:port` (a config error).
    Syntax(String),
    /// A well-formed host name that does not resolve now (no network yet, unknown name).
    Resolve(String),
}

impl fmt::Display for BootstrapError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Syntax(e) | Self::Resolve(e) => f.write_str(e),
        }
    }
}

impl Bootstrap {
    /// Parses a config entry whose host is an IP address or a name. Names are resolved now by
    /// the C library (`getaddrinfo`: `/etc/hosts`, then DNS, per `/etc/nsswitch.conf`); every
    /// address the name has becomes a contact, with the same pinned node ID if one is given.
    pub fn resolve(s: &str) -> Result<Vec<Self>, BootstrapError> {
        use std::net::ToSocketAddrs;
        if let Ok(b) = s.parse::<Self>() {
            return Ok(vec![b]);
        }
        let (node, hostport) = match s.split_once('@') {
            Some((n, a)) => (
                Some(
                    n.parse::<NodeId>()
                        .map_err(|e| BootstrapError::Syntax(format!("`{s}`: {e}")))?,
                ),
                a,
            ),
            None => (None, s),
        };
        let syntax = || {
            BootstrapError::Syntax(format!(
                "`{s}`: write `host:port` or `<node-id>@host:port` (host: IP address or name)"
            ))
        };
        let (host, port) = hostport.rsplit_once(':').ok_or_else(syntax)?;
        let valid_name = !host.is_empty()
            && host.len() <= 253
            && host.split('.').all(|l| {
                !l.is_empty() && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            });
        if !valid_name || port.parse::<u16>().is_err() {
            return Err(syntax());
        }
        let addrs: Vec<SocketAddr> = hostport
            .to_socket_addrs()
            .map_err(|e| BootstrapError::Resolve(format!("`{s}`: cannot resolve {host}: {e}")))?
            .collect();
        if addrs.is_empty() {
            return Err(BootstrapError::Resolve(format!(
                "`{s}`: {host} has no address"
            )));
        }
        Ok(addrs.into_iter().map(|addr| Self { node, addr }).collect())
    }
}

/// The contacts of the `[mesh] bootstrap` entries: see [`Bootstrap::resolve_all`].
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Contacts {
    pub contacts: Vec<Bootstrap>,
    /// Entries whose name does not resolve now, each with why: skipped (reported, not fatal).
    pub skipped: Vec<BootstrapError>,
}

impl Bootstrap {
    /// Every contact of the config's entries. A name that does not resolve yet must not keep the
    /// node off the realm (the LAN beacon and the other contacts still work): it is skipped; a
    /// malformed entry is a config error and fails.
    pub fn resolve_all(entries: &[String]) -> Result<Contacts, BootstrapError> {
        Self::resolve_all_with(entries, Self::resolve)
    }

    fn resolve_all_with(
        entries: &[String],
        resolve: impl Fn(&str) -> Result<Vec<Self>, BootstrapError>,
    ) -> Result<Contacts, BootstrapError> {
        let mut out = Contacts::default();
        for entry in entries {
            match resolve(entry) {
                Ok(c) => out.contacts.extend(c),
                Err(e @ BootstrapError::Resolve(_)) => out.skipped.push(e),
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }
}

impl fmt::Display for Bootstrap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.node {
            Some(n) => write!(f, "{n}@{}", self.addr),
            None => write!(f, "{}", self.addr),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use macula_core::NodeKey;

    #[test]
    fn parse_errors_keep_their_type() {
        assert!(matches!(
            "nonsense@192.0.2.7:4433".parse::<Bootstrap>(),
            Err(BootstrapParseError::NodeId {
                source: NodeIdError::Length(8),
                ..
            })
        ));
        let e = "192.0.2.7".parse::<Bootstrap>().unwrap_err();
        assert!(matches!(e, BootstrapParseError::Addr { ref entry, .. } if entry == "192.0.2.7"));
        assert!(e.to_string().contains("write `host:port`"), "{e}");
    }

    #[test]
    fn unresolved_names_are_skipped_and_malformed_entries_fail() {
        let fake = |e: &str| match e {
            "down.example:1" => Err(BootstrapError::Resolve(format!("`{e}`: no answer"))),
            e => Bootstrap::resolve(e),
        };
        let entries = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let got = Bootstrap::resolve_all_with(&entries(&["192.0.2.7:1", "down.example:1"]), fake)
            .unwrap();
        assert_eq!(
            got.contacts,
            vec!["192.0.2.7:1".parse::<Bootstrap>().unwrap()]
        );
        assert_eq!(
            got.skipped,
            vec![BootstrapError::Resolve(
                "`down.example:1`: no answer".into()
            )]
        );
        assert!(matches!(
            Bootstrap::resolve_all_with(&entries(&["down.example:1", "a b:1"]), fake),
            Err(BootstrapError::Syntax(_))
        ));
        assert_eq!(Bootstrap::resolve_all(&[]), Ok(Contacts::default()));
    }

    #[test]
    fn bootstrap_entries_resolve_ips_and_names() {
        let id = NodeKey::from_seed([4; 32]).node_id();
        let ip = Bootstrap::resolve("192.0.2.7:4433").unwrap();
        assert_eq!(ip, vec!["192.0.2.7:4433".parse::<Bootstrap>().unwrap()]);
        // `localhost` comes from /etc/hosts (no DNS involved)
        let named = Bootstrap::resolve(&format!("{id}@localhost:4433")).unwrap();
        assert!(!named.is_empty());
        assert!(
            named
                .iter()
                .all(|b| b.node == Some(id) && b.addr.ip().is_loopback() && b.addr.port() == 4433)
        );
        for bad in [
            "localhost",
            "localhost:",
            "localhost:99999",
            ":4433",
            "a b:1",
            "x@host:1",
        ] {
            assert!(
                matches!(Bootstrap::resolve(bad), Err(BootstrapError::Syntax(_))),
                "{bad}: {:?}",
                Bootstrap::resolve(bad)
            );
        }
    }
}
