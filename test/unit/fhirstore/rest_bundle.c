/* rest_bundle.c — unit tests of fhir/rest_bundle.c: derived ids for idempotent redelivery, search entries. */
#include "tests.h"

#include <json-c/json.h>
#include <stdio.h>
#include <string.h>

static const char TX[] =
    "{\"resourceType\":\"Bundle\",\"type\":\"transaction\",\"entry\":["
    "{\"fullUrl\":\"urn:uuid:0a0b0c0d-0000-4000-8000-000000000001\",\"resource\":{\"resourceType\":\"Patient\","
    "\"gender\":\"male\"},\"request\":{\"method\":\"POST\",\"url\":\"Patient\"}},"
    "{\"resource\":{\"resourceType\":\"Observation\",\"status\":\"final\",\"code\":{\"coding\":[{\"system\":"
    "\"http://loinc.org\",\"code\":\"8867-4\"}]},\"subject\":{\"reference\":"
    "\"urn:uuid:0a0b0c0d-0000-4000-8000-000000000001\"}},\"request\":{\"method\":\"POST\",\"url\":\"Observation\"}},"
    "{\"request\":{\"method\":\"GET\",\"url\":\"Observation?code=http://loinc.org|8867-4\"}}]}";

static hv__bundle_job_t *prepare(const char *text)
{
    hv__bundle_job_t *bj = NULL;
    char msg[600];
    int status = 0;
    if (hv__bundle_prepare(json_tokener_parse(text), 0, "return=representation", &bj, &status, msg, sizeof(msg)) !=
        HV_OK)
        fail_msg("prepare: %d %s", status, msg);
    return bj;
}

static void bundle_derived_ids_are_stable_version8_uuids(void **state)
{
    char a[HV__FHIR_ID_MAX], b[HV__FHIR_ID_MAX], c[HV__FHIR_ID_MAX];
    (void)state;
    hv__fhir_derived_id("lab:42", 0, a);
    hv__fhir_derived_id("lab:42", 0, b);
    hv__fhir_derived_id("lab:42", 1, c);
    assert_string_equal(a, b);
    assert_string_not_equal(a, c);
    assert_int_equal(strlen(a), 36);
    assert_int_equal(a[14], '8'); /* RFC 9562 §5.8: version 8 */
    assert_true(strchr("89ab", a[19]) != NULL); /* the variant */
    assert_true(hv__fhir_id_valid(a));
    hv__fhir_derived_id("lab:43", 0, c);
    assert_string_not_equal(a, c);
}

static void bundle_seeded_transaction_is_found_applied(void **state)
{
    hv_db_t *db = store_test_db();
    hv__bundle_job_t *bj = prepare(TX), *again = prepare(TX), *other = prepare(TX);
    char want[HV__FHIR_ID_MAX];
    int applied = -1;
    (void)state;
    assert_int_equal(hv__bundle_seed_ids(bj, "ch:7"), 2); /* the two POSTs, not the GET */
    hv__fhir_derived_id("ch:7", 0, want);
    assert_string_equal(hv__bundle_op_at(bj, 0)->id, want);
    assert_int_equal(hv__bundle_applied(db, bj, "ch:7", &applied), HV_OK);
    assert_int_equal(applied, 0);
    assert_int_equal(hv_db_begin(db), HV_OK);
    assert_int_equal(hv__bundle_run(db, bj), HV_OK);
    assert_int_equal(hv_db_commit(db), HV_OK);
    /* The same message again: applied; another message: not. */
    hv__bundle_seed_ids(again, "ch:7");
    assert_int_equal(hv__bundle_applied(db, again, "ch:7", &applied), HV_OK);
    assert_int_equal(applied, 1);
    hv__bundle_seed_ids(other, "ch:8");
    assert_int_equal(hv__bundle_applied(db, other, "ch:8", &applied), HV_OK);
    assert_int_equal(applied, 0);
    hv__bundle_job_free(bj);
    hv__bundle_job_free(again);
    hv__bundle_job_free(other);
    store_test_db_close(db);
}

static void bundle_search_entry_answers_a_searchset_after_the_writes(void **state)
{
    hv_db_t *db = store_test_db();
    hv__bundle_job_t *bj = prepare(TX);
    struct json_object *resp, *ss = NULL, *ent, *total = NULL;
    int status = 0;
    (void)state;
    hv__bundle_set_base(bj, "http://h/fhir");
    assert_int_equal(hv_db_begin(db), HV_OK);
    assert_int_equal(hv__bundle_run(db, bj), HV_OK);
    assert_int_equal(hv_db_commit(db), HV_OK);
    resp = hv__bundle_response(bj, "http://h/fhir", &status);
    assert_int_equal(status, 200);
    ent = json_object_array_get_idx(json_object_object_get(resp, "entry"), 2);
    assert_true(json_object_object_get_ex(ent, "resource", &ss));
    assert_string_equal(hv_json_get_str(ss, "type"), "searchset");
    assert_true(json_object_object_get_ex(ss, "total", &total));
    assert_int_equal(json_object_get_int(total), 1);
    ent = json_object_array_get_idx(json_object_object_get(ss, "entry"), 0);
    assert_string_equal(hv_json_get_str(json_object_object_get(ent, "resource"), "id"),
                        hv__bundle_op_at(bj, 1)->id);
    assert_non_null(strstr(hv_json_get_str(ent, "fullUrl"), "http://h/fhir/Observation/"));
    json_object_put(resp);
    hv__bundle_job_free(bj);
    store_test_db_close(db);
}

static void bundle_search_entry_with_a_bad_query_fails_the_transaction(void **state)
{
    hv__bundle_job_t *bj = NULL;
    char msg[600];
    int status = 0;
    (void)state;
    assert_int_equal(hv__bundle_prepare(json_tokener_parse("{\"resourceType\":\"Bundle\",\"type\":\"transaction\","
                                                           "\"entry\":[{\"request\":{\"method\":\"GET\",\"url\":"
                                                           "\"Observation?date=notadate\"}}]}"),
                                        0, NULL, &bj, &status, msg, sizeof(msg)),
                     HV_EINVAL);
    assert_null(bj);
    assert_int_equal(status, 400);
    assert_non_null(strstr(msg, "search"));
}

/* hv__bundle_response_text writes what hv_fhir_json_write writes of hv__bundle_response's
 * tree, byte for byte, for the Bundles it takes (transaction and batch; create, conditional
 * create, update, delete), and declines one whose entries carry a resource or an outcome. */
static void bundle_response_text_equals_the_written_tree(void **state)
{
    static const struct {
        const char *text, *prefer;
        int takes;
    } cases[] = {
        {"{\"resourceType\":\"Bundle\",\"type\":\"transaction\",\"entry\":["
         "{\"fullUrl\":\"urn:uuid:0a0b0c0d-0000-4000-8000-000000000009\",\"resource\":{\"resourceType\":\"Patient\","
         "\"name\":[{\"family\":\"Tx\"}]},\"request\":{\"method\":\"POST\",\"url\":\"Patient\"}},"
         "{\"resource\":{\"resourceType\":\"Observation\",\"status\":\"final\",\"code\":{\"text\":\"hr\"},\"subject\":"
         "{\"reference\":\"urn:uuid:0a0b0c0d-0000-4000-8000-000000000009\"}},\"request\":{\"method\":\"POST\","
         "\"url\":\"Observation\"}},"
         "{\"resource\":{\"resourceType\":\"Patient\",\"id\":\"p-1\",\"gender\":\"other\"},\"request\":{\"method\":"
         "\"PUT\",\"url\":\"Patient/p-1\"}}]}",
         NULL, 1},
        {"{\"resourceType\":\"Bundle\",\"type\":\"batch\",\"entry\":["
         "{\"resource\":{\"resourceType\":\"Patient\",\"id\":\"p-1\",\"gender\":\"male\"},\"request\":{\"method\":"
         "\"PUT\",\"url\":\"Patient/p-1\"}},"
         "{\"request\":{\"method\":\"DELETE\",\"url\":\"Patient/p-1\"}}]}",
         "return=minimal", 1},
        {"{\"resourceType\":\"Bundle\",\"type\":\"transaction\",\"entry\":["
         "{\"resource\":{\"resourceType\":\"Patient\",\"gender\":\"male\"},\"request\":{\"method\":\"POST\","
         "\"url\":\"Patient\"}}]}",
         "return=representation", 0},
        {"{\"resourceType\":\"Bundle\",\"type\":\"batch\",\"entry\":["
         "{\"request\":{\"method\":\"GET\",\"url\":\"Patient/none\"}}]}",
         NULL, 0},
    };
    hv_db_t *db = store_test_db();
    static const char pat[] = "http://h/\"q\"\\x";
    char longbase[441]; /* the tree's fullUrl buffer (512) still holds base/type/id */
    (void)state;
    /* A base whose escapes take the answer past its size estimate: the appends grow the
     * buffer beyond the one reservation. */
    for (size_t k = 0; k + 1 < sizeof(longbase); k++)
        longbase[k] = pat[k % (sizeof(pat) - 1)];
    longbase[sizeof(longbase) - 1] = '\0';
    for (size_t i = 0; i < 2 * (sizeof(cases) / sizeof(cases[0])); i++) {
        const char *base = i < HV_ARRAY_LEN(cases) ? "http://h:8/fhir" : longbase;
        size_t c = i % HV_ARRAY_LEN(cases);
        hv__bundle_job_t *bj = NULL;
        struct json_object *tree;
        hv_buf_t direct, written;
        char msg[600];
        int status = 0, rc;
        if (hv__bundle_prepare(json_tokener_parse(cases[c].text), 0, cases[c].prefer, &bj, &status, msg,
                               sizeof(msg)) != HV_OK)
            fail_msg("prepare %zu: %d %s", c, status, msg);
        assert_int_equal(hv_db_begin(db), HV_OK);
        hv__bundle_run(db, bj);
        assert_int_equal(hv_db_commit(db), HV_OK);
        hv_buf_init(&direct, 0);
        hv_buf_init(&written, 0);
        rc = hv__bundle_response_text(bj, base, &direct);
        tree = hv__bundle_response(bj, base, &status);
        assert_non_null(tree);
        assert_int_equal(hv_fhir_json_write(tree, 0, &written), HV_OK);
        if (!cases[c].takes) {
            assert_int_equal(rc, HV_ENOTSUP);
        } else {
            assert_int_equal(rc, HV_OK);
            assert_int_equal(status, 200);
            assert_int_equal(hv_buf_putc(&direct, '\0'), HV_OK);
            assert_int_equal(hv_buf_putc(&written, '\0'), HV_OK);
            assert_string_equal(direct.data, written.data);
        }
        json_object_put(tree);
        hv_buf_release(&direct);
        hv_buf_release(&written);
        hv__bundle_job_free(bj);
    }
    store_test_db_close(db);
}

int run_bundle_tests(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(bundle_derived_ids_are_stable_version8_uuids),
        cmocka_unit_test(bundle_seeded_transaction_is_found_applied),
        cmocka_unit_test(bundle_search_entry_answers_a_searchset_after_the_writes),
        cmocka_unit_test(bundle_search_entry_with_a_bad_query_fails_the_transaction),
        cmocka_unit_test(bundle_response_text_equals_the_written_tree),
    };
    return cmocka_run_group_tests_name("fhir/rest_bundle.c", tests, NULL, NULL);
}
