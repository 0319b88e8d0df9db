//! The overlay's X25519 key pair, derived from the node's Ed25519 key.
//!
//! Private: the Ed25519 secret scalar bytes (first half of SHA-512(seed), RFC 8032 §5.1.5), which
//! WireGuard clamps exactly as Ed25519 does. Public: the Montgomery form of the Ed25519 public key
//! (the birational map of RFC 7748 §4.1). So any node computes a peer's WireGuard key from its
//! node ID alone — no extra signed binding to distribute or check.

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use ed25519_dalek::SigningKey;
use macula_core::NodeId;
use zeroize::Zeroizing;

/// A WireGuard public key (X25519, 32 bytes).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct WgKey(pub [u8; 32]);

impl WgKey {
    /// Lowercase hex, as the UAPI protocol wants it.
    pub fn to_hex(&self) -> String {
        hex(&self.0)
    }

    /// Base64, as `wg` shows it.
    pub fn to_base64(&self) -> String {
        STANDARD.encode(self.0)
    }
}

impl fmt::Display for WgKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_base64())
    }
}

impl fmt::Debug for WgKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "WgKey({self})")
    }
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// This node's overlay key pair. The private half is zeroized on drop.
pub struct OverlayKeys {
    private: Zeroizing<[u8; 32]>,
    public: WgKey,
}

impl OverlayKeys {
    /// Derives the pair from the node's Ed25519 signing key.
    pub fn from_signing_key(key: &SigningKey) -> Self {
        Self {
            private: Zeroizing::new(key.to_scalar_bytes()),
            public: WgKey(key.verifying_key().to_montgomery().to_bytes()),
        }
    }

    pub fn public(&self) -> WgKey {
        self.public
    }

    /// The private key in hex for the UAPI `private_key=` line.
    pub(crate) fn private_hex(&self) -> Zeroizing<String> {
        Zeroizing::new(hex(&self.private[..]))
    }

    /// The private key in base64 (as `wg genkey` writes it), for hand-configured comparisons.
    pub fn private_base64(&self) -> Zeroizing<String> {
        Zeroizing::new(STANDARD.encode(&self.private[..]))
    }
}

impl fmt::Debug for OverlayKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OverlayKeys")
            .field("public", &self.public)
            .finish_non_exhaustive()
    }
}

/// A peer's WireGuard public key, computed from its node ID.
pub fn peer_public_key(node: &NodeId) -> WgKey {
    WgKey(node.verifying_key().to_montgomery().to_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use macula_core::NodeKey;

    #[test]
    fn peer_key_from_node_id_matches_own_derivation() {
        for seed in [[0u8; 32], [7u8; 32], [0xff; 32]] {
            let key = NodeKey::from_seed(seed);
            let own = OverlayKeys::from_signing_key(key.signing_key());
            assert_eq!(own.public(), peer_public_key(&key.node_id()));
        }
    }
}
