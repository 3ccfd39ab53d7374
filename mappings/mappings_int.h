/*
 * mappings_int.h — internals shared by the files of the mapping module: the loaded
 * HL7 v2 → FHIR tables (mappings/v2_load.c) that the engine (mappings/v2_to_fhir.c and the
 * files of mappings/v2_int.h) runs. The line format is documented in docs/mappings.md.
 */
#ifndef HV_MAPPINGS_INT_H
#define HV_MAPPINGS_INT_H

#include <stddef.h>
#include <stdint.h>

#include "mappings/mappings.h"

/* The generated lines (mappings/v2_tables.c), NULL-terminated. */
extern const char *const hv__map_v2_lines[];

/*
 * A condition compiled once at load (mappings/v2_cond.c). A row's compiled condition is
 * NULL when it is always true; `never` is set when the text cannot be read ("?", an
 * unknown operator): such a row is never applied.
 */
#define HV__COND_MAX_STACK 24
enum {
    HV__COND_EMPTY,  /* an operand path that names nothing: unvalued */
    HV__COND_FIELD,  /* @SEG-a[.b] */
    HV__COND_COMP,   /* @.a[.b] */
    HV__COND_LIT,    /* 'text */
    HV__COND_NUM,    /* #n */
    HV__COND_VALUED, HV__COND_NOT, HV__COND_COUNT, HV__COND_LEN,
    HV__COND_GT, HV__COND_GE, HV__COND_LT, HV__COND_LE,
    HV__COND_EQ,      /* numbers (or counts) */
    HV__COND_EQ_TEXT, /* two texts, case-insensitive */
    HV__COND_OR, HV__COND_AND,
    HV__COND_IN /* num: how many candidates follow the value */
};
typedef struct hv__cond_op {
    unsigned char kind;
    char seg[4];   /* FIELD: the segment id */
    unsigned a, b; /* FIELD: field and component; COMP: component and subcomponent */
    const char *s; /* LIT: the decoded text */
    size_t n;      /* LIT: its length */
    long num;      /* NUM: the number; IN: the candidate count */
    /* Short-circuit: this op ends the left operand of the AND (jf) or OR (jt) at index
     * jf - 1 (jt - 1); when its value already decides that op, evaluation continues after
     * it. 0: none. */
    unsigned short jf, jt;
} hv__cond_op_t;
typedef struct hv__cond {
    int never;
    size_t nops;
    hv__cond_op_t *ops;
    /* The leading test (set by the compiler, v2_cond.c find_guard): ops[0..guard) are a path
     * compared with literals ("@OBX-2 'NM eq", "@OBX-2 'ST 'FT 'TX in3") whose falsity makes
     * the whole condition false (it is the condition, or the left operand of an AND chain up
     * to the root); 0: none. guard_all: the test is the whole condition. The evaluator tests
     * it first, so that the rows of one field that each name another OBX-2 value cost one
     * comparison. */
    unsigned char guard, guard_all;
} hv__cond_t;
/* Compiles a condition's text into arena memory; *cc as described above. HV_ENOMEM only. */
int hv__map_cond_compile(hv_arena_t *arena, const char *text, const hv__cond_t **cc);

/*
 * The guard switch of a run of rows (built at load, v2_cond.c hv__map_guard_build): the rows
 * of one run (one source field of one map) whose compiled conditions start with a guard on
 * the same segment field ("@OBX-2 'NM eq", "@OBX-2 'ST 'FT 'TX in3", ... for the 25 OBX-5
 * rows) share it. lit[0..n) are the distinct literals (byte-equal ones once) of those guards;
 * each member row's gmask has bit i set when literal i is one of its guard's. The engine
 * reads the operand once, compares it with every literal as the guard would (case-insensitive),
 * and a member row's guard holds exactly when its gmask meets the matching literals' bits.
 */
#define HV__GUARD_SW_MAX 32
typedef struct hv__guard_sw {
    const hv__cond_op_t *op; /* the guard's FIELD operand (ops[0] of the first member) */
    unsigned n;
    const char *lit[HV__GUARD_SW_MAX];
    size_t len[HV__GUARD_SW_MAX];
} hv__guard_sw_t;

/* One row of a segment or data-type map ("map" lines). */
typedef struct hv__map_row {
    const char *map;    /* "PID[Patient]", "CX[Identifier]" */
    unsigned seq;       /* the table's sort order */
    unsigned src_f;     /* the field (segment maps) or component (data-type maps); 0: none */
    unsigned src_c;     /* a component of that field ("OBX-5.1" → 1); 0: the whole */
    const char *cond;   /* postfix condition; "" always; "?" never (not readable) */
    const char *target; /* FHIR path relative to the resource or data type */
    const char *type;   /* FHIR type as the table names it */
    const char *dtmap;  /* the data-type map to apply to the value, "" none */
    const char *vocab;  /* the concept map for the value, "" none */
    const char *assign; /* a constant to assign; "=..." an expression (not applied) */
    const char *origin; /* "mappings/v2/maps.tsv" or the override file, for --explain */
    /* Set when the tables are loaded (finish() in v2_load.c): */
    const hv__cond_t *cc;            /* the compiled condition; NULL: always true */
    unsigned char prim;              /* the target is "$value" or "$this" */
    unsigned char dt_resolved;       /* dt_rows/dt_n are the rows of dtmap */
    const struct hv__map_row *dt_rows; /* NULL: dtmap has no rows */
    size_t dt_n;
    unsigned char vocab_resolved;    /* vocab_rows/vocab_n are the entries of vocab */
    const struct hv__vocab_row *vocab_rows; /* sorted by code; NULL: vocab is not a known map */
    size_t vocab_n;
    /* The rows from this one to the end of the run of rows of its map with the same src_f
     * (>= 1; 0 in a row made by hand, taken as 1): when that field or component is not
     * valued, hv__v2_apply_map skips the run at once. */
    unsigned run;
    /* The guard switch of the row's run when the row's guard is one of its members (set at
     * load, hv__map_guard_build; NULL: none, the condition is evaluated as it is), and the
     * bits of the switch's literals its guard compares with. */
    const hv__guard_sw_t *gsw;
    uint32_t gmask;
    /* On the first row of each map of the tables (set at load, v2_load.c finish): the map's
     * plan; NULL on other rows and on rows made by hand. */
    const struct hv__map_plan *plan;
} hv__map_row_t;

/*
 * The plan of one map (built at load): the positions of its rows (in table order) that
 * hv__v2_apply_map visits, for the two kinds of calls — all[] for a call that writes
 * elements (every row but a "$value"/"$this" row without a data-type map, which such a call
 * never applies) and val[] for a call that wants the map's primitive value (only the
 * "$value"/"$this" rows) — and for each position the position after the run of rows with
 * the same source field it starts or continues (skip[]), so that an empty field or component
 * passes over its rows in one step. rows: the first row of the map (the plan is used only
 * for that array).
 */
typedef struct hv__map_plan {
    const struct hv__map_row *rows;
    unsigned nall, nval;
    const unsigned *all, *all_skip;
    const unsigned *val, *val_skip;
} hv__map_plan_t;

/* Builds the guard switches of the rows[0..n) of one map (each run of one source field), in
 * arena memory. HV_ENOMEM only. */
int hv__map_guard_build(hv_arena_t *arena, hv__map_row_t *rows, size_t n);

/*
 * One "A.path.reference=B.id" of a message row, read by hv__map_ref_parse by the rules the
 * engine applies (v2_to_fhir.c apply_ref): ok 0 when the text is not of that form (it sets
 * nothing). a, b: the resource names ("Observation[2]", "Patient"), NUL-terminated, with the
 * length of their type part (before '['); steps[0..nsteps): the path's steps without
 * "[...]", NUL-terminated, split at '.' as strtok_r splits (empty steps skipped); last[i] is
 * set where the text after step i's delimiter is empty.
 */
typedef struct hv__msg_ref {
    int ok;
    const char *a, *b;
    size_t a_type, b_type;
    size_t nsteps;
    const char **steps;
    unsigned char *last;
} hv__msg_ref_t;
/* Reads ref into *r (strings in arena); HV_ENOMEM only. */
int hv__map_ref_parse(hv_arena_t *arena, const char *ref, hv__msg_ref_t *r);

/* One row of a message structure ("msg" lines). */
typedef struct hv__msg_row {
    const char *structure; /* "ORU_R01" */
    unsigned seq;
    char seg[4];
    const char *group;  /* "ORU_R01.PATIENT_RESULT.ORDER_OBSERVATION.OBSERVATION" */
    const char *cond;
    const char *target; /* "Observation[2]" */
    const char *segmap; /* "OBX[Observation]" */
    const char *refs;   /* "A.x.reference=B.id ; ..." */
    const hv__cond_t *cc; /* the compiled condition (set at load); NULL: always true */
    unsigned char seg_resolved; /* seg_rows/seg_n are the rows of segmap (set at load) */
    const hv__map_row_t *seg_rows;
    size_t seg_n;
    /* Set at load (finish() in v2_load.c) when refs_split: the references of refs, split at
     * ';' and trimmed, in order (refs_n of them); target_kind: MSG_T_BUNDLE for "Bundle",
     * MSG_T_ELEMENT when the target has '.' or '(' (an element of another resource),
     * MSG_T_SLOT otherwise; res_type: the slot's type ("Observation" of "Observation[2]"). */
    unsigned char refs_split, target_kind;
    const char *const *refs_list;
    const hv__msg_ref_t *refs_parsed; /* refs_list read (hv__msg_ref_t), refs_n of them */
    size_t refs_n;
    const char *res_type;
} hv__msg_row_t;
enum { MSG_T_SLOT, MSG_T_BUNDLE, MSG_T_ELEMENT };

/* One concept-map entry ("vocab" lines); sorted by map (case-insensitive), then code. */
typedef struct hv__vocab_row {
    const char *map, *code, *fcode, *system, *display;
} hv__vocab_row_t;

/* A run of rows with one key, found by binary search. */
typedef struct hv__map_span {
    const char *key;
    size_t start, count;
} hv__map_span_t;

typedef struct hv_map_tables {
    hv_arena_t *arena;
    hv__map_row_t *maps;
    size_t nmaps;
    hv__msg_row_t *msgs;
    size_t nmsgs;
    hv__vocab_row_t *vocab;
    size_t nvocab;
    hv__map_span_t *map_index; /* by map name, case-insensitive */
    size_t nmap_index;
} hv_map_tables_t;

/*
 * The built-in tables, read once (thread-safe) from hv__map_v2_lines; NULL only
 * when out of memory. Never freed.
 */
const hv_map_tables_t *hv__map_tables_default(void);
/*
 * The built-in tables with the rows of an override file (same line format): a row
 * whose key (map rows: map, source, target, condition; msg rows: structure, segment,
 * group, segment map, target; vocab rows: concept map, code) matches a built-in row
 * replaces it, others are added. HV_ECONFIG with err "file:line: …" on a bad line.
 */
int hv__map_tables_load(const char *override_file, hv_map_tables_t **out, hv_error_t *err);
void hv__map_tables_free(hv_map_tables_t *t);

/* The rows of a map (case-insensitive name); *n = 0 when unknown. */
const hv__map_row_t *hv__map_rows(const hv_map_tables_t *t, const char *map, size_t *n);
/* The msg rows of a structure for a segment id, in table order; *n = 0 when none. */
const hv__msg_row_t *hv__msg_rows(const hv_map_tables_t *t, const char *structure, const char *seg,
                                  size_t *n);
/* True when the tables have rows for this structure. */
int hv__msg_structure_known(const hv_map_tables_t *t, const char *structure);
/* True when the tables have a concept map of that name. */
int hv__vocab_known(const hv_map_tables_t *t, const char *map);
/* A concept map entry, NULL when the code has none. */
const hv__vocab_row_t *hv__vocab_find(const hv_map_tables_t *t, const char *map, const char *code);

/*
 * The JSON tree of the HL7 v2 → FHIR engine (mappings/jtree.c): values allocated from an arena,
 * objects keeping their members in the order first added. Every constructor returns NULL on
 * ENOMEM, and hv__jv_put / hv__jv_push take a NULL value as that ENOMEM (so calls nest).
 */
#define HV__JV_MAX_DEPTH 64
enum { HV__JV_NULL, HV__JV_BOOL, HV__JV_INT, HV__JV_NUM, HV__JV_STR, HV__JV_ARR, HV__JV_OBJ };
typedef struct hv__jv hv__jv_t;
typedef struct hv__jmem {
    const char *k;
    size_t klen;
    int plain; /* the key was put with HV__JV_KCONST: written without looking for escapes */
    hv__jv_t *v;
    struct hv__jmem *next;
    /* What the writer of the member says the key is (the v2 engine: its FHIR model element and
     * chosen type, a function of the key and of the object's element only), NULL unknown. */
    const void *tag, *tag2;
} hv__jmem_t;
struct hv__jv {
    unsigned char t;
    uint32_t n;   /* STR, NUM: text length; ARR: items; OBJ: members */
    uint32_t cap; /* ARR: room in u.a */
    double d;     /* NUM: the value (compared by hv__jv_equal) */
    union {
        long long i;     /* BOOL, INT */
        const char *s;   /* STR, NUM: the text (NUL-terminated) */
        hv__jv_t **a;    /* ARR */
        struct {
            hv__jmem_t *head, *tail;
        } o;             /* OBJ */
    } u;
};
hv__jv_t *hv__jv_obj(hv_arena_t *a);
hv__jv_t *hv__jv_arr(hv_arena_t *a);
hv__jv_t *hv__jv_bool(hv_arena_t *a, int b);
hv__jv_t *hv__jv_int(hv_arena_t *a, long long i);
/* A decimal written as text (its JSON form, e.g. "7.50"), compared by value d. */
hv__jv_t *hv__jv_num(hv_arena_t *a, double d, const char *text);
/* A string, copied into the arena; _ref keeps s itself (s must outlive the tree). */
hv__jv_t *hv__jv_str(hv_arena_t *a, const char *s);
hv__jv_t *hv__jv_strn(hv_arena_t *a, const char *s, size_t n);
hv__jv_t *hv__jv_str_ref(hv_arena_t *a, const char *s);
/* Replaces the text of string value v (a copy; _ref keeps s, which must outlive the tree). */
int hv__jv_set_str(hv_arena_t *a, hv__jv_t *v, const char *s);
int hv__jv_set_str_ref(hv__jv_t *v, const char *s);
/* Flags of hv__jv_put: KCONST keeps the key pointer (it outlives the tree) instead of a copy,
 * and promises that the key needs no JSON escape (a C literal or a FHIR model element name);
 * KNEW appends without looking for the key (only when o is known not to have it). */
#define HV__JV_KCONST 1u
#define HV__JV_KNEW 2u
/* Sets member key of object o to v: a member of that name keeps its place, else v is appended. */
int hv__jv_put(hv_arena_t *a, hv__jv_t *o, const char *key, hv__jv_t *v, unsigned flags);
/* As hv__jv_put, and the member's tags (hv__jmem_t.tag) set when tag is not NULL. */
int hv__jv_put_tag(hv_arena_t *a, hv__jv_t *o, const char *key, hv__jv_t *v, unsigned flags, const void *tag,
                   const void *tag2);
int hv__jv_put_str(hv_arena_t *a, hv__jv_t *o, const char *key, const char *s, unsigned flags);
/* The member key of o (NULL when o is not an object or has none); _str only a string's text. */
hv__jv_t *hv__jv_get(const hv__jv_t *o, const char *key);
const char *hv__jv_get_str(const hv__jv_t *o, const char *key);
/* As json_object_object_get_ex: 1 when o has member key (*v set to it, v may be NULL). */
static inline int hv__jv_get_ex(const hv__jv_t *o, const char *key, hv__jv_t **v) {
    hv__jv_t *x = hv__jv_get(o, key);
    if (v != NULL) *v = x;
    return x != NULL;
}
/* Members of an object, items of an array; 0 for anything else. */
static inline size_t hv__jv_len(const hv__jv_t *v) {
    return v != NULL && (v->t == HV__JV_OBJ || v->t == HV__JV_ARR) ? v->n : 0;
}
static inline int hv__jv_is(const hv__jv_t *v, int t) { return v != NULL && v->t == t; }
/* Removes member key; 1 when it was there. */
int hv__jv_del(hv__jv_t *o, const char *key);
int hv__jv_push(hv_arena_t *a, hv__jv_t *arr, hv__jv_t *v);
hv__jv_t *hv__jv_at(const hv__jv_t *arr, size_t i);
void hv__jv_del_at(hv__jv_t *arr, size_t i);
/* Deep equality as json_object_equal (members in any order); depth: 0 from the caller. */
int hv__jv_equal(const hv__jv_t *x, const hv__jv_t *y, int depth);
/* Appends v as JSON text (see jtree.c for the exact bytes); HV__JV_SLASH escapes '/' as json-c
 * does by default. On failure (HV_ETOOBIG at out's cap or past HV__JV_MAX_DEPTH, HV_ENOMEM)
 * out is left as it was. A capped out must have room for a string's worst case (six bytes a
 * byte) while it is written. */
#define HV__JV_SLASH 1u
int hv__jv_write(const hv__jv_t *v, hv_buf_t *out, unsigned flags);
/* The same tree as json-c objects (a new reference); NULL on ENOMEM. */
struct json_object *hv__jv_to_json(const hv__jv_t *v);

#endif
