//! AWS Signature Version 4 verification (sans-IO): the `Authorization` header form and the
//! presigned query form, with a signed payload hash, `UNSIGNED-PAYLOAD`, or a `STREAMING-…`
//! mode (aws-chunked bodies: `chunked`).
//!
//! The caller passes the request as received (raw path and query, lower-cased header names) and
//! the current unix time; nothing here reads a clock or the network. Signatures are compared in
//! constant time (`ring::hmac::verify`).

use ring::{digest, hmac};

use crate::error::{Code, S3Error};

/// A request's parts as SigV4 sees them.
#[derive(Debug, Clone)]
pub struct SignedRequest<'a> {
    pub method: &'a str,
    /// The path as sent (percent-encoded), without the query.
    pub raw_path: &'a str,
    /// The query as sent (after `?`), possibly empty.
    pub raw_query: &'a str,
    /// Header names lower-cased; repeated headers appear repeatedly.
    pub headers: &'a [(String, String)],
}

impl SignedRequest<'_> {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// What the client says about the body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Payload {
    /// `UNSIGNED-PAYLOAD`: the body is not covered by the signature.
    Unsigned,
    /// The body's SHA-256, which the gateway must check once it has read the body.
    Sha256([u8; 32]),
    /// `STREAMING-…` (aws-chunked): the modes `chunked::Framing` reads are served, others 501.
    Streaming(String),
}

/// A parsed, not yet verified, SigV4 authorization.
#[derive(Debug, Clone)]
pub struct Authorization {
    pub access_key: String,
    /// `YYYYMMDD` of the credential scope.
    pub date: String,
    pub region: String,
    pub service: String,
    pub signed_headers: Vec<String>,
    pub signature: Vec<u8>,
    /// `x-amz-date` / `X-Amz-Date` (`YYYYMMDDTHHMMSSZ`).
    pub amz_date: String,
    pub payload: Payload,
    /// Presigned: seconds the URL is valid from `amz_date`.
    pub expires: Option<u64>,
}

const ALGORITHM: &str = "AWS4-HMAC-SHA256";
/// Largest clock difference accepted for header-signed requests (as S3: 15 minutes).
pub const MAX_SKEW_SECS: u64 = 15 * 60;
/// Longest presigned validity (as S3: 7 days).
pub const MAX_EXPIRES_SECS: u64 = 7 * 24 * 3600;
const EMPTY_SHA256: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

fn malformed(msg: impl Into<String>) -> S3Error {
    S3Error::new(Code::AuthorizationHeaderMalformed, msg)
}

/// Parses the request's SigV4 authorization; `Ok(None)` for an anonymous request.
pub fn parse(req: &SignedRequest<'_>) -> Result<Option<Authorization>, S3Error> {
    if let Some(h) = req.header("authorization") {
        return parse_header(req, h).map(Some);
    }
    let q = parse_query(req.raw_query);
    if q.iter().any(|(k, _)| k == "X-Amz-Signature") {
        return parse_presigned(&q).map(Some);
    }
    Ok(None)
}

fn parse_header(req: &SignedRequest<'_>, h: &str) -> Result<Authorization, S3Error> {
    let rest = h.strip_prefix(ALGORITHM).ok_or_else(|| {
        S3Error::new(
            Code::InvalidRequest,
            "only AWS4-HMAC-SHA256 (SigV4) is supported",
        )
    })?;
    let (mut cred, mut signed, mut sig) = (None, None, None);
    for part in rest.split(',') {
        let part = part.trim();
        if let Some(v) = part.strip_prefix("Credential=") {
            cred = Some(v);
        } else if let Some(v) = part.strip_prefix("SignedHeaders=") {
            signed = Some(v);
        } else if let Some(v) = part.strip_prefix("Signature=") {
            sig = Some(v);
        }
    }
    let (cred, signed, sig) = match (cred, signed, sig) {
        (Some(c), Some(s), Some(g)) => (c, s, g),
        _ => {
            return Err(malformed(
                "Authorization needs Credential, SignedHeaders and Signature",
            ));
        }
    };
    let amz_date = req
        .header("x-amz-date")
        .ok_or_else(|| malformed("x-amz-date is missing"))?
        .to_string();
    let payload = match req.header("x-amz-content-sha256") {
        None => {
            return Err(S3Error::new(
                Code::InvalidRequest,
                "x-amz-content-sha256 is missing",
            ));
        }
        Some(v) => parse_payload(v)?,
    };
    build(cred, signed, sig, amz_date, payload, None)
}

fn parse_presigned(q: &[(String, String)]) -> Result<Authorization, S3Error> {
    let get = |name: &str| {
        q.iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .ok_or_else(|| malformed(format!("presigned URL without {name}")))
    };
    if get("X-Amz-Algorithm")? != ALGORITHM {
        return Err(S3Error::new(
            Code::InvalidRequest,
            "only AWS4-HMAC-SHA256 (SigV4) is supported",
        ));
    }
    let expires: u64 = get("X-Amz-Expires")?
        .parse()
        .map_err(|_| malformed("X-Amz-Expires is not a number"))?;
    if expires > MAX_EXPIRES_SECS {
        return Err(S3Error::new(
            Code::AuthorizationQueryParametersError,
            "X-Amz-Expires must be at most 604800 seconds",
        ));
    }
    build(
        get("X-Amz-Credential")?,
        get("X-Amz-SignedHeaders")?,
        get("X-Amz-Signature")?,
        get("X-Amz-Date")?.to_string(),
        Payload::Unsigned,
        Some(expires),
    )
}

fn parse_payload(v: &str) -> Result<Payload, S3Error> {
    if v == "UNSIGNED-PAYLOAD" {
        return Ok(Payload::Unsigned);
    }
    if v.starts_with("STREAMING-") {
        return Ok(Payload::Streaming(v.to_string()));
    }
    match decode_hex(v).and_then(|b| <[u8; 32]>::try_from(b).ok()) {
        Some(h) => Ok(Payload::Sha256(h)),
        None => Err(S3Error::new(
            Code::InvalidArgument,
            "x-amz-content-sha256 must be a hex SHA-256 or UNSIGNED-PAYLOAD",
        )),
    }
}

fn build(
    cred: &str,
    signed: &str,
    sig: &str,
    amz_date: String,
    payload: Payload,
    expires: Option<u64>,
) -> Result<Authorization, S3Error> {
    let mut c = cred.split('/');
    let (Some(ak), Some(date), Some(region), Some(service), Some("aws4_request"), None) =
        (c.next(), c.next(), c.next(), c.next(), c.next(), c.next())
    else {
        return Err(malformed(
            "Credential must be <key>/<date>/<region>/<service>/aws4_request",
        ));
    };
    let signature = decode_hex(sig)
        .filter(|s| s.len() == 32)
        .ok_or_else(|| malformed("Signature must be 64 hex digits"))?;
    let signed_headers: Vec<String> = signed.split(';').map(str::to_string).collect();
    if !signed_headers.iter().any(|h| h == "host") {
        return Err(malformed("SignedHeaders must include host"));
    }
    if amz_date.len() != 16 || !amz_date.starts_with(date) {
        return Err(malformed("the credential date does not match x-amz-date"));
    }
    Ok(Authorization {
        access_key: ak.to_string(),
        date: date.to_string(),
        region: region.to_string(),
        service: service.to_string(),
        signed_headers,
        signature,
        amz_date,
        payload,
        expires,
    })
}

impl Authorization {
    /// Checks the signature with `secret`, the scope against `region`, and the time against
    /// `now` (unix seconds).
    pub fn verify(
        &self,
        req: &SignedRequest<'_>,
        secret: &[u8],
        region: &str,
        now: u64,
    ) -> Result<(), S3Error> {
        if self.service != "s3" {
            return Err(malformed(format!(
                "the credential's service is {}, expected s3",
                self.service
            )));
        }
        if self.region != region {
            return Err(malformed(format!(
                "the region '{}' is wrong; expecting '{region}'",
                self.region
            )));
        }
        let t = parse_amz_date(&self.amz_date).ok_or_else(|| malformed("bad x-amz-date"))?;
        match self.expires {
            Some(e) => {
                if now > t.saturating_add(e) {
                    return Err(S3Error::new(Code::AccessDenied, "Request has expired"));
                }
                if t > now + MAX_SKEW_SECS {
                    return Err(S3Error::new(Code::AccessDenied, "Request is not valid yet"));
                }
            }
            None => {
                if t.abs_diff(now) > MAX_SKEW_SECS {
                    return Err(S3Error::new(
                        Code::RequestTimeTooSkewed,
                        "The difference between the request time and the server's time is too large",
                    ));
                }
            }
        }
        let sts = self.string_to_sign(req)?;
        let key = signing_key(secret, &self.date, &self.region, &self.service);
        hmac::verify(&key, sts.as_bytes(), &self.signature).map_err(|_| {
            S3Error::new(
                Code::SignatureDoesNotMatch,
                "The request signature we calculated does not match the signature you provided. Check your key and signing method.",
            )
        })
    }

    fn string_to_sign(&self, req: &SignedRequest<'_>) -> Result<String, S3Error> {
        let canonical = self.canonical_request(req)?;
        let hash = hex(digest::digest(&digest::SHA256, canonical.as_bytes()).as_ref());
        Ok(format!(
            "{ALGORITHM}\n{}\n{}/{}/{}/aws4_request\n{hash}",
            self.amz_date, self.date, self.region, self.service
        ))
    }

    fn canonical_request(&self, req: &SignedRequest<'_>) -> Result<String, S3Error> {
        let mut out = String::with_capacity(512);
        out.push_str(req.method);
        out.push('\n');
        out.push_str(&uri_encode(&percent_decode(req.raw_path), false));
        out.push('\n');
        let mut q: Vec<(String, String)> = parse_query(req.raw_query)
            .into_iter()
            .filter(|(k, _)| self.expires.is_none() || k != "X-Amz-Signature")
            .map(|(k, v)| (uri_encode(&k, true), uri_encode(&v, true)))
            .collect();
        q.sort();
        let q: Vec<String> = q.into_iter().map(|(k, v)| format!("{k}={v}")).collect();
        out.push_str(&q.join("&"));
        out.push('\n');
        let mut names = self.signed_headers.clone();
        names.sort();
        for name in &names {
            let values: Vec<String> = req
                .headers
                .iter()
                .filter(|(n, _)| n == name)
                .map(|(_, v)| v.split_whitespace().collect::<Vec<_>>().join(" "))
                .collect();
            if values.is_empty() {
                return Err(malformed(format!("signed header {name} is missing")));
            }
            out.push_str(name);
            out.push(':');
            out.push_str(&values.join(","));
            out.push('\n');
        }
        out.push('\n');
        out.push_str(&names.join(";"));
        out.push('\n');
        match &self.payload {
            Payload::Unsigned => out.push_str("UNSIGNED-PAYLOAD"),
            Payload::Sha256(h) => out.push_str(&hex(h)),
            Payload::Streaming(s) => out.push_str(s),
        }
        Ok(out)
    }
}

/// The SigV4 signing key for a day, region and service.
pub fn signing_key(secret: &[u8], date: &str, region: &str, service: &str) -> hmac::Key {
    let mut k = b"AWS4".to_vec();
    k.extend_from_slice(secret);
    let mut key = hmac::Key::new(hmac::HMAC_SHA256, &k);
    for part in [date, region, service, "aws4_request"] {
        let tag = hmac::sign(&key, part.as_bytes());
        key = hmac::Key::new(hmac::HMAC_SHA256, tag.as_ref());
    }
    key
}

/// SHA-256 of the empty body, as `x-amz-content-sha256` carries it.
pub fn empty_sha256() -> &'static str {
    EMPTY_SHA256
}

/// `YYYYMMDDTHHMMSSZ` → unix seconds.
pub fn parse_amz_date(s: &str) -> Option<u64> {
    let b = s.as_bytes();
    if b.len() != 16 || b[8] != b'T' || b[15] != b'Z' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<u64> {
        let t = s.get(r)?;
        t.bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| t.parse().ok())?
    };
    let (y, mo, d) = (num(0..4)?, num(4..6)?, num(6..8)?);
    let (h, mi, se) = (num(9..11)?, num(11..13)?, num(13..15)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || se > 60 {
        return None;
    }
    Some(days_from_civil(y, mo, d) * 86_400 + h * 3600 + mi * 60 + se)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (y ≥ 1970).
fn days_from_civil(y: u64, m: u64, d: u64) -> u64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y / 400;
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    (era * 146_097 + doe).saturating_sub(719_468)
}

/// Unix seconds → (`YYYYMMDDTHHMMSSZ`, RFC 1123 `Last-Modified` form).
pub fn format_times(unix: u64) -> (String, String) {
    let days = unix / 86_400;
    let rem = unix % 86_400;
    let (h, mi, s) = (rem / 3600, rem % 3600 / 60, rem % 60);
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + u64::from(m <= 2);
    let wd = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"][(days % 7) as usize];
    let mon = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ][(m - 1) as usize];
    (
        format!("{y:04}{m:02}{d:02}T{h:02}{mi:02}{s:02}Z"),
        format!("{wd}, {d:02} {mon} {y:04} {h:02}:{mi:02}:{s:02} GMT"),
    )
}

/// Splits a raw query into decoded (name, value) pairs.
pub fn parse_query(raw: &str) -> Vec<(String, String)> {
    raw.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

/// Decodes `%XX` escapes (and `+` stays `+`, as S3 signs it); invalid escapes stay as they are.
pub fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            let hv = |c: u8| (c as char).to_digit(16);
            if let (Some(h), Some(l)) = (hv(b[i + 1]), hv(b[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// SigV4's URI encoding: everything but `A-Za-z0-9-._~` (and `/` unless `slash`) as `%XX`.
pub fn uri_encode(s: &str, slash: bool) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.bytes() {
        if c.is_ascii_alphanumeric() || b"-._~".contains(&c) || (c == b'/' && !slash) {
            out.push(c as char);
        } else {
            out.push_str(&format!("%{c:02X}"));
        }
    }
    out
}

pub fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

pub fn decode_hex(s: &str) -> Option<Vec<u8>> {
    if s.len() % 2 != 0 {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The AWS SigV4 test suite's secret.
    const SECRET: &[u8] = b"wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";
    /// The S3 documentation's examples' secret.
    const S3_SECRET: &[u8] = b"wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";

    fn h(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    /// AWS SigV4 test suite, `get-vanilla` (service "service", so checked below the s3 gate).
    #[test]
    fn aws_suite_get_vanilla() {
        let headers = h(&[
            ("host", "example.amazonaws.com"),
            ("x-amz-date", "20150830T123600Z"),
        ]);
        let req = SignedRequest {
            method: "GET",
            raw_path: "/",
            raw_query: "",
            headers: &headers,
        };
        let a = Authorization {
            access_key: "AKIDEXAMPLE".into(),
            date: "20150830".into(),
            region: "us-east-1".into(),
            service: "service".into(),
            signed_headers: vec!["host".into(), "x-amz-date".into()],
            signature: vec![],
            amz_date: "20150830T123600Z".into(),
            payload: Payload::Sha256(decode_hex(EMPTY_SHA256).unwrap().try_into().unwrap()),
            expires: None,
        };
        let sts = a.string_to_sign(&req).unwrap();
        let key = signing_key(SECRET, "20150830", "us-east-1", "service");
        assert_eq!(
            hex(hmac::sign(&key, sts.as_bytes()).as_ref()),
            "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31"
        );
    }

    /// The S3 documentation's "GET Object" example (header auth, Range signed).
    fn s3_get_example() -> (Vec<(String, String)>, String) {
        let sig = "f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41";
        let headers = h(&[
            ("host", "examplebucket.s3.amazonaws.com"),
            ("range", "bytes=0-9"),
            ("x-amz-content-sha256", EMPTY_SHA256),
            ("x-amz-date", "20130524T000000Z"),
            (
                "authorization",
                &format!(
                    "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request,SignedHeaders=host;range;x-amz-content-sha256;x-amz-date,Signature={sig}"
                ),
            ),
        ]);
        (headers, sig.into())
    }

    #[test]
    fn s3_doc_header_example_verifies_and_tampering_fails() {
        let now = parse_amz_date("20130524T000000Z").unwrap();
        let (headers, _) = s3_get_example();
        let req = SignedRequest {
            method: "GET",
            raw_path: "/test.txt",
            raw_query: "",
            headers: &headers,
        };
        let a = parse(&req).unwrap().unwrap();
        assert_eq!(a.access_key, "AKIAIOSFODNN7EXAMPLE");
        a.verify(&req, S3_SECRET, "us-east-1", now + 60).unwrap();
        // Wrong secret, changed range, changed path, wrong region, skewed clock.
        let e = a.verify(&req, b"other", "us-east-1", now).unwrap_err();
        assert_eq!(e.code, Code::SignatureDoesNotMatch);
        let mut h2 = headers.clone();
        h2[1].1 = "bytes=0-10".into();
        let r2 = SignedRequest {
            headers: &h2,
            ..req.clone()
        };
        assert_eq!(
            a.verify(&r2, S3_SECRET, "us-east-1", now).unwrap_err().code,
            Code::SignatureDoesNotMatch
        );
        let r3 = SignedRequest {
            raw_path: "/test.txx",
            ..req.clone()
        };
        assert_eq!(
            a.verify(&r3, S3_SECRET, "us-east-1", now).unwrap_err().code,
            Code::SignatureDoesNotMatch
        );
        assert_eq!(
            a.verify(&req, S3_SECRET, "eu-west-1", now)
                .unwrap_err()
                .code,
            Code::AuthorizationHeaderMalformed
        );
        assert_eq!(
            a.verify(&req, S3_SECRET, "us-east-1", now + 3600)
                .unwrap_err()
                .code,
            Code::RequestTimeTooSkewed
        );
    }

    /// The S3 documentation's presigned URL example (GET /test.txt, valid 86400 s).
    #[test]
    fn s3_doc_presigned_example() {
        let headers = h(&[("host", "examplebucket.s3.amazonaws.com")]);
        let query = "X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F20130524%2Fus-east-1%2Fs3%2Faws4_request&X-Amz-Date=20130524T000000Z&X-Amz-Expires=86400&X-Amz-SignedHeaders=host&X-Amz-Signature=aeeed9bbccd4d02ee5c0109b86d86835f995330da4c265957d157751f604d404";
        let req = SignedRequest {
            method: "GET",
            raw_path: "/test.txt",
            raw_query: query,
            headers: &headers,
        };
        let a = parse(&req).unwrap().unwrap();
        let t = parse_amz_date("20130524T000000Z").unwrap();
        a.verify(&req, S3_SECRET, "us-east-1", t + 100).unwrap();
        assert_eq!(
            a.verify(&req, S3_SECRET, "us-east-1", t + 86_401)
                .unwrap_err()
                .code,
            Code::AccessDenied
        );
        let put = SignedRequest {
            method: "PUT",
            ..req.clone()
        };
        assert_eq!(
            a.verify(&put, S3_SECRET, "us-east-1", t).unwrap_err().code,
            Code::SignatureDoesNotMatch
        );
    }

    #[test]
    fn anonymous_and_malformed() {
        let headers = h(&[("host", "x")]);
        let req = SignedRequest {
            method: "GET",
            raw_path: "/",
            raw_query: "",
            headers: &headers,
        };
        assert!(parse(&req).unwrap().is_none());
        let bad = h(&[
            ("host", "x"),
            ("authorization", "AWS4-HMAC-SHA256 Credential=a/b"),
        ]);
        let req = SignedRequest {
            headers: &bad,
            ..req
        };
        assert_eq!(
            parse(&req).unwrap_err().code,
            Code::AuthorizationHeaderMalformed
        );
    }

    #[test]
    fn dates() {
        assert_eq!(parse_amz_date("19700101T000000Z"), Some(0));
        assert_eq!(parse_amz_date("20150830T123600Z"), Some(1_440_938_160));
        assert_eq!(parse_amz_date("2015-08-30T12:36"), None);
        let (amz, http) = format_times(1_440_938_160);
        assert_eq!(amz, "20150830T123600Z");
        assert_eq!(http, "Sun, 30 Aug 2015 12:36:00 GMT");
    }

    #[test]
    fn encoding() {
        assert_eq!(uri_encode("a b/c~", false), "a%20b/c~");
        assert_eq!(uri_encode("a/b", true), "a%2Fb");
        assert_eq!(percent_decode("a%2Fb%zz%"), "a/b%zz%");
    }
}
