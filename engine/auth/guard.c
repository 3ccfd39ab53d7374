/*
 * guard.c — the request guard: every HTTP request passes here before routing.
 *
 * In order:
 *   1. CORS (Fetch standard §3.2): an Origin on the allow-list (auth.cors_origins,
 *      exact match) gets Access-Control-Allow-Origin; a preflight (OPTIONS with
 *      Access-Control-Request-Method) is answered here: 204 for allowed origins,
 *      403 for others.
 *   2. Per-IP token bucket (auth.rate.ip_per_sec / ip_burst): 429 + Retry-After.
 *   3. Path class (table below): anonymous paths go on; /auth/... endpoints
 *      authenticate their callers themselves (client credentials, passwords,
 *      refresh tokens) but a Bearer token sent to them must be valid;
 *      everything else needs a valid Bearer access token (RFC 6750 §2.1),
 *      else 401 with WWW-Authenticate (RFC 6750 §3).
 *   4. Per-principal token bucket (client id or user name).
 *   5. Roles for the engine's non-FHIR endpoints (table below): 403 when the
 *      token's role is not among them. The admin role passes every rule.
 *      FHIR endpoints only need a valid token here: the FHIR layer checks
 *      scopes per interaction through hv_auth_allow().
 *
 * With authentication off only CORS runs.
 */
#include "config.h"
#include "engine/auth/auth_int.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

enum { ANON = 1, SELF = 2, AUTHN = 3, ROLE = 4 };

#define ANYM 0xffffu
#define WRITE (HV_HTTP_POST | HV_HTTP_PUT | HV_HTTP_DELETE | HV_HTTP_PATCH)
#define R_ADMIN HV_AUTH_ROLE_ADMIN
#define R_INT HV_AUTH_ROLE_INTEGRATOR
#define R_AUD HV_AUTH_ROLE_AUDITOR
#define R_SVC HV_AUTH_ROLE_SERVICE

/* First matching rule wins; prefixes match whole path segments. */
static const struct rule {
    const char *prefix;
    unsigned methods;
    int cls;
    unsigned roles;
} rules[] = {
    {"/health", ANYM, ANON, 0},
    {"/.well-known", ANYM, ANON, 0},
    {"/fhir/.well-known", ANYM, ANON, 0},
    {"/auth", ANYM, SELF, 0},
    {"/channels", ANYM, ROLE, R_ADMIN | R_INT},
    {"/audit", ANYM, ROLE, R_ADMIN | R_AUD},
    {"/security", ANYM, ROLE, R_ADMIN | R_AUD},
    {"/compliance", ANYM, ROLE, R_ADMIN | R_AUD},
    {"/errors", HV_HTTP_GET | HV_HTTP_HEAD, ROLE, R_ADMIN | R_INT},
    {"/alerts", ANYM, ROLE, R_ADMIN | R_INT},
    {"/performance", ANYM, ROLE, R_ADMIN | R_INT},
    {"/metrics", ANYM, ROLE, R_ADMIN | R_INT | R_SVC},
    {"/terminology", WRITE, ROLE, R_ADMIN},
    {"/standardize/conceptmap", WRITE, ROLE, R_ADMIN | R_INT},
    {"/ehr", ANYM, ROLE, R_ADMIN | R_INT},
    /* The console's static files hold no data; its views call the APIs with a token. */
    {"/console", HV_HTTP_GET | HV_HTTP_HEAD, ANON, 0},
    {"/fhir", ANYM, AUTHN, 0},
};

static int prefix_match(const char *path, const char *prefix, size_t n) {
    if (strncmp(path, prefix, n) != 0) return 0;
    return path[n] == '\0' || path[n] == '/' || (n > 0 && prefix[n - 1] == '/');
}

/* Is path under one of the comma-separated prefixes in list? */
static int in_list(const char *list, const char *path) {
    const char *p = list;
    while (p && *p) {
        const char *c = strchr(p, ',');
        size_t n = c ? (size_t)(c - p) : strlen(p);
        while (n > 0 && *p == ' ') {
            p++;
            n--;
        }
        if (n > 0 && prefix_match(path, p, n)) return 1;
        p = c ? c + 1 : NULL;
    }
    return 0;
}

static int origin_allowed(const char *list, const char *origin) {
    const char *p = list;
    size_t on = strlen(origin);
    while (p && *p) {
        const char *c = strchr(p, ',');
        size_t n = c ? (size_t)(c - p) : strlen(p);
        while (n > 0 && *p == ' ') {
            p++;
            n--;
        }
        while (n > 0 && p[n - 1] == ' ') n--;
        if (n == on && memcmp(p, origin, n) == 0) return 1;
        p = c ? c + 1 : NULL;
    }
    return 0;
}

/* The client address without the port. */
static void peer_ip(hv_http_req_t *req, char *out, size_t outlen) {
    const char *peer = hv_http_req_peer(req), *colon = strrchr(peer, ':');
    size_t n = colon ? (size_t)(colon - peer) : strlen(peer);
    if (n >= outlen) n = outlen - 1;
    memcpy(out, peer, n);
    out[n] = '\0';
}

static void too_many(hv_http_req_t *req, unsigned retry) {
    char v[16];
    snprintf(v, sizeof(v), "%u", retry);
    hv_http_header_add(req, "Retry-After", v);
    hv_http_respond_error(req, 429, "too_many_requests", "rate limit exceeded; retry after %u s", retry);
}

static void unauthorized(hv_http_req_t *req, const char *error, const char *desc) {
    char h[256];
    if (error)
        snprintf(h, sizeof(h), "Bearer realm=\"holovitals\", error=\"%s\", error_description=\"%s\"", error, desc);
    else
        snprintf(h, sizeof(h), "Bearer realm=\"holovitals\"");
    hv_http_header_add(req, "WWW-Authenticate", h);
    hv_http_respond_error(req, 401, error ? error : "unauthorized", "%s", desc);
}

/* The Bearer credential of req, or NULL (RFC 6750 §2.1; the scheme is case-insensitive). */
static const char *bearer(hv_http_req_t *req, int *other_scheme) {
    const char *h = hv_http_req_header(req, "Authorization");
    *other_scheme = 0;
    if (h == NULL) return NULL;
    if (strcasecmp(h, "Bearer") == 0) return ""; /* an empty credential is an invalid token */
    if (strncasecmp(h, "Bearer ", 7) != 0) {
        *other_scheme = 1;
        return NULL;
    }
    h += 7;
    while (*h == ' ') h++;
    return h;
}

int hv__auth_guard(hv_http_req_t *req, void *ud) {
    hv__auth_t *a = ud;
    const char *path = hv_http_req_path(req), *origin = hv_http_req_header(req, "Origin"), *tok;
    const struct rule *rule = NULL;
    hv_auth_principal_t *p = NULL;
    int method = hv_http_req_method(req), other = 0, cls = AUTHN;
    unsigned retry = 0;
    char key[160], ip[64];
    size_t i;
    uint64_t now = hv_now_ms();

    /* 1. CORS */
    if (origin != NULL) {
        int ok = a->cors != NULL && origin_allowed(a->cors, origin);
        if (method == HV_HTTP_OPTIONS && hv_http_req_header(req, "Access-Control-Request-Method")) {
            if (!ok) {
                hv_http_respond_error(req, 403, "cors_denied", "this origin is not allowed");
                return HV_EPERM;
            }
            hv_http_header_add(req, "Access-Control-Allow-Origin", origin);
            hv_http_header_add(req, "Vary", "Origin");
            hv_http_header_add(req, "Access-Control-Allow-Methods", "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS");
            hv_http_header_add(req, "Access-Control-Allow-Headers",
                               "Authorization, Content-Type, Accept, If-Match, If-None-Exist, Prefer");
            hv_http_header_add(req, "Access-Control-Max-Age", "600");
            hv_http_respond(req, 204, NULL, NULL, 0);
            return HV_EPERM;
        }
        if (ok) {
            hv_http_header_add(req, "Access-Control-Allow-Origin", origin);
            hv_http_header_add(req, "Vary", "Origin");
            hv_http_header_add(req, "Access-Control-Expose-Headers", "Location, ETag, Content-Location, Retry-After");
        }
    }
    if (!a->enabled) return HV_OK;

    /* 2. per IP */
    peer_ip(req, ip, sizeof(ip));
    snprintf(key, sizeof(key), "ip:%s", ip);
    if (!hv__ratelimit_take(a->rl, key, a->ip_rate, a->ip_burst, now, &retry)) {
        hv_counter_add(a->c_limited, 1);
        too_many(req, retry);
        return HV_EBUSY;
    }

    /* 3. path class */
    for (i = 0; i < HV_ARRAY_LEN(rules); i++) {
        if ((rules[i].methods & (unsigned)method) && prefix_match(path, rules[i].prefix, strlen(rules[i].prefix))) {
            rule = &rules[i];
            cls = rule->cls;
            break;
        }
    }
    if (cls != ANON && in_list(a->anonymous, path)) cls = ANON;
    if (cls == ANON) return HV_OK;
    tok = bearer(req, &other);
    if (tok == NULL) {
        if (cls == SELF) return HV_OK;
        hv_counter_add(a->c_denied, 1);
        unauthorized(req, NULL, other ? "use a Bearer access token" : "authentication required");
        return HV_EPERM;
    }
    /* An RFC 7591 initial access token is not a JWT: the registration endpoint checks it
     * (register.c); on any other path it is an invalid token like any other. */
    if (cls == SELF && strncmp(tok, "iat.", 4) == 0 && strcmp(path, "/auth/register-client") == 0) return HV_OK;
    p = hv_arena_alloc(hv_http_req_arena(req), sizeof(*p));
    if (p == NULL) {
        hv_http_respond_error(req, 503, "out_of_memory", "try again");
        return HV_ENOMEM;
    }
    {
        hv_error_t err;
        hv_error_clear(&err);
        if (hv__auth_token_validate(a, tok, strlen(tok), p, &err) != HV_OK) {
            hv_counter_add(a->c_denied, 1);
            hv_log(HV_LOG_INFO, "auth.token_rejected", "%s", err.location);
            unauthorized(req, "invalid_token", "the access token is invalid, expired or revoked");
            return HV_EPERM;
        }
    }
    hv_http_req_set_principal(req, p);

    /* 4. per principal */
    snprintf(key, sizeof(key), "p:%s", p->client_id[0] ? p->client_id : p->sub);
    if (!hv__ratelimit_take(a->rl, key, a->client_rate, a->client_burst, now, &retry)) {
        hv_counter_add(a->c_limited, 1);
        too_many(req, retry);
        return HV_EBUSY;
    }

    /* 5. roles */
    if (cls == ROLE && p->role != HV_AUTH_ROLE_ADMIN && !(p->role & rule->roles)) {
        hv_counter_add(a->c_denied, 1);
        hv_http_respond_error(req, 403, "forbidden", "your role may not use this endpoint");
        return HV_EPERM;
    }
    hv_counter_add(a->c_ok, 1);
    return HV_OK;
}

const hv_auth_principal_t *hv_auth_principal(const hv_http_req_t *req) {
    return (const hv_auth_principal_t *)hv_http_req_principal(req);
}
