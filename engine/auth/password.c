/*
 * password.c — password hashing with scrypt (RFC 7914) through OpenSSL's
 * EVP_PBE_scrypt, with a per-user random salt and a constant-time comparison.
 *
 * Stored format (one text column):
 *
 *   scrypt$<N>$<r>$<p>$<salt, base64url>$<32-byte key, base64url>
 *
 * The parameters are stored with each hash, so raising auth.password.scrypt_n
 * applies to new and changed passwords while old hashes keep verifying.
 * N = 2^15, r = 8, p = 1 (32 MiB, tens of milliseconds) is the default, the
 * interactive-login figure of RFC 7914 §2 scaled to current hardware.
 */
#include "config.h"
#include "engine/auth/auth_int.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SALT_BYTES 16
#define KEY_BYTES 32
#define R_PARAM 8
#define P_PARAM 1

static int derive(const char *pw, size_t n, const unsigned char *salt, size_t slen, uint64_t N,
                  uint64_t r, uint64_t p, unsigned char *key) {
    /* maxmem must cover 128 * N * r * p plus the working vectors */
    uint64_t maxmem = 128 * N * r * p + 128 * r * p + 4096 * 1024;
    if (EVP_PBE_scrypt(pw, n, salt, slen, N, r, p, maxmem, key, KEY_BYTES) != 1) return HV_EIO;
    return HV_OK;
}

static int valid_n(uint64_t N) { return N >= 2 && N <= (1u << 22) && (N & (N - 1)) == 0; }

int hv__password_hash(const char *password, size_t n, uint64_t N, char *out, size_t outlen) {
    unsigned char salt[SALT_BYTES], key[KEY_BYTES];
    hv_buf_t b;
    int rc;
    if (!valid_n(N) || n > HV__PASSWORD_MAX) return HV_EINVAL;
    if ((rc = hv_random_secure(salt, sizeof(salt))) != HV_OK) return rc;
    if ((rc = derive(password, n, salt, sizeof(salt), N, R_PARAM, P_PARAM, key)) != HV_OK) return rc;
    hv_buf_init(&b, outlen - 1);
    rc = hv_buf_printf(&b, "scrypt$%llu$%d$%d$", (unsigned long long)N, R_PARAM, P_PARAM);
    if (rc == HV_OK) rc = hv__b64url_encode(salt, sizeof(salt), &b);
    if (rc == HV_OK) rc = hv_buf_putc(&b, '$');
    if (rc == HV_OK) rc = hv__b64url_encode(key, sizeof(key), &b);
    if (rc == HV_OK) memcpy(out, b.data, b.len + 1);
    hv_buf_release(&b);
    OPENSSL_cleanse(key, sizeof(key));
    return rc;
}

int hv__password_verify(const char *password, size_t n, const char *stored) {
    unsigned long long N, r, p;
    char salt64[64], key64[64];
    unsigned char *salt = NULL, *want = NULL, got[KEY_BYTES];
    size_t slen = 0, wlen = 0;
    int rc = HV_EINVAL;
    if (stored == NULL || n > HV__PASSWORD_MAX) return HV_EINVAL;
    if (sscanf(stored, "scrypt$%llu$%llu$%llu$%63[A-Za-z0-9_-]$%63[A-Za-z0-9_-]", &N, &r, &p, salt64,
               key64) != 5)
        return HV_EINVAL;
    if (!valid_n(N) || r == 0 || r > 32 || p == 0 || p > 16) return HV_EINVAL;
    if (hv__b64url_decode(salt64, strlen(salt64), &salt, &slen) != HV_OK) goto out;
    if (hv__b64url_decode(key64, strlen(key64), &want, &wlen) != HV_OK || wlen != KEY_BYTES) goto out;
    if ((rc = derive(password, n, salt, slen, N, r, p, got)) != HV_OK) goto out;
    rc = CRYPTO_memcmp(got, want, KEY_BYTES) == 0 ? HV_OK : HV_EPERM;
out:
    OPENSSL_cleanse(got, sizeof(got));
    hv_free(salt);
    hv_free(want);
    return rc;
}

void hv__password_dummy(const char *password, size_t n, uint64_t N) {
    static const unsigned char salt[SALT_BYTES] = {0};
    unsigned char key[KEY_BYTES];
    if (!valid_n(N) || n > HV__PASSWORD_MAX) return;
    (void)derive(password, n, salt, sizeof(salt), N, R_PARAM, P_PARAM, key);
}
