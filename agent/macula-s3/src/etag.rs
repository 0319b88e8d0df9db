//! ETags as S3 computes them for single-part objects (quoted hex MD5 of the body) and the
//! `Content-MD5` check.

use md5::{Digest, Md5};

/// Incremental MD5 of a body as it streams through.
#[derive(Default, Clone)]
pub struct BodyMd5(Md5);

impl BodyMd5 {
    pub fn update(&mut self, b: &[u8]) {
        self.0.update(b);
    }

    pub fn finish(self) -> [u8; 16] {
        self.0.finalize().into()
    }
}

/// `"<hex md5>"`, with the quotes S3 puts in the header and the XML.
pub fn etag(md5: &[u8; 16]) -> String {
    format!("\"{}\"", crate::sigv4::hex(md5))
}

/// Checks a `Content-MD5` header (base64 of the 16-byte digest) against the body's MD5.
/// `Err(true)`: the header is not a base64 MD5 (InvalidDigest); `Err(false)`: it does not
/// match the body (BadDigest).
pub fn check_content_md5(header: &str, md5: &[u8; 16]) -> Result<(), bool> {
    let got = decode_base64(header.trim()).ok_or(true)?;
    if got.len() != 16 {
        return Err(true);
    }
    if crate::ct_eq(&got, md5) {
        Ok(())
    } else {
        Err(false)
    }
}

/// Whether an `If-None-Match` / `If-Match` list names `etag` (`*` matches any).
pub fn matches(list: &str, etag: &str) -> bool {
    list.split(',')
        .map(str::trim)
        .any(|t| t == "*" || t == etag || t.trim_matches('"') == etag.trim_matches('"'))
}

/// Standard base64 with padding.
pub fn decode_base64(s: &str) -> Option<Vec<u8>> {
    let val = |c: u8| -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        } as u32)
    };
    let b = s.as_bytes();
    if b.len() % 4 != 0 {
        return None;
    }
    let mut out = Vec::with_capacity(b.len() / 4 * 3);
    for chunk in b.chunks(4) {
        let pad = chunk.iter().rev().take_while(|c| **c == b'=').count();
        if pad > 2 {
            return None;
        }
        let mut n = 0u32;
        for (i, c) in chunk.iter().enumerate() {
            n <<= 6;
            if i < 4 - pad {
                n |= val(*c)?;
            } else if *c != b'=' {
                return None;
            }
        }
        let bytes = n.to_be_bytes();
        out.extend_from_slice(&bytes[1..4 - pad]);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn md5_etag_and_content_md5() {
        // RFC 1321 test vector.
        let mut m = BodyMd5::default();
        m.update(b"message ");
        m.update(b"digest");
        let d = m.finish();
        assert_eq!(etag(&d), "\"f96b697d7cb7938d525a2f31aaf161d0\"");
        assert_eq!(check_content_md5("+WtpfXy3k41SWi8xqvFh0A==", &d), Ok(()));
        assert_eq!(
            check_content_md5("1B2M2Y8AsgTpgAmY7PhCfg==", &d),
            Err(false)
        );
        assert_eq!(check_content_md5("nope", &d), Err(true));
        assert!(matches(
            "\"x\", \"f96b697d7cb7938d525a2f31aaf161d0\"",
            &etag(&d)
        ));
        assert!(!matches("\"x\"", &etag(&d)));
        assert_eq!(decode_base64("YWI="), Some(b"ab".to_vec()));
    }
}
