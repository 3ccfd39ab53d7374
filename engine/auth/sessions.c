/*
 * sessions.c — user accounts over HTTP: the seed plan's authentication service.
 *
 *   POST /auth/register  {"username","password","role"}  admin only → 201
 *   POST /auth/login     {"username","password"} → access_token, token_type, expires_in,
 *                        refresh_token, scope, role (RFC 6749 §5.1 shape)
 *   POST /auth/logout    Bearer → 204; ends the server-side session (its access
 *                        tokens stop validating everywhere within seconds)
 *   GET  /auth/session   Bearer → the session: user, role, session id, expiry
 *   POST /auth/refresh   {"refresh_token"} → a new access token and a new refresh
 *                        token; the old one is spent. Presenting a spent refresh
 *                        token again is reuse (OAuth 2.0 Security BCP, RFC 9700
 *                        §4.14.2): the whole session is revoked.
 *   GET  /auth/verify    Bearer → 200 with the token's claims, or 401
 *
 * Bodies are JSON or application/x-www-form-urlencoded. Password checks (scrypt)
 * and all table access run as storage jobs, off the loop thread. Failures say
 * "invalid credentials" whatever the reason, except a locked account, which
 * answers 429 with Retry-After.
 *
 * Refresh tokens are "rt." + 64 hex characters; the tables keep only their
 * SHA-256, so a copy of the database does not hold usable tokens.
 */
#include "config.h"
#include "engine/auth/auth_int.h"

#include <json-c/json.h>
#include <stdio.h>
#include <string.h>

/* The FHIR scopes a login token carries, by role. The admin role bypasses scope
 * checks anyway (hv_auth_allow), so its scope is informative. */
const char *hv__auth_role_scope(unsigned role) {
    switch (role) {
    case HV_AUTH_ROLE_ADMIN:
    case HV_AUTH_ROLE_INTEGRATOR:
    case HV_AUTH_ROLE_CLINICIAN:
        return "user/*.cruds";
    case HV_AUTH_ROLE_AUDITOR:
        return "user/*.rs";
    default:
        return "";
    }
}


void hv__sjob_free(hv__sjob_t *j) {
    if (j == NULL) return;
    if (j->password) {
        memset(j->password, 0, j->plen);
        hv_free(j->password);
    }
    hv_free(j);
}

static int bind_exec(hv_db_t *db, const char *sql, const char *t1, const char *t2, const char *t3,
                     const char *t4, const char *t5, int64_t i6, int64_t i7) {
    hv_db_stmt_t *st = NULL;
    int rc = hv_db_prepare(db, sql, &st);
    if (rc != HV_OK) return rc;
    if (t1) hv_db_bind_text(st, 1, t1, strlen(t1));
    if (t2) hv_db_bind_text(st, 2, t2, strlen(t2));
    if (t3) hv_db_bind_text(st, 3, t3, strlen(t3));
    if (t4) hv_db_bind_text(st, 4, t4, strlen(t4));
    if (t5) hv_db_bind_text(st, 5, t5, strlen(t5));
    if (i6 >= 0) hv_db_bind_int64(st, 6, i6);
    if (i7 >= 0) hv_db_bind_int64(st, 7, i7);
    rc = hv_db_step(st);
    hv_db_done(st);
    return rc < 0 ? rc : HV_OK;
}

static int insert_refresh(hv_db_t *db, const char *hash, const char *sid, int64_t expires) {
    hv_db_stmt_t *st = NULL;
    int rc = hv_db_prepare(db, "INSERT INTO refresh_tokens (hash, session_id, expires) VALUES ($1, $2, $3)", &st);
    if (rc != HV_OK) return rc;
    hv_db_bind_text(st, 1, hash, strlen(hash));
    hv_db_bind_text(st, 2, sid, strlen(sid));
    hv_db_bind_int64(st, 3, expires);
    rc = hv_db_step(st);
    hv_db_done(st);
    return rc < 0 ? rc : HV_OK;
}

/* Records a revocation ("s:<sid>", "j:<jti>", "u:<user>") for every process. */
int hv__auth_revoke_db(hv_db_t *db, const char *id, int64_t expires) {
    hv_db_stmt_t *st = NULL;
    int rc = hv_db_prepare(db, hv_db_kind(db) == HV_DB_PG
                                   ? "INSERT INTO revoked (id, expires, at) VALUES ($1, $2, $3) ON CONFLICT (id) DO NOTHING"
                                   : "INSERT OR IGNORE INTO revoked (id, expires, at) VALUES ($1, $2, $3)",
                           &st);
    if (rc != HV_OK) return rc;
    hv_db_bind_text(st, 1, id, strlen(id));
    hv_db_bind_int64(st, 2, expires);
    hv_db_bind_int64(st, 3, (int64_t)hv_now_ms());
    rc = hv_db_step(st);
    hv_db_done(st);
    return rc < 0 ? rc : HV_OK;
}

/* Creates a session and its first refresh token (storage thread). */
int hv__auth_session_create(hv_db_t *db, const char *user, const char *client_id, const char *scope,
                            const char *patient, int64_t ttl, char *sid, char *refresh, int64_t *expires) {
    int64_t now = (int64_t)(hv_now_ms() / 1000);
    char hash[65], rnd[65];
    int rc;
    hv__auth_random_id(sid, 16);
    hv__auth_random_id(rnd, 32);
    snprintf(refresh, 72, "rt.%s", rnd);
    hv__auth_sha256_hex(refresh, strlen(refresh), hash);
    rc = bind_exec(db, "INSERT INTO sessions (id, username, client_id, scope, patient, created, expires) VALUES ($1,$2,$3,$4,$5,$6,$7)",
                   sid, user, client_id, scope, patient, now, now + ttl);
    if (rc == HV_OK) rc = insert_refresh(db, hash, sid, now + ttl);
    if (rc == HV_OK) *expires = now + ttl;
    return rc;
}

/*
 * Spends a refresh token (storage thread): on success j gets the session's user,
 * client, scope and patient and a new refresh token. A token already spent
 * revokes its session (reuse). client_id must match the session's ("" for logins).
 */
int hv__auth_refresh_job(hv_db_t *db, void *arg) {
    hv__sjob_t *j = arg;
    hv_db_stmt_t *st = NULL;
    int64_t now = (int64_t)(hv_now_ms() / 1000), used = 0, rexp = 0, sexp = 0, revoked = 0;
    char hash[65], rnd[65], client[HV_AUTH_MAX_ID] = "";
    size_t len;
    int rc;
    j->result = HV_EPERM;
    rc = hv_db_prepare(db, "SELECT r.used, r.expires, s.id, s.username, s.client_id, s.scope, s.patient, s.expires, s.revoked"
                           " FROM refresh_tokens r JOIN sessions s ON s.id = r.session_id WHERE r.hash = $1", &st);
    if (rc != HV_OK) return rc;
    hv_db_bind_text(st, 1, j->presented, strlen(j->presented));
    rc = hv_db_step(st);
    if (rc == HV_DB_ROW) {
        used = hv_db_column_int64(st, 0);
        rexp = hv_db_column_int64(st, 1);
        snprintf(j->sid, sizeof(j->sid), "%s", hv_db_column_text(st, 2, &len));
        snprintf(j->user, sizeof(j->user), "%s", hv_db_column_text(st, 3, &len));
        snprintf(client, sizeof(client), "%s", hv_db_column_text(st, 4, &len));
        snprintf(j->scope, sizeof(j->scope), "%s", hv_db_column_text(st, 5, &len));
        snprintf(j->patient, sizeof(j->patient), "%s", hv_db_column_text(st, 6, &len));
        sexp = hv_db_column_int64(st, 7);
        revoked = hv_db_column_int64(st, 8);
    }
    hv_db_done(st);
    if (rc < 0) return rc;
    if (rc != HV_DB_ROW) return HV_OK;          /* unknown token */
    if (strcmp(client, j->client_id) != 0) return HV_OK; /* another client's token */
    if (used) {
        j->reuse = 1;
        j->expires = sexp;
        rc = bind_exec(db, "UPDATE sessions SET revoked = 1 WHERE id = $1", j->sid, NULL, NULL, NULL, NULL, -1, -1);
        if (rc == HV_OK) {
            char id[80];
            snprintf(id, sizeof(id), "s:%s", j->sid);
            rc = hv__auth_revoke_db(db, id, sexp);
        }
        return rc;
    }
    if (revoked || rexp < now || sexp < now) return HV_OK;
    if (client[0] == '\0') {
        hv__user_t u;
        rc = hv__user_get(db, j->user, &u);
        if (rc == HV_ENOTFOUND || (rc == HV_OK && u.disabled)) return HV_OK;
        if (rc != HV_OK) return rc;
        snprintf(j->role, sizeof(j->role), "%s", u.role);
    }
    rc = bind_exec(db, "UPDATE refresh_tokens SET used = 1 WHERE hash = $1", j->presented, NULL, NULL, NULL, NULL, -1, -1);
    if (rc != HV_OK) return rc;
    hv__auth_random_id(rnd, 32);
    snprintf(j->refresh, sizeof(j->refresh), "rt.%s", rnd);
    hv__auth_sha256_hex(j->refresh, strlen(j->refresh), hash);
    rc = insert_refresh(db, hash, j->sid, sexp);
    if (rc != HV_OK) return rc;
    j->expires = sexp;
    j->result = HV_OK;
    return HV_OK;
}

hv__sjob_t *hv__sjob_new(hv__auth_t *a, hv_http_req_t *req) {
    hv__sjob_t *j = hv_calloc(1, sizeof(*j));
    if (j == NULL) {
        hv_http_respond_error(req, 503, "out_of_memory", "try again");
        return NULL;
    }
    j->a = a;
    j->req = req;
    return j;
}

void hv__sjob_submit(hv__sjob_t *j, hv_storage_job_cb job, hv_storage_done_cb done) {
    int rc = hv_storage_submit(j->a->storage, job, done, j);
    if (rc != HV_OK) {
        hv_http_header_add(j->req, "Retry-After", "1");
        hv_http_respond_error(j->req, 503, "busy", "the server is busy; retry");
        hv__sjob_free(j);
    }
}

/* Login attempts per IP: a separate, slower bucket than general traffic. */
int hv__auth_login_throttle(hv__auth_t *a, hv_http_req_t *req) {
    const char *peer = hv_http_req_peer(req), *colon = strrchr(peer, ':');
    char key[96];
    unsigned retry = 0;
    if (!a->enabled) return HV_OK;
    snprintf(key, sizeof(key), "login:%.*s", colon ? (int)(colon - peer) : (int)strlen(peer), peer);
    if (hv__ratelimit_take(a->rl, key, a->login_rate, a->login_burst, hv_now_ms(), &retry)) return HV_OK;
    {
        char v[16];
        snprintf(v, sizeof(v), "%u", retry);
        hv_http_header_add(req, "Retry-After", v);
    }
    hv_counter_add(a->c_limited, 1);
    hv__auth_oauth_error(req, 429, "slow_down", "too many attempts; retry later");
    return HV_EBUSY;
}

/* ---- POST /auth/login ---- */

static int job_login(hv_db_t *db, void *arg) {
    hv__sjob_t *j = arg;
    hv__user_t u;
    int rc = hv__user_check_login(db, j->user, j->password, j->plen, j->a->lock_threshold, j->a->lock_ms,
                                  j->a->scrypt_n, &u, &j->retry_ms);
    j->result = rc;
    if (rc == HV_EPERM || rc == HV_EBUSY) return HV_OK; /* keep the failure count */
    if (rc != HV_OK) return rc;
    snprintf(j->role, sizeof(j->role), "%s", u.role);
    return hv__auth_session_create(db, j->user, "", "", "", j->a->session_ttl, j->sid, j->refresh, &j->expires);
}

static void respond_tokens(hv__sjob_t *j, unsigned role) {
    hv_buf_t tok;
    struct json_object *o;
    const char *scope = hv__auth_role_scope(role);
    hv_buf_init(&tok, 0);
    if (hv__auth_token_issue(j->a, j->user, role, scope, j->sid, "", "", j->a->access_ttl, &tok, NULL) != HV_OK) {
        hv_buf_release(&tok);
        hv_http_respond_error(j->req, 500, "token_failed", "the token could not be made");
        return;
    }
    o = json_object_new_object();
    hv_json_set_str(o, "access_token", tok.data);
    hv_json_set_str(o, "token_type", "Bearer");
    hv_json_set_int(o, "expires_in", j->a->access_ttl);
    hv_json_set_str(o, "refresh_token", j->refresh);
    hv_json_set_str(o, "scope", scope);
    hv_json_set_str(o, "role", hv_auth_role_name(role));
    hv_json_set_str(o, "session_id", j->sid);
    hv_buf_release(&tok);
    hv_http_header_add(j->req, "Cache-Control", "no-store");
    hv_http_respond_json(j->req, 200, o);
}

static void done_login(int status, void *arg) {
    hv__sjob_t *j = arg;
    hv_audit_note(j->req, 'E', status == HV_OK && j->result == HV_OK ? "login" : "login-failure", status != HV_OK ? 8 : j->result == HV_OK ? 0 : 4, j->user, j->result == HV_EBUSY ? "account locked" : NULL);
    if (status != HV_OK) {
        hv_http_respond_error(j->req, 503, "storage_failed", "try again");
    } else if (j->result == HV_EBUSY) {
        char v[24];
        snprintf(v, sizeof(v), "%lld", (long long)((j->retry_ms + 999) / 1000));
        hv_http_header_add(j->req, "Retry-After", v);
        hv_counter_add(j->a->c_login_fail, 1);
        hv__auth_oauth_error(j->req, 429, "account_locked", "too many failed logins; retry later");
    } else if (j->result != HV_OK) {
        hv_counter_add(j->a->c_login_fail, 1);
        hv_log(HV_LOG_INFO, "auth.login_failed", "invalid credentials");
        hv__auth_oauth_error(j->req, 401, "invalid_grant", "invalid credentials");
    } else {
        hv_log(HV_LOG_INFO, "auth.login", "session started");
        respond_tokens(j, hv_auth_role_parse(j->role));
    }
    hv__sjob_free(j);
}

/* Reads username and password; answers 400 itself and returns NULL on bad input. */
static hv__sjob_t *read_credentials(hv__auth_t *a, hv_http_req_t *req) {
    int dup = 0;
    const char *u = hv__auth_param(req, "username", &dup), *p = hv__auth_param(req, "password", &dup);
    hv__sjob_t *j;
    if (dup || u == NULL || p == NULL || strlen(u) > HV__USERNAME_MAX || strlen(p) > HV__PASSWORD_MAX ||
        u[0] == '\0') {
        hv__auth_oauth_error(req, 400, "invalid_request", "username and password are required, once each");
        return NULL;
    }
    if ((j = hv__sjob_new(a, req)) == NULL) return NULL;
    snprintf(j->user, sizeof(j->user), "%s", u);
    j->plen = strlen(p);
    j->password = hv_strdup(p);
    if (j->password == NULL) {
        hv__sjob_free(j);
        hv_http_respond_error(req, 503, "out_of_memory", "try again");
        return NULL;
    }
    return j;
}

static void h_login(hv_http_req_t *req, void *ud) {
    hv__auth_t *a = ud;
    hv__sjob_t *j;
    if (hv__auth_login_throttle(a, req) != HV_OK) return;
    if ((j = read_credentials(a, req)) == NULL) return;
    hv__sjob_submit(j, job_login, done_login);
}

/* ---- POST /auth/register ---- */

static int job_register(hv_db_t *db, void *arg) {
    hv__sjob_t *j = arg;
    char hash[192];
    int rc = hv__password_hash(j->password, j->plen, j->a->scrypt_n, hash, sizeof(hash));
    if (rc != HV_OK) return rc;
    rc = hv__user_insert(db, j->user, j->role, hash);
    j->result = rc;
    return rc == HV_ECONFLICT ? HV_OK : rc;
}

static void done_register(int status, void *arg) {
    hv__sjob_t *j = arg;
    hv_audit_note(j->req, 'C', "user-registered", status == HV_OK && j->result == HV_OK ? 0 : 4, NULL, j->user);
    if (status != HV_OK) {
        hv_http_respond_error(j->req, 503, "storage_failed", "try again");
    } else if (j->result == HV_ECONFLICT) {
        hv_http_respond_error(j->req, 409, "conflict", "that user name is taken");
    } else {
        struct json_object *o = json_object_new_object();
        hv_json_set_str(o, "username", j->user);
        hv_json_set_str(o, "role", j->role);
        hv_log(HV_LOG_INFO, "auth.user_added", "a user was registered");
        hv_http_respond_json(j->req, 201, o);
    }
    hv__sjob_free(j);
}

static void h_register(hv_http_req_t *req, void *ud) {
    hv__auth_t *a = ud;
    const hv_auth_principal_t *p = hv_auth_principal(req);
    const char *role;
    int dup = 0;
    hv__sjob_t *j;
    if (a->enabled && p == NULL) {
        hv_http_header_add(req, "WWW-Authenticate", "Bearer realm=\"holovitals\"");
        hv_http_respond_error(req, 401, "unauthorized", "an admin token is required");
        return;
    }
    if (a->enabled && p->role != HV_AUTH_ROLE_ADMIN) {
        hv_http_respond_error(req, 403, "forbidden", "only admins register users");
        return;
    }
    role = hv__auth_param(req, "role", &dup);
    if (dup || role == NULL || hv_auth_role_parse(role) == 0) {
        hv_http_respond_error(req, 400, "invalid_request",
                              "role must be one of admin, integrator, clinician, auditor, service");
        return;
    }
    if ((j = read_credentials(a, req)) == NULL) return;
    if (!hv__username_valid(j->user) || j->plen < 8) {
        hv_http_respond_error(req, 400, "invalid_request",
                              "user names are 1-64 of A-Z a-z 0-9 . _ - @; passwords have 8 or more characters");
        hv__sjob_free(j);
        return;
    }
    snprintf(j->role, sizeof(j->role), "%s", role);
    hv__sjob_submit(j, job_register, done_register);
}

/* ---- POST /auth/refresh ---- */

static void done_refresh(int status, void *arg) {
    hv__sjob_t *j = arg;
    if (status != HV_OK) {
        hv_http_respond_error(j->req, 503, "storage_failed", "try again");
    } else if (j->reuse) {
        char id[80];
        snprintf(id, sizeof(id), "s:%s", j->sid);
        hv__auth_revoke_mem(j->a, id, j->expires);
        hv_log(HV_LOG_WARN, "auth.refresh_reuse", "a spent refresh token was presented: session revoked");
        hv__auth_oauth_error(j->req, 401, "invalid_grant", "invalid refresh token");
    } else if (j->result != HV_OK) {
        hv__auth_oauth_error(j->req, 401, "invalid_grant", "invalid refresh token");
    } else {
        respond_tokens(j, hv_auth_role_parse(j->role));
    }
    hv__sjob_free(j);
}

static void h_refresh(hv_http_req_t *req, void *ud) {
    hv__auth_t *a = ud;
    int dup = 0;
    const char *rt = hv__auth_param(req, "refresh_token", &dup);
    hv__sjob_t *j;
    if (dup || rt == NULL || strlen(rt) > 200) {
        hv__auth_oauth_error(req, 400, "invalid_request", "refresh_token is required, once");
        return;
    }
    if ((j = hv__sjob_new(a, req)) == NULL) return;
    hv__auth_sha256_hex(rt, strlen(rt), j->presented);
    hv__sjob_submit(j, hv__auth_refresh_job, done_refresh);
}

/* ---- POST /auth/logout ---- */

static int job_logout(hv_db_t *db, void *arg) {
    hv__sjob_t *j = arg;
    char id[80];
    int rc = HV_OK;
    if (j->sid[0]) {
        rc = bind_exec(db, "UPDATE sessions SET revoked = 1 WHERE id = $1", j->sid, NULL, NULL, NULL, NULL, -1, -1);
        snprintf(id, sizeof(id), "s:%s", j->sid);
        if (rc == HV_OK) rc = hv__auth_revoke_db(db, id, j->expires);
    }
    snprintf(id, sizeof(id), "j:%s", j->jti);
    if (rc == HV_OK) rc = hv__auth_revoke_db(db, id, j->jti_exp);
    return rc;
}

static void done_logout(int status, void *arg) {
    hv__sjob_t *j = arg;
    hv_audit_note(j->req, 'E', "logout", status == HV_OK ? 0 : 8, NULL, NULL);
    char id[80];
    if (status != HV_OK) {
        hv_http_respond_error(j->req, 503, "storage_failed", "try again");
    } else {
        if (j->sid[0]) {
            snprintf(id, sizeof(id), "s:%s", j->sid);
            hv__auth_revoke_mem(j->a, id, j->expires);
        }
        snprintf(id, sizeof(id), "j:%s", j->jti);
        hv__auth_revoke_mem(j->a, id, j->jti_exp);
        hv_http_respond(j->req, 204, NULL, NULL, 0);
    }
    hv__sjob_free(j);
}

static int need_principal(hv__auth_t *a, hv_http_req_t *req, const hv_auth_principal_t **out) {
    const hv_auth_principal_t *p = hv_auth_principal(req);
    (void)a;
    if (p == NULL) {
        hv_http_header_add(req, "WWW-Authenticate", "Bearer realm=\"holovitals\"");
        hv_http_respond_error(req, 401, "unauthorized", "a Bearer access token is required");
        return HV_EPERM;
    }
    *out = p;
    return HV_OK;
}

static void h_logout(hv_http_req_t *req, void *ud) {
    hv__auth_t *a = ud;
    const hv_auth_principal_t *p;
    hv__sjob_t *j;
    if (need_principal(a, req, &p) != HV_OK) return;
    if ((j = hv__sjob_new(a, req)) == NULL) return;
    snprintf(j->sid, sizeof(j->sid), "%s", p->sid);
    snprintf(j->jti, sizeof(j->jti), "%s", p->jti);
    j->jti_exp = p->exp + a->leeway;
    /* the session may outlive this token: keep its revocation as long as a session lives */
    j->expires = (int64_t)(hv_now_ms() / 1000) + (a->session_ttl > a->refresh_ttl ? a->session_ttl : a->refresh_ttl);
    hv__sjob_submit(j, job_logout, done_logout);
}

/* ---- GET /auth/session, GET /auth/verify ---- */

static struct json_object *claims_json(const hv_auth_principal_t *p) {
    struct json_object *o = json_object_new_object();
    hv_json_set(o, "active", json_object_new_boolean(1));
    hv_json_set_str(o, "sub", p->sub);
    if (p->role) hv_json_set_str(o, "role", hv_auth_role_name(p->role));
    if (p->client_id[0]) hv_json_set_str(o, "client_id", p->client_id);
    if (p->patient[0]) hv_json_set_str(o, "patient", p->patient);
    if (p->sid[0]) hv_json_set_str(o, "session_id", p->sid);
    hv_json_set_int(o, "exp", p->exp);
    return o;
}

static void h_session(hv_http_req_t *req, void *ud) {
    const hv_auth_principal_t *p;
    struct json_object *o;
    if (need_principal(ud, req, &p) != HV_OK) return;
    if (p->sid[0] == '\0') {
        hv_http_respond_error(req, 404, "not_found", "this token has no session");
        return;
    }
    o = claims_json(p);
    hv_json_set_str(o, "username", p->sub);
    hv_http_header_add(req, "Cache-Control", "no-store");
    hv_http_respond_json(req, 200, o);
}

static void h_verify(hv_http_req_t *req, void *ud) {
    const hv_auth_principal_t *p;
    if (need_principal(ud, req, &p) != HV_OK) return;
    hv_http_header_add(req, "Cache-Control", "no-store");
    hv_http_respond_json(req, 200, claims_json(p));
}

int hv__auth_sessions_routes(hv__auth_t *a) {
    hv_router_t *r = hv_engine_router(a->e);
    int rc = hv_router_add(r, HV_HTTP_POST, "/auth/login", h_login, a);
    if (rc == HV_OK) rc = hv_router_add(r, HV_HTTP_POST, "/auth/register", h_register, a);
    if (rc == HV_OK) rc = hv_router_add(r, HV_HTTP_POST, "/auth/logout", h_logout, a);
    if (rc == HV_OK) rc = hv_router_add(r, HV_HTTP_POST, "/auth/refresh", h_refresh, a);
    if (rc == HV_OK) rc = hv_router_add(r, HV_HTTP_GET, "/auth/session", h_session, a);
    if (rc == HV_OK) rc = hv_router_add(r, HV_HTTP_GET, "/auth/verify", h_verify, a);
    return rc;
}
