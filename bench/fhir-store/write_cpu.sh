#!/usr/bin/env bash
# bench/fhir-store/write_cpu.sh — server CPU per FHIR create or two-entry transaction (issue 5):
# starts `holovitals serve` (validation reject, a fresh data directory), drives wrk -t1 -c64 for
# 3 s with bench/fhir-store/run.sh's create or tx body, and prints the answered requests, req/s
# and the utime + stime of all the server's threads (/proc/PID/stat) per request. Under load the
# CPU a request costs moves less than its throughput: alternate two binaries and quote medians.
#
#   bench/fhir-store/write_cpu.sh BIN [create|tx]
BIN=$1; mode=${2:-create}
w=$(mktemp -d /tmp/hv-bench-wcpu.XXXXXX); p=$((30000 + RANDOM % 5000)); mkdir -p $w/ch
. "$(dirname "$0")/write_body.sh"
cat > $w/w.lua <<LUA
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/fhir+json"
$prefer
wrk.body = '$body'
LUA
HOLOVITALS_FHIR_VALIDATION=reject "$BIN" serve --data $w/data --http 127.0.0.1:$p --mllp 127.0.0.1:$((p+300)) --channels $w/ch --auth off --log-level warn >/dev/null 2>&1 &
pid=$!
for _ in $(seq 300); do curl -sf http://127.0.0.1:$p/health >/dev/null && break; sleep 0.1; done
t0=$(awk '{print $14+$15}' /proc/$pid/stat)
out=$(wrk -t1 -c64 -d3s -s $w/w.lua http://127.0.0.1:$p$path 2>&1)
t1=$(awk '{print $14+$15}' /proc/$pid/stat)
n=$(echo "$out" | awk '/requests in/{print $1}'); rps=$(echo "$out" | awk '/Requests\/sec/{print $2}')
tck=$(getconf CLK_TCK)
kill $pid; wait $pid 2>/dev/null
echo "$mode $(basename $(dirname $BIN))/$(basename $BIN) req $n rps $rps cpu_us_per_req $(( (t1 - t0) * 1000000 / tck / n ))"
rm -rf $w
