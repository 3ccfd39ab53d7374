/*
 * register.c — OAuth 2.0 Dynamic Client Registration (RFC 7591) at
 * POST /auth/register-client, and its initial access tokens.
 *
 * Who may register (RFC 7591 §3, "protected" registration):
 *   - an admin, with its access token (Bearer); or
 *   - the holder of an initial access token "iat.<64 hex>" made by
 *     `holovitals client initial-token [--ttl D]`: single use, stored as its
 *     SHA-256 in the table initial_tokens until it expires or is spent. The guard
 *     lets such a Bearer value through to this endpoint only (guard.c).
 *
 * Request (RFC 7591 §2), JSON:
 *   client_name                 required, < 128 bytes
 *   token_endpoint_auth_method  "none" → public app, "client_secret_basic" or
 *                               "client_secret_post" → confidential app,
 *                               "private_key_jwt" → SMART backend service
 *   redirect_uris               apps: 1..8 URIs, matched exactly later; no fragment
 *   jwks | jwks_uri             backend: the public keys inline, or an https URL
 *   scope                       optional; narrowed (RFC 7591 §2 lets the server
 *                               decide) to what an admin asks, or for an initial
 *                               access token to auth.registration.max_scope
 * Answer 201 (§3.2.1): client_id, client_id_issued_at, client_secret (confidential,
 * shown once, client_secret_expires_at 0) and the registered metadata. Errors 400
 * {"error": "invalid_client_metadata" | "invalid_redirect_uri", "error_description"}
 * (§3.2.2); 401 without a valid credential.
 */
#include "config.h"
#include "engine/auth/auth_int.h"

#include <json-c/json.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#define MAX_REDIRECTS 8
#define IAT_PREFIX "iat."

typedef struct reg {
    hv__client_t c;
    char iat_hash[65];  /* "" when an admin registers */
    int iat_ok;
    int stored;
    char secret[65];
    struct json_object *answer;
} reg_t;

static void reg_fail(hv_http_req_t *req, const char *error, const char *desc) {
    struct json_object *o = json_object_new_object();
    hv_json_set_str(o, "error", error);
    hv_json_set_str(o, "error_description", desc);
    hv_http_header_add(req, "Cache-Control", "no-store");
    hv_http_respond_json(req, 400, o);
}

/* The initial access token of the request's Authorization header, or NULL. */
static const char *initial_token(hv_http_req_t *req) {
    const char *h = hv_http_req_header(req, "Authorization");
    if (h == NULL || strncasecmp(h, "Bearer ", 7) != 0) return NULL;
    h += 7;
    while (*h == ' ') h++;
    return strncmp(h, IAT_PREFIX, 4) == 0 && strlen(h) == 68 ? h : NULL;
}

int hv__auth_initial_token_create(hv_db_t *db, int64_t ttl, char *out, size_t outlen) {
    char rnd[65], hash[65];
    hv_db_stmt_t *st = NULL;
    int64_t now = (int64_t)(hv_now_ms() / 1000);
    int rc;
    if (outlen < 69) return HV_EINVAL;
    hv__auth_random_id(rnd, 32);
    snprintf(out, outlen, IAT_PREFIX "%s", rnd);
    hv__auth_sha256_hex(out, strlen(out), hash);
    rc = hv_db_prepare(db, "INSERT INTO initial_tokens (hash, expires, created) VALUES ($1, $2, $3)", &st);
    if (rc != HV_OK) return rc;
    hv_db_bind_text(st, 1, hash, strlen(hash));
    hv_db_bind_int64(st, 2, now + ttl);
    hv_db_bind_int64(st, 3, now);
    rc = hv_db_step(st);
    hv_db_done(st);
    return rc < 0 ? rc : HV_OK;
}

/* Spends an initial access token: 1 when it was there and unexpired. */
static int spend_initial(hv_db_t *db, const char *hash, int *ok) {
    hv_db_stmt_t *st = NULL;
    int rc = hv_db_prepare(db, "DELETE FROM initial_tokens WHERE hash = $1 AND expires >= $2", &st);
    if (rc != HV_OK) return rc;
    hv_db_bind_text(st, 1, hash, strlen(hash));
    hv_db_bind_int64(st, 2, (int64_t)(hv_now_ms() / 1000));
    rc = hv_db_step(st);
    hv_db_done(st);
    if (rc < 0) return rc;
    *ok = hv_db_changes(db) == 1;
    return HV_OK;
}

static int job_register(hv_db_t *db, void *arg) {
    hv__sjob_t *j = arg;
    reg_t *g = j->extra;
    int rc;
    if (g->iat_hash[0] != '\0') {
        rc = spend_initial(db, g->iat_hash, &g->iat_ok);
        if (rc != HV_OK || !g->iat_ok) return rc;
    }
    rc = hv__client_insert(db, &g->c);
    g->stored = rc == HV_OK;
    return rc;
}

static void done_register(int status, void *arg) {
    hv__sjob_t *j = arg;
    reg_t *g = j->extra;
    if (status != HV_OK) {
        hv_http_respond_error(j->req, 503, "storage_failed", "the client could not be stored; retry");
    } else if (g->iat_hash[0] != '\0' && !g->iat_ok) {
        hv_http_header_add(j->req, "WWW-Authenticate", "Bearer realm=\"holovitals\", error=\"invalid_token\"");
        hv_http_respond_error(j->req, 401, "invalid_token", "the initial access token is unknown, spent or expired");
    } else {
        hv_log(HV_LOG_INFO, "auth.client_registered", "client %s (%s) registered", g->c.client_id, g->c.type);
        hv_http_header_add(j->req, "Cache-Control", "no-store");
        hv_http_respond_json(j->req, 201, json_object_get(g->answer));
    }
    hv_free(g->c.jwks);
    json_object_put(g->answer);
    hv_free(g);
    j->extra = NULL;
    hv__sjob_free(j);
}

/* Reads the metadata into g (loop thread); answers and returns -1 when it is refused. */
static int read_metadata(hv__auth_t *a, hv_http_req_t *req, struct json_object *m, int admin, reg_t *g) {
    const char *name = hv_json_get_str(m, "client_name"), *method = hv_json_get_str(m, "token_endpoint_auth_method");
    const char *scope = hv_json_get_str(m, "scope"), *jwks_uri = hv_json_get_str(m, "jwks_uri");
    struct json_object *uris = NULL, *jwks = NULL;
    char why[256];
    size_t ru = 0, i;
    hv__client_t *c = &g->c;
    if (name == NULL || name[0] == '\0' || strlen(name) >= sizeof(c->name)) {
        reg_fail(req, "invalid_client_metadata", "client_name is required (under 128 bytes)");
        return -1;
    }
    if (method == NULL) method = "client_secret_basic"; /* RFC 7591 §2: the default */
    if (strcmp(method, "none") == 0) snprintf(c->type, sizeof(c->type), "public");
    else if (strcmp(method, "client_secret_basic") == 0 || strcmp(method, "client_secret_post") == 0)
        snprintf(c->type, sizeof(c->type), "confidential");
    else if (strcmp(method, "private_key_jwt") == 0) snprintf(c->type, sizeof(c->type), "backend");
    else {
        reg_fail(req, "invalid_client_metadata",
                 "token_endpoint_auth_method must be none, client_secret_basic, client_secret_post or private_key_jwt");
        return -1;
    }
    json_object_object_get_ex(m, "redirect_uris", &uris);
    json_object_object_get_ex(m, "jwks", &jwks);
    if (strcmp(c->type, "backend") == 0) {
        if (uris != NULL || (jwks == NULL) == (jwks_uri == NULL)) {
            reg_fail(req, "invalid_client_metadata", "a private_key_jwt client has jwks or jwks_uri (one) and no redirect_uris");
            return -1;
        }
        if (jwks_uri != NULL) {
            if (!hv__jwks_uri_valid(jwks_uri)) {
                reg_fail(req, "invalid_client_metadata", "jwks_uri must be an https URL");
                return -1;
            }
            snprintf(c->jwks_uri, sizeof(c->jwks_uri), "%s", jwks_uri);
            c->jwks = hv_strdup("");
        } else {
            const char *t = json_object_to_json_string_ext(jwks, JSON_C_TO_STRING_PLAIN);
            if (t == NULL || strlen(t) > 256 * 1024 || hv__jwks_check(t, why, sizeof(why)) != 0) {
                reg_fail(req, "invalid_client_metadata", t != NULL && strlen(t) <= 256 * 1024 ? why : "jwks is too large");
                return -1;
            }
            c->jwks = hv_strdup(t);
        }
        if (c->jwks == NULL) {
            hv_http_respond_error(req, 503, "out_of_memory", "try again");
            return -1;
        }
    } else {
        if (jwks != NULL || jwks_uri != NULL || uris == NULL || !json_object_is_type(uris, json_type_array) ||
            json_object_array_length(uris) == 0 || json_object_array_length(uris) > MAX_REDIRECTS) {
            reg_fail(req, "invalid_redirect_uri", "an app needs 1 to 8 redirect_uris (and no keys)");
            return -1;
        }
        for (i = 0; i < json_object_array_length(uris); i++) {
            const char *u = json_object_get_string(json_object_array_get_idx(uris, i));
            size_t n = u != NULL ? strlen(u) : 0;
            /* RFC 6749 §3.1.2: absolute, no fragment; matched exactly at authorization. */
            if (!json_object_is_type(json_object_array_get_idx(uris, i), json_type_string) || n == 0 ||
                strchr(u, '#') != NULL || strpbrk(u, "\r\n ") != NULL || strstr(u, "://") == NULL ||
                ru + n + 2 > sizeof(c->redirect_uris)) {
                reg_fail(req, "invalid_redirect_uri", "a redirect URI is not an absolute URI without a fragment");
                return -1;
            }
            if (ru) c->redirect_uris[ru++] = '\n';
            memcpy(c->redirect_uris + ru, u, n + 1);
            ru += n;
        }
        c->jwks = hv_strdup("");
        if (c->jwks == NULL) {
            hv_http_respond_error(req, 503, "out_of_memory", "try again");
            return -1;
        }
    }
    {
        /* The scope: what was asked (or the type's default), narrowed for an initial
         * access token to auth.registration.max_scope. */
        const char *want = scope != NULL ? scope
                           : strcmp(c->type, "backend") == 0
                               ? "system/*.rs"
                               : "launch/patient openid fhirUser offline_access online_access patient/*.rs user/*.rs";
        hv_auth_scopes_t *sc = hv_malloc(sizeof(*sc));
        hv_error_t err;
        hv_buf_t b;
        int rc = sc != NULL ? hv_auth_scopes_parse(want, sc, &err) : HV_ENOMEM;
        hv_free(sc);
        if (rc != HV_OK || strlen(want) >= sizeof(c->scope)) {
            reg_fail(req, "invalid_client_metadata", "scope is malformed or too long");
            return -1;
        }
        hv_buf_init(&b, sizeof(c->scope) - 1);
        rc = admin ? hv_buf_puts(&b, want) : hv_auth_scopes_narrow(want, a->registration_scope, &b, &err);
        snprintf(c->scope, sizeof(c->scope), "%s", rc == HV_OK && b.data != NULL ? b.data : "");
        hv_buf_release(&b);
        if (c->scope[0] == '\0') {
            reg_fail(req, "invalid_client_metadata", "none of the scope can be granted to a registered client");
            return -1;
        }
    }
    snprintf(c->name, sizeof(c->name), "%s", name);
    hv__auth_random_id(c->client_id, 16);
    if (strcmp(c->type, "confidential") == 0) {
        hv__auth_random_id(g->secret, 32);
        hv__auth_sha256_hex(g->secret, strlen(g->secret), c->secret_hash);
    }
    /* RFC 7591 §3.2.1: the answer repeats the registered metadata. */
    g->answer = json_object_new_object();
    hv_json_set_str(g->answer, "client_id", c->client_id);
    hv_json_set_int(g->answer, "client_id_issued_at", (int64_t)(hv_now_ms() / 1000));
    if (g->secret[0]) {
        hv_json_set_str(g->answer, "client_secret", g->secret);
        hv_json_set_int(g->answer, "client_secret_expires_at", 0);
    }
    hv_json_set_str(g->answer, "client_name", c->name);
    hv_json_set_str(g->answer, "token_endpoint_auth_method", method);
    hv_json_set_str(g->answer, "scope", c->scope);
    if (uris != NULL) hv_json_set(g->answer, "redirect_uris", json_object_get(uris));
    if (jwks != NULL) hv_json_set(g->answer, "jwks", json_object_get(jwks));
    if (c->jwks_uri[0]) hv_json_set_str(g->answer, "jwks_uri", c->jwks_uri);
    {
        struct json_object *gt = json_object_new_array();
        if (strcmp(c->type, "backend") == 0) {
            json_object_array_add(gt, json_object_new_string("client_credentials"));
        } else {
            json_object_array_add(gt, json_object_new_string("authorization_code"));
            json_object_array_add(gt, json_object_new_string("refresh_token"));
        }
        hv_json_set(g->answer, "grant_types", gt);
    }
    return 0;
}

static void h_register_client(hv_http_req_t *req, void *ud) {
    hv__auth_t *a = ud;
    const hv_auth_principal_t *p = hv_auth_principal(req);
    const char *iat = initial_token(req), *body;
    struct json_object *m = NULL;
    reg_t *g = NULL;
    hv__sjob_t *j;
    size_t len = 0;
    int admin = p != NULL && p->role == HV_AUTH_ROLE_ADMIN;
    if (!admin && iat == NULL) {
        hv_http_header_add(req, "WWW-Authenticate", "Bearer realm=\"holovitals\"");
        if (p != NULL) hv_http_respond_error(req, 403, "forbidden", "only an admin or an initial access token registers clients");
        else hv_http_respond_error(req, 401, "unauthorized", "an admin access token or an initial access token is required");
        return;
    }
    body = hv_http_req_body(req, &len);
    if (body == NULL || len == 0 || len > 512 * 1024 || hv_json_parse(body, len, "metadata", &m, NULL) != HV_OK ||
        !json_object_is_type(m, json_type_object)) {
        json_object_put(m);
        reg_fail(req, "invalid_client_metadata", "the body must be a JSON object of client metadata");
        return;
    }
    g = hv_calloc(1, sizeof(*g));
    if (g == NULL) {
        json_object_put(m);
        hv_http_respond_error(req, 503, "out_of_memory", "try again");
        return;
    }
    if (read_metadata(a, req, m, admin, g) != 0) {
        json_object_put(m);
        hv_free(g->c.jwks);
        json_object_put(g->answer);
        hv_free(g);
        return;
    }
    json_object_put(m);
    if (!admin) hv__auth_sha256_hex(iat, strlen(iat), g->iat_hash);
    if ((j = hv__sjob_new(a, req)) == NULL) {
        hv_free(g->c.jwks);
        json_object_put(g->answer);
        hv_free(g);
        return;
    }
    j->extra = g;
    if (hv_storage_submit(a->storage, job_register, done_register, j) != HV_OK) {
        hv_free(g->c.jwks);
        json_object_put(g->answer);
        hv_free(g);
        j->extra = NULL;
        hv__sjob_free(j);
        hv_http_respond_error(req, 503, "busy", "the server is busy; retry");
    }
}

int hv__auth_register_routes(hv__auth_t *a) {
    return hv_router_add(hv_engine_router(a->e), HV_HTTP_POST, "/auth/register-client", h_register_client, a);
}
