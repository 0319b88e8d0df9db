//! Erasure codecs behind one trait, each with the codec ID written into every shard header.
//!
//! - `0x01` [`CodecId::RsGf8Matrix`]: Reed–Solomon over GF(2^8) with a Vandermonde-derived matrix
//!   (`reed-solomon-erasure`, klauspost/reedsolomon compatible), at most 256 shards.
//! - `0x02` [`CodecId::RsGf16Leopard`]: Leopard-RS over GF(2^16) (`reed-solomon-simd`,
//!   O(n log n), runtime SIMD dispatch).
//!
//! The two are not interchangeable: a segment must be decoded with the codec that encoded it, so
//! both decoders always stay in the build. [`DEFAULT_CODEC`] is chosen from the numbers of
//! `benches/store.rs` (see `docs/storage.md`).

use macula_core::sync::Locked;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use std::cell::RefCell;

use reed_solomon_erasure::galois_8::ReedSolomon;
use reed_solomon_simd::{ReedSolomonDecoder, ReedSolomonEncoder};

/// Codec identifiers as written in shard headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum CodecId {
    RsGf8Matrix = 0x01,
    RsGf16Leopard = 0x02,
}

impl CodecId {
    pub fn from_u8(v: u8) -> Option<Self> {
        match v {
            0x01 => Some(Self::RsGf8Matrix),
            0x02 => Some(Self::RsGf16Leopard),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::RsGf8Matrix => "rs-gf8-matrix",
            Self::RsGf16Leopard => "rs-gf16-leopard",
        }
    }

    /// The implementation of this codec.
    pub fn codec(self) -> &'static dyn Codec {
        match self {
            Self::RsGf8Matrix => &RsGf8Matrix,
            Self::RsGf16Leopard => &RsGf16Leopard,
        }
    }
}

/// Why coding failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CodecError {
    #[error(
        "not enough shards (have {have}, need {need}); bring more holders online or restore from another copy"
    )]
    NotEnoughShards { have: usize, need: usize },
    #[error("shards have different or invalid lengths")]
    ShardLength,
    #[error("{codec} failed: {message}")]
    Library {
        codec: &'static str,
        message: String,
    },
}

/// An erasure code with `k` data shards and `m` parity shards.
pub trait Codec: Send + Sync {
    fn id(&self) -> CodecId;

    /// Computes the `m` parity shards of `data` (`k` shards of equal, even length).
    fn encode(&self, data: &[&[u8]], m: usize) -> Result<Vec<Vec<u8>>, CodecError>;

    /// Fills every `None` slot of `shards` (`k + m` slots, at least `k` present, all of equal
    /// length).
    fn reconstruct(&self, k: usize, shards: &mut [Option<Vec<u8>>]) -> Result<(), CodecError>;

    /// Fills the missing *data* slots (`0..k`) only; parity slots may stay `None`. Used by reads.
    fn reconstruct_data(&self, k: usize, shards: &mut [Option<Vec<u8>>]) -> Result<(), CodecError>;
}

fn check_present(k: usize, shards: &[Option<Vec<u8>>]) -> Result<usize, CodecError> {
    let have = shards.iter().filter(|s| s.is_some()).count();
    if have < k {
        return Err(CodecError::NotEnoughShards { have, need: k });
    }
    let mut lens = shards.iter().flatten().map(Vec::len);
    let len = lens.next().unwrap_or(0);
    if lens.any(|l| l != len) || len == 0 || len % 2 != 0 {
        return Err(CodecError::ShardLength);
    }
    Ok(len)
}

/// `reed-solomon-erasure` (GF(2^8) matrix).
pub struct RsGf8Matrix;

/// Encoders per geometry (building the matrix is not free; decode matrices are cached inside).
type RseCache = Mutex<HashMap<(usize, usize), Arc<ReedSolomon>>>;

fn rse(k: usize, m: usize) -> Result<Arc<ReedSolomon>, CodecError> {
    static CACHE: OnceLock<RseCache> = OnceLock::new();
    let cache = CACHE.get_or_init(Default::default);
    let mut cache = cache.locked();
    if let Some(rs) = cache.get(&(k, m)) {
        return Ok(rs.clone());
    }
    let rs = Arc::new(ReedSolomon::new(k, m).map_err(|e| rse_err(&e))?);
    cache.insert((k, m), rs.clone());
    Ok(rs)
}

fn rse_err(e: &reed_solomon_erasure::Error) -> CodecError {
    CodecError::Library {
        codec: CodecId::RsGf8Matrix.name(),
        message: format!("{e:?}"),
    }
}

impl Codec for RsGf8Matrix {
    fn id(&self) -> CodecId {
        CodecId::RsGf8Matrix
    }

    fn encode(&self, data: &[&[u8]], m: usize) -> Result<Vec<Vec<u8>>, CodecError> {
        let len = data.first().map_or(0, |d| d.len());
        if data.iter().any(|d| d.len() != len) || len == 0 {
            return Err(CodecError::ShardLength);
        }
        let rs = rse(data.len(), m)?;
        let mut parity = vec![vec![0u8; len]; m];
        rs.encode_sep(data, &mut parity).map_err(|e| rse_err(&e))?;
        Ok(parity)
    }

    fn reconstruct(&self, k: usize, shards: &mut [Option<Vec<u8>>]) -> Result<(), CodecError> {
        check_present(k, shards)?;
        let rs = rse(k, shards.len() - k)?;
        rs.reconstruct(shards).map_err(|e| rse_err(&e))
    }

    fn reconstruct_data(&self, k: usize, shards: &mut [Option<Vec<u8>>]) -> Result<(), CodecError> {
        check_present(k, shards)?;
        let rs = rse(k, shards.len() - k)?;
        rs.reconstruct_data(shards).map_err(|e| rse_err(&e))
    }
}

/// `reed-solomon-simd` (Leopard-RS, GF(2^16)).
pub struct RsGf16Leopard;

thread_local! {
    /// Per-thread coders whose working space is reused across segments.
    static RSS_ENCODER: RefCell<Option<ReedSolomonEncoder>> = const { RefCell::new(None) };
    static RSS_DECODER: RefCell<Option<ReedSolomonDecoder>> = const { RefCell::new(None) };
}

fn rss_err(e: reed_solomon_simd::Error) -> CodecError {
    CodecError::Library {
        codec: CodecId::RsGf16Leopard.name(),
        message: e.to_string(),
    }
}

impl Codec for RsGf16Leopard {
    fn id(&self) -> CodecId {
        CodecId::RsGf16Leopard
    }

    fn encode(&self, data: &[&[u8]], m: usize) -> Result<Vec<Vec<u8>>, CodecError> {
        let len = data.first().map_or(0, |d| d.len());
        if data.iter().any(|d| d.len() != len) || len == 0 || len % 2 != 0 {
            return Err(CodecError::ShardLength);
        }
        // Reusing the encoder's working space avoids page-faulting fresh buffers per segment.
        RSS_ENCODER.with_borrow_mut(|slot| {
            let enc = match slot {
                Some(enc) => {
                    enc.reset(data.len(), m, len).map_err(rss_err)?;
                    enc
                }
                None => slot.insert(ReedSolomonEncoder::new(data.len(), m, len).map_err(rss_err)?),
            };
            for d in data {
                enc.add_original_shard(d).map_err(rss_err)?;
            }
            let result = enc.encode().map_err(rss_err)?;
            Ok(result.recovery_iter().map(<[u8]>::to_vec).collect())
        })
    }

    fn reconstruct(&self, k: usize, shards: &mut [Option<Vec<u8>>]) -> Result<(), CodecError> {
        self.reconstruct_data(k, shards)?;
        let m = shards.len() - k;
        if shards[k..].iter().any(Option::is_none) {
            let data: Vec<&[u8]> = shards[..k]
                .iter()
                .map(|s| s.as_deref().expect("restored"))
                .collect();
            let parity = self.encode(&data, m)?;
            for (slot, p) in shards[k..].iter_mut().zip(parity) {
                if slot.is_none() {
                    *slot = Some(p);
                }
            }
        }
        Ok(())
    }

    fn reconstruct_data(&self, k: usize, shards: &mut [Option<Vec<u8>>]) -> Result<(), CodecError> {
        check_present(k, shards)?;
        let m = shards.len() - k;
        if shards[..k].iter().any(Option::is_none) {
            let len = shards.iter().flatten().next().map_or(0, Vec::len);
            let restored: Vec<(usize, Vec<u8>)> = RSS_DECODER.with_borrow_mut(|slot| {
                let dec = match slot {
                    Some(dec) => {
                        dec.reset(k, m, len).map_err(rss_err)?;
                        dec
                    }
                    None => slot.insert(ReedSolomonDecoder::new(k, m, len).map_err(rss_err)?),
                };
                for (i, s) in shards.iter().enumerate() {
                    if let Some(s) = s {
                        if i < k {
                            dec.add_original_shard(i, s).map_err(rss_err)?;
                        } else {
                            dec.add_recovery_shard(i - k, s).map_err(rss_err)?;
                        }
                    }
                }
                let result = dec.decode().map_err(rss_err)?;
                Ok::<_, CodecError>(
                    result
                        .restored_original_iter()
                        .map(|(i, s)| (i, s.to_vec()))
                        .collect(),
                )
            })?;
            for (i, shard) in restored {
                shards[i] = Some(shard);
            }
        }
        Ok(())
    }
}

/// The codec new segments are encoded with. Measured with `cargo bench -p macula-store` (table in
/// `docs/storage.md`): at every measured geometry (4+2, 10+4, 29+51) rs-gf16-leopard encodes
/// 2.8–9.2× faster than rs-gf8-matrix, while rs-gf8-matrix decodes a single lost shard 1.6–7×
/// faster. Encoding runs on every put, decoding only on degraded reads and repair, and the
/// GF(2^16) codec also has NEON kernels for the Pi (the GF(2^8) crate is pure Rust there unless
/// built with its C `simd-accel`), so one default serves all widths. Both decoders stay in the
/// agent; `PutConfig::codec` selects either per object.
pub const DEFAULT_CODEC: CodecId = CodecId::RsGf16Leopard;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_codecs_recover_any_k() {
        for id in [CodecId::RsGf8Matrix, CodecId::RsGf16Leopard] {
            let codec = id.codec();
            let (k, m, len) = (4usize, 2usize, 128usize);
            let data: Vec<Vec<u8>> = (0..k)
                .map(|i| (0..len).map(|j| (i * 7 + j * 13) as u8).collect())
                .collect();
            let refs: Vec<&[u8]> = data.iter().map(Vec::as_slice).collect();
            let parity = codec.encode(&refs, m).unwrap();
            let full: Vec<Vec<u8>> = data.iter().cloned().chain(parity).collect();
            for a in 0..k + m {
                for b in a..k + m {
                    let mut shards: Vec<Option<Vec<u8>>> = full.iter().cloned().map(Some).collect();
                    shards[a] = None;
                    shards[b] = None;
                    let mut data_only = shards.clone();
                    codec.reconstruct_data(k, &mut data_only).unwrap();
                    for (i, s) in data_only.iter().enumerate().take(k) {
                        assert_eq!(s.as_ref(), Some(&full[i]), "{id:?} data-only lost {a},{b}");
                    }
                    codec.reconstruct(k, &mut shards).unwrap();
                    let got: Vec<Vec<u8>> = shards.into_iter().map(Option::unwrap).collect();
                    assert_eq!(got, full, "{id:?} lost {a},{b}");
                }
            }
            let mut three: Vec<Option<Vec<u8>>> = full.iter().cloned().map(Some).collect();
            three[0] = None;
            three[1] = None;
            three[5] = None;
            assert_eq!(
                codec.reconstruct(k, &mut three),
                Err(CodecError::NotEnoughShards { have: 3, need: 4 })
            );
        }
    }
}
