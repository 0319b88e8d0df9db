//! `aws-chunked` bodies signed chunk by chunk (`STREAMING-AWS4-HMAC-SHA256-PAYLOAD`, what
//! minio-go — restic — sends over plain HTTP): a sans-IO decoder that releases a chunk's bytes
//! only after its signature, chained from the request's, verified.
//!
//! ```text
//! <hex size>;chunk-signature=<64 hex>\r\n<size bytes>\r\n … 0;chunk-signature=<64 hex>\r\n\r\n
//! ```

use ring::{digest, hmac};

use crate::error::{Code, S3Error};
use crate::sigv4::{Authorization, Payload, decode_hex, hex, signing_key};

/// Largest chunk accepted (SDKs send 64 KiB – 1 MiB chunks; this bounds the buffer).
pub const MAX_CHUNK: usize = 16 << 20;
/// Longest chunk header line.
const MAX_LINE: usize = 256;
const EMPTY_SHA256: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

/// What verifies each chunk: the request's signing key, date and scope, and the signature of
/// the previous chunk (the request's own for the first).
#[derive(Clone)]
pub struct ChunkSigner {
    pub key: hmac::Key,
    pub amz_date: String,
    /// `<date>/<region>/s3/aws4_request`.
    pub scope: String,
    pub previous: Vec<u8>,
}

impl ChunkSigner {
    /// For a verified request whose payload is `STREAMING-AWS4-HMAC-SHA256-PAYLOAD`.
    pub fn for_request(auth: &Authorization, secret: &[u8]) -> Option<Self> {
        match &auth.payload {
            Payload::Streaming(s) if s == SIGNED_STREAMING => Some(Self {
                key: signing_key(secret, &auth.date, &auth.region, &auth.service),
                amz_date: auth.amz_date.clone(),
                scope: format!(
                    "{}/{}/{}/aws4_request",
                    auth.date, auth.region, auth.service
                ),
                previous: auth.signature.clone(),
            }),
            _ => None,
        }
    }
}

/// The payload mode of signed chunks without trailers.
pub const SIGNED_STREAMING: &str = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD";

/// A step of the decoder.
#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    /// A verified chunk's bytes.
    Data(Vec<u8>),
    /// Feed more input.
    NeedMore,
    /// The final chunk was read and verified; the body is complete.
    Done,
}

pub struct Decoder {
    signer: ChunkSigner,
    buf: Vec<u8>,
    done: bool,
}

fn bad(msg: &str) -> S3Error {
    S3Error::new(Code::InvalidRequest, format!("aws-chunked body: {msg}"))
}

impl Decoder {
    pub fn new(signer: ChunkSigner) -> Self {
        Self {
            signer,
            buf: Vec::new(),
            done: false,
        }
    }

    /// Bytes of the raw (encoded) body, as they arrive.
    pub fn input(&mut self, b: &[u8]) {
        self.buf.extend_from_slice(b);
    }

    /// The next verified chunk, if complete in the input so far.
    pub fn next_step(&mut self) -> Result<Step, S3Error> {
        if self.done {
            return Ok(Step::Done);
        }
        let Some(eol) = self.buf.windows(2).position(|w| w == b"\r\n") else {
            if self.buf.len() > MAX_LINE {
                return Err(bad("chunk header too long"));
            }
            return Ok(Step::NeedMore);
        };
        let line = std::str::from_utf8(&self.buf[..eol]).map_err(|_| bad("header not UTF-8"))?;
        let (size, sig) = line
            .split_once(";chunk-signature=")
            .ok_or_else(|| bad("chunk header without chunk-signature"))?;
        let size = usize::from_str_radix(size.trim(), 16).map_err(|_| bad("bad chunk size"))?;
        if size > MAX_CHUNK {
            return Err(bad("chunk larger than 16 MiB"));
        }
        let sig = decode_hex(sig.trim())
            .filter(|s| s.len() == 32)
            .ok_or_else(|| bad("bad chunk signature"))?;
        // header, data, CRLF (the final chunk: header, CRLF).
        let need = eol + 2 + size + 2;
        if self.buf.len() < need {
            return Ok(Step::NeedMore);
        }
        if &self.buf[need - 2..need] != b"\r\n" {
            return Err(bad("chunk not followed by CRLF"));
        }
        let data = self.buf[eol + 2..eol + 2 + size].to_vec();
        if hmac::verify(&self.signer.key, &self.sts(&data), &sig).is_err() {
            return Err(S3Error::new(
                Code::SignatureDoesNotMatch,
                "a chunk's signature does not match",
            ));
        }
        self.signer.previous = sig;
        self.buf.drain(..need);
        if size == 0 {
            if !self.buf.is_empty() {
                return Err(bad("bytes after the final chunk"));
            }
            self.done = true;
            return Ok(Step::Done);
        }
        Ok(Step::Data(data))
    }

    fn sts(&self, data: &[u8]) -> Vec<u8> {
        format!(
            "AWS4-HMAC-SHA256-PAYLOAD\n{}\n{}\n{}\n{EMPTY_SHA256}\n{}",
            self.signer.amz_date,
            self.signer.scope,
            hex(&self.signer.previous),
            hex(digest::digest(&digest::SHA256, data).as_ref())
        )
        .into_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The S3 documentation's chunked-upload example: 65 KiB of 'a' in chunks of 64 KiB and
    /// 1 KiB, seed signature from the request.
    fn signer() -> ChunkSigner {
        ChunkSigner {
            key: signing_key(
                b"wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
                "20130524",
                "us-east-1",
                "s3",
            ),
            amz_date: "20130524T000000Z".into(),
            scope: "20130524/us-east-1/s3/aws4_request".into(),
            previous: decode_hex(
                "4f232c4386841ef735655705268965c44a0e4690baa4adea153f7db9fa80a0a9",
            )
            .unwrap(),
        }
    }

    fn body() -> Vec<u8> {
        let mut b = Vec::new();
        for (n, sig) in [
            (
                65536,
                "ad80c730a21e5b8d04586a2213dd63b9a0e99e0e2307b0ade35a65485a288648",
            ),
            (
                1024,
                "0055627c9e194cb4542bae2aa5492e3c1575bbb81b612b7d234b86a503ef5497",
            ),
            (
                0,
                "b6c6ea8a5354eaf15b3cb7646744f4275b71ea724fed81ceb9323e279d449df9",
            ),
        ] {
            b.extend_from_slice(format!("{n:x};chunk-signature={sig}\r\n").as_bytes());
            b.extend(std::iter::repeat_n(b'a', n));
            b.extend_from_slice(b"\r\n");
        }
        b
    }

    fn decode(body: &[u8], piece: usize) -> Result<Vec<u8>, S3Error> {
        let mut d = Decoder::new(signer());
        let mut out = Vec::new();
        for p in body.chunks(piece) {
            d.input(p);
            loop {
                match d.next_step()? {
                    Step::Data(b) => out.extend(b),
                    Step::NeedMore => break,
                    Step::Done => return Ok(out),
                }
            }
        }
        Err(bad("ended early"))
    }

    #[test]
    fn s3_doc_example_decodes_in_any_pieces() {
        for piece in [1, 7, 4096, 1 << 20] {
            assert_eq!(
                decode(&body(), piece).unwrap(),
                vec![b'a'; 66560],
                "{piece}"
            );
        }
    }

    #[test]
    fn tampering_fails() {
        let mut b = body();
        let i = b.iter().position(|c| *c == b'a').unwrap();
        b[i + 10] = b'b';
        assert_eq!(
            decode(&b, 4096).unwrap_err().code,
            Code::SignatureDoesNotMatch
        );
        // Chunks reordered or dropped break the chain.
        let whole = body();
        let second = whole.windows(4).position(|w| w == b"400;").unwrap();
        assert_eq!(
            decode(&whole[second..], 4096).unwrap_err().code,
            Code::SignatureDoesNotMatch
        );
        assert!(decode(b"zz;chunk-signature=00\r\n", 64).is_err());
        let mut trailing = body();
        trailing.extend_from_slice(b"x");
        assert!(decode(&trailing, 1 << 20).is_err());
    }
}
