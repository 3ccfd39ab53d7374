#!/usr/bin/env bash
# bench/fhir-search — FHIR search latency over a generated population (issue 6), end to end:
#   1. generates BASE Synthea-shaped resources (bench/fhir-search/gen.py),
#   2. imports them into a fresh SQLite store with `holovitals import` (the engine's own
#      index rows),
#   3. when COUNT > BASE, multiplies them in SQL to COUNT (bench/fhir-search/replicate.py,
#      COUNT / BASE copies: every resource and index row, ids suffixed),
#   4. for --backend pg, copies that store into PostgreSQL (bench/fhir-search/replicate_pg.sh,
#      COPY, then ANALYZE); on SQLite ANALYZE runs only with --analyze (the engine's stores
#      have no statistics: the benchmark measures the plans users get),
#   5. serves it and runs the query mix of bench/fhir-search/measure.py (p50/p99 per query,
#      and for SQLite the same lookup as plain SQL on the index tables; deep paging PAGES
#      pages deep).
#
#   bench/fhir-search/run.sh [--count N] [--base B] [--backend sqlite|pg] [--pg-url URL]
#                            [--repeat R] [--ceiling C] [--pages P] [--analyze] [--keep DIR]
#
# Defaults: --count 100000, --base min(COUNT, 50000), sqlite, --repeat 30, --ceiling REPEAT,
# --pages 20. The full run of issue 6: `--count 1000000` (base 50,000 × 20; on this 2-core
# machine the import takes 5-20 minutes, the replication 20, the PostgreSQL copy 20-40),
# and for PostgreSQL `--backend pg --pg-url "$(./scripts/pg.sh start /tmp/pg-bench)"`.
# --keep DIR keeps the store in DIR (reused when it already holds one: steps 1-3 skipped).
# Run from the build directory after `make` (HOLOVITALS_BIN overrides the binary).
set -euo pipefail
top=$(cd "$(dirname "$0")/../.." && pwd)
build=${HV_BUILDDIR:-$PWD}
bin=${HOLOVITALS_BIN:-$build/holovitals}
count=100000
base=
backend=sqlite
pgurl=
repeat=30
ceiling=
pages=20
analyze=0
keep=
while [ $# -gt 0 ]; do
  case "$1" in
    --count) count=$2; shift 2 ;;
    --base) base=$2; shift 2 ;;
    --backend) backend=$2; shift 2 ;;
    --pg-url) pgurl=$2; shift 2 ;;
    --repeat) repeat=$2; shift 2 ;;
    --ceiling) ceiling=$2; shift 2 ;;
    --pages) pages=$2; shift 2 ;;
    --analyze) analyze=1; shift ;;
    --keep) keep=$2; shift 2 ;;
    *) echo "usage: $0 [--count N] [--base B] [--backend sqlite|pg] [--pg-url URL] [--repeat R] [--ceiling C]" \
            "[--pages P] [--analyze] [--keep DIR]" >&2; exit 2 ;;
  esac
done
[ -n "$base" ] || base=$(( count < 50000 ? count : 50000 ))
[ -n "$ceiling" ] || ceiling=$repeat
case "$backend" in
  sqlite) ;;
  pg) [ -n "$pgurl" ] || { echo "$0: --backend pg needs --pg-url" >&2; exit 2; } ;;
  *) echo "$0: --backend sqlite|pg" >&2; exit 2 ;;
esac
copies=$(( (count + base - 1) / base ))
if [ -n "$keep" ]; then work=$keep; mkdir -p "$work"; else work=$(mktemp -d /tmp/hv-bench-search.XXXXXX); fi
port=$((20000 + RANDOM % 20000))
cleanup() {
  [ -n "${hvpid:-}" ] && kill "$hvpid" 2>/dev/null && wait "$hvpid" 2>/dev/null || true
  [ -n "$keep" ] || rm -rf "$work"
}
trap cleanup EXIT
if [ ! -f "$work/data/fhir.db" ]; then
  python3 "$top/bench/fhir-search/gen.py" "$base" > "$work/population.ndjson"
  echo "generated $base resources; importing..." >&2
  "$bin" import --data "$work/data" --batch 5000 "$work/population.ndjson" 2>/dev/null
  rm -f "$work/population.ndjson"
  if [ "$copies" -gt 1 ]; then
    echo "replicating x$copies..." >&2
    python3 "$top/bench/fhir-search/replicate.py" "$work/data/fhir.db" "$copies"
  fi
fi
dbargs=()
if [ "$backend" = pg ]; then
  HOLOVITALS_BIN=$bin "$top/bench/fhir-search/replicate_pg.sh" "$work/data/fhir.db" "$pgurl"
  dbargs=(--db "$pgurl")
elif [ "$analyze" = 1 ]; then
  sqlite3 "$work/data/fhir.db" "ANALYZE"
fi
"$bin" serve --data "$work/data" "${dbargs[@]}" --http "127.0.0.1:$port" --mllp "127.0.0.1:$((port + 1))" \
  --channels "$work/channels" --auth off --log-level warn >/dev/null 2>&1 &
hvpid=$!
for _ in $(seq 600); do
  curl -sf "http://127.0.0.1:$port/health" >/dev/null 2>&1 && break
  sleep 0.2
done
echo "backend: $backend, $(( base * copies )) resources; load average: $(cut -d' ' -f1-3 /proc/loadavg)"
# The ceiling SQL runs on the SQLite file (for PostgreSQL: the same rows, before the copy).
python3 "$top/bench/fhir-search/measure.py" "http://127.0.0.1:$port/fhir" "$work/data/fhir.db" "$repeat" \
  "$([ "$backend" = pg ] && echo 0 || echo "$ceiling")" "$pages"
