/*
 * fhir_int.h — internals shared by the files of fhir/: the row layouts of the
 * generated model tables (fhir/model_gen.c, written by fhir/gen/gen_model.py) and
 * cross-file helpers. Not part of the public API: use fhir/fhir.h.
 *
 * Every string in the tables is an offset into hv__fhir_pool (offset 0 is "").
 * Every reference between rows is an index: a type id indexes hv__fhir_types, an
 * element id hv__fhir_elems, and so on. -1 means "none".
 */
#ifndef HV_FHIR_INT_H
#define HV_FHIR_INT_H

#include <stdint.h>

#include "fhir/fhir.h"

/* Element flags (hv__fhir_elem_row_t.flags). */
#define HV__EF_CHOICE 1    /* the name ends with [x] */
#define HV__EF_MODIFIER 2  /* isModifier */
#define HV__EF_SUMMARY 4   /* isSummary */
#define HV__EF_XMLATTR 8   /* representation xmlAttr: an XML attribute */
#define HV__EF_XHTML 16    /* representation xhtml: the narrative div */
#define HV__EF_ARRAY 32    /* base cardinality allows more than one: a JSON array */
#define HV__EF_BACKBONE 64 /* declares its own children (a backbone element) */
#define HV__EF_ROOT 128    /* the root element of a type ("Patient") */

/* A type: struct hv_fhir_type is the row itself, so handles are row pointers. */
struct hv_fhir_type {
    uint32_t name;    /* "Patient", "string", "System.String" */
    uint32_t url;     /* canonical URL of the StructureDefinition */
    uint8_t kind;     /* hv_fhir_kind_t */
    uint8_t abstract; /* 1 for abstract types (Resource, DomainResource, Element...) */
    uint8_t
        constraint;  /* 1 for constraint profiles among the types (SimpleQuantity, MoneyQuantity) */
    int16_t base;    /* type id of the base type, -1 for none */
    int32_t root;    /* element id of the root element, -1 for System types */
    int16_t systype; /* primitives: type id of the System type of `value`, else -1 */
    uint32_t regex;  /* primitives: the regex of the definitions, 0 for none */
    uint32_t posix;  /* the same as an anchored POSIX ERE; 0 for none or "any text" */
    uint32_t maxlen; /* primitives: maxLength in characters, 0 for none */
    uint16_t sfirst; /* first row in hv__fhir_search_idx of this type's own parameters */
    uint16_t sn;     /* how many */
};
typedef struct hv_fhir_type hv__fhir_type_row_t;

struct hv_fhir_elem {
    uint32_t path;  /* "Patient.contact.name" */
    uint32_t name;  /* last segment: "name", "value[x]" */
    int32_t parent; /* element id of the parent, -1 for a root */
    int16_t owner;  /* type id of the StructureDefinition the element belongs to */
    uint32_t min;
    uint32_t max;    /* HV_FHIR_UNBOUNDED for "*" */
    uint16_t flags;  /* HV__EF_* */
    uint32_t tfirst; /* first row in hv__fhir_typerefs */
    uint8_t tn;      /* how many types (more than one only for choice elements) */
    uint32_t kfirst; /* first entry in hv__fhir_children */
    uint16_t kn;     /* how many children, in specification order */
    uint32_t cfirst; /* first entry in hv__fhir_cidx */
    uint16_t cn;     /* how many constraints */
    int16_t binding; /* row in hv__fhir_bindings, -1 for none */
    int32_t cref;    /* contentReference: element id whose definition is reused, else -1 */
    uint16_t index;  /* position among the parent's children (specification order) */
};
typedef struct hv_fhir_elem hv__fhir_elem_row_t;

typedef struct hv__fhir_typeref_row {
    uint16_t type;    /* type id */
    uint32_t tgfirst; /* Reference/canonical targets: first entry in hv__fhir_targets */
    uint16_t tgn;
} hv__fhir_typeref_row_t;

struct hv_fhir_constraint {
    uint32_t key;     /* "ele-1" */
    uint8_t severity; /* hv_fhir_severity_t */
    uint32_t human;
    uint32_t expression; /* FHIRPath */
    uint32_t source;     /* canonical URL of the defining StructureDefinition, may be "" */
};
typedef struct hv_fhir_constraint hv__fhir_constraint_row_t;

struct hv_fhir_binding {
    uint8_t strength; /* hv_fhir_strength_t */
    uint32_t valueset;
    uint8_t inlined; /* 1 when codes lists the whole expansion */
    uint32_t cfirst; /* first row in hv__fhir_codes */
    uint32_t cn;
};
typedef struct hv_fhir_binding hv__fhir_binding_row_t;

typedef struct hv__fhir_code_row {
    uint32_t system;
    uint32_t code;
} hv__fhir_code_row_t;

struct hv_fhir_search {
    uint32_t code;
    uint32_t url;
    uint8_t type;        /* hv_fhir_search_type_t */
    uint32_t expression; /* FHIRPath; 0 ("") for none */
    uint32_t bfirst;     /* first entry in hv__fhir_targets listing the base types */
    uint16_t bn;
    uint32_t tgfirst; /* reference targets in hv__fhir_targets */
    uint16_t tgn;
    uint32_t cfirst; /* composite components in hv__fhir_comps */
    uint16_t cn;
    uint32_t usage; /* xpathUsage: "normal", "phonetic", "nearby", "distance", "other" */
};
typedef struct hv_fhir_search hv__fhir_search_row_t;

typedef struct hv__fhir_comp_row {
    int32_t param;       /* search parameter row, -1 if its definition is unknown */
    uint32_t expression; /* FHIRPath relative to the composite's expression result */
} hv__fhir_comp_row_t;

typedef struct hv__fhir_search_idx_row {
    uint16_t type;  /* base type id; rows are sorted by (type, code) */
    uint16_t param; /* search parameter row */
} hv__fhir_search_idx_row_t;

/* A JSON property name of the children of an owner element (choice elements expanded). */
typedef struct hv__fhir_childkey_row {
    int32_t owner; /* element id of the type root or backbone element */
    uint32_t name; /* "valueQuantity", "birthDate" */
    int32_t elem;  /* the child element */
    uint16_t type; /* the chosen (or only) type id */
} hv__fhir_childkey_row_t;

extern const char hv__fhir_pool[];
extern const hv__fhir_childkey_row_t hv__fhir_childkeys[];
extern const uint32_t hv__fhir_childkeys_count;
/* Open-addressing hash slots (entry index + 1, 0 empty), filled by fhir/model.c. */
extern uint32_t hv__fhir_h_types[], hv__fhir_h_urls[], hv__fhir_h_paths[], hv__fhir_h_childkeys[];
extern const uint32_t hv__fhir_h_types_mask, hv__fhir_h_urls_mask, hv__fhir_h_paths_mask,
    hv__fhir_h_childkeys_mask;
extern const uint32_t hv__fhir_pool_size;
extern const hv__fhir_type_row_t hv__fhir_types[];
extern const uint32_t hv__fhir_types_count;
extern const hv__fhir_elem_row_t hv__fhir_elems[];
extern const uint32_t hv__fhir_elems_count;
extern const hv__fhir_typeref_row_t hv__fhir_typerefs[];
extern const uint32_t hv__fhir_typerefs_count;
extern const uint16_t hv__fhir_targets[];
extern const uint32_t hv__fhir_targets_count;
extern const int32_t hv__fhir_children[];
extern const uint32_t hv__fhir_children_count;
extern const hv__fhir_constraint_row_t hv__fhir_constraints[];
extern const uint32_t hv__fhir_constraints_count;
extern const uint16_t hv__fhir_cidx[];
extern const uint32_t hv__fhir_cidx_count;
extern const hv__fhir_binding_row_t hv__fhir_bindings[];
extern const uint32_t hv__fhir_bindings_count;
extern const hv__fhir_code_row_t hv__fhir_codes[];
extern const uint32_t hv__fhir_codes_count;
extern const hv__fhir_search_row_t hv__fhir_search[];
extern const uint32_t hv__fhir_search_count;
extern const hv__fhir_comp_row_t hv__fhir_comps[];
extern const uint32_t hv__fhir_comps_count;
extern const hv__fhir_search_idx_row_t hv__fhir_search_idx[];
extern const uint32_t hv__fhir_search_idx_count;

/* Whether e is the root element of a resource type, the owner of a resource's own object:
 * the stored-text writer and the structural check ask it of every object they walk, here
 * inline rather than through three accessor calls. */
static inline int hv__fhir_elem_is_resource_root(const hv_fhir_elem_t *e) {
    return e->parent < 0 && hv__fhir_types[e->owner].kind == HV_FHIR_KIND_RESOURCE;
}

#define HV__S(off) (hv__fhir_pool + (off))

struct json_object;

/* What a JSON property key names on an object described by an owner element. */
typedef struct hv__fhir_prop {
    const hv_fhir_elem_t *elem; /* the element (value[x] for valueQuantity) */
    const hv_fhir_type_t *type; /* the chosen or only type */
    int underscore;             /* 1 for the `_x` primitive-extension twin */
} hv__fhir_prop_t;

/* Resolves key on owner; HV_ENOTFOUND if it names no element (resourceType included). */
int hv__fhir_prop_resolve(const hv_fhir_elem_t *owner, const char *key, hv__fhir_prop_t *p);
/* The root element of the resource type that obj's resourceType names, or NULL. */
const hv_fhir_elem_t *hv__fhir_resource_root(struct json_object *obj);
/*
 * The owner element describing the children of `value`, a JSON object that is a value
 * of element e with type t: for resource-typed elements (Bundle.entry.resource,
 * contained) the root of the type its resourceType names; for a `_x` twin the root of
 * the primitive type; else hv_fhir_elem_owner(e, t). NULL if that cannot be told (unknown
 * resourceType). Inline, on the rows: the writer and the structural check ask it of every
 * object value they walk.
 */
static inline const hv_fhir_elem_t *hv__fhir_value_owner(const hv_fhir_elem_t *e, const hv_fhir_type_t *t,
                                                         int underscore, struct json_object *value) {
    if (t == NULL)
        return NULL;
    if (!underscore && t->kind == HV_FHIR_KIND_RESOURCE)
        return hv__fhir_resource_root(value);
    if (!underscore && e != NULL && e->kn > 0)
        return e;
    if (!underscore && e != NULL && e->cref >= 0)
        return &hv__fhir_elems[e->cref];
    return t->root >= 0 ? &hv__fhir_elems[t->root] : NULL;
}

/*
 * The json-c tree of text, a JSON object, read without json-c's tokener (json_read.c), or
 * NULL when the reader declines: on an error, on nesting deeper than max_depth allows, and on
 * the rarities whose json-c tree it leaves to json-c. Owned by the caller.
 */
struct json_object *hv__fhir_json_read(const char *text, size_t len, int max_depth);
/* The length of the well-formed UTF-8 sequence (RFC 3629 §4: no overlong forms, no
 * surrogates, nothing above U+10FFFF) that starts at p (p < end), or 0 when none does
 * (fhir/json_read.c; the reader's strings and the UTF-8 check of hv_fhir_json_parse). */
size_t hv__fhir_utf8_len(const char *p, const char *end);
/* True when the n bytes at s are a valid FHIR id, [A-Za-z0-9\-\.]{1,64} (FHIR R4
 * datatypes.html#id; fhir/store.c, which also checks a NUL-terminated id: hv__fhir_id_valid). */
int hv__fhir_id_valid_n(const char *s, size_t n);
/* The value of the four hex digits at p (p + 4 <= end) in *out: 1, or 0 when they are not
 * (fhir/json_read.c; the \u escapes of the reader and of the full-text JSON walk). */
int hv__fhir_hex4(const char *p, const char *end, unsigned *out);

/*
 * The model's own copy of name[0..len) when some element of the model has that JSON property
 * name (or it is "resourceType"), else NULL: static storage, for json-c keys added with
 * JSON_C_OBJECT_KEY_IS_CONSTANT instead of a strdup per key.
 */
const char *hv__fhir_key_static(const char *name, size_t len);
/*
 * hv__fhir_key_static, and the name's hash under *fn, the hash function of json-c's tables
 * of string keys in this process (NULL when unknown): a table whose hash_fn is *fn files
 * the name under *hash, so the reader adds it with lh_table_insert_w_hash and json-c does
 * not hash it again (fhir/json_read.c add_member).
 */
/* The key table's hash of the len bytes at s, a word at a time (fhir/model.c): also the
 * Bundle's fullUrl map (fhir/rest_bundle.c). */
uint32_t hv__fhir_str_hash(const char *s, size_t len);
typedef unsigned long hv__fhir_key_hash_fn(const void *key);
const char *hv__fhir_key_static_hashed(const char *name, size_t len, hv__fhir_key_hash_fn **fn,
                                       unsigned long *hash);
/* json-c's hash function of its tables of string keys in this process, and name's hash under
 * it in *hash; NULL (and *hash untouched) when unknown. */
hv__fhir_key_hash_fn *hv__fhir_json_key_hash(const char *name, unsigned long *hash);

/* hv_fhir_xml_write with an error description (location = element path). */
int hv__fhir_xml_write_err(struct json_object *resource, unsigned flags, hv_buf_t *out,
                           hv_error_t *err);

/* Silences libxml2's generic error output on this thread around a parse. */
typedef struct hv__fhir_xml_quiet {
    void (*fn)(void *ctx, const char *msg, ...);
    void *ctx;
} hv__fhir_xml_quiet_t;
void hv__fhir_xml_quiet_begin(hv__fhir_xml_quiet_t *q);
void hv__fhir_xml_quiet_end(hv__fhir_xml_quiet_t *q);

/* An element path being built during a walk ("Patient.name[0].given"), truncated
 * (and marked) past its capacity. */
typedef struct hv__fhir_path {
    char buf[512];
    size_t len;
} hv__fhir_path_t;

/* Appends ".name" (or "name" when empty) and "[index]" when index >= 0; returns the
 * previous length, to pass to hv__fhir_path_pop. */
size_t hv__fhir_path_push(hv__fhir_path_t *p, const char *name, long index);
void hv__fhir_path_pop(hv__fhir_path_t *p, size_t len);

#endif /* HV_FHIR_INT_H */
