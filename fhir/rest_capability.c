/*
 * rest_capability.c — the capabilities interaction, GET /fhir/metadata (FHIR R4
 * http.html#capabilities, capabilitystatement.html): a CapabilityStatement that
 * lists exactly what this server implements.
 *
 * Every concrete resource type of the model gets the same entry: read, vread,
 * update (create-on-update), patch (JSON Patch and FHIRPath Patch), delete,
 * history-instance, history-type and create; versioned; conditional create,
 * update and delete (single) with the criteria the search planner supports, and
 * search-type with every indexed parameter (fhir/search*.c). Operations: $validate on
 * every type, $everything on Patient, Bulk Data $export (system, Patient, Group);
 * the Patient, Encounter, Practitioner, RelatedPerson and Device compartments. System level:
 * batch, transaction, history-system. Formats json and xml. `mode` summary/_summary
 * works on it as on any resource.
 */
#include "config.h"

#include <json-c/json.h>
#include <stdio.h>
#include <string.h>

#include "fhir/rest_int.h"
#include "fhir/search_int.h"

static struct json_object *codes(const char *const *names, size_t n, const char *key)
{
    struct json_object *arr = json_object_new_array();
    for (size_t i = 0; i < n; i++) {
        struct json_object *o = json_object_new_object();
        hv_json_set_str(o, key, names[i]);
        json_object_array_add(arr, o);
    }
    return arr;
}

static struct json_object *strings(const char *const *names, size_t n)
{
    struct json_object *arr = json_object_new_array();
    for (size_t i = 0; i < n; i++)
        json_object_array_add(arr, json_object_new_string(names[i]));
    return arr;
}

static struct json_object *capability(const char *base)
{
    static const char *const interactions[] = {"read",   "vread",            "update",       "patch",
                                               "delete", "history-instance", "history-type", "create",
                                               "search-type"};
    static const char *const system[] = {"transaction", "batch", "history-system"};
    static const char *const formats[] = {"application/fhir+json", "application/fhir+xml", "json", "xml"};
    static const char *const patch[] = {"application/json-patch+json", "application/fhir+json",
                                        "application/fhir+xml"};
    struct json_object *cs = json_object_new_object(), *rest = json_object_new_array(), *server = json_object_new_object(),
                       *resources = json_object_new_array(), *sw = json_object_new_object(),
                       *impl = json_object_new_object();
    char now[40];
    hv__fhir_instant(hv_now_ms(), now, sizeof(now));
    hv_json_set_str(cs, "resourceType", "CapabilityStatement");
    hv_json_set_str(cs, "status", "active");
    hv_json_set_str(cs, "date", now);
    hv_json_set_str(cs, "publisher", "HoloVitals");
    hv_json_set_str(cs, "kind", "instance");
    hv_json_set_str(sw, "name", "HoloVitals");
    hv_json_set_str(sw, "version", PACKAGE_VERSION);
    hv_json_set(cs, "software", sw);
    hv_json_set_str(impl, "description", "HoloVitals FHIR R4 server");
    hv_json_set_str(impl, "url", base);
    hv_json_set(cs, "implementation", impl);
    hv_json_set_str(cs, "fhirVersion", "4.0.1");
    hv_json_set(cs, "format", strings(formats, HV_ARRAY_LEN(formats)));
    hv_json_set(cs, "patchFormat", strings(patch, HV_ARRAY_LEN(patch)));
    hv_json_set_str(server, "mode", "server");
    hv_json_set_str(server, "documentation",
                    "Search: string, token, reference, date, number, quantity, uri and composite parameters "
                    "with the modifiers and prefixes listed in docs/fhir-search.md, chaining, _has, _include "
                    "and _revinclude (with :iterate). Conditional create, update and delete use the same "
                    "criteria.");
    for (size_t i = 0; i < hv_fhir_type_count(); i++) {
        const hv_fhir_type_t *t = hv_fhir_type_at(i);
        struct json_object *r, *cond;
        if (hv_fhir_type_kind(t) != HV_FHIR_KIND_RESOURCE || hv_fhir_type_is_abstract(t) ||
            hv_fhir_resource_type(hv_fhir_type_name(t)) == NULL)
            continue;
        r = json_object_new_object();
        hv_json_set_str(r, "type", hv_fhir_type_name(t));
        hv_json_set(r, "interaction", codes(interactions, HV_ARRAY_LEN(interactions), "code"));
        hv_json_set_str(r, "versioning", "versioned-update");
        hv_json_set(r, "readHistory", json_object_new_boolean(1));
        hv_json_set(r, "updateCreate", json_object_new_boolean(1));
        hv_json_set(r, "conditionalCreate", json_object_new_boolean(1));
        hv_json_set_str(r, "conditionalRead", "not-supported");
        hv_json_set(r, "conditionalUpdate", json_object_new_boolean(1));
        hv_json_set_str(r, "conditionalDelete", "single");
        /* The parameters search answers: _id, _lastUpdated and every parameter of the
         * type (own and inherited) the planner supports (hv__search_supported: indexed
         * ones, composite ones, _text, _content, Location near); nothing else. */
        cond = json_object_new_array();
        {
            static const char *const meta[][2] = {{"_id", "token"}, {"_lastUpdated", "date"}};
            for (size_t k = 0; k < HV_ARRAY_LEN(meta); k++) {
                struct json_object *p = json_object_new_object();
                hv_json_set_str(p, "name", meta[k][0]);
                hv_json_set_str(p, "type", meta[k][1]);
                json_object_array_add(cond, p);
            }
        }
        for (const hv_fhir_type_t *bt = t; bt != NULL; bt = hv_fhir_type_base(bt)) {
            for (size_t k = 0; k < hv_fhir_search_own_count(bt); k++) {
                const hv_fhir_search_t *sp = hv_fhir_search_own_at(bt, k);
                hv_fhir_search_type_t st = hv_fhir_search_type(sp);
                struct json_object *p;
                if (!hv__search_supported(t, sp) || strcmp(hv_fhir_search_code(sp), "_id") == 0 || strcmp(hv_fhir_search_code(sp), "_lastUpdated") == 0)
                    continue;
                p = json_object_new_object();
                hv_json_set_str(p, "name", hv_fhir_search_code(sp));
                hv_json_set_str(p, "definition", hv_fhir_search_url(sp));
                hv_json_set_str(p, "type", hv_fhir_search_type_name(st));
                json_object_array_add(cond, p);
            }
        }
        hv_json_set(r, "searchParam", cond);
        {
            struct json_object *ops = json_object_new_array(), *o = json_object_new_object();
            hv_json_set_str(o, "name", "validate");
            hv_json_set_str(o, "definition", "http://hl7.org/fhir/OperationDefinition/Resource-validate");
            json_object_array_add(ops, o);
            if (strcmp(hv_fhir_type_name(t), "Patient") == 0) {
                o = json_object_new_object();
                hv_json_set_str(o, "name", "everything");
                hv_json_set_str(o, "definition", "http://hl7.org/fhir/OperationDefinition/Patient-everything");
                json_object_array_add(ops, o);
            }
            if (strcmp(hv_fhir_type_name(t), "Patient") == 0 || strcmp(hv_fhir_type_name(t), "Group") == 0) {
                o = json_object_new_object();
                hv_json_set_str(o, "name", "export");
                hv_json_set_str(o, "definition", strcmp(hv_fhir_type_name(t), "Patient") == 0
                                                     ? "http://hl7.org/fhir/uv/bulkdata/OperationDefinition/patient-export"
                                                     : "http://hl7.org/fhir/uv/bulkdata/OperationDefinition/group-export");
                json_object_array_add(ops, o);
            }
            hv_json_set(r, "operation", ops);
        }
        json_object_array_add(resources, r);
    }
    hv_json_set(server, "resource", resources);
    hv_json_set(server, "interaction", codes(system, HV_ARRAY_LEN(system), "code"));
    {
        struct json_object *ops = json_object_new_array(), *o = json_object_new_object();
        hv_json_set_str(o, "name", "export");
        hv_json_set_str(o, "definition", "http://hl7.org/fhir/uv/bulkdata/OperationDefinition/export");
        json_object_array_add(ops, o);
        hv_json_set(server, "operation", ops);
    }
    {
        /* The compartments searchable at /fhir/:comp/:id/:type (fhir/rest_compartment.c). */
        static const char *const comps[] = {"patient", "encounter", "practitioner", "relatedPerson", "device"};
        struct json_object *comp = json_object_new_array();
        for (size_t i = 0; i < HV_ARRAY_LEN(comps); i++) {
            char url[96];
            snprintf(url, sizeof(url), "http://hl7.org/fhir/CompartmentDefinition/%s", comps[i]);
            json_object_array_add(comp, json_object_new_string(url));
        }
        hv_json_set(server, "compartment", comp);
    }
    json_object_array_add(rest, server);
    hv_json_set(cs, "rest", rest);
    return cs;
}

static void h_metadata(hv_http_req_t *req, void *ud)
{
    hv__rreq_t *r = hv__rreq_new(ud, req);
    if (r == NULL)
        return;
    hv__rest_send_json(r, 200, capability(hv__rest_base(r)));
    hv__rreq_free(r);
}

int hv__rest_capability_routes(hv__fhir_t *f, hv_router_t *r)
{
    return hv_router_add(r, HV_HTTP_GET, "/fhir/metadata", h_metadata, f);
}
