/*
 * v2_finish.c — what the HL7 v2 → FHIR engine does once every segment is mapped: the values
 * FHIR requires that v2 leaves out, cleaning against the FHIR model (empty elements, required
 * elements, invariants cpt-2, pat-1, tim-8, tim-10, drt-1, ext-1, org-1..3), links to the
 * patient and encounter, A40 merges, Provenance targets, stable identities (conditional
 * updates by business identifier, name-based UUIDs, RFC 4122 §4.3) and the transaction Bundle.
 */
#include "config.h"

#include <ctype.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mappings/v2_int.h"

/* ------------------------------------------------------------------------- */
/* Finishing: defaults, pruning, identities, the Bundle                      */
/* ------------------------------------------------------------------------- */

/*
 * Values FHIR requires that a v2 message often leaves out (FHIR R4 resource
 * definitions, min 1): set only when the mapping gave none, so that the resource
 * stays valid and storable. Encounter.status comes from the trigger event below.
 */
static const char *const defaults[][3] = {
    {"Observation", "status", "unknown"},
    {"DiagnosticReport", "status", "unknown"},
    {"ServiceRequest", "status", "unknown"},
    {"ServiceRequest", "intent", "order"},
    {"MedicationRequest", "status", "unknown"},
    {"MedicationRequest", "intent", "order"},
    {"Immunization", "status", "completed"},
    {"DocumentReference", "status", "current"},
    {"Coverage", "status", "active"},
    {"Account", "status", "active"},
    {"EpisodeOfCare", "status", "active"},
    {"Procedure", "status", "unknown"},
    {"Appointment", "status", "booked"},
};

/*
 * FHIR's value for a required element the sender does not give: the data-absent-reason
 * extension (http://hl7.org/fhir/StructureDefinition/data-absent-reason, code "unknown":
 * "the value is expected to exist but is not known"), as an element with only that
 * extension (FHIR R4 §2.1.0 json.html#primitive for a primitive, `_name`; an element with an
 * extension satisfies ele-1 for a complex one, `code`). The IG names this extension for the
 * same purpose (MSH-24 source.endpoint, XTN.3 ContactPoint.system, EVN-4). It keeps what the
 * sender did give (an unnamed contact organization's address, NK1-8/9 of a contact with no
 * name, an OBR without OBR-4) instead of leaving the whole element out.
 */
static hv__jv_t *absent_unknown(ctx_t *c) {
    hv__jv_t *holder = hv__jv_obj(c->arena), *exts = hv__jv_arr(c->arena), *ext = hv__jv_obj(c->arena);
    hv__jv_put_str(c->arena, ext, "url", "http://hl7.org/fhir/StructureDefinition/data-absent-reason", HV__JV_KCONST);
    hv__jv_put_str(c->arena, ext, "valueCode", "unknown", HV__JV_KCONST);
    hv__jv_push(c->arena, exts, ext);
    hv__jv_put(c->arena, holder, "extension", exts, HV__JV_KCONST);
    return holder;
}

/* Encounter.status by trigger event (HL7 v2.5.1 §3.3; FHIR encounter-status). */
static const char *encounter_status(const char *trigger) {
    if (!strcmp(trigger, "A03")) return "finished";
    if (!strcmp(trigger, "A05") || !strcmp(trigger, "A14")) return "planned";
    if (!strcmp(trigger, "A11") || !strcmp(trigger, "A27") || !strcmp(trigger, "A38")) return "cancelled";
    if (!strcmp(trigger, "A01") || !strcmp(trigger, "A02") || !strcmp(trigger, "A04") ||
        !strcmp(trigger, "A06") || !strcmp(trigger, "A07") || !strcmp(trigger, "A08") ||
        !strcmp(trigger, "A13"))
        return "in-progress";
    return "unknown";
}

static void apply_defaults(ctx_t *c, res_t *r) {
    size_t i;
    /* DiagnosticReport.code and Observation.code (1..1): an OBR without OBR-4 still reports
     * (its status, its results), an OBX without OBX-3 still gives a value. When the message
     * gave the resource anything (before the defaults below), the code is absent for a known
     * reason (absent_unknown) rather than the resource being left out. */
    if ((strcmp(r->type, "DiagnosticReport") == 0 || strcmp(r->type, "Observation") == 0) &&
        hv__jv_len(r->obj) > 1 && !hv__jv_get_ex(r->obj, "code", NULL))
        hv__jv_put(c->arena, r->obj, "code", absent_unknown(c), HV__JV_KCONST);
    for (i = 0; i < HV_ARRAY_LEN(defaults); i++) {
        if (r->type[0] != defaults[i][0][0] || strcmp(r->type, defaults[i][0]) != 0) continue;
        if (hv__jv_get_ex(r->obj, defaults[i][1], NULL)) continue;
        hv__jv_put_str(c->arena, r->obj, defaults[i][1], defaults[i][2], HV__JV_KCONST);
    }
    /* Encounter.class is required (1..1): a Coding, the v3 NullFlavor UNK when v2 gives none. */
    if (strcmp(r->type, "Encounter") == 0 && !hv__jv_get_ex(r->obj, "class", NULL)) {
        hv__jv_t *cls = hv__jv_obj(c->arena);
        hv__jv_put_str(c->arena, cls, "system", "http://terminology.hl7.org/CodeSystem/v3-NullFlavor", HV__JV_KCONST);
        hv__jv_put_str(c->arena, cls, "code", "UNK", HV__JV_KCONST);
        hv__jv_put(c->arena, r->obj, "class", cls, HV__JV_KCONST);
    }
    if (strcmp(r->type, "Encounter") == 0) {
        const char *st = encounter_status(c->trigger);
        /* A11 cancels the visit, A13 cancels the discharge: the trigger decides. */
        if (!strcmp(c->trigger, "A11") || !strcmp(c->trigger, "A13") ||
            !hv__jv_get_ex(r->obj, "status", NULL))
            hv__jv_put_str(c->arena, r->obj, "status", st, HV__JV_KCONST);
        if (!strcmp(c->trigger, "A13")) {
            hv__jv_t *per = NULL;
            if (hv__jv_get_ex(r->obj, "period", &per)) hv__jv_del(per, "end");
        }
    }
}

static int has_choice(hv__jv_t *o, const char *name, size_t l) {
    const hv__jmem_t *m;
    for (m = hv__jv_is(o, HV__JV_OBJ) ? o->u.o.head : NULL; m != NULL; m = m->next)
        if (strncmp(m->k, name, l) == 0 && m->k[l] >= 'A' && m->k[l] <= 'Z') return 1;
    return 0;
}

/*
 * Cleans one object the mapping wrote, with its element in the FHIR model: removes
 * empty objects and arrays, extensions without a value (FHIR ext-1), and any object
 * that lacks an element FHIR requires in it (min ≥ 1), so that what a partial v2
 * value gives is left out rather than written invalid. Returns 1 when the object
 * itself must go. *missing (may be NULL) names the first required element missing.
 */
/* The model types and elements clean_node repairs, found once (hv__v2_finish). */
static const hv_fhir_type_t *ty_contactpoint, *ty_duration, *ty_extension;
static const hv_fhir_elem_t *el_patient_contact, *el_timing_repeat;
static pthread_once_t ty_once = PTHREAD_ONCE_INIT;
/* The two lower-case hex digits of each byte value, for uuid_from (filled with the types). */
static char hex2[256][2];
static void hex2_init(void) {
    static const char hex[] = "0123456789abcdef";
    int i;
    for (i = 0; i < 256; i++) hex2[i][0] = hex[i >> 4], hex2[i][1] = hex[i & 15];
}
static void find_types(void) {
    const hv_fhir_type_t *t;
    hex2_init();
    ty_contactpoint = hv_fhir_type_find("ContactPoint", 12);
    ty_duration = hv_fhir_type_find("Duration", 8);
    ty_extension = hv_fhir_type_find("Extension", 9);
    /* The elements whose paths are "Patient.contact" and "Timing.repeat" (each path names
     * one element of the model), compared by address instead of by path. */
    t = hv_fhir_type_find("Patient", 7);
    if (t != NULL) el_patient_contact = hv_fhir_elem_owner(hv_fhir_elem_child(hv_fhir_type_root(t), "contact", 7, &t), t);
    t = hv_fhir_type_find("Timing", 6);
    if (t != NULL) el_timing_repeat = hv_fhir_elem_owner(hv_fhir_elem_child(hv_fhir_type_root(t), "repeat", 6, &t), t);
}

static int take_ref(ctx_t *c, hv__jv_t *holder, const char *rv);

static int clean_node(ctx_t *c, hv__jv_t *o, const hv_fhir_elem_t *owner, const char **missing) {
    hv__jmem_t *e, *next;
    size_t i, n;
    const hv_fhir_type_t *otype;
    const hv_fhir_elem_t *const *req;
    int type_root;
    if (owner == NULL || !hv__jv_is(o, HV__JV_OBJ)) return 0; /* NULL: an object the arena could not give */
    for (e = o->u.o.head; e != NULL; e = next) {
        hv__jv_t *v = e->v;
        const char *k = e->k;
        const hv_fhir_type_t *chosen = NULL;
        const hv_fhir_elem_t *el, *sub;
        next = e->next;
        /* "resourceType" and "id" are not elements of the model; the first byte rules out
         * every other key without a strcmp. */
        if ((k[0] == 'r' && e->klen == 12 && !memcmp(k, "resourceType", 12)) ||
            (k[0] == 'i' && k[1] == 'd' && k[2] == '\0'))
            continue;
        /* The first cleaning finds the resource's references (hv__v2_finish); one to a
         * resource left out goes before the object holding it is judged. */
        if (c->collecting && k[0] == 'r' && hv__jv_is(v, HV__JV_STR) && !strcmp(k, "reference") &&
            !take_ref(c, o, v->u.s)) {
            hv__jv_del(o, k);
            continue;
        }
        /* "_name": a primitive's extensions (absent_unknown), kept when "name" is an element. */
        if (k[0] == '_' && hv__jv_is(v, HV__JV_OBJ) &&
            hv__v2_elem_child(c, owner, k + 1, strlen(k + 1), &chosen) != NULL && chosen != NULL &&
            hv_fhir_type_kind(chosen) == HV_FHIR_KIND_PRIMITIVE)
            continue;
        /* A member the mapping tagged with its model element (hv__v2_put_el) needs no look-up. */
        if (e->tag != NULL) {
            el = e->tag;
            chosen = e->tag2;
        } else {
            el = hv__v2_elem_child(c, owner, k, e->klen, &chosen);
        }
        if (el == NULL) {
            hv__jv_del(o, k);
            continue;
        }
        sub = chosen != NULL && hv_fhir_type_kind(chosen) != HV_FHIR_KIND_PRIMITIVE
                  ? hv_fhir_elem_owner(el, chosen)
                  : NULL;
        if (hv__jv_is(v, HV__JV_ARR)) {
            size_t j = hv__jv_len(v);
            while (j-- > 0) {
                hv__jv_t *it = hv__jv_at(v, j);
                if (hv__jv_is(it, HV__JV_OBJ) && sub != NULL &&
                    clean_node(c, it, sub, NULL))
                    hv__jv_del_at(v, j);
            }
            if (hv__jv_len(v) == 0) hv__jv_del(o, k);
        } else if (hv__jv_is(v, HV__JV_OBJ)) {
            if (sub == NULL || clean_node(c, v, sub, NULL)) hv__jv_del(o, k);
        }
    }
    if (hv__jv_len(o) == 0) return 1;
    otype = hv_fhir_elem_owner_type(owner);
    type_root = hv_fhir_elem_parent(owner) == NULL;
    /* FHIR cpt-2: a ContactPoint with a value needs a system; XTN.3 may be empty. */
    if (otype == ty_contactpoint && type_root && hv__jv_get_str(o, "value") != NULL &&
        !hv__jv_get_ex(o, "system", NULL))
        hv__jv_put_str(c->arena, o, "system", strchr(hv__jv_get_str(o, "value"), '@') ? "email" : "phone", HV__JV_KCONST);
    /* FHIR pat-1: a contact has a name, telecom, address or organization; one the message
     * gives only a relationship or period for (NK1-3, NK1-8/9) gets a name that is absent
     * for a known reason (absent_unknown). */
    if (!type_root && owner == el_patient_contact &&
        !hv__jv_get_ex(o, "name", NULL) && !hv__jv_get_ex(o, "telecom", NULL) &&
        !hv__jv_get_ex(o, "address", NULL) &&
        !hv__jv_get_ex(o, "organization", NULL))
        hv__jv_put(c->arena, o, "name", absent_unknown(c), HV__JV_KCONST);
    /* FHIR tim-8 (countMax needs count) and tim-10 (timeOfDay or when, not both). */
    if (!type_root && owner == el_timing_repeat) {
        if (hv__jv_get_ex(o, "countMax", NULL) && !hv__jv_get_ex(o, "count", NULL))
            hv__jv_del(o, "countMax");
        if (hv__jv_get_ex(o, "timeOfDay", NULL)) hv__jv_del(o, "when");
        if (hv__jv_len(o) == 0) return 1;
    }
    /* FHIR drt-1: a Duration needs a UCUM code. */
    if (otype == ty_duration && type_root &&
        (hv__jv_get_str(o, "code") == NULL || hv__jv_get_str(o, "system") == NULL ||
         strcmp(hv__jv_get_str(o, "system"), "http://unitsofmeasure.org") != 0))
        return 1;
    if (otype == ty_extension && type_root && !has_choice(o, "value", 5) &&
        !hv__jv_get_ex(o, "extension", NULL))
        return 1;
    /* The required children (min >= 1), in the model's order: the first one missing is named. */
    req = hv__v2_elem_required(c, owner, &n);
    if (req == NULL) n = hv_fhir_elem_child_count(owner);
    for (i = 0; i < n; i++) {
        const hv_fhir_elem_t *ch = req != NULL ? req[i] : hv_fhir_elem_child_at(owner, i);
        const char *name;
        if (hv_fhir_elem_min(ch) == 0) continue;
        name = hv_fhir_elem_name(ch);
        /* A choice element's name ends with "[x]" (hv_fhir_elem_is_choice): any of its
         * "value…" members gives it. */
        if (hv_fhir_elem_is_choice(ch) ? has_choice(o, name, strlen(name) - 3) : hv__jv_get_ex(o, name, NULL))
            continue;
        if (missing != NULL) *missing = name;
        return 1;
    }
    return 0;
}

/* Cleans a resource (clean_node); 0 when it must be left out, with an issue saying why. */
static int resource_ok(ctx_t *c, res_t *r) {
    const char *missing = NULL;
    int ok;
    ok = !clean_node(c, r->obj, r->root, &missing);
    /* FHIR org-1: an Organization has a name or an identifier. An NK1 with only the contact
     * person's address of an unnamed organization (NK1-32), or MSH-17's country of the
     * sender, gives neither: the name is absent for a known reason (absent_unknown). */
    if (ok && strcmp(r->type, "Organization") == 0 && !hv__jv_get_ex(r->obj, "name", NULL) &&
        !hv__jv_get_ex(r->obj, "_name", NULL) && !hv__jv_get_ex(r->obj, "identifier", NULL))
        hv__jv_put(c->arena, r->obj, "_name", absent_unknown(c), HV__JV_KCONST);
    if (ok && strcmp(r->type, "Organization") == 0) {
        /* FHIR org-2, org-3: an organization's address and telecom are not "home"; the use
         * the message gives is dropped, the address or number kept. */
        static const char *const uses[] = {"address", "telecom"};
        size_t u, k;
        for (u = 0; u < HV_ARRAY_LEN(uses); u++) {
            hv__jv_t *arr = NULL;
            if (!hv__jv_get_ex(r->obj, uses[u], &arr) || !hv__jv_is(arr, HV__JV_ARR))
                continue;
            for (k = 0; k < hv__jv_len(arr); k++) {
                hv__jv_t *it = hv__jv_at(arr, k);
                const char *use = hv__jv_get_str(it, "use");
                if (use != NULL && strcmp(use, "home") == 0) hv__jv_del(it, "use");
            }
        }
    }
    if (ok) return 1;
    if (missing != NULL)
        hv__v2_issue(c, "information", "incomplete", r->slot[0] ? r->slot : r->type,
              "%s left out: the message does not give %s.%s, which FHIR requires", r->type, r->type,
              missing);
    return 0;
}

/* splitmix64's finalizer: spreads a hash before it is summed with others. */
static uint64_t mix64(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

/*
 * A hash of a resource's content for its name-based id: the members of an object are
 * summed (so the order they were written in does not matter), arrays hashed in order,
 * values by their JSON text. Cheaper than writing the resource out and hashing the text.
 */
static uint64_t content_hash(uint64_t h, hv__jv_t *v, int depth) {
    if (depth > 64) return h;
    switch (v == NULL ? HV__JV_NULL : v->t) {
    case HV__JV_OBJ: {
        uint64_t sum = 0;
        const hv__jmem_t *mb;
        for (mb = v->u.o.head; mb != NULL; mb = mb->next) {
            uint64_t m = hv__v2_fnv(FNV0, mb->k, mb->klen);
            sum += mix64(content_hash(m, mb->v, depth + 1));
        }
        return hv__v2_fnv(hv__v2_fnv(h, "{", 1), &sum, sizeof(sum));
    }
    case HV__JV_ARR: {
        size_t i, n = hv__jv_len(v);
        h = hv__v2_fnv(h, "[", 1);
        for (i = 0; i < n; i++) h = content_hash(h, hv__jv_at(v, i), depth + 1);
        return hv__v2_fnv(h, "]", 1);
    }
    case HV__JV_STR:
        return hv__v2_fnv(hv__v2_fnv(h, "s", 1), v->u.s, v->n);
    case HV__JV_NULL:
        return hv__v2_fnv(h, "n", 1);
    case HV__JV_NUM:
        return hv__v2_fnv(hv__v2_fnv(h, "v", 1), v->u.s, v->n);
    case HV__JV_BOOL:
        return v->u.i ? hv__v2_fnv(hv__v2_fnv(h, "v", 1), "true", 4) : hv__v2_fnv(hv__v2_fnv(h, "v", 1), "false", 5);
    default: {
        /* An integer: its JSON text, as the number's decimal digits. */
        char t[24];
        int tl = snprintf(t, sizeof(t), "%lld", v->u.i);
        return hv__v2_fnv(hv__v2_fnv(h, "v", 1), t, (size_t)tl);
    }
    }
}

static void uuid_from(uint64_t a, uint64_t b, char out[37]) {
    unsigned char u[16];
    int i, o = 0;
    for (i = 0; i < 8; i++) u[i] = (unsigned char)(a >> (56 - 8 * i));
    for (i = 0; i < 8; i++) u[8 + i] = (unsigned char)(b >> (56 - 8 * i));
    u[6] = (unsigned char)((u[6] & 0x0f) | 0x50); /* RFC 4122 §4.3: name-based */
    u[8] = (unsigned char)((u[8] & 0x3f) | 0x80);
    for (i = 0; i < 16; i++) {
        if (i == 4 || i == 6 || i == 8 || i == 10) out[o++] = '-';
        memcpy(out + o, hex2[u[i]], 2);
        o += 2;
    }
    out[o] = '\0';
}

static void url_encode(hv_buf_t *b, const char *s) {
    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;
        if (isalnum(ch) || ch == '-' || ch == '.' || ch == '_' || ch == '~' || ch == ':' || ch == '/')
            hv_buf_putc(b, (char)ch);
        else {
            static const char hex[] = "0123456789ABCDEF";
            char esc[3] = {'%', hex[ch >> 4], hex[ch & 15]};
            hv_buf_append(b, esc, 3);
        }
    }
}

/* The business identifier of a resource: the first identifier with a value, one with a
 * system preferred. */
static int business_id(hv__jv_t *res, const char **sys, const char **val) {
    hv__jv_t *ids = NULL, *id;
    size_t i, n;
    *sys = *val = NULL;
    if (!hv__jv_get_ex(res, "identifier", &ids)) return 0;
    if (hv__jv_is(ids, HV__JV_OBJ)) {
        *val = hv__jv_get_str(ids, "value");
        *sys = hv__jv_get_str(ids, "system");
        return *val != NULL;
    }
    n = hv__jv_len(ids);
    for (i = 0; i < n; i++) {
        id = hv__jv_at(ids, i);
        if (hv__jv_get_str(id, "value") == NULL) continue;
        if (*val == NULL) {
            *val = hv__jv_get_str(id, "value");
            *sys = hv__jv_get_str(id, "system");
        }
    }
    return *val != NULL;
}

/* Rewrites the "#hvtmp-N" references to the final fullUrl; a reference to a resource left
 * out is removed (the resource that held it is marked dirty, to be cleaned again). */
static void rewrite_refs(ctx_t *c) {
    size_t i;
    for (i = 0; i < c->nrefs; i++) {
        struct refent *e = &c->refs[i];
        size_t k = e->target;
        if (!e->live || c->res[e->owner].dropped) continue;
        while (k < c->nres && c->res[k].merged_into >= 0) k = (size_t)c->res[k].merged_into;
        if (k < c->nres && !c->res[k].dropped && c->res[k].full_url) {
            hv__jv_t *rv = NULL;
            /* The string object is rewritten in place (take_ref found it a string). */
            if (!hv__jv_get_ex(e->holder, "reference", &rv) ||
                hv__jv_set_str_ref(rv, c->res[k].full_url) != HV_OK)
                hv__jv_put_str(c->arena, e->holder, "reference", c->res[k].full_url, HV__JV_KCONST);
        } else {
            hv__jv_del(e->holder, "reference");
            c->res[e->owner].dirty = 1;
        }
        e->live = 0;
    }
}

/* Sets from's Patient.link to [{"other": {"reference": to}, "type": type}]. */
static void set_link(ctx_t *c, res_t *from, res_t *to, const char *type) {
    hv__jv_t *links = hv__jv_arr(c->arena), *l = hv__jv_obj(c->arena), *ref = hv__jv_obj(c->arena);
    hv__v2_put_ref(c, ref, "reference", hv__v2_ref_to(to), HV__V2_NEW);
    hv__v2_put(c, l, "other", ref, HV__V2_NEW);
    hv__v2_put_ref(c, l, "type", type, HV__V2_NEW);
    hv__jv_push(c->arena, links, l);
    hv__v2_put(c, from->obj, "link", links, HV__V2_CONST);
}

/*
 * A40 (merge patient, HL7 v2.5.1 §3.3.40): MRG-1 names the identifier that is
 * merged into the PID patient. The old record becomes an inactive Patient that
 * links to the survivor (replaced-by), the survivor links back (replaces), FHIR R4
 * patient.html#links.
 */
static void merge_a40(ctx_t *c, res_t *survivor) {
    size_t i;
    for (i = 0; i < c->msg.nsegs; i++) {
        const hv_hl7v2_seg_t *sg = &c->msg.segs[i];
        span_t seg = {sg->p, sg->len}, f;
        res_t *old;
        hv__map_row_t row;
        target_t tg;
        if (strcmp(sg->id, "MRG") != 0) continue;
        f = hv__v2_seg_field(c, seg, 1);
        if (!hv__v2_span_valued(f)) continue;
        c->cur_seg = i;
        old = hv__v2_res_new(c, "Patient", "Patient[merged]");
        if (old == NULL) return;
        memset(&row, 0, sizeof(row));
        row.map = "MRG[Patient]";
        row.src_f = 1;
        row.cond = row.type = row.vocab = row.assign = "";
        row.target = "identifier";
        row.dtmap = "CX[Identifier]";
        tg.owner = old->obj;
        tg.arr = NULL;
        tg.owner_e = hv_fhir_type_root(hv_fhir_resource_type("Patient"));
        tg.res_type = "Patient";
        tg.path = "Patient";
        c->rule_base = "ADT_A40 MRG-1 → Patient(merged).identifier";
        c->nframes = 0;
        {
            size_t r, nr = hv_hl7v2_span_count(f, c->msg.delims.rep);
            for (r = 0; r < nr && r < MAX_REPS; r++) {
                span_t rv;
                if (hv_hl7v2_span_piece(f, c->msg.delims.rep, r, &rv) == HV_OK && hv__v2_span_valued(rv))
                    hv__v2_apply_row(c, &row, rv, 1, seg, &tg, (unsigned)r, 0);
            }
        }
        hv__jv_put(c->arena, old->obj, "active", hv__jv_bool(c->arena, 0), HV__JV_KCONST);
        set_link(c, old, survivor, "replaced-by");
        set_link(c, survivor, old, "replaces");
        return;
    }
    hv__v2_issue(c, "warning", "required", "MRG-1", "A40 without MRG-1: nothing to merge");
}

/*
 * Provenance (HL7 v2-to-FHIR IG message tables: MSH → Provenance-Source and
 * Provenance-Transformation, EVN → Provenance): the IG's target is the Bundle and the
 * MessageHeader, which a transaction cannot reference (a transaction Bundle is not stored
 * as a resource). A Provenance of the message without a target therefore names what the
 * message writes: every other resource of the Bundle except the Provenances (FHIR R4
 * provenance.html: "target — the Reference(s) that were generated or updated by the
 * activity"). References to resources later left out are removed with them.
 */
static void provenance_targets(ctx_t *c) {
    size_t i, j;
    for (i = 0; i < c->nres; i++) {
        res_t *p = &c->res[i];
        hv__jv_t *arr = NULL;
        if (p->dropped || !p->prov) continue;
        if (!hv__jv_get_ex(p->obj, "target", &arr) || !hv__jv_is(arr, HV__JV_ARR)) {
            arr = hv__jv_arr(c->arena);
            hv__jv_put(c->arena, p->obj, "target", arr, HV__JV_KCONST);
        }
        for (j = 0; j < c->nres; j++) {
            res_t *t = &c->res[j];
            hv__jv_t *ref;
            /* The message header's own resources (sender, software, the engine as agent) are
             * what the Provenance is about, not what the message wrote. */
            if (t->dropped || t->prov || t->hdr) continue;
            ref = hv__jv_obj(c->arena);
            hv__v2_put_ref(c, ref, "reference", hv__v2_ref_to(t), HV__V2_NEW);
            hv__jv_push(c->arena, arr, ref);
        }
    }
}

/* Removes repeated references from a Provenance's target (two rows that made the same
 * resource, merged by identity, name it once). Run after rewrite_refs. */
static void provenance_dedupe(ctx_t *c, hv__jv_t *prov) {
    hv__jv_t *arr = NULL;
    struct {
        const char *s;
        size_t n;
    } *refs;
    size_t i, j, n;
    if (!hv__jv_get_ex(prov, "target", &arr) || !hv__jv_is(arr, HV__JV_ARR)) return;
    n = hv__jv_len(arr);
    if (n < 2) return;
    /* The reference texts and their lengths (up to a NUL, as strcmp compares them), read once:
     * the target lists are as long as the Bundle. */
    refs = hv_arena_alloc(c->arena, n * sizeof(*refs));
    if (refs == NULL) return;
    for (i = 0; i < n; i++) {
        refs[i].s = hv__jv_get_str(hv__jv_at(arr, i), "reference");
        refs[i].n = refs[i].s != NULL ? strlen(refs[i].s) : 0;
    }
    for (i = n; i-- > 1;) {
        for (j = 0; refs[i].s != NULL && j < i; j++) {
            /* Equal texts have one length and the same bytes. The fullUrls all have one length
             * and differ in their UUIDs, so their last eight bytes rule most pairs out before
             * the whole is compared. */
            if (refs[j].s == NULL || refs[j].n != refs[i].n) continue;
            if (refs[i].n >= 8) {
                uint64_t wi, wj;
                memcpy(&wi, refs[i].s + refs[i].n - 8, 8);
                memcpy(&wj, refs[j].s + refs[j].n - 8, 8);
                if (wi != wj) continue;
            }
            if (memcmp(refs[i].s, refs[j].s, refs[i].n) == 0) {
                hv__jv_del_at(arr, i);
                break;
            }
        }
    }
}

/*
 * A "reference" member rv of object holder in resource c->ref_owner, met by the first
 * cleaning: a "#hvtmp-N" reference is recorded (refs) to be rewritten once identities are
 * known. Returns 0 when it names a resource left out (or none), which the caller removes;
 * 1 otherwise (other references are kept as they are).
 */
static int take_ref(ctx_t *c, hv__jv_t *holder, const char *rv) {
    size_t k;
    if (strncmp(rv, "#hvtmp-", 7) != 0) return 1;
    k = hv__v2_tmp_index(rv + 7);
    if (k >= c->nres || (c->res[k].dropped && c->res[k].merged_into < 0)) return 0;
    if (c->nrefs == c->caprefs) {
        size_t nc = c->caprefs ? 2 * c->caprefs : 64;
        struct refent *n = hv_realloc(c->refs, nc * sizeof(*n));
        if (n == NULL) return 1; /* ENOMEM: the reference stays (the validator names it) */
        c->refs = n;
        c->caprefs = nc;
    }
    c->refs[c->nrefs].holder = holder;
    c->refs[c->nrefs].owner = c->ref_owner;
    c->refs[c->nrefs].target = k;
    c->refs[c->nrefs].live = 1;
    c->nrefs++;
    return 1;
}

/* Removes the references to resources left out (target `only`, or any when SIZE_MAX) and
 * marks the resources that held them dirty (to be cleaned again). */
static void drop_dangling(ctx_t *c, size_t only) {
    size_t i;
    for (i = 0; i < c->nrefs; i++) {
        struct refent *e = &c->refs[i];
        size_t k = e->target;
        if (!e->live || (only != SIZE_MAX && k != only)) continue;
        if (k >= c->nres || (c->res[k].dropped && c->res[k].merged_into < 0)) {
            hv__jv_del(e->holder, "reference");
            e->live = 0;
            c->res[e->owner].dirty = 1;
        }
    }
}

/*
 * Links a resource to the message's patient (or encounter) when the tables left the
 * element empty: the IG's message tables name Observation.subject but not, e.g.,
 * DiagnosticReport.subject or ServiceRequest.subject, which FHIR requires.
 */
static void link_to(ctx_t *c, res_t *r, const char *name, res_t *target) {
    const hv_fhir_elem_t *root = r->root, *e;
    const hv_fhir_type_t *chosen = NULL;
    hv__jv_t *ref;
    size_t i, n;
    struct hv__v2_lcache *lc;
    if (hv__jv_get_ex(r->obj, name, NULL)) return;
    /* Whether root's element `name` is a single Reference that may point at the target's
     * type depends on the model only: asked once per (root, name, type). */
    lc = &c->lcache[(((uintptr_t)root >> 4) ^ ((uintptr_t)name >> 2) ^ ((uintptr_t)target->type >> 3)) &
                    (HV_ARRAY_LEN(c->lcache) - 1)];
    if (lc->root != root || lc->name != name || lc->ttype != target->type) {
        int ok = 0;
        e = hv__v2_elem_child(c, root, name, strlen(name), &chosen);
        if (e != NULL && chosen != NULL && strcmp(hv_fhir_type_name(chosen), "Reference") == 0 &&
            !hv_fhir_elem_is_array(e)) {
            n = hv_fhir_elem_target_count(e, 0);
            for (i = 0; i < n; i++)
                if (strcmp(hv_fhir_type_name(hv_fhir_elem_target_at(e, 0, i)), target->type) == 0) break;
            ok = i < n;
        }
        lc->root = root;
        lc->name = name;
        lc->ttype = target->type;
        lc->ok = ok;
    }
    if (!lc->ok) return;
    ref = hv__jv_obj(c->arena);
    hv__v2_put_ref(c, ref, "reference", hv__v2_ref_to(target), HV__V2_NEW);
    hv__v2_put(c, r->obj, name, ref, HV__V2_NEW); /* absent: looked for above; name is a literal */
}

/*
 * The patient's identity is PID-3 (its first repetition with an ID number, HL7 v2.5.1
 * §3.4.2.3) with its assigning authority: that identifier is moved first so that the
 * conditional update searches by it rather than, e.g., by PID-2.
 */
static void patient_identity_first(ctx_t *c, res_t *patient) {
    hv__jv_t *ids = NULL;
    char *want = NULL;
    size_t i, n;
    for (i = 1; i <= 8; i++) {
        char path[24];
        snprintf(path, sizeof(path), "PID-3[%zu].1", i);
        if (hv_hl7v2_get_text(&c->msg, path, &want, NULL) != HV_OK) return;
        if (want != NULL && want[0]) break;
    }
    if (want == NULL || want[0] == '\0') return;
    if (!hv__jv_get_ex(patient->obj, "identifier", &ids) ||
        !hv__jv_is(ids, HV__JV_ARR))
        return;
    n = hv__jv_len(ids);
    for (i = 0; i < n; i++) {
        hv__jv_t *id = hv__jv_at(ids, i);
        const char *v = hv__jv_get_str(id, "value");
        if (v != NULL && strcmp(v, want) == 0) {
            if (i > 0) {
                hv__jv_t *arr = hv__jv_arr(c->arena);
                size_t k;
                hv__jv_push(c->arena, arr, id);
                for (k = 0; k < n; k++)
                    if (k != i) hv__jv_push(c->arena, arr, hv__jv_at(ids, k));
                hv__jv_put(c->arena, patient->obj, "identifier", arr, HV__JV_KCONST);
            }
            return;
        }
    }
}

int hv__v2_finish(ctx_t *c, hv__jv_t **bundle_out, hv_error_t *err) {
    size_t i, j;
    int pass, changed;
    char *ctl = NULL;
    res_t *enc;
    res_t *patient = hv__v2_slot_find(c, "Patient[1]");
    const char *psys = NULL, *pval = NULL;
    hv__jv_t *bundle = c->bundle_obj, *entries;
    hv_buf_t b;
    uint64_t pkey;
    pthread_once(&ty_once, find_types);
    if (patient == NULL) {
        for (i = 0; i < c->nres && patient == NULL; i++)
            if (!c->res[i].dropped && strcmp(c->res[i].type, "Patient") == 0) patient = &c->res[i];
    }
    if (patient != NULL) patient_identity_first(c, patient);
    if (patient == NULL || !business_id(patient->obj, &psys, &pval)) {
        if (!c->lenient) {
            hv_error_set(err, HV_EPROTO, "PID-3",
                         "the patient's identity cannot be mapped: no PID-3 identifier with an ID number");
            return HV_EPROTO;
        }
        hv__v2_issue(c, "warning", "required", "PID-3",
              "no patient identifier: the resources have no stable identity across messages");
        psys = NULL;
        pval = "";
        if (hv_hl7v2_get_text(&c->msg, "MSH-10", &ctl, NULL) == HV_OK && ctl != NULL) pval = ctl;
        patient = NULL;
    }
    if (patient != NULL && strcmp(c->trigger, "A40") == 0 && strncmp(c->structure, "ADT", 3) == 0)
        merge_a40(c, patient);
    if (patient == NULL && c->lenient) patient = hv__v2_slot_find(c, "Patient[1]");
    enc = hv__v2_slot_find(c, "Encounter[1]");
    pkey = hv__v2_fnv(hv__v2_fnv(FNV0, psys ? psys : "", psys ? strlen(psys) : 0), pval, strlen(pval));
    for (i = 0; i < c->nres; i++) {
        if (c->res[i].dropped) continue;
        apply_defaults(c, &c->res[i]);
        /* Resources of the message header (sender, receiving application) are not the patient's. */
        if (c->res[i].hdr) continue;
        if (patient != NULL && &c->res[i] != patient) {
            link_to(c, &c->res[i], "subject", patient);
            link_to(c, &c->res[i], "patient", patient);
            link_to(c, &c->res[i], "beneficiary", patient);
        }
        if (enc != NULL && &c->res[i] != enc) link_to(c, &c->res[i], "encounter", enc);
    }
    provenance_targets(c);
    /* Leaving one resource out can leave another without a reference it requires
     * (Provenance.target): repeat until nothing changes. The references are found once;
     * the first pass cleans every resource, a later pass only those that lost a reference
     * to a resource left out (clean_node is idempotent, and only that changes a resource
     * between passes). A resource left out takes the references to it away at once, so
     * the resources after it in the same pass are checked without them. */
    for (pass = 0, changed = 1; changed && pass < 8; pass++) {
        changed = 0;
        for (i = 0; i < c->nres; i++) {
            res_t *r = &c->res[i];
            int ok;
            if (r->dropped) continue;
            if (pass > 0 && !r->dirty) continue;
            r->dirty = 0;
            /* Lenient mode keeps the message's patient even when PID gave nothing (it is linked).
             * The first pass also finds the resource's references (take_ref). */
            c->collecting = pass == 0;
            c->ref_owner = i;
            ok = (hv__jv_len(r->obj) > 1 || (c->lenient && r == patient)) && resource_ok(c, r);
            c->collecting = 0;
            if (!ok) {
                r->dropped = 1;
                changed = 1;
                drop_dangling(c, i);
            }
        }
    }
    /* Identities, and one entry per identity (the same Practitioner named twice). */
    hv_buf_init(&b, 4096);
    for (i = 0; i < c->nres; i++) {
        res_t *r = &c->res[i];
        const char *sys = NULL, *val = NULL;
        char uuid[37];
        uint64_t h1, h2;
        if (r->dropped) continue;
        hv_buf_reset(&b);
        if (business_id(r->obj, &sys, &val)) {
            hv_buf_append(&b, r->type, strlen(r->type));
            hv_buf_append(&b, "?identifier=", 12);
            if (sys != NULL) {
                url_encode(&b, sys);
                hv_buf_putc(&b, '|');
            }
            url_encode(&b, val);
            h1 = hv__v2_fnv(FNV0, b.data, b.len);
            h2 = hv__v2_fnv(h1 ^ 0x9e3779b97f4a7c15ULL, b.data, b.len);
        } else {
            h1 = hv__v2_fnv(pkey, r->type, strlen(r->type));
            if (r->order_key != NULL && strcmp(r->type, "Patient") != 0 &&
                strcmp(r->type, "Practitioner") != 0 && strcmp(r->type, "Organization") != 0) {
                /* A result of an order: its place in the message names it. */
                h1 = hv__v2_fnv(h1, r->order_key, strlen(r->order_key));
                h1 = hv__v2_fnv(h1, &r->ordinal, sizeof(r->ordinal));
            } else {
                h1 = content_hash(h1, r->obj, 0);
            }
            h2 = hv__v2_fnv(h1 ^ 0x9e3779b97f4a7c15ULL, r->type, strlen(r->type));
        }
        uuid_from(h1, h2, uuid);
        /* The bits the UUID keeps (uuid_from sets the version and variant bits): equal
         * fullUrls are equal pairs, compared below without the text. */
        r->ida = h1 & ~0xF000ULL;
        r->idb = h2 & ~(0xC0ULL << 56);
        r->full_url = hv_arena_alloc(c->arena, 9 + 37);
        if (r->full_url != NULL) {
            memcpy(r->full_url, "urn:uuid:", 9);
            memcpy(r->full_url + 9, uuid, 37);
        }
        if (b.len > 0) {
            r->request_url = hv_arena_strndup(c->arena, b.data, b.len);
        } else {
            size_t tl = strlen(r->type);
            r->request_url = hv_arena_alloc(c->arena, tl + 1 + 37);
            if (r->request_url != NULL) {
                memcpy(r->request_url, r->type, tl);
                r->request_url[tl] = '/';
                memcpy(r->request_url + tl + 1, uuid, 37);
            }
            hv__v2_put_str(c, r->obj, "id", uuid, HV__V2_CONST);
        }
        for (j = 0; j < i; j++) {
            if (!c->res[j].dropped && c->res[j].full_url && r->full_url && c->res[j].ida == r->ida &&
                c->res[j].idb == r->idb) {
                r->merged_into = (int)j;
                r->dropped = 1;
                break;
            }
        }
    }
    hv_buf_release(&b);
    rewrite_refs(c);
    entries = hv__jv_arr(c->arena);
    for (i = 0; i < c->nres; i++) {
        res_t *r = &c->res[i];
        hv__jv_t *e, *req;
        if (r->dropped) continue;
        /* Cleaned already; again only when a reference was removed here. */
        if (r->prov) provenance_dedupe(c, r->obj);
        if (r->dirty) clean_node(c, r->obj, r->root, NULL);
        e = hv__jv_obj(c->arena);
        hv__v2_put_ref(c, e, "fullUrl", r->full_url, HV__V2_NEW);
        hv__v2_put(c, e, "resource", r->obj, HV__V2_NEW);
        req = hv__jv_obj(c->arena);
        hv__v2_put_ref(c, req, "method", "PUT", HV__V2_NEW);
        hv__v2_put_ref(c, req, "url", r->request_url, HV__V2_NEW);
        hv__v2_put(c, e, "request", req, HV__V2_NEW);
        hv__jv_push(c->arena, entries, e);
    }
    hv__jv_put_str(c->arena, bundle, "type", "transaction", HV__JV_KCONST);
    hv__jv_del(bundle, "entry");
    clean_node(c, bundle, hv_fhir_type_root(hv_fhir_resource_type("Bundle")), NULL);
    if (hv__jv_len(entries) > 0) hv__jv_put(c->arena, bundle, "entry", entries, HV__JV_KCONST);
    hv__jv_put_str(c->arena, bundle, "resourceType", "Bundle", HV__JV_KCONST);
    hv__jv_put_str(c->arena, bundle, "type", "transaction", HV__JV_KCONST);
    *bundle_out = bundle;
    return HV_OK;
}
