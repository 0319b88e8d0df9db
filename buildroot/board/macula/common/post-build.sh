#!/bin/sh
# Buildroot post-build (runs as the build user, $1 = TARGET_DIR, $2 = board name from
# BR2_ROOTFS_POST_SCRIPT_ARGS). Does for Buildroot what image/build.sh does for the Debian image.
set -eu
TARGET=$1
BOARD=$2
BOARDDIR=$BR2_EXTERNAL_MACULA_PATH/board/macula/$BOARD
KEYRING=${MACULA_RAUC_KEYRING:-$BR2_EXTERNAL_MACULA_PATH/../build/keys/dev.cert.pem}
VERSION=${MACULA_VERSION:-$(git -C "$BR2_EXTERNAL_MACULA_PATH" describe --always --dirty 2>/dev/null || echo 0.0.0)}

[ -f "$KEYRING" ] || { echo "post-build: ERROR: RAUC keyring $KEYRING missing; run image/keys.sh build/keys or set MACULA_RAUC_KEYRING" >&2; exit 1; }
install -D -m 0644 "$KEYRING" "$TARGET/etc/rauc/keyring.pem"
cat >"$TARGET/etc/os-release" <<OS
NAME="Macula OS"
ID=macula
PRETTY_NAME="Macula OS $VERSION ($BOARD)"
VERSION_ID=$VERSION
BUILD_ID=$(date -u +%Y%m%dT%H%M%SZ)
VARIANT_ID=$BOARD
OS
# Buildroot's skeleton has its own inittab/rcS; the overlay's replace them (same files as the
# Debian image). Buildroot's /etc/init.d/S* scripts for dbus are replaced by S10dbus.
rm -f "$TARGET/etc/init.d/S01syslogd" "$TARGET/etc/init.d/S02klogd" "$TARGET/etc/init.d/S30dbus" \
      "$TARGET/etc/init.d/S40network"
# busybox init supervises `rauc service`; a D-Bus activated second instance would race it
rm -f "$TARGET/usr/share/dbus-1/system-services/de.pengutronix.rauc.service"
mkdir -p "$TARGET/data" "$TARGET/esp"
# Production: a login prompt on the console and root's password locked (no passwordless shell).
grep -qx 'console::respawn:/sbin/getty -L console 0 vt100' "$TARGET/etc/inittab" \
  || { echo "post-build: ERROR: no login prompt on the console in /etc/inittab" >&2; exit 1; }
grep -q '^root:[*!]' "$TARGET/etc/shadow" \
  || { echo "post-build: ERROR: root's password is not locked in /etc/shadow" >&2; exit 1; }
# Slot kernel and initramfs-less boot: Buildroot kernels have virtio/ext4 built in.
if [ -f "$BOARDDIR/post-build.sh" ]; then
  "$BOARDDIR/post-build.sh" "$TARGET"
fi
