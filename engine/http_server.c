/*
 * http_server.c — the HTTP/1.1 server (RFC 9112) on libuv and http-parser.
 *
 * One loop thread does all of it. Each connection parses requests with
 * http-parser from a per-connection input buffer; a complete request pauses
 * the parser and is dispatched to its route. While a handler works (possibly
 * asynchronously, e.g. waiting for a storage commit) further pipelined bytes
 * wait in the buffer; the next request is parsed once the response is queued,
 * so responses always leave in request order (RFC 9112 §9.3.2).
 *
 * Limits (all configurable): request line + headers bytes (431), body bytes
 * (413, checked against Content-Length before the body is read and while a
 * chunked body arrives), open connections (503), a header timeout counted from
 * a request's first byte (so a slow-loris client is cut off with 408), a body
 * timeout between reads, an idle keep-alive timeout, and a cap on bytes queued
 * for a client that does not read (reading stops: back-pressure).
 *
 * Shutdown: listeners close, idle connections close, in-flight requests finish
 * and their connections close after the response; what is left when the bound
 * expires is cut off.
 */
#include "config.h"
#include "engine/engine_int.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <http_parser.h>
#include <limits.h>
#include <stdlib.h>
#include <unistd.h>
#include <json-c/json.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>

enum phase { PH_IDLE, PH_HEADERS, PH_BODY, PH_HANDLING };

typedef struct conn conn_t;

typedef struct header {
    char *name;
    char *value;
} header_t;

struct hv_http_req {
    conn_t *conn; /* NULL once the connection is gone */
    hv__http_server_t *srv;
    hv_arena_t *arena;
    int method;
    const char *method_name;
    hv_buf_t target;
    char *path;
    char *query;
    header_t *headers;
    size_t nheaders, capheaders;
    hv_buf_t body;
    /* A body spooled to a file (http.spool_body): fd while it arrives, then closed. */
    int spool_fd;
    char *spool_path;     /* NULL: the body is in `body` */
    uint64_t spool_len;
    int spool_taken;      /* the handler owns the file now */
    int spool_loaded;     /* hv_http_req_body read it into `body` */
    hv__route_match_t match;
    hv_buf_t resp_headers;
    int responded;
    int keep_alive;
    int expect_continue;
    unsigned short http_major, http_minor;
    uint64_t start_ns;
    char trace_id[33];
    char span_id[17];
    header_t *qparams;
    size_t nq;
    int qparsed;
    void *data;
    const void *principal; /* set by the guard */
    /* Audit holds (engine/audit.c): while holds > 0 an answer is kept, not sent, so
     * that no client sees a response before the audit record of it has committed. */
    int holds;
    int held;
    int hold_failed;
    int audited; /* an audit record of this request has been taken */
    int reserved; /* the admit hook reserved a slot for this request's audit record */
    int held_status;
    int ovr_status; /* an answer the respond hook put in place of the handler's, or 0 */
    char *ovr_type;
    char *ovr_body;
    size_t ovr_len;
    char *held_type;
    char *held_body;
    size_t held_len;
};

struct conn {
    uv_tcp_t tcp; /* first: the handle pointer is the connection */
    conn_t *prev, *next;
    hv__http_server_t *srv;
    http_parser parser;
    hv_tls_t *tls;
    hv_buf_t in;
    hv_http_req_t *req;
    hv_buf_t hname, hval;
    int last_was_value;
    size_t header_bytes;
    int phase;
    int handling;
    int ready; /* a request is complete and waits for dispatch */
    int in_process;
    int closing;
    int close_after_write;
    int lingering; /* answered an error: shut the write side, drain input briefly, close */
    uv_shutdown_t shutdown_req;
    int reading;
    int pending_writes;
    size_t out_bytes;
    uint64_t deadline;
    int err_status; /* set by a parser callback to answer with this status */
    const char *err_code;
    const char *err_msg;
    char peer[64];
};

struct hv__http_server {
    hv_engine_t *e;
    uv_loop_t *loop;
    hv__http_limits_t lim;
    hv_tls_ctx_t *tls;
    uv_tcp_t listener;
    int listening;
    conn_t *conns;
    size_t nconns;
    uv_timer_t sweep;
    uv_timer_t shutdown_timer;
    int handles_open;
    int closing_timers;
    int shutting_down;
    void (*done)(void *);
    void *done_ud;
    int freeing;
    char rbuf[65536];
    hv_buf_t scratch;
    char date[40];
    uint64_t date_sec;
    http_parser_settings settings;
    hv__route_t unmatched; /* statistics of requests with no route */
    hv_gauge_t *g_open;
    hv_counter_t *c_accepted;
    hv_counter_t *c_rejected;
    hv_counter_t *c_timeouts;
    hv_counter_t *c_bad;
};

typedef struct wreq {
    uv_write_t req;
    conn_t *conn;
    size_t len;
    char data[];
} wreq_t;

static void process_input(conn_t *c);
static void read_start(conn_t *c);
static void linger(conn_t *c);
static void conn_close(conn_t *c);
static void maybe_done(hv__http_server_t *s);

/* ------------------------------------------------------------------------ */
/* Requests                                                                 */
/* ------------------------------------------------------------------------ */

static hv_http_req_t *req_new(conn_t *c) {
    hv_http_req_t *r = hv_calloc(1, sizeof(*r));
    if (r == NULL) return NULL;
    r->arena = hv_arena_new(0);
    if (r->arena == NULL) {
        hv_free(r);
        return NULL;
    }
    r->conn = c;
    r->srv = c->srv;
    hv_buf_init(&r->target, c->srv->lim.max_header);
    hv_buf_init(&r->body, c->srv->lim.max_body);
    r->spool_fd = -1;
    hv_buf_init(&r->resp_headers, 64 * 1024);
    r->start_ns = hv_mono_ns();
    return r;
}

static void req_free(hv_http_req_t *r) {
    if (r == NULL) return;
    if (r->spool_fd >= 0) close(r->spool_fd);
    if (r->spool_path != NULL && !r->spool_taken) unlink(r->spool_path);
    hv_free(r->spool_path);
    hv_buf_release(&r->target);
    hv_buf_release(&r->body);
    hv_buf_release(&r->resp_headers);
    hv_free(r->headers);
    hv_free(r->qparams);
    hv_arena_free(r->arena);
    hv_free(r);
}

int hv_http_req_method(const hv_http_req_t *req) { return req->method; }
const char *hv_http_req_method_name(const hv_http_req_t *req) { return req->method_name; }
const char *hv_http_req_path(const hv_http_req_t *req) { return req->path; }
const char *hv_http_req_target(const hv_http_req_t *req) { return req->target.data ? req->target.data : "/"; }
const char *hv_http_req_query(const hv_http_req_t *req) { return req->query; }
const char *hv_http_req_trace_id(const hv_http_req_t *req) { return req->trace_id; }
hv_arena_t *hv_http_req_arena(hv_http_req_t *req) { return req->arena; }
hv_engine_t *hv_http_req_engine(hv_http_req_t *req) { return req->srv->e; }
int hv_http_req_is_tls(const hv_http_req_t *req) { return req->srv->tls != NULL; }
void hv_http_req_set_data(hv_http_req_t *req, void *data) { req->data = data; }
void *hv_http_req_data(const hv_http_req_t *req) { return req->data; }

const char *hv_http_req_route(const hv_http_req_t *req) {
    return req->match.route ? req->match.route->pattern : "unmatched";
}

const char *hv_http_req_peer(const hv_http_req_t *req) {
    return req->conn ? req->conn->peer : "";
}

const char *hv_http_req_param(const hv_http_req_t *req, const char *name) {
    int i;
    for (i = 0; i < req->match.nparam; i++)
        if (strcmp(req->match.pname[i], name) == 0) return req->match.pval[i];
    return NULL;
}

const char *hv_http_req_header(const hv_http_req_t *req, const char *name) {
    size_t i;
    for (i = 0; i < req->nheaders; i++)
        if (strcasecmp(req->headers[i].name, name) == 0) return req->headers[i].value;
    return NULL;
}

int hv_http_req_header_at(const hv_http_req_t *req, size_t i, const char **name,
                          const char **value) {
    if (i >= req->nheaders) return HV_ENOTFOUND;
    *name = req->headers[i].name;
    *value = req->headers[i].value;
    return HV_OK;
}

/* Reads a spooled body into req->body once (hv_http_req_body's callers want memory). */
static void spool_load(hv_http_req_t *r) {
    int fd;
    char buf[65536];
    ssize_t n;
    r->spool_loaded = 1;
    if (r->spool_taken) return;
    fd = open(r->spool_path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return;
    while ((n = read(fd, buf, sizeof(buf))) != 0) {
        if (n < 0) {
            if (errno == EINTR) continue;
            break;
        }
        if (hv_buf_append(&r->body, buf, (size_t)n) != HV_OK) break;
    }
    close(fd);
}

const char *hv_http_req_body(const hv_http_req_t *req, size_t *len) {
    /* The request is the caller's; const only says the body is not changed. */
    if (req->spool_path != NULL && !req->spool_loaded) spool_load((hv_http_req_t *)req);
    if (len != NULL) *len = req->body.len;
    return req->body.data ? req->body.data : "";
}

int hv_http_req_body_file(const hv_http_req_t *req, const char **path, uint64_t *len) {
    if (req->spool_path == NULL || req->spool_taken || req->spool_fd >= 0) return HV_ENOTFOUND;
    *path = req->spool_path;
    *len = req->spool_len;
    return HV_OK;
}

void hv_http_req_body_file_take(hv_http_req_t *req) {
    if (req->spool_path != NULL) req->spool_taken = 1;
}

/* Spool files are named body-XXXXXX in the spool directory; none outlives its process. */
void hv__http_spool_clean(const char *dir) {
    DIR *d = opendir(dir);
    struct dirent *de;
    char path[4400];
    if (d == NULL) return;
    while ((de = readdir(d)) != NULL) {
        if (strncmp(de->d_name, "body-", 5) != 0) continue;
        snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
        unlink(path);
    }
    closedir(d);
}

/* Writes all of p to fd: 0, or -1 with errno. */
static int write_all(int fd, const char *p, size_t n) {
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0) {
            if (errno == EINTR) continue;
            return -1;
        }
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

/* Moves the body to a new spool file once it grows past http.spool_body. The write
 * is a blocking one on the loop thread, into the page cache (as nginx's
 * client_body_temp_path): bounded by the read buffer per call. */
static int spool_start(hv_http_req_t *r) {
    const hv__http_limits_t *lim = &r->srv->lim;
    size_t n = strlen(lim->spool_dir) + 32;
    r->spool_path = hv_malloc(n);
    if (r->spool_path == NULL) return -1;
    snprintf(r->spool_path, n, "%s/body-XXXXXX", lim->spool_dir);
    r->spool_fd = mkostemp(r->spool_path, O_CLOEXEC);
    if (r->spool_fd < 0) {
        hv_free(r->spool_path);
        r->spool_path = NULL;
        return -1;
    }
    if (write_all(r->spool_fd, r->body.data ? r->body.data : "", r->body.len) != 0) return -1;
    r->spool_len = r->body.len;
    hv_buf_release(&r->body);
    hv_buf_init(&r->body, lim->max_body);
    return 0;
}

/* Splits the query string at & and = and decodes each part (application/x-www-form-urlencoded). */
static void parse_query(hv_http_req_t *req) {
    char *q, *p;
    size_t cap = 0;
    req->qparsed = 1;
    if (req->query == NULL || req->query[0] == '\0') return;
    q = hv_arena_strdup(req->arena, req->query);
    if (q == NULL) return;
    for (p = q; p != NULL && *p;) {
        char *amp = strchr(p, '&'), *eq;
        long nl, vl;
        if (amp != NULL) *amp = '\0';
        eq = strchr(p, '=');
        if (eq != NULL) *eq = '\0';
        nl = hv_url_decode(p, strlen(p), 1);
        vl = eq ? hv_url_decode(eq + 1, strlen(eq + 1), 1) : 0;
        if (nl > 0 && vl >= 0) {
            if (req->nq == cap) {
                size_t ncap = cap ? cap * 2 : 8;
                header_t *nv = hv_realloc(req->qparams, ncap * sizeof(*nv));
                if (nv == NULL) return;
                req->qparams = nv;
                cap = ncap;
            }
            req->qparams[req->nq].name = p;
            req->qparams[req->nq].value = eq ? eq + 1 : p + strlen(p);
            req->nq++;
        }
        p = amp ? amp + 1 : NULL;
    }
}

const char *hv_http_req_query_param(hv_http_req_t *req, const char *name) {
    size_t i;
    if (!req->qparsed) parse_query(req);
    for (i = 0; i < req->nq; i++)
        if (strcmp(req->qparams[i].name, name) == 0) return req->qparams[i].value;
    return NULL;
}

int hv_http_header_add(hv_http_req_t *req, const char *name, const char *value) {
    /* refuse CR/LF so that no header injection can come from data */
    if (strpbrk(name, "\r\n:") != NULL || strpbrk(value, "\r\n") != NULL) return HV_EINVAL;
    if (hv_buf_puts(&req->resp_headers, name) != HV_OK ||
        hv_buf_append(&req->resp_headers, ": ", 2) != HV_OK ||
        hv_buf_puts(&req->resp_headers, value) != HV_OK)
        return HV_ETOOBIG;
    return hv_buf_append(&req->resp_headers, "\r\n", 2);
}

/* ------------------------------------------------------------------------ */
/* Writing                                                                  */
/* ------------------------------------------------------------------------ */

static void on_write(uv_write_t *w, int status) {
    wreq_t *wr = (wreq_t *)w;
    conn_t *c = wr->conn;
    c->pending_writes--;
    c->out_bytes -= wr->len;
    hv_free(wr);
    if (status < 0) {
        conn_close(c);
        return;
    }
    if (c->lingering && c->pending_writes == 0) {
        linger(c);
        return;
    }
    if (c->close_after_write && c->pending_writes == 0) {
        conn_close(c);
        return;
    }
    if (!c->reading && !c->closing && c->out_bytes < c->srv->lim.max_pending_out) {
        /* back-pressure released */
        process_input(c);
    }
}

/* Queues raw bytes on the socket: tries a direct write first, queues the rest. */
static int sock_write(conn_t *c, const char *p, size_t n) {
    uv_buf_t b;
    wreq_t *wr;
    int r;
    if (c->closing) return HV_ECLOSED;
    if (c->pending_writes == 0) {
        b = uv_buf_init((char *)p, (unsigned)n);
        r = uv_try_write((uv_stream_t *)&c->tcp, &b, 1);
        if (r > 0) {
            p += r;
            n -= (size_t)r;
        } else if (r != UV_EAGAIN && r != UV_ENOSYS) {
            return HV_EIO;
        }
        if (n == 0) return HV_OK;
    }
    wr = hv_malloc(sizeof(*wr) + n);
    if (wr == NULL) return HV_ENOMEM;
    wr->conn = c;
    wr->len = n;
    memcpy(wr->data, p, n);
    b = uv_buf_init(wr->data, (unsigned)n);
    r = uv_write(&wr->req, (uv_stream_t *)&c->tcp, &b, 1, on_write);
    if (r != 0) {
        hv_free(wr);
        return HV_EIO;
    }
    c->pending_writes++;
    c->out_bytes += n;
    return HV_OK;
}

/* Bodies longer than this are written apart from the response's head (hv_http_respond). */
#define HTTP_BODY_APART ((size_t)64 * 1024)

static int conn_write(conn_t *c, const char *p, size_t n) {
    hv_buf_t net;
    int rc;
    if (c->tls == NULL) return sock_write(c, p, n);
    hv_buf_init(&net, 0);
    rc = hv_tls_write(c->tls, p, n, &net);
    if (rc == HV_OK && net.len > 0) rc = sock_write(c, net.data, net.len);
    hv_buf_release(&net);
    return rc;
}

static const char *date_header(hv__http_server_t *s) {
    uint64_t now = hv_now_ms() / 1000;
    if (now != s->date_sec) {
        time_t t = (time_t)now;
        struct tm tm;
        gmtime_r(&t, &tm);
        strftime(s->date, sizeof(s->date), "%a, %d %b %Y %H:%M:%S GMT", &tm);
        s->date_sec = now;
    }
    return s->date;
}

const char *hv_http_status_text(int status) {
    switch (status) {
    case 100: return "Continue";
    case 200: return "OK";
    case 201: return "Created";
    case 202: return "Accepted";
    case 204: return "No Content";
    case 206: return "Partial Content";
    case 301: return "Moved Permanently";
    case 302: return "Found";
    case 303: return "See Other";
    case 304: return "Not Modified";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 406: return "Not Acceptable";
    case 408: return "Request Timeout";
    case 409: return "Conflict";
    case 410: return "Gone";
    case 411: return "Length Required";
    case 412: return "Precondition Failed";
    case 413: return "Content Too Large";
    case 414: return "URI Too Long";
    case 415: return "Unsupported Media Type";
    case 417: return "Expectation Failed";
    case 422: return "Unprocessable Content";
    case 428: return "Precondition Required";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    case 505: return "HTTP Version Not Supported";
    default: return "Unknown";
    }
}

/* Answers on a connection without a dispatched request (parse errors, limits) and closes it. */
static void conn_fail(conn_t *c, int status, const char *code, const char *msg) {
    hv__http_server_t *s = c->srv;
    hv_buf_t out;
    char body[512];
    int n;
    if (c->closing) return;
    hv_counter_add(s->c_bad, 1);
    n = snprintf(body, sizeof(body), "{\"error\":\"%s\",\"message\":\"%s\"}", code, msg);
    hv_buf_init(&out, 0);
    hv_buf_printf(&out,
                  "HTTP/1.1 %d %s\r\nDate: %s\r\nContent-Type: application/json\r\n"
                  "Content-Length: %d\r\nConnection: close\r\n\r\n%s",
                  status, hv_http_status_text(status), date_header(s), n, body);
    hv_logrec_t *r = hv_log_begin(HV_LOG_INFO, "http.rejected");
    hv_log_int(r, "status", status);
    hv_log_str(r, "reason", code);
    hv_log_str(r, "peer", c->peer);
    hv_log_end(r);
    c->lingering = 1;
    if (conn_write(c, out.data, out.len) != HV_OK) conn_close(c);
    else if (c->pending_writes == 0) linger(c);
    hv_buf_release(&out);
}

static void on_shutdown(uv_shutdown_t *req, int status) {
    conn_t *c = req->data;
    (void)status;
    if (!c->closing) c->deadline = uv_now(c->srv->loop) + 2000;
}

/*
 * Lingering close (as nginx's lingering_close): after an error answer, shut our
 * write side and read and discard what the client still sends, for at most two
 * seconds, so that its unread request bytes do not make the kernel reset the
 * connection and destroy the answer before the client has read it.
 */
static void linger(conn_t *c) {
    if (c->closing) return;
    c->phase = PH_HANDLING; /* no more parsing */
    c->deadline = uv_now(c->srv->loop) + 2000;
    c->shutdown_req.data = c;
    if (uv_shutdown(&c->shutdown_req, (uv_stream_t *)&c->tcp, on_shutdown) != 0) {
        conn_close(c);
        return;
    }
    if (!c->reading) read_start(c);
}

static hv_counter_t *status_counter(hv__http_server_t *s, hv__route_t *rt, int status) {
    int i;
    char labels[512];
    for (i = 0; i < rt->ncodes; i++)
        if (rt->codes[i].status == status) return rt->codes[i].counter;
    snprintf(labels, sizeof(labels), "route=\"%s\",code=\"%d\"", rt->pattern, status);
    {
        hv_counter_t *ct = hv_metrics_counter(hv_engine_metrics(s->e), "hv_http_requests_total",
                                              "HTTP requests by route and status code.", labels);
        if (rt->ncodes < (int)HV_ARRAY_LEN(rt->codes)) {
            rt->codes[rt->ncodes].status = status;
            rt->codes[rt->ncodes].counter = ct;
            rt->ncodes++;
        }
        return ct;
    }
}

static void record_stats(hv_http_req_t *req, int status, size_t bytes) {
    hv__http_server_t *s = req->srv;
    hv__route_t *rt = req->match.route ? req->match.route : &s->unmatched;
    uint64_t us = (hv_mono_ns() - req->start_ns) / 1000;
    hv_counter_add(status_counter(s, rt, status), 1);
    if (rt->hist == NULL) {
        char labels[300];
        snprintf(labels, sizeof(labels), "route=\"%s\"", rt->pattern);
        rt->hist = hv_metrics_histogram(hv_engine_metrics(s->e), "hv_http_request_duration_seconds",
                                        "HTTP request latency by route.", labels, NULL);
    }
    hv_histogram_observe(rt->hist, (double)us / 1e6);
    hv__latency_add(&rt->latency, us);
    if (s->lim.access_log) {
        hv_logrec_t *r = hv_log_begin(HV_LOG_INFO, "http.request");
        if (r != NULL) {
            /* the route pattern, never the path or query: those may carry PHI */
            hv_log_str(r, "method", req->method_name);
            hv_log_str(r, "route", rt->pattern);
            hv_log_int(r, "status", status);
            hv_log_int(r, "bytes", (int64_t)bytes);
            hv_log_dbl(r, "ms", (double)us / 1000.0);
            hv_log_str(r, "trace_id", req->trace_id);
            hv_log_end(r);
        }
    }
    if (status >= 500) {
        hv_engine_report_error(s->e, "http", "http_5xx", hv_http_status_text(status), req->trace_id);
    }
}

/* The request is answered: continue with the connection's next request. */
static void req_finish(hv_http_req_t *req) {
    conn_t *c = req->conn;
    req_free(req);
    if (c == NULL) return;
    c->req = NULL;
    c->handling = 0;
    c->phase = PH_IDLE;
    c->deadline = uv_now(c->srv->loop) + c->srv->lim.idle_timeout;
    if (c->close_after_write) {
        if (c->pending_writes == 0) conn_close(c);
        return;
    }
    process_input(c);
}

static char *arena_memdup(hv_arena_t *a, const char *p, size_t n);

void hv_http_respond(hv_http_req_t *req, int status, const char *content_type, const char *body,
                     size_t len) {
    hv__http_server_t *s = req->srv;
    conn_t *c = req->conn;
    hv_buf_t *out = &s->scratch;
    int rc;
    if (req->responded || (req->held && req->holds > 0)) {
        hv_log(HV_LOG_ERROR, "http.double_response", "a handler answered twice (route %s)",
               hv_http_req_route(req));
        return;
    }
    if (!req->held && s->e->respond_hook != NULL) s->e->respond_hook(req, status, body, len, s->e->respond_hook_ud);
    if (!req->held && req->ovr_status != 0) {
        status = req->ovr_status;
        content_type = req->ovr_type;
        body = req->ovr_body;
        len = req->ovr_len;
    }
    if (req->holds > 0 && !req->held) {
        /* Keep the answer until the audit records of this request have committed. */
        req->held = 1;
        req->held_status = status;
        req->held_type = content_type ? hv_arena_strdup(req->arena, content_type) : NULL;
        req->held_body = len > 0 ? arena_memdup(req->arena, body, len) : NULL;
        req->held_len = req->held_body ? len : 0;
        if ((content_type && !req->held_type) || (len > 0 && !req->held_body)) req->hold_failed = 1;
        return;
    }
    req->responded = 1;
    record_stats(req, status, len);
    if (c == NULL || c->closing) {
        req_free(req);
        return;
    }
    if (!req->keep_alive || s->shutting_down) c->close_after_write = 1;
    hv_buf_reset(out);
    /* Built with plain appends: this runs once per response, and printf showed up as a
     * fifth of the server's instructions in a callgrind profile. */
    {
        char num[24];
        const char *text = hv_http_status_text(status);
        size_t nlen;
        hv_buf_reserve(out, 256 + strlen(text) + (content_type ? strlen(content_type) : 0));
        hv_buf_append(out, "HTTP/1.1 ", 9);
        num[0] = (char)('0' + status / 100 % 10);
        num[1] = (char)('0' + status / 10 % 10);
        num[2] = (char)('0' + status % 10);
        num[3] = ' ';
        hv_buf_append(out, num, 4);
        hv_buf_puts(out, text);
        hv_buf_append(out, "\r\nDate: ", 8);
        hv_buf_puts(out, date_header(s));
        hv_buf_append(out, "\r\n", 2);
        if (content_type != NULL) {
            hv_buf_append(out, "Content-Type: ", 14);
            hv_buf_puts(out, content_type);
            hv_buf_append(out, "\r\n", 2);
        }
        if (status >= 200 && status != 204 && status != 304) {
            size_t v = len;
            char *p = num + sizeof(num);
            do {
                *--p = (char)('0' + v % 10);
                v /= 10;
            } while (v > 0);
            nlen = (size_t)(num + sizeof(num) - p);
            hv_buf_append(out, "Content-Length: ", 16);
            hv_buf_append(out, p, nlen);
            hv_buf_append(out, "\r\n", 2);
        }
        hv_buf_append(out, "traceparent: 00-", 16);
        hv_buf_append(out, req->trace_id, 32);
        hv_buf_putc(out, '-');
        hv_buf_append(out, req->span_id, 16);
        hv_buf_append(out, "-01\r\n", 5);
    }
    if (c->close_after_write) hv_buf_puts(out, "Connection: close\r\n");
    else if (req->http_minor == 0) hv_buf_puts(out, "Connection: keep-alive\r\n");
    if (req->resp_headers.len > 0) hv_buf_append(out, req->resp_headers.data, req->resp_headers.len);
    hv_buf_puts(out, "\r\n");
    /* A large body (a search page of 1,000 resources: megabytes) is written after the
     * head from where it is, not copied behind it into the scratch buffer first:
     * sock_write copies only what the socket does not take at once. */
    if (req->method != HV_HTTP_HEAD && len > HTTP_BODY_APART) {
        rc = conn_write(c, out->data, out->len);
        if (rc == HV_OK) rc = conn_write(c, body, len);
    } else {
        if (req->method != HV_HTTP_HEAD && len > 0) hv_buf_append(out, body, len);
        rc = conn_write(c, out->data, out->len);
    }
    if (out->cap > 1024 * 1024) hv_buf_release(out); /* do not keep a huge scratch around */
    if (rc != HV_OK) {
        req_free(req);
        c->req = NULL;
        c->handling = 0;
        conn_close(c);
        return;
    }
    req_finish(req);
}

void hv_http_respond_buf(hv_http_req_t *req, int status, const char *content_type, hv_buf_t *body) {
    hv_http_respond(req, status, content_type, body->data ? body->data : "", body->len);
    hv_buf_release(body);
}

void hv_http_respond_json(hv_http_req_t *req, int status, struct json_object *json) {
    size_t len = 0;
    const char *text;
    if (json == NULL) {
        hv_http_respond_error(req, 500, "internal", "out of memory");
        return;
    }
    text = json_object_to_json_string_length(json, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE, &len);
    hv_http_respond(req, status, "application/json", text, len);
    json_object_put(json);
}

void hv_http_respond_error(hv_http_req_t *req, int status, const char *code, const char *fmt, ...) {
    char msg[1024];
    va_list ap;
    hv_http_error_cb fmtcb;
    hv_buf_t body;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    fmtcb = req->path ? hv__router_error_format(hv_engine_router(req->srv->e), req->path) : NULL;
    if (fmtcb != NULL) {
        fmtcb(req, status, code, msg);
        return;
    }
    hv_buf_init(&body, 0);
    hv_buf_puts(&body, "{\"error\":");
    hv_buf_json_str(&body, code, strlen(code));
    hv_buf_puts(&body, ",\"message\":");
    hv_buf_json_str(&body, msg, strlen(msg));
    hv_buf_puts(&body, "}");
    hv_http_respond_buf(req, status, "application/json", &body);
}

/* ------------------------------------------------------------------------ */
/* Parsing                                                                  */
/* ------------------------------------------------------------------------ */

static int fail_cb(conn_t *c, int status, const char *code, const char *msg) {
    c->err_status = status;
    c->err_code = code;
    c->err_msg = msg;
    return -1;
}

static int count_header_bytes(conn_t *c, size_t n) {
    c->header_bytes += n;
    return c->header_bytes > c->srv->lim.max_header;
}

static int on_message_begin(http_parser *p) {
    conn_t *c = p->data;
    req_free(c->req);
    c->req = req_new(c);
    if (c->req == NULL) return fail_cb(c, 503, "overloaded", "out of memory");
    c->header_bytes = 0;
    c->last_was_value = 0;
    hv_buf_reset(&c->hname);
    hv_buf_reset(&c->hval);
    if (c->phase == PH_IDLE) {
        c->phase = PH_HEADERS;
        c->deadline = uv_now(c->srv->loop) + c->srv->lim.header_timeout;
    }
    return 0;
}

static int on_url(http_parser *p, const char *at, size_t n) {
    conn_t *c = p->data;
    if (count_header_bytes(c, n) || hv_buf_append(&c->req->target, at, n) != HV_OK)
        return fail_cb(c, 414, "uri_too_long", "the request target is too long");
    return 0;
}

static int commit_header(conn_t *c) {
    hv_http_req_t *r = c->req;
    char *name, *value;
    size_t vlen = c->hval.len;
    const char *v = c->hval.data ? c->hval.data : "";
    /* trim optional whitespace after the value (RFC 9110 §5.5) */
    while (vlen > 0 && (v[vlen - 1] == ' ' || v[vlen - 1] == '\t')) vlen--;
    name = hv_arena_strndup(r->arena, c->hname.data ? c->hname.data : "", c->hname.len);
    value = hv_arena_strndup(r->arena, v, vlen);
    if (name == NULL || value == NULL) return -1;
    if (r->nheaders == r->capheaders) {
        size_t ncap = r->capheaders ? r->capheaders * 2 : 16;
        header_t *nv;
        if (ncap > 256) return -1;
        nv = hv_realloc(r->headers, ncap * sizeof(*nv));
        if (nv == NULL) return -1;
        r->headers = nv;
        r->capheaders = ncap;
    }
    r->headers[r->nheaders].name = name;
    r->headers[r->nheaders].value = value;
    r->nheaders++;
    hv_buf_reset(&c->hname);
    hv_buf_reset(&c->hval);
    return 0;
}

static int on_header_field(http_parser *p, const char *at, size_t n) {
    conn_t *c = p->data;
    if (c->last_was_value) {
        if (commit_header(c) != 0)
            return fail_cb(c, 431, "headers_too_large", "too many request header fields");
        c->last_was_value = 0;
    }
    if (count_header_bytes(c, n) || hv_buf_append(&c->hname, at, n) != HV_OK)
        return fail_cb(c, 431, "headers_too_large", "the request headers are too large");
    return 0;
}

static int on_header_value(http_parser *p, const char *at, size_t n) {
    conn_t *c = p->data;
    c->last_was_value = 1;
    if (count_header_bytes(c, n) || hv_buf_append(&c->hval, at, n) != HV_OK)
        return fail_cb(c, 431, "headers_too_large", "the request headers are too large");
    return 0;
}

static int method_of(unsigned m, const char **name) {
    *name = http_method_str((enum http_method)m);
    switch (m) {
    case HTTP_GET: return HV_HTTP_GET;
    case HTTP_HEAD: return HV_HTTP_HEAD;
    case HTTP_POST: return HV_HTTP_POST;
    case HTTP_PUT: return HV_HTTP_PUT;
    case HTTP_DELETE: return HV_HTTP_DELETE;
    case HTTP_PATCH: return HV_HTTP_PATCH;
    case HTTP_OPTIONS: return HV_HTTP_OPTIONS;
    default: return HV_HTTP_OTHER;
    }
}

static int on_headers_complete(http_parser *p) {
    conn_t *c = p->data;
    hv_http_req_t *r = c->req;
    const char *target, *expect;
    char *q;
    long n;
    if (c->last_was_value && commit_header(c) != 0)
        return fail_cb(c, 431, "headers_too_large", "too many request header fields");
    r->method = method_of(p->method, &r->method_name);
    r->http_major = p->http_major;
    r->http_minor = p->http_minor;
    if (p->http_major != 1)
        return fail_cb(c, 505, "http_version_not_supported", "only HTTP/1.0 and HTTP/1.1 are served");
    target = r->target.data ? r->target.data : "";
    if (target[0] != '/')
        return fail_cb(c, 400, "bad_request", "the request target must be an absolute path");
    r->path = hv_arena_strdup(r->arena, target);
    if (r->path == NULL) return fail_cb(c, 503, "overloaded", "out of memory");
    q = strchr(r->path, '?');
    if (q != NULL) {
        *q = '\0';
        r->query = hv_arena_strdup(r->arena, q + 1);
    } else {
        r->query = "";
    }
    {
        char *hash = strchr(r->query ? r->query : "", '#');
        if (hash != NULL) *hash = '\0';
    }
    n = hv_url_decode(r->path, strlen(r->path), 0);
    if (n < 0 || strlen(r->path) != (size_t)n)
        return fail_cb(c, 400, "bad_request", "the request path has an invalid percent-encoding");
    if (p->content_length != ULLONG_MAX && p->content_length > c->srv->lim.max_body &&
        (p->flags & F_CHUNKED) == 0)
        return fail_cb(c, 413, "body_too_large", "the request body exceeds the configured limit");
    expect = hv_http_req_header(r, "expect");
    if (expect != NULL) {
        if (strcasecmp(expect, "100-continue") != 0)
            return fail_cb(c, 417, "expectation_failed", "only Expect: 100-continue is supported");
        if (p->http_minor >= 1) {
            static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
            conn_write(c, cont, sizeof(cont) - 1);
        }
    }
    c->phase = PH_BODY;
    c->deadline = uv_now(c->srv->loop) + c->srv->lim.body_timeout;
    return 0;
}

static int on_body(http_parser *p, const char *at, size_t n) {
    conn_t *c = p->data;
    hv_http_req_t *r = c->req;
    const hv__http_limits_t *lim = &c->srv->lim;
    if (r->spool_path == NULL && lim->spool_body > 0 && lim->spool_dir[0] != '\0' &&
        r->body.len + n > lim->spool_body && r->body.len + n <= lim->max_body &&
        spool_start(r) != 0)
        return fail_cb(c, 503, "spool_failed", "the request body could not be written to disk");
    if (r->spool_path != NULL) {
        if (r->spool_len + n > lim->max_body)
            return fail_cb(c, 413, "body_too_large", "the request body exceeds the configured limit");
        if (write_all(r->spool_fd, at, n) != 0)
            return fail_cb(c, 503, "spool_failed", "the request body could not be written to disk");
        r->spool_len += n;
    } else if (hv_buf_append(&r->body, at, n) != HV_OK) {
        return fail_cb(c, 413, "body_too_large", "the request body exceeds the configured limit");
    }
    c->deadline = uv_now(c->srv->loop) + c->srv->lim.body_timeout;
    return 0;
}

static int on_message_complete(http_parser *p) {
    conn_t *c = p->data;
    if (c->req->spool_fd >= 0) {
        close(c->req->spool_fd);
        c->req->spool_fd = -1;
    }
    c->req->keep_alive = http_should_keep_alive(p);
    c->ready = 1;
    http_parser_pause(p, 1);
    return 0;
}

/* W3C Trace Context §3.2: traceparent = 00-<32 hex trace-id>-<16 hex parent-id>-<2 hex flags>. */
static int valid_traceparent(const char *v) {
    size_t i;
    if (v == NULL || strlen(v) < 55 || v[2] != '-' || v[35] != '-' || v[52] != '-') return 0;
    for (i = 3; i < 35; i++)
        if (!((v[i] >= '0' && v[i] <= '9') || (v[i] >= 'a' && v[i] <= 'f'))) return 0;
    return strncmp(v + 3, "00000000000000000000000000000000", 32) != 0;
}

static void dispatch(conn_t *c) {
    hv__http_server_t *s = c->srv;
    hv_http_req_t *r = c->req;
    hv_router_t *router = hv_engine_router(s->e);
    const char *tp = hv_http_req_header(r, "traceparent");
    unsigned char rnd[24];
    int rc;
    c->ready = 0;
    c->handling = 1;
    c->phase = PH_HANDLING;
    c->deadline = 0;
    hv_random_fast(rnd, sizeof(rnd));
    if (valid_traceparent(tp)) {
        memcpy(r->trace_id, tp + 3, 32);
        r->trace_id[32] = '\0';
    } else {
        hv_hex(rnd, 16, r->trace_id);
    }
    hv_hex(rnd + 16, 8, r->span_id);

    if (s->e->guard != NULL && s->e->guard(r, s->e->guard_ud) != HV_OK) return;
    if (s->e->admit_hook != NULL && s->e->admit_hook(r, s->e->admit_hook_ud) != HV_OK) return;
    rc = hv__router_match(router, r->method, r->path, r->arena, &r->match);
    if (rc == HV_OK) {
        r->match.route->fn(r, r->match.route->ud);
        return;
    }
    if (r->match.allowed != 0) {
        static const struct { unsigned m; const char *name; } names[] = {
            {HV_HTTP_GET, "GET"},       {HV_HTTP_HEAD, "HEAD"},   {HV_HTTP_POST, "POST"},
            {HV_HTTP_PUT, "PUT"},       {HV_HTTP_DELETE, "DELETE"}, {HV_HTTP_PATCH, "PATCH"},
            {HV_HTTP_OPTIONS, "OPTIONS"},
        };
        char allow[128] = "";
        size_t i;
        unsigned allowed = r->match.allowed;
        if (allowed & HV_HTTP_GET) allowed |= HV_HTTP_HEAD;
        for (i = 0; i < HV_ARRAY_LEN(names); i++) {
            if (!(allowed & names[i].m)) continue;
            if (allow[0]) strcat(allow, ", ");
            strcat(allow, names[i].name);
        }
        hv_http_header_add(r, "Allow", allow);
        if (r->method == HV_HTTP_OPTIONS) {
            hv_http_respond(r, 204, NULL, NULL, 0);
            return;
        }
        hv_http_respond_error(r, 405, "method_not_allowed", "%s is not allowed here; allowed: %s",
                              r->method_name, allow);
        return;
    }
    if (rc == HV_ETOOBIG) {
        hv_http_respond_error(r, 414, "uri_too_long", "the path has too many segments");
        return;
    }
    hv_http_respond_error(r, 404, "not_found", "no resource at this path");
}

/* Parses what is buffered, dispatching each complete request in turn. */
static void process_input(conn_t *c) {
    hv__http_server_t *s = c->srv;
    if (c->in_process) return;
    c->in_process = 1;
    while (!c->closing && !c->lingering && !c->handling && c->in.len > 0) {
        size_t n;
        enum http_errno err;
        n = http_parser_execute(&c->parser, &s->settings, c->in.data, c->in.len);
        err = HTTP_PARSER_ERRNO(&c->parser);
        if (err == HPE_PAUSED) {
            http_parser_pause(&c->parser, 0);
            hv_buf_consume(&c->in, n);
        } else if (err != HPE_OK) {
            if (c->err_status != 0) conn_fail(c, c->err_status, c->err_code, c->err_msg);
            else conn_fail(c, 400, "bad_request", http_errno_description(err));
            break;
        } else {
            hv_buf_consume(&c->in, n);
        }
        if (c->ready) dispatch(c);
    }
    c->in_process = 0;
    if (c->closing || c->lingering) return;
    /* read while there is room: pipelined input is bounded, so is queued output */
    if (c->in.len < s->lim.max_header + 65536 && c->out_bytes < s->lim.max_pending_out) {
        if (!c->reading) read_start(c);
    } else if (c->reading) {
        uv_read_stop((uv_stream_t *)&c->tcp);
        c->reading = 0;
    }
}

/* ------------------------------------------------------------------------ */
/* Connections                                                              */
/* ------------------------------------------------------------------------ */

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
    conn_t *c = (conn_t *)h;
    (void)suggested;
    *buf = uv_buf_init(c->srv->rbuf, sizeof(c->srv->rbuf));
}

static void on_read(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf) {
    conn_t *c = (conn_t *)st;
    int rc;
    if (nread < 0) {
        conn_close(c);
        return;
    }
    if (nread == 0) return;
    if (c->lingering) return; /* discard */
    if (c->phase == PH_IDLE) {
        c->phase = PH_HEADERS;
        c->deadline = uv_now(c->srv->loop) + c->srv->lim.header_timeout;
    }
    if (c->tls != NULL) {
        hv_buf_t net;
        hv_buf_init(&net, 0);
        rc = hv_tls_feed(c->tls, buf->base, (size_t)nread, &c->in, &net);
        if (net.len > 0) sock_write(c, net.data, net.len);
        hv_buf_release(&net);
        if (rc != HV_OK) {
            if (c->pending_writes > 0) c->close_after_write = 1;
            else conn_close(c);
            return;
        }
    } else if (hv_buf_append(&c->in, buf->base, (size_t)nread) != HV_OK) {
        conn_close(c);
        return;
    }
    process_input(c);
}

static void read_start(conn_t *c) {
    if (uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) == 0) c->reading = 1;
}

static void on_conn_closed(uv_handle_t *h) {
    conn_t *c = (conn_t *)h;
    hv__http_server_t *s = c->srv;
    if (c->prev) c->prev->next = c->next;
    else s->conns = c->next;
    if (c->next) c->next->prev = c->prev;
    s->nconns--;
    hv_gauge_add(s->g_open, -1);
    if (c->req != NULL) {
        if (c->handling) c->req->conn = NULL; /* the handler still owns it */
        else req_free(c->req);
    }
    hv_tls_free(c->tls);
    hv_buf_release(&c->in);
    hv_buf_release(&c->hname);
    hv_buf_release(&c->hval);
    hv_free(c);
    maybe_done(s);
}

static void conn_close(conn_t *c) {
    if (c->closing) return;
    c->closing = 1;
    if (c->req != NULL && c->handling) c->req->conn = NULL;
    if (c->handling) c->req = NULL;
    uv_close((uv_handle_t *)&c->tcp, on_conn_closed);
}

static void on_connection(uv_stream_t *ls, int status) {
    hv__http_server_t *s = ls->data;
    conn_t *c;
    struct sockaddr_storage sa;
    int salen = sizeof(sa);
    if (status < 0) return;
    c = hv_calloc(1, sizeof(*c));
    if (c == NULL) return;
    c->srv = s;
    uv_tcp_init(s->loop, &c->tcp);
    if (uv_accept(ls, (uv_stream_t *)&c->tcp) != 0) {
        uv_close((uv_handle_t *)&c->tcp, (uv_close_cb)hv_free);
        return;
    }
    c->next = s->conns;
    if (s->conns) s->conns->prev = c;
    s->conns = c;
    s->nconns++;
    hv_gauge_add(s->g_open, 1);
    hv_counter_add(s->c_accepted, 1);
    hv_buf_init(&c->in, 0);
    hv_buf_init(&c->hname, 0);
    hv_buf_init(&c->hval, 0);
    http_parser_init(&c->parser, HTTP_REQUEST);
    c->parser.data = c;
    c->phase = PH_IDLE;
    c->deadline = uv_now(s->loop) + s->lim.header_timeout;
    uv_tcp_nodelay(&c->tcp, 1);
    if (uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&sa, &salen) == 0) {
        char ip[INET6_ADDRSTRLEN] = "";
        int port = 0;
        if (sa.ss_family == AF_INET) {
            uv_ip4_name((struct sockaddr_in *)&sa, ip, sizeof(ip));
            port = ntohs(((struct sockaddr_in *)&sa)->sin_port);
        } else if (sa.ss_family == AF_INET6) {
            uv_ip6_name((struct sockaddr_in6 *)&sa, ip, sizeof(ip));
            port = ntohs(((struct sockaddr_in6 *)&sa)->sin6_port);
        }
        snprintf(c->peer, sizeof(c->peer), "%s:%d", ip, port);
    }
    if (s->shutting_down || s->nconns > s->lim.max_connections) {
        hv_counter_add(s->c_rejected, 1);
        conn_fail(c, 503, "too_many_connections", "the server is at its connection limit");
        return;
    }
    if (s->tls != NULL) {
        c->tls = hv_tls_new(s->tls, NULL);
        if (c->tls == NULL) {
            conn_close(c);
            return;
        }
    }
    read_start(c);
}

/* Every 250 ms: cut off connections past their deadline. */
static void on_sweep(uv_timer_t *t) {
    hv__http_server_t *s = t->data;
    uint64_t now = uv_now(s->loop);
    conn_t *c, *next;
    for (c = s->conns; c != NULL; c = next) {
        next = c->next;
        if (c->closing || c->deadline == 0 || now < c->deadline) continue;
        if (c->lingering) {
            conn_close(c);
            continue;
        }
        hv_counter_add(s->c_timeouts, 1);
        if (c->phase == PH_HEADERS || c->phase == PH_BODY) {
            if (c->in.len == 0 && c->req == NULL && c->phase == PH_HEADERS && c->header_bytes == 0 &&
                c->parser.nread == 0) {
                conn_close(c); /* connected but never sent a byte */
            } else {
                conn_fail(c, 408, "request_timeout", "the request was not received in time");
            }
        } else {
            conn_close(c);
        }
    }
}

int hv__http_server_new(hv_engine_t *e, const hv__http_limits_t *limits, hv_tls_ctx_t *tls,
                        hv__http_server_t **out) {
    hv__http_server_t *s = hv_calloc(1, sizeof(*s));
    hv_metrics_t *m = hv_engine_metrics(e);
    if (s == NULL) return HV_ENOMEM;
    s->e = e;
    s->loop = hv_engine_loop(e);
    s->lim = *limits;
    s->tls = tls;
    hv_buf_init(&s->scratch, 0);
    s->unmatched.pattern = "unmatched";
    s->settings.on_message_begin = on_message_begin;
    s->settings.on_url = on_url;
    s->settings.on_header_field = on_header_field;
    s->settings.on_header_value = on_header_value;
    s->settings.on_headers_complete = on_headers_complete;
    s->settings.on_body = on_body;
    s->settings.on_message_complete = on_message_complete;
    s->g_open = hv_metrics_gauge(m, "hv_http_connections_open", "Open HTTP connections.", NULL);
    s->c_accepted = hv_metrics_counter(m, "hv_http_connections_total", "HTTP connections accepted.", NULL);
    s->c_rejected = hv_metrics_counter(m, "hv_http_connections_rejected_total",
                                       "HTTP connections refused at the connection limit.", NULL);
    s->c_timeouts = hv_metrics_counter(m, "hv_http_timeouts_total",
                                       "HTTP connections cut off by a header, body or idle timeout.", NULL);
    s->c_bad = hv_metrics_counter(m, "hv_http_bad_requests_total",
                                  "Malformed or over-limit HTTP requests answered and closed.", NULL);
    uv_timer_init(s->loop, &s->sweep);
    s->sweep.data = s;
    s->handles_open++;
    uv_timer_start(&s->sweep, on_sweep, 250, 250);
    uv_unref((uv_handle_t *)&s->sweep);
    *out = s;
    return HV_OK;
}

int hv__http_server_listen(hv__http_server_t *s, const char *host, int port, hv_error_t *err) {
    struct sockaddr_storage sa;
    int r;
    if (strchr(host, ':') != NULL) r = uv_ip6_addr(host, port, (struct sockaddr_in6 *)&sa);
    else r = uv_ip4_addr(host, port, (struct sockaddr_in *)&sa);
    if (r != 0) {
        hv_error_set(err, HV_ECONFIG, "http.listen", "invalid address %s", host);
        return HV_ECONFIG;
    }
    uv_tcp_init(s->loop, &s->listener);
    s->listener.data = s;
    s->handles_open++;
    s->listening = 1;
    r = uv_tcp_bind(&s->listener, (struct sockaddr *)&sa, 0);
    if (r == 0) r = uv_listen((uv_stream_t *)&s->listener, 1024, on_connection);
    if (r != 0) {
        hv_error_set(err, HV_EIO, "http.listen", "cannot listen on %s:%d: %s", host, port,
                     uv_strerror(r));
        return HV_EIO;
    }
    return HV_OK;
}

size_t hv__http_server_connections(hv__http_server_t *s) { return s->nconns; }

int hv__http_server_port(hv__http_server_t *s) {
    struct sockaddr_storage sa;
    int len = sizeof(sa);
    if (uv_tcp_getsockname(&s->listener, (struct sockaddr *)&sa, &len) != 0) return -1;
    if (sa.ss_family == AF_INET) return ntohs(((struct sockaddr_in *)&sa)->sin_port);
    return ntohs(((struct sockaddr_in6 *)&sa)->sin6_port);
}

static void on_handle_closed(uv_handle_t *h) {
    hv__http_server_t *s = h->data;
    s->handles_open--;
    maybe_done(s);
}

/* Once shutdown has begun and the last connection is gone, closes the timers and
 * reports completion when every handle has been released. */
static void maybe_done(hv__http_server_t *s) {
    void (*done)(void *);
    if (!s->shutting_down || s->nconns > 0) return;
    if (!s->closing_timers) {
        s->closing_timers = 1;
        uv_close((uv_handle_t *)&s->sweep, on_handle_closed);
        uv_close((uv_handle_t *)&s->shutdown_timer, on_handle_closed);
    }
    if (s->handles_open > 0) return;
    done = s->done;
    s->done = NULL;
    if (done != NULL) done(s->done_ud);
}

static void on_shutdown_timeout(uv_timer_t *t) {
    hv__http_server_t *s = t->data;
    conn_t *c, *next;
    if (s->nconns > 0)
        hv_log(HV_LOG_WARN, "http.shutdown_timeout", "closing %zu connections that did not finish",
               s->nconns);
    for (c = s->conns; c != NULL; c = next) {
        next = c->next;
        conn_close(c);
    }
}

void hv__http_server_shutdown(hv__http_server_t *s, uint64_t timeout_ms, void (*done)(void *),
                              void *ud) {
    conn_t *c, *next;
    if (s->shutting_down) return;
    s->shutting_down = 1;
    s->done = done;
    s->done_ud = ud;
    if (s->listening) {
        s->listening = 0;
        uv_close((uv_handle_t *)&s->listener, on_handle_closed);
    }
    uv_timer_init(s->loop, &s->shutdown_timer);
    s->shutdown_timer.data = s;
    s->handles_open++;
    uv_timer_start(&s->shutdown_timer, on_shutdown_timeout, timeout_ms, 0);
    for (c = s->conns; c != NULL; c = next) {
        next = c->next;
        /* a request in progress finishes; its response carries Connection: close */
        if (c->handling || c->phase == PH_BODY || (c->phase == PH_HEADERS && c->in.len > 0)) continue;
        if (c->pending_writes > 0) {
            c->close_after_write = 1;
            continue;
        }
        conn_close(c);
    }
    maybe_done(s);
}

void hv__http_server_free(hv__http_server_t *s) {
    if (s == NULL) return;
    hv_buf_release(&s->scratch);
    hv_free(s);
}

void hv_http_set_guard(hv_engine_t *e, hv_http_guard_cb fn, void *ud) {
    e->guard = fn;
    e->guard_ud = ud;
}

void hv_http_req_set_principal(hv_http_req_t *req, const void *principal) { req->principal = principal; }

void hv_http_set_respond_hook(hv_engine_t *e, hv_http_respond_hook_cb fn, void *ud) {
    e->respond_hook = fn;
    e->respond_hook_ud = ud;
}

void hv_http_req_hold(hv_http_req_t *req) { req->holds++; }

/* A copy of n bytes that may hold NULs (a body), NUL-terminated. */
static char *arena_memdup(hv_arena_t *a, const char *p, size_t n) {
    char *c = hv_arena_alloc(a, n + 1);
    if (c == NULL) return NULL;
    memcpy(c, p, n);
    c[n] = '\0';
    return c;
}

int hv_http_req_override(hv_http_req_t *req, int status, const char *content_type, const char *body, size_t len) {
    char *t = content_type ? hv_arena_strdup(req->arena, content_type) : NULL;
    char *b = arena_memdup(req->arena, body ? body : "", len);
    if ((content_type && t == NULL) || b == NULL) return HV_ENOMEM;
    if (status >= 400) {
        /* The handler's headers (ETag, Location …) describe the answer that is not sent. */
        req->resp_headers.len = 0;
        if (req->resp_headers.data) req->resp_headers.data[0] = '\0';
    }
    req->ovr_status = status;
    req->ovr_type = t;
    req->ovr_body = b;
    req->ovr_len = len;
    return HV_OK;
}

void hv_http_set_admit_hook(hv_engine_t *e, hv_http_admit_cb fn, void *ud) {
    e->admit_hook = fn;
    e->admit_hook_ud = ud;
}

void hv_http_req_set_reserved(hv_http_req_t *req) { req->reserved = 1; }

int hv_http_req_take_reserved(hv_http_req_t *req) {
    int was = req->reserved;
    req->reserved = 0;
    return was;
}

int hv_http_req_mark_audited(hv_http_req_t *req) {
    int was = req->audited;
    req->audited = 1;
    return was;
}

void hv_http_req_release(hv_http_req_t *req, int status) {
    static const char busy[] = "{\"error\":\"audit_unavailable\",\"message\":"
                               "\"the audit trail could not record this request; retry later\"}";
    if (status != HV_OK) req->hold_failed = 1;
    if (req->holds > 0) req->holds--;
    if (req->holds > 0) return;
    if (!req->held) {
        /* Not answered yet: the answer, when it comes, is the 503 below. */
        if (req->hold_failed && req->ovr_status != 503) {
            hv_http_req_override(req, 503, "application/json", busy, sizeof(busy) - 1);
            hv_http_header_add(req, "Retry-After", "1");
        }
        return;
    }
    if (req->hold_failed) {
        /* The audit record could not be written: no data leaves without its record. */
        req->resp_headers.len = 0;
        if (req->resp_headers.data) req->resp_headers.data[0] = '\0';
        hv_http_header_add(req, "Retry-After", "1");
        hv_http_respond(req, 503, "application/json", busy, sizeof(busy) - 1);
        return;
    }
    hv_http_respond(req, req->held_status, req->held_type, req->held_body ? req->held_body : "", req->held_len);
}

const void *hv_http_req_principal(const hv_http_req_t *req) { return req->principal; }
