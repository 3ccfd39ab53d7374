/* vendor.c — tests of the vendor tables (adapters/ehr/vendor.c, adapters/epic, adapters/cerner). */
#include <string.h>

#include "adapters/cerner/cerner.h"
#include "tests.h"

static void ehr_vendor_table_knows_the_three(void **state) {
    const hv_ehr_vendor_t *e = hv_ehr_vendor_find("epic"), *c = hv_ehr_vendor_find("cerner");
    (void)state;
    assert_non_null(e);
    assert_non_null(c);
    assert_non_null(hv_ehr_vendor_find("fhir"));
    assert_null(hv_ehr_vendor_find("athena"));
    assert_null(hv_ehr_vendor_find(NULL));
    assert_int_equal(e->credentials, 1);
    assert_string_equal(e->assertion_alg, "RS384");
    assert_string_equal(e->bulk_level, "group");
    assert_non_null(e->patient_scoped);
    assert_int_equal(c->credentials, 2);
    assert_true(c->max_page_size <= 200);
}

static void cerner_base_url_needs_a_tenant(void **state) {
    static const struct {
        const char *url;
        int ok;
    } cases[] = {
        {"https://fhir-ehr.cerner.com/r4/ec2458f2-1e24-41c8-b71b-0e701af7583d", 1},
        {"https://fhir-ehr.cerner.com/r4/ec2458f2-1e24-41c8-b71b-0e701af7583d/", 1},
        {"http://127.0.0.1:9000/r4/0b8a0111-e8e6-4c26-a91c-5069cbc6b1ca", 1},
        {"https://fhir-ehr.cerner.com/r4", 0},
        {"https://fhir-ehr.cerner.com/r4/", 0},
        {"https://fhir-ehr.cerner.com/r4/not-a-tenant!", 0},
    };
    size_t i;
    (void)state;
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        hv_error_t err;
        hv_error_clear(&err);
        if ((hv_cerner_check_base_url(cases[i].url, &err) == HV_OK) != cases[i].ok) fail_msg("%s", cases[i].url);
    }
}

int run_vendor_tests(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(ehr_vendor_table_knows_the_three),
        cmocka_unit_test(cerner_base_url_needs_a_tenant),
    };
    return cmocka_run_group_tests_name("ehr_vendor", tests, NULL, NULL);
}
