//! `io.macula.S3`: the S3 gateway's status and access keys.
//!
//! `Status()` (read-only) reports the gateway's counters and the index's size.
//! `CreateKey(name, bucket, read_only)` makes a new access key for the whole realm (limited to
//! one bucket and/or to reads when asked) and returns `(id, secret)`; the secret is shown once,
//! to the caller (root or group `macula`: the bus policy gives this method, and `ListKeys()`, to
//! nobody else).

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
    /// Multipart uploads in progress in the realm (in this node's copy of the index).
    pub uploads: u32,
    /// Live buckets, objects and access keys in this node's copy of the index.
    pub buckets: u32,
    pub objects: u64,
    pub keys: u32,
}

/// One access key as `ListKeys` shows it: (id, name, created unix ms, bucket or "" for every
/// bucket, read-only).
pub type KeyInfo = (String, String, u64, String, bool);

/// What the S3 interface needs from the daemon.
pub trait S3Control: Send + Sync + 'static {
    fn status(&self) -> S3Status;
    /// Access keys: (id, name, created unix ms, bucket or "", read-only); never secrets.
    fn list_keys(&self) -> Vec<KeyInfo>;
    /// Creates an access key named `name` realm-wide, limited to `bucket` (`None`: every
    /// bucket) and to reads with `read_only`: `(key id, secret)`.
    fn create_key(
        &self,
        name: String,
        bucket: Option<String>,
        read_only: bool,
    ) -> BoxFuture<'_, Result<(String, String), Error>>;
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

    /// The realm's access keys: (id, name, created unix ms, bucket or "", read-only).
    async fn list_keys(&self) -> Vec<KeyInfo> {
        self.control.list_keys()
    }

    /// Revokes an access key on every gateway of the realm.
    async fn revoke_key(&self, id: String) -> Result<(), Error> {
        self.control.revoke_key(id).await
    }

    /// Creates an access key for every gateway of the realm, limited to `bucket` ("" : every
    /// bucket) and, with `read_only`, to reads; returns (key id, secret).
    async fn create_key(
        &self,
        name: String,
        bucket: String,
        read_only: bool,
    ) -> Result<(String, String), Error> {
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
        let bucket = (!bucket.is_empty()).then_some(bucket);
        self.control.create_key(name, bucket, read_only).await
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
    fn list_keys(&self) -> zbus::Result<Vec<(String, String, u64, String, bool)>>;
    fn create_key(
        &self,
        name: &str,
        bucket: &str,
        read_only: bool,
    ) -> zbus::Result<(String, String)>;
    fn revoke_key(&self, id: &str) -> zbus::Result<()>;
}
