/*
 * ucum.c — unit tests of terminology/ucum.c, ucum_parse.c, ucum_load.c and the
 * `ucum` commands (cli.c): loading, parsing and its errors, canonical forms,
 * conversion (ratio and special units), the unit algebra, caps, the cache, threads.
 */
#include "config.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tests.h"
#include "terminology/terminology.h"
#include "terminology/ucum.h"

static hv_ucum_t *table;

static int setup(void **state) {
    hv_error_t err;
    (void)state;
    hv_error_clear(&err);
    if (test_essence_path() == NULL) return -1;
    return hv_ucum_new(test_essence_path(), 0, &table, &err) == HV_OK ? 0 : -1;
}

static int teardown(void **state) {
    (void)state;
    hv_ucum_free(table);
    table = NULL;
    return 0;
}

/* Writes text to a temporary file and returns its path (static buffer). */
static const char *temp_file(const char *text) {
    static char path[64];
    FILE *f;
    int fd;
    snprintf(path, sizeof path, "/tmp/hv_ucum_test_XXXXXX");
    fd = mkstemp(path);
    assert_true(fd >= 0);
    f = fdopen(fd, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
    return path;
}

static void ucum_load_reads_version_and_date(void **state) {
    (void)state;
    assert_string_equal(hv_ucum_version(table), "2.2");
    assert_string_equal(hv_ucum_revision_date(table), "2024-06-17");
}

static void ucum_load_fails_on_missing_file(void **state) {
    hv_ucum_t *u = NULL;
    hv_error_t err;
    (void)state;
    hv_error_clear(&err);
    assert_int_equal(hv_ucum_new("/nonexistent/ucum-essence.xml", 0, &u, &err), HV_EIO);
    assert_null(u);
    assert_string_equal(err.location, "/nonexistent/ucum-essence.xml");
}

static void ucum_load_rejects_bad_files(void **state) {
    static const struct {
        const char *xml;
        int code;
        const char *message_has;
    } cases[] = {
        {"<root><unit", HV_EPROTO, "not well-formed"},
        {"<other/>", HV_EPROTO, "root element"},
        {"<root><base-unit Code='m' dim='L'/><base-unit Code='s' dim='T'/>"
         "<base-unit Code='g' dim='M'/><base-unit Code='rad' dim='A'/><base-unit Code='K' dim='C'/>"
         "<base-unit Code='C' dim='Q'/><base-unit Code='cd' dim='F'/>"
         "<unit Code='ft'><name>foot</name><value Unit='yd' value='1'/></unit></root>",
         HV_EPROTO, "unknown unit 'yd'"},
        {"<root><base-unit Code='m' dim='L'/><base-unit Code='s' dim='T'/>"
         "<base-unit Code='g' dim='M'/><base-unit Code='rad' dim='A'/><base-unit Code='K' dim='C'/>"
         "<base-unit Code='C' dim='Q'/><base-unit Code='cd' dim='F'/>"
         "<unit Code='a'><value Unit='b' value='2'/></unit>"
         "<unit Code='b'><value Unit='a' value='2'/></unit></root>",
         HV_EPROTO, "circular"},
        {"<root><base-unit Code='m' dim='L'/></root>", HV_EPROTO, "base unit of dimension T"},
        {"<root><base-unit Code='m' dim='L'/><unit Code='m'><value Unit='m' value='1'/></unit></root>",
         HV_EPROTO, "defined twice"},
        {"<root><base-unit Code='m' dim='L'/><unit Code='x'><value Unit='m' value='abc'/></unit></root>",
         HV_EPROTO, "no valid value"},
    };
    size_t i;
    (void)state;
    for (i = 0; i < HV_ARRAY_LEN(cases); i++) {
        hv_ucum_t *u = NULL;
        hv_error_t err;
        const char *path = temp_file(cases[i].xml);
        hv_error_clear(&err);
        assert_int_equal(hv_ucum_new(path, 0, &u, &err), cases[i].code);
        assert_null(u);
        if (strstr(err.message, cases[i].message_has) == NULL)
            fail_msg("case %zu: '%s' lacks '%s'", i, err.message, cases[i].message_has);
        unlink(path);
    }
}

static void ucum_convert_ratio_and_special_units(void **state) {
    static const struct {
        double value;
        const char *from, *to;
        double want, tol;
    } cases[] = {
        {1, "m", "m", 1, 0},
        {100, "mg/dL", "g/L", 1, 1e-12},
        {5.5, "mmol/L", "umol/mL", 5.5, 1e-12},
        {1, "10*3/uL", "10*9/L", 1, 1e-12},
        {1, "10^3/uL", "10*9/L", 1, 1e-12},
        {1, "[lb_av]", "kg", 0.45359237, 1e-12},
        {12, "[in_i]", "[ft_i]", 1, 1e-12},
        {1, "h", "s", 3600, 0},
        {2, "kg/m2", "g/cm2", 0.2, 1e-12},
        {1, "/min", "Hz", 1.0 / 60, 1e-15},
        {1, "%", "1", 0.01, 1e-15},
        {250, "{cells}/uL", "/L", 2.5e8, 1},
        {1, "[IU]/mL", "[iU]/L", 1000, 1e-9},
        {37, "Cel", "K", 310.15, 1e-9},
        {37, "Cel", "[degF]", 98.6, 1e-9},
        {98.6, "[degF]", "Cel", 37, 1e-9},
        {0, "[degRe]", "Cel", 0, 1e-9},
        {80, "[degRe]", "Cel", 100, 1e-9},
        {0, "K", "Cel", -273.15, 1e-9},
        {7.4, "[pH]", "mol/L", 3.981071705534973e-08, 1e-20},
        {1e-7, "mol/L", "[pH]", 7, 1e-9},
        {20, "dB[V]", "V", 10, 1e-9},
        {1, "V", "B[V]", 0, 1e-12},
        {100, "%[slope]", "deg", 45, 1e-9},
        {1, "[p'diop]", "%[slope]", 1, 1e-9},
        {3, "[hp'_X]", "1", 0.001, 1e-15},
        {1, "Np", "1", M_E, 1e-12},
        {8, "bit_s", "1", 256, 1e-9},
        {2, "[m/s2/Hz^(1/2)]", "m2/s4/Hz", 4, 1e-12},
        {1, "mCel", "Cel", 0.001, 1e-12},
    };
    size_t i;
    (void)state;
    for (i = 0; i < HV_ARRAY_LEN(cases); i++) {
        hv_error_t err;
        double got = -1;
        int rc;
        hv_error_clear(&err);
        rc = hv_ucum_convert(table, cases[i].value, cases[i].from, cases[i].to, &got, &err);
        if (rc != HV_OK) fail_msg("%s -> %s: %s", cases[i].from, cases[i].to, err.message);
        if (fabs(got - cases[i].want) > cases[i].tol)
            fail_msg("%g %s -> %s: got %.17g, want %.17g", cases[i].value, cases[i].from,
                     cases[i].to, got, cases[i].want);
    }
}

static void ucum_parse_rejects_invalid_units_with_position(void **state) {
    static const struct {
        const char *unit;
        int code, column;
        const char *message_has;
    } cases[] = {
        {"m/", HV_EINVAL, 2, "not followed"},
        {"m.", HV_EINVAL, 2, "not followed"},
        {".m", HV_EINVAL, 1, "not preceded"},
        {"g/12h", HV_EINVAL, 3, "write '12.h'"},
        {"10+3/ul", HV_EINVAL, 3, "only units take exponents"},
        {"{a}rad2", HV_EINVAL, 4, "annotation"},
        {"ug(8.h)", HV_EINVAL, 3, "'(' must be preceded"},
        {"rad2{\xe9}", HV_EINVAL, 6, "printable ASCII"},
        {"iU", HV_EINVAL, 1, "unknown unit 'iU'"},
        {"mg/kg[H20]", HV_EINVAL, 4, "unknown unit 'kg[H20]'"},
        {"(m", HV_EINVAL, 1, "not closed by ')'"},
        {"m)", HV_EINVAL, 2, "')' without '('"},
        {"()", HV_EINVAL, 1, "empty"},
        {"[iU", HV_EINVAL, 1, "not closed by ']'"},
        {"m{a", HV_EINVAL, 2, "not closed by '}'"},
        {"m{a{b}}", HV_EINVAL, 4, "do not nest"},
        {"(m)2", HV_EINVAL, 4, "exponent cannot follow ')'"},
        {"k[in_i]", HV_EINVAL, 1, "takes no prefix"},
        {"m-", HV_EINVAL, 2, "not followed by exponent digits"},
        {"m 2", HV_EINVAL, 2, "a space"},
        {"CEL", HV_EINVAL, 1, "unknown unit"},
        {"0", HV_EINVAL, 1, "factor of 0"},
        {"/", HV_EINVAL, 1, "not followed"},
        {"m]", HV_EINVAL, 2, "']'"},
        {"m12345", HV_ETOOBIG, 2, "more than 4 digits"},
        {"10*9999", HV_ETOOBIG, 1, "out of range"},
        {"1234567890123456", HV_ETOOBIG, 1, "digits"},
    };
    size_t i;
    (void)state;
    for (i = 0; i < HV_ARRAY_LEN(cases); i++) {
        hv_error_t err;
        hv_ucum_canon_t c;
        int rc;
        hv_error_clear(&err);
        rc = hv_ucum_parse(table, cases[i].unit, &c, &err);
        if (rc != cases[i].code || err.column != cases[i].column ||
            strstr(err.message, cases[i].message_has) == NULL)
            fail_msg("'%s': got %d column %d '%s', want %d column %d '...%s...'", cases[i].unit, rc,
                     err.column, err.message, cases[i].code, cases[i].column,
                     cases[i].message_has);
    }
}

static void ucum_parse_accepts_grammar_forms(void **state) {
    static const char *const units[] = {
        "",        "1",          "/m",      "10*3/ul",          "10*-3",   "10*+3",
        "10^3",    "m[H2O]",     "rad2{a}", "{a}.rad2{b}",      "1{c}",    "{e}",
        "%",       "(m/s)/(kg)", "((m))",   "4.[pi].10*-7.N/A2", "''.'", "B[10.nV]",
        "%[slope]", "dar",       "Pa",      "cd",               "m3.kg-1.s-2", "mm[Hg]",
        "[drp]/{HPF}", "{rbc}/[HPF]", "kat/kg", "m{a b}",
    };
    size_t i;
    (void)state;
    for (i = 0; i < HV_ARRAY_LEN(units); i++) {
        hv_error_t err;
        hv_error_clear(&err);
        if (hv_ucum_validate(table, units[i], &err) != HV_OK)
            fail_msg("'%s' rejected: column %d %s", units[i], err.column, err.message);
    }
}

static void ucum_parse_resolves_prefix_and_atom_precedence(void **state) {
    hv_ucum_canon_t c;
    hv_error_t err;
    (void)state;
    /* "Pa" is the pascal, not peta-year; "cd" the candela, not centi-day. */
    assert_int_equal(hv_ucum_parse(table, "Pa", &c, &err), HV_OK);
    assert_int_equal(c.dim[HV_UCUM_DIM_G], 1);
    assert_int_equal(c.dim[HV_UCUM_DIM_M], -1);
    assert_int_equal(c.dim[HV_UCUM_DIM_S], -2);
    assert_int_equal(hv_ucum_parse(table, "cd", &c, &err), HV_OK);
    assert_int_equal(c.dim[HV_UCUM_DIM_CD], 1);
    /* "dam" is decameter (2-character prefix), "dm" decimeter. */
    assert_int_equal(hv_ucum_parse(table, "dam", &c, &err), HV_OK);
    assert_true(fabs(c.magnitude - 10) < 1e-12);
    assert_int_equal(hv_ucum_parse(table, "dm", &c, &err), HV_OK);
    assert_true(fabs(c.magnitude - 0.1) < 1e-12);
    /* Left associativity: s/4/m is (s/4)/m. */
    assert_int_equal(hv_ucum_parse(table, "s/4/m", &c, &err), HV_OK);
    assert_true(fabs(c.magnitude - 0.25) < 1e-15);
    assert_int_equal(c.dim[HV_UCUM_DIM_M], -1);
}

static void ucum_special_units_are_flagged(void **state) {
    hv_ucum_canon_t c;
    hv_error_t err;
    double v;
    (void)state;
    assert_int_equal(hv_ucum_parse(table, "Cel", &c, &err), HV_OK);
    assert_true(c.flags & HV_UCUM_SPECIAL);
    assert_int_equal(hv_ucum_parse(table, "Cel/h", &c, &err), HV_OK);
    assert_true(c.flags & HV_UCUM_SPECIAL_MIXED);
    assert_false(c.flags & HV_UCUM_SPECIAL);
    assert_int_equal(hv_ucum_parse(table, "Cel2", &c, &err), HV_OK);
    assert_true(c.flags & HV_UCUM_SPECIAL_MIXED);
    hv_error_clear(&err);
    assert_int_equal(hv_ucum_convert(table, 1, "Cel/h", "K/h", &v, &err), HV_ENOTSUP);
    assert_non_null(strstr(err.message, "special unit"));
    /* Out of a function's domain: the log of a non-positive amount. */
    hv_error_clear(&err);
    assert_int_equal(hv_ucum_convert(table, 0, "mol/L", "[pH]", &v, &err), HV_EINVAL);
    assert_int_equal(hv_ucum_parse(table, "[IU]", &c, &err), HV_OK);
    assert_true(c.flags & HV_UCUM_ARBITRARY);
}

static void ucum_convert_refuses_incommensurable_units(void **state) {
    hv_error_t err;
    double v = 42;
    (void)state;
    hv_error_clear(&err);
    assert_int_equal(hv_ucum_convert(table, 1, "mg", "mL", &v, &err), HV_EINVAL);
    assert_true(v == 42); /* untouched on failure */
    assert_string_equal(err.message, "cannot convert 'mg' (g) to 'mL' (m3): not commensurable");
    hv_error_clear(&err);
    assert_int_equal(hv_ucum_convert(table, 1, "[IU]", "[arb'U]", &v, &err), HV_EINVAL);
    assert_int_equal(hv_ucum_convert(table, 1, "mol", "1", &v, &err), HV_OK); /* mol is a number */
    assert_int_equal(hv_ucum_commensurable(table, "mg/dL", "kg/m3", &err), 1);
    assert_int_equal(hv_ucum_commensurable(table, "mg/dL", "mmol/L", &err), 0);
    assert_int_equal(hv_ucum_commensurable(table, "mg/dL", "xx", &err), HV_EINVAL);
    hv_error_clear(&err);
    assert_int_equal(hv_ucum_convert(table, 1, "m", "qq", &v, &err), HV_EINVAL);
    assert_int_equal(err.column, 1);
}

static void ucum_canonicalize_quantities_for_search(void **state) {
    static const struct {
        double value;
        const char *unit;
        double want;
        const char *canon;
    } cases[] = {
        {37, "Cel", 310.15, "K"},
        {100, "mg/dL", 1000, "g.m-3"},
        {1, "", 1, "1"},
        {2, "{tbl}", 2, "1"},
        {1, "N", 1000, "g.m.s-2"},
        {1, "S", 0.001, "C2.g-1.m-2.s"},
        {3, "[iU]/L", 3000, "m-3.[iU]"},
        {1, "[IU]/L", 1000, "m-3.[iU]"},
    };
    size_t i;
    (void)state;
    for (i = 0; i < HV_ARRAY_LEN(cases); i++) {
        hv_error_t err;
        double v;
        char canon[64];
        hv_error_clear(&err);
        assert_int_equal(
            hv_ucum_canonicalize(table, cases[i].value, cases[i].unit, &v, canon, sizeof canon, &err),
            HV_OK);
        if (fabs(v - cases[i].want) > 1e-9 * fabs(cases[i].want) || strcmp(canon, cases[i].canon))
            fail_msg("%g %s: got %.17g %s, want %.17g %s", cases[i].value, cases[i].unit, v, canon,
                     cases[i].want, cases[i].canon);
    }
    {
        char small[3];
        double v;
        hv_error_t err;
        assert_int_equal(hv_ucum_canonicalize(table, 1, "N", &v, small, sizeof small, &err),
                         HV_ETOOBIG);
    }
}

static void ucum_canonical_print_reparses_to_same_form(void **state) {
    static const char *const units[] = {"mg/dL", "N", "S", "[IU]/mL", "Cel", "kat/kg",
                                        "[mu_0]", "mm[Hg]", "{rbc}", "[lb_av]/h/(kg/s)"};
    size_t i;
    (void)state;
    for (i = 0; i < HV_ARRAY_LEN(units); i++) {
        hv_ucum_canon_t a, b;
        hv_error_t err;
        char p[128];
        assert_int_equal(hv_ucum_parse(table, units[i], &a, &err), HV_OK);
        assert_int_equal(hv_ucum_canon_print(table, &a, p, sizeof p), HV_OK);
        if (hv_ucum_parse(table, p, &b, &err) != HV_OK) fail_msg("'%s' printed '%s'", units[i], p);
        assert_true(hv_ucum_canon_commensurable(&a, &b));
        assert_true(fabs(b.magnitude - 1) < 1e-15);
    }
}

static void ucum_mul_div_combine_units(void **state) {
    hv_ucum_canon_t g, m, r, cel, arb[5];
    hv_error_t err;
    const char *arbs[5] = {"[iU]", "[arb'U]", "[USP'U]", "[GPL'U]", "[MPL'U]"};
    size_t i;
    (void)state;
    assert_int_equal(hv_ucum_parse(table, "g", &g, &err), HV_OK);
    assert_int_equal(hv_ucum_parse(table, "km", &m, &err), HV_OK);
    assert_int_equal(hv_ucum_canon_mul(&g, &m, &r), HV_OK);
    assert_int_equal(r.dim[HV_UCUM_DIM_G], 1);
    assert_int_equal(r.dim[HV_UCUM_DIM_M], 1);
    assert_true(fabs(r.magnitude - 1000) < 1e-9);
    assert_int_equal(hv_ucum_canon_div(&g, &m, &r), HV_OK);
    assert_int_equal(r.dim[HV_UCUM_DIM_M], -1);
    assert_true(fabs(r.magnitude - 0.001) < 1e-15);
    assert_int_equal(hv_ucum_parse(table, "Cel", &cel, &err), HV_OK);
    assert_int_equal(hv_ucum_canon_mul(&g, &cel, &r), HV_ENOTSUP);
    /* Dividing a unit by itself gives unity. */
    assert_int_equal(hv_ucum_canon_div(&m, &m, &r), HV_OK);
    assert_true(hv_ucum_canon_commensurable(&r, &(hv_ucum_canon_t){.magnitude = 1}));
    /* More distinct arbitrary units than HV_UCUM_MAX_ARB. */
    for (i = 0; i < 5; i++) assert_int_equal(hv_ucum_parse(table, arbs[i], &arb[i], &err), HV_OK);
    r = arb[0];
    for (i = 1; i < 4; i++) assert_int_equal(hv_ucum_canon_mul(&r, &arb[i], &r), HV_OK);
    assert_int_equal(r.narb, 4);
    assert_int_equal(hv_ucum_canon_mul(&r, &arb[4], &r), HV_ETOOBIG);
    hv_error_clear(&err);
    assert_int_equal(hv_ucum_validate(table, "[iU].[arb'U].[USP'U].[GPL'U].[MPL'U]", &err),
                     HV_ETOOBIG);
}

static void ucum_caps_bound_length_and_depth(void **state) {
    char big[HV_UCUM_MAX_UNIT_LEN + 8], deep[2 * HV_UCUM_MAX_DEPTH + 8];
    hv_error_t err;
    int i;
    (void)state;
    memset(big, 'm', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    assert_int_equal(hv_ucum_validate(table, big, &err), HV_ETOOBIG);
    for (i = 0; i <= HV_UCUM_MAX_DEPTH; i++) deep[i] = '(';
    deep[i++] = 'm';
    deep[i] = '\0';
    hv_error_clear(&err);
    assert_int_equal(hv_ucum_validate(table, deep, &err), HV_ETOOBIG);
    assert_non_null(strstr(err.message, "deeper"));
    assert_int_equal(hv_ucum_validate(table, NULL, &err), HV_EINVAL);
}

static void ucum_display_names_follow_the_functional_tests(void **state) {
    static const struct {
        const char *unit, *display;
    } cases[] = {
        {"", "(unity)"},
        {"mm", "(millimeter)"},
        {"m3.kg-1", "(meter ^ 3) * (kilogram ^ -1)"},
        {"/h", "1 / (hour)"},
        {"Cel", "(degree Celsius)"},
    };
    size_t i;
    (void)state;
    for (i = 0; i < HV_ARRAY_LEN(cases); i++) {
        hv_buf_t b;
        hv_error_t err;
        hv_buf_init(&b, 0);
        assert_int_equal(hv_ucum_display_name(table, cases[i].unit, &b, &err), HV_OK);
        assert_string_equal(b.data, cases[i].display);
        hv_buf_release(&b);
    }
    {
        hv_buf_t b;
        hv_error_t err;
        hv_buf_init(&b, 0);
        assert_int_equal(hv_buf_puts(&b, "x"), HV_OK);
        assert_int_equal(hv_ucum_display_name(table, "mm/qq", &b, &err), HV_EINVAL);
        assert_string_equal(b.data, "x"); /* nothing appended on failure */
        hv_buf_release(&b);
    }
}

static void ucum_cache_hits_and_stays_correct_when_small(void **state) {
    hv_ucum_t *u = NULL;
    hv_error_t err;
    uint64_t hits = 0, misses = 0;
    static const char *const units[] = {"mg", "kg", "g", "mg/dL", "mmol/L", "m", "cm", "km",
                                        "s",  "h",  "d", "L",     "mL",     "uL", "Cel", "K",
                                        "[degF]", "Pa", "kPa", "mm[Hg]"};
    size_t i, round;
    (void)state;
    hv_error_clear(&err);
    assert_int_equal(hv_ucum_new(test_essence_path(), 4, &u, &err), HV_OK); /* tiny: collisions */
    for (round = 0; round < 3; round++)
        for (i = 0; i < HV_ARRAY_LEN(units); i++) {
            hv_ucum_canon_t a, b;
            assert_int_equal(hv_ucum_parse(u, units[i], &a, &err), HV_OK);
            assert_int_equal(hv_ucum_parse(table, units[i], &b, &err), HV_OK);
            assert_memory_equal(&a, &b, sizeof a);
        }
    hv_ucum_cache_stats(u, &hits, &misses);
    assert_int_equal(hits + misses, 3 * HV_ARRAY_LEN(units));
    assert_true(hits > 0);
    assert_true(misses >= HV_ARRAY_LEN(units));
    hv_ucum_free(u);
}

typedef struct worker {
    hv_ucum_t *u;
    int failures;
} worker_t;

static void convert_many(void *arg) {
    worker_t *w = arg;
    static const char *const from[] = {"mg/dL", "[lb_av]", "Cel", "mmol/L", "10*3/uL"};
    static const char *const to[] = {"g/L", "kg", "[degF]", "umol/L", "10*9/L"};
    int i;
    for (i = 0; i < 2000; i++) {
        double v;
        hv_error_t err;
        size_t k = (size_t)i % HV_ARRAY_LEN(from);
        if (hv_ucum_convert(w->u, 1, from[k], to[k], &v, &err) != HV_OK) w->failures++;
    }
}

static void ucum_is_safe_to_share_between_threads(void **state) {
    hv_ucum_t *u = NULL;
    hv_error_t err;
    uv_thread_t t[4];
    worker_t w[4];
    int i;
    (void)state;
    assert_int_equal(hv_ucum_new(test_essence_path(), 2, &u, &err), HV_OK);
    for (i = 0; i < 4; i++) {
        w[i].u = u;
        w[i].failures = 0;
        assert_int_equal(uv_thread_create(&t[i], convert_many, &w[i]), 0);
    }
    for (i = 0; i < 4; i++) {
        uv_thread_join(&t[i]);
        assert_int_equal(w[i].failures, 0);
    }
    hv_ucum_free(u);
}

static void ucum_shared_table_loads_once(void **state) {
    hv_error_t err;
    hv_ucum_t *a, *b;
    double v;
    (void)state;
    assert_int_equal(hv_ucum_shared_set_path(test_essence_path()), HV_OK);
    a = hv_ucum_shared(&err);
    assert_non_null(a);
    b = hv_ucum_shared(&err);
    assert_ptr_equal(a, b);
    assert_int_equal(hv_ucum_shared_set_path("/elsewhere.xml"), HV_EBUSY);
    assert_int_equal(hv_ucum_convert(a, 1, "g", "mg", &v, &err), HV_OK);
    assert_true(fabs(v - 1000) < 1e-9);
}

/*
 * With --enable-fault-injection: every allocation of a load may fail; the load must then
 * fail cleanly with HV_ENOMEM (the sanitizer build checks that nothing leaks). Strided
 * over the ~4,000 allocations of a load to stay fast.
 */
#ifdef HV_FAULT_INJECTION
static void ucum_load_survives_allocation_failures(void **state) {
    long n, failures = 0;
    (void)state;
    for (n = 1; n < 20000; n += n < 64 ? 1 : 97) {
        hv_ucum_t *u = NULL;
        hv_error_t err;
        int rc;
        hv_error_clear(&err);
        hv_alloc_fail_after(n);
        rc = hv_ucum_new(test_essence_path(), 16, &u, &err);
        hv_alloc_fail_after(0);
        if (rc == HV_OK) {
            hv_ucum_free(u);
            break; /* past the last allocation */
        }
        assert_int_equal(rc, HV_ENOMEM);
        assert_null(u);
        failures++;
    }
    assert_true(failures > 64);
}
#endif

/* Runs a command with its output captured in a temporary file; returns the exit code. */
static int run_cmd(int (*cmd)(const char *, int, char **, FILE *, FILE *), int argc, char **argv,
                   char *out, size_t outlen) {
    FILE *f = tmpfile();
    size_t n;
    int rc;
    assert_non_null(f);
    rc = cmd(test_essence_path(), argc, argv, f, f);
    rewind(f);
    n = fread(out, 1, outlen - 1, f);
    out[n] = '\0';
    fclose(f);
    return rc;
}

static void ucum_commands_convert_and_validate(void **state) {
    char out[1024];
    char *conv[] = {"37", "Cel", "[degF]"};
    char *bad[] = {"1", "mg", "mL"};
    char *nan[] = {"abc", "mg", "g"};
    char *valid[] = {"mg/dL"};
    char *invalid[] = {"g/12h"};
    (void)state;
    assert_int_equal(run_cmd(hv_terminology_ucum_convert_cmd, 3, conv, out, sizeof out), HV_EXIT_OK);
    assert_string_equal(out, "98.6\n");
    assert_int_equal(run_cmd(hv_terminology_ucum_convert_cmd, 3, bad, out, sizeof out),
                     HV_EXIT_FAILURE);
    assert_non_null(strstr(out, "not commensurable"));
    assert_int_equal(run_cmd(hv_terminology_ucum_convert_cmd, 3, nan, out, sizeof out),
                     HV_EXIT_USAGE);
    assert_int_equal(run_cmd(hv_terminology_ucum_convert_cmd, 2, conv, out, sizeof out),
                     HV_EXIT_USAGE);
    assert_int_equal(run_cmd(hv_terminology_ucum_validate_cmd, 1, valid, out, sizeof out),
                     HV_EXIT_OK);
    assert_non_null(strstr(out, "g.m-3"));
    assert_int_equal(run_cmd(hv_terminology_ucum_validate_cmd, 1, invalid, out, sizeof out),
                     HV_EXIT_FAILURE);
    assert_non_null(strstr(out, "column 3"));
}

int run_ucum_tests(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(ucum_load_reads_version_and_date),
        cmocka_unit_test(ucum_load_fails_on_missing_file),
        cmocka_unit_test(ucum_load_rejects_bad_files),
        cmocka_unit_test(ucum_convert_ratio_and_special_units),
        cmocka_unit_test(ucum_parse_rejects_invalid_units_with_position),
        cmocka_unit_test(ucum_parse_accepts_grammar_forms),
        cmocka_unit_test(ucum_parse_resolves_prefix_and_atom_precedence),
        cmocka_unit_test(ucum_special_units_are_flagged),
        cmocka_unit_test(ucum_convert_refuses_incommensurable_units),
        cmocka_unit_test(ucum_canonicalize_quantities_for_search),
        cmocka_unit_test(ucum_canonical_print_reparses_to_same_form),
        cmocka_unit_test(ucum_mul_div_combine_units),
        cmocka_unit_test(ucum_caps_bound_length_and_depth),
        cmocka_unit_test(ucum_display_names_follow_the_functional_tests),
        cmocka_unit_test(ucum_cache_hits_and_stays_correct_when_small),
        cmocka_unit_test(ucum_is_safe_to_share_between_threads),
        cmocka_unit_test(ucum_shared_table_loads_once),
        cmocka_unit_test(ucum_commands_convert_and_validate),
#ifdef HV_FAULT_INJECTION
        cmocka_unit_test(ucum_load_survives_allocation_failures),
#endif
    };
#ifndef HV_FAULT_INJECTION
    printf("[ NOT RUN  ] ucum_load_survives_allocation_failures: needs configure "
           "--enable-fault-injection\n");
#endif
    return cmocka_run_group_tests_name("ucum", tests, setup, teardown);
}
