//! Files the agent creates: never through a symlink, never over something already there.
//!
//! Every file the agent writes is created with `O_CREAT | O_EXCL | O_NOFOLLOW` (a name planted
//! in advance — a symlink to `/etc/shadow`, a hard link, a FIFO — makes the open fail instead of
//! writing through it) and put in place by `rename`, which replaces the directory entry, never
//! the file it may point to.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// Creates `path` for writing with mode `mode`; fails if anything, a symlink included, already
/// has that name (`O_CREAT | O_EXCL | O_NOFOLLOW`).
pub fn create_new(path: &Path, mode: u32) -> io::Result<File> {
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
}

/// Replaces `path` with `bytes` atomically: a temporary name next to it (a leftover of an
/// earlier crash is unlinked first — the link itself, never its target) is created with
/// [`create_new`], written, synced and renamed over `path`.
pub fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> io::Result<()> {
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no file name"))?;
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(name);
    tmp_name.push(".tmp");
    let tmp = path.with_file_name(tmp_name);
    match std::fs::remove_file(&tmp) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let result = (|| {
        let mut f = create_new(&tmp, mode)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Space of the file system holding `path`, in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FsSpace {
    /// Size of the file system.
    pub total: u64,
    /// Free space an unprivileged user may take.
    pub available: u64,
}

/// `statvfs(path)`: the size and free space of the file system holding `path`.
pub fn fs_space(path: &Path) -> io::Result<FsSpace> {
    let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path contains a NUL byte"))?;
    // SAFETY: `c` is a valid NUL-terminated string and `st` a properly sized out-parameter.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let frsize = st.f_frsize as u64;
    Ok(FsSpace {
        total: (st.f_blocks as u64).saturating_mul(frsize),
        available: (st.f_bavail as u64).saturating_mul(frsize),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{PermissionsExt, symlink};

    #[test]
    fn create_new_refuses_a_planted_symlink() {
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim");
        std::fs::write(&victim, b"precious").unwrap();
        let planted = dir.path().join("new");
        symlink(&victim, &planted).unwrap();
        let e = create_new(&planted, 0o600).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::AlreadyExists);
        // A dangling link is refused too (O_CREAT alone would create its target).
        let dangling = dir.path().join("dangling");
        symlink(dir.path().join("target-to-be"), &dangling).unwrap();
        assert!(create_new(&dangling, 0o600).is_err());
        assert!(!dir.path().join("target-to-be").exists());
        assert_eq!(std::fs::read(&victim).unwrap(), b"precious");
    }

    #[test]
    fn write_atomic_never_writes_through_a_link() {
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim");
        std::fs::write(&victim, b"precious").unwrap();
        let path = dir.path().join("state.cert");
        // A link planted at the temporary name and one at the final name.
        symlink(&victim, dir.path().join(".state.cert.tmp")).unwrap();
        write_atomic(&path, b"one", 0o640).unwrap();
        assert_eq!(std::fs::read(&victim).unwrap(), b"precious");
        assert_eq!(std::fs::read(&path).unwrap(), b"one");
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o640
        );
        std::fs::remove_file(&path).unwrap();
        symlink(&victim, &path).unwrap();
        write_atomic(&path, b"two", 0o600).unwrap();
        assert_eq!(std::fs::read(&victim).unwrap(), b"precious");
        assert!(!std::fs::symlink_metadata(&path).unwrap().is_symlink());
        assert_eq!(std::fs::read(&path).unwrap(), b"two");
        assert!(!dir.path().join(".state.cert.tmp").exists());
    }

    #[test]
    fn fs_space_reports_the_file_system_and_names_a_missing_path() {
        let dir = tempfile::tempdir().unwrap();
        let space = fs_space(dir.path()).unwrap();
        assert!(
            space.total > 0 && space.available <= space.total,
            "{space:?}"
        );
        let e = fs_space(&dir.path().join("missing")).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::NotFound);
    }
}
