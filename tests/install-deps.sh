#!/usr/bin/env bash
# Installs the Debian packages `make test` / `make demo` need, when missing. Idempotent.
# Usage: tests/install-deps.sh [group...]   groups: base (default), plus what *.deps files add.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)

# base: the agent's own tests (private dbus-daemon, busctl, setpriv, nft, netns).
pkgs=(dbus-daemon dbus-bin systemd util-linux iproute2 nftables)
# Other parts list theirs in tests/deps/<part>.list (one package per line, '#' comments).
for list in "$here"/deps/*.list; do
  [ -e "$list" ] || continue
  while read -r p _; do
    [[ -z "$p" || "$p" == \#* ]] && continue
    pkgs+=("$p")
  done <"$list"
done

missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "install-deps: installing ${missing[*]}"
  if [ "$(id -u)" -ne 0 ]; then
    echo "install-deps: need root to install packages (run as root or install: ${missing[*]})" >&2
    exit 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
