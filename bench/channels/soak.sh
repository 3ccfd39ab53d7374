#!/usr/bin/env bash
# bench/channels/soak.sh — memory over a long run with a destination down: the lab-fanout
# channel (http source, two http-send destinations), destination "a" a local nginx answering
# 200, destination "b" a closed port (its queue grows on disk). wrk posts 2,000-byte bodies
# for the whole run; every INTERVAL seconds the engine's RSS, the queue of "b" and the size
# of the channel store are printed. Memory must stay flat: the backlog lives on disk.
#
#   bench/channels/soak.sh [SECONDS=600] [INTERVAL=30] [CONNECTIONS=4]
#
# HOLOVITALS_BIN picks the binary (default ./holovitals). Not part of make check (10 minutes).
set -euo pipefail
dur=${1:-600}
step=${2:-30}
conns=${3:-4}
bin=${HOLOVITALS_BIN:-$(pwd)/holovitals}
[ -x "$bin" ] || { echo "no holovitals binary at $bin (set HOLOVITALS_BIN)"; exit 2; }
work=$(mktemp -d /tmp/hv-bench-soak.XXXXXX)
chmod 755 "$work"
hvport=$((20000 + RANDOM % 20000)); ngport=$((hvport + 1)); downport=$((hvport + 2))
cleanup() {
  [ -n "${wrkpid:-}" ] && kill "$wrkpid" 2>/dev/null || true
  [ -n "${hvpid:-}" ] && kill "$hvpid" 2>/dev/null && wait "$hvpid" 2>/dev/null || true
  [ -f "$work/nginx.pid" ] && kill "$(cat "$work/nginx.pid")" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
user_line=""; [ "$(id -u)" -eq 0 ] && user_line="user root;"
cat > "$work/nginx.conf" <<CONF
$user_line
worker_processes 1;
pid $work/nginx.pid;
error_log $work/nginx-error.log warn;
events { worker_connections 1024; }
http { access_log off; client_body_buffer_size 64k;
  server { listen 127.0.0.1:$ngport; location / { return 200; } } }
CONF
nginx -c "$work/nginx.conf" -p "$work" 2>/dev/null
mkdir -p "$work/channels"
cat > "$work/channels/lab-fanout.json" <<JSON
{ "id": "lab-fanout", "source": { "type": "http" },
  "destinations": [
    { "name": "a", "type": "http-send", "url": "http://127.0.0.1:$ngport/in" },
    { "name": "b", "type": "http-send", "url": "http://127.0.0.1:$downport/in",
      "queue": { "retry_interval_ms": 500, "max_attempts": 1000 } } ] }
JSON
"$bin" serve --data "$work/data" --http "127.0.0.1:$hvport" --mllp "127.0.0.1:$((hvport + 3))" \
  --channels "$work/channels" --auth off --log-level warn >/dev/null 2>"$work/hv.log" &
hvpid=$!
for _ in $(seq 200); do curl -sf "http://127.0.0.1:$hvport/health" >/dev/null && break; sleep 0.05; done
body=$(head -c 2000 /dev/zero | tr '\0' 'x')
printf 'wrk.method = "POST"\nwrk.body = "%s"\nwrk.headers["Content-Type"] = "text/plain"\n' "$body" > "$work/post.lua"
wrk -t1 -c"$conns" -d"${dur}s" -s "$work/post.lua" "http://127.0.0.1:$hvport/channels/lab-fanout/in" >"$work/wrk.log" 2>&1 &
wrkpid=$!
queued() { curl -s "http://127.0.0.1:$hvport/channels/lab-fanout" | python3 -c "import json,sys; d=json.load(sys.stdin); print(' '.join('%s=%s' % (x['name'], x['statistics']['queued']) for x in d['destinations']))"; }
echo "soak: ${dur}s, wrk -c$conns, 2,000-byte bodies, destination b down"
echo "seconds  rss_MiB  queued            store_MiB"
t=0
while [ "$t" -lt "$dur" ]; do
  sleep "$step"; t=$((t + step))
  printf '%7d  %7d  %-16s  %9d\n' "$t" "$(awk '/VmRSS/ { print int($2 / 1024) }' /proc/$hvpid/status)" \
    "$(queued)" "$(du -sm "$work/data" | cut -f1)"
done
wait "$wrkpid" || true
grep -E "Requests/sec" "$work/wrk.log" || true
echo "peak RSS (VmHWM): $(awk '/VmHWM/ { print int($2 / 1024) }' /proc/$hvpid/status) MiB"
