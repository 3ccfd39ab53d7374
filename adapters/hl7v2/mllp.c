/*
 * mllp.c — the MLLP frame reader (HL7 v2.5.1 Appendix C, Minimal Lower Layer
 * Protocol release 2, §C.4.2 block format):
 *
 *   <SB=0x0B> message bytes <EB=0x1C><CR=0x0D>
 *
 * A resumable state machine: bytes arrive in reads of any size, so one read may
 * hold several frames and one frame may span many reads. A frame that lies whole
 * inside one read is returned as a span into that read (no copy); only a frame
 * that spans reads is collected in the framer's buffer, capped at `max`.
 * Between frames CR, LF, space and tab are skipped (some senders add them);
 * any other byte there is a protocol error, as is <EB> followed by anything but <CR>.
 */
#include "config.h"

#include <string.h>

#include "adapters/hl7v2/hl7v2_int.h"

enum { ST_IDLE = 0, ST_BODY, ST_END, ST_DEAD };

void hv_mllp_framer_init(hv_mllp_framer_t *f, size_t max) {
    memset(f, 0, sizeof(*f));
    f->max = max;
    f->state = ST_IDLE;
    hv_buf_init(&f->buf, max + 1);
}

void hv_mllp_framer_release(hv_mllp_framer_t *f) {
    hv_buf_release(&f->buf);
    f->state = ST_IDLE;
}

int hv_mllp_framer_partial(const hv_mllp_framer_t *f) { return f->state != ST_IDLE; }

int hv_mllp_framer_feed(hv_mllp_framer_t *f, const char *p, size_t n, size_t *used,
                        const char **msg, size_t *msg_len) {
    size_t i = 0;
    int rc;
    if (f->state == ST_DEAD) {
        *used = 0;
        return HV_EPROTO;
    }
    while (i < n) {
        switch (f->state) {
        case ST_IDLE: {
            char c = p[i];
            if (c == HV_MLLP_SB) {
                const char *eb;
                size_t start = i + 1;
                hv_buf_reset(&f->buf);
                f->state = ST_BODY;
                i++;
                /* Fast path: the whole frame is in this read. */
                eb = memchr(p + start, HV_MLLP_EB, n - start);
                if (eb != NULL && (size_t)(eb - p) + 1 < n) {
                    size_t blen = (size_t)(eb - (p + start));
                    if (blen > f->max) goto toobig;
                    if (eb[1] != HV_MLLP_CR) goto proto;
                    *used = (size_t)(eb - p) + 2;
                    *msg = p + start;
                    *msg_len = blen;
                    f->state = ST_IDLE;
                    f->frames++;
                    return HV_OK;
                }
                continue;
            }
            if (c == '\r' || c == '\n' || c == ' ' || c == '\t') {
                i++;
                continue;
            }
            goto proto;
        }
        case ST_BODY: {
            const char *eb = memchr(p + i, HV_MLLP_EB, n - i);
            size_t take = eb != NULL ? (size_t)(eb - (p + i)) : n - i;
            if (f->buf.len + take > f->max) goto toobig;
            if (take > 0 && (rc = hv_buf_append(&f->buf, p + i, take)) != HV_OK) {
                if (rc == HV_ETOOBIG) goto toobig;
                *used = i;
                return rc;
            }
            i += take;
            if (eb != NULL) {
                i++;
                f->state = ST_END;
            }
            continue;
        }
        case ST_END:
            if (p[i] != HV_MLLP_CR) goto proto;
            i++;
            *used = i;
            *msg = f->buf.data != NULL ? f->buf.data : "";
            *msg_len = f->buf.len;
            f->state = ST_IDLE;
            f->frames++;
            return HV_OK;
        default:
            goto proto;
        }
    }
    *used = n;
    return HV_AGAIN;
toobig:
    f->state = ST_DEAD;
    *used = i;
    return HV_ETOOBIG;
proto:
    f->state = ST_DEAD;
    *used = i;
    return HV_EPROTO;
}

int hv_mllp_wrap(const char *p, size_t n, hv_buf_t *out) {
    int rc = hv_buf_reserve(out, n + 3);
    if (rc != HV_OK) return rc;
    hv_buf_putc(out, HV_MLLP_SB);
    hv_buf_append(out, p, n);
    hv_buf_putc(out, HV_MLLP_EB);
    return hv_buf_putc(out, HV_MLLP_CR);
}
