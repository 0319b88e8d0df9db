#!/usr/bin/env bash
# Runs every cargo-fuzz target of the workspace (docs/fuzzing.md) to FUZZ_RUNS executions each
# (default 1 000 000), starting from its committed seed corpus (agent/<crate>/fuzz/corpus/<target>,
# read only) plus what earlier runs found (target/fuzz-corpus/<crate>/<target>, written). It
# builds every selected crate's targets first, then runs them, and prints each crate's build time
# and each target's executions and fuzzing time (also in target/fuzz-logs/summary.txt).
#   FUZZ_ONLY="crate[:target] …"  restricts the set (e.g. FUZZ_ONLY="macula-s3 macula-mesh:beacon")
#   FUZZ_MAX_SECONDS=N            also stops each target after N seconds (the summary says which
#                                 stopped short of FUZZ_RUNS)
# Built as cargo-fuzz builds by default: optimised, with debug assertions, overflow checks and
# AddressSanitizer. A crash stops the run: libFuzzer leaves the input in
# agent/<crate>/fuzz/artifacts/<target>/; it becomes a regression test (docs/fuzzing.md).
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${FUZZ_RUNS:-1000000}
cargo=${CARGO:-cargo}
command -v cargo-fuzz >/dev/null || "$cargo" install cargo-fuzz --locked
export CARGO_TARGET_DIR="$PWD/target/fuzz" RUSTC_BOOTSTRAP=1
bin="$CARGO_TARGET_DIR/$(rustc -vV | sed -n 's/^host: //p')/release"
limit=()
[ -z "${FUZZ_MAX_SECONDS:-}" ] || limit=(-max_total_time="$FUZZ_MAX_SECONDS")
logs=target/fuzz-logs
mkdir -p "$logs"
summary=()
say() { summary+=("$1"); echo "$1"; }
wanted() { # crate [target]: selected by FUZZ_ONLY?
  [ -z "${FUZZ_ONLY:-}" ] && return 0
  for w in $FUZZ_ONLY; do
    if [ "$w" = "$1" ] || [ "$w" = "$1:${2:-}" ] || { [ -z "${2:-}" ] && [ "${w%%:*}" = "$1" ]; }; then
      return 0
    fi
  done
  return 1
}
crates=()
for dir in agent/*/fuzz; do
  crate=$(basename "$(dirname "$dir")")
  wanted "$crate" || continue
  crates+=("$crate")
  echo "== $crate: build"
  start=$(date +%s)
  (cd "$dir" && "$cargo" fuzz build) >"$logs/$crate-build.log" 2>&1 || {
    tail -40 "$logs/$crate-build.log"
    echo "fuzz: building $crate's fuzz targets failed (log: $logs/$crate-build.log)" >&2
    exit 1
  }
  say "$(printf '%-14s %-20s build %5s s' "$crate" "" "$(($(date +%s) - start))")"
done
for crate in "${crates[@]}"; do
  dir=agent/$crate/fuzz
  for src in "$dir"/fuzz_targets/*.rs; do
    t=$(basename "$src" .rs)
    wanted "$crate" "$t" || continue
    found="target/fuzz-corpus/$crate/$t"
    mkdir -p "$found"
    [ -d "$dir/corpus/$t" ] || { echo "fuzz: no seed corpus $dir/corpus/$t" >&2; exit 1; }
    echo "== $crate/$t: $runs runs${FUZZ_MAX_SECONDS:+ or $FUZZ_MAX_SECONDS s}"
    start=$(date +%s)
    mkdir -p "$dir/artifacts/$t"
    "$bin/$t" -artifact_prefix="$dir/artifacts/$t/" -runs="$runs" "${limit[@]}" \
      -print_final_stats=1 "$found" "$dir/corpus/$t" >"$logs/$crate-$t.log" 2>&1 || {
      tail -40 "$logs/$crate-$t.log"
      echo "fuzz: $crate/$t failed (log: $logs/$crate-$t.log; input: $dir/artifacts/$t/)" >&2
      exit 1
    }
    secs=$(($(date +%s) - start))
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$logs/$crate-$t.log" | tail -1)
    note=""
    [ "${execs:-0}" -ge "$runs" ] || note="(stopped short of $runs)"
    say "$(printf '%-14s %-20s %9s execs %5s s %s' "$crate" "$t" "${execs:-?}" "$secs" "$note")"
  done
done
echo "== fuzz summary (FUZZ_RUNS=$runs${FUZZ_MAX_SECONDS:+, at most $FUZZ_MAX_SECONDS s each})"
printf '%s\n' "${summary[@]}" | tee "$logs/summary.txt"
