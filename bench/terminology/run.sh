#!/bin/sh
# run.sh — UCUM conversions/s: HoloVitals and @lhncbc/ucum-lhc on the same conversions,
# in the same run. ucum-lhc is installed at run time into a bench-local directory of
# the build tree (never committed). Run from the build directory after `make`:
#   bench/terminology/run.sh        (HV_REFERENCE_DIR or HV_SRCDIR locate the test cases)
set -eu
here=$(cd "$(dirname "$0")" && pwd)
build=${HV_BUILDDIR:-$(pwd)}
export HV_SRCDIR="${HV_SRCDIR:-$(cd "$here/../.." && pwd)}"
npmdir="$build/bench/terminology/npm"
version=7.1.10
if [ ! -d "$npmdir/node_modules/@lhncbc/ucum-lhc" ]; then
  mkdir -p "$npmdir"
  npm install --silent --no-audit --no-fund --prefix "$npmdir" "@lhncbc/ucum-lhc@$version" >/dev/null
fi
bench="$build/bench/terminology/ucum_bench"
"$bench" --cases > "$npmdir/cases.json"
echo "UCUM conversions/s (each figure: ~0.5 s of repeated conversions, one thread)"
"$bench"
NODE_PATH="$npmdir/node_modules" node "$here/ucum_lhc_bench.js" "$npmdir/cases.json"

# Code look-ups, searches and standardizations: in-process, then over HTTP (wrk, one thread,
# 16 connections, 3 s each) against `holovitals serve` with the same store.
work=$(mktemp -d /tmp/hv-bench-term.XXXXXX)
hvpid=
cleanup() { [ -n "$hvpid" ] && kill "$hvpid" 2>/dev/null; wait 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT
echo
echo "Terminology store (SQLite, one connection)"
"$build/bench/terminology/lookup_bench" "$work" "$HV_SRCDIR"
if command -v wrk >/dev/null 2>&1; then
  port=$((20000 + $(od -An -N2 -tu2 /dev/urandom) % 20000))
  "$build/holovitals" serve --data "$work" --http "127.0.0.1:$port" --mllp "127.0.0.1:$((port + 1))" \
    --log-level warn >/dev/null 2>"$work/hv.log" &
  hvpid=$!
  for _ in $(seq 100); do curl -sf "http://127.0.0.1:$port/health" >/dev/null && break; sleep 0.05; done
  for path in /loinc/2345-7 "/icd10/search?q=diabetes"; do
    rps=$(wrk -t1 -c16 -d3s "http://127.0.0.1:$port$path" 2>/dev/null | awk '/^Requests\/sec/ { print $2 }')
    printf 'GET %-26s over HTTP     %10.0f /s\n' "$path" "$rps"
  done
  cat > "$work/post.lua" <<'LUA'
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"code":"GLU","text":"Glucose, serum","value":95,"unit":"mg/dl","referenceRange":{"low":70,"high":99}}'
LUA
  rps=$(wrk -t1 -c16 -d3s -s "$work/post.lua" "http://127.0.0.1:$port/standardize/lab-result" 2>/dev/null |
        awk '/^Requests\/sec/ { print $2 }')
  printf 'POST /standardize/lab-result over HTTP      %10.0f /s\n' "$rps"
fi
