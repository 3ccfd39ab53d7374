/*
 * event.c — the engine's event bus: durable publish/subscribe (engine.h "Event
 * bus"), the transactional outbox for modules' own databases, and the channel
 * `event` source and destination.
 *
 * Table chan_events (channels database): id, type, payload, created_at,
 * delivered (0/1). Publishing is a storage job (group commit with the channel
 * store); after the commit the event is offered to every matching subscriber and
 * marked delivered once all have acknowledged. At start, undelivered events are
 * offered again, oldest first. Subscribers therefore see each event at least
 * once, in publication order per process.
 *
 * Pruning (every channels.event_prune_interval): an event row is deleted once it is
 * delivered to the in-process subscribers (delivered = 1) and every durable
 * subscriber's cursor has passed it (id <= MIN(chan_event_cursors.last_id)), in chunks
 * of EVENT_PRUNE_CHUNK rows per storage job. The newest row always stays: SQLite
 * gives a new row MAX(id) + 1 (no AUTOINCREMENT), and ids must never go back under a
 * cursor. A cursor whose subscriber is paused or stopped (an event channel not
 * running, on any process) keeps everything after it; a cursor of a channel that was
 * removed for good keeps events too, until its row is deleted by hand. Leases
 * (chan_leases) that expired over an hour ago are deleted in the same job: a free
 * lane's row is made again by the next lease_take.
 *
 * Outbox (a module's database): hv_outbox (id, type, payload, created_at). A row
 * written in the module's transaction is moved by hv_event_outbox_drain: read,
 * published to the bus (durable there), then deleted from the outbox — a crash
 * in between publishes it again (at-least-once), never loses it. One drain per
 * outbox runs at a time; asking while one runs makes it run once more after.
 */
#include "config.h"
#include "engine/channel_rt.h"

#include <stdio.h>
#include <string.h>

typedef struct dsub_row {
    int64_t id;
    char *type;
    char *payload;
    size_t len;
    uint64_t created_at;
} dsub_row_t;

typedef struct dticket dticket_t;

struct hv_event_sub {
    char *pattern;
    hv_event_cb fn;
    void *ud;
    hv_event_sub_t *next;
    /* durable subscribers only (name != NULL) */
    char *name;
    hv__bus_t *bus;
    int busy;  /* a read, a delivery or a cursor update is in flight */
    int again; /* kicked while busy */
    int dead;  /* unsubscribed: freed when what is in flight ends */
    int failed;
    int held;  /* this process delivers the name (its lease) */
    uint64_t lease_until;
    int64_t cursor, acked; /* the cursor as stored, and the last event acknowledged */
    dsub_row_t *rows;
    size_t nrows, next_row;
    dticket_t *ticket; /* the delivery waiting for its acknowledgement */
};

/* The token of one durable delivery: outlives its subscriber if the acknowledgement
 * comes after the subscriber was freed (then it is dropped). */
struct dticket {
    hv_event_sub_t *sub;
};

/* One outbox being drained: at most one drain per storage runs at a time; a drain
 * asked for meanwhile runs once the current one ends (so rows are published once). */
typedef struct drain_slot {
    hv_storage_t *storage;
    int running, again;
} drain_slot_t;

struct hv__bus {
    hv__chans_t *rt;
    hv_event_sub_t *subs;
    uint64_t published, delivered;
    drain_slot_t drains[8];
    size_t ndrains;
    hv_event_sub_t *dsubs; /* durable subscribers */
    uv_timer_t poll;       /* kicks them: other processes' events, retries */
    int poll_open;
    uv_timer_t prune;      /* channels.event_prune_interval */
    int prune_open, prune_busy;
    uint64_t pruned;       /* event rows deleted since start */
};

static hv__bus_t *bus_of(hv_engine_t *e) {
    hv__chans_t *rt = hv__chans_of(e);
    return rt ? rt->bus : NULL;
}

static int matches(const char *pattern, const char *type) {
    size_t n = strlen(pattern);
    if (strcmp(pattern, "*") == 0) return 1;
    if (n >= 2 && strcmp(pattern + n - 2, ".*") == 0)
        return strncmp(pattern, type, n - 1) == 0; /* "patient." prefix */
    return strcmp(pattern, type) == 0;
}

int hv_event_subscribe(hv_engine_t *e, const char *pattern, hv_event_cb fn, void *ud,
                       hv_event_sub_t **out) {
    hv__bus_t *b = bus_of(e);
    hv_event_sub_t *s;
    if (b == NULL) return HV_ENOTSUP;
    if (pattern == NULL || fn == NULL) return HV_EINVAL;
    s = hv_calloc(1, sizeof(*s));
    if (s == NULL || (s->pattern = hv_strdup(pattern)) == NULL) {
        hv_free(s);
        return HV_ENOMEM;
    }
    s->fn = fn;
    s->ud = ud;
    s->next = b->subs;
    b->subs = s;
    if (out) *out = s;
    return HV_OK;
}

static void dsub_free(hv_event_sub_t *s);

void hv_event_unsubscribe(hv_engine_t *e, hv_event_sub_t *sub) {
    hv__bus_t *b = bus_of(e);
    hv_event_sub_t **pp;
    if (b == NULL || sub == NULL) return;
    if (sub->name != NULL) {
        for (pp = &b->dsubs; *pp != NULL; pp = &(*pp)->next) {
            if (*pp != sub) continue;
            *pp = sub->next;
            break;
        }
        sub->dead = 1;
        if (!sub->busy) dsub_free(sub);
        return;
    }
    for (pp = &b->subs; *pp != NULL; pp = &(*pp)->next) {
        if (*pp != sub) continue;
        *pp = sub->next;
        hv_free(sub->pattern);
        hv_free(sub);
        return;
    }
}

/* ---- durable subscribers ---- */

#define DSUB_BATCH 100

static void dsub_rows_free(hv_event_sub_t *s) {
    size_t i;
    for (i = 0; i < s->nrows; i++) {
        hv_free(s->rows[i].type);
        hv_free(s->rows[i].payload);
    }
    hv_free(s->rows);
    s->rows = NULL;
    s->nrows = s->next_row = 0;
}

static void dsub_free(hv_event_sub_t *s) {
    if (s->ticket != NULL) s->ticket->sub = NULL; /* its acknowledgement is dropped */
    dsub_rows_free(s);
    hv_free(s->name);
    hv_free(s->pattern);
    hv_free(s);
}

/* Storage thread: the lease (shared store), the cursor (made at the newest event the
 * first time), and the next events after it. */
static int dsub_read_job(hv_db_t *db, void *arg) {
    hv_event_sub_t *s = arg;
    hv__chans_t *rt = s->bus->rt;
    hv_db_stmt_t *st = NULL;
    int rc;
    dsub_rows_free(s);
    s->held = 1;
    if (rt->shared) {
        rc = hv__lease_take(db, rt, "event-sub", s->name, 0, &s->lease_until, &s->held);
        if (rc != HV_OK || !s->held) return rc;
    }
    for (int pass = 0; pass < 2; pass++) {
        int found;
        rc = hv_db_prepare(db, "SELECT last_id FROM chan_event_cursors WHERE name = $1", &st);
        if (rc != HV_OK) return rc;
        hv_db_bind_text(st, 1, s->name, strlen(s->name));
        rc = hv_db_step(st);
        found = rc == HV_DB_ROW;
        if (found) s->cursor = hv_db_column_int64(st, 0);
        hv_db_done(st);
        if (rc < 0) return rc;
        if (found) break;
        if (pass == 1) return HV_EDB;
        /* The first subscription: the cursor starts at the newest event (another process
         * may make it at the same moment: then its row stands). */
        rc = hv_db_prepare(db,
                           "INSERT INTO chan_event_cursors (name, last_id) SELECT $1,"
                           " COALESCE(MAX(id), 0) FROM chan_events WHERE 1 = 1"
                           " ON CONFLICT (name) DO NOTHING",
                           &st);
        if (rc != HV_OK) return rc;
        hv_db_bind_text(st, 1, s->name, strlen(s->name));
        rc = hv_db_step(st);
        hv_db_done(st);
        if (rc < 0) return rc;
    }
    s->acked = s->cursor;
    rc = hv_db_prepare(db,
                       "SELECT id, type, payload, created_at FROM chan_events WHERE id > $1"
                       " ORDER BY id LIMIT 100",
                       &st);
    if (rc != HV_OK) return rc;
    hv_db_bind_int64(st, 1, s->cursor);
    s->rows = hv_calloc(DSUB_BATCH, sizeof(*s->rows));
    if (s->rows == NULL) {
        hv_db_done(st);
        return HV_ENOMEM;
    }
    while ((rc = hv_db_step(st)) == HV_DB_ROW) {
        size_t n = 0;
        const char *p = hv_db_column_blob(st, 2, &n);
        dsub_row_t *r = &s->rows[s->nrows];
        r->id = hv_db_column_int64(st, 0);
        r->type = hv_strdup(hv_db_column_text(st, 1, NULL));
        r->payload = hv_strndup(p ? p : "", n);
        r->len = n;
        r->created_at = (uint64_t)hv_db_column_int64(st, 3);
        if (r->type == NULL || r->payload == NULL) {
            hv_free(r->type);
            hv_free(r->payload);
            rc = HV_ENOMEM;
            break;
        }
        s->nrows++;
    }
    hv_db_done(st);
    return rc < 0 ? rc : HV_OK;
}

static int dsub_cursor_job(hv_db_t *db, void *arg) {
    hv_event_sub_t *s = arg;
    hv_db_stmt_t *st = NULL;
    int rc = hv_db_prepare(db,
                           "UPDATE chan_event_cursors SET last_id = $2 WHERE name = $1 AND last_id < $2",
                           &st);
    if (rc != HV_OK) return rc;
    hv_db_bind_text(st, 1, s->name, strlen(s->name));
    hv_db_bind_int64(st, 2, s->acked);
    rc = hv_db_step(st);
    hv_db_done(st);
    return rc < 0 ? rc : HV_OK;
}

static void dsub_kick(hv_event_sub_t *s);

static void dsub_idle(hv_event_sub_t *s) {
    int again = s->again && !s->failed;
    s->busy = 0;
    s->again = 0;
    if (s->dead) {
        dsub_free(s);
        return;
    }
    if (again) dsub_kick(s);
}

static void dsub_cursor_done(int status, void *arg) {
    hv_event_sub_t *s = arg;
    if (status == HV_OK) s->cursor = s->acked;
    /* A full batch means more may wait: read on at once (unless a delivery failed). */
    if (s->nrows == DSUB_BATCH && !s->failed) s->again = 1;
    dsub_rows_free(s);
    dsub_idle(s);
}

/* The batch is over (all acknowledged, or one failed): the cursor moves past what was. */
static void dsub_batch_end(hv_event_sub_t *s) {
    hv__chans_t *rt = s->bus->rt;
    if (s->acked > s->cursor && !s->dead && rt->storage != NULL &&
        hv_storage_submit(rt->storage, dsub_cursor_job, dsub_cursor_done, s) == HV_OK)
        return;
    if (s->nrows == DSUB_BATCH && !s->failed) s->again = 1;
    dsub_rows_free(s);
    dsub_idle(s);
}

static void dsub_offer_next(hv_event_sub_t *s);

static void dsub_on_ack(void *token, int status) {
    dticket_t *t = token;
    hv_event_sub_t *s = t->sub;
    hv_free(t);
    if (s == NULL) return; /* the subscriber is gone */
    s->ticket = NULL;
    if (status != HV_OK) {
        s->failed = 1;
        hv_log(HV_LOG_WARN, "event.delivery_failed", "%s: %s (offered again later)", s->name,
               hv_strerror(status));
        dsub_batch_end(s);
        return;
    }
    s->acked = s->rows[s->next_row].id;
    s->next_row++;
    dsub_offer_next(s);
}

static void dsub_offer_next(hv_event_sub_t *s) {
    while (s->next_row < s->nrows && !s->dead) {
        dsub_row_t *r = &s->rows[s->next_row];
        hv_event_t ev;
        dticket_t *t;
        if (!matches(s->pattern, r->type)) {
            s->acked = r->id;
            s->next_row++;
            continue;
        }
        t = hv_calloc(1, sizeof(*t));
        if (t == NULL) {
            s->failed = 1;
            break;
        }
        t->sub = s;
        s->ticket = t;
        ev.id = r->id;
        ev.type = r->type;
        ev.payload = r->payload;
        ev.len = r->len;
        ev.created_at = r->created_at;
        s->fn(s->ud, &ev, dsub_on_ack, t); /* may acknowledge at once */
        return;
    }
    dsub_batch_end(s);
}

static void dsub_read_done(int status, void *arg) {
    hv_event_sub_t *s = arg;
    if (status != HV_OK) s->failed = 1; /* the poll timer tries again */
    if (s->dead || status != HV_OK || !s->held) {
        dsub_rows_free(s);
        dsub_idle(s);
        return;
    }
    s->failed = 0;
    s->next_row = 0;
    dsub_offer_next(s);
}

static void dsub_kick(hv_event_sub_t *s) {
    hv__chans_t *rt = s->bus->rt;
    if (s->busy) {
        s->again = 1;
        return;
    }
    if (rt->storage == NULL || rt->stopped) return;
    s->busy = 1;
    if (hv_storage_submit(rt->storage, dsub_read_job, dsub_read_done, s) != HV_OK) {
        s->busy = 0;
        s->failed = 1; /* the store is busy: the poll timer tries again */
    }
}

static void dsub_kick_all(hv__bus_t *b) {
    hv_event_sub_t *s, *next;
    for (s = b->dsubs; s != NULL; s = next) {
        next = s->next;
        s->failed = 0;
        dsub_kick(s);
    }
}

/* Shared store: every subscriber looks for other processes' events. Alone: only the
 * subscribers whose last delivery failed try again (local publishes kick the others). */
static void on_poll(uv_timer_t *t) {
    hv__bus_t *b = t->data;
    hv_event_sub_t *s, *next;
    if (b->rt->shared) {
        dsub_kick_all(b);
        return;
    }
    for (s = b->dsubs; s != NULL; s = next) {
        next = s->next;
        if (!s->failed) continue;
        s->failed = 0;
        dsub_kick(s);
    }
}

int hv_event_subscribe_durable(hv_engine_t *e, const char *name, const char *pattern,
                               hv_event_cb fn, void *ud, hv_event_sub_t **out) {
    hv__bus_t *b = bus_of(e);
    hv_event_sub_t *s;
    if (b == NULL) return HV_ENOTSUP;
    if (name == NULL || name[0] == '\0' || strlen(name) > 200 || pattern == NULL || fn == NULL)
        return HV_EINVAL;
    s = hv_calloc(1, sizeof(*s));
    if (s == NULL) return HV_ENOMEM;
    s->pattern = hv_strdup(pattern);
    s->name = hv_strdup(name);
    if (s->pattern == NULL || s->name == NULL) {
        dsub_free(s);
        return HV_ENOMEM;
    }
    s->fn = fn;
    s->ud = ud;
    s->bus = b;
    s->next = b->dsubs;
    b->dsubs = s;
    if (!b->poll_open && !b->rt->stopped) {
        /* Other processes' events (shared store) and retries after a failed delivery. */
        uv_timer_init(hv_engine_loop(e), &b->poll);
        b->poll.data = b;
        b->poll_open = 1;
        uv_timer_start(&b->poll, on_poll, b->rt->shared ? HV__CHAN_SHARED_POLL_MS : 1000,
                       b->rt->shared ? HV__CHAN_SHARED_POLL_MS : 1000);
    }
    dsub_kick(s); /* makes its cursor now: it sees what is published from here on */
    if (out) *out = s;
    return HV_OK;
}

/* ---- delivery ---- */

typedef struct delivery {
    hv__bus_t *bus;
    hv_event_t ev;
    char *type;
    char *payload;
    int pending; /* acknowledgements still due, +1 while offering */
    int failed;
    int premarked; /* stored as delivered: no in-process subscriber matched at publishing */
    hv_event_published_cb done;
    void *ud;
} delivery_t;

static void delivery_free(delivery_t *d) {
    hv_free(d->type);
    hv_free(d->payload);
    hv_free(d);
}

static int mark_job(hv_db_t *db, void *arg) {
    delivery_t *d = arg;
    hv_db_stmt_t *st = NULL;
    int rc = hv_db_prepare(db, "UPDATE chan_events SET delivered = 1 WHERE id = $1", &st);
    if (rc != HV_OK) return rc;
    hv_db_bind_int64(st, 1, d->ev.id);
    rc = hv_db_step(st);
    hv_db_done(st);
    return rc < 0 ? rc : HV_OK;
}

static void mark_done(int status, void *arg) {
    delivery_t *d = arg;
    if (status == HV_OK) d->bus->delivered++;
    delivery_free(d);
}

static void delivery_unref(delivery_t *d) {
    if (--d->pending > 0) return;
    if (d->premarked) {
        /* Its row says delivered already: no UPDATE, no storage job, no commit. */
        if (!d->failed) d->bus->delivered++;
        delivery_free(d);
        return;
    }
    if (d->failed || d->bus->rt->storage == NULL ||
        hv_storage_submit(d->bus->rt->storage, mark_job, mark_done, d) != HV_OK)
        delivery_free(d); /* stays undelivered: offered again at the next start */
}

static void on_ack(void *token, int status) {
    delivery_t *d = token;
    if (status != HV_OK) d->failed = 1;
    delivery_unref(d);
}

static void offer(delivery_t *d) {
    hv_event_sub_t *s, *next;
    d->pending = 1;
    for (s = d->bus->subs; s != NULL; s = next) {
        next = s->next;
        if (!matches(s->pattern, d->ev.type)) continue;
        d->pending++;
        s->fn(s->ud, &d->ev, on_ack, d);
    }
    delivery_unref(d);
}

static delivery_t *delivery_new(hv__bus_t *b, int64_t id, const char *type, const char *payload,
                                size_t len, uint64_t created_at) {
    delivery_t *d = hv_calloc(1, sizeof(*d));
    if (d == NULL) return NULL;
    d->bus = b;
    d->type = hv_strdup(type);
    d->payload = hv_strndup(payload, len);
    if (d->type == NULL || d->payload == NULL) {
        delivery_free(d);
        return NULL;
    }
    d->ev.id = id;
    d->ev.type = d->type;
    d->ev.payload = d->payload;
    d->ev.len = len;
    d->ev.created_at = created_at;
    return d;
}

/* ---- publishing ---- */

static int publish_job(hv_db_t *db, void *arg) {
    delivery_t *d = arg;
    hv_db_stmt_t *st = NULL;
    int rc;
    if (hv_db_kind(db) == HV_DB_PG) {
        /* Publishers of all processes take turns until their commit, so that event ids
         * become visible in increasing order: a durable subscriber's cursor (the last id
         * it acknowledged) then never passes an id another process commits later. */
        rc = hv_db_exec(db, "SELECT pg_advisory_xact_lock(7306151)");
        if (rc != HV_OK) return rc;
    }
    /* The new id: RETURNING on PostgreSQL, the last insert rowid on SQLite (where RETURNING
     * costs an ephemeral table per statement). */
    rc = hv_db_prepare(db,
                       hv_db_kind(db) == HV_DB_PG ? "INSERT INTO chan_events (type, payload, created_at, delivered)"
                                                    " VALUES ($1, $2, $3, $4) RETURNING id"
                                                  : "INSERT INTO chan_events (type, payload, created_at, delivered)"
                                                    " VALUES ($1, $2, $3, $4)",
                       &st);
    if (rc != HV_OK) return rc;
    hv_db_bind_text(st, 1, d->type, strlen(d->type));
    hv_db_bind_blob(st, 2, d->payload, d->ev.len);
    hv_db_bind_int64(st, 3, (int64_t)d->ev.created_at);
    hv_db_bind_int64(st, 4, d->premarked);
    rc = hv_db_step(st);
    if (rc == HV_DB_ROW) {
        d->ev.id = hv_db_column_int64(st, 0);
        rc = HV_OK;
    } else if (rc == HV_OK && hv_db_kind(db) == HV_DB_SQLITE) {
        d->ev.id = hv_db_last_insert_rowid(db);
    } else if (rc == HV_OK) {
        rc = HV_EDB;
    }
    hv_db_done(st);
    return rc;
}

static void publish_done(int status, void *arg) {
    delivery_t *d = arg;
    if (d->done != NULL) d->done(status, status == HV_OK ? d->ev.id : 0, d->ud);
    if (status != HV_OK) {
        delivery_free(d);
        return;
    }
    d->bus->published++;
    dsub_kick_all(d->bus);
    offer(d);
}

int hv_event_publish(hv_engine_t *e, const char *type, const char *payload, size_t len,
                     hv_event_published_cb done, void *ud) {
    hv__bus_t *b = bus_of(e);
    delivery_t *d;
    int rc;
    if (b == NULL || b->rt->storage == NULL) return HV_ENOTSUP;
    if (type == NULL || type[0] == '\0' || strlen(type) > 128) return HV_EINVAL;
    d = delivery_new(b, 0, type, payload ? payload : "{}", payload ? len : 2, hv_now_ms());
    if (d == NULL) return HV_ENOMEM;
    d->done = done;
    d->ud = ud;
    /* With no in-process subscriber to offer it to, the event is stored as delivered at
     * once, instead of an UPDATE in a second storage job after the offer to nobody. Durable
     * subscribers read by their cursors, whatever the flag. A subscriber added before the
     * publication's commit is still offered the event, but a crash before its
     * acknowledgement does not offer it again at the next start. */
    d->premarked = 1;
    for (hv_event_sub_t *s = b->subs; s != NULL && d->premarked; s = s->next)
        if (matches(s->pattern, type)) d->premarked = 0;
    /* publish_job may run twice (hv_storage_submit_rerun): it only inserts the row and sets
     * the id it got, both done again by a second run. Without its savepoint, an event (one
     * per created or updated Patient) costs the channels store's thread less. */
    rc = hv_storage_submit_rerun(b->rt->storage, publish_job, publish_done, d);
    if (rc != HV_OK) delivery_free(d);
    return rc;
}

/* ---- replay at start ---- */

typedef struct replay {
    hv__bus_t *bus;
    delivery_t **ds;
    size_t n;
} replay_t;

static int replay_job(hv_db_t *db, void *arg) {
    replay_t *r = arg;
    hv_db_stmt_t *st = NULL;
    int rc = hv_db_prepare(db,
                           "SELECT id, type, payload, created_at FROM chan_events"
                           " WHERE delivered = 0 ORDER BY id LIMIT 10000",
                           &st);
    if (rc != HV_OK) return rc;
    r->ds = hv_calloc(10000, sizeof(*r->ds));
    if (r->ds == NULL) {
        hv_db_done(st);
        return HV_ENOMEM;
    }
    while ((rc = hv_db_step(st)) == HV_DB_ROW) {
        size_t n = 0;
        const char *p = hv_db_column_blob(st, 2, &n);
        delivery_t *d = delivery_new(r->bus, hv_db_column_int64(st, 0),
                                     hv_db_column_text(st, 1, NULL), p ? p : "", n,
                                     (uint64_t)hv_db_column_int64(st, 3));
        if (d == NULL) {
            rc = HV_ENOMEM;
            break;
        }
        r->ds[r->n++] = d;
    }
    hv_db_done(st);
    return rc < 0 ? rc : HV_OK;
}

static void replay_done(int status, void *arg) {
    replay_t *r = arg;
    size_t i;
    for (i = 0; i < r->n; i++) {
        if (status == HV_OK) offer(r->ds[i]);
        else delivery_free(r->ds[i]);
    }
    if (r->n > 0) hv_log(HV_LOG_INFO, "event.replayed", "%zu undelivered events offered again", r->n);
    hv_free(r->ds);
    hv_free(r);
}

int hv__bus_new(hv__chans_t *rt) {
    rt->bus = hv_calloc(1, sizeof(*rt->bus));
    if (rt->bus == NULL) return HV_ENOMEM;
    rt->bus->rt = rt;
    return HV_OK;
}

static void on_prune_tick(uv_timer_t *t);

void hv__bus_replay(hv__chans_t *rt) {
    replay_t *r = hv_calloc(1, sizeof(*r));
    hv__bus_t *b = rt->bus;
    uint64_t every =
        hv_config_duration_ms(hv_engine_config(rt->engine), "channels.event_prune_interval");
    if (every > 0 && !b->prune_open && !rt->stopped) {
        uv_timer_init(hv_engine_loop(rt->engine), &b->prune);
        b->prune.data = b;
        b->prune_open = 1;
        uv_timer_start(&b->prune, on_prune_tick, every, every);
        uv_unref((uv_handle_t *)&b->prune);
    }
    if (r == NULL) return;
    r->bus = rt->bus;
    if (hv_storage_submit(rt->storage, replay_job, replay_done, r) != HV_OK) hv_free(r);
}

/* ---- pruning (see the top of the file) ---- */

#define EVENT_PRUNE_CHUNK 10000
#define LEASE_PRUNE_AFTER_MS 3600000

typedef struct ev_prune {
    hv__bus_t *bus;
    int64_t deleted;
} ev_prune_t;

static int prune_job(hv_db_t *db, void *arg) {
    ev_prune_t *p = arg;
    hv_db_stmt_t *st = NULL;
    int rc = hv_db_prepare(
        db,
        "DELETE FROM chan_events WHERE delivered = 1"
        " AND id < (SELECT MAX(id) FROM chan_events)"
        " AND id <= COALESCE((SELECT MIN(last_id) FROM chan_event_cursors),"
        " (SELECT MAX(id) FROM chan_events))"
        " AND id <= (SELECT MIN(id) FROM chan_events) + $1",
        &st);
    if (rc != HV_OK) return rc;
    hv_db_bind_int64(st, 1, EVENT_PRUNE_CHUNK);
    rc = hv_db_step(st);
    hv_db_done(st);
    if (rc < 0) return rc;
    p->deleted = hv_db_changes(db);
    rc = hv_db_prepare(db, "DELETE FROM chan_leases WHERE expires_at < $1", &st);
    if (rc != HV_OK) return rc;
    hv_db_bind_int64(st, 1, (int64_t)hv_now_ms() - LEASE_PRUNE_AFTER_MS);
    rc = hv_db_step(st);
    hv_db_done(st);
    return rc < 0 ? rc : HV_OK;
}

static void prune_start(hv__bus_t *b);

static void prune_done(int status, void *arg) {
    ev_prune_t *p = arg;
    hv__bus_t *b = p->bus;
    int more = status == HV_OK && p->deleted > EVENT_PRUNE_CHUNK / 2;
    b->prune_busy = 0;
    if (status != HV_OK) {
        hv_log(HV_LOG_WARN, "event.prune_failed", "%s", hv_strerror(status));
    } else if (p->deleted > 0) {
        b->pruned += (uint64_t)p->deleted;
        hv_log(HV_LOG_DEBUG, "event.pruned", "%lld events deleted", (long long)p->deleted);
    }
    hv_free(p);
    if (more && !b->rt->stopped) prune_start(b); /* a backlog: the next chunk at once */
}

static void prune_start(hv__bus_t *b) {
    ev_prune_t *p;
    if (b->prune_busy || b->rt->storage == NULL || b->rt->stopped) return;
    p = hv_calloc(1, sizeof(*p));
    if (p == NULL) return;
    p->bus = b;
    b->prune_busy = 1;
    if (hv_storage_submit(b->rt->storage, prune_job, prune_done, p) != HV_OK) {
        b->prune_busy = 0; /* the store is busy: the next tick */
        hv_free(p);
    }
}

static void on_prune_tick(uv_timer_t *t) { prune_start(t->data); }

static void on_poll_closed(uv_handle_t *h) { (void)h; }

void hv__bus_stop(hv__chans_t *rt) {
    hv__bus_t *b = rt->bus;
    if (b == NULL) return;
    if (b->prune_open) uv_close((uv_handle_t *)&b->prune, on_poll_closed);
    b->prune_open = 0;
    if (!b->poll_open) return;
    uv_close((uv_handle_t *)&b->poll, on_poll_closed);
    b->poll_open = 0;
}

void hv__bus_free(hv__chans_t *rt) {
    hv__bus_t *b = rt->bus;
    if (b == NULL) return;
    while (b->dsubs != NULL) {
        hv_event_sub_t *s = b->dsubs;
        b->dsubs = s->next;
        dsub_free(s);
    }
    while (b->subs != NULL) {
        hv_event_sub_t *s = b->subs;
        b->subs = s->next;
        hv_free(s->pattern);
        hv_free(s);
    }
    hv_free(b);
    rt->bus = NULL;
}

/* ---- the outbox of a module's own database ---- */

int hv_event_outbox_migrate(hv_db_t *db, hv_error_t *err) {
    static const char *const sqlite[] = {
        "CREATE TABLE hv_outbox (id INTEGER PRIMARY KEY, type TEXT NOT NULL,"
        " payload BLOB NOT NULL, created_at INTEGER NOT NULL);",
        NULL,
    };
    static const char *const pg[] = {
        "CREATE TABLE hv_outbox (id BIGSERIAL PRIMARY KEY, type TEXT NOT NULL,"
        " payload BYTEA NOT NULL, created_at BIGINT NOT NULL);",
        NULL,
    };
    return hv_db_migrate(db, "hv_outbox", hv_db_kind(db) == HV_DB_PG ? pg : sqlite, err);
}

int hv_event_outbox_add(hv_db_t *db, const char *type, const char *payload, size_t len) {
    hv_db_stmt_t *st = NULL;
    int rc = hv_db_prepare(db, "INSERT INTO hv_outbox (type, payload, created_at) VALUES ($1, $2, $3)",
                           &st);
    if (rc != HV_OK) return rc;
    hv_db_bind_text(st, 1, type, strlen(type));
    hv_db_bind_blob(st, 2, payload ? payload : "{}", payload ? len : 2);
    hv_db_bind_int64(st, 3, (int64_t)hv_now_ms());
    rc = hv_db_step(st);
    hv_db_done(st);
    return rc < 0 ? rc : HV_OK;
}

typedef struct drain {
    hv_engine_t *engine;
    hv_storage_t *storage;
    struct drow {
        int64_t id;
        char *type;
        char *payload;
        size_t len;
    } *rows;
    size_t n, published;
    int failed;
} drain_t;

static int drain_start(hv_engine_t *e, hv_storage_t *storage);

static drain_slot_t *drain_slot(hv__bus_t *b, hv_storage_t *storage, int add) {
    size_t i;
    for (i = 0; i < b->ndrains; i++)
        if (b->drains[i].storage == storage) return &b->drains[i];
    if (!add || b->ndrains >= HV_ARRAY_LEN(b->drains)) return NULL;
    b->drains[b->ndrains].storage = storage;
    b->drains[b->ndrains].running = b->drains[b->ndrains].again = 0;
    return &b->drains[b->ndrains++];
}

/* Ends a drain: another one runs when there are more rows or one was asked for meanwhile. */
static void drain_end(drain_t *d, int more) {
    hv_engine_t *e = d->engine;
    hv_storage_t *storage = d->storage;
    hv__bus_t *b = bus_of(e);
    drain_slot_t *slot = b != NULL ? drain_slot(b, storage, 0) : NULL;
    size_t i;
    for (i = 0; i < d->n; i++) {
        hv_free(d->rows[i].type);
        hv_free(d->rows[i].payload);
    }
    hv_free(d->rows);
    hv_free(d);
    if (slot == NULL) return;
    if (more || slot->again) {
        slot->again = 0;
        if (drain_start(e, storage) == HV_OK) return;
    }
    slot->running = 0;
}

static int drain_read_job(hv_db_t *db, void *arg) {
    drain_t *d = arg;
    hv_db_stmt_t *st = NULL;
    int rc = hv_db_prepare(db, "SELECT id, type, payload FROM hv_outbox ORDER BY id LIMIT 1000", &st);
    if (rc != HV_OK) return rc;
    /* A batch that failed runs its jobs again: start from nothing. */
    while (d->n > 0) {
        d->n--;
        hv_free(d->rows[d->n].type);
        hv_free(d->rows[d->n].payload);
    }
    if (d->rows == NULL) d->rows = hv_calloc(1000, sizeof(*d->rows));
    if (d->rows == NULL) {
        hv_db_done(st);
        return HV_ENOMEM;
    }
    while ((rc = hv_db_step(st)) == HV_DB_ROW) {
        size_t n = 0;
        const char *p = hv_db_column_blob(st, 2, &n);
        struct drow *r = &d->rows[d->n];
        r->id = hv_db_column_int64(st, 0);
        r->type = hv_strdup(hv_db_column_text(st, 1, NULL));
        r->payload = hv_strndup(p ? p : "", n);
        r->len = n;
        if (r->type == NULL || r->payload == NULL) {
            hv_free(r->type);
            hv_free(r->payload);
            rc = HV_ENOMEM;
            break;
        }
        d->n++;
    }
    hv_db_done(st);
    return rc < 0 ? rc : HV_OK;
}

static int drain_delete_job(hv_db_t *db, void *arg) {
    drain_t *d = arg;
    hv_db_stmt_t *st = NULL;
    size_t i;
    int rc = HV_OK;
    for (i = 0; i < d->n && rc == HV_OK; i++) {
        rc = hv_db_prepare(db, "DELETE FROM hv_outbox WHERE id = $1", &st);
        if (rc != HV_OK) break;
        hv_db_bind_int64(st, 1, d->rows[i].id);
        rc = hv_db_step(st);
        hv_db_done(st);
        rc = rc < 0 ? rc : HV_OK;
    }
    return rc;
}

static void drain_deleted(int status, void *arg) {
    drain_t *d = arg;
    drain_end(d, status == HV_OK && d->n == 1000);
}

static void drain_published(int status, int64_t id, void *ud) {
    drain_t *d = ud;
    (void)id;
    if (status != HV_OK) d->failed = 1;
    if (++d->published < d->n) return;
    /* Every row is durable on the bus (or not: then all stay for the next drain). */
    if (d->failed || hv_storage_submit_rerun(d->storage, drain_delete_job, drain_deleted, d) != HV_OK)
        drain_end(d, 0);
}

static void drain_read(int status, void *arg) {
    drain_t *d = arg;
    size_t i, submitted = 0;
    if (status != HV_OK || d->n == 0) {
        drain_end(d, 0);
        return;
    }
    for (i = 0; i < d->n; i++) {
        if (hv_event_publish(d->engine, d->rows[i].type, d->rows[i].payload, d->rows[i].len,
                             drain_published, d) != HV_OK) {
            d->failed = 1;
            break;
        }
        submitted++;
    }
    if (submitted < d->n) {
        d->published += d->n - submitted; /* those never get a callback */
        if (submitted == 0) drain_end(d, 0);
    }
}

static int drain_start(hv_engine_t *e, hv_storage_t *storage) {
    drain_t *d = hv_calloc(1, sizeof(*d));
    int rc;
    if (d == NULL) return HV_ENOMEM;
    d->engine = e;
    d->storage = storage;
    /* Both of a drain's jobs may run twice (the read starts from nothing, the delete names
     * its rows): without a savepoint of their own, the writes batched after them (each
     * commit drains) run bare too, instead of each paying a savepoint. */
    rc = hv_storage_submit_rerun(storage, drain_read_job, drain_read, d);
    if (rc != HV_OK) hv_free(d);
    return rc;
}

int hv_event_outbox_drain(hv_engine_t *e, hv_storage_t *storage) {
    hv__bus_t *b = bus_of(e);
    drain_slot_t *slot;
    int rc;
    if (b == NULL) return HV_ENOTSUP;
    slot = drain_slot(b, storage, 1);
    if (slot != NULL && slot->running) {
        slot->again = 1;
        return HV_OK;
    }
    rc = drain_start(e, storage);
    if (rc == HV_OK && slot != NULL) slot->running = 1;
    return rc;
}

/* ---- channel source and destination ---- */

static int type_check(struct json_object *conf, hv_error_t *err, const char *what) {
    json_object_object_foreach(conf, k, v) {
        if (strcmp(k, "event_type") == 0 && json_object_is_type(v, json_type_string) &&
            json_object_get_string_len(v) > 0 && json_object_get_string_len(v) <= 128)
            continue;
        hv_error_set(err, HV_ECONFIG, k,
                     strcmp(k, "event_type") == 0
                         ? "\"event_type\" is an event type such as \"patient.created\""
                         : "unknown key in an event %s (known: event_type)",
                     what);
        return HV_ECONFIG;
    }
    if (hv_json_get_str(conf, "event_type") == NULL) {
        hv_error_set(err, HV_ECONFIG, NULL, "an event %s needs \"event_type\"", what);
        return HV_ECONFIG;
    }
    return HV_OK;
}

static int esrc_check(struct json_object *conf, hv_error_t *err) {
    return type_check(conf, err, "source");
}
static int edst_check(struct json_object *conf, hv_error_t *err) {
    return type_check(conf, err, "destination");
}

typedef struct esrc {
    hv_channel_t *ch;
    hv_event_sub_t *sub;
} esrc_t;

typedef struct eack {
    hv_event_ack_cb ack;
    void *token;
} eack_t;

static void esrc_stored(int status, int64_t id, void *ud) {
    eack_t *a = ud;
    /* Stored but not (yet) delivered — response after-destinations — is still stored:
     * offering the event again would only find it by its key. */
    if (id > 0 && (status == HV_ETIMEDOUT || status == HV_EPROTO || status == HV_EINVAL))
        status = HV_OK;
    a->ack(a->token, status);
    hv_free(a);
}

static void esrc_on_event(void *ud, const hv_event_t *ev, hv_event_ack_cb ack, void *token) {
    esrc_t *s = ud;
    eack_t *a = hv_calloc(1, sizeof(*a));
    int rc;
    if (a == NULL) {
        ack(token, HV_ENOMEM);
        return;
    }
    a->ack = ack;
    a->token = token;
    {
        /* The event id is the source key: an event offered again (after a restart, before
         * its acknowledgement was recorded) is found in the store, not stored twice. */
        char key[40];
        snprintf(key, sizeof(key), "event:%lld", (long long)ev->id);
        rc = hv_channel_receive_keyed(s->ch, ev->payload, ev->len, "application/json", key, 0,
                                      esrc_stored, a);
    }
    if (rc != HV_OK) {
        hv_free(a);
        ack(token, rc);
    }
}

static int esrc_start(hv_channel_t *ch, struct json_object *conf, void **state, hv_error_t *err) {
    esrc_t *s = hv_calloc(1, sizeof(*s));
    int rc;
    if (s == NULL) return HV_ENOMEM;
    s->ch = ch;
    {
        /* One cursor per channel: each event enters the channel once per cluster. */
        char name[128];
        snprintf(name, sizeof(name), "channel:%s", hv_channel_id(ch));
        rc = hv_event_subscribe_durable(hv_channel_engine(ch), name,
                                        hv_json_get_str(conf, "event_type"), esrc_on_event, s,
                                        &s->sub);
    }
    if (rc != HV_OK) {
        hv_error_set(err, rc, NULL, "event source: the event bus is not running");
        hv_free(s);
        return rc;
    }
    *state = s;
    return HV_OK;
}

static void esrc_stop(void *state) {
    esrc_t *s = state;
    hv_event_unsubscribe(hv_channel_engine(s->ch), s->sub);
    hv_free(s);
}

const hv_channel_source_t hv__source_event = {"event", esrc_check, esrc_start, esrc_stop};

typedef struct edst {
    hv_engine_t *engine;
    char *type;
} edst_t;

typedef struct esend {
    hv_channel_sent_cb done;
    void *token;
} esend_t;

static int edst_open(hv_engine_t *e, const char *channel, struct json_object *conf, void **state,
                     hv_error_t *err) {
    edst_t *d = hv_calloc(1, sizeof(*d));
    (void)channel;
    (void)err;
    if (d == NULL) return HV_ENOMEM;
    d->engine = e;
    d->type = hv_strdup(hv_json_get_str(conf, "event_type"));
    if (d->type == NULL) {
        hv_free(d);
        return HV_ENOMEM;
    }
    *state = d;
    return HV_OK;
}

static void edst_published(int status, int64_t id, void *ud) {
    esend_t *s = ud;
    char detail[64];
    snprintf(detail, sizeof(detail), "event %lld", (long long)id);
    s->done(s->token, status == HV_OK ? HV_CHANNEL_DELIVERED : HV_CHANNEL_RETRY,
            status == HV_OK ? detail : hv_strerror(status));
    hv_free(s);
}

static int edst_send(void *state, const hv_channel_msg_t *m, hv_channel_sent_cb done, void *token) {
    edst_t *d = state;
    esend_t *s = hv_calloc(1, sizeof(*s));
    int rc;
    if (s == NULL) return HV_ENOMEM;
    s->done = done;
    s->token = token;
    rc = hv_event_publish(d->engine, d->type, m->content, m->len, edst_published, s);
    if (rc != HV_OK) hv_free(s);
    return rc;
}

static void edst_close(void *state) {
    edst_t *d = state;
    if (d == NULL) return;
    hv_free(d->type);
    hv_free(d);
}

const hv_channel_dest_t hv__dest_event = {"event", edst_check, edst_open, edst_send, edst_close};
