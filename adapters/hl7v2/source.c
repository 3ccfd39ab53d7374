/*
 * source.c — the `mllp` channel source: HL7 v2 over MLLP on libuv (HL7 v2.5.1
 * Appendix C, MLLP release 2; acknowledgement rules §2.9). It is the one MLLP
 * receiving path of the engine: the shipped hl7v2-inbound channel (or the
 * built-in one that the hl7v2 module registers for --mllp) and every channel
 * file with an mllp source run it.
 *
 * Per connection: bytes go through the resumable framer (mllp.c); each frame is
 * parsed (strict escapes, hl7v2.max_segments), given its ACK, and handed to the
 * channel's message store (hv_channel_receive_reply) together with that ACK;
 * the ACK is written once the store has committed (or, with the channel's
 * "response": "after-destinations", once the destinations are done: AE when they
 * time out or refuse). A connection may pipeline messages: ACKs leave in the
 * order the messages arrived (a FIFO of pending entries; the head is written as
 * soon as it is ready).
 *
 * Answers:
 *   - parsed, MSH-9 and MSH-10 present, stored      AA (CA in enhanced mode)
 *   - a resend: same MSH-3, MSH-4, MSH-10 within     the ACK its first copy got, byte
 *     dedup_window_ms (found by the store in the     for byte (stored with the message)
 *     insert's transaction)
 *   - a parse error, or MSH-9/MSH-10 missing         AR with an ERR saying where (§2.14.5)
 *   - a frame without a readable MSH                 AR with default MSH fields
 *   - the store busy or failing                      AE "send it again"
 * Limits:
 *   - a frame over max_message: the ACKs already due are written, then the
 *     connection is closed (no ACK for the oversized frame — it was not read);
 *     bytes outside a frame: likewise closed;
 *   - max_inflight unacknowledged messages, or 1 MiB of ACKs the peer has not
 *     read: reading pauses until they drain (back-pressure);
 *   - idle_timeout_ms without a byte: the connection is closed;
 *   - max_connections: further connections are accepted and closed at once.
 * Logs carry sizes, positions, codes and the peer address, never message content.
 *
 * TLS (tls_cert and tls_key): the port speaks TLS only (RFC 8446 / RFC 5246
 * through the engine's hv_tls_* over memory BIOs). Every read is fed to TLS and
 * the plaintext goes through the same framer; every reply is encrypted before it
 * is written, so framing, limits, back-pressure and ACK-after-commit do not
 * change. A handshake that fails — a plaintext client, a client without a
 * certificate signed by tls_client_ca — writes the TLS alert, closes the
 * connection and counts in hv_hl7v2_mllp_tls_handshake_failures_total. A
 * completed handshake logs the peer certificate's subject CN.
 */
#include "config.h"

#include <stdio.h>
#include <string.h>

#include <json-c/json.h>

#include "adapters/hl7v2/hl7v2_int.h"

#define CONTENT_TYPE "x-application/hl7-v2+er7"
#define MAX_PENDING_OUT (1u << 20)

typedef struct msrc msrc_t;
typedef struct mconn mconn_t;

typedef struct pending {
    struct pending *next;
    mconn_t *conn;
    hv_arena_t *arena;
    const char *raw; /* the frame (in the arena), for an AE built after the store */
    size_t raw_len;
    int ready;       /* the reply is known */
    int send;        /* write `out` (enhanced mode may want no ACK) */
    int close_after; /* close the connection once this is flushed */
    hv_buf_t ack;    /* the AA/CA for a new message, stored with it */
    hv_buf_t orig;   /* a resend: the ACK its first copy got (filled by the store) */
    hv_buf_t out;    /* the framed reply */
} pending_t;

struct mconn {
    uv_tcp_t tcp;
    uv_timer_t timer;
    msrc_t *src;
    mconn_t *prev, *next;
    hv_mllp_framer_t fr;
    pending_t *head, *tail;
    size_t npending; /* entries in the FIFO */
    size_t in_store; /* entries whose store callback has not come back */
    int handles;     /* open libuv handles (tcp, timer) */
    int reading;
    int closing;
    int close_when_flushed;
    hv_tls_t *tls; /* NULL on a plaintext port */
    char peer[64];
};

struct msrc {
    hv_channel_t *ch;
    char id[72]; /* the channel's id, for logs (a connection may outlive its channel version) */
    hv__hl7v2_metrics_t *m; /* the module's counters (NULL outside serve) */
    uv_tcp_t server;
    int listening;
    int stopping;
    int refs; /* the source itself (until stop), the server handle, one per connection */
    mconn_t *conns;
    size_t nconns;
    char host[256];
    int port;
    size_t max_message;
    size_t max_connections;
    size_t max_inflight;
    size_t max_segments;
    int strict_escapes;
    uint64_t idle_ms;
    uint64_t dedup_ms;
    int client_ca;     /* tls_client_ca set: the hint of a failed handshake says so */
    hv_tls_ctx_t *tls; /* tls_cert + tls_key */
    hv_buf_t plain;    /* a TLS read's plaintext; framed before the next read */
    char readbuf[65536];
};

typedef struct write_req {
    uv_write_t req;
    hv_buf_t buf;
} write_req_t;

static void msrc_unref(msrc_t *s) {
    if (--s->refs > 0) return;
    hv_tls_ctx_free(s->tls);
    hv_buf_release(&s->plain);
    hv_free(s);
}

static void pending_free(pending_t *p) {
    hv_buf_release(&p->out);
    hv_buf_release(&p->ack);
    hv_buf_release(&p->orig);
    hv_arena_free(p->arena);
    hv_free(p);
}

/* Frees a closed connection once no handle and no store callback refers to it. */
static void conn_maybe_free(mconn_t *c) {
    msrc_t *s = c->src;
    if (c->handles > 0 || c->in_store > 0) return;
    while (c->head != NULL) {
        pending_t *p = c->head;
        c->head = p->next;
        pending_free(p);
    }
    hv_mllp_framer_release(&c->fr);
    hv_tls_free(c->tls);
    hv_free(c);
    msrc_unref(s);
}

static void on_handle_closed(uv_handle_t *h) {
    mconn_t *c = h->data;
    c->handles--;
    conn_maybe_free(c);
}

static void conn_close(mconn_t *c, const char *why) {
    msrc_t *s = c->src;
    if (c->closing) return;
    c->closing = 1;
    if (why != NULL) {
        hv_logrec_t *r = hv_log_begin(HV_LOG_INFO, "hl7v2.mllp.close");
        if (r) {
            hv_log_str(r, "channel", s->id);
            hv_log_str(r, "peer", c->peer);
            hv_log_str(r, "reason", why);
            hv_log_int(r, "frames", (int64_t)c->fr.frames);
            hv_log_end(r);
        }
    }
    if (c->prev != NULL) c->prev->next = c->next;
    else s->conns = c->next;
    if (c->next != NULL) c->next->prev = c->prev;
    s->nconns--;
    if (s->m != NULL) s->m->nconns--;
    uv_close((uv_handle_t *)&c->tcp, on_handle_closed);
    uv_close((uv_handle_t *)&c->timer, on_handle_closed);
}

static void on_read(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf);
static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf);

static void reading_update(mconn_t *c) {
    int want;
    if (c->closing) return;
    want = !c->close_when_flushed && c->npending < c->src->max_inflight &&
           uv_stream_get_write_queue_size((uv_stream_t *)&c->tcp) < MAX_PENDING_OUT;
    if (want && !c->reading) {
        if (uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) == 0) c->reading = 1;
    } else if (!want && c->reading) {
        uv_read_stop((uv_stream_t *)&c->tcp);
        c->reading = 0;
    }
}

static void on_write(uv_write_t *req, int status) {
    write_req_t *w = (write_req_t *)req;
    mconn_t *c = req->data;
    hv_buf_release(&w->buf);
    hv_free(w);
    if (status < 0) {
        conn_close(c, status == UV_ECANCELED ? NULL : "write failed");
        return;
    }
    reading_update(c);
}

/*
 * Queues bytes on the socket: plaintext `b` is encrypted first on a TLS
 * connection (`raw` set: b is already network bytes, e.g. a handshake). Takes
 * ownership of b's storage. HV_OK or the failure (the caller closes).
 */
static int conn_write(mconn_t *c, hv_buf_t *b, int raw) {
    write_req_t *w;
    uv_buf_t ub;
    int rc = HV_OK;
    if (c->tls != NULL && !raw) {
        hv_buf_t net;
        hv_buf_init(&net, 0);
        rc = hv_tls_write(c->tls, b->data, b->len, &net);
        hv_buf_release(b);
        *b = net;
        if (rc != HV_OK) goto fail;
    }
    if (b->len == 0) {
        hv_buf_release(b);
        return HV_OK;
    }
    w = hv_calloc(1, sizeof(*w));
    if (w == NULL) {
        rc = HV_ENOMEM;
        goto fail;
    }
    w->buf = *b; /* the write owns the bytes now */
    hv_buf_init(b, 0);
    ub = uv_buf_init(w->buf.data, (unsigned)w->buf.len);
    w->req.data = c;
    if (uv_write(&w->req, (uv_stream_t *)&c->tcp, &ub, 1, on_write) != 0) {
        hv_buf_release(&w->buf);
        hv_free(w);
        return HV_EIO;
    }
    return HV_OK;
fail:
    hv_buf_release(b);
    return rc;
}

/* Writes every ready entry at the head of the FIFO, in order. */
static void flush(mconn_t *c) {
    if (c->closing) return;
    while (c->head != NULL && c->head->ready) {
        pending_t *p = c->head;
        int close_after = p->close_after;
        c->head = p->next;
        if (c->head == NULL) c->tail = NULL;
        c->npending--;
        if (!c->closing && p->send && p->out.len > 0) {
            int rc = conn_write(c, &p->out, 0);
            if (rc != HV_OK) conn_close(c, rc == HV_ENOMEM ? "out of memory" : "write failed");
        }
        pending_free(p);
        if (close_after) c->close_when_flushed = 1;
        if (c->closing) return;
    }
    if (c->close_when_flushed && c->head == NULL) {
        conn_close(c, NULL);
        return;
    }
    reading_update(c);
}

/* Marks p as answered by closing the connection (nothing to send). */
static void pending_close(pending_t *p) {
    p->ready = 1;
    p->send = 0;
    p->close_after = 1;
}

static pending_t *pending_push(mconn_t *c) {
    pending_t *p = hv_calloc(1, sizeof(*p));
    if (p == NULL) return NULL;
    p->conn = c;
    p->send = 1;
    hv_buf_init(&p->out, 0);
    hv_buf_init(&p->ack, 0);
    hv_buf_init(&p->orig, 0);
    if (c->tail != NULL) c->tail->next = p;
    else c->head = p;
    c->tail = p;
    c->npending++;
    return p;
}

/* Sets p's reply to the ACK in `ack` (unframed). */
static void pending_ready(pending_t *p, const char *ack, size_t len) {
    if (hv_mllp_wrap(ack, len, &p->out) != HV_OK) p->close_after = 1;
    p->ready = 1;
}

/* Sets p's reply to an ACK with one ERR (AE or AR); m may be NULL (no readable MSH). */
static void pending_error(pending_t *p, const hv_hl7v2_msg_t *m, int ack_code, int hl7_code,
                          const char *location, const char *text) {
    hv_hl7v2_ack_opts_t o;
    hv_hl7v2_ack_err_t e;
    hv_buf_t ack;
    memset(&o, 0, sizeof(o));
    e.location = location;
    e.code = hl7_code;
    e.severity = HV_HL7V2_SEV_ERROR;
    e.message = text;
    o.code = ack_code;
    o.errs = &e;
    o.nerrs = 1;
    hv_buf_init(&ack, 0);
    if (hv_hl7v2_ack_build(m, &o, &ack) == HV_OK) {
        pending_ready(p, ack.data, ack.len);
        p->send = m == NULL || hv_hl7v2_ack_wanted(m, ack_code);
    } else {
        pending_close(p);
    }
    hv_buf_release(&ack);
}

static void log_reject(mconn_t *c, const hv_error_t *err, int code, size_t len) {
    hv_logrec_t *r = hv_log_begin(HV_LOG_WARN, "hl7v2.mllp.reject");
    if (r == NULL) return;
    hv_log_str(r, "channel", c->src->id);
    hv_log_str(r, "peer", c->peer);
    hv_log_int(r, "bytes", (int64_t)len);
    hv_log_int(r, "hl7_error", code);
    hv_log_str(r, "location", err->location);
    hv_log_int(r, "segment", err->line);
    hv_log_int(r, "column", err->column);
    hv_log_str(r, "error", err->message); /* our own text: never message content */
    hv_log_end(r);
}

static void on_stored(int status, int64_t id, void *ud) {
    pending_t *p = ud;
    mconn_t *c = p->conn;
    hv__hl7v2_metrics_t *m = c->src->m;
    (void)id;
    c->in_store--;
    if (status == HV_OK && p->orig.len > 0) {
        /* A resend: the ACK its first copy got, byte for byte. */
        if (m != NULL) hv_counter_add(m->duplicates, 1);
        pending_ready(p, p->orig.data, p->orig.len);
    } else if (status == HV_OK) {
        if (m != NULL) hv_counter_add(m->stored, 1);
        pending_ready(p, p->ack.data, p->ack.len);
        if (p->ack.len == 0) p->send = 0; /* enhanced mode that wants no accept ACK */
    } else {
        /* Not stored, or (after-destinations) stored but not delivered: AE with
         * "application internal error", so that the sender retries or looks. */
        hv_hl7v2_msg_t msh;
        const char *text = status == HV_ETIMEDOUT ? "stored, but not delivered in time"
                           : status == HV_EPROTO  ? "stored, but a destination refused it"
                           : status == HV_EINVAL  ? "stored, but a step failed on it"
                                                  : "the message could not be stored; send it again";
        if (m != NULL) hv_counter_add(m->errors, 1);
        if (status != HV_ETIMEDOUT && status != HV_EPROTO && status != HV_EINVAL) {
            hv_logrec_t *r = hv_log_begin(HV_LOG_ERROR, "hl7v2.store.failed");
            if (r) {
                hv_log_str(r, "channel", c->src->id);
                hv_log_str(r, "error", hv_strerror(status));
                hv_log_int(r, "bytes", (int64_t)p->raw_len);
                hv_log_end(r);
            }
        }
        if (hv_hl7v2_msh_peek(p->arena, p->raw, p->raw_len, &msh) == HV_OK)
            pending_error(p, &msh, HV_HL7V2_ACK_ERROR, HV_HL7V2_E_INTERNAL, NULL, text);
        else
            pending_close(p);
    }
    if (c->closing) {
        /* The connection went away: the message is stored, the ACK has nowhere to go. */
        conn_maybe_free(c);
        return;
    }
    flush(c);
}

/* The dedup key of a message: its MSH-3, MSH-4 and MSH-10 as received. */
static char *source_key(hv_arena_t *a, const hv_hl7v2_msg_t *m) {
    hv_hl7v2_span_t app = {NULL, 0}, fac = {NULL, 0}, ctl = {NULL, 0};
    if (hv_hl7v2_get(m, "MSH-10", &ctl) != HV_OK || ctl.len == 0) return NULL;
    if (hv_hl7v2_get(m, "MSH-3", &app) != HV_OK) app.len = 0;
    if (hv_hl7v2_get(m, "MSH-4", &fac) != HV_OK) fac.len = 0;
    return hv_arena_sprintf(a, "msh:%.*s|%.*s|%.*s", (int)app.len, app.len ? app.p : "",
                            (int)fac.len, fac.len ? fac.p : "", (int)ctl.len, ctl.p);
}

static void handle_frame(mconn_t *c, const char *frame, size_t len) {
    msrc_t *s = c->src;
    hv_hl7v2_parse_opts_t po;
    hv_hl7v2_msg_t m;
    hv_hl7v2_ack_opts_t ao;
    hv_error_t err;
    pending_t *p;
    char *raw, *key = NULL;
    int code = 0, rc;

    if (s->m != NULL) hv_counter_add(s->m->received, 1);
    p = pending_push(c);
    if (p == NULL || (p->arena = hv_arena_new(len + 1024)) == NULL ||
        (raw = hv_arena_alloc(p->arena, len ? len : 1)) == NULL) {
        if (p != NULL) pending_close(p);
        else c->close_when_flushed = 1;
        return;
    }
    memcpy(raw, frame, len);
    p->raw = raw;
    p->raw_len = len;

    hv_hl7v2_parse_opts_default(&po);
    po.max_bytes = s->max_message;
    po.max_segments = s->max_segments;
    po.strict_escapes = s->strict_escapes;
    hv_error_clear(&err);
    rc = hv_hl7v2_parse(p->arena, raw, len, &po, &m, &err, &code);
    if (rc == HV_OK) {
        /*
         * HL7 v2.5.1 §2.15.9 also requires MSH-11 and MSH-12, but many senders leave
         * them empty and the ACK has defaults for both; the engine needs MSH-9 (the
         * type) and MSH-10 (the control id, for MSA-2 and dedup).
         */
        static const char *const required[] = {"MSH-9", "MSH-10"};
        size_t i;
        for (i = 0; i < HV_ARRAY_LEN(required); i++) {
            hv_hl7v2_span_t sp;
            if (hv_hl7v2_get(&m, required[i], &sp) != HV_OK || sp.len == 0) {
                hv_error_set(&err, HV_EPROTO, required[i], "%s is required", required[i]);
                err.line = 1;
                code = HV_HL7V2_E_REQUIRED_MISSING;
                rc = HV_EPROTO;
                break;
            }
        }
    }
    if (rc != HV_OK) {
        int have_msh;
        if (s->m != NULL) hv_counter_add(s->m->rejected, 1);
        log_reject(c, &err, code, len);
        have_msh = hv_hl7v2_msh_peek(p->arena, raw, len, &m) == HV_OK;
        /* Without a readable MSH the AR goes out with default MSH fields (§2.9: the
         * receiver answers what it can; the sender sees the reason in ERR). */
        pending_error(p, have_msh ? &m : NULL, HV_HL7V2_ACK_REJECT,
                      have_msh ? (code ? code : HV_HL7V2_E_DATA_TYPE) : HV_HL7V2_E_SEGMENT_SEQUENCE,
                      have_msh && err.location[0] ? err.location : NULL,
                      have_msh ? err.message : "no readable MSH segment");
        flush(c);
        return;
    }
    memset(&ao, 0, sizeof(ao));
    ao.code = HV_HL7V2_ACK_ACCEPT;
    if (hv_hl7v2_ack_wanted(&m, HV_HL7V2_ACK_ACCEPT) && hv_hl7v2_ack_build(&m, &ao, &p->ack) != HV_OK) {
        pending_close(p);
        flush(c);
        return;
    }
    if (s->dedup_ms > 0) key = source_key(p->arena, &m);
    rc = hv_channel_receive_reply(s->ch, raw, len, CONTENT_TYPE, key, key ? s->dedup_ms : 0,
                                  p->ack.len ? p->ack.data : NULL, p->ack.len, &p->orig,
                                  on_stored, p);
    if (rc != HV_OK) {
        /* The store's queue is full, or the channel is paused or closing: retry later. */
        if (s->m != NULL) hv_counter_add(s->m->errors, 1);
        pending_error(p, &m, HV_HL7V2_ACK_ERROR, HV_HL7V2_E_INTERNAL, NULL,
                      "the engine is busy; send the message again");
        flush(c);
        return;
    }
    c->in_store++;
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
    mconn_t *c = h->data;
    (void)suggested;
    buf->base = c->src->readbuf;
    buf->len = sizeof(c->src->readbuf);
}

/* Logs a completed TLS handshake: the peer and its certificate's CN, no content. */
static void log_tls_peer(mconn_t *c) {
    char cn[256];
    hv_logrec_t *r = hv_log_begin(HV_LOG_INFO, "hl7v2.mllp.tls");
    if (r == NULL) return;
    hv_tls_peer_name(c->tls, cn, sizeof(cn));
    hv_log_str(r, "channel", c->src->id);
    hv_log_str(r, "peer", c->peer);
    hv_log_str(r, "peer_cn", cn);
    hv_log_end(r);
}

/*
 * Feeds a TLS connection's network bytes; on return s->plain holds the
 * plaintext. HV_OK; HV_ECLOSED when the peer sent close_notify (the plaintext
 * before it is still to be framed, then the connection closes once flushed);
 * another code when the connection has been closed.
 */
static int tls_read(mconn_t *c, const char *p, size_t n) {
    msrc_t *s = c->src;
    int was_done = hv_tls_handshake_done(c->tls), rc;
    hv_buf_t net;
    hv_buf_init(&net, 0);
    hv_buf_reset(&s->plain);
    rc = hv_tls_feed(c->tls, p, n, &s->plain, &net);
    if (net.len > 0 && conn_write(c, &net, 1) != HV_OK) rc = HV_EIO;
    hv_buf_release(&net);
    if (!was_done && hv_tls_handshake_done(c->tls) && rc == HV_OK) log_tls_peer(c);
    if (rc == HV_OK) return HV_OK;
    if (rc == HV_ECLOSED) return rc;
    if (!was_done && !hv_tls_handshake_done(c->tls)) {
        hv_logrec_t *r = hv_log_begin(HV_LOG_WARN, "hl7v2.mllp.tls_handshake_failed");
        if (r) {
            hv_log_str(r, "channel", s->id);
            hv_log_str(r, "peer", c->peer);
            hv_log_int(r, "bytes", (int64_t)n);
            hv_log_str(r, "hint",
                       s->client_ca ? "not TLS, or no client certificate signed by tls_client_ca"
                                    : "not TLS, or the client does not trust the certificate");
            hv_log_end(r);
        }
        if (s->m != NULL) hv_counter_add(s->m->tls_failed, 1);
        conn_close(c, NULL);
    } else {
        conn_close(c, rc == HV_EPROTO ? "TLS error" : "TLS read failed");
    }
    return rc;
}

static void on_read(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf) {
    mconn_t *c = st->data;
    const char *in;
    size_t off = 0, n;
    int tls_closed = 0;
    if (nread < 0) {
        conn_close(c, nread == UV_EOF ? (hv_mllp_framer_partial(&c->fr) ? "eof mid-frame" : NULL)
                                      : "read error");
        return;
    }
    if (nread == 0) return;
    if (c->src->idle_ms > 0) uv_timer_again(&c->timer);
    in = buf->base;
    n = (size_t)nread;
    if (c->tls != NULL) {
        int rc = tls_read(c, buf->base, (size_t)nread);
        if (rc == HV_ECLOSED) tls_closed = 1;
        else if (rc != HV_OK) return;
        in = c->src->plain.data;
        n = c->src->plain.len;
    }
    while (off < n && !c->closing && !c->close_when_flushed) {
        const char *msg;
        size_t len, used = 0;
        int rc = hv_mllp_framer_feed(&c->fr, in + off, n - off, &used, &msg, &len);
        off += used;
        if (rc == HV_OK) {
            handle_frame(c, msg, len);
            continue;
        }
        if (rc == HV_AGAIN) break;
        {
            hv_logrec_t *r = hv_log_begin(HV_LOG_WARN, "hl7v2.mllp.framing");
            if (r) {
                hv_log_str(r, "channel", c->src->id);
                hv_log_str(r, "peer", c->peer);
                hv_log_str(r, "error", rc == HV_ETOOBIG ? "frame over max_message"
                                                        : "bytes outside an MLLP frame");
                hv_log_int(r, "max_message", (int64_t)c->src->max_message);
                hv_log_end(r);
            }
        }
        c->close_when_flushed = 1;
        break;
    }
    if (tls_closed) c->close_when_flushed = 1; /* the peer sent close_notify */
    flush(c);
}

static void on_idle(uv_timer_t *t) {
    mconn_t *c = t->data;
    conn_close(c, "idle timeout");
}

static void on_connection(uv_stream_t *server, int status) {
    msrc_t *s = server->data;
    mconn_t *c;
    struct sockaddr_storage sa;
    int salen = sizeof(sa);
    if (status < 0) return;
    c = hv_calloc(1, sizeof(*c));
    if (c == NULL) return;
    c->src = s;
    s->refs++;
    hv_mllp_framer_init(&c->fr, s->max_message);
    uv_tcp_init(server->loop, &c->tcp);
    uv_timer_init(server->loop, &c->timer);
    c->handles = 2;
    c->tcp.data = c->timer.data = c;
    c->next = s->conns;
    if (s->conns != NULL) s->conns->prev = c;
    s->conns = c;
    s->nconns++;
    if (s->m != NULL) s->m->nconns++;
    if (uv_accept(server, (uv_stream_t *)&c->tcp) != 0) {
        conn_close(c, "accept failed");
        return;
    }
    if (uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&sa, &salen) == 0) {
        char host[48] = "";
        int port = 0;
        if (sa.ss_family == AF_INET) {
            uv_ip4_name((struct sockaddr_in *)&sa, host, sizeof(host));
            port = ntohs(((struct sockaddr_in *)&sa)->sin_port);
        } else if (sa.ss_family == AF_INET6) {
            uv_ip6_name((struct sockaddr_in6 *)&sa, host, sizeof(host));
            port = ntohs(((struct sockaddr_in6 *)&sa)->sin6_port);
        }
        snprintf(c->peer, sizeof(c->peer), "%s:%d", host, port);
    }
    if (s->nconns > s->max_connections || s->stopping) {
        conn_close(c, "too many connections");
        return;
    }
    if (s->tls != NULL && (c->tls = hv_tls_new(s->tls, NULL)) == NULL) {
        conn_close(c, "out of memory");
        return;
    }
    uv_tcp_nodelay(&c->tcp, 1);
    if (s->idle_ms > 0) uv_timer_start(&c->timer, on_idle, s->idle_ms, s->idle_ms);
    reading_update(c);
}

/* ------------------------------------------------------------------------- */
/* The source's vtable                                                       */
/* ------------------------------------------------------------------------- */

static int int_key(json_object *v, int64_t lo, int64_t hi) {
    return json_object_is_type(v, json_type_int) && json_object_get_int64(v) >= lo &&
           json_object_get_int64(v) <= hi;
}

static int msrc_check(struct json_object *conf, hv_error_t *err) {
    json_object_object_foreach(conf, k, v) {
        if (strcmp(k, "listen") == 0) {
            char host[256];
            int port = 0;
            if (json_object_is_type(v, json_type_string) &&
                hv_parse_hostport(json_object_get_string(v), host, sizeof(host), &port) == HV_OK &&
                port > 0)
                continue;
            hv_error_set(err, HV_ECONFIG, k, "\"listen\" must be \"host:port\" or \":port\"");
        } else if (strcmp(k, "max_message") == 0) {
            if (int_key(v, 1024, (int64_t)1 << 31)) continue;
            hv_error_set(err, HV_ECONFIG, k, "\"max_message\" is a byte count from 1024 to 2 GiB");
        } else if (strcmp(k, "max_connections") == 0 || strcmp(k, "max_inflight") == 0) {
            if (int_key(v, 1, 1000000)) continue;
            hv_error_set(err, HV_ECONFIG, k, "\"%s\" is an integer from 1 to 1000000", k);
        } else if (strcmp(k, "tls_cert") == 0 || strcmp(k, "tls_key") == 0 ||
                   strcmp(k, "tls_client_ca") == 0) {
            if (json_object_is_type(v, json_type_string) && json_object_get_string_len(v) > 0)
                continue;
            hv_error_set(err, HV_ECONFIG, k, "\"%s\" is the path of a PEM file", k);
        } else if (strcmp(k, "idle_timeout_ms") == 0 || strcmp(k, "dedup_window_ms") == 0) {
            if (int_key(v, 0, (int64_t)366 * 86400000)) continue;
            hv_error_set(err, HV_ECONFIG, k, "\"%s\" is a duration in ms from 0 to a year", k);
        } else {
            hv_error_set(err, HV_ECONFIG, k,
                         "unknown key \"%s\" in an mllp source (known: listen, max_message, "
                         "max_connections, max_inflight, idle_timeout_ms, dedup_window_ms, "
                         "tls_cert, tls_key, tls_client_ca)",
                         k);
        }
        return HV_ECONFIG;
    }
    if ((hv_json_get_str(conf, "tls_cert") == NULL) != (hv_json_get_str(conf, "tls_key") == NULL) ||
        (hv_json_get_str(conf, "tls_client_ca") != NULL && hv_json_get_str(conf, "tls_cert") == NULL)) {
        hv_error_set(err, HV_ECONFIG, hv_json_get_str(conf, "tls_cert") ? "tls_cert" : "tls_key",
                     "TLS needs \"tls_cert\" and \"tls_key\" together (and \"tls_client_ca\" "
                     "only with them)");
        return HV_ECONFIG;
    }
    return HV_OK;
}

static void on_server_closed(uv_handle_t *h) { msrc_unref(h->data); }

static uint64_t conf_u64(json_object *conf, const char *k, uint64_t def) {
    json_object *v = NULL;
    return json_object_object_get_ex(conf, k, &v) ? (uint64_t)json_object_get_int64(v) : def;
}

/*
 * Starts listening. Keys left out take their defaults; "listen" left out is the
 * engine's mllp.listen (--mllp, 0.0.0.0:2575), which is how the shipped
 * hl7v2-inbound.json follows `serve --mllp HOST:PORT`.
 */
static int msrc_start(hv_channel_t *ch, struct json_object *conf, void **state, hv_error_t *err) {
    hv_engine_t *e = hv_channel_engine(ch);
    hv_config_t *cfg = hv_engine_config(e);
    msrc_t *s = hv_calloc(1, sizeof(*s));
    struct sockaddr_storage addr;
    const char *listen = hv_json_get_str(conf, "listen");
    int r;
    if (s == NULL) return HV_ENOMEM;
    s->ch = ch;
    snprintf(s->id, sizeof(s->id), "%s", hv_channel_id(ch));
    s->m = hv__hl7v2_metrics(e);
    s->refs = 1;
    s->max_message = (size_t)conf_u64(conf, "max_message", 16u << 20);
    s->max_connections = (size_t)conf_u64(conf, "max_connections", 10000);
    s->max_inflight = (size_t)conf_u64(conf, "max_inflight", 256);
    s->idle_ms = conf_u64(conf, "idle_timeout_ms", 300000);
    s->dedup_ms = conf_u64(conf, "dedup_window_ms", 86400000);
    s->max_segments = (size_t)hv_config_int(cfg, "hl7v2.max_segments");
    if (s->max_segments == 0) s->max_segments = 100000;
    s->strict_escapes = hv_config_bool(cfg, "hl7v2.strict_escapes");
    s->client_ca = hv_json_get_str(conf, "tls_client_ca") != NULL;
    hv_buf_init(&s->plain, 4 * sizeof(s->readbuf));
    if (listen == NULL) listen = hv_config_str(cfg, "mllp.listen");
    if (listen == NULL ||
        hv_parse_hostport(listen, s->host, sizeof(s->host), &s->port) != HV_OK || s->port <= 0) {
        hv_error_set(err, HV_ECONFIG, "listen", "mllp: \"%s\" is not host:port",
                     listen ? listen : "");
        goto fail;
    }
    if (hv_json_get_str(conf, "tls_cert") != NULL) {
        s->tls = hv_tls_server_ctx_new(hv_json_get_str(conf, "tls_cert"),
                                       hv_json_get_str(conf, "tls_key"),
                                       hv_json_get_str(conf, "tls_client_ca"), err);
        if (s->tls == NULL) goto fail;
    }
    if ((strchr(s->host, ':') != NULL
             ? uv_ip6_addr(s->host, s->port, (struct sockaddr_in6 *)&addr)
             : uv_ip4_addr(s->host, s->port, (struct sockaddr_in *)&addr)) != 0) {
        hv_error_set(err, HV_ECONFIG, "listen", "mllp: %s is not an IP address", s->host);
        goto fail;
    }
    uv_tcp_init(hv_engine_loop(e), &s->server);
    s->server.data = s;
    s->refs++; /* the server handle's */
    s->listening = 1;
    r = uv_tcp_bind(&s->server, (const struct sockaddr *)&addr, 0);
    if (r == 0) r = uv_listen((uv_stream_t *)&s->server, 1024, on_connection);
    if (r != 0) {
        hv_error_set(err, HV_EIO, "listen", "mllp: cannot listen on %s:%d: %s", s->host, s->port,
                     uv_strerror(r));
        s->listening = 0;
        uv_close((uv_handle_t *)&s->server, on_server_closed);
        msrc_unref(s);
        return HV_EIO;
    }
    {
        hv_logrec_t *lr = hv_log_begin(HV_LOG_INFO, "hl7v2.mllp.listening");
        if (lr) {
            hv_log_str(lr, "channel", hv_channel_id(ch));
            hv_log_str(lr, "address", s->host);
            hv_log_int(lr, "port", s->port);
            hv_log_str(lr, "tls", s->tls == NULL ? "off" : s->client_ca ? "mutual" : "on");
            hv_log_end(lr);
        }
    }
    *state = s;
    return HV_OK;
fail:
    hv_tls_ctx_free(s->tls);
    hv_buf_release(&s->plain);
    hv_free(s);
    return HV_ECONFIG;
}

/*
 * Stops accepting at once; each connection stops reading and closes once the
 * ACKs of the messages it already handed to the store have been written.
 */
static void msrc_stop(void *state) {
    msrc_t *s = state;
    mconn_t *c, *next;
    if (s == NULL) return;
    s->stopping = 1;
    if (s->listening) {
        uv_close((uv_handle_t *)&s->server, on_server_closed);
        s->listening = 0;
    }
    for (c = s->conns; c != NULL; c = next) {
        next = c->next;
        c->close_when_flushed = 1;
        flush(c);
    }
    msrc_unref(s);
}

const hv_channel_source_t hv__hl7v2_mllp_source = {"mllp", msrc_check, msrc_start, msrc_stop};
