#!/bin/sh
# Install the host packages the offline image builder and the QEMU tests need.
# Idempotent: does nothing when everything is present. Adds bookworm-backports for qemu 10.
# Usage: image/deps.sh [x86_64|aarch64|rpi|all]   (rpi: the Raspberry Pi SD images, image/rpi.mk)
set -eu
ARCH=${1:-all}

BASE="genimage rauc mtools dosfstools e2fsprogs fdisk openssl python3-pexpect \
busybox-static dbus kmod xz-utils zstd cpio binutils squashfs-tools"
BACKPORTS="qemu-utils"
case "$ARCH" in
  x86_64) BASE="$BASE grub-efi-amd64-bin grub-common ovmf"; BACKPORTS="$BACKPORTS qemu-system-x86" ;;
  aarch64) BASE="$BASE u-boot-qemu u-boot-tools"; BACKPORTS="$BACKPORTS qemu-system-arm" ;;
  rpi) BASE="$BASE u-boot-tools device-tree-compiler bmap-tools"; BACKPORTS="$BACKPORTS qemu-system-arm" ;;
  all) BASE="$BASE grub-efi-amd64-bin grub-common ovmf u-boot-qemu u-boot-tools device-tree-compiler bmap-tools"
       BACKPORTS="$BACKPORTS qemu-system-x86 qemu-system-arm" ;;
  *) echo "deps.sh: unknown ARCH '$ARCH' (use x86_64, aarch64, rpi or all)" >&2; exit 2 ;;
esac

missing() {
  for p in "$@"; do
    dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -q '^install ok installed$' || echo "$p"
  done
}

need_base=$(missing $BASE)
need_bp=$(missing $BACKPORTS)
# qemu-system-* from bookworm itself (7.2) is too old for what the notes measured; require >= 8.
for q in qemu-system-x86 qemu-system-arm; do
  case " $BACKPORTS " in *" $q "*) ;; *) continue ;; esac
  v=$(dpkg-query -W -f='${Version}' "$q" 2>/dev/null || true)
  if [ -n "$v" ] && dpkg --compare-versions "$v" lt 1:8; then need_bp="$need_bp $q"; fi
done
[ -z "$need_base$need_bp" ] && exit 0

if [ "$(id -u)" != 0 ]; then
  echo "deps.sh: missing packages: $need_base $need_bp — run as root or install them yourself" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
if [ -n "$need_bp" ] && ! grep -rqs 'bookworm-backports' /etc/apt/sources.list /etc/apt/sources.list.d/; then
  echo "deb http://deb.debian.org/debian bookworm-backports main" > /etc/apt/sources.list.d/macula-backports.list
fi
APT="apt-get -o DPkg::Lock::Timeout=900"
$APT update -qq
if [ -n "$need_base" ]; then
  $APT install -y -qq --no-install-recommends $need_base
fi
if [ -n "$need_bp" ]; then
  $APT install -y -qq --no-install-recommends -t bookworm-backports $need_bp
fi
