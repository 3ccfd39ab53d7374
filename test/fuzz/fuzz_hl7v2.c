/*
 * fuzz_hl7v2.c — the HL7 v2 parser, serializer, path access, escapes and ACK builder
 * under arbitrary input. Invariants (abort on violation):
 *   - serialize(parse(x)) == x for every message the splitter and parser accept;
 *   - parse(serialize(parse(x))) has the same segments;
 *   - unescape(escape(s)) == s with the message's delimiters;
 *   - after set_text(path, v), a fresh parse of the serialization reads v back at path;
 *   - the ACK of any accepted message carries its MSH-10 in MSA-2.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "adapters/hl7v2/hl7v2.h"

#define CHECK(c)                                                                     \
    do {                                                                             \
        if (!(c)) {                                                                  \
            fprintf(stderr, "fuzz_hl7v2: invariant failed: %s (line %d)\n", #c, __LINE__); \
            abort();                                                                 \
        }                                                                            \
    } while (0)

static void one(hv_arena_t *a, const char *p, size_t n, int strict) {
    hv_hl7v2_parse_opts_t o;
    hv_hl7v2_msg_t m, m2, m3;
    hv_buf_t out, e, d, ack;
    hv_hl7v2_span_t s, ctl;
    hv_hl7v2_ack_opts_t ao;
    char code[3];
    size_t i;
    static const char *paths[] = {"MSH-9.2", "PID-3[2].1", "OBX[2]-5.1.2", "MSH-2", "PID-5"};

    hv_hl7v2_parse_opts_default(&o);
    o.strict_escapes = strict;
    if (hv_hl7v2_parse(a, p, n, &o, &m, NULL, NULL) != HV_OK) {
        hv_hl7v2_msg_t pk;
        if (hv_hl7v2_msh_peek(a, p, n, &pk) == HV_OK) {
            memset(&ao, 0, sizeof(ao));
            ao.code = HV_HL7V2_ACK_REJECT;
            hv_buf_init(&ack, 0);
            CHECK(hv_hl7v2_ack_build(&pk, &ao, &ack) == HV_OK);
            CHECK(hv_hl7v2_ack_read(ack.data, ack.len, code, NULL) == HV_OK);
            hv_buf_release(&ack);
        }
        return;
    }
    hv_buf_init(&out, 0);
    hv_buf_init(&e, 0);
    hv_buf_init(&d, 0);
    hv_buf_init(&ack, 0);
    CHECK(hv_hl7v2_serialize(&m, &out) == HV_OK);
    CHECK(out.len == n && memcmp(out.data, p, n) == 0);
    CHECK(hv_hl7v2_parse(a, out.data, out.len, &o, &m2, NULL, NULL) == HV_OK);
    CHECK(m2.nsegs == m.nsegs);
    for (i = 0; i < m.nsegs; i++)
        CHECK(m.segs[i].len == m2.segs[i].len &&
              memcmp(m.segs[i].p, m2.segs[i].p, m.segs[i].len) == 0);
    for (i = 0; i < sizeof(paths) / sizeof(paths[0]); i++) (void)hv_hl7v2_get(&m, paths[i], &s);
    hv_buf_reset(&e);
    (void)hv_hl7v2_to_json(&m, &e);

    /* Escapes round-trip the message's own text. */
    hv_buf_reset(&e);
    CHECK(hv_hl7v2_escape(&m.delims, p, n, &e) == HV_OK);
    if (m.delims.esc != 0) {
        CHECK(hv_hl7v2_unescape(&m.delims, e.data, e.len, 1, &d) == HV_OK);
        CHECK(d.len == n && memcmp(d.data, p, n) == 0);
    }

    /* The ACK echoes MSH-10. */
    memset(&ao, 0, sizeof(ao));
    ao.code = HV_HL7V2_ACK_ACCEPT;
    CHECK(hv_hl7v2_ack_build(&m, &ao, &ack) == HV_OK);
    CHECK(hv_hl7v2_ack_read(ack.data, ack.len, code, &ctl) == HV_OK);
    CHECK(hv_hl7v2_get(&m, "MSH-10", &s) != HV_OK || (s.len == ctl.len && memcmp(s.p, ctl.p, s.len) == 0) ||
          m.iconv_name != NULL);

    /* A write reads back after a round trip. */
    if (m.delims.esc != 0 && m.delims.sub != 0 && m.delims.rep != 0 && m.iconv_name == NULL) {
        const char *v = "v|^~&\\#x";
        char *t = NULL;
        CHECK(hv_hl7v2_set_text(&m, "MSH-4[2].2.2", v, strlen(v)) == HV_OK);
        hv_buf_reset(&out);
        CHECK(hv_hl7v2_serialize(&m, &out) == HV_OK);
        CHECK(hv_hl7v2_parse(a, out.data, out.len, &o, &m3, NULL, NULL) == HV_OK);
        CHECK(hv_hl7v2_get_text(&m3, "MSH-4[2].2.2", &t, NULL) == HV_OK);
        CHECK(strcmp(t, v) == 0);
    }
    hv_buf_release(&out);
    hv_buf_release(&e);
    hv_buf_release(&d);
    hv_buf_release(&ack);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    hv_arena_t *a = hv_arena_new(0);
    hv_hl7v2_span_t *spans = NULL;
    size_t cnt = 0, i;
    const char *p = (const char *)data;
    if (a == NULL) return 0;
    one(a, p, size, 1);
    one(a, p, size, 0);
    if (hv_hl7v2_batch_split(a, p, size, 1000, &spans, &cnt, NULL) == HV_OK) {
        for (i = 0; i < cnt; i++) {
            CHECK(spans[i].p >= p && spans[i].p + spans[i].len <= p + size);
            one(a, spans[i].p, spans[i].len, 1);
        }
    }
    hv_arena_free(a);
    return 0;
}
