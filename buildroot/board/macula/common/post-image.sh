#!/bin/sh
# Buildroot post-image (runs as the build user, $1 = BINARIES_DIR, $2 = board name):
# boot files -> genimage (the board's genimage.cfg, shared with image/build.sh) -> sdcard.img,
# and a RAUC bundle of rootfs.ext4 signed with MACULA_RAUC_CERT/KEY (default: development keys).
set -eu
BIN=$1
BOARD=$2
BOARDDIR=$BR2_EXTERNAL_MACULA_PATH/board/macula/$BOARD
KEYS=$BR2_EXTERNAL_MACULA_PATH/../build/keys
CERT=${MACULA_RAUC_CERT:-$KEYS/dev.cert.pem}
KEY=${MACULA_RAUC_KEY:-$KEYS/dev.key.pem}
VERSION=${MACULA_VERSION:-$(sed -n 's/^VERSION_ID=//p' "$TARGET_DIR/etc/os-release")}
COMPATIBLE=$(sed -n 's/^compatible=//p' "$BOARDDIR/rootfs-overlay/etc/rauc/system.conf")

# Board-specific boot files into $BIN (what genimage.cfg refers to)
"$BOARDDIR/post-image.sh" "$BIN"

GENIMAGE_TMP=$BUILD_DIR/genimage.tmp
rm -rf "$GENIMAGE_TMP"
mkdir -p "$BIN/genimage-root"
genimage --rootpath "$BIN/genimage-root" --tmppath "$GENIMAGE_TMP" --inputpath "$BIN" \
  --outputpath "$BIN" --config "$BOARDDIR/genimage.cfg"

W=$(mktemp -d)
trap 'rm -rf "$W"' EXIT
mkdir "$W/in"
cp "$BIN/rootfs.ext4" "$W/in/rootfs.ext4"
cat >"$W/in/manifest.raucm" <<M
[update]
compatible=$COMPATIBLE
version=$VERSION

[bundle]
format=verity

[image.rootfs]
filename=rootfs.ext4
M
# boards whose slots include a boot partition (Raspberry Pi 5) ship it in the bundle too
if [ -f "$BIN/boot-a.vfat" ]; then
  cp "$BIN/boot-a.vfat" "$W/in/boot.vfat"
  printf '\n[image.boot]\nfilename=boot.vfat\n' >>"$W/in/manifest.raucm"
fi
rm -f "$BIN/update.raucb"
rauc bundle --mksquashfs-args="-comp zstd" --cert "$CERT" --key "$KEY" "$W/in" "$BIN/update.raucb"
echo "post-image: $BIN/$(sed -n 's/^image \(.*\) {$/\1/p' "$BOARDDIR/genimage.cfg" | tail -1), $BIN/update.raucb ($COMPATIBLE $VERSION)"
