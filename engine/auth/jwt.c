/*
 * jwt.c — JSON Web Tokens (RFC 7519) in JWS compact serialization (RFC 7515 §7.1),
 * signed with ES256/ES384 (ECDSA P-256/P-384, RFC 7518 §3.4) or RS256/RS384
 * (RSASSA-PKCS1-v1_5, RFC 7518 §3.3), and JSON Web Keys (RFC 7517) for the
 * public keys we publish and the ones clients register.
 *
 * Verification never trusts the token to choose its algorithm: the caller says
 * which algorithm it expects for the key it found, and a header whose "alg"
 * differs (including "none", RFC 8725 §3.1-3.2) is refused before any crypto.
 * Tokens are capped at HV__JWT_MAX bytes and their JSON parts must be objects.
 */
#include "config.h"
#include "engine/auth/auth_int.h"

#include <json-c/json.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/param_build.h>
#include <openssl/rsa.h>
#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <limits.h>
#include <string.h>

static const char b64url[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

int hv__b64url_encode(const void *p, size_t n, hv_buf_t *out) {
    const unsigned char *s = p;
    size_t i;
    char q[4];
    int rc = HV_OK;
    for (i = 0; i + 2 < n && rc == HV_OK; i += 3) {
        q[0] = b64url[s[i] >> 2];
        q[1] = b64url[((s[i] & 3) << 4) | (s[i + 1] >> 4)];
        q[2] = b64url[((s[i + 1] & 15) << 2) | (s[i + 2] >> 6)];
        q[3] = b64url[s[i + 2] & 63];
        rc = hv_buf_append(out, q, 4);
    }
    if (rc == HV_OK && n - i == 1) {
        q[0] = b64url[s[i] >> 2];
        q[1] = b64url[(s[i] & 3) << 4];
        rc = hv_buf_append(out, q, 2);
    } else if (rc == HV_OK && n - i == 2) {
        q[0] = b64url[s[i] >> 2];
        q[1] = b64url[((s[i] & 3) << 4) | (s[i + 1] >> 4)];
        q[2] = b64url[(s[i + 1] & 15) << 2];
        rc = hv_buf_append(out, q, 3);
    }
    return rc;
}

/* Decoding table: the 6-bit value of each base64url character, -1 for others. */
static signed char b64dec[256];
static int b64dec_ready;

static void b64dec_init(void) {
    int i;
    for (i = 0; i < 256; i++) b64dec[i] = -1;
    for (i = 0; i < 64; i++) b64dec[(unsigned char)b64url[i]] = (signed char)i;
    b64dec_ready = 1;
}

static int b64val(unsigned char c) { return b64dec[c]; }

/* Strict base64url without padding (RFC 7515 §2): no '=', no whitespace, and the
 * unused low bits of the last character must be zero, so each value has one spelling. */
int hv__b64url_decode(const char *s, size_t n, unsigned char **out, size_t *outlen) {
    unsigned char *b;
    size_t i, k = 0;
    uint32_t acc = 0;
    int bits = 0;
    if (n % 4 == 1) return HV_EINVAL;
    if (!b64dec_ready) b64dec_init(); /* idempotent: a race writes the same bytes */
    b = hv_malloc(n * 3 / 4 + 1);
    if (b == NULL) return HV_ENOMEM;
    for (i = 0; i < n; i++) {
        int v = b64val((unsigned char)s[i]);
        if (v < 0) {
            hv_free(b);
            return HV_EINVAL;
        }
        acc = (acc << 6) | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            b[k++] = (unsigned char)(acc >> bits);
        }
    }
    if (bits > 0 && (acc & ((1u << bits) - 1)) != 0) {
        hv_free(b);
        return HV_EINVAL;
    }
    b[k] = 0;
    *out = b;
    *outlen = k;
    return HV_OK;
}

/* Algorithm table: digest, key type, curve and signature size. */
typedef struct alginfo {
    const char *name;
    int ec;          /* 1 ECDSA, 0 RSA */
    const char *curve;
    size_t coord;    /* bytes of r and s */
    const char *md;
} alginfo_t;

static const alginfo_t algs[] = {
    {"ES256", 1, "prime256v1", 32, "SHA256"},
    {"ES384", 1, "secp384r1", 48, "SHA384"},
    {"RS256", 0, NULL, 0, "SHA256"},
    {"RS384", 0, NULL, 0, "SHA384"},
};

static const alginfo_t *find_alg(const char *name) {
    size_t i;
    for (i = 0; name != NULL && i < HV_ARRAY_LEN(algs); i++)
        if (strcmp(algs[i].name, name) == 0) return &algs[i];
    return NULL;
}

/* Does key suit alg (type, curve, RSA size >= 2048)? */
int hv__jwt_key_fits(EVP_PKEY *key, const char *alg) {
    const alginfo_t *a = find_alg(alg);
    char curve[64];
    size_t len = 0;
    if (a == NULL || key == NULL) return 0;
    if (a->ec) {
        if (EVP_PKEY_get_base_id(key) != EVP_PKEY_EC) return 0;
        if (!EVP_PKEY_get_utf8_string_param(key, OSSL_PKEY_PARAM_GROUP_NAME, curve, sizeof(curve), &len))
            return 0;
        return strcmp(curve, a->curve) == 0;
    }
    return EVP_PKEY_get_base_id(key) == EVP_PKEY_RSA && EVP_PKEY_get_bits(key) >= 2048;
}

int hv__key_generate(const char *alg, EVP_PKEY **out) {
    const alginfo_t *a = find_alg(alg);
    EVP_PKEY *k;
    if (a == NULL) return HV_EINVAL;
    k = a->ec ? EVP_PKEY_Q_keygen(NULL, NULL, "EC", a->curve) : EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048);
    if (k == NULL) return HV_EIO;
    *out = k;
    return HV_OK;
}

/* Raw r||s (JOSE) <-> DER ECDSA-Sig-Value (OpenSSL). */
static int ecdsa_der_to_raw(const unsigned char *der, size_t n, size_t coord, unsigned char *raw) {
    const unsigned char *p = der;
    ECDSA_SIG *sig = d2i_ECDSA_SIG(NULL, &p, (long)n);
    const BIGNUM *r, *s;
    int ok;
    if (sig == NULL) return HV_EIO;
    ECDSA_SIG_get0(sig, &r, &s);
    ok = BN_bn2binpad(r, raw, (int)coord) == (int)coord && BN_bn2binpad(s, raw + coord, (int)coord) == (int)coord;
    ECDSA_SIG_free(sig);
    return ok ? HV_OK : HV_EIO;
}

static int ecdsa_raw_to_der(const unsigned char *raw, size_t coord, unsigned char **der, int *dlen) {
    ECDSA_SIG *sig = ECDSA_SIG_new();
    BIGNUM *r = BN_bin2bn(raw, (int)coord, NULL), *s = BN_bin2bn(raw + coord, (int)coord, NULL);
    int rc = HV_EIO;
    if (sig == NULL || r == NULL || s == NULL || !ECDSA_SIG_set0(sig, r, s)) {
        BN_free(r);
        BN_free(s);
        goto out;
    }
    *der = NULL;
    *dlen = i2d_ECDSA_SIG(sig, der);
    if (*dlen > 0) rc = HV_OK;
out:
    ECDSA_SIG_free(sig);
    return rc;
}

int hv__jws_sign(EVP_PKEY *key, const char *alg, const char *input, size_t n, hv_buf_t *out) {
    const alginfo_t *a = find_alg(alg);
    EVP_MD_CTX *ctx = NULL;
    unsigned char *sig = NULL, raw[132];
    size_t slen = 0;
    int rc = HV_EIO;
    if (a == NULL || !hv__jwt_key_fits(key, alg)) return HV_EINVAL;
    ctx = EVP_MD_CTX_new();
    if (ctx == NULL || EVP_DigestSignInit_ex(ctx, NULL, a->md, NULL, NULL, key, NULL) != 1) goto out;
    if (EVP_DigestSign(ctx, NULL, &slen, (const unsigned char *)input, n) != 1) goto out;
    sig = hv_malloc(slen);
    if (sig == NULL) {
        rc = HV_ENOMEM;
        goto out;
    }
    if (EVP_DigestSign(ctx, sig, &slen, (const unsigned char *)input, n) != 1) goto out;
    if (a->ec) {
        if (ecdsa_der_to_raw(sig, slen, a->coord, raw) != HV_OK) goto out;
        rc = hv__b64url_encode(raw, 2 * a->coord, out);
    } else {
        rc = hv__b64url_encode(sig, slen, out);
    }
out:
    hv_free(sig);
    EVP_MD_CTX_free(ctx);
    return rc;
}

int hv__jws_verify(EVP_PKEY *key, const char *alg, const char *input, size_t n,
                   const unsigned char *sig, size_t slen) {
    const alginfo_t *a = find_alg(alg);
    EVP_MD_CTX *ctx = NULL;
    unsigned char *der = NULL;
    int dlen = 0, rc = HV_EPERM;
    if (a == NULL || !hv__jwt_key_fits(key, alg)) return HV_EPERM;
    if (a->ec) {
        /* RFC 7518 §3.4: exactly 2 * coordinate size; a DER signature is refused. */
        if (slen != 2 * a->coord) return HV_EPERM;
        if (ecdsa_raw_to_der(sig, a->coord, &der, &dlen) != HV_OK) return HV_EPERM;
        sig = der;
        slen = (size_t)dlen;
    }
    ctx = EVP_MD_CTX_new();
    if (ctx == NULL || EVP_DigestVerifyInit_ex(ctx, NULL, a->md, NULL, NULL, key, NULL) != 1) goto out;
    if (EVP_DigestVerify(ctx, sig, slen, (const unsigned char *)input, n) == 1) rc = HV_OK;
out:
    EVP_MD_CTX_free(ctx);
    OPENSSL_free(der);
    return rc;
}

int hv__jwt_sign(EVP_PKEY *key, const char *alg, const char *kid, struct json_object *claims,
                 hv_buf_t *out) {
    struct json_object *h = json_object_new_object();
    const char *txt;
    size_t mark;
    int rc;
    if (h == NULL) return HV_ENOMEM;
    hv_json_set_str(h, "alg", alg);
    hv_json_set_str(h, "typ", "JWT");
    if (kid) hv_json_set_str(h, "kid", kid);
    txt = json_object_to_json_string_ext(h, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE);
    mark = out->len;
    rc = hv__b64url_encode(txt, strlen(txt), out);
    json_object_put(h);
    if (rc == HV_OK) rc = hv_buf_putc(out, '.');
    txt = json_object_to_json_string_ext(claims, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE);
    if (rc == HV_OK) rc = hv__b64url_encode(txt, strlen(txt), out);
    if (rc == HV_OK) {
        size_t siglen = out->len - mark;
        char *input = hv_strndup(out->data + mark, siglen);
        if (input == NULL) return HV_ENOMEM;
        rc = hv_buf_putc(out, '.');
        if (rc == HV_OK) rc = hv__jws_sign(key, alg, input, siglen, out);
        hv_free(input);
    }
    return rc;
}

static int decode_json_part(const char *s, size_t n, struct json_object **out) {
    unsigned char *raw = NULL;
    size_t len = 0;
    struct json_object *o = NULL;
    struct json_tokener *tk;
    int rc = hv__b64url_decode(s, n, &raw, &len);
    if (rc != HV_OK) return HV_EPROTO;
    tk = json_tokener_new_ex(16);
    if (tk == NULL) {
        hv_free(raw);
        return HV_ENOMEM;
    }
    json_tokener_set_flags(tk, JSON_TOKENER_STRICT);
    o = json_tokener_parse_ex(tk, (const char *)raw, (int)len);
    /* the whole part must be one JSON object, nothing after it */
    if (o == NULL || json_tokener_get_error(tk) != json_tokener_success ||
        json_tokener_get_parse_end(tk) != len || !json_object_is_type(o, json_type_object)) {
        json_object_put(o);
        o = NULL;
        rc = HV_EPROTO;
    }
    json_tokener_free(tk);
    hv_free(raw);
    if (o != NULL) *out = o;
    return rc;
}

void hv__jwt_free(hv__jwt_t *j) {
    if (j == NULL) return;
    json_object_put(j->header);
    json_object_put(j->claims);
    hv_free(j->sig);
    memset(j, 0, sizeof(*j));
}

int hv__jwt_decode(const char *tok, size_t n, hv__jwt_t *out) {
    const char *d1, *d2;
    hv__jwt_t j;
    int rc;
    memset(&j, 0, sizeof(j));
    if (tok == NULL || n == 0 || n > HV__JWT_MAX) return HV_EPROTO;
    d1 = memchr(tok, '.', n);
    if (d1 == NULL) return HV_EPROTO;
    d2 = memchr(d1 + 1, '.', (size_t)(tok + n - d1 - 1));
    if (d2 == NULL || memchr(d2 + 1, '.', (size_t)(tok + n - d2 - 1)) != NULL) return HV_EPROTO;
    if ((rc = decode_json_part(tok, (size_t)(d1 - tok), &j.header)) != HV_OK) goto fail;
    if ((rc = decode_json_part(d1 + 1, (size_t)(d2 - d1 - 1), &j.claims)) != HV_OK) goto fail;
    if (hv__b64url_decode(d2 + 1, (size_t)(tok + n - d2 - 1), &j.sig, &j.siglen) != HV_OK) {
        rc = HV_EPROTO;
        goto fail;
    }
    j.signed_len = (size_t)(d2 - tok);
    j.alg = hv_json_get_str(j.header, "alg");
    j.kid = hv_json_get_str(j.header, "kid");
    if (j.alg == NULL) {
        rc = HV_EPROTO;
        goto fail;
    }
    /* RFC 7515 §4.1.11: we understand no extensions */
    {
        struct json_object *crit;
        if (json_object_object_get_ex(j.header, "crit", &crit)) {
            rc = HV_EPROTO;
            goto fail;
        }
    }
    *out = j;
    return HV_OK;
fail:
    hv__jwt_free(&j);
    return rc;
}

static int get_num(struct json_object *o, const char *k, int64_t *v) {
    struct json_object *x;
    if (!json_object_object_get_ex(o, k, &x)) return HV_ENOTFOUND;
    if (!json_object_is_type(x, json_type_int)) return HV_EINVAL;
    *v = json_object_get_int64(x);
    return HV_OK;
}

/* aud may be a string or an array of strings (RFC 7519 §4.1.3). */
static int aud_has(struct json_object *claims, const char *aud) {
    struct json_object *a;
    size_t i;
    if (!json_object_object_get_ex(claims, "aud", &a)) return 0;
    if (json_object_is_type(a, json_type_string)) return strcmp(json_object_get_string(a), aud) == 0;
    if (!json_object_is_type(a, json_type_array)) return 0;
    for (i = 0; i < json_object_array_length(a); i++) {
        struct json_object *x = json_object_array_get_idx(a, i);
        if (json_object_is_type(x, json_type_string) && strcmp(json_object_get_string(x), aud) == 0)
            return 1;
    }
    return 0;
}

int hv__jwt_check_claims(const hv__jwt_t *j, const char *iss, const char *aud, int64_t now,
                         int64_t leeway, int64_t max_lifetime, hv_error_t *err) {
    int64_t exp = 0, nbf = 0, iat = 0;
    const char *s;
    if (get_num(j->claims, "exp", &exp) != HV_OK) {
        hv_error_set(err, HV_EPERM, "exp", "the token has no valid exp");
        return HV_EPERM;
    }
    if (now > exp + leeway) {
        hv_error_set(err, HV_EPERM, "exp", "the token has expired");
        return HV_EPERM;
    }
    if (get_num(j->claims, "nbf", &nbf) == HV_EINVAL || (nbf != 0 && now + leeway < nbf)) {
        hv_error_set(err, HV_EPERM, "nbf", "the token is not valid yet");
        return HV_EPERM;
    }
    if (get_num(j->claims, "iat", &iat) == HV_EINVAL || (iat != 0 && iat > now + leeway)) {
        hv_error_set(err, HV_EPERM, "iat", "the token was issued in the future");
        return HV_EPERM;
    }
    if (max_lifetime > 0 && exp - (iat ? iat : now) > max_lifetime) {
        hv_error_set(err, HV_EPERM, "exp", "the token lives longer than allowed");
        return HV_EPERM;
    }
    if (max_lifetime > 0 && exp > now + max_lifetime + leeway) {
        hv_error_set(err, HV_EPERM, "exp", "the token lives longer than allowed");
        return HV_EPERM;
    }
    if (iss != NULL && ((s = hv_json_get_str(j->claims, "iss")) == NULL || strcmp(s, iss) != 0)) {
        hv_error_set(err, HV_EPERM, "iss", "wrong issuer");
        return HV_EPERM;
    }
    if (aud != NULL && !aud_has(j->claims, aud)) {
        hv_error_set(err, HV_EPERM, "aud", "wrong audience");
        return HV_EPERM;
    }
    return HV_OK;
}

/* ---- JWK (RFC 7517, RFC 7518 §6) ---- */

static BIGNUM *jwk_bn(struct json_object *jwk, const char *name) {
    const char *s = hv_json_get_str(jwk, name);
    unsigned char *raw = NULL;
    size_t n = 0;
    BIGNUM *bn;
    if (s == NULL || strlen(s) > 2048 || hv__b64url_decode(s, strlen(s), &raw, &n) != HV_OK) return NULL;
    bn = n ? BN_bin2bn(raw, (int)n, NULL) : NULL;
    hv_free(raw);
    return bn;
}

int hv__jwk_to_pkey(struct json_object *jwk, EVP_PKEY **out) {
    const char *kty = hv_json_get_str(jwk, "kty");
    OSSL_PARAM_BLD *bld = OSSL_PARAM_BLD_new();
    OSSL_PARAM *params = NULL;
    EVP_PKEY_CTX *ctx = NULL;
    EVP_PKEY *k = NULL;
    BIGNUM *a = NULL, *b = NULL;
    unsigned char *pub = NULL;
    int rc = HV_EINVAL;
    if (bld == NULL || kty == NULL) goto out;
    if (strcmp(kty, "RSA") == 0) {
        a = jwk_bn(jwk, "n");
        b = jwk_bn(jwk, "e");
        if (a == NULL || b == NULL || BN_num_bits(a) < 2048 || BN_num_bits(a) > 8192) goto out;
        if (!OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_N, a) ||
            !OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_E, b))
            goto out;
        ctx = EVP_PKEY_CTX_new_from_name(NULL, "RSA", NULL);
    } else if (strcmp(kty, "EC") == 0) {
        const char *crv = hv_json_get_str(jwk, "crv"), *group;
        size_t coord, pl;
        if (crv == NULL) goto out;
        if (strcmp(crv, "P-256") == 0) {
            group = "prime256v1";
            coord = 32;
        } else if (strcmp(crv, "P-384") == 0) {
            group = "secp384r1";
            coord = 48;
        } else {
            goto out;
        }
        a = jwk_bn(jwk, "x");
        b = jwk_bn(jwk, "y");
        if (a == NULL || b == NULL || (size_t)BN_num_bytes(a) > coord || (size_t)BN_num_bytes(b) > coord) goto out;
        pl = 1 + 2 * coord;
        pub = hv_malloc(pl);
        if (pub == NULL) goto out;
        pub[0] = 4; /* SEC 1 §2.3.3 uncompressed point */
        BN_bn2binpad(a, pub + 1, (int)coord);
        BN_bn2binpad(b, pub + 1 + coord, (int)coord);
        if (!OSSL_PARAM_BLD_push_utf8_string(bld, OSSL_PKEY_PARAM_GROUP_NAME, group, 0) ||
            !OSSL_PARAM_BLD_push_octet_string(bld, OSSL_PKEY_PARAM_PUB_KEY, pub, pl))
            goto out;
        ctx = EVP_PKEY_CTX_new_from_name(NULL, "EC", NULL);
    } else {
        goto out;
    }
    params = OSSL_PARAM_BLD_to_param(bld);
    if (ctx == NULL || params == NULL || EVP_PKEY_fromdata_init(ctx) != 1 ||
        EVP_PKEY_fromdata(ctx, &k, EVP_PKEY_PUBLIC_KEY, params) != 1 || k == NULL)
        goto out;
    if (strcmp(kty, "EC") == 0) {
        /* the point must be on the curve (invalid-curve attacks) */
        EVP_PKEY_CTX *c2 = EVP_PKEY_CTX_new_from_pkey(NULL, k, NULL);
        int ok = c2 != NULL && EVP_PKEY_public_check(c2) == 1;
        EVP_PKEY_CTX_free(c2);
        if (!ok) goto out;
    }
    *out = k;
    k = NULL;
    rc = HV_OK;
out:
    EVP_PKEY_free(k);
    EVP_PKEY_CTX_free(ctx);
    OSSL_PARAM_free(params);
    OSSL_PARAM_BLD_free(bld);
    BN_free(a);
    BN_free(b);
    hv_free(pub);
    return rc;
}

static int put_bn(struct json_object *o, const char *name, const BIGNUM *bn, size_t pad) {
    unsigned char buf[1024];
    hv_buf_t b;
    int n = pad ? BN_bn2binpad(bn, buf, (int)pad) : BN_bn2bin(bn, buf);
    int rc;
    if (n <= 0 || (size_t)n > sizeof(buf)) return HV_EINVAL;
    hv_buf_init(&b, 0);
    rc = hv__b64url_encode(buf, (size_t)n, &b);
    if (rc == HV_OK) rc = hv_json_set_str(o, name, b.data ? b.data : "");
    hv_buf_release(&b);
    return rc;
}

int hv__jwk_from_pkey(EVP_PKEY *k, const char *kid, const char *alg, struct json_object **out) {
    struct json_object *o = json_object_new_object();
    BIGNUM *a = NULL, *b = NULL;
    int rc = HV_EINVAL;
    if (o == NULL) return HV_ENOMEM;
    if (EVP_PKEY_get_base_id(k) == EVP_PKEY_RSA) {
        if (!EVP_PKEY_get_bn_param(k, OSSL_PKEY_PARAM_RSA_N, &a) ||
            !EVP_PKEY_get_bn_param(k, OSSL_PKEY_PARAM_RSA_E, &b))
            goto out;
        hv_json_set_str(o, "kty", "RSA");
        if ((rc = put_bn(o, "n", a, 0)) != HV_OK || (rc = put_bn(o, "e", b, 0)) != HV_OK) goto out;
    } else {
        size_t coord = strcmp(alg, "ES384") == 0 ? 48 : 32;
        if (!EVP_PKEY_get_bn_param(k, OSSL_PKEY_PARAM_EC_PUB_X, &a) ||
            !EVP_PKEY_get_bn_param(k, OSSL_PKEY_PARAM_EC_PUB_Y, &b))
            goto out;
        hv_json_set_str(o, "kty", "EC");
        hv_json_set_str(o, "crv", coord == 48 ? "P-384" : "P-256");
        if ((rc = put_bn(o, "x", a, coord)) != HV_OK || (rc = put_bn(o, "y", b, coord)) != HV_OK) goto out;
    }
    hv_json_set_str(o, "use", "sig");
    hv_json_set_str(o, "alg", alg);
    hv_json_set_str(o, "kid", kid);
    *out = o;
    o = NULL;
    rc = HV_OK;
out:
    json_object_put(o);
    BN_free(a);
    BN_free(b);
    return rc;
}

int hv_auth_jwt_sign_pem(const char *pem, size_t pem_len, const char *alg, const char *kid,
                         struct json_object *claims, hv_buf_t *out) {
    BIO *bio = NULL;
    EVP_PKEY *key = NULL;
    int rc = HV_EINVAL;
    if (pem == NULL || pem_len == 0 || pem_len > INT_MAX || claims == NULL) return HV_EINVAL;
    bio = BIO_new_mem_buf(pem, (int)pem_len);
    if (bio == NULL) return HV_ENOMEM;
    key = PEM_read_bio_PrivateKey(bio, NULL, NULL, NULL);
    if (key == NULL || !hv__jwt_key_fits(key, alg)) goto out;
    rc = hv__jwt_sign(key, alg, kid, claims, out);
out:
    ERR_clear_error();
    EVP_PKEY_free(key);
    BIO_free(bio);
    return rc;
}
