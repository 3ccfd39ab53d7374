/*
 * module.c — serves the admin console: the static files of console/www (HTML, CSS,
 * JavaScript modules) at /console, from memory.
 *
 * The files are read once at start from console.dir (default: the installed copy in
 * $(pkgdatadir)/console, else the source tree's console/www), at most MAX_FILES files
 * of MAX_FILE bytes, names of letters, digits, '-', '_' and '.' only. Every answer
 * carries a strict Content-Security-Policy (scripts, styles and connections to this
 * origin only, no inline script, no framing), X-Content-Type-Options: nosniff and
 * Referrer-Policy: no-referrer; an ETag (SHA-256 of the content) with Cache-Control
 * no-cache lets the browser revalidate cheaply (RFC 9111 §5.2.2.4, RFC 9110 §13.1.2
 * If-None-Match → 304). The files hold no data: the guard lets anyone GET them, and
 * every view asks the engine's APIs with the signed-in user's bearer token.
 *
 *   GET /console      → 301 to /console/
 *   GET /console/     → index.html
 *   GET /console/NAME → that file, or 404
 */
#include "config.h"

#include <dirent.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <string.h>

#include "console/console.h"

#define MAX_FILES 64
#define MAX_FILE (2u << 20)

#ifndef HV_CONSOLE_DATADIR
#define HV_CONSOLE_DATADIR "/usr/local/share/holovitals/console"
#endif
#ifndef HV_CONSOLE_SRCDIR
#define HV_CONSOLE_SRCDIR "console/www"
#endif

static const char CSP[] = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
                          "connect-src 'self'; font-src 'self'; base-uri 'none'; form-action 'self'; "
                          "frame-ancestors 'none'";

typedef struct asset {
    char name[64];
    const char *type;
    char *data;
    size_t len;
    char etag[24]; /* "\"" + 16 hex digits + "\"" */
} asset_t;

typedef struct console {
    asset_t files[MAX_FILES];
    size_t n;
} console_t;

static const hv_setting_t settings[] = {
    {"console.dir", NULL, HV_SET_STRING, "", NULL,
     "Folder of the admin console's files; empty finds the installed copy or the source tree's "
     "console/www."},
    {NULL, NULL, 0, NULL, NULL, NULL},
};

static const char *type_of(const char *name) {
    const char *dot = strrchr(name, '.');
    if (dot == NULL) return NULL;
    if (strcmp(dot, ".html") == 0) return "text/html; charset=utf-8";
    if (strcmp(dot, ".js") == 0) return "text/javascript; charset=utf-8";
    if (strcmp(dot, ".css") == 0) return "text/css; charset=utf-8";
    if (strcmp(dot, ".svg") == 0) return "image/svg+xml";
    if (strcmp(dot, ".json") == 0) return "application/json";
    if (strcmp(dot, ".txt") == 0 || strcmp(dot, ".md") == 0) return "text/plain; charset=utf-8";
    return NULL;
}

static int safe_name(const char *s) {
    size_t i;
    if (s[0] == '\0' || s[0] == '.' || strlen(s) >= sizeof(((asset_t *)0)->name)) return 0;
    for (i = 0; s[i] != '\0'; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
              c == '_' || c == '.'))
            return 0;
    }
    return 1;
}

static int load_one(console_t *c, const char *dir, const char *name) {
    char path[4096];
    asset_t *a = &c->files[c->n];
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    FILE *f;
    size_t i;
    if (snprintf(path, sizeof path, "%s/%s", dir, name) >= (int)sizeof path) return HV_ETOOBIG;
    f = fopen(path, "rb");
    if (f == NULL) return HV_EIO;
    a->data = hv_malloc(MAX_FILE + 1);
    if (a->data == NULL) {
        fclose(f);
        return HV_ENOMEM;
    }
    a->len = fread(a->data, 1, MAX_FILE + 1, f);
    fclose(f);
    if (a->len > MAX_FILE) {
        hv_free(a->data);
        a->data = NULL;
        return HV_ETOOBIG;
    }
    {
        char *fit = hv_realloc(a->data, a->len + 1); /* give back what the cap reserved */
        if (fit != NULL) a->data = fit;
    }
    snprintf(a->name, sizeof a->name, "%s", name);
    a->type = type_of(name);
    EVP_Digest(a->data, a->len, md, &mdlen, EVP_sha256(), NULL);
    a->etag[0] = '"';
    for (i = 0; i < 8 && i < mdlen; i++) snprintf(a->etag + 1 + 2 * i, 3, "%02x", md[i]);
    a->etag[17] = '"';
    a->etag[18] = '\0';
    c->n++;
    return HV_OK;
}

static const char *find_dir(hv_engine_t *e) {
    const char *d = hv_config_str(hv_engine_config(e), "console.dir");
    FILE *f;
    if (d != NULL && d[0] != '\0') return d;
    f = fopen(HV_CONSOLE_DATADIR "/index.html", "rb");
    if (f != NULL) {
        fclose(f);
        return HV_CONSOLE_DATADIR;
    }
    return HV_CONSOLE_SRCDIR;
}

static const asset_t *lookup(const console_t *c, const char *name) {
    size_t i;
    for (i = 0; i < c->n; i++)
        if (strcmp(c->files[i].name, name) == 0) return &c->files[i];
    return NULL;
}

static void common_headers(hv_http_req_t *req) {
    hv_http_header_add(req, "Content-Security-Policy", CSP);
    hv_http_header_add(req, "X-Content-Type-Options", "nosniff");
    hv_http_header_add(req, "Referrer-Policy", "no-referrer");
    hv_http_header_add(req, "X-Frame-Options", "DENY");
}

static void serve(hv_http_req_t *req, const console_t *c, const char *name) {
    const asset_t *a = lookup(c, name);
    const char *inm;
    common_headers(req);
    if (a == NULL) {
        hv_http_respond_error(req, 404, "not-found", "no such console file");
        return;
    }
    hv_http_header_add(req, "ETag", a->etag);
    hv_http_header_add(req, "Cache-Control", "no-cache");
    inm = hv_http_req_header(req, "If-None-Match");
    if (inm != NULL && strstr(inm, a->etag) != NULL) {
        hv_http_respond(req, 304, NULL, NULL, 0);
        return;
    }
    hv_http_respond(req, 200, a->type, a->data, a->len);
}


static void h_root(hv_http_req_t *req, void *ud) {
    (void)ud;
    common_headers(req);
    hv_http_header_add(req, "Location", "/console/");
    hv_http_respond(req, 301, NULL, NULL, 0);
}

/* "/console" and "/console/" reach the same route; only the second may serve the page,
 * whose relative links (app.js, style.css) resolve under /console/. */
static void h_index(hv_http_req_t *req, void *ud) {
    const char *path = hv_http_req_path(req);
    size_t n = strlen(path);
    if (n == 0 || path[n - 1] != '/') {
        h_root(req, ud);
        return;
    }
    serve(req, ud, "index.html");
}

static void h_file(hv_http_req_t *req, void *ud) {
    const char *name = hv_http_req_param(req, "*");
    if (name == NULL || name[0] == '\0') h_index(req, ud);
    else serve(req, ud, name);
}

static void console_free(hv_engine_t *e, void *state) {
    console_t *c = state;
    size_t i;
    (void)e;
    if (c == NULL) return;
    for (i = 0; i < c->n; i++) hv_free(c->files[i].data);
    hv_free(c);
}

static int console_init(hv_engine_t *e, void **state) {
    hv_router_t *r = hv_engine_router(e);
    const char *dir;
    console_t *c;
    DIR *d;
    struct dirent *de;
    int rc = HV_OK;
    *state = NULL;
    if (r == NULL) return HV_OK;
    c = hv_calloc(1, sizeof *c);
    if (c == NULL) return HV_ENOMEM;
    dir = find_dir(e);
    d = opendir(dir);
    if (d == NULL) {
        hv_log(HV_LOG_WARN, "console.unavailable", "the console's files are not at %s: /console answers 404",
               dir);
    } else {
        while (rc == HV_OK && (de = readdir(d)) != NULL) {
            if (!safe_name(de->d_name) || type_of(de->d_name) == NULL) continue;
            if (c->n >= MAX_FILES) {
                hv_log(HV_LOG_WARN, "console.too_many_files", "only the first %d files of %s are served",
                       MAX_FILES, dir);
                break;
            }
            rc = load_one(c, dir, de->d_name);
            if (rc == HV_EIO || rc == HV_ETOOBIG) {
                hv_log(HV_LOG_WARN, "console.file_skipped", "%s/%s: %s", dir, de->d_name, hv_strerror(rc));
                rc = HV_OK;
            }
        }
        closedir(d);
    }
    if (rc == HV_OK) rc = hv_router_add(r, HV_HTTP_GET | HV_HTTP_HEAD, "/console", h_index, c);
    if (rc == HV_OK) rc = hv_router_add(r, HV_HTTP_GET | HV_HTTP_HEAD, "/console/*", h_file, c);
    if (rc != HV_OK) {
        console_free(e, c);
        return rc;
    }
    *state = c;
    return HV_OK;
}

const hv_module_t hv_console_module = {
    "console", settings, NULL, console_init, NULL, NULL, console_free,
};
