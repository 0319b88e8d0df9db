//! Everything a PUT body is checked against as it streams through: the signed payload hash
//! (`x-amz-content-sha256`), an `x-amz-checksum-*` header, `Content-MD5`; and its MD5 (the ETag).

use ring::digest;

use crate::checksum::Checksum;
use crate::error::{Code, S3Error};
use crate::etag::{BodyMd5, check_content_md5};
use crate::sigv4::Payload;

pub struct BodyCheck {
    md5: BodyMd5,
    sha: Option<(digest::Context, [u8; 32])>,
    checksum: Option<Checksum>,
    content_md5: Option<String>,
}

impl BodyCheck {
    /// From the request's headers (lower-case names) and its verified SigV4 payload mode.
    pub fn new(headers: &[(String, String)], payload: &Payload) -> Result<Self, S3Error> {
        let sha = match payload {
            Payload::Sha256(h) => Some((digest::Context::new(&digest::SHA256), *h)),
            // Each chunk's signature covers its bytes (`chunked::Decoder`).
            Payload::Unsigned => None,
            Payload::Streaming(s) if s == crate::chunked::SIGNED_STREAMING => None,
            Payload::Streaming(s) => {
                return Err(S3Error::new(
                    Code::NotImplemented,
                    format!(
                        "{s} (aws-chunked with trailers) is not supported yet; use STREAMING-AWS4-HMAC-SHA256-PAYLOAD, a signed payload or UNSIGNED-PAYLOAD"
                    ),
                ));
            }
        };
        Ok(Self {
            md5: BodyMd5::default(),
            sha,
            checksum: Checksum::from_headers(headers)?,
            content_md5: headers
                .iter()
                .find(|(n, _)| n == "content-md5")
                .map(|(_, v)| v.clone()),
        })
    }

    pub fn update(&mut self, b: &[u8]) {
        self.md5.update(b);
        if let Some((c, _)) = &mut self.sha {
            c.update(b);
        }
        if let Some(c) = &mut self.checksum {
            c.update(b);
        }
    }

    /// After the whole body: every check, then the body's MD5.
    pub fn finish(self) -> Result<[u8; 16], S3Error> {
        if let Some((c, want)) = self.sha {
            if !crate::ct_eq(c.finish().as_ref(), &want) {
                return Err(S3Error::new(
                    Code::XAmzContentSHA256Mismatch,
                    "The provided 'x-amz-content-sha256' header does not match what was computed.",
                ));
            }
        }
        if let Some(c) = self.checksum {
            c.check()?;
        }
        let md5 = self.md5.finish();
        if let Some(h) = self.content_md5 {
            check_content_md5(&h, &md5).map_err(|invalid| {
                if invalid {
                    S3Error::new(
                        Code::InvalidDigest,
                        "The Content-MD5 you specified was invalid.",
                    )
                } else {
                    S3Error::new(
                        Code::BadDigest,
                        "The Content-MD5 you specified did not match what we received.",
                    )
                }
            })?;
        }
        Ok(md5)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hdr(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    #[test]
    fn every_check_fails_on_a_changed_body() {
        let sha: [u8; 32] = digest::digest(&digest::SHA256, b"hello")
            .as_ref()
            .try_into()
            .unwrap();
        // MD5("hello") = 5d41402abc4b2a76b9719d911017c592.
        let h = hdr(&[
            ("content-md5", "XUFAKrxLKna5cZ2REBfFkg=="),
            ("x-amz-checksum-crc32", "NhCmhg=="),
        ]);
        let run = |body: &[u8], payload: &Payload| {
            let mut c = BodyCheck::new(&h, payload)?;
            c.update(body);
            c.finish()
        };
        let md5 = run(b"hello", &Payload::Sha256(sha)).unwrap();
        assert_eq!(
            crate::etag::etag(&md5),
            "\"5d41402abc4b2a76b9719d911017c592\""
        );
        assert_eq!(
            run(b"hellp", &Payload::Sha256(sha)).unwrap_err().code,
            Code::XAmzContentSHA256Mismatch
        );
        assert_eq!(
            run(b"hellp", &Payload::Unsigned).unwrap_err().code,
            Code::BadDigest
        );
        assert_eq!(
            BodyCheck::new(
                &h,
                &Payload::Streaming("STREAMING-UNSIGNED-PAYLOAD-TRAILER".into())
            )
            .err()
            .unwrap()
            .code,
            Code::NotImplemented
        );
    }
}
