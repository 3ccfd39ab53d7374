/*
 * sender.c — the MLLP client for outbound destinations and `holovitals hl7 send`
 * (HL7 v2.5.1 Appendix C, MLLP release 2; §2.9 acknowledgement codes, table 0008).
 *
 * States: IDLE (nothing to send or waiting for the backoff) → RESOLVING →
 * CONNECTING → WAITING (a frame written, its ACK awaited) → back to the next
 * message. One message is in flight at a time, so ACKs match messages by order;
 * the ACK's MSA-2 is also checked against the message's MSH-10 and an ACK that
 * names another message is a protocol error (the connection is dropped and the
 * message resent). Transport failures retry the same message after
 * min(backoff_min · 2^(attempt-1), backoff_max).
 *
 * Enhanced mode (§2.9.3): a message whose MSH-15 is NE expects no accept
 * acknowledgement and counts as delivered once written; with ER only an error is
 * acknowledged, so an ACK timeout counts as delivered.
 *
 * TLS (opts.tls): after CONNECTING comes HANDSHAKE — the ClientHello is written,
 * network bytes are fed to the engine's hv_tls_* (memory BIOs) until the
 * handshake completes, then the first frame is written, encrypted. The
 * handshake shares the connect deadline; a failed or timed-out handshake is a
 * transport failure like a refused connection (same backoff and attempts).
 * Server certificates are verified against tls_ca_file (or the system store)
 * and must name tls_server_name (default: the host), unless tls_insecure.
 */
#include "config.h"

#include <stdio.h>
#include <string.h>

#include "adapters/hl7v2/hl7v2_int.h"

enum { S_IDLE = 0, S_RESOLVING, S_CONNECTING, S_HANDSHAKE, S_WAITING, S_CLOSED };

typedef struct outmsg {
    struct outmsg *next;
    hv_buf_t frame;      /* framed message */
    char control_id[200];
    hv_mllp_sent_cb cb;
    void *ud;
    int attempts;
    int ack_mode;        /* MSH-15 (enhanced mode): ACK_ALWAYS, ACK_NEVER, ACK_ON_ERROR */
} outmsg_t;

enum { ACK_ALWAYS = 0, ACK_NEVER, ACK_ON_ERROR };

struct hv_mllp_sender {
    uv_loop_t *loop;
    hv_mllp_sender_opts_t o;
    char host[256];
    int state;
    outmsg_t *head, *tail;
    size_t queued;
    uv_tcp_t tcp;
    int tcp_open;        /* tcp initialized and not yet closed */
    uv_timer_t timer;    /* connect/ACK timeout and backoff */
    uv_getaddrinfo_t gai;
    uv_connect_t connect;
    hv_mllp_framer_t fr;
    int handles;         /* open handles; memory is freed when 0 after free() */
    int freeing;
    int busy;            /* a resolve or connect request is outstanding */
    hv_tls_ctx_t *tls_ctx; /* opts.tls: the client context, shared by every connection */
    hv_tls_t *tls;       /* the current connection's TLS state */
    char server_name[256];
    hv_buf_t plain;      /* one read's plaintext (TLS) */
    char last_error[1024];
    int tls_error;       /* the failure being reported is TLS's (not MLLP's) */
    char rbuf[16384];
};

typedef struct write_req {
    uv_write_t req;
    hv_buf_t buf; /* owned bytes (TLS records), or empty when the frame is written in place */
    int is_frame; /* the head message (not TLS handshake bytes) */
} write_req_t;

static void start_next(hv_mllp_sender_t *s);

static void maybe_release(hv_mllp_sender_t *s) {
    if (s->freeing && s->handles == 0 && !s->busy) {
        hv_mllp_framer_release(&s->fr);
        hv_tls_free(s->tls);
        hv_tls_ctx_free(s->tls_ctx);
        hv_buf_release(&s->plain);
        hv_free(s);
    }
}

static void on_closed(uv_handle_t *h) {
    hv_mllp_sender_t *s = h->data;
    s->handles--;
    maybe_release(s);
}

static void drop_connection(hv_mllp_sender_t *s) {
    if (s->tcp_open) {
        s->tcp_open = 0;
        uv_close((uv_handle_t *)&s->tcp, on_closed);
    }
    hv_mllp_framer_release(&s->fr);
    hv_mllp_framer_init(&s->fr, s->o.max_message);
    hv_tls_free(s->tls);
    s->tls = NULL;
}

static void finish_head(hv_mllp_sender_t *s, int status, int outcome, const char *ack, size_t n) {
    outmsg_t *m = s->head;
    if (m == NULL) return;
    s->head = m->next;
    if (s->head == NULL) s->tail = NULL;
    s->queued--;
    if (m->cb != NULL) m->cb(status, outcome, ack, n, m->ud);
    hv_buf_release(&m->frame);
    hv_free(m);
}

static void on_backoff(uv_timer_t *t) {
    hv_mllp_sender_t *s = t->data;
    s->state = S_IDLE;
    start_next(s);
}

/* The connection failed for the head message: retry after backoff, or give up. */
static void transport_failed(hv_mllp_sender_t *s, int status) {
    outmsg_t *m = s->head;
    uint64_t delay;
    int k;
    s->tls_error = s->tls_error && status == HV_EPROTO;
    if (s->state == S_WAITING && s->tls_error)
        snprintf(s->last_error, sizeof(s->last_error),
                 "the TLS connection to %s:%d was ended by a TLS error or alert (does the server "
                 "require a client certificate? --cert/--key)",
                 s->host, s->o.port);
    else if (s->state == S_HANDSHAKE)
        snprintf(s->last_error, sizeof(s->last_error),
                 "TLS handshake with %s:%d failed%s: the server certificate is not signed by "
                 "the given CA or does not name %s, or the server refused this client",
                 s->host, s->o.port, status == HV_ETIMEDOUT ? " (timed out)" : "",
                 s->server_name);
    else
        snprintf(s->last_error, sizeof(s->last_error), "%s:%d: %s", s->host, s->o.port,
                 hv_strerror(status));
    s->tls_error = 0;
    drop_connection(s);
    uv_timer_stop(&s->timer);
    s->state = S_IDLE;
    if (m == NULL || s->freeing) return;
    if (m->attempts >= s->o.max_attempts) {
        finish_head(s, status, HV_MLLP_RETRY, NULL, 0);
        start_next(s);
        return;
    }
    delay = s->o.backoff_min_ms;
    for (k = 1; k < m->attempts && delay < s->o.backoff_max_ms; k++) delay *= 2;
    if (delay > s->o.backoff_max_ms) delay = s->o.backoff_max_ms;
    hv_log(HV_LOG_INFO, "hl7v2.send.retry", "attempt %d failed (%s); retrying in %llu ms",
           m->attempts, hv_strerror(status), (unsigned long long)delay);
    uv_timer_start(&s->timer, on_backoff, delay, 0);
}

/*
 * A deadline passed. A pending resolve or connect is cancelled and reports the
 * failure from its own callback, so that each attempt ends exactly once.
 */
static void on_timeout(uv_timer_t *t) {
    hv_mllp_sender_t *s = t->data;
    if (s->state == S_WAITING && s->head != NULL && s->head->ack_mode == ACK_ON_ERROR) {
        /* MSH-15 ER: only an error is acknowledged, so silence means accepted. */
        s->state = S_IDLE;
        finish_head(s, HV_OK, HV_MLLP_DELIVERED, NULL, 0);
        start_next(s);
        return;
    }
    if (s->state == S_RESOLVING) {
        uv_cancel((uv_req_t *)&s->gai);
        return;
    }
    if (s->state == S_CONNECTING) {
        drop_connection(s);
        return;
    }
    transport_failed(s, HV_ETIMEDOUT);
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *b) {
    hv_mllp_sender_t *s = h->data;
    (void)suggested;
    b->base = s->rbuf;
    b->len = sizeof(s->rbuf);
}

static void write_head(hv_mllp_sender_t *s);
static int write_bytes(hv_mllp_sender_t *s, hv_buf_t *b, int is_frame);

/* Frames the plaintext of one read and handles the ACK it completes. */
static void on_plain(hv_mllp_sender_t *s, const char *in, size_t n) {
    size_t off = 0;
    while (off < n) {
        const char *msg;
        size_t len, used;
        char code[3];
        hv_hl7v2_span_t ctl;
        int rc = hv_mllp_framer_feed(&s->fr, in + off, n - off, &used, &msg, &len);
        off += used;
        if (rc == HV_AGAIN) return;
        if (rc != HV_OK || s->state != S_WAITING || s->head == NULL) {
            transport_failed(s, HV_EPROTO);
            return;
        }
        if (hv_hl7v2_ack_read(msg, len, code, &ctl) != HV_OK ||
            ctl.len != strlen(s->head->control_id) ||
            memcmp(ctl.p, s->head->control_id, ctl.len) != 0) {
            transport_failed(s, HV_EPROTO);
            return;
        }
        uv_timer_stop(&s->timer);
        s->state = S_IDLE;
        {
            int outcome = HV_MLLP_ERROR;
            if (code[1] == 'A') outcome = HV_MLLP_DELIVERED;
            else if (code[1] == 'E') outcome = HV_MLLP_RETRY;
            finish_head(s, HV_OK, outcome, msg, len);
        }
        if (s->freeing) return;
        start_next(s);
        return;
    }
}

/*
 * A TLS connection's network bytes: completes the handshake (then writes the
 * head message), and frames the plaintext. A TLS failure or close_notify ends
 * the connection like a socket error, after what plaintext came before it.
 */
static void on_tls_read(hv_mllp_sender_t *s, const char *in, size_t n) {
    hv_buf_t net;
    int rc;
    hv_buf_init(&net, 0);
    hv_buf_reset(&s->plain);
    rc = hv_tls_feed(s->tls, in, n, &s->plain, &net);
    if (net.len > 0 && write_bytes(s, &net, 0) != HV_OK && rc == HV_OK) rc = HV_EIO;
    hv_buf_release(&net);
    if (rc != HV_OK && rc != HV_ECLOSED) {
        s->tls_error = 1;
        transport_failed(s, rc == HV_EPROTO ? HV_EPROTO : HV_EIO);
        return;
    }
    if (s->state == S_HANDSHAKE && hv_tls_handshake_done(s->tls)) {
        uv_timer_stop(&s->timer);
        write_head(s);
    }
    if (s->plain.len > 0 && s->state == S_WAITING) on_plain(s, s->plain.data, s->plain.len);
    else if (s->plain.len > 0) rc = HV_EPROTO; /* application data before any frame was sent */
    if (rc != HV_OK && !s->freeing && s->tls != NULL)
        transport_failed(s, rc == HV_ECLOSED ? HV_EIO : rc);
}

static void on_read(uv_stream_t *st, ssize_t nread, const uv_buf_t *b) {
    hv_mllp_sender_t *s = st->data;
    if (nread == 0) return;
    if (nread < 0) {
        transport_failed(s, HV_EIO);
        return;
    }
    if (s->tls != NULL) on_tls_read(s, b->base, (size_t)nread);
    else on_plain(s, b->base, (size_t)nread);
}

static void on_write(uv_write_t *req, int status) {
    write_req_t *w = (write_req_t *)req;
    hv_mllp_sender_t *s = req->data;
    int is_frame = w->is_frame;
    hv_buf_release(&w->buf);
    hv_free(w);
    if (status < 0 && s->state == S_WAITING) {
        transport_failed(s, HV_EIO);
        return;
    }
    /* MSH-15 NE: the peer sends no accept acknowledgement; written is delivered. */
    if (is_frame && s->state == S_WAITING && s->head != NULL && s->head->ack_mode == ACK_NEVER) {
        uv_timer_stop(&s->timer);
        s->state = S_IDLE;
        finish_head(s, HV_OK, HV_MLLP_DELIVERED, NULL, 0);
        if (!s->freeing) start_next(s);
    }
}

/*
 * Queues bytes on the socket. With b: its bytes (the write takes them over);
 * without: the head message's frame, written in place (it outlives the write:
 * the head is only finished after on_write or an ACK).
 */
static int write_bytes(hv_mllp_sender_t *s, hv_buf_t *b, int is_frame) {
    write_req_t *w = hv_calloc(1, sizeof(*w));
    uv_buf_t ub;
    if (w == NULL) {
        if (b != NULL) hv_buf_release(b);
        return HV_ENOMEM;
    }
    w->req.data = s;
    w->is_frame = is_frame;
    if (b != NULL) {
        w->buf = *b;
        hv_buf_init(b, 0);
        ub = uv_buf_init(w->buf.data, (unsigned)w->buf.len);
    } else {
        hv_buf_init(&w->buf, 0);
        ub = uv_buf_init(s->head->frame.data, (unsigned)s->head->frame.len);
    }
    if (uv_write(&w->req, (uv_stream_t *)&s->tcp, &ub, 1, on_write) != 0) {
        hv_buf_release(&w->buf);
        hv_free(w);
        return HV_EIO;
    }
    return HV_OK;
}

static void write_head(hv_mllp_sender_t *s) {
    int rc;
    s->state = S_WAITING;
    uv_timer_start(&s->timer, on_timeout, s->o.ack_timeout_ms, 0);
    if (s->tls != NULL) {
        hv_buf_t net;
        hv_buf_init(&net, 0);
        rc = hv_tls_write(s->tls, s->head->frame.data, s->head->frame.len, &net);
        if (rc == HV_OK) rc = write_bytes(s, &net, 1);
        hv_buf_release(&net);
    } else {
        rc = write_bytes(s, NULL, 1);
    }
    if (rc != HV_OK) transport_failed(s, rc == HV_ENOMEM ? HV_ENOMEM : HV_EIO);
}

/* Starts the TLS handshake on a new connection; the head is written once it completes. */
static void start_tls(hv_mllp_sender_t *s) {
    hv_buf_t net;
    int rc = HV_ENOMEM;
    hv_buf_init(&net, 0);
    s->state = S_HANDSHAKE;
    uv_timer_start(&s->timer, on_timeout, s->o.connect_timeout_ms, 0);
    s->tls = hv_tls_new(s->tls_ctx, s->server_name);
    if (s->tls != NULL) rc = hv_tls_connect(s->tls, &net);
    if (rc == HV_OK) rc = write_bytes(s, &net, 0);
    hv_buf_release(&net);
    if (rc != HV_OK) transport_failed(s, rc);
}

static void on_connect(uv_connect_t *req, int status) {
    hv_mllp_sender_t *s = req->data;
    s->busy = 0;
    if (s->freeing) {
        maybe_release(s);
        return;
    }
    if (status < 0) {
        transport_failed(s, HV_EIO);
        return;
    }
    uv_timer_stop(&s->timer);
    if (uv_read_start((uv_stream_t *)&s->tcp, on_alloc, on_read) != 0) {
        transport_failed(s, HV_EIO);
        return;
    }
    if (s->tls_ctx != NULL) start_tls(s);
    else write_head(s);
}

static void on_resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *res) {
    hv_mllp_sender_t *s = req->data;
    s->busy = 0;
    if (s->freeing) {
        if (res) uv_freeaddrinfo(res);
        maybe_release(s);
        return;
    }
    if (status < 0 || res == NULL) {
        if (res) uv_freeaddrinfo(res);
        transport_failed(s, HV_EIO);
        return;
    }
    uv_tcp_init(s->loop, &s->tcp);
    s->tcp.data = s;
    s->tcp_open = 1;
    s->handles++;
    uv_tcp_nodelay(&s->tcp, 1);
    s->connect.data = s;
    s->state = S_CONNECTING;
    if (uv_tcp_connect(&s->connect, &s->tcp, res->ai_addr, on_connect) != 0) {
        uv_freeaddrinfo(res);
        transport_failed(s, HV_EIO);
        return;
    }
    s->busy = 1;
    uv_freeaddrinfo(res);
}

static void start_next(hv_mllp_sender_t *s) {
    char port[16];
    struct addrinfo hints;
    if (s->freeing || s->state != S_IDLE || s->head == NULL) return;
    s->head->attempts++;
    if (s->tcp_open) {
        write_head(s);
        return;
    }
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    snprintf(port, sizeof(port), "%d", s->o.port);
    s->gai.data = s;
    s->state = S_RESOLVING;
    uv_timer_start(&s->timer, on_timeout, s->o.connect_timeout_ms, 0);
    if (uv_getaddrinfo(s->loop, &s->gai, on_resolved, s->host, port, &hints) != 0) {
        transport_failed(s, HV_EIO);
        return;
    }
    s->busy = 1;
}

int hv_mllp_sender_new(uv_loop_t *loop, const hv_mllp_sender_opts_t *o, hv_mllp_sender_t **out,
                       hv_error_t *err) {
    hv_mllp_sender_t *s;
    hv_tls_ctx_t *ctx = NULL;
    const char *sni;
    if (o->host == NULL || strlen(o->host) >= sizeof(s->host) || o->port <= 0 || o->port > 65535)
        return HV_EINVAL;
    sni = o->tls_server_name != NULL && o->tls_server_name[0] ? o->tls_server_name : o->host;
    if (strlen(sni) >= sizeof(s->server_name)) return HV_EINVAL;
    if (o->tls) {
        hv_error_t e;
        hv_error_clear(&e);
        if ((o->tls_cert_file != NULL && o->tls_cert_file[0]) !=
            (o->tls_key_file != NULL && o->tls_key_file[0])) {
            hv_error_set(&e, HV_ECONFIG, NULL,
                         "a client certificate needs its key, and a key its certificate");
        } else {
            ctx = hv_tls_client_ctx_new(o->tls_ca_file, o->tls_cert_file, o->tls_key_file,
                                        !o->tls_insecure, &e);
        }
        if (ctx == NULL) {
            if (err != NULL) *err = e;
            return HV_ECONFIG;
        }
    }
    s = hv_calloc(1, sizeof(*s));
    if (s == NULL) {
        hv_tls_ctx_free(ctx);
        return HV_ENOMEM;
    }
    s->tls_ctx = ctx;
    snprintf(s->server_name, sizeof(s->server_name), "%s", sni);
    /* One read (16 KiB of TLS records) decrypts to less; the cap only guards the contract. */
    hv_buf_init(&s->plain, 4 * sizeof(s->rbuf));
    s->loop = loop;
    s->o = *o;
    /* The context holds what the TLS files said; the sender keeps no borrowed strings. */
    s->o.tls_ca_file = s->o.tls_cert_file = s->o.tls_key_file = NULL;
    s->o.tls_server_name = s->server_name;
    if (s->o.connect_timeout_ms == 0) s->o.connect_timeout_ms = 10000;
    if (s->o.ack_timeout_ms == 0) s->o.ack_timeout_ms = 30000;
    if (s->o.backoff_min_ms == 0) s->o.backoff_min_ms = 200;
    if (s->o.backoff_max_ms == 0) s->o.backoff_max_ms = 30000;
    if (s->o.max_attempts <= 0) s->o.max_attempts = 5;
    if (s->o.max_message == 0) s->o.max_message = 1u << 20;
    snprintf(s->host, sizeof(s->host), "%s", o->host);
    s->o.host = s->host;
    hv_mllp_framer_init(&s->fr, s->o.max_message);
    uv_timer_init(loop, &s->timer);
    s->timer.data = s;
    s->handles = 1;
    *out = s;
    return HV_OK;
}

int hv_mllp_sender_send(hv_mllp_sender_t *s, const char *msg, size_t len, hv_mllp_sent_cb cb,
                        void *ud) {
    hv_arena_t *a = NULL;
    hv_hl7v2_msg_t m;
    hv_hl7v2_span_t ctl;
    outmsg_t *om = NULL;
    int rc;
    if (s->freeing) return HV_ECLOSED;
    a = hv_arena_new(0);
    if (a == NULL) return HV_ENOMEM;
    rc = hv_hl7v2_msh_peek(a, msg, len, &m);
    if (rc != HV_OK || hv_hl7v2_get(&m, "MSH-10", &ctl) != HV_OK || ctl.len == 0 ||
        ctl.len >= sizeof(om->control_id)) {
        rc = HV_EINVAL;
        goto out;
    }
    om = hv_calloc(1, sizeof(*om));
    if (om == NULL) {
        rc = HV_ENOMEM;
        goto out;
    }
    memcpy(om->control_id, ctl.p, ctl.len);
    {
        hv_hl7v2_span_t m15;
        if (hv_hl7v2_get(&m, "MSH-15", &m15) == HV_OK && m15.len == 2) {
            if (memcmp(m15.p, "NE", 2) == 0) om->ack_mode = ACK_NEVER;
            else if (memcmp(m15.p, "ER", 2) == 0) om->ack_mode = ACK_ON_ERROR;
        }
    }
    hv_buf_init(&om->frame, 0);
    rc = hv_mllp_wrap(msg, len, &om->frame);
    if (rc != HV_OK) {
        hv_buf_release(&om->frame);
        hv_free(om);
        goto out;
    }
    om->cb = cb;
    om->ud = ud;
    if (s->tail != NULL) s->tail->next = om;
    else s->head = om;
    s->tail = om;
    s->queued++;
    start_next(s);
out:
    hv_arena_free(a);
    return rc;
}

size_t hv_mllp_sender_queued(const hv_mllp_sender_t *s) { return s->queued; }

const char *hv_mllp_sender_last_error(const hv_mllp_sender_t *s) { return s->last_error; }

void hv_mllp_sender_free(hv_mllp_sender_t *s) {
    if (s == NULL || s->freeing) return;
    s->freeing = 1;
    while (s->head != NULL) finish_head(s, HV_ECLOSED, HV_MLLP_RETRY, NULL, 0);
    if (s->state == S_RESOLVING) uv_cancel((uv_req_t *)&s->gai);
    if (s->tcp_open) {
        s->tcp_open = 0;
        uv_close((uv_handle_t *)&s->tcp, on_closed);
    }
    uv_close((uv_handle_t *)&s->timer, on_closed);
}
