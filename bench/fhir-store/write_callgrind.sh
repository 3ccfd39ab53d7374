#!/usr/bin/env bash
# bench/fhir-store/write_callgrind.sh — instructions per FHIR create or two-entry transaction
# (issue 5), which the machine's load does not change: runs `holovitals serve` under
# valgrind --tool=callgrind (the default module set, validation reject, synchronous FULL),
# warms up with a few writes, zeroes the counters, drives wrk -t1 -c64 for 4 s with
# bench/fhir-store/run.sh's create or tx body, dumps, and prints requests, instructions
# (all threads) and instructions per request. OUT.1 is the profile
# (callgrind_annotate --inclusive=yes OUT.1).
#
#   DUR=4 bench/fhir-store/write_callgrind.sh BIN OUT [create|tx|txobs]   (DUR: seconds of wrk)
# REQS=N stops wrk after N answers (DUR then only bounds it): two binaries compared at the
# same N write into B-trees of the same size and see the same batch sizes, so their
# per-request instructions compare; a fixed DUR gives each a different count under load.
set -u
BIN=$1; OUT=$2; mode=${3:-create}; dur=${DUR:-4}; reqs=${REQS:-0}
w=$(mktemp -d /tmp/hv-bench-cgw.XXXXXX); p=$((36000 + RANDOM % 3000)); mkdir -p $w/ch
. "$(dirname "$0")/write_body.sh"
cat > $w/w.lua <<LUA
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/fhir+json"
$prefer
wrk.body = '$body'
local n = 0
function response(status, headers, body)
  n = n + 1
  if $reqs > 0 and n >= $reqs then wrk.thread:stop() end
end
LUA
valgrind --tool=callgrind --callgrind-out-file=$OUT "$BIN" serve --data $w/data --http 127.0.0.1:$p --mllp 127.0.0.1:$((p+300)) --channels $w/ch --auth off --log-level warn >/dev/null 2>$w/vg.log &
pid=$!
for _ in $(seq 600); do curl -sf http://127.0.0.1:$p/health >/dev/null && break; sleep 0.1; done
for _ in 1 2 3; do curl -s -X POST -H 'Content-Type: application/fhir+json' http://127.0.0.1:$p$path -d "$body" >/dev/null; done
callgrind_control -z $pid >/dev/null
wrk -t1 -c64 -d${dur}s -s $w/w.lua http://127.0.0.1:$p$path > $w/wrk.txt 2>&1
callgrind_control -d $pid >/dev/null
n=$(awk '/requests in/{print $1}' $w/wrk.txt)
bad=$(awk '/Non-2xx/{print $NF}' $w/wrk.txt)
kill $pid; wait $pid 2>/dev/null
f=$OUT.1
ir=$(callgrind_annotate $f 2>/dev/null | awk '/PROGRAM TOTALS/{gsub(",","",$1); print $1}')
echo "$mode requests $n${bad:+ non2xx $bad} Ir $ir Ir/req $(( ir / n )) file $f"
rm -rf $w
