//! `aws-chunked` bodies (a sans-IO decoder), in the three framings SDKs send:
//!
//! - `STREAMING-AWS4-HMAC-SHA256-PAYLOAD` (minio-go — restic — over plain HTTP): each chunk
//!   signed, chained from the request's signature; a chunk's bytes are released only after its
//!   signature is verified.
//! - `STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER`: the same, then trailing headers (a checksum)
//!   signed by `x-amz-trailer-signature`, chained from the final chunk's signature.
//! - `STREAMING-UNSIGNED-PAYLOAD-TRAILER` (boto3, aws-cli and the other SDKs over HTTPS): chunks
//!   without signatures, then the trailing checksum, which the gateway checks against the body.
//!
//! ```text
//! <hex size>;chunk-signature=<64 hex>\r\n<size bytes>\r\n … 0;chunk-signature=<64 hex>\r\n\r\n
//! <hex size>\r\n<size bytes>\r\n … 0\r\nx-amz-checksum-crc32:<base64>\r\n\r\n
//! … 0;chunk-signature=<64 hex>\r\nx-amz-checksum-crc32c:<base64>\r\nx-amz-trailer-signature:<64 hex>\r\n\r\n
//! ```

use ring::{digest, hmac};

use crate::error::{Code, S3Error};
use crate::sigv4::{Authorization, Payload, decode_hex, hex, signing_key};

/// Largest chunk accepted (SDKs send 64 KiB – 1 MiB chunks; this bounds the buffer).
pub const MAX_CHUNK: usize = 16 << 20;
/// Longest chunk header or trailer line.
const MAX_LINE: usize = 256;
/// Most trailing headers accepted (SDKs send one checksum, plus the signature).
const MAX_TRAILERS: usize = 8;
const EMPTY_SHA256: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

/// The payload mode of signed chunks without trailers.
pub const SIGNED_STREAMING: &str = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD";
/// Signed chunks, then signed trailing headers.
pub const SIGNED_STREAMING_TRAILER: &str = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER";
/// Chunks without signatures, then trailing headers (a checksum of the body).
pub const UNSIGNED_STREAMING_TRAILER: &str = "STREAMING-UNSIGNED-PAYLOAD-TRAILER";

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

/// How a request's aws-chunked body is framed and checked: chunk signatures or none, trailing
/// headers or none.
#[derive(Clone)]
pub struct Framing {
    pub signer: Option<ChunkSigner>,
    pub trailer: bool,
}

impl Framing {
    /// HTTP/1.1 `Transfer-Encoding: chunked` (RFC 9112 §7.1), the same framing as unsigned
    /// aws-chunked: chunk extensions ignored, trailer fields read (and left to the caller).
    pub fn http() -> Self {
        Self {
            signer: None,
            trailer: true,
        }
    }

    /// For a verified request whose payload mode is one of the three `STREAMING-…` modes this
    /// decoder reads; `None` for every other payload (other modes are refused by `BodyCheck`).
    pub fn for_request(auth: &Authorization, secret: &[u8]) -> Option<Self> {
        let Payload::Streaming(mode) = &auth.payload else {
            return None;
        };
        let signer = || ChunkSigner {
            key: signing_key(secret, &auth.date, &auth.region, &auth.service),
            amz_date: auth.amz_date.clone(),
            scope: format!(
                "{}/{}/{}/aws4_request",
                auth.date, auth.region, auth.service
            ),
            previous: auth.signature.clone(),
        };
        match mode.as_str() {
            SIGNED_STREAMING => Some(Self {
                signer: Some(signer()),
                trailer: false,
            }),
            SIGNED_STREAMING_TRAILER => Some(Self {
                signer: Some(signer()),
                trailer: true,
            }),
            UNSIGNED_STREAMING_TRAILER => Some(Self {
                signer: None,
                trailer: true,
            }),
            _ => None,
        }
    }
}

/// A step of the decoder.
#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    /// A (verified, when signed) chunk's bytes.
    Data(Vec<u8>),
    /// Feed more input.
    NeedMore,
    /// The final chunk (and the trailing headers, when the framing has them) was read and
    /// verified; the body is complete.
    Done,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum State {
    Chunks,
    Trailers,
    Done,
}

pub struct Decoder {
    signer: Option<ChunkSigner>,
    trailer: bool,
    buf: Vec<u8>,
    state: State,
    trailers: Vec<(String, String)>,
}

fn bad(msg: &str) -> S3Error {
    S3Error::new(Code::InvalidRequest, format!("aws-chunked body: {msg}"))
}

fn mismatch(what: &str) -> S3Error {
    S3Error::new(
        Code::SignatureDoesNotMatch,
        format!("{what} signature does not match"),
    )
}

impl Decoder {
    pub fn new(framing: Framing) -> Self {
        Self {
            signer: framing.signer,
            trailer: framing.trailer,
            buf: Vec::new(),
            state: State::Chunks,
            trailers: Vec::new(),
        }
    }

    /// Bytes of the raw (encoded) body, as they arrive.
    pub fn input(&mut self, b: &[u8]) {
        self.buf.extend_from_slice(b);
    }

    /// The trailing headers read (names lower-cased, `x-amz-trailer-signature` left out), once
    /// `Done`.
    pub fn trailers(&self) -> &[(String, String)] {
        &self.trailers
    }

    /// The next chunk, if complete in the input so far.
    pub fn next_step(&mut self) -> Result<Step, S3Error> {
        loop {
            match self.state {
                State::Done => {
                    // Refused however the reads split the body.
                    if !self.buf.is_empty() {
                        return Err(bad("bytes after the final chunk"));
                    }
                    return Ok(Step::Done);
                }
                State::Trailers => {
                    let Some(line) = self.line()? else {
                        return Ok(Step::NeedMore);
                    };
                    if line.is_empty() {
                        self.end_trailers()?;
                        self.state = State::Done;
                        continue;
                    }
                    let (name, value) = line
                        .split_once(':')
                        .ok_or_else(|| bad("trailing header without ':'"))?;
                    if self.trailers.len() == MAX_TRAILERS {
                        return Err(bad("too many trailing headers"));
                    }
                    self.trailers
                        .push((name.trim().to_ascii_lowercase(), value.trim().to_string()));
                }
                State::Chunks => return self.chunk(),
            }
        }
    }

    /// Where the line at the start of the input ends (its CRLF), once it is complete. A line
    /// longer than [`MAX_LINE`] is refused as soon as that is known, and the same way however
    /// the reads split it (a CR ending the input may start its CRLF).
    fn line_end(&self, what: &str) -> Result<Option<usize>, S3Error> {
        match self.buf.windows(2).position(|w| w == b"\r\n") {
            Some(eol) if eol > MAX_LINE => Err(bad(&format!("{what} too long"))),
            Some(eol) => Ok(Some(eol)),
            None if self.buf.len() - usize::from(self.buf.last() == Some(&b'\r')) > MAX_LINE => {
                Err(bad(&format!("{what} too long")))
            }
            None => Ok(None),
        }
    }

    /// The next CRLF-terminated line, consumed.
    fn line(&mut self) -> Result<Option<String>, S3Error> {
        let Some(eol) = self.line_end("line")? else {
            return Ok(None);
        };
        let line = std::str::from_utf8(&self.buf[..eol])
            .map_err(|_| bad("line not UTF-8"))?
            .to_string();
        self.buf.drain(..eol + 2);
        Ok(Some(line))
    }

    fn chunk(&mut self) -> Result<Step, S3Error> {
        let Some(eol) = self.line_end("chunk header")? else {
            return Ok(Step::NeedMore);
        };
        let line = std::str::from_utf8(&self.buf[..eol]).map_err(|_| bad("header not UTF-8"))?;
        let (size, sig) = match (&self.signer, line.split_once(";chunk-signature=")) {
            (Some(_), Some((size, sig))) => {
                let sig = decode_hex(sig.trim())
                    .filter(|s| s.len() == 32)
                    .ok_or_else(|| bad("bad chunk signature"))?;
                (size, Some(sig))
            }
            (Some(_), None) => return Err(bad("chunk header without chunk-signature")),
            (None, Some(_)) => return Err(bad("a chunk signature in an unsigned body")),
            // Chunk extensions (`;name=value`) carry nothing we use.
            (None, None) => (line.split(';').next().unwrap_or(line), None),
        };
        let size = usize::from_str_radix(size.trim(), 16).map_err(|_| bad("bad chunk size"))?;
        if size > MAX_CHUNK {
            return Err(bad("chunk larger than 16 MiB"));
        }
        // header, data, CRLF; the final chunk of a body with trailers: header only (the
        // trailers and the empty line follow).
        let need = if size == 0 && self.trailer {
            eol + 2
        } else {
            eol + 2 + size + 2
        };
        if self.buf.len() < need {
            return Ok(Step::NeedMore);
        }
        if need != eol + 2 && &self.buf[need - 2..need] != b"\r\n" {
            return Err(bad("chunk not followed by CRLF"));
        }
        let data = self.buf[eol + 2..eol + 2 + size].to_vec();
        if let (Some(signer), Some(sig)) = (&mut self.signer, sig) {
            let sts = format!(
                "AWS4-HMAC-SHA256-PAYLOAD\n{}\n{}\n{}\n{EMPTY_SHA256}\n{}",
                signer.amz_date,
                signer.scope,
                hex(&signer.previous),
                hex(digest::digest(&digest::SHA256, &data).as_ref())
            );
            if hmac::verify(&signer.key, sts.as_bytes(), &sig).is_err() {
                return Err(mismatch("a chunk's"));
            }
            signer.previous = sig;
        }
        self.buf.drain(..need);
        if size == 0 {
            self.state = if self.trailer {
                State::Trailers
            } else {
                State::Done
            };
            return self.next_step();
        }
        Ok(Step::Data(data))
    }

    /// After the trailers' empty line: the trailer signature checked, when signed.
    fn end_trailers(&mut self) -> Result<(), S3Error> {
        let at = self
            .trailers
            .iter()
            .position(|(n, _)| n == "x-amz-trailer-signature");
        let sig = at.map(|i| self.trailers.remove(i).1);
        let Some(signer) = &self.signer else {
            return match sig {
                Some(_) => Err(bad("a trailer signature in an unsigned body")),
                None => Ok(()),
            };
        };
        let sig = sig
            .and_then(|s| decode_hex(&s))
            .filter(|s| s.len() == 32)
            .ok_or_else(|| bad("signed trailers without a valid x-amz-trailer-signature"))?;
        let canonical: String = self
            .trailers
            .iter()
            .map(|(n, v)| format!("{n}:{v}\n"))
            .collect();
        let sts = format!(
            "AWS4-HMAC-SHA256-TRAILER\n{}\n{}\n{}\n{}",
            signer.amz_date,
            signer.scope,
            hex(&signer.previous),
            hex(digest::digest(&digest::SHA256, canonical.as_bytes()).as_ref())
        );
        hmac::verify(&signer.key, sts.as_bytes(), &sig).map_err(|_| mismatch("the trailer's"))
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
        decode_framed(
            Framing {
                signer: Some(signer()),
                trailer: false,
            },
            body,
            piece,
        )
        .map(|(data, _)| data)
    }

    /// A decoded body and its trailers.
    type Decoded = (Vec<u8>, Vec<(String, String)>);

    fn decode_framed(framing: Framing, body: &[u8], piece: usize) -> Result<Decoded, S3Error> {
        let mut d = Decoder::new(framing);
        let mut out = Vec::new();
        for p in body.chunks(piece) {
            d.input(p);
            loop {
                match d.next_step()? {
                    Step::Data(b) => out.extend(b),
                    Step::NeedMore => break,
                    Step::Done => return Ok((out, d.trailers().to_vec())),
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

    /// The S3 documentation's example of signed chunks with a trailing checksum: the same
    /// 65 KiB of 'a', a CRC32C trailer, chunk and trailer signatures from its seed.
    fn trailer_body(trailer_sig: &str) -> Vec<u8> {
        let mut b = Vec::new();
        for (n, sig) in [
            (
                65536,
                "b474d8862b1487a5145d686f57f013e54db672cee1c953b3010fb58501ef5aa2",
            ),
            (
                1024,
                "1c1344b170168f8e65b41376b44b20fe354e373826ccbbe2c1d40a8cae51e5c7",
            ),
        ] {
            b.extend_from_slice(format!("{n:x};chunk-signature={sig}\r\n").as_bytes());
            b.extend(std::iter::repeat_n(b'a', n));
            b.extend_from_slice(b"\r\n");
        }
        b.extend_from_slice(
            format!(
                "0;chunk-signature=2ca2aba2005185cf7159c6277faf83795951dd77a3a99e6e65d5c9f85863f992\r\n\
                 x-amz-checksum-crc32c:sOO8/Q==\r\nx-amz-trailer-signature:{trailer_sig}\r\n\r\n"
            )
            .as_bytes(),
        );
        b
    }

    fn trailer_framing() -> Framing {
        let mut s = signer();
        s.previous =
            decode_hex("106e2a8a18243abcf37539882f36619c00e2dfc72633413f02d3b74544bfeb8e").unwrap();
        Framing {
            signer: Some(s),
            trailer: true,
        }
    }

    /// HMAC of the documentation's trailer string to sign (whose last line, the hash of
    /// `x-amz-checksum-crc32c:sOO8/Q==\n`, is 1e376db7…d774 as printed there). The signature the
    /// documentation prints beside it (63bddb24…) does not follow from that string to sign.
    const DOC_TRAILER_SIG: &str =
        "d81f82fc3505edab99d459891051a732e8730629a2e4a59689829ca17fe2e435";

    #[test]
    fn s3_doc_trailer_example_decodes_and_checks_the_trailer_signature() {
        for piece in [1, 13, 4096, 1 << 20] {
            let (data, trailers) =
                decode_framed(trailer_framing(), &trailer_body(DOC_TRAILER_SIG), piece).unwrap();
            assert_eq!(data, vec![b'a'; 66560]);
            assert_eq!(
                trailers,
                vec![("x-amz-checksum-crc32c".to_string(), "sOO8/Q==".to_string())]
            );
        }
        // A changed checksum, a changed signature, a missing signature.
        let body = trailer_body(DOC_TRAILER_SIG);
        let at = body.windows(8).position(|w| w == b"sOO8/Q==").unwrap();
        let mut changed = body.clone();
        changed[at + 3] = b'9';
        assert_eq!(
            decode_framed(trailer_framing(), &changed, 4096)
                .unwrap_err()
                .code,
            Code::SignatureDoesNotMatch
        );
        let forged = trailer_body(&"0".repeat(64));
        assert_eq!(
            decode_framed(trailer_framing(), &forged, 4096)
                .unwrap_err()
                .code,
            Code::SignatureDoesNotMatch
        );
        let mut unsigned = trailer_body(DOC_TRAILER_SIG);
        let cut = unsigned.windows(8).position(|w| w == b"x-amz-tr").unwrap();
        unsigned.truncate(cut);
        unsigned.extend_from_slice(b"\r\n");
        assert!(decode_framed(trailer_framing(), &unsigned, 4096).is_err());
    }

    #[test]
    fn unsigned_chunks_with_a_trailer() {
        let framing = || Framing {
            signer: None,
            trailer: true,
        };
        let body = b"5\r\nhello\r\n6\r\n world\r\n0\r\nX-Amz-Checksum-CRC32:DUoRhQ==\r\n\r\n";
        for piece in [1, 5, 64] {
            let (data, trailers) = decode_framed(framing(), body, piece).unwrap();
            assert_eq!(data, b"hello world");
            assert_eq!(
                trailers,
                vec![("x-amz-checksum-crc32".to_string(), "DUoRhQ==".to_string())]
            );
        }
        for bad_body in [
            &b"5;chunk-signature=00\r\nhello\r\n0\r\n\r\n"[..],
            b"5\r\nhelloXX0\r\n\r\n",
            b"5\r\nhello\r\n0\r\nx-amz-trailer-signature:00\r\n\r\n",
            b"5\r\nhello\r\n0\r\nno colon\r\n\r\n",
            b"5\r\nhello\r\n0\r\n\r\nextra",
        ] {
            assert!(
                decode_framed(framing(), bad_body, 64).is_err(),
                "{bad_body:?}"
            );
        }
        // HTTP chunked: extensions ignored, no trailers.
        let (data, trailers) =
            decode_framed(Framing::http(), b"5;ext=1\r\nhello\r\n0\r\n\r\n", 3).unwrap();
        assert_eq!((data.as_slice(), trailers.len()), (&b"hello"[..], 0));
        let many: String = (0..9).map(|i| format!("x-{i}:v\r\n")).collect();
        let body = format!("0\r\n{many}\r\n");
        assert!(decode_framed(framing(), body.as_bytes(), 64).is_err());
    }
}
