//! Certificate renewal (docs/realms.md, "Renewal"): a member asks a holder of the realm key for a
//! new certificate at 2/3 of its certificate's validity, over the mesh's authenticated RPC
//! ([`RENEW_PROCEDURE`]), and installs it; the key holder renews a member in good standing only
//! (its current certificate valid now, for the node that asks, neither revoked). Sans-IO: the
//! policy ([`Renewal`]) and the checks of both sides; the agent sends, waits and writes files.

use macula_core::NodeId;

use crate::realm::{CertBody, CertError, MembershipCert, NOT_BEFORE_SLACK_S, RealmId, RealmKey};

/// The RPC procedure a realm-key holder serves: request = this member's certificate in its text
/// form, reply = the renewed certificate in text form.
pub const RENEW_PROCEDURE: &str = "realm.renew";

/// How long a member waits for one key holder's answer before asking the next.
pub const RENEW_DEADLINE: std::time::Duration = std::time::Duration::from_secs(10);

/// A certificate is renewed once this share of its validity (numerator, denominator) has passed.
pub const RENEW_AT: (u64, u64) = (2, 3);

/// Shortest wait before asking again after a failed attempt (seconds)…
pub const RETRY_MIN_S: u64 = 5;
/// … doubling up to this.
pub const RETRY_MAX_S: u64 = 3600;

/// Longest a member sleeps before looking at the wall clock again (it may have been set since,
/// e.g. by the realm's time on a board without a real-time clock).
pub const RECHECK_S: u64 = 3600;

/// When `cert` is due for renewal: `not_before` + 2/3 of its validity (unix seconds).
pub fn renew_at(cert: &CertBody) -> u64 {
    let (num, den) = RENEW_AT;
    let window = cert.expires.saturating_sub(cert.not_before);
    cert.not_before + window / den * num + window % den * num / den
}

/// Why a renewal was refused or its result not installed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RenewError {
    #[error("the certificate presented for renewal is not valid: {0}")]
    Invalid(CertError),
    #[error("the certificate presented is for node {cert}, but {caller} asked")]
    NotCaller { cert: NodeId, caller: NodeId },
    #[error("node {0} is revoked; it is renewed no more")]
    Revoked(NodeId),
    #[error("the renewed certificate does not verify: {0}")]
    BadRenewal(CertError),
    #[error("the renewed certificate changes {0}; refused")]
    Changed(&'static str),
    #[error("the renewed certificate does not expire later than the current one")]
    NotLater,
    #[error(
        "node {caller} asked for {RENEW_LIMIT} renewals within {RENEW_LIMIT_WINDOW_S} s; \
         ask again in {retry_in} s"
    )]
    TooOften { caller: NodeId, retry_in: u64 },
}

/// A key holder answers at most this many renewal requests of one caller…
pub const RENEW_LIMIT: usize = 4;
/// …within this many seconds (a member in good standing asks once per 2/3 of its certificate's
/// validity, at least a day, plus a few retries).
pub const RENEW_LIMIT_WINDOW_S: u64 = 3600;
/// Most callers the limiter remembers; the one whose last request is oldest is forgotten first.
pub const RENEW_LIMIT_CALLERS: usize = 4096;

/// The key holder's per-caller limit on [`RENEW_PROCEDURE`] requests (counted before any
/// check, refused ones included): at most [`RENEW_LIMIT`] in any [`RENEW_LIMIT_WINDOW_S`].
#[derive(Debug)]
pub struct RenewLimiter {
    calls: std::collections::HashMap<NodeId, std::collections::VecDeque<u64>>,
    cap: usize,
}

impl Default for RenewLimiter {
    fn default() -> Self {
        Self::with_capacity(RENEW_LIMIT_CALLERS)
    }
}

impl RenewLimiter {
    /// A limiter remembering at most `cap` callers.
    pub fn with_capacity(cap: usize) -> Self {
        Self {
            calls: std::collections::HashMap::new(),
            cap: cap.max(1),
        }
    }

    /// Counts a request of `caller` at `now` (unix seconds), or refuses it when the caller made
    /// [`RENEW_LIMIT`] within the window; a refused request is not counted.
    pub fn allow(&mut self, caller: NodeId, now: u64) -> Result<(), RenewError> {
        if !self.calls.contains_key(&caller) && self.calls.len() >= self.cap {
            let stalest = self
                .calls
                .iter()
                .min_by_key(|(_, t)| t.back().copied().unwrap_or(0))
                .map(|(n, _)| *n);
            if let Some(stalest) = stalest {
                self.calls.remove(&stalest);
            }
        }
        let times = self.calls.entry(caller).or_default();
        while times
            .front()
            .is_some_and(|&t| t.saturating_add(RENEW_LIMIT_WINDOW_S) <= now)
        {
            times.pop_front();
        }
        if times.len() >= RENEW_LIMIT {
            let oldest = times.front().copied().unwrap_or(now);
            return Err(RenewError::TooOften {
                caller,
                retry_in: (oldest + RENEW_LIMIT_WINDOW_S).saturating_sub(now),
            });
        }
        times.push_back(now);
        Ok(())
    }

    /// How many callers are remembered.
    pub fn callers(&self) -> usize {
        self.calls.len()
    }
}

/// The key holder's side: the certificate body to sign for `caller` (authenticated by TLS),
/// who presents `current`, at `now`. The new certificate keeps realm, node, role and name and
/// the length of the validity window, starting now (with the usual slack for clocks behind).
pub fn renewal_for(
    realm: &RealmId,
    caller: NodeId,
    current: &MembershipCert,
    revoked: impl Fn(&NodeId) -> bool,
    now: u64,
) -> Result<CertBody, RenewError> {
    current.verify(realm, now).map_err(RenewError::Invalid)?;
    let old = &current.body;
    if old.node != caller {
        return Err(RenewError::NotCaller {
            cert: old.node,
            caller,
        });
    }
    if let Some(r) = std::iter::once(caller)
        .chain(current.issuing_hub())
        .find(|n| revoked(n))
    {
        return Err(RenewError::Revoked(r));
    }
    let window = old.expires.saturating_sub(old.not_before);
    // The usual slack for clocks behind, at most a tenth of the window (short test windows).
    let not_before = now.saturating_sub(NOT_BEFORE_SLACK_S.min(window / 10));
    Ok(CertBody {
        realm: old.realm,
        node: old.node,
        role: old.role,
        name: old.name.clone(),
        not_before,
        expires: not_before + window,
    })
}

/// The key holder's side, signed: [`renewal_for`] issued with `key`, keeping the admin role of
/// `current` (a renewal neither grants nor drops it).
pub fn issue_renewal(
    key: &RealmKey,
    caller: NodeId,
    current: &MembershipCert,
    revoked: impl Fn(&NodeId) -> bool,
    now: u64,
) -> Result<MembershipCert, RenewError> {
    let body = renewal_for(&key.id(), caller, current, revoked, now)?;
    Ok(key.issue_as(body, current.is_admin()))
}

/// The member's side: whether `new` may replace `current` at `now`.
pub fn check_renewed(
    current: &MembershipCert,
    new: &MembershipCert,
    now: u64,
) -> Result<(), RenewError> {
    new.verify(&current.body.realm, now)
        .map_err(RenewError::BadRenewal)?;
    let (a, b) = (&current.body, &new.body);
    if a.node != b.node {
        return Err(RenewError::Changed("the node"));
    }
    if a.role != b.role {
        return Err(RenewError::Changed("the role"));
    }
    if a.name != b.name {
        return Err(RenewError::Changed("the name"));
    }
    if current.is_admin() != new.is_admin() {
        return Err(RenewError::Changed("the admin role"));
    }
    if b.expires <= a.expires {
        return Err(RenewError::NotLater);
    }
    Ok(())
}

/// What the member should do now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Ask a realm-key holder (or, holding the key, issue) a renewal of the current certificate.
    Renew,
}

/// The member's renewal policy for its own certificate: due at [`renew_at`], one attempt at a
/// time, retried after [`RETRY_MIN_S`] doubling to [`RETRY_MAX_S`] (never later than the
/// expiry) when it fails.
#[derive(Debug, Clone)]
pub struct Renewal {
    cert: CertBody,
    /// When to act next (unix seconds).
    next: u64,
    in_flight: bool,
    failures: u32,
    last_error: Option<String>,
    renewed_at: Option<u64>,
}

impl Renewal {
    pub fn new(cert: CertBody) -> Self {
        let next = renew_at(&cert);
        Self {
            cert,
            next,
            in_flight: false,
            failures: 0,
            last_error: None,
            renewed_at: None,
        }
    }

    /// The certificate in use.
    pub fn cert(&self) -> &CertBody {
        &self.cert
    }

    /// When [`Renewal::poll`] has something to do next (unix seconds); `None` while an attempt
    /// is in flight (its result comes as an event).
    pub fn next_wakeup(&self) -> Option<u64> {
        (!self.in_flight).then_some(self.next)
    }

    /// [`Action::Renew`] when due and no attempt is in flight (the attempt is in flight then).
    pub fn poll(&mut self, now: u64) -> Option<Action> {
        if self.in_flight || now < self.next {
            return None;
        }
        self.in_flight = true;
        Some(Action::Renew)
    }

    /// The attempt succeeded: `new` (checked with [`check_renewed`]) is in use from now.
    pub fn renewed(&mut self, new: CertBody, now: u64) {
        self.next = renew_at(&new);
        self.cert = new;
        self.in_flight = false;
        self.failures = 0;
        self.last_error = None;
        self.renewed_at = Some(now);
    }

    /// The attempt failed (no key holder reachable, refused, …): try again later.
    pub fn failed(&mut self, error: String, now: u64) {
        self.in_flight = false;
        self.failures = self.failures.saturating_add(1);
        let backoff = RETRY_MIN_S
            .saturating_mul(1u64 << self.failures.saturating_sub(1).min(20))
            .min(RETRY_MAX_S);
        // Near the expiry, still try before it passes.
        let before_expiry = self.cert.expires.saturating_sub(1).max(now + 1);
        self.next = (now + backoff).min(before_expiry);
        self.last_error = Some(error);
    }

    /// Why the last attempt failed, while the certificate was not renewed since.
    pub fn last_error(&self) -> Option<&str> {
        self.last_error.as_deref()
    }

    /// When the certificate was last renewed by this policy.
    pub fn renewed_at(&self) -> Option<u64> {
        self.renewed_at
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use macula_core::NodeKey;
    use macula_core::config::Role;

    fn realm() -> RealmKey {
        RealmKey::from_seed([7; 32])
    }

    fn cert(realm: &RealmKey, node: NodeId, not_before: u64, expires: u64) -> MembershipCert {
        realm.issue(CertBody {
            realm: realm.id(),
            node,
            role: Role::Edge,
            name: "e1".into(),
            not_before,
            expires,
        })
    }

    #[test]
    fn due_at_two_thirds_of_the_validity() {
        let r = realm();
        let node = NodeKey::from_seed([1; 32]).node_id();
        let c = cert(&r, node, 1000, 1000 + 90);
        assert_eq!(renew_at(&c.body), 1060);
        let year = cert(&r, node, 0, 365 * 86_400);
        assert_eq!(renew_at(&year.body), 2 * 365 * 86_400 / 3);
    }

    #[test]
    fn policy_asks_once_then_retries_with_backoff_before_expiry() {
        let r = realm();
        let node = NodeKey::from_seed([1; 32]).node_id();
        let c = cert(&r, node, 1000, 1090);
        let mut p = Renewal::new(c.body.clone());
        assert_eq!(p.poll(1059), None);
        assert_eq!(p.next_wakeup(), Some(1060));
        assert_eq!(p.poll(1060), Some(Action::Renew));
        assert_eq!(p.poll(1061), None, "one attempt at a time");
        assert_eq!(p.next_wakeup(), None);
        p.failed("no key holder".into(), 1061);
        assert_eq!(p.next_wakeup(), Some(1061 + RETRY_MIN_S));
        assert_eq!(p.last_error(), Some("no key holder"));
        assert_eq!(p.poll(1066), Some(Action::Renew));
        p.failed("again".into(), 1066);
        assert_eq!(p.next_wakeup(), Some(1066 + 2 * RETRY_MIN_S));
        assert_eq!(p.poll(1076), Some(Action::Renew));
        p.failed("again".into(), 1076);
        // 1076 + 4 × 5 would be after the expiry: the last try is in its last second.
        assert_eq!(p.next_wakeup(), Some(1089));
        assert_eq!(p.poll(1089), Some(Action::Renew));
        let new = renewal_for(&r.id(), node, &c, |_| false, 1089).unwrap();
        p.renewed(new.clone(), 1089);
        assert_eq!(p.cert(), &new);
        assert_eq!(p.last_error(), None);
        assert_eq!(p.renewed_at(), Some(1089));
        assert_eq!(p.next_wakeup(), Some(renew_at(&new)));
    }

    #[test]
    fn a_member_in_good_standing_is_renewed_with_the_same_window() {
        let r = realm();
        let node = NodeKey::from_seed([1; 32]).node_id();
        let now = 1_000_000;
        let c = r.issue(CertBody::admitted(r.id(), node, Role::Hub, "h".into(), 365, now).unwrap());
        let later = now + 250 * 86_400;
        let body = renewal_for(&r.id(), node, &c, |_| false, later).unwrap();
        assert_eq!(
            body.expires - body.not_before,
            c.body.expires - c.body.not_before
        );
        assert_eq!(body.expires, later + 365 * 86_400);
        assert_eq!((body.role, body.name.as_str()), (Role::Hub, "h"));
        let new = r.issue(body);
        check_renewed(&c, &new, later).unwrap();
        // Short windows (tests) keep the slack inside the window.
        let short = cert(&r, node, now, now + 30);
        let body = renewal_for(&r.id(), node, &short, |_| false, now + 20).unwrap();
        assert_eq!((body.not_before, body.expires), (now + 17, now + 47));
    }

    #[test]
    fn refusals() {
        let r = realm();
        let node = NodeKey::from_seed([1; 32]).node_id();
        let other = NodeKey::from_seed([2; 32]).node_id();
        let c = cert(&r, node, 1000, 2000);
        assert!(matches!(
            renewal_for(&r.id(), other, &c, |_| false, 1500),
            Err(RenewError::NotCaller { .. })
        ));
        assert_eq!(
            renewal_for(&r.id(), node, &c, |n| *n == node, 1500),
            Err(RenewError::Revoked(node))
        );
        // Lapsed: a fresh admission is needed, not a renewal.
        assert!(matches!(
            renewal_for(&r.id(), node, &c, |_| false, 2000),
            Err(RenewError::Invalid(CertError::Expired { .. }))
        ));
        let foreign = RealmKey::from_seed([9; 32]);
        assert!(matches!(
            renewal_for(&foreign.id(), node, &c, |_| false, 1500),
            Err(RenewError::Invalid(CertError::WrongRealm { .. }))
        ));
        // The member refuses a renewal that changes who it is or does not extend it, or that
        // another realm signed.
        let mut renamed = renewal_for(&r.id(), node, &c, |_| false, 1500).unwrap();
        renamed.name = "x".into();
        assert_eq!(
            check_renewed(&c, &r.issue(renamed), 1500),
            Err(RenewError::Changed("the name"))
        );
        let same = cert(&r, node, 1000, 2000);
        assert_eq!(check_renewed(&c, &same, 1500), Err(RenewError::NotLater));
        let body = renewal_for(&r.id(), node, &c, |_| false, 1500).unwrap();
        let mut forged = foreign.issue(body);
        forged.body.realm = r.id();
        assert!(matches!(
            check_renewed(&c, &forged, 1500),
            Err(RenewError::BadRenewal(_))
        ));
        // A renewal keeps the admin role, and the member refuses one that adds or drops it.
        let admin = r.issue_admin(c.body.clone());
        let renewed = issue_renewal(&r, node, &admin, |_| false, 1500).unwrap();
        assert!(renewed.is_admin());
        check_renewed(&admin, &renewed, 1500).unwrap();
        let plain = issue_renewal(&r, node, &c, |_| false, 1500).unwrap();
        assert!(!plain.is_admin());
        assert_eq!(
            check_renewed(&admin, &plain, 1500),
            Err(RenewError::Changed("the admin role"))
        );
        assert_eq!(
            check_renewed(&c, &renewed, 1500),
            Err(RenewError::Changed("the admin role"))
        );
    }

    #[test]
    fn renewals_are_limited_per_caller() {
        let a = NodeKey::from_seed([31; 32]).node_id();
        let b = NodeKey::from_seed([32; 32]).node_id();
        let mut l = RenewLimiter::default();
        let t = 1_000_000;
        for i in 0..RENEW_LIMIT as u64 {
            l.allow(a, t + i).unwrap();
        }
        assert_eq!(
            l.allow(a, t + 10),
            Err(RenewError::TooOften {
                caller: a,
                retry_in: RENEW_LIMIT_WINDOW_S - 10
            })
        );
        // Another caller is not affected.
        l.allow(b, t + 10).unwrap();
        // A refused request is not counted: the first call leaves the window on time.
        l.allow(a, t + RENEW_LIMIT_WINDOW_S).unwrap();
        assert!(matches!(
            l.allow(a, t + RENEW_LIMIT_WINDOW_S),
            Err(RenewError::TooOften { retry_in: 1, .. })
        ));
        l.allow(a, t + RENEW_LIMIT_WINDOW_S + 1).unwrap();
    }

    #[test]
    fn the_limiter_forgets_the_stalest_caller_when_full() {
        let mut l = RenewLimiter::with_capacity(2);
        let ids: Vec<_> = (0..3u8)
            .map(|i| NodeKey::from_seed([40 + i; 32]).node_id())
            .collect();
        for _ in 0..RENEW_LIMIT {
            l.allow(ids[0], 10).unwrap();
        }
        l.allow(ids[1], 20).unwrap();
        l.allow(ids[2], 30).unwrap();
        assert_eq!(l.callers(), 2);
        // ids[0] (last request at 10) was forgotten, so it may ask again.
        l.allow(ids[0], 40).unwrap();
        assert_eq!(l.callers(), 2);
    }
}
