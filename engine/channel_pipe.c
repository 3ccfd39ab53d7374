/*
 * channel_pipe.c — http-send's pipelined HTTP/1.1 client: a window of requests in
 * flight on one kept-alive connection, answered in order (RFC 9112 §9.3.2,
 * "Pipelining": a client that supports persistent connections MAY pipeline its
 * requests; a server MUST send its responses in the same order the requests were
 * received).
 *
 * An ordered http-send worker hands its ready messages as one batch (hv__dest_batch_fn,
 * channel_int.h). The batch's requests are written back to back — at most `window`
 * unanswered at a time — on the destination's one TCP connection, and the responses
 * are read in order with http_parser. Because the requests travel one connection in
 * queue order and the server answers them in that order, the receiver sees the
 * messages in queue order exactly as with one request at a time.
 *
 * Outcomes, per response, as for one request (channel_http.c): 2xx delivered; 408,
 * 429, 5xx retry; other statuses error (dead-letter). The batch ends at the first
 * retry or transport failure (refused, reset, closed early, timeout): the messages
 * answered before it are reported, the failing one is reported as a retry, and
 * everything after it — possibly already written and even processed by the receiver —
 * is reported as not attempted and sent again, in order, on a new connection. So the
 * receiver may see a message twice only after a failure (at-least-once, with the same
 * X-Message-Id), never out of order. A response that closes the connection
 * (HTTP/1.0, "Connection: close") ends the batch after it: the requests it did not
 * answer go again on a new connection, and the destination sends one request per
 * connection from then on (such a peer reads no pipeline).
 *
 * Only plain http:// URLs without user information are pipelined; https, and large
 * messages whose content stays in a file, use libcurl one request at a time
 * (channel_http.c decides). A connection reused from an earlier batch that fails
 * before its first answer (the peer closed it while idle) is retried once on a fresh
 * connection, as libcurl does.
 *
 * Wire format of each request (the same as the libcurl path):
 *
 *   METHOD /path?query HTTP/1.1
 *   Host: host[:port]
 *   <configured headers>
 *   Content-Type: <the message's>
 *   X-Message-Id: <id>
 *   Content-Length: <n>
 *
 *   <content>
 */
#include "config.h"
#include "engine/channel_rt.h"

#include <http_parser.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PIPE_READ_BUF 65536
#define PIPE_RESPONSE_MAX (16 * 65536) /* bytes of one response body read at most */
#define PIPE_MAX_HOST 256

/* One TCP connection; freed in its close callback. Write and connect callbacks of a
 * connection that is no longer the pipeline's current one are ignored. */
typedef struct pconn {
    uv_tcp_t tcp;
    uv_connect_t req;
    hv__pipe_t *p;
} pconn_t;

struct hv__pipe {
    uv_loop_t *loop;
    char host[PIPE_MAX_HOST];
    char port[8];
    char *path;   /* with the query, "/" at least */
    char *method;
    char *hostline; /* "Host: h[:p]\r\n" plus the configured headers, each "K: V\r\n" */
    size_t window;
    int close_each; /* the peer closes after every response: one request per connection */
    uint64_t timeout_ms, connect_timeout_ms;

    uv_timer_t timer;
    pconn_t *conn;           /* the current connection, or NULL */
    uv_getaddrinfo_t *gai;   /* the name resolution in flight, or NULL */
    http_parser parser;
    http_parser_settings settings;
    int connected;  /* conn is connected */
    int reused;     /* this batch started on a connection of an earlier batch */
    int retried;    /* this batch was restarted once on a fresh connection */
    int pending;    /* callbacks libuv still owes: timer close, connections' close, resolutions */
    int freeing;    /* hv__pipe_free was called: the struct goes when pending is 0 */
    int in_send;    /* inside hv__pipe_send: a failure is returned, done is not called */
    int offline;    /* hv__pipe_feed_answers: no loop, no socket (tests and fuzzing) */
    int send_failed;
    char rbuf[PIPE_READ_BUF];

    /* The batch in flight (b_done != NULL). */
    hv__batch_sent_cb b_done;
    void *b_token;
    char *b_buf;      /* every request of the batch, back to back */
    size_t *b_off;    /* b_off[i]: start of request i in b_buf; b_off[n]: the end */
    size_t b_n, b_written, b_answered;
    int *b_results;
    char (*b_details)[64];
    size_t b_body;    /* body bytes of the response being read */
    int b_keep;       /* the last response allows another on this connection */
    int b_failed;     /* a transport failure or retry ended the batch */
};

static void pipe_maybe_free(hv__pipe_t *p);

static void on_timer_closed(uv_handle_t *h) {
    hv__pipe_t *p = h->data;
    p->pending--;
    pipe_maybe_free(p);
}

static void on_conn_closed(uv_handle_t *h) {
    pconn_t *c = h->data;
    hv__pipe_t *p = c->p;
    hv_free(c);
    p->pending--;
    pipe_maybe_free(p);
}

static void pipe_maybe_free(hv__pipe_t *p) {
    if (!p->freeing || p->pending > 0) return;
    hv_free(p->path);
    hv_free(p->method);
    hv_free(p->hostline);
    hv_free(p);
}

static void conn_close(hv__pipe_t *p) {
    pconn_t *c = p->conn;
    p->connected = 0;
    p->conn = NULL;
    if (c != NULL) uv_close((uv_handle_t *)&c->tcp, on_conn_closed); /* pending: counted at init */
}

static void batch_clear(hv__pipe_t *p) {
    hv_free(p->b_buf);
    hv_free(p->b_off);
    hv_free(p->b_results);
    hv_free(p->b_details);
    p->b_buf = NULL;
    p->b_off = NULL;
    p->b_results = NULL;
    p->b_details = NULL;
    p->b_done = NULL;
    p->b_token = NULL;
    p->b_n = p->b_written = p->b_answered = 0;
}

/*
 * Ends the batch: reports the answered requests, plus, when failed, the first
 * unanswered one as a retry with detail. The connection is kept only when every
 * request was answered and the last answer kept it alive.
 */
static void batch_finish(hv__pipe_t *p, const char *fail_detail) {
    hv__batch_sent_cb done = p->b_done;
    void *token = p->b_token;
    const char *details_s[64], **details = details_s;
    size_t n = p->b_answered, i;
    if (done == NULL) return;
    if (!p->offline) uv_timer_stop(&p->timer);
    if (p->in_send) { /* hv__pipe_send returns the failure: done must not run */
        p->send_failed = 1;
        conn_close(p);
        batch_clear(p);
        return;
    }
    if (fail_detail != NULL && n < p->b_n) {
        p->b_results[n] = HV_CHANNEL_RETRY;
        snprintf(p->b_details[n], sizeof(p->b_details[n]), "%s", fail_detail);
        n++;
    }
    if (fail_detail != NULL || !p->b_keep || p->b_answered < p->b_n) conn_close(p);
    else if (p->conn != NULL) uv_read_stop((uv_stream_t *)&p->conn->tcp); /* idle until the next batch */
    if (n > 64) details = hv_malloc(n * sizeof(*details));
    if (details == NULL) { /* report the first alone: the rest are sent again */
        details = details_s;
        n = 1;
    }
    for (i = 0; i < n; i++) details[i] = p->b_details[i];
    /* done may free the destination (and call hv__pipe_free): nothing of p after it
     * but what batch_clear reads, which it does first. */
    {
        int *results = p->b_results;
        char(*dets)[64] = p->b_details;
        p->b_results = NULL;
        p->b_details = NULL;
        batch_clear(p);
        done(token, n, results, details);
        hv_free(results);
        hv_free(dets);
    }
    if (details != details_s) hv_free(details);
}

static void batch_write_more(hv__pipe_t *p);

static void pipe_connect(hv__pipe_t *p);

/* A transport failure of the current connection during a batch. */
static void conn_failed(hv__pipe_t *p, const char *detail) {
    if (p->b_answered == 0 && p->reused && !p->retried) {
        /* A kept-alive connection the peer had closed while idle: once more on a new one. */
        p->retried = 1;
        p->reused = 0;
        conn_close(p);
        p->b_written = 0;
        p->b_failed = 0;
        pipe_connect(p);
        return;
    }
    batch_finish(p, detail);
}

static void on_write(uv_write_t *req, int status) {
    pconn_t *c = req->data;
    hv__pipe_t *p = c->p;
    hv_free(req);
    if (status < 0 && c == p->conn && p->b_done != NULL) conn_failed(p, uv_strerror(status));
}

/* Writes the requests the window allows: up to `window` unanswered. */
static void batch_write_more(hv__pipe_t *p) {
    size_t upto = p->b_answered + p->window;
    uv_write_t *req;
    uv_buf_t buf;
    if (p->offline) return; /* everything counts as written */
    if (upto > p->b_n) upto = p->b_n;
    if (upto <= p->b_written) return;
    /* Refill in chunks: once half the window is answered (fewer writes per message). */
    if (p->b_written > p->b_answered && p->b_written - p->b_answered > p->window / 2) return;
    req = hv_malloc(sizeof(*req));
    if (req == NULL) {
        batch_finish(p, "out of memory");
        return;
    }
    req->data = p->conn;
    buf = uv_buf_init(p->b_buf + p->b_off[p->b_written],
                      (unsigned)(p->b_off[upto] - p->b_off[p->b_written]));
    /* The bytes stay in b_buf until the batch ends; a batch that ends first closes the
     * connection, which cancels the write before b_buf is freed (uv_close). */
    if (uv_write(req, (uv_stream_t *)&p->conn->tcp, &buf, 1, on_write) != 0) {
        hv_free(req);
        batch_finish(p, "write failed");
        return;
    }
    p->b_written = upto;
}

static void on_timer(uv_timer_t *t) {
    hv__pipe_t *p = t->data;
    batch_finish(p, p->connected ? "timeout waiting for the response" : "connect timeout");
}

static void arm_timer(hv__pipe_t *p, uint64_t ms) {
    if (!p->offline) uv_timer_start(&p->timer, on_timer, ms, 0);
}

/* http_parser callbacks: one complete response is the answer to the oldest request. */
static int on_msg_begin(http_parser *hp) {
    hv__pipe_t *p = hp->data;
    p->b_body = 0;
    return 0;
}

static int on_body(http_parser *hp, const char *at, size_t n) {
    hv__pipe_t *p = hp->data;
    (void)at;
    p->b_body += n;
    return p->b_body > PIPE_RESPONSE_MAX ? -1 : 0;
}

static int on_msg_complete(http_parser *hp) {
    hv__pipe_t *p = hp->data;
    unsigned code = hp->status_code;
    size_t i = p->b_answered;
    int result;
    if (code >= 100 && code < 200) return 0; /* an interim answer: the final one follows */
    if (p->b_done == NULL || i >= p->b_written) return -1; /* an answer nobody asked for */
    if (code >= 200 && code < 300) result = HV_CHANNEL_DELIVERED;
    else if (code == 408 || code == 429 || code >= 500) result = HV_CHANNEL_RETRY;
    else result = HV_CHANNEL_ERROR;
    p->b_results[i] = result;
    snprintf(p->b_details[i], sizeof(p->b_details[i]), "HTTP %u", code);
    p->b_answered++;
    p->b_keep = http_should_keep_alive(hp);
    if (result == HV_CHANNEL_RETRY) p->b_failed = 1;
    if (!p->b_keep) p->close_each = 1;
    http_parser_pause(hp, 1); /* the reader decides what comes next */
    return 0;
}

static void alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
    pconn_t *c = h->data;
    hv__pipe_t *p = c->p;
    (void)suggested;
    *buf = uv_buf_init(p->rbuf, sizeof(p->rbuf));
}

static void parse_answers(hv__pipe_t *p, const char *data, size_t n);

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf) {
    pconn_t *c = s->data;
    hv__pipe_t *p = c->p;
    if (nread == 0) return;
    if (c != p->conn) return;
    if (p->b_done == NULL) { /* idle: the peer closed or sent something unasked */
        conn_close(p);
        return;
    }
    if (nread < 0) {
        conn_failed(p, nread == UV_EOF ? "connection closed by the peer" : uv_strerror((int)nread));
        return;
    }
    parse_answers(p, buf->base, (size_t)nread);
}

/* The bytes of answers, as they arrive (any split): each complete answer is the next
 * request's outcome; the batch ends as documented at the top of the file. */
static void parse_answers(hv__pipe_t *p, const char *data, size_t n) {
    size_t off = 0;
    while (off < n && p->b_done != NULL) {
        size_t used = http_parser_execute(&p->parser, &p->settings, data + off, n - off);
        enum http_errno e = HTTP_PARSER_ERRNO(&p->parser);
        off += used;
        if (e == HPE_PAUSED) {
            http_parser_pause(&p->parser, 0);
            arm_timer(p, p->timeout_ms);
            if (p->b_failed || !p->b_keep || p->b_answered == p->b_n) {
                batch_finish(p, NULL);
                return;
            }
            batch_write_more(p);
            continue;
        }
        if (e != HPE_OK) {
            batch_finish(p, "unreadable HTTP response");
            return;
        }
        if (used == 0) break;
    }
}

static void start_batch_on_conn(hv__pipe_t *p) {
    http_parser_init(&p->parser, HTTP_RESPONSE);
    p->parser.data = p;
    p->b_keep = 1;
    arm_timer(p, p->timeout_ms);
    if (uv_read_start((uv_stream_t *)&p->conn->tcp, alloc_cb, on_read) != 0) {
        batch_finish(p, "read failed");
        return;
    }
    batch_write_more(p);
}

static void on_connect(uv_connect_t *req, int status) {
    pconn_t *c = req->data;
    hv__pipe_t *p = c->p;
    if (c != p->conn || p->b_done == NULL) return; /* closed meanwhile */
    if (status < 0) {
        char d[64];
        snprintf(d, sizeof(d), "connect: %s", uv_strerror(status));
        batch_finish(p, d);
        return;
    }
    p->connected = 1;
    uv_tcp_nodelay(&c->tcp, 1);
    start_batch_on_conn(p);
}

static void on_resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *ai) {
    hv__pipe_t *p = req->data;
    pconn_t *c;
    int rc, stale = req != p->gai;
    hv_free(req);
    p->pending--;
    if (!stale) p->gai = NULL;
    if (stale || p->freeing || p->b_done == NULL) {
        if (ai) uv_freeaddrinfo(ai);
        pipe_maybe_free(p);
        return;
    }
    if (status < 0 || ai == NULL) {
        char d[64];
        snprintf(d, sizeof(d), "resolve: %s", uv_strerror(status < 0 ? status : UV_EAI_NONAME));
        if (ai) uv_freeaddrinfo(ai);
        batch_finish(p, d);
        return;
    }
    c = hv_calloc(1, sizeof(*c));
    if (c == NULL) {
        uv_freeaddrinfo(ai);
        batch_finish(p, "out of memory");
        return;
    }
    c->p = p;
    uv_tcp_init(p->loop, &c->tcp);
    c->tcp.data = c;
    c->req.data = c;
    p->conn = c;
    p->pending++; /* the connection's close */
    rc = uv_tcp_connect(&c->req, &c->tcp, ai->ai_addr, on_connect);
    uv_freeaddrinfo(ai);
    if (rc != 0) {
        char d[64];
        snprintf(d, sizeof(d), "connect: %s", uv_strerror(rc));
        batch_finish(p, d);
    }
}

/* Resolves the host (each new connection: the address may change) and connects. */
static void pipe_connect(hv__pipe_t *p) {
    struct addrinfo hints;
    uv_getaddrinfo_t *req = hv_malloc(sizeof(*req));
    int rc;
    if (req == NULL) {
        batch_finish(p, "out of memory");
        return;
    }
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_NUMERICSERV;
    req->data = p;
    arm_timer(p, p->connect_timeout_ms);
    rc = uv_getaddrinfo(p->loop, req, on_resolved, p->host, p->port, &hints);
    if (rc != 0) {
        hv_free(req);
        batch_finish(p, "resolve failed");
        return;
    }
    p->gai = req; /* a resolution still running from an earlier batch is now stale */
    p->pending++;
}

/* Appends to a growing buffer; 0 or -1 (out of memory). */
typedef struct sbuf {
    char *p;
    size_t len, cap;
} sbuf_t;

static int sb_add(sbuf_t *b, const char *s, size_t n) {
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap * 2 : 4096;
        char *np;
        while (cap < b->len + n + 1) cap *= 2;
        np = hv_realloc(b->p, cap);
        if (np == NULL) return -1;
        b->p = np;
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    return 0;
}

int hv__pipe_send(hv__pipe_t *p, const hv_channel_msg_t *msgs, size_t n, hv__batch_sent_cb done,
                  void *token) {
    sbuf_t b = {NULL, 0, 0};
    size_t i;
    char line[700];
    int rc = HV_ENOMEM;
    if (n == 0 || p->b_done != NULL) return HV_EINVAL;
    if (p->close_each) n = 1;
    p->b_off = hv_malloc((n + 1) * sizeof(*p->b_off));
    p->b_results = hv_calloc(n, sizeof(*p->b_results));
    p->b_details = hv_calloc(n, sizeof(*p->b_details));
    if (p->b_off == NULL || p->b_results == NULL || p->b_details == NULL) goto fail;
    for (i = 0; i < n; i++) {
        const hv_channel_msg_t *m = &msgs[i];
        int k;
        p->b_off[i] = b.len;
        k = snprintf(line, sizeof(line), "%s %s HTTP/1.1\r\n", p->method, p->path);
        if (k < 0 || (size_t)k >= sizeof(line) || sb_add(&b, line, (size_t)k) != 0) goto fail;
        if (sb_add(&b, p->hostline, strlen(p->hostline)) != 0) goto fail;
        k = snprintf(line, sizeof(line),
                     "Content-Type: %.500s\r\nX-Message-Id: %lld\r\nContent-Length: %zu\r\n\r\n",
                     m->content_type && m->content_type[0] ? m->content_type
                                                           : "application/octet-stream",
                     (long long)m->id, m->len);
        if (k < 0 || (size_t)k >= sizeof(line) || sb_add(&b, line, (size_t)k) != 0) goto fail;
        if (m->len > 0 && sb_add(&b, m->content, m->len) != 0) goto fail;
    }
    p->b_off[n] = b.len;
    p->b_buf = b.p;
    p->b_n = n;
    p->b_written = p->b_answered = 0;
    p->b_failed = 0;
    p->b_done = done;
    p->b_token = token;
    p->retried = 0;
    p->reused = p->connected;
    p->in_send = 1;
    p->send_failed = 0;
    if (p->connected) start_batch_on_conn(p);
    else pipe_connect(p);
    p->in_send = 0;
    return p->send_failed ? HV_EIO : HV_OK;
fail:
    hv_free(b.p);
    batch_clear(p);
    return rc;
}

/* Splits http://host[:port][/path] (no user information, no fragment): 0 or -1. */
static int parse_url(hv__pipe_t *p, const char *url) {
    const char *h, *e, *slash, *colon;
    size_t hn;
    if (strncmp(url, "http://", 7) != 0) return -1;
    h = url + 7;
    slash = strchr(h, '/');
    e = slash ? slash : h + strlen(h);
    if (memchr(h, '@', (size_t)(e - h)) != NULL || strchr(url, '#') != NULL) return -1;
    if (*h == '[') { /* an IPv6 literal */
        const char *rb = memchr(h, ']', (size_t)(e - h));
        if (rb == NULL) return -1;
        hn = (size_t)(rb - h - 1);
        if (hn == 0 || hn >= sizeof(p->host)) return -1;
        memcpy(p->host, h + 1, hn);
        colon = rb + 1 < e && rb[1] == ':' ? rb + 1 : NULL;
    } else {
        colon = memchr(h, ':', (size_t)(e - h));
        hn = (size_t)((colon ? colon : e) - h);
        if (hn == 0 || hn >= sizeof(p->host)) return -1;
        memcpy(p->host, h, hn);
    }
    p->host[hn] = '\0';
    if (colon != NULL) {
        size_t pn = (size_t)(e - colon - 1);
        if (pn == 0 || pn >= sizeof(p->port) || strspn(colon + 1, "0123456789") < pn) return -1;
        memcpy(p->port, colon + 1, pn);
        p->port[pn] = '\0';
    } else {
        snprintf(p->port, sizeof(p->port), "80");
    }
    p->path = hv_strdup(slash ? slash : "/");
    if (p->path == NULL || strpbrk(p->path, " \r\n") != NULL) return -1;
    /* Host: as written in the URL (RFC 9112 §3.2). */
    {
        size_t n = (size_t)(e - h) + 16;
        p->hostline = hv_malloc(n);
        if (p->hostline == NULL) return -1;
        snprintf(p->hostline, n, "Host: %.*s\r\n", (int)(e - h), h);
    }
    return 0;
}

hv__pipe_t *hv__pipe_for(uv_loop_t *loop, const char *url, const char *method,
                         const char *const *headers, size_t nheaders, size_t window,
                         long timeout_ms, long connect_timeout_ms) {
    hv__pipe_t *p = hv_calloc(1, sizeof(*p));
    size_t i;
    if (p == NULL) return NULL;
    p->loop = loop;
    p->window = window ? window : 1;
    p->timeout_ms = (uint64_t)timeout_ms;
    p->connect_timeout_ms = (uint64_t)connect_timeout_ms;
    p->method = hv_strdup(method);
    if (p->method == NULL || parse_url(p, url) != 0) goto fail;
    for (i = 0; i < nheaders; i++) {
        size_t have = strlen(p->hostline), add = strlen(headers[i]);
        char *np = hv_realloc(p->hostline, have + add + 3);
        if (np == NULL) goto fail;
        p->hostline = np;
        memcpy(np + have, headers[i], add);
        memcpy(np + have + add, "\r\n", 3);
    }
    memset(&p->settings, 0, sizeof(p->settings));
    p->settings.on_message_begin = on_msg_begin;
    p->settings.on_body = on_body;
    p->settings.on_message_complete = on_msg_complete;
    uv_timer_init(loop, &p->timer);
    p->timer.data = p;
    return p;
fail:
    hv_free(p->path);
    hv_free(p->method);
    hv_free(p->hostline);
    hv_free(p);
    return NULL;
}

/* Frees the pipeline; a batch in flight is cancelled: its done runs now with n = 0. */
void hv__pipe_free(hv__pipe_t *p) {
    hv__batch_sent_cb done;
    void *token;
    if (p == NULL) return;
    done = p->b_done;
    token = p->b_token;
    batch_clear(p);
    p->freeing = 1;
    conn_close(p);
    if (p->gai != NULL) uv_cancel((uv_req_t *)p->gai); /* its callback still runs */
    p->gai = NULL;
    uv_timer_stop(&p->timer);
    p->pending++;
    uv_close((uv_handle_t *)&p->timer, on_timer_closed);
    if (done != NULL) done(token, 0, NULL, NULL);
}

/* hv__pipe_feed_answers: the batch's outcome, captured. */
typedef struct feed_out {
    size_t n;
    int *results;
    size_t cap;
    int called;
} feed_out_t;

static void feed_done(void *token, size_t n, const int *results, const char *const *details) {
    feed_out_t *o = token;
    size_t i;
    (void)details;
    o->called++;
    o->n = n;
    for (i = 0; i < n && i < o->cap; i++) o->results[i] = results[i];
}

int hv__pipe_feed_answers(const char *data, size_t n, size_t nreq, size_t chunk, int *results,
                          size_t *reported) {
    hv__pipe_t *p = NULL;
    feed_out_t o;
    size_t off = 0;
    int rc = HV_ENOMEM;
    if (nreq == 0 || chunk == 0) return HV_EINVAL;
    memset(&o, 0, sizeof(o));
    o.results = results;
    o.cap = nreq;
    p = hv_calloc(1, sizeof(*p));
    if (p == NULL) goto out;
    p->offline = 1;
    p->window = nreq;
    p->settings.on_message_begin = on_msg_begin;
    p->settings.on_body = on_body;
    p->settings.on_message_complete = on_msg_complete;
    p->b_off = hv_calloc(nreq + 1, sizeof(*p->b_off));
    p->b_results = hv_calloc(nreq, sizeof(*p->b_results));
    p->b_details = hv_calloc(nreq, sizeof(*p->b_details));
    if (p->b_off == NULL || p->b_results == NULL || p->b_details == NULL) goto out;
    p->b_n = p->b_written = nreq;
    p->b_done = feed_done;
    p->b_token = &o;
    p->b_keep = 1;
    http_parser_init(&p->parser, HTTP_RESPONSE);
    p->parser.data = p;
    while (off < n && p->b_done != NULL) {
        size_t k = n - off < chunk ? n - off : chunk;
        parse_answers(p, data + off, k);
        off += k;
    }
    /* The answers ended (the peer closed): as a socket's end of file. */
    if (p->b_done != NULL) batch_finish(p, "connection closed by the peer");
    *reported = o.n;
    rc = o.called == 1 ? HV_OK : HV_EINVAL;
out:
    if (p != NULL) {
        batch_clear(p);
        hv_free(p);
    }
    return rc;
}
