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
 * (channel_http.c decides).
 *
 * Cost per message (it runs on the loop thread): a request's head is the pipeline's
 * prepared prefix (request line, Host, configured headers, "Content-Type: ") plus the
 * message's own three values, written with memcpy and a digit loop; its body is not
 * copied — each uv_write takes iovecs of the heads and of the stored contents, which
 * the hv__dest_batch_fn contract keeps valid until done runs (a batch that ends with a
 * write still pending closes the connection, which cancels the write first). An answer
 * of the common form — a status line, headers without Transfer-Encoding, Upgrade or
 * Proxy-Connection, a Content-Length and the whole body in the bytes at hand — is read
 * by answer_fast without http_parser; anything else (chunked, interim 1xx, an answer
 * split across reads, any byte it does not expect) goes through http_parser, which
 * decides as before. A connection reused from an earlier batch that fails
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

/* One request of a batch: its head at b_head + hoff (hlen bytes), its body borrowed. */
typedef struct preq {
    size_t hoff, hlen;
    const char *body;
    size_t blen;
} preq_t;

struct hv__pipe {
    uv_loop_t *loop;
    char host[PIPE_MAX_HOST];
    char port[8];
    char *path;   /* with the query, "/" at least */
    char *method;
    char *hostline; /* "Host: h[:p]\r\n" plus the configured headers, each "K: V\r\n" */
    char *prefix;   /* "METHOD path HTTP/1.1\r\n" hostline "Content-Type: " */
    size_t prefix_len;
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
    int at_start;   /* the parser stands at the start of an answer: answer_fast may read */
    char rbuf[PIPE_READ_BUF];

    /* The batch in flight (b_done != NULL). */
    hv__batch_sent_cb b_done;
    void *b_token;
    char *b_head;     /* every request's head, back to back */
    preq_t *b_req;    /* b_req[i]: request i */
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
    hv_free(p->prefix);
    hv_free(p);
}

static void conn_close(hv__pipe_t *p) {
    pconn_t *c = p->conn;
    p->connected = 0;
    p->conn = NULL;
    if (c != NULL) uv_close((uv_handle_t *)&c->tcp, on_conn_closed); /* pending: counted at init */
}

static void batch_clear(hv__pipe_t *p) {
    hv_free(p->b_head);
    hv_free(p->b_req);
    hv_free(p->b_results);
    hv_free(p->b_details);
    p->b_head = NULL;
    p->b_req = NULL;
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
    /* Bytes not yet handed to the kernel (the peer answered before reading a whole
     * request) would be read from the contents done lets go: closing cancels them first. */
    if (fail_detail != NULL || !p->b_keep || p->b_answered < p->b_n ||
        (p->conn != NULL && uv_stream_get_write_queue_size((uv_stream_t *)&p->conn->tcp) > 0))
        conn_close(p);
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

/* Writes the requests the window allows: up to `window` unanswered, as one uv_write of
 * iovecs (each request's head, then its body when it has one). */
static void batch_write_more(hv__pipe_t *p) {
    size_t upto = p->b_answered + p->window, i, nb = 0;
    uv_buf_t bufs_s[64], *bufs = bufs_s;
    uv_write_t *req;
    int rc;
    if (p->offline) return; /* everything counts as written */
    if (upto > p->b_n) upto = p->b_n;
    if (upto <= p->b_written) return;
    /* Refill in chunks: once half the window is answered (fewer writes per message). */
    if (p->b_written > p->b_answered && p->b_written - p->b_answered > p->window / 2) return;
    req = hv_malloc(sizeof(*req));
    if (2 * (upto - p->b_written) > HV_ARRAY_LEN(bufs_s))
        bufs = hv_malloc(2 * (upto - p->b_written) * sizeof(*bufs));
    if (req == NULL || bufs == NULL) {
        hv_free(req);
        if (bufs != bufs_s) hv_free(bufs);
        batch_finish(p, "out of memory");
        return;
    }
    for (i = p->b_written; i < upto; i++) {
        const preq_t *r = &p->b_req[i];
        /* Heads that follow each other in b_head go out as one buffer. */
        if (nb > 0 && bufs[nb - 1].base + bufs[nb - 1].len == p->b_head + r->hoff)
            bufs[nb - 1].len += (unsigned)r->hlen;
        else
            bufs[nb++] = uv_buf_init(p->b_head + r->hoff, (unsigned)r->hlen);
        if (r->blen > 0) bufs[nb++] = uv_buf_init((char *)r->body, (unsigned)r->blen);
    }
    req->data = p->conn;
    /* The heads stay in b_head and the bodies with the worker until the batch ends; a
     * batch that ends with this write pending closes the connection, which cancels the
     * write first (batch_finish). uv_write copies the iovec array itself. */
    rc = uv_write(req, (uv_stream_t *)&p->conn->tcp, bufs, (unsigned)nb, on_write);
    if (bufs != bufs_s) hv_free(bufs);
    if (rc != 0) {
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

/* A final answer (status code 200-999) to the oldest unanswered request, keep: the
 * connection stays open after it. -1: nobody asked for it. */
static int record_answer(hv__pipe_t *p, unsigned code, int keep) {
    size_t i = p->b_answered;
    char *d;
    int result;
    if (p->b_done == NULL || i >= p->b_written) return -1;
    if (code >= 200 && code < 300) result = HV_CHANNEL_DELIVERED;
    else if (code == 408 || code == 429 || code >= 500) result = HV_CHANNEL_RETRY;
    else result = HV_CHANNEL_ERROR;
    p->b_results[i] = result;
    d = p->b_details[i]; /* "HTTP %u" (code < 1000: http_parser and answer_fast) */
    memcpy(d, "HTTP ", 5);
    d[5] = (char)('0' + code / 100 % 10);
    d[6] = (char)('0' + code / 10 % 10);
    d[7] = (char)('0' + code % 10);
    d[8] = '\0';
    p->b_answered++;
    p->b_keep = keep;
    if (result == HV_CHANNEL_RETRY) p->b_failed = 1;
    if (!p->b_keep) p->close_each = 1;
    return 0;
}

static int on_msg_complete(http_parser *hp) {
    hv__pipe_t *p = hp->data;
    unsigned code = hp->status_code;
    if (code >= 100 && code < 200) return 0; /* an interim answer: the final one follows */
    if (record_answer(p, code, http_should_keep_alive(hp)) != 0) return -1;
    http_parser_pause(hp, 1); /* the reader decides what comes next */
    return 0;
}

/* ASCII lower case of c. */
static int lc(int c) { return c >= 'A' && c <= 'Z' ? c + 32 : c; }

/* 1 when the n bytes at s are name, case-insensitively (name is lower case). */
static int name_is(const char *s, size_t n, const char *name) {
    size_t i;
    if (strlen(name) != n) return 0;
    for (i = 0; i < n; i++)
        if (lc((unsigned char)s[i]) != name[i]) return 0;
    return 1;
}

/* RFC 9110 §5.6.2 tchar. */
static int is_tchar(int c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           (c != 0 && strchr("!#$%&'*+-.^_`|~", c) != NULL);
}

/*
 * The common answer, read without http_parser (RFC 9112 §4, §5, §6.3): "HTTP/1.1" or
 * "HTTP/1.0", SP, three digits (200-999), optionally SP and a reason of visible ASCII,
 * CRLF; header lines "name: value" CRLF with a token name and a value of visible ASCII,
 * SP and HT; an empty line; then exactly Content-Length bytes of body, all of it in
 * data[0..n). Content-Length is required, once, digits only; Transfer-Encoding,
 * Upgrade and Proxy-Connection are not read here, nor Connection with a value other
 * than "close" or "keep-alive" (what http_parser does with them decides). Keep-alive as
 * http_should_keep_alive: HTTP/1.1 unless "Connection: close", HTTP/1.0 only with
 * "Connection: keep-alive". Returns the bytes of the answer with *code and *keep set,
 * or 0: not of this form, or not whole in data — http_parser reads it.
 */
static size_t answer_fast(const char *data, size_t n, unsigned *code, int *keep) {
    const char *s = data, *e = data + n, *nl;
    int v11, have_len = 0, conn = 0; /* conn: 1 close, 2 keep-alive */
    uint64_t len = 0;
    if (n < 16 || memcmp(s, "HTTP/1.", 7) != 0 || (s[7] != '1' && s[7] != '0') || s[8] != ' ')
        return 0;
    v11 = s[7] == '1';
    if (s[9] < '2' || s[9] > '9' || s[10] < '0' || s[10] > '9' || s[11] < '0' || s[11] > '9')
        return 0;
    *code = (unsigned)((s[9] - '0') * 100 + (s[10] - '0') * 10 + (s[11] - '0'));
    if (*code == 204 || *code == 304) return 0; /* no body whatever the headers say */
    s += 12;
    if (*s == ' ') {
        for (s++; s < e && *s != '\r'; s++)
            if ((unsigned char)*s < 0x20 || (unsigned char)*s > 0x7e) return 0;
    }
    if (e - s < 2 || s[0] != '\r' || s[1] != '\n') return 0;
    s += 2;
    for (;;) {
        const char *name = s, *colon, *v, *ve;
        if (e - s < 2) return 0;
        if (s[0] == '\r') {
            if (s[1] != '\n') return 0;
            s += 2;
            break;
        }
        nl = memchr(s, '\r', (size_t)(e - s));
        if (nl == NULL || e - nl < 2 || nl[1] != '\n') return 0;
        if (nl - data >= 65536) return 0; /* http_parser decides on large heads */
        for (colon = s; colon < nl && is_tchar((unsigned char)*colon); colon++) continue;
        if (colon == s || colon == nl || *colon != ':') return 0;
        for (v = colon + 1; v < nl && (*v == ' ' || *v == '\t'); v++) continue;
        for (ve = v; ve < nl; ve++)
            if (((unsigned char)*ve < 0x20 && *ve != '\t') || (unsigned char)*ve > 0x7e) return 0;
        for (ve = nl; ve > v && (ve[-1] == ' ' || ve[-1] == '\t'); ve--) continue;
        /* Only names of the lengths below matter (most headers are skipped at once). */
        switch (colon - name) {
        case 7: case 10: case 14: case 16: case 17: break;
        default: s = nl + 2; continue;
        }
        if (name_is(name, (size_t)(colon - name), "content-length")) {
            const char *d;
            if (have_len || v == ve || ve != nl || (size_t)(ve - v) > 9) return 0;
            for (d = v; d < ve; d++) {
                if (*d < '0' || *d > '9') return 0;
                len = len * 10 + (uint64_t)(*d - '0');
            }
            have_len = 1;
        } else if (name_is(name, (size_t)(colon - name), "connection")) {
            if (conn != 0) return 0;
            if (name_is(v, (size_t)(ve - v), "close")) conn = 1;
            else if (name_is(v, (size_t)(ve - v), "keep-alive")) conn = 2;
            else return 0;
        } else if (name_is(name, (size_t)(colon - name), "transfer-encoding") ||
                   name_is(name, (size_t)(colon - name), "upgrade") ||
                   name_is(name, (size_t)(colon - name), "proxy-connection")) {
            return 0;
        }
        s = nl + 2;
    }
    if (!have_len || len > PIPE_RESPONSE_MAX || (uint64_t)(e - s) < len) return 0;
    *keep = v11 ? conn != 1 : conn == 2;
    return (size_t)(s - data) + (size_t)len;
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
    size_t off = 0, answered = p->b_answered;
    while (off < n && p->b_done != NULL) {
        unsigned code = 0;
        int keep = 0;
        size_t used = p->at_start ? answer_fast(data + off, n - off, &code, &keep) : 0;
        if (used > 0) {
            if (record_answer(p, code, keep) != 0) {
                batch_finish(p, "unreadable HTTP response"); /* as http_parser's -1 */
                return;
            }
            off += used;
        } else {
            enum http_errno e;
            used = http_parser_execute(&p->parser, &p->settings, data + off, n - off);
            e = HTTP_PARSER_ERRNO(&p->parser);
            off += used;
            if (e != HPE_PAUSED) {
                if (e != HPE_OK) {
                    batch_finish(p, "unreadable HTTP response");
                    return;
                }
                p->at_start = 0; /* within an answer: http_parser reads on */
                if (used == 0) break;
                continue;
            }
            http_parser_pause(&p->parser, 0);
        }
        /* An answer was recorded: the parser stands at the start of the next one. */
        p->at_start = 1;
        if (p->b_failed || !p->b_keep || p->b_answered == p->b_n) {
            batch_finish(p, NULL);
            return;
        }
        batch_write_more(p);
    }
    /* The batch waits for more: the response timeout runs again from the last answer. */
    if (p->b_done != NULL && p->b_answered != answered) arm_timer(p, p->timeout_ms);
}

static void start_batch_on_conn(hv__pipe_t *p) {
    http_parser_init(&p->parser, HTTP_RESPONSE);
    p->parser.data = p;
    p->at_start = 1;
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

/* Writes v in decimal at d: the number of digits (at most 20). */
static size_t put_u64(char *d, uint64_t v) {
    char t[20];
    size_t n = 0, i;
    do {
        t[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v > 0);
    for (i = 0; i < n; i++) d[i] = t[n - 1 - i];
    return n;
}

#define PIPE_CT_MAX 500 /* bytes of a message's content type sent at most */

/* The bytes of a message's Content-Type value (cut at PIPE_CT_MAX). */
static const char *ct_of(const hv_channel_msg_t *m, size_t *len) {
    const char *ct = m->content_type && m->content_type[0] ? m->content_type : "application/octet-stream";
    *len = strnlen(ct, PIPE_CT_MAX);
    return ct;
}

/* The bytes of a request head after the prefix and the content type, at most. */
#define PIPE_HEAD_TAIL (sizeof("\r\nX-Message-Id: \r\nContent-Length: \r\n\r\n") + 2 * 20)

/* Writes message m's request head (see the top of the file) at d, which has room for
 * p->prefix_len + PIPE_CT_MAX + PIPE_HEAD_TAIL bytes: its length. */
static size_t head_put(const hv__pipe_t *p, const hv_channel_msg_t *m, char *d) {
    size_t n = p->prefix_len, ctlen;
    const char *ct = ct_of(m, &ctlen);
    int64_t id = m->id;
    memcpy(d, p->prefix, n);
    memcpy(d + n, ct, ctlen);
    n += ctlen;
    memcpy(d + n, "\r\nX-Message-Id: ", 16);
    n += 16;
    if (id < 0) {
        d[n++] = '-';
        n += put_u64(d + n, (uint64_t)0 - (uint64_t)id);
    } else {
        n += put_u64(d + n, (uint64_t)id);
    }
    memcpy(d + n, "\r\nContent-Length: ", 18);
    n += 18;
    n += put_u64(d + n, (uint64_t)m->len);
    memcpy(d + n, "\r\n\r\n", 4);
    return n + 4;
}

size_t hv__pipe_head(const hv__pipe_t *p, const hv_channel_msg_t *m, char *out, size_t cap) {
    if (cap < p->prefix_len + PIPE_CT_MAX + PIPE_HEAD_TAIL) return 0;
    return head_put(p, m, out);
}

int hv__pipe_send(hv__pipe_t *p, const hv_channel_msg_t *msgs, size_t n, hv__batch_sent_cb done,
                  void *token) {
    size_t i, total = 0, off = 0;
    int rc = HV_ENOMEM;
    if (n == 0 || p->b_done != NULL) return HV_EINVAL;
    if (p->close_each) n = 1;
    p->b_req = hv_malloc(n * sizeof(*p->b_req));
    p->b_results = hv_calloc(n, sizeof(*p->b_results));
    p->b_details = hv_calloc(n, sizeof(*p->b_details));
    if (p->b_req == NULL || p->b_results == NULL || p->b_details == NULL) goto fail;
    /* One allocation for the heads: each at most prefix + content type + the rest. */
    for (i = 0; i < n; i++) {
        size_t ctlen;
        (void)ct_of(&msgs[i], &ctlen);
        total += p->prefix_len + ctlen + PIPE_HEAD_TAIL;
    }
    p->b_head = hv_malloc(total);
    if (p->b_head == NULL) goto fail;
    for (i = 0; i < n; i++) {
        preq_t *r = &p->b_req[i];
        r->hoff = off;
        r->hlen = head_put(p, &msgs[i], p->b_head + off);
        r->body = msgs[i].content;
        r->blen = msgs[i].len;
        off += r->hlen;
    }
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
    {
        size_t pn = strlen(p->method) + strlen(p->path) + strlen(p->hostline) + 64;
        p->prefix = hv_malloc(pn);
        if (p->prefix == NULL) goto fail;
        p->prefix_len = (size_t)snprintf(p->prefix, pn, "%s %s HTTP/1.1\r\n%sContent-Type: ",
                                         p->method, p->path, p->hostline);
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
    hv_free(p->prefix);
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
    p->b_req = hv_calloc(nreq, sizeof(*p->b_req));
    p->b_results = hv_calloc(nreq, sizeof(*p->b_results));
    p->b_details = hv_calloc(nreq, sizeof(*p->b_details));
    if (p->b_req == NULL || p->b_results == NULL || p->b_details == NULL) goto out;
    p->b_n = p->b_written = nreq;
    p->b_done = feed_done;
    p->b_token = &o;
    p->b_keep = 1;
    http_parser_init(&p->parser, HTTP_RESPONSE);
    p->parser.data = p;
    p->at_start = 1;
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
