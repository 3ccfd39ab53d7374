/*
 * module.c — the hl7v2 module: its settings, its lifecycle under `serve` (open the
 * message store and the MLLP TLS context of mllp.tls_*, register the HTTP routes,
 * listen for MLLP), and its CLI commands (cli.c). The MLLP listen address itself,
 * mllp.listen (--mllp), is declared by the engine, which prints it in the start banner.
 */
#include "config.h"

#include <stdio.h>
#include <string.h>

#include "adapters/hl7v2/hl7v2_int.h"

static const hv_setting_t settings[] = {
    {"mllp.enabled", NULL, HV_SET_BOOL, "true", NULL,
     "listen for HL7 v2 over MLLP on mllp.listen (the hl7v2-inbound channel)"},
    {"mllp.max_message", NULL, HV_SET_SIZE, "16MiB", NULL,
     "largest MLLP frame; a larger one closes the connection"},
    {"mllp.idle_timeout", NULL, HV_SET_DURATION, "5m", NULL,
     "close an MLLP connection after this long without a byte (0: never)"},
    {"mllp.max_connections", NULL, HV_SET_INT, "10000", NULL, "most open MLLP connections"},
    {"mllp.max_inflight", NULL, HV_SET_INT, "256", NULL,
     "unacknowledged messages per connection before reading pauses"},
    {"mllp.tls_cert", NULL, HV_SET_STRING, "", NULL,
     "PEM certificate chain: with mllp.tls_key, the MLLP port speaks TLS only"},
    {"mllp.tls_key", NULL, HV_SET_STRING, "", NULL, "PEM private key of mllp.tls_cert"},
    {"mllp.tls_client_ca", NULL, HV_SET_STRING, "", NULL,
     "PEM CA certificate(s): MLLP peers must present a certificate signed by one (mutual TLS)"},
    {"hl7v2.dedup_window", NULL, HV_SET_DURATION, "24h", NULL,
     "a message with the same MSH-3, MSH-4 and MSH-10 within this window is a resend: "
     "it gets the original ACK and is not stored again (0: no dedup)"},
    {"hl7v2.max_segments", NULL, HV_SET_INT, "100000", NULL, "most segments in one message"},
    {"hl7v2.strict_escapes", NULL, HV_SET_BOOL, "true", NULL,
     "reject (AR) a message with an unknown or unterminated escape sequence"},
    {"hl7v2.store_queue", NULL, HV_SET_INT, "65536", NULL,
     "messages waiting for the store before new ones are answered AE (busy)"},
    {"hl7v2.store_batch", NULL, HV_SET_INT, "1024", NULL, "most messages in one commit"},
    {"hl7v2.synchronous", NULL, HV_SET_ENUM, "FULL", "FULL|NORMAL|OFF",
     "durability of the message store commits (FULL: on disk before the ACK)"},
    {NULL, NULL, 0, NULL, NULL, NULL},
};

/* Copies a path setting; 0 when it does not fit. */
static int copy_path(char *dst, size_t cap, const char *v) {
    if (v == NULL) v = "";
    if (strlen(v) >= cap) return 0;
    memcpy(dst, v, strlen(v) + 1);
    return 1;
}

static int config_error(const char *what) {
    fprintf(stderr, "holovitals: %s\n", what);
    hv_log(HV_LOG_ERROR, "hl7v2.config", "%s", what);
    return HV_ECONFIG;
}

static int read_conf(hv_engine_t *e, hv__hl7v2_conf_t *c) {
    hv_config_t *cfg = hv_engine_config(e);
    memset(c, 0, sizeof(*c));
    if (hv_parse_hostport(hv_config_str(cfg, "mllp.listen"), c->listen_host,
                          sizeof(c->listen_host), &c->listen_port) != HV_OK)
        return HV_ECONFIG;
    c->mllp_enabled = hv_config_bool(cfg, "mllp.enabled");
    c->max_message = (size_t)hv_config_size(cfg, "mllp.max_message");
    c->idle_timeout_ms = hv_config_duration_ms(cfg, "mllp.idle_timeout");
    c->max_connections = (size_t)hv_config_int(cfg, "mllp.max_connections");
    c->max_inflight = (size_t)hv_config_int(cfg, "mllp.max_inflight");
    c->dedup_window_ms = hv_config_duration_ms(cfg, "hl7v2.dedup_window");
    c->max_segments = (size_t)hv_config_int(cfg, "hl7v2.max_segments");
    c->strict_escapes = hv_config_bool(cfg, "hl7v2.strict_escapes");
    c->store_queue = (size_t)hv_config_int(cfg, "hl7v2.store_queue");
    c->store_batch = (size_t)hv_config_int(cfg, "hl7v2.store_batch");
    snprintf(c->synchronous, sizeof(c->synchronous), "%s", hv_config_str(cfg, "hl7v2.synchronous"));
    if (!copy_path(c->tls_cert, sizeof(c->tls_cert), hv_config_str(cfg, "mllp.tls_cert")) ||
        !copy_path(c->tls_key, sizeof(c->tls_key), hv_config_str(cfg, "mllp.tls_key")) ||
        !copy_path(c->tls_client_ca, sizeof(c->tls_client_ca),
                   hv_config_str(cfg, "mllp.tls_client_ca")))
        return config_error("a mllp.tls_* path is too long");
    if ((c->tls_cert[0] == '\0') != (c->tls_key[0] == '\0'))
        return config_error("mllp.tls_cert and mllp.tls_key must be set together");
    if (c->tls_client_ca[0] != '\0' && c->tls_cert[0] == '\0')
        return config_error("mllp.tls_client_ca needs mllp.tls_cert and mllp.tls_key");
    if (c->max_message == 0 || c->max_inflight == 0 || c->max_connections == 0 ||
        c->store_queue == 0 || c->store_batch == 0)
        return HV_ECONFIG;
    return HV_OK;
}

static double gauge_connections(void *ud) { return (double)((hv__hl7v2_state_t *)ud)->nconns; }

static double gauge_store_queue(void *ud) {
    hv__hl7v2_state_t *st = ud;
    return st->storage != NULL ? (double)hv_storage_queued(st->storage) : 0;
}

/* GET /health: warn when the store's queue is over 80% full (new messages soon get AE). */
static void health(void *ud, int *status, char *output, size_t outlen) {
    hv__hl7v2_state_t *st = ud;
    size_t q = st->storage != NULL ? hv_storage_queued(st->storage) : 0;
    *status = HV_HEALTH_PASS;
    if (st->storage == NULL) *status = HV_HEALTH_FAIL;
    else if (q * 10 > st->conf.store_queue * 8) *status = HV_HEALTH_WARN;
    snprintf(output, outlen, "%zu MLLP connections, %zu messages waiting for the store", st->nconns,
             q);
}

static int hl7v2_init(hv_engine_t *e, void **state) {
    hv__hl7v2_state_t *st = hv_calloc(1, sizeof(*st));
    hv_metrics_t *m = hv_engine_metrics(e);
    int rc;
    if (st == NULL) return HV_ENOMEM;
    st->engine = e;
    rc = read_conf(e, &st->conf);
    if (rc != HV_OK) goto fail;
    st->m_received = hv_metrics_counter(m, "hv_hl7v2_messages_received_total",
                                        "MLLP frames received", NULL);
    st->m_acked = hv_metrics_counter(m, "hv_hl7v2_messages_stored_total",
                                     "messages stored and acknowledged", NULL);
    st->m_rejected = hv_metrics_counter(m, "hv_hl7v2_messages_rejected_total",
                                        "messages answered AR/CR (unparseable)", NULL);
    st->m_duplicates = hv_metrics_counter(m, "hv_hl7v2_messages_duplicate_total",
                                          "resends answered with the original ACK", NULL);
    st->m_errors = hv_metrics_counter(m, "hv_hl7v2_messages_error_total",
                                      "messages answered AE (store busy or failed)", NULL);
    hv_metrics_gauge_fn(m, "hv_hl7v2_mllp_connections", "open MLLP connections", NULL,
                        gauge_connections, st);
    hv_metrics_gauge_fn(m, "hv_hl7v2_store_queued", "messages waiting for the message store",
                        NULL, gauge_store_queue, st);
    st->m_tls_failed =
        hv_metrics_counter(m, "hv_hl7v2_mllp_tls_handshake_failures_total",
                           "MLLP connections closed because the TLS handshake failed", NULL);
    /* One read (64 KiB of TLS records) decrypts to less; the cap only guards the contract. */
    hv_buf_init(&st->plain, 4 * sizeof(st->readbuf));
    if (st->conf.mllp_enabled && st->conf.tls_cert[0] != '\0') {
        hv_error_t err;
        hv_error_clear(&err);
        st->tls = hv_tls_server_ctx_new(st->conf.tls_cert, st->conf.tls_key,
                                        st->conf.tls_client_ca[0] ? st->conf.tls_client_ca : NULL,
                                        &err);
        if (st->tls == NULL) {
            fprintf(stderr, "holovitals: MLLP TLS: %s%s%s\n", err.location,
                    err.location[0] ? ": " : "", err.message);
            rc = HV_ECONFIG;
            goto fail;
        }
    }
    rc = hv__hl7v2_store_open(e, &st->conf, &st->storage);
    if (rc != HV_OK) goto fail;
    rc = hv_health_register(e, "hl7v2:store", health, st);
    if (rc != HV_OK) goto fail;
    rc = hv__hl7v2_routes_add(e, st);
    if (rc != HV_OK) goto fail;
    *state = st;
    return HV_OK;
fail:
    if (st->storage != NULL) hv_storage_free(st->storage);
    hv_tls_ctx_free(st->tls);
    hv_free(st);
    return rc;
}

static int hl7v2_start(hv_engine_t *e, void *state) {
    hv__hl7v2_state_t *st = state;
    (void)e;
    if (!st->conf.mllp_enabled) return HV_OK;
    return hv__hl7v2_listener_start(st);
}

static void hl7v2_stop(hv_engine_t *e, void *state) {
    (void)e;
    hv__hl7v2_listener_stop(state);
}

static void hl7v2_free(hv_engine_t *e, void *state) {
    hv__hl7v2_state_t *st = state;
    (void)e;
    if (st == NULL) return;
    hv__hl7v2_listener_stop(st);
    /* Runs what is still queued; done callbacks find their connections closed. */
    if (st->storage != NULL) hv_storage_free(st->storage);
    st->storage = NULL;
    hv_buf_release(&st->plain);
    hv_tls_ctx_free(st->tls);
    hv_free(st);
}

const hv_module_t hv_hl7v2_module = {
    "hl7v2", settings, hv__hl7v2_commands, hl7v2_init, hl7v2_start, hl7v2_stop, hl7v2_free,
};
