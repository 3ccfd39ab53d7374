#!/usr/bin/env bash
# bench/fhir-store/commit_count.sh — requests per group commit (issue 5): threads_cpu.sh's run
# (`holovitals serve`, validation reject, a fresh data directory, wrk -t1 -c64 for DUR (5) seconds
# with the create or tx(2) body) under `perf stat -e syscalls:sys_enter_fdatasync,...pwrite64
# --per-thread`. Prints req/s; the FHIR WAL's fdatasyncs (the FHIR storage thread's — the
# hv-storage thread with the most pwrite64 — plus the hv-walsync thread's when
# fhir.commit_pipeline is on), requests per such fdatasync and fdatasyncs per request; the busiest
# other store's fdatasyncs (the channels store: the patient.created event rows); the FHIR storage
# thread's pwrite64 (WAL frames) per request; the server's CPU per request. Extra NAME=VALUE
# arguments go into the server's environment. Needs perf and root (or perf_event_paranoid <= 1).
#
#   bench/fhir-store/commit_count.sh BIN create|tx [NAME=VALUE...]
set -u
bin=$1; mode=$2; shift 2
dur=${DUR:-5}
w=$(mktemp -d "${TMPDIR:-/tmp}/hv-bench-commits.XXXXXX")
. "$(dirname "$0")/serve_mode.sh"
serve_mode "$mode" "$@"
cpu0=$(awk '{print $14 + $15}' /proc/$pid/stat)
perf stat -e syscalls:sys_enter_fdatasync,syscalls:sys_enter_pwrite64 --per-thread -x, -o "$w/stat" -p $pid &
sp=$!
sleep 0.2
out=$(wrk -t1 -c64 -d"${dur}s" -s "$w/w.lua" "http://127.0.0.1:$port$path")
kill -INT $sp; wait $sp 2>/dev/null
cpu1=$(awk '{print $14 + $15}' /proc/$pid/stat)
kill $pid; wait $pid 2>/dev/null
n=$(echo "$out" | awk '/requests in/ { print $1 }'); rps=$(echo "$out" | awk '/Requests\/sec/ { print $2 }')
python3 - "$w/stat" "${n:-0}" "${rps:-0}" "$cpu0" "$cpu1" "$(getconf CLK_TCK)" <<'PY'
import collections, sys
f, n, rps, c0, c1, tck = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6])
syncs, writes = collections.Counter(), collections.Counter()
for line in open(f):
    p = line.strip().split(',')
    if len(p) < 4 or not p[1].strip().isdigit():
        continue
    (syncs if 'fdatasync' in p[3] else writes)[p[0]] += int(p[1])
storage = [t for t in writes if t.startswith('hv-storage')]
fhir = max(storage, key=lambda t: writes[t]) if storage else None
walsync = sum(c for t, c in syncs.items() if t.startswith('hv-walsync'))
fhir_syncs = syncs[fhir] + walsync
other = max([c for t, c in syncs.items() if t != fhir and not t.startswith('hv-walsync')] or [0])
print("rps=%s requests=%d fhir_fdatasyncs=%d (walsync %d) req_per_fdatasync=%.1f fdatasyncs_per_req=%.3f "
      "other_store_fdatasyncs=%d pwrite64_per_req=%.1f cpu_us_per_req=%.0f" % (
          rps, n, fhir_syncs, walsync, n / max(fhir_syncs, 1), fhir_syncs / max(n, 1),
          other, writes[fhir] / max(n, 1), (c1 - c0) * 1e6 / tck / max(n, 1)))
PY
rm -rf "$w"
