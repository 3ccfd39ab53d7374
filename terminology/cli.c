/*
 * cli.c — the `holovitals ucum convert VALUE FROM TO` and `holovitals ucum validate
 * UNIT` commands, independent of the engine so that tests can run them directly.
 *
 * convert prints the converted value with 15 significant digits (the precision a
 * double carries), validate prints "valid: UNIT (canonical: g.m-1)"; both exit 1
 * with "column N: reason" on an invalid unit and 2 on bad usage.
 */
#include "config.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>

#include "terminology/terminology.h"

static hv_ucum_t *load(const char *essence, FILE *errf) {
    hv_ucum_t *u = NULL;
    hv_error_t err;
    char msg[800];
    hv_error_clear(&err);
    if (hv_ucum_new(essence, 16, &u, &err) != HV_OK) {
        hv_error_format(&err, msg, sizeof msg);
        fprintf(errf, "holovitals: cannot load UCUM: %s\n", msg);
        return NULL;
    }
    return u;
}

static void report(FILE *errf, const char *what, const char *unit, const hv_error_t *err) {
    if (err->column > 0)
        fprintf(errf, "holovitals: %s '%s': column %d: %s\n", what, unit, err->column,
                err->message);
    else
        fprintf(errf, "holovitals: %s '%s': %s\n", what, unit, err->message);
}

int hv_terminology_ucum_convert_cmd(const char *essence, int argc, char **argv, FILE *out,
                                    FILE *errf) {
    hv_ucum_t *u = NULL;
    hv_error_t err;
    hv_ucum_canon_t a, b;
    double value, result;
    char *end = NULL;
    int rc = HV_EXIT_FAILURE;
    if (argc != 3) {
        fprintf(errf, "usage: holovitals ucum convert VALUE FROM TO\n");
        return HV_EXIT_USAGE;
    }
    errno = 0;
    value = strtod(argv[0], &end);
    if (end == argv[0] || *end != '\0' || errno == ERANGE || !isfinite(value)) {
        fprintf(errf, "holovitals: '%s' is not a number\n", argv[0]);
        return HV_EXIT_USAGE;
    }
    u = load(essence, errf);
    if (u == NULL) goto out;
    hv_error_clear(&err);
    if (hv_ucum_parse(u, argv[1], &a, &err) != HV_OK) {
        report(errf, "invalid unit", argv[1], &err);
        goto out;
    }
    if (hv_ucum_parse(u, argv[2], &b, &err) != HV_OK) {
        report(errf, "invalid unit", argv[2], &err);
        goto out;
    }
    if (hv_ucum_convert(u, value, argv[1], argv[2], &result, &err) != HV_OK) {
        fprintf(errf, "holovitals: %s\n", err.message);
        goto out;
    }
    fprintf(out, "%.15g\n", result);
    rc = HV_EXIT_OK;
out:
    hv_ucum_free(u);
    return rc;
}

int hv_terminology_ucum_validate_cmd(const char *essence, int argc, char **argv, FILE *out,
                                     FILE *errf) {
    hv_ucum_t *u = NULL;
    hv_error_t err;
    hv_ucum_canon_t c;
    char canon[256];
    int rc = HV_EXIT_FAILURE;
    if (argc != 1) {
        fprintf(errf, "usage: holovitals ucum validate UNIT\n");
        return HV_EXIT_USAGE;
    }
    u = load(essence, errf);
    if (u == NULL) goto out;
    hv_error_clear(&err);
    if (hv_ucum_parse(u, argv[0], &c, &err) != HV_OK) {
        report(errf, "invalid unit", argv[0], &err);
        goto out;
    }
    if (hv_ucum_canon_print(u, &c, canon, sizeof canon) != HV_OK) canon[0] = '\0';
    fprintf(out, "valid: %s (canonical: %.15g %s%s)\n", argv[0], c.magnitude, canon,
            (c.flags & HV_UCUM_SPECIAL) ? ", special unit" : "");
    rc = HV_EXIT_OK;
out:
    hv_ucum_free(u);
    return rc;
}
