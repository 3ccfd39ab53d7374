/*
 * audit.h — the HIPAA audit trail: the public interface of destinations/audit.
 *
 * The module records every security-relevant event (engine.h hv_audit_record)
 * as a FHIR R4 AuditEvent shaped after IHE Basic Audit Log Patterns, in an
 * append-only, hash-chained store with signed checkpoints; it serves the audit,
 * security-alert and compliance endpoints, raises alerts from rules over the
 * event stream, provides the `audit` channel destination and the `audit`
 * commands (verify, archive). Other modules never call it directly: they use
 * the engine's hook, which is a no-op when this module is not running.
 */
#ifndef HV_AUDIT_H
#define HV_AUDIT_H

#include "engine/engine.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The outcome of walking the chain (`holovitals audit verify`, /compliance/report). */
typedef struct hv_audit_verify {
    int64_t checked;      /* records whose hash was recomputed */
    int64_t checkpoints;  /* signed checkpoints checked */
    int64_t first_bad;    /* the sequence number of the first bad record, 0 when none */
    char problem[32];     /* "altered", "deleted", "inserted", "checkpoint", "truncated", "" */
    char detail[256];     /* one sentence, no PHI */
} hv_audit_verify_t;

extern const hv_module_t hv_audit_module;

#ifdef __cplusplus
}
#endif
#endif /* HV_AUDIT_H */
