/*
 * load_cpt.c — loads CPT codes from a user-supplied CSV (RFC 4180, header row).
 * CPT is licensed content of the American Medical Association: HoloVitals ships the
 * loader only, never the codes. AMA distributes CPT in several layouts, so the
 * columns are found by name (case-insensitive):
 *
 *   code         "code", "cpt", "cpt code", "cpt_code", "hcpcs", "hcpcs code"
 *   description  "description", "long description", "long_description", "descriptor",
 *                "long descriptor", "display", "consumer friendly descriptor"
 *   (optional)   "short description", "short_description", "short descriptor"
 *
 * A code is five characters: four digits and a digit or F, T or U (Category I, II, III
 * and PLA codes), or an HCPCS letter and four digits.
 */
#include "config.h"

#include <ctype.h>
#include <string.h>
#include <strings.h>

#include "terminology/terminology_int.h"

static int in_list(const char *h, const char *const *names) {
    for (; *names != NULL; names++)
        if (strcasecmp(h, *names) == 0) return 1;
    return 0;
}

static int cpt_code_valid(const char *c) {
    int i;
    if (strlen(c) != 5) return 0;
    if (isalpha((unsigned char)c[0])) { /* HCPCS level II */
        for (i = 1; i < 5; i++)
            if (!isdigit((unsigned char)c[i])) return 0;
        return 1;
    }
    for (i = 0; i < 4; i++)
        if (!isdigit((unsigned char)c[i])) return 0;
    return isdigit((unsigned char)c[4]) || c[4] == 'F' || c[4] == 'T' || c[4] == 'U';
}

int hv__load_cpt(hv_db_t *db, const char *path, const char *version, FILE *progress,
                 hv_error_t *err) {
    static const char *const code_names[] = {"code", "cpt", "cpt code", "cpt_code", "hcpcs",
                                              "hcpcs code", NULL};
    static const char *const desc_names[] = {"description", "long description", "long_description",
                                             "descriptor", "long descriptor", "display",
                                             "consumer friendly descriptor", NULL};
    static const char *const short_names[] = {"short description", "short_description",
                                              "short descriptor", NULL};
    hv__csv_t *csv = NULL;
    hv__load_t l;
    char **f;
    size_t n, i;
    int rc, began = 0, ccode = -1, cdesc = -1, cshort = -1;

    rc = hv__csv_open(path, ',', 1, &csv, err);
    if (rc != HV_OK) return rc;
    rc = hv__csv_next(csv, &f, &n, err);
    if (rc == HV_ENOTFOUND) {
        hv_error_set(err, HV_EPROTO, path, "the file is empty");
        rc = HV_EPROTO;
    }
    if (rc != HV_OK) goto out;
    for (i = 0; i < n; i++) {
        if (ccode < 0 && in_list(f[i], code_names)) ccode = (int)i;
        else if (cdesc < 0 && in_list(f[i], desc_names)) cdesc = (int)i;
        else if (cshort < 0 && in_list(f[i], short_names)) cshort = (int)i;
    }
    if (ccode < 0 || cdesc < 0) {
        hv_error_set(err, HV_EPROTO, path,
                     "the header needs a code column (\"code\", \"CPT Code\" ...) and a description "
                     "column (\"description\", \"long description\" ...)");
        rc = HV_EPROTO;
        goto out;
    }
    rc = hv__load_begin(&l, db, HV_TERMINOLOGY_CPT, path, progress, err);
    if (rc != HV_OK) goto out;
    began = 1;
    while ((rc = hv__csv_next(csv, &f, &n, err)) == HV_OK) {
        if (n == 1 && f[0][0] == '\0') continue;
        if ((size_t)ccode >= n || (size_t)cdesc >= n) {
            hv_error_set(err, HV_EPROTO, path, "line %ld has fewer fields than the header",
                         hv__csv_line(csv));
            rc = HV_EPROTO;
            break;
        }
        if (!cpt_code_valid(f[ccode])) {
            hv_error_set(err, HV_EPROTO, path, "line %ld: '%.16s' is not a CPT/HCPCS code",
                         hv__csv_line(csv), f[ccode]);
            rc = HV_EPROTO;
            break;
        }
        rc = hv__load_concept(&l, f[ccode], f[cdesc], 1, NULL,
                              cshort >= 0 && (size_t)cshort < n ? f[cshort] : NULL, err);
        if (rc != HV_OK) break;
        hv__load_progress(&l, hv__csv_offset(csv));
    }
    if (rc == HV_ENOTFOUND) {
        if (l.concepts == 0) {
            hv_error_set(err, HV_EPROTO, path, "the file has no codes");
            rc = HV_EPROTO;
        } else {
            rc = hv__load_commit(&l, "cpt", version != NULL ? version : "unknown", err);
            began = 0;
        }
    }
out:
    if (rc != HV_OK && began) hv__load_abort(&l);
    hv__csv_close(csv);
    return rc;
}
