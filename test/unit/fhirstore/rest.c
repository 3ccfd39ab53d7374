/* rest.c — unit tests of fhir/rest.c: the change hook the event bus subscribes to. */
#include "tests.h"

#include <string.h>

#include "fhir/rest_int.h"

typedef struct seen {
    int calls;
    char type[HV__FHIR_TYPE_MAX];
    char id[HV__FHIR_ID_MAX];
    int64_t version;
    hv_fhir_change_t change;
} seen_t;

static void on_change(void *ud, const char *type, const char *id, int64_t version, hv_fhir_change_t change)
{
    seen_t *s = ud;
    s->calls++;
    snprintf(s->type, sizeof(s->type), "%s", type);
    snprintf(s->id, sizeof(s->id), "%s", id);
    s->version = version;
    s->change = change;
}

static void fhir_notify_reports_writes_and_skips_reads_and_failures(void **state)
{
    hv__fhir_t f;
    hv__fop_t op;
    seen_t s;
    (void)state;
    memset(&f, 0, sizeof(f));
    memset(&s, 0, sizeof(s));
    f.listeners[0].cb = on_change;
    f.listeners[0].ud = &s;
    f.nlisteners = 1;
    hv__fop_init(&op, HV__FOP_UPDATE);
    snprintf(op.type, sizeof(op.type), "Patient");
    snprintf(op.id, sizeof(op.id), "p1");
    op.status = 200;
    op.out_version = 3;
    op.change = HV__CHANGE_UPDATED;
    hv__fhir_notify(&f, &op);
    assert_int_equal(s.calls, 1);
    assert_string_equal(s.type, "Patient");
    assert_string_equal(s.id, "p1");
    assert_int_equal(s.version, 3);
    assert_int_equal(s.change, HV_FHIR_CHANGE_UPDATED);
    op.change = HV__CHANGE_DELETED;
    hv__fhir_notify(&f, &op);
    assert_int_equal(s.change, HV_FHIR_CHANGE_DELETED);
    op.change = HV__CHANGE_NONE; /* a read, or a conditional create that matched */
    hv__fhir_notify(&f, &op);
    op.change = HV__CHANGE_CREATED;
    op.status = 412; /* refused: nothing was written */
    hv__fhir_notify(&f, &op);
    assert_int_equal(s.calls, 2);
    /* without the fhir module running there is nothing to subscribe to */
    assert_int_equal(hv_fhir_store_on_change(NULL, on_change, &s), HV_ENOTFOUND);
}

int run_rest_tests(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(fhir_notify_reports_writes_and_skips_reads_and_failures),
    };
    return cmocka_run_group_tests_name("fhir rest", tests, NULL, NULL);
}
