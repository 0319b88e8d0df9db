//! SWIM membership (sans-IO): `foca` (SWIM + infection-style dissemination + suspicion with
//! refutation) plus Lifeguard's local health multiplier, signed member metadata and realm
//! revocations spread as custom broadcasts.
//!
//! Inputs: packets from authenticated peers ([`Membership::handle_packet`]), due timers
//! ([`Membership::handle_timer`]), local changes. Outputs ([`Output`]): packets to send, timers to
//! schedule (relative delays), events. No clock, no sockets: the simulator ([`crate::sim`]) and the
//! tokio shell ([`crate::node`]) drive it the same way.
//!
//! Lifeguard (Dadgar et al., 2018): a node that misses acks or has to refute suspicions about
//! itself is probably the slow one, so it raises its local health multiplier (LHM, 0..=8) and
//! stretches its own probe interval and probe timeout by `1 + LHM`; acks lower it again. This
//! keeps an overloaded node from declaring healthy peers dead.
//!
//! Lifeguard's dynamic suspicion timeout: a node that suspects a member (its probe failed)
//! declares it down after `max` ([`foca::Config::suspect_to_down_after`]) when nobody confirms
//! the suspicion, and sooner the more members confirm it, down to [`Suspicion::min`] after `K`
//! confirmations: `timeout(c) = max(min, max − (max − min)·ln(c + 1)/ln(K + 1))`. A confirmation
//! is a distinct member (neither the suspect nor us) that gossips the same suspicion (member and
//! incarnation) to us; `K` is [`Suspicion::confirmations`], at most the other active members.
//! The suspect refutes by gossiping a higher incarnation, which cancels every timer.

use macula_core::sync::Locked;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use foca::{
    AccumulatingRuntime, BroadcastHandler, Codec, Foca, Identity, Invalidates, Member, Message,
    OwnedNotification, PostcardCodec, State, Timer,
};
use macula_core::{NodeId, NodeKey, wire};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use serde::{Deserialize, Serialize};

use crate::clock::{ClockState, MetaClock};
use crate::realm::{self, CertError, MembershipCert, RealmId, Revocation, Role};
use crate::sig::Sig;

/// A member's identity in SWIM: its node ID plus a generation that grows on every restart or
/// rejoin, so a restarted node is not mistaken for its dead former self.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct MemberId {
    pub node: NodeId,
    pub generation: u32,
}

impl Identity for MemberId {
    type Addr = NodeId;

    fn renew(&self) -> Option<Self> {
        Some(Self {
            node: self.node,
            generation: self.generation.wrapping_add(1),
        })
    }

    fn addr(&self) -> NodeId {
        self.node
    }

    fn win_addr_conflict(&self, adversary: &Self) -> bool {
        self.generation > adversary.generation
    }
}

/// A reachable address on one uplink.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UplinkAddr {
    /// Uplink name (`eth0`, `lte`, …).
    pub uplink: String,
    pub addr: std::net::SocketAddr,
}

/// Storage capacity summary, bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Capacity {
    pub storage_total: u64,
    pub storage_free: u64,
}

/// A failure-domain label: 1 to [`MAX_META_TEXT`] bytes of lowercase ASCII letters, digits, `-`,
/// `_` and `.`, starting with a letter or a digit (`attic`, `ups-1`, `rack.2`).
///
/// Members with equal labels share that failure domain. [`Label::default`] is `default`: the
/// label of a node whose operator set none, so all unlabelled nodes form one domain (placement
/// then cannot spread between them, which is the truth: nothing says they fail separately).
/// There is no empty label. A label is checked when it is made and when it is decoded, so
/// metadata carrying an invalid one is refused as a whole.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Label(String);

/// Why a string is not a [`Label`]; says what a label may contain.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{0:?} is not a failure-domain label: use 1 to {MAX_META_TEXT} characters of a-z, 0-9, \
     '-', '_' and '.', starting with a letter or digit (e.g. \"attic\" or \"ups-1\")"
)]
pub struct LabelError(pub String);

impl Label {
    /// The label of a node whose operator set none.
    pub const DEFAULT: &'static str = "default";

    pub fn new(s: impl Into<String>) -> Result<Self, LabelError> {
        let s = s.into();
        let b = s.as_bytes();
        let ok = !b.is_empty()
            && b.len() <= MAX_META_TEXT
            && b[0].is_ascii_alphanumeric()
            && b.iter().all(|&c| {
                c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, b'-' | b'_' | b'.')
            });
        if ok { Ok(Self(s)) } else { Err(LabelError(s)) }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Default for Label {
    fn default() -> Self {
        Self(Self::DEFAULT.into())
    }
}

impl std::fmt::Display for Label {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::str::FromStr for Label {
    type Err = LabelError;
    fn from_str(s: &str) -> Result<Self, LabelError> {
        Self::new(s)
    }
}

impl TryFrom<String> for Label {
    type Error = LabelError;
    fn try_from(s: String) -> Result<Self, LabelError> {
        Self::new(s)
    }
}

impl From<Label> for String {
    fn from(l: Label) -> String {
        l.0
    }
}

/// The failure domains a member is in, as placement spreads shards over them: its `site`
/// (building, room) and its `power` domain (circuit, UPS). Both [`Label::DEFAULT`] unless set.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct FailureDomains {
    pub site: Label,
    pub power: Label,
}

/// What a member says about itself. Signed by the member; a higher `version` replaces a lower.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberMeta {
    pub node: NodeId,
    /// Unix time in milliseconds when the member signed this metadata, or one more than the
    /// previous version when the clock is not ahead of it: strictly increasing over updates and
    /// restarts ([`MetaClock`]), whatever the member's clock says.
    pub version: u64,
    pub role: Role,
    pub name: String,
    pub addrs: Vec<UplinkAddr>,
    /// WireGuard overlay public key.
    pub overlay_key: Option<[u8; 32]>,
    /// Storage offered (quota) and free now; re-announced as it changes.
    pub capacity: Capacity,
    /// Failure-domain labels (`[storage] site` and `power` in `agent.toml`).
    pub domains: FailureDomains,
    pub software: String,
    /// Hubs through which this member can be reached when it is not directly reachable.
    pub relays: Vec<NodeId>,
}

/// Limits on metadata received from others.
pub const MAX_META_ADDRS: usize = 8;
pub const MAX_META_RELAYS: usize = 4;
pub const MAX_META_TEXT: usize = 64;

impl MemberMeta {
    fn check_bounds(&self) -> Result<(), MembershipError> {
        let ok = self.name.len() <= MAX_META_TEXT
            && self.software.len() <= MAX_META_TEXT
            && self.addrs.len() <= MAX_META_ADDRS
            && self.relays.len() <= MAX_META_RELAYS
            && self.addrs.iter().all(|a| a.uplink.len() <= MAX_META_TEXT);
        if ok {
            Ok(())
        } else {
            Err(MembershipError::MetaTooLarge(self.node))
        }
    }
}

/// A member's metadata, signed by the member, with the realm certificate that admits it: an
/// identity enters membership only with a certificate that verifies (chain, expiry,
/// revocation of the node and of its issuing hub), and its role and name are the certificate's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedMeta {
    pub meta: MemberMeta,
    pub cert: MembershipCert,
    pub sig: Sig,
}

impl SignedMeta {
    /// Signs `meta` with `key`; its role and name are set to the certificate's.
    pub fn sign(key: &NodeKey, cert: MembershipCert, mut meta: MemberMeta) -> Self {
        meta.role = cert.body.role;
        meta.name.clone_from(&cert.body.name);
        let sig = realm::sign_meta(key, &meta);
        Self { meta, cert, sig }
    }

    /// Checks the size limits, the member's signature, and that the certificate is valid for
    /// `realm` at `now` (unix seconds), names this node and carries its role and name.
    /// Revocation is the caller's part.
    pub fn verify(&self, realm: &RealmId, now: u64) -> Result<(), MembershipError> {
        self.cert
            .verify(realm, now)
            .map_err(|e| MembershipError::NotAdmitted(self.meta.node, e))?;
        self.verify_with_checked_cert()
    }

    /// As [`SignedMeta::verify`] for a certificate verified before (and not expired since).
    fn verify_with_checked_cert(&self) -> Result<(), MembershipError> {
        let node = self.meta.node;
        self.meta.check_bounds()?;
        let c = &self.cert.body;
        if c.node != node || c.role != self.meta.role || c.name != self.meta.name {
            return Err(MembershipError::CertMismatch(node));
        }
        if realm::verify_meta(&self.meta, &self.sig) {
            Ok(())
        } else {
            Err(MembershipError::BadMetaSignature(node))
        }
    }
}

/// A custom broadcast carried by SWIM packets.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Rumor {
    Meta(Box<SignedMeta>),
    Revocation(Revocation),
}

/// A membership datagram.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Packet {
    /// A foca (SWIM) packet.
    Swim(Vec<u8>),
    /// "Send me your metadata": sent to a member whose metadata we lack.
    WantMeta(NodeId),
    /// Signed metadata of some member (answer to [`Packet::WantMeta`]); the signature, not the
    /// sender, vouches for it.
    Meta(Box<SignedMeta>),
}

/// Dedup key of a rumor: a newer version for the same node replaces an older one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RumorKey {
    kind: u8,
    node: NodeId,
    version: u64,
}

impl Invalidates for RumorKey {
    fn invalidates(&self, other: &Self) -> bool {
        self.kind == other.kind && self.node == other.node && self.version >= other.version
    }
}

#[derive(Debug, thiserror::Error)]
pub enum MembershipError {
    #[error("SWIM packet claims to come from {claimed} but arrived from {actual}")]
    Spoofed { claimed: NodeId, actual: NodeId },
    #[error("undecodable SWIM packet: {0}")]
    Decode(String),
    #[error("SWIM: {0}")]
    Foca(String),
    #[error("metadata of {0} has a bad signature")]
    BadMetaSignature(NodeId),
    #[error("metadata of {0} exceeds the size limits")]
    MetaTooLarge(NodeId),
    #[error("rumor: {0}")]
    Rumor(String),
    #[error("{0} has no valid realm certificate: {1}")]
    NotAdmitted(NodeId, CertError),
    #[error("metadata of {0} disagrees with its certificate (node, role or name)")]
    CertMismatch(NodeId),
    #[error("packet from {0}, which showed no valid realm certificate")]
    Unadmitted(NodeId),
}

impl From<foca::Error> for MembershipError {
    fn from(e: foca::Error) -> Self {
        MembershipError::Foca(e.to_string())
    }
}

/// What rumors taught us: the newest metadata per node, revoked nodes, admitted identities,
/// events not yet reported.
struct RumorState {
    realm: RealmId,
    /// Unix seconds as last told by the driver (certificate validity).
    now: u64,
    metas: HashMap<NodeId, SignedMeta>,
    revoked: HashSet<NodeId>,
    revocations: Vec<Revocation>,
    /// Nodes that showed a valid certificate (in a Hello or their metadata): when it expires
    /// and which hub issued it.
    admitted: HashMap<NodeId, Admitted>,
    /// Formerly admitted nodes (certificate expired, revoked): still listed, as down.
    expelled: HashSet<NodeId>,
    events: Vec<Event>,
}

#[derive(Debug, Clone)]
struct Admitted {
    /// The certificate that admitted the node (metadata carrying the same one skips its
    /// signature checks).
    cert: MembershipCert,
    expires: u64,
    hub: Option<NodeId>,
}

impl RumorState {
    /// Records `m` if it is newer than what we know and valid. Returns whether it was new.
    fn accept_meta(&mut self, m: SignedMeta) -> Result<bool, MembershipError> {
        let node = m.meta.node;
        let known = self
            .metas
            .get(&node)
            .is_some_and(|old| old.meta.version >= m.meta.version);
        if known || self.revoked.contains(&node) {
            return Ok(false);
        }
        let checked = self
            .admitted
            .get(&node)
            .is_some_and(|a| a.cert == m.cert && self.now < a.expires);
        if checked {
            m.verify_with_checked_cert()?;
        } else {
            m.verify(&self.realm, self.now)?;
        }
        self.admit(&m.cert)?;
        self.metas.insert(node, m.clone());
        self.events.push(Event::Meta(Box::new(m)));
        Ok(true)
    }

    /// Admits the holder of `cert` (already verified for the realm) unless it or its issuing
    /// hub is revoked. A newly admitted node's pending `Up` is reported.
    fn admit(&mut self, cert: &MembershipCert) -> Result<(), MembershipError> {
        let node = cert.body.node;
        let hub = cert.issuing_hub();
        if let Some(r) = std::iter::once(node)
            .chain(hub)
            .find(|n| self.revoked.contains(n))
        {
            return Err(MembershipError::NotAdmitted(node, CertError::Revoked(r)));
        }
        let entry = Admitted {
            cert: cert.clone(),
            expires: cert.body.expires,
            hub,
        };
        // The later-expiring certificate wins (a renewed certificate extends the admission).
        match self.admitted.get_mut(&node) {
            Some(a) if a.expires >= entry.expires => {}
            Some(a) => *a = entry,
            None => {
                self.admitted.insert(node, entry);
                self.expelled.remove(&node);
                self.events.push(Event::Admitted(node));
            }
        }
        Ok(())
    }

    /// Forgets `node` as a member: its admission and metadata.
    fn expel(&mut self, node: &NodeId) -> bool {
        self.metas.remove(node);
        let was = self.admitted.remove(node).is_some();
        if was {
            self.expelled.insert(*node);
        }
        was
    }

    /// Whether `node` is listed among the members: admitted now or before.
    fn listed(&self, node: &NodeId) -> bool {
        self.admitted.contains_key(node) || self.expelled.contains(node)
    }

    /// Expels every node whose certificate expired by `now` or whose issuing hub is `revoked`;
    /// returns them.
    fn expel_invalid(&mut self) -> Vec<NodeId> {
        let now = self.now;
        let gone: Vec<NodeId> = self
            .admitted
            .iter()
            .filter(|(n, a)| {
                now >= a.expires
                    || self.revoked.contains(n)
                    || a.hub.is_some_and(|h| self.revoked.contains(&h))
            })
            .map(|(n, _)| *n)
            .collect();
        for n in &gone {
            self.expel(n);
        }
        gone
    }
}

/// Receives rumors for foca: verifies, dedups, records them in the shared [`RumorState`].
struct Rumors(Arc<Mutex<RumorState>>);

impl BroadcastHandler<MemberId> for Rumors {
    type Key = RumorKey;
    type Error = MembershipError;

    fn receive_item(
        &mut self,
        data: &[u8],
        sender: Option<&MemberId>,
    ) -> Result<Option<RumorKey>, MembershipError> {
        // Our own additions (no sender) are always (re)disseminated: that is the periodic
        // anti-entropy refresh. Received rumors spread only while they are news.
        let local = sender.is_none();
        let rumor: Rumor = wire::decode(data).map_err(|e| MembershipError::Rumor(e.to_string()))?;
        let mut st = self.0.locked();
        match rumor {
            Rumor::Meta(m) => {
                let (node, version) = (m.meta.node, m.meta.version);
                let new = st.accept_meta(*m)?;
                Ok(
                    (new || (local && !st.revoked.contains(&node))).then_some(RumorKey {
                        kind: 0,
                        node,
                        version,
                    }),
                )
            }
            Rumor::Revocation(r) => {
                let node = r.body.node;
                let known = st.revoked.contains(&node);
                if known && !local {
                    return Ok(None);
                }
                if !known {
                    r.verify(&st.realm)
                        .map_err(|e| MembershipError::Rumor(e.to_string()))?;
                    st.revoked.insert(node);
                    st.expel(&node);
                    st.revocations.push(r.clone());
                    st.events.push(Event::Revoked(r));
                }
                Ok(Some(RumorKey {
                    kind: 1,
                    node,
                    version: 0,
                }))
            }
        }
    }
}

/// What membership reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A member became active (alive or suspect).
    Up(MemberId),
    /// A member was declared down (failed, left, or revoked).
    Down(MemberId),
    /// A member restarted with a newer generation.
    Renamed { old: MemberId, new: MemberId },
    /// New or updated metadata of a member.
    Meta(Box<SignedMeta>),
    /// A verified revocation; the shell must close connections to the node.
    Revoked(Revocation),
    /// We are connected to at least one member.
    Active,
    /// We know of no active member.
    Idle,
    /// We were declared down and rejoined under a new generation.
    Rejoined(MemberId),
    /// A node showed a valid realm certificate (before its `Up`, which waits for it).
    Admitted(NodeId),
    /// A member's certificate expired, or its issuing hub was revoked: it is no member any
    /// more (declared down); the shell must close connections to it.
    Expelled(NodeId),
}

/// A timer of the membership state machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MemberTimer {
    /// A foca (SWIM) timer.
    Swim(Timer<MemberId>),
    /// Re-disseminate our own metadata and the revocations we know (anti-entropy for rumors
    /// that a node missed, e.g. because it joined later); expel members whose certificate
    /// expired.
    Refresh,
    /// Declare `member` down if it is still suspected at `incarnation` and at least
    /// `confirmations` members confirmed the suspicion (Lifeguard's dynamic suspicion timeout).
    Suspicion {
        member: MemberId,
        incarnation: foca::Incarnation,
        confirmations: u32,
    },
}

/// An action for the driver.
#[derive(Debug, Clone)]
pub enum Output {
    /// Send `data` (an encoded [`Packet`]) as one datagram to `to`.
    Send {
        to: NodeId,
        data: Vec<u8>,
    },
    /// Call [`Membership::handle_timer`] with `timer` after `after`.
    Schedule {
        after: Duration,
        timer: MemberTimer,
    },
    Event(Event),
    /// Persist this (fsync'd) before acting on any later output: the metadata version about to
    /// be sent passed the ceiling persisted so far ([`MetaClock`]).
    Persist(ClockState),
}

/// Membership parameters.
#[derive(Debug, Clone)]
pub struct MembershipConfig {
    pub foca: foca::Config,
    /// Upper bound of the local health multiplier.
    pub max_lhm: u32,
    /// How often own metadata and known revocations are re-disseminated (and expired
    /// certificates looked for).
    pub refresh: Duration,
    /// Take part in membership only with nodes that showed a valid realm certificate (default).
    /// `false` only for simulations of failure detection alone, which carry no metadata.
    pub require_cert: bool,
    /// Lifeguard's dynamic suspicion timeout; its upper bound is
    /// [`foca::Config::suspect_to_down_after`].
    pub suspicion: Suspicion,
}

/// How fast confirmed suspicions end (module docs: Lifeguard's dynamic suspicion timeout).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Suspicion {
    /// The timeout once `confirmations` members confirmed the suspicion.
    pub min: Duration,
    /// Confirmations for the shortest timeout (`K`); 0 turns the dynamic timeout off.
    pub confirmations: u32,
}

impl Suspicion {
    /// The suspicion timeout after `c` of `k` expected confirmations, between `min` and `max`.
    pub fn timeout(&self, max: Duration, c: u32, k: u32) -> Duration {
        let min = self.min.min(max);
        if k == 0 || c >= k {
            return if k == 0 { max } else { min };
        }
        let frac = f64::from(c + 1).ln() / f64::from(k + 1).ln();
        max.saturating_sub((max - min).mul_f64(frac)).max(min)
    }
}

impl MembershipConfig {
    /// LAN defaults for an expected cluster size: probe every 1 s, probe timeout 500 ms, 3 indirect
    /// probes, suspicion timeout `4 × max(1, log10 n)` s unconfirmed, down to `max(1, log10 n)` s
    /// after 3 confirmations, gossip to 3 members every 200 ms, packet size fitting one QUIC
    /// datagram.
    pub fn lan(cluster_size: u32) -> Self {
        let mut foca = foca::Config::new_lan(
            std::num::NonZeroU32::new(cluster_size.max(1)).expect("non-zero"),
        );
        foca.max_packet_size = std::num::NonZeroUsize::new(MAX_PACKET).expect("non-zero");
        foca.remove_down_after = Some(Duration::from_secs(600));
        let min = foca.suspect_to_down_after / 4;
        Self {
            foca,
            max_lhm: 8,
            refresh: Duration::from_secs(10),
            require_cert: true,
            suspicion: Suspicion {
                min,
                confirmations: 3,
            },
        }
    }
}

/// A suspicion this node times out: foca's timer that declares the member down, and the
/// members that confirmed the suspicion.
struct Suspected {
    incarnation: foca::Incarnation,
    timer: Timer<MemberId>,
    confirmed: HashSet<NodeId>,
}

/// Members without a certificate whose metadata we ask others for per refresh period.
const PULLS_PER_REFRESH: usize = 16;

/// Members considered down that we announce ourselves to per refresh period.
const HEAL_ANNOUNCES: usize = 2;

/// Largest SWIM packet: fits a QUIC datagram on a 1280-byte path MTU with room for framing.
pub const MAX_PACKET: usize = 1100;

/// The membership state machine of one node.
pub struct Membership {
    foca: Foca<MemberId, PostcardCodec, StdRng, Rumors>,
    rt: AccumulatingRuntime<MemberId>,
    rumors: Arc<Mutex<RumorState>>,
    /// Our incarnation as last seen in a packet we sent.
    incarnation: foca::Incarnation,
    lhm: u32,
    max_lhm: u32,
    refresh: Duration,
    own_meta: Option<SignedMeta>,
    /// Versions of our own metadata.
    clock: MetaClock,
    /// Our own random choices (partition healing).
    rng: StdRng,
    /// (whose metadata, asked whom) in this refresh period.
    asked: HashSet<(NodeId, NodeId)>,
    /// Members that came up without known metadata since the last packet.
    unknown_meta: Vec<NodeId>,
    /// Suspicions we time out ourselves (our probe failed), with who confirmed them.
    suspicions: HashMap<MemberId, Suspected>,
    suspicion: Suspicion,
    /// The unconfirmed suspicion timeout.
    suspect_max: Duration,
    /// Members foca holds as suspect, with the incarnation and the unix second we first saw
    /// them so at a refresh ([`Membership::end_stale_suspicions`]).
    suspect_since: HashMap<MemberId, (foca::Incarnation, u64)>,
    require_cert: bool,
    /// Members foca holds as active whose node showed no certificate yet: reported `Up` once
    /// it does.
    pending_up: HashSet<MemberId>,
    out: Vec<Output>,
}

impl Membership {
    /// `seed` feeds foca's random choices (fixed in simulations, random in the daemon).
    /// `own_meta` is published at once (simulations of pure failure detection may omit it).
    /// `now`: unix seconds.
    pub fn new(
        id: MemberId,
        realm: RealmId,
        own_meta: Option<SignedMeta>,
        config: MembershipConfig,
        seed: u64,
        now: u64,
    ) -> Self {
        let rumors = Arc::new(Mutex::new(RumorState {
            realm,
            now,
            metas: HashMap::new(),
            revoked: HashSet::new(),
            revocations: Vec::new(),
            admitted: HashMap::new(),
            expelled: HashSet::new(),
            events: Vec::new(),
        }));
        let suspect_max = config.foca.suspect_to_down_after;
        let foca = Foca::with_custom_broadcast(
            id,
            config.foca,
            StdRng::seed_from_u64(seed),
            PostcardCodec,
            Rumors(rumors.clone()),
        );
        let mut m = Self {
            foca,
            rt: AccumulatingRuntime::new(),
            rumors,
            incarnation: 0,
            lhm: 0,
            max_lhm: config.max_lhm,
            refresh: config.refresh,
            own_meta: None,
            clock: MetaClock::volatile(0),
            asked: HashSet::new(),
            unknown_meta: Vec::new(),
            suspicions: HashMap::new(),
            suspicion: config.suspicion,
            suspect_max,
            suspect_since: HashMap::new(),
            require_cert: config.require_cert,
            pending_up: HashSet::new(),
            rng: StdRng::seed_from_u64(seed ^ 0x6865_616c),
            out: vec![Output::Schedule {
                after: config.refresh,
                timer: MemberTimer::Refresh,
            }],
        };
        if let Some(meta) = own_meta {
            m.set_meta(meta);
        }
        m
    }

    /// Adds members known from elsewhere (a previous run, a peer's state) as alive, without
    /// broadcasting them.
    pub fn seed_members(&mut self, ids: impl IntoIterator<Item = MemberId>) {
        if let Err(e) =
            self.foca
                .apply_many(ids.into_iter().map(Member::alive), false, &mut self.rt)
        {
            tracing::debug!("seeding members: {e}");
        }
        self.collect();
    }

    /// Our view of `node`: its identity and state, if known and admitted (now or before).
    pub fn state_of(&self, node: &NodeId) -> Option<(MemberId, State)> {
        if self.require_cert && !self.rumors.locked().listed(node) {
            return None;
        }
        self.foca
            .iter_membership_state()
            .filter(|m| m.id().node == *node)
            .max_by_key(|m| m.id().generation)
            .map(|m| (*m.id(), m.state()))
    }

    pub fn id(&self) -> MemberId {
        *self.foca.identity()
    }

    /// Local health multiplier (Lifeguard), 0 = healthy.
    pub fn local_health(&self) -> u32 {
        self.lhm
    }

    /// Admits the node of `cert` to membership: the shell calls this for every peer whose Hello
    /// it admitted, before feeding its packets. The certificate is checked here as well (realm,
    /// validity at `now`, revocation of the node and its issuing hub). Other nodes are admitted
    /// by metadata carrying a valid certificate.
    pub fn admit(&mut self, cert: &MembershipCert, now: u64) -> Result<(), MembershipError> {
        let node = cert.body.node;
        let res = {
            let mut st = self.rumors.locked();
            st.now = now;
            let realm = st.realm;
            cert.verify(&realm, now)
                .map_err(|e| MembershipError::NotAdmitted(node, e))
                .and_then(|()| st.admit(cert))
        };
        self.collect();
        res
    }

    /// Whether members must show a realm certificate ([`MembershipConfig::require_cert`]).
    pub fn requires_cert(&self) -> bool {
        self.require_cert
    }

    /// Whether `node` showed a valid certificate and is still a member by it.
    pub fn is_admitted(&self, node: &NodeId) -> bool {
        self.rumors.locked().admitted.contains_key(node)
    }

    fn admitted_or_open(&self, node: &NodeId) -> bool {
        !self.require_cert || self.is_admitted(node)
    }

    /// Announces ourselves to a known member (bootstrap). The generation of `peer` does not
    /// matter for an announce.
    pub fn join(&mut self, peer: NodeId) {
        let dst = MemberId {
            node: peer,
            generation: 0,
        };
        if let Err(e) = self.foca.announce(dst, &mut self.rt) {
            tracing::debug!("announce to {peer} failed: {e}");
        }
        self.collect();
    }

    /// Versions our metadata from `clock` (resumed from persisted state) from now on, instead
    /// of a clock that persists nothing.
    pub fn set_clock(&mut self, clock: MetaClock) {
        self.clock = clock;
    }

    /// Publishes new metadata about ourselves.
    pub fn set_meta(&mut self, meta: SignedMeta) {
        self.own_meta = Some(meta.clone());
        self.add_rumor(&Rumor::Meta(Box::new(meta)));
        self.collect();
    }

    /// Our own metadata as last published.
    pub fn own_meta(&self) -> Option<&SignedMeta> {
        self.own_meta.as_ref()
    }

    /// Changes our own metadata at run time: applies `change`, signs the result with `key` (this
    /// node's key) under a higher version — `now_ms` (Unix milliseconds), or one more than the
    /// current version when the clock is not ahead of it, so two updates within one millisecond
    /// (or after the clock stepped back) still supersede each other — and disseminates it;
    /// members keep the highest version. When the version passes the persisted ceiling of the
    /// [`MetaClock`], an [`Output::Persist`] comes before the outputs that carry it. Returns the
    /// new version; `None` (nothing sent) without own metadata or when `change` left the
    /// metadata as it was.
    pub fn update_meta(
        &mut self,
        key: &NodeKey,
        now_ms: u64,
        change: impl FnOnce(&mut MemberMeta),
    ) -> Option<u64> {
        let own = self.own_meta.as_ref()?;
        let (old, cert) = (&own.meta, own.cert.clone());
        let mut meta = old.clone();
        change(&mut meta);
        meta.node = old.node;
        meta.version = old.version;
        if meta == *old {
            return None;
        }
        let (version, persist) = self.clock.next(now_ms, old.version.saturating_add(1));
        meta.version = version;
        if let Some(state) = persist {
            self.out.push(Output::Persist(state));
        }
        self.set_meta(SignedMeta::sign(key, cert, meta));
        Some(version)
    }

    /// Re-signs own metadata with a renewed certificate (checked by the caller) under a higher
    /// version and disseminates it: members extend this node's admission to its new expiry.
    /// Returns the new version; `None` without own metadata.
    pub fn set_cert(&mut self, key: &NodeKey, now_ms: u64, cert: MembershipCert) -> Option<u64> {
        let own = self.own_meta.as_ref()?;
        let mut meta = own.meta.clone();
        let (version, persist) = self.clock.next(now_ms, own.meta.version.saturating_add(1));
        meta.version = version;
        if let Some(state) = persist {
            self.out.push(Output::Persist(state));
        }
        self.set_meta(SignedMeta::sign(key, cert, meta));
        Some(version)
    }

    fn add_rumor(&mut self, rumor: &Rumor) {
        if let Err(e) = self.foca.add_broadcast(&wire::encode(rumor)) {
            tracing::warn!("cannot disseminate {rumor:?}: {e}");
        }
    }

    /// Spreads a revocation (verified against the realm) and declares the node down.
    pub fn revoke(&mut self, rev: Revocation) -> Result<(), MembershipError> {
        let data = wire::encode(&Rumor::Revocation(rev));
        self.foca.add_broadcast(&data)?;
        self.collect();
        Ok(())
    }

    /// Feeds a SWIM packet received from the authenticated node `from` at `now` (unix
    /// seconds). Packets of nodes not admitted ([`Membership::admit`]) are refused.
    pub fn handle_packet(
        &mut self,
        from: NodeId,
        packet: &[u8],
        now: u64,
    ) -> Result<(), MembershipError> {
        if self.is_revoked(&from) {
            return Ok(());
        }
        self.rumors.locked().now = now;
        if !self.admitted_or_open(&from) {
            return Err(MembershipError::Unadmitted(from));
        }
        let packet: Packet = wire::decode_with_limit(packet, MAX_PACKET + 64)
            .map_err(|e| MembershipError::Decode(e.to_string()))?;
        match packet {
            Packet::Swim(data) => self.handle_swim(from, &data),
            Packet::WantMeta(node) => {
                let meta = if node == self.foca.identity().node {
                    self.own_meta.clone()
                } else {
                    self.meta(&node)
                };
                if let Some(meta) = meta {
                    self.send(from, &Packet::Meta(Box::new(meta)));
                }
                Ok(())
            }
            Packet::Meta(m) => {
                let res = self.rumors.locked().accept_meta(*m);
                self.collect();
                res.map(drop)
            }
        }
    }

    /// Queues `packet` for `to`; nothing goes to a node that showed no certificate (so gossip
    /// about made-up members cannot point our traffic at anyone).
    fn send(&mut self, to: NodeId, packet: &Packet) {
        if !self.admitted_or_open(&to) {
            return;
        }
        self.out.push(Output::Send {
            to,
            data: wire::encode(packet),
        });
    }

    fn handle_swim(&mut self, from: NodeId, data: &[u8]) -> Result<(), MembershipError> {
        let header = <PostcardCodec as Codec<MemberId>>::decode_header(&mut PostcardCodec, data)
            .map_err(|e| MembershipError::Decode(e.to_string()))?;
        if header.src.node != from {
            return Err(MembershipError::Spoofed {
                claimed: header.src.node,
                actual: from,
            });
        }
        self.confirm_suspicions(from, data);
        let res = self.foca.handle_data(data, &mut self.rt);
        self.collect();
        // Pull metadata we lack (once per refresh period per node): the sender's own, and that
        // of members the sender just told us about (it knows them, so it likely has it).
        if self.own_meta.is_some() {
            let mut wanted = std::mem::take(&mut self.unknown_meta);
            wanted.push(from);
            for node in wanted {
                if self.meta(&node).is_none() && self.asked.insert((node, from)) {
                    self.send(from, &Packet::WantMeta(node));
                }
            }
        }
        res.map_err(Into::into)
    }

    /// Counts `from` as a confirmation of each suspicion we time out that the SWIM packet `data`
    /// carries (same member, same incarnation).
    fn confirm_suspicions(&mut self, from: NodeId, data: &[u8]) {
        if self.suspicions.is_empty() {
            return;
        }
        let mut rest = data;
        let Ok(header) =
            <PostcardCodec as Codec<MemberId>>::decode_header(&mut PostcardCodec, &mut rest)
        else {
            return;
        };
        if header.message == Message::Broadcast || rest.len() < 2 {
            return;
        }
        let count = u16::from_be_bytes([rest[0], rest[1]]);
        rest = &rest[2..];
        for _ in 0..count {
            let Ok(m) =
                <PostcardCodec as Codec<MemberId>>::decode_member(&mut PostcardCodec, &mut rest)
            else {
                return;
            };
            if m.state() != State::Suspect || m.id().node == from {
                continue;
            }
            if let Some(s) = self.suspicions.get_mut(m.id())
                && s.incarnation == m.incarnation()
            {
                s.confirmed.insert(from);
            }
        }
    }

    /// Confirmations needed for the shortest suspicion timeout: [`Suspicion::confirmations`], at
    /// most the active members other than the suspect.
    fn expected_confirmations(&self) -> u32 {
        let others = u32::try_from(self.foca.num_members().saturating_sub(1)).unwrap_or(u32::MAX);
        self.suspicion.confirmations.min(others)
    }

    /// Handles a timer scheduled by an earlier [`Output::Schedule`], at `now` (unix seconds).
    pub fn handle_timer(&mut self, timer: MemberTimer, now: u64) {
        self.rumors.locked().now = now;
        match timer {
            MemberTimer::Swim(t) => {
                if let Timer::ChangeSuspectToDown {
                    member_id,
                    incarnation,
                    ..
                } = &t
                    && self
                        .suspicions
                        .get(member_id)
                        .is_some_and(|s| s.incarnation == *incarnation)
                {
                    self.suspicions.remove(member_id);
                }
                if let Err(e) = self.foca.handle_timer(t, &mut self.rt) {
                    tracing::debug!("SWIM timer: {e}");
                }
            }
            MemberTimer::Suspicion {
                member,
                incarnation,
                confirmations,
            } => {
                let due = self.suspicions.get(&member).is_some_and(|s| {
                    s.incarnation == incarnation && s.confirmed.len() >= confirmations as usize
                });
                if due && let Some(s) = self.suspicions.remove(&member) {
                    tracing::debug!(
                        "{} down after {} confirmations of its suspicion",
                        member.node,
                        s.confirmed.len()
                    );
                    if let Err(e) = self.foca.handle_timer(s.timer, &mut self.rt) {
                        tracing::debug!("SWIM suspicion timer: {e}");
                    }
                }
            }
            MemberTimer::Refresh => {
                self.asked.clear();
                self.expel_expired(now);
                self.pull_missing_certs();
                self.end_stale_suspicions(now);
                self.announce_to_down();
                if let Some(meta) = self.own_meta.clone() {
                    self.add_rumor(&Rumor::Meta(Box::new(meta)));
                }
                let revocations = self.rumors.locked().revocations.clone();
                for r in revocations {
                    self.add_rumor(&Rumor::Revocation(r));
                }
                self.out.push(Output::Schedule {
                    after: self.refresh,
                    timer: MemberTimer::Refresh,
                });
            }
        }
        self.collect();
    }

    /// Leaves the cluster gracefully (members learn it at once instead of suspecting us).
    pub fn leave(&mut self) {
        if let Err(e) = self.foca.leave_cluster(&mut self.rt) {
            tracing::debug!("leave: {e}");
        }
        self.collect();
    }

    /// Takes the pending outputs.
    pub fn drain(&mut self) -> std::vec::Drain<'_, Output> {
        self.out.drain(..)
    }

    /// Known members other than us (active and down ones not yet forgotten) that showed a
    /// valid certificate; expelled ones (revoked, certificate expired) stay listed, as down.
    pub fn members(&self) -> impl Iterator<Item = (MemberId, State)> + '_ {
        let admitted: Option<HashSet<NodeId>> = self.require_cert.then(|| {
            let st = self.rumors.locked();
            st.admitted
                .keys()
                .chain(st.expelled.iter())
                .copied()
                .collect()
        });
        self.foca
            .iter_membership_state()
            .filter(move |m| admitted.as_ref().is_none_or(|a| a.contains(&m.id().node)))
            .map(|m| (*m.id(), m.state()))
    }

    pub fn num_active(&self) -> usize {
        self.foca.num_members()
    }

    /// The version of the newest verified metadata of `node`.
    pub fn meta_version(&self, node: &NodeId) -> Option<u64> {
        self.rumors.locked().metas.get(node).map(|s| s.meta.version)
    }

    /// The newest verified metadata of `node`.
    pub fn meta(&self, node: &NodeId) -> Option<SignedMeta> {
        self.rumors.locked().metas.get(node).cloned()
    }

    pub fn is_revoked(&self, node: &NodeId) -> bool {
        self.rumors.locked().revoked.contains(node)
    }

    /// Ends suspicions foca no longer times out. Foca drops every timer it scheduled when our
    /// own identity changes (we were declared down and rejoined, or went idle), its
    /// suspect-to-down timers included: a member suspected before that stays suspect until it
    /// refutes, which it does only if the suspicion still reaches it — after a short partition
    /// it may not, and the member stays suspect for good (seen: more than a minute after a 4 s
    /// cut healed). A suspicion seen at refreshes the unconfirmed timeout apart is ended here
    /// as the timer would have: the member is declared down (alive, it rejoins under
    /// a new generation, as after any false suspicion). `now`: unix seconds.
    fn end_stale_suspicions(&mut self, now: u64) {
        let suspects: Vec<(MemberId, foca::Incarnation)> = self
            .foca
            .iter_membership_state()
            .filter(|m| m.state() == State::Suspect)
            .map(|m| (*m.id(), m.incarnation()))
            .collect();
        let mut since = std::mem::take(&mut self.suspect_since);
        since.retain(|id, (inc, _)| suspects.contains(&(*id, *inc)));
        // Seen at two refreshes at least `suspect_max` apart: foca's own timer, if it still
        // counted, would have fired by then.
        let limit = self.suspect_max.as_secs().max(1);
        let mut stale = Vec::new();
        for (id, inc) in suspects {
            let (_, first) = *since.entry(id).or_insert((inc, now));
            if now.saturating_sub(first) >= limit {
                since.remove(&id);
                self.suspicions.remove(&id);
                stale.push(Member::new(id, inc, State::Down));
            }
        }
        self.suspect_since = since;
        for m in &stale {
            tracing::debug!(
                "{} suspect for {limit} s or more: declared down",
                m.id().node
            );
        }
        if !stale.is_empty()
            && let Err(e) = self.foca.apply_many(stale.into_iter(), true, &mut self.rt)
        {
            tracing::debug!("ending stale suspicions: {e}");
        }
    }

    /// Partition healing: announce ourselves to a few members we consider down. A member that is
    /// in fact alive on the other side of a healed partition answers with its member list (or
    /// tells us to renew our identity), and the two sides merge again.
    fn announce_to_down(&mut self) {
        let revoked = self.rumors.locked().revoked.clone();
        let mut down: Vec<NodeId> = self
            .foca
            .iter_membership_state()
            .filter(|m| m.state() == State::Down && !revoked.contains(&m.id().node))
            .map(|m| m.id().node)
            .filter(|n| *n != self.foca.identity().node)
            .collect();
        down.sort();
        down.dedup();
        for _ in 0..HEAL_ANNOUNCES.min(down.len()) {
            let i = self.rng.random_range(0..down.len());
            let node = down.swap_remove(i);
            let dst = MemberId {
                node,
                generation: 0,
            };
            if let Err(e) = self.foca.announce(dst, &mut self.rt) {
                tracing::debug!("heal announce to {node}: {e}");
            }
        }
    }

    /// Expels members whose certificate expired by `now` (unix seconds): declared down,
    /// reported as [`Event::Expelled`]. Runs at every refresh; the shell also calls it when a
    /// peer's certificate runs out, so the cut is not up to a refresh period late.
    pub fn expel_expired(&mut self, now: u64) {
        let expired = {
            let mut st = self.rumors.locked();
            st.now = st.now.max(now);
            st.expel_invalid()
        };
        self.expel(expired);
        self.collect();
    }

    /// Asks admitted members for the metadata (with certificate) of members that gossip
    /// reports but that showed none yet: we send nothing to those ourselves, so without this a
    /// member that missed the rumor would never admit them. At most [`PULLS_PER_REFRESH`] nodes,
    /// each from two random members.
    fn pull_missing_certs(&mut self) {
        if self.own_meta.is_none() || self.pending_up.is_empty() {
            return;
        }
        let mut missing: Vec<NodeId> = self.pending_up.iter().map(|m| m.node).collect();
        missing.sort();
        missing.dedup();
        let me = self.foca.identity().node;
        let mut asked: Vec<NodeId> = self
            .members()
            .filter(|(m, s)| *s != State::Down && m.node != me)
            .map(|(m, _)| m.node)
            .collect();
        asked.sort();
        asked.dedup();
        if asked.is_empty() {
            return;
        }
        for _ in 0..PULLS_PER_REFRESH.min(missing.len()) {
            let node = missing.swap_remove(self.rng.random_range(0..missing.len()));
            for _ in 0..2 {
                let to = asked[self.rng.random_range(0..asked.len())];
                if self.asked.insert((node, to)) {
                    self.send(to, &Packet::WantMeta(node));
                }
            }
        }
    }

    /// Declares `nodes` (expelled: certificate expired, issuing hub revoked) down and reports
    /// them.
    fn expel(&mut self, nodes: Vec<NodeId>) {
        if nodes.is_empty() {
            return;
        }
        self.declare_down(&nodes);
        for n in nodes {
            self.out.push(Output::Event(Event::Expelled(n)));
        }
    }

    fn declare_down(&mut self, nodes: &[NodeId]) {
        let victims: Vec<Member<MemberId>> = self
            .foca
            .iter_membership_state()
            .filter(|m| nodes.contains(&m.id().node) && m.state() != State::Down)
            .map(|m| Member::new(*m.id(), m.incarnation(), State::Down))
            .collect();
        if let Err(e) = self
            .foca
            .apply_many(victims.into_iter(), true, &mut self.rt)
        {
            tracing::debug!("declaring members down: {e}");
        }
    }

    /// Starts timing out the suspicion of `member` at `incarnation` that foca's `timer` ends
    /// after the unconfirmed timeout: one [`MemberTimer::Suspicion`] per number of confirmations
    /// that shortens it.
    fn suspect(
        &mut self,
        member: MemberId,
        incarnation: foca::Incarnation,
        timer: &Timer<MemberId>,
    ) {
        let k = self.expected_confirmations();
        let old = self.suspicions.insert(
            member,
            Suspected {
                incarnation,
                timer: timer.clone(),
                confirmed: HashSet::new(),
            },
        );
        // A repeated failed probe of the same suspicion keeps the confirmations gathered.
        if let Some(old) = old
            && old.incarnation == incarnation
            && let Some(s) = self.suspicions.get_mut(&member)
        {
            s.confirmed = old.confirmed;
        }
        for c in 1..=k {
            self.out.push(Output::Schedule {
                after: self.suspicion.timeout(self.suspect_max, c, k),
                timer: MemberTimer::Suspicion {
                    member,
                    incarnation,
                    confirmations: c,
                },
            });
        }
    }

    fn raise_lhm(&mut self) {
        self.lhm = (self.lhm + 1).min(self.max_lhm);
    }

    fn collect(&mut self) {
        while let Some((to, data)) = self.rt.to_send() {
            self.send(to.node, &Packet::Swim(data.to_vec()));
        }
        while let Some((after, timer)) = self.rt.to_schedule() {
            let after = match &timer {
                Timer::ProbeRandomMember(_) | Timer::SendIndirectProbe { .. } => {
                    after * (1 + self.lhm)
                }
                Timer::ChangeSuspectToDown {
                    member_id,
                    incarnation,
                    ..
                } => {
                    self.suspect(*member_id, *incarnation, &timer);
                    after
                }
                _ => after,
            };
            self.out.push(Output::Schedule {
                after,
                timer: MemberTimer::Swim(timer),
            });
        }
        let mut down = Vec::new();
        while let Some(n) = self.rt.to_notify() {
            let ev = match n {
                OwnedNotification::MemberUp(m) => {
                    if self.own_meta.is_some() && self.meta(&m.node).is_none() {
                        self.unknown_meta.push(m.node);
                    }
                    if !self.admitted_or_open(&m.node) {
                        self.pending_up.insert(m);
                        continue;
                    }
                    Event::Up(m)
                }
                OwnedNotification::MemberDown(m) => {
                    // Never reported up: nothing to report.
                    if self.pending_up.remove(&m) {
                        continue;
                    }
                    Event::Down(m)
                }
                OwnedNotification::Rename(old, new) => {
                    if self.pending_up.remove(&old) || !self.admitted_or_open(&new.node) {
                        self.pending_up.insert(new);
                        continue;
                    }
                    Event::Renamed { old, new }
                }
                OwnedNotification::Active => Event::Active,
                OwnedNotification::Idle => Event::Idle,
                OwnedNotification::Rejoin(m) => Event::Rejoined(m),
                OwnedNotification::Defunct => continue,
                OwnedNotification::ProbeFailed(..) => {
                    self.raise_lhm();
                    continue;
                }
                OwnedNotification::DataReceived(h) => {
                    if matches!(h.message, Message::Ack(_)) {
                        self.lhm = self.lhm.saturating_sub(1);
                    }
                    continue;
                }
                OwnedNotification::DataSent(h) => {
                    if h.src_incarnation > self.incarnation {
                        // We refuted a suspicion about ourselves: likely we are the slow one.
                        self.incarnation = h.src_incarnation;
                        self.raise_lhm();
                    }
                    continue;
                }
            };
            self.out.push(Output::Event(ev));
        }
        let rumor_events = std::mem::take(&mut self.rumors.locked().events);
        let mut expelled = Vec::new();
        for ev in rumor_events {
            match &ev {
                Event::Revoked(r) => {
                    down.push(r.body.node);
                    // Members admitted by certificates of a revoked hub go with it.
                    expelled.extend(self.rumors.locked().expel_invalid());
                }
                Event::Admitted(node) => {
                    let node = *node;
                    self.out.push(Output::Event(ev));
                    let ups: Vec<MemberId> = self
                        .pending_up
                        .iter()
                        .filter(|m| m.node == node)
                        .copied()
                        .collect();
                    for m in ups {
                        self.pending_up.remove(&m);
                        let active = self
                            .foca
                            .iter_membership_state()
                            .any(|x| *x.id() == m && x.state() != State::Down);
                        if active {
                            self.out.push(Output::Event(Event::Up(m)));
                        }
                    }
                    continue;
                }
                _ => {}
            }
            self.out.push(Output::Event(ev));
        }
        if !down.is_empty() || !expelled.is_empty() {
            self.declare_down(&down);
            self.expel(expelled);
            self.collect();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suspicion_timeout_shrinks_with_confirmations() {
        let s = Suspicion {
            min: Duration::from_secs(1),
            confirmations: 3,
        };
        let max = Duration::from_secs(4);
        let t: Vec<Duration> = (0..=4).map(|c| s.timeout(max, c, 3)).collect();
        assert_eq!(t[0], max);
        assert!(t[0] > t[1] && t[1] > t[2] && t[2] > t[3], "{t:?}");
        assert_eq!(t[3], s.min);
        assert_eq!(t[4], s.min);
        // ln 2 / ln 4 = 1/2: halfway after one of three confirmations.
        assert_eq!(t[1], Duration::from_millis(2500));
        // Nobody to confirm: the full timeout.
        assert_eq!(s.timeout(max, 0, 0), max);
        let lan = MembershipConfig::lan(64);
        assert_eq!(lan.suspicion.min * 4, lan.foca.suspect_to_down_after);
    }

    #[test]
    fn newer_generation_wins() {
        let node = NodeKey::from_seed([1; 32]).node_id();
        let a = MemberId {
            node,
            generation: 1,
        };
        let b = a.renew().unwrap();
        assert!(b.win_addr_conflict(&a));
        assert!(!a.win_addr_conflict(&b));
        assert_eq!(a.addr(), b.addr());
    }

    #[test]
    fn meta_signature_and_bounds() {
        let key = NodeKey::from_seed([2; 32]);
        let meta = MemberMeta {
            node: key.node_id(),
            version: 1,
            role: Role::Edge,
            name: "n".into(),
            addrs: vec![],
            overlay_key: None,
            capacity: Capacity::default(),
            domains: FailureDomains::default(),
            software: "0.1".into(),
            relays: vec![],
        };
        let rk = RealmKey::from_seed([7; 32]);
        let cert = cert_for(&rk, key.node_id(), Role::Edge, "n", u64::MAX);
        let signed = SignedMeta::sign(&key, cert.clone(), meta.clone());
        signed.verify(&rk.id(), NOW).unwrap();
        let mut forged = signed.clone();
        forged.meta.version = 2;
        assert!(forged.verify(&rk.id(), NOW).is_err());
        let mut big = SignedMeta::sign(&key, cert, meta);
        big.meta.software = "x".repeat(MAX_META_TEXT + 1);
        big.sig = realm::sign_meta(&key, &big.meta);
        assert!(matches!(
            big.verify(&rk.id(), NOW),
            Err(MembershipError::MetaTooLarge(_))
        ));
    }

    #[test]
    fn labels_are_checked_when_made_and_when_decoded() {
        for good in [
            "default",
            "attic",
            "ups-1",
            "rack.2",
            "a_b",
            "9",
            &"x".repeat(64),
        ] {
            assert_eq!(Label::new(good).unwrap().as_str(), good);
        }
        for bad in [
            "",
            "Attic",
            "two words",
            "-lead",
            ".x",
            "é",
            "a/b",
            &"x".repeat(65),
        ] {
            let e = Label::new(bad).unwrap_err();
            assert!(e.to_string().contains("a-z, 0-9"), "{e}");
        }
        assert_eq!(Label::default().as_str(), Label::DEFAULT);
        // On the wire a label is a plain string; a bad one does not decode.
        let good = wire::encode(&Label::new("attic").unwrap());
        assert_eq!(good, wire::encode(&"attic".to_string()));
        assert!(wire::decode::<Label>(&wire::encode(&"Attic".to_string())).is_err());
        assert!(wire::decode::<Label>(&wire::encode(&String::new())).is_err());
    }

    use crate::realm::{CertBody, RealmKey};

    /// Unix seconds of the tests.
    const NOW: u64 = 1_750_000_000;

    fn cert_for(
        rk: &RealmKey,
        node: NodeId,
        role: Role,
        name: &str,
        expires: u64,
    ) -> MembershipCert {
        rk.issue(CertBody {
            realm: rk.id(),
            node,
            role,
            name: name.into(),
            not_before: 0,
            expires,
        })
    }

    fn member(seed: u8) -> (NodeKey, Membership) {
        let key = NodeKey::from_seed([seed; 32]);
        let rk = RealmKey::from_seed([7; 32]);
        let meta = SignedMeta::sign(
            &key,
            cert_for(&rk, key.node_id(), Role::Edge, "n", u64::MAX),
            MemberMeta {
                node: key.node_id(),
                version: 1000,
                role: Role::Edge,
                name: "n".into(),
                addrs: vec![],
                overlay_key: None,
                capacity: Capacity {
                    storage_total: 100,
                    storage_free: 100,
                },
                domains: FailureDomains::default(),
                software: "0.1".into(),
                relays: vec![],
            },
        );
        let id = MemberId {
            node: key.node_id(),
            generation: 1,
        };
        let m = Membership::new(id, rk.id(), Some(meta), MembershipConfig::lan(4), 1, NOW);
        (key, m)
    }

    #[test]
    fn own_updates_get_strictly_higher_versions_and_are_signed() {
        let (key, mut m) = member(3);
        let me = key.node_id();
        let set_free = |free| {
            move |meta: &mut MemberMeta| {
                meta.capacity.storage_free = free;
                // Neither the node nor the version can be changed through `change`.
                meta.node = NodeKey::from_seed([4; 32]).node_id();
                meta.version = 1;
            }
        };
        // The clock is ahead: its value is the version.
        assert_eq!(m.update_meta(&key, 5000, set_free(90)), Some(5000));
        // Two updates in the same millisecond, then a clock that stepped back: still increasing.
        assert_eq!(m.update_meta(&key, 5000, set_free(80)), Some(5001));
        assert_eq!(m.update_meta(&key, 10, set_free(70)), Some(5002));
        // No change, nothing sent.
        assert_eq!(m.update_meta(&key, 6000, set_free(70)), None);
        let own = m.own_meta().unwrap().clone();
        own.verify(&RealmKey::from_seed([7; 32]).id(), NOW).unwrap();
        assert_eq!(own.meta.node, me);
        assert_eq!(
            (own.meta.version, own.meta.capacity.storage_free),
            (5002, 70)
        );
        // Our own view (the rumor state) holds the newest too, reported as events in order.
        assert_eq!(m.meta(&me).unwrap(), own);
        let frees: Vec<u64> = m
            .drain()
            .filter_map(|o| match o {
                Output::Event(Event::Meta(sm)) => Some(sm.meta.capacity.storage_free),
                _ => None,
            })
            .collect();
        assert_eq!(frees, [100, 90, 80, 70]);
        // Without own metadata there is nothing to update.
        let mut bare = Membership::new(
            MemberId {
                node: me,
                generation: 1,
            },
            crate::realm::RealmKey::from_seed([7; 32]).id(),
            None,
            MembershipConfig::lan(4),
            1,
            NOW,
        );
        assert_eq!(bare.update_meta(&key, 1, set_free(1)), None);
    }

    #[test]
    fn a_member_keeps_the_newest_metadata_of_another() {
        let (key, mut a) = member(3);
        let (_, mut b) = member(5);
        a.update_meta(&key, 2000, |m| m.capacity.storage_free = 50);
        let newer = a.own_meta().unwrap().clone();
        a.update_meta(&key, 3000, |m| m.capacity.storage_free = 40);
        let newest = a.own_meta().unwrap().clone();
        let (_, admitted) = member(3);
        let a_cert = admitted.own_meta().unwrap().cert.clone();
        b.admit(&a_cert, NOW).unwrap();
        let send = |b: &mut Membership, sm: &SignedMeta| {
            b.handle_packet(
                key.node_id(),
                &wire::encode(&Packet::Meta(Box::new(sm.clone()))),
                NOW,
            )
        };
        send(&mut b, &newest).unwrap();
        send(&mut b, &newer).unwrap();
        assert_eq!(
            b.meta(&key.node_id()).unwrap(),
            newest,
            "an older version never wins"
        );
        // A forged update (signed by someone else) is refused.
        let mut forged = newest.clone();
        forged.meta.version += 1;
        forged.meta.capacity.storage_free = 0;
        assert!(matches!(
            send(&mut b, &forged),
            Err(MembershipError::BadMetaSignature(_))
        ));
        assert_eq!(b.meta(&key.node_id()).unwrap(), newest);
    }

    /// Delivers packets between `nodes` until none is left (no timers); returns the events of
    /// node 0 and the nodes it sent anything to.
    fn pump(nodes: &mut [(NodeId, &mut Membership)]) -> (Vec<Event>, Vec<NodeId>) {
        let (mut events, mut sent_to) = (Vec::new(), Vec::new());
        for _ in 0..100 {
            let mut packets = Vec::new();
            for (i, (id, m)) in nodes.iter_mut().enumerate() {
                for out in m.drain() {
                    match out {
                        Output::Send { to, data } => {
                            if i == 0 {
                                sent_to.push(to);
                            }
                            packets.push((*id, to, data));
                        }
                        Output::Event(e) if i == 0 => events.push(e),
                        _ => {}
                    }
                }
            }
            if packets.is_empty() {
                break;
            }
            for (from, to, data) in packets {
                if let Some((_, m)) = nodes.iter_mut().find(|(id, _)| *id == to) {
                    let _ = m.handle_packet(from, &data, NOW);
                }
            }
        }
        (events, sent_to)
    }

    #[test]
    fn a_member_cannot_bring_in_identities_without_a_certificate_nor_claim_another_role() {
        let rk = RealmKey::from_seed([7; 32]);
        let (hk, mut honest) = member(3);
        let (mk, mut rogue) = member(5);
        let (h, r) = (hk.node_id(), mk.node_id());
        // A made-up member with no certificate, and one with a valid certificate that shows it
        // only later (in its metadata).
        let fake = NodeKey::from_seed([9; 32]);
        let late = NodeKey::from_seed([10; 32]);
        let gen1 = |k: &NodeKey| MemberId {
            node: k.node_id(),
            generation: 1,
        };
        // The misbehaving member gossips both as alive members.
        rogue.seed_members([gen1(&fake), gen1(&late)]);
        // Both Hellos were admitted.
        honest
            .admit(&rogue.own_meta().unwrap().cert.clone(), NOW)
            .unwrap();
        rogue
            .admit(&honest.own_meta().unwrap().cert.clone(), NOW)
            .unwrap();
        // The honest node joins through the misbehaving member, which answers with its list.
        honest.join(r);
        let (events, sent_to) = pump(&mut [(h, &mut honest), (r, &mut rogue)]);
        // The gossip arrived: the honest node's SWIM layer holds both identities...
        for k in [&fake, &late] {
            assert!(
                honest
                    .foca
                    .iter_membership_state()
                    .any(|m| m.id().node == k.node_id()),
                "the rogue's gossip did not arrive"
            );
        }
        // ...but neither is a member: no Up, not listed, no packet sent to them.
        assert!(events.contains(&Event::Up(rogue.id())), "{events:?}");
        for k in [&fake, &late] {
            let n = k.node_id();
            assert!(
                !events
                    .iter()
                    .any(|e| matches!(e, Event::Up(m) if m.node == n))
            );
            assert!(honest.members().all(|(m, _)| m.node != n));
            assert!(honest.state_of(&n).is_none());
            assert!(!sent_to.contains(&n), "traffic pointed at {n}");
        }
        assert!(honest.members().any(|(m, _)| m.node == r));

        let meta = |k: &NodeKey, cert: MembershipCert| {
            SignedMeta::sign(
                k,
                cert,
                MemberMeta {
                    node: k.node_id(),
                    version: 1,
                    role: Role::Edge,
                    name: String::new(),
                    addrs: vec![UplinkAddr {
                        uplink: "eth0".into(),
                        addr: "192.0.2.9:4433".parse().unwrap(),
                    }],
                    overlay_key: None,
                    capacity: Capacity {
                        storage_total: u64::MAX,
                        storage_free: u64::MAX,
                    },
                    domains: FailureDomains::default(),
                    software: "x".into(),
                    relays: vec![],
                },
            )
        };
        let deliver = |m: &mut Membership, sm: SignedMeta| {
            m.handle_packet(r, &wire::encode(&Packet::Meta(Box::new(sm))), NOW)
        };
        // Metadata of the made-up member with a certificate it issued itself (claiming our
        // realm, role hub), one from the realm that expired, and one for another node: refused.
        let other = RealmKey::from_seed([8; 32]);
        let mut self_issued = cert_for(&other, fake.node_id(), Role::Hub, "hub", u64::MAX);
        self_issued.body.realm = rk.id();
        let expired = cert_for(&rk, fake.node_id(), Role::Edge, "f", NOW);
        let not_his = cert_for(&rk, r, Role::Edge, "n", u64::MAX);
        for cert in [self_issued, expired, not_his] {
            let e = deliver(&mut honest, meta(&fake, cert)).unwrap_err();
            assert!(
                matches!(
                    e,
                    MembershipError::NotAdmitted(..) | MembershipError::CertMismatch(_)
                ),
                "{e}"
            );
        }
        assert!(honest.meta(&fake.node_id()).is_none());
        assert!(!honest.is_admitted(&fake.node_id()));
        // The member claims to be a hub (its certificate says edge), properly signed: refused.
        let mut hub = rogue.own_meta().unwrap().clone();
        hub.meta.role = Role::Hub;
        hub.meta.version += 1;
        hub.sig = realm::sign_meta(&mk, &hub.meta);
        assert!(matches!(
            deliver(&mut honest, hub),
            Err(MembershipError::CertMismatch(_))
        ));
        assert_eq!(honest.meta(&r).unwrap().meta.role, Role::Edge);
        // A valid certificate admits the late member; its pending Up is reported then.
        let cert = cert_for(&rk, late.node_id(), Role::Edge, "late", u64::MAX);
        deliver(&mut honest, meta(&late, cert)).unwrap();
        let events: Vec<Event> = honest
            .drain()
            .filter_map(|o| match o {
                Output::Event(e) => Some(e),
                _ => None,
            })
            .collect();
        assert!(events.contains(&Event::Up(gen1(&late))), "{events:?}");
        assert!(honest.members().any(|(m, _)| m.node == late.node_id()));
        assert_eq!(honest.meta(&late.node_id()).unwrap().meta.name, "late");
    }

    #[test]
    fn members_are_expelled_when_their_certificate_expires_or_its_hub_is_revoked() {
        let rk = RealmKey::from_seed([7; 32]);
        let (_, mut m) = member(3);
        let short = NodeKey::from_seed([11; 32]).node_id();
        m.admit(&cert_for(&rk, short, Role::Edge, "s", NOW + 5), NOW)
            .unwrap();
        // A member admitted by a hub's certificate.
        let hub = NodeKey::from_seed([12; 32]);
        let by_hub = NodeKey::from_seed([13; 32]).node_id();
        let body = CertBody {
            realm: rk.id(),
            node: by_hub,
            role: Role::Edge,
            name: "h".into(),
            not_before: 0,
            expires: NOW + 1000,
        };
        let delegation = rk.delegate(hub.node_id(), NOW + 1000);
        let cert = crate::realm::issue_as_hub(&hub, delegation, body);
        m.admit(&cert, NOW).unwrap();
        assert!(m.is_admitted(&short) && m.is_admitted(&by_hub));
        let _ = m.drain().count();
        // Still valid: nothing happens.
        m.handle_timer(MemberTimer::Refresh, NOW + 4);
        assert!(m.is_admitted(&short));
        m.handle_timer(MemberTimer::Refresh, NOW + 5);
        assert!(!m.is_admitted(&short));
        let expelled = |m: &mut Membership| -> Vec<NodeId> {
            m.drain()
                .filter_map(|o| match o {
                    Output::Event(Event::Expelled(n)) => Some(n),
                    _ => None,
                })
                .collect()
        };
        assert_eq!(expelled(&mut m), [short]);
        // An expired certificate shown again is refused.
        assert!(
            m.admit(&cert_for(&rk, short, Role::Edge, "s", NOW + 5), NOW + 6)
                .is_err()
        );
        m.revoke(rk.revoke(hub.node_id(), NOW)).unwrap();
        assert!(!m.is_admitted(&by_hub));
        assert_eq!(expelled(&mut m), [by_hub]);
        // What the revoked hub issued is refused from now on.
        assert!(matches!(
            m.admit(&cert, NOW + 7),
            Err(MembershipError::NotAdmitted(_, CertError::Revoked(_)))
        ));
    }
}
