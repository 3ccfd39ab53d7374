/*
 * search_int.h — internals of FHIR search (FHIR R4 search.html): the write-time
 * index (fhir/search_index.c) and the query side (fhir/search.c).
 *
 * Index tables (the current version of every live resource only; rows are
 * replaced when a version is written, dropped when it is deleted):
 *
 *   sp_str   type, id, code, value               string: case-folded, marks dropped (search_fold.c)
 *            raw                                 the value unfolded, for :exact (NULL: written before it)
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
/* The second: composite groups (grp) and UCUM-canonical quantities (cvalue, cunit). */
extern const char hv__search_migration2[];
/* The fourth (fhir/search_plan.c, the query side's): covering indexes on token values
 * and date ranges, so that counts and range scans read the index alone. */
extern const char hv__search_migration4[];
/* The sixth (fhir/search_plan.c), per backend: the covering string and reference indexes sp_str_vc, sp_ref_vc. */
extern const char hv__search_migration6_sqlite[];
extern const char hv__search_migration6_pg[];
/*
 * The smallest string above every string starting with s (fhir/search_plan.c): the
 * upper end of a starts-with range. 0 (and out "") when there is none.
 */
int hv__search_prefix_successor(const char *s, char *out, size_t cap);
/* The third (fhir/search_special.c), per backend: the full-text table sp_text (SQLite
 * FTS5 / PostgreSQL tsvector), Location positions sp_geo, the long-date-range index. */
extern const char hv__search_migration3_sqlite[];
extern const char hv__search_migration3_pg[];

#define HV__SEARCH_TEXT_MAX (256 * 1024) /* bytes of _text / _content one resource indexes */

/*
 * Date values whose range spans more than this many milliseconds (32 days: wider
 * than any day- or month-precision value) are "long"; the partial index sp_date_long
 * holds them, so that a date range scans the short values by their start and the
 * long ones by that index (fhir/search_plan.c). The SQL literal must match the index.
 */
#define HV__SEARCH_DATE_SHORT 2764800000LL
#define HV__SEARCH_DATE_SHORT_SQL "2764800000"

/*
 * Writes the special index rows of the current version of type/id (fhir/search_special.c):
 * its full-text row and, for a Location, its position; drops the previous version's
 * first when replace is set. resource NULL (a deletion) writes none. rid: the row of the
 * version written (its full-text row's), 0 when not known (then looked up).
 */
int hv__search_special_put(hv_db_t *db, const char *type, const char *id, struct json_object *resource, int replace,
                           int64_t rid);
/* Runs sql, a statement of two parameters ($1 type, $2 id) that returns no row, through
 * hv_db_step_later (its failure may come from a later call: engine.h) (fhir/search_special.c). */
int hv__search_exec2(hv_db_t *db, const char *sql, const char *type, const char *id);

/*
 * The normalized full text of a resource (fhir/search_special.c): *nar its narrative
 * (text.div, tags stripped), *con the narrative's text and the values of the string and
 * markdown elements (typed by the FHIR model) joined by spaces; both owned by the
 * caller. From its tree, or from its JSON text without building one (the deferred
 * catch-up reads stored versions so); the two give the same text for the same resource.
 * The text form returns HV_EINVAL for text that is not JSON.
 */
int hv__search_text_of_tree(struct json_object *resource, char **nar, char **con);
int hv__search_text_of_json(const char *json, size_t len, char **nar, char **con);
/* The fourth (SQLite only): sp_text_mark, the deferred full-text index's mark. */
extern const char hv__search_migration4_sqlite[];
/* SQLite only: sp_text rebuilt without FTS5's per-row document sizes (columnsize=0),
 * its rows copied, so the mark stays valid (fhir/search_special.c). */
extern const char hv__search_migration_text_nosize_sqlite[];

/*
 * Indexes for _text/_content the versions written since the last catch-up
 * (fhir/search_special.c, SQLite; HV_OK and nothing done on PostgreSQL): at most
 * `limit` versions (0: all of them), moving sp_text_mark past them in the caller's
 * transaction. *indexed (may be NULL) is how many versions it looked at.
 */
int hv__search_text_catch_up(hv_db_t *db, int64_t limit, int64_t *indexed);
/* The catch-up tick's job (SQLite): hv__search_text_catch_up in slices of `slice`
 * versions, `limit` versions at most, stopping early (*yielded = 1) after a full slice
 * once it has read at least twice as many versions as waiting(ud) says other jobs wait
 * for the storage thread (waiting NULL or 0: none). *seen: versions read. */
int hv__search_text_slices(hv_db_t *db, int64_t slice, int64_t limit, int64_t (*waiting)(void *), void *ud,
                           int64_t *seen, int *yielded);

/* The unit vector of a WGS84 position given in degrees. */
void hv__search_geo_vector(double lat, double lon, double *x, double *y, double *z);
#define HV__EARTH_RADIUS_M 6371008.8 /* the mean Earth radius (IUGG), metres */

#define HV__UCUM_SYSTEM "http://unitsofmeasure.org"

/*
 * The UCUM-canonical form of value in unit (terminology/ucum.h, the shared table):
 * *cv and cunit (NUL-terminated, cap bytes). HV_ENOTFOUND when UCUM is not
 * available, HV_EINVAL when unit is not UCUM.
 */
int hv__search_ucum_canon(double v, const char *unit, double *cv, char *cunit, size_t cap);

/* True when the index holds rows for parameter sp (its expression compiled). */
int hv__search_indexed(const hv_fhir_search_t *sp);

/*
 * The code under which the index holds the rows of parameter `code` of type t: `code`
 * itself (the same pointer), or the code of another parameter of t whose rows are equal
 * by definition, which are then the only ones written (fhir/search_index.c, row_alias).
 * Every reader of the index (search_plan.c conditions, search_run.c _sort) binds this
 * code, never the parameter's own.
 */
const char *hv__search_row_code(const hv_fhir_type_t *t, const char *code);
/* The migration deleting the rows row_alias no longer writes (every backend). */
extern const char hv__search_migration_row_alias[];
/* Turns row_alias off (0) or on (1, the default) for the process: unit tests only. */
void hv__search_row_alias_enable(int on);

/*
 * Writes the index rows of the current version of type/id from its tree (NULL or
 * a deletion writes none) after dropping the rows of its previous version (when
 * replace is set). Runs inside the caller's transaction.
 */
int hv__search_index_put(hv_db_t *db, const char *type, const char *id, struct json_object *resource,
                         int replace);
/*
 * Rewrites only the string rows (sp_str) and the special rows (full text, position)
 * of the current version of type/id from its tree: what the string normalization
 * decides (the fold upgrade, fhir/search_reindex.c). Other rows are left as they are.
 * Only string, token and composite parameters are evaluated; a resource past the cap
 * of rows per version (4,096, all tables) may keep string rows a full write drops.
 */
int hv__search_index_put_strings(hv_db_t *db, const char *type, const char *id, struct json_object *resource);

/*
 * The index rows of one resource tree computed ahead of the write, without a
 * database (the import's reader thread computes them while the writer stores the
 * previous Bundle). They depend on the tree only, not on meta.versionId or
 * meta.lastUpdated (no indexed parameter reads those), so rows computed before
 * the write equal those hv__search_index_put would compute from the stored tree.
 * hv__search_index_put_pre writes them instead of computing (pre NULL: computes,
 * as hv__search_index_put); the special rows (near, full text) are still written
 * from the tree. A first version (not replace) may come with pre and no tree on
 * SQLite, for a type other than Location: there its special rows need none (the
 * full-text row is written by the catch-up from the stored text, and only a Location
 * has a near row). resource and pre both NULL: a deleted version, only rows dropped.
 * rid is the version's row id (resources.rid) when the caller has it (the store's
 * INSERT returns it), so that the rows carrying it need no look-up; 0: looked up.
 */
typedef struct hv__search_rows hv__search_rows_t;
/*
 * A resource whose index rows pass a hard limit (fhir/search_index.c: values of one
 * parameter, rows of one version, elements of one composite; fhir/search_combo.c: rows of
 * one combined product) is refused: the computation or write fails with HV_ETOOBIG and
 * hv__search_refusal returns, on the thread that failed, a sentence naming the parameter
 * and the limit, for the write's OperationOutcome (fhir/store_ops.c). hv__search_refuse
 * sets it (printf-style) and returns HV_ETOOBIG; hv__search_refusal_clear empties it.
 */
const char *hv__search_refusal(void);
void hv__search_refusal_clear(void);
int hv__search_refuse(const char *fmt, ...) HV_PRINTF(1, 2);
int hv__search_index_rows(const char *type, struct json_object *resource, hv__search_rows_t **out);
void hv__search_rows_free(hv__search_rows_t *r);
/* Tests and fuzz targets: appends r's rows to out, one a line in the order they were
 * collected (table, code, grp, values), to compare two computations. */
int hv__search_rows_text(const hv__search_rows_t *r, hv_buf_t *out);
/* Whether a composite whose component cannot match the resource's top-level elements is
 * skipped unevaluated (default on; tests turn it off to compare the rows). */
void hv__search_composite_precheck_enable(int on);
/* Whether a parameter whose specialized expression needs top-level elements the resource
 * lacks is skipped unevaluated (default on; tests turn it off to compare the rows). */
void hv__search_spec_precheck_enable(int on);
/* Tests: reading "T.elem" parameters directly instead of evaluating them (on by default). */
void hv__search_direct_enable(int on);
/* Tests: each parameter's expression specialized per resource type (on by default); off, the
 * whole expression is evaluated on every resource, no precheck, no direct read. */
void hv__search_specialize_enable(int on);
int hv__search_index_put_pre(hv_db_t *db, const char *type, const char *id, struct json_object *resource,
                             int replace, const hv__search_rows_t *pre, int64_t rid);

/*
 * A transaction's first versions write their index rows together, one INSERT per table
 * for the rows of all of them, where one per table and version would each pay SQLite's
 * opening and halting of a statement on the table and its indexes (~5.6 k instructions:
 * docs/performance.md, session 15, s15-tx). Rows computed ahead that joined a batch
 * (hv__search_rows_join; NULL leaves it) are not written by hv__search_index_put_pre when
 * it writes them as a first version with its row id: it records the version in the batch
 * (type and id borrowed: they must outlive the flush), and hv__search_batch_flush writes
 * the rows of every version recorded since the last flush, the same rows the versions
 * would have written one by one (only their order in the tables differs). The combined
 * rows (fhir/search_combo.c) are written at once as before. The caller flushes in the
 * same transaction, before anything that may read the index (a search, a conditional
 * entry, another version of a resource) and before its commit; a failed flush fails the
 * transaction. hv__search_batch_clear frees the batch's memory (the rows are the
 * versions'). A zeroed hv__search_batch_t is an empty batch.
 */
typedef struct hv__search_batch {
    struct hv__search_batch_item *items;
    size_t n, cap;
} hv__search_batch_t;
void hv__search_rows_join(hv__search_rows_t *r, hv__search_batch_t *b);
int hv__search_batch_flush(hv_db_t *db, hv__search_batch_t *b);
void hv__search_batch_clear(hv__search_batch_t *b);

/*
 * The range a FHIR date, dateTime or instant covers given its precision (FHIR R4
 * search.html#date): "2024" covers the year, "2024-03" the month, "2024-03-05" the
 * day, seconds the second, fractional seconds the millisecond. *lo and *hi are the
 * first and last millisecond (inclusive). HV_EINVAL if s is not such a value.
 */
int hv__search_date_range(const char *s, int64_t *lo, int64_t *hi);

/*
 * The string search normalization (fhir/search_fold.c): s case-folded and stripped
 * of accents and other combining marks, for all of Unicode, into out (cap bytes,
 * NUL-terminated, truncated at a code point boundary). Returns the bytes written
 * (without the NUL). Invalid UTF-8 in s becomes U+FFFD; the output is valid UTF-8
 * and stable: folding it again gives it back. The output may be longer than s (a
 * compatibility character or an invalid byte expands, at most 11 times here).
 */
size_t hv__search_normalize(const char *s, char *out, size_t cap);
/* The same normalization of the whole of s by the library alone (tests, fuzzing: the reference). */
size_t hv__search_normalize_ref(const char *s, char *out, size_t cap);
/*
 * The unfolded value :exact compares (fhir/search_fold.c): s with each invalid UTF-8
 * byte replaced by U+FFFD, into out (cap bytes, NUL-terminated, cut after the last
 * whole code point that fits). Returns the bytes written (without the NUL).
 */
size_t hv__search_raw(const char *s, char *out, size_t cap);
/* Bytes of an indexed string value, folded or raw, with its NUL (longer ones are cut). */
#define HV__SEARCH_STR_MAX 256
/* The migration adding sp_str.raw, per backend (fhir/search_fold.c). */
extern const char hv__search_migration_raw_sqlite[];
extern const char hv__search_migration_raw_pg[];

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

#define HV__SEARCH_MAX_INCLUDE_PARAMS 16 /* _include and _revinclude parameters in one query */
#define HV__SEARCH_MAX_INCLUDED 1000     /* resources one page includes, all iterations together */
#define HV__SEARCH_MAX_ITERATE 4         /* rounds of :iterate */

/*
 * One _include or _revinclude (FHIR R4 search.html#include): src:code[:target].
 * _include adds the resources that the results of type src reference through the
 * reference parameter code (any reference parameter when code is empty, "*"),
 * restricted to type target when given; _revinclude adds the resources of type src
 * that reference a result through code (restricted to results of type target).
 */
typedef struct hv__sp_include {
    int rev, iterate;
    char src[HV__FHIR_TYPE_MAX];
    char code[64];
    char target[HV__FHIR_TYPE_MAX];
} hv__sp_include_t;

#define HV__SEARCH_MAX_SORT 4 /* keys of one _sort */
#define HV__SEARCH_CURSOR_MAX 8192 /* the longest _cursor value */

/* A sort key: the resources table's last_ms or id, or a parameter's values (the
 * smallest ascending, the largest descending; resources without one come last). */
enum { HV__SORT_LASTUPDATED = 1, HV__SORT_ID, HV__SORT_PARAM };
typedef struct hv__sp_sort {
    int kind, desc;
    hv_fhir_search_type_t st; /* HV__SORT_PARAM: the parameter's type */
    char code[64];
} hv__sp_sort_t;

/* A value of the keyset cursor: one per sort column, then the row id. */
typedef struct hv__sp_ckey {
    int kind; /* 0 text, 1 int64, 2 double (as hv__sp_bind_t) */
    char *s;
    int64_t i;
    double d;
} hv__sp_ckey_t;

enum { HV__TOTAL_ACCURATE = 0, HV__TOTAL_NONE };

/*
 * One search, planned: the matching set as a SQL sub-select (the criteria, values
 * bound, never spliced) plus the result parameters. Built on the loop thread, run
 * on the storage thread.
 */
#define HV__SEARCH_MAX_TYPES 32 /* types of one system-level search (_type) */
#define HV__SEARCH_MAX_VS 4       /* :in / :not-in value sets in one query */
#define HV__SEARCH_MAX_VS_CODES 2000 /* distinct stored codes one :in checks against its value set */

/* A token :in or :not-in (search.html#token): the codes stored under parameter code
 * that are members of value set url, found when the plan runs. */
typedef struct hv__sp_vs {
    char url[512];
    char code[64];
} hv__sp_vs_t;

typedef struct hv__search_plan {
    char type[HV__FHIR_TYPE_MAX]; /* "" for a system-level search */
    /* Set before hv__search_plan_build: a system-level search (GET /fhir?...) and the
     * Patient compartment the search is confined to ("" none). */
    int system;
    char compartment[HV__FHIR_ID_MAX];
    char typesql[640];    /* the condition on r.type the run uses */
    hv_buf_t where;       /* " AND ..." clauses over resources r */
    hv__sp_bind_t binds[HV__SEARCH_MAX_BINDS];
    int nbinds;           /* $1 is the type; binds[0] */
    int64_t count;        /* page size */
    hv__sp_sort_t sort[HV__SEARCH_MAX_SORT]; /* _sort; none: by row id */
    int nsort;
    int total;            /* HV__TOTAL_* */
    int summary_count;    /* _summary=count */
    int has_cursor;       /* the cursor: after (ckeys..., crid) in the sort order */
    hv__sp_ckey_t ckeys[2 * HV__SEARCH_MAX_SORT];
    int nckeys;
    int64_t crid;
    hv__sp_include_t inc[HV__SEARCH_MAX_INCLUDE_PARAMS];
    int ninc;
    hv__sp_vs_t vs[HV__SEARCH_MAX_VS]; /* "@VS<k>@" in where marks where its members go */
    int nvs;
    /* Set by hv__search_tok_pin: every index row of the one token value has the system the
     * criterion names — the value's placeholder (0: not known) and the code's. */
    int tok_one, tok_code;
    /* index_ids' criterion of few index rows that drives it (fhir/search_run.c), plus
     * one: 0 not counted yet, -1 counted and none. */
    int few;
    /*
     * Correlation of the top-level criteria (fhir/search_run.c): criterion k's
     * sub-selects carry markers "@C<k>@" (before "code = ...": becomes "id = r.id AND ")
     * or "@R<k>@" ("rid = r.id AND "); crank[k] is how selective the criterion looks
     * (0 _id, 1 a reference, 2 a token... 9 :not/:missing; 99 unknown). The lowest-ranked
     * criterion drives the query (its sub-select is read once); the others are checked
     * per candidate row through the (type, id) indexes instead of being read whole.
     */
    int crit, ncrit;
    unsigned char crank[HV__SEARCH_MAX_PARAMS + 1];
    /* Where criterion k's text (" AND r.id ...") starts and ends in where: the run counts
     * from the index tables alone when every criterion is a plain index sub-select. */
    size_t cspan[HV__SEARCH_MAX_PARAMS + 1][2];
    /* During hv__search_plan_build of a system-level search: its _type list (for _sort). */
    const char (*systypes)[HV__FHIR_TYPE_MAX];
    int nsystypes;
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
 * True when the planner answers parameter sp of resource type t (fhir/search_plan.c):
 * the table the CapabilityStatement lists (fhir/rest_capability.c). The others are
 * refused with 501 naming them.
 */
int hv__search_supported(const hv_fhir_type_t *t, const hv_fhir_search_t *sp);
/* _sort=[-]key,... (fhir/search_run.c); HV_EINVAL with p->msg. */
int hv__search_sort_parse(hv__search_plan_t *p, const char *v);
/* _cursor: HV_EINVAL when it is not one made by hv__search_plan_run. */
int hv__search_cursor_parse(hv__search_plan_t *p, const char *v);
/* HV_EINVAL when the cursor's values do not fit the plan's _sort. */
int hv__search_cursor_check(const hv__search_plan_t *p);

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
 * p->summary_count only the total is computed. Each row's cursor field holds the
 * _cursor value that continues after it (valid during the call). A value set of
 * :in / :not-in that cannot be expanded fails with HV_EINVAL and p->msg naming it.
 */
int hv__search_plan_run(hv_db_t *db, hv__search_plan_t *p, hv__store_row_cb cb, void *ud, int64_t *total);

/*
 * The resources p's _include and _revinclude parameters add to a page whose matches
 * are the n resources types[i]/ids[i] (fhir/search_include.c): calls cb once for
 * each resource added (never a match, never twice), at most HV__SEARCH_MAX_INCLUDED,
 * iterating :iterate parameters over what was added up to HV__SEARCH_MAX_ITERATE
 * rounds. Runs on the storage thread.
 */
/*
 * The statement one chunk of nids results runs for _include or _revinclude parameter
 * in (fhir/search_include.c; its placeholders are described there), naming SQLite's
 * sp_ref_idc when hint is set (hv__search_values_hinted; else PostgreSQL, or the index is
 * deferred), into q; for
 * _revinclude=src:* codes (HV__SEARCH_MAX_REV_CODES) receive the codes it binds and
 * *ncodes their number. Exposed so that a test can check its query plan.
 */
#define HV__SEARCH_MAX_REV_CODES 64 /* reference parameters of one type (Resource's and its own) */
int hv__search_include_sql(const hv__sp_include_t *in, size_t nids, int hint, hv_buf_t *q, const char **codes,
                           size_t *ncodes);
int hv__search_include_run(hv_db_t *db, const hv__search_plan_t *p, const char (*types)[HV__FHIR_TYPE_MAX],
                           const char (*ids)[HV__FHIR_ID_MAX], size_t n, hv__store_row_cb cb, void *ud);

/* The resources a reindex left with their old index rows because their new rows pass a
 * limit of the index (hv__search_refusal): how many, and "Type/id: the refusal" of the first. */
typedef struct hv__search_refused {
    size_t n;
    char first[640];
} hv__search_refused_t;
/*
 * Reindexes up to batch current live resources (of type, or all when NULL) whose row
 * id is above *after, in row-id order, inside the caller's transaction
 * (fhir/search_reindex.c). Sets *done (the resources reindexed), advances *after, and
 * sets *more when rows remain. A resource whose new rows pass a limit of the index keeps
 * its old rows (a savepoint each) and is counted in *refused instead of failing the batch.
 */
int hv__search_reindex_batch(hv_db_t *db, const char *type, int64_t *after, size_t batch, size_t *done, int *more,
                             hv__search_refused_t *refused);
/*
 * The fold upgrade (fhir/search_reindex.c): the migration creating its mark, the
 * pass that reindexes the resources whose strings fold differently since the
 * Unicode normalization (run where the store is opened to serve; *reindexed, may be
 * NULL, is how many), and the mark's end (a full reindex makes the pass needless).
 */
extern const char hv__search_migration_fold[];
int hv__search_fold_upgrade(hv_db_t *db, size_t *reindexed);
int hv__search_fold_done(hv_db_t *db);

/* ---- combined token + date / quantity rows (fhir/search_combo.c) ---- */

/* The fifth migration (both backends): sp_tokdate and sp_tokqty, filled from the plain rows. */
extern const char hv__search_migration5[];
/*
 * Whether the rows just written for a resource hold a row of `code` (in any group) in
 * table ("sp_tok", "sp_date", "sp_num" or "sp_ref"). The fills skip a pair one of whose
 * sides has none: its INSERT ... SELECT, which joins those rows, would select nothing.
 */
typedef int (*hv__search_rows_has_fn)(void *ud, const char *table, const char *code);
/*
 * Rewrites the combined rows of type/id (Observation code × date, code × value-quantity)
 * from its plain rows in the tables, in SQL, in the caller's transaction: drops the old
 * ones when replace is set, writes new ones when live (the version is not a deletion).
 * has (NULL: every pair is written) tells which pairs can have rows. The writer only
 * drops rows with it (replace, not live); the fills are the definition of the rows
 * hv__search_combo_put_rows computes, which the unit tests compare with them.
 */
int hv__search_combo_put(hv_db_t *db, const char *type, const char *id, int live, int replace,
                         hv__search_rows_has_fn has, void *ud);
/* One value column of a plain index row as the writer holds it (fhir/search_index.c):
 * kind HV__SEARCH_V_NULL, _TEXT (s), _INT (i) or _DOUBLE (d). */
enum { HV__SEARCH_V_NULL = 0, HV__SEARCH_V_TEXT, HV__SEARCH_V_INT, HV__SEARCH_V_DOUBLE };
typedef struct hv__search_val {
    int kind;
    const char *s;
    int64_t i;
    double d;
} hv__search_val_t;
/* Binds v to parameter idx of st; a text is bound without a copy, so the value must outlive
 * the statement's step (fhir/search_index.c). */
void hv__search_bind_val(hv_db_stmt_t *st, int idx, const hv__search_val_t *v);
/*
 * The plain rows of one version in hand (the writer's, fhir/search_index.c): sets out[k]
 * to the value columns (in the table's column order after type, id, code, grp) of the
 * k-th row of table ("sp_tok", "sp_date", "sp_num", "sp_ref") under code — of group 0
 * only when grp0 is set — for k < max, and returns how many rows there are (more than
 * max: only max were set); (size_t)-1 when the writer does not hold that table. The
 * pointers live as long as the rows.
 */
typedef size_t (*hv__search_rows_pick_fn)(void *ud, const char *table, const char *code, int grp0,
                                          const hv__search_val_t **out, size_t max);
/*
 * Writes the combined rows (and the reference x token rows: hv__search_has_put_rows) of
 * the version of type/id just written, computed from its plain rows in hand (pick) — the
 * rows hv__search_combo_put's fill statements would select from the tables, inserted
 * with bound multi-row INSERTs. The caller has dropped the old ones (a replace) and
 * writes only a live version. rid is the version's row id (0: looked up; no stored
 * resource: no combined rows, as the fills' LIVE rule). In the caller's transaction.
 */
int hv__search_combo_put_rows(hv_db_t *db, const char *type, const char *id, int64_t rid,
                              hv__search_rows_pick_fn pick, void *ud);
/* The rows one combined product (a pair of fhir/search_combo.c or fhir/search_has.c) may
 * write for one resource; a resource with more is refused (hv__search_refusal). */
#define HV__SEARCH_CROSS_MAX 100000
#define HV__SEARCH_PICK_STACK 64 /* a factor's rows picked without an allocation */
/* The tables hv__search_cross_insert writes. */
enum { HV__CROSS_TOKDATE, HV__CROSS_TOKQTY, HV__CROSS_REFTOK };
/* One cross product: the na rows a (code acode) times the nb rows b (code bcode). */
typedef struct hv__search_cross {
    const char *acode, *bcode;
    const hv__search_val_t *const *a, *const *b;
    size_t na, nb;
} hv__search_cross_t;
/*
 * The two factors of one cross product for type: the rows pick selects of (atable, acode)
 * and of (btable, bcode) (grp0: group-0 rows only), into x with x->a and x->b in the
 * caller's rooms sa and sb (HV__SEARCH_PICK_STACK each) when they fit, else allocated.
 * Returns HV_OK (x->na or x->nb 0: nothing to join, a table the writer does not hold
 * included), HV_ENOMEM, or HV_ETOOBIG with a refusal (hv__search_refuse) when the product
 * passes HV__SEARCH_CROSS_MAX rows. hv__search_cross_release frees what was allocated,
 * whatever was returned.
 */
int hv__search_cross_pick(hv__search_rows_pick_fn pick, void *ud, const char *type, const char *atable,
                          const char *acode, const char *btable, const char *bcode, int grp0,
                          const hv__search_val_t **sa, const hv__search_val_t **sb, hv__search_cross_t *x);
void hv__search_cross_release(hv__search_cross_t *x, const hv__search_val_t **sa, const hv__search_val_t **sb);
/*
 * Inserts the rows of the nx cross products x into table tab for type/id (rid: the
 * version's row id, for the tables that hold one), in as few multi-row INSERTs as their
 * total allows: each row is (acode, a's value columns, bcode, b's value columns) after
 * type, id[, rid].
 */
int hv__search_cross_insert(hv_db_t *db, int tab, const char *type, const char *id, int64_t rid,
                            const hv__search_cross_t *x, size_t nx);
/* Turns the planner's rule on or off for the process (setting fhir.search_combined). */
void hv__search_combo_enable(int on);
/* The default _total of a search holding a top-level _has: accurate (1) or none (0, the
 * page stops at its matches; setting fhir.search_has_total, fhir/search_plan.c). */
void hv__search_has_total_enable(int accurate);
/* The plan of the page of a search holding a top-level _has whose total is not asked for:
 * candidates in row-id order, each checked against the _has until _count + 1 match
 * (fhir/search_run.c), every value bound as the page binds them; SQLite's EXPLAIN QUERY
 * PLAN details or PostgreSQL's EXPLAIN lines, one per line. HV_ENOTFOUND when the plan is
 * not of that shape. */
int hv__search_has_explain(hv_db_t *db, hv__search_plan_t *p, hv_buf_t *out);
/* The plan of the page of a type's search without criteria (`Type?_count=N` and its next
 * pages: fhir/search_run.c, type_page), every value bound as the page binds them, as
 * hv__search_has_explain gives it. HV_ENOTFOUND when the plan is not of that shape. */
int hv__search_type_explain(hv_db_t *db, hv__search_plan_t *p, hv_buf_t *out);
/* Steps st (rid, type, id, version, last_ms first, the JSON in column textcol), each row
 * handed to cb with the cursor of the default order (the row id); HV_DB_DONE at the end,
 * else the failing step's or cb's status. The caller finishes st. */
int hv__search_rid_rows(hv_db_stmt_t *st, int textcol, hv__store_row_cb cb, void *ud);
/*
 * The planner's rule (after hv__search_plan_build's criteria): a plain token criterion
 * and a date / quantity criterion of a pair become one criterion over the combined
 * table. Leaves the plan as it was when its shape does not fit.
 */
int hv__search_combo_rewrite(hv__search_plan_t *p);
/* True when the plan is one combined criterion alone, in row-id order (no _sort). */
int hv__search_combo_only(const hv__search_plan_t *p);
/* Appends the combined criterion's sub-select (markers dropped) selecting the resource
 * ids (ids set) or the current versions' row ids. */
int hv__search_combo_sql(const hv__search_plan_t *p, hv_buf_t *q, int ids);
/* Runs the page of a hv__search_combo_only or hv__search_tok_only plan: up to
 * p->count + 1 rows after the cursor, in row-id order, read from the combined index (or
 * sp_tok_sr) and then resources by row id. */
int hv__search_combo_page(hv_db_t *db, const hv__search_plan_t *p, hv__store_row_cb cb, void *ud);
/* The statement of hv__search_combo_page into q: $nbinds + 1 the cursor's row id (0:
 * none), $nbinds + 2 the limit. Exposed so that a test can check its query plan. */
int hv__search_page_sql(hv_db_t *db, const hv__search_plan_t *p, hv_buf_t *q);
/* The seventh migration of the index (per backend): sp_tok.rid, filled, and sp_tok_rc. */
extern const char hv__search_migration7_sqlite[];
extern const char hv__search_migration7_pg[];
/*
 * True when the plan is one token criterion alone with one value (code=X, system|X,
 * |X; no OR, no modifier but :identifier/:of-type's derived rows), in row-id order, of
 * one type: its page is a range of sp_tok_sr from the cursor (hv__search_combo_page).
 */
int hv__search_tok_only(const hv__search_plan_t *p);
/* Turns that page on or off for the process (setting fhir.search_token_rid). */
void hv__search_tok_enable(int on);
/* The tenth migration of the index (per backend): sp_tok_rc replaced by sp_tok_sr
 * (type, code, value, system, rid) (fhir/search_combo.c). */
extern const char hv__search_migration10_sqlite[];
extern const char hv__search_migration10_pg[];
/* The eleventh (per backend): sp_tok_vc dropped, sp_tok_sr (type, code, value, system,
 * rid, id) covers its readers (fhir/search_combo.c). */
extern const char hv__search_migration11_sqlite[];
extern const char hv__search_migration11_pg[];
/* PostgreSQL's: sp_tok_idc (type, id, code, value), a token checked per candidate one
 * seek (fhir/search_combo.c). */
extern const char hv__search_migration_idcv_pg[];
/*
 * A hv__search_tok_only plan whose value names no system (code=X, :of-type without a
 * system): when every index row of the value has one and the same system (or none),
 * that system is written into the criterion ("(system = $n AND value = $v)", the new
 * placeholder bound to it, or "system IS NULL AND"): the same matches, now one range
 * of sp_tok_sr in row-id order (the page) whose entries are counted without a check
 * each (hv__search_tok_counts_rows). Two probes of sp_tok_sr, its first and its last
 * system. Any other plan, a value under several systems, or none: p is left as it is.
 * A value whose criterion names a system is probed too: when all its rows have that
 * system, p->tok_one is set and its count reads the (type, code, value) range.
 */
int hv__search_tok_pin(hv_db_t *db, hv__search_plan_t *p);
/*
 * True when p is a hv__search_tok_only plan that names its system (system|X, |X, or
 * pinned): a resource holds at most one index row of one (code, system, value) — the
 * index writer drops duplicates of a version (fhir/search_index.c, add_row) and keeps
 * the current version's rows only — so COUNT(*) of the range is the number of matches.
 */
int hv__search_tok_counts_rows(const hv__search_plan_t *p);
/*
 * Prepares q, a statement using some of p's placeholders, with those renumbered $1, $2, ...
 * in their order of first use and bound to their values: PostgreSQL refuses a statement
 * given values for placeholders it does not use (their types cannot be inferred). A '$'
 * followed by a digit is always a placeholder in the planner's text (values are bound).
 * (fhir/search_run.c)
 */
int hv__search_prepare_used(hv_db_t *db, const hv__search_plan_t *p, const char *q, hv_db_stmt_t **st);
/* The eighth migration of the index (per backend): sp_str.rid, filled, and sp_str_rc. */
extern const char hv__search_migration8_sqlite[];
extern const char hv__search_migration8_pg[];
/* PostgreSQL: the partial index of token rows without a system ("|code"): fhir/search_combo.c. */
extern const char hv__search_migration_nosys_pg[];
/*
 * While a serving SQLite store has its search indexes dropped (a first Bulk sync into an
 * empty store: adapters/ehr/bulk.c, fhir/import.c hv__import_defer_indexes_job), the
 * statements here that name an index of the search tables with INDEXED BY (sp_str_rc,
 * sp_tok_sr, the (type, id, code) *_idc), which SQLite refuses when the index
 * is missing, leave the name out: the planner takes another index or scans, and the answer
 * is the same. hv__search_values_deferred counts, for the process, the deferrals under way
 * (any thread): +1 on the storage thread before the drop, -1 once the indexes are built
 * again and committed, or the drop did not happen. hv__search_values_hinted: the backend
 * is SQLite and none is under way; while one is, a write that replaces a stored resource's
 * rows builds the writer's indexes first (hv__search_index_put_pre).
 */
void hv__search_values_deferred(int delta);
int hv__search_values_hinted(hv_db_t *db);
/* True while a deferral is under way (any backend): the full-text tick waits for its end. */
int hv__search_values_deferring(void);
/*
 * True when the plan is one string criterion alone with one value (starts-with or
 * :exact; not :contains, :text or a list), in row-id order, of one type: its page is the
 * range of sp_str_rc, its row ids sorted and cut (hv__search_combo_page).
 */
int hv__search_str_only(const hv__search_plan_t *p);
/* Turns that page on or off for the process (setting fhir.search_string_rid). */
void hv__search_str_enable(int on);
/* True when [s, e) holds only what a token criterion's values write (the columns system
 * and value, IS NULL, AND, OR, =, parentheses, placeholders), and the same text with the
 * columns renamed tsys and tval appended to b (fhir/search_combo.c). */
int hv__search_token_cond_ok(const char *s, const char *e);
void hv__search_token_cond(hv_buf_t *b, const char *s, const char *e);

/* Runs one statement with $1 type, $2 id and, when a is given, $3 a and $4 b, through
 * hv_db_step_later (fhir/search_combo.c: the combined rows' fill and delete). */
int hv__search_exec_tid(hv_db_t *db, const char *sql, const char *type, const char *id, const char *a,
                        const char *b);
/* Runs q, a statement of one row and column, with p's values bound: *count set from it
 * (fhir/search_run.c). */
int hv__search_count_run(hv_db_t *db, const hv__search_plan_t *p, const char *q, int64_t *count);

/* ---- reference x token rows of reverse chaining (fhir/search_has.c) ---- */

/* The ninth migration of the index (per backend): sp_reftok, filled, and resources_dead. */
extern const char hv__search_migration9_sqlite[];
extern const char hv__search_migration9_pg[];
/* Rewrites the reference x token rows of type/id from its plain rows just written, in the
 * caller's transaction (as hv__search_combo_put, which calls it). */
int hv__search_has_put(hv_db_t *db, const char *type, const char *id, int live, int replace,
                       hv__search_rows_has_fn has, void *ud);
/* The same rows computed from the plain rows in hand (see hv__search_combo_put_rows, which
 * calls it): the caller has dropped the old ones. */
int hv__search_has_put_rows(hv_db_t *db, const char *type, const char *id, hv__search_rows_pick_fn pick, void *ud);
/* Its fill statement ($1 type, $2 id, $3 reference code, $4 token code), for a plan test. */
const char *hv__search_has_fill_sql(hv_db_t *db);
/* Turns the planner's rule on or off for the process (setting fhir.search_has_rows). */
void hv__search_has_rows_enable(int on);
/*
 * The planner's rule, called by has() (fhir/search_plan.c) once the _has's text is in
 * p->where from start (its head; the referencing resource's condition from inner): when
 * the condition is a plain token criterion of a pair the table holds, rewrites that text
 * into one sub-select of sp_reftok. k: the top-level criterion (its "@E<k>@" and "@R<k>@"
 * markers), or -1 below the top level (then "<idcol> IN (...)"). tb and rb: the
 * placeholders of the referencing type and the reference code; tref: the referenced
 * type's SQL. Leaves the text as it was when it does not fit.
 */
int hv__search_has_rewrite(hv__search_plan_t *p, size_t start, size_t inner, int k, const char *idcol,
                           const char *type, const char *rcode, int tb, int rb, const char *tref);
/* The number of matches of a plan that is one rewritten top-level _has alone, from the
 * index (its distinct referenced ids that are current live resources); HV_ENOTFOUND when
 * the plan is not of that shape. hv__search_has_count_sql writes the statement. */
int hv__search_has_count(hv_db_t *db, const hv__search_plan_t *p, int64_t *count);
int hv__search_has_count_sql(hv_db_t *db, const hv__search_plan_t *p, hv_buf_t *q);

/* The plan (SQLite's EXPLAIN QUERY PLAN details, PostgreSQL's EXPLAIN lines, one per line) of
 * the statement that counts the matches of p from the index alone (fhir/search_run.c);
 * HV_ENOTFOUND when p is not counted so. */
int hv__search_count_explain(hv_db_t *db, hv__search_plan_t *p, hv_buf_t *out);
/* Binds the plan's values to $1..$nbinds of st (fhir/search_run.c). */
void hv__search_bind_plan(hv_db_stmt_t *st, const hv__search_plan_t *p);
/* Refreshes the query planner's statistics (after `holovitals import` and `reindex`) of
 * the tables a bulk write changes: on PostgreSQL those of the store's schema only, and
 * without resources and refs when index_only is set (a reindex rewrites index rows only).
 * SQLite analyzes the whole file (sampled). fhir/search_combo.c. */
int hv__search_analyze(hv_db_t *db, int index_only);

#endif /* HV_FHIR_SEARCH_INT_H */
