/*
 * search_index.c — the write-time index of FHIR search (FHIR R4 search.html,
 * searchparameter-registry.html). For every search parameter of a resource's type
 * (its own, DomainResource's and Resource's), the parameter's FHIRPath expression
 * is evaluated on the resource and the values are written as rows of the index
 * table of the parameter's type (layout in fhir/search_int.h), in the transaction
 * that writes the version, so the index never disagrees with the current version.
 *
 * Expressions are compiled once per process (all of them, on first use) and kept
 * for its lifetime, each also specialized per resource type it applies to (see
 * specialize: alternatives for other types dropped, evaluation skipped when the
 * resource lacks the elements a plain path starts with). An expression that fails to
 * compile or to evaluate on a given resource indexes nothing for that parameter.
 *
 * The one entry point that writes a version's rows is hv__search_index_put: the
 * rows are collected, duplicates dropped, and written with multi-row INSERTs (see
 * "row writers" below) — or, for a transaction's creates, recorded in a batch whose
 * INSERTs carry the rows of all of them (hv__search_batch_flush).
 */
#include "config.h"

#include <json-c/json.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fhir/fhir_int.h"
#include "fhir/fhirpath.h"
#include "fhir/fhirpath_int.h"
#include "fhir/search_int.h"
#include "terminology/ucum.h"

const char hv__search_migration[] =
    "CREATE TABLE sp_str (type TEXT NOT NULL, id TEXT NOT NULL, code TEXT NOT NULL, value TEXT NOT NULL);"
    "CREATE INDEX sp_str_v ON sp_str (type, code, value);"
    "CREATE INDEX sp_str_id ON sp_str (type, id);"
    "CREATE TABLE sp_tok (type TEXT NOT NULL, id TEXT NOT NULL, code TEXT NOT NULL, system TEXT,"
    " value TEXT NOT NULL);"
    "CREATE INDEX sp_tok_v ON sp_tok (type, code, value);"
    "CREATE INDEX sp_tok_id ON sp_tok (type, id);"
    "CREATE TABLE sp_ref (type TEXT NOT NULL, id TEXT NOT NULL, code TEXT NOT NULL, rtype TEXT,"
    " rid TEXT NOT NULL);"
    "CREATE INDEX sp_ref_v ON sp_ref (type, code, rid);"
    "CREATE INDEX sp_ref_id ON sp_ref (type, id);"
    "CREATE TABLE sp_date (type TEXT NOT NULL, id TEXT NOT NULL, code TEXT NOT NULL, lo BIGINT NOT NULL,"
    " hi BIGINT NOT NULL);"
    "CREATE INDEX sp_date_v ON sp_date (type, code, lo);"
    "CREATE INDEX sp_date_id ON sp_date (type, id);"
    "CREATE TABLE sp_num (type TEXT NOT NULL, id TEXT NOT NULL, code TEXT NOT NULL, value DOUBLE PRECISION NOT NULL,"
    " system TEXT, unit TEXT);"
    "CREATE INDEX sp_num_v ON sp_num (type, code, value);"
    "CREATE INDEX sp_num_id ON sp_num (type, id);"
    "CREATE TABLE sp_uri (type TEXT NOT NULL, id TEXT NOT NULL, code TEXT NOT NULL, value TEXT NOT NULL);"
    "CREATE INDEX sp_uri_v ON sp_uri (type, code, value);"
    "CREATE INDEX sp_uri_id ON sp_uri (type, id);";

/*
 * The second migration: composite parameters keep their components' rows apart by
 * grp (the element the composite's expression selected, 1-based; 0 for plain rows),
 * and quantities keep their UCUM-canonical value and unit (NULL when the unit is not
 * UCUM or does not parse). Rows written before it have grp 0 and no canonical
 * value; `holovitals reindex` rewrites them.
 */
const char hv__search_migration2[] =
    "ALTER TABLE sp_str ADD COLUMN grp INTEGER NOT NULL DEFAULT 0;"
    "ALTER TABLE sp_tok ADD COLUMN grp INTEGER NOT NULL DEFAULT 0;"
    "ALTER TABLE sp_ref ADD COLUMN grp INTEGER NOT NULL DEFAULT 0;"
    "ALTER TABLE sp_date ADD COLUMN grp INTEGER NOT NULL DEFAULT 0;"
    "ALTER TABLE sp_num ADD COLUMN grp INTEGER NOT NULL DEFAULT 0;"
    "ALTER TABLE sp_uri ADD COLUMN grp INTEGER NOT NULL DEFAULT 0;"
    "ALTER TABLE sp_num ADD COLUMN cvalue DOUBLE PRECISION;"
    "ALTER TABLE sp_num ADD COLUMN cunit TEXT;"
    "CREATE INDEX sp_num_c ON sp_num (type, code, cunit, cvalue);";

/*
 * The hard limits of one resource version's index rows. Every value below them is
 * indexed; a resource above one is refused (HV_ETOOBIG, hv__search_refusal says which
 * parameter and limit) instead of being stored with some of its values missing from the
 * index, where a search for them would silently not find it. Far above any real resource
 * (a Synthea Observation writes about 20 rows, a Group with 10,000 members 10,000): they
 * bound the memory of one version's rows (about 100 bytes a row and its strings, in the
 * rows' arena) and the statements one write runs.
 */
#define MAX_VALUES_PER_PARAM 10000 /* rows one parameter writes for one resource (derived rows included) */
#define MAX_STR HV__SEARCH_STR_MAX /* longest indexed string value (bytes), longer ones truncated */

/* ---- the compiled expressions ---- */

#define MAX_COMPONENTS 4 /* components of one composite parameter (R4 has two or three) */
#define MAX_GROUPS 1000  /* elements one composite parameter indexes per resource (more: refused) */

typedef struct sp_entry {
    const hv_fhir_search_t *sp;
    hv_fhirpath_t *fp;
    /* composite: each component's expression, evaluated on an element fp selects
     * (hv_fhirpath_eval_item) */
    hv_fhirpath_t *comp[MAX_COMPONENTS];
    size_t ncomp;
    struct sp_spec *spec; /* per resource type the parameter applies to (see specialize) */
    size_t nspec;
    /* The types the parameter applies to where nothing can match (spec_none): kept as a
     * list, not as specs (see specialize_bases). */
    const hv_fhir_type_t **none;
    size_t nnone;
    int own_table;  /* 0: _id and _lastUpdated, searched on the resources table itself */
    int may_alias;  /* 1: the code is in row_alias (its rows may be another parameter's) */
} sp_entry_t;

static sp_entry_t *entries; /* sorted by sp pointer */
static size_t nentries;
/* Where the model's parameters start and their element size (entry_of), set by compile_all. */
static uintptr_t model_first, model_stride;
static pthread_once_t compile_once = PTHREAD_ONCE_INIT;

static int cmp_entry(const void *a, const void *b)
{
    const sp_entry_t *x = a, *y = b;
    return x->sp < y->sp ? -1 : x->sp > y->sp ? 1 : 0;
}

/*
 * Rewrites "where(resolve() is T)" into "where(reference.startsWith('T/'))": the
 * index has no resolver, and a relative reference names its target's type (absolute
 * URLs pointing elsewhere are therefore not restricted by type). Returns a new
 * string or NULL when there is nothing to rewrite.
 */
static char *rewrite_resolve(const char *expr)
{
    static const char pat[] = "where(resolve() is ";
    hv_buf_t b;
    const char *p = expr, *hit;
    char *out;
    if (strstr(expr, pat) == NULL)
        return NULL;
    hv_buf_init(&b, 64 * 1024);
    while ((hit = strstr(p, pat)) != NULL) {
        const char *t = hit + sizeof(pat) - 1, *e = strchr(t, ')');
        if (e == NULL)
            break;
        hv_buf_append(&b, p, (size_t)(hit - p));
        hv_buf_printf(&b, "where(reference.startsWith('%.*s/'))", (int)(e - t), t);
        p = e + 1;
    }
    hv_buf_puts(&b, p);
    out = b.data != NULL ? hv_strndup(b.data, b.len) : NULL;
    hv_buf_release(&b);
    return out;
}

/*
 * Specialization per resource type. Most parameters shared by several types have
 * an expression that is a union of one path per type ("Patient.name |
 * Practitioner.name | …"); on a resource of type T, every alternative rooted at
 * another resource type selects nothing (FHIRPath R4 §4.1: a type name as the first
 * path step filters the focus by type). So for each type a parameter applies to, the
 * alternatives rooted at a different resource type are dropped and the rest compiled
 * once. When each remaining alternative is a plain path — T.elem followed only by
 * element steps, where(…), ofType(…), as(…) or " as X", none of which can turn an
 * empty collection into a non-empty one — the set of top-level elements (elem) is
 * kept too: a resource having none of them (nor its choice variants elemX nor a
 * primitive's _elem) cannot give a value, and the evaluation is skipped. A type filter
 * right after a choice element ("T.value as Quantity") narrows elem to the variants the
 * filter keeps (valueQuantity: choice_keys).
 */
#define MAX_ALTS 64    /* alternatives of one expression considered for specialization */
#define MAX_KEYS 8     /* top-level elements one specialized expression may need */
#define KEY_MAX 48     /* longest element name */
#define MAX_STEPS 4    /* element steps of a path read directly (direct_of) */
#define MAX_VARIANTS 16 /* types of a choice element read directly (direct_of) */
#define MAX_UNION 4     /* alternatives of a union read directly (union_of) */

/* A member's name as its object's table files it (member_get): the model's own copy of the
 * name (hv__fhir_key_static, which the reader's trees use as their keys; NULL when the name is
 * none of the model's, as a twin's "_name") and its hash under json-c's string hash. */
typedef struct sp_key {
    const char *model_name;
    unsigned long hash;
} sp_key_t;

typedef struct sp_spec {
    const hv_fhir_type_t *type;
    hv_fhirpath_t *fp;   /* NULL: nothing can match for this type */
    int precheck;        /* 1 when keys is the complete list of needed top-level elements */
    size_t nkeys;
    char keys[MAX_KEYS][KEY_MAX];
    size_t keylen[MAX_KEYS]; /* strlen of each key */
    /* A direct one (direct_of): fp is a path of element names alone, "T.a.b" with a and b
     * no resources, b alone a choice, and a not a primitive ("Observation.code",
     * "Resource.meta.tag": three quarters of the evaluations an import made). index_direct
     * follows the members and gives index_item what the evaluation would; step[i] is
     * "_name", the twin's name, and step[i] + 1 the member's; the values are of type
     * direct_type. nsteps and nvariants 0: fp is evaluated. */
    size_t nsteps;
    char step[MAX_STEPS][KEY_MAX + 1];
    const char *direct_type;
    /* nvariants > 0: the last step is a choice element ("Observation.effective"), read as
     * hv__fp_children reads it: the first variant, in the model's type order, that the object
     * holds (variant[i] "_effectiveDateTime", its twin's name; variant[i] + 1 the member's),
     * its values of type variant_type[i]. variant_kept[i] 0: a type filter after the choice
     * (" as Quantity", direct_of) drops that variant's values. */
    size_t nvariants;
    char variant[MAX_VARIANTS][KEY_MAX + 1];
    const char *variant_type[MAX_VARIANTS];
    unsigned char variant_kept[MAX_VARIANTS];
    /* nunion > 0: fp is a union of nunion alternatives of t, each direct (unions[i], whose fp
     * is NULL). FHIRPath's '|' drops items equal by '=' (a Quantity's through UCUM), which a
     * direct read cannot follow: index_union reads them only when they give one item at most
     * together, and leaves more to the evaluation. */
    struct sp_spec *unions;
    size_t nunion;
    /* Not empty: the path ends in ".where(resolve() is X)" on a Reference, which the index
     * evaluates as where(reference.startsWith('X/')) (rewrite_resolve); ref_prefix is "X/"
     * and index_direct keeps the References whose reference starts with it ("patient":
     * "Observation.subject.where(resolve() is Patient)", on three quarters of an import's
     * resources). */
    char ref_prefix[KEY_MAX + 1];
    /* 1: the first element is a non-backbone element that every subtype of type inherits
     * as it is, so the path navigates alike from a subtype's root (a base type's own
     * parameter, _tag on an Observation). */
    int direct_any;
    int all_kept; /* no alternative was dropped: fp is the expression itself */
    /* The names step[i] + 1 and step[i] as member_get takes them ([i][0] and [i][1]), the
     * variants' likewise, hashed under key_fn, json-c's string hash of this process (NULL:
     * not hashed, hv_json_get_ex looks them up). */
    sp_key_t step_key[MAX_STEPS][2];
    sp_key_t variant_key[MAX_VARIANTS][2];
    hv__fhir_key_hash_fn *key_fn;
} sp_spec_t;

static int is_ident(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
}

/* Splits expr at its top-level '|' (outside parentheses and quotes) into at most max spans. */
static size_t split_alts(const char *expr, const char **start, size_t *len, size_t max)
{
    size_t n = 0;
    int depth = 0;
    const char *p = expr, *s = expr;
    for (; *p != '\0'; p++) {
        if (*p == '\'' || *p == '`') {
            char q = *p;
            for (p++; *p != '\0' && *p != q; p++)
                if (*p == '\\' && p[1] != '\0')
                    p++;
            if (*p == '\0')
                return 0;
        } else if (*p == '(') {
            depth++;
        } else if (*p == ')') {
            depth--;
        } else if (*p == '|' && depth == 0) {
            if (n == max)
                return 0;
            start[n] = s;
            len[n++] = (size_t)(p - s);
            s = p + 1;
        }
    }
    if (depth != 0 || n == max)
        return 0;
    start[n] = s;
    len[n++] = (size_t)(p - s);
    return n;
}

/* Reads an identifier at *p (advancing) into out; 0 when there is none or it is too long. */
static int read_ident(const char **p, const char *end, char *out, size_t cap)
{
    size_t k = 0;
    while (*p < end && is_ident(**p)) {
        if (k + 1 >= cap)
            return 0;
        out[k++] = *(*p)++;
    }
    out[k] = '\0';
    return k > 0;
}

/* Skips a balanced parenthesized group starting at *p == '(' ; 0 when unbalanced. */
static int skip_group(const char **p, const char *end)
{
    int depth = 0;
    for (; *p < end; (*p)++) {
        char c = **p;
        if (c == '\'') {
            for ((*p)++; *p < end && **p != '\''; (*p)++)
                if (**p == '\\')
                    (*p)++;
        } else if (c == '(') {
            depth++;
        } else if (c == ')' && --depth == 0) {
            (*p)++;
            return 1;
        }
    }
    return 0;
}

/*
 * Looks at one alternative: sets root (its first identifier) and, when it is a
 * plain path from the root, elem (its first element) and *plain = 1. When the step
 * right after elem is a type filter (" as X", ".as(X)" or ".ofType(X)"), *probe and
 * *probe_n are the text from the root to the end of that filter ("Observation.value as
 * Quantity"), else *probe_n is 0. A path may go on after such a filter in parentheses:
 * "(Observation.value as CodeableConcept).text" is plain, its probe the part inside.
 */
static void parse_alt(const char *s, size_t n, char *root, char *elem, int *plain, const char **probe,
                      size_t *probe_n)
{
    const char *p = s, *end = s + n, *start;
    int open = 0, first = 1;
    char id[KEY_MAX];
    *plain = 0;
    *probe = NULL;
    *probe_n = 0;
    root[0] = elem[0] = '\0';
    while (p < end && (*p == ' ' || *p == '('))
        open += *p++ == '(';
    while (end > p && (end[-1] == ' ' || end[-1] == ')')) {
        if (end[-1] == ')') {
            if (open == 0)
                break;
            open--;
        }
        end--;
    }
    start = p;
    if (!read_ident(&p, end, root, KEY_MAX) || open > 1 || p >= end || *p != '.')
        return;
    p++;
    if (!read_ident(&p, end, elem, KEY_MAX) || (p < end && *p == '('))
        return;
    for (; p < end; first = 0) {
        if (*p == '.') {
            const char *arg;
            p++;
            if (!read_ident(&p, end, id, sizeof(id)))
                return;
            if (p < end && *p == '(') {
                int filter = strcmp(id, "ofType") == 0 || strcmp(id, "as") == 0;
                if (strcmp(id, "where") != 0 && !filter)
                    return;
                arg = p + 1;
                if (!skip_group(&p, end))
                    return;
                /* .as(X) or .ofType(X), X one identifier: a type filter. */
                if (first && filter && read_ident(&arg, p, id, sizeof(id)) && arg == p - 1) {
                    *probe = start;
                    *probe_n = (size_t)(p - start);
                }
            }
        } else if (*p == ' ' && end - p > 4 && strncmp(p, " as ", 4) == 0) {
            p += 4;
            if (!read_ident(&p, end, id, sizeof(id)))
                return;
            if (first && (p == end || *p != '.')) { /* not a dotted type name */
                *probe = start;
                *probe_n = (size_t)(p - start);
            }
        } else if (*p == ')' && open == 1 && *probe_n > 0 && p == *probe + *probe_n) {
            /* "(T.elem as X).path" (Observation's value-string): the filter's parentheses
             * close and the path goes on from the filtered element. */
            open = 0;
            p++;
        } else {
            return;
        }
    }
    if (open != 0)
        return;
    *plain = 1;
}

/* True when name is t or one of its bases. */
static int type_or_base(const hv_fhir_type_t *t, const char *name)
{
    for (; t != NULL; t = hv_fhir_type_base(t))
        if (strcmp(hv_fhir_type_name(t), name) == 0)
            return 1;
    return 0;
}

/* One alternative of an expression, looked at once (parse_alt). */
typedef struct sp_alt {
    const char *s;
    size_t n;
    int plain;
    const char *probe; /* root, elem and a type filter right after it (parse_alt) */
    size_t probe_n;
    char root[KEY_MAX], elem[KEY_MAX];
    const hv_fhir_type_t *rtype; /* root as a resource type, or NULL */
} sp_alt_t;

/* Splits expr into its alternatives; 0 when it cannot be specialized. */
static size_t parse_alts(const char *expr, sp_alt_t *alts)
{
    const char *st[MAX_ALTS];
    size_t ln[MAX_ALTS], n = split_alts(expr, st, ln, MAX_ALTS);
    for (size_t i = 0; i < n; i++) {
        alts[i].s = st[i];
        alts[i].n = ln[i];
        parse_alt(st[i], ln[i], alts[i].root, alts[i].elem, &alts[i].plain, &alts[i].probe, &alts[i].probe_n);
        alts[i].rtype = alts[i].root[0] != '\0' ? hv_fhir_resource_type(alts[i].root) : NULL;
    }
    return n;
}

/* Adds key (a top-level element a resource needs) to out, once; too many: no precheck. */
static void add_key(sp_spec_t *out, const char *key)
{
    size_t k;
    for (k = 0; k < out->nkeys && strcmp(out->keys[k], key) != 0; k++)
        ;
    if (k < out->nkeys)
        return;
    if (out->nkeys == MAX_KEYS || strlen(key) >= KEY_MAX) {
        out->precheck = 0;
        return;
    }
    snprintf(out->keys[out->nkeys], KEY_MAX, "%s", key);
    out->keylen[out->nkeys] = strlen(key);
    out->nkeys++;
}

/* The JSON name of choice element elem's variant of type tname ("value", "dateTime":
 * "valueDateTime", FHIR R4 formats.html#choice) into out (cap bytes). */
static void choice_key(char *out, size_t cap, const char *elem, const char *tname)
{
    size_t el = strlen(elem);
    snprintf(out, cap, "%s%s", elem, tname);
    if (el < cap && out[el] >= 'a' && out[el] <= 'z')
        out[el] = (char)(out[el] - 'a' + 'A');
}

/*
 * An alternative "T.elem as X" (or .as(X), .ofType(X)) on a choice element elem[x]
 * selects only the variants whose type the filter keeps: an Observation with a
 * valueQuantity gives nothing for "(Observation.value as CodeableConcept)", nor for the
 * composites over it (components_may_match), which "value" alone let through. Each
 * variant elemY is asked of the evaluator itself — the filter evaluated on a resource
 * holding only elemY (the filter looks at the node's type, not its JSON value) — so the
 * keys follow FHIRPath's type rules (subtypes, primitives matched exactly by as()).
 * Adds the keys elemY kept to out and returns their count; 0 when the alternative has no
 * such filter, elem is not a choice, or no variant passes (the caller then adds elem,
 * which lets every variant through as before).
 */
static size_t choice_keys(const sp_alt_t *a, const hv_fhir_type_t *t, sp_spec_t *out)
{
    const hv_fhir_elem_t *el;
    hv_fhirpath_t *fp = NULL;
    hv_arena_t *arena = NULL;
    hv_error_t err;
    char key[2 * KEY_MAX + 64];
    size_t nt, kept = 0, el_len = strlen(a->elem);
    const char *pass[MAX_KEYS];
    if (a->probe_n == 0)
        return 0;
    snprintf(key, sizeof(key), "%s.%s[x]", hv_fhir_type_name(t), a->elem); /* the choice's path */
    el = hv_fhir_elem_find(key);
    if (el == NULL || !hv_fhir_elem_is_choice(el) || (nt = hv_fhir_elem_type_count(el)) == 0)
        return 0;
    memset(&err, 0, sizeof(err));
    if (hv_fhirpath_compile(a->probe, a->probe_n, NULL, &fp, &err) != HV_OK || (arena = hv_arena_new(0)) == NULL)
        goto out;
    for (size_t i = 0; i < nt; i++) {
        const hv_fhir_type_t *vt = hv_fhir_elem_type_at(el, i);
        const char *vn = hv_fhir_type_name(vt);
        struct json_object *probe = json_object_new_object(), *v;
        hv_fhirpath_result_t *res = NULL;
        int keep;
        if (probe == NULL || strlen(vn) + el_len >= KEY_MAX) {
            json_object_put(probe);
            kept = 0;
            goto out;
        }
        choice_key(key, sizeof(key), a->elem, vn);
        v = hv_fhir_type_kind(vt) == HV_FHIR_KIND_PRIMITIVE ? json_object_new_string("1") : json_object_new_object();
        json_object_object_add(probe, "resourceType", json_object_new_string(hv_fhir_type_name(t)));
        json_object_object_add(probe, key, v);
        memset(&err, 0, sizeof(err));
        keep = hv_fhirpath_eval(fp, probe, NULL, arena, &res, &err) == HV_OK && hv_fhirpath_result_count(res) > 0;
        json_object_put(probe);
        hv_arena_reset(arena);
        if (!keep)
            continue;
        if (kept == MAX_KEYS) {
            kept = 0; /* too many: elem, as before */
            goto out;
        }
        pass[kept++] = hv_fhir_type_name(vt);
    }
    for (size_t i = 0; i < kept; i++) {
        choice_key(key, sizeof(key), a->elem, pass[i]);
        add_key(out, key);
    }
out:
    hv_arena_free(arena);
    hv_fhirpath_free(fp);
    return kept;
}

/* True, with out->ref_prefix set, when [p, end) is ".where(resolve() is X)" exactly and the
 * path before it selects References (chosen). */
static int ref_filter(const char *p, const char *end, const hv_fhir_type_t *chosen, sp_spec_t *out)
{
    static const char pre[] = ".where(resolve() is ";
    const char *q = p + sizeof(pre) - 1;
    char id[KEY_MAX];
    if (chosen == NULL || strcmp(hv_fhir_type_name(chosen), "Reference") != 0 || (size_t)(end - p) < sizeof(pre) ||
        memcmp(p, pre, sizeof(pre) - 1) != 0 || !read_ident(&q, end, id, sizeof(id)) || q + 1 != end || *q != ')')
        return 0;
    snprintf(out->ref_prefix, sizeof(out->ref_prefix), "%s/", id);
    return 1;
}

/*
 * True when the type filter ending alternative a keeps a value of choice variant vt: a
 * evaluated (fp) on a resource of type t holding only that variant, as member key of the
 * objects the n steps before it lead to (each one object) — the filter looks at the node's
 * type, not its JSON value, so the evaluator's own type rules decide (choice_keys).
 */
static int filter_keeps(hv_fhirpath_t *fp, const hv_fhir_type_t *t, const sp_spec_t *out, size_t n, const char *key,
                        const hv_fhir_type_t *vt, hv_arena_t *arena)
{
    struct json_object *probe = json_object_new_object(), *o = probe, *v;
    hv_fhirpath_result_t *res = NULL;
    hv_error_t err;
    int keep;
    if (probe == NULL)
        return -1;
    json_object_object_add(probe, "resourceType", json_object_new_string(hv_fhir_type_name(t)));
    for (size_t k = 0; k < n; k++) {
        struct json_object *c = json_object_new_object();
        json_object_object_add(o, out->step[k] + 1, c);
        o = c;
    }
    v = hv_fhir_type_kind(vt) == HV_FHIR_KIND_PRIMITIVE ? json_object_new_string("1") : json_object_new_object();
    json_object_object_add(o, key, v);
    memset(&err, 0, sizeof(err));
    keep = hv_fhirpath_eval(fp, probe, NULL, arena, &res, &err) == HV_OK && hv_fhirpath_result_count(res) > 0;
    json_object_put(probe);
    hv_arena_reset(arena);
    return keep;
}

/*
 * The last step of a direct alternative a, a choice element e after the n steps in out:
 * [p, end) is empty or " as X" (the operator, which filters a collection as ofType() does:
 * "Observation.component.value as Quantity"). Sets out's variants; 0 when it cannot.
 */
static int direct_choice(const sp_alt_t *a, const hv_fhir_type_t *t, const hv_fhir_elem_t *e, const char *id,
                         const char *p, const char *end, size_t n, sp_spec_t *out)
{
    size_t nt = hv_fhir_elem_type_count(e), il = strlen(id);
    hv_fhirpath_t *fp = NULL;
    hv_arena_t *arena = NULL;
    hv_error_t err;
    char ty[KEY_MAX];
    int ok = 1;
    if (nt == 0 || nt > MAX_VARIANTS)
        return 0;
    if (p < end) {
        if (end - p < 5 || strncmp(p, " as ", 4) != 0)
            return 0;
        p += 4;
        if (!read_ident(&p, end, ty, sizeof(ty)) || p != end)
            return 0;
        memset(&err, 0, sizeof(err));
        if (hv_fhirpath_compile(a->s, a->n, NULL, &fp, &err) != HV_OK || (arena = hv_arena_new(0)) == NULL)
            ok = 0;
    }
    for (size_t i = 0; i < nt && ok; i++) {
        const hv_fhir_type_t *vt = hv_fhir_elem_type_at(e, i);
        const char *vn = hv_fhir_type_name(vt);
        int keep = 1;
        if (il + strlen(vn) >= KEY_MAX) {
            ok = 0;
            break;
        }
        out->variant[i][0] = '_';
        choice_key(out->variant[i] + 1, KEY_MAX, id, vn);
        if (fp != NULL && (keep = filter_keeps(fp, t, out, n, out->variant[i] + 1, vt, arena)) < 0)
            ok = 0;
        out->variant_type[i] = vn;
        out->variant_kept[i] = (unsigned char)(keep > 0);
    }
    hv_arena_free(arena);
    hv_fhirpath_free(fp);
    if (ok)
        out->nvariants = nt;
    return ok;
}

/* 1 when member_get's probe finds what json-c's own look-up finds (probe_agrees, compile_all);
 * 0: every look-up goes to hv_json_get_ex. */
static int probe_ok;

/* key as member_get takes name: the model's copy of it, and its hash under json-c's string
 * hash out->key_fn (NULL when unknown: hv_json_get_ex then looks the names up). */
static void hash_key(sp_spec_t *out, const char *name, sp_key_t *key)
{
    key->model_name = hv__fhir_key_static(name, strlen(name));
    out->key_fn = probe_ok ? hv__fhir_json_key_hash(name, &key->hash) : NULL;
}

static void hash_keys(sp_spec_t *out)
{
    for (size_t i = 0; i < out->nsteps; i++) {
        hash_key(out, out->step[i] + 1, &out->step_key[i][0]);
        hash_key(out, out->step[i], &out->step_key[i][1]);
    }
    for (size_t i = 0; i < out->nvariants; i++) {
        hash_key(out, out->variant[i] + 1, &out->variant_key[i][0]);
        hash_key(out, out->variant[i], &out->variant_key[i][1]);
    }
}

/*
 * Makes out direct when the alternative a (of t, kept alone) is "T.a.b..." — identifiers
 * and dots only — and navigates as hv__fp_children would with no detour: each step an
 * element of the step before (hv__fp_model_child, FHIRPath's own resolution, from the
 * owner push_values gives the values: hv_fhir_elem_owner), not a resource (whose node
 * would take its type from its resourceType), and every step but the last of a complex
 * type (a primitive's children are its twin's). The last step may be a choice element,
 * with a type filter after it, in parentheses or not ("(Observation.value as Quantity)":
 * direct_choice).
 */
static void direct_of(const sp_alt_t *a, const hv_fhir_type_t *t, sp_spec_t *out)
{
    const char *p = a->s, *end = a->s + a->n;
    const hv_fhir_elem_t *owner = hv_fhir_type_root(t);
    const hv_fhir_type_t *chosen = NULL;
    char id[KEY_MAX];
    size_t n = 0;
    for (;;) {
        while (p < end && *p == ' ')
            p++;
        while (end > p && end[-1] == ' ')
            end--;
        if (end - p < 2 || *p != '(' || end[-1] != ')')
            break;
        p++; /* "(T.x as X)": the path within (a closing ')' left inside stops the steps) */
        end--;
    }
    if (!read_ident(&p, end, id, sizeof(id)) || strcmp(id, hv_fhir_type_name(t)) != 0)
        return;
    while (p < end) {
        const hv_fhir_elem_t *e = NULL;
        int choice = 0;
        size_t len;
        if (n > 0 && ref_filter(p, end, chosen, out))
            break;
        if (*p++ != '.' || n == MAX_STEPS || (chosen != NULL && hv_fhir_type_kind(chosen) != HV_FHIR_KIND_COMPLEX) ||
            !read_ident(&p, end, id, sizeof(id)))
            return;
        len = strlen(id);
        chosen = NULL;
        if (hv__fp_model_child(owner, id, len, &e, &choice, &chosen) != HV_OK)
            return;
        if (choice) {
            if (!direct_choice(a, t, e, id, p, end, n, out))
                return;
            out->direct_any = 0; /* for t itself only */
            break;
        }
        if (chosen == NULL || hv_fhir_type_kind(chosen) == HV_FHIR_KIND_RESOURCE)
            return;
        if (n == 0)
            out->direct_any = hv_fhir_elem_owner(e, chosen) == hv_fhir_type_root(chosen);
        out->step[n][0] = '_';
        memcpy(out->step[n] + 1, id, len + 1);
        n++;
        owner = hv_fhir_elem_owner(e, chosen);
    }
    if (n == 0 && out->nvariants == 0)
        return;
    out->nsteps = n;
    out->direct_type = chosen != NULL ? hv_fhir_type_name(chosen) : NULL;
    hash_keys(out);
}

/* Makes out a union of direct alternatives (sp_spec_t nunion) when every alternative of
 * alts that t keeps (rooted at t) is direct, none a where(resolve() is X). */
static void union_of(const sp_alt_t *alts, size_t n, const hv_fhir_type_t *t, sp_spec_t *out)
{
    sp_spec_t *u = hv_calloc(MAX_UNION, sizeof(*u));
    size_t k = 0;
    if (u == NULL)
        return;
    for (size_t i = 0; i < n; i++) {
        const sp_alt_t *a = &alts[i];
        if (a->rtype != NULL && a->rtype != t && !type_or_base(t, a->root))
            continue;
        if (!a->plain || strcmp(a->root, hv_fhir_type_name(t)) != 0 || k == MAX_UNION)
            goto fail;
        u[k].type = t;
        direct_of(a, t, &u[k]);
        if ((u[k].nsteps == 0 && u[k].nvariants == 0) || u[k].ref_prefix[0] != '\0')
            goto fail;
        k++;
    }
    out->unions = u;
    out->nunion = k;
    return;
fail:
    hv_free(u);
}

/* Builds the specialization for resource type t of an expression split into alts;
 * HV_EINVAL when it cannot be done (the general expression is then used). */
static int specialize(const sp_alt_t *alts, size_t n, const hv_fhir_type_t *t, sp_spec_t *out)
{
    size_t kept = 0;
    const sp_alt_t *only = NULL;
    hv_buf_t b;
    int rc = HV_OK;
    const char *tname = hv_fhir_type_name(t);
    memset(out, 0, sizeof(*out));
    out->type = t;
    out->precheck = 1;
    if (n == 0)
        return HV_EINVAL;
    hv_buf_init(&b, 64 * 1024);
    for (size_t i = 0; i < n; i++) {
        const sp_alt_t *a = &alts[i];
        if (a->rtype != NULL && a->rtype != t && !type_or_base(t, a->root))
            continue; /* rooted at another resource type: selects nothing on t */
        if (!a->plain || strcmp(a->root, tname) != 0)
            out->precheck = 0;
        else if (choice_keys(a, t, out) == 0)
            add_key(out, a->elem);
        if (kept++ > 0)
            hv_buf_puts(&b, " | ");
        hv_buf_append(&b, a->s, a->n);
        only = a;
    }
    if (kept == 1 && only->plain && strcmp(only->root, tname) == 0)
        direct_of(only, t, out);
    out->all_kept = kept == n;
    if (kept > 0) {
        hv_error_t err;
        char *rw = NULL;
        memset(&err, 0, sizeof(err));
        if (b.data == NULL) {
            rc = HV_ENOMEM;
        } else {
            rw = rewrite_resolve(b.data);
            if (hv_fhirpath_compile(rw != NULL ? rw : b.data, 0, NULL, &out->fp, &err) != HV_OK)
                rc = HV_EINVAL;
        }
        hv_free(rw);
    }
    if (rc == HV_OK && kept > 1 && kept <= MAX_UNION)
        union_of(alts, n, t, out);
    hv_buf_release(&b);
    return rc;
}

/* The specialization for a type none of an expression's alternatives selects anything on
 * (specialize kept none): fp NULL, so nothing is evaluated. */
static const sp_spec_t spec_none;

/*
 * e's specializations for the nb types sp applies to (specialize): those that can match in
 * e->spec, the types where nothing can in e->none, each array at its final size. Most
 * pairs are of the second kind (12,422 of the 14,168 of R4: "successor" or "depends-on"
 * name 146 types and select on a few), and a spec is ~2.4 KB: allocating one per pair put
 * 33 MB in every process that indexes or searches (docs/performance.md, session 28).
 */
static void specialize_bases(sp_entry_t *e, const hv_fhir_search_t *sp, const sp_alt_t *alts, size_t na, size_t nb)
{
    size_t cap = 0;
    sp_spec_t sc;
    e->none = hv_malloc(nb * sizeof(*e->none));
    if (e->none == NULL)
        return;
    for (size_t k = 0; k < nb; k++) {
        if (specialize(alts, na, hv_fhir_search_base_at(sp, k), &sc) != HV_OK) {
            hv_fhirpath_free(sc.fp);
            continue;
        }
        if (sc.fp == NULL) {
            e->none[e->nnone++] = sc.type;
            continue;
        }
        if (e->nspec == cap) {
            size_t ncap = cap ? 2 * cap : 4;
            sp_spec_t *grown = hv_realloc(e->spec, ncap * sizeof(*grown));
            if (grown == NULL) { /* this type keeps the expression itself */
                hv_fhirpath_free(sc.fp);
                hv_free(sc.unions);
                continue;
            }
            e->spec = grown;
            cap = ncap;
        }
        e->spec[e->nspec++] = sc;
    }
    if (e->nspec > 0 && e->nspec < cap) {
        sp_spec_t *fit = hv_realloc(e->spec, e->nspec * sizeof(*fit));
        if (fit != NULL)
            e->spec = fit;
    }
    if (e->nnone == 0) {
        hv_free(e->none);
        e->none = NULL;
    } else if (e->nnone < nb) {
        const hv_fhir_type_t **fit = hv_realloc(e->none, e->nnone * sizeof(*fit));
        if (fit != NULL)
            e->none = fit;
    }
}

static int specialize_on = 1; /* hv__search_specialize_enable */
void hv__search_specialize_enable(int on)
{
    specialize_on = on;
}

/* 1 when e was specialized (spec_for answers for its types). */
static int has_specs(const sp_entry_t *e)
{
    return e->nspec + e->nnone > 0;
}

static int spec_precheck = 1; /* hv__search_spec_precheck_enable */
void hv__search_spec_precheck_enable(int on)
{
    spec_precheck = on;
}

/*
 * True when the resource may give a value for s: keys are its top-level member names with
 * a primitive extension's '_' dropped (_birthDate: birthDate), klen their lengths. It runs
 * for every parameter of every resource (~29 per resource, against ~20 members each), so
 * the names are prepared once per resource (compute_rows) and compared by first byte and
 * length before their bytes.
 */
static int spec_may_match(const sp_spec_t *s, const char *const *keys, const size_t *klen, size_t nkeys)
{
    if (s->fp == NULL)
        return 0;
    if (!s->precheck || !spec_precheck)
        return 1;
    for (size_t i = 0; i < s->nkeys; i++) {
        const char *e = s->keys[i];
        size_t el = s->keylen[i];
        for (size_t k = 0; k < nkeys; k++) {
            const char *m = keys[k];
            /* elem itself, or a choice variant elemX (FHIR R4 formats.html#choice). */
            if (m[0] == e[0] && klen[k] >= el && memcmp(m, e, el) == 0 &&
                (m[el] == '\0' || (m[el] >= 'A' && m[el] <= 'Z')))
                return 1;
        }
    }
    return 0;
}

static int is_row_alias(const char *code);

/* _id and _lastUpdated: columns of the resources table, no rows of their own. */
static int is_resources_column(const char *code)
{
    return code != NULL && (strcmp(code, "_id") == 0 || strcmp(code, "_lastUpdated") == 0);
}

static int build_plans(void);

static void hash_members(void);
static int probe_agrees(void);

static void compile_all(void)
{
    static sp_alt_t alts[MAX_ALTS]; /* compile_all runs once (pthread_once) */
    size_t n = hv_fhir_search_count();
    probe_ok = probe_agrees();
    hash_members();
    entries = hv_calloc(n ? n : 1, sizeof(*entries));
    if (entries == NULL)
        return;
    for (size_t i = 0; i < n; i++) {
        const hv_fhir_search_t *sp = hv_fhir_search_at(i);
        const char *expr = hv_fhir_search_expression(sp);
        hv_error_t err;
        hv_fhirpath_t *fp = NULL;
        hv_fhir_search_type_t t = hv_fhir_search_type(sp);
        entries[nentries].sp = sp;
        entries[nentries].own_table = !is_resources_column(hv_fhir_search_code(sp));
        entries[nentries].may_alias = is_row_alias(hv_fhir_search_code(sp));
        if (expr != NULL && t == HV_FHIR_SP_COMPOSITE) {
            size_t nc = hv_fhir_search_component_count(sp);
            char *rw = rewrite_resolve(expr);
            int ok = nc > 0 && nc <= MAX_COMPONENTS;
            for (size_t k = 0; k < nc && ok; k++) {
                const char *cexpr = NULL;
                const hv_fhir_search_t *csp = hv_fhir_search_component_at(sp, k, &cexpr);
                hv_fhirpath_t *cfp = NULL;
                if (csp == NULL || cexpr == NULL) {
                    ok = 0;
                    break;
                }
                memset(&err, 0, sizeof(err));
                if (hv_fhirpath_compile(cexpr, 0, NULL, &cfp, &err) != HV_OK) {
                    ok = 0;
                    break;
                }
                entries[nentries].comp[entries[nentries].ncomp++] = cfp;
            }
            /* The expression itself counts the elements. */
            memset(&err, 0, sizeof(err));
            if (ok && hv_fhirpath_compile(rw != NULL ? rw : expr, 0, NULL, &fp, &err) != HV_OK)
                fp = NULL;
            if (!ok || fp == NULL) {
                for (size_t k = 0; k < entries[nentries].ncomp; k++)
                    hv_fhirpath_free(entries[nentries].comp[k]);
                entries[nentries].ncomp = 0;
                fp = NULL;
            }
            hv_free(rw);
        } else if (expr != NULL && t != HV_FHIR_SP_SPECIAL) {
            char *rw = rewrite_resolve(expr);
            size_t nb = hv_fhir_search_base_count(sp), na;
            memset(&err, 0, sizeof(err));
            if (hv_fhirpath_compile(rw != NULL ? rw : expr, 0, NULL, &fp, &err) != HV_OK)
                fp = NULL;
            hv_free(rw);
            if (fp != NULL && nb > 0 && (na = parse_alts(expr, alts)) > 0)
                specialize_bases(&entries[nentries], sp, alts, na, nb);
        }
        entries[nentries++].fp = fp;
    }
    qsort(entries, nentries, sizeof(*entries), cmp_entry);
    if (n >= 2) {
        model_first = (uintptr_t)hv_fhir_search_at(0);
        model_stride = (uintptr_t)hv_fhir_search_at(1) - model_first;
    }
    if (build_plans() != HV_OK) { /* compute_rows then refuses with HV_ENOMEM */
        hv_free(entries);
        entries = NULL;
        nentries = 0;
    }
}

/* compile_all makes one entry per parameter in the model's order (hv_fhir_search_at), so
 * an entry is at its parameter's index; the bsearch (4k instructions a create) is a fallback.
 * The model's first parameter and element size are read once (compile_all): entry_find runs
 * for every parameter of every resource type's plan (build_plans) and of every query. */
static const sp_entry_t *entry_find(const hv_fhir_search_t *sp)
{
    sp_entry_t key;
    uintptr_t first, stride;
    if (entries == NULL)
        return NULL;
    first = model_first;
    stride = model_stride;
    if (nentries >= 2 && first != 0 && stride > 0 && (uintptr_t)sp >= first) {
        size_t i = (size_t)(((uintptr_t)sp - first) / stride);
        if (i < nentries && entries[i].sp == sp)
            return &entries[i];
    }
    memset(&key, 0, sizeof(key));
    key.sp = sp;
    return bsearch(&key, entries, nentries, sizeof(*entries), cmp_entry);
}

/* entry_find once every expression is compiled. */
static const sp_entry_t *entry_of(const hv_fhir_search_t *sp)
{
    pthread_once(&compile_once, compile_all);
    return entry_find(sp);
}

int hv__search_indexed(const hv_fhir_search_t *sp)
{
    const sp_entry_t *e = entry_of(sp);
    return e != NULL && e->fp != NULL;
}

/*
 * Parameters whose rows would repeat another parameter's rows of the same resource.
 * R4's individual-phonetic is "Patient.name | Person.name | Practitioner.name |
 * RelatedPerson.name": on each of these types it selects exactly that type's `name`
 * parameter (Patient-name "Patient.name", Person-name, Practitioner-name,
 * RelatedPerson-name likewise), a string parameter over the same HumanNames, and this
 * engine applies no phonetic algorithm (search.html#string: the match is the string
 * match), so its rows are the `name` rows. Writing them cost two rows (six B-tree
 * inserts) per name part of every Patient. Organization's and InsurancePlan's phonetic
 * ("Organization.name") differ from their `name` (which adds alias) and keep their rows.
 * Unit test search_index_phonetic_rows_equal_name_rows checks the equality on the model.
 */
static const struct {
    const char *type, *code, *rows;
} row_alias[] = {
    {"Patient", "phonetic", "name"},
    {"Person", "phonetic", "name"},
    {"Practitioner", "phonetic", "name"},
    {"RelatedPerson", "phonetic", "name"},
};

/* The rows row_alias makes redundant, deleted from stores written before it (both backends). */
const char hv__search_migration_row_alias[] =
    "DELETE FROM sp_str WHERE code = 'phonetic' AND type IN ('Patient', 'Person', 'Practitioner', 'RelatedPerson');";

static int row_alias_on = 1; /* unit tests turn it off to compare the rows */

/* 1 when code is a row_alias code on some type (compile_all: index_params asks
 * hv__search_row_code only for those). */
static int is_row_alias(const char *code)
{
    for (size_t i = 0; code != NULL && i < HV_ARRAY_LEN(row_alias); i++)
        if (strcmp(code, row_alias[i].code) == 0)
            return 1;
    return 0;
}

void hv__search_row_alias_enable(int on)
{
    row_alias_on = on;
}

const char *hv__search_row_code(const hv_fhir_type_t *t, const char *code)
{
    const char *tn = t != NULL ? hv_fhir_type_name(t) : NULL;
    if (!row_alias_on || tn == NULL || code == NULL)
        return code;
    for (size_t i = 0; i < sizeof(row_alias) / sizeof(row_alias[0]); i++)
        if (strcmp(code, row_alias[i].code) == 0 && strcmp(tn, row_alias[i].type) == 0)
            return row_alias[i].rows;
    return code;
}

/* ---- value helpers ---- */

int hv__search_ucum_canon(double v, const char *unit, double *cv, char *cunit, size_t cap)
{
    hv_error_t err;
    hv_ucum_t *u;
    memset(&err, 0, sizeof(err));
    u = hv_ucum_shared(&err);
    if (u == NULL || unit == NULL)
        return HV_ENOTFOUND;
    return hv_ucum_canonicalize(u, v, unit, cv, cunit, cap, &err);
}

static int is_leap(int64_t y)
{
    return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

/* True when s has the shape YYYY[-MM[-DD[Thh:mm[:ss[.f+]][Z|(+|-)hh:mm]]]] digit for digit. */
static int date_shape(const char *s)
{
    static const char *const shapes[] = {"dddd", "dddd-dd", "dddd-dd-dd", "dddd-dd-ddTdd:dd:dd"};
    size_t n = strlen(s), k;
    for (k = 0; k < HV_ARRAY_LEN(shapes); k++) {
        const char *f = shapes[k];
        size_t fl = strlen(f), i;
        if (n < fl || (k < 3 && n != fl))
            continue;
        for (i = 0; i < fl; i++)
            if (f[i] == 'd' ? !(s[i] >= '0' && s[i] <= '9') : s[i] != f[i])
                break;
        if (i == fl)
            return 1;
    }
    return 0;
}

int hv__search_date_range(const char *s, int64_t *lo, int64_t *hi)
{
    int64_t l;
    size_t n;
    int y, m;
    const char *t;
    if (s == NULL || !date_shape(s) || hv__fhir_parse_time(s, &l) != HV_OK)
        return HV_EINVAL;
    n = strlen(s);
    y = atoi(s);
    if (n == 4) {
        *hi = l + (int64_t)(is_leap(y) ? 366 : 365) * 86400000 - 1;
    } else if (n == 7) {
        static const int days[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
        m = atoi(s + 5);
        *hi = l + (int64_t)(days[m - 1] + (m == 2 && is_leap(y))) * 86400000 - 1;
    } else if (n == 10) {
        *hi = l + 86400000 - 1;
    } else {
        /* A time: second precision unless it has a fraction (FHIR R4 search.html#date). */
        t = strchr(s, 'T');
        if (t == NULL)
            return HV_EINVAL;
        *hi = strchr(t, '.') != NULL ? l : l + 999;
    }
    *lo = l;
    return HV_OK;
}

hv__sp_prefix_t hv__search_prefix(const char **s)
{
    static const char *const names[] = {"eq", "ne", "gt", "lt", "ge", "le", "sa", "eb", "ap"};
    const char *p = *s;
    for (size_t i = 0; i < HV_ARRAY_LEN(names); i++)
        if (p[0] == names[i][0] && p[1] == names[i][1] && p[2] != '\0' && !(p[2] >= 'a' && p[2] <= 'z')) {
            *s = p + 2;
            return (hv__sp_prefix_t)i;
        }
    return HV__SP_EQ;
}

/* ---- row writers ----
 *
 * Rows are not inserted one by one: the values of one resource version are
 * collected first (exact duplicates dropped — a CodeableConcept whose text equals
 * its coding's display, or the same code under two codings, would otherwise be
 * written twice), then written table by table with multi-row INSERTs of up to
 * MAX_CHUNK rows, (type, id) bound once as $1 and $2. On SQLite this saves the
 * statement start (cursor opens on the table and its two indexes) per row; on
 * PostgreSQL it saves a network round trip per row.
 */

enum { T_STR, T_TOK, T_REF, T_DATE, T_NUM, T_URI, T_COUNT };
#define ALL_TABLES ((1u << T_COUNT) - 1)

/*
 * The value columns of each table after (type, id, code, grp), and their kinds. A
 * table with rid set also holds the row id of the version (resources.rid, the same for
 * every row of the version: bound once as $3), so that its value index delivers the
 * matches of one value in row-id order (sp_tok_sr, fhir/search_combo.c), or of one
 * string range without a join per match (sp_str_rc, likewise).
 */
enum {
    V_NULL = HV__SEARCH_V_NULL,
    V_TEXT = HV__SEARCH_V_TEXT,
    V_INT = HV__SEARCH_V_INT,
    V_DOUBLE = HV__SEARCH_V_DOUBLE
};
#define MAX_VCOLS 5
static const struct {
    const char *name;
    const char *cols;
    int ncols;
    int rid;
} tables[T_COUNT] = {
    {"sp_str", "value, raw", 2, 1},   {"sp_tok", "system, value", 2, 1}, {"sp_ref", "rtype, rid", 2, 0},
    {"sp_date", "lo, hi", 2, 0}, {"sp_num", "value, system, unit, cvalue, cunit", 5, 0}, {"sp_uri", "value", 1, 0},
};

#define MAX_TOP_KEYS 128 /* top-level members of a resource the specialization check looks at */
#define MAX_CHUNK 32 /* rows of one INSERT: at most 2 + 32 * 7 = 226 placeholders */
/*
 * The row counts one INSERT statement takes: every count up to 8, so that a typical
 * resource's rows of one table (a Patient: 6 strings, 3 tokens) go in one statement —
 * each statement costs its own cursor opening and halting on the table and its indexes —
 * then 16 and 32 for the large ones. At most 6 x 10 texts per backend, within the
 * connection's statement cache (HV__DB_CACHE_MAX).
 */
static const int chunk_rows[] = {1, 2, 3, 4, 5, 6, 7, 8, 16, MAX_CHUNK};
#define NCHUNKS ((int)HV_ARRAY_LEN(chunk_rows))
#define MAX_ROWS 100000 /* rows one resource version writes, all tables together (more: refused) */

/* A value column (fhir/search_int.h: the combined rows' writers read them in place). */
typedef hv__search_val_t ixval_t;

/* One row; v holds the table's ncols values only (allocated to fit: a token row is 2 of
 * MAX_VCOLS). */
typedef struct ixrow {
    int table;
    int grp;
    const char *code;
    uint32_t hash;
    struct ixrow *tnext; /* the next row of the same table, in insertion order */
    ixval_t v[];
} ixrow_t;

typedef struct ix {
    hv_db_t *db;
    hv_arena_t *rows_arena; /* the rows and their strings, for one resource version */
    const char *type, *id, *code;
    int code_static; /* 1: code is the model's (hv_fhir_search_code, lives as long as the process) */
    const char *hashed_code; /* the model's code whose hash code_h is (add_row) */
    uint64_t code_h;
    int64_t rid;     /* the version's row id when the caller knows it; 0: looked up */
    int rc;
    size_t nvalues;
    const char *param; /* the parameter being indexed (its code, as a refusal names it) */
    int grp;         /* composite: the element's number (1-based); 0 otherwise */
    int dry;         /* counting: add_row counts in dry_rows and adds nothing */
    size_t dry_rows;
    char sub[96];    /* scratch for derived codes ("code:text") */
    ixrow_t *head[T_COUNT], *tail[T_COUNT];
    size_t nrows[T_COUNT], total;
    ixrow_t **set;   /* open-addressed hash set of the rows (duplicate check) */
    size_t setcap;
    const hv_fhir_type_t *rtype;  /* the resource's type */
    /* Its top-level member names, without a leading '_', and their lengths: compute_rows's
     * arrays, set during the call only (kept out of ix_t, which hv__search_index_rows
     * callocs per resource: 2 KiB less to clear). */
    const char **keys;
    size_t *klen;
    size_t nkeys;
    uint64_t present; /* the plan's keys the resource has (plan_t.masked) */
    hv_fhirpath_env_t env;          /* the evaluations' environment: the resource's type */
    int strings_only; /* only the parameters that may write string rows: string, token (:text), composite */
} ix_t;

/*
 * The INSERT texts per backend, table and chunk size, built once. On SQLite they
 * read INSERT OR FAIL: a multi-row INSERT with the default ABORT resolution makes
 * SQLite keep a statement journal (every page it touches copied, so that a failing
 * row can undo the earlier rows of the statement: sqlite.org/lang_conflict.html),
 * which cost more than the rows themselves; FAIL keeps the earlier rows instead, and
 * since any failure here fails the whole write and its transaction is rolled back,
 * nothing of a failed statement survives either way.
 */
static char *insert_sql[2][T_COUNT][NCHUNKS];
/* The same with every row's type, id (and rid) its own parameters: the rows of several
 * resources in one statement (hv__search_batch_flush). */
static char *insert_multi_sql[2][T_COUNT][NCHUNKS];
static pthread_once_t sql_once = PTHREAD_ONCE_INIT;

static char *insert_text(int be, int t, int n, int multi)
{
    hv_buf_t b;
    char *sql;
    int p = multi ? 1 : tables[t].rid ? 4 : 3;
    hv_buf_init(&b, 64 * 1024);
    hv_buf_printf(&b, "INSERT %sINTO %s (type, id, %scode, grp, %s) VALUES ", be == 0 ? "OR FAIL " : "",
                  tables[t].name, tables[t].rid ? "rid, " : "", tables[t].cols);
    for (int r = 0; r < n; r++) {
        int own = 2 + tables[t].ncols; /* parameters each row has to itself */
        if (multi)
            own += tables[t].rid ? 3 : 2;
        else
            hv_buf_puts(&b, tables[t].rid ? "($1, $2, $3" : "($1, $2");
        for (int k = 0; k < own; k++)
            hv_buf_printf(&b, k == 0 && multi ? "($%d" : ", $%d", p++);
        hv_buf_puts(&b, r + 1 < n ? "), " : ")");
    }
    sql = b.data != NULL ? hv_strndup(b.data, b.len) : NULL;
    hv_buf_release(&b);
    return sql;
}

static void build_sql(void)
{
    for (int be = 0; be < 2; be++)
        for (int t = 0; t < T_COUNT; t++)
            for (int c = 0; c < NCHUNKS; c++) {
                insert_sql[be][t][c] = insert_text(be, t, chunk_rows[c], 0);
                insert_multi_sql[be][t][c] = insert_text(be, t, chunk_rows[c], 1);
            }
}

/*
 * The duplicate check's hash, 8 bytes a step: byte-wise FNV-1a over the code and the
 * text values was two thirds of add_row (~700 instructions a row, 15 rows a resource).
 * Only the duplicate check reads it: the rows keep their insertion order.
 */
static uint64_t mix(uint64_t h, uint64_t w)
{
    h = (h ^ w) * 0x9e3779b97f4a7c15ull;
    return h ^ (h >> 29);
}

static uint64_t hash_mem(uint64_t h, const void *p, size_t n)
{
    const unsigned char *s = p;
    uint64_t w = 0;
    for (; n >= 8; s += 8, n -= 8) {
        memcpy(&w, s, 8);
        h = mix(h, w);
    }
    w = (uint64_t)n << 56; /* the tail, with its length */
    for (size_t i = 0; i < n; i++)
        w |= (uint64_t)s[i] << (8 * i);
    return mix(h, w);
}

/* The hash of row r whose code hashes to code_h (code_hash) and whose text values are len[k]
 * bytes long. */
static uint32_t row_hash(const ixrow_t *r, int ncols, uint64_t code_h, const size_t *len)
{
    uint64_t h = mix(code_h, (uint64_t)(unsigned)r->table << 32 | (unsigned)r->grp);
    for (int k = 0; k < ncols; k++) {
        const ixval_t *v = &r->v[k];
        h = mix(h, (uint64_t)v->kind);
        if (v->kind == V_TEXT)
            h = hash_mem(h, v->s, len[k]);
        else if (v->kind == V_INT)
            h = mix(h, (uint64_t)v->i);
        else if (v->kind == V_DOUBLE) {
            uint64_t d;
            memcpy(&d, &v->d, sizeof(d));
            h = mix(h, d);
        }
    }
    return (uint32_t)(h ^ (h >> 32));
}

static uint64_t code_hash(const char *code, size_t n)
{
    return hash_mem(0x2545f4914f6cdd1dull, code, n);
}

static int row_equal(const ixrow_t *a, const ixrow_t *b, int ncols)
{
    if (a->hash != b->hash || a->table != b->table || a->grp != b->grp || strcmp(a->code, b->code) != 0)
        return 0;
    for (int k = 0; k < ncols; k++) {
        const ixval_t *x = &a->v[k], *y = &b->v[k];
        if (x->kind != y->kind)
            return 0;
        if ((x->kind == V_TEXT && strcmp(x->s, y->s) != 0) || (x->kind == V_INT && x->i != y->i) ||
            (x->kind == V_DOUBLE && memcmp(&x->d, &y->d, sizeof(double)) != 0))
            return 0;
    }
    return 1;
}

/* Grows the duplicate set to hold at least 2 * (total + 1) slots. */
static int set_grow(ix_t *x)
{
    size_t cap = x->setcap ? x->setcap * 2 : 64;
    ixrow_t **set;
    if (x->setcap > 2 * (x->total + 1))
        return HV_OK;
    set = hv_calloc(cap, sizeof(*set));
    if (set == NULL)
        return HV_ENOMEM;
    for (size_t i = 0; i < x->setcap; i++) {
        ixrow_t *r = x->set[i];
        size_t j;
        if (r == NULL)
            continue;
        for (j = r->hash & (cap - 1); set[j] != NULL; j = (j + 1) & (cap - 1))
            ;
        set[j] = r;
    }
    hv_free(x->set);
    x->set = set;
    x->setcap = cap;
    return HV_OK;
}

/* The last refusal of this thread (hv__search_refusal). */
static _Thread_local char refusal[320];

const char *hv__search_refusal(void)
{
    return refusal;
}

void hv__search_refusal_clear(void)
{
    refusal[0] = '\0';
}

int hv__search_refuse(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(refusal, sizeof(refusal), fmt, ap);
    va_end(ap);
    return HV_ETOOBIG;
}

/*
 * Adds a row of table t under code with the ncols values of vals (strings are
 * copied). A duplicate of a row already collected for this version is dropped
 * and does not count against the parameter's limit. A row past a limit
 * (MAX_VALUES_PER_PARAM, MAX_ROWS) fails the whole computation with HV_ETOOBIG.
 */
static void add_row(ix_t *x, int t, const char *code, const ixval_t *vals)
{
    union {
        ixrow_t row;
        char room[sizeof(ixrow_t) + MAX_VCOLS * sizeof(ixval_t)];
    } keyroom;
    ixrow_t *key = &keyroom.row, *r;
    int nc = tables[t].ncols;
    int own_code = code == x->code && x->code_static;
    size_t j, len[MAX_VCOLS], clen = 0, size = sizeof(ixrow_t) + (size_t)nc * sizeof(ixval_t), total;
    uint64_t code_h;
    char *str;
    if (x->rc != HV_OK)
        return;
    if (x->dry) {
        x->dry_rows++;
        return;
    }
    key->table = t;
    key->grp = x->grp;
    key->code = code;
    key->tnext = NULL;
    memcpy(key->v, vals, (size_t)nc * sizeof(*vals));
    /* The parameter's own code is the model's string: kept as it is, not copied per row,
     * and hashed once per parameter. A derived code ("code:text", "code$1") is in a scratch
     * buffer: copied with the row. */
    if (own_code) {
        if (x->hashed_code != code) {
            x->hashed_code = code;
            x->code_h = code_hash(code, strlen(code));
        }
        code_h = x->code_h;
        total = size;
    } else {
        clen = strlen(code);
        code_h = code_hash(code, clen);
        total = size + clen + 1;
    }
    for (int k = 0; k < nc; k++)
        if (vals[k].kind == V_TEXT) {
            len[k] = strlen(vals[k].s);
            total += len[k] + 1;
        }
    key->hash = row_hash(key, nc, code_h, len);
    if ((x->rc = set_grow(x)) != HV_OK)
        return;
    for (j = key->hash & (x->setcap - 1); x->set[j] != NULL; j = (j + 1) & (x->setcap - 1))
        if (row_equal(x->set[j], key, nc))
            return;
    if (x->nvalues >= MAX_VALUES_PER_PARAM || x->total >= MAX_ROWS) {
        int per = x->nvalues >= MAX_VALUES_PER_PARAM;
        x->rc = hv__search_refuse("the search parameter '%s' of %s would index more than %d %s: the resource is "
                                  "refused rather than stored with values no search finds",
                                  x->param != NULL ? x->param : code, x->type != NULL ? x->type : "the resource",
                                  per ? MAX_VALUES_PER_PARAM : MAX_ROWS,
                                  per ? "values of one resource" : "rows of one resource, all parameters together");
        return;
    }
    x->nvalues++;
    /* The row and its strings in one allocation. */
    r = hv_arena_alloc(x->rows_arena, total);
    if (r == NULL) {
        x->rc = HV_ENOMEM;
        return;
    }
    memcpy(r, key, size);
    str = (char *)r + size;
    if (!own_code) {
        memcpy(str, code, clen + 1);
        r->code = str;
        str += clen + 1;
    }
    for (int k = 0; k < nc; k++)
        if (r->v[k].kind == V_TEXT) {
            memcpy(str, vals[k].s, len[k] + 1);
            r->v[k].s = str;
            str += len[k] + 1;
        }
    if (x->tail[t] != NULL)
        x->tail[t]->tnext = r;
    else
        x->head[t] = r;
    x->tail[t] = r;
    x->nrows[t]++;
    x->total++;
    x->set[j] = r;
}

void hv__search_bind_val(hv_db_stmt_t *st, int idx, const ixval_t *v)
{
    switch (v->kind) {
    case V_TEXT:
        hv_db_bind_text_static(st, idx, v->s, strlen(v->s)); /* the rows live until after the step */
        break;
    case V_INT:
        hv_db_bind_int64(st, idx, v->i);
        break;
    case V_DOUBLE:
        hv_db_bind_double(st, idx, v->d);
        break;
    default:
        hv_db_bind_null(st, idx);
        break;
    }
}

/*
 * The row id of the current version of x's resource (the version just inserted: the
 * store writes its row before its index rows, in the same transaction); 0 when there is
 * none (a test indexing a resource it did not store), written as NULL.
 */
static int64_t current_rid(ix_t *x)
{
    hv_db_stmt_t *st = NULL;
    int64_t rid = 0;
    if (hv_db_prepare(x->db, "SELECT MAX(rid) FROM resources WHERE type = $1 AND id = $2", &st) != HV_OK)
        return 0;
    hv_db_bind_text_static(st, 1, x->type, strlen(x->type));
    hv_db_bind_text_static(st, 2, x->id, strlen(x->id));
    if (hv_db_step(st) == HV_DB_ROW)
        rid = hv_db_column_int64(st, 0);
    hv_db_done(st);
    return rid;
}

/* The largest chunk size that left rows fill. */
static int chunk_for(size_t left)
{
    int c = NCHUNKS - 1;
    while ((size_t)chunk_rows[c] > left)
        c--;
    return c;
}

/* Binds one row's own values from parameter p on; returns the next parameter. */
static int bind_row(hv_db_stmt_t *st, int t, int p, const ixrow_t *r)
{
    hv_db_bind_text_static(st, p++, r->code, strlen(r->code));
    hv_db_bind_int64(st, p++, r->grp);
    for (int k = 0; k < tables[t].ncols; k++)
        hv__search_bind_val(st, p++, &r->v[k]);
    return p;
}

/* Writes x's rows of table t (rid: the version's row id, for the tables that carry it; 0
 * writes NULL): INSERTs of the largest chunk sizes that fit, type and id bound once each. */
static int flush_table(ix_t *x, int be, int t, int64_t rid)
{
    ixrow_t *r = x->head[t];
    size_t left = x->nrows[t];
    while (left > 0) {
        int c = chunk_for(left), p = tables[t].rid ? 4 : 3, rc;
        hv_db_stmt_t *st = NULL;
        size_t n = (size_t)chunk_rows[c];
        if (insert_sql[be][t][c] == NULL)
            return HV_ENOMEM;
        rc = hv_db_prepare(x->db, insert_sql[be][t][c], &st);
        if (rc != HV_OK)
            return rc;
        hv_db_bind_text_static(st, 1, x->type, strlen(x->type));
        hv_db_bind_text_static(st, 2, x->id, strlen(x->id));
        if (tables[t].rid && rid > 0)
            hv_db_bind_int64(st, 3, rid);
        else if (tables[t].rid)
            hv_db_bind_null(st, 3);
        for (size_t i = 0; i < n; i++, r = r->tnext)
            p = bind_row(st, t, p, r);
        rc = hv_db_step_later(st);
        hv_db_done(st);
        if (rc < 0)
            return rc;
        left -= n;
    }
    return HV_OK;
}

/* Writes the collected rows: per table, INSERTs of the largest chunk sizes that fit. */
static int flush_rows(ix_t *x, unsigned mask)
{
    int be = hv_db_kind(x->db) == HV_DB_SQLITE ? 0 : 1;
    int64_t rid = -1;
    pthread_once(&sql_once, build_sql);
    for (int t = 0; t < T_COUNT; t++) {
        int rc;
        if (!(mask & (1u << t)) || x->nrows[t] == 0)
            continue;
        if (tables[t].rid && rid < 0)
            rid = x->rid > 0 ? x->rid : (x->rid = current_rid(x)); /* kept for the combined rows */
        rc = flush_table(x, be, t, rid);
        if (rc != HV_OK)
            return rc;
    }
    return HV_OK;
}

static ixval_t vtext(const char *s)
{
    ixval_t v = {s != NULL ? V_TEXT : V_NULL, s, 0, 0};
    return v;
}

/* A text row of table sp_uri under code. */
static void put_text(ix_t *x, int table, const char *code, const char *v)
{
    ixval_t vals[1];
    vals[0] = vtext(v);
    add_row(x, table, code, vals);
}

/* A string row: the folded value the searches range over, and the value as the
 * resource has it, which :exact compares too (fhir/search_plan.c, value_clause). */
static void put_str_code(ix_t *x, const char *code, const char *s)
{
    char norm[MAX_STR], raw[MAX_STR];
    ixval_t vals[2];
    if (code == NULL || s == NULL || s[0] == '\0')
        return;
    hv__search_normalize(s, norm, sizeof(norm));
    hv__search_raw(s, raw, sizeof(raw));
    vals[0] = vtext(norm);
    vals[1] = vtext(raw);
    add_row(x, T_STR, code, vals);
}

static void put_str(ix_t *x, const char *s)
{
    put_str_code(x, x->code, s);
}

static void put_tok_code(ix_t *x, const char *code, const char *system, const char *value)
{
    ixval_t vals[2];
    if (code == NULL || value == NULL || value[0] == '\0')
        return;
    vals[0] = vtext(system);
    vals[1] = vtext(value);
    add_row(x, T_TOK, code, vals);
}

static void put_tok(ix_t *x, const char *system, const char *code)
{
    put_tok_code(x, x->code, system, code);
}

/*
 * The code of a derived index ("code:text") of the current parameter; NULL (no row) in a
 * composite's component: a composite parameter takes no modifier (search.html#composite;
 * fhir/search_plan.c refuses one), so its components' :text, :of-type and :identifier
 * rows were written but never read.
 */
static const char *sub(ix_t *x, const char *suffix)
{
    size_t n = strlen(x->code), m = strlen(suffix);
    if (x->grp > 0)
        return NULL;
    if (n + 1 + m >= sizeof(x->sub)) {
        snprintf(x->sub, sizeof(x->sub), "%s:%s", x->code, suffix);
        return x->sub;
    }
    memcpy(x->sub, x->code, n);
    x->sub[n] = ':';
    memcpy(x->sub + n + 1, suffix, m + 1);
    return x->sub;
}

/* A date, or a Period (period set: start and end, either may be absent — open). */
static void put_date(ix_t *x, const char *s, const char *end, int period)
{
    const int64_t open_lo = -((int64_t)1 << 60), open_hi = (int64_t)1 << 60;
    int64_t lo = open_lo, hi = open_hi, l2, h2;
    int have = 0;
    ixval_t vals[2];
    if (s != NULL && hv__search_date_range(s, &lo, &h2) == HV_OK) {
        have = 1;
        if (!period)
            hi = h2;
    }
    if (period && end != NULL && hv__search_date_range(end, &l2, &h2) == HV_OK) {
        hi = h2;
        have = 1;
    }
    if (!have)
        return;
    memset(vals, 0, sizeof(vals));
    vals[0].kind = V_INT;
    vals[0].i = lo;
    vals[1].kind = V_INT;
    vals[1].i = hi;
    add_row(x, T_DATE, x->code, vals);
}

/*
 * A number or quantity. A quantity whose system is UCUM (or that has no system) and
 * whose code parses as UCUM also keeps its canonical value and unit (FHIR R4
 * search.html#quantity: "the server may search on canonical units").
 */
static void put_num(ix_t *x, struct json_object *v, const char *system, const char *unit)
{
    double d, cv = 0;
    char cu[64];
    int canon = 0;
    ixval_t vals[5];
    if (v == NULL || !(json_object_is_type(v, json_type_double) || json_object_is_type(v, json_type_int)))
        return;
    d = json_object_get_double(v);
    if (unit != NULL && (system == NULL || strcmp(system, HV__UCUM_SYSTEM) == 0))
        canon = hv__search_ucum_canon(d, unit, &cv, cu, sizeof(cu)) == HV_OK;
    memset(vals, 0, sizeof(vals));
    vals[0].kind = V_DOUBLE;
    vals[0].d = d;
    vals[1] = vtext(system);
    vals[2] = vtext(unit);
    if (canon) {
        vals[3].kind = V_DOUBLE;
        vals[3].d = cv;
        vals[4] = vtext(cu);
    }
    add_row(x, T_NUM, x->code, vals);
}

static void put_ref(ix_t *x, const char *ref)
{
    char rtype[HV__FHIR_TYPE_MAX] = "";
    char buf[HV__FHIR_ID_MAX];
    const char *h, *end, *p, *slash;
    size_t tl;
    ixval_t vals[2];
    if (ref == NULL || ref[0] == '#' || ref[0] == '\0')
        return;
    /* "Type/id", "Type/id/_history/n" or an absolute URL ending in Type/id. */
    h = strstr(ref, "/_history/");
    end = h ? h : ref + strlen(ref);
    p = end;
    while (p > ref && p[-1] != '/')
        p--;
    if ((size_t)(end - p) >= sizeof(buf))
        return;
    memcpy(buf, p, (size_t)(end - p));
    buf[end - p] = '\0';
    if (p > ref) {
        slash = p - 1;
        p = slash;
        while (p > ref && p[-1] != '/')
            p--;
        tl = (size_t)(slash - p);
        if (tl > 0 && tl < sizeof(rtype)) {
            memcpy(rtype, p, tl);
            rtype[tl] = '\0';
        }
    }
    if (!hv__fhir_id_valid(buf))
        return;
    vals[0] = vtext(rtype[0] ? rtype : NULL);
    vals[1] = vtext(buf);
    add_row(x, T_REF, x->code, vals);
}

/*
 * json_object_object_get_ex(obj, name, out), name hashed under fn as key says: json-c's own
 * look-up (lh_table_lookup_entry_w_hash, json-c 0.16) without hashing name again, and with a
 * pointer compare before strcmp, as the reader's keys are the model's own copies. ~70
 * instructions a look-up where hv_json_get_ex's scan of the members took ~120 (callgrind,
 * docs/performance.md "Import, session 23"). Inline rather than json-c's exported function,
 * whose calls through the PLT and equal_fn cost ~4 k a resource (+2% of the workers, measured
 * at the merge): hence probe_agrees.
 */
static inline int member_get(hv__fhir_key_hash_fn *fn, struct json_object *obj, const char *name,
                             const sp_key_t *key, struct json_object **out)
{
    struct lh_table *t = json_object_get_object(obj);
    if (fn == NULL || t == NULL || t->hash_fn != fn)
        return hv_json_get_ex(obj, name, out);
    unsigned long n = key->hash % (unsigned long)t->size;
    for (int count = 0; count < t->size; count++) {
        const struct lh_entry *e = &t->table[n];
        const char *k = e->k;
        if (k == LH_EMPTY)
            break;
        if (k != LH_FREED && (k == key->model_name || (k[0] == name[0] && strcmp(k, name) == 0))) {
            *out = (struct json_object *)lh_entry_v(e);
            return 1;
        }
        if (++n == (unsigned long)t->size)
            n = 0;
    }
    *out = NULL;
    return 0;
}

/* Whether member_get finds in a json-c table what json_object_object_get_ex finds: its probe
 * repeats json-c's (linkhash.c: linear from hash % size, LH_EMPTY ends it, LH_FREED is
 * skipped), which the library does not promise to keep. Checked once, on a table grown past
 * its first size with members deleted, for members present, deleted and never added; a
 * json-c that probes otherwise gets hv_json_get_ex's scan, slower but not wrong. */
static int probe_agrees(void)
{
    struct json_object *o = json_object_new_object(), *a, *b;
    struct lh_table *t;
    char k[8];
    int ok = o != NULL;
    for (int i = 0; ok && i < 40; i++) {
        snprintf(k, sizeof(k), "k%d", i);
        ok = json_object_object_add(o, k, json_object_new_int(i)) == 0;
    }
    for (int i = 0; ok && i < 40; i += 3) {
        snprintf(k, sizeof(k), "k%d", i);
        json_object_object_del(o, k);
    }
    t = ok ? json_object_get_object(o) : NULL;
    for (int i = 0; t != NULL && ok && i < 48; i++) {
        sp_key_t key = {NULL, 0};
        snprintf(k, sizeof(k), "k%d", i);
        key.hash = t->hash_fn(k);
        (void)json_object_object_get_ex(o, k, &b);
        ok = member_get(t->hash_fn, o, k, &key, &a) == (b != NULL) && a == b;
    }
    json_object_put(o);
    return ok && t != NULL;
}

/* The members index_item reads by name, hashed as a direct step's names are (member_get), in
 * hash_members, which compile_all runs: member_fn NULL until then (hv_json_get_ex looks them
 * up). */
enum {
    M_VALUE,
    M_SYSTEM,
    M_CODE,
    M_UNIT,
    M_TEXT,
    M_REFERENCE,
    M_REFERENCE_TWIN,
    M_IDENTIFIER,
    M_CODING,
    M_TYPE,
    M_START,
    M_END,
    M_COUNT
};
static const char *const member_names[M_COUNT] = {"value",      "system",     "code",   "unit", "text",  "reference",
                                                  "_reference", "identifier", "coding", "type", "start", "end"};
static sp_key_t member_keys[M_COUNT];
static hv__fhir_key_hash_fn *member_fn;

static void hash_members(void)
{
    hv__fhir_key_hash_fn *fn = NULL;
    for (size_t m = 0; m < M_COUNT; m++) {
        member_keys[m].model_name = hv__fhir_key_static(member_names[m], strlen(member_names[m]));
        fn = hv__fhir_json_key_hash(member_names[m], &member_keys[m].hash);
    }
    member_fn = probe_ok ? fn : NULL;
}

/* Member m of o (json_object_object_get_ex). */
static inline int member(struct json_object *o, int m, struct json_object **out)
{
    return member_get(member_fn, o, member_names[m], &member_keys[m], out);
}

static const char *jstr(struct json_object *o, int m)
{
    struct json_object *v = NULL;
    if (o == NULL || !member(o, m, &v) || !json_object_is_type(v, json_type_string))
        return NULL;
    return json_object_get_string(v);
}

/* Calls put_str on every string of array-or-string member k of o. */
static void put_str_member(ix_t *x, struct json_object *o, const char *k)
{
    struct json_object *v = NULL;
    if (!hv_json_get_ex(o, k, &v))
        return;
    if (json_object_is_type(v, json_type_array)) {
        for (size_t i = 0; i < json_object_array_length(v); i++) {
            struct json_object *e = json_object_array_get_idx(v, i);
            if (json_object_is_type(e, json_type_string))
                put_str(x, json_object_get_string(e));
        }
    } else if (json_object_is_type(v, json_type_string)) {
        put_str(x, json_object_get_string(v));
    }
}

/* A Coding: its token, and its display for :text (search.html#modifiers). Its members
 * are read in one pass rather than looked up one by one (jstr): ~6 Codings a resource. */
static void put_coding(ix_t *x, struct json_object *c)
{
    const char *system = NULL, *code = NULL, *display = NULL;
    if (json_object_is_type(c, json_type_object)) {
        json_object_object_foreach(c, k, v)
        {
            if (!json_object_is_type(v, json_type_string))
                continue;
            if (k[0] == 's' && strcmp(k, "system") == 0)
                system = json_object_get_string(v);
            else if (k[0] == 'c' && strcmp(k, "code") == 0)
                code = json_object_get_string(v);
            else if (k[0] == 'd' && strcmp(k, "display") == 0)
                display = json_object_get_string(v);
        }
    }
    put_tok(x, system, code);
    put_str_code(x, sub(x, "text"), display);
}

/*
 * An Identifier: its token, and for :of-type (search.html#token) a row under
 * "<code>:of-type" per type coding with system = the coding's system and value =
 * "<type code>|<identifier value>".
 */
static void put_identifier(ix_t *x, struct json_object *j)
{
    struct json_object *t = NULL, *cs = NULL;
    const char *value = jstr(j, M_VALUE);
    put_tok(x, jstr(j, M_SYSTEM), value);
    if (value == NULL || !member(j, M_TYPE, &t) || !member(t, M_CODING, &cs) ||
        !json_object_is_type(cs, json_type_array))
        return;
    put_str_code(x, sub(x, "text"), jstr(t, M_TEXT));
    for (size_t i = 0; i < json_object_array_length(cs); i++) {
        struct json_object *c = json_object_array_get_idx(cs, i);
        const char *code = jstr(c, M_CODE);
        char v[MAX_STR];
        if (code == NULL)
            continue;
        snprintf(v, sizeof(v), "%s|%s", code, value);
        put_tok_code(x, sub(x, "of-type"), jstr(c, M_SYSTEM), v);
    }
}

/* Indexes one result item according to the parameter's type. */
static void index_item(ix_t *x, hv_fhir_search_type_t st, const hv_fhirpath_item_t *it)
{
    const char *ft = it->type ? it->type : "";
    struct json_object *j = it->json;
    if (it->kind != HV_FHIRPATH_NODE) {
        /* A computed value (a string, a date...): indexed by its text. */
        if (st == HV_FHIR_SP_STRING)
            put_str(x, it->text);
        else if (st == HV_FHIR_SP_TOKEN)
            put_tok(x, NULL, it->text);
        else if (st == HV_FHIR_SP_URI && it->text)
            put_text(x, T_URI, x->code, it->text);
        else if (st == HV_FHIR_SP_DATE)
            put_date(x, it->text, NULL, 0);
        return;
    }
    if (j == NULL)
        return;
    switch (st) {
    case HV_FHIR_SP_STRING:
        if (json_object_is_type(j, json_type_string)) {
            put_str(x, json_object_get_string(j));
        } else if (strcmp(ft, "HumanName") == 0) {
            put_str_member(x, j, "family");
            put_str_member(x, j, "given");
            put_str_member(x, j, "prefix");
            put_str_member(x, j, "suffix");
            put_str_member(x, j, "text");
        } else if (strcmp(ft, "Address") == 0) {
            static const char *const parts[] = {"line", "city", "district", "state", "postalCode", "country", "text"};
            for (size_t i = 0; i < HV_ARRAY_LEN(parts); i++)
                put_str_member(x, j, parts[i]);
        }
        break;
    case HV_FHIR_SP_TOKEN:
        if (json_object_is_type(j, json_type_string)) {
            put_tok(x, NULL, json_object_get_string(j));
        } else if (json_object_is_type(j, json_type_boolean)) {
            put_tok(x, NULL, json_object_get_boolean(j) ? "true" : "false");
        } else if (strcmp(ft, "Coding") == 0) {
            put_coding(x, j);
        } else if (strcmp(ft, "CodeableConcept") == 0) {
            struct json_object *cs = NULL;
            if (member(j, M_CODING, &cs) && json_object_is_type(cs, json_type_array))
                for (size_t i = 0; i < json_object_array_length(cs); i++)
                    put_coding(x, json_object_array_get_idx(cs, i));
            put_str_code(x, sub(x, "text"), jstr(j, M_TEXT));
        } else if (strcmp(ft, "Identifier") == 0) {
            put_identifier(x, j);
        } else if (strcmp(ft, "ContactPoint") == 0) {
            put_tok(x, jstr(j, M_SYSTEM), jstr(j, M_VALUE));
        }
        break;
    case HV_FHIR_SP_REFERENCE:
        if (json_object_is_type(j, json_type_string)) {
            put_ref(x, json_object_get_string(j)); /* canonical, uri */
        } else {
            struct json_object *ident = NULL;
            put_ref(x, jstr(j, M_REFERENCE));
            /* Reference.identifier, for :identifier (search.html#reference). */
            if (member(j, M_IDENTIFIER, &ident))
                put_tok_code(x, sub(x, "identifier"), jstr(ident, M_SYSTEM), jstr(ident, M_VALUE));
        }
        break;
    case HV_FHIR_SP_DATE:
        if (json_object_is_type(j, json_type_string))
            put_date(x, json_object_get_string(j), NULL, 0);
        else if (strcmp(ft, "Period") == 0)
            put_date(x, jstr(j, M_START), jstr(j, M_END), 1);
        break;
    case HV_FHIR_SP_NUMBER:
        put_num(x, j, NULL, NULL);
        break;
    case HV_FHIR_SP_QUANTITY:
        if (json_object_is_type(j, json_type_object)) {
            struct json_object *v = NULL;
            const char *unit = jstr(j, M_CODE);
            member(j, M_VALUE, &v);
            put_num(x, v, jstr(j, M_SYSTEM), unit ? unit : jstr(j, M_UNIT));
        } else {
            put_num(x, j, NULL, NULL);
        }
        break;
    case HV_FHIR_SP_URI:
        if (json_object_is_type(j, json_type_string))
            put_text(x, T_URI, x->code, json_object_get_string(j));
        break;
    default:
        break;
    }
}

/*
 * A composite parameter (search.html#composite): for each element k its expression
 * selects (at most MAX_GROUPS), each component's values are written under
 * "<code>$<i>" with grp k + 1, so a search can require the components to match in
 * the same element.
 */
static int composite_precheck = 1; /* hv__search_composite_precheck_enable */
void hv__search_composite_precheck_enable(int on)
{
    composite_precheck = on;
}

/* e's specialization for type rtype itself (spec_none when nothing can match), or NULL. */
static const sp_spec_t *spec_of_type(const sp_entry_t *e, const hv_fhir_type_t *rtype)
{
    for (size_t k = 0; k < e->nspec; k++)
        if (e->spec[k].type == rtype)
            return &e->spec[k];
    for (size_t k = 0; k < e->nnone; k++)
        if (e->none[k] == rtype)
            return &spec_none;
    return NULL;
}

/*
 * The specialization of e for a resource of type rtype: rtype's own, else — for a parameter
 * of t, a base type of rtype (_tag, _profile: Resource's) — t's when it dropped no
 * alternative, so that its fp is the expression itself and its precheck holds on any
 * subtype (the root step T passes every resource based on T). NULL: the expression.
 */
static const sp_spec_t *spec_for(const sp_entry_t *e, const hv_fhir_type_t *rtype, const hv_fhir_type_t *t)
{
    const sp_spec_t *own = spec_of_type(e, rtype);
    if (own != NULL)
        return own;
    for (size_t k = 0; k < e->nspec; k++)
        if (e->spec[k].type == t && e->spec[k].all_kept && e->spec[k].fp != NULL)
            return &e->spec[k];
    return NULL;
}

/*
 * The parameters indexed on a resource of one type, in the order compute_rows visits them
 * (the type's own, then each base type's own), with what is the same for every resource of
 * the type resolved once (compile_all, build_plans): the entry, the specialization
 * (spec_for), a composite's components' specializations, and the top-level elements each
 * precheck needs as bits of the type's key set. Looking these up per parameter of every
 * resource (entry_of, spec_for, and spec_may_match comparing names: ~37 parameters a
 * resource) cost ~7.6k instructions a resource of the population import (callgrind); a
 * resource's member names are now matched against its type's keys once (plan_present).
 */
#define PLAN_KEYS 64 /* keys one type's prechecks may need for a mask (more: names compared) */

typedef struct plan_item {
    const hv_fhir_search_t *sp;
    const sp_entry_t *e;                    /* its entry: fp not NULL, own_table */
    const hv_fhir_type_t *t;                /* the type whose own parameter it is */
    const sp_spec_t *sc;                    /* spec_for(e, the plan's type, t) when has_specs(e) */
    const sp_spec_t *comp[MAX_COMPONENTS];  /* composite: component c's specialization for the type */
    uint64_t need, comp_need[MAX_COMPONENTS]; /* sc's keys, comp[c]'s, as bits of the plan's keys */
} plan_item_t;

typedef struct plan {
    plan_item_t *items;
    size_t n;
    int masked;                  /* 1: every precheck's keys are among keys (a mask each) */
    size_t nkeys;
    const char *keys[PLAN_KEYS]; /* the specializations' own strings */
    size_t keylen[PLAN_KEYS];
    uint64_t by_first[26];       /* the keys starting with 'a' + i (keys start lower-case) */
} plan_t;

static plan_t **plans; /* by type id (hv_fhir_type_id); NULL for a type that is no concrete resource type */
static size_t nplans;

/* The bits of s's precheck keys in p, adding keys to p as needed; p->masked 0 when full. */
static uint64_t plan_need(plan_t *p, const sp_spec_t *s)
{
    uint64_t need = 0;
    if (s == NULL || !s->precheck)
        return 0;
    for (size_t i = 0; i < s->nkeys; i++) {
        size_t k;
        for (k = 0; k < p->nkeys && strcmp(p->keys[k], s->keys[i]) != 0; k++)
            ;
        if (k == p->nkeys) {
            unsigned char c = (unsigned char)s->keys[i][0];
            if (k == PLAN_KEYS || c < 'a' || c > 'z') {
                p->masked = 0;
                return 0;
            }
            p->keys[k] = s->keys[i];
            p->keylen[k] = s->keylen[i];
            p->by_first[c - 'a'] |= (uint64_t)1 << k;
            p->nkeys++;
        }
        need |= (uint64_t)1 << k;
    }
    return need;
}

/* The plan of concrete resource type rt (see plan_t). */
static int plan_build(plan_t *p, const hv_fhir_type_t *rt)
{
    size_t cap = 0;
    p->masked = 1;
    for (const hv_fhir_type_t *t = rt; t != NULL; t = hv_fhir_type_base(t))
        cap += hv_fhir_search_own_count(t);
    p->items = hv_calloc(cap > 0 ? cap : 1, sizeof(*p->items));
    if (p->items == NULL)
        return HV_ENOMEM;
    for (const hv_fhir_type_t *t = rt; t != NULL; t = hv_fhir_type_base(t))
        for (size_t i = 0; i < hv_fhir_search_own_count(t); i++) {
            const hv_fhir_search_t *sp = hv_fhir_search_own_at(t, i);
            const sp_entry_t *e = entry_find(sp); /* (within compile_all) */
            plan_item_t *pi = &p->items[p->n];
            if (e == NULL || e->fp == NULL || !e->own_table)
                continue; /* nothing to index, or searched on the resources table itself */
            pi->sp = sp;
            pi->e = e;
            pi->t = t;
            pi->sc = has_specs(e) ? spec_for(e, rt, t) : NULL;
            pi->need = plan_need(p, pi->sc);
            for (size_t c = 0; c < e->ncomp; c++) {
                const sp_entry_t *ce = entry_find(hv_fhir_search_component_at(sp, c, NULL));
                pi->comp[c] = ce != NULL ? spec_of_type(ce, rt) : NULL;
                pi->comp_need[c] = plan_need(p, pi->comp[c]);
            }
            p->n++;
        }
    return HV_OK;
}

/* Every concrete resource type's plan (compile_all). */
static int build_plans(void)
{
    size_t n = hv_fhir_type_count();
    plans = hv_calloc(n > 0 ? n : 1, sizeof(*plans));
    if (plans == NULL)
        return HV_ENOMEM;
    nplans = n;
    for (size_t id = 0; id < n; id++) {
        const hv_fhir_type_t *t = hv_fhir_type_at(id);
        if (hv_fhir_type_kind(t) != HV_FHIR_KIND_RESOURCE || hv_fhir_type_is_abstract(t))
            continue;
        if ((plans[id] = hv_calloc(1, sizeof(**plans))) == NULL || plan_build(plans[id], t) != HV_OK)
            return HV_ENOMEM;
    }
    return HV_OK;
}

/* The plan of resource type t (compute_rows); NULL when there is none. */
static const plan_t *plan_of(const hv_fhir_type_t *t)
{
    size_t id;
    pthread_once(&compile_once, compile_all);
    if (entries == NULL || t == NULL || (id = hv_fhir_type_id(t)) >= nplans)
        return NULL;
    return plans[id];
}

/* Sets bit k of x->present for each key k of p that the resource's member names (x->keys)
 * hold: the key itself or a choice variant keyX (FHIR R4 formats.html#choice), as
 * spec_may_match compares them. */
static void plan_present(ix_t *x, const plan_t *p)
{
    x->present = 0;
    for (size_t m = 0; m < x->nkeys && m < MAX_TOP_KEYS; m++) {
        const char *name = x->keys[m];
        unsigned char c = (unsigned char)name[0];
        uint64_t cand = c >= 'a' && c <= 'z' ? p->by_first[c - 'a'] & ~x->present : 0;
        while (cand != 0) {
            int k = __builtin_ctzll(cand);
            size_t kl = p->keylen[k];
            cand &= cand - 1;
            if (x->klen[m] >= kl && memcmp(name, p->keys[k], kl) == 0 &&
                (name[kl] == '\0' || (name[kl] >= 'A' && name[kl] <= 'Z')))
                x->present |= (uint64_t)1 << k;
        }
    }
}

/* spec_may_match for a specialization of plan p whose keys are need. */
static int item_may_match(const ix_t *x, const plan_t *p, const sp_spec_t *s, uint64_t need)
{
    if (s->fp == NULL)
        return 0;
    if (!s->precheck || !spec_precheck)
        return 1;
    if (p->masked)
        return (need & x->present) != 0;
    return spec_may_match(s, x->keys, x->klen, x->nkeys);
}

/* 0 when a component of composite e cannot match: the search parameter it names (FHIR R4
 * SearchParameter.component.definition, an expression over the same elements) starts only
 * at top-level elements the resource lacks (spec_may_match), so no group is complete and
 * nothing is evaluated (an Observation without value or component: ~20 evaluations). */
static int components_may_match(const ix_t *x, const plan_t *p, const plan_item_t *pi)
{
    if (x->nkeys >= MAX_TOP_KEYS)
        return 1;
    for (size_t c = 0; c < pi->e->ncomp; c++)
        if (pi->comp[c] != NULL && !item_may_match(x, p, pi->comp[c], pi->comp_need[c]))
            return 0;
    return 1;
}

/* "<code>$<c>" into out (cap bytes, truncated): a component's row code. */
static void comp_code(char *out, size_t cap, const char *code, size_t c)
{
    char digits[24], *d = digits + sizeof(digits);
    size_t n = strlen(code), nd;
    *--d = '\0';
    do {
        *--d = (char)('0' + c % 10);
        c /= 10;
    } while (c > 0);
    nd = strlen(d);
    if (n + 1 + nd + 1 > cap)
        n = cap > nd + 2 ? cap - nd - 2 : 0;
    memcpy(out, code, n);
    out[n] = '$';
    memcpy(out + n + 1, d, nd + 1);
}

static void index_composite(ix_t *x, const plan_t *p, const plan_item_t *pi, struct json_object *resource,
                            hv_arena_t *arena)
{
    const sp_entry_t *e = pi->e;
    hv_fhirpath_result_t *res = NULL, *cr[MAX_COMPONENTS];
    hv_error_t err;
    size_t n;
    char code[96];
    const char *pcode = x->code;
    if (composite_precheck && specialize_on && !components_may_match(x, p, pi))
        return;
    if (hv_fhirpath_eval(e->fp, resource, &x->env, arena, &res, &err) != HV_OK)
        return;
    n = hv_fhirpath_result_count(res);
    if (n > MAX_GROUPS) {
        x->rc = hv__search_refuse("the composite search parameter '%s' of %s would index more than %d elements "
                                  "of one resource: the resource is refused rather than stored with elements no "
                                  "search finds", x->param, x->type != NULL ? x->type : "the resource", MAX_GROUPS);
        return;
    }
    for (size_t k = 0; k < n && x->rc == HV_OK; k++) {
        x->grp = (int)k + 1;
        /* The group's rows are written only when every component has one: a composite
         * criterion matches a group through one row of each component, so a group
         * without, say, a value (an Observation's code-value-quantity when it has a
         * valueString) could never match, and its code rows were B-tree inserts for
         * nothing. The components are evaluated once and counted first (dry), then
         * written. */
        for (int pass = 0; pass < 2 && x->rc == HV_OK; pass++) {
            int complete = 1;
            x->dry = pass == 0;
            for (size_t c = 0; c < e->ncomp && x->rc == HV_OK && complete; c++) {
                const hv_fhir_search_t *csp = hv_fhir_search_component_at(e->sp, c, NULL);
                comp_code(code, sizeof(code), pcode, c);
                x->code = code;
                x->code_static = 0;
                x->nvalues = 0;
                x->dry_rows = 0;
                /* The component on element k: "(<expression>)[k].select(<component>)" without
                 * evaluating the expression again for each group and component. */
                if (pass == 0 && hv_fhirpath_eval_item(e->comp[c], res, k, &x->env, arena, &cr[c], &err) != HV_OK)
                    cr[c] = NULL;
                for (size_t i = 0; cr[c] != NULL && i < hv_fhirpath_result_count(cr[c]) && x->rc == HV_OK; i++) {
                    hv_fhirpath_item_t it;
                    if (hv_fhirpath_result_item(cr[c], i, &it) == HV_OK)
                        index_item(x, hv_fhir_search_type(csp), &it);
                }
                if (pass == 0 && x->dry_rows == 0)
                    complete = 0;
            }
            x->dry = 0;
            if (!complete)
                break;
        }
    }
    x->code = pcode;
    x->code_static = 1;
    x->grp = 0;
}

/*
 * Appends to *out (n values, cap room) the nodes FHIRPath's step to member step + 1 of obj
 * makes (hv__fp_children, push_values): one per value, an array's elements one by one, each
 * paired with the same element of the twin (step: "_name"); a node without a value (JSON
 * null, or the twin alone) is only counted in *nodes, as nothing can come of it (a complex
 * value's children are its own members; index_item needs a value). HV_ENOMEM when the
 * arena fails.
 */
/* Forced inline: index_direct's loop and index_variants both call it, and out of line it
 * costs ~30 instructions more a call (callgrind, docs/performance.md "Index rows,
 * session 22"). */
__attribute__((always_inline)) static inline int direct_step(const sp_spec_t *s, struct json_object *obj,
                                                              const char *step, const sp_key_t *key,
                                                              hv_arena_t *arena, struct json_object ***out,
                                                              size_t *n, size_t *cap, size_t *nodes)
{
    struct json_object *v = NULL, *ext = NULL;
    size_t len;
    int xa = -1; /* whether the twin is an array; -1: not looked up yet */
    member_get(s->key_fn, obj, step + 1, &key[0], &v);
    if (!json_object_is_type(v, json_type_array)) {
        /* The twin counts only where there is no value: looked up then alone. */
        if (v == NULL) {
            member_get(s->key_fn, obj, step, &key[1], &ext);
            xa = json_object_is_type(ext, json_type_array);
        }
        if (v == NULL && xa) {
            for (size_t i = 0; i < json_object_array_length(ext); i++)
                *nodes += json_object_array_get_idx(ext, i) != NULL;
            return HV_OK;
        }
        if (v == NULL && ext == NULL)
            return HV_OK;
        (*nodes)++;
        if (v == NULL)
            return HV_OK;
        len = 1;
    } else {
        len = json_object_array_length(v);
    }
    if (*n + len > *cap) {
        size_t ncap = *cap ? *cap * 2 : 16;
        struct json_object **nv;
        while (ncap < *n + len)
            ncap *= 2;
        nv = hv_arena_alloc(arena, ncap * sizeof(*nv));
        if (nv == NULL)
            return HV_ENOMEM;
        if (*n > 0)
            memcpy(nv, *out, *n * sizeof(*nv));
        *out = nv;
        *cap = ncap;
    }
    if (!json_object_is_type(v, json_type_array)) {
        (*out)[(*n)++] = v;
        return HV_OK;
    }
    for (size_t i = 0; i < len; i++) {
        struct json_object *e = json_object_array_get_idx(v, i);
        if (e != NULL) {
            (*nodes)++;
            (*out)[(*n)++] = e;
            continue;
        }
        if (xa < 0) {
            member_get(s->key_fn, obj, step, &key[1], &ext);
            xa = json_object_is_type(ext, json_type_array);
        }
        if (xa && json_object_array_get_idx(ext, i) != NULL)
            (*nodes)++;
    }
    return HV_OK;
}

static int direct_enabled = 1; /* hv__search_direct_enable */
void hv__search_direct_enable(int on)
{
    direct_enabled = on;
}

/* The variant of s's choice that obj holds: the first, in the model's type order, present as
 * a value or a twin (hv__fp_children); s->nvariants when none is. */
static size_t variant_of(const sp_spec_t *s, struct json_object *obj)
{
    size_t v;
    for (v = 0; v < s->nvariants; v++) {
        struct json_object *val = NULL, *twin = NULL;
        /* a member whose value is JSON null is no variant (get_key in fhirpath_eval.c) */
        if ((member_get(s->key_fn, obj, s->variant[v] + 1, &s->variant_key[v][0], &val) && val != NULL) ||
            (member_get(s->key_fn, obj, s->variant[v], &s->variant_key[v][1], &twin) && twin != NULL))
            break;
    }
    return v;
}

/*
 * s's element steps from the nodes *in (*nin of them), as direct_step takes them: the
 * nodes they lead to in *in and *nin. HV_ETOOBIG when a step makes more nodes than
 * max_items (the evaluation fails), the arena's error when it fails.
 */
static inline int direct_steps(const sp_spec_t *s, size_t max_items, hv_arena_t *arena, struct json_object ***in,
                               size_t *nin)
{
    for (size_t k = 0; k < s->nsteps; k++) {
        struct json_object **out = NULL;
        size_t nout = 0, cap = 0, nodes = 0;
        for (size_t i = 0; i < *nin; i++) {
            int rc;
            if (json_object_is_type((*in)[i], json_type_object) &&
                (rc = direct_step(s, (*in)[i], s->step[k], s->step_key[k], arena, &out, &nout, &cap, &nodes)) != HV_OK)
                return rc;
        }
        if (nodes > max_items)
            return HV_ETOOBIG;
        *in = out;
        *nin = nout;
    }
    return HV_OK;
}

/*
 * s's last step, a choice, from the nin nodes at in: of each object the first variant it
 * holds, as a value or a twin (hv__fp_children), gives its values, dropped when the type
 * filter drops the variant. The values in *out (*nout), in *ngroups groups: group g starts
 * at (*starts)[g] and has type (*types)[g]; *nodes as direct_step counts them.
 */
static int variants_step(const sp_spec_t *s, struct json_object *const *in, size_t nin, hv_arena_t *arena,
                         struct json_object ***out, size_t *nout, size_t *nodes, size_t **starts,
                         const char ***types, size_t *ngroups)
{
    size_t cap = 0;
    *out = NULL;
    *nout = *nodes = *ngroups = 0;
    *starts = NULL;
    *types = NULL;
    if (nin == 0)
        return HV_OK;
    *types = hv_arena_alloc(arena, nin * sizeof(**types));
    *starts = hv_arena_alloc(arena, nin * sizeof(**starts));
    if (*types == NULL || *starts == NULL)
        return HV_ENOMEM;
    for (size_t i = 0; i < nin; i++) {
        size_t v, before = *nout;
        int rc;
        if (!json_object_is_type(in[i], json_type_object) || (v = variant_of(s, in[i])) == s->nvariants)
            continue;
        if ((rc = direct_step(s, in[i], s->variant[v], s->variant_key[v], arena, out, nout, &cap, nodes)) != HV_OK)
            return rc;
        if (!s->variant_kept[v]) {
            *nout = before;
        } else if (*nout > before) { /* the object's values, consecutive in out, and their type */
            (*starts)[*ngroups] = before;
            (*types)[(*ngroups)++] = s->variant_type[v];
        }
    }
    return HV_OK;
}

/*
 * The items of one direct alternative u of a union (index_union): *n of them, the first in
 * *item with its type in *type. -1 when a step makes more nodes than max_items (the
 * evaluation fails), 0 otherwise.
 */
static int union_read(const sp_spec_t *u, size_t max_items, struct json_object *resource, hv_arena_t *arena,
                      struct json_object **item, const char **type, size_t *n)
{
    struct json_object *one[1] = {resource}, **in = one, **out = NULL;
    size_t nin = 1, nout = 0, nodes = 0, ngroups = 0, *starts;
    const char **types;
    *n = 0;
    if (direct_steps(u, max_items, arena, &in, &nin) != HV_OK)
        return -1;
    if (u->nvariants == 0) {
        *n = nin;
        if (nin > 0) {
            *item = in[0];
            *type = u->direct_type;
        }
        return 0;
    }
    if (variants_step(u, in, nin, arena, &out, &nout, &nodes, &starts, &types, &ngroups) != HV_OK)
        return -1;
    *n = nout;
    if (ngroups > 0) {
        *item = out[starts[0]];
        *type = types[0];
    }
    return nodes > max_items ? -1 : 0;
}

/*
 * A union of direct alternatives (sp_spec_t nunion): with one item from them all, that item's
 * rows, as the union of one item is that item; nothing when a step exceeds the item cap (the
 * evaluation fails); 0 (the caller evaluates) with two items or more, which '|' may merge.
 */
static int index_union(ix_t *x, hv_fhir_search_type_t st, const sp_spec_t *s, struct json_object *resource,
                       hv_arena_t *arena)
{
    struct json_object *item = NULL;
    const char *type = NULL;
    size_t total = 0;
    hv_fhirpath_item_t it;
    for (size_t a = 0; a < s->nunion; a++) {
        struct json_object *j = NULL;
        const char *t = NULL;
        size_t n = 0;
        if (union_read(&s->unions[a], s->fp->lim.max_items, resource, arena, &j, &t, &n) < 0)
            return 1;
        if (n > 0) {
            item = j;
            type = t;
        }
        if ((total += n) > 1)
            return 0;
    }
    if (total == 0)
        return 1;
    memset(&it, 0, sizeof(it));
    it.kind = HV_FHIRPATH_NODE;
    it.type = type;
    it.json = item;
    index_item(x, st, &it);
    return 1;
}

/*
 * index_direct's last step when it is a choice (s->nvariants): of each object, the first
 * variant it holds, as a value or a twin (hv__fp_children), gives its nodes, indexed with
 * the variant's type unless the type filter drops them. Nothing is indexed when the step
 * makes more nodes than the evaluation's item cap (kept or not: the filter comes after).
 */
static int index_variants(ix_t *x, hv_fhir_search_type_t st, const sp_spec_t *s, struct json_object *const *in,
                          size_t nin, hv_arena_t *arena)
{
    struct json_object **out = NULL;
    const char **types;
    size_t *starts, nout = 0, nodes = 0, ngroups = 0;
    hv_fhirpath_item_t it;
    if (variants_step(s, in, nin, arena, &out, &nout, &nodes, &starts, &types, &ngroups) != HV_OK ||
        nodes > s->fp->lim.max_items)
        return 1;
    memset(&it, 0, sizeof(it));
    it.kind = HV_FHIRPATH_NODE;
    for (size_t g = 0; g < ngroups && x->rc == HV_OK; g++) {
        size_t stop = g + 1 < ngroups ? starts[g + 1] : nout;
        it.type = types[g];
        for (size_t k = starts[g]; k < stop && x->rc == HV_OK; k++) {
            it.json = out[k];
            index_item(x, st, &it);
        }
    }
    return 1;
}

/*
 * The rows hv_fhirpath_eval's items would give for a direct specialization s, whose root
 * step the resource passes (its type is s's, or a subtype when s->direct_any), without
 * evaluating: the members followed step by step (direct_step). A step making more nodes
 * than the expression's item cap fails the evaluation, and then the parameter indexes
 * nothing, as here. With s->ref_prefix, the References found are kept as
 * where(reference.startsWith(ref_prefix)) keeps them when each is an object whose reference
 * is absent or a string, without a "_reference" twin; 0 (nothing indexed: the caller
 * evaluates) when one is not, whose evaluation is left to FHIRPath's own rules. 1 otherwise.
 * A choice as the last step is read by index_variants.
 */
static int index_direct(ix_t *x, hv_fhir_search_type_t st, const sp_spec_t *s, struct json_object *resource,
                        hv_arena_t *arena)
{
    struct json_object *one[1] = {resource}, **in = one;
    size_t nin = 1;
    hv_fhirpath_item_t it;
    if (direct_steps(s, s->fp->lim.max_items, arena, &in, &nin) != HV_OK)
        return 1;
    if (s->nvariants > 0)
        return index_variants(x, st, s, in, nin, arena);
    if (s->ref_prefix[0] != '\0') {
        size_t kept = 0, pl = strlen(s->ref_prefix);
        for (size_t i = 0; i < nin; i++) {
            struct json_object *ref = NULL, *twin = NULL;
            if (!json_object_is_type(in[i], json_type_object) || member(in[i], M_REFERENCE_TWIN, &twin))
                return 0;
            if (!member(in[i], M_REFERENCE, &ref))
                continue;
            if (!json_object_is_type(ref, json_type_string))
                return 0;
            if (strncmp(json_object_get_string(ref), s->ref_prefix, pl) == 0)
                in[kept++] = in[i]; /* in is this call's (the last step's out) */
        }
        nin = kept;
    }
    memset(&it, 0, sizeof(it));
    it.kind = HV_FHIRPATH_NODE;
    it.type = s->direct_type;
    for (size_t i = 0; i < nin && x->rc == HV_OK; i++) {
        it.json = in[i];
        index_item(x, st, &it);
    }
    return 1;
}

static int index_params(ix_t *x, const plan_t *p, struct json_object *resource, hv_arena_t *arena)
{
    for (size_t i = 0; i < p->n && x->rc == HV_OK; i++) {
        const plan_item_t *pi = &p->items[i];
        const sp_entry_t *e = pi->e;
        const hv_fhirpath_t *fp = e->fp;
        const sp_spec_t *sc = NULL;
        hv_fhirpath_result_t *res = NULL;
        hv_error_t err; /* hv_fhirpath_eval clears it itself */
        hv_fhir_search_type_t st = hv_fhir_search_type(pi->sp);
        if (specialize_on && has_specs(e) && x->nkeys < MAX_TOP_KEYS) {
            sc = pi->sc;
            if (sc != NULL)
                fp = item_may_match(x, p, sc, pi->need) ? sc->fp : NULL;
            if (fp == NULL)
                continue;
        }
        if (x->strings_only && st != HV_FHIR_SP_STRING && st != HV_FHIR_SP_TOKEN && st != HV_FHIR_SP_COMPOSITE)
            continue;
        x->code = hv_fhir_search_code(pi->sp);
        x->code_static = 1;
        if (e->may_alias && hv__search_row_code(pi->t, x->code) != x->code)
            continue; /* another parameter's rows serve it (row_alias) */
        x->nvalues = 0;
        x->param = x->code;
        hv_arena_reset(arena);
        if (st == HV_FHIR_SP_COMPOSITE) {
            index_composite(x, p, pi, resource, arena);
            continue;
        }
        /* The evaluation's root is the resource as x->env.resource_type: direct when that is
         * the type the specialization is for. */
        if (sc != NULL && (sc->nsteps > 0 || sc->nvariants > 0) && direct_enabled && x->env.resource_type == x->rtype &&
            (sc->type == x->rtype || sc->direct_any) && index_direct(x, st, sc, resource, arena))
            continue;
        if (sc != NULL && sc->nunion > 0 && direct_enabled && x->env.resource_type == x->rtype &&
            sc->type == x->rtype && index_union(x, st, sc, resource, arena))
            continue;
        if (hv_fhirpath_eval(fp, resource, &x->env, arena, &res, &err) != HV_OK)
            continue;
        for (size_t k = 0; k < hv_fhirpath_result_count(res) && x->rc == HV_OK; k++) {
            hv_fhirpath_item_t it;
            if (hv_fhirpath_result_item(res, k, &it) == HV_OK)
                index_item(x, st, &it);
        }
    }
    return x->rc;
}

/* The rows of one resource tree, computed without a database (hv__search_index_rows). */
struct hv__search_rows {
    ix_t x;
    hv__search_batch_t *batch; /* hv__search_rows_join: a first version's rows wait there */
};

/* A first version whose rows wait in a batch. The type and id are the writer's, which
 * outlive the flush (search_int.h). */
struct hv__search_batch_item {
    const ix_t *x;
    const char *type, *id;
    int64_t rid;
};

void hv__search_rows_join(hv__search_rows_t *r, hv__search_batch_t *b)
{
    if (r != NULL)
        r->batch = b;
}

static int batch_add(hv__search_batch_t *b, const ix_t *x, const char *type, const char *id, int64_t rid)
{
    if (b->n == b->cap) {
        size_t cap = b->cap > 0 ? b->cap * 2 : 8;
        struct hv__search_batch_item *items = hv_realloc(b->items, cap * sizeof(*items));
        if (items == NULL)
            return HV_ENOMEM;
        b->items = items;
        b->cap = cap;
    }
    b->items[b->n++] = (struct hv__search_batch_item){x, type, id, rid};
    return HV_OK;
}

/* Writes table t's rows of the batch's versions (left of them in all) in statements of
 * the largest chunk sizes that fit, each row binding its own type, id and rid. */
static int flush_table_multi(hv_db_t *db, int be, int t, const hv__search_batch_t *b, size_t left)
{
    size_t item = 0;
    const ixrow_t *r = NULL;
    while (left > 0) {
        int c = chunk_for(left), p = 1, rc;
        hv_db_stmt_t *st = NULL;
        size_t n = (size_t)chunk_rows[c];
        if (insert_multi_sql[be][t][c] == NULL)
            return HV_ENOMEM;
        rc = hv_db_prepare(db, insert_multi_sql[be][t][c], &st);
        if (rc != HV_OK)
            return rc;
        for (size_t i = 0; i < n; i++) {
            const struct hv__search_batch_item *it;
            while (r == NULL) /* the next version's rows of the table; left says there is one */
                r = b->items[item++].x->head[t];
            it = &b->items[item - 1];
            hv_db_bind_text_static(st, p++, it->type, strlen(it->type));
            hv_db_bind_text_static(st, p++, it->id, strlen(it->id));
            if (tables[t].rid)
                hv_db_bind_int64(st, p++, it->rid);
            p = bind_row(st, t, p, r);
            r = r->tnext;
        }
        rc = hv_db_step_later(st);
        hv_db_done(st);
        if (rc < 0)
            return rc;
        left -= n;
    }
    return HV_OK;
}

int hv__search_batch_flush(hv_db_t *db, hv__search_batch_t *b)
{
    int be = hv_db_kind(db) == HV_DB_SQLITE ? 0 : 1, rc = HV_OK;
    pthread_once(&sql_once, build_sql);
    for (int t = 0; t < T_COUNT && rc == HV_OK; t++) {
        size_t rows = 0, holders = 0, last = 0;
        for (size_t i = 0; i < b->n; i++)
            if (b->items[i].x->nrows[t] > 0) {
                rows += b->items[i].x->nrows[t];
                holders++;
                last = i;
            }
        if (holders > 1) {
            rc = flush_table_multi(db, be, t, b, rows);
        } else if (holders == 1) {
            /* One version's rows: its type and id are bound once per statement. */
            ix_t x = *b->items[last].x;
            x.db = db;
            x.type = b->items[last].type;
            x.id = b->items[last].id;
            rc = flush_table(&x, be, t, b->items[last].rid);
        }
    }
    b->n = 0;
    return rc;
}

void hv__search_batch_clear(hv__search_batch_t *b)
{
    hv_free(b->items);
    memset(b, 0, sizeof(*b));
}

void hv__search_rows_free(hv__search_rows_t *r)
{
    if (r == NULL)
        return;
    hv_free(r->x.set);
    hv_arena_free(r->x.rows_arena);
    hv_free(r);
}

/* Collects the rows of resource (a type's own parameters, then the inherited ones)
 * into x, whose rows_arena is set; touches no database. */
static int compute_rows(ix_t *x, const char *type, struct json_object *resource)
{
    hv_arena_t *arena = NULL;
    const hv_fhir_type_t *t = hv_fhir_resource_type(type);
    const plan_t *p = plan_of(t);
    const char *keys[MAX_TOP_KEYS];
    size_t klen[MAX_TOP_KEYS];
    int rc = HV_OK;
    if (t != NULL && p == NULL)
        return HV_ENOMEM; /* compile_all failed */
    x->keys = keys;
    x->klen = klen;
    x->rtype = t;
    if (x->type == NULL)
        x->type = type; /* for a refusal's text (the rows computed ahead have no id yet) */
    x->nkeys = 0;
    memset(&x->env, 0, sizeof(x->env));
    if (json_object_is_type(resource, json_type_object)) {
        struct json_object *rt = NULL;
        /* Looked up as the evaluator would on each evaluation (hv_fhirpath_env_t.resource_type). */
        if (hv_json_get_ex(resource, "resourceType", &rt) && json_object_is_type(rt, json_type_string))
            x->env.resource_type = hv_fhir_resource_type(json_object_get_string(rt));
        json_object_object_foreach(resource, key, val)
        {
            (void)val;
            if (x->nkeys == MAX_TOP_KEYS) {
                x->nkeys++; /* too many to look at: every expression is evaluated */
                break;
            }
            x->keys[x->nkeys] = key[0] == '_' ? key + 1 : key;
            x->klen[x->nkeys] = strlen(x->keys[x->nkeys]);
            x->nkeys++;
        }
    }
    arena = hv_arena_new(0);
    if (arena == NULL) {
        rc = HV_ENOMEM;
    } else if (p != NULL) {
        if (p->masked && x->nkeys < MAX_TOP_KEYS)
            plan_present(x, p);
        rc = index_params(x, p, resource, arena);
    }
    hv_arena_free(arena);
    /* The key pointers belong to the tree, the arrays to this call: not kept past it. */
    x->nkeys = 0;
    x->keys = NULL;
    x->klen = NULL;
    return rc;
}

int hv__search_index_rows(const char *type, struct json_object *resource, hv__search_rows_t **out)
{
    hv__search_rows_t *r = hv_calloc(1, sizeof(*r));
    int rc;
    if (r == NULL)
        return HV_ENOMEM;
    r->x.rc = HV_OK;
    r->x.rows_arena = hv_arena_new(16384);
    if (r->x.rows_arena == NULL) {
        hv_free(r);
        return HV_ENOMEM;
    }
    rc = compute_rows(&r->x, type, resource);
    if (rc != HV_OK) {
        hv__search_rows_free(r);
        return rc;
    }
    *out = r;
    return HV_OK;
}

int hv__search_rows_text(const hv__search_rows_t *r, hv_buf_t *out)
{
    int rc = HV_OK;
    for (int t = 0; t < T_COUNT && rc == HV_OK; t++)
        for (const ixrow_t *row = r->x.head[t]; row != NULL && rc == HV_OK; row = row->tnext) {
            rc = hv_buf_printf(out, "%s %s %d", tables[t].name, row->code, row->grp);
            for (int k = 0; k < tables[t].ncols && rc == HV_OK; k++) {
                const ixval_t *v = &row->v[k];
                if (v->kind == V_TEXT)
                    rc = hv_buf_printf(out, " '%s'", v->s);
                else if (v->kind == V_INT)
                    rc = hv_buf_printf(out, " %lld", (long long)v->i);
                else if (v->kind == V_DOUBLE)
                    rc = hv_buf_printf(out, " %.17g", v->d);
                else
                    rc = hv_buf_puts(out, " NULL");
            }
            if (rc == HV_OK)
                rc = hv_buf_putc(out, '\n');
        }
    return rc;
}

/* hv__search_rows_pick_fn over the rows of an ix_t (ud). */
static size_t rows_pick(void *ud, const char *table, const char *code, int grp0, const hv__search_val_t **out,
                        size_t max)
{
    const ix_t *x = ud;
    for (int t = 0; t < T_COUNT; t++) {
        size_t n = 0;
        if (tables[t].name != table && strcmp(tables[t].name, table) != 0) /* one literal, often the same */
            continue;
        for (const ixrow_t *r = x->head[t]; r != NULL; r = r->tnext)
            if ((!grp0 || r->grp == 0) && strcmp(r->code, code) == 0) {
                if (n < max)
                    out[n] = r->v;
                n++;
            }
        return n;
    }
    return (size_t)-1; /* a table this writer does not hold */
}

int hv__search_index_put(hv_db_t *db, const char *type, const char *id, struct json_object *resource,
                         int replace)
{
    return hv__search_index_put_pre(db, type, id, resource, replace, NULL, 0);
}

int hv__search_index_put_pre(hv_db_t *db, const char *type, const char *id, struct json_object *resource,
                             int replace, const hv__search_rows_t *pre, int64_t rid)
{
    static const char *const del[] = {
        "DELETE FROM sp_str WHERE type = $1 AND id = $2",  "DELETE FROM sp_tok WHERE type = $1 AND id = $2",
        "DELETE FROM sp_ref WHERE type = $1 AND id = $2",  "DELETE FROM sp_date WHERE type = $1 AND id = $2",
        "DELETE FROM sp_num WHERE type = $1 AND id = $2",  "DELETE FROM sp_uri WHERE type = $1 AND id = $2"};
    ix_t x;
    int rc = HV_OK;
    memset(&x, 0, sizeof(x));
    x.db = db;
    x.type = type;
    x.id = id;
    x.rid = rid;
    x.rc = HV_OK;
    if (replace) {
        /* While a Bulk sync has the search indexes deferred (hv__search_values_hinted), the
         * deletes below would scan each table without the writer's (type, id ...) indexes:
         * the first replacement builds them (a no-op once built). */
        if (hv_db_kind(db) == HV_DB_SQLITE && !hv__search_values_hinted(db) &&
            (rc = hv__import_restore_writer_indexes_job(db)) != HV_OK)
            return rc;
        for (size_t k = 0; k < HV_ARRAY_LEN(del); k++)
            if ((rc = hv__search_exec2(db, del[k], type, id)) != HV_OK)
                return rc;
        if ((rc = hv__search_combo_put(db, type, id, 0, 1, NULL, NULL)) != HV_OK)
            return rc;
    }
    if ((rc = hv__search_special_put(db, type, id, resource, replace, rid)) != HV_OK || (resource == NULL && pre == NULL))
        return rc;
    if (pre != NULL) {
        /* Rows computed ahead (on the import's reader thread): only written here. */
        ix_t px = pre->x;
        px.db = db;
        px.type = type;
        px.id = id;
        px.rid = rid;
        if (pre->batch != NULL && !replace && rid > 0)
            rc = batch_add(pre->batch, &pre->x, type, id, rid); /* written by hv__search_batch_flush */
        else
            rc = flush_rows(&px, ALL_TABLES);
        /* The combined rows are computed from the same rows (fhir/search_combo.c). */
        return rc == HV_OK ? hv__search_combo_put_rows(db, type, id, px.rid, rows_pick, &px) : rc;
    }
    x.rows_arena = hv_arena_new(16384);
    if (x.rows_arena == NULL) {
        rc = HV_ENOMEM;
        goto out;
    }
    rc = compute_rows(&x, type, resource);
    if (rc == HV_OK)
        rc = flush_rows(&x, ALL_TABLES);
    if (rc == HV_OK)
        rc = hv__search_combo_put_rows(db, type, id, x.rid, rows_pick, &x);
out:
    hv_free(x.set);
    hv_arena_free(x.rows_arena);
    return rc;
}

int hv__search_index_put_strings(hv_db_t *db, const char *type, const char *id, struct json_object *resource)
{
    ix_t x;
    int rc = hv__search_exec2(db, "DELETE FROM sp_str WHERE type = $1 AND id = $2", type, id);
    if (rc != HV_OK)
        return rc;
    if ((rc = hv__search_special_put(db, type, id, resource, 1, 0)) != HV_OK)
        return rc;
    memset(&x, 0, sizeof(x));
    x.db = db;
    x.type = type;
    x.id = id;
    x.rc = HV_OK;
    x.strings_only = 1;
    x.rows_arena = hv_arena_new(16384);
    if (x.rows_arena == NULL)
        return HV_ENOMEM;
    rc = compute_rows(&x, type, resource);
    if (rc == HV_OK)
        rc = flush_rows(&x, 1u << T_STR);
    hv_free(x.set);
    hv_arena_free(x.rows_arena);
    return rc;
}
