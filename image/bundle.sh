#!/bin/sh
# RAUC update bundle (verity format) from a slot image made by build.sh --rootfs-only.
#   image/bundle.sh --arch x86_64|aarch64 | --board rpi4|rpi5  --rootfs ROOTFS.ext4 --version V \
#                   --cert CERT.pem --key KEY.pem --out FILE.raucb
# The compatible string is the one in the board's system.conf, so a bundle only installs on
# the board it was built for. Raspberry Pi 5 bundles also carry the boot slot image (kernel,
# initramfs, DTBs: boot.vfat next to ROOTFS, made by build.sh --board rpi5).
set -eu
HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(dirname "$HERE")
ARCH= BOARD= ROOTFS= VERSION= CERT= KEY= OUT=
while [ $# -gt 0 ]; do
  case "$1" in
    --arch) ARCH=$2;; --board) BOARD=$2;; --rootfs) ROOTFS=$2;; --version) VERSION=$2;;
    --cert) CERT=$2;; --key) KEY=$2;; --out) OUT=$2;;
    *) sed -n '2,9p' "$0" >&2; exit 2;;
  esac
  shift 2
done
die() { echo "bundle.sh: ERROR: $*" >&2; exit 1; }
[ -n "$ARCH$BOARD" ] && [ -n "$ROOTFS" ] && [ -n "$VERSION" ] && [ -n "$CERT" ] && [ -n "$KEY" ] && [ -n "$OUT" ] \
  || die "missing arguments (see the header of $0)"
case "$BOARD" in
  rpi4|rpi5) ;;
  '') case "$ARCH" in x86_64) BOARD=qemu-x86_64;; aarch64) BOARD=qemu-aarch64;; *) die "unknown --arch $ARCH";; esac;;
  *) die "unknown --board $BOARD (rpi4 or rpi5)";;
esac
CONF=$REPO/buildroot/board/macula/$BOARD/rootfs-overlay/etc/rauc/system.conf
COMPATIBLE=$(sed -n 's/^compatible=//p' "$CONF")
[ -n "$COMPATIBLE" ] || die "no compatible= in $CONF"
[ -f "$ROOTFS" ] || die "slot image $ROOTFS not found (build it with image/build.sh --rootfs-only)"
[ -f "$KEY" ] || die "signing key $KEY not found (image/keys.sh creates development keys)"
W=$(mktemp -d)
trap 'rm -rf "$W"' EXIT
mkdir "$W/in"
cp "$ROOTFS" "$W/in/rootfs.ext4"
BOOTIMG=
if [ "$BOARD" = rpi5 ]; then
  [ -f "$(dirname "$ROOTFS")/boot.vfat" ] || die "no boot.vfat next to $ROOTFS (build.sh --board rpi5 makes it)"
  cp "$(dirname "$ROOTFS")/boot.vfat" "$W/in/boot.vfat"
  BOOTIMG='
[image.boot]
filename=boot.vfat'
fi
cat >"$W/in/manifest.raucm" <<M
[update]
compatible=$COMPATIBLE
version=$VERSION

[bundle]
format=verity

[image.rootfs]
filename=rootfs.ext4
$BOOTIMG
M
rm -f "$OUT"
rauc bundle --mksquashfs-args="-comp zstd" --cert "$CERT" --key "$KEY" "$W/in" "$OUT" >"$W/log" 2>&1 || { cat "$W/log" >&2; die "rauc bundle failed"; }
echo "bundle.sh: $OUT ($COMPATIBLE $VERSION, $(du -h "$OUT" | cut -f1))"
