/* rest.c — unit tests of fhir/rest.c: the change hook the event bus subscribes to. */
#include "tests.h"

#include <stdio.h>
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

/* Puts Patient/<id> with the text "t<id>" at the bucket's current epoch. */
static void rcache_put_patient(hv__rcache_t *c, const char *id)
{
    uint32_t h = hv__rcache_hash("Patient", id);
    char text[64];
    snprintf(text, sizeof(text), "t%s", id);
    hv__rcache_put(c, h, hv__rcache_epoch(h), "Patient", id, 1, 0, text, strlen(text));
}

static int rcache_has_patient(hv__rcache_t *c, const char *id)
{
    hv__rcache_hit_t hit;
    char text[64];
    snprintf(text, sizeof(text), "t%s", id);
    return hv__rcache_get(c, hv__rcache_hash("Patient", id), "Patient", id, &hit) && hit.len == strlen(text) &&
           memcmp(hit.text, text, hit.len) == 0;
}

/* The read cache starts at 64 slots and doubles as reads fill it; below its full size
 * (here 64 MiB / 4 KiB = 16,384 slots) no entry is replaced by another. */
static void rcache_grows_on_demand_and_keeps_every_entry(void **state)
{
    hv__rcache_t *c = NULL;
    char id[32];
    (void)state;
    assert_int_equal(hv__rcache_new((size_t)64 << 20, &c), HV_OK);
    assert_int_equal(hv__rcache_slots(c), 64);
    for (int i = 0; i < 60; i++) {
        snprintf(id, sizeof(id), "p%d", i);
        rcache_put_patient(c, id);
    }
    assert_true(hv__rcache_slots(c) > 64);
    assert_true(hv__rcache_slots(c) < 16384);
    for (int i = 0; i < 60; i++) {
        snprintf(id, sizeof(id), "p%d", i);
        assert_true(rcache_has_patient(c, id));
    }
    hv__rcache_free(c);
}

/* At its full size the table stays direct-mapped: a read whose slot holds another
 * resource replaces it. */
static void rcache_at_full_size_replaces_a_colliding_entry(void **state)
{
    hv__rcache_t *c = NULL;
    char id[32];
    uint32_t first = hv__rcache_hash("Patient", "a") & 63;
    int i;
    (void)state;
    assert_int_equal(hv__rcache_new((size_t)64 * 4096, &c), HV_OK); /* 64 slots: full at once */
    for (i = 0; i < 100000; i++) {
        snprintf(id, sizeof(id), "b%d", i);
        if ((hv__rcache_hash("Patient", id) & 63) == first)
            break;
    }
    assert_true(i < 100000);
    rcache_put_patient(c, "a");
    assert_true(rcache_has_patient(c, "a"));
    rcache_put_patient(c, id);
    assert_int_equal(hv__rcache_slots(c), 64);
    assert_true(rcache_has_patient(c, id));
    assert_false(rcache_has_patient(c, "a"));
    hv__rcache_free(c);
}

int run_rest_tests(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(fhir_notify_reports_writes_and_skips_reads_and_failures),
        cmocka_unit_test(rcache_grows_on_demand_and_keeps_every_entry),
        cmocka_unit_test(rcache_at_full_size_replaces_a_colliding_entry),
    };
    return cmocka_run_group_tests_name("fhir rest", tests, NULL, NULL);
}
