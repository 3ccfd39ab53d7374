#!/usr/bin/env bash
# bench/channels/deploy.sh — how long N channel files take to deploy: at start (process
# start until /health answers and GET /channels lists all N) and on a reload where every
# file changed (SIGHUP until the "channel.reloaded" log line). Each channel has an http
# source, a metadata filter, a set step and two destinations (file-write, http-send).
#
#   bench/channels/deploy.sh [N=1000]
#
# HOLOVITALS_BIN picks the binary (default ./holovitals). Never part of make check.
set -euo pipefail
n=${1:-1000}
bin=${HOLOVITALS_BIN:-$(pwd)/holovitals}
[ -x "$bin" ] || { echo "no holovitals binary at $bin (set HOLOVITALS_BIN)"; exit 2; }
work=$(mktemp -d /tmp/hv-bench-deploy.XXXXXX)
port=$((20000 + RANDOM % 20000))
cleanup() {
  [ -n "${hvpid:-}" ] && kill "$hvpid" 2>/dev/null && wait "$hvpid" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
mkdir -p "$work/channels"
write_all() { # $1: a name suffix, so that every file changes
  for i in $(seq -w 1 "$n"); do
    cat > "$work/channels/c$i.json" <<JSON
{ "id": "c$i", "name": "channel $i $1", "source": { "type": "http" },
  "filter": { "metadata": "content_type", "equals": "application/json" },
  "steps": [ { "type": "set", "pointer": "/meta/channel", "value": "c$i" } ],
  "destinations": [
    { "name": "f", "type": "file-write", "dir": "$work/out/c$i", "fsync": false },
    { "name": "h", "type": "http-send", "url": "http://127.0.0.1:9/in" } ] }
JSON
  done
}
write_all v1
count() { curl -s "http://127.0.0.1:$port/channels" | python3 -c "import json,sys; print(len(json.load(sys.stdin)['channels']))"; }
t0=$(date +%s.%N)
"$bin" serve --data "$work/data" --http "127.0.0.1:$port" --mllp "127.0.0.1:$((port + 1))" \
  --channels "$work/channels" --auth off --log-level info >/dev/null 2>"$work/hv.log" &
hvpid=$!
until curl -sf "http://127.0.0.1:$port/health" >/dev/null; do sleep 0.02; done
t1=$(date +%s.%N)
got=$(count)
echo "$n channels: healthy $(python3 -c "print(round($t1 - $t0, 2))") s after the process started; GET /channels lists $got"
write_all v2
before=$(grep -c '"channel.reloaded"' "$work/hv.log" || true)
t2=$(date +%s.%N)
kill -HUP "$hvpid"
while [ "$(grep -c '"channel.reloaded"' "$work/hv.log" || true)" -le "$before" ]; do sleep 0.02; done
t3=$(date +%s.%N)
echo "reload with all $n files changed: $(python3 -c "print(round($t3 - $t2, 2))") s (SIGHUP to channel.reloaded); $(grep '"channel.reloaded"' "$work/hv.log" | tail -1 | python3 -c "import json,sys; print(json.load(sys.stdin).get('msg'))")"
echo "engine RSS with $n channels: $(awk '/VmRSS/ { print int($2 / 1024) }' /proc/$hvpid/status) MiB"
