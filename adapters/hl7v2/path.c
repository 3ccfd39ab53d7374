/*
 * path.c — reading and writing a message by path ("PID-3[2].1", "OBX[3]-5.1").
 *
 * Grammar (the notation of HL7 v2.5.1 §2.5.5 and of common tools):
 *   path  = seg [ "[" occ "]" ] [ "-" field [ "[" rep "]" ] [ "." comp [ "." sub ] ] ]
 *   seg   = 3 upper-case letters or digits
 * All numbers are 1-based. Items are found by scanning the segment for
 * delimiters; nothing is copied. MSH is special: MSH-1 is the field separator
 * and MSH-2 the encoding characters (§2.15.9.1–2), neither split further.
 */
#include "config.h"

#include <stdio.h>
#include <string.h>

#include "adapters/hl7v2/hl7v2_int.h"

static int read_num(const char **s, unsigned *out) {
    unsigned long v = 0;
    const char *p = *s;
    if (*p < '0' || *p > '9') return HV_EINVAL;
    while (*p >= '0' && *p <= '9') {
        v = v * 10 + (unsigned long)(*p - '0');
        if (v > 1000000) return HV_EINVAL;
        p++;
    }
    if (v == 0) return HV_EINVAL;
    *s = p;
    *out = (unsigned)v;
    return HV_OK;
}

int hv_hl7v2_path_parse(const char *s, hv_hl7v2_path_t *out) {
    hv_hl7v2_path_t p;
    int i;
    memset(&p, 0, sizeof(p));
    p.occ = 1;
    p.rep = 1;
    for (i = 0; i < 3; i++) {
        char c = s[i];
        if (!((c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))) return HV_EINVAL;
        p.seg[i] = c;
    }
    s += 3;
    if (*s == '[') {
        s++;
        if (read_num(&s, &p.occ) != HV_OK || *s != ']') return HV_EINVAL;
        s++;
    }
    if (*s == '-') {
        s++;
        if (read_num(&s, &p.field) != HV_OK) return HV_EINVAL;
        if (*s == '[' || *s == '(') {
            char close = *s == '[' ? ']' : ')';
            s++;
            if (read_num(&s, &p.rep) != HV_OK || *s != close) return HV_EINVAL;
            s++;
        }
        if (*s == '.') {
            s++;
            if (read_num(&s, &p.comp) != HV_OK) return HV_EINVAL;
            if (*s == '.') {
                s++;
                if (read_num(&s, &p.sub) != HV_OK) return HV_EINVAL;
            }
        }
    }
    if (*s != 0) return HV_EINVAL;
    *out = p;
    return HV_OK;
}

void hv_hl7v2_path_format(const hv_hl7v2_path_t *p, char *out, size_t outlen) {
    size_t n = 0;
    int w;
    if (outlen == 0) return;
    out[0] = 0;
#define APPEND(...)                                                                     \
    do {                                                                                \
        w = snprintf(out + n, outlen - n, __VA_ARGS__);                                 \
        if (w < 0 || (size_t)w >= outlen - n) return;                                   \
        n += (size_t)w;                                                                 \
    } while (0)
    APPEND("%s", p->seg);
    if (p->occ > 1) APPEND("[%u]", p->occ);
    if (p->field == 0) return;
    APPEND("-%u", p->field);
    if (p->rep > 1) APPEND("[%u]", p->rep);
    if (p->comp == 0) return;
    APPEND(".%u", p->comp);
    if (p->sub == 0) return;
    APPEND(".%u", p->sub);
#undef APPEND
}

int hv_hl7v2_span_piece(hv_hl7v2_span_t s, char sep, size_t i, hv_hl7v2_span_t *out) {
    const char *p = s.p, *end;
    if (p == NULL) return HV_ENOTFOUND;
    end = s.p + s.len;
    if (sep == 0) {
        if (i != 0) return HV_ENOTFOUND;
        *out = s;
        return HV_OK;
    }
    while (i > 0) {
        const char *q = memchr(p, sep, (size_t)(end - p));
        if (q == NULL) return HV_ENOTFOUND;
        p = q + 1;
        i--;
    }
    {
        const char *q = memchr(p, sep, (size_t)(end - p));
        out->p = p;
        out->len = (size_t)((q != NULL ? q : end) - p);
    }
    return HV_OK;
}

size_t hv_hl7v2_span_count(hv_hl7v2_span_t s, char sep) {
    size_t n = 1;
    const char *p = s.p, *end;
    if (p == NULL) return 0;
    if (sep == 0) return 1;
    end = s.p + s.len;
    while (p < end) {
        const char *q = memchr(p, sep, (size_t)(end - p));
        if (q == NULL) break;
        n++;
        p = q + 1;
    }
    return n;
}

hv_hl7v2_span_t hv__hl7v2_seg_body(const hv_hl7v2_seg_t *s) {
    hv_hl7v2_span_t b;
    b.p = s->p + 3;
    b.len = s->len - 3;
    return b;
}

const hv_hl7v2_seg_t *hv__hl7v2_seg_find(const hv_hl7v2_msg_t *m, const char *id, unsigned occ) {
    size_t i;
    for (i = 0; i < m->nsegs; i++) {
        if (memcmp(m->segs[i].id, id, 3) == 0 && --occ == 0) return &m->segs[i];
    }
    return NULL;
}

size_t hv_hl7v2_seg_count(const hv_hl7v2_msg_t *m, const char *id) {
    size_t i, n = 0;
    for (i = 0; i < m->nsegs; i++)
        if (memcmp(m->segs[i].id, id, 3) == 0) n++;
    return n;
}

int hv_hl7v2_span_is_null(hv_hl7v2_span_t s) {
    return s.p != NULL && s.len == 2 && s.p[0] == '"' && s.p[1] == '"';
}

int hv_hl7v2_get_path(const hv_hl7v2_msg_t *m, const hv_hl7v2_path_t *path,
                      hv_hl7v2_span_t *out) {
    const hv_hl7v2_seg_t *seg = hv__hl7v2_seg_find(m, path->seg, path->occ);
    hv_hl7v2_span_t s, f;
    int is_msh;
    if (seg == NULL) return HV_ENOTFOUND;
    if (path->field == 0) {
        out->p = seg->p;
        out->len = seg->len;
        return HV_OK;
    }
    is_msh = memcmp(seg->id, "MSH", 3) == 0;
    s = hv__hl7v2_seg_body(seg);
    if (is_msh && path->field == 1) {
        if (path->rep > 1 || path->comp > 1 || path->sub > 1) return HV_ENOTFOUND;
        out->p = seg->p + 3;
        out->len = 1;
        return HV_OK;
    }
    if (hv_hl7v2_span_piece(s, m->delims.field, is_msh ? path->field - 1 : path->field, &f) !=
        HV_OK)
        return HV_ENOTFOUND;
    if (is_msh && path->field == 2) {
        if (path->rep > 1 || path->comp > 1 || path->sub > 1) return HV_ENOTFOUND;
        *out = f;
        return HV_OK;
    }
    if (hv_hl7v2_span_piece(f, m->delims.rep, path->rep - 1, &f) != HV_OK) return HV_ENOTFOUND;
    if (path->comp > 0 &&
        hv_hl7v2_span_piece(f, m->delims.comp, path->comp - 1, &f) != HV_OK)
        return HV_ENOTFOUND;
    if (path->comp > 0 && path->sub > 0 &&
        hv_hl7v2_span_piece(f, m->delims.sub, path->sub - 1, &f) != HV_OK)
        return HV_ENOTFOUND;
    *out = f;
    return HV_OK;
}

int hv_hl7v2_get(const hv_hl7v2_msg_t *m, const char *path, hv_hl7v2_span_t *out) {
    hv_hl7v2_path_t p;
    if (hv_hl7v2_path_parse(path, &p) != HV_OK) return HV_EINVAL;
    return hv_hl7v2_get_path(m, &p, out);
}

int hv_hl7v2_get_text(const hv_hl7v2_msg_t *m, const char *path, char **out, size_t *len) {
    hv_hl7v2_span_t s;
    hv_buf_t b;
    char *t;
    int rc = hv_hl7v2_get(m, path, &s);
    if (rc != HV_OK) return rc;
    hv_buf_init(&b, 0);
    rc = hv_hl7v2_unescape(&m->delims, s.p, s.len, 0, &b);
    if (rc != HV_OK) goto out;
    t = hv_arena_strndup(m->arena, b.data != NULL ? b.data : "", b.len);
    if (t == NULL) {
        rc = HV_ENOMEM;
        goto out;
    }
    *out = t;
    if (len) *len = b.len;
out:
    hv_buf_release(&b);
    return rc;
}

hv_hl7v2_span_t hv__hl7v2_msh_field(const hv_hl7v2_msg_t *m, unsigned field) {
    hv_hl7v2_path_t p;
    hv_hl7v2_span_t s = {NULL, 0};
    memset(&p, 0, sizeof(p));
    memcpy(p.seg, "MSH", 4);
    p.occ = 1;
    p.rep = 1;
    p.field = field;
    if (m == NULL || m->nsegs == 0 || hv_hl7v2_get_path(m, &p, &s) != HV_OK) {
        s.p = "";
        s.len = 0;
    }
    return s;
}

/*
 * Writes span s with the piece at idx[level] (split by seps[level]) replaced:
 * recursively down to the last level, where `value` goes. Missing pieces are
 * created empty by writing separators.
 */
static int splice_at(hv_buf_t *b, hv_hl7v2_span_t s, const char *seps, const size_t *idx,
                  int level, int depth, const char *value, size_t vlen) {
    hv_hl7v2_span_t piece;
    size_t count, i;
    int rc;
    if (level == depth) return hv_buf_append(b, value, vlen);
    count = s.p != NULL ? hv_hl7v2_span_count(s, seps[level]) : 0;
    if (idx[level] < count) {
        hv_hl7v2_span_piece(s, seps[level], idx[level], &piece);
        if ((rc = hv_buf_append(b, s.p, (size_t)(piece.p - s.p))) != HV_OK) return rc;
        if ((rc = splice_at(b, piece, seps, idx, level + 1, depth, value, vlen)) != HV_OK) return rc;
        return hv_buf_append(b, piece.p + piece.len,
                             (size_t)(s.p + s.len - (piece.p + piece.len)));
    }
    if (s.p != NULL && (rc = hv_buf_append(b, s.p, s.len)) != HV_OK) return rc;
    for (i = count ? count : 1; i <= idx[level]; i++)
        if ((rc = hv_buf_putc(b, seps[level])) != HV_OK) return rc;
    piece.p = NULL;
    piece.len = 0;
    return splice_at(b, piece, seps, idx, level + 1, depth, value, vlen);
}

int hv_hl7v2_set_text(hv_hl7v2_msg_t *m, const char *path, const char *value, size_t len) {
    hv_hl7v2_path_t p;
    hv_hl7v2_seg_t *seg;
    hv_buf_t val, out;
    hv_hl7v2_span_t body;
    char seps[4];
    size_t idx[4];
    int depth = 2, rc, is_msh;
    char *np;
    if (hv_hl7v2_path_parse(path, &p) != HV_OK || p.field == 0) return HV_EINVAL;
    seg = (hv_hl7v2_seg_t *)hv__hl7v2_seg_find(m, p.seg, p.occ);
    if (seg == NULL) return HV_ENOTFOUND;
    is_msh = memcmp(seg->id, "MSH", 3) == 0;
    if (is_msh && p.field <= 2) return HV_EPERM;
    if ((p.comp > 0 && m->delims.comp == 0) || (p.sub > 0 && m->delims.sub == 0) ||
        (p.rep > 1 && m->delims.rep == 0))
        return HV_ENOTSUP;
    seps[0] = m->delims.field;
    seps[1] = m->delims.rep != 0 ? m->delims.rep : m->delims.field;
    seps[2] = m->delims.comp;
    seps[3] = m->delims.sub;
    /* Piece 0 of the body is the empty text before the first separator. */
    idx[0] = is_msh ? p.field - 1 : p.field;
    idx[1] = p.rep - 1;
    idx[2] = p.comp ? p.comp - 1 : 0;
    idx[3] = p.sub ? p.sub - 1 : 0;
    if (p.comp > 0) depth = 3;
    if (p.comp > 0 && p.sub > 0) depth = 4;
    if (m->delims.rep == 0) {
        /* No repetition separator: the field is the repetition. */
        idx[1] = 0;
    }
    hv_buf_init(&val, 0);
    hv_buf_init(&out, 0);
    rc = hv_hl7v2_escape(&m->delims, value, len, &val);
    if (rc != HV_OK) goto out;
    body = hv__hl7v2_seg_body(seg);
    if ((rc = hv_buf_append(&out, seg->p, 3)) != HV_OK) goto out;
    if (body.len == 0) {
        body.p = NULL;
    }
    {
        /* Splitting "" by the field separator gives one empty piece 0: start there. */
        hv_hl7v2_span_t b = body;
        if (b.p == NULL) {
            b.p = seg->p + 3;
            b.len = 0;
        }
        rc = splice_at(&out, b, seps, idx, 0, depth, val.data != NULL ? val.data : "", val.len);
    }
    if (rc != HV_OK) goto out;
    np = hv_arena_strndup(m->arena, out.data, out.len);
    if (np == NULL) {
        rc = HV_ENOMEM;
        goto out;
    }
    seg->p = np;
    seg->len = out.len;
    m->modified = 1;
out:
    hv_buf_release(&val);
    hv_buf_release(&out);
    return rc;
}
