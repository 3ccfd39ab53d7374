/*
 * sqlite_ceiling.c — the raw ceiling for bench/fhir-store/run.sh: the same resource rows the
 * FHIR store writes (type, id, version, last_ms, deleted, json; integer primary key and a
 * unique (type, id, version) index) inserted into SQLite directly by a minimal loop, WAL,
 * synchronous=FULL, committed every 1000 rows. Reads NDJSON (one resource per line) on
 * standard input; prints "rows seconds rows_per_second".
 *
 *   bench/bin/fhir_sqlite_ceiling DBFILE < resources.ndjson
 */
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* The value of "key":"…" at the top of a JSON line (resourceType and id come first in FHIR JSON). */
static void field(const char *line, const char *key, char *out, size_t outlen)
{
    char pat[64];
    const char *p, *e;
    snprintf(pat, sizeof(pat), "\"%s\":\"", key);
    p = strstr(line, pat);
    out[0] = '\0';
    if (p == NULL)
        return;
    p += strlen(pat);
    e = strchr(p, '"');
    if (e == NULL || (size_t)(e - p) >= outlen)
        return;
    memcpy(out, p, (size_t)(e - p));
    out[e - p] = '\0';
}

int main(int argc, char **argv)
{
    sqlite3 *db = NULL;
    sqlite3_stmt *st = NULL;
    char *line = NULL, type[64], id[128];
    size_t cap = 0, rows = 0;
    ssize_t n;
    double t0;
    if (argc != 2) {
        fprintf(stderr, "usage: fhir_sqlite_ceiling DBFILE < resources.ndjson\n");
        return 2;
    }
    if (sqlite3_open(argv[1], &db) != SQLITE_OK ||
        sqlite3_exec(db,
                     "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;"
                     "CREATE TABLE resources (rid INTEGER PRIMARY KEY, type TEXT NOT NULL, id TEXT NOT NULL,"
                     " version INTEGER NOT NULL, last_ms INTEGER NOT NULL, deleted INTEGER NOT NULL, json TEXT);"
                     "CREATE UNIQUE INDEX resources_tiv ON resources (type, id, version);",
                     NULL, NULL, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(db, "INSERT OR IGNORE INTO resources (type, id, version, last_ms, deleted, json) VALUES (?,?,1,?,0,?)",
                           -1, &st, NULL) != SQLITE_OK) {
        fprintf(stderr, "sqlite: %s\n", sqlite3_errmsg(db));
        return 1;
    }
    t0 = now();
    sqlite3_exec(db, "BEGIN", NULL, NULL, NULL);
    while ((n = getline(&line, &cap, stdin)) > 0) {
        if (line[n - 1] == '\n')
            line[--n] = '\0';
        field(line, "resourceType", type, sizeof(type));
        field(line, "id", id, sizeof(id));
        sqlite3_bind_text(st, 1, type, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 2, id, -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 3, (sqlite3_int64)(time(NULL) * 1000));
        sqlite3_bind_text(st, 4, line, (int)n, SQLITE_STATIC);
        if (sqlite3_step(st) != SQLITE_DONE) {
            fprintf(stderr, "sqlite: %s\n", sqlite3_errmsg(db));
            return 1;
        }
        sqlite3_reset(st);
        if (++rows % 1000 == 0) {
            sqlite3_exec(db, "COMMIT", NULL, NULL, NULL);
            sqlite3_exec(db, "BEGIN", NULL, NULL, NULL);
        }
    }
    sqlite3_exec(db, "COMMIT", NULL, NULL, NULL);
    printf("%zu %.3f %.0f\n", rows, now() - t0, (double)rows / (now() - t0));
    sqlite3_finalize(st);
    sqlite3_close(db);
    free(line);
    return 0;
}
