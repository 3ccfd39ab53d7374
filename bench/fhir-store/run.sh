#!/usr/bin/env bash
# bench/fhir-store — the FHIR store against its ceilings, in one run (issue 5):
#   import   `holovitals import` of the Synthea bundles, resources/s; ceiling: the same JSON
#            rows inserted into SQLite directly by a minimal C loop (bench/bin/fhir_sqlite_ceiling,
#            WAL, synchronous=FULL, commit every 1000 rows, integer key + (type,id,version) index)
#   read     GET /fhir/Patient/ID with wrk; ceiling: nginx serving the same JSON as a static file
#   create   POST /fhir/Patient (durable: synchronous=FULL, answered after the group commit)
#   tx       POST /fhir with a two-entry transaction (Patient + Observation referencing it)
# each at CONNS connections for DURATION seconds (wrk -t1), with p50/p99 latencies; the engine
# runs with --auth off (this measures the store; bench/auth measures the guard).
#
#   bench/fhir-store/run.sh [DURATION=5] [CONNS=64] [VALIDATION=reject|warn|off]
#
# Run from the build directory after `make` (uses ./holovitals and bench/bin/fhir_sqlite_ceiling;
# HOLOVITALS_BIN overrides). With HV_BENCH_PG_URL=postgresql://… it runs everything again on
# PostgreSQL (the fhir schema there is dropped first).
set -euo pipefail
top=$(cd "$(dirname "$0")/../.." && pwd)
build=${HV_BUILDDIR:-$PWD}
bin=${HOLOVITALS_BIN:-$build/holovitals}
ceiling=$build/bench/bin/fhir_sqlite_ceiling
ref=${HV_REFERENCE_DIR:-$top/../shared/reference}
dur=${1:-5}
conns=${2:-64}
validation=${3:-reject}
work=$(mktemp -d /tmp/hv-bench-fhir.XXXXXX)
chmod 755 "$work"
port=$((20000 + RANDOM % 20000)); ngport=$((port + 1))
cleanup() {
  [ -n "${hvpid:-}" ] && kill "$hvpid" 2>/dev/null && wait "$hvpid" 2>/dev/null || true
  [ -f "$work/nginx.pid" ] && kill "$(cat "$work/nginx.pid")" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

run_wrk() { # url conns [lua] -> "req/s p50_ms p99_ms"
  local script=()
  [ -n "${3:-}" ] && script=(-s "$3")
  wrk -t1 -c"$2" -d"${dur}s" --latency "${script[@]}" "$1" 2>/dev/null | awk '
    function ms(v) { if (v ~ /us$/) return v / 1000; if (v ~ /ms$/) return v + 0; if (v ~ /s$/) return v * 1000; return v }
    /^ +50%/ { p50 = ms($2) } /^ +99%/ { p99 = ms($2) } /^Requests\/sec/ { rps = $2 }
    /Non-2xx/ { bad = $NF }
    END { printf "%.0f %.2f %.2f%s\n", rps, p50, p99, (bad ? " non2xx=" bad : "") }'
}

files=("$ref"/fhir/synthea/*.json)
# The resources as NDJSON, references rewritten as the import does, for the ceiling.
python3 - "${files[@]}" > "$work/resources.ndjson" <<'PY'
import json, sys
for f in sys.argv[1:]:
    b = json.load(open(f, encoding="utf-8"))
    text = json.dumps(b)
    for e in b["entry"]:
        text = text.replace('"%s"' % e["fullUrl"], '"%s/%s"' % (e["resource"]["resourceType"], e["resource"]["id"]))
    for e in json.loads(text)["entry"]:
        print(json.dumps(e["resource"], separators=(",", ":"), ensure_ascii=False))
PY
nres=$(wc -l < "$work/resources.ndjson")
ceil=$("$ceiling" "$work/ceiling.db" < "$work/resources.ndjson")
ceil_rate=$(echo "$ceil" | cut -d' ' -f3)

. "$(dirname "$0")/serve_mode.sh"
bench_body create "$work/create.lua"
bench_body tx "$work/tx.lua"

bench_backend() { # name dbargs...
  local name=$1; shift
  local data="$work/data-$name"
  local out rate pid
  out=$("$bin" import --data "$data" "$@" "${files[@]}" 2>/dev/null)
  rate=$(echo "$out" | sed -n 's/.*(\([0-9]*\) resources\/s).*/\1/p')
  HOLOVITALS_FHIR_VALIDATION=$validation "$bin" serve --data "$data" "$@" --http "127.0.0.1:$port" --mllp "127.0.0.1:$((port + 2))" \
    --channels "$work" --auth off --log-level warn >/dev/null 2>"$work/hv-$name.log" &
  hvpid=$!
  for _ in $(seq 200); do curl -sf "http://127.0.0.1:$port/health" >/dev/null && break; sleep 0.05; done
  pid=$(head -1 "$work/resources.ndjson" | python3 -c 'import json,sys; r=json.load(sys.stdin); print(r["id"])')
  curl -s "http://127.0.0.1:$port/fhir/Patient/$pid" > "$work/www/patient.json"
  read -r rr rp50 rp99 rbad <<<"$(run_wrk "http://127.0.0.1:$port/fhir/Patient/$pid" "$conns")"
  read -r nr np50 np99 nbad <<<"$(run_wrk "http://127.0.0.1:$ngport/patient.json" "$conns")"
  read -r cr cp50 cp99 cbad <<<"$(run_wrk "http://127.0.0.1:$port/fhir/Patient" "$conns" "$work/create.lua")"
  read -r tr tp50 tp99 tbad <<<"$(run_wrk "http://127.0.0.1:$port/fhir" "$conns" "$work/tx.lua")"
  kill "$hvpid"; wait "$hvpid" 2>/dev/null || true; hvpid=
  printf '%-10s import %s resources/s (%.2f of the raw SQLite ceiling %s/s)\n' "$name" "$rate" \
    "$(awk -v a="$rate" -v b="$ceil_rate" 'BEGIN { print (b > 0 ? a / b : 0) }')" "$ceil_rate"
  printf '%-10s read   %s req/s p50 %s ms p99 %s ms %s(%.2f of nginx %s req/s, p99 %s ms)\n' "$name" "$rr" "$rp50" \
    "$rp99" "${rbad:+$rbad }" "$(awk -v a="$rr" -v b="$nr" 'BEGIN { print (b > 0 ? a / b : 0) }')" "$nr" "$np99"
  printf '%-10s create %s req/s p50 %s ms p99 %s ms %s\n' "$name" "$cr" "$cp50" "$cp99" "${cbad:-}"
  printf '%-10s tx(2)  %s req/s p50 %s ms p99 %s ms %s\n' "$name" "$tr" "$tp50" "$tp99" "${tbad:-}"
}

mkdir -p "$work/www"
user_line=""; [ "$(id -u)" -eq 0 ] && user_line="user root;"
cat > "$work/nginx.conf" <<CONF
$user_line
worker_processes 1;
pid $work/nginx.pid;
error_log $work/nginx-error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  keepalive_requests 1000000;
  default_type application/fhir+json;
  server { listen 127.0.0.1:$ngport; root $work/www; }
}
CONF
nginx -c "$work/nginx.conf" -p "$work" 2>/dev/null

echo "FHIR store: ${#files[@]} Synthea bundles ($nres resources); wrk -t1 -c$conns ${dur}s; validation=$validation"
echo "raw SQLite ceiling: $ceil_rate rows/s ($nres rows in $(echo "$ceil" | cut -d' ' -f2) s)"
bench_backend sqlite
if [ -n "${HV_BENCH_PG_URL:-}" ]; then
  psql -q -X "$HV_BENCH_PG_URL" -c "DROP SCHEMA IF EXISTS fhir CASCADE" >/dev/null
  bench_backend postgresql --db "$HV_BENCH_PG_URL"
fi
