/*
 * fuzz_fhirpath.c — libFuzzer target for the FHIRPath parser (fhir/fhirpath_lex.c,
 * fhir/fhirpath_parse.c), with the evaluator run on what parses.
 *
 * The input is an expression. Invariants checked on every input:
 *   - a refused expression fails with HV_EPROTO (a column within 1 .. length+1 on a
 *     line >= 1) or HV_ETOOBIG, with a non-empty message;
 *   - an accepted expression prints as canonical text that parses again, and that
 *     second tree prints to the same text (print(parse(print(parse(x)))) ==
 *     print(parse(x))): the printer and the parser agree on every tree;
 *   - evaluating it against a small Patient, under small caps, returns HV_OK or an
 *     error with a message, never crashes, and a result serializes as a JSON array.
 */
#include <json-c/json.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fhir/fhirpath.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char patient[] =
    "{\"resourceType\":\"Patient\",\"id\":\"p\",\"active\":true,\"name\":[{\"use\":\"official\","
    "\"family\":\"Doe\",\"given\":[\"Ann\",\"B\"]}],\"birthDate\":\"1970-01-02\",\"_birthDate\":"
    "{\"extension\":[{\"url\":\"u\",\"valueString\":\"x\"}]},\"contained\":[{\"resourceType\":"
    "\"Organization\",\"id\":\"o\"}],\"managingOrganization\":{\"reference\":\"#o\"}}";

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static struct json_object *res;
    hv_fhirpath_limits_t lim = {4096, 64, 5000, 0};
    hv_fhirpath_t *fp = NULL, *fp2 = NULL;
    hv_error_t err;
    hv_buf_t p1, p2;
    int rc;

    if (size == 0 || size > 4096) return 0;
    if (res == NULL) res = json_tokener_parse(patient);
    hv_error_clear(&err);
    rc = hv_fhirpath_compile((const char *)data, size, &lim, &fp, &err);
    if (rc != HV_OK) {
        if (fp != NULL || err.message[0] == '\0') abort();
        if (rc == HV_EPROTO && (err.line < 1 || err.column < 1 || (size_t)err.column > size + 1)) abort();
        if (rc != HV_EPROTO && rc != HV_ETOOBIG) abort();
        return 0;
    }
    hv_buf_init(&p1, 0);
    hv_buf_init(&p2, 0);
    if (hv_fhirpath_print(fp, &p1) != HV_OK) abort();
    /* The canonical text may be longer than the input (parentheses, delimiters). */
    if (hv_fhirpath_compile(p1.data, p1.len, NULL, &fp2, &err) != HV_OK) {
        fprintf(stderr, "reprint does not parse: %s: %s\n", p1.data, err.message);
        abort();
    }
    if (hv_fhirpath_print(fp2, &p2) != HV_OK || strcmp(p1.data, p2.data) != 0) {
        fprintf(stderr, "print differs:\n  %s\n  %s\n", p1.data, p2.data);
        abort();
    }
    {
        hv_arena_t *a = hv_arena_new(0);
        hv_fhirpath_result_t *r = NULL;
        hv_buf_t out;
        hv_buf_init(&out, 0);
        hv_error_clear(&err);
        rc = hv_fhirpath_eval(fp, res, NULL, a, &r, &err);
        if (rc == HV_OK) {
            if (hv_fhirpath_result_json(r, &out) != HV_OK || out.data[0] != '[') abort();
        } else if (err.message[0] == '\0') {
            abort();
        }
        hv_buf_release(&out);
        hv_arena_free(a);
    }
    hv_buf_release(&p1);
    hv_buf_release(&p2);
    hv_fhirpath_free(fp);
    hv_fhirpath_free(fp2);
    return 0;
}
