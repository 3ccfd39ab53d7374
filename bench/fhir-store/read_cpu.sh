#!/usr/bin/env bash
# bench/fhir-store/read_cpu.sh — read-by-id against nginx by CPU time, which a loaded machine
# distorts far less than req/s (issue 5): nginx (worker_processes 1) serves the resource as a
# static file; each engine binary given serves GET /fhir/Patient/p1 (all modules, the default
# `serve`, so auditing is on, --auth off); wrk -t1 -c64 alternates nginx and the engines for
# ROUNDS rounds of DUR seconds; printed per run: req/s and the server's CPU time per request
# (utime+stime of the nginx worker / the engine, from /proc, in microseconds).
#
#   bench/fhir-store/read_cpu.sh [ROUNDS=3] [DUR=3] [BIN...]   (default BIN: ./holovitals)
#
# A/B: bench/fhir-store/read_cpu.sh 3 3 /path/to/holovitals.old ./holovitals
set -u
rounds=${1:-3}; dur=${2:-3}; shift 2 || shift $#
[ $# -gt 0 ] || set -- "${HOLOVITALS_BIN:-$PWD/holovitals}"
w=$(mktemp -d /tmp/hv-bench-read.XXXXXX); chmod 755 $w; mkdir -p $w/www
ngport=$((31000 + RANDOM % 3000))
user_line=""; [ "$(id -u)" -eq 0 ] && user_line="user root;"
cat > $w/nginx.conf <<CONF
$user_line
worker_processes 1;
pid $w/nginx.pid;
error_log $w/nginx-error.log warn;
events { worker_connections 4096; }
http { access_log off; keepalive_requests 1000000; default_type application/fhir+json;
  server { listen 127.0.0.1:$ngport; root $w/www; } }
CONF
pids=(); ports=(); k=0
for b in "$@"; do p=$((ngport + 10 + k)); mkdir -p $w/e$k/ch
  $b serve --data $w/e$k/data --http 127.0.0.1:$p --mllp 127.0.0.1:$((p+400)) --channels $w/e$k/ch --auth off --log-level warn >/dev/null 2>&1 &
  pids+=($!); ports+=($p); k=$((k+1)); done
for p in "${ports[@]}"; do for _ in $(seq 200); do curl -sf http://127.0.0.1:$p/health >/dev/null && break; sleep 0.05; done
  curl -sf -X PUT -H 'Content-Type: application/fhir+json' http://127.0.0.1:$p/fhir/Patient/p1 -d '{"resourceType":"Patient","id":"p1","identifier":[{"system":"urn:bench","value":"1"}],"name":[{"family":"Bench","given":["Read"]}],"gender":"female","birthDate":"1970-01-01","address":[{"line":["1 Main St"],"city":"Springfield","postalCode":"12345"}]}' >/dev/null; done
curl -s http://127.0.0.1:${ports[0]}/fhir/Patient/p1 > $w/www/patient.json
nginx -c $w/nginx.conf -p $w 2>/dev/null; sleep 0.3; ngpid=$(cat $w/nginx.pid); ngw=$(pgrep -P $ngpid | head -1)
ticks() { awk '{ print $14 + $15 }' /proc/$1/stat; }
hz=$(getconf CLK_TCK)
one() { # name pid url
  local t0 t1 out rps
  t0=$(ticks $2); out=$(wrk -t1 -c64 -d${dur}s $3 2>/dev/null); t1=$(ticks $2)
  rps=$(echo "$out" | awk '/Requests\/sec/{print $2}')
  awk -v n="$1" -v r="$rps" -v t=$((t1 - t0)) -v hz=$hz -v d=$dur 'BEGIN { printf "%-10s %9.0f req/s %7.1f us/req\n", n, r, t * 1e6 / hz / (r * d) }'
}
echo "load $(cut -d' ' -f1 /proc/loadavg)"
for i in $(seq $rounds); do
  one nginx $ngw http://127.0.0.1:$ngport/patient.json
  k=0; for b in "$@"; do one "$(basename $b)" ${pids[$k]} http://127.0.0.1:${ports[$k]}/fhir/Patient/p1; k=$((k+1)); done
done
echo "load $(cut -d' ' -f1 /proc/loadavg)"
kill $(cat $w/nginx.pid) "${pids[@]}"; wait 2>/dev/null; rm -rf $w
