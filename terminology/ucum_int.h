/*
 * ucum_int.h — internals shared by the UCUM files (ucum_load.c: the essence table;
 * ucum_parse.c: the expression parser; ucum.c: conversion, printing, the cache).
 */
#ifndef HV_TERMINOLOGY_UCUM_INT_H
#define HV_TERMINOLOGY_UCUM_INT_H

#include <uv.h>

#include "terminology/ucum.h"

/* The functions of the special units (ucum-essence.xml <function name=...>), UCUM §21. */
enum hv__ucum_fn {
    HV__UCUM_FN_NONE = 0,
    HV__UCUM_FN_CEL,
    HV__UCUM_FN_DEGF,
    HV__UCUM_FN_DEGRE,
    HV__UCUM_FN_TANTIMES100,
    HV__UCUM_FN_100TAN,
    HV__UCUM_FN_HPX,
    HV__UCUM_FN_HPC,
    HV__UCUM_FN_HPM,
    HV__UCUM_FN_HPQ,
    HV__UCUM_FN_PH,
    HV__UCUM_FN_LN,
    HV__UCUM_FN_LG,
    HV__UCUM_FN_LGTIMES2,
    HV__UCUM_FN_SQRT,
    HV__UCUM_FN_LD
};

/* One prefix (<prefix Code=... >): "k" = 1e3. Codes are at most two characters. */
typedef struct hv__ucum_prefix {
    char *code;
    char *name;
    double value;
} hv__ucum_prefix_t;

/* Resolution states of an atom's definition while loading. */
enum { HV__ATOM_NEW = 0, HV__ATOM_RESOLVING, HV__ATOM_DONE };

/*
 * One unit atom: a base unit or a defined unit. `canon` is its resolved canonical
 * form; for a special unit it is the form of its function's argument unit
 * (value × Unit of <function>) with HV_UCUM_SPECIAL set and special_fn the function.
 */
typedef struct hv__ucum_atom {
    char *code;
    char *name;
    char *def_unit; /* <value Unit=...> or <function Unit=...>; NULL for base units */
    double def_value;
    unsigned is_metric : 1;
    unsigned is_special : 1;
    unsigned is_arbitrary : 1;
    unsigned is_base : 1;
    int base_dim;   /* for base units */
    int special_fn; /* enum hv__ucum_fn */
    int state;
    hv_ucum_canon_t canon;
} hv__ucum_atom_t;

/* A direct-mapped cache slot: units up to HV__UCUM_CACHE_KEY-1 bytes are cached. */
#define HV__UCUM_CACHE_KEY 48
typedef struct hv__ucum_slot {
    uint64_t hash;
    char key[HV__UCUM_CACHE_KEY];
    hv_ucum_canon_t canon;
} hv__ucum_slot_t;

struct hv_ucum {
    char *version;
    char *revision_date;
    hv__ucum_prefix_t *prefixes;
    size_t nprefixes;
    hv__ucum_atom_t *atoms;
    size_t natoms;
    uint32_t *index; /* open addressing: atom number + 1, 0 = empty */
    size_t index_mask;
    int base_atom[HV_UCUM_NDIM]; /* atom number of each base unit */
    /* The parsed-unit cache. */
    uv_mutex_t cache_lock;
    hv__ucum_slot_t *cache;
    size_t cache_mask;
    uint64_t hits, misses;
};

/* FNV-1a over n bytes. */
uint64_t hv__ucum_hash(const char *s, size_t n);
/* The atom with this exact code, or NULL. */
const hv__ucum_atom_t *hv__ucum_atom_find(const hv_ucum_t *u, const char *code, size_t n);
/* Resolves one atom's definition (recursively); used while loading. */
int hv__ucum_atom_resolve(hv_ucum_t *u, hv__ucum_atom_t *a, hv_error_t *err);

/*
 * Parses s[0..n) into a canonical form without the cache. If disp is not NULL the
 * display name is appended to it (hv_ucum_display_name).
 */
int hv__ucum_parse(hv_ucum_t *u, const char *s, size_t n, hv_ucum_canon_t *out, hv_buf_t *disp,
                   hv_error_t *err);
/* out = a * b^sign (sign +1 or -1), keeping the special flags; HV_ETOOBIG on overflow. */
int hv__ucum_combine(const hv_ucum_canon_t *a, const hv_ucum_canon_t *b, int sign,
                     hv_ucum_canon_t *out);
/* out = a^exp; HV_ETOOBIG on overflow. */
int hv__ucum_power(const hv_ucum_canon_t *a, int exp, hv_ucum_canon_t *out);
/* Sets c to unity. */
void hv__ucum_unity(hv_ucum_canon_t *c);

#endif /* HV_TERMINOLOGY_UCUM_INT_H */
