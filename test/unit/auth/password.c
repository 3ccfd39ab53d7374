/* password.c — tests of engine/auth/password.c: scrypt hashes with per-user salt. */
#include "tests.h"

#include <string.h>

static void password_hash_verifies_and_salts(void **state) {
    char h1[192], h2[192];
    (void)state;
    assert_int_equal(hv__password_hash("correct horse", 13, 1024, h1, sizeof(h1)), HV_OK);
    assert_int_equal(hv__password_hash("correct horse", 13, 1024, h2, sizeof(h2)), HV_OK);
    assert_string_not_equal(h1, h2); /* a fresh salt each time */
    assert_int_equal(strncmp(h1, "scrypt$1024$8$1$", 16), 0);
    assert_int_equal(hv__password_verify("correct horse", 13, h1), HV_OK);
    assert_int_equal(hv__password_verify("correct horse", 13, h2), HV_OK);
    assert_int_equal(hv__password_verify("correct hors", 12, h1), HV_EPERM);
    assert_int_equal(hv__password_verify("correct horsf", 13, h1), HV_EPERM);
    assert_int_equal(hv__password_verify("", 0, h1), HV_EPERM);
}

static void password_verify_uses_stored_parameters(void **state) {
    char h[192];
    (void)state;
    assert_int_equal(hv__password_hash("pw-pw-pw-pw", 11, 2048, h, sizeof(h)), HV_OK);
    assert_int_equal(strncmp(h, "scrypt$2048$", 12), 0);
    assert_int_equal(hv__password_verify("pw-pw-pw-pw", 11, h), HV_OK);
}

static void password_refuses_bad_parameters_and_malformed_hashes(void **state) {
    static const char *const bad[] = {
        "", "plain", "scrypt$1000$8$1$AAAAAAAAAAAAAAAAAAAAAA$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", /* N not 2^k */
        "scrypt$1024$0$1$AAAAAAAAAAAAAAAAAAAAAA$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        "scrypt$1024$8$1$AAAAAAAAAAAAAAAAAAAAAA$AAAA", /* short key */
        "scrypt$1073741824$8$1$AAAAAAAAAAAAAAAAAAAAAA$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", /* N too big */
    };
    char h[192];
    size_t i;
    (void)state;
    for (i = 0; i < HV_ARRAY_LEN(bad); i++) assert_int_equal(hv__password_verify("x", 1, bad[i]), HV_EINVAL);
    assert_int_equal(hv__password_hash("x", 1, 1000, h, sizeof(h)), HV_EINVAL);
    assert_int_equal(hv__password_verify("x", 1, NULL), HV_EINVAL);
}

int run_password_tests(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(password_hash_verifies_and_salts),
        cmocka_unit_test(password_verify_uses_stored_parameters),
        cmocka_unit_test(password_refuses_bad_parameters_and_malformed_hashes),
    };
    return cmocka_run_group_tests_name("auth/password", tests, NULL, NULL);
}
