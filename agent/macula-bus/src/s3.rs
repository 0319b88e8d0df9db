//! `io.macula.S3`: the S3 gateway's access keys.
//!
//! `CreateKey(name)` makes a new access key for the whole realm and returns `(id, secret)`; the
//! secret is shown once, to the caller (root or group `macula`: the bus policy gives this
//! state-changing method to nobody else).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use crate::Error;

/// D-Bus interface name.
pub const INTERFACE: &str = "io.macula.S3";

/// A boxed future (the backend trait must stay object-safe).
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What the S3 interface needs from the daemon.
pub trait S3Control: Send + Sync + 'static {
    /// Creates an access key named `name` realm-wide: `(key id, secret)`.
    fn create_key(&self, name: String) -> BoxFuture<'_, Result<(String, String), Error>>;
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
    fn create_key(&self, name: &str) -> zbus::Result<(String, String)>;
}
