/* seal.c — tests of adapters/ehr/seal.c: AES-256-GCM sealing of keys and secrets. */
#include <string.h>

#include "tests.h"

static const unsigned char key[32] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16,
                                      17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31, 32};

static void ehr_seal_round_trips_and_hides_the_text(void **state) {
    const char *secret = "-----BEGIN PRIVATE KEY-----\nMIIE...\n-----END PRIVATE KEY-----\n";
    unsigned char *sealed = NULL, *plain = NULL, *sealed2 = NULL;
    size_t n = 0, pn = 0, n2 = 0;
    (void)state;
    assert_int_equal(hv_ehr_seal(key, "c1", secret, strlen(secret), &sealed, &n), HV_OK);
    assert_int_equal(n, strlen(secret) + HV_EHR_SEAL_OVERHEAD);
    assert_null(memmem(sealed, n, "PRIVATE KEY", 11));
    assert_int_equal(hv_ehr_unseal(key, "c1", sealed, n, &plain, &pn), HV_OK);
    assert_int_equal(pn, strlen(secret));
    assert_string_equal((char *)plain, secret);
    /* A fresh nonce each time: the same text seals differently. */
    assert_int_equal(hv_ehr_seal(key, "c1", secret, strlen(secret), &sealed2, &n2), HV_OK);
    assert_true(n2 == n && memcmp(sealed, sealed2, n) != 0);
    hv_free(plain);
    hv_free(sealed);
    hv_free(sealed2);
}

static void ehr_unseal_refuses_wrong_key_aad_or_tampering(void **state) {
    unsigned char *sealed = NULL, *plain = NULL, other[32];
    size_t n = 0, pn = 0;
    (void)state;
    memcpy(other, key, 32);
    other[0] ^= 1;
    assert_int_equal(hv_ehr_seal(key, "c1", "secret", 6, &sealed, &n), HV_OK);
    assert_int_equal(hv_ehr_unseal(other, "c1", sealed, n, &plain, &pn), HV_EPERM);
    assert_int_equal(hv_ehr_unseal(key, "c2", sealed, n, &plain, &pn), HV_EPERM);
    sealed[14] ^= 0x40;
    assert_int_equal(hv_ehr_unseal(key, "c1", sealed, n, &plain, &pn), HV_EPERM);
    sealed[14] ^= 0x40;
    assert_int_equal(hv_ehr_unseal(key, "c1", sealed, 10, &plain, &pn), HV_EPERM);
    assert_null(plain);
    assert_int_equal(hv_ehr_unseal(key, "c1", sealed, n, &plain, &pn), HV_OK);
    hv_free(plain);
    hv_free(sealed);
}

int run_seal_tests(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(ehr_seal_round_trips_and_hides_the_text),
        cmocka_unit_test(ehr_unseal_refuses_wrong_key_aad_or_tampering),
    };
    return cmocka_run_group_tests_name("ehr_seal", tests, NULL, NULL);
}
