#!/bin/sh
# The files a person flashes or installs, from a Raspberry Pi image build (build.sh --board):
#   sdcard.img.bmap (bmaptool copy), sdcard.img.zst (compressed, for downloads),
#   macula-<board>-<version>.raucb (RAUC update bundle of the same rootfs, signed).
# Then deletes the slot image rootfs.ext4 (it is on the card twice already); build.sh's base
# stage (base/, kernel, initramfs, boot files) stays for update bundles (make bundle BOARD=...).
#   image/rpi/release.sh --board rpi4|rpi5 --dir DIR --cert CERT.pem --key KEY.pem
set -eu
HERE=$(cd "$(dirname "$0")" && pwd)
BOARD= DIR= CERT= KEY=
while [ $# -gt 0 ]; do
  case "$1" in
    --board) BOARD=$2;; --dir) DIR=$2;; --cert) CERT=$2;; --key) KEY=$2;;
    *) sed -n '2,8p' "$0" >&2; exit 2;;
  esac
  shift 2
done
die() { echo "release.sh: ERROR: $*" >&2; exit 1; }
[ -n "$BOARD" ] && [ -n "$DIR" ] && [ -n "$CERT" ] && [ -n "$KEY" ] || die "missing arguments"
IMG=$DIR/sdcard.img
[ -f "$IMG" ] && [ -f "$DIR/rootfs.ext4" ] || die "$IMG or $DIR/rootfs.ext4 missing; run image/build.sh --board $BOARD first"
VERSION=$(cat "$DIR/version")
t0=$(date +%s)
rm -f "$IMG.bmap" "$IMG.zst" "$DIR"/macula-"$BOARD"-*.raucb
bmaptool -q create -o "$IMG.bmap" "$IMG"
zstd -q -T0 -3 "$IMG" -o "$IMG.zst"   # -9: 7 % smaller, 4x slower
"$HERE/../bundle.sh" --board "$BOARD" --rootfs "$DIR/rootfs.ext4" --version "$VERSION" \
  --cert "$CERT" --key "$KEY" --out "$DIR/macula-$BOARD-$VERSION.raucb"
rm -f "$DIR/rootfs.ext4"
echo "release.sh: [$(( $(date +%s) - t0 ))s] $IMG ($(du -h --apparent-size "$IMG" | cut -f1) apparent, $(du -h "$IMG" | cut -f1) on disk), .bmap, .zst ($(du -h "$IMG.zst" | cut -f1)), macula-$BOARD-$VERSION.raucb; $DIR holds $(du -sh "$DIR" | cut -f1)"
