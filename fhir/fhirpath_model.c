/*
 * fhirpath_model.c — the FHIR R4 model questions FHIRPath asks (fhirpath_int.h),
 * answered by the generated model of fhir/fhir.h: the children of an element with
 * their types and cardinality, choice elements (`value[x]`), contentReference, the
 * base of a type, and whether a type is primitive, complex or a resource.
 *
 * Elements are named by their definition path ("Patient.contact") and types by
 * their name, both static strings of the model's tables.
 */
#include "config.h"

#include <stdio.h>
#include <string.h>

#include "fhir/fhir.h"
#include "fhir/fhirpath_int.h"

static void fill(const hv_fhir_elem_t *e, int choice, hv__fp_elem_t *out) {
    const hv_fhir_elem_t *cr = hv_fhir_elem_content_ref(e);
    out->path = hv_fhir_elem_path(e);
    out->cref = cr != NULL ? hv_fhir_elem_path(cr) : "";
    out->is_array = hv_fhir_elem_is_array(e);
    out->is_choice = choice;
    out->ntypes = hv_fhir_elem_type_count(e);
    out->h = e;
}

int hv__fp_model_child(const char *parent, const char *name, size_t namelen, hv__fp_elem_t *out) {
    const hv_fhir_elem_t *owner, *e;
    char key[256];
    size_t pl;

    if (parent == NULL) return HV_ENOTFOUND;
    owner = hv_fhir_elem_find(parent);
    if (owner == NULL) return HV_ENOTFOUND;
    e = hv_fhir_elem_child(owner, name, namelen, NULL);
    if (e != NULL && !hv_fhir_elem_is_choice(e)) {
        fill(e, 0, out);
        return HV_OK;
    }
    if (e != NULL) return HV_ENOTFOUND; /* "valueQuantity": a choice is navigated by its base name */
    /* A choice element by its base name: "Observation.value" is "Observation.value[x]". The
     * element may be inherited, so ask the owner's declaring path. */
    pl = strlen(parent);
    if (pl + namelen + 5 >= sizeof(key)) return HV_ENOTFOUND;
    memcpy(key, parent, pl);
    key[pl] = '.';
    memcpy(key + pl + 1, name, namelen);
    memcpy(key + pl + 1 + namelen, "[x]", 4);
    e = hv_fhir_elem_find(key);
    if (e == NULL || !hv_fhir_elem_is_choice(e)) return HV_ENOTFOUND;
    fill(e, 1, out);
    return HV_OK;
}

const char *hv__fp_model_elem_type(const hv__fp_elem_t *e, size_t i) {
    const hv_fhir_type_t *t = hv_fhir_elem_type_at(e->h, i);
    if (t == NULL) return NULL;
    if (hv_fhir_type_kind(t) == HV_FHIR_KIND_SYSTEM) return "System.String";
    return hv_fhir_type_name(t);
}

int hv__fp_model_kind(const char *type) {
    const hv_fhir_type_t *t;
    if (type == NULL) return 0;
    t = hv_fhir_type_find(type, strlen(type));
    if (t == NULL) return 0;
    switch (hv_fhir_type_kind(t)) {
    case HV_FHIR_KIND_PRIMITIVE: return 'P';
    case HV_FHIR_KIND_COMPLEX: return 'C';
    case HV_FHIR_KIND_RESOURCE: return 'R';
    default: return 0;
    }
}

const char *hv__fp_model_base(const char *type) {
    const hv_fhir_type_t *t, *b;
    if (type == NULL) return NULL;
    t = hv_fhir_type_find(type, strlen(type));
    b = t != NULL ? hv_fhir_type_base(t) : NULL;
    return b != NULL ? hv_fhir_type_name(b) : NULL;
}

const char *hv__fp_model_type(const char *name, size_t len) {
    const hv_fhir_type_t *t = hv_fhir_type_find(name, len);
    if (t == NULL || hv_fhir_type_kind(t) == HV_FHIR_KIND_SYSTEM) return NULL;
    return hv_fhir_type_name(t);
}
