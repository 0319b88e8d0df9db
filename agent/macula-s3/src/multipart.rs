//! Multipart uploads (sans-IO): the parts a gateway holds for an upload, the checks of
//! CompleteMultipartUpload (order, ETags, the 5 MiB minimum of every part but the last) and the
//! `md5-of-md5s-N` ETag, and the XML bodies.

use std::collections::BTreeMap;

use md5::{Digest, Md5};
use serde::{Deserialize, Serialize};

use crate::error::{Code, S3Error};
use crate::index::Part;
use crate::xml::{escape, iso8601, unescape};

/// Every part but the last must have at least this many bytes (as S3).
pub const MIN_PART: u64 = 5 << 20;
/// Highest part number (as S3).
pub const MAX_PART_NUMBER: u32 = 10_000;

/// One uploaded part.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UploadedPart {
    pub part: Part,
    pub md5: [u8; 16],
    pub modified_ms: u64,
}

/// An upload in progress (kept on the gateway's disk, `wire`-encoded, so a restart resumes it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Upload {
    pub bucket: String,
    pub key: String,
    pub created_ms: u64,
    pub content_type: Option<String>,
    pub user_meta: Vec<(String, String)>,
    pub parts: BTreeMap<u32, UploadedPart>,
}

/// What a completed upload becomes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Completed {
    /// The object's parts, in order.
    pub parts: Vec<Part>,
    pub size: u64,
    /// `"<md5 of the parts' md5s>-N"`.
    pub etag: String,
    /// Uploaded parts the completion did not name (their bodies are deleted).
    pub unused: Vec<Part>,
}

/// `partNumber` of an UploadPart.
pub fn part_number(s: Option<&str>) -> Result<u32, S3Error> {
    s.and_then(|s| s.parse::<u32>().ok())
        .filter(|n| (1..=MAX_PART_NUMBER).contains(n))
        .ok_or_else(|| {
            S3Error::new(
                Code::InvalidArgument,
                "Part number must be an integer between 1 and 10000, inclusive",
            )
        })
}

impl Upload {
    /// Records part `n`; returns the part it replaced, if any (its body is deleted).
    pub fn add(&mut self, n: u32, p: UploadedPart) -> Option<Part> {
        self.parts.insert(n, p).map(|old| old.part)
    }

    /// Checks the completion's list `(number, etag)` against the uploaded parts.
    pub fn complete(&self, list: &[(u32, String)]) -> Result<Completed, S3Error> {
        if list.is_empty() {
            return Err(S3Error::new(
                Code::MalformedXML,
                "You must specify at least one part",
            ));
        }
        let mut digest = Md5::new();
        let (mut parts, mut size) = (Vec::new(), 0u64);
        let mut last = 0;
        for (i, (n, etag)) in list.iter().enumerate() {
            if *n <= last {
                return Err(S3Error::new(
                    Code::InvalidPartOrder,
                    "The list of parts was not in ascending order.",
                ));
            }
            last = *n;
            let invalid = || {
                S3Error::new(
                    Code::InvalidPart,
                    format!("Part {n} was not uploaded or its ETag does not match."),
                )
            };
            let p = self.parts.get(n).ok_or_else(invalid)?;
            if etag.trim_matches('"') != crate::sigv4::hex(&p.md5) {
                return Err(invalid());
            }
            if i + 1 < list.len() && p.part.size < MIN_PART {
                return Err(S3Error::new(
                    Code::EntityTooSmall,
                    "Your proposed upload is smaller than the minimum allowed object size (5 MiB per part but the last).",
                ));
            }
            digest.update(p.md5);
            size += p.part.size;
            parts.push(p.part.clone());
        }
        let named: std::collections::BTreeSet<u32> = list.iter().map(|(n, _)| *n).collect();
        let unused = self
            .parts
            .iter()
            .filter(|(n, _)| !named.contains(n))
            .map(|(_, p)| p.part.clone())
            .collect();
        let d: [u8; 16] = digest.finalize().into();
        Ok(Completed {
            etag: format!("\"{}-{}\"", crate::sigv4::hex(&d), list.len()),
            parts,
            size,
            unused,
        })
    }
}

/// The `(PartNumber, ETag)` list of a CompleteMultipartUpload body.
pub fn parse_complete(body: &str) -> Result<Vec<(u32, String)>, S3Error> {
    let bad = || {
        S3Error::new(
            Code::MalformedXML,
            "The XML you provided was not well-formed",
        )
    };
    if !body.contains("<CompleteMultipartUpload") {
        return Err(bad());
    }
    let field = |part: &str, tag: &str| -> Result<String, S3Error> {
        let open = format!("<{tag}>");
        let close = format!("</{tag}>");
        let a = part.find(&open).ok_or_else(bad)? + open.len();
        let b = part.find(&close).ok_or_else(bad)?;
        unescape(part.get(a..b).ok_or_else(bad)?).ok_or_else(bad)
    };
    let mut out = Vec::new();
    let mut rest = body;
    while let Some(i) = rest.find("<Part>") {
        rest = &rest[i + "<Part>".len()..];
        let end = rest.find("</Part>").ok_or_else(bad)?;
        let part = &rest[..end];
        let n = field(part, "PartNumber")?
            .trim()
            .parse()
            .map_err(|_| bad())?;
        out.push((n, field(part, "ETag")?.trim().to_string()));
        rest = &rest[end..];
        if out.len() > MAX_PART_NUMBER as usize {
            return Err(bad());
        }
    }
    Ok(out)
}

const NS: &str = "http://s3.amazonaws.com/doc/2006-03-01/";

pub fn initiate_result(bucket: &str, key: &str, upload_id: &str) -> String {
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<InitiateMultipartUploadResult xmlns=\"{NS}\"><Bucket>{}</Bucket><Key>{}</Key><UploadId>{}</UploadId></InitiateMultipartUploadResult>",
        escape(bucket),
        escape(key),
        escape(upload_id)
    )
}

pub fn complete_result(bucket: &str, key: &str, etag: &str) -> String {
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<CompleteMultipartUploadResult xmlns=\"{NS}\"><Location>/{0}/{1}</Location><Bucket>{0}</Bucket><Key>{1}</Key><ETag>{2}</ETag></CompleteMultipartUploadResult>",
        escape(bucket),
        escape(key),
        escape(etag)
    )
}

pub fn list_parts(upload_id: &str, u: &Upload) -> String {
    let mut s = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<ListPartsResult xmlns=\"{NS}\"><Bucket>{}</Bucket><Key>{}</Key><UploadId>{}</UploadId><PartNumberMarker>0</PartNumberMarker><MaxParts>{MAX_PART_NUMBER}</MaxParts><IsTruncated>false</IsTruncated><StorageClass>STANDARD</StorageClass>",
        escape(&u.bucket),
        escape(&u.key),
        escape(upload_id)
    );
    for (n, p) in &u.parts {
        s.push_str(&format!(
            "<Part><PartNumber>{n}</PartNumber><LastModified>{}</LastModified><ETag>\"{}\"</ETag><Size>{}</Size></Part>",
            iso8601(p.modified_ms),
            crate::sigv4::hex(&p.md5),
            p.part.size
        ));
    }
    s.push_str("</ListPartsResult>");
    s
}

pub fn list_uploads<'a>(
    bucket: &str,
    uploads: impl Iterator<Item = (&'a str, &'a Upload)>,
) -> String {
    let mut s = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<ListMultipartUploadsResult xmlns=\"{NS}\"><Bucket>{}</Bucket><KeyMarker></KeyMarker><UploadIdMarker></UploadIdMarker><MaxUploads>1000</MaxUploads><IsTruncated>false</IsTruncated>",
        escape(bucket)
    );
    for (id, u) in uploads {
        s.push_str(&format!(
            "<Upload><Key>{}</Key><UploadId>{}</UploadId><StorageClass>STANDARD</StorageClass><Initiated>{}</Initiated></Upload>",
            escape(&u.key),
            escape(id),
            iso8601(u.created_ms)
        ));
    }
    s.push_str("</ListMultipartUploadsResult>");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn up() -> Upload {
        Upload {
            bucket: "b".into(),
            key: "k".into(),
            created_ms: 0,
            content_type: None,
            user_meta: vec![],
            parts: BTreeMap::new(),
        }
    }

    fn part(n: u8, size: u64) -> UploadedPart {
        UploadedPart {
            part: Part {
                cap: format!("cap{n}"),
                size,
            },
            md5: [n; 16],
            modified_ms: 0,
        }
    }

    fn tag(n: u8) -> String {
        format!("\"{}\"", crate::sigv4::hex(&[n; 16]))
    }

    #[test]
    fn completion_rules_and_etag() {
        let mut u = up();
        assert!(u.add(1, part(1, MIN_PART)).is_none());
        assert!(u.add(2, part(9, 1)).is_none());
        // A part uploaded again replaces the first upload (whose body is then deleted).
        assert_eq!(u.add(2, part(2, 1)).unwrap().cap, "cap9");
        u.add(3, part(3, 7));
        let c = u.complete(&[(1, tag(1)), (2, tag(2))]).unwrap();
        assert_eq!(c.size, MIN_PART + 1);
        assert_eq!(c.unused, vec![part(3, 7).part]);
        let mut d = Md5::new();
        d.update([1u8; 16]);
        d.update([2u8; 16]);
        let want: [u8; 16] = d.finalize().into();
        assert_eq!(c.etag, format!("\"{}-2\"", crate::sigv4::hex(&want)));
        let code = |l: &[(u32, String)]| u.complete(l).unwrap_err().code;
        assert_eq!(code(&[(1, tag(1)), (1, tag(1))]), Code::InvalidPartOrder);
        assert_eq!(code(&[(1, tag(2))]), Code::InvalidPart);
        assert_eq!(code(&[(4, tag(4))]), Code::InvalidPart);
        assert_eq!(code(&[(2, tag(2)), (3, tag(3))]), Code::EntityTooSmall);
        assert_eq!(code(&[]), Code::MalformedXML);
    }

    #[test]
    fn bodies_and_numbers() {
        let b = "<CompleteMultipartUpload xmlns=\"x\"><Part><ETag>&quot;ab&quot;</ETag><PartNumber>1</PartNumber></Part><Part><PartNumber>2</PartNumber><ETag>\"cd\"</ETag><ChecksumCRC32>x</ChecksumCRC32></Part></CompleteMultipartUpload>";
        assert_eq!(
            parse_complete(b).unwrap(),
            vec![(1, "\"ab\"".to_string()), (2, "\"cd\"".to_string())]
        );
        assert!(parse_complete("<x/>").is_err());
        assert!(parse_complete("<CompleteMultipartUpload><Part><PartNumber>z</PartNumber><ETag>a</ETag></Part></CompleteMultipartUpload>").is_err());
        assert_eq!(part_number(Some("1")).unwrap(), 1);
        assert!(
            part_number(Some("0")).is_err()
                && part_number(Some("10001")).is_err()
                && part_number(None).is_err()
        );
        let x = initiate_result("b", "k&", "id");
        assert!(
            x.contains("<Key>k&amp;</Key><UploadId>id</UploadId>"),
            "{x}"
        );
    }
}
