/*
 * channel.c — HL7 v2 for the channel runtime (engine.h "Channels"): registers the
 * `mllp` source (source.c), the `mllp-send` destination and the "hl7v2" path
 * syntax of filter rules, from the small module hv_hl7v2_channels_module (it
 * registers only: `channel validate` and `channel test` call its init).
 *
 * The mllp source itself is described in source.c.
 *
 * mllp-send wraps hv_mllp_sender with one attempt per delivery: the channel's
 * queue does the retries, backoff and dead-lettering. AA/CA → delivered, AE/CE
 * and transport failures → retry, AR/CR → error (dead-letter).
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include "adapters/hl7v2/hl7v2_int.h"


/* ------------------------------------------------------------------------- */
/* Path provider                                                             */
/* ------------------------------------------------------------------------- */

static int paths_check(const char *path, hv_error_t *err) {
    hv_hl7v2_path_t p;
    if (hv_hl7v2_path_parse(path, &p) != HV_OK) {
        hv_error_set(err, HV_ECONFIG, NULL,
                     "\"%s\" is not an HL7 v2 path (e.g. MSH-9.1, PID-3[2].1, OBX[2]-5)", path);
        return HV_ECONFIG;
    }
    return HV_OK;
}

static int paths_get(const hv_channel_msg_t *m, const char *path, char **out) {
    hv_hl7v2_parse_opts_t o;
    hv_hl7v2_msg_t msg;
    hv_error_t err;
    size_t n = 0;
    if (m->arena == NULL) return HV_EINVAL;
    hv_hl7v2_parse_opts_default(&o);
    o.strict_escapes = 0;
    if (hv_hl7v2_parse(m->arena, m->content, m->len, &o, &msg, &err, NULL) != HV_OK)
        return HV_EPROTO;
    return hv_hl7v2_get_text(&msg, path, out, &n);
}

static const hv_channel_path_provider_t hl7_paths = {"hl7v2", paths_check, paths_get};

/* ------------------------------------------------------------------------- */
/* mllp-send                                                                 */
/* ------------------------------------------------------------------------- */

typedef struct msend {
    hv_mllp_sender_t *sender;
} msend_t;

typedef struct msend_req {
    hv_channel_sent_cb done;
    void *token;
} msend_req_t;

static int int_key(json_object *v, int64_t lo, int64_t hi) {
    return json_object_is_type(v, json_type_int) && json_object_get_int64(v) >= lo &&
           json_object_get_int64(v) <= hi;
}

static int msend_check(struct json_object *conf, hv_error_t *err) {
    json_object_object_foreach(conf, k, v) {
        if (strcmp(k, "host") == 0) {
            if (json_object_is_type(v, json_type_string) && json_object_get_string_len(v) > 0)
                continue;
            hv_error_set(err, HV_ECONFIG, k, "\"host\" must be a host name or address");
        } else if (strcmp(k, "port") == 0) {
            if (int_key(v, 1, 65535)) continue;
            hv_error_set(err, HV_ECONFIG, k, "\"port\" must be an integer from 1 to 65535");
        } else if (strcmp(k, "tls") == 0 || strcmp(k, "tls_insecure") == 0) {
            if (json_object_is_type(v, json_type_boolean)) continue;
            hv_error_set(err, HV_ECONFIG, k, "\"%s\" must be true or false", k);
        } else if (strcmp(k, "tls_ca_file") == 0) {
            if (json_object_is_type(v, json_type_string)) continue;
            hv_error_set(err, HV_ECONFIG, k, "\"tls_ca_file\" is the path of a PEM file");
        } else if (strcmp(k, "ack_timeout_ms") == 0 || strcmp(k, "connect_timeout_ms") == 0) {
            if (int_key(v, 1, 3600000)) continue;
            hv_error_set(err, HV_ECONFIG, k, "\"%s\" must be an integer from 1 to 3600000", k);
        } else {
            hv_error_set(err, HV_ECONFIG, k,
                         "unknown key \"%s\" in an mllp-send destination (known: host, port, "
                         "ack_timeout_ms, connect_timeout_ms, tls, tls_ca_file, tls_insecure)",
                         k);
        }
        return HV_ECONFIG;
    }
    if (hv_json_get_str(conf, "host") == NULL || !json_object_object_get_ex(conf, "port", NULL)) {
        hv_error_set(err, HV_ECONFIG, NULL, "an mllp-send destination needs \"host\" and \"port\"");
        return HV_ECONFIG;
    }
    return HV_OK;
}

static int msend_open(hv_engine_t *e, const char *channel, struct json_object *conf, void **state,
                      hv_error_t *err) {
    hv_mllp_sender_opts_t o;
    json_object *v = NULL;
    msend_t *s = hv_calloc(1, sizeof(*s));
    int rc;
    (void)channel;
    if (s == NULL) return HV_ENOMEM;
    memset(&o, 0, sizeof(o));
    o.host = hv_json_get_str(conf, "host");
    json_object_object_get_ex(conf, "port", &v);
    o.port = json_object_get_int(v);
    o.max_attempts = 1; /* the channel's queue retries */
    if (json_object_object_get_ex(conf, "ack_timeout_ms", &v))
        o.ack_timeout_ms = (uint64_t)json_object_get_int64(v);
    if (json_object_object_get_ex(conf, "connect_timeout_ms", &v))
        o.connect_timeout_ms = (uint64_t)json_object_get_int64(v);
    if (json_object_object_get_ex(conf, "tls", &v)) o.tls = json_object_get_boolean(v);
    if (json_object_object_get_ex(conf, "tls_insecure", &v)) o.tls_insecure = json_object_get_boolean(v);
    o.tls_ca_file = hv_json_get_str(conf, "tls_ca_file");
    rc = hv_mllp_sender_new(hv_engine_loop(e), &o, &s->sender, err);
    if (rc != HV_OK) {
        if (err != NULL && err->message[0] == '\0')
            hv_error_set(err, rc, NULL, "mllp-send: cannot create the sender: %s", hv_strerror(rc));
        hv_free(s);
        return rc;
    }
    *state = s;
    return HV_OK;
}

static void msend_sent(int status, int outcome, const char *ack, size_t ack_len, void *ud) {
    msend_req_t *r = ud;
    char detail[96];
    char code[3] = {0};
    int result;
    if (status != HV_OK) {
        snprintf(detail, sizeof(detail), "%s", hv_strerror(status));
        result = HV_CHANNEL_RETRY;
    } else {
        if (hv_hl7v2_ack_read(ack, ack_len, code, NULL) != HV_OK) snprintf(code, sizeof(code), "??");
        snprintf(detail, sizeof(detail), "ACK %.2s", code);
        result = outcome == HV_MLLP_DELIVERED ? HV_CHANNEL_DELIVERED
                 : outcome == HV_MLLP_ERROR   ? HV_CHANNEL_ERROR
                                              : HV_CHANNEL_RETRY;
    }
    r->done(r->token, result, detail);
    hv_free(r);
}

static int msend_send(void *state, const hv_channel_msg_t *m, hv_channel_sent_cb done,
                      void *token) {
    msend_t *s = state;
    msend_req_t *r = hv_calloc(1, sizeof(*r));
    int rc;
    if (r == NULL) return HV_ENOMEM;
    r->done = done;
    r->token = token;
    rc = hv_mllp_sender_send(s->sender, m->content, m->len, msend_sent, r);
    if (rc != HV_OK) {
        hv_free(r);
        /* No readable MSH-10: this message can never be acknowledged. */
        return rc;
    }
    return HV_OK;
}

static void msend_close(void *state) {
    msend_t *s = state;
    if (s == NULL) return;
    hv_mllp_sender_free(s->sender);
    hv_free(s);
}

static const hv_channel_dest_t mllp_send = {"mllp-send", msend_check, msend_open, msend_send,
                                            msend_close};

/* ------------------------------------------------------------------------- */
/* The module: registrations, and the MLLP counters of every mllp source      */
/* ------------------------------------------------------------------------- */

static int channels_init(hv_engine_t *e, void **state) {
    int rc = hv_channel_register_paths(e, &hl7_paths);
    if (rc == HV_OK) rc = hv_channel_register_dest(e, &mllp_send);
    if (rc == HV_OK) rc = hv_channel_register_source(e, &hv__hl7v2_mllp_source);
    *state = NULL;
    return rc;
}

const hv_module_t hv_hl7v2_channels_module = {
    "hl7v2-channels", NULL, NULL, channels_init, NULL, NULL, NULL,
};
