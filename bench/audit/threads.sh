#!/usr/bin/env bash
# bench/audit/threads.sh — where an audited read's CPU goes, per thread: starts `holovitals
# serve` (the bench/audit module set, with audit when AUDIT=1; audit.synchronous NORMAL),
# drives wrk -t1 -c64 for DURATION s at GET /fhir/Patient/p1, and prints for each thread of
# the engine its CPU time per request (from /proc/PID/task/TID/schedstat, nanosecond
# resolution; microseconds per request), then
# the loop thread's page faults and context switches; each thread's line also gives its user
# and system CPU and its page faults per 1,000 requests. The loop thread bounds req/s; the
# audit storage thread runs beside it.
#
#   AUDIT=0|1 bench/audit/threads.sh [DURATION=3]      (HOLOVITALS_BIN overrides ./holovitals)
set -euo pipefail
bin=${HOLOVITALS_BIN:-${HV_BUILDDIR:-$PWD}/holovitals}
dur=${1:-3}
svc=fhir,fhirpath,fhir-channels,terminology,hl7v2,hl7v2-channels,channels
[ "${AUDIT:-1}" = 1 ] && svc=$svc,audit
w=$(mktemp -d /tmp/hv-bench-threads.XXXXXX)
mkdir -p "$w/ch"
echo '{"audit": {"synchronous": "NORMAL"}}' > "$w/c.json"
p=$((20000 + RANDOM % 10000))
"$bin" serve --data "$w/data" --http "127.0.0.1:$p" --mllp "127.0.0.1:$((p + 100))" --channels "$w/ch" --auth off \
  --log-level warn --services "$svc" --config "$w/c.json" > /dev/null 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null; rm -rf "$w"' EXIT
for _ in $(seq 300); do curl -sf "http://127.0.0.1:$p/health" > /dev/null && break; sleep 0.05; done
curl -sf -X PUT -H 'Content-Type: application/fhir+json' "http://127.0.0.1:$p/fhir/Patient/p1" \
  -d '{"resourceType":"Patient","id":"p1","name":[{"family":"Bench","given":["Audit"]}],"gender":"female","birthDate":"1970-01-01"}' > /dev/null
declare -A t0 u0 s0 m0
for t in /proc/$pid/task/*; do
  t0[$t]=$(awk '{ print $1 }' "$t/schedstat"); u0[$t]=$(awk '{ print $14 }' "$t/stat")
  s0[$t]=$(awk '{ print $15 }' "$t/stat"); m0[$t]=$(awk '{ print $10 + $12 }' "$t/stat")
done
f0=$(awk '{ print $10 + $12 }' "/proc/$pid/task/$pid/stat")
c0=$(awk '/^(non)?voluntary/ { s = s " " $2 } END { print s }' "/proc/$pid/task/$pid/status")
n=$(wrk -t1 -c64 -d"${dur}s" "http://127.0.0.1:$p/fhir/Patient/p1" | awk '/requests in/ { print $1 }')
hz=$(getconf CLK_TCK)
echo "requests $n in ${dur}s (audit ${AUDIT:-1})"
for t in /proc/$pid/task/*; do
  d=$(( $(awk '{ print $1 }' "$t/schedstat") - ${t0[$t]} ))
  du=$(( $(awk '{ print $14 }' "$t/stat") - ${u0[$t]} )); ds=$(( $(awk '{ print $15 }' "$t/stat") - ${s0[$t]} ))
  dm=$(( $(awk '{ print $10 + $12 }' "$t/stat") - ${m0[$t]} ))
  [ "$d" -gt 100000 ] && printf '%-8s %-6s %8.2f us/request (user %.2f sys %.2f) faults/1000 req %.1f\n' "$(basename "$t")" \
    "$([ "$(basename "$t")" = "$pid" ] && echo loop || echo other)" "$(awk -v d="$d" -v n="$n" 'BEGIN { print d / 1e3 / n }')" \
    "$(awk -v d="$du" -v n="$n" -v hz="$hz" 'BEGIN { print d * 1e6 / hz / n }')" \
    "$(awk -v d="$ds" -v n="$n" -v hz="$hz" 'BEGIN { print d * 1e6 / hz / n }')" \
    "$(awk -v d="$dm" -v n="$n" 'BEGIN { print d * 1000 / n }')"
done
f1=$(awk '{ print $10 + $12 }' "/proc/$pid/task/$pid/stat")
c1=$(awk '/^(non)?voluntary/ { s = s " " $2 } END { print s }' "/proc/$pid/task/$pid/status")
echo "loop thread: page faults $((f1 - f0)); context switches (voluntary nonvoluntary) before:$c0 after:$c1"
