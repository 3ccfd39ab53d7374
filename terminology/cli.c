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
#include <string.h>

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

/* ---- terminology load / search ------------------------------------------- */

static int open_store(const char *db_url, const char *data_dir, hv_db_t **db, FILE *errf) {
    hv_error_t err;
    char msg[1024];
    hv_error_clear(&err);
    if (hv_db_open(db_url, data_dir, "terminology", db, &err) != HV_OK ||
        hv_terminology_store_migrate(*db, &err) != HV_OK) {
        hv_error_format(&err, msg, sizeof msg);
        fprintf(errf, "holovitals: cannot open the terminology store: %s\n", msg);
        hv_db_close(*db);
        *db = NULL;
        return HV_EXIT_FAILURE;
    }
    return HV_EXIT_OK;
}

static const char *system_of(const char *kind) {
    if (strcmp(kind, "loinc") == 0) return HV_TERMINOLOGY_LOINC;
    if (strcmp(kind, "snomed") == 0) return HV_TERMINOLOGY_SNOMED;
    if (strcmp(kind, "icd10cm") == 0 || strcmp(kind, "icd10") == 0) return HV_TERMINOLOGY_ICD10CM;
    if (strcmp(kind, "cpt") == 0) return HV_TERMINOLOGY_CPT;
    if (strcmp(kind, "fhir") == 0) return "urn:holovitals:fhir";
    return NULL;
}

int hv_terminology_load_cmd(const char *db_url, const char *data_dir, int argc, char **argv,
                            FILE *out, FILE *errf, int show_progress) {
    const char *kind = NULL, *path = NULL, *version = NULL;
    hv_db_t *db = NULL;
    hv_error_t err;
    hv_arena_t *a = NULL;
    int i, rc;
    for (i = 0; i < argc; i++) {
        if (strcmp(argv[i], "--version") == 0 && i + 1 < argc) version = argv[++i];
        else if (kind == NULL) kind = argv[i];
        else if (path == NULL) path = argv[i];
        else kind = NULL, i = argc; /* too many arguments */
    }
    if (kind == NULL || path == NULL || system_of(kind) == NULL) {
        fprintf(errf, "usage: holovitals terminology load loinc|snomed|icd10cm|cpt|fhir PATH "
                      "[--version V]\n");
        return HV_EXIT_USAGE;
    }
    rc = open_store(db_url, data_dir, &db, errf);
    if (rc != HV_EXIT_OK) return rc;
    hv_error_clear(&err);
    rc = hv_terminology_load(db, kind, path, version, show_progress ? errf : NULL, &err);
    if (rc != HV_OK) {
        char msg[1024];
        hv_error_format(&err, msg, sizeof msg);
        fprintf(errf, "holovitals: load failed, the previous version stays in force: %s\n", msg);
        hv_db_close(db);
        return HV_EXIT_FAILURE;
    }
    a = hv_arena_new(0);
    {
        const char *v = "?";
        int64_t n = 0;
        if (a != NULL) (void)hv_terminology_version(db, system_of(kind), a, &v, &n);
        if (strcmp(kind, "fhir") == 0) fprintf(out, "loaded fhir: %s\n", v);
        else fprintf(out, "loaded %s version %s: %lld concepts\n", kind, v, (long long)n);
    }
    hv_arena_free(a);
    hv_db_close(db);
    return HV_EXIT_OK;
}

int hv_terminology_search_cmd(const char *db_url, const char *data_dir, int argc, char **argv,
                              FILE *out, FILE *errf) {
    hv_db_t *db = NULL;
    hv_arena_t *a = NULL;
    hv_terminology_concept_t *res = NULL;
    size_t n = 0, i;
    int rc;
    if (argc != 2 || system_of(argv[0]) == NULL) {
        fprintf(errf, "usage: holovitals terminology search loinc|snomed|icd10cm|cpt QUERY\n");
        return HV_EXIT_USAGE;
    }
    rc = open_store(db_url, data_dir, &db, errf);
    if (rc != HV_EXIT_OK) return rc;
    a = hv_arena_new(0);
    rc = a != NULL ? hv_terminology_search(db, system_of(argv[0]), argv[1], 20, 0, a, &res, &n)
                   : HV_ENOMEM;
    if (rc == HV_OK) {
        for (i = 0; i < n; i++)
            fprintf(out, "%s\t%s%s\n", res[i].code, res[i].display, res[i].active ? "" : "\t(inactive)");
    } else {
        fprintf(errf, "holovitals: search failed: %s\n",
                rc == HV_EINVAL ? "the query has no word" : hv_db_errmsg(db));
    }
    hv_arena_free(a);
    hv_db_close(db);
    return rc == HV_OK ? HV_EXIT_OK : HV_EXIT_FAILURE;
}
