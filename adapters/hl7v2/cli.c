/*
 * cli.c — `holovitals hl7 parse FILE` and `holovitals hl7 send --host H --port P FILE…`.
 *
 * parse prints each message of the file (a message, or a batch/file of them) as a
 * JSON tree (serialize.c's shape); several messages print as a JSON array. A file
 * that does not parse prints "FILE: segment N, column C: LOCATION: what" on
 * standard error and exits 1.
 *
 * send splits each file into messages, sends them in order over one MLLP
 * connection (sender.c), and prints each ACK with its segments on separate lines.
 * The exit code is 1 when any ACK is not AA/CA or a message could not be sent.
 * With --tls the connection is MLLP over TLS: the server certificate is verified
 * against --ca FILE (else the system's CAs) and must name --host, unless
 * --insecure; --cert/--key present a client certificate (mutual TLS).
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "adapters/hl7v2/hl7v2_int.h"

#define MAX_FILE (256u << 20)

static void print_error(const char *file, const hv_error_t *err) {
    fprintf(stderr, "%s:", file);
    if (err->line > 0) fprintf(stderr, " segment %d,", err->line);
    if (err->column > 0) fprintf(stderr, " column %d,", err->column);
    if (err->location[0]) fprintf(stderr, " %s:", err->location);
    fprintf(stderr, " %s\n", err->message);
}

static int cmd_parse(hv_engine_t *e, int argc, char **argv) {
    hv_arena_t *a = NULL;
    hv_hl7v2_span_t *spans = NULL;
    hv_error_t err;
    hv_buf_t out;
    size_t len = 0, cnt = 0, i;
    char *text = NULL;
    int rc = HV_EXIT_FAILURE;
    (void)e;
    if (argc != 1) {
        fprintf(stderr, "usage: holovitals hl7 parse FILE\n");
        return HV_EXIT_USAGE;
    }
    hv_buf_init(&out, 0);
    hv_error_clear(&err);
    if (hv_file_read(argv[0], MAX_FILE, &text, &len, &err) != HV_OK) {
        fprintf(stderr, "%s: %s\n", argv[0], err.message);
        goto out;
    }
    a = hv_arena_new(0);
    if (a == NULL) goto out;
    if (hv_hl7v2_batch_split(a, text, len, 1000000, &spans, &cnt, &err) != HV_OK) {
        print_error(argv[0], &err);
        goto out;
    }
    if (cnt == 0) {
        fprintf(stderr, "%s: no MSH segment\n", argv[0]);
        goto out;
    }
    if (cnt > 1) hv_buf_puts(&out, "[");
    for (i = 0; i < cnt; i++) {
        hv_hl7v2_msg_t m;
        if (hv_hl7v2_parse(a, spans[i].p, spans[i].len, NULL, &m, &err, NULL) != HV_OK) {
            if (cnt > 1) fprintf(stderr, "%s: message %zu:", argv[0], i + 1);
            print_error(argv[0], &err);
            goto out;
        }
        if (i > 0) hv_buf_puts(&out, ",");
        if (hv_hl7v2_to_json(&m, &out) != HV_OK) goto out;
    }
    if (cnt > 1) hv_buf_puts(&out, "]\n");
    fwrite(out.data, 1, out.len, stdout);
    rc = HV_EXIT_OK;
out:
    hv_buf_release(&out);
    hv_arena_free(a);
    hv_free(text);
    return rc;
}

typedef struct send_ctx {
    int failed;
    int pending;
    hv_mllp_sender_t *s; /* for the reason of a transport failure */
} send_ctx_t;

static void on_sent(int status, int outcome, const char *ack, size_t n, void *ud) {
    send_ctx_t *c = ud;
    size_t i;
    c->pending--;
    if (status != HV_OK) {
        const char *why = c->s != NULL ? hv_mllp_sender_last_error(c->s) : "";
        fprintf(stderr, "hl7 send: no ACK: %s\n", why[0] ? why : hv_strerror(status));
        c->failed = 1;
        return;
    }
    if (ack == NULL) {
        printf("(no ACK: MSH-15 asks for none)\n\n");
        return;
    }
    for (i = 0; i < n; i++) putchar(ack[i] == '\r' ? '\n' : ack[i]);
    if (n > 0 && ack[n - 1] != '\r') putchar('\n');
    putchar('\n');
    if (outcome != HV_MLLP_DELIVERED) c->failed = 1;
}

static int cmd_send(hv_engine_t *e, int argc, char **argv) {
    hv_mllp_sender_opts_t o;
    hv_mllp_sender_t *s = NULL;
    uv_loop_t loop;
    send_ctx_t ctx = {0, 0, NULL};
    hv_error_t terr;
    const char *host = NULL;
    int port = 0, i, nfiles = 0, rc = HV_EXIT_FAILURE, loop_ok = 0;
    char **files;
    (void)e;
    files = hv_calloc((size_t)argc + 1, sizeof(char *));
    if (files == NULL) return HV_EXIT_FAILURE;
    memset(&o, 0, sizeof(o));
    for (i = 0; i < argc; i++) {
        if (strcmp(argv[i], "--host") == 0 && i + 1 < argc) host = argv[++i];
        else if (strcmp(argv[i], "--port") == 0 && i + 1 < argc) port = atoi(argv[++i]);
        else if (strcmp(argv[i], "--timeout") == 0 && i + 1 < argc) {
            uint64_t ms;
            if (hv_parse_duration_ms(argv[++i], &ms) != HV_OK) goto usage;
            o.ack_timeout_ms = ms;
        } else if (strcmp(argv[i], "--tls") == 0) o.tls = 1;
        else if (strcmp(argv[i], "--ca") == 0 && i + 1 < argc) o.tls_ca_file = argv[++i];
        else if (strcmp(argv[i], "--insecure") == 0) o.tls_insecure = 1;
        else if (strcmp(argv[i], "--cert") == 0 && i + 1 < argc) o.tls_cert_file = argv[++i];
        else if (strcmp(argv[i], "--key") == 0 && i + 1 < argc) o.tls_key_file = argv[++i];
        else if (strcmp(argv[i], "--server-name") == 0 && i + 1 < argc)
            o.tls_server_name = argv[++i];
        else if (argv[i][0] == '-' && argv[i][1] == '-') goto usage;
        else files[nfiles++] = argv[i];
    }
    if (host == NULL || port <= 0 || port > 65535 || nfiles == 0) goto usage;
    if (!o.tls && (o.tls_ca_file || o.tls_insecure || o.tls_cert_file || o.tls_key_file ||
                   o.tls_server_name)) {
        hv_free(files);
        fprintf(stderr, "hl7 send: --ca, --insecure, --cert, --key and --server-name need --tls\n");
        return HV_EXIT_USAGE;
    }
    o.host = host;
    o.port = port;
    o.max_attempts = 3;
    o.connect_timeout_ms = 5000;
    if (uv_loop_init(&loop) != 0) goto out;
    loop_ok = 1;
    hv_error_clear(&terr);
    if (hv_mllp_sender_new(&loop, &o, &s, &terr) != HV_OK) {
        if (terr.message[0])
            fprintf(stderr, "hl7 send: TLS: %s%s%s\n", terr.location,
                    terr.location[0] ? ": " : "", terr.message);
        else
            fprintf(stderr, "hl7 send: cannot create the MLLP sender\n");
        goto out;
    }
    ctx.s = s;
    for (i = 0; i < nfiles; i++) {
        size_t len = 0, cnt = 0, k;
        char *text = NULL;
        hv_arena_t *a = NULL;
        hv_hl7v2_span_t *spans = NULL;
        hv_error_t err;
        hv_error_clear(&err);
        if (hv_file_read(files[i], MAX_FILE, &text, &len, &err) != HV_OK) {
            fprintf(stderr, "%s: %s\n", files[i], err.message);
            ctx.failed = 1;
        } else if ((a = hv_arena_new(0)) == NULL) {
            fprintf(stderr, "%s: out of memory\n", files[i]);
            ctx.failed = 1;
        } else if (hv_hl7v2_batch_split(a, text, len, 1000000, &spans, &cnt, &err) != HV_OK) {
            print_error(files[i], &err);
            ctx.failed = 1;
        } else {
            for (k = 0; k < cnt; k++) {
                if (hv_mllp_sender_send(s, spans[k].p, spans[k].len, on_sent, &ctx) != HV_OK) {
                    fprintf(stderr, "%s: message %zu has no MSH-10\n", files[i], k + 1);
                    ctx.failed = 1;
                } else {
                    ctx.pending++;
                }
            }
        }
        hv_free(text);
        hv_arena_free(a);
    }
    while (ctx.pending > 0 && uv_run(&loop, UV_RUN_ONCE) != 0) {
    }
    rc = ctx.failed || ctx.pending > 0 ? HV_EXIT_FAILURE : HV_EXIT_OK;
out:
    hv_mllp_sender_free(s);
    if (loop_ok) {
        uv_run(&loop, UV_RUN_DEFAULT);
        uv_loop_close(&loop);
    }
    hv_free(files);
    fflush(stdout);
    return rc;
usage:
    hv_free(files);
    fprintf(stderr, "usage: holovitals hl7 send --host H --port P [--timeout 30s]\n"
                    "         [--tls [--ca FILE] [--insecure] [--cert FILE --key FILE]\n"
                    "          [--server-name NAME]] FILE...\n");
    return HV_EXIT_USAGE;
}

const hv_command_t hv__hl7v2_commands[] = {
    {"hl7 parse", "hl7 parse FILE", "print an HL7 v2 message (or batch) as a JSON tree",
     "Parses FILE (one message, or an FHS/BHS batch) and prints each message as\n"
     "{\"delimiters\",\"charset\",\"segments\":[{\"id\",\"fields\":[…]}]}: fields[n] is SEG-n,\n"
     "repetitions, components and subcomponents nest as arrays, values are unescaped.\n"
     "Exit code 1 with the segment, column and field of the first error.\n",
     cmd_parse},
    {"hl7 send",
     "hl7 send --host H --port P [--timeout 30s] [--tls [--ca FILE] [--insecure] "
     "[--cert FILE --key FILE] [--server-name NAME]] FILE...",
     "send HL7 v2 messages over MLLP and print each ACK",
     "Sends every message of each FILE (a batch is split) in order over one MLLP\n"
     "connection, waiting for each ACK (default 30s), reconnecting with backoff (3\n"
     "attempts). Prints each ACK; exit code 1 if any ACK is not AA/CA.\n"
     "--tls: MLLP over TLS; the server certificate must be signed by --ca FILE (else\n"
     "a CA of the system) and name --host (or --server-name), unless --insecure.\n"
     "--cert/--key present a client certificate (servers that require mutual TLS).\n",
     cmd_send},
    {NULL, NULL, NULL, NULL, NULL},
};
