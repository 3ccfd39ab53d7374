/* datatypes.c — tests of adapters/ccda/datatypes.c: HL7 TS → FHIR dateTime, decimals,
 * code-system OIDs → URIs. */
#include "config.h"

#include <json-c/json.h>
#include <string.h>

#include "adapters/ccda/ccda_int.h"
#include "tests.h"

static void ccda_ts_keeps_precision_and_zone(void **state) {
    (void)state;
    static const struct {
        const char *in;
        int date_only;
        const char *out; /* NULL: refused */
    } cases[] = {
        {"2013", 0, "2013"},
        {"201308", 0, "2013-08"},
        {"20130801", 0, "2013-08-01"},
        {"20130801050000-0800", 0, "2013-08-01T05:00:00-08:00"},
        {"201308010500-0800", 0, "2013-08-01T05:00:00-08:00"},
        {"2013080105+0530", 0, "2013-08-01T05:00:00+05:30"},
        {"20130801050012.123+0000", 0, "2013-08-01T05:00:12.123+00:00"},
        /* FHIR requires a zone with a time: a zoneless time is cut to its date. */
        {"20130801050000", 0, "2013-08-01"},
        {"20130801050000-0800", 1, "2013-08-01"},
        {"20130230", 0, NULL},
        {"20120229", 0, "2012-02-29"},
        {"20130229", 0, NULL},
        {"20131301", 0, NULL},
        {"2013080125", 0, NULL},
        {"201", 0, NULL},
        {"abcd", 0, NULL},
        {"20130801050000-08", 0, NULL},
        {"", 0, NULL},
    };
    for (size_t i = 0; i < HV_ARRAY_LEN(cases); i++) {
        char out[64];
        int rc = hv__ccda_ts(cases[i].in, cases[i].date_only, out, sizeof(out));
        if (cases[i].out == NULL) {
            if (rc == HV_OK) fail_msg("'%s' was accepted as '%s'", cases[i].in, out);
        } else {
            if (rc != HV_OK) fail_msg("'%s' was refused", cases[i].in);
            assert_string_equal(out, cases[i].out);
        }
    }
}

static void ccda_decimal_normalizes_to_fhir_syntax(void **state) {
    (void)state;
    static const struct {
        const char *in, *out;
    } cases[] = {
        {"13.2", "13.2"}, {"+5", "5"},  {".5", "0.5"},   {"5.", "5"},     {"007", "7"},
        {"-0", "0"},      {"-1.50", "-1.50"}, {" 42 ", "42"}, {"1e3", NULL}, {"abc", NULL},
        {"", NULL},       {".", NULL},  {"1.2.3", NULL},
    };
    for (size_t i = 0; i < HV_ARRAY_LEN(cases); i++) {
        struct json_object *v = hv__ccda_decimal(cases[i].in);
        if (cases[i].out == NULL) {
            if (v != NULL) fail_msg("'%s' was accepted", cases[i].in);
            continue;
        }
        if (v == NULL) fail_msg("'%s' was refused", cases[i].in);
        assert_string_equal(json_object_to_json_string_ext(v, JSON_C_TO_STRING_PLAIN), cases[i].out);
        json_object_put(v);
    }
}

static void ccda_system_maps_oids_to_fhir_uris(void **state) {
    (void)state;
    hv__ccda_ctx_t c;
    memset(&c, 0, sizeof(c));
    c.arena = hv_arena_new(0);
    static const struct {
        const char *oid, *uri;
    } cases[] = {
        {"2.16.840.1.113883.6.1", "http://loinc.org"},
        {"2.16.840.1.113883.6.96", "http://snomed.info/sct"},
        {"2.16.840.1.113883.6.88", "http://www.nlm.nih.gov/research/umls/rxnorm"},
        {"2.16.840.1.113883.12.292", "http://hl7.org/fhir/sid/cvx"},
        {"2.16.840.1.113883.6.90", "http://hl7.org/fhir/sid/icd-10-cm"},
        {"2.16.840.1.113883.6.69", "http://hl7.org/fhir/sid/ndc"},
        {"2.16.840.1.113883.6.12", "http://www.ama-assn.org/go/cpt"},
        {"2.16.840.1.113883.4.1", "http://hl7.org/fhir/sid/us-ssn"},
        {"2.16.840.1.113883.12.4", "http://terminology.hl7.org/CodeSystem/v2-0004"},
        {"1.2.3.4", "urn:oid:1.2.3.4"},
        {"A1B2C3D4-0000-1111-2222-333344445555", "urn:uuid:a1b2c3d4-0000-1111-2222-333344445555"},
    };
    for (size_t i = 0; i < HV_ARRAY_LEN(cases); i++)
        assert_string_equal(hv__ccda_system(&c, cases[i].oid), cases[i].uri);
    assert_null(hv__ccda_system(&c, NULL));
    hv_arena_free(c.arena);
}

int run_datatypes_tests(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(ccda_ts_keeps_precision_and_zone),
        cmocka_unit_test(ccda_decimal_normalizes_to_fhir_syntax),
        cmocka_unit_test(ccda_system_maps_oids_to_fhir_uris),
    };
    return cmocka_run_group_tests_name("ccda_datatypes", tests, NULL, NULL);
}
