#!/bin/sh
# Boot a Macula OS disk image under QEMU (TCG) on the serial console (stdio). The one place the
# QEMU command line lives: `make qemu` and the tests in tests/qemu/ both use it.
#   image/qemu.sh --arch x86_64|aarch64 --disk DISK.img [--vars OVMF_VARS.fd] [--extra-disk IMG]...
#                 [--rw-disk IMG]... [--reboot] [--socket-net listen|connect|mcast:HOST:PORT --mac MAC]
# --extra-disk attaches a read-only virtio disk, --rw-disk a writable one (e.g. a USB-like store).
# x86_64: q35 + OVMF (NVRAM in --vars; created from the OVMF template when missing) -> GRUB.
# aarch64: virt + U-Boot (qemu_arm64) -> boot.scr. Without --reboot a guest reboot ends QEMU.
# --socket-net adds a second NIC (eth1) on a QEMU socket link to another guest (one listens, the
# other connects), or with mcast:GROUP:PORT to every guest on that multicast group (a LAN over the
# host's loopback); give each guest its own --mac.
# Leave the console with Ctrl-A X.
set -eu
ARCH= DISK= VARS= EXTRA= REBOOT=-no-reboot SOCKNET= MAC=52:54:00:12:34:57
while [ $# -gt 0 ]; do
  case "$1" in
    --arch) ARCH=$2; shift 2;;
    --disk) DISK=$2; shift 2;;
    --vars) VARS=$2; shift 2;;
    --extra-disk) EXTRA="$EXTRA -drive file=$2,format=raw,if=virtio,readonly=on"; shift 2;;
    --rw-disk) EXTRA="$EXTRA -drive file=$2,format=raw,if=virtio"; shift 2;;
    --reboot) REBOOT=; shift;;
    --socket-net) SOCKNET=$2; shift 2;;
    --mac) MAC=$2; shift 2;;
    *) sed -n '2,9p' "$0" >&2; exit 2;;
  esac
done
die() { echo "qemu.sh: ERROR: $*" >&2; exit 1; }
if [ -n "$SOCKNET" ]; then
  case "$SOCKNET" in
    listen:*|connect:*) LOCAL=;;
    mcast:*) LOCAL=,localaddr=127.0.0.1;;
    *) die "--socket-net wants listen:HOST:PORT, connect:HOST:PORT or mcast:GROUP:PORT, not '$SOCKNET'";;
  esac
  EXTRA="$EXTRA -netdev socket,id=n1,${SOCKNET%%:*}=${SOCKNET#*:}$LOCAL -device virtio-net-pci,netdev=n1,romfile=,mac=$MAC"
fi
[ -f "${DISK:-}" ] || die "disk image '${DISK:-}' not found; run make image ARCH=${ARCH:-x86_64}"
COMMON="-m 512 -smp 1 -nodefaults -display none -serial mon:stdio $REBOOT
 -drive file=$DISK,format=raw,if=virtio
 -netdev user,id=n0,restrict=on -device virtio-net-pci,netdev=n0,romfile= $EXTRA"
case "$ARCH" in
  x86_64)
    CODE=/usr/share/OVMF/OVMF_CODE_4M.fd
    [ -f "$CODE" ] || die "$CODE missing; install ovmf (image/deps.sh x86_64)"
    VARS=${VARS:-$(dirname "$DISK")/OVMF_VARS.fd}
    [ -f "$VARS" ] || cp /usr/share/OVMF/OVMF_VARS_4M.fd "$VARS"
    # shellcheck disable=SC2086
    exec qemu-system-x86_64 -accel tcg -cpu max -machine q35 \
      -drive if=pflash,format=raw,readonly=on,file=$CODE -drive if=pflash,format=raw,file="$VARS" $COMMON
    ;;
  aarch64)
    UBOOT=/usr/lib/u-boot/qemu_arm64/u-boot.bin
    [ -f "$UBOOT" ] || die "$UBOOT missing; install u-boot-qemu (image/deps.sh aarch64)"
    # shellcheck disable=SC2086
    exec qemu-system-aarch64 -M virt -cpu cortex-a72 -accel tcg -bios $UBOOT $COMMON
    ;;
  *) die "unknown --arch '$ARCH' (x86_64 or aarch64)";;
esac
