//! Compresses the dashboard's assets with `gzip -9 -n` (Debian's `gzip`, an essential package;
//! Buildroot requires it on the build host) into `OUT_DIR`: the agent serves these bytes to
//! browsers that accept gzip (`assets`), so no compression runs in the agent.

use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    for name in ["index.html", "app.css", "app.js"] {
        let src = Path::new("src/assets").join(name);
        println!("cargo:rerun-if-changed={}", src.display());
        let gz = Command::new("gzip")
            .args(["-9", "-n", "-c"])
            .arg(&src)
            .output()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot run gzip to compress {}: {e}; install gzip",
                    src.display()
                )
            });
        assert!(
            gz.status.success(),
            "gzip {}: {}",
            src.display(),
            String::from_utf8_lossy(&gz.stderr)
        );
        std::fs::write(out.join(format!("{name}.gz")), gz.stdout)
            .unwrap_or_else(|e| panic!("cannot write {name}.gz in {}: {e}", out.display()));
    }
}
