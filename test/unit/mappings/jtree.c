/*
 * jtree.c — tests of mappings/jtree.c, the arena JSON tree and its writer: the text must be
 * exactly the bytes json-c writes for the same values (the HL7 v2 output oracle and every
 * consumer of the channel step's text depend on it), so most tests build a tree, convert it
 * with hv__jv_to_json, and compare the two writers byte for byte.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tests.h"

#include "mappings/mappings_int.h"

/* The tree's text with flags; the caller frees it. */
static char *tree_text(const hv__jv_t *v, unsigned flags) {
    hv_buf_t b;
    hv_buf_init(&b, 0);
    assert_int_equal(hv__jv_write(v, &b, flags), HV_OK);
    assert_non_null(b.data);
    return hv_buf_take(&b);
}

/* The tree is written as json-c writes its conversion, with and without slash escapes. */
static void assert_same_as_json_c(const hv__jv_t *v) {
    json_object *o = hv__jv_to_json(v);
    char *plain = tree_text(v, HV__JV_SLASH), *noslash = tree_text(v, 0);
    assert_string_equal(plain, json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN));
    assert_string_equal(noslash, json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN |
                                                                        JSON_C_TO_STRING_NOSLASHESCAPE));
    hv_free(plain);
    hv_free(noslash);
    json_object_put(o);
}

/* Every byte value, alone and at each position of strings of 1..40 bytes (the writer takes
 * short strings a byte at a time and long ones eight at a time): escaped as json-c does. */
static void jtree_escapes_every_byte_as_json_c(void **state) {
    hv_arena_t *a = hv_arena_new(0);
    unsigned ch;
    size_t len, pos;
    (void)state;
    for (ch = 1; ch < 256; ch++) {
        for (len = 1; len <= 40; len += 3) {
            for (pos = 0; pos < len; pos += 5) {
                char s[48];
                hv__jv_t *o = hv__jv_obj(a);
                memset(s, 'x', len);
                s[pos] = (char)ch;
                s[len] = '\0';
                assert_int_equal(hv__jv_put(a, o, "k", hv__jv_strn(a, s, len), HV__JV_KCONST), HV_OK);
                /* The same text as a key that is not constant: keys are escaped too. */
                assert_int_equal(hv__jv_put(a, o, s, hv__jv_int(a, (long long)len), 0), HV_OK);
                assert_same_as_json_c(o);
            }
        }
        hv_arena_reset(a);
    }
    hv_arena_free(a);
}

/* Every length up to 40 with a byte that needs an escape (or one that does not) at every
 * position: the writer reads whole words and the last word overlapping the one before, so
 * each place of an escape relative to the word boundaries is a case of its own. */
static void jtree_escapes_at_every_position_of_every_length(void **state) {
    static const unsigned char bytes[] = {'"', '\\', '/', 0x01, 0x1f, 0x7f, 0xc3, 'x'};
    hv_arena_t *a = hv_arena_new(0);
    size_t b, len, pos;
    (void)state;
    for (b = 0; b < sizeof(bytes); b++) {
        for (len = 1; len <= 40; len++) {
            for (pos = 0; pos < len; pos++) {
                char s[48];
                hv__jv_t *o = hv__jv_obj(a);
                memset(s, 'y', len);
                s[pos] = (char)bytes[b];
                s[len] = '\0';
                assert_int_equal(hv__jv_put(a, o, "k", hv__jv_strn(a, s, len), HV__JV_KCONST), HV_OK);
                assert_same_as_json_c(o);
            }
        }
        hv_arena_reset(a);
    }
    hv_arena_free(a);
}

/* A NUL inside a string with a length, UTF-8 (two, three and four bytes), and escapes next
 * to each other and at word boundaries. */
static void jtree_writes_nul_utf8_and_runs_of_escapes(void **state) {
    static const char *const texts[] = {
        "caf\xc3\xa9", "\xe2\x82\xac 5", "\xf0\x9f\x98\x80 grin", "a\"b\\c/d\n\r\t\b\f",
        "\"\"\"\"\"\"\"\"\"\"\"\"\"\"\"\"\"", "0123456\n89abcdef\x01", "http://loinc.org/x/y/z/",
        "\x7f\x1f\x20", "",
    };
    hv_arena_t *a = hv_arena_new(0);
    hv__jv_t *arr = hv__jv_arr(a);
    size_t i;
    (void)state;
    for (i = 0; i < sizeof(texts) / sizeof(texts[0]); i++)
        assert_int_equal(hv__jv_push(a, arr, hv__jv_str(a, texts[i])), HV_OK);
    assert_int_equal(hv__jv_push(a, arr, hv__jv_strn(a, "a\0b", 3)), HV_OK);
    assert_same_as_json_c(arr);
    {
        char *t = tree_text(arr, 0);
        assert_non_null(strstr(t, "\"a\\u0000b\""));
        assert_non_null(strstr(t, "\"caf\xc3\xa9\""));
        hv_free(t);
    }
    hv_arena_free(a);
}

/* Integers in decimal (both ends of the range), decimals as the text they were made from,
 * booleans, null, empty containers. */
static void jtree_writes_numbers_booleans_and_empty_containers(void **state) {
    static const char *const decimals[] = {"0", "7.50", "-0.001", "100.5", "1e3", "12345678901234567890.5"};
    static const long long ints[] = {0, 1, -1, 2147483647LL, -2147483648LL, 9223372036854775807LL,
                                     -9223372036854775807LL - 1};
    hv_arena_t *a = hv_arena_new(0);
    hv__jv_t *o = hv__jv_obj(a), *arr = hv__jv_arr(a);
    size_t i;
    char *t;
    (void)state;
    for (i = 0; i < sizeof(decimals) / sizeof(decimals[0]); i++)
        assert_int_equal(hv__jv_push(a, arr, hv__jv_num(a, strtod(decimals[i], NULL), decimals[i])), HV_OK);
    for (i = 0; i < sizeof(ints) / sizeof(ints[0]); i++)
        assert_int_equal(hv__jv_push(a, arr, hv__jv_int(a, ints[i])), HV_OK);
    hv__jv_put(a, o, "n", arr, HV__JV_KCONST);
    hv__jv_put(a, o, "t", hv__jv_bool(a, 1), HV__JV_KCONST);
    hv__jv_put(a, o, "f", hv__jv_bool(a, 0), HV__JV_KCONST);
    hv__jv_put(a, o, "eo", hv__jv_obj(a), HV__JV_KCONST);
    hv__jv_put(a, o, "ea", hv__jv_arr(a), HV__JV_KCONST);
    assert_same_as_json_c(o);
    t = tree_text(o, 0);
    assert_non_null(strstr(t, "[0,7.50,-0.001,100.5,1e3,12345678901234567890.5,0,1,-1,2147483647,-2147483648,"
                              "9223372036854775807,-9223372036854775808]"));
    assert_non_null(strstr(t, "\"t\":true,\"f\":false,\"eo\":{},\"ea\":[]}"));
    hv_free(t);
    hv_arena_free(a);
}

/* Members keep the order they were first added in: a replaced value keeps its place, a deleted
 * member goes, one added again goes last — as json-c's objects behave. */
static void jtree_keeps_member_order_like_json_c(void **state) {
    hv_arena_t *a = hv_arena_new(0);
    hv__jv_t *o = hv__jv_obj(a);
    char *t;
    (void)state;
    hv__jv_put_str(a, o, "b", "1", 0);
    hv__jv_put_str(a, o, "a", "2", 0);
    hv__jv_put_str(a, o, "c", "3", 0);
    hv__jv_put_str(a, o, "a", "4", 0);
    assert_int_equal(hv__jv_del(o, "b"), 1);
    assert_int_equal(hv__jv_del(o, "b"), 0);
    hv__jv_put_str(a, o, "b", "5", 0);
    assert_int_equal(hv__jv_del(o, "b"), 1); /* the last member: the tail moves back */
    hv__jv_put_str(a, o, "d", "6", 0);
    assert_int_equal(hv__jv_len(o), 3);
    assert_string_equal(hv__jv_get_str(o, "a"), "4");
    assert_null(hv__jv_get(o, "b"));
    t = tree_text(o, 0);
    assert_string_equal(t, "{\"a\":\"4\",\"c\":\"3\",\"d\":\"6\"}");
    hv_free(t);
    assert_same_as_json_c(o);
    hv_arena_free(a);
}

/* Arrays grow past their first allocation and lose items by index. */
static void jtree_arrays_grow_and_delete_by_index(void **state) {
    hv_arena_t *a = hv_arena_new(0);
    hv__jv_t *arr = hv__jv_arr(a);
    long long i;
    (void)state;
    for (i = 0; i < 100; i++) assert_int_equal(hv__jv_push(a, arr, hv__jv_int(a, i)), HV_OK);
    hv__jv_del_at(arr, 0);
    hv__jv_del_at(arr, 98);
    hv__jv_del_at(arr, 500); /* out of range: nothing */
    assert_int_equal(hv__jv_len(arr), 98);
    assert_int_equal(hv__jv_at(arr, 0)->u.i, 1);
    assert_int_equal(hv__jv_at(arr, 97)->u.i, 98);
    assert_null(hv__jv_at(arr, 98));
    assert_same_as_json_c(arr);
    hv_arena_free(a);
}

/* Nesting up to HV__JV_MAX_DEPTH is written; deeper is refused with HV_ETOOBIG and leaves the
 * buffer as it was; so is a value past a capped buffer's end. */
static void jtree_refuses_too_deep_or_too_big_and_leaves_the_buffer(void **state) {
    hv_arena_t *a = hv_arena_new(0);
    hv__jv_t *root = hv__jv_arr(a), *cur = root, *big;
    hv_buf_t b;
    int d;
    (void)state;
    for (d = 0; d < HV__JV_MAX_DEPTH; d++) {
        hv__jv_t *n = hv__jv_arr(a);
        hv__jv_push(a, cur, n);
        cur = n;
    }
    hv_buf_init(&b, 0);
    hv_buf_append(&b, "pre", 3);
    assert_int_equal(hv__jv_write(root, &b, 0), HV_OK);
    assert_int_equal(b.len, 3 + 2 * (HV__JV_MAX_DEPTH + 1));
    assert_same_as_json_c(root);
    hv__jv_push(a, cur, hv__jv_arr(a)); /* one level more */
    hv_buf_reset(&b);
    hv_buf_append(&b, "pre", 3);
    assert_int_equal(hv__jv_write(root, &b, 0), HV_ETOOBIG);
    assert_int_equal(b.len, 3);
    assert_string_equal(b.data, "pre");
    hv_buf_release(&b);
    big = hv__jv_obj(a);
    for (d = 0; d < 50; d++) hv__jv_put_str(a, big, hv_arena_sprintf(a, "key%d", d), "some value", 0);
    hv_buf_init(&b, 100);
    assert_int_equal(hv__jv_write(big, &b, 0), HV_ETOOBIG);
    assert_int_equal(b.len, 0);
    hv_buf_release(&b);
    hv_arena_free(a);
}

/* Deep equality as json_object_equal: members in any order, decimals by value, an integer
 * never equal to a string or a decimal. */
static void jtree_equal_compares_as_json_c(void **state) {
    hv_arena_t *a = hv_arena_new(0);
    hv__jv_t *x = hv__jv_obj(a), *y = hv__jv_obj(a);
    (void)state;
    hv__jv_put_str(a, x, "a", "1", 0);
    hv__jv_put(a, x, "b", hv__jv_num(a, 1.5, "1.50"), 0);
    hv__jv_put(a, y, "b", hv__jv_num(a, 1.5, "1.5"), 0);
    hv__jv_put_str(a, y, "a", "1", 0);
    assert_true(hv__jv_equal(x, y, 0));
    hv__jv_put(a, y, "c", hv__jv_int(a, 1), 0);
    assert_false(hv__jv_equal(x, y, 0));
    assert_false(hv__jv_equal(hv__jv_int(a, 1), hv__jv_str(a, "1"), 0));
    assert_false(hv__jv_equal(hv__jv_int(a, 1), hv__jv_num(a, 1.0, "1.0"), 0));
    assert_true(hv__jv_equal(hv__jv_strn(a, "a\0b", 3), hv__jv_strn(a, "a\0b", 3), 0));
    assert_false(hv__jv_equal(hv__jv_strn(a, "a\0b", 3), hv__jv_strn(a, "a\0c", 3), 0));
    hv_arena_free(a);
}

/* Random trees (a fixed seed: the same trees every run) of random bytes and shapes. */
static unsigned long long rng = 0x9e3779b97f4a7c15ULL;
static unsigned rnd(unsigned n) {
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (unsigned)(rng % n);
}
static hv__jv_t *random_tree(hv_arena_t *a, int depth) {
    char s[64];
    unsigned i, n, k = depth > 4 ? rnd(4) : rnd(6);
    switch (k) {
    case 0: return hv__jv_int(a, (long long)rnd(2000000) - 1000000);
    case 1: return hv__jv_bool(a, (int)rnd(2));
    case 2:
    case 3:
        n = rnd(sizeof(s));
        for (i = 0; i < n; i++) s[i] = (char)(rnd(4) == 0 ? rnd(256) : 'a' + rnd(26));
        return hv__jv_strn(a, s, n);
    case 4: {
        hv__jv_t *arr = hv__jv_arr(a);
        n = rnd(6);
        for (i = 0; i < n; i++) hv__jv_push(a, arr, random_tree(a, depth + 1));
        return arr;
    }
    default: {
        hv__jv_t *o = hv__jv_obj(a);
        n = rnd(6);
        for (i = 0; i < n; i++) {
            unsigned kl = 1 + rnd(12), j;
            for (j = 0; j < kl; j++) s[j] = (char)(rnd(8) == 0 ? 1 + rnd(255) : 'a' + rnd(4));
            s[kl] = '\0';
            hv__jv_put(a, o, s, random_tree(a, depth + 1), 0);
        }
        return o;
    }
    }
}
static void jtree_random_trees_are_written_as_json_c_writes_them(void **state) {
    hv_arena_t *a = hv_arena_new(0);
    int i;
    (void)state;
    for (i = 0; i < 300; i++) {
        assert_same_as_json_c(random_tree(a, 0));
        hv_arena_reset(a);
    }
    hv_arena_free(a);
}

/* The public form of the result: a text mapping gives the bytes the json-c mapping writes, with
 * the outcome and the "clean" flag. */
static void jtree_text_result_equals_json_c_result(void **state) {
    const char *msg = "MSH|^~\\&|A|B|C|D|20240101120000||ADT^A01^ADT_A01|X1|P|2.5.1\r"
                      "PID|1||123^^^HOSP^MR||DOE^JANE||19800102|F\r";
    hv_map_opts_t opts;
    hv_map_result_t r, t;
    hv_error_t err;
    (void)state;
    memset(&opts, 0, sizeof(opts));
    test_map(msg, &opts, &r);
    opts.text = 1;
    memset(&t, 0, sizeof(t));
    assert_int_equal(hv_map_v2_to_fhir(msg, strlen(msg), &opts, &t, &err), HV_OK);
    assert_null(t.bundle);
    assert_null(t.outcome);
    assert_non_null(t.bundle_text);
    assert_int_equal(t.bundle_len, strlen(t.bundle_text));
    assert_string_equal(t.bundle_text, json_object_to_json_string_ext(r.bundle, JSON_C_TO_STRING_PLAIN |
                                                                                 JSON_C_TO_STRING_NOSLASHESCAPE));
    assert_string_equal(t.outcome_text, json_object_to_json_string_ext(r.outcome, JSON_C_TO_STRING_PLAIN |
                                                                                   JSON_C_TO_STRING_NOSLASHESCAPE));
    assert_int_equal(t.clean, r.clean);
    assert_int_equal(t.clean, strstr(t.outcome_text, "\"diagnostics\":\"mapped\"") != NULL);
    hv_map_result_free(&r);
    hv_map_result_free(&t);
    assert_null(t.bundle_text);
}

/* A member's tags are set by the put that gives them, kept by a put without (a tag depends on
 * the key, not the value), and a new member without tags has none; the value is replaced in
 * place either way. */
static void jtree_member_tags_follow_the_key(void **state) {
    hv_arena_t *a = hv_arena_new(0);
    hv__jv_t *o;
    static const int t1 = 1, t2 = 2;
    (void)state;
    assert_non_null(a);
    o = hv__jv_obj(a);
    assert_int_equal(hv__jv_put_tag(a, o, "code", hv__jv_str(a, "x"), HV__JV_KCONST, &t1, &t2), HV_OK);
    assert_int_equal(hv__jv_put(a, o, "system", hv__jv_str(a, "s"), HV__JV_KCONST), HV_OK);
    assert_ptr_equal(o->u.o.head->tag, &t1);
    assert_ptr_equal(o->u.o.head->tag2, &t2);
    assert_null(o->u.o.tail->tag);
    assert_int_equal(hv__jv_put(a, o, "code", hv__jv_str(a, "y"), HV__JV_KCONST), HV_OK);
    assert_ptr_equal(o->u.o.head->tag, &t1);
    assert_string_equal(hv__jv_get_str(o, "code"), "y");
    assert_int_equal(hv__jv_put_tag(a, o, "system", hv__jv_str(a, "u"), HV__JV_KCONST, &t2, NULL), HV_OK);
    assert_ptr_equal(o->u.o.tail->tag, &t2);
    assert_int_equal(hv__jv_len(o), 2);
    hv_arena_free(a);
}

int run_jtree_tests(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(jtree_escapes_every_byte_as_json_c),
        cmocka_unit_test(jtree_escapes_at_every_position_of_every_length),
        cmocka_unit_test(jtree_writes_nul_utf8_and_runs_of_escapes),
        cmocka_unit_test(jtree_writes_numbers_booleans_and_empty_containers),
        cmocka_unit_test(jtree_keeps_member_order_like_json_c),
        cmocka_unit_test(jtree_arrays_grow_and_delete_by_index),
        cmocka_unit_test(jtree_refuses_too_deep_or_too_big_and_leaves_the_buffer),
        cmocka_unit_test(jtree_equal_compares_as_json_c),
        cmocka_unit_test(jtree_random_trees_are_written_as_json_c_writes_them),
        cmocka_unit_test(jtree_text_result_equals_json_c_result),
        cmocka_unit_test(jtree_member_tags_follow_the_key),
    };
    return cmocka_run_group_tests_name("mappings/jtree", tests, NULL, NULL);
}
