/*
 * oauth.c — the OAuth 2.0 endpoints of SMART App Launch 2.0 and Backend Services.
 *
 *   GET|POST /auth/authorize   RFC 6749 §4.1.1 authorization request; GET shows the
 *                              login and consent page, its form POSTs back here
 *   POST /auth/token           RFC 6749 §3.2: grant_type authorization_code (PKCE
 *                              S256 required, RFC 7636 §4.6), refresh_token
 *                              (rotating), client_credentials (private_key_jwt,
 *                              RFC 7523 §2.2, backend clients only)
 *   POST /auth/introspect      RFC 7662, for callers holding a valid access token
 *   POST /auth/revoke          RFC 7009; always 200
 *
 * Authorization request checks, in the order RFC 6749 §4.1.2.1 requires: the
 * client and its redirect_uri (exact string match) first — if either is wrong
 * the error is shown here and nothing is redirected (no open redirect); then
 * response_type, PKCE (code_challenge with method S256; "plain" or none is
 * refused, so there is no downgrade), aud (must be our FHIR base), scope, and
 * launch context, each answered by a redirect with error and state.
 *
 * Codes are 256-bit random, stored as SHA-256, single use, auth.code_ttl long,
 * and bound to client_id, redirect_uri and the PKCE challenge.
 */
#include "config.h"
#include "engine/auth/auth_int.h"

#include <ctype.h>
#include <json-c/json.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/sha.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#define MAX_PARAM 2048

enum { OUT_NONE = 0, OUT_BAD_CLIENT, OUT_REDIRECT_ERROR, OUT_PAGE, OUT_CODE, OUT_LOGIN_FAILED, OUT_LOCKED, OUT_PICK };

typedef struct areq {
    /* authorization request parameters (copied) */
    char response_type[32], client_id[HV_AUTH_MAX_ID], redirect_uri[1024], scope[1024], state[512],
        aud[512], challenge[256], method[16], launch[256];
    int is_post;
    int via_ticket;     /* signed in by a picker ticket (see pick_ticket), not a password */
    int launch_ok;      /* launch names an unspent, unexpired context (launch.c) */
    char launch_patient[HV_AUTH_MAX_ID];
    char fhir_user[HV__FHIR_USER_MAX]; /* token endpoint: the user's linked resource, or "" */
    char decision[16];
    /* outcome */
    int outcome;
    const char *error, *error_desc;
    char granted[1024];
    char code[72];
    /* token endpoint */
    char grant_type[64], code_in[200], verifier[200], secret[256], refresh_in[200];
    char *assertion;
    int basic;
    int token_ok;
    const char *token_error;
    int token_status;
    char sub[HV_AUTH_MAX_ID];
    char client_type[16];
    int want_refresh;
    int64_t refresh_ttl;
    hv_error_t err;
} areq_t;

static void areq_free(void *p) {
    areq_t *r = p;
    if (r == NULL) return;
    hv_free(r->assertion);
    hv_free(r);
}

/* Copies a parameter; 0 on success, -1 when duplicated, malformed or too long. */
static int take(hv_http_req_t *req, const char *name, char *out, size_t outlen, int *bad) {
    int dup = 0;
    const char *v = hv__auth_param(req, name, &dup);
    out[0] = '\0';
    if (dup || (v != NULL && strlen(v) >= outlen)) {
        *bad = 1;
        return -1;
    }
    if (v) memcpy(out, v, strlen(v) + 1);
    return 0;
}

static void html_escape(hv_buf_t *b, const char *s) {
    for (; *s; s++) {
        switch (*s) {
        case '<': hv_buf_puts(b, "&lt;"); break;
        case '>': hv_buf_puts(b, "&gt;"); break;
        case '&': hv_buf_puts(b, "&amp;"); break;
        case '"': hv_buf_puts(b, "&quot;"); break;
        case '\'': hv_buf_puts(b, "&#39;"); break;
        default: hv_buf_putc(b, *s);
        }
    }
}

static void url_escape(hv_buf_t *b, const char *s) {
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (isalnum(c) || c == '-' || c == '.' || c == '_' || c == '~') hv_buf_putc(b, (char)c);
        else hv_buf_printf(b, "%%%02X", c);
    }
}

static void set_page_headers(hv_http_req_t *req) {
    hv_http_header_add(req, "Cache-Control", "no-store");
    hv_http_header_add(req, "X-Frame-Options", "DENY");
    hv_http_header_add(req, "Referrer-Policy", "no-referrer");
    hv_http_header_add(req, "Content-Security-Policy",
                       "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'");
}

static void error_page(hv_http_req_t *req, const char *msg) {
    hv_buf_t b;
    hv_buf_init(&b, 0);
    hv_buf_puts(&b, "<!doctype html><meta charset=utf-8><title>Authorization error</title><h1>Authorization error</h1><p>");
    html_escape(&b, msg);
    hv_buf_puts(&b, "</p>");
    set_page_headers(req);
    hv_http_respond_buf(req, 400, "text/html; charset=utf-8", &b);
    hv_buf_release(&b);
}

static void redirect(hv_http_req_t *req, const areq_t *r, const char *code, const char *error, const char *desc) {
    hv_buf_t b;
    hv_buf_init(&b, 0);
    hv_buf_puts(&b, r->redirect_uri);
    hv_buf_putc(&b, strchr(r->redirect_uri, '?') ? '&' : '?');
    if (code) {
        hv_buf_puts(&b, "code=");
        url_escape(&b, code);
    } else {
        hv_buf_puts(&b, "error=");
        url_escape(&b, error);
        if (desc) {
            hv_buf_puts(&b, "&error_description=");
            url_escape(&b, desc);
        }
    }
    if (r->state[0]) {
        hv_buf_puts(&b, "&state=");
        url_escape(&b, r->state);
    }
    hv_http_header_add(req, "Location", b.data);
    hv_http_header_add(req, "Cache-Control", "no-store");
    hv_buf_release(&b);
    hv_http_respond(req, 302, NULL, NULL, 0);
}

/* FHIR id syntax (R4 datatypes.html#id). */
static int fhir_id_ok(const char *s) {
    size_t i, n = strlen(s);
    if (n == 0 || n > 64) return 0;
    for (i = 0; i < n; i++)
        if (!isalnum((unsigned char)s[i]) && s[i] != '-' && s[i] != '.') return 0;
    return 1;
}

static int pkce_challenge_ok(const char *c) {
    size_t i, n = strlen(c);
    if (n != 43) return 0; /* BASE64URL(SHA-256) is 43 characters */
    for (i = 0; i < n; i++)
        if (!isalnum((unsigned char)c[i]) && c[i] != '-' && c[i] != '_') return 0;
    return 1;
}

static int trimmed_equal(const char *a, const char *b) {
    size_t na = strlen(a), nb = strlen(b);
    while (na > 0 && a[na - 1] == '/') na--;
    while (nb > 0 && b[nb - 1] == '/') nb--;
    return na == nb && memcmp(a, b, na) == 0;
}

/* Validates the request after the client and redirect are known good (storage thread). */
static void check_request(hv__auth_t *a, areq_t *r, const hv__client_t *c, const char *user_role) {
    hv_buf_t g;
    hv_auth_scopes_t *sc;
    char allowed[1200];
    if (strcmp(r->response_type, "code") != 0) {
        r->error = "unsupported_response_type";
        r->error_desc = "only response_type=code is supported";
        return;
    }
    if (r->challenge[0] == '\0' || strcmp(r->method, "S256") != 0 || !pkce_challenge_ok(r->challenge)) {
        r->error = "invalid_request";
        r->error_desc = "PKCE with code_challenge_method=S256 is required";
        return;
    }
    if (!trimmed_equal(r->aud, a->audience)) {
        r->error = "invalid_request";
        r->error_desc = "aud must be this server's FHIR base URL";
        return;
    }
    if (r->launch[0] != '\0' && !r->launch_ok) {
        /* SMART App Launch §EHR launch: the launch value must be one the EHR made here. */
        r->error = "invalid_request";
        r->error_desc = "the launch is unknown, spent or expired";
        return;
    }
    hv_buf_init(&g, sizeof(r->granted) - 1);
    if (hv_auth_scopes_narrow(r->scope, c->scope, &g, &r->err) != HV_OK) {
        hv_buf_release(&g);
        r->error = "invalid_scope";
        r->error_desc = "the scope is malformed";
        return;
    }
    /* a user grants at most what the role allows them: user/ scopes by role, patient/ always */
    snprintf(allowed, sizeof(allowed), "%s patient/*.cruds launch launch/patient openid fhirUser offline_access online_access",
             user_role ? hv__auth_role_scope(hv_auth_role_parse(user_role)) : "user/*.cruds");
    {
        hv_buf_t g2;
        hv_buf_init(&g2, sizeof(r->granted) - 1);
        if (hv_auth_scopes_narrow(g.data ? g.data : "", allowed, &g2, &r->err) == HV_OK)
            snprintf(r->granted, sizeof(r->granted), "%s", g2.data ? g2.data : "");
        hv_buf_release(&g2);
    }
    hv_buf_release(&g);
    sc = hv_malloc(sizeof(*sc));
    if (sc == NULL || hv_auth_scopes_parse(r->granted, sc, NULL) != HV_OK || (sc->n == 0 && !sc->openid)) {
        hv_free(sc);
        r->error = "invalid_scope";
        r->error_desc = "none of the requested scopes can be granted to this client";
        return;
    }
    if (r->launch[0] != '\0' && !sc->launch) {
        hv_free(sc);
        r->error = "invalid_scope";
        r->error_desc = "an EHR launch needs the scope launch, registered for the client";
        return;
    }
    hv_free(sc);
}

static int job_authorize(hv_db_t *db, void *arg) {
    hv__sjob_t *j = arg;
    areq_t *r = j->extra;
    hv__client_t c;
    hv__user_t u;
    int rc;
    memset(&c, 0, sizeof(c));
    rc = hv__client_get(db, r->client_id, &c);
    if (rc == HV_ENOTFOUND || (rc == HV_OK && (c.disabled || strcmp(c.type, "backend") == 0)) ||
        (rc == HV_OK && !hv__client_redirect_ok(&c, r->redirect_uri))) {
        r->outcome = OUT_BAD_CLIENT;
        hv__client_release(&c);
        return HV_OK;
    }
    if (rc != HV_OK) return rc;
    snprintf(r->client_type, sizeof(r->client_type), "%s", c.type);
    if (r->launch[0] != '\0') {
        rc = hv__auth_launch_get(db, r->launch, r->launch_patient, sizeof(r->launch_patient));
        if (rc != HV_OK && rc != HV_ENOTFOUND) {
            hv__client_release(&c);
            return rc;
        }
        r->launch_ok = rc == HV_OK;
    }
    if (!r->is_post) {
        check_request(j->a, r, &c, NULL);
        r->outcome = r->error ? OUT_REDIRECT_ERROR : OUT_PAGE;
        hv__client_release(&c);
        return HV_OK;
    }
    if (strcmp(r->decision, "allow") != 0) {
        r->outcome = OUT_REDIRECT_ERROR;
        r->error = "access_denied";
        r->error_desc = "the user denied the request";
        hv__client_release(&c);
        return HV_OK;
    }
    if (r->via_ticket) {
        /* The user signed in a minute ago (the ticket says so); still enabled? */
        rc = hv__user_get(db, j->user, &u);
        if (rc == HV_ENOTFOUND || (rc == HV_OK && u.disabled)) rc = HV_EPERM;
    } else {
        rc = hv__user_check_login(db, j->user, j->password, j->plen, j->a->lock_threshold, j->a->lock_ms,
                                  j->a->scrypt_n, &u, &j->retry_ms);
    }
    if (rc == HV_EPERM || rc == HV_EBUSY) {
        r->outcome = rc == HV_EBUSY ? OUT_LOCKED : OUT_LOGIN_FAILED;
        check_request(j->a, r, &c, NULL); /* to re-render the page */
        if (r->error) r->outcome = OUT_REDIRECT_ERROR;
        hv__client_release(&c);
        return HV_OK;
    }
    if (rc != HV_OK) {
        hv__client_release(&c);
        return rc;
    }
    check_request(j->a, r, &c, u.role);
    hv__client_release(&c);
    if (r->error) {
        r->outcome = OUT_REDIRECT_ERROR;
        return HV_OK;
    }
    {
        hv_auth_scopes_t sc;
        hv_auth_scopes_parse(r->granted, &sc, NULL);
        if (r->launch_ok) /* EHR launch: the patient is the context's, whatever was posted */
            snprintf(j->patient, sizeof(j->patient), "%s", r->launch_patient);
        else if (sc.launch_patient && !fhir_id_ok(j->patient)) {
            /* Signed in, no patient chosen: the picker (listed only now, to a signed-in
             * user) when a provider is registered, else the page again. */
            r->outcome = j->a->patients != NULL ? OUT_PICK : OUT_LOGIN_FAILED;
            r->error_desc = "choose a patient";
            return HV_OK;
        }
        if (!sc.launch_patient && !r->launch_ok) j->patient[0] = '\0';
    }
    {
        char rnd[65], hash[65];
        hv_db_stmt_t *st = NULL;
        hv__auth_random_id(rnd, 32);
        snprintf(r->code, sizeof(r->code), "ac.%s", rnd);
        hv__auth_sha256_hex(r->code, strlen(r->code), hash);
        rc = hv_db_prepare(db, "INSERT INTO codes (hash, client_id, redirect_uri, username, scope, patient, challenge, expires)"
                               " VALUES ($1,$2,$3,$4,$5,$6,$7,$8)", &st);
        if (rc != HV_OK) return rc;
        hv_db_bind_text(st, 1, hash, strlen(hash));
        hv_db_bind_text(st, 2, r->client_id, strlen(r->client_id));
        hv_db_bind_text(st, 3, r->redirect_uri, strlen(r->redirect_uri));
        hv_db_bind_text(st, 4, j->user, strlen(j->user));
        hv_db_bind_text(st, 5, r->granted, strlen(r->granted));
        hv_db_bind_text(st, 6, j->patient, strlen(j->patient));
        hv_db_bind_text(st, 7, r->challenge, strlen(r->challenge));
        hv_db_bind_int64(st, 8, (int64_t)(hv_now_ms() / 1000) + j->a->code_ttl);
        rc = hv_db_step(st);
        hv_db_done(st);
        if (rc < 0) return rc;
        if (r->launch_ok && (rc = hv__auth_launch_spend(db, r->launch)) != HV_OK) return rc;
    }
    r->outcome = OUT_CODE;
    return HV_OK;
}

static void hidden(hv_buf_t *b, const char *name, const char *v) {
    hv_buf_printf(b, "<input type=hidden name=\"%s\" value=\"", name);
    html_escape(b, v);
    hv_buf_puts(b, "\">");
}

/*
 * The sign-in and consent page. Without a ticket: user name, password and (with
 * launch/patient) a patient id field — no patient is listed before sign-in. With a
 * ticket (the user has signed in): the patient picker, ids and names from the
 * provider (n of them; none: an id field).
 */
static void render_page_ex(hv__sjob_t *j, const char *notice, const char *ticket, size_t n,
                           const char (*ids)[HV_AUTH_MAX_ID], const char (*names)[128]) {
    areq_t *r = j->extra;
    hv__auth_t *a = j->a;
    hv_auth_scopes_t *sc = hv_malloc(sizeof(*sc));
    hv_buf_t b;
    size_t i;
    hv_buf_init(&b, 0);
    if (sc == NULL || hv_auth_scopes_parse(r->scope, sc, NULL) != HV_OK) {
        hv_free(sc);
        error_page(j->req, "the scope is malformed");
        return;
    }
    hv_buf_puts(&b, "<!doctype html><html><head><meta charset=utf-8><title>Sign in — HoloVitals</title>"
                    "<style>body{font:16px sans-serif;max-width:32em;margin:2em auto}label{display:block;margin:.5em 0}"
                    "li{font-family:monospace}</style></head><body><h1>Sign in</h1><p>The application <b>");
    html_escape(&b, r->client_id);
    hv_buf_puts(&b, "</b> asks for access:</p><ul>");
    {
        const char *p = r->scope;
        while (*p) {
            const char *sp = strchr(p, ' ');
            size_t len = sp ? (size_t)(sp - p) : strlen(p);
            char tok[300];
            if (len > 0 && len < sizeof(tok)) {
                memcpy(tok, p, len);
                tok[len] = '\0';
                hv_buf_puts(&b, "<li>");
                html_escape(&b, tok);
                hv_buf_puts(&b, "</li>");
            }
            p = sp ? sp + 1 : p + len;
        }
    }
    hv_buf_puts(&b, "</ul>");
    if (notice) {
        hv_buf_puts(&b, "<p role=alert><b>");
        html_escape(&b, notice);
        hv_buf_puts(&b, "</b></p>");
    }
    hv_buf_puts(&b, "<form method=post action=\"/auth/authorize\">");
    hidden(&b, "response_type", r->response_type);
    hidden(&b, "client_id", r->client_id);
    hidden(&b, "redirect_uri", r->redirect_uri);
    hidden(&b, "scope", r->scope);
    hidden(&b, "state", r->state);
    hidden(&b, "aud", r->aud);
    hidden(&b, "code_challenge", r->challenge);
    hidden(&b, "code_challenge_method", r->method);
    if (ticket != NULL) {
        hidden(&b, "ticket", ticket);
        hv_buf_puts(&b, "<p>Signed in as <b>");
        html_escape(&b, j->user);
        hv_buf_puts(&b, "</b>.</p>");
    } else {
        hv_buf_puts(&b, "<label>User name <input name=username autocomplete=username required></label>"
                        "<label>Password <input name=password type=password autocomplete=current-password required></label>");
    }
    if (sc->launch_patient && r->launch[0] == '\0') {
        if (ticket != NULL && n > 0) {
            hv_buf_puts(&b, "<label>Patient <select name=patient required>");
            for (i = 0; i < n; i++) {
                hv_buf_puts(&b, "<option value=\"");
                html_escape(&b, ids[i]);
                hv_buf_puts(&b, "\">");
                html_escape(&b, names[i]);
                hv_buf_puts(&b, "</option>");
            }
            hv_buf_puts(&b, "</select></label>");
        } else if (ticket == NULL && a->patients != NULL) {
            hv_buf_puts(&b, "<label>Patient id (or choose from a list once signed in) <input name=patient "
                            "pattern=\"[A-Za-z0-9.\\-]{1,64}\"></label>");
        } else {
            hv_buf_puts(&b, "<label>Patient id <input name=patient required pattern=\"[A-Za-z0-9.\\-]{1,64}\"></label>");
        }
    }
    hv_buf_puts(&b, "<button name=decision value=allow>Allow</button> <button name=decision value=deny formnovalidate>Deny</button>"
                    "</form></body></html>");
    hv_free(sc);
    set_page_headers(j->req);
    hv_http_respond_buf(j->req, j->result == HV_EPERM ? 401 : 200, "text/html; charset=utf-8", &b);
    hv_buf_release(&b);
}

static void render_page(hv__sjob_t *j, const char *notice) {
    render_page_ex(j, notice, NULL, 0, NULL, NULL);
}

/* ---- the patient picker's ticket ----
 *
 * After a successful sign-in without a patient, the picker page carries a ticket
 * instead of the password: a JWT signed with the server's current key, audience
 * "<issuer>/auth/authorize", lifetime auth.code_ttl, bound to the user, the client and
 * the PKCE challenge ({"sub","cid","cc"}). Posting it back with a patient stands for
 * the sign-in. A stolen ticket is worth no more than the code it can mint, which only
 * the holder of the PKCE verifier can redeem. */

static int pick_ticket(hv__auth_t *a, const char *user, const areq_t *r, hv_buf_t *out) {
    hv__auth_key_t *k = hv__auth_key_current(a);
    struct json_object *c = json_object_new_object();
    char aud[600], jti[33];
    int64_t now = (int64_t)(hv_now_ms() / 1000);
    int rc;
    if (k == NULL || c == NULL) {
        json_object_put(c);
        return HV_ENOMEM;
    }
    snprintf(aud, sizeof(aud), "%s/auth/authorize", a->issuer);
    hv__auth_random_id(jti, 16);
    hv_json_set_str(c, "iss", a->issuer);
    hv_json_set_str(c, "aud", aud);
    hv_json_set_str(c, "sub", user);
    hv_json_set_str(c, "cid", r->client_id);
    hv_json_set_str(c, "cc", r->challenge);
    hv_json_set_str(c, "jti", jti);
    hv_json_set_int(c, "iat", now);
    hv_json_set_int(c, "exp", now + a->code_ttl);
    rc = hv__jwt_sign(k->pkey, k->alg, k->kid, c, out);
    json_object_put(c);
    return rc;
}

/* Checks a ticket against the request; fills user on success. */
static int pick_ticket_check(hv__auth_t *a, const char *tok, const areq_t *r, char *user, size_t userlen) {
    hv__jwt_t jw;
    hv__auth_key_t *k;
    hv_error_t err;
    char aud[600];
    const char *sub, *cid, *cc;
    int rc = HV_EPERM;
    memset(&jw, 0, sizeof(jw));
    hv_error_clear(&err);
    if (strlen(tok) > HV__JWT_MAX || hv__jwt_decode(tok, strlen(tok), &jw) != HV_OK) goto out;
    k = jw.kid != NULL ? hv__auth_key_find(a, jw.kid) : NULL;
    if (k == NULL || jw.alg == NULL || strcmp(jw.alg, k->alg) != 0 ||
        hv__jws_verify(k->pkey, k->alg, tok, jw.signed_len, jw.sig, jw.siglen) != HV_OK)
        goto out;
    snprintf(aud, sizeof(aud), "%s/auth/authorize", a->issuer);
    if (hv__jwt_check_claims(&jw, a->issuer, aud, (int64_t)(hv_now_ms() / 1000), a->leeway, a->code_ttl + a->leeway,
                             &err) != HV_OK)
        goto out;
    sub = hv_json_get_str(jw.claims, "sub");
    cid = hv_json_get_str(jw.claims, "cid");
    cc = hv_json_get_str(jw.claims, "cc");
    if (sub == NULL || cid == NULL || cc == NULL || strcmp(cid, r->client_id) != 0 || strcmp(cc, r->challenge) != 0 ||
        strlen(sub) >= userlen)
        goto out;
    snprintf(user, userlen, "%s", sub);
    rc = HV_OK;
out:
    hv__jwt_free(&jw);
    return rc;
}

typedef struct pick {
    hv__sjob_t *j;
    char ticket[HV__JWT_MAX];
} pick_t;

static void pick_free(hv__sjob_t *j) {
    areq_free(j->extra);
    j->extra = NULL;
    hv__sjob_free(j);
}

static void pick_done(void *ud, int status, size_t n, const char (*ids)[HV_AUTH_MAX_ID], const char (*names)[128]) {
    pick_t *p = ud;
    render_page_ex(p->j, "choose a patient", p->ticket, status == HV_OK ? n : 0, ids, names);
    pick_free(p->j);
    hv_free(p);
}

/* Shows the picker to a user who has just signed in. Takes j. */
static void pick_start(hv__sjob_t *j) {
    pick_t *p = hv_calloc(1, sizeof(*p));
    hv_buf_t b;
    hv_buf_init(&b, sizeof(p->ticket) - 1);
    if (p == NULL || pick_ticket(j->a, j->user, j->extra, &b) != HV_OK) {
        hv_buf_release(&b);
        hv_free(p);
        hv_http_respond_error(j->req, 503, "busy", "try again");
        pick_free(j);
        return;
    }
    snprintf(p->ticket, sizeof(p->ticket), "%s", b.data);
    hv_buf_release(&b);
    p->j = j;
    if (j->a->patients == NULL || j->a->patients(j->a->patients_ud, "", 50, pick_done, p) != HV_OK)
        pick_done(p, HV_ENOTSUP, 0, NULL, NULL);
}

static void done_authorize(int status, void *arg) {
    hv__sjob_t *j = arg;
    areq_t *r = j->extra;
    if (status != HV_OK) {
        hv_http_respond_error(j->req, 503, "storage_failed", "try again");
    } else {
        switch (r->outcome) {
        case OUT_BAD_CLIENT:
            error_page(j->req, "unknown client, or a redirect_uri that is not registered for it");
            break;
        case OUT_REDIRECT_ERROR:
            redirect(j->req, r, NULL, r->error, r->error_desc);
            break;
        case OUT_PAGE:
            render_page(j, NULL);
            break;
        case OUT_LOGIN_FAILED:
            hv_audit_note(j->req, 'E', "login-failure", 4, j->user, "authorize");
            hv_counter_add(j->a->c_login_fail, 1);
            j->result = HV_EPERM;
            render_page(j, r->error_desc ? r->error_desc : "invalid credentials");
            break;
        case OUT_LOCKED:
            j->result = HV_EPERM;
            render_page(j, "too many failed logins; try again later");
            break;
        case OUT_CODE:
            hv_log(HV_LOG_INFO, "auth.code_issued", "authorization code issued");
            redirect(j->req, r, r->code, NULL, NULL);
            break;
        case OUT_PICK:
            pick_start(j); /* takes j: answers once the provider has listed the patients */
            return;
        default:
            hv_http_respond_error(j->req, 500, "internal", "unexpected state");
        }
    }
    areq_free(r);
    j->extra = NULL;
    hv__sjob_free(j);
}

static void h_authorize(hv_http_req_t *req, void *ud) {
    hv__auth_t *a = ud;
    areq_t *r;
    hv__sjob_t *j;
    int bad = 0;
    int post = hv_http_req_method(req) == HV_HTTP_POST;
    if (post && hv__auth_login_throttle(a, req) != HV_OK) return;
    r = hv_calloc(1, sizeof(*r));
    if (r == NULL) {
        hv_http_respond_error(req, 503, "out_of_memory", "try again");
        return;
    }
    r->is_post = post;
    take(req, "response_type", r->response_type, sizeof(r->response_type), &bad);
    take(req, "client_id", r->client_id, sizeof(r->client_id), &bad);
    take(req, "redirect_uri", r->redirect_uri, sizeof(r->redirect_uri), &bad);
    take(req, "scope", r->scope, sizeof(r->scope), &bad);
    take(req, "state", r->state, sizeof(r->state), &bad);
    take(req, "aud", r->aud, sizeof(r->aud), &bad);
    take(req, "code_challenge", r->challenge, sizeof(r->challenge), &bad);
    take(req, "code_challenge_method", r->method, sizeof(r->method), &bad);
    take(req, "launch", r->launch, sizeof(r->launch), &bad);
    if (post) take(req, "decision", r->decision, sizeof(r->decision), &bad);
    if (bad || r->client_id[0] == '\0' || r->redirect_uri[0] == '\0') {
        /* RFC 6749 §4.1.2.1: with a doubtful client or redirect we must not redirect */
        areq_free(r);
        error_page(req, "the request is malformed: parameters missing, repeated or too long");
        return;
    }
    if ((j = hv__sjob_new(a, req)) == NULL) {
        areq_free(r);
        return;
    }
    j->extra = r;
    if (post && strcmp(r->decision, "allow") == 0) {
        int dup = 0;
        const char *u = hv__auth_param(req, "username", &dup), *p = hv__auth_param(req, "password", &dup),
                   *pt = hv__auth_param(req, "patient", &dup), *tk = hv__auth_param(req, "ticket", &dup);
        if (!dup && tk != NULL && u == NULL && p == NULL &&
            pick_ticket_check(a, tk, r, j->user, sizeof(j->user)) == HV_OK) {
            r->via_ticket = 1;
            u = j->user;
            p = "";
        } else if (dup || tk != NULL || u == NULL || p == NULL || strlen(u) > HV__USERNAME_MAX ||
                   strlen(p) > HV__PASSWORD_MAX) {
            u = "";
            p = "";
        }
        if (u != j->user) snprintf(j->user, sizeof(j->user), "%s", u);
        j->password = hv_strdup(p);
        j->plen = strlen(p);
        snprintf(j->patient, sizeof(j->patient), "%s", pt && strlen(pt) < sizeof(j->patient) ? pt : "");
        if (j->password == NULL) {
            areq_free(r);
            j->extra = NULL;
            hv__sjob_free(j);
            hv_http_respond_error(req, 503, "out_of_memory", "try again");
            return;
        }
    }
    j->extra = r;
    if (hv_storage_submit(a->storage, job_authorize, done_authorize, j) != HV_OK) {
        areq_free(r);
        j->extra = NULL;
        hv__sjob_free(j);
        hv_http_respond_error(req, 503, "busy", "the server is busy; retry");
    }
}

/* ---- POST /auth/token ---- */

/* RFC 7636 §4.1: code_verifier = 43*128unreserved. */
static int verifier_ok(const char *v) {
    size_t i, n = strlen(v);
    if (n < 43 || n > 128) return 0;
    for (i = 0; i < n; i++) {
        unsigned char c = (unsigned char)v[i];
        if (!isalnum(c) && c != '-' && c != '.' && c != '_' && c != '~') return 0;
    }
    return 1;
}

/* Authenticates the client of a token request (storage thread). */
static int token_client(hv_db_t *db, hv__sjob_t *j, areq_t *r, hv__client_t *c) {
    char url[700];
    int rc;
    if (r->assertion != NULL) {
        snprintf(url, sizeof(url), "%s/auth/token", j->a->issuer);
        rc = hv__client_assertion_check(db, j->a->jwks, r->assertion, url, j->a->leeway, c, &r->err);
        if (rc == HV_EPERM) return HV_EPERM;
        if (rc != HV_OK) return rc;
        if (r->client_id[0] && strcmp(r->client_id, c->client_id) != 0) {
            hv__client_release(c);
            return HV_EPERM;
        }
        snprintf(r->client_id, sizeof(r->client_id), "%s", c->client_id);
        return HV_OK;
    }
    if (r->client_id[0] == '\0') return HV_EPERM;
    rc = hv__client_get(db, r->client_id, c);
    if (rc == HV_ENOTFOUND) return HV_EPERM;
    if (rc != HV_OK) return rc;
    if (c->disabled) goto deny;
    if (strcmp(c->type, "confidential") == 0) {
        if (!hv__client_secret_ok(c, r->secret)) goto deny;
    } else if (strcmp(c->type, "public") == 0) {
        if (r->secret[0] != '\0') goto deny;
    } else {
        goto deny; /* backend clients authenticate with an assertion only */
    }
    return HV_OK;
deny:
    hv__client_release(c);
    return HV_EPERM;
}

static int job_token(hv_db_t *db, void *arg) {
    hv__sjob_t *j = arg;
    areq_t *r = j->extra;
    hv__client_t c;
    int rc;
    memset(&c, 0, sizeof(c));
    r->token_status = 400;
    rc = token_client(db, j, r, &c);
    if (rc == HV_EPERM) {
        r->token_status = 401;
        r->token_error = "invalid_client";
        return HV_OK;
    }
    if (rc != HV_OK) return rc;
    snprintf(r->client_type, sizeof(r->client_type), "%s", c.type);
    snprintf(j->client_id, sizeof(j->client_id), "%s", c.client_id);
    if (strcmp(r->grant_type, "client_credentials") == 0) {
        hv_buf_t g;
        if (strcmp(c.type, "backend") != 0) {
            r->token_error = "unauthorized_client";
            goto out;
        }
        hv_buf_init(&g, sizeof(j->scope) - 1);
        rc = hv_auth_scopes_narrow(r->scope[0] ? r->scope : c.scope, c.scope, &g, &r->err);
        if (rc != HV_OK || g.len == 0) {
            hv_buf_release(&g);
            r->token_error = "invalid_scope";
            rc = HV_OK;
            goto out;
        }
        snprintf(j->scope, sizeof(j->scope), "%s", g.data);
        hv_buf_release(&g);
        snprintf(r->sub, sizeof(r->sub), "%s", c.client_id);
        r->token_ok = 1;
    } else if (strcmp(r->grant_type, "authorization_code") == 0) {
        hv_db_stmt_t *st = NULL;
        char hash[65], cid[HV_AUTH_MAX_ID] = "", ruri[1024] = "", chal[256] = "";
        int64_t exp = 0, used = 1;
        size_t len;
        hv__auth_sha256_hex(r->code_in, strlen(r->code_in), hash);
        rc = hv_db_prepare(db, "SELECT client_id, redirect_uri, username, scope, patient, challenge, expires, used FROM codes WHERE hash = $1", &st);
        if (rc != HV_OK) goto out;
        hv_db_bind_text(st, 1, hash, strlen(hash));
        rc = hv_db_step(st);
        if (rc == HV_DB_ROW) {
            snprintf(cid, sizeof(cid), "%s", hv_db_column_text(st, 0, &len));
            snprintf(ruri, sizeof(ruri), "%s", hv_db_column_text(st, 1, &len));
            snprintf(j->user, sizeof(j->user), "%s", hv_db_column_text(st, 2, &len));
            snprintf(j->scope, sizeof(j->scope), "%s", hv_db_column_text(st, 3, &len));
            snprintf(j->patient, sizeof(j->patient), "%s", hv_db_column_text(st, 4, &len));
            snprintf(chal, sizeof(chal), "%s", hv_db_column_text(st, 5, &len));
            exp = hv_db_column_int64(st, 6);
            used = hv_db_column_int64(st, 7);
        }
        hv_db_done(st);
        if (rc < 0) goto out;
        rc = HV_OK;
        r->token_error = "invalid_grant";
        if (cid[0] == '\0' || used || exp < (int64_t)(hv_now_ms() / 1000) || strcmp(cid, c.client_id) != 0 ||
            strcmp(ruri, r->redirect_uri) != 0)
            goto spend;
        {
            /* RFC 7636 §4.6: BASE64URL(SHA256(ASCII(code_verifier))) == code_challenge */
            unsigned char d[SHA256_DIGEST_LENGTH];
            hv_buf_t b;
            hv_buf_init(&b, 0);
            if (!verifier_ok(r->verifier)) goto spend;
            SHA256((const unsigned char *)r->verifier, strlen(r->verifier), d);
            hv__b64url_encode(d, sizeof(d), &b);
            if (b.data == NULL || strlen(chal) != b.len || CRYPTO_memcmp(b.data, chal, b.len) != 0) {
                hv_buf_release(&b);
                goto spend;
            }
            hv_buf_release(&b);
        }
        r->token_error = NULL;
        snprintf(r->sub, sizeof(r->sub), "%s", j->user);
        r->token_ok = 1;
        {
            hv__user_t u;
            if (hv__user_get(db, j->user, &u) == HV_OK) snprintf(r->fhir_user, sizeof(r->fhir_user), "%s", u.fhir_user);
        }
        {
            hv_auth_scopes_t sc;
            if (hv_auth_scopes_parse(j->scope, &sc, NULL) == HV_OK && (sc.offline_access || sc.online_access)) {
                int64_t ttl = sc.offline_access ? j->a->refresh_ttl : j->a->session_ttl;
                rc = hv__auth_session_create(db, j->user, c.client_id, j->scope, j->patient, ttl, j->sid, j->refresh,
                                             &j->expires);
                if (rc != HV_OK) goto out;
            }
        }
    spend:
        /* a code is spent by any attempt to redeem it, right or wrong (RFC 6749 §4.1.2) */
        if (cid[0] != '\0') {
            rc = hv_db_prepare(db, "UPDATE codes SET used = 1 WHERE hash = $1", &st);
            if (rc == HV_OK) {
                hv_db_bind_text(st, 1, hash, strlen(hash));
                rc = hv_db_step(st);
                hv_db_done(st);
                if (rc > 0) rc = HV_OK;
            }
        }
    } else if (strcmp(r->grant_type, "refresh_token") == 0) {
        hv__auth_sha256_hex(r->refresh_in, strlen(r->refresh_in), j->presented);
        rc = hv__auth_refresh_job(db, j);
        if (rc == HV_OK && j->result == HV_OK) {
            hv__user_t u;
            snprintf(r->sub, sizeof(r->sub), "%s", j->user);
            r->token_ok = 1;
            if (hv__user_get(db, j->user, &u) == HV_OK) snprintf(r->fhir_user, sizeof(r->fhir_user), "%s", u.fhir_user);
        } else {
            r->token_error = "invalid_grant";
        }
    } else {
        r->token_error = "unsupported_grant_type";
    }
out:
    hv__client_release(&c);
    return rc;
}

static void done_token(int status, void *arg) {
    hv__sjob_t *j = arg;
    areq_t *r = j->extra;
    hv_audit_note(j->req, 'E', "token", status == HV_OK && r->token_ok && !j->reuse ? 0 : 4, r->sub[0] ? r->sub : j->client_id, r->grant_type);
    if (status != HV_OK) {
        hv_http_respond_error(j->req, 503, "storage_failed", "try again");
    } else if (j->reuse) {
        char id[80];
        snprintf(id, sizeof(id), "s:%s", j->sid);
        hv__auth_revoke_mem(j->a, id, j->expires);
        hv_log(HV_LOG_WARN, "auth.refresh_reuse", "a spent refresh token was presented: session revoked");
        hv__auth_oauth_error(j->req, 400, "invalid_grant", "invalid refresh token");
    } else if (!r->token_ok) {
        if (r->err.location[0]) hv_log(HV_LOG_INFO, "auth.token_refused", "%s", r->err.location);
        hv__auth_oauth_error(j->req, r->token_status, r->token_error ? r->token_error : "invalid_request",
                             r->token_status == 401 ? "client authentication failed" : NULL);
    } else {
        hv_buf_t tok, idt;
        struct json_object *o = json_object_new_object();
        hv_auth_scopes_t *sc = hv_malloc(sizeof(*sc));
        hv_buf_init(&tok, 0);
        hv_buf_init(&idt, 0);
        if (o == NULL || sc == NULL ||
            hv__auth_token_issue(j->a, r->sub, 0, j->scope, j->sid, j->client_id, j->patient, j->a->access_ttl, &tok,
                                 NULL) != HV_OK) {
            json_object_put(o);
            hv_http_respond_error(j->req, 500, "token_failed", "the token could not be made");
        } else {
            hv_json_set_str(o, "access_token", tok.data);
            hv_json_set_str(o, "token_type", "Bearer");
            hv_json_set_int(o, "expires_in", j->a->access_ttl);
            hv_json_set_str(o, "scope", j->scope);
            if (j->patient[0]) hv_json_set_str(o, "patient", j->patient);
            if (j->refresh[0]) hv_json_set_str(o, "refresh_token", j->refresh);
            if (hv_auth_scopes_parse(j->scope, sc, NULL) == HV_OK && sc->openid &&
                strcmp(r->grant_type, "client_credentials") != 0) {
                char fu[700];
                /* fhirUser: the FHIR resource the user is linked to (`user link`), else the
                 * Practitioner named after the user. */
                if (r->fhir_user[0] != '\0')
                    snprintf(fu, sizeof(fu), "%s/%s", j->a->audience, r->fhir_user);
                else
                    snprintf(fu, sizeof(fu), "%s/Practitioner/%s", j->a->audience, r->sub);
                if (hv__auth_idtoken_issue(j->a, r->sub, sc->fhir_user ? fu : NULL, j->client_id, &idt) == HV_OK)
                    hv_json_set_str(o, "id_token", idt.data);
            }
            hv_http_header_add(j->req, "Cache-Control", "no-store");
            hv_http_header_add(j->req, "Pragma", "no-cache");
            hv_http_respond_json(j->req, 200, o);
        }
        hv_free(sc);
        hv_buf_release(&tok);
        hv_buf_release(&idt);
    }
    areq_free(r);
    j->extra = NULL;
    hv__sjob_free(j);
}

/* RFC 6749 §2.3.1: Authorization: Basic base64(urlencode(id) ":" urlencode(secret)). */
static int basic_auth(hv_http_req_t *req, areq_t *r) {
    const char *h = hv_http_req_header(req, "Authorization");
    unsigned char dec[600];
    int n;
    char *colon;
    long l;
    if (h == NULL || strncasecmp(h, "Basic ", 6) != 0) return 0;
    h += 6;
    if (strlen(h) > 780) return -1;
    n = EVP_DecodeBlock(dec, (const unsigned char *)h, (int)strlen(h));
    if (n <= 0) return -1;
    while (n > 0 && dec[n - 1] == '\0') n--; /* EVP_DecodeBlock counts padding as zero bytes */
    dec[n] = '\0';
    colon = strchr((char *)dec, ':');
    if (colon == NULL) return -1;
    *colon = '\0';
    l = hv_url_decode((char *)dec, strlen((char *)dec), 1);
    if (l < 0 || (size_t)l >= sizeof(r->client_id)) return -1;
    ((char *)dec)[l] = '\0';
    snprintf(r->client_id, sizeof(r->client_id), "%s", (char *)dec);
    l = hv_url_decode(colon + 1, strlen(colon + 1), 1);
    if (l < 0 || (size_t)l >= sizeof(r->secret)) return -1;
    colon[1 + l] = '\0';
    snprintf(r->secret, sizeof(r->secret), "%s", colon + 1);
    return 1;
}

static void h_token(hv_http_req_t *req, void *ud) {
    hv__auth_t *a = ud;
    areq_t *r;
    hv__sjob_t *j;
    int bad = 0, dup = 0, b;
    char cid[HV_AUTH_MAX_ID], sec[256], atype[128];
    const char *assertion;
    if (hv__auth_login_throttle(a, req) != HV_OK) return;
    r = hv_calloc(1, sizeof(*r));
    if (r == NULL) {
        hv_http_respond_error(req, 503, "out_of_memory", "try again");
        return;
    }
    take(req, "grant_type", r->grant_type, sizeof(r->grant_type), &bad);
    take(req, "scope", r->scope, sizeof(r->scope), &bad);
    take(req, "code", r->code_in, sizeof(r->code_in), &bad);
    take(req, "code_verifier", r->verifier, sizeof(r->verifier), &bad);
    take(req, "redirect_uri", r->redirect_uri, sizeof(r->redirect_uri), &bad);
    take(req, "refresh_token", r->refresh_in, sizeof(r->refresh_in), &bad);
    take(req, "client_id", cid, sizeof(cid), &bad);
    take(req, "client_secret", sec, sizeof(sec), &bad);
    take(req, "client_assertion_type", atype, sizeof(atype), &bad);
    assertion = hv__auth_param(req, "client_assertion", &dup);
    b = basic_auth(req, r);
    if (bad || dup || b < 0 || r->grant_type[0] == '\0' || (assertion && strlen(assertion) > HV__JWT_MAX)) {
        areq_free(r);
        hv__auth_oauth_error(req, 400, "invalid_request", "a parameter is missing, repeated or malformed");
        return;
    }
    /* RFC 6749 §2.3: one authentication method per request */
    if ((b && (sec[0] || assertion)) || (sec[0] && assertion)) {
        areq_free(r);
        hv__auth_oauth_error(req, 400, "invalid_request", "use exactly one client authentication method");
        return;
    }
    if (assertion) {
        if (strcmp(atype, "urn:ietf:params:oauth:client-assertion-type:jwt-bearer") != 0) {
            areq_free(r);
            hv__auth_oauth_error(req, 400, "invalid_request", "unsupported client_assertion_type");
            return;
        }
        r->assertion = hv_strdup(assertion);
    }
    if (!b) {
        snprintf(r->client_id, sizeof(r->client_id), "%s", cid);
        snprintf(r->secret, sizeof(r->secret), "%s", sec);
    } else if (cid[0] && strcmp(cid, r->client_id) != 0) {
        areq_free(r);
        hv__auth_oauth_error(req, 400, "invalid_request", "client_id differs from the authenticated client");
        return;
    }
    if ((j = hv__sjob_new(a, req)) == NULL) {
        areq_free(r);
        return;
    }
    j->extra = r;
    if (hv_storage_submit(a->storage, job_token, done_token, j) != HV_OK) {
        areq_free(r);
        j->extra = NULL;
        hv__sjob_free(j);
        hv_http_respond_error(req, 503, "busy", "the server is busy; retry");
    }
}

/* ---- POST /auth/introspect (RFC 7662) ---- */

static void h_introspect(hv_http_req_t *req, void *ud) {
    hv__auth_t *a = ud;
    int dup = 0;
    const char *tok = hv__auth_param(req, "token", &dup);
    hv_auth_principal_t *p;
    hv_error_t err;
    struct json_object *o;
    if (hv_auth_principal(req) == NULL && a->enabled) {
        hv_http_header_add(req, "WWW-Authenticate", "Bearer realm=\"holovitals\"");
        hv__auth_oauth_error(req, 401, "invalid_client", "introspection needs a Bearer access token");
        return;
    }
    if (dup || tok == NULL) {
        hv__auth_oauth_error(req, 400, "invalid_request", "token is required, once");
        return;
    }
    p = hv_arena_alloc(hv_http_req_arena(req), sizeof(*p));
    o = json_object_new_object();
    hv_error_clear(&err);
    if (p == NULL || hv__auth_token_validate(a, tok, strlen(tok), p, &err) != HV_OK) {
        hv_json_set(o, "active", json_object_new_boolean(0));
    } else {
        char sc[2048] = "";
        hv_json_set(o, "active", json_object_new_boolean(1));
        hv_json_set_str(o, "sub", p->sub);
        hv_json_set_int(o, "exp", p->exp);
        hv_json_set_str(o, "iss", a->issuer);
        hv_json_set_str(o, "aud", a->audience);
        hv_json_set_str(o, "token_type", "Bearer");
        if (p->client_id[0]) hv_json_set_str(o, "client_id", p->client_id);
        if (p->patient[0]) hv_json_set_str(o, "patient", p->patient);
        if (p->role) hv_json_set_str(o, "role", hv_auth_role_name(p->role));
        {
            hv__jwt_t jw;
            if (hv__jwt_decode(tok, strlen(tok), &jw) == HV_OK) {
                const char *s = hv_json_get_str(jw.claims, "scope");
                if (s) snprintf(sc, sizeof(sc), "%s", s);
                hv__jwt_free(&jw);
            }
        }
        hv_json_set_str(o, "scope", sc);
    }
    hv_http_header_add(req, "Cache-Control", "no-store");
    hv_http_respond_json(req, 200, o);
}

/* ---- POST /auth/revoke (RFC 7009) ---- */

static int job_revoke(hv_db_t *db, void *arg) {
    hv__sjob_t *j = arg;
    hv_db_stmt_t *st = NULL;
    char id[80];
    int rc;
    if (j->presented[0]) {
        size_t len;
        rc = hv_db_prepare(db, "SELECT s.id, s.expires FROM refresh_tokens r JOIN sessions s ON s.id = r.session_id WHERE r.hash = $1", &st);
        if (rc != HV_OK) return rc;
        hv_db_bind_text(st, 1, j->presented, strlen(j->presented));
        rc = hv_db_step(st);
        if (rc == HV_DB_ROW) {
            snprintf(j->sid, sizeof(j->sid), "%s", hv_db_column_text(st, 0, &len));
            j->expires = hv_db_column_int64(st, 1);
        }
        hv_db_done(st);
        if (rc < 0) return rc;
        if (j->sid[0] == '\0') return HV_OK;
        rc = hv_db_prepare(db, "UPDATE sessions SET revoked = 1 WHERE id = $1", &st);
        if (rc != HV_OK) return rc;
        hv_db_bind_text(st, 1, j->sid, strlen(j->sid));
        rc = hv_db_step(st);
        hv_db_done(st);
        if (rc < 0) return rc;
        snprintf(id, sizeof(id), "s:%s", j->sid);
        return hv__auth_revoke_db(db, id, j->expires);
    }
    snprintf(id, sizeof(id), "j:%s", j->jti);
    return hv__auth_revoke_db(db, id, j->jti_exp);
}

static void done_revoke(int status, void *arg) {
    hv__sjob_t *j = arg;
    char id[80];
    if (status != HV_OK) {
        hv_http_respond_error(j->req, 503, "storage_failed", "try again");
    } else {
        if (j->sid[0]) snprintf(id, sizeof(id), "s:%s", j->sid);
        else snprintf(id, sizeof(id), "j:%s", j->jti);
        if (j->sid[0] || j->jti[0]) hv__auth_revoke_mem(j->a, id, j->sid[0] ? j->expires : j->jti_exp);
        hv_http_header_add(j->req, "Cache-Control", "no-store");
        hv_http_respond(j->req, 200, NULL, NULL, 0);
    }
    hv__sjob_free(j);
}

static void h_revoke(hv_http_req_t *req, void *ud) {
    hv__auth_t *a = ud;
    int dup = 0;
    const char *tok = hv__auth_param(req, "token", &dup);
    hv__sjob_t *j;
    if (dup || tok == NULL || strlen(tok) > HV__JWT_MAX) {
        hv__auth_oauth_error(req, 400, "invalid_request", "token is required, once");
        return;
    }
    if ((j = hv__sjob_new(a, req)) == NULL) return;
    if (strncmp(tok, "rt.", 3) == 0) {
        hv__auth_sha256_hex(tok, strlen(tok), j->presented);
    } else {
        hv_auth_principal_t *p = hv_arena_alloc(hv_http_req_arena(req), sizeof(*p));
        hv_error_t err;
        hv_error_clear(&err);
        if (p == NULL || hv__auth_token_validate(a, tok, strlen(tok), p, &err) != HV_OK) {
            /* RFC 7009 §2.2: an invalid token is not an error */
            hv__sjob_free(j);
            hv_http_respond(req, 200, NULL, NULL, 0);
            return;
        }
        snprintf(j->jti, sizeof(j->jti), "%s", p->jti);
        j->jti_exp = p->exp + a->leeway;
    }
    hv__sjob_submit(j, job_revoke, done_revoke);
}

int hv__auth_oauth_routes(hv__auth_t *a) {
    hv_router_t *r = hv_engine_router(a->e);
    int rc = hv_router_add(r, HV_HTTP_GET | HV_HTTP_POST, "/auth/authorize", h_authorize, a);
    if (rc == HV_OK) rc = hv_router_add(r, HV_HTTP_POST, "/auth/token", h_token, a);
    if (rc == HV_OK) rc = hv_router_add(r, HV_HTTP_POST, "/auth/introspect", h_introspect, a);
    if (rc == HV_OK) rc = hv_router_add(r, HV_HTTP_POST, "/auth/revoke", h_revoke, a);
    return rc;
}
