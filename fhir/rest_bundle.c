/*
 * rest_bundle.c — batch and transaction Bundles (FHIR R4 http.html#transaction),
 * `POST /fhir` with a Bundle of type batch or transaction; also the engine of
 * `holovitals import` (fhir/import.c).
 *
 * Transaction (http.html#trules): all entries run in one storage job — one
 * database transaction — and any entry that fails rolls back every entry. The
 * entries are processed in the order the specification gives: DELETE, then POST,
 * then PUT and PATCH, then GET/HEAD. Before anything is written, the ids of the
 * created resources are fixed (new ids for POST, the match of If-None-Exist, the
 * match or a new id for a conditional PUT), and every reference in the Bundle to
 * an entry's fullUrl (urn:uuid:…, urn:oid:…, or an absolute URL) is rewritten to
 * Type/id; a conditional reference (Type?identifier=…) is resolved to the one
 * resource it matches (zero or several matches fail the transaction, 412). A
 * urn:uuid/urn:oid reference that no entry defines fails it too (400).
 *
 * GET entries with search criteria (request.url "Observation?code=…") run through
 * the search planner (fhir/search_plan.c) and answer a searchset Bundle of the
 * first page (default _count 50) as the entry's resource; in a transaction they
 * run last and see its writes.
 *
 * Batch: each entry runs alone (a savepoint each); one failing leaves the others
 * in place; entries stay in Bundle order and must not refer to each other.
 *
 * The response Bundle (transaction-response / batch-response) lists the entries
 * in the request's order with response.status, location, etag and lastModified,
 * the resource for GET (and for writes with Prefer: return=representation), and
 * an outcome for an entry of a batch that failed. A failed transaction answers
 * with the failing entry's status and OperationOutcome alone.
 */
#include "config.h"

#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fhir/fhir_int.h"
#include "fhir/rest_int.h"
#include "fhir/search_int.h"

#define SEARCH_DEF_COUNT 50               /* _count of a search entry without one */
#define SEARCH_MAX_BYTES ((size_t)64 << 20) /* the searchset of one entry */

enum { M_GET = 1, M_HEAD, M_POST, M_PUT, M_DELETE, M_PATCH };

typedef struct bentry {
    hv__fop_t op;
    int method;
    int rank;          /* processing order of a transaction */
    int cond_match;    /* a conditional create that matched: answered 200, nothing written */
    const char *full_url;
    int prep_status;   /* > 0: the entry was refused while preparing (batch) */
    char prep_msg[256];
    hv__search_plan_t *plan; /* a GET search entry: the planned search (op.text gets the searchset) */
    char *query;             /* its raw query, for the self link */
    hv__search_rows_t *ix;   /* its search-index rows computed ahead (hv__bundle_precompute), or NULL */
} bentry_t;

struct hv__bundle_job {
    struct json_object *bundle;
    int transaction;
    int import;
    int prefer;
    size_t n;
    bentry_t *e;
    size_t *order;     /* entry indexes in processing order */
    long failed;       /* transaction: the entry that failed, -1 if none */
    int failed_status;
    char failed_msg[600];
    const char *failed_code;
    char base[256];    /* the server's base URL, for fullUrl in searchsets */
    int move_merged;   /* hv__bundle_set_move_merged: re-point references to replaced Patients */
    size_t moved;      /* resources re-pointed by the last run */
    int refs_done;     /* hv__bundle_precompute fixed the ids and rewrote the references */
    hv__search_batch_t *deferred; /* set by job_bundle for a run that may defer (engine/storage.c):
                                   * the store's rows of the batch's REST creates, which the
                                   * transaction's joining rows join too, written by the storage's
                                   * flush instead of the transaction's last flush */
};

static const char *status_text(int s)
{
    const char *t = hv_http_status_text(s);
    return t != NULL ? t : "";
}

void hv__bundle_job_free(hv__bundle_job_t *bj)
{
    if (bj == NULL)
        return;
    for (size_t i = 0; i < bj->n; i++) {
        hv__fop_clear(&bj->e[i].op);
        if (bj->e[i].plan != NULL) {
            hv__search_plan_clear(bj->e[i].plan);
            hv_free(bj->e[i].plan);
        }
        hv_free(bj->e[i].query);
        hv__search_rows_free(bj->e[i].ix);
    }
    hv_free(bj->e);
    hv_free(bj->order);
    json_object_put(bj->bundle);
    hv_free(bj);
}

size_t hv__bundle_op_count(const hv__bundle_job_t *bj)
{
    return bj->n;
}

const hv__fop_t *hv__bundle_op_at(const hv__bundle_job_t *bj, size_t i)
{
    return &bj->e[i].op;
}

void hv__bundle_mark_absent(hv__bundle_job_t *bj)
{
    for (size_t i = 0; i < bj->n; i++)
        if (bj->e[i].op.kind == HV__FOP_UPDATE && bj->e[i].op.cond == NULL)
            bj->e[i].op.absent = 1;
}

static int refuse(bentry_t *e, int status, const char *fmt, const char *arg)
{
    e->prep_status = status;
    snprintf(e->prep_msg, sizeof(e->prep_msg), fmt, arg);
    return HV_EINVAL;
}

/*
 * Splits request.url into type, id, version and query: "Patient",
 * "Patient/1", "Patient/1/_history/2", "Patient?identifier=a|b"; an absolute URL
 * is cut after its "/fhir/". Returns HV_OK or HV_EINVAL.
 */
static int split_url(const char *url, bentry_t *e, int *has_id, int *has_version)
{
    const char *p = url, *q, *s1, *s2;
    char seg[256];
    size_t n;
    *has_id = *has_version = 0;
    if (strncmp(p, "http://", 7) == 0 || strncmp(p, "https://", 8) == 0) {
        const char *f = strstr(p, "/fhir/");
        if (f == NULL)
            return HV_EINVAL;
        p = f + 6;
    }
    while (*p == '/')
        p++;
    q = strchr(p, '?');
    n = q != NULL ? (size_t)(q - p) : strlen(p);
    if (n == 0 || n >= sizeof(seg))
        return HV_EINVAL;
    memcpy(seg, p, n);
    seg[n] = '\0';
    if (q != NULL && q[1] != '\0') {
        e->op.cond = hv_strdup(q + 1);
        if (e->op.cond == NULL)
            return HV_ENOMEM;
    }
    s1 = strchr(seg, '/');
    if (s1 == NULL) {
        if (strlen(seg) >= sizeof(e->op.type))
            return HV_EINVAL;
        memcpy(e->op.type, seg, strlen(seg) + 1);
    } else {
        if ((size_t)(s1 - seg) >= sizeof(e->op.type))
            return HV_EINVAL;
        memcpy(e->op.type, seg, (size_t)(s1 - seg));
        e->op.type[s1 - seg] = '\0';
        s2 = strchr(s1 + 1, '/');
        if (s2 == NULL) {
            snprintf(e->op.id, sizeof(e->op.id), "%s", s1 + 1);
        } else {
            char *end = NULL;
            if ((size_t)(s2 - s1 - 1) >= sizeof(e->op.id) || strncmp(s2, "/_history/", 10) != 0)
                return HV_EINVAL;
            memcpy(e->op.id, s1 + 1, (size_t)(s2 - s1 - 1));
            e->op.id[s2 - s1 - 1] = '\0';
            e->op.version = strtoll(s2 + 10, &end, 10);
            if (end == s2 + 10 || *end != '\0' || e->op.version < 1)
                return HV_EINVAL;
            *has_version = 1;
        }
        if (!hv__fhir_id_valid(e->op.id))
            return HV_EINVAL;
        *has_id = 1;
    }
    if (hv_fhir_resource_type(e->op.type) == NULL)
        return HV_EINVAL;
    return HV_OK;
}

static int method_of(const char *m)
{
    static const struct { const char *name; int m; } t[] = {
        {"GET", M_GET}, {"HEAD", M_HEAD}, {"POST", M_POST}, {"PUT", M_PUT}, {"DELETE", M_DELETE}, {"PATCH", M_PATCH}};
    for (size_t i = 0; m != NULL && i < HV_ARRAY_LEN(t); i++)
        if (strcmp(m, t[i].name) == 0)
            return t[i].m;
    return 0;
}

/* Prepares one entry; HV_EINVAL with prep_status set when it is refused. */
static int prepare_entry(hv__bundle_job_t *bj, bentry_t *e, struct json_object *entry)
{
    struct json_object *req = NULL, *res = NULL;
    const char *url, *rt;
    int has_id = 0, has_version = 0, rc;
    json_object_object_get_ex(entry, "resource", &res);
    e->full_url = hv_json_get_str(entry, "fullUrl");
    if (!json_object_object_get_ex(entry, "request", &req)) {
        /* A collection Bundle being imported: each resource is stored as it is. */
        if (!bj->import || res == NULL)
            return refuse(e, 400, "%s", "an entry has no request");
        rt = hv_json_get_str(res, "resourceType");
        const char *id = hv_json_get_str(res, "id");
        hv__fhir_join(e->op.type, sizeof(e->op.type), rt ? rt : "", NULL, NULL);
        e->method = id != NULL ? M_PUT : M_POST;
        e->op.kind = id != NULL ? HV__FOP_UPDATE : HV__FOP_CREATE;
        if (id != NULL) {
            if (!hv__fhir_id_valid(id))
                return refuse(e, 400, "%s", "a resource's id is not a valid FHIR id");
            hv__fhir_join(e->op.id, sizeof(e->op.id), id, NULL, NULL);
        }
        e->op.resource = json_object_get(res);
        e->rank = e->method == M_POST ? 1 : 2;
        return HV_OK;
    }
    e->method = method_of(hv_json_get_str(req, "method"));
    url = hv_json_get_str(req, "url");
    if (e->method == 0)
        return refuse(e, 400, "%s", "request.method must be GET, HEAD, POST, PUT, DELETE or PATCH");
    if (url == NULL)
        return refuse(e, 400, "%s", "request.url is required");
    rc = split_url(url, e, &has_id, &has_version);
    if (rc == HV_ENOMEM)
        return rc;
    if (rc != HV_OK)
        return refuse(e, 400, "request.url \"%.120s\" is not Type, Type/id, Type/id/_history/vid or Type?criteria",
                      url);
    {
        const char *im = hv_json_get_str(req, "ifMatch");
        if (im != NULL) {
            const char *p = im;
            if (strncmp(p, "W/", 2) == 0)
                p += 2;
            if (*p == '"')
                p++;
            e->op.if_match = strtoll(p, NULL, 10);
            if (e->op.if_match < 1)
                return refuse(e, 400, "%s", "request.ifMatch must be an ETag W/\"version\"");
        }
    }
    switch (e->method) {
    case M_GET:
    case M_HEAD:
        e->rank = 3;
        if (!has_id) {
            /* A search (http.html#transaction: GET entries run last): planned now,
             * so that a malformed query fails the Bundle before anything runs. */
            e->op.kind = HV__FOP_READ;
            e->query = hv_strdup(e->op.cond != NULL ? e->op.cond : "");
            e->plan = hv_calloc(1, sizeof(*e->plan));
            if (e->query == NULL || e->plan == NULL)
                return HV_ENOMEM;
            hv__search_plan_init(e->plan);
            if (hv__search_plan_build(e->plan, e->op.type, e->query, 1, SEARCH_DEF_COUNT,
                                      HV__SEARCH_MAX_RESULTS) != HV_OK)
                return refuse(e, 400, "search: %.200s", e->plan->msg[0] ? e->plan->msg : "invalid");
            hv_free(e->op.cond);
            e->op.cond = NULL;
            break;
        }
        if (e->op.cond != NULL)
            return refuse(e, 400, "%s", "a read in a Bundle takes no parameters");
        e->op.kind = has_version ? HV__FOP_VREAD : HV__FOP_READ;
        break;
    case M_POST:
        if (has_id || res == NULL)
            return refuse(e, 400, "%s", "POST needs request.url Type and a resource");
        hv_free(e->op.cond);
        e->op.cond = NULL;
        const char *ine = hv_json_get_str(req, "ifNoneExist"), *rid = hv_json_get_str(res, "id");
        if (ine != NULL) {
            const char *q = strchr(ine, '?');
            e->op.cond = hv_strdup(q != NULL ? q + 1 : ine);
        }
        e->op.kind = HV__FOP_CREATE;
        if (bj->import && rid != NULL && e->op.cond == NULL && hv__fhir_id_valid(rid)) {
            /* Import keeps the ids the source gave its resources. */
            e->op.kind = HV__FOP_UPDATE;
            hv__fhir_join(e->op.id, sizeof(e->op.id), rid, NULL, NULL);
        } else {
            json_object_object_del(res, "id");
        }
        e->rank = 1;
        break;
    case M_PUT:
        if (res == NULL || has_version || (!has_id && e->op.cond == NULL))
            return refuse(e, 400, "%s", "PUT needs request.url Type/id or Type?criteria and a resource");
        if (has_id) {
            const char *bid = hv_json_get_str(res, "id");
            if (bid != NULL && strcmp(bid, e->op.id) != 0)
                return refuse(e, 400, "%s", "the resource's id does not match request.url");
        }
        e->op.kind = HV__FOP_UPDATE;
        e->rank = 2;
        break;
    case M_DELETE:
        if (has_version || (!has_id && e->op.cond == NULL))
            return refuse(e, 400, "%s", "DELETE needs request.url Type/id or Type?criteria");
        e->op.kind = HV__FOP_DELETE;
        e->rank = 0;
        break;
    case M_PATCH:
        rt = res != NULL ? hv_json_get_str(res, "resourceType") : NULL;
        if (rt == NULL || strcmp(rt, "Parameters") != 0)
            return refuse(e, 501, "%s", "PATCH in a Bundle takes a FHIRPath Patch (Parameters) resource");
        if (has_version || (!has_id && e->op.cond == NULL))
            return refuse(e, 400, "%s", "PATCH needs request.url Type/id or Type?criteria");
        e->op.kind = HV__FOP_PATCH;
        e->op.patch = json_object_get(res);
        e->op.patch_fhirpath = 1;
        e->rank = 2;
        return HV_OK;
    }
    if (res != NULL && (e->method == M_POST || e->method == M_PUT)) {
        rt = hv_json_get_str(res, "resourceType");
        if (rt == NULL || strcmp(rt, e->op.type) != 0)
            return refuse(e, 400, "%s", "the resource's type does not match request.url");
        e->op.resource = json_object_get(res);
    }
    return HV_OK;
}

int hv__bundle_prepare(struct json_object *bundle, int import, const char *prefer, hv__bundle_job_t **out,
                       int *status, char *msg, size_t msglen)
{
    hv__bundle_job_t *bj = NULL;
    struct json_object *entries = NULL;
    const char *rt = hv_json_get_str(bundle, "resourceType"), *type = hv_json_get_str(bundle, "type");
    int rc = HV_OK;
    *status = 400;
    if (rt == NULL || strcmp(rt, "Bundle") != 0) {
        snprintf(msg, msglen, "POST /fhir takes a Bundle of type batch or transaction");
        rc = HV_EINVAL;
        goto fail;
    }
    if (type == NULL || (strcmp(type, "batch") != 0 && strcmp(type, "transaction") != 0 &&
                         !(import && strcmp(type, "collection") == 0))) {
        snprintf(msg, msglen, "Bundle.type must be batch or transaction%s", import ? " (or collection)" : "");
        rc = HV_EINVAL;
        goto fail;
    }
    bj = hv_calloc(1, sizeof(*bj));
    if (bj == NULL) {
        rc = HV_ENOMEM;
        goto fail;
    }
    bj->bundle = bundle;
    bundle = NULL;
    bj->transaction = strcmp(type, "batch") != 0;
    bj->import = import;
    bj->failed = -1;
    bj->prefer = prefer != NULL && strstr(prefer, "return=representation") != NULL ? HV__PREFER_REPRESENTATION
                 : prefer != NULL && strstr(prefer, "return=OperationOutcome") != NULL ? HV__PREFER_OUTCOME
                                                                                       : HV__PREFER_MINIMAL;
    if (json_object_object_get_ex(bj->bundle, "entry", &entries) && json_object_is_type(entries, json_type_array))
        bj->n = json_object_array_length(entries);
    if (bj->n > 0) {
        bj->e = hv_calloc(bj->n, sizeof(*bj->e));
        bj->order = hv_calloc(bj->n, sizeof(*bj->order));
        if (bj->e == NULL || bj->order == NULL) {
            rc = HV_ENOMEM;
            goto fail;
        }
    }
    for (size_t i = 0; i < bj->n; i++) {
        bentry_t *e = &bj->e[i];
        hv__fop_init(&e->op, HV__FOP_READ);
        rc = prepare_entry(bj, e, json_object_array_get_idx(entries, i));
        if (rc == HV_ENOMEM)
            goto fail;
        if (rc != HV_OK && bj->transaction) {
            *status = e->prep_status;
            snprintf(msg, msglen, "Bundle.entry[%zu]: %s", i, e->prep_msg);
            goto fail;
        }
        rc = HV_OK;
    }
    /* The processing order: by rank, stable (insertion sort keeps equal ranks in order). */
    for (size_t i = 0; i < bj->n; i++) {
        size_t j = i;
        bj->order[i] = i;
        if (!bj->transaction)
            continue;
        while (j > 0 && bj->e[bj->order[j - 1]].rank > bj->e[i].rank) {
            bj->order[j] = bj->order[j - 1];
            j--;
        }
        bj->order[j] = i;
    }
    *out = bj;
    return HV_OK;
fail:
    if (rc == HV_ENOMEM) {
        *status = 500;
        snprintf(msg, msglen, "out of memory");
    }
    json_object_put(bundle);
    hv__bundle_job_free(bj);
    return rc;
}

/* ---- running (storage thread) ---- */

/* fullUrl → Type/id of the entries that create or update; `idx` sorts `from` for lookups. */
typedef struct urlmap {
    const char **from;
    char (*to)[HV__FHIR_TYPE_MAX + HV__FHIR_ID_MAX + 1];
    size_t *idx;
    size_t n;
    size_t *slots; /* open-addressed by url_hash: a position in idx + 1, 0 empty */
    size_t mask;   /* slots has mask + 1 entries, at least twice n */
} urlmap_t;

/* A fullUrl's hash (the model's key hash): an import's are urn:uuid: URLs of 45 bytes,
 * looked up once per reference. */
static size_t url_hash(const char *s)
{
    return hv__fhir_str_hash(s, strlen(s));
}

/* qsort_r comparator (glibc; the build defines _GNU_SOURCE) over indexes into m->from. */
static int cmp_idx(const void *a, const void *b, void *ud)
{
    const urlmap_t *m = ud;
    return strcmp(m->from[*(const size_t *)a], m->from[*(const size_t *)b]);
}

/*
 * Fills m (its arrays allocated here, freed by the caller) with the fullUrl → Type/id of
 * the entries that create or update with an id, sorted by fullUrl. *dup is the index of
 * an entry whose fullUrl another entry has too, or bj->n when every fullUrl is unique.
 */
static int urlmap_fill(urlmap_t *m, const hv__bundle_job_t *bj, size_t *dup)
{
    *dup = bj->n;
    if (bj->n == 0)
        return HV_OK;
    m->from = hv_calloc(bj->n, sizeof(*m->from));
    m->to = hv_calloc(bj->n, sizeof(*m->to));
    m->idx = hv_calloc(bj->n, sizeof(*m->idx));
    if (m->from == NULL || m->to == NULL || m->idx == NULL)
        return HV_ENOMEM;
    for (size_t i = 0; i < bj->n; i++) {
        const bentry_t *e = &bj->e[i];
        if (e->full_url == NULL || e->op.id[0] == '\0' || (e->method != M_POST && e->method != M_PUT))
            continue;
        m->from[m->n] = e->full_url;
        hv__fhir_join(m->to[m->n], sizeof(m->to[m->n]), e->op.type, "/", e->op.id);
        m->idx[m->n] = m->n;
        m->n++;
    }
    qsort_r(m->idx, m->n, sizeof(*m->idx), cmp_idx, m);
    for (size_t j = 1; j < m->n; j++)
        if (strcmp(m->from[m->idx[j - 1]], m->from[m->idx[j]]) == 0) {
            *dup = m->idx[j];
            break;
        }
    /* The hash index of the unique fullUrls (a map with a duplicate is only refused). A
     * binary search compared ~9 fullUrls sharing their first 9 bytes per reference. */
    if (*dup == bj->n && m->n > 0) {
        size_t cap = 16;
        while (cap < 2 * m->n)
            cap *= 2;
        m->slots = hv_calloc(cap, sizeof(*m->slots));
        if (m->slots == NULL)
            return HV_ENOMEM;
        m->mask = cap - 1;
        for (size_t j = 0; j < m->n; j++) {
            size_t k = url_hash(m->from[m->idx[j]]) & m->mask;
            while (m->slots[k] != 0)
                k = (k + 1) & m->mask;
            m->slots[k] = j + 1;
        }
    }
    return HV_OK;
}

/* The position in idx of ref, or m->n when absent (the hash index; a map without one has
 * no entry, or a duplicate and is refused before any look-up). */
static size_t map_find(const urlmap_t *m, const char *ref)
{
    if (m->slots == NULL)
        return m->n;
    for (size_t k = url_hash(ref) & m->mask; m->slots[k] != 0; k = (k + 1) & m->mask)
        if (strcmp(m->from[m->idx[m->slots[k] - 1]], ref) == 0)
            return m->slots[k] - 1;
    return m->n;
}

static int tx_fail(hv__bundle_job_t *bj, size_t i, int status, const char *code, const char *msg)
{
    bj->failed = (long)i;
    bj->failed_status = status;
    bj->failed_code = code;
    snprintf(bj->failed_msg, sizeof(bj->failed_msg), "Bundle.entry[%zu]: %s", i, msg);
    return HV_EINVAL;
}

/* Rewrites the references of one tree (FHIR R4 references.html, http.html#trules). */
static int rewrite_refs(hv_db_t *db, hv__bundle_job_t *bj, const urlmap_t *m, struct json_object *o, size_t entry,
                        int depth)
{
    int rc = HV_OK;
    if (depth > 128)
        return HV_OK;
    if (json_object_is_type(o, json_type_array)) {
        size_t n = json_object_array_length(o);
        for (size_t i = 0; i < n && rc == HV_OK; i++)
            rc = rewrite_refs(db, bj, m, json_object_array_get_idx(o, i), entry, depth + 1);
        return rc;
    }
    if (!json_object_is_type(o, json_type_object))
        return HV_OK;
    json_object_object_foreach(o, key, val)
    {
        if (strcmp(key, "reference") == 0 && json_object_is_type(val, json_type_string)) {
            const char *ref = json_object_get_string(val);
            const char *q = strchr(ref, '?');
            size_t i = map_find(m, ref);
            if (i < m->n) {
                json_object_set_string(val, m->to[m->idx[i]]);
            } else if (strncmp(ref, "urn:uuid:", 9) == 0 || strncmp(ref, "urn:oid:", 8) == 0) {
                char msg[200];
                snprintf(msg, sizeof(msg), "reference %.120s points at no entry of the transaction", ref);
                return tx_fail(bj, entry, 400, "invalid", msg);
            } else if (q != NULL && (size_t)(q - ref) < HV__FHIR_TYPE_MAX && memchr(ref, '/', (size_t)(q - ref)) == NULL) {
                /* A conditional reference: Type?criteria must match exactly one resource. */
                hv__fop_t t;
                char ids[HV__COND_MAX][HV__FHIR_ID_MAX];
                size_t n = 0;
                hv__fop_init(&t, HV__FOP_READ);
                memcpy(t.type, ref, (size_t)(q - ref));
                t.type[q - ref] = '\0';
                t.cond = hv_strdup(q + 1);
                rc = t.cond == NULL ? HV_ENOMEM : hv__fop_resolve(db, &t, ids, &n);
                if (rc == HV_OK && n != 1) {
                    char msg[200];
                    snprintf(msg, sizeof(msg), "conditional reference %.120s matches %s resources", ref,
                             n == 0 ? "no" : "several");
                    rc = tx_fail(bj, entry, 412, "not-found", msg);
                } else if (rc == HV_EINVAL) {
                    rc = tx_fail(bj, entry, t.status, t.issue_code, t.msg);
                } else if (rc == HV_OK) {
                    char to[HV__FHIR_TYPE_MAX + HV__FHIR_ID_MAX + 1];
                    snprintf(to, sizeof(to), "%s/%s", t.type, ids[0]);
                    json_object_set_string(val, to);
                }
                hv__fop_clear(&t);
                if (rc != HV_OK)
                    return rc;
            }
        } else if (json_object_is_type(val, json_type_object) || json_object_is_type(val, json_type_array)) {
            rc = rewrite_refs(db, bj, m, val, entry, depth + 1);
            if (rc != HV_OK)
                return rc;
        }
    }
    return HV_OK;
}

/* Fixes the ids of the entries that create resources, before anything runs. */
static int assign_ids(hv_db_t *db, hv__bundle_job_t *bj)
{
    for (size_t k = 0; k < bj->n; k++) {
        size_t i = bj->order[k];
        bentry_t *e = &bj->e[i];
        if ((e->op.kind == HV__FOP_CREATE || e->op.kind == HV__FOP_UPDATE) && e->op.cond != NULL) {
            char ids[HV__COND_MAX][HV__FHIR_ID_MAX];
            size_t n = 0;
            int rc = hv__fop_resolve(db, &e->op, ids, &n);
            if (rc == HV_EINVAL)
                return tx_fail(bj, i, e->op.status, e->op.issue_code, e->op.msg);
            if (rc != HV_OK)
                return rc;
            if (n > 1)
                return tx_fail(bj, i, 412, "multiple-matches", "the criteria match several resources");
            hv_free(e->op.cond);
            e->op.cond = NULL;
            if (n == 1) {
                snprintf(e->op.id, sizeof(e->op.id), "%s", ids[0]);
                if (e->op.kind == HV__FOP_CREATE) {
                    /* http.html#ccreate: the match is the result; nothing is written. */
                    e->cond_match = 1;
                    e->op.kind = HV__FOP_READ;
                }
            } else if (e->op.kind == HV__FOP_UPDATE) {
                const char *bid = hv_json_get_str(e->op.resource, "id");
                if (bid != NULL && hv__fhir_id_valid(bid))
                    snprintf(e->op.id, sizeof(e->op.id), "%s", bid);
                else
                    hv__fhir_new_id(e->op.id);
            }
        }
        if (e->op.kind == HV__FOP_CREATE && e->op.id[0] == '\0')
            hv__fhir_new_id(e->op.id);
        if (e->op.kind == HV__FOP_UPDATE && e->op.resource != NULL &&
            hv_json_set_str(e->op.resource, "id", e->op.id) != 0)
            return HV_ENOMEM;
    }
    return HV_OK;
}

typedef struct sctx {
    const char *base;
    hv_buf_t *b;
    int64_t count;
    size_t rows;
    const hv_auth_principal_t *p; /* the caller; rows its scopes do not cover are left out */
    int check;
    int more;      /* a row follows the page */
    char *cursor;  /* the keyset cursor after the page's last row (owned) */
} sctx_t;

static int search_row(void *ud, const hv__store_row_t *row)
{
    sctx_t *c = ud;
    char url[512];
    if ((int64_t)c->rows >= c->count) {
        c->more = 1; /* the extra row only tells that there are more */
        return HV_OK;
    }
    if (row->cursor != NULL) {
        hv_free(c->cursor);
        if ((c->cursor = hv_strdup(row->cursor)) == NULL)
            return HV_ENOMEM;
    }
    if (c->check && hv__authz_resource(c->p, HV_AUTH_SEARCH, row->type, row->id, NULL, row->text) != HV_OK)
        return HV_OK; /* outside the caller's scopes (fhir/rest_authz.c) */
    snprintf(url, sizeof(url), "%s/%s/%s", c->base, row->type, row->id);
    hv_buf_puts(c->b, c->rows++ ? ",{\"fullUrl\":" : "{\"fullUrl\":");
    hv_buf_json_str(c->b, url, strlen(url));
    hv_buf_puts(c->b, ",\"resource\":");
    hv_buf_append(c->b, row->text, row->text_len);
    return hv_buf_puts(c->b, ",\"search\":{\"mode\":\"match\"}}");
}

/* Runs a search entry: op.text becomes a searchset Bundle (FHIR R4 http.html#search),
 * one page of it; when more follow, its next link is the plain search's
 * (GET [base]/[type]?criteria&_cursor=…, the keyset cursor of fhir/search_run.c). */
static int run_search(hv_db_t *db, hv__bundle_job_t *bj, bentry_t *e)
{
    hv_buf_t b, entries;
    sctx_t c = {bj->base, &entries, e->plan->count, 0, e->op.principal,
                hv__authz_restricted(e->op.principal, HV_AUTH_SEARCH, e->op.type), 0, NULL};
    int64_t total = -1;
    int rc;
    char self[1024];
    hv_buf_init(&b, SEARCH_MAX_BYTES);
    hv_buf_init(&entries, SEARCH_MAX_BYTES);
    rc = hv__search_plan_run(db, e->plan, search_row, &c, &total);
    if (rc != HV_OK)
        goto out;
    if (total < 0 && e->plan->total == HV__TOTAL_ACCURATE && c.rows < (size_t)c.count)
        total = (int64_t)c.rows;
    snprintf(self, sizeof(self), "%s/%s%s%.400s", bj->base, e->op.type, e->query[0] ? "?" : "", e->query);
    hv_buf_puts(&b, "{\"resourceType\":\"Bundle\",\"type\":\"searchset\"");
    if (total >= 0)
        hv_buf_printf(&b, ",\"total\":%lld", (long long)total);
    hv_buf_puts(&b, ",\"link\":[{\"relation\":\"self\",\"url\":");
    hv_buf_json_str(&b, self, strlen(self));
    if (c.more && c.cursor != NULL && c.count > 0) {
        /* The query without its _cursor, then the cursor after this page. */
        hv_buf_t next;
        hv_buf_init(&next, 16384);
        hv_buf_printf(&next, "%s/%s?", bj->base, e->op.type);
        for (const char *p = e->query; *p;) {
            size_t n = strcspn(p, "&");
            if (n > 0 && strncmp(p, "_cursor=", 8) != 0) {
                hv_buf_append(&next, p, n);
                hv_buf_putc(&next, '&');
            }
            p += n + (p[n] == '&');
        }
        hv_buf_printf(&next, "_cursor=%s", c.cursor);
        hv_buf_puts(&b, "},{\"relation\":\"next\",\"url\":");
        hv_buf_json_str(&b, next.data ? next.data : "", next.len);
        hv_buf_release(&next);
    }
    hv_buf_puts(&b, "}],\"entry\":[");
    hv_buf_append(&b, entries.data ? entries.data : "", entries.len);
    rc = hv_buf_puts(&b, "]}");
    if (rc != HV_OK) {
        hv__fop_fail(&e->op, 413, "too-costly", "the search result is too large; give a smaller _count");
        rc = HV_OK;
        goto out;
    }
    hv_free(e->op.text);
    e->op.text_len = b.len;
    e->op.text = hv_buf_take(&b);
    e->op.status = 200;
out:
    hv_free(c.cursor);
    hv_buf_release(&b);
    hv_buf_release(&entries);
    return rc;
}

/* Runs one entry: a search, or an interaction on one resource. */
static int run_entry(hv_db_t *db, hv__bundle_job_t *bj, bentry_t *e)
{
    if (e->plan != NULL) {
        e->op.status = 0;
        return run_search(db, bj, e);
    }
    return hv__fop_run(db, &e->op);
}

void hv__bundle_set_base(hv__bundle_job_t *bj, const char *base)
{
    snprintf(bj->base, sizeof(bj->base), "%s", base != NULL ? base : "");
}

/* ---- merged patients (hv__bundle_set_move_merged) ---- */

#define MERGE_MAX 10000 /* resources one merge may re-point; more fails the transaction */

static int collect_referrer(void *ud, const hv__store_row_t *row)
{
    struct json_object *arr = ud;
    /* The replaced and the surviving Patient refer to each other through link: that stays. */
    if (strcmp(row->type, "Patient") == 0)
        return HV_OK;
    if (json_object_array_length(arr) >= MERGE_MAX)
        return HV_ETOOBIG;
    json_object_array_add(arr, json_object_new_string(row->type));
    json_object_array_add(arr, json_object_new_string(row->id));
    return HV_OK;
}

/* Rewrites every reference to Patient/from (relative, or an absolute URL ending in
 * /Patient/from) under o to Patient/to; returns how many. */
static size_t repoint(struct json_object *o, const char *from, const char *to)
{
    size_t n = 0;
    if (json_object_is_type(o, json_type_array)) {
        for (size_t i = 0; i < json_object_array_length(o); i++)
            n += repoint(json_object_array_get_idx(o, i), from, to);
        return n;
    }
    if (!json_object_is_type(o, json_type_object))
        return 0;
    json_object_object_foreach(o, k, v) {
        if (strcmp(k, "reference") == 0 && json_object_is_type(v, json_type_string)) {
            const char *ref = json_object_get_string(v);
            size_t rl = strlen(ref), fl = strlen(from);
            if (rl >= fl && strcmp(ref + rl - fl, from) == 0 && (rl == fl || ref[rl - fl - 1] == '/')) {
                hv_json_set_str(o, "reference", to);
                n++;
            }
        } else if (strcmp(k, "contained") != 0) {
            n += repoint(v, from, to);
        }
    }
    return n;
}

/*
 * A Patient written by the transaction with link.type "replaced-by" (FHIR R4
 * patient.html#links: "the patient resource containing this link must no longer be
 * used") has been merged into link.other: every current resource that refers to it
 * (its compartment, fhir/store.c refs) gets a new version that refers to the survivor
 * instead — in the same database transaction as the Bundle, so the merge is atomic.
 * Patients themselves are left alone (their links say who replaced whom).
 */
static int move_merged(hv_db_t *db, hv__bundle_job_t *bj, uint64_t now)
{
    int rc = HV_OK;
    bj->moved = 0;
    for (size_t i = 0; i < bj->n && rc == HV_OK; i++) {
        bentry_t *e = &bj->e[i];
        struct json_object *links = NULL, *found = NULL;
        const char *survivor = NULL;
        char from[HV__FHIR_ID_MAX + 8], to[HV__FHIR_ID_MAX + 8];
        if (strcmp(e->op.type, "Patient") != 0 || e->op.resource == NULL || e->op.id[0] == '\0' ||
            (e->method != M_PUT && e->method != M_POST))
            continue;
        if (!json_object_object_get_ex(e->op.resource, "link", &links) ||
            !json_object_is_type(links, json_type_array))
            continue;
        for (size_t k = 0; k < json_object_array_length(links); k++) {
            struct json_object *l = json_object_array_get_idx(links, k), *other = NULL;
            const char *t = hv_json_get_str(l, "type");
            if (t != NULL && strcmp(t, "replaced-by") == 0 && json_object_object_get_ex(l, "other", &other))
                survivor = hv_json_get_str(other, "reference");
        }
        if (survivor == NULL || strncmp(survivor, "Patient/", 8) != 0 || strcmp(survivor + 8, e->op.id) == 0)
            continue;
        snprintf(from, sizeof(from), "Patient/%s", e->op.id);
        snprintf(to, sizeof(to), "%s", survivor);
        found = json_object_new_array();
        rc = hv__store_compartment(db, e->op.id, NULL, collect_referrer, found);
        if (rc == HV_ETOOBIG) {
            json_object_put(found);
            return tx_fail(bj, i, 422, "too-costly", "the merged Patient has more referring resources than "
                                                     "one transaction re-points");
        }
        for (size_t k = 0; rc == HV_OK && k + 1 < json_object_array_length(found); k += 2) {
            const char *type = json_object_get_string(json_object_array_get_idx(found, k));
            const char *id = json_object_get_string(json_object_array_get_idx(found, k + 1));
            hv__store_row_t row;
            hv__fop_t op;
            struct json_object *res;
            memset(&row, 0, sizeof(row));
            rc = hv__store_get(db, type, id, 0, &row);
            if (rc == HV_ENOTFOUND) {
                rc = HV_OK;
                continue;
            }
            if (rc != HV_OK)
                break;
            res = json_tokener_parse(row.text);
            if (res == NULL || repoint(res, from, to) == 0) {
                json_object_put(res);
                hv__store_row_clear(&row);
                continue;
            }
            hv__fop_init(&op, HV__FOP_UPDATE);
            snprintf(op.type, sizeof(op.type), "%s", type);
            snprintf(op.id, sizeof(op.id), "%s", id);
            op.if_match = row.version;
            op.resource = res;
            op.now_ms = now;
            hv__store_row_clear(&row);
            rc = hv__fop_run(db, &op);
            if (rc == HV_OK && op.status >= 400)
                rc = tx_fail(bj, i, op.status, op.issue_code, op.msg);
            else if (rc != HV_OK)
                tx_fail(bj, i, op.status, op.issue_code, op.msg);
            else
                bj->moved++;
            hv__fop_clear(&op);
        }
        json_object_put(found);
    }
    return rc;
}

void hv__bundle_set_move_merged(hv__bundle_job_t *bj, int on)
{
    bj->move_merged = on;
}

size_t hv__bundle_moved(const hv__bundle_job_t *bj)
{
    return bj->moved;
}

/* Writes the index rows waiting in a transaction's batch (fhir/search_int.h); a failure
 * fails the transaction, named after the last entry whose rows joined it. */
static int flush_batch(hv_db_t *db, hv__bundle_job_t *bj, hv__search_batch_t *batch, size_t last)
{
    int rc;
    if (batch->n == 0)
        return HV_OK;
    rc = hv__search_batch_flush(db, batch);
    if (rc != HV_OK)
        tx_fail(bj, last, 500, "exception", "its search-index rows could not be written");
    return rc;
}

/* Whether entry e writes a first version for certain: an unconditional create, or an update
 * of a resource the caller knows is not stored (an import into an empty store). */
static int writes_first_version(const bentry_t *e)
{
    return e->op.cond == NULL && (e->op.kind == HV__FOP_CREATE || (e->op.kind == HV__FOP_UPDATE && e->op.absent));
}

/*
 * PostgreSQL: takes the row ids of the transaction's first versions from resources' sequence
 * in one statement, in processing order, so that each version's INSERT is queued with its
 * index rows (hv_db_step_later) instead of waiting for its RETURNING: one round trip for the
 * Bundle instead of one per resource. Ids a failed run took are skipped, as a rolled-back
 * INSERT's are.
 */
static int take_rids(hv_db_t *db, hv__bundle_job_t *bj)
{
    hv_db_stmt_t *st = NULL;
    size_t n = 0, k = 0;
    int rc;
    for (size_t i = 0; i < bj->n; i++) {
        bj->e[i].op.rid_pre = 0;
        n += writes_first_version(&bj->e[i]);
    }
    if (hv_db_kind(db) != HV_DB_PG || n < 2)
        return HV_OK;
    rc = hv_db_prepare(db, "SELECT nextval(pg_get_serial_sequence('resources', 'rid')) FROM generate_series(1, $1)", &st);
    if (rc != HV_OK)
        return rc;
    hv_db_bind_int64(st, 1, (int64_t)n);
    while ((rc = hv_db_step(st)) == HV_DB_ROW) {
        while (k < bj->n && !writes_first_version(&bj->e[bj->order[k]]))
            k++;
        if (k == bj->n)
            break;
        bj->e[bj->order[k++]].op.rid_pre = hv_db_column_int64(st, 0);
    }
    hv_db_done(st);
    return rc < 0 ? rc : HV_OK;
}

static int run_transaction(hv_db_t *db, hv__bundle_job_t *bj)
{
    urlmap_t m;
    hv__search_batch_t batch, *into = bj->deferred != NULL ? bj->deferred : &batch;
    size_t dup, batched = 0;
    int rc;
    uint64_t now = hv_now_ms();
    memset(&m, 0, sizeof(m));
    memset(&batch, 0, sizeof(batch));
    if (bj->refs_done) {
        /* hv__bundle_precompute did the ids and the references. This is all a run
         * changes in bj besides the entries' outcomes, which each run sets again: a
         * precomputed transaction may run twice (hv_storage_submit_rerun). */
        bj->failed = -1;
        goto run;
    }
    rc = assign_ids(db, bj);
    if (rc != HV_OK)
        return rc;
    rc = urlmap_fill(&m, bj, &dup);
    if (rc != HV_OK)
        goto out;
    if (dup < bj->n) {
        rc = tx_fail(bj, dup, 400, "invalid", "two entries have the same fullUrl");
        goto out;
    }
    for (size_t i = 0; i < bj->n; i++) {
        bentry_t *e = &bj->e[i];
        if (e->op.resource != NULL) {
            rc = rewrite_refs(db, bj, &m, e->op.resource, i, 0);
            if (rc != HV_OK)
                goto out;
        }
    }
run:
    rc = take_rids(db, bj);
    if (rc != HV_OK)
        goto out;
    for (size_t k = 0; k < bj->n; k++) {
        size_t i = bj->order[k];
        bentry_t *e = &bj->e[i];
        /* An unconditional create with rows computed ahead writes a new id's first version,
         * and so does an update of a resource known not to be stored (an import into an empty
         * store: writes_first_version): its index rows join the batch. Any other entry may read
         * the index (a search, a condition, the version it replaces): the batch is written
         * before it runs. */
        int joins = e->ix != NULL && writes_first_version(e) && e->plan == NULL;
        if (joins) {
            batched = i;
        } else {
            rc = flush_batch(db, bj, into, batched);
            if (rc != HV_OK)
                goto out;
        }
        hv__search_rows_join(e->ix, joins ? into : NULL);
        e->op.now_ms = now; /* one transaction, one lastUpdated */
        e->op.ix_pre = e->ix;
        rc = run_entry(db, bj, e);
        if (rc != HV_OK) {
            tx_fail(bj, i, e->op.status, e->op.issue_code, e->op.msg);
            goto out;
        }
        if (e->op.status >= 400) {
            rc = tx_fail(bj, i, e->op.status, e->op.issue_code, e->op.msg);
            goto out;
        }
    }
    /* Deferred, the rows wait for the storage's flush, before the next job that is not a
     * create or a transaction like this one, or the commit. */
    rc = into == &batch || bj->move_merged ? flush_batch(db, bj, into, batched) : HV_OK;
    if (rc == HV_OK && bj->move_merged)
        rc = move_merged(db, bj, now);
out:
    /* The batch is this run's: a rerun joins the rows again. */
    for (size_t i = 0; i < bj->n; i++)
        hv__search_rows_join(bj->e[i].ix, NULL);
    hv__search_batch_clear(&batch);
    hv_free(m.from);
    hv_free(m.to);
    hv_free(m.idx);
    hv_free(m.slots);
    return rc;
}

static int run_batch(hv_db_t *db, hv__bundle_job_t *bj)
{
    for (size_t i = 0; i < bj->n; i++) {
        bentry_t *e = &bj->e[i];
        int rc;
        if (e->prep_status > 0)
            continue;
        if (e->op.kind == HV__FOP_CREATE && e->op.id[0] == '\0' && e->op.cond == NULL)
            hv__fhir_new_id(e->op.id);
        rc = hv_db_exec(db, "SAVEPOINT hv_entry");
        if (rc != HV_OK)
            return rc;
        rc = run_entry(db, bj, e);
        if (rc != HV_OK || e->op.status >= 400) {
            e->op.change = HV__CHANGE_NONE;
            rc = hv_db_exec(db, "ROLLBACK TO SAVEPOINT hv_entry");
            if (rc != HV_OK)
                return rc;
        }
        rc = hv_db_exec(db, "RELEASE SAVEPOINT hv_entry");
        if (rc != HV_OK)
            return rc;
    }
    return HV_OK;
}

/* The references needs_store found in the map: each string and what rewrite_refs would
 * set it to (the map's target). */
typedef struct refhits {
    struct refhit {
        struct json_object *str;
        const char *to;
    } *v;
    size_t n, cap;
} refhits_t;

static int hits_add(refhits_t *h, struct json_object *str, const char *to)
{
    if (h->n == h->cap) {
        size_t cap = h->cap ? h->cap * 2 : 64;
        struct refhit *v = hv_realloc(h->v, cap * sizeof(*v));
        if (v == NULL)
            return HV_ENOMEM;
        h->v = v;
        h->cap = cap;
    }
    h->v[h->n].str = str;
    h->v[h->n++].to = to;
    return HV_OK;
}

/* True when tree o holds a reference that needs the store (a conditional one) or
 * that the map cannot rewrite (an urn:uuid/urn:oid no entry defines): such a
 * Bundle is left to run_transaction, which resolves or refuses it. The references
 * the map rewrites go to hits, so that hv__bundle_precompute rewrites them without a
 * second walk of every tree (rewrite_refs: ~7k instructions a resource); when hits
 * cannot grow, the Bundle is left to run_transaction too. t is o's type: each member's
 * type is asked once (json-c's type test is a call, and this walk visits every member). */
static int needs_store(const urlmap_t *m, struct json_object *o, enum json_type t, int depth, refhits_t *hits)
{
    if (depth > 128)
        return 0;
    if (t == json_type_array) {
        size_t n = json_object_array_length(o);
        for (size_t i = 0; i < n; i++) {
            struct json_object *v = json_object_array_get_idx(o, i);
            enum json_type vt = json_object_get_type(v);
            if ((vt == json_type_object || vt == json_type_array) && needs_store(m, v, vt, depth + 1, hits))
                return 1;
        }
        return 0;
    }
    if (t != json_type_object)
        return 0;
    json_object_object_foreach(o, key, val)
    {
        enum json_type vt = json_object_get_type(val);
        if (key[0] == 'r' && strcmp(key, "reference") == 0 && vt == json_type_string) {
            const char *ref = json_object_get_string(val);
            size_t i = map_find(m, ref);
            if (i < m->n) {
                if (hits_add(hits, val, m->to[m->idx[i]]) != HV_OK)
                    return 1;
                continue;
            }
            if (strncmp(ref, "urn:uuid:", 9) == 0 || strncmp(ref, "urn:oid:", 8) == 0 || strchr(ref, '?') != NULL)
                return 1;
        } else if ((vt == json_type_object || vt == json_type_array) && needs_store(m, val, vt, depth + 1, hits)) {
            return 1;
        }
    }
    return 0;
}

/*
 * See fhir/store_int.h. The ids and references are fixed exactly as run_transaction
 * would (assign_ids, then rewrite_refs with the same map), without a database:
 * only Bundles whose entries are all unconditional creates and updates and whose
 * references are all Type/id, absolute or urn: references to entries qualify.
 * Anything else is left untouched for run_transaction.
 */
int hv__bundle_precompute(hv__bundle_job_t *bj)
{
    urlmap_t m;
    refhits_t hits;
    size_t dup;
    int rc = HV_OK;
    memset(&m, 0, sizeof(m));
    memset(&hits, 0, sizeof(hits));
    if (!bj->transaction || bj->move_merged || bj->refs_done || bj->n == 0)
        return HV_OK;
    for (size_t i = 0; i < bj->n; i++) {
        const bentry_t *e = &bj->e[i];
        if ((e->op.kind != HV__FOP_CREATE && e->op.kind != HV__FOP_UPDATE) || e->op.cond != NULL ||
            e->plan != NULL || e->op.resource == NULL || e->op.if_match > 0 ||
            (e->method != M_POST && e->method != M_PUT))
            return HV_OK;
    }
    /* assign_ids needs no database when no entry is conditional. */
    if (assign_ids(NULL, bj) != HV_OK) {
        rc = HV_EINVAL; /* cannot happen without conditions; run_transaction decides */
        goto out;
    }
    /* Every entry is a POST or PUT (above); a repeated fullUrl is run_transaction's
     * to refuse. */
    if (urlmap_fill(&m, bj, &dup) != HV_OK || dup < bj->n)
        goto out;
    for (size_t i = 0; i < bj->n; i++)
        if (needs_store(&m, bj->e[i].op.resource, json_object_get_type(bj->e[i].op.resource), 0, &hits))
            goto out;
    /* What rewrite_refs would do on these trees: needs_store excluded everything but the
     * map's references. */
    for (size_t k = 0; k < hits.n; k++)
        json_object_set_string(hits.v[k].str, hits.v[k].to);
    bj->refs_done = 1;
    for (size_t i = 0; i < bj->n; i++) {
        bentry_t *e = &bj->e[i];
        /* A failure leaves the entry to compute its rows at the write. */
        if (hv__search_index_rows(e->op.type, e->op.resource, &e->ix) != HV_OK)
            e->ix = NULL;
        /* The compartments (the refs rows) of every entry too, from the same final tree,
         * and its stored text in import mode, else for creates only: their id is new, so
         * they are first versions, while a PUT may update a stored resource, which the
         * writer serializes again. */
        hv__fop_ahead(&e->op, bj->import || e->op.kind == HV__FOP_CREATE);
    }
out:
    hv_free(hits.v);
    hv_free(m.from);
    hv_free(m.to);
    hv_free(m.idx);
    hv_free(m.slots);
    return rc;
}

int hv__bundle_is_precomputed(const hv__bundle_job_t *bj)
{
    return bj->refs_done;
}

int hv__bundle_run(hv_db_t *db, hv__bundle_job_t *bj)
{
    return bj->transaction ? run_transaction(db, bj) : run_batch(db, bj);
}

/* ---- idempotent redelivery (the fhir-store channel destination) ---- */

void hv__fhir_derived_id(const char *seed, size_t index, char out[HV__FHIR_ID_MAX])
{
    /* Two FNV-1a 64-bit hashes (different offset bases) of "seed#index" give 128
     * bits, written as an RFC 9562 version 8 (custom) UUID. */
    uint64_t h1 = 0xcbf29ce484222325ull, h2 = 0x84222325cbf29ce4ull;
    char text[600], hex[33];
    unsigned char b[16];
    int n = snprintf(text, sizeof(text), "%s#%zu", seed, index);
    for (int i = 0; i < n && i < (int)sizeof(text) - 1; i++) {
        h1 = (h1 ^ (unsigned char)text[i]) * 0x100000001b3ull;
        h2 = (h2 ^ (unsigned char)text[i]) * 0x100000001b3ull;
    }
    for (int i = 0; i < 8; i++) {
        b[i] = (unsigned char)(h1 >> (8 * (7 - i)));
        b[8 + i] = (unsigned char)(h2 >> (8 * (7 - i)));
    }
    b[6] = (unsigned char)(0x80 | (b[6] & 0x0f));
    b[8] = (unsigned char)(0x80 | (b[8] & 0x3f));
    hv_hex(b, 16, hex);
    snprintf(out, HV__FHIR_ID_MAX, "%.8s-%.4s-%.4s-%.4s-%.12s", hex, hex + 8, hex + 12, hex + 16, hex + 20);
}

size_t hv__bundle_seed_ids(hv__bundle_job_t *bj, const char *seed)
{
    size_t seeded = 0;
    if (!bj->transaction)
        return 0;
    for (size_t i = 0; i < bj->n; i++) {
        bentry_t *e = &bj->e[i];
        if (e->op.kind == HV__FOP_CREATE && e->op.cond == NULL && e->op.id[0] == '\0') {
            hv__fhir_derived_id(seed, i, e->op.id);
            seeded++;
        }
    }
    return seeded;
}

int hv__bundle_applied(hv_db_t *db, const hv__bundle_job_t *bj, const char *seed, int *applied)
{
    *applied = 0;
    if (!bj->transaction)
        return HV_OK;
    for (size_t i = 0; i < bj->n; i++) {
        const bentry_t *e = &bj->e[i];
        char id[HV__FHIR_ID_MAX];
        hv__store_row_t row;
        int rc;
        if (e->op.kind != HV__FOP_CREATE || e->op.cond != NULL)
            continue;
        hv__fhir_derived_id(seed, i, id);
        if (strcmp(id, e->op.id) != 0)
            continue;
        /* The first seeded create tells: a transaction is all or nothing. */
        rc = hv__store_get(db, e->op.type, id, 0, &row);
        if (rc == HV_ENOTFOUND)
            return HV_OK;
        if (rc != HV_OK)
            return rc;
        hv__store_row_clear(&row);
        *applied = 1;
        return HV_OK;
    }
    return HV_OK;
}

size_t hv__bundle_failed_count(const hv__bundle_job_t *bj, int *first_status)
{
    size_t k = 0;
    *first_status = 0;
    if (bj->transaction && bj->failed >= 0) {
        *first_status = bj->failed_status;
        return 1;
    }
    for (size_t i = 0; i < bj->n; i++) {
        int st = bj->e[i].prep_status > 0 ? bj->e[i].prep_status : bj->e[i].op.status;
        if (st >= 400) {
            if (k++ == 0)
                *first_status = st;
        }
    }
    return k;
}

int hv__bundle_is_transaction(const hv__bundle_job_t *bj)
{
    return bj->transaction;
}

/* ---- the response ---- */

struct json_object *hv__bundle_response(hv__bundle_job_t *bj, const char *base, int *status)
{
    struct json_object *out, *entries;
    if (bj->transaction && bj->failed >= 0) {
        *status = bj->failed_status >= 400 ? bj->failed_status : 500;
        return hv__outcome_new("error", bj->failed_code ? bj->failed_code : "processing", bj->failed_msg);
    }
    *status = 200;
    out = json_object_new_object();
    entries = json_object_new_array();
    hv_json_set_str(out, "resourceType", "Bundle");
    hv_json_set_str(out, "type", bj->transaction ? "transaction-response" : "batch-response");
    for (size_t i = 0; i < bj->n; i++) {
        bentry_t *e = &bj->e[i];
        hv__fop_t *op = &e->op;
        struct json_object *ent = json_object_new_object(), *resp = json_object_new_object();
        char buf[512];
        int st = e->prep_status > 0 ? e->prep_status : op->status;
        if (e->cond_match)
            st = 200;
        snprintf(buf, sizeof(buf), "%d %s", st, status_text(st));
        hv_json_set_str(resp, "status", buf);
        if (st < 400) {
            if (op->id[0] != '\0' && op->out_version > 0) {
                char ts[40];
                snprintf(buf, sizeof(buf), "%s/%s", base, op->type);
                if (op->kind != HV__FOP_DELETE) {
                    snprintf(buf, sizeof(buf), "%s/%s/%s", base, op->type, op->id);
                    hv_json_set_str(ent, "fullUrl", buf);
                }
                if (op->kind != HV__FOP_READ && op->kind != HV__FOP_VREAD && op->kind != HV__FOP_DELETE) {
                    snprintf(buf, sizeof(buf), "%s/%s/_history/%lld", op->type, op->id, (long long)op->out_version);
                    hv_json_set_str(resp, "location", buf);
                }
                snprintf(buf, sizeof(buf), "W/\"%lld\"", (long long)op->out_version);
                hv_json_set_str(resp, "etag", buf);
                if (op->out_ms > 0) {
                    hv__fhir_instant(op->out_ms, ts, sizeof(ts));
                    hv_json_set_str(resp, "lastModified", ts);
                }
            }
            if (op->text != NULL && e->method != M_HEAD &&
                (op->kind == HV__FOP_READ || op->kind == HV__FOP_VREAD || bj->prefer == HV__PREFER_REPRESENTATION)) {
                struct json_object *res = json_tokener_parse(op->text);
                if (res != NULL)
                    hv_json_set(ent, "resource", res);
            }
        } else {
            hv_json_set(resp, "outcome",
                        hv__outcome_new("error", e->prep_status > 0 ? "invalid" : op->issue_code ? op->issue_code
                                                                                                   : "processing",
                                        e->prep_status > 0 ? e->prep_msg : op->msg));
        }
        hv_json_set(ent, "response", resp);
        json_object_array_add(entries, ent);
    }
    hv_json_set(out, "entry", entries);
    return out;
}

/* Appends the concatenation of parts[0..n) as one JSON string. */
static int put_json_parts(hv_buf_t *b, const char *const *parts, size_t n)
{
    char tmp[1024];
    size_t len = 0;
    for (size_t i = 0; i < n; i++) {
        size_t k = strlen(parts[i]);
        if (len + k >= sizeof(tmp))
            return HV_ETOOBIG;
        memcpy(tmp + len, parts[i], k);
        len += k;
    }
    return hv_buf_json_str(b, tmp, len);
}

/* fhir/store_int.h. The same members in the same order as hv__bundle_response's tree
 * written by hv_fhir_json_write (json.html element order: entry.fullUrl before
 * entry.response; response.status, location, etag, lastModified), without building and
 * writing the tree: that was a fifth of a two-entry transaction's loop-thread work. */
int hv__bundle_response_text(hv__bundle_job_t *bj, const char *base, hv_buf_t *out)
{
    int rc;
    if (bj->n == 0 || (bj->transaction && bj->failed >= 0))
        return HV_ENOTSUP;
    for (size_t i = 0; i < bj->n; i++) {
        bentry_t *e = &bj->e[i];
        hv__fop_t *op = &e->op;
        int st = e->cond_match ? 200 : e->prep_status > 0 ? e->prep_status : op->status;
        if (st >= 400 || (op->text != NULL && e->method != M_HEAD &&
                          (op->kind == HV__FOP_READ || op->kind == HV__FOP_VREAD ||
                           bj->prefer == HV__PREFER_REPRESENTATION)))
            return HV_ENOTSUP; /* an outcome or a resource in the entry: the tree writes it */
    }
    /* One reservation for the whole answer instead of the five or six reallocations of
     * appends that double the buffer from empty (a third of this function's cost on a
     * two-entry transaction). An entry writes base, type and id in its fullUrl, type and id
     * in its location, and about 190 bytes of member names, status text, versions and the
     * instant besides. An estimate, not a bound: a longer status text, or a string that
     * needs escaping, makes the appends grow the buffer as before. */
    {
        size_t est = 80, blen = strlen(base);
        for (size_t i = 0; i < bj->n; i++)
            est += blen + 2 * (strlen(bj->e[i].op.type) + strlen(bj->e[i].op.id)) + 192;
        /* Over the buffer's cap the appends below decide, as they did. */
        if (hv_buf_reserve(out, est) == HV_ENOMEM)
            return HV_ENOMEM;
    }
    rc = hv_buf_puts(out, bj->transaction ? "{\"resourceType\":\"Bundle\",\"type\":\"transaction-response\",\"entry\":["
                                          : "{\"resourceType\":\"Bundle\",\"type\":\"batch-response\",\"entry\":[");
    for (size_t i = 0; i < bj->n && rc == HV_OK; i++) {
        bentry_t *e = &bj->e[i];
        hv__fop_t *op = &e->op;
        int st = e->cond_match ? 200 : e->prep_status > 0 ? e->prep_status : op->status;
        char num[24], *v = num + sizeof(num);
        uint64_t ver = op->out_version > 0 ? (uint64_t)op->out_version : 0;
        int versioned = op->id[0] != '\0' && op->out_version > 0;
        *--v = '\0';
        do {
            *--v = (char)('0' + ver % 10);
            ver /= 10;
        } while (ver > 0);
        rc = hv_buf_puts(out, i == 0 ? "{" : ",{");
        if (rc == HV_OK && versioned && op->kind != HV__FOP_DELETE) {
            const char *parts[5] = {base, "/", op->type, "/", op->id};
            rc = hv_buf_puts(out, "\"fullUrl\":");
            if (rc == HV_OK)
                rc = put_json_parts(out, parts, 5);
            if (rc == HV_OK)
                rc = hv_buf_putc(out, ',');
        }
        if (rc == HV_OK) {
            const char *parts[3] = {"", " ", status_text(st)};
            char code[16], *c = code + sizeof(code);
            unsigned u = (unsigned)st;
            *--c = '\0';
            do {
                *--c = (char)('0' + u % 10);
                u /= 10;
            } while (u > 0);
            parts[0] = c;
            rc = hv_buf_puts(out, "\"response\":{\"status\":");
            if (rc == HV_OK)
                rc = put_json_parts(out, parts, 3);
        }
        if (rc == HV_OK && versioned) {
            if (op->kind != HV__FOP_READ && op->kind != HV__FOP_VREAD && op->kind != HV__FOP_DELETE) {
                const char *parts[5] = {op->type, "/", op->id, "/_history/", v};
                rc = hv_buf_puts(out, ",\"location\":");
                if (rc == HV_OK)
                    rc = put_json_parts(out, parts, 5);
            }
            if (rc == HV_OK) {
                const char *parts[3] = {"W/\"", v, "\""};
                rc = hv_buf_puts(out, ",\"etag\":");
                if (rc == HV_OK)
                    rc = put_json_parts(out, parts, 3);
            }
            if (rc == HV_OK && op->out_ms > 0) {
                char ts[40];
                const char *parts[1] = {ts};
                hv__fhir_instant(op->out_ms, ts, sizeof(ts));
                rc = hv_buf_puts(out, ",\"lastModified\":");
                if (rc == HV_OK)
                    rc = put_json_parts(out, parts, 1);
            }
        }
        if (rc == HV_OK)
            rc = hv_buf_puts(out, "}}");
    }
    if (rc == HV_OK)
        rc = hv_buf_puts(out, "]}");
    return rc;
}

/* ---- POST /fhir ---- */

static int job_bundle(hv_db_t *db, void *arg)
{
    hv__rreq_t *r = arg;
    r->bj->deferred = hv_storage_deferring() ? &r->f->deferred : NULL;
    return hv__bundle_run(db, r->bj);
}

/* Whether the bundle job of r may run twice (hv_storage_submit_rerun): a transaction
 * whose ids and references hv__bundle_precompute fixed (run_transaction then changes
 * nothing in it that a second run would not set again). */
static int bundle_rerunnable(const hv__rreq_t *r)
{
    return r->bj->transaction && hv__bundle_is_precomputed(r->bj);
}

static void done_bundle(int status, void *arg)
{
    hv__rreq_t *r = arg;
    struct json_object *resp;
    int st = 200;
    if (status != HV_OK && !(r->bj->transaction && r->bj->failed >= 0)) {
        hv__rest_outcome(r, 500, "error", "exception", "the Bundle could not be stored: %s", hv_strerror(status));
        goto out;
    }
    if (!r->xml && !r->pretty && r->summary == NULL && r->elements == NULL) {
        /* The common answer (every entry succeeded, no resource in it) written directly. */
        hv_buf_t b;
        hv_buf_init(&b, 0);
        if (hv__bundle_response_text(r->bj, hv__rest_base(r), &b) == HV_OK) {
            for (size_t i = 0; i < r->bj->n; i++)
                hv__fhir_notify(r->f, &r->bj->e[i].op);
            hv_http_respond_buf(r->req, 200, "application/fhir+json; charset=utf-8", &b);
            goto out;
        }
        hv_buf_release(&b);
    }
    resp = hv__bundle_response(r->bj, hv__rest_base(r), &st);
    if (resp == NULL) {
        hv__rest_outcome(r, 500, "error", "exception", "out of memory");
        goto out;
    }
    if (st < 400)
        for (size_t i = 0; i < r->bj->n; i++)
            hv__fhir_notify(r->f, &r->bj->e[i].op);
    hv__rest_send_json(r, st, resp);
out:
    hv__rreq_free(r);
}

static void h_bundle(hv_http_req_t *req, void *ud)
{
    hv__fhir_t *f = ud;
    hv__rreq_t *r = hv__rreq_new(f, req);
    struct json_object *bundle, *entries = NULL;
    char msg[600];
    int st = 400;
    if (r == NULL)
        return;
    bundle = hv__rest_body(r);
    if (bundle == NULL)
        goto fail;
    if (json_object_object_get_ex(bundle, "entry", &entries) && json_object_is_type(entries, json_type_array) &&
        json_object_array_length(entries) > f->max_bundle_entries) {
        json_object_put(bundle);
        hv__rest_outcome(r, 413, "error", "too-costly", "the Bundle has more than %zu entries (fhir.max_bundle_entries)",
                         f->max_bundle_entries);
        goto fail;
    }
    if (hv__bundle_prepare(bundle, 0, hv_http_req_header(req, "Prefer"), &r->bj, &st, msg, sizeof(msg)) != HV_OK) {
        hv__rest_outcome(r, st, "error", st == 501 ? "not-supported" : "invalid", "%s", msg);
        goto fail;
    }
    hv__bundle_set_base(r->bj, hv__rest_base(r));
    /* Every entry runs under the caller's scopes: the store checks each resource it reads
     * or writes (fhir/rest_authz.c), so an entry outside them fails as its own request would. */
    for (size_t i = 0; i < r->bj->n; i++) {
        bentry_t *e = &r->bj->e[i];
        const char *pid = NULL;
        e->op.principal = r->principal;
        if (e->plan == NULL || e->prep_status > 0)
            continue;
        /* A search entry is a search: 403 for a type outside the scopes, and a patient/-only
         * token searches its patient's compartment (in the SQL, as GET /fhir/:type does). */
        if (hv_auth_allow_type(r->principal, HV_AUTH_SEARCH, e->op.type) != HV_OK) {
            if (r->bj->transaction) {
                hv__authz_type(r, HV_AUTH_SEARCH, e->op.type);
                goto fail;
            }
            e->prep_status = 403;
            snprintf(e->prep_msg, sizeof(e->prep_msg), "the access token's scopes do not allow search on %s",
                     e->op.type);
        } else if (hv_auth_patient_ids(r->principal, HV_AUTH_SEARCH, e->op.type, &pid) == 1 &&
                   hv__search_plan_compartment(e->plan, pid) != HV_OK) {
            hv__rest_outcome(r, 400, "error", "too-costly", "a search entry has too many values");
            goto fail;
        }
    }
    /* Validation on write, per entry, before anything runs (loop thread: the validator is this thread's). */
    if (f->validation == HV__VALIDATE_REJECT && f->validator != NULL) {
        for (size_t i = 0; i < r->bj->n; i++) {
            bentry_t *e = &r->bj->e[i];
            struct json_object *oo = NULL;
            int errors = 0;
            if (e->op.resource == NULL || e->prep_status > 0)
                continue;
            if (hv_fhir_validate(f->validator, e->op.resource, NULL, HV_FHIR_VALIDATE_OUTCOME_ON_ERROR, &oo,
                                 &errors) == HV_OK &&
                errors > 0) {
                if (r->bj->transaction) {
                    hv__rest_send_json(r, 422, oo);
                    goto fail;
                }
                e->prep_status = 422;
                snprintf(e->prep_msg, sizeof(e->prep_msg), "the resource is not valid (%d errors)", errors);
            }
            json_object_put(oo);
        }
    }
    /* Ids, references and search-index rows of a self-contained transaction are fixed
     * here, on the loop thread, so that the storage thread only writes (a Bundle that
     * needs the store is left as it is: run_transaction resolves it). */
    if (hv__rest_write_ahead() && hv__bundle_precompute(r->bj) != HV_OK) {
        hv__rest_outcome(r, 500, "error", "exception", "the transaction could not be prepared");
        goto fail;
    }
    /* A re-runnable transaction may leave its creates' index rows to the storage's flush. */
    hv__rreq_submit_ex(r, job_bundle, done_bundle, bundle_rerunnable(r) ? HV__SUBMIT_DEFER : 0);
    return;
fail:
    hv__rreq_free(r);
}

int hv__rest_bundle_routes(hv__fhir_t *f, hv_router_t *r)
{
    return hv_router_add(r, HV_HTTP_POST, "/fhir", h_bundle, f);
}
