/*
 * ack.c — acknowledgement messages (HL7 v2.5.1 §2.9 processing rules, §2.14.1
 * MSA, §2.14.5 ERR, table 0008 acknowledgment codes, table 0155 accept/application
 * acknowledgment conditions, table 0357 error codes, table 0516 severity).
 *
 * The ACK's MSH mirrors the received one:
 *   MSH-2  the received encoding characters   MSH-3/4  received MSH-5/6 (we answer)
 *   MSH-5/6 received MSH-3/4                  MSH-7    now, YYYYMMDDHHMMSS.sss+0000
 *   MSH-9  ACK^<trigger>^ACK (v2.5+), ACK^<trigger> (v2.3–2.4), ACK (older)
 *   MSH-10 a fresh control id                 MSH-11/12 received processing id, version
 *   MSH-15/16 NE/NE in enhanced mode (an ACK is never acknowledged)
 *   MSH-18 the received character set
 * MSA-1 AA/AE/AR (original mode) or CA/CE/CR (enhanced mode), MSA-2 the received
 * MSH-10. Each error is an ERR segment: from v2.5 on ERR-2 location (ERL),
 * ERR-3 code^text^HL70357, ERR-4 severity E/W/I, ERR-8 user message; before v2.5
 * ERR-1 (ELD) segment^sequence^field^code&text&HL70357 and MSA-3 the text.
 */
#include "config.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

#include "adapters/hl7v2/hl7v2_int.h"

/* Version as major*100 + minor*10 ("2.5.1" → 251 is not needed: 2.5 → 250). */
static int version_num(hv_hl7v2_span_t v) {
    int major = 0, minor = 0;
    size_t i = 0;
    /* Digits beyond the third are ignored: no version has them, and they cannot overflow. */
    while (i < v.len && v.p[i] >= '0' && v.p[i] <= '9') {
        if (major < 100) major = major * 10 + (v.p[i] - '0');
        i++;
    }
    if (i < v.len && v.p[i] == '.') {
        i++;
        while (i < v.len && v.p[i] >= '0' && v.p[i] <= '9') {
            if (minor < 100) minor = minor * 10 + (v.p[i] - '0');
            i++;
        }
    }
    if (major == 0) return 251; /* unknown: answer in the modern form */
    return major * 100 + minor * 10;
}

static hv_hl7v2_span_t first_comp(const hv_hl7v2_msg_t *m, hv_hl7v2_span_t s) {
    hv_hl7v2_span_t out = s;
    if (m->delims.rep) hv_hl7v2_span_piece(s, m->delims.rep, 0, &out);
    if (m->delims.comp) hv_hl7v2_span_piece(out, m->delims.comp, 0, &out);
    return out;
}

int hv_hl7v2_ack_is_enhanced(const hv_hl7v2_msg_t *m) {
    if (m == NULL || m->nsegs == 0) return 0;
    return hv__hl7v2_msh_field(m, 15).len > 0 || hv__hl7v2_msh_field(m, 16).len > 0;
}

int hv_hl7v2_ack_wanted(const hv_hl7v2_msg_t *m, int code) {
    hv_hl7v2_span_t c;
    if (!hv_hl7v2_ack_is_enhanced(m)) return 1;
    c = first_comp(m, hv__hl7v2_msh_field(m, 15));
    /* Table 0155; an empty MSH-15 in enhanced mode means AL (§2.9.3). */
    if (c.len != 2 || memcmp(c.p, "AL", 2) == 0) return 1;
    if (memcmp(c.p, "NE", 2) == 0) return 0;
    if (memcmp(c.p, "ER", 2) == 0) return code != HV_HL7V2_ACK_ACCEPT;
    if (memcmp(c.p, "SU", 2) == 0) return code == HV_HL7V2_ACK_ACCEPT;
    return 1;
}

static int put_field(hv_buf_t *b, char fs, hv_hl7v2_span_t s) {
    int rc = hv_buf_putc(b, fs);
    if (rc == HV_OK && s.len > 0) rc = hv_buf_append(b, s.p, s.len);
    return rc;
}

static void ack_time(uint64_t ms, char *out, size_t n) {
    time_t t = (time_t)(ms / 1000);
    struct tm tm;
    gmtime_r(&t, &tm);
    snprintf(out, n, "%04d%02d%02d%02d%02d%02d.%03u+0000", tm.tm_year + 1900, tm.tm_mon + 1,
             tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (unsigned)(ms % 1000));
}

/* Appends ERL (v2.5+) or the location part of ELD from a path string. */
static int put_location(hv_buf_t *b, const hv_hl7v2_delims_t *d, const char *loc, int erl) {
    hv_hl7v2_path_t p;
    if (loc == NULL || loc[0] == 0) return HV_OK;
    if (hv_hl7v2_path_parse(loc, &p) != HV_OK) return HV_OK; /* not a path: leave it out */
    if (!erl) return hv_buf_printf(b, "%s%c%u%c%u", p.seg, d->comp, p.occ, d->comp, p.field);
    if (p.field == 0) return hv_buf_printf(b, "%s%c%u", p.seg, d->comp, p.occ);
    if (p.comp == 0)
        return hv_buf_printf(b, "%s%c%u%c%u%c%u", p.seg, d->comp, p.occ, d->comp, p.field,
                             d->comp, p.rep);
    if (p.sub == 0)
        return hv_buf_printf(b, "%s%c%u%c%u%c%u%c%u", p.seg, d->comp, p.occ, d->comp, p.field,
                             d->comp, p.rep, d->comp, p.comp);
    return hv_buf_printf(b, "%s%c%u%c%u%c%u%c%u%c%u", p.seg, d->comp, p.occ, d->comp, p.field,
                         d->comp, p.rep, d->comp, p.comp, d->comp, p.sub);
}

int hv_hl7v2_ack_build(const hv_hl7v2_msg_t *m, const hv_hl7v2_ack_opts_t *o, hv_buf_t *out) {
    static const char *codes[2][3] = {{"AA", "AE", "AR"}, {"CA", "CE", "CR"}};
    static unsigned long counter;
    hv_hl7v2_delims_t d = {'|', '^', '~', '\\', '&', 0};
    hv_hl7v2_span_t enc = {"^~\\&", 4}, none = {"", 0}, trig, ver, ctl;
    hv_buf_t b, *dst = out;
    char ts[40], idbuf[24];
    int rc, vnum, enhanced, code;
    size_t i;
    const char *cs = NULL;

    code = o->code;
    if (code < HV_HL7V2_ACK_ACCEPT || code > HV_HL7V2_ACK_REJECT) return HV_EINVAL;
    if (m != NULL && m->nsegs > 0) {
        d = m->delims;
        enc = hv__hl7v2_msh_field(m, 2);
    }
    enhanced = hv_hl7v2_ack_is_enhanced(m);
    ver = m != NULL ? first_comp(m, hv__hl7v2_msh_field(m, 12)) : none;
    vnum = version_num(ver);
    if (ver.len == 0) {
        ver.p = "2.5.1";
        ver.len = 5;
    }
    hv_buf_init(&b, 0);
    if (m != NULL && m->iconv_name != NULL) {
        dst = &b;
        cs = m->iconv_name;
    }
    ack_time(o->now_ms ? o->now_ms : hv_now_ms(), ts, sizeof(ts));
    if (o->control_id == NULL) {
        unsigned long c = __atomic_fetch_add(&counter, 1, __ATOMIC_RELAXED);
        snprintf(idbuf, sizeof(idbuf), "A%llx%04lx",
                 (unsigned long long)(o->now_ms ? o->now_ms : hv_now_ms()), c & 0xffff);
    }
    /* MSH */
    if ((rc = hv_buf_puts(dst, "MSH")) != HV_OK) goto out;
    if ((rc = hv_buf_putc(dst, d.field)) != HV_OK) goto out;
    if ((rc = hv_buf_append(dst, enc.p, enc.len)) != HV_OK) goto out;
    if ((rc = put_field(dst, d.field, hv__hl7v2_msh_field(m, 5))) != HV_OK) goto out;
    if ((rc = put_field(dst, d.field, hv__hl7v2_msh_field(m, 6))) != HV_OK) goto out;
    if ((rc = put_field(dst, d.field, hv__hl7v2_msh_field(m, 3))) != HV_OK) goto out;
    if ((rc = put_field(dst, d.field, hv__hl7v2_msh_field(m, 4))) != HV_OK) goto out;
    if ((rc = hv_buf_printf(dst, "%c%s%c%c", d.field, ts, d.field, d.field)) != HV_OK) goto out;
    trig = hv__hl7v2_msh_field(m, 9);
    if (hv_hl7v2_span_piece(trig, d.comp, 1, &trig) != HV_OK) trig = none;
    if (m != NULL && d.rep && memchr(trig.p, d.rep, trig.len) != NULL) trig = none;
    if ((rc = hv_buf_puts(dst, "ACK")) != HV_OK) goto out;
    if (vnum >= 230 && trig.len > 0) {
        if ((rc = hv_buf_putc(dst, d.comp)) != HV_OK) goto out;
        if ((rc = hv_buf_append(dst, trig.p, trig.len)) != HV_OK) goto out;
        if (vnum >= 250 && (rc = hv_buf_printf(dst, "%cACK", d.comp)) != HV_OK) goto out;
    }
    ctl.p = o->control_id != NULL ? o->control_id : idbuf;
    ctl.len = strlen(ctl.p);
    if ((rc = put_field(dst, d.field, ctl)) != HV_OK) goto out;
    {
        hv_hl7v2_span_t pid = hv__hl7v2_msh_field(m, 11);
        if (pid.len == 0) {
            pid.p = "P";
            pid.len = 1;
        }
        if ((rc = put_field(dst, d.field, pid)) != HV_OK) goto out;
    }
    if ((rc = put_field(dst, d.field, hv__hl7v2_msh_field(m, 12).len ? hv__hl7v2_msh_field(m, 12)
                                                                      : ver)) != HV_OK)
        goto out;
    {
        hv_hl7v2_span_t msh18 = hv__hl7v2_msh_field(m, 18);
        if (enhanced || msh18.len > 0) {
            if ((rc = hv_buf_printf(dst, "%c%c", d.field, d.field)) != HV_OK) goto out; /* 13, 14 */
            if (enhanced) rc = hv_buf_printf(dst, "%cNE%cNE", d.field, d.field);
            else rc = hv_buf_printf(dst, "%c%c", d.field, d.field);
            if (rc != HV_OK) goto out;
            if (msh18.len > 0 &&
                ((rc = hv_buf_printf(dst, "%c", d.field)) != HV_OK ||
                 (rc = put_field(dst, d.field, msh18)) != HV_OK))
                goto out;
        }
    }
    if ((rc = hv_buf_putc(dst, '\r')) != HV_OK) goto out;
    /* MSA */
    if ((rc = hv_buf_printf(dst, "MSA%c%s", d.field, codes[enhanced][code])) != HV_OK) goto out;
    if ((rc = put_field(dst, d.field, hv__hl7v2_msh_field(m, 10))) != HV_OK) goto out;
    if (vnum < 250 && o->nerrs > 0 && o->errs[0].message != NULL) {
        if ((rc = hv_buf_putc(dst, d.field)) != HV_OK) goto out;
        if ((rc = hv_hl7v2_escape(&d, o->errs[0].message, strlen(o->errs[0].message), dst)) !=
            HV_OK)
            goto out;
    }
    if ((rc = hv_buf_putc(dst, '\r')) != HV_OK) goto out;
    /* ERR, one per error */
    for (i = 0; i < o->nerrs; i++) {
        const hv_hl7v2_ack_err_t *e = &o->errs[i];
        const char *sev = e->severity == HV_HL7V2_SEV_WARNING ? "W"
                          : e->severity == HV_HL7V2_SEV_INFO  ? "I"
                                                              : "E";
        char sub = d.sub ? d.sub : d.comp;
        if ((rc = hv_buf_printf(dst, "ERR%c", d.field)) != HV_OK) goto out;
        if (vnum < 250) {
            if ((rc = put_location(dst, &d, e->location, 0)) != HV_OK) goto out;
            if ((rc = hv_buf_printf(dst, "%c%d%c%s%cHL70357", d.comp, e->code, sub,
                                    hv_hl7v2_err_text(e->code), sub)) != HV_OK)
                goto out;
        } else {
            if ((rc = hv_buf_putc(dst, d.field)) != HV_OK) goto out;
            if ((rc = put_location(dst, &d, e->location, 1)) != HV_OK) goto out;
            if ((rc = hv_buf_printf(dst, "%c%d%c%s%cHL70357%c%s%c%c%c%c", d.field, e->code, d.comp,
                                    hv_hl7v2_err_text(e->code), d.comp, d.field, sev, d.field,
                                    d.field, d.field, d.field)) != HV_OK)
                goto out;
            if (e->message != NULL &&
                (rc = hv_hl7v2_escape(&d, e->message, strlen(e->message), dst)) != HV_OK)
                goto out;
        }
        if ((rc = hv_buf_putc(dst, '\r')) != HV_OK) goto out;
    }
    if (cs != NULL) rc = hv_hl7v2_charset_convert("UTF-8", cs, b.data, b.len, out);
out:
    hv_buf_release(&b);
    return rc;
}

int hv_hl7v2_ack_read(const char *raw, size_t len, char out[3], hv_hl7v2_span_t *control_id) {
    hv_hl7v2_delims_t d;
    size_t i = 0;
    if (len >= 3 && memcmp(raw, "\xef\xbb\xbf", 3) == 0) i = 3;
    while (i < len && HV__HL7_EOL(raw[i])) i++;
    if (len - i < 8 || memcmp(raw + i, "MSH", 3) != 0) return HV_EPROTO;
    if (hv_hl7v2_delims_read(raw + i, len - i, &d, NULL) != HV_OK) return HV_EPROTO;
    while (i < len) {
        size_t e = i;
        while (e < len && !HV__HL7_EOL(raw[e])) e++;
        if (e - i >= 6 && memcmp(raw + i, "MSA", 3) == 0 && raw[i + 3] == d.field) {
            hv_hl7v2_span_t seg = {raw + i + 4, e - i - 4}, f1, f2;
            hv_hl7v2_span_piece(seg, d.field, 0, &f1);
            if (f1.len != 2) return HV_EPROTO;
            out[0] = f1.p[0];
            out[1] = f1.p[1];
            out[2] = 0;
            if (control_id != NULL) {
                if (hv_hl7v2_span_piece(seg, d.field, 1, &f2) != HV_OK) {
                    f2.p = "";
                    f2.len = 0;
                }
                *control_id = f2;
            }
            return HV_OK;
        }
        while (e < len && HV__HL7_EOL(raw[e])) e++;
        i = e;
    }
    return HV_EPROTO;
}
