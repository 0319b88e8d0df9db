//! Time: the persisted metadata clock ([`ClockState`] in `<state>/mesh-clock`) and the realm's
//! clock read from peers ([`TIME_PROCEDURE`]), stepping ours when allowed.

use macula_core::sync::Locked;
use std::sync::Arc;
use std::time::Duration;

use macula_core::wire;
use tokio::time::Instant;

use super::Shared;
use super::rpc_client::call;
use crate::clock::{ClockState, Decision, RealmClock, TimeSample};
use crate::transport::TransportError;

/// Reads the [`ClockState`] a previous run persisted; `None` when there is none yet.
pub(super) fn load_clock(path: &std::path::Path) -> Result<Option<ClockState>, TransportError> {
    match std::fs::read_to_string(path) {
        Ok(text) => {
            ClockState::from_text(&text)
                .map(Some)
                .map_err(|reason| TransportError::ClockState {
                    path: path.to_owned(),
                    reason: format!("{reason}; remove the file to start counting anew"),
                })
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(TransportError::ClockState {
            path: path.to_owned(),
            reason: e.to_string(),
        }),
    }
}

/// Replaces the state file: temp file → fsync → rename → fsync the directory, so a crash
/// leaves the old or the new state, never a torn one.
pub(super) fn persist_clock(
    path: &std::path::Path,
    state: &ClockState,
) -> Result<(), TransportError> {
    use std::io::Write;
    let dir = path.parent().unwrap_or(std::path::Path::new("."));
    let tmp = path.with_extension("tmp");
    let res = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(state.to_text().as_bytes())?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)?;
        std::fs::File::open(dir)?.sync_all()
    })();
    res.map_err(|e| TransportError::ClockState {
        path: path.to_owned(),
        reason: e.to_string(),
    })
}

/// The RPC procedure that tells the time: empty body, reply `wire(u64)` = the answering node's
/// wall clock in Unix milliseconds.
pub const TIME_PROCEDURE: &str = "mesh.time";

/// How far this node's clock may be from the realm's before it is called wrong.
pub const CLOCK_THRESHOLD_MS: u64 = 10_000;

/// How often peers' clocks are read, the first time, and from how many peers.
const TIME_PERIOD: Duration = Duration::from_secs(60);
const TIME_RETRY: Duration = Duration::from_secs(2);
const TIME_PEERS: usize = 8;

/// What the realm's clocks say about this node's clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClockReport {
    /// The realm's clock minus ours now, in milliseconds (positive: ours is behind).
    pub offset_ms: i64,
    /// How many peers' clocks (or NTP servers) that is the median of, whether they are hubs,
    /// whether they are NTP servers.
    pub peers: usize,
    pub hubs: bool,
    pub ntp: bool,
    /// By how much this node stepped its clock to the realm's (0 = never).
    pub stepped_ms: i64,
}

/// Reads the clocks of up to [`TIME_PEERS`] admitted peers (hubs first) every [`TIME_PERIOD`],
/// keeps [`ClockReport`], says when the clock is off, and steps it when allowed. Its timers are
/// monotonic, so a clock step does not disturb it (nor any other mesh timer).
pub(super) async fn keep_time(shared: Arc<Shared>, set_clock: bool, ntp: Vec<String>) {
    let mut stepped_ms = 0i64;
    let mut said_off: Option<i64> = None;
    // Per server, the failure last logged (each is said once until the server answers again).
    let mut said_ntp: Vec<Option<String>> = vec![None; ntp.len()];
    tokio::time::sleep(TIME_RETRY).await;
    loop {
        let sources = shared.core().time_sources(TIME_PEERS);
        // Fresh readings each round: peers that left or stopped answering no longer count.
        let mut rc = RealmClock::new(CLOCK_THRESHOLD_MS);
        for (server, said) in ntp.iter().zip(&mut said_ntp) {
            match ask_ntp(server).await {
                Ok(r) => {
                    rc.sample_ntp(r.offset_ms, r.rtt_ms);
                    *said = None;
                }
                // Said once per kind of failure: an appliance offline says it once, not every minute.
                Err(e) => {
                    let e = format!("NTP server {server}: {e}");
                    if said.as_ref() != Some(&e) {
                        tracing::info!(target: "macula::mesh", "{e}; the realm's clocks tell the time");
                        *said = Some(e);
                    }
                }
            }
        }
        for (peer, hub) in sources {
            let sent = unix_ms();
            let t0 = Instant::now();
            let Ok(body) = call(&shared, peer, TIME_PROCEDURE, Vec::new(), TIME_RETRY).await else {
                continue;
            };
            let rtt_ms = u64::try_from(t0.elapsed().as_millis()).unwrap_or(u64::MAX);
            if let Ok(peer_ms) = wire::decode::<u64>(&body) {
                let offset_ms = crate::clock::offset_from_exchange(sent, rtt_ms, peer_ms);
                rc.sample(
                    peer,
                    TimeSample {
                        offset_ms,
                        rtt_ms,
                        hub,
                    },
                );
            }
        }
        let decision = rc.decide(set_clock);
        let estimate = match decision {
            Decision::Unknown => None,
            Decision::Agrees(e) => {
                said_off = None;
                Some(e)
            }
            Decision::Off(e) => {
                // Say it once, and again when the offset moved by more than the threshold.
                if said_off.is_none_or(|o| o.abs_diff(e.offset_ms) > CLOCK_THRESHOLD_MS) {
                    tracing::warn!(
                        target: "macula::mesh",
                        offset_ms = e.offset_ms,
                        peers = e.peers,
                        hubs = e.hubs,
                        "the clock is {} {} by {} (median of {} {}); it looks wrong",
                        if e.offset_ms > 0 { "behind" } else { "ahead of" },
                        source(&e),
                        human_ms(e.offset_ms.unsigned_abs()),
                        e.peers,
                        if e.ntp { "NTP servers" } else { "peer clocks" }
                    );
                    said_off = Some(e.offset_ms);
                }
                Some(e)
            }
            Decision::Step(e) => match step_clock(e.offset_ms) {
                Ok(()) => {
                    tracing::warn!(
                        target: "macula::mesh",
                        offset_ms = e.offset_ms,
                        peers = e.peers,
                        hubs = e.hubs,
                        "the clock was {} {} by {}; set it to that time",
                        if e.offset_ms > 0 { "behind" } else { "ahead of" },
                        source(&e),
                        human_ms(e.offset_ms.unsigned_abs()),
                    );
                    rc.stepped(e.offset_ms);
                    stepped_ms = stepped_ms.saturating_add(e.offset_ms);
                    rc.estimate()
                }
                Err(err) => {
                    tracing::warn!(
                        target: "macula::mesh",
                        offset_ms = e.offset_ms,
                        "the clock is off {} by {}, and cannot be set: {err}",
                        source(&e),
                        human_ms(e.offset_ms.unsigned_abs()),
                    );
                    Some(e)
                }
            },
        };
        if let Some(e) = estimate {
            *shared.clock.locked() = Some(ClockReport {
                offset_ms: e.offset_ms,
                peers: e.peers,
                hubs: e.hubs,
                ntp: e.ntp,
                stepped_ms,
            });
        }
        tokio::time::sleep(if estimate.is_some() {
            TIME_PERIOD
        } else {
            TIME_RETRY
        })
        .await;
    }
}

/// "the realm's" or "NTP's": whose time an estimate is.
fn source(e: &crate::clock::Estimate) -> &'static str {
    if e.ntp { "NTP's" } else { "the realm's" }
}

/// How long an NTP server has to answer.
const NTP_TIMEOUT: Duration = Duration::from_secs(2);

/// One SNTP exchange with `server` (`host` or `host:port`).
async fn ask_ntp(server: &str) -> std::io::Result<crate::ntp::Reading> {
    use std::io::{Error, ErrorKind};
    let target = if server
        .rsplit_once(':')
        .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
    {
        server.to_owned()
    } else {
        format!("{server}:{}", crate::ntp::PORT)
    };
    // Offline, a name lookup can take the resolver's own timeouts (seconds each): bounded here.
    let addr = tokio::time::timeout(NTP_TIMEOUT, tokio::net::lookup_host(&target))
        .await
        .map_err(|_| Error::new(ErrorKind::TimedOut, "name lookup took over 2 s"))??
        .next()
        .ok_or_else(|| Error::new(ErrorKind::NotFound, "no address"))?;
    let local: std::net::SocketAddr = if addr.is_ipv4() {
        ([0, 0, 0, 0], 0).into()
    } else {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let sock = tokio::net::UdpSocket::bind(local).await?;
    sock.connect(addr).await?;
    let t1 = unix_ms();
    sock.send(&crate::ntp::request(t1)).await?;
    let mut buf = [0u8; 128];
    let deadline = Instant::now() + NTP_TIMEOUT;
    loop {
        let n = tokio::time::timeout_at(deadline, sock.recv(&mut buf))
            .await
            .map_err(|_| Error::new(ErrorKind::TimedOut, "no answer within 2 s"))??;
        let t4 = unix_ms();
        match crate::ntp::read_reply(&buf[..n], t1, t4) {
            Ok(r) => return Ok(r),
            // A stray datagram (not the answer to this request) is skipped; a refusal is final.
            Err(crate::ntp::NtpError::NotOurs) => continue,
            Err(e) => return Err(Error::new(ErrorKind::InvalidData, e)),
        }
    }
}

/// Steps the system clock by `by_ms` (`clock_settime(CLOCK_REALTIME)`; needs CAP_SYS_TIME).
fn step_clock(by_ms: i64) -> std::io::Result<()> {
    let now = i128::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos(),
    )
    .unwrap_or(i128::MAX);
    let target = (now + i128::from(by_ms) * 1_000_000).max(0);
    let ts = libc::timespec {
        tv_sec: libc::time_t::try_from(target / 1_000_000_000)
            .map_err(|_| std::io::Error::other("time out of range"))?,
        tv_nsec: libc::c_long::try_from(target % 1_000_000_000).unwrap_or(0),
    };
    // SAFETY: `ts` is a valid timespec that lives across the call.
    if unsafe { libc::clock_settime(libc::CLOCK_REALTIME, &ts) } == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// `3h 0m`, `12m 5s`, `1.2 s`.
fn human_ms(ms: u64) -> String {
    let s = ms / 1000;
    match s {
        0..60 => format!("{}.{} s", s, ms % 1000 / 100),
        60..3600 => format!("{}m {}s", s / 60, s % 60),
        3600..86400 => format!("{}h {}m", s / 3600, s / 60 % 60),
        _ => format!("{}d {}h", s / 86400, s / 3600 % 24),
    }
}

/// Unix time in milliseconds: the version of own member metadata.
pub(super) fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}
