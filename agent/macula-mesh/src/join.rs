//! Join codes (docs/realms.md, "Join codes"): a one-time code that admits one new node without
//! any file carried by hand.
//!
//! A code names the realm, the node that issued it (a holder of the realm key) and a 128-bit
//! secret. The new node dials the issuer with TLS pinned to the issuer's node key and the ALPN
//! [`crate::tls::JOIN_ALPN`] (no membership certificate is needed for that connection, and the
//! issuer answers nothing but the join exchange on it), and sends a [`JoinRequest`]: the code's
//! ID and a proof, the BLAKE3 keyed hash of (realm, its own node ID, issuer ID) under a key
//! derived from the secret. The secret itself never crosses the network, and a proof is bound
//! to the node key TLS authenticated, so an eavesdropper or a relay learns nothing it can use
//! for another key. The issuer checks the code in its [`Invites`] (known, not used, not
//! expired, proof right), marks it used (stored before it answers), and issues a certificate for
//! the TLS-authenticated node ID with the invite's name and role.
//!
//! Sans-IO: codes, requests, and the issuer's store of invites with its checks; the agent dials,
//! listens for beacons and writes the files. [`request`] is the small tokio shell of the new
//! node's side; the issuer's side is served by `transport::Endpoint` ([`JoinHandler`]).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use macula_core::config::Role;
use macula_core::{NodeId, NodeKey, base32, wire};
use serde::{Deserialize, Serialize};
use zeroize::Zeroize;

use crate::realm::{CertBody, CertError, MembershipCert, RealmId, check_name};

/// Version of the code's text form and of [`JoinRequest`].
pub const JOIN_VERSION: u8 = 1;
/// Prefix of a code's text form.
pub const CODE_PREFIX: &str = "macula-join-";
/// Longest an invite may stay valid (seconds): 30 days.
pub const MAX_TTL_S: u64 = 30 * 86_400;
/// How long a used or expired invite is remembered after its expiry, so a late replay gets
/// "used"/"expired" rather than "unknown" (seconds).
pub const KEEP_S: u64 = 7 * 86_400;
/// Most invites one issuer keeps (pending, used or expired within [`KEEP_S`]).
pub const MAX_INVITES: usize = 1024;
/// Largest join request or reply frame.
pub const MAX_JOIN_FRAME: usize = 4096;
/// How long the new node waits for one issuer address to answer.
pub const JOIN_DEADLINE: Duration = Duration::from_secs(10);
/// How long the new node listens for the issuer's LAN beacon.
pub const JOIN_SEARCH: Duration = Duration::from_secs(30);
/// First wait before a code from the boot partition is tried again (issuer not reached)…
pub const JOIN_RETRY_MIN: Duration = Duration::from_secs(5);
/// …doubling up to this.
pub const JOIN_RETRY_MAX: Duration = Duration::from_secs(300);

/// The wait after `previous` (`None`: the first failure) before trying a code again.
pub fn join_retry_after(previous: Option<Duration>) -> Duration {
    previous.map_or(JOIN_RETRY_MIN, |p| {
        (p * 2).clamp(JOIN_RETRY_MIN, JOIN_RETRY_MAX)
    })
}

/// Handler the issuer's endpoint calls for each join request: the TLS-authenticated caller and
/// its request, answered with a [`JoinReply`].
pub type JoinHandler = Arc<dyn Fn(NodeId, JoinRequest) -> JoinReply + Send + Sync>;

/// The secret of a code.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Secret(pub [u8; 16]);

impl Drop for Secret {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(..)")
    }
}

impl Secret {
    /// The code's public ID (what the issuer files it under and the new node sends).
    pub fn code_id(&self) -> [u8; 16] {
        let full = blake3::derive_key("macula/v1/join-code-id", &self.0);
        let mut id = [0; 16];
        id.copy_from_slice(&full[..16]);
        id
    }

    /// The proof that the holder of this secret asks for `node` at `issuer` in `realm`.
    pub fn proof(&self, realm: &RealmId, node: &NodeId, issuer: &NodeId) -> blake3::Hash {
        let key = blake3::derive_key("macula/v1/join-proof", &self.0);
        let mut h = blake3::Hasher::new_keyed(&key);
        h.update(realm.0.as_bytes());
        h.update(node.as_bytes());
        h.update(issuer.as_bytes());
        h.finalize()
    }
}

/// A join code: realm, issuer, secret. Text form: [`CODE_PREFIX`] + base32 of
/// `wire(JoinCode)`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JoinCode {
    /// [`JOIN_VERSION`].
    pub version: u8,
    pub realm: RealmId,
    pub issuer: NodeId,
    pub secret: Secret,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CodeError {
    #[error(
        "a join code starts with `{CODE_PREFIX}`; copy the whole code `maculactl realm invite` printed"
    )]
    Prefix,
    #[error("the join code is damaged ({0}); copy it again")]
    Damaged(String),
    #[error("join code version {0}, this node reads version {JOIN_VERSION}; upgrade it")]
    Version(u8),
}

impl JoinCode {
    pub fn to_text(&self) -> String {
        format!("{CODE_PREFIX}{}", base32::encode(&wire::encode(self)))
    }

    /// Parses a code's text form, in either case (a QR code carries it in upper case, which
    /// QR's alphanumeric mode stores compactly); white space, e.g. line breaks where a terminal
    /// or an e-mail wrapped it, is ignored.
    pub fn from_text(text: &str) -> Result<Self, CodeError> {
        let text: String = text
            .chars()
            .filter(|c| !c.is_whitespace())
            .collect::<String>()
            .to_ascii_lowercase();
        let body = text.strip_prefix(CODE_PREFIX).ok_or(CodeError::Prefix)?;
        let bytes = base32::decode(body).map_err(CodeError::Damaged)?;
        let code: JoinCode =
            wire::decode_with_limit(&bytes, 256).map_err(|e| CodeError::Damaged(e.to_string()))?;
        if code.version != JOIN_VERSION {
            return Err(CodeError::Version(code.version));
        }
        if wire::encode(&code) != bytes {
            return Err(CodeError::Damaged("trailing bytes".into()));
        }
        Ok(code)
    }

    /// The request the node `node` sends to the issuer.
    pub fn request(&self, node: &NodeId) -> JoinRequest {
        JoinRequest {
            version: JOIN_VERSION,
            realm: self.realm,
            code_id: self.secret.code_id(),
            proof: *self
                .secret
                .proof(&self.realm, node, &self.issuer)
                .as_bytes(),
        }
    }

    /// Checks the certificate the issuer returned: for this code's realm and for `node`, valid
    /// at `now`.
    pub fn check_cert(
        &self,
        node: &NodeId,
        cert: &MembershipCert,
        now: u64,
    ) -> Result<(), JoinError> {
        if cert.body.node != *node {
            return Err(JoinError::BadCert(format!(
                "it is for node {}, not this node",
                cert.body.node
            )));
        }
        cert.verify(&self.realm, now)
            .map_err(|e| JoinError::BadCert(e.to_string()))
    }
}

/// What the new node sends on the join connection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JoinRequest {
    pub version: u8,
    pub realm: RealmId,
    pub code_id: [u8; 16],
    pub proof: [u8; 32],
}

/// The issuer's answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum JoinReply {
    /// The certificate in its text form.
    Admitted(String),
    Refused(Refusal),
}

/// Why an issuer refused a join request (sent to the new node, shown to its user).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum Refusal {
    #[error("join request version {0} is not understood; upgrade the older node")]
    Version(u8),
    #[error(
        "this join code is for realm {code}, the issuing node is in realm {issuer}; ask an admin \
         of your realm for a code"
    )]
    OtherRealm { code: RealmId, issuer: RealmId },
    #[error(
        "the issuing node knows no such join code (issued elsewhere, or long expired); ask for a new code"
    )]
    Unknown,
    #[error(
        "this join code was used already (by node {by} at unix time {at}); a code admits one node: ask for a new code"
    )]
    Used { by: NodeId, at: u64 },
    #[error("this join code expired at unix time {0}; ask for a new code")]
    Expired(u64),
    #[error(
        "the join code's proof does not match; the code is damaged or not this node's: copy it again"
    )]
    BadProof,
    #[error("the issuing node cannot admit anyone now: {0}")]
    Unavailable(String),
}

/// Errors of the new node's side.
#[derive(Debug, thiserror::Error)]
pub enum JoinError {
    #[error("refused by the issuing node: {0}")]
    Refused(Refusal),
    #[error("the issuing node returned an unusable certificate: {0}")]
    BadCert(String),
    #[error("cannot reach the issuing node at {addr}: {reason}")]
    Unreachable { addr: SocketAddr, reason: String },
}

/// One invite on its issuer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Invite {
    pub code_id: [u8; 16],
    pub secret: Secret,
    pub name: String,
    pub role: Role,
    /// Validity of the certificate it gives (days).
    pub valid_days: u32,
    pub created: u64,
    pub expires: u64,
    /// Who used it, and when.
    pub used: Option<(NodeId, u64)>,
}

/// What a redeemed invite admits: certificate body for the caller.
pub type Grant = CertBody;

/// Why an invite could not be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InviteError {
    #[error("{0}")]
    Name(CertError),
    #[error("an invite expires after 1 s to {MAX_TTL_S} s (30 days); got {0} s")]
    Ttl(u64),
    #[error("{MAX_INVITES} invites are pending; wait until some expire or are used")]
    Full,
    #[error("this node's invite store is damaged: {0}; move it away to start a new one")]
    Damaged(String),
}

/// The invites of one issuer (persisted by the agent as `wire(Invites)`, 0600).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Invites {
    list: Vec<Invite>,
}

impl Invites {
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, InviteError> {
        wire::decode_with_limit(bytes, MAX_INVITES * 256)
            .map_err(|e| InviteError::Damaged(e.to_string()))
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        wire::encode(self)
    }

    pub fn list(&self) -> &[Invite] {
        &self.list
    }

    /// Makes an invite valid for `ttl_s` from `now` for a node named `name` with `role`, whose
    /// certificate will be valid `valid_days`; `secret` comes from the OS random number
    /// generator in the shell. Returns the code to hand to the new node.
    #[allow(clippy::too_many_arguments)]
    pub fn issue(
        &mut self,
        realm: RealmId,
        issuer: NodeId,
        name: &str,
        role: Role,
        valid_days: u32,
        ttl_s: u64,
        secret: [u8; 16],
        now: u64,
    ) -> Result<JoinCode, InviteError> {
        check_name(name).map_err(InviteError::Name)?;
        if ttl_s == 0 || ttl_s > MAX_TTL_S {
            return Err(InviteError::Ttl(ttl_s));
        }
        self.prune(now);
        if self.list.len() >= MAX_INVITES {
            return Err(InviteError::Full);
        }
        let secret = Secret(secret);
        self.list.push(Invite {
            code_id: secret.code_id(),
            secret: secret.clone(),
            name: name.to_owned(),
            role,
            valid_days,
            created: now,
            expires: now + ttl_s,
            used: None,
        });
        Ok(JoinCode {
            version: JOIN_VERSION,
            realm,
            issuer,
            secret,
        })
    }

    /// Checks a join request of `caller` (TLS-authenticated) at the issuer `issuer` of `realm`;
    /// on success the invite is marked used and the certificate body to issue is returned. A
    /// wrong proof does not use the invite up.
    pub fn redeem(
        &mut self,
        realm: &RealmId,
        issuer: &NodeId,
        caller: NodeId,
        req: &JoinRequest,
        now: u64,
    ) -> Result<Grant, Refusal> {
        if req.version != JOIN_VERSION {
            return Err(Refusal::Version(req.version));
        }
        if req.realm != *realm {
            return Err(Refusal::OtherRealm {
                code: req.realm,
                issuer: *realm,
            });
        }
        let invite = self
            .list
            .iter_mut()
            .find(|i| i.code_id == req.code_id)
            .ok_or(Refusal::Unknown)?;
        let want = invite.secret.proof(realm, &caller, issuer);
        // blake3::Hash compares in constant time.
        if want != blake3::Hash::from(req.proof) {
            return Err(Refusal::BadProof);
        }
        if let Some((by, at)) = invite.used {
            return Err(Refusal::Used { by, at });
        }
        if now >= invite.expires {
            return Err(Refusal::Expired(invite.expires));
        }
        let body = CertBody::admitted(
            *realm,
            caller,
            invite.role,
            invite.name.clone(),
            invite.valid_days,
            now,
        )
        .map_err(|e| Refusal::Unavailable(e.to_string()))?;
        invite.used = Some((caller, now));
        Ok(body)
    }

    /// Forgets invites that expired more than [`KEEP_S`] ago.
    fn prune(&mut self, now: u64) {
        self.list.retain(|i| i.expires.saturating_add(KEEP_S) > now);
    }
}

/// A beacon heard on the LAN that locates `code`'s issuer: its mesh address, when the datagram
/// from `src` is a beacon of that node in that realm, signed by it, announcing `src` itself.
/// (The dial that follows is pinned to the issuer's key, so this only saves dialling others.)
pub fn issuer_in_beacon(
    bytes: &[u8],
    src: std::net::IpAddr,
    code: &JoinCode,
) -> Option<SocketAddr> {
    use crate::beacon::{BEACON_VERSION, Beacon, MAX_BEACON};
    if bytes.len() > MAX_BEACON {
        return None;
    }
    let b: Beacon = wire::decode_with_limit(bytes, MAX_BEACON).ok()?;
    let body = &b.body;
    if body.version != BEACON_VERSION
        || body.realm != code.realm
        || body.node != code.issuer
        || body.addr.ip() != src
        || body.addr.port() == 0
    {
        return None;
    }
    let sig = ed25519_dalek::Signature::from_bytes(&b.sig.0);
    body.node
        .verify(
            macula_core::domains::Domain::Beacon,
            &wire::encode(body),
            &sig,
        )
        .ok()?;
    Some(body.addr)
}

/// The new node's side: dials the issuer at `addr` (TLS pinned to its key, ALPN
/// [`crate::tls::JOIN_ALPN`]), sends the request and checks the certificate it gets.
pub async fn request(
    key: &NodeKey,
    code: &JoinCode,
    addr: SocketAddr,
    now: impl Fn() -> u64,
) -> Result<MembershipCert, JoinError> {
    let unreachable = |reason: String| JoinError::Unreachable { addr, reason };
    let tls = crate::tls::join_client_config(key, !macula_core::cpu::has_aes())
        .map_err(|e| unreachable(e.to_string()))?;
    let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(tls)
        .map_err(|e| unreachable(e.to_string()))?;
    let bind: SocketAddr = if addr.is_ipv6() {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    } else {
        (std::net::Ipv4Addr::UNSPECIFIED, 0).into()
    };
    let endpoint = quinn::Endpoint::client(bind).map_err(|e| unreachable(e.to_string()))?;
    let client = quinn::ClientConfig::new(Arc::new(crypto));
    let exchange = async {
        let conn = endpoint
            .connect_with(client, addr, &code.issuer.to_string())
            .map_err(|e| unreachable(e.to_string()))?
            .await
            .map_err(|e| unreachable(e.to_string()))?;
        let (mut send, mut recv) = conn
            .open_bi()
            .await
            .map_err(|e| unreachable(e.to_string()))?;
        crate::frame::write(&mut send, &code.request(&key.node_id()), MAX_JOIN_FRAME)
            .await
            .map_err(|e| unreachable(e.to_string()))?;
        let reply = crate::frame::read::<JoinReply>(&mut recv, MAX_JOIN_FRAME)
            .await
            .map_err(|e| unreachable(e.to_string()))?
            .ok_or_else(|| unreachable("closed without an answer".into()))?;
        conn.close(
            quinn::VarInt::from_u32(crate::proto::close::NORMAL),
            b"joined",
        );
        Ok::<_, JoinError>(reply)
    };
    let reply = tokio::time::timeout(JOIN_DEADLINE, exchange)
        .await
        .map_err(|_| unreachable(format!("no answer within {JOIN_DEADLINE:?}")))??;
    endpoint.wait_idle().await;
    match reply {
        JoinReply::Admitted(text) => {
            let cert =
                MembershipCert::from_text(&text).map_err(|e| JoinError::BadCert(e.to_string()))?;
            code.check_cert(&key.node_id(), &cert, now())?;
            Ok(cert)
        }
        JoinReply::Refused(r) => Err(JoinError::Refused(r)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::realm::RealmKey;

    const NOW: u64 = 1_800_000_000;

    fn setup() -> (RealmKey, NodeId, Invites, JoinCode) {
        let realm = RealmKey::from_seed([1; 32]);
        let issuer = NodeKey::from_seed([2; 32]).node_id();
        let mut invites = Invites::default();
        let code = invites
            .issue(
                realm.id(),
                issuer,
                "edge-1",
                Role::Edge,
                365,
                3600,
                [7; 16],
                NOW,
            )
            .unwrap();
        (realm, issuer, invites, code)
    }

    #[test]
    fn code_text_round_trip_and_damage() {
        let (_, _, _, code) = setup();
        let text = code.to_text();
        assert!(text.starts_with(CODE_PREFIX));
        assert_eq!(JoinCode::from_text(&text).unwrap(), code);
        // Wrapped by a terminal.
        let wrapped = format!("  {}\n{} ", &text[..40], &text[40..]);
        assert_eq!(JoinCode::from_text(&wrapped).unwrap(), code);
        assert_eq!(JoinCode::from_text(&text.to_uppercase()).unwrap(), code);
        assert_eq!(
            JoinCode::from_text(&text[CODE_PREFIX.len()..]),
            Err(CodeError::Prefix)
        );
        assert!(matches!(
            JoinCode::from_text(&text[..text.len() - 3]),
            Err(CodeError::Damaged(_))
        ));
        let mut other = code.clone();
        other.version = 9;
        assert_eq!(
            JoinCode::from_text(&other.to_text()),
            Err(CodeError::Version(9))
        );
    }

    #[test]
    fn a_code_admits_its_holder_once() {
        let (realm, issuer, mut invites, code) = setup();
        let node = NodeKey::from_seed([3; 32]).node_id();
        let req = code.request(&node);
        let body = invites
            .redeem(&realm.id(), &issuer, node, &req, NOW + 10)
            .unwrap();
        assert_eq!(
            (body.node, body.role, body.name.as_str(), body.realm),
            (node, Role::Edge, "edge-1", realm.id())
        );
        assert_eq!(body.expires, NOW + 10 + 365 * 86_400);
        let cert = realm.issue(body);
        code.check_cert(&node, &cert, NOW + 10).unwrap();
        // Replayed by the same node, or by another one with its own proof.
        assert_eq!(
            invites.redeem(&realm.id(), &issuer, node, &req, NOW + 11),
            Err(Refusal::Used {
                by: node,
                at: NOW + 10
            })
        );
        let other = NodeKey::from_seed([4; 32]).node_id();
        assert!(matches!(
            invites.redeem(&realm.id(), &issuer, other, &code.request(&other), NOW + 12),
            Err(Refusal::Used { .. })
        ));
    }

    #[test]
    fn refusals() {
        let (realm, issuer, mut invites, code) = setup();
        let node = NodeKey::from_seed([3; 32]).node_id();
        let thief = NodeKey::from_seed([5; 32]).node_id();
        // A proof made for another node key (seen on the wire) does not fit the caller, and does
        // not use the invite up.
        assert_eq!(
            invites.redeem(&realm.id(), &issuer, thief, &code.request(&node), NOW),
            Err(Refusal::BadProof)
        );
        // A proof made for another issuer does not fit either.
        let mut elsewhere = code.clone();
        elsewhere.issuer = thief;
        assert_eq!(
            invites.redeem(&realm.id(), &issuer, node, &elsewhere.request(&node), NOW),
            Err(Refusal::BadProof)
        );
        // Another realm's code.
        let other_realm = RealmKey::from_seed([9; 32]).id();
        let mut foreign = code.clone();
        foreign.realm = other_realm;
        assert_eq!(
            invites.redeem(&realm.id(), &issuer, node, &foreign.request(&node), NOW),
            Err(Refusal::OtherRealm {
                code: other_realm,
                issuer: realm.id()
            })
        );
        // A code this issuer never made.
        let mut unknown = code.clone();
        unknown.secret = Secret([8; 16]);
        assert_eq!(
            invites.redeem(&realm.id(), &issuer, node, &unknown.request(&node), NOW),
            Err(Refusal::Unknown)
        );
        let mut req = code.request(&node);
        req.version = 2;
        assert_eq!(
            invites.redeem(&realm.id(), &issuer, node, &req, NOW),
            Err(Refusal::Version(2))
        );
        // Expired: at its expiry second and later; still usable before.
        assert_eq!(
            invites.redeem(&realm.id(), &issuer, node, &code.request(&node), NOW + 3600),
            Err(Refusal::Expired(NOW + 3600))
        );
        assert!(
            invites
                .redeem(&realm.id(), &issuer, node, &code.request(&node), NOW + 3599)
                .is_ok()
        );
    }

    #[test]
    fn issue_checks_and_store_round_trip() {
        let realm = RealmKey::from_seed([1; 32]).id();
        let issuer = NodeKey::from_seed([2; 32]).node_id();
        let mut invites = Invites::default();
        assert!(matches!(
            invites.issue(realm, issuer, "", Role::Edge, 1, 60, [0; 16], NOW),
            Err(InviteError::Name(_))
        ));
        assert_eq!(
            invites.issue(realm, issuer, "a", Role::Edge, 1, 0, [0; 16], NOW),
            Err(InviteError::Ttl(0))
        );
        assert_eq!(
            invites.issue(
                realm,
                issuer,
                "a",
                Role::Edge,
                1,
                MAX_TTL_S + 1,
                [0; 16],
                NOW
            ),
            Err(InviteError::Ttl(MAX_TTL_S + 1))
        );
        invites
            .issue(realm, issuer, "a", Role::Hub, 1, 60, [1; 16], NOW)
            .unwrap();
        let back = Invites::from_bytes(&invites.to_bytes()).unwrap();
        assert_eq!(back, invites);
        assert!(matches!(
            Invites::from_bytes(b"\xff\xff"),
            Err(InviteError::Damaged(_))
        ));
        // Expired invites are forgotten KEEP_S after their expiry, when the next one is made.
        invites
            .issue(
                realm,
                issuer,
                "b",
                Role::Edge,
                1,
                60,
                [2; 16],
                NOW + 60 + KEEP_S,
            )
            .unwrap();
        let names: Vec<_> = invites.list().iter().map(|i| i.name.as_str()).collect();
        assert_eq!(names, ["b"]);
    }

    #[test]
    fn retries_double_up_to_the_cap() {
        let mut waits = vec![join_retry_after(None)];
        for _ in 0..8 {
            waits.push(join_retry_after(waits.last().copied()));
        }
        let secs: Vec<u64> = waits.iter().map(Duration::as_secs).collect();
        assert_eq!(secs, [5, 10, 20, 40, 80, 160, 300, 300, 300]);
    }

    #[test]
    fn a_full_store_refuses_more() {
        let realm = RealmKey::from_seed([1; 32]).id();
        let issuer = NodeKey::from_seed([2; 32]).node_id();
        let mut invites = Invites::default();
        for i in 0..MAX_INVITES {
            let mut s = [0; 16];
            s[..8].copy_from_slice(&(i as u64).to_le_bytes());
            invites
                .issue(realm, issuer, "n", Role::Edge, 1, 60, s, NOW)
                .unwrap();
        }
        assert_eq!(
            invites.issue(realm, issuer, "n", Role::Edge, 1, 60, [9; 16], NOW),
            Err(InviteError::Full)
        );
    }

    #[test]
    fn beacons_locate_the_issuer_only() {
        use crate::realm::Admission;
        let realm = RealmKey::from_seed([1; 32]);
        let hub_key = NodeKey::from_seed([2; 32]);
        let cert = realm.issue(CertBody::founder(
            realm.id(),
            hub_key.node_id(),
            Role::Hub,
            "hub",
            NOW,
        ));
        let admission = Arc::new(Admission::new(hub_key.node_id(), cert, NOW).unwrap());
        let state = crate::beacon::BeaconState::new(NodeKey::from_seed([2; 32]), admission, 4433);
        let ip: std::net::IpAddr = "192.0.2.10".parse().unwrap();
        let bytes = state.make(ip, NOW * 1000, [0; 16]);
        let mut invites = Invites::default();
        let code = invites
            .issue(
                realm.id(),
                hub_key.node_id(),
                "e",
                Role::Edge,
                1,
                60,
                [3; 16],
                NOW,
            )
            .unwrap();
        assert_eq!(
            issuer_in_beacon(&bytes, ip, &code),
            Some(SocketAddr::new(ip, 4433))
        );
        // From another source address, or for a code of another issuer or realm: not used.
        assert_eq!(
            issuer_in_beacon(&bytes, "192.0.2.11".parse().unwrap(), &code),
            None
        );
        let mut other = code.clone();
        other.issuer = NodeKey::from_seed([4; 32]).node_id();
        assert_eq!(issuer_in_beacon(&bytes, ip, &other), None);
        let mut other = code.clone();
        other.realm = RealmKey::from_seed([5; 32]).id();
        assert_eq!(issuer_in_beacon(&bytes, ip, &other), None);
        // A flipped byte breaks the signature.
        let mut bad = bytes.clone();
        let last = bad.len() - 1;
        bad[last] ^= 1;
        assert_eq!(issuer_in_beacon(&bad, ip, &code), None);
    }
}
