#!/usr/bin/env bash
# bench/fhir-store/rows_diff.sh — do two binaries write the same search-index rows? Imports
# the 13 Synthea bundles of ../shared/reference (3,495 resources) with `holovitals import`
# into a fresh SQLite store per binary, dumps every row of every sp_* table (all columns but
# the version row id `rid` of the tables that have one, which numbers the versions in write
# order and so depends on the import's scheduling; sp_ref's rid is the target's id and is
# kept), sorted, and diffs the dumps. Prints the row counts per table and "rows identical"
# or the first differences, and exits 1 when they differ.
#
#   bench/fhir-store/rows_diff.sh OLD_BIN NEW_BIN [BUNDLE...]
set -u
OLD=$1; NEW=$2; shift 2
here=$(cd "$(dirname "$0")" && pwd)
if [ $# -eq 0 ]; then set -- "$here"/../../../shared/reference/fhir/synthea/*.json; fi
w=$(mktemp -d /tmp/hv-rows-diff.XXXXXX)
dump() { # $1 store directory, $2 output file
    local db=$1/fhir.db t cols
    : > "$2"
    # The row tables (the FTS shadow tables sp_text_* and sp_fold are not rows).
    for t in sp_date sp_geo sp_num sp_ref sp_reftok sp_str sp_text sp_tok sp_tokdate sp_tokqty sp_uri; do
        cols=$(sqlite3 "$db" "SELECT group_concat('quote(\"' || name || '\")', ', ') FROM pragma_table_info('$t')
                              WHERE NOT (name = 'rid' AND type = 'BIGINT')")
        sqlite3 -separator ' | ' "$db" "SELECT '$t', $cols FROM \"$t\"" | LC_ALL=C sort >> "$2"
    done
}
for b in old new; do
    bin=$OLD; [ $b = new ] && bin=$NEW
    HOLOVITALS_FHIR_SYNCHRONOUS=OFF "$bin" import --data $w/$b "$@" > $w/$b.log 2>&1 || { cat $w/$b.log; exit 2; }
    dump $w/$b $w/$b.rows
done
awk '{print $1}' $w/new.rows | uniq -c
if cmp -s $w/old.rows $w/new.rows; then
    echo "rows identical: $(wc -l < $w/new.rows) rows ($w)"
else
    diff $w/old.rows $w/new.rows | head -20
    echo "rows differ ($w)"
    exit 1
fi
