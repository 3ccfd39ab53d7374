/*
 * http.c — the HTTP layer of the FHIR client: libcurl's multi_socket API driven
 * by the engine's libuv loop (as curl's example multi-uv.c and
 * engine/channel_http.c do: a uv_poll_t per socket, one uv_timer_t for curl's
 * timeouts), so no call ever blocks the loop.
 *
 * A call is one request with its policy:
 *  - retries (when asked) on transport failures, 408, 429 and 5xx, up to
 *    ehr.max_attempts, waiting Retry-After (RFC 9110 §10.2.3; capped by
 *    ehr.max_retry_after) or else ehr.retry_base * 2^attempt with ±25 % jitter
 *    (capped at 60 s);
 *  - a per-connection rate limit: starts are spaced rate_interval_ms apart
 *    through the connection's next free slot, which a retryable answer's
 *    Retry-After also moves (the connection's next request waits for it, even
 *    one made after a call that is not retried itself);
 *  - ehr.timeout per attempt, TLS verification on unless the connection turns
 *    it off, redirects not followed (a FHIR server that redirects is refused
 *    rather than leaking the token to another host);
 *  - a body cap (ehr.max_page_bytes in memory, ehr.max_download_bytes to a file).
 * Bodies written to a file (bulk NDJSON) go through stdio buffers on the loop
 * thread: sequential appends to a local file, not round trips.
 */
#include "config.h"
#include "adapters/ehr/ehr_int.h"

#include <curl/curl.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

typedef struct sock {
    uv_poll_t poll;
    curl_socket_t fd;
    hv__ehr_http_t *h;
    struct sock *prev, *next;
} sock_t;

struct hv__ehr_http {
    hv__ehr_t *m;
    CURLM *multi;
    uv_timer_t timer;
    int closing;
    hv__ehr_call_t *calls;
    sock_t *socks;
};

struct hv__ehr_call {
    hv__ehr_http_t *h;
    uv_timer_t wait; /* backoff and rate-limit waits */
    CURL *easy;
    struct curl_slist *hdrs;
    char *method, *url, *body, *sink_path, *basic_user, *basic_pass;
    size_t body_len;
    FILE *sink;
    uint64_t sink_bytes;
    int retry;
    int verify;
    uint64_t *rate_slot;
    uint64_t rate_interval_ms;
    int attempt;
    int slot_reserved;
    int in_flight;
    int done;
    hv__ehr_resp_t resp;
    hv__ehr_call_cb cb;
    void *ud;
    char errbuf[CURL_ERROR_SIZE];
    hv__ehr_call_t *prev, *next;
};

static void call_start(hv__ehr_call_t *c);

static void on_sock_closed(uv_handle_t *hd) { hv_free(hd->data); }

static void sock_close(sock_t *s) {
    hv__ehr_http_t *h = s->h;
    if (s->prev) s->prev->next = s->next;
    else h->socks = s->next;
    if (s->next) s->next->prev = s->prev;
    uv_poll_stop(&s->poll);
    uv_close((uv_handle_t *)&s->poll, on_sock_closed);
}

static void on_call_closed(uv_handle_t *hd) {
    hv__ehr_call_t *c = hd->data;
    if (c->easy) curl_easy_cleanup(c->easy);
    curl_slist_free_all(c->hdrs);
    hv_free(c->method);
    hv_free(c->url);
    hv_free(c->body);
    hv_free(c->sink_path);
    hv_free(c->basic_user);
    hv_free(c->basic_pass);
    hv_buf_release(&c->resp.body);
    hv_free(c);
}

/* Ends a call: unlinks it, runs its callback once, releases it. */
static void call_finish(hv__ehr_call_t *c) {
    hv__ehr_http_t *h = c->h;
    if (c->done) return;
    c->done = 1;
    if (c->in_flight) {
        curl_multi_remove_handle(h->multi, c->easy);
        c->in_flight = 0;
    }
    if (c->sink) {
        if (fclose(c->sink) != 0 && c->resp.status == HV_OK) {
            c->resp.status = HV_EIO;
            snprintf(c->resp.error, sizeof(c->resp.error), "writing %s: %s", c->sink_path, strerror(errno));
        }
        c->sink = NULL;
    }
    if (c->prev) c->prev->next = c->next;
    else h->calls = c->next;
    if (c->next) c->next->prev = c->prev;
    c->resp.attempts = c->attempt;
    c->cb(c->ud, &c->resp);
    uv_timer_stop(&c->wait);
    uv_close((uv_handle_t *)&c->wait, on_call_closed);
}

static int retryable(const hv__ehr_resp_t *r) {
    if (r->status != HV_OK) return r->status != HV_ETOOBIG && r->status != HV_ECLOSED;
    return r->code == 408 || r->code == 429 || r->code >= 500;
}

static void on_wait(uv_timer_t *t) { call_start(t->data); }

/* A retryable answer's Retry-After holds back the connection's next request, whichever
 * request it answered: a prefetch (sync.c) that is not retried itself, and whose page is then
 * asked for again the ordinary way, must not let that request go before the server said. */
static void hold_back(hv__ehr_call_t *c) {
    int64_t ra;
    uint64_t until;
    if (c->rate_slot == NULL || !c->resp.retry_after[0] || !retryable(&c->resp)) return;
    if ((ra = hv_ehr_retry_after_ms(c->resp.retry_after, hv_now_ms())) <= 0) return;
    if ((uint64_t)ra > c->h->m->max_retry_after_ms) ra = (int64_t)c->h->m->max_retry_after_ms;
    until = hv_mono_ns() / 1000000 + (uint64_t)ra;
    if (*c->rate_slot < until) *c->rate_slot = until;
}

static void call_retry_or_finish(hv__ehr_call_t *c) {
    hv__ehr_t *m = c->h->m;
    uint64_t delay;
    hold_back(c);
    if (!c->retry || !retryable(&c->resp) || c->attempt >= m->max_attempts || c->h->closing || m->stopping) {
        if (c->resp.status == HV_OK && c->resp.code >= 400 && c->attempt > 1)
            snprintf(c->resp.error, sizeof(c->resp.error), "HTTP %ld after %d attempts", c->resp.code,
                     c->attempt);
        call_finish(c);
        return;
    }
    {
        int64_t ra = c->resp.retry_after[0] ? hv_ehr_retry_after_ms(c->resp.retry_after, hv_now_ms()) : -1;
        if (ra >= 0) {
            delay = (uint64_t)ra;
            if (delay > m->max_retry_after_ms) delay = m->max_retry_after_ms;
        } else {
            unsigned jitter;
            delay = m->retry_base_ms << (c->attempt - 1 < 16 ? c->attempt - 1 : 16);
            if (delay > 60000) delay = 60000;
            hv_random_fast(&jitter, sizeof(jitter));
            delay = delay * 3 / 4 + (delay / 2 ? jitter % (delay / 2 + 1) : 0);
        }
    }
    {
        hv_logrec_t *lr = hv_log_begin(HV_LOG_INFO, "ehr.http.retry");
        if (lr) {
            hv_log_int(lr, "code", c->resp.code);
            hv_log_int(lr, "attempt", c->attempt);
            hv_log_int(lr, "delay_ms", (int64_t)delay);
            hv_log_end(lr);
        }
    }
    uv_timer_start(&c->wait, on_wait, delay, 0);
}

static void check_done(hv__ehr_http_t *h) {
    CURLMsg *msg;
    int left;
    while ((msg = curl_multi_info_read(h->multi, &left)) != NULL) {
        hv__ehr_call_t *c = NULL;
        if (msg->msg != CURLMSG_DONE) continue;
        curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&c);
        curl_multi_remove_handle(h->multi, c->easy);
        c->in_flight = 0;
        if (msg->data.result == CURLE_OK) {
            curl_easy_getinfo(c->easy, CURLINFO_RESPONSE_CODE, &c->resp.code);
            c->resp.status = HV_OK;
        } else if (c->resp.status == HV_OK) {
            c->resp.status = msg->data.result == CURLE_OPERATION_TIMEDOUT ? HV_ETIMEDOUT : HV_EIO;
            snprintf(c->resp.error, sizeof(c->resp.error), "%s",
                     c->errbuf[0] ? c->errbuf : curl_easy_strerror(msg->data.result));
        }
        if (c->sink != NULL && c->resp.status == HV_OK && fflush(c->sink) != 0) {
            c->resp.status = HV_EIO;
            snprintf(c->resp.error, sizeof(c->resp.error), "writing the download: %s", strerror(errno));
        }
        call_retry_or_finish(c);
    }
}

static void on_poll(uv_poll_t *p, int status, int events) {
    sock_t *s = p->data;
    int flags = 0, running = 0;
    if (status < 0) flags = CURL_CSELECT_ERR;
    if (events & UV_READABLE) flags |= CURL_CSELECT_IN;
    if (events & UV_WRITABLE) flags |= CURL_CSELECT_OUT;
    curl_multi_socket_action(s->h->multi, s->fd, flags, &running);
    check_done(s->h);
}

static void on_timeout(uv_timer_t *t) {
    hv__ehr_http_t *h = t->data;
    int running = 0;
    curl_multi_socket_action(h->multi, CURL_SOCKET_TIMEOUT, 0, &running);
    check_done(h);
}

static int timer_cb(CURLM *multi, long timeout_ms, void *userp) {
    hv__ehr_http_t *h = userp;
    (void)multi;
    if (h->closing) return 0;
    if (timeout_ms < 0) uv_timer_stop(&h->timer);
    else uv_timer_start(&h->timer, on_timeout, (uint64_t)timeout_ms, 0);
    return 0;
}

static int socket_cb(CURL *easy, curl_socket_t fd, int what, void *userp, void *socketp) {
    hv__ehr_http_t *h = userp;
    sock_t *s = socketp;
    int events = 0;
    (void)easy;
    if (what == CURL_POLL_REMOVE) {
        if (s != NULL) {
            curl_multi_assign(h->multi, fd, NULL);
            sock_close(s);
        }
        return 0;
    }
    if (s == NULL) {
        s = hv_calloc(1, sizeof(*s));
        if (s == NULL) return -1;
        s->fd = fd;
        s->h = h;
        if (uv_poll_init_socket(hv_engine_loop(h->m->e), &s->poll, fd) != 0) {
            hv_free(s);
            return -1;
        }
        s->poll.data = s;
        s->next = h->socks;
        if (h->socks) h->socks->prev = s;
        h->socks = s;
        curl_multi_assign(h->multi, fd, s);
    }
    if (what & CURL_POLL_IN) events |= UV_READABLE;
    if (what & CURL_POLL_OUT) events |= UV_WRITABLE;
    uv_poll_start(&s->poll, events, on_poll);
    return 0;
}

int hv__ehr_http_new(hv__ehr_t *m, hv__ehr_http_t **out) {
    hv__ehr_http_t *h = hv_calloc(1, sizeof(*h));
    if (h == NULL) return HV_ENOMEM;
    h->m = m;
    h->multi = curl_multi_init();
    if (h->multi == NULL) {
        hv_free(h);
        return HV_ENOMEM;
    }
    curl_multi_setopt(h->multi, CURLMOPT_SOCKETFUNCTION, socket_cb);
    curl_multi_setopt(h->multi, CURLMOPT_SOCKETDATA, h);
    curl_multi_setopt(h->multi, CURLMOPT_TIMERFUNCTION, timer_cb);
    curl_multi_setopt(h->multi, CURLMOPT_TIMERDATA, h);
    curl_multi_setopt(h->multi, CURLMOPT_MAX_HOST_CONNECTIONS, 8L);
    uv_timer_init(hv_engine_loop(m->e), &h->timer);
    h->timer.data = h;
    *out = h;
    return HV_OK;
}

static void on_http_closed(uv_handle_t *hd) {
    hv__ehr_http_t *h = hd->data;
    curl_multi_cleanup(h->multi);
    hv_free(h);
}

void hv__ehr_http_free(hv__ehr_http_t *h) {
    if (h == NULL) return;
    h->closing = 1;
    while (h->calls != NULL) {
        hv__ehr_call_t *c = h->calls;
        c->resp.status = HV_ECLOSED;
        snprintf(c->resp.error, sizeof(c->resp.error), "the engine is stopping");
        call_finish(c);
    }
    while (h->socks != NULL) sock_close(h->socks);
    uv_timer_stop(&h->timer);
    uv_close((uv_handle_t *)&h->timer, on_http_closed);
}

static size_t on_body(char *p, size_t size, size_t n, void *ud) {
    hv__ehr_call_t *c = ud;
    size_t len = size * n;
    if (c->sink != NULL) {
        c->sink_bytes += len;
        if (c->sink_bytes > c->h->m->max_download_bytes) {
            c->resp.status = HV_ETOOBIG;
            snprintf(c->resp.error, sizeof(c->resp.error), "the download is larger than ehr.max_download_bytes");
            return 0;
        }
        if (fwrite(p, 1, len, c->sink) != len) {
            c->resp.status = HV_EIO;
            snprintf(c->resp.error, sizeof(c->resp.error), "writing the download: %s", strerror(errno));
            return 0;
        }
        return len;
    }
    if (hv_buf_append(&c->resp.body, p, len) != HV_OK) {
        c->resp.status = HV_ETOOBIG;
        snprintf(c->resp.error, sizeof(c->resp.error), "the answer is larger than ehr.max_page_bytes");
        return 0;
    }
    return len;
}

static void header_value(const char *line, size_t n, size_t name_len, char *out, size_t outlen) {
    size_t i = name_len;
    while (i < n && (line[i] == ' ' || line[i] == '\t')) i++;
    while (n > i && (line[n - 1] == '\r' || line[n - 1] == '\n' || line[n - 1] == ' ')) n--;
    if (n - i >= outlen) n = i + outlen - 1;
    memcpy(out, line + i, n - i);
    out[n - i] = '\0';
}

static size_t on_header(char *p, size_t size, size_t n, void *ud) {
    hv__ehr_call_t *c = ud;
    size_t len = size * n;
    static const struct {
        const char *name;
        size_t off, size;
    } keep[] = {
        {"retry-after:", offsetof(hv__ehr_resp_t, retry_after), sizeof(((hv__ehr_resp_t *)0)->retry_after)},
        {"content-location:", offsetof(hv__ehr_resp_t, content_location),
         sizeof(((hv__ehr_resp_t *)0)->content_location)},
        {"location:", offsetof(hv__ehr_resp_t, location), sizeof(((hv__ehr_resp_t *)0)->location)},
        {"content-type:", offsetof(hv__ehr_resp_t, content_type), sizeof(((hv__ehr_resp_t *)0)->content_type)},
        {"etag:", offsetof(hv__ehr_resp_t, etag), sizeof(((hv__ehr_resp_t *)0)->etag)},
    };
    size_t i;
    for (i = 0; i < HV_ARRAY_LEN(keep); i++) {
        size_t kn = strlen(keep[i].name);
        if (len > kn && strncasecmp(p, keep[i].name, kn) == 0)
            header_value(p, len, kn, (char *)&c->resp + keep[i].off, keep[i].size);
    }
    return len;
}

static int add_header(hv__ehr_call_t *c, const char *fmt, const char *v) {
    char line[4096];
    struct curl_slist *l;
    snprintf(line, sizeof(line), fmt, v);
    l = curl_slist_append(c->hdrs, line);
    if (l == NULL) return HV_ENOMEM;
    c->hdrs = l;
    return HV_OK;
}

static void call_start(hv__ehr_call_t *c) {
    hv__ehr_http_t *h = c->h;
    hv__ehr_t *m = h->m;
    int running = 0;
    if (h->closing) {
        c->resp.status = HV_ECLOSED;
        call_finish(c);
        return;
    }
    /* The rate limit, and a Retry-After the connection was told (hold_back): wait for the
     * connection's next free slot. */
    if (c->rate_slot != NULL && !c->slot_reserved &&
        (c->rate_interval_ms > 0 || *c->rate_slot > hv_mono_ns() / 1000000)) {
        uint64_t now = hv_mono_ns() / 1000000, start = *c->rate_slot > now ? *c->rate_slot : now;
        *c->rate_slot = start + c->rate_interval_ms;
        if (start > now) {
            c->slot_reserved = 1;
            uv_timer_start(&c->wait, on_wait, start - now, 0);
            return;
        }
    }
    c->slot_reserved = 0;
    c->attempt++;
    hv_buf_reset(&c->resp.body);
    c->resp.status = HV_OK;
    c->resp.code = 0;
    c->resp.retry_after[0] = c->resp.content_location[0] = c->resp.location[0] = '\0';
    c->resp.content_type[0] = c->resp.etag[0] = c->resp.error[0] = c->errbuf[0] = '\0';
    if (c->sink_path != NULL) {
        if (c->sink) fclose(c->sink);
        c->sink_bytes = 0;
        c->sink = fopen(c->sink_path, "wb");
        if (c->sink == NULL) {
            c->resp.status = HV_EIO;
            snprintf(c->resp.error, sizeof(c->resp.error), "cannot create %s: %s", c->sink_path, strerror(errno));
            call_finish(c);
            return;
        }
    }
    if (c->easy == NULL) {
        c->easy = curl_easy_init();
        if (c->easy == NULL) goto fail;
    } else {
        curl_easy_reset(c->easy);
    }
    curl_easy_setopt(c->easy, CURLOPT_URL, c->url);
    curl_easy_setopt(c->easy, CURLOPT_PRIVATE, c);
    curl_easy_setopt(c->easy, CURLOPT_HTTPHEADER, c->hdrs);
    curl_easy_setopt(c->easy, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c->easy, CURLOPT_WRITEDATA, c);
    curl_easy_setopt(c->easy, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(c->easy, CURLOPT_HEADERDATA, c);
    curl_easy_setopt(c->easy, CURLOPT_ERRORBUFFER, c->errbuf);
    curl_easy_setopt(c->easy, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c->easy, CURLOPT_TIMEOUT_MS, (long)m->timeout_ms);
    curl_easy_setopt(c->easy, CURLOPT_CONNECTTIMEOUT_MS, (long)(m->timeout_ms < 10000 ? m->timeout_ms : 10000));
    curl_easy_setopt(c->easy, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(c->easy, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(c->easy, CURLOPT_ACCEPT_ENCODING, "");
    curl_easy_setopt(c->easy, CURLOPT_SSL_VERIFYPEER, c->verify ? 1L : 0L);
    curl_easy_setopt(c->easy, CURLOPT_SSL_VERIFYHOST, c->verify ? 2L : 0L);
    if (c->basic_user != NULL) {
        curl_easy_setopt(c->easy, CURLOPT_HTTPAUTH, (long)CURLAUTH_BASIC);
        curl_easy_setopt(c->easy, CURLOPT_USERNAME, c->basic_user);
        curl_easy_setopt(c->easy, CURLOPT_PASSWORD, c->basic_pass ? c->basic_pass : "");
    }
    if (strcmp(c->method, "GET") != 0) {
        curl_easy_setopt(c->easy, CURLOPT_CUSTOMREQUEST, c->method);
        if (c->body != NULL) {
            curl_easy_setopt(c->easy, CURLOPT_POSTFIELDS, c->body);
            curl_easy_setopt(c->easy, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)c->body_len);
        }
    }
    if (curl_multi_add_handle(h->multi, c->easy) != CURLM_OK) goto fail;
    c->in_flight = 1;
    curl_multi_socket_action(h->multi, CURL_SOCKET_TIMEOUT, 0, &running);
    return;
fail:
    c->resp.status = HV_ENOMEM;
    snprintf(c->resp.error, sizeof(c->resp.error), "cannot start the request");
    call_finish(c);
}

int hv__ehr_call(hv__ehr_http_t *h, const hv__ehr_req_t *r, hv__ehr_call_cb cb, void *ud) {
    hv__ehr_call_t *c;
    int rc = HV_ENOMEM;
    if (h == NULL || h->closing) return HV_ECLOSED;
    c = hv_calloc(1, sizeof(*c));
    if (c == NULL) return HV_ENOMEM;
    c->h = h;
    c->cb = cb;
    c->ud = ud;
    c->retry = r->retry;
    c->verify = !r->no_verify_tls;
    c->rate_slot = r->rate_slot;
    c->rate_interval_ms = r->rate_interval_ms;
    hv_buf_init(&c->resp.body, (size_t)h->m->max_page_bytes);
    c->method = hv_strdup(r->method ? r->method : "GET");
    c->url = hv_strdup(r->url);
    if (c->method == NULL || c->url == NULL) goto fail;
    if (r->body != NULL) {
        c->body = hv_malloc(r->body_len + 1);
        if (c->body == NULL) goto fail;
        memcpy(c->body, r->body, r->body_len);
        c->body[r->body_len] = '\0';
        c->body_len = r->body_len;
    }
    if (r->sink_path != NULL && (c->sink_path = hv_strdup(r->sink_path)) == NULL) goto fail;
    if (r->basic_user != NULL) {
        c->basic_user = hv_strdup(r->basic_user);
        c->basic_pass = hv_strdup(r->basic_pass ? r->basic_pass : "");
        if (c->basic_user == NULL || c->basic_pass == NULL) goto fail;
    }
    if (add_header(c, "Accept: %s", r->accept ? r->accept : "application/fhir+json") != HV_OK) goto fail;
    if (r->content_type && add_header(c, "Content-Type: %s", r->content_type) != HV_OK) goto fail;
    if (r->bearer && add_header(c, "Authorization: Bearer %s", r->bearer) != HV_OK) goto fail;
    if (r->prefer && add_header(c, "Prefer: %s", r->prefer) != HV_OK) goto fail;
    if (add_header(c, "Expect:%s", "") != HV_OK) goto fail;
    if (uv_timer_init(hv_engine_loop(h->m->e), &c->wait) != 0) goto fail;
    c->wait.data = c;
    c->next = h->calls;
    if (h->calls) h->calls->prev = c;
    h->calls = c;
    /* Started from the timer so that cb never runs inside this function. */
    uv_timer_start(&c->wait, on_wait, r->delay_ms, 0);
    return HV_OK;
fail:
    curl_slist_free_all(c->hdrs);
    hv_free(c->method);
    hv_free(c->url);
    hv_free(c->body);
    hv_free(c->sink_path);
    hv_free(c->basic_user);
    hv_free(c->basic_pass);
    hv_buf_release(&c->resp.body);
    hv_free(c);
    return rc;
}
