//! Per-peer limits: how much one member may make this node do, per second and at once
//! (`[mesh.limits]` of `agent.toml`; docs/security.md, "A member flooding a node").
//!
//! Sans-IO: an [`Allowance`] per connected peer keeps token buckets fed the time by the caller
//! and says how long to wait; the node's connection readers (`node::conns`) wait that long
//! before accepting the peer's next call or pub/sub stream and before reading more of its bytes.
//! Waiting, not refusing: while a reader waits, QUIC's stream credit and flow control hold the
//! peer back at its own end, so a flood costs this node little beyond what the limits let
//! through, and an honest burst is slowed, never failed.

use serde::Deserialize;

/// What one peer may make this node do. Every connection of the peer counts against the same
/// limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PeerLimits {
    /// RPC calls (every procedure: shard puts and gets, DHT stores and lookups, pings, …) the
    /// peer may open per second, on average. Default 2000: an S3 gateway serving 1000 small
    /// GETs a second asks each holder about 2000 times (manifest and data segment).
    pub calls_per_sec: u32,
    /// Calls it may open at once above that rate. Default 4000.
    pub call_burst: u32,
    /// Its calls this node serves at once; more wait unaccepted. Default 32.
    pub calls_in_flight: u32,
    /// Pub/sub messages the peer may send per second, on average. Default 500.
    pub messages_per_sec: u32,
    /// Messages it may send at once above that rate. Default 1000.
    pub message_burst: u32,
    /// Bytes of calls and messages read from the peer per second, on average; past it this node
    /// reads the peer's streams no faster (QUIC flow control then stops the sender). Default
    /// 128 MiB: above a 1 GbE line (≈ 119 MiB/s), so one honest member sending this node all it
    /// can (a two-node realm's replicas, a repair) is never held.
    pub bytes_per_sec: u64,
    /// Bytes it may send at once above that rate. Default 32 MiB.
    pub byte_burst: u64,
    /// Connections the peer may hold open to this node at once; a further one is closed.
    /// Default 16: an honest pair holds one, but several at once for a few seconds while they
    /// form (both dial at once, services dial before a connection is up; up to 4 seen).
    pub connections: u32,
}

impl Default for PeerLimits {
    fn default() -> Self {
        Self {
            calls_per_sec: 2000,
            call_burst: 4000,
            calls_in_flight: 32,
            messages_per_sec: 500,
            message_burst: 1000,
            bytes_per_sec: 128 << 20,
            byte_burst: 32 << 20,
            connections: 16,
        }
    }
}

impl PeerLimits {
    /// Refuses zero values (a limit of zero would stop every peer), naming the key.
    pub fn validate(&self) -> Result<(), String> {
        let fields: [(&str, u64); 8] = [
            ("calls_per_sec", self.calls_per_sec.into()),
            ("call_burst", self.call_burst.into()),
            ("calls_in_flight", self.calls_in_flight.into()),
            ("messages_per_sec", self.messages_per_sec.into()),
            ("message_burst", self.message_burst.into()),
            ("bytes_per_sec", self.bytes_per_sec),
            ("byte_burst", self.byte_burst),
            ("connections", self.connections.into()),
        ];
        match fields.iter().find(|(_, v)| *v == 0) {
            Some((name, _)) => Err(format!(
                "[mesh.limits] {name} must be at least 1 (a limit of 0 would stop every member)"
            )),
            None => Ok(()),
        }
    }
}

/// A token bucket in continuous time: `per_sec` tokens a second up to `burst`; taking may go
/// into debt, which the time to wait pays off.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bucket {
    tokens: f64,
    at_ms: u64,
}

impl Bucket {
    pub fn full(burst: u64, now_ms: u64) -> Self {
        Self {
            tokens: burst as f64,
            at_ms: now_ms,
        }
    }

    fn refill(&mut self, per_sec: u64, burst: u64, now_ms: u64) {
        let elapsed = now_ms.saturating_sub(self.at_ms);
        self.tokens = (self.tokens + elapsed as f64 * per_sec as f64 / 1000.0).min(burst as f64);
        self.at_ms = self.at_ms.max(now_ms);
    }

    /// Milliseconds until the bucket holds at least `n` tokens (0: now).
    pub fn wait_ms(&mut self, n: u64, per_sec: u64, burst: u64, now_ms: u64) -> u64 {
        self.refill(per_sec, burst, now_ms);
        // More than a burst never fits: a whole burst is what to wait for then.
        let want = (n as f64).min(burst as f64);
        if self.tokens >= want {
            0
        } else {
            ((want - self.tokens) * 1000.0 / per_sec as f64).ceil() as u64
        }
    }

    /// Takes `n` tokens, into debt if there are fewer; milliseconds until the debt is paid.
    pub fn take(&mut self, n: u64, per_sec: u64, burst: u64, now_ms: u64) -> u64 {
        self.refill(per_sec, burst, now_ms);
        self.tokens -= n as f64;
        if self.tokens >= 0.0 {
            0
        } else {
            (-self.tokens * 1000.0 / per_sec as f64).ceil() as u64
        }
    }
}

/// One peer's budget under [`PeerLimits`] (calls and messages per second, bytes read per
/// second); the node holds one per connected peer.
#[derive(Debug, Clone)]
pub struct Allowance {
    limits: PeerLimits,
    calls: Bucket,
    messages: Bucket,
    bytes: Bucket,
}

impl Allowance {
    pub fn new(limits: PeerLimits, now_ms: u64) -> Self {
        Self {
            limits,
            calls: Bucket::full(limits.call_burst.into(), now_ms),
            messages: Bucket::full(limits.message_burst.into(), now_ms),
            bytes: Bucket::full(limits.byte_burst, now_ms),
        }
    }

    pub fn limits(&self) -> &PeerLimits {
        &self.limits
    }

    /// Milliseconds before the peer's next call may be accepted (0: now).
    pub fn call_wait_ms(&mut self, now_ms: u64) -> u64 {
        let l = self.limits;
        self.calls
            .wait_ms(1, l.calls_per_sec.into(), l.call_burst.into(), now_ms)
    }

    /// A call of the peer was accepted.
    pub fn call_taken(&mut self, now_ms: u64) {
        let l = self.limits;
        self.calls
            .take(1, l.calls_per_sec.into(), l.call_burst.into(), now_ms);
    }

    /// Milliseconds before the peer's next pub/sub message may be accepted (0: now).
    pub fn message_wait_ms(&mut self, now_ms: u64) -> u64 {
        let l = self.limits;
        self.messages
            .wait_ms(1, l.messages_per_sec.into(), l.message_burst.into(), now_ms)
    }

    /// A pub/sub message of the peer was accepted.
    pub fn message_taken(&mut self, now_ms: u64) {
        let l = self.limits;
        self.messages
            .take(1, l.messages_per_sec.into(), l.message_burst.into(), now_ms);
    }

    /// `n` bytes of the peer were read; milliseconds to wait before reading more of its bytes.
    pub fn bytes_read(&mut self, n: u64, now_ms: u64) -> u64 {
        let l = self.limits;
        self.bytes.take(n, l.bytes_per_sec, l.byte_burst, now_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> PeerLimits {
        PeerLimits {
            calls_per_sec: 10,
            call_burst: 5,
            calls_in_flight: 2,
            messages_per_sec: 100,
            message_burst: 1,
            bytes_per_sec: 1000,
            byte_burst: 500,
            connections: 1,
        }
    }

    #[test]
    fn a_burst_then_the_rate() {
        let mut a = Allowance::new(limits(), 1000);
        for _ in 0..5 {
            assert_eq!(a.call_wait_ms(1000), 0);
            a.call_taken(1000);
        }
        // Empty: one call every 100 ms.
        assert_eq!(a.call_wait_ms(1000), 100);
        assert_eq!(a.call_wait_ms(1050), 50);
        assert_eq!(a.call_wait_ms(1100), 0);
        a.call_taken(1100);
        assert_eq!(a.call_wait_ms(1100), 100);
        // Idle for long: back to the burst, no more.
        let mut n = 0;
        while a.call_wait_ms(60_000) == 0 {
            a.call_taken(60_000);
            n += 1;
        }
        assert_eq!(n, 5);
    }

    #[test]
    fn calls_taken_over_time_stay_within_rate_and_burst() {
        // A peer calling as fast as it is let through for 10 s: burst + 10 s × rate.
        let mut a = Allowance::new(limits(), 0);
        let (mut now, mut calls) = (0, 0);
        while now <= 10_000 {
            match a.call_wait_ms(now) {
                0 => {
                    a.call_taken(now);
                    calls += 1;
                }
                w => now += w,
            }
        }
        assert_eq!(calls, 5 + 100);
    }

    #[test]
    fn bytes_go_into_debt_and_the_wait_pays_it() {
        let mut a = Allowance::new(limits(), 0);
        assert_eq!(a.bytes_read(400, 0), 0);
        // 100 left; reading 600 more leaves a debt of 500 bytes = 500 ms at 1000 B/s.
        assert_eq!(a.bytes_read(600, 0), 500);
        assert_eq!(a.bytes_read(0, 250), 250);
        assert_eq!(a.bytes_read(0, 500), 0);
        // A read larger than the burst is let through once and paid for after.
        assert_eq!(a.bytes_read(2000, 10_000), 1500);
    }

    #[test]
    fn messages_have_their_own_bucket() {
        let mut a = Allowance::new(limits(), 0);
        a.call_taken(0);
        assert_eq!(a.message_wait_ms(0), 0);
        a.message_taken(0);
        assert_eq!(a.message_wait_ms(0), 10);
        assert_eq!(a.call_wait_ms(0), 0);
    }

    #[test]
    fn time_going_backwards_earns_nothing() {
        let mut b = Bucket::full(2, 1000);
        assert_eq!(b.take(2, 1, 2, 1000), 0);
        assert_eq!(b.wait_ms(1, 1, 2, 500), 1000);
        assert_eq!(b.wait_ms(1, 1, 2, 2000), 0);
    }

    #[test]
    fn zero_limits_are_refused_by_name() {
        assert!(PeerLimits::default().validate().is_ok());
        let l = PeerLimits {
            calls_in_flight: 0,
            ..PeerLimits::default()
        };
        assert!(l.validate().unwrap_err().contains("calls_in_flight"));
    }
}
