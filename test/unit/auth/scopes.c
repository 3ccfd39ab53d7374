/* scopes.c — tests of engine/auth/scopes.c: SMART scope parsing, narrowing and the
 * allow/deny decision the FHIR layer will call. */
#include "tests.h"

#include <stdio.h>
#include <string.h>

static hv_auth_principal_t *principal(const char *scope, const char *patient, unsigned role) {
    static hv_auth_principal_t p;
    hv_error_t err;
    memset(&p, 0, sizeof(p));
    snprintf(p.sub, sizeof(p.sub), "u");
    if (patient) snprintf(p.patient, sizeof(p.patient), "%s", patient);
    p.role = role;
    assert_int_equal(hv_auth_scopes_parse(scope, &p.scopes, &err), HV_OK);
    return &p;
}

static void scopes_parse_table(void **state) {
    static const struct {
        const char *scope;
        int ok;
        int context;
        const char *type;
        unsigned perms;
        const char *category;
    } cases[] = {
        {"patient/Observation.read", 1, HV_AUTH_CTX_PATIENT, "Observation", HV_AUTH_READ | HV_AUTH_SEARCH, ""},
        {"user/*.write", 1, HV_AUTH_CTX_USER, "*", HV_AUTH_CREATE | HV_AUTH_UPDATE | HV_AUTH_DELETE, ""},
        {"system/*.*", 1, HV_AUTH_CTX_SYSTEM, "*", 0x1f, ""},
        {"patient/Observation.rs", 1, HV_AUTH_CTX_PATIENT, "Observation", HV_AUTH_READ | HV_AUTH_SEARCH, ""},
        {"system/*.cruds", 1, HV_AUTH_CTX_SYSTEM, "*", 0x1f, ""},
        {"user/Patient.c", 1, HV_AUTH_CTX_USER, "Patient", HV_AUTH_CREATE, ""},
        {"user/Patient.ud", 1, HV_AUTH_CTX_USER, "Patient", HV_AUTH_UPDATE | HV_AUTH_DELETE, ""},
        {"patient/Observation.rs?category=http://terminology.hl7.org/CodeSystem/observation-category|laboratory", 1,
         HV_AUTH_CTX_PATIENT, "Observation", HV_AUTH_READ | HV_AUTH_SEARCH,
         "http://terminology.hl7.org/CodeSystem/observation-category|laboratory"},
        {"patient/Observation.sr", 0, 0, NULL, 0, NULL},     /* out of order */
        {"patient/Observation.rr", 0, 0, NULL, 0, NULL},     /* repeated */
        {"patient/Observation.x", 0, 0, NULL, 0, NULL},
        {"patient/Observation.", 0, 0, NULL, 0, NULL},
        {"patient/Observation", 0, 0, NULL, 0, NULL},
        {"admin/Observation.rs", 0, 0, NULL, 0, NULL},
        {"patient/observation.rs", 0, 0, NULL, 0, NULL},     /* types start upper-case */
        {"patient/Obs'; DROP TABLE x.rs", 0, 0, NULL, 0, NULL},
        {"patient/Observation.rs?code=1234", 0, 0, NULL, 0, NULL}, /* only category is understood */
        {"patient/Observation.rs?category=a&category=b", 0, 0, NULL, 0, NULL},
        {"patient/Observation.rs?category=", 0, 0, NULL, 0, NULL},
        {"/.rs", 0, 0, NULL, 0, NULL},
    };
    size_t i;
    (void)state;
    for (i = 0; i < HV_ARRAY_LEN(cases); i++) {
        hv_auth_scopes_t s;
        hv_error_t err;
        int rc = hv_auth_scopes_parse(cases[i].scope, &s, &err);
        if (!cases[i].ok) {
            if (rc == HV_OK) fail_msg("accepted %s", cases[i].scope);
            continue;
        }
        if (rc != HV_OK) fail_msg("refused %s", cases[i].scope);
        assert_int_equal(s.n, 1);
        assert_int_equal(s.s[0].context, cases[i].context);
        assert_string_equal(s.s[0].type, cases[i].type);
        assert_int_equal(s.s[0].perms, cases[i].perms);
        assert_string_equal(s.s[0].category, cases[i].category);
    }
}

static void scopes_parse_flags_and_ignores_unknown(void **state) {
    hv_auth_scopes_t s;
    hv_error_t err;
    (void)state;
    assert_int_equal(hv_auth_scopes_parse("  openid fhirUser launch/patient offline_access launch  weird "
                                          "launch/encounter patient/*.rs ", &s, &err), HV_OK);
    assert_true(s.openid && s.fhir_user && s.launch_patient && s.offline_access && s.launch);
    assert_false(s.online_access);
    assert_int_equal(s.n, 1);
    assert_int_equal(hv_auth_scopes_parse(NULL, &s, &err), HV_OK);
    assert_int_equal(s.n, 0);
}

static void scopes_parse_caps_the_count(void **state) {
    char big[HV_AUTH_MAX_SCOPES * 24 + 64] = "";
    hv_auth_scopes_t s;
    hv_error_t err;
    int i;
    (void)state;
    for (i = 0; i <= HV_AUTH_MAX_SCOPES; i++) strcat(big, "user/Patient.rs ");
    assert_int_equal(hv_auth_scopes_parse(big, &s, &err), HV_ETOOBIG);
}

static void scopes_narrow_keeps_only_covered(void **state) {
    static const struct {
        const char *req, *allowed, *want;
    } cases[] = {
        {"system/*.cruds", "system/*.rs", ""},
        {"system/Patient.rs", "system/*.rs", "system/Patient.rs"},
        {"system/Patient.r system/Patient.c", "system/*.rs", "system/Patient.r"},
        {"user/*.rs", "system/*.cruds", ""}, /* contexts never widen */
        {"patient/Observation.read", "patient/*.rs", "patient/Observation.rs"},
        {"openid fhirUser offline_access patient/*.rs", "openid patient/*.cruds", "openid patient/*.rs"},
        {"patient/Observation.rs", "patient/Observation.rs?category=|laboratory", ""},
        {"patient/Observation.rs?category=|laboratory", "patient/Observation.rs?category=|laboratory",
         "patient/Observation.rs?category=|laboratory"},
        {"patient/Observation.rs?category=|vital-signs", "patient/*.rs",
         "patient/Observation.rs?category=|vital-signs"},
    };
    size_t i;
    (void)state;
    for (i = 0; i < HV_ARRAY_LEN(cases); i++) {
        hv_buf_t b;
        hv_error_t err;
        hv_buf_init(&b, 0);
        assert_int_equal(hv_auth_scopes_narrow(cases[i].req, cases[i].allowed, &b, &err), HV_OK);
        if (strcmp(b.data ? b.data : "", cases[i].want) != 0)
            fail_msg("narrow(%s, %s) = '%s', want '%s'", cases[i].req, cases[i].allowed, b.data ? b.data : "",
                     cases[i].want);
        hv_buf_release(&b);
    }
}

static void allow_patient_scope_never_crosses_patients(void **state) {
    hv_auth_principal_t *p = principal("patient/*.rs", "p1", 0);
    hv_auth_target_t own = {"Observation", "p1", NULL, 0};
    hv_auth_target_t other = {"Observation", "p2", NULL, 0};
    hv_auth_target_t none = {"Medication", NULL, NULL, 0};
    hv_auth_target_t patient_self = {"Patient", "p1", NULL, 0};
    (void)state;
    assert_int_equal(hv_auth_allow(p, HV_AUTH_READ, &own), HV_OK);
    assert_int_equal(hv_auth_allow(p, HV_AUTH_SEARCH, &own), HV_OK);
    assert_int_equal(hv_auth_allow(p, HV_AUTH_READ, &patient_self), HV_OK);
    assert_int_equal(hv_auth_allow(p, HV_AUTH_READ, &other), HV_EPERM);
    assert_int_equal(hv_auth_allow(p, HV_AUTH_SEARCH, &other), HV_EPERM);
    assert_int_equal(hv_auth_allow(p, HV_AUTH_READ, &none), HV_EPERM);
    assert_int_equal(hv_auth_allow(p, HV_AUTH_UPDATE, &own), HV_EPERM);
    assert_int_equal(hv_auth_allow(p, HV_AUTH_CREATE, &own), HV_EPERM);
    assert_int_equal(hv_auth_allow(p, HV_AUTH_DELETE, &own), HV_EPERM);
}

static void allow_patient_scope_without_launch_context_denies(void **state) {
    hv_auth_principal_t *p = principal("patient/*.cruds", NULL, 0);
    hv_auth_target_t t = {"Observation", "", NULL, 0};
    const char *pid = NULL;
    (void)state;
    assert_int_equal(hv_auth_allow(p, HV_AUTH_READ, &t), HV_EPERM);
    assert_int_equal(hv_auth_allow_type(p, HV_AUTH_SEARCH, "Observation"), HV_EPERM);
    assert_int_equal(hv_auth_patient_ids(p, HV_AUTH_SEARCH, "Observation", &pid), HV_EPERM);
}

static void allow_matrix_by_context_type_and_interaction(void **state) {
    static const struct {
        const char *scope;
        const char *type;
        const char *patient;
        int interaction;
        int want;
    } cases[] = {
        {"user/Observation.rs", "Observation", "p9", HV_AUTH_READ, HV_OK},
        {"user/Observation.rs", "Condition", "p9", HV_AUTH_READ, HV_EPERM},
        {"user/Observation.rs", "Observation", "p9", HV_AUTH_UPDATE, HV_EPERM},
        {"user/*.cruds", "Anything", NULL, HV_AUTH_DELETE, HV_OK},
        {"system/*.rs", "Patient", "p3", HV_AUTH_SEARCH, HV_OK},
        {"system/*.rs", "Patient", "p3", HV_AUTH_CREATE, HV_EPERM},
        {"user/*.read", "Observation", "x", HV_AUTH_SEARCH, HV_OK},
        {"user/*.write", "Observation", "x", HV_AUTH_READ, HV_EPERM},
        {"user/*.write", "Observation", "x", HV_AUTH_UPDATE, HV_OK},
        {"", "Observation", "x", HV_AUTH_READ, HV_EPERM},
        {"openid fhirUser", "Patient", "x", HV_AUTH_READ, HV_EPERM},
        {"patient/Observation.rs user/Condition.r", "Condition", "other", HV_AUTH_READ, HV_OK},
    };
    size_t i;
    (void)state;
    for (i = 0; i < HV_ARRAY_LEN(cases); i++) {
        hv_auth_principal_t *p = principal(cases[i].scope, "p1", 0);
        hv_auth_target_t t = {cases[i].type, cases[i].patient, NULL, 0};
        if (hv_auth_allow(p, cases[i].interaction, &t) != cases[i].want)
            fail_msg("case %zu: %s on %s", i, cases[i].scope, cases[i].type);
    }
}

static void allow_granular_category(void **state) {
    hv_auth_principal_t *p =
        principal("patient/Observation.rs?category=http://terminology.hl7.org/CodeSystem/observation-category|laboratory",
                  "p1", 0);
    const char *lab[] = {"http://terminology.hl7.org/CodeSystem/observation-category|laboratory"};
    const char *vitals[] = {"http://terminology.hl7.org/CodeSystem/observation-category|vital-signs"};
    const char *other_system[] = {"http://example.org|laboratory"};
    hv_auth_target_t t1 = {"Observation", "p1", lab, 1};
    hv_auth_target_t t2 = {"Observation", "p1", vitals, 1};
    hv_auth_target_t t3 = {"Observation", "p1", other_system, 1};
    hv_auth_target_t t4 = {"Observation", "p1", NULL, 0};
    hv_auth_principal_t *q;
    hv_auth_target_t t5 = {"Observation", "p1", other_system, 1};
    (void)state;
    assert_int_equal(hv_auth_allow(p, HV_AUTH_READ, &t1), HV_OK);
    assert_int_equal(hv_auth_allow(p, HV_AUTH_READ, &t2), HV_EPERM);
    assert_int_equal(hv_auth_allow(p, HV_AUTH_READ, &t3), HV_EPERM); /* system must match when given */
    assert_int_equal(hv_auth_allow(p, HV_AUTH_READ, &t4), HV_EPERM);
    q = principal("patient/Observation.rs?category=laboratory", "p1", 0); /* code alone matches any system */
    assert_int_equal(hv_auth_allow(q, HV_AUTH_READ, &t5), HV_OK);
}

static void admin_role_and_auth_off_allow_everything(void **state) {
    hv_auth_principal_t *p = principal("", NULL, HV_AUTH_ROLE_ADMIN);
    hv_auth_target_t t = {"Observation", "p2", NULL, 0};
    const char *pid = NULL;
    (void)state;
    assert_int_equal(hv_auth_allow(p, HV_AUTH_DELETE, &t), HV_OK);
    assert_int_equal(hv_auth_allow(NULL, HV_AUTH_DELETE, &t), HV_OK);
    assert_int_equal(hv_auth_allow_type(NULL, HV_AUTH_SEARCH, "X"), HV_OK);
    assert_int_equal(hv_auth_patient_ids(p, HV_AUTH_SEARCH, "Observation", &pid), 0);
    p = principal("user/*.rs", NULL, HV_AUTH_ROLE_CLINICIAN); /* other roles get no bypass */
    assert_int_equal(hv_auth_allow(p, HV_AUTH_DELETE, &t), HV_EPERM);
}

static void patient_ids_restrict_searches(void **state) {
    const char *pid = NULL;
    hv_auth_principal_t *p = principal("patient/Observation.rs", "p1", 0);
    (void)state;
    assert_int_equal(hv_auth_allow_type(p, HV_AUTH_SEARCH, "Observation"), HV_OK);
    assert_int_equal(hv_auth_patient_ids(p, HV_AUTH_SEARCH, "Observation", &pid), 1);
    assert_string_equal(pid, "p1");
    assert_int_equal(hv_auth_patient_ids(p, HV_AUTH_SEARCH, "Condition", &pid), HV_EPERM);
    assert_int_equal(hv_auth_allow_type(p, HV_AUTH_SEARCH, "Condition"), HV_EPERM);
    p = principal("patient/Observation.rs user/Observation.s", "p1", 0);
    pid = NULL;
    assert_int_equal(hv_auth_patient_ids(p, HV_AUTH_SEARCH, "Observation", &pid), 0);
    assert_null(pid);
}

static void allow_all_only_for_unconditional_grants(void **state) {
    static const struct {
        const char *scope;
        unsigned role;
        const char *type;
        int interaction;
        int want;
    } cases[] = {
        {"user/*.rs", 0, "Observation", HV_AUTH_READ, 1},
        {"system/Observation.rs", 0, "Observation", HV_AUTH_SEARCH, 1},
        {"system/Observation.rs", 0, "Condition", HV_AUTH_SEARCH, 0},
        {"user/*.rs", 0, "Observation", HV_AUTH_UPDATE, 0},
        {"patient/*.cruds", 0, "Observation", HV_AUTH_READ, 0},      /* compartment-limited */
        {"user/Observation.rs?category=laboratory", 0, "Observation", HV_AUTH_READ, 0}, /* category-limited */
        {"patient/*.rs user/Observation.rs?category=laboratory", 0, "Observation", HV_AUTH_SEARCH, 0},
        {"", HV_AUTH_ROLE_ADMIN, "Observation", HV_AUTH_DELETE, 1},
        {"", HV_AUTH_ROLE_CLINICIAN, "Observation", HV_AUTH_READ, 0},
    };
    size_t i;
    (void)state;
    assert_int_equal(hv_auth_allow_all(NULL, HV_AUTH_DELETE, "Patient"), 1);
    for (i = 0; i < HV_ARRAY_LEN(cases); i++) {
        hv_auth_principal_t *p = principal(cases[i].scope, "p1", cases[i].role);
        if (hv_auth_allow_all(p, cases[i].interaction, cases[i].type) != cases[i].want)
            fail_msg("case %zu: %s on %s", i, cases[i].scope, cases[i].type);
    }
}

static void roles_parse_and_name(void **state) {
    static const char *const names[] = {"admin", "integrator", "clinician", "auditor", "service"};
    size_t i;
    (void)state;
    for (i = 0; i < HV_ARRAY_LEN(names); i++) assert_string_equal(hv_auth_role_name(hv_auth_role_parse(names[i])), names[i]);
    assert_int_equal(hv_auth_role_parse("Admin"), 0);
    assert_int_equal(hv_auth_role_parse(NULL), 0);
}

int run_scopes_tests(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(scopes_parse_table),
        cmocka_unit_test(scopes_parse_flags_and_ignores_unknown),
        cmocka_unit_test(scopes_parse_caps_the_count),
        cmocka_unit_test(scopes_narrow_keeps_only_covered),
        cmocka_unit_test(allow_patient_scope_never_crosses_patients),
        cmocka_unit_test(allow_patient_scope_without_launch_context_denies),
        cmocka_unit_test(allow_matrix_by_context_type_and_interaction),
        cmocka_unit_test(allow_granular_category),
        cmocka_unit_test(admin_role_and_auth_off_allow_everything),
        cmocka_unit_test(patient_ids_restrict_searches),
        cmocka_unit_test(allow_all_only_for_unconditional_grants),
        cmocka_unit_test(roles_parse_and_name),
    };
    return cmocka_run_group_tests_name("auth/scopes", tests, NULL, NULL);
}
