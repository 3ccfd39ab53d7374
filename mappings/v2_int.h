/*
 * v2_int.h — internals shared by the files of the HL7 v2 → FHIR engine (v2_to_fhir.c: the
 * entry point, message structure and references; v2_values.c: spans, issues, FHIR values;
 * v2_cond.c: conditions; v2_apply.c: rows and element paths; v2_finish.c: defaults,
 * cleaning, identities, the Bundle). Only those files include it; the short type names
 * (ctx_t, res_t, target_t, span_t) are private to them.
 */
#ifndef HV_MAPPINGS_V2_INT_H
#define HV_MAPPINGS_V2_INT_H

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "adapters/hl7v2/hl7v2.h"
#include "fhir/fhir.h"
#include "mappings/mappings_int.h"

#define MAX_RESOURCES 512  /* resources one message may produce */
#define MAX_REPS 64        /* repetitions of one field that are mapped */
#define MAX_DEPTH 5        /* data-type maps within data-type maps */
#define SLOT_BITS 11       /* the element slot table: at most 2048 entries */
#define SLOT_BITS_MIN 7    /* it starts with 128 and doubles when half full */
#define MAX_ISSUES 200     /* issues listed in the OperationOutcome */
#define MAX_FAMILY 8       /* members of a resource family ("[1]".."[8]" rows) */

typedef hv_hl7v2_span_t span_t;

typedef struct res {
    char slot[48];          /* "Patient[1]", "" for resources made by a reference */
    const char *type;       /* static: from the FHIR model */
    const hv_fhir_type_t *ftype; /* the model's type */
    const hv_fhir_elem_t *root;  /* its root element (the owner of the resource's elements) */
    hv__jv_t *obj;
    char seg[4];            /* the segment that created it */
    size_t seg_index;
    char tmp[24];           /* "#hvtmp-N": the reference used until identities are known */
    char *full_url;         /* arena */
    char *request_url;      /* arena */
    int dropped;
    int merged_into;        /* index of the resource it duplicates, or -1 */
    char *order_key;        /* arena: the order it belongs to, or NULL */
    size_t ordinal;         /* the segment's position, for ids of order results */
    int referenced;         /* its tmp reference was handed out (ref_to) */
    int dirty;              /* lost a reference since it was last cleaned */
    unsigned char hdr;      /* seg is MSH, SFT or EVN: a resource of the message header */
    unsigned char prov;     /* type is Provenance */
    uint64_t ida, idb;      /* the bits of its fullUrl's UUID (uuid_from), for comparing */
} res_t;

typedef struct slot {
    uint64_t key;
    hv__jv_t *elem;
} slot_t;

typedef struct ctx {
    /* Per message: ctx_put (v2_to_fhir.c) zeroes everything before `arena`. */
    const hv_map_tables_t *t;
    hv_hl7v2_msg_t msg;
    char structure[16];
    char trigger[8];
    size_t nres;
    hv__jv_t *bundle_obj;  /* the Bundle object MSH[Bundle] writes into */
    hv__jv_t *issues;      /* OperationOutcome.issue */
    hv__jv_t *explain;     /* NULL unless asked */
    size_t nslots;
    const char *rule_base;    /* "ORU_R01 OBX[Observation]" */
    int nframes;              /* frames[0..nframes) */
    const char *fc_seg;       /* the segment whose fields fc holds (seg_field) */
    size_t fc_len;
    unsigned fc_n;
    size_t cur_seg;           /* index of the segment being mapped */
    char *order_key;          /* the current ORC/OBR order (placer/filler), arena */
    size_t unmapped_rows;
    int lenient;              /* hv_map_opts_t.lenient_identity */
    size_t nrefs;
    /* Rows for the next apply_map call, found at load (USE_ROWS sets them). */
    int map_rows_resolved;
    const hv__map_row_t *map_rows;
    size_t map_rows_n;
    size_t nfam;              /* fam[0..nfam) */
    /* The last group choice of map_segment: for these message rows after group grp_in,
     * grp_chosen (NULL rows: none). Per message: the rows belong to this message's tables. */
    const hv__msg_row_t *grp_rows;
    const char *grp_chosen;
    char grp_in[256];
    /* Set while hv__v2_finish cleans every resource the first time: clean_node then records
     * the "#hvtmp-N" references of resource ref_owner (refs) as it meets them, and removes
     * those to resources left out, instead of a walk of its own over every resource. */
    int collecting;
    size_t ref_owner;
    /* The message rows of (structure, segment id) found in this message (map_segment): an
     * OBX after OBX does not search the tables again. Direct-mapped by the id; an entry
     * with id[0] 0 is empty; structure is compared by address (c->structure or a literal). */
    struct hv__v2_mrcache {
        char id[4];
        const char *structure;
        const hv__msg_row_t *rows;
        size_t n;
    } mrcache[16];

    /* Kept from one message to the next (allocations and caches whose entries say whether
     * they are valid): not zeroed. */
    hv_arena_t *arena;
    hv_buf_t tmp;             /* unescaping */
    res_t *res;               /* MAX_RESOURCES entries; res_new clears each it hands out */
    slot_t *slots;            /* open addressing, slot_mask + 1 entries, cleared by ctx_put */
    size_t slot_mask;
    /* The "#hvtmp-N" references of the resources, found once when mapping is done (take_ref,
     * during the first cleaning): holder object (a counted reference of ours), its resource,
     * target N. */
    struct refent {
        hv__jv_t *holder;
        size_t owner, target;
        int live;
    } *refs;
    size_t caprefs;
    unsigned opgen;           /* the message's generation for opcache entries, never 0 */
    /* The chain of rows being applied, formatted only when an issue or --explain needs it. */
    const hv__map_row_t *frames[MAX_DEPTH + 4];
    char rule[512];
    /* The fields of the segment last split (seg_field): found once per segment. */
    span_t fc[256];
    /* Field operands of conditions already read in this message (v2_cond.c): keyed by the
     * segment being mapped and the operand (segment id, field, component); direct-mapped,
     * valid when gen is opgen. */
    struct hv__v2_opcache {
        const char *segp;
        unsigned gen;
        char id[3];
        unsigned a, b;
        span_t v;
        size_t count;
    } opcache[64];
    /* The operand of the last guard tested (hv__v2_cond_eval), valid when gen is opgen and
     * segp the segment being mapped. */
    struct {
        const char *segp;
        unsigned gen;
        char id[3];
        unsigned a, b;
        span_t v;
    } gmemo;
    /* Members [2]..[MAX_FAMILY] of resource families (PL[Location]: bed [1], room [2], floor
     * [3], point of care [4], building [5], facility [6]): base and member resource indexes. */
    struct {
        size_t base, member;
        unsigned n;
    } fam[64];
    /* FHIR model look-ups kept from one message to the next (the model is static, so an
     * entry never goes stale): child elements by (owner, name) (hv__v2_elem_child), and the
     * required children of an owner element (hv__v2_elem_required). Direct-mapped; an
     * entry with a NULL owner is empty. */
    struct hv__v2_ecache {
        const hv_fhir_elem_t *owner;
        const hv_fhir_elem_t *elem;    /* NULL: the owner has no such child */
        const hv_fhir_type_t *chosen;
        unsigned char len;
        char name[47];
    } ecache[1024];
    /* Target paths compiled once per (owner element, path text) (v2_apply.c plan_find; four
     * ways per set, plan[4k..4k+3]): each
     * step's name, index and model element, so apply_row neither parses the path nor looks
     * the model up. An entry with ok 0 is a path the plan does not cover (parentheses, a step
     * into a primitive, an unknown element): apply_row parses it as before. */
    struct hv__v2_plan {
        const hv_fhir_elem_t *oe;      /* NULL: empty */
        unsigned char len, nsteps, ok;
        char path[61];
        struct hv__v2_step {
            unsigned char off, seglen, nlen, last;
            unsigned idx;
            const hv_fhir_elem_t *e;
            const hv_fhir_type_t *chosen;
            const char *ckey;          /* hv__v2_model_key of the step */
            /* What apply_row asks the model and hashes per step, found once: the element
             * repeats (arr), the chosen type is primitive (prim) and its name (tname), the
             * owner element a complex step leads to (sub, NULL for a primitive), and the
             * FNV-1a of the step's name (nh, the start of its slot key). */
            unsigned char arr, prim;
            const char *tname;
            const hv_fhir_elem_t *sub;
            uint64_t nh;
        } steps[6];
    } plan[512];
    /* The primitive kinds of FHIR type names (v2_values.c), by the name's address (the
     * model's names are static); an entry with a NULL name is empty. */
    struct hv__v2_pkcache {
        const char *tname;
        int kind;
    } pkcache[32];
    /* link_to (v2_finish.c): whether element `name` (a literal) of a resource's root is a
     * single Reference allowing type ttype (the model's static name); NULL root: empty. */
    struct hv__v2_lcache {
        const hv_fhir_elem_t *root;
        const char *name, *ttype;
        int ok;
    } lcache[64];
    struct hv__v2_rcache {
        const hv_fhir_elem_t *owner;
        unsigned char n;               /* required children in req[0..n); 255: more than fit */
        const hv_fhir_elem_t *req[7];
    } rcache[256];
} ctx_t;

/* The next apply_map runs these rows instead of looking the map's name up. */
#define USE_DT_ROWS(c, row) \
    ((c)->map_rows_resolved = (row)->dt_resolved, (c)->map_rows = (row)->dt_rows, (c)->map_rows_n = (row)->dt_n)
#define USE_SEG_ROWS(c, row) \
    ((c)->map_rows_resolved = (row)->seg_resolved, (c)->map_rows = (row)->seg_rows, (c)->map_rows_n = (row)->seg_n)

typedef struct target {
    hv__jv_t *owner;            /* the object holding the element */
    const hv_fhir_elem_t *owner_e; /* its element in the model */
    const char *res_type;          /* the resource type */
    const char *path;              /* the owner's element path, for --explain ("Patient.name") */
    hv__jv_t *arr;              /* the array holding owner when it is one repetition, else NULL */
} target_t;

/* FNV-1a over n bytes, continuing hash h (FNV0 starts one). */
static inline uint64_t hv__v2_fnv(uint64_t h, const void *p, size_t n) {
    const unsigned char *s = p;
    size_t i;
    for (i = 0; i < n; i++) {
        h ^= s[i];
        h *= 1099511628211ULL;
    }
    return h;
}
#define FNV0 1469598103934665603ULL

/* An identity key of (pointer, 64-bit name hash, two numbers) for the element slot table:
 * multiply-xorshift mixing of whole words instead of FNV over their bytes. */
static inline uint64_t hv__v2_key(const void *p, uint64_t name_hash, unsigned a, unsigned b) {
    uint64_t z = (uint64_t)(uintptr_t)p * 0x9e3779b97f4a7c15ULL;
    z ^= name_hash + 0x632be59bd9b4e019ULL + (z << 6) + (z >> 2);
    z ^= (((uint64_t)a << 32) | b) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

/*
 * Sets member key of o to val. flags: HV__V2_CONST when key lives as long as the program (a
 * literal, a FHIR model name: the tree then keeps the pointer instead of a copy), HV__V2_NEW
 * only when o is also known not to have the key (no look-up; a duplicate would be written).
 */
#define HV__V2_CONST HV__JV_KCONST
#define HV__V2_NEW (HV__JV_KCONST | HV__JV_KNEW)
static inline void hv__v2_put(ctx_t *c, hv__jv_t *o, const char *key, hv__jv_t *val, unsigned flags) {
    hv__jv_put(c->arena, o, key, val, flags);
}
/* As hv__v2_put, for the element el of the model (with its chosen type ty) of the object o
 * stands for: the member is tagged with them, so that cleaning (v2_finish.c clean_node) does
 * not look the key up again. el NULL: untagged. */
static inline void hv__v2_put_el(ctx_t *c, hv__jv_t *o, const char *key, hv__jv_t *val, unsigned flags,
                                 const hv_fhir_elem_t *el, const hv_fhir_type_t *ty) {
    hv__jv_put_tag(c->arena, o, key, val, flags, el, ty);
}
/* A string member (the text copied); as hv__v2_put. */
static inline void hv__v2_put_str(ctx_t *c, hv__jv_t *o, const char *key, const char *s, unsigned flags) {
    hv__jv_put(c->arena, o, key, hv__jv_str(c->arena, s), flags);
}
/* A string member whose text s lives as long as the message's tree (a literal, a model name,
 * arena text, a resource's "#hvtmp-N"): kept, not copied; as hv__v2_put. */
static inline void hv__v2_put_ref(ctx_t *c, hv__jv_t *o, const char *key, const char *s, unsigned flags) {
    hv__jv_put(c->arena, o, key, hv__jv_str_ref(c->arena, s), flags);
}
/* The FHIR model's name of element e when it is the text name[0..n) (not a choice "value[x]"
 * written as "valueQuantity"), for a constant key; NULL otherwise. */
static inline const char *hv__v2_model_key(const hv_fhir_elem_t *e, const char *name, size_t n) {
    const char *k = hv_fhir_elem_name(e);
    return strncmp(k, name, n) == 0 && k[n] == '\0' ? k : NULL;
}

/* N of a "#hvtmp-N" text (s points after the prefix) for comparing with resource counts:
 * strtoul's value, except that any number too large to be an index (strtoul saturates) is
 * SIZE_MAX. Plain digits are read here; anything else (a sign, blanks: text only a message
 * could have written) goes to strtoul. */
static inline size_t hv__v2_tmp_index(const char *s) {
    size_t k = 0;
    if (*s < '0' || *s > '9') return strtoul(s, NULL, 10);
    while (*s >= '0' && *s <= '9' && k < SIZE_MAX / 16) k = k * 10 + (size_t)(*s++ - '0');
    return *s >= '0' && *s <= '9' ? SIZE_MAX : k;
}

/* v2_values.c: spans of the message, issues, FHIR primitive values. */

/* The rows being applied as text, for an issue's location and --explain (in c->rule). */
const char *hv__v2_rule_text(ctx_t *c);
/* Adds an issue to the OperationOutcome (at most MAX_ISSUES). */
void hv__v2_issue(ctx_t *c, const char *severity, const char *code, const char *where, const char *fmt, ...)
    HV_PRINTF(5, 6);
/* The text of a raw span, unescaped (HL7 v2.5.1 §2.7), trimmed; arena. */
char *hv__v2_span_text(ctx_t *c, span_t s);
/* True when the span holds something other than blanks and is not the null value "". */
int hv__v2_span_valued(span_t s);
/* Field f (1-based, all repetitions) of a segment span; MSH-1 is the separator itself. */
span_t hv__v2_seg_field(ctx_t *c, span_t seg, unsigned f);
/* Piece i (1-based) of a span at a level (1 components, 2 subcomponents). */
span_t hv__v2_piece(const ctx_t *c, span_t s, int level, unsigned i);
/* An HL7 table 0396 coding system name as a FHIR system URI (arena or static). */
const char *hv__v2_coding_system_uri(ctx_t *c, const char *name);
/* The JSON value of a FHIR primitive of type tname from text; NULL when not valid. The value may
 * keep text itself: text must outlive the message's tree (arena or table text). tname is the
 * model's name of the type (hv_fhir_type_name: static; its kind is cached by address). */
hv__jv_t *hv__v2_primitive(ctx_t *c, const char *tname, const char *text);

/* hv_fhir_elem_child through the context's cache; names longer than the cache's slots go
 * to the model directly. */
const hv_fhir_elem_t *hv__v2_elem_child(ctx_t *c, const hv_fhir_elem_t *owner, const char *name, size_t len,
                                        const hv_fhir_type_t **chosen);
/* The children of owner whose minimum cardinality is at least 1, through the context's cache:
 * *n of them at the returned array; NULL when there are more than the cache holds (then walk
 * the model). */
const hv_fhir_elem_t *const *hv__v2_elem_required(ctx_t *c, const hv_fhir_elem_t *owner, size_t *n);

/* v2_cond.c: evaluates a row's compiled condition (or, for a hand-made row, its text). */
int hv__v2_cond_eval(ctx_t *c, const hv__cond_t *cc, const char *text, span_t seg, span_t dt, int dt_level);
/* The literals of a guard switch (hv__guard_sw_t) the switch's operand equals in this segment:
 * bit i for sw->lit[i]. A member row's guard holds when its gmask meets them. */
uint32_t hv__v2_guard_match(ctx_t *c, const hv__guard_sw_t *sw, span_t seg, span_t dt, int dt_level);
/* The rest of a compiled condition after its guard, which held (cc->guard set, not guard_all). */
int hv__v2_cond_rest(ctx_t *c, const hv__cond_t *cc, span_t seg, span_t dt, int dt_level);

/* v2_apply.c: resources and the rows that write their elements. */

/* A new resource of the type in a slot ("Patient[1]", NULL none); NULL at the cap. */
res_t *hv__v2_res_new(ctx_t *c, const char *type, const char *slot);
/* The "#hvtmp-N" reference to a resource until identities are known. */
const char *hv__v2_ref_to(res_t *r);
/* Writes one row's value v (level: 1 field repetition, 2 component, 3 raw) under tg. */
void hv__v2_apply_row(ctx_t *c, const hv__map_row_t *row, span_t v, int level, span_t seg, target_t *tg,
                      unsigned rep, int depth);
/* Applies the rows of a map to value v; with prim_out, only its "$value" rows, giving text. */
int hv__v2_apply_map(ctx_t *c, const char *map, span_t v, int level, span_t seg, target_t *tg,
                     const hv_fhir_type_t *ttype, unsigned rep, int depth, const char **prim_out);

/* v2_to_fhir.c: the resource in a slot ("Patient[1]"), NULL when none. */
res_t *hv__v2_slot_find(ctx_t *c, const char *slot);

/* v2_finish.c: defaults, cleaning, identities and the transaction Bundle (a new reference). */
int hv__v2_finish(ctx_t *c, hv__jv_t **bundle_out, hv_error_t *err);

#endif
