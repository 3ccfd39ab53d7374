/*
 * fhirpath_int.h — internals shared by the FHIRPath lexer, parser, evaluator and
 * function library (fhirpath_lex.c, fhirpath_parse.c, fhirpath_eval.c,
 * fhirpath_ops.c, fhirpath_value.c, fhirpath_funcs.c, fhirpath_strfn.c,
 * fhirpath_model.c, fhirpath_cmd.c). fhir/invariants.c also evaluates through them.
 */
#ifndef HV_FHIRPATH_INT_H
#define HV_FHIRPATH_INT_H

#include <json-c/json.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>

#include "engine/engine.h"
#include "fhir/fhir.h"
#include "fhir/fhirpath.h"

/* ------------------------------------------------------------------------- */
/* Model questions (answered by the generated model of fhir/fhir.h)          */
/* ------------------------------------------------------------------------- */

/*
 * A node carries its FHIR type and its owner: the element definition whose children
 * describe it (a type's root element, or a backbone element). Lookups go through
 * the model's handles and hash tables; nothing here allocates.
 */

/* Child `name` of owner: the element, whether it is a choice navigated by its base name
 * ("value" for value[x]), and for a non-choice its one type. 0 or HV_ENOTFOUND. */
int hv__fp_model_child(const hv_fhir_elem_t *owner, const char *name, size_t len, const hv_fhir_elem_t **e,
                       int *is_choice, const hv_fhir_type_t **chosen);
/* The System value class of a primitive type: 'b' Boolean, 'i' Integer, 'd' Decimal,
 * 's' String, 'D' Date, 'T' DateTime, 't' Time; 0 for other types. */
int hv__fp_prim_class(const hv_fhir_type_t *t);
/* Whether t is Quantity or one of its specializations (Age, Duration...). */
int hv__fp_is_quantity_type(const hv_fhir_type_t *t);

/* A type specifier (is, as, ofType) resolved at compile time. */
typedef struct hv__fp_typeref {
    const hv_fhir_type_t *fhir; /* the FHIR type, or NULL */
    int8_t sys;                 /* the System type (HV__FP_BOOL..HV__FP_QTY, 15 Any), 0 none */
    int8_t ns;                  /* 0 bare name, 'S' System., 'F' FHIR. */
} hv__fp_typeref_t;
void hv__fp_typeref_resolve(const char *qualified, hv__fp_typeref_t *out);

/* ------------------------------------------------------------------------- */
/* Values                                                                    */
/* ------------------------------------------------------------------------- */

/* An exact decimal: m × 10^-s, s in [0, HV__FP_DEC_MAXSCALE]. */
#define HV__FP_DEC_MAXSCALE 16
typedef struct hv__fp_dec {
    int64_t m;
    int s;
} hv__fp_dec_t;

/* Date/time precisions. */
enum { HV__FP_P_YEAR = 1, HV__FP_P_MONTH, HV__FP_P_DAY, HV__FP_P_HOUR, HV__FP_P_MINUTE,
       HV__FP_P_SECOND, HV__FP_P_MS };

/* A Date, DateTime or Time with its precision; tz in minutes east of UTC when has_tz. */
typedef struct hv__fp_dt {
    int32_t year;
    int8_t month, day, hour, minute, second;
    uint8_t prec, has_tz;
    int16_t ms;
    int16_t tz;
} hv__fp_dt_t;

enum hv__fp_kind {
    HV__FP_NODE = 0, HV__FP_BOOL, HV__FP_INT, HV__FP_DEC, HV__FP_STR, HV__FP_DATE,
    HV__FP_DATETIME, HV__FP_TIME, HV__FP_QTY
};

/*
 * One item of a collection. A NODE is an element of the resource: j is its JSON
 * value (NULL when a primitive has only its "_name" extension object), ext that
 * "_name" object or NULL, t its FHIR type and owner the element definition its
 * children are looked up under.
 */
typedef struct hv__fp_item {
    uint8_t kind;
    union {
        struct {
            struct json_object *j;
            struct json_object *ext;
            const hv_fhir_type_t *t;      /* NULL when the model does not know it */
            const hv_fhir_elem_t *owner;  /* whose children describe it; NULL: plain JSON */
        } n;
        int b;
        int64_t i;
        hv__fp_dec_t d;
        struct {
            const char *p;
            size_t len;
        } s;
        hv__fp_dt_t dt;
        struct {
            hv__fp_dec_t v;
            const char *unit; /* UCUM code or calendar word ("year", "days") */
        } q;
    } u;
} hv__fp_item_t;

typedef struct hv__fp_coll {
    hv__fp_item_t *v;
    size_t n, cap;
} hv__fp_coll_t;

/* ------------------------------------------------------------------------- */
/* Syntax tree                                                               */
/* ------------------------------------------------------------------------- */

enum hv__fp_op {
    HV__FP_N_LIT = 1, /* literal: lit */
    HV__FP_N_EMPTY,   /* {} */
    HV__FP_N_IDENT,   /* name: child of the focus, or the focus when it is of type name */
    HV__FP_N_MEMBER,  /* left.name */
    HV__FP_N_FUNC,    /* left.name(args) or name(args) with left NULL */
    HV__FP_N_INDEX,   /* left[right] */
    HV__FP_N_VAR,     /* %name */
    HV__FP_N_THIS, HV__FP_N_INDEXVAR, HV__FP_N_TOTAL,
    HV__FP_N_NEG, HV__FP_N_POS,
    HV__FP_N_IS, HV__FP_N_AS, /* left is/as name (a type specifier) */
    /* binary operators: left op right */
    HV__FP_N_MUL, HV__FP_N_DIV, HV__FP_N_IDIV, HV__FP_N_MOD,
    HV__FP_N_ADD, HV__FP_N_SUB, HV__FP_N_CONCAT,
    HV__FP_N_UNION,
    HV__FP_N_LT, HV__FP_N_GT, HV__FP_N_LE, HV__FP_N_GE,
    HV__FP_N_EQ, HV__FP_N_EQUIV, HV__FP_N_NE, HV__FP_N_NEQUIV,
    HV__FP_N_IN, HV__FP_N_CONTAINS,
    HV__FP_N_AND, HV__FP_N_OR, HV__FP_N_XOR, HV__FP_N_IMPLIES
};

typedef struct hv__fp_node hv__fp_node_t;
struct hv__fp_node {
    uint8_t op;
    int16_t fn;     /* FUNC: index in the function table */
    uint16_t nargs;
    int col;        /* 1-based column of the node's first token */
    int line;
    const char *name; /* IDENT, MEMBER, FUNC, VAR, IS/AS (the qualified type), NUL-terminated */
    size_t namelen;
    hv__fp_typeref_t tref; /* IS/AS and the type argument of is/as/ofType; IDENT: a type name */
    /* IDENT/MEMBER: the last model lookup of this name, packed as owner id + 1 (16 bits),
     * element id + 1 (16), chosen type id + 1 (16) and the choice flag (bit 48). Written
     * and read atomically (relaxed): a compiled expression stays shareable between
     * threads, and a stale or racing entry is only a cache miss. */
    _Atomic uint64_t cache;
    hv__fp_node_t *left, *right;
    hv__fp_node_t **args;
    hv__fp_item_t lit;
};

struct hv_fhirpath {
    hv_arena_t *arena; /* owns every node and string */
    hv__fp_node_t *root;
    hv_fhirpath_limits_t lim;
};

/* ------------------------------------------------------------------------- */
/* Lexer                                                                     */
/* ------------------------------------------------------------------------- */

enum hv__fp_tok {
    HV__FP_T_EOF = 0, HV__FP_T_IDENT, HV__FP_T_DELIM, /* `delimited identifier` */
    HV__FP_T_STRING, HV__FP_T_NUMBER, HV__FP_T_LONG, HV__FP_T_DATE, HV__FP_T_DATETIME,
    HV__FP_T_TIME, HV__FP_T_VAR /* %name */, HV__FP_T_DOLLAR /* $this... */,
    HV__FP_T_OP /* punctuation and symbolic operators, text in tok */
};

typedef struct hv__fp_token {
    int type;
    const char *p; /* the token's text in the source */
    size_t len;
    int line, col;
    char *val;     /* STRING, DELIM, VAR: the unescaped value (arena) */
} hv__fp_token_t;

typedef struct hv__fp_lexer {
    const char *src, *end, *cur;
    int line;
    const char *line_start;
    hv_arena_t *arena;
    hv_error_t *err;
} hv__fp_lexer_t;

/* Reads the next token; HV_EPROTO with err filled on a lexical error. */
int hv__fp_lex_next(hv__fp_lexer_t *lx, hv__fp_token_t *t);

/* Parses the text of a Date/DateTime/Time literal (without '@'/"@T"). 0 or HV_EINVAL. */
int hv__fp_dt_parse(const char *s, size_t n, int kind, hv__fp_dt_t *out);

/* ------------------------------------------------------------------------- */
/* Evaluation                                                                */
/* ------------------------------------------------------------------------- */

typedef struct hv__fp_ctx {
    hv_arena_t *arena;
    const hv_fhirpath_env_t *env;
    const hv_fhirpath_t *fp;
    hv_error_t *err;
    hv__fp_item_t resource, root, context;
    hv__fp_coll_t *this_;   /* the $this item, when inside a function argument */
    const hv__fp_item_t *thisv;
    int64_t index;          /* $index */
    hv__fp_coll_t *total;   /* $total in aggregate() */
    unsigned depth;
    uint64_t now_ms;
} hv__fp_ctx_t;

/* Function table entry. */
typedef int (*hv__fp_fn)(hv__fp_ctx_t *c, const hv__fp_node_t *n, const hv__fp_coll_t *in,
                         hv__fp_coll_t *out);
typedef struct hv__fp_func {
    const char *name;
    int8_t min_args, max_args;
    hv__fp_fn fn;
} hv__fp_func_t;

extern const hv__fp_func_t hv__fp_funcs[];

/* The functions of fhirpath_strfn.c (string, math, conversion, boundaries): name, arities. */
#define HV__FP_STRFN_LIST(X)                                                                       \
    X(indexOf, 1, 1) X(lastIndexOf, 1, 1) X(substring, 1, 2) X(startsWith, 1, 1) X(endsWith, 1, 1) \
    X(contains, 1, 1) X(upper, 0, 0) X(lower, 0, 0) X(replace, 2, 2) X(matches, 1, 1)              \
    X(matchesFull, 1, 1) X(replaceMatches, 2, 2) X(length, 0, 0) X(toChars, 0, 0) X(split, 1, 1)   \
    X(join, 0, 1) X(trim, 0, 0) X(encode, 1, 1) X(decode, 1, 1) X(escape, 1, 1) X(unescape, 1, 1)  \
    X(abs, 0, 0) X(ceiling, 0, 0) X(exp, 0, 0) X(floor, 0, 0) X(ln, 0, 0) X(log, 1, 1)             \
    X(power, 1, 1) X(round, 0, 1) X(sqrt, 0, 0) X(truncate, 0, 0) X(toBoolean, 0, 0)                \
    X(convertsToBoolean, 0, 0) X(toInteger, 0, 0) X(convertsToInteger, 0, 0) X(toDecimal, 0, 0)    \
    X(convertsToDecimal, 0, 0) X(toString, 0, 0) X(convertsToString, 0, 0) X(toDate, 0, 0)         \
    X(convertsToDate, 0, 0) X(toDateTime, 0, 0) X(convertsToDateTime, 0, 0) X(toTime, 0, 0)        \
    X(convertsToTime, 0, 0) X(toQuantity, 0, 1) X(convertsToQuantity, 0, 1) X(lowBoundary, 0, 1)   \
    X(highBoundary, 0, 1) X(precision, 0, 0) X(comparable, 1, 1)
#define HV__FP_STRFN_DECL(name, a, b)                                                        \
    int hv__fp_fn_##name(hv__fp_ctx_t *c, const hv__fp_node_t *n, const hv__fp_coll_t *in, \
                         hv__fp_coll_t *out);
HV__FP_STRFN_LIST(HV__FP_STRFN_DECL)
#define HV__FP_STRFN_ENTRY(name, a, b) {#name, a, b, hv__fp_fn_##name},
#define HV__FP_STRFN_TABLE HV__FP_STRFN_LIST(HV__FP_STRFN_ENTRY)
/* The index of a function by name, or -1. */
int hv__fp_func_find(const char *name);
/* Is function fi one whose arguments name a type (is, as, ofType)? */
int hv__fp_func_takes_type(int fi);

int hv__fp_eval(hv__fp_ctx_t *c, const hv__fp_node_t *n, const hv__fp_coll_t *focus,
                hv__fp_coll_t *out);
/* Evaluates argument `a` once per item of `in` with $this bound to it. */
int hv__fp_eval_with_this(hv__fp_ctx_t *c, const hv__fp_node_t *a, const hv__fp_item_t *it,
                          int64_t index, hv__fp_coll_t *out);
/* Evaluates an argument against the function's input focus (not per item). */
int hv__fp_eval_arg(hv__fp_ctx_t *c, const hv__fp_node_t *a, const hv__fp_coll_t *focus,
                    hv__fp_coll_t *out);

int hv__fp_fail(hv__fp_ctx_t *c, const hv__fp_node_t *n, int code, const char *fmt, ...)
    HV_PRINTF(4, 5);

/* Collections. */
int hv__fp_push(hv__fp_ctx_t *c, hv__fp_coll_t *o, const hv__fp_item_t *it);
int hv__fp_push_all(hv__fp_ctx_t *c, hv__fp_coll_t *o, const hv__fp_coll_t *in);
int hv__fp_push_bool(hv__fp_ctx_t *c, hv__fp_coll_t *o, int b);
int hv__fp_push_int(hv__fp_ctx_t *c, hv__fp_coll_t *o, int64_t i);
int hv__fp_push_str(hv__fp_ctx_t *c, hv__fp_coll_t *o, const char *p, size_t len);
int hv__fp_push_dec(hv__fp_ctx_t *c, hv__fp_coll_t *o, hv__fp_dec_t d);

/* Children of a node item named `name` (choice types resolved), appended to out. */
int hv__fp_children(hv__fp_ctx_t *c, const hv__fp_node_t *n, const hv__fp_item_t *it,
                    const char *name, hv__fp_coll_t *out);
/* All children of a node item, in document order. */
int hv__fp_all_children(hv__fp_ctx_t *c, const hv__fp_item_t *it, hv__fp_coll_t *out);
/* Builds a node item for JSON j of FHIR type t (NULL: from resourceType, if any). */
void hv__fp_make_node(hv__fp_item_t *it, struct json_object *j, struct json_object *ext,
                      const hv_fhir_type_t *t, const hv_fhir_elem_t *owner);

/* Converts a primitive node to its System value (in place into out); returns 1 if converted,
 * 0 if the item is not a primitive (it is copied unchanged). */
int hv__fp_prim(hv__fp_ctx_t *c, const hv__fp_item_t *it, hv__fp_item_t *out);
/* Converts quantity q into unit (UCUM); HV_EINVAL when not commensurable. */
int hv__fp_qty_convert(const hv__fp_item_t *q, const char *unit, hv__fp_dec_t *out);
/* A FHIR Quantity node to a System Quantity; 1 on success. */
int hv__fp_node_quantity(hv__fp_ctx_t *c, const hv__fp_item_t *it, hv__fp_item_t *out);
/* The single item of a collection as a value, with errors per FHIRPath singleton evaluation. */
int hv__fp_singleton(hv__fp_ctx_t *c, const hv__fp_node_t *n, const hv__fp_coll_t *in,
                     hv__fp_item_t *out, int *present);
/* Singleton evaluation of collections as Boolean (fhirpath.html#singleton-evaluation-of-collections):
 * *b = -1 for empty. */
int hv__fp_as_bool(hv__fp_ctx_t *c, const hv__fp_node_t *n, const hv__fp_coll_t *in, int *b);
/* Singleton string/integer arguments; *present is 0 when empty. */
int hv__fp_arg_str(hv__fp_ctx_t *c, const hv__fp_node_t *n, const hv__fp_coll_t *focus, int ai,
                   const char **s, size_t *len, int *present);
int hv__fp_arg_int(hv__fp_ctx_t *c, const hv__fp_node_t *n, const hv__fp_coll_t *focus, int ai,
                   int64_t *v, int *present);

/* Type names: the FHIRPath type of an item ("FHIR.HumanName", "System.Integer"). */
const char *hv__fp_type_name(const hv__fp_item_t *it, const char **ns);
/* is-a test of item against a resolved type; -1 if the type is unknown. With exact_prim,
 * a primitive matches only its own type (as() and ofType()). */
int hv__fp_is_type(const hv__fp_item_t *it, const hv__fp_typeref_t *tr, int exact_prim);

/* Equality (=) and equivalence (~) of two items: 1, 0, or -1 for empty (not comparable). */
int hv__fp_item_eq(hv__fp_ctx_t *c, const hv__fp_item_t *a, const hv__fp_item_t *b);
int hv__fp_item_equiv(hv__fp_ctx_t *c, const hv__fp_item_t *a, const hv__fp_item_t *b);
/* Ordering: *r < 0, 0, > 0; returns 1 ok, 0 incomparable (empty result), HV_E* error. */
int hv__fp_item_cmp(hv__fp_ctx_t *c, const hv__fp_node_t *n, const hv__fp_item_t *a,
                    const hv__fp_item_t *b, int *r);
int hv__fp_binop(hv__fp_ctx_t *c, const hv__fp_node_t *n, const hv__fp_coll_t *l,
                 const hv__fp_coll_t *r, hv__fp_coll_t *out);

/* Decimals. */
int hv__fp_dec_parse(const char *s, size_t n, hv__fp_dec_t *out);
void hv__fp_dec_norm(hv__fp_dec_t *d); /* strips trailing zeros of the fraction */
int hv__fp_dec_cmp(hv__fp_dec_t a, hv__fp_dec_t b);
int hv__fp_dec_add(hv__fp_dec_t a, hv__fp_dec_t b, hv__fp_dec_t *r);
int hv__fp_dec_mul(hv__fp_dec_t a, hv__fp_dec_t b, hv__fp_dec_t *r);
int hv__fp_dec_div(hv__fp_dec_t a, hv__fp_dec_t b, hv__fp_dec_t *r);
double hv__fp_dec_to_double(hv__fp_dec_t d);
int hv__fp_dec_from_double(double v, hv__fp_dec_t *out);
hv__fp_dec_t hv__fp_dec_from_int(int64_t i);
/* Rounds to `digits` places (half away from zero). */
hv__fp_dec_t hv__fp_dec_round(hv__fp_dec_t d, int digits);
/* Writes d (at least one digit after '.' only if s > 0). */
int hv__fp_dec_str(hv__fp_dec_t d, char *out, size_t outlen);

/* Dates. */
int hv__fp_dt_str(const hv__fp_dt_t *d, int kind, char *out, size_t outlen);
/* Compares; returns 1 and *r, 0 when precision makes it uncertain (empty). */
int hv__fp_dt_cmp(const hv__fp_dt_t *a, const hv__fp_dt_t *b, int kind, int *r);
/* Adds amount of a calendar unit (1 year ... 7 ms, 8 week) to d. */
int hv__fp_dt_add(hv__fp_dt_t *d, int kind, int unit, int64_t amount);
/* The calendar unit of a quantity unit: 1..7, 8 (week), 0 none; *ucum set when a UCUM code. */
int hv__fp_cal_unit(const char *u, int *ucum);

/* The fhirpath command, with its streams (tests run it directly). Returns an exit code. */
int hv__fp_cli(const hv_fhirpath_limits_t *lim, int argc, char **argv, FILE *in, FILE *out, FILE *errf);

/* Text of an item for toString() and output; arena string. */
const char *hv__fp_to_string(hv__fp_ctx_t *c, const hv__fp_item_t *it, size_t *len);

#endif /* HV_FHIRPATH_INT_H */
