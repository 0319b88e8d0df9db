#!/bin/sh
# $1 = BINARIES_DIR: autoboot.txt and one boot partition image per slot (cmdline.txt differs).
# Reads: Image, bcm2712*.dtb, rpi-firmware/* (optional: the Pi 5 boots from its EEPROM and needs
# no start*.elf), initrd.img (optional: the Debian-package image's initramfs).
# The slot's root and name are in cmdline.txt; an update writes boot-a's image into either boot
# slot and rauc-tryboot (set-primary) rewrites cmdline.txt for the slot it was written to.
set -eu
BIN=$1
HERE=$(cd "$(dirname "$0")" && pwd)
printf '[all]\ntryboot_a_b=1\nboot_partition=2\n[tryboot]\nboot_partition=3\n' >"$BIN/autoboot.txt"
cp "$HERE/config.txt" "$BIN/config-boot.txt"
if [ -f "$BIN/initrd.img" ]; then echo "initramfs initrd.img followkernel" >>"$BIN/config-boot.txt"; fi
for s in a b; do
  S=$(echo $s | tr ab AB)
  img=$BIN/boot-$s.vfat
  rm -f "$img"
  mkfs.vfat -n "BOOT-$S" -C "$img" 131072 >/dev/null
  echo "console=tty1 console=ttyAMA10,115200 quiet panic=5 ro rootwait root=PARTLABEL=rootfs-$s rauc.slot=$S" >"$BIN/cmdline-$s.txt"
  for f in "$BIN"/rpi-firmware/*; do
    if [ -e "$f" ]; then mcopy -s -i "$img" "$f" ::; fi
  done
  mcopy -i "$img" "$BIN/Image" "$BIN"/bcm2712*.dtb ::
  if [ -f "$BIN/initrd.img" ]; then mcopy -i "$img" "$BIN/initrd.img" ::; fi
  mcopy -i "$img" "$BIN/config-boot.txt" ::config.txt
  mcopy -i "$img" "$BIN/cmdline-$s.txt" ::cmdline.txt
done
