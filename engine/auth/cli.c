/*
 * cli.c — the auth module's commands. Each opens the auth tables itself (SQLite
 * under --data, or --db PostgreSQL), so it works while the engine runs: the
 * engine reads users and clients per request and picks up revocations within
 * two seconds.
 *
 *   user add NAME --role ROLE      password: one line on standard input
 *   user list | user disable NAME | user enable NAME | user passwd NAME
 *   user link NAME Practitioner/ID  the user's fhirUser
 *   launch create --patient ID     an EHR launch context; prints its value alone
 *   client add --name N --type backend|public|confidential [--jwks FILE]
 *              [--redirect-uri URI]... [--scope S]     prints the client_id alone
 *   client list
 *   client initial-token [--ttl D] an RFC 7591 initial access token; prints it alone
 *   keys rotate                    a new signing key becomes current
 *   tls selfsigned [--tls-cert F] [--tls-key F] [--host NAME] [--days N]
 */
#include "config.h"
#include "engine/auth/auth_int.h"

#include <fcntl.h>
#include <json-c/json.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static int open_db(hv_engine_t *e, hv_db_t **db) {
    hv_error_t err;
    char msg[1024];
    struct stat st;
    const char *dir = hv_engine_data_dir(e);
    hv_error_clear(&err);
    if (hv_engine_db_url(e) == NULL && stat(dir, &st) != 0 && mkdir(dir, 0700) != 0) {
        fprintf(stderr, "holovitals: cannot create the data directory %s\n", dir);
        return HV_EXIT_FAILURE;
    }
    if (hv__auth_db_open(e, db, &err) != HV_OK) {
        hv_error_format(&err, msg, sizeof(msg));
        fprintf(stderr, "holovitals: %s\n", msg);
        return HV_EXIT_FAILURE;
    }
    return HV_EXIT_OK;
}

/* Reads one line (the password) from standard input, without its newline. */
static int read_password(char *out, size_t outlen) {
    size_t n;
    if (fgets(out, (int)outlen, stdin) == NULL) {
        fprintf(stderr, "holovitals: expected the password on standard input\n");
        return -1;
    }
    n = strlen(out);
    if (n > 0 && out[n - 1] == '\n') out[--n] = '\0';
    if (n > 0 && out[n - 1] == '\r') out[--n] = '\0';
    if (n < 8) {
        fprintf(stderr, "holovitals: the password must have at least 8 characters\n");
        return -1;
    }
    if (n > HV__PASSWORD_MAX) {
        fprintf(stderr, "holovitals: the password is too long\n");
        return -1;
    }
    return 0;
}

static uint64_t scrypt_n(hv_engine_t *e) { return (uint64_t)hv_config_int(hv_engine_config(e), "auth.password.scrypt_n"); }

static int cmd_user_add(hv_engine_t *e, int argc, char **argv) {
    const char *name = NULL, *role = NULL;
    char pw[HV__PASSWORD_MAX + 2], hash[192];
    hv_db_t *db = NULL;
    int i, rc = HV_EXIT_USAGE;
    for (i = 0; i < argc; i++) {
        if (strcmp(argv[i], "--role") == 0 && i + 1 < argc) role = argv[++i];
        else if (strncmp(argv[i], "--role=", 7) == 0) role = argv[i] + 7;
        else if (argv[i][0] != '-' && name == NULL) name = argv[i];
        else goto usage;
    }
    if (name == NULL || role == NULL) goto usage;
    if (!hv__username_valid(name)) {
        fprintf(stderr, "holovitals: user names are 1-64 characters of A-Z a-z 0-9 . _ - @\n");
        return HV_EXIT_USAGE;
    }
    if (hv_auth_role_parse(role) == 0) {
        fprintf(stderr, "holovitals: unknown role '%s'; roles: admin, integrator, clinician, auditor, service\n", role);
        return HV_EXIT_USAGE;
    }
    if (read_password(pw, sizeof(pw)) != 0) return HV_EXIT_USAGE;
    if (hv__password_hash(pw, strlen(pw), scrypt_n(e), hash, sizeof(hash)) != HV_OK) {
        OPENSSL_cleanse(pw, sizeof(pw));
        fprintf(stderr, "holovitals: cannot hash the password (is auth.password.scrypt_n a power of two?)\n");
        return HV_EXIT_FAILURE;
    }
    OPENSSL_cleanse(pw, sizeof(pw));
    if ((rc = open_db(e, &db)) != HV_EXIT_OK) return rc;
    i = hv__user_insert(db, name, role, hash);
    hv_db_close(db);
    if (i == HV_ECONFLICT) {
        fprintf(stderr, "holovitals: user '%s' exists already\n", name);
        return HV_EXIT_FAILURE;
    }
    if (i != HV_OK) {
        fprintf(stderr, "holovitals: cannot add the user: %s\n", hv_strerror(i));
        return HV_EXIT_FAILURE;
    }
    fprintf(stderr, "user %s added with role %s\n", name, role);
    return HV_EXIT_OK;
usage:
    fprintf(stderr, "usage: holovitals user add NAME --role ROLE   (password on standard input)\n");
    return rc;
}

static int cmd_user_list(hv_engine_t *e, int argc, char **argv) {
    hv_db_t *db = NULL;
    hv_db_stmt_t *st = NULL;
    int rc;
    (void)argv;
    if (argc != 0) {
        fprintf(stderr, "usage: holovitals user list\n");
        return HV_EXIT_USAGE;
    }
    if ((rc = open_db(e, &db)) != HV_EXIT_OK) return rc;
    rc = hv_db_prepare(db, "SELECT name, role, disabled, locked_until FROM users ORDER BY name", &st);
    if (rc == HV_OK) {
        int64_t now = (int64_t)hv_now_ms();
        while ((rc = hv_db_step(st)) == HV_DB_ROW) {
            size_t l;
            const char *n = hv_db_column_text(st, 0, &l), *r;
            char nb[HV__USERNAME_MAX + 1];
            snprintf(nb, sizeof(nb), "%s", n);
            r = hv_db_column_text(st, 1, &l);
            printf("%s\t%s\t%s%s\n", nb, r, hv_db_column_int64(st, 2) ? "disabled" : "active",
                   hv_db_column_int64(st, 3) > now ? ",locked" : "");
        }
        hv_db_done(st);
    }
    hv_db_close(db);
    return rc < 0 ? HV_EXIT_FAILURE : HV_EXIT_OK;
}

static int set_disabled(hv_engine_t *e, int argc, char **argv, int disabled) {
    hv_db_t *db = NULL;
    int rc;
    if (argc != 1) {
        fprintf(stderr, "usage: holovitals user %s NAME\n", disabled ? "disable" : "enable");
        return HV_EXIT_USAGE;
    }
    if ((rc = open_db(e, &db)) != HV_EXIT_OK) return rc;
    rc = hv__user_set_disabled(db, argv[0], disabled);
    if (rc == HV_OK && disabled) {
        /* end the user's sessions and current access tokens everywhere */
        char id[HV__USERNAME_MAX + 3];
        int64_t horizon = (int64_t)(hv_now_ms() / 1000) +
                          (int64_t)(hv_config_duration_ms(hv_engine_config(e), "auth.access_ttl") / 1000) + 3600;
        hv_db_stmt_t *st = NULL;
        snprintf(id, sizeof(id), "u:%s", argv[0]);
        rc = hv__auth_revoke_db(db, id, horizon);
        if (rc == HV_OK) rc = hv_db_prepare(db, "UPDATE sessions SET revoked = 1 WHERE username = $1", &st);
        if (rc == HV_OK) {
            hv_db_bind_text(st, 1, argv[0], strlen(argv[0]));
            rc = hv_db_step(st);
            hv_db_done(st);
            if (rc > 0) rc = HV_OK;
        }
    } else if (rc == HV_OK) {
        hv_db_stmt_t *st = NULL;
        char id[HV__USERNAME_MAX + 3];
        snprintf(id, sizeof(id), "u:%s", argv[0]);
        rc = hv_db_prepare(db, "UPDATE revoked SET expires = 0 WHERE id = $1", &st);
        if (rc == HV_OK) {
            hv_db_bind_text(st, 1, id, strlen(id));
            rc = hv_db_step(st);
            hv_db_done(st);
            if (rc > 0) rc = HV_OK;
        }
    }
    hv_db_close(db);
    if (rc == HV_ENOTFOUND) {
        fprintf(stderr, "holovitals: no user '%s'\n", argv[0]);
        return HV_EXIT_FAILURE;
    }
    if (rc != HV_OK) {
        fprintf(stderr, "holovitals: %s\n", hv_strerror(rc));
        return HV_EXIT_FAILURE;
    }
    return HV_EXIT_OK;
}

static int cmd_user_disable(hv_engine_t *e, int argc, char **argv) { return set_disabled(e, argc, argv, 1); }
static int cmd_user_enable(hv_engine_t *e, int argc, char **argv) { return set_disabled(e, argc, argv, 0); }

/* user link NAME REF: the FHIR resource that is the user's fhirUser (SMART §fhirUser). */
static int cmd_user_link(hv_engine_t *e, int argc, char **argv) {
    hv_db_t *db = NULL;
    int rc;
    if (argc != 2 || (!hv__auth_fhir_user_valid(argv[1]) && strcmp(argv[1], "-") != 0)) {
        fprintf(stderr, "usage: holovitals user link NAME Practitioner/ID|Patient/ID|RelatedPerson/ID|Person/ID  (- unlinks)\n");
        return HV_EXIT_USAGE;
    }
    if ((rc = open_db(e, &db)) != HV_EXIT_OK) return rc;
    rc = hv__user_set_fhir_user(db, argv[0], strcmp(argv[1], "-") == 0 ? "" : argv[1]);
    hv_db_close(db);
    if (rc == HV_ENOTFOUND) {
        fprintf(stderr, "holovitals: no user '%s'\n", argv[0]);
        return HV_EXIT_FAILURE;
    }
    if (rc != HV_OK) {
        fprintf(stderr, "holovitals: cannot link the user: %s\n", hv_strerror(rc));
        return HV_EXIT_FAILURE;
    }
    return HV_EXIT_OK;
}

/* client initial-token [--ttl DURATION]: an RFC 7591 initial access token; prints it alone. */
static int cmd_client_initial_token(hv_engine_t *e, int argc, char **argv) {
    char tok[80];
    hv_db_t *db = NULL;
    int64_t ttl = 24 * 3600;
    int rc;
    if (argc == 2 && strcmp(argv[0], "--ttl") == 0) {
        char *end = NULL;
        long long v = strtoll(argv[1], &end, 10);
        int64_t unit = end != NULL && strcmp(end, "m") == 0 ? 60 : end != NULL && strcmp(end, "h") == 0 ? 3600
                       : end != NULL && strcmp(end, "d") == 0 ? 86400 : end != NULL && (strcmp(end, "s") == 0 || *end == '\0') ? 1
                                                                                                            : 0;
        if (end == argv[1] || v <= 0 || unit == 0 || v > 366LL * 86400 / unit) {
            fprintf(stderr, "holovitals: --ttl takes a duration such as 30m, 24h or 7d\n");
            return HV_EXIT_USAGE;
        }
        ttl = (int64_t)v * unit;
    } else if (argc != 0) {
        fprintf(stderr, "usage: holovitals client initial-token [--ttl DURATION]\n");
        return HV_EXIT_USAGE;
    }
    if ((rc = open_db(e, &db)) != HV_EXIT_OK) return rc;
    rc = hv__auth_initial_token_create(db, ttl, tok, sizeof(tok));
    hv_db_close(db);
    if (rc != HV_OK) {
        fprintf(stderr, "holovitals: cannot store the token: %s\n", hv_strerror(rc));
        return HV_EXIT_FAILURE;
    }
    printf("%s\n", tok);
    return HV_EXIT_OK;
}

/* launch create --patient ID: an EHR launch context; prints the launch value alone. */
static int cmd_launch_create(hv_engine_t *e, int argc, char **argv) {
    const char *patient = NULL;
    char launch[HV__LAUNCH_MAX];
    hv_db_t *db = NULL;
    int rc;
    if (argc == 2 && strcmp(argv[0], "--patient") == 0) patient = argv[1];
    if (patient == NULL) {
        fprintf(stderr, "usage: holovitals launch create --patient ID\n");
        return HV_EXIT_USAGE;
    }
    if ((rc = open_db(e, &db)) != HV_EXIT_OK) return rc;
    rc = hv__auth_launch_create(db, patient, "cli",
                                (int64_t)(hv_config_duration_ms(hv_engine_config(e), "auth.launch_ttl") / 1000), launch,
                                sizeof(launch));
    hv_db_close(db);
    if (rc == HV_EINVAL) {
        fprintf(stderr, "holovitals: the patient must be a FHIR id\n");
        return HV_EXIT_USAGE;
    }
    if (rc != HV_OK) {
        fprintf(stderr, "holovitals: cannot store the launch: %s\n", hv_strerror(rc));
        return HV_EXIT_FAILURE;
    }
    printf("%s\n", launch);
    return HV_EXIT_OK;
}

static int cmd_user_passwd(hv_engine_t *e, int argc, char **argv) {
    char pw[HV__PASSWORD_MAX + 2], hash[192];
    hv_db_t *db = NULL;
    int rc;
    if (argc != 1) {
        fprintf(stderr, "usage: holovitals user passwd NAME   (new password on standard input)\n");
        return HV_EXIT_USAGE;
    }
    if (read_password(pw, sizeof(pw)) != 0) return HV_EXIT_USAGE;
    rc = hv__password_hash(pw, strlen(pw), scrypt_n(e), hash, sizeof(hash));
    OPENSSL_cleanse(pw, sizeof(pw));
    if (rc != HV_OK) {
        fprintf(stderr, "holovitals: cannot hash the password\n");
        return HV_EXIT_FAILURE;
    }
    if ((rc = open_db(e, &db)) != HV_EXIT_OK) return rc;
    rc = hv__user_set_hash(db, argv[0], hash);
    hv_db_close(db);
    if (rc != HV_OK) {
        fprintf(stderr, "holovitals: %s\n", rc == HV_ENOTFOUND ? "no such user" : hv_strerror(rc));
        return HV_EXIT_FAILURE;
    }
    return HV_EXIT_OK;
}

static int cmd_client_add(hv_engine_t *e, int argc, char **argv) {
    hv__client_t c;
    const char *name = NULL, *type = NULL, *jwks_file = NULL, *scope = NULL, *jwks_uri = NULL;
    char secret[65] = "", why[256];
    hv_db_t *db = NULL;
    size_t ru = 0;
    int i, rc;
    memset(&c, 0, sizeof(c));
    for (i = 0; i < argc; i += 2) { /* --option value pairs */
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (v == NULL) goto usage;
        if (strcmp(a, "--name") == 0) name = v;
        else if (strcmp(a, "--type") == 0) type = v;
        else if (strcmp(a, "--jwks") == 0) jwks_file = v;
        else if (strcmp(a, "--jwks-uri") == 0) jwks_uri = v;
        else if (strcmp(a, "--scope") == 0) scope = v;
        else if (strcmp(a, "--redirect-uri") == 0) {
            size_t n = strlen(v);
            if (n == 0 || strchr(v, '\n') || ru + n + 2 > sizeof(c.redirect_uris) || strchr(v, '#')) {
                fprintf(stderr, "holovitals: bad or too many --redirect-uri values (no fragments allowed)\n");
                return HV_EXIT_USAGE;
            }
            if (ru) c.redirect_uris[ru++] = '\n';
            memcpy(c.redirect_uris + ru, v, n + 1);
            ru += n;
        } else goto usage;
    }
    if (name == NULL || type == NULL || strlen(name) >= sizeof(c.name)) goto usage;
    if (strcmp(type, "backend") == 0) {
        if ((jwks_file == NULL) == (jwks_uri == NULL) || ru) {
            fprintf(stderr, "holovitals: a backend client needs --jwks FILE or --jwks-uri URL (one of them) and takes"
                            " no --redirect-uri\n");
            return HV_EXIT_USAGE;
        }
        if (jwks_uri != NULL && !hv__jwks_uri_valid(jwks_uri)) {
            fprintf(stderr, "holovitals: --jwks-uri must be an https URL (http only to 127.0.0.1, localhost, [::1])\n");
            return HV_EXIT_USAGE;
        }
    } else if (strcmp(type, "public") == 0 || strcmp(type, "confidential") == 0) {
        if (ru == 0 || jwks_file || jwks_uri) {
            fprintf(stderr, "holovitals: a %s client needs --redirect-uri URI and takes no --jwks\n", type);
            return HV_EXIT_USAGE;
        }
    } else {
        fprintf(stderr, "holovitals: --type must be backend, public or confidential\n");
        return HV_EXIT_USAGE;
    }
    if (scope == NULL) scope = strcmp(type, "backend") == 0 ? "system/*.rs" : "launch/patient openid fhirUser offline_access online_access patient/*.rs user/*.rs";
    {
        hv_auth_scopes_t *sc = hv_malloc(sizeof(*sc));
        hv_error_t err;
        rc = sc ? hv_auth_scopes_parse(scope, sc, &err) : HV_ENOMEM;
        hv_free(sc);
        if (rc != HV_OK || strlen(scope) >= sizeof(c.scope)) {
            fprintf(stderr, "holovitals: --scope: %s\n", rc == HV_OK ? "too long" : err.message);
            return HV_EXIT_USAGE;
        }
    }
    if (jwks_file) {
        hv_error_t err;
        size_t jlen;
        hv_error_clear(&err);
        if (hv_file_read(jwks_file, 256 * 1024, &c.jwks, &jlen, &err) != HV_OK) {
            fprintf(stderr, "holovitals: %s: %s\n", jwks_file, err.message);
            return HV_EXIT_USAGE;
        }
        if (hv__jwks_check(c.jwks, why, sizeof(why)) != 0) {
            fprintf(stderr, "holovitals: %s: %s\n", jwks_file, why);
            hv_free(c.jwks);
            return HV_EXIT_USAGE;
        }
    }
    snprintf(c.name, sizeof(c.name), "%s", name);
    snprintf(c.type, sizeof(c.type), "%s", type);
    if (jwks_uri != NULL) snprintf(c.jwks_uri, sizeof(c.jwks_uri), "%s", jwks_uri);
    snprintf(c.scope, sizeof(c.scope), "%s", scope);
    hv__auth_random_id(c.client_id, 16);
    if (strcmp(type, "confidential") == 0) {
        hv__auth_random_id(secret, 32);
        hv__auth_sha256_hex(secret, strlen(secret), c.secret_hash);
    }
    if ((rc = open_db(e, &db)) != HV_EXIT_OK) {
        hv_free(c.jwks);
        return rc;
    }
    rc = hv__client_insert(db, &c);
    hv_db_close(db);
    hv_free(c.jwks);
    if (rc != HV_OK) {
        fprintf(stderr, "holovitals: cannot register the client: %s\n", hv_strerror(rc));
        return HV_EXIT_FAILURE;
    }
    printf("%s\n", c.client_id);
    if (secret[0]) {
        fprintf(stderr, "client secret (shown once, store it now):\n");
        printf("%s\n", secret);
    }
    return HV_EXIT_OK;
usage:
    fprintf(stderr, "usage: holovitals client add --name N --type backend|public|confidential [--jwks FILE|--jwks-uri URL]"
                    " [--redirect-uri URI]... [--scope S]\n");
    return HV_EXIT_USAGE;
}

static int cmd_client_list(hv_engine_t *e, int argc, char **argv) {
    hv_db_t *db = NULL;
    hv_db_stmt_t *st = NULL;
    int rc;
    (void)argv;
    if (argc != 0) {
        fprintf(stderr, "usage: holovitals client list\n");
        return HV_EXIT_USAGE;
    }
    if ((rc = open_db(e, &db)) != HV_EXIT_OK) return rc;
    rc = hv_db_prepare(db, "SELECT client_id, type, name, scope FROM clients ORDER BY created, client_id", &st);
    if (rc == HV_OK) {
        while ((rc = hv_db_step(st)) == HV_DB_ROW) {
            size_t l;
            char id[HV_AUTH_MAX_ID], ty[16], nm[128];
            snprintf(id, sizeof(id), "%s", hv_db_column_text(st, 0, &l));
            snprintf(ty, sizeof(ty), "%s", hv_db_column_text(st, 1, &l));
            snprintf(nm, sizeof(nm), "%s", hv_db_column_text(st, 2, &l));
            printf("%s\t%s\t%s\t%s\n", id, ty, nm, hv_db_column_text(st, 3, &l));
        }
        hv_db_done(st);
    }
    hv_db_close(db);
    return rc < 0 ? HV_EXIT_FAILURE : HV_EXIT_OK;
}

static int cmd_keys_rotate(hv_engine_t *e, int argc, char **argv) {
    hv_db_t *db = NULL;
    char kid[64];
    int rc;
    hv_config_t *c = hv_engine_config(e);
    (void)argv;
    if (argc != 0) {
        fprintf(stderr, "usage: holovitals keys rotate\n");
        return HV_EXIT_USAGE;
    }
    if ((rc = open_db(e, &db)) != HV_EXIT_OK) return rc;
    rc = hv__auth_keys_rotate(db, hv_config_str(c, "auth.alg"), hv_config_str(c, "auth.key_passphrase"), kid, sizeof(kid));
    hv_db_close(db);
    if (rc != HV_OK) {
        fprintf(stderr, "holovitals: cannot rotate the signing key: %s\n", hv_strerror(rc));
        return HV_EXIT_FAILURE;
    }
    printf("%s\n", kid);
    fprintf(stderr, "new signing key %s; running engines use it after their next start\n", kid);
    return HV_EXIT_OK;
}

/* ---- tls selfsigned ---- */

static int write_private(const char *path, EVP_PKEY *k) {
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    FILE *f;
    int ok;
    if (fd < 0) return -1;
    f = fdopen(fd, "w");
    if (f == NULL) {
        close(fd);
        return -1;
    }
    ok = PEM_write_PrivateKey(f, k, NULL, NULL, 0, NULL, NULL);
    return (fclose(f) == 0 && ok) ? 0 : -1;
}

static int cmd_tls_selfsigned(hv_engine_t *e, int argc, char **argv) {
    const char *cert = hv_config_str(hv_engine_config(e), "tls.cert"),
               *key = hv_config_str(hv_engine_config(e), "tls.key"), *host = "localhost";
    char cpath[4096], kpath[4096], san[600];
    long days = 30;
    EVP_PKEY *k = NULL;
    X509 *x = NULL;
    X509_EXTENSION *ext = NULL;
    X509V3_CTX ctx;
    FILE *f = NULL;
    int i, rc = HV_EXIT_FAILURE;
    for (i = 0; i < argc; i++) {
        if (strcmp(argv[i], "--host") == 0 && i + 1 < argc) host = argv[++i];
        else if (strcmp(argv[i], "--days") == 0 && i + 1 < argc) days = strtol(argv[++i], NULL, 10);
        else {
            fprintf(stderr, "usage: holovitals tls selfsigned [--tls-cert FILE] [--tls-key FILE] [--host NAME] [--days N]\n");
            return HV_EXIT_USAGE;
        }
    }
    if (days < 1 || days > 825 || strlen(host) > 253 || strpbrk(host, ", \n") != NULL) {
        fprintf(stderr, "holovitals: --days must be 1..825 and --host a DNS name\n");
        return HV_EXIT_USAGE;
    }
    if (cert[0] == '\0' || key[0] == '\0') {
        struct stat st;
        snprintf(cpath, sizeof(cpath), "%s/tls", hv_engine_data_dir(e));
        if (stat(hv_engine_data_dir(e), &st) != 0) mkdir(hv_engine_data_dir(e), 0700);
        if (stat(cpath, &st) != 0 && mkdir(cpath, 0700) != 0) {
            fprintf(stderr, "holovitals: cannot create %s\n", cpath);
            return HV_EXIT_FAILURE;
        }
        snprintf(kpath, sizeof(kpath), "%s/tls/key.pem", hv_engine_data_dir(e));
        snprintf(cpath, sizeof(cpath), "%s/tls/cert.pem", hv_engine_data_dir(e));
    } else {
        snprintf(cpath, sizeof(cpath), "%s", cert);
        snprintf(kpath, sizeof(kpath), "%s", key);
    }
    k = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "prime256v1");
    x = X509_new();
    if (k == NULL || x == NULL) goto out;
    {
        unsigned char serial[16];
        BIGNUM *bn;
        hv_random_secure(serial, sizeof(serial));
        serial[0] &= 0x7f;
        bn = BN_bin2bn(serial, sizeof(serial), NULL);
        if (bn == NULL || BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(x)) == NULL) {
            BN_free(bn);
            goto out;
        }
        BN_free(bn);
    }
    X509_set_version(x, 2);
    X509_gmtime_adj(X509_getm_notBefore(x), -300);
    X509_gmtime_adj(X509_getm_notAfter(x), days * 86400L);
    X509_set_pubkey(x, k);
    X509_NAME_add_entry_by_txt(X509_get_subject_name(x), "O", MBSTRING_ASC, (const unsigned char *)"HoloVitals development", -1, -1, 0);
    X509_NAME_add_entry_by_txt(X509_get_subject_name(x), "CN", MBSTRING_ASC, (const unsigned char *)host, -1, -1, 0);
    X509_set_issuer_name(x, X509_get_subject_name(x));
    X509V3_set_ctx(&ctx, x, x, NULL, NULL, 0);
    snprintf(san, sizeof(san), "DNS:%s,DNS:localhost,IP:127.0.0.1,IP:::1", host);
    ext = X509V3_EXT_conf_nid(NULL, &ctx, NID_subject_alt_name, san);
    if (ext == NULL || !X509_add_ext(x, ext, -1)) goto out;
    X509_EXTENSION_free(ext);
    ext = X509V3_EXT_conf_nid(NULL, &ctx, NID_basic_constraints, "critical,CA:FALSE");
    if (ext == NULL || !X509_add_ext(x, ext, -1)) goto out;
    X509_EXTENSION_free(ext);
    ext = X509V3_EXT_conf_nid(NULL, &ctx, NID_ext_key_usage, "serverAuth,clientAuth");
    if (ext == NULL || !X509_add_ext(x, ext, -1)) goto out;
    if (!X509_sign(x, k, EVP_sha256())) goto out;
    if (write_private(kpath, k) != 0) {
        fprintf(stderr, "holovitals: cannot write %s\n", kpath);
        goto out;
    }
    f = fopen(cpath, "w");
    if (f == NULL || !PEM_write_X509(f, x)) {
        fprintf(stderr, "holovitals: cannot write %s\n", cpath);
        goto out;
    }
    printf("certificate: %s\nprivate key: %s\n", cpath, kpath);
    fprintf(stderr, "a self-signed development certificate for %s, valid %ld days: "
                    "serve with --tls-cert %s --tls-key %s; never use it in production\n", host, days, cpath, kpath);
    rc = HV_EXIT_OK;
out:
    if (f) fclose(f);
    X509_EXTENSION_free(ext);
    X509_free(x);
    EVP_PKEY_free(k);
    if (rc != HV_EXIT_OK) fprintf(stderr, "holovitals: could not make the certificate\n");
    return rc;
}

const hv_command_t hv__auth_commands[] = {
    {"user add", "user add NAME --role admin|integrator|clinician|auditor|service",
     "add a user (password: one line on standard input)",
     "Creates a user with a role. The password is read from standard input (one line, at least\n"
     "8 characters) and stored as a scrypt hash. The first admin is created this way: there is no\n"
     "default account.", cmd_user_add},
    {"user list", "user list", "list users: name, role, state", NULL, cmd_user_list},
    {"user disable", "user disable NAME", "disable a user and end their sessions", NULL, cmd_user_disable},
    {"user enable", "user enable NAME", "enable a disabled user", NULL, cmd_user_enable},
    {"user passwd", "user passwd NAME", "set a user's password (one line on standard input)", NULL, cmd_user_passwd},
    {"user link", "user link NAME Practitioner/ID|Patient/ID|RelatedPerson/ID|Person/ID",
     "link a user to the FHIR resource that is its fhirUser",
     "The id_token of a SMART app launched by this user names the resource as fhirUser\n"
     "(<FHIR base>/Practitioner/ID). '-' removes the link.", cmd_user_link},
    {"launch create", "launch create --patient ID", "make an EHR launch context; prints the launch value",
     "An EHR opens a SMART app with ?iss=<FHIR base>&launch=<value>; the app's token then carries\n"
     "this patient. The value is single use and lives auth.launch_ttl (also POST /auth/launch).",
     cmd_launch_create},
    {"client add", "client add --name N --type backend|public|confidential [--jwks FILE|--jwks-uri URL] [--redirect-uri URI]... [--scope S]",
     "register an OAuth2 client; prints its client_id",
     "backend: SMART Backend Services, authenticates with JWTs signed by a key of the JWKS in FILE\n"
     "(RS384 or ES384), or of the JWKS fetched from URL (cached per its Cache-Control, refetched for an\n"
     "unknown kid); default scope system/*.rs.\n"
     "public: a browser or native SMART app (PKCE); confidential: a server-side app whose secret is\n"
     "printed once on the line after the client_id. Redirect URIs are matched exactly.",
     cmd_client_add},
    {"client list", "client list", "list OAuth2 clients", NULL, cmd_client_list},
    {"client initial-token", "client initial-token [--ttl DURATION]",
     "make a single-use initial access token for POST /auth/register-client",
     "Prints an RFC 7591 initial access token (default lifetime 24h). A client registered with it gets\n"
     "at most auth.registration.max_scope; an admin's access token registers without that limit.",
     cmd_client_initial_token},
    {"keys rotate", "keys rotate", "make a new token-signing key current",
     "Generates a new signing key (auth.alg) and makes it current. Tokens signed by the old keys\n"
     "stay valid until they expire; running engines switch within auth.keys_check (2 s).", cmd_keys_rotate},
    {"tls selfsigned", "tls selfsigned [--tls-cert FILE] [--tls-key FILE] [--host NAME] [--days N]",
     "write a self-signed development certificate and key",
     "Writes an EC P-256 key and a self-signed certificate for NAME (default localhost; 127.0.0.1\n"
     "and ::1 are always included) to the files given, or to DATA/tls/cert.pem and key.pem.\n"
     "For development only.", cmd_tls_selfsigned},
    {NULL, NULL, NULL, NULL, NULL},
};
