#!/usr/bin/env bash
# bench/fhir-store/tx_synthea.sh — REST transactions of a real size (issue 5): POSTs the 13
# Synthea transaction Bundles of ../shared/reference (3,495 creates, 86 to 707 entries each)
# one after another to a fresh `holovitals serve` (validation reject) and prints how many
# were answered 200, the wall time of the 13 requests and the server's CPU (utime + stime,
# all threads) over them. With "cg OUT" the server runs under valgrind --tool=callgrind,
# zeroed before the first POST and dumped after the last (OUT.1; callgrind_annotate
# --inclusive=yes OUT.1 | grep job_bundle gives the storage thread's transactions).
#
#   bench/fhir-store/tx_synthea.sh BIN [cg OUT]
BIN=$1; mode=${2:-}; OUT=${3:-}
ref=${HV_REFERENCE_DIR:-$(cd "$(dirname "$0")/../../.." && pwd)/shared/reference}
w=$(mktemp -d /tmp/hv-bench-txsyn.XXXXXX); p=$((42000 + RANDOM % 3000)); mkdir -p $w/ch
pre=(); [ "$mode" = cg ] && pre=(valgrind --tool=callgrind --callgrind-out-file=$OUT)
HOLOVITALS_FHIR_VALIDATION=reject "${pre[@]}" "$BIN" serve --data $w/data --http 127.0.0.1:$p --mllp 127.0.0.1:$((p+300)) --channels $w/ch --auth off --log-level warn >/dev/null 2>$w/err &
pid=$!
for _ in $(seq 600); do curl -sf http://127.0.0.1:$p/health >/dev/null && break; sleep 0.1; done
kill -0 $pid 2>/dev/null || { echo "serve did not start: $(tail -1 $w/err)"; rm -rf $w; exit 1; }
curl -s -o /dev/null -X POST -H 'Content-Type: application/fhir+json' http://127.0.0.1:$p/fhir/Patient -d '{"resourceType":"Patient"}'
[ "$mode" = cg ] && callgrind_control -z $pid >/dev/null
t0=$(awk '{print $14+$15}' /proc/$pid/stat); s0=$(date +%s.%N)
ok=0
for f in "$ref"/fhir/synthea/*.json; do
  c=$(curl -s -o /dev/null -w '%{http_code}' -X POST -H 'Content-Type: application/fhir+json' --data-binary @"$f" http://127.0.0.1:$p/fhir)
  [ "$c" = 200 ] && ok=$((ok+1))
done
s1=$(date +%s.%N); t1=$(awk '{print $14+$15}' /proc/$pid/stat)
[ "$mode" = cg ] && callgrind_control -d $pid >/dev/null
kill $pid; wait $pid 2>/dev/null
echo "$(basename $BIN) ok=$ok/13 wall_s=$(echo "$s1 - $s0" | bc -l | cut -c1-5) server_cpu_s=$(echo "($t1 - $t0) / $(getconf CLK_TCK)" | bc -l | cut -c1-5)"
rm -rf $w
