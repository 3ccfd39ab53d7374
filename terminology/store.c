/*
 * store.c — the terminology store: the module's own tables (through hv_db, SQLite
 * file <data>/terminology.db or PostgreSQL schema "terminology"), loads that replace
 * one code system in one transaction, look-ups and full-text search (SQLite FTS5,
 * PostgreSQL text search).
 *
 * Tables:
 *   concept(system, code, display, active, props)   props: JSON object text (LOINC parts ...)
 *   concept_parent(system, code, parent)            is-a (SNOMED CT), hierarchy (ICD-10-CM)
 *   concept_fts(system, code, text)                 display + synonyms, for search
 *   code_system_version(system, kind, version, loaded_at, concepts, source)
 *   local_code_map(sender, local_code, loinc, map_name)   the integrators' ConceptMaps
 *   review(id, received_at, sender, local_code, text, unit, candidate, confidence,
 *          method, reason)                  standardizations held for a person to review
 *   value_set(url, version, name, resource)  FHIR ValueSet resources (load fhir), as JSON
 *
 * A load deletes the system's rows and inserts the new ones inside one transaction,
 * so a failed or interrupted load leaves the previous version in force, and loading
 * the same file twice gives the same tables (idempotent).
 */
#include "config.h"

#include <ctype.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "terminology/terminology_int.h"

#define MAX_QUERY_WORDS 8
#define MAX_WORD 64

static const char *const migrations_sqlite[] = {
    "CREATE TABLE concept (system TEXT NOT NULL, code TEXT NOT NULL, display TEXT NOT NULL,"
    " active INTEGER NOT NULL DEFAULT 1, props TEXT, PRIMARY KEY (system, code));"
    "CREATE TABLE concept_parent (system TEXT NOT NULL, code TEXT NOT NULL, parent TEXT NOT NULL,"
    " PRIMARY KEY (system, code, parent));"
    "CREATE INDEX concept_parent_by_parent ON concept_parent (system, parent);"
    "CREATE VIRTUAL TABLE concept_fts USING fts5(system UNINDEXED, code UNINDEXED, text,"
    " tokenize = 'unicode61 remove_diacritics 2');"
    "CREATE TABLE code_system_version (system TEXT PRIMARY KEY, kind TEXT NOT NULL,"
    " version TEXT NOT NULL, loaded_at TEXT NOT NULL, concepts INTEGER NOT NULL, source TEXT)",
    "CREATE TABLE local_code_map (sender TEXT NOT NULL, local_code TEXT NOT NULL,"
    " loinc TEXT NOT NULL, map_name TEXT, PRIMARY KEY (sender, local_code));"
    "CREATE TABLE review (id INTEGER PRIMARY KEY, received_at TEXT NOT NULL,"
    " sender TEXT, local_code TEXT, text TEXT, unit TEXT, candidate TEXT,"
    " confidence DOUBLE PRECISION, method TEXT, reason TEXT)",
    "CREATE TABLE value_set (url TEXT PRIMARY KEY, version TEXT, name TEXT, resource TEXT NOT NULL)",
    NULL,
};

static const char *const migrations_pg[] = {
    "CREATE TABLE concept (system TEXT NOT NULL, code TEXT NOT NULL, display TEXT NOT NULL,"
    " active INTEGER NOT NULL DEFAULT 1, props TEXT, PRIMARY KEY (system, code));"
    "CREATE TABLE concept_parent (system TEXT NOT NULL, code TEXT NOT NULL, parent TEXT NOT NULL,"
    " PRIMARY KEY (system, code, parent));"
    "CREATE INDEX concept_parent_by_parent ON concept_parent (system, parent);"
    "CREATE TABLE concept_fts (system TEXT NOT NULL, code TEXT NOT NULL, text TEXT NOT NULL);"
    "CREATE INDEX concept_fts_system ON concept_fts (system, code);"
    "CREATE INDEX concept_fts_text ON concept_fts USING gin (to_tsvector('simple', text));"
    "CREATE TABLE code_system_version (system TEXT PRIMARY KEY, kind TEXT NOT NULL,"
    " version TEXT NOT NULL, loaded_at TEXT NOT NULL, concepts INTEGER NOT NULL, source TEXT)",
    "CREATE TABLE local_code_map (sender TEXT NOT NULL, local_code TEXT NOT NULL,"
    " loinc TEXT NOT NULL, map_name TEXT, PRIMARY KEY (sender, local_code));"
    "CREATE TABLE review (id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY, received_at TEXT NOT NULL,"
    " sender TEXT, local_code TEXT, text TEXT, unit TEXT, candidate TEXT,"
    " confidence DOUBLE PRECISION, method TEXT, reason TEXT)",
    "CREATE TABLE value_set (url TEXT PRIMARY KEY, version TEXT, name TEXT, resource TEXT NOT NULL)",
    NULL,
};

int hv_terminology_store_migrate(hv_db_t *db, hv_error_t *err) {
    return hv_db_migrate(db, "terminology",
                         hv_db_kind(db) == HV_DB_PG ? migrations_pg : migrations_sqlite, err);
}

static int db_fail(hv_db_t *db, hv_error_t *err, const char *what) {
    hv_error_set(err, HV_EDB, NULL, "%s: %s", what, hv_db_errmsg(db));
    return HV_EDB;
}

/* Runs one statement with text parameters (NULL binds NULL). */
static int exec_params(hv_db_t *db, const char *sql, const char *const *params, size_t n,
                       hv_error_t *err) {
    hv_db_stmt_t *st = NULL;
    size_t i;
    int rc = hv_db_prepare(db, sql, &st);
    for (i = 0; rc == HV_OK && i < n; i++)
        rc = params[i] != NULL ? hv_db_bind_text(st, (int)i + 1, params[i], strlen(params[i]))
                               : hv_db_bind_null(st, (int)i + 1);
    if (rc == HV_OK) {
        rc = hv_db_step(st);
        if (rc == HV_DB_ROW) rc = HV_OK;
    }
    if (st != NULL) hv_db_done(st);
    return rc == HV_OK ? HV_OK : db_fail(db, err, "terminology store");
}

static void batch_init(hv__batch_t *b, const char *head, const char *tail, int ncols) {
    memset(b, 0, sizeof *b);
    b->head = head;
    b->tail = tail;
    b->ncols = ncols;
}

static void batch_release(hv__batch_t *b) {
    hv_arena_free(b->arena);
    b->arena = NULL;
    b->nrows = 0;
}

static int batch_flush(hv_db_t *db, hv__batch_t *b, hv_error_t *err) {
    hv_buf_t sql;
    hv_db_stmt_t *st = NULL;
    size_t r, i, n;
    int c, rc = HV_OK;
    if (b->nrows == 0) return HV_OK;
    hv_buf_init(&sql, 0);
    rc = hv_buf_puts(&sql, b->head);
    for (r = 0, n = 1; rc == HV_OK && r < b->nrows; r++) {
        rc = hv_buf_puts(&sql, r > 0 ? ", (" : "(");
        for (c = 0; rc == HV_OK && c < b->ncols; c++)
            rc = hv_buf_printf(&sql, "%s$%zu", c > 0 ? ", " : "", n++);
        if (rc == HV_OK) rc = hv_buf_putc(&sql, ')');
    }
    if (rc == HV_OK) rc = hv_buf_puts(&sql, b->tail);
    if (rc == HV_OK) rc = hv_db_prepare(db, sql.data, &st);
    for (i = 0; rc == HV_OK && i < b->nrows * (size_t)b->ncols; i++)
        rc = b->vals[i] != NULL ? hv_db_bind_text(st, (int)i + 1, b->vals[i], strlen(b->vals[i]))
                                : hv_db_bind_null(st, (int)i + 1);
    if (rc == HV_OK) rc = hv_db_step(st);
    if (st != NULL) hv_db_done(st);
    hv_buf_release(&sql);
    hv_arena_reset(b->arena);
    b->nrows = 0;
    if (rc == HV_ENOMEM) return rc;
    if (rc != HV_OK) {
        hv_error_set(err, HV_EDB, NULL, "cannot store a batch of rows (is a code given twice?): %s",
                     hv_db_errmsg(db));
        return HV_EDB;
    }
    return HV_OK;
}

/* Adds one row (ncols values, copied); flushes when the batch is full. */
static int batch_add(hv_db_t *db, hv__batch_t *b, const char *const *vals, hv_error_t *err) {
    int c;
    if (b->arena == NULL && (b->arena = hv_arena_new(0)) == NULL) return HV_ENOMEM;
    for (c = 0; c < b->ncols; c++) {
        const char *v = NULL;
        if (vals[c] != NULL && (v = hv_arena_strdup(b->arena, vals[c])) == NULL) return HV_ENOMEM;
        b->vals[b->nrows * (size_t)b->ncols + (size_t)c] = v;
    }
    b->nrows++;
    return b->nrows == HV__BATCH_ROWS ? batch_flush(db, b, err) : HV_OK;
}

int hv__load_begin(hv__load_t *l, hv_db_t *db, const char *system, const char *path,
                   FILE *progress, hv_error_t *err) {
    const char *p[1] = {system};
    FILE *f;
    int rc;
    memset(l, 0, sizeof *l);
    l->db = db;
    l->system = system;
    l->path = path;
    l->progress = progress;
    batch_init(&l->concept, "INSERT INTO concept (system, code, display, active, props) VALUES ",
               "", 5);
    batch_init(&l->text, "INSERT INTO concept_fts (system, code, text) VALUES ", "", 3);
    /* ON CONFLICT DO NOTHING: RF2 may state the same is-a in several relationship groups. */
    batch_init(&l->parent, "INSERT INTO concept_parent (system, code, parent) VALUES ",
               " ON CONFLICT DO NOTHING", 3);
    f = fopen(path, "rb");
    if (f != NULL) {
        if (fseek(f, 0, SEEK_END) == 0) l->total_bytes = ftell(f);
        fclose(f);
    }
    if (hv_db_begin(db) != HV_OK) return db_fail(db, err, "begin");
    rc = exec_params(db, "DELETE FROM concept WHERE system = $1", p, 1, err);
    if (rc == HV_OK) rc = exec_params(db, "DELETE FROM concept_parent WHERE system = $1", p, 1, err);
    if (rc == HV_OK) rc = exec_params(db, "DELETE FROM concept_fts WHERE system = $1", p, 1, err);
    if (rc != HV_OK) (void)hv_db_rollback(db);
    return rc;
}

int hv__load_concept(hv__load_t *l, const char *code, const char *display, int active,
                     const char *props_json, const char *search_text, hv_error_t *err) {
    char *text = NULL;
    const char *row[5];
    int rc;
    if (code[0] == '\0') {
        hv_error_set(err, HV_EPROTO, NULL, "a concept has an empty code");
        return HV_EPROTO;
    }
    row[0] = l->system;
    row[1] = code;
    row[2] = display;
    row[3] = active ? "1" : "0";
    row[4] = props_json;
    rc = batch_add(l->db, &l->concept, row, err);
    if (rc != HV_OK) return rc;
    if (search_text != NULL && search_text[0] != '\0') {
        size_t a = strlen(display), b = strlen(search_text);
        text = hv_malloc(a + b + 2);
        if (text == NULL) return HV_ENOMEM;
        memcpy(text, display, a);
        text[a] = ' ';
        memcpy(text + a + 1, search_text, b + 1);
    }
    rc = hv__load_text(l, code, text != NULL ? text : display, err);
    hv_free(text);
    if (rc == HV_OK) l->concepts++;
    return rc;
}

int hv__load_text(hv__load_t *l, const char *code, const char *text, hv_error_t *err) {
    const char *row[3] = {l->system, code, text};
    return batch_add(l->db, &l->text, row, err);
}

int hv__load_parent(hv__load_t *l, const char *code, const char *parent, hv_error_t *err) {
    const char *row[3] = {l->system, code, parent};
    return batch_add(l->db, &l->parent, row, err);
}

int hv__load_flush(hv__load_t *l, hv_error_t *err) {
    int rc = batch_flush(l->db, &l->concept, err);
    if (rc == HV_OK) rc = batch_flush(l->db, &l->text, err);
    if (rc == HV_OK) rc = batch_flush(l->db, &l->parent, err);
    return rc;
}

static void load_release(hv__load_t *l) {
    batch_release(&l->concept);
    batch_release(&l->text);
    batch_release(&l->parent);
}

void hv__load_progress(hv__load_t *l, long bytes_done) {
    uint64_t now;
    if (l->progress == NULL) return;
    now = hv_mono_ns();
    if (now - l->last_progress_ns < 200000000ULL && bytes_done >= 0) return;
    l->last_progress_ns = now;
    if (l->total_bytes > 0 && bytes_done >= 0)
        fprintf(l->progress, "\rloading %s: %3ld%% (%ld concepts)", l->system,
                bytes_done * 100 / l->total_bytes > 100 ? 100 : bytes_done * 100 / l->total_bytes,
                l->concepts);
    else
        fprintf(l->progress, "\rloading %s: %ld concepts", l->system, l->concepts);
    fflush(l->progress);
}

int hv__load_commit(hv__load_t *l, const char *kind, const char *version, hv_error_t *err) {
    char when[32], count[32];
    const char *p[6];
    int rc;
    rc = hv__load_flush(l, err);
    if (rc != HV_OK) {
        hv__load_abort(l);
        return rc;
    }
    hv_time_rfc3339(hv_now_ms(), when, sizeof when);
    snprintf(count, sizeof count, "%ld", l->concepts);
    p[0] = l->system;
    p[1] = kind;
    p[2] = version != NULL && version[0] != '\0' ? version : "unknown";
    p[3] = when;
    p[4] = count;
    p[5] = l->path;
    rc = exec_params(l->db,
                     "INSERT INTO code_system_version (system, kind, version, loaded_at, concepts,"
                     " source) VALUES ($1, $2, $3, $4, CAST($5 AS INTEGER), $6)"
                     " ON CONFLICT (system) DO UPDATE SET kind = excluded.kind,"
                     " version = excluded.version, loaded_at = excluded.loaded_at,"
                     " concepts = excluded.concepts, source = excluded.source",
                     p, 6, err);
    if (rc != HV_OK) {
        hv__load_abort(l);
        return rc;
    }
    if (hv_db_commit(l->db) != HV_OK) {
        rc = db_fail(l->db, err, "commit");
        hv__load_abort(l);
        return rc;
    }
    load_release(l);
    if (l->progress != NULL) {
        fprintf(l->progress, "\rloaded %s version %s: %ld concepts\n", l->system, p[2], l->concepts);
        fflush(l->progress);
    }
    return HV_OK;
}

void hv__load_abort(hv__load_t *l) {
    load_release(l);
    (void)hv_db_rollback(l->db);
    if (l->progress != NULL) {
        fprintf(l->progress, "\n");
        fflush(l->progress);
    }
}

int hv_terminology_load(hv_db_t *db, const char *kind, const char *path, const char *version,
                        FILE *progress, hv_error_t *err) {
    int rc = hv_terminology_store_migrate(db, err);
    if (rc != HV_OK) return rc;
    if (strcmp(kind, "loinc") == 0) return hv__load_loinc(db, path, version, progress, err);
    if (strcmp(kind, "snomed") == 0) return hv__load_snomed(db, path, version, progress, err);
    if (strcmp(kind, "icd10cm") == 0) return hv__load_icd10cm(db, path, version, progress, err);
    if (strcmp(kind, "cpt") == 0) return hv__load_cpt(db, path, version, progress, err);
    if (strcmp(kind, "fhir") == 0) return hv__load_fhir(db, path, version, progress, err);
    hv_error_set(err, HV_EINVAL, NULL, "unknown code system '%s' (loinc, snomed, icd10cm, cpt, fhir)",
                 kind);
    return HV_EINVAL;
}

/* ---- reads ---------------------------------------------------------------- */

static int read_concept(hv_db_stmt_t *st, const char *system, hv_arena_t *a,
                        hv_terminology_concept_t *c) {
    size_t n;
    const char *s;
    memset(c, 0, sizeof *c);
    c->system = hv_arena_strdup(a, system);
    s = hv_db_column_text(st, 0, &n);
    c->code = hv_arena_strndup(a, s != NULL ? s : "", s != NULL ? n : 0);
    s = hv_db_column_text(st, 1, &n);
    c->display = hv_arena_strndup(a, s != NULL ? s : "", s != NULL ? n : 0);
    c->active = (int)hv_db_column_int64(st, 2);
    if (!hv_db_column_is_null(st, 3)) {
        s = hv_db_column_text(st, 3, &n);
        c->props = hv_arena_strndup(a, s != NULL ? s : "", s != NULL ? n : 0);
        if (c->props == NULL) return HV_ENOMEM;
    }
    return c->system != NULL && c->code != NULL && c->display != NULL ? HV_OK : HV_ENOMEM;
}

int hv_terminology_lookup(hv_db_t *db, const char *system, const char *code, hv_arena_t *a,
                          hv_terminology_concept_t *out) {
    hv_db_stmt_t *st = NULL;
    hv_terminology_concept_t c;
    int rc = hv_db_prepare(db,
                           "SELECT code, display, active, props FROM concept"
                           " WHERE system = $1 AND code = $2",
                           &st);
    if (rc == HV_OK) rc = hv_db_bind_text(st, 1, system, strlen(system));
    if (rc == HV_OK) rc = hv_db_bind_text(st, 2, code, strlen(code));
    if (rc == HV_OK) rc = hv_db_step(st);
    if (rc == HV_DB_ROW) rc = read_concept(st, system, a, &c);
    else if (rc == HV_OK) rc = HV_ENOTFOUND;
    if (st != NULL) hv_db_done(st);
    if (rc == HV_OK) *out = c;
    return rc;
}

/* Builds the full-text query from the words of q: prefix matches, all required. */
static int build_query(int pg, const char *q, char *out, size_t outlen) {
    size_t len = 0, words = 0;
    const char *s = q;
    out[0] = '\0';
    while (*s != '\0' && words < MAX_QUERY_WORDS) {
        const char *w;
        size_t wl;
        int n;
        while (*s != '\0' && !isalnum((unsigned char)*s) && (unsigned char)*s < 0x80) s++;
        w = s;
        while (*s != '\0' && (isalnum((unsigned char)*s) || (unsigned char)*s >= 0x80)) s++;
        wl = (size_t)(s - w);
        if (wl == 0) continue;
        if (wl > MAX_WORD) wl = MAX_WORD;
        n = pg ? snprintf(out + len, outlen - len, "%s%.*s:*", words ? " & " : "", (int)wl, w)
               : snprintf(out + len, outlen - len, "%s\"%.*s\"*", words ? " AND " : "", (int)wl, w);
        if (n < 0 || (size_t)n >= outlen - len) break;
        len += (size_t)n;
        words++;
    }
    return words > 0 ? HV_OK : HV_EINVAL;
}

int hv_terminology_search(hv_db_t *db, const char *system, const char *q, size_t limit,
                          size_t offset, hv_arena_t *a, hv_terminology_concept_t **out,
                          size_t *n) {
    char query[(MAX_WORD + 16) * MAX_QUERY_WORDS + 1];
    hv_terminology_concept_t *res = NULL, exact;
    hv_db_stmt_t *st = NULL;
    size_t count = 0;
    int pg = hv_db_kind(db) == HV_DB_PG, rc, have_exact = 0;
    if (limit == 0 || limit > HV_TERMINOLOGY_MAX_RESULTS) limit = HV_TERMINOLOGY_MAX_RESULTS;
    if (build_query(pg, q, query, sizeof query) != HV_OK) return HV_EINVAL;
    res = hv_arena_alloc(a, (limit + 1) * sizeof *res);
    if (res == NULL) return HV_ENOMEM;
    /* A query that is a code puts that concept first. */
    if (offset == 0 && strchr(q, ' ') == NULL &&
        hv_terminology_lookup(db, system, q, a, &exact) == HV_OK) {
        res[count++] = exact;
        have_exact = 1;
    }
    rc = hv_db_prepare(db,
                       /* A concept may have several searchable texts (SNOMED CT synonyms):
                        * each concept appears once, at its best rank. */
                       pg ? "SELECT c.code, c.display, c.active, c.props FROM concept c"
                            " WHERE c.system = $1 AND EXISTS (SELECT 1 FROM concept_fts f"
                            " WHERE f.system = c.system AND f.code = c.code"
                            " AND to_tsvector('simple', f.text) @@ to_tsquery('simple', $2))"
                            " ORDER BY c.active DESC, length(c.display), c.code LIMIT $3 OFFSET $4"
                          /* FTS5 answers "ORDER BY rank LIMIT n" without sorting every
                           * match; $5 leaves room for several texts per concept. */
                          : "SELECT c.code, c.display, c.active, c.props FROM"
                            " (SELECT code, min(r) AS r FROM (SELECT code, rank AS r FROM concept_fts"
                            " WHERE concept_fts MATCH $2 AND system = $1 ORDER BY rank LIMIT $5)"
                            " GROUP BY code) m"
                            " JOIN concept c ON c.system = $1 AND c.code = m.code"
                            " ORDER BY c.active DESC, m.r, c.code LIMIT $3 OFFSET $4",
                       &st);
    if (rc == HV_OK) rc = hv_db_bind_text(st, 1, system, strlen(system));
    if (rc == HV_OK) rc = hv_db_bind_text(st, 2, query, strlen(query));
    if (rc == HV_OK) rc = hv_db_bind_int64(st, 3, (int64_t)limit);
    if (rc == HV_OK) rc = hv_db_bind_int64(st, 4, (int64_t)offset);
    if (rc == HV_OK && !pg) rc = hv_db_bind_int64(st, 5, (int64_t)((limit + offset) * 4 + 16));
    while (rc == HV_OK && (rc = hv_db_step(st)) == HV_DB_ROW) {
        hv_terminology_concept_t c;
        rc = read_concept(st, system, a, &c);
        if (rc != HV_OK) break;
        if (have_exact && strcmp(c.code, exact.code) == 0) continue;
        if (count < limit) res[count++] = c;
    }
    if (st != NULL) hv_db_done(st);
    if (rc != HV_OK) return rc == HV_ENOMEM ? rc : HV_EDB;
    *out = res;
    *n = count;
    return HV_OK;
}

int hv_terminology_version(hv_db_t *db, const char *system, hv_arena_t *a, const char **version,
                           int64_t *concepts) {
    hv_db_stmt_t *st = NULL;
    int rc = hv_db_prepare(db, "SELECT version, concepts FROM code_system_version WHERE system = $1",
                           &st);
    const char *v = NULL;
    int64_t c = 0;
    if (rc == HV_OK) rc = hv_db_bind_text(st, 1, system, strlen(system));
    if (rc == HV_OK) rc = hv_db_step(st);
    if (rc == HV_DB_ROW) {
        size_t len;
        const char *s = hv_db_column_text(st, 0, &len);
        v = hv_arena_strndup(a, s != NULL ? s : "", s != NULL ? len : 0);
        c = hv_db_column_int64(st, 1);
        rc = v != NULL ? HV_OK : HV_ENOMEM;
    } else if (rc == HV_OK) {
        rc = HV_ENOTFOUND;
    }
    if (st != NULL) hv_db_done(st);
    if (rc == HV_OK) {
        if (version != NULL) *version = v;
        if (concepts != NULL) *concepts = c;
    }
    return rc;
}

int hv_terminology_subsumes(hv_db_t *db, const char *system, const char *ancestor,
                            const char *code) {
    /* Walks the is-a graph upwards from code (breadth-first over the stored parents). */
    hv_db_stmt_t *st = NULL;
    int rc;
    rc = hv_db_prepare(db,
                       "WITH RECURSIVE up(code) AS (SELECT $2"
                       " UNION SELECT p.parent FROM concept_parent p JOIN up ON p.code = up.code"
                       " WHERE p.system = $1)"
                       " SELECT 1 FROM up WHERE code = $3 LIMIT 1",
                       &st);
    if (rc == HV_OK) rc = hv_db_bind_text(st, 1, system, strlen(system));
    if (rc == HV_OK) rc = hv_db_bind_text(st, 2, code, strlen(code));
    if (rc == HV_OK) rc = hv_db_bind_text(st, 3, ancestor, strlen(ancestor));
    if (rc == HV_OK) rc = hv_db_step(st);
    if (st != NULL) hv_db_done(st);
    if (rc == HV_DB_ROW) return 1;
    if (rc == HV_OK) return 0;
    return HV_EDB;
}

int hv__store_parents(hv_db_t *db, const char *system, const char *code, hv_arena_t *a,
                      const char ***out, size_t *n) {
    hv_db_stmt_t *st = NULL;
    const char **res = hv_arena_alloc(a, 64 * sizeof *res);
    size_t count = 0;
    int rc = res != NULL ? HV_OK : HV_ENOMEM;
    if (rc == HV_OK)
        rc = hv_db_prepare(db, "SELECT parent FROM concept_parent WHERE system = $1 AND code = $2"
                               " ORDER BY parent LIMIT 64", &st);
    if (rc == HV_OK) rc = hv_db_bind_text(st, 1, system, strlen(system));
    if (rc == HV_OK) rc = hv_db_bind_text(st, 2, code, strlen(code));
    while (rc == HV_OK && (rc = hv_db_step(st)) == HV_DB_ROW) {
        size_t len;
        const char *s = hv_db_column_text(st, 0, &len);
        res[count] = hv_arena_strndup(a, s != NULL ? s : "", s != NULL ? len : 0);
        rc = res[count++] != NULL ? HV_OK : HV_ENOMEM;
    }
    if (st != NULL) hv_db_done(st);
    if (rc != HV_OK) return rc;
    *out = res;
    *n = count;
    return HV_OK;
}

int hv__store_list(hv_db_t *db, const char *system, const char *isa, size_t limit, size_t offset,
                   hv_arena_t *a, hv_terminology_concept_t **out, size_t *n) {
    hv_db_stmt_t *st = NULL;
    hv_terminology_concept_t *res = hv_arena_alloc(a, (limit + 1) * sizeof *res);
    size_t count = 0;
    int rc = res != NULL ? HV_OK : HV_ENOMEM;
    if (rc == HV_OK)
        rc = hv_db_prepare(
            db,
            isa != NULL
                ? "WITH RECURSIVE down(code) AS (SELECT CAST($2 AS TEXT)"
                  " UNION SELECT p.code FROM concept_parent p JOIN down ON p.parent = down.code"
                  " WHERE p.system = $1)"
                  " SELECT c.code, c.display, c.active, c.props FROM down"
                  " JOIN concept c ON c.system = $1 AND c.code = down.code"
                  " ORDER BY c.code LIMIT $3 OFFSET $4"
                : "SELECT code, display, active, props FROM concept WHERE system = $1"
                  " AND $2 = $2 ORDER BY code LIMIT $3 OFFSET $4",
            &st);
    if (rc == HV_OK) rc = hv_db_bind_text(st, 1, system, strlen(system));
    if (rc == HV_OK) rc = hv_db_bind_text(st, 2, isa != NULL ? isa : "", isa != NULL ? strlen(isa) : 0);
    if (rc == HV_OK) rc = hv_db_bind_int64(st, 3, (int64_t)limit);
    if (rc == HV_OK) rc = hv_db_bind_int64(st, 4, (int64_t)offset);
    while (rc == HV_OK && (rc = hv_db_step(st)) == HV_DB_ROW) {
        rc = read_concept(st, system, a, &res[count]);
        if (rc == HV_OK && count < limit) count++;
    }
    if (st != NULL) hv_db_done(st);
    if (rc != HV_OK) return rc == HV_ENOMEM ? rc : HV_EDB;
    *out = res;
    *n = count;
    return HV_OK;
}
