/*
 * audit.c — the engine's audit hook: one entry point, hv_audit_record, that every
 * module calls for security-relevant events (FHIR R4 AuditEvent, IHE BALP), and
 * the slot where the audit module (destinations/audit) plugs its sink. The engine
 * itself stores nothing: without a sink an event is dropped on purpose, because
 * then no audit trail was configured for this process (--services without audit).
 */
#include "config.h"
#include "engine/engine_int.h"

void hv_audit_set_sink(hv_engine_t *e, hv_audit_sink_cb fn, void *ud) {
    e->audit_sink = fn;
    e->audit_ud = ud;
}

int hv_audit_record(hv_engine_t *e, const hv_audit_event_t *ev) {
    if (e == NULL || ev == NULL || e->audit_sink == NULL) return HV_OK;
    return e->audit_sink(e->audit_ud, ev);
}

int hv_audit_outcome_http(int status) {
    if (status >= 500) return HV_AUDIT_OUTCOME_SERIOUS;
    if (status >= 400) return HV_AUDIT_OUTCOME_MINOR;
    return HV_AUDIT_OUTCOME_SUCCESS;
}

int hv_audit_note(hv_http_req_t *req, char action, const char *subtype, int outcome, const char *user,
                  const char *detail) {
    hv_audit_event_t ev = {0};
    if (req == NULL) return HV_OK;
    ev.action = action;
    ev.subtype = subtype;
    ev.outcome = outcome;
    ev.req = req;
    ev.user = user;
    ev.detail = detail;
    return hv_audit_record(hv_http_req_engine(req), &ev);
}

void hv_consent_set_filter(hv_engine_t *e, hv_consent_filter_cb fn, void *ud) {
    e->consent_filter = fn;
    e->consent_ud = ud;
}

int hv_consent_withholds(hv_engine_t *e, const char *purpose, const char *content, size_t len,
                         const char *content_type) {
    if (e == NULL || e->consent_filter == NULL || purpose == NULL) return 0;
    return e->consent_filter(e->consent_ud, purpose, content, len, content_type);
}
