//! The bodies of the cargo-fuzz targets in `fuzz/` (docs/fuzzing.md): each takes arbitrary bytes
//! as a client would send them and checks what the parsers promise. The fuzz targets call them,
//! and `tests/fuzz_corpus.rs` replays each target's committed corpus through them in `make test`.

use crate::chunked::{ChunkSigner, Decoder, Framing, Step};
use crate::http::{MAX_HEAD, parse_head};
use crate::route::{parse_copy_source, parse_range, route_head};
use crate::sigv4::{self, SignedRequest, decode_hex, signing_key};
use crate::xml::{escape, parse_delete, unescape};

/// A request head (`http::parse_head`, also what the dashboard and `/metrics` read), then what
/// the gateway does with it: routing, the SigV4 `Authorization` header or presigned query
/// (parsed, then verified against a fixed secret), `Range` and `x-amz-copy-source`.
pub fn http_head(data: &[u8]) {
    let Ok(Some((head, used))) = parse_head(data) else {
        return;
    };
    assert!(used <= data.len() && used <= MAX_HEAD + 4);
    assert_eq!(&data[used - 4..used], b"\r\n\r\n");
    let _ = route_head(&head, Some("s3.example.net"));
    let req = SignedRequest {
        method: &head.method,
        raw_path: &head.raw_path,
        raw_query: &head.raw_query,
        headers: &head.headers,
    };
    if let Ok(Some(auth)) = sigv4::parse(&req) {
        let _ = auth.verify(
            &req,
            b"wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
            "us-east-1",
            1_369_353_600,
        );
    }
    if let Ok(Some(r)) = parse_range(head.header("range"), 1 << 20) {
        assert!(r.first <= r.last && r.last < 1 << 20);
    }
    if let Some(src) = head.header("x-amz-copy-source") {
        if let Ok((bucket, key)) = parse_copy_source(src) {
            assert!(!bucket.is_empty() && !key.is_empty());
        }
    }
}

/// The signer of the S3 documentation's aws-chunked example (its seed signature).
fn example_signer() -> ChunkSigner {
    ChunkSigner {
        key: signing_key(
            b"wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
            "20130524",
            "us-east-1",
            "s3",
        ),
        amz_date: "20130524T000000Z".into(),
        scope: "20130524/us-east-1/s3/aws4_request".into(),
        previous: decode_hex("4f232c4386841ef735655705268965c44a0e4690baa4adea153f7db9fa80a0a9")
            .expect("hex"),
    }
}

/// An `aws-chunked` body (or an HTTP `Transfer-Encoding: chunked` one) fed to the decoder in
/// each of its framings (signed chunks, signed chunks and trailers, unsigned chunks and
/// trailers), in pieces whose size the first byte picks: it never panics, releases no more
/// bytes than it was given, and decodes the same body the same way (bytes and trailers)
/// whatever the pieces.
pub fn aws_chunked(data: &[u8]) {
    let Some((&first, body)) = data.split_first() else {
        return;
    };
    let piece = usize::from(first).max(1);
    let framings = [
        Framing {
            signer: Some(example_signer()),
            trailer: false,
        },
        Framing {
            signer: Some(example_signer()),
            trailer: true,
        },
        Framing::http(),
    ];
    for framing in framings {
        let whole = decode_chunked(&framing, body, body.len().max(1));
        let pieces = decode_chunked(&framing, body, piece);
        if let Ok((out, _)) = &whole {
            assert!(out.len() <= body.len());
        }
        assert_eq!(whole.is_ok(), pieces.is_ok());
        if let (Ok(a), Ok(b)) = (whole, pieces) {
            assert_eq!(a, b);
        }
    }
}

/// The bytes and trailers of a body read as the gateway reads it: every piece in, then the
/// decoder must be done.
type Decoded = (Vec<u8>, Vec<(String, String)>);

fn decode_chunked(framing: &Framing, body: &[u8], piece: usize) -> Result<Decoded, ()> {
    let mut d = Decoder::new(framing.clone());
    let mut out = Vec::new();
    for p in body.chunks(piece) {
        d.input(p);
        while let Step::Data(b) = d.next_step().map_err(|_| ())? {
            out.extend(b);
        }
    }
    match d.next_step() {
        Ok(Step::Done) => Ok((out, d.trailers().to_vec())),
        _ => Err(()),
    }
}

/// XML request bodies: CompleteMultipartUpload and DeleteObjects, and the entity decoding they
/// share (what `escape` writes, `unescape` reads back).
pub fn xml_bodies(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(parts) = crate::multipart::parse_complete(text) {
        assert!(parts.len() <= 10_000);
    }
    if let Ok((keys, _)) = parse_delete(text) {
        assert!(keys.len() <= 1000);
    }
    if let Some(s) = unescape(text) {
        assert!(s.len() <= text.len());
    }
    assert_eq!(unescape(&escape(text)).as_deref(), Some(text));
}

/// The saved index file (`Vec<Record>` in the wire encoding) and a sync page from another
/// gateway (`SyncPage`): the records are applied to an index, and applying them again changes
/// nothing (idempotence).
pub fn index_records(data: &[u8]) {
    let records = match macula_core::wire::decode::<Vec<crate::index::Record>>(data) {
        Ok(r) => r,
        Err(_) => match macula_core::wire::decode::<crate::index::SyncPage>(data) {
            Ok(page) => page.records,
            Err(_) => return,
        },
    };
    let mut index = crate::index::Index::default();
    for r in records.iter().cloned() {
        index.apply(r);
    }
    let once = index.records();
    for r in records {
        index.apply(r);
    }
    assert_eq!(index.records(), once);
}
