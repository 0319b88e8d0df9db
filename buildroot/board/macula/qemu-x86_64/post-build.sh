#!/bin/sh
# $1 = TARGET_DIR. grub.cfg boots /boot/vmlinuz of the slot.
set -eu
ln -sfn bzImage "$1/boot/vmlinuz"
