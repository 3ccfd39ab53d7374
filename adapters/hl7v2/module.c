/*
 * module.c — the hl7v2 module: its settings, its CLI commands (cli.c) and the
 * MLLP counters of /metrics. Under `serve` it registers the built-in hl7v2-inbound channel (engine.h
 * hv_channel_register_builtin): an mllp source on mllp.listen (--mllp) with the
 * mllp.* and hl7v2.* settings, storing every message in the channel store and
 * acknowledging it after the commit. A file channels/hl7v2-inbound.json (the
 * shipped one maps to FHIR) replaces it. The receiving itself is the mllp
 * channel source (source.c): there is one MLLP path.
 */
#include "config.h"

#include <stdio.h>
#include <string.h>

#include <json-c/json.h>

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
    {NULL, NULL, 0, NULL, NULL, NULL},
};

static int config_error(const char *what) {
    fprintf(stderr, "holovitals: %s\n", what);
    hv_log(HV_LOG_ERROR, "hl7v2.config", "%s", what);
    return HV_ECONFIG;
}

static void put_int(json_object *o, const char *k, int64_t v) {
    json_object_object_add(o, k, json_object_new_int64(v));
}

/*
 * The built-in hl7v2-inbound channel's text, from the settings: a channel file
 * with an mllp source and nothing else (store, ACK after the commit). NULL when
 * the settings are invalid (said on stderr).
 */
static char *builtin_json(hv_engine_t *e) {
    hv_config_t *cfg = hv_engine_config(e);
    const char *listen = hv_config_str(cfg, "mllp.listen");
    const char *cert = hv_config_str(cfg, "mllp.tls_cert");
    const char *key = hv_config_str(cfg, "mllp.tls_key");
    const char *ca = hv_config_str(cfg, "mllp.tls_client_ca");
    json_object *root = NULL, *src = NULL;
    char host[256];
    char *out = NULL;
    int port = 0;
    int64_t max_message = hv_config_size(cfg, "mllp.max_message");
    int64_t max_conns = hv_config_int(cfg, "mllp.max_connections");
    int64_t max_inflight = hv_config_int(cfg, "mllp.max_inflight");
    if (cert == NULL) cert = "";
    if (key == NULL) key = "";
    if (ca == NULL) ca = "";
    if (listen == NULL || hv_parse_hostport(listen, host, sizeof(host), &port) != HV_OK) {
        config_error("mllp.listen must be host:port");
        return NULL;
    }
    if ((cert[0] == '\0') != (key[0] == '\0')) {
        config_error("mllp.tls_cert and mllp.tls_key must be set together");
        return NULL;
    }
    if (ca[0] != '\0' && cert[0] == '\0') {
        config_error("mllp.tls_client_ca needs mllp.tls_cert and mllp.tls_key");
        return NULL;
    }
    if (max_message < 1024 || max_message > ((int64_t)1 << 31) || max_conns < 1 ||
        max_conns > 1000000 || max_inflight < 1 || max_inflight > 1000000) {
        config_error("mllp.max_message (1 KiB to 2 GiB), mllp.max_connections and "
                     "mllp.max_inflight (1 to 1000000) are out of range");
        return NULL;
    }
    if (cert[0] != '\0') {
        /* Loaded once here so that a bad certificate stops the start with its reason. */
        hv_error_t err;
        hv_tls_ctx_t *tls;
        hv_error_clear(&err);
        tls = hv_tls_server_ctx_new(cert, key, ca[0] ? ca : NULL, &err);
        if (tls == NULL) {
            fprintf(stderr, "holovitals: MLLP TLS: %s%s%s\n", err.location,
                    err.location[0] ? ": " : "", err.message);
            return NULL;
        }
        hv_tls_ctx_free(tls);
    }
    root = json_object_new_object();
    src = json_object_new_object();
    if (root == NULL || src == NULL) goto out;
    json_object_object_add(root, "id", json_object_new_string(HV__HL7V2_CHANNEL));
    json_object_object_add(root, "name", json_object_new_string("HL7 v2 inbound (built-in)"));
    json_object_object_add(root, "description",
                           json_object_new_string("HL7 v2 over MLLP on mllp.listen, stored and "
                                                  "acknowledged; channels/hl7v2-inbound.json "
                                                  "replaces it"));
    json_object_object_add(src, "type", json_object_new_string("mllp"));
    json_object_object_add(src, "listen", json_object_new_string(listen));
    put_int(src, "max_message", max_message);
    put_int(src, "max_connections", max_conns);
    put_int(src, "max_inflight", max_inflight);
    put_int(src, "idle_timeout_ms", (int64_t)hv_config_duration_ms(cfg, "mllp.idle_timeout"));
    put_int(src, "dedup_window_ms", (int64_t)hv_config_duration_ms(cfg, "hl7v2.dedup_window"));
    if (cert[0] != '\0') {
        json_object_object_add(src, "tls_cert", json_object_new_string(cert));
        json_object_object_add(src, "tls_key", json_object_new_string(key));
        if (ca[0] != '\0') json_object_object_add(src, "tls_client_ca", json_object_new_string(ca));
    }
    json_object_object_add(root, "source", src);
    src = NULL;
    out = hv_strdup(json_object_to_json_string_ext(root, JSON_C_TO_STRING_PLAIN));
out:
    json_object_put(src);
    json_object_put(root);
    return out;
}

static double gauge_connections(void *ud) { return (double)((hv__hl7v2_metrics_t *)ud)->nconns; }

hv__hl7v2_metrics_t *hv__hl7v2_metrics(hv_engine_t *e) { return hv_engine_module_state(e, "hl7v2"); }

/* The module's state: the MLLP counters of /metrics that every mllp source adds to. */
static int hl7v2_init(hv_engine_t *e, void **state) {
    hv_metrics_t *mt = hv_engine_metrics(e);
    hv__hl7v2_metrics_t *m = NULL;
    char *json = NULL;
    int rc = HV_OK;
    *state = NULL;
    m = hv_calloc(1, sizeof(*m));
    if (m == NULL) return HV_ENOMEM;
    if (mt != NULL) {
        m->received = hv_metrics_counter(mt, "hv_hl7v2_messages_received_total",
                                         "MLLP frames received (all mllp sources)", NULL);
        m->stored = hv_metrics_counter(mt, "hv_hl7v2_messages_stored_total",
                                       "messages stored and acknowledged", NULL);
        m->rejected = hv_metrics_counter(mt, "hv_hl7v2_messages_rejected_total",
                                         "messages answered AR/CR (unparseable)", NULL);
        m->duplicates = hv_metrics_counter(mt, "hv_hl7v2_messages_duplicate_total",
                                           "resends answered with the original ACK", NULL);
        m->errors = hv_metrics_counter(mt, "hv_hl7v2_messages_error_total",
                                       "messages answered AE (store busy or failed)", NULL);
        m->tls_failed =
            hv_metrics_counter(mt, "hv_hl7v2_mllp_tls_handshake_failures_total",
                               "MLLP connections closed because the TLS handshake failed", NULL);
        hv_metrics_gauge_fn(mt, "hv_hl7v2_mllp_connections", "open MLLP connections", NULL,
                            gauge_connections, m);
    }
    if (hv_config_bool(hv_engine_config(e), "mllp.enabled")) {
        json = builtin_json(e);
        rc = json != NULL ? hv_channel_register_builtin(e, HV__HL7V2_CHANNEL, json) : HV_ECONFIG;
        hv_free(json);
    }
    if (rc != HV_OK) {
        hv_free(m);
        return rc;
    }
    *state = m;
    return HV_OK;
}

/* After the channels module (listed later, freed earlier): no mllp source runs any more. */
static void hl7v2_free(hv_engine_t *e, void *state) {
    (void)e;
    hv_free(state);
}

const hv_module_t hv_hl7v2_module = {
    "hl7v2", settings, hv__hl7v2_commands, hl7v2_init, NULL, NULL, hl7v2_free,
};
