#!/bin/sh
# Consistency check of the br2-external tree (it cannot be built here): every path a defconfig
# names exists, every board has the files the common scripts expect, compatibles are unique,
# every shell script parses, the agent package's minimum Rust matches the workspace's and busybox
# gets the syslog/logread options the overlay uses. Exit 1 with the list of problems.
set -u
T=$(cd "$(dirname "$0")" && pwd)
err=0
bad() { echo "buildroot/check.sh: $*" >&2; err=1; }
grep -qx 'name: MACULA' "$T/external.desc" || bad "external.desc: name is not MACULA"
for cfg in "$T"/configs/*_defconfig; do
  for p in $(sed -n 's/.*="\(.*\)"$/\1/p' "$cfg" | tr ' ' '\n' | grep 'BR2_EXTERNAL_MACULA_PATH'); do
    f=$(echo "$p" | sed "s|\$(BR2_EXTERNAL_MACULA_PATH)|$T|")
    [ -e "$f" ] || bad "$(basename "$cfg"): $p does not exist"
  done
  board=$(sed -n 's/^BR2_ROOTFS_POST_SCRIPT_ARGS="\(.*\)"/\1/p' "$cfg")
  [ -n "$board" ] || { bad "$(basename "$cfg"): no BR2_ROOTFS_POST_SCRIPT_ARGS (board name)"; continue; }
  for f in genimage.cfg post-build.sh post-image.sh rootfs-overlay/etc/rauc/system.conf; do
    [ -e "$T/board/macula/$board/$f" ] || bad "board $board: $f missing"
  done
  grep -q '^BR2_PACKAGE_MACULA_AGENT=y' "$cfg" || bad "$(basename "$cfg"): agent package not enabled"
  grep -qx '# BR2_TARGET_ENABLE_ROOT_LOGIN is not set' "$cfg" \
    || bad "$(basename "$cfg"): root login must be disabled (production image: no root password)"
done
dups=$(sed -n 's/^compatible=//p' "$T"/board/macula/*/rootfs-overlay/etc/rauc/system.conf | sort | uniq -d)
[ -z "$dups" ] || bad "duplicate RAUC compatible: $dups"
msrv=$(sed -n 's/^rust-version = "\(.*\)"/\1/p' "$T/../Cargo.toml")
pkg=$(sed -n 's/^MACULA_AGENT_RUST_MIN = //p' "$T/package/macula-agent/macula-agent.mk")
[ "$msrv" = "$pkg" ] || bad "macula-agent.mk: MACULA_AGENT_RUST_MIN=$pkg but Cargo.toml rust-version=$msrv"
for cfg in "$T"/configs/*_defconfig; do
  grep -q '^BR2_PACKAGE_BUSYBOX_CONFIG_FRAGMENT_FILES=.*busybox.fragment' "$cfg" \
    || bad "$(basename "$cfg"): no busybox.fragment (the overlay needs syslogd -C and logread)"
done
for opt in CONFIG_SYSLOGD CONFIG_FEATURE_IPC_SYSLOG CONFIG_LOGREAD; do
  grep -qx "$opt=y" "$T/board/macula/common/busybox.fragment" || bad "busybox.fragment: $opt=y missing"
done
for s in $(find "$T" "$T/../overlay" -type f \( -name '*.sh' -o -path '*/init.d/*' -o -path '*/libexec/macula/*' \)); do
  sh -n "$s" 2>/dev/null || bad "$s: shell syntax error"
done
[ $err = 0 ] && echo "buildroot/check.sh: ok"
exit $err
