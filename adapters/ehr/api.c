/*
 * api.c — the /ehr HTTP API (issue #12's contract; docs/ehr.md, docs/openapi.yaml).
 * The auth module's guard lets only the admin and integrator roles through
 * (engine/auth/guard.c). Keys and secrets are sealed before anything is stored
 * and no answer ever carries them: connections report has_private_key and
 * has_client_secret instead.
 *
 *   POST /ehr/connect       201 {"id"} (200 when "id" names an existing connection:
 *                           its settings and keys are replaced — key rotation)
 *   GET  /ehr/connections   {"connections": [...]}
 *   POST /ehr/sync/:id      {"mode"} → 202 {"run_id"}; 409 while a run is active
 *   GET  /ehr/sync-history  ?connection=&limit= → {"runs": [...]} newest first
 *   GET  /ehr/conflicts     ?connection=&limit= → {"conflicts": [...]} newest first
 *   GET  /ehr/providers     {"providers": [...], "other": [...]}
 *   POST /ehr/disconnect    {"id"} → 200; 409 while a run is active
 */
#include "config.h"
#include "adapters/ehr/ehr_int.h"
#include "engine/auth/auth.h"
#include "fhir/fhir.h"

#include <json-c/json.h>
#include <openssl/crypto.h>
#include <stdlib.h>
#include <string.h>

#define MAX_TYPES 64

void hv__ehr_conn_json(const hv__ehr_conn_t *c, json_object *o) {
    char ts[40];
    hv_json_set_str(o, "id", c->id);
    hv_json_set_str(o, "vendor", c->vendor->name);
    hv_json_set_str(o, "base_url", c->base_url);
    if (c->client_id) hv_json_set_str(o, "client_id", c->client_id);
    if (c->scopes) hv_json_set_str(o, "scopes", c->scopes);
    hv_json_set(o, "resource_types", json_object_get(c->types));
    hv_json_set_str(o, "schedule", c->schedule_text ? c->schedule_text : "manual");
    hv_json_set_str(o, "conflict_policy", c->conflict);
    hv_json_set(o, "has_private_key", json_object_new_boolean(c->key_sealed != NULL));
    hv_json_set(o, "has_client_secret", json_object_new_boolean(c->secret_sealed != NULL));
    if (c->key_id) hv_json_set_str(o, "key_id", c->key_id);
    if (c->alg) hv_json_set_str(o, "alg", c->alg);
    if (c->group_id) hv_json_set_str(o, "group_id", c->group_id);
    if (c->token_url) hv_json_set_str(o, "token_url", c->token_url);
    hv_json_set_int(o, "page_size", c->page_size);
    hv_json_set(o, "rate_limit", json_object_new_double(c->rate));
    hv_json_set(o, "verify_tls", json_object_new_boolean(c->verify_tls));
    hv_time_rfc3339((uint64_t)c->created_at, ts, sizeof(ts));
    hv_json_set_str(o, "created_at", ts);
    if (c->since_ms > 0) {
        hv_time_rfc3339((uint64_t)c->since_ms, ts, sizeof(ts));
        hv_json_set_str(o, "incremental_since", ts);
    }
    if (c->next_run_at > 0) {
        hv_time_rfc3339((uint64_t)c->next_run_at, ts, sizeof(ts));
        hv_json_set_str(o, "next_run_at", ts);
    }
    if (c->active) hv_json_set_str(o, "active_run", c->active->id);
}

static int starts_with(const char *s, const char *p) { return strncmp(s, p, strlen(p)) == 0; }

/* Reads an optional string member; HV_EINVAL (with err) when present but not a string. */
static int opt_str(json_object *o, const char *k, const char **out, hv_error_t *err) {
    json_object *v = NULL;
    *out = NULL;
    if (!json_object_object_get_ex(o, k, &v) || json_object_is_type(v, json_type_null)) return HV_OK;
    if (!json_object_is_type(v, json_type_string)) {
        hv_error_set(err, HV_EINVAL, k, "\"%s\" must be a string", k);
        return HV_EINVAL;
    }
    *out = json_object_get_string(v);
    return HV_OK;
}

typedef struct connect_ctx {
    hv_http_req_t *req;
    hv__ehr_t *m;
    char id[HV__EHR_ID_MAX];
    int replaced;
} connect_ctx_t;

static void connect_saved(int status, void *ud) {
    connect_ctx_t *x = ud;
    if (status != HV_OK) {
        hv_http_respond_error(x->req, 503, "storage", "the connection could not be stored");
    } else {
        json_object *o = json_object_new_object();
        hv_json_set_str(o, "id", x->id);
        hv_http_respond_json(x->req, x->replaced ? 200 : 201, o);
    }
    hv_free(x);
}

/* Builds a connection from the request body; fills err on bad input. */
static int conn_from_json(hv__ehr_t *m, json_object *body, const char *id, hv__ehr_conn_t **out, hv_error_t *err) {
    hv__ehr_conn_t *c = hv_calloc(1, sizeof(*c));
    const char *vendor, *base, *client_id, *pem, *secret, *scopes, *schedule, *conflict, *kid, *alg, *group, *token_url;
    json_object *v = NULL;
    int rc = HV_EINVAL;
    size_t i;
    if (c == NULL) return HV_ENOMEM;
    if (opt_str(body, "vendor", &vendor, err) || opt_str(body, "base_url", &base, err) ||
        opt_str(body, "client_id", &client_id, err) || opt_str(body, "private_key_pem", &pem, err) ||
        opt_str(body, "client_secret", &secret, err) || opt_str(body, "scopes", &scopes, err) ||
        opt_str(body, "schedule", &schedule, err) || opt_str(body, "conflict_policy", &conflict, err) ||
        opt_str(body, "key_id", &kid, err) || opt_str(body, "alg", &alg, err) ||
        opt_str(body, "group_id", &group, err) || opt_str(body, "token_url", &token_url, err))
        goto out;
    snprintf(c->id, sizeof(c->id), "%s", id);
    c->vendor = hv_ehr_vendor_find(vendor);
    if (c->vendor == NULL) {
        hv_error_set(err, HV_EINVAL, "vendor", "\"vendor\" is one of epic, cerner, fhir");
        goto out;
    }
    if (base == NULL || !(starts_with(base, "https://") || starts_with(base, "http://")) || strlen(base) > 1024) {
        hv_error_set(err, HV_EINVAL, "base_url", "\"base_url\" is the FHIR R4 base URL (https://…)");
        goto out;
    }
    if (c->vendor->check_base_url && c->vendor->check_base_url(base, err) != HV_OK) goto out;
    c->base_url = hv_strdup(base);
    if (c->base_url == NULL) goto nomem;
    while (strlen(c->base_url) > 8 && c->base_url[strlen(c->base_url) - 1] == '/') c->base_url[strlen(c->base_url) - 1] = '\0';
    if (token_url != NULL && !(starts_with(token_url, "https://") || starts_with(token_url, "http://"))) {
        hv_error_set(err, HV_EINVAL, "token_url", "\"token_url\" is an http(s) URL");
        goto out;
    }
    if (pem != NULL && secret != NULL) {
        hv_error_set(err, HV_EINVAL, "client_secret", "give \"private_key_pem\" or \"client_secret\", not both");
        goto out;
    }
    if (c->vendor->credentials == 1 && pem == NULL) {
        hv_error_set(err, HV_EINVAL, "private_key_pem", "%s needs \"private_key_pem\" (backend services)", c->vendor->display);
        goto out;
    }
    if (c->vendor->credentials == 2 && pem == NULL && secret == NULL) {
        hv_error_set(err, HV_EINVAL, "client_secret", "%s needs \"client_secret\" or \"private_key_pem\"", c->vendor->display);
        goto out;
    }
    if ((pem != NULL || secret != NULL) && (client_id == NULL || client_id[0] == '\0')) {
        hv_error_set(err, HV_EINVAL, "client_id", "\"client_id\" is required with credentials");
        goto out;
    }
    alg = alg ? alg : c->vendor->assertion_alg;
    if (strcmp(alg, "RS384") != 0 && strcmp(alg, "ES384") != 0) {
        hv_error_set(err, HV_EINVAL, "alg", "\"alg\" is RS384 or ES384 (SMART backend services)");
        goto out;
    }
    if (pem != NULL) {
        /* The key must sign with alg now, not at the first sync. */
        json_object *probe = json_object_new_object();
        hv_buf_t tok;
        hv_buf_init(&tok, 16384);
        hv_json_set_str(probe, "probe", "1");
        rc = hv_auth_jwt_sign_pem(pem, strlen(pem), alg, NULL, probe, &tok);
        json_object_put(probe);
        hv_buf_release(&tok);
        if (rc != HV_OK) {
            hv_error_set(err, HV_EINVAL, "private_key_pem",
                         "\"private_key_pem\" is not an unencrypted PEM private key that can sign %s", alg);
            rc = HV_EINVAL;
            goto out;
        }
        rc = hv_ehr_seal(m->kek, c->id, pem, strlen(pem), &c->key_sealed, &c->key_sealed_len);
        if (rc != HV_OK) goto out;
        rc = HV_EINVAL;
    }
    if (secret != NULL && hv_ehr_seal(m->kek, c->id, secret, strlen(secret), &c->secret_sealed, &c->secret_sealed_len) != HV_OK)
        goto nomem;
    c->alg = hv_strdup(alg);
    c->client_id = client_id ? hv_strdup(client_id) : NULL;
    c->scopes = hv_strdup(scopes ? scopes : "system/*.read");
    c->key_id = kid ? hv_strdup(kid) : NULL;
    if (group != NULL && (strlen(group) == 0 || strlen(group) > 64 || strspn(group, "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
                                                                              "abcdefghijklmnopqrstuvwxyz0123456789-.") !=
                                                                           strlen(group))) {
        hv_error_set(err, HV_EINVAL, "group_id", "\"group_id\" is a FHIR id ([A-Za-z0-9.-], 1 to 64)");
        goto out;
    }
    c->group_id = group ? hv_strdup(group) : NULL;
    c->token_url = token_url ? hv_strdup(token_url) : NULL;
    schedule = schedule ? schedule : "daily";
    if (hv_ehr_schedule_parse(schedule, &c->schedule, err) != HV_OK) {
        snprintf(err->location, sizeof(err->location), "schedule");
        goto out;
    }
    c->schedule_text = hv_strdup(schedule);
    conflict = conflict ? conflict : "ehr-wins";
    if (strcmp(conflict, "ehr-wins") != 0 && strcmp(conflict, "local-wins") != 0 && strcmp(conflict, "keep-both") != 0) {
        hv_error_set(err, HV_EINVAL, "conflict_policy", "\"conflict_policy\" is ehr-wins, local-wins or keep-both");
        goto out;
    }
    c->conflict = hv_strdup(conflict);
    c->types = json_object_new_array();
    if (c->alg == NULL || c->scopes == NULL || c->schedule_text == NULL || c->conflict == NULL || c->types == NULL)
        goto nomem;
    if (json_object_object_get_ex(body, "resource_types", &v)) {
        if (!json_object_is_type(v, json_type_array) || json_object_array_length(v) == 0 ||
            json_object_array_length(v) > MAX_TYPES) {
            hv_error_set(err, HV_EINVAL, "resource_types", "\"resource_types\" is a list of 1 to %d resource types", MAX_TYPES);
            goto out;
        }
        for (i = 0; i < json_object_array_length(v); i++) {
            json_object *t = json_object_array_get_idx(v, i);
            if (!json_object_is_type(t, json_type_string) || hv_fhir_resource_type(json_object_get_string(t)) == NULL) {
                hv_error_set(err, HV_EINVAL, "resource_types", "resource_types[%zu] is not a FHIR R4 resource type", i);
                goto out;
            }
            json_object_array_add(c->types, json_object_new_string(json_object_get_string(t)));
        }
    } else {
        json_object_array_add(c->types, json_object_new_string("Patient"));
    }
    c->page_size = c->vendor->default_page_size;
    if (json_object_object_get_ex(body, "page_size", &v)) {
        int64_t n = json_object_get_int64(v);
        if (!json_object_is_type(v, json_type_int) || n < 1 || n > c->vendor->max_page_size) {
            hv_error_set(err, HV_EINVAL, "page_size", "\"page_size\" is 1 to %d for %s", c->vendor->max_page_size,
                         c->vendor->display);
            goto out;
        }
        c->page_size = (int)n;
    }
    c->rate = m->rate_default;
    if (json_object_object_get_ex(body, "rate_limit", &v)) {
        double d = json_object_get_double(v);
        if (!(json_object_is_type(v, json_type_int) || json_object_is_type(v, json_type_double)) || d < 0 || d > 10000) {
            hv_error_set(err, HV_EINVAL, "rate_limit", "\"rate_limit\" is requests per second, 0 (none) to 10000");
            goto out;
        }
        c->rate = d;
    }
    c->verify_tls = 1;
    if (json_object_object_get_ex(body, "verify_tls", &v)) {
        if (!json_object_is_type(v, json_type_boolean)) {
            hv_error_set(err, HV_EINVAL, "verify_tls", "\"verify_tls\" is true or false");
            goto out;
        }
        c->verify_tls = json_object_get_boolean(v);
    }
    c->created_at = (int64_t)hv_now_ms();
    c->next_run_at = (int64_t)hv_ehr_schedule_next(&c->schedule, hv_now_ms());
    *out = c;
    return HV_OK;
nomem:
    rc = HV_ENOMEM;
    hv_error_set(err, HV_ENOMEM, NULL, "out of memory");
out:
    hv__ehr_conn_free(c);
    return rc;
}

static void route_connect(hv_http_req_t *req, void *ud) {
    hv__ehr_t *m = ud;
    size_t len = 0;
    const char *text = hv_http_req_body(req, &len);
    json_object *body = NULL;
    hv__ehr_conn_t *c = NULL, *old = NULL;
    connect_ctx_t *x;
    hv_error_t err;
    const char *id = NULL;
    char idbuf[HV__EHR_ID_MAX];
    hv_error_clear(&err);
    if (hv_json_parse(text ? text : "", len, "body", &body, &err) != HV_OK || !json_object_is_type(body, json_type_object)) {
        json_object_put(body);
        hv_http_respond_error(req, 400, "invalid", "the body is a JSON object");
        return;
    }
    if (opt_str(body, "id", &id, &err) != HV_OK || (id != NULL && (old = hv__ehr_conn_find(m, id)) == NULL)) {
        json_object_put(body);
        hv_http_respond_error(req, id ? 404 : 400, id ? "not-found" : "invalid", "no such connection");
        return;
    }
    if (old != NULL && old->active != NULL) {
        json_object_put(body);
        hv_http_respond_error(req, 409, "busy", "a sync of this connection is running");
        return;
    }
    if (old == NULL) {
        unsigned char rnd[8];
        hv_random_secure(rnd, sizeof(rnd));
        snprintf(idbuf, sizeof(idbuf), "c");
        hv_hex(rnd, sizeof(rnd), idbuf + 1);
        id = idbuf;
    } else {
        snprintf(idbuf, sizeof(idbuf), "%s", old->id);
        id = idbuf;
    }
    if (conn_from_json(m, body, id, &c, &err) != HV_OK) {
        json_object_put(body);
        hv_http_respond_error(req, 400, "invalid", "%s%s%s", err.location[0] ? err.location : "",
                              err.location[0] ? ": " : "", err.message);
        return;
    }
    json_object_put(body);
    if (old != NULL) {
        /* Key rotation and edits keep the history and the sync state. */
        c->created_at = old->created_at;
        c->since_ms = old->since_ms;
        old->removed = 1;
    }
    x = hv_calloc(1, sizeof(*x));
    if (x == NULL || hv__ehr_conn_save(m, c, connect_saved, x) != HV_OK) {
        hv_free(x);
        if (old) old->removed = 0;
        hv__ehr_conn_free(c);
        hv_http_respond_error(req, 503, "storage", "the connection could not be stored");
        return;
    }
    x->req = req;
    x->m = m;
    x->replaced = old != NULL;
    snprintf(x->id, sizeof(x->id), "%s", c->id);
    if (old != NULL) {
        hv__ehr_conn_t **pp;
        for (pp = &m->conns; *pp != NULL; pp = &(*pp)->next)
            if (*pp == old) {
                *pp = old->next;
                break;
            }
        hv__ehr_conn_free(old);
    }
    c->next = m->conns;
    m->conns = c;
    {
        hv_logrec_t *lr = hv_log_begin(HV_LOG_INFO, "ehr.connected");
        if (lr) {
            hv_log_str(lr, "connection", c->id);
            hv_log_str(lr, "vendor", c->vendor->name);
            hv_log_int(lr, "replaced", x->replaced);
            hv_log_end(lr);
        }
    }
    hv__ehr_schedule_arm(m);
}

static void route_connections(hv_http_req_t *req, void *ud) {
    hv__ehr_t *m = ud;
    json_object *o = json_object_new_object(), *arr = json_object_new_array();
    hv__ehr_conn_t *c;
    for (c = m->conns; c != NULL; c = c->next) {
        json_object *x;
        if (c->removed) continue;
        x = json_object_new_object();
        hv__ehr_conn_json(c, x);
        json_object_array_add(arr, x);
    }
    hv_json_set(o, "connections", arr);
    hv_http_respond_json(req, 200, o);
}

static void route_sync(hv_http_req_t *req, void *ud) {
    hv__ehr_t *m = ud;
    const char *id = hv_http_req_param(req, "id");
    hv__ehr_conn_t *c = id ? hv__ehr_conn_find(m, id) : NULL;
    size_t len = 0;
    const char *text = hv_http_req_body(req, &len);
    const char *mode = "incremental";
    json_object *body = NULL, *o = NULL;
    char run_id[HV__EHR_ID_MAX];
    int rc;
    if (c == NULL) {
        hv_http_respond_error(req, 404, "not-found", "no such connection");
        return;
    }
    if (text != NULL && len > 0) {
        if (hv_json_parse(text, len, "body", &body, NULL) != HV_OK || !json_object_is_type(body, json_type_object)) {
            json_object_put(body);
            hv_http_respond_error(req, 400, "invalid", "the body is a JSON object {\"mode\": …}");
            return;
        }
        if (hv_json_get_str(body, "mode")) mode = hv_json_get_str(body, "mode");
        /* {"mode": "bulk", "incremental": true}: a Bulk export with _since, the start of the
         * last completed run (its manifest's "deleted" files are applied, bulk.c). */
        if (strcmp(mode, "bulk") == 0 && json_object_object_get_ex(body, "incremental", &o) &&
            json_object_get_boolean(o) && c->since_ms > 0)
            mode = "bulk-since";
        o = NULL;
    }
    if (strcmp(mode, "full") != 0 && strcmp(mode, "incremental") != 0 && strcmp(mode, "bulk") != 0 &&
        strcmp(mode, "bulk-since") != 0) {
        json_object_put(body);
        hv_http_respond_error(req, 400, "invalid", "\"mode\" is full, incremental or bulk");
        return;
    }
    /* An incremental sync with nothing synced before is a full one. */
    if (strcmp(mode, "incremental") == 0 && c->since_ms == 0) mode = "full";
    {
        char m_copy[16];
        snprintf(m_copy, sizeof(m_copy), "%s", mode);
        json_object_put(body);
        mode = m_copy;
        rc = hv__ehr_run_start(m, c, mode, run_id, 0);
        if (rc == HV_OK) {
            o = json_object_new_object();
            hv_json_set_str(o, "run_id", run_id);
            hv_json_set_str(o, "mode", strcmp(mode, "bulk-since") == 0 ? "bulk" : mode);
        }
    }
    if (rc == HV_EBUSY) {
        hv_http_respond_error(req, 409, "busy", "a sync of this connection is running (%s)", c->active ? c->active->id : "");
        return;
    }
    if (rc != HV_OK) {
        hv_http_respond_error(req, 503, "unavailable", "the sync could not start: %s", hv_strerror(rc));
        return;
    }
    hv_http_respond_json(req, 202, o);
}

typedef struct hist {
    hv_http_req_t *req;
    char conn[HV__EHR_ID_MAX];
    int64_t limit;
    int conflicts;
    json_object *out;
} hist_t;

/* A text column as a JSON string (the length is read after the text, never before). */
static json_object *col_str(hv_db_stmt_t *st, int col) {
    size_t n = 0;
    const char *s = hv_db_column_text(st, col, &n);
    return json_object_new_string_len(s ? s : "", s ? (int)n : 0);
}

static int hist_job(hv_db_t *db, void *arg) {
    hist_t *h = arg;
    hv_db_stmt_t *st = NULL;
    const char *sql;
    int rc, i;
    if (h->conflicts)
        sql = h->conn[0] ? "SELECT id, connection, run_id, rtype, rid, policy, decision, local_version, copy_id, at FROM"
                           " conflicts WHERE connection = $1 ORDER BY at DESC, id DESC LIMIT $2"
                         : "SELECT id, connection, run_id, rtype, rid, policy, decision, local_version, copy_id, at FROM"
                           " conflicts WHERE $1 = '' ORDER BY at DESC, id DESC LIMIT $2";
    else
        sql = h->conn[0] ? "SELECT id, connection, mode, status, started_at, finished_at, fetched, created, updated,"
                           " unchanged, failed, conflicts, errors, deleted FROM runs WHERE connection = $1 ORDER BY started_at"
                           " DESC, id DESC LIMIT $2"
                         : "SELECT id, connection, mode, status, started_at, finished_at, fetched, created, updated,"
                           " unchanged, failed, conflicts, errors, deleted FROM runs WHERE $1 = '' ORDER BY started_at DESC,"
                           " id DESC LIMIT $2";
    rc = hv_db_prepare(db, sql, &st);
    if (rc != HV_OK) return rc;
    hv_db_bind_text(st, 1, h->conn, strlen(h->conn));
    hv_db_bind_int64(st, 2, h->limit);
    h->out = json_object_new_array();
    while ((rc = hv_db_step(st)) == HV_DB_ROW) {
        json_object *o = json_object_new_object();
        size_t n = 0;
        char ts[40];
        if (h->conflicts) {
            static const char *const names[] = {"id", "connection", "run_id", "type", "remote_id", "policy", "decision",
                                                "local_version", "copy_id"};
            for (i = 0; i < 9; i++) {
                const char *s = hv_db_column_text(st, i, &n);
                if (s != NULL && n > 0) hv_json_set(o, names[i], json_object_new_string_len(s, (int)n));
            }
            hv_time_rfc3339((uint64_t)hv_db_column_int64(st, 9), ts, sizeof(ts));
            hv_json_set_str(o, "at", ts);
        } else {
            static const char *const counts[] = {"fetched", "created", "updated", "unchanged", "failed", "conflicts"};
            const char *s;
            json_object *errs = NULL;
            hv_json_set(o, "id", col_str(st, 0));
            hv_json_set(o, "run_id", col_str(st, 0));
            hv_json_set(o, "connection", col_str(st, 1));
            hv_json_set(o, "mode", col_str(st, 2));
            hv_json_set(o, "status", col_str(st, 3));
            hv_time_rfc3339((uint64_t)hv_db_column_int64(st, 4), ts, sizeof(ts));
            hv_json_set_str(o, "started", ts);
            if (!hv_db_column_is_null(st, 5)) {
                hv_time_rfc3339((uint64_t)hv_db_column_int64(st, 5), ts, sizeof(ts));
                hv_json_set_str(o, "finished", ts);
            }
            for (i = 0; i < 6; i++) hv_json_set_int(o, counts[i], hv_db_column_int64(st, 6 + i));
            hv_json_set_int(o, "deleted", hv_db_column_int64(st, 13));
            s = hv_db_column_text(st, 12, &n);
            if (s == NULL || hv_json_parse(s, n, "errors", &errs, NULL) != HV_OK) errs = json_object_new_array();
            hv_json_set(o, "errors", errs);
        }
        json_object_array_add(h->out, o);
    }
    hv_db_done(st);
    return rc < 0 ? rc : HV_OK;
}

static void hist_done(int status, void *arg) {
    hist_t *h = arg;
    if (status != HV_OK) {
        hv_http_respond_error(h->req, 503, "storage", "the sync history is unavailable");
        json_object_put(h->out);
    } else {
        json_object *o = json_object_new_object();
        hv_json_set(o, h->conflicts ? "conflicts" : "runs", h->out);
        hv_http_respond_json(h->req, 200, o);
    }
    hv_free(h);
}

static void history(hv_http_req_t *req, hv__ehr_t *m, int conflicts) {
    const char *conn = hv_http_req_query_param(req, "connection");
    const char *limit = hv_http_req_query_param(req, "limit");
    hist_t *h = hv_calloc(1, sizeof(*h));
    if (h == NULL) {
        hv_http_respond_error(req, 503, "unavailable", "out of memory");
        return;
    }
    h->req = req;
    h->conflicts = conflicts;
    h->limit = limit ? atoll(limit) : 50;
    if (h->limit < 1 || h->limit > 1000) h->limit = 50;
    snprintf(h->conn, sizeof(h->conn), "%s", conn ? conn : "");
    if (hv_storage_submit(m->storage, hist_job, hist_done, h) != HV_OK) {
        hv_free(h);
        hv_http_respond_error(req, 503, "busy", "the ehr store is busy");
    }
}

static void route_history(hv_http_req_t *req, void *ud) { history(req, ud, 0); }
static void route_conflicts(hv_http_req_t *req, void *ud) { history(req, ud, 1); }

static void route_providers(hv_http_req_t *req, void *ud) {
    static const char *const other[][3] = {
        {"athenahealth", "fhir", "athenahealth's FHIR R4 API (ONC (g)(10)): backend services with a private key"},
        {"meditech", "fhir", "MEDITECH Expanse FHIR R4 API: backend services; or HL7 v2 ADT/ORU over MLLP"},
        {"allscripts", "fhir", "Veradigm (Allscripts) FHIR R4 API: backend services; or HL7 v2 over MLLP"},
        {"nextgen", "fhir", "NextGen FHIR R4 API: backend services with a private key"},
        {"eclinicalworks", "hl7v2", "eClinicalWorks: HL7 v2 interfaces over MLLP (channels, docs/hl7v2.md); FHIR R4 where licensed"},
    };
    const hv_ehr_vendor_t *const *v = hv_ehr_vendors();
    json_object *o = json_object_new_object(), *arr = json_object_new_array(), *oth = json_object_new_array();
    size_t i;
    (void)ud;
    for (; *v != NULL; v++) {
        json_object *p = json_object_new_object(), *needs = json_object_new_array();
        hv_json_set_str(p, "vendor", (*v)->name);
        hv_json_set_str(p, "name", (*v)->display);
        hv_json_set_str(p, "description", (*v)->needs);
        json_object_array_add(needs, json_object_new_string("base_url"));
        if ((*v)->credentials >= 1) json_object_array_add(needs, json_object_new_string("client_id"));
        if ((*v)->credentials == 1) json_object_array_add(needs, json_object_new_string("private_key_pem"));
        if ((*v)->credentials == 2) json_object_array_add(needs, json_object_new_string("client_secret|private_key_pem"));
        hv_json_set(p, "needs", needs);
        hv_json_set_str(p, "assertion_alg", (*v)->assertion_alg);
        hv_json_set_int(p, "max_page_size", (*v)->max_page_size);
        hv_json_set_str(p, "bulk_level", (*v)->bulk_level);
        if ((*v)->patient_scoped) {
            json_object *ps = json_object_new_array();
            const char *const *t;
            for (t = (*v)->patient_scoped; *t; t++) json_object_array_add(ps, json_object_new_string(*t));
            hv_json_set(p, "patient_scoped_types", ps);
        }
        hv_json_set(p, "modes", json_object_new_string("full incremental bulk"));
        json_object_array_add(arr, p);
    }
    for (i = 0; i < HV_ARRAY_LEN(other); i++) {
        json_object *p = json_object_new_object();
        hv_json_set_str(p, "vendor", other[i][0]);
        hv_json_set_str(p, "connect_as", other[i][1]);
        hv_json_set_str(p, "description", other[i][2]);
        json_object_array_add(oth, p);
    }
    hv_json_set(o, "providers", arr);
    hv_json_set(o, "other", oth);
    hv_http_respond_json(req, 200, o);
}

static void route_disconnect(hv_http_req_t *req, void *ud) {
    hv__ehr_t *m = ud;
    size_t len = 0;
    const char *text = hv_http_req_body(req, &len);
    json_object *body = NULL, *o;
    const char *id = NULL;
    hv__ehr_conn_t *c = NULL, **pp;
    if (text == NULL || hv_json_parse(text, len, "body", &body, NULL) != HV_OK ||
        (id = hv_json_get_str(body, "id")) == NULL) {
        json_object_put(body);
        hv_http_respond_error(req, 400, "invalid", "the body is {\"id\": connection id}");
        return;
    }
    c = hv__ehr_conn_find(m, id);
    if (c == NULL) {
        json_object_put(body);
        hv_http_respond_error(req, 404, "not-found", "no such connection");
        return;
    }
    json_object_put(body);
    if (c->active != NULL) {
        hv_http_respond_error(req, 409, "busy", "a sync of this connection is running");
        return;
    }
    if (hv__ehr_conn_delete(m, c->id) != HV_OK) {
        hv_http_respond_error(req, 503, "busy", "the ehr store is busy");
        return;
    }
    o = json_object_new_object();
    hv_json_set_str(o, "id", c->id);
    hv_json_set(o, "disconnected", json_object_new_boolean(1));
    for (pp = &m->conns; *pp != NULL; pp = &(*pp)->next)
        if (*pp == c) {
            *pp = c->next;
            break;
        }
    hv__ehr_conn_free(c);
    hv_http_respond_json(req, 200, o);
}

int hv__ehr_api_register(hv__ehr_t *m) {
    hv_router_t *r = hv_engine_router(m->e);
    int rc = hv_router_add(r, HV_HTTP_POST, "/ehr/connect", route_connect, m);
    if (rc == HV_OK) rc = hv_router_add(r, HV_HTTP_GET, "/ehr/connections", route_connections, m);
    if (rc == HV_OK) rc = hv_router_add(r, HV_HTTP_POST, "/ehr/sync/:id", route_sync, m);
    if (rc == HV_OK) rc = hv_router_add(r, HV_HTTP_GET, "/ehr/sync-history", route_history, m);
    if (rc == HV_OK) rc = hv_router_add(r, HV_HTTP_GET, "/ehr/conflicts", route_conflicts, m);
    if (rc == HV_OK) rc = hv_router_add(r, HV_HTTP_GET, "/ehr/providers", route_providers, m);
    if (rc == HV_OK) rc = hv_router_add(r, HV_HTTP_POST, "/ehr/disconnect", route_disconnect, m);
    return rc;
}
