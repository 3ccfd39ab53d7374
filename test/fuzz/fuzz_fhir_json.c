/*
 * fuzz_fhir_json.c — fuzzes the FHIR JSON reader (fhir/json.c) and, through it,
 * the writer, the XML writer/reader and the validator.
 *
 * Invariants: parsing never crashes; a failure carries a message, and a syntax
 * error a line and column; a success round-trips: parse(write(x)) == x and
 * write(parse(write(x))) is byte-identical to write(x); when the XML writer
 * accepts x, parse_xml(write_xml(x)) == x; validation runs and, since x passed the
 * structural check, reports no "structure" error.
 */
#include "config.h"

#include <json-c/json.h>
#include <stdlib.h>
#include <string.h>

#include "fhir/fhir.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static hv_fhir_validator_t *validator;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    struct json_object *o = NULL, *o2 = NULL, *o3 = NULL, *oo = NULL;
    hv_error_t err;
    hv_buf_t b1, b2, bx;
    hv_fhir_parse_opts_t opts = {.max_bytes = 1 << 20, .max_depth = 64, .flags = 0};
    int errors = 0;

    if (validator == NULL)
        validator = hv_fhir_validator_new();
    hv_error_clear(&err);
    hv_buf_init(&b1, 0);
    hv_buf_init(&b2, 0);
    hv_buf_init(&bx, 0);
    int rc = hv_fhir_json_parse((const char *)data, size, &opts, &o, &err);
    if (rc != HV_OK) {
        if (err.message[0] == '\0')
            abort();
        if (rc == HV_EPROTO && (err.line < 1 || err.column < 1))
            abort();
        goto out;
    }
    if (hv_fhir_json_write(o, 0, &b1) != HV_OK)
        abort();
    if (hv_fhir_json_parse(b1.data, b1.len, &opts, &o2, &err) != HV_OK ||
        !hv_fhir_json_equal(o, o2))
        abort();
    if (hv_fhir_json_write(o2, 0, &b2) != HV_OK || b1.len != b2.len ||
        memcmp(b1.data, b2.data, b1.len) != 0)
        abort();
    if (hv_fhir_xml_write(o, HV_FHIR_WRITE_PRETTY, &bx) == HV_OK) {
        if (hv_fhir_xml_parse(bx.data, bx.len, &opts, &o3, &err) != HV_OK ||
            !hv_fhir_json_equal(o, o3))
            abort();
    }
    if (validator != NULL) {
        if (hv_fhir_validate(validator, o, NULL, 0, &oo, &errors) != HV_OK)
            abort();
        struct json_object *issues = json_object_object_get(oo, "issue");
        for (size_t i = 0; i < json_object_array_length(issues); i++) {
            const char *code = hv_json_get_str(json_object_array_get_idx(issues, i), "code");
            if (code != NULL && strcmp(code, "structure") == 0)
                abort();
        }
    }
out:
    json_object_put(oo);
    json_object_put(o);
    json_object_put(o2);
    json_object_put(o3);
    hv_buf_release(&b1);
    hv_buf_release(&b2);
    hv_buf_release(&bx);
    return 0;
}
