#!/usr/bin/env bash
# bench/fhir-store/catchup_callgrind.sh — instructions of the SQLite full-text catch-up per
# imported resource (issues 5, 12): imports the Synthea bundles with `holovitals import` (which
# leaves every version above sp_text_mark), then runs `holovitals serve` under valgrind
# --tool=callgrind on that store and asks one _content search, which catches up to the end
# first (the idle tick may start it earlier: the counters are not zeroed, the figure is
# hv__search_text_catch_up's inclusive count wherever it ran). Prints the resources, the
# catch-up's instructions and those per resource, and the FTS5 flushes' (sqlite3VtabSync +
# sqlite3VtabSavepoint, at the job's RELEASE / the COMMIT), and the pages of the FTS5 table
# (sp_text and its shadow tables, SQLite's dbstat) with the bytes of the content column.
# OUT is the profile (written at exit). HV_BENCH_FILES (a glob, e.g.
# '/tmp/s13-peer100k/pop/p0000*.json') imports those bundles instead of the Synthea ones.
#
#   bench/fhir-store/catchup_callgrind.sh BIN OUT
set -u
BIN=$1; OUT=$2
top=$(cd "$(dirname "$0")/../.." && pwd)
ref=${HV_REFERENCE_DIR:-$top/../shared/reference}
w=$(mktemp -d /tmp/hv-bench-cgt.XXXXXX); p=$((39000 + RANDOM % 3000)); mkdir -p $w/ch
if [ -n "${HV_BENCH_FILES:-}" ]; then files=($HV_BENCH_FILES); else files=("$ref"/fhir/synthea/*.json); fi
"$BIN" import --data $w/data "${files[@]}" > $w/import.txt 2>&1 || { cat $w/import.txt; exit 1; }
valgrind --tool=callgrind --callgrind-out-file=$OUT "$BIN" serve --data $w/data --http 127.0.0.1:$p --mllp 127.0.0.1:$((p+300)) --channels $w/ch --auth off --log-level warn >/dev/null 2>$w/vg.log &
pid=$!
for _ in $(seq 3000); do curl -sf http://127.0.0.1:$p/health >/dev/null && break; sleep 0.1; done
curl -s "http://127.0.0.1:$p/fhir/Patient?_content=zzqqxx&_summary=count" > $w/search.json
grep -q searchset $w/search.json || { echo "the search failed: $(head -c 300 $w/search.json)"; tail -5 $w/vg.log; }
kill $pid; wait $pid 2>/dev/null
f=$OUT
n=$(sqlite3 $w/data/fhir.db "SELECT COUNT(*) FROM resources" 2>/dev/null || echo 0)
a=$(callgrind_annotate --threshold=100 --inclusive=yes $f 2>/dev/null)
cu=$(echo "$a" | awk '/hv__search_text_catch_up /{gsub(",","",$1); print $1; exit}')
sy=$(echo "$a" | awk '/sqlite3VtabSync /{gsub(",","",$1); print $1; exit}')
sp=$(echo "$a" | awk '/sqlite3VtabSavepoint /{gsub(",","",$1); print $1; exit}')
echo "resources $n catch_up_Ir ${cu:-0} per_res $(( ${cu:-0} / (n > 0 ? n : 1) )) fts_flush_Ir $(( ${sy:-0} + ${sp:-0} )) per_res $(( (${sy:-0} + ${sp:-0}) / (n > 0 ? n : 1) )) file $f"
fts=$(sqlite3 $w/data/fhir.db "SELECT SUM(pgsize) FROM dbstat WHERE name LIKE 'sp_text%'" 2>/dev/null)
chars=$(sqlite3 $w/data/fhir.db "SELECT SUM(length(content)) FROM sp_text" 2>/dev/null)
echo "fts5_bytes ${fts:-?} content_chars ${chars:-?} per_res $(( ${chars:-0} / (n > 0 ? n : 1) ))"
[ -n "${KEEP:-}" ] && echo "kept $w" || rm -rf $w
