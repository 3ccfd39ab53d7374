/*
 * channel_rt.h — the running state of channels, shared by channel.c (deployment,
 * store, workers), channel_api.c (HTTP), channel_cli.c and the built-in sources
 * and destinations.
 */
#ifndef HV_ENGINE_CHANNEL_RT_H
#define HV_ENGINE_CHANNEL_RT_H

#include "engine/channel_int.h"

enum { HV__CHAN_STARTED = 0, HV__CHAN_PAUSED, HV__CHAN_STOPPED };

typedef struct hv__chans hv__chans_t;
typedef struct hv_channel hv__chan_t;
typedef struct hv__worker hv__worker_t;
typedef struct hv__bus hv__bus_t;

/* One queue row read into memory by a worker. */
typedef struct hv__item {
    int64_t qid, mid, attempts;
    uint64_t next_at, received_at;
    char *content;
    size_t len;
    char *content_type;
} hv__item_t;

struct hv__worker {
    hv__chan_t *ch;
    const hv__dest_conf_t *conf;
    size_t dest_index; /* in conf->dests */
    int64_t lane;      /* 0 .. queue.workers-1: the part of the queue this worker sends */
    const hv_channel_dest_t *impl;
    void *state;
    uv_timer_t timer;
    int timer_open;
    int refs;     /* the timer's, plus one per storage job or send in flight */
    int busy;     /* a fetch, send or outcome is in flight */
    int sending;
    int idle;
    int paused;
    int closing;
    hv__item_t *items;
    size_t nitems, head;
    /* circuit breaker and statistics since start */
    int64_t failures; /* consecutive */
    uint64_t breaker_until;
    uint64_t sent, dead, attempt_failures;
    hv_counter_t *m_sent, *m_dead, *m_failed; /* /metrics, per destination */
};

typedef struct hv__step_inst {
    const hv_channel_step_t *impl;
    void *state;
} hv__step_inst_t;

struct hv_channel {
    hv__chans_t *rt;
    hv__chan_conf_t *conf;
    int state;
    int held;    /* workers wait for the previous version's to finish */
    int retired;
    int refs;
    hv__chan_t *successor;
    int successor_ref;
    const hv_channel_source_t *src;
    void *src_state;
    hv__step_inst_t *steps;
    size_t nsteps;
    hv__worker_t **workers;
    size_t nworkers;
    uint64_t received, filtered, errored; /* since start */
    uint64_t next_lane; /* round robin of lanes for destinations without an ordering key */
    hv_counter_t *m_received, *m_filtered, *m_errored; /* /metrics, per channel */
};

struct hv__chans {
    hv_engine_t *engine;
    char *dir;
    hv_storage_t *storage;
    int fts;
    hv__chan_t **chans;
    size_t nchans;
    uv_fs_event_t watch;
    uv_timer_t watch_timer, prune_timer;
    int watch_open, timers_open, stopped;
    hv__curl_t *curl; /* made on the first http-send delivery */
    hv__bus_t *bus;   /* the event bus (event.c) */
    char last_error[1024];
};

/* One message being received or reprocessed. */
typedef struct hv__ingest {
    hv__chan_t *ch;
    hv_arena_t *arena;
    hv_channel_msg_t msg;
    char *raw;
    size_t raw_len;
    const char *out;
    size_t out_len;
    int transformed;
    const char *status;
    const char *error;
    const char *filtered_by;
    unsigned char dest_on[HV__CHAN_MAX_DESTS];
    int64_t dest_lane[HV__CHAN_MAX_DESTS];
    int64_t id, reprocess_id;
    hv_channel_stored_cb cb;
    void *ud;
} hv__ingest_t;

/* channel.c */
void hv__chan_register_builtins(hv_engine_t *e);
void hv__chan_ref(hv__chan_t *ch);
void hv__chan_unref(hv__chan_t *ch);
hv__chan_t *hv__chan_find(hv__chans_t *rt, const char *id);
int hv__chan_deploy(hv__chans_t *rt, hv__chan_conf_t *conf, hv_error_t *err);
void hv__chan_undeploy(hv__chans_t *rt, hv__chan_t *ch);
int hv__chans_reload(hv__chans_t *rt);
void hv__chan_set_state(hv__chan_t *ch, int state);
void hv__worker_set_paused(hv__worker_t *w, int paused);
void hv__chan_wake(hv__chan_t *ch);
/* Receives (reprocess_id 0) or reprocesses a message; cb after the commit. */
int hv__chan_ingest(hv__chan_t *ch, const char *content, size_t len, const char *content_type,
                    int64_t reprocess_id, uint64_t received_at, hv_channel_stored_cb cb, void *ud);

/* channel_api.c */
int hv__chan_routes_add(hv_engine_t *e, hv__chans_t *rt);
/* channel_edit.c: the channel file and dry-run routes (added by hv__chan_routes_add). */
int hv__chan_edit_routes_add(hv_engine_t *e, hv__chans_t *rt);
void hv__chan_prune_start(hv__chans_t *rt);

/* channel_cli.c */
extern const hv_command_t hv__chan_commands[];

/* channel_http.c */
void hv__curl_cancel_all(hv_engine_t *e);
void hv__curl_free(hv_engine_t *e);

/* event.c */
extern const hv_channel_source_t hv__source_event;
extern const hv_channel_dest_t hv__dest_event;
int hv__bus_new(hv__chans_t *rt);
void hv__bus_replay(hv__chans_t *rt);
void hv__bus_free(hv__chans_t *rt);

/* channel_dest.c */
extern const hv_channel_dest_t hv__dest_channel;
void hv__chan_register_builtin_steps(hv_engine_t *e);
/* The runtime of the engine, for the channel destination (NULL outside serve). */
hv__chans_t *hv__chans_of(hv_engine_t *e);

#endif
