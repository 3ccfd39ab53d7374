/*
 * fhirpath_model.c — the FHIR R4 model questions FHIRPath asks (fhirpath_int.h):
 * the children of an element with their types and cardinality, choice elements
 * (`value[x]`), the base of a type, and whether a type is primitive, complex or a
 * resource.
 *
 * Interim implementation: answers from fhirpath_model_stub.inc, generated from the
 * official R4 StructureDefinitions by scripts/gen_fhirpath_model_stub.py, until the
 * generated model of fhir/fhir.h replaces it (only this file then changes).
 * The tables are indexed once into open-addressing hash tables (pthread_once).
 */
#include "config.h"

#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "fhir/fhirpath_int.h"

struct stub_type {
    const char *name, *base;
    char kind;
};
struct stub_elem {
    const char *path, *types;
    int is_array;
    const char *cref;
};

#include "fhir/fhirpath_model_stub.inc"

#define ELEM_SLOTS 32768 /* > 2 × the number of elements; a power of two */
#define TYPE_SLOTS 512

static int32_t elem_slot[ELEM_SLOTS];
static int32_t type_slot[TYPE_SLOTS];
static pthread_once_t index_once = PTHREAD_ONCE_INIT;

static uint32_t hash(const char *s, size_t n) {
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < n; i++) h = (h ^ (unsigned char)s[i]) * 16777619u;
    return h;
}

static void build_index(void) {
    memset(elem_slot, -1, sizeof(elem_slot));
    memset(type_slot, -1, sizeof(type_slot));
    for (size_t i = 0; i < HV_ARRAY_LEN(stub_elems); i++) {
        const char *p = stub_elems[i].path;
        uint32_t h = hash(p, strlen(p)) & (ELEM_SLOTS - 1);
        while (elem_slot[h] >= 0) h = (h + 1) & (ELEM_SLOTS - 1);
        elem_slot[h] = (int32_t)i;
    }
    for (size_t i = 0; i < HV_ARRAY_LEN(stub_types); i++) {
        const char *p = stub_types[i].name;
        uint32_t h = hash(p, strlen(p)) & (TYPE_SLOTS - 1);
        while (type_slot[h] >= 0) h = (h + 1) & (TYPE_SLOTS - 1);
        type_slot[h] = (int32_t)i;
    }
}

static const struct stub_elem *find_elem(const char *key, size_t n) {
    uint32_t h = hash(key, n) & (ELEM_SLOTS - 1);
    while (elem_slot[h] >= 0) {
        const struct stub_elem *e = &stub_elems[elem_slot[h]];
        if (strncmp(e->path, key, n) == 0 && e->path[n] == '\0') return e;
        h = (h + 1) & (ELEM_SLOTS - 1);
    }
    return NULL;
}

static const struct stub_type *find_type(const char *name, size_t n) {
    uint32_t h;
    pthread_once(&index_once, build_index);
    h = hash(name, n) & (TYPE_SLOTS - 1);
    while (type_slot[h] >= 0) {
        const struct stub_type *t = &stub_types[type_slot[h]];
        if (strncmp(t->name, name, n) == 0 && t->name[n] == '\0') return t;
        h = (h + 1) & (TYPE_SLOTS - 1);
    }
    return NULL;
}

int hv__fp_model_child(const char *parent, const char *name, size_t namelen, hv__fp_elem_t *out) {
    char key[256];
    size_t pl;
    const struct stub_elem *e;
    int choice = 0;

    pthread_once(&index_once, build_index);
    if (parent == NULL) return HV_ENOTFOUND;
    pl = strlen(parent);
    if (pl + namelen + 4 >= sizeof(key)) return HV_ENOTFOUND;
    memcpy(key, parent, pl);
    key[pl] = '.';
    memcpy(key + pl + 1, name, namelen);
    e = find_elem(key, pl + 1 + namelen);
    if (e == NULL) {
        memcpy(key + pl + 1 + namelen, "[x]", 3);
        e = find_elem(key, pl + 1 + namelen + 3);
        choice = 1;
    }
    if (e == NULL) {
        /* Resources inherit from Resource/DomainResource, data types from Element. */
        const struct stub_type *t = find_type(parent, pl);
        if (t != NULL && t->base[0] != '\0') return hv__fp_model_child(t->base, name, namelen, out);
        return HV_ENOTFOUND;
    }
    out->path = e->path;
    out->types = e->types;
    out->cref = e->cref;
    out->is_array = e->is_array;
    out->is_choice = choice;
    return HV_OK;
}

int hv__fp_model_kind(const char *type) {
    const struct stub_type *t;
    if (type == NULL) return 0;
    t = find_type(type, strlen(type));
    return t != NULL ? t->kind : 0;
}

const char *hv__fp_model_base(const char *type) {
    const struct stub_type *t;
    if (type == NULL) return NULL;
    t = find_type(type, strlen(type));
    return t != NULL && t->base[0] != '\0' ? t->base : NULL;
}

const char *hv__fp_model_type(const char *name, size_t len) {
    const struct stub_type *t = find_type(name, len);
    return t != NULL ? t->name : NULL;
}
