/* hl7v2_int.h — internals shared by the files of adapters/hl7v2/. */
#ifndef HV_ADAPTERS_HL7V2_INT_H
#define HV_ADAPTERS_HL7V2_INT_H

#include "adapters/hl7v2/hl7v2.h"

/* True for the bytes that end a segment (HL7 v2.5.1 §2.5.3 says CR; LF and CRLF are tolerated). */
#define HV__HL7_EOL(c) ((c) == '\r' || (c) == '\n')

/*
 * The text of one segment after its id: starting at the first field separator,
 * so that piece k (split by the field separator) is field k, or MSH-(k+1).
 */
hv_hl7v2_span_t hv__hl7v2_seg_body(const hv_hl7v2_seg_t *s);
/* Finds the occ-th (1-based) segment with id; NULL if absent. */
const hv_hl7v2_seg_t *hv__hl7v2_seg_find(const hv_hl7v2_msg_t *m, const char *id, unsigned occ);
/* Raw span of an MSH field by number (3 = sending application …); empty span when absent. */
hv_hl7v2_span_t hv__hl7v2_msh_field(const hv_hl7v2_msg_t *m, unsigned field);

/* The default channel's name, until the channel engine lands. */
#define HV__HL7V2_CHANNEL "hl7v2-inbound"

/* Settings of the module (module.c), read at init into this struct. */
typedef struct hv__hl7v2_conf {
    char listen_host[256];
    int listen_port;
    int mllp_enabled;
    size_t max_message;
    uint64_t idle_timeout_ms;
    uint64_t dedup_window_ms;
    size_t max_connections;
    size_t max_inflight;     /* unacknowledged messages per connection before reads pause */
    size_t max_segments;
    int strict_escapes;
    size_t store_queue;
    size_t store_batch;
    char synchronous[16];
    char tls_cert[1024];     /* mllp.tls_cert: PEM chain; with tls_key, the port speaks TLS only */
    char tls_key[1024];
    char tls_client_ca[1024]; /* mllp.tls_client_ca: require client certificates signed by it */
} hv__hl7v2_conf_t;

typedef struct hv__hl7v2_conn hv__hl7v2_conn_t;

/* The module's state (one per engine). */
typedef struct hv__hl7v2_state {
    hv_engine_t *engine;
    hv__hl7v2_conf_t conf;
    hv_storage_t *storage;
    uv_tcp_t server;
    int listening;
    int stopping;
    hv__hl7v2_conn_t *conns; /* open connections, a doubly linked list */
    size_t nconns;
    char readbuf[65536];     /* every read lands here; frames that span reads are copied */
    hv_tls_ctx_t *tls;       /* MLLP over TLS when set (mllp.tls_cert, mllp.tls_key) */
    hv_buf_t plain;          /* a TLS read's plaintext; framed before the next read */
    hv_counter_t *m_received, *m_acked, *m_rejected, *m_duplicates, *m_errors;
    hv_counter_t *m_tls_failed; /* TLS handshakes that failed */
} hv__hl7v2_state_t;

/*
 * One message on its way to the store. Strings are NUL-terminated raw field
 * values from the message (or "" when absent).
 */
typedef struct hv__hl7v2_rec {
    const char *raw;
    size_t raw_len;
    const char *control_id, *sending_app, *sending_facility, *type;
    uint64_t received_at;
    uint64_t dedup_window_ms;
    hv_buf_t ack;      /* the ACK for a new message */
    /* set by the storage job */
    int64_t id;
    int duplicate;
    hv_buf_t orig_ack; /* for a duplicate: the ACK the original got */
} hv__hl7v2_rec_t;

/* store.c */
int hv__hl7v2_store_open(hv_engine_t *e, const hv__hl7v2_conf_t *conf, hv_storage_t **out);
int hv__hl7v2_store_submit(hv_storage_t *s, hv__hl7v2_rec_t *r, hv_storage_done_cb done);
int hv__hl7v2_routes_add(hv_engine_t *e, hv__hl7v2_state_t *st);

/* listener.c */
int hv__hl7v2_listener_start(hv__hl7v2_state_t *st);
void hv__hl7v2_listener_stop(hv__hl7v2_state_t *st);

/* cli.c */
extern const hv_command_t hv__hl7v2_commands[];

#endif
