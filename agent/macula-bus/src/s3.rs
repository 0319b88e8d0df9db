//! `io.macula.S3`: the S3 gateway's status and access keys.
//!
//! `Status()` (read-only) reports the gateway's counters and the index's size. `CreateKey(name)`
//! makes a new access key for the whole realm and returns `(id, secret)`; the secret is shown
//! once, to the caller (root or group `macula`: the bus policy gives this method, and
//! `ListKeys()`, to nobody else).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use crate::Error;

/// D-Bus interface name.
pub const INTERFACE: &str = "io.macula.S3";

/// A boxed future (the backend trait must stay object-safe).
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// `S3.Status()`: this node's gateway and its view of the realm's index.
#[derive(Debug, Clone, PartialEq, Eq, zbus::zvariant::SerializeDict, zbus::zvariant::Type)]
#[zvariant(signature = "a{sv}", crate = "zbus::zvariant")]
pub struct S3Status {
    /// `[s3] enabled` on this node.
    pub enabled: bool,
    /// The listener is open (after the index caught up).
    pub serving: bool,
    pub listen: String,
    pub region: String,
    /// Requests served since start, and those answered with an S3 error.
    pub requests: u64,
    pub errors: u64,
    /// Object bytes received (PUT bodies, parts) and sent (GET bodies) since start.
    pub bytes_in: u64,
    pub bytes_out: u64,
    /// Multipart uploads in progress through this gateway.
    pub uploads: u32,
    /// Live buckets, objects and access keys in this node's copy of the index.
    pub buckets: u32,
    pub objects: u64,
    pub keys: u32,
}

/// What the S3 interface needs from the daemon.
pub trait S3Control: Send + Sync + 'static {
    fn status(&self) -> S3Status;
    /// Access keys: (id, name, created unix ms); never secrets.
    fn list_keys(&self) -> Vec<(String, String, u64)>;
    /// Creates an access key named `name` realm-wide: `(key id, secret)`.
    fn create_key(&self, name: String) -> BoxFuture<'_, Result<(String, String), Error>>;
    /// Revokes access key `id` realm-wide (`NotFound` when there is no such live key).
    fn revoke_key(&self, id: String) -> BoxFuture<'_, Result<(), Error>>;
}

/// The `io.macula.S3` server object.
pub struct S3Object {
    control: Arc<dyn S3Control>,
}

impl S3Object {
    pub fn new(control: Arc<dyn S3Control>) -> Self {
        Self { control }
    }
}

#[zbus::interface(name = "io.macula.S3")]
impl S3Object {
    /// The gateway's counters and the index's size.
    async fn status(&self) -> S3Status {
        self.control.status()
    }

    /// The realm's access keys: (id, name, created unix ms).
    async fn list_keys(&self) -> Vec<(String, String, u64)> {
        self.control.list_keys()
    }

    /// Revokes an access key on every gateway of the realm.
    async fn revoke_key(&self, id: String) -> Result<(), Error> {
        self.control.revoke_key(id).await
    }

    /// Creates an access key for every gateway of the realm; returns (key id, secret).
    async fn create_key(&self, name: String) -> Result<(String, String), Error> {
        let ok = !name.is_empty()
            && name.len() <= 64
            && name
                .bytes()
                .all(|c| c.is_ascii_alphanumeric() || b"-_.@".contains(&c));
        if !ok {
            return Err(Error::InvalidArgument(format!(
                "key name `{name}`: use 1-64 letters, digits, '-', '_', '.', '@'"
            )));
        }
        self.control.create_key(name).await
    }
}

/// Client proxy for `io.macula.S3`.
#[zbus::proxy(
    interface = "io.macula.S3",
    default_service = "io.macula.Agent",
    default_path = "/io/macula/Agent"
)]
pub trait S3 {
    fn status(&self)
    -> zbus::Result<std::collections::HashMap<String, zbus::zvariant::OwnedValue>>;
    fn list_keys(&self) -> zbus::Result<Vec<(String, String, u64)>>;
    fn create_key(&self, name: &str) -> zbus::Result<(String, String)>;
    fn revoke_key(&self, id: &str) -> zbus::Result<()>;
}
