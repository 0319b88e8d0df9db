//! Exit codes and error messages (documented in `docs/cli.md`).

use macula_bus::{BUS_NAME, BusSpec};

/// The operation failed.
pub const FAILED: u8 = 1;
// 2 is clap's usage error.
/// The agent is not running on the bus, or the bus cannot be reached.
pub const NOT_RUNNING: u8 = 3;
/// The caller is not allowed to do this (bus policy or agent check).
pub const PERMISSION_DENIED: u8 = 4;
/// An argument was rejected by the agent.
pub const INVALID_ARGUMENT: u8 = 5;
/// The named thing does not exist.
pub const NOT_FOUND: u8 = 6;
/// The subsystem is not available (not configured or not running), or busy.
pub const UNAVAILABLE: u8 = 7;

/// Errors of a `maculactl` run.
#[derive(Debug)]
pub enum CliError {
    /// Could not connect to the bus at all.
    Connect(zbus::Error),
    /// A D-Bus call failed.
    Call(zbus::Error),
    /// Anything else (local I/O, bad output).
    Other(String),
    /// A command that runs without the agent (`card provision`, `realm keygen`) refused its
    /// input, or a command found the agent unable to answer (`realm status` with the mesh off):
    /// the exit code (`INVALID_ARGUMENT`, `NOT_FOUND`, `UNAVAILABLE`, …) and the message.
    Local(u8, String),
}

impl From<zbus::Error> for CliError {
    fn from(e: zbus::Error) -> Self {
        CliError::Call(e)
    }
}

/// The D-Bus error name and message of a failed call, if it was an error reply.
fn error_name(e: &zbus::Error) -> Option<(String, String)> {
    match e {
        zbus::Error::MethodError(name, msg, _) => {
            Some((name.to_string(), msg.clone().unwrap_or_default()))
        }
        zbus::Error::FDO(f) => {
            use zbus::DBusError;
            Some((
                f.name().to_string(),
                f.description().unwrap_or_default().to_owned(),
            ))
        }
        _ => None,
    }
}

/// Maps an error to (exit code, message for people).
pub fn classify(e: &CliError, bus: &BusSpec) -> (u8, String) {
    match e {
        CliError::Connect(e) => (
            NOT_RUNNING,
            format!(
                "cannot connect to the {bus} bus: {e}. Is dbus-daemon running? (--bus / MACULA_BUS select another bus)"
            ),
        ),
        CliError::Other(m) => (FAILED, m.clone()),
        CliError::Local(code, m) => (*code, m.clone()),
        CliError::Call(e) => match error_name(e) {
            Some((name, msg)) => match name.as_str() {
                "org.freedesktop.DBus.Error.ServiceUnknown"
                | "org.freedesktop.DBus.Error.NameHasNoOwner" => (
                    NOT_RUNNING,
                    format!(
                        "the Macula agent is not running on the {bus} bus ({BUS_NAME} has no owner). Start it with `maculad` or check its service log"
                    ),
                ),
                "org.freedesktop.DBus.Error.AccessDenied" | "io.macula.Error.PermissionDenied" => (
                    PERMISSION_DENIED,
                    format!(
                        "permission denied: {msg}. Changing the agent's state needs root or membership in the `macula` group"
                    ),
                ),
                "io.macula.Error.RemoteRefused" => (PERMISSION_DENIED, msg),
                "io.macula.Error.InvalidArgument" => (INVALID_ARGUMENT, msg),
                "io.macula.Error.NotFound" => (NOT_FOUND, msg),
                "io.macula.Error.Unavailable" | "io.macula.Error.Busy" => (UNAVAILABLE, msg),
                _ => (FAILED, format!("{name}: {msg}")),
            },
            None => (FAILED, e.to_string()),
        },
    }
}
