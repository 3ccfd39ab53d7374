/*
 * fuzz_ucum.c — libFuzzer target for the UCUM parser (terminology/ucum_parse.c).
 *
 * The input is a unit expression. Invariants checked on every input:
 *   - an invalid unit fails with HV_EINVAL or HV_ETOOBIG, a column within the input
 *     (1 .. length+1) and a non-empty reason; display_name fails the same way;
 *   - a valid unit parses to the same canonical form twice (cache) and uncached;
 *   - its canonical print parses again, to a commensurable form whose own print is
 *     the same string, with magnitude 1 when no arbitrary unit is involved;
 *   - converting 1 of the unit to itself gives 1 (ratio-scale units).
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "terminology/ucum.h"
#include "terminology/ucum_int.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static hv_ucum_t *table;

static void check_valid(const char *s, size_t n, const hv_ucum_canon_t *c) {
    hv_ucum_canon_t again, nocache, re;
    hv_error_t err;
    char p1[256], p2[256];
    double v;
    if (hv_ucum_parse(table, s, &again, &err) != HV_OK || memcmp(&again, c, sizeof again) != 0)
        abort();
    if (hv__ucum_parse(table, s, n, &nocache, NULL, &err) != HV_OK ||
        memcmp(&nocache, c, sizeof nocache) != 0)
        abort();
    if (hv_ucum_canon_print(table, c, p1, sizeof p1) != HV_OK) return; /* huge exponents */
    if (hv_ucum_parse(table, p1, &re, &err) != HV_OK) {
        /* Printed exponents are within parse caps only if they fit 4 digits. */
        size_t d;
        for (d = 0; d < HV_UCUM_NDIM; d++)
            if (c->dim[d] > 9999 || c->dim[d] < -9999) return;
        for (d = 0; d < c->narb; d++)
            if (c->arb[d].exp > 9999 || c->arb[d].exp < -9999) return;
        if (err.code == HV_ETOOBIG) return; /* magnitude of a printed power out of range */
        abort();
    }
    if (!hv_ucum_canon_commensurable(c, &re)) abort();
    if (hv_ucum_canon_print(table, &re, p2, sizeof p2) != HV_OK || strcmp(p1, p2) != 0) abort();
    if (re.narb == 0 && re.magnitude != 1.0) abort();
    if ((c->flags & (HV_UCUM_SPECIAL | HV_UCUM_SPECIAL_MIXED)) == 0) {
        if (hv_ucum_canon_convert(c, 1.0, c, &v, &err) != HV_OK || fabs(v - 1.0) > 1e-9) abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char *s;
    hv_ucum_canon_t c;
    hv_error_t err;
    hv_buf_t disp;
    size_t n;
    int rc, drc;
    if (table == NULL) {
        if (hv_ucum_new(NULL, 64, &table, &err) != HV_OK) {
            fprintf(stderr, "fuzz_ucum: cannot load %s: %s\n", hv_ucum_default_path(), err.message);
            abort();
        }
    }
    if (size > 2 * HV_UCUM_MAX_UNIT_LEN) size = 2 * HV_UCUM_MAX_UNIT_LEN;
    s = malloc(size + 1);
    if (s == NULL) return 0;
    memcpy(s, data, size);
    s[size] = '\0';
    n = strlen(s);
    hv_error_clear(&err);
    rc = hv_ucum_parse(table, s, &c, &err);
    hv_buf_init(&disp, 0);
    drc = hv_ucum_display_name(table, s, &disp, NULL);
    if (drc != rc) abort();
    hv_buf_release(&disp);
    if (rc == HV_OK) {
        check_valid(s, n, &c);
    } else {
        if (rc != HV_EINVAL && rc != HV_ETOOBIG) abort();
        if (err.column < 1 || (size_t)err.column > n + 1 || err.message[0] == '\0') abort();
    }
    free(s);
    return 0;
}
