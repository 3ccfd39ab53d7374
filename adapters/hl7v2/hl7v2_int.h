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

/* The channel that takes HL7 v2 on mllp.listen (--mllp): channels/hl7v2-inbound.json, or
 * the built-in one the module registers when no file has this id (module.c). */
#define HV__HL7V2_CHANNEL "hl7v2-inbound"

/* The MLLP counters of /metrics, shared by every mllp source (the hl7v2 module's state, module.c). */
typedef struct hv__hl7v2_metrics {
    hv_counter_t *received, *stored, *rejected, *duplicates, *errors, *tls_failed;
    size_t nconns; /* open MLLP connections of all mllp sources */
} hv__hl7v2_metrics_t;

/* The counters of the running engine; NULL when the hl7v2 module is not running (--services). */
hv__hl7v2_metrics_t *hv__hl7v2_metrics(hv_engine_t *e);

/* source.c: the `mllp` channel source. */
extern const hv_channel_source_t hv__hl7v2_mllp_source;

/* cli.c */
extern const hv_command_t hv__hl7v2_commands[];

#endif
