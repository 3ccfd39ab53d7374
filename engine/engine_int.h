/*
 * engine_int.h — internals shared between the files of engine/. Not for modules.
 */
#ifndef HV_ENGINE_INT_H
#define HV_ENGINE_INT_H

#include "engine/engine.h"


/* ---- router ---- */

#define HV_ROUTE_MAX_SEGMENTS 32
#define HV_ROUTE_MAX_PARAMS 8

/* Latency statistics of one route since start: a log-linear histogram of
 * microseconds (8 sub-buckets per power of two, up to ~2^34 us). */
#define HV_LAT_BUCKETS (35 * 8)
typedef struct hv__latency {
    uint64_t count;
    uint64_t buckets[HV_LAT_BUCKETS];
} hv__latency_t;

typedef struct hv__route {
    char *pattern;
    unsigned methods;
    hv_http_handler_cb fn;
    void *ud;
    int nseg;
    char *seg[HV_ROUTE_MAX_SEGMENTS]; /* literal, ":name", or "*" */
    size_t seglen[HV_ROUTE_MAX_SEGMENTS]; /* strlen of each seg */
    int wild;                         /* the last segment is "*" */
    int score;                        /* specificity, higher wins */
    hv__latency_t latency;            /* for GET /performance */
    hv_histogram_t *hist;             /* for /metrics */
    int ncodes;                       /* request counters by status, made on first use */
    struct {
        int status;
        hv_counter_t *counter;
    } codes[16];
} hv__route_t;

typedef struct hv__route_match {
    hv__route_t *route; /* NULL: no route for this path */
    unsigned allowed;   /* methods allowed on the path when route is NULL and the path exists */
    int nparam;
    const char *pname[HV_ROUTE_MAX_PARAMS];
    char *pval[HV_ROUTE_MAX_PARAMS]; /* allocated from the request arena */
} hv__route_match_t;

hv_router_t *hv__router_new(void);
void hv__router_free(hv_router_t *r);
/* Matches method and decoded path; parameter values come from arena. */
int hv__router_match(hv_router_t *r, int method, const char *path, hv_arena_t *arena,
                     hv__route_match_t *m);
hv_http_error_cb hv__router_error_format(hv_router_t *r, const char *path);
/* Calls fn for each route (for /performance and metric registration). */
void hv__router_each(hv_router_t *r, void (*fn)(hv__route_t *route, void *ud), void *ud);
void hv__latency_add(hv__latency_t *l, uint64_t us);
/* The q-quantile (0..1) in microseconds. */
double hv__latency_quantile(const hv__latency_t *l, double q);

/* ---- metrics ---- */

hv_metrics_t *hv__metrics_new(void);
void hv__metrics_free(hv_metrics_t *m);

/* ---- HTTP server ---- */

typedef struct hv__http_server hv__http_server_t;

typedef struct hv__http_limits {
    size_t max_header;       /* request line + headers, bytes */
    size_t max_body;         /* request body, bytes */
    size_t max_connections;
    uint64_t header_timeout; /* ms from the first byte of a request to the end of its headers */
    uint64_t body_timeout;   /* ms allowed between two reads of a body */
    uint64_t idle_timeout;   /* ms a keep-alive connection may wait for the next request */
    size_t max_pending_out;  /* bytes queued for a slow reader before reading stops */
    int access_log;          /* one info line per request */
    size_t spool_body;       /* a body larger than this goes to a file in spool_dir (0: never) */
    char spool_dir[4096];    /* "" : never spool */
} hv__http_limits_t;

/* Removes the spool files a previous process left in dir (a crash mid-upload). */
void hv__http_spool_clean(const char *dir);
int hv__http_server_new(hv_engine_t *e, const hv__http_limits_t *limits, hv_tls_ctx_t *tls,
                        hv__http_server_t **out);
int hv__http_server_listen(hv__http_server_t *s, const char *host, int port, hv_error_t *err);
/* Stops accepting, lets in-flight requests finish, closes idle connections; calls
 * done once every connection is closed, or after timeout_ms with the rest cut off. */
void hv__http_server_shutdown(hv__http_server_t *s, uint64_t timeout_ms, void (*done)(void *),
                              void *ud);
void hv__http_server_free(hv__http_server_t *s);
size_t hv__http_server_connections(hv__http_server_t *s);
int hv__http_server_port(hv__http_server_t *s); /* the bound port, for tests */

/* ---- health ---- */

typedef struct hv__health_check {
    char *name;
    hv_health_cb fn;
    void *ud;
} hv__health_check_t;

/* ---- channel registries (filled by modules' init, read by engine/channel*.c) ---- */

typedef struct hv__chan_registry {
    const hv_channel_source_t *sources[32];
    size_t nsources;
    const hv_channel_step_t *steps[64];
    size_t nsteps;
    const hv_channel_dest_t *dests[32];
    size_t ndests;
    const hv_channel_path_provider_t *paths[8];
    size_t npaths;
    /* Built-in channels (hv_channel_register_builtin): deployed when no file of the
     * channels directory has their id. Copies, so that the registrar owns nothing. */
    struct {
        char id[65];
        char json[8192];
    } builtins[4];
    size_t nbuiltins;
} hv__chan_registry_t;

typedef struct hv__reload_hook {
    hv_reload_cb fn;
    void *ud;
} hv__reload_hook_t;

/* ---- the engine ---- */

struct hv_engine {
    uv_loop_t loop;
    int loop_ready;
    hv_config_t *config;
    hv_router_t *router;
    hv_metrics_t *metrics;
    const hv_module_t *const *modules;
    void **states; /* per module, NULL when not running */
    unsigned char *enabled;
    size_t nmodules;
    char *data_dir;
    char *db_url;
    hv__http_server_t *http;
    hv_tls_ctx_t *tls;
    hv__health_check_t *checks;
    size_t nchecks;
    hv_storage_t *storage; /* the engine's own tables: errors, alerts */
    uv_signal_t sigterm, sigint, sighup;
    uv_timer_t tick; /* log flush, cached health state */
    int stopping;
    int exit_code;
    uint64_t started_ms;
    /* cached state refreshed by the tick timer */
    int db_status;
    char db_output[128];
    uint64_t disk_free;
    int disk_status;
    int channels_status;
    char channels_output[160];
    long channel_files;
    hv_counter_t *errors_total;
    void *monitor; /* monitor.c's state */
    hv__chan_registry_t chan_reg;
    hv__reload_hook_t reload[16];
    size_t nreload;
    hv_http_guard_cb guard; /* the authentication module's request guard, or NULL */
    void *guard_ud;
    hv_audit_sink_cb audit_sink; /* the audit module's sink, or NULL (engine/audit.c) */
    void *audit_ud;
    hv_consent_filter_cb consent_filter; /* the audit module's consent check, or NULL */
    void *consent_ud;
    hv_http_respond_hook_cb respond_hook; /* observes every answer before it is sent, or NULL */
    void *respond_hook_ud;
    hv_http_admit_cb admit_hook; /* the audit trail's admission check, or NULL */
    void *admit_hook_ud;
};

/* monitor.c: /health, /metrics, /errors, /performance, /alerts */
int hv__monitor_init(hv_engine_t *e);
void hv__monitor_free(hv_engine_t *e);
void hv__monitor_tick(hv_engine_t *e);

/* serve.c */
int hv__serve(hv_engine_t *e, int argc, char **argv);
extern const hv_setting_t hv__engine_settings[];

/* Tests only (engine/storage.c): when set, the pipelined sync thread calls it before each
 * fdatasync of the WAL; a status other than HV_OK counts as a failed fdatasync. */
extern int (*hv__storage_sync_hook)(void);
/* Tests only (engine/storage.c): 1 while the storage thread waits with no job waiting for
 * it, so that the loop's next job is streamed to it (submit). */
int hv__storage_parked(hv_storage_t *s);

#endif
