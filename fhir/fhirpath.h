/*
 * fhirpath.h — FHIRPath (normative, N1 / 2.0.0, as used by FHIR R4) over FHIR
 * resources held as json-c trees of their JSON form.
 *
 * An expression is compiled once into a tree (hv_fhirpath_compile) and evaluated
 * many times (hv_fhirpath_eval), each evaluation allocating its result from an
 * arena the caller owns and resets. A compiled expression is immutable and may be
 * evaluated from several threads at once.
 *
 *   hv_fhirpath_t *fp = NULL;
 *   if (hv_fhirpath_compile("Patient.name.given", 0, NULL, &fp, &err) == HV_OK) {
 *       hv_fhirpath_result_t *r = NULL;
 *       if (hv_fhirpath_eval(fp, patient, NULL, arena, &r, &err) == HV_OK) { ... }
 *       hv_fhirpath_free(fp);
 *   }
 *
 * The lead folds these declarations into fhir/fhir.h; until then this header is
 * the public face of the FHIRPath engine.
 */
#ifndef HV_FHIRPATH_H
#define HV_FHIRPATH_H

#include <stddef.h>
#include <stdint.h>

#include "engine/engine.h"

#ifdef __cplusplus
extern "C" {
#endif

struct json_object;

/* Caps (hv_setting_t keys fhirpath.max_expression, fhirpath.max_depth, fhirpath.max_items). */
#define HV_FHIRPATH_MAX_EXPRESSION_DEFAULT 65536 /* bytes of expression text */
#define HV_FHIRPATH_MAX_DEPTH_DEFAULT 200        /* nesting of the syntax tree and of evaluation */
#define HV_FHIRPATH_MAX_ITEMS_DEFAULT 1000000    /* items in one intermediate collection */

typedef struct hv_fhirpath_limits {
    size_t max_expression;
    unsigned max_depth;
    size_t max_items;
    unsigned flags; /* HV_FHIRPATH_STRICT */
} hv_fhirpath_limits_t;

/*
 * Strict mode: the semantic checks of the FHIRPath suite's mode="strict" — a resource type
 * name at the start of a path that is not the evaluated resource's type is an error (not an
 * empty result); after `as T` / `as(T)` a name that is not an element of T is a compile
 * error; order-dependent functions (first, last, tail, skip, take, []) on the unordered
 * output of children()/descendants() are compile errors. Off by default: the shared R4
 * search parameters rely on the lenient behaviour.
 */
#define HV_FHIRPATH_STRICT 1u

/* A compiled expression. */
typedef struct hv_fhirpath hv_fhirpath_t;

/*
 * Compiles expression text (len 0 means NUL-terminated). On a syntax error returns
 * HV_EPROTO and fills err with the 1-based column (and line) of the offending token
 * and a message; HV_ETOOBIG when a cap is exceeded. limits may be NULL (defaults).
 */
int hv_fhirpath_compile(const char *expr, size_t len, const hv_fhirpath_limits_t *limits,
                        hv_fhirpath_t **out, hv_error_t *err);
void hv_fhirpath_free(hv_fhirpath_t *fp);
/* Writes the expression back as canonical, fully parenthesized FHIRPath text. */
int hv_fhirpath_print(const hv_fhirpath_t *fp, hv_buf_t *out);

/*
 * Terminology provider for memberOf(): answers whether a code (system may be NULL)
 * is in the value set `valueset` (a canonical URL). Sets *member to 0 or 1 and
 * returns HV_OK, or returns HV_ENOTFOUND when the value set is unknown (memberOf then
 * yields an empty result, as FHIR R4 fhirpath.html#functions allows).
 */
typedef int (*hv_fhirpath_member_cb)(void *ud, const char *valueset, const char *system,
                                     const char *code, int *member);

/*
 * Sets the process-wide memberOf() provider, used when an evaluation's environment
 * names none (the terminology module sets it while it runs; NULL removes it). Call it
 * only while no evaluation runs (module init and free). The provider may be called
 * from any thread that evaluates FHIRPath, and must be thread-safe.
 */
void hv_fhirpath_set_member_provider(hv_fhirpath_member_cb fn, void *ud);

/* A user-defined environment variable (%name): a JSON value, or a string. */
typedef struct hv_fhirpath_var {
    const char *name;              /* without the '%' */
    struct json_object *json;      /* the value as JSON (object, array, string...), or NULL */
    const char *type;              /* FHIR type of json when it is an element (may be NULL) */
} hv_fhirpath_var_t;

typedef struct hv_fhirpath_env {
    /* %resource and %rootResource (NULL: the evaluated resource). */
    struct json_object *resource;
    struct json_object *root_resource;
    const hv_fhirpath_var_t *vars;
    size_t nvars;
    hv_fhirpath_member_cb member_of; /* NULL: memberOf() returns empty */
    void *member_ud;
    /* The current date and time for now()/today()/timeOfDay(), ms since the epoch; 0 = clock. */
    uint64_t now_ms;
    /* The type of the evaluated resource when the caller has looked it up already: it must be
     * hv_fhir_resource_type() of the resource's "resourceType" (the type the evaluation would
     * find itself). NULL: looked up on every evaluation (a member lookup and a type lookup,
     * ~550 instructions; the search index evaluates ~25 expressions per resource). */
    const struct hv_fhir_type *resource_type;
} hv_fhirpath_env_t;

/* The result of an evaluation: a collection, allocated in the evaluation's arena. */
typedef struct hv_fhirpath_result hv_fhirpath_result_t;

/*
 * Evaluates fp with `resource` as the focus and %context. env may be NULL. Errors
 * that the FHIRPath specification makes errors (single() on several items, a type
 * mismatch in an operator, an unknown element of a known type, a cap) return
 * HV_EINVAL / HV_ETOOBIG with err filled. The result lives until the arena is
 * reset or freed; the resource must outlive it (items point into it).
 */
int hv_fhirpath_eval(const hv_fhirpath_t *fp, struct json_object *resource,
                     const hv_fhirpath_env_t *env, hv_arena_t *arena,
                     hv_fhirpath_result_t **out, hv_error_t *err);

/*
 * Evaluates fp with item i of an earlier result `from` as the focus and $this ($index 0):
 * what `(<from's expression>)[i].select(<fp>)` gives, without evaluating from's expression
 * again (a composite search parameter's components, per element its expression selects).
 * %context, %resource and %rootResource are those of from's evaluation; env gives the
 * variables (may be NULL). HV_ENOTFOUND when from has no item i. from must still be alive
 * (its arena not reset); the result lives in arena like hv_fhirpath_eval's.
 */
int hv_fhirpath_eval_item(const hv_fhirpath_t *fp, const hv_fhirpath_result_t *from, size_t i,
                          const hv_fhirpath_env_t *env, hv_arena_t *arena,
                          hv_fhirpath_result_t **out, hv_error_t *err);

/* Item kinds of a result. */
typedef enum hv_fhirpath_kind {
    HV_FHIRPATH_NODE = 0, /* an element of the resource: json + FHIR type */
    HV_FHIRPATH_BOOLEAN,
    HV_FHIRPATH_INTEGER,
    HV_FHIRPATH_DECIMAL,
    HV_FHIRPATH_STRING,
    HV_FHIRPATH_DATE,
    HV_FHIRPATH_DATETIME,
    HV_FHIRPATH_TIME,
    HV_FHIRPATH_QUANTITY
} hv_fhirpath_kind_t;

/* A read-only view of one result item. */
typedef struct hv_fhirpath_item {
    hv_fhirpath_kind_t kind;
    const char *type;          /* FHIR type ("HumanName", "date") or System type name */
    struct json_object *json;  /* NODE: the element (NULL for a primitive that has only
                                  an extension); borrowed from the resource */
    const char *text;          /* all but NODE: the value as FHIRPath text (no quotes,
                                  dates without '@', quantities as `1.5 'mg'`) */
    const char *unit;          /* QUANTITY: the unit */
} hv_fhirpath_item_t;

size_t hv_fhirpath_result_count(const hv_fhirpath_result_t *r);
/* Fills item i; its strings live in the evaluation's arena. */
int hv_fhirpath_result_item(hv_fhirpath_result_t *r, size_t i, hv_fhirpath_item_t *out);
/*
 * Appends the result as a JSON array: nodes as their JSON, booleans and numbers as
 * JSON literals (decimals with their exact digits), everything else as strings,
 * quantities as {"value":..,"unit":..}.
 */
int hv_fhirpath_result_json(hv_fhirpath_result_t *r, hv_buf_t *out);

/* The settings of FHIRPath (caps), terminated by {NULL}. */
extern const hv_setting_t hv_fhirpath_settings[];
/* The `fhirpath EXPRESSION [FILE]` command, terminated by {NULL}. */
extern const hv_command_t hv_fhirpath_commands[];
/* The settings and the `fhirpath` command as a module for modules.c. */
extern const hv_module_t hv_fhirpath_module;

#ifdef __cplusplus
}
#endif
#endif /* HV_FHIRPATH_H */
