//! Self-certifying overlay addresses: ULA /48 from the realm, interface ID from the WireGuard key.
//!
//! - Global ID (40 bits): `BLAKE3-derive_key("macula/v1 overlay ula", realm ID bytes)[0..5]`, so the prefix
//!   is `fd` ‖ global ID ‖ subnet `0000` — an RFC 4193 ULA /48 every member computes alike.
//! - Interface ID (64 bits): `BLAKE3-derive_key("macula/v1 overlay iid", wg_public_key)[0..8]`.
//!
//! Each peer's WireGuard allowed IPs are exactly its /128, so an inner source address proves the
//! sender's key.

use std::net::Ipv6Addr;

use macula_core::NodeId;

use super::keys::WgKey;

const ULA_CONTEXT: &str = "macula/v1 overlay ula";
const IID_CONTEXT: &str = "macula/v1 overlay iid";

/// The realm's overlay prefix (the /48's first 48 bits; the rest zero).
/// `realm` is the realm ID: the realm key's Ed25519 public half.
pub fn realm_prefix(realm: &NodeId) -> Ipv6Addr {
    let h = blake3::derive_key(ULA_CONTEXT, realm.as_bytes());
    let mut b = [0u8; 16];
    b[0] = 0xfd;
    b[1..6].copy_from_slice(&h[..5]);
    Ipv6Addr::from(b)
}

/// The 64-bit interface ID of a WireGuard public key.
pub fn interface_id(key: &WgKey) -> [u8; 8] {
    let h = blake3::derive_key(IID_CONTEXT, &key.0);
    h[..8].try_into().expect("8 bytes")
}

/// A node's overlay address in `realm`.
pub fn overlay_address(realm: &NodeId, key: &WgKey) -> Ipv6Addr {
    let mut b = realm_prefix(realm).octets();
    b[8..].copy_from_slice(&interface_id(key));
    Ipv6Addr::from(b)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::overlay::keys::OverlayKeys;
    use macula_core::NodeKey;

    /// The test vectors of docs/identity.md ("Overlay keys and addresses").
    #[test]
    fn test_vectors() {
        // Realm IDs: the public halves of realm keys with seeds 0xaa… and 0xbb….
        let realm_a = NodeKey::from_seed([0xaa; 32]).node_id();
        let realm_b = NodeKey::from_seed([0xbb; 32]).node_id();
        let cases = [
            ([0u8; 32], realm_a),
            ([1u8; 32], realm_a),
            ([0u8; 32], realm_b),
        ];
        let mut got = Vec::new();
        for (seed, realm) in cases {
            let node = NodeKey::from_seed(seed);
            let keys = OverlayKeys::from_signing_key(node.signing_key());
            got.push(format!(
                "{} {} {} {}",
                keys.private_base64().as_str(),
                keys.public(),
                realm_prefix(&realm),
                overlay_address(&realm, &keys.public())
            ));
        }
        assert_eq!(got, VECTORS);
    }

    const VECTORS: [&str; 3] = [
        "UEatwduoOIZ7K7v90MNCPli1eXC1JnqQ9XlgkkqH8ZY= W/Vcc7guviK+gPNDBmevVw+uJVamQV5rMNQGUwCqlH0= fd52:2637:e416:: fd52:2637:e416:0:88f1:fb06:d57a:93ae",
        "XOhu+3X6TixBD0bhben2rK4aFwNShlG2m8F2wIi+8+4= GxtY3VDqFLYNoXt5DNAnVNlwybq4ZOuzwPMBb+UdP1c= fd52:2637:e416:: fd52:2637:e416:0:a854:ba97:7a45:4f4f",
        "UEatwduoOIZ7K7v90MNCPli1eXC1JnqQ9XlgkkqH8ZY= W/Vcc7guviK+gPNDBmevVw+uJVamQV5rMNQGUwCqlH0= fd50:60fa:e078:: fd50:60fa:e078:0:88f1:fb06:d57a:93ae",
    ];

    #[test]
    fn prefix_is_a_ula_48() {
        let (x, y) = (
            NodeKey::from_seed([1; 32]).node_id(),
            NodeKey::from_seed([2; 32]).node_id(),
        );
        let p = realm_prefix(&x).octets();
        assert_eq!(p[0], 0xfd);
        assert_eq!(&p[6..], &[0u8; 10]);
        assert_ne!(realm_prefix(&x), realm_prefix(&y));
    }
}
