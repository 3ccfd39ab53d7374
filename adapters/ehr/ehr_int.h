/*
 * ehr_int.h — internals shared by the files of adapters/ehr.
 *
 *   http.c     libcurl multi on the libuv loop; calls with retries, backoff and a rate limit
 *   page.c     searchset pages, NDJSON, Retry-After (pure)
 *   schedule.c cron subset (pure)          seal.c  AES-256-GCM (pure)
 *   auth.c     SMART discovery and backend-services tokens
 *   store.c    the module's tables and their storage jobs
 *   sync.c     a sync run: search paging, checkpoints, the end of a run
 *   write.c    a page into the FHIR store in-process: local ids, conflicts, rows
 *   bulk.c     Bulk Data $export: kick-off, polling, NDJSON download, import
 *   api.c      the /ehr routes              module.c settings, sources, scheduler
 */
#ifndef HV_EHR_INT_H
#define HV_EHR_INT_H

#include "adapters/ehr/ehr.h"

#include <stdio.h>

struct json_object;

#define HV__EHR_ID_MAX 40
#define HV__EHR_HOLDER_MAX 24 /* an engine's id (lease.c): 16 hex digits */
#define HV__EHR_MAX_ERRORS 100 /* errors kept per run; more are counted */

typedef struct hv__ehr hv__ehr_t;
typedef struct hv__ehr_conn hv__ehr_conn_t;
typedef struct hv__ehr_run hv__ehr_run_t;
typedef struct hv__ehr_http hv__ehr_http_t;
typedef struct hv__ehr_call hv__ehr_call_t;

/* ---- HTTP (http.c) ---- */

/* A finished call as its callback sees it (borrowed for the call; body may be taken). */
typedef struct hv__ehr_resp {
    int status;           /* HV_OK when an HTTP answer came, else the transport failure */
    long code;            /* HTTP status code */
    hv_buf_t body;        /* the body (when not written to a file) */
    char retry_after[64]; /* Retry-After, "" if none */
    char content_location[1024];
    char location[1024];
    char content_type[128];
    char etag[64];
    char error[256];      /* transport error or "HTTP 503 after 5 attempts" */
    int attempts;
} hv__ehr_resp_t;

typedef void (*hv__ehr_call_cb)(void *ud, hv__ehr_resp_t *resp);

typedef struct hv__ehr_req {
    const char *method;      /* NULL: GET */
    const char *url;
    const char *accept;      /* NULL: application/fhir+json */
    const char *content_type;
    const char *body;
    size_t body_len;
    const char *bearer;      /* access token, or NULL */
    const char *basic_user;  /* HTTP Basic (client secret), or NULL */
    const char *basic_pass;
    const char *prefer;      /* Prefer header, or NULL */
    const char *sink_path;   /* write the body to this file (bulk NDJSON), else to memory */
    int retry;               /* retry 408/429/5xx and transport failures */
    int no_verify_tls;       /* 1: do not verify the server's certificate (loopback, tests) */
    uint64_t *rate_slot;     /* the connection's next free start (ms, monotonic); NULL: no limit */
    uint64_t rate_interval_ms;
    uint64_t delay_ms;       /* wait this long before the first attempt */
} hv__ehr_req_t;

int hv__ehr_http_new(hv__ehr_t *m, hv__ehr_http_t **out);
/* Cancels every call (callbacks run with HV_ECLOSED) and frees once handles close. */
void hv__ehr_http_free(hv__ehr_http_t *h);
/* Starts a call; cb runs exactly once, later, on the loop thread. */
int hv__ehr_call(hv__ehr_http_t *h, const hv__ehr_req_t *r, hv__ehr_call_cb cb, void *ud);

/* ---- Module state ---- */

struct hv__ehr_conn {
    char id[HV__EHR_ID_MAX];
    const hv_ehr_vendor_t *vendor;
    char *base_url;        /* without a trailing '/' */
    char *client_id;
    char *scopes;
    char *schedule_text;
    char *key_id;          /* JWKS kid of the private key */
    char *alg;             /* client assertion alg */
    char *group_id;
    char *conflict;        /* "ehr-wins" | "local-wins" | "keep-both" */
    char *token_url;       /* configured or discovered */
    struct json_object *types; /* array of resource type strings */
    unsigned char *key_sealed;
    size_t key_sealed_len;
    unsigned char *secret_sealed;
    size_t secret_sealed_len;
    int page_size;
    int verify_tls;
    double rate;           /* requests per second, 0: no limit */
    hv_ehr_schedule_t schedule;
    int64_t created_at;
    int64_t since_ms;      /* start of the last completed run: the next incremental's _lastUpdated */
    int64_t next_run_at;   /* scheduled, ms; 0 none */
    /* Runtime, never stored. */
    char *token;
    uint64_t token_exp_ms;
    uint64_t rate_slot;
    hv__ehr_run_t *active;
    int removed;
    hv__ehr_conn_t *next;
};

typedef struct hv__ehr_binding {
    char conn[HV__EHR_ID_MAX];
    hv_channel_t *ch;
    struct hv__ehr_binding *next;
} hv__ehr_binding_t;

struct hv__ehr {
    hv_engine_t *e;
    hv_storage_t *storage;
    hv__ehr_http_t *http;
    unsigned char kek[32];
    hv__ehr_conn_t *conns;
    hv__ehr_run_t *runs;
    hv__ehr_binding_t *bindings;
    uv_timer_t sched;
    int sched_started;
    int sched_closed;
    int free_pending;
    int sched_done; /* the timer's close callback ran */
    int stopping;
    /* settings */
    uint64_t timeout_ms, retry_base_ms, max_retry_after_ms, token_renew_ms;
    int max_attempts, max_pages;
    uint64_t max_page_bytes;
    uint64_t max_download_bytes;
    uint64_t bulk_poll_ms;
    int64_t bulk_chunk_max;          /* ehr.bulk_chunk_max: most lines per Bulk chunk (bulk.c chunk_lines) */
    uint64_t overlap_ms;
    int verify_tls_default;
    int id_reconcile;                /* ehr.id_reconcile (sync.c) */
    int defer_indexes;               /* ehr.defer_indexes (bulk.c, hv__ehr_bulk_defer) */
    double rate_default;
    uint64_t lease_ttl_ms;
    char holder[HV__EHR_HOLDER_MAX]; /* this engine's id for leases */
    uint64_t conn_writes;            /* connection rows written by this engine (store.c refresh) */
    int refreshing;                  /* a reload of the connection rows is in flight */
};

/* ---- Runs (sync.c, bulk.c) ---- */

struct hv__ehr_run {
    hv__ehr_t *m;
    hv__ehr_conn_t *c;
    char id[HV__EHR_ID_MAX];
    char mode[16];              /* full | incremental | bulk */
    int64_t started_at;
    int64_t since_ms;           /* 0: full */
    /* progress: the checkpoint */
    size_t type_idx;
    size_t patient_idx;         /* for patient-scoped types */
    char *next_url;             /* the page to fetch next; NULL: the type's first */
    int64_t pages;
    char *bulk_status_url;      /* bulk: the polling URL, once kicked off */
    size_t bulk_file;           /* bulk: the output file being imported */
    int64_t bulk_line;          /* bulk: lines of it already imported */
    struct hv__ehr_feed *bulk_feed; /* bulk: the open file, its chunks read and prepared ahead in
                                     * the libuv thread pool (bulk.c) */
    struct hv__ehr_dl *bulk_dl; /* bulk: the next output file, downloaded ahead (bulk.c) */
    struct hv__ehr_feed *bulk_next; /* bulk: the next output file's feed, opened ahead (bulk.c) */
    int bulk_got_ahead;         /* bulk.c: the file being opened was asked for ahead (debug log) */
    int bulk_writing;           /* bulk.c: where the chunk's write is */
    int bulk_waiting;           /* bulk.c: the import waits for the feed's next chunk */
    int defer_tried;            /* bulk.c: whether to defer the store's search indexes was decided */
    int deferred;               /* bulk.c: this run dropped them; built again when it ends */
    /* counts */
    int64_t fetched, created, updated, unchanged, failed, conflicts, deleted;
    int reconciled;
    int unreadable;             /* bulk: a line that is not a resource was met (no reconciliation; not saved) */
    int leased;                 /* this engine holds the connection's lease for the run (lease.c) */
    int resumed;                /* found "running" at start (store.c): possibly another engine's */
    uint64_t lease_saved_ms;    /* when a save last renewed it */             /* a full sync's deletions were looked for (reconcile.c) */
    struct json_object *errors; /* array of {"where", "message"} */
    int64_t nerrors;
    int page_failed;            /* a page could not be fetched or read */
    /* loop detection: hashes of the page URLs of the current type */
    uint64_t *seen;
    size_t nseen, capseen;
    /* patient ids for patient-scoped types */
    char **patients;
    size_t npatients;
    struct json_object *bulk_outputs; /* array of {type, url} */
    int auth_retried;
    int patients_loaded;
    char *pending_next;         /* the page being written: its next link */
    void (*after_checkpoint)(hv__ehr_run_t *r);
    int finished;
    uint64_t fetch_started_ms, fetch_ms; /* the page in flight: for the debug log */
    int page_ahead;             /* the page being written was fetched ahead: for the debug log */
    struct hv__ehr_pf *pf;      /* the next page, fetched and prepared ahead (sync.c) */
    struct hv__ehr_hist *hist;  /* an incremental's history read for deletions (history.c) */
    int ids_pass;               /* an incremental's id listing (sync.c): pages only mark what the EHR has */
    int rows_lazy;              /* the last page written was mostly unchanged: the next page is
                                 * validated after the look-up, its rows left to the store (write.c) */
    hv__ehr_run_t *next;
};

/* store.c */
int hv__ehr_store_migrate(hv_db_t *db, hv_error_t *err);
int hv__ehr_store_load(hv__ehr_t *m, hv_db_t *db); /* connections, at init */
/* Reloads the connection rows (other engines' changes) and merges them on the loop. */
int hv__ehr_conn_refresh(hv__ehr_t *m);
int hv__ehr_conn_save(hv__ehr_t *m, hv__ehr_conn_t *c, void (*done)(int status, void *ud), void *ud);
int hv__ehr_conn_delete(hv__ehr_t *m, const char *id);
int hv__ehr_run_save(hv__ehr_run_t *r, const char *status, void (*done)(int status, void *ud), void *ud);
void hv__ehr_conn_free(hv__ehr_conn_t *c);
hv__ehr_conn_t *hv__ehr_conn_find(hv__ehr_t *m, const char *id);
/* Runs with status "running" found at start: resumed from their checkpoints. */
int hv__ehr_store_pending_runs(hv__ehr_t *m, hv_db_t *db);

/* sync.c */
/* Starts a run; its id is copied to run_id (the run may end before this returns). */
/* leased: the caller took the connection's lease already (a scheduled start); else the run
 * takes it first and ends "failed" when another engine holds it. */
int hv__ehr_run_start(hv__ehr_t *m, hv__ehr_conn_t *c, const char *mode, char run_id[HV__EHR_ID_MAX], int leased);
void hv__ehr_run_resume(hv__ehr_run_t *r);
void hv__ehr_run_error(hv__ehr_run_t *r, const char *where, const char *fmt, ...) HV_PRINTF(3, 4);
/* write.c: writes a batch of resources (array) of the run into the store; then cb. */
typedef void (*hv__ehr_written_cb)(hv__ehr_run_t *r, int status);
void hv__ehr_write_resources(hv__ehr_run_t *r, struct json_object *resources, hv__ehr_written_cb cb);
/* write.c: records that the EHR has these resources (their type and id only: an id listing),
 * for the run's reconciliation; then cb. */
void hv__ehr_mark_seen(hv__ehr_run_t *r, struct json_object *resources, hv__ehr_written_cb cb);
/* The same in two steps, so that a page can be prepared while the one before is written:
 * prepare (checks, validation, hashes, local ids; errors and counts kept in the batch, NULL
 * when out of memory), then write (adds them to the run; takes the batch), or free. */
typedef struct hv__ehr_batch hv__ehr_batch_t;
hv__ehr_batch_t *hv__ehr_batch_prepare(hv__ehr_run_t *r, struct json_object *resources);
/* What preparing a batch reads of its run and connection, copied, so that a batch can be
 * prepared on another thread (bulk.c's feed, in the libuv thread pool) while the loop thread
 * goes on with the run. Made on the loop thread; the preparation reads only these copies,
 * the FHIR model's tables (read-only after their first use) and its own trees. */
typedef struct hv__ehr_prep {
    char conn[HV__EHR_ID_MAX];
    char run_id[HV__EHR_ID_MAX];
    char policy_name[16];
    char *base_url;                        /* owned */
    int rows_lazy;                         /* as the run's (refreshed before each use) */
    void *f;                               /* the fhir module, NULL when absent: the preparation
                                            * only carries it to the write (loop thread) */
    struct hv_fhir_validator *validator;   /* fhir.validation=reject: the validator the
                                            * preparation uses, else NULL */
    int own_validator;                     /* validator is the prep's own (freed with it) */
    int text_only;                         /* a resource's tree is dropped once its stored text,
                                            * index rows and compartments are made, and parsed
                                            * again from that text by the store job (write.c
                                            * step 3): a prepared batch then holds ~1.5 KB of
                                            * text per resource instead of a ~20 KB json-c tree
                                            * (bulk.c's chunks, prepared ahead of their write);
                                            * prepared lazily, a resource is kept as compact
                                            * JSON, parsed again only if it is to be written */
} hv__ehr_prep_t;
/* own_validator: a validator of its own (a validator serves one thread at a time), for a
 * preparation off the loop thread; else the fhir module's, for the loop thread. */
int hv__ehr_prep_init(hv__ehr_prep_t *p, hv__ehr_run_t *r, int own_validator);
void hv__ehr_prep_clear(hv__ehr_prep_t *p);
/* hv__ehr_batch_prepare from the copies: may run on any thread (one at a time per prep). */
hv__ehr_batch_t *hv__ehr_batch_prepare_with(const hv__ehr_prep_t *p, struct json_object *resources);
/* The same one resource at a time, so that a reader need not hold a whole chunk's trees
 * (bulk.c): an empty batch for up to cap resources (NULL when out of memory), then each
 * resource prepared as the batch's next, the tree taken (with p->text_only it is freed
 * as soon as it is prepared). Any thread, one at a time per prep. */
hv__ehr_batch_t *hv__ehr_batch_new(const hv__ehr_prep_t *p, size_t cap);
void hv__ehr_batch_add(const hv__ehr_prep_t *p, hv__ehr_batch_t *b, struct json_object *res);
void hv__ehr_batch_write(hv__ehr_run_t *r, hv__ehr_batch_t *b, hv__ehr_written_cb cb);
void hv__ehr_batch_free(hv__ehr_batch_t *b);
/* A resource of the batch that could not even be read (a bulk line that is not JSON): counted
 * fetched and failed, its error recorded, when the batch is written. */
void hv__ehr_batch_fail(hv__ehr_batch_t *b, const char *where, const char *fmt, ...) HV_PRINTF(3, 4);
#define HV__EHR_LOCAL_ID_MAX 65
/* The local id of the EHR's type/id synced through connection conn (write.c explains the rule). */
void hv__ehr_local_id(const char *conn, const char *type, const char *id, char out[HV__EHR_LOCAL_ID_MAX]);
/* Rewrites the references of res to the connection's local ids; HV_EINVAL when nested too deep. */
int hv__ehr_rewrite_refs(struct json_object *res, const char *conn, const char *base);
void hv__ehr_run_finish(hv__ehr_run_t *r);
void hv__ehr_run_free(hv__ehr_run_t *r);
/* Saves the checkpoint and counts; then continues with next. */
void hv__ehr_run_checkpoint(hv__ehr_run_t *r, void (*next)(hv__ehr_run_t *r));

/* reconcile.c: after a full search sync, deletes locally what the EHR no longer has
 * (ehr.deletions); then hv__ehr_run_finish. */
void hv__ehr_reconcile(hv__ehr_run_t *r);
/* The same after a Group or Patient-level Bulk export: only within the compartments of the
 * Patients the run saw (reconcile.c). */
void hv__ehr_reconcile_scoped(hv__ehr_run_t *r);
/* A resource gone from the EHR: its type and the EHR's id. */
typedef struct hv__ehr_gone_ref {
    char type[64];
    char id[65];
} hv__ehr_gone_t;
/* reconcile.c: deletes locally those of gone[0..n) the connection synced (ehr.deletions); takes
 * gone (hv_free); then hv__ehr_run_finish. */
void hv__ehr_reconcile_gone(hv__ehr_run_t *r, hv__ehr_gone_t *gone, size_t n);
/* history.c: an incremental's deletions from the EHR's [type]/_history?_since (vendors with
 * history_deletions); then hv__ehr_reconcile_gone. */
void hv__ehr_history_deletions(hv__ehr_run_t *r);

/* lease.c */
typedef void (*hv__ehr_lease_cb)(hv__ehr_t *m, hv__ehr_conn_t *c, int ok, const char *holder, void *ud);
/* Takes c's lease (scheduled: also claims its due start); cb(ok, the holder now) on the loop.
 * c is looked up again by id for cb (NULL when removed meanwhile). */
int hv__ehr_lease_claim(hv__ehr_t *m, hv__ehr_conn_t *c, int scheduled, hv__ehr_lease_cb cb, void *ud);
/* Reads or creates <data>/ehr-engine.id into m->holder. */
int hv__ehr_engine_id(hv__ehr_t *m);

/* auth.c: ensures c has a fresh access token (or needs none); cb(status) on the loop. */
typedef void (*hv__ehr_token_cb)(hv__ehr_run_t *r, int status);
void hv__ehr_token_get(hv__ehr_run_t *r, hv__ehr_token_cb cb);
void hv__ehr_token_drop(hv__ehr_conn_t *c);

/* bulk.c */
typedef struct hv__ehr_chunk hv__ehr_chunk_t;
typedef struct hv__ehr_feed hv__ehr_feed_t;
void hv__ehr_bulk_step(hv__ehr_run_t *r);
/* Frees the run's chunk prepared ahead, if any. */
void hv__ehr_bulk_release(hv__ehr_run_t *r);
/* Lets go of the next output file's download and feed ahead, if any (freed when their call
 * or work ends). */
void hv__ehr_bulk_drop_ahead(hv__ehr_run_t *r);
/* A run that deferred the store's search indexes (r->deferred): builds them, then next. */
void hv__ehr_bulk_restore(hv__ehr_run_t *r, void (*next)(hv__ehr_run_t *r));

/* api.c */
int hv__ehr_api_register(hv__ehr_t *m);
void hv__ehr_conn_json(const hv__ehr_conn_t *c, struct json_object *out);

/* module.c */
hv_channel_t *hv__ehr_channel_for(hv__ehr_t *m, const char *conn);
void hv__ehr_schedule_arm(hv__ehr_t *m);

#endif /* HV_EHR_INT_H */
