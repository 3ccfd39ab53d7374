/*
 * listener.c — the MLLP listener of the hl7v2-inbound channel, on libuv (HL7
 * v2.5.1 Appendix C, MLLP release 2; acknowledgement rules §2.9).
 *
 * Per connection: bytes go through the resumable framer (mllp.c); each frame is
 * parsed, given its ACK, and submitted to the message store; the ACK is written
 * once the store's batch has committed. A connection may pipeline messages: ACKs
 * leave in the order the messages arrived (a FIFO of pending entries; the head
 * is written as soon as it is ready). Limits:
 *   - a frame over mllp.max_message: the ACKs already due are written, then the
 *     connection is closed (no ACK for the oversized frame — it was not read);
 *   - bytes outside a frame, or a frame without a readable MSH: likewise closed;
 *   - mllp.max_inflight unacknowledged messages, or 1 MiB of ACKs the peer has not
 *     read: reading pauses until they drain (back-pressure);
 *   - mllp.idle_timeout without a byte: the connection is closed;
 *   - mllp.max_connections: further connections are accepted and closed at once.
 * Logs carry sizes, positions, codes and the peer address, never message content.
 *
 * TLS (mllp.tls_cert and mllp.tls_key set): the port speaks TLS only (RFC 8446 /
 * RFC 5246 through the engine's hv_tls_* over memory BIOs). Every read is fed to
 * TLS and the plaintext goes through the same framer; every reply is encrypted
 * before it is written, so framing, limits, back-pressure (counted in ciphertext
 * bytes) and ACK-after-commit do not change. A handshake that fails — a plaintext
 * client, a client without a certificate signed by mllp.tls_client_ca — writes
 * the TLS alert, closes the connection and counts in
 * hv_hl7v2_mllp_tls_handshake_failures_total. A completed handshake logs the
 * peer certificate's subject CN (never message content).
 */
#include "config.h"

#include <stdio.h>
#include <string.h>

#include "adapters/hl7v2/hl7v2_int.h"

#define MAX_PENDING_OUT (1u << 20)

typedef struct pending {
    hv__hl7v2_rec_t rec; /* first: the store's job and done callback share one pointer */
    struct pending *next;
    hv__hl7v2_conn_t *conn;
    hv_arena_t *arena;
    int ready;       /* the reply is known */
    int send;        /* write `out` (enhanced mode may want no ACK) */
    int close_after; /* close the connection once this is flushed */
    hv_buf_t out;    /* the framed reply */
} pending_t;

struct hv__hl7v2_conn {
    uv_tcp_t tcp;
    uv_timer_t timer;
    hv__hl7v2_state_t *st;
    hv__hl7v2_conn_t *prev, *next;
    hv_mllp_framer_t fr;
    pending_t *head, *tail;
    size_t npending;  /* entries in the FIFO */
    size_t in_store;  /* entries whose storage job has not come back */
    int handles;      /* open libuv handles (tcp, timer) */
    int reading;
    int closing;
    int close_when_flushed;
    hv_tls_t *tls;    /* NULL on a plaintext listener */
    char peer[64];
};

typedef struct write_req {
    uv_write_t req;
    hv_buf_t buf;
} write_req_t;

static void pending_free(pending_t *p);

/* Frees a closed connection once no handle and no storage job refers to it. */
static void conn_maybe_free(hv__hl7v2_conn_t *c) {
    if (c->handles > 0 || c->in_store > 0) return;
    while (c->head != NULL) {
        pending_t *p = c->head;
        c->head = p->next;
        pending_free(p);
    }
    hv_mllp_framer_release(&c->fr);
    hv_tls_free(c->tls);
    hv_free(c);
}

static void on_handle_closed(uv_handle_t *h) {
    hv__hl7v2_conn_t *c = h->data;
    c->handles--;
    conn_maybe_free(c);
}

static void conn_close(hv__hl7v2_conn_t *c, const char *why) {
    hv__hl7v2_state_t *st = c->st;
    if (c->closing) return;
    c->closing = 1;
    if (why != NULL) {
        hv_logrec_t *r = hv_log_begin(HV_LOG_INFO, "hl7v2.mllp.close");
        if (r) {
            hv_log_str(r, "peer", c->peer);
            hv_log_str(r, "reason", why);
            hv_log_int(r, "frames", (int64_t)c->fr.frames);
            hv_log_end(r);
        }
    }
    if (c->prev != NULL) c->prev->next = c->next;
    else st->conns = c->next;
    if (c->next != NULL) c->next->prev = c->prev;
    st->nconns--;
    uv_close((uv_handle_t *)&c->tcp, on_handle_closed);
    uv_close((uv_handle_t *)&c->timer, on_handle_closed);
}

static void pending_free(pending_t *p) {
    hv_buf_release(&p->out);
    hv_buf_release(&p->rec.ack);
    hv_buf_release(&p->rec.orig_ack);
    hv_arena_free(p->arena);
    hv_free(p);
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf);
static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf);

static void reading_update(hv__hl7v2_conn_t *c) {
    int want;
    if (c->closing) return;
    want = !c->close_when_flushed && c->npending < c->st->conf.max_inflight &&
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
    hv__hl7v2_conn_t *c = req->data;
    hv_buf_release(&w->buf);
    hv_free(w);
    if (status < 0) {
        conn_close(c, "write failed");
        return;
    }
    reading_update(c);
}

/*
 * Queues bytes on the socket: plaintext `b` is encrypted first on a TLS
 * connection (`raw` set: b is already network bytes, e.g. a handshake). Takes
 * ownership of b's storage. HV_OK or the failure (the caller closes).
 */
static int conn_write(hv__hl7v2_conn_t *c, hv_buf_t *b, int raw) {
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
static void flush(hv__hl7v2_conn_t *c) {
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

static pending_t *pending_push(hv__hl7v2_conn_t *c) {
    pending_t *p = hv_calloc(1, sizeof(*p));
    if (p == NULL) return NULL;
    p->conn = c;
    p->send = 1;
    hv_buf_init(&p->out, 0);
    hv_buf_init(&p->rec.ack, 0);
    hv_buf_init(&p->rec.orig_ack, 0);
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

static void log_reject(hv__hl7v2_conn_t *c, const hv_error_t *err, int code, size_t len) {
    hv_logrec_t *r = hv_log_begin(HV_LOG_WARN, "hl7v2.mllp.reject");
    if (r == NULL) return;
    hv_log_str(r, "peer", c->peer);
    hv_log_int(r, "bytes", (int64_t)len);
    hv_log_int(r, "hl7_error", code);
    hv_log_str(r, "location", err->location);
    hv_log_int(r, "segment", err->line);
    hv_log_int(r, "column", err->column);
    hv_log_str(r, "error", err->message); /* our own text: never message content */
    hv_log_end(r);
}

static void on_stored(int status, void *arg) {
    pending_t *p = arg;
    hv__hl7v2_conn_t *c = p->conn;
    hv__hl7v2_state_t *st = c->st;
    c->in_store--;
    if (status != HV_OK) {
        /* Not stored: AE with "application internal error" so that the sender retries. */
        hv_hl7v2_msg_t m;
        hv_hl7v2_ack_opts_t o;
        hv_hl7v2_ack_err_t e = {NULL, HV_HL7V2_E_INTERNAL, HV_HL7V2_SEV_ERROR,
                                "the message could not be stored; send it again"};
        hv_buf_t ack;
        hv_logrec_t *r = hv_log_begin(HV_LOG_ERROR, "hl7v2.store.failed");
        if (r) {
            hv_log_str(r, "error", hv_strerror(status));
            hv_log_int(r, "bytes", (int64_t)p->rec.raw_len);
            hv_log_end(r);
        }
        hv_counter_add(st->m_errors, 1);
        memset(&o, 0, sizeof(o));
        o.code = HV_HL7V2_ACK_ERROR;
        o.errs = &e;
        o.nerrs = 1;
        hv_buf_init(&ack, 0);
        if (hv_hl7v2_msh_peek(p->arena, p->rec.raw, p->rec.raw_len, &m) == HV_OK &&
            hv_hl7v2_ack_build(&m, &o, &ack) == HV_OK)
            pending_ready(p, ack.data, ack.len);
        else
            pending_close(p);
        hv_buf_release(&ack);
    } else if (p->rec.duplicate) {
        hv_counter_add(st->m_duplicates, 1);
        pending_ready(p, p->rec.orig_ack.data, p->rec.orig_ack.len);
        if (p->rec.orig_ack.len == 0) p->send = 0;
    } else {
        hv_counter_add(st->m_acked, 1);
        pending_ready(p, p->rec.ack.data, p->rec.ack.len);
        if (p->rec.ack.len == 0) p->send = 0;
    }
    if (c->closing) {
        /* The connection went away: the message is stored, the ACK has nowhere to go. */
        conn_maybe_free(c);
        return;
    }
    flush(c);
}

/* A NUL-terminated copy of the raw MSH field `f` (first component for MSH-9: type^trigger). */
static const char *msh_str(hv_arena_t *a, const hv_hl7v2_msg_t *m, const char *path) {
    hv_hl7v2_span_t s;
    char *t;
    if (hv_hl7v2_get(m, path, &s) != HV_OK) return "";
    t = hv_arena_strndup(a, s.p, s.len);
    return t != NULL ? t : "";
}

static void handle_frame(hv__hl7v2_conn_t *c, const char *frame, size_t len) {
    hv__hl7v2_state_t *st = c->st;
    hv_hl7v2_parse_opts_t po;
    hv_hl7v2_msg_t m;
    hv_hl7v2_ack_opts_t ao;
    hv_hl7v2_ack_err_t ae;
    hv_error_t err;
    pending_t *p;
    char *raw;
    int code = 0, rc;

    hv_counter_add(st->m_received, 1);
    p = pending_push(c);
    if (p == NULL || (p->arena = hv_arena_new(len + 1024)) == NULL ||
        (raw = hv_arena_alloc(p->arena, len ? len : 1)) == NULL) {
        if (p != NULL) pending_close(p);
        else c->close_when_flushed = 1;
        return;
    }
    memcpy(raw, frame, len);
    p->rec.raw = raw;
    p->rec.raw_len = len;
    p->rec.received_at = hv_now_ms();
    p->rec.dedup_window_ms = st->conf.dedup_window_ms;

    hv_hl7v2_parse_opts_default(&po);
    po.max_bytes = st->conf.max_message;
    po.max_segments = st->conf.max_segments;
    po.strict_escapes = st->conf.strict_escapes;
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
            hv_hl7v2_span_t s;
            if (hv_hl7v2_get(&m, required[i], &s) != HV_OK || s.len == 0) {
                hv_error_set(&err, HV_EPROTO, required[i], "%s is required", required[i]);
                err.line = 1;
                code = HV_HL7V2_E_REQUIRED_MISSING;
                rc = HV_EPROTO;
                break;
            }
        }
    }
    memset(&ao, 0, sizeof(ao));
    if (rc != HV_OK) {
        hv_buf_t ack;
        hv_counter_add(st->m_rejected, 1);
        log_reject(c, &err, code, len);
        if (hv_hl7v2_msh_peek(p->arena, raw, len, &m) != HV_OK) {
            /* Nothing to address an ACK to: close (after the ACKs already due). */
            p->ready = 1;
            p->send = 0;
            p->close_after = 1;
            flush(c);
            return;
        }
        ae.location = err.location[0] ? err.location : NULL;
        ae.code = code ? code : HV_HL7V2_E_DATA_TYPE;
        ae.severity = HV_HL7V2_SEV_ERROR;
        ae.message = err.message;
        ao.code = HV_HL7V2_ACK_REJECT;
        ao.errs = &ae;
        ao.nerrs = 1;
        hv_buf_init(&ack, 0);
        if (hv_hl7v2_ack_build(&m, &ao, &ack) == HV_OK) {
            pending_ready(p, ack.data, ack.len);
            p->send = hv_hl7v2_ack_wanted(&m, HV_HL7V2_ACK_REJECT);
        } else {
            pending_close(p);
        }
        hv_buf_release(&ack);
        flush(c);
        return;
    }
    p->rec.control_id = msh_str(p->arena, &m, "MSH-10");
    p->rec.sending_app = msh_str(p->arena, &m, "MSH-3");
    p->rec.sending_facility = msh_str(p->arena, &m, "MSH-4");
    {
        hv_hl7v2_span_t t1 = {NULL, 0}, t2 = {NULL, 0};
        hv_hl7v2_get(&m, "MSH-9.1", &t1);
        hv_hl7v2_get(&m, "MSH-9.2", &t2);
        p->rec.type = hv_arena_sprintf(p->arena, "%.*s%s%.*s", (int)t1.len, t1.p ? t1.p : "",
                                       t2.len ? "^" : "", (int)t2.len, t2.p ? t2.p : "");
        if (p->rec.type == NULL) p->rec.type = "";
    }
    ao.code = HV_HL7V2_ACK_ACCEPT;
    if (hv_hl7v2_ack_wanted(&m, HV_HL7V2_ACK_ACCEPT) &&
        hv_hl7v2_ack_build(&m, &ao, &p->rec.ack) != HV_OK) {
        pending_close(p);
        flush(c);
        return;
    }
    rc = st->storage != NULL ? hv__hl7v2_store_submit(st->storage, &p->rec, on_stored)
                             : HV_ECLOSED;
    if (rc != HV_OK) {
        /* The store's queue is full (or closing): tell the sender to retry. */
        hv_buf_t ack;
        ae.location = NULL;
        ae.code = HV_HL7V2_E_INTERNAL;
        ae.severity = HV_HL7V2_SEV_ERROR;
        ae.message = "the engine is busy; send the message again";
        ao.code = HV_HL7V2_ACK_ERROR;
        ao.errs = &ae;
        ao.nerrs = 1;
        hv_counter_add(st->m_errors, 1);
        hv_buf_init(&ack, 0);
        if (hv_hl7v2_ack_build(&m, &ao, &ack) == HV_OK) pending_ready(p, ack.data, ack.len);
        else pending_close(p);
        hv_buf_release(&ack);
        flush(c);
        return;
    }
    c->in_store++;
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
    hv__hl7v2_conn_t *c = h->data;
    (void)suggested;
    buf->base = c->st->readbuf;
    buf->len = sizeof(c->st->readbuf);
}

/* Logs a completed TLS handshake: protocol peer and certificate CN, no content. */
static void log_tls_peer(hv__hl7v2_conn_t *c) {
    char cn[256];
    hv_logrec_t *r = hv_log_begin(HV_LOG_INFO, "hl7v2.mllp.tls");
    if (r == NULL) return;
    hv_tls_peer_name(c->tls, cn, sizeof(cn));
    hv_log_str(r, "peer", c->peer);
    hv_log_str(r, "peer_cn", cn);
    hv_log_end(r);
}

/*
 * Feeds a TLS connection's network bytes; on return st->plain holds the
 * plaintext. HV_OK; HV_ECLOSED when the peer sent close_notify (the plaintext
 * before it is still to be framed, then the connection closes once flushed);
 * another code when the connection has been closed.
 */
static int tls_read(hv__hl7v2_conn_t *c, const char *p, size_t n) {
    hv__hl7v2_state_t *st = c->st;
    int was_done = hv_tls_handshake_done(c->tls), rc;
    hv_buf_t net;
    hv_buf_init(&net, 0);
    hv_buf_reset(&st->plain);
    rc = hv_tls_feed(c->tls, p, n, &st->plain, &net);
    if (net.len > 0 && conn_write(c, &net, 1) != HV_OK) rc = HV_EIO;
    hv_buf_release(&net);
    if (!was_done && hv_tls_handshake_done(c->tls) && rc == HV_OK) log_tls_peer(c);
    if (rc == HV_OK) return HV_OK;
    if (rc == HV_ECLOSED) return rc;
    if (!was_done && !hv_tls_handshake_done(c->tls)) {
        hv_logrec_t *r = hv_log_begin(HV_LOG_WARN, "hl7v2.mllp.tls_handshake_failed");
        if (r) {
            hv_log_str(r, "peer", c->peer);
            hv_log_int(r, "bytes", (int64_t)n);
            hv_log_str(r, "hint",
                       st->conf.tls_client_ca[0]
                           ? "not TLS, or no client certificate signed by mllp.tls_client_ca"
                           : "not TLS, or the client does not trust the certificate");
            hv_log_end(r);
        }
        hv_counter_add(st->m_tls_failed, 1);
        conn_close(c, NULL);
    } else {
        conn_close(c, rc == HV_EPROTO ? "TLS error" : "TLS read failed");
    }
    return rc;
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf) {
    hv__hl7v2_conn_t *c = s->data;
    const char *in;
    size_t off = 0, n;
    int tls_closed = 0;
    if (nread < 0) {
        conn_close(c, nread == UV_EOF ? (hv_mllp_framer_partial(&c->fr) ? "eof mid-frame" : NULL)
                                      : "read error");
        return;
    }
    if (nread == 0) return;
    uv_timer_again(&c->timer);
    in = buf->base;
    n = (size_t)nread;
    if (c->tls != NULL) {
        int rc = tls_read(c, buf->base, (size_t)nread);
        if (rc == HV_ECLOSED) tls_closed = 1;
        else if (rc != HV_OK) return;
        in = c->st->plain.data;
        n = c->st->plain.len;
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
                hv_log_str(r, "peer", c->peer);
                hv_log_str(r, "error", rc == HV_ETOOBIG ? "frame over mllp.max_message"
                                                        : "bytes outside an MLLP frame");
                hv_log_int(r, "max_message", (int64_t)c->st->conf.max_message);
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
    hv__hl7v2_conn_t *c = t->data;
    conn_close(c, "idle timeout");
}

static void on_connection(uv_stream_t *server, int status) {
    hv__hl7v2_state_t *st = server->data;
    hv__hl7v2_conn_t *c;
    struct sockaddr_storage sa;
    int salen = sizeof(sa);
    if (status < 0) return;
    c = hv_calloc(1, sizeof(*c));
    if (c == NULL) return;
    c->st = st;
    hv_mllp_framer_init(&c->fr, st->conf.max_message);
    uv_tcp_init(server->loop, &c->tcp);
    uv_timer_init(server->loop, &c->timer);
    c->handles = 2;
    c->tcp.data = c->timer.data = c;
    c->next = st->conns;
    if (st->conns != NULL) st->conns->prev = c;
    st->conns = c;
    st->nconns++;
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
    if (st->nconns > st->conf.max_connections || st->stopping) {
        conn_close(c, "too many connections");
        return;
    }
    if (st->tls != NULL && (c->tls = hv_tls_new(st->tls, NULL)) == NULL) {
        conn_close(c, "out of memory");
        return;
    }
    uv_tcp_nodelay(&c->tcp, 1);
    if (st->conf.idle_timeout_ms > 0)
        uv_timer_start(&c->timer, on_idle, st->conf.idle_timeout_ms, st->conf.idle_timeout_ms);
    reading_update(c);
}

int hv__hl7v2_listener_start(hv__hl7v2_state_t *st) {
    struct sockaddr_storage sa;
    uv_loop_t *loop = hv_engine_loop(st->engine);
    int r;
    if (strchr(st->conf.listen_host, ':') != NULL)
        r = uv_ip6_addr(st->conf.listen_host, st->conf.listen_port, (struct sockaddr_in6 *)&sa);
    else
        r = uv_ip4_addr(st->conf.listen_host, st->conf.listen_port, (struct sockaddr_in *)&sa);
    if (r != 0) return HV_ECONFIG;
    uv_tcp_init(loop, &st->server);
    st->server.data = st;
    st->listening = 1;
    r = uv_tcp_bind(&st->server, (struct sockaddr *)&sa, 0);
    if (r == 0) r = uv_listen((uv_stream_t *)&st->server, 1024, on_connection);
    if (r != 0) {
        hv_logrec_t *lr = hv_log_begin(HV_LOG_ERROR, "hl7v2.mllp.listen_failed");
        if (lr) {
            hv_log_str(lr, "address", st->conf.listen_host);
            hv_log_int(lr, "port", st->conf.listen_port);
            hv_log_str(lr, "error", uv_strerror(r));
            hv_log_end(lr);
        }
        uv_close((uv_handle_t *)&st->server, NULL);
        st->listening = 0;
        return HV_EIO;
    }
    {
        hv_logrec_t *lr = hv_log_begin(HV_LOG_INFO, "hl7v2.mllp.listening");
        if (lr) {
            hv_log_str(lr, "address", st->conf.listen_host);
            hv_log_int(lr, "port", st->conf.listen_port);
            hv_log_str(lr, "tls", st->tls == NULL ? "off"
                                  : st->conf.tls_client_ca[0] ? "mutual" : "on");
            hv_log_end(lr);
        }
    }
    return HV_OK;
}

void hv__hl7v2_listener_stop(hv__hl7v2_state_t *st) {
    st->stopping = 1;
    if (st->listening) {
        uv_close((uv_handle_t *)&st->server, NULL);
        st->listening = 0;
    }
    /*
     * Connections stop reading; each closes once the ACKs of the messages it already
     * handed to the store have been written (hv_storage_free in the module's free
     * runs what is still queued, should the loop stop first).
     */
    {
        hv__hl7v2_conn_t *c = st->conns, *next;
        for (; c != NULL; c = next) {
            next = c->next;
            c->close_when_flushed = 1;
            flush(c);
        }
    }
}
