#!/bin/bash
# Cross-build the agent for aarch64 (aarch64-unknown-linux-gnu, static glibc) in a Debian sid
# chroot that carries Debian's rustc/cargo and libstd-rust-dev:arm64 (rustup has no aarch64 std
# here). See docs/image.md and /work/shared/notes/cross-aarch64.md.
#
#   image/cross-aarch64.sh chroot   build (once per machine) or reuse the chroot; print its path
#   image/cross-aarch64.sh agent    build maculad + maculactl; print the directory holding them:
#                                   target/cross-aarch64/aarch64-unknown-linux-gnu/release
#   image/cross-aarch64.sh test     build the pure crates' tests for aarch64 and run them under
#                                   qemu-aarch64-static (see run_tests below)
#   image/cross-aarch64.sh example NAME
#                                   build macula-store's example NAME; print the binary's path
#                                   (make pi-estimate counts its instructions under qemu-user)
#   image/cross-aarch64.sh du       disk used by the chroot, the crate cache and the target dir
#
# The chroot lives outside the clone, in $MACULA_CACHE (default /var/cache/macula) under
# cross-aarch64-<hash of suite + package list>; a stamp file written last marks it complete, so an
# interrupted build is redone. Crates are cached in $MACULA_CACHE/cargo-home-aarch64. Build output
# goes to target/cross-aarch64 in the clone (one target dir for the agent and the tests).
# The host's toolchain is not touched: only the aarch64 artefacts come from the chroot's rustc.
# Needs root (debootstrap, chroot, mounts).
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(dirname "$HERE")
CACHE=${MACULA_CACHE:-/var/cache/macula}
SUITE=sid
TARGET=aarch64-unknown-linux-gnu
PKGS="rustc cargo libstd-rust-dev:arm64 gcc-aarch64-linux-gnu libc6-dev-arm64-cross ca-certificates"
KEY=$(printf '%s\n' "$SUITE" "$PKGS" | sha256sum | cut -c1-12)
CH=$CACHE/cross-aarch64-$KEY
STAMP=$CH/.macula-complete
CARGO_CACHE=$CACHE/cargo-home-aarch64
TDIR=$REPO/target/cross-aarch64
OUTDIR=$TDIR/$TARGET/release
# Tests run under qemu-user: the pure crates' library tests and their integration tests that need
# no D-Bus, netlink or root (the simulations, format vectors, the store on disk, QUIC on loopback).
# maculad and maculactl are selected (they have no lib: nothing of theirs is built) so that the
# dependencies' features unify as in the agent build, whose release artifacts are then reused:
# without them tokio, tracing and syn got other features and most of the tree was built twice.
TEST_ARGS="-p macula-core -p macula-store -p macula-mesh -p maculad -p maculactl --lib
  --test dht_sim --test membership_sim --test pubsub_sim --test vectors --test transport
  --test format_vectors --test local_store --test objects --test repair_sim"

die() { echo "cross-aarch64.sh: ERROR: $*" >&2; exit 1; }
say() { echo "cross-aarch64.sh: [$(( $(date +%s) - T0 ))s] $*" >&2; }
T0=$(date +%s)
[ "$(id -u)" = 0 ] || die "run as root (debootstrap, chroot and bind mounts)"

MOUNTS=()
cleanup() {
  local i
  for (( i=${#MOUNTS[@]}-1; i>=0; i-- )); do
    umount "${MOUNTS[$i]}" 2>/dev/null || umount -l "${MOUNTS[$i]}" 2>/dev/null || true
  done
  MOUNTS=()
}
trap cleanup EXIT
trap 'exit 130' INT TERM
# bind SRC DEST [ro]
bind() {
  mkdir -p "$2"
  mount --bind "$1" "$2"
  MOUNTS+=("$2")
  [ "${3:-}" = ro ] && mount -o remount,bind,ro "$2"
  return 0
}
# bind_file SRC DEST: one file (kept mounted until the next cleanup)
bind_file() {
  touch "$2"
  mount --bind "$1" "$2"
  MOUNTS+=("$2")
}
mount_proc() {
  mkdir -p "$CH/proc"
  mount -t proc proc "$CH/proc"
  MOUNTS+=("$CH/proc")
}

# The mirror apt uses on this host (deb822 or one-line sources).
mirror() {
  local m
  m=$(grep -hs '^URIs:' /etc/apt/sources.list.d/*.sources | awk '{print $2}' | grep -v security | head -1)
  [ -n "$m" ] || m=$(grep -hs '^deb ' /etc/apt/sources.list /etc/apt/sources.list.d/*.list \
                       | awk '{print $2}' | grep -v security | head -1)
  echo "${m:-http://deb.debian.org/debian}"
}

ensure_chroot() {
  if [ -f "$STAMP" ]; then
    say "chroot $CH (reused)"
    return
  fi
  command -v debootstrap >/dev/null || {
    say "installing debootstrap"
    DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=900 install -y -qq \
      --no-install-recommends debootstrap >/dev/null
  }
  say "building the $SUITE chroot in $CH (once per machine)"
  rm -rf "$CH"
  mkdir -p "$CACHE"
  debootstrap --variant=minbase --keyring=/usr/share/keyrings/debian-archive-keyring.gpg \
    "$SUITE" "$CH" "$(mirror)" >"$CACHE/debootstrap-$KEY.log" 2>&1 \
    || { tail -20 "$CACHE/debootstrap-$KEY.log" >&2; die "debootstrap failed (log: $CACHE/debootstrap-$KEY.log)"; }
  # sid's Release can be past Valid-Until on this clock; no docs/man pages/locales in the chroot.
  echo 'Acquire::Check-Valid-Until "false";' >"$CH/etc/apt/apt.conf.d/99no-check-valid-until"
  cat >"$CH/etc/dpkg/dpkg.cfg.d/01-nodoc" <<'EOF'
path-exclude /usr/share/doc/*
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-exclude /usr/share/lintian/*
EOF
  # HTTPS here may go through a local CA (cargo: curl error 60/77 without it).
  mkdir -p "$CH/usr/local/share/ca-certificates"
  cp /usr/local/share/ca-certificates/*.crt "$CH/usr/local/share/ca-certificates/" 2>/dev/null || true
  cp /etc/resolv.conf "$CH/etc/resolv.conf" 2>/dev/null || true
  mount_proc
  # shellcheck disable=SC2016
  chroot "$CH" /usr/bin/env -i PATH=/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin DEBIAN_FRONTEND=noninteractive \
    PKGS="$PKGS" bash -euc '
      dpkg --add-architecture arm64
      apt-get update -qq
      apt-get install -y -qq --no-install-recommends $PKGS >/dev/null
      update-ca-certificates >/dev/null
      apt-get clean
      rm -rf /var/lib/apt/lists/* /usr/share/doc /usr/share/man /usr/share/locale' \
    || die "package install in the chroot failed"
  cleanup
  chroot "$CH" rustc --version >/dev/null || die "rustc does not run in the chroot"
  date -u +%FT%TZ >"$STAMP"
  say "chroot complete: $(du -sh "$CH" | cut -f1)"
}

# in_chroot CMD...: run CMD in the chroot with the source (read-only), target dir and crate cache
# mounted, and the cross toolchain variables set.
in_chroot() {
  mkdir -p "$TDIR" "$CARGO_CACHE"
  mount_proc
  bind "$REPO" "$CH/src" ro
  bind "$TDIR" "$CH/xtarget"
  bind "$CARGO_CACHE" "$CH/cargo-home"
  # debootstrap writes no /etc/hosts; tests resolve localhost
  [ -s "$CH/etc/hosts" ] || printf '127.0.0.1 localhost\n::1 localhost\n' >"$CH/etc/hosts"
  local rc=0
  chroot "$CH" /usr/bin/env -i PATH=/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root \
    CARGO_HOME=/cargo-home CARGO_TARGET_DIR=/xtarget CARGO_TERM_COLOR=never CARGO_INCREMENTAL=0 \
    CARGO_BUILD_JOBS="${CARGO_BUILD_JOBS:-$(nproc)}" \
    CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc \
    CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUSTFLAGS="-C target-feature=+crt-static" \
    CC_aarch64_unknown_linux_gnu=aarch64-linux-gnu-gcc AR_aarch64_unknown_linux_gnu=aarch64-linux-gnu-ar \
    CARGO_PROFILE_RELEASE_DEBUG=0 \
    bash -c 'cd /src && "$@"' bash "$@" || rc=$?
  cleanup
  return $rc
}

# The chroot's rustc must be at least the workspace's rust-version.
check_msrv() {
  local have need
  have=$(chroot "$CH" rustc --version | awk '{print $2}')
  need=$(sed -n 's/^rust-version *= *"\(.*\)"/\1/p' "$REPO/Cargo.toml" | head -1)
  [ -n "$need" ] || die "no rust-version in Cargo.toml"
  [ "$(printf '%s\n%s\n' "$need" "$have" | sort -V | head -1)" = "$need" ] \
    || die "chroot rustc $have is older than the workspace's rust-version $need"
  say "chroot rustc $have (workspace rust-version $need)"
}

build_agent() {
  check_msrv
  say "cargo build --release --target $TARGET -p maculad -p maculactl (+crt-static)"
  in_chroot cargo build --locked --release --target "$TARGET" -p maculad -p maculactl \
    || die "aarch64 agent build failed"
  local b
  for b in maculad maculactl; do
    readelf -h "$OUTDIR/$b" | grep -q 'Machine:.*AArch64' || die "$OUTDIR/$b is not an aarch64 binary"
    readelf -l "$OUTDIR/$b" | grep -q 'Requesting program interpreter' \
      && die "$OUTDIR/$b is dynamically linked (expected +crt-static)"
  done
  say "maculad $(stat -c %s "$OUTDIR/maculad") bytes, maculactl $(stat -c %s "$OUTDIR/maculactl") bytes (stripped, static)"
  local size
  size=$(stat -c %s "$OUTDIR/maculad")
  # The budget guards growth: 12 MiB until 2026-12-07, when maculad reached 12,606,816 B with
  # realm-wide multipart uploads (docs/image.md); raise it only with the size in the docs.
  [ "$size" -le $((14 * 1024 * 1024)) ] || die "maculad is $size bytes, over the 14 MiB budget"
  echo "$OUTDIR"
}

# Builds the test binaries of TEST_ARGS (release profile: shares the agent's dependencies) and runs
# each under qemu-aarch64-static -cpu cortex-a72 (a Pi 4's core; QEMU's model has the crypto
# extension the Pi 4's lacks, so the Pi 4's AEAD choice is tested from its own HWCAP word:
# macula-mesh tls::tests::pi4_negotiates_chacha20_and_pi5_aes_gcm).
run_tests() {
  check_msrv
  command -v qemu-aarch64-static >/dev/null || die "qemu-aarch64-static missing (tests/install-deps.sh installs qemu-user-static)"
  say "cargo test --no-run --release --target $TARGET" $TEST_ARGS
  # shellcheck disable=SC2086
  in_chroot cargo test --locked --release --target "$TARGET" $TEST_ARGS --no-run \
    --message-format=json >"$TDIR/tests.json" || die "aarch64 test build failed"
  # "binary crate-dir" per test binary, as paths inside the chroot (cargo runs a test binary in its
  # package's folder; compile-time paths such as CARGO_MANIFEST_DIR point under /src)
  python3 -c '
import json, os, sys
for line in open(sys.argv[1]):
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["profile"]["test"]:
        print(m["executable"], os.path.dirname(m["manifest_path"]))' "$TDIR/tests.json" \
    | sort -u >"$TDIR/tests.list"
  [ -s "$TDIR/tests.list" ] || die "no test binaries built"
  grep -q '/deps/macula_mesh-' "$TDIR/tests.list" || die "macula-mesh lib tests not built"
  # qemu-user is static: the host's binary runs in the chroot, where /src and /xtarget are mounted
  bind_file "$(command -v qemu-aarch64-static)" "$CH/usr/local/bin/qemu-aarch64-static"
  say "running $(wc -l <"$TDIR/tests.list") test binaries under qemu-aarch64-static -cpu cortex-a72"
  # shellcheck disable=SC2016
  in_chroot bash -c '
    failed=0
    while read -r bin dir; do
      echo "== qemu-aarch64-static -cpu cortex-a72 ${bin#/xtarget/}" >&2
      # (skipped: a test that re-executes its own binary, which would need binfmt_misc on the host)
      (cd "$dir" && qemu-aarch64-static -cpu cortex-a72 "$bin" -q --test-threads 2 \
        --skip sigkill_during_put_leaves_no_partial_shard </dev/null) || failed=$((failed + 1))
    done </xtarget/tests.list
    exit $failed' || die "aarch64 tests failed under qemu-aarch64-static (see above)"
  say "all aarch64 test binaries passed under qemu-aarch64-static"
}

build_example() {
  check_msrv
  [ -n "$1" ] || die "which example?"
  say "cargo build --release --target $TARGET -p macula-store --example $1"
  # With its symbol table: tests/insn_count.py names the functions the instructions ran in.
  in_chroot cargo build --locked --release --target "$TARGET" -p macula-store --example "$1" \
    --config 'profile.release.strip="none"' \
    || die "aarch64 build of example $1 failed"
  echo "$OUTDIR/examples/$1"
}

report_du() {
  say "disk: chroot $(du -sh "$CH" 2>/dev/null | cut -f1), crate cache $(du -sh "$CARGO_CACHE" 2>/dev/null | cut -f1), target $(du -sh "$TDIR" 2>/dev/null | cut -f1)"
}

# One build at a time per cache (CI jobs or helpers sharing a machine).
mkdir -p "$CACHE"
exec 9>"$CACHE/cross-aarch64.lock"
flock 9

case "${1:-}" in
  chroot) ensure_chroot; echo "$CH" ;;
  agent) ensure_chroot; build_agent; report_du ;;
  test) ensure_chroot; run_tests; report_du ;;
  example) ensure_chroot; build_example "${2:-}" ;;
  du) report_du ;;
  *) sed -n '2,21p' "$0" >&2; exit 2 ;;
esac
