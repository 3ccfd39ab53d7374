/*
 * tokens.c — signing keys and access tokens.
 *
 * Signing keys (ES256 by default, or RS256: setting auth.alg) are generated on
 * the first start and kept in the table signing_keys as PKCS#8 PEM, encrypted
 * with AES-256-CBC under auth.key_passphrase when one is configured (OpenSSL's
 * PEM encryption with a scrypt-derived key). `holovitals auth keys rotate` adds
 * a new current key; retired keys stay published at /auth/jwks and keep
 * verifying until the engine restarts, after which only the newest
 * HV__MAX_KEYS are loaded.
 *
 * Access tokens are JWTs (RFC 9068 profile, "typ": "at+jwt" is not used because
 * SMART clients treat the token as opaque) with claims:
 *
 *   iss, aud, sub, exp, iat, nbf, jti   RFC 7519 §4.1
 *   scope                               RFC 8693 §4.2, space-separated
 *   role                                the user's role (HoloVitals)
 *   sid                                 the server-side session (logout revokes it)
 *   client_id, patient, fhirUser        SMART launch context when present
 *
 * Validation (hv__auth_token_validate) takes the algorithm from our key table,
 * never from the token: a token whose header names another algorithm (none,
 * HS256, RS256 for an EC key…) is refused; then exp/nbf/iat with a small leeway,
 * iss and aud, and the jti and sid against the revocation set.
 */
#include "config.h"
#include "engine/auth/auth_int.h"

#include <json-c/json.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/sha.h>
#include <stdio.h>
#include <string.h>

void hv__auth_random_id(char *out, size_t bytes) {
    unsigned char b[64];
    if (bytes > sizeof(b)) bytes = sizeof(b);
    if (hv_random_secure(b, bytes) != HV_OK) {
        /* never hand out a predictable id: refuse by aborting the process */
        hv_log(HV_LOG_ERROR, "auth.random", "the system random source failed");
        abort();
    }
    hv_hex(b, bytes, out);
}

void hv__auth_sha256_hex(const char *s, size_t n, char *out) {
    unsigned char d[SHA256_DIGEST_LENGTH];
    SHA256((const unsigned char *)s, n, d);
    hv_hex(d, sizeof(d), out);
}

static int pem_of(EVP_PKEY *k, const char *pass, hv_buf_t *out) {
    BIO *bio = BIO_new(BIO_s_mem());
    char *data;
    long n;
    int ok, rc;
    if (bio == NULL) return HV_ENOMEM;
    if (pass != NULL && pass[0] != '\0')
        ok = PEM_write_bio_PKCS8PrivateKey(bio, k, EVP_aes_256_cbc(), pass, (int)strlen(pass), NULL, NULL);
    else
        ok = PEM_write_bio_PKCS8PrivateKey(bio, k, NULL, NULL, 0, NULL, NULL);
    n = BIO_get_mem_data(bio, &data);
    rc = ok && n > 0 ? hv_buf_append(out, data, (size_t)n) : HV_EIO;
    BIO_free(bio);
    return rc;
}

static EVP_PKEY *key_of_pem(const char *pem, size_t n, const char *pass) {
    BIO *bio = BIO_new_mem_buf(pem, (int)n);
    EVP_PKEY *k;
    if (bio == NULL) return NULL;
    k = PEM_read_bio_PrivateKey(bio, NULL, NULL, (void *)(pass ? pass : ""));
    BIO_free(bio);
    return k;
}

int hv__auth_keys_read(hv_db_t *db, const char *pass, const char *known_fp, hv__auth_key_t *keys, size_t *n,
                       char *fp, size_t fplen) {
    hv_db_stmt_t *st = NULL;
    size_t used = 0, i;
    int rc;
    *n = 0;
    fp[0] = '\0';
    /* The fingerprint first (kids and the current flag, newest first): the PEM is
     * decoded only when it differs from what this process holds. */
    rc = hv_db_prepare(db, "SELECT kid, is_current FROM signing_keys ORDER BY created DESC", &st);
    if (rc != HV_OK) return rc;
    for (i = 0; (rc = hv_db_step(st)) == HV_DB_ROW && i < HV__MAX_KEYS; i++) {
        size_t len;
        const char *kid = hv_db_column_text(st, 0, &len);
        int w = snprintf(fp + used, fplen - used, "%.*s:%d;", (int)len, kid ? kid : "", (int)hv_db_column_int64(st, 1));
        if (w < 0 || (size_t)w >= fplen - used) break;
        used += (size_t)w;
    }
    hv_db_done(st);
    if (rc < 0) return rc;
    if (used == 0 || (known_fp != NULL && strcmp(fp, known_fp) == 0)) return HV_OK; /* unchanged */
    rc = hv_db_prepare(db, "SELECT kid, alg, private_pem, is_current FROM signing_keys ORDER BY created DESC", &st);
    if (rc != HV_OK) return rc;
    while ((rc = hv_db_step(st)) == HV_DB_ROW && *n < HV__MAX_KEYS) {
        hv__auth_key_t *k = &keys[*n];
        size_t len;
        const char *pem;
        memset(k, 0, sizeof(*k));
        snprintf(k->kid, sizeof(k->kid), "%s", hv_db_column_text(st, 0, &len));
        snprintf(k->alg, sizeof(k->alg), "%s", hv_db_column_text(st, 1, &len));
        k->current = hv_db_column_int64(st, 3) != 0;
        pem = hv_db_column_text(st, 2, &len);
        k->pkey = key_of_pem(pem, len, pass);
        if (k->pkey == NULL || !hv__jwt_key_fits(k->pkey, k->alg)) {
            EVP_PKEY_free(k->pkey);
            rc = HV_ECONFIG;
            break;
        }
        (*n)++;
    }
    hv_db_done(st);
    if (rc != HV_DB_ROW && rc < 0) {
        for (i = 0; i < *n; i++) EVP_PKEY_free(keys[i].pkey);
        *n = 0;
        return rc;
    }
    return HV_OK;
}

int hv__auth_keys_rotate(hv_db_t *db, const char *alg, const char *pass, char *kid_out, size_t kidlen) {
    EVP_PKEY *k = NULL;
    hv_buf_t pem;
    hv_db_stmt_t *st = NULL;
    char kid[33];
    int rc;
    hv_buf_init(&pem, 0);
    if ((rc = hv__key_generate(alg, &k)) != HV_OK) goto out;
    if ((rc = pem_of(k, pass, &pem)) != HV_OK) goto out;
    hv__auth_random_id(kid, 16);
    if ((rc = hv_db_begin(db)) != HV_OK) goto out;
    rc = hv_db_exec(db, "UPDATE signing_keys SET is_current = 0");
    if (rc == HV_OK) rc = hv_db_prepare(db, "INSERT INTO signing_keys (kid, alg, private_pem, created, is_current) VALUES ($1, $2, $3, $4, 1)", &st);
    if (rc == HV_OK) {
        hv_db_bind_text(st, 1, kid, strlen(kid));
        hv_db_bind_text(st, 2, alg, strlen(alg));
        hv_db_bind_text(st, 3, pem.data, pem.len);
        hv_db_bind_int64(st, 4, (int64_t)hv_now_ms());
        rc = hv_db_step(st);
        hv_db_done(st);
        if (rc > 0) rc = HV_OK;
    }
    if (rc == HV_OK) rc = hv_db_commit(db);
    else hv_db_rollback(db);
    if (rc == HV_OK && kid_out) snprintf(kid_out, kidlen, "%s", kid);
out:
    if (pem.data) OPENSSL_cleanse(pem.data, pem.len);
    hv_buf_release(&pem);
    EVP_PKEY_free(k);
    return rc;
}

void hv__auth_keys_free(hv__auth_t *a) {
    size_t i;
    for (i = 0; i < a->nkeys; i++) EVP_PKEY_free(a->keys[i].pkey);
    a->nkeys = 0;
}

int hv__auth_keys_load(hv__auth_t *a, hv_db_t *db, const char *pass, hv_error_t *err) {
    hv_db_stmt_t *st = NULL;
    int rc, tries;
    for (tries = 0; tries < 2; tries++) {
        rc = hv_db_prepare(db, "SELECT kid, alg, private_pem, is_current FROM signing_keys ORDER BY created DESC", &st);
        if (rc != HV_OK) break;
        while ((rc = hv_db_step(st)) == HV_DB_ROW && a->nkeys < HV__MAX_KEYS) {
            hv__auth_key_t *k = &a->keys[a->nkeys];
            size_t len;
            const char *pem = hv_db_column_text(st, 2, &len);
            memset(k, 0, sizeof(*k));
            snprintf(k->kid, sizeof(k->kid), "%s", hv_db_column_text(st, 0, &len));
            snprintf(k->alg, sizeof(k->alg), "%s", hv_db_column_text(st, 1, &len));
            k->current = hv_db_column_int64(st, 3) != 0;
            pem = hv_db_column_text(st, 2, &len);
            k->pkey = key_of_pem(pem, len, pass);
            if (k->pkey == NULL || !hv__jwt_key_fits(k->pkey, k->alg)) {
                EVP_PKEY_free(k->pkey);
                k->pkey = NULL;
                hv_db_done(st);
                hv_error_set(err, HV_ECONFIG, "auth.key_passphrase",
                             "signing key %s cannot be read (wrong auth.key_passphrase?)", k->kid);
                return HV_ECONFIG;
            }
            a->nkeys++;
        }
        hv_db_done(st);
        if (rc < 0) break;
        rc = HV_OK;
        if (a->nkeys > 0) break;
        /* first start: make the first key */
        rc = hv__auth_keys_rotate(db, a->alg, pass, NULL, 0);
        if (rc != HV_OK) break;
        hv_log(HV_LOG_INFO, "auth.key_created", "generated the first %s signing key", a->alg);
    }
    if (rc != HV_OK) hv_error_set(err, rc, "auth", "cannot load signing keys: %s", hv_strerror(rc));
    if (rc == HV_OK && hv__auth_key_current(a) == NULL) a->keys[0].current = 1;
    return rc;
}

hv__auth_key_t *hv__auth_key_current(hv__auth_t *a) {
    size_t i;
    for (i = 0; i < a->nkeys; i++)
        if (a->keys[i].current) return &a->keys[i];
    return NULL;
}

hv__auth_key_t *hv__auth_key_find(hv__auth_t *a, const char *kid) {
    size_t i;
    for (i = 0; kid != NULL && i < a->nkeys; i++)
        if (strcmp(a->keys[i].kid, kid) == 0) return &a->keys[i];
    return NULL;
}

int hv__auth_token_issue(hv__auth_t *a, const char *sub, unsigned role, const char *scope,
                         const char *sid, const char *client_id, const char *patient,
                         int64_t ttl, hv_buf_t *out, char *jti_out) {
    hv__auth_key_t *k = hv__auth_key_current(a);
    struct json_object *c;
    char jti[33];
    int64_t now = (int64_t)(hv_now_ms() / 1000);
    int rc;
    if (k == NULL) return HV_ENOTFOUND;
    c = json_object_new_object();
    if (c == NULL) return HV_ENOMEM;
    hv__auth_random_id(jti, 16);
    hv_json_set_str(c, "iss", a->issuer);
    hv_json_set_str(c, "aud", a->audience);
    hv_json_set_str(c, "sub", sub);
    hv_json_set_int(c, "iat", now);
    hv_json_set_int(c, "nbf", now);
    hv_json_set_int(c, "exp", now + ttl);
    hv_json_set_str(c, "jti", jti);
    if (scope && scope[0]) hv_json_set_str(c, "scope", scope);
    if (role) hv_json_set_str(c, "role", hv_auth_role_name(role));
    if (sid && sid[0]) hv_json_set_str(c, "sid", sid);
    if (client_id && client_id[0]) hv_json_set_str(c, "client_id", client_id);
    if (patient && patient[0]) hv_json_set_str(c, "patient", patient);
    rc = hv__jwt_sign(k->pkey, k->alg, k->kid, c, out);
    json_object_put(c);
    if (rc == HV_OK && jti_out) memcpy(jti_out, jti, sizeof(jti));
    return rc;
}

int hv__auth_idtoken_issue(hv__auth_t *a, const char *sub, const char *fhir_user,
                           const char *client_id, hv_buf_t *out) {
    hv__auth_key_t *k = hv__auth_key_current(a);
    struct json_object *c;
    int64_t now = (int64_t)(hv_now_ms() / 1000);
    int rc;
    if (k == NULL) return HV_ENOTFOUND;
    c = json_object_new_object();
    if (c == NULL) return HV_ENOMEM;
    hv_json_set_str(c, "iss", a->issuer);
    hv_json_set_str(c, "aud", client_id);
    hv_json_set_str(c, "sub", sub);
    hv_json_set_int(c, "iat", now);
    hv_json_set_int(c, "exp", now + a->access_ttl);
    if (fhir_user) hv_json_set_str(c, "fhirUser", fhir_user);
    rc = hv__jwt_sign(k->pkey, k->alg, k->kid, c, out);
    json_object_put(c);
    return rc;
}

/*
 * Validated-token cache. A client sends the same access token with every
 * request for its whole lifetime, and an ECDSA verification plus JSON and scope
 * parsing cost far more than the rest of the request path, so the principal of
 * each token that validated is remembered under the SHA-256 of the token's exact
 * bytes (direct-mapped, HV__VCACHE entries, each allocated on first use). A hit
 * skips signature, decoding and claim parsing; expiry and every revocation check
 * still run on each request. The issuer, audience and keys do not change while
 * the engine runs, so a cached result stays right until the token expires.
 */
#define HV__VCACHE 1024

typedef struct vcache_entry {
    unsigned char h[SHA256_DIGEST_LENGTH];
    hv_auth_principal_t *p; /* NULL: empty slot */
} vcache_entry_t;

static vcache_entry_t *vcache_slot(hv__auth_t *a, const unsigned char *h) {
    size_t i;
    if (a->vcache == NULL) {
        a->vcache = hv_calloc(HV__VCACHE, sizeof(vcache_entry_t));
        if (a->vcache == NULL) return NULL;
    }
    memcpy(&i, h, sizeof(i));
    return &((vcache_entry_t *)a->vcache)[i % HV__VCACHE];
}

void hv__auth_vcache_free(hv__auth_t *a) {
    size_t i;
    if (a->vcache == NULL) return;
    for (i = 0; i < HV__VCACHE; i++) hv_free(((vcache_entry_t *)a->vcache)[i].p);
    hv_free(a->vcache);
    a->vcache = NULL;
}

static void copy_claim(const hv__jwt_t *j, const char *name, char *out, size_t outlen) {
    const char *s = hv_json_get_str(j->claims, name);
    if (s == NULL || strlen(s) >= outlen) s = "";
    memcpy(out, s, strlen(s) + 1);
}

/* The checks that run on every request, cached or not: expiry and revocations. */
static int still_valid(hv__auth_t *a, const hv_auth_principal_t *p, int64_t now, hv_error_t *err) {
    char key[80];
    if (now > p->exp + a->leeway) {
        hv_error_set(err, HV_EPERM, "exp", "the token has expired");
        return HV_EPERM;
    }
    snprintf(key, sizeof(key), "j:%s", p->jti);
    if (hv__strset_has(a->revoked, key, now)) {
        hv_error_set(err, HV_EPERM, "jti", "the token was revoked");
        return HV_EPERM;
    }
    if (p->sid[0]) {
        snprintf(key, sizeof(key), "s:%s", p->sid);
        if (hv__strset_has(a->revoked, key, now)) {
            hv_error_set(err, HV_EPERM, "sid", "the session has ended");
            return HV_EPERM;
        }
    }
    snprintf(key, sizeof(key), "u:%.70s", p->sub);
    if (hv__strset_has(a->revoked, key, now)) {
        hv_error_set(err, HV_EPERM, "sub", "the account was disabled");
        return HV_EPERM;
    }
    return HV_OK;
}

int hv__auth_token_validate(hv__auth_t *a, const char *tok, size_t n, hv_auth_principal_t *p,
                            hv_error_t *err) {
    hv__jwt_t j;
    hv__auth_key_t *k;
    int64_t now = (int64_t)(hv_now_ms() / 1000);
    const char *role, *sub, *cid;
    unsigned char h[SHA256_DIGEST_LENGTH];
    vcache_entry_t *slot;
    int rc = HV_EPERM;
    if (tok == NULL || n == 0 || n > HV__JWT_MAX) {
        hv_error_set(err, HV_EPERM, "token", "malformed token");
        return HV_EPERM;
    }
    SHA256((const unsigned char *)tok, n, h);
    slot = vcache_slot(a, h);
    if (slot != NULL && slot->p != NULL && CRYPTO_memcmp(slot->h, h, sizeof(h)) == 0) {
        memcpy(p, slot->p, sizeof(*p));
        return still_valid(a, p, now, err);
    }
    memset(&j, 0, sizeof(j));
    if (hv__jwt_decode(tok, n, &j) != HV_OK) {
        hv_error_set(err, HV_EPERM, "token", "malformed token");
        return HV_EPERM;
    }
    k = hv__auth_key_find(a, j.kid);
    if (k == NULL) {
        /* Perhaps a key another process (or `keys rotate`) made since this one read
         * them: re-read the keys (bounded: one reload at a time, at most once a second);
         * this request is refused, the next ones are checked against the new set. */
        hv__auth_keys_refresh(a);
        hv_error_set(err, HV_EPERM, "kid", "unknown signing key");
        goto out;
    }
    if (strcmp(j.alg, k->alg) != 0) {
        hv_error_set(err, HV_EPERM, "alg", "algorithm does not match the key");
        goto out;
    }
    if (hv__jws_verify(k->pkey, k->alg, tok, j.signed_len, j.sig, j.siglen) != HV_OK) {
        hv_error_set(err, HV_EPERM, "signature", "bad signature");
        goto out;
    }
    if (hv__jwt_check_claims(&j, a->issuer, a->audience, now, a->leeway, 0, err) != HV_OK) goto out;
    memset(p, 0, sizeof(*p));
    copy_claim(&j, "jti", p->jti, sizeof(p->jti));
    copy_claim(&j, "sid", p->sid, sizeof(p->sid));
    copy_claim(&j, "sub", p->sub, sizeof(p->sub));
    copy_claim(&j, "client_id", p->client_id, sizeof(p->client_id));
    copy_claim(&j, "patient", p->patient, sizeof(p->patient));
    sub = hv_json_get_str(j.claims, "sub");
    if (p->jti[0] == '\0' || sub == NULL || p->sub[0] == '\0') {
        hv_error_set(err, HV_EPERM, "jti", "the token lacks jti or sub");
        goto out;
    }
    {
        struct json_object *x;
        if (json_object_object_get_ex(j.claims, "exp", &x)) p->exp = json_object_get_int64(x);
    }
    role = hv_json_get_str(j.claims, "role");
    cid = hv_json_get_str(j.claims, "client_id");
    p->role = role ? hv_auth_role_parse(role) : 0;
    if (role != NULL && p->role == 0) {
        hv_error_set(err, HV_EPERM, "role", "unknown role");
        goto out;
    }
    p->kind = (cid && cid[0] && role == NULL) ? HV_AUTH_PRINCIPAL_CLIENT : HV_AUTH_PRINCIPAL_USER;
    if (hv_auth_scopes_parse(hv_json_get_str(j.claims, "scope"), &p->scopes, err) != HV_OK) goto out;
    if (slot != NULL) {
        if (slot->p == NULL) slot->p = hv_malloc(sizeof(*p));
        if (slot->p != NULL) {
            memcpy(slot->p, p, sizeof(*p));
            memcpy(slot->h, h, sizeof(h));
        }
    }
    rc = still_valid(a, p, now, err);
out:
    hv__jwt_free(&j);
    return rc;
}
