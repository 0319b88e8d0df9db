#!/bin/sh
# Source tarball of the agent for Buildroot's macula-agent package:
#   buildroot/dist.sh [VERSION] -> build/dist/macula-agent-VERSION.tar.gz (git HEAD, with Cargo.lock)
# Buildroot's download step vendors the crates listed in Cargo.lock into its own copy of the
# tarball (needs crates.io once; see docs/image.md for building fully offline).
set -eu
REPO=$(cd "$(dirname "$0")/.." && pwd)
VERSION=${1:-0.1.0}
git -C "$REPO" ls-files --error-unmatch Cargo.lock >/dev/null 2>&1 \
  || { echo "dist.sh: ERROR: Cargo.lock is not committed; an offline --locked build needs it" >&2; exit 1; }
mkdir -p "$REPO/build/dist"
OUT=$REPO/build/dist/macula-agent-$VERSION.tar.gz
git -C "$REPO" archive --format=tar.gz --prefix="macula-agent-$VERSION/" -o "$OUT" HEAD Cargo.toml Cargo.lock agent
echo "dist.sh: $OUT"
