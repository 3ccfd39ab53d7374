/*
 * seal.c — private keys and client secrets at rest: AES-256-GCM (NIST SP
 * 800-38D) with OpenSSL's EVP interface. Format of a sealed value:
 *
 *   | 0x01 (version) | nonce (12 bytes, random) | ciphertext (n bytes) | tag (16 bytes) |
 *
 * The additional authenticated data is the connection id, so a sealed key moved
 * to another connection's row does not open.
 */
#include "config.h"
#include "adapters/ehr/ehr.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <string.h>

int hv_ehr_seal(const unsigned char key[32], const char *aad, const void *plain, size_t n,
                unsigned char **out, size_t *outlen) {
    EVP_CIPHER_CTX *ctx = NULL;
    unsigned char *buf = NULL;
    int len = 0, rc = HV_EIO;
    if (n > (1u << 24)) return HV_ETOOBIG;
    buf = hv_malloc(n + HV_EHR_SEAL_OVERHEAD);
    if (buf == NULL) return HV_ENOMEM;
    buf[0] = 1;
    if (hv_random_secure(buf + 1, 12) != HV_OK) goto out;
    ctx = EVP_CIPHER_CTX_new();
    if (ctx == NULL || EVP_EncryptInit_ex(ctx, EVP_aes_256_gcm(), NULL, key, buf + 1) != 1) goto out;
    if (aad != NULL && EVP_EncryptUpdate(ctx, NULL, &len, (const unsigned char *)aad, (int)strlen(aad)) != 1)
        goto out;
    if (n > 0 && EVP_EncryptUpdate(ctx, buf + 13, &len, plain, (int)n) != 1) goto out;
    if (EVP_EncryptFinal_ex(ctx, buf + 13 + n, &len) != 1) goto out;
    if (EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, 16, buf + 13 + n) != 1) goto out;
    *out = buf;
    *outlen = n + HV_EHR_SEAL_OVERHEAD;
    buf = NULL;
    rc = HV_OK;
out:
    EVP_CIPHER_CTX_free(ctx);
    hv_free(buf);
    return rc;
}

int hv_ehr_unseal(const unsigned char key[32], const char *aad, const unsigned char *in, size_t n,
                  unsigned char **out, size_t *outlen) {
    EVP_CIPHER_CTX *ctx = NULL;
    unsigned char *buf = NULL, tag[16];
    size_t cn;
    int len = 0, rc = HV_EPERM;
    if (in == NULL || n < HV_EHR_SEAL_OVERHEAD || in[0] != 1) return HV_EPERM;
    cn = n - HV_EHR_SEAL_OVERHEAD;
    buf = hv_malloc(cn + 1);
    if (buf == NULL) return HV_ENOMEM;
    memcpy(tag, in + 13 + cn, 16);
    ctx = EVP_CIPHER_CTX_new();
    if (ctx == NULL || EVP_DecryptInit_ex(ctx, EVP_aes_256_gcm(), NULL, key, in + 1) != 1) goto out;
    if (aad != NULL && EVP_DecryptUpdate(ctx, NULL, &len, (const unsigned char *)aad, (int)strlen(aad)) != 1)
        goto out;
    if (cn > 0 && EVP_DecryptUpdate(ctx, buf, &len, in + 13, (int)cn) != 1) goto out;
    if (EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_TAG, 16, tag) != 1) goto out;
    if (EVP_DecryptFinal_ex(ctx, buf + cn, &len) != 1) goto out;
    buf[cn] = '\0';
    *out = buf;
    *outlen = cn;
    buf = NULL;
    rc = HV_OK;
out:
    if (buf != NULL) {
        OPENSSL_cleanse(buf, cn + 1);
        hv_free(buf);
    }
    EVP_CIPHER_CTX_free(ctx);
    return rc;
}
