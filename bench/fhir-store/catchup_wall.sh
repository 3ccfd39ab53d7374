#!/usr/bin/env bash
# bench/fhir-store/catchup_wall.sh — wall and CPU time of the SQLite full-text catch-up of an
# imported store: imports FILES (default: the 100,062-resource population of
# /tmp/s13-peer100k/pop) into a fresh data directory with `holovitals import`, which leaves every
# version above sp_text_mark, then starts `holovitals serve` and asks one _content search, which
# catches up to the end first (the idle tick may start it earlier). Prints the seconds from the
# serve start to the answer, the server's CPU seconds (utime + stime) at the answer, the bytes of
# the FTS5 table's pages (sp_text and its shadow tables, SQLite's dbstat), its rows and the load.
# A server that exits at start (a port another one holds) is started again on another port.
#
#   bench/fhir-store/catchup_wall.sh BIN [FILES...]
set -u
BIN=$1; shift
[ $# -gt 0 ] || set -- /tmp/s13-peer100k/pop/*.json
w=$(mktemp -d /tmp/hv-bench-cuw.XXXXXX); mkdir -p $w/ch
"$BIN" import --data $w/data "$@" > $w/import.txt 2>&1 || { tail -3 $w/import.txt; rm -rf $w; exit 1; }
for _ in 1 2 3; do
  p=$((42000 + RANDOM % 3000))
  t0=$(date +%s.%N)
  "$BIN" serve --data $w/data --http 127.0.0.1:$p --mllp 127.0.0.1:$((p+300)) --channels $w/ch --auth off --log-level warn >/dev/null 2>$w/serve.log &
  pid=$!
  for _ in $(seq 3000); do curl -sf http://127.0.0.1:$p/health >/dev/null && break; kill -0 $pid 2>/dev/null || break; sleep 0.05; done
  kill -0 $pid 2>/dev/null && break
done
curl -s "http://127.0.0.1:$p/fhir/Patient?_content=zzqqxx&_summary=count" > $w/search.json
t1=$(date +%s.%N)
cpu=$(awk '{print $14 + $15}' /proc/$pid/stat)
kill $pid; wait $pid 2>/dev/null
grep -q searchset $w/search.json || echo "the search failed: $(head -c 300 $w/search.json)"
fts=$(sqlite3 $w/data/fhir.db "SELECT SUM(pgsize) FROM dbstat WHERE name LIKE 'sp_text%'")
rows=$(sqlite3 $w/data/fhir.db "SELECT COUNT(*) FROM sp_text")
echo "$(basename "$BIN") wall_s $(echo "$t1 - $t0" | bc) cpu_s $(echo "scale=2; $cpu / $(getconf CLK_TCK)" | bc)" \
  "fts5_bytes $fts rows $rows load $(cut -d' ' -f1 /proc/loadavg)"
rm -rf $w
