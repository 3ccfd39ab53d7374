/*
 * fhir_ops.c — FHIR R4 terminology operations over the loaded code systems
 * (FHIR R4 terminology-service.html; codesystem-operation-*.html,
 * valueset-operation-*.html, conceptmap-operation-translate.html):
 *
 *   GET|POST /fhir/CodeSystem/$lookup         system, code [, version]
 *   GET|POST /fhir/CodeSystem/$validate-code  url, code [, display]
 *   GET|POST /fhir/CodeSystem/$subsumes       system, codeA, codeB
 *   GET|POST /fhir/ValueSet/$validate-code    url, code, system [, display]  (or coding)
 *   GET|POST /fhir/ValueSet/$expand           url [, filter, count, offset]
 *   GET|POST /fhir/ConceptMap/$translate      url, code [, system]
 *
 * Parameters come from the query string or, for POST, from a Parameters resource
 * (valueString/valueCode/valueUri/valueInteger/valueCoding). Answers are Parameters
 * resources (ValueSet for $expand); errors are OperationOutcome with 400 or 404.
 *
 * Value sets: the implicit value sets of the loaded systems (FHIR R4
 * terminologies-systems.html and snomedct.html#implicit): "<system>?fhir_vs" (all
 * codes; LOINC also "http://loinc.org/vs"), "http://snomed.info/sct?fhir_vs=isa/<id>"
 * (the concept and its descendants; also for ICD-10-CM). ConceptMaps: the per-sender
 * maps of lab standardization, url "urn:holovitals:conceptmap:<sender>". The FHIR
 * specification's own ValueSets (after `terminology load fhir valuesets.json`): their
 * compose is evaluated by valueset.c (included and excluded value sets, concepts,
 * whole systems and filters: is-a, descendent-of, is-not-a, generalizes, =, regex, in,
 * not-in, exists), capped at 10,000 codes before the text filter and paging.
 */
#include "config.h"

#include <ctype.h>
#include <json-c/json.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "terminology/terminology_int.h"

#define MAX_EXPAND 1000
#define CONCEPTMAP_PREFIX "urn:holovitals:conceptmap:"

enum { OP_LOOKUP, OP_CS_VALIDATE, OP_SUBSUMES, OP_VS_VALIDATE, OP_EXPAND, OP_TRANSLATE };

typedef struct op_job {
    hv__term_t *t;
    hv_http_req_t *req;
    hv_arena_t *arena;
    int op;
    const char *system, *code, *display, *url, *code_a, *code_b, *filter;
    long count, offset;
    int status;               /* HTTP status of the answer */
    struct json_object *out;  /* Parameters, ValueSet or OperationOutcome */
} op_job_t;

static const struct {
    const char *uri, *name;
} systems[] = {
    {HV_TERMINOLOGY_LOINC, "LOINC"},
    {HV_TERMINOLOGY_SNOMED, "SNOMED CT"},
    {HV_TERMINOLOGY_ICD10CM, "ICD-10-CM"},
    {HV_TERMINOLOGY_CPT, "CPT"},
};

static const char *system_name(const char *uri) {
    size_t i;
    for (i = 0; uri != NULL && i < HV_ARRAY_LEN(systems); i++)
        if (strcmp(uri, systems[i].uri) == 0) return systems[i].name;
    return NULL;
}

static struct json_object *outcome(const char *code, const char *fmt, ...) HV_PRINTF(2, 3);

static struct json_object *outcome(const char *code, const char *fmt, ...) {
    struct json_object *oo = json_object_new_object(), *issues = json_object_new_array(),
                       *issue = json_object_new_object(), *details = json_object_new_object();
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    hv_json_set_str(oo, "resourceType", "OperationOutcome");
    hv_json_set_str(issue, "severity", "error");
    hv_json_set_str(issue, "code", code);
    hv_json_set_str(details, "text", msg);
    hv_json_set(issue, "details", details);
    json_object_array_add(issues, issue);
    hv_json_set(oo, "issue", issues);
    return oo;
}

static struct json_object *params_new(void) {
    struct json_object *p = json_object_new_object();
    hv_json_set_str(p, "resourceType", "Parameters");
    hv_json_set(p, "parameter", json_object_new_array());
    return p;
}

/* Adds {"name": name, "<type>": value} to a Parameters resource (value is consumed). */
static void param_add(struct json_object *p, const char *name, const char *type,
                      struct json_object *value) {
    struct json_object *arr, *e = json_object_new_object();
    json_object_object_get_ex(p, "parameter", &arr);
    hv_json_set_str(e, "name", name);
    hv_json_set(e, type, value);
    json_object_array_add(arr, e);
}

static struct json_object *coding(const char *system, const char *code, const char *display) {
    struct json_object *c = json_object_new_object();
    hv_json_set_str(c, "system", system);
    hv_json_set_str(c, "code", code);
    if (display != NULL) hv_json_set_str(c, "display", display);
    return c;
}

/* A property part of $lookup: {"name":"property","part":[{code},{value}]}. */
static void property_add(struct json_object *p, const char *code, const char *vtype,
                         struct json_object *value) {
    struct json_object *arr, *e = json_object_new_object(), *parts = json_object_new_array(),
                             *c = json_object_new_object(), *v = json_object_new_object();
    json_object_object_get_ex(p, "parameter", &arr);
    hv_json_set_str(e, "name", "property");
    hv_json_set_str(c, "name", "code");
    hv_json_set_str(c, "valueCode", code);
    hv_json_set_str(v, "name", "value");
    hv_json_set(v, vtype, value);
    json_object_array_add(parts, c);
    json_object_array_add(parts, v);
    hv_json_set(e, "part", parts);
    json_object_array_add(arr, e);
}

/* Answers an expansion failure as an OperationOutcome. */
static void expand_failed(op_job_t *j, int rc) {
    j->status = rc == HV_ENOTFOUND ? 404
                : rc == HV_ETOOBIG || rc == HV_ENOTSUP || rc == HV_EINVAL ? 422
                                                                         : 500;
    j->out = rc == HV_ENOTFOUND ? outcome("not-found", "value set '%.200s' is not known", j->url)
             : rc == HV_ETOOBIG ? outcome("too-costly", "the expansion has more than %d codes "
                                                        "(use an implicit value set with a filter)",
                                          HV__VS_MAX)
             : rc == HV_ENOTSUP ? outcome("not-supported", "the value set uses a filter operator "
                                                           "that is not evaluated (known: is-a, "
                                                           "descendent-of, is-not-a, generalizes, =, "
                                                           "regex, in, not-in, exists)")
             : rc == HV_EINVAL  ? outcome("invalid", "the value set has a malformed filter (it needs "
                                                     "property, op and value; regex must compile)")
                                : outcome("exception", "the terminology store failed");
}

static int contains_ci(const char *hay, const char *needle) {
    size_t n = strlen(needle), i;
    if (hay == NULL) return 0;
    for (; *hay != '\0'; hay++) {
        for (i = 0; i < n && hay[i] != '\0' &&
                    tolower((unsigned char)hay[i]) == tolower((unsigned char)needle[i]);
             i++)
            ;
        if (i == n) return 1;
    }
    return n == 0;
}

/* LOINC's property codes in FHIR (loinc.org/fhir: the LOINC table column names). */
static const char *loinc_property(const char *key) {
    static const struct {
        const char *key, *code;
    } map[] = {
        {"component", "COMPONENT"}, {"property", "PROPERTY"},   {"timeAspect", "TIME_ASPCT"},
        {"system", "SYSTEM"},       {"scale", "SCALE_TYP"},      {"method", "METHOD_TYP"},
        {"class", "CLASS"},         {"status", "STATUS"},        {"shortName", "SHORTNAME"},
        {"exampleUcumUnits", "EXAMPLE_UCUM_UNITS"},
    };
    size_t i;
    for (i = 0; i < HV_ARRAY_LEN(map); i++)
        if (strcmp(map[i].key, key) == 0) return map[i].code;
    return key;
}

static void run_lookup(hv_db_t *db, op_job_t *j) {
    hv_terminology_concept_t c;
    const char *version = NULL, **parents = NULL;
    size_t np = 0, i;
    struct json_object *p;
    if (j->system == NULL || j->code == NULL) {
        j->status = 400;
        j->out = outcome("required", "$lookup needs system and code (or coding)");
        return;
    }
    if (hv_terminology_lookup(db, j->system, j->code, j->arena, &c) != HV_OK) {
        j->status = 404;
        j->out = outcome("not-found", "%s has no code '%.64s' (or the code system is not loaded)",
                         j->system, j->code);
        return;
    }
    (void)hv_terminology_version(db, j->system, j->arena, &version, NULL);
    p = params_new();
    param_add(p, "name", "valueString",
              json_object_new_string(system_name(j->system) != NULL ? system_name(j->system)
                                                                     : j->system));
    if (version != NULL) param_add(p, "version", "valueString", json_object_new_string(version));
    param_add(p, "display", "valueString", json_object_new_string(c.display));
    param_add(p, "abstract", "valueBoolean", json_object_new_boolean(0));
    property_add(p, "inactive", "valueBoolean", json_object_new_boolean(!c.active));
    if (c.props != NULL) {
        struct json_object *props = json_tokener_parse(c.props);
        if (props != NULL && json_object_is_type(props, json_type_object)) {
            json_object_object_foreach(props, k, v) {
                if (strcmp(j->system, HV_TERMINOLOGY_LOINC) == 0) k = (char *)loinc_property(k);
                if (json_object_is_type(v, json_type_boolean))
                    property_add(p, k, "valueBoolean", json_object_get(v));
                else
                    property_add(p, k, "valueString", json_object_new_string(json_object_get_string(v)));
            }
        }
        json_object_put(props);
    }
    if (hv__store_parents(db, j->system, j->code, j->arena, &parents, &np) == HV_OK)
        for (i = 0; i < np; i++) property_add(p, "parent", "valueCode", json_object_new_string(parents[i]));
    j->status = 200;
    j->out = p;
}

/* $validate-code for a code system or an implicit value set. */
static void run_validate(hv_db_t *db, op_job_t *j, int valueset) {
    hv_terminology_concept_t c;
    const char *system = j->system, *isa = NULL;
    struct json_object *p;
    int ok, in = 1;
    char msg[300] = "";
    if (valueset && j->url != NULL && !hv__vs_implicit(j->arena, j->url, &system, &isa)) {
        hv__vs_t acc = {NULL, 0};
        size_t i;
        int rc = hv__vs_expand(db, j->url, j->arena, &acc), found = 0;
        if (rc != HV_OK) {
            expand_failed(j, rc);
            return;
        }
        for (i = 0; j->code != NULL && i < acc.n && !found; i++)
            if (strcmp(acc.items[i].code, j->code) == 0 &&
                (j->system == NULL || strcmp(acc.items[i].system, j->system) == 0))
                found = 1;
        p = params_new();
        param_add(p, "result", "valueBoolean", json_object_new_boolean(found));
        if (found && acc.items[i - 1].display != NULL)
            param_add(p, "display", "valueString", json_object_new_string(acc.items[i - 1].display));
        if (!found)
            param_add(p, "message", "valueString",
                      json_object_new_string("the code is not in the value set"));
        j->status = 200;
        j->out = p;
        return;
    }
    if (valueset) {
        if (j->url == NULL || !hv__vs_implicit(j->arena, j->url, &system, &isa)) {
            j->status = 404;
            j->out = outcome("not-found", "value set '%.200s' is not known",
                             j->url != NULL ? j->url : "");
            return;
        }
        if (j->system != NULL && strcmp(j->system, system) != 0) in = 0;
    } else if (system == NULL) {
        system = j->url;
    }
    if (system == NULL || j->code == NULL) {
        j->status = 400;
        j->out = outcome("required", "$validate-code needs a code and a code system (url or system)");
        return;
    }
    ok = in && hv_terminology_lookup(db, system, j->code, j->arena, &c) == HV_OK;
    if (!in) snprintf(msg, sizeof msg, "the system %.100s is not that of the value set", j->system);
    else if (!ok) snprintf(msg, sizeof msg, "unknown code '%.64s' in %.100s", j->code, system);
    if (ok && isa != NULL && hv_terminology_subsumes(db, system, isa, j->code) != 1) {
        ok = 0;
        snprintf(msg, sizeof msg, "'%.64s' is not in the value set (not a %.64s)", j->code, isa);
    }
    if (ok && j->display != NULL && strcmp(j->display, c.display) != 0) {
        ok = 0;
        snprintf(msg, sizeof msg, "the display '%.100s' is not the display of %.64s", j->display,
                 j->code);
    }
    p = params_new();
    param_add(p, "result", "valueBoolean", json_object_new_boolean(ok));
    if (msg[0] != '\0') param_add(p, "message", "valueString", json_object_new_string(msg));
    if (in && (ok || j->display != NULL) && c.display != NULL && msg[0] != 'u')
        param_add(p, "display", "valueString", json_object_new_string(c.display));
    j->status = 200;
    j->out = p;
}

static void run_subsumes(hv_db_t *db, op_job_t *j) {
    hv_terminology_concept_t c;
    const char *outcome_code;
    struct json_object *p;
    int ab, ba;
    if (j->system == NULL || j->code_a == NULL || j->code_b == NULL) {
        j->status = 400;
        j->out = outcome("required", "$subsumes needs system, codeA and codeB");
        return;
    }
    if (hv_terminology_lookup(db, j->system, j->code_a, j->arena, &c) != HV_OK ||
        hv_terminology_lookup(db, j->system, j->code_b, j->arena, &c) != HV_OK) {
        j->status = 404;
        j->out = outcome("not-found", "codeA or codeB is not in %s", j->system);
        return;
    }
    ab = hv_terminology_subsumes(db, j->system, j->code_a, j->code_b);
    ba = hv_terminology_subsumes(db, j->system, j->code_b, j->code_a);
    if (ab < 0 || ba < 0) {
        j->status = 500;
        j->out = outcome("exception", "the terminology store failed");
        return;
    }
    outcome_code = strcmp(j->code_a, j->code_b) == 0 ? "equivalent"
                   : ab                              ? "subsumes"
                   : ba                              ? "subsumed-by"
                                                     : "not-subsumed";
    p = params_new();
    param_add(p, "outcome", "valueCode", json_object_new_string(outcome_code));
    j->status = 200;
    j->out = p;
}

static void run_expand(hv_db_t *db, op_job_t *j) {
    const char *system = NULL, *isa = NULL;
    hv_terminology_concept_t *res = NULL;
    size_t n = 0, i;
    long count = j->count < 0 ? 100 : j->count;
    struct json_object *vs, *exp, *contains;
    char when[32];
    int rc;
    if (count > MAX_EXPAND) count = MAX_EXPAND;
    if (j->url != NULL && !hv__vs_implicit(j->arena, j->url, &system, &isa)) {
        /* A stored ValueSet: evaluate its compose, then filter and page in memory. */
        hv__vs_t acc = {NULL, 0};
        size_t total = 0;
        rc = hv__vs_expand(db, j->url, j->arena, &acc);
        if (rc != HV_OK) {
            expand_failed(j, rc);
            return;
        }
        vs = json_object_new_object();
        exp = json_object_new_object();
        contains = json_object_new_array();
        for (i = 0; i < acc.n; i++) {
            if (j->filter != NULL && !contains_ci(acc.items[i].display, j->filter) &&
                !contains_ci(acc.items[i].code, j->filter))
                continue;
            if (total >= (size_t)j->offset && total < (size_t)j->offset + (size_t)count)
                json_object_array_add(contains,
                                      coding(acc.items[i].system, acc.items[i].code, acc.items[i].display));
            total++;
        }
        hv_json_set_str(vs, "resourceType", "ValueSet");
        hv_json_set_str(vs, "url", j->url);
        hv_json_set_str(vs, "status", "active");
        hv_time_rfc3339(hv_now_ms(), when, sizeof when);
        hv_json_set_str(exp, "timestamp", when);
        hv_json_set_int(exp, "total", (int64_t)total);
        hv_json_set_int(exp, "offset", j->offset);
        hv_json_set(exp, "contains", contains);
        hv_json_set(vs, "expansion", exp);
        j->status = 200;
        j->out = vs;
        return;
    }
    if (j->url == NULL) {
        j->status = 400;
        j->out = outcome("required", "$expand needs url");
        return;
    }
    if (j->filter != NULL && j->filter[0] != '\0') {
        rc = hv_terminology_search(db, system, j->filter, (size_t)count, (size_t)j->offset,
                                   j->arena, &res, &n);
        if (rc == HV_EINVAL) {
            j->status = 400;
            j->out = outcome("invalid", "the filter has no word");
            return;
        }
        /* An is-a value set keeps only the matches below its root. */
        for (i = 0; rc == HV_OK && isa != NULL && i < n;)
            if (hv_terminology_subsumes(db, system, isa, res[i].code) != 1) res[i] = res[--n];
            else i++;
    } else {
        rc = hv__store_list(db, system, isa, (size_t)count, (size_t)j->offset, j->arena, &res, &n);
    }
    if (rc != HV_OK) {
        j->status = 500;
        j->out = outcome("exception", "the terminology store failed");
        return;
    }
    vs = json_object_new_object();
    exp = json_object_new_object();
    contains = json_object_new_array();
    hv_json_set_str(vs, "resourceType", "ValueSet");
    hv_json_set_str(vs, "url", j->url);
    hv_json_set_str(vs, "status", "active");
    hv_time_rfc3339(hv_now_ms(), when, sizeof when);
    hv_json_set_str(exp, "timestamp", when);
    hv_json_set_int(exp, "offset", j->offset);
    for (i = 0; i < n; i++) {
        struct json_object *e = coding(system, res[i].code, res[i].display);
        if (!res[i].active) hv_json_set(e, "inactive", json_object_new_boolean(1));
        json_object_array_add(contains, e);
    }
    hv_json_set(exp, "contains", contains);
    hv_json_set(vs, "expansion", exp);
    j->status = 200;
    j->out = vs;
}

static void run_translate(hv_db_t *db, op_job_t *j) {
    hv_db_stmt_t *st = NULL;
    const char *sender;
    struct json_object *p;
    char loinc[32] = "";
    int rc;
    if (j->url == NULL || strncmp(j->url, CONCEPTMAP_PREFIX, strlen(CONCEPTMAP_PREFIX)) != 0 ||
        j->code == NULL) {
        j->status = 400;
        j->out = outcome("required", "$translate needs code and url " CONCEPTMAP_PREFIX "<sender>");
        return;
    }
    sender = j->url + strlen(CONCEPTMAP_PREFIX);
    rc = hv_db_prepare(db, "SELECT loinc FROM local_code_map WHERE sender = $1 AND local_code = $2",
                       &st);
    if (rc == HV_OK) rc = hv_db_bind_text(st, 1, sender, strlen(sender));
    if (rc == HV_OK) rc = hv_db_bind_text(st, 2, j->code, strlen(j->code));
    if (rc == HV_OK) rc = hv_db_step(st);
    if (rc == HV_DB_ROW) {
        size_t n;
        const char *s = hv_db_column_text(st, 0, &n);
        snprintf(loinc, sizeof loinc, "%.*s", (int)n, s != NULL ? s : "");
        rc = HV_OK;
    }
    if (st != NULL) hv_db_done(st);
    if (rc != HV_OK) {
        j->status = 500;
        j->out = outcome("exception", "the terminology store failed");
        return;
    }
    p = params_new();
    param_add(p, "result", "valueBoolean", json_object_new_boolean(loinc[0] != '\0'));
    if (loinc[0] != '\0') {
        hv_terminology_concept_t c;
        struct json_object *m = json_object_new_object(), *parts = json_object_new_array(),
                           *eq = json_object_new_object(), *cc = json_object_new_object();
        int known = hv_terminology_lookup(db, HV_TERMINOLOGY_LOINC, loinc, j->arena, &c) == HV_OK;
        hv_json_set_str(eq, "name", "equivalence");
        hv_json_set_str(eq, "valueCode", "equivalent");
        hv_json_set_str(cc, "name", "concept");
        hv_json_set(cc, "valueCoding", coding(HV_TERMINOLOGY_LOINC, loinc, known ? c.display : NULL));
        json_object_array_add(parts, eq);
        json_object_array_add(parts, cc);
        hv_json_set_str(m, "name", "match");
        hv_json_set(m, "part", parts);
        {
            struct json_object *arr;
            json_object_object_get_ex(p, "parameter", &arr);
            json_object_array_add(arr, m);
        }
    } else {
        param_add(p, "message", "valueString",
                  json_object_new_string("no mapping for this code in the sender's ConceptMap"));
    }
    j->status = 200;
    j->out = p;
}

static int job_run(hv_db_t *db, void *arg) {
    op_job_t *j = arg;
    switch (j->op) {
    case OP_LOOKUP: run_lookup(db, j); break;
    case OP_CS_VALIDATE: run_validate(db, j, 0); break;
    case OP_VS_VALIDATE: run_validate(db, j, 1); break;
    case OP_SUBSUMES: run_subsumes(db, j); break;
    case OP_EXPAND: run_expand(db, j); break;
    case OP_TRANSLATE: run_translate(db, j); break;
    }
    return HV_OK;
}

static void free_job(op_job_t *j) {
    if (j == NULL) return;
    json_object_put(j->out);
    hv_arena_free(j->arena);
    hv_free(j);
}

static void job_done(int status, void *arg) {
    op_job_t *j = arg;
    struct json_object *o = j->out;
    int http = j->status;
    j->out = NULL;
    if (status != HV_OK || o == NULL) {
        json_object_put(o);
        o = outcome("exception", "the terminology store failed");
        http = 500;
    }
    hv_http_respond_json(j->req, http, o);
    free_job(j);
}

/* A parameter from a POSTed Parameters resource (as text), or NULL. */
static const char *body_param(op_job_t *j, struct json_object *params, const char *name,
                              struct json_object **coding_out) {
    struct json_object *arr;
    size_t i;
    static const char *const types[] = {"valueString", "valueCode", "valueUri", "valueCanonical",
                                        "valueInteger", "valueBoolean"};
    if (params == NULL || !json_object_object_get_ex(params, "parameter", &arr) ||
        !json_object_is_type(arr, json_type_array))
        return NULL;
    for (i = 0; i < json_object_array_length(arr); i++) {
        struct json_object *e = json_object_array_get_idx(arr, i), *v;
        const char *n = hv_json_get_str(e, "name");
        size_t t;
        if (n == NULL || strcmp(n, name) != 0) continue;
        if (coding_out != NULL && json_object_object_get_ex(e, "valueCoding", &v)) {
            *coding_out = v;
            return NULL;
        }
        for (t = 0; t < HV_ARRAY_LEN(types); t++)
            if (json_object_object_get_ex(e, types[t], &v))
                return hv_arena_strdup(j->arena, json_object_get_string(v));
    }
    return NULL;
}

static const char *get_param(op_job_t *j, struct json_object *params, const char *name) {
    const char *q = hv_http_req_query_param(j->req, name);
    if (q != NULL) return hv_arena_strdup(j->arena, q);
    return body_param(j, params, name, NULL);
}

static void start(hv_http_req_t *req, hv__term_t *t, int op) {
    op_job_t *j = hv_calloc(1, sizeof *j);
    struct json_object *params = NULL, *cod = NULL;
    const char *s;
    int rc;
    if (j == NULL || (j->arena = hv_arena_new(0)) == NULL) {
        hv_free(j);
        hv_http_respond_error(req, 500, "no_memory", "out of memory");
        return;
    }
    j->t = t;
    j->req = req;
    j->op = op;
    if (hv_http_req_method(req) == HV_HTTP_POST) {
        params = hv__json_body(req);
        if (params == NULL) {
            free_job(j);
            return;
        }
        if (hv_json_get_str(params, "resourceType") == NULL ||
            strcmp(hv_json_get_str(params, "resourceType"), "Parameters") != 0) {
            json_object_put(params);
            free_job(j);
            hv_http_respond_json(req, 400, outcome("invalid", "the body must be a Parameters resource"));
            return;
        }
    }
    j->system = get_param(j, params, "system");
    j->code = get_param(j, params, "code");
    j->display = get_param(j, params, "display");
    j->url = get_param(j, params, "url");
    j->code_a = get_param(j, params, "codeA");
    j->code_b = get_param(j, params, "codeB");
    j->filter = get_param(j, params, "filter");
    s = get_param(j, params, "count");
    j->count = s != NULL ? strtol(s, NULL, 10) : -1;
    s = get_param(j, params, "offset");
    j->offset = s != NULL ? strtol(s, NULL, 10) : 0;
    if (j->offset < 0) j->offset = 0;
    (void)body_param(j, params, "coding", &cod);
    if (cod != NULL) {
        if (j->system == NULL && hv_json_get_str(cod, "system") != NULL)
            j->system = hv_arena_strdup(j->arena, hv_json_get_str(cod, "system"));
        if (j->code == NULL && hv_json_get_str(cod, "code") != NULL)
            j->code = hv_arena_strdup(j->arena, hv_json_get_str(cod, "code"));
    }
    json_object_put(params);
    rc = hv_storage_submit(t->storage, job_run, job_done, j);
    if (rc != HV_OK) {
        free_job(j);
        if (rc == HV_EBUSY) hv_http_header_add(req, "Retry-After", "1");
        hv_http_respond_json(req, 503, outcome("transient", "the terminology store is busy or closing"));
    }
}

static void h_lookup(hv_http_req_t *req, void *ud) { start(req, ud, OP_LOOKUP); }
static void h_cs_validate(hv_http_req_t *req, void *ud) { start(req, ud, OP_CS_VALIDATE); }
static void h_subsumes(hv_http_req_t *req, void *ud) { start(req, ud, OP_SUBSUMES); }
static void h_vs_validate(hv_http_req_t *req, void *ud) { start(req, ud, OP_VS_VALIDATE); }
static void h_expand(hv_http_req_t *req, void *ud) { start(req, ud, OP_EXPAND); }
static void h_translate(hv_http_req_t *req, void *ud) { start(req, ud, OP_TRANSLATE); }

int hv__fhir_ops_register(hv__term_t *t) {
    hv_router_t *r = hv_engine_router(t->e);
    unsigned m = HV_HTTP_GET | HV_HTTP_POST;
    int rc = hv_router_add(r, m, "/fhir/CodeSystem/$lookup", h_lookup, t);
    if (rc == HV_OK) rc = hv_router_add(r, m, "/fhir/CodeSystem/$validate-code", h_cs_validate, t);
    if (rc == HV_OK) rc = hv_router_add(r, m, "/fhir/CodeSystem/$subsumes", h_subsumes, t);
    if (rc == HV_OK) rc = hv_router_add(r, m, "/fhir/ValueSet/$validate-code", h_vs_validate, t);
    if (rc == HV_OK) rc = hv_router_add(r, m, "/fhir/ValueSet/$expand", h_expand, t);
    if (rc == HV_OK) rc = hv_router_add(r, m, "/fhir/ConceptMap/$translate", h_translate, t);
    return rc;
}
