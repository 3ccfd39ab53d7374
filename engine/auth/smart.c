/*
 * smart.c — discovery documents.
 *
 *   GET /.well-known/smart-configuration  SMART App Launch 2.0 §Conformance
 *   GET /fhir/.well-known/smart-configuration  (the spec places it under the FHIR
 *       base, [base]/.well-known/…, which is where clients such as fhirclient look;
 *       the root copy serves tools that look at the server root)
 *       (https://hl7.org/fhir/smart-app-launch/conformance.html): endpoints,
 *       grant types, PKCE methods (S256 only), client authentication methods,
 *       scopes and capabilities this server actually implements.
 *   GET /auth/jwks                         RFC 7517 §5: our public signing keys.
 */
#include "config.h"
#include "engine/auth/auth_int.h"

#include <json-c/json.h>
#include <stdio.h>

static struct json_object *strs(const char *const *v) {
    struct json_object *a = json_object_new_array();
    for (; *v; v++) json_object_array_add(a, json_object_new_string(*v));
    return a;
}

static void h_smart(hv_http_req_t *req, void *ud) {
    hv__auth_t *a = ud;
    struct json_object *o = json_object_new_object();
    char url[700];
    static const char *const grants[] = {"authorization_code", "client_credentials", "refresh_token", NULL};
    static const char *const pkce[] = {"S256", NULL};
    static const char *const authm[] = {"client_secret_basic", "client_secret_post", "private_key_jwt", NULL};
    static const char *const algs[] = {"RS384", "ES384", NULL};
    static const char *const resp[] = {"code", NULL};
    static const char *const scopes[] = {
        "openid", "fhirUser", "launch", "launch/patient", "offline_access", "online_access",
        "patient/*.rs", "patient/*.cruds", "user/*.rs", "user/*.cruds", "system/*.rs", "system/*.cruds",
        "patient/*.read", "user/*.read", "user/*.write", "system/*.read", NULL};
    static const char *const caps[] = {
        "launch-standalone", "launch-ehr", "context-ehr-patient", "client-public", "client-confidential-symmetric",
        "client-confidential-asymmetric", "context-standalone-patient", "permission-offline",
        "permission-online", "permission-patient", "permission-user", "permission-v1", "permission-v2",
        "sso-openid-connect", NULL};
    hv_json_set_str(o, "issuer", a->issuer);
    snprintf(url, sizeof(url), "%s/auth/jwks", a->issuer);
    hv_json_set_str(o, "jwks_uri", url);
    snprintf(url, sizeof(url), "%s/auth/authorize", a->issuer);
    hv_json_set_str(o, "authorization_endpoint", url);
    snprintf(url, sizeof(url), "%s/auth/token", a->issuer);
    hv_json_set_str(o, "token_endpoint", url);
    snprintf(url, sizeof(url), "%s/auth/introspect", a->issuer);
    hv_json_set_str(o, "introspection_endpoint", url);
    snprintf(url, sizeof(url), "%s/auth/revoke", a->issuer);
    hv_json_set_str(o, "revocation_endpoint", url);
    snprintf(url, sizeof(url), "%s/auth/register-client", a->issuer);
    hv_json_set_str(o, "registration_endpoint", url); /* RFC 8414 §2; RFC 7591 */
    hv_json_set(o, "grant_types_supported", strs(grants));
    hv_json_set(o, "code_challenge_methods_supported", strs(pkce));
    hv_json_set(o, "token_endpoint_auth_methods_supported", strs(authm));
    hv_json_set(o, "token_endpoint_auth_signing_alg_values_supported", strs(algs));
    hv_json_set(o, "response_types_supported", strs(resp));
    hv_json_set(o, "scopes_supported", strs(scopes));
    hv_json_set(o, "capabilities", strs(caps));
    hv_http_respond_json(req, 200, o);
}

static void h_jwks(hv_http_req_t *req, void *ud) {
    hv__auth_t *a = ud;
    struct json_object *o = json_object_new_object(), *keys = json_object_new_array();
    size_t i;
    for (i = 0; i < a->nkeys; i++) {
        struct json_object *k = NULL;
        if (hv__jwk_from_pkey(a->keys[i].pkey, a->keys[i].kid, a->keys[i].alg, &k) == HV_OK)
            json_object_array_add(keys, k);
    }
    hv_json_set(o, "keys", keys);
    hv_http_header_add(req, "Cache-Control", "public, max-age=300");
    hv_http_respond_json(req, 200, o);
}

int hv__auth_smart_routes(hv__auth_t *a) {
    hv_router_t *r = hv_engine_router(a->e);
    int rc = hv_router_add(r, HV_HTTP_GET, "/.well-known/smart-configuration", h_smart, a);
    if (rc == HV_OK) rc = hv_router_add(r, HV_HTTP_GET, "/fhir/.well-known/smart-configuration", h_smart, a);
    if (rc == HV_OK) rc = hv_router_add(r, HV_HTTP_GET, "/auth/jwks", h_jwks, a);
    return rc;
}
