/*
 * clients.c — OAuth2 clients: the registry and client authentication at the
 * token endpoint.
 *
 * Client types (SMART App Launch 2.0 §Client authentication):
 *   public        browser and native apps: no secret, PKCE protects the code
 *   confidential  a server-side app with a client secret (client_secret_basic,
 *                 RFC 6749 §2.3.1, or client_secret_post); only its SHA-256 is
 *                 stored (secrets are 256-bit random, so no slow hash is needed)
 *   backend       SMART Backend Services: private_key_jwt (RFC 7523 §2.2) — a
 *                 JWT assertion signed with RS384 or ES384 by a key in the
 *                 client's registered JWKS (inline, from `client add --jwks FILE`)
 *
 * Assertion checks (SMART Backend Services §Authenticating to the token endpoint):
 * iss = sub = client_id, aud = our token endpoint URL, exp no more than five
 * minutes ahead, a jti never seen before (kept until its exp in the table
 * assertion_jtis, whose primary key makes a replay fail even across processes),
 * and a signature by one of the client's keys with the algorithm the key allows.
 */
#include "config.h"
#include "engine/auth/auth_int.h"

#include <json-c/json.h>
#include <openssl/crypto.h>
#include <stdio.h>
#include <string.h>

#define ASSERTION_MAX_LIFETIME 300

int hv__client_get(hv_db_t *db, const char *client_id, hv__client_t *c) {
    hv_db_stmt_t *st = NULL;
    int rc = hv_db_prepare(db, "SELECT client_id, name, type, secret_hash, redirect_uris, scope, jwks, disabled,"
                               " jwks_uri FROM clients WHERE client_id = $1", &st);
    if (rc != HV_OK) return rc;
    hv_db_bind_text(st, 1, client_id, strlen(client_id));
    rc = hv_db_step(st);
    if (rc == HV_DB_ROW) {
        size_t len;
        const char *s;
        memset(c, 0, sizeof(*c));
        snprintf(c->client_id, sizeof(c->client_id), "%s", hv_db_column_text(st, 0, &len));
        snprintf(c->name, sizeof(c->name), "%s", hv_db_column_text(st, 1, &len));
        snprintf(c->type, sizeof(c->type), "%s", hv_db_column_text(st, 2, &len));
        snprintf(c->secret_hash, sizeof(c->secret_hash), "%s", hv_db_column_text(st, 3, &len));
        snprintf(c->redirect_uris, sizeof(c->redirect_uris), "%s", hv_db_column_text(st, 4, &len));
        snprintf(c->scope, sizeof(c->scope), "%s", hv_db_column_text(st, 5, &len));
        s = hv_db_column_text(st, 6, &len);
        c->jwks = hv_strndup(s ? s : "", len);
        c->disabled = (int)hv_db_column_int64(st, 7);
        snprintf(c->jwks_uri, sizeof(c->jwks_uri), "%s", hv_db_column_text(st, 8, &len));
        rc = c->jwks ? HV_OK : HV_ENOMEM;
    } else if (rc == HV_OK) {
        rc = HV_ENOTFOUND;
    }
    hv_db_done(st);
    return rc;
}

void hv__client_release(hv__client_t *c) {
    if (c == NULL) return;
    hv_free(c->jwks);
    c->jwks = NULL;
}

int hv__client_insert(hv_db_t *db, const hv__client_t *c) {
    hv_db_stmt_t *st = NULL;
    int rc = hv_db_prepare(db, "INSERT INTO clients (client_id, name, type, secret_hash, redirect_uris, scope, jwks, created,"
                               " jwks_uri) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9)", &st);
    if (rc != HV_OK) return rc;
    hv_db_bind_text(st, 1, c->client_id, strlen(c->client_id));
    hv_db_bind_text(st, 2, c->name, strlen(c->name));
    hv_db_bind_text(st, 3, c->type, strlen(c->type));
    hv_db_bind_text(st, 4, c->secret_hash, strlen(c->secret_hash));
    hv_db_bind_text(st, 5, c->redirect_uris, strlen(c->redirect_uris));
    hv_db_bind_text(st, 6, c->scope, strlen(c->scope));
    hv_db_bind_text(st, 7, c->jwks ? c->jwks : "", c->jwks ? strlen(c->jwks) : 0);
    hv_db_bind_int64(st, 8, (int64_t)(hv_now_ms() / 1000));
    hv_db_bind_text(st, 9, c->jwks_uri, strlen(c->jwks_uri));
    rc = hv_db_step(st);
    hv_db_done(st);
    return rc < 0 ? rc : HV_OK;
}

/* Redirect URIs are stored one per line and compared exactly (RFC 9700 §4.1.3). */
int hv__client_redirect_ok(const hv__client_t *c, const char *uri) {
    const char *p = c->redirect_uris;
    size_t n = strlen(uri);
    if (n == 0) return 0;
    while (*p) {
        const char *nl = strchr(p, '\n');
        size_t len = nl ? (size_t)(nl - p) : strlen(p);
        if (len == n && memcmp(p, uri, n) == 0) return 1;
        p = nl ? nl + 1 : p + len;
    }
    return 0;
}

int hv__client_secret_ok(const hv__client_t *c, const char *secret) {
    char h[65];
    if (strcmp(c->type, "confidential") != 0 || secret == NULL || strlen(c->secret_hash) != 64) return 0;
    hv__auth_sha256_hex(secret, strlen(secret), h);
    return CRYPTO_memcmp(h, c->secret_hash, 64) == 0;
}

int hv__jwks_check(const char *text, char *why, size_t whylen) {
    struct json_object *o = NULL, *keys;
    size_t i, good = 0;
    hv_error_t err;
    if (hv_json_parse(text, strlen(text), "jwks", &o, &err) != HV_OK) {
        snprintf(why, whylen, "not JSON: %.200s", err.message);
        return -1;
    }
    if (!json_object_object_get_ex(o, "keys", &keys) || !json_object_is_type(keys, json_type_array)) {
        snprintf(why, whylen, "no \"keys\" array");
        json_object_put(o);
        return -1;
    }
    for (i = 0; i < json_object_array_length(keys); i++) {
        struct json_object *k = json_object_array_get_idx(keys, i), *d;
        EVP_PKEY *pk = NULL;
        if (json_object_object_get_ex(k, "d", &d)) {
            snprintf(why, whylen, "key %zu holds a private part (\"d\"): register the public key only", i);
            json_object_put(o);
            return -1;
        }
        if (hv__jwk_to_pkey(k, &pk) == HV_OK) good++;
        EVP_PKEY_free(pk);
    }
    json_object_put(o);
    if (good == 0) {
        snprintf(why, whylen, "no usable RSA (>= 2048 bits) or EC P-256/P-384 key");
        return -1;
    }
    return 0;
}

/* Finds the key of the client's JWKS that signed j (kid, else the only fitting key). */
static EVP_PKEY *jwks_key(const char *jwks_text, const hv__jwt_t *j) {
    struct json_object *jwks = NULL, *keys;
    EVP_PKEY *found = NULL;
    size_t i;
    if (hv_json_parse(jwks_text, strlen(jwks_text), "jwks", &jwks, NULL) != HV_OK) return NULL;
    if (!json_object_object_get_ex(jwks, "keys", &keys) || !json_object_is_type(keys, json_type_array)) goto out;
    for (i = 0; i < json_object_array_length(keys) && i < 32; i++) {
        struct json_object *k = json_object_array_get_idx(keys, i);
        const char *kid = hv_json_get_str(k, "kid"), *alg = hv_json_get_str(k, "alg");
        EVP_PKEY *pk = NULL;
        if (j->kid != NULL && (kid == NULL || strcmp(kid, j->kid) != 0)) continue;
        if (alg != NULL && strcmp(alg, j->alg) != 0) continue; /* the key says which alg it is for */
        if (hv__jwk_to_pkey(k, &pk) != HV_OK) continue;
        if (!hv__jwt_key_fits(pk, j->alg)) {
            EVP_PKEY_free(pk);
            continue;
        }
        if (found != NULL) { /* ambiguous without a kid: refuse */
            EVP_PKEY_free(pk);
            EVP_PKEY_free(found);
            found = NULL;
            goto out;
        }
        found = pk;
    }
out:
    json_object_put(jwks);
    return found;
}

int hv__client_assertion_check(hv_db_t *db, hv__jwks_cache_t *cache, const char *assertion, const char *token_url,
                               int64_t leeway, hv__client_t *c, hv_error_t *err) {
    hv__jwt_t j;
    EVP_PKEY *key = NULL;
    const char *iss, *sub, *jti;
    int64_t now = (int64_t)(hv_now_ms() / 1000), exp = 0;
    int rc = HV_EPERM;
    memset(c, 0, sizeof(*c));
    if (hv__jwt_decode(assertion, strlen(assertion), &j) != HV_OK) {
        hv_error_set(err, HV_EPERM, "client_assertion", "malformed client assertion");
        return HV_EPERM;
    }
    if (strcmp(j.alg, "RS384") != 0 && strcmp(j.alg, "ES384") != 0) {
        hv_error_set(err, HV_EPERM, "alg", "client assertions must be signed with RS384 or ES384");
        goto out;
    }
    iss = hv_json_get_str(j.claims, "iss");
    sub = hv_json_get_str(j.claims, "sub");
    jti = hv_json_get_str(j.claims, "jti");
    if (iss == NULL || sub == NULL || strcmp(iss, sub) != 0 || strlen(iss) >= HV_AUTH_MAX_ID) {
        hv_error_set(err, HV_EPERM, "iss", "iss and sub must both be the client_id");
        goto out;
    }
    if (jti == NULL || jti[0] == '\0' || strlen(jti) > 256) {
        hv_error_set(err, HV_EPERM, "jti", "the assertion needs a jti");
        goto out;
    }
    if (hv__jwt_check_claims(&j, NULL, token_url, now, leeway, ASSERTION_MAX_LIFETIME, err) != HV_OK) goto out;
    rc = hv__client_get(db, iss, c);
    if (rc == HV_ENOTFOUND || (rc == HV_OK && (c->disabled || strcmp(c->type, "backend") != 0))) {
        hv_error_set(err, HV_EPERM, "iss", "unknown client");
        rc = HV_EPERM;
        goto out;
    }
    if (rc != HV_OK) goto out;
    rc = HV_EPERM;
    if (c->jwks_uri[0] != '\0') {
        /* Keys by URL: the cached set, refetched once when it lacks the assertion's key
         * (the client rotated its keys). */
        char *text = NULL;
        hv_error_t ferr;
        hv_error_clear(&ferr);
        if (cache != NULL && hv__jwks_cache_get(cache, c->jwks_uri, 0, &text, &ferr) == HV_OK) key = jwks_key(text, &j);
        hv_free(text);
        text = NULL;
        if (key == NULL && cache != NULL && hv__jwks_cache_get(cache, c->jwks_uri, 1, &text, &ferr) == HV_OK)
            key = jwks_key(text, &j);
        hv_free(text);
        if (key == NULL && ferr.message[0] != '\0')
            hv_log(HV_LOG_WARN, "auth.jwks_uri_failed", "client %s: %s", c->client_id, ferr.message);
    } else {
        key = jwks_key(c->jwks, &j);
    }
    if (key == NULL) {
        hv_error_set(err, HV_EPERM, "kid", "no registered key matches the assertion");
        goto out;
    }
    if (hv__jws_verify(key, j.alg, assertion, j.signed_len, j.sig, j.siglen) != HV_OK) {
        hv_error_set(err, HV_EPERM, "signature", "bad assertion signature");
        goto out;
    }
    {
        struct json_object *x;
        if (json_object_object_get_ex(j.claims, "exp", &x)) exp = json_object_get_int64(x);
    }
    {
        /* replay protection: the jti is remembered per client until the assertion expires */
        hv_db_stmt_t *st = NULL;
        char id[400];
        snprintf(id, sizeof(id), "%s\n%s", iss, jti);
        rc = hv_db_prepare(db, "DELETE FROM assertion_jtis WHERE expires < $1", &st);
        if (rc == HV_OK) {
            hv_db_bind_int64(st, 1, now - leeway);
            rc = hv_db_step(st);
            hv_db_done(st);
        }
        if (rc >= 0) rc = hv_db_prepare(db, "INSERT INTO assertion_jtis (id, expires) VALUES ($1, $2)", &st);
        if (rc >= 0) {
            hv_db_bind_text(st, 1, id, strlen(id));
            hv_db_bind_int64(st, 2, exp + leeway);
            rc = hv_db_step(st);
            hv_db_done(st);
        }
        if (rc == HV_ECONFLICT) {
            hv_error_set(err, HV_EPERM, "jti", "the assertion was already used");
            rc = HV_EPERM;
            goto out;
        }
        if (rc < 0) goto out;
    }
    rc = HV_OK;
out:
    if (rc != HV_OK) hv__client_release(c);
    EVP_PKEY_free(key);
    hv__jwt_free(&j);
    return rc;
}
