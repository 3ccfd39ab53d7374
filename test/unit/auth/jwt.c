/* jwt.c — tests of engine/auth/jwt.c and the token validation in tokens.c:
 * base64url strictness, JWS sign/verify per algorithm, JWK round trips, and the
 * defects validation must refuse. */
#include "tests.h"

#include <json-c/json.h>
#include <stdio.h>
#include <string.h>

static void b64url_round_trip_and_strictness(void **state) {
    unsigned char in[64], *out = NULL;
    size_t n, len, i;
    (void)state;
    for (i = 0; i < sizeof(in); i++) in[i] = (unsigned char)(i * 37 + 11);
    for (n = 0; n <= sizeof(in); n++) {
        hv_buf_t b;
        hv_buf_init(&b, 0);
        assert_int_equal(hv__b64url_encode(in, n, &b), HV_OK);
        assert_null(b.data ? strpbrk(b.data, "=+/") : NULL);
        assert_int_equal(hv__b64url_decode(b.data ? b.data : "", b.len, &out, &len), HV_OK);
        assert_int_equal(len, n);
        assert_memory_equal(out, in, n);
        hv_free(out);
        hv_buf_release(&b);
    }
    assert_int_equal(hv__b64url_decode("QQ==", 4, &out, &len), HV_EINVAL); /* padding */
    assert_int_equal(hv__b64url_decode("Q", 1, &out, &len), HV_EINVAL);    /* impossible length */
    assert_int_equal(hv__b64url_decode("QR", 2, &out, &len), HV_EINVAL);   /* non-zero spare bits */
    assert_int_equal(hv__b64url_decode("a+b/", 4, &out, &len), HV_EINVAL); /* base64, not base64url */
    assert_int_equal(hv__b64url_decode("QQ", 2, &out, &len), HV_OK);
    assert_int_equal(len, 1);
    assert_int_equal(out[0], 'A');
    hv_free(out);
}

static struct json_object *claims(int64_t exp_delta) {
    struct json_object *c = json_object_new_object();
    int64_t now = (int64_t)(hv_now_ms() / 1000);
    hv_json_set_str(c, "iss", "https://iss");
    hv_json_set_str(c, "aud", "https://iss/fhir");
    hv_json_set_str(c, "sub", "alice");
    hv_json_set_int(c, "iat", now);
    hv_json_set_int(c, "exp", now + exp_delta);
    hv_json_set_str(c, "jti", "j1");
    return c;
}

static void jws_sign_verify_each_algorithm(void **state) {
    static const char *const algs[] = {"ES256", "ES384", "RS256", "RS384"};
    size_t i;
    (void)state;
    for (i = 0; i < HV_ARRAY_LEN(algs); i++) {
        EVP_PKEY *k = NULL, *pub = NULL;
        struct json_object *c = claims(60), *jwk = NULL;
        hv_buf_t tok;
        hv__jwt_t j;
        hv_error_t err;
        hv_buf_init(&tok, 0);
        assert_int_equal(hv__key_generate(algs[i], &k), HV_OK);
        assert_int_equal(hv__jwt_sign(k, algs[i], "kid1", c, &tok), HV_OK);
        assert_int_equal(hv__jwt_decode(tok.data, tok.len, &j), HV_OK);
        assert_string_equal(j.alg, algs[i]);
        assert_string_equal(j.kid, "kid1");
        /* verify with the public key rebuilt from its JWK, as a peer would */
        assert_int_equal(hv__jwk_from_pkey(k, "kid1", algs[i], &jwk), HV_OK);
        assert_null(hv_json_get_str(jwk, "d"));
        assert_int_equal(hv__jwk_to_pkey(jwk, &pub), HV_OK);
        assert_int_equal(hv__jws_verify(pub, algs[i], tok.data, j.signed_len, j.sig, j.siglen), HV_OK);
        assert_int_equal(hv__jwt_check_claims(&j, "https://iss", "https://iss/fhir", (int64_t)(hv_now_ms() / 1000), 0, 0, &err), HV_OK);
        /* the same signature under another algorithm of the family is refused */
        assert_int_equal(hv__jws_verify(pub, algs[i][2] == '2' ? (algs[i][0] == 'E' ? "ES384" : "RS384")
                                                                : (algs[i][0] == 'E' ? "ES256" : "RS256"),
                                        tok.data, j.signed_len, j.sig, j.siglen), HV_EPERM);
        /* one flipped byte in the signed part is refused */
        tok.data[5] ^= 1;
        assert_int_equal(hv__jws_verify(pub, algs[i], tok.data, j.signed_len, j.sig, j.siglen), HV_EPERM);
        hv__jwt_free(&j);
        json_object_put(jwk);
        json_object_put(c);
        EVP_PKEY_free(k);
        EVP_PKEY_free(pub);
        hv_buf_release(&tok);
    }
}

static void key_must_fit_algorithm(void **state) {
    EVP_PKEY *ec = NULL, *rsa = NULL;
    (void)state;
    assert_int_equal(hv__key_generate("ES256", &ec), HV_OK);
    assert_int_equal(hv__key_generate("RS256", &rsa), HV_OK);
    assert_true(hv__jwt_key_fits(ec, "ES256"));
    assert_false(hv__jwt_key_fits(ec, "ES384"));
    assert_false(hv__jwt_key_fits(ec, "RS256"));
    assert_false(hv__jwt_key_fits(rsa, "ES256"));
    assert_true(hv__jwt_key_fits(rsa, "RS384"));
    assert_false(hv__jwt_key_fits(rsa, "HS256"));
    assert_false(hv__jwt_key_fits(rsa, "none"));
    assert_int_equal(hv__key_generate("none", &ec), HV_EINVAL);
    EVP_PKEY_free(ec);
    EVP_PKEY_free(rsa);
}

static void jwt_decode_refuses_malformed(void **state) {
    static const char *const bad[] = {
        "", "a", "a.b", "a.b.c.d", "e30.e30", "!!.e30.", "e30.!!.", "W10.e30.",   /* header is an array */
        "e30.e30.", /* header without alg */
        "eyJhbGciOiJFUzI1NiJ9.eyJhIjoxfQ.!!",                                           /* bad signature b64 */
        "eyJhbGciOiJFUzI1NiIsImNyaXQiOlsiZXhwIl19.e30.",                                  /* crit */
        "eyJhbGciOiJFUzI1NiJ9eA.e30.", /* trailing garbage after the header object */
    };
    size_t i;
    (void)state;
    for (i = 0; i < HV_ARRAY_LEN(bad); i++) {
        hv__jwt_t j;
        if (hv__jwt_decode(bad[i], strlen(bad[i]), &j) == HV_OK) {
            hv__jwt_free(&j);
            fail_msg("accepted '%s'", bad[i]);
        }
    }
}

static void claims_time_checks(void **state) {
    int64_t now = (int64_t)(hv_now_ms() / 1000);
    struct {
        int64_t exp, nbf, iat, leeway, maxlife;
        int want;
    } t[] = {
        {now + 10, 0, 0, 0, 0, HV_OK},
        {now - 10, 0, 0, 0, 0, HV_EPERM},       /* expired */
        {now - 10, 0, 0, 30, 0, HV_OK},         /* within leeway */
        {now + 10, now + 100, 0, 30, 0, HV_EPERM}, /* not yet valid */
        {now + 10, now + 20, 0, 30, 0, HV_OK},
        {now + 10, 0, now + 100, 30, 0, HV_EPERM}, /* issued in the future */
        {now + 600, 0, now, 30, 300, HV_EPERM},    /* lives too long */
        {now + 300, 0, now, 30, 300, HV_OK},
        {now + 900, 0, 0, 30, 300, HV_EPERM},      /* no iat: exp from now */
    };
    size_t i;
    (void)state;
    for (i = 0; i < HV_ARRAY_LEN(t); i++) {
        hv__jwt_t j;
        hv_error_t err;
        memset(&j, 0, sizeof(j));
        j.claims = json_object_new_object();
        hv_json_set_int(j.claims, "exp", t[i].exp);
        if (t[i].nbf) hv_json_set_int(j.claims, "nbf", t[i].nbf);
        if (t[i].iat) hv_json_set_int(j.claims, "iat", t[i].iat);
        if (hv__jwt_check_claims(&j, NULL, NULL, now, t[i].leeway, t[i].maxlife, &err) != t[i].want)
            fail_msg("case %zu", i);
        json_object_put(j.claims);
    }
    {
        /* exp must be a number; aud may be an array; iss must match */
        hv__jwt_t j;
        hv_error_t err;
        struct json_object *aud = json_object_new_array();
        memset(&j, 0, sizeof(j));
        j.claims = json_object_new_object();
        hv_json_set_str(j.claims, "exp", "9999999999");
        assert_int_equal(hv__jwt_check_claims(&j, NULL, NULL, now, 0, 0, &err), HV_EPERM);
        hv_json_set_int(j.claims, "exp", now + 10);
        json_object_array_add(aud, json_object_new_string("x"));
        json_object_array_add(aud, json_object_new_string("https://a/fhir"));
        hv_json_set(j.claims, "aud", aud);
        hv_json_set_str(j.claims, "iss", "https://a");
        assert_int_equal(hv__jwt_check_claims(&j, "https://a", "https://a/fhir", now, 0, 0, &err), HV_OK);
        assert_int_equal(hv__jwt_check_claims(&j, "https://a", "https://b/fhir", now, 0, 0, &err), HV_EPERM);
        assert_int_equal(hv__jwt_check_claims(&j, "https://a/", "https://a/fhir", now, 0, 0, &err), HV_EPERM);
        json_object_put(j.claims);
    }
}

static void jwk_import_refuses_weak_or_off_curve_keys(void **state) {
    static const char *const bad[] = {
        "{\"kty\":\"RSA\",\"n\":\"AQAB\",\"e\":\"AQAB\"}", /* tiny modulus */
        "{\"kty\":\"EC\",\"crv\":\"P-256\",\"x\":\"AQ\",\"y\":\"AQ\"}", /* not on the curve */
        "{\"kty\":\"EC\",\"crv\":\"P-521\",\"x\":\"AQ\",\"y\":\"AQ\"}",
        "{\"kty\":\"oct\",\"k\":\"c2VjcmV0\"}",
        "{\"kty\":\"RSA\"}",
        "{}",
    };
    size_t i;
    (void)state;
    for (i = 0; i < HV_ARRAY_LEN(bad); i++) {
        struct json_object *o = json_tokener_parse(bad[i]);
        EVP_PKEY *k = NULL;
        assert_non_null(o);
        if (hv__jwk_to_pkey(o, &k) == HV_OK) {
            EVP_PKEY_free(k);
            fail_msg("accepted %s", bad[i]);
        }
        json_object_put(o);
    }
}

/* A module state with one ES256 key, as start-up makes it. */
static hv__auth_t *test_auth(void) {
    hv__auth_t *a = hv_calloc(1, sizeof(*a));
    snprintf(a->issuer, sizeof(a->issuer), "https://iss");
    snprintf(a->audience, sizeof(a->audience), "https://iss/fhir");
    snprintf(a->alg, sizeof(a->alg), "ES256");
    a->access_ttl = 60;
    a->leeway = 5;
    a->revoked = hv__strset_new(64);
    hv__key_generate("ES256", &a->keys[0].pkey);
    snprintf(a->keys[0].kid, sizeof(a->keys[0].kid), "k1");
    snprintf(a->keys[0].alg, sizeof(a->keys[0].alg), "ES256");
    a->keys[0].current = 1;
    a->nkeys = 1;
    return a;
}

static void test_auth_free(hv__auth_t *a) {
    hv__auth_keys_free(a);
    hv__auth_vcache_free(a);
    hv__strset_free(a->revoked);
    hv_free(a);
}

static void token_issue_validate_and_revoke(void **state) {
    hv__auth_t *a = test_auth();
    hv_auth_principal_t *p = hv_malloc(sizeof(*p));
    hv_buf_t tok;
    hv_error_t err;
    char jti[33], key[80];
    (void)state;
    hv_buf_init(&tok, 0);
    assert_int_equal(hv__auth_token_issue(a, "alice", HV_AUTH_ROLE_CLINICIAN, "user/*.rs", "s1", "", "", 60, &tok, jti), HV_OK);
    assert_int_equal(hv__auth_token_validate(a, tok.data, tok.len, p, &err), HV_OK);
    assert_string_equal(p->sub, "alice");
    assert_string_equal(p->sid, "s1");
    assert_int_equal(p->role, HV_AUTH_ROLE_CLINICIAN);
    assert_int_equal(p->scopes.n, 1);
    /* revoked jti, ended session, disabled user */
    snprintf(key, sizeof(key), "j:%s", jti);
    assert_int_equal(hv__strset_add(a->revoked, key, (int64_t)(hv_now_ms() / 1000) + 60, 0), HV_OK);
    assert_int_equal(hv__auth_token_validate(a, tok.data, tok.len, p, &err), HV_EPERM);
    hv__strset_free(a->revoked);
    a->revoked = hv__strset_new(64);
    hv__strset_add(a->revoked, "s:s1", (int64_t)(hv_now_ms() / 1000) + 60, 0);
    assert_int_equal(hv__auth_token_validate(a, tok.data, tok.len, p, &err), HV_EPERM);
    hv__strset_free(a->revoked);
    a->revoked = hv__strset_new(64);
    hv__strset_add(a->revoked, "u:alice", (int64_t)(hv_now_ms() / 1000) + 60, 0);
    assert_int_equal(hv__auth_token_validate(a, tok.data, tok.len, p, &err), HV_EPERM);
    hv__strset_free(a->revoked);
    a->revoked = hv__strset_new(64);
    assert_int_equal(hv__auth_token_validate(a, tok.data, tok.len, p, &err), HV_OK);
    /* a tampered copy of a cached token does not hit the cache */
    {
        char *t2 = hv_strdup(tok.data);
        t2[tok.len - 2] = t2[tok.len - 2] == 'A' ? 'B' : 'A';
        assert_int_equal(hv__auth_token_validate(a, t2, tok.len, p, &err), HV_EPERM);
        hv_free(t2);
    }
    /* another issuer or audience (configuration is fixed while running: the cache is cleared here) */
    hv__auth_vcache_free(a);
    snprintf(a->audience, sizeof(a->audience), "https://other/fhir");
    assert_int_equal(hv__auth_token_validate(a, tok.data, tok.len, p, &err), HV_EPERM);
    snprintf(a->audience, sizeof(a->audience), "https://iss/fhir");
    snprintf(a->issuer, sizeof(a->issuer), "https://other");
    hv__auth_vcache_free(a);
    assert_int_equal(hv__auth_token_validate(a, tok.data, tok.len, p, &err), HV_EPERM);
    snprintf(a->issuer, sizeof(a->issuer), "https://iss");
    /* the key's algorithm wins over the header's: re-label the key and it fails */
    snprintf(a->keys[0].alg, sizeof(a->keys[0].alg), "RS256");
    hv__auth_vcache_free(a);
    assert_int_equal(hv__auth_token_validate(a, tok.data, tok.len, p, &err), HV_EPERM);
    snprintf(a->keys[0].alg, sizeof(a->keys[0].alg), "ES256");
    /* expired beyond the leeway */
    hv_buf_reset(&tok);
    assert_int_equal(hv__auth_token_issue(a, "alice", 0, "", "", "", "", -10, &tok, NULL), HV_OK);
    assert_int_equal(hv__auth_token_validate(a, tok.data, tok.len, p, &err), HV_EPERM);
    assert_string_equal(err.location, "exp");
    hv_buf_release(&tok);
    hv_free(p);
    test_auth_free(a);
}

int run_jwt_tests(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(b64url_round_trip_and_strictness),
        cmocka_unit_test(jws_sign_verify_each_algorithm),
        cmocka_unit_test(key_must_fit_algorithm),
        cmocka_unit_test(jwt_decode_refuses_malformed),
        cmocka_unit_test(claims_time_checks),
        cmocka_unit_test(jwk_import_refuses_weak_or_off_curve_keys),
        cmocka_unit_test(token_issue_validate_and_revoke),
    };
    return cmocka_run_group_tests_name("auth/jwt", tests, NULL, NULL);
}
