/* rest_compartment.c — unit tests of the compartment tables (fhir/compartments_gen.c, fhir/rest_compartment.c). */
#include "tests.h"

#include <string.h>

#include "fhir/compartment_int.h"

static int has(const char *const *params, const char *p)
{
    for (size_t i = 0; params != NULL && params[i] != NULL; i++)
        if (strcmp(params[i], p) == 0)
            return 1;
    return 0;
}

static void compartment_params_come_from_the_definitions(void **state)
{
    static const struct {
        const char *comp, *type, *param; /* param NULL: type not in the compartment */
    } cases[] = {
        {"Patient", "Observation", "subject"},   {"Patient", "Observation", "performer"},
        {"Patient", "Patient", "link"},          {"Patient", "Organization", NULL},
        {"Encounter", "Observation", "encounter"}, {"Encounter", "Patient", NULL},
        {"Practitioner", "Encounter", "practitioner"}, {"RelatedPerson", "Observation", "performer"},
        {"Device", "Observation", "device"},
    };
    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const hv__compartment_t *c = hv__compartment_find(cases[i].comp);
        const char *const *p;
        assert_non_null(c);
        p = hv__compartment_params(c, cases[i].type);
        if (cases[i].param == NULL) {
            if (p != NULL)
                fail_msg("%s is in the %s compartment", cases[i].type, cases[i].comp);
        } else if (!has(p, cases[i].param)) {
            fail_msg("%s/%s lacks %s", cases[i].comp, cases[i].type, cases[i].param);
        }
    }
    assert_null(hv__compartment_find("Observation"));
    assert_null(hv__compartment_find(NULL));
    assert_int_equal(hv__ncompartments, 5);
}

int run_compartment_tests(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(compartment_params_come_from_the_definitions),
    };
    return cmocka_run_group_tests_name("fhir/rest_compartment.c", tests, NULL, NULL);
}
