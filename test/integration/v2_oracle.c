/*
 * v2_oracle.c — a test-only driver for the HL7 v2 → FHIR output oracle
 * (test/integration/test_mappings_oracle.py): maps every file it is given, in one process,
 * twice — strict without --explain, and lenient with --explain — and prints each result as
 * one line of plain JSON (json-c JSON_C_TO_STRING_PLAIN, member order as built):
 *
 *   v2_oracle FILE...
 *
 * Output: for each FILE two lines, `{"rc":N,"error":"…"}` or `{"rc":0,"bundle":…,"outcome":…}`
 * for the strict run, then the same with "explain" for the lenient run. The test hashes each
 * line, so any change in the bytes of a Bundle, an OperationOutcome or an explanation — member
 * order included — is a difference.
 *
 * Each file is also mapped with hv_map_opts_t.text, and the JSON text of the Bundle, the
 * OperationOutcome and the explanation must be exactly the bytes json-c writes for the objects
 * of the first run (JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE): the tree writer
 * (mappings/jtree.c) is checked on every message. Exit status 0; 2 when a file cannot be
 * read; 3 when a text differs (named on standard error).
 */
#include "config.h"

#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mappings/mappings.h"

static char *slurp(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    char *b = NULL;
    long n;
    if (f == NULL) return NULL;
    if (fseek(f, 0, SEEK_END) != 0 || (n = ftell(f)) < 0 || fseek(f, 0, SEEK_SET) != 0) goto out;
    b = malloc((size_t)n + 1);
    if (b == NULL || fread(b, 1, (size_t)n, f) != (size_t)n) {
        free(b);
        b = NULL;
        goto out;
    }
    b[n] = '\0';
    *len = (size_t)n;
out:
    fclose(f);
    return b;
}

static int text_differs;

/* 1 when the text form of a result part is not json-c's plain bytes of the object form. */
static int differs(struct json_object *o, const char *text) {
    const char *want;
    if (o == NULL || text == NULL) return o != NULL || text != NULL;
    want = json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE);
    return strcmp(want, text) != 0;
}

/* Maps text again as JSON text and compares it with the json-c result r. */
static void check_text(const char *name, const char *text, size_t len, const hv_map_opts_t *opts,
                       const hv_map_result_t *r, int rc) {
    hv_map_opts_t o = *opts;
    hv_map_result_t t;
    hv_error_t err;
    int rc2;
    memset(&t, 0, sizeof(t));
    hv_error_clear(&err);
    o.text = 1;
    rc2 = hv_map_v2_to_fhir(text, len, &o, &t, &err);
    if (rc2 != rc || (rc == HV_OK && (differs(r->bundle, t.bundle_text) || differs(r->outcome, t.outcome_text) ||
                                      differs(r->explain, t.explain_text) ||
                                      t.bundle_len != strlen(t.bundle_text ? t.bundle_text : "")))) {
        fprintf(stderr, "v2_oracle: %s: the text result differs from json-c's (explain %d)\n", name, opts->explain);
        text_differs = 1;
    }
    hv_map_result_free(&t);
}

/* Maps text once with opts and prints the record line. */
static void one(const char *name, const char *text, size_t len, const hv_map_opts_t *opts) {
    hv_map_result_t r;
    hv_error_t err;
    struct json_object *o = json_object_new_object();
    int rc;
    memset(&r, 0, sizeof(r));
    hv_error_clear(&err);
    rc = hv_map_v2_to_fhir(text, len, opts, &r, &err);
    json_object_object_add(o, "rc", json_object_new_int(rc));
    if (rc == HV_OK) {
        json_object_object_add(o, "bundle", json_object_get(r.bundle));
        json_object_object_add(o, "outcome", json_object_get(r.outcome));
        if (r.explain != NULL) json_object_object_add(o, "explain", json_object_get(r.explain));
    } else {
        char fmt[1024];
        hv_error_format(&err, fmt, sizeof(fmt));
        json_object_object_add(o, "error", json_object_new_string(fmt));
    }
    puts(json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN));
    json_object_put(o);
    check_text(name, text, len, opts, &r, rc);
    hv_map_result_free(&r);
}

int main(int argc, char **argv) {
    hv_map_opts_t strict, lenient;
    int i;
    memset(&strict, 0, sizeof(strict));
    memset(&lenient, 0, sizeof(lenient));
    lenient.lenient_identity = 1;
    lenient.explain = 1;
    for (i = 1; i < argc; i++) {
        size_t len = 0;
        char *text = slurp(argv[i], &len);
        if (text == NULL) {
            fprintf(stderr, "v2_oracle: cannot read %s\n", argv[i]);
            return 2;
        }
        one(argv[i], text, len, &strict);
        one(argv[i], text, len, &lenient);
        free(text);
    }
    return text_differs ? 3 : 0;
}
