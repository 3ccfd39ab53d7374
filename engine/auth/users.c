/*
 * users.c — the user store: accounts with a role, a scrypt hash, a disabled
 * flag, and failed-login state for lockout with exponential back-off.
 *
 * Lockout: after `threshold` consecutive failures the account is locked for
 * lock_ms, doubling with each further failure (capped at 24 hours); a success
 * resets the count. A locked account refuses even the right password until the
 * lock ends, and says only "locked" (with Retry-After), never whether the
 * password was right. Unknown users cost one dummy scrypt so that timing does
 * not tell which names exist.
 *
 * These functions run on the auth storage thread (HTTP) or in a CLI command.
 */
#include "config.h"
#include "engine/auth/auth_int.h"

#include <ctype.h>
#include <string.h>

#define LOCK_CAP_MS (24LL * 3600 * 1000)

const char *const hv__auth_migrations[] = {
    "CREATE TABLE users (name TEXT PRIMARY KEY, role TEXT NOT NULL, hash TEXT NOT NULL,"
    " disabled BIGINT NOT NULL DEFAULT 0, failures BIGINT NOT NULL DEFAULT 0,"
    " locked_until BIGINT NOT NULL DEFAULT 0, created BIGINT NOT NULL);"
    "CREATE TABLE signing_keys (kid TEXT PRIMARY KEY, alg TEXT NOT NULL, private_pem TEXT NOT NULL,"
    " created BIGINT NOT NULL, is_current BIGINT NOT NULL);"
    "CREATE TABLE sessions (id TEXT PRIMARY KEY, username TEXT NOT NULL, client_id TEXT NOT NULL,"
    " scope TEXT NOT NULL, patient TEXT NOT NULL, created BIGINT NOT NULL, expires BIGINT NOT NULL,"
    " revoked BIGINT NOT NULL DEFAULT 0);"
    "CREATE TABLE refresh_tokens (hash TEXT PRIMARY KEY, session_id TEXT NOT NULL,"
    " used BIGINT NOT NULL DEFAULT 0, expires BIGINT NOT NULL);"
    "CREATE TABLE revoked (id TEXT PRIMARY KEY, expires BIGINT NOT NULL, at BIGINT NOT NULL);"
    "CREATE INDEX revoked_at ON revoked (at);"
    "CREATE TABLE clients (client_id TEXT PRIMARY KEY, name TEXT NOT NULL, type TEXT NOT NULL,"
    " secret_hash TEXT NOT NULL, redirect_uris TEXT NOT NULL, scope TEXT NOT NULL,"
    " jwks TEXT NOT NULL, disabled BIGINT NOT NULL DEFAULT 0, created BIGINT NOT NULL);"
    "CREATE TABLE codes (hash TEXT PRIMARY KEY, client_id TEXT NOT NULL, redirect_uri TEXT NOT NULL,"
    " username TEXT NOT NULL, scope TEXT NOT NULL, patient TEXT NOT NULL, challenge TEXT NOT NULL,"
    " expires BIGINT NOT NULL, used BIGINT NOT NULL DEFAULT 0);"
    "CREATE TABLE assertion_jtis (id TEXT PRIMARY KEY, expires BIGINT NOT NULL);",
    /* 2: EHR launch contexts (launch.c), fhirUser links, JWKS by URL, dynamic registration */
    "CREATE TABLE launches (hash TEXT PRIMARY KEY, patient TEXT NOT NULL, created_by TEXT NOT NULL,"
    " expires BIGINT NOT NULL, used BIGINT NOT NULL DEFAULT 0);"
    "ALTER TABLE users ADD COLUMN fhir_user TEXT NOT NULL DEFAULT '';"
    "ALTER TABLE clients ADD COLUMN jwks_uri TEXT NOT NULL DEFAULT '';"
    "CREATE TABLE initial_tokens (hash TEXT PRIMARY KEY, expires BIGINT NOT NULL, created BIGINT NOT NULL);",
    NULL,
};

int hv__auth_db_open(hv_engine_t *e, hv_db_t **out, hv_error_t *err) {
    hv_db_t *db = NULL;
    int rc = hv_db_open(hv_engine_db_url(e), hv_engine_data_dir(e), "auth", &db, err);
    if (rc == HV_OK) rc = hv_db_migrate(db, "auth", hv__auth_migrations, err);
    if (rc != HV_OK) {
        hv_db_close(db);
        return rc;
    }
    *out = db;
    return HV_OK;
}

int hv__username_valid(const char *name) {
    size_t i, n = name ? strlen(name) : 0;
    if (n == 0 || n > HV__USERNAME_MAX) return 0;
    for (i = 0; i < n; i++) {
        unsigned char c = (unsigned char)name[i];
        if (!isalnum(c) && c != '.' && c != '_' && c != '-' && c != '@') return 0;
    }
    return 1;
}

static void copy_col(hv_db_stmt_t *st, int col, char *out, size_t outlen) {
    size_t len = 0;
    const char *s = hv_db_column_text(st, col, &len);
    if (s == NULL || len >= outlen) len = 0;
    if (s) memcpy(out, s, len);
    out[len] = '\0';
}

int hv__user_get(hv_db_t *db, const char *name, hv__user_t *u) {
    hv_db_stmt_t *st = NULL;
    int rc = hv_db_prepare(db, "SELECT name, role, hash, disabled, failures, locked_until, fhir_user FROM users WHERE name = $1", &st);
    if (rc != HV_OK) return rc;
    hv_db_bind_text(st, 1, name, strlen(name));
    rc = hv_db_step(st);
    if (rc == HV_DB_ROW) {
        hv__user_t x;
        memset(&x, 0, sizeof(x));
        copy_col(st, 0, x.name, sizeof(x.name));
        copy_col(st, 1, x.role, sizeof(x.role));
        copy_col(st, 2, x.hash, sizeof(x.hash));
        x.disabled = (int)hv_db_column_int64(st, 3);
        x.failures = hv_db_column_int64(st, 4);
        x.locked_until = hv_db_column_int64(st, 5);
        copy_col(st, 6, x.fhir_user, sizeof(x.fhir_user));
        *u = x;
        rc = HV_OK;
    } else if (rc == HV_OK) {
        rc = HV_ENOTFOUND;
    }
    hv_db_done(st);
    return rc;
}

static int exec1(hv_db_t *db, const char *sql, const char *a, const char *b, const char *c,
                 int64_t i4) {
    hv_db_stmt_t *st = NULL;
    int rc = hv_db_prepare(db, sql, &st), n = 1;
    if (rc != HV_OK) return rc;
    if (a) hv_db_bind_text(st, n++, a, strlen(a));
    if (b) hv_db_bind_text(st, n++, b, strlen(b));
    if (c) hv_db_bind_text(st, n++, c, strlen(c));
    if (i4 >= 0) hv_db_bind_int64(st, n, i4);
    rc = hv_db_step(st);
    hv_db_done(st);
    return rc < 0 ? rc : HV_OK;
}

int hv__user_insert(hv_db_t *db, const char *name, const char *role, const char *hash) {
    return exec1(db, "INSERT INTO users (name, role, hash, created) VALUES ($1, $2, $3, $4)", name, role,
                 hash, (int64_t)(hv_now_ms() / 1000));
}

int hv__user_set_hash(hv_db_t *db, const char *name, const char *hash) {
    int rc = exec1(db, "UPDATE users SET hash = $1, failures = 0, locked_until = 0 WHERE name = $2", hash,
                   name, NULL, -1);
    if (rc == HV_OK && hv_db_changes(db) == 0) rc = HV_ENOTFOUND;
    return rc;
}

int hv__user_set_fhir_user(hv_db_t *db, const char *name, const char *ref) {
    int rc = exec1(db, "UPDATE users SET fhir_user = $1 WHERE name = $2", ref, name, NULL, -1);
    if (rc == HV_OK && hv_db_changes(db) == 0) rc = HV_ENOTFOUND;
    return rc;
}

int hv__user_set_disabled(hv_db_t *db, const char *name, int disabled) {
    int rc = exec1(db, "UPDATE users SET disabled = $2 WHERE name = $1", name, NULL, NULL, disabled ? 1 : 0);
    if (rc == HV_OK && hv_db_changes(db) == 0) rc = HV_ENOTFOUND;
    return rc;
}

int hv__user_count(hv_db_t *db, int64_t *n) {
    hv_db_stmt_t *st = NULL;
    int rc = hv_db_prepare(db, "SELECT COUNT(*) FROM users", &st);
    if (rc != HV_OK) return rc;
    rc = hv_db_step(st);
    if (rc == HV_DB_ROW) {
        *n = hv_db_column_int64(st, 0);
        rc = HV_OK;
    }
    hv_db_done(st);
    return rc < 0 ? rc : HV_OK;
}

int hv__user_check_login(hv_db_t *db, const char *name, const char *password, size_t plen,
                         int64_t threshold, int64_t lock_ms, uint64_t scrypt_n, hv__user_t *out,
                         int64_t *retry_ms) {
    hv__user_t u;
    int64_t now = (int64_t)hv_now_ms();
    int rc;
    if (!hv__username_valid(name)) {
        hv__password_dummy(password, plen, scrypt_n);
        return HV_EPERM;
    }
    rc = hv__user_get(db, name, &u);
    if (rc == HV_ENOTFOUND) {
        hv__password_dummy(password, plen, scrypt_n);
        return HV_EPERM;
    }
    if (rc != HV_OK) return rc;
    if (u.locked_until > now) {
        *retry_ms = u.locked_until - now;
        return HV_EBUSY;
    }
    rc = hv__password_verify(password, plen, u.hash);
    if (rc == HV_OK && !u.disabled) {
        if (u.failures != 0 || u.locked_until != 0)
            rc = exec1(db, "UPDATE users SET failures = 0, locked_until = 0 WHERE name = $1", name, NULL,
                       NULL, -1);
        if (rc == HV_OK) *out = u;
        return rc;
    }
    if (rc != HV_OK && rc != HV_EPERM) return rc;
    /* a wrong password (or a disabled account): count it, lock past the threshold */
    {
        int64_t f = u.failures + 1, until = 0;
        if (threshold > 0 && f >= threshold) {
            int64_t d = lock_ms, k = f - threshold;
            while (k-- > 0 && d < LOCK_CAP_MS) d *= 2;
            if (d > LOCK_CAP_MS) d = LOCK_CAP_MS;
            until = now + d;
        }
        {
            hv_db_stmt_t *st = NULL;
            rc = hv_db_prepare(db, "UPDATE users SET failures = $1, locked_until = $2 WHERE name = $3", &st);
            if (rc != HV_OK) return rc;
            hv_db_bind_int64(st, 1, f);
            hv_db_bind_int64(st, 2, until);
            hv_db_bind_text(st, 3, name, strlen(name));
            rc = hv_db_step(st);
            hv_db_done(st);
            if (rc < 0) return rc;
        }
    }
    return HV_EPERM;
}
