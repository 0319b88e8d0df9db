//! Macula erasure-coded, encrypted shard storage (`docs/storage.md`, format in
//! `docs/storage-format.md`).
//!
//! An object is split into segments; each segment is encrypted (AEAD, per-object key), erasure
//! coded into `k + m` shards, and every shard gets a BLAKE3 tree and a signed, self-describing
//! header. The object's manifest (its list of segment IDs) is itself stored as a segment; the
//! capability string names the manifest and carries the key. Nothing here touches the network:
//! transfer goes through the [`network::StorageNetwork`] trait.

pub mod codec;
pub mod config;
pub mod crypto;
pub mod fuzzing;
mod gf8;
pub mod header;
pub mod inventory;
pub mod membership;
pub mod mesh;
pub mod network;
pub mod object;
pub mod placement;
pub mod purge;
pub mod receive;
pub mod repair;
pub mod segment;
pub mod service;
pub mod store;
pub mod tree;
