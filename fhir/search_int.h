/*
 * search_int.h — internals of FHIR search (FHIR R4 search.html): the write-time
 * index (fhir/search_index.c) and the query side (fhir/search.c).
 *
 * Index tables (the current version of every live resource only; rows are
 * replaced when a version is written, dropped when it is deleted):
 *
 *   sp_str   type, id, code, value               string: lower-case, accent-folded
 *   sp_tok   type, id, code, system, value       token: system (NULL: none), code
 *   sp_ref   type, id, code, rtype, rid          reference: target type and id
 *   sp_date  type, id, code, lo, hi              date: the value's range, epoch ms
 *   sp_num   type, id, code, value, unit         number and quantity (unit: code or unit)
 *   sp_uri   type, id, code, value               uri
 */
#ifndef HV_FHIR_SEARCH_INT_H
#define HV_FHIR_SEARCH_INT_H

#include <stdint.h>

#include "fhir/store_int.h"

/* The migration creating the index tables (the same SQL on both backends). */
extern const char hv__search_migration[];

/*
 * Writes the index rows of the current version of type/id from its tree (NULL or
 * a deletion writes none) after dropping the rows of its previous version (when
 * replace is set). Runs inside the caller's transaction.
 */
int hv__search_index_put(hv_db_t *db, const char *type, const char *id, struct json_object *resource,
                         int replace);

/*
 * The range a FHIR date, dateTime or instant covers given its precision (FHIR R4
 * search.html#date): "2024" covers the year, "2024-03" the month, "2024-03-05" the
 * day, seconds the second, fractional seconds the millisecond. *lo and *hi are the
 * first and last millisecond (inclusive). HV_EINVAL if s is not such a value.
 */
int hv__search_date_range(const char *s, int64_t *lo, int64_t *hi);

/* Lower-cases and folds Latin-1 accents of s into out (NUL-terminated, truncated). */
void hv__search_normalize(const char *s, char *out, size_t cap);

/* The search prefixes of FHIR R4 search.html#prefix. */
typedef enum hv__sp_prefix {
    HV__SP_EQ = 0, HV__SP_NE, HV__SP_GT, HV__SP_LT, HV__SP_GE, HV__SP_LE, HV__SP_SA, HV__SP_EB, HV__SP_AP
} hv__sp_prefix_t;
/* Reads a prefix off the front of *s (eq when none) and advances *s past it. */
hv__sp_prefix_t hv__search_prefix(const char **s);

/* Tables of the store (fhir/search_index.c). */
#define HV__SEARCH_MAX_RESULTS 1000 /* largest _count */

/*
 * Resolves conditional criteria (a raw query string) against the index: fills up
 * to max ids and sets *n (max + 1 meaning "more"). HV_EINVAL with the op failed
 * (400) when the criteria are malformed or name an unknown parameter.
 */
int hv__search_resolve(hv_db_t *db, hv__fop_t *op, char (*ids)[HV__FHIR_ID_MAX], size_t max, size_t *n);

/* ---- plans (fhir/search_plan.c) ---- */

#define HV__SEARCH_MAX_BINDS 200  /* values one query binds */
#define HV__SEARCH_MAX_PARAMS 32  /* parameters (criteria) in one query */

typedef struct hv__sp_bind {
    int kind; /* 0 text, 1 int64, 2 double */
    char *s;
    int64_t i;
    double d;
} hv__sp_bind_t;

enum { HV__SORT_RID = 0, HV__SORT_LASTUPDATED, HV__SORT_ID, HV__SORT_DATE };
enum { HV__TOTAL_ACCURATE = 0, HV__TOTAL_NONE };

/*
 * One search, planned: the matching set as a SQL sub-select (the criteria, values
 * bound, never spliced) plus the result parameters. Built on the loop thread, run
 * on the storage thread.
 */
typedef struct hv__search_plan {
    char type[HV__FHIR_TYPE_MAX];
    hv_buf_t where;       /* " AND ..." clauses over resources r */
    hv__sp_bind_t binds[HV__SEARCH_MAX_BINDS];
    int nbinds;           /* $1 is the type; binds[0] */
    int64_t count;        /* page size */
    int sort, desc;       /* HV__SORT_*, descending */
    char sort_code[64];   /* HV__SORT_DATE: the date parameter sorted on */
    int total;            /* HV__TOTAL_* */
    int summary_count;    /* _summary=count */
    int has_cursor;       /* the cursor: after (ckey, crid) in the sort order */
    int64_t ckey_i;
    char ckey_s[HV__FHIR_ID_MAX];
    int64_t crid;
    hv_buf_t unknown;     /* names of ignored parameters, comma separated */
    hv_buf_t canon;       /* the criteria as a query string, for the links */
    char msg[320];        /* why a plan was refused (400) */
} hv__search_plan_t;

void hv__search_plan_init(hv__search_plan_t *p);
void hv__search_plan_clear(hv__search_plan_t *p);
/*
 * Plans a search of type with query (a raw, percent-encoded query string). strict:
 * unknown parameters are errors. max_count caps _count, def_count is the default.
 * HV_EINVAL with p->msg for a malformed query (400).
 */
int hv__search_plan_build(hv__search_plan_t *p, const char *type, const char *query, int strict,
                          int64_t def_count, int64_t max_count);
/*
 * Limits a plan to the Patient compartment of `patient` (SMART patient/ scopes,
 * fhir/rest_authz.c): the Patient itself for a search of Patient, else the resources
 * whose current version references Patient/patient (the refs index of fhir/store.c).
 * The id is bound, so totals and paging count only what the token may see.
 */
int hv__search_plan_compartment(hv__search_plan_t *p, const char *patient);
/*
 * Runs a plan: calls cb for up to p->count + 1 rows of the page (the extra one says
 * a next page exists) and sets *total (-1 when not asked for). With
 * p->summary_count only the total is computed.
 */
int hv__search_plan_run(hv_db_t *db, const hv__search_plan_t *p, hv__store_row_cb cb, void *ud, int64_t *total);

#endif /* HV_FHIR_SEARCH_INT_H */
