#!/usr/bin/env bash
# make demo-mesh: a realm of 1 hub + 4 edges (real maculad processes, each in its own network
# namespace on a bridged LAN when run as root — on loopback ports otherwise or with
# MACULA_DEMO_LOOPBACK=1 — and one private bus each) forms, shows membership, delivers a pub/sub message, detects a killed node; storage:
# puts a file (2 + 2 erasure coding), repairs after the node loss, survives m = 2 more losses.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
bin=${MACULA_BIN_DIR:-$root/target/debug}
work=$(mktemp -d /tmp/macula-mesh-demo.XXXXXX)
chmod 755 "$work"
pids=()
names=(hub edge-1 edge-2 edge-3 edge-4)
# Failure domains ([storage] site / power): placement spreads each segment's shards over them.
sites=(attic attic cellar cellar garage)
powers=(ups-1 mains-1 ups-2 mains-2 mains-3)
netns=""
if [ "$(id -u)" = 0 ] && [ -z "${MACULA_DEMO_LOOPBACK:-}" ] && command -v ip >/dev/null; then
  netns="mdemo$$"
fi
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  if [ -n "$netns" ]; then
    for ns in $(ip netns list | awk '{print $1}' | grep "^$netns-" || true); do ip netns delete "$ns"; done
  fi
  rm -rf "$work"
}
trap cleanup EXIT

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
base=$((40000 + RANDOM % 20000))
ctl() { local i=$1; shift; "$bin/maculactl" --bus "unix:path=$work/$i/bus" "$@"; }
# Mesh address of node i, and the command prefix that runs a program in its namespace.
addr() { if [ -n "$netns" ]; then echo "10.77.0.$(($1 + 1)):4433"; else echo "127.0.0.1:$((base + $1))"; fi; }
in_ns() { if [ -n "$netns" ]; then echo "ip netns exec $netns-$1"; fi; }

if [ -n "$netns" ]; then
  step "network: one namespace per node on a bridged LAN 10.77.0.0/24 ($netns-*)"
  ip netns add "$netns-lan"
  ip -n "$netns-lan" link add br0 type bridge
  ip -n "$netns-lan" link set br0 up
  for i in "${!names[@]}"; do
    ip netns add "$netns-$i"
    ip link add eth0 netns "$netns-$i" type veth peer name port$i netns "$netns-lan"
    ip -n "$netns-$i" addr add "10.77.0.$((i + 1))/24" dev eth0
    ip -n "$netns-$i" link set lo up
    ip -n "$netns-$i" link set eth0 up
    ip -n "$netns-lan" link set port$i master br0 up
    echo "${names[$i]}: namespace $netns-$i, eth0 10.77.0.$((i + 1))"
  done
fi

step "start ${#names[@]} agents (private buses, mesh on $(addr 0) .. $(addr 4))"
for i in "${!names[@]}"; do
  d="$work/$i"; mkdir -p "$d"
  sed -e "s|@SOCKET@|$d/bus|" -e "s|@POLICY@|$root/overlay/etc/dbus-1/system.d/io.macula.Agent.conf|" \
    "$root/tests/dbus/private-bus.conf.in" >"$d/bus.conf"
  dbus-daemon --config-file="$d/bus.conf" --nofork --nopidfile 2>"$d/dbus.log" &
  pids+=($!)
  for _ in $(seq 100); do [ -S "$d/bus" ] && break; sleep 0.05; done
  role=edge; boot="bootstrap = [\"$(addr 0)\"]"
  if [ "$i" = 0 ]; then role=hub; boot=""; fi
  printf '[node]\nname = "%s"\nrole = "%s"\n[mesh]\nlisten = "%s"\n%s\n' \
    "${names[$i]}" "$role" "$(addr "$i")" "$boot" >"$d/agent.toml"
  printf '[storage]\nenabled = true\nquota_bytes = 268435456\nk = 2\nm = 2\nrepair_grace_secs = 3\naudit_interval_secs = 2\nsite = "%s"\npower = "%s"\n' \
    "${sites[$i]}" "${powers[$i]}" >>"$d/agent.toml"
  $(in_ns "$i") "$bin/maculad" --bus "unix:path=$d/bus" --config "$d/agent.toml" --state-dir "$d/state" \
    2>"$d/maculad.log" &
  pids+=($!)
  echo "${names[$i]}: pid $!"
done
for i in "${!names[@]}"; do
  for _ in $(seq 200); do ctl "$i" status >/dev/null 2>&1 && break; sleep 0.05; done
done

step "hub: maculactl realm create"
ctl 0 realm create --name hub

step "admit the edges: realm admit on the hub, realm join on each edge"
for i in 1 2 3 4; do
  id=$(ctl "$i" status --json | sed -n 's/.*"node_id": *"\([a-z2-7]*\)".*/\1/p')
  ctl 0 realm admit "$id" --name "${names[$i]}" -o "$work/$i.cert" 2>/dev/null
  printf '%s: ' "${names[$i]}"; ctl "$i" realm join "$work/$i.cert"
done

step "wait for the realm to form"
t0=$(date +%s%N)
until [ "$(ctl 0 peers --json | grep -c '"alive"')" = 4 ]; do sleep 0.2; done
echo "all 4 edges alive at the hub after $(( ($(date +%s%N) - t0) / 1000000 )) ms"
step "maculactl peers (on the hub)"
ctl 0 peers
step "maculactl peers (on edge-2)"
ctl 2 peers

step "pub/sub: edge-2 and edge-3 subscribe to demo/news, edge-1 publishes"
ctl 2 sub demo/news --count 1 >"$work/sub2.out" 2>&1 & s2=$!
ctl 3 sub demo/news --count 1 >"$work/sub3.out" 2>&1 & s3=$!
sleep 2
ctl 1 pub demo/news "hello from edge-1"
wait "$s2" "$s3"
echo "edge-2 received:"; sed 's/^/  /' "$work/sub2.out"
echo "edge-3 received:"; sed 's/^/  /' "$work/sub3.out"

step "RPC: edge-1 calls mesh.ping on edge-3 and on the hub (maculactl ping)"
ctl 1 ping edge-3
ctl 1 ping hub

step "storage: put a 5 MiB file on the hub (2 data + 2 parity shards per segment, 5 nodes)"
head -c $((5 * 1024 * 1024 + 4321)) /dev/urandom >"$work/file.bin"
until ctl 0 storage status --json | tr -d ' \n' | grep -q '"nodes":5'; do sleep 0.2; done
cap=$(ctl 0 put "$work/file.bin")
echo "capability: $cap"
echo "sha256 original:  $(sha256sum <"$work/file.bin" | cut -d' ' -f1)"
# Distinct shards (segment.index) held by the nodes given as arguments.
held() { for i in "$@"; do find "$work/$i/state/shards/shards" -type f -printf '%f\n' 2>/dev/null; done | sort -u | grep -c .; }
full=$(held 0 1 2 3 4)
echo "shards stored: $full"
step "maculactl peers on edge-2: every node re-announced its free space (within ~5 s)"
sleep 5
ctl 2 peers

step "kill -9 edge-4 and watch the hub detect it"
pid4=${pids[9]}
kill -9 "$pid4"; wait "$pid4" 2>/dev/null || true
t0=$(date +%s%N)
until ctl 0 peers --json | tr -d ' \n' | grep -q '"name":"edge-4"[^}]*"state":"down"\|"state":"down"[^}]*"name":"edge-4"'; do
  sleep 0.2
done
echo "edge-4 declared down after $(( ($(date +%s%N) - t0) / 1000000 )) ms"
ctl 0 peers

step "repair: edge-4's shards are rebuilt on the spare node"
echo "shards on the live nodes right after the loss: $(held 0 1 2 3) of $full"
t0=$(date +%s%N)
until [ "$(held 0 1 2 3)" = "$full" ]; do sleep 0.5; done
echo "full redundancy ($full shards) restored $(( ($(date +%s%N) - t0) / 1000000 )) ms after detection"
ctl 0 storage status

step "kill -9 m = 2 more nodes (edge-3, edge-2) and get the file back on the hub"
kill -9 "${pids[7]}" "${pids[5]}"; wait "${pids[7]}" "${pids[5]}" 2>/dev/null || true
until [ "$(ctl 0 peers --json | grep -c '"down"')" = 3 ]; do sleep 0.2; done
ctl 0 get "$cap" -o "$work/back.bin"
echo "sha256 original:  $(sha256sum <"$work/file.bin" | cut -d' ' -f1)"
echo "sha256 retrieved: $(sha256sum <"$work/back.bin" | cut -d' ' -f1)"
cmp "$work/file.bin" "$work/back.bin" && echo "byte-identical with 2 of 5 nodes left"

step "done; stopping everything"
