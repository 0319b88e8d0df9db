//! Prometheus metrics: the `[metrics]` section and the text exposition format (version 0.0.4)
//! the agent serves on `GET /metrics` (`docs/metrics.md`). Sans-IO: figures in, text out.

use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};

use serde::Deserialize;

/// The `Content-Type` of the text exposition format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// `[metrics] listen` by default: loopback only.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:9470";

/// `[metrics]`: where this node serves `/metrics`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MetricsConfig {
    /// `address:port` to serve on (default `127.0.0.1:9470`); `""` turns metrics off. Loopback,
    /// private, CGNAT/overlay, ULA and link-local addresses only, unless `public = true`.
    pub listen: String,
    /// Allow `listen` on a public or unspecified (`0.0.0.0`, `::`) address.
    pub public: bool,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        Self {
            listen: DEFAULT_LISTEN.into(),
            public: false,
        }
    }
}

impl MetricsConfig {
    /// The address to serve on (`None`: metrics off), or what to change.
    pub fn addr(&self) -> Result<Option<SocketAddr>, String> {
        if self.listen.is_empty() {
            return Ok(None);
        }
        let addr: SocketAddr = self.listen.parse().map_err(|_| {
            format!(
                "[metrics] listen `{}` is not an address:port (e.g. `{DEFAULT_LISTEN}`, \
                 `[fd00::1]:9470`); `\"\"` turns metrics off",
                self.listen
            )
        })?;
        if !self.public && !is_local(addr.ip()) {
            return Err(format!(
                "[metrics] listen {addr} is not a loopback, private or overlay address; set \
                 `public = true` to serve metrics there"
            ));
        }
        Ok(Some(addr))
    }
}

/// Loopback, RFC 1918, CGNAT (100.64/10, the overlay), link-local, IPv6 unique-local: the
/// addresses a listener may use without `public = true`.
pub fn is_local(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v) => {
            let o = v.octets();
            v.is_loopback()
                || v.is_private()
                || v.is_link_local()
                || (o[0] == 100 && (64..128).contains(&o[1]))
        }
        IpAddr::V6(v) => {
            let s = v.segments()[0];
            v.is_loopback() || (s & 0xfe00) == 0xfc00 || (s & 0xffc0) == 0xfe80
        }
    }
}

/// The type of a metric family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    /// Samples through [`Encoder::histogram`] only.
    Histogram,
}

/// Upper bounds (seconds) of the latency histograms' buckets (RPC calls, storage puts and gets):
/// from a loopback round trip to a large object over a slow link.
pub const LATENCY_BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0, 60.0,
];

/// A latency histogram over [`LATENCY_BUCKETS`] (plus `+Inf`): what is observed in one place
/// and encoded by [`Encoder::histogram`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Histogram {
    /// Observations per bucket (not cumulative); the last one is `+Inf`.
    counts: [u64; LATENCY_BUCKETS.len() + 1],
    sum: f64,
}

impl Histogram {
    pub fn observe(&mut self, d: std::time::Duration) {
        let s = d.as_secs_f64();
        let i = LATENCY_BUCKETS
            .iter()
            .position(|b| s <= *b)
            .unwrap_or(LATENCY_BUCKETS.len());
        self.counts[i] += 1;
        self.sum += s;
    }

    /// Observations in all.
    pub fn count(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// Seconds observed in all.
    pub fn sum(&self) -> f64 {
        self.sum
    }
}

/// Writes metric families in the text exposition format. Each family is one [`Encoder::family`]
/// call followed by its samples.
#[derive(Debug, Default)]
pub struct Encoder {
    out: String,
    family: String,
}

impl Encoder {
    pub fn new() -> Self {
        Self::default()
    }

    /// Starts the family `name` (`macula_<subsystem>_<what>_<unit>`; a counter's name ends in
    /// `_total`) with its `# HELP` and `# TYPE` lines.
    ///
    /// # Panics
    /// When `name` is not a valid metric name: names are constants of the caller.
    pub fn family(&mut self, name: &str, kind: Kind, help: &str) -> &mut Self {
        assert!(valid_name(name), "invalid metric name `{name}`");
        let kind = match kind {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        };
        let _ = writeln!(self.out, "# HELP {name} {}", escape(help, false));
        let _ = writeln!(self.out, "# TYPE {name} {kind}");
        self.family = name.to_owned();
        self
    }

    /// A sample of the current family, without labels.
    pub fn value(&mut self, value: impl Into<f64>) -> &mut Self {
        self.sample(&[], value)
    }

    /// A sample of the current family with `labels` (name, value).
    ///
    /// # Panics
    /// When no family was started or a label name is invalid (label names are constants).
    pub fn sample(&mut self, labels: &[(&str, &str)], value: impl Into<f64>) -> &mut Self {
        assert!(!self.family.is_empty(), "a sample before its family");
        let name = std::mem::take(&mut self.family);
        self.line(&name, "", labels, None, value.into());
        self.family = name;
        self
    }

    /// The samples of histogram `h` with `labels` in the current family (of kind
    /// [`Kind::Histogram`]): cumulative `_bucket` lines by `le`, then `_sum` and `_count`.
    ///
    /// # Panics
    /// As [`Encoder::sample`].
    pub fn histogram(&mut self, labels: &[(&str, &str)], h: &Histogram) -> &mut Self {
        assert!(!self.family.is_empty(), "a sample before its family");
        let name = std::mem::take(&mut self.family);
        let mut cumulative = 0;
        for (i, n) in h.counts.iter().enumerate() {
            cumulative += n;
            let le = LATENCY_BUCKETS.get(i).map_or(f64::INFINITY, |b| *b);
            self.line(&name, "_bucket", labels, Some(le), cumulative as f64);
        }
        self.line(&name, "_sum", labels, None, h.sum);
        self.line(&name, "_count", labels, None, cumulative as f64);
        self.family = name;
        self
    }

    /// One sample line: `family` + `suffix`, `labels` (and `le`), the value.
    fn line(
        &mut self,
        family: &str,
        suffix: &str,
        labels: &[(&str, &str)],
        le: Option<f64>,
        value: f64,
    ) {
        self.out.push_str(family);
        self.out.push_str(suffix);
        if !labels.is_empty() || le.is_some() {
            self.out.push('{');
            for (i, (name, v)) in labels.iter().enumerate() {
                assert!(
                    valid_name(name) && !name.contains(':'),
                    "invalid label name `{name}`"
                );
                if i > 0 {
                    self.out.push(',');
                }
                let _ = write!(self.out, "{name}=\"{}\"", escape(v, true));
            }
            if let Some(le) = le {
                if !labels.is_empty() {
                    self.out.push(',');
                }
                let _ = write!(self.out, "le=\"{}\"", number(le));
            }
            self.out.push('}');
        }
        let _ = writeln!(self.out, " {}", number(value));
    }

    /// The text, ready to serve.
    pub fn finish(self) -> String {
        self.out
    }
}

/// `[a-zA-Z_:][a-zA-Z0-9_:]*`
fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

/// HELP text escapes `\` and line feeds; label values also `"`.
fn escape(text: &str, quote: bool) -> String {
    let mut s = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\\' => s.push_str("\\\\"),
            '\n' => s.push_str("\\n"),
            '"' if quote => s.push_str("\\\""),
            c => s.push(c),
        }
    }
    s
}

fn number(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 { "+Inf" } else { "-Inf" }.into()
    } else {
        // Integers print without a fraction; Rust's shortest round-trip form otherwise.
        format!("{v}")
    }
}

/// This process's resident memory (bytes, from `/proc/self/statm`) and CPU time (seconds, user +
/// system, from `/proc/self/stat`); `None` where there are no such files. (The resident size is
/// read from `statm`: qemu-user, which runs the aarch64 tests, fakes `stat` with zeros there.)
pub fn process_usage() -> Option<(u64, f64)> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let (rss, cpu) = parse_stat(&stat, page_size(), clock_ticks())?;
    let resident = std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|m| parse_statm(&m, page_size()))
        .unwrap_or(rss);
    Some((resident, cpu))
}

/// Field 2 (resident, pages) of `/proc/<pid>/statm`, in bytes.
fn parse_statm(statm: &str, page: u64) -> Option<u64> {
    let resident = statm.split_whitespace().nth(1)?.parse::<u64>().ok()?;
    Some(resident * page)
}

fn page_size() -> u64 {
    // SAFETY: sysconf only reads a system constant.
    u64::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) }).unwrap_or(4096)
}

fn clock_ticks() -> u64 {
    // SAFETY: as above.
    u64::try_from(unsafe { libc::sysconf(libc::_SC_CLK_TCK) }).unwrap_or(100)
}

/// Fields 14 (utime), 15 (stime) and 24 (rss, pages) of `/proc/<pid>/stat`, counted after the
/// command name in parentheses (which may hold spaces and parentheses itself).
fn parse_stat(stat: &str, page: u64, ticks: u64) -> Option<(u64, f64)> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // `rest` starts at field 3 (state).
    let field = |n: usize| f.get(n - 3)?.parse::<u64>().ok();
    let (utime, stime, rss) = (field(14)?, field(15)?, field(24)?);
    Some((rss * page, (utime + stime) as f64 / ticks.max(1) as f64))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn help_type_and_samples() {
        let mut e = Encoder::new();
        e.family("macula_test_things_total", Kind::Counter, "Things done.")
            .value(3u32);
        e.family("macula_test_members", Kind::Gauge, "Members by state.")
            .sample(&[("state", "alive")], 2u32)
            .sample(&[("state", "down"), ("site", "b")], 0.5);
        assert_eq!(
            e.finish(),
            "# HELP macula_test_things_total Things done.\n\
             # TYPE macula_test_things_total counter\n\
             macula_test_things_total 3\n\
             # HELP macula_test_members Members by state.\n\
             # TYPE macula_test_members gauge\n\
             macula_test_members{state=\"alive\"} 2\n\
             macula_test_members{state=\"down\",site=\"b\"} 0.5\n"
        );
    }

    #[test]
    fn histograms() {
        let mut h = Histogram::default();
        h.observe(std::time::Duration::from_micros(300));
        h.observe(std::time::Duration::from_millis(3));
        h.observe(std::time::Duration::from_secs(100));
        assert_eq!(h.count(), 3);
        assert!((h.sum() - 100.0033).abs() < 1e-9);
        let mut e = Encoder::new();
        e.family("macula_t_duration_seconds", Kind::Histogram, "Durations.")
            .histogram(&[("p", "x")], &h);
        let text = e.finish();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[1], "# TYPE macula_t_duration_seconds histogram");
        assert_eq!(
            lines[2],
            "macula_t_duration_seconds_bucket{p=\"x\",le=\"0.0005\"} 1"
        );
        assert_eq!(
            lines[5],
            "macula_t_duration_seconds_bucket{p=\"x\",le=\"0.005\"} 2"
        );
        assert_eq!(
            lines[15],
            "macula_t_duration_seconds_bucket{p=\"x\",le=\"60\"} 2"
        );
        assert_eq!(
            lines[16],
            "macula_t_duration_seconds_bucket{p=\"x\",le=\"+Inf\"} 3"
        );
        assert_eq!(lines[17], "macula_t_duration_seconds_sum{p=\"x\"} 100.0033");
        assert_eq!(lines[18], "macula_t_duration_seconds_count{p=\"x\"} 3");
        assert_eq!(lines.len(), 19);
        let mut e = Encoder::new();
        e.family("h", Kind::Histogram, "No labels.")
            .histogram(&[], &Histogram::default());
        assert!(
            e.finish()
                .contains("\nh_bucket{le=\"+Inf\"} 0\nh_sum 0\nh_count 0\n")
        );
    }

    #[test]
    fn escaping() {
        let mut e = Encoder::new();
        e.family("m", Kind::Gauge, "a \\ b\nc \"q\"")
            .sample(&[("l", "x\\y\n\"z\"")], 1u8);
        assert_eq!(
            e.finish(),
            "# HELP m a \\\\ b\\nc \"q\"\n# TYPE m gauge\nm{l=\"x\\\\y\\n\\\"z\\\"\"} 1\n"
        );
        assert_eq!(number(f64::NAN), "NaN");
        assert_eq!(number(f64::INFINITY), "+Inf");
        assert_eq!(number(f64::NEG_INFINITY), "-Inf");
        assert_eq!(number(1.25), "1.25");
        assert_eq!(number(u64::MAX as f64), "18446744073709552000");
    }

    #[test]
    #[should_panic(expected = "invalid metric name")]
    fn bad_names_are_refused() {
        Encoder::new().family("macula-bad", Kind::Gauge, "x");
    }

    #[test]
    fn names() {
        assert!(valid_name("macula_storage_bytes"));
        assert!(valid_name("a:b_c9"));
        assert!(!valid_name("9a"));
        assert!(!valid_name(""));
        assert!(!valid_name("a b"));
    }

    #[test]
    fn listen_addresses() {
        let mut c = MetricsConfig::default();
        assert_eq!(c.addr().unwrap(), Some(DEFAULT_LISTEN.parse().unwrap()));
        for ok in ["10.1.2.3:1", "100.64.0.1:1", "[fd00::1]:1", "[::1]:1"] {
            c.listen = ok.into();
            assert!(c.addr().unwrap().is_some(), "{ok}");
        }
        for bad in ["0.0.0.0:1", "8.8.8.8:1", "[::]:1"] {
            c.listen = bad.into();
            assert!(c.addr().unwrap_err().contains("public = true"), "{bad}");
        }
        c.public = true;
        assert!(c.addr().unwrap().is_some());
        c.listen = "localhost".into();
        assert!(c.addr().unwrap_err().contains("not an address:port"));
        c.listen = String::new();
        assert_eq!(c.addr().unwrap(), None);
    }

    #[test]
    fn proc_stat() {
        let stat = "1234 (a (b) c) S 1 2 3 4 5 6 7 8 9 10 150 50 0 0 20 0 3 0 99 123456 300 rest";
        assert_eq!(parse_stat(stat, 4096, 100), Some((300 * 4096, 2.0)));
        assert_eq!(parse_stat("garbage", 4096, 100), None);
        assert_eq!(
            parse_statm("5000 300 200 10 0 900 0\n", 4096),
            Some(300 * 4096)
        );
        assert_eq!(parse_statm("5000\n", 4096), None);
        let (rss, cpu) = process_usage().unwrap();
        assert!(rss > 0 && cpu >= 0.0);
    }
}
