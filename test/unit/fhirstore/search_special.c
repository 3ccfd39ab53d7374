/* search_special.c — unit tests of fhir/search_special.c: the deferred full-text index
 * of _text/_content on SQLite (rows written after the commit by the catch-up, behind
 * the mark sp_text_mark, following the current version). */
#include "tests.h"

#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fhir/search_int.h"

/* Writes version `version` of Patient/id with `word` as its family name (NULL: deletes it). */
static void put_patient(hv_db_t *db, const char *id, int64_t version, const char *word)
{
    char text[256];
    struct json_object *o = NULL;
    if (word != NULL) {
        snprintf(text, sizeof(text), "{\"resourceType\":\"Patient\",\"id\":\"%s\",\"name\":[{\"family\":\"%s\"}]}",
                 id, word);
        o = json_tokener_parse(text);
        assert_non_null(o);
    }
    assert_int_equal(hv__store_put(db, "Patient", id, version, 1000 + (uint64_t)version, word ? text : NULL,
                                   word ? strlen(text) : 0, o),
                     HV_OK);
    if (o != NULL)
        json_object_put(o);
}

#define MARK "SELECT last_rid FROM sp_text_mark"
#define MAXRID "SELECT MAX(rid) FROM resources"

/* Writes leave the full text to the catch-up; it indexes the current live versions in
 * rid order, at most `limit` versions a call, and moves the mark past what it read. */
static void search_text_catch_up_indexes_current_versions_behind_the_mark(void **state)
{
    hv_db_t *db = store_test_db();
    int64_t n = -1;
    (void)state;
    assert_int_equal(store_test_count(db, MARK), 0);
    put_patient(db, "a", 1, "alpha");
    put_patient(db, "b", 1, "beta");
    put_patient(db, "a", 2, "gamma");
    put_patient(db, "c", 1, "delta");
    put_patient(db, "c", 2, NULL);
    assert_int_equal(store_test_count(db, "SELECT COUNT(*) FROM sp_text"), 0); /* nothing at write time */
    /* two versions: a/1 (superseded: skipped) and b/1 */
    assert_int_equal(hv__search_text_catch_up(db, 2, &n), HV_OK);
    assert_int_equal(n, 2);
    assert_int_equal(store_test_count(db, MARK), store_test_count(db, "SELECT rid FROM resources WHERE id = 'b'"));
    assert_int_equal(store_test_count(db, "SELECT COUNT(*) FROM sp_text"), 1);
    assert_int_equal(store_test_count(db, "SELECT COUNT(*) FROM sp_text WHERE sp_text MATCH 'beta' AND id = 'b'"), 1);
    /* the rest: a/2 indexed, c/1 superseded by its deletion, c/2 deleted */
    assert_int_equal(hv__search_text_catch_up(db, 0, &n), HV_OK);
    assert_int_equal(n, 3);
    assert_int_equal(store_test_count(db, MARK), store_test_count(db, MAXRID));
    assert_int_equal(store_test_count(db, "SELECT COUNT(*) FROM sp_text"), 2);
    assert_int_equal(store_test_count(db, "SELECT COUNT(*) FROM sp_text WHERE sp_text MATCH 'gamma'"), 1);
    assert_int_equal(store_test_count(db, "SELECT COUNT(*) FROM sp_text WHERE sp_text MATCH 'alpha OR delta'"), 0);
    /* the row's rowid is the version's rid */
    assert_int_equal(store_test_count(db, "SELECT rowid FROM sp_text WHERE sp_text MATCH 'gamma'"),
                     store_test_count(db, "SELECT rid FROM resources WHERE id = 'a' AND version = 2"));
    /* nothing new: nothing read, the mark stays */
    assert_int_equal(hv__search_text_catch_up(db, 0, &n), HV_OK);
    assert_int_equal(n, 0);
    assert_int_equal(store_test_count(db, MARK), store_test_count(db, MAXRID));
    store_test_db_close(db);
}

/* A new version drops the indexed row of the one it supersedes at once (a search never
 * sees the old words), and its own row comes with the next catch-up. */
static void search_text_update_and_delete_drop_the_old_row_at_write(void **state)
{
    hv_db_t *db = store_test_db();
    (void)state;
    put_patient(db, "a", 1, "alpha");
    put_patient(db, "b", 1, "beta");
    assert_int_equal(hv__search_text_catch_up(db, 0, NULL), HV_OK);
    assert_int_equal(store_test_count(db, "SELECT COUNT(*) FROM sp_text"), 2);
    put_patient(db, "a", 2, "omega");
    assert_int_equal(store_test_count(db, "SELECT COUNT(*) FROM sp_text WHERE sp_text MATCH 'alpha'"), 0);
    assert_int_equal(store_test_count(db, "SELECT COUNT(*) FROM sp_text"), 1);
    put_patient(db, "b", 2, NULL);
    assert_int_equal(store_test_count(db, "SELECT COUNT(*) FROM sp_text"), 0);
    assert_int_equal(hv__search_text_catch_up(db, 0, NULL), HV_OK);
    assert_int_equal(store_test_count(db, "SELECT COUNT(*) FROM sp_text WHERE sp_text MATCH 'omega'"), 1);
    assert_int_equal(store_test_count(db, "SELECT COUNT(*) FROM sp_text"), 1);
    store_test_db_close(db);
}

/* Reindexing (replace) a version the catch-up has passed writes its row again; one
 * above the mark is left to the catch-up, which must then not find a row there. */
static void search_text_reindex_writes_rows_only_behind_the_mark(void **state)
{
    hv_db_t *db = store_test_db();
    struct json_object *o = json_tokener_parse("{\"resourceType\":\"Patient\",\"id\":\"a\",\"name\":[{\"family\":"
                                               "\"alpha\"}]}");
    struct json_object *b = json_tokener_parse("{\"resourceType\":\"Patient\",\"id\":\"b\",\"name\":[{\"family\":"
                                               "\"beta\"}]}");
    (void)state;
    assert_non_null(o);
    assert_non_null(b);
    put_patient(db, "a", 1, "alpha");
    assert_int_equal(hv__search_text_catch_up(db, 0, NULL), HV_OK);
    assert_int_equal(hv_db_exec(db, "DELETE FROM sp_text"), HV_OK);
    assert_int_equal(hv__search_index_put(db, "Patient", "a", o, 1), HV_OK);
    assert_int_equal(store_test_count(db, "SELECT COUNT(*) FROM sp_text WHERE sp_text MATCH 'alpha' AND id = 'a'"), 1);
    put_patient(db, "b", 1, "beta");
    assert_int_equal(hv__search_index_put(db, "Patient", "b", b, 1), HV_OK);
    assert_int_equal(store_test_count(db, "SELECT COUNT(*) FROM sp_text WHERE id = 'b'"), 0);
    assert_int_equal(hv__search_text_catch_up(db, 0, NULL), HV_OK); /* would fail on a duplicate rowid */
    assert_int_equal(store_test_count(db, "SELECT COUNT(*) FROM sp_text WHERE sp_text MATCH 'beta' AND id = 'b'"), 1);
    json_object_put(o);
    json_object_put(b);
    store_test_db_close(db);
}

/* A stored version nested deeper than the text walk descends (64) but within what a write
 * accepts (fhir.max_depth, 128) is still parsed by the catch-up: its shallow words are found. */
static int64_t one_waits(void *ud)
{
    (*(int *)ud)++;
    return 1;
}

static int64_t hundred_wait(void *ud)
{
    (void)ud;
    return 100;
}

/* The tick's job with another job waiting indexes one slice and yields; its next jobs
 * pick up where it stopped, so a large catch-up is a run of bounded steps that still
 * indexes every version, and _text finds them all after it. With nothing waiting, one
 * job runs to its limit. */
static void search_text_slices_yield_after_one_slice_while_others_wait(void **state)
{
    hv_db_t *db = store_test_db();
    int64_t seen = 0, total = 0;
    int yielded = 0, asked = 0, jobs = 0;
    char id[16];
    (void)state;
    assert_int_equal(hv_db_begin(db), HV_OK);
    for (int i = 0; i < 1000; i++) {
        snprintf(id, sizeof(id), "p%d", i);
        put_patient(db, id, 1, "sliced");
    }
    assert_int_equal(hv_db_commit(db), HV_OK);
    do {
        assert_int_equal(hv__search_text_slices(db, 64, 4096, one_waits, &asked, &seen, &yielded), HV_OK);
        assert_true(seen <= 64);
        assert_int_equal(store_test_count(db, "SELECT COUNT(*) FROM sp_text"), total + seen);
        total += seen;
        jobs++;
    } while (yielded);
    assert_int_equal(total, 1000);
    assert_int_equal(jobs, 16); /* 15 full slices, then the last 40 */
    assert_int_equal(asked, 15);
    assert_int_equal(store_test_count(db, MARK), store_test_count(db, MAXRID));
    assert_int_equal(store_test_count(db, "SELECT COUNT(*) FROM sp_text WHERE sp_text MATCH 'sliced'"), 1000);
    /* A long queue (100 jobs): a job reads at least twice as many versions as wait, in
     * whole slices — 256 — so that the catch-up keeps pace with the writes it passes. */
    assert_int_equal(hv_db_begin(db), HV_OK);
    for (int i = 0; i < 600; i++) {
        snprintf(id, sizeof(id), "r%d", i);
        put_patient(db, id, 1, "queued");
    }
    assert_int_equal(hv_db_commit(db), HV_OK);
    assert_int_equal(hv__search_text_slices(db, 64, 4096, hundred_wait, NULL, &seen, &yielded), HV_OK);
    assert_int_equal(seen, 256);
    assert_int_equal(yielded, 1);
    assert_int_equal(hv__search_text_slices(db, 64, 4096, hundred_wait, NULL, &seen, &yielded), HV_OK);
    assert_int_equal(seen, 256);
    assert_int_equal(hv__search_text_slices(db, 64, 4096, hundred_wait, NULL, &seen, &yielded), HV_OK);
    assert_int_equal(seen, 88);
    assert_int_equal(yielded, 0);
    assert_int_equal(store_test_count(db, "SELECT COUNT(*) FROM sp_text WHERE sp_text MATCH 'queued'"), 600);
    /* Nothing waiting: one job takes every version up to its limit. */
    assert_int_equal(hv_db_begin(db), HV_OK);
    for (int i = 0; i < 300; i++) {
        snprintf(id, sizeof(id), "q%d", i);
        put_patient(db, id, 1, "whole");
    }
    assert_int_equal(hv_db_commit(db), HV_OK);
    assert_int_equal(hv__search_text_slices(db, 64, 256, NULL, NULL, &seen, &yielded), HV_OK);
    assert_int_equal(seen, 256);
    assert_int_equal(yielded, 0);
    assert_int_equal(hv__search_text_slices(db, 64, 256, NULL, NULL, &seen, &yielded), HV_OK);
    assert_int_equal(seen, 44);
    assert_int_equal(store_test_count(db, "SELECT COUNT(*) FROM sp_text WHERE sp_text MATCH 'whole'"), 300);
    store_test_db_close(db);
}

static void search_text_catch_up_parses_deeply_nested_versions(void **state)
{
    hv_db_t *db = store_test_db();
    hv_buf_t b;
    struct json_object *o;
    (void)state;
    hv_buf_init(&b, 1 << 20);
    hv_buf_puts(&b, "{\"resourceType\":\"Patient\",\"id\":\"deep\",\"name\":[{\"family\":\"Shallowword\"}]");
    for (int i = 0; i < 50; i++) /* an object and an array each: depth 100 */
        hv_buf_puts(&b, ",\"extension\":[{\"url\":\"urn:x\"");
    for (int i = 0; i < 50; i++)
        hv_buf_puts(&b, "}]");
    hv_buf_puts(&b, "}");
    o = json_tokener_parse(b.data); /* json-c's default depth (32) refuses it: no tree for the write */
    assert_null(o);
    assert_int_equal(hv__store_put(db, "Patient", "deep", 1, 1000, b.data, b.len, NULL), HV_OK);
    assert_int_equal(hv__search_text_catch_up(db, 0, NULL), HV_OK);
    assert_int_equal(store_test_count(db, "SELECT COUNT(*) FROM sp_text WHERE sp_text MATCH 'shallowword' AND id = 'deep'"), 1);
    hv_buf_release(&b);
    store_test_db_close(db);
}

/* A Patient with a string, markdown or other-typed value in most places _content looks:
 * only the values with "Yes" (and the narrative, "Narr Text") are content. ContactPoint.value
 * and Reference.reference are string in R4, postalCode too. */
#define CONTENT_PATIENT                                                                                            \
    "{\"resourceType\":\"Patient\",\"id\":\"noid\",\"meta\":{\"versionId\":\"7\",\"lastUpdated\":\"2020-01-02T03:04:05Z\"," \
    "\"source\":\"http://nosource.example/x\",\"profile\":[\"http://noprofile.example/p\"],\"tag\":[{\"system\":"    \
    "\"http://notag.org\",\"code\":\"notagcode\",\"display\":\"Yestagdisplay\"}]},\"implicitRules\":\"http://norules\"," \
    "\"language\":\"nolang\",\"text\":{\"status\":\"generated\",\"div\":\"<div xmlns=\\\"http://www.w3.org/1999/xhtml\\\">" \
    "Narr <b>Text</b></div>\"},\"extension\":[{\"url\":\"http://noext.org/e\",\"valueString\":\"Yesextstring\"},"  \
    "{\"url\":\"http://noext.org/d\",\"valueDateTime\":\"2021-03-04\"},{\"url\":\"http://noext.org/c\",\"valueCode\":" \
    "\"noextcode\"},{\"url\":\"http://noext.org/m\",\"valueMarkdown\":\"Yes *extmarkdown*\"}],\"identifier\":[{\"id\":" \
    "\"noelemid\",\"use\":\"official\",\"system\":\"http://noidsystem.org/mrn\",\"value\":\"YesMRN123\"}],"            \
    "\"active\":true,\"name\":[{\"use\":\"official\",\"family\":\"Yesfamily\",\"given\":[\"Yesgiven\"],\"_given\":[{"   \
    "\"id\":\"noid2\",\"extension\":[{\"url\":\"http://nogiven.org\",\"valueString\":\"Yesgivenext\"}]}],\"period\":" \
    "{\"start\":\"1999-01-01\"}}],\"telecom\":[{\"system\":\"phone\",\"value\":\"Yes-555\"}],\"gender\":\"female\","  \
    "\"birthDate\":\"1970-05-06\",\"_birthDate\":{\"extension\":[{\"url\":\"http://noborn.org\",\"valueString\":"     \
    "\"Yesbornext\"}]},\"address\":[{\"line\":[\"1 Yesline St\"],\"city\":\"Yescity\",\"postalCode\":\"01234\"}],"    \
    "\"maritalStatus\":{\"coding\":[{\"system\":\"http://nomarital.org\",\"code\":\"M\",\"display\":\"Yesmarried\"}]," \
    "\"text\":\"Yeswed\"},\"multipleBirthInteger\":2,\"photo\":[{\"contentType\":\"image/png\",\"data\":\"bm9kYXRh\","  \
    "\"title\":\"Yesphoto\"}],\"contact\":[{\"name\":{\"family\":\"Yescontact\"}}],\"generalPractitioner\":[{"      \
    "\"reference\":\"Practitioner/Yesref\",\"display\":\"Yes Dr\"}],\"zzunknown\":\"Nounknown\",\"contained\":[{"  \
    "\"id\":\"noc1\",\"name\":\"Yes Acme\",\"resourceType\":\"Organization\",\"telecom\":[{\"system\":\"url\","     \
    "\"value\":\"http://yesorg.example\"}]}]}"

#define CONTENT_OBSERVATION                                                                                        \
    "{\"resourceType\":\"Observation\",\"status\":\"final\",\"code\":{\"coding\":[{\"system\":\"http://noloinc.org\","  \
    "\"code\":\"8480-6\",\"display\":\"Yes systolic\"}],\"text\":\"Yes bp\"},\"subject\":{\"reference\":"              \
    "\"urn:uuid:Yesuuid\"},\"effectiveDateTime\":\"2020-02-03T04:05:06Z\",\"issued\":\"2020-02-03T04:05:06.789Z\","    \
    "\"valueQuantity\":{\"value\":120.5,\"unit\":\"Yes mm[Hg]\",\"system\":\"http://nounitsofmeasure.org\",\"code\":"  \
    "\"mm[Hg]\"},\"note\":[{\"authorString\":\"Yesauthor\",\"time\":\"2020-02-03\",\"text\":\"Yes *annotation*\"}],"  \
    "\"component\":[{\"code\":{\"text\":\"Yescomponent\"},\"valueString\":\"Yesvaluestring\"},{\"code\":{\"text\":"  \
    "\"Yesboolean\"},\"valueBoolean\":true}]}"

/* _content (FHIR R4 search.html#content, as HAPI FHIR JPA indexes it) is the narrative and
 * the values of string and markdown elements, typed by the model down to extensions,
 * primitives' `_name` extensions, backbone elements and contained resources (resourceType
 * last); not ids, codes, URIs, dates, numbers, booleans, base64Binary, nor a member the model
 * does not know. The narrative column is unchanged. Both readings give exactly this. */
static void search_content_holds_string_and_markdown_values_only(void **state)
{
    static const struct {
        const char *json, *narrative, *content;
    } cases[] = {
        {CONTENT_PATIENT, "narr text ",
         "yestagdisplay   narr text  yesextstring yes *extmarkdown* yesmrn123 yesfamily yesgiven yesgivenext"
         " yes-555 yesbornext 1 yesline st yescity 01234 yesmarried yeswed yesphoto yescontact practitioner/yesref"
         " yes dr yes acme http://yesorg.example"},
        {CONTENT_OBSERVATION, "",
         "yes systolic yes bp urn:uuid:yesuuid yes mm[hg] yesauthor yes *annotation* yescomponent yesvaluestring"
         " yesboolean"},
    };
    (void)state;
    for (size_t i = 0; i < HV_ARRAY_LEN(cases); i++) {
        struct json_object *tree = json_tokener_parse(cases[i].json);
        char *n1 = NULL, *c1 = NULL, *n2 = NULL, *c2 = NULL;
        assert_non_null(tree);
        assert_int_equal(hv__search_text_of_tree(tree, &n1, &c1), HV_OK);
        assert_int_equal(hv__search_text_of_json(cases[i].json, strlen(cases[i].json), &n2, &c2), HV_OK);
        assert_string_equal(n1, cases[i].narrative);
        assert_string_equal(c1, cases[i].content);
        assert_string_equal(n2, cases[i].narrative);
        assert_string_equal(c2, cases[i].content);
        hv_free(n1);
        hv_free(c1);
        hv_free(n2);
        hv_free(c2);
        json_object_put(tree);
    }
}

/* A narrative longer than strip_xhtml's 512-byte piece keeps a word across two pieces
 * whole ("se" + "verity" was indexed as two words), in the narrative and the content. */
static void search_text_keeps_a_word_across_narrative_pieces(void **state)
{
    hv_buf_t b;
    struct json_object *tree;
    char *n1 = NULL, *c1 = NULL, *n2 = NULL, *c2 = NULL;
    (void)state;
    hv_buf_init(&b, 1 << 16);
    hv_buf_puts(&b, "{\"resourceType\":\"Condition\",\"text\":{\"status\":\"generated\",\"div\":\"<div>");
    for (int i = 0; i < 170; i++) /* 510 bytes of text before the word */
        hv_buf_puts(&b, "ab ");
    hv_buf_puts(&b, "severity</div>\"}}");
    tree = json_tokener_parse(b.data);
    assert_non_null(tree);
    assert_int_equal(hv__search_text_of_tree(tree, &n1, &c1), HV_OK);
    assert_int_equal(hv__search_text_of_json(b.data, b.len, &n2, &c2), HV_OK);
    assert_non_null(strstr(n1, " severity"));
    assert_non_null(strstr(c1, " severity"));
    assert_string_equal(n1, n2);
    assert_string_equal(c1, c2);
    hv_free(n1);
    hv_free(c1);
    hv_free(n2);
    hv_free(c2);
    json_object_put(tree);
    hv_buf_release(&b);
}

/* Asserts that the text read from json equals the text computed from its json-c tree. */
static void expect_same_text(const char *json, size_t len)
{
    struct json_tokener *tok = json_tokener_new_ex(1024);
    struct json_object *tree;
    char *t1 = NULL, *t2 = NULL, *j1 = NULL, *j2 = NULL;
    assert_non_null(tok);
    tree = json_tokener_parse_ex(tok, json, (int)len);
    json_tokener_free(tok);
    if (tree == NULL)
        fail_msg("not JSON: %.200s", json);
    assert_int_equal(hv__search_text_of_tree(tree, &t1, &t2), HV_OK);
    assert_int_equal(hv__search_text_of_json(json, len, &j1, &j2), HV_OK);
    if (strcmp(t1, j1) != 0 || strcmp(t2, j2) != 0)
        fail_msg("text differs for %.300s\ntree: [%s] [%.300s]\njson: [%s] [%.300s]", json, t1, t2, j1, j2);
    hv_free(t1);
    hv_free(t2);
    hv_free(j1);
    hv_free(j2);
    json_object_put(tree);
}

/* expect_same_text over one resource written plain and written pretty. */
static void expect_same_text_of_resource(struct json_object *res, size_t seq, void *ud)
{
    const char *s = json_object_to_json_string_ext(res, JSON_C_TO_STRING_PLAIN);
    (void)seq;
    (void)ud;
    expect_same_text(s, strlen(s));
    s = json_object_to_json_string_ext(res, JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_NOSLASHESCAPE);
    expect_same_text(s, strlen(s));
}

/* The catch-up reads a stored version's full text from its JSON text, without a tree: the
 * same narrative and content as from the tree — escapes and surrogate pairs decoded, the
 * members typed by the model alike (contained and Bundle entry resources by their
 * resourceType, first or last; primitives' `_name` extensions; choice elements; backbone
 * elements and content references), a narrative div stripped but only the top-level
 * text.div as narrative, nothing below depth 64, the cap on the content — for crafted
 * versions and for every resource of the Synthea bundles, in json-c's plain (slashes
 * escaped) and pretty forms. Text that is not JSON is refused. */
static void search_text_from_json_equals_text_from_tree(void **state)
{
    static const char *const cases[] = {
        "{}",
        "{\"resourceType\":\"Patient\"}",
        ("{\"resourceType\":\"Patient\",\"text\":{\"status\":\"generated\",\"div\":\"<div xmlns=\\\"http://www.w3.org/"
        "1999/xhtml\\\">Hello &amp; <b>W\\u00f6rld</b>&#65;&nbsp;x</div>\"},\"name\":[{\"family\":\"O\\\"Brien\","
        "\"given\":[\"A\\/B\",\"Tab\\there\",\"\\\\back\"]}],\"active\":true,\"multipleBirthInteger\":-2.5e3,"
        "\"x\":null,\"y\":false}"),
        ("{\"resourceType\":\"Patient\",\"contained\":[{\"resourceType\":\"Organization\",\"name\":\"Acme\","
        "\"text\":{\"div\":\"<p>inner</p>\"}}],\"note\":[{\"text\":\"emoji \\ud83d\\ude00 end \\u00e9\\u4e2d\"}],"
        "\"extension\":[{\"div\":{\"a\":\"not a string div\"}},{\"resourceType\":{\"b\":\"hidden\"}}]}"),
        (" {\n  \"resourceType\" : \"Observation\" ,\n  \"code\" : { \"text\" : \"heart rate\" } ,\n"
        "  \"text\" : { \"div\" : \"<div>narr <i>ative</i></div>\" } ,\n  \"valueString\" : \"\\b\\f\\n\\r\" }\n"),
        "{\"text\":\"a string text\",\"div\":\"<b>top div</b>\",\"lone\":\"\\ud800x\",\"arr\":[[\"nested\",[]],{}]}",
        CONTENT_PATIENT,
        CONTENT_OBSERVATION,
        ("{\"type\":\"collection\",\"entry\":[{\"fullUrl\":\"urn:uuid:1\",\"resource\":{\"name\":[{\"family\":"
        "\"Last\"}],\"text\":{\"div\":\"<p>entry narrative</p>\"},\"resourceType\":\"Patient\"}},{\"resource\":"
        "{\"resourceType\":\"Nonsense\",\"name\":\"unknown type\"}},{\"resource\":{\"name\":\"no type\"}}],"
        "\"resourceType\":\"Bundle\",\"identifier\":{\"value\":\"bundle-id\"}}"),
        ("{\"resourceType\":\"Questionnaire\",\"item\":[{\"linkId\":\"1\",\"text\":\"Outer\",\"type\":\"group\","
        "\"item\":[{\"linkId\":\"1.1\",\"text\":\"Inner\",\"type\":\"string\",\"item\":[{\"text\":\"Innermost\"}]}]}]}"),
        ("{\"resourceType\":\"Patient\",\"resourceType\":\"Patient\",\"name\":{\"family\":\"not an array\"},"
        "\"gender\":[\"male\"],\"birthDate\":{\"x\":\"object for a primitive\"},\"_gender\":\"string for an"
        " Element\",\"_nonsense\":{\"extension\":[{\"valueString\":\"under an unknown name\"}]},\"contact\":[["
        "{\"name\":{\"text\":\"nested array\"}}]]}"),
    };
    static const char *const bad[] = {"", "{", "{\"a\":", "[1,2", "{\"a\" 1}", "{\"a\":\"x}", "{\"a\":\"\\q\"}",
                                      "{\"a\":\"\\u12\"}", "{\"a\":1,}"};
    hv_buf_t b;
    (void)state;
    for (size_t i = 0; i < HV_ARRAY_LEN(cases); i++)
        expect_same_text(cases[i], strlen(cases[i]));
    for (size_t i = 0; i < HV_ARRAY_LEN(bad); i++) {
        char *n1 = NULL, *n2 = NULL;
        if (hv__search_text_of_json(bad[i], strlen(bad[i]), &n1, &n2) != HV_EINVAL)
            fail_msg("accepted as JSON: %s", bad[i]);
    }
    /* below depth 64 nothing is collected; the cap on the content holds */
    hv_buf_init(&b, 1 << 22);
    hv_buf_puts(&b, "{\"resourceType\":\"Patient\",\"name\":[{\"family\":\"Shallow\"}]");
    for (int i = 0; i < 50; i++)
        hv_buf_puts(&b, ",\"extension\":[{\"valueString\":\"deepword\"");
    for (int i = 0; i < 50; i++)
        hv_buf_puts(&b, "}]");
    hv_buf_puts(&b, "}");
    expect_same_text(b.data, b.len);
    b.len = 0;
    hv_buf_puts(&b, "{\"resourceType\":\"Basic\",\"a\":[");
    for (int i = 0; i < 40000; i++)
        hv_buf_printf(&b, "%s\"w%d\"", i ? "," : "", i);
    hv_buf_puts(&b, "]}");
    expect_same_text(b.data, b.len);
    hv_buf_release(&b);
    /* every Synthea resource */
    store_test_each_synthea_resource(expect_same_text_of_resource, NULL);
}

/* A step's rows go in multi-row INSERTs (8, 4, 2, 1): 14 current versions among 17 are
 * each indexed once, under their own rowid, with their own words. */
static void search_text_catch_up_inserts_each_version_once_with_its_own_rowid(void **state)
{
    hv_db_t *db = store_test_db();
    int64_t n = -1;
    char id[16], word[16], sql[256];
    (void)state;
    for (int i = 0; i < 15; i++) {
        snprintf(id, sizeof(id), "p%d", i);
        snprintf(word, sizeof(word), "w%d", i);
        put_patient(db, id, 1, word);
    }
    put_patient(db, "p3", 2, "zz3");
    put_patient(db, "p7", 2, NULL);
    assert_int_equal(hv__search_text_catch_up(db, 0, &n), HV_OK);
    assert_int_equal(n, 17);
    assert_int_equal(store_test_count(db, "SELECT COUNT(*) FROM sp_text"), 14);
    for (int i = 0; i < 15; i++) {
        int64_t want = i == 3 || i == 7 ? -1 : 0;
        snprintf(sql, sizeof(sql), "SELECT rowid FROM sp_text WHERE sp_text MATCH 'w%d'", i);
        if (want == 0) {
            char rid[128];
            snprintf(rid, sizeof(rid), "SELECT rid FROM resources WHERE id = 'p%d' AND version = 1", i);
            want = store_test_count(db, rid);
        }
        assert_int_equal(store_test_count(db, sql), want);
        snprintf(sql, sizeof(sql), "SELECT COUNT(*) FROM sp_text WHERE id = 'p%d' AND sp_text MATCH 'w%d'", i, i);
        assert_int_equal(store_test_count(db, sql), i == 3 || i == 7 ? 0 : 1);
    }
    assert_int_equal(store_test_count(db, "SELECT rowid FROM sp_text WHERE sp_text MATCH 'zz3'"),
                     store_test_count(db, "SELECT rid FROM resources WHERE id = 'p3' AND version = 2"));
    store_test_db_close(db);
}

/* sp_text's words in one column, as fhir/search_run.c asks FTS5 for them. */
#define CONTENT_HAS(word, id)                                                                                      \
    "SELECT COUNT(*) FROM sp_text WHERE type = 'Patient' AND id = '" id "' AND sp_text MATCH"                    \
    " ('{content} : (' || '\"" word "\"' || ')')"
#define DOCSIZE "SELECT COUNT(*) FROM sqlite_master WHERE name = 'sp_text_docsize'"

/* A store written before sp_text lost its per-row sizes keeps every indexed row through
 * the migration (found by _content's MATCH as before), its mark stays true (a version
 * written before the migration and not yet indexed is indexed by the next catch-up),
 * and an update still drops the copied row of the version it supersedes. */
static void search_text_rows_and_mark_survive_the_nosize_migration(void **state)
{
    hv_db_t *db = store_test_db_before(hv__search_migration_text_nosize_sqlite);
    hv_error_t err;
    int64_t mark;
    (void)state;
    hv_error_clear(&err);
    assert_int_equal(store_test_count(db, DOCSIZE), 1); /* the old layout */
    put_patient(db, "a", 1, "alpha");
    put_patient(db, "b", 1, "beta");
    assert_int_equal(hv__search_text_catch_up(db, 0, NULL), HV_OK);
    put_patient(db, "c", 1, "gamma"); /* above the mark: not indexed yet */
    mark = store_test_count(db, MARK);
    assert_int_equal(store_test_count(db, "SELECT COUNT(*) FROM sp_text"), 2);
    assert_int_equal(hv_db_migrate(db, "fhir", hv__store_migrations(db), &err), HV_OK);
    assert_int_equal(store_test_count(db, DOCSIZE), 0);
    assert_int_equal(store_test_count(db, MARK), mark);
    assert_int_equal(store_test_count(db, "SELECT COUNT(*) FROM sp_text"), 2);
    assert_int_equal(store_test_count(db, CONTENT_HAS("alpha", "a")), 1);
    assert_int_equal(store_test_count(db, CONTENT_HAS("beta", "b")), 1);
    assert_int_equal(store_test_count(db, "SELECT rowid FROM sp_text WHERE sp_text MATCH 'beta'"),
                     store_test_count(db, "SELECT rid FROM resources WHERE id = 'b'"));
    assert_int_equal(store_test_count(db, CONTENT_HAS("gamma", "c")), 0);
    assert_int_equal(hv__search_text_catch_up(db, 0, NULL), HV_OK);
    assert_int_equal(store_test_count(db, CONTENT_HAS("gamma", "c")), 1);
    /* the copied row of a/1 goes with its superseding write, a/2's comes with the catch-up */
    put_patient(db, "a", 2, "omega");
    assert_int_equal(store_test_count(db, CONTENT_HAS("alpha", "a")), 0);
    assert_int_equal(hv__search_text_catch_up(db, 0, NULL), HV_OK);
    assert_int_equal(store_test_count(db, CONTENT_HAS("omega", "a")), 1);
    assert_int_equal(store_test_count(db, "SELECT COUNT(*) FROM sp_text"), 3);
    assert_int_equal(store_test_count(db, "SELECT COUNT(*) FROM sp_text WHERE sp_text MATCH 'alpha'"), 0);
    store_test_db_close(db);
}

int run_search_special_tests(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(search_text_catch_up_indexes_current_versions_behind_the_mark),
        cmocka_unit_test(search_text_update_and_delete_drop_the_old_row_at_write),
        cmocka_unit_test(search_text_reindex_writes_rows_only_behind_the_mark),
        cmocka_unit_test(search_text_slices_yield_after_one_slice_while_others_wait),
        cmocka_unit_test(search_text_catch_up_parses_deeply_nested_versions),
        cmocka_unit_test(search_text_from_json_equals_text_from_tree),
        cmocka_unit_test(search_content_holds_string_and_markdown_values_only),
        cmocka_unit_test(search_text_keeps_a_word_across_narrative_pieces),
        cmocka_unit_test(search_text_catch_up_inserts_each_version_once_with_its_own_rowid),
        cmocka_unit_test(search_text_rows_and_mark_survive_the_nosize_migration),
    };
    return cmocka_run_group_tests_name("fhir_search_special", tests, NULL, NULL);
}
