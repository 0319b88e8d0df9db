//! Everything a PUT body is checked against as it streams through: the signed payload hash
//! (`x-amz-content-sha256`), an `x-amz-checksum-*` header or the same checksum sent as an
//! aws-chunked trailer (announced by `x-amz-trailer`), `Content-MD5`; and its MD5 (the ETag).

use ring::digest;

use crate::checksum::Checksum;
use crate::error::{Code, S3Error};
use crate::etag::{BodyMd5, check_content_md5};
use crate::sigv4::Payload;

pub struct BodyCheck {
    md5: BodyMd5,
    sha: Option<(digest::Context, [u8; 32])>,
    checksum: Option<Checksum>,
    /// The checksum announced by `x-amz-trailer`, its value known once the trailer is read.
    trailer: Option<Checksum>,
    trailer_seen: bool,
    content_md5: Option<String>,
}

impl BodyCheck {
    /// From the request's headers (lower-case names) and its verified SigV4 payload mode.
    pub fn new(headers: &[(String, String)], payload: &Payload) -> Result<Self, S3Error> {
        use crate::chunked::{
            SIGNED_STREAMING, SIGNED_STREAMING_TRAILER, UNSIGNED_STREAMING_TRAILER,
        };
        let mut trailers_allowed = false;
        let sha = match payload {
            Payload::Sha256(h) => Some((digest::Context::new(&digest::SHA256), *h)),
            // Each chunk's signature covers its bytes (`chunked::Decoder`), or nothing does.
            Payload::Unsigned => None,
            Payload::Streaming(s) if s == SIGNED_STREAMING => None,
            Payload::Streaming(s)
                if s == SIGNED_STREAMING_TRAILER || s == UNSIGNED_STREAMING_TRAILER =>
            {
                trailers_allowed = true;
                None
            }
            Payload::Streaming(s) => {
                return Err(S3Error::new(
                    Code::NotImplemented,
                    format!(
                        "{s} is not supported; use STREAMING-AWS4-HMAC-SHA256-PAYLOAD(-TRAILER), STREAMING-UNSIGNED-PAYLOAD-TRAILER, a signed payload or UNSIGNED-PAYLOAD"
                    ),
                ));
            }
        };
        let header = |name: &str| {
            headers
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.as_str())
        };
        let trailer = match header("x-amz-trailer") {
            None => None,
            Some(_) if !trailers_allowed => {
                return Err(S3Error::new(
                    Code::InvalidRequest,
                    "x-amz-trailer needs an aws-chunked body with trailers (x-amz-content-sha256 STREAMING-…-TRAILER)",
                ));
            }
            Some(names) if names.contains(',') => {
                return Err(S3Error::new(
                    Code::NotImplemented,
                    "one trailing checksum per request is supported",
                ));
            }
            Some(name) => Some(Checksum::for_trailer(name)?),
        };
        Ok(Self {
            md5: BodyMd5::default(),
            sha,
            checksum: Checksum::from_headers(headers)?,
            trailer,
            trailer_seen: false,
            content_md5: header("content-md5").map(str::to_string),
        })
    }

    /// The trailing headers of an aws-chunked body (lower-case names), once decoded: the value
    /// of the checksum `x-amz-trailer` announced. A trailer that was announced and did not come
    /// is an error; one that was not announced is ignored (as S3 does).
    pub fn trailers(&mut self, trailers: &[(String, String)]) -> Result<(), S3Error> {
        let Some(c) = &mut self.trailer else {
            return Ok(());
        };
        let (_, value) = trailers
            .iter()
            .find(|(n, _)| n == c.name())
            .ok_or_else(|| {
                S3Error::new(
                    Code::InvalidRequest,
                    format!(
                        "the trailer {} announced by x-amz-trailer is missing",
                        c.name()
                    ),
                )
            })?;
        c.expect(value)?;
        self.trailer_seen = true;
        Ok(())
    }

    pub fn update(&mut self, b: &[u8]) {
        self.md5.update(b);
        if let Some((c, _)) = &mut self.sha {
            c.update(b);
        }
        if let Some(c) = &mut self.checksum {
            c.update(b);
        }
        if let Some(c) = &mut self.trailer {
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
        if let Some(c) = self.trailer {
            if !self.trailer_seen {
                return Err(S3Error::new(
                    Code::InvalidRequest,
                    format!(
                        "the trailer {} announced by x-amz-trailer is missing",
                        c.name()
                    ),
                ));
            }
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
                &Payload::Streaming("STREAMING-AWS4-ECDSA-P256-SHA256-PAYLOAD".into())
            )
            .err()
            .unwrap()
            .code,
            Code::NotImplemented
        );
    }

    #[test]
    fn a_trailing_checksum_is_checked() {
        let trailer = Payload::Streaming(crate::chunked::UNSIGNED_STREAMING_TRAILER.into());
        let h = hdr(&[("x-amz-trailer", "x-amz-checksum-crc32")]);
        // CRC32("hello") = 0x3610a686.
        let good = [("x-amz-checksum-crc32".to_string(), "NhCmhg==".to_string())];
        let run = |body: &[u8], trailers: &[(String, String)]| {
            let mut c = BodyCheck::new(&h, &trailer)?;
            c.update(body);
            c.trailers(trailers)?;
            c.finish()
        };
        run(b"hello", &good).unwrap();
        assert_eq!(run(b"hellp", &good).unwrap_err().code, Code::BadDigest);
        assert_eq!(run(b"hello", &[]).unwrap_err().code, Code::InvalidRequest);
        let mut never_told = BodyCheck::new(&h, &trailer).unwrap();
        never_told.update(b"hello");
        assert_eq!(never_told.finish().unwrap_err().code, Code::InvalidRequest);
        // Announced in a mode without trailers; an algorithm not served; two at once.
        assert_eq!(
            BodyCheck::new(&h, &Payload::Unsigned).err().unwrap().code,
            Code::InvalidRequest
        );
        for names in [
            "x-amz-checksum-crc64nvme",
            "x-amz-checksum-crc32,x-amz-checksum-sha256",
        ] {
            assert_eq!(
                BodyCheck::new(&hdr(&[("x-amz-trailer", names)]), &trailer)
                    .err()
                    .unwrap()
                    .code,
                Code::NotImplemented
            );
        }
    }
}
