//! TLS 1.3 with RFC 7250 raw public keys: every endpoint presents its Ed25519 node key as a bare
//! SubjectPublicKeyInfo, and both sides authenticate in one handshake (client auth is mandatory).
//!
//! * The dialer names the node it wants in the TLS server name (the node ID's base32 text, a valid
//!   DNS label); the verifier refuses any other key. [`ANY_PEER`] dials an address whose key is not
//!   known yet (bootstrap); realm admission then decides (see `docs/realms.md`).
//! * The acceptor learns the dialer's node ID from its key ([`peer_node_id`]).
//! * Keys on the shared deny list (revoked nodes) are refused by both verifiers.
//! * Only TLS 1.3, only Ed25519 handshake signatures, ALPN [`ALPN`].
//! * Cipher suites: ChaCha20-Poly1305 first when the CPU has no AES instructions (Pi 3/4), see
//!   [`provider`].

use macula_core::sync::{Locked, ReadLocked};
use std::collections::HashSet;
use std::sync::{Arc, RwLock};

use ed25519_dalek::Signature;
use macula_core::{NodeId, NodeKey};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivatePkcs8KeyDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::sign::CertifiedKey;
use rustls::{
    CertificateError, DigitallySignedStruct, DistinguishedName, PeerIncompatible, PeerMisbehaved,
    SignatureScheme,
};
use zeroize::Zeroizing;

/// Application protocol of the mesh, negotiated by ALPN. A new major wire version gets a new ALPN.
pub const ALPN: &[u8] = b"macula/2";

/// Application protocol of a join-code request (`crate::join`): a node without a membership
/// certificate asks an issuer for one; nothing else is served on such a connection.
pub const JOIN_ALPN: &[u8] = b"macula-join/1";

/// TLS server name that accepts any (not denied) node key; used to dial a bootstrap address whose
/// node ID is not known. The realm admission that follows the handshake still applies.
pub const ANY_PEER: &str = "any-peer.macula";

/// DER prefix of an Ed25519 SubjectPublicKeyInfo (RFC 8410); the 32 key bytes follow.
const SPKI_PREFIX: [u8; 12] = [
    0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
];
/// DER prefix of an Ed25519 PKCS#8 v1 private key (RFC 8410); the 32-byte seed follows.
const PKCS8_PREFIX: [u8; 16] = [
    0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20,
];

/// Node IDs refused at the TLS handshake, in both directions (revoked members).
#[derive(Debug, Default)]
pub struct DenyList(RwLock<HashSet<NodeId>>);

impl DenyList {
    pub fn insert(&self, id: NodeId) {
        self.0.locked().insert(id);
    }

    pub fn contains(&self, id: &NodeId) -> bool {
        self.0.read_locked().contains(id)
    }
}

/// The DER SubjectPublicKeyInfo of a node's key, as sent in the TLS Certificate message.
pub fn spki(id: &NodeId) -> Vec<u8> {
    let mut der = Vec::with_capacity(44);
    der.extend_from_slice(&SPKI_PREFIX);
    der.extend_from_slice(id.as_bytes());
    der
}

/// The node ID inside an Ed25519 SubjectPublicKeyInfo; anything else is refused.
pub fn node_id_from_spki(der: &[u8]) -> Result<NodeId, rustls::Error> {
    let bad = || rustls::Error::InvalidCertificate(CertificateError::BadEncoding);
    let key = der.strip_prefix(&SPKI_PREFIX[..]).ok_or_else(bad)?;
    let key: [u8; 32] = key.try_into().map_err(|_| bad())?;
    NodeId::from_bytes(key).map_err(|_| bad())
}

/// The *ring* provider restricted to the TLS 1.3 suites, ChaCha20-Poly1305 first when
/// `chacha_first` (no AES instructions), AES-GCM first otherwise.
pub fn provider(chacha_first: bool) -> Arc<CryptoProvider> {
    use rustls::crypto::ring::cipher_suite::{
        TLS13_AES_128_GCM_SHA256, TLS13_AES_256_GCM_SHA384, TLS13_CHACHA20_POLY1305_SHA256,
    };
    let mut p = rustls::crypto::ring::default_provider();
    p.cipher_suites = if chacha_first {
        vec![
            TLS13_CHACHA20_POLY1305_SHA256,
            TLS13_AES_128_GCM_SHA256,
            TLS13_AES_256_GCM_SHA384,
        ]
    } else {
        vec![
            TLS13_AES_128_GCM_SHA256,
            TLS13_AES_256_GCM_SHA384,
            TLS13_CHACHA20_POLY1305_SHA256,
        ]
    };
    Arc::new(p)
}

fn certified_key(key: &NodeKey) -> Result<Arc<CertifiedKey>, rustls::Error> {
    let mut pkcs8 = Zeroizing::new([0u8; 48]);
    pkcs8[..16].copy_from_slice(&PKCS8_PREFIX);
    pkcs8[16..].copy_from_slice(key.signing_key().as_bytes());
    let signer = rustls::crypto::ring::sign::any_eddsa_type(&PrivatePkcs8KeyDer::from(&pkcs8[..]))?;
    Ok(Arc::new(CertifiedKey::new(
        vec![CertificateDer::from(spki(&key.node_id()))],
        signer,
    )))
}

/// rustls server config: our raw key, mandatory raw-key client auth, ALPN [`ALPN`].
/// Without AES instructions the server's own suite order (ChaCha first) wins; otherwise the
/// client's order is followed, so ChaCha20 is used whenever either side lacks AES.
pub fn server_config(
    key: &NodeKey,
    deny: Arc<DenyList>,
    chacha_first: bool,
) -> Result<rustls::ServerConfig, rustls::Error> {
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider(chacha_first))
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_client_cert_verifier(Arc::new(PeerVerifier { deny }))
        .with_cert_resolver(Arc::new(
            rustls::server::AlwaysResolvesServerRawPublicKeys::new(certified_key(key)?),
        ));
    cfg.alpn_protocols = vec![ALPN.to_vec(), JOIN_ALPN.to_vec()];
    cfg.ignore_client_order = chacha_first;
    cfg.max_early_data_size = 0;
    Ok(cfg)
}

/// rustls client config: our raw key as client credential, server key checked against the
/// dialled node ID carried in the server name.
pub fn client_config(
    key: &NodeKey,
    deny: Arc<DenyList>,
    chacha_first: bool,
) -> Result<rustls::ClientConfig, rustls::Error> {
    let mut cfg = rustls::ClientConfig::builder_with_provider(provider(chacha_first))
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(PeerVerifier { deny }))
        .with_client_cert_resolver(Arc::new(
            rustls::client::AlwaysResolvesClientRawPublicKeys::new(certified_key(key)?),
        ));
    cfg.alpn_protocols = vec![ALPN.to_vec()];
    cfg.enable_sni = true;
    Ok(cfg)
}

/// rustls client config of a join-code request: as [`client_config`] (the server's key checked
/// against the issuer named in the server name) with ALPN [`JOIN_ALPN`] and no deny list (the
/// new node knows no revocations).
pub fn join_client_config(
    key: &NodeKey,
    chacha_first: bool,
) -> Result<rustls::ClientConfig, rustls::Error> {
    let mut cfg = client_config(key, Arc::default(), chacha_first)?;
    cfg.alpn_protocols = vec![JOIN_ALPN.to_vec()];
    Ok(cfg)
}

/// The ALPN protocol negotiated on an established connection.
pub fn negotiated_alpn(conn: &quinn::Connection) -> Option<Vec<u8>> {
    conn.handshake_data()?
        .downcast::<quinn::crypto::rustls::HandshakeData>()
        .ok()?
        .protocol
}

/// The TLS server name to dial: the expected node's ID, or [`ANY_PEER`].
pub fn server_name(expect: Option<&NodeId>) -> String {
    expect.map_or_else(|| ANY_PEER.to_string(), NodeId::to_string)
}

/// The authenticated node ID of the other side of an established connection.
pub fn peer_node_id(conn: &quinn::Connection) -> Option<NodeId> {
    let certs = conn
        .peer_identity()?
        .downcast::<Vec<CertificateDer<'static>>>()
        .ok()?;
    node_id_from_spki(certs.first()?.as_ref()).ok()
}

/// Verifies raw Ed25519 keys, on both sides of the handshake.
#[derive(Debug)]
struct PeerVerifier {
    deny: Arc<DenyList>,
}

impl PeerVerifier {
    fn check_key(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
    ) -> Result<NodeId, rustls::Error> {
        if !intermediates.is_empty() {
            return Err(rustls::Error::InvalidCertificate(
                CertificateError::BadEncoding,
            ));
        }
        let id = node_id_from_spki(end_entity.as_ref())?;
        if self.deny.contains(&id) {
            return Err(rustls::Error::InvalidCertificate(CertificateError::Revoked));
        }
        Ok(id)
    }
}

fn verify_ed25519(
    message: &[u8],
    cert: &CertificateDer<'_>,
    dss: &DigitallySignedStruct,
) -> Result<HandshakeSignatureValid, rustls::Error> {
    if dss.scheme != SignatureScheme::ED25519 {
        return Err(PeerMisbehaved::SignedHandshakeWithUnadvertisedSigScheme.into());
    }
    let id = node_id_from_spki(cert.as_ref())?;
    let sig = Signature::from_slice(dss.signature())
        .map_err(|_| rustls::Error::InvalidCertificate(CertificateError::BadSignature))?;
    id.verifying_key()
        .verify_strict(message, &sig)
        .map_err(|_| rustls::Error::InvalidCertificate(CertificateError::BadSignature))?;
    Ok(HandshakeSignatureValid::assertion())
}

impl ServerCertVerifier for PeerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let id = self.check_key(end_entity, intermediates)?;
        let ServerName::DnsName(name) = server_name else {
            return Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName,
            ));
        };
        if name.as_ref() != ANY_PEER {
            let expected: NodeId = name.as_ref().parse().map_err(|_| {
                rustls::Error::InvalidCertificate(CertificateError::NotValidForName)
            })?;
            if expected != id {
                return Err(rustls::Error::InvalidCertificate(
                    CertificateError::NotValidForName,
                ));
            }
        }
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Err(PeerIncompatible::Tls13RequiredForQuic.into())
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_ed25519(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        vec![SignatureScheme::ED25519]
    }

    fn requires_raw_public_keys(&self) -> bool {
        true
    }
}

impl ClientCertVerifier for PeerVerifier {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        true
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        self.check_key(end_entity, intermediates)?;
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Err(PeerIncompatible::Tls13RequiredForQuic.into())
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_ed25519(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        vec![SignatureScheme::ED25519]
    }

    fn requires_raw_public_keys(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spki_roundtrip_and_rejects() {
        let id = NodeKey::from_seed([7; 32]).node_id();
        let der = spki(&id);
        assert_eq!(der.len(), 44);
        assert_eq!(node_id_from_spki(&der).unwrap(), id);
        assert!(node_id_from_spki(&der[..43]).is_err());
        let mut other_alg = der.clone();
        other_alg[8] = 0x71; // Ed448 OID
        assert!(node_id_from_spki(&other_alg).is_err());
    }

    #[test]
    fn suite_order_follows_aes_support() {
        let c = provider(true);
        assert_eq!(
            c.cipher_suites[0].suite(),
            rustls::CipherSuite::TLS13_CHACHA20_POLY1305_SHA256
        );
        let a = provider(false);
        assert_eq!(
            a.cipher_suites[0].suite(),
            rustls::CipherSuite::TLS13_AES_128_GCM_SHA256
        );
        assert!(
            c.cipher_suites
                .iter()
                .all(|s| s.version() == &rustls::version::TLS13)
        );
    }

    /// Runs a TLS handshake in memory; returns the negotiated suite or the first error.
    fn handshake(
        client: rustls::ClientConfig,
        server: rustls::ServerConfig,
        name: &str,
    ) -> Result<rustls::CipherSuite, rustls::Error> {
        let mut c = rustls::ClientConnection::new(
            Arc::new(client),
            ServerName::try_from(name.to_string()).unwrap(),
        )?;
        let mut s = rustls::ServerConnection::new(Arc::new(server))?;
        for _ in 0..10 {
            let mut buf = Vec::new();
            c.write_tls(&mut buf).unwrap();
            s.read_tls(&mut &buf[..]).unwrap();
            s.process_new_packets()?;
            buf.clear();
            s.write_tls(&mut buf).unwrap();
            c.read_tls(&mut &buf[..]).unwrap();
            c.process_new_packets()?;
            if !c.is_handshaking() && !s.is_handshaking() {
                return Ok(c.negotiated_cipher_suite().unwrap().suite());
            }
        }
        panic!("handshake did not finish");
    }

    #[test]
    fn chacha_is_negotiated_when_either_side_lacks_aes() {
        let (ck, sk) = (NodeKey::from_seed([1; 32]), NodeKey::from_seed([2; 32]));
        let name = sk.node_id().to_string();
        for (client_chacha, server_chacha, chacha) in [
            (true, false, true),
            (false, true, true),
            (false, false, false),
            (true, true, true),
        ] {
            let c = client_config(&ck, Arc::default(), client_chacha).unwrap();
            let s = server_config(&sk, Arc::default(), server_chacha).unwrap();
            let suite = handshake(c, s, &name).unwrap();
            assert_eq!(
                suite == rustls::CipherSuite::TLS13_CHACHA20_POLY1305_SHA256,
                chacha,
                "client chacha {client_chacha}, server chacha {server_chacha}: {suite:?}"
            );
        }
    }

    /// Which AEAD a Raspberry Pi 4 and a Pi 5 negotiate with an AES-capable peer in either role
    /// (the transport's default parameters take `chacha_first` from `cpu::has_aes`, which on arm64
    /// is `hwcap_has_aes` of the running CPU).
    #[test]
    fn pi4_negotiates_chacha20_and_pi5_aes_gcm() {
        use macula_core::cpu::{RPI4_FEATURES, RPI5_FEATURES, hwcap_from_features, hwcap_has_aes};
        let pi4 = hwcap_from_features(RPI4_FEATURES).unwrap();
        let pi5 = hwcap_from_features(RPI5_FEATURES).unwrap();
        let (a, b) = (NodeKey::from_seed([1; 32]), NodeKey::from_seed([2; 32]));
        for (board, hwcap, want) in [
            (
                "Pi 4",
                pi4,
                rustls::CipherSuite::TLS13_CHACHA20_POLY1305_SHA256,
            ),
            ("Pi 5", pi5, rustls::CipherSuite::TLS13_AES_128_GCM_SHA256),
        ] {
            let board_chacha = !hwcap_has_aes(hwcap);
            // the board dials an AES-capable peer, then the peer dials the board
            let c = client_config(&a, Arc::default(), board_chacha).unwrap();
            let s = server_config(&b, Arc::default(), false).unwrap();
            assert_eq!(
                handshake(c, s, &b.node_id().to_string()).unwrap(),
                want,
                "{board} dials"
            );
            let c = client_config(&b, Arc::default(), false).unwrap();
            let s = server_config(&a, Arc::default(), board_chacha).unwrap();
            assert_eq!(
                handshake(c, s, &a.node_id().to_string()).unwrap(),
                want,
                "{board} answers"
            );
        }
    }

    /// On the CPU the tests run on, the transport's default follows the detection (`make
    /// test-aarch64-unit` runs this under qemu-aarch64-static `-cpu cortex-a72` and `max`; QEMU's
    /// Cortex-A72 model has the crypto extension that the Pi 4's lacks, so the Pi 4 case is the
    /// test above, from the Pi 4's own feature word).
    #[test]
    fn default_aead_follows_this_cpu() {
        let chacha_first = crate::transport::TransportParams::default().chacha_first;
        assert_eq!(chacha_first, !macula_core::cpu::has_aes());
        let (ck, sk) = (NodeKey::from_seed([1; 32]), NodeKey::from_seed([2; 32]));
        let c = client_config(&ck, Arc::default(), chacha_first).unwrap();
        let s = server_config(&sk, Arc::default(), chacha_first).unwrap();
        let suite = handshake(c, s, &sk.node_id().to_string()).unwrap();
        let want = if macula_core::cpu::has_aes() {
            rustls::CipherSuite::TLS13_AES_128_GCM_SHA256
        } else {
            rustls::CipherSuite::TLS13_CHACHA20_POLY1305_SHA256
        };
        assert_eq!(suite, want);
    }

    #[test]
    fn handshake_checks_the_dialled_key_and_deny_list() {
        let (ck, sk) = (NodeKey::from_seed([1; 32]), NodeKey::from_seed([2; 32]));
        let other = NodeKey::from_seed([3; 32]).node_id();
        let cfg = || {
            (
                client_config(&ck, Arc::default(), false).unwrap(),
                server_config(&sk, Arc::default(), false).unwrap(),
            )
        };
        let (c, s) = cfg();
        handshake(c, s, &sk.node_id().to_string()).unwrap();
        let (c, s) = cfg();
        handshake(c, s, ANY_PEER).unwrap();
        let (c, s) = cfg();
        let err = handshake(c, s, &other.to_string()).unwrap_err();
        assert_eq!(
            err,
            rustls::Error::InvalidCertificate(CertificateError::NotValidForName)
        );
        // The server refuses a denied client key.
        let deny = Arc::new(DenyList::default());
        deny.insert(ck.node_id());
        let c = client_config(&ck, Arc::default(), false).unwrap();
        let s = server_config(&sk, deny.clone(), false).unwrap();
        assert_eq!(
            handshake(c, s, ANY_PEER).unwrap_err(),
            rustls::Error::InvalidCertificate(CertificateError::Revoked)
        );
        // The client refuses a denied server key.
        let c = client_config(&ck, Arc::new(DenyList::default()), false).unwrap();
        let deny_s = Arc::new(DenyList::default());
        deny_s.insert(sk.node_id());
        let c2 = client_config(&ck, deny_s, false).unwrap();
        drop(c);
        let s = server_config(&sk, Arc::default(), false).unwrap();
        assert_eq!(
            handshake(c2, s, ANY_PEER).unwrap_err(),
            rustls::Error::InvalidCertificate(CertificateError::Revoked)
        );
    }
}
