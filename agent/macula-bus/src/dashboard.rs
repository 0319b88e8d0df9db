//! `io.macula.Dashboard1`: the hub dashboard's login token (`docs/dashboard.md`).

use crate::Error;

/// D-Bus interface name.
pub const INTERFACE: &str = "io.macula.Dashboard1";

/// What the dashboard interface needs from the daemon.
pub trait DashboardControl: Send + Sync + 'static {
    /// Issues a new login token, stores only its hash, ends every dashboard session opened with
    /// the previous one, and returns the token (shown once).
    fn issue_token(&self) -> Result<String, Error>;
}

/// The `io.macula.Dashboard1` server object.
pub struct DashboardObject {
    control: Box<dyn DashboardControl>,
}

impl DashboardObject {
    pub fn new(control: Box<dyn DashboardControl>) -> Self {
        Self { control }
    }
}

#[zbus::interface(name = "io.macula.Dashboard1")]
impl DashboardObject {
    /// A new login token for the dashboard; the previous token stops working. Root and group
    /// `macula` only (bus policy).
    fn issue_token(&self) -> Result<String, Error> {
        self.control.issue_token()
    }
}

/// Client proxy for `io.macula.Dashboard1`.
#[zbus::proxy(
    interface = "io.macula.Dashboard1",
    default_service = "io.macula.Agent",
    default_path = "/io/macula/Agent"
)]
pub trait Dashboard1 {
    fn issue_token(&self) -> zbus::Result<String>;
}
