/*
 * parse.c — HL7 v2 message parsing (HL7 v2.5.1 chapter 2, §2.5 message
 * construction rules; v2.7 §2.5.5.2 for the truncation character).
 *
 * A message is split into segment spans without copying. The first segment must
 * be MSH; its fourth byte is the field separator and the bytes up to the next field
 * separator are the encoding characters, in the order component, repetition,
 * escape, subcomponent, truncation (any subset of trailing ones may be missing).
 * Each segment ends at a run of CR and LF bytes; the run is kept with the segment
 * so that serializing an unmodified message reproduces the input exactly.
 *
 * When MSH-18 names a character set other than ASCII or UTF-8, the whole message
 * is converted to UTF-8 once (the MSH itself is ASCII in every 8-bit set that
 * table 0211 lists), and the spans point into the converted copy.
 */
#include "config.h"

#include <string.h>

#include "adapters/hl7v2/hl7v2_int.h"

void hv_hl7v2_parse_opts_default(hv_hl7v2_parse_opts_t *o) {
    o->max_segments = 100000;
    o->max_bytes = 16u << 20;
    o->strict_escapes = 1;
    o->convert_charset = 1;
}

static const struct {
    int code;
    const char *text;
} err_texts[] = {
    {0, "Message accepted"},
    {100, "Segment sequence error"},
    {101, "Required field missing"},
    {102, "Data type error"},
    {103, "Table value not found"},
    {104, "Value too long"},
    {200, "Unsupported message type"},
    {201, "Unsupported event code"},
    {202, "Unsupported processing id"},
    {203, "Unsupported version id"},
    {204, "Unknown key identifier"},
    {205, "Duplicate key identifier"},
    {206, "Application record locked"},
    {207, "Application internal error"},
};

const char *hv_hl7v2_err_text(int code) {
    size_t i;
    for (i = 0; i < HV_ARRAY_LEN(err_texts); i++)
        if (err_texts[i].code == code) return err_texts[i].text;
    return "";
}

static int is_alnum(char c) {
    return (c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z');
}

/*
 * Delimiters must be printable ASCII other than letters and digits (HL7 v2.5.1
 * §2.5.4 recommends exactly these). Control characters and bytes above 0x7E are
 * refused: after a character set conversion such a byte would no longer be the
 * same byte, so the message could not be split consistently.
 */
static int bad_delim(char c) {
    unsigned char u = (unsigned char)c;
    return u <= 0x20 || u >= 0x7f || is_alnum(c);
}

int hv_hl7v2_delims_read(const char *p, size_t len, hv_hl7v2_delims_t *out, hv_error_t *err) {
    hv_hl7v2_delims_t d;
    char enc[5] = {0, 0, 0, 0, 0};
    size_t i, n = 0;
    if (len < 5) {
        hv_error_set(err, HV_EPROTO, "MSH-2", "header segment too short for its delimiters");
        return HV_EPROTO;
    }
    memset(&d, 0, sizeof(d));
    d.field = p[3];
    if (bad_delim(d.field)) {
        hv_error_set(err, HV_EPROTO, "MSH-1", "unusable field separator");
        return HV_EPROTO;
    }
    for (i = 4; i < len && p[i] != d.field && !HV__HL7_EOL(p[i]); i++) {
        if (n == 5) {
            hv_error_set(err, HV_EPROTO, "MSH-2", "more than five encoding characters");
            return HV_EPROTO;
        }
        enc[n++] = p[i];
    }
    if (n < 1) {
        hv_error_set(err, HV_EPROTO, "MSH-2", "encoding characters missing");
        return HV_EPROTO;
    }
    for (i = 0; i < n; i++) {
        size_t j;
        if (bad_delim(enc[i]) || enc[i] == d.field) {
            hv_error_set(err, HV_EPROTO, "MSH-2", "unusable encoding character at position %zu",
                         i + 1);
            return HV_EPROTO;
        }
        for (j = 0; j < i; j++) {
            if (enc[j] == enc[i]) {
                hv_error_set(err, HV_EPROTO, "MSH-2", "encoding characters repeat at position %zu",
                             i + 1);
                return HV_EPROTO;
            }
        }
    }
    d.comp = enc[0];
    d.rep = enc[1];
    d.esc = enc[2];
    d.sub = enc[3];
    d.trunc = enc[4];
    *out = d;
    return HV_OK;
}

/* The value of MSH field `field` in the raw first segment, for charset detection. */
static hv_hl7v2_span_t raw_msh_field(const char *p, size_t len, char fs, unsigned field) {
    hv_hl7v2_span_t s = {NULL, 0};
    size_t i, k = 0, start = 0;
    for (i = 3; i <= len; i++) {
        int end = (i == len) || HV__HL7_EOL(p[i]);
        if (end || p[i] == fs) {
            if (k == field - 1 && k > 0) {
                s.p = p + start;
                s.len = i - start;
                return s;
            }
            if (end) break;
            k++;
            start = i + 1;
        }
    }
    return s;
}

static int check_segment_id(const char *p, size_t len, char fs) {
    if (len < 3) return 0;
    if (!is_alnum(p[0]) || !is_alnum(p[1]) || !is_alnum(p[2])) return 0;
    if (p[0] >= 'a' || p[1] >= 'a' || p[2] >= 'a') return 0; /* upper case only */
    return len == 3 || p[3] == fs;
}

/* Sets the charset fields of m and converts raw into m->text when needed. */
static int setup_charset(hv_hl7v2_msg_t *m, const char *msh, size_t msh_len,
                         const hv_hl7v2_parse_opts_t *o, hv_error_t *err, int *hl7_code) {
    hv_hl7v2_span_t cs = raw_msh_field(msh, msh_len, m->delims.field, 18);
    const char *name = NULL;
    size_t n = cs.p != NULL ? cs.len : 0;
    hv_buf_t b;
    int rc;

    /* MSH-18 may repeat; the first repetition is the default character set (§2.15.9.18). */
    if (cs.p != NULL && m->delims.rep != 0) {
        const char *r = memchr(cs.p, m->delims.rep, cs.len);
        if (r != NULL) n = (size_t)(r - cs.p);
    }
    if (n >= sizeof(m->charset)) n = sizeof(m->charset) - 1;
    if (n > 0) memcpy(m->charset, cs.p, n);
    m->charset[n] = 0;
    rc = hv_hl7v2_charset_iconv_name(m->charset, n, &name);
    if (rc != HV_OK) {
        hv_error_set(err, HV_ENOTSUP, "MSH-18", "unsupported character set");
        if (hl7_code) *hl7_code = HV_HL7V2_E_TABLE_VALUE;
        return HV_ENOTSUP;
    }
    if (name == NULL || strcmp(name, "UTF-8") == 0) {
        /* Undeclared or UTF-8: must be valid UTF-8 (ASCII is a subset). */
        if (name != NULL && !hv_hl7v2_utf8_valid(m->raw, m->raw_len)) {
            hv_error_set(err, HV_EPROTO, "MSH-18", "bytes are not valid UTF-8");
            if (hl7_code) *hl7_code = HV_HL7V2_E_DATA_TYPE;
            return HV_EPROTO;
        }
        if (name == NULL && !hv_hl7v2_utf8_valid(m->raw, m->raw_len) && o->convert_charset) {
            /* No declaration and not UTF-8: read as ISO 8859-1, which every byte is. */
            name = "ISO-8859-1";
        } else {
            return HV_OK;
        }
    }
    if (strcmp(name, "ASCII") == 0) {
        size_t i;
        for (i = 0; i < m->raw_len; i++) {
            if ((unsigned char)m->raw[i] > 0x7f) {
                hv_error_set(err, HV_EPROTO, "MSH-18", "byte %zu is not ASCII as declared", i + 1);
                if (hl7_code) *hl7_code = HV_HL7V2_E_DATA_TYPE;
                return HV_EPROTO;
            }
        }
        return HV_OK;
    }
    if (!o->convert_charset) return HV_OK;
    hv_buf_init(&b, o->max_bytes * 4 + 16);
    rc = hv_hl7v2_charset_convert(name, "UTF-8", m->raw, m->raw_len, &b);
    if (rc != HV_OK) {
        hv_buf_release(&b);
        hv_error_set(err, rc, "MSH-18", "bytes are not valid in the declared character set");
        if (hl7_code) *hl7_code = HV_HL7V2_E_DATA_TYPE;
        return rc;
    }
    m->text = hv_arena_strndup(m->arena, b.data != NULL ? b.data : "", b.len);
    m->text_len = b.len;
    hv_buf_release(&b);
    if (m->text == NULL) return HV_ENOMEM;
    m->iconv_name = name;
    return HV_OK;
}

/*
 * Finds segment ends fast: the next CR and the next LF are each found with memchr
 * and remembered until passed, so splitting costs two linear scans whatever the
 * terminator style (CR, LF, CRLF or a mix).
 */
typedef struct eol_finder {
    const char *t, *end, *cr, *lf;
} eol_finder_t;

static void eol_init(eol_finder_t *f, const char *t, size_t n) {
    f->t = t;
    f->end = t + n;
    f->cr = NULL; /* NULL: not searched yet */
    f->lf = NULL;
}

/* Offset of the first CR or LF at or after `from`, or n. */
static size_t eol_next(eol_finder_t *f, size_t from) {
    const char *p = f->t + from;
    if (f->cr != f->end && (f->cr == NULL || f->cr < p)) {
        f->cr = memchr(p, '\r', (size_t)(f->end - p));
        if (f->cr == NULL) f->cr = f->end;
    }
    if (f->lf != f->end && (f->lf == NULL || f->lf < p)) {
        f->lf = memchr(p, '\n', (size_t)(f->end - p));
        if (f->lf == NULL) f->lf = f->end;
    }
    return (size_t)((f->cr < f->lf ? f->cr : f->lf) - f->t);
}

int hv_hl7v2_parse(hv_arena_t *arena, const char *raw, size_t len,
                   const hv_hl7v2_parse_opts_t *opts, hv_hl7v2_msg_t *out, hv_error_t *err,
                   int *hl7_code) {
    hv_hl7v2_parse_opts_t defo;
    hv_hl7v2_msg_t m;
    eol_finder_t ef;
    const char *t;
    size_t tl, i, start, nsegs = 0, first_len;
    int rc;

    if (opts == NULL) {
        hv_hl7v2_parse_opts_default(&defo);
        opts = &defo;
    }
    if (hl7_code) *hl7_code = HV_HL7V2_E_REQUIRED_MISSING;
    memset(&m, 0, sizeof(m));
    m.arena = arena;
    m.raw = raw;
    m.raw_len = len;
    m.text = raw;
    m.text_len = len;
    if (len > opts->max_bytes) {
        hv_error_set(err, HV_ETOOBIG, NULL, "message of %zu bytes exceeds %zu", len,
                     opts->max_bytes);
        return HV_ETOOBIG;
    }
    /* A UTF-8 byte order mark and blank lines before MSH are kept as a prefix. */
    i = 0;
    if (len >= 3 && memcmp(raw, "\xef\xbb\xbf", 3) == 0) i = 3;
    while (i < len && HV__HL7_EOL(raw[i])) i++;
    if (len - i < 3 || memcmp(raw + i, "MSH", 3) != 0) {
        hv_error_set(err, HV_EPROTO, "MSH", "message does not start with an MSH segment");
        if (err) err->line = 1;
        return HV_EPROTO;
    }
    rc = hv_hl7v2_delims_read(raw + i, len - i, &m.delims, err);
    if (rc != HV_OK) {
        if (err) err->line = 1;
        if (hl7_code) *hl7_code = HV_HL7V2_E_DATA_TYPE;
        return rc;
    }
    for (first_len = 0; i + first_len < len && !HV__HL7_EOL(raw[i + first_len]); first_len++) {
    }
    rc = setup_charset(&m, raw + i, first_len, opts, err, hl7_code);
    if (rc != HV_OK) {
        if (err) err->line = 1;
        return rc;
    }
    t = m.text;
    tl = m.text_len;
    /* The prefix length in the text: the BOM (it survives conversion) and blank lines. */
    i = 0;
    if (tl >= 3 && memcmp(t, "\xef\xbb\xbf", 3) == 0) i = 3;
    while (i < tl && HV__HL7_EOL(t[i])) i++;
    m.prefix_len = i;

    /* Pass 1: count segments, to allocate once. */
    eol_init(&ef, t, tl);
    for (start = i; start < tl;) {
        size_t e = eol_next(&ef, start);
        nsegs++;
        while (e < tl && HV__HL7_EOL(t[e])) e++;
        start = e;
        if (nsegs > opts->max_segments) {
            hv_error_set(err, HV_ETOOBIG, NULL, "more than %zu segments", opts->max_segments);
            if (hl7_code) *hl7_code = HV_HL7V2_E_VALUE_TOO_LONG;
            return HV_ETOOBIG;
        }
    }
    m.segs = hv_arena_alloc(arena, (nsegs ? nsegs : 1) * sizeof(*m.segs));
    if (m.segs == NULL) return HV_ENOMEM;

    /* Pass 2: fill and check each segment. */
    eol_init(&ef, t, tl);
    for (start = i; start < tl;) {
        hv_hl7v2_seg_t *s = &m.segs[m.nsegs];
        size_t e = eol_next(&ef, start), bad;
        s->p = t + start;
        s->len = e - start;
        s->term = t + e;
        while (e < tl && HV__HL7_EOL(t[e])) e++;
        s->term_len = (size_t)(t + e - s->term);
        m.nsegs++;
        if (!check_segment_id(s->p, s->len, m.delims.field)) {
            hv_error_set(err, HV_EPROTO, NULL, "segment %zu has no valid segment id", m.nsegs);
            if (err) {
                err->line = (int)m.nsegs;
                err->column = 1;
            }
            if (hl7_code) *hl7_code = HV_HL7V2_E_SEGMENT_SEQUENCE;
            return HV_EPROTO;
        }
        memcpy(s->id, s->p, 3);
        s->id[3] = 0;
        if (m.nsegs > 1 && (strcmp(s->id, "MSH") == 0 || strcmp(s->id, "FHS") == 0 ||
                            strcmp(s->id, "BHS") == 0)) {
            hv_error_set(err, HV_EPROTO, s->id, "segment %zu: a second header in one message",
                         m.nsegs);
            if (err) err->line = (int)m.nsegs;
            if (hl7_code) *hl7_code = HV_HL7V2_E_SEGMENT_SEQUENCE;
            return HV_EPROTO;
        }
        if (opts->strict_escapes && m.delims.esc != 0) {
            /* MSH-1 and MSH-2 are the delimiters themselves: check from MSH-3 on. */
            size_t from = 0;
            if (m.nsegs == 1) {
                const char *q = memchr(s->p + 4, m.delims.field, s->len - 4);
                from = q != NULL ? (size_t)(q - s->p) : s->len;
            }
            if (hv_hl7v2_escape_check(&m.delims, s->p + from, s->len - from, &bad) != HV_OK) {
                size_t k, f = 0;
                char loc[16];
                for (k = 3; k < from + bad; k++)
                    if (s->p[k] == m.delims.field) f++;
                if (m.nsegs == 1) f++;
                snprintf(loc, sizeof(loc), "%s-%zu", s->id, f);
                hv_error_set(err, HV_EPROTO, loc, "invalid escape sequence");
                if (err) {
                    err->line = (int)m.nsegs;
                    err->column = (int)(from + bad + 1);
                }
                if (hl7_code) *hl7_code = HV_HL7V2_E_DATA_TYPE;
                return HV_EPROTO;
            }
        }
        start = e;
    }
    if (hl7_code) *hl7_code = HV_HL7V2_E_OK;
    *out = m;
    return HV_OK;
}

int hv_hl7v2_msh_peek(hv_arena_t *arena, const char *raw, size_t len, hv_hl7v2_msg_t *out) {
    hv_hl7v2_msg_t m;
    size_t i = 0, e;
    memset(&m, 0, sizeof(m));
    m.arena = arena;
    m.raw = m.text = raw;
    m.raw_len = m.text_len = len;
    if (len >= 3 && memcmp(raw, "\xef\xbb\xbf", 3) == 0) i = 3;
    while (i < len && (HV__HL7_EOL(raw[i]) || raw[i] == ' ' || raw[i] == '\t')) i++;
    if (len - i < 8 || memcmp(raw + i, "MSH", 3) != 0) return HV_EPROTO;
    if (hv_hl7v2_delims_read(raw + i, len - i, &m.delims, NULL) != HV_OK) return HV_EPROTO;
    m.prefix_len = i;
    m.segs = hv_arena_calloc(arena, sizeof(*m.segs));
    if (m.segs == NULL) return HV_ENOMEM;
    for (e = i; e < len && !HV__HL7_EOL(raw[e]); e++) {
    }
    m.segs[0].p = raw + i;
    m.segs[0].len = e - i;
    m.segs[0].term = raw + e;
    memcpy(m.segs[0].id, "MSH", 4);
    m.nsegs = 1;
    *out = m;
    return HV_OK;
}

/* ------------------------------------------------------------------------- */
/* Batches                                                                   */
/* ------------------------------------------------------------------------- */

static int seg_is(const char *p, size_t n, const char *id) {
    return n >= 3 && memcmp(p, id, 3) == 0 && (n == 3 || !is_alnum(p[3]));
}

int hv_hl7v2_batch_split(hv_arena_t *arena, const char *p, size_t n, size_t max,
                         hv_hl7v2_span_t **out, size_t *count, hv_error_t *err) {
    hv_hl7v2_span_t *spans = NULL;
    size_t cap = 0, cnt = 0, i = 0, segno = 0;
    const char *cur = NULL; /* start of the message being collected */
    int in_file = 0, in_batch = 0, seen_file = 0, file_done = 0;
    size_t nmsgs_est = 0, k;

    /* An upper bound on messages: every "MSH" in the input, but no more than max. */
    for (k = 0; k + 3 <= n && nmsgs_est <= max; k++) {
        const char *q = memchr(p + k, 'M', n - k);
        if (q == NULL) break;
        k = (size_t)(q - p);
        if (k + 3 <= n && q[1] == 'S' && q[2] == 'H') nmsgs_est++;
    }
    cap = nmsgs_est ? nmsgs_est : 1;
    spans = hv_arena_alloc(arena, cap * sizeof(*spans));
    if (spans == NULL) return HV_ENOMEM;
    if (n >= 3 && memcmp(p, "\xef\xbb\xbf", 3) == 0) i = 3;
    while (i < n) {
        size_t e = i;
        const char *s;
        size_t sl;
        while (e < n && !HV__HL7_EOL(p[e])) e++;
        s = p + i;
        sl = e - i;
        while (e < n && HV__HL7_EOL(p[e])) e++;
        if (sl == 0) {
            i = e;
            continue;
        }
        segno++;
        if (seg_is(s, sl, "MSH")) {
            if (cur != NULL) {
                if (cnt >= max) goto toomany;
                spans[cnt].p = cur;
                spans[cnt].len = (size_t)(s - cur);
                cnt++;
            }
            if (file_done) goto misplaced;
            cur = s;
        } else if (seg_is(s, sl, "FHS") || seg_is(s, sl, "BHS") || seg_is(s, sl, "BTS") ||
                   seg_is(s, sl, "FTS")) {
            if (cur != NULL) {
                if (cnt >= max) goto toomany;
                spans[cnt].p = cur;
                spans[cnt].len = (size_t)(s - cur);
                cnt++;
                cur = NULL;
            }
            /*
             * Headers must be well placed; trailers are tolerated missing or
             * unpaired, as python-hl7 and HAPI read such files.
             */
            if (seg_is(s, sl, "FHS")) {
                if (seen_file || cnt > 0 || in_batch) goto misplaced;
                in_file = seen_file = 1;
            } else if (seg_is(s, sl, "BHS")) {
                if (in_batch || file_done) goto misplaced;
                in_batch = 1;
            } else if (seg_is(s, sl, "BTS")) {
                in_batch = 0;
            } else {
                in_batch = in_file = 0;
                file_done = 1;
            }
        } else if (cur == NULL) {
            /* A segment outside any message (after a header, before an MSH). */
            hv_error_set(err, HV_EPROTO, NULL, "segment %zu is outside any message", segno);
            if (err) err->line = (int)segno;
            return HV_EPROTO;
        }
        i = e;
    }
    if (cur != NULL) {
        if (cnt >= max) goto toomany;
        spans[cnt].p = cur;
        spans[cnt].len = (size_t)(p + n - cur);
        cnt++;
    }
    *out = spans;
    *count = cnt;
    return HV_OK;
toomany:
    /*
     * Every span starts at an "MSH" and cap >= min(count of "MSH", max + 1), so a
     * span index below max is always below cap: the array cannot overflow.
     */
    hv_error_set(err, HV_ETOOBIG, NULL, "more than %zu messages in one batch", max);
    return HV_ETOOBIG;
misplaced:
    hv_error_set(err, HV_EPROTO, NULL, "segment %zu: misplaced batch envelope segment", segno);
    if (err) err->line = (int)segno;
    return HV_EPROTO;
}
