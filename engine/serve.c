/*
 * serve.c — `holovitals serve`: the engine's lifecycle.
 *
 * Start-up, in order: check the data directory, open the engine's own tables
 * (errors, alerts) behind a storage thread, build the HTTP server and bind its
 * port, init then start the enabled modules, then run the loop. Any failure
 * before the loop runs is reported on stderr and exits with 2 (configuration,
 * port in use, unreadable data directory) or 1 (anything else).
 *
 * Shutdown, on SIGTERM or SIGINT: modules stop (reverse order), the HTTP server
 * stops accepting, in-flight requests finish (bounded by shutdown_timeout),
 * then the storage thread drains and every handle closes. A second signal
 * exits at once.
 */
#include "config.h"
#include "engine/engine_int.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

const hv_setting_t hv__engine_settings[] = {
    {"data", "data", HV_SET_STRING, "./var", NULL, "data directory (SQLite files, queues, exports)"},
    {"db", "db", HV_SET_STRING, "", NULL,
     "database: empty for SQLite under the data directory, or a postgresql:// URL"},
    {"http.listen", "http", HV_SET_HOSTPORT, "0.0.0.0:8080", NULL, "HTTP listen address"},
    {"mllp.listen", "mllp", HV_SET_HOSTPORT, "0.0.0.0:2575", NULL,
     "MLLP listen address of the hl7v2-inbound channel"},
    {"channels", "channels", HV_SET_STRING, "./channels", NULL, "directory of channel files"},
    {"services", "services", HV_SET_STRING, "all", NULL,
     "modules that run in this process: all, or a comma-separated list"},
    {"services_always", NULL, HV_SET_STRING, "auth", NULL,
     "modules that run in every serving process whatever --services lists (the request guard)"},
    {"log.level", "log-level", HV_SET_ENUM, "info", "debug|info|warn|error|off", "log level"},
    {"log.format", "log-format", HV_SET_ENUM, "json", "json|text", "log format"},
    {"http.max_header", NULL, HV_SET_SIZE, "16KiB", NULL, "largest request line plus headers"},
    {"http.max_body", NULL, HV_SET_SIZE, "64MiB", NULL, "largest request body"},
    {"http.spool_body", NULL, HV_SET_SIZE, "1MiB", NULL,
     "a request body larger than this is written to a file under <data>/tmp as it arrives, not kept in memory (0: never)"},
    {"http.max_connections", NULL, HV_SET_INT, "10000", NULL, "most open HTTP connections"},
    {"http.header_timeout", NULL, HV_SET_DURATION, "10s", NULL,
     "time from a request's first byte to the end of its headers"},
    {"http.body_timeout", NULL, HV_SET_DURATION, "30s", NULL, "time allowed between two reads of a body"},
    {"http.idle_timeout", NULL, HV_SET_DURATION, "75s", NULL, "keep-alive idle timeout"},
    {"http.max_pending_out", NULL, HV_SET_SIZE, "8MiB", NULL,
     "response bytes queued for a slow client before reading from it stops"},
    {"http.access_log", NULL, HV_SET_BOOL, "on", NULL, "log one line per request (at info level)"},
    {"tls.cert", "tls-cert", HV_SET_STRING, "", NULL, "PEM certificate chain: serve HTTPS"},
    {"tls.key", "tls-key", HV_SET_STRING, "", NULL, "PEM private key of tls.cert"},
    {"shutdown_timeout", NULL, HV_SET_DURATION, "5s", NULL,
     "how long shutdown waits for in-flight requests"},
    {"errors.keep", NULL, HV_SET_INT, "10000", NULL, "how many recent errors GET /errors keeps"},
    {"health.disk_warn", NULL, HV_SET_SIZE, "1GiB", NULL,
     "GET /health's disk:free check says warn when the data directory's file system has less free space than this"},
    {"health.disk_fail", NULL, HV_SET_SIZE, "100MiB", NULL,
     "GET /health's disk:free check says fail (503) when the data directory's file system has less free space than this"},
    {NULL, NULL, 0, NULL, NULL, NULL},
};

static int make_dirs(const char *path) {
    char tmp[4096];
    size_t i, n = strlen(path);
    if (n == 0 || n >= sizeof(tmp)) return -1;
    memcpy(tmp, path, n + 1);
    for (i = 1; i <= n; i++) {
        if (tmp[i] == '/' || tmp[i] == '\0') {
            char c = tmp[i];
            tmp[i] = '\0';
            if (mkdir(tmp, 0700) != 0 && errno != EEXIST) return -1;
            tmp[i] = c;
        }
    }
    return 0;
}

static int check_data_dir(const char *dir) {
    struct stat st;
    if (make_dirs(dir) != 0) {
        fprintf(stderr, "holovitals: data directory %s cannot be created: %s\n", dir, strerror(errno));
        return HV_EXIT_USAGE;
    }
    if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode)) {
        fprintf(stderr, "holovitals: data directory %s is not a directory\n", dir);
        return HV_EXIT_USAGE;
    }
    if (access(dir, R_OK | W_OK | X_OK) != 0) {
        fprintf(stderr, "holovitals: data directory %s is not readable and writable: %s\n", dir,
                strerror(errno));
        return HV_EXIT_USAGE;
    }
    return HV_EXIT_OK;
}

/* Marks the modules named in the comma-separated list (or all), plus those of
 * services_always that are compiled in. */
static int choose_services(hv_engine_t *e, const char *list) {
    const char *p = list, *always = hv_config_str(e->config, "services_always");
    size_t i;
    while (*always) {
        const char *comma = strchr(always, ',');
        size_t n = comma ? (size_t)(comma - always) : strlen(always);
        for (i = 0; i < e->nmodules; i++)
            if (strlen(e->modules[i]->name) == n && strncmp(e->modules[i]->name, always, n) == 0)
                e->enabled[i] = 1;
        always = comma ? comma + 1 : always + n;
    }
    if (strcmp(list, "all") == 0 || list[0] == '\0') {
        for (i = 0; i < e->nmodules; i++) e->enabled[i] = 1;
        return HV_OK;
    }
    while (*p) {
        const char *comma = strchr(p, ',');
        size_t n = comma ? (size_t)(comma - p) : strlen(p);
        int found = 0;
        for (i = 0; i < e->nmodules; i++) {
            if (strlen(e->modules[i]->name) == n && strncmp(e->modules[i]->name, p, n) == 0) {
                e->enabled[i] = 1;
                found = 1;
            }
        }
        if (!found && n > 0) {
            fprintf(stderr, "holovitals: --services: unknown module '%.*s'; known:", (int)n, p);
            for (i = 0; i < e->nmodules; i++) fprintf(stderr, " %s", e->modules[i]->name);
            fprintf(stderr, "\n");
            return HV_ECONFIG;
        }
        p = comma ? comma + 1 : p + n;
    }
    return HV_OK;
}

static void on_closed_noop(uv_handle_t *h) { (void)h; }

static void on_http_stopped(void *ud) {
    hv_engine_t *e = ud;
    uv_close((uv_handle_t *)&e->sigterm, on_closed_noop);
    uv_close((uv_handle_t *)&e->sigint, on_closed_noop);
    uv_close((uv_handle_t *)&e->sighup, on_closed_noop);
    uv_close((uv_handle_t *)&e->tick, on_closed_noop);
}

static void begin_shutdown(hv_engine_t *e, const char *why) {
    size_t i;
    if (e->stopping) return;
    e->stopping = 1;
    hv_log(HV_LOG_INFO, "engine.stopping", "%s: finishing in-flight work", why);
    for (i = e->nmodules; i-- > 0;)
        if (e->enabled[i] && e->modules[i]->stop != NULL) e->modules[i]->stop(e, e->states[i]);
    hv__http_server_shutdown(e->http, hv_config_duration_ms(e->config, "shutdown_timeout"),
                             on_http_stopped, e);
}

static void on_signal(uv_signal_t *s, int signum) {
    hv_engine_t *e = s->data;
    if (signum == SIGHUP) {
        size_t i;
        hv_log(HV_LOG_INFO, "engine.reload", "SIGHUP received");
        for (i = 0; i < e->nreload && !e->stopping; i++) e->reload[i].fn(e, e->reload[i].ud);
        return;
    }
    if (e->stopping) {
        hv_log(HV_LOG_WARN, "engine.abort", "second signal: exiting now");
        hv_log_flush();
        _exit(HV_EXIT_FAILURE);
    }
    begin_shutdown(e, signum == SIGTERM ? "SIGTERM" : "SIGINT");
}

static void on_tick(uv_timer_t *t) {
    hv_engine_t *e = t->data;
    hv_log_flush();
    hv__monitor_tick(e);
}

/* Prints where everything is, for the person who just ran the quick start. */
static void print_banner(hv_engine_t *e) {
    char host[256], mhost[256], shown[300], mshown[300];
    int port = 0, mport = 0;
    const char *scheme = e->tls ? "https" : "http";
    hv_parse_hostport(hv_config_str(e->config, "http.listen"), host, sizeof(host), &port);
    hv_parse_hostport(hv_config_str(e->config, "mllp.listen"), mhost, sizeof(mhost), &mport);
    snprintf(shown, sizeof(shown), "%s", strcmp(host, "0.0.0.0") == 0 ? "localhost" : host);
    snprintf(mshown, sizeof(mshown), "%s", strcmp(mhost, "0.0.0.0") == 0 ? "localhost" : mhost);
    printf("HoloVitals %s is running (pid %d)\n"
           "  FHIR base:  %s://%s:%d/fhir\n"
           "  console:    %s://%s:%d/console\n"
           "  health:     %s://%s:%d/health   metrics: %s://%s:%d/metrics\n"
           "  MLLP:       %s:%d%s\n"
           "  data:       %s (%s)\n",
           PACKAGE_VERSION, (int)getpid(), scheme, shown, port, scheme, shown, port, scheme, shown,
           port, scheme, shown, port, mshown, mport,
           hv_engine_module_state(e, "hl7v2") || hv_engine_service_enabled(e, "hl7v2") ? ""
                                                                                      : " (hl7v2 module not running)",
           e->data_dir, hv_engine_db_url(e) ? "PostgreSQL" : "SQLite");
    fflush(stdout);
}

int hv__serve(hv_engine_t *e, int argc, char **argv) {
    hv__http_limits_t lim;
    hv_error_t err;
    char host[256], msg[1024];
    const char *cert, *key;
    int port, rc = HV_EXIT_FAILURE, r;
    size_t i, inited = 0, started = 0;

    hv_error_clear(&err);
    if (argc > 0) {
        fprintf(stderr, "holovitals: serve: unexpected argument '%s'\n", argv[0]);
        fprintf(stderr, "Run 'holovitals help serve' for the options.\n");
        return HV_EXIT_USAGE;
    }
    if ((rc = check_data_dir(e->data_dir)) != HV_EXIT_OK) return rc;
    if (choose_services(e, hv_config_str(e->config, "services")) != HV_OK) return HV_EXIT_USAGE;
    hv_parse_hostport(hv_config_str(e->config, "http.listen"), host, sizeof(host), &port);
    cert = hv_config_str(e->config, "tls.cert");
    key = hv_config_str(e->config, "tls.key");
    if ((cert[0] != '\0') != (key[0] != '\0')) {
        fprintf(stderr, "holovitals: tls.cert and tls.key must be set together\n");
        return HV_EXIT_USAGE;
    }
    if (cert[0] != '\0') {
        e->tls = hv_tls_server_ctx_new(cert, key, NULL, &err);
        if (e->tls == NULL) {
            hv_error_format(&err, msg, sizeof(msg));
            fprintf(stderr, "holovitals: %s\n", msg);
            return HV_EXIT_USAGE;
        }
    }
    signal(SIGPIPE, SIG_IGN);
    if (uv_loop_init(&e->loop) != 0) {
        fprintf(stderr, "holovitals: cannot create the event loop\n");
        rc = HV_EXIT_FAILURE;
        goto out;
    }
    e->loop_ready = 1;
    rc = HV_EXIT_FAILURE;

    lim.max_header = hv_config_size(e->config, "http.max_header");
    lim.max_body = hv_config_size(e->config, "http.max_body");
    lim.max_connections = (size_t)hv_config_int(e->config, "http.max_connections");
    lim.header_timeout = hv_config_duration_ms(e->config, "http.header_timeout");
    lim.body_timeout = hv_config_duration_ms(e->config, "http.body_timeout");
    lim.idle_timeout = hv_config_duration_ms(e->config, "http.idle_timeout");
    lim.max_pending_out = hv_config_size(e->config, "http.max_pending_out");
    lim.access_log = hv_config_bool(e->config, "http.access_log");
    lim.spool_body = hv_config_size(e->config, "http.spool_body");
    lim.spool_dir[0] = '\0';
    if (lim.spool_body > 0 &&
        snprintf(lim.spool_dir, sizeof(lim.spool_dir), "%s/tmp", e->data_dir) < (int)sizeof(lim.spool_dir) &&
        make_dirs(lim.spool_dir) == 0)
        hv__http_spool_clean(lim.spool_dir);
    else
        lim.spool_dir[0] = '\0';
    if (hv__http_server_new(e, &lim, e->tls, &e->http) != HV_OK) goto out;

    if (hv__monitor_init(e) != HV_OK) {
        rc = HV_EXIT_FAILURE;
        goto out;
    }
    r = hv__http_server_listen(e->http, host, port, &err);
    if (r != HV_OK) {
        hv_error_format(&err, msg, sizeof(msg));
        fprintf(stderr, "holovitals: %s\n", msg);
        rc = HV_EXIT_USAGE;
        goto out;
    }
    for (i = 0; i < e->nmodules; i++, inited++) {
        if (!e->enabled[i] || e->modules[i]->init == NULL) continue;
        if (e->modules[i]->init(e, &e->states[i]) != HV_OK) {
            fprintf(stderr, "holovitals: module %s failed to initialize (see the log)\n",
                    e->modules[i]->name);
            rc = HV_EXIT_FAILURE;
            goto out;
        }
    }
    for (i = 0; i < e->nmodules; i++, started++) {
        if (!e->enabled[i] || e->modules[i]->start == NULL) continue;
        r = e->modules[i]->start(e, e->states[i]);
        if (r != HV_OK) {
            fprintf(stderr, "holovitals: module %s failed to start: %s (see the log)\n",
                    e->modules[i]->name, hv_strerror(r));
            rc = (r == HV_ECONFIG || r == HV_EIO) ? HV_EXIT_USAGE : HV_EXIT_FAILURE;
            goto out;
        }
    }

    uv_signal_init(&e->loop, &e->sigterm);
    uv_signal_init(&e->loop, &e->sigint);
    uv_signal_init(&e->loop, &e->sighup);
    e->sigterm.data = e->sigint.data = e->sighup.data = e;
    uv_signal_start(&e->sigterm, on_signal, SIGTERM);
    uv_signal_start(&e->sigint, on_signal, SIGINT);
    uv_signal_start(&e->sighup, on_signal, SIGHUP);
    uv_timer_init(&e->loop, &e->tick);
    e->tick.data = e;
    uv_timer_start(&e->tick, on_tick, 250, 250);

    {
        hv_logrec_t *lr = hv_log_begin(HV_LOG_INFO, "engine.started");
        hv_log_str(lr, "version", PACKAGE_VERSION);
        hv_log_str(lr, "http", hv_config_str(e->config, "http.listen"));
        hv_log_str(lr, "tls", e->tls ? "on" : "off");
        hv_log_str(lr, "db", hv_engine_db_url(e) ? "postgresql" : "sqlite");
        hv_log_int(lr, "pid", (int64_t)getpid());
        hv_log_end(lr);
    }
    print_banner(e);
    uv_run(&e->loop, UV_RUN_DEFAULT);
    rc = HV_EXIT_OK;
    hv_log(HV_LOG_INFO, "engine.stopped", "clean shutdown");

out:
    if (rc != HV_EXIT_OK && e->http != NULL && !e->stopping) {
        /* failed start: stop what started, then close everything */
        for (i = started; i-- > 0;)
            if (e->enabled[i] && e->modules[i]->stop != NULL) e->modules[i]->stop(e, e->states[i]);
        e->stopping = 1;
        hv__http_server_shutdown(e->http, 0, NULL, NULL);
    }
    for (i = inited; i-- > 0;) {
        if (e->enabled[i] && e->modules[i]->free != NULL && e->states[i] != NULL)
            e->modules[i]->free(e, e->states[i]);
        e->states[i] = NULL;
    }
    hv__monitor_free(e);
    if (e->loop_ready) {
        uv_run(&e->loop, UV_RUN_DEFAULT); /* let close callbacks run */
        hv__http_server_free(e->http);
        e->http = NULL;
        if (uv_loop_close(&e->loop) != 0)
            hv_log(HV_LOG_WARN, "engine.leak", "some handles were still open at exit");
    } else {
        hv__http_server_free(e->http);
    }
    hv_tls_ctx_free(e->tls);
    hv_log_flush();
    return rc;
}
