/*
 * fuzz_fhir_xml.c — fuzzes the FHIR XML reader (fhir/xml_read.c) and the writers.
 *
 * Invariants: parsing never crashes; a failure carries a message, and a syntax
 * error a line; a success round-trips through both formats: parse_xml(write_xml(x))
 * == x, and the JSON written from x parses (leniently) back to x.
 */
#include "config.h"

#include <json-c/json.h>
#include <stdlib.h>
#include <string.h>

#include "fhir/fhir.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    struct json_object *o = NULL, *o2 = NULL, *o3 = NULL;
    hv_error_t err;
    hv_buf_t bx, bj;
    hv_fhir_parse_opts_t opts = {.max_bytes = 1 << 20, .max_depth = 64, .flags = 0};
    hv_fhir_parse_opts_t lenient = opts;
    lenient.flags = HV_FHIR_PARSE_LENIENT;

    hv_error_clear(&err);
    hv_buf_init(&bx, 0);
    hv_buf_init(&bj, 0);
    int rc = hv_fhir_xml_parse((const char *)data, size, &opts, &o, &err);
    if (rc != HV_OK) {
        if (err.message[0] == '\0')
            abort();
        goto out;
    }
    /* The div of the input may not be writable (a prefixed XHTML namespace, say). */
    if (hv_fhir_xml_write(o, 0, &bx) == HV_OK) {
        if (hv_fhir_xml_parse(bx.data, bx.len, &opts, &o2, &err) != HV_OK ||
            !hv_fhir_json_equal(o, o2))
            abort();
    }
    if (hv_fhir_json_write(o, 0, &bj) != HV_OK)
        abort();
    if (hv_fhir_json_parse(bj.data, bj.len, &lenient, &o3, &err) != HV_OK ||
        !hv_fhir_json_equal(o, o3))
        abort();
out:
    json_object_put(o);
    json_object_put(o2);
    json_object_put(o3);
    hv_buf_release(&bx);
    hv_buf_release(&bj);
    return 0;
}
