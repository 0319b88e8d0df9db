//! Uplink health and failover as a sans-IO state machine.
//!
//! Every `interval` the tracker asks for one probe per uplink. An uplink is *down* when no probe
//! reply arrived for `dead_after` (or its carrier is lost), and *up* again after `up_after`
//! consecutive replies. The active uplink is the healthy one with the lowest priority value
//! (ties: configuration order); it changes only when health changes, never on a whim. With
//! `dead_after` = 1 s and `interval` = 200 ms a silent path is failed over within ~1.2 s.

use std::time::Duration;

/// Tracker timing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    pub interval: Duration,
    pub dead_after: Duration,
    pub up_after: u32,
}

impl Default for Timing {
    fn default() -> Self {
        Self {
            interval: Duration::from_millis(200),
            dead_after: Duration::from_millis(1000),
            up_after: 3,
        }
    }
}

/// What the shell must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Send probe `seq` on uplink `link` (index in configuration order).
    Probe { link: usize, seq: u64 },
    /// The active uplink changed (`None`: no healthy uplink left; keep the last routes).
    Activate {
        from: Option<usize>,
        to: Option<usize>,
    },
    /// The set of healthy uplinks changed (for MPTCP endpoints).
    Healthy(Vec<usize>),
    /// An uplink's carrier changed (reinstall its routing table when it returns).
    Carrier { link: usize, up: bool },
    /// The default route of an uplink's own table went away while the uplink is usable
    /// (flushed by someone else): install it again.
    Reinstall { link: usize },
}

/// The public view of one uplink.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkView {
    pub healthy: bool,
    pub carrier: bool,
    /// Time of the last reply (tracker time).
    pub last_reply: Option<Duration>,
    /// Round-trip time of the last reply.
    pub rtt: Option<Duration>,
    pub sent: u64,
    pub received: u64,
}

#[derive(Debug, Clone)]
struct Link {
    priority: u32,
    view: LinkView,
    consecutive: u32,
    /// Outstanding probes: (seq, sent at). Bounded by `dead_after / interval + 1`.
    outstanding: Vec<(u64, Duration)>,
}

/// The tracker for a fixed list of uplinks.
#[derive(Debug, Clone)]
pub struct Tracker {
    timing: Timing,
    links: Vec<Link>,
    active: Option<usize>,
    next_probe: Duration,
    seq: u64,
    started: Duration,
    healthy_reported: Vec<usize>,
}

impl Tracker {
    /// Uplinks by priority value (lower wins). All start healthy at `now` so that the best one is
    /// active at once; a dead one is failed over `dead_after` later.
    pub fn new(timing: Timing, priorities: &[u32], now: Duration) -> Self {
        let links: Vec<Link> = priorities
            .iter()
            .map(|&priority| Link {
                priority,
                view: LinkView {
                    healthy: true,
                    carrier: true,
                    last_reply: None,
                    rtt: None,
                    sent: 0,
                    received: 0,
                },
                consecutive: 0,
                outstanding: Vec::new(),
            })
            .collect();
        let mut t = Self {
            timing,
            links,
            active: None,
            next_probe: now,
            seq: 0,
            started: now,
            healthy_reported: Vec::new(),
        };
        t.active = t.best();
        t.healthy_reported = t.healthy();
        t
    }

    fn best(&self) -> Option<usize> {
        self.links
            .iter()
            .enumerate()
            .filter(|(_, l)| l.view.healthy)
            .min_by_key(|(i, l)| (l.priority, *i))
            .map(|(i, _)| i)
    }

    /// Indices of the healthy uplinks.
    pub fn healthy(&self) -> Vec<usize> {
        (0..self.links.len())
            .filter(|&i| self.links[i].view.healthy)
            .collect()
    }

    pub fn active(&self) -> Option<usize> {
        self.active
    }

    pub fn view(&self, link: usize) -> &LinkView {
        &self.links[link].view
    }

    /// When the shell must call [`Tracker::poll`] next.
    pub fn next_wakeup(&self) -> Duration {
        self.next_probe
    }

    fn reevaluate(&mut self, out: &mut Vec<Action>) {
        let best = self.best();
        // Keep the current uplink while it is healthy and no better-priority one recovered.
        if best != self.active {
            out.push(Action::Activate {
                from: self.active,
                to: best,
            });
            self.active = best;
        }
        let healthy = self.healthy();
        if healthy != self.healthy_reported {
            self.healthy_reported = healthy.clone();
            out.push(Action::Healthy(healthy));
        }
    }

    /// Advances time: expires silent uplinks and emits the probes that are due.
    pub fn poll(&mut self, now: Duration) -> Vec<Action> {
        let mut out = Vec::new();
        let dead_after = self.timing.dead_after;
        for l in &mut self.links {
            let since = l.view.last_reply.unwrap_or(self.started);
            if l.view.healthy && now.saturating_sub(since) >= dead_after {
                l.view.healthy = false;
                l.consecutive = 0;
            }
            l.outstanding
                .retain(|&(_, sent)| now.saturating_sub(sent) < dead_after);
        }
        self.reevaluate(&mut out);
        if now >= self.next_probe {
            for (i, l) in self.links.iter_mut().enumerate() {
                if !l.view.carrier {
                    continue;
                }
                self.seq += 1;
                l.outstanding.push((self.seq, now));
                l.view.sent += 1;
                out.push(Action::Probe {
                    link: i,
                    seq: self.seq,
                });
            }
            // Stay on the grid; after a long stall, restart it from now.
            self.next_probe += self.timing.interval;
            if self.next_probe <= now {
                self.next_probe = now + self.timing.interval;
            }
        }
        out
    }

    /// A probe reply arrived. Unknown, duplicate or expired replies are ignored.
    pub fn on_reply(&mut self, link: usize, seq: u64, now: Duration) -> Vec<Action> {
        let mut out = Vec::new();
        let up_after = self.timing.up_after;
        let Some(l) = self.links.get_mut(link) else {
            return out;
        };
        let Some(pos) = l.outstanding.iter().position(|&(s, _)| s == seq) else {
            return out;
        };
        let (_, sent) = l.outstanding.swap_remove(pos);
        l.view.received += 1;
        l.view.last_reply = Some(now);
        l.view.rtt = Some(now.saturating_sub(sent));
        if !l.view.healthy {
            l.consecutive += 1;
            if l.consecutive >= up_after && l.view.carrier {
                l.view.healthy = true;
            }
        }
        self.reevaluate(&mut out);
        out
    }

    /// rtnetlink: the default route of uplink `link`'s own routing table appeared (`true`) or
    /// went away. Health is not touched (probes judge the path); a usable uplink gets its table
    /// back at once. Without carrier the kernel removed it, and carrier return reinstalls it.
    pub fn on_table_route(&mut self, link: usize, present: bool) -> Vec<Action> {
        match self.links.get(link) {
            Some(l) if !present && l.view.carrier => vec![Action::Reinstall { link }],
            _ => Vec::new(),
        }
    }

    /// Usability from rtnetlink changed (carrier, or the uplink's source address): loss fails the
    /// uplink at once.
    pub fn on_carrier(&mut self, link: usize, up: bool) -> Vec<Action> {
        let mut out = Vec::new();
        let Some(l) = self.links.get_mut(link) else {
            return out;
        };
        if l.view.carrier != up {
            out.push(Action::Carrier { link, up });
        }
        l.view.carrier = up;
        if !up {
            l.view.healthy = false;
            l.consecutive = 0;
            l.outstanding.clear();
        }
        self.reevaluate(&mut out);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    fn probes(actions: &[Action]) -> Vec<(usize, u64)> {
        actions
            .iter()
            .filter_map(|a| match a {
                Action::Probe { link, seq } => Some((*link, *seq)),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn best_priority_is_active_at_start() {
        let t = Tracker::new(Timing::default(), &[20, 10], Duration::ZERO);
        assert_eq!(t.active(), Some(1));
    }

    #[test]
    fn lost_table_route_is_reinstalled_only_with_carrier() {
        let mut t = Tracker::new(Timing::default(), &[10, 20], Duration::ZERO);
        assert_eq!(t.on_table_route(1, false), [Action::Reinstall { link: 1 }]);
        assert!(t.on_table_route(1, true).is_empty());
        assert!(t.on_table_route(9, false).is_empty());
        t.on_carrier(1, false);
        assert!(
            t.on_table_route(1, false).is_empty(),
            "carrier return reinstalls it"
        );
        assert_eq!(t.active(), Some(0), "health untouched");
    }

    #[test]
    fn carrier_loss_fails_over_immediately() {
        let mut t = Tracker::new(Timing::default(), &[10, 20], Duration::ZERO);
        let a = t.on_carrier(0, false);
        assert_eq!(a[0], Action::Carrier { link: 0, up: false });
        assert!(a.contains(&Action::Activate {
            from: Some(0),
            to: Some(1)
        }));
        assert!(a.contains(&Action::Healthy(vec![1])));
    }

    /// Simulation with virtual time: two paths with latency; path 0 goes silent at `fail_at`.
    /// Returns (time of the Activate to path 1, actions log).
    fn simulate(
        timing: Timing,
        fail_at: Duration,
        recover_at: Option<Duration>,
        end: Duration,
    ) -> Vec<(Duration, Action)> {
        let latency = [5 * MS, 30 * MS];
        let mut t = Tracker::new(timing, &[10, 20], Duration::ZERO);
        let mut inflight: Vec<(Duration, usize, u64)> = Vec::new();
        let mut log = Vec::new();
        let mut now = Duration::ZERO;
        while now <= end {
            inflight.sort();
            let due: Vec<_> = inflight
                .iter()
                .copied()
                .filter(|(at, _, _)| *at <= now)
                .collect();
            inflight.retain(|(at, _, _)| *at > now);
            for (_, link, seq) in due {
                for a in t.on_reply(link, seq, now) {
                    log.push((now, a));
                }
            }
            for a in t.poll(now) {
                if let Action::Probe { link, seq } = a {
                    let silent = link == 0 && now >= fail_at && recover_at.is_none_or(|r| now < r);
                    if !silent {
                        inflight.push((now + latency[link], link, seq));
                    }
                } else {
                    log.push((now, a));
                }
            }
            now += MS;
        }
        log
    }

    #[test]
    fn silent_path_fails_over_within_dead_after_plus_one_interval() {
        let timing = Timing::default();
        let fail = 3000 * MS;
        let log = simulate(timing, fail, None, 10_000 * MS);
        let switches: Vec<_> = log
            .iter()
            .filter(|(_, a)| matches!(a, Action::Activate { .. }))
            .collect();
        assert_eq!(switches.len(), 1, "{log:?}");
        let (at, a) = switches[0];
        assert_eq!(
            *a,
            Action::Activate {
                from: Some(0),
                to: Some(1)
            }
        );
        let took = *at - fail;
        assert!(took <= timing.dead_after + timing.interval, "{took:?}");
        assert!(took >= timing.dead_after - timing.interval, "{took:?}");
    }

    #[test]
    fn recovered_path_takes_over_again_after_up_after_replies() {
        let timing = Timing::default();
        let log = simulate(timing, 2000 * MS, Some(5000 * MS), 10_000 * MS);
        let switches: Vec<_> = log
            .iter()
            .filter_map(|(at, a)| match a {
                Action::Activate { to, .. } => Some((*at, *to)),
                _ => None,
            })
            .collect();
        assert_eq!(switches.len(), 2, "{log:?}");
        assert_eq!(switches[1].1, Some(0));
        // Three replies at 200 ms spacing after recovery (first probe ≤ 200 ms later).
        let back = switches[1].0 - 5000 * MS;
        assert!(back <= 3 * timing.interval + 10 * MS, "{back:?}");
    }

    #[test]
    fn steady_paths_never_flap() {
        let log = simulate(Timing::default(), Duration::MAX, None, 20_000 * MS);
        assert!(log.is_empty(), "{log:?}");
    }

    #[test]
    fn stale_and_unknown_replies_are_ignored() {
        let mut t = Tracker::new(Timing::default(), &[10], Duration::ZERO);
        let p = probes(&t.poll(Duration::ZERO));
        assert_eq!(p, [(0, 1)]);
        assert!(t.on_reply(0, 99, 1 * MS).is_empty());
        assert!(t.on_reply(5, 1, 1 * MS).is_empty());
        t.on_reply(0, 1, 2 * MS);
        assert_eq!(t.view(0).received, 1);
        t.on_reply(0, 1, 3 * MS);
        assert_eq!(t.view(0).received, 1, "duplicate reply counted once");
        assert_eq!(t.view(0).rtt, Some(2 * MS));
    }

    /// Random loss/latency schedules: the active uplink is always healthy when any uplink is, and
    /// never a lower-priority one while a higher-priority uplink is healthy.
    #[test]
    fn random_schedules_keep_invariants() {
        let mut rng = 0x2545_f491_4f6c_dd1du64;
        let mut next = move || {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng
        };
        for _ in 0..50 {
            let n = 1 + (next() % 4) as usize;
            let prios: Vec<u32> = (0..n).map(|_| (next() % 5) as u32).collect();
            let mut t = Tracker::new(Timing::default(), &prios, Duration::ZERO);
            let mut loss: Vec<u64> = (0..n).map(|_| next() % 100).collect();
            let mut inflight: Vec<(Duration, usize, u64)> = Vec::new();
            let mut now = Duration::ZERO;
            for step in 0..20_000u64 {
                if step % 1000 == 0 {
                    loss = (0..n).map(|_| next() % 100).collect();
                }
                let due: Vec<_> = inflight
                    .iter()
                    .copied()
                    .filter(|(at, _, _)| *at <= now)
                    .collect();
                inflight.retain(|(at, _, _)| *at > now);
                for (_, link, seq) in due {
                    t.on_reply(link, seq, now);
                }
                for a in t.poll(now) {
                    if let Action::Probe { link, seq } = a
                        && next() % 100 >= loss[link]
                    {
                        inflight.push((now + Duration::from_millis(next() % 300), link, seq));
                    }
                }
                let healthy = t.healthy();
                match t.active() {
                    Some(a) => {
                        assert!(healthy.contains(&a));
                        let best = healthy.iter().map(|&i| (prios[i], i)).min().unwrap();
                        assert_eq!(best.1, a);
                    }
                    None => assert!(healthy.is_empty()),
                }
                now += MS;
            }
        }
    }
}
