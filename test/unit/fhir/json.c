/* json.c — tests of fhir/json.c: FHIR JSON parsing, ordered writing, exact decimals. */
#include "tests.h"

#include <json-c/json.h>
#include <pthread.h>
#include <string.h>

static struct json_object *parse_ok(const char *text) {
    struct json_object *o = NULL;
    hv_error_t err;
    hv_error_clear(&err);
    int rc = hv_fhir_json_parse(text, strlen(text), NULL, &o, &err);
    if (rc != HV_OK)
        print_error("parse failed: %s at %s %d:%d\n", err.message, err.location, err.line,
                    err.column);
    assert_int_equal(rc, HV_OK);
    return o;
}

static char *write_str(struct json_object *o, unsigned flags) {
    hv_buf_t b;
    hv_buf_init(&b, 0);
    assert_int_equal(hv_fhir_json_write(o, flags, &b), HV_OK);
    return hv_buf_take(&b);
}

static void fhir_json_keeps_decimal_text(void **state) {
    (void)state;
    struct json_object *o =
        parse_ok("{\"resourceType\":\"Observation\",\"status\":\"final\","
                 "\"code\":{\"text\":\"x\"},\"valueQuantity\":{\"value\":1.50}}");
    char *s = write_str(o, 0);
    assert_non_null(strstr(s, "\"value\":1.50"));
    struct json_object *q = json_object_object_get(o, "valueQuantity");
    assert_string_equal(hv_fhir_json_number_text(json_object_object_get(q, "value")), "1.50");
    hv_free(s);
    json_object_put(o);
}

static void fhir_json_writes_in_specification_order(void **state) {
    (void)state;
    struct json_object *o = parse_ok(
        "{\"gender\":\"male\",\"_birthDate\":{\"extension\":[{\"valueString\":\"x\",\"url\":\"u\"}]"
        "},"
        "\"birthDate\":\"1970\",\"id\":\"a\",\"resourceType\":\"Patient\",\"active\":true}");
    char *s = write_str(o, 0);
    assert_string_equal(
        s, "{\"resourceType\":\"Patient\",\"id\":\"a\",\"active\":true,\"gender\":\"male\","
           "\"birthDate\":\"1970\",\"_birthDate\":{\"extension\":[{\"url\":\"u\","
           "\"valueString\":\"x\"}]}}");
    hv_free(s);
    json_object_put(o);
}

static void fhir_json_pretty_indents_two_spaces(void **state) {
    (void)state;
    struct json_object *o =
        parse_ok("{\"resourceType\":\"Patient\",\"name\":[{\"given\":[\"A\"]}]}");
    char *s = write_str(o, HV_FHIR_WRITE_PRETTY);
    assert_string_equal(
        s, "{\n  \"resourceType\": \"Patient\",\n  \"name\": [\n    {\n      \"given\": [\n"
           "        \"A\"\n      ]\n    }\n  ]\n}");
    hv_free(s);
    json_object_put(o);
}

static void fhir_json_orders_contained_and_bundle_resources(void **state) {
    (void)state;
    struct json_object *o = parse_ok(
        "{\"resourceType\":\"Bundle\",\"type\":\"collection\",\"entry\":[{\"resource\":"
        "{\"gender\":\"other\",\"resourceType\":\"Patient\",\"contained\":[{\"name\":\"n\","
        "\"resourceType\":\"Organization\",\"id\":\"o\"}]},\"fullUrl\":\"urn:x\"}]}");
    char *s = write_str(o, 0);
    assert_string_equal(
        s, "{\"resourceType\":\"Bundle\",\"type\":\"collection\",\"entry\":[{\"fullUrl\":"
           "\"urn:x\",\"resource\":{\"resourceType\":\"Patient\",\"contained\":[{"
           "\"resourceType\":\"Organization\",\"id\":\"o\",\"name\":\"n\"}],"
           "\"gender\":\"other\"}}]}");
    hv_free(s);
    json_object_put(o);
}

/* text is refused as malformed, at line:column, with message where one is given. */
static void assert_refused_at(const char *text, const char *message, int line, int column)
{
    struct json_object *o = NULL;
    hv_error_t err;
    hv_error_clear(&err);
    assert_int_equal(hv_fhir_json_parse(text, strlen(text), NULL, &o, &err), HV_EPROTO);
    assert_null(o);
    if (message != NULL)
        assert_string_equal(err.message, message);
    assert_int_equal(err.line, line);
    assert_int_equal(err.column, column);
}

static void fhir_json_reports_syntax_errors_with_position(void **state) {
    (void)state;
    static const struct {
        const char *text;
        int line, column;
    } cases[] = {
        {"{\"resourceType\":\"Patient\",\n  \"id\": x}", 2, 9},
        {"{\"resourceType\":\"Patient\",}", 1, 27},
        {"{\"resourceType\":\"Patient\" // c\n}", 1, 27},
        {"{\"resourceType\":\"Patient\"", 1, 26},
        {"{\"resourceType\":\"Patient\"} x", 1, 28},
        {"{\"resourceType\":\"Patient\",\n\"id\":\"a\xc1\xae\"}", 2, 8},
        {"{\"resourceType\":\"Patient\",\"id\":\"\xed\xa0\x80\"}", 1, 33},
        {"{\"resourceType\":\"Patient\",\"id\":\"\xe2\x82\"}", 1, 33},
    };
    for (size_t i = 0; i < HV_ARRAY_LEN(cases); i++)
        assert_refused_at(cases[i].text, NULL, cases[i].line, cases[i].column);
}

/*
 * The UTF-8 check reads 8 bytes at a time through ASCII: a bad sequence must be found, with
 * the same line and column, wherever it falls relative to an 8-byte word and whatever the
 * alignment of the text. Each bad sequence walks positions 0..20 of an ASCII document, also
 * with the document cut right after it (a truncated sequence at the end of the text).
 */
static void fhir_json_refuses_invalid_utf8_at_every_offset(void **state) {
    (void)state;
    static const char *const bad[] = {
        "\xc1\xae",         /* overlong '.' */
        "\xc0\x80",         /* overlong NUL */
        "\xe0\x80\xaf",     /* overlong three-byte '/' */
        "\xf0\x80\x80\xaf", /* overlong four-byte '/' */
        "\xed\xa0\x80",     /* surrogate U+D800 */
        "\xed\xbf\xbf",     /* surrogate U+DFFF */
        "\xf4\x90\x80\x80", /* U+110000 */
        "\xf5\x80\x80\x80", /* no such lead byte */
        "\xff",             /* never in UTF-8 */
        "\x80",             /* a continuation byte alone */
        "\xe2\x82",         /* truncated euro sign */
        "\xf0\x9f\x98",     /* truncated emoji */
        "\xc3",             /* truncated e-acute */
    };
    static const char doc[] =
        "{\"resourceType\":\"Patient\",\"id\":\"abcdefghijklmnop\",\"active\":true}";
    char buf[sizeof(doc) + 16];
    for (size_t b = 0; b < HV_ARRAY_LEN(bad); b++) {
        size_t bl = strlen(bad[b]);
        for (size_t pos = 0; pos <= 20; pos++) {
            for (int cut = 0; cut <= 1; cut++) {
                size_t shift = (pos + b) % 8, len = pos + bl + (cut ? 0 : sizeof(doc) - 1 - pos);
                char *t = buf + shift;
                memcpy(t, doc, pos);
                memcpy(t + pos, bad[b], bl);
                if (!cut)
                    memcpy(t + pos + bl, doc + pos, sizeof(doc) - 1 - pos);
                struct json_object *o = NULL;
                hv_error_t err;
                hv_error_clear(&err);
                assert_int_equal(hv_fhir_json_parse(t, len, NULL, &o, &err), HV_EPROTO);
                assert_null(o);
                assert_string_equal(err.message, "invalid JSON: the text is not valid UTF-8");
                assert_int_equal(err.line, 1);
                assert_int_equal(err.column, (int)pos + 1);
            }
        }
    }
    /* After a valid two-byte character and a line break the column counts characters. */
    static const char two[] = "{\"resourceType\":\"Patient\",\"id\":\"\xc3\xa9\",\n"
                              "\"active\":\"\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc1\xae\"}";
    struct json_object *o = NULL;
    hv_error_t err;
    hv_error_clear(&err);
    assert_int_equal(hv_fhir_json_parse(two, strlen(two), NULL, &o, &err), HV_EPROTO);
    assert_int_equal(err.line, 2);
    assert_int_equal(err.column, 15);
}

/* Valid multi-byte text of every length (2, 3 and 4 bytes) parses, and its bytes come back. */
static void fhir_json_keeps_multibyte_text(void **state) {
    (void)state;
    static const char text[] = "{\"resourceType\":\"Patient\",\"name\":[{\"family\":"
                               "\"Mu\xc3\xb1oz \xe6\x97\xa5\xe6\x9c\xac \xf0\x9f\x98\x80 "
                               "\xf4\x8f\xbf\xbf\xed\x9f\xbf\xee\x80\x80\"}]}";
    struct json_object *o = parse_ok(text), *name = NULL, *family = NULL;
    assert_true(json_object_object_get_ex(o, "name", &name));
    assert_true(json_object_object_get_ex(json_object_array_get_idx(name, 0), "family", &family));
    assert_string_equal(json_object_get_string(family),
                        "Mu\xc3\xb1oz \xe6\x97\xa5\xe6\x9c\xac \xf0\x9f\x98\x80 "
                        "\xf4\x8f\xbf\xbf\xed\x9f\xbf\xee\x80\x80");
    json_object_put(o);
}

/*
 * The syntax errors of well-formed UTF-8 text are json-c's with JSON_TOKENER_VALIDATE_UTF8,
 * as they were when the flag was always on: a non-ASCII character outside a string reports
 * "invalid utf-8 string" at its first byte, one after the document "unexpected character".
 */
static void fhir_json_reports_non_ascii_outside_strings_as_before(void **state) {
    (void)state;
    static const struct {
        const char *text;
        const char *message;
        int line, column;
    } cases[] = {
        {"{\"resourceType\":\"Patient\",\"id\":\xc3\xa9}", "invalid JSON: invalid utf-8 string",
         1, 32},
        {"{\"resourceType\":\"Patient\",\xe2\x82\xac:1}", "invalid JSON: invalid utf-8 string", 1,
         27},
        {"{\"resourceType\":\"Patient\",\"active\":tr\xc3\xa9}",
         "invalid JSON: invalid utf-8 string", 1, 38},
        {"{\"resourceType\":\"Patient\",\"id\":\"\\\xc3\xa9\"}", "invalid JSON: invalid utf-8 string",
         1, 34},
        {"{\"resourceType\":\"Patient\",\"id\":\"\\u12\xc3\xa9\"}",
         "invalid JSON: invalid utf-8 string", 1, 37},
        {"{\"resourceType\":\"Patient\"}\xf0\x9f\x98\x80", "invalid JSON: unexpected character", 1,
         27},
        {"{\"resourceType\":\"Patient\",\"a\":1\xc3\xa9}", "invalid JSON: invalid utf-8 string", 1,
         32},
    };
    for (size_t i = 0; i < HV_ARRAY_LEN(cases); i++)
        assert_refused_at(cases[i].text, cases[i].message, cases[i].line, cases[i].column);
}

/* The line and column of byte off, counted in characters as json.c counts them. */
static void linecol_of(const char *t, size_t off, int *line, int *col) {
    *line = 1;
    *col = 1;
    for (size_t i = 0; i < off; i++) {
        if (t[i] == '\n') {
            ++*line;
            *col = 1;
        } else if (((unsigned char)t[i] & 0xC0) != 0x80) {
            ++*col;
        }
    }
}

/*
 * Mutations of a document with non-ASCII text (whole characters inserted, deleted or
 * swapped for JSON punctuation, so the text stays well-formed UTF-8) get the answer json-c
 * gives with JSON_TOKENER_VALIDATE_UTF8: a syntax error with the same message and position,
 * or a parsed document. The generator is seeded, so a failure repeats.
 */
static void fhir_json_syntax_verdicts_match_json_c_validating(void **state) {
    (void)state;
    static const char base[] =
        "{\"resourceType\":\"Patient\",\"id\":\"p1\",\"active\":true,\"name\":[{\"family\":"
        "\"Mu\xc3\xb1oz\",\"given\":[\"\xe6\x97\xa5\",\"\xf0\x9f\x98\x80\"]}],"
        "\"multipleBirthInteger\":2,\"_gender\":{\"extension\":[]}}";
    static const char *const pieces[] = {"\xc3\xa9", "\xe2\x82\xac", "\xf0\x9f\x98\x80", "{",
                                         "}",        "[",            "]",                ",",
                                         ":",        "\"",           "\\",               "\\u",
                                         "1",        "-",            "e",                " ",
                                         "\n",       "t",            "n",                "/"};
    uint64_t seed = 0x9E3779B97F4A7C15u;
    char t[512];
    for (int iter = 0; iter < 20000; iter++) {
        size_t len = sizeof(base) - 1;
        memcpy(t, base, len);
        int edits = 1 + (int)(seed % 3);
        for (int e = 0; e < edits; e++) {
            seed = seed * 6364136223846793005u + 1442695040888963407u;
            size_t at = (size_t)(seed >> 33) % (len + 1);
            while (at < len && ((unsigned char)t[at] & 0xC0) == 0x80)
                at++; /* a character boundary */
            const char *piece = pieces[(seed >> 20) % HV_ARRAY_LEN(pieces)];
            size_t pl = strlen(piece);
            if ((seed >> 8) % 3 == 0 && at < len) {
                size_t n = 1; /* delete one character */
                while (at + n < len && ((unsigned char)t[at + n] & 0xC0) == 0x80)
                    n++;
                memmove(t + at, t + at + n, len - at - n);
                len -= n;
            } else if (len + pl < sizeof(t)) {
                memmove(t + at + pl, t + at, len - at);
                memcpy(t + at, piece, pl);
                len += pl;
            }
        }
        struct json_tokener *tok = json_tokener_new_ex(HV_FHIR_DEFAULT_MAX_DEPTH);
        assert_non_null(tok);
        json_tokener_set_flags(tok, JSON_TOKENER_STRICT | JSON_TOKENER_VALIDATE_UTF8);
        struct json_object *want = json_tokener_parse_ex(tok, t, (int)len);
        enum json_tokener_error jerr = json_tokener_get_error(tok);
        size_t end = json_tokener_get_parse_end(tok);
        json_tokener_free(tok);

        struct json_object *o = NULL;
        hv_error_t err;
        hv_error_clear(&err);
        hv_fhir_parse_opts_t opts = {.flags = HV_FHIR_PARSE_LENIENT};
        int rc = hv_fhir_json_parse(t, len, &opts, &o, &err);
        if (jerr == json_tokener_success || jerr == json_tokener_continue) {
            /* Parsed, or refused for trailing text, end of input or its content: not a
             * json-c syntax error either way. */
            assert_true(rc == HV_OK || strncmp(err.message, "invalid JSON: ", 14) != 0 ||
                        strcmp(err.message, "invalid JSON: unexpected end of input") == 0 ||
                        strcmp(err.message, "invalid JSON: content after the document") == 0);
            if (rc == HV_OK)
                assert_true(hv_fhir_json_equal(o, want));
        } else {
            char msg[128];
            int line, col;
            snprintf(msg, sizeof(msg), "invalid JSON: %s", json_tokener_error_desc(jerr));
            linecol_of(t, end, &line, &col);
            assert_int_not_equal(rc, HV_OK);
            assert_string_equal(err.message, msg);
            assert_int_equal(err.line, line);
            assert_int_equal(err.column, col);
        }
        json_object_put(o);
        json_object_put(want);
    }
}

/* The family name of the first name of a parsed Patient (borrowed from o). */
static const char *first_family(struct json_object *o) {
    struct json_object *name = NULL, *family = NULL;
    assert_true(json_object_object_get_ex(o, "name", &name));
    assert_true(json_object_object_get_ex(json_object_array_get_idx(name, 0), "family", &family));
    return json_object_get_string(family);
}

/*
 * A thread's tokener is reused for its next document: a document that failed, or ended
 * early, in the middle of a surrogate pair leaves nothing behind (a low surrogate alone
 * becomes U+FFFD, not half of a pair with the failed document's high surrogate), and a
 * depth cap asked for after another is the one applied.
 */
static void fhir_json_parse_leaves_nothing_for_the_next_document(void **state) {
    (void)state;
    static const char *const broken[] = {
        "{\"resourceType\":\"Patient\",\"id\":\"\\ud800\\u12x",
        "{\"resourceType\":\"Patient\",\"id\":\"\\ud800\\u",
        "{\"resourceType\":\"Patient\",\"id\":\"\\ud800",
    };
    static const char lone[] =
        "{\"resourceType\":\"Patient\",\"name\":[{\"family\":\"\\udc00\"}]}";
    for (size_t i = 0; i < HV_ARRAY_LEN(broken); i++) {
        struct json_object *o = NULL;
        assert_int_equal(hv_fhir_json_parse(broken[i], strlen(broken[i]), NULL, &o, NULL),
                         HV_EPROTO);
        o = parse_ok(lone);
        assert_string_equal(first_family(o), "\xef\xbf\xbd");
        json_object_put(o);
    }
    char deep[256];
    size_t n = (size_t)snprintf(deep, sizeof(deep), "{\"resourceType\":\"Questionnaire\","
                                                    "\"status\":\"draft\"");
    for (int i = 0; i < 4; i++)
        n += (size_t)snprintf(deep + n, sizeof(deep) - n,
                              ",\"item\":[{\"linkId\":\"a\",\"type\":\"group\"");
    for (int i = 0; i < 4; i++)
        n += (size_t)snprintf(deep + n, sizeof(deep) - n, "}]");
    snprintf(deep + n, sizeof(deep) - n, "}");
    hv_fhir_parse_opts_t shallow = {.max_depth = 6}, roomy = {.max_depth = 12};
    for (int round = 0; round < 3; round++) {
        struct json_object *o = NULL;
        assert_int_equal(hv_fhir_json_parse(deep, strlen(deep), &roomy, &o, NULL), HV_OK);
        json_object_put(o);
        o = NULL;
        assert_int_equal(hv_fhir_json_parse(deep, strlen(deep), &shallow, &o, NULL), HV_ETOOBIG);
        assert_null(o);
        assert_int_equal(hv_fhir_json_parse(deep, strlen(deep), NULL, &o, NULL), HV_OK);
        json_object_put(o);
    }
}

static void *parse_on_a_thread(void *arg) {
    const char *text = arg;
    for (int i = 0; i < 3; i++) {
        struct json_object *o = NULL;
        if (hv_fhir_json_parse(text, strlen(text), NULL, &o, NULL) != HV_OK)
            return NULL;
        json_object_put(o);
    }
    return arg;
}

/* Threads that parse and end, beside one another: each has its own tokener, freed with it
 * (the sanitizer build's leak check would name one that was not). */
static void fhir_json_parses_on_threads_that_come_and_go(void **state) {
    (void)state;
    static const char text[] = "{\"resourceType\":\"Patient\",\"active\":true}";
    for (int round = 0; round < 4; round++) {
        pthread_t t[3];
        for (int i = 0; i < 3; i++)
            assert_int_equal(pthread_create(&t[i], NULL, parse_on_a_thread, (void *)text), 0);
        for (int i = 0; i < 3; i++) {
            void *res = NULL;
            assert_int_equal(pthread_join(t[i], &res), 0);
            assert_ptr_equal(res, text);
        }
    }
}

static void fhir_json_reports_content_errors_with_path(void **state) {
    (void)state;
    static const struct {
        const char *text;
        const char *location;
    } cases[] = {
        {"{\"resourceType\":\"Patient\",\"name\":[{\"given\":[\"a\",\"b\"],\"x\":1}]}",
         "Patient.name[0].x"},
        {"{\"resourceType\":\"Patient\",\"name\":{\"family\":\"a\"}}", "Patient.name"},
        {"{\"resourceType\":\"Patient\",\"active\":\"true\"}", "Patient.active"},
        {"{\"resourceType\":\"Patient\",\"gender\":[\"male\"]}", "Patient.gender"},
        {"{\"resourceType\":\"Observation\",\"valueFoo\":1}", "Observation.valueFoo"},
        {"{\"resourceType\":\"Patient\",\"_gender\":\"x\"}", "Patient.gender"},
        {"{\"resourceType\":\"Patient\",\"contained\":[{\"resourceType\":\"Nope\"}]}",
         "Patient.contained[0]"},
        {"{\"resourceType\":\"Patient\",\"multipleBirthInteger\":1.5}",
         "Patient.multipleBirthInteger"},
        {"{\"resourceType\":\"Observation\",\"valueQuantity\":{\"value\":040e25}}",
         "Observation.valueQuantity.value"},
    };
    for (size_t i = 0; i < HV_ARRAY_LEN(cases); i++) {
        struct json_object *o = NULL;
        hv_error_t err;
        hv_error_clear(&err);
        assert_int_equal(hv_fhir_json_parse(cases[i].text, strlen(cases[i].text), NULL, &o, &err),
                         HV_EINVAL);
        assert_null(o);
        assert_string_equal(err.location, cases[i].location);
    }
    /* Lenient parsing accepts the same documents. */
    struct json_object *o = NULL;
    hv_fhir_parse_opts_t opts = {.flags = HV_FHIR_PARSE_LENIENT};
    assert_int_equal(hv_fhir_json_parse(cases[0].text, strlen(cases[0].text), &opts, &o, NULL),
                     HV_OK);
    json_object_put(o);
}

static void fhir_json_refuses_unknown_types_and_non_objects(void **state) {
    (void)state;
    static const char *const bad[] = {"[1]", "{\"id\":\"x\"}", "{\"resourceType\":\"Foo\"}",
                                      "{\"resourceType\":\"HumanName\"}", "\"Patient\""};
    for (size_t i = 0; i < HV_ARRAY_LEN(bad); i++) {
        struct json_object *o = NULL;
        assert_int_equal(hv_fhir_json_parse(bad[i], strlen(bad[i]), NULL, &o, NULL), HV_EINVAL);
    }
}

static void fhir_json_caps_depth_and_size(void **state) {
    (void)state;
    char deep[4096];
    size_t n = 0;
    n += (size_t)snprintf(deep, sizeof(deep),
                          "{\"resourceType\":\"Questionnaire\",\"status\":\"draft\"");
    for (int i = 0; i < 100; i++)
        n += (size_t)snprintf(deep + n, sizeof(deep) - n,
                              ",\"item\":[{\"linkId\":\"a\",\"type\":\"group\"");
    for (int i = 0; i < 100; i++)
        n += (size_t)snprintf(deep + n, sizeof(deep) - n, "}]");
    snprintf(deep + n, sizeof(deep) - n, "}");
    struct json_object *o = NULL;
    hv_fhir_parse_opts_t opts = {.max_depth = 50};
    assert_int_equal(hv_fhir_json_parse(deep, strlen(deep), &opts, &o, NULL), HV_ETOOBIG);
    opts.max_depth = 0;
    opts.max_bytes = 10;
    assert_int_equal(hv_fhir_json_parse(deep, strlen(deep), &opts, &o, NULL), HV_ETOOBIG);
    assert_null(o);
}

static void fhir_json_equal_compares_decimal_text(void **state) {
    (void)state;
    struct json_object *a = json_tokener_parse("{\"a\":[1.50,{\"b\":true}]}");
    struct json_object *b = json_tokener_parse("{\"a\":[1.5,{\"b\":true}]}");
    struct json_object *c = json_tokener_parse("{\"a\":[1.50,{\"b\":true}]}");
    assert_false(hv_fhir_json_equal(a, b));
    assert_true(hv_fhir_json_equal(a, c));
    json_object_put(a);
    json_object_put(b);
    json_object_put(c);
}

int run_json_tests(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(fhir_json_keeps_decimal_text),
        cmocka_unit_test(fhir_json_writes_in_specification_order),
        cmocka_unit_test(fhir_json_pretty_indents_two_spaces),
        cmocka_unit_test(fhir_json_orders_contained_and_bundle_resources),
        cmocka_unit_test(fhir_json_reports_syntax_errors_with_position),
        cmocka_unit_test(fhir_json_refuses_invalid_utf8_at_every_offset),
        cmocka_unit_test(fhir_json_keeps_multibyte_text),
        cmocka_unit_test(fhir_json_reports_non_ascii_outside_strings_as_before),
        cmocka_unit_test(fhir_json_syntax_verdicts_match_json_c_validating),
        cmocka_unit_test(fhir_json_parse_leaves_nothing_for_the_next_document),
        cmocka_unit_test(fhir_json_parses_on_threads_that_come_and_go),
        cmocka_unit_test(fhir_json_reports_content_errors_with_path),
        cmocka_unit_test(fhir_json_refuses_unknown_types_and_non_objects),
        cmocka_unit_test(fhir_json_caps_depth_and_size),
        cmocka_unit_test(fhir_json_equal_compares_decimal_text),
    };
    return cmocka_run_group_tests_name("fhir_json", tests, NULL, NULL);
}
