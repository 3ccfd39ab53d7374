/*
 * consent.c — patient consent (FHIR R4 Consent, consent.html) enforced when data
 * leaves the FHIR store through reads and searches.
 *
 * The registry: the active Consent resources, in memory. Their source is the FHIR store
 * itself (the end of this file: read at start, on every store change in this process and
 * on a refresh for other processes); the module's table audit_consent keeps the ones seen
 * through the REST API for a process that runs the audit module without the fhir module.
 *
 * The decision for (patient, user, purpose of use, resource type, now), per Consent
 * of that patient with status "active" (R4 §Consent.provision):
 *   the base is permit; the top provision, when it matches, decides (its type deny or
 *   permit); each nested provision that matches then decides in turn (exceptions).
 *   A provision matches when each of its lists is empty or holds the value:
 *   actor.reference (the last path segment, "Practitioner/alice" → alice) or
 *   actor.reference.identifier.value is the user; purpose[].code is the request's
 *   purpose (X-Purpose-Of-Use, default TREAT); class[].code is the resource type; and
 *   now lies in period.
 * Any consent that denies wins. A denied read answers 403; a search answers without
 * the denied patients' resources. X-Break-Glass overrides with an alert
 * (consent-override) and is recorded in the AuditEvent.
 */
#include "config.h"
#include "destinations/audit/audit_int.h"

#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int hv__audit_parse_time(const char *s, int64_t *out);

static void copy_str(char *dst, const char *s) { snprintf(dst, HV__CONSENT_STR, "%s", s ? s : ""); }

static const char *last_segment(const char *ref) {
    const char *slash = ref ? strrchr(ref, '/') : NULL;
    return slash ? slash + 1 : ref;
}

static void codes(struct json_object *arr, char list[][HV__CONSENT_STR], int *n) {
    size_t len = json_object_is_type(arr, json_type_array) ? json_object_array_length(arr) : 0;
    for (size_t i = 0; i < len && *n < HV__CONSENT_LIST; i++) {
        const char *c = hv_json_get_str(json_object_array_get_idx(arr, i), "code");
        if (c) copy_str(list[(*n)++], c);
    }
}

static void read_rule(struct json_object *p, hv__consent_rule_t *r) {
    struct json_object *v, *per;
    const char *t = hv_json_get_str(p, "type");
    memset(r, 0, sizeof(*r));
    r->deny = t != NULL && strcmp(t, "deny") == 0;
    r->end = INT64_MAX;
    if (json_object_object_get_ex(p, "actor", &v) && json_object_is_type(v, json_type_array)) {
        for (size_t i = 0; i < json_object_array_length(v) && r->nactors < HV__CONSENT_LIST; i++) {
            struct json_object *a = json_object_array_get_idx(v, i), *ref, *ident;
            if (!json_object_object_get_ex(a, "reference", &ref)) continue;
            if (hv_json_get_str(ref, "reference"))
                copy_str(r->actors[r->nactors++], last_segment(hv_json_get_str(ref, "reference")));
            else if (json_object_object_get_ex(ref, "identifier", &ident) && hv_json_get_str(ident, "value"))
                copy_str(r->actors[r->nactors++], hv_json_get_str(ident, "value"));
        }
    }
    if (json_object_object_get_ex(p, "purpose", &v)) codes(v, r->purposes, &r->npurposes);
    if (json_object_object_get_ex(p, "class", &v)) codes(v, r->classes, &r->nclasses);
    if (json_object_object_get_ex(p, "period", &per)) {
        const char *s = hv_json_get_str(per, "start"), *e = hv_json_get_str(per, "end");
        if (s && hv__audit_parse_time(s, &r->start) != HV_OK) r->start = 0;
        if (e && hv__audit_parse_time(e, &r->end) != HV_OK) r->end = INT64_MAX;
    }
}

int hv__consent_parse(const char *text, size_t len, hv__consent_t *out) {
    struct json_object *o = NULL, *pat, *prov, *nested;
    int rc = HV_EINVAL;
    const char *id, *ref, *status;
    if (hv_json_parse(text, len, "Consent", &o, NULL) != HV_OK) return HV_EPROTO;
    id = hv_json_get_str(o, "id");
    status = hv_json_get_str(o, "status");
    if (!json_object_object_get_ex(o, "patient", &pat) || (ref = hv_json_get_str(pat, "reference")) == NULL ||
        id == NULL || strlen(id) > 64 || strlen(last_segment(ref)) > 64 || last_segment(ref) - ref < 8 ||
        strncmp(last_segment(ref) - 8, "Patient/", 8) != 0)
        goto out;
    memset(out, 0, sizeof(*out));
    snprintf(out->id, sizeof(out->id), "%s", id);
    snprintf(out->patient, sizeof(out->patient), "%s", last_segment(ref));
    if (status == NULL || strcmp(status, "active") != 0) {
        rc = HV_ENOTFOUND; /* a Consent that is not active decides nothing */
        goto out;
    }
    if (json_object_object_get_ex(o, "provision", &prov)) {
        read_rule(prov, &out->top);
        if (json_object_object_get_ex(prov, "provision", &nested) && json_object_is_type(nested, json_type_array))
            for (size_t i = 0; i < json_object_array_length(nested) && out->nnested < HV__CONSENT_NESTED; i++)
                read_rule(json_object_array_get_idx(nested, i), &out->nested[out->nnested++]);
    } else {
        out->top.end = INT64_MAX; /* no provision: a permit with no limits */
    }
    rc = HV_OK;
out:
    json_object_put(o);
    return rc;
}

static int in_list(char list[][HV__CONSENT_STR], int n, const char *v) {
    if (n == 0) return 1;
    for (int i = 0; i < n; i++)
        if (strcmp(list[i], v) == 0) return 1;
    return 0;
}

static int matches(const hv__consent_rule_t *r, const char *user, const char *purpose, const char *type, int64_t now) {
    return in_list((char (*)[HV__CONSENT_STR])r->actors, r->nactors, user) &&
           in_list((char (*)[HV__CONSENT_STR])r->purposes, r->npurposes, purpose) &&
           in_list((char (*)[HV__CONSENT_STR])r->classes, r->nclasses, type) && now >= r->start && now < r->end;
}

int hv__consent_denies(const hv__consent_t *c, const char *user, const char *purpose, const char *type, int64_t now) {
    int deny = 0;
    if (matches(&c->top, user, purpose, type, now)) deny = c->top.deny;
    for (int i = 0; i < c->nnested; i++)
        if (matches(&c->nested[i], user, purpose, type, now)) deny = c->nested[i].deny;
    return deny;
}

/* ---- the registry ---- */

static int find(const hv__audit_t *a, const char *id) {
    for (size_t i = 0; i < a->nconsents; i++)
        if (strcmp(a->consents[i]->id, id) == 0) return (int)i;
    return -1;
}

static void registry_remove(hv__audit_t *a, const char *id) {
    int i = find(a, id);
    if (i < 0) return;
    hv_free(a->consents[i]);
    a->consents[i] = a->consents[--a->nconsents];
}

static int registry_put(hv__audit_t *a, const hv__consent_t *c) {
    hv__consent_t *copy;
    int i = find(a, c->id);
    if (i >= 0) {
        *a->consents[i] = *c;
        return HV_OK;
    }
    if (a->nconsents == a->max_consents) return HV_ETOOBIG;
    copy = hv_malloc(sizeof(*copy));
    if (copy == NULL) return HV_ENOMEM;
    *copy = *c;
    a->consents[a->nconsents++] = copy;
    return HV_OK;
}

int hv__consent_load(hv__audit_t *a, hv_db_t *db) {
    hv_db_stmt_t *st = NULL;
    int rc;
    a->consents = hv_calloc(a->max_consents ? a->max_consents : 1, sizeof(*a->consents));
    if (a->consents == NULL) return HV_ENOMEM;
    rc = hv_db_prepare(db, "SELECT body FROM audit_consent", &st);
    if (rc != HV_OK) return rc;
    while ((rc = hv_db_step(st)) == HV_DB_ROW) {
        size_t n = 0;
        const char *t = hv_db_column_text(st, 0, &n);
        hv__consent_t c;
        if (t != NULL && hv__consent_parse(t, n, &c) == HV_OK && registry_put(a, &c) != HV_OK) break;
    }
    hv_db_done(st);
    return rc < 0 ? rc : HV_OK;
}

void hv__consent_free(hv__audit_t *a) {
    for (size_t i = 0; i < a->nconsents; i++) hv_free(a->consents[i]);
    hv_free(a->consents);
    a->consents = NULL;
    a->nconsents = 0;
}

typedef struct cjob {
    char id[65];
    char *body; /* NULL: delete */
    size_t len;
} cjob_t;

static int job_consent(hv_db_t *db, void *arg) {
    cjob_t *j = arg;
    hv_db_stmt_t *st = NULL;
    int rc = hv_db_prepare(db, "DELETE FROM audit_consent WHERE id = $1", &st);
    if (rc != HV_OK) return rc;
    hv_db_bind_text(st, 1, j->id, strlen(j->id));
    rc = hv_db_step(st);
    hv_db_done(st);
    if (rc != HV_OK || j->body == NULL) return rc;
    rc = hv_db_prepare(db, "INSERT INTO audit_consent (id, body) VALUES ($1, $2)", &st);
    if (rc != HV_OK) return rc;
    hv_db_bind_text(st, 1, j->id, strlen(j->id));
    hv_db_bind_text(st, 2, j->body, j->len);
    rc = hv_db_step(st);
    hv_db_done(st);
    return rc;
}

static void done_consent(int status, void *arg) {
    cjob_t *j = arg;
    if (status != HV_OK)
        hv_log(HV_LOG_ERROR, "audit.consent_not_stored", "a consent decision could not be stored: %s", hv_strerror(status));
    hv_free(j->body);
    hv_free(j);
}

static void persist(hv__audit_t *a, const char *id, const char *body, size_t len) {
    cjob_t *j = hv_calloc(1, sizeof(*j));
    if (j == NULL) return;
    snprintf(j->id, sizeof(j->id), "%s", id);
    if (body != NULL && (j->body = hv_strndup(body, len)) == NULL) {
        hv_free(j);
        return;
    }
    j->len = len;
    if (hv_storage_submit(a->storage, job_consent, done_consent, j) != HV_OK) done_consent(HV_EBUSY, j);
}

void hv__consent_observe(hv__audit_t *a, int method, const char *id, int status, const char *resp, size_t rlen,
                         const char *reqbody, size_t qlen) {
    hv__consent_t c;
    const char *text = resp;
    size_t len = rlen;
    int rc;
    if (status >= 300) return;
    if (method == HV_HTTP_DELETE) {
        if (id && id[0]) {
            registry_remove(a, id);
            persist(a, id, NULL, 0);
        }
        return;
    }
    if (text == NULL || len == 0 || text[0] != '{') {
        text = reqbody; /* Prefer: return=minimal */
        len = qlen;
    }
    if (text == NULL || len == 0) return;
    rc = hv__consent_parse(text, len, &c);
    if (rc == HV_ENOTFOUND) {
        registry_remove(a, c.id); /* no longer active */
        persist(a, c.id, NULL, 0);
    } else if (rc == HV_OK) {
        if (registry_put(a, &c) != HV_OK) {
            hv_log(HV_LOG_ERROR, "audit.consent_full", "more than audit.consent_max active consents: one not enforced");
            return;
        }
        persist(a, c.id, text, len);
    }
}

int hv__consent_patient_denied(const hv__audit_t *a, const char *patient, const char *user, const char *purpose,
                               const char *type, int64_t now) {
    for (size_t i = 0; i < a->nconsents; i++)
        if (strcmp(a->consents[i]->patient, patient) == 0 &&
            hv__consent_denies(a->consents[i], user, purpose, type, now))
            return 1;
    return 0;
}

int hv__consent_has(const hv__audit_t *a, const char *patient) {
    for (size_t i = 0; i < a->nconsents; i++)
        if (strcmp(a->consents[i]->patient, patient) == 0) return 1;
    return 0;
}

/* Drops from a JSON searchset the entries holding data of a patient whose consent denies
 * it; returns how many were (or, with keep set, would have been) dropped. */
static int filter_bundle(hv__audit_t *a, struct json_object *bundle, const char *user, const char *purpose,
                         int64_t now, int keep) {
    struct json_object *entries, *kept;
    int dropped = 0;
    if (!json_object_object_get_ex(bundle, "entry", &entries) || !json_object_is_type(entries, json_type_array))
        return 0;
    kept = json_object_new_array();
    if (kept == NULL) return -1;
    for (size_t i = 0; i < json_object_array_length(entries); i++) {
        struct json_object *en = json_object_array_get_idx(entries, i), *res = NULL;
        const char *ids[HV_AUDIT_MAX_PATIENTS], *text, *rtype = "";
        size_t n = 0, tl = 0;
        int deny = 0;
        hv_arena_t *ar;
        if (json_object_object_get_ex(en, "resource", &res)) {
            rtype = hv_json_get_str(res, "resourceType");
            text = json_object_to_json_string_length(res, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE, &tl);
            ar = hv_arena_new(1024);
            if (ar != NULL && text != NULL) {
                hv__audit_scan_patients(text, tl, ar, ids, &n, HV_ARRAY_LEN(ids));
                for (size_t k = 0; k < n && !deny; k++)
                    deny = hv__consent_patient_denied(a, ids[k], user, purpose, rtype ? rtype : "", now);
            }
            hv_arena_free(ar);
        }
        if (deny) dropped++;
        if (!deny || keep) json_object_array_add(kept, json_object_get(en));
    }
    if (keep || dropped == 0) {
        json_object_put(kept);
        return dropped;
    }
    hv_json_set(bundle, "entry", kept);
    {
        struct json_object *t;
        if (json_object_object_get_ex(bundle, "total", &t) && json_object_is_type(t, json_type_int))
            hv_json_set_int(bundle, "total", json_object_get_int64(t) - dropped);
    }
    return dropped;
}

int hv__consent_enforce(hv__audit_t *a, hv_http_req_t *req, const char *user, const char *type, const char *body,
                        size_t len, const char **ids, size_t *np, const char **detail) {
    size_t n = *np;
    const char *purpose = hv_http_req_header(req, "X-Purpose-Of-Use"), *bg = hv_http_req_header(req, "X-Break-Glass");
    int64_t now = (int64_t)hv_now_ms();
    int any = 0, denied = 0;
    struct json_object *o = NULL;
    if (purpose == NULL || purpose[0] == '\0') purpose = "TREAT";
    if (user == NULL) user = "";
    for (size_t i = 0; i < n && !any; i++) any = hv__consent_has(a, ids[i]);
    if (!any) return 0;
    if (len > 0 && body[0] == '{' && (o = json_tokener_parse(body)) != NULL &&
        strcmp(hv_json_get_str(o, "resourceType") ? hv_json_get_str(o, "resourceType") : "", "Bundle") == 0) {
        int dropped = filter_bundle(a, o, user, purpose, now, bg != NULL && bg[0] != '\0');
        if (dropped > 0 && bg != NULL && bg[0] != '\0') {
            hv__alert_raise(a, "consent-override", "high", user, "", "break-glass read of data a consent denies");
            *detail = "consent overridden by break-glass";
        } else if (dropped > 0) {
            size_t tl = 0;
            const char *text = json_object_to_json_string_length(o, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE, &tl);
            if (text == NULL || hv_http_req_override(req, 200, "application/fhir+json; charset=utf-8", text, tl) != HV_OK) {
                denied = -1;
            } else {
                /* The record names the patients whose data actually left. */
                size_t k = 0;
                hv__audit_scan_patients(text, tl, hv_http_req_arena(req), ids, &k, HV_AUDIT_MAX_PATIENTS);
                *np = k;
                denied = 2;
            }
            *detail = "entries withheld by consent";
        }
        json_object_put(o);
        return denied;
    }
    json_object_put(o);
    for (size_t i = 0; i < n && !denied; i++) denied = hv__consent_patient_denied(a, ids[i], user, purpose, type, now);
    if (!denied) return 0;
    if (bg != NULL && bg[0] != '\0') {
        hv__alert_raise(a, "consent-override", "high", user, "", "break-glass read of data a consent denies");
        *detail = "consent overridden by break-glass";
        return 0;
    }
    {
        static const char oo[] = "{\"resourceType\":\"OperationOutcome\",\"issue\":[{\"severity\":\"error\","
                                 "\"code\":\"forbidden\",\"diagnostics\":\"the patient's consent does not permit "
                                 "this access\"}]}";
        *detail = "denied by consent";
        return hv_http_req_override(req, 403, "application/fhir+json; charset=utf-8", oo, sizeof(oo) - 1) == HV_OK ? 1
                                                                                                                : -1;
    }
}

int hv__consent_filter(void *ud, const char *purpose, const char *content, size_t len, const char *content_type) {
    hv__audit_t *a = ud;
    const char *ids[HV_AUDIT_MAX_PATIENTS], *type = "";
    size_t n = 0;
    int withhold = 0;
    hv_arena_t *ar;
    struct json_object *o = NULL;
    (void)content_type;
    if (a->nconsents == 0 || content == NULL || len == 0) return 0;
    ar = hv_arena_new(2048);
    if (ar == NULL) return 1; /* cannot tell: keep it back (it is retried as done, never sent) */
    hv__audit_scan_patients(content, len, ar, ids, &n, HV_ARRAY_LEN(ids));
    if (n > 0 && content[0] == '{' && (o = json_tokener_parse(content)) != NULL && hv_json_get_str(o, "resourceType"))
        type = hv_json_get_str(o, "resourceType");
    for (size_t i = 0; i < n && !withhold; i++)
        withhold = hv__consent_patient_denied(a, ids[i], "", purpose, type, (int64_t)hv_now_ms());
    if (withhold) {
        hv_audit_event_t ev = {0};
        ev.action = 'E';
        ev.subtype = "consent-withheld";
        ev.outcome = 0;
        ev.user = "channel";
        ev.purpose = purpose;
        ev.patients = ids;
        ev.npatients = n;
        ev.detail = "a message was kept from a destination by patient consent";
        (void)hv_audit_record(a->e, &ev);
    }
    json_object_put(o);
    hv_arena_free(ar);
    return withhold;
}

/* ---- the FHIR store as the source of Consents ---- */

/*
 * Every write path of the FHIR store — REST, transaction and batch Bundles, the fhir-store
 * channel destination, `holovitals import` (another process), another engine sharing the
 * PostgreSQL database — ends in the store's resources table. So the registry is rebuilt
 * from the store's current Consents (fhir/store_int.h), read by a job on the fhir module's
 * own storage thread and connection — a second connection to its database disturbed its
 * Bulk Data jobs — so that every FHIR request submitted after a reload is answered after
 * the new list is in place (a storage thread runs its jobs and their callbacks in order):
 * at start, when the store reports a Consent change in this
 * process (hv_fhir_store_on_change, also per entry of a transaction), and every
 * audit.consent_refresh when the newest Consent version (its rid) changed — which is how
 * writes by other processes are seen. The audit_consent copy stays for processes that run
 * the audit module without the fhir module.
 */
#include "fhir/rest_int.h"
#include "fhir/store_int.h"

typedef struct reload {
    hv__audit_t *a;
    int force;
    int changed;      /* the job rebuilt the list */
    int64_t top_rid;  /* the newest Consent version seen */
    hv__consent_t **list;
    size_t n, max, skipped;
} reload_t;

static int newest_cb(void *ud, const hv__store_row_t *row) {
    int64_t *top = ud;
    if (row->rid > *top) *top = row->rid;
    return HV_OK;
}

static int collect_cb(void *ud, const hv__store_row_t *row) {
    reload_t *r = ud;
    hv__consent_t c;
    if (row->text == NULL || hv__consent_parse(row->text, row->text_len, &c) != HV_OK) return HV_OK;
    if (r->n == r->max) {
        r->skipped++;
        return HV_OK;
    }
    if ((r->list[r->n] = hv_malloc(sizeof(c))) == NULL) return HV_ENOMEM;
    *r->list[r->n++] = c;
    return HV_OK;
}

static void reload_free(reload_t *r) {
    for (size_t i = 0; r->list != NULL && i < r->n; i++) hv_free(r->list[i]);
    hv_free(r->list);
    hv_free(r);
}

/* The fhir module's storage thread, on its connection (db). */
static int job_reload(hv_db_t *db, void *arg) {
    reload_t *r = arg;
    hv__store_hist_q_t q = {"Consent", NULL, -1, -1, 0, 1};
    int rc;
    r->top_rid = 0;
    rc = hv__store_history(db, &q, newest_cb, &r->top_rid);
    if (rc != HV_OK) return rc;
    if (!r->force && r->top_rid == r->a->consent_rid) return HV_OK;
    r->max = r->a->max_consents ? r->a->max_consents : 1;
    r->list = hv_calloc(r->max, sizeof(*r->list));
    if (r->list == NULL) return HV_ENOMEM;
    rc = hv__store_each_current(db, "Consent", collect_cb, r);
    if (rc == HV_OK) r->changed = 1;
    return rc;
}

static void install(reload_t *r) {
    hv__audit_t *a = r->a;
    if (!r->changed) return;
    hv__consent_free(a);
    a->consents = r->list;
    a->nconsents = r->n;
    a->consent_rid = r->top_rid;
    r->list = NULL;
    r->n = 0;
    if (r->skipped > 0)
        hv_log(HV_LOG_ERROR, "audit.consent_full", "more than audit.consent_max active consents: %zu not enforced",
               r->skipped);
}

static void release_waiters(hv__audit_t *a) {
    size_t n = a->nconsent_waiters;
    a->nconsent_waiters = 0;
    for (size_t i = 0; i < n; i++) hv_http_req_release(a->consent_waiters[i], HV_OK);
}

void hv__consent_hold_answer(hv__audit_t *a, hv_http_req_t *req) {
    if (!a->consent_reloading || a->nconsent_waiters == HV_ARRAY_LEN(a->consent_waiters)) return;
    hv_http_req_hold(req);
    a->consent_waiters[a->nconsent_waiters++] = req;
}

static void done_reload(int status, void *arg) {
    reload_t *r = arg;
    r->a->consent_reloading = 0;
    if (status != HV_OK)
        hv_log(HV_LOG_ERROR, "audit.consent_reload", "the Consents could not be read from the FHIR store: %s",
               hv_strerror(status));
    else
        install(r);
    if (r->a->consent_again) {
        r->a->consent_again = 0;
        hv__consent_reload(r->a, 1);
    }
    if (!r->a->consent_reloading) release_waiters(r->a);
    reload_free(r);
}

void hv__consent_reload(hv__audit_t *a, int force) {
    reload_t *r;
    if (a->fhir_storage == NULL) {
        release_waiters(a);
        return;
    }
    if (a->consent_reloading) {
        /* One at a time; a change during the walk is read by one more walk after it. */
        if (force) a->consent_again = 1;
        return;
    }
    r = hv_calloc(1, sizeof(*r));
    if (r == NULL) {
        release_waiters(a);
        return;
    }
    r->a = a;
    r->force = force;
    a->consent_reloading = 1;
    if (hv_storage_submit(a->fhir_storage, job_reload, done_reload, r) != HV_OK) {
        a->consent_reloading = 0;
        reload_free(r);
        release_waiters(a);
    }
}

static void on_store_change(void *ud, const char *type, const char *id, int64_t version, hv_fhir_change_t change) {
    (void)id;
    (void)version;
    (void)change;
    if (strcmp(type, "Consent") == 0) hv__consent_reload(ud, 1);
}

static void on_refresh(uv_timer_t *t) { hv__consent_reload(t->data, 0); }

int hv__consent_store_start(hv__audit_t *a) {
    hv__fhir_t *f = hv_engine_module_state(a->e, "fhir");
    /* Only where the fhir module runs in this process. */
    if (f == NULL || f->storage == NULL || hv_fhir_store_on_change(a->e, on_store_change, a) != HV_OK) return HV_OK;
    a->fhir_storage = f->storage;
    hv__consent_reload(a, 1); /* ahead of every FHIR request: they queue behind it */
    if (a->consent_refresh_ms > 0 && uv_timer_init(hv_engine_loop(a->e), &a->consent_timer) == 0) {
        a->consent_timer.data = a;
        a->consent_timer_on = 1;
        uv_timer_start(&a->consent_timer, on_refresh, a->consent_refresh_ms, a->consent_refresh_ms);
    }
    return HV_OK;
}
