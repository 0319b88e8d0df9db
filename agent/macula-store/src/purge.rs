//! Realm-wide purges: the realm admin signs a [`PurgeOrder`] for one owner (typically a revoked
//! member) and every storage node removes that owner's shards and refuses them from then on.
//!
//! The order is authorised by the realm key's signature alone, so it does not matter which member
//! carries it: the admin's node sends it to every member it reaches (`store.purge`), each node keeps
//! it with the owner's `purged/` entry, and every node sends the orders it keeps to each member
//! that comes up (so a node that was down meanwhile gets it from whoever it meets first). A node
//! applies an order once; a later copy is answered without touching the disk. An order signed by
//! anything but the realm key, or for another realm, is refused with `PermissionDenied`, whoever
//! sends it.

use std::sync::Arc;
use std::time::Duration;

use macula_core::{NodeId, wire};
use macula_mesh::node::MeshNode;
use macula_mesh::realm::{PurgeOrder, RealmId};
use macula_mesh::rpc::{ErrorCode, Handler, RpcError};

use crate::store::{LocalStore, StoreError};

/// The procedure that delivers a purge order: body `wire(PurgeOrder)`; reply 12 bytes, the
/// shards (u32 LE) and bytes (u64 LE) this call removed (zero when the order was known).
pub const PURGE_PROCEDURE: &str = "store.purge";
/// How long a node waits for one member to take an order.
pub const PURGE_DEADLINE: Duration = Duration::from_secs(30);
/// Largest `wire(PurgeOrder)` accepted.
const MAX_ORDER: usize = 256;

/// What applying an order did here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Applied {
    /// The order was new to this node.
    pub new: bool,
    pub shards: usize,
    pub bytes: u64,
}

/// Checks an encoded order against `realm` and applies it to `store` (blocking: run it off the
/// async threads).
pub fn apply(store: &LocalStore, realm: &RealmId, bytes: &[u8]) -> Result<Applied, RpcError> {
    let order = decode(bytes)?;
    order.verify(realm).map_err(|e| {
        RpcError::new(
            ErrorCode::PermissionDenied,
            format!("purge order refused: {e}; only the realm key can order a purge"),
        )
    })?;
    let owner = order.body.owner;
    if store
        .purge_records()
        .map_err(internal)?
        .iter()
        .any(|r| r == bytes)
    {
        return Ok(Applied {
            new: false,
            shards: 0,
            bytes: 0,
        });
    }
    let (shards, removed) = store
        .purge_owner_recording(&owner, bytes)
        .map_err(internal)?;
    tracing::warn!(target: "macula::storage", %owner, shards, bytes = removed,
        "applied a realm-wide purge order; this owner's shards are refused here from now on");
    Ok(Applied {
        new: true,
        shards,
        bytes: removed,
    })
}

fn decode(bytes: &[u8]) -> Result<PurgeOrder, RpcError> {
    wire::decode_with_limit(bytes, MAX_ORDER)
        .map_err(|e| RpcError::new(ErrorCode::BadRequest, format!("not a purge order: {e}")))
}

fn internal(e: StoreError) -> RpcError {
    RpcError::new(ErrorCode::Internal, e.to_string())
}

/// Serves [`PURGE_PROCEDURE`] from `store`.
pub fn serve(node: &MeshNode, store: Arc<LocalStore>) {
    let realm = node.realm();
    let handler: Handler = Arc::new(move |_from, body| {
        let store = store.clone();
        Box::pin(async move {
            let a = tokio::task::spawn_blocking(move || apply(&store, &realm, &body))
                .await
                .map_err(|e| RpcError::new(ErrorCode::Internal, format!("purge task: {e}")))??;
            let mut reply = u32::try_from(a.shards)
                .unwrap_or(u32::MAX)
                .to_le_bytes()
                .to_vec();
            reply.extend_from_slice(&a.bytes.to_le_bytes());
            Ok(reply)
        })
    });
    node.serve(PURGE_PROCEDURE, handler);
}

/// Sends the encoded `orders` to `peer`; returns the shards and bytes it removed, or the first
/// error.
pub async fn send(
    node: &MeshNode,
    peer: NodeId,
    orders: &[Vec<u8>],
) -> Result<(u64, u64), RpcError> {
    let (mut shards, mut bytes) = (0, 0);
    for o in orders {
        let r = node
            .call(peer, PURGE_PROCEDURE, o.clone(), PURGE_DEADLINE)
            .await?;
        let (s, b) = r
            .get(..4)
            .zip(r.get(4..12))
            .and_then(|(s, b)| Some((s.try_into().ok()?, b.try_into().ok()?)))
            .ok_or_else(|| RpcError::new(ErrorCode::Protocol, "short store.purge reply"))?;
        shards += u64::from(u32::from_le_bytes(s));
        bytes += u64::from_le_bytes(b);
    }
    Ok((shards, bytes))
}

/// Tries of [`pass_on`]: a member that just came up may not serve storage yet.
pub const PASS_ON_TRIES: u32 = 5;
/// Wait between two tries of [`pass_on`].
pub const PASS_ON_RETRY: Duration = Duration::from_secs(2);

/// Passes the purge orders `store` keeps to `peer`, which just came up (it may have been down
/// when they were issued): [`send`], tried [`PASS_ON_TRIES`] times [`PASS_ON_RETRY`] apart.
/// `Ok(None)` when there are no orders; else the shards and bytes it removed, or the last error.
pub async fn pass_on(
    node: &MeshNode,
    store: Arc<LocalStore>,
    peer: NodeId,
) -> Result<Option<(u64, u64)>, PassOnError> {
    let orders = tokio::task::spawn_blocking(move || store.purge_records())
        .await
        .map_err(|e| PassOnError::Task(e.to_string()))?
        .map_err(PassOnError::Read)?;
    if orders.is_empty() {
        return Ok(None);
    }
    let mut attempt = 1;
    loop {
        match send(node, peer, &orders).await {
            Ok(r) => return Ok(Some(r)),
            Err(e) if attempt == PASS_ON_TRIES => return Err(PassOnError::Send(e)),
            Err(_) => tokio::time::sleep(PASS_ON_RETRY).await,
        }
        attempt += 1;
    }
}

/// Why [`pass_on`] passed nothing on.
#[derive(Debug, thiserror::Error)]
pub enum PassOnError {
    #[error("cannot read the purge orders: {0}")]
    Read(#[source] StoreError),
    #[error("the purge order task failed: {0}")]
    Task(String),
    #[error("not taken after {PASS_ON_TRIES} tries: {0}")]
    Send(#[source] RpcError),
}

#[cfg(test)]
mod tests {
    use macula_core::NodeKey;
    use macula_mesh::realm::RealmKey;

    use super::*;

    #[test]
    fn only_the_realm_key_orders_a_purge_and_an_order_applies_once() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::open(dir.path(), 1 << 30).unwrap();
        let realm = RealmKey::from_seed([1; 32]);
        let owner = NodeKey::from_seed([2; 32]).node_id();
        // A member's key signing an order, and the admin of another realm: refused.
        let member = RealmKey::from_node_key(NodeKey::from_seed([3; 32]));
        let forged = wire::encode(&member.purge(owner, 1));
        let e = apply(&store, &realm.id(), &forged).unwrap_err();
        assert_eq!(e.code, ErrorCode::PermissionDenied, "{e}");
        let mut tampered = realm.purge(owner, 1);
        tampered.body.owner = NodeKey::from_seed([4; 32]).node_id();
        let e = apply(&store, &realm.id(), &wire::encode(&tampered)).unwrap_err();
        assert_eq!(e.code, ErrorCode::PermissionDenied, "{e}");
        assert!(!store.is_purged(&owner));
        assert_eq!(
            apply(&store, &realm.id(), b"junk").unwrap_err().code,
            ErrorCode::BadRequest
        );
        // The admin's order: applied, kept, and a second copy is only acknowledged.
        let order = wire::encode(&realm.purge(owner, 1));
        assert!(apply(&store, &realm.id(), &order).unwrap().new);
        assert!(store.is_purged(&owner));
        assert_eq!(store.purge_records().unwrap(), std::slice::from_ref(&order));
        assert!(!apply(&store, &realm.id(), &order).unwrap().new);
        // A later local purge of the same owner keeps the order to pass on.
        store.purge_owner(&owner).unwrap();
        assert_eq!(store.purge_records().unwrap(), [order]);
    }
}
