/*
 * load_loinc.c — loads the LOINC table from the official Loinc.csv (LOINC Users'
 * Guide, appendix A "LOINC Database Structure"): RFC 4180 CSV, one header row,
 * columns found by name, so the column order of any LOINC release works.
 *
 *   required  LOINC_NUM COMPONENT PROPERTY TIME_ASPCT SYSTEM SCALE_TYP LONG_COMMON_NAME
 *   optional  METHOD_TYP CLASS STATUS SHORTNAME EXAMPLE_UCUM_UNITS RELATEDNAMES2
 *             CONSUMER_NAME VersionLastChanged
 *
 * Every code is checked against its mod-10 check digit (LOINC Users' Guide §12.5), so
 * a corrupt row fails the load with its line. The version is the largest
 * VersionLastChanged unless one is given. DEPRECATED codes are stored inactive.
 */
#include "config.h"

#include <json-c/json.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "terminology/terminology_int.h"

enum {
    C_NUM, C_COMPONENT, C_PROPERTY, C_TIME, C_SYSTEM, C_SCALE, C_LONG, /* required */
    C_METHOD, C_CLASS, C_STATUS, C_SHORT, C_UCUM, C_RELATED, C_CONSUMER, C_VERSION, C_COUNT
};
#define N_REQUIRED 7

static const char *const names[C_COUNT] = {
    "LOINC_NUM", "COMPONENT", "PROPERTY",  "TIME_ASPCT", "SYSTEM",
    "SCALE_TYP", "LONG_COMMON_NAME", "METHOD_TYP", "CLASS", "STATUS",
    "SHORTNAME", "EXAMPLE_UCUM_UNITS", "RELATEDNAMES2", "CONSUMER_NAME", "VersionLastChanged",
};

/* JSON property names in concept.props. */
static const char *const props[C_COUNT] = {
    NULL, "component", "property", "timeAspect", "system", "scale", NULL,
    "method", "class", "status", "shortName", "exampleUcumUnits", NULL, NULL, NULL,
};

int hv_terminology_loinc_code_valid(const char *code) {
    size_t n = code != NULL ? strlen(code) : 0, i;
    int sum = 0, dbl = 1;
    /* NNNNN-C: 1 to 7 digits, a hyphen, one check digit. */
    if (n < 3 || n > 9 || code[n - 2] != '-') return 0;
    for (i = 0; i + 2 < n; i++)
        if (code[i] < '0' || code[i] > '9') return 0;
    if (code[n - 1] < '0' || code[n - 1] > '9') return 0;
    /* Mod 10: double every other digit from the rightmost, sum the digits. */
    for (i = n - 2; i-- > 0;) {
        int d = code[i] - '0';
        if (dbl) {
            d *= 2;
            if (d > 9) d -= 9;
        }
        sum += d;
        dbl = !dbl;
    }
    return (10 - sum % 10) % 10 == code[n - 1] - '0';
}

/* Compares dotted versions numerically ("2.9" < "2.10"). */
static int version_cmp(const char *a, const char *b) {
    while (*a != '\0' || *b != '\0') {
        long x = strtol(a, (char **)&a, 10), y = strtol(b, (char **)&b, 10);
        if (x != y) return x < y ? -1 : 1;
        if (*a == '.') a++;
        if (*b == '.') b++;
        if ((*a != '\0' && (*a < '0' || *a > '9')) || (*b != '\0' && (*b < '0' || *b > '9')))
            return strcmp(a, b);
    }
    return 0;
}

int hv__load_loinc(hv_db_t *db, const char *path, const char *version, FILE *progress,
                   hv_error_t *err) {
    hv__csv_t *csv = NULL;
    hv__load_t l;
    char **f;
    size_t n, i;
    int col[C_COUNT], rc, began = 0;
    char maxver[32] = "";

    rc = hv__csv_open(path, ',', 1, &csv, err);
    if (rc != HV_OK) return rc;
    rc = hv__csv_next(csv, &f, &n, err);
    if (rc == HV_ENOTFOUND) {
        hv_error_set(err, HV_EPROTO, path, "the file is empty");
        rc = HV_EPROTO;
    }
    if (rc != HV_OK) goto out;
    for (i = 0; i < C_COUNT; i++) col[i] = -1;
    for (i = 0; i < n; i++) {
        size_t k;
        const char *h = f[i];
        if (i == 0 && (unsigned char)h[0] == 0xEF && (unsigned char)h[1] == 0xBB &&
            (unsigned char)h[2] == 0xBF)
            h += 3; /* a UTF-8 byte order mark */
        for (k = 0; k < C_COUNT; k++)
            if (strcasecmp(h, names[k]) == 0) col[k] = (int)i;
    }
    for (i = 0; i < N_REQUIRED; i++)
        if (col[i] < 0) {
            hv_error_set(err, HV_EPROTO, path, "not a LOINC table (Loinc.csv): no column %s",
                         names[i]);
            rc = HV_EPROTO;
            goto out;
        }
    rc = hv__load_begin(&l, db, HV_TERMINOLOGY_LOINC, path, progress, err);
    if (rc != HV_OK) goto out;
    began = 1;
    while ((rc = hv__csv_next(csv, &f, &n, err)) == HV_OK) {
        struct json_object *o;
        const char *code, *status, *p;
        char search[2048];
        int active;
        if (n == 1 && f[0][0] == '\0') continue; /* a blank line */
        if (n <= (size_t)col[C_NUM] || n <= (size_t)col[C_LONG]) {
            hv_error_set(err, HV_EPROTO, path, "line %ld has %zu fields, fewer than the header",
                         hv__csv_line(csv), n);
            rc = HV_EPROTO;
            break;
        }
        code = f[col[C_NUM]];
        if (!hv_terminology_loinc_code_valid(code)) {
            hv_error_set(err, HV_EPROTO, path, "line %ld: '%.20s' is not a valid LOINC code "
                         "(format or check digit)", hv__csv_line(csv), code);
            rc = HV_EPROTO;
            break;
        }
        o = json_object_new_object();
        if (o == NULL) {
            rc = HV_ENOMEM;
            break;
        }
        for (i = 0; i < C_COUNT; i++)
            if (props[i] != NULL && col[i] >= 0 && (size_t)col[i] < n && f[col[i]][0] != '\0')
                hv_json_set_str(o, props[i], f[col[i]]);
        status = col[C_STATUS] >= 0 && (size_t)col[C_STATUS] < n ? f[col[C_STATUS]] : "";
        active = strcmp(status, "DEPRECATED") != 0;
        if (col[C_VERSION] >= 0 && (size_t)col[C_VERSION] < n && f[col[C_VERSION]][0] != '\0' &&
            strlen(f[col[C_VERSION]]) < sizeof maxver &&
            (maxver[0] == '\0' || version_cmp(f[col[C_VERSION]], maxver) > 0))
            snprintf(maxver, sizeof maxver, "%s", f[col[C_VERSION]]);
        /* Search words: the parts, short name, related and consumer names. */
        snprintf(search, sizeof search, "%s %s %s %s %s",
                 f[col[C_COMPONENT]], f[col[C_SYSTEM]],
                 col[C_SHORT] >= 0 && (size_t)col[C_SHORT] < n ? f[col[C_SHORT]] : "",
                 col[C_RELATED] >= 0 && (size_t)col[C_RELATED] < n ? f[col[C_RELATED]] : "",
                 col[C_CONSUMER] >= 0 && (size_t)col[C_CONSUMER] < n ? f[col[C_CONSUMER]] : "");
        p = json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN);
        rc = hv__load_concept(&l, code, f[col[C_LONG]], active, p, search, err);
        json_object_put(o);
        if (rc != HV_OK) {
            if (err != NULL && err->location[0] == '\0')
                snprintf(err->location, sizeof err->location, "%s:%ld", path, hv__csv_line(csv));
            break;
        }
        hv__load_progress(&l, hv__csv_offset(csv));
    }
    if (rc == HV_ENOTFOUND) {
        if (l.concepts == 0) {
            hv_error_set(err, HV_EPROTO, path, "the LOINC table has no rows");
            rc = HV_EPROTO;
        } else {
            rc = hv__load_commit(&l, "loinc", version != NULL ? version : maxver, err);
            began = 0;
        }
    }
out:
    if (rc != HV_OK && began) hv__load_abort(&l);
    hv__csv_close(csv);
    return rc;
}
