/*
 * channel_store.c — the FHIR store in channels (issue 7): the `fhir-store`
 * destination, which writes a message into the store in-process, and the `fhir`
 * source, which turns changes of the store that match search criteria into
 * channel messages (what an R4 Subscription's `criteria` does, FHIR R4
 * subscription.html#2.46.6.1).
 *
 * fhir-store destination (keys: "conditional": "identifier", optional)
 *
 *   message content                      what is written (FHIR R4 http.html)
 *   a resource without id                create; the id is derived from the channel
 *                                        and the message id, so a redelivery finds
 *                                        the resource written and writes nothing
 *   a resource with id                   update (create-on-update) of that id
 *   "conditional": "identifier" and the  conditional update on its first identifier
 *    resource has an identifier          (PUT Type?identifier=system|value)
 *   a Bundle, type transaction or batch  the Bundle, as POST /fhir runs it; the
 *                                        plain creates of a transaction get derived
 *                                        ids (a redelivered transaction is found
 *                                        applied and not run twice)
 *                                        A Patient the transaction writes with
 *                                        link.type "replaced-by" (an HL7 v2 A40
 *                                        merge) has every resource that refers to
 *                                        it re-pointed to the survivor, in the same
 *                                        database transaction
 *   a Bundle, type collection            every resource stored as it is (the import
 *                                        path: ids kept, one transaction)
 *
 * JSON or XML, by the content's first character. The store's validation setting
 * (fhir.validation) applies as for REST writes. Outcome (recorded on the message
 * by the channel runtime, without content): 2xx delivered with "201 Type/id/_history/n";
 * 4xx (400 unreadable, 409/412 conflicts, 422 invalid) an error — dead-lettered at
 * once, reprocess once fixed; a store failure (5xx, a full storage queue) retries.
 * A delivery is acknowledged only after the commit that holds it, so a message
 * marked sent is in the store.
 *
 * fhir source (keys: "criteria": "Type" or "Type?search", required; "on": a
 * list of "create", "update", "delete", default create and update)
 *
 * After each committed change of a resource of Type, the criteria are evaluated
 * by the search planner on the new current version (criteria&_id=ID); a match
 * enters the channel with the version's JSON as content (application/fhir+json;
 * a deletion as {"resourceType":…, "id":…, "meta":{"versionId":…}} with content
 * type application/fhir+json;deleted=true). Changes are handed over in commit
 * order.
 *
 * Exactly once, across crashes (kill -9 anywhere): while a fhir source runs, every
 * write of the store also adds a row to the store's own outbox table (hv_outbox,
 * engine.h "Event bus") in the write's transaction — event type "fhir.change",
 * payload {"resourceType", "id", "version", "change": created|updated|deleted}.
 * After the commit the outbox is drained onto the engine's event bus (durable in
 * chan_events, then deleted from hv_outbox); each source subscribes to
 * "fhir.change" and acknowledges an event only once the channel store has
 * committed the message — keyed "fhir:Type/id/_history/version", so that an event
 * offered again (a drain or a bus delivery repeated after a crash) is found in the
 * channel store and not stored twice. Undelivered bus events are offered again at
 * the next start, and a source's start drains what a crash left in the outbox.
 * Changes committed while no fhir source runs are not recorded (nothing waits
 * for them).
 */
#include "config.h"

#include <json-c/json.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <pthread.h>

#include "fhir/rest_int.h"
#include "fhir/search_int.h"

#define SEED_MAX 300 /* "channel:message-id" */

/* ------------------------------------------------------------------------- */
/* fhir-store destination                                                    */
/* ------------------------------------------------------------------------- */

typedef struct dreq dreq_t;

typedef struct dest {
    hv__fhir_t *f;
    char *channel;
    int cond_identifier;
    dreq_t *inflight; /* deliveries whose storage job has not come back */
} dest_t;

enum { DK_FAIL = 0, DK_OP, DK_BUNDLE };

struct dreq {
    dest_t *d;              /* NULL once the destination closed: the job's result is dropped */
    hv_channel_sent_cb done;
    void *token;
    int kind;               /* DK_* */
    int fail_status;        /* DK_FAIL: the status to report */
    char fail_msg[200];
    int derived;            /* DK_OP: the id was derived from the message */
    int already;            /* the message was applied by an earlier delivery */
    char seed[SEED_MAX];
    hv__fop_t op;
    hv__bundle_job_t *bj;
    dreq_t *next, *prev;
};

static int d_check(struct json_object *conf, hv_error_t *err)
{
    json_object_object_foreach(conf, k, v)
    {
        if (strcmp(k, "conditional") == 0) {
            if (!json_object_is_type(v, json_type_string) || strcmp(json_object_get_string(v), "identifier") != 0) {
                hv_error_set(err, HV_ECONFIG, k, "\"conditional\" takes \"identifier\" (the only criteria supported)");
                return HV_ECONFIG;
            }
            continue;
        }
        hv_error_set(err, HV_ECONFIG, k, "unknown key \"%s\" in a fhir-store destination (known: conditional)", k);
        return HV_ECONFIG;
    }
    return HV_OK;
}

static int d_open(hv_engine_t *e, const char *channel, struct json_object *conf, void **state, hv_error_t *err)
{
    hv__fhir_t *f = hv_engine_module_state(e, "fhir");
    dest_t *d;
    const char *c = hv_json_get_str(conf, "conditional");
    if (f == NULL || f->storage == NULL) {
        hv_error_set(err, HV_ECONFIG, NULL,
                     "the fhir-store destination needs the fhir service in this process (--services)");
        return HV_ECONFIG;
    }
    d = hv_calloc(1, sizeof(*d));
    if (d == NULL)
        return HV_ENOMEM;
    d->f = f;
    d->channel = hv_strdup(channel != NULL ? channel : "");
    d->cond_identifier = c != NULL && strcmp(c, "identifier") == 0;
    if (d->channel == NULL) {
        hv_free(d);
        return HV_ENOMEM;
    }
    *state = d;
    return HV_OK;
}

static void dreq_free(dreq_t *q)
{
    if (q == NULL)
        return;
    hv__fop_clear(&q->op);
    hv__bundle_job_free(q->bj);
    hv_free(q);
}

static void unlink_req(dreq_t *q)
{
    if (q->d == NULL)
        return;
    if (q->prev != NULL)
        q->prev->next = q->next;
    else
        q->d->inflight = q->next;
    if (q->next != NULL)
        q->next->prev = q->prev;
    q->next = q->prev = NULL;
}

static void d_close(void *state)
{
    dest_t *d = state;
    if (d == NULL)
        return;
    /* Deliveries in flight are reported now; their storage jobs still run (and
     * commit) and are then dropped: a redelivery finds them applied. */
    while (d->inflight != NULL) {
        dreq_t *q = d->inflight;
        unlink_req(q);
        q->d = NULL;
        q->done(q->token, HV_CHANNEL_RETRY, "closed");
    }
    hv_free(d->channel);
    hv_free(d);
}

/* Percent-encodes s for a query value (RFC 3986 unreserved characters pass). */
static int put_encoded(hv_buf_t *b, const char *s)
{
    static const char hex[] = "0123456789ABCDEF";
    int rc = HV_OK;
    for (; *s != '\0' && rc == HV_OK; s++) {
        unsigned char c = (unsigned char)*s;
        if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '.' ||
            c == '_' || c == '~' || c == ':' || c == '/') {
            rc = hv_buf_append(b, s, 1);
        } else {
            char e[3] = {'%', hex[c >> 4], hex[c & 15]};
            rc = hv_buf_append(b, e, 3);
        }
    }
    return rc;
}

/* The conditional criteria of a resource's first identifier, or NULL when it has none usable. */
static char *identifier_criteria(struct json_object *res)
{
    struct json_object *ids = NULL, *first;
    const char *system, *value;
    hv_buf_t b;
    char *out = NULL;
    if (!json_object_object_get_ex(res, "identifier", &ids) || !json_object_is_type(ids, json_type_array) ||
        json_object_array_length(ids) == 0)
        return NULL;
    first = json_object_array_get_idx(ids, 0);
    system = hv_json_get_str(first, "system");
    value = hv_json_get_str(first, "value");
    if (value == NULL || value[0] == '\0')
        return NULL;
    hv_buf_init(&b, 4096);
    /* FHIR R4 search.html#token: identifier=[system]|[value]; no system matches any. */
    if (hv_buf_puts(&b, "identifier=") == HV_OK && (system == NULL || (put_encoded(&b, system) == HV_OK &&
                                                                       hv_buf_puts(&b, "|") == HV_OK)) &&
        put_encoded(&b, value) == HV_OK)
        out = hv_strndup(b.data, b.len);
    hv_buf_release(&b);
    return out;
}

static void fail_req(dreq_t *q, int status, const char *fmt, ...) HV_PRINTF(3, 4);
static void fail_req(dreq_t *q, int status, const char *fmt, ...)
{
    char tmp[800];
    size_t n;
    va_list ap;
    q->kind = DK_FAIL;
    q->fail_status = status;
    va_start(ap, fmt);
    vsnprintf(tmp, sizeof(tmp), fmt, ap);
    va_end(ap);
    n = strnlen(tmp, sizeof(q->fail_msg) - 1);
    memcpy(q->fail_msg, tmp, n);
    q->fail_msg[n] = '\0';
}

/* Runs the configured validation; 1 when the resource is refused (the request then failed). */
static int refused(dest_t *d, dreq_t *q, struct json_object *res, const char *where)
{
    struct json_object *oo = NULL, *issues = NULL;
    int errors = 0;
    char msg[160];
    const char *loc = "";
    if (d->f->validation != HV__VALIDATE_REJECT || d->f->validator == NULL || res == NULL)
        return 0;
    if (hv_fhir_validate(d->f->validator, res, NULL, 0, &oo, &errors) != HV_OK || errors == 0) {
        json_object_put(oo);
        return 0;
    }
    /* The first issue's location (an element path, no content). */
    if (json_object_object_get_ex(oo, "issue", &issues) && json_object_array_length(issues) > 0) {
        struct json_object *ex = NULL, *i0 = json_object_array_get_idx(issues, 0);
        if (json_object_object_get_ex(i0, "expression", &ex) && json_object_array_length(ex) > 0)
            loc = json_object_get_string(json_object_array_get_idx(ex, 0));
    }
    snprintf(msg, sizeof(msg), "%d validation error%s%s, first at %.80s", errors, errors == 1 ? "" : "s", where,
             loc[0] ? loc : "?");
    fail_req(q, 422, "%s", msg);
    json_object_put(oo);
    return 1;
}

/* Reads the content and prepares the write (loop thread). Failures leave q->kind DK_FAIL. */
static int prepare(dest_t *d, dreq_t *q, const hv_channel_msg_t *m)
{
    struct json_object *res = NULL;
    hv_error_t err;
    const char *rt, *type;
    size_t i = 0;
    int rc;
    hv_error_clear(&err);
    snprintf(q->seed, sizeof(q->seed), "%s:%lld", d->channel, (long long)m->id);
    while (i < m->len && (m->content[i] == ' ' || m->content[i] == '\n' || m->content[i] == '\r' ||
                          m->content[i] == '\t'))
        i++;
    rc = i < m->len && m->content[i] == '<' ? hv_fhir_xml_parse(m->content, m->len, &d->f->parse, &res, &err)
                                            : hv_fhir_json_parse(m->content, m->len, &d->f->parse, &res, &err);
    if (rc == HV_ENOMEM)
        return rc;
    if (rc != HV_OK) {
        /* err.message names the problem and its place, never the content. */
        fail_req(q, 400, "not a FHIR resource: %.150s", err.message);
        return HV_OK;
    }
    rt = hv_json_get_str(res, "resourceType");
    type = rt != NULL && strcmp(rt, "Bundle") == 0 ? hv_json_get_str(res, "type") : NULL;
    if (type != NULL && (strcmp(type, "transaction") == 0 || strcmp(type, "batch") == 0 ||
                         strcmp(type, "collection") == 0)) {
        char msg[600];
        int status = 400;
        struct json_object *entries = NULL;
        if (json_object_object_get_ex(res, "entry", &entries) && json_object_is_type(entries, json_type_array) &&
            json_object_array_length(entries) > d->f->max_bundle_entries) {
            json_object_put(res);
            fail_req(q, 413, "%s", "the Bundle has more entries than fhir.max_bundle_entries");
            return HV_OK;
        }
        rc = hv__bundle_prepare(res, strcmp(type, "collection") == 0, NULL, &q->bj, &status, msg, sizeof(msg));
        if (rc == HV_ENOMEM)
            return rc;
        if (rc != HV_OK) {
            fail_req(q, status, "%s", msg);
            return HV_OK;
        }
        for (size_t k = 0; k < hv__bundle_op_count(q->bj); k++) {
            char where[48];
            snprintf(where, sizeof(where), " in Bundle.entry[%zu]", k);
            if (refused(d, q, hv__bundle_op_at(q->bj, k)->resource, where))
                return HV_OK;
        }
        hv__bundle_seed_ids(q->bj, q->seed);
        /* A merge (HL7 v2 A40: Patient.link replaced-by) moves the references too. */
        hv__bundle_set_move_merged(q->bj, 1);
        q->kind = DK_BUNDLE;
        return HV_OK;
    }
    if (rt == NULL || hv_fhir_resource_type(rt) == NULL || strcmp(rt, "Bundle") == 0) {
        json_object_put(res);
        fail_req(q, 400, "%s", "the content is not a resource the store takes (a Bundle must be a transaction, "
                               "batch or collection)");
        return HV_OK;
    }
    hv__fop_init(&q->op, HV__FOP_CREATE);
    snprintf(q->op.type, sizeof(q->op.type), "%s", rt);
    q->op.resource = res;
    if (refused(d, q, res, ""))
        return HV_OK;
    if (d->cond_identifier && (q->op.cond = identifier_criteria(res)) != NULL) {
        q->op.kind = HV__FOP_UPDATE; /* http.html#cond-update */
    } else if (hv_json_get_str(res, "id") != NULL) {
        const char *id = hv_json_get_str(res, "id");
        if (!hv__fhir_id_valid(id)) {
            fail_req(q, 400, "%s", "the resource's id is not a valid FHIR id");
            return HV_OK;
        }
        q->op.kind = HV__FOP_UPDATE;
        snprintf(q->op.id, sizeof(q->op.id), "%s", id);
    } else {
        hv__fhir_derived_id(q->seed, 0, q->op.id);
        q->derived = 1;
    }
    q->kind = DK_OP;
    return HV_OK;
}

/* Storage thread. A failed write returns an error so that its savepoint rolls back. */
static int job_write(hv_db_t *db, void *arg)
{
    dreq_t *q = arg;
    int rc = HV_OK;
    if (q->kind == DK_OP) {
        if (q->derived) {
            hv__store_row_t row;
            rc = hv__store_get(db, q->op.type, q->op.id, 0, &row);
            if (rc == HV_OK) {
                q->already = 1;
                q->op.status = 200;
                q->op.out_version = row.version;
                hv__store_row_clear(&row);
                return HV_OK;
            }
            if (rc != HV_ENOTFOUND)
                return rc;
        }
        rc = hv__fop_run(db, &q->op);
        if (rc == HV_OK && q->op.status >= 400)
            rc = HV_EINVAL;
    } else if (q->kind == DK_BUNDLE) {
        rc = hv__bundle_applied(db, q->bj, q->seed, &q->already);
        if (rc == HV_OK && !q->already)
            rc = hv__bundle_run(db, q->bj);
    }
    return rc;
}

/* Loop thread, after the commit (or the rollback). */
static void done_write(int status, void *arg)
{
    dreq_t *q = arg;
    dest_t *d = q->d;
    char detail[256];
    int result = HV_CHANNEL_DELIVERED, st = 0;
    if (d == NULL) {
        dreq_free(q); /* the destination closed and reported it */
        return;
    }
    unlink_req(q);
    if (q->kind == DK_FAIL) {
        st = q->fail_status;
        snprintf(detail, sizeof(detail), "%d %s", st, q->fail_msg);
    } else if (q->kind == DK_OP && q->op.status >= 400) {
        st = q->op.status;
        snprintf(detail, sizeof(detail), "%d %s: %s/%s", st, q->op.issue_code ? q->op.issue_code : "error",
                 q->op.type, q->op.id[0] ? q->op.id : "?");
    } else if (q->kind == DK_BUNDLE && hv__bundle_is_transaction(q->bj) &&
               hv__bundle_failed_count(q->bj, &st) > 0) {
        snprintf(detail, sizeof(detail), "%d the transaction failed and was rolled back", st);
    } else if (status != HV_OK) {
        st = 503;
        snprintf(detail, sizeof(detail), "the store failed: %s", hv_strerror(status));
    } else if (q->already) {
        snprintf(detail, sizeof(detail), "200 already stored by an earlier delivery");
    } else if (q->kind == DK_OP) {
        snprintf(detail, sizeof(detail), "%d %s/%s/_history/%lld", q->op.status, q->op.type, q->op.id,
                 (long long)q->op.out_version);
        hv__fhir_notify(d->f, &q->op);
    } else {
        size_t n = hv__bundle_op_count(q->bj), failed = hv__bundle_failed_count(q->bj, &st);
        size_t moved = hv__bundle_moved(q->bj);
        if (moved > 0)
            snprintf(detail, sizeof(detail), "200 %s: %zu entries, %zu failed, %zu re-pointed to a merged Patient",
                     hv__bundle_is_transaction(q->bj) ? "transaction" : "batch", n, failed, moved);
        else
            snprintf(detail, sizeof(detail), "200 %s: %zu entries, %zu failed",
                     hv__bundle_is_transaction(q->bj) ? "transaction" : "batch", n, failed);
        for (size_t i = 0; i < n; i++)
            hv__fhir_notify(d->f, hv__bundle_op_at(q->bj, i));
        st = 0;
    }
    /* Client errors are permanent (the same content fails again); the rest retries. */
    if (st >= 400)
        result = st < 500 ? HV_CHANNEL_ERROR : HV_CHANNEL_RETRY;
    q->done(q->token, result, detail);
    dreq_free(q);
}

static int d_send(void *state, const hv_channel_msg_t *m, hv_channel_sent_cb done, void *token)
{
    dest_t *d = state;
    dreq_t *q = hv_calloc(1, sizeof(*q));
    int rc;
    if (q == NULL)
        return HV_ENOMEM;
    q->done = done;
    q->token = token;
    rc = prepare(d, q, m);
    /* Even a refusal goes through the storage thread: done must not run inside send. */
    if (rc == HV_OK)
        rc = hv_storage_submit(d->f->storage, job_write, done_write, q);
    if (rc != HV_OK) {
        dreq_free(q);
        return rc;
    }
    q->d = d;
    q->next = d->inflight;
    if (d->inflight != NULL)
        d->inflight->prev = q;
    d->inflight = q;
    return HV_OK;
}

static const hv_channel_dest_t fhir_store_dest = {"fhir-store", d_check, d_open, d_send, d_close};

/* ------------------------------------------------------------------------- */
/* fhir source                                                               */
/* ------------------------------------------------------------------------- */

enum { ON_CREATE = 1, ON_UPDATE = 2, ON_DELETE = 4 };

typedef struct src src_t;
struct src {
    hv__fhir_t *f;
    hv_engine_t *engine;
    hv_channel_t *ch;
    hv_event_sub_t *sub; /* "fhir.change" on the bus */
    char channel[72];    /* the channel's id: the name in an event's "sources" */
    char type[HV__FHIR_TYPE_MAX];
    char *query;      /* the criteria after '?', or NULL */
    unsigned on;      /* ON_* */
    int stopped;
    int refs;         /* the registry's and each change in flight */
    src_t *next;
};

/* The sources running in this process; the fhir-channels module's state. */
struct hv__fhir_sources {
    hv_engine_t *engine;
    hv_storage_t *storage; /* the FHIR store's */
    int patient_events;    /* Patient writes add outbox rows (hv__fhir_channel_store_start) */
    src_t *head;
};

typedef struct change {
    src_t *s;
    hv_event_ack_cb ack; /* the bus event this change came in */
    void *token;
    char id[HV__FHIR_ID_MAX];
    int64_t version;
    int deleted;
    int match;
    char *text;
    size_t len;
} change_t;

static void src_unref(src_t *s)
{
    if (--s->refs > 0)
        return;
    hv_free(s->query);
    hv_free(s);
}

/* Splits "Type?query" and checks both; HV_ECONFIG with err set when invalid. */
static int parse_criteria(const char *criteria, char type[HV__FHIR_TYPE_MAX], char **query, hv_error_t *err)
{
    const char *q = strchr(criteria, '?');
    size_t tl = q != NULL ? (size_t)(q - criteria) : strlen(criteria);
    hv__search_plan_t *p = NULL;
    int rc = HV_OK;
    if (tl == 0 || tl >= HV__FHIR_TYPE_MAX) {
        hv_error_set(err, HV_ECONFIG, "criteria", "criteria must be Type or Type?search-parameters");
        return HV_ECONFIG;
    }
    memcpy(type, criteria, tl);
    type[tl] = '\0';
    if (hv_fhir_resource_type(type) == NULL) {
        hv_error_set(err, HV_ECONFIG, "criteria", "criteria: \"%s\" is not a FHIR R4 resource type", type);
        return HV_ECONFIG;
    }
    if (q == NULL || q[1] == '\0') {
        if (query != NULL)
            *query = NULL;
        return HV_OK;
    }
    p = hv_calloc(1, sizeof(*p));
    if (p == NULL)
        return HV_ENOMEM;
    hv__search_plan_init(p);
    /* The planner checks every parameter name and value now, not at the first change. */
    if (hv__search_plan_build(p, type, q + 1, 1, 1, 1) != HV_OK) {
        hv_error_set(err, HV_ECONFIG, "criteria", "criteria: %s", p->msg[0] ? p->msg : "invalid search");
        rc = HV_ECONFIG;
    }
    hv__search_plan_clear(p);
    hv_free(p);
    if (rc == HV_OK && query != NULL) {
        *query = hv_strdup(q + 1);
        if (*query == NULL)
            rc = HV_ENOMEM;
    }
    return rc;
}

static int parse_on(struct json_object *on, unsigned *out, hv_error_t *err)
{
    unsigned m = 0;
    if (on == NULL) {
        *out = ON_CREATE | ON_UPDATE;
        return HV_OK;
    }
    if (!json_object_is_type(on, json_type_array) || json_object_array_length(on) == 0) {
        hv_error_set(err, HV_ECONFIG, "on", "\"on\" is a non-empty list of \"create\", \"update\", \"delete\"");
        return HV_ECONFIG;
    }
    for (size_t i = 0; i < json_object_array_length(on); i++) {
        const char *v = json_object_get_string(json_object_array_get_idx(on, i));
        if (!json_object_is_type(json_object_array_get_idx(on, i), json_type_string))
            v = "";
        if (strcmp(v, "create") == 0)
            m |= ON_CREATE;
        else if (strcmp(v, "update") == 0)
            m |= ON_UPDATE;
        else if (strcmp(v, "delete") == 0)
            m |= ON_DELETE;
        else {
            hv_error_set(err, HV_ECONFIG, "on", "\"on\" takes \"create\", \"update\" and \"delete\"");
            return HV_ECONFIG;
        }
    }
    *out = m;
    return HV_OK;
}

static int s_check(struct json_object *conf, hv_error_t *err)
{
    char type[HV__FHIR_TYPE_MAX];
    unsigned on = 0;
    struct json_object *v = NULL;
    int rc;
    json_object_object_foreach(conf, k, val)
    {
        (void)val;
        if (strcmp(k, "criteria") != 0 && strcmp(k, "on") != 0) {
            hv_error_set(err, HV_ECONFIG, k, "unknown key \"%s\" in a fhir source (known: criteria, on)", k);
            return HV_ECONFIG;
        }
    }
    if (!json_object_object_get_ex(conf, "criteria", &v) || !json_object_is_type(v, json_type_string)) {
        hv_error_set(err, HV_ECONFIG, "criteria", "a fhir source needs \"criteria\": \"Type?search\"");
        return HV_ECONFIG;
    }
    rc = parse_criteria(json_object_get_string(v), type, NULL, err);
    if (rc == HV_OK) {
        v = NULL;
        json_object_object_get_ex(conf, "on", &v);
        rc = parse_on(v, &on, err);
    }
    return rc;
}

/*
 * The criteria of the fhir sources running in this process, for the storage
 * thread: a write is matched against them in its own transaction (so that a
 * version is judged as it was written, not as the resource is when the source
 * gets to it), and only a write some source matches adds an outbox row.
 */
#define MAX_SOURCES 64
typedef struct crit {
    const src_t *s;    /* identity only: never dereferenced on the storage thread */
    char channel[72];
    char type[HV__FHIR_TYPE_MAX];
    char *query;       /* a copy, or NULL */
    unsigned on;
} crit_t;

static pthread_mutex_t crit_lock = PTHREAD_MUTEX_INITIALIZER;
static crit_t crits[MAX_SOURCES];
static size_t ncrits;
static int patient_events; /* the bus runs in this process (hv__fhir_channel_store_start) */

static int crit_add(const src_t *s, const char *channel)
{
    int rc = HV_OK;
    pthread_mutex_lock(&crit_lock);
    if (ncrits >= MAX_SOURCES) {
        rc = HV_ETOOBIG;
    } else {
        crit_t *c = &crits[ncrits];
        memset(c, 0, sizeof(*c));
        c->s = s;
        snprintf(c->channel, sizeof(c->channel), "%s", channel);
        snprintf(c->type, sizeof(c->type), "%s", s->type);
        c->on = s->on;
        if (s->query != NULL && (c->query = hv_strdup(s->query)) == NULL)
            rc = HV_ENOMEM;
        else
            ncrits++;
    }
    pthread_mutex_unlock(&crit_lock);
    return rc;
}

static void crit_remove(const src_t *s)
{
    pthread_mutex_lock(&crit_lock);
    for (size_t i = 0; i < ncrits; i++)
        if (crits[i].s == s) {
            hv_free(crits[i].query);
            crits[i] = crits[--ncrits];
            break;
        }
    pthread_mutex_unlock(&crit_lock);
}

/* Storage thread: does the version op wrote match the criteria c? */
static int crit_match(hv_db_t *db, const crit_t *c, const hv__fop_t *op, int *match)
{
    hv__fop_t q;
    char ids[1][HV__FHIR_ID_MAX];
    size_t n = 0;
    int rc;
    *match = 0;
    if (c->query == NULL || op->change == HV__CHANGE_DELETED) {
        *match = 1;
        return HV_OK;
    }
    /* The search reads the version's index rows: those a create deferred are written first. */
    if ((rc = hv_storage_flush_deferred(db)) != HV_OK)
        return rc;
    hv__fop_init(&q, HV__FOP_READ);
    snprintf(q.type, sizeof(q.type), "%s", c->type);
    q.cond = hv_malloc(strlen(c->query) + strlen(op->id) + 6);
    if (q.cond == NULL)
        return HV_ENOMEM;
    sprintf(q.cond, "%s&_id=%s", c->query, op->id);
    rc = hv__search_resolve(db, &q, ids, 1, &n);
    hv__fop_clear(&q);
    if (rc == HV_EINVAL)
        return HV_OK; /* criteria the planner refuses match nothing */
    *match = rc == HV_OK && n > 0;
    return rc;
}

/* The patient.created / patient.updated row of a Patient write: ids only, no PHI. */
static int outbox_patient(hv_db_t *db, const hv__fop_t *op, const char *ev)
{
    char payload[256];
    int n = snprintf(payload, sizeof(payload), "{\"resourceType\":\"Patient\",\"id\":\"%s\",\"version\":%lld}",
                     op->id, (long long)op->out_version);
    if (n < 0 || (size_t)n >= sizeof(payload))
        return HV_EINVAL; /* not reached: ids are at most 64 characters */
    return hv_event_outbox_add(db, ev, payload, (size_t)n);
}

static void set_patient_events(int on)
{
    pthread_mutex_lock(&crit_lock);
    patient_events = on;
    pthread_mutex_unlock(&crit_lock);
}

int hv__fhir_outbox_change(hv_db_t *db, const hv__fop_t *op)
{
    unsigned bit = op->change == HV__CHANGE_CREATED   ? ON_CREATE
                   : op->change == HV__CHANGE_UPDATED ? ON_UPDATE
                                                      : ON_DELETE;
    const char *ev = NULL;
    hv_buf_t b;
    size_t nmatch = 0;
    int rc = HV_OK;
    pthread_mutex_lock(&crit_lock);
    if (patient_events && bit != ON_DELETE && strcmp(op->type, "Patient") == 0)
        ev = bit == ON_CREATE ? HV_EVENT_PATIENT_CREATED : HV_EVENT_PATIENT_UPDATED;
    if (ncrits == 0) {
        pthread_mutex_unlock(&crit_lock);
        return ev != NULL ? outbox_patient(db, op, ev) : HV_OK;
    }
    hv_buf_init(&b, 64 * 1024);
    rc = hv_buf_printf(&b, "{\"resourceType\":\"%s\",\"id\":\"%s\",\"version\":%lld,\"change\":\"%s\",\"sources\":[",
                       op->type, op->id, (long long)op->out_version,
                       bit == ON_CREATE ? "created" : bit == ON_UPDATE ? "updated" : "deleted");
    for (size_t i = 0; i < ncrits && rc == HV_OK; i++) {
        int match = 0;
        if (!(crits[i].on & bit) || strcmp(crits[i].type, op->type) != 0)
            continue;
        rc = crit_match(db, &crits[i], op, &match);
        if (rc == HV_OK && match) {
            if (nmatch++ > 0)
                rc = hv_buf_putc(&b, ',');
            if (rc == HV_OK)
                rc = hv_buf_json_str(&b, crits[i].channel, strlen(crits[i].channel));
        }
    }
    pthread_mutex_unlock(&crit_lock);
    if (rc == HV_OK)
        rc = hv_buf_puts(&b, "]}");
    if (rc == HV_OK && nmatch > 0)
        rc = hv_event_outbox_add(db, "fhir.change", b.data, b.len);
    hv_buf_release(&b);
    if (rc == HV_OK && ev != NULL)
        rc = outbox_patient(db, op, ev);
    return rc;
}

static void on_bus_change(void *ud, const hv_event_t *ev, hv_event_ack_cb ack, void *token);

static int s_start(hv_channel_t *ch, struct json_object *conf, void **state, hv_error_t *err)
{
    hv_engine_t *e = hv_channel_engine(ch);
    hv__fhir_t *f = hv_engine_module_state(e, "fhir");
    hv__fhir_sources_t *reg = hv_engine_module_state(e, "fhir-channels");
    struct json_object *on = NULL;
    src_t *s;
    int rc;
    if (f == NULL || f->storage == NULL || reg == NULL) {
        hv_error_set(err, HV_ECONFIG, NULL, "the fhir source needs the fhir service in this process (--services)");
        return HV_ECONFIG;
    }
    s = hv_calloc(1, sizeof(*s));
    if (s == NULL)
        return HV_ENOMEM;
    s->f = f;
    s->ch = ch;
    s->refs = 1;
    json_object_object_get_ex(conf, "on", &on);
    rc = parse_criteria(hv_json_get_str(conf, "criteria"), s->type, &s->query, err);
    if (rc == HV_OK)
        rc = parse_on(on, &s->on, err);
    if (rc != HV_OK) {
        src_unref(s);
        return rc;
    }
    s->engine = e;
    {
        /* A durable cursor per channel: with several processes on one PostgreSQL store,
         * each change enters the channel once in the cluster. */
        char name[128];
        snprintf(name, sizeof(name), "fhir-source:%s", hv_channel_id(ch));
        rc = hv_event_subscribe_durable(e, name, "fhir.change", on_bus_change, s, &s->sub);
    }
    if (rc != HV_OK) {
        hv_error_set(err, rc, NULL, "the fhir source needs the event bus (the channels service)");
        src_unref(s);
        return rc;
    }
    rc = crit_add(s, hv_channel_id(ch));
    if (rc != HV_OK) {
        hv_event_unsubscribe(e, s->sub);
        hv_error_set(err, rc, NULL, "at most %d fhir sources run in one process", MAX_SOURCES);
        src_unref(s);
        return rc;
    }
    snprintf(s->channel, sizeof(s->channel), "%s", hv_channel_id(ch));
    s->next = reg->head;
    reg->head = s;
    /* What a crash left in the outbox; published once every channel has started
     * (the drain's read is a storage job, so it completes on a later turn of the loop). */
    (void)hv_event_outbox_drain(e, f->storage);
    *state = s;
    return HV_OK;
}

static void s_stop(void *state)
{
    src_t *s = state;
    hv__fhir_sources_t *reg;
    if (s == NULL)
        return;
    reg = hv_engine_module_state(hv_channel_engine(s->ch), "fhir-channels");
    if (reg != NULL)
        for (src_t **pp = &reg->head; *pp != NULL; pp = &(*pp)->next)
            if (*pp == s) {
                *pp = s->next;
                break;
            }
    hv_event_unsubscribe(s->engine, s->sub);
    crit_remove(s);
    s->stopped = 1;
    s->ch = NULL;
    src_unref(s);
}

/* Storage thread: reads the version the event names (it matched when written). */
static int job_match(hv_db_t *db, void *arg)
{
    change_t *c = arg;
    hv__store_row_t row;
    int rc;
    if (c->deleted) {
        c->match = 1;
        return HV_OK;
    }
    rc = hv__store_get(db, c->s->type, c->id, c->version, &row);
    if (rc == HV_ENOTFOUND)
        return HV_OK;
    if (rc != HV_OK)
        return rc;
    if (!row.deleted && row.text != NULL) {
        c->text = row.text;
        c->len = row.text_len;
        row.text = NULL;
        c->match = 1;
    }
    hv__store_row_clear(&row);
    return HV_OK;
}

static void change_free(change_t *c)
{
    src_t *s = c->s;
    hv_free(c->text);
    hv_free(c);
    src_unref(s);
}

/* The channel store committed the message (or found it stored: a repeated event). */
static void stored(int status, int64_t id, void *ud)
{
    change_t *c = ud;
    /* Stored but not (yet) delivered — response after-destinations — is stored. */
    if (id > 0 && (status == HV_ETIMEDOUT || status == HV_EPROTO || status == HV_EINVAL))
        status = HV_OK;
    if (status != HV_OK) {
        hv_logrec_t *r = hv_log_begin(HV_LOG_WARN, "fhir.source.not_stored");
        hv_log_str(r, "error", hv_strerror(status));
        hv_log_end(r);
    }
    c->ack(c->token, status); /* an error leaves the event for the next start */
    change_free(c);
}

static void done_match(int status, void *arg)
{
    change_t *c = arg;
    src_t *s = c->s;
    char key[HV__FHIR_TYPE_MAX + HV__FHIR_ID_MAX + 48];
    int rc = status;
    if (status == HV_OK && c->match && !s->stopped) {
        snprintf(key, sizeof(key), "fhir:%s/%s/_history/%lld", s->type, c->id, (long long)c->version);
        if (c->deleted) {
            char body[HV__FHIR_TYPE_MAX + HV__FHIR_ID_MAX + 96];
            int n = snprintf(body, sizeof(body),
                             "{\"resourceType\":\"%s\",\"id\":\"%s\",\"meta\":{\"versionId\":\"%lld\"}}", s->type,
                             c->id, (long long)c->version);
            rc = n > 0 && (size_t)n < sizeof(body)
                     ? hv_channel_receive_keyed(s->ch, body, (size_t)n, "application/fhir+json;deleted=true",
                                                key, 0, stored, c)
                     : HV_ETOOBIG;
        } else {
            rc = hv_channel_receive_keyed(s->ch, c->text, c->len, "application/fhir+json", key, 0, stored, c);
        }
        if (rc == HV_OK)
            return; /* stored() acknowledges */
    } else if (status == HV_OK && s->stopped) {
        rc = HV_ECLOSED; /* offered again at the next start */
    }
    if (rc != HV_OK) {
        hv_logrec_t *r = hv_log_begin(HV_LOG_WARN, "fhir.source.failed");
        hv_log_str(r, "type", s->type);
        hv_log_str(r, "error", hv_strerror(rc));
        hv_log_end(r);
    }
    c->ack(c->token, rc);
    change_free(c);
}

/* Whether the event's "sources" (the channels whose criteria the version matched) has channel. */
static int names_source(struct json_object *o, const char *channel)
{
    struct json_object *a = NULL;
    if (!json_object_object_get_ex(o, "sources", &a) || !json_object_is_type(a, json_type_array))
        return 0;
    for (size_t i = 0; i < json_object_array_length(a); i++) {
        const char *n = json_object_get_string(json_object_array_get_idx(a, i));
        if (n != NULL && strcmp(n, channel) == 0)
            return 1;
    }
    return 0;
}

/* A "fhir.change" event of the bus (loop thread): for this source when it names its channel. */
static void on_bus_change(void *ud, const hv_event_t *ev, hv_event_ack_cb ack, void *token)
{
    src_t *s = ud;
    struct json_object *o = NULL, *v = NULL;
    hv_error_t err;
    const char *type, *id, *kind;
    unsigned bit;
    change_t *c;
    if (hv_json_parse(ev->payload, ev->len, "event", &o, &err) != HV_OK) {
        ack(token, HV_OK); /* not ours to fix: never offered again */
        return;
    }
    type = hv_json_get_str(o, "resourceType");
    id = hv_json_get_str(o, "id");
    kind = hv_json_get_str(o, "change");
    bit = kind == NULL                     ? 0
          : strcmp(kind, "created") == 0 ? ON_CREATE
          : strcmp(kind, "updated") == 0 ? ON_UPDATE
          : strcmp(kind, "deleted") == 0 ? ON_DELETE
                                         : 0;
    if (type == NULL || id == NULL || !(s->on & bit) || strcmp(s->type, type) != 0 || s->stopped ||
        strlen(id) >= HV__FHIR_ID_MAX || !json_object_object_get_ex(o, "version", &v) ||
        !names_source(o, s->channel)) {
        json_object_put(o);
        ack(token, HV_OK);
        return;
    }
    c = hv_calloc(1, sizeof(*c));
    if (c == NULL) {
        json_object_put(o);
        ack(token, HV_ENOMEM);
        return;
    }
    c->s = s;
    c->ack = ack;
    c->token = token;
    snprintf(c->id, sizeof(c->id), "%s", id);
    c->version = json_object_get_int64(v);
    c->deleted = bit == ON_DELETE;
    json_object_put(o);
    s->refs++;
    if (hv_storage_submit(s->f->storage, job_match, done_match, c) != HV_OK) {
        hv_logrec_t *r = hv_log_begin(HV_LOG_WARN, "fhir.source.busy");
        hv_log_str(r, "type", s->type);
        hv_log_end(r);
        ack(token, HV_EBUSY);
        change_free(c);
    }
}

/* A committed change of the store (loop thread): its outbox rows go to the bus. */
static void on_change(void *ud, const char *type, const char *id, int64_t version, hv_fhir_change_t change)
{
    hv__fhir_sources_t *reg = ud;
    (void)id;
    (void)version;
    if (reg->head != NULL || (reg->patient_events && change != HV_FHIR_CHANGE_DELETED &&
                              strcmp(type, "Patient") == 0))
        (void)hv_event_outbox_drain(reg->engine, reg->storage);
}

static const hv_channel_source_t fhir_source = {"fhir", s_check, s_start, s_stop};

/* ------------------------------------------------------------------------- */

int hv__fhir_channel_store_init(hv_engine_t *e, hv__fhir_sources_t **out)
{
    hv__fhir_sources_t *reg = NULL;
    int rc = hv_channel_register_dest(e, &fhir_store_dest);
    if (rc == HV_OK)
        rc = hv_channel_register_source(e, &fhir_source);
    *out = NULL;
    /* The change hook exists under serve only (the fhir module's init has run);
     * commands such as `channel test` only need the vtables. */
    if (rc != HV_OK || hv_engine_module_state(e, "fhir") == NULL)
        return rc;
    reg = hv_calloc(1, sizeof(*reg));
    if (reg == NULL)
        return HV_ENOMEM;
    reg->engine = e;
    rc = hv_fhir_store_on_change(e, on_change, reg);
    if (rc != HV_OK) {
        hv_free(reg);
        return rc;
    }
    *out = reg;
    return HV_OK;
}

/*
 * patient.created / patient.updated are written with the write (fhir/store_ops.c), in
 * its transaction, only when the bus runs in this process: its start drains what the
 * outbox holds (a crash between a commit and its drain), and each committed Patient
 * write drains again. Without the bus (--services without channels) no row is written
 * — nothing would ever drain it — and the store emits no patient events, as before.
 */
int hv__fhir_channel_store_start(hv_engine_t *e, hv__fhir_sources_t *reg)
{
    hv__fhir_t *f = hv_engine_module_state(e, "fhir");
    if (reg == NULL || f == NULL || f->storage == NULL)
        return HV_OK;
    reg->storage = f->storage;
    /* The drain's read is a storage job: it publishes once every module has started. Any
     * other failure leaves the rows to the next write's drain. */
    if (hv_event_outbox_drain(e, reg->storage) == HV_ENOTSUP)
        return HV_OK; /* no bus here */
    reg->patient_events = 1;
    set_patient_events(1);
    return HV_OK;
}

void hv__fhir_channel_store_free(hv_engine_t *e, hv__fhir_sources_t *reg)
{
    hv__fhir_t *f;
    if (reg == NULL)
        return;
    set_patient_events(0);
    f = hv_engine_module_state(e, "fhir");
    if (f != NULL)
        hv__fhir_off_change(f, on_change, reg);
    hv_free(reg);
}
