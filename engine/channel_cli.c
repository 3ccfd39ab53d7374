/*
 * channel_cli.c — `holovitals channel validate FILE…` and `holovitals channel list`.
 *
 * validate checks a channel file exactly as serve loads it — every key, type and
 * range, with file:line:column errors — against the built-in types of engine/
 * and the catalog of types that modules provide (whose own keys serve checks
 * once the module that provides them has registered). Exit 0 when every file
 * is valid, 2 otherwise.
 *
 * Commands run without the modules' init; the providers of channel types are
 * registered by calling the init of the modules named "*-channels", which by
 * contract (engine.h) only register providers and open nothing.
 *
 *   channel test FILE MESSAGE    dry run: filter, each step's output, which
 *                                destinations would receive it; no side effects
 *   channel stats                counts per channel and destination (reads the store)
 *   channel messages ID [--status S] [--limit N]   newest first
 *   channel reprocess ID MESSAGE_ID   asks the running engine (http.listen)
 */
#include "config.h"
#include "engine/channel_rt.h"

#include <curl/curl.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Registers the built-ins and every "*-channels" module's providers. */
static void register_providers(hv_engine_t *e) {
    size_t i;
    hv__chan_register_builtins(e);
    for (i = 0; i < e->nmodules; i++) {
        const hv_module_t *m = e->modules[i];
        size_t n = strlen(m->name);
        void *st = NULL;
        if (n > 9 && strcmp(m->name + n - 9, "-channels") == 0 && m->init != NULL &&
            m->init(e, &st) == HV_OK && st != NULL && m->free != NULL)
            m->free(e, st); /* the registrations stay; commands keep no module state */
    }
}

static int cmd_validate(hv_engine_t *e, int argc, char **argv) {
    int i, bad = 0;
    if (argc < 1) {
        fprintf(stderr, "usage: holovitals channel validate FILE...\n");
        return HV_EXIT_USAGE;
    }
    register_providers(e);
    for (i = 0; i < argc; i++) {
        hv__chan_conf_t *c = NULL;
        hv_error_t err;
        char msg[1024];
        hv_error_clear(&err);
        /* NULL registry: catalog names are accepted; the built-ins' keys are checked below. */
        if (hv__chan_conf_load(argv[i], NULL, &c, &err) == HV_OK) {
            hv__chan_conf_free(c);
            c = NULL;
            /* Second pass with the built-ins, non-strict for module types. */
            if (hv__chan_conf_load_lenient(argv[i], &e->chan_reg, &c, &err) == HV_OK) {
                printf("%s: ok (channel %s: %s source, %zu steps, %zu destinations)\n", argv[i],
                       c->id, c->source_type, c->nsteps, c->ndests);
                hv__chan_conf_free(c);
                continue;
            }
        }
        hv_error_format(&err, msg, sizeof(msg));
        fprintf(stderr, "%s\n", msg);
        bad++;
    }
    return bad ? HV_EXIT_USAGE : HV_EXIT_OK;
}

static int cmd_list(hv_engine_t *e, int argc, char **argv) {
    const char *dir = hv_config_str(hv_engine_config(e), "channels");
    DIR *d;
    struct dirent *de;
    int bad = 0;
    (void)argc;
    (void)argv;
    register_providers(e);
    d = opendir(dir);
    if (d == NULL) {
        fprintf(stderr, "holovitals: cannot read the channels directory %s\n", dir);
        return HV_EXIT_FAILURE;
    }
    printf("%-24s %-8s %-8s %s\n", "ID", "ENABLED", "SOURCE", "DESTINATIONS");
    while ((de = readdir(d)) != NULL) {
        char path[4096], msg[1024];
        size_t n = strlen(de->d_name), i;
        hv__chan_conf_t *c = NULL;
        hv_error_t err;
        if (de->d_name[0] == '.' || n < 6 || strcmp(de->d_name + n - 5, ".json") != 0) continue;
        snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
        hv_error_clear(&err);
        if (hv__chan_conf_load_lenient(path, &e->chan_reg, &c, &err) != HV_OK) {
            hv_error_format(&err, msg, sizeof(msg));
            fprintf(stderr, "%s\n", msg);
            bad++;
            continue;
        }
        printf("%-24s %-8s %-8s", c->id, c->enabled ? "yes" : "no", c->source_type);
        for (i = 0; i < c->ndests; i++) printf("%s%s(%s)", i ? ", " : " ", c->dests[i].name, c->dests[i].type);
        printf("\n");
        hv__chan_conf_free(c);
    }
    closedir(d);
    return bad ? HV_EXIT_USAGE : HV_EXIT_OK;
}

const char *hv__chan_guess_type(const char *p, size_t n) {
    while (n > 0 && (*p == ' ' || *p == '\n' || *p == '\r' || *p == '\t')) {
        p++;
        n--;
    }
    if (n >= 3 && (strncmp(p, "MSH", 3) == 0 || strncmp(p, "FHS", 3) == 0 || strncmp(p, "BHS", 3) == 0))
        return "x-application/hl7-v2+er7";
    if (n > 0 && (*p == '{' || *p == '[')) return "application/fhir+json";
    if (n > 0 && *p == '<') return "application/xml";
    return "text/plain";
}

static void print_content(const char *label, const char *p, size_t n) {
    size_t i, shown = n > 4096 ? 4096 : n;
    printf("%s (%zu bytes):\n  ", label, n);
    for (i = 0; i < shown; i++) {
        char c = p[i];
        if (c == '\r') printf("\n  ");
        else putchar(c);
    }
    if (shown < n) printf("\n  ... (%zu more bytes)", n - shown);
    printf("\n");
}

static int cmd_test(hv_engine_t *e, int argc, char **argv) {
    hv__chan_conf_t *c = NULL;
    hv_error_t err;
    hv_arena_t *arena = NULL;
    hv_channel_msg_t m;
    char *content = NULL, msg[1024];
    size_t len = 0, i;
    const char *rule = NULL;
    int rc = HV_EXIT_FAILURE;
    if (argc != 2) {
        fprintf(stderr, "usage: holovitals channel test FILE MESSAGE\n");
        return HV_EXIT_USAGE;
    }
    register_providers(e);
    hv_error_clear(&err);
    if (hv__chan_conf_load_lenient(argv[0], &e->chan_reg, &c, &err) != HV_OK) {
        hv_error_format(&err, msg, sizeof(msg));
        fprintf(stderr, "%s\n", msg);
        return HV_EXIT_USAGE;
    }
    if (hv_file_read(argv[1], 256u << 20, &content, &len, &err) != HV_OK) {
        hv_error_format(&err, msg, sizeof(msg));
        fprintf(stderr, "holovitals: %s\n", msg);
        goto out;
    }
    arena = hv_arena_new(0);
    if (arena == NULL) {
        fprintf(stderr, "holovitals: out of memory\n");
        goto out;
    }
    memset(&m, 0, sizeof(m));
    m.channel = c->id;
    m.content = content;
    m.len = len;
    m.content_type = hv__chan_guess_type(content, len);
    m.received_at = hv_now_ms();
    m.arena = arena;
    printf("channel %s (%s), dry run: nothing is stored or sent\n", c->id, argv[0]);
    printf("source: %s; message %s, %zu bytes, content type %s\n", c->source_type, argv[1], len,
           m.content_type);
    if (c->filter != NULL && !hv__filter_eval(&e->chan_reg, c->filter, &m, &rule)) {
        printf("filter: FILTERED by rule %s\n", rule ? rule : "?");
        rc = HV_EXIT_OK;
        goto out;
    }
    printf("filter: %s\n", c->filter ? "passed" : "none");
    for (i = 0; i < c->nsteps; i++) {
        const hv_channel_step_t *st = hv__chan_find_step(&e->chan_reg, c->steps[i].type);
        void *state = NULL;
        char label[128];
        int r;
        if (st == NULL) {
            printf("step %zu (%s): not available in this build (no module provides it); the "
                   "message passes unchanged\n",
                   i + 1, c->steps[i].type);
            continue;
        }
        hv_error_clear(&err);
        r = st->init ? st->init(e, c->steps[i].conf, &state, &err) : HV_OK;
        if (r == HV_OK && st == &hv__step_split_bundle) {
            /* The parts; the following steps are shown on the first one. */
            hv__part_t *parts = NULL;
            size_t np = 0, k;
            r = hv__split_run(state, &m, &parts, &np, &err);
            if (r == HV_OK) {
                printf("step %zu (%s): %zu parts, each stored and sent as a message of its own%s\n",
                       i + 1, c->steps[i].type, np,
                       np > 0 && i + 1 < c->nsteps ? "; the next steps are shown on part 1" : "");
                for (k = 0; k < np && k < 10; k++) {
                    snprintf(label, sizeof(label), "part %zu", k + 1);
                    print_content(label, parts[k].content, parts[k].len);
                }
                if (np == 0) {
                    if (st->free && state) st->free(state);
                    rc = HV_EXIT_OK;
                    goto out;
                }
                m.content = parts[0].content;
                m.len = parts[0].len;
                m.content_type = parts[0].content_type;
                if (st->free && state) st->free(state);
                continue;
            }
        } else if (r == HV_OK) {
            m.outcome = NULL;
            r = st->run(state, &m, &err);
        }
        if (st->free && state) st->free(state);
        if (r != HV_OK) {
            printf("step %zu (%s): ERROR: %s\n", i + 1, c->steps[i].type,
                   err.message[0] ? err.message : hv_strerror(r));
            printf("the message would be stored as errored\n");
            rc = HV_EXIT_FAILURE;
            goto out;
        }
        snprintf(label, sizeof(label), "step %zu (%s) output", i + 1, c->steps[i].type);
        print_content(label, m.content, m.len);
        if (m.outcome != NULL) {
            /* Stored with the message as its outcome (chan_messages.outcome). */
            snprintf(label, sizeof(label), "step %zu (%s) outcome", i + 1, c->steps[i].type);
            print_content(label, m.outcome, strlen(m.outcome));
        }
    }
    for (i = 0; i < c->ndests; i++) {
        const hv__dest_conf_t *d = &c->dests[i];
        int on = d->when == NULL || hv__filter_eval(&e->chan_reg, d->when, &m, &rule);
        const char *avail = hv__chan_find_dest(&e->chan_reg, d->type) ? "" : " (its module registers it only under serve)";
        if (on)
            printf("destination %s (%s): would receive %zu bytes, content type %s, up to %lld "
                   "attempts%s\n",
                   d->name, d->type, m.len, m.content_type, (long long)d->queue.max_attempts, avail);
        else
            printf("destination %s (%s): skipped (when: rule %s)\n", d->name, d->type, rule);
    }
    rc = HV_EXIT_OK;
out:
    hv_arena_free(arena);
    hv_free(content);
    hv__chan_conf_free(c);
    return rc;
}

static int open_store(hv_engine_t *e, hv_db_t **db) {
    hv_error_t err;
    char path[4096];
    hv_error_clear(&err);
    snprintf(path, sizeof(path), "%s/channels.db", hv_engine_data_dir(e));
    if (hv_engine_db_url(e) == NULL) {
        FILE *f = fopen(path, "rb");
        if (f == NULL) {
            fprintf(stderr, "holovitals: no channel store in %s (has serve run with --data %s?)\n",
                    hv_engine_data_dir(e), hv_engine_data_dir(e));
            return HV_ENOTFOUND;
        }
        fclose(f);
    }
    if (hv_db_open(hv_engine_db_url(e), hv_engine_data_dir(e), "channels", db, &err) != HV_OK) {
        fprintf(stderr, "holovitals: cannot open the channel store: %s\n", err.message);
        return HV_EDB;
    }
    return HV_OK;
}

static int cmd_stats(hv_engine_t *e, int argc, char **argv) {
    hv_db_t *db = NULL;
    hv_db_stmt_t *st = NULL;
    int rc;
    (void)argc;
    (void)argv;
    if (open_store(e, &db) != HV_OK) return HV_EXIT_FAILURE;
    printf("%-24s %-16s %-10s %10s\n", "CHANNEL", "DESTINATION", "STATE", "COUNT");
    /* SQLite: cursor queues (engine/channel.c) count their deliveries and pending
     * messages on the cursor; the rows hold the rest. */
    rc = hv_db_prepare(db,
                       hv_db_kind(db) == HV_DB_PG
                           ? "SELECT channel, '-', status, COUNT(*) FROM chan_messages GROUP BY 1, 3"
                             " UNION ALL SELECT channel, dest, state, COUNT(*) FROM chan_queue"
                             " GROUP BY 1, 2, 3 ORDER BY 1, 2, 3"
                           : "SELECT channel, '-', " HV__CHAN_STATUS_SQL("m") ", COUNT(*) FROM"
                             " chan_messages m GROUP BY 1, 3"
                             " UNION ALL SELECT channel, dest, state, SUM(n) FROM (SELECT channel,"
                             " dest, state, COUNT(*) AS n FROM chan_queue GROUP BY 1, 2, 3 UNION ALL"
                             " SELECT channel, dest, 'sent', sent FROM chan_cursors UNION ALL SELECT"
                             " c.channel, c.dest, 'queued', (SELECT COUNT(*) FROM chan_messages m"
                             " WHERE m.channel = c.channel AND m.id > c.last_id AND instr(m.route,"
                             " ',' || c.dest || ',') > 0) FROM chan_cursors c) GROUP BY 1, 2, 3"
                             " HAVING SUM(n) > 0 ORDER BY 1, 2, 3",
                       &st);
    while (rc == HV_OK && (rc = hv_db_step(st)) == HV_DB_ROW) {
        printf("%-24s %-16s %-10s %10lld\n", hv_db_column_text(st, 0, NULL),
               hv_db_column_text(st, 1, NULL), hv_db_column_text(st, 2, NULL),
               (long long)hv_db_column_int64(st, 3));
        rc = HV_OK;
    }
    if (st) hv_db_done(st);
    hv_db_close(db);
    return rc < 0 ? HV_EXIT_FAILURE : HV_EXIT_OK;
}

static int cmd_messages(hv_engine_t *e, int argc, char **argv) {
    hv_db_t *db = NULL;
    hv_db_stmt_t *st = NULL;
    const char *status = "";
    long limit = 20;
    int i, rc;
    if (argc < 1) {
        fprintf(stderr, "usage: holovitals channel messages ID [--status S] [--limit N]\n");
        return HV_EXIT_USAGE;
    }
    for (i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--status") == 0 && i + 1 < argc) status = argv[++i];
        else if (strcmp(argv[i], "--limit") == 0 && i + 1 < argc) limit = atol(argv[++i]);
        else {
            fprintf(stderr, "holovitals: channel messages: unknown argument %s\n", argv[i]);
            return HV_EXIT_USAGE;
        }
    }
    if (limit < 1 || limit > 100000) limit = 20;
    if (open_store(e, &db) != HV_OK) return HV_EXIT_FAILURE;
    /* SQLite: the derived status of messages that cursor queues read (channel_rt.h). */
    rc = hv_db_prepare(db,
                       hv_db_kind(db) == HV_DB_PG
                           ? "SELECT id, received_at, status, content_type, size, COALESCE(error,"
                             " filtered_by, '') FROM chan_messages WHERE channel = $1 AND ($2 = ''"
                             " OR status = $2) ORDER BY id DESC LIMIT $3"
                           : "SELECT id, received_at, " HV__CHAN_STATUS_SQL("m") ", content_type,"
                             " size, COALESCE(error, filtered_by, '') FROM chan_messages m WHERE"
                             " channel = $1 AND ($2 = '' OR " HV__CHAN_STATUS_SQL("m") " = $2)"
                             " ORDER BY id DESC LIMIT $3",
                       &st);
    if (rc == HV_OK) {
        hv_db_bind_text(st, 1, argv[0], strlen(argv[0]));
        hv_db_bind_text(st, 2, status, strlen(status));
        hv_db_bind_int64(st, 3, limit);
        printf("%-10s %-25s %-9s %-28s %8s %s\n", "ID", "RECEIVED", "STATUS", "CONTENT TYPE", "SIZE",
               "NOTE");
    }
    while (rc == HV_OK && (rc = hv_db_step(st)) == HV_DB_ROW) {
        char ts[40];
        hv_time_rfc3339((uint64_t)hv_db_column_int64(st, 1), ts, sizeof(ts));
        printf("%-10lld %-25s %-9s %-28s %8lld %s\n", (long long)hv_db_column_int64(st, 0), ts,
               hv_db_column_text(st, 2, NULL), hv_db_column_text(st, 3, NULL),
               (long long)hv_db_column_int64(st, 4), hv_db_column_text(st, 5, NULL));
        rc = HV_OK;
    }
    if (st) hv_db_done(st);
    hv_db_close(db);
    return rc < 0 ? HV_EXIT_FAILURE : HV_EXIT_OK;
}

static size_t print_body(char *p, size_t size, size_t n, void *ud) {
    (void)ud;
    fwrite(p, size, n, stdout);
    return size * n;
}

static int cmd_reprocess(hv_engine_t *e, int argc, char **argv) {
    char host[256], url[1024];
    int port = 0;
    long code = 0;
    CURL *c;
    CURLcode r;
    if (argc != 2) {
        fprintf(stderr, "usage: holovitals channel reprocess ID MESSAGE_ID\n");
        return HV_EXIT_USAGE;
    }
    hv_parse_hostport(hv_config_str(hv_engine_config(e), "http.listen"), host, sizeof(host), &port);
    snprintf(url, sizeof(url), "http://%s:%d/channels/%s/messages/%s/reprocess",
             strcmp(host, "0.0.0.0") == 0 ? "127.0.0.1" : host, port, argv[0], argv[1]);
    c = curl_easy_init();
    if (c == NULL) return HV_EXIT_FAILURE;
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, "");
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, print_body);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 30L);
    r = curl_easy_perform(c);
    if (r == CURLE_OK) curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &code);
    curl_easy_cleanup(c);
    printf("\n");
    if (r != CURLE_OK) {
        fprintf(stderr, "holovitals: cannot reach the engine at %s: %s\n", url, curl_easy_strerror(r));
        return HV_EXIT_FAILURE;
    }
    return code == 200 ? HV_EXIT_OK : HV_EXIT_FAILURE;
}

const hv_command_t hv__chan_commands[] = {
    {"channel test", "channel test FILE MESSAGE", "dry-run a message through a channel file",
     "Runs MESSAGE (a file) through FILE's filter, each step (printing each step's output) and\n"
     "each destination's `when`, printing what would be delivered where. Nothing is stored or\n"
     "sent. Exit code 0 when the message passes (or is filtered), 1 when a step fails.",
     cmd_test},
    {"channel stats", "channel stats [--data DIR]", "message and queue counts per channel",
     NULL, cmd_stats},
    {"channel messages", "channel messages ID [--status S] [--limit N] [--data DIR]",
     "list a channel's messages, newest first", NULL, cmd_messages},
    {"channel reprocess", "channel reprocess ID MESSAGE_ID [--http H:P]",
     "ask the running engine to reprocess a message", NULL, cmd_reprocess},
    {"channel validate", "channel validate FILE...", "check channel files",
     "Loads each FILE as serve would and reports the first problem of each as\n"
     "FILE:LINE:COLUMN: message. Types provided by modules (mllp, fhir-store, steps\n"
     "such as hl7v2-to-fhir) are accepted by name here; serve refuses a channel whose\n"
     "types no running module provides. Exit code 0 if all are valid, 2 if not.",
     cmd_validate},
    {"channel list", "channel list [--channels DIR]", "list the channel files and what they do",
     NULL, cmd_list},
    {NULL, NULL, NULL, NULL, NULL},
};
