#!/usr/bin/env bash
# bench/channels — messages per second through a channel with a filter, a step and two
# destinations (file-write and http-send to a local nginx sink), queues on disk, beside the
# raw rate of the channel message store (same source, no filter, no step, no destination)
# in the same run, and the HL7 v2 inbound store over MLLP when bench/bin/mllp is built.
#
#   bench/channels/run.sh [SECONDS=5] [CONNECTIONS=32]
#
# HOLOVITALS_BIN picks the binary (default ./holovitals of the build directory). Load comes
# from wrk (POST, one thread). "accepted" is the rate at which POST /channels/ID/in answered
# 201 (stored, fsync'd: synchronous FULL); "delivered" is messages that reached both
# destinations divided by the time from the first POST until both queues were empty.
# Prints also the engine's peak RSS. Never part of make check.
#
# FILE_MODE=append: file-write appends every message to one file ("mode": "append") instead
# of one file per message (the default). OUT_DIR=DIR: file-write's output goes under DIR
# (e.g. /dev/shm, to take the file system's inode allocation out of the figure) instead of
# the work directory under /tmp. WINDOW=N: http-send's "window" (default: the engine's).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
dur=${1:-5}
conns=${2:-32}
bin=${HOLOVITALS_BIN:-$(pwd)/holovitals}
[ -x "$bin" ] || { echo "no holovitals binary at $bin (set HOLOVITALS_BIN)"; exit 2; }
work=$(mktemp -d /tmp/hv-bench-channels.XXXXXX)
chmod 755 "$work"
hvport=$((20000 + RANDOM % 20000)); ngport=$((hvport + 1)); mport=$((hvport + 2))
cleanup() {
  [ -n "${hvpid:-}" ] && kill "$hvpid" 2>/dev/null && wait "$hvpid" 2>/dev/null || true
  [ -f "$work/nginx.pid" ] && kill "$(cat "$work/nginx.pid")" 2>/dev/null || true
  rm -rf "$work"
  [ -n "${OUT_DIR:-}" ] && [ -n "${outdir:-}" ] && rm -rf "$outdir"
  true
}
trap cleanup EXIT

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
  client_body_buffer_size 64k;
  server { listen 127.0.0.1:$ngport; location / { return 200; } }
}
CONF
nginx -c "$work/nginx.conf" -p "$work" 2>/dev/null

mkdir -p "$work/channels"
outdir=$work
if [ -n "${OUT_DIR:-}" ]; then outdir=$(mktemp -d "$OUT_DIR/hv-bench-out.XXXXXX"); fi
fw_extra=""; [ "${FILE_MODE:-}" = append ] && fw_extra=', "mode": "append"'
hs_extra=""; [ -n "${WINDOW:-}" ] && hs_extra=", \"window\": $WINDOW"
cat > "$work/channels/store-only.json" <<JSON
{ "id": "store-only", "source": { "type": "http" } }
JSON
cat > "$work/channels/bench.json" <<JSON
{
  "id": "bench",
  "source": { "type": "http" },
  "filter": { "metadata": "content_type", "equals": "application/json" },
  "steps": [ { "type": "set", "pointer": "/meta/source", "value": "bench" } ],
  "destinations": [
    { "name": "file", "type": "file-write", "dir": "$outdir/out", "fsync": false$fw_extra },
    { "name": "http", "type": "http-send", "url": "http://127.0.0.1:$ngport/in"$hs_extra }
  ]
}
JSON
"$bin" serve --data "$work/data" --http "127.0.0.1:$hvport" --mllp "127.0.0.1:$mport" \
  --channels "$work/channels" --auth off --log-level warn >/dev/null 2>"$work/hv.log" &
hvpid=$!
for _ in $(seq 200); do curl -sf "http://127.0.0.1:$hvport/health" >/dev/null && break; sleep 0.05; done

body='{"resourceType":"Observation","status":"final","code":{"coding":[{"system":"http://loinc.org","code":"2345-7"}]},"valueQuantity":{"value":95,"unit":"mg/dL"}}'
cat > "$work/post.lua" <<LUA
wrk.method = "POST"
wrk.body = '$body'
wrk.headers["Content-Type"] = "application/json"
LUA

rps() { awk '/^Requests\/sec/ { printf "%.0f", $2 }'; }
# CPU seconds of the engine so far (all threads: utime + stime of /proc/PID/stat).
cpu() { awk -v hz="$(getconf CLK_TCK)" '{ sub(/^.*\) /, ""); printf "%.3f", ($12 + $13) / hz }' "/proc/$hvpid/stat"; }
# CPU seconds of each thread so far, one "tid comm seconds" line each (per-thread figures).
threads() {
  local hz t; hz=$(getconf CLK_TCK)
  for t in /proc/$hvpid/task/*; do
    awk -v hz="$hz" -v tid="${t##*/}" -v comm="$(cat "$t/comm" 2>/dev/null)" \
      '{ sub(/^.*\) /, ""); printf "%s %s %.3f\n", tid, comm, ($12 + $13) / hz }' "$t/stat" 2>/dev/null
  done
}
# µs per message by thread between two threads() snapshots: the loop thread (the main one),
# the storage threads (named hv-storage by binaries since s8), their WAL sync threads
# (hv-walsync) and the rest (the libuv pool: file-write's files; older binaries: all).
per_thread() { # before-file after-file messages
  python3 - "$1" "$2" "$3" "$hvpid" <<'PY'
import sys
def load(p):
    d = {}
    for line in open(p):
        tid, comm, sec = line.split()
        d[tid] = (comm, float(sec))
    return d
a, b, n, pid = load(sys.argv[1]), load(sys.argv[2]), max(int(sys.argv[3]), 1), sys.argv[4]
groups = {}
for tid, (comm, sec) in b.items():
    g = "loop" if tid == pid else comm if comm in ("hv-storage", "hv-walsync") else "other"
    groups[g] = groups.get(g, 0.0) + sec - a.get(tid, (comm, 0.0))[1]
print(", ".join("%s %.0f" % (g, groups.get(g, 0.0) * 1e6 / n) for g in ("loop", "hv-storage", "hv-walsync", "other")))
PY
}
stat() { # channel field (received|sent|queued) from GET /channels/ID
  curl -s "http://127.0.0.1:$hvport/channels/$1" | python3 -c "import json,sys; print(json.load(sys.stdin)['statistics']['$2'])"
}

echo "channels benchmark: ${dur}s per run, wrk -t1 -c$conns, ${#body}-byte JSON body, synchronous FULL"
c0=$(cpu); threads > "$work/t0"
raw=$(wrk -t1 -c"$conns" -d"${dur}s" -s "$work/post.lua" "http://127.0.0.1:$hvport/channels/store-only/in" 2>/dev/null | rps)
sleep 1 # the deferred full-text indexing of the burst
c1=$(cpu); threads > "$work/t1"
rawn=$(stat store-only received)
echo "raw channel store (http source, no filter/step/destination): $raw msg/s accepted"

t0=$(date +%s.%N)
acc=$(wrk -t1 -c"$conns" -d"${dur}s" -s "$work/post.lua" "http://127.0.0.1:$hvport/channels/bench/in" 2>/dev/null | rps)
received=$(stat bench received)
while [ "$(stat bench queued)" != "0" ]; do sleep 0.05; done
t1=$(date +%s.%N)
sent=$(stat bench sent)
sleep 1
c2=$(cpu); threads > "$work/t2"
deliv=$(python3 -c "print(round($sent / ($t1 - $t0)))")
echo "bench channel (filter + set step + file-write + http-send): $acc msg/s accepted; $sent of $received delivered to both destinations in $(python3 -c "print(round($t1 - $t0, 2))") s = $deliv msg/s end to end"
echo "ratio accepted / raw store: $(python3 -c "print(round($acc / max($raw, 1), 2))"); delivered / raw store: $(python3 -c "print(round($deliv / max($raw, 1), 2))")"
# On a loaded machine the engine gets a share of the CPU, and the rates follow its CPU cost
# per message: this ratio is the one that survives the load (raw store vs the bench channel's
# intake plus delivery to both destinations, whole process, same run).
python3 -c "r = ($c1 - $c0) * 1e6 / max($rawn, 1); b = ($c2 - $c1) * 1e6 / max($sent, 1); print('engine CPU per message: raw store %.0f us, bench channel (stored + delivered to both) %.0f us; CPU ratio raw / bench: %.2f' % (r, b, r / b))"
echo "  µs per message by thread, raw store: $(per_thread "$work/t0" "$work/t1" "$rawn")"
echo "  µs per message by thread, bench channel: $(per_thread "$work/t1" "$work/t2" "$sent")"

# HL7 v2 over MLLP, same run: the hl7v2-inbound store (raw, the HL7 v2 benchmark's figure) and
# a channel with an mllp source, an HL7 v2 filter and the same two destinations.
mbin="$(pwd)/bench/bin/mllp"
if [ -x "$mbin" ]; then
  mkdir -p "$work/msgs"
  for i in 1 2 3 4 5; do
    printf 'MSH|^~\\&|LAB|FAC|HV|HV|20240101120000||ORU^R01^ORU_R01|M%s|P|2.5.1\rPID|1||%s^^^MRN^MR||DOE^JANE||19800101|F\rOBR|1||%s|2345-7^Glucose^LN\rOBX|1|NM|2345-7^Glucose^LN||95|mg/dL|70-99|N|||F\r' "$i" "$i" "$i" > "$work/msgs/$i.hl7"
  done
  cport=$((hvport + 3))
  cat > "$work/channels/v2bench.json" <<JSON
{
  "id": "v2bench",
  "source": { "type": "mllp", "listen": "127.0.0.1:$cport" },
  "filter": { "path": "MSH-9.1", "in": ["ORU", "ADT"] },
  "destinations": [
    { "name": "file", "type": "file-write", "dir": "$outdir/out2", "fsync": false$fw_extra },
    { "name": "http", "type": "http-send", "url": "http://127.0.0.1:$ngport/in"$hs_extra }
  ]
}
JSON
  curl -s -X POST "http://127.0.0.1:$hvport/channels/v2bench/deploy" >/dev/null
  echo "MLLP, bench/bin/mllp --connections $conns --messages 300 --window 8 (ORU^R01, ~200 bytes):"
  echo -n "  hl7v2-inbound store (raw): "; "$mbin" --port "$mport" --connections "$conns" --messages 300 --window 8 "$work/msgs" | grep -i "msgs/s\|messages/s" | head -1
  echo -n "  channel v2bench (mllp source, filter, 2 destinations): "; "$mbin" --port "$cport" --connections "$conns" --messages 300 --window 8 "$work/msgs" | grep -i "msgs/s\|messages/s" | head -1
  t0=$(date +%s.%N)
  while [ "$(stat v2bench queued)" != "0" ]; do sleep 0.05; done
  echo "  v2bench queues drained $(python3 -c "print(round($(date +%s.%N) - $t0, 2))") s after the load ended; sent to both: $(stat v2bench sent)"
fi
curl -s "http://127.0.0.1:$hvport/channels/bench" | python3 -c "import json,sys; d=json.load(sys.stdin); print(\"destinations:\", [(x[\"name\"], x[\"statistics\"]) for x in d[\"destinations\"]])"
echo "peak RSS of the engine: $(awk '/VmHWM/ { print $2, $3 }' /proc/$hvpid/status)"
