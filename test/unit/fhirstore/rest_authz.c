/*
 * rest_authz.c — tests of fhir/rest_authz.c: what a SMART token may see of a stored
 * resource (compartment, categories) and the store refusing reads and writes outside
 * it (fhir/store_ops.c through hv__fop_run).
 */
#include "config.h"

#include <json-c/json.h>
#include <stdio.h>
#include <string.h>

#include "tests.h"

static hv_auth_principal_t *principal(const char *scope, const char *patient)
{
    static hv_auth_principal_t p;
    memset(&p, 0, sizeof(p));
    assert_int_equal(hv_auth_scopes_parse(scope, &p.scopes, NULL), HV_OK);
    snprintf(p.patient, sizeof(p.patient), "%s", patient);
    return &p;
}

#define LAB "{\"coding\":[{\"system\":\"http://terminology.hl7.org/CodeSystem/observation-category\",\"code\":\"laboratory\"}]}"

static void authz_resource_decides_by_compartment_and_category(void **state)
{
    static const struct {
        const char *scope;
        const char *type, *id, *text;
        int want;
    } cases[] = {
        {"patient/*.rs", "Observation", "o1", "{\"resourceType\":\"Observation\",\"subject\":{\"reference\":\"Patient/p1\"}}", HV_OK},
        {"patient/*.rs", "Observation", "o2", "{\"resourceType\":\"Observation\",\"subject\":{\"reference\":\"Patient/p2\"}}", HV_EPERM},
        /* a prefix of the id is not the id */
        {"patient/*.rs", "Observation", "o3", "{\"resourceType\":\"Observation\",\"subject\":{\"reference\":\"Patient/p10\"}}", HV_EPERM},
        /* a reference inside a contained resource does not put the container in the compartment */
        {"patient/*.rs", "Observation", "o4",
         "{\"resourceType\":\"Observation\",\"contained\":[{\"resourceType\":\"Patient\",\"link\":[{\"other\":"
         "{\"reference\":\"Patient/p1\"}}]}],\"subject\":{\"reference\":\"Patient/p2\"}}", HV_EPERM},
        {"patient/*.rs", "Observation", "o5", "{\"resourceType\":\"Observation\",\"performer\":[{\"reference\":\"Patient/p1\"}]}", HV_OK},
        {"patient/*.rs", "Patient", "p1", "{\"resourceType\":\"Patient\",\"id\":\"p1\"}", HV_OK},
        /* a Patient linking to the token's patient is still another patient's record */
        {"patient/*.rs", "Patient", "p2", "{\"resourceType\":\"Patient\",\"id\":\"p2\",\"link\":[{\"other\":{\"reference\":\"Patient/p1\"}}]}", HV_EPERM},
        {"patient/*.rs", "Medication", "m1", "{\"resourceType\":\"Medication\"}", HV_EPERM},
        {"patient/*.rs", "Observation", "o6", "not json", HV_EPERM},
        {"user/*.rs", "Observation", "o2", "{\"resourceType\":\"Observation\",\"subject\":{\"reference\":\"Patient/p2\"}}", HV_OK},
        {"user/*.rs", "Observation", "o6", "not json", HV_OK}, /* unrestricted: nothing to inspect */
        {"user/Observation.rs?category=laboratory", "Observation", "o7",
         "{\"resourceType\":\"Observation\",\"category\":[" LAB "]}", HV_OK},
        {"user/Observation.rs?category=laboratory", "Observation", "o8",
         "{\"resourceType\":\"Observation\",\"category\":[{\"coding\":[{\"code\":\"vital-signs\"}]}]}", HV_EPERM},
        {"user/Condition.rs?category=laboratory", "Condition", "c1", "{\"resourceType\":\"Condition\",\"category\":" LAB "}", HV_OK},
    };
    (void)state;
    for (size_t i = 0; i < HV_ARRAY_LEN(cases); i++) {
        hv_auth_principal_t *p = principal(cases[i].scope, "p1");
        int got = hv__authz_resource(p, HV_AUTH_READ, cases[i].type, cases[i].id, NULL, cases[i].text);
        if (got != cases[i].want)
            fail_msg("case %zu (%s on %s/%s): %d, want %d", i, cases[i].scope, cases[i].type, cases[i].id, got,
                     cases[i].want);
    }
    assert_int_equal(hv__authz_resource(NULL, HV_AUTH_DELETE, "Observation", "x", NULL, NULL), HV_OK);
    assert_int_equal(hv__authz_restricted(principal("patient/*.rs", "p1"), HV_AUTH_READ, "Observation"), 1);
    assert_int_equal(hv__authz_restricted(principal("system/*.rs", ""), HV_AUTH_READ, "Observation"), 0);
    assert_int_equal(hv__authz_compartment(principal("patient/*.rs", "p1"), HV_AUTH_SEARCH, "Observation", "p1"), HV_OK);
    assert_int_equal(hv__authz_compartment(principal("patient/*.rs", "p1"), HV_AUTH_SEARCH, "Observation", "p2"),
                     HV_EPERM);
    assert_int_equal(hv__authz_compartment(principal("user/*.rs", "p1"), HV_AUTH_SEARCH, "Observation", "p2"), HV_OK);
}

static struct json_object *obs_of(const char *patient)
{
    char t[256];
    snprintf(t, sizeof(t), "{\"resourceType\":\"Observation\",\"status\":\"final\",\"code\":{\"text\":\"x\"},"
                           "\"subject\":{\"reference\":\"Patient/%s\"}}", patient);
    return json_tokener_parse(t);
}

/* Runs one op as p; returns its status. */
static int run_as(hv_db_t *db, const hv_auth_principal_t *p, hv__fop_kind_t kind, const char *id,
                  struct json_object *res)
{
    hv__fop_t op;
    int st;
    hv__fop_init(&op, kind);
    snprintf(op.type, sizeof(op.type), "Observation");
    snprintf(op.id, sizeof(op.id), "%s", id);
    op.resource = res;
    op.principal = p;
    assert_int_equal(hv__fop_run(db, &op), HV_OK);
    st = op.status;
    hv__fop_clear(&op);
    return st;
}

static void store_refuses_what_the_scopes_do_not_cover(void **state)
{
    hv_db_t *db = store_test_db();
    hv_auth_principal_t p1 = *principal("patient/*.cruds", "p1"), ro = *principal("patient/*.rs", "p1");
    (void)state;
    /* the data, written without a principal (import) */
    assert_int_equal(run_as(db, NULL, HV__FOP_UPDATE, "mine", obs_of("p1")), 201);
    assert_int_equal(run_as(db, NULL, HV__FOP_UPDATE, "theirs", obs_of("p2")), 201);
    /* reads: another patient's resource is answered as unknown */
    assert_int_equal(run_as(db, &ro, HV__FOP_READ, "mine", NULL), 200);
    assert_int_equal(run_as(db, &ro, HV__FOP_READ, "theirs", NULL), 404);
    assert_int_equal(run_as(db, &ro, HV__FOP_READ, "nobody", NULL), 404);
    /* writes: no create, overwrite, move or delete outside the compartment */
    assert_int_equal(run_as(db, &ro, HV__FOP_CREATE, "", obs_of("p1")), 403); /* no c */
    assert_int_equal(run_as(db, &p1, HV__FOP_CREATE, "", obs_of("p2")), 403);
    assert_int_equal(run_as(db, &p1, HV__FOP_UPDATE, "theirs", obs_of("p1")), 403);
    assert_int_equal(run_as(db, &p1, HV__FOP_UPDATE, "mine", obs_of("p2")), 403);
    assert_int_equal(run_as(db, &p1, HV__FOP_DELETE, "theirs", NULL), 403);
    assert_int_equal(run_as(db, &p1, HV__FOP_UPDATE, "mine", obs_of("p1")), 200);
    assert_int_equal(run_as(db, &p1, HV__FOP_DELETE, "mine", NULL), 204);
    {
        /* a conditional create that finds another patient's resource is refused without its id */
        hv__fop_t op;
        hv__fop_init(&op, HV__FOP_CREATE);
        snprintf(op.type, sizeof(op.type), "Observation");
        op.resource = obs_of("p1");
        op.cond = hv_strdup("subject=Patient/p2");
        op.principal = &p1;
        assert_int_equal(hv__fop_run(db, &op), HV_OK);
        assert_int_equal(op.status, 403);
        assert_null(strstr(op.msg, "theirs"));
        hv__fop_clear(&op);
    }
    /* a deleted resource tells a restricted token nothing either */
    assert_int_equal(run_as(db, &ro, HV__FOP_READ, "mine", NULL), 404);
    assert_int_equal(run_as(db, NULL, HV__FOP_READ, "mine", NULL), 410);
    store_test_db_close(db);
}

int run_authz_tests(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(authz_resource_decides_by_compartment_and_category),
        cmocka_unit_test(store_refuses_what_the_scopes_do_not_cover),
    };
    return cmocka_run_group_tests_name("fhirstore/rest_authz", tests, NULL, NULL);
}
