//! Realm-wide rollouts of one RAUC bundle in waves: the sans-IO rules (`docs/image.md` §
//! "Realm rollouts").
//!
//! A publisher stores the bundle once in the realm's storage and spreads a signed [`Rollout`]:
//! the bundle's capability, hash and version, the members at publication in wave order and the
//! wave sizes. Every node keeps a [`RolloutBook`]: the newest rollout it accepted and the signed
//! [`Report`]s of every node (fetching, installing, rebooting, good, failed). From those alone
//! — fed as events, with the time given — every node computes the same realm view
//! ([`RolloutBook::view`]): which wave is open, whether the rollout is halted (a node reported a
//! failure, or did not report good within the wave deadline) or done, and what it should do
//! itself ([`RolloutBook::next_step`]). Wave `k + 1` opens only once every node of wave `k` that
//! takes part reported good; a node that was down when its wave opened (and never started) is not
//! waited for: it catches up as soon as it is back, as does a node that joined after the
//! publication once the last wave is done. The book reads no clock, file or socket.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::time::Duration;

use macula_core::domains::Domain;
use macula_core::{NodeId, NodeKey, wire};
use serde::{Deserialize, Serialize};

/// Largest encoded rollout or report accepted (a rollout lists every member: 10k × 33 bytes).
pub const MAX_RECORD: usize = 512 * 1024;
/// Largest number of waves in a rollout.
pub const MAX_WAVES: usize = 16;
/// Longest version, compatible or reason text.
pub const MAX_TEXT: usize = 256;
/// Default time a wave has, from its opening, for every node in it to report good.
pub const DEFAULT_WAVE_DEADLINE: Duration = Duration::from_secs(1800);

/// Realm pub/sub topic of rollout records and reports.
pub const TOPIC: &str = "macula/rollout";
/// Mesh RPC answering every record a node holds (`wire(Vec<Message>)`): the catch-up of a node
/// that comes back.
pub const SYNC_PROCEDURE: &str = "update.rollout.sync";
/// Longest wait for a catch-up answer.
pub const SYNC_DEADLINE: Duration = Duration::from_secs(10);
/// While records still move ([`RolloutBook::in_progress`]), each node pulls every record from
/// every alive member this often, so a publication lost (a member that just rebooted and is not
/// in the topic's tree yet) is found.
pub const RESYNC: Duration = Duration::from_secs(10);
/// Largest catch-up answer accepted (a rollout and one report per node).
pub const MAX_SYNC: usize = 16 * 1024 * 1024;

/// Why a record, a wave list or a publication was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RolloutError {
    #[error("undecodable rollout record: {0}")]
    Decode(String),
    #[error("rollout record signature does not verify for {0}")]
    BadSignature(String),
    #[error("rollout published by {publisher}: {reason}")]
    NotAllowed { publisher: String, reason: String },
    #[error("invalid waves `{text}`: {reason} (e.g. `1,25%,100%`)")]
    Waves { text: String, reason: String },
    #[error("{0}")]
    Invalid(String),
}

/// One wave's size: a number of nodes or a share of the rollout's nodes, cumulative (wave sizes
/// `1,25%,100%`: one node first, then up to a quarter of them, then all).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum WaveSize {
    Nodes(u32),
    Percent(u8),
}

impl WaveSize {
    /// How many of `n` nodes are updated once this wave is done (at least one).
    fn reach(self, n: usize) -> usize {
        let r = match self {
            WaveSize::Nodes(k) => k as usize,
            WaveSize::Percent(p) => (n * usize::from(p)).div_ceil(100),
        };
        r.clamp(1, n.max(1))
    }
}

impl fmt::Display for WaveSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WaveSize::Nodes(k) => write!(f, "{k}"),
            WaveSize::Percent(p) => write!(f, "{p}%"),
        }
    }
}

/// Parses `1,25%,100%`: counts or percentages, non-decreasing in what they reach; the last wave
/// always reaches every node (a list that stops short gets `100%` added).
pub fn parse_waves(text: &str) -> Result<Vec<WaveSize>, RolloutError> {
    let err = |reason: String| RolloutError::Waves {
        text: text.to_owned(),
        reason,
    };
    let mut out = Vec::new();
    for part in text.split(',') {
        let part = part.trim();
        let w = if let Some(p) = part.strip_suffix('%') {
            let p: u8 = p
                .parse()
                .map_err(|_| err(format!("`{part}` is not a percentage")))?;
            if p == 0 || p > 100 {
                return Err(err(format!("`{part}`: a percentage is 1% to 100%")));
            }
            WaveSize::Percent(p)
        } else {
            let k: u32 = part
                .parse()
                .map_err(|_| err(format!("`{part}` is neither a node count nor a percentage")))?;
            if k == 0 {
                return Err(err("a wave of 0 nodes".into()));
            }
            WaveSize::Nodes(k)
        };
        out.push(w);
    }
    if out.len() > MAX_WAVES {
        return Err(err(format!("{} waves, at most {MAX_WAVES}", out.len())));
    }
    if out.last() != Some(&WaveSize::Percent(100)) {
        out.push(WaveSize::Percent(100));
    }
    Ok(out)
}

/// The BLAKE3 hash and length of a bundle read to its end (the rollout's `bundle_hash` and
/// `bundle_len`; a fetched copy must match both).
pub fn hash_bundle(r: impl std::io::Read) -> std::io::Result<([u8; 32], u64)> {
    let mut h = blake3::Hasher::new();
    let len = std::io::copy(&mut std::io::BufReader::new(r), &mut h)?;
    Ok((*h.finalize().as_bytes(), len))
}

/// The signed part of a rollout.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rollout {
    pub publisher: NodeId,
    /// Unix seconds at publication (the publisher's clock); a later rollout supersedes this one.
    pub published_at: u64,
    /// The bundle's version (RAUC manifest `[update] version`).
    pub version: String,
    /// The bundle's compatible string: nodes of another compatible ignore the rollout.
    pub compatible: String,
    /// Storage capability of the bundle (`maculactl get` reads it).
    pub bundle: String,
    /// BLAKE3 of the bundle file.
    pub bundle_hash: [u8; 32],
    pub bundle_len: u64,
    pub waves: Vec<WaveSize>,
    /// Seconds each wave has, from its opening, for all its nodes to report good.
    pub wave_deadline_s: u64,
    /// The realm's members at publication, in wave order ([`Rollout::order`]).
    pub nodes: Vec<NodeId>,
}

/// Rollout identifier: BLAKE3 of the signed body.
pub type RolloutId = [u8; 32];

/// Short text form of a rollout id (first 8 bytes, hex).
pub fn short_id(id: &RolloutId) -> String {
    id[..8].iter().map(|b| format!("{b:02x}")).collect()
}

impl Rollout {
    /// Puts `members` in wave order: sorted by BLAKE3(bundle hash ‖ node), so the first wave is a
    /// different, unpredictable node for every bundle and every node computes the same order.
    pub fn order(bundle_hash: &[u8; 32], members: impl IntoIterator<Item = NodeId>) -> Vec<NodeId> {
        let mut v: Vec<(blake3::Hash, NodeId)> = members
            .into_iter()
            .collect::<BTreeSet<_>>()
            .into_iter()
            .map(|n| {
                let mut h = blake3::Hasher::new_derive_key("macula/v1 rollout order");
                h.update(bundle_hash);
                h.update(n.as_bytes());
                (h.finalize(), n)
            })
            .collect();
        v.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
        v.into_iter().map(|(_, n)| n).collect()
    }

    /// The wave of each listed node: `waves()[k]` is the nodes of wave `k` (empty waves, whose
    /// size reaches no further than the previous one, are left out).
    pub fn waves(&self) -> Vec<Vec<NodeId>> {
        let n = self.nodes.len();
        let mut out = Vec::new();
        let mut done = 0;
        for w in &self.waves {
            let reach = w.reach(n).max(done);
            if reach > done {
                out.push(self.nodes[done..reach].to_vec());
                done = reach;
            }
        }
        if done < n {
            out.push(self.nodes[done..].to_vec());
        }
        out
    }

    pub(crate) fn check(&self) -> Result<(), RolloutError> {
        if self.version.is_empty() || self.version.len() > MAX_TEXT {
            return Err(RolloutError::Invalid(
                "the bundle version must be 1 to 256 bytes".into(),
            ));
        }
        if self.compatible.len() > MAX_TEXT || self.bundle.len() > 4 * MAX_TEXT {
            return Err(RolloutError::Invalid(
                "compatible or capability too long".into(),
            ));
        }
        if self.waves.is_empty() || self.waves.len() > MAX_WAVES + 1 {
            return Err(RolloutError::Invalid(format!(
                "1 to {} waves",
                MAX_WAVES + 1
            )));
        }
        if self.nodes.is_empty() {
            return Err(RolloutError::Invalid("a rollout lists no node".into()));
        }
        if self.wave_deadline_s == 0 {
            return Err(RolloutError::Invalid("a wave deadline of 0 s".into()));
        }
        Ok(())
    }
}

/// A rollout as spread: the encoded [`Rollout`] and the publisher's signature over it in the
/// domain `macula/v1/rollout`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedRollout {
    #[serde(with = "macula_core::wire::bytes")]
    pub body: Vec<u8>,
    #[serde(with = "macula_core::wire::bytes")]
    pub sig: Vec<u8>,
}

fn verify(node: &NodeId, domain: Domain, body: &[u8], sig: &[u8]) -> Result<(), RolloutError> {
    let sig: [u8; 64] = sig
        .try_into()
        .map_err(|_| RolloutError::BadSignature(node.to_string()))?;
    node.verify(domain, body, &ed25519_dalek::Signature::from_bytes(&sig))
        .map_err(|_| RolloutError::BadSignature(node.to_string()))
}

impl SignedRollout {
    /// Signs `rollout` (whose `publisher` must be `key`'s node).
    pub fn sign(key: &NodeKey, rollout: &Rollout) -> Result<Self, RolloutError> {
        if rollout.publisher != key.node_id() {
            return Err(RolloutError::Invalid(
                "the publisher must be the signing node".into(),
            ));
        }
        rollout.check()?;
        let body = wire::encode(rollout);
        let sig = key.sign(Domain::Rollout, &body).to_bytes().to_vec();
        Ok(Self { body, sig })
    }

    pub fn id(&self) -> RolloutId {
        *blake3::hash(&self.body).as_bytes()
    }

    pub fn encode(&self) -> Vec<u8> {
        wire::encode(self)
    }

    /// Decodes and verifies (size, encoding, signature, contents).
    pub fn decode_verified(bytes: &[u8]) -> Result<(Self, Rollout), RolloutError> {
        let sr: SignedRollout = wire::decode_with_limit(bytes, MAX_RECORD)
            .map_err(|e| RolloutError::Decode(e.to_string()))?;
        let r = sr.verified()?;
        Ok((sr, r))
    }

    fn verified(&self) -> Result<Rollout, RolloutError> {
        let r: Rollout = wire::decode_with_limit(&self.body, MAX_RECORD)
            .map_err(|e| RolloutError::Decode(e.to_string()))?;
        verify(&r.publisher, Domain::Rollout, &self.body, &self.sig)?;
        r.check()?;
        Ok(r)
    }
}

/// A node's step in a rollout.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Step {
    /// Fetching the bundle from the realm's storage.
    Fetching,
    /// Bundle fetched and its hash checked; RAUC installs it.
    Installing,
    /// Installed into `slot`; the node reboots into it.
    Rebooting { slot: String },
    /// Runs `version` from `slot`, marked good after the health check.
    Good { version: String, slot: String },
    /// Failed; runs from `slot` (its old one after a rollback).
    Failed { reason: String, slot: String },
}

impl Step {
    /// One word for tables.
    pub fn word(&self) -> &'static str {
        match self {
            Step::Fetching => "fetching",
            Step::Installing => "installing",
            Step::Rebooting { .. } => "rebooting",
            Step::Good { .. } => "good",
            Step::Failed { .. } => "failed",
        }
    }
}

/// The signed part of a report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Report {
    pub rollout: RolloutId,
    pub node: NodeId,
    /// Increases with every report of the node (its clock's milliseconds, or one more than the
    /// previous): the newest report wins.
    pub seq: u64,
    /// Unix seconds when the node made the report.
    pub at: u64,
    pub step: Step,
}

/// A report as spread: the encoded [`Report`] and the node's signature in the domain
/// `macula/v1/rollout-report`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedReport {
    #[serde(with = "macula_core::wire::bytes")]
    pub body: Vec<u8>,
    #[serde(with = "macula_core::wire::bytes")]
    pub sig: Vec<u8>,
}

impl SignedReport {
    pub fn sign(key: &NodeKey, report: &Report) -> Self {
        let body = wire::encode(report);
        let sig = key.sign(Domain::RolloutReport, &body).to_bytes().to_vec();
        Self { body, sig }
    }

    pub fn encode(&self) -> Vec<u8> {
        wire::encode(self)
    }

    pub fn decode_verified(bytes: &[u8]) -> Result<(Self, Report), RolloutError> {
        let sr: SignedReport = wire::decode_with_limit(bytes, MAX_RECORD)
            .map_err(|e| RolloutError::Decode(e.to_string()))?;
        let r = sr.verified()?;
        Ok((sr, r))
    }

    fn verified(&self) -> Result<Report, RolloutError> {
        let r: Report = wire::decode_with_limit(&self.body, MAX_RECORD)
            .map_err(|e| RolloutError::Decode(e.to_string()))?;
        if let Step::Good {
            version: a,
            slot: b,
        }
        | Step::Failed { reason: a, slot: b } = &r.step
            && (a.len() > MAX_TEXT || b.len() > MAX_TEXT)
        {
            return Err(RolloutError::Decode("report text too long".into()));
        }
        verify(&r.node, Domain::RolloutReport, &self.body, &self.sig)?;
        Ok(r)
    }
}

/// One message of the rollout topic and of the catch-up RPC.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Message {
    Rollout(SignedRollout),
    Report(SignedReport),
}

impl Message {
    pub fn encode(&self) -> Vec<u8> {
        wire::encode(self)
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, RolloutError> {
        wire::decode_with_limit(bytes, MAX_RECORD).map_err(|e| RolloutError::Decode(e.to_string()))
    }
}

/// Where the rollout stands, as every node computes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Phase {
    /// Wave `wave` (0-based) is open since `since` (unix s) and must be good by `deadline`.
    Wave {
        wave: usize,
        since: u64,
        deadline: u64,
    },
    /// Every wave is good; nodes that were away catch up when they return.
    Done,
    /// Stopped for good: `node` failed (or missed the deadline) for `reason`.
    Halted { node: NodeId, reason: String },
}

/// One node's line in the realm view.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeLine {
    pub node: NodeId,
    /// Its wave; `None` for a node that was not a member at publication (catches up at the end).
    pub wave: Option<usize>,
    /// Its newest report, `None` before it reported.
    pub step: Option<Step>,
    /// Unix seconds of that report.
    pub at: Option<u64>,
}

/// The realm view of the current rollout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct View {
    pub id: RolloutId,
    pub rollout: Rollout,
    pub phase: Phase,
    /// Every listed node in wave order, then the late ones that reported.
    pub nodes: Vec<NodeLine>,
}

/// What this node should do now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NextStep {
    /// Nothing (no rollout, not its turn, halted, or its part is done).
    Nothing,
    /// It runs the rollout's version already: report good from the booted slot.
    ReportGood,
    /// Fetch, check and install the bundle.
    Install {
        id: RolloutId,
        rollout: Box<Rollout>,
    },
    /// Look again at this time (unix s): a wave deadline passes.
    WakeAt(u64),
}

/// A node's copy of the realm's rollout records.
#[derive(Debug, Clone, Default)]
pub struct RolloutBook {
    current: Option<(SignedRollout, Rollout)>,
    reports: BTreeMap<NodeId, (SignedReport, Report)>,
    /// Members the node's membership sees as down (not waited for before they started).
    down: BTreeSet<NodeId>,
}

/// What an offered record did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Offered {
    /// Kept: new to this node (pass it on, save the book).
    New,
    /// Already known, or superseded.
    Known,
}

impl RolloutBook {
    pub fn new() -> Self {
        Self::default()
    }

    /// The current rollout, if any.
    pub fn current(&self) -> Option<(RolloutId, &Rollout)> {
        self.current.as_ref().map(|(s, r)| (s.id(), r))
    }

    /// Takes a rollout. `allowed` says whether its publisher may publish rollouts (the shell
    /// checks the publisher's certificate role). A newer rollout (later `published_at`, then
    /// larger id) replaces the current one and its reports.
    pub fn offer_rollout(
        &mut self,
        signed: SignedRollout,
        allowed: impl FnOnce(&NodeId) -> Result<(), String>,
    ) -> Result<Offered, RolloutError> {
        let r = signed.verified()?;
        allowed(&r.publisher).map_err(|reason| RolloutError::NotAllowed {
            publisher: r.publisher.to_string(),
            reason,
        })?;
        let id = signed.id();
        if let Some((cur, cr)) = &self.current {
            let cur_id = cur.id();
            if (cr.published_at, cur_id) >= (r.published_at, id) {
                return Ok(Offered::Known);
            }
        }
        self.current = Some((signed, r));
        self.reports.clear();
        Ok(Offered::New)
    }

    /// Takes a report; one for another rollout than the current one is ignored.
    pub fn offer_report(&mut self, signed: SignedReport) -> Result<Offered, RolloutError> {
        let r = signed.verified()?;
        let Some((cur, _)) = &self.current else {
            return Ok(Offered::Known);
        };
        if r.rollout != cur.id() {
            return Ok(Offered::Known);
        }
        if let Some((_, old)) = self.reports.get(&r.node)
            && old.seq >= r.seq
        {
            return Ok(Offered::Known);
        }
        self.reports.insert(r.node, (signed, r));
        Ok(Offered::New)
    }

    /// The membership's view of a node changed.
    pub fn set_down(&mut self, node: NodeId, down: bool) {
        if down {
            self.down.insert(node);
        } else {
            self.down.remove(&node);
        }
    }

    /// Whether records still move at `now` ([`RESYNC`] applies): a wave is open, or a node is
    /// between fetching and its verdict (its outcome after a reboot is still to come, also once
    /// the rollout halted or finished).
    pub fn in_progress(&self, now: u64) -> bool {
        self.current.as_ref().is_some_and(|(_, r)| {
            matches!(self.phase(r, now), Phase::Wave { .. })
                || self.reports.values().any(|(_, rep)| {
                    matches!(
                        rep.step,
                        Step::Fetching | Step::Installing | Step::Rebooting { .. }
                    )
                })
        })
    }

    /// This node's newest report in the current rollout.
    pub fn report_of(&self, node: &NodeId) -> Option<&Report> {
        self.reports.get(node).map(|(_, r)| r)
    }

    /// Every record held, for the catch-up of a peer and the saved copy: the rollout first.
    pub fn messages(&self) -> Vec<Message> {
        let mut out = Vec::new();
        if let Some((s, _)) = &self.current {
            out.push(Message::Rollout(s.clone()));
            out.extend(
                self.reports
                    .values()
                    .map(|(s, _)| Message::Report(s.clone())),
            );
        }
        out
    }

    fn step_of(&self, node: &NodeId) -> Option<&Step> {
        self.reports.get(node).map(|(_, r)| &r.step)
    }

    /// Computes the phase at `now` (unix s).
    fn phase(&self, r: &Rollout, now: u64) -> Phase {
        // a failure anywhere halts the rollout, listed nodes and late ones alike
        if let Some((node, reason)) = self.reports.values().find_map(|(_, rep)| match &rep.step {
            Step::Failed { reason, .. } => Some((rep.node, reason.clone())),
            _ => None,
        }) {
            return Phase::Halted { node, reason };
        }
        let deadline_s = r.wave_deadline_s;
        let mut since = r.published_at;
        for (k, wave) in r.waves().iter().enumerate() {
            let deadline = since.saturating_add(deadline_s);
            // A node takes part once it reported, or while it is not seen down; a node down
            // that never started catches up later.
            let waiting: Vec<&NodeId> = wave
                .iter()
                .filter(|n| !matches!(self.step_of(n), Some(Step::Good { .. })))
                .filter(|n| self.step_of(n).is_some() || !self.down.contains(n))
                .collect();
            if let Some(late) = waiting.first() {
                if now >= deadline {
                    return Phase::Halted {
                        node: **late,
                        reason: format!(
                            "did not report good within the wave deadline ({deadline_s} s)"
                        ),
                    };
                }
                return Phase::Wave {
                    wave: k,
                    since,
                    deadline,
                };
            }
            // the next wave opens when the last node of this one reported good
            since = wave
                .iter()
                .filter_map(|n| match self.reports.get(n) {
                    Some((_, rep)) if matches!(rep.step, Step::Good { .. }) => Some(rep.at),
                    _ => None,
                })
                .max()
                .unwrap_or(since)
                .max(since);
        }
        Phase::Done
    }

    /// The realm view at `now`, `None` without a rollout.
    pub fn view(&self, now: u64) -> Option<View> {
        let (s, r) = self.current.as_ref()?;
        let phase = self.phase(r, now);
        let mut nodes = Vec::new();
        for (k, wave) in r.waves().iter().enumerate() {
            for n in wave {
                let rep = self.report_of(n);
                nodes.push(NodeLine {
                    node: *n,
                    wave: Some(k),
                    step: rep.map(|x| x.step.clone()),
                    at: rep.map(|x| x.at),
                });
            }
        }
        let listed: BTreeSet<&NodeId> = r.nodes.iter().collect();
        for (n, (_, rep)) in &self.reports {
            if !listed.contains(n) {
                nodes.push(NodeLine {
                    node: *n,
                    wave: None,
                    step: Some(rep.step.clone()),
                    at: Some(rep.at),
                });
            }
        }
        Some(View {
            id: s.id(),
            rollout: r.clone(),
            phase,
            nodes,
        })
    }

    /// What `me` should do at `now`. `compatible` is its system's compatible string (`None`:
    /// unknown, RAUC decides at the installation), `running` the version of its booted slot (if
    /// known).
    pub fn next_step(
        &self,
        me: &NodeId,
        compatible: Option<&str>,
        running: Option<&str>,
        now: u64,
    ) -> NextStep {
        let Some((s, r)) = &self.current else {
            return NextStep::Nothing;
        };
        if compatible.is_some_and(|c| c != r.compatible) {
            return NextStep::Nothing;
        }
        match self.step_of(me) {
            // started before (a restart mid-fetch or mid-install): the attempt is redone
            None | Some(Step::Fetching | Step::Installing) => {}
            // after the reboot the health check, not the book, decides; done or failed: nothing
            Some(Step::Rebooting { .. } | Step::Good { .. } | Step::Failed { .. }) => {
                return NextStep::Nothing;
            }
        }
        let phase = self.phase(r, now);
        let my_wave = r.waves().iter().position(|w| w.contains(me));
        let turn = match (&phase, my_wave) {
            (Phase::Halted { .. }, _) => false,
            (Phase::Done, _) => true,
            (Phase::Wave { wave, .. }, Some(mine)) => mine <= *wave,
            (Phase::Wave { .. }, None) => false,
        };
        if !turn {
            return match phase {
                Phase::Wave { deadline, .. } => NextStep::WakeAt(deadline),
                _ => NextStep::Nothing,
            };
        }
        if running == Some(r.version.as_str()) {
            return NextStep::ReportGood;
        }
        NextStep::Install {
            id: s.id(),
            rollout: Box::new(r.clone()),
        }
    }
}

/// An installation this node made and rebooted into, kept on disk until its outcome is
/// reported ([`after_boot`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pending {
    pub rollout: RolloutId,
    pub version: String,
    /// The slot (boot name) the bundle was installed into.
    pub target: String,
}

/// After a boot with an attempt pending (this node installed `rollout` into `target` and
/// rebooted): what its report is now, given the booted slot and the health check's outcome
/// (`Some(true)` marked good, `Some(false)` unhealthy, `None` still checking).
pub fn after_boot(
    version: &str,
    target: &str,
    booted: &str,
    healthy: Option<bool>,
) -> Option<Step> {
    if booted != target {
        return Some(Step::Failed {
            reason: format!("slot {target} did not come up healthy; rolled back to slot {booted}"),
            slot: booted.to_owned(),
        });
    }
    match healthy {
        None => None,
        Some(true) => Some(Step::Good {
            version: version.to_owned(),
            slot: booted.to_owned(),
        }),
        Some(false) => Some(Step::Failed {
            reason: format!("health check failed on slot {target}; rolling back"),
            slot: booted.to_owned(),
        }),
    }
}

/// Bounds the bandwidth a node spends fetching a bundle: a token bucket of `rate` bytes per
/// second with one second of burst. Given the bytes just received and the time, says how long
/// to pause before reading on.
#[derive(Debug, Clone)]
pub struct Pacer {
    rate: u64,
    /// Bytes that may still be read without pausing (negative: debt), as of `at`.
    credit: i128,
    at: Duration,
}

impl Pacer {
    /// `rate` bytes per second (0: unbounded); `now` is any monotonic time.
    pub fn new(rate: u64, now: Duration) -> Self {
        Self {
            rate,
            credit: i128::from(rate),
            at: now,
        }
    }

    /// `bytes` were just received at `now`: the pause before the next read.
    pub fn pause(&mut self, now: Duration, bytes: u64) -> Duration {
        if self.rate == 0 {
            return Duration::ZERO;
        }
        let rate = i128::from(self.rate);
        let elapsed = now.saturating_sub(self.at);
        self.at = now;
        self.credit = (self.credit + (elapsed.as_nanos() as i128 * rate) / 1_000_000_000).min(rate);
        self.credit -= i128::from(bytes);
        if self.credit >= 0 {
            Duration::ZERO
        } else {
            Duration::from_nanos(((-self.credit) * 1_000_000_000 / rate) as u64)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(i: u8) -> NodeKey {
        NodeKey::from_seed([i; 32])
    }

    fn rollout(publisher: &NodeKey, n: u8, waves: &str) -> Rollout {
        let hash = [1u8; 32];
        Rollout {
            publisher: publisher.node_id(),
            published_at: 100,
            version: "1.1".into(),
            compatible: "c".into(),
            bundle: "cap".into(),
            bundle_hash: hash,
            bundle_len: 10,
            waves: parse_waves(waves).unwrap(),
            wave_deadline_s: 60,
            nodes: Rollout::order(&hash, (0..n).map(|i| key(i).node_id())),
        }
    }

    #[test]
    fn waves_parse_and_split() {
        assert_eq!(
            parse_waves("1,25%,100%").unwrap(),
            vec![
                WaveSize::Nodes(1),
                WaveSize::Percent(25),
                WaveSize::Percent(100)
            ]
        );
        assert_eq!(
            parse_waves("2").unwrap(),
            vec![WaveSize::Nodes(2), WaveSize::Percent(100)]
        );
        for bad in ["", "0", "0%", "101%", "x", "1,,2", "5%%"] {
            let e = parse_waves(bad).unwrap_err().to_string();
            assert!(e.contains("invalid waves"), "{bad}: {e}");
        }
        let sizes = |n, w| {
            rollout(&key(0), n, w)
                .waves()
                .iter()
                .map(Vec::len)
                .collect::<Vec<_>>()
        };
        assert_eq!(sizes(3, "1,100%"), vec![1, 2]);
        assert_eq!(sizes(1, "1,25%,100%"), vec![1]);
        assert_eq!(sizes(100, "1,25%,100%"), vec![1, 24, 75]);
        // a wave reaching no further than the previous one is left out
        assert_eq!(sizes(4, "2,25%,100%"), vec![2, 2]);
        assert_eq!(sizes(4, "10"), vec![4]);
    }

    #[test]
    fn order_depends_on_the_bundle_not_the_input_order() {
        let ids: Vec<NodeId> = (0..20).map(|i| key(i).node_id()).collect();
        let mut rev = ids.clone();
        rev.reverse();
        assert_eq!(
            Rollout::order(&[1; 32], ids.clone()),
            Rollout::order(&[1; 32], rev)
        );
        assert_ne!(
            Rollout::order(&[1; 32], ids.clone()),
            Rollout::order(&[2; 32], ids)
        );
    }

    #[test]
    fn records_verify_and_tampering_is_refused() {
        let k = key(0);
        let r = rollout(&k, 3, "1,100%");
        let s = SignedRollout::sign(&k, &r).unwrap();
        let (back, rr) = SignedRollout::decode_verified(&s.encode()).unwrap();
        assert_eq!((back.id(), rr), (s.id(), r.clone()));
        let mut bad = s.clone();
        let last = bad.body.len() - 1;
        bad.body[last] ^= 1;
        assert!(SignedRollout::decode_verified(&bad.encode()).is_err());
        // signed by another key than the publisher's
        assert!(SignedRollout::sign(&key(1), &r).is_err());
        let mut forged = s.clone();
        forged.sig = key(1).sign(Domain::Rollout, &s.body).to_bytes().to_vec();
        assert!(matches!(
            SignedRollout::decode_verified(&forged.encode()),
            Err(RolloutError::BadSignature(_))
        ));
        // a publisher the shell does not allow
        let mut book = RolloutBook::new();
        let e = book
            .offer_rollout(s.clone(), |_| Err("not a hub".into()))
            .unwrap_err();
        assert!(e.to_string().contains("not a hub"), "{e}");
        assert!(!book.in_progress(100));
        assert_eq!(book.offer_rollout(s.clone(), |_| Ok(())), Ok(Offered::New));
        assert!(book.in_progress(100));
        // the first wave missed its deadline: halted, records no longer move
        assert!(!book.in_progress(160));
        assert_eq!(
            book.offer_rollout(s.clone(), |_| Ok(())),
            Ok(Offered::Known)
        );
        // reports: signed by the node they name, newest seq wins, other rollouts ignored
        let rep = |node: &NodeKey, seq, rollout| {
            SignedReport::sign(
                node,
                &Report {
                    rollout,
                    node: node.node_id(),
                    seq,
                    at: 100,
                    step: Step::Fetching,
                },
            )
        };
        assert_eq!(book.offer_report(rep(&key(1), 2, s.id())), Ok(Offered::New));
        // halted, but a node is still fetching: its outcome is still to come
        assert!(book.in_progress(160));
        assert_eq!(
            book.offer_report(rep(&key(1), 1, s.id())),
            Ok(Offered::Known)
        );
        assert_eq!(
            book.offer_report(rep(&key(1), 3, [0; 32])),
            Ok(Offered::Known)
        );
        let mut wrong = rep(&key(1), 4, s.id());
        wrong.sig = key(2)
            .sign(Domain::RolloutReport, &wrong.body)
            .to_bytes()
            .to_vec();
        assert!(book.offer_report(wrong).is_err());
        assert_eq!(book.report_of(&key(1).node_id()).unwrap().seq, 2);
        // a wrong compatible is not this node's business
        assert_eq!(
            book.next_step(&r.nodes[0], Some("other"), None, 100),
            NextStep::Nothing
        );
        assert!(matches!(
            book.next_step(&r.nodes[0], Some("c"), Some("1.0"), 100),
            NextStep::Install { .. }
        ));
        assert_eq!(
            book.next_step(&r.nodes[1], None, Some("1.0"), 100),
            NextStep::WakeAt(160)
        );
    }

    #[test]
    fn after_boot_outcomes() {
        assert_eq!(after_boot("2", "B", "B", None), None);
        assert!(matches!(
            after_boot("2", "B", "B", Some(true)),
            Some(Step::Good { version, slot }) if version == "2" && slot == "B"
        ));
        assert!(matches!(
            after_boot("2", "B", "B", Some(false)),
            Some(Step::Failed { slot, .. }) if slot == "B"
        ));
        assert!(matches!(
            after_boot("2", "B", "A", None),
            Some(Step::Failed { reason, slot }) if slot == "A" && reason.contains("rolled back")
        ));
    }

    #[test]
    fn pacer_bounds_the_rate() {
        let s = Duration::from_secs(1);
        let mut p = Pacer::new(1000, Duration::ZERO);
        // one second of burst, then the debt is paid in time
        assert_eq!(p.pause(Duration::ZERO, 1000), Duration::ZERO);
        assert_eq!(p.pause(Duration::ZERO, 500), s / 2);
        assert_eq!(p.pause(s / 2, 500), s / 2);
        // 10 000 bytes in 100-byte reads, each followed by its pause: about 9 s
        let mut p = Pacer::new(1000, Duration::ZERO);
        let mut now = Duration::ZERO;
        for _ in 0..100 {
            now += p.pause(now, 100);
        }
        assert!(
            now >= Duration::from_millis(8900) && now <= Duration::from_secs(9),
            "{now:?}"
        );
        assert_eq!(Pacer::new(0, now).pause(now, u64::MAX), Duration::ZERO);
    }
}
