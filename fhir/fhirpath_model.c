/*
 * fhirpath_model.c — the FHIR R4 model questions FHIRPath asks (fhirpath_int.h),
 * answered by the generated model of fhir/fhir.h: the children of an element with
 * their types (choice elements `value[x]` by their base name, contentReference,
 * backbone elements), the System class of primitive types, and type specifiers.
 *
 * The per-type tables below are built once (pthread_once) so that the evaluator's
 * hot paths compare handles instead of names.
 */
#include "config.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fhir/fhirpath_int.h"

static pthread_once_t once = PTHREAD_ONCE_INIT;
static signed char *prim_cls;   /* by type id */
static unsigned char *is_qty;   /* by type id */

static void build(void) {
    size_t n = hv_fhir_type_count();
    static const struct {
        const char *sys;
        char cls;
    } map[] = {{"System.Boolean", 'b'}, {"System.Integer", 'i'}, {"System.Decimal", 'd'}, {"System.String", 's'},
               {"System.Date", 'D'},    {"System.DateTime", 'T'}, {"System.Time", 't'}};
    const hv_fhir_type_t *qty = hv_fhir_type_find("Quantity", 8);
    prim_cls = calloc(n, 1);
    is_qty = calloc(n, 1);
    if (prim_cls == NULL || is_qty == NULL) abort(); /* at start-up, a few hundred bytes */
    for (size_t i = 0; i < n; i++) {
        const hv_fhir_type_t *t = hv_fhir_type_at(i), *s = hv_fhir_type_system(t);
        if (hv_fhir_type_kind(t) == HV_FHIR_KIND_PRIMITIVE && s != NULL) {
            for (size_t k = 0; k < HV_ARRAY_LEN(map); k++)
                if (strcmp(hv_fhir_type_name(s), map[k].sys) == 0) prim_cls[i] = map[k].cls;
        }
        is_qty[i] = qty != NULL && hv_fhir_type_is(t, qty);
    }
}

int hv__fp_prim_class(const hv_fhir_type_t *t) {
    if (t == NULL) return 0;
    pthread_once(&once, build);
    return prim_cls[hv_fhir_type_id(t)];
}

int hv__fp_is_quantity_type(const hv_fhir_type_t *t) {
    if (t == NULL) return 0;
    pthread_once(&once, build);
    return is_qty[hv_fhir_type_id(t)];
}

int hv__fp_model_child(const hv_fhir_elem_t *owner, const char *name, size_t len, const hv_fhir_elem_t **e,
                       int *is_choice, const hv_fhir_type_t **chosen) {
    const hv_fhir_elem_t *c;
    size_t n;
    if (owner == NULL) return HV_ENOTFOUND;
    c = hv_fhir_elem_child(owner, name, len, chosen);
    if (c != NULL) {
        /* "valueQuantity": a choice is navigated by its base name only (FHIR R4
         * fhirpath.html#polymorphism; the suite's testPolymorphicsB). */
        if (hv_fhir_elem_is_choice(c)) return HV_ENOTFOUND;
        *e = c;
        *is_choice = 0;
        return HV_OK;
    }
    /* A choice by its base name: the child named "name[x]". */
    n = hv_fhir_elem_child_count(owner);
    for (size_t i = 0; i < n; i++) {
        const hv_fhir_elem_t *k = hv_fhir_elem_child_at(owner, i);
        const char *kn = hv_fhir_elem_name(k);
        if (strncmp(kn, name, len) == 0 && strcmp(kn + len, "[x]") == 0) {
            *e = k;
            *is_choice = 1;
            *chosen = NULL;
            return HV_OK;
        }
    }
    return HV_ENOTFOUND;
}

void hv__fp_typeref_resolve(const char *q, hv__fp_typeref_t *out) {
    static const char *sys[] = {NULL, "Boolean", "Integer", "Decimal", "String", "Date", "DateTime", "Time", "Quantity"};
    const char *name = q;
    memset(out, 0, sizeof(*out));
    if (strncmp(q, "System.", 7) == 0) {
        out->ns = 'S';
        name = q + 7;
    } else if (strncmp(q, "FHIR.", 5) == 0) {
        out->ns = 'F';
        name = q + 5;
    }
    if (out->ns != 'F') {
        for (int i = 1; i < (int)HV_ARRAY_LEN(sys); i++)
            if (strcmp(sys[i], name) == 0) out->sys = (int8_t)i; /* HV__FP_BOOL.. order */
        if (strcmp(name, "Any") == 0) out->sys = 15;
    }
    if (out->ns != 'S') {
        const hv_fhir_type_t *t = hv_fhir_type_find(name, strlen(name));
        if (t != NULL && hv_fhir_type_kind(t) != HV_FHIR_KIND_SYSTEM) out->fhir = t;
    }
}
