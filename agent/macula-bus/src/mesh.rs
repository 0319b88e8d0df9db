//! `io.macula.Mesh1`: realm membership (peers) and pub/sub.

use std::collections::HashMap;

use zbus::object_server::SignalEmitter;
use zbus::zvariant::OwnedValue;

use crate::firewall::BoxFuture;
use crate::{Caller, Error, caller};

/// D-Bus interface name.
pub const INTERFACE: &str = "io.macula.Mesh1";

/// One peer of the `Mesh1.Peers` property. Metadata fields are empty / 0 while the peer's
/// metadata is unknown.
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
pub struct MeshPeer {
    pub node_id: String,
    pub name: String,
    /// `edge` or `hub`.
    pub role: String,
    /// `alive`, `suspect` or `down`.
    pub state: String,
    pub generation: u32,
    pub addrs: Vec<String>,
    /// Uplink name per entry of `addrs`.
    pub uplinks: Vec<String>,
    /// WireGuard public key, base64 (empty when unknown).
    pub overlay_key: String,
    /// Agent software version.
    pub version: String,
    /// Version of the member's signed metadata.
    pub meta_version: u64,
    /// Failure-domain labels.
    pub site: String,
    pub power: String,
    /// Bytes offered and free, as last announced.
    pub storage_total: u64,
    pub storage_free: u64,
}

/// What the mesh interface needs from the daemon.
pub trait MeshControl: Send + Sync + 'static {
    /// Is the node in a realm (has a valid membership certificate)?
    fn enabled(&self) -> bool;
    /// Every known peer.
    fn peers(&self) -> Vec<MeshPeer>;
    /// Publishes on a realm topic; returns the sequence number.
    fn publish(&self, topic: String, payload: Vec<u8>) -> BoxFuture<'_, Result<u64, Error>>;
    /// Subscribes this node to a topic; its publications arrive as `Publication` signals sent
    /// to `caller` only, until the caller leaves the bus. Returns how many peers acknowledged.
    fn subscribe(&self, topic: String, caller: Caller) -> BoxFuture<'_, Result<u32, Error>>;
    /// Creates a realm with this node as its first member (realm key kept in the state dir);
    /// returns the realm ID.
    fn create_realm(&self, name: String) -> Result<String, Error>;
    /// Issues a membership certificate (text form) with this node's realm key; with `admin`,
    /// one granting the admin role (remote administration).
    fn admit(
        &self,
        node_id: String,
        name: String,
        role: String,
        valid_days: u32,
        admin: bool,
    ) -> Result<String, Error>;
    /// Installs a membership certificate for this node and starts the mesh; returns the realm ID.
    fn join(&self, cert: String) -> Result<String, Error>;
    /// Makes a one-time join code (text form) for a node named `name` with `role`, whose
    /// certificate is valid `valid_days`; the code expires after `expires_s` seconds. Needs the
    /// realm key on this node, and its mesh running (it answers the code's request).
    fn invite(
        &self,
        name: String,
        role: String,
        valid_days: u32,
        expires_s: u64,
    ) -> Result<String, Error>;
    /// Has this node admitted with a join code: finds the issuer (bootstrap entries, LAN
    /// beacons), proves the code, installs the certificate and starts the mesh; returns the
    /// realm ID.
    fn join_code(&self, code: String) -> BoxFuture<'_, Result<String, Error>>;
    /// Revokes a node from the realm (needs the realm key) and spreads the revocation.
    fn revoke(&self, node_id: String) -> Result<(), Error>;
    /// Calls the RPC procedure `mesh.ping` on a member; returns its certificate name and the
    /// round-trip time in microseconds.
    fn ping(&self, node_id: String) -> BoxFuture<'_, Result<(String, u64), Error>>;
    /// This node's certificate and its renewal: realm ID, expiry, when renewal is due, when it
    /// was last renewed (0: not since the start) and why the last attempt failed (empty when
    /// none failed since). Unix seconds.
    fn certificate(&self) -> Result<(String, u64, u64, u64, String), Error>;
    /// Runs one D-Bus method call (a `remote::RemoteCall`, wire-encoded) on member `node_id`
    /// over the mesh RPC `admin.call`, presenting this node's certificate; returns the member's
    /// `remote::RemoteReply`, wire-encoded. The member refuses it unless the certificate grants
    /// the admin role.
    fn remote(&self, node_id: String, call: Vec<u8>) -> BoxFuture<'_, Result<Vec<u8>, Error>>;
    /// This node's report and every alive member's that answered the RPC `node.report` in
    /// time: see [`MemberReport`].
    fn reports(&self) -> BoxFuture<'_, Result<Vec<MemberReport>, Error>>;
}

/// One member's report (`Mesh1.Reports()`, `a(stssb)`): node ID, system uptime in seconds, the
/// slot it booted (`""`: unknown, no RAUC), its last update's result (RAUC's last error, `""`:
/// succeeded) and whether that result is known (false without RAUC).
pub type MemberReport = (String, u64, String, String, bool);

/// The `io.macula.Mesh1` server object.
pub struct MeshObject {
    control: Box<dyn MeshControl>,
}

impl MeshObject {
    pub fn new(control: Box<dyn MeshControl>) -> Self {
        Self { control }
    }
}

#[zbus::interface(name = "io.macula.Mesh1")]
impl MeshObject {
    /// Whether the mesh runs (false: no membership certificate, see docs/realms.md); changes
    /// are announced by `PropertiesChanged`.
    #[zbus(property)]
    fn enabled(&self) -> bool {
        self.control.enabled()
    }

    /// Known peers and their state; every change is announced both by `PropertiesChanged` (with
    /// the new value) and by `PeerChanged` (which peer, for clients that only need the delta).
    #[zbus(property)]
    fn peers(&self) -> Vec<MeshPeer> {
        self.control.peers()
    }

    /// Publishes `payload` on `topic` to every subscriber in the realm.
    async fn publish(&self, topic: String, payload: Vec<u8>) -> Result<u64, Error> {
        self.control.publish(topic, payload).await
    }

    /// Subscribes the caller to `topic` (its publications are signalled to the caller alone);
    /// returns the number of peers that acknowledged.
    async fn subscribe(
        &self,
        topic: String,
        #[zbus(header)] header: zbus::message::Header<'_>,
    ) -> Result<u32, Error> {
        self.control.subscribe(topic, caller(&header)).await
    }

    /// Creates a realm with this node as its first member; returns the realm ID.
    fn create_realm(&self, name: String) -> Result<String, Error> {
        self.control.create_realm(name)
    }

    /// Issues a membership certificate for `node_id` (needs the realm key on this node); with
    /// `admin`, granting the admin role.
    fn admit(
        &self,
        node_id: String,
        name: String,
        role: String,
        valid_days: u32,
        admin: bool,
    ) -> Result<String, Error> {
        self.control.admit(node_id, name, role, valid_days, admin)
    }

    /// Installs this node's membership certificate (text form) and starts the mesh.
    fn join(&self, cert: String) -> Result<String, Error> {
        self.control.join(cert)
    }

    /// Makes a one-time join code for a node named `name` with `role` (`edge`, `hub`), its
    /// certificate valid `valid_days`, the code valid `expires_s` seconds (needs the realm key
    /// and the mesh running on this node).
    fn invite(
        &self,
        name: String,
        role: String,
        valid_days: u32,
        expires_s: u64,
    ) -> Result<String, Error> {
        self.control.invite(name, role, valid_days, expires_s)
    }

    /// Has this node admitted with a join code (from `Invite` on a node of the realm); returns
    /// the realm ID. Takes up to about 30 s while it looks for the issuing node.
    async fn join_code(&self, code: String) -> Result<String, Error> {
        self.control.join_code(code).await
    }

    /// Revokes `node_id` from the realm (needs the realm key on this node); every member learns
    /// it and cuts the node off.
    fn revoke(&self, node_id: String) -> Result<(), Error> {
        self.control.revoke(node_id)
    }

    /// Calls the RPC procedure `mesh.ping` on member `node_id` (5 s deadline); returns the
    /// member's name and the round-trip time in microseconds.
    async fn ping(&self, node_id: String) -> Result<(String, u64), Error> {
        self.control.ping(node_id).await
    }

    /// This node's certificate: (realm ID, expires, renewal due, last renewed or 0, last
    /// renewal error or ""), unix seconds. `Unavailable` while the mesh is off.
    fn certificate(&self) -> Result<(String, u64, u64, u64, String), Error> {
        self.control.certificate()
    }

    /// Runs a D-Bus method call (`call`: a wire-encoded `RemoteCall`) on member `node_id`, as
    /// `maculactl --node` does; returns the wire-encoded `RemoteReply`. The member checks this
    /// node's certificate grants the admin role before it runs anything.
    async fn remote(&self, node_id: String, call: Vec<u8>) -> Result<Vec<u8>, Error> {
        self.control.remote(node_id, call).await
    }

    /// Every member's report of itself, this node's first, then each alive member that
    /// answered within 2 s: (node ID, uptime s, booted slot or "", last update result, whether
    /// it is known). `Unavailable` while the mesh is off.
    async fn reports(&self) -> Result<Vec<MemberReport>, Error> {
        self.control.reports().await
    }

    /// A peer's state or metadata changed.
    #[zbus(signal)]
    pub async fn peer_changed(
        emitter: &SignalEmitter<'_>,
        node_id: &str,
        state: &str,
        name: &str,
    ) -> zbus::Result<()>;

    /// A publication on a topic the receiver subscribed to (each (publisher, seq) once); sent
    /// to the subscriber only.
    #[zbus(signal)]
    pub async fn publication(
        emitter: &SignalEmitter<'_>,
        topic: &str,
        publisher: &str,
        seq: u64,
        payload: &[u8],
    ) -> zbus::Result<()>;
}

/// Client proxy for `io.macula.Mesh1`.
#[zbus::proxy(
    interface = "io.macula.Mesh1",
    default_service = "io.macula.Agent",
    default_path = "/io/macula/Agent"
)]
pub trait Mesh1 {
    #[zbus(property)]
    fn enabled(&self) -> zbus::Result<bool>;
    #[zbus(property)]
    fn peers(&self) -> zbus::Result<Vec<HashMap<String, OwnedValue>>>;
    fn publish(&self, topic: &str, payload: &[u8]) -> zbus::Result<u64>;
    fn subscribe(&self, topic: &str) -> zbus::Result<u32>;
    fn create_realm(&self, name: &str) -> zbus::Result<String>;
    fn admit(
        &self,
        node_id: &str,
        name: &str,
        role: &str,
        valid_days: u32,
        admin: bool,
    ) -> zbus::Result<String>;
    fn join(&self, cert: &str) -> zbus::Result<String>;
    fn invite(
        &self,
        name: &str,
        role: &str,
        valid_days: u32,
        expires_s: u64,
    ) -> zbus::Result<String>;
    fn join_code(&self, code: &str) -> zbus::Result<String>;
    fn revoke(&self, node_id: &str) -> zbus::Result<()>;
    fn ping(&self, node_id: &str) -> zbus::Result<(String, u64)>;
    fn certificate(&self) -> zbus::Result<(String, u64, u64, u64, String)>;
    fn remote(&self, node_id: &str, call: &[u8]) -> zbus::Result<Vec<u8>>;
    fn reports(&self) -> zbus::Result<Vec<(String, u64, String, String, bool)>>;
    #[zbus(signal)]
    fn peer_changed(&self, node_id: String, state: String, name: String) -> zbus::Result<()>;
    #[zbus(signal)]
    fn publication(
        &self,
        topic: String,
        publisher: String,
        seq: u64,
        payload: Vec<u8>,
    ) -> zbus::Result<()>;
}
