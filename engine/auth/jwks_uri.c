/*
 * jwks_uri.c — backend clients' JWKS fetched by URL (SMART Backend Services
 * §Registering a client: "jwks_uri"; RFC 7591 §2 jwks_uri), with libcurl.
 *
 * A backend client registered with a jwks_uri has its key set fetched when an
 * assertion arrives and kept in a per-process cache:
 *   - at most JWKS_CACHE_URLS URLs; the least recently fetched entry makes room;
 *   - an entry lives as long as the answer's Cache-Control max-age says (clamped to
 *     [0, 24 h]; no-store or no-cache: not reused), JWKS_DEFAULT_TTL without one;
 *   - an assertion whose kid the cached set lacks makes one refetch (a key rotation
 *     on the client's side), at most once per auth.jwks.min_refetch per URL so that
 *     forged kids cannot turn the server into a request amplifier;
 *   - the body is capped (auth.jwks.max_bytes), the transfer timed out
 *     (auth.jwks.timeout), redirects are not followed, and only https is fetched —
 *     http only for loopback hosts (development and tests);
 *   - a fetch that fails keeps serving the last good set until it expires.
 * Fetches run on the auth storage thread (the token endpoint's job), so a slow
 * JWKS host delays other token requests by at most the timeout.
 */
#include "config.h"
#include "engine/auth/auth_int.h"

#include <curl/curl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define JWKS_CACHE_URLS 32
#define JWKS_DEFAULT_TTL_MS (300 * 1000)
#define JWKS_MAX_TTL_MS (24LL * 3600 * 1000)

typedef struct entry {
    char *url;
    char *text;          /* the last good JWKS, or NULL */
    uint64_t expires_ms; /* text is fresh until then */
    uint64_t fetched_ms; /* the last fetch attempt */
} entry_t;

struct hv__jwks_cache {
    pthread_mutex_t mu;
    entry_t e[JWKS_CACHE_URLS];
    size_t max_bytes;
    long timeout_ms;
    uint64_t min_refetch_ms;
};

hv__jwks_cache_t *hv__jwks_cache_new(size_t max_bytes, int64_t timeout_ms, int64_t min_refetch_ms) {
    hv__jwks_cache_t *c = hv_calloc(1, sizeof(*c));
    if (c == NULL) return NULL;
    pthread_mutex_init(&c->mu, NULL);
    curl_global_init(CURL_GLOBAL_DEFAULT); /* reference-counted; here, before any storage thread fetches */
    c->max_bytes = max_bytes;
    c->timeout_ms = (long)timeout_ms;
    c->min_refetch_ms = (uint64_t)min_refetch_ms;
    return c;
}

void hv__jwks_cache_free(hv__jwks_cache_t *c) {
    size_t i;
    if (c == NULL) return;
    for (i = 0; i < JWKS_CACHE_URLS; i++) {
        hv_free(c->e[i].url);
        hv_free(c->e[i].text);
    }
    pthread_mutex_destroy(&c->mu);
    hv_free(c);
    curl_global_cleanup();
}

int hv__jwks_uri_valid(const char *url) {
    static const char *const loopback[] = {"http://127.0.0.1:", "http://127.0.0.1/", "http://localhost:",
                                           "http://localhost/", "http://[::1]:", "http://[::1]/"};
    size_t i;
    if (url == NULL || strlen(url) >= 1024 || strpbrk(url, " \r\n\"<>#") != NULL) return 0;
    if (strncmp(url, "https://", 8) == 0 && url[8] != '\0' && url[8] != '/') return 1;
    for (i = 0; i < HV_ARRAY_LEN(loopback); i++)
        if (strncmp(url, loopback[i], strlen(loopback[i])) == 0) return 1;
    return 0;
}

typedef struct fetch {
    hv_buf_t body;
    int64_t max_age_ms; /* -1: none given */
    int no_store;
} fetch_t;

static size_t on_body(char *p, size_t size, size_t n, void *ud) {
    fetch_t *f = ud;
    return hv_buf_append(&f->body, p, size * n) == HV_OK ? size * n : 0; /* 0 aborts: over the cap */
}

/* RFC 9111 §5.2.2: Cache-Control max-age, no-store, no-cache. */
static size_t on_header(char *p, size_t size, size_t n, void *ud) {
    fetch_t *f = ud;
    size_t len = size * n;
    char line[512];
    const char *v;
    if (len < 15 || strncasecmp(p, "cache-control:", 14) != 0) return len;
    snprintf(line, sizeof(line), "%.*s", (int)(len < sizeof(line) ? len : sizeof(line) - 1), p);
    for (char *q = line; *q; q++)
        if (*q >= 'A' && *q <= 'Z') *q = (char)(*q - 'A' + 'a');
    if (strstr(line, "no-store") != NULL || strstr(line, "no-cache") != NULL) f->no_store = 1;
    if ((v = strstr(line, "max-age=")) != NULL) f->max_age_ms = strtoll(v + 8, NULL, 10) * 1000;
    return len;
}

/* Fetches url; on success *text (owned) and *ttl_ms. */
static int fetch_url(const hv__jwks_cache_t *c, const char *url, char **text, int64_t *ttl_ms, hv_error_t *err) {
    CURL *h = curl_easy_init();
    fetch_t f;
    long status = 0;
    CURLcode cc;
    int rc = HV_EIO;
    memset(&f, 0, sizeof(f));
    f.max_age_ms = -1;
    hv_buf_init(&f.body, c->max_bytes);
    if (h == NULL) {
        hv_buf_release(&f.body);
        return HV_ENOMEM;
    }
    curl_easy_setopt(h, CURLOPT_URL, url);
#if LIBCURL_VERSION_NUM >= 0x075500
    curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
#else
    curl_easy_setopt(h, CURLOPT_PROTOCOLS, (long)(CURLPROTO_HTTP | CURLPROTO_HTTPS));
#endif
    curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, c->timeout_ms);
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, c->timeout_ms);
    curl_easy_setopt(h, CURLOPT_MAXFILESIZE, (long)c->max_bytes);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, &f);
    curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(h, CURLOPT_HEADERDATA, &f);
    curl_easy_setopt(h, CURLOPT_USERAGENT, "holovitals-auth/jwks");
    cc = curl_easy_perform(h);
    if (cc == CURLE_OK) curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
    curl_easy_cleanup(h);
    if (cc != CURLE_OK || status != 200 || f.body.len == 0) {
        hv_error_set(err, HV_EIO, "jwks_uri", "%s",
                     cc != CURLE_OK ? curl_easy_strerror(cc) : "the JWKS URL did not answer 200");
        goto out;
    }
    *text = hv_strndup(f.body.data, f.body.len);
    if (*text == NULL) {
        rc = HV_ENOMEM;
        goto out;
    }
    *ttl_ms = f.no_store ? 0 : f.max_age_ms < 0 ? JWKS_DEFAULT_TTL_MS : f.max_age_ms > JWKS_MAX_TTL_MS ? JWKS_MAX_TTL_MS
                                                                                                      : f.max_age_ms;
    rc = HV_OK;
out:
    hv_buf_release(&f.body);
    return rc;
}

int hv__jwks_cache_get(hv__jwks_cache_t *c, const char *url, int refresh, char **out, hv_error_t *err) {
    entry_t *e = NULL;
    uint64_t now = hv_now_ms();
    char *text = NULL;
    int64_t ttl = 0;
    size_t i;
    int rc;
    if (!hv__jwks_uri_valid(url)) {
        hv_error_set(err, HV_EINVAL, "jwks_uri", "%s", "not an https URL");
        return HV_EINVAL;
    }
    pthread_mutex_lock(&c->mu);
    for (i = 0; i < JWKS_CACHE_URLS && e == NULL; i++)
        if (c->e[i].url != NULL && strcmp(c->e[i].url, url) == 0) e = &c->e[i];
    if (e != NULL) {
        int fresh = now < e->expires_ms, recent = now - e->fetched_ms < c->min_refetch_ms;
        if (e->text != NULL && ((fresh && !refresh) || recent)) {
            /* fresh (and no refetch asked), or fetched too recently to ask the host again */
            *out = hv_strdup(e->text);
            pthread_mutex_unlock(&c->mu);
            return *out != NULL ? HV_OK : HV_ENOMEM;
        }
        if (e->text == NULL && recent) {
            pthread_mutex_unlock(&c->mu);
            hv_error_set(err, HV_EIO, "jwks_uri", "%s", "the JWKS URL failed moments ago");
            return HV_EIO;
        }
    }
    pthread_mutex_unlock(&c->mu);
    rc = fetch_url(c, url, &text, &ttl, err);
    pthread_mutex_lock(&c->mu);
    e = NULL;
    for (i = 0; i < JWKS_CACHE_URLS && e == NULL; i++)
        if (c->e[i].url != NULL && strcmp(c->e[i].url, url) == 0) e = &c->e[i];
    if (e == NULL) {
        size_t oldest = 0;
        for (i = 0; i < JWKS_CACHE_URLS; i++) {
            if (c->e[i].url == NULL) {
                oldest = i;
                break;
            }
            if (c->e[i].fetched_ms < c->e[oldest].fetched_ms) oldest = i;
        }
        e = &c->e[oldest];
        hv_free(e->url);
        hv_free(e->text);
        memset(e, 0, sizeof(*e));
        e->url = hv_strdup(url);
    }
    e->fetched_ms = now;
    if (rc == HV_OK) {
        hv_free(e->text);
        e->text = text;
        e->expires_ms = now + (uint64_t)ttl;
        text = NULL;
    }
    if (e->text != NULL && (rc == HV_OK || now < e->expires_ms)) {
        *out = hv_strdup(e->text);
        rc = *out != NULL ? HV_OK : HV_ENOMEM;
    }
    pthread_mutex_unlock(&c->mu);
    hv_free(text);
    return rc;
}
