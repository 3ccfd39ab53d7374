/*
 * admin.c — managing users and SMART clients over HTTP (the console's
 * Administration view; the CLI `user …` and `client …` do the same locally):
 *
 *   GET  /auth/users                       {"users": [{"username", "role", "disabled", "locked", "created"}]}
 *   POST /auth/users/:name/disable         ends the user's sessions and access tokens everywhere
 *   POST /auth/users/:name/enable
 *   PUT  /auth/users/:name/role            {"role"}
 *   POST /auth/users/:name/password        {"password"} (8 or more characters; scrypt)
 *   GET  /auth/clients                     {"clients": [{"client_id", "name", "type", "redirect_uris",
 *                                           "scope", "disabled", "created"}]} — never a secret or key
 *   POST /auth/clients/:id/revoke          disables the client: it gets no new tokens
 *
 * Admins only (the paths are under /auth, whose endpoints check their callers
 * themselves): 401 without a token, 403 for other roles. Every change is logged at
 * info level with the names involved (account names are not PHI), never a password.
 */
#include "config.h"
#include "engine/auth/auth_int.h"

#include <json-c/json.h>
#include <stdio.h>
#include <string.h>

#define MAX_LIST 1000

enum { OP_USERS, OP_DISABLE, OP_ENABLE, OP_ROLE, OP_PASSWORD, OP_CLIENTS, OP_REVOKE };

typedef struct ajob {
    hv__auth_t *a;
    hv_http_req_t *req;
    int op;
    char name[HV_AUTH_MAX_ID];
    char role[16];
    char *password; /* OP_PASSWORD: hashed on the storage thread, then wiped */
    size_t plen;
    char hash[192];
    int found;
    int64_t horizon;
    struct json_object *out;
} ajob_t;

static int admin_only(hv__auth_t *a, hv_http_req_t *req) {
    const hv_auth_principal_t *p = hv_auth_principal(req);
    if (!a->enabled) return 1;
    if (p == NULL) {
        hv_http_header_add(req, "WWW-Authenticate", "Bearer realm=\"holovitals\"");
        hv_http_respond_error(req, 401, "unauthorized", "an admin token is required");
        return 0;
    }
    if (p->role != HV_AUTH_ROLE_ADMIN) {
        hv_http_respond_error(req, 403, "forbidden", "only admins manage users and clients");
        return 0;
    }
    return 1;
}

static int exec_name(hv_db_t *db, const char *sql, const char *a1, const char *a2, int *changed) {
    hv_db_stmt_t *st = NULL;
    int rc = hv_db_prepare(db, sql, &st);
    if (rc == HV_OK) rc = hv_db_bind_text(st, 1, a1, strlen(a1));
    if (rc == HV_OK && a2 != NULL) rc = hv_db_bind_text(st, 2, a2, strlen(a2));
    if (rc == HV_OK) rc = hv_db_step(st);
    if (rc >= 0 && changed != NULL) *changed = hv_db_changes(db) > 0;
    if (st != NULL) hv_db_done(st);
    return rc < 0 ? rc : HV_OK;
}

static struct json_object *col_str(hv_db_stmt_t *st, int col) {
    size_t n = 0;
    const char *t = hv_db_column_text(st, col, &n);
    return json_object_new_string_len(t ? t : "", (int)n);
}

static int list_users(hv_db_t *db, ajob_t *j) {
    hv_db_stmt_t *st = NULL;
    struct json_object *arr = json_object_new_array();
    int64_t now = (int64_t)hv_now_ms();
    int rc = hv_db_prepare(db, "SELECT name, role, disabled, locked_until, created FROM users ORDER BY name LIMIT $1", &st);
    if (rc == HV_OK) rc = hv_db_bind_int64(st, 1, MAX_LIST);
    while (rc == HV_OK && (rc = hv_db_step(st)) == HV_DB_ROW) {
        struct json_object *u = json_object_new_object();
        char when[40];
        hv_json_set(u, "username", col_str(st, 0));
        hv_json_set(u, "role", col_str(st, 1));
        hv_json_set(u, "disabled", json_object_new_boolean(hv_db_column_int64(st, 2) != 0));
        hv_json_set(u, "locked", json_object_new_boolean(hv_db_column_int64(st, 3) > now));
        hv_time_rfc3339((uint64_t)hv_db_column_int64(st, 4) * 1000u, when, sizeof when); /* stored in s */
        hv_json_set_str(u, "created", when);
        json_object_array_add(arr, u);
        rc = HV_OK;
    }
    if (st != NULL) hv_db_done(st);
    j->out = json_object_new_object();
    hv_json_set(j->out, "users", arr);
    return rc == HV_OK || rc == HV_DB_ROW ? HV_OK : rc;
}

static int list_clients(hv_db_t *db, ajob_t *j) {
    hv_db_stmt_t *st = NULL;
    struct json_object *arr = json_object_new_array();
    int rc = hv_db_prepare(db, "SELECT client_id, name, type, redirect_uris, scope, disabled, created FROM clients"
                               " ORDER BY client_id LIMIT $1", &st);
    if (rc == HV_OK) rc = hv_db_bind_int64(st, 1, MAX_LIST);
    while (rc == HV_OK && (rc = hv_db_step(st)) == HV_DB_ROW) {
        struct json_object *c = json_object_new_object(), *uris = json_object_new_array();
        size_t n = 0;
        const char *t = hv_db_column_text(st, 3, &n), *end = t ? t + n : NULL;
        char when[40];
        /* redirect_uris are stored one per line. */
        while (t != NULL && t < end) {
            const char *nl = memchr(t, '\n', (size_t)(end - t));
            size_t len = nl ? (size_t)(nl - t) : (size_t)(end - t);
            if (len > 0) json_object_array_add(uris, json_object_new_string_len(t, (int)len));
            t = nl ? nl + 1 : end;
        }
        hv_json_set(c, "client_id", col_str(st, 0));
        hv_json_set(c, "name", col_str(st, 1));
        hv_json_set(c, "type", col_str(st, 2));
        hv_json_set(c, "redirect_uris", uris);
        hv_json_set(c, "scope", col_str(st, 4));
        hv_json_set(c, "disabled", json_object_new_boolean(hv_db_column_int64(st, 5) != 0));
        hv_time_rfc3339((uint64_t)hv_db_column_int64(st, 6) * 1000u, when, sizeof when); /* stored in s */
        hv_json_set_str(c, "created", when);
        json_object_array_add(arr, c);
        rc = HV_OK;
    }
    if (st != NULL) hv_db_done(st);
    j->out = json_object_new_object();
    hv_json_set(j->out, "clients", arr);
    return rc == HV_OK || rc == HV_DB_ROW ? HV_OK : rc;
}

static int job(hv_db_t *db, void *arg) {
    ajob_t *j = arg;
    char id[HV_AUTH_MAX_ID + 3];
    int rc = HV_OK;
    switch (j->op) {
    case OP_USERS: return list_users(db, j);
    case OP_CLIENTS: return list_clients(db, j);
    case OP_DISABLE:
        rc = exec_name(db, "UPDATE users SET disabled = 1 WHERE name = $1", j->name, NULL, &j->found);
        /* The user's sessions and current access tokens end everywhere (as `user disable`). */
        snprintf(id, sizeof id, "u:%s", j->name);
        if (rc == HV_OK && j->found) rc = hv__auth_revoke_db(db, id, j->horizon);
        if (rc == HV_OK && j->found)
            rc = exec_name(db, "UPDATE sessions SET revoked = 1 WHERE username = $1", j->name, NULL, NULL);
        return rc;
    case OP_ENABLE:
        rc = exec_name(db, "UPDATE users SET disabled = 0, failures = 0, locked_until = 0 WHERE name = $1", j->name,
                       NULL, &j->found);
        snprintf(id, sizeof id, "u:%s", j->name);
        if (rc == HV_OK && j->found) rc = exec_name(db, "UPDATE revoked SET expires = 0 WHERE id = $1", id, NULL, NULL);
        return rc;
    case OP_ROLE: return exec_name(db, "UPDATE users SET role = $2 WHERE name = $1", j->name, j->role, &j->found);
    case OP_PASSWORD:
        /* scrypt takes tens of milliseconds: here, on the storage thread, not on the loop. */
        if (hv__password_hash(j->password, j->plen, j->a->scrypt_n, j->hash, sizeof j->hash) != HV_OK)
            return HV_EIO;
        return exec_name(db, "UPDATE users SET hash = $2 WHERE name = $1", j->name, j->hash, &j->found);
    case OP_REVOKE:
        return exec_name(db, "UPDATE clients SET disabled = 1 WHERE client_id = $1", j->name, NULL, &j->found);
    default: return HV_EINVAL;
    }
}

static void job_free(ajob_t *j) {
    if (j->out != NULL) json_object_put(j->out);
    if (j->password != NULL) {
        explicit_bzero(j->password, j->plen);
        hv_free(j->password);
    }
    explicit_bzero(j->hash, sizeof j->hash);
    hv_free(j);
}

static void done(int status, void *arg) {
    ajob_t *j = arg;
    static const char *const what[] = {"", "auth.user_disabled", "auth.user_enabled", "auth.user_role",
                                       "auth.user_password", "", "auth.client_revoked"};
    if (status != HV_OK) {
        hv_http_respond_error(j->req, 503, "storage_failed", "try again");
    } else if (j->op == OP_USERS || j->op == OP_CLIENTS) {
        hv_http_respond_json(j->req, 200, j->out); /* takes out */
        j->out = NULL;
    } else if (!j->found) {
        hv_http_respond_error(j->req, 404, "not_found", "no such %s", j->op == OP_REVOKE ? "client" : "user");
    } else {
        if (j->op == OP_DISABLE) {
            char id[HV_AUTH_MAX_ID + 3];
            snprintf(id, sizeof id, "u:%s", j->name);
            hv__auth_revoke_mem(j->a, id, j->horizon);
        }
        hv_log(HV_LOG_INFO, what[j->op], "%s %s by an admin", j->op == OP_REVOKE ? "client" : "user", j->name);
        hv_http_respond(j->req, 204, NULL, NULL, 0);
    }
    job_free(j);
}

static void submit(hv__auth_t *a, hv_http_req_t *req, ajob_t *j) {
    if (hv_storage_submit(a->storage, job, done, j) != HV_OK) {
        hv_http_header_add(req, "Retry-After", "1");
        hv_http_respond_error(req, 503, "busy", "the server is busy; retry");
        job_free(j);
    }
}

static ajob_t *start(hv__auth_t *a, hv_http_req_t *req, int op) {
    ajob_t *j;
    const char *name = hv_http_req_param(req, "name");
    if (name == NULL) name = hv_http_req_param(req, "id");
    if (!admin_only(a, req)) return NULL;
    j = hv_calloc(1, sizeof *j);
    if (j == NULL) {
        hv_http_respond_error(req, 503, "out_of_memory", "try again");
        return NULL;
    }
    j->a = a;
    j->req = req;
    j->op = op;
    if (name != NULL) {
        if (strlen(name) >= sizeof j->name) {
            hv_free(j);
            hv_http_respond_error(req, 404, "not_found", "no such %s", op == OP_REVOKE ? "client" : "user");
            return NULL;
        }
        snprintf(j->name, sizeof j->name, "%s", name);
    }
    j->horizon = (int64_t)(hv_now_ms() / 1000) + a->access_ttl + 3600;
    return j;
}

static struct json_object *body_json(hv_http_req_t *req) {
    size_t len = 0;
    const char *b = hv_http_req_body(req, &len);
    struct json_object *o = NULL;
    hv_error_t err;
    if (b == NULL || hv_json_parse(b, len, "body", &o, &err) != HV_OK || !json_object_is_type(o, json_type_object)) {
        json_object_put(o);
        hv_http_respond_error(req, 400, "invalid_request", "the body must be a JSON object");
        return NULL;
    }
    return o;
}

static void h_users(hv_http_req_t *req, void *ud) {
    ajob_t *j = start(ud, req, OP_USERS);
    if (j != NULL) submit(ud, req, j);
}

static void h_clients(hv_http_req_t *req, void *ud) {
    ajob_t *j = start(ud, req, OP_CLIENTS);
    if (j != NULL) submit(ud, req, j);
}

static void h_user_action(hv_http_req_t *req, void *ud) {
    const char *path = hv_http_req_path(req);
    size_t n = strlen(path);
    int op = n > 8 && strcmp(path + n - 8, "/disable") == 0 ? OP_DISABLE : OP_ENABLE;
    ajob_t *j = start(ud, req, op);
    if (j != NULL) submit(ud, req, j);
}

static void h_role(hv_http_req_t *req, void *ud) {
    struct json_object *o;
    const char *role;
    ajob_t *j = start(ud, req, OP_ROLE);
    if (j == NULL) return;
    if ((o = body_json(req)) == NULL) {
        hv_free(j);
        return;
    }
    role = hv_json_get_str(o, "role");
    if (role == NULL || hv_auth_role_parse(role) == 0) {
        json_object_put(o);
        hv_free(j);
        hv_http_respond_error(req, 400, "invalid_request",
                              "role must be one of admin, integrator, clinician, auditor, service");
        return;
    }
    snprintf(j->role, sizeof j->role, "%s", role);
    json_object_put(o);
    submit(ud, req, j);
}

static void h_password(hv_http_req_t *req, void *ud) {
    hv__auth_t *a = ud;
    struct json_object *o;
    const char *pw;
    ajob_t *j = start(a, req, OP_PASSWORD);
    if (j == NULL) return;
    if ((o = body_json(req)) == NULL) {
        hv_free(j);
        return;
    }
    pw = hv_json_get_str(o, "password");
    if (pw == NULL || strlen(pw) < 8) {
        json_object_put(o);
        hv_free(j);
        hv_http_respond_error(req, 400, "invalid_request", "passwords have 8 or more characters");
        return;
    }
    j->plen = strlen(pw);
    j->password = hv_strdup(pw);
    json_object_put(o);
    if (j->password == NULL) {
        job_free(j);
        hv_http_respond_error(req, 503, "out_of_memory", "try again");
        return;
    }
    submit(a, req, j);
}

static void h_revoke(hv_http_req_t *req, void *ud) {
    ajob_t *j = start(ud, req, OP_REVOKE);
    if (j != NULL) submit(ud, req, j);
}

int hv__auth_admin_routes(hv__auth_t *a) {
    hv_router_t *r = hv_engine_router(a->e);
    int rc;
    if (r == NULL) return HV_OK;
    rc = hv_router_add(r, HV_HTTP_GET, "/auth/users", h_users, a);
    if (rc == HV_OK) rc = hv_router_add(r, HV_HTTP_POST, "/auth/users/:name/disable", h_user_action, a);
    if (rc == HV_OK) rc = hv_router_add(r, HV_HTTP_POST, "/auth/users/:name/enable", h_user_action, a);
    if (rc == HV_OK) rc = hv_router_add(r, HV_HTTP_PUT, "/auth/users/:name/role", h_role, a);
    if (rc == HV_OK) rc = hv_router_add(r, HV_HTTP_POST, "/auth/users/:name/password", h_password, a);
    if (rc == HV_OK) rc = hv_router_add(r, HV_HTTP_GET, "/auth/clients", h_clients, a);
    if (rc == HV_OK) rc = hv_router_add(r, HV_HTTP_POST, "/auth/clients/:id/revoke", h_revoke, a);
    return rc;
}
