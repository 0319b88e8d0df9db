//! The XML bodies the gateway writes (S3's 2006-03-01 namespace).

use crate::error::{Code, S3Error};
use crate::index::{BucketInfo, ListPage};
use crate::sigv4::format_times;

const NS: &str = "http://s3.amazonaws.com/doc/2006-03-01/";

pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
    out
}

/// `2026-12-07T03:00:00.000Z` from unix milliseconds.
pub fn iso8601(ms: u64) -> String {
    let (amz, _) = format_times(ms / 1000);
    format!(
        "{}-{}-{}T{}:{}:{}.{:03}Z",
        &amz[0..4],
        &amz[4..6],
        &amz[6..8],
        &amz[9..11],
        &amz[11..13],
        &amz[13..15],
        ms % 1000
    )
}

pub fn list_buckets(buckets: &[BucketInfo], owner: &str) -> String {
    let mut s = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<ListAllMyBucketsResult xmlns=\"{NS}\"><Owner><ID>{0}</ID><DisplayName>{0}</DisplayName></Owner><Buckets>",
        escape(owner)
    );
    for b in buckets {
        s.push_str(&format!(
            "<Bucket><Name>{}</Name><CreationDate>{}</CreationDate></Bucket>",
            escape(&b.name),
            iso8601(b.created_ms)
        ));
    }
    s.push_str("</Buckets></ListAllMyBucketsResult>");
    s
}

pub fn location(region: &str) -> String {
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<LocationConstraint xmlns=\"{NS}\">{}</LocationConstraint>",
        escape(region)
    )
}

/// What a ListObjectsV2 request asked for, echoed in the answer.
pub struct ListV2Echo<'a> {
    pub bucket: &'a str,
    pub prefix: &'a str,
    pub delimiter: Option<&'a str>,
    pub max_keys: usize,
    pub continuation: Option<&'a str>,
    pub start_after: Option<&'a str>,
    /// `encoding-type=url`: keys and prefixes are URL-encoded in the answer.
    pub url_encode: bool,
}

pub fn list_objects_v2(e: &ListV2Echo<'_>, page: &ListPage) -> String {
    let enc = |s: &str| {
        if e.url_encode {
            crate::sigv4::uri_encode(s, false)
        } else {
            escape(s)
        }
    };
    let mut s = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<ListBucketResult xmlns=\"{NS}\"><Name>{}</Name><Prefix>{}</Prefix><KeyCount>{}</KeyCount><MaxKeys>{}</MaxKeys><IsTruncated>{}</IsTruncated>",
        escape(e.bucket),
        enc(e.prefix),
        page.objects.len() + page.common_prefixes.len(),
        e.max_keys,
        page.next.is_some()
    );
    if let Some(d) = e.delimiter {
        s.push_str(&format!("<Delimiter>{}</Delimiter>", enc(d)));
    }
    if e.url_encode {
        s.push_str("<EncodingType>url</EncodingType>");
    }
    if let Some(c) = e.continuation {
        s.push_str(&format!(
            "<ContinuationToken>{}</ContinuationToken>",
            escape(c)
        ));
    }
    if let Some(a) = e.start_after {
        s.push_str(&format!("<StartAfter>{}</StartAfter>", enc(a)));
    }
    if let Some(n) = &page.next {
        s.push_str(&format!(
            "<NextContinuationToken>{}</NextContinuationToken>",
            escape(&crate::index::continuation_token(n))
        ));
    }
    for (key, m) in &page.objects {
        s.push_str(&format!(
            "<Contents><Key>{}</Key><LastModified>{}</LastModified><ETag>{}</ETag><Size>{}</Size><StorageClass>STANDARD</StorageClass></Contents>",
            enc(key),
            iso8601(m.modified_ms),
            escape(&m.etag),
            m.size
        ));
    }
    for p in &page.common_prefixes {
        s.push_str(&format!(
            "<CommonPrefixes><Prefix>{}</Prefix></CommonPrefixes>",
            enc(p)
        ));
    }
    s.push_str("</ListBucketResult>");
    s
}

/// What a ListObjects (v1) request asked for, echoed in the answer.
pub struct ListV1Echo<'a> {
    pub bucket: &'a str,
    pub prefix: &'a str,
    pub delimiter: Option<&'a str>,
    pub max_keys: usize,
    pub marker: &'a str,
    pub url_encode: bool,
}

pub fn list_objects_v1(e: &ListV1Echo<'_>, page: &ListPage) -> String {
    let enc = |s: &str| {
        if e.url_encode {
            crate::sigv4::uri_encode(s, false)
        } else {
            escape(s)
        }
    };
    let mut s = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<ListBucketResult xmlns=\"{NS}\"><Name>{}</Name><Prefix>{}</Prefix><Marker>{}</Marker><MaxKeys>{}</MaxKeys><IsTruncated>{}</IsTruncated>",
        escape(e.bucket),
        enc(e.prefix),
        enc(e.marker),
        e.max_keys,
        page.next.is_some()
    );
    if let Some(d) = e.delimiter {
        s.push_str(&format!("<Delimiter>{}</Delimiter>", enc(d)));
        // S3 sends NextMarker only with a delimiter; without one clients resume at the last key.
        if let Some(n) = &page.next {
            s.push_str(&format!("<NextMarker>{}</NextMarker>", enc(n)));
        }
    }
    if e.url_encode {
        s.push_str("<EncodingType>url</EncodingType>");
    }
    for (key, m) in &page.objects {
        s.push_str(&format!(
            "<Contents><Key>{}</Key><LastModified>{}</LastModified><ETag>{}</ETag><Size>{}</Size><StorageClass>STANDARD</StorageClass></Contents>",
            enc(key),
            iso8601(m.modified_ms),
            escape(&m.etag),
            m.size
        ));
    }
    for p in &page.common_prefixes {
        s.push_str(&format!(
            "<CommonPrefixes><Prefix>{}</Prefix></CommonPrefixes>",
            enc(p)
        ));
    }
    s.push_str("</ListBucketResult>");
    s
}

/// ListObjectVersions of an unversioned bucket: every object once, `VersionId` `null`, latest.
pub fn list_versions(e: &ListV1Echo<'_>, page: &ListPage) -> String {
    let mut s = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<ListVersionsResult xmlns=\"{NS}\"><Name>{}</Name><Prefix>{}</Prefix><KeyMarker>{}</KeyMarker><VersionIdMarker></VersionIdMarker><MaxKeys>{}</MaxKeys><IsTruncated>{}</IsTruncated>",
        escape(e.bucket),
        escape(e.prefix),
        escape(e.marker),
        e.max_keys,
        page.next.is_some()
    );
    if let Some(d) = e.delimiter {
        s.push_str(&format!("<Delimiter>{}</Delimiter>", escape(d)));
    }
    if let Some(n) = &page.next {
        s.push_str(&format!(
            "<NextKeyMarker>{}</NextKeyMarker><NextVersionIdMarker>null</NextVersionIdMarker>",
            escape(n)
        ));
    }
    for (key, m) in &page.objects {
        s.push_str(&format!(
            "<Version><Key>{}</Key><VersionId>null</VersionId><IsLatest>true</IsLatest><LastModified>{}</LastModified><ETag>{}</ETag><Size>{}</Size><StorageClass>STANDARD</StorageClass></Version>",
            escape(key),
            iso8601(m.modified_ms),
            escape(&m.etag),
            m.size
        ));
    }
    for p in &page.common_prefixes {
        s.push_str(&format!(
            "<CommonPrefixes><Prefix>{}</Prefix></CommonPrefixes>",
            escape(p)
        ));
    }
    s.push_str("</ListVersionsResult>");
    s
}

/// The keys of a DeleteObjects body and whether it asked for a quiet answer.
pub fn parse_delete(body: &str) -> Result<(Vec<String>, bool), S3Error> {
    let bad = || {
        S3Error::new(
            Code::MalformedXML,
            "The XML you provided was not well-formed",
        )
    };
    if !body.contains("<Delete") {
        return Err(bad());
    }
    let mut keys = Vec::new();
    let mut rest = body;
    while let Some(i) = rest.find("<Object>") {
        rest = &rest[i + "<Object>".len()..];
        let end = rest.find("</Object>").ok_or_else(bad)?;
        let obj = &rest[..end];
        let k0 = obj.find("<Key>").ok_or_else(bad)? + "<Key>".len();
        let k1 = obj.find("</Key>").ok_or_else(bad)?;
        keys.push(unescape(obj.get(k0..k1).ok_or_else(bad)?).ok_or_else(bad)?);
        rest = &rest[end..];
    }
    if keys.len() > 1000 {
        return Err(S3Error::new(
            Code::MalformedXML,
            "DeleteObjects takes at most 1000 keys",
        ));
    }
    let quiet = body.contains("<Quiet>true</Quiet>");
    Ok((keys, quiet))
}

/// XML entity decoding (the five named entities and numeric references).
pub fn unescape(s: &str) -> Option<String> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('&') {
        out.push_str(&rest[..i]);
        let end = rest[i..].find(';')? + i;
        let ent = &rest[i + 1..end];
        let c = match ent {
            "amp" => '&',
            "lt" => '<',
            "gt" => '>',
            "quot" => '"',
            "apos" => '\'',
            _ => {
                let n = if let Some(h) = ent.strip_prefix("#x") {
                    u32::from_str_radix(h, 16).ok()?
                } else {
                    ent.strip_prefix('#')?.parse().ok()?
                };
                char::from_u32(n)?
            }
        };
        out.push(c);
        rest = &rest[end + 1..];
    }
    out.push_str(rest);
    Some(out)
}

/// The DeleteObjects answer: keys deleted (listed unless quiet) and per-key errors.
pub fn delete_result(deleted: &[String], errors: &[(String, S3Error)], quiet: bool) -> String {
    let mut s =
        format!("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<DeleteResult xmlns=\"{NS}\">");
    if !quiet {
        for k in deleted {
            s.push_str(&format!("<Deleted><Key>{}</Key></Deleted>", escape(k)));
        }
    }
    for (k, e) in errors {
        s.push_str(&format!(
            "<Error><Key>{}</Key><Code>{}</Code><Message>{}</Message></Error>",
            escape(k),
            e.code.as_str(),
            escape(&e.message)
        ));
    }
    s.push_str("</DeleteResult>");
    s
}

pub fn copy_result(etag: &str, modified_ms: u64) -> String {
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<CopyObjectResult xmlns=\"{NS}\"><LastModified>{}</LastModified><ETag>{}</ETag></CopyObjectResult>",
        iso8601(modified_ms),
        escape(etag)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delete_bodies() {
        let body = "<?xml version=\"1.0\"?><Delete xmlns=\"x\"><Object><Key>a&amp;b</Key></Object><Object><Key>c&#x41;&#66;</Key><VersionId>null</VersionId></Object><Quiet>true</Quiet></Delete>";
        assert_eq!(
            parse_delete(body).unwrap(),
            (vec!["a&b".to_string(), "cAB".to_string()], true)
        );
        assert_eq!(parse_delete("<Delete></Delete>").unwrap(), (vec![], false));
        for bad in [
            "nope",
            "<Delete><Object><Key>a</Object></Delete>",
            "<Delete><Object><Key>&bad;</Key></Object></Delete>",
        ] {
            assert_eq!(
                parse_delete(bad).unwrap_err().code,
                Code::MalformedXML,
                "{bad}"
            );
        }
        let r = delete_result(
            &["k<".into()],
            &[("e".into(), S3Error::new(Code::InternalError, "x"))],
            false,
        );
        assert!(
            r.contains("<Deleted><Key>k&lt;</Key></Deleted>")
                && r.contains("<Code>InternalError</Code>"),
            "{r}"
        );
        assert!(!delete_result(&["k".into()], &[], true).contains("Deleted"));
        assert_eq!(unescape(&escape("a<&>\"'b")).unwrap(), "a<&>\"'b");
    }

    #[test]
    fn escapes_and_times() {
        assert_eq!(escape("a<b>&\"'"), "a&lt;b&gt;&amp;&quot;&apos;");
        assert_eq!(iso8601(1_440_938_160_123), "2015-08-30T12:36:00.123Z");
    }
}
