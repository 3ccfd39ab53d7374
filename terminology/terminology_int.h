/*
 * terminology_int.h — internals shared by the terminology files: the delimited-text
 * reader (csv.c), the store (store.c), the loaders (load_*.c) and the API (api.c).
 */
#ifndef HV_TERMINOLOGY_INT_H
#define HV_TERMINOLOGY_INT_H

#include <uv.h>
#include <zlib.h>

#include "terminology/terminology.h"

/* ---- csv.c --------------------------------------------------------------- */
typedef struct hv__csv hv__csv_t;
/* sep ',' with quoting for RFC 4180 CSV; '\t' without quoting for RF2. */
int hv__csv_open(const char *path, char sep, int quoting, hv__csv_t **out, hv_error_t *err);
/* The same over a text in memory (borrowed: it must outlive the reader). */
int hv__csv_open_mem(const char *data, size_t len, char sep, int quoting, hv__csv_t **out);
void hv__csv_close(hv__csv_t *c);
/* The next row: HV_OK (fields valid until the next call), HV_ENOTFOUND at the end. */
int hv__csv_next(hv__csv_t *c, char ***fields, size_t *n, hv_error_t *err);
long hv__csv_line(const hv__csv_t *c);
long hv__csv_offset(hv__csv_t *c);

/* ---- store.c ------------------------------------------------------------- */
/*
 * Rows of one table waiting to be inserted with a single multi-row INSERT (a round
 * trip per HV__BATCH_ROWS rows rather than per row: 95,000 ICD-10-CM codes load in
 * seconds on PostgreSQL too). Values are copied into the batch's arena.
 */
#define HV__BATCH_ROWS 100
#define HV__BATCH_COLS 5
typedef struct hv__batch {
    const char *head; /* "INSERT INTO t (a, b) VALUES " */
    const char *tail; /* "" or " ON CONFLICT DO NOTHING" */
    int ncols;
    size_t nrows;
    const char *vals[HV__BATCH_ROWS * HV__BATCH_COLS]; /* NULL binds NULL */
    hv_arena_t *arena;
} hv__batch_t;

/* A load in progress: one transaction that replaces one code system. */
typedef struct hv__load {
    hv_db_t *db;
    const char *system;
    const char *path;
    long total_bytes; /* for progress, 0 if unknown */
    FILE *progress;   /* NULL: silent */
    long concepts;
    uint64_t last_progress_ns;
    hv__batch_t concept, text, parent;
} hv__load_t;

/* Begins the transaction and removes the system's previous concepts. */
int hv__load_begin(hv__load_t *l, hv_db_t *db, const char *system, const char *path, FILE *progress,
                   hv_error_t *err);
/* Adds one concept; search_text (may be NULL) adds words the search finds besides the display. */
int hv__load_concept(hv__load_t *l, const char *code, const char *display, int active,
                     const char *props_json, const char *search_text, hv_error_t *err);
int hv__load_parent(hv__load_t *l, const char *code, const char *parent, hv_error_t *err);
/* Adds a searchable text (a synonym) to a concept. */
int hv__load_text(hv__load_t *l, const char *code, const char *text, hv_error_t *err);
/* Writes the rows still batched (before SQL of a loader's own reads them). */
int hv__load_flush(hv__load_t *l, hv_error_t *err);
/* Records the version and commits; on failure the transaction is rolled back. */
int hv__load_commit(hv__load_t *l, const char *kind, const char *version, hv_error_t *err);
void hv__load_abort(hv__load_t *l);
void hv__load_progress(hv__load_t *l, long bytes_done);

/* The parents (is-a) of a code, at most 64. */
int hv__store_parents(hv_db_t *db, const char *system, const char *code, hv_arena_t *a,
                      const char ***out, size_t *n);
/* The concepts of a system in code order, or (isa not NULL) isa and its descendants. */
int hv__store_list(hv_db_t *db, const char *system, const char *isa, size_t limit, size_t offset,
                   hv_arena_t *a, hv_terminology_concept_t **out, size_t *n);

/* ---- valueset.c ---------------------------------------------------------- */
#define HV__VS_MAX 10000 /* codes in one expansion */
typedef struct hv__vs_item {
    const char *system, *code, *display;
} hv__vs_item_t;
/* An expansion: items in an arena; zero-initialize before use. */
typedef struct hv__vs {
    hv__vs_item_t *items;
    size_t n;
} hv__vs_t;
/* 1 (system and the is-a root, or NULL, set) if url is an implicit value set of a loaded
 * code system (http://loinc.org/vs, <system>?fhir_vs[=isa/<code>]), else 0. */
int hv__vs_implicit(hv_arena_t *a, const char *url, const char **system, const char **isa);
/* Expands a value set: implicit or stored. HV_ENOTFOUND unknown, HV_ETOOBIG over the cap,
 * HV_ENOTSUP a filter operator it does not evaluate, HV_EINVAL a malformed filter. */
int hv__vs_expand(hv_db_t *db, const char *url, hv_arena_t *a, hv__vs_t *out);
int hv__vs_contains(const hv__vs_t *vs, const char *system, const char *code);
/* ---- loaders ------------------------------------------------------------- */
int hv__load_loinc(hv_db_t *db, const char *path, const char *version, FILE *progress,
                   hv_error_t *err);
int hv__load_snomed(hv_db_t *db, const char *path, const char *version, FILE *progress,
                    hv_error_t *err);
int hv__load_icd10cm(hv_db_t *db, const char *path, const char *version, FILE *progress,
                     hv_error_t *err);
int hv__load_cpt(hv_db_t *db, const char *path, const char *version, FILE *progress,
                 hv_error_t *err);
int hv__load_fhir(hv_db_t *db, const char *path, const char *version, FILE *progress,
                  hv_error_t *err);

/* ---- module.c, api.c, standardize.c -------------------------------------- */
struct json_object;

typedef struct hv__cache hv__cache_t;

/* The module's state while serving. */
typedef struct hv__term {
    hv_engine_t *e;
    hv_storage_t *storage; /* owns the module's db connection */
    hv_ucum_t *ucum;       /* the shared UCUM table, or NULL if it failed to load */
    double min_confidence; /* terminology.min_confidence / 100 */
    hv__cache_t *cache;    /* answers of the GET look-ups (cache.c) */
    hv_db_t *member_db;    /* FHIRPath memberOf(): its own connection, under member_lock */
    uv_mutex_t member_lock;
    int member_lock_init;
} hv__term_t;

/* cache.c: loop thread only. get returns 1 and the cached answer (valid until the next
 * put or flush), or 0. */
int hv__cache_new(hv__term_t *t, size_t entries, uint64_t ttl_ms, hv__cache_t **out);
int hv__cache_get(hv__cache_t *c, const char *key, int *status, const char **body, size_t *len);
void hv__cache_put(hv__cache_t *c, const char *key, int status, const char *body, size_t len);
void hv__cache_flush(hv__cache_t *c);
void hv__cache_stop(hv__cache_t *c);
/* Closes the timer; the cache is freed in its close callback. */
void hv__cache_free(hv__cache_t *c);

int hv__api_register(hv__term_t *t);
int hv__standardize_register(hv__term_t *t);
int hv__fhir_ops_register(hv__term_t *t);
/* Parses a JSON request body (object or array); answers 400/415 itself and returns NULL. */
struct json_object *hv__json_body(hv_http_req_t *req);
/* A number written with 15 significant digits. */
struct json_object *hv__json_number(double v);
/* A concept as a JSON object: code, display, active and its props as "properties". */
struct json_object *hv__concept_json(const hv_terminology_concept_t *c);

#endif /* HV_TERMINOLOGY_INT_H */
