/*
 * v2_cond.c — tests of mappings/v2_cond.c: conditions of mapping rows as a message sees
 * them, through override rows (docs/mappings.md) that assign a constant under a condition:
 * AND/OR chains evaluated with their short-circuit jumps, and field operands that are read
 * once per segment and never carried over to the next message.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tests.h"

#include "mappings/mappings_int.h"

/* PID-7 and PID-8 valued, PID-99 not; PID-3 has one repetition. */
#define MSG(dob, sex)                                                                                    \
    "MSH|^~\\&|SENDAPP|SENDFAC|RECAPP|RECFAC|20240101120000+0000||ADT^A01^ADT_A01|MSG001|P|2.5.1\r"      \
    "PID|1||12345^^^HOSP^MR||DOE^JANE||" dob "|" sex "\r"

/* Each case: a condition and whether it holds for PID-8 = F (and for PID-8 = M). */
static const struct {
    const char *cond;
    int if_f, if_m;
} cases[] = {
    {"@PID-8 'F eq @PID-7 valued and", 1, 0},
    {"@PID-8 'M eq @PID-7 valued and", 0, 1},
    {"@PID-8 'M eq @PID-7 valued or", 1, 1},
    {"@PID-8 'F eq @PID-99 valued or", 1, 0},
    {"@PID-8 'M eq @PID-7 valued and not", 1, 0},
    {"@PID-8 'M eq @PID-99 valued and @PID-5 valued or", 1, 1},
    {"@PID-8 'F eq @PID-8 'M eq @PID-7 valued and or", 1, 1},
    {"@PID-8 'M eq @PID-8 'F eq @PID-99 valued and or", 0, 1},
    {"@PID-8 'M eq @PID-7 valued and @PID-5 valued and", 0, 1},
    {"@PID-3 count #1 eq @PID-8 'f eq and", 1, 0},
    {"@PID-99 valued @PID-8 'F 'M in2 and not @PID-7 valued and", 1, 1},
    {"@PID-8 'X eq @PID-8 'Y eq or @PID-8 'F eq or", 1, 0},
    /* A leading test (hv__cond_t.guard) that decides alone, and ones that must not. */
    {"@PID-8 'F 'U in2", 1, 0},
    {"@PID-8 'F 'U in2 @PID-7 valued and", 1, 0},
    {"@PID-8 'F eq @PID-7 valued @PID-99 valued or and", 1, 0},
    {"@PID-8 'f eq @PID-7 valued and @PID-3 count #1 eq and", 1, 0},
    {"@PID-8 'M eq not", 1, 0},
    {"@PID-8 'M eq @PID-99 valued or", 0, 1},
    {"@PID-8 'X eq @PID-99 valued eq", 1, 1},
    /* "@X valued [not] @Y valued [not] and|or", evaluated without the stack. */
    {"@PID-7 valued @PID-99 valued or", 1, 1},
    {"@PID-7 valued @PID-99 valued and", 0, 0},
    {"@PID-7 valued not @PID-99 valued not or", 1, 1},
    {"@PID-99 valued not @PID-7 valued and", 1, 1},
    {"@PID-99 valued @PID-7 valued not or", 0, 0},
    {"@PID-99 valued not @PID-5 valued not and", 0, 0},
};

/* Writes the override file: case i assigns "c<i>" to Patient.name[i + 5].text. */
static void write_rows(const char *path) {
    FILE *f = fopen(path, "w");
    size_t i;
    assert_non_null(f);
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        fprintf(f, "map\tPID[Patient]\t%zu\t0\tST\t%s\tname[%zu].text\tstring\t\t\tc%zu\n", 900 + i, cases[i].cond,
                i + 5, i);
    fclose(f);
}

/* Whether the Patient has a name whose text is t. */
static int has_name_text(json_object *bundle, const char *t) {
    json_object *p = test_entry(bundle, "Patient", 0, NULL), *names = NULL;
    size_t i;
    if (p == NULL || !json_object_object_get_ex(p, "name", &names)) return 0;
    for (i = 0; i < json_object_array_length(names); i++) {
        const char *x = hv_json_get_str(json_object_array_get_idx(names, i), "text");
        if (x != NULL && strcmp(x, t) == 0) return 1;
    }
    return 0;
}

static void check(const char *msg, const hv_map_opts_t *o, int female) {
    hv_map_result_t r;
    size_t i;
    test_map(msg, o, &r);
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char t[16];
        int want = female ? cases[i].if_f : cases[i].if_m;
        snprintf(t, sizeof(t), "c%zu", i);
        if (has_name_text(r.bundle, t) != want)
            fail_msg("PID-8 %s: '%s' should be %s", female ? "F" : "M", cases[i].cond, want ? "true" : "false");
    }
    hv_map_result_free(&r);
}

static void v2_cond_and_or_chains_short_circuit_to_the_same_result(void **state) {
    hv_map_opts_t o;
    char path[] = "/tmp/hv-map-cond-XXXXXX";
    int fd = mkstemp(path);
    (void)state;
    assert_true(fd >= 0);
    close(fd);
    write_rows(path);
    memset(&o, 0, sizeof(o));
    o.override_file = path;
    check(MSG("19800102", "F"), &o, 1);
    check(MSG("19800102", "M"), &o, 0);
    unlink(path);
}

/* The field operands of one message's segments are cached by their address: the next
 * message, even in the same buffer with its fields at other offsets (a shorter PID-7 leaves
 * the previous message's 'F' where PID-8 was), reads its own values. */
static void v2_cond_operands_are_not_carried_to_the_next_message(void **state) {
    hv_map_opts_t o;
    char path[] = "/tmp/hv-map-cond-XXXXXX";
    char buf[256];
    int fd = mkstemp(path), k;
    (void)state;
    assert_true(fd >= 0);
    close(fd);
    write_rows(path);
    memset(&o, 0, sizeof(o));
    o.override_file = path;
    for (k = 0; k < 4; k++) {
        snprintf(buf, sizeof(buf), "%s", k % 2 ? MSG("1980", "M") : MSG("19800102", "F"));
        check(buf, &o, k % 2 == 0);
    }
    unlink(path);
}

/* The compiler marks a leading path-against-literals test only where its falsity makes the
 * whole condition false (every operator over the stack's bottom is an "and"). */
static void v2_cond_guard_is_found_only_where_it_is_necessary(void **state) {
    static const struct {
        const char *cond;
        unsigned guard, all;
    } g[] = {
        {"@OBX-2 'NM eq", 3, 1},
        {"@OBX-2 'ST 'FT 'TX in3", 5, 1},
        {"@OBX-2 'SN eq @OBX-5.1 '<> eq not and @OBX-5.3 '- eq and", 3, 0},
        {"@OBX-2 'ED eq @OBX-5.4 'Base64 eq and", 3, 0},
        {"@.1 'A eq @.2 valued and", 3, 0},
        {"@OBX-2 'NM eq not", 0, 0},
        {"@OBX-2 'NM eq @OBX-5 valued or", 0, 0},
        {"@OBX-2 'NM eq @OBX-5 valued eq", 0, 0},
        {"@OBX-2 'NM eq @OBX-5 valued and not", 0, 0},
        {"@OBX-2 'NM eq 'A 'B in2", 0, 0},
        {"@OBX-5 count #1 le @OBX-2 'NA eq or", 0, 0},
        {"@OBX-2 valued", 0, 0},
        {"@OBX-2 @OBX-3 eq", 0, 0},
    };
    hv_arena_t *a = hv_arena_new(4096);
    size_t i;
    (void)state;
    assert_non_null(a);
    for (i = 0; i < sizeof(g) / sizeof(g[0]); i++) {
        const hv__cond_t *cc = NULL;
        assert_int_equal(hv__map_cond_compile(a, g[i].cond, &cc), HV_OK);
        assert_non_null(cc);
        assert_false(cc->never);
        if (cc->guard != g[i].guard || cc->guard_all != g[i].all)
            fail_msg("'%s': guard %u (whole %u), expected %u (%u)", g[i].cond, cc->guard, cc->guard_all,
                     g[i].guard, g[i].all);
    }
    hv_arena_free(a);
}

/* Conditions of one run of rows for the guard switch tests: guards on PID-8 (members),
 * one on PID-7 (another operand), one that would need a 33rd literal, one without a guard
 * (a guard of 30 literals would overflow the condition's stack: never true, no switch needed).
 * The values PID-8 takes: F, f, M, FX and empty; want[] is each condition's value for them. */
#define SW_LITS14 "'A1 'A2 'A3 'A4 'A5 'A6 'A7 'A8 'A9 'A10 'A11 'A12 'A13 'A14 in14"
#define SW_LITS15 "'A15 'A16 'A17 'A18 'A19 'A20 'A21 'A22 'A23 'A24 'A25 'A26 'A27 'A28 'M in15"
static const char *const sw_sex[] = {"F", "f", "M", "FX", ""};
static const struct {
    const char *cond;
    int member;
    int want[5];
} sw_rows[] = {
    {"@PID-8 'F eq", 1, {1, 1, 0, 0, 0}},
    {"@PID-8 'f 'M in2", 1, {1, 1, 1, 0, 0}},
    {"@PID-8 'FX eq", 1, {0, 0, 0, 1, 0}},
    {"@PID-7 '19800102 eq", 0, {1, 1, 1, 1, 1}},
    {"@PID-8 'F eq @PID-7 valued and", 1, {1, 1, 0, 0, 0}},
    {"@PID-8 'F eq @PID-99 valued and", 1, {0, 0, 0, 0, 0}},
    {"@PID-8 " SW_LITS14, 1, {0, 0, 0, 0, 0}},
    {"@PID-8 " SW_LITS15, 1, {0, 0, 1, 0, 0}},
    {"@PID-8 'Z 'F in2", 0, {1, 1, 0, 0, 0}},
    {"@PID-8 'M eq", 1, {0, 0, 1, 0, 0}},
    {"@PID-8 'F eq not", 0, {0, 0, 1, 1, 1}},
};

/* The switch of a run takes the rows guarding on its operand while its literals fit
 * (byte-equal literals share a bit, 'F and 'f do not), and leaves the others out. */
static void v2_cond_guard_switch_takes_the_rows_guarding_on_one_field(void **state) {
    hv_arena_t *a = hv_arena_new(4096);
    hv__map_row_t rows[sizeof(sw_rows) / sizeof(sw_rows[0])];
    const hv__guard_sw_t *sw = NULL;
    size_t i, n = sizeof(rows) / sizeof(rows[0]);
    (void)state;
    assert_non_null(a);
    memset(rows, 0, sizeof(rows));
    for (i = 0; i < n; i++) {
        rows[i].cond = sw_rows[i].cond;
        rows[i].run = (unsigned)(n - i);
        assert_int_equal(hv__map_cond_compile(a, sw_rows[i].cond, &rows[i].cc), HV_OK);
    }
    assert_int_equal(hv__map_guard_build(a, rows, n), HV_OK);
    for (i = 0; i < n; i++) {
        if ((rows[i].gsw != NULL) != sw_rows[i].member)
            fail_msg("'%s' should %sbe a member of the switch", sw_rows[i].cond, sw_rows[i].member ? "" : "not ");
        if (rows[i].gsw == NULL) continue;
        if (sw == NULL) sw = rows[i].gsw;
        assert_ptr_equal(rows[i].gsw, sw);
    }
    assert_non_null(sw);
    assert_int_equal(sw->n, HV__GUARD_SW_MAX);
    assert_int_equal(rows[0].gmask, rows[4].gmask);
    assert_int_equal(rows[0].gmask, rows[5].gmask);
    assert_int_equal(__builtin_popcount(rows[0].gmask), 1);
    assert_int_equal(__builtin_popcount(rows[1].gmask), 2);
    assert_int_equal(rows[1].gmask & rows[0].gmask, 0); /* 'f is a literal of its own */
    assert_int_equal(rows[9].gmask & rows[7].gmask, rows[9].gmask); /* 'M shares its bit */
    hv_arena_free(a);
}

/* Through the engine, each row of a run with a switch is applied exactly when its
 * condition holds, for operands in either case, one no literal names, and an empty one. */
static void v2_cond_guard_switch_applies_each_row_as_its_condition_would(void **state) {
    hv_map_opts_t o;
    char path[] = "/tmp/hv-map-cond-XXXXXX";
    char msg[512];
    int fd = mkstemp(path);
    size_t i, v;
    FILE *f;
    (void)state;
    assert_true(fd >= 0);
    close(fd);
    f = fopen(path, "w");
    assert_non_null(f);
    for (i = 0; i < sizeof(sw_rows) / sizeof(sw_rows[0]); i++)
        fprintf(f, "map\tPID[Patient]\t%zu\t0\tST\t%s\tname[%zu].text\tstring\t\t\tg%zu\n", 950 + i, sw_rows[i].cond,
                i + 40, i);
    fclose(f);
    memset(&o, 0, sizeof(o));
    o.override_file = path;
    for (v = 0; v < sizeof(sw_sex) / sizeof(sw_sex[0]); v++) {
        hv_map_result_t r;
        snprintf(msg, sizeof(msg), MSG("19800102", "%s"), sw_sex[v]);
        test_map(msg, &o, &r);
        for (i = 0; i < sizeof(sw_rows) / sizeof(sw_rows[0]); i++) {
            char t[16];
            snprintf(t, sizeof(t), "g%zu", i);
            if (has_name_text(r.bundle, t) != sw_rows[i].want[v])
                fail_msg("PID-8 '%s': '%s' should be %s", sw_sex[v], sw_rows[i].cond,
                         sw_rows[i].want[v] ? "true" : "false");
        }
        hv_map_result_free(&r);
    }
    unlink(path);
}

int run_v2_cond_tests(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(v2_cond_and_or_chains_short_circuit_to_the_same_result),
        cmocka_unit_test(v2_cond_operands_are_not_carried_to_the_next_message),
        cmocka_unit_test(v2_cond_guard_is_found_only_where_it_is_necessary),
        cmocka_unit_test(v2_cond_guard_switch_takes_the_rows_guarding_on_one_field),
        cmocka_unit_test(v2_cond_guard_switch_applies_each_row_as_its_condition_would),
    };
    return cmocka_run_group_tests_name("mappings/v2_cond", tests, NULL, NULL);
}
