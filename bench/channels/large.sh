#!/usr/bin/env bash
# bench/channels/large.sh — one large message through a channel: POST /channels/big/in
# (http source) → file-write and, when nginx is installed, http-send to a local nginx that
# discards the body; prints the time until the file is written (and the http-send
# delivered) and the engine's peak RSS (VmHWM) beside the message size.
#
#   bench/channels/large.sh [MEGABYTES=100]
#
# http.max_body is raised to fit (HOLOVITALS_HTTP_MAX_BODY). HOLOVITALS_BIN picks the binary
# (default ./holovitals of the build directory). Never part of make check.
set -euo pipefail
mb=${1:-100}
bin=${HOLOVITALS_BIN:-$(pwd)/holovitals}
[ -x "$bin" ] || { echo "no holovitals binary at $bin (set HOLOVITALS_BIN)"; exit 2; }
work=$(mktemp -d /tmp/hv-bench-large.XXXXXX)
port=$((20000 + RANDOM % 20000))
cleanup() {
  [ -n "${hvpid:-}" ] && kill "$hvpid" 2>/dev/null && wait "$hvpid" 2>/dev/null || true
  [ -f "$work/nginx.pid" ] && kill "$(cat "$work/nginx.pid")" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
mkdir -p "$work/channels"
httpdest=""
if command -v nginx >/dev/null; then
  ngport=$((port + 2))
  user_line=""; [ "$(id -u)" -eq 0 ] && user_line="user root;"
  cat > "$work/nginx.conf" <<CONF
$user_line
worker_processes 1;
pid $work/nginx.pid;
error_log $work/nginx-error.log warn;
events { worker_connections 64; }
http { access_log off; client_max_body_size 0; server { listen 127.0.0.1:$ngport; location / { return 200; } } }
CONF
  nginx -c "$work/nginx.conf" -p "$work" 2>/dev/null && \
    httpdest=", { \"name\": \"h\", \"type\": \"http-send\", \"url\": \"http://127.0.0.1:$ngport/in\", \"timeout_ms\": 600000 }"
fi
cat > "$work/channels/big.json" <<JSON
{ "id": "big", "source": { "type": "http" },
  "destinations": [ { "name": "f", "type": "file-write", "dir": "$work/out", "filename": "big.msg" }$httpdest ] }
JSON
head -c $((mb * 1024 * 1024)) /dev/zero | tr '\0' 'x' > "$work/body"
HOLOVITALS_HTTP_MAX_BODY=$(((mb + 16) * 1024 * 1024)) "$bin" serve --data "$work/data" \
  --http "127.0.0.1:$port" --mllp "127.0.0.1:$((port + 1))" --channels "$work/channels" \
  --auth off --log-level warn >/dev/null 2>"$work/hv.log" &
hvpid=$!
for _ in $(seq 200); do curl -sf "http://127.0.0.1:$port/health" >/dev/null && break; sleep 0.05; done
base=$(awk '/VmRSS/ { print $2 }' /proc/$hvpid/status)
t0=$(date +%s.%N)
code=$(curl -s -o /dev/null -w '%{http_code}' -H 'Content-Type: text/plain' --data-binary @"$work/body" \
  "http://127.0.0.1:$port/channels/big/in")
t1=$(date +%s.%N)
while [ ! -f "$work/out/big.msg" ]; do sleep 0.05; done
t2=$(date +%s.%N)
size=$(stat -c %s "$work/out/big.msg")
echo "message: $mb MiB; POST answered $code in $(python3 -c "print(round($t1 - $t0, 2))") s; written ($size bytes) $(python3 -c "print(round($t2 - $t0, 2))") s after the POST began"
if [ -n "$httpdest" ]; then
  sent() { curl -s "http://127.0.0.1:$port/channels/big" | python3 -c "import json,sys; print([d['statistics']['sent'] for d in json.load(sys.stdin)['destinations'] if d['name'] == 'h'][0])"; }
  for _ in $(seq 6000); do [ "$(sent)" = "1" ] && break; sleep 0.1; done
  echo "http-send delivered: $(sent) message, $(python3 -c "print(round($(date +%s.%N) - $t0, 2))") s after the POST began"
fi
echo "engine RSS before: $((base / 1024)) MiB; peak (VmHWM): $(awk '/VmHWM/ { print int($2 / 1024) }' /proc/$hvpid/status) MiB; after: $(awk '/VmRSS/ { print int($2 / 1024) }' /proc/$hvpid/status) MiB"
