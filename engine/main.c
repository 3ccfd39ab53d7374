/*
 * main.c — the holovitals command line.
 *
 *   holovitals [--config FILE] COMMAND [ARGS...]
 *
 * Commands come from the engine (serve, version, help, config check|show) and
 * from the modules' command tables. Setting flags (--data, --db, --http, …;
 * every setting with a `flag`) are accepted by every command, anywhere before
 * a bare "--"; the rest of the arguments go to the command. Configuration is
 * layered: defaults < configuration file < HOLOVITALS_* environment < flags.
 * The file is --config, else $HOLOVITALS_CONFIG, else ./holovitals.json when
 * present.
 *
 * Exit codes: 0 success, 1 runtime failure, 2 bad usage or configuration.
 */
#include "config.h"
#include "engine/engine_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef struct found {
    const hv_command_t *cmd;
    int words; /* how many argv words the name took */
} found_t;

static int cmd_version(hv_engine_t *e, int argc, char **argv);
static int cmd_help(hv_engine_t *e, int argc, char **argv);
static int cmd_config_check(hv_engine_t *e, int argc, char **argv);
static int cmd_config_show(hv_engine_t *e, int argc, char **argv);
static int cmd_serve(hv_engine_t *e, int argc, char **argv);
static int cmd_config_sample(hv_engine_t *e, int argc, char **argv);

static const hv_command_t engine_commands[] = {
    {"serve", "serve [--config F] [--data DIR] [--db URL] [--http H:P] [--mllp H:P] [--channels DIR] [--services LIST] [--log-level L] [--log-format json|text]",
     "run the engine",
     "Runs the engine: the HTTP server (FHIR, APIs, console, /health, /metrics), the MLLP\n"
     "listener and the channels, with the modules chosen by --services (default: all).\n"
     "Stops gracefully on SIGTERM or SIGINT: no new connections, in-flight requests finish.",
     cmd_serve},
    {"version", "version", "print the version", NULL, cmd_version},
    {"help", "help [COMMAND]", "describe the commands, or one command", NULL, cmd_help},
    {"config check", "config check FILE",
     "check a configuration file",
     "Loads FILE as holovitals.json would be loaded and reports the first problem as\n"
     "FILE:LINE:COLUMN: message. Exit code 0 if valid, 2 if not.",
     cmd_config_check},
    {"config show", "config show",
     "print every setting with its value and where it came from", NULL, cmd_config_show},
    {"config sample", "config sample",
     "print a holovitals.json that documents every setting with its default", NULL,
     cmd_config_sample},
    {NULL, NULL, NULL, NULL, NULL},
};

static const hv_module_t *const *g_modules;

/* Looks a command up by its first one or two words. */
static found_t find_command(int argc, char **argv) {
    found_t f = {NULL, 0};
    const hv_command_t *tables[64];
    size_t nt = 0, t, i;
    tables[nt++] = engine_commands;
    for (i = 0; g_modules[i] != NULL && nt < HV_ARRAY_LEN(tables); i++)
        if (g_modules[i]->commands != NULL) tables[nt++] = g_modules[i]->commands;
    for (t = 0; t < nt; t++) {
        const hv_command_t *c;
        for (c = tables[t]; c->name != NULL; c++) {
            const char *sp = strchr(c->name, ' ');
            if (sp == NULL) {
                if (argc >= 1 && strcmp(argv[0], c->name) == 0 && f.words < 1) {
                    f.cmd = c;
                    f.words = 1;
                }
            } else if (argc >= 2 && strlen(argv[0]) == (size_t)(sp - c->name) &&
                       strncmp(argv[0], c->name, (size_t)(sp - c->name)) == 0 &&
                       strcmp(argv[1], sp + 1) == 0) {
                f.cmd = c;
                f.words = 2;
            }
        }
    }
    return f;
}

static void each_command(void (*fn)(const hv_command_t *c, void *ud), void *ud) {
    const hv_command_t *c;
    size_t i;
    for (c = engine_commands; c->name != NULL; c++) fn(c, ud);
    for (i = 0; g_modules[i] != NULL; i++)
        for (c = g_modules[i]->commands; c != NULL && c->name != NULL; c++) fn(c, ud);
}

static void print_summary(const hv_command_t *c, void *ud) {
    (void)ud;
    fprintf(stdout, "  %-22s %s\n", c->name, c->summary ? c->summary : "");
}

static void usage(FILE *f) {
    fprintf(f,
            "usage: holovitals [--config FILE] COMMAND [ARGS...]\n\n"
            "HoloVitals %s — a FHIR-native healthcare integration engine.\n\ncommands:\n",
            PACKAGE_VERSION);
    if (f == stdout) {
        each_command(print_summary, NULL);
    } else {
        fflush(stdout);
    }
    fprintf(f, "\nRun 'holovitals help COMMAND' for a command's options, and 'holovitals config show'\n"
               "for every setting, its flag and its HOLOVITALS_* environment variable.\n");
}

static int cmd_version(hv_engine_t *e, int argc, char **argv) {
    (void)e;
    (void)argv;
    if (argc > 0) {
        fprintf(stderr, "holovitals: version takes no arguments\n");
        return HV_EXIT_USAGE;
    }
    printf("holovitals %s\n", PACKAGE_VERSION);
    return HV_EXIT_OK;
}

static int cmd_help(hv_engine_t *e, int argc, char **argv) {
    found_t f;
    (void)e;
    if (argc == 0) {
        usage(stdout);
        return HV_EXIT_OK;
    }
    f = find_command(argc, argv);
    if (f.cmd == NULL) {
        fprintf(stderr, "holovitals: no command '%s'; run 'holovitals help' for the list\n", argv[0]);
        return HV_EXIT_USAGE;
    }
    printf("usage: holovitals %s\n\n%s\n", f.cmd->usage ? f.cmd->usage : f.cmd->name,
           f.cmd->summary ? f.cmd->summary : "");
    if (f.cmd->help) printf("\n%s\n", f.cmd->help);
    if (strcmp(f.cmd->name, "serve") == 0) {
        hv_buf_t out;
        hv_buf_init(&out, 0);
        hv_config_dump(e->config, &out);
        printf("\nsettings (key, current value, meaning, environment variable, flag):\n%s",
               out.data ? out.data : "");
        hv_buf_release(&out);
    }
    return HV_EXIT_OK;
}

static int declare_all(hv_config_t *c) {
    size_t i;
    int rc = hv_config_declare(c, hv__engine_settings);
    for (i = 0; rc == HV_OK && g_modules[i] != NULL; i++)
        if (g_modules[i]->settings != NULL) rc = hv_config_declare(c, g_modules[i]->settings);
    return rc;
}

static int cmd_config_check(hv_engine_t *e, int argc, char **argv) {
    hv_config_t *c;
    hv_error_t err;
    char msg[1024];
    int rc;
    (void)e;
    if (argc != 1) {
        fprintf(stderr, "usage: holovitals config check FILE\n");
        return HV_EXIT_USAGE;
    }
    c = hv_config_new();
    if (c == NULL || declare_all(c) != HV_OK) {
        hv_config_free(c);
        fprintf(stderr, "holovitals: out of memory\n");
        return HV_EXIT_FAILURE;
    }
    hv_error_clear(&err);
    rc = hv_config_load_file(c, argv[0], &err);
    hv_config_free(c);
    if (rc != HV_OK) {
        hv_error_format(&err, msg, sizeof(msg));
        fprintf(stderr, "%s\n", msg);
        return HV_EXIT_USAGE;
    }
    printf("%s: ok\n", argv[0]);
    return HV_EXIT_OK;
}

static int cmd_config_show(hv_engine_t *e, int argc, char **argv) {
    hv_buf_t out;
    (void)argv;
    if (argc > 0) {
        fprintf(stderr, "usage: holovitals config show\n");
        return HV_EXIT_USAGE;
    }
    hv_buf_init(&out, 0);
    hv_config_dump(e->config, &out);
    fputs(out.data ? out.data : "", stdout);
    hv_buf_release(&out);
    return HV_EXIT_OK;
}

static int cmd_serve(hv_engine_t *e, int argc, char **argv) { return hv__serve(e, argc, argv); }

/* Prints one setting with a comment above it, at the given indent. */
static void sample_one(const hv_setting_t *t, const char *name, const char *indent, hv_buf_t *out) {
    char env[128];
    const char *def = t->def ? t->def : "";
    hv_config_env_name(t, env, sizeof(env));
    hv_buf_printf(out, "%s// %s%s%s (%s%s%s)\n", indent, t->help ? t->help : "", t->choices ? ": " : "",
                  t->choices ? t->choices : "", env, t->flag ? ", --" : "", t->flag ? t->flag : "");
    hv_buf_printf(out, "%s\"%s\": ", indent, name);
    if (t->type == HV_SET_BOOL)
        hv_buf_puts(out, (!strcmp(def, "on") || !strcmp(def, "true") || !strcmp(def, "yes")) ? "true" : "false");
    else if (t->type == HV_SET_INT)
        hv_buf_puts(out, def);
    else
        hv_buf_json_str(out, def, strlen(def));
    hv_buf_puts(out, ",\n");
}

/* Prints every declared setting as holovitals.json: top-level keys first, then each
 * section once with all of its keys, each under a comment saying what it is. */
static int cmd_config_sample(hv_engine_t *e, int argc, char **argv) {
    hv_buf_t out;
    const hv_setting_t *all[512];
    size_t n = 0, i, j;
    (void)argv;
    if (argc > 0) {
        fprintf(stderr, "usage: holovitals config sample\n");
        return HV_EXIT_USAGE;
    }
    for (i = 0; i < 1 + e->nmodules; i++) {
        const hv_setting_t *t = i == 0 ? hv__engine_settings : e->modules[i - 1]->settings;
        for (; t != NULL && t->key != NULL && n < HV_ARRAY_LEN(all); t++) {
            for (j = 0; j < n && strcmp(all[j]->key, t->key) != 0; j++) {
            }
            if (j == n) all[n++] = t;
        }
    }
    hv_buf_init(&out, 0);
    hv_buf_puts(&out, "// holovitals.json — every setting with its default (holovitals config sample).\n"
                      "// Comments and trailing commas are allowed. Precedence: default < this file <\n"
                      "// HOLOVITALS_* environment < command-line flags.\n{\n");
    for (i = 0; i < n; i++)
        if (strchr(all[i]->key, '.') == NULL) sample_one(all[i], all[i]->key, "  ", &out);
    for (i = 0; i < n; i++) {
        const char *dot = strchr(all[i]->key, '.');
        size_t sl;
        int seen = 0;
        if (dot == NULL) continue;
        sl = (size_t)(dot - all[i]->key);
        for (j = 0; j < i && !seen; j++) seen = strncmp(all[j]->key, all[i]->key, sl + 1) == 0;
        if (seen) continue;
        hv_buf_printf(&out, "  \"%.*s\": {\n", (int)sl, all[i]->key);
        for (j = i; j < n; j++)
            if (strncmp(all[j]->key, all[i]->key, sl + 1) == 0)
                sample_one(all[j], all[j]->key + sl + 1, "    ", &out);
        hv_buf_puts(&out, "  },\n");
    }
    hv_buf_puts(&out, "}\n");
    fputs(out.data, stdout);
    hv_buf_release(&out);
    return HV_EXIT_OK;
}

/*
 * Takes setting flags out of args (in place), applying them to the config once
 * the file and environment are loaded. Returns the remaining argument count,
 * or -1 after printing a usage error.
 */
typedef struct flagval {
    const char *key;
    const char *value;
    char origin[160];
} flagval_t;

static int extract_flags(hv_config_t *c, int argc, char **argv, const char **config_file,
                         flagval_t *fv, int *nfv, int maxfv) {
    int i, out = 0, rest = 0;
    for (i = 0; i < argc; i++) {
        char *a = argv[i], name[128];
        const char *value = NULL, *eq;
        const hv_setting_t *s;
        size_t nlen;
        if (rest || strncmp(a, "--", 2) != 0 || a[2] == '\0') {
            if (strcmp(a, "--") == 0 && !rest) {
                rest = 1;
                continue;
            }
            argv[out++] = a;
            continue;
        }
        eq = strchr(a + 2, '=');
        nlen = eq ? (size_t)(eq - a - 2) : strlen(a + 2);
        if (nlen >= sizeof(name)) {
            argv[out++] = a;
            continue;
        }
        memcpy(name, a + 2, nlen);
        name[nlen] = '\0';
        if (strcmp(name, "config") == 0) {
            s = NULL;
        } else {
            s = hv_config_find_flag(c, name);
            if (s == NULL) { /* the command's own option */
                argv[out++] = a;
                continue;
            }
        }
        if (eq != NULL) {
            value = eq + 1;
        } else if (i + 1 < argc) {
            value = argv[++i];
        } else {
            fprintf(stderr, "holovitals: option --%s needs a value\n", name);
            return -1;
        }
        if (s == NULL) {
            *config_file = value;
            continue;
        }
        if (*nfv >= maxfv) {
            fprintf(stderr, "holovitals: too many options\n");
            return -1;
        }
        fv[*nfv].key = s->key;
        fv[*nfv].value = value;
        snprintf(fv[*nfv].origin, sizeof(fv[*nfv].origin), "flag --%s", name);
        (*nfv)++;
    }
    return out;
}

static int load_config(hv_engine_t *e, const char *file, const flagval_t *fv, int nfv) {
    hv_error_t err;
    char msg[1024];
    int i, lvl, fmt;
    hv_error_clear(&err);
    if (file == NULL) file = getenv("HOLOVITALS_CONFIG");
    if (file == NULL && access("holovitals.json", F_OK) == 0) file = "holovitals.json";
    if (file != NULL && hv_config_load_file(e->config, file, &err) != HV_OK) goto fail;
    if (hv_config_load_env(e->config, &err) != HV_OK) goto fail;
    for (i = 0; i < nfv; i++)
        if (hv_config_set(e->config, fv[i].key, fv[i].value, fv[i].origin, &err) != HV_OK) goto fail;
    lvl = hv_log_parse_level(hv_config_str(e->config, "log.level"));
    fmt = hv_log_parse_format(hv_config_str(e->config, "log.format"));
    hv_log_configure(lvl < 0 ? HV_LOG_INFO : lvl, fmt < 0 ? HV_LOG_JSON : fmt);
    return HV_OK;
fail:
    hv_error_format(&err, msg, sizeof(msg));
    fprintf(stderr, "holovitals: %s\n", msg);
    return HV_ECONFIG;
}

static void engine_free(hv_engine_t *e) {
    size_t i;
    if (e == NULL) return;
    for (i = 0; i < e->nchecks; i++) hv_free(e->checks[i].name);
    hv_free(e->checks);
    hv__router_free(e->router);
    hv__metrics_free(e->metrics);
    hv_config_free(e->config);
    hv_free(e->states);
    hv_free(e->enabled);
    hv_free(e->data_dir);
    hv_free(e->db_url);
    hv_free(e);
}

int hv_main(int argc, char **argv, const hv_module_t *const *modules) {
    hv_engine_t *e = NULL;
    const char *config_file = NULL;
    flagval_t fv[64];
    int nfv = 0, n, rc = HV_EXIT_FAILURE;
    found_t f;
    char **args = NULL;
    size_t i;

    g_modules = modules;
    if (argc < 2) {
        usage(stderr);
        return HV_EXIT_USAGE;
    }
    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        usage(stdout);
        return HV_EXIT_OK;
    }
    if (strcmp(argv[1], "--version") == 0) {
        printf("holovitals %s\n", PACKAGE_VERSION);
        return HV_EXIT_OK;
    }
    e = hv_calloc(1, sizeof(*e));
    if (e == NULL) goto oom;
    e->modules = modules;
    for (i = 0; modules[i] != NULL; i++) e->nmodules++;
    e->states = hv_calloc(e->nmodules + 1, sizeof(void *));
    e->enabled = hv_calloc(e->nmodules + 1, 1);
    e->config = hv_config_new();
    e->router = hv__router_new();
    e->metrics = hv__metrics_new();
    e->started_ms = hv_now_ms();
    if (e->states == NULL || e->enabled == NULL || e->config == NULL || e->router == NULL ||
        e->metrics == NULL || declare_all(e->config) != HV_OK)
        goto oom;

    /* copy argv so flags can be removed in place */
    args = hv_calloc((size_t)argc, sizeof(char *));
    if (args == NULL) goto oom;
    for (n = 1; n < argc; n++) args[n - 1] = argv[n];
    n = extract_flags(e->config, argc - 1, args, &config_file, fv, &nfv, (int)HV_ARRAY_LEN(fv));
    if (n < 0) {
        rc = HV_EXIT_USAGE;
        goto out;
    }
    if (n == 0) {
        usage(stderr);
        rc = HV_EXIT_USAGE;
        goto out;
    }
    if (strcmp(args[0], "--help") == 0 || strcmp(args[0], "-h") == 0) {
        usage(stdout);
        rc = HV_EXIT_OK;
        goto out;
    }
    f = find_command(n, args);
    if (f.cmd == NULL) {
        if (args[0][0] == '-') fprintf(stderr, "holovitals: unknown option '%s'\n", args[0]);
        else fprintf(stderr, "holovitals: unknown command '%s'\n", args[0]);
        fprintf(stderr, "Run 'holovitals help' for the list of commands.\n");
        rc = HV_EXIT_USAGE;
        goto out;
    }
    if (n > f.words && (strcmp(args[f.words], "--help") == 0 || strcmp(args[f.words], "-h") == 0)) {
        char *hargs[2] = {args[0], f.words > 1 ? args[1] : NULL};
        rc = cmd_help(e, f.words, hargs);
        goto out;
    }
    if (load_config(e, config_file, fv, nfv) != HV_OK) {
        rc = HV_EXIT_USAGE;
        goto out;
    }
    e->data_dir = hv_strdup(hv_config_str(e->config, "data"));
    e->db_url = hv_strdup(hv_config_str(e->config, "db"));
    if (e->data_dir == NULL || e->db_url == NULL) goto oom;
    rc = f.cmd->run(e, n - f.words, args + f.words);
    goto out;
oom:
    fprintf(stderr, "holovitals: out of memory\n");
    rc = HV_EXIT_FAILURE;
out:
    hv_log_flush();
    hv_free(args);
    engine_free(e);
    return rc;
}

/* ---- accessors ---- */

uv_loop_t *hv_engine_loop(hv_engine_t *e) { return &e->loop; }
hv_config_t *hv_engine_config(hv_engine_t *e) { return e->config; }
hv_router_t *hv_engine_router(hv_engine_t *e) { return e->router; }
hv_metrics_t *hv_engine_metrics(hv_engine_t *e) { return e->metrics; }
const char *hv_engine_data_dir(hv_engine_t *e) { return e->data_dir; }
int hv_engine_stopping(hv_engine_t *e) { return e->stopping; }

const char *hv_engine_db_url(hv_engine_t *e) {
    return (e->db_url == NULL || e->db_url[0] == '\0') ? NULL : e->db_url;
}

void *hv_engine_module_state(hv_engine_t *e, const char *module) {
    size_t i;
    for (i = 0; i < e->nmodules; i++)
        if (strcmp(e->modules[i]->name, module) == 0) return e->enabled[i] ? e->states[i] : NULL;
    return NULL;
}

int hv_engine_service_enabled(hv_engine_t *e, const char *module) {
    size_t i;
    for (i = 0; i < e->nmodules; i++)
        if (strcmp(e->modules[i]->name, module) == 0) return e->enabled[i];
    return 0;
}

int hv_health_register(hv_engine_t *e, const char *name, hv_health_cb fn, void *ud) {
    hv__health_check_t *nv = hv_realloc(e->checks, (e->nchecks + 1) * sizeof(*nv));
    if (nv == NULL) return HV_ENOMEM;
    e->checks = nv;
    e->checks[e->nchecks].name = hv_strdup(name);
    if (e->checks[e->nchecks].name == NULL) return HV_ENOMEM;
    e->checks[e->nchecks].fn = fn;
    e->checks[e->nchecks].ud = ud;
    e->nchecks++;
    return HV_OK;
}
