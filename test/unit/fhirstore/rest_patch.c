/*
 * rest_patch.c — unit tests of fhir/rest_patch.c against the reference suites:
 * json-patch-tests.json (RFC 6902 cases: "expected" or "error") and
 * fhir-patch-tests.xml (FHIR R4 FHIRPath Patch cases: input, diff, output).
 */
#include "tests.h"

#include <json-c/json.h>
#include <libxml/parser.h>
#include <libxml/tree.h>
#include <stdio.h>
#include <string.h>

/* Replacing the whole document is refused by design (a patch keeps its resource). */
static int replaces_root(struct json_object *patch)
{
    for (size_t i = 0; i < json_object_array_length(patch); i++) {
        struct json_object *o = json_object_array_get_idx(patch, i);
        const char *p = hv_json_get_str(o, "path"), *op = hv_json_get_str(o, "op");
        const char *from = hv_json_get_str(o, "from");
        if ((p != NULL && p[0] == '\0' && op != NULL && strcmp(op, "test") != 0) || (from != NULL && from[0] == '\0'))
            return 1;
    }
    return 0;
}

static void json_patch_passes_the_rfc6902_suite(void **state)
{
    char path[4096];
    char *text;
    struct json_object *cases;
    int passed = 0, refused = 0, total = 0;
    (void)state;
    snprintf(path, sizeof(path), "%s/fhir/patch-tests/json-patch-tests.json", store_test_reference_dir());
    text = store_test_slurp(path, NULL);
    cases = json_tokener_parse(text);
    assert_non_null(cases);
    for (size_t i = 0; i < json_object_array_length(cases); i++) {
        struct json_object *c = json_object_array_get_idx(cases, i), *doc = NULL, *patch = NULL, *expected = NULL,
                           *work = NULL, *disabled = NULL;
        char msg[400] = "";
        int test_failed = 0, rc;
        const char *comment = hv_json_get_str(c, "comment");
        if (json_object_object_get_ex(c, "disabled", &disabled) && json_object_get_boolean(disabled))
            continue;
        json_object_object_get_ex(c, "doc", &doc);
        json_object_object_get_ex(c, "patch", &patch);
        json_object_object_get_ex(c, "expected", &expected);
        total++;
        assert_int_equal(json_object_deep_copy(doc, &work, NULL), 0);
        rc = hv__json_patch_apply(work, patch, &test_failed, msg, sizeof(msg));
        if (replaces_root(patch)) {
            assert_int_not_equal(rc, HV_OK);
            refused++;
        } else if (json_object_object_get_ex(c, "error", NULL)) {
            if (rc == HV_OK)
                fail_msg("case %zu (%s) should fail", i, comment ? comment : "");
            passed++;
        } else if (expected != NULL) {
            if (rc != HV_OK)
                fail_msg("case %zu (%s) failed: %s", i, comment ? comment : "", msg);
            if (!hv_fhir_json_equal(work, expected))
                fail_msg("case %zu (%s): got %s", i, comment ? comment : "", json_object_to_json_string(work));
            passed++;
        } else {
            assert_int_equal(rc, HV_OK); /* cases with neither: only that it applies */
            passed++;
        }
        json_object_put(work);
    }
    printf("json-patch suite: %d passed, %d refused by design (whole-document replacement), of %d\n", passed,
           refused, total);
    assert_true(total >= 16);
    assert_int_equal(passed + refused, total);
    json_object_put(cases);
    hv_free(text);
}

/* The first element child of n, serialized, parsed as FHIR XML. */
static struct json_object *child_resource(xmlDocPtr doc, xmlNodePtr n)
{
    xmlNodePtr c;
    xmlBufferPtr buf;
    struct json_object *out = NULL;
    hv_error_t err;
    for (c = n->children; c != NULL && c->type != XML_ELEMENT_NODE; c = c->next)
        ;
    if (c == NULL)
        return NULL;
    buf = xmlBufferCreate();
    xmlNodeDump(buf, doc, c, 0, 0);
    hv_error_clear(&err);
    if (hv_fhir_xml_parse((const char *)xmlBufferContent(buf), (size_t)xmlBufferLength(buf), NULL, &out, &err) != HV_OK)
        fail_msg("a resource of the suite does not parse: %s at %s", err.message, err.location);
    xmlBufferFree(buf);
    return out;
}

static xmlNodePtr named(xmlNodePtr n, const char *name)
{
    for (xmlNodePtr c = n->children; c != NULL; c = c->next)
        if (c->type == XML_ELEMENT_NODE && strcmp((const char *)c->name, name) == 0)
            return c;
    return NULL;
}

static void fhirpath_patch_passes_the_fhir_suite(void **state)
{
    char path[4096];
    xmlDocPtr doc;
    int passed = 0, failed = 0, total = 0;
    (void)state;
    snprintf(path, sizeof(path), "%s/fhir/patch-tests/fhir-patch-tests.xml", store_test_reference_dir());
    doc = xmlReadFile(path, NULL, XML_PARSE_NONET);
    assert_non_null(doc);
    for (xmlNodePtr c = xmlDocGetRootElement(doc)->children; c != NULL; c = c->next) {
        xmlNodePtr in, diff, out;
        struct json_object *res, *params, *want;
        char msg[400] = "";
        xmlChar *name;
        int rc;
        if (c->type != XML_ELEMENT_NODE || strcmp((const char *)c->name, "case") != 0)
            continue;
        in = named(c, "input");
        diff = named(c, "diff");
        out = named(c, "output");
        if (in == NULL || diff == NULL)
            continue;
        name = xmlGetProp(c, (const xmlChar *)"name");
        total++;
        res = child_resource(doc, in);
        params = child_resource(doc, diff);
        want = out != NULL ? child_resource(doc, out) : NULL;
        rc = hv__fhirpath_patch_apply(res, params, msg, sizeof(msg));
        if (named(c, "error") != NULL) {
            if (rc != HV_OK)
                passed++;
            else {
                failed++;
                printf("  should fail: %s\n", (const char *)name);
            }
        } else if (rc == HV_OK && want != NULL && hv_fhir_json_equal(res, want)) {
            passed++;
        } else {
            failed++;
            printf("  failed: %s: %s %s\n", (const char *)name, msg, rc == HV_OK ? json_object_to_json_string(res) : "");
        }
        xmlFree(name);
        json_object_put(res);
        json_object_put(params);
        json_object_put(want);
    }
    xmlFreeDoc(doc);
    printf("fhirpath-patch suite: %d of %d passed\n", passed, total);
    assert_true(total > 30);
    assert_int_equal(failed, 0);
}

int run_patch_tests(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(json_patch_passes_the_rfc6902_suite),
        cmocka_unit_test(fhirpath_patch_passes_the_fhir_suite),
    };
    return cmocka_run_group_tests_name("fhir patch", tests, NULL, NULL);
}
