/*
 * serialize.c — writing a parsed message back to bytes (HL7 v2.5.1 §2.5), and as
 * a JSON tree for `holovitals hl7 parse`.
 *
 * The wire form is the prefix, then each segment followed by the terminator run
 * it had when parsed, converted back to the MSH-18 character set when the parser
 * had converted it to UTF-8. A message nobody modified is therefore returned byte
 * for byte as it came in.
 *
 * JSON tree shape (values are unescaped text; a field with one repetition is
 * not wrapped in a repetition array, an item without components is a string):
 *   {"delimiters":"|^~\\&","charset":"","segments":[
 *     {"id":"PID","fields":[null,"1","",[["123","","","MR"],["456"]],…]}]}
 * fields[0] is null so that fields[n] is SEG-n; for MSH, fields[1] is MSH-1.
 */
#include "config.h"

#include <string.h>

#include "adapters/hl7v2/hl7v2_int.h"

int hv_hl7v2_serialize(const hv_hl7v2_msg_t *m, hv_buf_t *out) {
    hv_buf_t tmp, *dst = out;
    size_t i;
    int rc = HV_OK;
    if (!m->modified && m->iconv_name == NULL) return hv_buf_append(out, m->raw, m->raw_len);
    hv_buf_init(&tmp, 0);
    if (m->iconv_name != NULL) dst = &tmp;
    if ((rc = hv_buf_append(dst, m->text, m->prefix_len)) != HV_OK) goto out;
    for (i = 0; i < m->nsegs; i++) {
        const hv_hl7v2_seg_t *s = &m->segs[i];
        if ((rc = hv_buf_append(dst, s->p, s->len)) != HV_OK) goto out;
        if ((rc = hv_buf_append(dst, s->term, s->term_len)) != HV_OK) goto out;
    }
    if (m->iconv_name != NULL)
        rc = hv_hl7v2_charset_convert("UTF-8", m->iconv_name, tmp.data != NULL ? tmp.data : "",
                                      tmp.len, out);
out:
    hv_buf_release(&tmp);
    return rc;
}

/* Appends the unescaped text of a raw span as a JSON string. */
static int json_text(const hv_hl7v2_msg_t *m, hv_hl7v2_span_t s, hv_buf_t *scratch,
                     hv_buf_t *out) {
    int rc;
    /* Most values hold no escape sequence: write them as they are. */
    if (m->delims.esc == 0 || s.len == 0 || memchr(s.p, m->delims.esc, s.len) == NULL)
        return hv_buf_json_str(out, s.len ? s.p : "", s.len);
    hv_buf_reset(scratch);
    rc = hv_hl7v2_unescape(&m->delims, s.p, s.len, 0, scratch);
    if (rc != HV_OK) return rc;
    return hv_buf_json_str(out, scratch->data != NULL ? scratch->data : "", scratch->len);
}

/*
 * Appends a span split by seps[0], each piece recursively by the rest. Pieces are
 * visited in one left-to-right scan (memchr), so the cost is linear in the span.
 */
static int json_level(const hv_hl7v2_msg_t *m, hv_hl7v2_span_t s, const char *seps, int nseps,
                      hv_buf_t *scratch, hv_buf_t *out) {
    const char *p, *end;
    int rc, first = 1;
    if (nseps == 0) return json_text(m, s, scratch, out);
    if (seps[0] == 0 || s.p == NULL || memchr(s.p, seps[0], s.len) == NULL)
        return json_level(m, s, seps + 1, nseps - 1, scratch, out);
    if ((rc = hv_buf_putc(out, '[')) != HV_OK) return rc;
    p = s.p;
    end = s.p + s.len;
    for (;;) {
        const char *q = memchr(p, seps[0], (size_t)(end - p));
        hv_hl7v2_span_t piece;
        piece.p = p;
        piece.len = (size_t)((q != NULL ? q : end) - p);
        if (!first && (rc = hv_buf_putc(out, ',')) != HV_OK) return rc;
        first = 0;
        if ((rc = json_level(m, piece, seps + 1, nseps - 1, scratch, out)) != HV_OK) return rc;
        if (q == NULL) break;
        p = q + 1;
    }
    return hv_buf_putc(out, ']');
}

int hv_hl7v2_to_json(const hv_hl7v2_msg_t *m, hv_buf_t *out) {
    hv_buf_t scratch;
    char delims[7];
    size_t i, k = 0;
    int rc = HV_OK;
    const char inner[3] = {m->delims.rep, m->delims.comp, m->delims.sub};
    hv_buf_init(&scratch, 0);
    delims[k++] = m->delims.field;
    if (m->delims.comp) delims[k++] = m->delims.comp;
    if (m->delims.rep) delims[k++] = m->delims.rep;
    if (m->delims.esc) delims[k++] = m->delims.esc;
    if (m->delims.sub) delims[k++] = m->delims.sub;
    if (m->delims.trunc) delims[k++] = m->delims.trunc;
    if ((rc = hv_buf_puts(out, "{\"delimiters\":")) != HV_OK) goto out;
    if ((rc = hv_buf_json_str(out, delims, k)) != HV_OK) goto out;
    if ((rc = hv_buf_puts(out, ",\"charset\":")) != HV_OK) goto out;
    if ((rc = hv_buf_json_str(out, m->charset, strlen(m->charset))) != HV_OK) goto out;
    if ((rc = hv_buf_puts(out, ",\"segments\":[")) != HV_OK) goto out;
    for (i = 0; i < m->nsegs; i++) {
        const hv_hl7v2_seg_t *s = &m->segs[i];
        int is_msh = memcmp(s->id, "MSH", 3) == 0;
        hv_hl7v2_span_t body = hv__hl7v2_seg_body(s);
        size_t f;
        if (i > 0 && (rc = hv_buf_putc(out, ',')) != HV_OK) goto out;
        if ((rc = hv_buf_printf(out, "\n{\"id\":\"%s\",\"fields\":[null", s->id)) != HV_OK)
            goto out;
        if (is_msh) {
            if ((rc = hv_buf_putc(out, ',')) != HV_OK) goto out;
            if ((rc = hv_buf_json_str(out, &m->delims.field, 1)) != HV_OK) goto out;
        }
        if (body.len > 0) {
            const char *p = body.p + 1, *end = body.p + body.len;
            for (f = 1;; f++) {
                const char *q = memchr(p, m->delims.field, (size_t)(end - p));
                hv_hl7v2_span_t fs;
                fs.p = p;
                fs.len = (size_t)((q != NULL ? q : end) - p);
                if ((rc = hv_buf_putc(out, ',')) != HV_OK) goto out;
                if (is_msh && f == 1) rc = hv_buf_json_str(out, fs.p, fs.len);
                else rc = json_level(m, fs, inner, 3, &scratch, out);
                if (rc != HV_OK) goto out;
                if (q == NULL) break;
                p = q + 1;
            }
        }
        if ((rc = hv_buf_puts(out, "]}")) != HV_OK) goto out;
    }
    rc = hv_buf_puts(out, "]}\n");
out:
    hv_buf_release(&scratch);
    return rc;
}
