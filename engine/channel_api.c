/*
 * channel_api.c — the HTTP interface of the channel runtime, and pruning.
 *
 *   POST /channels/:id/in                       http source: store, answer 201 {"id"}
 *   GET  /channels                              channels with statistics per destination
 *   GET  /channels/:id                          one channel
 *   POST /channels/:id/deploy|undeploy          (re)load its file / remove it
 *   POST /channels/:id/start|stop|pause         source and workers on, both off, source only off
 *   POST /channels/:id/destinations/:dest/pause|resume
 *   GET  /channels/:id/messages?status=&type=&since=&until=&text=&limit=&cursor=
 *   GET  /channels/:id/messages/:mid            content, transformed content, queue rows
 *   POST /channels/:id/messages/:mid/reprocess  filter, steps and queues again
 *   GET  /channels/:id/deadletter               dead-lettered queue rows
 *   POST /channels/:id/deadletter/requeue?dest=&message=   back to queued (attempts 0)
 *   POST /channels/:id/deadletter/discard?dest=&message=   marked discarded
 *
 * Lists use keyset paging: `next` is the id to pass as `cursor` (messages with a
 * smaller id follow), so a page costs the same on message 10 or 10 million.
 * All database work runs as storage jobs; answers are built on the storage thread.
 */
#include "config.h"
#include "engine/channel_rt.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef struct query {
    hv_http_req_t *req;
    hv__chans_t *rt;
    char channel[HV__CHAN_ID_MAX + 1];
    char dest[HV__CHAN_ID_MAX + 1];
    char status[16];
    char type[64];
    char *text;
    int64_t id, limit, since, until;
    int found;
    int is_part; /* the message is a part of a split message */
    int64_t changed;
    hv_buf_t body;
} query_t;

static void query_free(query_t *q) {
    if (q == NULL) return;
    hv_buf_release(&q->body);
    hv_free(q->text);
    hv_free(q);
}

static void query_done(int status, void *arg) {
    query_t *q = arg;
    if (status != HV_OK)
        hv_http_respond_error(q->req, 503, "storage", "the channel store is unavailable");
    else if (!q->found)
        hv_http_respond_error(q->req, 404, "not-found", "no such message");
    else
        hv_http_respond_buf(q->req, 200, "application/json", &q->body);
    query_free(q);
}

static query_t *query_new(hv_http_req_t *req, hv__chans_t *rt, const char *channel) {
    query_t *q = hv_calloc(1, sizeof(*q));
    if (q == NULL) {
        hv_http_respond_error(req, 503, "memory", "out of memory");
        return NULL;
    }
    q->req = req;
    q->rt = rt;
    snprintf(q->channel, sizeof(q->channel), "%s", channel ? channel : "");
    hv_buf_init(&q->body, 0);
    return q;
}

static void query_submit(query_t *q, hv_storage_job_cb job, hv_storage_done_cb done) {
    if (hv_storage_submit(q->rt->storage, job, done ? done : query_done, q) != HV_OK) {
        hv_http_respond_error(q->req, 503, "busy", "the channel store is busy; retry");
        query_free(q);
    }
}

static int parse_i64(const char *s, int64_t *out) {
    char *end = NULL;
    long long v;
    if (s == NULL || *s < '0' || *s > '9') return HV_EINVAL;
    v = strtoll(s, &end, 10);
    if (*end != 0 || v < 0) return HV_EINVAL;
    *out = v;
    return HV_OK;
}

hv__chan_t *hv__chan_or_404(hv_http_req_t *req, hv__chans_t *rt) {
    hv__chan_t *ch = hv__chan_find(rt, hv_http_req_param(req, "id"));
    if (ch == NULL) hv_http_respond_error(req, 404, "not-found", "no such channel");
    return ch;
}

static int put_col(hv_buf_t *b, hv_db_stmt_t *st, int col) {
    size_t n = 0;
    const char *t;
    if (hv_db_column_is_null(st, col)) return hv_buf_puts(b, "null");
    t = hv_db_column_text(st, col, &n);
    return hv_buf_json_str(b, t ? t : "", n);
}

/* The steps' outcomes as stored (a JSON array the runtime wrote, channel_ingest.c), embedded
 * as JSON; anything else as null. */
static int put_outcome(hv_buf_t *b, hv_db_stmt_t *st, int col) {
    size_t n = 0;
    const char *t;
    if (hv_db_column_is_null(st, col)) return hv_buf_puts(b, "null");
    t = hv_db_column_text(st, col, &n);
    if (t == NULL || n < 2 || t[0] != '[' || t[n - 1] != ']') return hv_buf_puts(b, "null");
    return hv_buf_append(b, t, n);
}

/* JSON strings are UTF-8: content that is not goes as null (the size says it exists). */
static int put_content(hv_buf_t *b, hv_db_stmt_t *st, int col) {
    size_t n = 0, i;
    const unsigned char *p;
    if (hv_db_column_is_null(st, col)) return hv_buf_puts(b, "null");
    p = hv_db_column_blob(st, col, &n);
    for (i = 0; i < n; i++) {
        unsigned char c = p[i];
        size_t k = c < 0x80 ? 0 : (c >> 5) == 6 ? 1 : (c >> 4) == 14 ? 2 : (c >> 3) == 30 ? 3 : 9;
        if (k == 9 || i + k >= n + (k ? 0 : 1)) return hv_buf_puts(b, "null");
        for (; k > 0; k--)
            if ((p[++i] & 0xC0) != 0x80) return hv_buf_puts(b, "null");
    }
    return hv_buf_json_str(b, (const char *)p, n);
}

/* ------------------------------------------------------------------------- */
/* POST /channels/:id/in                                                     */
/* ------------------------------------------------------------------------- */

static void in_stored(int status, int64_t id, void *ud) {
    hv_http_req_t *req = ud;
    char body[96];
    /* response after-destinations: the message is stored (id) but was not delivered. */
    if (status == HV_ETIMEDOUT) {
        hv_http_respond_error(req, 504, "timeout",
                              "message %lld is stored; its destinations did not finish in time",
                              (long long)id);
        return;
    }
    if (status == HV_EPROTO) {
        hv_http_respond_error(req, 502, "dead-lettered",
                              "message %lld is stored; a destination dead-lettered it",
                              (long long)id);
        return;
    }
    if (status == HV_EINVAL) {
        hv_http_respond_error(req, 422, "errored", "message %lld is stored; a step failed on it",
                              (long long)id);
        return;
    }
    if (status == HV_ECLOSED) {
        hv_http_respond_error(req, 503, "stopped", "the engine is stopping");
        return;
    }
    if (status == HV_EBUSY) {
        hv_http_header_add(req, "Retry-After", "1");
        hv_http_respond_error(req, 503, "busy", "the channel store is busy; retry");
        return;
    }
    if (status != HV_OK) {
        hv_http_respond_error(req, 503, "storage", "the message could not be stored");
        return;
    }
    snprintf(body, sizeof(body), "{\"id\":\"%lld\"}", (long long)id);
    hv_http_respond(req, 201, "application/json", body, strlen(body));
}

static void route_in(hv_http_req_t *req, void *ud) {
    hv__chans_t *rt = ud;
    hv__chan_t *ch = hv__chan_or_404(req, rt);
    const char *body, *ct;
    size_t len = 0;
    int rc;
    if (ch == NULL) return;
    if (strcmp(ch->conf->source_type, "http") != 0) {
        hv_http_respond_error(req, 409, "not-http", "channel %s does not take an http source",
                              ch->conf->id);
        return;
    }
    if (ch->state != HV__CHAN_STARTED) {
        hv_http_respond_error(req, 503, "stopped", "channel %s is not started", ch->conf->id);
        return;
    }
    ct = hv_http_req_header(req, "content-type");
    {
        hv__ingest_opts_t o;
        const char *file = NULL;
        uint64_t flen = 0;
        memset(&o, 0, sizeof(o));
        o.content_type = ct ? ct : "";
        o.wait = 1;
        if (hv_http_req_body_file(req, &file, &flen) == HV_OK) {
            /* A large body arrived in a file: it stays there when the channel never reads
             * content; otherwise it is read into memory up to channels.max_message_bytes. */
            if (hv__chan_streams(ch)) {
                o.content = "";
                o.content_path = file;
                o.len = (size_t)flen;
                rc = hv__chan_ingest_ex(ch, &o, in_stored, req);
                if (rc == HV_OK) hv_http_req_body_file_take(req);
                goto answered;
            }
            /* (A channel that reads no content on a store without content files — PostgreSQL —
             * takes the body in memory up to http.max_body, as before.) */
            if (flen > rt->max_message && hv__chan_reads_content(ch)) {
                hv_http_respond_error(req, 413, "too-large",
                                      "a message of %llu bytes exceeds channels.max_message_bytes"
                                      " (%zu) for channel %s, which reads content (a step, or a"
                                      " filter, `when` or ordering-key rule on content)",
                                      (unsigned long long)flen, rt->max_message, ch->conf->id);
                return;
            }
        }
        body = hv_http_req_body(req, &len);
        o.content = body ? body : "";
        o.len = len;
        rc = hv__chan_ingest_ex(ch, &o, in_stored, req);
    }
answered:
    if (rc == HV_EINVAL) rc = HV_EIO; /* not "a step failed": it was not stored */
    if (rc != HV_OK) in_stored(rc, 0, req);
}

/* ------------------------------------------------------------------------- */
/* GET /channels                                                             */
/* ------------------------------------------------------------------------- */

typedef struct stats_q {
    hv_http_req_t *req;
    hv__chans_t *rt;
    char channel[HV__CHAN_ID_MAX + 1]; /* "" for all */
    /* rows: channel, dest, state, count — and messages by status */
    struct row {
        char channel[HV__CHAN_ID_MAX + 1];
        char dest[HV__CHAN_ID_MAX + 1];
        char state[16];
        int64_t n;
    } *rows;
    size_t nrows, caprows;
} stats_q_t;

static int stats_add(stats_q_t *s, const char *ch, const char *dest, const char *state, int64_t n) {
    struct row *r;
    if (s->nrows == s->caprows) {
        size_t nc = s->caprows ? s->caprows * 2 : 64;
        struct row *nr;
        if (nc > 1000000) return HV_ETOOBIG;
        nr = hv_realloc(s->rows, nc * sizeof(*nr));
        if (nr == NULL) return HV_ENOMEM;
        s->rows = nr;
        s->caprows = nc;
    }
    r = &s->rows[s->nrows++];
    snprintf(r->channel, sizeof(r->channel), "%s", ch);
    snprintf(r->dest, sizeof(r->dest), "%s", dest);
    snprintf(r->state, sizeof(r->state), "%s", state);
    r->n = n;
    return HV_OK;
}

static int stats_job(hv_db_t *db, void *arg) {
    stats_q_t *s = arg;
    hv_db_stmt_t *st = NULL;
    size_t i, nrows;
    int rc, pass;
    /* Pass 2, cursor queues (channel.c): the deliveries counted on the cursor and the
     * messages routed to it after its position; their other states are rows. */
    static const char *const sql[] = {
        "SELECT channel, '', status, COUNT(*) FROM chan_messages"
        " WHERE ($1 = '' OR channel = $1) GROUP BY channel, status",
        "SELECT channel, dest, state, COUNT(*) FROM chan_queue"
        " WHERE ($1 = '' OR channel = $1) GROUP BY channel, dest, state",
        "SELECT channel, dest, 'sent', sent FROM chan_cursors WHERE ($1 = '' OR channel = $1)"
        " UNION ALL SELECT c.channel, c.dest, 'queued', (SELECT COUNT(*) FROM chan_messages m"
        " WHERE m.channel = c.channel AND m.id > c.last_id AND instr(m.route, ',' || c.dest"
        " || ',') > 0) FROM chan_cursors c WHERE ($1 = '' OR c.channel = $1)",
    };
    for (pass = 0; pass < (s->rt->shared ? 2 : 3); pass++) {
        rc = hv_db_prepare(db, sql[pass], &st);
        if (rc != HV_OK) return rc;
        hv_db_bind_text(st, 1, s->channel, strlen(s->channel));
        while ((rc = hv_db_step(st)) == HV_DB_ROW) {
            rc = stats_add(s, hv_db_column_text(st, 0, NULL), hv_db_column_text(st, 1, NULL),
                           hv_db_column_text(st, 2, NULL), hv_db_column_int64(st, 3));
            if (rc != HV_OK) break;
        }
        hv_db_done(st);
        if (rc < 0) return rc;
    }
    /* Messages stored as "cursor" show a derived status (channel_rt.h): each such row
     * becomes the channel's queued, sent and errored counts. */
    for (i = 0, nrows = s->nrows; i < nrows; i++) {
        int64_t n[3];
        char ch[HV__CHAN_ID_MAX + 1]; /* stats_add may move the rows */
        if (s->rows[i].dest[0] != '\0' || strcmp(s->rows[i].state, "cursor") != 0) continue;
        snprintf(ch, sizeof(ch), "%s", s->rows[i].channel);
        rc = hv__chan_status_split(db, ch, s->rows[i].n, n);
        if (rc == HV_OK) rc = stats_add(s, ch, "", "queued", n[0]);
        if (rc == HV_OK) rc = stats_add(s, ch, "", "sent", n[1]);
        if (rc == HV_OK) rc = stats_add(s, ch, "", "errored", n[2]);
        if (rc != HV_OK) return rc;
        s->rows[i].state[0] = '\0'; /* counted once: in the received total, as its parts */
        s->rows[i].n = 0;
    }
    return HV_OK;
}

static int64_t stat_of(const stats_q_t *s, const char *ch, const char *dest, const char *state) {
    size_t i;
    int64_t n = 0;
    for (i = 0; i < s->nrows; i++)
        if (strcmp(s->rows[i].channel, ch) == 0 && strcmp(s->rows[i].dest, dest) == 0 &&
            (state == NULL || strcmp(s->rows[i].state, state) == 0))
            n += s->rows[i].n;
    return n;
}

static const char *state_name(int st) {
    return st == HV__CHAN_STARTED ? "started" : st == HV__CHAN_PAUSED ? "paused" : "stopped";
}

static int put_channel(hv_buf_t *b, const stats_q_t *s, const hv__chan_t *ch) {
    const char *id = ch->conf->id;
    size_t i;
    uint64_t now = hv_now_ms();
    int rc = hv_buf_puts(b, "{\"id\":");
    if (rc == HV_OK) rc = hv_buf_json_str(b, id, strlen(id));
    if (rc == HV_OK) rc = hv_buf_puts(b, ",\"name\":");
    if (rc == HV_OK) rc = hv_buf_json_str(b, ch->conf->name, strlen(ch->conf->name));
    if (rc == HV_OK) rc = hv_buf_puts(b, ",\"file\":");
    if (rc == HV_OK) rc = hv_buf_json_str(b, ch->conf->path, strlen(ch->conf->path));
    if (rc == HV_OK)
        rc = hv_buf_printf(b,
                           ",\"state\":\"%s\",\"source\":\"%s\",\"statistics\":{\"received\":%lld,"
                           "\"filtered\":%lld,\"queued\":%lld,\"sent\":%lld,\"errored\":%lld},"
                           "\"destinations\":[",
                           state_name(ch->state), ch->conf->source_type,
                           (long long)stat_of(s, id, "", NULL),
                           (long long)stat_of(s, id, "", "filtered"),
                           (long long)stat_of(s, id, "", "queued"),
                           (long long)stat_of(s, id, "", "sent"),
                           (long long)stat_of(s, id, "", "errored"));
    for (i = 0; rc == HV_OK && i < ch->conf->ndests; i++) {
        const hv__dest_conf_t *d = &ch->conf->dests[i];
        const char *breaker = "closed";
        unsigned long long failed = 0;
        int paused = 0;
        size_t k;
        /* A destination with several workers (lanes) is shown as one. */
        for (k = 0; k < ch->nworkers; k++) {
            const hv__worker_t *w = ch->workers[k];
            if (w->dest_index != i) continue;
            failed += w->attempt_failures;
            paused |= w->paused;
            if (w->breaker_until > now) breaker = "open";
            else if (strcmp(breaker, "closed") == 0 && d->queue.breaker_threshold > 0 &&
                     w->failures >= d->queue.breaker_threshold)
                breaker = "half-open";
        }
        rc = hv_buf_printf(b,
                           "%s{\"name\":\"%s\",\"type\":\"%s\",\"workers\":%lld,\"paused\":%s,"
                           "\"circuit\":\"%s\",\"statistics\":{\"queued\":%lld,\"sent\":%lld,"
                           "\"dead_lettered\":%lld,\"discarded\":%lld,\"failed_attempts\":%llu}}",
                           i ? "," : "", d->name, d->type, (long long)d->queue.workers,
                           paused ? "true" : "false", breaker,
                           (long long)stat_of(s, id, d->name, "queued"),
                           (long long)stat_of(s, id, d->name, "sent"),
                           (long long)stat_of(s, id, d->name, "dead"),
                           (long long)stat_of(s, id, d->name, "discarded"), failed);
    }
    if (rc == HV_OK) rc = hv_buf_puts(b, "]}");
    return rc;
}

static void stats_done(int status, void *arg) {
    stats_q_t *s = arg;
    hv_buf_t b;
    size_t i;
    int rc = HV_OK;
    hv_buf_init(&b, 0);
    if (status != HV_OK) {
        hv_http_respond_error(s->req, 503, "storage", "the channel store is unavailable");
        goto out;
    }
    if (s->channel[0] != '\0') {
        hv__chan_t *ch = hv__chan_find(s->rt, s->channel);
        if (ch == NULL) {
            hv_http_respond_error(s->req, 404, "not-found", "no such channel");
            goto out;
        }
        rc = put_channel(&b, s, ch);
    } else {
        rc = hv_buf_puts(&b, "{\"channels\":[");
        for (i = 0; rc == HV_OK && i < s->rt->nchans; i++) {
            if (i > 0) rc = hv_buf_putc(&b, ',');
            if (rc == HV_OK) rc = put_channel(&b, s, s->rt->chans[i]);
        }
        if (rc == HV_OK) rc = hv_buf_puts(&b, "],\"last_refused\":");
        if (rc == HV_OK)
            rc = s->rt->last_error[0] ? hv_buf_json_str(&b, s->rt->last_error,
                                                        strlen(s->rt->last_error))
                                      : hv_buf_puts(&b, "null");
        if (rc == HV_OK) rc = hv_buf_putc(&b, '}');
    }
    if (rc != HV_OK) hv_http_respond_error(s->req, 500, "internal", "could not build the answer");
    else hv_http_respond_buf(s->req, 200, "application/json", &b);
out:
    hv_buf_release(&b);
    hv_free(s->rows);
    hv_free(s);
}

static void route_list(hv_http_req_t *req, void *ud) {
    hv__chans_t *rt = ud;
    const char *id = hv_http_req_param(req, "id");
    stats_q_t *s = hv_calloc(1, sizeof(*s));
    if (s == NULL) {
        hv_http_respond_error(req, 503, "memory", "out of memory");
        return;
    }
    s->req = req;
    s->rt = rt;
    if (id != NULL) {
        if (hv__chan_find(rt, id) == NULL) {
            hv_free(s);
            hv_http_respond_error(req, 404, "not-found", "no such channel");
            return;
        }
        snprintf(s->channel, sizeof(s->channel), "%s", id);
    }
    if (hv_storage_submit(rt->storage, stats_job, stats_done, s) != HV_OK) {
        hv_http_respond_error(req, 503, "busy", "the channel store is busy; retry");
        hv_free(s);
    }
}

/* ------------------------------------------------------------------------- */
/* Operating: deploy, start/stop/pause, destination pause/resume             */
/* ------------------------------------------------------------------------- */

static void respond_ok(hv_http_req_t *req, const char *id, const char *what) {
    char body[256];
    snprintf(body, sizeof(body), "{\"id\":\"%s\",\"result\":\"%s\"}", id, what);
    hv_http_respond(req, 200, "application/json", body, strlen(body));
}

static void route_action(hv_http_req_t *req, void *ud) {
    hv__chans_t *rt = ud;
    const char *route = hv_http_req_route(req);
    const char *action = strrchr(route, '/') + 1;
    const char *id = hv_http_req_param(req, "id");
    hv__chan_t *ch = hv__chan_find(rt, id);
    if (strcmp(action, "deploy") == 0) {
        /* Re-reads the directory: the file of this channel is (re)deployed, or refused. */
        rt->last_error[0] = '\0';
        hv__chans_reload(rt);
        ch = hv__chan_find(rt, id);
        if (rt->last_error[0] != '\0' && strstr(rt->last_error, id) != NULL) {
            hv_http_respond_error(req, 422, "invalid", "%s", rt->last_error);
            return;
        }
        if (ch == NULL) {
            hv_http_respond_error(req, 404, "not-found", "no channel file defines %s", id);
            return;
        }
        respond_ok(req, id, "deployed");
        return;
    }
    if (ch == NULL) {
        hv_http_respond_error(req, 404, "not-found", "no such channel");
        return;
    }
    if (strcmp(action, "undeploy") == 0) {
        hv__chan_undeploy(rt, ch);
        respond_ok(req, id, "undeployed");
    } else if (strcmp(action, "start") == 0) {
        hv__chan_set_state(ch, HV__CHAN_STARTED);
        respond_ok(req, id, "started");
    } else if (strcmp(action, "stop") == 0) {
        hv__chan_set_state(ch, HV__CHAN_STOPPED);
        respond_ok(req, id, "stopped");
    } else if (strcmp(action, "pause") == 0) {
        hv__chan_set_state(ch, HV__CHAN_PAUSED);
        respond_ok(req, id, "paused");
    } else {
        hv_http_respond_error(req, 404, "not-found", "no such action");
    }
}

static void route_dest_action(hv_http_req_t *req, void *ud) {
    hv__chans_t *rt = ud;
    hv__chan_t *ch = hv__chan_or_404(req, rt);
    const char *route = hv_http_req_route(req);
    const char *dest = hv_http_req_param(req, "dest");
    size_t i;
    if (ch == NULL) return;
    {
        int found = 0;
        for (i = 0; i < ch->nworkers; i++) {
            if (strcmp(ch->workers[i]->conf->name, dest) != 0) continue;
            hv__worker_set_paused(ch->workers[i], strstr(route, "/pause") != NULL);
            found = 1;
        }
        if (found) respond_ok(req, dest, strstr(route, "/pause") ? "paused" : "resumed");
        else hv_http_respond_error(req, 404, "not-found", "no such destination");
    }
}

/* ------------------------------------------------------------------------- */
/* Message browser                                                           */
/* ------------------------------------------------------------------------- */

static int list_job(hv_db_t *db, void *arg) {
    query_t *q = arg;
    hv_db_stmt_t *st = NULL;
    int64_t n = 0, last = 0;
    int rc;
    /* SQLite (full-text search, cursor queues): the derived status (channel_rt.h);
     * PostgreSQL (content search by POSITION): the stored one. */
    const char *sql_fts =
        "SELECT id, received_at, " HV__CHAN_STATUS_SQL("m") ", content_type, size, error,"
        " filtered_by, source_key, outcome FROM chan_messages m WHERE channel = $1 AND id < $2"
        " AND ($4 = '' OR content_type = $4) AND received_at >= $5 AND received_at <= $6"
        " AND id IN (SELECT rowid FROM chan_fts WHERE chan_fts MATCH $7)"
        " AND ($3 = '' OR " HV__CHAN_STATUS_SQL("m") " = $3) ORDER BY id DESC LIMIT $8";
    const char *sql_plain =
        "SELECT id, received_at, status, content_type, size, error, filtered_by, source_key, outcome"
        " FROM chan_messages WHERE channel = $1 AND id < $2 AND ($3 = '' OR status = $3)"
        " AND ($4 = '' OR content_type = $4) AND received_at >= $5 AND received_at <= $6"
        " AND ($7 = '' OR POSITION($7 IN CONVERT_FROM(content, 'UTF8')) > 0)"
        " ORDER BY id DESC LIMIT $8";
    const char *sql_none_pg =
        "SELECT id, received_at, status, content_type, size, error, filtered_by, source_key, outcome"
        " FROM chan_messages WHERE channel = $1 AND id < $2 AND ($3 = '' OR status = $3)"
        " AND ($4 = '' OR content_type = $4) AND received_at >= $5 AND received_at <= $6"
        " AND $7 = '' ORDER BY id DESC LIMIT $8";
    const char *sql_none_sqlite =
        "SELECT id, received_at, " HV__CHAN_STATUS_SQL("m") ", content_type, size, error,"
        " filtered_by, source_key, outcome FROM chan_messages m WHERE channel = $1 AND id < $2"
        " AND ($4 = '' OR content_type = $4) AND received_at >= $5 AND received_at <= $6"
        " AND $7 = '' AND ($3 = '' OR " HV__CHAN_STATUS_SQL("m") " = $3)"
        " ORDER BY id DESC LIMIT $8";
    const char *sql_none = q->rt->shared ? sql_none_pg : sql_none_sqlite;
    const char *sql = q->text == NULL ? sql_none : q->rt->fts ? sql_fts : sql_plain;
    /* Indexing is deferred: first index what was stored since, so the search sees it all. */
    if (sql == sql_fts && (rc = hv__chan_fts_catch_up(db, q->rt, 0)) != HV_OK) return rc;
    rc = hv_db_prepare(db, sql, &st);
    if (rc != HV_OK) return rc;
    hv_db_bind_text(st, 1, q->channel, strlen(q->channel));
    hv_db_bind_int64(st, 2, q->id > 0 ? q->id : INT64_MAX);
    hv_db_bind_text(st, 3, q->status, strlen(q->status));
    hv_db_bind_text(st, 4, q->type, strlen(q->type));
    hv_db_bind_int64(st, 5, q->since);
    hv_db_bind_int64(st, 6, q->until > 0 ? q->until : INT64_MAX);
    hv_db_bind_text(st, 7, q->text ? q->text : "", q->text ? strlen(q->text) : 0);
    hv_db_bind_int64(st, 8, q->limit + 1);
    rc = hv_buf_puts(&q->body, "{\"messages\":[");
    while (rc == HV_OK && (rc = hv_db_step(st)) == HV_DB_ROW) {
        char ts[40];
        rc = HV_OK;
        if (n == q->limit) {
            n++;
            break;
        }
        hv_time_rfc3339((uint64_t)hv_db_column_int64(st, 1), ts, sizeof(ts));
        last = hv_db_column_int64(st, 0);
        rc = hv_buf_printf(&q->body, "%s{\"id\":\"%lld\",\"received_at\":\"%s\",\"status\":",
                           n ? "," : "", (long long)last, ts);
        if (rc == HV_OK) rc = put_col(&q->body, st, 2);
        if (rc == HV_OK) rc = hv_buf_puts(&q->body, ",\"content_type\":");
        if (rc == HV_OK) rc = put_col(&q->body, st, 3);
        if (rc == HV_OK)
            rc = hv_buf_printf(&q->body, ",\"size\":%lld,\"error\":",
                               (long long)hv_db_column_int64(st, 4));
        if (rc == HV_OK) rc = put_col(&q->body, st, 5);
        if (rc == HV_OK) rc = hv_buf_puts(&q->body, ",\"filtered_by\":");
        if (rc == HV_OK) rc = put_col(&q->body, st, 6);
        if (rc == HV_OK) rc = hv_buf_puts(&q->body, ",\"source_key\":");
        if (rc == HV_OK) rc = put_col(&q->body, st, 7);
        if (rc == HV_OK) rc = hv_buf_puts(&q->body, ",\"outcome\":");
        if (rc == HV_OK) rc = put_outcome(&q->body, st, 8);
        if (rc == HV_OK) rc = hv_buf_putc(&q->body, '}');
        n++;
    }
    hv_db_done(st);
    if (rc < 0) return rc;
    if (n > q->limit) rc = hv_buf_printf(&q->body, "],\"next\":\"%lld\"}", (long long)last);
    else rc = hv_buf_puts(&q->body, "],\"next\":null}");
    q->found = 1;
    return rc;
}

/* An FTS5 query from user text: each word quoted, so no operator syntax leaks in. */
static char *fts_query(const char *text) {
    hv_buf_t b;
    const char *p = text;
    hv_buf_init(&b, 4096);
    while (*p) {
        const char *s;
        while (*p == ' ') p++;
        if (*p == '\0') break;
        s = p;
        while (*p && *p != ' ') p++;
        if (b.len > 0 && hv_buf_putc(&b, ' ') != HV_OK) break;
        if (hv_buf_putc(&b, '"') != HV_OK) break;
        for (; s < p; s++) {
            int rc = *s == '"' ? hv_buf_puts(&b, "\"\"") : hv_buf_putc(&b, *s);
            if (rc != HV_OK) break;
        }
        if (hv_buf_putc(&b, '"') != HV_OK) break;
    }
    if (b.len == 0) {
        hv_buf_release(&b);
        return NULL;
    }
    return hv_buf_take(&b);
}

static void route_messages(hv_http_req_t *req, void *ud) {
    hv__chans_t *rt = ud;
    const char *id = hv_http_req_param(req, "id");
    const char *v;
    query_t *q;
    if (hv__chan_find(rt, id) == NULL) {
        hv_http_respond_error(req, 404, "not-found", "no such channel");
        return;
    }
    q = query_new(req, rt, id);
    if (q == NULL) return;
    q->limit = 50;
    if ((v = hv_http_req_query_param(req, "limit")) != NULL &&
        (parse_i64(v, &q->limit) != HV_OK || q->limit < 1 || q->limit > 1000)) {
        hv_http_respond_error(req, 400, "invalid", "limit must be 1 to 1000");
        query_free(q);
        return;
    }
    if ((v = hv_http_req_query_param(req, "cursor")) != NULL && parse_i64(v, &q->id) != HV_OK) {
        hv_http_respond_error(req, 400, "invalid", "cursor is not valid");
        query_free(q);
        return;
    }
    if ((v = hv_http_req_query_param(req, "since")) != NULL && parse_i64(v, &q->since) != HV_OK) {
        hv_http_respond_error(req, 400, "invalid", "since is ms since the epoch");
        query_free(q);
        return;
    }
    if ((v = hv_http_req_query_param(req, "until")) != NULL && parse_i64(v, &q->until) != HV_OK) {
        hv_http_respond_error(req, 400, "invalid", "until is ms since the epoch");
        query_free(q);
        return;
    }
    if ((v = hv_http_req_query_param(req, "status")) != NULL)
        snprintf(q->status, sizeof(q->status), "%s", v);
    if ((v = hv_http_req_query_param(req, "type")) != NULL)
        snprintf(q->type, sizeof(q->type), "%s", v);
    if ((v = hv_http_req_query_param(req, "text")) != NULL && v[0] != '\0') {
        q->text = rt->fts ? fts_query(v) : hv_strdup(v);
    }
    query_submit(q, list_job, NULL);
}

static int get_job(hv_db_t *db, void *arg) {
    query_t *q = arg;
    hv_db_stmt_t *st = NULL;
    int rc, n = 0;
    char ts[40];
    rc = hv_db_prepare(db,
                       q->rt->shared
                           ? "SELECT id, received_at, status, content_type, size, error,"
                             " filtered_by, content, transformed, parent_id, source_key, outcome"
                             " FROM chan_messages WHERE channel = $1 AND id = $2"
                           : "SELECT id, received_at, " HV__CHAN_STATUS_SQL("m") ", content_type,"
                             " size, error, filtered_by, content, transformed, parent_id,"
                             " source_key, outcome FROM chan_messages m WHERE channel = $1"
                             " AND id = $2",
                       &st);
    if (rc != HV_OK) return rc;
    hv_db_bind_text(st, 1, q->channel, strlen(q->channel));
    hv_db_bind_int64(st, 2, q->id);
    rc = hv_db_step(st);
    if (rc != HV_DB_ROW) {
        hv_db_done(st);
        return rc < 0 ? rc : HV_OK;
    }
    q->found = 1;
    hv_time_rfc3339((uint64_t)hv_db_column_int64(st, 1), ts, sizeof(ts));
    rc = hv_buf_printf(&q->body, "{\"id\":\"%lld\",\"received_at\":\"%s\",\"status\":",
                       (long long)q->id, ts);
    if (rc == HV_OK) rc = put_col(&q->body, st, 2);
    if (rc == HV_OK) rc = hv_buf_puts(&q->body, ",\"content_type\":");
    if (rc == HV_OK) rc = put_col(&q->body, st, 3);
    if (rc == HV_OK)
        rc = hv_buf_printf(&q->body, ",\"size\":%lld,\"error\":", (long long)hv_db_column_int64(st, 4));
    if (rc == HV_OK) rc = put_col(&q->body, st, 5);
    if (rc == HV_OK) rc = hv_buf_puts(&q->body, ",\"filtered_by\":");
    if (rc == HV_OK) rc = put_col(&q->body, st, 6);
    if (rc == HV_OK) rc = hv_buf_puts(&q->body, ",\"content\":");
    if (rc == HV_OK) rc = put_content(&q->body, st, 7);
    if (rc == HV_OK) rc = hv_buf_puts(&q->body, ",\"transformed\":");
    if (rc == HV_OK) rc = put_content(&q->body, st, 8);
    if (rc == HV_OK && !hv_db_column_is_null(st, 9))
        rc = hv_buf_printf(&q->body, ",\"parent\":\"%lld\"", (long long)hv_db_column_int64(st, 9));
    if (rc == HV_OK) rc = hv_buf_puts(&q->body, ",\"source_key\":");
    if (rc == HV_OK) rc = put_col(&q->body, st, 10);
    if (rc == HV_OK) rc = hv_buf_puts(&q->body, ",\"outcome\":");
    if (rc == HV_OK) rc = put_outcome(&q->body, st, 11);
    hv_db_done(st);
    if (rc != HV_OK) return rc;
    /* A split message: the ids of its parts (each a message of its own). */
    rc = hv_db_prepare(db, "SELECT id FROM chan_messages WHERE parent_id = $1 ORDER BY id LIMIT 10001",
                       &st);
    if (rc != HV_OK) return rc;
    hv_db_bind_int64(st, 1, q->id);
    while (rc == HV_OK && (rc = hv_db_step(st)) == HV_DB_ROW)
        rc = hv_buf_printf(&q->body, "%s\"%lld\"", n++ ? "," : ",\"parts\":[",
                           (long long)hv_db_column_int64(st, 0));
    hv_db_done(st);
    if (rc < 0) return rc;
    if (n > 0 && (rc = hv_buf_putc(&q->body, ']')) != HV_OK) return rc;
    n = 0;
    /* A cursor destination without a row for the message: sent once its cursor passed
     * it (one attempt), queued before. */
    rc = hv_db_prepare(db,
                       q->rt->shared
                           ? "SELECT dest, state, attempts, next_at, last_error, updated_at FROM"
                             " chan_queue WHERE message_id = $1 ORDER BY id"
                           : "SELECT dest, state, attempts, next_at, last_error, updated_at FROM"
                             " (SELECT 0 AS k, id, dest, state, attempts, next_at, last_error,"
                             " updated_at FROM chan_queue WHERE message_id = $1 UNION ALL SELECT"
                             " 1, 0, c.dest, CASE WHEN c.last_id >= m.id THEN 'sent' ELSE"
                             " 'queued' END, CASE WHEN c.last_id >= m.id THEN 1 ELSE 0 END, 0,"
                             " NULL, 0 FROM chan_messages m JOIN chan_cursors c ON c.channel ="
                             " m.channel WHERE m.id = $1 AND instr(m.route, ',' || c.dest || ',')"
                             " > 0 AND NOT EXISTS (SELECT 1 FROM chan_queue r WHERE r.message_id ="
                             " $1 AND r.dest = c.dest)) ORDER BY k, id, dest",
                       &st);
    if (rc != HV_OK) return rc;
    hv_db_bind_int64(st, 1, q->id);
    rc = hv_buf_puts(&q->body, ",\"destinations\":[");
    while (rc == HV_OK && (rc = hv_db_step(st)) == HV_DB_ROW) {
        rc = hv_buf_puts(&q->body, n++ ? ",{\"name\":" : "{\"name\":");
        if (rc == HV_OK) rc = put_col(&q->body, st, 0);
        if (rc == HV_OK) rc = hv_buf_puts(&q->body, ",\"state\":");
        if (rc == HV_OK) rc = put_col(&q->body, st, 1);
        if (rc == HV_OK)
            rc = hv_buf_printf(&q->body, ",\"attempts\":%lld,\"last_error\":",
                               (long long)hv_db_column_int64(st, 2));
        if (rc == HV_OK) rc = put_col(&q->body, st, 4);
        if (rc == HV_OK) rc = hv_buf_putc(&q->body, '}');
    }
    hv_db_done(st);
    if (rc < 0) return rc;
    return hv_buf_puts(&q->body, "]}");
}

static void route_message(hv_http_req_t *req, void *ud) {
    hv__chans_t *rt = ud;
    query_t *q;
    int64_t mid = 0;
    if (hv__chan_find(rt, hv_http_req_param(req, "id")) == NULL ||
        parse_i64(hv_http_req_param(req, "mid"), &mid) != HV_OK) {
        hv_http_respond_error(req, 404, "not-found", "no such message");
        return;
    }
    q = query_new(req, rt, hv_http_req_param(req, "id"));
    if (q == NULL) return;
    q->id = mid;
    query_submit(q, get_job, NULL);
}

/* ------------------------------------------------------------------------- */
/* Reprocess                                                                 */
/* ------------------------------------------------------------------------- */

static int load_raw_job(hv_db_t *db, void *arg) {
    query_t *q = arg;
    hv_db_stmt_t *st = NULL;
    int rc = hv_db_prepare(db,
                           "SELECT content, content_type, received_at, parent_id FROM chan_messages"
                           " WHERE channel = $1 AND id = $2 AND content IS NOT NULL",
                           &st);
    if (rc != HV_OK) return rc;
    hv_db_bind_text(st, 1, q->channel, strlen(q->channel));
    hv_db_bind_int64(st, 2, q->id);
    rc = hv_db_step(st);
    if (rc == HV_DB_ROW) {
        size_t n = 0, tn = 0;
        const void *p = hv_db_column_blob(st, 0, &n);
        const char *ct = hv_db_column_text(st, 1, &tn);
        q->found = 1;
        q->since = hv_db_column_int64(st, 2);
        q->is_part = !hv_db_column_is_null(st, 3);
        rc = hv_buf_append(&q->body, p, n);
        snprintf(q->type, sizeof(q->type), "%.*s", (int)tn, ct ? ct : "");
    }
    hv_db_done(st);
    return rc < 0 ? rc : HV_OK;
}

static void reprocess_stored(int status, int64_t id, void *ud) {
    hv_http_req_t *req = ud;
    char body[96];
    if (status != HV_OK) {
        hv_http_respond_error(req, 503, "storage", "the message could not be reprocessed");
        return;
    }
    snprintf(body, sizeof(body), "{\"id\":\"%lld\",\"result\":\"reprocessed\"}", (long long)id);
    hv_http_respond(req, 200, "application/json", body, strlen(body));
}

static void load_raw_done(int status, void *arg) {
    query_t *q = arg;
    hv__chan_t *ch = hv__chan_find(q->rt, q->channel);
    int rc;
    if (status != HV_OK) {
        hv_http_respond_error(q->req, 503, "storage", "the channel store is unavailable");
    } else if (!q->found || ch == NULL) {
        hv_http_respond_error(q->req, 404, "not-found",
                              "no such message, or its content was not kept");
    } else {
        hv__ingest_opts_t o;
        memset(&o, 0, sizeof(o));
        o.content = q->body.data ? q->body.data : "";
        o.len = q->body.len;
        o.content_type = q->type;
        o.reprocess_id = q->id;
        o.received_at = (uint64_t)q->since;
        o.is_part = q->is_part;
        rc = hv__chan_ingest_ex(ch, &o, reprocess_stored, q->req);
        if (rc != HV_OK) reprocess_stored(rc, 0, q->req);
    }
    query_free(q);
}

static void route_reprocess(hv_http_req_t *req, void *ud) {
    hv__chans_t *rt = ud;
    query_t *q;
    int64_t mid = 0;
    if (hv__chan_find(rt, hv_http_req_param(req, "id")) == NULL ||
        parse_i64(hv_http_req_param(req, "mid"), &mid) != HV_OK) {
        hv_http_respond_error(req, 404, "not-found", "no such message");
        return;
    }
    q = query_new(req, rt, hv_http_req_param(req, "id"));
    if (q == NULL) return;
    q->id = mid;
    query_submit(q, load_raw_job, load_raw_done);
}

/*
 * Bulk: POST /channels/:id/reprocess?status=&since=&until=&limit= reprocesses the
 * oldest matching messages whose content was kept (at most `limit`, default 100,
 * cap 1000 per request; repeat for more). Answers {"reprocessed": n}.
 */
typedef struct bulk {
    hv_http_req_t *req;
    hv__chans_t *rt;
    char channel[HV__CHAN_ID_MAX + 1];
    char status[16];
    int64_t since, until, limit;
    struct brow {
        int64_t id;
        uint64_t received_at;
        char *content;
        size_t len;
        char *ctype;
        int is_part;
    } *rows;
    size_t n, done, failed;
    uint64_t bytes;
} bulk_t;

static void bulk_free(bulk_t *b) {
    size_t i;
    for (i = 0; i < b->n; i++) {
        hv_free(b->rows[i].content);
        hv_free(b->rows[i].ctype);
    }
    hv_free(b->rows);
    hv_free(b);
}

static int bulk_job(hv_db_t *db, void *arg) {
    bulk_t *b = arg;
    hv_db_stmt_t *st = NULL;
    int rc = hv_db_prepare(db,
                           b->rt->shared
                               ? "SELECT id, received_at, content, content_type, parent_id FROM"
                                 " chan_messages WHERE channel = $1 AND ($2 = '' OR status = $2)"
                                 " AND received_at >= $3 AND received_at <= $4 AND content IS NOT"
                                 " NULL ORDER BY id LIMIT $5"
                               : "SELECT id, received_at, content, content_type, parent_id FROM"
                                 " chan_messages m WHERE channel = $1 AND received_at >= $3 AND"
                                 " received_at <= $4 AND content IS NOT NULL AND ($2 = '' OR "
                                 HV__CHAN_STATUS_SQL("m") " = $2) ORDER BY id LIMIT $5",
                           &st);
    if (rc != HV_OK) return rc;
    hv_db_bind_text(st, 1, b->channel, strlen(b->channel));
    hv_db_bind_text(st, 2, b->status, strlen(b->status));
    hv_db_bind_int64(st, 3, b->since);
    hv_db_bind_int64(st, 4, b->until > 0 ? b->until : INT64_MAX);
    hv_db_bind_int64(st, 5, b->limit);
    b->rows = hv_calloc((size_t)b->limit, sizeof(*b->rows));
    if (b->rows == NULL) {
        hv_db_done(st);
        return HV_ENOMEM;
    }
    /* Content is held in memory until reprocessed: at most 64 MiB per request. */
    while ((rc = hv_db_step(st)) == HV_DB_ROW && b->bytes < (64u << 20)) {
        size_t n = 0, tn = 0;
        const void *p = hv_db_column_blob(st, 2, &n);
        const char *ct = hv_db_column_text(st, 3, &tn);
        struct brow *r = &b->rows[b->n];
        r->id = hv_db_column_int64(st, 0);
        r->received_at = (uint64_t)hv_db_column_int64(st, 1);
        r->is_part = !hv_db_column_is_null(st, 4);
        r->content = hv_malloc(n + 1);
        r->ctype = hv_strndup(ct ? ct : "", tn);
        if (r->content == NULL || r->ctype == NULL) {
            hv_free(r->content);
            hv_free(r->ctype);
            rc = HV_ENOMEM;
            break;
        }
        if (n) memcpy(r->content, p, n);
        r->len = n;
        b->bytes += n;
        b->n++;
    }
    hv_db_done(st);
    return rc < 0 ? rc : HV_OK;
}

static void bulk_answer(bulk_t *b) {
    char body[96];
    snprintf(body, sizeof(body), "{\"reprocessed\":%zu,\"failed\":%zu}", b->n - b->failed,
             b->failed);
    hv_http_respond(b->req, 200, "application/json", body, strlen(body));
    bulk_free(b);
}

static void bulk_one_done(int status, int64_t id, void *ud) {
    bulk_t *b = ud;
    (void)id;
    if (status != HV_OK) b->failed++;
    if (++b->done == b->n) bulk_answer(b);
}

static void bulk_loaded(int status, void *arg) {
    bulk_t *b = arg;
    hv__chan_t *ch = hv__chan_find(b->rt, b->channel);
    size_t i, submitted = 0;
    if (status != HV_OK || ch == NULL) {
        hv_http_respond_error(b->req, 503, "storage", "the channel store is unavailable");
        bulk_free(b);
        return;
    }
    if (b->n == 0) {
        bulk_answer(b);
        return;
    }
    for (i = 0; i < b->n; i++) {
        hv__ingest_opts_t o;
        memset(&o, 0, sizeof(o));
        o.content = b->rows[i].content;
        o.len = b->rows[i].len;
        o.content_type = b->rows[i].ctype;
        o.reprocess_id = b->rows[i].id;
        o.received_at = b->rows[i].received_at;
        o.is_part = b->rows[i].is_part;
        if (hv__chan_ingest_ex(ch, &o, bulk_one_done, b) == HV_OK)
            submitted++;
        else
            b->failed++;
    }
    b->done += b->n - submitted;
    if (submitted == 0) bulk_answer(b);
}

static void route_bulk_reprocess(hv_http_req_t *req, void *ud) {
    hv__chans_t *rt = ud;
    const char *id = hv_http_req_param(req, "id"), *v;
    bulk_t *b;
    if (hv__chan_find(rt, id) == NULL) {
        hv_http_respond_error(req, 404, "not-found", "no such channel");
        return;
    }
    b = hv_calloc(1, sizeof(*b));
    if (b == NULL) {
        hv_http_respond_error(req, 503, "memory", "out of memory");
        return;
    }
    b->req = req;
    b->rt = rt;
    b->limit = 100;
    snprintf(b->channel, sizeof(b->channel), "%s", id);
    if ((v = hv_http_req_query_param(req, "status")) != NULL) snprintf(b->status, sizeof(b->status), "%s", v);
    if (((v = hv_http_req_query_param(req, "limit")) != NULL &&
         (parse_i64(v, &b->limit) != HV_OK || b->limit < 1 || b->limit > 1000)) ||
        ((v = hv_http_req_query_param(req, "since")) != NULL && parse_i64(v, &b->since) != HV_OK) ||
        ((v = hv_http_req_query_param(req, "until")) != NULL && parse_i64(v, &b->until) != HV_OK)) {
        hv_http_respond_error(req, 400, "invalid", "limit is 1 to 1000; since/until are ms since the epoch");
        hv_free(b);
        return;
    }
    if (hv_storage_submit(rt->storage, bulk_job, bulk_loaded, b) != HV_OK) {
        hv_http_respond_error(req, 503, "busy", "the channel store is busy; retry");
        hv_free(b);
    }
}

/* ------------------------------------------------------------------------- */
/* Dead letters                                                              */
/* ------------------------------------------------------------------------- */

static int dead_list_job(hv_db_t *db, void *arg) {
    query_t *q = arg;
    hv_db_stmt_t *st = NULL;
    int rc, n = 0;
    rc = hv_db_prepare(db,
                       "SELECT id, dest, message_id, attempts, last_error, updated_at FROM"
                       " chan_queue WHERE channel = $1 AND state = 'dead' AND ($2 = '' OR dest = $2)"
                       " ORDER BY id LIMIT 1000",
                       &st);
    if (rc != HV_OK) return rc;
    hv_db_bind_text(st, 1, q->channel, strlen(q->channel));
    hv_db_bind_text(st, 2, q->dest, strlen(q->dest));
    rc = hv_buf_puts(&q->body, "{\"dead_letters\":[");
    while (rc == HV_OK && (rc = hv_db_step(st)) == HV_DB_ROW) {
        rc = hv_buf_printf(&q->body, "%s{\"message\":\"%lld\",\"destination\":", n++ ? "," : "",
                           (long long)hv_db_column_int64(st, 2));
        if (rc == HV_OK) rc = put_col(&q->body, st, 1);
        if (rc == HV_OK)
            rc = hv_buf_printf(&q->body, ",\"attempts\":%lld,\"last_error\":",
                               (long long)hv_db_column_int64(st, 3));
        if (rc == HV_OK) rc = put_col(&q->body, st, 4);
        if (rc == HV_OK) rc = hv_buf_putc(&q->body, '}');
    }
    hv_db_done(st);
    if (rc < 0) return rc;
    q->found = 1;
    return hv_buf_puts(&q->body, "]}");
}

static int dead_change_job(hv_db_t *db, void *arg) {
    query_t *q = arg;
    hv_db_stmt_t *st = NULL;
    int requeue = q->status[0] == 'r';
    int rc = hv_db_prepare(db,
                           requeue ? "UPDATE chan_queue SET state = 'queued', attempts = 0,"
                                     " next_at = 0, updated_at = $4 WHERE channel = $1 AND"
                                     " state = 'dead' AND ($2 = '' OR dest = $2) AND"
                                     " ($3 = 0 OR message_id = $3)"
                                   : "UPDATE chan_queue SET state = 'discarded', updated_at = $4"
                                     " WHERE channel = $1 AND state = 'dead' AND ($2 = '' OR"
                                     " dest = $2) AND ($3 = 0 OR message_id = $3)",
                           &st);
    if (rc != HV_OK) return rc;
    hv_db_bind_text(st, 1, q->channel, strlen(q->channel));
    hv_db_bind_text(st, 2, q->dest, strlen(q->dest));
    hv_db_bind_int64(st, 3, q->id);
    hv_db_bind_int64(st, 4, (int64_t)hv_now_ms());
    rc = hv_db_step(st);
    hv_db_done(st);
    if (rc < 0) return rc;
    q->changed = hv_db_changes(db);
    if (requeue && q->changed > 0) {
        rc = hv_db_prepare(db,
                           "UPDATE chan_messages SET status = 'queued' WHERE id IN (SELECT"
                           " message_id FROM chan_queue WHERE channel = $1 AND state = 'queued')"
                           " AND status NOT IN ('queued', 'cursor')",
                           &st);
        if (rc != HV_OK) return rc;
        hv_db_bind_text(st, 1, q->channel, strlen(q->channel));
        rc = hv_db_step(st);
        hv_db_done(st);
        if (rc < 0) return rc;
    }
    q->found = 1;
    return hv_buf_printf(&q->body, "{\"%s\":%lld}", requeue ? "requeued" : "discarded",
                         (long long)q->changed);
}

static void dead_change_done(int status, void *arg) {
    query_t *q = arg;
    hv__chan_t *ch = hv__chan_find(q->rt, q->channel);
    if (status == HV_OK && q->status[0] == 'r' && ch != NULL) hv__chan_wake(ch);
    query_done(status, arg);
}

static void route_dead(hv_http_req_t *req, void *ud) {
    hv__chans_t *rt = ud;
    const char *route = hv_http_req_route(req);
    const char *v;
    query_t *q;
    if (hv__chan_find(rt, hv_http_req_param(req, "id")) == NULL) {
        hv_http_respond_error(req, 404, "not-found", "no such channel");
        return;
    }
    q = query_new(req, rt, hv_http_req_param(req, "id"));
    if (q == NULL) return;
    if ((v = hv_http_req_query_param(req, "dest")) != NULL) snprintf(q->dest, sizeof(q->dest), "%s", v);
    if ((v = hv_http_req_query_param(req, "message")) != NULL && parse_i64(v, &q->id) != HV_OK) {
        hv_http_respond_error(req, 400, "invalid", "message is a message id");
        query_free(q);
        return;
    }
    if (strstr(route, "/requeue") != NULL) {
        snprintf(q->status, sizeof(q->status), "requeue");
        query_submit(q, dead_change_job, dead_change_done);
    } else if (strstr(route, "/discard") != NULL) {
        snprintf(q->status, sizeof(q->status), "discard");
        query_submit(q, dead_change_job, dead_change_done);
    } else {
        query_submit(q, dead_list_job, NULL);
    }
}

/* ------------------------------------------------------------------------- */
/* Pruning                                                                   */
/* ------------------------------------------------------------------------- */

typedef struct prune {
    hv__chans_t *rt;
    hv_http_req_t *req; /* POST /channels/:id/prune, or NULL for the timer */
    char channel[HV__CHAN_ID_MAX + 1];
    int64_t before;
    int keep_fts;
    int64_t deleted, total;              /* this job's, all jobs' */
    int64_t pages_before, pages_after;   /* SQLite page_count around the run */
    char **files;  /* content files of this job's deleted messages: removed after the commit */
    size_t nfiles;
} prune_t;

/* Loop thread, after the commit: removes the content files of the pruned messages. */
static void prune_unlink(prune_t *p) {
    size_t i;
    char path[4400];
    for (i = 0; i < p->nfiles; i++) {
        snprintf(path, sizeof(path), "%s/%s", p->rt->content_dir, p->files[i]);
        unlink(path);
        hv_free(p->files[i]);
    }
    hv_free(p->files);
    p->files = NULL;
    p->nfiles = 0;
}

/* Storage thread: collects the content files of the messages the job deletes. */
static int prune_collect(hv_db_t *db, const char *where, prune_t *p) {
    hv_db_stmt_t *st = NULL;
    char sql[4096];
    int rc;
    snprintf(sql, sizeof(sql),
             "SELECT content_file FROM chan_messages WHERE %s AND content_file IS NOT NULL AND id IN"
             " (SELECT id FROM chan_messages WHERE %s ORDER BY id LIMIT 1000)",
             where, where);
    rc = hv_db_prepare(db, sql, &st);
    if (rc != HV_OK) return rc;
    hv_db_bind_text(st, 1, p->channel, strlen(p->channel));
    hv_db_bind_int64(st, 2, p->before);
    while ((rc = hv_db_step(st)) == HV_DB_ROW) {
        size_t n = 0;
        const char *f = hv_db_column_text(st, 0, &n);
        char **grown;
        if (f == NULL || n == 0 || memchr(f, '/', n) != NULL) continue;
        grown = hv_realloc(p->files, (p->nfiles + 1) * sizeof(*grown));
        if (grown == NULL) {
            rc = HV_ENOMEM;
            break;
        }
        p->files = grown;
        if ((p->files[p->nfiles] = hv_strndup(f, n)) == NULL) {
            rc = HV_ENOMEM;
            break;
        }
        p->nfiles++;
    }
    hv_db_done(st);
    return rc < 0 ? rc : HV_OK;
}

static int64_t page_count(hv_db_t *db) {
    hv_db_stmt_t *st = NULL;
    int64_t n = -1;
    if (hv_db_prepare(db, "PRAGMA page_count", &st) != HV_OK) return -1;
    if (hv_db_step(st) == HV_DB_ROW) n = hv_db_column_int64(st, 0);
    hv_db_done(st);
    return n;
}

/* Runs one pruning statement whose $1 is the channel and $2 the cut-off. */
static int prune_exec(hv_db_t *db, const char *sql, const prune_t *p) {
    hv_db_stmt_t *st = NULL;
    int rc = hv_db_prepare(db, sql, &st);
    if (rc != HV_OK) return rc;
    hv_db_bind_text(st, 1, p->channel, strlen(p->channel));
    hv_db_bind_int64(st, 2, p->before);
    rc = hv_db_step(st);
    hv_db_done(st);
    return rc < 0 ? rc : HV_OK;
}

/* Deletes at most 1000 finished messages older than the cut-off per job, so that
 * pruning never holds the store for long; then gives pages back (incremental vacuum). */
static int prune_job(hv_db_t *db, void *arg) {
    prune_t *p = arg;
    int rc;
    /* Finished messages only: on SQLite a message stored as "cursor" is finished once it
     * is no longer pending (HV__CHAN_PENDING_SQL, channel_rt.h): no queued row, and every
     * cursor of its route past it — which the old messages pruning reaches are, when the
     * slowest cursor of the channel is (tested once, before the per-message test). */
    const char *where =
        p->rt->shared
            ? "channel = $1 AND received_at < $2 AND status <> 'queued'"
            : "channel = $1 AND received_at < $2 AND status <> 'queued' AND (status <> 'cursor'"
              " OR (NOT EXISTS (SELECT 1 FROM chan_queue dq WHERE dq.message_id ="
              " chan_messages.id AND dq.state = 'queued') AND (id <= (SELECT COALESCE(MIN(last_id),"
              " 9223372036854775807) FROM chan_cursors WHERE channel = $1) OR NOT EXISTS (SELECT 1"
              " FROM chan_cursors dc WHERE dc.channel = $1 AND dc.last_id < chan_messages.id AND"
              " instr(chan_messages.route, ',' || dc.dest || ',') > 0))))";
    char sql[4096];
    if (p->keep_fts && p->total == 0 && p->pages_before == 0) p->pages_before = page_count(db);
    if (p->keep_fts) {
        /* Exactly the rows and values hv__chan_fts_catch_up indexed (up to its mark). */
        snprintf(sql, sizeof(sql),
                 "INSERT INTO chan_fts (chan_fts, rowid, content) SELECT 'delete', id, "
                 HV__CHAN_FTS_VALUE("%zu") " FROM chan_messages WHERE %s AND " HV__CHAN_FTS_ROWS
                 " AND id <= (SELECT last_id FROM chan_fts_mark) AND id IN (SELECT id FROM"
                 " chan_messages WHERE %s ORDER BY id LIMIT 1000)",
                 p->rt->fts_max, where, where);
        rc = prune_exec(db, sql, p);
        if (rc != HV_OK) return rc;
    }
    if (p->rt->content_dir[0] != '\0' && (rc = prune_collect(db, where, p)) != HV_OK) return rc;
    snprintf(sql, sizeof(sql),
             "DELETE FROM chan_queue WHERE message_id IN (SELECT id FROM chan_messages WHERE %s"
             " ORDER BY id LIMIT 1000)",
             where);
    rc = prune_exec(db, sql, p);
    if (rc != HV_OK) return rc;
    snprintf(sql, sizeof(sql),
             "DELETE FROM chan_messages WHERE id IN (SELECT id FROM chan_messages WHERE %s"
             " ORDER BY id LIMIT 1000)",
             where);
    rc = prune_exec(db, sql, p);
    if (rc != HV_OK) return rc;
    p->deleted = hv_db_changes(db);
    p->total += p->deleted;
    /* SQLite: give the freed pages back to the file system (auto_vacuum is INCREMENTAL). */
    if (p->keep_fts) {
        rc = hv_db_exec(db, "PRAGMA incremental_vacuum(4096)");
        p->pages_after = page_count(db);
    }
    return rc;
}

/* Repeats while full chunks were deleted, so that each job stays short. */
static void prune_done(int status, void *arg) {
    prune_t *p = arg;
    if (status == HV_OK) {
        prune_unlink(p);
    } else {
        size_t i; /* not deleted: the files stay with their rows */
        for (i = 0; i < p->nfiles; i++) hv_free(p->files[i]);
        hv_free(p->files);
        p->files = NULL;
        p->nfiles = 0;
    }
    if (status == HV_OK && p->deleted == 1000 &&
        hv_storage_submit(p->rt->storage, prune_job, prune_done, p) == HV_OK)
        return;
    if (p->req != NULL) {
        char body[160];
        if (status != HV_OK) {
            hv_http_respond_error(p->req, 503, "storage", "pruning failed: %s", hv_strerror(status));
        } else {
            snprintf(body, sizeof(body), "{\"pruned\":%lld,\"pages_before\":%lld,\"pages_after\":%lld}",
                     (long long)p->total, (long long)p->pages_before, (long long)p->pages_after);
            hv_http_respond(p->req, 200, "application/json", body, strlen(body));
        }
    } else if (p->total > 0) {
        hv_log(HV_LOG_INFO, "channel.pruned", "%lld messages of %s", (long long)p->total, p->channel);
    }
    hv_free(p);
}

/* POST /channels/:id/prune[?before=MS]: prunes now (default cut-off: the retention). */
static void route_prune(hv_http_req_t *req, void *ud) {
    hv__chans_t *rt = ud;
    hv__chan_t *ch = hv__chan_or_404(req, rt);
    const char *v;
    prune_t *p;
    if (ch == NULL) return;
    p = hv_calloc(1, sizeof(*p));
    if (p == NULL) {
        hv_http_respond_error(req, 503, "memory", "out of memory");
        return;
    }
    p->rt = rt;
    p->req = req;
    p->keep_fts = rt->fts;
    snprintf(p->channel, sizeof(p->channel), "%s", ch->conf->id);
    p->before = ch->conf->retention_days > 0
                    ? (int64_t)hv_now_ms() - ch->conf->retention_days * 86400000LL
                    : 0;
    if ((v = hv_http_req_query_param(req, "before")) != NULL && parse_i64(v, &p->before) != HV_OK) {
        hv_http_respond_error(req, 400, "invalid", "before is ms since the epoch");
        hv_free(p);
        return;
    }
    if (hv_storage_submit(rt->storage, prune_job, prune_done, p) != HV_OK) {
        hv_http_respond_error(req, 503, "busy", "the channel store is busy; retry");
        hv_free(p);
    }
}

static void on_prune(uv_timer_t *t) {
    hv__chans_t *rt = t->data;
    size_t i;
    for (i = 0; i < rt->nchans; i++) {
        hv__chan_t *ch = rt->chans[i];
        prune_t *p;
        if (ch->conf->retention_days <= 0) continue;
        p = hv_calloc(1, sizeof(*p));
        if (p == NULL) return;
        p->rt = rt;
        p->keep_fts = rt->fts;
        snprintf(p->channel, sizeof(p->channel), "%s", ch->conf->id);
        p->before = (int64_t)hv_now_ms() - ch->conf->retention_days * 86400000LL;
        if (hv_storage_submit(rt->storage, prune_job, prune_done, p) != HV_OK) hv_free(p);
    }
}

void hv__chan_prune_start(hv__chans_t *rt) {
    uint64_t every = hv_config_duration_ms(hv_engine_config(rt->engine), "channels.prune_interval");
    if (every > 0) uv_timer_start(&rt->prune_timer, on_prune, every, every);
}

/* ------------------------------------------------------------------------- */
/* POST /events/:type — publishes an event on the bus (body: JSON payload)    */
/* ------------------------------------------------------------------------- */

static void event_published(int status, int64_t id, void *ud) {
    hv_http_req_t *req = ud;
    char body[64];
    if (status != HV_OK) {
        hv_http_respond_error(req, 503, "storage", "the event could not be stored");
        return;
    }
    snprintf(body, sizeof(body), "{\"id\":\"%lld\"}", (long long)id);
    hv_http_respond(req, 201, "application/json", body, strlen(body));
}

static void route_event(hv_http_req_t *req, void *ud) {
    hv__chans_t *rt = ud;
    const char *type = hv_http_req_param(req, "type");
    size_t len = 0;
    const char *body = hv_http_req_body(req, &len);
    int rc;
    (void)rt;
    rc = hv_event_publish(hv_http_req_engine(req), type, body ? body : "{}", body ? len : 2,
                          event_published, req);
    if (rc == HV_EINVAL) hv_http_respond_error(req, 400, "invalid", "not a valid event type");
    else if (rc != HV_OK) hv_http_respond_error(req, 503, "busy", "the event bus is busy; retry");
}

/* ------------------------------------------------------------------------- */

int hv__chan_routes_add(hv_engine_t *e, hv__chans_t *rt) {
    hv_router_t *r = hv_engine_router(e);
    static const char *const actions[] = {"deploy", "undeploy", "start", "stop", "pause", NULL};
    size_t i;
    int rc = HV_OK;
    if (r == NULL) return HV_OK;
    rc = hv_router_add(r, HV_HTTP_GET, "/channels", route_list, rt);
    if (rc == HV_OK) rc = hv_router_add(r, HV_HTTP_GET, "/channels/:id", route_list, rt);
    if (rc == HV_OK) rc = hv_router_add(r, HV_HTTP_POST, "/channels/:id/in", route_in, rt);
    if (rc == HV_OK) rc = hv_router_add(r, HV_HTTP_POST, "/events/:type", route_event, rt);
    for (i = 0; rc == HV_OK && actions[i] != NULL; i++) {
        char pat[64];
        snprintf(pat, sizeof(pat), "/channels/:id/%s", actions[i]);
        rc = hv_router_add(r, HV_HTTP_POST, pat, route_action, rt);
    }
    if (rc == HV_OK)
        rc = hv_router_add(r, HV_HTTP_POST, "/channels/:id/destinations/:dest/pause",
                           route_dest_action, rt);
    if (rc == HV_OK)
        rc = hv_router_add(r, HV_HTTP_POST, "/channels/:id/destinations/:dest/resume",
                           route_dest_action, rt);
    if (rc == HV_OK) rc = hv_router_add(r, HV_HTTP_GET, "/channels/:id/messages", route_messages, rt);
    if (rc == HV_OK)
        rc = hv_router_add(r, HV_HTTP_GET, "/channels/:id/messages/:mid", route_message, rt);
    if (rc == HV_OK)
        rc = hv_router_add(r, HV_HTTP_POST, "/channels/:id/messages/:mid/reprocess",
                           route_reprocess, rt);
    if (rc == HV_OK)
        rc = hv_router_add(r, HV_HTTP_POST, "/channels/:id/reprocess", route_bulk_reprocess, rt);
    if (rc == HV_OK) rc = hv_router_add(r, HV_HTTP_POST, "/channels/:id/prune", route_prune, rt);
    if (rc == HV_OK) rc = hv_router_add(r, HV_HTTP_GET, "/channels/:id/deadletter", route_dead, rt);
    if (rc == HV_OK)
        rc = hv_router_add(r, HV_HTTP_POST, "/channels/:id/deadletter/requeue", route_dead, rt);
    if (rc == HV_OK)
        rc = hv_router_add(r, HV_HTTP_POST, "/channels/:id/deadletter/discard", route_dead, rt);
    if (rc == HV_OK) rc = hv__chan_edit_routes_add(e, rt);
    return rc;
}
