#!/usr/bin/env bash
# bench/fhir-search/replicate_pg.sh — the benchmark's population on PostgreSQL (issue 6):
# copies a SQLite FHIR store (the engine's import, multiplied by replicate.py) into the
# fhir schema of a PostgreSQL database with COPY, so that both backends are measured on
# the same rows and the same index the engine wrote.
#
#   bench/fhir-search/replicate_pg.sh FHIR_DB PG_URL
#
# The schema comes from the engine itself (HOLOVITALS_BIN, default ./holovitals: one
# start on PG_URL runs the migrations, after dropping the fhir schema there); the
# secondary indexes are dropped during the copy and built again after, the identity
# sequence of resources moves past the copied row ids, then ANALYZE. Full-text rows
# (sp_text) are rebuilt from the SQLite FTS table's text with to_tsvector('simple'),
# as fhir/search_special.c writes them. Run on a stopped SQLite store; needs sqlite3
# and psql. The store is opened as an immutable URI: nothing is written beside it (no
# -wal or -shm file), so a shared read-only copy can be the source.
set -euo pipefail
db=$1
url=$2
bin=${HOLOVITALS_BIN:-$PWD/holovitals}
work=$(mktemp -d /tmp/hv-replicate-pg.XXXXXX)
port=$((20000 + RANDOM % 20000))
trap 'rm -rf "$work"' EXIT
# An immutable URI ignores a write-ahead log: rows still only in FHIR_DB-wal would be
# missed without a word, so such a store must be checkpointed first.
if [ -s "$db-wal" ]; then
  echo "replicate_pg.sh: $db-wal is not empty: checkpoint the stopped store first" \
    "(sqlite3 $db 'PRAGMA wal_checkpoint(TRUNCATE)')" >&2
  exit 1
fi
src="file:$(realpath "$db")?immutable=1"
begin=$(date +%s)
psqlx() { psql -q -X -v ON_ERROR_STOP=1 "$url" "$@"; }
psqlx -c "DROP SCHEMA IF EXISTS fhir CASCADE"
# One start of the engine on PostgreSQL creates the schema (its migrations), then stops.
"$bin" serve --db "$url" --data "$work/data" --http "127.0.0.1:$port" --mllp "127.0.0.1:$((port + 1))" \
  --channels "$work/channels" --auth off --log-level warn >"$work/serve.log" 2>&1 &
pid=$!
for _ in $(seq 300); do curl -sf "http://127.0.0.1:$port/health" >/dev/null 2>&1 && break; sleep 0.2; done
kill "$pid"; wait "$pid" 2>/dev/null || true
# Every table of the search index the engine writes, the combined token + date and
# token + quantity rows (fhir/search_combo.c) and the reference x token rows of _has
# (fhir/search_has.c) included, as replicate.py copies them. A table the source store does
# not have (an older schema) is left empty, with a warning: the PostgreSQL schema comes from
# HOLOVITALS_BIN, whose migrations ran on empty tables.
tables="resources refs sp_str sp_tok sp_ref sp_date sp_num sp_uri sp_tokdate sp_tokqty sp_reftok"
# The secondary indexes of those tables: dropped now, their definitions kept.
psqlx -At -c "SELECT indexdef || ';' FROM pg_indexes WHERE schemaname = 'fhir' AND indexname NOT LIKE '%_pkey'
  AND tablename IN ('${tables// /\',\'}', 'sp_text')" >"$work/indexes.sql"
psqlx -At -c "SELECT 'DROP INDEX fhir.' || indexname || ';' FROM pg_indexes WHERE schemaname = 'fhir'
  AND indexname NOT LIKE '%_pkey' AND tablename IN ('${tables// /\',\'}', 'sp_text')" | psqlx
for t in $tables; do
  if [ -z "$(sqlite3 -readonly "$src" "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = '$t'")" ]; then
    echo "$t: not in $db (an older schema): left empty in PostgreSQL" >&2
    continue
  fi
  cols=$(psqlx -At -c "SELECT string_agg(column_name, ', ' ORDER BY ordinal_position) FROM information_schema.columns
    WHERE table_schema = 'fhir' AND table_name = '$t'")
  start=$(date +%s)
  # NULL travels as \N; an empty string as an unquoted empty field is '' for COPY's CSV
  # only when NULL is something else, which it is here.
  sqlite3 -readonly -csv -cmd ".nullvalue \\N" "$src" "SELECT $cols FROM $t" |
    psqlx -c "\\copy fhir.$t ($cols) FROM STDIN WITH (FORMAT csv, NULL '\\N')"
  echo "$t: $(( $(date +%s) - start )) s" >&2
done
start=$(date +%s)
sqlite3 -readonly -csv -cmd ".nullvalue \\N" "$src" "SELECT rowid, type, id, narrative, content FROM sp_text" |
  psqlx -c "CREATE UNLOGGED TABLE fhir.sp_text_stage (rid BIGINT, type TEXT, id TEXT, narrative TEXT, content TEXT)" \
    -c "\\copy fhir.sp_text_stage FROM STDIN WITH (FORMAT csv, NULL '\\N')" \
    -c "INSERT INTO fhir.sp_text (rid, type, id, narrative, content) SELECT rid, type, id,
          to_tsvector('simple', COALESCE(narrative, '')), to_tsvector('simple', COALESCE(content, ''))
          FROM fhir.sp_text_stage" \
    -c "DROP TABLE fhir.sp_text_stage"
echo "sp_text: $(( $(date +%s) - start )) s" >&2
start=$(date +%s)
psqlx -f "$work/indexes.sql"
psqlx -c "SELECT setval(pg_get_serial_sequence('fhir.resources', 'rid'), (SELECT MAX(rid) FROM fhir.resources))" >/dev/null
# VACUUM, not only ANALYZE: the visibility map of the freshly copied tables is empty
# until a vacuum sets it, and every index-only scan (the covering sp_tok_rc, sp_str_rc
# and sp_ref_vc pages) would then read the heap page of each entry it returns.
psqlx -c "VACUUM (ANALYZE)"
echo "indexes and VACUUM (ANALYZE): $(( $(date +%s) - start )) s" >&2
psqlx -At -c "SELECT 'resources: ' || COUNT(*) FROM fhir.resources"
echo "total: $(( $(date +%s) - begin )) s" >&2
