//! The XML bodies the gateway writes (S3's 2006-03-01 namespace).

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_and_times() {
        assert_eq!(escape("a<b>&\"'"), "a&lt;b&gt;&amp;&quot;&apos;");
        assert_eq!(iso8601(1_440_938_160_123), "2015-08-30T12:36:00.123Z");
    }
}
