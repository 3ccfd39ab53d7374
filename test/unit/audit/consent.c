/* consent.c — tests destinations/audit/consent.c: reading Consent resources and the decision. */
#include <string.h>

#include "tests.h"

static hv__consent_t *parse(const char *text, int want) {
    static hv__consent_t c;
    int rc = hv__consent_parse(text, strlen(text), &c);
    if (rc != want) fail_msg("parse gave %d, want %d: %s", rc, want, text);
    return &c;
}

static void audit_consent_parse_reads_active_consents_only(void **state) {
    hv__consent_t *c;
    (void)state;
    c = parse("{\"resourceType\":\"Consent\",\"id\":\"c1\",\"status\":\"active\",\"patient\":{\"reference\":"
              "\"Patient/p1\"},\"provision\":{\"type\":\"deny\"}}",
              HV_OK);
    assert_string_equal(c->id, "c1");
    assert_string_equal(c->patient, "p1");
    c = parse("{\"resourceType\":\"Consent\",\"id\":\"c2\",\"status\":\"inactive\",\"patient\":{\"reference\":"
              "\"Patient/p1\"}}",
              HV_ENOTFOUND);
    assert_string_equal(c->id, "c2");
    parse("{\"resourceType\":\"Consent\",\"id\":\"c3\",\"status\":\"active\",\"patient\":{\"reference\":\"Group/g\"}}",
          HV_EINVAL);
    parse("{\"resourceType\":\"Consent\",\"status\":\"active\",\"patient\":{\"reference\":\"Patient/p\"}}", HV_EINVAL);
    parse("not json", HV_EPROTO);
}

static const char *const deny_alice =
    "{\"id\":\"c\",\"status\":\"active\",\"patient\":{\"reference\":\"Patient/p\"},\"provision\":{\"type\":\"deny\","
    "\"actor\":[{\"reference\":{\"reference\":\"Practitioner/alice\"}}]}}";
static const char *const permit_but_research =
    "{\"id\":\"c\",\"status\":\"active\",\"patient\":{\"reference\":\"Patient/p\"},\"provision\":{\"type\":\"permit\","
    "\"provision\":[{\"type\":\"deny\",\"purpose\":[{\"code\":\"HRESCH\"}],\"class\":[{\"code\":\"Observation\"}]}]}}";
static const char *const deny_all_but_bob =
    "{\"id\":\"c\",\"status\":\"active\",\"patient\":{\"reference\":\"Patient/p\"},\"provision\":{\"type\":\"deny\","
    "\"period\":{\"start\":\"2020-01-01\",\"end\":\"2030-01-01\"},\"provision\":[{\"type\":\"permit\",\"actor\":"
    "[{\"reference\":{\"identifier\":{\"value\":\"bob\"}}}]}]}}";

static const struct {
    const char *const *consent;
    const char *user, *purpose, *type;
    int64_t now;
    int denied;
} decisions[] = {
    {&deny_alice, "alice", "TREAT", "Patient", 1700000000000, 1},
    {&deny_alice, "bob", "TREAT", "Patient", 1700000000000, 0},
    {&permit_but_research, "alice", "TREAT", "Observation", 1700000000000, 0},
    {&permit_but_research, "alice", "HRESCH", "Observation", 1700000000000, 1},
    {&permit_but_research, "alice", "HRESCH", "Patient", 1700000000000, 0},
    {&deny_all_but_bob, "alice", "TREAT", "Patient", 1700000000000, 1},
    {&deny_all_but_bob, "bob", "TREAT", "Patient", 1700000000000, 0},
    {&deny_all_but_bob, "alice", "TREAT", "Patient", 1500000000000, 0}, /* before the period */
    {&deny_all_but_bob, "alice", "TREAT", "Patient", 1900000000000, 0}, /* after it */
};

static void audit_consent_decides_by_actor_purpose_class_period(void **state) {
    (void)state;
    for (size_t i = 0; i < HV_ARRAY_LEN(decisions); i++) {
        hv__consent_t *c = parse(*decisions[i].consent, HV_OK);
        int got = hv__consent_denies(c, decisions[i].user, decisions[i].purpose, decisions[i].type, decisions[i].now);
        if (got != decisions[i].denied)
            fail_msg("case %zu: %s %s %s: denied %d, want %d", i, decisions[i].user, decisions[i].purpose,
                     decisions[i].type, got, decisions[i].denied);
    }
}

int run_consent_tests(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(audit_consent_parse_reads_active_consents_only),
        cmocka_unit_test(audit_consent_decides_by_actor_purpose_class_period),
    };
    return cmocka_run_group_tests_name("audit_consent", tests, NULL, NULL);
}
