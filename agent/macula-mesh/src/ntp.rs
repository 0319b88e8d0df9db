//! SNTP (RFC 4330 / RFC 5905 client mode), sans-IO: the request a node sends to an NTP server
//! and what it learns from the reply. A board without a real-time clock reads the time from the
//! servers in `[mesh] ntp` when they are reachable, and from the realm's clocks otherwise
//! (`node/time.rs` does the I/O).

use std::fmt;

/// Seconds from 1900-01-01 (NTP's era 0) to 1970-01-01.
const UNIX_OFFSET_S: u64 = 2_208_988_800;
/// The length of an NTP packet without extensions.
pub const PACKET_LEN: usize = 48;
/// The port NTP servers listen on.
pub const PORT: u16 = 123;

/// Why a reply is not used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NtpError {
    /// Shorter than an NTP header.
    Short(usize),
    /// Not a server's answer (mode 4) of version 3 or 4.
    NotServer { version: u8, mode: u8 },
    /// The server is not synchronised (leap indicator 3, stratum 0 = kiss-o'-death, or > 15).
    Unsynchronised { leap: u8, stratum: u8 },
    /// The reply does not answer our request (its originate timestamp is not our transmit).
    NotOurs,
    /// The server's transmit timestamp is zero.
    NoTime,
}

impl fmt::Display for NtpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Short(n) => write!(f, "{n}-byte reply (an NTP header has {PACKET_LEN})"),
            Self::NotServer { version, mode } => {
                write!(
                    f,
                    "not an NTP server reply (version {version}, mode {mode})"
                )
            }
            Self::Unsynchronised { leap, stratum } => {
                write!(
                    f,
                    "the server is not synchronised (leap {leap}, stratum {stratum})"
                )
            }
            Self::NotOurs => write!(f, "the reply answers another request"),
            Self::NoTime => write!(f, "the reply carries no time"),
        }
    }
}

impl std::error::Error for NtpError {}

/// Unix milliseconds → the 64-bit NTP timestamp (seconds since 1900, 32-bit fraction).
pub fn to_ntp(unix_ms: u64) -> u64 {
    let secs = unix_ms / 1000 + UNIX_OFFSET_S;
    let frac = (((unix_ms % 1000) << 32) + 500) / 1000;
    (secs << 32) | frac
}

/// The NTP timestamp → Unix milliseconds (as `i128`: before 1970 is negative). Era 1 (from
/// 2036-02-07) is taken for seconds with the top bit clear, as RFC 4330 §3 advises.
pub fn from_ntp(ts: u64) -> i128 {
    let mut secs = i128::from(ts >> 32);
    if secs < 1 << 31 {
        secs += 1 << 32;
    }
    let frac_ms = (i128::from(ts & 0xffff_ffff) * 1000 + (1 << 31)) >> 32;
    (secs - i128::from(UNIX_OFFSET_S)) * 1000 + frac_ms
}

/// A client request (version 4, mode 3) whose transmit timestamp is `t1_ms` on our clock. The
/// server copies it into its reply's originate timestamp, which ties the reply to the request.
pub fn request(t1_ms: u64) -> [u8; PACKET_LEN] {
    let mut p = [0u8; PACKET_LEN];
    p[0] = (4 << 3) | 3;
    p[40..48].copy_from_slice(&to_ntp(t1_ms).to_be_bytes());
    p
}

/// What one exchange says: the server's clock minus ours and the round trip, in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reading {
    pub offset_ms: i64,
    pub rtt_ms: u64,
    pub stratum: u8,
}

/// Reads a server's `reply` to the request sent at `t1_ms`, received at `t4_ms` (our clock):
/// offset ((T2 − T1) + (T3 − T4)) / 2 and delay (T4 − T1) − (T3 − T2) (RFC 5905 §8).
pub fn read_reply(reply: &[u8], t1_ms: u64, t4_ms: u64) -> Result<Reading, NtpError> {
    if reply.len() < PACKET_LEN {
        return Err(NtpError::Short(reply.len()));
    }
    let (leap, version, mode) = (reply[0] >> 6, (reply[0] >> 3) & 7, reply[0] & 7);
    if mode != 4 || !(3..=4).contains(&version) {
        return Err(NtpError::NotServer { version, mode });
    }
    let stratum = reply[1];
    if leap == 3 || stratum == 0 || stratum > 15 {
        return Err(NtpError::Unsynchronised { leap, stratum });
    }
    let ts = |at: usize| u64::from_be_bytes(reply[at..at + 8].try_into().expect("8 bytes"));
    if ts(24) != to_ntp(t1_ms) {
        return Err(NtpError::NotOurs);
    }
    let (t2, t3) = (ts(32), ts(40));
    if t3 == 0 {
        return Err(NtpError::NoTime);
    }
    let (t1, t4) = (i128::from(t1_ms), i128::from(t4_ms));
    let (t2, t3) = (from_ntp(t2), from_ntp(t3));
    let offset = ((t2 - t1) + (t3 - t4)) / 2;
    let delay = ((t4 - t1) - (t3 - t2)).max(0);
    Ok(Reading {
        offset_ms: i64::try_from(offset).unwrap_or(if offset > 0 { i64::MAX } else { i64::MIN }),
        rtt_ms: u64::try_from(delay).unwrap_or(u64::MAX),
        stratum,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A server's reply to `req` with receive/transmit times `t2_ms`/`t3_ms` on its clock.
    fn reply(req: &[u8; PACKET_LEN], t2_ms: u64, t3_ms: u64, stratum: u8) -> [u8; PACKET_LEN] {
        let mut p = [0u8; PACKET_LEN];
        p[0] = (4 << 3) | 4;
        p[1] = stratum;
        p[24..32].copy_from_slice(&req[40..48]);
        p[32..40].copy_from_slice(&to_ntp(t2_ms).to_be_bytes());
        p[40..48].copy_from_slice(&to_ntp(t3_ms).to_be_bytes());
        p
    }

    #[test]
    fn timestamps_round_trip_and_known_values() {
        // RFC 5905 figure: 1970-01-01 is 2 208 988 800 s into era 0.
        assert_eq!(to_ntp(0) >> 32, 2_208_988_800);
        assert_eq!(to_ntp(500) & 0xffff_ffff, 1 << 31, "half a second");
        for ms in [0, 1, 999, 1_800_000_000_123, 2_085_978_496_000 + 5_000] {
            assert_eq!(from_ntp(to_ntp(ms)), i128::from(ms), "{ms}");
        }
    }

    #[test]
    fn a_clock_three_hours_behind_reads_plus_three_hours() {
        const HOUR: u64 = 3_600_000;
        let real = 1_800_000_000_000u64;
        let ours = real - 3 * HOUR;
        let req = request(ours);
        // 40 ms out, 2 ms in the server, 40 ms back.
        let rep = reply(&req, real + 40, real + 42, 2);
        let r = read_reply(&rep, ours, ours + 82).unwrap();
        assert_eq!(r.offset_ms, 3 * HOUR as i64);
        assert_eq!(r.rtt_ms, 80);
        // A node at 1970 (a Pi that never saved its clock).
        let req = request(5_000);
        let rep = reply(&req, real, real, 1);
        let r = read_reply(&rep, 5_000, 5_000).unwrap();
        assert_eq!(r.offset_ms, (real - 5_000) as i64);
    }

    #[test]
    fn replies_that_do_not_answer_us_are_refused() {
        let req = request(1_000_000);
        let good = reply(&req, 1_000_010, 1_000_010, 3);
        assert!(read_reply(&good, 1_000_000, 1_000_020).is_ok());
        assert_eq!(read_reply(&good[..47], 0, 0), Err(NtpError::Short(47)));
        let mut client = good;
        client[0] = (4 << 3) | 3;
        assert!(matches!(
            read_reply(&client, 1_000_000, 1_000_020),
            Err(NtpError::NotServer { mode: 3, .. })
        ));
        let mut kiss = good;
        kiss[1] = 0;
        assert!(matches!(
            read_reply(&kiss, 1_000_000, 1_000_020),
            Err(NtpError::Unsynchronised { stratum: 0, .. })
        ));
        let mut alarm = good;
        alarm[0] |= 3 << 6;
        assert!(matches!(
            read_reply(&alarm, 1_000_000, 1_000_020),
            Err(NtpError::Unsynchronised { leap: 3, .. })
        ));
        assert_eq!(
            read_reply(&good, 1_000_001, 1_000_020),
            Err(NtpError::NotOurs),
            "a reply to another request (or a forged one) is not used"
        );
        let mut none = good;
        none[40..48].fill(0);
        assert_eq!(
            read_reply(&none, 1_000_000, 1_000_020),
            Err(NtpError::NoTime)
        );
    }
}
