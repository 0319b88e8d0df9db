//! Disk full for real (docs/reliability.md): node 2 keeps its shards on a small ext4 filesystem
//! of its own (a loop device), far below its configured quota, so the disk fills first. Three
//! `maculad` with 2 + 1 coding: every put needs a shard on node 2. Puts go on until one is
//! refused; that put fails with an error naming the lack of space, leaves no temporary file on
//! node 2 and no shard of it on any node; every object acknowledged before reads back. Deleting
//! two objects frees the space and the next put succeeds.
//!
//! Needs root (mount) and mkfs.ext4, like the rest of the suite's system tests.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use macula_testkit::check::{ok, wait_until};
use macula_testkit::realm::{AgentRealm, RealmNode};

/// Size of node 2's filesystem.
const FS_MIB: u64 = 16;
/// Size of each object (a 2 MiB shard of each on node 2, plus the manifest's).
const OBJECT: usize = 4 << 20;

/// An ext4 filesystem in a file, loop-mounted; unmounted (and its loop device freed) on drop.
struct LoopFs {
    _dir: tempfile::TempDir,
    mnt: PathBuf,
}

impl LoopFs {
    fn new(mib: u64) -> Self {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let img = dir.path().join("fs.img");
        std::fs::File::create(&img)
            .and_then(|f| f.set_len(mib << 20))
            .expect("create the image");
        run(Command::new("mkfs.ext4")
            .args(["-q", "-F", "-m", "0"])
            .arg(&img));
        let mnt = dir.path().join("mnt");
        std::fs::create_dir(&mnt).expect("create the mount point");
        run(Command::new("mount")
            .args(["-o", "loop"])
            .arg(&img)
            .arg(&mnt));
        Self { _dir: dir, mnt }
    }
}

impl Drop for LoopFs {
    fn drop(&mut self) {
        for _ in 0..20 {
            if Command::new("umount")
                .arg(&self.mnt)
                .status()
                .is_ok_and(|s| s.success())
            {
                return;
            }
            std::thread::sleep(Duration::from_millis(250));
        }
        let _ = Command::new("umount").arg("-l").arg(&self.mnt).status();
    }
}

fn run(cmd: &mut Command) {
    let out = cmd.output().expect("run a command");
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Shard files under a store's root.
fn shards_in(root: &Path) -> usize {
    std::fs::read_dir(root.join("shards")).map_or(0, |d| {
        d.flatten()
            .map(|s| std::fs::read_dir(s.path()).map_or(0, |f| f.count()))
            .sum()
    })
}

fn content(i: usize) -> Vec<u8> {
    (0..OBJECT)
        .map(|j| (j.wrapping_mul(31) ^ (i * 7919 + j / 4099)) as u8)
        .collect()
}

#[test]
fn a_full_disk_refuses_puts_cleanly_and_recovers() {
    let fs = LoopFs::new(FS_MIB);
    let small = fs.mnt.join("store");
    let nodes = AgentRealm::new(3)
        .coded(2, 1)
        .quota(1 << 30)
        .storage_extra(|i| match i {
            2 => format!("dir = \"{}\"\n", small.display()),
            _ => String::new(),
        })
        .start();
    let roots: Vec<PathBuf> = nodes
        .iter()
        .enumerate()
        .map(|(i, n)| match i {
            2 => small.clone(),
            _ => n.agent.state_dir().join("shards"),
        })
        .collect();
    let total = || roots.iter().map(|r| shards_in(r)).sum::<usize>();
    let work = tempfile::tempdir().unwrap();
    let put = |n: &RealmNode, i: usize| {
        let file = work.path().join(format!("obj{i}"));
        std::fs::write(&file, content(i)).unwrap();
        n.agent.ctl(&["put", "-q", file.to_str().unwrap()])
    };
    // Fill node 2's disk: it holds one shard of every segment.
    let mut caps = Vec::new();
    let refused = loop {
        assert!(
            caps.len() < 12,
            "16 MiB took {} objects of 4 MiB",
            caps.len()
        );
        let before = total();
        let out = put(&nodes[0], caps.len());
        if out.status.success() {
            caps.push(String::from_utf8(out.stdout).unwrap().trim().to_string());
            continue;
        }
        break (before, out);
    };
    let (before, out) = refused;
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    eprintln!("{} objects stored, then: {err}", caps.len());
    assert!(caps.len() >= 2, "only {} objects fitted", caps.len());
    assert!(
        err.contains("no space") && err.contains("the disk is full"),
        "the refusal does not say the disk is full: {err}"
    );
    // Nothing partial: no temporary file on the full node, no shard of the refused put left.
    assert_eq!(
        std::fs::read_dir(small.join("tmp")).unwrap().count(),
        0,
        "a partial write was left in tmp/"
    );
    wait_until("the refused put's shards are gone", 20, || {
        total() == before
    });
    // Everything acknowledged reads back.
    let back = work.path().join("back");
    for (i, cap) in caps.iter().enumerate() {
        ok(&nodes[1]
            .agent
            .ctl(&["get", "-q", cap, "-o", back.to_str().unwrap()]));
        assert!(
            std::fs::read(&back).unwrap() == content(i),
            "object {i} differs"
        );
    }
    // Space returns: two objects deleted, the next put is stored and reads back.
    for cap in &caps[..2] {
        ok(&nodes[0].agent.ctl(&["storage", "delete", cap]));
    }
    let mut stored = None;
    wait_until("a put succeeds once space returned", 30, || {
        let out = put(&nodes[0], 100);
        stored = out
            .status
            .success()
            .then(|| String::from_utf8(out.stdout).unwrap().trim().to_string());
        stored.is_some()
    });
    let cap = stored.unwrap();
    ok(&nodes[2]
        .agent
        .ctl(&["get", "-q", &cap, "-o", back.to_str().unwrap()]));
    assert!(
        std::fs::read(&back).unwrap() == content(100),
        "the new object differs"
    );
    drop(nodes);
}
