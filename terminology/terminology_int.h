/*
 * terminology_int.h — internals shared by the terminology files: the delimited-text
 * reader (csv.c), the store (store.c), the loaders (load_*.c) and the API (api.c).
 */
#ifndef HV_TERMINOLOGY_INT_H
#define HV_TERMINOLOGY_INT_H

#include <zlib.h>

#include "terminology/terminology.h"

/* ---- csv.c --------------------------------------------------------------- */
typedef struct hv__csv hv__csv_t;
/* sep ',' with quoting for RFC 4180 CSV; '\t' without quoting for RF2. */
int hv__csv_open(const char *path, char sep, int quoting, hv__csv_t **out, hv_error_t *err);
void hv__csv_close(hv__csv_t *c);
/* The next row: HV_OK (fields valid until the next call), HV_ENOTFOUND at the end. */
int hv__csv_next(hv__csv_t *c, char ***fields, size_t *n, hv_error_t *err);
long hv__csv_line(const hv__csv_t *c);
long hv__csv_offset(hv__csv_t *c);

/* ---- store.c ------------------------------------------------------------- */
/* A load in progress: one transaction that replaces one code system. */
typedef struct hv__load {
    hv_db_t *db;
    const char *system;
    const char *path;
    long total_bytes; /* for progress, 0 if unknown */
    FILE *progress;   /* NULL: silent */
    long concepts;
    uint64_t last_progress_ns;
} hv__load_t;

/* Begins the transaction and removes the system's previous concepts. */
int hv__load_begin(hv__load_t *l, hv_db_t *db, const char *system, const char *path, FILE *progress,
                   hv_error_t *err);
/* Adds one concept; search_text (may be NULL) adds words the search finds besides the display. */
int hv__load_concept(hv__load_t *l, const char *code, const char *display, int active,
                     const char *props_json, const char *search_text, hv_error_t *err);
int hv__load_parent(hv__load_t *l, const char *code, const char *parent, hv_error_t *err);
/* Records the version and commits; on failure the transaction is rolled back. */
int hv__load_commit(hv__load_t *l, const char *kind, const char *version, hv_error_t *err);
void hv__load_abort(hv__load_t *l);
void hv__load_progress(hv__load_t *l, long bytes_done);

/* ---- loaders ------------------------------------------------------------- */
int hv__load_loinc(hv_db_t *db, const char *path, const char *version, FILE *progress,
                   hv_error_t *err);
int hv__load_snomed(hv_db_t *db, const char *path, const char *version, FILE *progress,
                    hv_error_t *err);
int hv__load_icd10cm(hv_db_t *db, const char *path, const char *version, FILE *progress,
                     hv_error_t *err);
int hv__load_cpt(hv_db_t *db, const char *path, const char *version, FILE *progress,
                 hv_error_t *err);

/* ---- module.c, api.c, standardize.c -------------------------------------- */
struct json_object;

/* The module's state while serving. */
typedef struct hv__term {
    hv_engine_t *e;
    hv_storage_t *storage; /* owns the module's db connection */
    hv_ucum_t *ucum;       /* the shared UCUM table, or NULL if it failed to load */
    double min_confidence; /* terminology.min_confidence / 100 */
} hv__term_t;

int hv__api_register(hv__term_t *t);
int hv__standardize_register(hv__term_t *t);
/* Parses a JSON request body (object or array); answers 400/415 itself and returns NULL. */
struct json_object *hv__json_body(hv_http_req_t *req);
/* A number written with 15 significant digits. */
struct json_object *hv__json_number(double v);
/* A concept as a JSON object: code, display, active and its props as "properties". */
struct json_object *hv__concept_json(const hv_terminology_concept_t *c);

#endif /* HV_TERMINOLOGY_INT_H */
