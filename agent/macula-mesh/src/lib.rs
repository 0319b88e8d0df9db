//! The Macula mesh: QUIC transport with raw-key identities ([`tls`], [`transport`]), realm admission
//! ([`realm`]), SWIM membership ([`membership`]) and its deterministic simulator ([`sim`]).
//! Protocol logic is sans-IO: [`core::MeshCore`] ties membership, pub/sub and the DHT together;
//! [`node`] is the tokio shell that drives it. Wire format: `docs/protocol.md`.

pub mod admin;
pub mod advertise;
pub mod announce;
pub mod beacon;
pub mod clock;
pub mod config;
pub mod core;
pub mod dht;
pub mod frame;
pub mod fuzzing;
pub mod inbox;
pub mod join;
pub mod limits;
pub mod membership;
pub mod node;
pub mod ntp;
pub mod proto;
pub mod pubsub;
pub mod realm;
pub mod relay;
pub mod renewal;
pub mod report;
pub mod revocations;
pub mod rpc;
pub mod sig;
pub mod sim;
pub mod stats;
pub mod tls;
pub mod transport;
