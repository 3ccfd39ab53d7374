/*
 * channel.c — the channel runtime: registries, deployment of channel files, the
 * message store and one durable queue per destination.
 *
 * A message flows: source → hv_channel_receive → filter and steps → one storage
 * job that inserts the message and its queue rows (channel_ingest.c) → each
 * destination's worker (here) delivers its queue in id order.
 *
 * Store (database "channels": <data>/channels.db, or schema channels):
 *
 *   chan_messages  id, channel, received_at (ms), content_type, content (raw, NULL when
 *                  storage.content is "metadata"), transformed (after the steps, NULL
 *                  when the steps changed nothing), size, status (queued | filtered |
 *                  errored | sent), error, filtered_by (the rule that dropped it)
 *   chan_queue     id, channel, dest, message_id, state (queued | sent | dead |
 *                  discarded), attempts, next_at (ms: not before), last_error, updated_at
 *   chan_fts       FTS5 over chan_messages.content (SQLite only), for ?text=
 *
 * Worker of one destination (ordered: one message in flight): it reads the oldest
 * `queued` rows of its queue in batches, waits until the head's next_at (and the
 * circuit breaker) allow, sends it, and records the outcome in a storage job
 * before moving on: delivered → sent; retry → attempts+1, next_at = now + backoff
 * (exponential with jitter), dead after max_attempts; error → dead at once. The
 * head is not passed until its outcome is committed, so the order survives
 * retries, restarts and kill -9. A delivery that succeeded but whose commit was
 * lost to a crash is sent again after the restart with the same X-Message-Id
 * (at-least-once on the wire; exactly once for a receiver that keys on it).
 *
 * Redeploying a channel starts the new version's workers only once the old
 * version's have finished what they had in flight, so two workers never send
 * the same queue.
 */
#include "config.h"
#include "engine/channel_int.h"
#include "engine/channel_rt.h"

#include <dirent.h>
#include <signal.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* ------------------------------------------------------------------------- */
/* Registries                                                                */
/* ------------------------------------------------------------------------- */

#define REG_ADD(arr, n, item, field)                                                        \
    do {                                                                                    \
        size_t i_;                                                                          \
        for (i_ = 0; i_ < (n); i_++)                                                        \
            if (strcmp((arr)[i_]->field, (item)->field) == 0) {                             \
                (arr)[i_] = (item);                                                         \
                return HV_OK;                                                               \
            }                                                                               \
        if ((n) >= HV_ARRAY_LEN(arr)) return HV_ETOOBIG;                                    \
        (arr)[(n)++] = (item);                                                              \
        return HV_OK;                                                                       \
    } while (0)

int hv_channel_register_source(hv_engine_t *e, const hv_channel_source_t *s) {
    if (e == NULL || s == NULL || s->name == NULL) return HV_EINVAL;
    REG_ADD(e->chan_reg.sources, e->chan_reg.nsources, s, name);
}
int hv_channel_register_step(hv_engine_t *e, const hv_channel_step_t *s) {
    if (e == NULL || s == NULL || s->name == NULL || s->run == NULL) return HV_EINVAL;
    REG_ADD(e->chan_reg.steps, e->chan_reg.nsteps, s, name);
}
int hv_channel_register_dest(hv_engine_t *e, const hv_channel_dest_t *d) {
    if (e == NULL || d == NULL || d->name == NULL || d->send == NULL) return HV_EINVAL;
    REG_ADD(e->chan_reg.dests, e->chan_reg.ndests, d, name);
}
int hv_channel_register_paths(hv_engine_t *e, const hv_channel_path_provider_t *p) {
    if (e == NULL || p == NULL || p->syntax == NULL || p->get == NULL) return HV_EINVAL;
    REG_ADD(e->chan_reg.paths, e->chan_reg.npaths, p, syntax);
}

int hv_channel_register_builtin(hv_engine_t *e, const char *id, const char *json) {
    hv__chan_registry_t *r;
    size_t i;
    if (e == NULL || id == NULL || json == NULL) return HV_EINVAL;
    r = &e->chan_reg;
    if (strlen(id) >= sizeof(r->builtins[0].id) || strlen(json) >= sizeof(r->builtins[0].json))
        return HV_ETOOBIG;
    for (i = 0; i < r->nbuiltins && strcmp(r->builtins[i].id, id) != 0; i++) continue;
    if (i == r->nbuiltins) {
        if (r->nbuiltins >= HV_ARRAY_LEN(r->builtins)) return HV_ETOOBIG;
        r->nbuiltins++;
    }
    memcpy(r->builtins[i].id, id, strlen(id) + 1);
    memcpy(r->builtins[i].json, json, strlen(json) + 1);
    return HV_OK;
}

int hv_reload_register(hv_engine_t *e, hv_reload_cb fn, void *ud) {
    if (e == NULL || fn == NULL) return HV_EINVAL;
    if (e->nreload >= HV_ARRAY_LEN(e->reload)) return HV_ETOOBIG;
    e->reload[e->nreload].fn = fn;
    e->reload[e->nreload].ud = ud;
    e->nreload++;
    return HV_OK;
}

const hv_channel_source_t *hv__chan_find_source(const hv__chan_registry_t *r, const char *name) {
    size_t i;
    for (i = 0; i < r->nsources; i++)
        if (strcmp(r->sources[i]->name, name) == 0) return r->sources[i];
    return NULL;
}
const hv_channel_step_t *hv__chan_find_step(const hv__chan_registry_t *r, const char *name) {
    size_t i;
    for (i = 0; i < r->nsteps; i++)
        if (strcmp(r->steps[i]->name, name) == 0) return r->steps[i];
    return NULL;
}
const hv_channel_dest_t *hv__chan_find_dest(const hv__chan_registry_t *r, const char *name) {
    size_t i;
    for (i = 0; i < r->ndests; i++)
        if (strcmp(r->dests[i]->name, name) == 0) return r->dests[i];
    return NULL;
}

/* The built-ins of engine/, registered before any module's init. */
void hv__chan_register_builtins(hv_engine_t *e) {
    hv_channel_register_source(e, &hv__source_http);
    hv_channel_register_source(e, &hv__source_timer);
    hv_channel_register_dest(e, &hv__dest_http_send);
    hv_channel_register_dest(e, &hv__dest_file_write);
    hv_channel_register_dest(e, &hv__dest_channel);
    hv_channel_register_source(e, &hv__source_event);
    hv_channel_register_dest(e, &hv__dest_event);
    hv_channel_register_source(e, &hv__source_file);
    hv_channel_register_step(e, &hv__step_split_bundle);
    hv__chan_register_builtin_steps(e);
}

/* ------------------------------------------------------------------------- */
/* Channel lifetime                                                          */
/* ------------------------------------------------------------------------- */

static void worker_close(hv__worker_t *w);

void hv__chan_ref(hv__chan_t *ch) { ch->refs++; }

static void chan_destroy(hv__chan_t *ch) {
    size_t i;
    hv__chan_t *succ = ch->successor;
    int succ_ref = ch->successor_ref;
    for (i = 0; i < ch->nsteps; i++)
        if (ch->steps[i].impl != NULL && ch->steps[i].impl->free != NULL)
            ch->steps[i].impl->free(ch->steps[i].state);
    hv_free(ch->steps);
    hv__rows_free(ch);
    hv_free(ch->workers);
    hv__chan_conf_free(ch->conf);
    hv_free(ch);
    if (succ != NULL) {
        succ->held = 0;
        if (!succ->retired)
            for (i = 0; i < succ->nworkers; i++) hv__worker_kick(succ->workers[i]);
        if (succ_ref) hv__chan_unref(succ);
    }
}

void hv__chan_unref(hv__chan_t *ch) {
    if (--ch->refs == 0) chan_destroy(ch);
}

/* Stops the source and the workers; the channel is freed when the last reference goes. */
static void chan_retire(hv__chan_t *ch) {
    size_t i;
    if (ch->retired) return;
    ch->retired = 1;
    if (ch->src != NULL && ch->src->stop != NULL && ch->src_state != NULL) ch->src->stop(ch->src_state);
    ch->src_state = NULL;
    for (i = 0; i < ch->nworkers; i++) worker_close(ch->workers[i]);
    hv__chan_unref(ch); /* the runtime's own reference */
}


/* ------------------------------------------------------------------------- */
/* Destination workers                                                       */
/* ------------------------------------------------------------------------- */

static void worker_unref(hv__worker_t *w);

static void on_worker_timer_closed(uv_handle_t *h) {
    hv__worker_t *w = h->data;
    w->timer_open = 0;
    worker_unref(w);
}

static void items_clear(hv__worker_t *w) {
    size_t i;
    for (i = 0; i < w->nitems; i++) {
        hv_free(w->items[i].content);
        hv_free(w->items[i].content_type);
        hv_free(w->items[i].file);
    }
    w->nitems = w->head = 0;
}

static void worker_unref(hv__worker_t *w) {
    hv__chan_t *ch;
    if (--w->refs > 0) return;
    ch = w->ch;
    items_clear(w);
    hv__rows_fetched_free(w);
    hv_free(w->items);
    if (w->impl != NULL && w->impl->close != NULL && w->state != NULL) w->impl->close(w->state);
    hv_free(w);
    hv__chan_unref(ch);
}

static void worker_close(hv__worker_t *w) {
    if (w->closing) return;
    w->closing = 1;
    uv_timer_stop(&w->timer);
    uv_close((uv_handle_t *)&w->timer, on_worker_timer_closed);
    /* A delivery in flight is cancelled (its callback runs now, with w closing), so
     * that undeploying or stopping never waits for a peer's timeout. */
    if (w->sending && w->impl->close != NULL && w->state != NULL) {
        void *st = w->state;
        w->state = NULL;
        w->impl->close(st);
    }
}

static int bind_str(hv_db_stmt_t *st, int i, const char *s) {
    if (s == NULL) return hv_db_bind_null(st, i);
    return hv_db_bind_text(st, i, s, strlen(s));
}

/*
 * Lanes shared by several processes (PostgreSQL): a lane's queue is sent by one
 * process at a time, the holder of its lease (a row of chan_leases). The upsert
 * takes the lease when it is free, expired, or already ours, and renews it; the
 * row lock PostgreSQL takes on conflict makes two processes' attempts serialize,
 * so exactly one wins. A process that dies loses its leases when they expire
 * (channels.queue_lease); one that stops gives them back. Ordered delivery needs
 * one sender per lane, which is why the claim is per lane and not per row.
 */
/*
 * A lease held by a process of this host that no longer exists (a restart after
 * kill -9: owner "host:pid:start" with a pid that kill(2) does not find) is taken
 * at once instead of after its expiry. Processes of other hosts wait for it.
 */
static int lease_take_from_dead(hv_db_t *db, hv__chans_t *rt, const char *channel,
                                const char *dest, int64_t lane, uint64_t now, uint64_t *until,
                                int *held) {
    hv_db_stmt_t *st = NULL;
    char owner[128] = "";
    size_t hl = strcspn(rt->owner, ":"), n = 0;
    const char *o;
    long pid;
    int rc = hv_db_prepare(db,
                           "SELECT owner FROM chan_leases WHERE channel = $1 AND dest = $2"
                           " AND lane = $3",
                           &st);
    if (rc != HV_OK) return rc;
    bind_str(st, 1, channel);
    bind_str(st, 2, dest);
    hv_db_bind_int64(st, 3, lane);
    rc = hv_db_step(st);
    if (rc == HV_DB_ROW) {
        o = hv_db_column_text(st, 0, &n);
        if (o != NULL && n < sizeof(owner)) {
            memcpy(owner, o, n);
            owner[n] = '\0';
        }
    }
    hv_db_done(st);
    if (rc < 0) return rc;
    if (strncmp(owner, rt->owner, hl + 1) != 0) return HV_OK; /* another host, or none */
    pid = strtol(owner + hl + 1, NULL, 10);
    if (pid <= 0 || pid == (long)getpid() || kill((pid_t)pid, 0) == 0 || errno != ESRCH)
        return HV_OK;
    rc = hv_db_prepare(db,
                       "UPDATE chan_leases SET owner = $4, expires_at = $5 WHERE channel = $1"
                       " AND dest = $2 AND lane = $3 AND owner = $6 RETURNING owner",
                       &st);
    if (rc != HV_OK) return rc;
    bind_str(st, 1, channel);
    bind_str(st, 2, dest);
    hv_db_bind_int64(st, 3, lane);
    bind_str(st, 4, rt->owner);
    hv_db_bind_int64(st, 5, (int64_t)(now + rt->lease_ms));
    bind_str(st, 6, owner);
    rc = hv_db_step(st);
    if (rc == HV_DB_ROW) {
        *held = 1;
        *until = now + rt->lease_ms;
    }
    hv_db_done(st);
    return rc < 0 ? rc : HV_OK;
}

int hv__lease_take(hv_db_t *db, hv__chans_t *rt, const char *channel, const char *dest,
                   int64_t lane, uint64_t *until, int *held) {
    hv_db_stmt_t *st = NULL;
    uint64_t now = hv_now_ms();
    int rc = hv_db_prepare(db,
                           "INSERT INTO chan_leases (channel, dest, lane, owner, expires_at)"
                           " VALUES ($1, $2, $3, $4, $5) ON CONFLICT (channel, dest, lane) DO UPDATE"
                           " SET owner = excluded.owner, expires_at = excluded.expires_at"
                           " WHERE chan_leases.owner = excluded.owner OR chan_leases.expires_at < $6"
                           " RETURNING owner",
                           &st);
    *held = 0;
    if (rc != HV_OK) return rc;
    bind_str(st, 1, channel);
    bind_str(st, 2, dest);
    hv_db_bind_int64(st, 3, lane);
    bind_str(st, 4, rt->owner);
    hv_db_bind_int64(st, 5, (int64_t)(now + rt->lease_ms));
    hv_db_bind_int64(st, 6, (int64_t)now);
    rc = hv_db_step(st);
    if (rc == HV_DB_ROW) {
        *held = 1;
        *until = now + rt->lease_ms;
    }
    hv_db_done(st);
    if (rc < 0 || *held) return rc < 0 ? rc : HV_OK;
    return lease_take_from_dead(db, rt, channel, dest, lane, now, until, held);
}

static int lease_take(hv_db_t *db, hv__worker_t *w, int *held) {
    return hv__lease_take(db, w->ch->rt, w->ch->conf->id, w->conf->name, w->lane,
                          &w->lease_until, held);
}

/* 1 when the worker's destination reads a large message from its content file. */
int hv__worker_streams(const hv__worker_t *w) {
    return (w->impl == &hv__dest_http_send || w->impl == &hv__dest_file_write) &&
           w->conf->purpose == NULL;
}

/*
 * Storage thread: prepares an item whose content is in a content file: a streaming
 * destination gets the file's path; another gets the content read into memory when
 * it is at most channels.max_message_bytes, and is refused (dead-lettered) otherwise.
 */
int hv__item_content_file(hv__worker_t *w, hv__item_t *it, const char *name, size_t nlen,
                          int64_t size) {
    hv__chans_t *rt = w->ch->rt;
    char path[4400];
    int fd;
    size_t off = 0;
    if (nlen > 256) return HV_EINVAL;
    snprintf(path, sizeof(path), "%s/%.*s", rt->content_dir, (int)nlen, name);
    it->len = size > 0 ? (size_t)size : 0;
    if (hv__worker_streams(w)) {
        it->file = hv_strdup(path);
        it->content = hv_strdup("");
        return it->file && it->content ? HV_OK : HV_ENOMEM;
    }
    if (it->len > rt->max_message) {
        it->refuse = "content too large for this destination type (it does not stream)";
        it->content = hv_strdup("");
        return it->content ? HV_OK : HV_ENOMEM;
    }
    it->content = hv_malloc(it->len + 1);
    if (it->content == NULL) return HV_ENOMEM;
    fd = open(path, O_RDONLY | O_CLOEXEC);
    while (fd >= 0 && off < it->len) {
        ssize_t n = read(fd, it->content + off, it->len - off);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) break;
        off += (size_t)n;
    }
    if (fd >= 0) close(fd);
    if (off != it->len) it->refuse = "its content file is missing or short";
    it->content[off] = '\0';
    return HV_OK;
}

int hv__dest_uses_cursor(const hv__chans_t *rt, const hv__dest_conf_t *d) {
    return !rt->shared && d->queue.workers <= 1;
}

/*
 * Storage thread: makes a cursor destination's row in chan_cursors unless it has one.
 * A new cursor starts before the first message already routed to it (a message
 * stored by this version of the channel before the row was made), else after the
 * last message stored: a destination added to a channel gets the messages that
 * arrive from then on. The row exists before the first message routed to the
 * destination commits (cursor_ensure_job, submitted at deployment), because a
 * message's derived status (HV__CHAN_STATUS_SQL) counts only the cursors that exist.
 */
static int cursor_ensure(hv_db_t *db, const char *channel, const char *dest) {
    hv_db_stmt_t *st = NULL;
    char key[80];
    int rc = hv_db_prepare(db,
                           "INSERT INTO chan_cursors (channel, dest, last_id) SELECT $1, $2,"
                           " COALESCE((SELECT MIN(id) - 1 FROM chan_messages WHERE channel = $1"
                           " AND instr(route, $3) > 0), (SELECT MAX(id) FROM chan_messages), 0)"
                           " WHERE NOT EXISTS (SELECT 1 FROM chan_cursors WHERE channel = $1 AND"
                           " dest = $2) ON CONFLICT (channel, dest) DO NOTHING",
                           &st);
    if (rc != HV_OK) return rc;
    snprintf(key, sizeof(key), ",%s,", dest);
    bind_str(st, 1, channel);
    bind_str(st, 2, dest);
    bind_str(st, 3, key);
    rc = hv_db_step(st);
    hv_db_done(st);
    return rc < 0 ? rc : HV_OK;
}

/* Storage thread, submitted when a channel is deployed, before its source starts: the
 * rows of its cursor destinations (storage jobs run in order, so before any message
 * of this version is stored). */
typedef struct cursor_ensure_arg {
    char channel[HV__CHAN_ID_MAX + 1];
    char dest[HV__CHAN_ID_MAX + 1];
} cursor_ensure_arg_t;

static int cursor_ensure_job(hv_db_t *db, void *arg) {
    cursor_ensure_arg_t *a = arg;
    return cursor_ensure(db, a->channel, a->dest);
}

static void cursor_ensure_done(int status, void *arg) {
    cursor_ensure_arg_t *a = arg;
    if (status != HV_OK) {
        /* The worker's first fetch makes it (cursor_load); until then the messages routed
         * to it may show as sent. */
        hv_logrec_t *r = hv_log_begin(HV_LOG_WARN, "channel.cursor.ensure");
        hv_log_str(r, "channel", a->channel);
        hv_log_str(r, "destination", a->dest);
        hv_log_str(r, "error", hv_strerror(status));
        hv_log_end(r);
    }
    hv_free(a);
}

/* Storage thread: reads a cursor destination's position, making its row first. */
static int cursor_load(hv_db_t *db, hv__worker_t *w) {
    hv_db_stmt_t *st = NULL;
    int rc;
    if ((rc = cursor_ensure(db, w->ch->conf->id, w->conf->name)) != HV_OK) return rc;
    rc = hv_db_prepare(db, "SELECT last_id FROM chan_cursors WHERE channel = $1 AND dest = $2", &st);
    if (rc != HV_OK) return rc;
    bind_str(st, 1, w->ch->conf->id);
    bind_str(st, 2, w->conf->name);
    rc = hv_db_step(st);
    if (rc == HV_DB_ROW) {
        w->pos = hv_db_column_int64(st, 0);
        w->pos_loaded = 1;
        rc = HV_OK;
    } else if (rc == HV_OK) {
        rc = HV_EDB;
    }
    hv_db_done(st);
    return rc;
}

/*
 * Storage thread, first fetch of a row queue in a store with cursors: a destination
 * that had a cursor queue (it was ordered before a redeploy gave it several workers)
 * gets a row, in lane 0, for each message its cursor had not reached, and its cursor
 * goes. They come after the rows the new version queued before this ran.
 */
static int cursor_to_rows(hv_db_t *db, hv__worker_t *w, const char *route_key) {
    hv_db_stmt_t *st = NULL;
    int rc = hv_db_prepare(db,
                           "INSERT INTO chan_queue (channel, dest, message_id, state, updated_at,"
                           " lane) SELECT channel, $2, id, 'queued', $3, 0 FROM chan_messages"
                           " WHERE channel = $1 AND id > (SELECT last_id FROM chan_cursors WHERE"
                           " channel = $1 AND dest = $2) AND instr(route, $4) > 0 ORDER BY id",
                           &st);
    if (rc != HV_OK) return rc;
    bind_str(st, 1, w->ch->conf->id);
    bind_str(st, 2, w->conf->name);
    hv_db_bind_int64(st, 3, (int64_t)hv_now_ms());
    bind_str(st, 4, route_key);
    rc = hv_db_step(st);
    hv_db_done(st);
    if (rc < 0) return rc;
    rc = hv_db_prepare(db, "DELETE FROM chan_cursors WHERE channel = $1 AND dest = $2", &st);
    if (rc != HV_OK) return rc;
    bind_str(st, 1, w->ch->conf->id);
    bind_str(st, 2, w->conf->name);
    rc = hv_db_step(st);
    hv_db_done(st);
    if (rc < 0) return rc;
    w->pos_loaded = 1;
    return HV_OK;
}

/*
 * Storage thread: reads the rows of a fetch's statement into the worker's items.
 * Columns: queue row id (0: read through the cursor), message id, attempts,
 * next_at, content type, content, received_at, content file, size.
 */
static int fetch_take(hv_db_stmt_t *st, hv__worker_t *w) {
    size_t bytes = 0;
    int rc;
    while ((rc = hv_db_step(st)) == HV_DB_ROW) {
        hv__item_t *it = &w->items[w->nitems];
        size_t n = 0, tn = 0;
        const void *c = hv_db_column_blob(st, 5, &n);
        const char *ct = hv_db_column_text(st, 4, &tn);
        size_t fn = 0;
        const char *fname = hv_db_column_text(st, 7, &fn);
        memset(it, 0, sizeof(*it));
        it->qid = hv_db_column_int64(st, 0);
        it->mid = hv_db_column_int64(st, 1);
        it->attempts = hv_db_column_int64(st, 2);
        it->next_at = (uint64_t)hv_db_column_int64(st, 3);
        it->received_at = (uint64_t)hv_db_column_int64(st, 6);
        if (it->qid == 0 && it->mid > w->pos) w->pos = it->mid;
        /* A large message's content is not read here (see hv__item_content_file). */
        rc = hv__item_fill(w, it, ct, tn, c, n, fname, fn, hv_db_column_int64(st, 8));
        if (rc != HV_OK) break;
        w->nitems++;
        /* Memory: a batch holds at most HV__CHAN_FETCH_BYTES of content (or one message). */
        if (it->file == NULL) bytes += it->len;
        if (bytes >= HV__CHAN_FETCH_BYTES) break;
    }
    hv_db_done(st);
    return rc < 0 ? rc : HV_OK;
}

/*
 * Storage thread: a cursor destination's messages after its position, read for the
 * whole channel (channel_read.c): the channel's routed messages in id order, at most
 * the worker's batch; the worker takes the ones routed to it, and every row read (up
 * to the first one the shared rows do not take) goes to w->fetched for the channel's
 * other cursor destinations. w->pos ends at the last message read: the ones in between
 * are not this destination's.
 */
static int fetch_shared(hv_db_t *db, hv__worker_t *w) {
    hv_db_stmt_t *st = NULL;
    size_t bytes = 0, cap = (size_t)w->conf->queue.batch;
    int sharing = 1, rc;
    w->fetched_lo = w->fetched_hi = w->pos;
    w->fetched = hv_calloc(cap, sizeof(*w->fetched));
    if (w->fetched == NULL) return HV_ENOMEM;
    rc = hv_db_prepare(db,
                       "SELECT id, route, content_type, COALESCE(transformed, content),"
                       " received_at, CASE WHEN transformed IS NULL THEN content_file END, size"
                       " FROM chan_messages WHERE channel = $1 AND id > $2 AND route IS NOT NULL"
                       " ORDER BY id LIMIT $3",
                       &st);
    if (rc != HV_OK) return rc;
    hv_db_bind_text(st, 1, w->ch->conf->id, strlen(w->ch->conf->id));
    hv_db_bind_int64(st, 2, w->pos);
    hv_db_bind_int64(st, 3, w->conf->queue.batch);
    while ((rc = hv_db_step(st)) == HV_DB_ROW) {
        size_t rn = 0, tn = 0, n = 0, fn = 0;
        const char *route = hv_db_column_text(st, 1, &rn);
        const char *ct = hv_db_column_text(st, 2, &tn);
        const void *c = hv_db_column_blob(st, 3, &n);
        const char *fname = hv_db_column_text(st, 5, &fn);
        hv__row_t *r = hv__row_new(hv_db_column_int64(st, 0), route, rn, ct, tn, c, n,
                                   (uint64_t)hv_db_column_int64(st, 4), fname, fn,
                                   hv_db_column_int64(st, 6));
        if (r == NULL) {
            /* Too large to share, or no memory: read as before, and the shared range
             * ends before this message. */
            hv__item_t *it = &w->items[w->nitems];
            char key[80];
            sharing = 0;
            snprintf(key, sizeof(key), ",%s,", w->conf->name);
            w->pos = hv_db_column_int64(st, 0);
            if (route == NULL || strstr(route, key) == NULL) continue;
            memset(it, 0, sizeof(*it));
            it->mid = w->pos;
            it->received_at = (uint64_t)hv_db_column_int64(st, 4);
            rc = hv__item_fill(w, it, ct, tn, c, n, fname, fn, hv_db_column_int64(st, 6));
            if (rc != HV_OK) break;
            w->nitems++;
            if (it->file == NULL) bytes += it->len;
            if (bytes >= HV__CHAN_FETCH_BYTES) break;
            continue;
        }
        w->pos = hv__row_id(r);
        if (hv__row_routed_to(r, w)) {
            rc = hv__item_from_row(w, &w->items[w->nitems], r);
            if (rc != HV_OK) {
                hv__row_free(r);
                break;
            }
            if (w->items[w->nitems].file == NULL) bytes += w->items[w->nitems].len;
            w->nitems++;
        }
        if (sharing) {
            w->fetched[w->nfetched++] = r;
            w->fetched_hi = hv__row_id(r);
        } else {
            hv__row_free(r);
        }
        /* Memory: a batch holds at most HV__CHAN_FETCH_BYTES of content (or one message). */
        if (bytes >= HV__CHAN_FETCH_BYTES) break;
    }
    hv_db_done(st);
    return rc < 0 ? rc : HV_OK;
}

/*
 * Storage thread: the worker's next batch. Queue rows come first (a row queue's
 * only source; for a cursor queue the retries, requeued dead letters, reprocessed
 * messages and rows of the old kind), then a cursor queue's messages after its
 * position, in id order. A retry row always holds the head, so the cursor never
 * passes a message that is still being retried.
 */
static int fetch_job(hv_db_t *db, void *arg) {
    hv__worker_t *w = arg;
    hv_db_stmt_t *st = NULL;
    char key[80];
    int64_t pos0 = w->pos;
    int rc;
    if (w->ch->rt->shared) {
        int held = 0;
        rc = lease_take(db, w, &held);
        w->lease_held = held;
        if (rc != HV_OK || !held) return rc;
    }
    snprintf(key, sizeof(key), ",%s,", w->conf->name);
    if (w->cursor && !w->pos_loaded && (rc = cursor_load(db, w)) != HV_OK) return rc;
    if (!w->cursor && !w->ch->rt->shared && !w->pos_loaded &&
        (rc = cursor_to_rows(db, w, key)) != HV_OK)
        return rc;
    rc = hv_db_prepare(db,
                       w->cursor
                           ? "SELECT q.id, q.message_id, q.attempts, q.next_at, m.content_type,"
                             " COALESCE(m.transformed, m.content), m.received_at,"
                             " CASE WHEN m.transformed IS NULL THEN m.content_file END, m.size"
                             " FROM chan_queue q JOIN chan_messages m ON m.id = q.message_id"
                             " WHERE q.channel = $1 AND q.dest = $2 AND q.state = 'queued'"
                             " ORDER BY q.id LIMIT $3"
                           : "SELECT q.id, q.message_id, q.attempts, q.next_at, m.content_type,"
                             " COALESCE(m.transformed, m.content), m.received_at,"
                             " CASE WHEN m.transformed IS NULL THEN m.content_file END, m.size"
                             " FROM chan_queue q JOIN chan_messages m ON m.id = q.message_id"
                             " WHERE q.channel = $1 AND q.dest = $2 AND q.lane = $4"
                             " AND q.state = 'queued' ORDER BY q.id LIMIT $3",
                       &st);
    if (rc != HV_OK) return rc;
    hv_db_bind_text(st, 1, w->ch->conf->id, strlen(w->ch->conf->id));
    hv_db_bind_text(st, 2, w->conf->name, strlen(w->conf->name));
    hv_db_bind_int64(st, 3, w->conf->queue.batch);
    if (!w->cursor) hv_db_bind_int64(st, 4, w->lane);
    rc = fetch_take(st, w);
    if (rc != HV_OK || w->nitems > 0 || !w->cursor) return rc;
    w->fetch_no_rows = 1;
    rc = fetch_shared(db, w);
    /* A failed fetch reads again from where it started (fetch_done drops the items). */
    if (rc != HV_OK) w->pos = pos0;
    return rc;
}

static void on_worker_timer(uv_timer_t *t) {
    hv__worker_t *w = t->data;
    hv__worker_kick(w);
}

static void fetch_done(int status, void *arg) {
    hv__worker_t *w = arg;
    w->busy = 0;
    w->fetching = 0;
    if (status == HV_OK && w->fetch_no_rows && w->fetch_gen == w->ch->read_gen) w->rows_clear = 1;
    if (status == HV_OK) hv__rows_offer(w);
    else hv__rows_fetched_free(w);
    if (status != HV_OK) {
        items_clear(w);
        if (!w->closing) uv_timer_start(&w->timer, on_worker_timer, 1000, 0);
    } else if (w->nitems == 0 && w->ch->rt->shared) {
        /* Other processes queue messages too: look again soon (sooner with the lease). */
        if (!w->closing)
            uv_timer_start(&w->timer, on_worker_timer,
                           w->lease_held ? HV__CHAN_SHARED_POLL_MS : 4 * HV__CHAN_SHARED_POLL_MS, 0);
    } else if (w->nitems == 0) {
        w->idle = 1; /* nothing queued: woken by the next message */
    } else {
        w->idle = 0;
    }
    if (status == HV_OK && !w->closing && w->nitems > 0) hv__worker_kick(w);
    worker_unref(w);
}

static uint64_t backoff_ms(const hv__queue_conf_t *q, int64_t attempts) {
    double d = (double)q->retry_interval_ms;
    int64_t i;
    uint32_t r = 0;
    for (i = 1; i < attempts && d < (double)q->max_interval_ms; i++) d *= q->backoff;
    if (d > (double)q->max_interval_ms) d = (double)q->max_interval_ms;
    if (q->jitter_pct > 0) {
        double j;
        hv_random_fast(&r, sizeof(r));
        j = ((double)r / 4294967295.0) * 2.0 - 1.0; /* -1 .. 1 */
        d += d * j * q->jitter_pct / 100.0;
    }
    return d < 1.0 ? 1 : (uint64_t)d;
}

/*
 * The outcome of one attempt, recorded by a storage job. A delivered or
 * dead-lettered message lets the worker move on at once (the job commits with the
 * next group): storage jobs run in submission order, so the next fetch already
 * sees the row as done, and a crash before the commit only sends it again
 * (at-least-once, in order). A retry holds the head until its next_at is durable.
 */
typedef struct outcome {
    struct outcome *next; /* in the runtime's list of outcomes not yet submitted */
    int final;
    hv__worker_t *w;
    int64_t qid, mid, attempts; /* attempts including this one; qid 0: read through the cursor */
    int cursor;                 /* the attempt was on a message read through the cursor */
    int keep;                   /* a delivery through the cursor whose detail gets a row */
    const char *state;          /* sent | dead | queued */
    uint64_t next_at;
    int64_t count; /* clean cursor deliveries it stands for, mid the last (batch_delivered); 0: one */
    char error[256];
} outcome_t;

/*
 * Records one outcome (storage thread); see outcomes_job. An outcome of a message
 * read through a cursor (qid 0) writes a row only when it is not delivered: a
 * retry (its row then holds the head, o->qid set for the next attempts) or a dead
 * letter — or when it is, with a detail worth keeping (o->keep: a destination other
 * than http-send and file-write, whose "HTTP 2xx" and "written" are not kept, e.g.
 * fhir-store's resource reference); the cursor itself moves in outcomes_job.
 */
static int outcome_record(hv_db_t *db, outcome_t *o) {
    hv_db_stmt_t *st = NULL;
    int insert = o->qid == 0;
    int rc;
    if (insert && strcmp(o->state, "sent") == 0 && !o->keep) return HV_OK;
    rc = hv_db_prepare(db,
                       insert ? "INSERT INTO chan_queue (channel, dest, message_id, state, attempts,"
                                " next_at, last_error, updated_at, lane) VALUES ($7, $8, $1, $2, $3,"
                                " $4, $5, $6, 0) RETURNING id"
                              : "UPDATE chan_queue SET state = $2, attempts = $3, next_at = $4,"
                                " last_error = $5, updated_at = $6 WHERE id = $1 AND state = 'queued'",
                       &st);
    if (rc != HV_OK) return rc;
    hv_db_bind_int64(st, 1, insert ? o->mid : o->qid);
    bind_str(st, 2, o->state);
    hv_db_bind_int64(st, 3, o->attempts);
    hv_db_bind_int64(st, 4, (int64_t)o->next_at);
    bind_str(st, 5, o->error[0] ? o->error : NULL);
    hv_db_bind_int64(st, 6, (int64_t)hv_now_ms());
    if (insert) {
        bind_str(st, 7, o->w->ch->conf->id);
        bind_str(st, 8, o->w->conf->name);
    }
    rc = hv_db_step(st);
    if (rc == HV_DB_ROW) {
        o->qid = hv_db_column_int64(st, 0);
        rc = HV_OK;
    }
    hv_db_done(st);
    return rc < 0 ? rc : HV_OK;
}

/*
 * The status of a message with row queues follows its rows: sent (or errored: a
 * destination dead-lettered it) when no row of it is left queued and every cursor of
 * its route has passed it. One message of a channel, after a final row outcome. A
 * message stored as "cursor" is updated here too (a final row outcome is rare: a
 * retry, a dead letter, a requeue); its cursor deliveries never write it — its
 * status is derived (HV__CHAN_STATUS_SQL).
 */
static int message_status_range(hv_db_t *db, const char *channel, int64_t lo, int64_t hi) {
    hv_db_stmt_t *st = NULL;
    int rc = hv_db_prepare(db,
                           "UPDATE chan_messages SET status = CASE WHEN EXISTS (SELECT 1 FROM"
                           " chan_queue q WHERE q.message_id = chan_messages.id AND q.state ="
                           " 'dead') THEN 'errored' ELSE 'sent' END WHERE channel = $1 AND status"
                           " IN ('queued', 'cursor') AND id >= $2 AND id <= $3 AND NOT EXISTS"
                           " (SELECT 1 FROM chan_queue q WHERE q.message_id = chan_messages.id AND"
                           " q.state = 'queued') AND NOT EXISTS (SELECT 1 FROM chan_cursors c WHERE"
                           " c.channel = $1 AND c.last_id < chan_messages.id AND"
                           " instr(chan_messages.route, ',' || c.dest || ',') > 0)",
                           &st);
    if (rc != HV_OK) return rc;
    bind_str(st, 1, channel);
    hv_db_bind_int64(st, 2, lo);
    hv_db_bind_int64(st, 3, hi);
    rc = hv_db_step(st);
    hv_db_done(st);
    return rc < 0 ? rc : HV_OK;
}

/* Storage thread: one COUNT statement of hv__chan_status_split with $1 the channel
 * and, when the statement has it, $2 the slowest cursor's position. */
static int count_one(hv_db_t *db, const char *sql, const char *channel, int64_t low,
                     int64_t *n) {
    hv_db_stmt_t *st = NULL;
    int rc = hv_db_prepare(db, sql, &st);
    if (rc != HV_OK) return rc;
    bind_str(st, 1, channel);
    if (strstr(sql, "$2") != NULL) hv_db_bind_int64(st, 2, low);
    rc = hv_db_step(st);
    if (rc == HV_DB_ROW) {
        *n = hv_db_column_int64(st, 0);
        rc = HV_OK;
    } else if (rc == HV_OK) {
        rc = HV_EDB;
    }
    hv_db_done(st);
    return rc;
}

/* The cursors of a channel, by position (hv__chan_status_split). */
#define SPLIT_MAX_CURSORS 64
typedef struct split_cursor {
    char key[HV__CHAN_ID_MAX + 3]; /* ",dest," */
    int64_t last;
} split_cursor_t;

static int cmp_cursor(const void *a, const void *b) {
    int64_t x = ((const split_cursor_t *)a)->last, y = ((const split_cursor_t *)b)->last;
    return x < y ? -1 : x > y;
}

/*
 * A message stored as "cursor" is pending while a queued row of it exists or a cursor
 * of its route has not passed it. Counting the second kind message by message (the
 * correlated HV__CHAN_PENDING_SQL) costs ~14 us each on a backlog, so it is counted by
 * intervals: sorted by position p1 <= ... <= pk, the messages in (pj, pj+1] are behind
 * exactly the cursors 1..j, and pending when their route names one of those — one
 * COUNT per interval that reads each message of the backlog once (its route). Then the
 * messages pending only by a queued row, and the dead letters (errored) of the ones not
 * pending: both driven by the channel's queue rows. More than SPLIT_MAX_CURSORS
 * cursors: message by message.
 */
int hv__chan_status_split(hv_db_t *db, const char *channel, int64_t total, int64_t n[3]) {
    split_cursor_t *cs = NULL;
    hv_db_stmt_t *st = NULL;
    hv_buf_t sql;
    size_t nc = 0, j, k;
    int64_t behind = 0, by_row = 0, dead = 0, c = 0;
    int rc;
    hv_buf_init(&sql, 0);
    cs = hv_calloc(SPLIT_MAX_CURSORS + 1, sizeof(*cs));
    if (cs == NULL) return HV_ENOMEM;
    rc = hv_db_prepare(db, "SELECT dest, last_id FROM chan_cursors WHERE channel = $1", &st);
    if (rc != HV_OK) goto out;
    bind_str(st, 1, channel);
    while ((rc = hv_db_step(st)) == HV_DB_ROW) {
        size_t dn = 0;
        const char *d = hv_db_column_text(st, 0, &dn);
        if (nc == SPLIT_MAX_CURSORS || d == NULL || dn > HV__CHAN_ID_MAX) {
            nc = SPLIT_MAX_CURSORS + 1; /* message by message below */
            continue;
        }
        snprintf(cs[nc].key, sizeof(cs[nc].key), ",%.*s,", (int)dn, d);
        cs[nc++].last = hv_db_column_int64(st, 1);
    }
    hv_db_done(st);
    if (rc < 0) goto out;
    if (nc > SPLIT_MAX_CURSORS) {
        rc = count_one(db,
                       "SELECT COUNT(*) FROM chan_messages m WHERE m.channel = $1 AND m.status ="
                       " 'cursor' AND " HV__CHAN_PENDING_SQL("m"),
                       channel, 0, &behind);
        if (rc != HV_OK) goto out;
        by_row = 0;
    } else {
        qsort(cs, nc, sizeof(*cs), cmp_cursor);
        for (j = 0; j < nc; j++) {
            if (j + 1 < nc && cs[j + 1].last == cs[j].last) continue; /* an empty interval */
            hv_buf_reset(&sql);
            rc = hv_buf_puts(&sql, "SELECT COUNT(*) FROM chan_messages WHERE channel = $1 AND"
                                   " status = 'cursor' AND id > $2 AND id <= $3 AND (");
            for (k = 0; rc == HV_OK && k <= j; k++)
                rc = hv_buf_printf(&sql, "%sinstr(route, $%zu) > 0", k ? " OR " : "", k + 4);
            if (rc == HV_OK) rc = hv_buf_putc(&sql, ')');
            if (rc == HV_OK) rc = hv_db_prepare(db, sql.data, &st);
            if (rc != HV_OK) goto out;
            bind_str(st, 1, channel);
            hv_db_bind_int64(st, 2, cs[j].last);
            hv_db_bind_int64(st, 3, j + 1 < nc ? cs[j + 1].last : INT64_MAX);
            for (k = 0; k <= j; k++) bind_str(st, (int)k + 4, cs[k].key);
            rc = hv_db_step(st);
            if (rc == HV_DB_ROW) c = hv_db_column_int64(st, 0);
            hv_db_done(st);
            if (rc != HV_DB_ROW) {
                rc = rc < 0 ? rc : HV_EDB;
                goto out;
            }
            behind += c;
        }
        rc = count_one(db,
                       "SELECT COUNT(DISTINCT q.message_id) FROM chan_queue q JOIN chan_messages m"
                       " ON m.id = q.message_id WHERE q.channel = $1 AND q.state = 'queued' AND"
                       " m.status = 'cursor' AND NOT EXISTS (SELECT 1 FROM chan_cursors dc WHERE"
                       " dc.channel = m.channel AND dc.last_id < m.id AND instr(m.route, ',' ||"
                       " dc.dest || ',') > 0)",
                       channel, 0, &by_row);
        if (rc != HV_OK) goto out;
    }
    rc = count_one(db,
                   "SELECT COUNT(DISTINCT q.message_id) FROM chan_queue q JOIN chan_messages m"
                   " ON m.id = q.message_id WHERE q.channel = $1 AND q.state IN ('dead',"
                   " 'discarded') AND m.status = 'cursor' AND NOT " HV__CHAN_PENDING_SQL("m"),
                   channel, 0, &dead);
    if (rc != HV_OK) goto out;
    n[0] = behind + by_row;
    n[2] = dead;
    n[1] = total - n[0] - n[2];
out:
    hv_buf_release(&sql);
    hv_free(cs);
    return rc;
}

/* The same for one message in a store without cursors (shared: PostgreSQL). */
static int message_status_update(hv_db_t *db, int64_t mid) {
    hv_db_stmt_t *st = NULL;
    int rc = hv_db_prepare(db,
                           "UPDATE chan_messages SET status = CASE WHEN EXISTS (SELECT 1 FROM"
                           " chan_queue WHERE message_id = $1 AND state = 'dead') THEN 'errored'"
                           " ELSE 'sent' END WHERE id = $1 AND status = 'queued' AND NOT EXISTS"
                           " (SELECT 1 FROM chan_queue WHERE message_id = $1 AND state = 'queued')",
                           &st);
    if (rc != HV_OK) return rc;
    hv_db_bind_int64(st, 1, mid);
    rc = hv_db_step(st);
    hv_db_done(st);
    return rc < 0 ? rc : HV_OK;
}

/* Storage thread: moves a cursor to last (never back) and counts its deliveries. */
static int cursor_advance(hv_db_t *db, const hv__worker_t *w, int64_t last, int64_t sent) {
    hv_db_stmt_t *st = NULL;
    int rc = hv_db_prepare(db,
                           "UPDATE chan_cursors SET last_id = CASE WHEN last_id < $3 THEN $3 ELSE"
                           " last_id END, sent = sent + $4 WHERE channel = $1 AND dest = $2",
                           &st);
    if (rc != HV_OK) return rc;
    bind_str(st, 1, w->ch->conf->id);
    bind_str(st, 2, w->conf->name);
    hv_db_bind_int64(st, 3, last);
    hv_db_bind_int64(st, 4, sent);
    rc = hv_db_step(st);
    hv_db_done(st);
    return rc < 0 ? rc : HV_OK;
}

static int cmp_mid(const void *a, const void *b) {
    int64_t x = (*(outcome_t *const *)a)->mid, y = (*(outcome_t *const *)b)->mid;
    return x < y ? -1 : x > y;
}

/* A delivered or dead outcome: the worker has moved on already. */
static void outcome_done_final(int status, void *arg) {
    outcome_t *o = arg;
    hv__worker_t *w = o->w;
    if (status != HV_OK) {
        hv_logrec_t *r = hv_log_begin(HV_LOG_ERROR, "channel.outcome.lost");
        hv_log_str(r, "channel", w->ch->conf->id);
        hv_log_str(r, "destination", w->conf->name);
        hv_log_int(r, "message", o->mid);
        hv_log_str(r, "error", hv_strerror(status));
        hv_log_end(r);
        /* A cursor reads again from its recorded position (at least once). */
        if (o->cursor) w->pos_reload = 1;
    } else if (w->ch->rt->nwaiters > 0) {
        hv__chan_waiters_note(w->ch->rt, o->mid, w->conf->name, strcmp(o->state, "sent") == 0);
    }
    hv_free(o);
    worker_unref(w);
}

/* A retry: the head waits for this commit, then for next_at. */
static void outcome_done_retry(int status, void *arg) {
    outcome_t *o = arg;
    hv__worker_t *w = o->w;
    hv__item_t *it = &w->items[w->head];
    w->busy = 0;
    if (status == HV_OK) {
        it->attempts = o->attempts;
        it->next_at = o->next_at;
        it->qid = o->qid; /* a message read through the cursor now has its retry row */
    } else {
        it->next_at = hv_now_ms() + 1000; /* not recorded: the same attempt again later */
    }
    hv_free(o);
    if (!w->closing) hv__worker_kick(w);
    worker_unref(w);
}

/*
 * Outcomes are recorded in batches: every outcome of every destination that arrives
 * while a batch is being stored waits in the runtime's list and goes in the next
 * one, so a busy engine records dozens of outcomes with one storage job (one
 * savepoint, one done callback) instead of one job each. A lone outcome is
 * submitted at once. Order: a worker's fetch flushes the list first (see
 * outcomes_flush in hv__worker_kick), so a fetch never reads a row whose outcome
 * is still waiting here.
 */
typedef struct outcome_batch {
    hv__chans_t *rt;
    outcome_t *head;
} outcome_batch_t;

/* One cursor's part of an outcome batch (outcomes_job). */
typedef struct cursor_move {
    const hv__worker_t *w;
    int64_t hi, sent;
} cursor_move_t;

static int outcomes_job(hv_db_t *db, void *arg) {
    outcome_batch_t *b = arg;
    outcome_t *o, **fin = NULL;
    cursor_move_t *mv = NULL;
    size_t n = 0, nc = 0, nmv = 0, i, j;
    int shared = b->rt->shared;
    int rc = HV_OK;
    /* One failing outcome fails the job: all of its outcomes are retried alike. */
    for (o = b->head; o != NULL; o = o->next) {
        if (o->cursor) o->qid = 0; /* a job that failed runs again: insert again */
        if ((rc = outcome_record(db, o)) != HV_OK) return rc;
        if (o->cursor) nc++;
        else if (o->final) n++;
    }
    if (n + nc == 0) return HV_OK;
    fin = hv_malloc((n + 1) * sizeof(*fin));
    mv = hv_calloc(nc + 1, sizeof(*mv));
    if (fin == NULL || mv == NULL) {
        rc = HV_ENOMEM;
        goto out;
    }
    /* Each cursor moves once, to its last outcome (a worker's outcomes come in order). */
    for (o = b->head; o != NULL; o = o->next) {
        if (!o->cursor) continue;
        for (j = 0; j < nmv && mv[j].w != o->w; j++) continue;
        if (j == nmv) mv[nmv++].w = o->w;
        if (o->mid > mv[j].hi) mv[j].hi = o->mid;
        if (strcmp(o->state, "sent") == 0 && o->qid == 0)
            mv[j].sent += o->count > 0 ? o->count : 1; /* no row */
    }
    for (j = 0; j < nmv && rc == HV_OK; j++) rc = cursor_advance(db, mv[j].w, mv[j].hi, mv[j].sent);
    /* A message read through a cursor needs nothing more: its status is derived from
     * the cursors (HV__CHAN_STATUS_SQL). Each message with a final row outcome is
     * brought up to date once. */
    n = 0;
    for (o = b->head; o != NULL; o = o->next)
        if (o->final && !o->cursor) fin[n++] = o;
    qsort(fin, n, sizeof(*fin), cmp_mid);
    for (i = 0; i < n && rc == HV_OK; i++) {
        if (i > 0 && fin[i]->mid == fin[i - 1]->mid) continue;
        rc = shared ? message_status_update(db, fin[i]->mid)
                    : message_status_range(db, fin[i]->w->ch->conf->id, fin[i]->mid, fin[i]->mid);
    }
out:
    hv_free(fin);
    hv_free(mv);
    return rc;
}

static void outcomes_flush(hv__chans_t *rt);

static void outcomes_done(int status, void *arg) {
    outcome_batch_t *b = arg;
    hv__chans_t *rt = b->rt;
    outcome_t *o = b->head, *next;
    hv_free(b);
    rt->outcomes_inflight--;
    /* The list is flushed first: a done callback may kick a worker that submits a fetch. */
    if (rt->outcomes != NULL && rt->outcomes_inflight == 0) outcomes_flush(rt);
    for (; o != NULL; o = next) {
        next = o->next;
        if (o->final) outcome_done_final(status, o);
        else outcome_done_retry(status, o);
    }
}

/* Submits the waiting outcomes as one job. On failure each outcome's callback
 * runs with the error (a final one is logged as lost and sent again later;
 * a retry waits 1 s), as when one job per outcome could not be submitted. */
static void outcomes_flush(hv__chans_t *rt) {
    outcome_batch_t *b;
    outcome_t *o, *next;
    int rc = HV_ENOMEM;
    if (rt->outcomes == NULL) return;
    b = hv_calloc(1, sizeof(*b));
    if (b != NULL) {
        b->rt = rt;
        b->head = rt->outcomes;
        /* Lazy: an outcome lost to a power loss only sends its message again. */
        rc = hv_storage_submit_lazy(rt->storage, outcomes_job, outcomes_done, b);
    }
    o = rt->outcomes;
    rt->outcomes = NULL;
    rt->outcomes_tail = NULL;
    if (rc == HV_OK) {
        rt->outcomes_inflight++;
        return;
    }
    hv_free(b);
    for (; o != NULL; o = next) {
        next = o->next;
        if (o->final) outcome_done_final(rc, o);
        else outcome_done_retry(rc, o);
    }
}

static void outcome_add(hv__chans_t *rt, outcome_t *o) {
    o->next = NULL;
    if (rt->outcomes_tail != NULL) rt->outcomes_tail->next = o;
    else rt->outcomes = o;
    rt->outcomes_tail = o;
    if (rt->outcomes_inflight == 0) outcomes_flush(rt);
}

/*
 * Records the result of the attempt on the head item and consumes one reference of w
 * (the send's). Returns 1 when the worker moved past the head (a final outcome,
 * not busy any more), 0 when it waits: for a retry's commit (busy until
 * outcome_done_retry), or for its timer (out of memory). Never kicks the worker.
 */
static int attempt_done(hv__worker_t *w, int result, const char *detail) {
    hv__item_t *it = &w->items[w->head];
    uint64_t now = hv_now_ms();
    outcome_t *o;
    int final;
    o = hv_calloc(1, sizeof(*o));
    if (o == NULL) {
        w->busy = 0;
        it->next_at = now + 1000;
        uv_timer_start(&w->timer, on_worker_timer, 1000, 0);
        worker_unref(w);
        return 0;
    }
    o->w = w;
    o->qid = it->qid;
    o->cursor = it->qid == 0;
    o->keep = o->cursor && detail != NULL && detail[0] != '\0' &&
              w->impl != &hv__dest_http_send && w->impl != &hv__dest_file_write;
    o->mid = it->mid;
    o->attempts = it->attempts + 1;
    /* A clean delivery through the cursor writes no row (outcome_record): its detail
     * is not kept, nor copied. */
    if (detail != NULL && !(o->cursor && !o->keep && result == HV_CHANNEL_DELIVERED))
        snprintf(o->error, sizeof(o->error), "%s", detail);
    if (result == HV_CHANNEL_DELIVERED) {
        o->state = "sent";
        w->failures = 0;
        w->breaker_until = 0;
    } else {
        w->attempt_failures++;
        hv_counter_add(w->m_failed, 1);
        w->failures++;
        if (w->conf->queue.breaker_threshold > 0 && w->failures >= w->conf->queue.breaker_threshold) {
            w->breaker_until = now + w->conf->queue.breaker_open_ms;
            if (w->failures == w->conf->queue.breaker_threshold) {
                hv_logrec_t *r = hv_log_begin(HV_LOG_WARN, "channel.breaker.open");
                hv_log_str(r, "channel", w->ch->conf->id);
                hv_log_str(r, "destination", w->conf->name);
                hv_log_int(r, "failures", w->failures);
                hv_log_end(r);
            }
        }
        if (result == HV_CHANNEL_ERROR || o->attempts >= w->conf->queue.max_attempts) {
            o->state = "dead";
        } else {
            o->state = "queued";
            o->next_at = now + backoff_ms(&w->conf->queue, o->attempts);
        }
    }
    final = strcmp(o->state, "queued") != 0;
    o->final = final;
    if (!final) {
        /* busy until outcome_done_retry; the send's reference goes with the outcome */
        outcome_add(w->ch->rt, o);
        return 0;
    }
    /* The send's reference now belongs to the outcome; move past the item. Counted
     * first: outcome_add may call outcome_done_final (and free o) at once on failure. */
    if (strcmp(o->state, "sent") == 0) {
        w->sent++;
        hv_counter_add(w->m_sent, 1);
    } else {
        w->dead++;
        hv_counter_add(w->m_dead, 1);
    }
    w->refs++; /* kept across outcome_add: w stays valid below */
    outcome_add(w->ch->rt, o);
    worker_unref(w);
    hv_free(it->content);
    hv_free(it->content_type);
    hv_free(it->file);
    it->content = it->content_type = it->file = NULL;
    w->head++;
    if (w->head == w->nitems) w->nitems = w->head = 0;
    w->busy = 0;
    return 1;
}

static void on_sent(void *token, int result, const char *detail) {
    hv__worker_t *w = token;
    w->sending = 0;
    if (w->closing) {
        w->busy = 0;
        worker_unref(w);
        return;
    }
    if (attempt_done(w, result, detail)) hv__worker_kick(w);
}

/*
 * The leading clean deliveries of a batch that were read through the cursor, recorded
 * as ONE outcome (count of them, mid the last): what attempt_done would record for each
 * — no row, the cursor moved past them and its count of deliveries raised
 * (outcomes_job) — without an outcome per message. Only for destinations whose detail
 * is never kept (http-send, file-write) and while no source waits for outcomes (a
 * waiter is noted message by message, outcome_done_final; one registered later waits
 * for a message not yet fetched). Returns how many it took: 0 leaves them all to
 * attempt_done.
 */
static size_t batch_delivered(hv__worker_t *w, size_t n, const int *results) {
    size_t k = 0, i;
    outcome_t *o;
    if (w->ch->rt->nwaiters > 0 || (w->impl != &hv__dest_http_send && w->impl != &hv__dest_file_write))
        return 0;
    while (k < n && w->head + k < w->nitems && results[k] == HV_CHANNEL_DELIVERED &&
           w->items[w->head + k].qid == 0)
        k++;
    if (k < 2 || (o = hv_calloc(1, sizeof(*o))) == NULL) return 0;
    o->w = w;
    o->cursor = 1;
    o->mid = w->items[w->head + k - 1].mid;
    o->attempts = w->items[w->head + k - 1].attempts + 1;
    o->state = "sent";
    o->final = 1;
    o->count = (int64_t)k;
    w->failures = 0;
    w->breaker_until = 0;
    w->sent += k;
    hv_counter_add(w->m_sent, k);
    for (i = w->head; i < w->head + k; i++) {
        hv__item_t *it = &w->items[i];
        hv_free(it->content);
        hv_free(it->content_type);
        hv_free(it->file);
        it->content = it->content_type = it->file = NULL;
    }
    w->head += k;
    if (w->head == w->nitems) w->nitems = w->head = 0;
    w->refs++; /* the outcome's; the batch's own reference keeps w valid meanwhile */
    outcome_add(w->ch->rt, o);
    return k;
}

/* A batch's outcomes (hv__dest_batch_fn): recorded in order, as if each had been
 * sent alone (the leading clean cursor deliveries as one, batch_delivered); a retry
 * (only ever the last) holds the head, and the items after it, never attempted, stay
 * queued behind it. */
static void on_batch_sent(void *token, size_t n, const int *results, const char *const *details) {
    hv__worker_t *w = token;
    size_t i;
    int moved = 1;
    w->sending = 0;
    if (w->closing) {
        w->busy = 0;
        worker_unref(w);
        return;
    }
    if (n == 0) { /* a broken destination: the head counts as a failed attempt */
        w->refs++;
        moved = attempt_done(w, HV_CHANNEL_RETRY, "not attempted");
    }
    i = n > 0 ? batch_delivered(w, n, results) : 0;
    if (i > 0) w->busy = 0; /* moved past them, as attempt_done does */
    for (; i < n && moved; i++) {
        w->refs++; /* each outcome takes one; the batch's own goes below */
        w->busy = 1;
        moved = attempt_done(w, results[i], details[i]);
    }
    if (moved) hv__worker_kick(w);
    worker_unref(w);
}

/* Starts a batch (the destination has one): the ready items from the head on.
 * HV_OK, or an error with nothing started. */
static int send_batch(hv__worker_t *w, hv__dest_batch_fn batch, uint64_t now) {
    hv_channel_msg_t *ms;
    size_t k, n = 0;
    int rc;
    ms = hv_calloc(w->nitems - w->head, sizeof(*ms));
    if (ms == NULL) return HV_ENOMEM;
    for (k = w->head; k < w->nitems; k++) {
        const hv__item_t *x = &w->items[k];
        if (x->refuse != NULL || x->next_at > now) break;
        ms[n].id = x->mid;
        ms[n].channel = w->ch->conf->id;
        ms[n].content = x->content;
        ms[n].len = x->len;
        ms[n].content_type = x->content_type;
        ms[n].received_at = x->received_at;
        ms[n].content_file = x->file;
        n++;
    }
    rc = batch(w->state, ms, n, on_batch_sent, w);
    hv_free(ms);
    return rc;
}

void hv__worker_kick(hv__worker_t *w) {
    uint64_t now, at;
    hv__item_t *it;
    int rc;
    /* A paused channel's source is off but its queues keep delivering. */
    if (w->busy || w->closing || w->paused || w->ch->held || w->ch->state == HV__CHAN_STOPPED)
        return;
    if (w->head >= w->nitems) {
        items_clear(w);
        /* The fetch must see this worker's recorded outcomes: submit the waiting ones
         * before it (storage jobs run in submission order). */
        outcomes_flush(w->ch->rt);
        if (w->pos_reload) {
            w->pos_loaded = w->pos_reload = 0; /* no fetch is in flight */
            w->rows_clear = 0;
        }
        /* Another destination of the channel may have read these messages already. */
        if (hv__rows_serve(w) == 0) {
            w->busy = 1;
            w->fetching = 1;
            w->fetch_no_rows = 0;
            w->fetch_gen = w->ch->read_gen;
            w->fetch_from = w->pos;
            w->refs++;
            rc = hv_storage_submit_lazy(w->ch->rt->storage, fetch_job, fetch_done, w);
            if (rc != HV_OK) {
                w->busy = 0;
                w->fetching = 0;
                w->refs--;
                uv_timer_start(&w->timer, on_worker_timer, 200, 0);
            }
            return;
        }
        w->idle = 0;
    }
    it = &w->items[w->head];
    now = hv_now_ms();
    if (w->ch->rt->shared && w->lease_until < now + w->ch->rt->lease_ms / 2) {
        /* Too little of the lease is left for a send: renew it (and read the head again). */
        items_clear(w);
        hv__worker_kick(w);
        return;
    }
    at = it->next_at > w->breaker_until ? it->next_at : w->breaker_until;
    if (at > now) {
        uv_timer_start(&w->timer, on_worker_timer, at - now, 0);
        return;
    }
    {
        hv_channel_msg_t m;
        hv__dest_batch_fn batch;
        memset(&m, 0, sizeof(m));
        m.id = it->mid;
        m.channel = w->ch->conf->id;
        m.content = it->content;
        m.len = it->len;
        m.content_type = it->content_type;
        m.received_at = it->received_at;
        m.content_file = it->file;
        w->busy = 1;
        w->sending = 1;
        w->refs++;
        if (it->refuse != NULL) {
            char d[200];
            snprintf(d, sizeof(d), "%s: %zu bytes, channels.max_message_bytes %zu", it->refuse,
                     it->len, w->ch->rt->max_message);
            on_sent(w, HV_CHANNEL_ERROR, d);
            return;
        }
        if (w->conf->purpose != NULL &&
            hv_consent_withholds(w->ch->rt->engine, w->conf->purpose, m.content, m.len, m.content_type)) {
            on_sent(w, HV_CHANNEL_DELIVERED, "withheld by patient consent"); /* done: never sent */
            return;
        }
        batch = hv__dest_batch_of(w->impl);
        /* Consent reads each message: a destination with a purpose sends one at a time. */
        if (batch != NULL && w->conf->purpose == NULL) rc = send_batch(w, batch, now);
        else rc = w->impl->send(w->state, &m, on_sent, w);
        if (rc != HV_OK) {
            char d[96];
            w->refs--;
            w->busy = 0;
            w->sending = 0;
            snprintf(d, sizeof(d), "send failed: %s", hv_strerror(rc));
            /* Treated as a failed attempt, recorded like any other. */
            w->busy = 1;
            w->sending = 1;
            w->refs++;
            on_sent(w, HV_CHANNEL_RETRY, d);
        }
    }
}

static int worker_new(hv__chan_t *ch, size_t i, int64_t lane, hv_error_t *err,
                      hv__worker_t **out) {
    hv__worker_t *w = hv_calloc(1, sizeof(*w));
    hv__dest_conf_t *d = &ch->conf->dests[i];
    int rc;
    if (w == NULL) return HV_ENOMEM;
    w->items = hv_calloc((size_t)d->queue.batch, sizeof(*w->items));
    if (w->items == NULL) {
        hv_free(w);
        return HV_ENOMEM;
    }
    w->ch = ch;
    w->conf = d;
    w->dest_index = i;
    w->lane = lane;
    w->cursor = hv__dest_uses_cursor(ch->rt, d);
    w->impl = hv__chan_find_dest(&ch->rt->engine->chan_reg, d->type);
    if (w->impl == NULL) {
        hv_error_set(err, HV_ECONFIG, ch->conf->path, "destination type %s is not available",
                     d->type);
        hv_free(w->items);
        hv_free(w);
        return HV_ECONFIG;
    }
    if (w->impl->open != NULL) {
        rc = w->impl->open(ch->rt->engine, ch->conf->id, d->conf, &w->state, err);
        if (rc != HV_OK) {
            hv_free(w->items);
            hv_free(w);
            return rc;
        }
    }
    {
        hv_metrics_t *mx = hv_engine_metrics(ch->rt->engine);
        char labels[256];
        snprintf(labels, sizeof(labels), "channel=\"%s\",destination=\"%s\"", ch->conf->id,
                 d->name);
        w->m_sent = hv_metrics_counter(mx, "hv_channel_delivered_total",
                                       "messages delivered by a channel destination", labels);
        w->m_dead = hv_metrics_counter(mx, "hv_channel_dead_lettered_total",
                                       "messages dead-lettered by a channel destination", labels);
        w->m_failed = hv_metrics_counter(mx, "hv_channel_failed_attempts_total",
                                         "failed delivery attempts of a channel destination",
                                         labels);
    }
    uv_timer_init(hv_engine_loop(ch->rt->engine), &w->timer);
    w->timer.data = w;
    w->timer_open = 1;
    w->refs = 1; /* released by the timer's close callback */
    hv__chan_ref(ch);
    *out = w;
    return HV_OK;
}

/* ------------------------------------------------------------------------- */
/* Deployment                                                                */
/* ------------------------------------------------------------------------- */

hv__chan_t *hv__chan_find(hv__chans_t *rt, const char *id) {
    size_t i;
    for (i = 0; i < rt->nchans; i++)
        if (strcmp(rt->chans[i]->conf->id, id) == 0) return rt->chans[i];
    return NULL;
}

/* Follows `channel` destinations from `from`; true when `target` is reachable. */
static int reaches(hv__chans_t *rt, const hv__chan_conf_t *from, const char *target, int depth) {
    size_t i;
    if (depth > 64) return 1;
    for (i = 0; i < from->ndests; i++) {
        const char *to;
        hv__chan_t *next;
        if (strcmp(from->dests[i].type, "channel") != 0) continue;
        to = hv_json_get_str(from->dests[i].conf, "channel");
        if (to == NULL) continue;
        if (strcmp(to, target) == 0) return 1;
        next = hv__chan_find(rt, to);
        if (next != NULL && strcmp(next->conf->id, target) != 0 &&
            reaches(rt, next->conf, target, depth + 1))
            return 1;
    }
    return 0;
}

/*
 * Deploys a parsed configuration (taken): builds its steps, source and workers;
 * replaces a running channel of the same id (whose workers finish first). On
 * failure the running version stays and err says why.
 */
int hv__chan_deploy(hv__chans_t *rt, hv__chan_conf_t *conf, hv_error_t *err) {
    hv__chan_t *ch = NULL, *old = hv__chan_find(rt, conf->id);
    size_t i;
    int rc = HV_OK;

    if (reaches(rt, conf, conf->id, 0)) {
        hv_error_set(err, HV_ECONFIG, conf->path,
                     "channel destinations form a cycle back to \"%s\"", conf->id);
        hv__chan_conf_free(conf);
        return HV_ECONFIG;
    }
    ch = hv_calloc(1, sizeof(*ch));
    if (ch == NULL) {
        hv__chan_conf_free(conf);
        return HV_ENOMEM;
    }
    ch->rt = rt;
    ch->conf = conf;
    ch->refs = 1;
    ch->state = conf->enabled ? HV__CHAN_STARTED : HV__CHAN_STOPPED;
    {
        hv_metrics_t *mx = hv_engine_metrics(rt->engine);
        char labels[128];
        snprintf(labels, sizeof(labels), "channel=\"%s\"", conf->id);
        ch->m_received = hv_metrics_counter(mx, "hv_channel_received_total",
                                            "messages a channel received and stored", labels);
        ch->m_filtered = hv_metrics_counter(mx, "hv_channel_filtered_total",
                                            "messages a channel's filter dropped", labels);
        ch->m_errored = hv_metrics_counter(mx, "hv_channel_errored_total",
                                           "messages a channel's steps failed on", labels);
    }
    ch->steps = hv_calloc(conf->nsteps ? conf->nsteps : 1, sizeof(*ch->steps));
    {
        size_t total = 0;
        for (i = 0; i < conf->ndests; i++) total += (size_t)conf->dests[i].queue.workers;
        ch->workers = hv_calloc(total ? total : 1, sizeof(*ch->workers));
    }
    if (ch->steps == NULL || ch->workers == NULL) {
        rc = HV_ENOMEM;
        goto fail;
    }
    for (i = 0; i < conf->nsteps; i++) {
        ch->steps[i].impl = hv__chan_find_step(&rt->engine->chan_reg, conf->steps[i].type);
        if (ch->steps[i].impl == NULL) {
            hv_error_set(err, HV_ECONFIG, conf->path, "step %s is not available",
                         conf->steps[i].type);
            rc = HV_ECONFIG;
            goto fail;
        }
        ch->nsteps = i + 1;
        if (ch->steps[i].impl->init != NULL) {
            rc = ch->steps[i].impl->init(rt->engine, conf->steps[i].conf, &ch->steps[i].state, err);
            if (rc != HV_OK) {
                ch->steps[i].impl = NULL;
                goto fail;
            }
        }
    }
    for (i = 0; i < conf->ndests; i++) {
        int64_t lane;
        for (lane = 0; lane < conf->dests[i].queue.workers; lane++) {
            rc = worker_new(ch, i, lane, err, &ch->workers[ch->nworkers]);
            if (rc != HV_OK) goto fail;
            ch->nworkers++;
        }
    }
    ch->src = hv__chan_find_source(&rt->engine->chan_reg, conf->source_type);
    if (ch->src == NULL) {
        hv_error_set(err, HV_ECONFIG, conf->path, "source %s is not available", conf->source_type);
        rc = HV_ECONFIG;
        goto fail;
    }
    if (old != NULL) {
        /* The new version takes the old one's place; its workers wait for the old ones. */
        ch->held = 1;
        if (old->src != NULL && old->src->stop != NULL && old->src_state != NULL)
            old->src->stop(old->src_state);
        old->src_state = NULL;
    }
    /* The cursor rows first: a message's derived status counts only existing cursors. */
    for (i = 0; i < ch->nworkers; i++) {
        cursor_ensure_arg_t *a;
        if (!ch->workers[i]->cursor || (a = hv_calloc(1, sizeof(*a))) == NULL) continue;
        snprintf(a->channel, sizeof(a->channel), "%s", conf->id);
        snprintf(a->dest, sizeof(a->dest), "%s", ch->workers[i]->conf->name);
        if (hv_storage_submit_lazy(rt->storage, cursor_ensure_job, cursor_ensure_done, a) != HV_OK)
            hv_free(a);
    }
    if (ch->state == HV__CHAN_STARTED && ch->src->start != NULL) {
        rc = ch->src->start(ch, conf->source, &ch->src_state, err);
        if (rc != HV_OK) {
            if (old != NULL && old->src != NULL && old->src->start != NULL && !old->retired)
                old->src->start(old, old->conf->source, &old->src_state, NULL);
            goto fail;
        }
    }
    if (old != NULL) {
        for (i = 0; i < rt->nchans; i++)
            if (rt->chans[i] == old) rt->chans[i] = ch;
        old->successor = ch;
        hv__chan_ref(ch); /* held by old until it is freed */
        old->successor_ref = 1;
        chan_retire(old);
    } else {
        hv__chan_t **nc = hv_realloc(rt->chans, (rt->nchans + 1) * sizeof(*nc));
        if (nc == NULL) {
            rc = HV_ENOMEM;
            goto fail;
        }
        rt->chans = nc;
        rt->chans[rt->nchans++] = ch;
    }
    for (i = 0; i < ch->nworkers; i++) hv__worker_kick(ch->workers[i]);
    {
        hv_logrec_t *r = hv_log_begin(HV_LOG_INFO, "channel.deployed");
        hv_log_str(r, "channel", conf->id);
        hv_log_str(r, "source", conf->source_type);
        hv_log_int(r, "destinations", (int64_t)conf->ndests);
        hv_log_str(r, "state", ch->state == HV__CHAN_STARTED ? "started" : "stopped");
        hv_log_end(r);
    }
    return HV_OK;
fail:
    if (ch->src_state != NULL && ch->src != NULL && ch->src->stop != NULL) ch->src->stop(ch->src_state);
    ch->src_state = NULL;
    if (err != NULL && err->location[0] == '\0')
        snprintf(err->location, sizeof(err->location), "%s", conf->path);
    ch->retired = 1;
    for (i = 0; i < ch->nworkers; i++) worker_close(ch->workers[i]);
    hv__chan_unref(ch);
    return rc;
}

void hv__chan_undeploy(hv__chans_t *rt, hv__chan_t *ch) {
    size_t i;
    for (i = 0; i < rt->nchans; i++) {
        if (rt->chans[i] != ch) continue;
        rt->chans[i] = rt->chans[--rt->nchans];
        break;
    }
    chan_retire(ch);
}

void hv__chan_set_state(hv__chan_t *ch, int state) {
    size_t i;
    int was = ch->state;
    if (was == state) return;
    ch->state = state;
    /* started: source and queues; paused: queues only; stopped: neither. */
    if (state != HV__CHAN_STARTED && ch->src_state != NULL && ch->src->stop != NULL) {
        ch->src->stop(ch->src_state);
        ch->src_state = NULL;
    }
    if (state == HV__CHAN_STARTED && ch->src->start != NULL && ch->src_state == NULL) {
        hv_error_t err;
        hv_error_clear(&err);
        if (ch->src->start(ch, ch->conf->source, &ch->src_state, &err) != HV_OK) {
            hv_logrec_t *r = hv_log_begin(HV_LOG_ERROR, "channel.source.failed");
            hv_log_str(r, "channel", ch->conf->id);
            hv_log_str(r, "error", err.message);
            hv_log_end(r);
        }
    }
    if (state != HV__CHAN_STOPPED)
        for (i = 0; i < ch->nworkers; i++) hv__worker_kick(ch->workers[i]);
}

void hv__worker_set_paused(hv__worker_t *w, int paused) {
    w->paused = paused;
    if (!paused) {
        w->breaker_until = 0;
        hv__worker_kick(w);
    }
}

/* Re-reads the queue of every worker of ch (after a requeue or reprocess). */
void hv__chan_wake(hv__chan_t *ch) {
    size_t i;
    hv__rows_reset(ch); /* queue rows may be waiting: each worker reads the store next */
    for (i = 0; i < ch->nworkers; i++) {
        hv__worker_t *w = ch->workers[i];
        if (!w->busy && w->head >= w->nitems) hv__worker_kick(w);
        else if (!w->busy) hv__worker_kick(w);
    }
}

static int ends_with(const char *s, const char *suf) {
    size_t n = strlen(s), m = strlen(suf);
    return n >= m && strcmp(s + n - m, suf) == 0;
}

static void log_refused(hv__chans_t *rt, const hv_error_t *err) {
    char msg[1024];
    hv_logrec_t *r = hv_log_begin(HV_LOG_ERROR, "channel.refused");
    hv_error_format(err, msg, sizeof(msg));
    hv_log_str(r, "error", msg);
    hv_log_end(r);
    snprintf(rt->last_error, sizeof(rt->last_error), "%s", msg);
}

/*
 * Loads every *.json of the directory: new files are deployed, changed ones
 * redeployed, removed ones undeployed; a file that does not load is refused and
 * the running version of its channel stays. Returns the number refused.
 */
int hv__chans_reload(hv__chans_t *rt) {
    DIR *d = opendir(rt->dir);
    struct dirent *de;
    char **seen = NULL;
    size_t nseen = 0, i, j;
    int refused = 0;
    /* A missing directory has no files; the built-in channels still run. */
    while (d != NULL && (de = readdir(d)) != NULL) {
        char path[4096];
        hv__chan_conf_t *conf = NULL;
        hv__chan_t *cur;
        hv_error_t err;
        char **ns;
        if (de->d_name[0] == '.' || !ends_with(de->d_name, ".json")) continue;
        snprintf(path, sizeof(path), "%s/%s", rt->dir, de->d_name);
        hv_error_clear(&err);
        if (hv__chan_conf_load(path, &rt->engine->chan_reg, &conf, &err) != HV_OK) {
            log_refused(rt, &err);
            refused++;
            /* The channel of a refused file keeps running: remember it by path. */
            for (i = 0; i < rt->nchans; i++) {
                if (strcmp(rt->chans[i]->conf->path, path) != 0) continue;
                ns = hv_realloc(seen, (nseen + 1) * sizeof(*ns));
                if (ns != NULL) {
                    seen = ns;
                    seen[nseen++] = hv_strdup(rt->chans[i]->conf->id);
                }
            }
            continue;
        }
        for (j = 0; j < nseen; j++) {
            if (seen[j] != NULL && strcmp(seen[j], conf->id) == 0) break;
        }
        if (j < nseen) {
            hv_error_set(&err, HV_ECONFIG, path, "channel id \"%s\" is used by another file",
                         conf->id);
            log_refused(rt, &err);
            hv__chan_conf_free(conf);
            refused++;
            continue;
        }
        ns = hv_realloc(seen, (nseen + 1) * sizeof(*ns));
        if (ns == NULL) {
            hv__chan_conf_free(conf);
            continue;
        }
        seen = ns;
        seen[nseen++] = hv_strdup(conf->id);
        cur = hv__chan_find(rt, conf->id);
        if (cur != NULL && strcmp(cur->conf->text_hash, conf->text_hash) == 0 &&
            strcmp(cur->conf->path, conf->path) == 0) {
            hv__chan_conf_free(conf); /* unchanged */
            continue;
        }
        if (hv__chan_deploy(rt, conf, &err) != HV_OK) {
            log_refused(rt, &err);
            refused++;
        }
    }
    if (d != NULL) closedir(d);
    /* Built-in channels whose id no file took: deployed from their text. The path
     * names them in errors and tells a built-in version from a file's. */
    for (i = 0; i < rt->engine->chan_reg.nbuiltins; i++) {
        const char *bid = rt->engine->chan_reg.builtins[i].id;
        const char *text = rt->engine->chan_reg.builtins[i].json;
        char path[128];
        hv__chan_conf_t *conf = NULL;
        hv__chan_t *cur;
        hv_error_t err;
        char **ns;
        for (j = 0; j < nseen; j++)
            if (seen[j] != NULL && strcmp(seen[j], bid) == 0) break;
        if (j < nseen) continue;
        snprintf(path, sizeof(path), "(built-in %s)", bid);
        hv_error_clear(&err);
        if (hv__chan_conf_parse(text, strlen(text), path, &rt->engine->chan_reg, &conf, &err) !=
            HV_OK) {
            log_refused(rt, &err);
            refused++;
            rt->builtin_refused++;
            continue;
        }
        ns = hv_realloc(seen, (nseen + 1) * sizeof(*ns));
        if (ns == NULL) {
            hv__chan_conf_free(conf);
            continue;
        }
        seen = ns;
        seen[nseen++] = hv_strdup(conf->id);
        cur = hv__chan_find(rt, conf->id);
        if (cur != NULL && strcmp(cur->conf->text_hash, conf->text_hash) == 0 &&
            strcmp(cur->conf->path, conf->path) == 0) {
            hv__chan_conf_free(conf);
            continue;
        }
        if (hv__chan_deploy(rt, conf, &err) != HV_OK) {
            log_refused(rt, &err);
            refused++;
            rt->builtin_refused++;
        }
    }
    /* Channels whose file is gone are undeployed (not when the directory itself could
     * not be read: a directory that vanished for a moment must not stop every channel). */
    for (i = rt->nchans; d != NULL && i-- > 0;) {
        hv__chan_t *ch = rt->chans[i];
        int found = 0;
        for (j = 0; j < nseen; j++)
            if (seen[j] != NULL && strcmp(seen[j], ch->conf->id) == 0) found = 1;
        if (!found && ch->conf->path[0] != '\0') hv__chan_undeploy(rt, ch);
    }
    for (j = 0; j < nseen; j++) hv_free(seen[j]);
    hv_free(seen);
    return refused;
}

/* ------------------------------------------------------------------------- */
/* The module                                                                */
/* ------------------------------------------------------------------------- */

static const hv_setting_t settings[] = {
    {"channels.store_queue", NULL, HV_SET_INT, "65536", NULL,
     "channel store jobs waiting before sources are answered busy"},
    {"channels.store_batch", NULL, HV_SET_INT, "1024", NULL, "most channel store jobs per commit"},
    {"channels.synchronous", NULL, HV_SET_ENUM, "FULL", "FULL|NORMAL|OFF",
     "durability of the channel store (FULL: on disk before a source answers)"},
    {"channels.watch", NULL, HV_SET_BOOL, "true", NULL,
     "reload channel files when the channels directory changes"},
    {"channels.prune_interval", NULL, HV_SET_DURATION, "1h", NULL,
     "how often messages older than their channel's retention are pruned"},
    {"channels.event_prune_interval", NULL, HV_SET_DURATION, "1m", NULL,
     "how often events every subscriber has consumed are deleted from the event bus's table "
     "(0: never)"},
    {"channels.max_message_bytes", NULL, HV_SET_SIZE, "16MiB", NULL,
     "largest message content read into memory by a filter rule, step or destination that does not "
     "stream; larger messages pass only through channels that do not read content (kept in a file)"},
    {"channels.max_held_bytes", NULL, HV_SET_SIZE, "256MiB", NULL,
     "content of one channel's received messages held in memory until the store commits them; "
     "a message that would pass it is refused as busy (MLLP AE, HTTP 503, a file stays for the "
     "next round) unless it is the only one"},
    {"channels.fts_max", NULL, HV_SET_SIZE, "1MiB", NULL,
     "bytes of each message's content indexed for full-text search (the rest is not searchable)"},
    {"channels.queue_lease", NULL, HV_SET_DURATION, "2m", NULL,
     "PostgreSQL: how long a process holds a destination lane; a lane of a process that died "
     "is taken over after this (a single send must take less than half of it)"},
    {NULL, NULL, 0, NULL, NULL, NULL},
};

static void on_reload(hv_engine_t *e, void *ud) {
    hv__chans_t *rt = ud;
    int refused;
    (void)e;
    refused = hv__chans_reload(rt);
    hv_log(HV_LOG_INFO, "channel.reloaded", "%zu channels running, %d files refused", rt->nchans,
           refused);
}

static void on_watch_debounced(uv_timer_t *t) {
    hv__chans_t *rt = t->data;
    on_reload(rt->engine, rt);
}

static void on_dir_change(uv_fs_event_t *h, const char *filename, int events, int status) {
    hv__chans_t *rt = h->data;
    (void)events;
    if (status < 0 || filename == NULL || !ends_with(filename, ".json")) return;
    uv_timer_start(&rt->watch_timer, on_watch_debounced, 200, 0);
}

/* auto_vacuum must be set before the first table exists, or be followed by a
 * VACUUM (done once, when the store is new and small) — so that pruning can give
 * pages back with PRAGMA incremental_vacuum. */
static int set_incremental_vacuum(hv_db_t *db) {
    hv_db_stmt_t *st = NULL;
    int64_t mode = 0;
    int rc = hv_db_prepare(db, "PRAGMA auto_vacuum", &st);
    if (rc != HV_OK) return rc;
    if (hv_db_step(st) == HV_DB_ROW) mode = hv_db_column_int64(st, 0);
    hv_db_done(st);
    if (mode == 2) return HV_OK;
    rc = hv_db_exec(db, "PRAGMA auto_vacuum = INCREMENTAL");
    if (rc == HV_OK) rc = hv_db_exec(db, "VACUUM");
    return rc;
}

static int channels_init(hv_engine_t *e, void **state) {
    hv__chans_t *rt = hv_calloc(1, sizeof(*rt));
    hv_config_t *cfg = hv_engine_config(e);
    hv_db_t *db = NULL;
    hv_error_t err;
    int rc;
    if (rt == NULL) return HV_ENOMEM;
    hv_error_clear(&err);
    rt->engine = e;
    rt->dir = hv_strdup(hv_config_str(cfg, "channels"));
    if (rt->dir == NULL) {
        rc = HV_ENOMEM;
        goto fail;
    }
    hv__chan_register_builtins(e);
    rc = hv_db_open(hv_engine_db_url(e), hv_engine_data_dir(e), "channels", &db, &err);
    if (rc == HV_OK) rc = hv_db_set_synchronous(db, hv_config_str(cfg, "channels.synchronous"));
    if (rc == HV_OK) {
        rt->fts = hv_db_kind(db) == HV_DB_SQLITE;
        rt->shared = hv_db_kind(db) == HV_DB_PG;
        rc = hv_db_migrate(db, "channels", rt->fts ? hv__chan_migrations_sqlite : hv__chan_migrations_pg, &err);
    }
    if (rc == HV_OK && rt->fts) rc = set_incremental_vacuum(db);
    if (rc != HV_OK) {
        hv_logrec_t *r = hv_log_begin(HV_LOG_ERROR, "channel.store.open_failed");
        hv_log_str(r, "error", hv_strerror(rc));
        hv_log_str(r, "detail", err.message[0] ? err.message : db ? hv_db_errmsg(db) : "");
        hv_log_end(r);
        hv_db_close(db);
        goto fail;
    }
    rt->fts_max = (size_t)hv_config_size(cfg, "channels.fts_max");
    rt->max_message = (size_t)hv_config_size(cfg, "channels.max_message_bytes");
    rt->max_held = (size_t)hv_config_size(cfg, "channels.max_held_bytes");
    /* Content files live beside the SQLite store; a PostgreSQL store is shared by processes
     * of other hosts, which could not read them, so there large messages stay in memory. */
    if (rt->fts && snprintf(rt->content_dir, sizeof(rt->content_dir), "%s/channel-content",
                            hv_engine_data_dir(e)) < (int)sizeof(rt->content_dir)) {
        if (hv__mkdirs(rt->content_dir) != 0) rt->content_dir[0] = '\0';
    } else {
        rt->content_dir[0] = '\0';
    }
    rt->lease_ms = hv_config_duration_ms(cfg, "channels.queue_lease");
    if (rt->lease_ms < 1000) rt->lease_ms = 1000;
    {
        char host[64] = "";
        gethostname(host, sizeof(host) - 1);
        snprintf(rt->owner, sizeof(rt->owner), "%s:%ld:%llu", host, (long)getpid(),
                 (unsigned long long)hv_now_ms());
    }
    rc = hv_storage_new(hv_engine_loop(e), db, (size_t)hv_config_int(cfg, "channels.store_queue"),
                        (size_t)hv_config_int(cfg, "channels.store_batch"), &rt->storage);
    if (rc != HV_OK) {
        hv_db_close(db);
        goto fail;
    }
    rc = hv__bus_new(rt);
    if (rc != HV_OK) goto fail;
    rc = hv__chan_routes_add(e, rt);
    if (rc != HV_OK) goto fail;
    rc = hv_reload_register(e, on_reload, rt);
    if (rc != HV_OK) goto fail;
    *state = rt;
    return HV_OK;
fail:
    if (rt->storage != NULL) hv_storage_free(rt->storage);
    hv__bus_free(rt);
    hv_free(rt->dir);
    hv_free(rt);
    return rc;
}

/* Deferred full-text indexing (hv__chan_fts_catch_up): a 250 ms tick indexes at most
 * 4,096 messages in a job of their own, so that a search has little to catch up. */
static int fts_job(hv_db_t *db, void *arg) {
    hv__chans_t *rt = arg;
    return hv__chan_fts_catch_up(db, rt, 4096);
}

static void fts_done(int status, void *arg) {
    hv__chans_t *rt = arg;
    (void)status; /* a failed catch-up is retried by the next tick or search */
    rt->fts_busy = 0;
}

/* A tick indexes when the store has nothing else waiting, or when it skipped 5 s of
 * ticks: bursts are acknowledged at the store's own rate and indexed after them, while
 * under sustained load the backlog a search must catch up stays bounded. */
static void on_fts_tick(uv_timer_t *t) {
    hv__chans_t *rt = t->data;
    if (rt->fts_busy || rt->stopped) return;
    if (hv_storage_queued(rt->storage) > 0 && ++rt->fts_skipped < 20) return;
    if (hv_storage_submit(rt->storage, fts_job, fts_done, rt) == HV_OK) {
        rt->fts_busy = 1;
        rt->fts_skipped = 0;
    }
}

static int channels_start(hv_engine_t *e, void *state) {
    hv__chans_t *rt = state;
    uv_loop_t *loop = hv_engine_loop(e);
    int refused;
    /* Before any source runs: storage jobs run in submission order. */
    if (rt->content_dir[0] != '\0') hv_storage_submit(rt->storage, hv__chan_content_sweep_job, NULL, rt);
    refused = hv__chans_reload(rt);
    hv_log(HV_LOG_INFO, "channel.loaded", "%zu channels running, %d files refused", rt->nchans,
           refused);
    if (rt->builtin_refused > 0) {
        /* A built-in channel (hl7v2-inbound on --mllp) that cannot run stops the start:
         * nobody wrote a file to fix, the settings or the address are wrong. */
        fprintf(stderr, "holovitals: %s\n", rt->last_error);
        return HV_ECONFIG;
    }
    hv__bus_replay(rt); /* after the event sources have subscribed */
    uv_timer_init(loop, &rt->watch_timer);
    rt->watch_timer.data = rt;
    rt->timers_open = 1;
    uv_timer_init(loop, &rt->prune_timer);
    rt->prune_timer.data = rt;
    uv_timer_init(loop, &rt->fts_timer);
    rt->fts_timer.data = rt;
    if (rt->fts) {
        uv_timer_start(&rt->fts_timer, on_fts_tick, 250, 250);
        uv_unref((uv_handle_t *)&rt->fts_timer);
    }
    hv__chan_prune_start(rt);
    if (hv_config_bool(hv_engine_config(e), "channels.watch")) {
        uv_fs_event_init(loop, &rt->watch);
        rt->watch.data = rt;
        rt->watch_open = 1;
        if (uv_fs_event_start(&rt->watch, on_dir_change, rt->dir, 0) != 0)
            hv_log(HV_LOG_WARN, "channel.watch", "cannot watch the channels directory");
    }
    return HV_OK;
}

static void on_closed_noop(uv_handle_t *h) { (void)h; }

/* Gives this process's lanes back at a clean stop, so that another takes them at once. */
static int lease_release_job(hv_db_t *db, void *arg) {
    hv__chans_t *rt = arg;
    hv_db_stmt_t *st = NULL;
    int rc = hv_db_prepare(db, "DELETE FROM chan_leases WHERE owner = $1", &st);
    if (rc != HV_OK) return rc;
    bind_str(st, 1, rt->owner);
    rc = hv_db_step(st);
    hv_db_done(st);
    return rc < 0 ? rc : HV_OK;
}

static void lease_release_done(int status, void *arg) {
    (void)status;
    (void)arg;
}

static void channels_stop(hv_engine_t *e, void *state) {
    hv__chans_t *rt = state;
    (void)e;
    if (rt->stopped) return;
    rt->stopped = 1;
    if (rt->watch_open) uv_close((uv_handle_t *)&rt->watch, on_closed_noop);
    if (rt->timers_open) {
        uv_close((uv_handle_t *)&rt->watch_timer, on_closed_noop);
        uv_close((uv_handle_t *)&rt->prune_timer, on_closed_noop);
        uv_close((uv_handle_t *)&rt->fts_timer, on_closed_noop);
    }
    rt->watch_open = rt->timers_open = 0;
    hv__chan_waiters_stop(rt);
    hv__bus_stop(rt);
    if (rt->shared && rt->storage != NULL)
        (void)hv_storage_submit(rt->storage, lease_release_job, lease_release_done, rt);
    /* Workers first (they cancel what they have in flight), then libcurl's handles. */
    while (rt->nchans > 0) hv__chan_undeploy(rt, rt->chans[rt->nchans - 1]);
    hv__curl_cancel_all(e);
}

static void channels_free(hv_engine_t *e, void *state) {
    hv__chans_t *rt = state;
    if (rt == NULL) return;
    channels_stop(e, rt);
    if (rt->storage != NULL) hv_storage_free(rt->storage); /* runs the last done callbacks */
    rt->storage = NULL;
    hv__curl_free(e);
    hv__bus_free(rt);
    hv_free(rt->chans);
    hv_free(rt->dir);
    hv_free(rt);
}

const hv_module_t hv_channels_module = {
    "channels", settings, hv__chan_commands, channels_init, channels_start, channels_stop,
    channels_free,
};
