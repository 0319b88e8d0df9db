//! The agent's D-Bus surface (see `docs/dbus.md`).
//!
//! One module per interface. Each holds the server object (a zbus `#[interface]` that drives its
//! subsystem through a backend trait declared next to it, implemented in `maculad`) and the client
//! proxy `maculactl` uses. [`Error`] is the one mapping from failures to named D-Bus errors.

use std::fmt;
use std::str::FromStr;

pub mod dashboard;
pub mod firewall;
pub mod mesh;
pub mod node;
pub mod overlay;
pub mod proofs;
pub mod remote;
pub mod s3;
pub mod storage;
pub mod update;
pub mod uplinks;

/// Well-known bus name of the agent.
pub const BUS_NAME: &str = "io.macula.Agent";
/// Object path of every agent interface.
pub const OBJECT_PATH: &str = "/io/macula/Agent";
/// Environment variable that selects the bus, like `--bus`.
pub const BUS_ENV: &str = "MACULA_BUS";

/// The unique bus name of a method's caller. Signals that carry a caller's data (`Progress` of
/// its transfer, `Publication`s of its subscription) are sent to it alone, never broadcast.
pub type Caller = Option<zbus::names::OwnedUniqueName>;

/// The caller of the method whose header this is.
pub fn caller(header: &zbus::message::Header<'_>) -> Caller {
    header.sender().map(|s| s.to_owned().into())
}

/// Errors returned by agent methods, as named D-Bus errors `io.macula.Error.*`.
/// Every message says what is wrong and, where it can, what to do next.
#[derive(Debug, zbus::DBusError)]
#[zbus(prefix = "io.macula.Error")]
pub enum Error {
    /// A transport-level zbus error.
    #[zbus(error)]
    ZBus(zbus::Error),
    /// An argument is malformed or out of range.
    InvalidArgument(String),
    /// The named thing does not exist.
    NotFound(String),
    /// The caller may not do this.
    PermissionDenied(String),
    /// Another member refused to run a remote command for this node (`maculactl --node`): its
    /// certificate grants no admin role, or the method is not remotely runnable.
    RemoteRefused(String),
    /// The subsystem needed for this is not running or not configured.
    Unavailable(String),
    /// Another operation is in progress; try again when it finishes.
    Busy(String),
    /// The operation was attempted and failed.
    Failed(String),
}

/// Which bus to use: `system`, `session`, or a D-Bus address such as `unix:path=/run/x`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BusSpec {
    System,
    Session,
    Address(String),
}

impl FromStr for BusSpec {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "system" => Ok(BusSpec::System),
            "session" => Ok(BusSpec::Session),
            a if a.contains(':') && a.contains('=') => Ok(BusSpec::Address(a.to_owned())),
            other => Err(format!(
                "`{other}` is not a bus: use `system`, `session` or a D-Bus address like \
                 `unix:path=/run/dbus/system_bus_socket`"
            )),
        }
    }
}

impl fmt::Display for BusSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BusSpec::System => f.write_str("system"),
            BusSpec::Session => f.write_str("session"),
            BusSpec::Address(a) => f.write_str(a),
        }
    }
}

impl BusSpec {
    /// A connection builder for this bus.
    pub fn builder(&self) -> zbus::Result<zbus::connection::Builder<'static>> {
        match self {
            BusSpec::System => zbus::connection::Builder::system(),
            BusSpec::Session => zbus::connection::Builder::session(),
            BusSpec::Address(a) => zbus::connection::Builder::address(a.as_str()),
        }
    }

    /// Connects as a client.
    pub async fn connect(&self) -> zbus::Result<zbus::Connection> {
        self.builder()?.build().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bus_spec_parses() {
        assert_eq!("system".parse::<BusSpec>(), Ok(BusSpec::System));
        assert_eq!("session".parse::<BusSpec>(), Ok(BusSpec::Session));
        assert_eq!(
            "unix:path=/tmp/b".parse::<BusSpec>(),
            Ok(BusSpec::Address("unix:path=/tmp/b".into()))
        );
        assert!(
            "sytem"
                .parse::<BusSpec>()
                .unwrap_err()
                .contains("not a bus")
        );
    }

    #[test]
    fn error_names() {
        use zbus::DBusError;
        assert_eq!(
            Error::InvalidArgument("x".into()).name().as_str(),
            "io.macula.Error.InvalidArgument"
        );
        assert_eq!(
            Error::PermissionDenied("x".into()).name().as_str(),
            "io.macula.Error.PermissionDenied"
        );
    }
}
