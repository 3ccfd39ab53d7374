/* store_ops.c — unit tests of fhir/store_ops.c: the interactions on the store, as REST and Bundles run them. */
#include "tests.h"
#include "fhir/search_int.h"

#include <json-c/json.h>
#include <stdio.h>
#include <string.h>

static struct json_object *patient(const char *mrn)
{
    char text[256];
    snprintf(text, sizeof(text),
             "{\"resourceType\":\"Patient\",\"identifier\":[{\"system\":\"urn:mrn\",\"value\":\"%s\"}],"
             "\"gender\":\"female\"}",
             mrn);
    return json_tokener_parse(text);
}

static void run(hv_db_t *db, hv__fop_t *op, int want_status)
{
    assert_int_equal(hv__fop_run(db, op), HV_OK);
    if (op->status != want_status)
        fail_msg("status %d (want %d): %s", op->status, want_status, op->msg);
}

static void fop_create_update_delete_with_versions(void **state)
{
    hv_db_t *db = store_test_db();
    hv__fop_t op;
    char id[HV__FHIR_ID_MAX];
    (void)state;
    hv__fop_init(&op, HV__FOP_CREATE);
    snprintf(op.type, sizeof(op.type), "Patient");
    op.resource = patient("A");
    run(db, &op, 201);
    assert_int_equal(op.out_version, 1);
    assert_int_equal(op.change, HV__CHANGE_CREATED);
    assert_non_null(strstr(op.text, "\"versionId\":\"1\""));
    snprintf(id, sizeof(id), "%s", op.id);
    hv__fop_clear(&op);

    hv__fop_init(&op, HV__FOP_UPDATE);
    snprintf(op.type, sizeof(op.type), "Patient");
    snprintf(op.id, sizeof(op.id), "%s", id);
    op.resource = patient("A");
    op.if_match = 5;
    run(db, &op, 412);
    op.if_match = 1;
    run(db, &op, 200);
    assert_int_equal(op.out_version, 2);
    hv__fop_clear(&op);

    hv__fop_init(&op, HV__FOP_DELETE);
    snprintf(op.type, sizeof(op.type), "Patient");
    snprintf(op.id, sizeof(op.id), "%s", id);
    run(db, &op, 204);
    assert_int_equal(op.change, HV__CHANGE_DELETED);
    run(db, &op, 204);
    assert_int_equal(op.change, HV__CHANGE_NONE); /* nothing left to delete */
    hv__fop_clear(&op);

    hv__fop_init(&op, HV__FOP_READ);
    snprintf(op.type, sizeof(op.type), "Patient");
    snprintf(op.id, sizeof(op.id), "%s", id);
    run(db, &op, 410);
    op.kind = HV__FOP_VREAD;
    op.version = 2;
    run(db, &op, 200);
    hv__fop_clear(&op);
    store_test_db_close(db);
}

/*
 * A create whose text was serialized ahead (hv__fop_ahead, as h_create does) leaves its
 * tree with the written instant, not the placeholder: the tree serializes to the stored
 * text, and meta.lastUpdated is the write's instant.
 */
static void fop_create_ahead_tree_carries_the_written_instant(void **state)
{
    hv_db_t *db = store_test_db();
    hv__fop_t op;
    hv_buf_t b;
    struct json_object *meta = NULL, *v = NULL;
    char ts[40];
    (void)state;
    hv__fop_init(&op, HV__FOP_CREATE);
    snprintf(op.type, sizeof(op.type), "Patient");
    hv__fhir_new_id(op.id);
    op.resource = patient("AHEAD");
    hv__fop_ahead(&op, 1);
    assert_non_null(op.pre_text);
    op.now_ms = 1700000000123ull; /* not the placeholder's instant (now) */
    run(db, &op, 201);
    assert_null(op.pre_text); /* the text ahead was the one stored */
    hv__fhir_instant(op.now_ms, ts, sizeof(ts));
    assert_true(json_object_object_get_ex(op.resource, "meta", &meta));
    assert_true(json_object_object_get_ex(meta, "lastUpdated", &v));
    assert_string_equal(json_object_get_string(v), ts);
    assert_true(json_object_object_get_ex(meta, "versionId", &v));
    assert_string_equal(json_object_get_string(v), "1");
    assert_string_equal(hv_json_get_str(op.resource, "id"), op.id);
    hv_buf_init(&b, 0);
    assert_int_equal(hv_fhir_json_write(op.resource, 0, &b), HV_OK);
    assert_int_equal(b.len, op.text_len);
    assert_memory_equal(b.data, op.text, b.len);
    hv_buf_release(&b);
    hv__fop_clear(&op);
    store_test_db_close(db);
}

/* An op for `text` as `type`/`id`, its text, rows and compartments made ahead; with `drop`
 * its tree is dropped after (a text-only op, fhir/store_int.h), as a Bulk sync's chunk does. */
static void ahead_op(hv__fop_t *op, hv__fop_kind_t kind, const char *type, const char *id, const char *text, int drop)
{
    hv__fop_init(op, kind);
    snprintf(op->type, sizeof(op->type), "%s", type);
    snprintf(op->id, sizeof(op->id), "%s", id);
    op->resource = json_tokener_parse(text);
    assert_non_null(op->resource);
    assert_int_equal(hv__search_index_rows(type, op->resource, &op->ix_own), HV_OK);
    op->ix_pre = op->ix_own;
    hv__fop_ahead(op, 1);
    assert_non_null(op->pre_text);
    assert_non_null(op->pre_pats);
    op->now_ms = 1700000000123ull;
    if (drop) {
        json_object_put(op->resource);
        op->resource = NULL;
    }
}

#define OBS_TEXT                                                                                                  \
    "{\"resourceType\":\"Observation\",\"status\":\"final\",\"code\":{\"coding\":[{\"system\":"                  \
    "\"http://loinc.org\",\"code\":\"8867-4\"}]},\"subject\":{\"reference\":\"Patient/p1\"},"                       \
    "\"effectiveDateTime\":\"2020-01-02\",\"valueQuantity\":{\"value\":72,\"unit\":\"/min\"}}"

/* The rows of every index and compartment table, and the version's text, of one store. */
static void assert_same_store(hv_db_t *a, hv_db_t *b)
{
    static const char *const counts[] = {
        "SELECT count(*) FROM refs WHERE patient = 'p1'", "SELECT count(*) FROM sp_tok", "SELECT count(*) FROM sp_str",
        "SELECT count(*) FROM sp_ref",   "SELECT count(*) FROM sp_date", "SELECT count(*) FROM sp_num",
        "SELECT count(*) FROM sp_uri",   "SELECT count(*) FROM sp_tokdate", "SELECT count(*) FROM sp_tokqty"};
    for (size_t i = 0; i < HV_ARRAY_LEN(counts); i++)
        if (store_test_count(a, counts[i]) != store_test_count(b, counts[i]))
            fail_msg("%s: %lld against %lld", counts[i], (long long)store_test_count(a, counts[i]),
                     (long long)store_test_count(b, counts[i]));
    assert_int_equal(store_test_count(a, "SELECT count(*) FROM refs WHERE patient = 'p1'"), 1);
    assert_true(store_test_count(a, "SELECT count(*) FROM sp_tok") > 0);
    assert_true(store_test_count(a, "SELECT count(*) FROM sp_tokqty") > 0);
}

/*
 * A text-only op (its tree dropped after hv__fop_ahead and hv__search_index_rows) writes a
 * first version on SQLite without parsing: the same text and rows as the op with its tree.
 * A later version, a Location (its sp_geo row) and conditional criteria need the tree: the
 * store parses the text and says so in op.parsed. A write that fails keeps the text for a
 * run again. Neither tree nor text is a 400.
 */
static void fop_text_only_first_version_is_written_without_a_tree(void **state)
{
    hv_db_t *db = store_test_db(), *ref = store_test_db();
    hv__fop_t op, tree;
    hv__store_row_t row;
    (void)state;
    ahead_op(&tree, HV__FOP_UPDATE, "Observation", "o1", OBS_TEXT, 0);
    run(ref, &tree, 201);
    ahead_op(&op, HV__FOP_UPDATE, "Observation", "o1", OBS_TEXT, 1);
    run(db, &op, 201);
    assert_int_equal(op.parsed, 0);
    assert_null(op.resource);
    assert_int_equal(op.out_version, 1);
    assert_int_equal(op.text_len, tree.text_len);
    assert_memory_equal(op.text, tree.text, op.text_len);
    assert_same_store(db, ref);
    hv__fop_clear(&op);
    hv__fop_clear(&tree);

    /* A later version: parsed, and written as version 2 with its own versionId. */
    ahead_op(&tree, HV__FOP_UPDATE, "Observation", "o1", OBS_TEXT, 0);
    tree.now_ms++;
    run(ref, &tree, 200);
    ahead_op(&op, HV__FOP_UPDATE, "Observation", "o1", OBS_TEXT, 1);
    op.now_ms++;
    run(db, &op, 200);
    assert_int_equal(op.parsed, 1);
    assert_int_equal(op.out_version, 2);
    assert_non_null(strstr(op.text, "\"versionId\":\"2\""));
    assert_int_equal(op.text_len, tree.text_len);
    assert_memory_equal(op.text, tree.text, op.text_len);
    assert_same_store(db, ref);
    hv__fop_clear(&op);
    hv__fop_clear(&tree);

    /* A text-only write that fails keeps its text, as an op keeps its tree: the same op run
     * again (after a rollback; here on another store) is written from it, unparsed. */
    ahead_op(&op, HV__FOP_CREATE, "Observation", "o1", OBS_TEXT, 1);
    run(db, &op, 409);
    assert_non_null(op.pre_text);
    assert_null(op.resource);
    assert_int_equal(op.parsed, 0);
    {
        hv_db_t *other = store_test_db();
        run(other, &op, 201);
        assert_int_equal(op.parsed, 0);
        assert_null(op.pre_text);
        assert_non_null(strstr(op.text, "\"versionId\":\"1\""));
        store_test_db_close(other);
    }
    hv__fop_clear(&op);

    /* A Location: its position is indexed from the tree. */
    ahead_op(&op, HV__FOP_CREATE, "Location", "l1",
             "{\"resourceType\":\"Location\",\"position\":{\"latitude\":42.36,\"longitude\":-71.06}}", 1);
    run(db, &op, 201);
    assert_int_equal(op.parsed, 1);
    assert_int_equal(store_test_count(db, "SELECT count(*) FROM sp_geo WHERE id = 'l1'"), 1);
    hv__fop_clear(&op);

    /* Conditional criteria read the tree's id. */
    ahead_op(&op, HV__FOP_UPDATE, "Observation", "o2", OBS_TEXT, 1);
    op.cond = hv_strdup("code=http://loinc.org%7C0000-0");
    run(db, &op, 201);
    assert_int_equal(op.parsed, 1);
    hv__fop_clear(&op);

    hv__fop_init(&op, HV__FOP_CREATE);
    snprintf(op.type, sizeof(op.type), "Observation");
    run(db, &op, 400);
    assert_int_equal(op.parsed, 0);
    assert_int_equal(hv__store_get(db, "Observation", "o1", 0, &row), HV_OK);
    assert_int_equal(row.version, 2);
    hv__store_row_clear(&row);
    hv__fop_clear(&op);
    store_test_db_close(db);
    store_test_db_close(ref);
}

static void fop_conditional_forms_use_identifier_and_id(void **state)
{
    hv_db_t *db = store_test_db();
    hv__fop_t op;
    char id[HV__FHIR_ID_MAX];
    (void)state;
    hv__fop_init(&op, HV__FOP_CREATE);
    snprintf(op.type, sizeof(op.type), "Patient");
    op.resource = patient("M%7C1");
    op.cond = hv_strdup("identifier=urn:mrn%7CM%257C1");
    run(db, &op, 201);
    snprintf(id, sizeof(id), "%s", op.id);
    hv__fop_clear(&op);

    /* the same criteria again: the match, nothing written */
    hv__fop_init(&op, HV__FOP_CREATE);
    snprintf(op.type, sizeof(op.type), "Patient");
    op.resource = patient("M%7C1");
    op.cond = hv_strdup("identifier=urn:mrn%7CM%257C1");
    run(db, &op, 200);
    assert_string_equal(op.id, id);
    assert_int_equal(op.change, HV__CHANGE_NONE);
    hv__fop_clear(&op);

    /* _id and identifier together must both hold */
    hv__fop_init(&op, HV__FOP_DELETE);
    snprintf(op.type, sizeof(op.type), "Patient");
    op.cond = hv_strdup("_id=other&identifier=M%257C1");
    run(db, &op, 204);
    assert_int_equal(op.change, HV__CHANGE_NONE);
    hv__fop_clear(&op);

    /* unknown parameters and malformed criteria are 400 */
    hv__fop_init(&op, HV__FOP_UPDATE);
    snprintf(op.type, sizeof(op.type), "Patient");
    op.resource = patient("B");
    op.cond = hv_strdup("nosuchparam=2020");
    run(db, &op, 400);
    hv_free(op.cond);
    op.cond = hv_strdup("birthdate=20x0");
    run(db, &op, 400);
    hv_free(op.cond);
    op.cond = hv_strdup("identifier");
    run(db, &op, 400);
    hv_free(op.cond);
    op.cond = hv_strdup("_id=bad%20id");
    run(db, &op, 400);
    hv__fop_clear(&op);
    store_test_db_close(db);
}

static void fop_patch_writes_a_new_version_and_refuses_id_changes(void **state)
{
    hv_db_t *db = store_test_db();
    hv__fop_t op;
    char id[HV__FHIR_ID_MAX];
    (void)state;
    hv__fop_init(&op, HV__FOP_CREATE);
    snprintf(op.type, sizeof(op.type), "Patient");
    op.resource = patient("P");
    run(db, &op, 201);
    snprintf(id, sizeof(id), "%s", op.id);
    hv__fop_clear(&op);

    hv__fop_init(&op, HV__FOP_PATCH);
    snprintf(op.type, sizeof(op.type), "Patient");
    snprintf(op.id, sizeof(op.id), "%s", id);
    op.patch = json_tokener_parse("[{\"op\":\"replace\",\"path\":\"/gender\",\"value\":\"male\"}]");
    run(db, &op, 200);
    assert_int_equal(op.out_version, 2);
    assert_non_null(strstr(op.text, "\"gender\":\"male\""));
    json_object_put(op.patch);
    op.patch = json_tokener_parse("[{\"op\":\"replace\",\"path\":\"/id\",\"value\":\"x\"}]");
    run(db, &op, 422);
    json_object_put(op.patch);
    op.patch = json_tokener_parse("[{\"op\":\"add\",\"path\":\"/notAnElement\",\"value\":1}]");
    run(db, &op, 422);
    json_object_put(op.patch);
    op.patch = json_tokener_parse("[{\"op\":\"test\",\"path\":\"/gender\",\"value\":\"female\"}]");
    run(db, &op, 409);
    snprintf(op.id, sizeof(op.id), "missing");
    run(db, &op, 404);
    hv__fop_clear(&op);
    store_test_db_close(db);
}

static void bundle_transaction_rolls_back_on_a_failed_entry(void **state)
{
    hv_db_t *db = store_test_db();
    hv__bundle_job_t *bj = NULL;
    hv__store_row_t row;
    char msg[600];
    int status = 0;
    struct json_object *b = json_tokener_parse(
        "{\"resourceType\":\"Bundle\",\"type\":\"transaction\",\"entry\":["
        "{\"fullUrl\":\"urn:uuid:1\",\"resource\":{\"resourceType\":\"Patient\",\"id\":\"t1\"},"
        "\"request\":{\"method\":\"PUT\",\"url\":\"Patient/t1\"}},"
        "{\"resource\":{\"resourceType\":\"Observation\",\"status\":\"final\",\"code\":{\"text\":\"x\"},"
        "\"subject\":{\"reference\":\"urn:uuid:2\"}},\"request\":{\"method\":\"POST\",\"url\":\"Observation\"}}]}");
    (void)state;
    assert_int_equal(hv__bundle_prepare(b, 0, NULL, &bj, &status, msg, sizeof(msg)), HV_OK);
    assert_int_equal(hv_db_begin(db), HV_OK);
    assert_int_equal(hv__bundle_run(db, bj), HV_EINVAL);
    assert_int_equal(hv_db_rollback(db), HV_OK);
    {
        struct json_object *oo = hv__bundle_response(bj, "http://x/fhir", &status);
        assert_int_equal(status, 400);
        assert_non_null(strstr(json_object_to_json_string(oo), "urn:uuid:2"));
        json_object_put(oo);
    }
    assert_int_equal(hv__store_get(db, "Patient", "t1", 0, &row), HV_ENOTFOUND);
    hv__bundle_job_free(bj);

    /* a Bundle that is not batch or transaction is refused while preparing */
    b = json_tokener_parse("{\"resourceType\":\"Bundle\",\"type\":\"searchset\"}");
    assert_int_equal(hv__bundle_prepare(b, 0, NULL, &bj, &status, msg, sizeof(msg)), HV_EINVAL);
    assert_int_equal(status, 400);
    store_test_db_close(db);
}

int run_store_ops_tests(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(fop_create_update_delete_with_versions),
        cmocka_unit_test(fop_create_ahead_tree_carries_the_written_instant),
        cmocka_unit_test(fop_text_only_first_version_is_written_without_a_tree),
        cmocka_unit_test(fop_conditional_forms_use_identifier_and_id),
        cmocka_unit_test(fop_patch_writes_a_new_version_and_refuses_id_changes),
        cmocka_unit_test(bundle_transaction_rolls_back_on_a_failed_entry),
    };
    return cmocka_run_group_tests_name("fhir store operations", tests, NULL, NULL);
}
