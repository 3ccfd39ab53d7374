/*
 * channel_int.h — internals shared by the channel runtime files of engine/
 * (channel_conf.c, channel_store.c, channel.c, channel_http.c, channel_dest.c).
 * Not for modules: they use the registries declared in engine.h.
 */
#ifndef HV_ENGINE_CHANNEL_INT_H
#define HV_ENGINE_CHANNEL_INT_H

#include "engine/engine_int.h"

#include <json-c/json.h>

#define HV__CHAN_ID_MAX 64
#define HV__CHAN_MAX_DESTS 32
/* Bytes of a message's route (",a,b,"): every destination name (at most 64 bytes) once. */
#define HV__CHAN_ROUTE_MAX (HV__CHAN_MAX_DESTS * 65 + 2)
#define HV__CHAN_MAX_STEPS 64
#define HV__CHAN_MAX_FILTER_DEPTH 16

/* ---- channel files (channel_conf.c) ---- */

/*
 * The queue settings of one destination, with their documented defaults
 * (docs/channels.md). Delay before attempt n+1 (n >= 1 failed attempts) is
 * min(retry_interval_ms * backoff^(n-1), max_interval_ms), then +/- jitter
 * percent at random. After max_attempts failures the message is dead-lettered.
 * breaker_threshold consecutive failures open the circuit: the destination
 * sends nothing for breaker_open_ms, then tries one message (half-open).
 */
typedef struct hv__queue_conf {
    uint64_t retry_interval_ms; /* 1000 */
    uint64_t max_interval_ms;   /* 60000 */
    double backoff;             /* 2.0 */
    int jitter_pct;             /* 20 */
    int64_t max_attempts;       /* 10 */
    int64_t breaker_threshold;  /* 5 */
    uint64_t breaker_open_ms;   /* 30000 */
    int64_t batch;              /* queue rows read per storage job: 64 */
    int64_t workers;            /* parallel lanes: 1 (ordered) */
    struct hv__filter *ordering_key; /* a value rule (path/fhirpath/metadata, no op); NULL */
} hv__queue_conf_t;

/* A filter rule tree (all/any/not of leaves). */
enum { HV__F_ALL = 1, HV__F_ANY, HV__F_NOT, HV__F_HL7, HV__F_FHIRPATH, HV__F_META };
enum { HV__OP_EXISTS = 1, HV__OP_EQUALS, HV__OP_IN, HV__OP_CONTAINS };

typedef struct hv__filter {
    int kind;
    char *name;      /* for accounting: "rule 2" or the "name" key */
    char *path;      /* hl7 path, FHIRPath expression, or metadata key */
    int op;
    char **values;   /* equals: 1, in: n */
    size_t nvalues;
    struct hv__filter **kids;
    size_t nkids;
} hv__filter_t;

typedef struct hv__step_conf {
    char *type;
    json_object *conf; /* the step's object, owned */
    char pointer[64];  /* "/steps/2" for errors */
} hv__step_conf_t;

typedef struct hv__dest_conf {
    char *name;
    char *type;
    json_object *conf; /* the destination's object, owned */
    hv__queue_conf_t queue;
    hv__filter_t *when; /* NULL: always */
    char *purpose;      /* purpose of use (v3 ActReason, e.g. HRESCH): consent may withhold; NULL: none */
    char pointer[64];
} hv__dest_conf_t;

enum { HV__RESP_AFTER_STORE = 0, HV__RESP_AFTER_FILTER, HV__RESP_AFTER_DESTINATIONS };
enum { HV__KEEP_ALL = 0, HV__KEEP_METADATA };

typedef struct hv__chan_conf {
    char *path; /* the file it came from ("" for text) */
    char *id;
    char *name;
    int enabled;
    char *source_type;
    json_object *source; /* owned */
    hv__filter_t *filter;
    hv__step_conf_t *steps;
    size_t nsteps;
    hv__dest_conf_t *dests;
    size_t ndests;
    int response;
    uint32_t response_dests;      /* after-destinations: bit i = dests[i] is waited for (all) */
    uint64_t response_timeout_ms; /* after-destinations: error answer after this (30000) */
    int keep;
    int64_t retention_days; /* 0: keep forever */
    char *text_hash;        /* to tell whether a reload changed anything */
} hv__chan_conf_t;

/*
 * Parses and validates a channel file's text. Every key is checked; an error
 * is reported as err->location = path, err->line/column at the offending key or
 * value. On success *out is a new configuration (hv__chan_conf_free).
 * When `kinds` is non-NULL, the source, step and destination types must be
 * registered in it (serve); when NULL only the catalog of known names is used
 * (channel validate, which runs without the modules).
 */
int hv__chan_conf_parse(const char *text, size_t len, const char *path,
                        const hv__chan_registry_t *reg, hv__chan_conf_t **out, hv_error_t *err);
int hv__chan_conf_load(const char *path, const hv__chan_registry_t *reg, hv__chan_conf_t **out,
                       hv_error_t *err);
/* Like hv__chan_conf_load, but types of the catalog that reg lacks are accepted
 * (channel validate, which runs without the modules); reg's entries are checked. */
int hv__chan_conf_load_lenient(const char *path, const hv__chan_registry_t *reg,
                               hv__chan_conf_t **out, hv_error_t *err);
void hv__chan_conf_free(hv__chan_conf_t *c);
void hv__filter_free(hv__filter_t *f);

/* ---- registries (channel.c) ---- */


const hv_channel_source_t *hv__chan_find_source(const hv__chan_registry_t *r, const char *name);
const hv_channel_step_t *hv__chan_find_step(const hv__chan_registry_t *r, const char *name);
const hv_channel_dest_t *hv__chan_find_dest(const hv__chan_registry_t *r, const char *name);

/* The value a leaf rule reads (for ordering keys): HV_OK with *out (may be borrowed
 * from m or allocated in m->arena), or HV_ENOTFOUND. */
int hv__filter_value(const hv__chan_registry_t *reg, const hv__filter_t *f,
                     const hv_channel_msg_t *m, const char **out);

/* Filters (channel_filter.c): evaluates f on a message; sets *rule to the name of the
 * leaf that decided a rejection (borrowed from f). Returns 1 pass, 0 filtered. */
int hv__filter_eval(const hv__chan_registry_t *reg, const hv__filter_t *f,
                    const hv_channel_msg_t *m, const char **rule);

/* ---- the set step (channel_set.c) ---- */

extern const hv_channel_step_t hv__step_set;
/*
 * Sets the member at JSON Pointer `pointer` of the JSON object text[0..len) to value
 * (value_text: the same, as json-c writes it plainly), creating the objects on the
 * way: *out (in arena, NUL-terminated) and *outlen. fast = 1 edits canonical text in
 * place and takes json-c's parse, set and serialize otherwise; fast = 0 always takes
 * json-c's way; fast = 2 (tests) only edits in place, HV_ENOTSUP when it does not
 * apply. They give the same bytes. HV_EINVAL with err for content that is not
 * JSON or a pointer that does not lead through objects.
 */
int hv__set_apply(const char *text, size_t len, const char *pointer, json_object *value,
                  const char *value_text, int fast, hv_arena_t *arena, char **out, size_t *outlen,
                  hv_error_t *err);

/* ---- built-in destinations and sources (channel_http.c, channel_dest.c) ---- */

extern const hv_channel_dest_t hv__dest_http_send;
extern const hv_channel_dest_t hv__dest_file_write;
extern const hv_channel_source_t hv__source_http;
extern const hv_channel_source_t hv__source_timer;

/*
 * Destinations that write several queued messages per call (channel_dest.c:
 * file-write; channel_http.c: http-send, pipelined). A worker whose destination has one hands it the ready messages at the
 * head of its queue, in queue order (at most the fetched batch). msgs is borrowed for
 * the call; each message's content, content type and content file stay valid until
 * done runs. The destination attempts them in order and stops at the first one that
 * is not delivered, then calls done once (never from within the call) with n >= 1,
 * the number attempted, and each one's result (HV_CHANNEL_*) and detail (borrowed
 * for the call): every result before the last is HV_CHANNEL_DELIVERED or
 * HV_CHANNEL_ERROR, so nothing after a retry counts and order is kept (a pipelined
 * http-send may have written messages after the retry: they are reported as not
 * attempted and sent again, docs/channels.md). An error return means nothing was
 * attempted and done never runs. Closing the destination cancels a batch in flight:
 * done runs before close returns, with n = 0.
 */
typedef void (*hv__batch_sent_cb)(void *token, size_t n, const int *results,
                                  const char *const *details);
typedef int (*hv__dest_batch_fn)(void *state, const hv_channel_msg_t *msgs, size_t n,
                                 hv__batch_sent_cb done, void *token);
/* The batch entry of a built-in destination, or NULL (send one message at a time). */
hv__dest_batch_fn hv__dest_batch_of(const hv_channel_dest_t *impl);

/* http-send's batch entry (channel_http.c): pipelined on one connection (channel_pipe.c). */
int hv__http_send_batch(void *state, const hv_channel_msg_t *msgs, size_t n,
                        hv__batch_sent_cb done, void *token);

/*
 * The pipelined HTTP/1.1 client of http-send (channel_pipe.c). hv__pipe_for: a pipeline
 * for a plain http:// url, or NULL when url is one it does not speak (https, user
 * information: libcurl sends instead); headers are the configured ones, "Name: value"
 * (borrowed). hv__pipe_send: sends msgs[0..n) as one batch (the hv__dest_batch_fn
 * contract; the contents are borrowed until done runs, written from where they are),
 * at most window unanswered at a time. hv__pipe_free: a batch in flight is cancelled,
 * its done runs now with n = 0. hv__pipe_head (tests): message m's request head, as
 * hv__pipe_send writes it, into out (cap bytes): its length, or 0 when cap is less
 * than the head can be (the pipeline's prefix + 579 bytes).
 */
typedef struct hv__pipe hv__pipe_t;
hv__pipe_t *hv__pipe_for(uv_loop_t *loop, const char *url, const char *method,
                         const char *const *headers, size_t nheaders, size_t window,
                         long timeout_ms, long connect_timeout_ms);
int hv__pipe_send(hv__pipe_t *p, const hv_channel_msg_t *msgs, size_t n, hv__batch_sent_cb done,
                  void *token);
void hv__pipe_free(hv__pipe_t *p);
size_t hv__pipe_head(const hv__pipe_t *p, const hv_channel_msg_t *m, char *out, size_t cap);
/* Tests and fuzzing: data fed, chunk bytes at a time, as the answers to a batch of nreq
 * requests, then the end of the connection: the number of outcomes reported (*reported,
 * at most nreq) and each one's result in results[0..nreq). HV_OK when the batch reported once. */
int hv__pipe_feed_answers(const char *data, size_t n, size_t nreq, size_t chunk, int *results,
                          size_t *reported);

/* A libcurl multi handle driven by the engine's loop (channel_http.c). */
typedef struct hv__curl hv__curl_t;
hv__curl_t *hv__curl_for(hv_engine_t *e);

#endif
