#!/usr/bin/env bash
# make demo: one agent on a private bus, driven through maculactl, then stopped cleanly.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
bin=${MACULA_BIN_DIR:-$root/target/debug}
work=$(mktemp -d /tmp/macula-demo.XXXXXX)
chmod 755 "$work"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

step "private D-Bus (system-bus policy + overlay/etc/dbus-1/system.d/io.macula.Agent.conf)"
sed -e "s|@SOCKET@|$work/bus|" -e "s|@POLICY@|$root/overlay/etc/dbus-1/system.d/io.macula.Agent.conf|" \
  "$root/tests/dbus/private-bus.conf.in" >"$work/bus.conf"
dbus-daemon --config-file="$work/bus.conf" --nofork --nopidfile 2>"$work/dbus.log" &
pids+=($!)
for _ in $(seq 100); do [ -S "$work/bus" ] && break; sleep 0.05; done
export MACULA_BUS="unix:path=$work/bus"
echo "bus: $MACULA_BUS"

step "start maculad (state in $work/state)"
cat >"$work/agent.toml" <<'TOML'
[node]
name = "demo-edge-1"
role = "edge"
TOML
"$bin/maculad" --config "$work/agent.toml" --state-dir "$work/state" 2>"$work/maculad.log" &
agent=$!
pids+=($agent)
for _ in $(seq 200); do
  busctl --address="$MACULA_BUS" status io.macula.Agent >/dev/null 2>&1 && break
  sleep 0.05
done
cat "$work/maculad.log"

step "maculactl status"
"$bin/maculactl" status
step "maculactl status --json"
"$bin/maculactl" status --json
step "busctl introspect io.macula.Agent /io/macula/Agent"
busctl --address="$MACULA_BUS" introspect io.macula.Agent /io/macula/Agent io.macula.Node1

step "stop maculad (SIGTERM)"
t0=$(date +%s%N)
kill -TERM "$agent"
wait "$agent"
echo "maculad exited with $? after $(( ($(date +%s%N) - t0) / 1000000 )) ms"
tail -n 1 "$work/maculad.log"
"$bin/maculactl" status || echo "(maculactl exit $?: as expected, no agent on the bus)"
