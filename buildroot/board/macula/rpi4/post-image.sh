#!/bin/sh
# $1 = BINARIES_DIR: the inputs genimage.cfg names.
set -eu
BIN=$1
HERE=$(cd "$(dirname "$0")" && pwd)
cp "$HERE/config.txt" "$BIN/config.txt"
"$HOST_DIR/bin/mkimage" -A arm64 -T script -C none -n "Macula A/B" -d "$HERE/boot.cmd" "$BIN/boot.scr"
printf 'BOOT_ORDER=A B\nBOOT_A_LEFT=3\nBOOT_B_LEFT=0\n' >"$BIN/uboot-env.txt"
"$HOST_DIR/bin/mkenvimage" -s 0x4000 -o "$BIN/uboot.env" "$BIN/uboot-env.txt"
