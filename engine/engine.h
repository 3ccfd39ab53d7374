/*
 * engine.h — the public interface of the HoloVitals runtime.
 *
 * engine/ is the ground every module stands on. It includes no module: modules
 * register what they provide (settings, CLI commands, HTTP routes, health checks,
 * metrics) through the tables and registries declared here, and modules.c — the
 * one place that knows them all — hands those tables to hv_main().
 *
 * Conventions (see STYLE.md):
 *   - Every status is an int: 0 is HV_OK, failures are the negative HV_E* codes.
 *     HV_AGAIN means "need more input" and is never a protocol error.
 *   - Parameters are borrowed, return values are owned by the caller, unless the
 *     name says otherwise (_take). Out-parameters are set only on success.
 *   - _new/_free for heap objects (free accepts NULL), _init/_close for handles
 *     with asynchronous teardown, _start/_stop for activity, _feed for parsers.
 */
#ifndef HV_ENGINE_H
#define HV_ENGINE_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__)
#define HV_PRINTF(f, a) __attribute__((format(printf, f, a)))
#define HV_UNUSED __attribute__((unused))
#else
#define HV_PRINTF(f, a)
#define HV_UNUSED
#endif

#define HV_ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

/* ------------------------------------------------------------------------- */
/* Status codes                                                              */
/* ------------------------------------------------------------------------- */

enum hv_status {
    HV_OK = 0,
    HV_ENOMEM = -1,     /* an allocation failed */
    HV_EINVAL = -2,     /* invalid argument or invalid input */
    HV_AGAIN = -3,      /* need more input (incremental parsers); not an error */
    HV_EIO = -4,        /* an operating-system I/O call failed */
    HV_ENOTFOUND = -5,  /* the thing asked for does not exist */
    HV_ETOOBIG = -6,    /* a configured cap was exceeded */
    HV_EPROTO = -7,     /* a peer or document broke its protocol or syntax */
    HV_ECONFIG = -8,    /* configuration is invalid */
    HV_ENOTSUP = -9,    /* a feature that is not supported */
    HV_ECONFLICT = -10, /* a version or uniqueness conflict */
    HV_EBUSY = -11,     /* a bounded queue is full: back off */
    HV_ETIMEDOUT = -12, /* a deadline passed */
    HV_EDB = -13,       /* the database reported an error */
    HV_EPERM = -14,     /* not allowed */
    HV_ECLOSED = -15,   /* the object is closing or closed */
    HV_EUSAGE = -16     /* bad command-line usage */
};

/* A static English description of a status code. */
const char *hv_strerror(int status);

/*
 * A detailed error: what failed and where. Parsers, validators, mappers and the
 * configuration loader fill one. `location` is a path in the input's own terms
 * ("PID-3[2].1", "Patient.name[0].given", "channels/a.json"), and line/column
 * are 1-based positions in a text input, 0 when not applicable.
 */
typedef struct hv_error {
    int code;
    int line;
    int column;
    char location[256];
    char message[512];
} hv_error_t;

void hv_error_clear(hv_error_t *err);
/* Sets code, location (may be NULL) and a formatted message. NULL err is a no-op. */
void hv_error_set(hv_error_t *err, int code, const char *location, const char *fmt, ...)
    HV_PRINTF(4, 5);
/* Formats "location:line:column: message" (the parts that are set) into out. */
void hv_error_format(const hv_error_t *err, char *out, size_t outlen);

/* ------------------------------------------------------------------------- */
/* Memory                                                                    */
/* ------------------------------------------------------------------------- */

/*
 * All heap allocation goes through these so that tests can fail the Nth one
 * (configure --enable-fault-injection; hv_alloc_fail_after()). hv_free(NULL) is a no-op.
 */
void *hv_malloc(size_t n);
void *hv_calloc(size_t count, size_t size);
void *hv_realloc(void *p, size_t n);
void hv_free(void *p);
char *hv_strdup(const char *s);
char *hv_strndup(const char *s, size_t n);
/* Fault injection: make the nth allocation from now fail (1 = the next one); 0 disables.
 * Has effect only in builds configured with --enable-fault-injection. */
void hv_alloc_fail_after(long nth);

/*
 * An arena: memory for one message or request, freed in one call. Foreign objects
 * (json-c trees, libxml2 documents, statements) register a cleanup that runs when
 * the arena is freed, last registered first.
 */
typedef struct hv_arena hv_arena_t;

hv_arena_t *hv_arena_new(size_t block_size); /* 0 picks the default (8 KiB) */
void hv_arena_free(hv_arena_t *a);
/* Frees everything allocated so far, keeps the first block for reuse. */
void hv_arena_reset(hv_arena_t *a);
void *hv_arena_alloc(hv_arena_t *a, size_t n); /* 16-byte aligned; NULL on ENOMEM */
void *hv_arena_calloc(hv_arena_t *a, size_t n);
char *hv_arena_strndup(hv_arena_t *a, const char *s, size_t n);
char *hv_arena_strdup(hv_arena_t *a, const char *s);
char *hv_arena_sprintf(hv_arena_t *a, const char *fmt, ...) HV_PRINTF(2, 3);
int hv_arena_cleanup_add(hv_arena_t *a, void (*fn)(void *), void *data);
size_t hv_arena_bytes(const hv_arena_t *a); /* bytes handed out so far */

/*
 * A growable byte buffer with a cap. `max` of 0 means no cap; appending past the
 * cap fails with HV_ETOOBIG and leaves the buffer as it was. data is always
 * NUL-terminated when non-NULL (the NUL is not counted in len).
 */
typedef struct hv_buf {
    char *data;
    size_t len;
    size_t cap;
    size_t max;
} hv_buf_t;

void hv_buf_init(hv_buf_t *b, size_t max);
/* 1 when extra more bytes (and the terminating NUL) fit without growing and within the
 * cap: the test hv_buf_reserve makes first, for writers that store bytes themselves. */
static inline int hv_buf_has_room(const hv_buf_t *b, size_t extra) {
    return b->len + extra < b->cap && (b->max == 0 || b->len + extra <= b->max);
}
void hv_buf_release(hv_buf_t *b); /* frees the storage; the buffer may be reused */
/* The size of a batch that grows with the work done before it: a quarter of done, within
 * [lo, hi] (lo when hi < lo), and at least 1. Why a quarter: a batch that is one commit
 * rewrites the random index leaves its rows land on, so its cost per row falls as it grows
 * with the store (fhir/import.c due_commit, adapters/ehr/bulk.c chunk_lines). */
static inline uint64_t hv_batch_grown(uint64_t done, uint64_t lo, uint64_t hi) {
    uint64_t n = done / 4;
    if (n > hi) n = hi;
    if (n < lo) n = lo;
    return n > 0 ? n : 1;
}
void hv_buf_reset(hv_buf_t *b);   /* len = 0, keeps the storage */
int hv_buf_reserve(hv_buf_t *b, size_t extra);
int hv_buf_append(hv_buf_t *b, const void *p, size_t n);
int hv_buf_puts(hv_buf_t *b, const char *s);
int hv_buf_putc(hv_buf_t *b, char c);
int hv_buf_printf(hv_buf_t *b, const char *fmt, ...) HV_PRINTF(2, 3);
int hv_buf_vprintf(hv_buf_t *b, const char *fmt, va_list ap);
/* Appends s (n bytes) as a quoted JSON string, escaping as RFC 8259 §7 requires. When the
 * result would pass the buffer's cap (HV_ETOOBIG) or room cannot be had, nothing is appended. */
int hv_buf_json_str(hv_buf_t *b, const char *s, size_t n);
/* Removes the first n bytes. */
void hv_buf_consume(hv_buf_t *b, size_t n);
/* Returns the storage (NUL-terminated, owned by the caller) and empties the buffer. */
char *hv_buf_take(hv_buf_t *b);
/* Reads the whole file at path ("-": standard input) into *out, NUL-terminated and owned by
 * the caller, *len bytes; max bytes at most (0: no cap). On failure err's location is the
 * path and its message "cannot read: " with the system's reason (HV_EIO) or "larger than
 * max bytes" (HV_ETOOBIG). */
int hv_file_read(const char *path, size_t max, char **out, size_t *len, hv_error_t *err);

/* ------------------------------------------------------------------------- */
/* Small utilities                                                           */
/* ------------------------------------------------------------------------- */

uint64_t hv_now_ms(void);           /* wall clock, ms since the epoch */
uint64_t hv_mono_ns(void);          /* monotonic clock */
/* RFC 3339 UTC timestamp with milliseconds ("2026-11-25T18:27:48.123Z"); out >= 32 bytes. */
void hv_time_rfc3339(uint64_t ms, char *out, size_t outlen);
/* Fills p with n bytes from a fast non-cryptographic generator (per thread, seeded from
 * the OS). Not for secrets: use hv_random_secure for those. */
void hv_random_fast(void *p, size_t n);
int hv_random_secure(void *p, size_t n);
void hv_hex(const void *p, size_t n, char *out); /* out holds 2n+1 bytes */
/* Writes v's decimal digits backwards so that the last one is just before end; returns
 * the first. Up to 20 digits: the caller leaves room for them before end. Without
 * snprintf, for the counters a write path prints (ETag, meta.versionId, JSON integers). */
static inline char *hv_u64_digits(uint64_t v, char *end) {
    do {
        *--end = (char)('0' + v % 10);
        v /= 10;
    } while (v > 0);
    return end;
}
/* Parses "16MiB", "64k", "1000" into bytes. */
int hv_parse_size(const char *s, uint64_t *out);
/* Parses "30s", "500ms", "5m", "2h", "1000" (ms) into milliseconds. */
int hv_parse_duration_ms(const char *s, uint64_t *out);
/* Parses "host:port", "[v6]:port" or ":port" into host (default 0.0.0.0) and port. */
int hv_parse_hostport(const char *s, char *host, size_t hostlen, int *port);
/* Decodes %XX and (if plus_is_space) '+' in place; returns the new length or -1 on a bad escape. */
long hv_url_decode(char *s, size_t n, int plus_is_space);
/* Whether regcomp would build an outsized automaton from POSIX extended expression pat
 * (untrusted: FHIRPath matches(), ValueSet regex filters): a quantifier stacked on another
 * ("a++", "a*{2}"), or repetitions whose product times the pattern's length exceeds a bound —
 * glibc copies an atom's tree once per "+" and per count of "{m,n}", so "a" followed by 28
 * "+" asked for gigabytes; and back-references ("\1"), whose matching backtracks. Returns
 * NULL when it may be compiled, else a static reason. */
const char *hv_regex_too_costly(const char *pat, size_t n);

/* ------------------------------------------------------------------------- */
/* JSON helpers (json-c)                                                     */
/* ------------------------------------------------------------------------- */

struct json_object;

/*
 * Parses JSON text that may contain // and block comments (channel files, config).
 * On a syntax error fills err with line and column and returns HV_EPROTO.
 * The returned tree is owned by the caller (json_object_put).
 */
int hv_json_parse(const char *text, size_t len, const char *origin, struct json_object **out,
                  hv_error_t *err);
/*
 * The position of every value in a JSON text, by JSON Pointer ("/http/listen",
 * "/destinations/0/url"). Used to put file:line:column on semantic errors, which
 * json-c cannot do since it keeps no positions.
 */
typedef struct hv_json_pos hv_json_pos_t;
hv_json_pos_t *hv_json_pos_new(const char *text, size_t len);
void hv_json_pos_free(hv_json_pos_t *p);
/* Looks up a pointer; returns 0 and sets line/column, or HV_ENOTFOUND. */
int hv_json_pos_get(const hv_json_pos_t *p, const char *pointer, int *line, int *column);
/* The position of the key naming the member at pointer ("/http/lisen" → where "lisen" is). */
int hv_json_pos_get_key(const hv_json_pos_t *p, const char *pointer, int *line, int *column);

/* json_object_object_add without the ownership trap: always consumes val, even on failure. */
int hv_json_set(struct json_object *obj, const char *key, struct json_object *val);
int hv_json_set_str(struct json_object *obj, const char *key, const char *val);
int hv_json_set_int(struct json_object *obj, const char *key, int64_t val);
const char *hv_json_get_str(struct json_object *obj, const char *key); /* NULL if absent or not a string */
/* json_object_object_get_ex's contract (1 and *out = the value, JSON null too, when obj is
 * an object holding key; else 0 and *out = NULL; out may be NULL), faster on small objects. */
int hv_json_get_ex(struct json_object *obj, const char *key, struct json_object **out);

/* ------------------------------------------------------------------------- */
/* Logs                                                                      */
/* ------------------------------------------------------------------------- */

enum hv_log_level { HV_LOG_DEBUG = 0, HV_LOG_INFO, HV_LOG_WARN, HV_LOG_ERROR, HV_LOG_OFF };
enum hv_log_format { HV_LOG_JSON = 0, HV_LOG_TEXT };

/*
 * Structured logs: one JSON object per line on standard error (or text lines).
 * Message contents and PHI must never be logged at info level or above: log ids,
 * counts, sizes, positions and error codes, not values.
 *
 *   hv_logrec_t *r = hv_log_begin(HV_LOG_INFO, "http.request");
 *   if (r) { hv_log_str(r, "method", "GET"); hv_log_int(r, "status", 200); hv_log_end(r); }
 *
 * hv_log_begin returns NULL when the level is disabled, so the fields cost nothing.
 * Records are buffered per thread and written whole; warn and error flush at once.
 */
typedef struct hv_logrec hv_logrec_t;

void hv_log_configure(int level, int format);
int hv_log_level(void);
int hv_log_parse_level(const char *s);  /* -1 if unknown */
int hv_log_parse_format(const char *s); /* -1 if unknown */
hv_logrec_t *hv_log_begin(int level, const char *event);
void hv_log_str(hv_logrec_t *r, const char *key, const char *val);
void hv_log_strn(hv_logrec_t *r, const char *key, const char *val, size_t n);
void hv_log_int(hv_logrec_t *r, const char *key, int64_t val);
void hv_log_dbl(hv_logrec_t *r, const char *key, double val);
void hv_log_end(hv_logrec_t *r);
/* Shorthand: an event with a formatted "msg" field. */
void hv_log(int level, const char *event, const char *fmt, ...) HV_PRINTF(3, 4);
void hv_log_flush(void);
/* Releases the calling thread's record buffer; threads call it before they exit. */
void hv_log_thread_exit(void);

/* ------------------------------------------------------------------------- */
/* Configuration                                                             */
/* ------------------------------------------------------------------------- */

typedef enum hv_setting_type {
    HV_SET_STRING = 0,
    HV_SET_INT,
    HV_SET_BOOL,     /* true/false, on/off, yes/no, 1/0 */
    HV_SET_SIZE,     /* bytes: "16MiB" */
    HV_SET_DURATION, /* milliseconds: "30s" */
    HV_SET_ENUM,     /* one of `choices`, "a|b|c" */
    HV_SET_HOSTPORT  /* "host:port" */
} hv_setting_type_t;

/*
 * One configuration setting, declared by the module that owns it. `key` is its
 * dotted path in holovitals.json ("http.max_body"); `flag` (optional) its long
 * option for `serve` ("http" → --http); its environment variable is HOLOVITALS_
 * followed by the flag, or else the key, upper-cased with '.' and '-' as '_'.
 * Precedence: default < file < environment < flag.
 */
typedef struct hv_setting {
    const char *key;
    const char *flag;
    hv_setting_type_t type;
    const char *def;
    const char *choices;
    const char *help;
} hv_setting_t;

typedef struct hv_config hv_config_t;

hv_config_t *hv_config_new(void);
void hv_config_free(hv_config_t *c);
/* Adds a table of settings (terminated by an entry with key NULL). Borrowed: the table must outlive c. */
int hv_config_declare(hv_config_t *c, const hv_setting_t *table);
/* Loads a JSON file (comments allowed); unknown keys and bad values fail with file:line:column. */
int hv_config_load_file(hv_config_t *c, const char *path, hv_error_t *err);
/* The same from text in memory; path names it in errors. */
int hv_config_load_text(hv_config_t *c, const char *text, size_t len, const char *path,
                        hv_error_t *err);
/* Applies HOLOVITALS_* variables from the environment. */
int hv_config_load_env(hv_config_t *c, hv_error_t *err);
/* Sets a value from a flag or from code, checking it against its type. */
int hv_config_set(hv_config_t *c, const char *key, const char *value, const char *origin,
                  hv_error_t *err);
/* Finds the setting whose flag is `flag` (without dashes); NULL if none. */
const hv_setting_t *hv_config_find_flag(const hv_config_t *c, const char *flag);
const hv_setting_t *hv_config_find(const hv_config_t *c, const char *key);
/* Typed getters. Asking for an undeclared key is a programming error and aborts. */
const char *hv_config_str(const hv_config_t *c, const char *key);
int64_t hv_config_int(const hv_config_t *c, const char *key);
int hv_config_bool(const hv_config_t *c, const char *key);
uint64_t hv_config_size(const hv_config_t *c, const char *key);
uint64_t hv_config_duration_ms(const hv_config_t *c, const char *key);
/* Writes every setting with its value, origin and help, as the sample file documents them. */
void hv_config_dump(const hv_config_t *c, hv_buf_t *out);
/* The environment variable name of a setting, into out. */
void hv_config_env_name(const hv_setting_t *s, char *out, size_t outlen);

/* ------------------------------------------------------------------------- */
/* Metrics (Prometheus text exposition format 0.0.4)                         */
/* ------------------------------------------------------------------------- */

typedef struct hv_metrics hv_metrics_t;
typedef struct hv_counter hv_counter_t;
typedef struct hv_gauge hv_gauge_t;
typedef struct hv_histogram hv_histogram_t;

/*
 * Each series is a family name plus a label string ("route=\"/health\",code=\"200\"",
 * or NULL). Asking twice for the same series returns the same object. Counters and
 * gauges may be updated from any thread; histograms from the loop thread only.
 */
hv_counter_t *hv_metrics_counter(hv_metrics_t *m, const char *name, const char *help,
                                 const char *labels);
hv_gauge_t *hv_metrics_gauge(hv_metrics_t *m, const char *name, const char *help,
                             const char *labels);
/* Buckets in seconds (upper bounds), terminated by a value <= 0; NULL uses latency defaults. */
hv_histogram_t *hv_metrics_histogram(hv_metrics_t *m, const char *name, const char *help,
                                     const char *labels, const double *buckets);
void hv_counter_add(hv_counter_t *c, uint64_t n);
void hv_gauge_set(hv_gauge_t *g, double v);
void hv_gauge_add(hv_gauge_t *g, double v);
void hv_histogram_observe(hv_histogram_t *h, double v);
/* A callback asked for the current value of a gauge at scrape time. */
typedef double (*hv_gauge_cb)(void *ud);
int hv_metrics_gauge_fn(hv_metrics_t *m, const char *name, const char *help, const char *labels,
                        hv_gauge_cb fn, void *ud);
int hv_metrics_render(hv_metrics_t *m, hv_buf_t *out);

/* ------------------------------------------------------------------------- */
/* Database (SQLite or PostgreSQL)                                           */
/* ------------------------------------------------------------------------- */

/*
 * A connection to one module's own tables: with SQLite, the file <data>/<name>.db;
 * with PostgreSQL, the schema <name> in the database of the URL. SQL is written
 * once with $1, $2 … placeholders and runs on both. Values are always bound,
 * never spliced. A connection is used by one thread at a time.
 */
typedef struct hv_db hv_db_t;
typedef struct hv_db_stmt hv_db_stmt_t;

enum hv_db_kind { HV_DB_SQLITE = 1, HV_DB_PG = 2 };
enum { HV_DB_ROW = 1 }; /* hv_db_step: a row is available */

/* url: NULL or a path → SQLite under data_dir; "postgresql://…" or "postgres://…" → libpq. */
int hv_db_open(const char *url, const char *data_dir, const char *name, hv_db_t **out,
               hv_error_t *err);
void hv_db_close(hv_db_t *db);
int hv_db_kind(const hv_db_t *db);
const char *hv_db_errmsg(const hv_db_t *db);
/* Runs SQL without parameters (may hold several statements). */
int hv_db_exec(hv_db_t *db, const char *sql);
int hv_db_begin(hv_db_t *db);
int hv_db_commit(hv_db_t *db);
int hv_db_rollback(hv_db_t *db);
/*
 * Applies the migrations a module has not applied yet, in order; the applied version is
 * kept in table hv_schema. `migrations` ends with NULL. An upgrade (a version above 0)
 * applies each in its own transaction, so a failure leaves the version before the
 * failing one; a new schema's (version 0) all run in one transaction, so a failure leaves
 * version 0 and nothing of the module's schema.
 */
int hv_db_migrate(hv_db_t *db, const char *module, const char *const *migrations,
                  hv_error_t *err);

/* Prepared statements are cached by SQL text: preparing the same text again is cheap. */
int hv_db_prepare(hv_db_t *db, const char *sql, hv_db_stmt_t **out);
int hv_db_bind_text(hv_db_stmt_t *st, int idx, const char *s, size_t n); /* idx is 1-based */
/* As hv_db_bind_text without copying s on SQLite: s must stay valid and unchanged until
 * hv_db_done (or a rebind of idx). For large values and hot loops (the FHIR store's rows). */
int hv_db_bind_text_static(hv_db_stmt_t *st, int idx, const char *s, size_t n);
int hv_db_bind_blob(hv_db_stmt_t *st, int idx, const void *p, size_t n);
int hv_db_bind_int64(hv_db_stmt_t *st, int idx, int64_t v);
int hv_db_bind_double(hv_db_stmt_t *st, int idx, double v);
int hv_db_bind_null(hv_db_stmt_t *st, int idx);
/* HV_DB_ROW while rows come, HV_OK when done, a negative status on error. */
int hv_db_step(hv_db_stmt_t *st);
/*
 * Runs a statement that returns no rows (an INSERT or DELETE without RETURNING) whose
 * outcome the caller needs only by the end of its unit of work. SQLite steps it at once.
 * PostgreSQL may queue it (libpq's pipeline mode) behind the ones queued before, sent
 * together without waiting for each answer: a failure is then reported by the next call
 * on the connection that waits for the server (a step, exec, prepare, COMMIT — never
 * ROLLBACK, which runs regardless) or by hv_db_flush, and hv_db_changes does not count
 * it. The storage thread flushes after every job, so a job's failure stays its own.
 */
int hv_db_step_later(hv_db_stmt_t *st);
/* Waits for every statement hv_db_step_later queued on db: HV_OK, or the first failure. */
int hv_db_flush(hv_db_t *db);
int hv_db_column_count(hv_db_stmt_t *st);
int hv_db_column_is_null(hv_db_stmt_t *st, int col); /* col is 0-based */
const char *hv_db_column_text(hv_db_stmt_t *st, int col, size_t *len);
const void *hv_db_column_blob(hv_db_stmt_t *st, int col, size_t *len);
int64_t hv_db_column_int64(hv_db_stmt_t *st, int col);
double hv_db_column_double(hv_db_stmt_t *st, int col);
/* Returns the statement to the cache, ready to bind again. */
void hv_db_done(hv_db_stmt_t *st);
/* Rows changed by the last INSERT/UPDATE/DELETE step. */
int64_t hv_db_changes(hv_db_t *db);
/* SQLite: the rowid of the connection's last successful INSERT (sqlite3_last_insert_rowid).
 * PostgreSQL: 0 (use INSERT ... RETURNING there; on SQLite RETURNING costs an ephemeral
 * table per statement). */
int64_t hv_db_last_insert_rowid(hv_db_t *db);
/*
 * Durability of commits: "FULL" (the default: a commit is on disk when it returns),
 * "NORMAL" (SQLite WAL: a power loss may lose the last commits, never corrupts;
 * PostgreSQL: synchronous_commit off, same meaning) or "OFF" (SQLite: no fsync at all).
 */
int hv_db_set_synchronous(hv_db_t *db, const char *mode);
/*
 * Notes on the contract above, common to both backends:
 *   - Errors: a uniqueness or primary-key violation is HV_ECONFLICT, every other
 *     database failure HV_EDB; hv_db_errmsg says why (never with bound values).
 *   - hv_db_begin takes the write lock at once (SQLite BEGIN IMMEDIATE), so a
 *     transaction never fails half-way for lock upgrade.
 *   - A NULL column reads as NULL text/blob (len 0), 0 and 0.0. A zero-length blob
 *     or text is not NULL: its pointer is non-NULL.
 *   - Text and blob pointers stay valid until the next step, reset or done.
 *   - Preparing a text whose cached statement is in use (not yet done) gives a
 *     separate statement, so a job may nest queries; the cache keeps the 256 most
 *     recently used texts per connection.
 */

/*
 * The storage thread: runs jobs against one connection in batches, one transaction
 * per batch (group commit), and calls each job's done callback on the loop thread
 * once its batch has committed (or failed). A job that fails is rolled back alone
 * (a savepoint per job) without failing the rest of its batch.
 */
typedef struct hv_storage hv_storage_t;
typedef int (*hv_storage_job_cb)(hv_db_t *db, void *arg);  /* storage thread */
typedef void (*hv_storage_done_cb)(int status, void *arg); /* loop thread, after commit */

/* Takes ownership of db. max_queue bounds the jobs waiting (back-pressure). */
int hv_storage_new(uv_loop_t *loop, hv_db_t *db, size_t max_queue, size_t max_batch,
                   hv_storage_t **out);
/* HV_EBUSY when the queue is full (or the memory for its next slots cannot be had),
 * HV_ECLOSED when closing; done is then never called. */
int hv_storage_submit(hv_storage_t *s, hv_storage_job_cb job, hv_storage_done_cb done, void *arg);
/*
 * Like hv_storage_submit, for a job whose writes need not be on disk when its done
 * runs: bookkeeping that a power loss may undo without harm (a delivery outcome:
 * the message is sent again, at-least-once). A batch holding only such jobs commits
 * without waiting for the disk (synchronous NORMAL for that commit: SQLite WAL writes
 * the frames without fsync, PostgreSQL synchronous_commit off); the next durable
 * commit's flush covers them. A process crash (kill -9) loses nothing either way.
 */
int hv_storage_submit_lazy(hv_storage_t *s, hv_storage_job_cb job, hv_storage_done_cb done,
                           void *arg);
/*
 * As hv_storage_submit, for a job that may run twice: it runs without its own
 * savepoint, and if it (or another such job of its batch) fails, the batch's
 * transaction is rolled back and every job of the batch runs again, each in its own
 * savepoint. The job must leave nothing outside the database that a second run
 * after the rollback would get wrong (engine/storage.c).
 */
int hv_storage_submit_rerun(hv_storage_t *s, hv_storage_job_cb job, hv_storage_done_cb done, void *arg);
/*
 * Deferred writes: as hv_storage_submit_rerun, for a job that, when hv_storage_deferring()
 * is 1 while it runs, may leave some of its writes to the callback set with
 * hv_storage_set_flush (storage thread: flush(db, 0, ud) writes what the jobs left since the
 * last call, flush(db, 1, ud) drops it after a rollback). The flush runs in the job's
 * transaction before any job that is not deferring and before COMMIT; a failing flush
 * makes the batch run again with nothing deferred (engine/storage.c). Set the callback
 * before the first submit.
 */
typedef int (*hv_storage_flush_cb)(hv_db_t *db, int discard, void *ud);
int hv_storage_submit_deferring(hv_storage_t *s, hv_storage_job_cb job, hv_storage_done_cb done, void *arg);
void hv_storage_set_flush(hv_storage_t *s, hv_storage_flush_cb flush, void *ud);
int hv_storage_deferring(void);
/* Storage thread, in a deferring job that is about to read what deferred writes write (a
 * search): writes them now, those of the job itself included. HV_OK outside such a job. */
int hv_storage_flush_deferred(hv_db_t *db);
/*
 * Pipelined commits (SQLite with synchronous FULL only, else HV_ENOTSUP): each batch
 * commits without fsync and the next batch runs while a sync thread fdatasyncs the
 * WAL; a batch's done callbacks still run only after its data is on disk. The storage
 * thread checkpoints with full syncs once the WAL holds checkpoint_pages frames. Call
 * once, before the first submit (engine/storage.c).
 */
int hv_storage_pipeline(hv_storage_t *s, int checkpoint_pages);
/*
 * SQLite without pipelined commits (else HV_ENOTSUP): the WAL is checkpointed by a
 * thread with its own connection, once per checkpoint_pages frames committed, instead
 * of inside the storage thread's COMMIT; the storage thread waits for a checkpoint only
 * when a commit leaves 8 × checkpoint_pages frames, so the WAL stays bounded
 * (engine/db_sqlite.c). Call once, before the first submit.
 */
int hv_storage_checkpoint_thread(hv_storage_t *s, int checkpoint_pages);
size_t hv_storage_queued(hv_storage_t *s);
/* Runs what is queued, stops the thread, closes the db, then frees. Call from the loop thread. */
void hv_storage_free(hv_storage_t *s);

/*
 * Storage notes: max_queue bounds the jobs submitted whose done callback has not
 * run yet (waiting, running, or committed and waiting for the loop), so memory is
 * bounded even when the loop lags; hv_storage_queued counts exactly those. Submit
 * from the loop thread. On failure hv_storage_new does not take db. Jobs must
 * not begin, commit or roll back themselves. Done callbacks run on the loop thread
 * in submission order and may submit again. hv_storage_free joins the thread (it
 * blocks until the queued jobs have run), calls the remaining done callbacks, closes
 * the async handle: the memory is released in its close callback, so run the loop
 * once more before uv_loop_close().
 */
typedef struct hv_storage_stats {
    uint64_t batches;        /* transactions run (committed or failed) */
    uint64_t jobs;           /* jobs run */
    uint64_t jobs_failed;    /* jobs that failed (their own error or their batch's) */
    uint64_t commits_failed; /* batches whose BEGIN or COMMIT failed */
    uint64_t busy;           /* submissions refused with HV_EBUSY */
    uint64_t largest_batch;  /* the most jobs one transaction held */
    uint64_t commit_ns;      /* time spent in COMMIT (fsync), total */
    uint64_t batch_ns;       /* time from BEGIN to the end of COMMIT, total */
    uint64_t syncs;          /* pipelined: fdatasync calls of the WAL */
    uint64_t sync_ns;        /* pipelined: time in those fdatasync calls, total */
    uint64_t checkpoints;    /* pipelined: checkpoints run */
} hv_storage_stats_t;

/* A consistent snapshot of the counters; any thread. */
void hv_storage_stats(hv_storage_t *s, hv_storage_stats_t *out);

/* ------------------------------------------------------------------------- */
/* TLS over memory BIOs (HTTP, MLLP listener and sender)                      */
/* ------------------------------------------------------------------------- */

/*
 * libuv owns the socket, OpenSSL never touches it: bytes read from the network
 * are fed in, plaintext comes out, and whatever TLS wants to send (handshake,
 * records, alerts) is appended to a buffer the caller writes to the socket.
 * TLS 1.2 and 1.3 only, forward-secret AEAD ciphers.
 */
typedef struct ssl_ctx_st hv_tls_ctx_t; /* OpenSSL's SSL_CTX */
typedef struct hv_tls hv_tls_t;

/* A server context from PEM files. client_ca (may be NULL) requires and verifies client
 * certificates signed by it (mutual TLS). NULL with err set on failure. */
hv_tls_ctx_t *hv_tls_server_ctx_new(const char *cert_file, const char *key_file,
                                    const char *client_ca, hv_error_t *err);
/* A client context: verifies the server against ca_file (NULL: the system store) unless
 * verify is 0; presents cert/key (both NULL: none). */
hv_tls_ctx_t *hv_tls_client_ctx_new(const char *ca_file, const char *cert_file,
                                    const char *key_file, int verify, hv_error_t *err);
void hv_tls_ctx_free(hv_tls_ctx_t *ctx);
/* A connection: server side when server_name is NULL, else a client that sends SNI and
 * checks the certificate's name (when the context verifies). */
hv_tls_t *hv_tls_new(hv_tls_ctx_t *ctx, const char *server_name);
void hv_tls_free(hv_tls_t *t);
/* Client: appends the ClientHello to net. Call once after connecting. */
int hv_tls_connect(hv_tls_t *t, hv_buf_t *net);
/* Feeds network bytes; appends plaintext to plain and bytes to send to net. HV_EPROTO on a
 * TLS failure (send net, then close), HV_ECLOSED when the peer closed TLS. */
int hv_tls_feed(hv_tls_t *t, const char *in, size_t n, hv_buf_t *plain, hv_buf_t *net);
/* Encrypts application data, appending TLS records to net. */
int hv_tls_write(hv_tls_t *t, const char *p, size_t n, hv_buf_t *net);
int hv_tls_handshake_done(const hv_tls_t *t);
/* The verified peer certificate's subject CN into out ("" when none). */
void hv_tls_peer_name(const hv_tls_t *t, char *out, size_t outlen);

/* ------------------------------------------------------------------------- */
/* HTTP server and router                                                    */
/* ------------------------------------------------------------------------- */

typedef struct hv_engine hv_engine_t;
typedef struct hv_http_req hv_http_req_t;

enum hv_http_method {
    HV_HTTP_OTHER = 0,
    HV_HTTP_GET = 1 << 0,
    HV_HTTP_HEAD = 1 << 1,
    HV_HTTP_POST = 1 << 2,
    HV_HTTP_PUT = 1 << 3,
    HV_HTTP_DELETE = 1 << 4,
    HV_HTTP_PATCH = 1 << 5,
    HV_HTTP_OPTIONS = 1 << 6
};

/*
 * A route handler. It must answer exactly once with one of hv_http_respond*,
 * either before returning or later from the loop thread (after a storage job,
 * say). If the client goes away meanwhile, the answer is discarded.
 */
typedef void (*hv_http_handler_cb)(hv_http_req_t *req, void *ud);
/* Formats an error body for paths under a prefix (FHIR: OperationOutcome). */
typedef void (*hv_http_error_cb)(hv_http_req_t *req, int status, const char *code,
                                 const char *message);

typedef struct hv_router hv_router_t;

/*
 * Patterns are literal segments, ":name" parameters and a final "*" that matches
 * the rest ("/fhir/ *" without the space). More specific routes win: literal over parameter over
 * wildcard. methods is a mask of HV_HTTP_*; a path that matches with another
 * method answers 405 with Allow. HEAD is served by GET routes.
 */
int hv_router_add(hv_router_t *r, unsigned methods, const char *pattern, hv_http_handler_cb fn,
                  void *ud);
int hv_router_set_error_format(hv_router_t *r, const char *prefix, hv_http_error_cb fn);

/* Request accessors. Strings are NUL-terminated and live as long as the request. */
int hv_http_req_method(const hv_http_req_t *req);
const char *hv_http_req_method_name(const hv_http_req_t *req);
const char *hv_http_req_path(const hv_http_req_t *req);  /* percent-decoded, no query */
const char *hv_http_req_target(const hv_http_req_t *req); /* as sent: path?query */
const char *hv_http_req_query(const hv_http_req_t *req);  /* raw, without '?', "" if none */
const char *hv_http_req_param(const hv_http_req_t *req, const char *name); /* route parameter */
/* The first value of a query parameter, decoded; NULL if absent. */
const char *hv_http_req_query_param(hv_http_req_t *req, const char *name);
const char *hv_http_req_header(const hv_http_req_t *req, const char *name); /* case-insensitive */
/* Iterates headers: returns 0 and sets name/value for index i, HV_ENOTFOUND past the end. */
int hv_http_req_header_at(const hv_http_req_t *req, size_t i, const char **name,
                          const char **value);
const char *hv_http_req_body(const hv_http_req_t *req, size_t *len);
/*
 * Large bodies: a body larger than http.spool_body is written to a file (under
 * <data>/tmp) as it arrives, so that receiving it costs no more memory than a read
 * buffer. hv_http_req_body still works for such a body: it reads the file into
 * memory on first use. A handler that can take the content from a file asks
 * hv_http_req_body_file: HV_OK with the file's path and the body's length when the
 * body is in a file, HV_ENOTFOUND when it is in memory. The file is removed with
 * the request unless the handler calls hv_http_req_body_file_take (it then owns
 * the file: it renames or removes it).
 */
int hv_http_req_body_file(const hv_http_req_t *req, const char **path, uint64_t *len);
void hv_http_req_body_file_take(hv_http_req_t *req);
const char *hv_http_req_trace_id(const hv_http_req_t *req);
const char *hv_http_req_peer(const hv_http_req_t *req); /* "ip:port" */
const char *hv_http_req_route(const hv_http_req_t *req); /* matched pattern, for metrics */
hv_arena_t *hv_http_req_arena(hv_http_req_t *req);
hv_engine_t *hv_http_req_engine(hv_http_req_t *req);
int hv_http_req_is_tls(const hv_http_req_t *req);
/* Handlers may keep one pointer of their own on a request. */
void hv_http_req_set_data(hv_http_req_t *req, void *data);
void *hv_http_req_data(const hv_http_req_t *req);

/* Adds a response header (copied); call before responding. */
int hv_http_header_add(hv_http_req_t *req, const char *name, const char *value);
/* Answers with a body (copied). content_type may be NULL for no body type. */
void hv_http_respond(hv_http_req_t *req, int status, const char *content_type, const char *body,
                     size_t len);
/* Answers with a body buffer, taking its storage. */
void hv_http_respond_buf(hv_http_req_t *req, int status, const char *content_type, hv_buf_t *body);
/* Answers with json serialized; takes ownership of json (json_object_put). */
void hv_http_respond_json(hv_http_req_t *req, int status, struct json_object *json);
/* Answers with an error body: {"error": code, "message": message}, or the prefix's format. */
void hv_http_respond_error(hv_http_req_t *req, int status, const char *code, const char *fmt, ...)
    HV_PRINTF(4, 5);
const char *hv_http_status_text(int status);

/*
 * The request guard: one callback, registered by the authentication module, that
 * every request passes before routing (so it also sees CORS preflights and paths
 * with no route). It returns HV_OK to let the request go on, or anything else once
 * it has answered the request itself (401, 403, 429, a preflight's 204). It may
 * attach the request's authenticated principal, which handlers read back with
 * hv_http_req_principal (NULL when there is none, e.g. with authentication off).
 * The principal must live as long as the request (allocate it from its arena).
 */
typedef int (*hv_http_guard_cb)(hv_http_req_t *req, void *ud);
void hv_http_set_guard(hv_engine_t *e, hv_http_guard_cb fn, void *ud);
void hv_http_req_set_principal(hv_http_req_t *req, const void *principal);
const void *hv_http_req_principal(const hv_http_req_t *req);

/*
 * Audit holds and the response observer (used by the audit trail, engine/audit.c).
 * hv_http_req_hold makes the next answer to req wait: hv_http_respond keeps it
 * until every hold has been released. hv_http_req_release with a status other
 * than HV_OK turns the kept answer into 503 (nothing leaves without its audit
 * record). The respond hook sees every answer (status and body) just before it is
 * sent or kept, on the loop thread; it may take a hold.
 */
typedef void (*hv_http_respond_hook_cb)(hv_http_req_t *req, int status, const char *body, size_t len,
                                        void *ud);
void hv_http_set_respond_hook(hv_engine_t *e, hv_http_respond_hook_cb fn, void *ud);
void hv_http_req_hold(hv_http_req_t *req);
void hv_http_req_release(hv_http_req_t *req, int status);
/* From the respond hook only: answer with this instead of the handler's answer (copied);
 * e.g. consent enforcement filtering a search result. */
int hv_http_req_override(hv_http_req_t *req, int status, const char *content_type, const char *body, size_t len);
/* Marks req as audited; returns 1 if it already was (one record per request). */
int hv_http_req_mark_audited(hv_http_req_t *req);
/*
 * The admission hook (the audit trail's back-pressure): called after the guard and
 * before routing; it returns HV_OK to let the request go on, or anything else once it
 * has answered it (e.g. 503 with Retry-After when the audit queue cannot take the
 * record of a write, before the write touches any store). It may note a reservation on
 * the request, which the respond hook takes back (returns 1 once, then 0).
 */
typedef int (*hv_http_admit_cb)(hv_http_req_t *req, void *ud);
void hv_http_set_admit_hook(hv_engine_t *e, hv_http_admit_cb fn, void *ud);
void hv_http_req_set_reserved(hv_http_req_t *req);
int hv_http_req_take_reserved(hv_http_req_t *req);

/* ------------------------------------------------------------------------- */
/* Health                                                                    */
/* ------------------------------------------------------------------------- */

enum hv_health_status { HV_HEALTH_PASS = 0, HV_HEALTH_WARN = 1, HV_HEALTH_FAIL = 2 };

/*
 * A health check (draft-inadarei-api-health-check): asked on every GET /health,
 * so it must be cheap — report cached state, do not do I/O. Fills status and a
 * short output text (no PHI).
 */
typedef void (*hv_health_cb)(void *ud, int *status, char *output, size_t outlen);
int hv_health_register(hv_engine_t *e, const char *name, hv_health_cb fn, void *ud);

/* ------------------------------------------------------------------------- */
/* CLI commands and modules                                                  */
/* ------------------------------------------------------------------------- */

/* Exit codes of the holovitals command. */
enum { HV_EXIT_OK = 0, HV_EXIT_FAILURE = 1, HV_EXIT_USAGE = 2 };

/*
 * A subcommand. `name` is one or two words ("serve", "hl7 parse"); run receives
 * the arguments after those words and returns an exit code. The engine passed in
 * has its configuration loaded (--config, environment, --data, --db), but is not
 * serving: commands that touch state open what they need.
 */
typedef struct hv_command {
    const char *name;
    const char *usage;   /* "hl7 parse FILE" */
    const char *summary; /* one line */
    const char *help;    /* paragraphs for `holovitals help NAME` */
    int (*run)(hv_engine_t *e, int argc, char **argv);
} hv_command_t;

/*
 * A module: one folder of the tree, plugged into the engine by modules.c.
 * Under `serve`, for each module enabled by --services: init registers routes,
 * health checks, metrics and registry entries and may not block; start opens
 * listeners and threads; stop begins an orderly shutdown (stop taking work);
 * free releases everything once the loop has stopped. Modules' CLI commands run
 * without init: a command opens what it needs itself.
 */
typedef struct hv_module {
    const char *name;               /* also a --services name */
    const hv_setting_t *settings;   /* may be NULL */
    const hv_command_t *commands;   /* terminated by {NULL}; may be NULL */
    int (*init)(hv_engine_t *e, void **state);
    int (*start)(hv_engine_t *e, void *state);
    void (*stop)(hv_engine_t *e, void *state);
    void (*free)(hv_engine_t *e, void *state);
} hv_module_t;

/* The entry point: runs the command line against a NULL-terminated table of modules. */
int hv_main(int argc, char **argv, const hv_module_t *const *modules);

/* Engine accessors for modules. */
uv_loop_t *hv_engine_loop(hv_engine_t *e);
hv_config_t *hv_engine_config(hv_engine_t *e);
hv_router_t *hv_engine_router(hv_engine_t *e);
hv_metrics_t *hv_engine_metrics(hv_engine_t *e);
const char *hv_engine_data_dir(hv_engine_t *e);
const char *hv_engine_db_url(hv_engine_t *e); /* NULL for SQLite */
/* The state a module's init returned; NULL if that module is not running. */
void *hv_engine_module_state(hv_engine_t *e, const char *module);
/* True when module runs in this process (--services). */
int hv_engine_service_enabled(hv_engine_t *e, const char *module);
/* True once shutdown has begun: stop taking new work. */
int hv_engine_stopping(hv_engine_t *e);
/* Records an engine error (kept in the database, shown by GET /errors). No PHI in message. */
void hv_engine_report_error(hv_engine_t *e, const char *source, const char *code,
                            const char *message, const char *trace_id);

/* ------------------------------------------------------------------------- */
/* Channels: registries of sources, steps, destinations, path providers      */
/* ------------------------------------------------------------------------- */

/*
 * The channel runtime (engine/channel*.c) runs the channel files of the
 * `channels` directory: source → message store → filter → steps → one durable
 * queue per destination. It knows no module: a module that provides a source,
 * a step, a destination or a path syntax for filters registers a vtable from
 * its init (the channel runtime starts after every module's init), nginx-style.
 * Names are the `type` values of channel files. Registering a name twice
 * replaces the earlier entry. Tables are borrowed and must outlive the engine.
 *
 * `check` functions validate the type's own keys of a channel-file object
 * (the common keys — type, name, queue, when — are checked by the runtime);
 * on an error they set err->location to the offending key relative to that
 * object ("url", "headers/Accept") so that the loader can point at its line
 * and column, and fill err->message.
 */
typedef struct hv_channel hv_channel_t;

/* A message on its way through a channel. content lives in arena (or is borrowed). */
typedef struct hv_channel_msg {
    int64_t id;               /* the engine's message id (X-Message-Id) */
    const char *channel;      /* channel id */
    const char *content;
    size_t len;
    const char *content_type; /* as received; "" when unknown */
    uint64_t received_at;     /* ms since the epoch */
    hv_arena_t *arena;        /* for steps' output; NULL in destinations' send */
    /* A destination that streams (http-send, file-write) may be handed a message whose
     * content is in this file (len bytes) instead of in memory: content is then "".
     * NULL for every other destination, filter and step (docs/channels.md, large messages). */
    const char *content_file;
    /* A step may set this (text from arena) to a FHIR OperationOutcome in JSON listing the
     * problems it met without failing (a code with no mapping, a segment not mapped). The
     * runtime resets it before each step and stores the steps' outcomes with the message
     * (chan_messages.outcome, shown by GET /channels/:id/messages). NULL elsewhere. */
    const char *outcome;
} hv_channel_msg_t;

/* The outcome of one delivery attempt. */
enum hv_channel_result {
    HV_CHANNEL_DELIVERED = 0, /* done: the message leaves the queue */
    HV_CHANNEL_RETRY = 1,     /* transient: try again after the backoff */
    HV_CHANNEL_ERROR = 2      /* permanent: dead-letter at once */
};
/* detail: a short reason without message content ("HTTP 503", "connect refused"). */
typedef void (*hv_channel_sent_cb)(void *token, int result, const char *detail);

typedef struct hv_channel_dest {
    const char *name;
    int (*check)(struct json_object *conf, hv_error_t *err);
    /* Builds the destination's state from its (checked) object. Loop thread. */
    int (*open)(hv_engine_t *e, const char *channel, struct json_object *conf, void **state,
                hv_error_t *err);
    /*
     * Starts one delivery; done runs exactly once on the loop thread, never
     * from inside send. A send that returns an error never calls done.
     * m and its strings are valid only during the call: copy what you keep.
     */
    int (*send)(void *state, const hv_channel_msg_t *m, hv_channel_sent_cb done, void *token);
    /* Cancels deliveries in flight (their done runs with HV_CHANNEL_RETRY, "closed")
     * before it returns, then frees the state. */
    void (*close)(void *state);
} hv_channel_dest_t;

typedef struct hv_channel_step {
    const char *name;
    int (*check)(struct json_object *conf, hv_error_t *err);
    int (*init)(hv_engine_t *e, struct json_object *conf, void **state, hv_error_t *err);
    /* Transforms m in place: new content comes from m->arena. An error (with err
     * filled) marks the message errored with the step's name. Loop thread. */
    int (*run)(void *state, hv_channel_msg_t *m, hv_error_t *err);
    void (*free)(void *state);
} hv_channel_step_t;

typedef struct hv_channel_source {
    const char *name;
    int (*check)(struct json_object *conf, hv_error_t *err);
    /* Starts taking messages for ch (listen, poll, subscribe) and hands each to
     * hv_channel_receive. */
    int (*start)(hv_channel_t *ch, struct json_object *conf, void **state, hv_error_t *err);
    void (*stop)(void *state);
} hv_channel_source_t;

/*
 * A path syntax for filter rules: "hl7v2" (`{"path": "MSH-9.1", "in": [...]}`)
 * or "fhirpath" (`{"fhirpath": "Observation.status = 'final'"}`). get returns
 * the value(s) at path as text from m->arena: HV_OK with *out, HV_ENOTFOUND
 * when absent, HV_EPROTO when the content is not of that syntax. For FHIRPath,
 * *out is "true" when the expression's result is the single boolean true.
 */
typedef struct hv_channel_path_provider {
    const char *syntax;
    int (*check)(const char *path, hv_error_t *err);
    int (*get)(const hv_channel_msg_t *m, const char *path, char **out);
} hv_channel_path_provider_t;

int hv_channel_register_source(hv_engine_t *e, const hv_channel_source_t *s);
int hv_channel_register_step(hv_engine_t *e, const hv_channel_step_t *s);
int hv_channel_register_dest(hv_engine_t *e, const hv_channel_dest_t *d);
int hv_channel_register_paths(hv_engine_t *e, const hv_channel_path_provider_t *p);

/* Called by a source for each message: stores it (durably, before cb), then runs
 * filter, steps and queues it for the destinations. cb (loop thread) receives
 * HV_OK and the message id once stored, or an error (HV_EBUSY: back off). */
typedef void (*hv_channel_stored_cb)(int status, int64_t id, void *ud);
int hv_channel_receive(hv_channel_t *ch, const char *content, size_t len,
                       const char *content_type, hv_channel_stored_cb cb, void *ud);
/* Like hv_channel_receive for a source that may see one message twice (a resend,
 * a file read again after a crash): key identifies the message at its source
 * (e.g. MSH-10); when a message of this channel with the same key was stored in
 * the last window_ms (0: ever), nothing is stored and cb receives HV_OK with the
 * first message's id. */
int hv_channel_receive_keyed(hv_channel_t *ch, const char *content, size_t len,
                             const char *content_type, const char *key, uint64_t window_ms,
                             hv_channel_stored_cb cb, void *ud);
/* Like hv_channel_receive_keyed for a source that answers its peer with bytes
 * that a resend must get again unchanged (an HL7 v2 ACK): reply (may be NULL) is
 * stored with the message in the same transaction; for a duplicate, the stored
 * reply of the first copy is appended to *orig_reply (on the storage thread —
 * read it only in cb, and keep orig_reply alive until cb has run). */
int hv_channel_receive_reply(hv_channel_t *ch, const char *content, size_t len,
                             const char *content_type, const char *key, uint64_t window_ms,
                             const char *reply, size_t reply_len, hv_buf_t *orig_reply,
                             hv_channel_stored_cb cb, void *ud);
const char *hv_channel_id(const hv_channel_t *ch);
hv_engine_t *hv_channel_engine(hv_channel_t *ch);

/*
 * A built-in channel: json (a channel file's text, at most 8 KiB, whose "id" is id)
 * is deployed like a file of the channels directory as long as no file there has
 * the same id; a file with that id replaces it, and removing the file brings the
 * built-in back. The hl7v2 module registers hl7v2-inbound this way, so that
 * `serve --mllp` listens without any channel file. Call from a module's init
 * (before the channels module starts). HV_ETOOBIG beyond 4 built-ins or 8 KiB.
 */
int hv_channel_register_builtin(hv_engine_t *e, const char *id, const char *json);

/*
 * A module whose name ends in "-channels" (hl7v2-channels, fhir-channels) only
 * registers channel providers in its init and opens nothing: CLI commands such
 * as `channel validate` and `channel test` call its init to know those types.
 */

/* The channel runtime as a module (listed in modules.c after the modules that register). */
extern const hv_module_t hv_channels_module;

/* ------------------------------------------------------------------------- */
/* Event bus                                                                 */
/* ------------------------------------------------------------------------- */

/*
 * In-process publish/subscribe with a durable outbox (engine/event.c, run by the
 * channels module). An event is a type ("patient.created") and a JSON payload.
 * hv_event_publish stores the event first (its done callback runs after the
 * commit), then hands it to every subscriber whose pattern matches; the event is
 * marked delivered once every subscriber has acknowledged it. Events not yet
 * delivered when the engine stops or crashes are delivered again at the next
 * start (at-least-once: a subscriber keys on the event id to drop repeats).
 * A channel takes events with the `event` source; the `event` destination publishes.
 *
 * To emit an event inside a module's own database transaction, so that it is
 * delivered if and only if the transaction commits: apply
 * hv_event_outbox_migrate to that database, call hv_event_outbox_add from a
 * storage job, and hv_event_outbox_drain(e, storage) from that job's done
 * callback (and once at start): the rows move to the bus and then leave the outbox.
 */
#define HV_EVENT_PATIENT_CREATED "patient.created"
#define HV_EVENT_PATIENT_UPDATED "patient.updated"
#define HV_EVENT_EHR_SYNC_COMPLETED "ehr.sync.completed"
#define HV_EVENT_ANALYSIS_REQUESTED "analysis.requested"
#define HV_EVENT_ANALYSIS_COMPLETED "analysis.completed"
#define HV_EVENT_DOCUMENT_UPLOADED "document.uploaded"
#define HV_EVENT_DOCUMENT_PROCESSED "document.processed"

typedef struct hv_event {
    int64_t id;
    const char *type;
    const char *payload; /* JSON text */
    size_t len;
    uint64_t created_at;
} hv_event_t;

typedef struct hv_event_sub hv_event_sub_t;
/* Acknowledges one delivery (status HV_OK, or an error: the event is offered again later). */
typedef void (*hv_event_ack_cb)(void *token, int status);
/* A subscriber: ev is valid during the call; ack exactly once, now or later (loop thread). */
typedef void (*hv_event_cb)(void *ud, const hv_event_t *ev, hv_event_ack_cb ack, void *token);
typedef void (*hv_event_published_cb)(int status, int64_t id, void *ud);

/* pattern: an exact type, or a prefix ending in ".*" ("patient.*"), or "*". */
int hv_event_subscribe(hv_engine_t *e, const char *pattern, hv_event_cb fn, void *ud,
                       hv_event_sub_t **out);
void hv_event_unsubscribe(hv_engine_t *e, hv_event_sub_t *sub);
/*
 * A durable subscriber, named across restarts and across the processes that share
 * one store (PostgreSQL): it receives every event of `pattern` published after its
 * first subscription — by any process — exactly once per name in the cluster, in
 * publication order, at-least-once across a crash between the subscriber's own
 * commit and the cursor's (so fn should key what it stores by ev->id, as the
 * event channel source does). One process at a time delivers a name (a lease in
 * chan_leases); a cursor per name (chan_event_cursors) records what was acknowledged.
 * An event fn acknowledges with an error is offered again after a pause, and the
 * events after it wait (order). Unsubscribe with hv_event_unsubscribe.
 */
int hv_event_subscribe_durable(hv_engine_t *e, const char *name, const char *pattern,
                               hv_event_cb fn, void *ud, hv_event_sub_t **out);
/* Stores and then delivers an event; done (may be NULL) after the commit. HV_ENOTSUP
 * when the bus is not running in this process (the channels module is not enabled). */
int hv_event_publish(hv_engine_t *e, const char *type, const char *payload, size_t len,
                     hv_event_published_cb done, void *ud);
/* Creates the table hv_outbox in a module's database (SQLite or PostgreSQL). */
int hv_event_outbox_migrate(hv_db_t *db, hv_error_t *err);
int hv_event_outbox_add(hv_db_t *db, const char *type, const char *payload, size_t len);
int hv_event_outbox_drain(hv_engine_t *e, hv_storage_t *storage);

/* ------------------------------------------------------------------------- */
/* Audit                                                                     */
/* ------------------------------------------------------------------------- */

/*
 * Any module records a security-relevant event here without depending on the
 * audit module (destinations/audit), which registers the sink. With no sink (the
 * audit module is not running) hv_audit_record is a no-op that returns HV_OK.
 * Fields follow FHIR R4 AuditEvent as IHE Basic Audit Log Patterns shape it:
 *   action   'C' create, 'R' read/view/print, 'U' update, 'D' delete, 'E' execute
 *   subtype  "read", "vread", "history", "search-type", "create", "update", "patch",
 *            "delete", "export", "everything", "login", "logout", "login-failure",
 *            "token", "client-registered", "message-viewed", "message-reprocessed",
 *            "message-deleted", "config-change", "audit-read", ...
 *   outcome  0 success, 4 minor failure, 8 serious failure, 12 major failure
 * When req is set the sink takes who (principal, role, client address), the
 * purpose of use and a break-glass reason from it, and holds the request's answer
 * until the record has committed. Strings are borrowed for the call. No PHI in
 * detail: the query may hold search parameters (the audit store is protected PHI
 * storage; logs never show it).
 */
#define HV_AUDIT_MAX_PATIENTS 64 /* patient ids kept per event; more are counted, not listed */

enum {
    HV_AUDIT_OUTCOME_SUCCESS = 0,
    HV_AUDIT_OUTCOME_MINOR = 4,
    HV_AUDIT_OUTCOME_SERIOUS = 8,
    HV_AUDIT_OUTCOME_MAJOR = 12
};

typedef struct hv_audit_event {
    char action;
    const char *subtype;
    int outcome;
    hv_http_req_t *req;     /* the request this event is about, or NULL */
    const char *user;       /* who, when there is no request or no principal */
    const char *role;
    const char *client_id;
    const char *ip;
    const char *entity_type; /* "Patient", "Channel", "User", ... */
    const char *entity_id;
    const char *query;
    const char *const *patients; /* patient ids touched */
    size_t npatients;
    const char *purpose;     /* purpose of use (v3 PurposeOfUse code), or NULL */
    const char *detail;      /* a short reason or description, no PHI */
} hv_audit_event_t;

typedef int (*hv_audit_sink_cb)(void *ud, const hv_audit_event_t *ev);
void hv_audit_set_sink(hv_engine_t *e, hv_audit_sink_cb fn, void *ud);
/* HV_OK, or the sink's refusal (HV_EBUSY: its bounded queue is full). */
int hv_audit_record(hv_engine_t *e, const hv_audit_event_t *ev);
/* The AuditEvent.outcome for an HTTP status: 2xx/3xx 0, 4xx 4, 5xx 8. */
int hv_audit_outcome_http(int status);
/*
 * Consent for channel destinations: a destination with "purpose" (e.g. "HRESCH",
 * research) does not receive a message when the consent filter (registered by the
 * audit module) says a patient the message is about denies that purpose; the
 * message counts as done for that destination ("withheld by patient consent").
 * Without a filter nothing is withheld.
 */
typedef int (*hv_consent_filter_cb)(void *ud, const char *purpose, const char *content, size_t len,
                                    const char *content_type);
void hv_consent_set_filter(hv_engine_t *e, hv_consent_filter_cb fn, void *ud);
/* 1 when the message must not go to a destination with this purpose. */
int hv_consent_withholds(hv_engine_t *e, const char *purpose, const char *content, size_t len,
                         const char *content_type);
/* One-line form for call sites: an event about req (may be NULL with e given through
 * req's engine) with who = user when the request carries no principal (a login). */
int hv_audit_note(hv_http_req_t *req, char action, const char *subtype, int outcome, const char *user,
                  const char *detail);

/* ------------------------------------------------------------------------- */
/* Reload                                                                    */
/* ------------------------------------------------------------------------- */

/* Called on the loop thread on SIGHUP. A module re-reads what it can reload. */
typedef void (*hv_reload_cb)(hv_engine_t *e, void *ud);
int hv_reload_register(hv_engine_t *e, hv_reload_cb fn, void *ud);

#ifdef __cplusplus
}
#endif
#endif /* HV_ENGINE_H */
