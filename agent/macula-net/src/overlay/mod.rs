//! The WireGuard overlay: keys bound to the node identity, self-certifying IPv6 addresses, the
//! WireGuard device (userspace `wireguard-go` over its UAPI socket, or kernel WireGuard over
//! generic netlink), and the `[overlay]` config section. See `docs/identity.md` ("Overlay keys
//! and addresses") for the derivations.

mod addr;
mod config;
mod device;
pub mod kernel;
mod keys;
pub mod uapi;

pub use addr::{interface_id, overlay_address, realm_prefix};
pub use config::{
    DEFAULT_REDUNDANT_PORT, Implementation, OverlayConfig, OverlayConfigError, PeerConfig,
};
pub use device::{Overlay, OverlayError, PeerSpec, kernel_wireguard};
pub use keys::{OverlayKeys, WgKey, peer_public_key};
