//! Erasure codecs behind one trait, each with the codec ID written into every shard header.
//!
//! - `0x01` [`CodecId::RsGf8Matrix`]: Reed–Solomon over GF(2^8) with a Vandermonde-derived matrix
//!   (klauspost/reedsolomon and `reed-solomon-erasure` compatible, bit for bit), at most 256
//!   shards; computed by this crate's SIMD kernels ([`crate::gf8`]).
//! - `0x02` [`CodecId::RsGf16Leopard`]: Leopard-RS over GF(2^16) (`reed-solomon-simd`,
//!   O(n log n), runtime SIMD dispatch).
//!
//! The two are not interchangeable: a segment must be decoded with the codec that encoded it, so
//! both decoders always stay in the build. [`DEFAULT_CODEC`] is chosen from the numbers of
//! `benches/store.rs` (see `docs/storage.md`).
//!
//! The hot path codes into caller-owned buffers ([`Codec::encode_into`],
//! [`Codec::reconstruct_into`]); [`Codec::encode`], [`Codec::reconstruct`] and
//! [`Codec::reconstruct_data`] allocate the results and are built on them.

use std::cell::RefCell;

use reed_solomon_simd::{ReedSolomonDecoder, ReedSolomonEncoder};

use crate::gf8;

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
    #[error("{codec} cannot code {k} + {m} shards (at most {max} in all, k and m at least 1)")]
    Geometry {
        codec: &'static str,
        k: usize,
        m: usize,
        max: usize,
    },
    #[error("shard index {0} is not in the code or named twice")]
    Index(usize),
    #[error("{codec} failed: {message}")]
    Library {
        codec: &'static str,
        message: String,
    },
}

/// An erasure code with `k` data shards and `m` parity shards.
pub trait Codec: Send + Sync {
    fn id(&self) -> CodecId;

    /// Computes the `m = parity.len()` parity shards of `data` (`k` shards of equal, even,
    /// non-zero length) into `parity` (buffers of that length, overwritten).
    fn encode_into(&self, data: &[&[u8]], parity: &mut [&mut [u8]]) -> Result<(), CodecError>;

    /// Rebuilds each shard named in `out` (index in `0..k + m`, buffer of the shard length,
    /// overwritten) from the present slots of `shards` (`k + m` slots, at least `k` present, all
    /// of equal length).
    fn reconstruct_into(
        &self,
        k: usize,
        shards: &[Option<&[u8]>],
        out: &mut [(usize, &mut [u8])],
    ) -> Result<(), CodecError>;

    /// Computes the `m` parity shards of `data` into fresh buffers.
    fn encode(&self, data: &[&[u8]], m: usize) -> Result<Vec<Vec<u8>>, CodecError> {
        let len = data.first().map_or(0, |d| d.len());
        let mut parity = vec![vec![0u8; len]; m];
        let mut refs: Vec<&mut [u8]> = parity.iter_mut().map(Vec::as_mut_slice).collect();
        self.encode_into(data, &mut refs)?;
        Ok(parity)
    }

    /// Fills every `None` slot of `shards` (`k + m` slots, at least `k` present, all of equal
    /// length).
    fn reconstruct(&self, k: usize, shards: &mut [Option<Vec<u8>>]) -> Result<(), CodecError> {
        fill(self, k, shards, false)
    }

    /// Fills the missing *data* slots (`0..k`) only; parity slots may stay `None`. Used by reads.
    fn reconstruct_data(&self, k: usize, shards: &mut [Option<Vec<u8>>]) -> Result<(), CodecError> {
        fill(self, k, shards, true)
    }
}

fn fill<C: Codec + ?Sized>(
    codec: &C,
    k: usize,
    shards: &mut [Option<Vec<u8>>],
    data_only: bool,
) -> Result<(), CodecError> {
    let present: Vec<Option<&[u8]>> = shards.iter().map(Option::as_deref).collect();
    let len = check_present(k, &present)?;
    let missing: Vec<usize> = (0..shards.len())
        .filter(|&i| shards[i].is_none() && (i < k || !data_only))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    let mut bufs = vec![vec![0u8; len]; missing.len()];
    let mut out: Vec<(usize, &mut [u8])> = missing
        .iter()
        .copied()
        .zip(bufs.iter_mut().map(Vec::as_mut_slice))
        .collect();
    codec.reconstruct_into(k, &present, &mut out)?;
    for (i, b) in missing.into_iter().zip(bufs) {
        shards[i] = Some(b);
    }
    Ok(())
}

/// At least `k` of the `k + m` (`m ≥ 1`) slots present, all of one even, non-zero length:
/// returns that length.
fn check_present(k: usize, shards: &[Option<&[u8]>]) -> Result<usize, CodecError> {
    let have = shards.iter().flatten().count();
    if have < k || k == 0 {
        return Err(CodecError::NotEnoughShards { have, need: k });
    }
    let mut lens = shards.iter().flatten().map(|s| s.len());
    let len = lens.next().unwrap_or(0);
    if lens.any(|l| l != len) || len == 0 || len % 2 != 0 {
        return Err(CodecError::ShardLength);
    }
    Ok(len)
}

/// Checks the arguments of [`Codec::encode_into`]: returns the shard length.
fn check_encode(data: &[&[u8]], parity: &[&mut [u8]]) -> Result<usize, CodecError> {
    let len = data.first().map_or(0, |d| d.len());
    if data.iter().any(|d| d.len() != len)
        || parity.iter().any(|p| p.len() != len)
        || len == 0
        || len % 2 != 0
    {
        return Err(CodecError::ShardLength);
    }
    Ok(len)
}

/// Checks the arguments of [`Codec::reconstruct_into`]: returns the shard length.
fn check_reconstruct(
    k: usize,
    shards: &[Option<&[u8]>],
    out: &[(usize, &mut [u8])],
) -> Result<usize, CodecError> {
    let len = check_present(k, shards)?;
    for (j, (i, b)) in out.iter().enumerate() {
        if *i >= shards.len() || out[..j].iter().any(|(o, _)| o == i) {
            return Err(CodecError::Index(*i));
        }
        if b.len() != len {
            return Err(CodecError::ShardLength);
        }
    }
    Ok(len)
}

/// Reed–Solomon over GF(2^8), codec `0x01`: [`crate::gf8`].
pub struct RsGf8Matrix;

impl RsGf8Matrix {
    fn code(k: usize, m: usize) -> Result<std::sync::Arc<gf8::Code>, CodecError> {
        if k == 0 || m == 0 || k + m > 256 {
            return Err(CodecError::Geometry {
                codec: CodecId::RsGf8Matrix.name(),
                k,
                m,
                max: 256,
            });
        }
        Ok(gf8::code(k, m))
    }
}

impl Codec for RsGf8Matrix {
    fn id(&self) -> CodecId {
        CodecId::RsGf8Matrix
    }

    fn encode_into(&self, data: &[&[u8]], parity: &mut [&mut [u8]]) -> Result<(), CodecError> {
        check_encode(data, parity)?;
        Self::code(data.len(), parity.len())?.encode(data, parity);
        Ok(())
    }

    fn reconstruct_into(
        &self,
        k: usize,
        shards: &[Option<&[u8]>],
        out: &mut [(usize, &mut [u8])],
    ) -> Result<(), CodecError> {
        check_reconstruct(k, shards, out)?;
        if !out.is_empty() {
            Self::code(k, shards.len() - k)?.reconstruct(shards, out);
        }
        Ok(())
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

/// Runs `f` with this thread's encoder set up for `k + m` shards of `len` bytes.
fn with_rss_encoder<T>(
    k: usize,
    m: usize,
    len: usize,
    f: impl FnOnce(&mut ReedSolomonEncoder) -> Result<T, CodecError>,
) -> Result<T, CodecError> {
    RSS_ENCODER.with_borrow_mut(|slot| {
        let enc = match slot {
            Some(enc) => {
                enc.reset(k, m, len).map_err(rss_err)?;
                enc
            }
            None => slot.insert(ReedSolomonEncoder::new(k, m, len).map_err(rss_err)?),
        };
        f(enc)
    })
}

/// Encodes `data` into this thread's encoder and hands each recovery shard to `put`.
fn rss_encode(
    data: &[&[u8]],
    m: usize,
    mut put: impl FnMut(usize, &[u8]),
) -> Result<(), CodecError> {
    let len = data[0].len();
    with_rss_encoder(data.len(), m, len, |enc| {
        for d in data {
            enc.add_original_shard(d).map_err(rss_err)?;
        }
        let result = enc.encode().map_err(rss_err)?;
        for (i, r) in result.recovery_iter().enumerate() {
            put(i, r);
        }
        Ok(())
    })
}

/// Copies the requested data shards of the complete `data` into `out` and encodes the requested
/// parity shards into it.
fn rss_fill(data: &[&[u8]], m: usize, out: &mut [(usize, &mut [u8])]) -> Result<(), CodecError> {
    let k = data.len();
    for (i, b) in out.iter_mut() {
        if *i < k {
            b.copy_from_slice(data[*i]);
        }
    }
    if out.iter().any(|(i, _)| *i >= k) {
        rss_encode(data, m, |i, r| {
            if let Some((_, b)) = out.iter_mut().find(|(o, _)| *o == k + i) {
                b.copy_from_slice(r);
            }
        })?;
    }
    Ok(())
}

impl Codec for RsGf16Leopard {
    fn id(&self) -> CodecId {
        CodecId::RsGf16Leopard
    }

    fn encode_into(&self, data: &[&[u8]], parity: &mut [&mut [u8]]) -> Result<(), CodecError> {
        check_encode(data, parity)?;
        rss_encode(data, parity.len(), |i, r| parity[i].copy_from_slice(r))
    }

    fn reconstruct_into(
        &self,
        k: usize,
        shards: &[Option<&[u8]>],
        out: &mut [(usize, &mut [u8])],
    ) -> Result<(), CodecError> {
        let len = check_reconstruct(k, shards, out)?;
        if out.is_empty() {
            return Ok(());
        }
        let m = shards.len() - k;
        if shards[..k].iter().all(Option::is_some) {
            let data: Vec<&[u8]> = shards[..k].iter().flatten().copied().collect();
            return rss_fill(&data, m, out);
        }
        RSS_DECODER.with_borrow_mut(|slot| {
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
            let data: Vec<&[u8]> = (0..k)
                .map(|i| {
                    shards[i]
                        .or_else(|| result.restored_original(i))
                        .expect("the decoder restores every missing original shard")
                })
                .collect();
            rss_fill(&data, m, out)
        })
    }
}

/// The codec new segments are encoded with (`PutConfig::codec`, `[storage] codec`); both
/// decoders stay in the agent. Measured with `cargo bench -p macula-store` (table in
/// `docs/storage.md`): at 4+2 and 10+4 (the agent's automatic geometries go up to 4+2)
/// rs-gf8-matrix encodes 3× and decodes 7–23× faster than rs-gf16-leopard, at the level of
/// ISA-L; Leopard-RS only wins encoding at wide geometries (29+51: 5.7×), which a realm selects
/// with `[storage] codec = "rs-gf16-leopard"`.
pub const DEFAULT_CODEC: CodecId = CodecId::RsGf8Matrix;

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
                    for (i, s) in data_only.iter().enumerate() {
                        if i < k {
                            assert_eq!(s.as_ref(), Some(&full[i]), "{id:?} data-only lost {a},{b}");
                        } else if i == a || i == b {
                            assert_eq!(s, &None, "{id:?} data-only rebuilt parity {i}");
                        }
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
            // Bad arguments are refused, not coded.
            let present: Vec<Option<&[u8]>> = full.iter().map(|s| Some(s.as_slice())).collect();
            let mut short = vec![0u8; len - 2];
            assert_eq!(
                codec.reconstruct_into(k, &present, &mut [(0, &mut short)]),
                Err(CodecError::ShardLength)
            );
            let (mut b1, mut b2) = (vec![0u8; len], vec![0u8; len]);
            assert_eq!(
                codec.reconstruct_into(k, &present, &mut [(6, &mut b1)]),
                Err(CodecError::Index(6))
            );
            assert_eq!(
                codec.reconstruct_into(k, &present, &mut [(1, &mut b1), (1, &mut b2)]),
                Err(CodecError::Index(1))
            );
            let mut odd = vec![vec![0u8; len]; m];
            let mut odd_refs: Vec<&mut [u8]> = odd.iter_mut().map(Vec::as_mut_slice).collect();
            odd_refs[1] = &mut b2[..len - 1];
            assert_eq!(
                codec.encode_into(&refs, &mut odd_refs),
                Err(CodecError::ShardLength)
            );
        }
    }

    /// Codec 0x01 is the code `reed-solomon-erasure` wrote before this crate computed it: parity
    /// and every decode agree with that crate for several geometries and lengths.
    #[test]
    fn gf8_matches_reed_solomon_erasure() {
        use reed_solomon_erasure::galois_8::ReedSolomon;
        for (k, m) in [
            (1usize, 1usize),
            (2, 1),
            (3, 2),
            (4, 2),
            (10, 4),
            (17, 3),
            (29, 51),
        ] {
            let rse = ReedSolomon::new(k, m).unwrap();
            for len in [2usize, 30, 64, 1000, 4098] {
                let data: Vec<Vec<u8>> = (0..k)
                    .map(|i| {
                        (0..len)
                            .map(|j| (i * 29 + j * 11 + (j >> 5)) as u8)
                            .collect()
                    })
                    .collect();
                let refs: Vec<&[u8]> = data.iter().map(Vec::as_slice).collect();
                let mut want = vec![vec![0u8; len]; m];
                rse.encode_sep(&refs, &mut want).unwrap();
                let got = RsGf8Matrix.encode(&refs, m).unwrap();
                assert_eq!(got, want, "{k}+{m} len {len}");
                // Lose the first min(m, k) data shards and the last parity shard (if m > 1).
                let full: Vec<Vec<u8>> = data.iter().cloned().chain(want).collect();
                let mut shards: Vec<Option<Vec<u8>>> = full.iter().cloned().map(Some).collect();
                for s in shards.iter_mut().take(m.min(k)) {
                    *s = None;
                }
                if m > 1 && m < k + m - k.min(m) {
                    shards[k + m - 1] = None;
                }
                if shards.iter().flatten().count() >= k {
                    RsGf8Matrix.reconstruct(k, &mut shards).unwrap();
                    let got: Vec<Vec<u8>> = shards.into_iter().map(Option::unwrap).collect();
                    assert_eq!(got, full, "{k}+{m} len {len} decode");
                }
            }
        }
    }
}
