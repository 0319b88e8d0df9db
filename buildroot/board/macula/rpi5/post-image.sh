#!/bin/sh
# $1 = BINARIES_DIR: autoboot.txt and one boot partition image per slot (cmdline.txt differs).
set -eu
BIN=$1
HERE=$(cd "$(dirname "$0")" && pwd)
printf '[all]\ntryboot_a_b=1\nboot_partition=2\n[tryboot]\nboot_partition=3\n' >"$BIN/autoboot.txt"
for s in a b; do
  S=$(echo $s | tr ab AB)
  img=$BIN/boot-$s.vfat
  rm -f "$img"
  mkfs.vfat -n "BOOT-$S" -C "$img" 65536 >/dev/null
  echo "console=serial0,115200 console=tty1 quiet panic=5 ro rootwait root=PARTLABEL=rootfs-$s rauc.slot=$S" >"$BIN/cmdline-$s.txt"
  mcopy -i "$img" "$BIN"/rpi-firmware/* "$BIN/Image" "$BIN"/bcm2712*.dtb ::
  mcopy -i "$img" "$HERE/config.txt" ::config.txt
  mcopy -i "$img" "$BIN/cmdline-$s.txt" ::cmdline.txt
done
