/*
 * channel_read.c — one shared read of a channel's messages for all of its cursor
 * destinations (SQLite stores; docs/channels.md, "Queues").
 *
 * Every cursor destination of a channel reads the same rows of chan_messages: the
 * messages after its position whose route names it. Without sharing, each
 * destination's worker reads them with its own storage job, so a channel with two
 * destinations reads every message twice on the storage thread. Here a worker's
 * cursor fetch reads the channel's routed messages after its position (whatever
 * destinations they go to) and, besides taking its own, hands what it read to the
 * channel (hv__rows_offer). The channel keeps those rows — a contiguous range
 * (lo, hi] of ids in which it holds every routed message of the channel — and the
 * next worker that needs messages from inside that range takes them from memory
 * (hv__rows_serve): no storage job, no second read of the same rows.
 *
 * Why the memory copy is exact: a row of chan_messages is written once by the
 * storage thread and read back by it in id order (one writer, ids grow), so once a
 * fetch has read ids (lo, hi], no message of the channel can appear inside that
 * range later; what can change a read row is a reprocess (same id, new content and
 * route), and a requeue or reprocess also adds queue rows that a cursor must read
 * from the store. Both call hv__rows_reset before their storage job is submitted:
 * it drops the rows, bumps the channel's read generation (a fetch submitted before
 * then offers nothing: it may have read the old row) and makes each worker read
 * from the store next (rows_clear, set again by a fetch that found no queue row of
 * its destination). A retry of the worker's own holds its head: it does not fetch
 * until that message is done.
 *
 * Bounds: the channel keeps at most HV__ROWS_MAX rows and HV__ROWS_BYTES of content,
 * a row of at most HV__ROW_MAX_BYTES (a larger message ends the shared range and is
 * read by each destination from the store, as before); rows every cursor worker has
 * passed go at once. A message whose content is in a content file is shared as the
 * file's name: a destination that streams gets the path, another one reads it from
 * the store (the storage thread reads files, the loop thread never does).
 */
#include "config.h"
#include "engine/channel_rt.h"

#include <string.h>

/* The channel's shared rows, at most (see above). */
#define HV__ROWS_MAX 1024
#define HV__ROWS_BYTES (4u << 20)
#define HV__ROW_MAX_BYTES (64u << 10)

/* One row as read: one allocation holding the strings after the struct. */
struct hv__row {
    int64_t id, size;
    uint64_t received_at;
    size_t len;        /* content bytes (0 for a content file) */
    const char *route; /* ",a,b," */
    const char *content_type;
    const char *file; /* the content file's name in the content directory, or NULL */
    char *content;    /* NUL-terminated */
};

/* The shared rows of one channel version: rows[head..n) in id order, covering (lo, hi]. */
struct hv__rows {
    hv__row_t **row;
    size_t head, n;
    int64_t lo, hi;
    size_t bytes;
};

void hv__row_free(hv__row_t *r) { hv_free(r); }

hv__row_t *hv__row_new(int64_t id, const char *route, size_t route_len, const char *ct,
                       size_t ct_len, const void *content, size_t len, uint64_t received_at,
                       const char *file, size_t file_len, int64_t size) {
    size_t n = sizeof(hv__row_t) + route_len + ct_len + len + file_len + 4;
    hv__row_t *r;
    char *p;
    if (len > HV__ROW_MAX_BYTES || route == NULL) return NULL;
    r = hv_malloc(n);
    if (r == NULL) return NULL;
    p = (char *)(r + 1);
    r->id = id;
    r->size = size;
    r->received_at = received_at;
    r->len = file != NULL ? 0 : len;
    r->route = p;
    memcpy(p, route, route_len);
    p[route_len] = '\0';
    p += route_len + 1;
    r->content_type = p;
    if (ct_len > 0) memcpy(p, ct, ct_len);
    p[ct_len] = '\0';
    p += ct_len + 1;
    r->content = p;
    if (r->len > 0) memcpy(p, content, r->len);
    p[r->len] = '\0';
    p += r->len + 1;
    r->file = NULL;
    if (file != NULL) {
        memcpy(p, file, file_len);
        p[file_len] = '\0';
        r->file = p;
    }
    return r;
}

int64_t hv__row_id(const hv__row_t *r) { return r->id; }

/* 1 when the row's route names the worker's destination. */
static int routed_to(const hv__row_t *r, const hv__worker_t *w) {
    const char *name = w->conf->name, *p = r->route;
    size_t n = strlen(name);
    while ((p = strstr(p, name)) != NULL) {
        if (p > r->route && p[-1] == ',' && p[n] == ',') return 1;
        p += n;
    }
    return 0;
}

int hv__row_routed_to(const hv__row_t *r, const hv__worker_t *w) { return routed_to(r, w); }

/* See channel_rt.h. A content file is read only for a worker that does not stream
 * (hv__item_content_file): on the storage thread. */
int hv__item_fill(hv__worker_t *w, hv__item_t *it, const char *ct, size_t ct_len,
                  const void *content, size_t len, const char *file, size_t file_len,
                  int64_t size) {
    int rc = HV_OK;
    it->content_type = hv_strndup(ct ? ct : "", ct_len);
    if (it->content_type == NULL) {
        rc = HV_ENOMEM;
    } else if (file != NULL) {
        rc = hv__item_content_file(w, it, file, file_len, size);
    } else if ((it->content = hv_malloc(len + 1)) == NULL) {
        rc = HV_ENOMEM;
    } else {
        if (len > 0) memcpy(it->content, content, len);
        it->content[len] = '\0';
        it->len = len;
    }
    if (rc != HV_OK) {
        hv_free(it->content);
        hv_free(it->content_type);
        hv_free(it->file);
        it->content = it->content_type = it->file = NULL;
    }
    return rc;
}

/*
 * An item of w made from r (any thread; the loop thread only for a row without a
 * content file or a worker that streams, which reads no file). HV_OK or an error.
 */
int hv__item_from_row(hv__worker_t *w, hv__item_t *it, const hv__row_t *r) {
    memset(it, 0, sizeof(*it));
    it->mid = r->id;
    it->received_at = r->received_at;
    return hv__item_fill(w, it, r->content_type, strlen(r->content_type), r->content, r->len,
                         r->file, r->file != NULL ? strlen(r->file) : 0, r->size);
}

/* Drops the rows every cursor worker of ch has passed, then the oldest ones over the
 * bounds. */
static void rows_trim(hv__chan_t *ch) {
    hv__rows_t *c = ch->rows;
    int64_t low = INT64_MAX;
    size_t i;
    if (c == NULL) return;
    for (i = 0; i < ch->nworkers; i++) {
        const hv__worker_t *w = ch->workers[i];
        int64_t at = w->fetching ? w->fetch_from : w->pos; /* pos is the storage thread's */
        if (!w->cursor || w->closing) continue;
        if (!w->fetching && !w->pos_loaded) low = INT64_MIN; /* not started: keep everything */
        else if (at < low) low = at;
    }
    while (c->head < c->n &&
           (c->row[c->head]->id <= low || c->n - c->head > HV__ROWS_MAX || c->bytes > HV__ROWS_BYTES)) {
        hv__row_t *r = c->row[c->head];
        c->bytes -= r->len;
        c->lo = r->id; /* the range now starts after it */
        hv__row_free(r);
        c->row[c->head++] = NULL;
    }
    if (c->head == c->n) {
        c->head = c->n = 0;
        c->lo = c->hi; /* empty: nothing held, hi stays as the end of what was read */
    }
}

void hv__rows_reset(hv__chan_t *ch) {
    for (; ch != NULL; ch = ch->successor) {
        hv__rows_t *c = ch->rows;
        size_t i;
        ch->read_gen++;
        for (i = 0; i < ch->nworkers; i++) ch->workers[i]->rows_clear = 0;
        if (c == NULL) continue;
        for (i = c->head; i < c->n; i++) hv__row_free(c->row[i]);
        c->head = c->n = 0;
        c->bytes = 0;
        c->lo = c->hi = 0;
    }
}

void hv__rows_free(hv__chan_t *ch) {
    hv__rows_t *c = ch->rows;
    size_t i;
    if (c == NULL) return;
    for (i = c->head; i < c->n; i++) hv__row_free(c->row[i]);
    hv_free(c->row);
    hv_free(c);
    ch->rows = NULL;
}

void hv__rows_fetched_free(hv__worker_t *w) {
    size_t i;
    for (i = 0; i < w->nfetched; i++) hv__row_free(w->fetched[i]);
    hv_free(w->fetched);
    w->fetched = NULL;
    w->nfetched = 0;
}

/*
 * Loop thread, after w's fetch (fetch_done): the rows it read, covering (fetched_lo,
 * fetched_hi], join the channel's when the read generation did not change since the
 * fetch was submitted; else (or when they do not extend the channel's range) they go.
 */
void hv__rows_offer(hv__worker_t *w) {
    hv__chan_t *ch = w->ch;
    hv__rows_t *c = ch->rows;
    size_t i, from = 0;
    if (w->nfetched == 0 || w->closing || w->fetch_gen != ch->read_gen) goto out;
    if (c == NULL) {
        c = hv_calloc(1, sizeof(*c));
        if (c == NULL) goto out;
        c->row = hv_calloc(HV__ROWS_MAX * 2, sizeof(*c->row));
        if (c->row == NULL) {
            hv_free(c);
            goto out;
        }
        ch->rows = c;
    }
    if (c->n > c->head && w->fetched_lo <= c->hi && w->fetched_hi > c->hi) {
        /* Contiguous: what is new comes after hi. */
        while (from < w->nfetched && w->fetched[from]->id <= c->hi) from++;
    } else if (c->n == c->head || w->fetched_lo > c->hi || w->fetched_hi < c->lo) {
        /* Nothing held, or a gap: the fetched range replaces it. */
        for (i = c->head; i < c->n; i++) hv__row_free(c->row[i]);
        c->head = c->n = 0;
        c->bytes = 0;
        c->lo = w->fetched_lo;
        c->hi = w->fetched_lo;
    } else {
        goto out; /* inside what is held already */
    }
    if (c->head > 0 && c->n + (w->nfetched - from) > HV__ROWS_MAX * 2) {
        memmove(c->row, c->row + c->head, (c->n - c->head) * sizeof(*c->row));
        c->n -= c->head;
        c->head = 0;
    }
    for (i = from; i < w->nfetched && c->n < HV__ROWS_MAX * 2; i++) {
        c->row[c->n++] = w->fetched[i];
        c->bytes += w->fetched[i]->len;
        c->hi = w->fetched[i]->id;
        w->fetched[i] = NULL;
    }
    if (i == w->nfetched) c->hi = w->fetched_hi;
    rows_trim(ch);
out:
    hv__rows_fetched_free(w);
}

/*
 * Loop thread: fills w's empty items from the channel's rows when they cover its
 * position: the rows after it routed to its destination, up to its batch and
 * HV__CHAN_FETCH_BYTES. Returns the number of items (0: read from the store).
 */
size_t hv__rows_serve(hv__worker_t *w) {
    hv__chan_t *ch = w->ch;
    hv__rows_t *c = ch->rows;
    size_t i, lo, hi, bytes = 0;
    int64_t pos;
    if (c == NULL || c->n == c->head || !w->cursor || !w->pos_loaded || w->pos_reload ||
        !w->rows_clear || w->nitems != 0 || w->pos < c->lo || w->pos >= c->hi)
        return 0;
    /* The first row after the position (binary search: the rows are in id order). */
    lo = c->head;
    hi = c->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (c->row[mid]->id <= w->pos) lo = mid + 1;
        else hi = mid;
    }
    pos = w->pos;
    for (i = lo; i < c->n && w->nitems < (size_t)w->conf->queue.batch && bytes < HV__CHAN_FETCH_BYTES;
         i++) {
        const hv__row_t *r = c->row[i];
        if (routed_to(r, w)) {
            if (r->file != NULL && !hv__worker_streams(w)) break; /* the store reads it */
            if (hv__item_from_row(w, &w->items[w->nitems], r) != HV_OK) break;
            bytes += r->len;
            w->nitems++;
        }
        pos = r->id;
    }
    /* Past the last row held: the range is complete up to hi. */
    if (i == c->n) pos = c->hi;
    w->pos = pos;
    rows_trim(ch);
    return w->nitems;
}
