/*
 * auth.c — how the client gets its access tokens, per connection:
 *
 *  1. Discovery (SMART App Launch 2.0 §Conformance): GET
 *     [base]/.well-known/smart-configuration → token_endpoint; when that is
 *     absent, the CapabilityStatement's oauth-uris extension (GET [base]/metadata,
 *     FHIR R4 capabilitystatement.html, SMART 1.0 "oauth-uris").
 *  2. Backend services (SMART App Launch 2.0 §Backend Services, RFC 7523):
 *     POST token_endpoint with grant_type=client_credentials, scope, and a client
 *     assertion — a JWT {iss = sub = client_id, aud = token endpoint, exp = now +
 *     4 min, iat, jti = 128 random bits} signed RS384 or ES384 with the
 *     connection's private key (unsealed only for the signature, then wiped);
 *     or, for a client secret (Oracle Health system accounts), HTTP Basic
 *     (RFC 6749 §2.3.1).
 *  3. The token is kept in memory only (Epic's are not persistent) until
 *     ehr.token_renew before its expiry, then a new one is asked for; a 401 from
 *     the FHIR server drops it once and asks again.
 */
#include "config.h"
#include "adapters/ehr/ehr_int.h"
#include "engine/auth/auth.h"

#include <json-c/json.h>
#include <openssl/crypto.h>
#include <string.h>

typedef struct tok {
    hv__ehr_run_t *r;
    hv__ehr_token_cb cb;
    int discovery_step; /* 0 smart-configuration, 1 metadata */
} tok_t;

static void token_request(tok_t *t);

void hv__ehr_token_drop(hv__ehr_conn_t *c) {
    if (c->token != NULL) {
        OPENSSL_cleanse(c->token, strlen(c->token));
        hv_free(c->token);
    }
    c->token = NULL;
    c->token_exp_ms = 0;
}

static void tok_end(tok_t *t, int status) {
    hv__ehr_run_t *r = t->r;
    hv__ehr_token_cb cb = t->cb;
    hv_free(t);
    cb(r, status);
}

/* RFC 3986 unreserved characters stay, everything else is %XX (form encoding). */
static int form_escape(hv_buf_t *b, const char *s) {
    static const char hex[] = "0123456789ABCDEF";
    int rc = HV_OK;
    for (; *s && rc == HV_OK; s++) {
        unsigned char ch = (unsigned char)*s;
        if ((ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || ch == '-' ||
            ch == '.' || ch == '_' || ch == '~') {
            rc = hv_buf_putc(b, (char)ch);
        } else {
            char e[3] = {'%', hex[ch >> 4], hex[ch & 15]};
            rc = hv_buf_append(b, e, 3);
        }
    }
    return rc;
}

static void on_discovery(void *ud, hv__ehr_resp_t *resp) {
    tok_t *t = ud;
    hv__ehr_run_t *r = t->r;
    hv__ehr_conn_t *c = r->c;
    json_object *root = NULL;
    const char *url = NULL;
    if (resp->status == HV_ECLOSED) {
        tok_end(t, HV_ECLOSED);
        return;
    }
    if (resp->status == HV_OK && resp->code == 200 &&
        hv_json_parse(resp->body.data, resp->body.len, "discovery", &root, NULL) == HV_OK &&
        json_object_is_type(root, json_type_object)) {
        if (t->discovery_step == 0) {
            url = hv_json_get_str(root, "token_endpoint");
        } else {
            /* rest[0].security.extension[url=…oauth-uris].extension[url=token].valueUri */
            json_object *rest = NULL, *sec = NULL, *exts = NULL;
            if (json_object_object_get_ex(root, "rest", &rest) && json_object_is_type(rest, json_type_array) &&
                json_object_array_length(rest) > 0 &&
                json_object_object_get_ex(json_object_array_get_idx(rest, 0), "security", &sec) &&
                json_object_object_get_ex(sec, "extension", &exts) && json_object_is_type(exts, json_type_array)) {
                size_t i, j;
                for (i = 0; i < json_object_array_length(exts) && url == NULL; i++) {
                    json_object *x = json_object_array_get_idx(exts, i), *inner = NULL;
                    const char *xu = hv_json_get_str(x, "url");
                    if (xu == NULL || strstr(xu, "oauth-uris") == NULL) continue;
                    if (!json_object_object_get_ex(x, "extension", &inner) ||
                        !json_object_is_type(inner, json_type_array))
                        continue;
                    for (j = 0; j < json_object_array_length(inner); j++) {
                        json_object *y = json_object_array_get_idx(inner, j);
                        const char *yu = hv_json_get_str(y, "url");
                        if (yu != NULL && strcmp(yu, "token") == 0) url = hv_json_get_str(y, "valueUri");
                    }
                }
            }
        }
    }
    if (url != NULL && (strncmp(url, "https://", 8) == 0 || strncmp(url, "http://", 7) == 0)) {
        hv_free(c->token_url);
        c->token_url = hv_strdup(url);
        json_object_put(root);
        if (c->token_url == NULL) {
            tok_end(t, HV_ENOMEM);
            return;
        }
        token_request(t);
        return;
    }
    json_object_put(root);
    if (t->discovery_step == 0 && resp->status != HV_ECLOSED) {
        hv__ehr_req_t q;
        char u[2048];
        t->discovery_step = 1;
        snprintf(u, sizeof(u), "%s/metadata", c->base_url);
        memset(&q, 0, sizeof(q));
        q.url = u;
        q.retry = 1;
        q.no_verify_tls = !c->verify_tls;
        if (hv__ehr_call(r->m->http, &q, on_discovery, t) == HV_OK) return;
    }
    hv__ehr_run_error(r, "discovery",
                      "no token endpoint: neither .well-known/smart-configuration nor /metadata names one (%s)",
                      resp->error[0] ? resp->error : "no token_endpoint");
    tok_end(t, HV_EPROTO);
}

static void on_token(void *ud, hv__ehr_resp_t *resp) {
    tok_t *t = ud;
    hv__ehr_run_t *r = t->r;
    hv__ehr_conn_t *c = r->c;
    json_object *root = NULL, *v = NULL;
    const char *tok;
    int64_t expires = 300;
    if (resp->status == HV_ECLOSED) {
        tok_end(t, HV_ECLOSED);
        return;
    }
    if (resp->status != HV_OK) {
        hv__ehr_run_error(r, "token", "the token endpoint did not answer: %s", resp->error);
        tok_end(t, resp->status);
        return;
    }
    if (hv_json_parse(resp->body.data, resp->body.len, "token", &root, NULL) != HV_OK ||
        !json_object_is_type(root, json_type_object)) {
        hv__ehr_run_error(r, "token", "the token endpoint answered HTTP %ld without JSON", resp->code);
        json_object_put(root);
        tok_end(t, HV_EPROTO);
        return;
    }
    if (resp->code != 200 || (tok = hv_json_get_str(root, "access_token")) == NULL) {
        const char *e = hv_json_get_str(root, "error"), *d = hv_json_get_str(root, "error_description");
        hv__ehr_run_error(r, "token", "the token endpoint refused (HTTP %ld): %.64s%s%.200s", resp->code,
                          e ? e : "no error code", d ? ": " : "", d ? d : "");
        json_object_put(root);
        tok_end(t, HV_EPERM);
        return;
    }
    if (json_object_object_get_ex(root, "expires_in", &v) && json_object_is_type(v, json_type_int))
        expires = json_object_get_int64(v);
    if (expires < 1) expires = 1;
    hv__ehr_token_drop(c);
    c->token = hv_strdup(tok);
    c->token_exp_ms = hv_now_ms() + (uint64_t)expires * 1000;
    json_object_put(root);
    tok_end(t, c->token ? HV_OK : HV_ENOMEM);
}

static void token_request(tok_t *t) {
    hv__ehr_run_t *r = t->r;
    hv__ehr_conn_t *c = r->c;
    hv__ehr_t *m = r->m;
    hv_buf_t form, jwt;
    hv__ehr_req_t q;
    unsigned char *secret = NULL;
    size_t slen = 0;
    int rc = HV_OK;
    hv_buf_init(&form, 16384);
    hv_buf_init(&jwt, 16384);
    memset(&q, 0, sizeof(q));
    hv_buf_puts(&form, "grant_type=client_credentials&scope=");
    form_escape(&form, c->scopes ? c->scopes : "system/*.read");
    if (c->key_sealed != NULL) {
        json_object *claims = json_object_new_object();
        unsigned char jti[16];
        char jtihex[33];
        uint64_t now = hv_now_ms() / 1000;
        rc = hv_ehr_unseal(m->kek, c->id, c->key_sealed, c->key_sealed_len, &secret, &slen);
        if (rc != HV_OK) {
            json_object_put(claims);
            hv__ehr_run_error(r, "token", "the connection's private key does not open with ehr.secret_key");
            goto out;
        }
        hv_random_secure(jti, sizeof(jti));
        hv_hex(jti, sizeof(jti), jtihex);
        hv_json_set_str(claims, "iss", c->client_id);
        hv_json_set_str(claims, "sub", c->client_id);
        hv_json_set_str(claims, "aud", c->token_url);
        hv_json_set_int(claims, "exp", (int64_t)now + 240);
        hv_json_set_int(claims, "iat", (int64_t)now);
        hv_json_set_str(claims, "jti", jtihex);
        rc = hv_auth_jwt_sign_pem((const char *)secret, slen, c->alg, c->key_id, claims, &jwt);
        json_object_put(claims);
        if (rc != HV_OK) {
            hv__ehr_run_error(r, "token", "cannot sign the client assertion with %s: the key does not suit it",
                              c->alg);
            goto out;
        }
        hv_buf_puts(&form, "&client_assertion_type=urn%3Aietf%3Aparams%3Aoauth%3Aclient-assertion-type%3Ajwt-bearer"
                           "&client_assertion=");
        rc = hv_buf_append(&form, jwt.data, jwt.len);
    } else {
        rc = hv_ehr_unseal(m->kek, c->id, c->secret_sealed, c->secret_sealed_len, &secret, &slen);
        if (rc != HV_OK) {
            hv__ehr_run_error(r, "token", "the connection's client secret does not open with ehr.secret_key");
            goto out;
        }
        q.basic_user = c->client_id;
        q.basic_pass = (const char *)secret;
    }
    if (rc != HV_OK) goto out;
    q.method = "POST";
    q.url = c->token_url;
    q.accept = "application/json";
    q.content_type = "application/x-www-form-urlencoded";
    q.body = form.data;
    q.body_len = form.len;
    q.retry = 1;
    q.no_verify_tls = !c->verify_tls;
    rc = hv__ehr_call(m->http, &q, on_token, t);
out:
    if (secret != NULL) {
        OPENSSL_cleanse(secret, slen);
        hv_free(secret);
    }
    if (jwt.data) OPENSSL_cleanse(jwt.data, jwt.len);
    hv_buf_release(&jwt);
    hv_buf_release(&form);
    if (rc != HV_OK) tok_end(t, rc == HV_ENOMEM || rc == HV_ECLOSED ? rc : HV_EPERM);
}

void hv__ehr_token_get(hv__ehr_run_t *r, hv__ehr_token_cb cb) {
    hv__ehr_conn_t *c = r->c;
    tok_t *t;
    if (c->key_sealed == NULL && c->secret_sealed == NULL) {
        cb(r, HV_OK);
        return;
    }
    if (c->token != NULL && c->token_exp_ms > hv_now_ms() + r->m->token_renew_ms) {
        cb(r, HV_OK);
        return;
    }
    t = hv_calloc(1, sizeof(*t));
    if (t == NULL) {
        cb(r, HV_ENOMEM);
        return;
    }
    t->r = r;
    t->cb = cb;
    if (c->token_url == NULL) {
        hv__ehr_req_t q;
        char u[2048];
        snprintf(u, sizeof(u), "%s/.well-known/smart-configuration", c->base_url);
        memset(&q, 0, sizeof(q));
        q.url = u;
        q.accept = "application/json";
        q.retry = 1;
        q.no_verify_tls = !c->verify_tls;
        if (hv__ehr_call(r->m->http, &q, on_discovery, t) != HV_OK) tok_end(t, HV_ECLOSED);
        return;
    }
    token_request(t);
}
