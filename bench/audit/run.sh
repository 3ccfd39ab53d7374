#!/usr/bin/env bash
# bench/audit — what auditing costs (issue 11), in one run:
#   read     GET /fhir/Patient/ID with wrk (one thread, CONNS connections, DURATION s), on an
#            engine with the audit module (every read recorded; audit.synchronous=MODE: NORMAL,
#            the default, answers once the record is in the crash-safe journal; FULL once its
#            batch has committed to disk) and on one with the same modules but audit,
#            alternating off/on/off/on so that both see the same machine load; besides req/s,
#            the engine's CPU time per request (utime+stime from /proc, microseconds), which
#            the other processes on the machine do not distort
#   verify   `holovitals audit verify` over the trail the runs left, records/s
#
#   bench/audit/run.sh [DURATION=3] [CONNS=64] [MODE=NORMAL]
#
# Run from the build directory after `make` (HOLOVITALS_BIN overrides ./holovitals).
set -euo pipefail
build=${HV_BUILDDIR:-$PWD}
bin=${HOLOVITALS_BIN:-$build/holovitals}
dur=${1:-3}
conns=${2:-64}
mode=${3:-NORMAL}
work=$(mktemp -d /tmp/hv-bench-audit.XXXXXX)
pon=$((20000 + RANDOM % 10000)); poff=$((pon + 1))
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null && wait "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

run_wrk() { # url -> "req/s p50_ms p99_ms"
  wrk -t1 -c"$conns" -d"${dur}s" --latency "$1" 2>/dev/null | awk '
    function ms(v) { if (v ~ /us$/) return v / 1000; if (v ~ /ms$/) return v + 0; if (v ~ /s$/) return v * 1000; return v }
    /^ +50%/ { p50 = ms($2) } /^ +99%/ { p99 = ms($2) } /^Requests\/sec/ { rps = $2 }
    /Non-2xx/ { bad = $NF }
    END { printf "%.0f %.2f %.2f%s\n", rps, p50, p99, (bad ? " non2xx=" bad : "") }'
}

start() { # name port services...
  local name=$1 port=$2; shift 2
  mkdir -p "$work/$name/channels"
  "$bin" serve --data "$work/$name/data" --http "127.0.0.1:$port" --mllp "127.0.0.1:$((port + 100))" \
    --channels "$work/$name/channels" --auth off --log-level warn "$@" 2> "$work/$name.log" &
  pids+=($!)
  for _ in $(seq 100); do curl -sf "http://127.0.0.1:$port/health" > /dev/null && break; sleep 0.05; done
  curl -sf -X PUT -H 'Content-Type: application/fhir+json' "http://127.0.0.1:$port/fhir/Patient/p1" \
    -d '{"resourceType":"Patient","id":"p1","name":[{"family":"Bench","given":["Audit"]}],"gender":"female","birthDate":"1970-01-01"}' > /dev/null
}

services=fhir,fhirpath,fhir-channels,terminology,hl7v2,hl7v2-channels,channels
printf '{"audit": {"synchronous": "%s"}}\n' "$mode" > "$work/on.json"
start on "$pon" --services "$services,audit" --config "$work/on.json"
start off "$poff" --services "$services"
echo "load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
printf '%-6s %-4s %10s %8s %8s %12s\n' run audit 'req/s' 'p50 ms' 'p99 ms' 'CPU us/req'
declare -A sum=([on]=0 [off]=0) cpu=([on]=0 [off]=0) reqs=([on]=0 [off]=0)
hz=$(getconf CLK_TCK)
for i in 1 2; do
  for m in off on; do
    port=$([ "$m" = on ] && echo "$pon" || echo "$poff")
    pid=$([ "$m" = on ] && echo "${pids[0]}" || echo "${pids[1]}")
    t0=$(cpu_ticks "$pid")
    read -r rps p50 p99 rest < <(run_wrk "http://127.0.0.1:$port/fhir/Patient/p1")
    t1=$(cpu_ticks "$pid")
    n=$(awk -v r="$rps" -v d="$dur" 'BEGIN { printf "%d", r * d }')
    us=$(awk -v t=$((t1 - t0)) -v hz="$hz" -v n="$n" 'BEGIN { printf "%.1f", n ? t * 1e6 / hz / n : 0 }')
    printf '%-6s %-4s %10s %8s %8s %12s %s\n' "$i" "$m" "$rps" "$p50" "$p99" "$us" "${rest:-}"
    sum[$m]=$((sum[$m] + rps))
    cpu[$m]=$((cpu[$m] + t1 - t0))
    reqs[$m]=$((reqs[$m] + n))
  done
done
awk -v on="${sum[on]}" -v off="${sum[off]}" 'BEGIN { printf "auditing on / off: %.2f (cost %.0f%%)\n", on / off, 100 * (1 - on / off) }'
awk -v con="${cpu[on]}" -v coff="${cpu[off]}" -v non="${reqs[on]}" -v noff="${reqs[off]}" -v hz="$hz" \
  'BEGIN { a = con * 1e6 / hz / non; b = coff * 1e6 / hz / noff;
           printf "CPU per request: on %.1f us, off %.1f us: off / on %.2f\n", a, b, b / a }'
kill "${pids[0]}"; wait "${pids[0]}" 2>/dev/null || true
pids=("${pids[@]:1}")
t0=$(date +%s.%N)
out=$("$bin" audit verify --data "$work/on/data")
t1=$(date +%s.%N)
n=$(echo "$out" | sed -n 's/^ok: audit trail: \([0-9]*\) records.*/\1/p')
echo "$out"
awk -v n="$n" -v a="$t0" -v b="$t1" 'BEGIN { printf "chain verification: %d records in %.2f s = %.0f records/s\n", n, b - a, n / (b - a) }'
echo "load average at end: $(cut -d' ' -f1-3 /proc/loadavg)"
