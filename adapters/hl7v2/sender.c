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
 */
#include "config.h"

#include <stdio.h>
#include <string.h>

#include "adapters/hl7v2/hl7v2_int.h"

enum { S_IDLE = 0, S_RESOLVING, S_CONNECTING, S_WAITING, S_CLOSED };

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
    char rbuf[16384];
};

static void start_next(hv_mllp_sender_t *s);

static void maybe_release(hv_mllp_sender_t *s) {
    if (s->freeing && s->handles == 0 && !s->busy) {
        hv_mllp_framer_release(&s->fr);
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

static void on_read(uv_stream_t *st, ssize_t nread, const uv_buf_t *b) {
    hv_mllp_sender_t *s = st->data;
    size_t off = 0;
    if (nread == 0) return;
    if (nread < 0) {
        transport_failed(s, HV_EIO);
        return;
    }
    while (off < (size_t)nread) {
        const char *msg;
        size_t len, used;
        char code[3];
        hv_hl7v2_span_t ctl;
        int rc = hv_mllp_framer_feed(&s->fr, b->base + off, (size_t)nread - off, &used, &msg, &len);
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

static void on_write(uv_write_t *w, int status) {
    hv_mllp_sender_t *s = w->data;
    hv_free(w);
    if (status < 0 && s->state == S_WAITING) {
        transport_failed(s, HV_EIO);
        return;
    }
    /* MSH-15 NE: the peer sends no accept acknowledgement; written is delivered. */
    if (s->state == S_WAITING && s->head != NULL && s->head->ack_mode == ACK_NEVER) {
        uv_timer_stop(&s->timer);
        s->state = S_IDLE;
        finish_head(s, HV_OK, HV_MLLP_DELIVERED, NULL, 0);
        if (!s->freeing) start_next(s);
    }
}

static void write_head(hv_mllp_sender_t *s) {
    uv_write_t *w = hv_calloc(1, sizeof(*w));
    uv_buf_t b;
    if (w == NULL) {
        transport_failed(s, HV_ENOMEM);
        return;
    }
    w->data = s;
    b = uv_buf_init(s->head->frame.data, (unsigned)s->head->frame.len);
    s->state = S_WAITING;
    uv_timer_start(&s->timer, on_timeout, s->o.ack_timeout_ms, 0);
    if (uv_write(w, (uv_stream_t *)&s->tcp, &b, 1, on_write) != 0) {
        hv_free(w);
        transport_failed(s, HV_EIO);
    }
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
    write_head(s);
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

int hv_mllp_sender_new(uv_loop_t *loop, const hv_mllp_sender_opts_t *o, hv_mllp_sender_t **out) {
    hv_mllp_sender_t *s;
    if (o->host == NULL || strlen(o->host) >= sizeof(s->host) || o->port <= 0 || o->port > 65535)
        return HV_EINVAL;
    s = hv_calloc(1, sizeof(*s));
    if (s == NULL) return HV_ENOMEM;
    s->loop = loop;
    s->o = *o;
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
