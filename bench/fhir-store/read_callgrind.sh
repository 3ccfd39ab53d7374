#!/usr/bin/env bash
# bench/fhir-store/read_callgrind.sh — instructions per FHIR read (issues 5 and 11), which the
# machine's load does not change: runs `holovitals serve` under valgrind --tool=callgrind,
# puts Patient/p1, zeroes the counters, drives wrk -t1 -c64 for 4 s at GET /fhir/Patient/p1,
# dumps, and prints requests, instructions (all threads: loop, storage threads) and
# instructions per request. OUT.1 is the profile (callgrind_annotate --inclusive=yes OUT.1).
#
#   bench/fhir-store/read_callgrind.sh BIN OUT [SERVICES] [CONFIG_JSON]
#
# e.g. audit off / on:
#   bench/fhir-store/read_callgrind.sh ./holovitals /tmp/cg.off
#   bench/fhir-store/read_callgrind.sh ./holovitals /tmp/cg.on \
#     fhir,fhirpath,fhir-channels,terminology,hl7v2,hl7v2-channels,channels,audit '{"audit":{"synchronous":"NORMAL"}}'
set -u
BIN=$1; OUT=$2; svc=${3:-fhir,fhirpath,fhir-channels,terminology,hl7v2,hl7v2-channels,channels}; conf=${4:-'{}'}
w=$(mktemp -d /tmp/hv-bench-cg.XXXXXX); p=$((36000 + RANDOM % 3000)); mkdir -p $w/ch; echo "$conf" > $w/c.json
valgrind --tool=callgrind --callgrind-out-file=$OUT "$BIN" serve --data $w/data --http 127.0.0.1:$p --mllp 127.0.0.1:$((p+300)) --channels $w/ch --auth off --log-level warn --services $svc --config $w/c.json >/dev/null 2>$w/vg.log &
pid=$!
for _ in $(seq 600); do curl -sf http://127.0.0.1:$p/health >/dev/null && break; sleep 0.1; done
curl -sf -X PUT -H 'Content-Type: application/fhir+json' http://127.0.0.1:$p/fhir/Patient/p1 -d '{"resourceType":"Patient","id":"p1","name":[{"family":"Bench","given":["Audit"]}],"gender":"female","birthDate":"1970-01-01"}' >/dev/null
curl -s http://127.0.0.1:$p/fhir/Patient/p1 >/dev/null
callgrind_control -z $pid >/dev/null
wrk -t1 -c64 -d4s http://127.0.0.1:$p/fhir/Patient/p1 > $w/wrk.txt 2>&1
callgrind_control -d $pid >/dev/null
n=$(awk '/requests in/{print $1}' $w/wrk.txt)
kill $pid; wait $pid 2>/dev/null
f=$OUT.1
ir=$(callgrind_annotate $f 2>/dev/null | awk '/PROGRAM TOTALS/{gsub(",","",$1); print $1}')
echo "requests $n Ir $ir Ir/req $(( ir / n )) file $f"
rm -rf $w
