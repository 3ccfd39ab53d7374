/*
 * result.c — what every mapping direction shares: releasing a result.
 */
#include "config.h"

#include <json-c/json.h>

#include "mappings/mappings.h"

void hv_map_result_free(hv_map_result_t *r) {
    if (r == NULL) return;
    if (r->bundle != NULL) json_object_put(r->bundle);
    if (r->outcome != NULL) json_object_put(r->outcome);
    if (r->explain != NULL) json_object_put(r->explain);
    r->bundle = r->outcome = r->explain = NULL;
    hv_free(r->bundle_text);
    hv_free(r->outcome_text);
    hv_free(r->explain_text);
    r->bundle_text = r->outcome_text = r->explain_text = NULL;
    r->bundle_len = 0;
}
