/*
 * store_ops.c — the instance interactions of FHIR R4 http.html on the store:
 * read, vread, create, update (and create-on-update), delete and patch, with
 * their conditional forms (http.html#ccreate, #cond-update, #3.1.0.7.1, #patch)
 * and version-aware updates (If-Match, http.html#concurrency).
 *
 * hv__fop_run runs one interaction on the storage thread (or the import
 * command's thread) and reports its outcome as an HTTP status in the op, so the
 * REST handlers, the Bundle processor and the importer share one implementation.
 *
 * Conditional criteria are FHIR search parameters. Search is a separate part of
 * the server still being built; until it lands the criteria understood here are
 * `_id=ID` and `identifier=[system|]value` (token search on Resource.identifier,
 * through the identifier index the store keeps). Any other parameter answers 501
 * with an OperationOutcome saying it is not supported yet.
 */
#include "config.h"

#include <json-c/json.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fhir/store_int.h"

#define COND_MAX_MATCHES HV__COND_MAX

void hv__fop_init(hv__fop_t *op, hv__fop_kind_t kind)
{
    memset(op, 0, sizeof(*op));
    op->kind = kind;
}

void hv__fop_clear(hv__fop_t *op)
{
    if (op == NULL)
        return;
    hv_free(op->cond);
    json_object_put(op->resource);
    json_object_put(op->patch);
    hv_free(op->text);
    op->cond = NULL;
    op->resource = NULL;
    op->patch = NULL;
    op->text = NULL;
}

int hv__fop_fail(hv__fop_t *op, int status, const char *code, const char *fmt, ...)
{
    va_list ap;
    op->status = status;
    op->issue_code = code;
    va_start(ap, fmt);
    vsnprintf(op->msg, sizeof(op->msg), fmt, ap);
    va_end(ap);
    return HV_EINVAL;
}

/* Takes the stored text of a row into the op as its result. */
static void take_row(hv__fop_t *op, hv__store_row_t *row)
{
    hv_free(op->text);
    op->text = row->text;
    op->text_len = row->text_len;
    row->text = NULL;
    op->out_version = row->version;
    op->out_ms = row->last_ms;
    snprintf(op->id, sizeof(op->id), "%s", row->id);
}

/* See fhir/store_int.h. */
int hv__fop_resolve(hv_db_t *db, hv__fop_t *op, char (*ids)[HV__FHIR_ID_MAX], size_t *n)
{
    char *q = hv_strdup(op->cond), *save = NULL, *part;
    char want_id[HV__FHIR_ID_MAX] = "";
    int have_id = 0, have_ident = 0, rc = HV_OK;
    size_t k = 0;
    if (q == NULL)
        return HV_ENOMEM;
    for (part = strtok_r(q, "&", &save); part != NULL; part = strtok_r(NULL, "&", &save)) {
        char *eq = strchr(part, '=');
        char *key = part, *val;
        long vl;
        if (eq == NULL) {
            rc = hv__fop_fail(op, 400, "invalid", "conditional criteria: \"%.100s\" has no value", part);
            goto out;
        }
        *eq = '\0';
        val = eq + 1;
        if (hv_url_decode(key, strlen(key), 1) < 0 || (vl = hv_url_decode(val, strlen(val), 1)) < 0) {
            rc = hv__fop_fail(op, 400, "invalid", "conditional criteria: a bad percent escape");
            goto out;
        }
        key[strlen(key)] = '\0';
        val[vl] = '\0';
        if (strcmp(key, "_format") == 0 || strcmp(key, "_pretty") == 0 || strcmp(key, "_summary") == 0 ||
            strcmp(key, "_elements") == 0)
            continue; /* result parameters, not criteria */
        if (strcmp(key, "_id") == 0) {
            if (!hv__fhir_id_valid(val)) {
                rc = hv__fop_fail(op, 400, "invalid", "conditional criteria: _id is not a valid id");
                goto out;
            }
            if (have_id && strcmp(want_id, val) != 0) {
                k = 0;
                have_ident = 1; /* two different ids: nothing can match */
                continue;
            }
            snprintf(want_id, sizeof(want_id), "%s", val);
            have_id = 1;
        } else if (strcmp(key, "identifier") == 0) {
            /* FHIR R4 search.html#token: [system]|[code] or code alone. */
            char *bar = strchr(val, '|');
            char found[COND_MAX_MATCHES][HV__FHIR_ID_MAX];
            size_t nf = 0;
            const char *system = NULL, *value = val;
            if (bar != NULL) {
                *bar = '\0';
                system = val; /* "" means: no system */
                value = bar + 1;
            }
            if (value[0] == '\0' || strchr(value, ',') != NULL) {
                rc = hv__fop_fail(op, 501, "not-supported",
                                  "conditional criteria: identifier needs one value (system| alone and "
                                  "value lists are not supported yet)");
                goto out;
            }
            rc = hv__store_find_identifier(db, op->type, system, value, found, COND_MAX_MATCHES, &nf);
            if (rc != HV_OK)
                goto out;
            if (!have_ident) {
                memcpy(ids, found, sizeof(found));
                k = nf;
                have_ident = 1;
            } else {
                /* AND of two identifier criteria: keep the ids in both. */
                size_t w = 0;
                for (size_t i = 0; i < k && i < COND_MAX_MATCHES; i++)
                    for (size_t j = 0; j < nf && j < COND_MAX_MATCHES; j++)
                        if (strcmp(ids[i], found[j]) == 0) {
                            memmove(ids[w++], ids[i], HV__FHIR_ID_MAX);
                            break;
                        }
                k = w;
            }
        } else {
            rc = hv__fop_fail(op, 501, "not-supported",
                              "conditional criteria: search parameter \"%.64s\" is not supported yet "
                              "(supported: _id, identifier)",
                              key);
            goto out;
        }
    }
    if (!have_id && !have_ident) {
        rc = hv__fop_fail(op, 400, "invalid", "conditional criteria are empty");
        goto out;
    }
    if (have_id) {
        if (have_ident) {
            size_t w = 0;
            for (size_t i = 0; i < k && i < COND_MAX_MATCHES; i++)
                if (strcmp(ids[i], want_id) == 0)
                    memmove(ids[w++], ids[i], HV__FHIR_ID_MAX);
            k = w;
        } else {
            hv__store_row_t row;
            rc = hv__store_get(db, op->type, want_id, 0, &row);
            if (rc == HV_OK) {
                if (!row.deleted)
                    snprintf(ids[k++], HV__FHIR_ID_MAX, "%s", want_id);
                hv__store_row_clear(&row);
            } else if (rc == HV_ENOTFOUND) {
                rc = HV_OK;
            } else {
                goto out;
            }
        }
    }
    *n = k;
out:
    hv_free(q);
    return rc;
}

/* Serializes res with its new meta and appends it as version `version` of op->type/id. */
static int write_version(hv_db_t *db, hv__fop_t *op, struct json_object *res, int64_t version)
{
    uint64_t ms = op->now_ms != 0 ? op->now_ms : hv_now_ms();
    hv_buf_t b;
    int rc;
    hv_buf_init(&b, 0);
    rc = hv__fhir_set_meta(res, op->id, version, ms);
    if (rc == HV_OK)
        rc = hv_fhir_json_write(res, 0, &b);
    if (rc != HV_OK)
        goto out;
    rc = hv__store_put(db, op->type, op->id, version, ms, b.data, b.len, res);
    if (rc == HV_ECONFLICT) {
        hv__fop_fail(op, 409, "conflict", "%s/%s was changed by another request at the same time", op->type,
                     op->id);
        goto out;
    }
    if (rc != HV_OK)
        goto out;
    hv_free(op->text);
    op->text_len = b.len;
    op->text = hv_buf_take(&b);
    op->out_version = version;
    op->out_ms = ms;
out:
    hv_buf_release(&b);
    return rc;
}

static int run_read(hv_db_t *db, hv__fop_t *op)
{
    hv__store_row_t row;
    int rc = hv__store_get(db, op->type, op->id, op->kind == HV__FOP_VREAD ? op->version : 0, &row);
    if (rc == HV_ENOTFOUND) {
        if (op->kind == HV__FOP_VREAD)
            return hv__fop_fail(op, 404, "not-found", "%s/%s has no version %lld", op->type, op->id,
                                (long long)op->version), HV_OK;
        hv__fop_fail(op, 404, "not-found", "%s/%s is not known", op->type, op->id);
        return HV_OK;
    }
    if (rc != HV_OK)
        return rc;
    if (row.deleted) {
        op->out_version = row.version;
        op->out_ms = row.last_ms;
        hv__fop_fail(op, 410, "deleted", "%s/%s was deleted (version %lld)", op->type, op->id,
                     (long long)row.version);
        hv__store_row_clear(&row);
        return HV_OK;
    }
    take_row(op, &row);
    hv__store_row_clear(&row);
    op->status = 200;
    return HV_OK;
}

static int run_create(hv_db_t *db, hv__fop_t *op)
{
    int rc;
    if (op->cond != NULL) {
        char ids[COND_MAX_MATCHES][HV__FHIR_ID_MAX];
        size_t n = 0;
        rc = hv__fop_resolve(db, op, ids, &n);
        if (rc != HV_OK)
            return rc == HV_EINVAL ? HV_OK : rc;
        if (n > 1)
            return hv__fop_fail(op, 412, "duplicate", "If-None-Exist matches %s%zu %s resources",
                                n > COND_MAX_MATCHES ? "more than " : "", n > COND_MAX_MATCHES ? n - 1 : n,
                                op->type), HV_OK;
        if (n == 1) {
            /* http.html#ccreate: one match — the server ignores the post and answers 200. */
            snprintf(op->id, sizeof(op->id), "%s", ids[0]);
            rc = run_read(db, op);
            return rc;
        }
    }
    if (op->id[0] == '\0')
        hv__fhir_new_id(op->id);
    rc = write_version(db, op, op->resource, 1);
    if (rc == HV_OK) {
        op->status = 201;
        op->change = HV__CHANGE_CREATED;
    }
    return rc == HV_EINVAL || (rc == HV_ECONFLICT && op->status == 409) ? HV_OK : rc;
}

/* Reads the current row of op->type/op->id into cur; 0 in *exists when none. */
static int current(hv_db_t *db, hv__fop_t *op, hv__store_row_t *cur, int *exists)
{
    int rc = hv__store_get(db, op->type, op->id, 0, cur);
    *exists = rc == HV_OK;
    if (rc == HV_ENOTFOUND) {
        memset(cur, 0, sizeof(*cur));
        rc = HV_OK;
    }
    return rc;
}

static int run_update(hv_db_t *db, hv__fop_t *op)
{
    hv__store_row_t cur;
    int exists = 0, rc;
    memset(&cur, 0, sizeof(cur));
    if (op->cond != NULL) {
        char ids[COND_MAX_MATCHES][HV__FHIR_ID_MAX];
        size_t n = 0;
        const char *body_id = hv_json_get_str(op->resource, "id");
        rc = hv__fop_resolve(db, op, ids, &n);
        if (rc != HV_OK)
            return rc == HV_EINVAL ? HV_OK : rc;
        if (n > 1)
            return hv__fop_fail(op, 412, "multiple-matches", "the criteria match several %s resources",
                                op->type), HV_OK;
        if (n == 1) {
            if (body_id != NULL && strcmp(body_id, ids[0]) != 0)
                return hv__fop_fail(op, 400, "invalid",
                                    "the resource's id does not match the resource the criteria found"),
                       HV_OK;
            snprintf(op->id, sizeof(op->id), "%s", ids[0]);
        } else if (body_id != NULL) {
            snprintf(op->id, sizeof(op->id), "%s", body_id);
        } else {
            hv__fhir_new_id(op->id);
        }
    }
    rc = current(db, op, &cur, &exists);
    if (rc != HV_OK)
        return rc;
    if (op->if_match > 0 && (!exists || cur.version != op->if_match)) {
        hv__fop_fail(op, 412, "conflict", "If-Match: the current version of %s/%s is %lld, not %lld", op->type,
                     op->id, (long long)cur.version, (long long)op->if_match);
        goto out;
    }
    rc = write_version(db, op, op->resource, exists ? cur.version + 1 : 1);
    if (rc == HV_OK) {
        op->status = exists && !cur.deleted ? 200 : 201;
        op->change = exists && !cur.deleted ? HV__CHANGE_UPDATED : HV__CHANGE_CREATED;
    } else if (op->status == 409) {
        rc = HV_OK;
    }
out:
    hv__store_row_clear(&cur);
    return rc;
}

/* Resolves the conditional criteria of a delete or patch to exactly one id, or
 * answers (0 on `none` status, several as 412). Returns 1 when op->id is set. */
static int cond_one(hv_db_t *db, hv__fop_t *op, int none_status, int *rc_out)
{
    char ids[COND_MAX_MATCHES][HV__FHIR_ID_MAX];
    size_t n = 0;
    int rc = hv__fop_resolve(db, op, ids, &n);
    *rc_out = rc == HV_EINVAL ? HV_OK : rc;
    if (rc != HV_OK)
        return 0;
    if (n > 1) {
        hv__fop_fail(op, 412, "multiple-matches", "the criteria match several %s resources", op->type);
        return 0;
    }
    if (n == 0) {
        if (none_status == 204)
            op->status = 204;
        else
            hv__fop_fail(op, none_status, "not-found", "no %s matches the criteria", op->type);
        return 0;
    }
    snprintf(op->id, sizeof(op->id), "%s", ids[0]);
    return 1;
}

static int run_delete(hv_db_t *db, hv__fop_t *op)
{
    hv__store_row_t cur;
    int exists = 0, rc;
    memset(&cur, 0, sizeof(cur));
    if (op->cond != NULL && !cond_one(db, op, 204, &rc))
        return rc;
    rc = current(db, op, &cur, &exists);
    if (rc != HV_OK)
        return rc;
    if (op->if_match > 0 && (!exists || cur.version != op->if_match)) {
        hv__fop_fail(op, 412, "conflict", "If-Match: the current version of %s/%s is %lld, not %lld", op->type,
                     op->id, (long long)cur.version, (long long)op->if_match);
        goto out;
    }
    if (!exists || cur.deleted) {
        /* http.html#delete: deleting what is not there (or gone already) succeeds
         * and writes nothing. */
        op->status = 204;
        op->out_version = cur.version;
        goto out;
    }
    {
        uint64_t ms = op->now_ms != 0 ? op->now_ms : hv_now_ms();
        rc = hv__store_put(db, op->type, op->id, cur.version + 1, ms, NULL, 0, NULL);
        if (rc == HV_ECONFLICT) {
            hv__fop_fail(op, 409, "conflict", "%s/%s was changed by another request at the same time",
                         op->type, op->id);
            rc = HV_OK;
            goto out;
        }
        if (rc != HV_OK)
            goto out;
        op->out_version = cur.version + 1;
        op->out_ms = ms;
        op->status = 204;
        op->change = HV__CHANGE_DELETED;
    }
out:
    hv__store_row_clear(&cur);
    return rc;
}

static int run_patch(hv_db_t *db, hv__fop_t *op)
{
    hv__store_row_t cur;
    struct json_object *res = NULL;
    hv_error_t err;
    int exists = 0, rc, test_failed = 0;
    char msg[400] = "";
    const char *rt, *rid;
    memset(&cur, 0, sizeof(cur));
    hv_error_clear(&err);
    if (op->cond != NULL && !cond_one(db, op, 404, &rc))
        return rc;
    rc = current(db, op, &cur, &exists);
    if (rc != HV_OK)
        return rc;
    if (!exists) {
        hv__fop_fail(op, 404, "not-found", "%s/%s is not known", op->type, op->id);
        goto out;
    }
    if (cur.deleted) {
        hv__fop_fail(op, 410, "deleted", "%s/%s was deleted", op->type, op->id);
        goto out;
    }
    if (op->if_match > 0 && cur.version != op->if_match) {
        hv__fop_fail(op, 412, "conflict", "If-Match: the current version of %s/%s is %lld, not %lld", op->type,
                     op->id, (long long)cur.version, (long long)op->if_match);
        goto out;
    }
    res = json_tokener_parse(cur.text);
    if (res == NULL) {
        rc = HV_EDB;
        goto out;
    }
    rc = op->patch_fhirpath ? hv__fhirpath_patch_apply(res, op->patch, msg, sizeof(msg))
                            : hv__json_patch_apply(res, op->patch, &test_failed, msg, sizeof(msg));
    if (rc == HV_ENOMEM)
        goto out;
    if (rc != HV_OK) {
        /* RFC 6902 §5 / FHIR R4 http.html#patch: a patch that cannot be applied is
         * 422; a failed "test" is a failed precondition. */
        hv__fop_fail(op, test_failed ? 409 : 422, test_failed ? "conflict" : "processing", "patch: %s", msg);
        rc = HV_OK;
        goto out;
    }
    rt = hv_json_get_str(res, "resourceType");
    rid = hv_json_get_str(res, "id");
    if (rt == NULL || strcmp(rt, op->type) != 0 || rid == NULL || strcmp(rid, op->id) != 0) {
        hv__fop_fail(op, 422, "processing", "patch: the patch may not change resourceType or id");
        goto out;
    }
    if (hv_fhir_check_structure(res, 0, &err) != HV_OK) {
        hv__fop_fail(op, 422, "structure", "patch: the result is not a valid %s: %s at %s", op->type,
                     err.message, err.location);
        goto out;
    }
    rc = write_version(db, op, res, cur.version + 1);
    if (rc == HV_OK) {
        op->status = 200;
        op->change = HV__CHANGE_UPDATED;
    } else if (op->status == 409) {
        rc = HV_OK;
    }
out:
    json_object_put(res);
    hv__store_row_clear(&cur);
    return rc;
}

int hv__fop_run(hv_db_t *db, hv__fop_t *op)
{
    int rc;
    op->status = 0;
    op->change = HV__CHANGE_NONE;
    switch (op->kind) {
    case HV__FOP_READ:
    case HV__FOP_VREAD:
        rc = run_read(db, op);
        break;
    case HV__FOP_CREATE:
        rc = run_create(db, op);
        break;
    case HV__FOP_UPDATE:
        rc = run_update(db, op);
        break;
    case HV__FOP_DELETE:
        rc = run_delete(db, op);
        break;
    case HV__FOP_PATCH:
        rc = run_patch(db, op);
        break;
    default:
        rc = HV_EINVAL;
    }
    if (rc != HV_OK && op->status < 400) {
        op->status = 500;
        op->issue_code = "exception";
        snprintf(op->msg, sizeof(op->msg), "the store failed: %s", hv_strerror(rc));
    }
    return rc;
}
