//! Macula OS S3 gateway core (`docs/s3.md`). Nothing here does I/O: the shell in `maculad`
//! reads requests, streams bodies into the realm's storage and carries index records between
//! gateways.
//!
//! - [`sigv4`]: SigV4 verification (header and presigned query).
//! - [`route`]: path- and virtual-host-style addressing, operation selection, `Range`.
//! - [`http`]: the HTTP/1.1 request head parser and response heads.
//! - [`multipart`]: multipart uploads' parts, completion checks, `md5-of-md5s-N` ETags.
//! - [`index`]: the realm-wide bucket/key/access-key index (last writer wins by a Lamport
//!   version).
//! - [`chunked`]: `aws-chunked` bodies with chained chunk signatures.
//! - [`body`], [`checksum`]: what a PUT body is checked against as it streams (payload hash,
//!   `x-amz-checksum-*`, `Content-MD5`).
//! - [`config`]: the `[s3]` section.
//! - [`etag`], [`xml`], [`error`]: ETags and `Content-MD5`, XML bodies, S3 error codes.
//! - [`fuzzing`]: the fuzz targets' bodies (docs/fuzzing.md).

pub mod body;
pub mod checksum;
pub mod chunked;
pub mod config;
pub mod error;
pub mod etag;
pub mod fuzzing;
pub mod http;
pub mod index;
pub mod multipart;
pub mod route;
pub mod sigv4;
pub mod xml;

pub use error::{Code, S3Error};

/// Constant-time equality of two byte strings (the length is not secret).
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
