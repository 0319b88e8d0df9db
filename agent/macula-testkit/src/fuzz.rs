//! The fuzz smoke of `make test`: a crate's `tests/fuzz_corpus.rs` replays each cargo-fuzz
//! target's committed corpus (`fuzz/corpus/<target>/`) through the function the target calls,
//! then a few thousand deterministic mutations of it (byte flips, truncations, insertions,
//! splices). No sanitizer build and no nightly features: see docs/fuzzing.md.

use std::path::Path;

/// Mutated inputs tried per target after the corpus.
pub const MUTATIONS: usize = 4000;

/// Replays `<crate_dir>/fuzz/corpus/<target>/*` through `f`, then [`MUTATIONS`] mutations of
/// those files; panics (naming the target) when the corpus is missing or empty, or when `f`
/// panics on an input, which it then leaves in the temporary directory as
/// `fuzz-smoke-<target>-crash` (to commit as a regression test). Returns how many inputs ran.
pub fn replay(crate_dir: &str, target: &str, f: impl Fn(&[u8])) -> usize {
    let f = |input: &[u8]| {
        if std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(input))).is_err() {
            let path = std::env::temp_dir().join(format!("fuzz-smoke-{target}-crash"));
            std::fs::write(&path, input).expect("write the crashing input");
            panic!("{target}: the input in {} panics", path.display());
        }
    };
    let dir = Path::new(crate_dir).join("fuzz/corpus").join(target);
    let mut inputs: Vec<Vec<u8>> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{target}: no corpus at {}: {e}", dir.display()))
        .map(|e| std::fs::read(e.expect("a corpus entry").path()).expect("a corpus file"))
        .collect();
    assert!(!inputs.is_empty(), "{target}: {} is empty", dir.display());
    inputs.sort();
    for input in &inputs {
        f(input);
    }
    let mut rng = 0x9e37_79b9_7f4a_7c15u64 ^ target.len() as u64;
    let mut next = move |n: usize| {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        (rng % n.max(1) as u64) as usize
    };
    for _ in 0..MUTATIONS {
        let mut m = inputs[next(inputs.len())].clone();
        for _ in 0..=next(4) {
            match next(5) {
                0 if !m.is_empty() => {
                    let i = next(m.len());
                    m[i] ^= 1 << next(8);
                }
                1 if !m.is_empty() => {
                    let i = next(m.len());
                    m[i] = [0, 0xff, b'0', b'\r', b'\n', b'<', b'&', b';'][next(8)];
                }
                2 => m.truncate(next(m.len() + 1)),
                3 => {
                    let i = next(m.len() + 1);
                    m.insert(i, next(256) as u8);
                }
                _ => {
                    let other = &inputs[next(inputs.len())];
                    let (a, b) = (next(m.len() + 1), next(other.len() + 1));
                    m.truncate(a);
                    m.extend_from_slice(&other[b..]);
                }
            }
        }
        f(&m);
    }
    inputs.len() + MUTATIONS
}

/// Checks that the committed seed `<crate_dir>/fuzz/corpus/<target>/<name>` holds `bytes`, the
/// encoding a crate's `tests/fuzz_corpus.rs` makes with its real encoders (so binary seeds are
/// valid, signed where they need to be, and stay so as formats change). With
/// `MACULA_FUZZ_SEEDS=write` in the environment it writes the file instead.
pub fn seed(crate_dir: &str, target: &str, name: &str, bytes: &[u8]) {
    let path = Path::new(crate_dir)
        .join("fuzz/corpus")
        .join(target)
        .join(name);
    if std::env::var_os("MACULA_FUZZ_SEEDS").is_some_and(|v| v == "write") {
        std::fs::create_dir_all(path.parent().expect("a corpus dir")).expect("corpus dir");
        std::fs::write(&path, bytes).expect("write the seed");
        return;
    }
    let committed = std::fs::read(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (MACULA_FUZZ_SEEDS=write makes it)", path.display()));
    assert!(
        committed == bytes,
        "{} is stale: MACULA_FUZZ_SEEDS=write cargo test --test fuzz_corpus rewrites it",
        path.display()
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A smoke fails when the function panics on a mutation the corpus itself does not hold, and
    /// leaves that input behind.
    #[test]
    fn replay_fails_on_a_mutant_that_panics() {
        let dir = tempfile::tempdir().unwrap();
        let corpus = dir.path().join("fuzz/corpus/short");
        std::fs::create_dir_all(&corpus).unwrap();
        std::fs::write(corpus.join("a"), b"hello world").unwrap();
        let crate_dir = dir.path().to_str().unwrap();
        assert_eq!(replay(crate_dir, "short", |_| {}), 1 + MUTATIONS);
        let r = std::panic::catch_unwind(|| {
            replay(crate_dir, "short", |d| assert!(d.len() >= 11, "truncated"))
        });
        assert!(r.is_err());
        let crash = std::env::temp_dir().join("fuzz-smoke-short-crash");
        assert!(std::fs::read(&crash).unwrap().len() < 11);
        std::fs::remove_file(crash).unwrap();
        let empty = std::panic::catch_unwind(|| replay(crate_dir, "missing", |_| {}));
        assert!(empty.is_err());
    }
}
