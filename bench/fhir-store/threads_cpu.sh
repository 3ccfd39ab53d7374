#!/usr/bin/env bash
# bench/fhir-store/threads_cpu.sh — where a FHIR create's or two-entry transaction's CPU goes,
# per server thread (issue 5): starts `holovitals serve` (validation reject, a fresh data
# directory), drives wrk -t1 -c64 for DUR (5) seconds with bench/fhir-store/run.sh's create or
# tx body, and prints req/s and each thread's CPU (utime + stime from /proc/PID/task/TID/stat)
# over the run, in percent of one core. A thread well below 100% while requests wait is waiting
# for something (a lock, the disk, the other threads): that is what the pipeline leaves idle.
# Threads that used no CPU are left out. Extra NAME=VALUE arguments go into the server's
# environment (e.g. HOLOVITALS_FHIR_COMMIT_PIPELINE=true). cpu_us_per_req is the server's CPU
# (all threads) per answered request. TMPDIR=/dev/shm puts the data directory on tmpfs, where
# fsync costs nothing: the pipeline's CPU side alone, without the shared disk's swings.
#
#   bench/fhir-store/threads_cpu.sh BIN create|tx [NAME=VALUE...]
set -u
bin=$1; mode=$2; shift 2
dur=${DUR:-5}
w=$(mktemp -d "${TMPDIR:-/tmp}/hv-bench-threads.XXXXXX")
. "$(dirname "$0")/serve_mode.sh"
serve_mode "$mode" "$@"
# One line per thread: "name/tid ticks".
snap() { for t in /proc/$pid/task/*; do echo "$(cat "$t/comm")/$(basename "$t") $(awk '{print $14 + $15}' "$t/stat")"; done; }
snap > "$w/a"
out=$(wrk -t1 -c64 -d"${dur}s" -s "$w/w.lua" "http://127.0.0.1:$port$path")
snap > "$w/b"
tck=$(getconf CLK_TCK)
n=$(echo "$out" | awk '/requests in/ { print $1 }'); rps=$(echo "$out" | awk '/Requests\/sec/ { print $2 }')
echo "$mode rps=$rps $(awk -v t="$tck" -v d="$dur" -v n="$n" 'NR == FNR { a[$1] = $2; next }
  { c = ($2 - a[$1]) * 100 / t / d; all += $2 - a[$1]; if (c > 0) printf "%s=%.0f%% ", $1, c }
  END { if (n > 0) printf "cpu_us_per_req=%.0f", all * 1e6 / t / n }' "$w/a" "$w/b")"
kill "$pid"; wait "$pid" 2>/dev/null
rm -rf "$w"
