//! Every crate takes `std::sync` locks one way: through `macula_core::sync` (a poisoned lock is
//! recovered). This test fails on a source file that unwraps a lock result itself.

use std::path::{Path, PathBuf};

fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).expect("read the source tree") {
        let p = e.expect("a directory entry").path();
        if p.is_dir() {
            sources(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

#[test]
fn locks_are_taken_through_macula_core_sync_only() {
    let agent = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut files = Vec::new();
    for krate in std::fs::read_dir(&agent).expect("read agent/") {
        let src = krate.expect("a crate").path().join("src");
        if src.is_dir() {
            sources(&src, &mut files);
        }
    }
    assert!(files.len() > 50, "found only {} source files", files.len());
    let mut bad = Vec::new();
    for f in &files {
        if f.ends_with("macula-core/src/sync.rs") {
            continue;
        }
        // Joined so that `.lock()` and its unwrap on the next line are seen together.
        let text: String = std::fs::read_to_string(f)
            .expect("read a source file")
            .split_whitespace()
            .collect();
        for pattern in [
            ".lock().expect(",
            ".lock().unwrap()",
            ".lock().unwrap_or_else(",
            ".read().expect(",
            ".write().expect(",
            "PoisonError",
        ] {
            if text.contains(pattern) {
                bad.push(format!("{}: {pattern}", f.display()));
            }
        }
    }
    assert!(
        bad.is_empty(),
        "take locks with macula_core::sync::{{Locked, ReadLocked}}:\n{}",
        bad.join("\n")
    );
}
