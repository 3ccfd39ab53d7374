/*
 * channel.c — HL7 v2 for the channel runtime (engine.h "Channels"): the `mllp`
 * source, the `mllp-send` destination and the "hl7v2" path syntax of filter
 * rules, registered by the small module hv_hl7v2_channels_module (kept apart from
 * module.c so that the hl7v2-inbound listener and store stay as they are).
 *
 * mllp source (HL7 v2.5.1 Appendix C, MLLP release 2; ACKs §2.9): listens on the
 * channel's "listen" address; each frame is parsed and handed to the channel's
 * message store (hv_channel_receive); the ACK (AA, or CA in enhanced mode) is
 * written once the store has committed; a frame that does not parse gets AR with
 * an ERR segment, a store failure AE. ACKs leave in the order the messages came
 * (a FIFO per connection). With "response": "after-destinations" the ACK waits
 * for the destinations (AE when they time out or dead-letter the message).
 * A resend — the same MSH-3, MSH-4 and MSH-10 within dedup_window_ms (24 h by
 * default, 0: off) — is found by the channel store in the insert's transaction:
 * it is not stored again and gets AA. Limits as the hl7v2-inbound listener's:
 * max_message, max_connections (more are accepted and closed), idle_timeout_ms
 * (5 min), and back-pressure: reading pauses while max_inflight (256) messages
 * of the connection wait for their ACK or 1 MiB of ACKs is unread. TLS (tls_cert
 * and tls_key; tls_client_ca requires client certificates): the port speaks TLS
 * only, through the engine's hv_tls_* over memory BIOs, like hl7v2-inbound.
 *
 * mllp-send wraps hv_mllp_sender with one attempt per delivery: the channel's
 * queue does the retries, backoff and dead-lettering. AA/CA → delivered, AE/CE
 * and transport failures → retry, AR/CR → error (dead-letter).
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include "adapters/hl7v2/hl7v2_int.h"

#define CONTENT_TYPE "x-application/hl7-v2+er7"

/* ------------------------------------------------------------------------- */
/* Path provider                                                             */
/* ------------------------------------------------------------------------- */

static int paths_check(const char *path, hv_error_t *err) {
    hv_hl7v2_path_t p;
    if (hv_hl7v2_path_parse(path, &p) != HV_OK) {
        hv_error_set(err, HV_ECONFIG, NULL,
                     "\"%s\" is not an HL7 v2 path (e.g. MSH-9.1, PID-3[2].1, OBX[2]-5)", path);
        return HV_ECONFIG;
    }
    return HV_OK;
}

static int paths_get(const hv_channel_msg_t *m, const char *path, char **out) {
    hv_hl7v2_parse_opts_t o;
    hv_hl7v2_msg_t msg;
    hv_error_t err;
    size_t n = 0;
    if (m->arena == NULL) return HV_EINVAL;
    hv_hl7v2_parse_opts_default(&o);
    o.strict_escapes = 0;
    if (hv_hl7v2_parse(m->arena, m->content, m->len, &o, &msg, &err, NULL) != HV_OK)
        return HV_EPROTO;
    return hv_hl7v2_get_text(&msg, path, out, &n);
}

static const hv_channel_path_provider_t hl7_paths = {"hl7v2", paths_check, paths_get};

/* ------------------------------------------------------------------------- */
/* mllp-send                                                                 */
/* ------------------------------------------------------------------------- */

typedef struct msend {
    hv_mllp_sender_t *sender;
} msend_t;

typedef struct msend_req {
    hv_channel_sent_cb done;
    void *token;
} msend_req_t;

static int int_key(json_object *v, int64_t lo, int64_t hi) {
    return json_object_is_type(v, json_type_int) && json_object_get_int64(v) >= lo &&
           json_object_get_int64(v) <= hi;
}

static int msend_check(struct json_object *conf, hv_error_t *err) {
    json_object_object_foreach(conf, k, v) {
        if (strcmp(k, "host") == 0) {
            if (json_object_is_type(v, json_type_string) && json_object_get_string_len(v) > 0)
                continue;
            hv_error_set(err, HV_ECONFIG, k, "\"host\" must be a host name or address");
        } else if (strcmp(k, "port") == 0) {
            if (int_key(v, 1, 65535)) continue;
            hv_error_set(err, HV_ECONFIG, k, "\"port\" must be an integer from 1 to 65535");
        } else if (strcmp(k, "tls") == 0 || strcmp(k, "tls_insecure") == 0) {
            if (json_object_is_type(v, json_type_boolean)) continue;
            hv_error_set(err, HV_ECONFIG, k, "\"%s\" must be true or false", k);
        } else if (strcmp(k, "tls_ca_file") == 0) {
            if (json_object_is_type(v, json_type_string)) continue;
            hv_error_set(err, HV_ECONFIG, k, "\"tls_ca_file\" is the path of a PEM file");
        } else if (strcmp(k, "ack_timeout_ms") == 0 || strcmp(k, "connect_timeout_ms") == 0) {
            if (int_key(v, 1, 3600000)) continue;
            hv_error_set(err, HV_ECONFIG, k, "\"%s\" must be an integer from 1 to 3600000", k);
        } else {
            hv_error_set(err, HV_ECONFIG, k,
                         "unknown key \"%s\" in an mllp-send destination (known: host, port, "
                         "ack_timeout_ms, connect_timeout_ms, tls, tls_ca_file, tls_insecure)",
                         k);
        }
        return HV_ECONFIG;
    }
    if (hv_json_get_str(conf, "host") == NULL || !json_object_object_get_ex(conf, "port", NULL)) {
        hv_error_set(err, HV_ECONFIG, NULL, "an mllp-send destination needs \"host\" and \"port\"");
        return HV_ECONFIG;
    }
    return HV_OK;
}

static int msend_open(hv_engine_t *e, const char *channel, struct json_object *conf, void **state,
                      hv_error_t *err) {
    hv_mllp_sender_opts_t o;
    json_object *v = NULL;
    msend_t *s = hv_calloc(1, sizeof(*s));
    int rc;
    (void)channel;
    if (s == NULL) return HV_ENOMEM;
    memset(&o, 0, sizeof(o));
    o.host = hv_json_get_str(conf, "host");
    json_object_object_get_ex(conf, "port", &v);
    o.port = json_object_get_int(v);
    o.max_attempts = 1; /* the channel's queue retries */
    if (json_object_object_get_ex(conf, "ack_timeout_ms", &v))
        o.ack_timeout_ms = (uint64_t)json_object_get_int64(v);
    if (json_object_object_get_ex(conf, "connect_timeout_ms", &v))
        o.connect_timeout_ms = (uint64_t)json_object_get_int64(v);
    if (json_object_object_get_ex(conf, "tls", &v)) o.tls = json_object_get_boolean(v);
    if (json_object_object_get_ex(conf, "tls_insecure", &v)) o.tls_insecure = json_object_get_boolean(v);
    o.tls_ca_file = hv_json_get_str(conf, "tls_ca_file");
    rc = hv_mllp_sender_new(hv_engine_loop(e), &o, &s->sender, err);
    if (rc != HV_OK) {
        if (err != NULL && err->message[0] == '\0')
            hv_error_set(err, rc, NULL, "mllp-send: cannot create the sender: %s", hv_strerror(rc));
        hv_free(s);
        return rc;
    }
    *state = s;
    return HV_OK;
}

static void msend_sent(int status, int outcome, const char *ack, size_t ack_len, void *ud) {
    msend_req_t *r = ud;
    char detail[96];
    char code[3] = {0};
    int result;
    if (status != HV_OK) {
        snprintf(detail, sizeof(detail), "%s", hv_strerror(status));
        result = HV_CHANNEL_RETRY;
    } else {
        if (hv_hl7v2_ack_read(ack, ack_len, code, NULL) != HV_OK) snprintf(code, sizeof(code), "??");
        snprintf(detail, sizeof(detail), "ACK %.2s", code);
        result = outcome == HV_MLLP_DELIVERED ? HV_CHANNEL_DELIVERED
                 : outcome == HV_MLLP_ERROR   ? HV_CHANNEL_ERROR
                                              : HV_CHANNEL_RETRY;
    }
    r->done(r->token, result, detail);
    hv_free(r);
}

static int msend_send(void *state, const hv_channel_msg_t *m, hv_channel_sent_cb done,
                      void *token) {
    msend_t *s = state;
    msend_req_t *r = hv_calloc(1, sizeof(*r));
    int rc;
    if (r == NULL) return HV_ENOMEM;
    r->done = done;
    r->token = token;
    rc = hv_mllp_sender_send(s->sender, m->content, m->len, msend_sent, r);
    if (rc != HV_OK) {
        hv_free(r);
        /* No readable MSH-10: this message can never be acknowledged. */
        return rc;
    }
    return HV_OK;
}

static void msend_close(void *state) {
    msend_t *s = state;
    if (s == NULL) return;
    hv_mllp_sender_free(s->sender);
    hv_free(s);
}

static const hv_channel_dest_t mllp_send = {"mllp-send", msend_check, msend_open, msend_send,
                                            msend_close};

/* ------------------------------------------------------------------------- */
/* mllp source                                                               */
/* ------------------------------------------------------------------------- */

typedef struct msrc msrc_t;
typedef struct mconn mconn_t;

typedef struct mpend {
    struct mpend *next;
    mconn_t *conn;
    hv_arena_t *arena;
    hv_hl7v2_msg_t msh; /* the MSH of the message, to build the ACK from */
    int ready;
    hv_buf_t out;       /* the framed ACK */
} mpend_t;

struct mconn {
    uv_tcp_t tcp;
    hv_tls_t *tls; /* NULL on a plaintext port */
    uv_timer_t idle;
    msrc_t *src;
    mconn_t *prev, *next;
    hv_mllp_framer_t fr;
    mpend_t *head, *tail;
    size_t npending; /* entries in the FIFO (not yet written) */
    int in_store;
    int closing;
    int reading;
    int handles; /* open libuv handles (tcp, idle timer) */
    int closed;  /* every handle's close callback has run */
};

struct msrc {
    hv_channel_t *ch;
    uv_tcp_t server;
    mconn_t *conns;
    size_t nconns;
    size_t max_message;
    size_t max_connections; /* more are accepted and closed at once */
    size_t max_inflight;    /* unacknowledged messages per connection before reading pauses */
    uint64_t idle_ms;       /* a connection without a byte for this long is closed (0: never) */
    uint64_t dedup_ms;      /* resends (MSH-3, MSH-4, MSH-10) within this window: not stored again */
    hv_tls_ctx_t *tls;      /* tls_cert + tls_key: the port speaks TLS only */
    hv_buf_t plain;         /* scratch: the plaintext of one read */
    int stopping;
    int refs; /* the server handle plus one per connection */
};

#define MCONN_MAX_UNWRITTEN (1u << 20) /* ACK bytes the peer has not read: reading pauses */

static void msrc_unref(msrc_t *s) {
    if (--s->refs > 0) return;
    hv_tls_ctx_free(s->tls);
    hv_buf_release(&s->plain);
    hv_free(s);
}

static void pend_free(mpend_t *p) {
    hv_buf_release(&p->out);
    hv_arena_free(p->arena);
    hv_free(p);
}

static void conn_free(mconn_t *c) {
    msrc_t *s = c->src;
    hv_mllp_framer_release(&c->fr);
    hv_tls_free(c->tls);
    hv_free(c);
    msrc_unref(s);
}

static void on_conn_closed(uv_handle_t *h) {
    mconn_t *c = h->data;
    if (--c->handles > 0) return;
    c->closed = 1;
    if (c->in_store == 0) conn_free(c); /* else the last store callback frees it */
}

static void conn_close(mconn_t *c) {
    msrc_t *s = c->src;
    if (c->closing) return;
    c->closing = 1;
    if (c->prev) c->prev->next = c->next;
    else s->conns = c->next;
    if (c->next) c->next->prev = c->prev;
    s->nconns--;
    while (c->head != NULL) {
        mpend_t *p = c->head;
        c->head = p->next;
        if (p->ready) pend_free(p); /* else its store callback frees it */
    }
    c->tail = NULL;
    uv_close((uv_handle_t *)&c->tcp, on_conn_closed);
    uv_close((uv_handle_t *)&c->idle, on_conn_closed);
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *b);
static void on_read(uv_stream_t *st, ssize_t n, const uv_buf_t *b);

/* Back-pressure: reading pauses while max_inflight messages wait for their ACK
 * (the store or the destinations lag) or the peer does not read its ACKs. */
static void reading_update(mconn_t *c) {
    int want;
    if (c->closing) return;
    want = c->npending < c->src->max_inflight &&
           uv_stream_get_write_queue_size((uv_stream_t *)&c->tcp) < MCONN_MAX_UNWRITTEN;
    if (want && !c->reading) {
        if (uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) == 0) c->reading = 1;
    } else if (!want && c->reading) {
        uv_read_stop((uv_stream_t *)&c->tcp);
        c->reading = 0;
    }
}

static void on_written(uv_write_t *w, int status) {
    mconn_t *c = w->handle->data;
    (void)status;
    hv_free(w->data);
    hv_free(w);
    reading_update(c);
}

/* Writes bytes as they go on the wire (already encrypted on a TLS port); takes b's storage. */
static void conn_write_raw(mconn_t *c, hv_buf_t *b) {
    uv_write_t *w;
    uv_buf_t ub;
    if (b->len == 0) return;
    w = hv_calloc(1, sizeof(*w));
    if (w == NULL) return;
    ub.len = b->len;
    ub.base = b->data;
    w->data = hv_buf_take(b);
    if (uv_write(w, (uv_stream_t *)&c->tcp, &ub, 1, on_written) != 0) {
        hv_free(w->data);
        hv_free(w);
    }
}

/* Writes the ACKs that are ready, in arrival order (encrypted first on a TLS port). */
static void conn_flush(mconn_t *c) {
    while (c->head != NULL && c->head->ready) {
        mpend_t *p = c->head;
        c->head = p->next;
        c->npending--;
        if (c->head == NULL) c->tail = NULL;
        if (c->tls != NULL && p->out.len > 0) {
            hv_buf_t net;
            hv_buf_init(&net, 0);
            if (hv_tls_write(c->tls, p->out.data, p->out.len, &net) == HV_OK) conn_write_raw(c, &net);
            hv_buf_release(&net);
        } else {
            conn_write_raw(c, &p->out);
        }
        pend_free(p);
    }
    reading_update(c);
}

static void pend_ack(mpend_t *p, int code, const char *what) {
    hv_hl7v2_ack_opts_t o;
    hv_hl7v2_ack_err_t e;
    hv_buf_t ack;
    memset(&o, 0, sizeof(o));
    o.code = code;
    if (what != NULL) {
        e.location = "";
        e.code = code == HV_HL7V2_ACK_REJECT ? HV_HL7V2_E_SEGMENT_SEQUENCE : HV_HL7V2_E_INTERNAL;
        e.severity = HV_HL7V2_SEV_ERROR;
        e.message = what;
        o.errs = &e;
        o.nerrs = 1;
    }
    hv_buf_init(&ack, 0);
    if (hv_hl7v2_ack_build(p->msh.nsegs ? &p->msh : NULL, &o, &ack) == HV_OK &&
        (p->msh.nsegs == 0 || hv_hl7v2_ack_wanted(&p->msh, code)))
        hv_mllp_wrap(ack.data, ack.len, &p->out);
    hv_buf_release(&ack);
    p->ready = 1;
}

static void on_stored(int status, int64_t id, void *ud) {
    mpend_t *p = ud;
    mconn_t *c = p->conn;
    (void)id;
    c->in_store--;
    if (c->closing) { /* the connection went away: nobody to answer */
        pend_free(p);
        if (c->closed && c->in_store == 0) conn_free(c);
        return;
    }
    /* With response after-destinations the message may be stored (id > 0) and still
     * not delivered: AE says so, and a resend is recognised by its MSH-10. */
    pend_ack(p, status == HV_OK ? HV_HL7V2_ACK_ACCEPT : HV_HL7V2_ACK_ERROR,
             status == HV_OK             ? NULL
             : status == HV_ETIMEDOUT    ? "stored, but not delivered in time"
             : status == HV_EPROTO       ? "stored, but a destination refused it"
             : status == HV_EINVAL       ? "stored, but a step failed on it"
                                         : "the message could not be stored; resend it later");
    conn_flush(c);
}

static void on_frame(mconn_t *c, const char *msg, size_t len) {
    mpend_t *p = hv_calloc(1, sizeof(*p));
    int rc;
    if (p == NULL || (p->arena = hv_arena_new(0)) == NULL) {
        hv_free(p);
        conn_close(c);
        return;
    }
    p->conn = c;
    hv_buf_init(&p->out, 0);
    /* The frame is borrowed from the framer: keep a copy for the ACK built later. */
    msg = hv_arena_strndup(p->arena, msg, len);
    if (msg == NULL) {
        pend_free(p);
        conn_close(c);
        return;
    }
    if (c->tail) c->tail->next = p;
    else c->head = p;
    c->tail = p;
    c->npending++;
    if (hv_hl7v2_msh_peek(p->arena, msg, len, &p->msh) != HV_OK) {
        memset(&p->msh, 0, sizeof(p->msh));
        pend_ack(p, HV_HL7V2_ACK_REJECT, "no readable MSH segment");
        return;
    }
    {
        /* A resend is the same (MSH-3, MSH-4, MSH-10) within the window: the store
         * finds the first copy, stores nothing, and the sender gets AA again. */
        char *key = NULL;
        hv_hl7v2_span_t app, fac, ctl;
        if (c->src->dedup_ms > 0 && hv_hl7v2_get(&p->msh, "MSH-10", &ctl) == HV_OK && ctl.len > 0) {
            if (hv_hl7v2_get(&p->msh, "MSH-3", &app) != HV_OK) app.len = 0;
            if (hv_hl7v2_get(&p->msh, "MSH-4", &fac) != HV_OK) fac.len = 0;
            key = hv_arena_sprintf(p->arena, "msh:%.*s|%.*s|%.*s", (int)app.len,
                                   app.len ? app.p : "", (int)fac.len, fac.len ? fac.p : "",
                                   (int)ctl.len, ctl.p);
        }
        rc = hv_channel_receive_keyed(c->src->ch, msg, len, CONTENT_TYPE, key,
                                      key ? c->src->dedup_ms : 0, on_stored, p);
    }
    if (rc != HV_OK) {
        pend_ack(p, HV_HL7V2_ACK_ERROR, "the engine is busy; resend it later");
        return;
    }
    c->in_store++;
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *b) {
    (void)h;
    b->base = hv_malloc(suggested);
    b->len = b->base ? suggested : 0;
}

static void on_read(uv_stream_t *st, ssize_t n, const uv_buf_t *b) {
    mconn_t *c = st->data;
    const char *in = b->base;
    size_t off = 0, len = n > 0 ? (size_t)n : 0;
    int tls_closed = 0;
    if (n < 0) {
        hv_free(b->base);
        conn_close(c);
        return;
    }
    if (n > 0 && c->src->idle_ms > 0) uv_timer_again(&c->idle);
    if (c->tls != NULL && n > 0) {
        /* TLS (RFC 8446 / 5246 through hv_tls_*): network bytes in, plaintext out, and
         * whatever TLS answers (handshake, alerts) written at once. */
        hv_buf_t net;
        int rc;
        hv_buf_init(&net, 0);
        hv_buf_reset(&c->src->plain);
        rc = hv_tls_feed(c->tls, b->base, (size_t)n, &c->src->plain, &net);
        conn_write_raw(c, &net);
        hv_buf_release(&net);
        if (rc != HV_OK && rc != HV_ECLOSED) {
            hv_logrec_t *r = hv_log_begin(HV_LOG_WARN, "channel.mllp.tls_failed");
            hv_log_str(r, "channel", hv_channel_id(c->src->ch));
            hv_log_str(r, "stage", hv_tls_handshake_done(c->tls) ? "records" : "handshake");
            hv_log_end(r);
            hv_free(b->base);
            conn_close(c);
            return;
        }
        tls_closed = rc == HV_ECLOSED;
        in = c->src->plain.data;
        len = c->src->plain.len;
    }
    while (!c->closing && off < len) {
        const char *msg = NULL;
        size_t used = 0, mlen = 0;
        int rc = hv_mllp_framer_feed(&c->fr, in + off, len - off, &used, &msg, &mlen);
        off += used;
        if (rc == HV_OK) on_frame(c, msg, mlen);
        else if (rc == HV_AGAIN) break;
        else {
            conn_flush(c);
            conn_close(c);
        }
    }
    hv_free(b->base);
    if (!c->closing) conn_flush(c);
    if (tls_closed && !c->closing && c->head == NULL) conn_close(c); /* close_notify */
}

static void on_idle(uv_timer_t *t) { conn_close(t->data); }

static void on_connection(uv_stream_t *server, int status) {
    msrc_t *s = server->data;
    mconn_t *c;
    if (status < 0 || s->stopping) return;
    c = hv_calloc(1, sizeof(*c));
    if (c == NULL) return;
    c->src = s;
    uv_tcp_init(server->loop, &c->tcp);
    c->tcp.data = c;
    uv_timer_init(server->loop, &c->idle);
    c->idle.data = c;
    c->handles = 2;
    s->refs++;
    hv_mllp_framer_init(&c->fr, s->max_message);
    c->next = s->conns;
    if (s->conns) s->conns->prev = c;
    s->conns = c;
    s->nconns++;
    if (uv_accept(server, (uv_stream_t *)&c->tcp) != 0 || s->nconns > s->max_connections ||
        (s->tls != NULL && (c->tls = hv_tls_new(s->tls, NULL)) == NULL)) {
        conn_close(c);
        return;
    }
    if (s->idle_ms > 0) uv_timer_start(&c->idle, on_idle, s->idle_ms, s->idle_ms);
    reading_update(c);
    if (!c->reading) conn_close(c);
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
    if (hv_json_get_str(conf, "listen") == NULL) {
        hv_error_set(err, HV_ECONFIG, NULL, "an mllp source needs \"listen\"");
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

static int msrc_start(hv_channel_t *ch, struct json_object *conf, void **state, hv_error_t *err) {
    msrc_t *s = hv_calloc(1, sizeof(*s));
    json_object *v = NULL;
    struct sockaddr_storage addr;
    char host[256];
    int port = 0, r;
    if (s == NULL) return HV_ENOMEM;
    s->ch = ch;
    s->max_message = 16u << 20;
    s->max_connections = 10000;
    s->max_inflight = 256;
    s->idle_ms = 300000;
    s->dedup_ms = 86400000;
    s->refs = 1;
    if (json_object_object_get_ex(conf, "max_message", &v))
        s->max_message = (size_t)json_object_get_int64(v);
    if (json_object_object_get_ex(conf, "max_connections", &v))
        s->max_connections = (size_t)json_object_get_int64(v);
    if (json_object_object_get_ex(conf, "max_inflight", &v))
        s->max_inflight = (size_t)json_object_get_int64(v);
    if (json_object_object_get_ex(conf, "idle_timeout_ms", &v))
        s->idle_ms = (uint64_t)json_object_get_int64(v);
    if (json_object_object_get_ex(conf, "dedup_window_ms", &v))
        s->dedup_ms = (uint64_t)json_object_get_int64(v);
    hv_buf_init(&s->plain, 0);
    if (hv_json_get_str(conf, "tls_cert") != NULL) {
        s->tls = hv_tls_server_ctx_new(hv_json_get_str(conf, "tls_cert"),
                                       hv_json_get_str(conf, "tls_key"),
                                       hv_json_get_str(conf, "tls_client_ca"), err);
        if (s->tls == NULL) {
            hv_free(s);
            return HV_ECONFIG;
        }
    }
    hv_parse_hostport(hv_json_get_str(conf, "listen"), host, sizeof(host), &port);
    if (uv_ip4_addr(host, port, (struct sockaddr_in *)&addr) != 0 &&
        uv_ip6_addr(host, port, (struct sockaddr_in6 *)&addr) != 0) {
        hv_error_set(err, HV_ECONFIG, NULL, "mllp: %s is not an IP address", host);
        hv_tls_ctx_free(s->tls);
        hv_free(s);
        return HV_ECONFIG;
    }
    uv_tcp_init(hv_engine_loop(hv_channel_engine(ch)), &s->server);
    s->server.data = s;
    r = uv_tcp_bind(&s->server, (const struct sockaddr *)&addr, 0);
    if (r == 0) r = uv_listen((uv_stream_t *)&s->server, 511, on_connection);
    if (r != 0) {
        hv_error_set(err, HV_EIO, NULL, "mllp: cannot listen on %s:%d: %s", host, port,
                     uv_strerror(r));
        uv_close((uv_handle_t *)&s->server, on_server_closed);
        return HV_EIO;
    }
    *state = s;
    return HV_OK;
}

static void msrc_stop(void *state) {
    msrc_t *s = state;
    s->stopping = 1;
    while (s->conns != NULL) conn_close(s->conns);
    uv_close((uv_handle_t *)&s->server, on_server_closed);
}

static const hv_channel_source_t mllp_source = {"mllp", msrc_check, msrc_start, msrc_stop};

/* ------------------------------------------------------------------------- */

static int channels_init(hv_engine_t *e, void **state) {
    int rc = hv_channel_register_paths(e, &hl7_paths);
    if (rc == HV_OK) rc = hv_channel_register_dest(e, &mllp_send);
    if (rc == HV_OK) rc = hv_channel_register_source(e, &mllp_source);
    *state = NULL;
    return rc;
}

const hv_module_t hv_hl7v2_channels_module = {
    "hl7v2-channels", NULL, NULL, channels_init, NULL, NULL, NULL,
};
