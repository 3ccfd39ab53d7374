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
 * Conditional criteria are FHIR search parameters, resolved by the search planner
 * (fhir/search_plan.c) against the search index; malformed or unknown criteria
 * answer 400.
 */
#include "config.h"

#include <json-c/json.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fhir/search_int.h"
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
    hv_free(op->pre_text);
    op->pre_text = NULL;
    hv_free(op->pre_pats);
    op->pre_pats = NULL;
    hv__search_rows_free(op->ix_own);
    op->ix_own = NULL;
    op->ix_pre = NULL;
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

/* The scope check of a write (fhir/rest_authz.c): fails op with 403 and returns 1 when
 * the op's principal may not perform interaction on the resource (a tree or stored text). */
static int write_denied(hv__fop_t *op, int interaction, struct json_object *res, const char *text)
{
    if (op->principal == NULL ||
        hv__authz_resource(op->principal, interaction, op->type, op->id, res, text) == HV_OK)
        return 0;
    hv__fop_fail(op, 403, "forbidden", "the access token's scopes do not allow this %s of %s/%s",
                 interaction == HV_AUTH_CREATE ? "create" : interaction == HV_AUTH_DELETE ? "delete" : "update",
                 op->type, op->id[0] ? op->id : "(new)");
    return 1;
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
    /* Conditional criteria are search criteria (FHIR R4 http.html#cond-update): the
     * search planner resolves them, every supported parameter included, over the index rows
     * the job's batch deferred too (engine/storage.c). */
    int rc = hv_storage_flush_deferred(db);
    return rc != HV_OK ? rc : hv__search_resolve(db, op, ids, COND_MAX_MATCHES, n);
}

/*
 * The text serialized ahead (op->pre_text) as version's text in b, when it is that: it
 * was written from this same tree with meta.versionId "1", so it serves a first version
 * only, once its placeholder lastUpdated is overwritten with ms (hv__fhir_instant's
 * fixed 24 characters). Consumed either way but by a text-only op (res NULL), whose
 * tree the caller parses from it then (tree_from_pre); 0 (b untouched) when the caller
 * must serialize the tree itself.
 */
static int take_pre_text(hv__fop_t *op, struct json_object *res, int64_t version, uint64_t ms, hv_buf_t *b)
{
    char ts[40];
    char *text = op->pre_text;
    size_t len = op->pre_len, at = op->pre_ts;
    if (text == NULL)
        return 0;
    hv__fhir_instant(ms, ts, sizeof(ts));
    if (version != 1 || res != op->resource || strlen(ts) != 24 || at + 24 > len) {
        if (res != NULL) {
            hv_free(text);
            op->pre_text = NULL;
        }
        return 0;
    }
    op->pre_text = NULL;
    memcpy(text + at, ts, 24);
    /* The buffer is empty (hv_buf_init) and takes the text's ownership: it is NUL-terminated,
     * len + 1 bytes. */
    hv_buf_release(b);
    b->data = text;
    b->len = len;
    b->cap = len + 1;
    return 1;
}

/*
 * See fhir/store_int.h. The tree gets meta.versionId "1" and a placeholder
 * meta.lastUpdated now; the writer sets both again on the tree and overwrites the
 * placeholder's 24 characters in the text with the write's instant (take_pre_text). The
 * placeholder is found as the text's first "meta":{"versionId":"1","lastUpdated":"…" —
 * resourceType, id and meta are a resource's first elements in the writer's element
 * order, and JSON escaping keeps that pattern out of string values. Any failure leaves
 * op->pre_text (or op->pre_pats) NULL, and the writer does that part itself.
 */
#define META_HEAD "\"meta\":{\"versionId\":\"1\",\"lastUpdated\":\""

void hv__fop_ahead(hv__fop_t *op, int text)
{
    char ts[40], head[96];
    hv_buf_t b;
    const char *at;
    int n;
    uint64_t now = hv_now_ms();
    if (op->resource == NULL || op->id[0] == '\0')
        return;
    if (op->pre_pats == NULL) {
        op->pre_pats = hv_malloc(sizeof(*op->pre_pats));
        if (op->pre_pats != NULL)
            hv__store_patients(op->type, op->id, op->resource, op->pre_pats);
    }
    if (!text || op->pre_text != NULL)
        return;
    hv__fhir_instant(now, ts, sizeof(ts));
    if (strlen(ts) != 24 || hv__fhir_set_meta(op->resource, op->id, 1, now) != HV_OK)
        return;
    /* The pattern, put together without snprintf (~1,000 instructions a resource). */
    n = (int)(sizeof(META_HEAD) - 1);
    memcpy(head, META_HEAD, (size_t)n);
    memcpy(head + n, ts, 24);
    n += 24;
    head[n++] = '"';
    head[n] = '\0';
    hv_buf_init(&b, 0);
    /* 1,024 bytes at once (malloc's per-thread cache serves it) rather than the doubling
     * from 64 bytes: three or four reallocations for a REST-sized resource otherwise. */
    if (hv_buf_reserve(&b, 1000) != HV_OK)
        return;
    if (hv_fhir_json_write(op->resource, 0, &b) == HV_OK && b.data != NULL &&
        (at = strstr(b.data, head)) != NULL) {
        op->pre_ts = (size_t)(at - b.data) + (size_t)n - 25;
        op->pre_len = b.len;
        op->pre_text = hv_buf_take(&b);
    }
    hv_buf_release(&b);
}

/*
 * A text-only op's tree (store_int.h), parsed from its pre_text, which stays: a first
 * version is still written from it (take_pre_text), the tree only read. The text is the
 * engine's own writer's output, so the tree serializes back to it (meta.versionId and
 * meta.lastUpdated aside, which write_version sets for the version it writes), and the
 * rows and compartments made ahead from the original tree serve it. A CREATE or UPDATE
 * with neither tree nor text is refused (400).
 */
static int tree_from_pre(hv__fop_t *op)
{
    int rc;
    if (op->resource != NULL)
        return HV_OK;
    if (op->pre_text == NULL)
        return hv__fop_fail(op, 400, "invalid", "no %s resource to write", op->type);
    rc = hv_json_parse(op->pre_text, op->pre_len, "prepared resource", &op->resource, NULL);
    if (rc == HV_OK)
        op->parsed = 1;
    return rc;
}

/* Whether op is a CREATE or UPDATE without a tree that cannot be written without one
 * (store_int.h, text-only op): what needs the tree here is known before the write; a
 * later version is found in write_version. */
static int needs_tree(hv_db_t *db, const hv__fop_t *op)
{
    return (op->kind == HV__FOP_CREATE || op->kind == HV__FOP_UPDATE) && op->resource == NULL &&
           (op->pre_text == NULL || op->ix_pre == NULL || op->pre_pats == NULL || op->cond != NULL ||
            op->principal != NULL || hv_db_kind(db) != HV_DB_SQLITE || strcmp(op->type, "Location") == 0);
}

/* Serializes res with its new meta and appends it as version `version` of op->type/id. res
 * NULL: op is a text-only op (store_int.h) that hv__fop_run let through, written from its
 * pre_text when this is a first version, else from a tree parsed from that text here. */
static int write_version(hv_db_t *db, hv__fop_t *op, struct json_object *res, int64_t version)
{
    uint64_t ms = op->now_ms != 0 ? op->now_ms : hv_now_ms();
    hv_buf_t b;
    int rc = HV_OK;
    hv_buf_init(&b, 0);
    /* A tree whose text was serialized ahead holds its id and versionId already:
     * hv__fhir_set_meta sets only what differs. */
    if (res != NULL)
        rc = hv__fhir_set_meta(res, op->id, version, ms);
    if (rc == HV_OK && !take_pre_text(op, res, version, ms, &b)) {
        if (res == NULL && (rc = tree_from_pre(op)) == HV_OK) {
            res = op->resource;
            hv_free(op->pre_text); /* of version 1 only */
            op->pre_text = NULL;
            rc = hv__fhir_set_meta(res, op->id, version, ms);
        }
        if (rc == HV_OK)
            rc = hv_fhir_json_write(res, 0, &b);
    }
    if (rc != HV_OK)
        goto out;
    hv__search_refusal_clear();
    rc = hv__store_put_pre(db, op->type, op->id, version, ms, b.data, b.len, res,
                           res == op->resource ? op->ix_pre : NULL, res == op->resource ? op->pre_pats : NULL,
                           version == 1 ? op->rid_pre : 0);
    if (rc == HV_ETOOBIG && hv__search_refusal()[0] != '\0') {
        /* Its index rows pass a hard limit (fhir/search_int.h): refused, not stored with values
         * a search would not find. The error stays: what the write did is rolled back. */
        hv__fop_fail(op, 422, "too-costly", "%s", hv__search_refusal());
        goto out;
    }
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
    if (rc != HV_OK && res == NULL && op->pre_text == NULL && b.data != NULL) {
        /* A text-only op that failed keeps its text, as an op keeps its tree: a run after a
         * rollback writes from it again (its instant is overwritten again). */
        op->pre_text = hv_buf_take(&b);
    }
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
    if (op->principal != NULL &&
        (row.deleted ? hv__authz_restricted(op->principal, HV_AUTH_READ, op->type)
                     : hv__authz_resource(op->principal, HV_AUTH_READ, op->type, op->id, NULL, row.text) != HV_OK)) {
        /* Outside the token's scopes: answered as an unknown id, so that nothing tells
         * another patient's resources apart from absent ones (fhir/rest_authz.c). A
         * conditional create whose criteria found such a resource is refused without
         * naming it. */
        hv__store_row_clear(&row);
        if (op->kind == HV__FOP_CREATE)
            hv__fop_fail(op, 403, "forbidden", "If-None-Exist matches a %s the access token may not read", op->type);
        else
            hv__fop_fail(op, 404, "not-found", "%s/%s is not known", op->type, op->id);
        return HV_OK;
    }
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
    if (write_denied(op, HV_AUTH_CREATE, op->resource, NULL))
        return HV_OK;
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
    /* An op known absent has no current version to read: the look-up would answer
     * not-found (about 6 k instructions a resource of an import's writer). */
    rc = op->absent && op->cond == NULL ? HV_OK : current(db, op, &cur, &exists);
    if (rc != HV_OK)
        return rc;
    if (op->if_match > 0 && (!exists || cur.version != op->if_match)) {
        hv__fop_fail(op, 412, "conflict", "If-Match: the current version of %s/%s is %lld, not %lld", op->type,
                     op->id, (long long)cur.version, (long long)op->if_match);
        goto out;
    }
    /* Both the version replaced and the one written must be within the token's scopes:
     * no overwriting another patient's resource, no moving one into another compartment. */
    if ((exists && !cur.deleted && write_denied(op, HV_AUTH_UPDATE, NULL, cur.text)) ||
        write_denied(op, exists && !cur.deleted ? HV_AUTH_UPDATE : HV_AUTH_CREATE, op->resource, NULL))
        goto out;
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
    if (write_denied(op, HV_AUTH_DELETE, NULL, cur.text))
        goto out;
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
    if (write_denied(op, HV_AUTH_UPDATE, res, NULL))
        goto out;
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
    if (write_denied(op, HV_AUTH_UPDATE, res, NULL))
        goto out;
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
    rc = needs_tree(db, op) ? tree_from_pre(op) : HV_OK;
    if (rc != HV_OK) {
        if (op->status >= 400)
            return HV_OK; /* refused: no resource */
        goto out;
    }
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
    if (rc == HV_OK && op->change != HV__CHANGE_NONE && op->status < 400)
        rc = hv__fhir_outbox_change(db, op); /* in the write's transaction (channel_store.c) */
out:
    if (rc != HV_OK && op->status < 400) {
        op->status = 500;
        op->issue_code = "exception";
        snprintf(op->msg, sizeof(op->msg), "the store failed: %s", hv_strerror(rc));
    }
    return rc;
}
