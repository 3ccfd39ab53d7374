/*
 * json_write.c — the stored text is byte-for-byte what it was: the JSON string escaper
 * (engine/buf.c hv_buf_json_str) against a straightforward reference escaper kept here,
 * and the writer (fhir/json.c hv_fhir_json_write) over the Synthea bundles and the
 * official examples against hashes of the text written before the session-13 rewrite
 * of both (main e9a1a82). A changed hash means a changed byte of stored text: the
 * stored resources, their ETags and every client comparing them would see it.
 */
#include "tests.h"

#include <dirent.h>
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The escaping the writer has always done, one byte at a time: the quotation mark,
 * the reverse solidus, \n \r \t by name, every other byte below 0x20 as \u00xx,
 * everything else (multi-byte UTF-8, U+2028, DEL) as it is. */
static void ref_escape(hv_buf_t *b, const unsigned char *s, size_t n) {
    assert_int_equal(hv_buf_putc(b, '"'), HV_OK);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = s[i];
        if (c == '"')
            assert_int_equal(hv_buf_puts(b, "\\\""), HV_OK);
        else if (c == '\\')
            assert_int_equal(hv_buf_puts(b, "\\\\"), HV_OK);
        else if (c == '\n')
            assert_int_equal(hv_buf_puts(b, "\\n"), HV_OK);
        else if (c == '\r')
            assert_int_equal(hv_buf_puts(b, "\\r"), HV_OK);
        else if (c == '\t')
            assert_int_equal(hv_buf_puts(b, "\\t"), HV_OK);
        else if (c < 0x20)
            assert_int_equal(hv_buf_printf(b, "\\u%04x", c), HV_OK);
        else
            assert_int_equal(hv_buf_putc(b, (char)c), HV_OK);
    }
    assert_int_equal(hv_buf_putc(b, '"'), HV_OK);
}

static void check_escape(const unsigned char *s, size_t n) {
    hv_buf_t got, want;
    hv_buf_init(&got, 0);
    hv_buf_init(&want, 0);
    /* Something before, so the escaper appends rather than starts the buffer. */
    assert_int_equal(hv_buf_puts(&got, "x"), HV_OK);
    assert_int_equal(hv_buf_puts(&want, "x"), HV_OK);
    assert_int_equal(hv_buf_json_str(&got, (const char *)s, n), HV_OK);
    ref_escape(&want, s, n);
    assert_int_equal(got.len, want.len);
    assert_memory_equal(got.data, want.data, want.len);
    assert_int_equal(got.data[got.len], '\0');
    hv_buf_release(&got);
    hv_buf_release(&want);
}

static void fhir_json_str_escapes_every_byte_at_every_offset_like_the_reference(void **state) {
    (void)state;
    unsigned char s[80];
    /* Every byte value alone, and at every position of clean runs of several lengths
     * (the escaper skips eight bytes at a time: each byte must be seen in every lane
     * of a word and in the tail after the last whole word). */
    for (int c = 0; c < 256; c++) {
        for (size_t len = 1; len <= 40; len++) {
            for (size_t at = 0; at < len; at++) {
                memset(s, 'a', len);
                s[at] = (unsigned char)c;
                check_escape(s, len);
            }
        }
    }
    /* Two bytes that need escaping in the same word and in neighbouring words. */
    for (size_t a = 0; a < 24; a++) {
        for (size_t b = 0; b < 24; b++) {
            memset(s, 'z', 24);
            s[a] = '"';
            s[b] = 0x01;
            check_escape(s, 24);
        }
    }
    check_escape((const unsigned char *)"", 0);
    /* Multi-byte UTF-8 (é, 中, 😀), U+2028 and U+2029 (valid in JSON, kept), DEL. */
    static const char *const texts[] = {
        "Agust\xc3\xadn Fonseca",
        "\xe4\xb8\xad\xe6\x96\x87 \xf0\x9f\x98\x80 end",
        "line\xe2\x80\xa8separator\xe2\x80\xa9paragraph",
        "del\x7f and \xc2\x80\xc2\x9f high C1 bytes",
        "<div xmlns=\"http://www.w3.org/1999/xhtml\">a\\b\r\n\t</div>",
        "\"\"\"\"\"\"\"\"\\\\\\\\\\\\\\\\\x1f\x1f\x1f\x1f\x1f\x1f\x1f\x1f",
    };
    for (size_t i = 0; i < HV_ARRAY_LEN(texts); i++)
        check_escape((const unsigned char *)texts[i], strlen(texts[i]));
    /* Long runs: clean, escapes only, and a narrative-sized mix. */
    size_t big = 70000;
    unsigned char *p = malloc(big);
    assert_non_null(p);
    memset(p, 'q', big);
    check_escape(p, big);
    memset(p, '\n', big);
    check_escape(p, big);
    for (size_t i = 0; i < big; i++)
        p[i] = (unsigned char)(i % 97 == 0 ? '"' : i % 251 == 0 ? 0x02 : 0x20 + i % 90);
    check_escape(p, big);
    free(p);
}

static void fhir_json_str_over_the_cap_leaves_the_buffer_as_it_was(void **state) {
    (void)state;
    hv_buf_t b;
    hv_buf_init(&b, 16);
    assert_int_equal(hv_buf_puts(&b, "[1,"), HV_OK);
    /* Ten bytes fit unescaped (3 + 12 <= 16) but not escaped (3 + 22). */
    assert_int_equal(hv_buf_json_str(&b, "\"\"\"\"\"\"\"\"\"\"", 10), HV_ETOOBIG);
    assert_int_equal(b.len, 3);
    assert_string_equal(b.data, "[1,");
    assert_int_equal(hv_buf_json_str(&b, "abcdefghij", 10), HV_OK);
    assert_string_equal(b.data, "[1,\"abcdefghij\"");
    hv_buf_release(&b);
}

static void fhir_json_write_sorts_keys_given_out_of_order(void **state) {
    (void)state;
    /* Only the last key out of place, an unknown key among known ones, a `_x` twin
     * before its value: the order is still the specification's. */
    static const struct {
        const char *in, *out;
    } cases[] = {
        {"{\"resourceType\":\"Patient\",\"id\":\"p\",\"gender\":\"male\",\"active\":true}",
         "{\"resourceType\":\"Patient\",\"id\":\"p\",\"active\":true,\"gender\":\"male\"}"},
        {"{\"resourceType\":\"Patient\",\"zzz\":1,\"id\":\"p\",\"active\":true}",
         "{\"resourceType\":\"Patient\",\"id\":\"p\",\"active\":true,\"zzz\":1}"},
        {"{\"_birthDate\":{\"id\":\"b\"},\"birthDate\":\"2000\",\"resourceType\":\"Patient\"}",
         "{\"resourceType\":\"Patient\",\"birthDate\":\"2000\",\"_birthDate\":{\"id\":\"b\"}}"},
        {"{\"resourceType\":\"Patient\",\"id\":\"p\",\"active\":true}",
         "{\"resourceType\":\"Patient\",\"id\":\"p\",\"active\":true}"},
    };
    for (size_t i = 0; i < HV_ARRAY_LEN(cases); i++) {
        struct json_object *o = NULL;
        hv_fhir_parse_opts_t opts = {0};
        hv_error_t err;
        hv_error_clear(&err);
        opts.flags = HV_FHIR_PARSE_LENIENT;
        assert_int_equal(hv_fhir_json_parse(cases[i].in, strlen(cases[i].in), &opts, &o, &err),
                         HV_OK);
        hv_buf_t b;
        hv_buf_init(&b, 0);
        assert_int_equal(hv_fhir_json_write(o, 0, &b), HV_OK);
        assert_string_equal(b.data, cases[i].out);
        hv_buf_release(&b);
        json_object_put(o);
    }
}

static void fhir_json_write_writes_integers_as_json_c_does(void **state) {
    (void)state;
    /* The writer formats integers itself; json-c's own text is the reference. */
    static const int64_t values[] = {0, 1, -1, 9, 10, -10, 42, 2147483647, -2147483648LL,
                                     1000000000000LL, INT64_MAX - 1, INT64_MAX, INT64_MIN,
                                     INT64_MIN + 1};
    struct json_object *o = json_object_new_object(), *arr = json_object_new_array();
    hv_buf_t want;
    hv_buf_init(&want, 0);
    assert_int_equal(hv_buf_puts(&want, "{\"resourceType\":\"Basic\",\"n\":["), HV_OK);
    json_object_object_add(o, "resourceType", json_object_new_string("Basic"));
    for (size_t i = 0; i < HV_ARRAY_LEN(values); i++) {
        struct json_object *v = json_object_new_int64(values[i]);
        assert_int_equal(
            hv_buf_printf(&want, "%s%s", i > 0 ? "," : "",
                          json_object_to_json_string_ext(v, JSON_C_TO_STRING_PLAIN)),
            HV_OK);
        json_object_array_add(arr, v);
    }
    /* Above INT64_MAX (json-c's unsigned integers). */
    struct json_object *big = json_object_new_uint64(UINT64_MAX);
    assert_int_equal(
        hv_buf_printf(&want, ",%s]}", json_object_to_json_string_ext(big, JSON_C_TO_STRING_PLAIN)),
        HV_OK);
    json_object_array_add(arr, big);
    json_object_object_add(o, "n", arr);
    hv_buf_t got;
    hv_buf_init(&got, 0);
    assert_int_equal(hv_fhir_json_write(o, 0, &got), HV_OK);
    assert_string_equal(got.data, want.data);
    assert_non_null(strstr(got.data, "-9223372036854775808,"));
    assert_non_null(strstr(got.data, "18446744073709551615]"));
    hv_buf_release(&got);
    hv_buf_release(&want);
    json_object_put(o);
}

/* FNV-1a, 64 bits. */
static uint64_t fnv(uint64_t h, const void *p, size_t n) {
    const unsigned char *s = p;
    for (size_t i = 0; i < n; i++) {
        h ^= s[i];
        h *= 0x100000001b3ULL;
    }
    return h;
}

#define FNV_START 0xcbf29ce484222325ULL

/* The hash of a resource's written text (the length first, so that concatenations
 * cannot collide by shifting bytes between resources). */
static uint64_t write_hash(uint64_t h, struct json_object *o, unsigned flags) {
    hv_buf_t b;
    hv_buf_init(&b, 0);
    assert_int_equal(hv_fhir_json_write(o, flags, &b), HV_OK);
    uint64_t len = b.len;
    h = fnv(h, &len, sizeof(len));
    h = fnv(h, b.data, b.len);
    hv_buf_release(&b);
    return h;
}

static struct json_object *parse_file(const char *path) {
    size_t len = 0;
    char *text = fhir_test_slurp(path, &len);
    assert_non_null(text);
    struct json_object *o = NULL;
    hv_error_t err;
    hv_error_clear(&err);
    hv_fhir_parse_opts_t opts = {0};
    opts.flags = HV_FHIR_PARSE_LENIENT;
    if (hv_fhir_json_parse(text, len, &opts, &o, &err) != HV_OK)
        fail_msg("%s: %s", path, err.message);
    free(text);
    return o;
}

/*
 * Sums over the files of a folder (readdir's order is arbitrary; a sum is not) of
 * fnv(name, written text). For a Bundle, each entry's resource is written on its own,
 * compact, as the store writes it on import; then the whole bundle pretty.
 */
static uint64_t folder_hash(const char *sub, unsigned flags, size_t *files, size_t *resources) {
    char dir[1100];
    snprintf(dir, sizeof(dir), "%s/fhir/%s", fhir_test_reference_dir(), sub);
    DIR *d = opendir(dir);
    assert_non_null(d);
    struct dirent *de;
    uint64_t sum = 0;
    while ((de = readdir(d)) != NULL) {
        size_t nl = strlen(de->d_name);
        if (nl < 6 || strcmp(de->d_name + nl - 5, ".json") != 0 ||
            strcmp(de->d_name, "package.json") == 0)
            continue;
        char path[1500];
        snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
        struct json_object *o = parse_file(path), *entries = NULL;
        uint64_t h = fnv(FNV_START, de->d_name, nl);
        if (json_object_object_get_ex(o, "entry", &entries) &&
            json_object_is_type(entries, json_type_array)) {
            for (size_t i = 0; i < json_object_array_length(entries); i++) {
                struct json_object *res = NULL;
                if (json_object_object_get_ex(json_object_array_get_idx(entries, i), "resource",
                                              &res)) {
                    h = write_hash(h, res, flags);
                    (*resources)++;
                }
            }
        }
        h = write_hash(h, o, flags ^ HV_FHIR_WRITE_PRETTY);
        (*resources)++;
        (*files)++;
        sum += h;
        json_object_put(o);
    }
    closedir(d);
    return sum;
}

static void fhir_json_write_keeps_every_byte_of_the_reference_resources(void **state) {
    (void)state;
    /* Hashes of the text main e9a1a82 (before this writer's rewrite) wrote. */
    static const struct {
        const char *sub;
        unsigned flags;
        size_t files, resources;
        uint64_t sum;
    } want[] = {
        {"synthea", 0, 13, 3508, 0x11529c7859c4d606ULL},
        {"examples", 0, 722, 1070, 0xc904e45aabaddc2eULL},
        {"examples", HV_FHIR_WRITE_PRETTY, 722, 1070, 0xda72578730595342ULL},
    };
    size_t files[HV_ARRAY_LEN(want)] = {0}, resources[HV_ARRAY_LEN(want)] = {0};
    uint64_t sum[HV_ARRAY_LEN(want)];
    /* All first, then the verdicts: a failure shows every figure. */
    for (size_t i = 0; i < HV_ARRAY_LEN(want); i++) {
        sum[i] = folder_hash(want[i].sub, want[i].flags, &files[i], &resources[i]);
        print_message("%s flags %u: %zu files, %zu resources, sum 0x%016llxULL\n", want[i].sub,
                      want[i].flags, files[i], resources[i], (unsigned long long)sum[i]);
    }
    for (size_t i = 0; i < HV_ARRAY_LEN(want); i++) {
        assert_int_equal(files[i], want[i].files);
        assert_int_equal(resources[i], want[i].resources);
        assert_true(sum[i] == want[i].sum);
    }
}

int run_json_write_tests(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(fhir_json_str_escapes_every_byte_at_every_offset_like_the_reference),
        cmocka_unit_test(fhir_json_str_over_the_cap_leaves_the_buffer_as_it_was),
        cmocka_unit_test(fhir_json_write_sorts_keys_given_out_of_order),
        cmocka_unit_test(fhir_json_write_writes_integers_as_json_c_does),
        cmocka_unit_test(fhir_json_write_keeps_every_byte_of_the_reference_resources),
    };
    return cmocka_run_group_tests_name("fhir_json_write", tests, NULL, NULL);
}
