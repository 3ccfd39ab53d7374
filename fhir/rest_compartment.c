/*
 * rest_compartment.c — compartments and the instance operations of FHIR R4
 * (search.html#compartments, compartmentdefinition.html,
 * patient-operation-everything.html, resource-operation-validate.html):
 *
 *   GET  /fhir/:comp/:id/:type?criteria   search of type within the compartment of
 *                                          comp/id (Patient, Encounter, Practitioner,
 *                                          RelatedPerson, Device), searchset with paging
 *   GET  /fhir/Patient/:id/$everything     the Patient, its compartment and what that refers to
 *   POST /fhir/:type/$validate             validate a resource (the body, or Parameters.resource)
 *   POST /fhir/:type/:id/$validate         likewise
 *
 * Compartment search is a search of the type (the criteria planned by
 * fhir/search_plan.c, with _count, _sort and the keyset cursor) restricted to the
 * resources whose linking parameters, from the official CompartmentDefinitions
 * (fhir/compartments_gen.c), refer to the owner in the search index.
 *
 * SMART scopes (fhir/rest_authz.c): a compartment search is a search (s) of its type,
 * $everything a read (r) of the Patient; an owner the token may not read (another
 * patient, another patient's Encounter…) answers 404 as a read does; a patient/-only
 * token's search is also limited to its own patient's compartment in the SQL plan; every
 * row, member or included resource the token may not see is left out (and not counted).
 */
#include "config.h"

#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fhir/compartment_int.h"
#include "fhir/rest_int.h"
#include "fhir/search_int.h"

/* ---- the compartment definitions (fhir/compartments_gen.c) ---- */

const hv__compartment_t *hv__compartment_find(const char *code)
{
    for (size_t i = 0; code != NULL && i < hv__ncompartments; i++)
        if (strcmp(hv__compartments[i].code, code) == 0)
            return &hv__compartments[i];
    return NULL;
}

const char *const *hv__compartment_params(const hv__compartment_t *c, const char *type)
{
    size_t lo = 0, hi = c->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int k = strcmp(c->res[mid].type, type);
        if (k == 0)
            return c->res[mid].params;
        if (k < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

/* ---- compartment search: GET /fhir/:comp/:id/:type?criteria ---- */

typedef struct csearch {
    hv__rreq_t *r;
    hv__search_plan_t plan;
    char comp[HV__FHIR_TYPE_MAX];
    char owner[HV__FHIR_ID_MAX];
    char type[HV__FHIR_TYPE_MAX];
    char *query;
    const char *base;
    hv_buf_t body;
    size_t rows;          /* entries written */
    size_t seen;          /* rows the store returned (paging counts these) */
    int more, owner_live;
    int check;            /* rows go through the scope check (fhir/rest_authz.c) */
    int64_t total;
    char cursor[HV__SEARCH_CURSOR_MAX + 1]; /* the _cursor continuing after the page's last row */
} csearch_t;

static int cs_row(void *ud, const hv__store_row_t *row)
{
    csearch_t *c = ud;
    char url[512];
    if ((int64_t)c->seen >= c->plan.count) {
        c->more = 1;
        return HV_OK;
    }
    c->seen++;
    snprintf(c->cursor, sizeof(c->cursor), "%s", row->cursor != NULL ? row->cursor : "");
    if (c->check && hv__authz_resource(c->r->principal, HV_AUTH_SEARCH, row->type, row->id, NULL, row->text) != HV_OK)
        return HV_OK; /* left out; the cursor still moves past it */
    if (c->rows++ > 0)
        hv_buf_putc(&c->body, ',');
    snprintf(url, sizeof(url), "%s/%s/%s", c->base, row->type, row->id);
    hv_buf_puts(&c->body, "{\"fullUrl\":");
    hv_buf_json_str(&c->body, url, strlen(url));
    hv_buf_puts(&c->body, ",\"resource\":");
    hv_buf_append(&c->body, row->text, row->text_len);
    return hv_buf_puts(&c->body, ",\"search\":{\"mode\":\"match\"}}");
}

static int job_csearch(hv_db_t *db, void *arg)
{
    csearch_t *c = arg;
    hv__store_row_t row;
    int rc = hv__store_get(db, c->comp, c->owner, 0, &row);
    if (rc == HV_ENOTFOUND)
        return HV_OK;
    if (rc != HV_OK)
        return rc;
    c->owner_live = !row.deleted;
    /* An owner the token may not read answers 404, unless (Patient compartment) the
     * token may search that patient's compartment for the type anyway. */
    if (c->owner_live && c->r->principal != NULL &&
        hv__authz_resource(c->r->principal, HV_AUTH_READ, c->comp, c->owner, NULL, row.text) != HV_OK &&
        (strcmp(c->comp, "Patient") != 0 ||
         hv__authz_compartment(c->r->principal, HV_AUTH_SEARCH, c->type, c->owner) != HV_OK))
        c->owner_live = 0;
    hv__store_row_clear(&row);
    if (!c->owner_live)
        return HV_OK;
    return hv__search_plan_run(db, &c->plan, cs_row, c, &c->total);
}

/* The query without _cursor, for the links. */
static char *links_query(const char *query, hv_arena_t *a)
{
    hv_buf_t b;
    char *q = hv_strdup(query), *save = NULL, *part, *out;
    hv_buf_init(&b, 16384);
    for (part = q ? strtok_r(q, "&", &save) : NULL; part != NULL; part = strtok_r(NULL, "&", &save)) {
        if (strncmp(part, "_cursor=", 8) == 0)
            continue;
        hv_buf_printf(&b, "%s%s", b.len ? "&" : "", part);
    }
    out = hv_arena_sprintf(a, "%s", b.data ? b.data : "");
    hv_buf_release(&b);
    hv_free(q);
    return out;
}

static void done_csearch(int status, void *arg)
{
    csearch_t *c = arg;
    hv__rreq_t *r = c->r;
    hv_arena_t *a = hv_http_req_arena(r->req);
    hv_buf_t out;
    char *lq, *self;
    hv_buf_init(&out, 0);
    if (status != HV_OK) {
        hv__rest_outcome(r, 500, "error", "exception", "the compartment could not be searched: %s",
                         hv_strerror(status));
        goto out;
    }
    if (!c->owner_live) {
        hv__rest_outcome(r, 404, "error", "not-found", "%s/%s is not known", c->comp, c->owner);
        goto out;
    }
    if (c->total < 0 && !c->more && !c->plan.has_cursor && c->plan.total == HV__TOTAL_ACCURATE)
        c->total = (int64_t)c->rows;
    lq = links_query(c->query, a);
    hv_buf_puts(&out, "{\"resourceType\":\"Bundle\",\"type\":\"searchset\"");
    if (c->total >= 0)
        hv_buf_printf(&out, ",\"total\":%lld", (long long)c->total);
    self = hv_arena_sprintf(a, "%s/%s/%s/%s%s%s", c->base, c->comp, c->owner, c->type, lq && *lq ? "?" : "",
                            lq ? lq : "");
    hv_buf_puts(&out, ",\"link\":[{\"relation\":\"self\",\"url\":");
    hv_buf_json_str(&out, self ? self : "", self ? strlen(self) : 0);
    hv_buf_puts(&out, "}");
    if (c->more && c->plan.count > 0) {
        /* the cursor the planner wrote for the page's last row (fhir/search_run.c) */
        char *next = hv_arena_sprintf(a, "%s/%s/%s/%s?%s%s_cursor=%s", c->base, c->comp, c->owner, c->type,
                                      lq ? lq : "", lq && *lq ? "&" : "", c->cursor);
        hv_buf_puts(&out, ",{\"relation\":\"next\",\"url\":");
        hv_buf_json_str(&out, next ? next : "", next ? strlen(next) : 0);
        hv_buf_puts(&out, "}");
    }
    hv_buf_puts(&out, "]");
    if (!c->plan.summary_count) {
        hv_buf_puts(&out, ",\"entry\":[");
        hv_buf_append(&out, c->body.data ? c->body.data : "", c->body.len);
        hv_buf_puts(&out, "]");
    }
    if (hv_buf_puts(&out, "}") != HV_OK) {
        hv__rest_outcome(r, 500, "error", "exception", "the result is too large; use a smaller _count");
        goto out;
    }
    r->summary = NULL; /* _summary applies to the Bundle, handled above */
    r->elements = NULL;
    hv__rest_send_text(r, 200, out.data, out.len);
out:
    hv_buf_release(&out);
    hv_buf_release(&c->body);
    hv__search_plan_clear(&c->plan);
    hv_free(c->query);
    hv__rreq_free(r);
    hv_free(c);
}

static int push_bind(hv__search_plan_t *p, const char *s)
{
    if (p->nbinds >= HV__SEARCH_MAX_BINDS)
        return HV_ETOOBIG;
    p->binds[p->nbinds].kind = 0;
    p->binds[p->nbinds].s = hv_strdup(s);
    if (p->binds[p->nbinds].s == NULL)
        return HV_ENOMEM;
    return p->nbinds++, HV_OK;
}

/*
 * Restricts a plan to the compartment of comp/owner (FHIR R4 search.html#compartments,
 * compartmentdefinition.html): a resource is in it when one of its linking parameters
 * (params, may be NULL) refers to the owner — a row of the reference index with that
 * code and target — or, for the owner's own type, when it is the owner. The clause
 * takes the next placeholders; the values are bound, never spliced.
 */
static int restrict_to_compartment(hv__search_plan_t *p, const char *comp, const char *owner, const char *type,
                                   const char *const *params)
{
    int self = strcmp(type, comp) == 0, rc, o, t;
    rc = push_bind(p, owner);
    o = p->nbinds;
    if (rc == HV_OK)
        rc = push_bind(p, comp);
    t = p->nbinds;
    if (rc != HV_OK)
        return rc;
    hv_buf_puts(&p->where, " AND (");
    if (self)
        hv_buf_printf(&p->where, "r.id = $%d%s", o, params != NULL ? " OR " : "");
    if (params != NULL) {
        hv_buf_printf(&p->where,
                      "EXISTS (SELECT 1 FROM sp_ref x WHERE x.type = r.type AND x.id = r.id AND x.rid = $%d AND"
                      " (x.rtype = $%d OR x.rtype IS NULL) AND x.code IN (",
                      o, t);
        for (size_t i = 0; params[i] != NULL && rc == HV_OK; i++) {
            rc = push_bind(p, params[i]);
            hv_buf_printf(&p->where, "%s$%d", i ? ", " : "", p->nbinds);
        }
        hv_buf_puts(&p->where, "))");
    }
    if (rc == HV_OK)
        rc = hv_buf_puts(&p->where, ")");
    return rc;
}

static void compartment_search(hv__rreq_t *r, const hv__compartment_t *cd, const char *owner, const char *type)
{
    hv__fhir_t *f = r->f;
    hv_http_req_t *req = r->req;
    const char *const *params = hv__compartment_params(cd, type);
    const char *prefer = hv_http_req_header(req, "Prefer");
    csearch_t *c;
    if (params == NULL && strcmp(type, cd->code) != 0) {
        hv__rest_outcome(r, 400, "error", "invalid", "%s is not in the %s compartment (CompartmentDefinition/%s)",
                         type, cd->code, cd->code);
        goto fail;
    }
    c = hv_calloc(1, sizeof(*c));
    if (c == NULL) {
        hv__rest_outcome(r, 503, "error", "transient", "out of memory");
        goto fail;
    }
    hv__search_plan_init(&c->plan);
    c->r = r;
    c->total = -1;
    snprintf(c->comp, sizeof(c->comp), "%s", cd->code);
    snprintf(c->owner, sizeof(c->owner), "%s", owner);
    snprintf(c->type, sizeof(c->type), "%s", type);
    c->query = hv_strdup(hv_http_req_query(req));
    c->base = hv__rest_base(r);
    hv_buf_init(&c->body, (size_t)256 << 20);
    if (c->query == NULL) {
        hv__rest_outcome(r, 503, "error", "transient", "out of memory");
        goto fail_c;
    }
    /* The criteria are any search of the type (docs/fhir-search.md), planned as GET /fhir/:type does. */
    if (hv__search_plan_build(&c->plan, type, c->query, prefer != NULL && strstr(prefer, "handling=strict") != NULL,
                              f->history_count,
                              f->history_max < HV__SEARCH_MAX_RESULTS ? f->history_max : HV__SEARCH_MAX_RESULTS) !=
        HV_OK) {
        hv__rest_outcome(r, 400, "error", "invalid", "%s", c->plan.msg[0] ? c->plan.msg : "the search is invalid");
        goto fail_c;
    }
    if (restrict_to_compartment(&c->plan, cd->code, owner, type, params) != HV_OK) {
        hv__rest_outcome(r, 400, "error", "too-costly", "the search has too many values");
        goto fail_c;
    }
    if (hv__authz_type(r, HV_AUTH_SEARCH, type) != HV_OK)
        goto fail_c;
    {
        const char *pid = NULL;
        if (hv_auth_patient_ids(r->principal, HV_AUTH_SEARCH, type, &pid) == 1 &&
            hv__search_plan_compartment(&c->plan, pid) != HV_OK) {
            hv__rest_outcome(r, 400, "error", "too-costly", "the search has too many values");
            goto fail_c;
        }
        c->check = hv__authz_restricted(r->principal, HV_AUTH_SEARCH, type);
    }
    if (hv_storage_submit(f->storage, job_csearch, done_csearch, c) != HV_OK) {
        hv__rest_outcome(r, 503, "error", "transient", "the store is busy; retry later");
        goto fail_c;
    }
    return;
fail_c:
    hv__search_plan_clear(&c->plan);
    hv_buf_release(&c->body);
    hv_free(c->query);
    hv_free(c);
fail:
    hv__rreq_free(r);
}

/* ---- Patient/$everything ---- */

/*
 * FHIR R4 patient-operation-everything.html: the Patient, every resource in its
 * compartment (membership from the store's refs index: the live resources whose
 * current version references the Patient — a superset of the CompartmentDefinition's
 * parameters), and the resources those refer to outside it (Practitioner,
 * Organization, Medication, Location… one level, search mode "include"). _type
 * (comma-separated) and _since (lastUpdated at or after) filter both; start and end
 * (dates) keep the members with a date index value (any date parameter: care dates,
 * not record dates) overlapping [start, end], the members without one and the Patient.
 *
 * Paging: the members are read in row order; a page holds _count of them (default and
 * maximum fhir.max_bundle_entries) and the resources the members read for it refer to
 * (at most as many again; a resource several pages refer to is included on each).
 * The next link carries _cursor=<row id of the page's last member>, a keyset cursor:
 * page n costs what page 1 costs, and members written between pages are not skipped
 * (they come last). Bundle.total counts every matching member.
 */
#define EVERYTHING_MAX_REFS 4096

typedef struct every {
    hv__rreq_t *r;
    char patient[HV__FHIR_ID_MAX];
    const char *base;
    char **types;       /* _type, NULL-terminated, or NULL for all */
    int64_t since_ms;   /* -1: none */
    int dates;          /* start/end given: [start_ms, end_ms] */
    int64_t start_ms, end_ms;
    int64_t after;      /* _cursor: members after this row id */
    int64_t last_rid;   /* the page's last member */
    int more;           /* a member follows the page */
    hv_buf_t body;
    size_t count, max, written, inc_written, total;
    int patient_live;
    int check;          /* members and includes go through the scope check (fhir/rest_authz.c) */
    char (*seen)[HV__FHIR_TYPE_MAX + HV__FHIR_ID_MAX + 1]; /* members and includes, "Type/id" */
    size_t nseen;
    char (*refs)[HV__FHIR_TYPE_MAX + HV__FHIR_ID_MAX + 1]; /* references out, to fetch */
    size_t nrefs;
} every_t;

static int type_wanted(const every_t *ev, const char *type)
{
    if (ev->types == NULL)
        return 1;
    for (size_t i = 0; ev->types[i] != NULL; i++)
        if (strcmp(ev->types[i], type) == 0)
            return 1;
    return 0;
}

static int seen(const every_t *ev, const char *key)
{
    for (size_t i = 0; i < ev->nseen; i++)
        if (strcmp(ev->seen[i], key) == 0)
            return 1;
    return 0;
}

static void put_entry(every_t *ev, const hv__store_row_t *row, const char *mode)
{
    char url[512];
    if (mode[0] == 'i' && ev->inc_written++ >= ev->max)
        return;
    if (ev->written++ > 0)
        hv_buf_putc(&ev->body, ',');
    snprintf(url, sizeof(url), "%s/%s/%s", ev->base, row->type, row->id);
    hv_buf_puts(&ev->body, "{\"fullUrl\":");
    hv_buf_json_str(&ev->body, url, strlen(url));
    hv_buf_puts(&ev->body, ",\"resource\":");
    hv_buf_append(&ev->body, row->text, row->text_len);
    hv_buf_printf(&ev->body, ",\"search\":{\"mode\":\"%s\"}}", mode);
}

/* Collects the relative references "Type/id" of a tree (outside contained resources). */
static void collect_refs(every_t *ev, struct json_object *o, int depth)
{
    if (depth > 64 || ev->nrefs >= EVERYTHING_MAX_REFS)
        return;
    if (json_object_is_type(o, json_type_array)) {
        for (size_t i = 0; i < json_object_array_length(o); i++)
            collect_refs(ev, json_object_array_get_idx(o, i), depth + 1);
        return;
    }
    if (!json_object_is_type(o, json_type_object))
        return;
    json_object_object_foreach(o, key, val)
    {
        if (strcmp(key, "reference") == 0 && json_object_is_type(val, json_type_string)) {
            const char *ref = json_object_get_string(val), *slash = strchr(ref, '/');
            char type[HV__FHIR_TYPE_MAX];
            size_t tl = slash != NULL ? (size_t)(slash - ref) : 0;
            if (tl == 0 || tl >= sizeof(type) || !hv__fhir_id_valid(slash + 1))
                continue;
            memcpy(type, ref, tl);
            type[tl] = '\0';
            if (hv_fhir_resource_type(type) == NULL || strcmp(type, "Patient") == 0)
                continue;
            /* Distinct targets only, so that the cap counts resources, not mentions. */
            {
                size_t k;
                for (k = 0; k < ev->nrefs && strcmp(ev->refs[k], ref) != 0; k++)
                    ;
                if (k < ev->nrefs)
                    continue;
            }
            snprintf(ev->refs[ev->nrefs++], sizeof(ev->refs[0]), "%s", ref);
            if (ev->nrefs >= EVERYTHING_MAX_REFS)
                return;
        } else if (strcmp(key, "contained") != 0) {
            collect_refs(ev, val, depth + 1);
        }
    }
}

/* True when a member passes _type and _since (the filters of the answer). */
static int member_wanted(const every_t *ev, const char *type, int64_t last_ms)
{
    return (ev->since_ms < 0 || last_ms >= ev->since_ms) && type_wanted(ev, type);
}

/*
 * The compartment's members in row order after row id `after`, with the start/end
 * filter in SQL. counting: counts the wanted members the token may see into
 * ev->total (the JSON is read only when the scope check needs it). Otherwise fills
 * the page: up to ev->max wanted members, the references of every member read for
 * it collected, and ev->more set when another wanted member follows.
 */
static int scan_members(hv_db_t *db, every_t *ev, int64_t after, int counting)
{
    char sql[1024];
    hv_db_stmt_t *st = NULL;
    int rc, want_json = !counting || ev->check;
    snprintf(sql, sizeof(sql),
             "SELECT r.rid, r.type, r.id, r.version, r.last_ms, %s FROM refs c JOIN resources r ON r.type = c.type"
             " AND r.id = c.id WHERE c.patient = $1 AND r.rid > $2 AND r.deleted = 0 AND NOT EXISTS (SELECT 1 FROM"
             " resources n WHERE n.type = r.type AND n.id = r.id AND n.version > r.version)%s ORDER BY r.rid",
             want_json ? "r.json" : "NULL",
             ev->dates ? " AND (r.type = $3 OR NOT EXISTS (SELECT 1 FROM sp_date d WHERE d.type = r.type AND d.id ="
                         " r.id) OR EXISTS (SELECT 1 FROM sp_date d WHERE d.type = r.type AND d.id = r.id AND d.hi >="
                         " $4 AND d.lo <= $5))"
                       : "");
    rc = hv_db_prepare(db, sql, &st);
    if (rc != HV_OK)
        return rc;
    hv_db_bind_text(st, 1, ev->patient, strlen(ev->patient));
    hv_db_bind_int64(st, 2, after);
    if (ev->dates) {
        hv_db_bind_text(st, 3, "Patient", 7);
        hv_db_bind_int64(st, 4, ev->start_ms);
        hv_db_bind_int64(st, 5, ev->end_ms);
    }
    while ((rc = hv_db_step(st)) == HV_DB_ROW) {
        hv__store_row_t row;
        const char *s;
        size_t len = 0;
        int wanted;
        struct json_object *tree;
        hv__store_row_head(st, &row);
        wanted = member_wanted(ev, row.type, (int64_t)row.last_ms);
        if (!want_json || (counting && !wanted)) {
            ev->total += (size_t)(counting && wanted);
            continue;
        }
        s = hv_db_column_text(st, 5, &len);
        row.text = hv_strndup(s ? s : "", s ? len : 0);
        row.text_len = s ? len : 0;
        if (row.text == NULL) {
            rc = HV_ENOMEM;
            break;
        }
        /* A member the token may not see is left out, with what it refers to. */
        if (ev->check &&
            hv__authz_resource(ev->r->principal, HV_AUTH_SEARCH, row.type, row.id, NULL, row.text) != HV_OK) {
            hv__store_row_clear(&row);
            continue;
        }
        if (counting) {
            ev->total++;
            hv__store_row_clear(&row);
            continue;
        }
        if (wanted && ev->count == ev->max) {
            /* _count=0 asks for the total alone: no next page (its cursor would be the
             * page's last member, of which there is none, and repeat this page). */
            ev->more = ev->max > 0;
            hv__store_row_clear(&row);
            break;
        }
        if (ev->nseen < EVERYTHING_MAX_REFS)
            snprintf(ev->seen[ev->nseen++], sizeof(ev->seen[0]), "%s/%s", row.type, row.id);
        /* The references out of the compartment, fetched once the page's members are
         * known; followed from every member read, the filters apply to what is returned. */
        tree = json_tokener_parse(row.text);
        if (tree != NULL) {
            collect_refs(ev, tree, 0);
            json_object_put(tree);
        }
        if (wanted) {
            ev->count++;
            ev->last_rid = row.rid;
            put_entry(ev, &row, "match");
        }
        hv__store_row_clear(&row);
    }
    hv_db_done(st);
    return rc < 0 ? rc : HV_OK;
}

/* True when type/id is a member of the compartment (then it is a match on its own page,
 * never an include). */
static int is_member(hv_db_t *db, const every_t *ev, const char *type, const char *id)
{
    hv_db_stmt_t *st = NULL;
    int rc;
    if (hv_db_prepare(db, "SELECT 1 FROM refs WHERE patient = $1 AND type = $2 AND id = $3", &st) != HV_OK)
        return 0;
    hv_db_bind_text(st, 1, ev->patient, strlen(ev->patient));
    hv_db_bind_text(st, 2, type, strlen(type));
    hv_db_bind_text(st, 3, id, strlen(id));
    rc = hv_db_step(st);
    hv_db_done(st);
    return rc == HV_DB_ROW;
}

static int job_everything(hv_db_t *db, void *arg)
{
    every_t *ev = arg;
    hv__store_row_t row;
    int rc = hv__store_get(db, "Patient", ev->patient, 0, &row);
    if (rc == HV_ENOTFOUND)
        return HV_OK;
    if (rc != HV_OK)
        return rc;
    ev->patient_live = !row.deleted;
    /* Another patient's record answers 404, as a read of it does. */
    if (ev->patient_live && ev->check &&
        hv__authz_resource(ev->r->principal, HV_AUTH_READ, "Patient", ev->patient, NULL, row.text) != HV_OK)
        ev->patient_live = 0;
    hv__store_row_clear(&row);
    if (!ev->patient_live)
        return HV_OK;
    rc = scan_members(db, ev, 0, 1);
    if (rc == HV_OK)
        rc = scan_members(db, ev, ev->after, 0);
    for (size_t i = 0; rc == HV_OK && i < ev->nrefs; i++) {
        char type[HV__FHIR_TYPE_MAX];
        const char *slash = strchr(ev->refs[i], '/');
        size_t tl = (size_t)(slash - ev->refs[i]);
        if (seen(ev, ev->refs[i]))
            continue;
        if (ev->nseen < EVERYTHING_MAX_REFS)
            snprintf(ev->seen[ev->nseen++], sizeof(ev->seen[0]), "%s", ev->refs[i]);
        memcpy(type, ev->refs[i], tl);
        type[tl] = '\0';
        if (!type_wanted(ev, type) || is_member(db, ev, type, slash + 1))
            continue;
        rc = hv__store_get(db, type, slash + 1, 0, &row);
        if (rc == HV_ENOTFOUND) {
            rc = HV_OK;
            continue;
        }
        if (rc != HV_OK)
            break;
        if (!row.deleted && (ev->since_ms < 0 || (int64_t)row.last_ms >= ev->since_ms) &&
            (!ev->check ||
             hv__authz_resource(ev->r->principal, HV_AUTH_READ, row.type, row.id, NULL, row.text) == HV_OK))
            put_entry(ev, &row, "include");
        hv__store_row_clear(&row);
    }
    return rc;
}

static void every_free(every_t *ev)
{
    if (ev == NULL)
        return;
    for (size_t i = 0; ev->types != NULL && ev->types[i] != NULL; i++)
        hv_free(ev->types[i]);
    hv_free(ev->types);
    hv_free(ev->seen);
    hv_free(ev->refs);
    hv_buf_release(&ev->body);
    hv_free(ev);
}

static void done_everything(int status, void *arg)
{
    every_t *ev = arg;
    hv__rreq_t *r = ev->r;
    hv_buf_t out;
    hv_buf_init(&out, 0);
    if (status != HV_OK) {
        hv__rest_outcome(r, 500, "error", "exception", "the compartment could not be read: %s", hv_strerror(status));
    } else if (!ev->patient_live) {
        hv__rest_outcome(r, 404, "error", "not-found", "Patient/%s is not known", ev->patient);
    } else {
        const char *q = hv_http_req_query(r->req);
        char *self = hv_arena_sprintf(hv_http_req_arena(r->req), "%s/Patient/%s/$everything%s%s", ev->base,
                                      ev->patient, q[0] ? "?" : "", q);
        hv_buf_printf(&out, "{\"resourceType\":\"Bundle\",\"type\":\"searchset\",\"total\":%zu,\"link\":[{"
                            "\"relation\":\"self\",\"url\":",
                      ev->total);
        hv_buf_json_str(&out, self ? self : "", self ? strlen(self) : 0);
        if (ev->more) {
            /* The query as asked, without its _cursor, and the cursor after this page. */
            hv_buf_t next;
            hv_buf_init(&next, 16384);
            hv_buf_printf(&next, "%s/Patient/%s/$everything?", ev->base, ev->patient);
            for (const char *p = q; *p;) {
                size_t n = strcspn(p, "&");
                if (n > 0 && strncmp(p, "_cursor=", 8) != 0) {
                    hv_buf_append(&next, p, n);
                    hv_buf_putc(&next, '&');
                }
                p += n + (p[n] == '&');
            }
            hv_buf_printf(&next, "_cursor=%lld", (long long)ev->last_rid);
            hv_buf_puts(&out, "},{\"relation\":\"next\",\"url\":");
            hv_buf_json_str(&out, next.data ? next.data : "", next.len);
            hv_buf_release(&next);
        }
        hv_buf_puts(&out, "}],\"entry\":[");
        hv_buf_append(&out, ev->body.data ? ev->body.data : "", ev->body.len);
        if (hv_buf_puts(&out, "]}") == HV_OK)
            hv__rest_send_text(r, 200, out.data, out.len);
        else
            hv__rest_outcome(r, 500, "error", "exception", "out of memory");
    }
    hv_buf_release(&out);
    hv__rreq_free(r);
    every_free(ev);
}

static void everything(hv__rreq_t *r, const char *patient)
{
    hv__fhir_t *f = r->f;
    hv_http_req_t *req = r->req;
    const char *types = hv_http_req_query_param(req, "_type"), *since = hv_http_req_query_param(req, "_since");
    const char *count = hv_http_req_query_param(req, "_count"), *cursor = hv_http_req_query_param(req, "_cursor");
    const char *start = hv_http_req_query_param(req, "start"), *until = hv_http_req_query_param(req, "end");
    every_t *ev = hv_calloc(1, sizeof(*ev));
    if (ev == NULL) {
        hv__rest_outcome(r, 503, "error", "transient", "out of memory");
        goto fail;
    }
    ev->r = r;
    if (hv__authz_type(r, HV_AUTH_READ, "Patient") != HV_OK) {
        every_free(ev);
        hv__rreq_free(r);
        return;
    }
    /* Unrestricted tokens (auth off, admin, user/ or system/ *) skip the checks; others
     * have every member and include checked. */
    ev->check = hv__authz_restricted(r->principal, HV_AUTH_SEARCH, NULL) ||
                hv__authz_restricted(r->principal, HV_AUTH_READ, NULL);
    snprintf(ev->patient, sizeof(ev->patient), "%s", patient);
    ev->base = hv__rest_base(r);
    ev->max = f->max_bundle_entries;
    ev->since_ms = -1;
    hv_buf_init(&ev->body, 0);
    ev->seen = hv_calloc(EVERYTHING_MAX_REFS, sizeof(*ev->seen));
    ev->refs = hv_calloc(EVERYTHING_MAX_REFS, sizeof(*ev->refs));
    if (ev->seen == NULL || ev->refs == NULL) {
        hv__rest_outcome(r, 503, "error", "transient", "out of memory");
        goto fail;
    }
    if (start != NULL || until != NULL) {
        /* start and end are dates (patient-operation-everything.html): the first and
         * the last millisecond they cover; either may be left out. */
        int64_t lo, hi;
        ev->dates = 1;
        ev->start_ms = INT64_MIN / 2;
        ev->end_ms = INT64_MAX / 2;
        if ((start != NULL && hv__search_date_range(start, &ev->start_ms, &hi) != HV_OK) ||
            (until != NULL && hv__search_date_range(until, &lo, &ev->end_ms) != HV_OK)) {
            hv__rest_outcome(r, 400, "error", "invalid", "start and end must be dates (YYYY[-MM[-DD]])");
            goto fail;
        }
    }
    if (cursor != NULL) {
        char *end_c = NULL;
        long long n = strtoll(cursor, &end_c, 10);
        if (end_c == cursor || *end_c != '\0' || n < 0) {
            hv__rest_outcome(r, 400, "error", "invalid", "_cursor is not a cursor this server made");
            goto fail;
        }
        ev->after = n;
    }
    if (since != NULL && hv__fhir_parse_time(since, &ev->since_ms) != HV_OK) {
        hv__rest_outcome(r, 400, "error", "invalid", "_since must be an instant (FHIR R4 datatypes.html#instant)");
        goto fail;
    }
    if (count != NULL) {
        char *end = NULL;
        long long n = strtoll(count, &end, 10);
        if (end == count || *end != '\0' || n < 0) {
            hv__rest_outcome(r, 400, "error", "invalid", "_count must be a non-negative integer");
            goto fail;
        }
        if ((size_t)n < ev->max)
            ev->max = (size_t)n;
    }
    if (types != NULL) {
        size_t n = 1, k = 0;
        const char *p = types;
        for (const char *s = types; *s; s++)
            n += *s == ',';
        ev->types = hv_calloc(n + 1, sizeof(*ev->types));
        if (ev->types == NULL) {
            hv__rest_outcome(r, 503, "error", "transient", "out of memory");
            goto fail;
        }
        while (k < n) {
            const char *e = strchr(p, ',');
            size_t len = e != NULL ? (size_t)(e - p) : strlen(p);
            ev->types[k] = hv_strndup(p, len);
            if (ev->types[k] == NULL || hv_fhir_resource_type(ev->types[k]) == NULL) {
                hv__rest_outcome(r, 400, "error", "invalid", "_type lists an unknown resource type");
                goto fail;
            }
            k++;
            p = e != NULL ? e + 1 : p + len;
        }
    }
    if (hv_storage_submit(f->storage, job_everything, done_everything, ev) != HV_OK) {
        hv__rest_outcome(r, 503, "error", "transient", "the store is busy; retry later");
        goto fail;
    }
    return;
fail:
    every_free(ev);
    hv__rreq_free(r);
}

/* GET /fhir/:comp/:id/:ctype (and the Patient routes): compartment search or $everything. */
static void h_compartment(hv_http_req_t *req, void *ud)
{
    hv__fhir_t *f = ud;
    hv__rreq_t *r = hv__rreq_new(f, req);
    const char *id = hv_http_req_param(req, "id"), *type = hv_http_req_param(req, "ctype");
    const char *comp = hv_http_req_param(req, "comp");
    const hv__compartment_t *cd;
    if (r == NULL)
        return;
    cd = hv__compartment_find(comp != NULL ? comp : "Patient");
    if (cd == NULL) {
        hv__rest_outcome(r, 404, "error", "not-supported",
                         "%.64s is not a compartment (Patient, Encounter, Practitioner, RelatedPerson, Device)",
                         comp);
        goto fail;
    }
    if (!hv__fhir_id_valid(id)) {
        hv__rest_outcome(r, 400, "error", "invalid", "not a valid FHIR id");
        goto fail;
    }
    if (type == NULL) {
        everything(r, id);
        return;
    }
    if (hv_fhir_resource_type(type) == NULL) {
        hv__rest_outcome(r, 404, "error", "not-supported", "unknown resource type \"%.64s\"", type);
        goto fail;
    }
    compartment_search(r, cd, id, type);
    return;
fail:
    hv__rreq_free(r);
}

/* POST [type]/$validate: validation.html — 200 with the OperationOutcome, whatever it says. */
static void h_validate(hv_http_req_t *req, void *ud)
{
    hv__fhir_t *f = ud;
    hv__rreq_t *r = hv__rreq_new(f, req);
    struct json_object *res = NULL, *oo = NULL, *target;
    const char *type = hv_http_req_param(req, "type"), *rt;
    int errors = 0, rc;
    if (r == NULL)
        return;
    if (type == NULL)
        type = "Patient"; /* the route /fhir/Patient/:id/$validate */
    if (hv_fhir_resource_type(type) == NULL) {
        hv__rest_outcome(r, 404, "error", "not-supported", "unknown resource type \"%.64s\"", type);
        goto out;
    }
    res = hv__rest_body(r);
    if (res == NULL)
        goto out;
    target = res;
    rt = hv_json_get_str(res, "resourceType");
    if (rt != NULL && strcmp(rt, "Parameters") == 0 && strcmp(type, "Parameters") != 0) {
        struct json_object *params = NULL;
        target = NULL;
        if (json_object_object_get_ex(res, "parameter", &params))
            for (size_t i = 0; i < json_object_array_length(params); i++) {
                struct json_object *p = json_object_array_get_idx(params, i), *pr = NULL;
                const char *n = hv_json_get_str(p, "name");
                if (n != NULL && strcmp(n, "resource") == 0 && json_object_object_get_ex(p, "resource", &pr))
                    target = pr;
            }
        if (target == NULL) {
            hv__rest_outcome(r, 400, "error", "required", "the Parameters has no \"resource\" parameter");
            goto out;
        }
        rt = hv_json_get_str(target, "resourceType");
    }
    if (rt == NULL || strcmp(rt, type) != 0) {
        hv__rest_outcome(r, 400, "error", "invalid", "the resource is a %.64s, the URL names %s", rt ? rt : "(none)",
                         type);
        goto out;
    }
    if (f->validator == NULL) {
        f->validator = hv_fhir_validator_new();
        if (f->validator == NULL) {
            hv__rest_outcome(r, 503, "error", "transient", "out of memory");
            goto out;
        }
    }
    rc = hv_fhir_validate(f->validator, target, NULL, 0, &oo, &errors);
    if (rc != HV_OK) {
        hv__rest_outcome(r, 500, "error", "exception", "validation could not run: %s", hv_strerror(rc));
        goto out;
    }
    hv__rest_send_json(r, 200, oo);
out:
    json_object_put(res);
    hv__rreq_free(r);
}

int hv__rest_compartment_routes(hv__fhir_t *f, hv_router_t *r)
{
    /* The generic route is less specific than /fhir/:type/:id/_history (a literal
     * last segment wins), so history keeps its route for every type. */
    int rc = hv_router_add(r, HV_HTTP_GET, "/fhir/Patient/:id/:ctype", h_compartment, f);
    if (rc == HV_OK)
        rc = hv_router_add(r, HV_HTTP_GET, "/fhir/:comp/:id/:ctype", h_compartment, f);
    if (rc == HV_OK)
        rc = hv_router_add(r, HV_HTTP_GET, "/fhir/Patient/:id/$everything", h_compartment, f);
    if (rc == HV_OK)
        rc = hv_router_add(r, HV_HTTP_POST, "/fhir/:type/$validate", h_validate, f);
    if (rc == HV_OK)
        rc = hv_router_add(r, HV_HTTP_POST, "/fhir/:type/:id/$validate", h_validate, f);
    if (rc == HV_OK)
        rc = hv_router_add(r, HV_HTTP_POST, "/fhir/Patient/:id/$validate", h_validate, f);
    return rc;
}
