#!/usr/bin/env python3
"""Resolve and download Debian packages for an image, without touching the host's dpkg state.

A private APT configuration (own sources, own lists, empty status) lets the same code fetch amd64
or arm64 packages on any Debian host. The dependency closure skips packages an appliance rootfs
does not need (init systems, package tooling, perl); build.sh checks afterwards that every ELF
file's shared libraries are present, so a too-aggressive exclusion fails the build loudly.

  debs.py --arch amd64 [--suite bookworm] [--state DIR] kernel       -> prints the kernel .deb path
  debs.py --arch amd64 [--suite bookworm] [--state DIR] closure PKG.. -> the closure's .deb paths
  debs.py --arch amd64 [--suite bookworm] [--state DIR] get PKG..     -> just these packages' .debs

--suite picks the Debian release (bookworm: the QEMU images; trixie: the Raspberry Pi images,
whose kernel must know the board). Lists and downloaded .debs live in a cache outside the clone,
$MACULA_CACHE (default /var/cache/macula)/apt-<suite>-<arch>, shared by every checkout and run.
"""
import argparse
import os
import subprocess
import sys
import time

# main for everything; non-free-firmware for raspi-firmware (the Pi's GPU firmware).
COMPONENTS = "main non-free-firmware"
CACHE = os.environ.get("MACULA_CACHE", "/var/cache/macula")


def suites(suite):
    return [
        ("http://deb.debian.org/debian", suite),
        ("http://deb.debian.org/debian", f"{suite}-updates"),
        ("http://deb.debian.org/debian-security", f"{suite}-security"),
    ]
# Never pulled in through dependencies: tooling and init systems the appliance does not run.
EXCLUDE = {
    "systemd", "systemd-sysv", "udev", "dbus", "dbus-user-session", "debconf", "adduser", "passwd",
    "init-system-helpers", "usrmerge", "dpkg", "coreutils", "tar", "mount", "kmod", "linux-base",
    "initramfs-tools", "initramfs-tools-core", "perl", "perl-base", "perl-modules-5.36",
    "dbus-session-bus-common", "libpam-modules", "libpam-modules-bin", "libpam-runtime",
    "sensible-utils", "lsb-base", "sysvinit-utils", "procps", "logsave", "cpio",
}
REFRESH_SECONDS = 24 * 3600


def die(msg):
    print(f"debs.py: {msg}", file=sys.stderr)
    sys.exit(1)


class Apt:
    def __init__(self, arch, suite, state, backports=False):
        self.arch = arch
        self.suite = suite
        self.state = os.path.abspath(state)
        self.conf = os.path.join(self.state, "apt.conf")
        self.archives = os.path.join(self.state, "archives")
        for d in ("lists/partial", "cache", "archives"):
            os.makedirs(os.path.join(self.state, d), exist_ok=True)
        status = os.path.join(self.state, "status")
        open(status, "a").close()
        with open(os.path.join(self.state, "sources.list"), "w") as f:
            for url, dist in suites(suite) + ([("http://deb.debian.org/debian", f"{suite}-backports")] if backports else []):
                f.write(f"deb [arch={arch}] {url} {dist} {COMPONENTS}\n")
        with open(self.conf, "w") as f:
            f.write(
                f'APT::Architecture "{arch}"; APT::Architectures {{ "{arch}"; }};\n'
                f'Dir::State "{self.state}"; Dir::State::Lists "{self.state}/lists";\n'
                f'Dir::State::status "{status}"; Dir::Cache "{self.state}/cache";\n'
                f'Dir::Etc::SourceList "{self.state}/sources.list"; Dir::Etc::SourceParts "/nonexistent";\n'
                'Debug::NoLocking "true"; Acquire::Languages "none";\n'
                'APT::Sandbox::User "root";\n'
            )
        self.env = dict(os.environ, APT_CONFIG=self.conf, LC_ALL="C")
        stamp = os.path.join(self.state, "updated")
        fresh = os.path.exists(stamp) and time.time() - os.path.getmtime(stamp) < REFRESH_SECONDS
        if not fresh:
            self.run(["apt-get", "update", "-qq"], what="apt-get update (package lists)")
            open(stamp, "w").close()

    def run(self, cmd, what, cwd=None):
        p = subprocess.run(cmd, env=self.env, cwd=cwd, capture_output=True, text=True)
        if p.returncode != 0:
            die(f"{what} failed (exit {p.returncode}); is deb.debian.org reachable?\n{p.stderr.strip()}")
        return p.stdout

    def depends(self, pkgs):
        """Map package -> list of first-choice dependencies (Depends and PreDepends)."""
        out = self.run(
            ["apt-cache", "depends", "--no-recommends", "--no-suggests", "--no-conflicts",
             "--no-breaks", "--no-replaces", "--no-enhances", *pkgs],
            what="apt-cache depends " + " ".join(pkgs))
        deps, cur, skip_alt, virtual = {}, None, False, False
        for line in out.splitlines():
            if not line.startswith(" "):
                cur = line.strip()
                deps.setdefault(cur, [])
                skip_alt = virtual = False
                continue
            s = line.strip()
            if s.startswith(("Depends:", "PreDepends:")) or s.startswith(("|Depends:", "|PreDepends:")):
                virtual = False
                alt = line.lstrip().startswith("|")
                name = s.split(":", 1)[1].strip()
                if skip_alt:
                    skip_alt = alt
                    continue
                skip_alt = alt
                if name.startswith("<"):
                    virtual = True
                    continue
                deps[cur].append(name.split(":")[0])
            elif virtual and line.startswith("    "):
                deps[cur].append(s.split(":")[0])
                virtual = False
        return deps

    def closure(self, seeds):
        seen, todo = set(), list(seeds)
        while todo:
            batch = [p for p in dict.fromkeys(todo) if p not in seen]
            todo = []
            if not batch:
                break
            seen.update(batch)
            for deps in self.depends(batch).values():
                todo.extend(d for d in deps if d not in seen and d not in EXCLUDE)
        return sorted(seen)

    def download(self, pkgs):
        have = {f.split("_")[0]: f for f in os.listdir(self.archives) if f.endswith(".deb")}
        cand = self.run(["apt-cache", "policy", *pkgs], what="apt-cache policy")
        versions, cur = {}, None
        for line in cand.splitlines():
            if not line.startswith(" "):
                cur = line.rstrip(":")
            elif line.strip().startswith("Candidate:"):
                versions[cur] = line.split(":", 1)[1].strip()
        want = []
        for p in pkgs:
            v = versions.get(p)
            if not v or v == "(none)":
                die(f"package {p} has no candidate for {self.arch}; check the package name")
            fname = f"{p}_{v.replace(':', '%3a')}_"
            if not (p in have and have[p].startswith(fname)):
                want.append(p)
        if want:
            self.run(["apt-get", "download", "-qq", *want], what="apt-get download " + " ".join(want),
                     cwd=self.archives)
        paths = []
        for p in pkgs:
            v = versions[p].replace(":", "%3a")
            hits = [f for f in os.listdir(self.archives) if f.startswith(f"{p}_{v}_")]
            if not hits:
                die(f"download of {p} {versions[p]} left no .deb in {self.archives}")
            paths.append(os.path.join(self.archives, hits[0]))
        return paths

    def kernel(self, backports=False):
        """The kernel of linux-image-ARCH (from SUITE-backports with backports=True): the
        linux-image package and, for kernels that split it (>= 6.17), its linux-binary and
        linux-modules and linux-base (DTBs) packages of the same ABI."""
        meta = f"linux-image-{self.arch}"
        if backports:
            out = self.run(["apt-cache", "show", f"{meta}/{self.suite}-backports"],
                           what=f"apt-cache show {meta}/{self.suite}-backports")
            line = next((ln for ln in out.splitlines() if ln.startswith("Depends:")), "")
            deps = [d.strip().split(" ")[0] for d in line[len("Depends:"):].split(",")]
        else:
            deps = self.depends([meta]).get(meta, [])
        images = [d for d in deps if d.startswith("linux-image-")]
        if not images:
            die(f"{meta} does not depend on a linux-image package; apt lists broken?")
        abi = images[0][len("linux-image-"):]
        parts = [d for d in self.depends([images[0]]).get(images[0], [])
                 if d in (f"linux-base-{abi}", f"linux-binary-{abi}", f"linux-modules-{abi}")]
        return self.download([images[0], *parts])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--arch", required=True, choices=["amd64", "arm64"])
    ap.add_argument("--suite", default="bookworm", choices=["bookworm", "trixie"])
    ap.add_argument("--state", help="APT state and .deb cache (default: $MACULA_CACHE/apt-SUITE-ARCH)")
    sub = ap.add_subparsers(dest="cmd", required=True)
    k = sub.add_parser("kernel")
    k.add_argument("--backports", action="store_true", help="the kernel of SUITE-backports")
    g = sub.add_parser("get")
    g.add_argument("packages", nargs="+")
    c = sub.add_parser("closure")
    c.add_argument("packages", nargs="+")
    a = ap.parse_args()
    # backports in the sources only for a backports kernel: nothing else may come from there
    bp = a.cmd == "kernel" and a.backports
    state = a.state or os.path.join(CACHE, f"apt-{a.suite}{'-backports' if bp else ''}-{a.arch}")
    apt = Apt(a.arch, a.suite, state, backports=bp)
    if a.cmd == "kernel":
        for p in apt.kernel(backports=bp):
            print(p)
    elif a.cmd == "get":
        for p in apt.download(a.packages):
            print(p)
    else:
        for p in apt.download(apt.closure(a.packages)):
            print(p)


if __name__ == "__main__":
    main()
