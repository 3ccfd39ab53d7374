#!/usr/bin/env bash
# bench/fhir-search — FHIR search latency over a generated population (issue 6):
#   generates COUNT Synthea-shaped resources (bench/fhir-search/gen.py, default 100,000;
#   --count 1000000 for the full run), imports them into a fresh SQLite store with
#   `holovitals import`, serves it, and runs the query mix of bench/fhir-search/measure.py
#   (p50/p99 per query, against the same lookup as a plain SQL query on the index tables).
#
#   bench/fhir-search/run.sh [--count N] [--repeat R]
#
# Run from the build directory after `make` (HOLOVITALS_BIN overrides the binary).
set -euo pipefail
top=$(cd "$(dirname "$0")/../.." && pwd)
build=${HV_BUILDDIR:-$PWD}
bin=${HOLOVITALS_BIN:-$build/holovitals}
count=100000
repeat=30
while [ $# -gt 0 ]; do
  case "$1" in
    --count) count=$2; shift 2 ;;
    --repeat) repeat=$2; shift 2 ;;
    *) echo "usage: $0 [--count N] [--repeat R]" >&2; exit 2 ;;
  esac
done
work=$(mktemp -d /tmp/hv-bench-search.XXXXXX)
port=$((20000 + RANDOM % 20000))
cleanup() {
  [ -n "${hvpid:-}" ] && kill "$hvpid" 2>/dev/null && wait "$hvpid" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
python3 "$top/bench/fhir-search/gen.py" "$count" > "$work/population.ndjson"
echo "generated $count resources; importing..." >&2
"$bin" import --data "$work/data" --batch 5000 "$work/population.ndjson" 2>/dev/null
"$bin" serve --data "$work/data" --http "127.0.0.1:$port" --mllp "127.0.0.1:$((port + 1))" \
  --channels "$work/channels" --auth off --log-level warn >/dev/null 2>&1 &
hvpid=$!
for _ in $(seq 100); do
  curl -sf "http://127.0.0.1:$port/health" >/dev/null 2>&1 && break
  sleep 0.1
done
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
python3 "$top/bench/fhir-search/measure.py" "http://127.0.0.1:$port/fhir" "$work/data/fhir.db" "$repeat"
