//! Realms: a named mesh identified by an Ed25519 realm key. A node belongs to a realm when it holds
//! a membership certificate signed by the realm key, or by a hub the realm key delegated to.
//! Revocations are signed by the realm key and spread through membership gossip.
//!
//! Every realm statement (certificate, delegation, revocation, purge order) is signed over
//! `wire::encode(&Statement::…)` in the [`Domain::RealmCert`] signature domain; the statement tag
//! keeps the three kinds apart. See `docs/realms.md`.

use macula_core::sync::{Locked, ReadLocked};
use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;
use std::sync::{Arc, RwLock};

use ed25519_dalek::Signature;
use macula_core::domains::Domain;
use macula_core::{NodeId, NodeKey, base32, wire};
use serde::{Deserialize, Serialize};

use crate::membership::MemberMeta;
use crate::sig::Sig;
use crate::tls::DenyList;

/// A realm's public key; it names the realm on the wire.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct RealmId(pub NodeId);

impl fmt::Display for RealmId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl fmt::Debug for RealmId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RealmId({})", self.0)
    }
}

impl FromStr for RealmId {
    type Err = macula_core::identity::NodeIdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        s.parse().map(RealmId)
    }
}

/// The realm's secret key (held by the operator or the realm's root hub).
pub struct RealmKey(NodeKey);

impl RealmKey {
    pub fn from_seed(seed: [u8; 32]) -> Self {
        Self(NodeKey::from_seed(seed))
    }

    pub fn generate() -> Self {
        Self(NodeKey::generate())
    }

    /// Uses an existing key file (same format as the node key, `docs/identity.md`).
    pub fn from_node_key(key: NodeKey) -> Self {
        Self(key)
    }

    pub fn id(&self) -> RealmId {
        RealmId(self.0.node_id())
    }

    /// Issues a membership certificate directly under the realm key.
    pub fn issue(&self, body: CertBody) -> MembershipCert {
        let sig = sign_statement(&self.0, &Statement::Cert(&body));
        MembershipCert {
            body,
            issuer: Issuer::Realm,
            sig,
        }
    }

    /// Issues a membership certificate under the realm key that also grants the admin role:
    /// its holder may run commands on other members (`maculactl --node`, docs/security.md).
    /// Signed as a statement of its own, so the grant can be neither added nor stripped.
    pub fn issue_admin(&self, body: CertBody) -> MembershipCert {
        let sig = sign_statement(&self.0, &Statement::AdminCert(&body));
        MembershipCert {
            body,
            issuer: Issuer::RealmAdmin,
            sig,
        }
    }

    /// Issues `body` with the admin role when `admin`, else as a plain membership.
    pub fn issue_as(&self, body: CertBody, admin: bool) -> MembershipCert {
        if admin {
            self.issue_admin(body)
        } else {
            self.issue(body)
        }
    }

    /// Lets `hub` issue certificates for this realm until `expires` (unix seconds).
    pub fn delegate(&self, hub: NodeId, expires: u64) -> Delegation {
        let body = DelegationBody {
            realm: self.id(),
            hub,
            expires,
        };
        let sig = sign_statement(&self.0, &Statement::Delegation(&body));
        Delegation { body, sig }
    }

    /// Orders every storage node of the realm to remove the shards signed by `owner` and to refuse
    /// them from now on (carried out by `macula_store::purge`).
    pub fn purge(&self, owner: NodeId, issued_at: u64) -> PurgeOrder {
        let body = PurgeBody {
            realm: self.id(),
            owner,
            issued_at,
        };
        let sig = sign_statement(&self.0, &Statement::Purge(&body));
        PurgeOrder { body, sig }
    }

    /// Revokes `node`'s membership (and, for a hub, every certificate it issued).
    pub fn revoke(&self, node: NodeId, issued_at: u64) -> Revocation {
        let body = RevocationBody {
            realm: self.id(),
            node,
            issued_at,
        };
        let sig = sign_statement(&self.0, &Statement::Revocation(&body));
        Revocation { body, sig }
    }
}

/// What a member does in the realm (the `[node] role` of the agent config).
pub use macula_core::config::Role;

/// The signed content of a membership certificate. Times are unix seconds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CertBody {
    pub realm: RealmId,
    pub node: NodeId,
    pub role: Role,
    /// Human name of the node, at most [`MAX_NAME`] bytes.
    pub name: String,
    /// When the certificate was issued (less a margin). Informational: boards without a
    /// real-time clock boot at 1970 or at their last saved time, so a clock before `not_before`
    /// says the clock is wrong, not that the certificate is ([`MembershipCert::clock_behind`]).
    pub not_before: u64,
    pub expires: u64,
}

/// Longest node name in a certificate.
pub const MAX_NAME: usize = 64;

/// How far before its issue a new certificate's `not_before` is set, so members whose clocks lag
/// by a few minutes do not think their clock is behind.
pub const NOT_BEFORE_SLACK_S: u64 = 300;

/// Validity of the certificate a node issues itself when it creates a realm.
pub const FOUNDER_VALID_DAYS: u32 = 3650;

/// Longest validity an admission grants (`maculactl realm admit --days`); the shortest is a day.
pub const MAX_VALID_DAYS: u32 = 3650;

/// A name an admission may give: 1 to [`MAX_NAME`] bytes.
pub fn check_name(name: &str) -> Result<(), CertError> {
    if name.is_empty() || name.len() > MAX_NAME {
        return Err(CertError::NameLength);
    }
    Ok(())
}

impl CertBody {
    /// The certificate of the node that creates realm `realm` at `now`: valid for
    /// [`FOUNDER_VALID_DAYS`], named `name` or, when that is empty, the short node ID.
    pub fn founder(realm: RealmId, node: NodeId, role: Role, name: &str, now: u64) -> Self {
        let name = if name.is_empty() {
            node.short()
        } else {
            name.to_string()
        };
        Self::valid_for(realm, node, role, name, FOUNDER_VALID_DAYS, now)
    }

    /// The certificate of a node admitted at `now` for `valid_days` (clamped to 1 ..=
    /// [`MAX_VALID_DAYS`]). Refuses an empty name or one over [`MAX_NAME`] bytes.
    pub fn admitted(
        realm: RealmId,
        node: NodeId,
        role: Role,
        name: String,
        valid_days: u32,
        now: u64,
    ) -> Result<Self, CertError> {
        check_name(&name)?;
        let days = valid_days.clamp(1, MAX_VALID_DAYS);
        Ok(Self::valid_for(realm, node, role, name, days, now))
    }

    fn valid_for(
        realm: RealmId,
        node: NodeId,
        role: Role,
        name: String,
        days: u32,
        now: u64,
    ) -> Self {
        Self {
            realm,
            node,
            role,
            name,
            not_before: now.saturating_sub(NOT_BEFORE_SLACK_S),
            expires: now + u64::from(days) * 86_400,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Issuer {
    /// Signed by the realm key.
    Realm,
    /// Signed by a hub holding this delegation from the realm key.
    Hub(Delegation),
    /// Signed by the realm key over the admin statement: a member with the admin role. Only
    /// the realm key grants it (a hub cannot). Added after the first two, so certificates
    /// without it keep their bytes and signatures.
    RealmAdmin,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MembershipCert {
    pub body: CertBody,
    pub issuer: Issuer,
    pub sig: Sig,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DelegationBody {
    pub realm: RealmId,
    pub hub: NodeId,
    pub expires: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delegation {
    pub body: DelegationBody,
    pub sig: Sig,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RevocationBody {
    pub realm: RealmId,
    pub node: NodeId,
    pub issued_at: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Revocation {
    pub body: RevocationBody,
    pub sig: Sig,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PurgeBody {
    pub realm: RealmId,
    /// The node whose shards go: the owner key of the objects it stored.
    pub owner: NodeId,
    pub issued_at: u64,
}

/// A realm-wide purge of one owner's shards, signed by the realm key: only the realm admin can
/// issue one, any member may carry it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PurgeOrder {
    pub body: PurgeBody,
    pub sig: Sig,
}

impl PurgeOrder {
    pub fn verify(&self, realm: &RealmId) -> Result<(), CertError> {
        if self.body.realm != *realm {
            return Err(CertError::WrongRealm {
                expected: *realm,
                got: self.body.realm,
            });
        }
        if !verify_statement(&realm.0, &Statement::Purge(&self.body), &self.sig) {
            return Err(CertError::BadSignature("purge order"));
        }
        Ok(())
    }
}

/// The signed bytes of every realm statement: `wire::encode(&Statement::…)`.
#[derive(Serialize)]
enum Statement<'a> {
    Cert(&'a CertBody),
    Delegation(&'a DelegationBody),
    Revocation(&'a RevocationBody),
    /// Member metadata, signed by the member itself.
    Meta(&'a MemberMeta),
    Purge(&'a PurgeBody),
    /// A certificate granting the admin role ([`Issuer::RealmAdmin`]).
    AdminCert(&'a CertBody),
}

/// A certificate issued by `hub` under `delegation` (tests of hub-issued certificates).
#[cfg(test)]
pub(crate) fn issue_as_hub(
    hub: &NodeKey,
    delegation: Delegation,
    body: CertBody,
) -> MembershipCert {
    let sig = sign_statement(hub, &Statement::Cert(&body));
    MembershipCert {
        body,
        issuer: Issuer::Hub(delegation),
        sig,
    }
}

fn sign_statement(key: &NodeKey, st: &Statement<'_>) -> Sig {
    Sig(key.sign(Domain::RealmCert, &wire::encode(st)).to_bytes())
}

fn verify_statement(signer: &NodeId, st: &Statement<'_>, sig: &Sig) -> bool {
    signer
        .verify(
            Domain::RealmCert,
            &wire::encode(st),
            &Signature::from_bytes(&sig.0),
        )
        .is_ok()
}

/// Signs member metadata with the member's own key.
pub(crate) fn sign_meta(key: &NodeKey, meta: &MemberMeta) -> Sig {
    sign_statement(key, &Statement::Meta(meta))
}

/// Checks that `meta` was signed by the node it describes.
pub(crate) fn verify_meta(meta: &MemberMeta, sig: &Sig) -> bool {
    verify_statement(&meta.node, &Statement::Meta(meta), sig)
}

/// Why a certificate, delegation or revocation was refused. Each says what to do next.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CertError {
    #[error(
        "certificate is for realm {got}, this node is in realm {expected}; get a certificate \
         for this realm (`maculactl realm admit` on a realm admin node)"
    )]
    WrongRealm { expected: RealmId, got: RealmId },
    #[error("certificate is for node {cert}, but the peer authenticated as {peer}")]
    NodeMismatch { cert: NodeId, peer: NodeId },
    #[error(
        "certificate expired at {expires} (now {now}); issue a new one with `maculactl realm admit`"
    )]
    Expired { expires: u64, now: u64 },
    #[error("bad signature on the {0}; the file is damaged or forged, issue a new one")]
    BadSignature(&'static str),
    #[error("the delegation to hub {hub} expired at {expires}; the realm admin must renew it")]
    DelegationExpired { hub: NodeId, expires: u64 },
    #[error("the delegation is for realm {got}, not {expected}")]
    DelegationWrongRealm { expected: RealmId, got: RealmId },
    #[error("certificate outlives the delegation of its issuing hub ({cert} > {delegation})")]
    OutlivesDelegation { cert: u64, delegation: u64 },
    #[error("node {0} was revoked from this realm")]
    Revoked(NodeId),
    #[error("node name is longer than {MAX_NAME} bytes")]
    NameTooLong,
    #[error("a name has 1 to {MAX_NAME} bytes")]
    NameLength,
    #[error("not a membership certificate file: {0}")]
    Format(String),
}

impl MembershipCert {
    /// Checks signature chain, realm, expiry and name length (not revocation; see
    /// [`Admission::check`]). A clock before `not_before` is no reason to refuse: see
    /// [`MembershipCert::clock_behind`].
    pub fn verify(&self, realm: &RealmId, now: u64) -> Result<(), CertError> {
        let b = &self.body;
        if b.realm != *realm {
            return Err(CertError::WrongRealm {
                expected: *realm,
                got: b.realm,
            });
        }
        if b.name.len() > MAX_NAME {
            return Err(CertError::NameTooLong);
        }
        let signer = match &self.issuer {
            Issuer::Realm | Issuer::RealmAdmin => realm.0,
            Issuer::Hub(d) => {
                d.verify(realm, now)?;
                if b.expires > d.body.expires {
                    return Err(CertError::OutlivesDelegation {
                        cert: b.expires,
                        delegation: d.body.expires,
                    });
                }
                d.body.hub
            }
        };
        let statement = match self.issuer {
            Issuer::RealmAdmin => Statement::AdminCert(b),
            _ => Statement::Cert(b),
        };
        if !verify_statement(&signer, &statement, &self.sig) {
            return Err(CertError::BadSignature("membership certificate"));
        }
        if now >= b.expires {
            return Err(CertError::Expired {
                expires: b.expires,
                now,
            });
        }
        Ok(())
    }

    /// By how many seconds a clock reading `now` is before this certificate was issued: a sign
    /// that the clock is wrong (a board without a real-time clock), worth saying in the log.
    pub fn clock_behind(&self, now: u64) -> Option<u64> {
        (now < self.body.not_before).then(|| self.body.not_before - now)
    }

    /// Whether the realm key granted the admin role (checked by [`MembershipCert::verify`]).
    pub fn is_admin(&self) -> bool {
        matches!(self.issuer, Issuer::RealmAdmin)
    }

    /// The hub that issued this certificate, if any.
    pub fn issuing_hub(&self) -> Option<NodeId> {
        match &self.issuer {
            Issuer::Realm | Issuer::RealmAdmin => None,
            Issuer::Hub(d) => Some(d.body.hub),
        }
    }

    /// Text form for files (`/boot/macula/realm.cert`) and copy-paste: a header line and the
    /// base32 of the wire bytes.
    pub fn to_text(&self) -> String {
        format!("{CERT_HEADER}\n{}\n", base32::encode(&wire::encode(self)))
    }

    pub fn from_text(text: &str) -> Result<Self, CertError> {
        let mut lines = text.lines().map(str::trim).filter(|l| !l.is_empty());
        if lines.next() != Some(CERT_HEADER) {
            return Err(CertError::Format(format!(
                "first line must be `{CERT_HEADER}`"
            )));
        }
        let body = lines
            .next()
            .ok_or_else(|| CertError::Format("missing the certificate line".into()))?;
        if lines.next().is_some() {
            return Err(CertError::Format(
                "unexpected text after the certificate".into(),
            ));
        }
        if body.len() > 4096 {
            return Err(CertError::Format("certificate line too long".into()));
        }
        let bytes = base32::decode(body).map_err(CertError::Format)?;
        wire::decode(&bytes).map_err(|e| CertError::Format(e.to_string()))
    }
}

const CERT_HEADER: &str = "macula-membership-cert v1";

impl Delegation {
    pub fn verify(&self, realm: &RealmId, now: u64) -> Result<(), CertError> {
        if self.body.realm != *realm {
            return Err(CertError::DelegationWrongRealm {
                expected: *realm,
                got: self.body.realm,
            });
        }
        if !verify_statement(&realm.0, &Statement::Delegation(&self.body), &self.sig) {
            return Err(CertError::BadSignature("hub delegation"));
        }
        if now >= self.body.expires {
            return Err(CertError::DelegationExpired {
                hub: self.body.hub,
                expires: self.body.expires,
            });
        }
        Ok(())
    }
}

impl Revocation {
    pub fn verify(&self, realm: &RealmId) -> Result<(), CertError> {
        if self.body.realm != *realm {
            return Err(CertError::WrongRealm {
                expected: *realm,
                got: self.body.realm,
            });
        }
        if !verify_statement(&realm.0, &Statement::Revocation(&self.body), &self.sig) {
            return Err(CertError::BadSignature("revocation"));
        }
        Ok(())
    }
}

/// This node's place in its realm: the realm, its own certificate, and the revocations it knows.
/// Shared by the TLS verifiers (deny list) and the admission check after the handshake.
#[derive(Debug)]
pub struct Admission {
    realm: RealmId,
    /// This node's certificate; replaced when renewed ([`Admission::set_own_cert`]).
    own: RwLock<MembershipCert>,
    revoked: RwLock<HashMap<NodeId, Revocation>>,
    deny: Arc<DenyList>,
    /// How many revocations are known; changes when one is added.
    known: tokio::sync::watch::Sender<usize>,
}

impl Admission {
    /// Refuses to start with a certificate that is not valid for `node` now. A clock before
    /// the certificate's `not_before` is only logged: the node starts and joins.
    pub fn new(node: NodeId, own: MembershipCert, now: u64) -> Result<Self, CertError> {
        let realm = own.body.realm;
        own.verify(&realm, now)?;
        if let Some(behind) = own.clock_behind(now) {
            tracing::warn!(
                target: "macula::mesh",
                clock = now,
                not_before = own.body.not_before,
                "the clock is at least {behind} s behind (before this node's certificate was                  issued): it looks wrong; joining anyway, the realm will tell the time"
            );
        }
        if own.body.node != node {
            return Err(CertError::NodeMismatch {
                cert: own.body.node,
                peer: node,
            });
        }
        Ok(Self {
            realm,
            own: RwLock::new(own),
            revoked: RwLock::default(),
            deny: Arc::default(),
            known: tokio::sync::watch::Sender::new(0),
        })
    }

    pub fn realm(&self) -> RealmId {
        self.realm
    }

    /// This node's certificate (shown in Hellos and beacons).
    pub fn own_cert(&self) -> MembershipCert {
        self.own.read_locked().clone()
    }

    /// Replaces this node's certificate with a renewed one, checked like at [`Admission::new`]:
    /// valid now, for this realm and node (`crate::renewal::check_renewed` checks the rest).
    pub fn set_own_cert(&self, cert: MembershipCert, now: u64) -> Result<(), CertError> {
        cert.verify(&self.realm, now)?;
        let node = self.own.read_locked().body.node;
        if cert.body.node != node {
            return Err(CertError::NodeMismatch {
                cert: cert.body.node,
                peer: node,
            });
        }
        *self.own.locked() = cert;
        Ok(())
    }

    pub fn deny_list(&self) -> Arc<DenyList> {
        self.deny.clone()
    }

    /// Admits `peer` (authenticated by TLS) presenting `cert` for `realm`.
    pub fn check(
        &self,
        peer: NodeId,
        realm: &RealmId,
        cert: &MembershipCert,
        now: u64,
    ) -> Result<(), CertError> {
        if *realm != self.realm {
            return Err(CertError::WrongRealm {
                expected: self.realm,
                got: *realm,
            });
        }
        cert.verify(&self.realm, now)?;
        if cert.body.node != peer {
            return Err(CertError::NodeMismatch {
                cert: cert.body.node,
                peer,
            });
        }
        let revoked = self.revoked.read_locked();
        if revoked.contains_key(&peer) {
            return Err(CertError::Revoked(peer));
        }
        if let Some(hub) = cert.issuing_hub().filter(|h| revoked.contains_key(h)) {
            return Err(CertError::Revoked(hub));
        }
        Ok(())
    }

    /// Records a verified revocation. Returns `true` when it is new.
    pub fn revoke(&self, rev: Revocation) -> Result<bool, CertError> {
        rev.verify(&self.realm)?;
        let node = rev.body.node;
        let mut revoked = self.revoked.locked();
        let new = revoked.insert(node, rev).is_none();
        let count = revoked.len();
        drop(revoked);
        self.deny.insert(node);
        if new {
            self.known.send_replace(count);
        }
        Ok(new)
    }

    /// Changes whenever a new revocation is recorded (its value: how many are known), so those
    /// who keep revocations need not poll.
    pub fn revocations_changed(&self) -> tokio::sync::watch::Receiver<usize> {
        self.known.subscribe()
    }

    pub fn is_revoked(&self, node: &NodeId) -> bool {
        self.revoked.read_locked().contains_key(node)
    }

    pub fn revocations(&self) -> Vec<Revocation> {
        self.revoked.read_locked().values().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issue_policy_backdates_clamps_and_names() {
        let realm = RealmKey::from_seed([1; 32]).id();
        let node = NodeKey::from_seed([2; 32]).node_id();
        let now = 1_700_000_000;
        let f = CertBody::founder(realm, node, Role::Hub, "", now);
        assert_eq!(f.name, node.short());
        assert_eq!(f.not_before, now - 300);
        assert_eq!(f.expires, now + 3650 * 86_400);
        assert_eq!(
            CertBody::founder(realm, node, Role::Hub, "hub", now).name,
            "hub"
        );
        let a = CertBody::admitted(realm, node, Role::Edge, "e".into(), 0, now).unwrap();
        assert_eq!((a.not_before, a.expires), (now - 300, now + 86_400));
        let a = CertBody::admitted(realm, node, Role::Edge, "e".into(), 9999, now).unwrap();
        assert_eq!(a.expires, now + 3650 * 86_400);
        let a = CertBody::admitted(realm, node, Role::Edge, "e".into(), 30, 10).unwrap();
        assert_eq!((a.not_before, a.expires), (0, 10 + 30 * 86_400));
        for bad in [String::new(), "x".repeat(MAX_NAME + 1)] {
            assert_eq!(
                CertBody::admitted(realm, node, Role::Edge, bad, 30, now),
                Err(CertError::NameLength)
            );
        }
        assert!(CertBody::admitted(realm, node, Role::Edge, "x".repeat(MAX_NAME), 30, now).is_ok());
    }

    fn body(realm: RealmId, node: NodeId) -> CertBody {
        CertBody {
            realm,
            node,
            role: Role::Edge,
            name: "edge-1".into(),
            not_before: 100,
            expires: 1000,
        }
    }

    #[test]
    fn direct_cert_verifies_and_fails_closed() {
        let rk = RealmKey::from_seed([1; 32]);
        let node = NodeKey::from_seed([2; 32]).node_id();
        let cert = rk.issue(body(rk.id(), node));
        cert.verify(&rk.id(), 500).unwrap();
        assert!(matches!(
            cert.verify(&rk.id(), 1000),
            Err(CertError::Expired { .. })
        ));
        // A clock before the start of validity (a board at 1970) is no reason to refuse.
        cert.verify(&rk.id(), 99).unwrap();
        cert.verify(&rk.id(), 0).unwrap();
        assert_eq!(cert.clock_behind(0), Some(100));
        assert_eq!(cert.clock_behind(100), None);
        let node_key = NodeKey::from_seed([2; 32]);
        let adm = Admission::new(node, cert.clone(), 0).expect("starts with the clock at 1970");
        adm.check(node_key.node_id(), &rk.id(), &cert, 5).unwrap();
        let other = RealmKey::from_seed([3; 32]);
        assert!(matches!(
            cert.verify(&other.id(), 500),
            Err(CertError::WrongRealm { .. })
        ));
        let mut forged = cert.clone();
        forged.body.role = Role::Hub;
        assert_eq!(
            forged.verify(&rk.id(), 500),
            Err(CertError::BadSignature("membership certificate"))
        );
        // A certificate issued by another realm's key but claiming our realm.
        let fake = other.issue(body(rk.id(), node));
        assert!(matches!(
            fake.verify(&rk.id(), 500),
            Err(CertError::BadSignature(_))
        ));
    }

    #[test]
    fn the_admin_role_is_signed_and_cannot_be_added_nor_stripped() {
        let rk = RealmKey::from_seed([1; 32]);
        let node = NodeKey::from_seed([2; 32]).node_id();
        let plain = rk.issue(body(rk.id(), node));
        let admin = rk.issue_admin(body(rk.id(), node));
        admin.verify(&rk.id(), 500).unwrap();
        assert!(admin.is_admin() && !plain.is_admin());
        assert_eq!(rk.issue_as(body(rk.id(), node), false), plain);
        assert_eq!(rk.issue_as(body(rk.id(), node), true), admin);
        // A plain certificate relabelled as an admin one, and the reverse, fail.
        let added = MembershipCert {
            issuer: Issuer::RealmAdmin,
            ..plain.clone()
        };
        let stripped = MembershipCert {
            issuer: Issuer::Realm,
            ..admin.clone()
        };
        for forged in [added, stripped] {
            assert_eq!(
                forged.verify(&rk.id(), 500),
                Err(CertError::BadSignature("membership certificate"))
            );
        }
        // A certificate without the role keeps its bytes: the issuer's tag stays 0 and the
        // admin one is a new tag, so certificates issued before the role existed still decode.
        let sig_len = wire::encode(&plain.sig).len() - 1;
        let bytes = wire::encode(&plain);
        assert_eq!(bytes[bytes.len() - sig_len - 1], 0, "Issuer::Realm tag");
        let bytes = wire::encode(&admin);
        assert_eq!(
            bytes[bytes.len() - sig_len - 1],
            2,
            "Issuer::RealmAdmin tag"
        );
        let text = admin.to_text();
        assert_eq!(MembershipCert::from_text(&text).unwrap(), admin);
        // Another realm's key cannot grant it for this realm.
        let other = RealmKey::from_seed([3; 32]);
        assert!(
            other
                .issue_admin(body(rk.id(), node))
                .verify(&rk.id(), 500)
                .is_err()
        );
    }

    #[test]
    fn delegated_hub_issues_certs() {
        let rk = RealmKey::from_seed([1; 32]);
        let hub = NodeKey::from_seed([4; 32]);
        let node = NodeKey::from_seed([5; 32]).node_id();
        let d = rk.delegate(hub.node_id(), 900);
        let b = CertBody {
            expires: 800,
            ..body(rk.id(), node)
        };
        let sig = sign_statement(&hub, &Statement::Cert(&b));
        let cert = MembershipCert {
            body: b.clone(),
            issuer: Issuer::Hub(d.clone()),
            sig,
        };
        cert.verify(&rk.id(), 500).unwrap();
        assert!(matches!(
            cert.verify(&rk.id(), 900),
            Err(CertError::DelegationExpired { .. })
        ));
        // A hub cannot extend its own authority.
        let long = CertBody {
            expires: 2000,
            ..b.clone()
        };
        let cert2 = MembershipCert {
            sig: sign_statement(&hub, &Statement::Cert(&long)),
            body: long,
            issuer: Issuer::Hub(d.clone()),
        };
        assert!(matches!(
            cert2.verify(&rk.id(), 500),
            Err(CertError::OutlivesDelegation { .. })
        ));
        // A delegation signature does not verify as a certificate (statement tags differ).
        let as_cert = MembershipCert {
            body: b,
            issuer: Issuer::Realm,
            sig: d.sig.clone(),
        };
        assert!(as_cert.verify(&rk.id(), 500).is_err());
        // Revoking the hub invalidates what it issued.
        let me = NodeKey::from_seed([6; 32]);
        let adm = Admission::new(me.node_id(), rk.issue(body(rk.id(), me.node_id())), 500).unwrap();
        adm.check(node, &rk.id(), &cert, 500).unwrap();
        assert!(adm.revoke(rk.revoke(hub.node_id(), 501)).unwrap());
        assert_eq!(
            adm.check(node, &rk.id(), &cert, 502),
            Err(CertError::Revoked(hub.node_id()))
        );
        assert!(adm.deny_list().contains(&hub.node_id()));
    }

    #[test]
    fn admission_binds_cert_to_peer() {
        let rk = RealmKey::from_seed([1; 32]);
        let me = NodeKey::from_seed([6; 32]);
        let peer = NodeKey::from_seed([7; 32]).node_id();
        let thief = NodeKey::from_seed([8; 32]).node_id();
        let adm = Admission::new(me.node_id(), rk.issue(body(rk.id(), me.node_id())), 500).unwrap();
        let cert = rk.issue(body(rk.id(), peer));
        adm.check(peer, &rk.id(), &cert, 500).unwrap();
        assert!(matches!(
            adm.check(thief, &rk.id(), &cert, 500),
            Err(CertError::NodeMismatch { .. })
        ));
        // Revocations must be signed by the realm key.
        let other = RealmKey::from_seed([9; 32]);
        let mut bad = other.revoke(peer, 1);
        bad.body.realm = rk.id();
        assert!(adm.revoke(bad).is_err());
        assert!(!adm.is_revoked(&peer));
        assert!(adm.revoke(rk.revoke(peer, 1)).unwrap());
        assert!(!adm.revoke(rk.revoke(peer, 1)).unwrap());
        assert_eq!(
            adm.check(peer, &rk.id(), &cert, 500),
            Err(CertError::Revoked(peer))
        );
    }

    #[test]
    fn text_form_roundtrips_and_rejects_garbage() {
        let rk = RealmKey::from_seed([1; 32]);
        let cert = rk.issue(body(rk.id(), NodeKey::from_seed([2; 32]).node_id()));
        let text = cert.to_text();
        assert_eq!(MembershipCert::from_text(&text).unwrap(), cert);
        assert!(MembershipCert::from_text("hello").is_err());
        assert!(MembershipCert::from_text(&format!("{CERT_HEADER}\nzzzz1\n")).is_err());
        let mut cut = text.clone();
        cut.truncate(text.len() - 10);
        assert!(MembershipCert::from_text(&cut).is_err());
    }
}
