/*
 * channel_http.c — HTTP for channels: the `http-send` destination (libcurl multi
 * driven by the engine's libuv loop) and the `http` source's type (its route,
 * POST /channels/:id/in, is in channel_api.c).
 *
 * libcurl runs without blocking the loop (curl's multi_socket API, as in its
 * example multi-uv.c): CURLMOPT_SOCKETFUNCTION asks for a uv_poll_t per socket
 * with the events curl wants, CURLMOPT_TIMERFUNCTION arms one uv_timer_t, and
 * both call curl_multi_socket_action; finished transfers are read with
 * curl_multi_info_read and reported to their destination's callback.
 *
 * A delivery is one request: method (POST by default) to url, body = the message
 * content, headers Content-Type (the original one), X-Message-Id (the engine's
 * message id) and the configured headers. Outcome: 2xx → delivered; 408, 429,
 * 5xx, and any transport failure (refused, reset, timeout, TLS) → retry; other
 * statuses (the peer refuses this message) → error, i.e. dead-letter.
 */
#include "config.h"
#include "engine/channel_rt.h"

#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#define RESPONSE_MAX 65536

typedef struct xfer xfer_t;
typedef struct sockctx sockctx_t;

struct hv__curl {
    uv_loop_t *loop;
    CURLM *multi;
    uv_timer_t timer;
    int closing;
    xfer_t *xfers;     /* in flight, doubly linked */
    sockctx_t *socks;  /* polled sockets, doubly linked */
};

/*
 * One socket of curl's, polled by the loop. It lives as long as the socket: when a
 * transfer ends curl stops watching its connection (CURL_POLL_REMOVE) but keeps it
 * for the next transfer, so the handle is only stopped ("parked") and started again
 * when curl watches the same socket anew; it is closed when curl closes the socket
 * (CURLOPT_CLOSESOCKETFUNCTION, close_socket), while the descriptor is still open —
 * libuv removes the descriptor from epoll on close, which must never hit a reused
 * number. Keep-alive transfers thus cost no handle init/close per message.
 */
struct sockctx {
    uv_poll_t poll;
    curl_socket_t fd;
    int parked; /* curl does not watch it now */
    hv__curl_t *c;
    sockctx_t *prev, *next;
};

struct xfer {
    hv__curl_t *c;
    void *owner; /* the http-send destination that started it */
    CURL *easy;
    struct curl_slist *hdrs;
    char *body;
    size_t len;
    int fd;          /* a large message: the body is read from its content file, or -1 */
    size_t resp_len; /* bytes of response body seen (not kept) */
    hv_channel_sent_cb done;
    void *token;
    xfer_t *prev, *next;
    char errbuf[CURL_ERROR_SIZE];
};

static void on_sock_closed(uv_handle_t *h) { hv_free(h->data); }

static void sock_close(sockctx_t *s) {
    hv__curl_t *c = s->c;
    if (s->prev) s->prev->next = s->next;
    else c->socks = s->next;
    if (s->next) s->next->prev = s->prev;
    uv_poll_stop(&s->poll);
    uv_close((uv_handle_t *)&s->poll, on_sock_closed);
}

static void xfer_free(xfer_t *x) {
    if (x == NULL) return;
    if (x->easy) curl_easy_cleanup(x->easy);
    curl_slist_free_all(x->hdrs);
    if (x->fd >= 0) close(x->fd);
    hv_free(x->body);
    hv_free(x);
}

static void xfer_unlink(xfer_t *x) {
    hv__curl_t *c = x->c;
    if (x->prev) x->prev->next = x->next;
    else c->xfers = x->next;
    if (x->next) x->next->prev = x->prev;
    x->prev = x->next = NULL;
}

/* The http-send destination's state (below); its spare easy handle is reused. */
typedef struct http_send http_send_t;
static void recycle(xfer_t *x);

static void check_done(hv__curl_t *c) {
    CURLMsg *m;
    int left;
    while ((m = curl_multi_info_read(c->multi, &left)) != NULL) {
        xfer_t *x = NULL;
        long code = 0;
        char detail[256];
        int result;
        if (m->msg != CURLMSG_DONE) continue;
        curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, (char **)&x);
        if (m->data.result != CURLE_OK) {
            snprintf(detail, sizeof(detail), "%s", x->errbuf[0] ? x->errbuf
                                                                 : curl_easy_strerror(m->data.result));
            result = HV_CHANNEL_RETRY;
        } else {
            curl_easy_getinfo(m->easy_handle, CURLINFO_RESPONSE_CODE, &code);
            snprintf(detail, sizeof(detail), "HTTP %ld", code);
            if (code >= 200 && code < 300) result = HV_CHANNEL_DELIVERED;
            else if (code == 408 || code == 429 || code >= 500) result = HV_CHANNEL_RETRY;
            else result = HV_CHANNEL_ERROR;
        }
        curl_multi_remove_handle(c->multi, x->easy);
        xfer_unlink(x);
        recycle(x); /* before done: done may close the destination */
        x->done(x->token, result, detail);
        xfer_free(x);
    }
}

static void on_poll(uv_poll_t *h, int status, int events) {
    sockctx_t *s = h->data;
    int flags = 0, running = 0;
    hv__curl_t *c = s->c;
    if (status < 0) flags = CURL_CSELECT_ERR;
    if (events & UV_READABLE) flags |= CURL_CSELECT_IN;
    if (events & UV_WRITABLE) flags |= CURL_CSELECT_OUT;
    curl_multi_socket_action(c->multi, s->fd, flags, &running);
    check_done(c);
}

static void on_timeout(uv_timer_t *t) {
    hv__curl_t *c = t->data;
    int running = 0;
    curl_multi_socket_action(c->multi, CURL_SOCKET_TIMEOUT, 0, &running);
    check_done(c);
}

static int timer_cb(CURLM *multi, long timeout_ms, void *userp) {
    hv__curl_t *c = userp;
    (void)multi;
    if (c->closing) return 0;
    if (timeout_ms < 0) uv_timer_stop(&c->timer);
    else uv_timer_start(&c->timer, on_timeout, (uint64_t)timeout_ms, 0);
    return 0;
}

static int socket_cb(CURL *easy, curl_socket_t fd, int what, void *userp, void *socketp) {
    hv__curl_t *c = userp;
    sockctx_t *s = socketp;
    int events = 0;
    (void)easy;
    if (what == CURL_POLL_REMOVE) {
        if (s != NULL) {
            curl_multi_assign(c->multi, fd, NULL);
            uv_poll_stop(&s->poll);
            s->parked = 1;
        }
        return 0;
    }
    if (s == NULL) { /* a kept-alive socket curl watches again: its parked handle */
        for (s = c->socks; s != NULL && !(s->parked && s->fd == fd); s = s->next) {
        }
        if (s != NULL) {
            s->parked = 0;
            curl_multi_assign(c->multi, fd, s);
        }
    }
    if (s == NULL) {
        s = hv_calloc(1, sizeof(*s));
        if (s == NULL) return -1;
        s->fd = fd;
        s->c = c;
        if (uv_poll_init_socket(c->loop, &s->poll, fd) != 0) {
            hv_free(s);
            return -1;
        }
        s->poll.data = s;
        s->next = c->socks;
        if (c->socks) c->socks->prev = s;
        c->socks = s;
        curl_multi_assign(c->multi, fd, s);
    }
    if (what & CURL_POLL_IN) events |= UV_READABLE;
    if (what & CURL_POLL_OUT) events |= UV_WRITABLE;
    uv_poll_start(&s->poll, events, on_poll);
    return 0;
}

/* CURLOPT_CLOSESOCKETFUNCTION: closes the socket's handle (parked or not) while the
 * descriptor is still open, then the descriptor. */
static int close_socket(void *ud, curl_socket_t fd) {
    hv__curl_t *c = ud;
    sockctx_t *s;
    for (s = c->socks; s != NULL && s->fd != fd; s = s->next) {
    }
    if (s != NULL) sock_close(s);
    return close(fd);
}

hv__curl_t *hv__curl_for(hv_engine_t *e) {
    hv__chans_t *rt = hv__chans_of(e);
    hv__curl_t *c;
    if (rt == NULL) return NULL;
    if (rt->curl != NULL) return rt->curl->closing ? NULL : rt->curl;
    c = hv_calloc(1, sizeof(*c));
    if (c == NULL) return NULL;
    c->loop = hv_engine_loop(e);
    c->multi = curl_multi_init();
    if (c->multi == NULL) {
        hv_free(c);
        return NULL;
    }
    curl_multi_setopt(c->multi, CURLMOPT_SOCKETFUNCTION, socket_cb);
    curl_multi_setopt(c->multi, CURLMOPT_SOCKETDATA, c);
    curl_multi_setopt(c->multi, CURLMOPT_TIMERFUNCTION, timer_cb);
    curl_multi_setopt(c->multi, CURLMOPT_TIMERDATA, c);
    uv_timer_init(c->loop, &c->timer);
    c->timer.data = c;
    rt->curl = c;
    return c;
}

static void on_closed_noop(uv_handle_t *h) { (void)h; }

void hv__curl_cancel_all(hv_engine_t *e) {
    hv__chans_t *rt = hv__chans_of(e);
    hv__curl_t *c = rt ? rt->curl : NULL;
    if (c == NULL || c->closing) return;
    c->closing = 1;
    while (c->xfers != NULL) {
        xfer_t *x = c->xfers;
        curl_multi_remove_handle(c->multi, x->easy);
        xfer_unlink(x);
        x->done(x->token, HV_CHANNEL_RETRY, "closed");
        xfer_free(x);
    }
    while (c->socks != NULL) sock_close(c->socks);
    uv_timer_stop(&c->timer);
    uv_close((uv_handle_t *)&c->timer, on_closed_noop);
}

void hv__curl_free(hv_engine_t *e) {
    hv__chans_t *rt = hv__chans_of(e);
    hv__curl_t *c = rt ? rt->curl : NULL;
    if (c == NULL) return;
    hv__curl_cancel_all(e);
    curl_multi_cleanup(c->multi);
    hv_free(c);
    rt->curl = NULL;
}

/* ------------------------------------------------------------------------- */
/* The http-send destination                                                 */
/* ------------------------------------------------------------------------- */

struct http_send {
    hv_engine_t *engine;
    /* A finished transfer's easy handle, reset, for the next one: curl_easy_init and
     * curl_easy_cleanup per message cost more than the rest of a small delivery. */
    CURL *spare;
    char *url;
    char *method;
    struct curl_slist *headers; /* configured ones */
    long timeout_ms;
    long connect_timeout_ms;
    int verify_tls;
    /* Plain http://: the pipelined client (channel_pipe.c), "window" requests in flight. */
    hv__pipe_t *pipe;
};

/* Default of "window": requests in flight on the one connection (measured: see
 * docs/performance.md, "Channels, session 5"). */
#define HTTP_SEND_WINDOW 16

static void recycle(xfer_t *x) {
    http_send_t *h = x->owner;
    if (h == NULL || h->spare != NULL || x->easy == NULL) return;
    curl_easy_reset(x->easy);
    h->spare = x->easy;
    x->easy = NULL;
}

static int starts_with(const char *s, const char *p) { return strncmp(s, p, strlen(p)) == 0; }

static int http_send_check(struct json_object *conf, hv_error_t *err) {
    json_object *v = NULL;
    json_object_object_foreach(conf, k, val) {
        if (strcmp(k, "url") == 0) {
            const char *u = json_object_get_string(val);
            if (!json_object_is_type(val, json_type_string) ||
                !(starts_with(u, "http://") || starts_with(u, "https://"))) {
                hv_error_set(err, HV_ECONFIG, "url", "\"url\" must be an http:// or https:// URL");
                return HV_ECONFIG;
            }
        } else if (strcmp(k, "method") == 0) {
            const char *m = json_object_get_string(val);
            if (!json_object_is_type(val, json_type_string) ||
                (strcmp(m, "POST") != 0 && strcmp(m, "PUT") != 0 && strcmp(m, "PATCH") != 0)) {
                hv_error_set(err, HV_ECONFIG, "method", "\"method\" is POST, PUT or PATCH");
                return HV_ECONFIG;
            }
        } else if (strcmp(k, "headers") == 0) {
            if (!json_object_is_type(val, json_type_object)) {
                hv_error_set(err, HV_ECONFIG, "headers",
                             "\"headers\" is an object of header names to string values");
                return HV_ECONFIG;
            }
            {
                json_object_object_foreach(val, hk, hvv) {
                    if (!json_object_is_type(hvv, json_type_string) || strchr(hk, ':') ||
                        strchr(json_object_get_string(hvv), '\n') ||
                        strchr(json_object_get_string(hvv), '\r')) {
                        char loc[300];
                        snprintf(loc, sizeof(loc), "headers/%s", hk);
                        hv_error_set(err, HV_ECONFIG, loc,
                                     "a header value is a string without line breaks");
                        return HV_ECONFIG;
                    }
                }
            }
        } else if (strcmp(k, "timeout_ms") == 0 || strcmp(k, "connect_timeout_ms") == 0) {
            if (!json_object_is_type(val, json_type_int) || json_object_get_int64(val) < 1 ||
                json_object_get_int64(val) > 3600000) {
                hv_error_set(err, HV_ECONFIG, k, "\"%s\" must be an integer from 1 to 3600000", k);
                return HV_ECONFIG;
            }
        } else if (strcmp(k, "window") == 0) {
            if (!json_object_is_type(val, json_type_int) || json_object_get_int64(val) < 1 ||
                json_object_get_int64(val) > 256) {
                hv_error_set(err, HV_ECONFIG, k, "\"window\" must be an integer from 1 to 256");
                return HV_ECONFIG;
            }
        } else if (strcmp(k, "verify_tls") == 0) {
            if (!json_object_is_type(val, json_type_boolean)) {
                hv_error_set(err, HV_ECONFIG, k, "\"verify_tls\" must be true or false");
                return HV_ECONFIG;
            }
        } else {
            hv_error_set(err, HV_ECONFIG, k,
                         "unknown key \"%s\" in an http-send destination (known: url, method, "
                         "headers, timeout_ms, connect_timeout_ms, verify_tls, window)",
                         k);
            return HV_ECONFIG;
        }
    }
    if (!json_object_object_get_ex(conf, "url", &v)) {
        hv_error_set(err, HV_ECONFIG, NULL, "an http-send destination needs \"url\"");
        return HV_ECONFIG;
    }
    return HV_OK;
}

static void http_send_close(void *state) {
    http_send_t *h = state;
    hv__chans_t *rt;
    if (h == NULL) return;
    /* Cancels this destination's transfers in flight: their callbacks run now. */
    rt = hv__chans_of(h->engine);
    if (rt != NULL && rt->curl != NULL) {
        hv__curl_t *c = rt->curl;
        xfer_t *x = c->xfers, *next;
        for (; x != NULL; x = next) {
            next = x->next;
            if (x->owner != h) continue;
            curl_multi_remove_handle(c->multi, x->easy);
            xfer_unlink(x);
            x->done(x->token, HV_CHANNEL_RETRY, "closed");
            xfer_free(x);
        }
    }
    hv__pipe_free(h->pipe); /* a batch in flight: its done runs now */
    if (h->spare != NULL) curl_easy_cleanup(h->spare);
    curl_slist_free_all(h->headers);
    hv_free(h->url);
    hv_free(h->method);
    hv_free(h);
}

static int http_send_open(hv_engine_t *e, const char *channel, struct json_object *conf,
                          void **state, hv_error_t *err) {
    http_send_t *h = hv_calloc(1, sizeof(*h));
    json_object *v = NULL;
    (void)channel;
    if (h == NULL) return HV_ENOMEM;
    h->engine = e;
    h->url = hv_strdup(hv_json_get_str(conf, "url"));
    h->method = hv_strdup(hv_json_get_str(conf, "method") ? hv_json_get_str(conf, "method") : "POST");
    h->timeout_ms = 30000;
    h->connect_timeout_ms = 10000;
    h->verify_tls = 1;
    if (json_object_object_get_ex(conf, "timeout_ms", &v)) h->timeout_ms = (long)json_object_get_int64(v);
    if (json_object_object_get_ex(conf, "connect_timeout_ms", &v))
        h->connect_timeout_ms = (long)json_object_get_int64(v);
    if (json_object_object_get_ex(conf, "verify_tls", &v)) h->verify_tls = json_object_get_boolean(v);
    if (json_object_object_get_ex(conf, "headers", &v)) {
        json_object_object_foreach(v, hk, hvv) {
            char line[1024];
            struct curl_slist *n;
            snprintf(line, sizeof(line), "%s: %s", hk, json_object_get_string(hvv));
            n = curl_slist_append(h->headers, line);
            if (n == NULL) break;
            h->headers = n;
        }
    }
    if (h->url == NULL || h->method == NULL) {
        http_send_close(h);
        hv_error_set(err, HV_ENOMEM, NULL, "out of memory");
        return HV_ENOMEM;
    }
    {
        const char *hs[64];
        size_t nh = 0;
        long window = HTTP_SEND_WINDOW;
        struct curl_slist *l;
        if (json_object_object_get_ex(conf, "window", &v)) window = (long)json_object_get_int64(v);
        for (l = h->headers; l != NULL && nh < 64; l = l->next) hs[nh++] = l->data;
        /* More than 64 configured headers: libcurl sends (the pipeline takes 64). */
        if (l == NULL)
            h->pipe = hv__pipe_for(hv_engine_loop(e), h->url, h->method, hs, nh, (size_t)window,
                                   h->timeout_ms, h->connect_timeout_ms);
    }
    *state = h;
    return HV_OK;
}

static size_t discard_body(char *p, size_t size, size_t n, void *ud) {
    xfer_t *x = ud;
    (void)p;
    x->resp_len += size * n;
    if (x->resp_len > RESPONSE_MAX * 16) return 0; /* a peer streaming forever: stop */
    return size * n;
}

/* A large message's body, read from its content file as curl sends (CURLOPT_READFUNCTION):
 * memory stays at curl's upload buffer whatever the size. The reads hit the page cache. */
static size_t read_body(char *p, size_t size, size_t n, void *ud) {
    xfer_t *x = ud;
    for (;;) {
        ssize_t r = read(x->fd, p, size * n);
        if (r >= 0) return (size_t)r;
        if (errno != EINTR) return CURL_READFUNC_ABORT;
    }
}

/* curl rewinds the body for a redirect or an authentication round (CURLOPT_SEEKFUNCTION). */
static int seek_body(void *ud, curl_off_t off, int origin) {
    xfer_t *x = ud;
    return lseek(x->fd, (off_t)off, origin) < 0 ? CURL_SEEKFUNC_FAIL : CURL_SEEKFUNC_OK;
}

static int http_send_send(void *state, const hv_channel_msg_t *m, hv_channel_sent_cb done,
                          void *token) {
    http_send_t *h = state;
    hv__curl_t *c = hv__curl_for(h->engine);
    xfer_t *x = NULL;
    struct curl_slist *l;
    char line[600];
    int rc = HV_ENOMEM;
    if (c == NULL) return HV_ECLOSED;
    x = hv_calloc(1, sizeof(*x));
    if (x == NULL) return HV_ENOMEM;
    x->c = c;
    x->owner = h;
    x->done = done;
    x->token = token;
    x->fd = -1;
    x->easy = h->spare != NULL ? h->spare : curl_easy_init();
    h->spare = NULL;
    if (x->easy == NULL) goto fail;
    if (m->content_file != NULL) {
        x->fd = open(m->content_file, O_RDONLY | O_CLOEXEC);
        if (x->fd < 0) {
            rc = HV_EIO;
            goto fail;
        }
    } else {
        x->body = hv_malloc(m->len ? m->len : 1);
        if (x->body == NULL) goto fail;
        if (m->len) memcpy(x->body, m->content, m->len);
    }
    x->len = m->len;
    for (l = h->headers; l != NULL; l = l->next) {
        struct curl_slist *n = curl_slist_append(x->hdrs, l->data);
        if (n == NULL) goto fail;
        x->hdrs = n;
    }
    snprintf(line, sizeof(line), "Content-Type: %s",
             m->content_type && m->content_type[0] ? m->content_type : "application/octet-stream");
    if ((l = curl_slist_append(x->hdrs, line)) == NULL) goto fail;
    x->hdrs = l;
    snprintf(line, sizeof(line), "X-Message-Id: %lld", (long long)m->id);
    if ((l = curl_slist_append(x->hdrs, line)) == NULL) goto fail;
    x->hdrs = l;
    if ((l = curl_slist_append(x->hdrs, "Expect:")) == NULL) goto fail;
    x->hdrs = l;
    curl_easy_setopt(x->easy, CURLOPT_URL, h->url);
    curl_easy_setopt(x->easy, CURLOPT_CUSTOMREQUEST, h->method);
    curl_easy_setopt(x->easy, CURLOPT_POST, 1L);
    if (x->fd >= 0) {
        curl_easy_setopt(x->easy, CURLOPT_READFUNCTION, read_body);
        curl_easy_setopt(x->easy, CURLOPT_READDATA, x);
        curl_easy_setopt(x->easy, CURLOPT_SEEKFUNCTION, seek_body);
        curl_easy_setopt(x->easy, CURLOPT_SEEKDATA, x);
        /* Fewer loop turns per large body; the buffer is per transfer (memory stays bounded). */
        curl_easy_setopt(x->easy, CURLOPT_UPLOAD_BUFFERSIZE, 512L * 1024);
    } else {
        curl_easy_setopt(x->easy, CURLOPT_POSTFIELDS, x->body);
    }
    curl_easy_setopt(x->easy, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)x->len);
    curl_easy_setopt(x->easy, CURLOPT_HTTPHEADER, x->hdrs);
    curl_easy_setopt(x->easy, CURLOPT_TIMEOUT_MS, h->timeout_ms);
    curl_easy_setopt(x->easy, CURLOPT_CONNECTTIMEOUT_MS, h->connect_timeout_ms);
    curl_easy_setopt(x->easy, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(x->easy, CURLOPT_PRIVATE, x);
    curl_easy_setopt(x->easy, CURLOPT_ERRORBUFFER, x->errbuf);
    curl_easy_setopt(x->easy, CURLOPT_WRITEFUNCTION, discard_body);
    curl_easy_setopt(x->easy, CURLOPT_WRITEDATA, x);
    curl_easy_setopt(x->easy, CURLOPT_SSL_VERIFYPEER, h->verify_tls ? 1L : 0L);
    curl_easy_setopt(x->easy, CURLOPT_SSL_VERIFYHOST, h->verify_tls ? 2L : 0L);
    curl_easy_setopt(x->easy, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(x->easy, CURLOPT_CLOSESOCKETFUNCTION, close_socket);
    curl_easy_setopt(x->easy, CURLOPT_CLOSESOCKETDATA, c);
    x->next = c->xfers;
    if (c->xfers) c->xfers->prev = x;
    c->xfers = x;
    if (curl_multi_add_handle(c->multi, x->easy) != CURLM_OK) {
        xfer_unlink(x);
        rc = HV_EIO;
        goto fail;
    }
    return HV_OK;
fail:
    xfer_free(x);
    return rc;
}

/* One message through libcurl, reported as a batch of one. */
typedef struct one_send {
    hv__batch_sent_cb done;
    void *token;
} one_send_t;

static void on_one_sent(void *token, int result, const char *detail) {
    one_send_t *o = token;
    hv__batch_sent_cb done = o->done;
    void *t = o->token;
    hv_free(o);
    done(t, 1, &result, &detail);
}

/*
 * The batch entry (hv__dest_batch_fn): the leading messages whose content is in memory
 * go through the pipeline, in order; a large message (content file: streamed by
 * libcurl) and every message of an https:// destination go one at a time through
 * libcurl.
 */
int hv__http_send_batch(void *state, const hv_channel_msg_t *msgs, size_t n,
                        hv__batch_sent_cb done, void *token) {
    http_send_t *h = state;
    one_send_t *o;
    size_t k = 0;
    int rc;
    if (n == 0) return HV_EINVAL;
    if (h->pipe != NULL)
        while (k < n && msgs[k].content_file == NULL) k++;
    if (k > 0) return hv__pipe_send(h->pipe, msgs, k, done, token);
    o = hv_malloc(sizeof(*o));
    if (o == NULL) return HV_ENOMEM;
    o->done = done;
    o->token = token;
    rc = http_send_send(h, &msgs[0], on_one_sent, o);
    if (rc != HV_OK) hv_free(o);
    return rc;
}

const hv_channel_dest_t hv__dest_http_send = {
    "http-send", http_send_check, http_send_open, http_send_send, http_send_close,
};

/* ------------------------------------------------------------------------- */
/* The http source: POST /channels/:id/in (route in channel_api.c)           */
/* ------------------------------------------------------------------------- */

static int http_source_check(struct json_object *conf, hv_error_t *err) {
    json_object_object_foreach(conf, k, v) {
        (void)v;
        hv_error_set(err, HV_ECONFIG, k,
                     "unknown key \"%s\" in an http source (it takes no options: messages are "
                     "POSTed to /channels/ID/in)",
                     k);
        return HV_ECONFIG;
    }
    return HV_OK;
}

const hv_channel_source_t hv__source_http = {"http", http_source_check, NULL, NULL};
