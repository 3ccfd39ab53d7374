/*
 * rest_authz.c — SMART on FHIR scope enforcement for the FHIR REST API (SMART App
 * Launch 2.0 scopes-and-launch-context.html; FHIR R4 compartmentdefinition-patient.html).
 *
 * The decisions are engine/auth's (hv_auth_allow, hv_auth_allow_type,
 * hv_auth_patient_ids, hv_auth_allow_all); this file tells them what a stored or
 * submitted resource is: its type, whether it is in the token's patient's
 * compartment, and its categories. Every interaction family calls it:
 *
 *   where                               check                               denied
 *   handler, before the interaction     hv__authz_type (type-level)         403 OperationOutcome
 *   hv__fop_run (fhir/store_ops.c)      hv__authz_resource on the resource  read/vread 404, writes 403
 *                                       read, the current version and the
 *                                       version about to be written
 *   search planner                      "in the compartment of" clause       (rows filtered in SQL)
 *   search, history, compartment,       hv__authz_resource on every row     row left out
 *   $everything, export, /patients
 *
 * Compartment membership is the store's (fhir/store.c, refs): a resource is in
 * Patient/P's compartment when it references "Patient/P" outside contained resources;
 * a Patient is in its own compartment only (a Patient.link to another patient does
 * not open that patient's record). A read denied for compartment answers 404 exactly
 * as an unknown id does, so that a token cannot learn which ids other patients' data
 * has. Unrestricted principals (auth off, admin, user/ or system/ scopes without a
 * category filter) skip the inspection: hv_auth_allow_all answers before any JSON is
 * parsed.
 */
#include "config.h"

#include <json-c/json.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "fhir/rest_int.h"

#define AUTHZ_MAX_CATEGORIES 16 /* categories of one resource the check looks at */
#define AUTHZ_MAX_DEPTH 64      /* nesting the reference walk follows */
#define AUTHZ_CATEGORY_MAX 320  /* "system|code" */

/* True when o references Patient/pid outside contained resources (as fhir/store.c indexes). */
static int refers_to(struct json_object *o, const char *pid, size_t plen, int depth)
{
    if (depth > AUTHZ_MAX_DEPTH)
        return 0;
    if (json_object_is_type(o, json_type_array)) {
        size_t n = json_object_array_length(o);
        for (size_t i = 0; i < n; i++)
            if (refers_to(json_object_array_get_idx(o, i), pid, plen, depth + 1))
                return 1;
        return 0;
    }
    if (!json_object_is_type(o, json_type_object))
        return 0;
    json_object_object_foreach(o, key, val)
    {
        if (strcmp(key, "reference") == 0 && json_object_is_type(val, json_type_string)) {
            const char *ref = json_object_get_string(val);
            if (strncmp(ref, "Patient/", 8) == 0 && strncmp(ref + 8, pid, plen) == 0 && ref[8 + plen] == '\0')
                return 1;
        } else if (key[0] != '_' && strcmp(key, "contained") != 0 &&
                   (json_object_is_type(val, json_type_object) || json_object_is_type(val, json_type_array))) {
            if (refers_to(val, pid, plen, depth + 1))
                return 1;
        }
    }
    return 0;
}

/* Adds the codings of one CodeableConcept as "system|code" (or "|code" without a system). */
static void add_codings(struct json_object *cc, char (*out)[AUTHZ_CATEGORY_MAX], size_t *n)
{
    struct json_object *codings = NULL;
    if (!json_object_object_get_ex(cc, "coding", &codings) || !json_object_is_type(codings, json_type_array))
        return;
    for (size_t i = 0; i < json_object_array_length(codings) && *n < AUTHZ_MAX_CATEGORIES; i++) {
        struct json_object *c = json_object_array_get_idx(codings, i);
        const char *sys = hv_json_get_str(c, "system"), *code = hv_json_get_str(c, "code");
        if (code == NULL)
            continue;
        snprintf(out[(*n)++], AUTHZ_CATEGORY_MAX, "%s|%s", sys != NULL ? sys : "", code);
    }
}

/* The resource's category codings (Resource.category, one CodeableConcept or a list). */
static size_t categories(struct json_object *res, char (*out)[AUTHZ_CATEGORY_MAX])
{
    struct json_object *cat = NULL;
    size_t n = 0;
    if (!json_object_object_get_ex(res, "category", &cat))
        return 0;
    if (json_object_is_type(cat, json_type_array)) {
        for (size_t i = 0; i < json_object_array_length(cat); i++)
            add_codings(json_object_array_get_idx(cat, i), out, &n);
    } else {
        add_codings(cat, out, &n);
    }
    return n;
}

int hv__authz_resource(const hv_auth_principal_t *p, int interaction, const char *type, const char *id,
                       struct json_object *res, const char *text)
{
    struct json_object *own = NULL;
    char cats[AUTHZ_MAX_CATEGORIES][AUTHZ_CATEGORY_MAX];
    const char *catp[AUTHZ_MAX_CATEGORIES];
    hv_auth_target_t t;
    size_t ncat, plen = p != NULL ? strlen(p->patient) : 0;
    int rc;
    if (hv_auth_allow_all(p, interaction, type))
        return HV_OK;
    if (res == NULL) {
        own = text != NULL ? json_tokener_parse(text) : NULL;
        if (own == NULL)
            return HV_EPERM; /* what cannot be inspected is not granted */
        res = own;
    }
    memset(&t, 0, sizeof(t));
    t.type = type;
    if (plen > 0) {
        if (strcmp(type, "Patient") == 0) {
            const char *rid = id != NULL && id[0] != '\0' ? id : hv_json_get_str(res, "id");
            t.patient = rid != NULL && strcmp(rid, p->patient) == 0 ? p->patient : NULL;
        } else {
            t.patient = refers_to(res, p->patient, plen, 0) ? p->patient : NULL;
        }
    }
    ncat = categories(res, cats);
    for (size_t i = 0; i < ncat; i++)
        catp[i] = cats[i];
    t.categories = catp;
    t.ncategories = ncat;
    rc = hv_auth_allow(p, interaction, &t);
    json_object_put(own);
    return rc == HV_OK ? HV_OK : HV_EPERM;
}

int hv__authz_type(hv__rreq_t *r, int interaction, const char *type)
{
    static const struct {
        int bit;
        const char *name;
    } names[] = {{HV_AUTH_CREATE, "create"}, {HV_AUTH_READ, "read"},     {HV_AUTH_UPDATE, "update"},
                 {HV_AUTH_DELETE, "delete"}, {HV_AUTH_SEARCH, "search"}};
    const char *what = "use";
    if (hv_auth_allow_type(r->principal, interaction, type) == HV_OK)
        return HV_OK;
    for (size_t i = 0; i < HV_ARRAY_LEN(names); i++)
        if (names[i].bit == interaction)
            what = names[i].name;
    /* SMART App Launch: a request outside the token's scopes is 403; the answer names
     * the interaction and the type, never another patient's data. */
    hv__rest_outcome(r, 403, "error", "forbidden", "the access token's scopes do not allow %s on %s", what,
                     type != NULL ? type : "all resource types");
    return HV_EPERM;
}

int hv__authz_compartment(const hv_auth_principal_t *p, int interaction, const char *type, const char *patient)
{
    const char *pid = NULL;
    int rc = hv_auth_patient_ids(p, interaction, type, &pid);
    if (rc == 0)
        return HV_OK;
    if (rc == 1 && pid != NULL && strcmp(pid, patient) == 0)
        return HV_OK;
    return HV_EPERM;
}

int hv__authz_restricted(const hv_auth_principal_t *p, int interaction, const char *type)
{
    return !hv_auth_allow_all(p, interaction, type);
}

/* ---- the SMART patient picker (hv_auth_set_patient_provider) ----
 *
 * The auth module asks for patients to list once a user has signed in to an app
 * asking for launch/patient. The answer is a walk of the live Patients on the store's
 * storage thread (oldest first, at most `max`, those whose name or id contains the
 * search text, case-insensitively), displayed as "Given Family (id)". */

#define PICK_MAX 100

typedef struct pick {
    hv_auth_patient_list_done_cb done;
    void *done_ud;
    char search[128];
    size_t max, n;
    char ids[PICK_MAX][HV_AUTH_MAX_ID];
    char names[PICK_MAX][128];
} pick_t;

/* "Given Family" of a Patient's first name (HumanName.text when there is one). */
static void display_name(struct json_object *pat, char *out, size_t cap)
{
    struct json_object *names = NULL, *n0, *given = NULL;
    const char *text, *family;
    size_t len = 0;
    out[0] = '\0';
    if (!json_object_object_get_ex(pat, "name", &names) || !json_object_is_type(names, json_type_array) ||
        json_object_array_length(names) == 0)
        return;
    n0 = json_object_array_get_idx(names, 0);
    text = hv_json_get_str(n0, "text");
    if (text != NULL) {
        snprintf(out, cap, "%s", text);
        return;
    }
    if (json_object_object_get_ex(n0, "given", &given) && json_object_is_type(given, json_type_array))
        for (size_t i = 0; i < json_object_array_length(given) && len + 1 < cap; i++)
            len += (size_t)snprintf(out + len, cap - len, "%s%s", len ? " " : "",
                                    json_object_get_string(json_object_array_get_idx(given, i)));
    family = hv_json_get_str(n0, "family");
    if (family != NULL && len + 1 < cap)
        snprintf(out + len, cap - len, "%s%s", len ? " " : "", family);
}

static int contains_ci(const char *hay, const char *needle)
{
    size_t n = strlen(needle);
    if (n == 0)
        return 1;
    for (; *hay != '\0'; hay++)
        if (strncasecmp(hay, needle, n) == 0)
            return 1;
    return 0;
}

static int pick_row(void *ud, const hv__store_row_t *row)
{
    pick_t *p = ud;
    struct json_object *pat;
    char name[128];
    if (p->n >= p->max)
        return HV_ETOOBIG; /* enough: stops the walk */
    pat = json_tokener_parse(row->text);
    if (pat == NULL)
        return HV_OK;
    display_name(pat, name, sizeof(name));
    json_object_put(pat);
    if (!contains_ci(name, p->search) && !contains_ci(row->id, p->search))
        return HV_OK;
    snprintf(p->ids[p->n], HV_AUTH_MAX_ID, "%s", row->id);
    snprintf(p->names[p->n], sizeof(p->names[p->n]), "%s (%s)", name[0] ? name : "unnamed", row->id);
    p->n++;
    return HV_OK;
}

static int job_pick(hv_db_t *db, void *arg)
{
    int rc = hv__store_each_current(db, "Patient", pick_row, arg);
    return rc == HV_ETOOBIG ? HV_OK : rc;
}

static void done_pick(int status, void *arg)
{
    pick_t *p = arg;
    p->done(p->done_ud, status, status == HV_OK ? p->n : 0, (const char(*)[HV_AUTH_MAX_ID])p->ids,
            (const char(*)[128])p->names);
    hv_free(p);
}

static int patient_list(void *ud, const char *search, size_t max, hv_auth_patient_list_done_cb done, void *done_ud)
{
    hv__fhir_t *f = ud;
    pick_t *p = hv_calloc(1, sizeof(*p));
    int rc;
    if (p == NULL)
        return HV_ENOMEM;
    p->done = done;
    p->done_ud = done_ud;
    p->max = max < PICK_MAX ? max : PICK_MAX;
    snprintf(p->search, sizeof(p->search), "%s", search != NULL ? search : "");
    rc = hv_storage_submit(f->storage, job_pick, done_pick, p);
    if (rc != HV_OK)
        hv_free(p);
    return rc;
}

void hv__authz_register_picker(hv__fhir_t *f, int on)
{
    hv_auth_set_patient_provider(f->e, on ? patient_list : NULL, on ? f : NULL);
}
