/*
 * csv.c — a streaming reader of delimited text for the terminology loaders:
 * RFC 4180 CSV (LOINC's Loinc.csv, CPT files: quoted fields, "" escapes, line breaks
 * inside quotes, CRLF or LF) and unquoted tab-separated text (SNOMED CT RF2, whose
 * terms may contain quote characters). Files may be gzip-compressed (zlib reads
 * both transparently). Fields and rows are capped (HV_ETOOBIG names the line).
 */
#include "config.h"

#include <string.h>

#include "terminology/terminology_int.h"

#define MAX_FIELD (64 * 1024)
#define MAX_FIELDS 256

struct hv__csv {
    gzFile f;           /* NULL when reading from memory */
    const char *mem;    /* hv__csv_open_mem: the text and its length */
    size_t memlen;
    char sep;
    int quoting;
    long line; /* 1-based line the current row started on */
    long next_line;
    char in[64 * 1024];
    size_t pos, len;
    int eof;
    hv_buf_t data;                /* the row's fields, each NUL-terminated */
    size_t offs[MAX_FIELDS + 1];  /* where each field starts, and where the last one ends */
    char *fields[MAX_FIELDS];
    size_t nfields;
};

int hv__csv_open(const char *path, char sep, int quoting, hv__csv_t **out, hv_error_t *err) {
    hv__csv_t *c = hv_calloc(1, sizeof *c);
    if (c == NULL) return HV_ENOMEM;
    c->f = gzopen(path, "rb");
    if (c->f == NULL) {
        hv_free(c);
        hv_error_set(err, HV_EIO, path, "cannot open the file");
        return HV_EIO;
    }
    c->sep = sep;
    c->quoting = quoting;
    c->next_line = 1;
    hv_buf_init(&c->data, (size_t)MAX_FIELD * 4);
    *out = c;
    return HV_OK;
}

int hv__csv_open_mem(const char *data, size_t len, char sep, int quoting, hv__csv_t **out) {
    hv__csv_t *c = hv_calloc(1, sizeof *c);
    if (c == NULL) return HV_ENOMEM;
    c->mem = data;
    c->memlen = len;
    c->sep = sep;
    c->quoting = quoting;
    c->next_line = 1;
    hv_buf_init(&c->data, (size_t)MAX_FIELD * 4);
    *out = c;
    return HV_OK;
}

void hv__csv_close(hv__csv_t *c) {
    if (c == NULL) return;
    if (c->f != NULL) gzclose(c->f);
    hv_buf_release(&c->data);
    hv_free(c);
}

long hv__csv_line(const hv__csv_t *c) { return c->line; }

/* Bytes of the (compressed) file consumed so far, for progress reports. */
long hv__csv_offset(hv__csv_t *c) { return c->f != NULL ? (long)gzoffset(c->f) : (long)c->pos; }

/* The next byte, or -1 at the end of the file (or on a read error, *ioerr set). */
static int next_byte(hv__csv_t *c, int *ioerr) {
    if (c->f == NULL) return c->pos < c->memlen ? (unsigned char)c->mem[c->pos++] : -1;
    if (c->pos == c->len) {
        int n;
        if (c->eof) return -1;
        n = gzread(c->f, c->in, sizeof c->in);
        if (n <= 0) {
            int zerr;
            c->eof = 1;
            if (n < 0 || (gzerror(c->f, &zerr), zerr != Z_OK)) *ioerr = 1; /* Z_BUF_ERROR: truncated */
            return -1;
        }
        c->len = (size_t)n;
        c->pos = 0;
    }
    return (unsigned char)c->in[c->pos++];
}

static int end_field(hv__csv_t *c, hv_error_t *err) {
    if (c->nfields >= MAX_FIELDS) {
        hv_error_set(err, HV_ETOOBIG, NULL, "line %ld has more than %d fields", c->line, MAX_FIELDS);
        return HV_ETOOBIG;
    }
    if (hv_buf_putc(&c->data, '\0') != HV_OK) {
        hv_error_set(err, HV_ETOOBIG, NULL, "line %ld is too long", c->line);
        return HV_ETOOBIG;
    }
    c->offs[++c->nfields] = c->data.len;
    return HV_OK;
}

int hv__csv_next(hv__csv_t *c, char ***fields, size_t *n, hv_error_t *err) {
    int ch, ioerr = 0, quoted = 0, rc, any = 0;
    size_t field_start;
    hv_buf_reset(&c->data);
    c->nfields = 0;
    c->offs[0] = 0;
    c->line = c->next_line;
    field_start = 0;
    for (;;) {
        ch = next_byte(c, &ioerr);
        if (ioerr) {
            hv_error_set(err, HV_EIO, NULL, "read error (corrupt or truncated file) near line %ld",
                         c->line);
            return HV_EIO;
        }
        if (ch < 0) {
            if (quoted) {
                hv_error_set(err, HV_EPROTO, NULL, "a quoted field opened on line %ld is not closed",
                             c->line);
                return HV_EPROTO;
            }
            if (!any) return HV_ENOTFOUND;
            break;
        }
        any = 1;
        if (quoted) {
            if (ch == '"') {
                int next = next_byte(c, &ioerr);
                if (next == '"') {
                    ch = '"';
                } else {
                    quoted = 0;
                    if (next >= 0) c->pos--; /* push back: the byte just read is at pos - 1 */
                    continue;
                }
            } else if (ch == '\n') {
                c->next_line++;
            }
        } else if (ch == '"' && c->quoting && c->data.len == field_start) {
            quoted = 1;
            continue;
        } else if (ch == c->sep) {
            rc = end_field(c, err);
            if (rc != HV_OK) return rc;
            field_start = c->data.len;
            continue;
        } else if (ch == '\n') {
            c->next_line++;
            break;
        } else if (ch == '\r') {
            continue;
        }
        if (c->data.len - field_start >= MAX_FIELD || hv_buf_putc(&c->data, (char)ch) != HV_OK) {
            hv_error_set(err, HV_ETOOBIG, NULL, "a field on line %ld is longer than %d bytes",
                         c->line, MAX_FIELD);
            return HV_ETOOBIG;
        }
    }
    rc = end_field(c, err);
    if (rc != HV_OK) return rc;
    {
        size_t i;
        for (i = 0; i < c->nfields; i++) c->fields[i] = c->data.data + c->offs[i];
    }
    *fields = c->fields;
    *n = c->nfields;
    return HV_OK;
}
