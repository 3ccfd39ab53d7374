/*
 * fuzz_search_index.c — differential fuzzing of the search index rows computed from a
 * resource (fhir/search_index.c, hv__search_index_rows): the parameters whose expression
 * for the resource's type is a path of element names alone are read directly
 * (index_direct); the same parameters evaluated as FHIRPath must give the same rows.
 *
 * Input: a JSON resource (at most 64 KiB), read as the engine reads one
 * (hv_fhir_json_parse, structural check included); its resourceType names the type.
 * Invariants: computing never crashes; with the direct reading on and off, the result
 * code is the same and so is every row, in the same order.
 */
#include "config.h"

#include <json-c/json.h>
#include <stdlib.h>
#include <string.h>

#include "fhir/search_int.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int rows(const char *type, struct json_object *res, hv_buf_t *out)
{
    hv__search_rows_t *r = NULL;
    int rc = hv__search_index_rows(type, res, &r);
    if (rc == HV_OK && hv__search_rows_text(r, out) != HV_OK)
        abort();
    hv__search_rows_free(r);
    return rc;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    hv_fhir_parse_opts_t opts = {.max_bytes = 1 << 16, .max_depth = 64, .flags = 0};
    struct json_object *res = NULL;
    hv_error_t err;
    hv_buf_t a, b;
    const char *type;
    int ra, rb;
    hv_error_clear(&err);
    if (size > (1 << 16) || hv_fhir_json_parse((const char *)data, size, &opts, &res, &err) != HV_OK)
        return 0;
    type = hv_json_get_str(res, "resourceType");
    if (type == NULL || hv_fhir_resource_type(type) == NULL) {
        json_object_put(res);
        return 0;
    }
    hv_buf_init(&a, 0);
    hv_buf_init(&b, 0);
    hv__search_direct_enable(1);
    ra = rows(type, res, &a);
    hv__search_direct_enable(0);
    rb = rows(type, res, &b);
    hv__search_direct_enable(1);
    if (ra != rb || a.len != b.len || (a.len > 0 && memcmp(a.data, b.data, a.len) != 0))
        abort();
    hv_buf_release(&a);
    hv_buf_release(&b);
    json_object_put(res);
    return 0;
}
