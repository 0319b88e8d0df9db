//! The HTTP/1.1 request head parser and response head writer (sans-IO: bytes in, values out).

use crate::error::{Code, S3Error};

/// Largest request head accepted (request line and headers).
pub const MAX_HEAD: usize = 16 * 1024;
/// Most header lines accepted.
pub const MAX_HEADERS: usize = 100;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Head {
    pub method: String,
    pub raw_path: String,
    pub raw_query: String,
    /// Names lower-cased, values trimmed, in order.
    pub headers: Vec<(String, String)>,
    /// The connection stays open after the response (HTTP/1.1 without `Connection: close`).
    pub keep_alive: bool,
    /// The body's length (`Content-Length`; 0 without one, and for a chunked body).
    pub content_length: u64,
    /// `Transfer-Encoding: chunked`: the body's length is known only at its end
    /// (`chunked::Framing::http`). Servers that read no such bodies refuse it.
    pub chunked: bool,
    /// `Expect: 100-continue`: send `100 Continue` before reading the body.
    pub expect_continue: bool,
}

impl Head {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Parses a request head from the start of `buf`. `Ok(None)`: more bytes needed;
/// `Ok(Some((head, n)))`: the head took `n` bytes.
pub fn parse_head(buf: &[u8]) -> Result<Option<(Head, usize)>, S3Error> {
    let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
        if buf.len() > MAX_HEAD {
            return Err(bad("the request head is larger than 16 KiB"));
        }
        return Ok(None);
    };
    if end > MAX_HEAD {
        return Err(bad("the request head is larger than 16 KiB"));
    }
    let text =
        std::str::from_utf8(&buf[..end]).map_err(|_| bad("the request head is not UTF-8"))?;
    let mut lines = text.split("\r\n");
    let line = lines.next().unwrap_or_default();
    let mut parts = line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(bad("malformed request line"));
    };
    if !method.bytes().all(|c| c.is_ascii_uppercase()) || method.is_empty() {
        return Err(bad("malformed method"));
    }
    let http11 = match version {
        "HTTP/1.1" => true,
        "HTTP/1.0" => false,
        _ => return Err(bad("only HTTP/1.0 and HTTP/1.1 are served")),
    };
    let (raw_path, raw_query) = target.split_once('?').unwrap_or((target, ""));
    let mut headers = Vec::new();
    for l in lines {
        let (n, v) = l
            .split_once(':')
            .ok_or_else(|| bad("malformed header line"))?;
        if n.is_empty() || n.bytes().any(|c| c.is_ascii_whitespace()) {
            return Err(bad("malformed header name"));
        }
        headers.push((n.to_ascii_lowercase(), v.trim().to_string()));
        if headers.len() > MAX_HEADERS {
            return Err(bad("too many headers"));
        }
    }
    let mut head = Head {
        method: method.to_string(),
        raw_path: raw_path.to_string(),
        raw_query: raw_query.to_string(),
        headers,
        keep_alive: http11,
        content_length: 0,
        chunked: false,
        expect_continue: false,
    };
    if let Some(c) = head.header("connection") {
        let c = c.to_ascii_lowercase();
        if c.contains("close") {
            head.keep_alive = false;
        } else if c.contains("keep-alive") {
            head.keep_alive = true;
        }
    }
    if let Some(te) = head.header("transfer-encoding") {
        if !te.eq_ignore_ascii_case("chunked") {
            return Err(S3Error::new(
                Code::NotImplemented,
                "only Transfer-Encoding: chunked is supported",
            ));
        }
        // Both framings at once is how requests are smuggled past proxies (RFC 9112 §6.3).
        if head.header("content-length").is_some() {
            return Err(bad("Transfer-Encoding and Content-Length together"));
        }
        head.chunked = true;
    }
    let lens: Vec<&str> = head
        .headers
        .iter()
        .filter(|(n, _)| n == "content-length")
        .map(|(_, v)| v.as_str())
        .collect();
    head.content_length = match lens.as_slice() {
        [] => 0,
        [one] => one.parse().map_err(|_| bad("bad Content-Length"))?,
        _ => return Err(bad("more than one Content-Length")),
    };
    head.expect_continue = head
        .header("expect")
        .is_some_and(|e| e.eq_ignore_ascii_case("100-continue"));
    Ok(Some((head, end + 4)))
}

fn bad(msg: &str) -> S3Error {
    S3Error::new(Code::InvalidRequest, msg)
}

/// A response head with `Content-Length` and the given headers.
pub fn response_head(
    status: u16,
    headers: &[(&str, String)],
    content_length: u64,
    keep_alive: bool,
) -> Vec<u8> {
    let mut s = format!("HTTP/1.1 {status} {}\r\n", reason(status));
    for (n, v) in headers {
        // Values come from the index and the request; never let one split the head.
        let v: String = v.chars().filter(|c| *c != '\r' && *c != '\n').collect();
        s.push_str(&format!("{n}: {v}\r\n"));
    }
    s.push_str(&format!("Content-Length: {content_length}\r\n"));
    if !keep_alive {
        s.push_str("Connection: close\r\n");
    }
    s.push_str("\r\n");
    s.into_bytes()
}

fn reason(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        200 => "OK",
        204 => "No Content",
        206 => "Partial Content",
        304 => "Not Modified",
        400 => "Bad Request",
        403 => "Forbidden",
        404 => "Not Found",
        401 => "Unauthorized",
        405 => "Method Not Allowed",
        409 => "Conflict",
        411 => "Length Required",
        412 => "Precondition Failed",
        413 => "Content Too Large",
        416 => "Range Not Satisfiable",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        503 => "Service Unavailable",
        _ => "Unknown",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_heads_incrementally() {
        let req = b"PUT /b/k?x=1 HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\nhello";
        assert_eq!(parse_head(&req[..20]).unwrap(), None);
        let (h, n) = parse_head(req).unwrap().unwrap();
        assert_eq!(&req[n..], b"hello");
        assert_eq!(
            (h.method.as_str(), h.raw_path.as_str(), h.raw_query.as_str()),
            ("PUT", "/b/k", "x=1")
        );
        assert_eq!(h.header("host"), Some("h"));
        assert_eq!(h.content_length, 5);
        assert!(h.keep_alive && h.expect_continue);
        let (h, _) = parse_head(b"GET / HTTP/1.0\r\n\r\n").unwrap().unwrap();
        assert!(!h.keep_alive);
        let (h, _) = parse_head(b"PUT / HTTP/1.1\r\nTransfer-Encoding: Chunked\r\n\r\n")
            .unwrap()
            .unwrap();
        assert!(h.chunked && h.content_length == 0);
    }

    #[test]
    fn refuses_bad_heads() {
        for bad in [
            &b"GET /\r\n\r\n"[..],
            b"GET / HTTP/2\r\n\r\n",
            b"GET / HTTP/1.1\r\nNoColon\r\n\r\n",
            b"GET / HTTP/1.1\r\nContent-Length: x\r\n\r\n",
            b"GET / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
            b"PUT / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
            b"PUT / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n",
        ] {
            assert!(parse_head(bad).is_err(), "{}", String::from_utf8_lossy(bad));
        }
        assert!(parse_head(&vec![b'a'; MAX_HEAD + 1]).is_err());
    }

    #[test]
    fn response_heads_cannot_be_split() {
        let h = response_head(200, &[("ETag", "\"a\"\r\nX: y".into())], 3, false);
        let s = String::from_utf8(h).unwrap();
        assert!(s.starts_with("HTTP/1.1 200 OK\r\nETag: \"a\"X: y\r\nContent-Length: 3\r\nConnection: close\r\n\r\n"), "{s}");
    }
}
