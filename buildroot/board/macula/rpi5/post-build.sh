#!/bin/sh
# $1 = TARGET_DIR (nothing board-specific beyond the rootfs overlay).
set -eu
