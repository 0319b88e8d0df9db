//! Macula OS network plane.
//!
//! - [`firewall`]: the `[firewall]` config section, a pure renderer to the nft language for the one
//!   table the agent owns (`table inet macula`), and apply = check → atomic replace → confirm or
//!   automatic rollback.
//! - [`overlay`]: the WireGuard overlay: keys bound to the node's Ed25519 identity, self-certifying
//!   IPv6 addresses, and a userspace WireGuard device driven over its UAPI socket.
//! - [`uplinks`]: sans-IO uplink health tracking and failover decisions, UDP probes, per-uplink
//!   policy routing, and the shell that makes routes, WireGuard endpoints and MPTCP endpoints
//!   follow the decisions.
//! - [`links`]: rtnetlink discovery (links, addresses, default routes) and link/address events.
//! - [`mptcp`]: in-kernel MPTCP path-manager endpoints over generic netlink.
//! - [`netlink`]: the request/reply loop on the rust-netlink crates (`netlink-sys` sockets in a
//!   chosen namespace, `netlink-packet-*` messages) that those and kernel WireGuard use.
//! - [`cmd`]: running the external tools (`nft`, `ip`, `wireguard-go`), optionally inside a network
//!   namespace.

pub mod cmd;
pub mod firewall;
pub mod fuzzing;
pub mod links;
pub mod mptcp;
pub mod netlink;
pub mod overlay;
pub mod uplinks;
