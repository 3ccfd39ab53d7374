/*
 * rest_int.h — internals shared by the files of the FHIR REST API (fhir/rest*.c):
 * the module's running state and the per-request context every interaction uses.
 */
#ifndef HV_FHIR_REST_INT_H
#define HV_FHIR_REST_INT_H

#include "fhir/search_int.h"
#include "fhir/store_int.h"

enum { HV__VALIDATE_OFF = 0, HV__VALIDATE_WARN, HV__VALIDATE_REJECT };
enum { HV__PREFER_REPRESENTATION = 0, HV__PREFER_MINIMAL, HV__PREFER_OUTCOME };

typedef struct hv__fhir_listener {
    hv_fhir_change_cb cb;
    void *ud;
} hv__fhir_listener_t;

#define HV__FHIR_MAX_LISTENERS 8

/* The fhir module's state under `serve`. */
typedef struct hv__fhir {
    hv_engine_t *e;
    hv_storage_t *storage;
    hv_fhir_validator_t *validator; /* loop thread only */
    int validation;                 /* HV__VALIDATE_* */
    size_t max_bundle_entries;
    int64_t history_count;          /* default page size */
    int64_t history_max;            /* largest _count */
    char base_url[256];             /* fhir.base_url, "" to derive it from Host */
    hv_fhir_parse_opts_t parse;
    hv__fhir_listener_t listeners[HV__FHIR_MAX_LISTENERS];
    size_t nlisteners;
    hv_counter_t *m_reads, *m_writes, *m_errors;
    void *export_state;             /* fhir/rest_export.c: the Bulk Data jobs */
    void *text_state;               /* fhir/search_special.c: the deferred full-text tick */
    struct hv__rcache *rcache;      /* fhir/read_cache.c, loop thread only; NULL when off */
    hv_counter_t *m_cache_hits;     /* reads answered from rcache */
    hv__search_batch_t deferred;    /* storage thread: the index rows a batch's REST creates left to
                                     * its flush (flush_deferred, fhir/rest.c) */
} hv__fhir_t;

/* One REST request in flight: parsed on the loop thread, run as a storage job,
 * answered from the job's done callback. */
typedef struct hv__rreq {
    hv__fhir_t *f;
    hv_http_req_t *req;
    const hv_auth_principal_t *principal; /* who asks (engine/auth); NULL with auth off */
    int xml;           /* answer in XML */
    int pretty;        /* _pretty=true */
    int prefer;        /* HV__PREFER_* */
    const char *summary;  /* _summary value or NULL */
    const char *elements; /* _elements value or NULL */
    hv__fop_t op;
    struct json_object *warnings; /* OperationOutcome of a validation in warn mode, or NULL */
    /* history */
    hv__store_hist_q_t hq;
    struct json_object *entries;
    int64_t last_rid;
    size_t rows;
    int more;
    /* bundles */
    hv__bundle_job_t *bj;
    /* read: the read cache's bucket and its epoch when the storage job started */
    uint32_t rc_hash;
    uint64_t rc_epoch;
} hv__rreq_t;

/*
 * The read cache (fhir/read_cache.c): the stored JSON of the current version of
 * recently read resources, loop thread only. hv__rcache_get fills *out and returns 1
 * on a hit; out->text stays valid until the next put into the cache. hv__rcache_put
 * keeps a copy unless the bucket was written since epoch was taken.
 */
typedef struct hv__rcache hv__rcache_t;
typedef struct hv__rcache_hit {
    int64_t version;
    uint64_t ms;
    const char *text;
    size_t len;
} hv__rcache_hit_t;
int hv__rcache_new(size_t size, hv__rcache_t **out);
void hv__rcache_free(hv__rcache_t *c);
/* hv__rcache_lock: the serving engine's exclusive lock on its SQLite data directory (HV_EBUSY:
 * another process holds it). hv__rcache_writer_lock: a writing command's shared lock, *fd_out
 * to close when done (-1: none); HV_EBUSY while an engine serves the directory with its cache. */
int hv__rcache_lock(hv__rcache_t *c, const char *data_dir);
int hv__rcache_writer_lock(const char *data_dir, int *fd_out);
int hv__rcache_get(hv__rcache_t *c, uint32_t hash, const char *type, const char *id, hv__rcache_hit_t *out);
void hv__rcache_put(hv__rcache_t *c, uint32_t hash, uint64_t epoch, const char *type, const char *id,
                    int64_t version, uint64_t ms, const char *text, size_t len);
void hv__rcache_stats(const hv__rcache_t *c, uint64_t *hits, uint64_t *misses, size_t *bytes);
/* The slots allocated now: 64 at first, doubling to fhir.read_cache_size / 4 KiB (tests). */
size_t hv__rcache_slots(const hv__rcache_t *c);

/* Allocates a request context and reads the format and Prefer parameters; answers
 * the request itself (and returns NULL) when they are invalid. */
hv__rreq_t *hv__rreq_new(hv__fhir_t *f, hv_http_req_t *req);
void hv__rreq_free(hv__rreq_t *r);
/* Submits a storage job for r; on refusal answers 503 and frees r. */
void hv__rreq_submit(hv__rreq_t *r, hv_storage_job_cb job, hv_storage_done_cb done);
/* As hv__rreq_submit; rerun set submits with hv_storage_submit_rerun (the job may run
 * twice, without a savepoint of its own: it must leave nothing outside the database
 * that a second run would get wrong); HV__SUBMIT_DEFER with hv_storage_submit_deferring
 * (a REST create: its index rows may go to f->deferred). */
#define HV__SUBMIT_DEFER 2
void hv__rreq_submit_ex(hv__rreq_t *r, hv_storage_job_cb job, hv_storage_done_cb done, int rerun);
/* Whether create, update and self-contained transactions compute their search-index rows
 * (and a transaction's ids and references) on the loop thread before the storage job: on
 * unless HOLOVITALS_FHIR_WRITE_AHEAD=0, which leaves them to the storage thread as before,
 * so the tests can compare both paths' rows (test/integration/test_fhir_write_path.py). */
int hv__rest_write_ahead(void);

/* The server's base URL ("http://host:port/fhir"), allocated in the request arena. */
const char *hv__rest_base(hv__rreq_t *r);
/* The concatenation of parts[0..n) (n <= 8) in the request's arena; NULL on ENOMEM. */
char *hv__rest_join(hv__rreq_t *r, size_t n, const char *const *parts);
/* Answers with an OperationOutcome of one issue. */
void hv__rest_outcome(hv__rreq_t *r, int status, const char *severity, const char *code,
                      const char *fmt, ...) HV_PRINTF(5, 6);
/* Answers with a resource given as stored JSON text, honouring format, _pretty,
 * _summary and _elements. */
void hv__rest_send_text(hv__rreq_t *r, int status, const char *text, size_t len);
/* Applies r's _summary and _elements to a resource tree (search.html#summary) and tags
 * it SUBSETTED; returns 1 when it did. Reads only r's parameters (any thread). */
int hv__rest_subset(hv__rreq_t *r, struct json_object *res);
/* Answers with a resource tree (consumed). */
void hv__rest_send_json(hv__rreq_t *r, int status, struct json_object *res);
/* Adds ETag and Last-Modified for a version. */
void hv__rest_version_headers(hv__rreq_t *r, int64_t version, uint64_t ms);
/* Reads the request body as a resource (JSON or XML by Content-Type); answers the
 * error and returns NULL when it cannot be read. */
struct json_object *hv__rest_body(hv__rreq_t *r);
/* Runs the configured validation on a resource about to be written; answers 422
 * and returns HV_EINVAL when it is refused. */
int hv__rest_validate(hv__rreq_t *r, struct json_object *res);
/* Calls the change listeners for a completed operation (loop thread). */
void hv__fhir_notify(hv__fhir_t *f, const hv__fop_t *op);
/* Removes a change listener added with hv_fhir_store_on_change (loop thread). */
void hv__fhir_off_change(hv__fhir_t *f, hv_fhir_change_cb cb, void *ud);

/* The fhir-store destination and fhir source (fhir/channel_store.c), registered by
 * the fhir-channels module (fhir/channel.c); *out is its state, NULL when the fhir
 * module does not run in this process. */
typedef struct hv__fhir_sources hv__fhir_sources_t;
int hv__fhir_channel_store_init(hv_engine_t *e, hv__fhir_sources_t **out);
/* The module's start: Patient writes add patient.* outbox rows when the bus runs here. */
int hv__fhir_channel_store_start(hv_engine_t *e, hv__fhir_sources_t *reg);
void hv__fhir_channel_store_free(hv_engine_t *e, hv__fhir_sources_t *reg);

/* An OperationOutcome tree with one issue. */
struct json_object *hv__outcome_new(const char *severity, const char *code, const char *msg);

/* Answers 403 (an OperationOutcome) and returns HV_EPERM when r's token may not perform
 * interaction (HV_AUTH_*) on any resource of type (NULL: every type); HV_OK otherwise
 * (fhir/rest_authz.c). */
int hv__authz_type(hv__rreq_t *r, int interaction, const char *type);

/* Registers (on) or removes the SMART patient picker served from the store (fhir/rest_authz.c). */
void hv__authz_register_picker(hv__fhir_t *f, int on);

/* Answers a search (fhir/search.c); r->op.type is set. Takes r. */
void hv__search_handle(hv__rreq_t *r);
/* A system-level search (GET /fhir?..., _type) through the planner. Takes r. */
void hv__search_handle_system(hv__rreq_t *r);
/* GET /fhir and POST /fhir/_search (fhir/search.c). */
int hv__search_routes(hv__fhir_t *f, hv_router_t *r);

/* Route registration, one per interaction family. */
int hv__rest_crud_routes(hv__fhir_t *f, hv_router_t *r);
int hv__rest_history_routes(hv__fhir_t *f, hv_router_t *r);
int hv__rest_bundle_routes(hv__fhir_t *f, hv_router_t *r);
int hv__rest_capability_routes(hv__fhir_t *f, hv_router_t *r);
int hv__rest_compartment_routes(hv__fhir_t *f, hv_router_t *r);
int hv__patients_routes(hv__fhir_t *f, hv_router_t *r); /* fhir/patients.c: /patients views */
int hv__rest_export_routes(hv__fhir_t *f, hv_router_t *r);
/* Cancels the running exports (they run again at the next start) and stops taking new ones. */
void hv__export_stop(hv__fhir_t *f);
void hv__export_free(hv__fhir_t *f);
/* The deferred full-text index's tick (fhir/search_special.c): started once the storage
 * thread runs, stopped with the module, freed after the storage thread. */
int hv__search_text_start(hv__fhir_t *f);
void hv__search_text_stop(hv__fhir_t *f);
void hv__search_text_free(hv__fhir_t *f);

/* Module lifecycle (fhir/rest.c), plugged into hv_fhir_module. */
int hv__fhir_rest_init(hv_engine_t *e, void **state);
void hv__fhir_rest_stop(hv_engine_t *e, void *state);
void hv__fhir_rest_free(hv_engine_t *e, void *state);

/* `holovitals import` (fhir/import.c). */
int hv__fhir_cmd_import(hv_engine_t *e, int argc, char **argv);
/* `holovitals reindex` and POST /fhir/$reindex (fhir/search_reindex.c). */
int hv__fhir_cmd_reindex(hv_engine_t *e, int argc, char **argv);
int hv__search_reindex_routes(hv__fhir_t *f, hv_router_t *r);

#endif /* HV_FHIR_REST_INT_H */
