/*
 * module.c — the auth module: settings, lifecycle, and small helpers shared by
 * the endpoint files.
 *
 * Start-up opens the module's own tables (auth.db, or schema "auth" on
 * PostgreSQL), loads or creates the signing keys and the revocations still in
 * force, then hands the connection to a storage thread: from then on every
 * database access is a storage job, so logins (scrypt) and token grants never
 * block the loop. A timer re-reads the revocation table every 2 seconds so that
 * logouts, refresh-token reuse and `holovitals user disable` made by other
 * processes (or the CLI) take effect here too.
 *
 * With auth.enabled off (--auth off, HOLOVITALS_AUTH=off) the guard only does
 * CORS; start logs a warning and /health reports "warn" for the check "auth".
 */
#include "config.h"
#include "engine/auth/auth_int.h"

#include <json-c/json.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const hv_setting_t hv__auth_settings[] = {
    {"auth.enabled", "auth", HV_SET_BOOL, "on", NULL,
     "authentication and authorization (off: everything is allowed; development only)"},
    {"auth.issuer", NULL, HV_SET_STRING, "", NULL,
     "the public base URL of this server, used as token issuer and in the SMART document "
     "(default: from http.listen)"},
    {"auth.audience", NULL, HV_SET_STRING, "", NULL,
     "the FHIR base URL tokens are for (aud); default: issuer + /fhir"},
    {"auth.alg", NULL, HV_SET_ENUM, "ES256", "ES256|RS256", "signature algorithm of the tokens we issue"},
    {"auth.key_passphrase", NULL, HV_SET_STRING, "", NULL,
     "encrypts the stored private signing keys (AES-256); empty stores them unencrypted"},
    {"auth.access_ttl", NULL, HV_SET_DURATION, "5m", NULL, "lifetime of access tokens"},
    {"auth.session_ttl", NULL, HV_SET_DURATION, "12h", NULL,
     "lifetime of a login session and of online_access refresh tokens"},
    {"auth.offline_ttl", NULL, HV_SET_DURATION, "720h", NULL, "lifetime of offline_access refresh tokens"},
    {"auth.code_ttl", NULL, HV_SET_DURATION, "60s", NULL, "lifetime of an authorization code"},
    {"auth.launch_ttl", NULL, HV_SET_DURATION, "5m", NULL, "lifetime of an EHR launch context (POST /auth/launch)"},
    {"auth.leeway", NULL, HV_SET_DURATION, "30s", NULL, "clock skew allowed on exp, nbf and iat"},
    {"auth.lockout.threshold", NULL, HV_SET_INT, "5", NULL,
     "failed logins in a row that lock an account (0: never)"},
    {"auth.lockout.duration", NULL, HV_SET_DURATION, "1m", NULL,
     "first lock period; it doubles with each further failure, up to 24h"},
    {"auth.password.scrypt_n", NULL, HV_SET_INT, "32768", NULL,
     "scrypt cost N (a power of two) for new password hashes; r=8, p=1"},
    {"auth.rate.ip_per_sec", NULL, HV_SET_INT, "100", NULL, "requests per second per client IP (0: no limit)"},
    {"auth.rate.ip_burst", NULL, HV_SET_INT, "200", NULL, "burst per client IP"},
    {"auth.rate.client_per_sec", NULL, HV_SET_INT, "100", NULL,
     "requests per second per authenticated client or user (0: no limit)"},
    {"auth.rate.client_burst", NULL, HV_SET_INT, "200", NULL, "burst per client or user"},
    {"auth.rate.login_per_min", NULL, HV_SET_INT, "20", NULL,
     "password and token-endpoint attempts per minute per IP (0: no limit)"},
    {"auth.rate.login_burst", NULL, HV_SET_INT, "10", NULL, "burst of login attempts per IP"},
    {"auth.rate.max_keys", NULL, HV_SET_INT, "65536", NULL, "rate-limit buckets kept (IPs and clients)"},
    {"auth.registration.max_scope", NULL, HV_SET_STRING,
     "launch launch/patient openid fhirUser offline_access online_access patient/*.rs user/*.rs system/*.rs", NULL,
     "the most scope a client registered with an initial access token (POST /auth/register-client) gets"},
    {"auth.keys_check", NULL, HV_SET_DURATION, "2s", NULL,
     "how often a running engine looks for signing keys added by `keys rotate` (0: only on an unknown kid)"},
    {"auth.jwks.max_bytes", NULL, HV_SET_SIZE, "64KiB", NULL, "largest JWKS fetched from a backend client's jwks_uri"},
    {"auth.jwks.timeout", NULL, HV_SET_DURATION, "5s", NULL, "time limit of a jwks_uri fetch"},
    {"auth.jwks.min_refetch", NULL, HV_SET_DURATION, "10s", NULL,
     "shortest time between two fetches of one jwks_uri (an unknown kid asks again no sooner)"},
    {"auth.cors_origins", NULL, HV_SET_STRING, "", NULL,
     "comma-separated origins allowed for browser apps (exact match, e.g. https://app.example.org)"},
    {"auth.anonymous", NULL, HV_SET_STRING, "", NULL,
     "comma-separated path prefixes open without a token besides /health and /.well-known "
     "(e.g. /metrics for a Prometheus without credentials)"},
    {"auth.revocations_max", NULL, HV_SET_INT, "100000", NULL, "revoked tokens and sessions kept in memory"},
    {NULL, NULL, 0, NULL, NULL, NULL},
};

/* ---- helpers for the endpoint files ---- */

void hv__auth_oauth_error(hv_http_req_t *req, int status, const char *error, const char *desc) {
    struct json_object *o = json_object_new_object();
    hv_json_set_str(o, "error", error);
    if (desc) hv_json_set_str(o, "error_description", desc);
    hv_http_header_add(req, "Cache-Control", "no-store");
    hv_http_header_add(req, "Pragma", "no-cache");
    if (status == 401 && strcmp(error, "invalid_client") == 0)
        hv_http_header_add(req, "WWW-Authenticate", "Basic realm=\"holovitals\"");
    hv_http_respond_json(req, status, o);
}

/* Finds name in an application/x-www-form-urlencoded text (HTML §4.10.21.7). */
static const char *form_param(hv_arena_t *arena, const char *s, size_t n, const char *name, int *dup) {
    const char *p = s, *end = s + n, *found = NULL;
    size_t nl = strlen(name);
    while (p < end) {
        const char *amp = memchr(p, '&', (size_t)(end - p)), *e = amp ? amp : end;
        const char *eq = memchr(p, '=', (size_t)(e - p));
        size_t kl = (size_t)((eq ? eq : e) - p);
        if (kl == nl && memcmp(p, name, nl) == 0) {
            char *v;
            long len;
            if (found) {
                *dup = 1;
                return NULL;
            }
            v = hv_arena_strndup(arena, eq ? eq + 1 : e, eq ? (size_t)(e - eq - 1) : 0);
            if (v == NULL) return NULL;
            len = hv_url_decode(v, strlen(v), 1);
            if (len < 0 || memchr(v, '\0', (size_t)len) != NULL) {
                *dup = 1; /* a bad escape is refused like a duplicate: the request is invalid */
                return NULL;
            }
            v[len] = '\0';
            found = v;
        }
        p = e + 1;
    }
    return found;
}

const char *hv__auth_param(hv_http_req_t *req, const char *name, int *dup) {
    size_t n = 0;
    const char *body = hv_http_req_body(req, &n), *ct = hv_http_req_header(req, "Content-Type");
    hv_arena_t *arena = hv_http_req_arena(req);
    if (hv_http_req_method(req) == HV_HTTP_GET || hv_http_req_method(req) == HV_HTTP_HEAD) {
        const char *q = hv_http_req_query(req);
        return form_param(arena, q, strlen(q), name, dup);
    }
    if (body == NULL || n == 0) return NULL;
    if (ct != NULL && strncmp(ct, "application/json", 16) == 0) {
        struct json_object *o = NULL, *v;
        const char *r = NULL;
        if (hv_json_parse(body, n, "body", &o, NULL) != HV_OK || !json_object_is_type(o, json_type_object)) {
            json_object_put(o);
            *dup = 1;
            return NULL;
        }
        if (json_object_object_get_ex(o, name, &v) && json_object_is_type(v, json_type_string))
            r = hv_arena_strdup(arena, json_object_get_string(v));
        json_object_put(o);
        return r;
    }
    return form_param(arena, body, n, name, dup);
}

/* Adds a revocation to this process's set. The set is bounded (auth.revocations_max);
 * when it is full of unexpired entries the revocation is only in the database, so the
 * condition is logged as an error and /health fails until entries expire. */
void hv__auth_revoke_mem(hv__auth_t *a, const char *id, int64_t expires) {
    if (hv__strset_add(a->revoked, id, expires, (int64_t)(hv_now_ms() / 1000)) != HV_OK) {
        a->revoked_overflow = 1;
        hv_log(HV_LOG_ERROR, "auth.revocations_full",
               "the in-memory revocation set is full: raise auth.revocations_max");
    }
}

/* ---- lifecycle ---- */

typedef struct revsync {
    hv__auth_t *a;
    int64_t cursor;
    size_t n;
    char **ids;
    int64_t *exp;
    int64_t *at;
} revsync_t;

static int job_revsync(hv_db_t *db, void *arg) {
    revsync_t *r = arg;
    hv_db_stmt_t *st = NULL;
    int rc = hv_db_prepare(db, "SELECT id, expires, at FROM revoked WHERE at > $1 AND expires >= $2 ORDER BY at LIMIT 1000", &st);
    size_t cap = 0;
    if (rc != HV_OK) return rc;
    hv_db_bind_int64(st, 1, r->cursor);
    hv_db_bind_int64(st, 2, (int64_t)(hv_now_ms() / 1000));
    while ((rc = hv_db_step(st)) == HV_DB_ROW) {
        size_t len;
        const char *id = hv_db_column_text(st, 0, &len);
        if (r->n == cap) {
            size_t nc = cap ? cap * 2 : 16;
            char **ni = hv_realloc(r->ids, nc * sizeof(char *));
            int64_t *ne, *na;
            if (ni == NULL) break;
            r->ids = ni;
            ne = hv_realloc(r->exp, nc * sizeof(int64_t));
            if (ne == NULL) break;
            r->exp = ne;
            na = hv_realloc(r->at, nc * sizeof(int64_t));
            if (na == NULL) break;
            r->at = na;
            cap = nc;
        }
        r->ids[r->n] = hv_strndup(id, len);
        r->exp[r->n] = hv_db_column_int64(st, 1);
        r->at[r->n] = hv_db_column_int64(st, 2);
        if (r->ids[r->n] != NULL) r->n++;
    }
    hv_db_done(st);
    return rc < 0 ? rc : HV_OK;
}

static void done_revsync(int status, void *arg) {
    revsync_t *r = arg;
    size_t i;
    for (i = 0; i < r->n; i++) {
        if (status == HV_OK) {
            hv__auth_revoke_mem(r->a, r->ids[i], r->exp[i]);
            if (r->at[i] > r->a->revocation_cursor) r->a->revocation_cursor = r->at[i];
        }
        hv_free(r->ids[i]);
    }
    r->a->last_revocation_sync = 0;
    hv_free(r->ids);
    hv_free(r->exp);
    hv_free(r->at);
    hv_free(r);
}

static void keys_reload(hv__auth_t *a);

static void on_revsync_timer(uv_timer_t *t) {
    hv__auth_t *a = t->data;
    revsync_t *r;
    if (a->keys_check_ms > 0 && hv_now_ms() - a->keys_asked_ms >= a->keys_check_ms) keys_reload(a);
    if (a->storage == NULL || a->last_revocation_sync != 0 || hv_engine_stopping(a->e)) return;
    r = hv_calloc(1, sizeof(*r));
    if (r == NULL) return;
    r->a = a;
    r->cursor = a->revocation_cursor;
    a->last_revocation_sync = 1; /* one in flight at a time */
    if (hv_storage_submit(a->storage, job_revsync, done_revsync, r) != HV_OK) {
        a->last_revocation_sync = 0;
        hv_free(r);
    }
}

/* ---- signing keys picked up while running ----
 * Every two seconds (with the revocations) and when a token names an unknown kid, the
 * storage thread compares the signing_keys table with the keys held; when a key was
 * added (keys rotate, in the CLI or another process) the new set is decoded there and
 * swapped in on the loop thread, the only thread that signs or verifies. */

typedef struct keysync {
    hv__auth_t *a;
    const char *pass;
    char known[HV__MAX_KEYS * 72];
    char fp[HV__MAX_KEYS * 72];
    hv__auth_key_t keys[HV__MAX_KEYS];
    size_t n;
} keysync_t;

static int job_keysync(hv_db_t *db, void *arg) {
    keysync_t *k = arg;
    return hv__auth_keys_read(db, k->pass, k->known, k->keys, &k->n, k->fp, sizeof(k->fp));
}

static void done_keysync(int status, void *arg) {
    keysync_t *k = arg;
    hv__auth_t *a = k->a;
    size_t i;
    int current = 0;
    for (i = 0; i < k->n; i++) current |= k->keys[i].current;
    if (status == HV_OK && k->n > 0 && current) {
        hv__auth_keys_free(a);
        memcpy(a->keys, k->keys, k->n * sizeof(k->keys[0]));
        a->nkeys = k->n;
        snprintf(a->keys_fp, sizeof(a->keys_fp), "%s", k->fp);
        hv_log(HV_LOG_INFO, "auth.keys_reloaded", "signing keys re-read: %zu, current %s", a->nkeys,
               hv__auth_key_current(a) ? hv__auth_key_current(a)->kid : "?");
    } else {
        for (i = 0; i < k->n; i++) EVP_PKEY_free(k->keys[i].pkey);
        if (status != HV_OK) hv_log(HV_LOG_WARN, "auth.keys_reload_failed", "%s", hv_strerror(status));
    }
    a->keys_busy = 0;
    hv_free(k);
}

static void keys_reload(hv__auth_t *a) {
    keysync_t *k;
    if (a->storage == NULL || a->keys_busy || hv_engine_stopping(a->e)) return;
    k = hv_calloc(1, sizeof(*k));
    if (k == NULL) return;
    k->a = a;
    k->pass = hv_config_str(hv_engine_config(a->e), "auth.key_passphrase");
    snprintf(k->known, sizeof(k->known), "%s", a->keys_fp);
    a->keys_busy = 1;
    a->keys_asked_ms = hv_now_ms();
    if (hv_storage_submit(a->storage, job_keysync, done_keysync, k) != HV_OK) {
        a->keys_busy = 0;
        hv_free(k);
    }
}

void hv__auth_keys_refresh(hv__auth_t *a) {
    if (hv_now_ms() - a->keys_asked_ms >= 1000) keys_reload(a);
}

typedef struct auth_state {
    hv__auth_t a; /* first: hv_engine_module_state("auth") is also an hv__auth_t * */
    uv_timer_t timer;
    int timer_on;      /* started and not yet closing */
    int timer_closing; /* uv_close called, callback not yet run */
    int free_on_close; /* auth_free ran meanwhile: the close callback frees */
} auth_state_t;

static void health_cb(void *ud, int *status, char *output, size_t outlen) {
    hv__auth_t *a = ud;
    if (a->revoked_overflow) {
        *status = HV_HEALTH_FAIL;
        snprintf(output, outlen, "revocation set full: raise auth.revocations_max");
    } else if (!a->enabled) {
        *status = HV_HEALTH_WARN;
        snprintf(output, outlen, "authentication is off: every request is allowed");
    } else {
        *status = HV_HEALTH_PASS;
        snprintf(output, outlen, "%zu signing key(s)", a->nkeys);
    }
}

static void default_base(hv_engine_t *e, char *out, size_t outlen) {
    char host[256];
    int port = 0;
    const char *cert = hv_config_str(hv_engine_config(e), "tls.cert");
    hv_parse_hostport(hv_config_str(hv_engine_config(e), "http.listen"), host, sizeof(host), &port);
    snprintf(out, outlen, "%s://%s:%d", cert[0] ? "https" : "http",
             strcmp(host, "0.0.0.0") == 0 || host[0] == '\0' ? "localhost" : host, port);
}

void hv__auth_configure(hv__auth_t *a, hv_engine_t *e) {
    hv_config_t *c = hv_engine_config(e);
    const char *iss = hv_config_str(c, "auth.issuer"), *aud = hv_config_str(c, "auth.audience");
    a->e = e;
    a->enabled = hv_config_bool(c, "auth.enabled");
    if (iss[0]) snprintf(a->issuer, sizeof(a->issuer), "%s", iss);
    else default_base(e, a->issuer, sizeof(a->issuer));
    {
        size_t n = strlen(a->issuer);
        while (n > 0 && a->issuer[n - 1] == '/') a->issuer[--n] = '\0';
    }
    if (aud[0]) snprintf(a->audience, sizeof(a->audience), "%s", aud);
    else snprintf(a->audience, sizeof(a->audience), "%.500s/fhir", a->issuer);
    snprintf(a->alg, sizeof(a->alg), "%s", hv_config_str(c, "auth.alg"));
    a->access_ttl = (int64_t)(hv_config_duration_ms(c, "auth.access_ttl") / 1000);
    a->session_ttl = (int64_t)(hv_config_duration_ms(c, "auth.session_ttl") / 1000);
    a->refresh_ttl = (int64_t)(hv_config_duration_ms(c, "auth.offline_ttl") / 1000);
    a->code_ttl = (int64_t)(hv_config_duration_ms(c, "auth.code_ttl") / 1000);
    a->launch_ttl = (int64_t)(hv_config_duration_ms(c, "auth.launch_ttl") / 1000);
    a->leeway = (int64_t)(hv_config_duration_ms(c, "auth.leeway") / 1000);
    if (a->access_ttl < 1) a->access_ttl = 1;
    a->lock_threshold = hv_config_int(c, "auth.lockout.threshold");
    a->lock_ms = (int64_t)hv_config_duration_ms(c, "auth.lockout.duration");
    a->scrypt_n = (uint64_t)hv_config_int(c, "auth.password.scrypt_n");
    a->ip_rate = (double)hv_config_int(c, "auth.rate.ip_per_sec");
    a->ip_burst = (double)hv_config_int(c, "auth.rate.ip_burst");
    a->client_rate = (double)hv_config_int(c, "auth.rate.client_per_sec");
    a->client_burst = (double)hv_config_int(c, "auth.rate.client_burst");
    a->login_rate = (double)hv_config_int(c, "auth.rate.login_per_min") / 60.0;
    a->login_burst = (double)hv_config_int(c, "auth.rate.login_burst");
}

static int auth_init(hv_engine_t *e, void **state) {
    auth_state_t *s = hv_calloc(1, sizeof(*s));
    hv__auth_t *a;
    hv_config_t *c = hv_engine_config(e);
    hv_metrics_t *m = hv_engine_metrics(e);
    int rc = HV_ENOMEM;
    if (s == NULL) return HV_ENOMEM;
    a = &s->a;
    hv__auth_configure(a, e);
    a->cors = hv_strdup(hv_config_str(c, "auth.cors_origins"));
    a->anonymous = hv_strdup(hv_config_str(c, "auth.anonymous"));
    a->registration_scope = hv_strdup(hv_config_str(c, "auth.registration.max_scope"));
    a->keys_check_ms = hv_config_duration_ms(c, "auth.keys_check");
    a->rl = hv__ratelimit_new((size_t)hv_config_int(c, "auth.rate.max_keys"));
    a->revoked = hv__strset_new((size_t)hv_config_int(c, "auth.revocations_max"));
    a->assert_jti = hv__strset_new((size_t)hv_config_int(c, "auth.revocations_max"));
    a->jwks = hv__jwks_cache_new((size_t)hv_config_size(c, "auth.jwks.max_bytes"),
                                 (int64_t)hv_config_duration_ms(c, "auth.jwks.timeout"),
                                 (int64_t)hv_config_duration_ms(c, "auth.jwks.min_refetch"));
    if (a->cors == NULL || a->anonymous == NULL || a->rl == NULL || a->revoked == NULL || a->assert_jti == NULL ||
        a->jwks == NULL || a->registration_scope == NULL)
        goto fail;
    a->c_ok = hv_metrics_counter(m, "holovitals_auth_requests_total", "requests through the auth guard", "result=\"allowed\"");
    a->c_denied = hv_metrics_counter(m, "holovitals_auth_requests_total", "requests through the auth guard", "result=\"denied\"");
    a->c_limited = hv_metrics_counter(m, "holovitals_auth_requests_total", "requests through the auth guard", "result=\"rate_limited\"");
    a->c_login_fail = hv_metrics_counter(m, "holovitals_auth_login_failures_total", "failed password logins", NULL);
    if ((rc = hv_health_register(e, "auth", health_cb, a)) != HV_OK) goto fail;
    if ((rc = hv__auth_sessions_routes(a)) != HV_OK) goto fail;
    if ((rc = hv__auth_oauth_routes(a)) != HV_OK) goto fail;
    if ((rc = hv__auth_smart_routes(a)) != HV_OK) goto fail;
    if ((rc = hv__auth_launch_routes(a)) != HV_OK) goto fail;
    if ((rc = hv__auth_register_routes(a)) != HV_OK) goto fail;
    if ((rc = hv__auth_admin_routes(a)) != HV_OK) goto fail;
    hv_http_set_guard(e, hv__auth_guard, a);
    *state = s;
    return HV_OK;
fail:
    hv__jwks_cache_free(a->jwks);
    hv_free(a->cors);
    hv_free(a->anonymous);
    hv_free(a->registration_scope);
    hv__ratelimit_free(a->rl);
    hv__strset_free(a->revoked);
    hv__strset_free(a->assert_jti);
    hv_free(s);
    return rc;
}

static int load_revocations(hv__auth_t *a, hv_db_t *db) {
    revsync_t r;
    size_t i;
    int rc;
    memset(&r, 0, sizeof(r));
    r.a = a;
    do {
        r.cursor = a->revocation_cursor;
        r.n = 0;
        rc = job_revsync(db, &r);
        for (i = 0; i < r.n; i++) {
            if (rc == HV_OK) {
                hv__auth_revoke_mem(a, r.ids[i], r.exp[i]);
                if (r.at[i] > a->revocation_cursor) a->revocation_cursor = r.at[i];
            }
            hv_free(r.ids[i]);
        }
    } while (rc == HV_OK && r.n == 1000);
    hv_free(r.ids);
    hv_free(r.exp);
    hv_free(r.at);
    return rc;
}

static int auth_start(hv_engine_t *e, void *state) {
    auth_state_t *s = state;
    hv__auth_t *a = &s->a;
    hv_db_t *db = NULL;
    hv_error_t err;
    char msg[1024];
    int rc;
    hv_error_clear(&err);
    rc = hv__auth_db_open(e, &db, &err);
    if (rc == HV_OK) rc = hv__auth_keys_load(a, db, hv_config_str(hv_engine_config(e), "auth.key_passphrase"), &err);
    if (rc == HV_OK) rc = load_revocations(a, db);
    if (rc == HV_OK) {
        /* The fingerprint of the keys held (the order and form of hv__auth_keys_read), so
         * that the periodic check decodes nothing until the table changes. */
        size_t i, used = 0;
        for (i = 0; i < a->nkeys && used < sizeof(a->keys_fp); i++) {
            int w = snprintf(a->keys_fp + used, sizeof(a->keys_fp) - used, "%s:%d;", a->keys[i].kid, a->keys[i].current);
            if (w < 0) break;
            used += (size_t)w;
        }
    }
    if (rc != HV_OK) {
        hv_error_format(&err, msg, sizeof(msg));
        hv_log(HV_LOG_ERROR, "auth.start_failed", "%s", msg);
        fprintf(stderr, "holovitals: auth: %s\n", msg);
        hv_db_close(db);
        return rc == HV_ECONFIG ? HV_ECONFIG : HV_EIO;
    }
    rc = hv_storage_new(hv_engine_loop(e), db, 4096, 64, &a->storage);
    if (rc != HV_OK) {
        hv_db_close(db);
        return rc;
    }
    uv_timer_init(hv_engine_loop(e), &s->timer);
    s->timer.data = a;
    uv_timer_start(&s->timer, on_revsync_timer, 2000, 2000);
    s->timer_on = 1;
    if (!a->enabled) {
        hv_log(HV_LOG_WARN, "auth.disabled",
               "authentication is OFF (--auth off / HOLOVITALS_AUTH=off): every request is allowed; "
               "never run like this on a network");
        fprintf(stderr, "holovitals: WARNING: authentication is off; every request is allowed\n");
    }
    return HV_OK;
}

/* The timer handle lives in the state, so the state is freed only once the handle
 * has closed (libuv: a handle's memory is released in its close callback). */
static void on_timer_closed(uv_handle_t *h) {
    auth_state_t *s = h->data ? (auth_state_t *)((char *)h - offsetof(auth_state_t, timer)) : NULL;
    if (s == NULL) return;
    s->timer_closing = 0;
    if (s->free_on_close) hv_free(s);
}

static void auth_stop(hv_engine_t *e, void *state) {
    auth_state_t *s = state;
    (void)e;
    if (s->timer_on) {
        uv_timer_stop(&s->timer);
        s->timer_closing = 1;
        uv_close((uv_handle_t *)&s->timer, on_timer_closed);
        s->timer_on = 0;
    }
}

static void auth_free(hv_engine_t *e, void *state) {
    auth_state_t *s = state;
    hv__auth_t *a = &s->a;
    auth_stop(e, state);
    hv_http_set_guard(e, NULL, NULL);
    hv_storage_free(a->storage);
    hv__auth_keys_free(a);
    hv__auth_vcache_free(a);
    hv__jwks_cache_free(a->jwks);
    hv_free(a->cors);
    hv_free(a->anonymous);
    hv_free(a->registration_scope);
    hv__ratelimit_free(a->rl);
    hv__strset_free(a->revoked);
    hv__strset_free(a->assert_jti);
    if (s->timer_closing) s->free_on_close = 1;
    else hv_free(s);
}

void hv_auth_set_patient_provider(hv_engine_t *e, hv_auth_patient_list_cb fn, void *ud) {
    auth_state_t *s = hv_engine_module_state(e, "auth");
    if (s == NULL) return;
    s->a.patients = fn;
    s->a.patients_ud = ud;
}

/* The engine setting services_always (default "auth") makes this module run in
 * every serving process, so that `--services fhir` still authenticates requests. */
const hv_module_t hv_auth_module = {
    "auth", hv__auth_settings, hv__auth_commands, auth_init, auth_start, auth_stop, auth_free,
};
