/*
 * scopes.c — SMART on FHIR scopes: parsing, narrowing, and the allow/deny
 * decision for FHIR interactions.
 *
 * Implements SMART App Launch 2.0 §Scopes and Launch Context
 * (https://hl7.org/fhir/smart-app-launch/scopes-and-launch-context.html):
 *
 *   scope        = context "/" type "." permissions [ "?" "category=" value ]
 *   context      = "patient" | "user" | "system"
 *   type         = a FHIR resource type (letters) | "*"
 *   permissions  = v1: "read" (= rs) | "write" (= cud) | "*" (= cruds)
 *                  v2: a non-empty subset of "cruds" in that order
 *
 * Only the `category` parameter of granular scopes is supported (the only one
 * SMART 2.0 requires servers to understand, for Observation and Condition); a
 * granular scope with any other parameter is refused rather than widened.
 */
#include "config.h"
#include "engine/auth/auth_int.h"

#include <ctype.h>
#include <stdio.h>
#include <string.h>

static int parse_perms(const char *p, size_t n, unsigned *out) {
    static const char order[] = "cruds";
    static const unsigned bit[] = {HV_AUTH_CREATE, HV_AUTH_READ, HV_AUTH_UPDATE, HV_AUTH_DELETE,
                                   HV_AUTH_SEARCH};
    size_t i, pos = 0;
    unsigned m = 0;
    if (n == 4 && memcmp(p, "read", 4) == 0) {
        *out = HV_AUTH_READ | HV_AUTH_SEARCH;
        return HV_OK;
    }
    if (n == 5 && memcmp(p, "write", 5) == 0) {
        *out = HV_AUTH_CREATE | HV_AUTH_UPDATE | HV_AUTH_DELETE;
        return HV_OK;
    }
    if (n == 1 && p[0] == '*') {
        *out = HV_AUTH_CREATE | HV_AUTH_READ | HV_AUTH_UPDATE | HV_AUTH_DELETE | HV_AUTH_SEARCH;
        return HV_OK;
    }
    if (n == 0 || n > 5) return HV_EINVAL;
    /* SMART 2.0: the letters appear at most once each, in the order c r u d s. */
    for (i = 0; i < n; i++) {
        while (pos < 5 && order[pos] != p[i]) pos++;
        if (pos == 5) return HV_EINVAL;
        m |= bit[pos++];
    }
    *out = m;
    return HV_OK;
}

/* Parses one resource scope token (not NUL-terminated: n bytes). */
int hv__auth_scope_parse_one(const char *tok, size_t n, hv_auth_scope_t *out) {
    const char *slash = memchr(tok, '/', n), *dot, *q, *end = tok + n;
    size_t clen, tlen, i;
    hv_auth_scope_t s;
    memset(&s, 0, sizeof(s));
    if (slash == NULL) return HV_EINVAL;
    clen = (size_t)(slash - tok);
    if (clen == 7 && memcmp(tok, "patient", 7) == 0) s.context = HV_AUTH_CTX_PATIENT;
    else if (clen == 4 && memcmp(tok, "user", 4) == 0) s.context = HV_AUTH_CTX_USER;
    else if (clen == 6 && memcmp(tok, "system", 6) == 0) s.context = HV_AUTH_CTX_SYSTEM;
    else return HV_EINVAL;
    dot = memchr(slash + 1, '.', (size_t)(end - slash - 1));
    if (dot == NULL) return HV_EINVAL;
    tlen = (size_t)(dot - slash - 1);
    if (tlen == 0 || tlen >= sizeof(s.type)) return HV_EINVAL;
    if (!(tlen == 1 && slash[1] == '*')) {
        if (!isupper((unsigned char)slash[1])) return HV_EINVAL;
        for (i = 0; i < tlen; i++)
            if (!isalpha((unsigned char)slash[1 + i])) return HV_EINVAL;
    }
    memcpy(s.type, slash + 1, tlen);
    q = memchr(dot + 1, '?', (size_t)(end - dot - 1));
    if (parse_perms(dot + 1, (size_t)((q ? q : end) - dot - 1), &s.perms) != HV_OK) return HV_EINVAL;
    if (q != NULL) {
        size_t vlen;
        if ((size_t)(end - q - 1) < 9 || memcmp(q + 1, "category=", 9) != 0) return HV_EINVAL;
        vlen = (size_t)(end - q - 10);
        if (vlen == 0 || vlen >= sizeof(s.category) || memchr(q + 10, '&', vlen) != NULL)
            return HV_EINVAL;
        memcpy(s.category, q + 10, vlen);
    }
    *out = s;
    return HV_OK;
}

static int flag_token(const char *tok, size_t n, hv_auth_scopes_t *s) {
#define IS(lit) (n == sizeof(lit) - 1 && memcmp(tok, lit, n) == 0)
    if (IS("openid")) s->openid = 1;
    else if (IS("fhirUser")) s->fhir_user = 1;
    else if (IS("offline_access")) s->offline_access = 1;
    else if (IS("online_access")) s->online_access = 1;
    else if (IS("launch")) s->launch = 1;
    else if (IS("launch/patient")) s->launch_patient = 1;
    else return 0;
    return 1;
#undef IS
}

int hv_auth_scopes_parse(const char *scope, hv_auth_scopes_t *out, hv_error_t *err) {
    hv_auth_scopes_t *s = out;
    const char *p = scope ? scope : "";
    memset(s, 0, sizeof(*s));
    while (*p) {
        const char *start;
        size_t n;
        while (*p == ' ') p++;
        start = p;
        while (*p && *p != ' ') p++;
        n = (size_t)(p - start);
        if (n == 0) break;
        if (flag_token(start, n, s)) continue;
        if (memchr(start, '/', n) == NULL || (n > 7 && memcmp(start, "launch/", 7) == 0))
            continue; /* a scope we do not know: narrowed away (RFC 6749 §3.3) */
        if (s->n >= HV_AUTH_MAX_SCOPES) {
            hv_error_set(err, HV_ETOOBIG, "scope", "more than %d resource scopes", HV_AUTH_MAX_SCOPES);
            return HV_ETOOBIG;
        }
        if (hv__auth_scope_parse_one(start, n, &s->s[s->n]) != HV_OK) {
            hv_error_set(err, HV_EINVAL, "scope", "malformed scope '%.*s'", (int)(n > 80 ? 80 : n), start);
            return HV_EINVAL;
        }
        s->n++;
    }
    return HV_OK;
}

/* Does `a` cover everything `b` grants? */
static int covers(const hv_auth_scope_t *a, const hv_auth_scope_t *b) {
    if (a->context != b->context) return 0;
    if (strcmp(a->type, "*") != 0 && strcmp(a->type, b->type) != 0) return 0;
    if ((a->perms & b->perms) != b->perms) return 0;
    if (a->category[0] != '\0' && strcmp(a->category, b->category) != 0) return 0;
    return 1;
}

static int put_scope(hv_buf_t *out, const hv_auth_scope_t *s) {
    static const char letters[] = "cruds";
    static const char *const ctx[] = {"", "patient", "user", "system"};
    char perms[6];
    size_t i, k = 0;
    for (i = 0; i < 5; i++)
        if (s->perms & (1u << i)) perms[k++] = letters[i];
    perms[k] = '\0';
    return hv_buf_printf(out, "%s%s/%s.%s%s%s", out->len ? " " : "", ctx[s->context], s->type, perms,
                         s->category[0] ? "?category=" : "", s->category);
}

int hv_auth_scopes_narrow(const char *requested, const char *allowed, hv_buf_t *out,
                          hv_error_t *err) {
    hv_auth_scopes_t *req = NULL, *al = NULL;
    size_t i, j;
    int rc = HV_ENOMEM;
    req = hv_malloc(sizeof(*req));
    al = hv_malloc(sizeof(*al));
    if (req == NULL || al == NULL) goto out;
    if ((rc = hv_auth_scopes_parse(requested, req, err)) != HV_OK) goto out;
    if ((rc = hv_auth_scopes_parse(allowed, al, err)) != HV_OK) goto out;
#define FLAG(f, name) \
    if (req->f && al->f && (rc = hv_buf_printf(out, "%s%s", out->len ? " " : "", name)) != HV_OK) goto out
    FLAG(launch, "launch");
    FLAG(launch_patient, "launch/patient");
    FLAG(openid, "openid");
    FLAG(fhir_user, "fhirUser");
    FLAG(offline_access, "offline_access");
    FLAG(online_access, "online_access");
#undef FLAG
    for (i = 0; i < req->n; i++) {
        for (j = 0; j < al->n; j++) {
            if (covers(&al->s[j], &req->s[i])) {
                if ((rc = put_scope(out, &req->s[i])) != HV_OK) goto out;
                break;
            }
        }
    }
    rc = HV_OK;
out:
    hv_free(req);
    hv_free(al);
    return rc;
}

/* A granular scope's category value matches a resource coding "system|code":
 * "system|code" exactly, "|code" or "code" by code alone. */
static int category_matches(const char *want, const hv_auth_target_t *t) {
    size_t i;
    const char *wbar = strchr(want, '|');
    for (i = 0; t->categories != NULL && i < t->ncategories; i++) {
        const char *have = t->categories[i], *hbar;
        if (have == NULL) continue;
        if (wbar != NULL && wbar != want) {
            if (strcmp(want, have) == 0) return 1;
            continue;
        }
        hbar = strchr(have, '|');
        if (strcmp(wbar ? wbar + 1 : want, hbar ? hbar + 1 : have) == 0) return 1;
    }
    return 0;
}

static int type_matches(const hv_auth_scope_t *s, const char *type) {
    return strcmp(s->type, "*") == 0 || (type != NULL && strcmp(s->type, type) == 0);
}

int hv_auth_allow(const hv_auth_principal_t *p, int interaction, const hv_auth_target_t *t) {
    size_t i;
    if (p == NULL) return HV_OK;
    if (p->role == HV_AUTH_ROLE_ADMIN) return HV_OK;
    if (t == NULL || t->type == NULL) return HV_EPERM;
    for (i = 0; i < p->scopes.n; i++) {
        const hv_auth_scope_t *s = &p->scopes.s[i];
        if (!type_matches(s, t->type) || !(s->perms & (unsigned)interaction)) continue;
        if (s->category[0] != '\0' && !category_matches(s->category, t)) continue;
        if (s->context == HV_AUTH_CTX_PATIENT) {
            if (p->patient[0] == '\0' || t->patient == NULL || strcmp(t->patient, p->patient) != 0)
                continue;
        }
        return HV_OK;
    }
    return HV_EPERM;
}

int hv_auth_allow_type(const hv_auth_principal_t *p, int interaction, const char *type) {
    size_t i;
    if (p == NULL || p->role == HV_AUTH_ROLE_ADMIN) return HV_OK;
    for (i = 0; i < p->scopes.n; i++) {
        const hv_auth_scope_t *s = &p->scopes.s[i];
        if (!type_matches(s, type) || !(s->perms & (unsigned)interaction)) continue;
        if (s->context == HV_AUTH_CTX_PATIENT && p->patient[0] == '\0') continue;
        return HV_OK;
    }
    return HV_EPERM;
}

int hv_auth_patient_ids(const hv_auth_principal_t *p, int interaction, const char *type,
                        const char **patient) {
    size_t i;
    int only_patient = 0;
    if (p == NULL || p->role == HV_AUTH_ROLE_ADMIN) return 0;
    for (i = 0; i < p->scopes.n; i++) {
        const hv_auth_scope_t *s = &p->scopes.s[i];
        if (!type_matches(s, type) || !(s->perms & (unsigned)interaction)) continue;
        if (s->context != HV_AUTH_CTX_PATIENT) return 0;
        if (p->patient[0] != '\0') only_patient = 1;
    }
    if (!only_patient) return HV_EPERM;
    *patient = p->patient;
    return 1;
}

int hv_auth_allow_all(const hv_auth_principal_t *p, int interaction, const char *type) {
    size_t i;
    if (p == NULL || p->role == HV_AUTH_ROLE_ADMIN) return 1;
    for (i = 0; i < p->scopes.n; i++) {
        const hv_auth_scope_t *s = &p->scopes.s[i];
        if (s->context != HV_AUTH_CTX_PATIENT && s->category[0] == '\0' && type_matches(s, type) &&
            (s->perms & (unsigned)interaction))
            return 1;
    }
    return 0;
}

static const struct {
    const char *name;
    unsigned bit;
} roles[] = {
    {"admin", HV_AUTH_ROLE_ADMIN},         {"integrator", HV_AUTH_ROLE_INTEGRATOR},
    {"clinician", HV_AUTH_ROLE_CLINICIAN}, {"auditor", HV_AUTH_ROLE_AUDITOR},
    {"service", HV_AUTH_ROLE_SERVICE},
};

unsigned hv_auth_role_parse(const char *name) {
    size_t i;
    for (i = 0; name != NULL && i < HV_ARRAY_LEN(roles); i++)
        if (strcmp(name, roles[i].name) == 0) return roles[i].bit;
    return 0;
}

const char *hv_auth_role_name(unsigned role) {
    size_t i;
    for (i = 0; i < HV_ARRAY_LEN(roles); i++)
        if (roles[i].bit == role) return roles[i].name;
    return "none";
}
