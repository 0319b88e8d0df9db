//! Reed–Solomon over GF(2^8) with the matrix of `reed-solomon-erasure` (and klauspost/reedsolomon):
//! codec `0x01` bit for bit, computed with SIMD kernels chosen at run time (AVX2 or SSSE3 on
//! x86_64, NEON on aarch64, a portable loop elsewhere).
//!
//! Field: polynomial x^8 + x^4 + x^3 + x^2 + 1 (0x11d). Encoding matrix: the `(k + m) × k`
//! Vandermonde matrix `V[r][c] = r^c` times the inverse of its top `k × k` block, so the top is
//! the identity and rows `k..k + m` give the parity. Any `k` shards decode by inverting their
//! rows. Every output is a sum of products `coef × input`; the kernels multiply 16 or 32 bytes at
//! once with two 16-entry table lookups per coefficient (low and high nibble), the technique of
//! ISA-L and klauspost/reedsolomon.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use macula_core::sync::Locked;

/// log/exp tables of the field (exp doubled so `exp[log a + log b]` needs no reduction).
struct Field {
    exp: [u8; 510],
    log: [u8; 256],
}

const fn field() -> Field {
    let mut exp = [0u8; 510];
    let mut log = [0u8; 256];
    let mut x: u16 = 1;
    let mut i = 0;
    while i < 255 {
        exp[i] = x as u8;
        exp[i + 255] = x as u8;
        log[x as usize] = i as u8;
        x <<= 1;
        if x & 0x100 != 0 {
            x ^= 0x11d;
        }
        i += 1;
    }
    Field { exp, log }
}

static FIELD: Field = field();

pub(crate) fn mul(a: u8, b: u8) -> u8 {
    if a == 0 || b == 0 {
        0
    } else {
        FIELD.exp[usize::from(FIELD.log[usize::from(a)]) + usize::from(FIELD.log[usize::from(b)])]
    }
}

fn inv(a: u8) -> u8 {
    debug_assert_ne!(a, 0);
    FIELD.exp[255 - usize::from(FIELD.log[usize::from(a)])]
}

/// `a^n` (with `0^0 = 1`, as `reed-solomon-erasure`).
fn pow(a: u8, n: usize) -> u8 {
    if n == 0 {
        1
    } else if a == 0 {
        0
    } else {
        FIELD.exp[usize::from(FIELD.log[usize::from(a)]) * n % 255]
    }
}

/// Inverse of the `n × n` row-major matrix `m` (Gauss–Jordan), `None` if singular.
fn invert(mut m: Vec<u8>, n: usize) -> Option<Vec<u8>> {
    let mut out = vec![0u8; n * n];
    for i in 0..n {
        out[i * n + i] = 1;
    }
    for col in 0..n {
        let pivot = (col..n).find(|&r| m[r * n + col] != 0)?;
        if pivot != col {
            for c in 0..n {
                m.swap(pivot * n + c, col * n + c);
                out.swap(pivot * n + c, col * n + c);
            }
        }
        let f = inv(m[col * n + col]);
        for c in 0..n {
            m[col * n + c] = mul(m[col * n + c], f);
            out[col * n + c] = mul(out[col * n + c], f);
        }
        for r in 0..n {
            let f = m[r * n + col];
            if r != col && f != 0 {
                for c in 0..n {
                    m[r * n + c] ^= mul(f, m[col * n + c]);
                    out[r * n + c] ^= mul(f, out[col * n + c]);
                }
            }
        }
    }
    Some(out)
}

/// Row `row` (of `k` coefficients) of the encoding matrix of a `k`-data-shard code, for every
/// `row` in `0..n`: row-major `n × k`.
fn encoding_matrix(k: usize, n: usize) -> Vec<u8> {
    let vander = |rows: std::ops::Range<usize>| -> Vec<u8> {
        rows.flat_map(|r| (0..k).map(move |c| pow(r as u8, c)))
            .collect()
    };
    let top_inv = invert(vander(0..k), k).expect("a Vandermonde matrix is invertible");
    let v = vander(0..n);
    let mut out = vec![0u8; n * k];
    for r in 0..n {
        for c in 0..k {
            out[r * k + c] = (0..k).fold(0, |acc, j| acc ^ mul(v[r * k + j], top_inv[j * k + c]));
        }
    }
    out
}

/// Coefficients of `rows` outputs over `inputs` inputs, expanded into the kernels' nibble tables:
/// for input `i` and output `r`, 32 bytes at `(i * rows + r) * 32`: `c × x` for `x` in `0..16`,
/// then `c × (x << 4)`.
pub(crate) struct Tables {
    inputs: usize,
    rows: usize,
    nibbles: Vec<[u8; 32]>,
}

impl Tables {
    /// `coefs` is row-major `rows × inputs`.
    pub(crate) fn new(coefs: &[u8], rows: usize, inputs: usize) -> Self {
        debug_assert_eq!(coefs.len(), rows * inputs);
        let mut nibbles = Vec::with_capacity(rows * inputs);
        for i in 0..inputs {
            for r in 0..rows {
                let c = coefs[r * inputs + i];
                let mut t = [0u8; 32];
                for x in 0..16u8 {
                    t[usize::from(x)] = mul(c, x);
                    t[16 + usize::from(x)] = mul(c, x << 4);
                }
                nibbles.push(t);
            }
        }
        Self {
            inputs,
            rows,
            nibbles,
        }
    }

    /// `outputs[r] = Σ_i coef[r][i] × inputs[i]`, every slice of the same length, with the
    /// fastest kernel this CPU has.
    pub(crate) fn apply(&self, inputs: &[&[u8]], outputs: &mut [&mut [u8]]) {
        self.apply_with(simd::Level::detect(), inputs, outputs);
    }

    fn apply_with(&self, level: simd::Level, inputs: &[&[u8]], outputs: &mut [&mut [u8]]) {
        assert_eq!(inputs.len(), self.inputs);
        assert_eq!(outputs.len(), self.rows);
        let len = inputs.first().map_or(0, |s| s.len());
        assert!(inputs.iter().all(|s| s.len() == len));
        assert!(outputs.iter().all(|s| s.len() == len));
        let src: Vec<*const u8> = inputs.iter().map(|s| s.as_ptr()).collect();
        let mut r = 0;
        // Up to four outputs per pass over the inputs.
        while r < self.rows {
            let n = (self.rows - r).min(4);
            let dst: Vec<*mut u8> = outputs[r..r + n]
                .iter_mut()
                .map(|s| s.as_mut_ptr())
                .collect();
            // SAFETY: every pointer covers `len` bytes, outputs are distinct `&mut` slices and
            // never alias an input (`&` and `&mut` borrows cannot overlap).
            unsafe {
                match n {
                    1 => self.pass::<1>(level, &src, &dst, r, len),
                    2 => self.pass::<2>(level, &src, &dst, r, len),
                    3 => self.pass::<3>(level, &src, &dst, r, len),
                    _ => self.pass::<4>(level, &src, &dst, r, len),
                }
            }
            r += n;
        }
    }

    /// Outputs `first..first + R` over `len` bytes.
    ///
    /// # Safety
    /// `src` and `dst` point to `len` valid bytes each, `dst` not overlapping anything else;
    /// `level` is one this CPU has.
    unsafe fn pass<const R: usize>(
        &self,
        level: simd::Level,
        src: &[*const u8],
        dst: &[*mut u8],
        first: usize,
        len: usize,
    ) {
        // SAFETY: as this function's.
        let done = unsafe { simd::pass::<R>(level, self, src, dst, first, len) };
        for off in done..len {
            let mut acc = [0u8; R];
            for (i, s) in src.iter().enumerate() {
                // SAFETY: off < len.
                let x = unsafe { *s.add(off) };
                for (j, a) in acc.iter_mut().enumerate() {
                    let t = &self.nibbles[i * self.rows + first + j];
                    *a ^= t[usize::from(x & 15)] ^ t[16 + usize::from(x >> 4)];
                }
            }
            for (j, a) in acc.iter().enumerate() {
                // SAFETY: off < len.
                unsafe { *dst[j].add(off) = *a };
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod simd {
    use super::Tables;
    use std::arch::x86_64::*;

    /// A kernel: AVX2 (32-byte shuffles), SSSE3 (16-byte), or none (the portable loop).
    #[derive(Debug, Clone, Copy)]
    pub(super) enum Level {
        Avx2,
        Ssse3,
        Portable,
    }

    impl Level {
        pub(super) fn detect() -> Self {
            if is_x86_feature_detected!("avx2") {
                Self::Avx2
            } else if is_x86_feature_detected!("ssse3") {
                Self::Ssse3
            } else {
                Self::Portable
            }
        }

        /// Every level this CPU can run (tests run each).
        #[cfg(test)]
        pub(super) fn available() -> Vec<Self> {
            let mut v = vec![Self::Portable];
            if is_x86_feature_detected!("ssse3") {
                v.push(Self::Ssse3);
            }
            if is_x86_feature_detected!("avx2") {
                v.push(Self::Avx2);
            }
            v
        }
    }

    /// Runs the kernel of `level` over a prefix of the bytes; returns how many bytes were done
    /// (the caller finishes the tail).
    ///
    /// # Safety
    /// As [`Tables::pass`].
    pub(super) unsafe fn pass<const R: usize>(
        level: Level,
        t: &Tables,
        src: &[*const u8],
        dst: &[*mut u8],
        first: usize,
        len: usize,
    ) -> usize {
        match level {
            // SAFETY: the caller checked that the CPU has AVX2.
            Level::Avx2 => unsafe { avx2::<R>(t, src, dst, first, len) },
            // SAFETY: the caller checked that the CPU has SSSE3.
            Level::Ssse3 => unsafe { ssse3::<R>(t, src, dst, first, len) },
            Level::Portable => 0,
        }
    }

    #[target_feature(enable = "avx2")]
    unsafe fn avx2<const R: usize>(
        t: &Tables,
        src: &[*const u8],
        dst: &[*mut u8],
        first: usize,
        len: usize,
    ) -> usize {
        let mask = _mm256_set1_epi8(0x0f);
        let mut off = 0;
        while off + 64 <= len {
            let mut acc0 = [_mm256_setzero_si256(); R];
            let mut acc1 = [_mm256_setzero_si256(); R];
            for (i, s) in src.iter().enumerate() {
                // SAFETY: off + 64 <= len.
                let (x0, x1) = unsafe {
                    (
                        _mm256_loadu_si256(s.add(off).cast()),
                        _mm256_loadu_si256(s.add(off + 32).cast()),
                    )
                };
                let lo0 = _mm256_and_si256(x0, mask);
                let hi0 = _mm256_and_si256(_mm256_srli_epi64(x0, 4), mask);
                let lo1 = _mm256_and_si256(x1, mask);
                let hi1 = _mm256_and_si256(_mm256_srli_epi64(x1, 4), mask);
                for j in 0..R {
                    let tab = t.nibbles[i * t.rows + first + j].as_ptr();
                    // SAFETY: 32-byte table: low half at 0, high half at 16.
                    let (tl, th) = unsafe {
                        (
                            _mm256_broadcastsi128_si256(_mm_loadu_si128(tab.cast())),
                            _mm256_broadcastsi128_si256(_mm_loadu_si128(tab.add(16).cast())),
                        )
                    };
                    acc0[j] = _mm256_xor_si256(
                        acc0[j],
                        _mm256_xor_si256(
                            _mm256_shuffle_epi8(tl, lo0),
                            _mm256_shuffle_epi8(th, hi0),
                        ),
                    );
                    acc1[j] = _mm256_xor_si256(
                        acc1[j],
                        _mm256_xor_si256(
                            _mm256_shuffle_epi8(tl, lo1),
                            _mm256_shuffle_epi8(th, hi1),
                        ),
                    );
                }
            }
            for j in 0..R {
                // SAFETY: off + 64 <= len.
                unsafe {
                    _mm256_storeu_si256(dst[j].add(off).cast(), acc0[j]);
                    _mm256_storeu_si256(dst[j].add(off + 32).cast(), acc1[j]);
                }
            }
            off += 64;
        }
        off
    }

    #[target_feature(enable = "ssse3")]
    unsafe fn ssse3<const R: usize>(
        t: &Tables,
        src: &[*const u8],
        dst: &[*mut u8],
        first: usize,
        len: usize,
    ) -> usize {
        let mask = _mm_set1_epi8(0x0f);
        let mut off = 0;
        while off + 16 <= len {
            let mut acc = [_mm_setzero_si128(); R];
            for (i, s) in src.iter().enumerate() {
                // SAFETY: off + 16 <= len.
                let x = unsafe { _mm_loadu_si128(s.add(off).cast()) };
                let lo = _mm_and_si128(x, mask);
                let hi = _mm_and_si128(_mm_srli_epi64(x, 4), mask);
                for (j, a) in acc.iter_mut().enumerate() {
                    let tab = t.nibbles[i * t.rows + first + j].as_ptr();
                    // SAFETY: 32-byte table.
                    let (tl, th) = unsafe {
                        (
                            _mm_loadu_si128(tab.cast()),
                            _mm_loadu_si128(tab.add(16).cast()),
                        )
                    };
                    *a = _mm_xor_si128(
                        *a,
                        _mm_xor_si128(_mm_shuffle_epi8(tl, lo), _mm_shuffle_epi8(th, hi)),
                    );
                }
            }
            for (j, a) in acc.iter().enumerate() {
                // SAFETY: off + 16 <= len.
                unsafe { _mm_storeu_si128(dst[j].add(off).cast(), *a) };
            }
            off += 16;
        }
        off
    }
}

#[cfg(target_arch = "aarch64")]
mod simd {
    use super::Tables;
    use std::arch::aarch64::*;

    /// A kernel: NEON (every aarch64 CPU has it), or none (the portable loop, for tests).
    #[derive(Debug, Clone, Copy)]
    pub(super) enum Level {
        Neon,
        #[cfg(test)]
        Portable,
    }

    impl Level {
        pub(super) fn detect() -> Self {
            Self::Neon
        }

        /// Every level this CPU can run (tests run each).
        #[cfg(test)]
        pub(super) fn available() -> Vec<Self> {
            vec![Self::Portable, Self::Neon]
        }
    }

    /// Runs the kernel of `level` (32 bytes per step) over a prefix of the bytes; returns how
    /// many bytes were done (the caller finishes the tail).
    ///
    /// # Safety
    /// As [`Tables::pass`].
    pub(super) unsafe fn pass<const R: usize>(
        level: Level,
        t: &Tables,
        src: &[*const u8],
        dst: &[*mut u8],
        first: usize,
        len: usize,
    ) -> usize {
        match level {
            // SAFETY: NEON is part of the aarch64 baseline.
            Level::Neon => unsafe { neon::<R>(t, src, dst, first, len) },
            #[cfg(test)]
            Level::Portable => 0,
        }
    }

    #[target_feature(enable = "neon")]
    unsafe fn neon<const R: usize>(
        t: &Tables,
        src: &[*const u8],
        dst: &[*mut u8],
        first: usize,
        len: usize,
    ) -> usize {
        let mask = vdupq_n_u8(0x0f);
        let mut off = 0;
        while off + 32 <= len {
            let mut acc0 = [vdupq_n_u8(0); R];
            let mut acc1 = [vdupq_n_u8(0); R];
            for (i, s) in src.iter().enumerate() {
                // SAFETY: off + 32 <= len.
                let (x0, x1) = unsafe { (vld1q_u8(s.add(off)), vld1q_u8(s.add(off + 16))) };
                let lo0 = vandq_u8(x0, mask);
                let hi0 = vshrq_n_u8::<4>(x0);
                let lo1 = vandq_u8(x1, mask);
                let hi1 = vshrq_n_u8::<4>(x1);
                for j in 0..R {
                    let tab = t.nibbles[i * t.rows + first + j].as_ptr();
                    // SAFETY: 32-byte table.
                    let (tl, th) = unsafe { (vld1q_u8(tab), vld1q_u8(tab.add(16))) };
                    acc0[j] = veorq_u8(acc0[j], veorq_u8(vqtbl1q_u8(tl, lo0), vqtbl1q_u8(th, hi0)));
                    acc1[j] = veorq_u8(acc1[j], veorq_u8(vqtbl1q_u8(tl, lo1), vqtbl1q_u8(th, hi1)));
                }
            }
            for j in 0..R {
                // SAFETY: off + 32 <= len.
                unsafe {
                    vst1q_u8(dst[j].add(off), acc0[j]);
                    vst1q_u8(dst[j].add(off + 16), acc1[j]);
                }
            }
            off += 32;
        }
        off
    }
}

#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
mod simd {
    use super::Tables;

    /// No SIMD kernel for this architecture: the portable loop does every byte.
    #[derive(Debug, Clone, Copy)]
    pub(super) enum Level {
        Portable,
    }

    impl Level {
        pub(super) fn detect() -> Self {
            Self::Portable
        }

        #[cfg(test)]
        pub(super) fn available() -> Vec<Self> {
            vec![Self::Portable]
        }
    }

    pub(super) unsafe fn pass<const R: usize>(
        _: Level,
        _: &Tables,
        _: &[*const u8],
        _: &[*mut u8],
        _: usize,
        _: usize,
    ) -> usize {
        0
    }
}

/// A `k + m` code: its encoding matrix and the expanded parity tables.
pub(crate) struct Code {
    k: usize,
    n: usize,
    /// `n × k`, identity on top.
    matrix: Vec<u8>,
    parity: Tables,
}

type CodeCache = Mutex<HashMap<(usize, usize), Arc<Code>>>;

/// The code for `k + m` (built once per geometry).
pub(crate) fn code(k: usize, m: usize) -> Arc<Code> {
    static CACHE: OnceLock<CodeCache> = OnceLock::new();
    let mut cache = CACHE.get_or_init(Default::default).locked();
    cache
        .entry((k, m))
        .or_insert_with(|| {
            let matrix = encoding_matrix(k, k + m);
            let parity = Tables::new(&matrix[k * k..], m, k);
            Arc::new(Code {
                k,
                n: k + m,
                matrix,
                parity,
            })
        })
        .clone()
}

impl Code {
    pub(crate) fn encode(&self, data: &[&[u8]], parity: &mut [&mut [u8]]) {
        self.parity.apply(data, parity);
    }

    /// Rebuilds the shards `out` (index, buffer) from the first `k` present shards.
    pub(crate) fn reconstruct(&self, shards: &[Option<&[u8]>], out: &mut [(usize, &mut [u8])]) {
        let k = self.k;
        debug_assert_eq!(shards.len(), self.n);
        let (rows, inputs): (Vec<usize>, Vec<&[u8]>) = shards
            .iter()
            .enumerate()
            .filter_map(|(i, s)| s.map(|s| (i, s)))
            .take(k)
            .unzip();
        debug_assert_eq!(rows.len(), k);
        let mut sub = Vec::with_capacity(k * k);
        for &r in &rows {
            sub.extend_from_slice(&self.matrix[r * k..(r + 1) * k]);
        }
        // Any k rows of the matrix are independent (the code is MDS).
        let dec = invert(sub, k).expect("any k rows of the encoding matrix are independent");
        // Output row `o` = (encoding row o) × dec, applied to the survivors.
        let mut coefs = Vec::with_capacity(out.len() * k);
        for (o, _) in out.iter() {
            let row = &self.matrix[o * k..(o + 1) * k];
            for c in 0..k {
                coefs.push((0..k).fold(0, |acc, j| acc ^ mul(row[j], dec[j * k + c])));
            }
        }
        let tables = Tables::new(&coefs, out.len(), k);
        let mut outs: Vec<&mut [u8]> = out.iter_mut().map(|(_, b)| &mut **b).collect();
        tables.apply(&inputs, &mut outs);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_and_matrix_match_reed_solomon_erasure() {
        use reed_solomon_erasure::galois_8 as rse;
        for a in 0..=255u8 {
            for b in 0..=255u8 {
                assert_eq!(mul(a, b), rse::mul(a, b));
            }
            for n in 0..20 {
                assert_eq!(pow(a, n), rse::exp(a, n));
            }
        }
    }

    /// Every kernel this CPU runs (and the portable loop), every number of outputs per pass and
    /// every tail length, against the definition.
    #[test]
    fn every_kernel_matches_the_definition_for_every_length() {
        let levels = simd::Level::available();
        assert!(!levels.is_empty());
        for level in levels {
            for (rows, inputs) in [(1usize, 1usize), (2, 4), (3, 5), (4, 10), (7, 3)] {
                let coefs: Vec<u8> = (0..rows * inputs).map(|i| (i * 37 + 11) as u8).collect();
                let t = Tables::new(&coefs, rows, inputs);
                for len in [1usize, 15, 16, 17, 31, 32, 33, 63, 64, 65, 200, 4099] {
                    let ins: Vec<Vec<u8>> = (0..inputs)
                        .map(|i| (0..len).map(|j| (i * 131 + j * 7 + j / 3) as u8).collect())
                        .collect();
                    let refs: Vec<&[u8]> = ins.iter().map(Vec::as_slice).collect();
                    let mut outs = vec![vec![0xAAu8; len]; rows];
                    let mut out_refs: Vec<&mut [u8]> =
                        outs.iter_mut().map(Vec::as_mut_slice).collect();
                    t.apply_with(level, &refs, &mut out_refs);
                    for r in 0..rows {
                        for j in 0..len {
                            let want = (0..inputs)
                                .fold(0, |acc, i| acc ^ mul(coefs[r * inputs + i], ins[i][j]));
                            assert_eq!(
                                outs[r][j], want,
                                "{level:?} rows {rows} inputs {inputs} len {len}"
                            );
                        }
                    }
                }
            }
        }
    }
}
