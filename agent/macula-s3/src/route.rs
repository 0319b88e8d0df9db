//! Request routing: path-style (`/bucket/key`) and virtual-host-style (`bucket.<domain>/key`)
//! addressing, and the operation a method + query selects.

use crate::error::{Code, S3Error};
use crate::sigv4::{parse_query, percent_decode};

/// The S3 operations the gateway tells apart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    ListBuckets,
    CreateBucket,
    HeadBucket,
    DeleteBucket,
    GetBucketLocation,
    ListObjectsV2,
    /// ListObjects (v1, `marker`).
    ListObjectsV1,
    /// ListObjectVersions of an unversioned bucket (every object once, `VersionId` `null`).
    ListObjectVersions,
    DeleteObjects,
    /// PutObject with `x-amz-copy-source`.
    CopyObject,
    PutObject,
    CreateMultipartUpload,
    UploadPart,
    CompleteMultipartUpload,
    AbortMultipartUpload,
    ListParts,
    ListMultipartUploads,
    GetObject,
    HeadObject,
    DeleteObject,
    /// Recognised but not implemented: answered 501 NotImplemented (the name is for the message).
    NotImplemented(&'static str),
}

/// A routed request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub op: Op,
    pub bucket: Option<String>,
    pub key: Option<String>,
    /// Decoded query parameters.
    pub query: Vec<(String, String)>,
}

impl Route {
    pub fn param(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    fn has(&self, name: &str) -> bool {
        self.param(name).is_some()
    }
}

/// Routes a request. `domain` is the gateway's virtual-host domain (e.g. `s3.example.lan`): a
/// `Host` of `<bucket>.<domain>` names the bucket; any other host is path-style.
pub fn route(
    method: &str,
    raw_path: &str,
    raw_query: &str,
    host: Option<&str>,
    domain: Option<&str>,
) -> Result<Route, S3Error> {
    let path = percent_decode(raw_path);
    let path = path
        .strip_prefix('/')
        .ok_or_else(|| S3Error::new(Code::InvalidRequest, "the path must start with /"))?;
    let host = host.map(|h| {
        h.rsplit_once(':')
            .map_or(h, |(n, _)| n)
            .to_ascii_lowercase()
    });
    let vhost = match (host.as_deref(), domain) {
        (Some(h), Some(d)) => h
            .strip_suffix(d)
            .and_then(|b| b.strip_suffix('.'))
            .filter(|b| !b.is_empty())
            .map(str::to_string),
        _ => None,
    };
    let (bucket, key) = match vhost {
        Some(b) => (Some(b), (!path.is_empty()).then(|| path.to_string())),
        None => match path.split_once('/') {
            None if path.is_empty() => (None, None),
            None => (Some(path.to_string()), None),
            Some((b, "")) => (Some(b.to_string()), None),
            Some((b, k)) => (Some(b.to_string()), Some(k.to_string())),
        },
    };
    if key
        .as_ref()
        .is_some_and(|k| k.len() > crate::index::MAX_KEY_LEN)
    {
        return Err(S3Error::new(
            Code::KeyTooLongError,
            "Your key is too long (at most 1024 bytes)",
        ));
    }
    let mut r = Route {
        op: Op::ListBuckets,
        bucket,
        key,
        query: parse_query(raw_query),
    };
    r.op = select(method, &r)?;
    Ok(r)
}

/// Sub-resources that select operations the gateway does not implement.
const UNSUPPORTED_SUBRESOURCES: &[(&str, &str)] = &[
    ("versioning", "bucket versioning"),
    ("acl", "ACLs"),
    ("policy", "bucket policies"),
    ("tagging", "tagging"),
    ("lifecycle", "lifecycle"),
    ("cors", "CORS"),
    ("website", "websites"),
    ("encryption", "bucket encryption"),
    ("object-lock", "object lock"),
    ("logging", "bucket logging"),
    ("notification", "notifications"),
    ("replication", "replication"),
    ("retention", "object retention"),
    ("legal-hold", "legal hold"),
    ("select", "S3 Select"),
    ("restore", "restore"),
    ("attributes", "GetObjectAttributes"),
    ("torrent", "torrents"),
];

fn select(method: &str, r: &Route) -> Result<Op, S3Error> {
    let (bucket, key) = (r.bucket.is_some(), r.key.is_some());
    match (method, bucket, key) {
        ("POST", true, true) if r.has("uploads") => return Ok(Op::CreateMultipartUpload),
        ("PUT", true, true) if r.has("uploadId") => return Ok(Op::UploadPart),
        ("POST", true, true) if r.has("uploadId") => return Ok(Op::CompleteMultipartUpload),
        ("DELETE", true, true) if r.has("uploadId") => return Ok(Op::AbortMultipartUpload),
        ("GET", true, true) if r.has("uploadId") => return Ok(Op::ListParts),
        ("GET", true, false) if r.has("uploads") => return Ok(Op::ListMultipartUploads),
        _ => {}
    }
    for (sub, what) in UNSUPPORTED_SUBRESOURCES {
        if r.has(sub) {
            return Ok(Op::NotImplemented(what));
        }
    }
    let op = match (method, r.bucket.is_some(), r.key.is_some()) {
        ("GET", false, _) => Op::ListBuckets,
        ("PUT", true, false) => Op::CreateBucket,
        ("HEAD", true, false) => Op::HeadBucket,
        ("DELETE", true, false) => Op::DeleteBucket,
        ("GET", true, false) if r.has("location") => Op::GetBucketLocation,
        ("GET", true, false) if r.has("versions") => Op::ListObjectVersions,
        ("GET", true, false) if r.param("list-type") == Some("2") => Op::ListObjectsV2,
        ("GET", true, false) => Op::ListObjectsV1,
        ("POST", true, false) if r.has("delete") => Op::DeleteObjects,
        ("PUT", true, true) => Op::PutObject,
        ("GET", true, true) => Op::GetObject,
        ("HEAD", true, true) => Op::HeadObject,
        ("DELETE", true, true) => Op::DeleteObject,
        ("POST", _, _) => Op::NotImplemented("POST requests"),
        _ => {
            return Err(S3Error::new(
                Code::MethodNotAllowed,
                format!("The specified method ({method}) is not allowed against this resource."),
            ));
        }
    };
    Ok(op)
}

/// Routes a parsed request: [`route`], and a PUT with `x-amz-copy-source` is a CopyObject.
pub fn route_head(head: &crate::http::Head, domain: Option<&str>) -> Result<Route, S3Error> {
    let mut r = route(
        &head.method,
        &head.raw_path,
        &head.raw_query,
        head.header("host"),
        domain,
    )?;
    if head.header("x-amz-copy-source").is_some() {
        match r.op {
            Op::PutObject => r.op = Op::CopyObject,
            Op::UploadPart => r.op = Op::NotImplemented("UploadPartCopy"),
            _ => {}
        }
    }
    Ok(r)
}

/// `x-amz-copy-source` (`[/]bucket/key`, URL-encoded) → (bucket, key). A `versionId` other
/// than `null` is refused: buckets are unversioned.
pub fn parse_copy_source(h: &str) -> Result<(String, String), S3Error> {
    let bad = |m: &str| S3Error::new(Code::InvalidArgument, format!("x-amz-copy-source: {m}"));
    let (path, query) = h.split_once('?').unwrap_or((h, ""));
    if let Some((_, v)) = parse_query(query)
        .into_iter()
        .find(|(k, _)| k == "versionId")
    {
        if v != "null" {
            return Err(bad("this gateway keeps no versions"));
        }
    }
    let path = percent_decode(path);
    let path = path.strip_prefix('/').unwrap_or(&path);
    match path.split_once('/') {
        Some((b, k)) if !b.is_empty() && !k.is_empty() => Ok((b.to_string(), k.to_string())),
        _ => Err(bad("must be bucket/key")),
    }
}

/// A byte range of an object, inclusive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteRange {
    pub first: u64,
    pub last: u64,
}

/// Parses a single-range `Range` header against an object of `len` bytes. `Ok(None)`: serve the
/// whole object (no header, or a form S3 ignores such as several ranges).
pub fn parse_range(header: Option<&str>, len: u64) -> Result<Option<ByteRange>, S3Error> {
    let Some(h) = header else {
        return Ok(None);
    };
    let Some(spec) = h.trim().strip_prefix("bytes=") else {
        return Ok(None);
    };
    if spec.contains(',') {
        return Ok(None);
    }
    let bad = || S3Error::new(Code::InvalidRange, "The requested range is not satisfiable");
    let (a, b) = spec.split_once('-').ok_or_else(bad)?;
    let (a, b) = (a.trim(), b.trim());
    let r = if a.is_empty() {
        let n: u64 = b.parse().map_err(|_| bad())?;
        if n == 0 || len == 0 {
            return Err(bad());
        }
        ByteRange {
            first: len.saturating_sub(n),
            last: len - 1,
        }
    } else {
        let first: u64 = a.parse().map_err(|_| bad())?;
        let last = if b.is_empty() {
            len.saturating_sub(1)
        } else {
            b.parse::<u64>()
                .map_err(|_| bad())?
                .min(len.saturating_sub(1))
        };
        if first >= len || last < first {
            return Err(bad());
        }
        ByteRange { first, last }
    };
    Ok(Some(r))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(m: &str, p: &str, q: &str) -> Op {
        route(m, p, q, Some("127.0.0.1:9000"), Some("s3.lan"))
            .unwrap()
            .op
    }

    #[test]
    fn path_and_virtual_host() {
        let r = route(
            "GET",
            "/bkt/a%20b/c",
            "",
            Some("localhost:9000"),
            Some("s3.lan"),
        )
        .unwrap();
        assert_eq!(
            (r.bucket.as_deref(), r.key.as_deref()),
            (Some("bkt"), Some("a b/c"))
        );
        assert_eq!(r.op, Op::GetObject);
        let r = route("GET", "/a/b", "", Some("bkt.s3.lan:9000"), Some("s3.lan")).unwrap();
        assert_eq!(
            (r.bucket.as_deref(), r.key.as_deref()),
            (Some("bkt"), Some("a/b"))
        );
        let r = route(
            "GET",
            "/",
            "list-type=2&prefix=a%2F",
            Some("bkt.s3.lan"),
            Some("s3.lan"),
        )
        .unwrap();
        assert_eq!(r.op, Op::ListObjectsV2);
        assert_eq!(r.param("prefix"), Some("a/"));
        let r = route("GET", "/", "", Some("s3.lan"), Some("s3.lan")).unwrap();
        assert_eq!(r.op, Op::ListBuckets);
        assert_eq!(route("GET", "/bkt/", "", None, None).unwrap().key, None);
    }

    #[test]
    fn operations() {
        assert_eq!(op("GET", "/", ""), Op::ListBuckets);
        assert_eq!(op("PUT", "/b", ""), Op::CreateBucket);
        assert_eq!(op("HEAD", "/b", ""), Op::HeadBucket);
        assert_eq!(op("DELETE", "/b/", ""), Op::DeleteBucket);
        assert_eq!(op("GET", "/b", "location"), Op::GetBucketLocation);
        assert_eq!(op("PUT", "/b/k", ""), Op::PutObject);
        assert_eq!(op("HEAD", "/b/k", ""), Op::HeadObject);
        assert_eq!(op("DELETE", "/b/k", ""), Op::DeleteObject);
        assert_eq!(op("POST", "/b/k", "uploads"), Op::CreateMultipartUpload);
        assert_eq!(op("PUT", "/b/k", "partNumber=1&uploadId=u"), Op::UploadPart);
        assert_eq!(
            op("POST", "/b/k", "uploadId=u"),
            Op::CompleteMultipartUpload
        );
        assert_eq!(op("DELETE", "/b/k", "uploadId=u"), Op::AbortMultipartUpload);
        assert_eq!(op("GET", "/b/k", "uploadId=u"), Op::ListParts);
        assert_eq!(op("GET", "/b", "uploads"), Op::ListMultipartUploads);
        assert_eq!(op("GET", "/b", "versions"), Op::ListObjectVersions);
        assert_eq!(op("POST", "/b", "delete"), Op::DeleteObjects);
        assert_eq!(op("GET", "/b", "prefix=a"), Op::ListObjectsV1);
        assert!(matches!(op("POST", "/b/k", ""), Op::NotImplemented(_)));
        assert!(matches!(
            op("GET", "/b", "versioning"),
            Op::NotImplemented(_)
        ));
        let (head, _) = crate::http::parse_head(
            b"PUT /b/k HTTP/1.1\r\nHost: h\r\nx-amz-copy-source: /src/a%20b\r\n\r\n",
        )
        .unwrap()
        .unwrap();
        assert_eq!(route_head(&head, None).unwrap().op, Op::CopyObject);
        assert_eq!(
            parse_copy_source("/src/a%20b?versionId=null").unwrap(),
            ("src".to_string(), "a b".to_string())
        );
        assert_eq!(parse_copy_source("src/k").unwrap().1, "k");
        assert!(parse_copy_source("/src").is_err());
        assert!(parse_copy_source("/src/k?versionId=3").is_err());
        assert_eq!(
            route("PUT", "/", "", None, None).unwrap_err().code,
            Code::MethodNotAllowed
        );
        let long = format!("/b/{}", "k".repeat(1025));
        assert_eq!(
            route("GET", &long, "", None, None).unwrap_err().code,
            Code::KeyTooLongError
        );
    }

    #[test]
    fn ranges() {
        let r = |h, len| parse_range(Some(h), len);
        assert_eq!(
            r("bytes=0-9", 100).unwrap(),
            Some(ByteRange { first: 0, last: 9 })
        );
        assert_eq!(
            r("bytes=90-", 100).unwrap(),
            Some(ByteRange {
                first: 90,
                last: 99
            })
        );
        assert_eq!(
            r("bytes=-10", 100).unwrap(),
            Some(ByteRange {
                first: 90,
                last: 99
            })
        );
        assert_eq!(
            r("bytes=95-200", 100).unwrap(),
            Some(ByteRange {
                first: 95,
                last: 99
            })
        );
        assert_eq!(
            r("bytes=-200", 100).unwrap(),
            Some(ByteRange { first: 0, last: 99 })
        );
        assert_eq!(r("bytes=100-", 100).unwrap_err().code, Code::InvalidRange);
        assert_eq!(r("bytes=5-2", 100).unwrap_err().code, Code::InvalidRange);
        assert_eq!(r("bytes=0-1,5-6", 100).unwrap(), None);
        assert_eq!(parse_range(None, 100).unwrap(), None);
    }
}
