/* search_fold.c — unit tests of fhir/search_fold.c (the string search normalization) and of
 * the fold upgrade that re-folds a store indexed before it (fhir/search_reindex.c). */
#include "tests.h"

#include <json-c/json.h>
#include <stdio.h>
#include <string.h>
#include <unistr.h>

#include "fhir/search_int.h"

static const char *fold(const char *s)
{
    static char out[1024];
    hv__search_normalize(s, out, sizeof(out));
    return out;
}

/* Values that must fold alike (one row per class), and the folded form. */
static void search_fold_matches_case_and_accent_variants(void **state)
{
    static const struct {
        const char *forms[4];
        const char *folded;
    } cases[] = {
        {{"Müller", "MULLER", "mu\xcc\x88ller", "MÜLLER"}, "muller"}, /* precomposed, NFD, upper */
        {{"Straße", "STRASSE", "strasse", "STRAẞE"}, "strasse"},       /* full case folding */
        {{"ΣΊΣΥΦΟΣ", "σίσυφος", "σισυφος", "Σίσυφος"}, "σισυφοσ"},      /* final sigma, tonos */
        {{"İstanbul", "ISTANBUL", "istanbul", "Istanbul"}, "istanbul"}, /* İ -> i + U+0307, a mark */
        {{"Łódź", "ŁODZ", "łodz", "Ło\xcc\x81" "dz\xcc\x81"}, "łodz"},      /* Ł does not decompose */
        {{"Ærøskøbing", "ærøskøbing", "ÆRØSKØBING", NULL}, "ærøskøbing"}, /* neither do Æ and Ø */
        {{"ﬁne", "FINE", "ＦＩＮＥ", NULL}, "fine"},                       /* compatibility forms */
        {{"Nguyễn", "NGUYEN", "Nguyê\xcc\x83n", NULL}, "nguyen"},       /* two marks on one letter */
        {{"が", "か", NULL, NULL}, "か"},                                  /* dakuten is a mark */
        {{"Владимир", "ВЛАДИМИР", NULL, NULL}, "владимир"},
    };
    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        for (size_t k = 0; k < 4 && cases[i].forms[k] != NULL; k++)
            if (strcmp(fold(cases[i].forms[k]), cases[i].folded) != 0)
                fail_msg("fold(\"%s\") = \"%s\", want \"%s\"", cases[i].forms[k], fold(cases[i].forms[k]),
                         cases[i].folded);
}

/* What the fold does not equate: letters that do not decompose and the dotless i. */
static void search_fold_keeps_letters_that_do_not_decompose(void **state)
{
    static const char *const distinct[][2] = {
        {"Ærøskøbing", "aeroskobing"}, {"Łódź", "lodz"}, {"ıstanbul", "istanbul"}, {"þór", "thor"},
    };
    (void)state;
    for (size_t i = 0; i < sizeof(distinct) / sizeof(distinct[0]); i++) {
        char a[1024];
        memcpy(a, fold(distinct[i][0]), sizeof(a));
        if (strcmp(a, fold(distinct[i][1])) == 0)
            fail_msg("\"%s\" and \"%s\" fold alike (\"%s\")", distinct[i][0], distinct[i][1], a);
    }
}

/* Invalid UTF-8 becomes U+FFFD byte by byte; the output is valid UTF-8. */
static void search_fold_replaces_invalid_utf8(void **state)
{
    static const char *const bad[] = {"\xff", "ab\xc3", "\xc3(", "\xe2\x82", "\xed\xa0\x80", "\xf4\x90\x80\x80",
                                      "A\x80Z"};
    (void)state;
    assert_string_equal(fold("A\x80Z"), "a\xef\xbf\xbdz");
    assert_string_equal(fold("ab\xc3"), "ab\xef\xbf\xbd");
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        const char *o = fold(bad[i]);
        if (u8_check((const uint8_t *)o, strlen(o)) != NULL)
            fail_msg("fold of invalid input %zu is not valid UTF-8", i);
    }
}

/* Truncation at the cap cuts between code points, and the output is a prefix of the whole fold. */
/* The unfolded value of :exact: as written (no case fold, no normalization form), each
 * invalid byte as U+FFFD, cut after the last whole code point that fits. */
static void search_raw_keeps_case_and_marks_and_cuts_at_a_code_point(void **state)
{
    char in[1024], out[HV__SEARCH_STR_MAX];
    size_t n = 0, len;
    (void)state;
    assert_int_equal(hv__search_raw("Mu\xcc\x88LLER", out, sizeof(out)), 8);
    assert_string_equal(out, "Mu\xcc\x88LLER");
    assert_int_equal(hv__search_raw("M\xc3\xbcller", out, sizeof(out)), 7);
    assert_string_equal(out, "M\xc3\xbcller");
    assert_int_equal(hv__search_raw("Ab\xff" "cd\xc3", out, sizeof(out)), 10);
    assert_string_equal(out, "Ab\xef\xbf\xbd" "cd\xef\xbf\xbd");
    for (int i = 0; i < 150; i++) { /* "Жé" 150 times: 600 bytes */
        memcpy(in + n, "Жé", 4);
        n += 4;
    }
    in[n] = '\0';
    for (size_t cap = 1; cap <= sizeof(out); cap++) {
        len = hv__search_raw(in, out, cap);
        assert_true(len < cap && len + 2 >= cap - 1);
        assert_int_equal(len % 2, 0);
        assert_int_equal(strlen(out), len);
        assert_null(u8_check((const uint8_t *)out, len));
        assert_memory_equal(out, in, len);
    }
    /* An ASCII prefix (copied without decoding) cut by the cap, or cut before the code
     * point after it: "abc" then "Ж" (2 bytes). */
    for (size_t cap = 1; cap <= 7; cap++) {
        static const size_t want[] = {0, 1, 2, 3, 3, 5, 5};
        len = hv__search_raw("abc\xd0\x96", out, cap);
        assert_int_equal(len, want[cap - 1]);
        assert_int_equal(strlen(out), len);
        assert_memory_equal(out, "abc\xd0\x96", len);
    }
}

static void search_fold_truncates_at_a_code_point(void **state)
{
    char in[1024], whole[2048], out[256];
    size_t n = 0, len;
    (void)state;
    for (int i = 0; i < 150; i++) { /* "Жé" 150 times: 3 bytes folded per pair, 600 bytes in */
        memcpy(in + n, "Жé", 4);
        n += 4;
    }
    in[n] = '\0';
    hv__search_normalize(in, whole, sizeof(whole));
    for (size_t cap = 1; cap <= sizeof(out); cap++) {
        len = hv__search_normalize(in, out, cap);
        assert_true(len < cap);
        assert_int_equal(strlen(out), len);
        assert_null(u8_check((const uint8_t *)out, len));
        assert_memory_equal(out, whole, len);
        assert_true(len + 2 >= cap - 1); /* nothing dropped but a last code point that did not fit */
    }
    /* A value exactly at the index's cap (255 bytes folded) is kept whole. */
    memset(in, 'A', 255);
    in[255] = '\0';
    assert_int_equal(hv__search_normalize(in, out, sizeof(out)), 255);
}

/*
 * The fast paths (ASCII loop, the U+0080..U+1FFF table, chunks) give what the library
 * gives for the whole string, and folding is stable: every code point of the BMP and
 * a sample of the others, alone and between other characters.
 */
static void search_fold_fast_paths_equal_the_library(void **state)
{
    char a[512], b[512], c[512];
    (void)state;
    for (ucs4_t cp = 1; cp < 0x110000; cp += cp < 0x10000 ? 1 : 61) {
        uint8_t u[8];
        char in[64];
        int n;
        if (cp >= 0xd800 && cp < 0xe000)
            continue;
        n = u8_uctomb(u, cp, sizeof(u));
        assert_true(n > 0);
        snprintf(in, sizeof(in), "A%.*s\xc3\x89\xe4\xb8\x80%.*sz", n, (const char *)u, n, (const char *)u);
        hv__search_normalize(in, a, sizeof(a));
        hv__search_normalize_ref(in, b, sizeof(b));
        if (strcmp(a, b) != 0)
            fail_msg("U+%04X: fast \"%s\", library \"%s\"", (unsigned)cp, a, b);
        hv__search_normalize(a, c, sizeof(c));
        if (strcmp(a, c) != 0)
            fail_msg("U+%04X: fold is not stable (\"%s\" then \"%s\")", (unsigned)cp, a, c);
    }
}


/*
 * A store indexed by the old fold (Latin-1 only: "Ærø" as "aro", Greek as it was):
 * the upgrade reindexes the resources whose JSON is not pure ASCII — and only those
 * — moves its mark to -1, and does nothing the second time.
 */
static void search_fold_upgrade_refolds_non_ascii_resources(void **state)
{
    hv_db_t *db = store_test_db();
    size_t n = 99;
    (void)state;
    store_test_put(db, 1, "{\"resourceType\":\"Patient\",\"id\":\"a\",\"name\":[{\"family\":\"Ærøskøbing\"}]}");
    store_test_put(db, 1, "{\"resourceType\":\"Patient\",\"id\":\"g\",\"name\":[{\"family\":\"ΣΊΣΥΦΟΣ\"}]}");
    store_test_put(db, 1, "{\"resourceType\":\"Patient\",\"id\":\"e\",\"name\":[{\"family\":\"Stra\\u00dfe\"}]}");
    store_test_put(db, 1, "{\"resourceType\":\"Patient\",\"id\":\"s\",\"name\":[{\"family\":\"Smith\"}]}");
    /* what the old fold wrote */
    assert_int_equal(hv_db_exec(db, "UPDATE sp_str SET value = 'aroskobing' WHERE id = 'a' AND code = 'family';"
                                    "UPDATE sp_str SET value = 'ΣΊΣΥΦΟΣ' WHERE id = 'g' AND code = 'family';"
                                    "UPDATE sp_str SET value = 'strase' WHERE id = 'e' AND code = 'family';"
                                    "UPDATE sp_str SET value = 'smith-old' WHERE id = 's' AND code = 'family';"
                                    "UPDATE sp_fold SET after = 0"),
                     HV_OK);
    assert_int_equal(hv__search_fold_upgrade(db, &n), HV_OK);
    assert_int_equal(n, 3);
    assert_int_equal(store_test_count(db, "SELECT COUNT(*) FROM sp_str WHERE code = 'family' AND value = 'ærøskøbing' AND"
                               " id = 'a'"),
                     1);
    assert_int_equal(store_test_count(db, "SELECT COUNT(*) FROM sp_str WHERE code = 'family' AND value = 'σισυφοσ' AND id = 'g'"),
                     1);
    assert_int_equal(store_test_count(db, "SELECT COUNT(*) FROM sp_str WHERE code = 'family' AND value = 'strasse' AND id = 'e'"),
                     1);
    /* a pure-ASCII resource folds as before: not reindexed (its doctored row stays) */
    assert_int_equal(store_test_count(db, "SELECT COUNT(*) FROM sp_str WHERE code = 'family' AND value = 'smith-old'"), 1);
    assert_int_equal(store_test_count(db, "SELECT after FROM sp_fold"), -1);
    assert_int_equal(hv__search_fold_upgrade(db, &n), HV_OK);
    assert_int_equal(n, 0);
    store_test_db_close(db);
}

/* A new store needs no upgrade: the pass finds nothing and marks itself done. */
static void search_fold_upgrade_of_an_empty_store_marks_done(void **state)
{
    hv_db_t *db = store_test_db();
    size_t n = 99;
    (void)state;
    assert_int_equal(store_test_count(db, "SELECT after FROM sp_fold"), 0);
    assert_int_equal(hv__search_fold_upgrade(db, &n), HV_OK);
    assert_int_equal(n, 0);
    assert_int_equal(store_test_count(db, "SELECT after FROM sp_fold"), -1);
    store_test_db_close(db);
}

int run_search_fold_tests(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(search_fold_matches_case_and_accent_variants),
        cmocka_unit_test(search_fold_keeps_letters_that_do_not_decompose),
        cmocka_unit_test(search_fold_replaces_invalid_utf8),
        cmocka_unit_test(search_fold_truncates_at_a_code_point),
        cmocka_unit_test(search_raw_keeps_case_and_marks_and_cuts_at_a_code_point),
        cmocka_unit_test(search_fold_fast_paths_equal_the_library),
        cmocka_unit_test(search_fold_upgrade_refolds_non_ascii_resources),
        cmocka_unit_test(search_fold_upgrade_of_an_empty_store_marks_done),
    };
    return cmocka_run_group_tests_name("fhir_search_fold", tests, NULL, NULL);
}
