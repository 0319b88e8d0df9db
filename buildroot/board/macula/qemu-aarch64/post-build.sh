#!/bin/sh
# $1 = TARGET_DIR. boot.cmd boots /boot/vmlinuz of the slot.
set -eu
ln -sfn Image "$1/boot/vmlinuz"
