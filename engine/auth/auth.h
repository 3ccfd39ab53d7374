/*
 * auth.h — authentication and authorization: the public interface of engine/auth.
 *
 * The auth module authenticates every HTTP request through the engine's request
 * guard (hv_http_set_guard) and attaches an hv_auth_principal_t to it. Handlers
 * read it with hv_auth_principal(req). Non-FHIR endpoints are guarded by role in
 * the module itself (a path-prefix table, see module.c); FHIR interactions are
 * guarded by SMART scopes, which the FHIR REST layer checks by calling
 * hv_auth_allow() for each interaction and each resource it is about to return
 * (read, search results, _include, history, operations, bulk export), and
 * hv_auth_patient_ids() to restrict searches to the patient compartment.
 *
 * Scopes follow SMART App Launch 2.0 §Scopes and Launch Context
 * (https://hl7.org/fhir/smart-app-launch/scopes-and-launch-context.html):
 *   v1  "patient/Observation.read", "user/ *.write" (no space)
 *   v2  "patient/Observation.rs", "system/ *.cruds" (no space),
 *       "patient/Observation.rs?category=http://terminology.hl7.org/CodeSystem/observation-category|laboratory"
 */
#ifndef HV_AUTH_H
#define HV_AUTH_H

#include "engine/engine.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Roles (a user has one; a token carries it). */
enum hv_auth_role {
    HV_AUTH_ROLE_NONE = 0,
    HV_AUTH_ROLE_ADMIN = 1 << 0,
    HV_AUTH_ROLE_INTEGRATOR = 1 << 1,
    HV_AUTH_ROLE_CLINICIAN = 1 << 2,
    HV_AUTH_ROLE_AUDITOR = 1 << 3,
    HV_AUTH_ROLE_SERVICE = 1 << 4
};
/* "admin" → HV_AUTH_ROLE_ADMIN; 0 when unknown. */
unsigned hv_auth_role_parse(const char *name);
const char *hv_auth_role_name(unsigned role);

/* FHIR interactions as SMART v2 permissions (c r u d s). */
enum hv_auth_interaction {
    HV_AUTH_CREATE = 1 << 0, /* c: create */
    HV_AUTH_READ = 1 << 1,   /* r: read, vread, history of an instance */
    HV_AUTH_UPDATE = 1 << 2, /* u: update, patch */
    HV_AUTH_DELETE = 1 << 3, /* d: delete */
    HV_AUTH_SEARCH = 1 << 4  /* s: search, history of a type or the system */
};

/* Scope contexts. */
enum hv_auth_context { HV_AUTH_CTX_PATIENT = 1, HV_AUTH_CTX_USER = 2, HV_AUTH_CTX_SYSTEM = 3 };

#define HV_AUTH_MAX_SCOPES 32   /* resource scopes kept per token; more are refused */
#define HV_AUTH_MAX_TYPE 64     /* longest resource type name */
#define HV_AUTH_MAX_FILTER 128  /* longest ?category= value of a granular scope */
#define HV_AUTH_MAX_ID 128      /* longest subject, client or patient id */

/* One parsed resource scope. */
typedef struct hv_auth_scope {
    int context;                       /* HV_AUTH_CTX_* */
    char type[HV_AUTH_MAX_TYPE];       /* resource type or "*" */
    unsigned perms;                    /* mask of HV_AUTH_CREATE … */
    char category[HV_AUTH_MAX_FILTER]; /* "system|code" or "|code" or "code"; "" when not granular */
} hv_auth_scope_t;

/* The resource scopes of a token plus its flags (openid, fhirUser, launch …). */
typedef struct hv_auth_scopes {
    size_t n;
    hv_auth_scope_t s[HV_AUTH_MAX_SCOPES];
    int openid, fhir_user, offline_access, online_access, launch, launch_patient;
} hv_auth_scopes_t;

/*
 * Parses a space-separated scope string. Unknown non-resource scopes are kept
 * out of the result and ignored (RFC 6749 §3.3 lets the server narrow scopes);
 * a malformed resource scope ("patient/Obs.xyz", a bad context, a type with
 * characters other than letters) fails with HV_EINVAL and its text in err.
 */
int hv_auth_scopes_parse(const char *scope, hv_auth_scopes_t *out, hv_error_t *err);
/*
 * Narrows `requested` to what `allowed` permits (both scope strings), writing the
 * granted scope string to out: each requested resource scope is kept only if one
 * allowed scope covers it (context, type, permissions, category); flags are kept
 * when allowed lists them. Used by the token endpoints against a client's
 * registered scope. HV_EINVAL on a malformed scope.
 */
int hv_auth_scopes_narrow(const char *requested, const char *allowed, hv_buf_t *out,
                          hv_error_t *err);

/* Who made a request. Lives in the request's arena. */
typedef struct hv_auth_principal {
    int kind;                       /* HV_AUTH_PRINCIPAL_* */
    char sub[HV_AUTH_MAX_ID];       /* user name, or client id for backend services */
    char client_id[HV_AUTH_MAX_ID]; /* "" for tokens from /auth/login */
    char patient[HV_AUTH_MAX_ID];   /* launch context: the patient a patient/ scope is about */
    char jti[64];
    char sid[64];                   /* server-side session id, "" if none */
    unsigned role;                  /* HV_AUTH_ROLE_* (one bit) */
    int64_t exp;                    /* seconds since the epoch */
    hv_auth_scopes_t scopes;
} hv_auth_principal_t;

enum { HV_AUTH_PRINCIPAL_USER = 1, HV_AUTH_PRINCIPAL_CLIENT = 2 };

/* The principal the guard attached to req; NULL when authentication is off or the path is anonymous. */
const hv_auth_principal_t *hv_auth_principal(const hv_http_req_t *req);

/* A resource as the scope check sees it. */
typedef struct hv_auth_target {
    const char *type;               /* resource type, e.g. "Observation" */
    const char *patient;            /* the Patient id of its patient compartment; NULL if none */
    const char *const *categories;  /* its category codings as "system|code"; may be NULL */
    size_t ncategories;
} hv_auth_target_t;

/*
 * The decision for one FHIR interaction on one resource. Returns HV_OK (allow) or
 * HV_EPERM (deny).
 *   - NULL principal means authentication is off: everything is allowed.
 *   - The admin role may do everything (as user/ *.*).
 *   - A scope grants when its type is t->type or "*", its permissions hold the
 *     interaction and its category filter (if any) matches one of t's categories.
 *   - patient/ scopes grant only when the resource is in the token's patient's
 *     compartment: t->patient equals p->patient (for a Patient, its own id).
 *     A resource with no patient compartment is never granted by patient/ scopes.
 *   - user/ and system/ scopes grant regardless of compartment.
 * For search, call hv_auth_allow_type first (may the search run at all), add the
 * compartment filter from hv_auth_patient_ids, then call hv_auth_allow with
 * HV_AUTH_SEARCH on every resource returned, included resources too, and drop the
 * ones denied.
 */
int hv_auth_allow(const hv_auth_principal_t *p, int interaction, const hv_auth_target_t *t);
/* May p perform interaction on some resource of type (ignoring compartment and category)? */
int hv_auth_allow_type(const hv_auth_principal_t *p, int interaction, const char *type);
/*
 * The patient ids whose compartment limits what p may see of type through
 * interaction: returns 1 and sets *patient when only patient/ scopes grant it (the
 * caller must add "in the compartment of *patient" to its query), 0 when user/ or
 * system/ scopes (or the admin role, or auth off) grant it without a compartment
 * limit, and HV_EPERM when nothing grants it.
 */
int hv_auth_patient_ids(const hv_auth_principal_t *p, int interaction, const char *type,
                        const char **patient);
/*
 * 1 when p may perform interaction on every resource of type, whatever its patient
 * compartment and categories (NULL principal, the admin role, or a user/ or system/
 * scope without a category filter grants it); 0 when each resource must be checked
 * with hv_auth_allow. Lets a caller skip reading a resource's compartment and
 * categories for unrestricted tokens.
 */
int hv_auth_allow_all(const hv_auth_principal_t *p, int interaction, const char *type);

/*
 * The patient picker's source (SMART App Launch, launch/patient): lists up to max
 * patients matching a search text ("" for any) as (id, display) pairs. The auth
 * module asks only after the user has signed in (no patient is listed to an
 * anonymous page). The provider answers asynchronously: it returns HV_OK and later
 * calls done exactly once on the loop thread (ids and names are borrowed for the
 * call), or returns an error and never calls done. The FHIR module registers one
 * (a search of Patient on its store); without it the consent page asks for an id.
 */
typedef void (*hv_auth_patient_list_done_cb)(void *done_ud, int status, size_t n,
                                             const char (*ids)[HV_AUTH_MAX_ID],
                                             const char (*names)[128]);
typedef int (*hv_auth_patient_list_cb)(void *ud, const char *search, size_t max,
                                       hv_auth_patient_list_done_cb done, void *done_ud);
/* Registers (fn NULL: removes) the provider; a module that registers one removes it when freed. */
void hv_auth_set_patient_provider(hv_engine_t *e, hv_auth_patient_list_cb fn, void *ud);

/*
 * Signs a JWT (RFC 7519, JWS compact serialization RFC 7515 §7.1) with a private
 * key given as PEM text (PKCS#8 or traditional, unencrypted), for clients of other
 * servers: a SMART backend-services client assertion (SMART App Launch 2.0
 * §Backend Services) is signed this way. alg is "RS384", "ES384", "RS256" or
 * "ES256" and must suit the key (RSA >= 2048 bits, EC on the algorithm's curve);
 * kid (may be NULL) goes into the header. The token is appended to out. HV_EINVAL
 * when the PEM cannot be read or does not suit alg; the key is not kept.
 */
int hv_auth_jwt_sign_pem(const char *pem, size_t pem_len, const char *alg, const char *kid,
                         struct json_object *claims, hv_buf_t *out);

extern const hv_module_t hv_auth_module;

#ifdef __cplusplus
}
#endif
#endif /* HV_AUTH_H */
