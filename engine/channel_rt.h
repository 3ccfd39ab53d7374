/*
 * channel_rt.h — the running state of channels, shared by channel.c (deployment,
 * store, workers), channel_api.c (HTTP), channel_cli.c and the built-in sources
 * and destinations.
 */
#ifndef HV_ENGINE_CHANNEL_RT_H
#define HV_ENGINE_CHANNEL_RT_H

#include "engine/channel_int.h"

enum { HV__CHAN_STARTED = 0, HV__CHAN_PAUSED, HV__CHAN_STOPPED };

/* Shared store (PostgreSQL): an idle worker looks for other processes' messages this often. */
#define HV__CHAN_SHARED_POLL_MS 200
/* A worker's batch of queue rows holds at most this much content (or a single message). */
#define HV__CHAN_FETCH_BYTES (16u << 20)

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
    char *file;          /* the content is in this file (a large message), content is "" */
    const char *refuse;  /* not sendable by this destination: dead-letter with this reason */
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
    /* Cursor queue (channel.c): the destination reads the channel's messages in id
     * order after pos instead of queue rows; rows only for retries, dead letters,
     * requeues and reprocessing (and the old kind's, delivered first). */
    int cursor;
    int pos_loaded; /* pos read from chan_cursors (at the first fetch) */
    int pos_reload; /* an outcome was lost: read pos again before the next fetch */
    int64_t pos;    /* the last message id read from the cursor into items */
    /* The channel's shared read (channel_read.c). rows_clear: the last fetch from the
     * store found no queue row of this destination and nothing has queued one since, so
     * the worker may take messages from the channel's shared rows. While a fetch is in
     * flight (fetching), the storage thread fills fetched[0..nfetched) — the routed
     * messages it read, covering ids (fetched_lo, fetched_hi] — and fetch_no_rows;
     * fetch_gen and fetch_from are the channel's read generation and pos when it was
     * submitted. */
    int rows_clear;
    int fetching;
    int fetch_no_rows;
    uint64_t fetch_gen;
    int64_t fetch_from;
    struct hv__row **fetched;
    size_t nfetched;
    int64_t fetched_lo, fetched_hi;
    int lease_held;       /* shared store: this process sends this lane */
    uint64_t lease_until; /* ms: the lease's expiry as last taken */
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
    size_t mem_held; /* content bytes of received messages in memory until stored (channels.max_held_bytes) */
    uint64_t next_lane; /* round robin of lanes for destinations without an ordering key */
    struct hv__rows *rows; /* the shared read of its cursor destinations (channel_read.c) */
    uint64_t read_gen;     /* bumped by hv__rows_reset: fetches submitted before offer nothing */
    hv_counter_t *m_received, *m_filtered, *m_errored; /* /metrics, per channel */
};

struct hv__chans {
    hv_engine_t *engine;
    char *dir;
    hv_storage_t *storage;
    int fts;
    size_t fts_max;   /* bytes of a message's content indexed for ?text= (channels.fts_max) */
    hv__chan_t **chans;
    size_t nchans;
    uv_fs_event_t watch;
    uv_timer_t watch_timer, prune_timer, fts_timer;
    int watch_open, timers_open, stopped;
    int fts_busy;    /* a full-text catch-up job is in the storage queue */
    int fts_skipped; /* ticks skipped because the store was busy */
    hv__curl_t *curl; /* made on the first http-send delivery */
    int shared;       /* PostgreSQL: other processes share the queues (lane leases) */
    uint64_t lease_ms;
    char owner[128];  /* this process in chan_leases: host:pid:start */
    hv__bus_t *bus;   /* the event bus (event.c) */
    size_t max_message; /* channels.max_message_bytes: content read into memory at most */
    size_t max_held;    /* channels.max_held_bytes: a channel's messages in memory until stored */
    char content_dir[4096]; /* <data>/channel-content: large messages' content files ("": none) */
    struct hv__waiter *waiters; /* sources waiting for destinations (channel_ingest.c) */
    struct outcome *outcomes, *outcomes_tail; /* delivery outcomes waiting for a batch (channel.c) */
    int outcomes_inflight;                    /* batches submitted, not yet done */
    size_t nwaiters;
    char last_error[1024];
    int builtin_refused; /* built-in channels that did not deploy (the first load stops) */
};

/*
 * One stored unit of a received message: the message itself, or one part of it
 * made by the split-bundle step (a row of chan_messages whose parent_id is the
 * message's id). content/len are the bytes stored as "content" (as received, or
 * the part as split); out/out_len what the destinations receive.
 */
typedef struct hv__part {
    const char *content;
    size_t len;
    const char *content_type;
    const char *out;
    size_t out_len;
    int transformed;
    const char *status; /* queued | filtered | errored | sent | split */
    const char *error;
    const char *filtered_by;
    const char *content_file; /* name in the content directory, or NULL: content is in the row */
    /* The steps' outcomes: NULL, or a JSON array [{"step": n, "type": "…", "outcome": {…}}]. */
    const char *outcome;
    unsigned char dest_on[HV__CHAN_MAX_DESTS];
    int64_t dest_lane[HV__CHAN_MAX_DESTS];
    int64_t id;
} hv__part_t;

/* What a source (or reprocessing) hands to hv__chan_ingest_ex. */
typedef struct hv__ingest_opts {
    const char *content;
    size_t len;
    const char *content_type;
    int64_t reprocess_id;     /* > 0: run this stored message again (same id) */
    uint64_t received_at;     /* ms since the epoch; 0: now */
    const char *source_key;   /* NULL, or a key that identifies this message at its source */
    uint64_t dedup_window_ms; /* with source_key: a stored message with the same key received
                                 this recently is a duplicate (0: any age) */
    int is_part;              /* reprocessing a part: only the steps after split-bundle run */
    const char *content_path; /* the content is this file (len bytes; content unused): it is
                                 moved into the content directory when the message is stored */
    int wait;                 /* a source: answer per the channel's "response" setting */
    const char *reply;        /* stored with the message: the source's answer (an ACK) */
    size_t reply_len;
    hv_buf_t *orig_reply;     /* a duplicate: the first copy's reply is appended here */
} hv__ingest_opts_t;

/* One message being received or reprocessed. */
typedef struct hv__ingest {
    hv__chan_t *ch;
    size_t held; /* bytes charged to ch->mem_held, given back by ingest_free */
    hv_arena_t *arena;
    hv_channel_msg_t msg; /* the message as received (its id, channel, time, arena) */
    hv__part_t main;
    hv__part_t *parts; /* split-bundle: the parts, in the arena */
    size_t nparts;
    char *source_key;
    char *spool_path; /* the content's file until the storage job moves it (content_path) */
    uint64_t dedup_window_ms;
    int is_part, wait, duplicate;
    int64_t reprocess_id;
    const char *reply; /* in the arena */
    size_t reply_len;
    hv_buf_t *orig_reply;
    hv_channel_stored_cb cb;
    void *ud;
} hv__ingest_t;

/*
 * The split-bundle step (channel_split.c). The runtime calls hv__split_run instead
 * of the step's run: it makes the parts of m in m->arena (at most the step's
 * max_parts), each with its content and content type.
 */
extern const hv_channel_step_t hv__step_split_bundle;
int hv__split_run(void *state, const hv_channel_msg_t *m, hv__part_t **parts, size_t *nparts,
                  hv_error_t *err);

/* The file source (channel_file.c). */
extern const hv_channel_source_t hv__source_file;

/* Sources answered after the destinations (response "after-destinations",
 * channel_ingest.c): a worker reports each final outcome (delivered or dead) once
 * it is committed; stop answers every waiting source with HV_ECLOSED. */
void hv__chan_waiters_note(hv__chans_t *rt, int64_t mid, const char *dest, int delivered);
void hv__chan_waiters_stop(hv__chans_t *rt);

/*
 * A message's status on SQLite (a store with cursor queues) is partly derived.
 * A message routed to a cursor destination is stored with status "cursor" and is
 * never updated when it is delivered: what it shows is derived from the cursors
 * and the queue rows (HV__CHAN_STATUS_SQL), exactly what the per-message UPDATE
 * used to store — queued while a row of it is queued or a cursor of its route has
 * not passed it, then errored when a destination dead-lettered it (a discarded dead
 * letter stays errored, as the stored status did), else sent.
 * Every other status (queued for row queues only, filtered, errored by a step,
 * split, sent without destinations) is stored as before. PostgreSQL never stores
 * "cursor" (no cursor queues): its status column is what it shows.
 * M is the alias of chan_messages in the statement, as a string literal.
 */
#define HV__CHAN_PENDING_SQL(M)                                                                 \
    "(EXISTS (SELECT 1 FROM chan_queue dq WHERE dq.message_id = " M ".id AND dq.state ="      \
    " 'queued') OR EXISTS (SELECT 1 FROM chan_cursors dc WHERE dc.channel = " M ".channel"     \
    " AND dc.last_id < " M ".id AND instr(" M ".route, ',' || dc.dest || ',') > 0))"
#define HV__CHAN_STATUS_SQL(M)                                                                  \
    "(CASE WHEN " M ".status <> 'cursor' THEN " M ".status WHEN " HV__CHAN_PENDING_SQL(M)      \
    " THEN 'queued' WHEN EXISTS (SELECT 1 FROM chan_queue dd WHERE dd.message_id = " M ".id"   \
    " AND dd.state IN ('dead', 'discarded')) THEN 'errored' ELSE 'sent' END)"
/* The status expression of a store: derived on SQLite, the column on PostgreSQL. */
#define HV__CHAN_STATUS_OF(SHARED, M) ((SHARED) ? M ".status" : HV__CHAN_STATUS_SQL(M))

/*
 * Storage thread (SQLite): splits the `total` messages of a channel stored as
 * "cursor" into what they show: n[0] queued, n[1] sent, n[2] errored (the sum is
 * total). Costs index counts, one evaluation per such message after the channel's
 * slowest cursor, and one per queue row of the channel.
 */
int hv__chan_status_split(hv_db_t *db, const char *channel, int64_t total, int64_t n[3]);

/* Removes content files no row names (a crash mid-store); submit once before receiving. */
int hv__chan_content_sweep_job(hv_db_t *db, void *arg);
/* Which messages the full-text index holds, and the value indexed for each (the first
 * channels.fts_max bytes, bound as parameter FTS_MAX): one definition for the catch-up that
 * inserts and the prune that deletes, since FTS5's external-content 'delete' must be given
 * exactly what was inserted. */
#define HV__CHAN_FTS_ROWS "content IS NOT NULL AND content_file IS NULL AND parent_id IS NULL"
#define HV__CHAN_FTS_VALUE(FTS_MAX) "CAST(substr(content, 1, " FTS_MAX ") AS TEXT)"
int hv__chan_fts_catch_up(hv_db_t *db, hv__chans_t *rt, int64_t limit);

/* The store's migrations (channel_ingest.c). */
extern const char *const hv__chan_migrations_sqlite[];
extern const char *const hv__chan_migrations_pg[];

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
void hv__worker_kick(hv__worker_t *w);
/* Receives (reprocess_id 0) or reprocesses a message; cb after the commit
 * (channel_ingest.c). hv__chan_ingest is the short form without key or waiting. */
int hv__chan_ingest(hv__chan_t *ch, const char *content, size_t len, const char *content_type,
                    int64_t reprocess_id, uint64_t received_at, hv_channel_stored_cb cb, void *ud);
int hv__chan_ingest_ex(hv__chan_t *ch, const hv__ingest_opts_t *o, hv_channel_stored_cb cb,
                       void *ud);
/* 1 when the channel can take a message whose content stays in a file: the store keeps
 * content files (SQLite), no step runs, and no filter, `when` or ordering key reads
 * content (metadata rules only). Its destinations that stream read the file; the others
 * get the content in memory up to channels.max_message_bytes. */
int hv__chan_streams(const hv__chan_t *ch);
/* 1 when destination d of a channel of rt has a cursor queue (channel.c): an ordered
 * destination (one lane) of a store that no other process shares. The others keep
 * one queue row per message. */
int hv__dest_uses_cursor(const hv__chans_t *rt, const hv__dest_conf_t *d);
/* 1 when a step, or a filter, `when` or ordering-key rule that is not metadata, reads content. */
int hv__chan_reads_content(const hv__chan_t *ch);

/* channel.c: takes or renews the lease (channel, dest, lane) of chan_leases for this process
 * (storage thread; PostgreSQL): *held and *until (ms) on success. Also the event bus's
 * subscriber leases (channel "event-sub"). */
int hv__lease_take(hv_db_t *db, hv__chans_t *rt, const char *channel, const char *dest,
                   int64_t lane, uint64_t *until, int *held);

/* channel.c: a worker's destination reads a large message from its content file (1). */
int hv__worker_streams(const hv__worker_t *w);
/* channel.c, storage thread (or the loop thread for a worker that streams): prepares an
 * item whose content is the content file `name` of `size` bytes. */
int hv__item_content_file(hv__worker_t *w, hv__item_t *it, const char *name, size_t nlen,
                          int64_t size);

/*
 * channel_read.c: the shared read of a channel's cursor destinations (see there).
 * hv__row_new (storage thread): a row as read, or NULL (no memory, no route, or larger
 * than the shared rows take: the range ends before it). hv__item_from_row: an item of w
 * made from a row. hv__rows_offer (fetch_done): the rows w's fetch read join the
 * channel's. hv__rows_serve (hv__worker_kick): fills w's empty items from them, returns
 * how many. hv__rows_reset: before a reprocess or a requeue (submitted) — the channel's
 * (and its successors') rows go and each worker reads from the store next.
 */
typedef struct hv__row hv__row_t;
typedef struct hv__rows hv__rows_t;
hv__row_t *hv__row_new(int64_t id, const char *route, size_t route_len, const char *ct,
                       size_t ct_len, const void *content, size_t len, uint64_t received_at,
                       const char *file, size_t file_len, int64_t size);
void hv__row_free(hv__row_t *r);
int64_t hv__row_id(const hv__row_t *r);
int hv__row_routed_to(const hv__row_t *r, const hv__worker_t *w);
int hv__item_from_row(hv__worker_t *w, hv__item_t *it, const hv__row_t *r);
/* The content of an item (its other fields set by the caller): the content type, and the
 * content copied — or, with file non-NULL, prepared from that content file. HV_OK, or an
 * error with nothing held. */
int hv__item_fill(hv__worker_t *w, hv__item_t *it, const char *ct, size_t ct_len,
                  const void *content, size_t len, const char *file, size_t file_len,
                  int64_t size);
void hv__rows_offer(hv__worker_t *w);
size_t hv__rows_serve(hv__worker_t *w);
void hv__rows_reset(hv__chan_t *ch);
void hv__rows_free(hv__chan_t *ch);
void hv__rows_fetched_free(hv__worker_t *w);

/* channel_api.c */
int hv__chan_routes_add(hv_engine_t *e, hv__chans_t *rt);
/* channel_api.c: the channel named by the route's :id, or a 404 answer and NULL. */
hv__chan_t *hv__chan_or_404(hv_http_req_t *req, hv__chans_t *rt);
/* channel_cli.c: a content type guessed from the first bytes (ER7, JSON, XML, text). */
const char *hv__chan_guess_type(const char *p, size_t n);
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
void hv__bus_stop(hv__chans_t *rt); /* closes the bus's timer (channels stop) */
void hv__bus_free(hv__chans_t *rt);

/* channel_dest.c */
/* mkdir -p with mode 0700 for the missing levels: 0 or errno. */
int hv__mkdirs(const char *path);
extern const hv_channel_dest_t hv__dest_channel;
void hv__chan_register_builtin_steps(hv_engine_t *e);
/* The runtime of the engine, for the channel destination (NULL outside serve). */
hv__chans_t *hv__chans_of(hv_engine_t *e);

#endif
