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

/* Settings of the module (module.c), read at init into this struct. */
typedef struct hv__hl7v2_conf {
    char listen_host[256];
    int listen_port;
    int mllp_enabled;
    size_t max_message;
    uint64_t idle_timeout_ms;
    uint64_t dedup_window_ms;
    size_t max_connections;
    size_t max_segments;
    int strict_escapes;
    uint64_t ack_timeout_ms;
    size_t store_queue;
} hv__hl7v2_conf_t;

#endif
