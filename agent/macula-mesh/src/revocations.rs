//! Revocations kept across restarts: one file per revoked node, `<dir>/<node-id>.rev`, holding
//! the realm-signed revocation in wire encoding (`maculad` keeps them in `<state>/revoked/`).
//! Loaded into the [`Admission`] before the endpoint accepts anyone; new ones written as the
//! admission records them.

use std::path::{Path, PathBuf};

use macula_core::{NodeId, wire};

use crate::realm::{Admission, CertError, Revocation};

/// The directory of stored revocations.
#[derive(Debug, Clone)]
pub struct RevocationStore {
    dir: PathBuf,
}

/// Why a stored revocation file was not taken.
#[derive(Debug, thiserror::Error)]
pub enum StoredRevocationError {
    #[error("cannot read it: {0}")]
    Read(#[source] std::io::Error),
    #[error("damaged: {0}")]
    Decode(#[source] wire::WireError),
    #[error("not for this realm: {0}")]
    Refused(#[source] CertError),
}

/// What [`RevocationStore::load`] found.
#[derive(Debug, Default)]
pub struct Loaded {
    /// Recorded in the admission, to be spread again (members offline at the time learn them).
    pub revocations: Vec<Revocation>,
    /// Files left in place, each with why.
    pub ignored: Vec<(PathBuf, StoredRevocationError)>,
}

impl RevocationStore {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn path(&self, node: &NodeId) -> PathBuf {
        self.dir.join(format!("{node}.rev"))
    }

    /// Records every stored revocation in `admission`. A missing directory holds none; a file that
    /// does not decode or verify is reported in [`Loaded::ignored`] and left in place; files
    /// without the `.rev` extension are not looked at.
    pub fn load(&self, admission: &Admission) -> std::io::Result<Loaded> {
        let entries = match std::fs::read_dir(&self.dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Loaded::default()),
            Err(e) => return Err(e),
        };
        let mut out = Loaded::default();
        let mut paths: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
        paths.sort();
        for path in paths {
            if path.extension().is_none_or(|x| x != "rev") {
                continue;
            }
            let rev = std::fs::read(&path)
                .map_err(StoredRevocationError::Read)
                .and_then(|b| wire::decode::<Revocation>(&b).map_err(StoredRevocationError::Decode))
                .and_then(|r| {
                    admission
                        .revoke(r.clone())
                        .map(|_| r)
                        .map_err(StoredRevocationError::Refused)
                });
            match rev {
                Ok(r) => out.revocations.push(r),
                Err(e) => out.ignored.push((path, e)),
            }
        }
        Ok(out)
    }

    /// Writes the revocations `admission` knows that are not stored yet (atomically, 0644).
    /// Returns each one written or failed, with its file.
    pub fn store_new(&self, admission: &Admission) -> Vec<(NodeId, PathBuf, std::io::Result<()>)> {
        let mut out = vec![];
        for rev in admission.revocations() {
            let path = self.path(&rev.body.node);
            if path.exists() {
                continue;
            }
            let res = std::fs::create_dir_all(&self.dir).and_then(|()| {
                macula_core::fsutil::write_atomic(&path, &wire::encode(&rev), 0o644)
            });
            out.push((rev.body.node, path, res));
        }
        out
    }
}
