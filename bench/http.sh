#!/usr/bin/env bash
# bench/http — HTTP throughput of `GET /health` against nginx serving a static file of the
# same size, in the same run, with wrk on loopback. Prints req/s and latency percentiles per
# connection count, each the median of ROUNDS runs, and the ratio to nginx.
#
#   bench/http.sh [DURATION_SECONDS=5] [ROUNDS=3] [CONNECTIONS="16 64 256"]
#
# Both servers run one event-loop thread (nginx: worker_processes 1) with access logs off;
# wrk runs one thread. On this 2-core machine the server gets one core and wrk the other.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
dur=${1:-5}
rounds=${2:-3}
conns=${3:-"16 64 256"}
"$top/scripts/build.sh" release --enable-werror >/dev/null
bin="$top/build/release/holovitals"
work=$(mktemp -d /tmp/hv-bench-http.XXXXXX)
chmod 755 "$work"
hvport=$((20000 + RANDOM % 20000)); ngport=$((hvport + 1))
cleanup() {
  [ -n "${hvpid:-}" ] && kill "$hvpid" 2>/dev/null && wait "$hvpid" 2>/dev/null
  [ -f "$work/nginx.pid" ] && kill "$(cat "$work/nginx.pid")" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT

"$bin" serve --data "$work/data" --http "127.0.0.1:$hvport" --mllp "127.0.0.1:$((hvport + 2))" \
  --log-level warn >/dev/null 2>"$work/hv.log" &
hvpid=$!
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$hvport/health" >/dev/null && break; sleep 0.05; done
size=$(curl -s "http://127.0.0.1:$hvport/health" | wc -c)
mkdir -p "$work/www"
head -c "$size" /dev/zero | tr '\0' 'x' > "$work/www/health"
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
  default_type application/health+json;
  server { listen 127.0.0.1:$ngport; root $work/www; }
}
CONF
nginx -c "$work/nginx.conf" -p "$work" 2>/dev/null
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$ngport/health" >/dev/null && break; sleep 0.05; done

# one wrk run: prints "req/s p50_ms p99_ms"
run() {
  wrk -t1 -c"$2" -d"${dur}s" --latency "$1" 2>/dev/null | awk '
    function ms(v) { if (v ~ /us$/) return v / 1000; if (v ~ /ms$/) return v + 0; if (v ~ /s$/) return v * 1000; return v }
    /^ +50%/ { p50 = ms($2) } /^ +99%/ { p99 = ms($2) } /^Requests\/sec/ { rps = $2 }
    END { printf "%.0f %.3f %.3f\n", rps, p50, p99 }'
}
median() { sort -n | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'; }

echo "GET /health, ${size}-byte body; wrk -t1, ${dur}s per run, median of $rounds runs"
printf '%-6s %14s %9s %9s %14s %9s %9s %7s\n' conns holovitals p50_ms p99_ms nginx p50_ms p99_ms ratio
for c in $conns; do
  : > "$work/hv.$c"; : > "$work/ng.$c"
  for _ in $(seq "$rounds"); do
    run "http://127.0.0.1:$hvport/health" "$c" >> "$work/hv.$c"
    run "http://127.0.0.1:$ngport/health" "$c" >> "$work/ng.$c"
  done
  hr=$(cut -d' ' -f1 "$work/hv.$c" | median); hp50=$(cut -d' ' -f2 "$work/hv.$c" | median); hp99=$(cut -d' ' -f3 "$work/hv.$c" | median)
  nr=$(cut -d' ' -f1 "$work/ng.$c" | median); np50=$(cut -d' ' -f2 "$work/ng.$c" | median); np99=$(cut -d' ' -f3 "$work/ng.$c" | median)
  printf '%-6s %14s %9s %9s %14s %9s %9s %7s\n' "$c" "$hr" "$hp50" "$hp99" "$nr" "$np50" "$np99" \
    "$(awk -v a="$hr" -v b="$nr" 'BEGIN { printf "%.2f", (b > 0 ? a / b : 0) }')"
done
