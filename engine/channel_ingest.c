/*
 * channel_ingest.c — how a message enters a channel: the store's schema, the
 * filter and steps run on the loop thread, the storage job that stores the
 * message, its parts and its queue rows in one transaction, and the answer to
 * the source (after the commit, or after the destinations).
 *
 * A message flows: source → hv_channel_receive → filter and steps (loop thread,
 * in the message's arena) → one storage job that inserts the message and one
 * queue row per destination whose `when` holds, in the same transaction → the
 * source is answered (after the commit) → each destination's worker
 * (channel.c) delivers its queue in id order.
 *
 * Exactly once into the store: a source that can see the same message twice
 * (a file re-read after a crash, an HL7 v2 resend) passes a source key; the
 * storage job looks the key up in the same transaction as the insert, and a
 * message whose key is already stored (within the source's window) is a
 * duplicate: nothing is stored and the source is answered with the first id.
 *
 * split-bundle (channel_split.c): the message is stored as received with status
 * "split" and no queue rows; each part is a row of its own (parent_id = the
 * message's id) that runs the steps after the split and has its own queue rows,
 * all in the message's transaction.
 *
 * Response "after-destinations": once stored, the source's callback waits until
 * the named destinations have a committed final outcome for the message (or
 * each of its parts), or until the channel's response_timeout_ms.
 */
#include "config.h"
#include "engine/channel_rt.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ------------------------------------------------------------------------- */
/* Store                                                                     */
/* ------------------------------------------------------------------------- */

const char *const hv__chan_migrations_sqlite[] = {
    "CREATE TABLE chan_messages ("
    " id INTEGER PRIMARY KEY,"
    " channel TEXT NOT NULL,"
    " received_at INTEGER NOT NULL,"
    " content_type TEXT NOT NULL,"
    " content BLOB,"
    " transformed BLOB,"
    " size INTEGER NOT NULL,"
    " status TEXT NOT NULL,"
    " error TEXT,"
    " filtered_by TEXT);"
    "CREATE INDEX chan_messages_channel ON chan_messages (channel, id);"
    "CREATE INDEX chan_messages_status ON chan_messages (channel, status, id);"
    "CREATE TABLE chan_queue ("
    " id INTEGER PRIMARY KEY,"
    " channel TEXT NOT NULL,"
    " dest TEXT NOT NULL,"
    " message_id INTEGER NOT NULL,"
    " state TEXT NOT NULL,"
    " attempts INTEGER NOT NULL DEFAULT 0,"
    " next_at INTEGER NOT NULL DEFAULT 0,"
    " last_error TEXT,"
    " updated_at INTEGER NOT NULL);"
    "CREATE INDEX chan_queue_pending ON chan_queue (channel, dest, state, id);"
    "CREATE INDEX chan_queue_message ON chan_queue (message_id);"
    "CREATE VIRTUAL TABLE chan_fts USING fts5(content, content='chan_messages', content_rowid='id');",
    "CREATE TABLE chan_events (id INTEGER PRIMARY KEY, type TEXT NOT NULL, payload BLOB NOT NULL,"
    " created_at INTEGER NOT NULL, delivered INTEGER NOT NULL DEFAULT 0);"
    "CREATE INDEX chan_events_pending ON chan_events (delivered, id);",
    "ALTER TABLE chan_queue ADD COLUMN lane INTEGER NOT NULL DEFAULT 0;"
    "CREATE INDEX chan_queue_lane ON chan_queue (channel, dest, lane, state, id);",
    "ALTER TABLE chan_messages ADD COLUMN source_key TEXT;"
    "ALTER TABLE chan_messages ADD COLUMN parent_id INTEGER;"
    "CREATE INDEX chan_messages_key ON chan_messages (channel, source_key) WHERE source_key IS NOT NULL;"
    "CREATE INDEX chan_messages_parent ON chan_messages (parent_id) WHERE parent_id IS NOT NULL;",
    "CREATE TABLE chan_leases (channel TEXT NOT NULL, dest TEXT NOT NULL, lane INTEGER NOT NULL,"
    " owner TEXT NOT NULL, expires_at BIGINT NOT NULL, PRIMARY KEY (channel, dest, lane));",
    "ALTER TABLE chan_messages ADD COLUMN content_file TEXT;",
    "ALTER TABLE chan_messages ADD COLUMN reply BLOB;",
    "CREATE TABLE chan_event_cursors (name TEXT PRIMARY KEY, last_id INTEGER NOT NULL);",
    "CREATE INDEX chan_messages_file ON chan_messages (content_file) WHERE content_file IS NOT NULL;",
    /* The steps' OperationOutcomes (hv_channel_msg_t.outcome), a JSON array or NULL. */
    "ALTER TABLE chan_messages ADD COLUMN outcome TEXT;",
    /* Full-text indexing is deferred (hv__chan_fts_catch_up): chan_fts holds every
     * message with an id up to last_id. Existing stores were indexed at write time. */
    "CREATE TABLE chan_fts_mark (one INTEGER PRIMARY KEY CHECK (one = 1), last_id INTEGER NOT NULL);"
    "INSERT INTO chan_fts_mark VALUES (1, (SELECT COALESCE(MAX(id), 0) FROM chan_messages));",
    /* Cursor queues (channel.c): route lists the cursor destinations a message was
     * routed to (",a,b,"; NULL: none, as for every message stored before); each
     * cursor destination's position is the id of the last message it is done with.
     * Queue rows of the old kind stay and are delivered first. */
    "ALTER TABLE chan_messages ADD COLUMN route TEXT;"
    "CREATE TABLE chan_cursors (channel TEXT NOT NULL, dest TEXT NOT NULL,"
    " last_id INTEGER NOT NULL, sent INTEGER NOT NULL DEFAULT 0, PRIMARY KEY (channel, dest));",
    /* Derived statuses (channel_rt.h, HV__CHAN_STATUS_SQL): a queued message that a cursor
     * reads is stored as "cursor"; its deliveries no longer update it. */
    "UPDATE chan_messages SET status = 'cursor' WHERE status = 'queued' AND route IS NOT NULL;",
    NULL,
};

const char *const hv__chan_migrations_pg[] = {
    "CREATE TABLE chan_messages ("
    " id BIGSERIAL PRIMARY KEY,"
    " channel TEXT NOT NULL,"
    " received_at BIGINT NOT NULL,"
    " content_type TEXT NOT NULL,"
    " content BYTEA,"
    " transformed BYTEA,"
    " size BIGINT NOT NULL,"
    " status TEXT NOT NULL,"
    " error TEXT,"
    " filtered_by TEXT);"
    "CREATE INDEX chan_messages_channel ON chan_messages (channel, id);"
    "CREATE INDEX chan_messages_status ON chan_messages (channel, status, id);"
    "CREATE TABLE chan_queue ("
    " id BIGSERIAL PRIMARY KEY,"
    " channel TEXT NOT NULL,"
    " dest TEXT NOT NULL,"
    " message_id BIGINT NOT NULL,"
    " state TEXT NOT NULL,"
    " attempts INTEGER NOT NULL DEFAULT 0,"
    " next_at BIGINT NOT NULL DEFAULT 0,"
    " last_error TEXT,"
    " updated_at BIGINT NOT NULL);"
    "CREATE INDEX chan_queue_pending ON chan_queue (channel, dest, state, id);"
    "CREATE INDEX chan_queue_message ON chan_queue (message_id);",
    "CREATE TABLE chan_events (id BIGSERIAL PRIMARY KEY, type TEXT NOT NULL, payload BYTEA NOT NULL,"
    " created_at BIGINT NOT NULL, delivered INTEGER NOT NULL DEFAULT 0);"
    "CREATE INDEX chan_events_pending ON chan_events (delivered, id);",
    "ALTER TABLE chan_queue ADD COLUMN lane INTEGER NOT NULL DEFAULT 0;"
    "CREATE INDEX chan_queue_lane ON chan_queue (channel, dest, lane, state, id);",
    "ALTER TABLE chan_messages ADD COLUMN source_key TEXT;"
    "ALTER TABLE chan_messages ADD COLUMN parent_id BIGINT;"
    "CREATE INDEX chan_messages_key ON chan_messages (channel, source_key) WHERE source_key IS NOT NULL;"
    "CREATE INDEX chan_messages_parent ON chan_messages (parent_id) WHERE parent_id IS NOT NULL;",
    "CREATE TABLE chan_leases (channel TEXT NOT NULL, dest TEXT NOT NULL, lane INTEGER NOT NULL,"
    " owner TEXT NOT NULL, expires_at BIGINT NOT NULL, PRIMARY KEY (channel, dest, lane));",
    "ALTER TABLE chan_messages ADD COLUMN content_file TEXT;",
    "ALTER TABLE chan_messages ADD COLUMN reply BYTEA;",
    "CREATE TABLE chan_event_cursors (name TEXT PRIMARY KEY, last_id BIGINT NOT NULL);",
    "CREATE INDEX chan_messages_file ON chan_messages (content_file) WHERE content_file IS NOT NULL;",
    /* The steps' OperationOutcomes (hv_channel_msg_t.outcome), a JSON array or NULL. */
    "ALTER TABLE chan_messages ADD COLUMN outcome TEXT;",
    /* Kept in step with the SQLite list; PostgreSQL searches content directly (no FTS). */
    "CREATE TABLE chan_fts_mark (one INTEGER PRIMARY KEY, last_id BIGINT NOT NULL);",
    /* Kept in step with the SQLite list (a shared store uses queue rows: see channel.c). */
    "ALTER TABLE chan_messages ADD COLUMN route TEXT;"
    "CREATE TABLE chan_cursors (channel TEXT NOT NULL, dest TEXT NOT NULL,"
    " last_id BIGINT NOT NULL, sent BIGINT NOT NULL DEFAULT 0, PRIMARY KEY (channel, dest));",
    /* Kept in step with the SQLite list (no row has a route here: nothing changes). */
    "UPDATE chan_messages SET status = 'cursor' WHERE status = 'queued' AND route IS NOT NULL;",
    NULL,
};

static int bind_str(hv_db_stmt_t *st, int i, const char *s) {
    if (s == NULL) return hv_db_bind_null(st, i);
    return hv_db_bind_text(st, i, s, strlen(s));
}

/* ------------------------------------------------------------------------- */
/* Storage thread                                                            */
/* ------------------------------------------------------------------------- */

/* Finds a stored message of the channel with the same source key, received at or
 * after `since`: *id > 0 when there is one. */
static int find_duplicate(hv_db_t *db, const hv__ingest_t *in, int64_t *id) {
    hv_db_stmt_t *st = NULL;
    uint64_t since = 0;
    int rc;
    *id = 0;
    if (in->dedup_window_ms > 0 && in->msg.received_at > in->dedup_window_ms)
        since = in->msg.received_at - in->dedup_window_ms;
    rc = hv_db_prepare(db,
                       "SELECT id, reply FROM chan_messages WHERE channel = $1 AND source_key = $2"
                       " AND received_at >= $3 ORDER BY id DESC LIMIT 1",
                       &st);
    if (rc != HV_OK) return rc;
    bind_str(st, 1, in->ch->conf->id);
    bind_str(st, 2, in->source_key);
    hv_db_bind_int64(st, 3, (int64_t)since);
    rc = hv_db_step(st);
    if (rc == HV_DB_ROW) {
        size_t n = 0;
        const void *r = hv_db_column_blob(st, 1, &n);
        *id = hv_db_column_int64(st, 0);
        rc = HV_OK;
        /* The first copy's answer, for the source to give the resend unchanged (reset
         * first: a batch that failed runs its jobs again). */
        if (in->orig_reply != NULL) hv_buf_reset(in->orig_reply);
        if (in->orig_reply != NULL && r != NULL && n > 0) rc = hv_buf_append(in->orig_reply, r, n);
    }
    hv_db_done(st);
    return rc < 0 ? rc : HV_OK;
}

/* Runs one of the statements below: $1 channel, $2 destination i's name, $3 the unit's
 * id, $4 now, and with_lane: $5 the unit's lane for destination i. */
static int queue_row_exec(hv_db_t *db, const char *sql, const hv__chan_t *ch, const hv__part_t *p,
                          size_t i, uint64_t now, int with_lane) {
    hv_db_stmt_t *st = NULL;
    int rc = hv_db_prepare(db, sql, &st);
    if (rc != HV_OK) return rc;
    bind_str(st, 1, ch->conf->id);
    bind_str(st, 2, ch->conf->dests[i].name);
    hv_db_bind_int64(st, 3, p->id);
    hv_db_bind_int64(st, 4, (int64_t)now);
    if (with_lane) hv_db_bind_int64(st, 5, p->dest_lane[i]);
    rc = hv_db_step(st);
    hv_db_done(st);
    return rc < 0 ? rc : HV_OK;
}

/*
 * Reprocessing a unit a cursor passed without a row (a clean delivery): first a row
 * that records that delivery ('sent', one attempt), which the cursor's count of
 * deliveries gives up, so that the message shows both deliveries as a row queue's does.
 */
static int cursor_history(hv_db_t *db, const hv__chan_t *ch, const hv__part_t *p, size_t i,
                          uint64_t now) {
    int rc = queue_row_exec(db,
                            "INSERT INTO chan_queue (channel, dest, message_id, state, attempts,"
                            " updated_at, lane) SELECT $1, $2, $3, 'sent', 1, $4, 0 WHERE EXISTS"
                            " (SELECT 1 FROM chan_cursors WHERE channel = $1 AND dest = $2 AND"
                            " last_id >= $3) AND NOT EXISTS (SELECT 1 FROM chan_queue WHERE"
                            " message_id = $3 AND dest = $2)",
                            ch, p, i, now, 0);
    hv_db_stmt_t *st = NULL;
    if (rc != HV_OK || hv_db_changes(db) == 0) return rc;
    rc = hv_db_prepare(db,
                       "UPDATE chan_cursors SET sent = sent - 1 WHERE channel = $1 AND dest = $2"
                       " AND sent > 0",
                       &st);
    if (rc != HV_OK) return rc;
    bind_str(st, 1, ch->conf->id);
    bind_str(st, 2, ch->conf->dests[i].name);
    rc = hv_db_step(st);
    hv_db_done(st);
    return rc < 0 ? rc : HV_OK;
}

/*
 * Inserts the queue rows of one stored unit: one per destination with a row queue.
 * A destination with a cursor queue needs none — it reads the unit through its
 * route — except when the unit is reprocessed after the cursor passed it: then a
 * row sends it again (a cursor that has not reached it yet sends the new version).
 */
static int insert_queue(hv_db_t *db, const hv__chan_t *ch, const hv__part_t *p, uint64_t now,
                        int reprocess) {
    size_t i;
    int rc;
    for (i = 0; i < ch->conf->ndests; i++) {
        int cursor = hv__dest_uses_cursor(ch->rt, &ch->conf->dests[i]);
        if (!p->dest_on[i] || (cursor && !reprocess)) continue;
        if (cursor && (rc = cursor_history(db, ch, p, i, now)) != HV_OK) return rc;
        rc = queue_row_exec(db,
                            cursor ? "INSERT INTO chan_queue (channel, dest, message_id, state,"
                                     " updated_at, lane) SELECT $1, $2, $3, 'queued', $4, $5"
                                     " WHERE EXISTS (SELECT 1 FROM chan_cursors WHERE channel = $1"
                                     " AND dest = $2 AND last_id >= $3)"
                                   : "INSERT INTO chan_queue (channel, dest, message_id, state,"
                                     " updated_at, lane) VALUES ($1, $2, $3, 'queued', $4, $5)",
                            ch, p, i, now, 1);
        if (rc != HV_OK) return rc;
    }
    return HV_OK;
}

/*
 * The route of a unit (chan_messages.route): ",a,b," — the destinations with a
 * cursor queue it goes to — in buf (cap bytes), or NULL when none.
 */
static const char *route_of(const hv__chan_t *ch, const hv__part_t *p, char *buf, size_t cap) {
    size_t i, n = 0;
    for (i = 0; i < ch->conf->ndests; i++) {
        const char *name = ch->conf->dests[i].name;
        size_t len = strlen(name);
        if (!p->dest_on[i] || !hv__dest_uses_cursor(ch->rt, &ch->conf->dests[i])) continue;
        if (n + len + 3 > cap) return NULL; /* not reached: names are capped (channel_conf.c) */
        if (n == 0) buf[n++] = ',';
        memcpy(buf + n, name, len);
        n += len;
        buf[n++] = ',';
    }
    buf[n] = '\0';
    return n > 0 ? buf : NULL;
}

/*
 * The status a unit is stored with: "cursor" for a queued unit that a cursor
 * destination reads (route non-NULL): its deliveries never update the row, what it
 * shows is derived (HV__CHAN_STATUS_SQL in channel_rt.h); else the unit's status.
 */
static const char *stored_status(const hv__part_t *p, const char *route) {
    return route != NULL && strcmp(p->status, "queued") == 0 ? "cursor" : p->status;
}

/* Inserts one new row of chan_messages (a message, or a part when parent > 0). */
static int insert_message(hv_db_t *db, hv__ingest_t *in, hv__part_t *p, int64_t parent) {
    hv__chan_t *ch = in->ch;
    hv_db_stmt_t *st = NULL;
    int rc = hv_db_prepare(db,
                           "INSERT INTO chan_messages (status, error, filtered_by, transformed,"
                           " channel, received_at, content_type, content, size, source_key,"
                           " parent_id, content_file, reply, outcome, route) VALUES ($1, $2, $3,"
                           " $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15) RETURNING id",
                           &st);
    char route[HV__CHAN_ROUTE_MAX];
    const char *r;
    if (rc != HV_OK) return rc;
    r = route_of(ch, p, route, sizeof(route));
    bind_str(st, 15, r);
    bind_str(st, 1, stored_status(p, r));
    bind_str(st, 2, p->error);
    bind_str(st, 3, p->filtered_by);
    if (p->transformed) hv_db_bind_blob(st, 4, p->out, p->out_len);
    else hv_db_bind_null(st, 4);
    bind_str(st, 5, ch->conf->id);
    hv_db_bind_int64(st, 6, (int64_t)in->msg.received_at);
    bind_str(st, 7, p->content_type);
    if (ch->conf->keep == HV__KEEP_ALL && p->content_file == NULL)
        hv_db_bind_blob(st, 8, p->content, p->len);
    else hv_db_bind_null(st, 8);
    hv_db_bind_int64(st, 9, (int64_t)p->len);
    bind_str(st, 10, parent > 0 ? NULL : in->source_key);
    if (parent > 0) hv_db_bind_int64(st, 11, parent);
    else hv_db_bind_null(st, 11);
    bind_str(st, 12, p->content_file);
    if (parent <= 0 && in->reply != NULL) hv_db_bind_blob(st, 13, in->reply, in->reply_len);
    else hv_db_bind_null(st, 13);
    bind_str(st, 14, p->outcome);
    rc = hv_db_step(st);
    if (rc == HV_DB_ROW) {
        p->id = hv_db_column_int64(st, 0);
        rc = HV_OK;
    } else if (rc == HV_OK) {
        rc = HV_EDB;
    }
    hv_db_done(st);
    return rc;
}

/* fsync(2) of a file or directory by path: 0 or errno. */
static int sync_path(const char *path, int dir) {
    int fd = open(path, (dir ? O_RDONLY | O_DIRECTORY : O_RDONLY) | O_CLOEXEC), e = 0;
    if (fd < 0) return errno;
    if (fsync(fd) != 0) e = errno;
    close(fd);
    return e;
}

/*
 * Storage thread: makes a large message's content file durable under its name in
 * the content directory before the row that names it commits: fsync the spooled
 * file, rename it, fsync the directory. A crash before the commit leaves at most
 * an unreferenced file (hv__chan_content_sweep_job removes it at the next start);
 * never a row without its file.
 */
static int content_file_store(hv__ingest_t *in) {
    char dst[4200];
    int e;
    snprintf(dst, sizeof(dst), "%s/%s", in->ch->rt->content_dir, in->main.content_file);
    if ((e = sync_path(in->spool_path, 0)) != 0 || rename(in->spool_path, dst) != 0 ||
        (e = sync_path(in->ch->rt->content_dir, 1)) != 0) {
        hv_logrec_t *r = hv_log_begin(HV_LOG_ERROR, "channel.content_file");
        hv_log_str(r, "channel", in->ch->conf->id);
        hv_log_str(r, "error", strerror(e ? e : errno));
        hv_log_end(r);
        return HV_EIO;
    }
    return HV_OK;
}

/*
 * Storage thread, once at start before any message is received (storage jobs run in
 * order): removes the content files that no row names — left by a crash between a
 * storage job's rename and its commit.
 */
int hv__chan_content_sweep_job(hv_db_t *db, void *arg) {
    hv__chans_t *rt = arg;
    DIR *d;
    struct dirent *de;
    char path[4400];
    int rc = HV_OK;
    if (rt->content_dir[0] == '\0' || (d = opendir(rt->content_dir)) == NULL) return HV_OK;
    while (rc == HV_OK && (de = readdir(d)) != NULL) {
        hv_db_stmt_t *st = NULL;
        if (de->d_name[0] == '.') continue;
        rc = hv_db_prepare(db, "SELECT 1 FROM chan_messages WHERE content_file = $1", &st);
        if (rc != HV_OK) break;
        bind_str(st, 1, de->d_name);
        rc = hv_db_step(st);
        hv_db_done(st);
        if (rc == HV_OK) { /* no row names it */
            snprintf(path, sizeof(path), "%s/%s", rt->content_dir, de->d_name);
            unlink(path);
        }
        if (rc >= 0) rc = HV_OK;
    }
    closedir(d);
    return rc;
}

/*
 * Storage thread: inserts (or, for a reprocess, updates) the message, its parts
 * and their queue rows in one transaction; a message whose source key is already
 * stored (within the window) is a duplicate and stores nothing.
 */
static int ingest_job(hv_db_t *db, void *arg) {
    hv__ingest_t *in = arg;
    hv__chan_t *ch = in->ch;
    hv_db_stmt_t *st = NULL;
    uint64_t now = hv_now_ms();
    size_t k;
    int rc;
    if (in->source_key != NULL && in->reprocess_id <= 0) {
        int64_t dup = 0;
        rc = find_duplicate(db, in, &dup);
        if (rc != HV_OK) return rc;
        if (dup > 0) {
            in->duplicate = 1;
            in->main.id = dup;
            return HV_OK;
        }
    }
    if (in->reprocess_id > 0) {
        rc = hv_db_prepare(db,
                           "UPDATE chan_messages SET status = $2, error = $3, filtered_by = $4,"
                           " transformed = $5, outcome = $6, route = $7 WHERE id = $1",
                           &st);
        char route[HV__CHAN_ROUTE_MAX];
        const char *r;
        if (rc != HV_OK) return rc;
        r = route_of(ch, &in->main, route, sizeof(route));
        bind_str(st, 7, r);
        hv_db_bind_int64(st, 1, in->reprocess_id);
        bind_str(st, 2, stored_status(&in->main, r));
        bind_str(st, 3, in->main.error);
        bind_str(st, 4, in->main.filtered_by);
        if (in->main.transformed) hv_db_bind_blob(st, 5, in->main.out, in->main.out_len);
        else hv_db_bind_null(st, 5);
        bind_str(st, 6, in->main.outcome);
        rc = hv_db_step(st);
        hv_db_done(st);
        if (rc < 0) return rc;
        in->main.id = in->reprocess_id;
    } else {
        if (in->spool_path != NULL && (rc = content_file_store(in)) != HV_OK) return rc;
        rc = insert_message(db, in, &in->main, 0);
        if (rc != HV_OK) return rc;
        /* Full-text indexing happens later, off the acknowledgement path
         * (hv__chan_fts_catch_up). */
    }
    rc = insert_queue(db, ch, &in->main, now, in->reprocess_id > 0);
    if (rc != HV_OK) return rc;
    for (k = 0; k < in->nparts; k++) {
        rc = insert_message(db, in, &in->parts[k], in->main.id);
        if (rc == HV_OK) rc = insert_queue(db, ch, &in->parts[k], now, 0);
        if (rc != HV_OK) return rc;
    }
    return HV_OK;
}

/* ------------------------------------------------------------------------- */
/* Sources answered after the destinations                                   */
/* ------------------------------------------------------------------------- */

/*
 * A waiter holds a source's answer until every (message or part, destination)
 * pair it waits for has a committed final outcome, or until the channel's
 * response_timeout_ms. It answers HV_OK when all were delivered, HV_EPROTO when
 * one was dead-lettered, HV_ETIMEDOUT at the deadline (the deliveries go on:
 * the queue does not forget the message), HV_ECLOSED when the engine stops.
 */
typedef struct hv__waiter {
    struct hv__waiter *next;
    hv__chan_t *ch;        /* referenced: its conf names the destinations */
    int64_t id;            /* the message id given to the source */
    int64_t *mids;         /* the stored units waited for */
    uint32_t *left;        /* per unit: bit i = dests[i] not yet final */
    size_t nmids;
    int failed;
    uv_timer_t timer;
    hv_channel_stored_cb cb;
    void *ud;
} hv__waiter_t;

static void on_waiter_closed(uv_handle_t *h) {
    hv__waiter_t *wt = h->data;
    hv__chan_unref(wt->ch);
    hv_free(wt->mids);
    hv_free(wt->left);
    hv_free(wt);
}

/* Unlinks wt, answers the source and frees wt once its timer is closed. */
static void waiter_finish(hv__waiter_t *wt, int status) {
    hv__chans_t *rt = wt->ch->rt;
    hv__waiter_t **pp;
    for (pp = &rt->waiters; *pp != NULL; pp = &(*pp)->next)
        if (*pp == wt) {
            *pp = wt->next;
            rt->nwaiters--;
            break;
        }
    uv_timer_stop(&wt->timer);
    if (wt->cb != NULL) wt->cb(status, wt->id, wt->ud);
    wt->cb = NULL;
    uv_close((uv_handle_t *)&wt->timer, on_waiter_closed);
}

static void on_waiter_timeout(uv_timer_t *t) { waiter_finish(t->data, HV_ETIMEDOUT); }

void hv__chan_waiters_note(hv__chans_t *rt, int64_t mid, const char *dest, int delivered) {
    hv__waiter_t *wt;
    size_t k, i;
    for (wt = rt->waiters; wt != NULL; wt = wt->next) {
        for (k = 0; k < wt->nmids; k++)
            if (wt->mids[k] == mid) break;
        if (k == wt->nmids) continue;
        for (i = 0; i < wt->ch->conf->ndests; i++)
            if (strcmp(wt->ch->conf->dests[i].name, dest) == 0) break;
        if (i == wt->ch->conf->ndests || !(wt->left[k] & (1u << i))) return;
        wt->left[k] &= ~(1u << i);
        if (!delivered) wt->failed = 1;
        for (k = 0; k < wt->nmids; k++)
            if (wt->left[k] != 0) return;
        waiter_finish(wt, wt->failed ? HV_EPROTO : HV_OK);
        return;
    }
}

void hv__chan_waiters_stop(hv__chans_t *rt) {
    while (rt->waiters != NULL) waiter_finish(rt->waiters, HV_ECLOSED);
}

/* The destinations a unit waits for: the ones it is queued for that the channel's
 * response names. */
static uint32_t wait_mask(const hv__chan_t *ch, const hv__part_t *p) {
    uint32_t m = 0;
    size_t i;
    if (strcmp(p->status, "queued") != 0) return 0;
    for (i = 0; i < ch->conf->ndests; i++)
        if (p->dest_on[i] && (ch->conf->response_dests == 0 || (ch->conf->response_dests & (1u << i))))
            m |= 1u << i;
    return m;
}

/* Registers a waiter for a stored message; HV_OK means the source's callback now
 * belongs to the waiter. HV_EAGAIN-like HV_ENOTFOUND: nothing to wait for. */
static int waiter_start(hv__ingest_t *in) {
    hv__chan_t *ch = in->ch;
    hv__waiter_t *wt = NULL;
    size_t n = 1 + in->nparts, k, used = 0;
    wt = hv_calloc(1, sizeof(*wt));
    if (wt == NULL) return HV_ENOMEM;
    wt->mids = hv_calloc(n, sizeof(*wt->mids));
    wt->left = hv_calloc(n, sizeof(*wt->left));
    if (wt->mids == NULL || wt->left == NULL) {
        hv_free(wt->mids);
        hv_free(wt->left);
        hv_free(wt);
        return HV_ENOMEM;
    }
    for (k = 0; k < n; k++) {
        const hv__part_t *p = k == 0 ? &in->main : &in->parts[k - 1];
        uint32_t m = wait_mask(ch, p);
        if (m == 0) continue;
        wt->mids[used] = p->id;
        wt->left[used++] = m;
    }
    if (used == 0) {
        hv_free(wt->mids);
        hv_free(wt->left);
        hv_free(wt);
        return HV_ENOTFOUND;
    }
    wt->nmids = used;
    wt->ch = ch;
    hv__chan_ref(ch);
    wt->id = in->main.id;
    wt->cb = in->cb;
    wt->ud = in->ud;
    uv_timer_init(hv_engine_loop(ch->rt->engine), &wt->timer);
    wt->timer.data = wt;
    uv_timer_start(&wt->timer, on_waiter_timeout, ch->conf->response_timeout_ms, 0);
    wt->next = ch->rt->waiters;
    ch->rt->waiters = wt;
    ch->rt->nwaiters++;
    return HV_OK;
}

/* ------------------------------------------------------------------------- */
/* Receiving                                                                 */
/* ------------------------------------------------------------------------- */

/* Frees an ingest and gives its bytes back to its channel (which must still be
 * referenced: ingest_done frees before it unrefs). */
static void ingest_free(hv__ingest_t *in) {
    if (in == NULL) return;
    if (in->held > 0) in->ch->mem_held -= in->held;
    hv_arena_free(in->arena);
    hv_free(in);
}

static void count_unit(hv__chan_t *ch, const hv__part_t *p) {
    if (strcmp(p->status, "filtered") == 0) {
        ch->filtered++;
        hv_counter_add(ch->m_filtered, 1);
    } else if (strcmp(p->status, "errored") == 0) {
        ch->errored++;
        hv_counter_add(ch->m_errored, 1);
    }
}

static void kick_unit(hv__chan_t *ch, const hv__part_t *p) {
    size_t i;
    for (i = 0; i < ch->nworkers; i++) {
        hv__worker_t *w = ch->workers[i];
        if (p->dest_on[w->dest_index] && p->dest_lane[w->dest_index] == w->lane) hv__worker_kick(w);
    }
}

static void ingest_done(int status, void *arg) {
    hv__ingest_t *in = arg;
    hv__chan_t *ch = in->ch;
    size_t k;
    if (in->spool_path != NULL && (status != HV_OK || in->duplicate)) {
        /* Not stored (or a duplicate): its content file, moved or not, goes. */
        char path[4200];
        unlink(in->spool_path);
        snprintf(path, sizeof(path), "%s/%s", ch->rt->content_dir, in->main.content_file);
        unlink(path);
    }
    if (status == HV_OK && !in->duplicate) {
        hv__chan_t *live = ch;
        if (in->reprocess_id <= 0) {
            ch->received++;
            hv_counter_add(ch->m_received, 1);
        }
        count_unit(ch, &in->main);
        for (k = 0; k < in->nparts; k++) count_unit(ch, &in->parts[k]);
        while (live->retired && live->successor != NULL) live = live->successor;
        if (live == ch && !ch->retired) {
            kick_unit(ch, &in->main);
            for (k = 0; k < in->nparts; k++) kick_unit(ch, &in->parts[k]);
        } else if (!live->retired) {
            hv__chan_wake(live);
        }
        if (in->wait && in->cb != NULL && ch->conf->response == HV__RESP_AFTER_DESTINATIONS) {
            if (strcmp(in->main.status, "errored") == 0) {
                status = HV_EINVAL;
            } else if (!ch->rt->stopped && waiter_start(in) == HV_OK) {
                in->cb = NULL; /* the waiter answers */
            }
        }
    }
    if (in->cb != NULL) {
        int64_t id = status == HV_OK || status == HV_EINVAL ? in->main.id : 0;
        in->cb(status, id, in->ud);
    }
    ingest_free(in);
    hv__chan_unref(ch);
}

/* Routes one unit to the destinations whose `when` holds, with its lane. */
static void route_unit(hv__ingest_t *in, hv__part_t *p, const hv_channel_msg_t *m) {
    hv__chan_t *ch = in->ch;
    const hv__chan_registry_t *reg = &ch->rt->engine->chan_reg;
    const char *rule = NULL;
    size_t i;
    for (i = 0; i < ch->conf->ndests; i++) {
        const hv__dest_conf_t *d = &ch->conf->dests[i];
        p->dest_on[i] = d->when == NULL || hv__filter_eval(reg, d->when, m, &rule);
        p->dest_lane[i] = 0;
        if (d->queue.workers > 1) {
            /* The lane: by the ordering key's hash (one key's messages stay in order), or
             * round robin when there is none. A message without the key goes to lane 0. */
            const char *key = NULL;
            if (d->queue.ordering_key == NULL) {
                p->dest_lane[i] = (int64_t)(ch->next_lane++ % (uint64_t)d->queue.workers);
            } else if (hv__filter_value(reg, d->queue.ordering_key, m, &key) == HV_OK &&
                       key != NULL) {
                uint64_t h = 1469598103934665603ull; /* FNV-1a */
                for (; *key; key++) {
                    h ^= (unsigned char)*key;
                    h *= 1099511628211ull;
                }
                p->dest_lane[i] = (int64_t)(h % (uint64_t)d->queue.workers);
            }
        }
    }
    if (ch->conf->ndests == 0) p->status = "sent";
}

/* Appends step i's OperationOutcome to the unit's list (a JSON array kept as text). */
static void add_outcome(hv__ingest_t *in, hv__part_t *p, size_t i, const char *type, const char *outcome) {
    char *t;
    if (p->outcome == NULL)
        t = hv_arena_sprintf(in->arena, "[{\"step\":%zu,\"type\":\"%s\",\"outcome\":%s}]", i + 1, type,
                             outcome);
    else
        t = hv_arena_sprintf(in->arena, "%.*s,{\"step\":%zu,\"type\":\"%s\",\"outcome\":%s}]",
                             (int)(strlen(p->outcome) - 1), p->outcome, i + 1, type, outcome);
    if (t != NULL) p->outcome = t;
}

/*
 * Runs the filter (when `filter`) and the steps from `from` on one unit, on the
 * loop thread, and routes it. At a split-bundle step of the message itself the
 * parts are made, each runs the remaining steps, and the message is "split".
 */
static void process_unit(hv__ingest_t *in, hv__part_t *p, size_t from, int filter) {
    hv__chan_t *ch = in->ch;
    const hv__chan_registry_t *reg = &ch->rt->engine->chan_reg;
    hv_channel_msg_t m = in->msg;
    const char *rule = NULL;
    size_t i, k;
    m.content = p->content;
    m.len = p->len;
    m.content_type = p->content_type;
    p->status = "queued";
    p->out = p->content;
    p->out_len = p->len;
    if (filter && ch->conf->filter != NULL && !hv__filter_eval(reg, ch->conf->filter, &m, &rule)) {
        p->status = "filtered";
        p->filtered_by = hv_arena_strdup(in->arena, rule ? rule : "filter");
        return;
    }
    for (i = from; i < ch->nsteps; i++) {
        hv_error_t err;
        int rc;
        hv_error_clear(&err);
        if (ch->steps[i].impl == &hv__step_split_bundle) {
            if (p != &in->main) {
                rc = HV_ECONFIG;
                hv_error_set(&err, rc, NULL, "a part cannot be split again");
            } else {
                rc = hv__split_run(ch->steps[i].state, &m, &in->parts, &in->nparts, &err);
            }
            if (rc == HV_OK) {
                for (k = 0; k < in->nparts; k++) process_unit(in, &in->parts[k], i + 1, 0);
                p->status = "split";
                memset(p->dest_on, 0, sizeof(p->dest_on));
                return;
            }
        } else {
            m.outcome = NULL;
            rc = ch->steps[i].impl->run(ch->steps[i].state, &m, &err);
            if (m.outcome != NULL) add_outcome(in, p, i, ch->conf->steps[i].type, m.outcome);
        }
        if (rc != HV_OK) {
            p->status = "errored";
            p->error = hv_arena_sprintf(in->arena, "step %zu (%s): %s", i + 1,
                                        ch->conf->steps[i].type,
                                        err.message[0] ? err.message : hv_strerror(rc));
            return;
        }
    }
    p->content_type = m.content_type;
    if (m.content != p->content || m.len != p->len) {
        p->transformed = 1;
        p->out = m.content;
        p->out_len = m.len;
    }
    route_unit(in, p, &m);
}

/* The index after the channel's split-bundle step (0 when it has none). */
static size_t after_split(const hv__chan_t *ch) {
    size_t i;
    for (i = 0; i < ch->nsteps; i++)
        if (ch->steps[i].impl == &hv__step_split_bundle) return i + 1;
    return 0;
}

/* 1 when a rule tree reads only metadata (content_type, channel, size). */
static int meta_only(const hv__filter_t *f) {
    size_t i;
    if (f == NULL) return 1;
    if (f->kind == HV__F_HL7 || f->kind == HV__F_FHIRPATH) return 0;
    for (i = 0; i < f->nkids; i++)
        if (!meta_only(f->kids[i])) return 0;
    return 1;
}

int hv__chan_reads_content(const hv__chan_t *ch) {
    size_t i;
    if (ch->nsteps > 0 || !meta_only(ch->conf->filter)) return 1;
    for (i = 0; i < ch->conf->ndests; i++)
        if (!meta_only(ch->conf->dests[i].when) || !meta_only(ch->conf->dests[i].queue.ordering_key))
            return 1;
    return 0;
}

int hv__chan_streams(const hv__chan_t *ch) {
    return ch->rt->content_dir[0] != '\0' && !hv__chan_reads_content(ch);
}

int hv__chan_ingest_ex(hv__chan_t *ch, const hv__ingest_opts_t *o, hv_channel_stored_cb cb,
                       void *ud) {
    hv__ingest_t *in = NULL;
    char *raw;
    int rc;
    if (ch->retired) return HV_ECLOSED;
    if (o->content_path != NULL && (!hv__chan_streams(ch) || o->reprocess_id > 0)) return HV_EINVAL;
    /*
     * Memory per source: the content of a channel's messages received and not yet
     * committed (in their arenas, waiting in the storage queue) is at most
     * channels.max_held_bytes; past it a message is refused as busy, so that a source
     * answers as for a full store (MLLP AE, HTTP 503 + Retry-After, a file stays for the
     * next round). A message alone is always taken: its size has its own caps
     * (mllp max_message, http.max_body, file max_size). Content files are not in memory.
     */
    if (o->content_path == NULL && ch->mem_held > 0 && ch->rt->max_held > 0 &&
        o->len > ch->rt->max_held - (ch->mem_held < ch->rt->max_held ? ch->mem_held : ch->rt->max_held))
        return HV_EBUSY;
    in = hv_calloc(1, sizeof(*in));
    if (in == NULL) return HV_ENOMEM;
    in->arena = hv_arena_new(0);
    if (in->arena == NULL) {
        hv_free(in);
        return HV_ENOMEM;
    }
    in->ch = ch;
    if (o->content_path == NULL) {
        in->held = o->len;
        ch->mem_held += o->len;
    }
    if (o->content_path != NULL) {
        /* Only metadata rules run: they see the size, never the content (""). */
        uint32_t r[2] = {0, 0};
        hv_random_fast(r, sizeof(r));
        raw = hv_arena_strdup(in->arena, "");
        in->spool_path = hv_arena_strdup(in->arena, o->content_path);
        in->main.content_file = hv_arena_sprintf(in->arena, "%llu-%08x%08x",
                                                 (unsigned long long)hv_now_ms(), r[0], r[1]);
        if (raw == NULL || in->spool_path == NULL || in->main.content_file == NULL) {
            ingest_free(in);
            return HV_ENOMEM;
        }
    } else {
        raw = hv_arena_alloc(in->arena, o->len + 1);
        if (raw == NULL) {
            ingest_free(in);
            return HV_ENOMEM;
        }
        if (o->len > 0) memcpy(raw, o->content, o->len);
        raw[o->len] = '\0';
    }
    if (o->source_key != NULL) {
        in->source_key = hv_arena_strdup(in->arena, o->source_key);
        if (in->source_key == NULL) {
            ingest_free(in);
            return HV_ENOMEM;
        }
    }
    if (o->reply != NULL) {
        char *r = hv_arena_alloc(in->arena, o->reply_len + 1);
        if (r == NULL) {
            ingest_free(in);
            return HV_ENOMEM;
        }
        memcpy(r, o->reply, o->reply_len);
        in->reply = r;
        in->reply_len = o->reply_len;
    }
    in->orig_reply = o->orig_reply;
    in->dedup_window_ms = o->dedup_window_ms;
    in->is_part = o->is_part;
    in->wait = o->wait;
    in->reprocess_id = o->reprocess_id;
    in->cb = cb;
    in->ud = ud;
    in->msg.channel = ch->conf->id;
    in->msg.content = raw;
    in->msg.len = o->len;
    in->msg.content_type = hv_arena_strdup(in->arena, o->content_type ? o->content_type : "");
    in->msg.received_at = o->received_at ? o->received_at : hv_now_ms();
    in->msg.arena = in->arena;
    in->msg.id = o->reprocess_id;
    in->main.content = raw;
    in->main.len = o->len;
    in->main.content_type = in->msg.content_type;
    if (in->is_part) process_unit(in, &in->main, after_split(ch), 0);
    else process_unit(in, &in->main, 0, 1);
    hv__chan_ref(ch);
    /* A reprocess rewrites a stored row and may queue it again: the channel's shared
     * read (channel_read.c) drops what it holds before the job is submitted. */
    if (in->reprocess_id > 0) hv__rows_reset(ch);
    rc = hv_storage_submit(ch->rt->storage, ingest_job, ingest_done, in);
    if (rc != HV_OK) {
        ingest_free(in);
        hv__chan_unref(ch);
        return rc;
    }
    return HV_OK;
}

int hv__chan_ingest(hv__chan_t *ch, const char *content, size_t len, const char *content_type,
                    int64_t reprocess_id, uint64_t received_at, hv_channel_stored_cb cb,
                    void *ud) {
    hv__ingest_opts_t o;
    memset(&o, 0, sizeof(o));
    o.content = content;
    o.len = len;
    o.content_type = content_type;
    o.reprocess_id = reprocess_id;
    o.received_at = received_at;
    return hv__chan_ingest_ex(ch, &o, cb, ud);
}

int hv_channel_receive(hv_channel_t *ch, const char *content, size_t len,
                       const char *content_type, hv_channel_stored_cb cb, void *ud) {
    return hv_channel_receive_keyed(ch, content, len, content_type, NULL, 0, cb, ud);
}

int hv_channel_receive_keyed(hv_channel_t *ch, const char *content, size_t len,
                             const char *content_type, const char *key, uint64_t window_ms,
                             hv_channel_stored_cb cb, void *ud) {
    hv__ingest_opts_t o;
    if (ch == NULL || (content == NULL && len > 0)) return HV_EINVAL;
    if (ch->state != HV__CHAN_STARTED) return HV_ECLOSED;
    memset(&o, 0, sizeof(o));
    o.content = content ? content : "";
    o.len = len;
    o.content_type = content_type;
    o.source_key = key;
    o.dedup_window_ms = window_ms;
    o.wait = 1;
    return hv__chan_ingest_ex(ch, &o, cb, ud);
}

int hv_channel_receive_reply(hv_channel_t *ch, const char *content, size_t len,
                             const char *content_type, const char *key, uint64_t window_ms,
                             const char *reply, size_t reply_len, hv_buf_t *orig_reply,
                             hv_channel_stored_cb cb, void *ud) {
    hv__ingest_opts_t o;
    if (ch == NULL || (content == NULL && len > 0)) return HV_EINVAL;
    if (ch->state != HV__CHAN_STARTED) return HV_ECLOSED;
    memset(&o, 0, sizeof(o));
    o.content = content ? content : "";
    o.len = len;
    o.content_type = content_type;
    o.source_key = key;
    o.dedup_window_ms = window_ms;
    o.reply = reply;
    o.reply_len = reply_len;
    o.orig_reply = orig_reply;
    o.wait = 1;
    return hv__chan_ingest_ex(ch, &o, cb, ud);
}

const char *hv_channel_id(const hv_channel_t *ch) { return ch->conf->id; }
hv_engine_t *hv_channel_engine(hv_channel_t *ch) { return ch->rt->engine; }

/*
 * Deferred full-text indexing (SQLite). Indexing a message in FTS5 costs several times
 * what storing it does, so the store does not do it before the acknowledgement: a timer
 * (channels.c) and every text search first call this, on the storage thread, which
 * indexes the messages stored since chan_fts_mark.last_id — at most `limit` of them (0:
 * all) — and moves the mark in the same transaction. So a search always sees every
 * committed message, and the index never holds a row twice. Indexed: top-level messages
 * whose content is kept in the row, the first channels.fts_max bytes of it (the prune job
 * deletes with the same expression, which FTS5's external-content 'delete' requires).
 */
int hv__chan_fts_catch_up(hv_db_t *db, hv__chans_t *rt, int64_t limit) {
    hv_db_stmt_t *st = NULL;
    int64_t mark = 0, top = 0;
    int rc = hv_db_prepare(db, "SELECT last_id, (SELECT COALESCE(MAX(id), 0) FROM chan_messages)"
                               " FROM chan_fts_mark WHERE one = 1", &st);
    if (rc != HV_OK) return rc;
    rc = hv_db_step(st);
    if (rc == HV_DB_ROW) {
        mark = hv_db_column_int64(st, 0);
        top = hv_db_column_int64(st, 1);
    }
    hv_db_done(st);
    if (rc < 0) return rc;
    if (limit > 0 && top - mark > limit) top = mark + limit;
    if (top <= mark) return HV_OK;
    rc = hv_db_prepare(db, "INSERT INTO chan_fts (rowid, content) SELECT id, " HV__CHAN_FTS_VALUE("$3")
                           " FROM chan_messages WHERE id > $1 AND id <= $2 AND " HV__CHAN_FTS_ROWS, &st);
    if (rc != HV_OK) return rc;
    hv_db_bind_int64(st, 1, mark);
    hv_db_bind_int64(st, 2, top);
    hv_db_bind_int64(st, 3, (int64_t)rt->fts_max);
    rc = hv_db_step(st);
    hv_db_done(st);
    if (rc < 0) return rc;
    rc = hv_db_prepare(db, "UPDATE chan_fts_mark SET last_id = $1 WHERE one = 1", &st);
    if (rc != HV_OK) return rc;
    hv_db_bind_int64(st, 1, top);
    rc = hv_db_step(st);
    hv_db_done(st);
    return rc < 0 ? rc : HV_OK;
}
