#!/bin/sh
# $1 = BINARIES_DIR: the inputs genimage.cfg names (BOOTX64.EFI grub.cfg grubenv rootfs.ext4).
set -eu
BIN=$1
HERE=$(cd "$(dirname "$0")" && pwd)
cp "$BIN/efi-part/EFI/BOOT/bootx64.efi" "$BIN/BOOTX64.EFI"
cp "$HERE/grub.cfg" "$BIN/grub.cfg"
rm -f "$BIN/grubenv"
"$HOST_DIR/bin/grub-editenv" "$BIN/grubenv" create
"$HOST_DIR/bin/grub-editenv" "$BIN/grubenv" set ORDER="A B" A_OK=1 B_OK=0 A_TRY=0 B_TRY=0
