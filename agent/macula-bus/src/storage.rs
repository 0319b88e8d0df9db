//! `io.macula.Storage1`: erasure-coded object storage in the realm (put/get through file
//! descriptors the caller opened, stat, delete, progress signals, stats and the repair queue).
//!
//! There are no by-path methods: the agent runs as root, so it never opens a file a caller names;
//! the caller opens it with its own permissions and passes the descriptor.

use std::collections::HashMap;

use zbus::object_server::SignalEmitter;
use zbus::zvariant::OwnedValue;

use crate::firewall::BoxFuture;
use crate::{Caller, Error, caller};

/// D-Bus interface name.
pub const INTERFACE: &str = "io.macula.Storage1";

/// `Storage1.Stats`: the local store and the coding; the store's figures are absent while
/// storage is off, `nodes` while it has not started.
#[derive(
    Debug,
    Clone,
    PartialEq,
    Eq,
    zbus::zvariant::SerializeDict,
    zbus::zvariant::Type,
    zbus::zvariant::Value,
    zbus::zvariant::OwnedValue,
)]
#[zvariant(signature = "a{sv}", crate = "zbus::zvariant")]
pub struct StorageStats {
    pub enabled: bool,
    pub running: bool,
    pub dir: String,
    /// The coding of a put now: `[storage] k, m`, or with `coding_auto` chosen from `nodes`
    /// (0, 0 while there are fewer than 2 storage nodes).
    pub k: u16,
    pub m: u16,
    /// `[storage]` sets neither k nor m: each put chooses them from the storage nodes.
    pub coding_auto: bool,
    pub codec: String,
    pub segment_bytes: u32,
    pub quota_bytes: Option<u64>,
    pub owner_quota_bytes: Option<u64>,
    /// Owners with shards here.
    pub owners: Option<u32>,
    pub used_bytes: Option<u64>,
    pub free_bytes: Option<u64>,
    /// Local shards.
    pub shards: Option<u64>,
    /// Members with storage.
    pub nodes: Option<u32>,
    pub inventory_rounds: u64,
    /// Object bytes stored and read by puts and gets through this node since start.
    pub put_bytes: u64,
    pub get_bytes: u64,
}

/// `Storage1.RepairQueue`: the repair planner's queue.
#[derive(
    Debug,
    Clone,
    PartialEq,
    Eq,
    zbus::zvariant::SerializeDict,
    zbus::zvariant::Type,
    zbus::zvariant::Value,
    zbus::zvariant::OwnedValue,
)]
#[zvariant(signature = "a{sv}", crate = "zbus::zvariant")]
pub struct RepairQueue {
    /// Segments this node holds a shard of (its planner watches them).
    pub segments: u64,
    /// Missing at least one shard.
    pub degraded: u64,
    /// Degraded segments whose repair this node leads.
    pub leading: u64,
    pub inflight: u64,
    /// Segment IDs (hex) with fewer than `k` reachable shards.
    pub unrecoverable: Vec<String>,
    /// Shards rebuilt by this node since start.
    pub repaired: u64,
    /// Its failed repair attempts.
    pub failed: u64,
}

/// `Storage1.Stat()`.
#[derive(Debug, Clone, PartialEq, Eq, zbus::zvariant::SerializeDict, zbus::zvariant::Type)]
#[zvariant(signature = "a{sv}", crate = "zbus::zvariant")]
pub struct ObjectStat {
    /// Object ID, hex.
    pub object_id: String,
    /// Bytes.
    pub size: u64,
    pub segments: u32,
    pub segment_bytes: u32,
    pub k: u16,
    pub m: u16,
    pub codec: String,
}

/// What the storage interface needs from the daemon.
pub trait StorageControl: Send + Sync + 'static {
    /// Stores the regular file open at `file` (passed by the caller); `label` names the
    /// operation in `Progress` signals, which go to `caller` only.
    fn put_fd(
        &self,
        file: std::fs::File,
        label: String,
        caller: Caller,
    ) -> BoxFuture<'_, Result<String, Error>>;
    /// Writes the object named by `cap` to `file` (opened for writing by the caller, synced at
    /// the end); returns the bytes written. `Progress` signals go to `caller` only.
    fn get_fd(
        &self,
        cap: String,
        file: std::fs::File,
        label: String,
        caller: Caller,
    ) -> BoxFuture<'_, Result<u64, Error>>;
    /// Size and coding parameters of an object (from its manifest).
    fn stat(&self, cap: String) -> BoxFuture<'_, Result<ObjectStat, Error>>;
    /// Deletes an object stored by this node (owner-signed); returns shards removed.
    fn delete(&self, cap: String) -> BoxFuture<'_, Result<u32, Error>>;
    /// Admin purge on this node: removes every local shard signed by `owner` (a node ID) and
    /// refuses its shards from now on; returns the shards and bytes removed.
    fn purge_owner(&self, owner: String) -> BoxFuture<'_, Result<(u32, u64), Error>>;
    /// Realm-wide purge (needs the realm key on this node): signs a purge order for `owner`,
    /// applies it here and sends it to every member; members down now get it when they come
    /// back. Returns the members that took it now, and the shards and bytes removed in all.
    fn purge_realm(&self, owner: String) -> BoxFuture<'_, Result<(u32, u32, u64), Error>>;
    /// Local store and coding figures.
    fn stats(&self) -> StorageStats;
    /// The repair planner's queue.
    fn repair_queue(&self) -> RepairQueue;
}

/// The `io.macula.Storage1` server object.
pub struct StorageObject {
    control: Box<dyn StorageControl>,
}

impl StorageObject {
    pub fn new(control: Box<dyn StorageControl>) -> Self {
        Self { control }
    }
}

#[zbus::interface(name = "io.macula.Storage1")]
impl StorageObject {
    /// Stores the file behind `fd` (a regular file the caller opened); `label` names it in
    /// the `Progress` signals sent to the caller.
    async fn put_fd(
        &self,
        fd: zbus::zvariant::OwnedFd,
        label: String,
        #[zbus(header)] header: zbus::message::Header<'_>,
    ) -> Result<String, Error> {
        let file = std::fs::File::from(std::os::fd::OwnedFd::from(fd));
        self.control.put_fd(file, label, caller(&header)).await
    }

    /// Writes the object named by `cap` into `fd` (a file the caller opened for writing).
    async fn get_fd(
        &self,
        cap: String,
        fd: zbus::zvariant::OwnedFd,
        label: String,
        #[zbus(header)] header: zbus::message::Header<'_>,
    ) -> Result<u64, Error> {
        let file = std::fs::File::from(std::os::fd::OwnedFd::from(fd));
        self.control.get_fd(cap, file, label, caller(&header)).await
    }

    /// Describes an object (reads its manifest).
    async fn stat(&self, cap: String) -> Result<ObjectStat, Error> {
        self.control.stat(cap).await
    }

    /// Deletes an object this node stored; returns the shards removed.
    async fn delete(&self, cap: String) -> Result<u32, Error> {
        self.control.delete(cap).await
    }

    /// Removes every local shard signed by `owner` and refuses its shards here from now on
    /// (admin purge, e.g. of a revoked member); returns the shards and bytes removed.
    async fn purge_owner(&self, owner: String) -> Result<(u32, u64), Error> {
        self.control.purge_owner(owner).await
    }

    /// Orders every storage node of the realm to remove `owner`'s shards and refuse them (needs
    /// the realm key here); returns the members that took the order now, and the shards and
    /// bytes removed in all.
    async fn purge_realm(&self, owner: String) -> Result<(u32, u32, u64), Error> {
        self.control.purge_realm(owner).await
    }

    /// Local store and coding figures.
    #[zbus(property(emits_changed_signal = "false"))]
    fn stats(&self) -> StorageStats {
        self.control.stats()
    }

    /// The repair planner's queue.
    #[zbus(property(emits_changed_signal = "false"))]
    fn repair_queue(&self) -> RepairQueue {
        self.control.repair_queue()
    }

    /// Progress of a `PutFd` or `GetFd` labelled `path`: `op` is `put` or `get`. Sent to the
    /// method's caller only.
    #[zbus(signal)]
    pub async fn progress(
        emitter: &SignalEmitter<'_>,
        op: &str,
        path: &str,
        done: u64,
        total: u64,
    ) -> zbus::Result<()>;
}

/// Client proxy for `io.macula.Storage1`.
#[zbus::proxy(
    interface = "io.macula.Storage1",
    default_service = "io.macula.Agent",
    default_path = "/io/macula/Agent"
)]
pub trait Storage1 {
    fn put_fd(&self, fd: zbus::zvariant::Fd<'_>, label: &str) -> zbus::Result<String>;
    fn get_fd(&self, cap: &str, fd: zbus::zvariant::Fd<'_>, label: &str) -> zbus::Result<u64>;
    fn stat(&self, cap: &str) -> zbus::Result<HashMap<String, OwnedValue>>;
    fn delete(&self, cap: &str) -> zbus::Result<u32>;
    fn purge_owner(&self, owner: &str) -> zbus::Result<(u32, u64)>;
    fn purge_realm(&self, owner: &str) -> zbus::Result<(u32, u32, u64)>;
    #[zbus(property)]
    fn stats(&self) -> zbus::Result<HashMap<String, OwnedValue>>;
    #[zbus(property)]
    fn repair_queue(&self) -> zbus::Result<HashMap<String, OwnedValue>>;
    #[zbus(signal)]
    fn progress(&self, op: String, path: String, done: u64, total: u64) -> zbus::Result<()>;
}
