/*
 * ucum.h — the Unified Code for Units of Measure (UCUM), as a leaf library.
 *
 * Parses case-sensitive UCUM unit expressions (https://ucum.org/ucum, §§1-25:
 * prefixes, atoms, signed exponents, "." and "/", a leading "/", parentheses,
 * annotations "{...}" (alone they mean unity), "10*3" and "10^3", square-bracketed
 * atoms), reduces them to a canonical form (a magnitude times a vector of
 * exponents of the seven UCUM base units, plus the arbitrary units involved), and
 * converts values between commensurable units, including the special units on
 * non-ratio scales (Cel, [degF], [pH], B[V], %[slope] ...) through their functions.
 *
 * The definitions come from the UCUM essence file (ucum-essence.xml, read with
 * libxml2). This header depends only on engine/engine.h: fhir/ includes it for
 * quantity comparison and search (see DESIGN.md).
 *
 * Threads: an hv_ucum_t is immutable once loaded except for its bounded cache of
 * parsed units, which is guarded by a mutex, so every function below may be called
 * from any thread on a shared hv_ucum_t.
 *
 *   hv_ucum_t *u = hv_ucum_shared(&err);          // the process-wide table
 *   double v;
 *   if (u && hv_ucum_convert(u, 37.0, "Cel", "[degF]", &v, &err) == HV_OK) ... // 98.6
 */
#ifndef HV_TERMINOLOGY_UCUM_H
#define HV_TERMINOLOGY_UCUM_H

#include <stddef.h>
#include <stdint.h>

#include "engine/engine.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The seven UCUM base units (ucum-essence.xml <base-unit>), in this order. */
enum hv_ucum_dim {
    HV_UCUM_DIM_M = 0, /* meter, length */
    HV_UCUM_DIM_S,     /* second, time */
    HV_UCUM_DIM_G,     /* gram, mass */
    HV_UCUM_DIM_RAD,   /* radian, plane angle */
    HV_UCUM_DIM_K,     /* kelvin, temperature */
    HV_UCUM_DIM_C,     /* coulomb, electric charge */
    HV_UCUM_DIM_CD,    /* candela, luminous intensity */
    HV_UCUM_NDIM
};

/* Caps. Unit strings longer than this are refused (HV_ETOOBIG). */
#define HV_UCUM_MAX_UNIT_LEN 512
/* Parenthesis nesting deeper than this is refused. */
#define HV_UCUM_MAX_DEPTH 32
/* Distinct arbitrary units ([IU], [arb'U] ...) one expression may combine. */
#define HV_UCUM_MAX_ARB 4

/* Flags of a canonical form. */
enum {
    /* The expression is a single special unit (Cel, [degF], [pH], dB[V] ...) with
     * exponent 1 and no other term: values convert through its function. */
    HV_UCUM_SPECIAL = 1 << 0,
    /* A special unit appears combined with other terms or an exponent ("Cel/h",
     * "Cel2"): the expression is valid UCUM but no value conversion is defined. */
    HV_UCUM_SPECIAL_MIXED = 1 << 1,
    /* At least one arbitrary unit (UCUM §23: [IU], [arb'U] ...) appears: it is
     * commensurable only with expressions of the same arbitrary units. */
    HV_UCUM_ARBITRARY = 1 << 2
};

/*
 * The canonical form of a unit expression. For ratio-scale units a value x in the
 * unit equals x * magnitude in the base units raised to dim[]. For a special unit
 * (HV_UCUM_SPECIAL) x corresponds to the ratio-scale value
 * f_inverse(x * special_scale) * magnitude, f being the unit's function (opaque
 * id special_fn). Two forms are commensurable when dim[], the arbitrary units and
 * their exponents are equal; their magnitudes need not be.
 */
typedef struct hv_ucum_canon {
    double magnitude;
    int16_t dim[HV_UCUM_NDIM];
    uint8_t flags;
    uint8_t narb;                 /* entries used in arb[] */
    struct {
        uint16_t atom;            /* index of the arbitrary unit in the loaded table */
        int16_t exp;
    } arb[HV_UCUM_MAX_ARB];       /* sorted by atom */
    int special_fn;               /* valid with HV_UCUM_SPECIAL; 0 otherwise */
    double special_scale;         /* the prefix factor applied to the special value */
} hv_ucum_canon_t;

typedef struct hv_ucum hv_ucum_t;

/*
 * Loads the UCUM definitions from an essence file (ucum-essence.xml, version 2.x).
 * A malformed file or a definition that does not parse fails with HV_EPROTO (or
 * HV_EIO if the file cannot be read), and err names the unit and the reason.
 * cache_max bounds the parsed-unit cache (entries); 0 picks the default (4096).
 */
int hv_ucum_new(const char *path, size_t cache_max, hv_ucum_t **out, hv_error_t *err);
void hv_ucum_free(hv_ucum_t *u);

/*
 * The default essence path: the installed copy ($(pkgdatadir)/ucum-essence.xml) if
 * it exists, else the copy in the source tree (terminology/data/ucum-essence.xml).
 * The setting terminology.ucum_essence overrides it (terminology module).
 */
const char *hv_ucum_default_path(void);

/*
 * The process-wide table, loaded once on first use from the path given to
 * hv_ucum_shared_set_path() or else hv_ucum_default_path(). The definitions are
 * immutable data shared by every module (like a compiled-in table), which is why
 * this one global is allowed. Returns NULL and fills err if loading failed (the
 * failure is remembered; every later call fails the same way).
 */
hv_ucum_t *hv_ucum_shared(hv_error_t *err);
/* Chooses the path the shared table loads from; HV_EBUSY once it is loaded. */
int hv_ucum_shared_set_path(const char *path);
/* The same, with the size of its cache of parsed units (0: the default, 4096). */
int hv_ucum_shared_configure(const char *path, size_t cache_max);

/* The essence version ("2.2") and revision date ("2024-06-17") of a loaded table. */
const char *hv_ucum_version(const hv_ucum_t *u);
const char *hv_ucum_revision_date(const hv_ucum_t *u);

/*
 * Parses a unit expression into its canonical form. "" is unity (the HL7 v3
 * default for a missing unit). On an invalid expression returns HV_EINVAL with
 * err->column the 1-based position of the problem and err->message the reason
 * ("unknown unit 'iU' at 1", "'/' is not followed by a term"); HV_ETOOBIG past a cap.
 * Results are cached (bounded), so parsing the same unit again is cheap.
 */
int hv_ucum_parse(hv_ucum_t *u, const char *unit, hv_ucum_canon_t *out, hv_error_t *err);

/* Validates a unit expression: HV_OK, or HV_EINVAL/HV_ETOOBIG with err as above. */
int hv_ucum_validate(hv_ucum_t *u, const char *unit, hv_error_t *err);

/* True (1) when both canonical forms measure the same kind of quantity. */
int hv_ucum_canon_commensurable(const hv_ucum_canon_t *a, const hv_ucum_canon_t *b);

/*
 * True (1) when both unit expressions are valid and commensurable, 0 when they are
 * valid and not, a negative status (err filled) when either is invalid.
 */
int hv_ucum_commensurable(hv_ucum_t *u, const char *from, const char *to, hv_error_t *err);

/*
 * Converts a value from one unit to another. Incommensurable units fail with
 * HV_EINVAL and a message naming both canonical forms ("cannot convert 'mg' (g)
 * to 'mL' (m3): not commensurable"); a special unit used inside a larger
 * expression fails with HV_ENOTSUP; a value outside a special function's domain
 * (log of a non-positive number) with HV_EINVAL.
 */
int hv_ucum_convert(hv_ucum_t *u, double value, const char *from, const char *to, double *out,
                    hv_error_t *err);
/* The same with parsed forms (no parsing, no cache). */
int hv_ucum_canon_convert(const hv_ucum_canon_t *from, double value, const hv_ucum_canon_t *to,
                          double *out, hv_error_t *err);

/*
 * Canonicalizes a quantity for comparison and search indexing: *value_out is the
 * value expressed in the canonical units, and canonical_unit (if not NULL) receives
 * the canonical unit string (see hv_ucum_canon_print), NUL-terminated; unit_len is
 * its size (64 bytes is enough for every practical unit; HV_ETOOBIG otherwise).
 * Special units are converted to their ratio scale ("37 Cel" -> 310.15 "K").
 */
int hv_ucum_canonicalize(hv_ucum_t *u, double value, const char *unit, double *value_out,
                         char *canonical_unit, size_t unit_len, hv_error_t *err);

/*
 * Prints the unit part of a canonical form as a UCUM expression of base units
 * (and arbitrary atoms), in a fixed order: "g.m-1.s-2", "m3", "[iU]/l" -> "[iU].m-3";
 * unity prints as "1". The magnitude is not printed. Parsing the printed string
 * gives the same dimensions with magnitude 1. Returns HV_ETOOBIG if out is small.
 */
int hv_ucum_canon_print(const hv_ucum_t *u, const hv_ucum_canon_t *c, char *out, size_t outlen);

/*
 * Products and quotients of units: out = a * b and out = a / b (magnitudes multiply
 * or divide, exponents add or subtract). Special units give HV_ENOTSUP; more
 * than HV_UCUM_MAX_ARB arbitrary units HV_ETOOBIG.
 */
int hv_ucum_canon_mul(const hv_ucum_canon_t *a, const hv_ucum_canon_t *b, hv_ucum_canon_t *out);
int hv_ucum_canon_div(const hv_ucum_canon_t *a, const hv_ucum_canon_t *b, hv_ucum_canon_t *out);

/*
 * The human-readable display name of a unit expression, as the UCUM functional
 * tests define it: "mm" -> "(millimeter)", "m3.kg-1" -> "(meter ^ 3) * (kilogram ^ -1)",
 * "" -> "(unity)". Appends UTF-8 to out.
 */
int hv_ucum_display_name(hv_ucum_t *u, const char *unit, hv_buf_t *out, hv_error_t *err);

/* Cache statistics (for /metrics): lookups that hit and that missed. */
void hv_ucum_cache_stats(hv_ucum_t *u, uint64_t *hits, uint64_t *misses);

#ifdef __cplusplus
}
#endif
#endif /* HV_TERMINOLOGY_UCUM_H */
