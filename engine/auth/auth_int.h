/*
 * auth_int.h — internals shared by the files of engine/auth. Not for other modules.
 */
#ifndef HV_AUTH_INT_H
#define HV_AUTH_INT_H

#include "engine/auth/auth.h"

#include <openssl/evp.h>

struct json_object;
typedef struct hv__jwks_cache hv__jwks_cache_t;

#define HV__JWT_MAX 8192         /* longest token accepted, bytes */
#define HV__MAX_KEYS 8           /* signing keys kept (current + retired, for verification) */
#define HV__USERNAME_MAX 64
#define HV__PASSWORD_MAX 1024
#define HV__FHIR_USER_MAX 96     /* "Practitioner/" + a FHIR id */

/* ---- jwt.c ---- */

typedef struct hv__jwt {
    struct json_object *header, *claims;
    const char *alg, *kid; /* borrowed from header */
    unsigned char *sig;
    size_t siglen;
    size_t signed_len; /* bytes of "header.payload" */
} hv__jwt_t;

int hv__b64url_encode(const void *p, size_t n, hv_buf_t *out);
int hv__b64url_decode(const char *s, size_t n, unsigned char **out, size_t *outlen);
int hv__key_generate(const char *alg, EVP_PKEY **out);
int hv__jwt_key_fits(EVP_PKEY *key, const char *alg);
int hv__jws_sign(EVP_PKEY *key, const char *alg, const char *input, size_t n, hv_buf_t *out);
int hv__jws_verify(EVP_PKEY *key, const char *alg, const char *input, size_t n,
                   const unsigned char *sig, size_t slen);
/* Appends a signed compact JWT with header {alg, typ, kid} to out. */
int hv__jwt_sign(EVP_PKEY *key, const char *alg, const char *kid, struct json_object *claims,
                 hv_buf_t *out);
/* Splits and decodes a compact JWS (no signature check). HV_EPROTO when malformed. */
int hv__jwt_decode(const char *tok, size_t n, hv__jwt_t *out);
void hv__jwt_free(hv__jwt_t *j);
/* exp (required), nbf, iat with leeway seconds; iss/aud when non-NULL; max_lifetime > 0
 * caps exp - iat and exp - now. */
int hv__jwt_check_claims(const hv__jwt_t *j, const char *iss, const char *aud, int64_t now,
                         int64_t leeway, int64_t max_lifetime, hv_error_t *err);
int hv__jwk_to_pkey(struct json_object *jwk, EVP_PKEY **out);
int hv__jwk_from_pkey(EVP_PKEY *k, const char *kid, const char *alg, struct json_object **out);

/* ---- password.c ---- */

/* Hashes password with scrypt (N, r=8, p=1) and a fresh 16-byte salt:
 * "scrypt$N$r$p$<salt b64url>$<hash b64url>" (out >= 160 bytes). */
int hv__password_hash(const char *password, size_t n, uint64_t scrypt_n, char *out, size_t outlen);
/* HV_OK if password matches stored (constant time); HV_EPERM if not; HV_EINVAL if stored is malformed. */
int hv__password_verify(const char *password, size_t n, const char *stored);
/* Spends the time of one verification, for unknown users (no timing oracle). */
void hv__password_dummy(const char *password, size_t n, uint64_t scrypt_n);

/* ---- scopes.c ---- */

int hv__auth_scope_parse_one(const char *tok, size_t n, hv_auth_scope_t *out);

/* ---- ratelimit.c: token buckets keyed by strings, in a bounded table ---- */

/* Both tables start small and grow on demand up to their limit (max_keys, max). */
typedef struct hv__ratelimit hv__ratelimit_t;
hv__ratelimit_t *hv__ratelimit_new(size_t max_keys);
void hv__ratelimit_free(hv__ratelimit_t *rl);
/* The slots allocated now (for tests: at most max_keys, or 8 when max_keys is below 8). */
size_t hv__ratelimit_slots(const hv__ratelimit_t *rl);
/* Takes one token from key's bucket (rate per second, burst capacity). Returns 1 if
 * allowed; 0 if not, with *retry_after the whole seconds until a token is there. */
int hv__ratelimit_take(hv__ratelimit_t *rl, const char *key, double rate, double burst,
                       uint64_t now_ms, unsigned *retry_after);

/* A bounded set of strings with expiry times (revoked jtis and sessions). */
typedef struct hv__strset hv__strset_t;
hv__strset_t *hv__strset_new(size_t max);
void hv__strset_free(hv__strset_t *s);
/* The slots allocated now (for tests: at most max). */
size_t hv__strset_slots(const hv__strset_t *s);
/* Adds key until expires (seconds since the epoch); entries past their expiry are dropped. */
int hv__strset_add(hv__strset_t *s, const char *key, int64_t expires, int64_t now);
int hv__strset_has(hv__strset_t *s, const char *key, int64_t now);

/* ---- module state (module.c) ---- */

typedef struct hv__auth_key {
    char kid[64];
    char alg[8];
    EVP_PKEY *pkey;
    int current;
} hv__auth_key_t;

typedef struct hv__auth {
    hv_engine_t *e;
    hv_storage_t *storage;
    int enabled;
    char issuer[512];
    char audience[512];
    char alg[8];
    int64_t access_ttl, refresh_ttl, session_ttl, code_ttl, leeway, launch_ttl;
    int64_t lock_threshold, lock_ms;
    uint64_t scrypt_n;
    double ip_rate, ip_burst, client_rate, client_burst, login_rate, login_burst;
    char *cors;      /* comma-separated allowed origins */
    char *anonymous; /* comma-separated extra anonymous path prefixes */
    hv__auth_key_t keys[HV__MAX_KEYS];
    size_t nkeys;
    hv__ratelimit_t *rl;
    hv__strset_t *revoked; /* "j:<jti>" and "s:<sid>" */
    hv__strset_t *assert_jti; /* client-assertion jtis seen (replay protection, memory side) */
    hv_auth_patient_list_cb patients;
    void *patients_ud;
    hv_counter_t *c_denied, *c_ok, *c_limited, *c_login_fail;
    void *vcache; /* tokens.c: validated-token cache */
    hv__jwks_cache_t *jwks; /* jwks_uri.c */
    char *registration_scope; /* register.c: the most an initial-access-token registration gets */
    int revoked_overflow; /* a revocation did not fit in `revoked` */
    uint64_t last_revocation_sync;
    char keys_fp[HV__MAX_KEYS * 72];   /* the keys held, as hv__auth_keys_read fingerprints them */
    int keys_busy;                      /* a reload is in flight */
    uint64_t keys_asked_ms;             /* when the last reload was asked */
    uint64_t keys_check_ms;             /* auth.keys_check: the periodic look, 0 for none */
    int64_t revocation_cursor;
} hv__auth_t;

extern const hv_setting_t hv__auth_settings[];
extern const hv_command_t hv__auth_commands[];
extern const char *const hv__auth_migrations[];

/* Adds id to the in-memory revocations (module.c); logs and fails /health when full. */
void hv__auth_revoke_mem(hv__auth_t *a, const char *id, int64_t expires);
/* Reads the auth.* settings into a (module.c). */
void hv__auth_configure(hv__auth_t *a, hv_engine_t *e);
/* Opens and migrates the auth tables (CLI and start). */
int hv__auth_db_open(hv_engine_t *e, hv_db_t **out, hv_error_t *err);
/* Loads the signing keys; generates and stores one when there is none (db on this thread). */
int hv__auth_keys_load(hv__auth_t *a, hv_db_t *db, const char *passphrase, hv_error_t *err);
/* Inserts a new current key, retiring the others (CLI `auth keys rotate`). */
int hv__auth_keys_rotate(hv_db_t *db, const char *alg, const char *passphrase, char *kid_out,
                         size_t kidlen);
void hv__auth_keys_free(hv__auth_t *a);
/* Reads the keys (storage thread): their fingerprint into fp, and when it differs from
 * known_fp the decoded keys into keys/n (n 0: unchanged). */
int hv__auth_keys_read(hv_db_t *db, const char *pass, const char *known_fp, hv__auth_key_t *keys, size_t *n,
                       char *fp, size_t fplen);
/* Asks for a reload of the signing keys (module.c): at most one in flight, once a second. */
void hv__auth_keys_refresh(hv__auth_t *a);
void hv__auth_vcache_free(hv__auth_t *a);
hv__auth_key_t *hv__auth_key_current(hv__auth_t *a);
hv__auth_key_t *hv__auth_key_find(hv__auth_t *a, const char *kid);

/* Validates a bearer token into p (tokens.c). 0 or HV_EPERM with err saying why. */
int hv__auth_token_validate(hv__auth_t *a, const char *tok, size_t n, hv_auth_principal_t *p,
                            hv_error_t *err);
/* Issues an access token; claims sub, role, scope, sid, client_id, patient may be NULL/"". */
int hv__auth_token_issue(hv__auth_t *a, const char *sub, unsigned role, const char *scope,
                         const char *sid, const char *client_id, const char *patient,
                         int64_t ttl, hv_buf_t *out, char *jti_out);
/* An OpenID Connect id_token (OIDC Core §2) for sub, audience client_id. */
int hv__auth_idtoken_issue(hv__auth_t *a, const char *sub, const char *fhir_user,
                           const char *client_id, hv_buf_t *out);
void hv__auth_random_id(char *out, size_t bytes); /* out holds 2*bytes+1 hex chars */
void hv__auth_sha256_hex(const char *s, size_t n, char *out); /* out: 65 bytes */

/* routes: users/sessions (sessions.c), OAuth2/SMART (oauth.c), clients (clients.c) */
int hv__auth_sessions_routes(hv__auth_t *a);
int hv__auth_oauth_routes(hv__auth_t *a);
int hv__auth_smart_routes(hv__auth_t *a);
/* admin.c: users and SMART clients managed over HTTP (admins only). */
int hv__auth_admin_routes(hv__auth_t *a);
/* The guard (guard.c). */
int hv__auth_guard(hv_http_req_t *req, void *ud);
/* Answers an OAuth2 error (RFC 6749 §5.2) with no-store headers. */
void hv__auth_oauth_error(hv_http_req_t *req, int status, const char *error, const char *desc);
/* Reads a form (application/x-www-form-urlencoded) or JSON body parameter into arena memory;
 * NULL if absent. A parameter given twice is an error: *dup is set. */
const char *hv__auth_param(hv_http_req_t *req, const char *name, int *dup);

/* users.c — the store (storage thread or CLI). */
typedef struct hv__user {
    char name[HV__USERNAME_MAX + 1];
    char role[16];
    char fhir_user[HV__FHIR_USER_MAX]; /* "Practitioner/ID", "Patient/ID"…; "" when not linked */
    char hash[192];
    int disabled;
    int64_t failures;
    int64_t locked_until; /* ms */
} hv__user_t;

int hv__user_get(hv_db_t *db, const char *name, hv__user_t *u);
int hv__user_insert(hv_db_t *db, const char *name, const char *role, const char *hash);
int hv__user_set_hash(hv_db_t *db, const char *name, const char *hash);
int hv__user_set_disabled(hv_db_t *db, const char *name, int disabled);
int hv__user_count(hv_db_t *db, int64_t *n);
/* Verifies a login: HV_OK; HV_EPERM wrong or unknown (failure recorded); HV_EBUSY locked. */
int hv__user_check_login(hv_db_t *db, const char *name, const char *password, size_t plen,
                         int64_t threshold, int64_t lock_ms, uint64_t scrypt_n, hv__user_t *out,
                         int64_t *retry_ms);
int hv__username_valid(const char *name);
/* Links a user to the FHIR resource that is its fhirUser ("" unlinks). HV_ENOTFOUND: no such user. */
int hv__user_set_fhir_user(hv_db_t *db, const char *name, const char *ref);

/* launch.c — EHR launch contexts and fhirUser references. */
#define HV__LAUNCH_MAX 68 /* "lc." + 64 hex + NUL */
/* True for "Practitioner/ID", "Patient/ID", "RelatedPerson/ID" or "Person/ID" (ID a FHIR id). */
int hv__auth_fhir_user_valid(const char *ref);
/* Stores a new launch context for patient (made by `by`), writing its value to out. */
int hv__auth_launch_create(hv_db_t *db, const char *patient, const char *by, int64_t ttl, char *out, size_t outlen);
/* The patient of an unspent, unexpired launch; HV_ENOTFOUND otherwise. */
int hv__auth_launch_get(hv_db_t *db, const char *launch, char *patient, size_t cap);
/* Spends a launch (a code was issued for it). */
int hv__auth_launch_spend(hv_db_t *db, const char *launch);
int hv__auth_launch_routes(hv__auth_t *a);

/* register.c — RFC 7591 dynamic client registration. */
/* Stores a new single-use initial access token "iat.<64 hex>" valid ttl seconds, written to out. */
int hv__auth_initial_token_create(hv_db_t *db, int64_t ttl, char *out, size_t outlen);
int hv__auth_register_routes(hv__auth_t *a);

/* sessions.c — a job of the session and token endpoints (storage thread + loop). */
typedef struct hv__sjob {
    hv__auth_t *a;
    hv_http_req_t *req;
    char user[HV__USERNAME_MAX + 1];
    char role[16];
    char *password;
    size_t plen;
    int result;     /* HV_OK, or why not: HV_EPERM, HV_EBUSY (locked), HV_ECONFLICT */
    int reuse;      /* refresh-token reuse detected */
    int64_t retry_ms;
    char sid[64];
    char refresh[72];   /* a new refresh token (plain, returned once) */
    char presented[65]; /* SHA-256 hex of the presented refresh token */
    char client_id[HV_AUTH_MAX_ID];
    char scope[1024];
    char patient[HV_AUTH_MAX_ID];
    int64_t expires; /* session expiry, s */
    char jti[64];
    int64_t jti_exp;
    void *extra; /* the endpoint's own data (oauth.c) */
} hv__sjob_t;

hv__sjob_t *hv__sjob_new(hv__auth_t *a, hv_http_req_t *req); /* answers 503 itself on failure */
void hv__sjob_free(hv__sjob_t *j);
/* Submits; on failure answers 503 and frees j. */
void hv__sjob_submit(hv__sjob_t *j, hv_storage_job_cb job, hv_storage_done_cb done);
const char *hv__auth_role_scope(unsigned role);
int hv__auth_revoke_db(hv_db_t *db, const char *id, int64_t expires);
/* Spends j->presented for j->client_id; see sessions.c. */
int hv__auth_refresh_job(hv_db_t *db, void *arg);
int hv__auth_login_throttle(hv__auth_t *a, hv_http_req_t *req);
int hv__auth_session_create(hv_db_t *db, const char *user, const char *client_id, const char *scope,
                            const char *patient, int64_t ttl, char *sid, char *refresh, int64_t *expires);

/* jwks_uri.c — backend clients' JWKS by URL, cached per process. */
hv__jwks_cache_t *hv__jwks_cache_new(size_t max_bytes, int64_t timeout_ms, int64_t min_refetch_ms);
void hv__jwks_cache_free(hv__jwks_cache_t *c);
/* True for an https URL (http only to a loopback host). */
int hv__jwks_uri_valid(const char *url);
/* The JWKS text of url (owned copy): cached while fresh; refresh asks the host again (at most
 * once per auth.jwks.min_refetch). HV_EIO with err when it cannot be fetched and nothing fresh is cached. */
int hv__jwks_cache_get(hv__jwks_cache_t *c, const char *url, int refresh, char **out, hv_error_t *err);

/* clients.c */
typedef struct hv__client {
    char client_id[HV_AUTH_MAX_ID];
    char name[128];
    char type[16]; /* public | confidential | backend */
    char secret_hash[65];
    char redirect_uris[2048]; /* one per line */
    char scope[1024];
    char *jwks; /* owned; "" when the keys are at jwks_uri */
    char jwks_uri[1024]; /* backend clients: where the JWKS is fetched, or "" */
    int disabled;
} hv__client_t;

int hv__client_get(hv_db_t *db, const char *client_id, hv__client_t *c);
void hv__client_release(hv__client_t *c);
int hv__client_insert(hv_db_t *db, const hv__client_t *c);
int hv__client_redirect_ok(const hv__client_t *c, const char *uri);
int hv__client_secret_ok(const hv__client_t *c, const char *secret);
/* Verifies a private_key_jwt assertion and records its jti; c is filled on success. */
int hv__client_assertion_check(hv_db_t *db, hv__jwks_cache_t *cache, const char *assertion, const char *token_url,
                               int64_t leeway, hv__client_t *c, hv_error_t *err);
/* A JWKS must be {"keys": [...]} with at least one usable public key and no private parts: 0, or -1 with why. */
int hv__jwks_check(const char *text, char *why, size_t whylen);

#endif
