/*
 * load_icd10cm.c — loads ICD-10-CM from the CMS/CDC "order file"
 * (icd10cm-order-<year>.txt, described in icd10cm-order-file-description of each
 * release), plain or gzip-compressed. Fixed-width lines:
 *
 *   columns  1-5   order number, zero-padded
 *            7-13  code without its dot ("A000")
 *            15    1 = valid for HIPAA-covered transactions (billable), 0 = header
 *            17-76 short description
 *            78-   long description
 *
 * Codes are stored with the dot after the third character ("A00.0"), as FHIR uses them
 * (system http://hl7.org/fhir/sid/icd-10-cm). Each code's parent is the code one
 * character shorter ("A00.01" -> "A00.0" -> "A00"). The version is taken from the
 * first 4-digit year in the file name unless given.
 */
#include "config.h"

#include <ctype.h>
#include <string.h>

#include "terminology/terminology_int.h"

#define MAX_LINE 1024

static size_t trim_len(const char *s, size_t n) {
    while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\r' || s[n - 1] == '\n')) n--;
    return n;
}

/* "A000" -> "A00.0"; codes are 3 to 7 characters. */
static void dotted(const char *raw, size_t n, char *out) {
    if (n <= 3) {
        memcpy(out, raw, n);
        out[n] = '\0';
        return;
    }
    memcpy(out, raw, 3);
    out[3] = '.';
    memcpy(out + 4, raw + 3, n - 3);
    out[n + 1] = '\0';
}

static void year_from_name(const char *path, char *out, size_t outlen) {
    const char *base = strrchr(path, '/'), *s;
    base = base != NULL ? base + 1 : path;
    for (s = base; *s != '\0'; s++)
        if (s[0] == '2' && s[1] == '0' && isdigit((unsigned char)s[2]) &&
            isdigit((unsigned char)s[3]) && !isdigit((unsigned char)s[4])) {
            snprintf(out, outlen, "%.4s", s);
            return;
        }
    snprintf(out, outlen, "unknown");
}

int hv__load_icd10cm(hv_db_t *db, const char *path, const char *version, FILE *progress,
                     hv_error_t *err) {
    gzFile f = gzopen(path, "rb");
    hv__load_t l;
    char line[MAX_LINE + 2], year[16];
    long lineno = 0;
    int rc = HV_OK, began = 0;
    if (f == NULL) {
        hv_error_set(err, HV_EIO, path, "cannot open the file");
        return HV_EIO;
    }
    rc = hv__load_begin(&l, db, HV_TERMINOLOGY_ICD10CM, path, progress, err);
    if (rc != HV_OK) goto out;
    began = 1;
    while (gzgets(f, line, sizeof line) != NULL) {
        size_t n = strlen(line), cl, i;
        char code[16], parent[16], props[64], raw[8];
        const char *longd;
        size_t longn;
        lineno++;
        if (n > 0 && line[n - 1] != '\n' && !gzeof(f)) {
            hv_error_set(err, HV_ETOOBIG, path, "line %ld is longer than %d bytes", lineno, MAX_LINE);
            rc = HV_ETOOBIG;
            break;
        }
        n = trim_len(line, n);
        if (n == 0) continue;
        /* Fixed columns, 0-based: order 0-4, code 6-12, flag 14, short 16-75, long 77-. */
        for (i = 0; i < 5 && i < n; i++)
            if (!isdigit((unsigned char)line[i])) break;
        if (n < 78 || i != 5 || line[5] != ' ' || (line[14] != '0' && line[14] != '1') ||
            line[13] != ' ' || line[15] != ' ') {
            hv_error_set(err, HV_EPROTO, path,
                         "line %ld is not an ICD-10-CM order file line (fixed columns: order, code, "
                         "flag, short and long description)", lineno);
            rc = HV_EPROTO;
            break;
        }
        cl = trim_len(line + 6, 7);
        if (cl < 3) {
            hv_error_set(err, HV_EPROTO, path, "line %ld: the code is shorter than 3 characters",
                         lineno);
            rc = HV_EPROTO;
            break;
        }
        for (i = 0; i < cl; i++)
            if (!isalnum((unsigned char)line[6 + i])) break;
        if (i != cl) {
            hv_error_set(err, HV_EPROTO, path, "line %ld: the code '%.7s' is not alphanumeric",
                         lineno, line + 6);
            rc = HV_EPROTO;
            break;
        }
        memcpy(raw, line + 6, cl);
        dotted(raw, cl, code);
        longd = line + 77;
        longn = n - 77;
        line[77 + longn] = '\0';
        snprintf(props, sizeof props, "{\"billable\":%s}", line[14] == '1' ? "true" : "false");
        {
            char shortd[64];
            size_t sn = trim_len(line + 16, 60);
            memcpy(shortd, line + 16, sn);
            shortd[sn] = '\0';
            rc = hv__load_concept(&l, code, longd, 1, props, shortd, err);
        }
        if (rc == HV_OK && cl > 3) {
            dotted(raw, cl - 1, parent);
            rc = hv__load_parent(&l, code, parent, err);
        }
        if (rc != HV_OK) {
            if (err != NULL) snprintf(err->location, sizeof err->location, "%s:%ld", path, lineno);
            break;
        }
        hv__load_progress(&l, (long)gzoffset(f));
    }
    if (rc == HV_OK) {
        int zerr;
        gzerror(f, &zerr);
        if (zerr != Z_OK && zerr != Z_STREAM_END) {
            hv_error_set(err, HV_EIO, path, "read error (corrupt or truncated file) after line %ld",
                         lineno);
            rc = HV_EIO;
        } else if (l.concepts == 0) {
            hv_error_set(err, HV_EPROTO, path, "the file has no codes");
            rc = HV_EPROTO;
        }
    }
    if (rc == HV_OK) {
        year_from_name(path, year, sizeof year);
        rc = hv__load_commit(&l, "icd10cm", version != NULL ? version : year, err);
        began = 0;
    }
out:
    if (rc != HV_OK && began) hv__load_abort(&l);
    gzclose(f);
    return rc;
}
